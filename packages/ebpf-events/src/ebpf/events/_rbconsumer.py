"""The ring buffer's background consumer and one-shot helpers (re-exported by :mod:`ebpf.events.ringbuf`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from ebpf.core.errors import EBPFError
from ebpf.core.records import dataclass
from ebpf.events._common import BackgroundLoop, Halt, make_event_handler, record_error

if TYPE_CHECKING:  # pragma: no cover
    from ebpf.events.ringbuf import RingBuffer

__all__ = ["RingBufferConsumer", "RingBufferStats", "process_events", "peek_events"]


@dataclass(frozen=True)
class RingBufferStats(Mapping[str, Any]):
    """What a :class:`RingBufferConsumer` has done so far; also readable as a mapping (``s["errors"]``).

    :ivar events_processed: records taken from the ring (including ones the filter dropped).
    :ivar events_per_second: ``events_processed`` over the time the consumer ran.
    :ivar batches_read: wake-ups that found records.
    :ivar errors: callback (or parser/filter/transform) exceptions, plus a fatal error if any.
    :ivar last_error: the text of the most recent error, or None.
    :ivar running: whether the thread is alive.
    """

    events_processed: int
    events_per_second: float
    batches_read: int
    errors: int
    last_error: str | None
    running: bool

    def __getitem__(self, key: str) -> Any:
        try:
            return asdict(self)[key]
        except KeyError:
            raise KeyError(key) from None

    def __iter__(self) -> Iterator[str]:
        return iter(asdict(self))

    def __len__(self) -> int:
        return len(asdict(self))


class RingBufferConsumer(BackgroundLoop):
    """Consume a ring buffer on a background thread, calling ``callback`` per event.

    Each record goes through ``parser``, ``filter`` and ``transform`` (see
    :func:`make_event_handler`) before ``callback``.  An exception in any of them is counted
    in :meth:`stats` (``errors``), logged on the ``ebpf.events`` logger, passed to
    ``on_error`` when given, and the consumer carries on with the next record.

    ``with RingBufferConsumer(...) as c:`` starts the thread and stops it (and releases the
    ring) on exit.

    :param map: the ring buffer map (or an open :class:`RingBuffer`, then owned by the consumer).
    :param callback: called with each event.
    :param zero_copy: pass ``memoryview`` records (valid during the call) to the parser/callback.
    :param on_error: ``on_error(exc)`` for each failed event.
    :raises EBPFError: bad map or non-callable arguments (before any syscall).
    """

    def __init__(self, map: Any, callback: Callable[[Any], Any], parser: Callable[[Any], Any] | None = None,
                 filter: Callable[[Any], bool] | None = None, transform: Callable[[Any], Any] | None = None, *,
                 zero_copy: bool = False, on_error: Callable[[BaseException], Any] | None = None) -> None:
        """Open the ring buffer (not the thread: see :meth:`start`)."""
        from ebpf.events.ringbuf import RingBuffer

        if not callable(callback):
            raise EBPFError(f"RingBufferConsumer callback must be callable, not {type(callback).__name__}")
        if on_error is not None and not callable(on_error):
            raise EBPFError("on_error must be callable")
        pipeline = make_event_handler(parser=parser, filter=filter, transform=transform, handler=callback)
        self._init_loop("RingBufferConsumer")
        self._batches = 0
        # the wrapper refers to the shared state, never to self: a consumer dropped unclosed is collected
        state = self._state

        def guarded(raw: Any) -> None:
            try:
                pipeline(raw)
            except Exception as exc:  # counted and reported; the thread keeps going
                record_error(state, "RingBufferConsumer", exc, on_error)
            state.events += 1
            if state.halt:  # told to stop: end the run here, after this record's callback
                raise Halt

        self._rb = map if isinstance(map, RingBuffer) else RingBuffer(map, guarded, zero_copy=zero_copy)
        self._emit = guarded
        self._track(self._rb.close)

    @property
    def ringbuf(self) -> RingBuffer:
        """The underlying :class:`RingBuffer`."""
        return self._rb

    def _watch_fd(self) -> int:
        return self._rb.fileno()

    def _step(self, timeout_ms: int) -> int:
        return self._rb.consume(self._emit, max_events=65536)

    def _on_batch(self, n: int) -> None:
        self._batches += 1

    def start(self, poll_interval_ms: int = 100) -> RingBufferConsumer:
        """Start the background thread (returns self).

        :param poll_interval_ms: the longest wait between checks of the stop flag (wake-ups
            on new records and on :meth:`stop` are immediate).
        :raises EBPFError: when already running or closed.
        """
        if self._closed or self._rb.closed:
            raise EBPFError("RingBufferConsumer is closed")
        self._start_loop(poll_interval_ms)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread after the callback that is running returns, and wait for it (records still waiting
        stay in the ring).  From inside the consumer's own callback it does not wait: the thread ends when the
        callback returns.

        :raises EBPFError: when a callback blocks longer than ``timeout`` seconds.
        """
        self._stop_loop(timeout)

    def close(self) -> None:
        """Stop the thread and release the ring buffer mapping (idempotent).

        From inside the consumer's own callback, the ring is released once that callback returns.

        :raises EBPFError: when a callback blocks longer than 5 s (the ring is released when it returns).
        """
        self._close_loop()

    def stats(self) -> RingBufferStats:
        """The counters so far (see :class:`RingBufferStats`); current while a run of records is delivered."""
        elapsed = self._elapsed()
        state = self._state
        events = state.events
        errors = state.errors + (1 if state.fatal is not None else 0)
        last = state.last_error
        if state.fatal is not None:
            last = f"{type(state.fatal).__name__}: {state.fatal}"
        return RingBufferStats(
            events_processed=events,
            events_per_second=events / elapsed if elapsed else 0.0,
            batches_read=self._batches,
            errors=errors,
            last_error=last,
            running=self.running,
        )

    def __enter__(self) -> RingBufferConsumer:
        if not self.running:
            self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        # while Ctrl-C (or any exception) propagates, a blocking callback is logged, never raised over it
        self._exit_loop(exc_type)


