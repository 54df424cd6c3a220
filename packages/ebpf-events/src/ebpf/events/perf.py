"""Perf event buffers: reading ``BPF_MAP_TYPE_PERF_EVENT_ARRAY`` output (``bpf_perf_event_output``).

One ``PERF_COUNT_SW_BPF_OUTPUT`` software event is opened per CPU with
``perf_event_open``, its ring mmap'ed (one control page + ``buffer_pages`` data pages)
and its fd stored in the map slot of that CPU.  Records can wrap around the end of the
ring (they are stitched together here); ``PERF_RECORD_LOST`` records are counted in
:attr:`PerfBuffer.lost` and passed to ``lost_callback(cpu, count)``, so lost samples are
never hidden.

A sample's data is what the program passed, followed by the padding the kernel adds so
records stay 8-byte aligned (``len(data) == round_up(size + 4, 8) - 4``).
"""

from __future__ import annotations

import mmap
import select
import struct
import sys
import weakref
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import asdict
from itertools import chain, repeat
from operator import length_hint
from typing import Any

from ebpf.core.errors import BPFSyscallError, EBPFError
from ebpf.core.lowlevel import close_fd
from ebpf.core.lowlevel import perf as _perf
from ebpf.core.lowlevel.perf import PerfEventAttr, perf_event_open
from ebpf.core.maps import create_perf_event_array as _core_create_perf_event_array
from ebpf.core.records import dataclass
from ebpf.core.system import online_cpus
from ebpf.core.types import MapType
from ebpf.events._common import (
    BackgroundLoop,
    GuardedReader,
    Halt,
    Waker,
    check_map,
    close_mmap,
    make_event_handler,
    map_shared,
    numpy,
    record_error,
)
from ebpf.events._perfarray import read_array as _read_array

__all__ = [
    "PerfBuffer",
    "PerfConsumer",
    "PerfConsumerStats",
    "create_perf_event_array",
    "perf_event_open",
    "PerfEventAttr",
    "PERF_RECORD_SAMPLE",
    "PERF_RECORD_LOST",
]

PERF_RECORD_LOST = 2
PERF_RECORD_SAMPLE = 9
_DATA_HEAD = 1024 // 8  # u64 index of perf_event_mmap_page.data_head
_DATA_TAIL = 1032 // 8
_HEADER = struct.Struct("<IHH")
_LOST = struct.Struct("<QQ")
_ALL = sys.maxsize
_MAX_RUN = 1 << 16  # samples per C-level run


_STRUCTS: dict[tuple[int, int], struct.Struct] = {}


def _sample_struct(raw: int, sz: int) -> struct.Struct:
    """The layout of one sample record of ``sz`` bytes carrying ``raw`` bytes of data."""
    st = _STRUCTS.get((raw, sz))
    if st is None:
        st = _STRUCTS[(raw, sz)] = struct.Struct(f"12x{raw}s{sz - 12 - raw}x")
    return st


def _run_length(words: memoryview, halves: memoryview, off: int, sz: int, raw: int, k: int) -> int:
    """How many of the ``k`` records every ``sz`` bytes from ``off`` are samples of that size and raw size.

    Only a prefix of matching headers is trusted: each match says where the next record starts.
    """
    w, step = off >> 2, sz >> 2
    types = words[w:w + k * step:step].tolist()
    sizes = halves[(off >> 1) + 3:(off >> 1) + 3 + k * (sz >> 1):sz >> 1].tolist()
    raws = words[w + 2:w + 2 + k * step:step].tolist()
    if types.count(PERF_RECORD_SAMPLE) == k and sizes.count(sz) == k and raws.count(raw) == k:
        return k
    for i in range(k):
        if types[i] != PERF_RECORD_SAMPLE or sizes[i] != sz or raws[i] != raw:
            return max(i, 1)
    return k


def create_perf_event_array(cpus: int | None = None, name: str = "", **kw: Any) -> Any:
    """A ``BPF_MAP_TYPE_PERF_EVENT_ARRAY`` with one slot per possible CPU (or ``cpus`` slots).

    :returns: the core :class:`~ebpf.core.maps.Map`.
    """
    return _core_create_perf_event_array(cpus, name=name, **kw)


