"""Send events through a perf event array (the pre-5.8 way; see execve_tracer.py for ring buffers).

    sudo python3 examples/perf_events.py --duration 2

A tracepoint program on ``sched:sched_process_exec`` emits {pid, comm} with
bpf_perf_event_output on the current CPU's ring; PerfBuffer reads all CPUs and counts
lost samples instead of hiding them.
"""

from __future__ import annotations

import argparse
import struct
import subprocess
import time

from ebpf.core import asm
from ebpf.core.asm import R0, R1, R2, R3, R4, R5, R6, R10
from ebpf.core.programs import load_program
from ebpf.events.perf import PerfBuffer, create_perf_event_array

EVENT = struct.Struct("<I4x16s")  # pid, padding, comm


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=float, default=3.0, help="seconds to listen")
    args = parser.parse_args()

    with create_perf_event_array(name="exec_events") as events:
        insns = [
            asm.mov64(R6, R1),                                            # keep ctx for the helper
            asm.call("get_current_pid_tgid"), asm.rsh64(R0, 32), asm.stx_mem("dw", R10, R0, -24),
            asm.mov64(R1, R10), asm.add64(R1, -16), asm.mov64(R2, 16), asm.call("get_current_comm"),
            asm.mov64(R1, R6), asm.ld_map_fd(R2, events),
            asm.mov32(R3, -1),                                            # BPF_F_CURRENT_CPU (0xffffffff)
            asm.mov64(R4, R10), asm.add64(R4, -24), asm.mov64(R5, EVENT.size),
            asm.call("perf_event_output"),
            asm.mov64(R0, 0), asm.exit_insn(),
        ]

        def show(data: bytes) -> None:
            pid, comm = EVENT.unpack_from(data)
            name = comm.split(b"\0", 1)[0].decode()
            print(f"exec: pid {pid} comm {name}", flush=True)

        with load_program(prog_type="tracepoint", insns=insns, name="exec_perf", maps=(events,)) as prog, \
                prog.attach("sched:sched_process_exec"), PerfBuffer(events, show) as reader:
            subprocess.run(["true"])  # one event of our own
            deadline = time.monotonic() + args.duration
            while (left := deadline - time.monotonic()) > 0:
                reader.poll(min(left, 0.2) * 1000)
            print(f"lost samples: {reader.lost}")


if __name__ == "__main__":
    main()
