"""Compile BPF C to an object: Debian's clang when present, else the ``ziglang`` PyPI toolchain.

The include path always holds the shipped ``bpf_helpers.h`` (SEC, map macros, helper
prototypes, CO-RE macros); ``vmlinux.h`` is generated from the running kernel's BTF on first
use (``ebpf.core.btf.dump_c_header``) and cached, so a program builds with no kernel headers
and no libbpf installed.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from ebpf.core.errors import EBPFError, UnsupportedFeatureError

__all__ = ["compile_c", "CompileError", "include_dir", "find_compiler", "vmlinux_header"]

_INCLUDE = Path(__file__).resolve().parent / "include"


class CompileError(EBPFError):
    """The C compiler failed; ``output`` holds what it printed."""

    def __init__(self, message: str, output: str = "") -> None:
        """Build the error; ``output`` is appended to the message."""
        self.output = output
        super().__init__(message + (f"\n{output.rstrip()}" if output else ""))


def include_dir() -> str:
    """The directory holding the shipped headers: ``bpf_helpers.h``, ``bpf_helper_defs.h``, ``usdt.bpf.h``."""
    return str(_INCLUDE)


def find_compiler(prefer: str = "auto") -> list[str]:
    """The compiler command: ``clang -target bpf`` when clang is on PATH, else ziglang's ``cc``.

    :param prefer: ``"auto"``, ``"clang"`` or ``"zig"``.
    :raises UnsupportedFeatureError: no usable compiler (``pip install ebpf-elf[compile]``).
    """
    if prefer not in ("auto", "clang", "zig"):
        raise EBPFError(f"compiler must be 'auto', 'clang' or 'zig', not {prefer!r}")
    clang = shutil.which("clang")
    if clang and prefer in ("auto", "clang"):
        cmd = [clang, "-target", "bpf"]
        multiarch = _multiarch()
        if multiarch and os.path.isdir(f"/usr/include/{multiarch}"):
            cmd.append(f"-I/usr/include/{multiarch}")
        return cmd
    if prefer == "clang":
        raise UnsupportedFeatureError("C compiler clang", reason="clang is not on PATH (apt-get install clang, "
                                      "or use compiler='zig')")
    try:
        import ziglang  # noqa: F401
    except ImportError:
        raise UnsupportedFeatureError("C compiler for BPF", reason="install clang, or pip install "
                                      "'ebpf-elf[compile]' (the ziglang toolchain)") from None
    return [sys.executable, "-m", "ziglang", "cc", "-target", "bpfel-freestanding"]


def _multiarch() -> str:
    gcc = shutil.which("gcc")
    if gcc:
        try:
            out = subprocess.run([gcc, "-print-multiarch"], capture_output=True, text=True, timeout=10)
            if out.returncode == 0 and out.stdout.strip():
                return out.stdout.strip()
        except (OSError, subprocess.SubprocessError):
            pass
    return f"{platform.machine()}-linux-gnu"


def vmlinux_header(directory: str | None = None) -> str:
    """Write ``vmlinux.h`` for the running kernel (cached per kernel release); returns its directory.

    :raises BTFError: the kernel has no BTF.
    """
    base = directory or os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "ebpf",
                                     f"vmlinux-{platform.release()}")
    path = os.path.join(base, "vmlinux.h")
    if not os.path.exists(path):
        from ebpf.core.btf import dump_c_header, load_vmlinux

        text = dump_c_header(load_vmlinux())
        os.makedirs(base, exist_ok=True)
        tmp = path + f".{os.getpid()}.tmp"
        with open(tmp, "w") as fh:
            fh.write(text)
        os.replace(tmp, path)
    return base


def compile_c(
    source_or_path: str | os.PathLike[str],
    output: str | os.PathLike[str] | None = None,
    cflags: Sequence[str] = (),
    *,
    compiler: str = "auto",
    optimize: str = "-O2",
) -> str:
    """Compile BPF C into an object file with BTF and ``.BTF.ext`` (``-g``).

    :param source_or_path: a ``.c`` file, or C source text.
    :param output: the ``.o`` to write (default: beside the source, or a temporary file for text).
    :param cflags: extra compiler flags (``-DNAME=1``, ``-I...``).
    :param compiler: ``"auto"`` (clang if on PATH, else ziglang), ``"clang"`` or ``"zig"``.
    :param optimize: the optimisation flag (BPF needs at least ``-O1``).
    :returns: the path of the object.
    :raises CompileError: the compiler failed (``.output`` has its messages).
    :raises UnsupportedFeatureError: no compiler available (a NotSupportedError).
    """
    text_source = isinstance(source_or_path, str) and ("\n" in source_or_path or not os.path.exists(source_or_path))
    tmpdir = None
    if text_source:
        tmpdir = tempfile.mkdtemp(prefix="ebpf-cc-")
        src = os.path.join(tmpdir, "prog.c")
        with open(src, "w") as fh:
            fh.write(str(source_or_path))
    else:
        src = os.fspath(source_or_path)
        if not os.path.isfile(src):
            raise EBPFError(f"no such C file: {src!r}")
    if output is None:
        output = os.path.splitext(src)[0] + ".o" if tmpdir is None else tempfile.mktemp(prefix="ebpf-", suffix=".o")
    out = os.fspath(output)
    cmd = find_compiler(compiler)
    includes = [f"-I{_INCLUDE}", f"-I{os.path.dirname(os.path.abspath(src))}"]
    try:
        with open(src, errors="replace") as fh:
            needs_vmlinux = "vmlinux.h" in fh.read()
    except OSError as exc:
        raise EBPFError(f"cannot read {src!r}: {exc.strerror or exc}") from exc
    if needs_vmlinux and not any(os.path.exists(os.path.join(d[2:], "vmlinux.h")) for d in includes):
        includes.append(f"-I{vmlinux_header()}")
    arch = {"x86_64": "x86", "aarch64": "arm64", "s390x": "s390", "ppc64le": "powerpc"}.get(platform.machine(), "x86")
    argv = [*cmd, optimize, "-g", f"-D__TARGET_ARCH_{arch}", "-Wno-unknown-attributes", *includes, *cflags,
            "-c", src, "-o", out]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.SubprocessError) as exc:
        raise CompileError(f"cannot run the compiler {argv[0]!r}: {exc}") from exc
    finally:
        if tmpdir is not None:
            shutil.rmtree(tmpdir, ignore_errors=True)
    if proc.returncode != 0:
        raise CompileError(f"compiling {'C source' if text_source else src} failed (exit {proc.returncode})",
                           proc.stderr + proc.stdout)
    return out
