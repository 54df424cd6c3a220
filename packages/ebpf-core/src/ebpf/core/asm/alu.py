"""ALU constructors: ``BPF_ALU64_IMM``/``REG``, moves, byte swaps, signed division."""

from __future__ import annotations

from ebpf.core.asm._common import _ALU_NAMES, Operand, _op, _reg
from ebpf.core.asm.insn import Instruction
from ebpf.core.asm.opcodes import (
    ADD,
    ALU,
    ALU64,
    AND,
    ARSH,
    DIV,
    END,
    LSH,
    MOD,
    MOV,
    MUL,
    NEG,
    OR,
    RSH,
    SUB,
    TO_BE,
    TO_LE,
    XOR,
    AsmError,
    K,
    Reg,
    X,
)

# ---- ALU -----------------------------------------------------------------------------------------


def alu64_imm(op: int | str, dst: Operand, imm: int, *, off: int = 0) -> Instruction:
    """``BPF_ALU64_IMM(OP, DST, IMM)``: ``dst op= imm`` on 64 bits (``off=1``: signed div/mod)."""
    return Instruction(ALU64 | K | _op(op, _ALU_NAMES, "ALU"), _reg(dst), 0, off, imm)


def alu64_reg(op: int | str, dst: Operand, src: Operand, *, off: int = 0) -> Instruction:
    """``BPF_ALU64_REG(OP, DST, SRC)``: ``dst op= src`` on 64 bits (``off=1``: signed div/mod)."""
    return Instruction(ALU64 | X | _op(op, _ALU_NAMES, "ALU"), _reg(dst), _reg(src), off, 0)


def alu32_imm(op: int | str, dst: Operand, imm: int, *, off: int = 0) -> Instruction:
    """``BPF_ALU32_IMM(OP, DST, IMM)``: ``wdst op= imm`` on 32 bits (upper half zeroed)."""
    return Instruction(ALU | K | _op(op, _ALU_NAMES, "ALU"), _reg(dst), 0, off, imm)


def alu32_reg(op: int | str, dst: Operand, src: Operand, *, off: int = 0) -> Instruction:
    """``BPF_ALU32_REG(OP, DST, SRC)``: ``wdst op= wsrc`` on 32 bits (upper half zeroed)."""
    return Instruction(ALU | X | _op(op, _ALU_NAMES, "ALU"), _reg(dst), _reg(src), off, 0)


def mov64_imm(dst: Operand, imm: int) -> Instruction:
    """``BPF_MOV64_IMM(DST, IMM)``: ``dst = imm`` (sign-extended to 64 bits)."""
    return alu64_imm(MOV, dst, imm)


def mov64_reg(dst: Operand, src: Operand) -> Instruction:
    """``BPF_MOV64_REG(DST, SRC)``: ``dst = src``."""
    return alu64_reg(MOV, dst, src)


def mov32_imm(dst: Operand, imm: int) -> Instruction:
    """``BPF_MOV32_IMM(DST, IMM)``: ``wdst = imm``."""
    return alu32_imm(MOV, dst, imm)


def mov32_reg(dst: Operand, src: Operand) -> Instruction:
    """``BPF_MOV32_REG(DST, SRC)``: ``wdst = wsrc``."""
    return alu32_reg(MOV, dst, src)


def movsx64_reg(dst: Operand, src: Operand, bits: int) -> Instruction:
    """``BPF_MOVSX64_REG(DST, SRC, OFF)``: ``dst = (s8|s16|s32)src``. Requires Linux >= 6.6."""
    if bits not in (8, 16, 32):
        raise AsmError(f"movsx64 sign-extends from 8, 16 or 32 bits, not {bits!r}")
    return alu64_reg(MOV, dst, src, off=bits)


def movsx32_reg(dst: Operand, src: Operand, bits: int) -> Instruction:
    """``BPF_MOVSX32_REG(DST, SRC, OFF)``: ``wdst = (s8|s16)wsrc``. Requires Linux >= 6.6."""
    if bits not in (8, 16):
        raise AsmError(f"movsx32 sign-extends from 8 or 16 bits, not {bits!r}")
    return alu32_reg(MOV, dst, src, off=bits)


