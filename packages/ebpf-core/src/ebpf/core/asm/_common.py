"""Argument checking shared by the instruction constructors."""

from __future__ import annotations

from ebpf.core.asm.insn import Label
from ebpf.core.asm.opcodes import (
    ADD,
    AND,
    ARSH,
    DIV,
    DW,
    JEQ,
    JGE,
    JGT,
    JLE,
    JLT,
    JNE,
    JSET,
    JSGE,
    JSGT,
    JSLE,
    JSLT,
    LSH,
    MOD,
    MOV,
    MUL,
    OR,
    RSH,
    SUB,
    XOR,
    AsmError,
    B,
    H,
    Reg,
    W,
)

Target = int | str | Label
Operand = Reg | int

_SIZES = {"b": B, "u8": B, "h": H, "u16": H, "w": W, "u32": W, "dw": DW, "u64": DW}
_ALU_NAMES = {
    "add": ADD, "sub": SUB, "mul": MUL, "div": DIV, "or": OR, "and": AND, "lsh": LSH,
    "rsh": RSH, "mod": MOD, "xor": XOR, "mov": MOV, "arsh": ARSH,
}  # fmt: skip
_JMP_NAMES = {
    "jeq": JEQ, "jgt": JGT, "jge": JGE, "jset": JSET, "jne": JNE, "jsgt": JSGT, "jsge": JSGE,
    "jlt": JLT, "jle": JLE, "jslt": JSLT, "jsle": JSLE,
}  # fmt: skip


def _reg(value: object, what: str = "register") -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 10:
        raise AsmError(f"{what} {value!r} out of range (R0..R10)")
    return int(value)


def _size(size: object) -> int:
    if isinstance(size, str):
        key = size.lower().removeprefix("bpf_")
        if key in _SIZES:
            return _SIZES[key]
    elif isinstance(size, int) and size in (B, H, W, DW):
        return size
    raise AsmError(f"invalid size {size!r}: use B, H, W or DW")


def _op(op: object, names: dict[str, int], what: str) -> int:
    if isinstance(op, str) and op.lower().removeprefix("bpf_") in names:
        return names[op.lower().removeprefix("bpf_")]
    if isinstance(op, int) and op in names.values():
        return op
    raise AsmError(f"invalid {what} operation {op!r}; expected one of: {', '.join(names)}")


def _target(target: Target) -> tuple[int, str | None]:
    if isinstance(target, Label):
        return 0, target.name
    if isinstance(target, str):
        if not target:
            raise AsmError("empty label name")
        return 0, target
    if isinstance(target, int) and not isinstance(target, bool):
        return target, None
    raise AsmError(f"a jump target is an int offset or a label name, not {target!r}")
