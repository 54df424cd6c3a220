"""Instruction sequences that programs keep needing: log2, histogram slots, tracepoint fields.

Each function returns a list of instructions (and labels) to splice into a program::

    prog = [
        asm.ctx_field(R1, fmt, "count", dst=R6),        # r6 = args->count, offset read from tracefs
        *asm.log2(R7, R6, tmp=R8),                      # r7 = floor(log2(r6)), r6 and r8 clobbered
        *asm.hist_increment(hist, R7, max_slots=64),    # hist[r7] += 1
        asm.mov64(R0, 0), asm.exit_(),
    ]

``log2`` is branch-free in the manner of libbpf-tools' ``bits.bpf.h`` (each step is a
comparison turned into a 0/1 by a sign bit, so the verifier sees straight-line code and the
result bounded to 0..63).  Slot numbering follows libbpf-tools: slot ``i`` holds values in
``[2**i, 2**(i+1) - 1]`` and slot 0 also holds 0; :mod:`ebpf.events.hist` prints them in bcc's
layout.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any

from ebpf.core.asm import alu, jumps, mem
from ebpf.core.asm.insn import Instruction, Label, MapRef
from ebpf.core.asm.opcodes import R0, R1, R2, R3, R4, R10, AsmError, Reg

__all__ = ["log2", "linear_slot", "hist_increment", "ctx_field", "ctx_field_addr"]

Item = Instruction | Label
_labels = itertools.count()
_BPF_NOEXIST = 1


def _regs(**regs: object) -> None:
    seen: dict[int, str] = {}
    for name, reg in regs.items():
        if not isinstance(reg, Reg):
            raise AsmError(f"{name} must be a register (R0..R9), not {reg!r}")
        if reg == R10:
            raise AsmError(f"{name} cannot be R10, the read-only frame pointer")
        if int(reg) in seen:
            raise AsmError(f"{name} and {seen[int(reg)]} must be different registers (both {reg!r})")
        seen[int(reg)] = name


def log2(dst: Reg, src: Reg, tmp: Reg | None = None) -> list[Item]:
    """``dst = floor(log2(src))`` for a 64-bit ``src`` (0 for 0 and 1), branch-free.

    The same arithmetic as libbpf-tools' ``log2l``: halve the search range five times (32,
    16, 8, 4, 2 bits), each step's comparison computed from the sign bit of ``K - v``, then
    add the last bit.  Nineteen instructions, no jumps, result 0..63.

    :param dst: receives the result.
    :param src: the value; clobbered (it ends holding ``src >> dst``).
    :param tmp: a scratch register (default R0 when neither ``dst`` nor ``src`` is R0).
    :returns: the instructions.
    :raises AsmError: when the registers are not three distinct registers other than R10.
    """
    if tmp is None:
        if R0 in (dst, src):
            raise AsmError("log2 needs a scratch register: pass tmp= (R0 is dst or src here)")
        tmp = R0
    _regs(dst=dst, src=src, tmp=tmp)
    # step 32: tmp = (src >> 32 != 0) << 5, as the sign of -(src >> 32)
    out: list[Item] = [alu.mov64(tmp, src), alu.rsh64(tmp, 32), alu.neg64(tmp), alu.rsh64(tmp, 63),
                       alu.lsh64(tmp, 5), alu.rsh64(src, tmp), alu.mov64(dst, tmp)]
    for bits in (4, 3, 2, 1):  # src < 2**32 from here: K - src is negative exactly when src > K
        out += [alu.mov64(tmp, (1 << (1 << bits)) - 1), alu.sub64(tmp, src), alu.rsh64(tmp, 63),
                alu.lsh64(tmp, bits), alu.rsh64(src, tmp), alu.or64(dst, tmp)]
    out += [alu.rsh64(src, 1), alu.or64(dst, src)]
    return out


def linear_slot(dst: Reg, src: Reg, step: int = 1, max_slots: int | None = None, *, base: int = 0) -> list[Item]:
    """``dst = (src - base) / step``, clamped to ``max_slots - 1`` (values below ``base`` go to slot 0).

    :param dst: receives the slot (may equal ``src``).
    :param src: the value (unsigned 64-bit); unchanged unless it is ``dst``.
    :param step: the width of one slot (> 0).
    :param max_slots: the number of slots of the histogram map; larger values land in the last one.
    :param base: the value of slot 0's lower edge.
    :returns: the instructions.
    :raises AsmError: for a step that is not a positive 32-bit int or a bad ``max_slots``.
    """
    if not isinstance(src, Reg) or not isinstance(dst, Reg) or R10 in (src, dst):
        raise AsmError(f"linear_slot needs registers R0..R9, not {dst!r}, {src!r}")
    if isinstance(step, bool) or not isinstance(step, int) or not 0 < step < 1 << 31:
        raise AsmError(f"step must be a positive 32-bit int, not {step!r}")
    if isinstance(base, bool) or not isinstance(base, int) or not 0 <= base < 1 << 31:
        raise AsmError(f"base must be a non-negative 32-bit int, not {base!r}")
    n = next(_labels)
    out: list[Item] = [] if dst == src else [alu.mov64(dst, src)]
    if base:
        out += [jumps.jge(dst, base, f"__lin_above_{n}"), alu.mov64(dst, base), Label(f"__lin_above_{n}"),
                alu.sub64(dst, base)]
    if step != 1:
        out.append(alu.div64(dst, step))
    if max_slots is not None:
        if isinstance(max_slots, bool) or not isinstance(max_slots, int) or not 0 < max_slots < 1 << 31:
            raise AsmError(f"max_slots must be a positive 32-bit int, not {max_slots!r}")
        out += [jumps.jlt(dst, max_slots, f"__lin_ok_{n}"), alu.mov64(dst, max_slots - 1), Label(f"__lin_ok_{n}")]
    return out


def hist_increment(map_: MapRef, slot: Reg, *, key_size: int = 4, key_off: int = -8,
                   increment: int | Reg = 1, max_slots: int | None = None, create: bool = False) -> list[Item]:
    """``map[slot] += increment`` with an atomic add; the key goes on the stack at ``key_off``.

    Works on array, per-CPU array, hash and per-CPU hash maps whose values are u64.  Hash maps
    start empty: pass ``create=True`` to insert a missing key (BPF_NOEXIST, so two CPUs racing
    to insert lose one count at most, as libbpf-tools accepts).  For a keyed histogram, build
    a 64-bit key such as ``(pid << 32) | slot`` in ``slot`` and pass ``key_size=8``.

    Clobbers R0-R5 and the stack bytes ``[key_off, key_off + key_size)`` (and the 8 bytes
    below them when ``create`` is set).

    :param map_: the histogram map (a ``Map`` or anything with ``fd``).
    :param slot: the register holding the key (R0-R9).
    :param key_size: 4 (u32 key) or 8 (u64 key).
    :param key_off: the stack offset (negative, 8-byte aligned) where the key is written.
    :param increment: an int, or a register from R6-R9 (R0-R5 are clobbered by the call).
    :param max_slots: clamp the key to ``max_slots - 1`` first (values past the end land in the last slot).
    :param create: insert missing keys (hash maps).
    :returns: the instructions.
    :raises AsmError: for a bad register, key size, stack offset or increment.
    """
    if not isinstance(slot, Reg) or slot == R10:
        raise AsmError(f"slot must be a register R0..R9, not {slot!r}")
    if key_size not in (4, 8):
        raise AsmError(f"key_size must be 4 or 8, not {key_size!r}")
    low = key_off - (8 if create else 0)
    if isinstance(key_off, bool) or not isinstance(key_off, int) or key_off % 8 or not -512 <= low <= key_off < 0:
        raise AsmError(f"key_off must be a negative multiple of 8 inside the 512-byte stack, not {key_off!r}")
    if isinstance(increment, Reg):
        if int(increment) < 6 or increment == R10:
            raise AsmError(f"increment register must be R6..R9 (R0-R5 are clobbered by the call), not {increment!r}")
    elif isinstance(increment, bool) or not isinstance(increment, int) or not -(1 << 31) <= increment < 1 << 31:
        raise AsmError(f"increment must be a 32-bit int or a register, not {increment!r}")
    n = next(_labels)
    miss, done = f"__hist_miss_{n}", f"__hist_done_{n}"
    out: list[Item] = []
    if max_slots is not None:
        out += linear_slot(slot, slot, 1, max_slots)
    size = "w" if key_size == 4 else "dw"
    out += [mem.stx_mem(size, R10, slot, key_off), mem.ld_map_fd(R1, map_), alu.mov64(R2, R10),
            alu.add64(R2, key_off), jumps.call("map_lookup_elem"), jumps.jeq(R0, 0, miss),
            alu.mov64(R1, increment), mem.atomic_add("dw", R0, R1, 0), jumps.ja(done), Label(miss)]
    if create:
        value = [mem.stx_mem("dw", R10, increment, low)] if isinstance(increment, Reg) \
            else [mem.st_mem("dw", R10, low, increment)]
        out += [*value, mem.ld_map_fd(R1, map_), alu.mov64(R2, R10), alu.add64(R2, key_off),
                alu.mov64(R3, R10), alu.add64(R3, low), alu.mov64(R4, _BPF_NOEXIST), jumps.call("map_update_elem")]
    out.append(Label(done))
    return out


def _field(fmt: Any, name: str) -> tuple[int, int, bool]:
    """(offset, size, signed) of field ``name`` of a tracepoint format or a ``{name: (offset, size)}`` mapping."""
    if not isinstance(name, str) or not name:
        raise AsmError(f"field name must be a non-empty str, not {name!r}")
    if isinstance(fmt, Mapping):
        if name not in fmt:
            raise AsmError(f"no field {name!r}; fields: {', '.join(map(str, fmt))}")
        entry = fmt[name]
        if isinstance(entry, tuple) and len(entry) >= 2:
            return int(entry[0]), int(entry[1]), bool(entry[2]) if len(entry) > 2 else False
        return int(entry.offset), int(entry.size), bool(getattr(entry, "signed", False))
    getter = getattr(fmt, "field", None)
    if not callable(getter):
        raise AsmError(f"expected a tracepoint format (with .field(name)) or a mapping, not {type(fmt).__name__}")
    try:
        f = getter(name)
    except (KeyError, LookupError) as exc:
        raise AsmError(str(exc.args[0]) if exc.args else f"no field {name!r}") from None
    return int(f.offset), int(f.size), bool(getattr(f, "signed", False))


def ctx_field(ctx: Reg, fmt: Any, name: str, dst: Reg = R0, *, sign_extend: bool = False) -> Instruction:
    """Load tracepoint field ``name`` from the context: ``dst = args->name``.

    The offset and size come from ``fmt`` (``ebpf.events.tracing.tracepoint_format(...)`` or any
    object with ``.field(name)`` giving ``offset``/``size``/``signed``, or a mapping name ->
    ``(offset, size)``), so programs never count offsets by hand.

    :param ctx: the register holding the context pointer (R1 at entry).
    :param fmt: the tracepoint's format.
    :param name: the field's name (``"filename"``, ``"flags"``).
    :param dst: the register to load into.
    :param sign_extend: sign-extend a signed field narrower than 64 bits (``ldx_memsx``, cpu v4).
    :returns: one load instruction.
    :raises AsmError: for an unknown field, or a field that is not 1, 2, 4 or 8 bytes (an array:
        take its address with :func:`ctx_field_addr`).
    """
    off, size, signed = _field(fmt, name)
    if size not in (1, 2, 4, 8):
        raise AsmError(f"field {name!r} is {size} bytes, not a scalar; use ctx_field_addr() for its address")
    width = {1: "b", 2: "h", 4: "w", 8: "dw"}[size]
    if sign_extend and signed and size < 8:
        return mem.ldx_memsx(width, dst, ctx, off)
    return mem.ldx_mem(width, dst, ctx, off)


def ctx_field_addr(ctx: Reg, fmt: Any, name: str, dst: Reg) -> list[Item]:
    """``dst = &args->name`` (for arrays such as ``char comm[16]``).

    :returns: the instructions.
    :raises AsmError: for an unknown field or bad registers.
    """
    off, _, _ = _field(fmt, name)
    if not isinstance(dst, Reg) or dst == R10:
        raise AsmError(f"dst must be a register R0..R9, not {dst!r}")
    return [alu.mov64(dst, ctx), alu.add64(dst, off)]
