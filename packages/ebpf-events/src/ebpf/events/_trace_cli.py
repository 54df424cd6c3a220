"""``ebpf trace exec|open|tcp-connect``: live events from the ready-made tracers.

Registered by ebpf-events through the ``ebpf_cli_commands`` hook.  Plain output is one
aligned line per event; ``--json`` prints one JSON object per line (JSON Lines), so the
stream can be piped into ``jq`` while it runs.  ``--duration`` stops after that many
seconds; without it the command runs until Ctrl-C.  A line "tracing ... (Ctrl-C to stop)"
goes to stderr once the program is attached.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from typing import Any

__all__ = ["add_commands", "run_trace", "COLUMNS"]

#: Columns of the plain output per tracer: (header, attribute, width).
COLUMNS: dict[str, tuple[tuple[str, str, int], ...]] = {
    "exec": (("PID", "pid", 7), ("PPID", "ppid", 7), ("UID", "uid", 5), ("COMM", "comm", 16), ("FILENAME", "filename", 0)),
    "open": (("PID", "pid", 7), ("UID", "uid", 5), ("COMM", "comm", 16), ("FLAGS", "flags", 8), ("PATH", "filename", 0)),
    "tcp-connect": (("PID", "pid", 7), ("UID", "uid", 5), ("COMM", "comm", 16), ("FAMILY", "family", 6),
                    ("DADDR", "daddr", 39), ("DPORT", "dport", 0)),
}


def _line(values: list[str], widths: list[int]) -> str:
    return " ".join(v.ljust(w) if w else v for v, w in zip(values, widths)).rstrip()


def _matches(event: Any, pid: int | None, comm: str | None) -> bool:
    return (pid is None or event.pid == pid) and (comm is None or event.comm == comm)


def run_trace(name: str, duration: float | None = None, as_json: bool = False, pid: int | None = None,
              comm: str | None = None) -> int:
    """Trace ``name`` (``exec``, ``open``, ``tcp-connect``), printing events as they arrive.

    :param duration: stop after this many seconds (None: until Ctrl-C).
    :param as_json: one JSON object per line instead of columns.
    :param pid: only events of this process id.
    :param comm: only events of processes with this command name.
    :returns: 0 (Ctrl-C is a normal way to stop).
    :raises EBPFError: when the tracer cannot be loaded or attached, or ``duration`` is not positive.
    """
    from ebpf.core.errors import EBPFError
    from ebpf.events.tracers import TRACERS

    if duration is not None and duration <= 0:
        raise EBPFError(f"--duration must be positive, not {duration}")
    factory = TRACERS.get(name)
    if factory is None:
        raise EBPFError(f"unknown tracer {name!r}; choose one of {', '.join(TRACERS)}")
    columns = COLUMNS[name]
    widths = [w for _, _, w in columns]
    count = 0
    with factory() as tracer:
        until = f"for {duration:g}s" if duration is not None else "(Ctrl-C to stop)"
        try:  # from here on Ctrl-C/SIGTERM (as KeyboardInterrupt) detach and end with the count
            print(f"tracing {name} via {tracer.tracepoint} {until}", file=sys.stderr, flush=True)
            if not as_json:
                print(_line([h for h, _, _ in columns], widths), flush=True)
            for event in tracer.events(duration):
                if not _matches(event, pid, comm):
                    continue
                count += 1
                if as_json:
                    print(json.dumps(dataclasses.asdict(event)), flush=True)
                else:
                    print(_line([str(getattr(event, attr)) for _, attr, _ in columns], widths), flush=True)
        except KeyboardInterrupt:
            pass
    print(f"{count} event(s)", file=sys.stderr)
    return 0


def _trace(args: argparse.Namespace) -> int:
    return run_trace(args.tracer, args.duration, args.json, args.pid, args.comm)


def add_commands(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add ``trace`` (with ``exec``, ``open``, ``tcp-connect``) to the ``ebpf`` parser."""
    p = subparsers.add_parser("trace", help="live events: process launches, file opens, TCP connects (ebpf-events)")
    sub = p.add_subparsers(dest="tracer", metavar="TRACER", required=True)
    helps = {  # exec and open come from ebpf.events.tools (fd/error, argv, return code)
        "tcp-connect": "outgoing TCP connects: pid, uid, comm, address, port (sock:inet_sock_set_state)",
    }
    for name, text in helps.items():
        t = sub.add_parser(name, help=text, description=text)
        t.add_argument("--json", action="store_true", help="one JSON object per event and line")
        t.add_argument("--duration", type=float, default=None, metavar="SECONDS", help="stop after SECONDS")
        t.add_argument("--pid", type=int, default=None, help="only events of this process id")
        t.add_argument("--comm", default=None, help="only events of processes with this command name")
        t.set_defaults(func=_trace)
    from ebpf.events._profile_cli import add_profile_commands

    add_profile_commands(sub)
    from ebpf.events.tools._cli import add_list_command, add_tool_commands

    add_tool_commands(sub)
    add_list_command(subparsers)
