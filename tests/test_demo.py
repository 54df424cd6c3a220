"""``ebpf demo`` with every package installed: it runs every part, lists what it loaded, and
leaves no program, namespace or cgroup behind -- also when interrupted with Ctrl-C."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from ebpf.core.testing import wait_for

pytestmark = pytest.mark.privileged
ROOT = Path(__file__).resolve().parents[1]
SRC = [str(p) for p in (ROOT / "packages").glob("ebpf-*/src")]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([*SRC, *[p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]])
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _leftovers(text: str) -> list[str]:
    """Namespaces, cgroups and programs named in the output that still exist."""
    from ebpf.core.errors import BPFSyscallError
    from ebpf.core.programs import Program

    left = [n for n in set(re.findall(r"ebpf-demo-[ab]-\d+", text)) if os.path.exists(f"/run/netns/{n}")]
    left += [p for p in re.findall(r"created cgroup (\S+)", text) if os.path.exists(p)]
    def gone(prog_id: int) -> bool:
        try:
            Program.from_id(prog_id).close()
        except BPFSyscallError:
            return True
        return False

    for prog_id in {int(i) for i in re.findall(r"\bid (\d+)", text)}:
        try:  # the kernel frees a program shortly after its last fd closes
            wait_for(lambda pid=prog_id: gone(pid), timeout=1.0)
        except AssertionError:
            left.append(f"program {prog_id}")
    return left


def test_full_demo_runs_every_part_and_cleans_up() -> None:
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "ebpf.core.cli", "demo"], env=_env(), capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert time.monotonic() - started < 60
    out = done.stdout
    for part in ("core", "trace-exec", "network", "cgroup"):
        assert re.search(rf"^\s+{part}\s+ok", out, re.M), out
    assert "EPERM" in out and "XDP_PASS" in out and "bin/true" in out
    listing = out[out.index("what the demo loaded"):]
    for name in ("demo_xdp", "trace_exec", "demo_xdp_count", "demo_tc_drop", "demo_no_connect"):
        assert name in listing
    assert "\x1b[" not in out  # plain lines when stdout is not a terminal
    assert "pip install" not in out  # everything is installed
    assert _leftovers(out) == []


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_demo_leaves_nothing_behind(sig: signal.Signals) -> None:
    # SIGINT as a terminal delivers it: a test session started in the background (`cmd &` in a
    # script) passes SIGINT on ignored, and Python then never raises KeyboardInterrupt.
    proc = subprocess.Popen([sys.executable, "-m", "ebpf.core.cli", "demo", "--duration", "6"], env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert proc.stdout is not None
    seen = []
    try:
        # Interrupt while the execve tracer is attached and launching processes (for --duration 6 s): its
        # "loaded tracepoint program" line comes right after the attach.  (The launches table is printed
        # when the step ends, too late to land the signal inside it on a busy machine.)
        for line in proc.stdout:
            seen.append(line)
            if "loaded tracepoint program" in line:
                break
        proc.send_signal(sig)
        rest, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    out = "".join(seen) + rest
    assert proc.returncode == 128 + sig, out + err  # 130 after Ctrl-C, 143 after SIGTERM, as a shell reports them
    assert "interrupted: cleaning up" in out and "released everything" in out
    assert "0 cleanup failure(s)" in out
    assert _leftovers(out) == []
