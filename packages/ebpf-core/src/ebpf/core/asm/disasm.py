"""The disassembler: instructions to text in ``llvm-objdump -d`` syntax.

``disassemble(code)`` prints immediates in decimal, as ``llvm-objdump --no-print-imm-hex``
(and LLVM <= 14) do; ``hex=True`` prints them as LLVM >= 15 does by default
(``r0 = 0x0``, ``*(u64 *)(r10 - 0x8) = r1``, ``goto +0x3``).  ``objdump=True`` adds
the slot index and the raw bytes, exactly like ``llvm-objdump -d``.  Kernel-only forms
LLVM has no syntax for get a readable one of ours: ``r1 = map[fd:5] ll``,
``r1 = map[fd:5][0]+16 ll`` (map value), ``call pc+3`` (bpf-to-bpf), ``call kfunc(123)``.
An instruction no syntax describes exactly (e.g. reserved fields set) is printed as
``.insn code=0x.. dst=.. src=.. off=.. imm=..``.  :func:`~ebpf.core.asm.assemble`
reads every one of these forms back to the same bytes.
"""

from __future__ import annotations

from collections.abc import Iterable

from ebpf.core.asm import insn as _insn
from ebpf.core.asm.insn import Instruction, Label, iter_slots
from ebpf.core.asm.opcodes import (
    ABS,
    ADD,
    ALU,
    ALU64,
    AND,
    ARSH,
    CALL,
    CMPXCHG,
    DIV,
    DW,
    END,
    EXIT,
    FETCH,
    IND,
    JA,
    JCOND,
    JEQ,
    JGE,
    JGT,
    JLE,
    JLT,
    JMP,
    JMP32,
    JNE,
    JSET,
    JSGE,
    JSGT,
    JSLE,
    JSLT,
    LD,
    LDX,
    LOAD_ACQ,
    LSH,
    MEM,
    MEMSX,
    MOD,
    MOV,
    MUL,
    NEG,
    OR,
    PSEUDO_BTF_ID,
    PSEUDO_CALL,
    PSEUDO_FUNC,
    PSEUDO_KFUNC_CALL,
    PSEUDO_MAP_FD,
    PSEUDO_MAP_IDX,
    PSEUDO_MAP_IDX_VALUE,
    PSEUDO_MAP_VALUE,
    RSH,
    SIZE_BYTES,
    ST,
    STORE_REL,
    SUB,
    XCHG,
    XOR,
    AsmError,
    W,
    X,
)
from ebpf.core.asm.text import parse_line
from ebpf.core.records import replace
from ebpf.core.types import Helper

__all__ = ["disassemble", "format_insn", "format_raw"]

ALU_OPS = {
    ADD: "+=", SUB: "-=", MUL: "*=", DIV: "/=", OR: "|=", AND: "&=", LSH: "<<=", RSH: ">>=",
    MOD: "%=", XOR: "^=", ARSH: "s>>=",
}  # fmt: skip
JMP_OPS = {
    JEQ: "==", JNE: "!=", JGT: ">", JGE: ">=", JLT: "<", JLE: "<=", JSGT: "s>", JSGE: "s>=",
    JSLT: "s<", JSLE: "s<=", JSET: "&",
}  # fmt: skip
ATOMIC_OPS = {ADD: "add", AND: "and", OR: "or", XOR: "xor"}
ATOMIC_SYMBOLS = {ADD: "+=", AND: "&=", OR: "|=", XOR: "^="}


class _Fmt:
    """Number formatting in decimal or LLVM's hex style."""

    def __init__(self, hex_: bool) -> None:
        self.hex = hex_

    def num(self, value: int) -> str:
        return hex(value) if self.hex else str(value)

    def branch(self, value: int, target: str | None = None) -> str:
        if target is not None:
            return target
        sign = "+" if value >= 0 else "-"
        return sign + (hex(abs(value)) if self.hex else str(abs(value)))

    def mem(self, reg: int, off: int) -> str:
        sign = "+" if off >= 0 else "-"
        return f"(r{reg} {sign} {self.num(abs(off))})"