def _reader(map: Any, parser: Callable[[Any], Any] | None) -> tuple[RingBuffer, bool]:
    from ebpf.events.ringbuf import RingBuffer

    if isinstance(map, RingBuffer):
        return map, False
    return RingBuffer(map, parser=parser), True


def process_events(map: Any, handler: Callable[[Any], Any], max_events: int | None = None,
                   timeout_ms: int | float = 0, parser: Callable[[Any], Any] | None = None) -> int:
    """Deliver the events of a ring buffer to ``handler`` once, waiting up to ``timeout_ms`` for the first.

    :param map: a ring buffer map, or an open :class:`RingBuffer` (left open).
    :param handler: called with each event (bytes, or parsed).
    :param max_events: at most this many (None: all waiting).
    :param parser: applied to each record first.
    :returns: the number of events delivered.
    :raises EBPFError: on a bad map or handler; the handler's exceptions propagate.
    """
    if not callable(handler):
        raise EBPFError(f"process_events handler must be callable, not {type(handler).__name__}")
    rb, owned = _reader(map, None)
    try:
        emit = make_event_handler(parser=parser if parser is not None else rb.parser, handler=handler)
        if timeout_ms:
            rb.wait(timeout_ms)
        return rb.consume(emit, max_events=max_events)
    finally:
        if owned:
            rb.close()


def peek_events(map: Any, max_events: int | None = None, parser: Callable[[Any], Any] | None = None) -> list[Any]:
    """The events waiting in a ring buffer, read without consuming them.

    :param map: a ring buffer map, or an open :class:`RingBuffer` (left open).
    :returns: a list of bytes (or parsed events).
    """
    rb, owned = _reader(map, parser)
    try:
        events = rb.peek(max_events)
        if parser is not None and not owned and rb.parser is None:
            events = [parser(e) for e in events]
        return events
    finally:
        if owned:
            rb.close()
