"""Ring buffer reading against the real kernel: tracepoint events, XDP test runs, bad input."""

from __future__ import annotations

import asyncio
import os
import selectors
import struct
import subprocess
import sys
import time
from typing import Any

import numpy as np  # the bulk readers' extra, ebpf-events[numpy]; part of the test dependencies
import pytest
from ebpf.core import asm
from ebpf.core.errors import EBPFError, NotSupportedError
from ebpf.core.maps import create_array_map, create_ringbuf_map
from ebpf.core.plugins import open_events
from ebpf.core.programs import load_program
from ebpf.events.ringbuf import (
    RingBuffer,
    RingBufferConsumer,
    RingBufferPoller,
    make_event_handler,
    peek_events,
    process_events,
)

pytestmark = pytest.mark.privileged
R0, R1, R2, R3, R4, R6, R7, R10 = asm.R0, asm.R1, asm.R2, asm.R3, asm.R4, asm.R6, asm.R7, asm.R10
EVENT = struct.Struct("<I4x16s")  # pid, padding, comm


def exec_event_program(rb: Any) -> Any:
    """Tracepoint program: reserve {pid, comm} in ``rb``, fill it, submit."""
    insns = [
        asm.ld_map_fd(R1, rb), asm.mov64(R2, EVENT.size), asm.mov64(R3, 0), asm.call("ringbuf_reserve"),
        asm.jeq(R0, 0, "out"),
        asm.mov64(R7, R0),
        asm.call("get_current_pid_tgid"), asm.rsh64(R0, 32), asm.stx_mem("w", R7, R0, 0),
        asm.mov64(R1, R7), asm.add64(R1, 8), asm.mov64(R2, 16), asm.call("get_current_comm"),
        asm.mov64(R1, R7), asm.mov64(R2, 0), asm.call("ringbuf_submit"),
        asm.label("out"), asm.mov64(R0, 0), asm.exit_(),
    ]
    return load_program(prog_type="tracepoint", insns=insns, name="exec_rb", maps=(rb,))


def xdp_output_program(rb: Any, value: int = 0x1122, discard_every_other: bool = False) -> Any:
    """XDP program emitting one 16-byte record {value, 7} per run (optionally discarding odd runs)."""
    body = [asm.ld_map_fd(R1, rb), asm.mov64(R2, 16), asm.mov64(R3, 0), asm.call("ringbuf_reserve"),
            asm.jeq(R0, 0, "out"), asm.st_mem("dw", R0, 0, value), asm.st_mem("dw", R0, 8, 7),
            asm.mov64(R1, R0), asm.mov64(R2, 0)]
    if discard_every_other:
        # a per-program counter in the stack is reset each run; use the packet length parity instead
        body += [asm.ldx_mem("w", R3, R6, 4), asm.ldx_mem("w", R4, R6, 0), asm.sub64(R3, R4), asm.and64(R3, 1),
                 asm.jeq(R3, 0, "keep"), asm.call("ringbuf_discard"), asm.jmp_a("out"), asm.label("keep")]
    body += [asm.call("ringbuf_submit"), asm.label("out"), asm.mov64(R0, 2), asm.exit_()]
    return load_program(prog_type="xdp", insns=[asm.mov64(R6, R1), *body], name="rb_out", maps=(rb,))


@pytest.fixture
def rbmap() -> Any:
    with create_ringbuf_map(1 << 16, name="ev_test_rb") as m:
        yield m


def _exec_true() -> int:
    proc = subprocess.run(["/bin/true"], check=True)
    assert proc.returncode == 0
    return 0


def test_tracepoint_exec_event_read_back(rbmap: Any) -> None:
    from ebpf.events.tracing import attach_tracepoint

    with exec_event_program(rbmap) as prog, attach_tracepoint(prog, "sched", "sched_process_exec"):
        seen: list[tuple[int, str]] = []
        with RingBuffer(rbmap, lambda r: seen.append(EVENT.unpack(r)), zero_copy=True) as rb:
            child = subprocess.Popen(["/bin/true"])
            child.wait()
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and not any(pid == child.pid for pid, _ in seen):
                rb.poll(200)
    comms = {pid: comm.split(b"\0", 1)[0].decode() for pid, comm in seen}  # the tail after the NUL: any bytes
    assert comms.get(child.pid) == "true"