def _signed64(value: int) -> int:
    return value - (1 << 64) if value >= (1 << 63) else value


def _size_name(code: int, signed: bool = False) -> str:
    return f"{'s' if signed else 'u'}{SIZE_BYTES[code & 0x18] * 8}"


def _alu(insn: Instruction, f: _Fmt) -> str | None:
    r = "w" if insn.cls == ALU else "r"
    op = insn.code & 0xF0
    dst = f"{r}{insn.dst}"
    if op == END:
        kind = "bswap" if insn.cls == ALU64 else ("be" if insn.code & X else "le")
        return f"r{insn.dst} = {kind}{insn.imm} r{insn.dst}"
    if op == NEG:
        return f"{dst} = -{dst}"
    if not insn.code & X:
        if op == MOV:
            return f"{dst} = {f.num(insn.imm)}"
        sign = "s" if insn.off == 1 and op in (DIV, MOD) else ""
        return f"{dst} {sign}{ALU_OPS[op]} {f.num(insn.imm)}"
    src = f"{r}{insn.src}"
    if op == MOV:
        if insn.off == 1 and insn.cls == ALU64:
            return f"r{insn.dst} = addr_space_cast(r{insn.src}, {f.num((insn.imm & 0xFFFFFFFF) >> 16)}, {f.num(insn.imm & 0xFFFF)})"
        if insn.off in (8, 16, 32):
            return f"{dst} = (s{insn.off}){src}"
        return f"{dst} = {src}"
    sign = "s" if insn.off == 1 and op in (DIV, MOD) else ""
    return f"{dst} {sign}{ALU_OPS[op]} {src}"


def _jmp(insn: Instruction, f: _Fmt, helper_names: bool) -> str | None:
    op = insn.code & 0xF0
    if op == JA:
        return f"gotol {f.branch(insn.imm, insn.target)}" if insn.cls == JMP32 else f"goto {f.branch(insn.off, insn.target)}"
    if op == EXIT:
        return "exit"
    if op == JCOND:
        return f"may_goto {f.branch(insn.off, insn.target)}"
    if op == CALL:
        if insn.code & X:
            return f"callx r{insn.dst}"
        if insn.src == PSEUDO_CALL:
            return f"call {insn.target}" if insn.target else f"call pc{f.branch(insn.imm)}"
        if insn.src == PSEUDO_KFUNC_CALL:
            extra = f", {insn.off}" if insn.off else ""
            return f"call kfunc({insn.imm}{extra})"
        if helper_names and insn.imm > 0:
            try:
                return f"call {Helper(insn.imm).name.lower()}"
            except ValueError:
                pass
        return f"call {f.num(insn.imm)}"
    r = "w" if insn.cls == JMP32 else "r"
    src = f"{r}{insn.src}" if insn.code & X else f.num(insn.imm)
    return f"if {r}{insn.dst} {JMP_OPS[op]} {src} goto {f.branch(insn.off, insn.target)}"


def _map_text(insn: Instruction) -> str:
    ref = insn.map_ref
    if isinstance(ref, str):
        return f"map[{ref}]"
    fd = insn.resolved_map_fd() if ref is not None else insn.imm
    kind = "idx" if insn.src in (PSEUDO_MAP_IDX, PSEUDO_MAP_IDX_VALUE) else "fd"
    return f"map[{kind}:{fd}]"


