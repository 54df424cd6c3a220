"""Opcode constants of the BPF instruction set (``include/uapi/linux/bpf.h``, ``bpf_common.h``).

An opcode byte is ``class | source | op`` for ALU and jumps, and ``class | mode | size``
for loads and stores.  The names drop the kernel's ``BPF_`` prefix (``ALU64``, ``DW``,
``JEQ``); :class:`Reg` holds the registers ``R0`` .. ``R10``.
"""

from __future__ import annotations

import enum

from ebpf.core.errors import AsmError

__all__ = [
    "AsmError",
    "Reg",
    "R0",
    "R1",
    "R2",
    "R3",
    "R4",
    "R5",
    "R6",
    "R7",
    "R8",
    "R9",
    "R10",
    "FP",
    "LD",
    "LDX",
    "ST",
    "STX",
    "ALU",
    "JMP",
    "JMP32",
    "ALU64",
    "W",
    "H",
    "B",
    "DW",
    "IMM",
    "ABS",
    "IND",
    "MEM",
    "MEMSX",
    "ATOMIC",
    "K",
    "X",
    "ADD",
    "SUB",
    "MUL",
    "DIV",
    "OR",
    "AND",
    "LSH",
    "RSH",
    "NEG",
    "MOD",
    "XOR",
    "MOV",
    "ARSH",
    "END",
    "TO_LE",
    "TO_BE",
    "JA",
    "JEQ",
    "JGT",
    "JGE",
    "JSET",
    "JNE",
    "JSGT",
    "JSGE",
    "CALL",
    "EXIT",
    "JLT",
    "JLE",
    "JSLT",
    "JSLE",
    "JCOND",
    "FETCH",
    "XCHG",
    "CMPXCHG",
    "LOAD_ACQ",
    "STORE_REL",
    "PSEUDO_MAP_FD",
    "PSEUDO_MAP_VALUE",
    "PSEUDO_BTF_ID",
    "PSEUDO_FUNC",
    "PSEUDO_MAP_IDX",
    "PSEUDO_MAP_IDX_VALUE",
    "PSEUDO_CALL",
    "PSEUDO_KFUNC_CALL",
    "INSN_SIZE",
    "VALID_OPCODES",
    "SIZE_BYTES",
    "insn_class",
    "is_valid_opcode",
]


class Reg(enum.IntEnum):
    """The eleven BPF registers: R0 return value, R1-R5 arguments, R6-R9 callee saved, R10 frame pointer."""

    R0 = 0
    R1 = 1
    R2 = 2
    R3 = 3
    R4 = 4
    R5 = 5
    R6 = 6
    R7 = 7
    R8 = 8
    R9 = 9
    R10 = 10

    def __repr__(self) -> str:
        return self.name

    __str__ = __repr__


R0 = Reg.R0
R1 = Reg.R1
R2 = Reg.R2
R3 = Reg.R3
R4 = Reg.R4
R5 = Reg.R5
R6 = Reg.R6
R7 = Reg.R7
R8 = Reg.R8
R9 = Reg.R9
R10 = Reg.R10
#: The read-only frame pointer (``R10``).
FP = Reg.R10

INSN_SIZE = 8

# Instruction classes (low three bits).
LD = 0x00
LDX = 0x01
ST = 0x02
STX = 0x03
ALU = 0x04
JMP = 0x05
JMP32 = 0x06
ALU64 = 0x07

# Load/store sizes.
W = 0x00
H = 0x08
B = 0x10
DW = 0x18
#: Bytes moved by each size.
SIZE_BYTES = {B: 1, H: 2, W: 4, DW: 8}

# Load/store modes.
IMM = 0x00
ABS = 0x20
IND = 0x40
MEM = 0x60
MEMSX = 0x80
ATOMIC = 0xC0

# Operand source.
K = 0x00
X = 0x08

# ALU operations.
ADD = 0x00
SUB = 0x10
MUL = 0x20
DIV = 0x30
OR = 0x40
AND = 0x50
LSH = 0x60
RSH = 0x70
NEG = 0x80
MOD = 0x90
XOR = 0xA0
MOV = 0xB0
ARSH = 0xC0
END = 0xD0
TO_LE = 0x00
TO_BE = 0x08

# Jump operations.
JA = 0x00
JEQ = 0x10
JGT = 0x20
JGE = 0x30
JSET = 0x40
JNE = 0x50
JSGT = 0x60
JSGE = 0x70
CALL = 0x80
EXIT = 0x90
JLT = 0xA0
JLE = 0xB0
JSLT = 0xC0
JSLE = 0xD0
JCOND = 0xE0

# Atomic operations (the imm of BPF_STX | BPF_ATOMIC).
FETCH = 0x01
XCHG = 0xE0 | FETCH
CMPXCHG = 0xF0 | FETCH
LOAD_ACQ = 0x100
STORE_REL = 0x110

# src_reg values with a special meaning.
PSEUDO_MAP_FD = 1
PSEUDO_MAP_VALUE = 2
PSEUDO_BTF_ID = 3
PSEUDO_FUNC = 4
PSEUDO_MAP_IDX = 5
PSEUDO_MAP_IDX_VALUE = 6
PSEUDO_CALL = 1
PSEUDO_KFUNC_CALL = 2

_ALU_OPS = (ADD, SUB, MUL, DIV, OR, AND, LSH, RSH, MOD, XOR, MOV, ARSH)
_COND_JUMPS = (JEQ, JGT, JGE, JSET, JNE, JSGT, JSGE, JLT, JLE, JSLT, JSLE)


def _valid_opcodes() -> frozenset[int]:
    codes: set[int] = set()
    for cls in (ALU, ALU64):
        codes.update(cls | src | op for op in _ALU_OPS for src in (K, X))
        codes.add(cls | K | NEG)
    codes.update({ALU | END | TO_LE, ALU | END | TO_BE, ALU64 | END | TO_LE})
    for cls in (JMP, JMP32):
        codes.update(cls | src | op for op in _COND_JUMPS for src in (K, X))
        codes.add(cls | K | JA)
    codes.update({JMP | CALL | K, JMP | CALL | X, JMP | EXIT, JMP | JCOND})
    codes.add(LD | IMM | DW)
    codes.update(LD | mode | size for mode in (ABS, IND) for size in (W, H, B))
    codes.update(LDX | MEM | size for size in (W, H, B, DW))
    codes.update(LDX | MEMSX | size for size in (W, H, B))
    codes.update(ST | MEM | size for size in (W, H, B, DW))
    codes.update(STX | MEM | size for size in (W, H, B, DW))
    codes.update(STX | ATOMIC | size for size in (W, H, B, DW))
    return frozenset(codes)


#: Every opcode the kernel's instruction set defines for programs (the assembler emits these only).
VALID_OPCODES = _valid_opcodes()


def insn_class(code: int) -> int:
    """The instruction class (``LD`` .. ``ALU64``) of opcode ``code``."""
    return code & 0x07


def is_valid_opcode(code: int) -> bool:
    """Whether ``code`` is an opcode of the BPF instruction set."""
    return code in VALID_OPCODES
