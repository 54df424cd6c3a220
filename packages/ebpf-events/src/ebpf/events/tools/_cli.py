"""``ebpf trace exec|open|execsnoop|opensnoop|syscount|funclatency|runqlat|biolatency|printk`` and
``ebpf list tracepoints|usdt|helpers|lsm`` (beside ``list kfuncs``).

Every tool takes ``--duration`` (else it runs until Ctrl-C or SIGTERM, then prints), ``--json``
(one JSON object per line) and, where it means something, ``--pid``; histogram tools show a
live ``rich`` view on terminals and print bcc's layout when they stop.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ebpf.events.tools._common import check_common, run_event_tool, run_hist_tool, stop_on_sigterm

__all__ = ["add_tool_commands", "add_list_command"]


def _common(p: argparse.ArgumentParser, pid: bool = True, interval: bool = False) -> None:
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.add_argument("--duration", type=float, default=None, metavar="SECONDS", help="stop after SECONDS")
    if pid:
        p.add_argument("-p", "--pid", type=int, default=None, help="only this process id")
    if interval:
        p.add_argument("--interval", type=float, default=None, metavar="SECONDS",
                       help="also print (and reset) every SECONDS")


def _snoop_options(p: argparse.ArgumentParser, exec_: bool) -> None:
    """bcc's execsnoop/opensnoop filters and columns: ``-u UID``, ``-n NAME``, and the time columns with
    bcc's letters (execsnoop: ``-T`` wall clock, ``-t`` seconds; opensnoop: ``-T`` seconds)."""
    p.add_argument("-u", "--uid", type=int, default=None, help="only this user id")
    p.add_argument("-n", "--name", default=None, help="only processes whose name (exec: or arguments) match this regex")
    if exec_:
        p.add_argument("-T", "--time", action="store_true", help="a TIME column (HH:MM:SS)")
        p.add_argument("-t", "--timestamp", action="store_true", help="a TIME(s) column (seconds since start)")
    else:
        p.add_argument("-T", "--timestamp", action="store_true", help="a TIME(s) column (seconds since start)")


def _unit(p: argparse.ArgumentParser, default: str) -> None:
    """``--unit``, ``-u``/``-m`` and (histogram tools) bcc's ``-T`` wall-clock time before each printout."""
    p.add_argument("-T", "--timestamp", action="store_true", help="print HH:MM:SS before each histogram")
    p.add_argument("--unit", choices=("nsecs", "usecs", "msecs"), default=default, help=f"default {default}")
    p.add_argument("-u", dest="unit", action="store_const", const="usecs", help="microseconds")
    p.add_argument("-m", dest="unit", action="store_const", const="msecs", help="milliseconds")


def _snoop_filters(args: argparse.Namespace, text: Any) -> Any:
    """A predicate for bcc's user-space filters: ``-u UID``, ``-n NAME`` (regex over ``text(event)``),
    ``-l LINE`` (execsnoop: regex over the arguments).

    :raises EBPFError: for a bad regular expression or uid (before loading).
    """
    import re

    from ebpf.core.errors import EBPFError

    if args.uid is not None and not 0 <= args.uid < 1 << 32:
        raise EBPFError(f"--uid must be 0..2**32-1, not {args.uid}")
    try:
        name = re.compile(args.name) if args.name else None
        line = re.compile(args.line) if getattr(args, "line", None) else None
    except re.error as exc:
        raise EBPFError(f"bad regular expression: {exc}") from None

    def keep(e: Any) -> bool:
        if args.uid is not None and e.uid != args.uid:
            return False
        if name is not None and not name.search(text(e)):
            return False
        return line is None or bool(line.search(" ".join(e.argv)))

    return keep


def _timed(args: argparse.Namespace, columns: tuple[tuple[str, int], ...], row: Any, as_dict: Any) -> tuple[Any, ...]:
    """A ``TIME(s)`` column first (seconds since the tool started; ``time`` in JSON) with ``--timestamp``,
    a ``TIME`` column (HH:MM:SS; ``clock`` in JSON) with ``--time``."""
    import time

    if getattr(args, "time", False):
        columns, row, as_dict = ((("TIME", 8), *columns), lambda e, r=row: [time.strftime("%H:%M:%S"), *r(e)],
                                 lambda e, d=as_dict: {"clock": time.strftime("%H:%M:%S"), **d(e)})
    if args.timestamp:
        start = time.monotonic()
        columns, row, as_dict = ((("TIME(s)", 9), *columns), lambda e, r=row: [f"{time.monotonic() - start:.3f}", *r(e)],
                                 lambda e, d=as_dict: {"time": round(time.monotonic() - start, 6), **d(e)})
    return columns, row, as_dict


