"""The text assembler: ``llvm-objdump -d`` syntax back to instructions.

One instruction per line.  A line may carry ``llvm-objdump``'s slot index and raw bytes
(``  3:\t07 02 00 00 fc ff ff ff\tr2 += -4``), a symbolic suffix (``goto +3 <LBB0_2>``)
and a comment (``;``, ``#`` or ``//``).  ``name:`` defines a label, and so does an
objdump symbol line (``0000000000000000 <func>:``).  Numbers are decimal or ``0x`` hex.
A line whose text is ``<unknown>`` is taken from its raw bytes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from ebpf.core.asm.insn import Instruction, Label
from ebpf.core.asm.jumps import helper_id
from ebpf.core.asm.opcodes import (
    ABS,
    ADD,
    ALU,
    ALU64,
    AND,
    ARSH,
    ATOMIC,
    CALL,
    CMPXCHG,
    DIV,
    DW,
    END,
    EXIT,
    FETCH,
    IMM,
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
    ST,
    STORE_REL,
    STX,
    SUB,
    TO_BE,
    TO_LE,
    XCHG,
    XOR,
    AsmError,
    B,
    H,
    K,
    W,
    X,
)
from ebpf.core.records import replace

__all__ = ["parse", "parse_line", "scan_labels"]

Item = Instruction | Label

_N = r"[+-]? ?(?:0[xX][0-9a-fA-F]+|\d+)"
_R = r"([rw])(10|[0-9])(?![\w])"
_NAME = r"[A-Za-z_.$][\w.$]*"
_SZ = r"\( ?(u8|u16|u32|u64) ?\* ?\)"
_MEM = rf"\( ?r(10|[0-9]) ?([+-]) ?({_N}) ?\)"
_TGT = rf"({_N}|{_NAME})"

_SIZES = {"u8": B, "u16": H, "u32": W, "u64": DW, "s8": B, "s16": H, "s32": W}
_ALU = {
    "+": ADD, "-": SUB, "*": MUL, "/": DIV, "s/": DIV, "%": MOD, "s%": MOD, "|": OR, "&": AND,
    "^": XOR, "<<": LSH, ">>": RSH, "s>>": ARSH,
}  # fmt: skip
_JMP = {
    "==": JEQ, "!=": JNE, ">": JGT, ">=": JGE, "<": JLT, "<=": JLE, "s>": JSGT, "s>=": JSGE,
    "s<": JSLT, "s<=": JSLE, "&": JSET,
}  # fmt: skip
_LOCK = {"+": ADD, "&": AND, "|": OR, "^": XOR}
_FETCH = {"add": ADD, "and": AND, "or": OR, "xor": XOR}


def _re(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


_SYMBOL = _re(rf"[0-9a-fA-F]+ <({_NAME})>:")
_LABEL = _re(rf"({_NAME}):(?: (.*))?")
_PREFIX = _re(r"(\d+):\s*((?:[0-9a-fA-F]{2}(?:\s+|$))*)(.*)")
_SKIP = _re(r"(?:\S+:\s+file format .*|Disassembly of section .*|[0-9a-fA-F]+:\s+R_BPF\w*.*)")
_SUFFIX = _re(r"\s*<[^<>]*>\s*$")

_EXIT = _re("exit")
_CALLX = _re(rf"callx {_R}")
_CALL = _re(r"call (.+)")
_KFUNC = _re(rf"kfunc\( ?({_N})(?: ?, ?({_N}))? ?\)")
_PC = _re(r"pc ?([+-] ?(?:0[xX][0-9a-fA-F]+|\d+))")
_GOTO = _re(rf"(goto|gotol|may_goto) {_TGT}")
_IF = _re(rf"if {_R} ?(==|!=|s>=|s<=|s>|s<|>=|<=|>|<|&) ?(?:{_R}|({_N})) goto {_TGT}")
_LOCKOP = _re(rf"lock \* ?{_SZ} ?{_MEM} ?([+&|^])= ?{_R}")
_STREL = _re(rf"store_release\( ?{_SZ} ?{_MEM} ?, ?{_R} ?\)")
_STORE = _re(rf"\* ?{_SZ} ?{_MEM} ?= ?(?:{_R}|({_N}))")
_ALUOP = _re(rf"{_R} ?(s>>|<<|>>|s/|s%|[-+*/%|&^])= ?(?:{_R}|({_N}))")
_ASSIGN = _re(rf"{_R} ?= ?(.+)")
_RAW = _re(r"\.insn (.*)")

# right-hand sides of "reg = ..."
_NEG = _re(rf"- ?{_R}")
_MOVSX = _re(rf"\( ?(s8|s16|s32) ?\) ?{_R}")
_SWAP = _re(rf"(be|le|bswap)(16|32|64) {_R}")
_IMM64 = _re(rf"({_N}) ll")
_MAP = _re(rf"map\[(?:(fd|idx):({_N})|({_NAME}))\](?:\[0\] ?([+-]) ?({_N}))? ll")
_BTF = _re(rf"btf_id\( ?({_N})(?: ?, ?({_N}))? ?\) ll")
_FUNC = _re(rf"func\( ?(?:pc ?([+-] ?(?:0[xX][0-9a-fA-F]+|\d+))|({_NAME})) ?\) ll")
_LOAD = _re(rf"\* ?\( ?(u8|u16|u32|u64|s8|s16|s32) ?\* ?\) ?{_MEM}")
_SKB = _re(rf"\* ?{_SZ} ?skb\[ ?(?:r(10|[0-9])(?: ?([+-]) ?({_N}))?|({_N})) ?\]")
_AFETCH = _re(rf"atomic_fetch_(add|and|or|xor)\( ?{_SZ} ?{_MEM} ?, ?{_R} ?\)")
_XCHG = _re(rf"(xchg_64|xchg32_32)\( ?r(10|[0-9]) ?([+-]) ?({_N}) ?, ?{_R} ?\)")
_CMPXCHG = _re(rf"(cmpxchg_64|cmpxchg32_32)\( ?r(10|[0-9]) ?([+-]) ?({_N}) ?, ?{_R} ?, ?{_R} ?\)")
_LOADACQ = _re(rf"load_acquire\( ?{_SZ} ?{_MEM} ?\)")
_ASCAST = _re(rf"addr_space_cast\( ?{_R} ?, ?({_N}) ?, ?({_N}) ?\)")
_MOVREG = _re(_R)
_MOVIMM = _re(_N)


def _int(text: str) -> int:
    text = text.replace(" ", "")
    sign = -1 if text.startswith("-") else 1
    body = text.lstrip("+-")
    return sign * (int(body, 16) if body[:2].lower() == "0x" else int(body, 10))


def _off(sign: str, value: str) -> int:
    return -_int(value) if sign == "-" else _int(value)


def _target(text: str) -> tuple[int, str | None]:
    if re.fullmatch(_N, text):
        return _int(text), None
    return 0, text


def _same_width(*letters: str) -> str:
    if len(set(letters)) != 1:
        raise AsmError("mixed 32-bit (w) and 64-bit (r) registers")
    return letters[0]


def _clean(line: str) -> tuple[str, bytes | None]:
    """Strip comments, objdump's index/bytes and symbolic suffixes; return the text and the raw bytes."""
    for marker in (";", "#", "//"):
        cut = line.find(marker)
        if cut >= 0:
            line = line[:cut]
    line = line.strip()
    raw = None
    m = _PREFIX.fullmatch(line)
    if m:
        hexbytes = m.group(2).split()
        if hexbytes:
            if len(hexbytes) not in (8, 16):
                raise AsmError(f"expected 8 or 16 instruction bytes, got {len(hexbytes)}")
            raw = bytes(int(b, 16) for b in hexbytes)
        line = m.group(3).strip()
    unknown = line == "<unknown>"
    line = _SUFFIX.sub("", line) if not unknown else ""
    return re.sub(r"\s+", " ", line).strip(), raw


