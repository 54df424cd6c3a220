"""Count calls of a kernel function with a kprobe -- or explain clearly why this kernel cannot.

    sudo python3 examples/kprobe.py --function do_sys_openat2 --duration 3

Kernels built without CONFIG_KPROBES have no kprobes: the feature probe says so with an
UnsupportedFeatureError (naming the feature and the kernel config), and the example exits 0.
"""

from __future__ import annotations

import argparse
import sys
import time

from ebpf.core import asm
from ebpf.core.asm import R0, R1, R2, R10
from ebpf.core.errors import UnsupportedFeatureError
from ebpf.core.features import have_kprobes
from ebpf.core.maps import create_array_map
from ebpf.core.programs import load_program


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--function", default="do_sys_openat2", help="kernel function to count")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds to count")
    args = parser.parse_args()

    try:
        have_kprobes()  # None when supported; raises when not (cached)
    except UnsupportedFeatureError as exc:
        print(f"kprobes are not available here: {exc}")
        return 0

    with create_array_map(1, value_size=8, name="kprobe_hits") as hits:
        insns = [
            asm.st_mem("w", R10, -4, 0), asm.ld_map_fd(R1, hits), asm.mov64(R2, R10), asm.add64(R2, -4),
            asm.call("map_lookup_elem"), asm.jeq(R0, 0, "out"),
            asm.mov64(R1, 1), asm.atomic_add("dw", R0, R1, 0),
            asm.label("out"), asm.mov64(R0, 0), asm.exit_insn(),
        ]
        with load_program(prog_type="kprobe", insns=insns, name="count_calls", maps=(hits,)) as prog, \
                prog.attach(args.function):  # ebpf-events: "func", "kprobe:func+0x10", "kretprobe:func"
            time.sleep(args.duration)
            print(f"{args.function} was called {hits[0]} times in {args.duration:g}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
