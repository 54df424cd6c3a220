"""Load, store and atomic constructors: ``BPF_LD_IMM64``, ``BPF_LD_MAP_FD``, ``BPF_LDX_MEM``, ``BPF_STX_MEM``, ``BPF_ST_MEM``, ``BPF_ATOMIC_OP``, ``BPF_LD_ABS``/``IND``."""

from __future__ import annotations

from ebpf.core.asm._common import Operand, Target, _reg, _size, _target
from ebpf.core.asm.insn import Instruction, MapRef
from ebpf.core.asm.opcodes import (
    ABS,
    ADD,
    AND,
    ATOMIC,
    CMPXCHG,
    DW,
    FETCH,
    IMM,
    IND,
    LD,
    LDX,
    LOAD_ACQ,
    MEM,
    MEMSX,
    OR,
    PSEUDO_FUNC,
    PSEUDO_MAP_FD,
    PSEUDO_MAP_VALUE,
    ST,
    STORE_REL,
    STX,
    XCHG,
    XOR,
    AsmError,
    W,
)

# ---- loads and stores ------------------------------------------------------------------------------


def ld_imm64_raw(dst: Operand, src: int, imm: int, imm2: int = 0) -> Instruction:
    """``BPF_LD_IMM64_RAW(DST, SRC, IMM)`` with explicit slot immediates (two slots)."""
    return Instruction(LD | IMM | DW, _reg(dst), _reg(src, "pseudo source"), 0, imm, imm2)


def ld_imm64(dst: Operand, value: int) -> Instruction:
    """``BPF_LD_IMM64(DST, IMM)``: ``dst = value ll`` for any 64-bit value (two slots)."""
    if isinstance(value, bool) or not isinstance(value, int) or not -(1 << 63) <= value < (1 << 64):
        raise AsmError(f"ld_imm64 value {value!r} does not fit in 64 bits")
    value &= (1 << 64) - 1
    return ld_imm64_raw(dst, 0, value & 0xFFFFFFFF, value >> 32)


def _map_ref(map_: MapRef) -> tuple[int, MapRef | None]:
    if isinstance(map_, bool):
        raise AsmError(f"invalid map reference {map_!r}")
    if isinstance(map_, int):
        if map_ < 0:
            raise AsmError(f"invalid map fd {map_}")
        return map_, None
    if isinstance(map_, str) or isinstance(getattr(map_, "fd", None), int):
        return 0, map_
    raise AsmError(f"a map reference is a Map (anything with an int .fd), an fd or a name, not {map_!r}")


def ld_map_fd(dst: Operand, map_: MapRef) -> Instruction:
    """``BPF_LD_MAP_FD(DST, MAP_FD)``: ``dst = &map`` (src = BPF_PSEUDO_MAP_FD).

    :param map_: a Map (kept symbolic until assembly), a raw fd, or a name resolved by ``assemble(maps=...)``.
    """
    fd, ref = _map_ref(map_)
    return Instruction(LD | IMM | DW, _reg(dst), PSEUDO_MAP_FD, 0, fd, 0, map_ref=ref)


def ld_map_value(dst: Operand, map_: MapRef, offset: int = 0) -> Instruction:
    """``BPF_LD_MAP_VALUE(DST, MAP_FD, OFF)``: ``dst = &map->value[0] + offset`` (src = BPF_PSEUDO_MAP_VALUE).

    Works on array maps (e.g. ``.data``/``.bss`` globals).
    """
    fd, ref = _map_ref(map_)
    return Instruction(LD | IMM | DW, _reg(dst), PSEUDO_MAP_VALUE, 0, fd, offset, map_ref=ref)


def ld_func(dst: Operand, target: Target) -> Instruction:
    """``dst = &subprogram`` (src = BPF_PSEUDO_FUNC), e.g. a callback for ``bpf_loop``."""
    off, name = _target(target)
    return Instruction(LD | IMM | DW, _reg(dst), PSEUDO_FUNC, 0, off, 0, target=name)


def ld_abs(size: int | str, imm: int) -> Instruction:
    """``BPF_LD_ABS(SIZE, IMM)``: ``r0 = *(size *)skb[imm]`` (socket filters, network byte order)."""
    sz = _size(size)
    if sz == DW:
        raise AsmError("ld_abs loads 1, 2 or 4 bytes (B, H, W)")
    return Instruction(LD | ABS | sz, 0, 0, 0, imm)


def ld_ind(size: int | str, src: Operand, imm: int = 0) -> Instruction:
    """``BPF_LD_IND(SIZE, SRC, IMM)``: ``r0 = *(size *)skb[src + imm]``."""
    sz = _size(size)
    if sz == DW:
        raise AsmError("ld_ind loads 1, 2 or 4 bytes (B, H, W)")
    return Instruction(LD | IND | sz, 0, _reg(src), 0, imm)


