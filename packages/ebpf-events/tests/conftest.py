"""Shared fixtures of ebpf-events' tests: the C profiling target in its symbol variants."""

from __future__ import annotations

import lzma
import shutil
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

HERE = Path(__file__).parent


@dataclass
class Target:
    """A running spin_target: the process, and the run-time address of hot_spin_loop it printed."""

    proc: subprocess.Popen[str]
    hot_addr: int

    @property
    def pid(self) -> int:
        return self.proc.pid


def _run(*cmd: str | Path) -> None:
    subprocess.run([str(c) for c in cmd], check=True, capture_output=True)


class SpinBuilder:
    """Builds spin_target.c once, then derives the stripped variants from it."""

    def __init__(self, root: Path) -> None:
        if not shutil.which("gcc"):
            pytest.fail("gcc is needed to build spin_target.c")
        self.root = root
        self.plain = root / "spin_plain"
        # -O0: every function, leaves included, keeps a frame pointer (the kernel walks user stacks by it)
        _run("gcc", "-O0", "-g", "-fno-omit-frame-pointer", "-Wl,--build-id", HERE / "spin_target.c", "-o", self.plain)

    def variant(self, name: str) -> tuple[Path, Path | None]:
        """``(binary, debug dir or None)`` for ``plain``, ``nopie``, ``minidebuginfo``, ``debugfile``, ``debuglink``, ``nosym``."""
        out = self.root / f"spin_{name}"
        if name == "plain":
            return self.plain, None
        if name == "nopie":  # a fixed-address ET_EXEC: the load bias is 0
            _run("gcc", "-O0", "-g", "-fno-omit-frame-pointer", "-no-pie", "-Wl,--build-id", HERE / "spin_target.c",
                 "-o", out)
            return out, None
        shutil.copy(self.plain, out)
        if name == "nosym":
            _run("strip", "--strip-all", out)
            return out, None
        if name == "minidebuginfo":
            # as Fedora's find-debuginfo does: the symbol table alone, xz-compressed into .gnu_debugdata
            mini = self.root / "mini.elf"
            _run("objcopy", "--only-keep-debug", "--strip-debug", "--remove-section=.comment", self.plain, mini)
            (self.root / "mini.xz").write_bytes(lzma.compress(mini.read_bytes(), format=lzma.FORMAT_XZ))
            _run("strip", "--strip-all", out)
            _run("objcopy", f"--add-section=.gnu_debugdata={self.root / 'mini.xz'}", out)
            return out, None
        debug = self.root / f"{name}.debug"
        _run("objcopy", "--only-keep-debug", self.plain, debug)
        _run("strip", "--strip-all", out)
        if name == "debuglink":
            _run("objcopy", f"--add-gnu-debuglink={debug}", out)
            return out, None
        if name == "debugfile":
            from ebpf.events._elfsyms import ElfImage

            bid = ElfImage.from_path(str(self.plain)).build_id()
            assert bid, "gcc did not write a build id"
            ddir = self.root / "debug"
            dest = ddir / ".build-id" / bid.hex()[:2] / (bid.hex()[2:] + ".debug")
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(debug, dest)
            return out, ddir
        raise ValueError(name)


@pytest.fixture(scope="session")
def spin_builder(tmp_path_factory: pytest.TempPathFactory) -> SpinBuilder:
    return SpinBuilder(tmp_path_factory.mktemp("spin"))


@contextmanager
def run_target(binary: Path, *args: str) -> Iterator[Target]:
    """Start ``binary args...``, wait for its "ready" line, kill it at the end."""
    proc = subprocess.Popen([str(binary), *args], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().split()
        assert line and line[0] == "ready", line
        yield Target(proc, int(line[1], 16))
    finally:
        proc.kill()
        proc.wait()
        if proc.stdout:
            proc.stdout.close()


@pytest.fixture
def spawn() -> Callable[..., Iterator[Target]]:
    """``with spawn(binary, "spin") as target:`` runs a target for the test."""
    return run_target  # type: ignore[return-value]


@pytest.fixture
def kptr_restrict_2() -> Iterator[None]:
    """kernel.kptr_restrict=2 for the test, restored afterwards (whatever happens)."""
    path = "/proc/sys/kernel/kptr_restrict"
    with open(path) as fh:
        before = fh.read().strip()
    try:
        with open(path, "w") as fh:
            fh.write("2")
        yield
    finally:
        with open(path, "w") as fh:
            fh.write(before)
        with open(path) as fh:
            assert fh.read().strip() == before
        from ebpf.events.symbols import KernelSymbols

        KernelSymbols.shared(reload=True)  # the shared table may have been read while hidden


def python_with_perf_maps() -> str | None:
    """A Python >= 3.12 interpreter that supports ``-X perf`` on this machine, or None."""
    candidates = [shutil.which(f"python3.{minor}") for minor in range(12, 16)]
    candidates += [str(p) for p in sorted(Path("/root/.pyenv/versions").glob("3.1[2-9]*/bin/python3"))]
    for exe in filter(None, candidates):
        try:
            proc = subprocess.run([exe, "-X", "perf", "-c", "import sys; print(sys.is_stack_trampoline_active())"],
                                  capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if proc.stdout.strip() == "True":
            return exe
    return None


def probe_python_perf_maps() -> None:
    """Feature probe: an installed Python >= 3.12 whose ``-X perf`` writes /tmp/perf-PID.map."""
    from ebpf.core.errors import UnsupportedFeatureError

    if python_with_perf_maps() is None:
        raise UnsupportedFeatureError("Python >= 3.12 with -X perf (perf maps)", reason="no such interpreter is installed")


def python_with_frame_pointers() -> str | None:
    """A Python >= 3.12 with ``-X perf`` built with frame pointers (3.14's default), or None.

    Without frame pointers the kernel's user stack walk stops (or strays) inside the interpreter,
    so the perf-map trampolines never show up in sampled stacks.
    """
    exe = python_with_perf_maps()
    candidates = [exe] if exe else []
    candidates += [shutil.which(f"python3.{minor}") for minor in range(14, 16)]
    for exe in filter(None, candidates):
        proc = subprocess.run([exe, "-c", "import sysconfig; print(sysconfig.get_config_var('PY_CFLAGS'))"],
                              capture_output=True, text=True, timeout=30)
        if "-fno-omit-frame-pointer" in proc.stdout:
            return exe
    return None


def probe_python_frame_pointers() -> None:
    """Feature probe: a Python >= 3.12 with ``-X perf`` whose stacks the kernel can walk (frame pointers)."""
    from ebpf.core.errors import UnsupportedFeatureError

    if python_with_frame_pointers() is None:
        raise UnsupportedFeatureError("Python >= 3.12 with -X perf built with frame pointers",
                                      reason="no such interpreter is installed (3.14 has them by default)")


@pytest.fixture(scope="session")
def perf_fp_python() -> str:
    from ebpf.core.testing import require

    require(probe_python_frame_pointers)
    exe = python_with_frame_pointers()
    assert exe
    return exe


@pytest.fixture(scope="session")
def perf_python() -> str:
    from ebpf.core.testing import require

    require(probe_python_perf_maps)
    exe = python_with_perf_maps()
    assert exe
    return exe