def scan_labels(text: str) -> set[str]:
    """The label names a text program defines (``name:`` lines and objdump symbol lines)."""
    names = set()
    for line in text.splitlines():
        stripped = line.strip()
        m = _SYMBOL.fullmatch(stripped) or _LABEL.fullmatch(stripped.split(";")[0].strip())
        if m:
            names.add(m.group(1))
    return names


def parse(text: str, labels: Iterable[str] = ()) -> list[Item]:
    """Parse a text program into instructions and labels.

    :param text: the program, one instruction per line (see the module docstring).
    :param labels: label names defined elsewhere (so ``call name`` means a subprogram, not a helper).
    :returns: the instructions and labels, in order (labels stay symbolic until assembly).
    :raises AsmError: naming the line that cannot be parsed.
    """
    known = frozenset(labels) | scan_labels(text)
    items: list[Item] = []
    for number, line in enumerate(text.splitlines(), 1):
        try:
            items.extend(_parse(line, known))
        except AsmError as exc:
            raise AsmError(f"line {number}: {exc} in {line.strip()!r}") from None
    return items


def parse_line(line: str, labels: Iterable[str] = ()) -> Item | None:
    """Parse one line: an instruction, a label, or None for a blank/comment line.

    :raises AsmError: when the line is not an instruction.
    """
    items = _parse(line, frozenset(labels))
    if len(items) > 1:
        raise AsmError("expected one item per line")
    return items[0] if items else None


