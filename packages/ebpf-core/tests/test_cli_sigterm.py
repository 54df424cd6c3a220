"""SIGTERM to a long-running ``ebpf`` command (a real subprocess) unwinds like Ctrl-C: it detaches, releases what it
loaded and exits with its status (``top``: 0; ``demo``: 143 after its cleanup).  ``ebpf trace`` is tested in
ebpf-events (tests/test_trace_sigterm.py) with the same helpers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from ebpf.core.errors import BPFSyscallError
from ebpf.core.programs import Program

pytestmark = pytest.mark.privileged
SRC = [str(Path(__file__).resolve().parents[2] / p / "src") for p in ("ebpf-core", "ebpf-net", "ebpf-events",
                                                                       "ebpf-security", "ebpf-elf")]


def start_cli(*argv: str) -> subprocess.Popen[str]:
    """``python -m ebpf.core.cli ARGV`` with this checkout's sources first on the path."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([*SRC, *[p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]])
    return subprocess.Popen([sys.executable, "-m", "ebpf.core.cli", *argv], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def bpf_ids(pid: int, kind: str = "prog") -> set[int]:
    """The ids of the bpf programs (or links) process ``pid`` holds fds of (from /proc/PID/fdinfo)."""
    ids = set()
    fdinfo = Path(f"/proc/{pid}/fdinfo")
    try:
        names = os.listdir(fdinfo)
    except OSError:
        return ids
    for name in names:
        try:
            text = (fdinfo / name).read_text()
        except OSError:
            continue
        for line in text.splitlines():
            if line.startswith(f"{kind}_id:"):
                ids.add(int(line.split()[1]))
    return ids


def wait_until(cond: Callable[[], bool], proc: subprocess.Popen[str], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"exited {proc.returncode} early:\n{out}\n{err}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


def terminate(proc: subprocess.Popen[str], timeout: float = 60.0) -> tuple[int, str, str]:
    """SIGTERM, then wait (bounded) for the exit; (status, stdout, stderr)."""
    proc.send_signal(signal.SIGTERM)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"still running {timeout} s after SIGTERM:\n{out}\n{err}") from None
    return proc.returncode, out, err


def gone(prog_ids: set[int]) -> bool:
    """None of these programs exists any more."""
    for prog_id in prog_ids:
        try:
            Program.from_id(prog_id).close()
        except BPFSyscallError:
            continue
        return False
    return True


def test_demo_on_sigterm_cleans_up_and_exits_143() -> None:
    proc = start_cli("demo")
    held: set[int] = set()

    def loaded() -> bool:
        held.update(bpf_ids(proc.pid))
        return bool(held)

    wait_until(loaded, proc)
    status, out, err = terminate(proc)
    assert status == 143, (out, err)
    assert "interrupted: cleaning up" in out and "released everything the demo created (0 cleanup failure" in out
    assert gone(held)


def test_top_on_sigterm_exits_0() -> None:
    proc = start_cli("top", "--interval", "0.2")
    assert proc.stdout is not None
    line = proc.stdout.readline()  # the first sample is out: the loop runs
    assert "ebpf top" in line or line.strip(), line
    status, _out, err = terminate(proc)
    assert status == 0, err
