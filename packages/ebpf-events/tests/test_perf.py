"""Perf event buffers against the real kernel: a tracepoint event, forced overflow, bulk reading."""

from __future__ import annotations

import os
import struct
import subprocess
import time
from typing import Any

import numpy as np  # the bulk readers' extra, ebpf-events[numpy]; part of the test dependencies
import pytest
from ebpf.core import asm
from ebpf.core.errors import EBPFError
from ebpf.core.maps import create_ringbuf_map
from ebpf.core.plugins import open_events
from ebpf.core.programs import load_program
from ebpf.events.perf import PerfBuffer, PerfConsumer, create_perf_event_array

pytestmark = pytest.mark.privileged
R0, R1, R2, R3, R4, R5, R6, R10 = asm.R0, asm.R1, asm.R2, asm.R3, asm.R4, asm.R5, asm.R6, asm.R10
CURRENT_CPU = 0xFFFFFFFF


def exec_perf_program(pm: Any) -> Any:
    """Tracepoint program: {pid, pad, comm[16]} on the stack, bpf_perf_event_output(ctx, pm, CURRENT_CPU, ...)."""
    insns = [
        asm.mov64(R6, R1),
        asm.call("get_current_pid_tgid"), asm.rsh64(R0, 32), asm.stx_mem("dw", R10, R0, -24),
        asm.mov64(R1, R10), asm.add64(R1, -16), asm.mov64(R2, 16), asm.call("get_current_comm"),
        asm.mov64(R1, R6), asm.ld_map_fd(R2, pm), asm.ld_imm64(R3, CURRENT_CPU),
        asm.mov64(R4, R10), asm.add64(R4, -24), asm.mov64(R5, 24), asm.call("perf_event_output"),
        asm.mov64(R0, 0), asm.exit_(),
    ]
    return load_program(prog_type="tracepoint", insns=insns, name="exec_perf", maps=(pm,))


