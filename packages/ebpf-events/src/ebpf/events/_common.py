"""Helpers shared by the ring buffer and perf buffer readers (private).

Event pipelines (:func:`make_event_handler`), map checks, the lazy NumPy import, mmap
error translation and the background-thread machinery of the consumers.
"""

from __future__ import annotations

import abc
import errno
import logging
import mmap
import os
import select
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

from ebpf.core.errors import BPFSyscallError, EBPFError
from ebpf.core.fdowner import release_now, track
from ebpf.core.types import MapType

__all__ = ["make_event_handler", "check_map", "numpy", "map_shared", "Pipeline", "BackgroundLoop", "log", "Waker",
           "Halt", "GuardedReader", "LoopState", "record_error"]

log = logging.getLogger("ebpf.events")

Pipeline = Callable[[Any], Any]


def make_event_handler(parser: Callable[[Any], Any] | None = None, filter: Callable[[Any], bool] | None = None,
                       transform: Callable[[Any], Any] | None = None,
                       handler: Callable[[Any], Any] | None = None) -> Callable[[Any], Any]:
    """Build one callable ``raw record -> None`` out of the usual event pipeline.

    The record goes through ``parser`` (bytes -> object), is dropped when ``filter(event)``
    is false, goes through ``transform`` and lands in ``handler``.  Every step is optional;
    without ``handler`` the pipeline returns the final event (or None when filtered out).

    :param parser: e.g. :func:`ebpf.core.codecs.make_event_parser` output.
    :param filter: keep the event when it returns true.
    :param transform: map the event to something else.
    :param handler: receives the final event.
    :returns: the pipeline callable.
    :raises EBPFError: when a step given is not callable.
    """
    for what, fn in (("parser", parser), ("filter", filter), ("transform", transform), ("handler", handler)):
        if fn is not None and not callable(fn):
            raise EBPFError(f"{what} must be callable, not {type(fn).__name__}")
    # The common shapes get a closure without per-event None checks (the callback path is hot).
    if filter is None and transform is None:
        if parser is None:
            return handler if handler is not None else (lambda raw: raw)
        if handler is None:
            return parser
        p, h = parser, handler
        return lambda raw: h(p(raw))

    def pipeline(raw: Any) -> Any:
        event = parser(raw) if parser is not None else raw
        if filter is not None and not filter(event):
            return None
        if transform is not None:
            event = transform(event)
        return handler(event) if handler is not None else event

    return pipeline


def check_map(map: Any, map_type: MapType, what: str) -> int:
    """The fd of ``map`` after checking it is an open map of ``map_type``.

    :raises EBPFError: when it is not a map, is closed or has another type.
    """
    try:
        actual = MapType.parse(map.map_type)
    except (AttributeError, EBPFError):
        raise EBPFError(f"{what} needs a {map_type.lower_name} map, not {type(map).__name__}") from None
    if actual != map_type:
        raise EBPFError(f"{what} needs a {map_type.lower_name} map, not a {actual.lower_name} map "
                        f"({getattr(map, 'name', '')!r})")
    if getattr(map, "closed", False):
        raise EBPFError(f"{what}: map {getattr(map, 'name', '')!r} is closed")
    fd = map.fd
    if not isinstance(fd, int) or fd < 0:
        raise EBPFError(f"{what}: map has no valid fd")
    return fd


def numpy() -> Any:
    """Import NumPy on first use.

    :raises NotSupportedError: when NumPy is not installed (``pip install ebpf-events[numpy]``).
    """
    try:
        import numpy as np
    except ImportError:
        from ebpf.core.errors import NotSupportedError

        raise NotSupportedError("read_array needs NumPy: pip install ebpf-events[numpy]") from None
    return np


