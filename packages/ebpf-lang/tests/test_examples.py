"""The examples under examples/lang/ against their C versions (examples/lang/c/, built with compile_c):
both pass the verifier and produce the same observable results."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any

import pytest
from ebpf.core.collection import Collection

pytestmark = pytest.mark.privileged

ETH_IP = b"\xff" * 6 + b"\x02" * 6 + b"\x08\x00"


def ipv4(proto: int, ihl: int = 5) -> bytes:
    return bytes([0x40 | ihl, 0, 0, 40, 0, 0, 0, 0, 64, proto, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]) + bytes(4 * (ihl - 5))


PACKETS = [
    ETH_IP + ipv4(17) + bytes([0, 1, 0, 9, 0, 8, 0, 0]),        # UDP to the discard port: dropped
    ETH_IP + ipv4(17) + bytes([0, 1, 0x27, 0x0F, 0, 8, 0, 0]),  # UDP to 9999: passed
    ETH_IP + ipv4(17, ihl=6) + bytes([0, 1, 0, 9, 0, 8, 0, 0]),  # options: the UDP header moves
    ETH_IP + ipv4(17),                                            # UDP header missing
    ETH_IP + ipv4(6) + bytes(20),
    ETH_IP + ipv4(1) + bytes(8),
    ETH_IP[:12] + b"\x86\xdd" + bytes(40),                       # IPv6: not counted
    ETH_IP + bytes(10),                                           # IPv4 header cut short
]


@pytest.fixture
def both(example: Callable[[str], ModuleType], c_source: Callable[[str], str]) -> Callable[[str], Any]:
    """``both("xdp_counter")`` -> context manager yielding (python collection, C collection)."""
    from ebpf.elf import compile_c, load_elf
    from ebpf.lang import load

    @contextmanager
    def make(name: str) -> Iterator[tuple[Collection, Collection]]:
        with tempfile.TemporaryDirectory() as tmp:
            obj = compile_c(c_source(name), os.path.join(tmp, f"{name}.o"))
            with load(example(name)) as py, load_elf(obj) as c:
                yield py, c

    return make


def test_xdp_counter_same_verdicts_and_counts(both: Callable[[str], Any]) -> None:
    with both("xdp_counter") as (py, c):
        for coll in (py, c):
            coll.verdicts = [coll.programs["xdp_count"].test_run(p).retval for p in PACKETS]
        assert py.verdicts == c.verdicts == [1, 2, 1, 2, 2, 2, 2, 2]
        got = {k: v for k, v in py.maps["proto_counts"].items() if v}
        assert got == {k: v for k, v in c.maps["proto_counts"].items() if v} == {17: 4, 6: 1, 1: 1}


def _read_events(coll: Collection, parse: Callable[[bytes], Any]) -> list[Any]:
    from ebpf.events.ringbuf import RingBuffer

    found: list[Any] = []
    with RingBuffer(coll.maps["events"], lambda rec: found.append(parse(bytes(rec)))) as rb:
        rb.poll(timeout_ms=0)
    return found


def test_execve_tracer_same_event(both: Callable[[str], Any], example: Callable[[str], ModuleType]) -> None:
    mod = example("execve_tracer")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, f"lang-exec-{os.getpid()}")
        os.symlink("/bin/true", path)
        with both("execve_tracer") as (py, c), py.programs["trace_execve"].attach(), \
                c.programs["trace_execve"].attach():
            proc = subprocess.run([path], check=True)
            assert proc.returncode == 0
            seen = {}
            for name, coll in (("python", py), ("c", c)):
                events = [e for e in _read_events(coll, mod.Event.decode) if e.filename == path.encode()]
                assert events, f"the {name} version saw no execve of {path}"
                seen[name] = [(e.pid, e.ppid, e.comm, e.filename) for e in events]
                assert all(e.ppid == os.getpid() for e in events)  # subprocess.run forks from this process
    assert seen["python"] == seen["c"]


def _child_connects(cgroup: str, ports: list[int]) -> list[str]:
    code = ("import os, socket, sys\n"
            f"open({os.path.join(cgroup, 'cgroup.procs')!r}, 'w').write(str(os.getpid()))\n"
            "for p in sys.argv[1:]:\n"
            "    try:\n"
            "        socket.create_connection(('127.0.0.1', int(p)), timeout=5).close(); print('ok')\n"
            "    except OSError as e:\n"
            "        print('errno', e.errno)\n")
    out = subprocess.run([sys.executable, "-c", code, *map(str, ports)], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    return out.split("\n")[:-1]


def test_cgroup_connect_block_same_refusals(both: Callable[[str], Any]) -> None:
    from ebpf.net.cgroup import attach_cgroup_program, cgroup_root, create_cgroup

    results = {}
    with both("cgroup_connect_block") as (py, c), socket.socket() as a, socket.socket() as b:
        for s in (a, b):
            s.bind(("127.0.0.1", 0))
            s.listen(16)
        pa, pb = a.getsockname()[1], b.getsockname()[1]
        for name, coll in (("python", py), ("c", c)):
            path = create_cgroup(os.path.join(cgroup_root(), f"ebpf-lang-test-{name}-{os.getpid()}"))
            try:
                coll.maps["blocked"][pa] = 0
                with attach_cgroup_program(path, coll.programs["block_connect"]):
                    outcome = _child_connects(path, [pa, pb, pa])
                results[name] = (outcome, coll.maps["blocked"][pa])
            finally:
                _rmdir(path)
    assert results["python"] == results["c"] == (["errno 1", "ok", "errno 1"], 2)


def _rmdir(path: str) -> None:
    deadline = time.monotonic() + 5
    while True:
        try:
            os.rmdir(path)
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def test_syscount_same_counts(both: Callable[[str], Any]) -> None:
    getppid = 110  # x86_64
    with both("syscount") as (py, c):
        for coll in (py, c):
            coll.maps["target"][0] = os.getpid()
        with py.programs["count_syscalls"].attach(), c.programs["count_syscalls"].attach():
            for _ in range(50):
                os.getppid()
        assert py.maps["counts"][getppid] == c.maps["counts"][getppid] == 50


def test_latency_hist_same_histogram(both: Callable[[str], Any]) -> None:
    with both("latency_hist") as (py, c):
        for coll in (py, c):
            coll.maps["target"][0] = os.getpid()
        with py.programs["sleep_enter"].attach(), py.programs["sleep_exit"].attach(), \
                c.programs["sleep_enter"].attach(), c.programs["sleep_exit"].attach():
            for _ in range(5):
                time.sleep(0.0015)  # clock_nanosleep, ~1.5 ms: the 2^20 ns bucket
        hists = {name: [coll.maps["hist"][i] for i in range(64)] for name, coll in (("python", py), ("c", c))}
    assert sum(hists["python"]) == sum(hists["c"]) == 5
    # Both measure the same syscalls, with timestamps taken a few instructions apart.
    busy = {name: {i for i, n in enumerate(h) if n} for name, h in hists.items()}
    assert busy["python"] <= set(range(20, 25)) and busy["c"] <= set(range(20, 25))


def test_module_programs_share_maps(example: Callable[[str], ModuleType]) -> None:
    from ebpf.lang import load

    with load(example("latency_hist")) as coll:
        ids = [set(coll.programs[n].info().map_ids) for n in ("sleep_enter", "sleep_exit")]
        assert coll.maps["start"].info().id in ids[0] & ids[1]
        assert sorted(coll.maps) == ["hist", "start", "target"]