def _parse(line: str, labels: frozenset[str]) -> list[Item]:
    stripped = line.strip()
    m = _SYMBOL.fullmatch(stripped)
    if m:
        return [Label(m.group(1))]
    if _SKIP.fullmatch(stripped):
        return []
    text, raw = _clean(line)
    if not text:
        return [Instruction.decode(raw)] if raw is not None else []
    m = _LABEL.fullmatch(text)
    if m:
        rest = _parse(m.group(2), labels) if m.group(2) else []
        return [Label(m.group(1)), *rest]
    insn = _instruction(text, labels)
    if raw is not None and insn.code in (JMP | CALL, LD | IMM | DW) and insn.target is None:
        # llvm-objdump does not show src_reg of calls and ld_imm64 (``call 3`` may be a
        # bpf-to-bpf call, ``r1 = 0 ll`` a map fd); the line's bytes say which.
        decoded = Instruction.decode(raw)
        if decoded != insn and replace(decoded, src=insn.src) == insn:
            return [decoded]
    return [insn]


def _instruction(s: str, labels: frozenset[str]) -> Instruction:
    if _EXIT.fullmatch(s):
        return Instruction(JMP | EXIT)
    if m := _CALLX.fullmatch(s):
        return Instruction(JMP | CALL | X, int(m.group(2)))
    if m := _CALL.fullmatch(s):
        return _call(m.group(1), labels)
    if m := _GOTO.fullmatch(s):
        delta, name = _target(m.group(2))
        if m.group(1) == "gotol":
            return Instruction(JMP32 | JA, 0, 0, 0, delta, target=name)
        return Instruction(JMP | (JCOND if m.group(1) == "may_goto" else JA), 0, 0, delta, 0, target=name)
    if m := _IF.fullmatch(s):
        return _cond_jump(m)
    if m := _LOCKOP.fullmatch(s):
        size, n, sign, off, op, letter, src = m.groups()
        if _SIZES[size] not in (W, DW) or (size == "u64" and letter == "w"):
            raise AsmError("atomic operations work on u32 (w/r) or u64 (r)")
        return Instruction(STX | ATOMIC | _SIZES[size], int(n), int(src), _off(sign, off), _LOCK[op])
    if m := _STREL.fullmatch(s):
        size, n, sign, off, letter, src = m.groups()
        return Instruction(STX | ATOMIC | _SIZES[size], int(n), int(src), _off(sign, off), STORE_REL)
    if m := _STORE.fullmatch(s):
        size, n, sign, off, letter, src, imm = m.groups()
        if letter == "w" and size == "u64":
            raise AsmError("a 64-bit store needs an r register")
        if src is not None:
            return Instruction(STX | MEM | _SIZES[size], int(n), int(src), _off(sign, off))
        return Instruction(ST | MEM | _SIZES[size], int(n), 0, _off(sign, off), _int(imm))
    if m := _ALUOP.fullmatch(s):
        letter, dst, op, sletter, src, imm = m.groups()
        cls = ALU if letter == "w" else ALU64
        signed = 1 if op in ("s/", "s%") else 0
        if src is not None:
            _same_width(letter, sletter)
            return Instruction(cls | X | _ALU[op], int(dst), int(src), signed)
        return Instruction(cls | K | _ALU[op], int(dst), 0, signed, _int(imm))
    if m := _ASSIGN.fullmatch(s):
        return _assign(m.group(1), int(m.group(2)), m.group(3), labels)
    if m := _RAW.fullmatch(s):
        return _raw(m.group(1))
    bad = re.search(r"\b[rw](1[1-9]|[2-9]\d)\b", s)
    if bad:
        raise AsmError(f"register {bad.group(0)} out of range (R0..R10)")
    raise AsmError("cannot parse instruction")


