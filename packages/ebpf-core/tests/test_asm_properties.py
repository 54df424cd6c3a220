"""Property tests: disassembly reads back to the same bytes, decoding never crashes."""

from __future__ import annotations

import struct

from ebpf.core import asm
from ebpf.core.asm import (
    ADD,
    AND,
    CMPXCHG,
    DW,
    FETCH,
    OR,
    VALID_OPCODES,
    XCHG,
    XOR,
    AsmError,
    B,
    H,
    Instruction,
    Label,
    Reg,
    W,
    assemble,
    decode,
    disassemble,
)
from hypothesis import given, settings
from hypothesis import strategies as st

regs = st.sampled_from(list(Reg))
imm32 = st.integers(-(1 << 31), (1 << 31) - 1)
off16 = st.integers(-(1 << 15), (1 << 15) - 1)
sizes = st.sampled_from([B, H, W, DW])
small_sizes = st.sampled_from([B, H, W])
operand = st.one_of(regs, imm32)

ALU_SHORT = [
    "mov", "add", "sub", "mul", "div", "sdiv", "mod", "smod", "or", "and", "xor", "lsh", "rsh", "arsh",
]  # fmt: skip
JUMP_SHORT = ["jeq", "jne", "jgt", "jge", "jlt", "jle", "jsgt", "jsge", "jslt", "jsle", "jset"]


def _alu(name: str, width: str, dst: Reg, src: Reg | int) -> Instruction:
    fn = getattr(asm, f"{name}{width}")
    result = fn(dst, src)
    assert isinstance(result, Instruction)
    return result


def _jump(name: str, width: str, dst: Reg, src: Reg | int, off: int) -> Instruction:
    fn = getattr(asm, f"{name}{width}")
    result = fn(dst, src, off)
    assert isinstance(result, Instruction)
    return result


rmw_ops = st.sampled_from([ADD, AND, OR, XOR, ADD | FETCH, AND | FETCH, OR | FETCH, XOR | FETCH, XCHG, CMPXCHG])

instructions = st.one_of(
    st.builds(_alu, st.sampled_from(ALU_SHORT), st.sampled_from(["64", "32"]), regs, operand),
    st.builds(asm.neg64, regs),
    st.builds(asm.neg32, regs),
    st.builds(asm.movsx64_reg, regs, regs, st.sampled_from([8, 16, 32])),
    st.builds(asm.movsx32_reg, regs, regs, st.sampled_from([8, 16])),
    st.builds(asm.endian, st.sampled_from([asm.TO_LE, asm.TO_BE]), regs, st.sampled_from([16, 32, 64])),
    st.builds(asm.bswap, regs, st.sampled_from([16, 32, 64])),
    st.builds(asm.addr_space_cast, regs, regs, st.integers(0, 0xFFFF), st.integers(0, 0xFFFF)),
    st.builds(_jump, st.sampled_from(JUMP_SHORT), st.sampled_from(["", "32"]), regs, operand, off16),
    st.builds(asm.ja, off16),
    st.builds(asm.gotol, imm32),
    st.builds(asm.may_goto, off16),
    st.builds(asm.call, st.integers(0, (1 << 31) - 1)),
    st.builds(asm.call_rel, imm32),
    st.builds(asm.kfunc_call, imm32, off16),
    st.builds(asm.callx, regs),
    st.builds(asm.exit_),
    st.builds(asm.ld_imm64, regs, st.integers(0, (1 << 64) - 1)),
    st.builds(asm.ld_map_fd, regs, st.integers(0, (1 << 31) - 1)),
    st.builds(asm.ld_map_value, regs, st.integers(0, (1 << 31) - 1), imm32),
    st.builds(asm.ld_imm64_raw, regs, st.sampled_from([3, 4, 5, 6]), imm32, imm32).filter(
        lambda i: i.src in (3, 5, 6) or i.imm2 == 0
    ).filter(lambda i: i.src != 5 or i.imm2 == 0),
    st.builds(asm.ld_abs, small_sizes, imm32),
    st.builds(asm.ld_ind, small_sizes, regs, imm32),
    st.builds(asm.ldx_mem, sizes, regs, regs, off16),
    st.builds(asm.ldx_memsx, small_sizes, regs, regs, off16),
    st.builds(asm.stx_mem, sizes, regs, regs, off16),
    st.builds(asm.st_mem, sizes, regs, off16, imm32),
    st.builds(asm.atomic_op, st.sampled_from([W, DW]), rmw_ops, regs, regs, off16),
    st.builds(asm.load_acquire, sizes, regs, regs, off16),
    st.builds(asm.store_release, sizes, regs, regs, off16),
)
programs = st.lists(instructions, min_size=1, max_size=40)


@settings(database=None, max_examples=400)
@given(programs, st.booleans())
def test_assemble_disassemble_round_trip(prog: list[Instruction], hex_style: bool) -> None:
    code = assemble(prog)
    text = disassemble(code, hex=hex_style)
    assert ".insn" not in text  # every canonical instruction has a real syntax
    assert assemble(text) == code
    assert decode(code) == prog
    assert assemble(disassemble(code, objdump=True)) == code


@settings(database=None, max_examples=200)
@given(programs, st.data())
def test_symbolic_listing_round_trip(prog: list[Instruction], data: st.DataObject) -> None:
    # Sprinkle labels and point the first jumps at them; the text listing assembles identically.
    names = [f"L{i}" for i in range(3)]
    items: list[Instruction | Label] = list(prog)
    for name in names:
        items.insert(data.draw(st.integers(0, len(items))), Label(name))
    items.append(asm.jeq(asm.R1, 0, data.draw(st.sampled_from(names))))
    items.append(asm.gotol(data.draw(st.sampled_from(names))))
    items.append(asm.call_rel(data.draw(st.sampled_from(names))))
    listing = disassemble(items)
    assert assemble(listing) == assemble(items)


words = st.builds(
    lambda code, regs_, off, imm: struct.pack("<BBhi", code, regs_, off, imm),
    st.one_of(st.sampled_from(sorted(VALID_OPCODES)), st.integers(0, 255)),
    st.one_of(st.integers(0, 0xAA), st.integers(0, 255)),
    st.one_of(st.sampled_from([0, 1, 8, 16, 32, -1]), off16),
    st.one_of(st.sampled_from([0, 1, 16, 32, 64, 0x100, 0x110, 0xE1, 0xF1, 0x51]), imm32),
)


@settings(database=None, max_examples=1000)
@given(st.lists(words, min_size=1, max_size=8))
def test_any_decodable_bytes_read_back(chunks: list[bytes]) -> None:
    code = b"".join(chunks)
    try:
        decode(code)
    except AsmError:
        return  # invalid bytes are refused with our error, never IndexError/struct.error
    assert assemble(disassemble(code)) == code
    assert assemble(disassemble(code, hex=True)) == code


@settings(database=None)
@given(st.binary(max_size=64))
def test_arbitrary_bytes_never_crash(data: bytes) -> None:
    try:
        text = disassemble(data)
    except AsmError:
        return
    assert assemble(text) == data


@settings(database=None)
@given(st.text(max_size=60))
def test_arbitrary_text_never_crashes(text: str) -> None:
    try:
        assemble(text)
    except AsmError:
        pass
