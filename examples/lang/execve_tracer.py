"""Trace every execve() on the system, kernel side in Python: {pid, ppid, comm, filename} through a ring buffer.

    sudo python3 examples/lang/execve_tracer.py --duration 5

The same tool as examples/execve_tracer.py, with the tracepoint program written as a Python
function that ebpf.lang compiles to BPF (no C, no LLVM).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

from ebpf.lang import RingBuf, Struct, bpf, char, kernel, u32
from ebpf.lang import ctx_types as ct


class Event(Struct):
    pid: u32
    ppid: u32
    comm: char[16]
    filename: char[256]


events = RingBuf(1 << 18)


@kernel("tracepoint/syscalls/sys_enter_execve")
def trace_execve(ctx: ct.tracepoint("syscalls", "sys_enter_execve")) -> int:  # fields from tracefs
    ev = events.reserve(Event)
    if ev is None:
        return 0
    ev.pid = bpf.get_current_pid_tgid() >> 32
    task: ct.task_struct = bpf.get_current_task()       # a kernel struct, typed from BTF
    ev.ppid = task.real_parent.tgid                      # read with bpf_probe_read_kernel
    bpf.get_current_comm(ev.comm)
    bpf.probe_read_user_str(ev.filename, ctx.filename)   # the path, from user memory
    events.submit(ev)
    return 0


def show(record: bytes) -> None:
    ev = Event.decode(record)
    print(f"{ev.pid:>7} {ev.ppid:>7}  {ev.comm.decode(errors='replace'):<16} {ev.filename.decode(errors='replace')}",
          flush=True)


def main() -> None:
    from ebpf.events.ringbuf import RingBuffer
    from ebpf.lang import load

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds to trace")
    args = parser.parse_args()
    with load(sys.modules[__name__]) as coll, coll.programs["trace_execve"].attach(), \
            RingBuffer(coll.maps["events"], show) as reader:
        print(f"{'PID':>7} {'PPID':>7}  {'COMM':<16} FILENAME")
        subprocess.run(["true"])  # something to see right away
        deadline = time.monotonic() + args.duration
        while (left := deadline - time.monotonic()) > 0:
            reader.poll(timeout_ms=int(min(left, 0.5) * 1000))


if __name__ == "__main__":
    main()