def _call(arg: str, labels: frozenset[str]) -> Instruction:
    if m := _PC.fullmatch(arg):
        return Instruction(JMP | CALL, 0, PSEUDO_CALL, 0, _int(m.group(1)))
    if m := _KFUNC.fullmatch(arg):
        return Instruction(JMP | CALL, 0, PSEUDO_KFUNC_CALL, _int(m.group(2) or "0"), _int(m.group(1)))
    if re.fullmatch(_N, arg):
        return Instruction(JMP | CALL, 0, 0, 0, _int(arg))
    if arg in labels:
        return Instruction(JMP | CALL, 0, PSEUDO_CALL, 0, 0, target=arg)
    if not re.fullmatch(_NAME, arg):
        raise AsmError(f"bad call target {arg!r}")
    try:
        return Instruction(JMP | CALL, 0, 0, 0, helper_id(arg))
    except AsmError as exc:
        raise AsmError(f"{exc} (and no label {arg!r} is defined)") from None


def _cond_jump(m: re.Match[str]) -> Instruction:
    letter, dst, op, sletter, src, imm, tgt = m.groups()
    cls = JMP32 if letter == "w" else JMP
    off, name = _target(tgt)
    if src is not None:
        _same_width(letter, sletter)
        return Instruction(cls | X | _JMP[op], int(dst), int(src), off, 0, target=name)
    return Instruction(cls | K | _JMP[op], int(dst), 0, off, _int(imm), target=name)


def _assign(letter: str, dst: int, rhs: str, labels: frozenset[str]) -> Instruction:
    cls = ALU if letter == "w" else ALU64
    if m := _NEG.fullmatch(rhs):
        _same_width(letter, m.group(1))
        if int(m.group(2)) != dst:
            raise AsmError("negation works in place: write rN = -rN")
        return Instruction(cls | K | NEG, dst)
    if m := _MOVSX.fullmatch(rhs):
        _same_width(letter, m.group(2))
        bits = int(m.group(1)[1:])
        if cls == ALU and bits == 32:
            raise AsmError("w registers sign-extend from s8 or s16 only")
        return Instruction(cls | X | MOV, dst, int(m.group(3)), bits)
    if m := _SWAP.fullmatch(rhs):
        kind, width, _letter, src = m.groups()
        if int(src) != dst:
            raise AsmError("byte swaps work in place: write rN = be16 rN")
        if kind == "bswap":
            return Instruction(ALU64 | TO_LE | END, dst, 0, 0, int(width))
        return Instruction(ALU | (TO_BE if kind == "be" else TO_LE) | END, dst, 0, 0, int(width))
    if m := _ASCAST.fullmatch(rhs):
        dst_as, src_as = _int(m.group(3)), _int(m.group(4))
        if not (0 <= dst_as <= 0xFFFF and 0 <= src_as <= 0xFFFF):
            raise AsmError("address spaces must fit in 16 bits")
        return Instruction(ALU64 | X | MOV, dst, int(m.group(2)), 1, (dst_as << 16) | src_as)
    if m := _MOVREG.fullmatch(rhs):
        _same_width(letter, m.group(1))
        return Instruction(cls | X | MOV, dst, int(m.group(2)))
    if m := _MOVIMM.fullmatch(rhs):
        return Instruction(cls | K | MOV, dst, 0, 0, _int(rhs))
    if rhs.endswith("ll"):
        if letter != "r":
            raise AsmError("ld_imm64 loads an r register")
        return _ld_imm64(dst, rhs, labels)
    return _load(letter, dst, rhs)