def _ld(insn: Instruction, f: _Fmt) -> str | None:
    mode = insn.code & 0xE0
    if mode == ABS:
        return f"r0 = *({_size_name(insn.code)} *)skb[{f.num(insn.imm)}]"
    if mode == IND:
        extra = f" {'+' if insn.imm >= 0 else '-'} {f.num(abs(insn.imm))}" if insn.imm else ""
        return f"r0 = *({_size_name(insn.code)} *)skb[r{insn.src}{extra}]"
    dst = f"r{insn.dst}"
    if insn.src == 0:
        return f"{dst} = {f.num(_signed64(insn.value))} ll"
    if insn.src in (PSEUDO_MAP_FD, PSEUDO_MAP_IDX):
        return f"{dst} = {_map_text(insn)} ll"
    if insn.src in (PSEUDO_MAP_VALUE, PSEUDO_MAP_IDX_VALUE):
        sign = "+" if insn.imm2 >= 0 else "-"
        return f"{dst} = {_map_text(insn)}[0]{sign}{f.num(abs(insn.imm2))} ll"
    if insn.src == PSEUDO_BTF_ID:
        extra = f", {insn.imm2}" if insn.imm2 else ""
        return f"{dst} = btf_id({insn.imm}{extra}) ll"
    if insn.src == PSEUDO_FUNC:
        where = insn.target if insn.target else f"pc{f.branch(insn.imm)}"
        return f"{dst} = func({where}) ll"
    return None


def _atomic(insn: Instruction, f: _Fmt) -> str | None:
    size = insn.code & 0x18
    name = _size_name(insn.code)
    imm = insn.imm
    mem = f.mem(insn.dst, insn.off)
    if imm in (LOAD_ACQ, STORE_REL):
        r = "r" if size == DW else "w"
        if imm == LOAD_ACQ:
            return f"{r}{insn.dst} = load_acquire(({name} *){f.mem(insn.src, insn.off)})"
        return f"store_release(({name} *){mem}, {r}{insn.src})"
    if size not in (W, DW):
        return None
    r = "r" if size == DW else "w"
    base = imm & ~FETCH
    if imm in ATOMIC_SYMBOLS:
        # LLVM writes the old 32-bit "lock +=" (cpu v1) with an r register, and/or/xor (v3) with w.
        lock_r = "r" if size == DW or imm == ADD else "w"
        return f"lock *({name} *){mem} {ATOMIC_SYMBOLS[imm]} {lock_r}{insn.src}"
    if imm & FETCH and base in ATOMIC_OPS:
        return f"{r}{insn.src} = atomic_fetch_{ATOMIC_OPS[base]}(({name} *){mem}, {r}{insn.src})"
    suffix = "_64" if size == DW else "32_32"
    where = f"r{insn.dst} {'+' if insn.off >= 0 else '-'} {f.num(abs(insn.off))}"
    if imm == XCHG:
        return f"{r}{insn.src} = xchg{suffix}({where}, {r}{insn.src})"
    if imm == CMPXCHG:
        return f"{r}0 = cmpxchg{suffix}({where}, {r}0, {r}{insn.src})"
    return None


def format_insn(insn: Instruction, *, hex: bool = False, helper_names: bool = False) -> str:
    """One instruction as ``llvm-objdump`` prints it (``r0 = 0``, ``exit``), or the ``.insn`` raw form.

    :param hex: print immediates and offsets in hex, as LLVM >= 15 does by default.
    :param helper_names: print ``call map_lookup_elem`` instead of ``call 1``.
    :returns: the text, without index or bytes.
    """
    f = _Fmt(hex)
    cls = insn.cls
    text: str | None
    if cls in (ALU, ALU64):
        text = _alu(insn, f)
    elif cls in (JMP, JMP32):
        text = _jmp(insn, f, helper_names)
    elif cls == LD:
        text = _ld(insn, f)
    elif cls == LDX:
        signed = insn.code & 0xE0 == MEMSX
        text = f"r{insn.dst} = *({_size_name(insn.code, signed)} *){f.mem(insn.src, insn.off)}"
    elif cls == ST:
        text = f"*({_size_name(insn.code)} *){f.mem(insn.dst, insn.off)} = {f.num(insn.imm)}"
    elif insn.code & 0xE0 == MEM:
        text = f"*({_size_name(insn.code)} *){f.mem(insn.dst, insn.off)} = r{insn.src}"
    else:
        text = _atomic(insn, f)
    if text is None or not _reads_back(text, insn):
        return format_raw(insn)
    return text


