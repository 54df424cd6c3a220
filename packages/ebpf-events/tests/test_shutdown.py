"""Shutdown paths of the readers and consumers: stop()/close()/``with``/Ctrl-C take effect after the callback that
is running, close() from another thread wakes a waiting poll, stop()/close() from inside a callback, and readers
or consumers dropped unclosed are released with a ResourceWarning.

Every wait here is on a condition with a deadline; none of the bounds is a speed figure (bench_events.py has
those): they only tell "stopped after the running callback" from "stopped after the whole run of records".
"""

from __future__ import annotations

import gc
import os
import signal
import threading
import time
import warnings
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from ebpf.core import asm
from ebpf.core.errors import EBPFError
from ebpf.core.maps import create_ringbuf_map
from ebpf.core.programs import load_program
from ebpf.events.perf import PerfBuffer, PerfConsumer, create_perf_event_array
from ebpf.events.ringbuf import RingBuffer, RingBufferConsumer

pytestmark = pytest.mark.privileged
R0, R1, R2, R3, R4, R5, R10 = asm.R0, asm.R1, asm.R2, asm.R3, asm.R4, asm.R5, asm.R10
CURRENT_CPU = 0xFFFFFFFF
QUEUED = 3000  # records waiting when the consumer starts: one C-level run of the reader


def rb_program(rb: Any) -> Any:
    """XDP: bpf_ringbuf_output(rb, &{0x1122, 7}, 16, 0) per run."""
    return load_program(prog_type="xdp", name="sd_rb", maps=(rb,), insns=[
        asm.st_mem("dw", R10, -16, 0x1122), asm.st_mem("dw", R10, -8, 7), asm.ld_map_fd(R1, rb), asm.mov64(R2, R10),
        asm.add64(R2, -16), asm.mov64(R3, 16), asm.mov64(R4, 0), asm.call("ringbuf_output"), asm.mov64(R0, 2),
        asm.exit_()])


def perf_program(pm: Any) -> Any:
    """XDP: bpf_perf_event_output(ctx, pm, CURRENT_CPU, &{0x1122, 7}, 16) per run."""
    return load_program(prog_type="xdp", name="sd_perf", maps=(pm,), insns=[
        asm.st_mem("dw", R10, -16, 0x1122), asm.st_mem("dw", R10, -8, 7), asm.ld_map_fd(R2, pm),
        asm.ld_imm64(R3, CURRENT_CPU), asm.mov64(R4, R10), asm.add64(R4, -16), asm.mov64(R5, 16),
        asm.call("perf_event_output"), asm.mov64(R0, 2), asm.exit_()])


def wait_for(cond: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(0.002)


def consumer_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name in ("RingBufferConsumer", "PerfConsumer")]


class SlowCallback:
    """A 1 ms callback that notes how many calls began after ``stopping`` was set."""

    def __init__(self) -> None:
        self.calls = 0
        self.after_stop = 0
        self.stopping = False

    def __call__(self, *record: Any) -> None:
        if self.stopping:
            self.after_stop += 1
        self.calls += 1
        time.sleep(0.001)


@pytest.fixture
def ring() -> Iterator[tuple[Any, Any]]:
    """A ring buffer map (room for far more than QUEUED records) and a program filling it."""
    with create_ringbuf_map(1 << 18, name="sd_ring") as m, rb_program(m) as prog:
        yield m, prog


@pytest.fixture
def perf() -> Iterator[tuple[Any, Any]]:
    with create_perf_event_array(name="sd_perf") as pm, perf_program(pm) as prog:
        yield pm, prog


def make_consumer(kind: str, ring: Any, perf: Any, callback: Callable[..., Any]) -> tuple[Any, Any]:
    """A consumer of ``kind`` with QUEUED records waiting; (consumer, its program)."""
    if kind == "ringbuf":
        m, prog = ring
        consumer: Any = RingBufferConsumer(m, callback)
    else:
        m, prog = perf
        consumer = PerfConsumer(m, callback, buffer_pages=64)
    prog.test_run(bytes(64), repeat=QUEUED)
    return consumer, prog


