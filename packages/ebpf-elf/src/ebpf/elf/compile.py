"""Compile BPF C to an object: Debian's clang when present, else the ``ziglang`` PyPI toolchain.

The include path always holds the shipped headers, written for this project with libbpf's
names: ``<bpf/bpf_helpers.h>``, ``<bpf/bpf_helper_defs.h>``, ``<bpf/bpf_tracing.h>``,
``<bpf/bpf_core_read.h>``, ``<bpf/bpf_endian.h>``, ``<bpf/usdt.bpf.h>`` (each also reachable
without the ``bpf/``); ``vmlinux.h`` (with the kernel's kfuncs) is generated from the running kernel's BTF on first
use (``ebpf.core.btf.dump_c_header``) and cached, so a program builds with no kernel headers
and no libbpf installed.
"""

from __future__ import annotations

import hashlib
import os
import platform
import re
import shutil
import subprocess
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

from ebpf.core.errors import EBPFError, UnsupportedFeatureError

__all__ = ["compile_c", "CompileError", "CompileResult", "CompileWarning", "include_dir", "find_compiler", "vmlinux_header"]

_INCLUDE = Path(__file__).resolve().parent / "include"
# Bumped when the generated vmlinux.h changes shape (2: kfunc prototypes), so caches refresh.
_VMLINUX_FORMAT = "v2"


class CompileError(EBPFError):
    """The C compiler failed; ``output`` holds what it printed."""

    def __init__(self, message: str, output: str = "") -> None:
        """Build the error; ``output`` is appended to the message."""
        self.output = output
        super().__init__(message + (f"\n{output.rstrip()}" if output else ""))


def include_dir() -> str:
    """The directory holding the shipped headers (``bpf/bpf_helpers.h``, ``bpf/bpf_tracing.h``, ...)."""
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
                                     f"vmlinux-{platform.release()}-{_VMLINUX_FORMAT}")
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


class CompileWarning(UserWarning):
    """The C compiler printed warnings for a program it did compile (see ``CompileResult.warnings``)."""


class CompileResult(str):
    """The path of the compiled object (a ``str``), with what the compiler said about it.

    :ivar warnings: one entry per compiler warning (``file:line:col: warning: ...`` and its context).
    :ivar output: everything the compiler printed.
    """

    warnings: list[str]
    output: str

    def __new__(cls, path: str, output: str = "") -> CompileResult:
        """Wrap ``path``; ``output`` is the compiler's stderr."""
        self = super().__new__(cls, path)
        self.output = output
        self.warnings = _split_warnings(output)
        return self


def _split_warnings(output: str) -> list[str]:
    """Group the compiler's lines into one entry per warning (the context lines follow their warning)."""
    out: list[str] = []
    for line in output.splitlines():
        if ": warning: " in line:
            out.append(line)
        elif out and line and not _DIAG_HEAD.match(line):
            out[-1] += "\n" + line
    return out


_DIAG_HEAD = re.compile(r"^\S+:\d+:\d+: (error|note|warning): |^\d+ (warnings?|errors?) generated")
# Source text, not a path: a path has no newline, brace, semicolon or preprocessor line.
_SOURCE_MARKS = ("\n", "{", ";", "#")
_ARCH = {"x86_64": "x86", "aarch64": "arm64", "s390x": "s390", "ppc64le": "powerpc", "riscv64": "riscv"}


def _objects_dir() -> str:
    base = os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache"))
    return os.path.join(base, "ebpf", "objects")


def compile_c(
    source_or_path: str | os.PathLike[str],
    output: str | os.PathLike[str] | None = None,
    cflags: Sequence[str] = (),
    *,
    compiler: str = "auto",
    optimize: str = "-O2",
    warn: bool = True,
) -> CompileResult:
    """Compile BPF C into an object file with BTF and ``.BTF.ext`` (``-g``).

    ``-Werror=implicit-function-declaration`` is on, so a misspelled helper is a compile error
    with its line; ``__TARGET_ARCH_<arch>`` names the running machine (for ``bpf_tracing.h``)
    unless ``cflags`` define one.  No temporary file is left behind.

    :param source_or_path: a ``.c`` file (``str`` or path), or C source text (a string with a
        newline, ``{``, ``;`` or ``#`` in it).
    :param output: the ``.o`` to write (default: beside the source file; for source text, a
        file named by the hash of the source and flags in ``~/.cache/ebpf/objects``).
    :param cflags: extra compiler flags (``-DNAME=1``, ``-I...``).
    :param compiler: ``"auto"`` (clang if on PATH, else ziglang), ``"clang"`` or ``"zig"``.
    :param optimize: the optimisation flag (BPF needs at least ``-O1``).
    :param warn: also report compiler warnings as a Python :class:`CompileWarning`.
    :returns: the path of the object, a ``str`` whose ``.warnings`` lists the compiler's warnings.
    :raises CompileError: the file does not exist, or the compiler failed (``.output`` has its messages).
    :raises UnsupportedFeatureError: no compiler available (a NotSupportedError).
    """
    if not isinstance(source_or_path, (str, os.PathLike)):
        raise CompileError(f"compile_c takes a path or C source text, not {type(source_or_path).__name__}")
    text_source = isinstance(source_or_path, str) and any(m in source_or_path for m in _SOURCE_MARKS)
    cmd = find_compiler(compiler)
    flags = [optimize, "-g", "-Werror=implicit-function-declaration", "-Wno-unknown-attributes"]
    if not any(f.startswith("-D__TARGET_ARCH_") for f in cflags):
        flags.append(f"-D__TARGET_ARCH_{_ARCH.get(platform.machine(), 'x86')}")
    if text_source:
        text = str(source_or_path)
        src_dir = os.getcwd()
    else:
        src = os.fspath(source_or_path)
        if not os.path.isfile(src):
            what = "is not a file" if os.path.exists(src) else "does not exist"
            raise CompileError(f"C source {src!r} {what}")
        try:
            with open(src, errors="replace") as fh:
                text = fh.read()
        except OSError as exc:
            raise CompileError(f"cannot read {src!r}: {exc.strerror or exc}") from exc
        src_dir = os.path.dirname(os.path.abspath(src))
    includes = [f"-I{_INCLUDE}", f"-I{src_dir}"]
    if "vmlinux.h" in text and not any(os.path.exists(os.path.join(d[2:], "vmlinux.h")) for d in includes):
        includes.append(f"-I{vmlinux_header()}")
    argv = [*cmd, *flags, *includes, *cflags]
    if output is None:
        if text_source:
            key = hashlib.sha256("\0".join([*argv, text]).encode()).hexdigest()[:24]
            output = os.path.join(_objects_dir(), f"{key}.o")
            os.makedirs(_objects_dir(), exist_ok=True)
        else:
            output = os.path.splitext(src)[0] + ".o"
    out = os.fspath(output)
    if text_source:
        # The compiler reads the text from stdin: no source file to clean up.
        argv += ["-x", "c", "-c", "-", "-o", out]
    else:
        argv += ["-c", src, "-o", out]
    try:
        proc = subprocess.run(argv, input=text if text_source else None, capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.SubprocessError) as exc:
        raise CompileError(f"cannot run the compiler {argv[0]!r}: {exc}") from exc
    messages = proc.stderr + proc.stdout
    if proc.returncode != 0:
        raise CompileError(f"compiling {'C source' if text_source else src} failed (exit {proc.returncode})", messages)
    result = CompileResult(out, messages)
    if warn and result.warnings:
        warnings.warn(CompileWarning(f"{len(result.warnings)} compiler warning(s):\n" + "\n".join(result.warnings)),
                      stacklevel=2)
    return result
