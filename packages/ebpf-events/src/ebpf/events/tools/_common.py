"""Pieces every tool shares: the object holding links/programs/maps, instruction snippets,
and the ``ebpf trace <tool>`` run loop (duration, Ctrl-C/SIGTERM, JSON Lines, rich live view)."""

from __future__ import annotations

import errno
import json
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

from ebpf.core import asm
from ebpf.core.asm import R0, R1, R2, R3, R10
from ebpf.core.errors import EBPFError

__all__ = ["ToolBase", "pid_filter", "ktime_to", "UNITS", "run_hist_tool", "run_event_tool", "check_common",
           "errno_name", "stop_on_sigterm"]

#: val_type name -> nanoseconds per unit.
UNITS = {"nsecs": 1, "usecs": 1000, "msecs": 1_000_000}


def errno_name(err: int) -> str:
    """``"ENOENT"`` for 2, ``"E<n>"`` for numbers Python does not know."""
    return errno.errorcode.get(err, f"E{err}")


def check_common(pid: int | None = None, duration: float | None = None, unit: str | None = None) -> None:
    """Refuse bad ``pid``/``duration``/``unit`` before anything is loaded.

    :raises EBPFError: with the reason.
    """
    if pid is not None and (isinstance(pid, bool) or not isinstance(pid, int) or not 0 < pid < 1 << 31):
        raise EBPFError(f"pid must be a positive int, not {pid!r}")
    if duration is not None and (isinstance(duration, bool) or not isinstance(duration, (int, float))
                                 or duration <= 0):
        raise EBPFError(f"--duration must be positive, not {duration!r}")
    if unit is not None and unit not in UNITS:
        raise EBPFError(f"unit must be one of {', '.join(UNITS)}, not {unit!r}")


def pid_filter(pid: int | None, skip: str) -> list[Any]:
    """Jump to ``skip`` unless the current process (tgid) is ``pid``; nothing when ``pid`` is None.  Clobbers R0."""
    if pid is None:
        return []
    return [asm.call("get_current_pid_tgid"), asm.rsh64(R0, 32), asm.jne(R0, pid, skip)]


def ktime_to(unit_ns: int) -> list[Any]:
    """``r0 /= unit_ns`` (nothing for nanoseconds)."""
    return [] if unit_ns == 1 else [asm.div64(R0, unit_ns)]


def store_start(start_map: Any, key_off: int = -8) -> list[Any]:
    """``start[pid_tgid] = ktime_get_ns()``: the entry half of a latency measurement.  Clobbers R0-R5."""
    return [asm.call("get_current_pid_tgid"), asm.stx_mem("dw", R10, R0, key_off),
            asm.call("ktime_get_ns"), asm.stx_mem("dw", R10, R0, key_off - 8),
            asm.ld_map_fd(R1, start_map), asm.mov64(R2, R10), asm.add64(R2, key_off),
            asm.mov64(R3, R10), asm.add64(R3, key_off - 8), asm.mov64(asm.R4, 0), asm.call("map_update_elem")]


def take_delta(start_map: Any, dst: Any, missing: str, key_off: int = -8) -> list[Any]:
    """``dst = ktime_get_ns() - start[pid_tgid]`` and delete the entry; jump to ``missing`` without one.

    ``dst`` must be R6-R9 (kept across calls).  Clobbers R0-R5.
    """
    return [asm.call("get_current_pid_tgid"), asm.stx_mem("dw", R10, R0, key_off),
            asm.ld_map_fd(R1, start_map), asm.mov64(R2, R10), asm.add64(R2, key_off),
            asm.call("map_lookup_elem"), asm.jeq(R0, 0, missing), asm.ldx_mem("dw", dst, R0, 0),
            asm.call("ktime_get_ns"), asm.sub64(R0, dst), asm.mov64(dst, R0),
            asm.ld_map_fd(R1, start_map), asm.mov64(R2, R10), asm.add64(R2, key_off), asm.call("map_delete_elem")]


class ToolBase:
    """Owns what a tool loaded: links, programs and maps, released in reverse order by :meth:`close`."""

    def __init__(self) -> None:
        """Start with nothing held."""
        self._closers: list[Callable[[], None]] = []

    def _hold(self, obj: Any) -> Any:
        self._closers.append(obj.close)
        return obj

    def close(self) -> None:
        """Detach and release everything (idempotent)."""
        while self._closers:
            self._closers.pop()()

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # interpreter shutdown
            pass


