"""SIGTERM handled like Ctrl-C by every ``ebpf`` command (private)."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from typing import Any

__all__ = ["Terminated", "sigterm_as_interrupt"]


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C's KeyboardInterrupt so every ``except KeyboardInterrupt``/``finally``
    (detaching, closing, summaries) runs on ``kill`` too."""


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`Terminated` in the main thread; the old handler comes back after.

    Outside the main thread (an embedding program's worker) signals are left alone.
    """

    def handler(signum: int, frame: Any) -> None:
        raise Terminated(f"signal {signum}")

    try:
        old = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)
