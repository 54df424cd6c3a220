"""Trace every execve() on the system: a tracepoint program sends {pid, comm, filename} through
a ring buffer, Python prints them as they arrive.

    sudo python3 examples/execve_tracer.py --duration 5

(``ebpf trace exec`` does the same with ppid and uid, and ``--json``.)
"""

from __future__ import annotations

import argparse
import struct
import subprocess
import time
from typing import Any

from ebpf.core import asm
from ebpf.core.asm import R0, R1, R2, R3, R6, R7
from ebpf.core.maps import create_ringbuf_map
from ebpf.core.programs import load_program
from ebpf.events.ringbuf import RingBuffer
from ebpf.events.tracing import tracepoint_format

EVENT = struct.Struct("<I4x16s256s")  # pid, padding, comm[16], filename[256]


def build(rb: Any) -> list[Any]:
    """The program: reserve an event, fill it, submit it."""
    args = tracepoint_format("syscalls", "sys_enter_execve")  # the record layout, from tracefs
    return [
        asm.mov64(R6, R1),                                                    # r6 = ctx
        asm.ld_map_fd(R1, rb), asm.mov64(R2, EVENT.size), asm.mov64(R3, 0),
        asm.call("ringbuf_reserve"), asm.jeq(R0, 0, "out"), asm.mov64(R7, R0),  # r7 = event
        asm.call("get_current_pid_tgid"), asm.rsh64(R0, 32), asm.stx_mem("w", R7, R0, 0),
        asm.mov64(R1, R7), asm.add64(R1, 8), asm.mov64(R2, 16), asm.call("get_current_comm"),
        asm.mov64(R1, R7), asm.add64(R1, 24), asm.mov64(R2, 256),
        asm.ctx_field(R6, args, "filename", dst=R3), asm.call("probe_read_user_str"),  # r3 = args->filename
        asm.mov64(R1, R7), asm.mov64(R2, 0), asm.call("ringbuf_submit"),
        asm.label("out"), asm.mov64(R0, 0), asm.exit_insn(),
    ]


def show(record: bytes) -> None:
    pid, comm, filename = (v.split(b"\0", 1)[0].decode(errors="replace") if isinstance(v, bytes) else v
                           for v in EVENT.unpack(record))  # C strings end at the first NUL
    print(f"{pid:>7}  {comm:<16} {filename}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds to trace")
    args = parser.parse_args()

    with create_ringbuf_map(1 << 18, name="execs") as rb, \
            load_program(prog_type="tracepoint", insns=build(rb), name="trace_execve", maps=(rb,)) as prog, \
            prog.attach("syscalls:sys_enter_execve"), RingBuffer(rb, show) as reader:
        print(f"{'PID':>7}  {'COMM':<16} FILENAME")
        subprocess.run(["true"])  # something to see right away
        deadline = time.monotonic() + args.duration
        while (left := deadline - time.monotonic()) > 0:
            reader.poll(timeout_ms=min(left, 0.2) * 1000)


if __name__ == "__main__":
    main()
