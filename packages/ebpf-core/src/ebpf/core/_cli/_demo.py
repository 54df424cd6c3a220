"""``ebpf demo``: a tour that needs only ebpf-core and a BPF-capable kernel, done in a second.

It creates a hash map, assembles an XDP program that counts packets by length in that
map, runs it on made-up packets with BPF_PROG_TEST_RUN (no network needed), and shows
what the kernel counted.
"""

from __future__ import annotations

import argparse
import struct
from typing import Any

from ebpf.core._cli._output import format_table

__all__ = ["add_commands", "build_program", "run_demo"]

XDP_PASS = 2
#: (packet length, how many runs) fed to the program.
PACKETS = ((64, 1000), (128, 250), (1500, 10))


def build_program(counts: Any) -> list[Any]:
    """The XDP program: ``counts[packet length] += 1``, then XDP_PASS.

    :param counts: the hash map (u32 key, u64 value) the program updates.
    """
    from ebpf.core import asm

    R0, R1, R2, R3, R4, R6, R10 = asm.R0, asm.R1, asm.R2, asm.R3, asm.R4, asm.R6, asm.R10
    return [
        # key = ctx->data_end - ctx->data, kept on the stack at fp-4
        asm.ldx_mem("w", R2, R1, 4),
        asm.ldx_mem("w", R3, R1, 0),
        asm.sub64(R2, R3),
        asm.stx_mem("w", R10, R2, -4),
        # value = bpf_map_lookup_elem(&counts, &key)
        asm.ld_map_fd(R1, counts),
        asm.mov64(R2, R10),
        asm.add64(R2, -4),
        asm.call("map_lookup_elem"),
        asm.jeq(R0, 0, "first"),
        # seen before: *value += 1, atomically (XDP may run on several CPUs at once)
        asm.mov64(R6, 1),
        asm.atomic_add("dw", R0, R6, 0),
        asm.jmp_a("out"),
        # first packet of this length: counts[key] = 1
        asm.label("first"),
        asm.st_mem("dw", R10, -16, 1),
        asm.ld_map_fd(R1, counts),
        asm.mov64(R2, R10),
        asm.add64(R2, -4),
        asm.mov64(R3, R10),
        asm.add64(R3, -16),
        asm.mov64(R4, 0),
        asm.call("map_update_elem"),
        asm.label("out"),
        asm.mov64(R0, XDP_PASS),
        asm.exit_insn(),
    ]


def _indented(text: str) -> None:
    print("\n".join("   " + line for line in text.splitlines()))


def _num(value: Any, fmt: str) -> int:
    if isinstance(value, (bytes, bytearray)):
        return int(struct.unpack(fmt, bytes(value))[0])
    return int(value)


def run_demo() -> int:
    """Run the tour, printing as it goes; returns the exit status."""
    from ebpf.core import asm
    from ebpf.core.maps import create_map
    from ebpf.core.programs import load_program
    from ebpf.core.system import kernel_version

    print(f"ebpf demo on Linux {'.'.join(map(str, kernel_version()))}\n")
    with create_map(map_type="hash", key_size=4, value_size=8, max_entries=64, name="demo_counts") as counts:
        print(f"1. created hash map {counts.name!r} (u32 packet length -> u64 count), id {counts.info().id}")
        insns = build_program(counts)
        with load_program(prog_type="xdp", insns=insns, name="demo_xdp", maps=(counts,)) as prog:
            info = prog.info()
            count = sum(1 for i in insns if isinstance(i, asm.Instruction))
            print(f"2. assembled and loaded XDP program {prog.name!r}: {count} instructions, "
                  f"id {info.id}, tag {info.tag}")
            print("3. ran it on test packets with BPF_PROG_TEST_RUN:")
            rows = []
            for length, repeat in PACKETS:
                result = prog.test_run(bytes(length), repeat=repeat)
                verdict = "XDP_PASS" if result.retval == XDP_PASS else f"retval {result.retval}"
                rows.append([length, repeat, verdict, result.duration_ns])
            _indented(format_table(["PACKET_BYTES", "RUNS", "VERDICT", "NS_PER_RUN"], rows))
        print(f"4. what the program counted in {counts.name!r}:")
        seen: dict[int, int] = {}
        for key, value in counts.items():
            seen[_num(key, "<I")] = _num(value, "<Q")
        _indented(format_table(["PACKET_BYTES", "COUNT"], sorted(seen.items())))
    expected = {length: repeat for length, repeat in PACKETS}
    ok = seen == expected
    print("\ncounts match the runs: " + ("yes" if ok else f"NO (expected {expected})"))
    return 0 if ok else 1


def _demo(args: argparse.Namespace) -> int:
    return run_demo()


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``demo`` to the ``ebpf`` parser."""
    p = sub.add_parser("demo", help="a self-contained tour: a hash map, an XDP program, test runs, counts")
    p.set_defaults(func=_demo)
