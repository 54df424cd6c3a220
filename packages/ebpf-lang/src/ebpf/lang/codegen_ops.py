"""Code for expressions: arithmetic, loads, helper calls, map operations and packet headers."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ebpf.core.asm import (
    Reg,
    alu32_imm,
    alu32_reg,
    alu64_imm,
    alu64_reg,
    endian,
    jmp_reg,
    ldx_mem,
    mov64,
    neg32,
    neg64,
    st_mem,
    stx_mem,
)
from ebpf.core.asm.opcodes import AND, ARSH, JGT, JLE, LSH, RSH, TO_BE, XOR
from ebpf.lang import ir
from ebpf.lang.opt import LIT
from ebpf.lang.types import IntType, LangType, i64, u64

if TYPE_CHECKING:
    from ebpf.lang.codegen import Codegen

__all__ = ["value_of", "has_call", "mentions", "max_value", "header"]

_SCRATCH = {Reg.R0, Reg.R1, Reg.R2, Reg.R3, Reg.R4, Reg.R5}
_SIZES = {1: "b", 2: "h", 4: "w", 8: "dw"}


def _int(t: LangType) -> IntType:
    return t if isinstance(t, IntType) and t is not LIT else i64


def _children(e: ir.Expr) -> list[ir.Expr]:
    out: list[ir.Expr | None] = []
    if isinstance(e, (ir.Load, ir.KLoad)):
        out = [e.base]
    elif isinstance(e, ir.IndexAddr):
        out = [e.base, e.index]
    elif isinstance(e, (ir.BinOp, ir.Compare)):
        out = [e.left, e.right]
    elif isinstance(e, (ir.Unary, ir.Not, ir.Cast, ir.Swap)):
        out = [e.operand]
    elif isinstance(e, ir.BoolOp):
        out = list(e.values)
    elif isinstance(e, ir.Call):
        out = [a.expr for a in e.args]
    elif isinstance(e, ir.MapOp):
        out = [e.key, e.value, e.default]
    elif isinstance(e, ir.Header):
        out = [e.offset]
    return [x for x in out if x is not None]


def has_call(e: ir.Expr) -> bool:
    """Whether evaluating ``e`` calls a helper (and so clobbers R0-R5)."""
    return isinstance(e, (ir.Call, ir.MapOp, ir.KLoad)) or any(has_call(c) for c in _children(e))


def mentions(e: ir.Expr, var: ir.Var) -> bool:
    """Whether ``e`` reads local ``var``."""
    return (isinstance(e, ir.Local) and e.var is var) or any(mentions(c, var) for c in _children(e))


def _var_of_reg(cg: Codegen, r: Reg | None) -> ir.Var | None:
    for var, home in cg.home_reg.items():
        if home == r:
            return var
    return None


def value_of(cg: Codegen, e: ir.Expr, dst: Reg | None) -> Reg:
    """Evaluate ``e``; see :meth:`Codegen.value`."""
    if isinstance(e, ir.Const):
        r = cg.target(dst)
        cg.load_const(r, e.value)
        return r
    if isinstance(e, ir.Local):
        assert e.var is not None
        home = cg.home_reg.get(e.var)
        r = cg.target(dst)
        if home is not None:
            if r != home:
                cg.emit(mov64(r, home))
        else:
            cg.emit(ldx_mem("dw", r, Reg.R10, cg.home_stack[e.var]))
        return r
    if isinstance(e, ir.AddrOf):
        assert e.var is not None
        r = cg.target(dst)
        cg.emit(mov64(r, Reg.R10))
        cg.emit(alu64_imm(0x00, r, cg.home_stack[e.var] + e.offset))
        return r
    if isinstance(e, ir.Load):
        assert e.base is not None
        if not isinstance(e.type, IntType):
            raise cg.error(f"a whole {e.type!r} cannot be used as a value: use its fields")
        if isinstance(e.base, ir.IndexAddr):  # out of range reads 0
            r = cg.alloc(dst if dst in _SCRATCH else None)
            cg.load_const(r, 0)
            b, off, _ = cg.address(e.base, e.offset)
            cg.emit(ldx_mem(_SIZES[e.type.size], r, b, off))
            cg.free(b)
            cg.end_guards()
            if e.type.signed and e.type.size < 8:
                cg.normalize(r, e.type)
            return r
        b, off, owned = cg.address(e.base, e.offset)
        r = b if owned and (dst is None or dst == b) else cg.target(dst)
        cg.emit(ldx_mem(_SIZES[e.type.size], r, b, off))
        if owned and b != r:
            cg.free(b)
        if e.type.signed and e.type.size < 8:
            cg.normalize(r, e.type)
        return r
    if isinstance(e, ir.KLoad):
        return _kload(cg, e, dst)
    if isinstance(e, ir.BinOp):
        return _binop(cg, e, dst)
    if isinstance(e, ir.Unary):
        assert e.operand is not None
        r = cg.value(e.operand, _safe_dst(cg, dst, e))
        t = _int(e.type)
        if e.op == "-":
            cg.emit(neg64(r) if t.size == 8 else neg32(r))
        else:
            cg.emit((alu64_imm if t.size == 8 else alu32_imm)(XOR, r, -1))
        if t.signed and t.size < 8:
            cg.normalize(r, t)
        return r
    if isinstance(e, ir.Cast):
        assert e.operand is not None
        r = cg.value(e.operand, _safe_dst(cg, dst, e))
        _cast(cg, r, _int(e.operand.type), _int(e.type))
        return r
    if isinstance(e, ir.Swap):
        assert e.operand is not None
        from ebpf.lang.codegen import strip_casts

        r = cg.value(strip_casts(e.operand, e.bits // 8), _safe_dst(cg, dst, e))  # the swap truncates anyway
        cg.emit(endian(TO_BE, r, e.bits))
        return r
    if isinstance(e, (ir.Compare, ir.BoolOp, ir.Not)):
        r = cg.alloc(dst if dst in _SCRATCH else None)
        done = cg.new_label("bool")
        cg.emit(mov64(r, 1))
        cg.branch(e, done, True)
        cg.emit(mov64(r, 0))
        cg.label(done)
        return r
    if isinstance(e, ir.Call):
        return _call(cg, e)
    if isinstance(e, ir.MapOp):
        from ebpf.lang.codegen_maps import map_op

        return map_op(cg, e, dst)
    if isinstance(e, ir.Header):
        return _header(cg, e, dst)
    raise cg.error(f"cannot generate {type(e).__name__}")  # pragma: no cover


def _kload(cg: Codegen, e: ir.KLoad, dst: Reg | None) -> Reg:
    """``bpf_probe_read_kernel(&tmp, size, base + offset)``, then the value from ``tmp``."""
    assert e.base is not None and isinstance(e.type, IntType)
    addr = e.base if not e.offset else ir.BinOp(u64, e.pos, "+", e.base, ir.Const(u64, e.pos, e.offset))
    tmp = cg.temp()
    r0 = cg.call("probe_read_kernel", [("stack", tmp), e.type.size, addr])
    assert r0 is not None
    cg.free(r0)
    r = cg.target(dst)
    cg.emit(ldx_mem(_SIZES[e.type.size], r, Reg.R10, tmp))
    cg.release_temp(tmp)
    if e.type.signed and e.type.size < 8:
        cg.normalize(r, e.type)
    return r


def _safe_dst(cg: Codegen, dst: Reg | None, e: ir.Expr) -> Reg | None:
    """``dst`` unless it is the home of a local that ``e`` still reads (writing it early would clobber it)."""
    var = _var_of_reg(cg, dst)
    if var is not None and mentions(e, var):
        return None
    return dst


def _binop(cg: Codegen, e: ir.BinOp, dst: Reg | None) -> Reg:
    assert e.left is not None and e.right is not None
    t = _int(e.type)
    var = _var_of_reg(cg, dst)
    if var is not None and mentions(e.right, var):
        dst = None
    left_e, right_e = e.left, e.right
    if isinstance(left_e, ir.Const) and not isinstance(right_e, ir.Const) and e.op in ("+", "*", "&", "|", "^"):
        left_e, right_e = right_e, left_e  # 14 + x*4: compute x*4, then add the immediate
    r = cg.value(left_e, dst)
    right, owned = cg.operand(right_e)
    op = {"+": 0x00, "-": 0x10, "*": 0x20, "//": 0x30, "%": 0x90, "&": AND, "|": 0x40, "^": XOR, "<<": LSH,
          ">>": ARSH if t.signed else RSH}[e.op]
    wide = t.size == 8
    if not isinstance(right, Reg):
        cg.emit((alu64_imm if wide else alu32_imm)(op, r, right))
    else:
        cg.emit((alu64_reg if wide else alu32_reg)(op, r, right))
        if owned:
            cg.free(right)
    if not wide and t.signed:
        cg.normalize(r, t)
    return r


def _cast(cg: Codegen, r: Reg, src: IntType, dst: IntType) -> None:
    from ebpf.lang.codegen import noop_cast

    if not noop_cast(src, dst):  # values are kept extended to 64 bits: widening changes nothing
        cg.normalize(r, dst)


def _call(cg: Codegen, e: ir.Call) -> Reg:
    assert e.proto is not None
    args: list[ir.Expr | int | tuple[str, object]] = []
    temps: list[int] = []
    for a in e.args:
        if a.ctx:
            args.append(("ctx", None))
        elif a.map_name:
            args.append(("map", a.map_name))
        elif a.fmt:
            off = cg.alloc_stack(len(a.fmt))
            data = a.fmt.ljust((len(a.fmt) + 3) // 4 * 4, b"\0")
            for k in range(0, len(data), 4):
                cg.emit(st_mem("w", Reg.R10, off + k, int.from_bytes(data[k:k + 4], "little", signed=True)))
            args.append(("stack", off))
        elif a.expr is None:
            args.append(a.size)
        elif isinstance(a.expr, ir.AddrOf):
            assert a.expr.var is not None
            args.append(("stack", cg.home_stack[a.expr.var] + a.expr.offset))
        else:
            args.append(a.expr)
    r = cg.call(e.proto.name, args)
    for off in temps:
        cg.release_temp(off)
    assert r is not None
    return r


def _header(cg: Codegen, e: ir.Header, dst: Reg | None, jump: tuple[str, bool] | None = None,
            store: int | None = None) -> Reg:
    """Packet pointer ``data + offset`` when ``offset + size`` bytes are in the packet, else 0.

    With ``jump=(label, on_ok)`` no 0 is written: the code jumps to ``label`` when the bounds
    check passes (``on_ok``) or fails, and falls through otherwise (``store``: the stack slot
    the pointer also goes to before the jump).
    """
    ctx = cg.home_reg.get(cg.fn.ctx)
    owned_ctx = ctx is None
    if ctx is None:
        ctx = cg.alloc()
        cg.emit(ldx_mem("dw", ctx, Reg.R10, cg.home_stack[cg.fn.ctx]))
    offset = e.offset
    off_reg = None
    if offset is not None and not isinstance(offset, ir.Const):
        off_reg = cg.value(offset)
        if max_value(offset) > 0xFFFF:
            cg.emit(alu64_imm(AND, off_reg, 0xFFFF))  # a bounded offset: the verifier must know its range
    rp = cg.target(dst)
    re = cg.alloc()
    cg.emit(ldx_mem("w", rp, ctx, e.data_off))
    cg.emit(ldx_mem("w", re, ctx, e.end_off))
    if owned_ctx:
        cg.free(ctx)
    if off_reg is not None:
        cg.emit(alu64_reg(0x00, rp, off_reg))
        cg.free(off_reg)
    elif isinstance(offset, ir.Const) and offset.value:
        cg.emit(alu64_imm(0x00, rp, offset.value))
    rt = cg.alloc()
    cg.emit(mov64(rt, rp))
    cg.emit(alu64_imm(0x00, rt, e.size))
    if store is not None:
        cg.emit(stx_mem("dw", Reg.R10, rp, store))
    if jump is not None:
        label, on_ok = jump
        cg.emit(jmp_reg(JLE if on_ok else JGT, rt, re, label))
    else:
        ok = cg.new_label("inbounds")
        cg.emit(jmp_reg(JLE, rt, re, ok))
        cg.emit(mov64(rp, 0))
        cg.label(ok)
    cg.free(rt)
    cg.free(re)
    return rp


def max_value(e: ir.Expr) -> int:
    """An upper bound of ``e``'s value (for offsets the verifier must see bounded)."""
    t = e.type
    top = (1 << 64) - 1
    if isinstance(e, ir.Const):
        return e.value if e.value >= 0 else top
    if isinstance(e, ir.Load) and isinstance(t, IntType) and not t.signed:
        return (1 << t.bits) - 1
    if isinstance(e, ir.Cast) and e.operand is not None:
        inner = max_value(e.operand)
        return inner if isinstance(t, IntType) and inner < (1 << (t.bits - int(t.signed))) else top
    if isinstance(e, ir.BinOp) and e.left is not None and e.right is not None:
        a, b = max_value(e.left), max_value(e.right)
        if e.op == "&":
            return min(a, b)
        if e.op in ("+", "*", "<<", "|", "^") and max(a, b) < (1 << 24):
            return {"+": a + b, "*": a * b, "<<": a << min(b, 40), "|": (1 << max(a, b).bit_length()) - 1,
                    "^": (1 << max(a, b).bit_length()) - 1}[e.op]
        if e.op in (">>", "//", "%"):
            return a
    return top




header = _header
