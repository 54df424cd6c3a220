"""IR passes: constant folding and dead code removal.

Folding evaluates operations on constants with the wrap-around of their type (``u8(250) + 10``
is 4), folds ``x + 0``, ``x * 1``, ``x & 0`` and casts of constants, and turns ``if`` on a
constant condition into the branch taken.  Dead code is what follows a ``return``, ``break`` or
``continue`` in the same block, and the branch a constant condition never takes.
"""

from __future__ import annotations

from ebpf.lang import ir
from ebpf.lang.types import IntType, LangType, i64

__all__ = ["fold", "optimize", "const_value", "terminates", "LIT"]

#: The type of an integer literal before it meets a typed operand.
LIT = IntType("int", 8, True, "long")


def _int(t: LangType) -> IntType:
    return t if isinstance(t, IntType) and t is not LIT else i64


def _apply(op: str, a: int, b: int, t: IntType) -> int | None:
    if op == "+":
        r = a + b
    elif op == "-":
        r = a - b
    elif op == "*":
        r = a * b
    elif op == "//":
        if b == 0:
            return 0  # BPF: division by zero yields 0
        r = abs(a) // abs(b) * (1 if (a < 0) == (b < 0) else -1)  # C truncation
    elif op == "%":
        if b == 0:
            return a
        r = abs(a) % abs(b) * (1 if a >= 0 else -1)
    elif op == "&":
        r = a & b
    elif op == "|":
        r = a | b
    elif op == "^":
        r = a ^ b
    elif op == "<<":
        r = a << (b & (t.bits - 1))
    elif op == ">>":
        r = (a if t.signed else a & ((1 << t.bits) - 1)) >> (b & (t.bits - 1))
    else:
        return None
    return t.wrap(r) if t is not LIT else r


def _cmp(op: str, a: int, b: int) -> int:
    return int({"==": a == b, "!=": a != b, "<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op])


def const_value(e: ir.Expr | None) -> int | None:
    """The value of ``e`` when it folds to a constant, else None."""
    if e is None:
        return None
    f = fold(e)
    return f.value if isinstance(f, ir.Const) else None


def fold(e: ir.Expr) -> ir.Expr:
    """``e`` with constant subexpressions evaluated (a new node where something changed)."""
    if isinstance(e, ir.BinOp):
        assert e.left is not None and e.right is not None
        left, right = fold(e.left), fold(e.right)
        t = e.type if isinstance(e.type, IntType) else i64
        if isinstance(left, ir.Const) and isinstance(right, ir.Const):
            value = _apply(e.op, left.value, right.value, t)
            if value is not None:
                return ir.Const(e.type, e.pos, value)
        if isinstance(right, ir.Const) and (
            (right.value == 0 and e.op in ("+", "-", "|", "^", "<<", ">>")) or (right.value == 1 and e.op in ("*", "//"))
        ) and left.type is e.type:
            return left
        return ir.BinOp(e.type, e.pos, e.op, left, right)
    if isinstance(e, ir.Unary):
        assert e.operand is not None
        inner = fold(e.operand)
        if isinstance(inner, ir.Const):
            v = -inner.value if e.op == "-" else ~inner.value
            return ir.Const(e.type, e.pos, _int(e.type).wrap(v) if e.type is not LIT else v)
        return ir.Unary(e.type, e.pos, e.op, inner)
    if isinstance(e, ir.Cast):
        assert e.operand is not None
        inner = fold(e.operand)
        if isinstance(inner, ir.Const):
            return ir.Const(e.type, e.pos, _int(e.type).wrap(inner.value))
        return ir.Cast(e.type, e.pos, inner)
    if isinstance(e, ir.Swap):
        assert e.operand is not None
        inner = fold(e.operand)
        if isinstance(inner, ir.Const):
            n = e.bits // 8
            v = int.from_bytes((inner.value & ((1 << e.bits) - 1)).to_bytes(n, "little"), "big")
            return ir.Const(e.type, e.pos, v)
        return ir.Swap(e.type, e.pos, inner, e.bits)
    if isinstance(e, ir.Compare):
        assert e.left is not None and e.right is not None
        left, right = fold(e.left), fold(e.right)
        if isinstance(left, ir.Const) and isinstance(right, ir.Const):
            return ir.Const(e.type, e.pos, _cmp(e.op, left.value, right.value))
        return ir.Compare(e.type, e.pos, e.op, left, right, e.signed)
    if isinstance(e, ir.Not):
        assert e.operand is not None
        inner = fold(e.operand)
        if isinstance(inner, ir.Const):
            return ir.Const(e.type, e.pos, int(not inner.value))
        return ir.Not(e.type, e.pos, inner)
    if isinstance(e, ir.BoolOp):
        values: list[ir.Expr] = []
        for part in (fold(x) for x in e.values):
            if isinstance(part, ir.Const):
                if bool(part.value) == (e.op == "or"):  # decides the whole expression
                    if not values:
                        return ir.Const(e.type, e.pos, int(e.op == "or"))
                    return ir.BoolOp(e.type, e.pos, e.op, [*values, part])
                continue  # neutral: drop it
            values.append(part)
        if not values:
            return ir.Const(e.type, e.pos, int(e.op == "and"))
        return values[0] if len(values) == 1 and isinstance(values[0], (ir.Compare, ir.Not, ir.BoolOp)) else ir.BoolOp(e.type, e.pos, e.op, values)
    if isinstance(e, ir.Load) and e.base is not None:
        e.base = fold(e.base)
    elif isinstance(e, ir.Call):
        for a in e.args:
            if a.expr is not None:
                a.expr = fold(a.expr)
    elif isinstance(e, ir.MapOp):
        e.key = fold(e.key) if e.key is not None else None
        e.value = fold(e.value) if e.value is not None else None
        e.default = fold(e.default) if e.default is not None else None
    elif isinstance(e, ir.Header) and e.offset is not None:
        e.offset = fold(e.offset)
    return e


def terminates(body: list[ir.Stmt]) -> bool:
    """Whether control never falls off the end of ``body`` (it returns, breaks or continues)."""
    if not body:
        return False
    last = body[-1]
    if isinstance(last, (ir.Return, ir.Jump)):
        return True
    if isinstance(last, ir.If):
        return terminates(last.body) and terminates(last.orelse)
    return False


def optimize(body: list[ir.Stmt]) -> list[ir.Stmt]:
    """Fold constants in every statement and drop dead code; returns the new statement list."""
    out: list[ir.Stmt] = []
    for s in body:
        if isinstance(s, ir.If):
            assert s.cond is not None
            cond = fold(s.cond)
            if isinstance(cond, ir.Const):
                out.extend(optimize(s.body if cond.value else s.orelse))
            else:
                s.cond, s.body, s.orelse = cond, optimize(s.body), optimize(s.orelse)
                if s.body or s.orelse:
                    out.append(s)
        elif isinstance(s, (ir.Block, ir.Loop)):
            s.body = optimize(s.body)
            out.append(s)
        else:
            for name in ("value", "base", "expr"):
                v = getattr(s, name, None)
                if isinstance(v, ir.Expr):
                    setattr(s, name, fold(v))
            out.append(s)
        if terminates(out[-1:]):
            break  # what follows is never reached
    return out
