"""Jump and call constructors: ``BPF_JMP_IMM``/``REG``, ``BPF_JMP32_*``, ``BPF_EMIT_CALL``, ``BPF_EXIT_INSN``."""

from __future__ import annotations

from ebpf.core.asm._common import _JMP_NAMES, Operand, Target, _op, _reg, _target
from ebpf.core.asm.insn import Instruction
from ebpf.core.asm.opcodes import (
    CALL,
    EXIT,
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
    PSEUDO_CALL,
    PSEUDO_KFUNC_CALL,
    AsmError,
    K,
    Reg,
    X,
)
from ebpf.core.types import Helper

# ---- jumps and calls -------------------------------------------------------------------------------


def jmp_imm(op: int | str, dst: Operand, imm: int, target: Target) -> Instruction:
    """``BPF_JMP_IMM(OP, DST, IMM, OFF)``: ``if dst op imm goto target`` (64-bit compare)."""
    off, name = _target(target)
    return Instruction(JMP | K | _op(op, _JMP_NAMES, "jump"), _reg(dst), 0, off, imm, target=name)


def jmp_reg(op: int | str, dst: Operand, src: Operand, target: Target) -> Instruction:
    """``BPF_JMP_REG(OP, DST, SRC, OFF)``: ``if dst op src goto target`` (64-bit compare)."""
    off, name = _target(target)
    return Instruction(JMP | X | _op(op, _JMP_NAMES, "jump"), _reg(dst), _reg(src), off, 0, target=name)


def jmp32_imm(op: int | str, dst: Operand, imm: int, target: Target) -> Instruction:
    """``BPF_JMP32_IMM(OP, DST, IMM, OFF)``: ``if wdst op imm goto target`` (32-bit compare)."""
    off, name = _target(target)
    return Instruction(JMP32 | K | _op(op, _JMP_NAMES, "jump"), _reg(dst), 0, off, imm, target=name)


def jmp32_reg(op: int | str, dst: Operand, src: Operand, target: Target) -> Instruction:
    """``BPF_JMP32_REG(OP, DST, SRC, OFF)``: ``if wdst op wsrc goto target`` (32-bit compare)."""
    off, name = _target(target)
    return Instruction(JMP32 | X | _op(op, _JMP_NAMES, "jump"), _reg(dst), _reg(src), off, 0, target=name)


def _jump(cls: int, op: int, dst: Operand, src: Operand, target: Target) -> Instruction:
    off, name = _target(target)
    if isinstance(src, Reg):
        return Instruction(cls | X | op, _reg(dst), int(src), off, 0, target=name)
    if isinstance(src, bool) or not isinstance(src, int):
        raise AsmError(f"comparison operand must be a register (R0..R10) or an int immediate, not {src!r}")
    return Instruction(cls | K | op, _reg(dst), 0, off, src, target=name)


def jeq(dst: Operand, src: Operand, target: Target) -> Instruction:
    """``if dst == src goto target``."""
    return _jump(JMP, JEQ, dst, src, target)


def jne(dst: Operand, src: Operand, target: Target) -> Instruction:
    """``if dst != src goto target``."""
    return _jump(JMP, JNE, dst, src, target)


def jgt(dst: Operand, src: Operand, target: Target) -> Instruction:
    """``if dst > src goto target`` (unsigned)."""
    return _jump(JMP, JGT, dst, src, target)


def jge(dst: Operand, src: Operand, target: Target) -> Instruction:
    """``if dst >= src goto target`` (unsigned)."""
    return _jump(JMP, JGE, dst, src, target)


def jlt(dst: Operand, src: Operand, target: Target) -> Instruction:
    """``if dst < src goto target`` (unsigned)."""
    return _jump(JMP, JLT, dst, src, target)


def jle(dst: Operand, src: Operand, target: Target) -> Instruction:
    """``if dst <= src goto target`` (unsigned)."""
    return _jump(JMP, JLE, dst, src, target)


def jsgt(dst: Operand, src: Operand, target: Target) -> Instruction:
    """``if dst s> src goto target`` (signed)."""
    return _jump(JMP, JSGT, dst, src, target)


def jsge(dst: Operand, src: Operand, target: Target) -> Instruction:
    """``if dst s>= src goto target`` (signed)."""
    return _jump(JMP, JSGE, dst, src, target)


def jslt(dst: Operand, src: Operand, target: Target) -> Instruction:
    """``if dst s< src goto target`` (signed)."""
    return _jump(JMP, JSLT, dst, src, target)


def jsle(dst: Operand, src: Operand, target: Target) -> Instruction:
    """``if dst s<= src goto target`` (signed)."""
    return _jump(JMP, JSLE, dst, src, target)


def jset(dst: Operand, src: Operand, target: Target) -> Instruction:
    """``if dst & src goto target``."""
    return _jump(JMP, JSET, dst, src, target)


def jeq32(dst: Operand, src: Operand, target: Target) -> Instruction:
    """``if wdst == src goto target``."""
    return _jump(JMP32, JEQ, dst, src, target)


def jne32(dst: Operand, src: Operand, target: Target) -> Instruction:
    """``if wdst != src goto target``."""
    return _jump(JMP32, JNE, dst, src, target)


def jgt32(dst: Operand, src: Operand, target: Target) -> Instruction:
    """``if wdst > src goto target`` (unsigned)."""
    return _jump(JMP32, JGT, dst, src, target)