def _open_flag_mask(names: list[str]) -> int:
    """bcc opensnoop's ``-f O_WRONLY -f O_APPEND``: the open flags any of which an event must have.

    :raises EBPFError: for a name that is not an ``O_*`` flag of this system (or is ``O_RDONLY``, 0).
    """
    import os

    from ebpf.core.errors import EBPFError

    mask = 0
    for name in names:
        value = getattr(os, name.upper(), None) if name.upper().startswith("O_") else None
        if not isinstance(value, int) or value == 0:
            raise EBPFError(f"-f {name}: not an open flag with a bit to test (O_WRONLY, O_CREAT, O_APPEND, ...)")
        mask |= value
    return mask


def _exec(args: argparse.Namespace) -> int:
    from ebpf.events.tools.execsnoop import ExecSnoop

    check_common(pid=args.pid, duration=args.duration)
    keep = _snoop_filters(args, lambda e: " ".join((e.comm, *e.argv)))
    columns, row, as_dict = _timed(
        args, (("PID", 7), ("PPID", 7), ("UID", 5), ("RET", 4), ("COMM", 16), ("ARGS", 0)),
        lambda e: [str(e.pid), str(e.ppid), str(e.uid), str(e.ret), e.comm,
                   (e.quoted_args if args.quote else e.args) if e.argv else e.filename],
        lambda e: e.to_dict())
    with ExecSnoop(pid=args.pid, failed=args.failed) as tool:
        events = (e for e in tool.events(args.duration)
                  if (args.comm is None or e.comm == args.comm) and keep(e))
        return run_event_tool(events, f"{args.tracer} via syscalls:sys_enter_execve/sys_exit_execve", args.duration,
                              args.json, columns, row, as_dict)


def _open(args: argparse.Namespace) -> int:
    from ebpf.events.tools.opensnoop import OpenSnoop

    check_common(pid=args.pid, duration=args.duration)
    keep = _snoop_filters(args, lambda e: e.comm)
    mask = _open_flag_mask(args.flag or [])
    columns, row, as_dict = _timed(
        args, (("PID", 7), ("UID", 5), ("COMM", 16), ("FD", 4), ("ERR", 7), ("FLAGS", 24), ("PATH", 0)),
        lambda e: [str(e.pid), str(e.uid), e.comm, "-1" if e.fd is None else str(e.fd), e.error or "0",
                   e.flag_names, e.path],
        lambda e: e.to_dict())
    with OpenSnoop(pid=args.pid, comm=args.comm, failed=args.failed) as tool:
        return run_event_tool((e for e in tool.events(args.duration) if keep(e) and (not mask or e.flags & mask)),
                               f"{args.tracer} via syscalls:sys_enter_openat/sys_exit_openat",
                               args.duration, args.json, columns, row, as_dict)


def _syscount(args: argparse.Namespace) -> int:
    from ebpf.events.tools.syscount import SysCount

    if args.list:  # bcc's -l: the names this tool knows, nothing loaded
        from ebpf.events.tools.syscount import syscall_names

        for nr, name in sorted(syscall_names().items()):
            print(json.dumps({"nr": nr, "name": name}) if args.json else f"{nr:<5} {name}")
        return 0
    check_common(pid=args.pid, duration=args.duration)
    with SysCount(pid=args.pid, by_process=args.process, latency=args.latency, syscall=args.syscall,
                  failures=args.failures, errno=args.errno, tid=args.tid) as tool:
        def rows() -> str:
            text = "".join(json.dumps(r.to_dict()) + "\n" for r in tool.top(args.top)) if args.json \
                else tool.format(args.top, milliseconds=args.milliseconds)
            if args.interval is not None:
                tool.clear()
            return text

        return run_hist_tool(tool, "syscalls via raw_syscalls:sys_exit", args.duration, args.interval, False, rows,
                             lambda: {}, None)


def _hist(tool: Any, name: str, args: argparse.Namespace, text: Any = None) -> int:
    def body() -> str:
        out = str(text() if text is not None else tool.histogram().format_log2_hist(tool.unit))
        if args.interval is not None:
            tool.clear()
        return out

    def as_dict() -> dict[str, Any]:
        d: dict[str, Any] = tool.to_dict()
        if args.interval is not None:
            tool.clear()
        return d

    return run_hist_tool(tool, name, args.duration, args.interval, args.json, body, as_dict,
                         lambda: tool.histogram().rich_table(tool.unit, title=name), timestamp=args.timestamp)


