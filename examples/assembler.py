"""The assembler: write a program in Python, see it as text, read the text back, run it.

    sudo python3 examples/assembler.py

An XDP program that drops packets longer than 100 bytes, run with BPF_PROG_TEST_RUN on
made-up packets (no network needed).
"""

from __future__ import annotations

from ebpf.core.asm import R0, R1, R2, R3, W, assemble, disassemble, exit_insn, jle, label, ldx_mem, mov64, sub64
from ebpf.core.programs import load_program

XDP_DROP, XDP_PASS = 1, 2

program = [
    ldx_mem(W, R2, R1, 4),      # r2 = ctx->data_end
    ldx_mem(W, R3, R1, 0),      # r3 = ctx->data
    sub64(R2, R3),              # r2 = packet length
    mov64(R0, XDP_PASS),
    jle(R2, 100, "out"),        # labels are resolved by the assembler
    mov64(R0, XDP_DROP),
    label("out"),
    exit_insn(),
]


def main() -> None:
    code = assemble(program)                 # bytes, 8 per instruction
    text = disassemble(code)                 # llvm-objdump syntax
    print(f"{len(code) // 8} instructions:\n{text}")
    assert assemble(text) == code            # the text form assembles to the same bytes
    with load_program(prog_type="xdp", insns=code, name="drop_long") as prog:
        for size in (60, 100, 101, 1500):
            verdict = prog.test_run(bytes(size)).retval
            print(f"{size:>5}-byte packet -> {'XDP_DROP' if verdict == XDP_DROP else 'XDP_PASS'}")


if __name__ == "__main__":
    main()