def map_shared(fd: int, length: int, offset: int, writable: bool) -> mmap.mmap:
    """mmap ``length`` bytes of ``fd`` at ``offset`` shared (read-only unless ``writable``).

    :raises BPFSyscallError: with the errno of the failed mmap.
    """
    prot = mmap.PROT_READ | (mmap.PROT_WRITE if writable else 0)
    try:
        return mmap.mmap(fd, length, mmap.MAP_SHARED, prot, offset=offset)
    except OSError as exc:
        err = exc.errno or errno.EINVAL
        hint = "the map is too large for the address space or RLIMIT_MEMLOCK" if err == errno.ENOMEM else ""
        raise BPFSyscallError(err, "mmap", hint=hint) from None


def close_mmap(m: mmap.mmap | None) -> None:
    """Unmap ``m``; when a caller still holds a view of it, leave the unmapping to the last view."""
    if m is None:
        return
    try:
        m.close()
    except BufferError:
        # A memoryview handed out (zero-copy) is still alive: the mapping stays valid for it
        # and goes away with it; never unmap memory somebody may still read.
        pass


class Waker:
    """An eventfd that wakes an epoll wait from another thread; safe to wake after it is closed (a no-op)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._fd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)

    def fileno(self) -> int:
        """The eventfd (readable once :meth:`wake` was called); -1 after :meth:`close`."""
        return self._fd

    def wake(self) -> None:
        """Make the eventfd readable (it stays readable: every later wait returns at once)."""
        with self._lock:
            if self._fd >= 0:
                try:
                    os.eventfd_write(self._fd, 1)
                except OSError:  # the counter is saturated: readable already
                    pass

    def close(self) -> None:
        """Close the eventfd (idempotent)."""
        with self._lock:
            fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)

    def __del__(self) -> None:
        self.close()


class GuardedReader:
    """``close()`` safe against a thread inside a call: it wakes a waiting poll (through :class:`Waker`, which the
    subclass registers in its epoll set) and leaves the release to the last call inside.

    A subclass calls :meth:`_init_guard` with its release function, and brackets every method that touches its
    mappings with ``self._enter()`` / ``self._leave()``.
    """

    _what = "reader"

    def _init_guard(self, release: Callable[..., Any], *args: Any) -> None:
        self._closed = False
        self._busy = 0
        self._guard = threading.Lock()
        self._finalizer = track(self, release, *args)

    @property
    def closed(self) -> bool:
        """True after :meth:`close`."""
        return self._closed

    def _check(self) -> None:
        if self._closed:
            raise EBPFError(f"{self._what} is closed")

    def _enter(self) -> None:
        with self._guard:
            if self._closed:
                raise EBPFError(f"{self._what} is closed")
            self._busy += 1

    def _leave(self) -> None:
        with self._guard:
            self._busy -= 1
            last = self._closed and not self._busy
        if last:
            release_now(self._finalizer)

    def _woken_closed(self) -> EBPFError:
        return EBPFError(f"{self._what} was closed (by another thread) while waiting")

    def _wake(self) -> None:
        """Wake a thread waiting in this reader's epoll."""

    def close(self) -> None:
        """Release the reader (idempotent).  From another thread while a call is inside, that call is woken
        (a waiting poll raises :class:`EBPFError` "closed") and the release happens when it returns."""
        with self._guard:
            if self._closed:
                return
            self._closed = True
            busy = self._busy
        self._wake()
        if not busy:
            release_now(self._finalizer)


class Halt(BaseException):
    """Raised by a consumer's per-record wrapper after the callback returns, when the consumer was told to stop:
    it ends the C-level run of records there (the record just delivered counts as consumed)."""


class LoopState:
    """What the background thread shares with its consumer, without a reference to the consumer itself
    (a consumer dropped without closing is collected, and its finalizer stops the thread)."""

    __slots__ = ("errors", "events", "fatal", "halt", "last_error", "release", "side_errors", "thread", "waker")

    def __init__(self) -> None:
        self.halt = False  # read once per record: a plain attribute, not Event.is_set()
        self.events = 0  # records delivered so far (current during a run)
        self.errors = 0  # callback (pipeline) exceptions, side_errors included
        self.side_errors = 0  # of which not raised by a record's callback (a lost-samples callback)
        self.last_error: str | None = None
        self.fatal: BaseException | None = None
        self.release: Callable[[], None] | None = None  # run by the thread when it ends (close() from a callback)
        self.waker: Waker | None = None
        self.thread: threading.Thread | None = None