class _Ring:
    """One CPU's perf event and its mmap'ed ring."""

    def __init__(self, cpu: int, fd: int, mm: mmap.mmap, pages: int) -> None:
        self.cpu = cpu
        self.fd = fd
        self.mm = mm
        self.size = pages * mmap.PAGESIZE
        whole = memoryview(mm)
        self.ctl = whole[:mmap.PAGESIZE].cast("Q")
        self.data = whole[mmap.PAGESIZE:]
        # record headers read through casts (records are 8-byte aligned): u32 type/raw size, u16 size
        self.words = self.data.cast("I")
        self.halves = self.data.cast("H")
        self._views = [self.ctl, self.words, self.halves, self.data, whole]

    def release(self) -> None:
        for view in self._views:
            try:
                view.release()
            except BufferError:  # a zero-copy record still exported: it goes with its holder
                pass
        close_mmap(self.mm)
        try:
            _perf.disable(self.fd)
        except (BPFSyscallError, OSError):
            pass
        close_fd(self.fd)


def _release(rings: list[_Ring], epoll: select.epoll, waker: Waker, map_ref: Callable[[], Any]) -> None:
    m = map_ref()
    for ring in rings:
        if m is not None and not getattr(m, "closed", True):
            try:  # the map would keep the event alive otherwise
                m.delete_bytes(struct.pack("<I", ring.cpu), missing_ok=True)
            except Exception:
                pass
        ring.release()
    epoll.close()
    waker.close()


def _check_pages(buffer_pages: object) -> int:
    if not isinstance(buffer_pages, int) or isinstance(buffer_pages, bool) or buffer_pages <= 0 \
            or buffer_pages & (buffer_pages - 1):
        raise EBPFError(f"buffer_pages must be a power of two, not {buffer_pages!r}")
    return buffer_pages