def format_raw(insn: Instruction) -> str:
    """The ``.insn code=0x.. dst=.. src=.. off=.. imm=..`` form that describes any instruction exactly."""
    text = f".insn code=0x{insn.code:02x} dst={insn.dst} src={insn.src} off={insn.off} imm={insn.imm}"
    if insn.is_wide:
        text += f" imm2={insn.imm2}"
    return text


def _reads_back(text: str, insn: Instruction) -> bool:
    """Whether ``text`` parses back to exactly ``insn`` (otherwise the raw form is printed)."""
    labels = frozenset({insn.target}) if insn.target else frozenset()
    try:
        parsed = parse_line(text, labels)
    except AsmError:
        return False
    if not isinstance(parsed, Instruction):
        return False
    if insn.map_ref is not None and not isinstance(insn.map_ref, str):
        insn = replace(insn, map_ref=None, imm=insn.resolved_map_fd() or 0)
    return parsed == insn


def _lenient_slots(data: bytes) -> list[tuple[int, Instruction | None]]:
    if len(data) % 8:
        raise AsmError(f"instruction bytes must be a multiple of 8 long, got {len(data)}")
    out: list[tuple[int, Instruction | None]] = []
    slot = 0
    while slot < len(data) // 8:
        try:
            insn: Instruction | None = Instruction.decode(data, slot)
        except AsmError:
            insn = None
        out.append((slot, insn))
        slot += insn.slots if insn is not None else 1
    return out


def _objdump_line(slot: int, raw: bytes, text: str) -> str:
    return f"{slot:>8}:\t{' '.join(f'{b:02x}' for b in raw)}\t{text}"


def disassemble(
    code: bytes | bytearray | memoryview | Iterable[object],
    *,
    hex: bool = False,
    objdump: bool = False,
    helper_names: bool = False,
    strict: bool = True,
) -> str:
    """Disassemble a program to text, one instruction per line, in ``llvm-objdump -d`` syntax.

    :param code: the program's bytes, or a list of instructions and labels (labels are
        printed as ``name:`` lines and jumps to them by name).
    :param hex: immediates and offsets in hex (``r0 = 0x0``), as LLVM >= 15 prints them.
    :param objdump: prefix each line with the slot index and the raw bytes, as ``llvm-objdump -d``.
    :param helper_names: ``call map_lookup_elem`` instead of ``call 1``.
    :param strict: when False, a slot that is not a valid instruction (e.g. a kernel-internal
        opcode in a loaded program's xlated code) prints as ``<unknown>``, as llvm-objdump does,
        instead of raising.
    :returns: the text; :func:`~ebpf.core.asm.assemble` turns it back into the same bytes.
    :raises AsmError: for bytes that are not valid instructions (odd length; bad opcode when strict).
    """
    if isinstance(code, (bytes, bytearray, memoryview)):
        data = bytes(code)
        decoded: list[tuple[int, Instruction | None]] = list(iter_slots(data)) if strict else _lenient_slots(data)
        lines = []
        for slot, insn in decoded:
            width = insn.slots if insn is not None else 1
            text = format_insn(insn, hex=hex, helper_names=helper_names) if insn is not None else "<unknown>"
            if objdump:
                text = _objdump_line(slot, data[slot * 8 : (slot + width) * 8], text)
            lines.append(text)
        return "\n".join(lines) + ("\n" if lines else "")
    if objdump:
        raise AsmError("objdump lines need the assembled bytes (ebpf.core.asm.disassemble assembles first)")
    out = []
    for item in code:
        if not isinstance(item, (Instruction, Label)):
            raise AsmError(f"not an instruction or a label: {item!r} (ebpf.core.asm.disassemble takes any program)")
        if isinstance(item, Label):
            out.append(f"{item.name}:")
        else:
            out.append(format_insn(item, hex=hex, helper_names=helper_names))
    return "\n".join(out) + ("\n" if out else "")


_insn.set_formatter(format_insn)  # str(Instruction) prints through this module, which sits above insn