def test_program_attach_through_plugin_and_open_events(rbmap: Any) -> None:
    with exec_event_program(rbmap) as prog, prog.attach("syscalls:sys_enter_execve") as link:
        reader = open_events(rbmap)
        assert isinstance(reader, RingBuffer)
        with reader:
            child = subprocess.Popen(["/bin/true"])
            child.wait()
            reader.wait(2000)
            events = [EVENT.unpack(r) for r in reader.read_batch(timeout_ms=1000)]
    assert link.closed
    # sys_enter_execve fires in the child before the exec: the comm is still the parent's
    assert any(pid == child.pid for pid, _ in events)


def test_xdp_records_callback_batch_numpy_and_peek(rbmap: Any) -> None:
    with xdp_output_program(rbmap) as prog, RingBuffer(rbmap) as rb:
        prog.test_run(bytes(64), repeat=10)
        assert len(rb.peek()) == 10 and len(peek_events(rb, max_events=3)) == 3
        got: list[bytes] = []
        assert rb.consume(got.append, max_events=4) == 4
        assert all(isinstance(r, bytes) and struct.unpack("<QQ", r) == (0x1122, 7) for r in got)
        batch = rb.read_batch()
        assert len(batch) == 6 and rb.available() == 0
        prog.test_run(bytes(64), repeat=100)
        arr = rb.read_array([("value", "<u8"), ("seven", "<u8")], max_events=60)
        assert arr.shape == (60,) and (arr["value"] == 0x1122).all() and (arr["seven"] == 7).all()
        rest = rb.read_array(np.dtype([("value", "<u8"), ("seven", "<u8")]))
        assert len(rest) == 40 and rb.available() == 0 and len(list(rb)) == 0


def test_records_across_the_ring_end_are_contiguous() -> None:
    with create_ringbuf_map(4096) as small, xdp_output_program(small) as prog, RingBuffer(small) as rb:
        for _ in range(10):  # 24-byte records in a 4096-byte ring: the data area's double mapping at work
            prog.test_run(bytes(64), repeat=100)
            assert [struct.unpack("<QQ", r) for r in rb.read_batch()] == [(0x1122, 7)] * 100
            prog.test_run(bytes(64), repeat=100)
            arr = rb.read_array("<2u8")
            assert arr.shape == (100, 2) and (arr == [0x1122, 7]).all()
        assert rb.consumer_pos == rb.producer_pos == 20 * 100 * 24


def test_discarded_records_are_skipped_in_every_mode(rbmap: Any) -> None:
    with xdp_output_program(rbmap, discard_every_other=True) as prog, RingBuffer(rbmap) as rb:
        for length in (64, 65, 64, 65):
            prog.test_run(bytes(length))
        assert rb.available() == 4 * 24 and len(rb.read_batch()) == 2
        for length in (64, 65) * 5:
            prog.test_run(bytes(length))
        arr = rb.read_array("V16")
        assert len(arr) == 5 and rb.available() == 0


def test_several_ring_buffers_polled_together_and_selectors() -> None:
    with create_ringbuf_map(1 << 14) as m1, create_ringbuf_map(1 << 14) as m2, \
            xdp_output_program(m1, 1) as p1, xdp_output_program(m2, 2) as p2:
        got: list[int] = []
        with RingBuffer(m1, lambda r: got.append(r[0])) as rb1, RingBuffer(m2, lambda r: got.append(r[0])) as rb2, \
                RingBufferPoller(rb1, rb2) as poller:
            assert poller.poll(0) == 0
            sel = selectors.DefaultSelector()
            sel.register(poller.fileno(), selectors.EVENT_READ)
            assert sel.select(0) == []
            p1.test_run(bytes(64), repeat=3)
            p2.test_run(bytes(64), repeat=2)
            assert len(sel.select(1)) == 1
            sel.close()
            assert poller.poll(1000) == 5
    assert sorted(got) == [1, 1, 1, 2, 2]