def ldx_mem(size: int | str, dst: Operand, src: Operand, off: int = 0) -> Instruction:
    """``BPF_LDX_MEM(SIZE, DST, SRC, OFF)``: ``dst = *(size *)(src + off)``."""
    return Instruction(LDX | MEM | _size(size), _reg(dst), _reg(src), off)


def ldx_memsx(size: int | str, dst: Operand, src: Operand, off: int = 0) -> Instruction:
    """``BPF_LDX_MEMSX(SIZE, DST, SRC, OFF)``: ``dst = *(s8|s16|s32 *)(src + off)``. Requires Linux >= 6.6."""
    sz = _size(size)
    if sz == DW:
        raise AsmError("sign-extending loads read 1, 2 or 4 bytes (B, H, W)")
    return Instruction(LDX | MEMSX | sz, _reg(dst), _reg(src), off)


def stx_mem(size: int | str, dst: Operand, src: Operand, off: int = 0) -> Instruction:
    """``BPF_STX_MEM(SIZE, DST, SRC, OFF)``: ``*(size *)(dst + off) = src``."""
    return Instruction(STX | MEM | _size(size), _reg(dst), _reg(src), off)


def st_mem(size: int | str, dst: Operand, off: int, imm: int) -> Instruction:
    """``BPF_ST_MEM(SIZE, DST, OFF, IMM)``: ``*(size *)(dst + off) = imm``."""
    return Instruction(ST | MEM | _size(size), _reg(dst), 0, off, imm)


def atomic_op(size: int | str, op: int, dst: Operand, src: Operand, off: int = 0) -> Instruction:
    """``BPF_ATOMIC_OP(SIZE, OP, DST, SRC, OFF)``: atomic ``op`` on ``*(size *)(dst + off)`` with ``src``.

    ``op`` is ``ADD``/``AND``/``OR``/``XOR`` (``| FETCH`` to get the old value into ``src``),
    ``XCHG``, ``CMPXCHG`` (compares with ``R0``), ``LOAD_ACQ`` or ``STORE_REL``.
    """
    sz = _size(size)
    if op in (ADD, AND, OR, XOR, ADD | FETCH, AND | FETCH, OR | FETCH, XOR | FETCH, XCHG, CMPXCHG):
        if sz not in (W, DW):
            raise AsmError("atomic read-modify-write operations work on W or DW")
    elif op not in (LOAD_ACQ, STORE_REL):
        raise AsmError(f"invalid atomic operation 0x{op:x}" if isinstance(op, int) else f"invalid atomic op {op!r}")
    return Instruction(STX | ATOMIC | sz, _reg(dst), _reg(src), off, op)


def atomic_add(size: int | str, dst: Operand, src: Operand, off: int = 0, *, fetch: bool = False) -> Instruction:
    """``lock *(size *)(dst + off) += src``; with ``fetch``, ``src`` receives the old value."""
    return atomic_op(size, ADD | (FETCH if fetch else 0), dst, src, off)


def atomic_and(size: int | str, dst: Operand, src: Operand, off: int = 0, *, fetch: bool = False) -> Instruction:
    """``lock *(size *)(dst + off) &= src``; with ``fetch``, ``src`` receives the old value."""
    return atomic_op(size, AND | (FETCH if fetch else 0), dst, src, off)


def atomic_or(size: int | str, dst: Operand, src: Operand, off: int = 0, *, fetch: bool = False) -> Instruction:
    """``lock *(size *)(dst + off) |= src``; with ``fetch``, ``src`` receives the old value."""
    return atomic_op(size, OR | (FETCH if fetch else 0), dst, src, off)


def atomic_xor(size: int | str, dst: Operand, src: Operand, off: int = 0, *, fetch: bool = False) -> Instruction:
    """``lock *(size *)(dst + off) ^= src``; with ``fetch``, ``src`` receives the old value."""
    return atomic_op(size, XOR | (FETCH if fetch else 0), dst, src, off)


def atomic_xchg(size: int | str, dst: Operand, src: Operand, off: int = 0) -> Instruction:
    """``src = xchg(dst + off, src)``: store ``src``, return the old value in ``src``."""
    return atomic_op(size, XCHG, dst, src, off)


def atomic_cmpxchg(size: int | str, dst: Operand, src: Operand, off: int = 0) -> Instruction:
    """``r0 = cmpxchg(dst + off, r0, src)``: store ``src`` if the memory equals ``R0``; old value in ``R0``."""
    return atomic_op(size, CMPXCHG, dst, src, off)


def load_acquire(size: int | str, dst: Operand, src: Operand, off: int = 0) -> Instruction:
    """``dst = load_acquire((size *)(src + off))``. Requires Linux >= 6.15."""
    return atomic_op(size, LOAD_ACQ, dst, src, off)


def store_release(size: int | str, dst: Operand, src: Operand, off: int = 0) -> Instruction:
    """``store_release((size *)(dst + off), src)``. Requires Linux >= 6.15."""
    return atomic_op(size, STORE_REL, dst, src, off)

