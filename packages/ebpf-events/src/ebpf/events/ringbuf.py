"""BPF ring buffer reader (``BPF_MAP_TYPE_RINGBUF``, Linux >= 5.8).

The consumer page is mapped read-write (we publish ``consumer_pos`` there), the producer
page and the data area read-only.  The kernel maps the data area twice in a row, so a
record never wraps: every record is one contiguous slice of the mapping, which is what
lets us hand out records without copying (a ``memoryview`` valid during the callback)
and decode whole batches into a NumPy array without a Python loop per record.

Record layout (``kernel/bpf/ringbuf.c``): an 8-byte header ``{u32 len; u32 pg_off}``;
``len`` carries ``BPF_RINGBUF_BUSY_BIT`` (1 << 31) while the producer has not committed
the record yet and ``BPF_RINGBUF_DISCARD_BIT`` (1 << 30) when it was discarded; the next
record starts at ``round_up(len + 8, 8)``.
"""

from __future__ import annotations

import mmap
import select
import struct
import sys
import weakref
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from itertools import chain
from operator import length_hint
from typing import TYPE_CHECKING, Any

from ebpf.core.errors import EBPFError
from ebpf.core.types import MapType

if TYPE_CHECKING:
    import asyncio
from ebpf.events._common import GuardedReader, Waker, check_map, close_mmap, make_event_handler, map_shared, numpy
from ebpf.events._rbconsumer import RingBufferConsumer, RingBufferStats, peek_events, process_events

__all__ = [
    "RingBuffer",
    "RingBufferPoller",
    "RingBufferConsumer",
    "RingBufferStats",
    "process_events",
    "peek_events",
    "make_event_handler",
    "BUSY_BIT",
    "DISCARD_BIT",
    "HEADER_SIZE",
]

BUSY_BIT = 1 << 31
DISCARD_BIT = 1 << 30
HEADER_SIZE = 8
_LEN_MASK = DISCARD_BIT - 1
_ALL = sys.maxsize
_MAX_RUN = 1 << 16  # records per C-level run (the window doubles up to this while headers agree)


def _limit(max_events: int | None) -> int:
    if max_events is None:
        return _ALL
    if not isinstance(max_events, int) or isinstance(max_events, bool) or max_events < 0:
        raise EBPFError(f"max_events must be a non-negative int or None, not {max_events!r}")
    return max_events


def _timeout(timeout_ms: int | float | None) -> float:
    if timeout_ms is None:
        return -1.0
    if not isinstance(timeout_ms, (int, float)) or isinstance(timeout_ms, bool):
        raise EBPFError(f"timeout_ms must be a number or None, not {timeout_ms!r}")
    return -1.0 if timeout_ms < 0 else timeout_ms / 1000.0


class _Mapping:
    """The mmaps and epoll of one ring buffer; finalized even when the reader is dropped unclosed."""

    def __init__(self, fd: int, size: int) -> None:
        page = mmap.PAGESIZE
        self.epoll: select.epoll | None = None
        self.waker: Waker | None = None
        self.cons_mm = map_shared(fd, page, 0, writable=True)
        try:
            self.prod_mm = map_shared(fd, page + 2 * size, page, writable=False)
        except BaseException:
            self.cons_mm.close()
            raise
        try:
            self.epoll = select.epoll()
            self.epoll.register(fd, select.EPOLLIN)
            # close() from another thread wakes a poll through it
            self.waker = Waker()
            self.epoll.register(self.waker.fileno(), select.EPOLLIN)
        except BaseException:
            self.release()
            raise

    def release(self) -> None:
        if self.epoll is not None:
            self.epoll.close()
        if self.waker is not None:
            self.waker.close()
        close_mmap(self.cons_mm)
        close_mmap(self.prod_mm)


def _release(mapping: _Mapping, views: list[memoryview]) -> None:
    for v in views:
        try:
            v.release()
        except BufferError:  # exported to a caller: it goes away with the caller's object
            pass
    mapping.release()