def jge32(dst: Operand, src: Operand, target: Target) -> Instruction:
    """``if wdst >= src goto target`` (unsigned)."""
    return _jump(JMP32, JGE, dst, src, target)


def jlt32(dst: Operand, src: Operand, target: Target) -> Instruction:
    """``if wdst < src goto target`` (unsigned)."""
    return _jump(JMP32, JLT, dst, src, target)


def jle32(dst: Operand, src: Operand, target: Target) -> Instruction:
    """``if wdst <= src goto target`` (unsigned)."""
    return _jump(JMP32, JLE, dst, src, target)


def jsgt32(dst: Operand, src: Operand, target: Target) -> Instruction:
    """``if wdst s> src goto target`` (signed)."""
    return _jump(JMP32, JSGT, dst, src, target)


def jsge32(dst: Operand, src: Operand, target: Target) -> Instruction:
    """``if wdst s>= src goto target`` (signed)."""
    return _jump(JMP32, JSGE, dst, src, target)


def jslt32(dst: Operand, src: Operand, target: Target) -> Instruction:
    """``if wdst s< src goto target`` (signed)."""
    return _jump(JMP32, JSLT, dst, src, target)


def jsle32(dst: Operand, src: Operand, target: Target) -> Instruction:
    """``if wdst s<= src goto target`` (signed)."""
    return _jump(JMP32, JSLE, dst, src, target)


def jset32(dst: Operand, src: Operand, target: Target) -> Instruction:
    """``if wdst & src goto target``."""
    return _jump(JMP32, JSET, dst, src, target)


def jmp_a(target: Target) -> Instruction:
    """``BPF_JMP_A(OFF)``: ``goto target`` (16-bit offset)."""
    off, name = _target(target)
    return Instruction(JMP | JA, 0, 0, off, 0, target=name)


#: ``goto target``: same as :func:`jmp_a`.
ja = jmp_a


def gotol(target: Target) -> Instruction:
    """``BPF_JMP32_A(IMM)``: ``gotol target``, the long jump with a 32-bit offset in imm. Requires Linux >= 6.6."""
    off, name = _target(target)
    return Instruction(JMP32 | JA, 0, 0, 0, off, target=name)


def may_goto(target: Target) -> Instruction:
    """``may_goto target`` (``JMP | JCOND``): a loop exit the verifier may take. Requires Linux >= 6.9."""
    off, name = _target(target)
    return Instruction(JMP | JCOND, 0, 0, off, 0, target=name)


def helper_id(helper: int | str | Helper) -> int:
    """The id of a helper given by number, :class:`~ebpf.core.types.Helper` or name (``"map_lookup_elem"``).

    :raises AsmError: for an unknown name, listing the closest known names.
    """
    if isinstance(helper, Helper):
        return int(helper)
    if isinstance(helper, int) and not isinstance(helper, bool):
        return helper
    if isinstance(helper, str):
        key = helper.strip().lower().removeprefix("bpf_")
        member = Helper.__members__.get(key.upper())
        if member is not None:
            return int(member)
        names = [m.lower() for m in Helper.__members__]
        import difflib  # deferred: start-up time (only a misspelt helper name needs it)

        close = difflib.get_close_matches(key, names, n=5, cutoff=0.6)
        hint = f"; did you mean: {', '.join(close)}?" if close else ""
        raise AsmError(f"unknown helper {helper!r}{hint}")
    raise AsmError(f"a helper is a name, an int or a Helper, not {helper!r}")


def emit_call(helper: int | str | Helper) -> Instruction:
    """``BPF_EMIT_CALL(FUNC)``: call a kernel helper by id, :class:`Helper` or name."""
    return Instruction(JMP | CALL, 0, 0, 0, helper_id(helper))


def call(helper: int | str | Helper) -> Instruction:
    """Call a kernel helper: ``call("map_lookup_elem")``, ``call(Helper.KTIME_GET_NS)`` or ``call(5)``.

    :raises AsmError: for an unknown helper name (the message lists close matches).
    """
    return emit_call(helper)


def call_rel(target: Target) -> Instruction:
    """``BPF_CALL_REL(IMM)``: a bpf-to-bpf call of the subprogram at a label (src = BPF_PSEUDO_CALL)."""
    off, name = _target(target)
    return Instruction(JMP | CALL, 0, PSEUDO_CALL, 0, off, target=name)


#: Call a labelled subprogram: same as :func:`call_rel`.
call_subprog = call_rel


def kfunc_call(btf_id: int, off: int = 0) -> Instruction:
    """``BPF_CALL_KFUNC(OFF, IMM)``: call kernel function ``btf_id`` (``off`` = index of its BTF fd in fd_array)."""
    return Instruction(JMP | CALL, 0, PSEUDO_KFUNC_CALL, off, btf_id)


def callx(reg: Operand) -> Instruction:
    """``callx reg``: indirect call through a register (``JMP | CALL | X``)."""
    return Instruction(JMP | CALL | X, _reg(reg))


def exit_insn() -> Instruction:
    """``BPF_EXIT_INSN()``: return ``R0`` to the caller."""
    return Instruction(JMP | EXIT)


#: ``exit``: same as :func:`exit_insn` (the trailing underscore avoids the builtin).
exit_ = exit_insn