def xdp_perf_program(pm: Any, size: int = 16) -> Any:
    """XDP program emitting {0x1122, 7, 8, 9, ...} (``size`` bytes, a multiple of 8) per run."""
    words = [0x1122, 7, *range(8, 8 + size // 8 - 2)]
    insns = [
        *(asm.st_mem("dw", R10, -size + 8 * i, w) for i, w in enumerate(words)),
        asm.ld_map_fd(R2, pm), asm.ld_imm64(R3, CURRENT_CPU), asm.mov64(R4, R10), asm.add64(R4, -size),
        asm.mov64(R5, size), asm.call("perf_event_output"), asm.mov64(R0, 2), asm.exit_(),
    ]
    return load_program(prog_type="xdp", insns=insns, name="perf_out", maps=(pm,))


@pytest.fixture
def pmap() -> Any:
    with create_perf_event_array(name="ev_test_perf") as m:
        yield m


def test_tracepoint_exec_event_through_perf_buffer(pmap: Any) -> None:
    from ebpf.events.tracing import attach_tracepoint

    seen: dict[int, str] = {}

    def on_sample(data: bytes) -> None:
        pid, comm = struct.unpack_from("<Q16s", data)
        seen[pid] = comm.split(b"\0", 1)[0].decode()  # before 6.2 the helper leaves the tail after the NUL as it was

    with exec_perf_program(pmap) as prog, attach_tracepoint(prog, "sched:sched_process_exec"), \
            PerfBuffer(pmap, on_sample, buffer_pages=8) as pb:
        child = subprocess.Popen(["/bin/true"])
        child.wait()
        deadline = time.monotonic() + 5
        while child.pid not in seen and time.monotonic() < deadline:
            pb.poll(200)
        assert pb.lost == 0
    assert seen.get(child.pid) == "true"


def test_forced_overflow_reports_lost_samples(pmap: Any) -> None:
    lost: list[tuple[int, int]] = []
    affinity = os.sched_getaffinity(0)
    cpu = min(affinity)
    os.sched_setaffinity(0, {cpu})  # both runs must fill the same CPU's ring
    try:
        with xdp_perf_program(pmap) as prog, \
                PerfBuffer(pmap, lambda d: None, lambda c, n: lost.append((c, n)), buffer_pages=1) as pb:
            prog.test_run(bytes(64), repeat=1000)  # 32-byte records: one page holds 128
            first = pb.read_batch()
            assert 0 < len(first) < 1000
            prog.test_run(bytes(64))  # the kernel writes the LOST record once space is free again
            assert pb.consume() == 1
    finally:
        os.sched_setaffinity(0, affinity)
    assert pb.lost == 1000 - len(first) and lost == [(cpu, pb.lost)]


def test_samples_callback_batch_and_numpy(pmap: Any) -> None:
    with xdp_perf_program(pmap) as prog, PerfBuffer(pmap, buffer_pages=4, with_cpu=True) as pb:
        prog.test_run(bytes(64), repeat=300)  # 9600 bytes in a 16 KiB ring: records wrap on the next round
        got: list[tuple[int, bytes]] = []
        assert pb.consume(lambda cpu, d: got.append((cpu, d))) == 300
        assert all(cpu in pb.cpus and d[:16] == struct.pack("<QQ", 0x1122, 7) and len(d) == 20 for cpu, d in got)
        prog.test_run(bytes(64), repeat=300)
        arr = pb.read_array(np.dtype([("v", "<u8"), ("seven", "<u8")]), max_events=250)
        assert len(arr) == 250 and (arr["v"] == 0x1122).all() and (arr["seven"] == 7).all()
        assert len(pb.read_batch()) == 50
        prog.test_run(bytes(64), repeat=300)
        assert len(pb.read_array("V16")) == 300 and pb.lost == 0


def test_records_wrapping_around_the_ring_end(pmap: Any) -> None:
    expected = struct.pack("<4Q", 0x1122, 7, 8, 9)
    with xdp_perf_program(pmap, 32) as prog, PerfBuffer(pmap, buffer_pages=1) as pb:
        # 48-byte records in a 4096-byte ring: every few rounds one record straddles the end
        for _ in range(6):
            prog.test_run(bytes(64), repeat=50)
            batch = pb.read_batch()
            assert len(batch) == 50 and all(d[:32] == expected for d in batch)
            prog.test_run(bytes(64), repeat=50)
            arr = pb.read_array(np.dtype("<4u8"))
            assert arr.shape == (50, 4) and (arr == [0x1122, 7, 8, 9]).all()
        assert pb.lost == 0


def test_consumer_thread_and_open_events(pmap: Any) -> None:
    with xdp_perf_program(pmap) as prog:
        got: list[bytes] = []

        def callback(data: bytes) -> None:
            if len(got) == 1:
                got.append(b"")
                raise RuntimeError("bad sample")
            got.append(data)

        with PerfConsumer(pmap, callback, buffer_pages=8) as consumer:
            prog.test_run(bytes(64), repeat=20)
            deadline = time.monotonic() + 5
            while consumer.stats().events_read < 20 and time.monotonic() < deadline:
                time.sleep(0.01)
            stats = consumer.stats()
        assert not consumer.running
        assert stats.events_read == 20 and stats.events_processed == 19 and stats.errors == 1
        assert stats["lost"] == 0 and stats.polls >= 1 and stats.uptime_ms > 0
        consumer = PerfConsumer(pmap, got.append, buffer_pages=2)
        prog.test_run(bytes(64), repeat=3)
        assert len(consumer.read_batch()) == 3 and consumer.fileno() >= 0
        consumer.start()
        with pytest.raises(EBPFError, match="stop"):
            consumer.read_batch()
        consumer.close()
        reader = open_events(pmap, buffer_pages=2)
        assert isinstance(reader, PerfBuffer)
        reader.close()


def test_bad_input(pmap: Any) -> None:
    fds = len(os.listdir("/proc/self/fd"))
    with create_ringbuf_map(4096) as rb, pytest.raises(EBPFError, match="perf_event_array"):
        PerfBuffer(rb)
    with pytest.raises(EBPFError, match="power of two"):
        PerfBuffer(pmap, buffer_pages=3)
    with pytest.raises(EBPFError, match="slot"):
        PerfBuffer(pmap, cpus=[10_000])
    with pytest.raises(EBPFError, match="callable"):
        PerfConsumer(pmap, "nope")  # type: ignore[arg-type]
    pb = PerfBuffer(pmap, buffer_pages=1)
    with pytest.raises(EBPFError, match="no callback"):
        pb.consume()
    pb.close()
    with pytest.raises(EBPFError, match="closed"):
        pb.read_batch()
    assert len(os.listdir("/proc/self/fd")) == fds