def _funclatency(args: argparse.Namespace) -> int:
    from ebpf.events.tools.funclatency import FuncLatency

    check_common(pid=args.pid, duration=args.duration)
    with FuncLatency(args.target, pid=args.pid, unit=args.unit, regexp=args.regexp,
                     per_function=args.function) as tool:
        name = f"{args.target} ({len(tool.functions)} functions)" if len(tool.functions) > 1 else args.target
        return _hist(tool, name, args, tool.format)


def _runqlat(args: argparse.Namespace) -> int:
    from ebpf.events.tools.runqlat import RunqLat

    check_common(pid=args.pid, duration=args.duration)
    with RunqLat(pid=args.pid, per_process=args.per_process, per_thread=args.per_thread, unit=args.unit) as tool:
        header = "pid" if args.per_process else "tid" if args.per_thread else None
        text = (lambda: tool.histogram().format_log2_hist(tool.unit, section_header=header)) if header else None
        return _hist(tool, "run queue latency via tp_btf sched_wakeup/sched_switch", args, text)


def _biolatency(args: argparse.Namespace) -> int:
    from ebpf.events.tools.biolatency import BioLatency

    check_common(pid=args.pid, duration=args.duration)
    with BioLatency(per_disk=args.disks, unit=args.unit, disk=args.disk, pid=args.pid, queued=args.queued,
                    per_flags=args.flags) as tool:
        start = "block_rq_insert" if args.queued else "block_rq_issue"
        return _hist(tool, f"block I/O latency via tp_btf {start}/block_rq_complete", args, tool.format)


def _printk(args: argparse.Namespace) -> int:
    from ebpf.events.printk import TracePipe, check_format, format_line

    check_common(pid=args.pid, duration=args.duration)
    check_format(args.fmt)
    where = "the global trace_pipe" if args.global_pipe else "a private tracefs instance"
    until = f"for {args.duration:g}s" if args.duration else "(Ctrl-C to stop)"
    with stop_on_sigterm(), TracePipe(None if args.global_pipe else True, pid=args.pid) as pipe:
        try:  # the line inside: a SIGTERM right after it is a clean stop
            print(f"tracing bpf_printk output from {where} {until}", file=sys.stderr, flush=True)  # the pipe is open
            for line in pipe.lines(args.duration):
                if args.json and not args.fmt:
                    print(json.dumps({"task": line.task, "pid": line.pid, "cpu": line.cpu, "flags": line.flags,
                                      "ts": line.timestamp, "msg": line.message}), flush=True)
                else:
                    print(format_line(line, args.fmt), flush=True)
        except KeyboardInterrupt:
            pass
    return 0


