"""``ebpf trace exec|open|tcp-connect``: each runs with a short --duration in a subprocess while the
test triggers the event, and the output must show it."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

pytestmark = pytest.mark.privileged
SRC = [str(Path(__file__).resolve().parents[2] / p / "src") for p in ("ebpf-core", "ebpf-events")]


def _start(*argv: str) -> subprocess.Popen[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([*SRC, *[p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]])
    proc = subprocess.Popen([sys.executable, "-m", "ebpf.core.cli", "trace", *argv], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    ready = proc.stderr.readline()  # "tracing ... for Ns" once the program is attached
    assert ready.startswith("tracing"), ready + proc.stderr.read()
    return proc


def _trace_while(argv: list[str], trigger: Callable[[], object]) -> tuple[str, str]:
    proc = _start(*argv)
    try:
        trigger()
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    return out, err


def test_trace_exec_shows_a_launch_with_its_parent(tmp_path: Path) -> None:
    marker = tmp_path / "ebpf-trace-exec-marker"
    marker.symlink_to(shutil.which("true") or "/bin/true")
    launched: list[int] = []

    def launch() -> None:
        child = subprocess.Popen([str(marker)])
        launched.append(child.pid)
        child.wait()

    out, _ = _trace_while(["exec", "--duration", "1.5"], launch)
    lines = [line for line in out.splitlines() if str(marker) in line]
    assert lines, out
    pid, ppid, uid = (int(v) for v in lines[0].split()[:3])
    assert (pid, ppid, uid) == (launched[0], os.getpid(), os.getuid())
    assert out.splitlines()[0].split() == ["PID", "PPID", "UID", "RET", "COMM", "ARGS"]
    assert lines[0].split()[3] == "0"  # the return code of the exec


def test_trace_exec_json_lines(tmp_path: Path) -> None:
    marker = tmp_path / "ebpf-trace-json-marker"
    marker.symlink_to(shutil.which("true") or "/bin/true")
    out, _ = _trace_while(["exec", "--json", "--duration", "1.5"], lambda: subprocess.run([str(marker)], check=True))
    events = [json.loads(line) for line in out.splitlines()]  # every line is one JSON object
    mine = [e for e in events if e["filename"] == str(marker)]
    assert mine and set(mine[0]) == {"pid", "ppid", "uid", "comm", "filename", "ret", "argv", "error"}
    assert mine[0]["argv"] == [str(marker)] and mine[0]["ret"] == 0
    assert mine[0]["ppid"] == os.getpid()


def test_trace_open_shows_the_path(tmp_path: Path) -> None:
    target = tmp_path / "opened-by-the-test.txt"
    target.write_text("x")

    def touch() -> None:
        with open(target):
            pass

    out, _ = _trace_while(["open", "--json", "--duration", "1.5", "--pid", str(os.getpid())], touch)
    events = [json.loads(line) for line in out.splitlines()]
    assert any(e["filename"] == str(target) and e["pid"] == os.getpid() for e in events), out
    assert all(e["pid"] == os.getpid() for e in events)  # --pid filters


def test_trace_tcp_connect_shows_address_and_port() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]

        def connect() -> None:
            with socket.create_connection(("127.0.0.1", port), timeout=2):
                time.sleep(0.05)

        out, _ = _trace_while(["tcp-connect", "--duration", "1.5"], connect)
    lines = [line.split() for line in out.splitlines()[1:]]
    assert [str(os.getpid()), "ipv4", "127.0.0.1", str(port)] in [[f[0], *f[-3:]] for f in lines], out


def test_bad_duration_is_refused_before_loading() -> None:
    from ebpf.core.cli import main

    assert main(["trace", "exec", "--duration", "0"]) == 1
    assert main(["trace", "nosuch"]) == 2  # argparse: unknown tracer


def test_tracer_objects_release_everything() -> None:
    from ebpf.core.programs import Program
    from ebpf.events.tracers import exec_tracer

    with exec_tracer() as tracer:
        prog_id = tracer.program.info().id
        subprocess.run(["true"], check=True)
        assert any(e.filename.endswith("true") for e in tracer.events(0.3))
    from ebpf.core.errors import BPFSyscallError

    for _ in range(50):  # the kernel frees the program once the last reference (the perf event) is gone
        try:
            Program.from_id(prog_id).close()
        except BPFSyscallError:
            return
        time.sleep(0.02)
    pytest.fail(f"program {prog_id} is still loaded after the tracer was closed")
