"""Count openat() calls system-wide with a tracepoint program and an array map.

    sudo python3 examples/tracepoint_counter.py --duration 3
"""

from __future__ import annotations

import argparse
import time

from ebpf.core import asm
from ebpf.core.asm import R0, R1, R2, R10
from ebpf.core.maps import create_array_map
from ebpf.core.programs import load_program


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds to count")
    args = parser.parse_args()

    with create_array_map(1, value_size=8, name="openat_count") as counts:
        insns = [
            asm.st_mem("w", R10, -4, 0),                       # key = 0
            asm.ld_map_fd(R1, counts), asm.mov64(R2, R10), asm.add64(R2, -4),
            asm.call("map_lookup_elem"),                       # r0 = &counts[0]
            asm.jeq(R0, 0, "out"),
            asm.mov64(R1, 1), asm.atomic_add("dw", R0, R1, 0),  # counts[0] += 1, atomically
            asm.label("out"), asm.mov64(R0, 0), asm.exit_insn(),
        ]
        with load_program(prog_type="tracepoint", insns=insns, name="count_openat", maps=(counts,)) as prog, \
                prog.attach("syscalls:sys_enter_openat"):    # needs ebpf-events (the tracepoint backend)
            deadline = time.monotonic() + args.duration
            while time.monotonic() < deadline:
                time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))
                open(__file__).close()  # at least one openat of our own
                print(f"openat calls so far: {counts[0]}", flush=True)


if __name__ == "__main__":
    main()