class PerfBuffer(GuardedReader):
    """Per-CPU perf rings behind a perf event array map.

    ``poll(timeout_ms)`` / ``consume()`` deliver samples to ``callback(data)`` (or
    ``callback(cpu, data)`` with ``with_cpu=True``); ``read_batch(max_events)`` returns
    them; ``read_array(dtype, max_events)`` decodes fixed-size samples into a NumPy array
    in bulk; ``fileno()`` is an epoll fd for selectors/asyncio.  :meth:`close` may come from
    another thread (a waiting :meth:`poll` wakes and raises :class:`EBPFError` "closed"); a buffer
    collected while still open is released with a ``ResourceWarning``.

    :param map: the perf event array (its slots for ``cpus`` are set; cleared on close).
    :param buffer_pages: data pages per CPU (a power of two).
    :param cpus: the CPUs to read (default: online CPUs that have a slot in the map).
    :param wakeup_events: wake pollers every N samples (default 1).
    :param watermark_bytes: wake pollers when this many bytes are waiting instead.
    :param parser: applied to each sample's data before the callback / in ``read_batch``.
    :raises EBPFError: bad arguments (before any syscall).  :raises BPFSyscallError: when
        ``perf_event_open``/mmap fail (everything opened so far is released).
    """

    def __init__(self, map: Any, callback: Callable[..., Any] | None = None,
                 lost_callback: Callable[[int, int], Any] | None = None, *, buffer_pages: int = 64,
                 cpus: Iterable[int] | None = None, wakeup_events: int = 1, watermark_bytes: int = 0,
                 parser: Callable[[Any], Any] | None = None, with_cpu: bool = False) -> None:
        """Open and map one BPF output event per CPU and store them in ``map``."""
        check_map(map, MapType.PERF_EVENT_ARRAY, "PerfBuffer")
        pages = _check_pages(buffer_pages)
        for what, fn in (("callback", callback), ("lost_callback", lost_callback), ("parser", parser)):
            if fn is not None and not callable(fn):
                raise EBPFError(f"PerfBuffer {what} must be callable, not {type(fn).__name__}")
        slots = int(map.max_entries)
        cpu_list = sorted(set(online_cpus() if cpus is None else cpus))
        if cpus is None:
            cpu_list = [c for c in cpu_list if c < slots]
        for c in cpu_list:
            if not isinstance(c, int) or c < 0 or c >= slots:
                raise EBPFError(f"CPU {c!r} has no slot in the perf event array (max_entries {slots})")
        if not cpu_list:
            raise EBPFError("PerfBuffer: no CPUs to read")
        if watermark_bytes < 0 or wakeup_events < 1:
            raise EBPFError("wakeup_events must be >= 1 and watermark_bytes >= 0")
        self.map = map
        self.buffer_pages = pages
        self.lost = 0
        self.skipped = 0
        self.parser = parser
        self.with_cpu = with_cpu
        self._lost_cb = lost_callback
        self._callback = callback
        self._rings: list[_Ring] = []
        self._epoll = select.epoll()
        self._waker = Waker()  # close() from another thread wakes a poll through it
        self._epoll.register(self._waker.fileno(), select.EPOLLIN)
        self._init_guard(_release, self._rings, self._epoll, self._waker, weakref.ref(map))
        try:
            for cpu in cpu_list:
                self._open_cpu(cpu, pages, wakeup_events, watermark_bytes)
        except BaseException:
            self.close()
            raise
        self._by_fd = {r.fd: r for r in self._rings}

    def _open_cpu(self, cpu: int, pages: int, wakeup_events: int, watermark_bytes: int) -> None:
        flags = _perf.ATTR_DISABLED | (_perf.ATTR_WATERMARK if watermark_bytes else 0)
        attr = PerfEventAttr(type=_perf.PERF_TYPE_SOFTWARE, config=_perf.PERF_COUNT_SW_BPF_OUTPUT,
                             sample_type=_perf.PERF_SAMPLE_RAW, sample_period=1, flags=flags,
                             wakeup_events=watermark_bytes or wakeup_events)
        fd = perf_event_open(attr, pid=-1, cpu=cpu)
        try:
            mm = map_shared(fd, (pages + 1) * mmap.PAGESIZE, 0, writable=True)
        except BaseException:
            close_fd(fd)
            raise
        ring = _Ring(cpu, fd, mm, pages)
        self._rings.append(ring)
        self.map.update_bytes(struct.pack("<I", cpu), struct.pack("<I", fd))
        _perf.enable(fd)
        self._epoll.register(fd, select.EPOLLIN)

    # -- state -----------------------------------------------------------------------------------------------
    @property
    def cpus(self) -> list[int]:
        """The CPUs read."""
        return [r.cpu for r in self._rings]

    _what = "perf buffer reader"

    def _wake(self) -> None:
        self._waker.wake()

    def fileno(self) -> int:
        """An epoll fd, readable when a CPU ring has data (for ``selectors``/asyncio)."""
        self._check()
        return self._epoll.fileno()

    def close(self) -> None:
        """Clear the map slots, unmap the rings and close the events (idempotent).

        From another thread while a call is inside, that call is woken (a waiting :meth:`poll` raises
        :class:`EBPFError` "closed") and the rings are released when it returns.
        """
        super().close()

    def __enter__(self) -> PerfBuffer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<PerfBuffer {getattr(self.map, 'name', '')!r} cpus={self.cpus} lost={self.lost}>"

    # -- reading ---------------------------------------------------------------------------------------------
    def _record(self, ring: _Ring, tail: int) -> tuple[int, int, bytes]:
        """(type, total size, body after the 8-byte header) of the record at ``tail``, stitched when it wraps."""
        mm, size, base = ring.mm, ring.size, mmap.PAGESIZE
        off = tail & (size - 1)
        if off + 8 <= size:
            typ, _misc, sz = _HEADER.unpack_from(mm, base + off)
        else:
            typ, _misc, sz = _HEADER.unpack(mm[base + off:base + size] + mm[base:base + off + 8 - size])
        if sz < 8:
            raise EBPFError(f"corrupt perf record of {sz} bytes on CPU {ring.cpu}")
        start = off + 8
        if start >= size:
            start -= size
        if start + sz - 8 <= size:
            return typ, sz, mm[base + start:base + start + sz - 8]
        first = mm[base + start:base + size]
        return typ, sz, first + mm[base:base + sz - 8 - len(first)]

    def _lost_record(self, ring: _Ring, body: bytes) -> None:
        if len(body) < 16:
            return
        lost = _LOST.unpack_from(body, 0)[1]
        self.lost += lost
        if self._lost_cb is not None:
            self._lost_cb(ring.cpu, lost)

    def _drain(self, ring: _Ring, emit: Callable[..., Any] | None, limit: int, with_cpu: bool,
               out: list[Any] | None = None) -> int:
        """Deliver up to ``limit`` samples of ``ring`` to ``emit`` (or append their data to ``out``).

        As in the ring buffer reader, samples go in runs: the headers of the next ``window``
        records at the first one's size are read by strided ``tolist()`` calls, and the prefix
        of identical samples (type, size and raw size) that does not cross the ring's end is
        handed over by C-level iteration.  Anything else (a wrapped record, a lost record,
        another size) takes the one-record path.  ``data_tail`` is published after each run or
        record, so a long drain never leaves the kernel without room.
        """
        ctl, mm, words, halves, data = ring.ctl, ring.mm, ring.words, ring.halves, ring.data
        head = ctl[_DATA_HEAD]
        tail = ctl[_DATA_TAIL]
        size, base, cpu = ring.size, mmap.PAGESIZE, ring.cpu
        mask = size - 1
        n = 0
        window = 1
        try:
            while tail < head and n < limit and not self._closed:  # closed by another thread: stop
                off = tail & mask
                if off + 12 <= size:
                    w = off >> 2
                    typ, sz, raw = words[w], halves[(off >> 1) + 3], words[w + 2]
                    if typ == PERF_RECORD_SAMPLE and off + sz <= size and sz >= 12 + raw and sz & 7 == 0:
                        k = min((head - tail) // sz, (size - off) // sz, limit - n, window)
                        run = _run_length(words, halves, off, sz, raw, k) if k > 1 else 1
                        if run == 1:
                            tail += sz
                            n += 1
                            a = base + off + 12
                            if out is not None:
                                out.append(mm[a:a + raw])
                            elif with_cpu:
                                emit(cpu, mm[a:a + raw])  # type: ignore[misc]
                            else:
                                emit(mm[a:a + raw])  # type: ignore[misc]
                        else:
                            rows = _sample_struct(raw, sz).iter_unpack(data[off:off + run * sz])
                            recs = chain.from_iterable(rows)
                            try:
                                if out is not None:
                                    out.extend(recs)
                                elif with_cpu:
                                    deque(map(emit, repeat(cpu), recs), maxlen=0)  # type: ignore[arg-type]
                                else:
                                    deque(map(emit, recs), maxlen=0)  # type: ignore[arg-type]
                            finally:
                                done = run - length_hint(rows)
                                tail += done * sz
                                n += done
                        ctl[_DATA_TAIL] = tail  # free the space as we go: the kernel may reuse it
                        window = min(window * 2, _MAX_RUN) if run == k else 1
                        continue
                typ, sz, body = self._record(ring, tail)
                tail += sz
                window = 1
                if typ == PERF_RECORD_SAMPLE and len(body) >= 4:
                    raw = struct.unpack_from("<I", body, 0)[0]
                    rec = body[4:4 + raw]
                    n += 1
                    if out is not None:
                        out.append(rec)
                    elif with_cpu:
                        emit(cpu, rec)  # type: ignore[misc]
                    else:
                        emit(rec)  # type: ignore[misc]
                elif typ == PERF_RECORD_LOST:
                    self._lost_record(ring, body)
                ctl[_DATA_TAIL] = tail
        finally:
            ctl[_DATA_TAIL] = tail  # the kernel may reuse the space now
        return n

    def _emitter(self, callback: Callable[..., Any] | None) -> Callable[..., Any]:
        cb = callback if callback is not None else self._callback
        if cb is None:
            raise EBPFError("PerfBuffer has no callback: pass one, or use read_batch()")
        if self.parser is None:
            return cb
        parse = self.parser
        if self.with_cpu:
            return lambda cpu, data: cb(cpu, parse(data))
        return lambda data: cb(parse(data))

    def consume(self, callback: Callable[..., Any] | None = None, max_events: int | None = None) -> int:
        """Deliver the samples waiting in every CPU ring, without blocking; returns how many."""
        self._check()
        emit = self._emitter(callback)
        limit = _ALL if max_events is None else max_events
        n = 0
        self._enter()
        try:
            for ring in self._rings:
                if n >= limit:
                    break
                n += self._drain(ring, emit, limit - n, self.with_cpu)
        finally:
            self._leave()
        return n

    def poll(self, timeout_ms: int | float | None = -1, max_events: int | None = None) -> int:
        """Wait up to ``timeout_ms`` (-1/None: forever) for samples, then deliver them; returns how many.

        :raises EBPFError: when closed (also when :meth:`close` is called by another thread during the
            wait: the wait ends at once).
        """
        self._check()
        emit = self._emitter(None)
        n = self.consume(max_events=max_events)
        if n or timeout_ms == 0:
            return n
        timeout = -1.0 if timeout_ms is None or timeout_ms < 0 else timeout_ms / 1000.0
        limit = _ALL if max_events is None else max_events
        self._enter()
        try:
            ready = self._epoll.poll(timeout)
            if self._closed:
                raise self._woken_closed()
            for fd, _ in ready:
                ring = self._by_fd.get(fd)
                if ring is not None and n < limit:
                    n += self._drain(ring, emit, limit - n, self.with_cpu)
        finally:
            self._leave()
        return n

    def read_batch(self, max_events: int | None = None) -> list[Any]:
        """Consume up to ``max_events`` samples from all CPU rings; returns their data (parsed when set)."""
        out: list[Any] = []
        limit = _ALL if max_events is None else max_events
        self._enter()
        try:
            for ring in self._rings:
                if len(out) >= limit:
                    break
                self._drain(ring, None, limit - len(out), False, out)
        finally:
            self._leave()
        if self.parser is not None:
            parse = self.parser
            return [parse(d) for d in out]
        return out

    def read_array(self, dtype: Any, max_events: int | None = None) -> Any:
        """Consume fixed-size samples into a NumPy structured array without a Python loop per record.

        Runs of same-sized samples are viewed in place and copied out at once; lost records,
        wrapped records and samples of another size take the slow path (other sizes are
        skipped and counted in :attr:`skipped`).

        :param dtype: the sample layout; its size must not exceed the sample's data.
        :returns: a ``numpy.ndarray`` of ``dtype``.
        :raises NotSupportedError: without NumPy.
        """
        self._check()
        np = numpy()
        dt = np.dtype(dtype)
        if dt.itemsize <= 0:
            raise EBPFError(f"read_array needs a non-empty fixed-size dtype, not {dt}")
        limit = _ALL if max_events is None else max_events
        chunks: list[Any] = []
        total = 0
        self._enter()
        try:
            for ring in self._rings:
                if total >= limit:
                    break
                total += _read_array(self, ring, np, dt, limit - total, chunks)
        finally:
            self._leave()
        if not chunks:
            return np.empty(0, dtype=dt)
        out = chunks[0] if len(chunks) == 1 else np.concatenate(chunks)
        return out.view(dt)


@dataclass(frozen=True)
class PerfConsumerStats:
    """What a :class:`PerfConsumer` has done; also readable as a mapping (``s["lost"]``).

    :ivar events_read: samples taken from the rings.
    :ivar events_processed: samples the callback handled without raising.
    :ivar lost: samples the kernel dropped because a ring was full.
    :ivar polls: wake-ups (poll calls) so far.
    :ivar errors: callback exceptions (plus a fatal error, if any).
    :ivar uptime_ms: how long the consumer ran.
    :ivar events_per_second: ``events_read`` over the uptime.
    """

    events_read: int
    events_processed: int
    lost: int
    polls: int
    errors: int
    uptime_ms: float
    events_per_second: float
    last_error: str | None = None

    def __getitem__(self, key: str) -> Any:
        data = asdict(self)
        if key not in data:
            raise KeyError(key)
        return data[key]

    def keys(self) -> list[str]:
        """The statistic names."""
        return list(asdict(self))


class PerfConsumer(BackgroundLoop):
    """Read a perf event array on a background thread, calling ``callback(data)`` per sample.

    Lost samples are counted and passed to ``lost_callback(cpu, count)``; callback
    exceptions are counted, logged (``ebpf.events`` logger) and never stop the thread.
    ``with PerfConsumer(...) as c:`` starts it and stops it on exit.

    :param map: a perf event array map.
    :param buffer_pages: data pages per CPU ring (a power of two).
    :param options: passed to :class:`PerfBuffer` (``cpus``, ``parser``, ``wakeup_events``,
        ``watermark_bytes``, ``with_cpu``).
    """

    def __init__(self, map: Any, callback: Callable[..., Any], lost_callback: Callable[[int, int], Any] | None = None,
                 buffer_pages: int = 64, **options: Any) -> None:
        """Open the per-CPU rings (the thread starts with :meth:`start`)."""
        if not callable(callback):
            raise EBPFError(f"PerfConsumer callback must be callable, not {type(callback).__name__}")
        if lost_callback is not None and not callable(lost_callback):
            raise EBPFError("lost_callback must be callable")
        self._init_loop("PerfConsumer")
        self._polls = 0
        user_cb = make_event_handler(handler=callback)
        # the wrappers refer to the shared state, never to self: a consumer dropped unclosed is collected
        state = self._state

        def guarded(*args: Any) -> None:
            try:
                user_cb(*args)
            except Exception as exc:
                record_error(state, "PerfConsumer", exc)
            state.events += 1
            if state.halt:  # told to stop: end the run here, after this sample's callback
                raise Halt

        def lost(cpu: int, count: int) -> None:
            if lost_callback is not None:
                try:
                    lost_callback(cpu, count)
                except Exception as exc:
                    state.side_errors += 1
                    record_error(state, "PerfConsumer", exc)

        self._buf = PerfBuffer(map, guarded, lost, buffer_pages=buffer_pages, **options)
        self._track(self._buf.close)

    @property
    def buffer(self) -> PerfBuffer:
        """The underlying :class:`PerfBuffer`."""
        return self._buf

    def _watch_fd(self) -> int:
        return self._buf.fileno()

    def _step(self, timeout_ms: int) -> int:
        self._polls += 1
        return self._buf.consume(max_events=65536)

    def fileno(self) -> int:
        """The reader's epoll fd (readable when a CPU ring has data)."""
        return self._buf.fileno()

    def _idle(self, what: str) -> PerfBuffer:
        if self.running:
            raise EBPFError(f"PerfConsumer.{what}() while the background thread runs: stop() it first")
        return self._buf

    def read_batch(self, max_events: int | None = None) -> list[Any]:
        """Read samples directly (see :meth:`PerfBuffer.read_batch`); only while the thread is stopped."""
        return self._idle("read_batch").read_batch(max_events)

    def read_array(self, dtype: Any, max_events: int | None = None) -> Any:
        """Decode samples into a NumPy array (see :meth:`PerfBuffer.read_array`); only while stopped."""
        return self._idle("read_array").read_array(dtype, max_events)

    def start(self, poll_interval_ms: int = 100) -> PerfConsumer:
        """Start the background thread (returns self).  :raises EBPFError: when running or closed."""
        if self._closed or self._buf.closed:
            raise EBPFError("PerfConsumer is closed")
        self._start_loop(poll_interval_ms)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread after the callback that is running returns, and wait for it (from inside the
        consumer's own callback it does not wait: the thread ends when the callback returns).

        :raises EBPFError: when a callback blocks longer than ``timeout`` seconds.
        """
        self._stop_loop(timeout)

    def close(self) -> None:
        """Stop and release the rings (idempotent); from inside a callback, once that callback returns.

        :raises EBPFError: when a callback blocks longer than 5 s (the rings are released when it returns).
        """
        self._close_loop()

    def stats(self) -> PerfConsumerStats:
        """The counters so far (see :class:`PerfConsumerStats`); current while a run of samples is delivered."""
        elapsed = self._elapsed()
        state = self._state
        read = state.events
        errors = state.errors + (1 if state.fatal is not None else 0)
        last = state.last_error
        if state.fatal is not None:
            last = f"{type(state.fatal).__name__}: {state.fatal}"
        return PerfConsumerStats(events_read=read, events_processed=read - (state.errors - state.side_errors),
                                 lost=self._buf.lost, polls=self._polls, errors=errors, uptime_ms=elapsed * 1000.0,
                                 events_per_second=read / elapsed if elapsed else 0.0, last_error=last)

    def __enter__(self) -> PerfConsumer:
        if not self.running:
            self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        # while Ctrl-C (or any exception) propagates, a blocking callback is logged, never raised over it
        self._exit_loop(exc_type)
