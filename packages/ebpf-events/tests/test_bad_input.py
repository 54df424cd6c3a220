"""Bad input across the package: readers used after close, callbacks that raise, wrong arguments to the
readers and to every attach function.  Each case must give our error (before any syscall where the input
alone is wrong), leave no fd open and no thread running."""

from __future__ import annotations

import asyncio
import os
import struct
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from ebpf.core import asm
from ebpf.core.errors import AttachError, EBPFError, ELFError
from ebpf.core.maps import create_hash_map, create_ringbuf_map
from ebpf.core.programs import load_program
from ebpf.events import tracing
from ebpf.events.perf import PerfBuffer, PerfConsumer, create_perf_event_array
from ebpf.events.ringbuf import RingBuffer, RingBufferConsumer, RingBufferPoller, peek_events, process_events

pytestmark = pytest.mark.privileged
R0, R1, R2, R3, R4, R5, R10 = asm.R0, asm.R1, asm.R2, asm.R3, asm.R4, asm.R5, asm.R10
CURRENT_CPU = 0xFFFFFFFF
RETURN_0 = [asm.mov64(R0, 0), asm.exit_()]


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def our_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name in ("RingBufferConsumer", "PerfConsumer")]


@pytest.fixture
def no_leaks() -> Iterator[None]:
    """The test leaves the fd count and the consumer threads as it found them."""
    fds, threads = open_fds(), our_threads()
    yield
    assert open_fds() == fds and our_threads() == threads


def rb_program(rb: Any) -> Any:
    """XDP: bpf_ringbuf_output(rb, &{0x1122, 7}, 16, 0)."""
    return load_program(prog_type="xdp", insns=[
        asm.st_mem("dw", R10, -16, 0x1122), asm.st_mem("dw", R10, -8, 7), asm.ld_map_fd(R1, rb), asm.mov64(R2, R10),
        asm.add64(R2, -16), asm.mov64(R3, 16), asm.mov64(R4, 0), asm.call("ringbuf_output"), asm.mov64(R0, 2),
        asm.exit_()], maps=(rb,))


def perf_program(pm: Any) -> Any:
    """XDP: bpf_perf_event_output(ctx, pm, CURRENT_CPU, &{0x1122, 7}, 16)."""
    return load_program(prog_type="xdp", insns=[
        asm.st_mem("dw", R10, -16, 0x1122), asm.st_mem("dw", R10, -8, 7), asm.ld_map_fd(R2, pm),
        asm.ld_imm64(R3, CURRENT_CPU), asm.mov64(R4, R10), asm.add64(R4, -16), asm.mov64(R5, 16),
        asm.call("perf_event_output"), asm.mov64(R0, 2), asm.exit_()], maps=(pm,))


