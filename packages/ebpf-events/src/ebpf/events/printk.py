"""``bpf_printk`` output: lines from tracefs ``trace_pipe``, parsed.

``bpf_trace_printk()`` writes the ``bpf_trace:bpf_trace_printk`` trace event.  The global
``trace_pipe`` is one queue that every reader drains: two tools reading it steal each other's
lines.  :class:`TracePipe` therefore reads, by default, from a tracefs *instance* of its own
(``instances/ebpf_<pid>_<n>``, removed on close) with only that event enabled, so it sees
every printk line and takes none from other readers; ``TracePipe(instance=None)`` reads the
global pipe as bcc does.  With ``pid=`` a private instance filters in the kernel
(``common_pid == pid``)::

    with TracePipe(pid=os.getpid()) as pipe:
        prog.test_run(...)
        for line in pipe.lines(duration=1):
            print(line.pid, line.message)

:func:`trace_print` is bcc's ``b.trace_print(fmt=)``.
"""

from __future__ import annotations

import errno
import itertools
import os
import re
import select
import sys
import time
from collections.abc import Iterator
from typing import IO

from ebpf.core.errors import EBPFError, NotSupportedError
from ebpf.core.records import dataclass

__all__ = ["TraceLine", "TracePipe", "parse_trace_line", "trace_print", "format_line", "check_format", "PRINTK_EVENT"]

#: The trace event bpf_trace_printk() writes.
PRINTK_EVENT = "bpf_trace/bpf_trace_printk"
_counter = itertools.count()
# "<task>-<pid> [(<tgid>)] [<cpu>] [<flags>] <secs>.<usecs>: <event>: <message>"
_LINE = re.compile(r"^\s*(?P<task>.*?)-(?P<pid>\d+)\s+(?:\(\s*[\d-]+\)\s+)?\[(?P<cpu>\d+)\]\s+"
                   r"(?:(?P<flags>[^\s\[\]]{4,6})\s+)?(?P<ts>\d+\.\d+):\s+(?P<event>[^:\s]+):\s?(?P<msg>.*)$")


@dataclass(frozen=True)
class TraceLine:
    """One parsed trace line.

    :ivar task: the command name (``<...>`` when the kernel did not record it).
    :ivar pid: the thread id.  :ivar cpu: the CPU.  :ivar flags: irq/preempt flags (``"d..31"``).
    :ivar timestamp: seconds since boot.  :ivar event: ``"bpf_trace_printk"``.
    :ivar message: the text printed.
    """

    task: str
    pid: int
    cpu: int
    flags: str
    timestamp: float
    event: str
    message: str

    def fields(self) -> tuple[str, int, int, str, float, str]:
        """bcc's ``trace_fields()`` tuple: (task, pid, cpu, flags, ts, msg)."""
        return self.task, self.pid, self.cpu, self.flags, self.timestamp, self.message


def parse_trace_line(line: str) -> TraceLine | None:
    """Parse one ``trace_pipe`` line; None for lines that are not events (``CPU:1 [LOST 3 EVENTS]``)."""
    m = _LINE.match(line.rstrip("\n"))
    if m is None:
        return None
    return TraceLine(m.group("task").strip(), int(m.group("pid")), int(m.group("cpu")), m.group("flags") or "",
                     float(m.group("ts")), m.group("event"), m.group("msg"))


def _write(path: str, text: str) -> None:
    try:
        with open(path, "w") as fh:
            fh.write(text)
    except OSError as exc:
        raise EBPFError(f"cannot write {text!r} to {path}: {exc.strerror}") from None