def _alu(cls: int, op: int, dst: Operand, src: Operand, off: int = 0) -> Instruction:
    if isinstance(src, Reg):
        return Instruction(cls | X | op, _reg(dst), int(src), off, 0)
    if isinstance(src, bool) or not isinstance(src, int):
        raise AsmError(f"operand must be a register (R0..R10) or an int immediate, not {src!r}")
    return Instruction(cls | K | op, _reg(dst), 0, off, src)


def mov64(dst: Operand, src: Operand) -> Instruction:
    """``dst = src``: ``src`` is a register (Reg) or an int immediate (sign-extended)."""
    return _alu(ALU64, MOV, dst, src)


def mov32(dst: Operand, src: Operand) -> Instruction:
    """``wdst = src``: ``src`` is a register (Reg) or an int immediate; zeroes the upper half."""
    return _alu(ALU, MOV, dst, src)


def add64(dst: Operand, src: Operand) -> Instruction:
    """``dst += src`` (register or immediate)."""
    return _alu(ALU64, ADD, dst, src)


def add32(dst: Operand, src: Operand) -> Instruction:
    """``wdst += src`` (register or immediate)."""
    return _alu(ALU, ADD, dst, src)


def sub64(dst: Operand, src: Operand) -> Instruction:
    """``dst -= src`` (register or immediate)."""
    return _alu(ALU64, SUB, dst, src)


def sub32(dst: Operand, src: Operand) -> Instruction:
    """``wdst -= src`` (register or immediate)."""
    return _alu(ALU, SUB, dst, src)


def mul64(dst: Operand, src: Operand) -> Instruction:
    """``dst *= src`` (register or immediate)."""
    return _alu(ALU64, MUL, dst, src)


def mul32(dst: Operand, src: Operand) -> Instruction:
    """``wdst *= src`` (register or immediate)."""
    return _alu(ALU, MUL, dst, src)


def div64(dst: Operand, src: Operand) -> Instruction:
    """``dst /= src``, unsigned (register or immediate)."""
    return _alu(ALU64, DIV, dst, src)


def div32(dst: Operand, src: Operand) -> Instruction:
    """``wdst /= src``, unsigned (register or immediate)."""
    return _alu(ALU, DIV, dst, src)


def sdiv64(dst: Operand, src: Operand) -> Instruction:
    """``dst s/= src``, signed division (``off=1``). Requires Linux >= 6.6."""
    return _alu(ALU64, DIV, dst, src, 1)


def sdiv32(dst: Operand, src: Operand) -> Instruction:
    """``wdst s/= src``, signed division (``off=1``). Requires Linux >= 6.6."""
    return _alu(ALU, DIV, dst, src, 1)


def mod64(dst: Operand, src: Operand) -> Instruction:
    """``dst %= src``, unsigned (register or immediate)."""
    return _alu(ALU64, MOD, dst, src)


def mod32(dst: Operand, src: Operand) -> Instruction:
    """``wdst %= src``, unsigned (register or immediate)."""
    return _alu(ALU, MOD, dst, src)


def smod64(dst: Operand, src: Operand) -> Instruction:
    """``dst s%= src``, signed modulo (``off=1``). Requires Linux >= 6.6."""
    return _alu(ALU64, MOD, dst, src, 1)


def smod32(dst: Operand, src: Operand) -> Instruction:
    """``wdst s%= src``, signed modulo (``off=1``). Requires Linux >= 6.6."""
    return _alu(ALU, MOD, dst, src, 1)


def or64(dst: Operand, src: Operand) -> Instruction:
    """``dst |= src`` (register or immediate)."""
    return _alu(ALU64, OR, dst, src)


def or32(dst: Operand, src: Operand) -> Instruction:
    """``wdst |= src`` (register or immediate)."""
    return _alu(ALU, OR, dst, src)


def and64(dst: Operand, src: Operand) -> Instruction:
    """``dst &= src`` (register or immediate)."""
    return _alu(ALU64, AND, dst, src)


def and32(dst: Operand, src: Operand) -> Instruction:
    """``wdst &= src`` (register or immediate)."""
    return _alu(ALU, AND, dst, src)


def xor64(dst: Operand, src: Operand) -> Instruction:
    """``dst ^= src`` (register or immediate)."""
    return _alu(ALU64, XOR, dst, src)


def xor32(dst: Operand, src: Operand) -> Instruction:
    """``wdst ^= src`` (register or immediate)."""
    return _alu(ALU, XOR, dst, src)