def add_tool_commands(sub: argparse._SubParsersAction[Any]) -> None:
    """Add the tools under an existing ``ebpf trace`` subparser set."""
    for name, text in (("exec", "execve(): argv, return code, ppid; one line per exec (PATH attempts folded)"),
                       ("execsnoop", "the same as exec")):
        p = sub.add_parser(name, help=text, description=text)
        _common(p)
        p.add_argument("--comm", default=None, help="only processes with this (new) command name")
        p.add_argument("-x", "--failed", action="store_true", help="also show execs that failed")
        _snoop_options(p, exec_=True)
        p.add_argument("-l", "--line", default=None, help="only commands with an argument matching this regex")
        p.add_argument("-q", "--quote", action="store_true", help='put each argument in double quotes ("a b")')
        p.set_defaults(func=_exec)
    for name, text in (("open", "open()/openat(): fd or error, flags by name, path"), ("opensnoop", "the same as open")):
        p = sub.add_parser(name, help=text, description=text)
        _common(p)
        p.add_argument("--comm", default=None, help="only processes with this command name")
        p.add_argument("-x", "--failed", action="store_true", help="only failed opens")
        _snoop_options(p, exec_=False)
        p.add_argument("-f", "--flag", action="append", metavar="FLAG",
                       help="only opens with this flag (O_WRONLY, O_CREAT, ...; repeat for any of several)")
        p.set_defaults(func=_open)
    p = sub.add_parser("syscount", help="system calls counted per syscall or process",
                       description="count system calls; the top ones print when it stops")
    _common(p, interval=True)
    p.add_argument("-P", "--process", action="store_true", help="count per process instead of per syscall")
    p.add_argument("-L", "--latency", action="store_true", help="also total the time spent in each")
    p.add_argument("-m", "--milliseconds", action="store_true", help="latency in milliseconds (default: us)")
    p.add_argument("-T", "--top", type=int, default=10, help="rows to print (default 10)")
    p.add_argument("--syscall", default=None, help="only this syscall (name or number)")
    p.add_argument("-x", "--failures", action="store_true", help="only failed syscalls")
    p.add_argument("-e", "--errno", default=None, help="only syscalls failing with this error (ENOENT or 2)")
    p.add_argument("-t", "--tid", type=int, default=None, help="only this thread")
    p.add_argument("-l", "--list", action="store_true", help="print the syscall names this tool knows and exit")
    p.set_defaults(func=_syscount)
    p = sub.add_parser("funclatency", help="latency histogram of a function (uprobe BINARY:SYMBOL, or kprobe)")
    p.add_argument("target", help="BINARY:SYMBOL (libc.so.6:read; wildcards: libc.so.6:read*) or a kernel function")
    _common(p, interval=True)
    _unit(p, "nsecs")
    p.add_argument("-r", "--regexp", action="store_true", help="the symbol is a regular expression")
    p.add_argument("-F", "--function", action="store_true", help="a histogram per function")
    p.set_defaults(func=_funclatency)
    p = sub.add_parser("runqlat", help="run queue latency histogram (tp_btf sched_wakeup/sched_switch)")
    _common(p, interval=True)
    _unit(p, "usecs")
    p.add_argument("-P", "--per-process", action="store_true", help="one histogram per process")
    p.add_argument("-L", "--per-thread", action="store_true", help="one histogram per thread (tid)")
    p.set_defaults(func=_runqlat)
    p = sub.add_parser("biolatency", help="block I/O latency histogram (tp_btf block_rq_issue/complete)")
    _common(p, interval=True)
    _unit(p, "usecs")
    p.add_argument("-Q", "--queued", action="store_true", help="include OS queued time (from block_rq_insert)")
    p.add_argument("-D", "--disks", action="store_true", help="one histogram per disk")
    p.add_argument("-F", "--flags", action="store_true", help="one histogram per set of I/O flags (Sync-Write, Read)")
    p.add_argument("--disk", default=None, help="only this disk (sda, loop0)")
    p.set_defaults(func=_biolatency)
    p = sub.add_parser("printk", help="bpf_printk output (bcc trace_print)")
    _common(p)
    p.add_argument("--fmt", default=None, help="str.format over (task, pid, cpu, flags, ts, msg), e.g. '{1} {5}'")
    p.add_argument("--global", dest="global_pipe", action="store_true",
                   help="read the global trace_pipe (shared with other readers) instead of a private instance")
    p.set_defaults(func=_printk)


def _list(args: argparse.Namespace) -> int:
    from ebpf.events.tools import tplist

    what = args.what
    rows: list[Any]
    if what == "tracepoints":
        rows = tplist.list_tracepoints(args.pattern, verbose=args.verbose)
    elif what == "usdt":
        rows = tplist.list_usdt_probes(args.binary, args.pattern)
    elif what == "helpers":
        rows = tplist.list_helpers(args.pattern)
    else:
        rows = tplist.list_lsm(args.pattern)
    for row in rows:
        if args.json:
            print(json.dumps(row if isinstance(row, dict) else {"name": row}))
        elif isinstance(row, str):
            print(row)
        elif what == "helpers":
            print(f"{row['id']:<5} {row['name']}")
        elif what == "usdt":
            print(f"{row['name']:<40} 0x{row['address']:x} {row['args']}")
        else:
            print(row["name"])
            for f in row.get("fields", ()):
                print(f"    {f['type']} {f['name']};  (offset {f['offset']}, size {f['size']})")
    return 0


def add_list_command(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add ``ebpf list tracepoints|usdt|helpers|lsm`` (bcc's tplist; ``list kfuncs`` is ebpf.events._list_cli's)."""
    from ebpf.events._list_cli import list_group

    sub = list_group(subparsers)
    for name, text in (("tracepoints", "tracepoints (tracefs), -v for their fields"),
                       ("usdt", "USDT probes of a binary"), ("helpers", "BPF helper functions by id"),
                       ("lsm", "LSM hooks (BTF)")):
        q = sub.add_parser(name, help=text, description=text)
        if name == "usdt":
            q.add_argument("binary", help="an executable or library (path, command or libc.so.6)")
        q.add_argument("pattern", nargs="?", default=None, help="only names matching (glob, or a substring)")
        q.add_argument("--json", action="store_true", help="one JSON object per line")
        if name == "tracepoints":
            q.add_argument("-v", "--verbose", action="store_true", help="show each tracepoint's fields")
        q.set_defaults(func=_list, what=name)