class TracePipe:
    """A reader of trace lines, from a private tracefs instance (default) or the global pipe.

    :param instance: True (default): a new instance of our own, removed on close; a str: that
        instance (created if missing, removed on close only if created here); None: the global
        ``trace_pipe``, shared with every other reader.
    :param pid: only lines of this process/thread id (a kernel filter in an instance, checked here too).
    :param events: the trace events to enable in an instance (``category/name``).
    :raises NotSupportedError: tracefs cannot be mounted; :raises EBPFError: the instance
        cannot be set up (nothing is left behind).
    """

    def __init__(self, instance: bool | str | None = True, *, pid: int | None = None,
                 events: tuple[str, ...] = (PRINTK_EVENT,)) -> None:
        """Create or open the instance and open its pipe (non-blocking)."""
        from ebpf.core.system import ensure_tracefs

        if pid is not None and (isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0):
            raise EBPFError(f"pid must be a positive int, not {pid!r}")
        if isinstance(instance, str) and (not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", instance) or
                                          instance in (".", "..")):
            raise EBPFError(f"bad tracefs instance name {instance!r}")
        root = ensure_tracefs()
        self.pid = pid
        self._fd = -1
        self._buf = b""
        self._created: str | None = None
        self.instance: str | None = None
        if instance is None:
            self.path = os.path.join(root, "trace_pipe")
        else:
            name = instance if isinstance(instance, str) else f"ebpf_{os.getpid()}_{next(_counter)}"
            inst = os.path.join(root, "instances", name)
            try:
                os.mkdir(inst)
                self._created = inst
            except FileExistsError:
                pass
            except OSError as exc:
                raise NotSupportedError(f"cannot create tracefs instance {inst}: {exc.strerror}") from None
            self.instance = name
            try:
                for event in events:
                    base = os.path.join(inst, "events", *event.split("/", 1))
                    if not os.path.isdir(base):
                        raise EBPFError(f"no trace event {event} in {inst}")
                    if pid is not None:
                        _write(os.path.join(base, "filter"), f"common_pid == {pid}")
                    _write(os.path.join(base, "enable"), "1")
            except BaseException:
                self._remove_instance()
                raise
            self.path = os.path.join(inst, "trace_pipe")
        try:
            self._fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:
            self._remove_instance()
            raise EBPFError(f"cannot open {self.path}: {exc.strerror}") from None

    def fileno(self) -> int:
        """The pipe's fd (readable when lines are waiting), for selectors/asyncio."""
        if self._fd < 0:
            raise EBPFError("TracePipe is closed")
        return self._fd

    def read(self, timeout: float | None = 0.0) -> list[TraceLine]:
        """The lines waiting now, after waiting up to ``timeout`` seconds for the first (None: forever).

        :returns: parsed lines (non-event lines dropped; ``pid`` applied).
        :raises EBPFError: when closed.
        """
        fd = self.fileno()
        ms = -1 if timeout is None else max(int(timeout * 1000), 0)
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        if not poller.poll(ms):
            return []
        chunks = [self._buf]
        while True:
            try:
                data = os.read(fd, 65536)
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno == errno.EINTR:
                    continue
                raise EBPFError(f"reading {self.path}: {exc.strerror}") from None
            if not data:
                break
            chunks.append(data)
        raw = b"".join(chunks)
        *complete, self._buf = raw.split(b"\n")
        out = []
        for text in complete:
            line = parse_trace_line(text.decode("utf-8", "replace"))
            if line is not None and (self.pid is None or line.pid == self.pid):
                out.append(line)
        return out

    def lines(self, duration: float | None = None) -> Iterator[TraceLine]:
        """Yield lines as they arrive, for ``duration`` seconds (None: until interrupted)."""
        deadline = None if duration is None else time.monotonic() + duration
        while True:
            left = 0.2 if deadline is None else min(0.2, deadline - time.monotonic())
            if left <= 0:
                break
            yield from self.read(left)
        yield from self.read(0)

    def __iter__(self) -> Iterator[TraceLine]:
        return self.lines()

    def _remove_instance(self) -> None:
        if self._created is not None:
            try:
                os.rmdir(self._created)
            except OSError:
                pass
            self._created = None

    def close(self) -> None:
        """Close the pipe and remove an instance created here (idempotent)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        self._remove_instance()

    def __enter__(self) -> TracePipe:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # interpreter shutdown
            pass


def check_format(fmt: str | None) -> None:
    """Refuse a ``trace_print`` template that does not format bcc's six fields.

    :raises EBPFError: with the reason.
    """
    if fmt is None:
        return
    if not isinstance(fmt, str):
        raise EBPFError(f"trace_print format must be a str, not {type(fmt).__name__}")
    try:
        fmt.format("task", 1, 0, "....", 0.0, "msg")
    except (IndexError, KeyError, ValueError) as exc:
        raise EBPFError(f"bad trace_print format {fmt!r}: {exc}") from None


def format_line(line: TraceLine, fmt: str | None = None) -> str:
    """``fmt.format(task, pid, cpu, flags, ts, msg)``, or ``task-pid [cpu] ts: msg`` without ``fmt``."""
    if fmt is not None:
        return fmt.format(*line.fields())
    return f"{line.task}-{line.pid} [{line.cpu:03d}] {line.timestamp:.6f}: {line.message}"


def trace_print(fmt: str | None = None, *, duration: float | None = None, instance: bool | str | None = True,
                pid: int | None = None, file: IO[str] | None = None) -> int:
    """Print ``bpf_printk`` lines as they arrive (bcc's ``trace_print``) until ``duration`` or Ctrl-C.

    :param fmt: a ``str.format`` template over bcc's fields ``(task, pid, cpu, flags, ts, msg)``,
        e.g. ``"{1} {5}"``; None prints ``task-pid [cpu] ts: msg``.
    :param duration: seconds to run (None: until interrupted).
    :param instance: as :class:`TracePipe` (default: a private instance).
    :param pid: only this process's lines.
    :param file: where to print (default stdout).
    :returns: the number of lines printed.
    :raises EBPFError: for a template that does not format (checked before reading).
    """
    check_format(fmt)
    out = file or sys.stdout
    count = 0
    with TracePipe(instance, pid=pid) as pipe:
        try:
            for line in pipe.lines(duration):
                print(format_line(line, fmt), file=out, flush=True)
                count += 1
        except KeyboardInterrupt:
            pass
    return count
