"""Count calls of a C library function in this process with a uprobe.

    sudo python3 examples/uprobe.py --duration 2

The program runs on every call of libc's ``getpid`` made by this process (the ``pid``
filter); Python calls it through ctypes so the count is known in advance.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import time

from ebpf.core import asm
from ebpf.core.asm import R0, R1, R2, R10
from ebpf.core.maps import create_array_map
from ebpf.core.programs import load_program
from ebpf.events.tracing import attach_uprobe


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=float, default=3.0, help="seconds to keep calling getpid()")
    args = parser.parse_args()
    libc = ctypes.CDLL("libc.so.6")

    with create_array_map(1, value_size=8, name="uprobe_hits") as hits:
        insns = [
            asm.st_mem("w", R10, -4, 0), asm.ld_map_fd(R1, hits), asm.mov64(R2, R10), asm.add64(R2, -4),
            asm.call("map_lookup_elem"), asm.jeq(R0, 0, "out"),
            asm.mov64(R1, 1), asm.atomic_add("dw", R0, R1, 0),  # hits[0] += 1
            asm.label("out"), asm.mov64(R0, 0), asm.exit_insn(),
        ]
        # uprobes are kprobe-type programs attached to a user-space address
        with load_program(prog_type="kprobe", insns=insns, name="count_getpid", maps=(hits,)) as prog, \
                attach_uprobe(prog, "libc.so.6", "getpid", pid=os.getpid()):
            calls = 0
            deadline = time.monotonic() + args.duration
            while time.monotonic() < deadline:
                for _ in range(100):
                    libc.getpid()
                calls += 100
                time.sleep(0.05)
            print(f"called getpid() {calls} times; the uprobe counted {hits[0]}")


if __name__ == "__main__":
    main()