def processed(consumer: Any) -> int:
    return int(consumer.stats().events_processed)


@pytest.mark.parametrize("kind", ["ringbuf", "perf"])
def test_stop_takes_effect_after_the_running_callback(kind: str, ring: Any, perf: Any) -> None:
    slow = SlowCallback()
    consumer, _ = make_consumer(kind, ring, perf, slow)
    with consumer:
        # the counters are current while the run of QUEUED records is being delivered
        wait_for(lambda: processed(consumer) >= 5)
        assert processed(consumer) < QUEUED
        slow.stopping = True
        consumer.stop()
        assert not consumer.running
        # at most the callback that was running when stop() began (and one starting in that instant)
        assert slow.after_stop <= 1
        assert processed(consumer) == slow.calls < QUEUED
        # the rest stayed in the reader: a restart delivers each of them, once
        slow.stopping = False
        consumer.start()
        wait_for(lambda: processed(consumer) == QUEUED, timeout=60)
        assert slow.calls == QUEUED
    assert not consumer.running and (consumer.ringbuf if kind == "ringbuf" else consumer.buffer).closed


@pytest.mark.parametrize("kind", ["ringbuf", "perf"])
def test_ctrl_c_in_a_with_block_propagates_as_keyboard_interrupt(kind: str, ring: Any, perf: Any) -> None:
    slow = SlowCallback()
    consumer, _ = make_consumer(kind, ring, perf, slow)
    # Python's own SIGINT handler (a process started in the background inherits SIGINT ignored)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt), consumer:
            wait_for(lambda: processed(consumer) >= 5)
            slow.stopping = True
            os.kill(os.getpid(), signal.SIGINT)  # KeyboardInterrupt in this (the main) thread
            wait_for(lambda: False, timeout=10)  # interrupted long before
    finally:
        signal.signal(signal.SIGINT, previous)
    assert not consumer.running and slow.after_stop <= 1 and slow.calls < QUEUED
    assert consumer.stats().last_error is None


@pytest.mark.parametrize("kind", ["ringbuf", "perf"])
def test_stop_and_close_from_inside_the_callback(kind: str, ring: Any, perf: Any) -> None:
    calls: list[int] = []
    holder: dict[str, Any] = {}

    def callback(*record: Any) -> None:
        calls.append(1)
        if len(calls) == 3:
            holder["c"].stop()  # no "cannot join current thread"
        if len(calls) == 4:
            holder["c"].close()

    consumer, _ = make_consumer(kind, ring, perf, callback)
    holder["c"] = consumer
    consumer.start()
    wait_for(lambda: not consumer.running)
    assert len(calls) == 3 and consumer.fatal_error is None and consumer.stats().errors == 0
    consumer.start()  # records after the third stayed in the reader
    wait_for(lambda: not consumer.running)
    reader = consumer.ringbuf if kind == "ringbuf" else consumer.buffer
    assert len(calls) == 4 and consumer.fatal_error is None and reader.closed  # released once it returned
    consumer.close()  # idempotent
    with pytest.raises(EBPFError, match="closed"):
        consumer.start()


@pytest.mark.parametrize("timeout_ms", [-1, None, 60_000])
@pytest.mark.parametrize("kind", ["ringbuf", "perf"])
def test_close_from_another_thread_wakes_a_waiting_poll(kind: str, timeout_ms: int | None, ring: Any,
                                                        perf: Any) -> None:
    reader: Any = RingBuffer(ring[0], lambda r: None) if kind == "ringbuf" else PerfBuffer(perf[0], lambda r: None)
    outcome: list[BaseException | int] = []
    inside = threading.Event()

    def poller() -> None:
        inside.set()
        try:
            outcome.append(reader.poll(timeout_ms))
        except BaseException as exc:  # the outcome is the test's subject
            outcome.append(exc)

    thread = threading.Thread(target=poller, daemon=True)
    thread.start()
    inside.wait(5)
    time.sleep(0.05)  # let it reach epoll_wait (an earlier close only makes poll() raise sooner)
    reader.close()
    thread.join(10)
    assert not thread.is_alive(), "poll() still blocked after close()"
    assert len(outcome) == 1
    result = outcome[0]
    assert result == 0 or (type(result) is EBPFError and "closed" in str(result)), repr(result)
    with pytest.raises(EBPFError, match="closed"):
        reader.poll(0)