def _ld_imm64(dst: int, rhs: str, labels: frozenset[str]) -> Instruction:
    code = LD | IMM | DW
    if m := _IMM64.fullmatch(rhs):
        value = _int(m.group(1))
        if not -(1 << 63) <= value < (1 << 64):
            raise AsmError(f"ld_imm64 value {value} does not fit in 64 bits")
        value &= (1 << 64) - 1
        return Instruction(code, dst, 0, 0, value & 0xFFFFFFFF, value >> 32)
    if m := _MAP.fullmatch(rhs):
        kind, number, name, sign, offset = m.groups()
        value = sign is not None
        imm2 = _off(sign, offset) if value else 0
        if kind == "idx":
            src = PSEUDO_MAP_IDX_VALUE if value else PSEUDO_MAP_IDX
        else:
            src = PSEUDO_MAP_VALUE if value else PSEUDO_MAP_FD
        if name is not None:
            return Instruction(code, dst, src, 0, 0, imm2, map_ref=name)
        return Instruction(code, dst, src, 0, _int(number), imm2)
    if m := _BTF.fullmatch(rhs):
        return Instruction(code, dst, PSEUDO_BTF_ID, 0, _int(m.group(1)), _int(m.group(2) or "0"))
    if m := _FUNC.fullmatch(rhs):
        if m.group(2) is not None:
            return Instruction(code, dst, PSEUDO_FUNC, 0, 0, target=m.group(2))
        return Instruction(code, dst, PSEUDO_FUNC, 0, _int(m.group(1)))
    raise AsmError("cannot parse ld_imm64")


def _load(letter: str, dst: int, rhs: str) -> Instruction:
    if m := _LOAD.fullmatch(rhs):
        size, n, sign, off = m.groups()
        if letter == "w" and size == "u64":
            raise AsmError("a 64-bit load needs an r register")
        mode = MEMSX if size.startswith("s") else MEM
        return Instruction(LDX | mode | _SIZES[size], dst, int(n), _off(sign, off))
    if m := _SKB.fullmatch(rhs):
        size, reg, sign, off, imm = m.groups()
        if dst != 0 or letter != "r":
            raise AsmError("packet loads (skb[...]) always load r0")
        if size == "u64":
            raise AsmError("packet loads read u8, u16 or u32")
        if reg is not None:
            return Instruction(LD | IND | _SIZES[size], 0, int(reg), 0, _off(sign, off) if sign else 0)
        return Instruction(LD | ABS | _SIZES[size], 0, 0, 0, _int(imm))
    if m := _AFETCH.fullmatch(rhs):
        op, size, n, sign, off, sletter, src = m.groups()
        if int(src) != dst or _SIZES[size] not in (W, DW):
            raise AsmError("atomic_fetch_* returns into its value register, on u32 or u64")
        return Instruction(STX | ATOMIC | _SIZES[size], int(n), int(src), _off(sign, off), _FETCH[op] | FETCH)
    if m := _XCHG.fullmatch(rhs):
        kind, n, sign, off, sletter, src = m.groups()
        size = DW if kind == "xchg_64" else W
        if int(src) != dst or _same_width(letter, sletter) != ("r" if size == DW else "w"):
            raise AsmError("xchg_64 uses r registers, xchg32_32 w registers, returning into the value register")
        return Instruction(STX | ATOMIC | size, int(n), int(src), _off(sign, off), XCHG)
    if m := _CMPXCHG.fullmatch(rhs):
        kind, n, sign, off, l1, r1, l2, src = m.groups()
        size = DW if kind == "cmpxchg_64" else W
        if dst != 0 or r1 != "0" or _same_width(letter, l1, l2) != ("r" if size == DW else "w"):
            raise AsmError("cmpxchg compares with and returns into r0 (w0 for cmpxchg32_32)")
        return Instruction(STX | ATOMIC | size, int(n), int(src), _off(sign, off), CMPXCHG)
    if m := _LOADACQ.fullmatch(rhs):
        size, n, sign, off = m.groups()
        return Instruction(STX | ATOMIC | _SIZES[size], dst, int(n), _off(sign, off), LOAD_ACQ)
    raise AsmError("cannot parse instruction")


def _raw(fields: str) -> Instruction:
    values: dict[str, int] = {}
    for part in fields.replace(",", " ").split():
        key, sep, value = part.partition("=")
        if not sep or key not in ("code", "dst", "src", "off", "imm", "imm2") or not re.fullmatch(_N, value):
            raise AsmError(f"bad .insn field {part!r} (code=, dst=, src=, off=, imm=, imm2=)")
        values[key] = _int(value)
    if "code" not in values:
        raise AsmError(".insn needs code=")
    return Instruction(
        values["code"], values.get("dst", 0), values.get("src", 0), values.get("off", 0),
        values.get("imm", 0), values.get("imm2", 0),
    )  # fmt: skip
