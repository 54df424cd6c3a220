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
from collections.abc import Callable
from typing import Any

from ebpf.core.errors import BPFSyscallError, EBPFError
from ebpf.core.types import MapType

__all__ = ["make_event_handler", "check_map", "numpy", "map_shared", "Pipeline", "BackgroundLoop", "log"]

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


class BackgroundLoop(abc.ABC):
    """A daemon thread that calls ``step(timeout_ms)`` until stopped, woken early by an eventfd.

    Subclasses provide ``_step(timeout_ms) -> int`` (events handled) and ``_watch_fd()``
    (an fd that becomes readable when events arrive).
    """

    _thread: threading.Thread | None = None

    def _init_loop(self, name: str) -> None:
        self._name = name
        self._stop_evt = threading.Event()
        self._wake_fd = -1
        self._started_at = 0.0
        self._stopped_at = 0.0
        self.fatal_error: BaseException | None = None

    @abc.abstractmethod
    def _step(self, timeout_ms: int) -> int:
        """Handle what is waiting, waiting at most ``timeout_ms``; returns the number of events."""

    @abc.abstractmethod
    def _watch_fd(self) -> int:
        """An fd that becomes readable when events arrive."""

    def _on_batch(self, n: int) -> None:  # noqa: B027 - an optional hook, not abstract
        """Called after each batch of ``n`` events (a hook for subclasses' statistics)."""

    @property
    def running(self) -> bool:
        """True while the background thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def _start_loop(self, poll_interval_ms: int) -> None:
        if not isinstance(poll_interval_ms, int) or isinstance(poll_interval_ms, bool) or poll_interval_ms <= 0:
            raise EBPFError(f"poll_interval_ms must be a positive int, not {poll_interval_ms!r}")
        if self.running:
            raise EBPFError(f"{self._name} is already running")
        self._stop_evt.clear()
        self.fatal_error = None
        self._wake_fd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        self._started_at = time.monotonic()
        self._stopped_at = 0.0
        self._thread = threading.Thread(target=self._run, args=(poll_interval_ms,), name=self._name, daemon=True)
        self._thread.start()

    def _run(self, poll_interval_ms: int) -> None:
        ep = select.epoll()
        try:
            ep.register(self._watch_fd(), select.EPOLLIN)
            ep.register(self._wake_fd, select.EPOLLIN)
            while not self._stop_evt.is_set():
                n = self._step(0)
                if n:
                    self._on_batch(n)
                    continue
                ep.poll(poll_interval_ms / 1000.0)
        except BaseException as exc:  # never die silently: keep it for stats()/stop() and log it
            self.fatal_error = exc
            log.error("%s stopped by %s: %s", self._name, type(exc).__name__, exc)
        finally:
            ep.close()

    def _stop_loop(self, timeout: float) -> None:
        thread = self._thread
        if thread is None:
            return
        self._stop_evt.set()
        if self._wake_fd >= 0:
            try:
                os.eventfd_write(self._wake_fd, 1)
            except OSError:
                pass
        thread.join(timeout)
        if thread.is_alive():
            raise EBPFError(f"{self._name} did not stop within {timeout} s (a callback is blocking)")
        self._thread = None
        self._stopped_at = time.monotonic()
        if self._wake_fd >= 0:
            os.close(self._wake_fd)
            self._wake_fd = -1

    def _elapsed(self) -> float:
        if not self._started_at:
            return 0.0
        end = self._stopped_at or time.monotonic()
        return max(end - self._started_at, 1e-9)