def test_async_iteration(rbmap: Any) -> None:
    with xdp_output_program(rbmap) as prog, RingBuffer(rbmap) as rb:
        async def main() -> list[bytes]:
            loop = asyncio.get_running_loop()
            loop.call_later(0.05, lambda: prog.test_run(bytes(64), repeat=3))
            out = []
            async for record in rb:
                out.append(record)
                if len(out) == 3:
                    break
            return out

        records = asyncio.run(main())
    assert [struct.unpack("<QQ", r) for r in records] == [(0x1122, 7)] * 3


def test_consumer_thread_pipeline_and_failing_callback(rbmap: Any) -> None:
    with xdp_output_program(rbmap) as prog:
        kept: list[int] = []
        calls = {"n": 0}

        def callback(value: int) -> None:
            calls["n"] += 1
            if calls["n"] == 2:
                raise ValueError("boom")
            kept.append(value)

        errors: list[BaseException] = []
        consumer = RingBufferConsumer(rbmap, callback, parser=lambda r: struct.unpack("<QQ", r)[0],
                                      filter=lambda v: v == 0x1122, transform=lambda v: v + 1,
                                      on_error=errors.append)
        with consumer:
            prog.test_run(bytes(64), repeat=5)
            deadline = time.monotonic() + 5
            while consumer.stats().events_processed < 5 and time.monotonic() < deadline:
                time.sleep(0.01)
            stats = consumer.stats()
            assert consumer.running
        assert not consumer.running and consumer.ringbuf.closed
    assert stats["events_processed"] == 5 and stats.errors == 1 and stats.batches_read >= 1
    assert "boom" in (stats.last_error or "") and isinstance(errors[0], ValueError)
    assert kept == [0x1123] * 4 and stats.events_per_second > 0


def test_consumer_reports_a_fatal_error_and_stops(rbmap: Any) -> None:
    consumer = RingBufferConsumer(rbmap, lambda r: None).start(poll_interval_ms=10)
    consumer.ringbuf.close()  # the reader is gone under the running thread
    deadline = time.monotonic() + 5
    while consumer.running and time.monotonic() < deadline:
        time.sleep(0.01)
    stats = consumer.stats()
    consumer.close()
    assert not stats.running and stats.errors == 1 and "closed" in (stats.last_error or "")
    assert isinstance(consumer.fatal_error, EBPFError)


def test_process_events_and_make_event_handler(rbmap: Any) -> None:
    with xdp_output_program(rbmap) as prog:
        prog.test_run(bytes(64), repeat=4)
        out: list[int] = []
        handler = make_event_handler(parser=lambda r: struct.unpack("<QQ", r), transform=lambda t: t[1],
                                     handler=out.append)
        assert process_events(rbmap, handler, max_events=3) == 3
        assert process_events(rbmap, out.append, timeout_ms=10, parser=lambda r: len(r)) == 1
    assert out == [7, 7, 7, 16]
    assert make_event_handler(filter=lambda e: False)(b"x") is None


def test_read_array_without_numpy_is_a_clear_error(rbmap: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "numpy", None)  # as if NumPy were not installed
    with RingBuffer(rbmap) as rb, pytest.raises(NotSupportedError, match=r"ebpf-events\[numpy\]"):
        rb.read_array("u8")


def test_bad_input_and_use_after_close(rbmap: Any) -> None:
    fds = len(os.listdir("/proc/self/fd"))
    with create_array_map(4) as arr, pytest.raises(EBPFError, match="ringbuf"):
        RingBuffer(arr)
    with pytest.raises(EBPFError):
        RingBuffer("not a map")
    with pytest.raises(EBPFError, match="callable"):
        RingBuffer(rbmap, callback=42)  # type: ignore[arg-type]
    with pytest.raises(EBPFError, match="callable"):
        RingBufferConsumer(rbmap, None)  # type: ignore[arg-type]
    rb = RingBuffer(rbmap)
    with pytest.raises(EBPFError, match="no callback"):
        rb.poll(0)
    with pytest.raises(EBPFError, match="max_events"):
        rb.read_batch(-1)
    rb.close()
    rb.close()
    for call in (lambda: rb.poll(0), rb.read_batch, rb.fileno, rb.peek, lambda: rb.read_array("u8")):
        with pytest.raises(EBPFError, match="closed"):
            call()
    assert len(os.listdir("/proc/self/fd")) == fds