def test_close_from_another_thread_wakes_wait_and_stops_a_drain(ring: Any) -> None:
    m, prog = ring
    rb = RingBuffer(m)
    errors: list[BaseException] = []

    def waiter() -> None:
        try:
            rb.wait(None)
        except EBPFError as exc:
            errors.append(exc)

    thread = threading.Thread(target=waiter, daemon=True)
    thread.start()
    time.sleep(0.05)
    rb.close()
    thread.join(10)
    assert not thread.is_alive() and len(errors) == 1 and "closed" in str(errors[0])
    # closed while a callback runs: that drain ends after its run, the mapping stays valid until it returns
    prog.test_run(bytes(64), repeat=50)
    seen: list[bytes] = []
    rb2 = RingBuffer(m, zero_copy=True)

    def callback(view: memoryview) -> None:
        if not seen:
            closer = threading.Thread(target=rb2.close)
            closer.start()
            closer.join(10)  # close() returns at once: the release waits for this drain
            assert rb2.closed
        seen.append(bytes(view))  # still readable

    n = rb2.consume(callback)
    assert n == len(seen) >= 1 and seen[0].startswith(b"\x22\x11") and rb2.closed
    with pytest.raises(EBPFError, match="closed"):
        rb2.available()


@pytest.mark.parametrize("kind", ["ringbuf", "perf"])
def test_a_started_consumer_dropped_unclosed_is_released_with_a_warning(kind: str, ring: Any, perf: Any) -> None:
    before = set(consumer_threads())
    holder = {"c": make_consumer(kind, ring, perf, lambda *r: None)[0]}
    holder["c"].start()
    wait_for(lambda: processed(holder["c"]) == QUEUED)
    thread = next(t for t in consumer_threads() if t not in before)
    reader = weakref.ref(holder["c"].ringbuf if kind == "ringbuf" else holder["c"].buffer)
    unclosed = f"unclosed {type(holder['c']).__name__}"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        del holder["c"]
        # the thread holds its consumer during a step: then the last reference (and the warning) goes when that
        # step ends, in the thread, a moment later (long under an emulated CPU)
        wait_for(lambda: gc.collect() >= 0 and any(issubclass(w.category, ResourceWarning) and unclosed in str(w.message)
                                                   for w in caught), timeout=60)
    thread.join(10)
    assert not thread.is_alive()  # the thread did not keep its owner alive, and ended with it
    gc.collect()
    assert reader() is None or reader().closed


@pytest.mark.parametrize("kind", ["ringbuf", "perf"])
def test_a_reader_collected_open_warns_and_is_released(kind: str, ring: Any, perf: Any) -> None:
    from ebpf.core.testing import open_fds

    fds = open_fds()
    reader: Any = RingBuffer(ring[0]) if kind == "ringbuf" else PerfBuffer(perf[0])
    assert open_fds() != fds
    with pytest.warns(ResourceWarning, match=f"unclosed {type(reader).__name__}"):
        del reader
        gc.collect()
    assert open_fds() == fds
    # closed ones do not warn
    with warnings.catch_warnings():
        warnings.simplefilter("error", ResourceWarning)
        with RingBuffer(ring[0]) if kind == "ringbuf" else PerfBuffer(perf[0]):
            pass
        consumer = RingBufferConsumer(ring[0], print) if kind == "ringbuf" else PerfConsumer(perf[0], print)
        consumer.start()
        consumer.close()
        del consumer
        gc.collect()
    assert open_fds() == fds
