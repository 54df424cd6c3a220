"""BPF in C: compile with ``compile_c`` (clang or the ziglang wheel), load with ``load_elf``.

    sudo python3 examples/compile_c.py --duration 2

``bpf_helpers.h`` ships with ebpf-elf (no kernel headers or libbpf needed); the map is a
BTF-defined ``.maps`` entry, the section name tells the loader the program type.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

SOURCE = r"""
#include "bpf_helpers.h"

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, __u64);
} execs SEC(".maps");

SEC("tracepoint/sched/sched_process_exec")
int count_exec(void *ctx)
{
    __u32 key = 0;
    __u64 *count = bpf_map_lookup_elem(&execs, &key);
    if (count)
        __sync_fetch_and_add(count, 1);
    return 0;
}

char LICENSE[] SEC("license") = "GPL";
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=float, default=2.0, help="seconds to count")
    args = parser.parse_args()
    try:
        from ebpf.elf import compile_c, load_elf
    except ImportError:
        print("this example needs ebpf-elf: pip install 'ebpf-elf[compile]'")
        return 0

    with tempfile.TemporaryDirectory() as tmp:
        obj = compile_c(SOURCE, os.path.join(tmp, "count_exec.o"))  # -> path of the .o (with BTF)
        print(f"compiled {os.path.basename(obj)}: {os.path.getsize(obj)} bytes")
        with load_elf(obj) as coll:           # maps created, relocations applied, programs loaded
            prog = coll.programs["count_exec"]
            with prog.attach("sched:sched_process_exec"):  # from the section name: a tracepoint
                for _ in range(3):
                    subprocess.run(["true"])
                time.sleep(args.duration)
                print(f"program {prog.name!r} counted {coll.maps['execs'][0]} process launches "
                      "(at least 3 are ours)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
