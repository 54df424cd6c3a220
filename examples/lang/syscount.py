"""Count system calls by number, for one process or for all, written in Python.

    sudo python3 examples/lang/syscount.py --duration 3 [--pid PID]
"""

from __future__ import annotations

import argparse
import sys
import time

from ebpf.lang import ArrayMap, HashMap, bpf, kernel, u32, u64
from ebpf.lang import ctx_types as ct

counts = HashMap(u32, u64, max_entries=1024)
target = ArrayMap(u32, max_entries=1)   # [0]: the process (tgid) to count, 0 for all


@kernel("tracepoint/raw_syscalls/sys_enter")
def count_syscalls(ctx: ct.trace_event_raw_sys_enter) -> int:
    want = target.get(0, 0)
    if want != 0 and bpf.get_current_pid_tgid() >> 32 != want:
        return 0
    counts.increment(u32(ctx.id))
    return 0


def main() -> None:
    from ebpf.lang import load

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--pid", type=int, default=0)
    args = parser.parse_args()
    with load(sys.modules[__name__]) as coll:
        coll.maps["target"][0] = args.pid
        with coll.programs["count_syscalls"].attach():
            time.sleep(args.duration)
        top = sorted(coll.maps["counts"].items(), key=lambda kv: -kv[1])[:15]
        print(f"{'SYSCALL':>8} {'COUNT':>10}")
        for nr, n in top:
            print(f"{nr:>8} {n:>10}")


if __name__ == "__main__":
    main()
