"""Link kinds of the tracing attach functions: several attachments as one, tracefs-made probes."""

from __future__ import annotations

import os
import weakref
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from ebpf.core.errors import EBPFError
from ebpf.core.links import Link, LinkInfo

if TYPE_CHECKING:  # pragma: no cover
    from ebpf.core.programs import Program

__all__ = ["MultiLink", "TracefsProbeLink", "remove_tracefs_event"]


class MultiLink(Link):
    """Several attachments handled as one (perf_event programs on every CPU, a USDT probe at
    several call sites).  ``fd`` is -1; :attr:`links` holds the parts."""

    def __init__(self, links: Sequence[Link], program: Program | None = None, description: str = "") -> None:
        """Own ``links`` (closed together)."""
        super().__init__(program, description)
        self.links = list(links)

    @property
    def closed(self) -> bool:
        """True once every part is closed."""
        return all(link.closed for link in self.links)

    def detach(self) -> None:
        """Detach every part (the first error is raised after trying them all)."""
        first: BaseException | None = None
        for link in self.links:
            try:
                link.detach()
            except BaseException as exc:  # keep detaching the others
                first = first or exc
        if first is not None:
            raise first

    def close(self) -> None:
        """Close every part."""
        self.detach()


def write_tracefs(path: str, line: str) -> None:
    """Append ``line`` to a tracefs control file with one write(2).

    (Python's ``open(path, "a")`` seeks to the end first, which tracefs refuses with EINVAL.)

    :raises OSError: with the kernel's errno when it rejects the line.
    """
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def remove_tracefs_event(events_file: str, group: str, event: str) -> None:
    """Remove a kprobe/uprobe event made through tracefs (``-:group/event``); errors are ignored."""
    try:
        write_tracefs(events_file, f"-:{group}/{event}\n")
    except OSError:
        pass


class TracefsProbeLink(Link):
    """A probe created through tracefs ``kprobe_events``/``uprobe_events`` plus the perf link on it.

    Detaching also removes the tracefs event, so nothing is left behind.
    """

    def __init__(self, inner: Link, events_file: str, group: str, event: str) -> None:
        """Wrap ``inner`` (a PerfEventLink) and remember the tracefs event to remove."""
        super().__init__(inner.program, inner.description)
        self.inner = inner
        self.event = f"{group}/{event}"
        self._remove: Callable[[], None] = lambda: remove_tracefs_event(events_file, group, event)
        self._finalizer = weakref.finalize(self, _close_and_remove, inner, events_file, group, event)

    @property
    def fd(self) -> int:
        """The inner link's fd."""
        return self.inner.fd

    @property
    def closed(self) -> bool:
        """True once detached."""
        return self.inner.closed

    def detach(self) -> None:
        """Detach the program and remove the tracefs event."""
        if self._finalizer.alive:
            self._finalizer()

    def pin(self, path: str) -> None:
        """Pin the inner bpf link (the tracefs event then outlives this object)."""
        self.inner.pin(path)
        self._finalizer.detach()

    def info(self) -> LinkInfo:
        """The inner link's info."""
        return self.inner.info()


def _close_and_remove(inner: Link, events_file: str, group: str, event: str) -> None:
    try:
        inner.close()
    finally:
        remove_tracefs_event(events_file, group, event)


def tracefs_event_name(kind: str) -> tuple[str, str]:
    """A unique (group, event) name for a probe made by this process."""
    global _counter
    _counter += 1
    return "ebpf", f"{kind}_{os.getpid()}_{_counter}"


_counter = 0


def check_program(program: object, prog_types: tuple[str, ...], what: str) -> None:
    """Raise EBPFError unless ``program`` is a loaded program of one of ``prog_types`` (lower names)."""
    prog_type = getattr(program, "prog_type", None)
    name = getattr(prog_type, "lower_name", None)
    if name is None:
        raise EBPFError(f"{what} needs a loaded program, not {type(program).__name__}")
    if name not in prog_types:
        raise EBPFError(f"{what} needs a {' or '.join(prog_types)} program, not a {name} program "
                        f"({getattr(program, 'name', '')!r})")
    if getattr(program, "closed", False):
        raise EBPFError(f"{what}: program {getattr(program, 'name', '')!r} is closed")