class stop_on_sigterm:
    """Context manager: SIGTERM raises KeyboardInterrupt inside, so tools stop as on Ctrl-C."""

    def __enter__(self) -> stop_on_sigterm:
        self._old: Any = None
        try:
            self._old = signal.signal(signal.SIGTERM, self._raise)
        except ValueError:  # not the main thread: leave signals alone
            self._old = None
        return self

    @staticmethod
    def _raise(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    def __exit__(self, *exc: object) -> None:
        if self._old is not None:
            signal.signal(signal.SIGTERM, self._old)


def _live(render: Callable[[], Any]) -> Any:
    """A rich Live display on a terminal, else None."""
    if not sys.stdout.isatty() or os.environ.get("TERM") == "dumb":
        return None
    try:
        from rich.live import Live
    except ImportError:
        return None
    return Live(render(), refresh_per_second=2, transient=False)


def run_hist_tool(tool: Any, name: str, duration: float | None, interval: float | None, as_json: bool,
                  print_text: Callable[[], str], to_dict: Callable[[], dict[str, Any]],
                  rich_view: Callable[[], Any] | None = None, timestamp: bool = False) -> int:
    """Collect until ``duration``/Ctrl-C/SIGTERM, then print (every ``interval`` seconds too).

    :param timestamp: start each printout with the wall-clock time (``HH:MM:SS``, bcc's ``-T``; ``"time"``
        in JSON).
    :returns: 0.
    """
    deadline = None if duration is None else time.monotonic() + duration
    until = f"for {duration:g}s" if duration is not None else "(Ctrl-C to stop)"
    live = None if as_json or rich_view is None else _live(rich_view)

    def emit() -> None:
        clock = time.strftime("%H:%M:%S") if timestamp else None
        if as_json:
            print(json.dumps(to_dict() if clock is None else {"time": clock, **to_dict()}), flush=True)
        else:
            print(("" if clock is None else f"{clock}\n") + print_text(), end="", flush=True)

    with stop_on_sigterm():  # before the "tracing" line: a SIGTERM right after it must stop us cleanly
        try:  # the line inside: a SIGTERM that lands while it is printed is still a clean stop
            print(f"tracing {name} {until}", file=sys.stderr, flush=True)
            if live is not None:
                live.start()
            next_tick = None if interval is None else time.monotonic() + interval
            while deadline is None or time.monotonic() < deadline:
                stops = [t for t in (deadline, next_tick) if t is not None]
                time.sleep(max(min(min(stops, default=time.monotonic() + 0.25) - time.monotonic(), 0.25), 0))
                if live is not None:
                    live.update(rich_view())  # type: ignore[misc]
                if next_tick is not None and time.monotonic() >= next_tick:
                    next_tick += interval  # type: ignore[operator]
                    if live is None:
                        emit()
        except KeyboardInterrupt:
            pass
        finally:
            if live is not None:
                live.stop()
    emit()
    return 0


def run_event_tool(events: Iterator[Any], name: str, duration: float | None, as_json: bool,
                   columns: tuple[tuple[str, int], ...], row: Callable[[Any], list[str]],
                   as_dict: Callable[[Any], dict[str, Any]]) -> int:
    """Print events as they arrive (aligned columns or JSON Lines) until the iterator ends or Ctrl-C/SIGTERM.

    :returns: 0.
    """
    widths = [w for _, w in columns]

    def line(values: list[str]) -> str:
        return " ".join(v.ljust(w) if w else v for v, w in zip(values, widths)).rstrip()

    until = f"for {duration:g}s" if duration is not None else "(Ctrl-C to stop)"
    count = 0
    with stop_on_sigterm():
        try:  # the "tracing" line and the header inside: a SIGTERM right after "tracing" is a clean stop too
            print(f"tracing {name} {until}", file=sys.stderr, flush=True)
            if not as_json:
                print(line([h for h, _ in columns]), flush=True)
            for event in events:
                count += 1
                print(json.dumps(as_dict(event)) if as_json else line(row(event)), flush=True)
        except KeyboardInterrupt:
            pass
    print(f"{count} event(s)", file=sys.stderr)
    return 0


class EventToolBase(ToolBase):
    """A tool whose programs send records through a ring buffer; :meth:`events` yields them parsed."""

    def _open_ring(self, name: str, parser: Callable[[Any], Any], size: int = 1 << 20) -> Any:
        from ebpf.core.maps import create_ringbuf_map
        from ebpf.events.ringbuf import RingBuffer

        self._pending: list[Any] = []
        self.ring = self._hold(create_ringbuf_map(size, name=name[:15]))
        self._reader = self._hold(RingBuffer(self.ring, self._pending.append, parser=parser))
        return self.ring

    def poll(self, timeout_ms: float = 100) -> list[Any]:
        """Wait up to ``timeout_ms`` for records; returns those that arrived, parsed."""
        self._reader.poll(timeout_ms)
        out, self._pending[:] = list(self._pending), []
        return out

    def raw_events(self, duration: float | None = None) -> Iterator[Any]:
        """Yield records as they arrive for ``duration`` seconds (None: until interrupted); yields
        None every ~100 ms without records so callers can act on time."""
        deadline = None if duration is None else time.monotonic() + duration
        while True:
            left = 0.1 if deadline is None else min(0.1, deadline - time.monotonic())
            if left <= 0:
                break
            got = self.poll(left * 1000)
            yield from got
            if not got:
                yield None
        yield from self.poll(0)


def scratch_event(scratch: Any, dst: Any, skip: str) -> list[Any]:
    """``dst = &scratch[0]`` (a per-CPU array used to build records too big for the stack); jump to ``skip`` if NULL."""
    return [asm.st_mem("w", R10, -4, 0), asm.ld_map_fd(R1, scratch), asm.mov64(R2, R10), asm.add64(R2, -4),
            asm.call("map_lookup_elem"), asm.jeq(R0, 0, skip), asm.mov64(dst, R0)]


def comm_into(base: Any, off: int) -> list[Any]:
    """get_current_comm(base + off, 16).  Clobbers R0-R5."""
    return [asm.mov64(R1, base), asm.add64(R1, off), asm.mov64(R2, 16), asm.call("get_current_comm")]


def user_str_into(base: Any, off: int, size: int, src_ptr: Any) -> list[Any]:
    """probe_read_user_str(base + off, size, src_ptr); ``src_ptr`` is a register (not R1/R2).  Clobbers R0-R5."""
    return [asm.mov64(R3, src_ptr), asm.mov64(R1, base), asm.add64(R1, off), asm.mov64(R2, size),
            asm.call("probe_read_user_str")]
