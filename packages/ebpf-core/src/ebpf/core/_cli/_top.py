"""``ebpf top``: live per-program run counts and run time, from the kernel's statistics (like bpftop)."""

from __future__ import annotations

import argparse
import math
import sys
import time
from typing import Any

from ebpf.core._cli._output import format_table, print_json
from ebpf.core.records import dataclass

__all__ = ["add_commands", "ProgramRate", "rates"]

_CLEAR = "\x1b[H\x1b[2J"


@dataclass(frozen=True)
class ProgramRate:
    """One program's activity over a sampling interval."""

    id: int
    type: Any
    name: str
    run_cnt: int
    run_time_ns: int
    runs_per_sec: float
    avg_ns: float
    cpu_percent: float


def rates(before: dict[int, Any], after: dict[int, Any], seconds: float) -> list[ProgramRate]:
    """Per-program rates between two ``{id: ProgramInfo}`` samples ``seconds`` apart, busiest first."""
    out = []
    for pid, info in after.items():
        prev = before.get(pid)
        runs = info.run_cnt - (prev.run_cnt if prev else info.run_cnt)
        spent = info.run_time_ns - (prev.run_time_ns if prev else info.run_time_ns)
        runs, spent = max(runs, 0), max(spent, 0)
        out.append(ProgramRate(
            id=pid,
            type=info.type,
            name=info.name,
            run_cnt=info.run_cnt,
            run_time_ns=info.run_time_ns,
            runs_per_sec=runs / seconds if seconds > 0 else 0.0,
            avg_ns=spent / runs if runs else 0.0,
            # run time over wall time, as bpftop shows it (can exceed 100 with several CPUs)
            cpu_percent=100.0 * spent / (seconds * 1e9) if seconds > 0 else 0.0,
        ))
    out.sort(key=lambda r: (-r.cpu_percent, -r.run_time_ns, r.id))
    return out


def _sample() -> dict[int, Any]:
    from ebpf.core.programs import programs  # deferred: start-up time (only this command needs it)

    return {info.id: info for info in programs()}


def _render(rows: list[ProgramRate], interval: float) -> str:
    table = format_table(
        ["ID", "TYPE", "NAME", "RUNS/S", "AVG_NS", "CPU%", "TOTAL_RUNS"],
        [[r.id, r.type, r.name, round(r.runs_per_sec), round(r.avg_ns), f"{r.cpu_percent:.2f}", r.run_cnt]
         for r in rows],
    )
    stamp = time.strftime("%H:%M:%S")
    return f"ebpf top - {stamp} - {len(rows)} programs, interval {interval:g}s\n{table}"


def _top(args: argparse.Namespace) -> int:
    from ebpf.core.errors import EBPFError  # deferred: start-up time (only this command needs it)
    from ebpf.core.links import enable_stats  # deferred: start-up time (only this command needs it)

    if args.interval <= 0:
        raise EBPFError(f"--interval must be positive, got {args.interval}")
    count: int | None = args.count
    if args.duration is not None:
        count = max(1, math.ceil(args.duration / args.interval))
    tty = sys.stdout.isatty() and not args.json
    samples: list[dict[str, Any]] = []
    with enable_stats():
        before, t0 = _sample(), time.monotonic()
        n = 0
        try:
            while count is None or n < count:
                time.sleep(args.interval)
                after, t1 = _sample(), time.monotonic()
                rows = rates(before, after, t1 - t0)
                before, t0 = after, t1
                n += 1
                if args.json:
                    samples.append({"time": time.time(), "programs": rows})
                elif tty:
                    print(_CLEAR + _render(rows, args.interval), flush=True)
                else:
                    print(_render(rows, args.interval) + "\n", flush=True)
        except KeyboardInterrupt:
            pass
    if args.json:
        print_json({"interval": args.interval, "samples": samples})
    return 0


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``top`` to the ``ebpf`` parser."""
    p = sub.add_parser("top", help="live per-program run counts and run time (enables kernel BPF statistics)")
    p.add_argument("--interval", type=float, default=1.0, help="seconds between samples (default 1)")
    bound = p.add_mutually_exclusive_group()
    bound.add_argument("--count", "-n", type=int, default=None, help="stop after N samples")
    bound.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    p.add_argument("--json", action="store_true", help="print all samples as one JSON document at the end")
    p.set_defaults(func=_top)
