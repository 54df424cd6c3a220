"""``ebpf trace`` (a real subprocess) on SIGTERM detaches like on Ctrl-C: it prints its summary, exits 0, and the
programs it attached are gone."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from ebpf.core.errors import BPFSyscallError
from ebpf.core.programs import Program

pytestmark = pytest.mark.privileged
SRC = [str(Path(__file__).resolve().parents[2] / p / "src") for p in ("ebpf-core", "ebpf-events")]


def prog_ids(pid: int) -> set[int]:
    """The ids of the bpf programs process ``pid`` holds fds of (from /proc/PID/fdinfo)."""
    ids = set()
    for name in os.listdir(f"/proc/{pid}/fdinfo"):
        try:
            text = Path(f"/proc/{pid}/fdinfo/{name}").read_text()
        except OSError:
            continue
        ids.update(int(line.split()[1]) for line in text.splitlines() if line.startswith("prog_id:"))
    return ids


def exists(prog_id: int) -> bool:
    try:
        Program.from_id(prog_id).close()
    except BPFSyscallError:
        return False
    return True


@pytest.mark.parametrize("tracer", ["exec", "open"])
def test_trace_on_sigterm_detaches_and_exits_0(tracer: str) -> None:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([*SRC, *[p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]])
    proc = subprocess.Popen([sys.executable, "-m", "ebpf.core.cli", "trace", tracer], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stderr is not None
        ready = proc.stderr.readline()  # "tracing ... (Ctrl-C to stop)" once attached
        assert ready.startswith("tracing"), ready
        held = prog_ids(proc.pid)
        assert held
        subprocess.run(["true"], check=True)
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert err.rstrip().endswith("event(s)")  # the summary, printed after detaching
    assert not any(exists(p) for p in held)