def wait_for(cond: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 5
    while not cond() and time.monotonic() < deadline:
        time.sleep(0.01)


def test_ring_buffer_used_after_close(no_leaks: None) -> None:
    with create_ringbuf_map(4096) as m:
        rb = RingBuffer(m, lambda r: None)
        rb.close()
        calls: list[Callable[[], Any]] = [
            rb.consume, lambda: rb.poll(0), rb.read_batch, rb.peek, rb.fileno, rb.available, rb.wait,
            lambda: rb.consumer_pos, lambda: list(rb), lambda: rb.read_array("u8"),
        ]
        for call in calls:
            with pytest.raises(EBPFError, match="closed"):
                call()

        async def aiterate() -> None:
            async for _ in rb:
                pass

        with pytest.raises(EBPFError, match="closed"):
            asyncio.run(aiterate())
        with pytest.raises(EBPFError, match="closed"):
            process_events(rb, print)
        with pytest.raises(EBPFError, match="closed"):
            peek_events(rb)
        poller = RingBufferPoller()
        with pytest.raises(EBPFError, match="closed"):
            poller.add(rb)
        poller.close()
        with pytest.raises(EBPFError, match="closed"):
            poller.fileno()
        consumer = RingBufferConsumer(m, lambda r: None)
        consumer.close()
        with pytest.raises(EBPFError, match="closed"):
            consumer.start()


def test_ring_buffer_bad_arguments(no_leaks: None) -> None:
    with create_ringbuf_map(4096) as m, create_hash_map(4) as h:
        with pytest.raises(EBPFError, match="needs a ringbuf map, not a hash map"):
            RingBuffer(h)
        with pytest.raises(EBPFError, match="needs a ringbuf map"):
            RingBufferConsumer(h, print)
        with pytest.raises(EBPFError, match="needs a ringbuf map"):
            process_events(h, print)
        with pytest.raises(EBPFError, match="callable"):
            process_events(m, "print")  # type: ignore[arg-type]
        with pytest.raises(EBPFError, match="parser must be callable"):
            RingBuffer(m, parser=3)  # type: ignore[arg-type]
        with pytest.raises(EBPFError, match="filter must be callable"):
            RingBufferConsumer(m, print, filter=1)  # type: ignore[arg-type]
        with pytest.raises(EBPFError, match="RingBufferPoller takes RingBuffer"):
            RingBufferPoller(m)  # type: ignore[arg-type]
        with RingBuffer(m) as rb:
            with pytest.raises(EBPFError, match="max_events"):
                rb.read_batch(True)
            with pytest.raises(EBPFError, match="timeout_ms"):
                rb.wait("soon")  # type: ignore[arg-type]
            with pytest.raises(EBPFError, match="non-empty fixed-size dtype"):
                rb.read_array([])
            with pytest.raises(EBPFError, match="no callback"):
                RingBufferPoller(rb)
        consumer = RingBufferConsumer(m, print)
        with pytest.raises(EBPFError, match="poll_interval_ms"):
            consumer.start(poll_interval_ms=0)
        consumer.start()
        with pytest.raises(EBPFError, match="already running"):
            consumer.start()
        consumer.close()
    m.close()
    with pytest.raises(EBPFError, match="closed"):
        RingBuffer(m)


def test_ring_buffer_callback_that_raises(no_leaks: None) -> None:
    with create_ringbuf_map(4096) as m, rb_program(m) as prog:
        seen: list[bytes] = []

        def callback(record: bytes) -> None:
            seen.append(record)
            if len(seen) == 2:
                raise KeyError("handler failed")

        with RingBuffer(m, callback) as rb:
            prog.test_run(bytes(64), repeat=3)
            with pytest.raises(KeyError, match="handler failed"):  # the user's own exception, untouched
                rb.poll(1000)
            assert rb.poll(0) == 1 and len(seen) == 3 and rb.available() == 0
        # on the consumer thread: counted, logged, and the thread carries on until stopped
        with RingBufferConsumer(m, lambda r: 1 / 0) as consumer:
            prog.test_run(bytes(64), repeat=4)
            wait_for(lambda: consumer.stats().errors >= 4)
            assert consumer.running
        stats = consumer.stats()
        assert stats.errors == 4 and "ZeroDivisionError" in (stats.last_error or "") and not stats.running


def test_perf_buffer_used_after_close_and_bad_arguments(no_leaks: None) -> None:
    with create_perf_event_array(name="bad_perf") as pm, create_ringbuf_map(4096) as rbm:
        for kwargs, match in [({"buffer_pages": 0}, "power of two"), ({"buffer_pages": True}, "power of two"),
                              ({"cpus": []}, "no CPUs"), ({"cpus": [-1]}, "slot"),
                              ({"wakeup_events": 0}, "wakeup_events"), ({"watermark_bytes": -1}, "watermark"),
                              ({"callback": 5}, "callback must be callable"),
                              ({"lost_callback": "x"}, "lost_callback must be callable")]:
            with pytest.raises(EBPFError, match=match):
                PerfBuffer(pm, **kwargs)
        with pytest.raises(EBPFError, match="needs a perf_event_array map, not a ringbuf map"):
            PerfConsumer(rbm, print)
        with pytest.raises(EBPFError, match="lost_callback"):
            PerfConsumer(pm, print, lost_callback=7)  # type: ignore[arg-type]
        pb = PerfBuffer(pm, print, buffer_pages=1)
        with pytest.raises(EBPFError, match="non-empty"):
            pb.read_array([])
        pb.close()
        pb.close()
        for call in (pb.consume, lambda: pb.poll(0), pb.read_batch, pb.fileno, lambda: pb.read_array("u8")):
            with pytest.raises(EBPFError, match="closed"):
                call()
        consumer = PerfConsumer(pm, print, buffer_pages=1)
        with pytest.raises(EBPFError, match="poll_interval_ms"):
            consumer.start(poll_interval_ms=-5)
        consumer.close()
        with pytest.raises(EBPFError, match="closed"):
            consumer.start()
        with pytest.raises(EBPFError, match="closed"):
            consumer.read_batch()


def test_perf_callback_that_raises(no_leaks: None) -> None:
    with create_perf_event_array(name="bad_perf") as pm, perf_program(pm) as prog:
        seen: list[bytes] = []

        def callback(data: bytes) -> None:
            seen.append(data)
            if len(seen) == 1:
                raise RuntimeError("first sample rejected")

        with PerfBuffer(pm, callback, buffer_pages=1) as pb:
            prog.test_run(bytes(64), repeat=3)
            with pytest.raises(RuntimeError, match="first sample rejected"):
                pb.consume()
            assert pb.consume() == 2 and len(seen) == 3
            assert all(struct.unpack_from("<QQ", d) == (0x1122, 7) for d in seen)


def test_tracing_bad_input(no_leaks: None, tmp_path: Any) -> None:
    not_elf = tmp_path / "script.sh"
    not_elf.write_text("#!/bin/sh\n")
    with load_program(prog_type="kprobe", insns=RETURN_0) as kp, \
            load_program(prog_type="tracepoint", insns=RETURN_0) as tp, \
            load_program(prog_type="perf_event", insns=RETURN_0) as pe:
        cases: list[tuple[Callable[[], Any], type[Exception], str]] = [
            (lambda: tracing.list_tracepoints("../sched"), EBPFError, "bad tracepoint category"),
            (lambda: tracing.attach_tracepoint(tp, "sched"), EBPFError, "category:name"),
            (lambda: tracing.attach_tracepoint(tp, "no_such_category", "x"), AttachError, "no tracepoint"),
            (lambda: tracing.attach_raw_tracepoint(tp, "sys_enter"), EBPFError, "raw_tracepoint"),
            (lambda: tracing.attach_uprobe(kp, "libc.so.6", "strverscmp", pid=-7), EBPFError, "pid"),
            (lambda: tracing.attach_uprobe(kp, "libc.so.6"), EBPFError, "positive file offset"),
            (lambda: tracing.attach_uprobe(kp, "no_such_library_xyz.so.1", "f"), AttachError, "no such binary"),
            (lambda: tracing.attach_uprobe(kp, str(not_elf), "main"), ELFError, "not an ELF"),
            (lambda: tracing.attach_uretprobe(tp, "libc.so.6", "strverscmp"), EBPFError, "needs a kprobe"),
            (lambda: tracing.attach_uprobe(kp, 42, "main"), EBPFError, "binary must be a path"),  # type: ignore
            (lambda: tracing.attach_kretprobe(tp, "do_sys_openat2"), EBPFError, "needs a kprobe"),
            (lambda: tracing.attach_kprobe(kp, "do_sys_openat2", -1), EBPFError, "offset"),
            (lambda: tracing.attach_perf_event(pe, "no-such-event"), EBPFError, "unknown perf event"),
            (lambda: tracing.attach_perf_event(pe, sample_period=10, sample_freq=10), EBPFError, "not both"),
            (lambda: tracing.attach_perf_event(pe, sample_period=0), EBPFError, "positive"),
            (lambda: tracing.attach_perf_event(pe, (1, -1)), EBPFError, "perf event must be"),
            (lambda: tracing.attach_fexit(kp), EBPFError, "tracing"),
            (lambda: tracing.load_tracing_program(RETURN_0, "kretprobe", "x"), EBPFError, "unknown tracing kind"),
            (lambda: tracing.list_usdt(True), EBPFError, "path or a pid"),
            (lambda: tracing.list_usdt("/no/such/file"), AttachError, "no such binary"),
            (lambda: tracing.list_usdt(str(not_elf)), ELFError, "not an ELF"),
            (lambda: tracing.attach_usdt(tp, "/usr/bin/true", "p", "n"), EBPFError, "needs a kprobe"),
            (lambda: tracing.attach_usdt(kp, "/no/such/file", "p", "n"), AttachError, "no such binary"),
        ]
        for call, exc, match in cases:
            with pytest.raises(exc, match=match):
                call()
        with pytest.raises(EBPFError, match="no process"):
            tracing.list_usdt(2**22 + 12345)
    with pytest.raises(EBPFError, match="closed"):
        tracing.attach_uprobe(kp, "libc.so.6", "strverscmp")