def record_error(state: LoopState, name: str, exc: BaseException,
                 on_error: Callable[[BaseException], Any] | None = None) -> None:
    """Count a callback's exception, log the first (and every 1000th), pass it to ``on_error``."""
    state.errors += 1
    count = state.errors
    state.last_error = f"{type(exc).__name__}: {exc}"
    if count == 1 or count % 1000 == 0:
        log.warning("%s: event handler raised %s (%d errors so far)", name, state.last_error, count)
    if on_error is not None:
        try:
            on_error(exc)
        except Exception:
            log.exception("%s: on_error raised", name)


def _abandoned(state: LoopState, release: Callable[[], None] | None) -> None:
    """The release of a consumer collected unclosed (after the ResourceWarning): stop its thread, free its reader."""
    thread = state.thread
    state.halt = True
    if state.waker is not None:
        state.waker.wake()
    if release is None:
        return
    if thread is not None and thread.is_alive() and thread is not threading.current_thread():
        state.release = release  # the thread may still be inside epoll with the ring's fd: it releases on exit
    else:
        release()


def _serve(ref: weakref.ref[BackgroundLoop], state: LoopState, ep: select.epoll, poll_interval: float) -> None:
    """The background thread: steps while there is work, waits on the ring (or the waker) otherwise.

    Holds its consumer only through ``ref`` (a strong reference only during a step), so dropping the
    consumer unclosed lets it be collected: its finalizer sets ``halt`` and wakes this loop.
    """
    try:
        while not state.halt:
            n = _step_once(ref)
            if n < 0:
                break
            if n == 0:
                ep.poll(poll_interval)
    except BaseException as exc:  # never die silently: keep it for stats()/stop() and log it
        state.fatal = exc
        log.error("%s stopped by %s: %s", threading.current_thread().name, type(exc).__name__, exc)
    finally:
        ep.close()
        release, state.release = state.release, None
        if release is not None:
            try:
                release()
            except Exception:  # pragma: no cover - releasing never raises in practice
                log.exception("%s: releasing the reader failed", threading.current_thread().name)


def _step_once(ref: weakref.ref[BackgroundLoop]) -> int:
    """One step of the consumer behind ``ref``: events handled, -1 when it is gone or told to stop."""
    owner = ref()
    if owner is None:
        return -1
    try:
        n = owner._step(0)
    except Halt:
        return -1
    if n:
        owner._on_batch(n)
    return n


