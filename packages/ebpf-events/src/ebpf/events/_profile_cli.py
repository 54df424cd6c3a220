"""``ebpf trace profile`` and ``ebpf trace offcpu``: the profilers of :mod:`ebpf.events.profile` on the command line.

Both sample until ``--duration`` seconds pass or Ctrl-C, then print one of: the hottest
functions (default, ``--top N``), folded stacks (``--folded``, for flamegraph.pl/speedscope),
an SVG flame graph (``--svg FILE``) or speedscope JSON (``--speedscope FILE``).  ``--json``
prints the whole profile (or the ``--top`` table) as one JSON document.  A line "profiling ..."
goes to stderr once attached; warnings (unnamed frames, lost stacks) go to stderr at the end.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

__all__ = ["add_profile_commands", "run_profile"]


def _wait(duration: float | None) -> None:
    deadline = None if duration is None else time.monotonic() + duration
    try:
        while deadline is None or time.monotonic() < deadline:
            time.sleep(0.2 if deadline is None else max(0.0, min(0.2, deadline - time.monotonic())))
    except KeyboardInterrupt:
        pass


def _print_top(profile: Any, n: int, as_json: bool) -> None:
    rows = profile.top(n)
    total = profile.total or 1
    if as_json:
        print(json.dumps({"unit": profile.unit, "total": profile.total,
                          "top": [{"name": r.name, "module": r.module, "self": r.self, "total": r.total} for r in rows]}))
        return
    unit = "SELF(us)" if profile.unit == "us" else "SELF"
    print(f"{unit:>12} {'SELF%':>6} {'TOTAL':>12} {'TOTAL%':>6}  FUNCTION [MODULE]")
    for r in rows:
        print(f"{r.self:>12} {100 * r.self / total:>6.1f} {r.total:>12} {100 * r.total / total:>6.1f}  "
              f"{r.name} [{r.module}]")


def run_profile(args: argparse.Namespace) -> int:
    """Run the profiler ``args.tracer`` (``profile`` or ``offcpu``) as the parsed options say.

    :returns: 0.
    :raises EBPFError: on bad options or when loading/attaching fails.
    """
    from ebpf.core.errors import EBPFError
    from ebpf.events.profile import OffCpuProfiler, Profiler

    if args.duration is not None and args.duration <= 0:
        raise EBPFError(f"--duration must be positive, not {args.duration}")
    kernel, user = not args.user_only, not args.kernel_only
    profiler: Profiler | OffCpuProfiler
    if args.tracer == "profile":
        profiler = Profiler(args.frequency, pid=args.pid, cpu=args.cpu, kernel=kernel, user=user)
        what = f"on-CPU stacks at {args.frequency} Hz"
    else:
        profiler = OffCpuProfiler(pid=args.pid, min_block_us=args.min_block_us, max_block_us=args.max_block_us,
                                  kernel=kernel, user=user)
        what = f"off-CPU time (blocks >= {args.min_block_us} us)"
    profiler.start()
    try:
        who = f"pid {args.pid}" if args.pid is not None else "all processes"
        until = f"for {args.duration:g}s" if args.duration is not None else "(Ctrl-C to stop)"
        print(f"profiling {what} of {who} {until}", file=sys.stderr, flush=True)
        _wait(args.duration)
    except BaseException:
        profiler.close()
        raise
    profile = profiler.stop()
    if args.folded:
        sys.stdout.write(profile.folded())
    elif args.svg:
        profile.flamegraph(args.svg)
        print(f"wrote {args.svg}", file=sys.stderr)
    elif args.speedscope:
        profile.speedscope(args.speedscope)
        print(f"wrote {args.speedscope}", file=sys.stderr)
    elif args.json and args.top is None:
        print(json.dumps(profile.to_dict()))
    else:
        _print_top(profile, args.top or 20, args.json)
    for warning in profile.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(f"{profile.total} {profile.unit} in {len(profile.samples)} stack(s)", file=sys.stderr)
    return 0


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("-p", "--pid", type=int, default=None, help="only this process (all its threads)")
    p.add_argument("--duration", type=float, default=None, metavar="SECONDS", help="stop after SECONDS")
    stacks = p.add_mutually_exclusive_group()
    stacks.add_argument("--user-only", action="store_true", help="user stacks only")
    stacks.add_argument("--kernel-only", action="store_true", help="kernel stacks only")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--folded", action="store_true", help="folded stacks (flamegraph.pl, speedscope, inferno)")
    out.add_argument("--svg", metavar="FILE", help="write an interactive flame graph SVG")
    out.add_argument("--speedscope", metavar="FILE", help="write speedscope JSON")
    out.add_argument("--top", type=int, metavar="N", default=None, help="the N hottest functions (default 20)")
    p.add_argument("--json", action="store_true", help="the profile (or --top table) as JSON")
    p.set_defaults(func=run_profile)


def add_profile_commands(sub: argparse._SubParsersAction[Any]) -> None:
    """Add ``profile`` and ``offcpu`` under ``ebpf trace``."""
    text = "sample on-CPU stacks of every CPU (bcc's profile): top functions, folded stacks, flame graphs"
    p = sub.add_parser("profile", help=text, description=text)
    p.add_argument("-F", "--frequency", type=int, default=99, help="samples per second per CPU (default 99)")
    p.add_argument("--cpu", type=int, default=None, help="only this CPU")
    _common(p)
    text = "time spent blocked, by stack, in microseconds (bcc's offcputime), from sched_switch"
    o = sub.add_parser("offcpu", help=text, description=text)
    o.add_argument("--min-block-us", type=int, default=1, metavar="US", help="ignore shorter blocks (default 1)")
    o.add_argument("--max-block-us", type=int, default=None, metavar="US", help="ignore longer blocks")
    _common(o)