class RingBuffer(GuardedReader):
    """Read records from a ``BPF_MAP_TYPE_RINGBUF`` map.

    ``RingBuffer(map, callback)`` then :meth:`poll` (wait, then deliver), :meth:`consume`
    (deliver what is there, no wait), :meth:`read_batch` (a list), :meth:`read_array`
    (a NumPy structured array), :meth:`peek` (read without consuming), ``for record in rb``
    (what is there now), ``async for record in rb`` (waits; asyncio), :meth:`fileno` for
    ``selectors``/``loop.add_reader``.  One consumer per ring buffer; :meth:`close` may come from
    another thread (a waiting :meth:`poll` wakes and raises :class:`EBPFError` "closed").  A reader
    collected while still open is released with a ``ResourceWarning``.

    :param map: the ring buffer map (kept alive by the reader).
    :param callback: called once per record by :meth:`poll`/:meth:`consume`.
    :param parser: turns each record into an event first (e.g. a
        :func:`ebpf.core.codecs.make_event_parser`).
    :param zero_copy: deliver ``memoryview`` slices of the mapping instead of ``bytes``:
        no copy, but a view is only valid during the callback (the producer reuses the
        space once the callback returns).  ``read_batch``/iteration always return bytes.
    :raises EBPFError: when ``map`` is not an open ring buffer map, or a callback/parser
        is not callable (before any syscall).
    :raises BPFSyscallError: when the mmap fails.

    Requires Linux >= 5.8.
    """

    def __init__(self, map: Any, callback: Callable[[Any], Any] | None = None, *,
                 parser: Callable[[Any], Any] | None = None, zero_copy: bool = False) -> None:
        """Map the ring buffer of ``map`` and register it with a fresh epoll instance."""
        fd = check_map(map, MapType.RINGBUF, "RingBuffer")
        size = int(map.max_entries)
        if size <= 0 or size & (size - 1):
            raise EBPFError(f"ring buffer size {size} is not a power of two")
        for what, fn in (("callback", callback), ("parser", parser)):
            if fn is not None and not callable(fn):
                raise EBPFError(f"RingBuffer {what} must be callable, not {type(fn).__name__}")
        self.map = map
        self.size = size
        self.zero_copy = bool(zero_copy)
        self.parser = parser
        self.skipped = 0
        self._page = mmap.PAGESIZE
        self._mask = size - 1
        self._callback = callback
        self._emit = make_event_handler(parser=parser, handler=callback) if callback is not None else None
        self._m = _Mapping(fd, size)
        self._cons = memoryview(self._m.cons_mm).cast("Q")
        whole = memoryview(self._m.prod_mm)
        self._prod = whole[:8].cast("Q")
        self._data = whole[self._page:]
        # record headers read as u32 items of the data area (offsets are 8-byte aligned)
        self._words = self._data.cast("I")
        self._init_guard(_release, self._m, [self._cons, self._prod, self._words, self._data, whole])

    _what = "ring buffer reader"

    # -- state -----------------------------------------------------------------------------------------------
    def _wake(self) -> None:
        if self._m.waker is not None:
            self._m.waker.wake()

    def fileno(self) -> int:
        """An epoll fd that is readable when records are waiting (for ``selectors``/asyncio).

        :raises EBPFError: when the reader is closed.
        """
        self._check()
        assert self._m.epoll is not None
        return self._m.epoll.fileno()

    @property
    def consumer_pos(self) -> int:
        """The kernel's consumer position (bytes consumed so far)."""
        self._enter()
        try:
            return int(self._cons[0])
        finally:
            self._leave()

    @property
    def producer_pos(self) -> int:
        """The kernel's producer position (bytes reserved so far)."""
        self._enter()
        try:
            return int(self._prod[0])
        finally:
            self._leave()

    def available(self) -> int:
        """Bytes between the consumer and the producer (records, headers and padding)."""
        self._enter()
        try:
            return int(self._prod[0] - self._cons[0])
        finally:
            self._leave()

    def close(self) -> None:
        """Unmap the ring and close the epoll fd (idempotent); the map itself stays open.

        From another thread while a call is inside, that call is woken (a waiting :meth:`poll` or
        :meth:`wait` raises :class:`EBPFError` "closed") and the ring is unmapped when it returns.
        """
        super().close()

    def __enter__(self) -> RingBuffer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{self.available()} bytes waiting"
        return f"<RingBuffer {getattr(self.map, 'name', '')!r} size={self.size} {state}>"

    # -- the hot loop ----------------------------------------------------------------------------------------
    def _drain(self, emit: Callable[[Any], Any] | None, limit: int, views: bool, out: list[Any] | None = None) -> int:
        """Deliver up to ``limit`` committed records to ``emit`` (or append them to ``out``).

        Records are taken in runs: the headers of the next ``w`` records at the stride of the
        first are read in one strided ``tolist()``; the prefix whose headers all equal the first
        (same length, committed, not discarded) is handed over by C-level iteration
        (``struct.iter_unpack`` + ``map``/``chain``), so a Python-level step is paid per run,
        not per record.  Any other header (busy, discarded, another length) ends the run and is
        handled on its own; a busy record stops the drain.  ``consumer_pos`` is published after
        each run or single record has been delivered (a record whose callback raised counts as
        consumed: never delivered twice).
        """
        cons_arr, prod_arr, words, mask = self._cons, self._prod, self._words, self._mask
        data = self._data
        # single records: bytes sliced from the mmap itself (one copy), views from the data view
        src: Any = data if views else self._m.prod_mm
        base = 8 if views else self._page + 8
        cons = cons_arr[0]
        prod = prod_arr[0]
        n = 0
        window = 1
        try:
            while n < limit and not self._closed:  # closed by another thread: stop between runs
                if cons >= prod:
                    prod = prod_arr[0]
                    if cons >= prod:
                        break
                off = cons & mask
                ln = words[off >> 2]
                if ln & BUSY_BIT:  # reserved, not yet committed: later records must wait for it
                    break
                stride = ((ln & _LEN_MASK) + 15) & ~7
                if ln & DISCARD_BIT:
                    cons += stride
                    continue
                k = min((prod - cons) // stride, limit - n, window)
                if k > 1:
                    w0, step = off >> 2, stride >> 2
                    heads = words[w0:w0 + k * step:step].tolist()
                    run = k if heads.count(ln) == k else _first_other(heads, ln)
                else:
                    run = 1
                if run == 1:
                    a = off + base
                    cons += stride
                    n += 1
                    if out is not None:
                        out.append(src[a:a + ln])
                    else:
                        emit(src[a:a + ln])  # type: ignore[misc]
                else:
                    progress, recs = _run_records(data[off:off + run * stride], ln, stride, run, views)
                    try:
                        if out is not None:
                            out.extend(recs)
                        else:
                            deque(map(emit, recs), maxlen=0)  # type: ignore[arg-type]
                    finally:
                        done = run - length_hint(progress)
                        cons += done * stride
                        n += done
                # free the space as we go (after delivery: views stay valid during the callback),
                # so a long drain never leaves the producer without room
                cons_arr[0] = cons
                window = min(window * 2, _MAX_RUN) if run == k else 1
        finally:
            cons_arr[0] = cons
        return n

    def consume(self, callback: Callable[[Any], Any] | None = None, max_events: int | None = None) -> int:
        """Deliver the records waiting now, without blocking.

        :param callback: overrides the reader's callback (the parser still applies).
        :param max_events: stop after this many records (None: all of them).
        :returns: the number of records delivered.
        :raises EBPFError: when closed or no callback was given; the callback's own
            exceptions propagate (the record that raised is consumed).
        """
        emit = self._emit if callback is None else make_event_handler(parser=self.parser, handler=callback)
        if emit is None:
            self._check()
            raise EBPFError("RingBuffer has no callback: pass one, or use read_batch()/iteration")
        limit = _limit(max_events)
        self._enter()
        try:
            return self._drain(emit, limit, self.zero_copy)
        finally:
            self._leave()

    def poll(self, timeout_ms: int | float | None = -1, max_events: int | None = None) -> int:
        """Wait up to ``timeout_ms`` for records (-1/None: forever, 0: no wait), then deliver them.

        :returns: the number of records delivered (0 on timeout).
        :raises EBPFError: when closed (also when :meth:`close` is called by another thread during the
            wait: the wait ends at once) or no callback is set.
        """
        self._check()
        if self._emit is None:
            raise EBPFError("RingBuffer has no callback: pass one, or use read_batch()/iteration")
        limit = _limit(max_events)
        timeout = _timeout(timeout_ms)
        self._enter()
        try:
            if self._prod[0] == self._cons[0] and timeout_ms != 0:
                assert self._m.epoll is not None
                self._m.epoll.poll(timeout)
                if self._closed:
                    raise self._woken_closed()
            return self._drain(self._emit, limit, self.zero_copy)
        finally:
            self._leave()

    def wait(self, timeout_ms: int | float | None = -1) -> bool:
        """Block until records are waiting or the timeout passes; True when records are waiting.

        :raises EBPFError: when closed, also by another thread during the wait (which ends at once).
        """
        timeout = _timeout(timeout_ms)
        self._enter()
        try:
            if self._prod[0] != self._cons[0]:
                return True
            assert self._m.epoll is not None
            ready = bool(self._m.epoll.poll(timeout))
            if self._closed:
                raise self._woken_closed()
            return ready
        finally:
            self._leave()

    def read_batch(self, max_events: int | None = None, timeout_ms: int | float = 0) -> list[Any]:
        """Consume up to ``max_events`` records and return them (bytes, or parsed when a parser is set).

        :param timeout_ms: wait this long for the first record when none is waiting.
        """
        self._check()
        limit = _limit(max_events)
        if timeout_ms:
            self.wait(timeout_ms)
        out: list[Any] = []
        self._enter()
        try:
            self._drain(None, limit, False, out)
        finally:
            self._leave()
        if self.parser is not None:
            parse = self.parser
            return [parse(r) for r in out]
        return out

    def peek(self, max_events: int | None = None) -> list[Any]:
        """The committed records waiting now (bytes or parsed), without consuming them."""
        limit = _limit(max_events)
        self._enter()
        try:
            cons, prod = self._cons[0], self._prod[0]
            buf = self._m.prod_mm
            out: list[Any] = []
            while cons < prod and len(out) < limit:
                off = (cons & self._mask) + self._page
                ln = self._words[(cons & self._mask) >> 2]
                if ln & BUSY_BIT:
                    break
                cons += ((ln & _LEN_MASK) + 15) & ~7
                if not ln & DISCARD_BIT:
                    out.append(buf[off + 8:off + 8 + ln])
        finally:
            self._leave()
        return [self.parser(r) for r in out] if self.parser is not None else out

    def __iter__(self) -> Iterator[Any]:
        """The records waiting now, consumed one by one (bytes, or parsed); does not block.

        :raises EBPFError: when the reader is closed before iteration starts (closing it
            during the iteration ends it).
        """
        self._check()
        while not self._closed:
            batch = self.read_batch(256)
            if not batch:
                return
            yield from batch

    def __aiter__(self) -> AsyncIterator[Any]:
        """``async for record in rb``: waits for records on the running asyncio loop until closed."""
        return self._aiter()

    async def _aiter(self) -> AsyncIterator[Any]:
        import asyncio  # deferred: start-up time (about 20 ms; only ``async for`` needs it)

        self._check()
        loop = asyncio.get_running_loop()
        while not self._closed:
            batch = self.read_batch(1024)
            if batch:
                for record in batch:
                    yield record
                continue
            fut: asyncio.Future[None] = loop.create_future()
            fd = self.fileno()
            loop.add_reader(fd, _wake, fut)
            try:
                await fut
            finally:
                loop.remove_reader(fd)

    # -- NumPy bulk mode -------------------------------------------------------------------------------------
    def read_array(self, dtype: Any, max_events: int | None = None) -> Any:
        """Consume fixed-size records into a NumPy structured array, with no Python loop per record.

        Records are viewed in place as a strided array (header + payload + padding) and
        copied out in one go; discarded records are dropped by a mask.  A record of
        another size is skipped and counted in :attr:`skipped`.

        :param dtype: the record layout (anything ``numpy.dtype()`` accepts).
        :param max_events: at most this many records (None: all waiting).
        :returns: a ``numpy.ndarray`` of ``dtype`` (possibly empty).
        :raises NotSupportedError: without NumPy.  :raises EBPFError: when closed or the dtype is empty.
        """
        self._check()
        np = numpy()
        dt = np.dtype(dtype)
        size = dt.itemsize
        if size <= 0 or size > _LEN_MASK:
            raise EBPFError(f"read_array needs a non-empty fixed-size dtype, not {dt}")
        self._enter()
        try:
            return self._read_array(np, dt, size, _limit(max_events))
        finally:
            self._leave()

    def _read_array(self, np: Any, dt: Any, size: int, limit: int) -> Any:
        stride = (size + 15) & ~7
        # The payload is viewed as opaque bytes: NumPy copies a void field with memcpy, a nested
        # structured field field by field (several times slower).
        rec = np.dtype({"names": ["h", "p"], "formats": ["<u4", f"V{size}"], "offsets": [0, 8], "itemsize": stride})
        cons, prod = int(self._cons[0]), int(self._prod[0])
        chunks: list[Any] = []
        total = 0
        try:
            while total < limit:
                if prod - cons < 8:
                    prod = int(self._prod[0])
                    if prod - cons < 8:
                        break
                k = min((prod - cons) // stride, limit - total)
                if k == 0:  # one short record of another size waiting
                    cons, stop = self._skip_one(cons)
                    if stop:
                        break
                    continue
                view = np.frombuffer(self._m.prod_mm, dtype=rec, count=k, offset=(cons & self._mask) + self._page)
                hdr = view["h"]
                good = hdr == size
                if good.all():
                    chunks.append(view["p"].copy())
                    total += k
                    cons += k * stride
                    continue
                regular = good | (hdr == (size | DISCARD_BIT))
                first_bad = k if regular.all() else int(np.argmin(regular))
                keep = good[:first_bad]
                if first_bad:
                    chunks.append(view["p"][:first_bad][keep])
                    total += int(np.count_nonzero(keep))
                    cons += first_bad * stride
                del view, hdr
                if first_bad < k:
                    cons, stop = self._skip_one(cons)
                    if stop:
                        break
        finally:
            self._cons[0] = cons
        if not chunks:
            return np.empty(0, dtype=dt)
        out = chunks[0] if len(chunks) == 1 else np.concatenate(chunks)
        return out.view(dt)

    def _skip_one(self, cons: int) -> tuple[int, bool]:
        """Step over the record at ``cons`` (not of the array's size); (new position, stop?)."""
        ln = self._words[(cons & self._mask) >> 2]
        if ln & BUSY_BIT:
            return cons, True
        if not ln & DISCARD_BIT:
            self.skipped += 1
        return cons + (((ln & _LEN_MASK) + 15) & ~7), False


def _first_other(values: list[int], value: int) -> int:
    """Index of the first item of ``values`` that is not ``value`` (there is one)."""
    for i, v in enumerate(values):
        if v != value:
            return i
    return len(values)


_STRUCTS: dict[tuple[int, int], struct.Struct] = {}


def _run_records(span: memoryview, ln: int, stride: int, run: int, views: bool) -> tuple[Any, Iterator[Any]]:
    """(progress iterator, records) for ``run`` records of ``ln`` bytes every ``stride`` bytes of ``span``.

    The records iterator runs at C level (no Python frame per record); the progress
    iterator's ``operator.length_hint()`` tells how many records were not taken yet, which is
    what a consumer needs when a callback raises half-way.
    """
    if views:
        starts = iter(range(8, run * stride, stride))
        return starts, map(span.__getitem__, map(slice, starts, range(8 + ln, run * stride + ln, stride)))
    st = _STRUCTS.get((ln, stride))
    if st is None:
        st = _STRUCTS[(ln, stride)] = struct.Struct(f"8x{ln}s{stride - 8 - ln}x")
    rows = st.iter_unpack(span)
    return rows, chain.from_iterable(rows)


def _wake(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


class RingBufferPoller:
    """Poll several :class:`RingBuffer` readers together (one epoll over all of them).

    :param ringbufs: readers with callbacks; more can be added with :meth:`add`.
    """

    def __init__(self, *ringbufs: RingBuffer) -> None:
        """Create the shared epoll instance and add ``ringbufs``."""
        self._epoll = select.epoll()
        self._finalizer = weakref.finalize(self, self._epoll.close)
        self._rings: dict[int, RingBuffer] = {}
        try:
            for rb in ringbufs:
                self.add(rb)
        except BaseException:
            self.close()
            raise

    def add(self, ringbuf: RingBuffer) -> None:
        """Add a reader (it must have a callback).

        :raises EBPFError: when it is not a RingBuffer, is closed, or has no callback.
        """
        if self._epoll.closed:
            raise EBPFError("RingBufferPoller is closed")
        if not isinstance(ringbuf, RingBuffer):
            raise EBPFError(f"RingBufferPoller takes RingBuffer readers, not {type(ringbuf).__name__}")
        if ringbuf._emit is None:
            raise EBPFError("RingBufferPoller: the ring buffer has no callback")
        fd = ringbuf.fileno()
        self._epoll.register(fd, select.EPOLLIN)
        self._rings[fd] = ringbuf

    @property
    def ringbufs(self) -> list[RingBuffer]:
        """The readers polled."""
        return list(self._rings.values())

    def fileno(self) -> int:
        """The epoll fd (readable when any ring buffer has records)."""
        if self._epoll.closed:
            raise EBPFError("RingBufferPoller is closed")
        return self._epoll.fileno()

    def consume(self) -> int:
        """Deliver what every ring buffer holds now; returns the number of records."""
        return sum(rb.consume() for rb in self._rings.values())

    def poll(self, timeout_ms: int | float | None = -1) -> int:
        """Wait up to ``timeout_ms`` for records in any ring buffer, then deliver from all of them.

        :returns: the number of records delivered.
        """
        n = self.consume()
        if n or timeout_ms == 0:
            return n
        for fd, _ in self._epoll.poll(_timeout(timeout_ms)):
            n += self._rings[fd].consume()
        return n

    def close(self) -> None:
        """Close the shared epoll fd (the readers stay open)."""
        self._finalizer()

    def __enter__(self) -> RingBufferPoller:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