def lsh64(dst: Operand, src: Operand) -> Instruction:
    """``dst <<= src`` (register or immediate)."""
    return _alu(ALU64, LSH, dst, src)


def lsh32(dst: Operand, src: Operand) -> Instruction:
    """``wdst <<= src`` (register or immediate)."""
    return _alu(ALU, LSH, dst, src)


def rsh64(dst: Operand, src: Operand) -> Instruction:
    """``dst >>= src``, logical (register or immediate)."""
    return _alu(ALU64, RSH, dst, src)


def rsh32(dst: Operand, src: Operand) -> Instruction:
    """``wdst >>= src``, logical (register or immediate)."""
    return _alu(ALU, RSH, dst, src)


def arsh64(dst: Operand, src: Operand) -> Instruction:
    """``dst s>>= src``, arithmetic (register or immediate)."""
    return _alu(ALU64, ARSH, dst, src)


def arsh32(dst: Operand, src: Operand) -> Instruction:
    """``wdst s>>= src``, arithmetic (register or immediate)."""
    return _alu(ALU, ARSH, dst, src)


def neg64(dst: Operand) -> Instruction:
    """``dst = -dst``."""
    return Instruction(ALU64 | K | NEG, _reg(dst))


def neg32(dst: Operand) -> Instruction:
    """``wdst = -wdst``."""
    return Instruction(ALU | K | NEG, _reg(dst))


def endian(kind: int, dst: Operand, bits: int) -> Instruction:
    """``BPF_ENDIAN(TO_LE|TO_BE, DST, LEN)``: convert ``dst`` to little/big endian ``bits`` wide."""
    if kind not in (TO_LE, TO_BE):
        raise AsmError(f"endian kind must be TO_LE or TO_BE, not {kind!r}")
    if bits not in (16, 32, 64):
        raise AsmError(f"byte swap width must be 16, 32 or 64, not {bits!r}")
    return Instruction(ALU | kind | END, _reg(dst), 0, 0, bits)


def bswap(dst: Operand, bits: int) -> Instruction:
    """``BPF_BSWAP(DST, LEN)``: unconditional byte swap of the low ``bits`` (ALU64 class). Requires Linux >= 6.6."""
    if bits not in (16, 32, 64):
        raise AsmError(f"byte swap width must be 16, 32 or 64, not {bits!r}")
    return Instruction(ALU64 | TO_LE | END, _reg(dst), 0, 0, bits)


def be16(dst: Operand) -> Instruction:
    """``dst = be16 dst``: host to big endian, 16 bits."""
    return endian(TO_BE, dst, 16)


def be32(dst: Operand) -> Instruction:
    """``dst = be32 dst``: host to big endian, 32 bits."""
    return endian(TO_BE, dst, 32)


def be64(dst: Operand) -> Instruction:
    """``dst = be64 dst``: host to big endian, 64 bits."""
    return endian(TO_BE, dst, 64)


def le16(dst: Operand) -> Instruction:
    """``dst = le16 dst``: host to little endian, 16 bits."""
    return endian(TO_LE, dst, 16)


def le32(dst: Operand) -> Instruction:
    """``dst = le32 dst``: host to little endian, 32 bits."""
    return endian(TO_LE, dst, 32)


def le64(dst: Operand) -> Instruction:
    """``dst = le64 dst``: host to little endian, 64 bits."""
    return endian(TO_LE, dst, 64)


def bswap16(dst: Operand) -> Instruction:
    """``dst = bswap16 dst``. Requires Linux >= 6.6."""
    return bswap(dst, 16)


def bswap32(dst: Operand) -> Instruction:
    """``dst = bswap32 dst``. Requires Linux >= 6.6."""
    return bswap(dst, 32)


def bswap64(dst: Operand) -> Instruction:
    """``dst = bswap64 dst``. Requires Linux >= 6.6."""
    return bswap(dst, 64)


def addr_space_cast(dst: Operand, src: Operand, dst_as: int, src_as: int) -> Instruction:
    """``dst = addr_space_cast(src, dst_as, src_as)`` (arena pointers). Requires Linux >= 6.9."""
    if not (0 <= dst_as <= 0xFFFF and 0 <= src_as <= 0xFFFF):
        raise AsmError("address spaces must fit in 16 bits")
    return Instruction(ALU64 | X | MOV, _reg(dst), _reg(src), 1, (dst_as << 16) | src_as)


