"""Cross-package: programs that extend the kernel, written in C (``packages/ebpf-elf/tests/fixtures``),
loaded by ebpf-elf and run for real: BPF iterators read through ebpf-events, and a TCP congestion
control algorithm from ``.struct_ops.link`` / ``.struct_ops`` tables registered through ebpf-core."""

from __future__ import annotations

import errno
import os
import socket
import subprocess
import threading
from pathlib import Path

import pytest
from ebpf.core.features import have_link_type
from ebpf.core.maps import create_hash_map
from ebpf.core.struct_ops import StructOpsLink, StructOpsMap, have_struct_ops
from ebpf.core.testing import require
from ebpf.elf import load_elf
from ebpf.events.iterators import attach_iter, have_iter_target

pytestmark = pytest.mark.privileged
FIXTURES = Path(__file__).parents[1] / "packages" / "ebpf-elf" / "tests" / "fixtures"
BUILDS = ["", ".clang"]  # ziglang and clang objects of the same source
TASK = [("pid", "u32"), ("tgid", "u32"), ("comm", "char[16]")]


@pytest.mark.parametrize("build", BUILDS)
def test_c_task_and_ksym_iterators(build: str, pin_dir: str) -> None:
    require(have_iter_target, "task")
    require(have_iter_target, "ksym")
    with load_elf(FIXTURES / f"iters{build}.o", programs=["dump_task", "dump_ksym"]) as coll:
        with attach_iter(coll.programs["dump_task"]) as link:
            mine = [r for r in link.read_records(TASK) if r.pid == os.getpid()]
        with open("/proc/self/comm") as f:
            assert [(r.tgid, r.comm) for r in mine] == [(os.getpid(), f.read().strip())]
        with attach_iter(coll.programs["dump_ksym"]) as link:
            path = os.path.join(pin_dir, "ksyms")
            link.pin(path)  # a bpffs file every process can read
            text = subprocess.run(["cat", path], capture_output=True, text=True, check=True, timeout=60).stdout
    found = [line.split() for line in text.splitlines() if line.endswith(" bpf_prog_put")]
    with open("/proc/kallsyms") as f:
        listed = [line.split()[0] for line in f if line.split()[2] == "bpf_prog_put"]
    assert len(found) == 1 and int(found[0][0], 16) == int(listed[0], 16)


@pytest.mark.parametrize("build", BUILDS)
def test_c_map_element_iterator_sums_in_the_kernel(build: str) -> None:
    require(have_iter_target, "bpf_map_elem")
    values = {k: 3 * k + 1 for k in range(200)}
    with load_elf(FIXTURES / f"iters{build}.o", programs=["sum_values"]) as coll, \
            create_hash_map(256, key_size=4, value_size=8, name="c_vals") as vals:
        vals.update_batch(values.items())
        with attach_iter(coll.programs["sum_values"], map=vals) as link:
            assert list(link.read_records("u64")) == [sum(values.values())]
        assert coll.variables["sum"].get() == sum(values.values())


def transfer(algorithm: str) -> str:
    """4 MiB over loopback with ``algorithm``; the algorithm the socket reports (TCP_CONGESTION)."""
    with socket.create_server(("127.0.0.1", 0)) as srv, socket.socket() as c:
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, algorithm.encode())
        c.connect(srv.getsockname())
        peer, _ = srv.accept()

        def sink() -> None:
            with peer:
                while peer.recv(1 << 16):
                    pass

        t = threading.Thread(target=sink)
        t.start()
        for _ in range(64):
            c.sendall(bytes(1 << 16))
        used = c.getsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, 16).rstrip(b"\0").decode()
        c.shutdown(socket.SHUT_WR)
        t.join(timeout=60)
    return used


def selectable(algorithm: str) -> bool:
    with socket.socket() as s:
        try:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, algorithm.encode())
        except OSError as exc:
            assert exc.errno == errno.ENOENT
            return False
    return True


@pytest.mark.parametrize("build", BUILDS)
def test_c_congestion_control_from_struct_ops_link(build: str) -> None:
    require(have_struct_ops, "tcp_congestion_ops")
    require(have_link_type, "struct_ops")
    with load_elf(FIXTURES / f"struct_ops_cc{build}.o", programs=["c_ssthresh", "c_cong_avoid",
                                                                     "c_undo_cwnd"]) as coll:
        assert "c_unused" not in coll.programs  # no table uses it: not loaded
        ops = coll.maps["ebpf_reno"]
        assert isinstance(ops, StructOpsMap) and ops.link_mode and ops.struct_name == "tcp_congestion_ops"
        assert not selectable("ebpf_reno")
        with ops.register() as link:
            assert isinstance(link, StructOpsLink)
            assert transfer("ebpf_reno") == "ebpf_reno"
            assert coll.maps["calls"][0] > 0  # cong_avoid ran
        assert not selectable("ebpf_reno")


@pytest.mark.parametrize("build", BUILDS)
def test_c_congestion_control_from_struct_ops_by_update(build: str) -> None:
    require(have_struct_ops, "tcp_congestion_ops")
    require(have_link_type, "struct_ops")  # the object's other table is a .struct_ops.link one
    with load_elf(FIXTURES / f"struct_ops_cc{build}.o") as coll:
        old = coll.maps["ebpf_reno_old"]
        assert not old.link_mode
        with old.register():
            assert transfer("ebpf_reno_old") == "ebpf_reno_old" and coll.maps["calls"][0] > 0
        assert not selectable("ebpf_reno_old")


def _read(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


def _wait_for(path: str, want: str, seconds: float = 30.0) -> str:
    import time

    deadline = time.monotonic() + seconds
    while (value := _read(path)) != want and time.monotonic() < deadline:
        time.sleep(0.05)
    return value


@pytest.mark.parametrize("build", BUILDS)
def test_c_sched_ext_global_fifo(build: str) -> None:
    require(have_struct_ops, "sched_ext_ops")  # CONFIG_SCHED_CLASS_EXT (none of this host's or the matrix's kernels)
    require(have_link_type, "struct_ops")
    state = "/sys/kernel/sched_ext/state"
    with load_elf(FIXTURES / f"sched_fifo{build}.o") as coll:
        with coll.maps["ebpf_fifo"].register():
            assert _wait_for(state, "enabled") == "enabled"
            assert _read("/sys/kernel/sched_ext/root/ops") == "ebpf_fifo"
            done = subprocess.run(["sh", "-c", "for i in 1 2 3 4 5 6 7 8; do true; done; echo ok"],
                                  capture_output=True, text=True, timeout=60)
            assert done.stdout.strip() == "ok"  # tasks keep running under our scheduler
            assert coll.maps["enqueued"][0] > 0
        assert _wait_for(state, "disabled") == "disabled"  # the fair scheduler is back