class BackgroundLoop(abc.ABC):
    """A daemon thread that calls ``_step(0)`` while there is work and waits on ``_watch_fd()`` otherwise.

    Stopping takes effect after the callback that is running returns: the per-record wrapper of a
    subclass raises :class:`Halt` once ``self._state.halt`` is set.  ``stop()``/``close()`` work from
    inside a callback too (the thread is not joined then; the reader is released when the callback returns).

    Subclasses provide ``_step(timeout_ms) -> int`` (events handled), ``_watch_fd()`` and ``_reader()``
    (what ``close()`` releases).
    """

    _thread: threading.Thread | None = None

    def _init_loop(self, name: str) -> None:
        self._name = name
        self._state = LoopState()
        self._started_at = 0.0
        self._stopped_at = 0.0
        self._closed = False

    def _track(self, release: Callable[[], None] | None) -> None:
        """Arm the finalizer of a consumer dropped unclosed (``release`` frees its reader; must not refer to self)."""
        self._release = release
        self._finalizer = track(self, _abandoned, self._state, release)  # warns "unclosed <class>" when collected

    @abc.abstractmethod
    def _step(self, timeout_ms: int) -> int:
        """Handle what is waiting, waiting at most ``timeout_ms``; returns the number of events."""

    @abc.abstractmethod
    def _watch_fd(self) -> int:
        """An fd that becomes readable when events arrive."""

    def _on_batch(self, n: int) -> None:  # noqa: B027 - an optional hook, not abstract
        """Called after each step that handled ``n`` events (a hook for subclasses' statistics)."""

    @property
    def fatal_error(self) -> BaseException | None:
        """The exception that ended the thread, or None."""
        return self._state.fatal

    @fatal_error.setter
    def fatal_error(self, exc: BaseException | None) -> None:
        self._state.fatal = exc

    @property
    def running(self) -> bool:
        """True while the background thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def _start_loop(self, poll_interval_ms: int) -> None:
        if not isinstance(poll_interval_ms, int) or isinstance(poll_interval_ms, bool) or poll_interval_ms <= 0:
            raise EBPFError(f"poll_interval_ms must be a positive int, not {poll_interval_ms!r}")
        if self._closed:
            raise EBPFError(f"{self._name} is closed")
        if self.running:
            raise EBPFError(f"{self._name} is already running")
        state = self._state
        state.halt = False
        state.fatal = None
        if state.waker is not None:
            state.waker.close()
        state.waker = Waker()
        # the epoll set is made here, not in the thread: the reader's fd is valid now (it may be closed later)
        ep = select.epoll()
        try:
            ep.register(self._watch_fd(), select.EPOLLIN)
            ep.register(state.waker.fileno(), select.EPOLLIN)
        except BaseException:
            ep.close()
            raise
        self._started_at = time.monotonic()
        self._stopped_at = 0.0
        self._thread = threading.Thread(target=_serve, name=self._name, daemon=True,
                                        args=(weakref.ref(self), state, ep, poll_interval_ms / 1000.0))
        state.thread = self._thread
        self._thread.start()

    def _in_callback(self) -> bool:
        return self._thread is not None and self._thread is threading.current_thread()

    def _stop_loop(self, timeout: float) -> None:
        thread = self._thread
        if thread is None:
            return
        state = self._state
        state.halt = True
        if state.waker is not None:
            state.waker.wake()
        if thread is threading.current_thread():
            # stop() from the consumer's own callback: the run ends when the callback returns
            self._stopped_at = time.monotonic()
            return
        thread.join(timeout)
        if thread.is_alive():
            raise EBPFError(f"{self._name} did not stop within {timeout} s (a callback is blocking)")
        self._thread = None
        self._stopped_at = time.monotonic()
        if state.waker is not None:
            state.waker.close()
            state.waker = None

    def _close_loop(self, timeout: float = 5.0) -> None:
        """Stop the thread and release the reader (idempotent); from a callback, the release waits for its return.

        :raises EBPFError: when a callback blocks longer than ``timeout`` (the reader is released by the
            thread once it returns).
        """
        if self._closed:
            return
        self._closed = True
        release = self._release
        self._finalizer.detach()
        if self._in_callback():
            self._stop_loop(timeout)
            self._state.release = release
            return
        try:
            self._stop_loop(timeout)
        except EBPFError:
            self._state.release = release  # the blocked callback's thread releases it when it ends
            raise
        if release is not None:
            release()

    def _exit_loop(self, exc_type: type[BaseException] | None) -> None:
        """``__exit__``: close; while an exception (Ctrl-C) is propagating, never replace it with ours."""
        if exc_type is None:
            self._close_loop()
            return
        try:
            self._close_loop()
        except EBPFError as err:
            log.error("%s: %s; the reader is released when the callback returns", self._name, err)

    def _elapsed(self) -> float:
        if not self._started_at:
            return 0.0
        end = self._stopped_at or time.monotonic()
        return max(end - self._started_at, 1e-9)
