"""A log2 histogram of nanosleep() latency, written in Python (a bounded loop, unrolled).

    sudo python3 examples/lang/latency_hist.py --duration 3 [--pid PID]
"""

from __future__ import annotations

import argparse
import sys
import time

from ebpf.lang import ArrayMap, HashMap, bpf, kernel, u32, u64
from ebpf.lang import ctx_types as ct

start = HashMap(u32, u64, max_entries=10240)
hist = ArrayMap(u64, max_entries=64)
target = ArrayMap(u32, max_entries=1)   # [0]: the process (tgid) to measure, 0 for all


@kernel("tracepoint/syscalls/sys_enter_clock_nanosleep")
def sleep_enter(ctx: ct.trace_event_raw_sys_enter) -> int:
    id = bpf.get_current_pid_tgid()
    want = target.get(0, 0)
    if want != 0 and id >> 32 != want:
        return 0
    start[u32(id)] = bpf.ktime_get_ns()
    return 0


@kernel("tracepoint/syscalls/sys_exit_clock_nanosleep")
def sleep_exit(ctx: ct.trace_event_raw_sys_exit) -> int:
    tid = u32(bpf.get_current_pid_tgid())
    t0 = start.get(tid, 0)
    if t0 == 0:
        return 0
    del start[tid]
    delta = bpf.ktime_get_ns() - t0
    slot: u64 = 0
    for k in range(6):            # log2 by halving: 32, 16, 8, 4, 2, 1
        if delta >= 1 << (32 >> k):
            delta >>= 32 >> k
            slot += 32 >> k
    hist.increment(slot)
    return 0


def print_log2(counts: list[int]) -> None:
    """Print the histogram as bcc does (``usecs : count | distribution``)."""
    top = max(counts) or 1
    last = max((i for i, c in enumerate(counts) if c), default=0)
    for i in range(last + 1):
        lo, hi = (1 << i) >> 1, (1 << i) - 1
        print(f"{lo:>12} -> {hi:<12}: {counts[i]:<8} |{'*' * (counts[i] * 40 // top):<40}|")


def main() -> None:
    from ebpf.lang import load

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--pid", type=int, default=0)
    args = parser.parse_args()
    with load(sys.modules[__name__]) as coll:
        coll.maps["target"][0] = args.pid
        with coll.programs["sleep_enter"].attach(), coll.programs["sleep_exit"].attach():
            deadline = time.monotonic() + args.duration
            while time.monotonic() < deadline:
                time.sleep(0.001)
        print("nsecs")
        print_log2([coll.maps["hist"][i] for i in range(64)])


if __name__ == "__main__":
    main()
