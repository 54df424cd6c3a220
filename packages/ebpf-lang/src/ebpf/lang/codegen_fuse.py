"""Fusing ``p = ctx.header(T, off)`` with the ``if p is None`` test that follows it.

The bounds check already decides whether ``p`` is None, so instead of writing 0 to ``p`` and
testing it again, the check jumps straight to the branch taken -- two instructions saved per
header, as a C programmer would write ``if (data + off + size > data_end) return ...``.
Only done when the skipped write cannot be observed: the None branch never reads ``p`` and
ends the function, or nothing else in the function reads ``p``.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from ebpf.lang import ir
from ebpf.lang.codegen_ops import header, mentions
from ebpf.lang.opt import terminates

if TYPE_CHECKING:
    from ebpf.lang.codegen import Codegen

__all__ = ["fuse_header_check", "stmt_mentions"]


def stmt_mentions(stmts: list[ir.Stmt], var: ir.Var) -> bool:
    """Whether any statement (nested ones included) reads ``var``."""
    for s in stmts:
        for f in dataclasses.fields(s):
            v = getattr(s, f.name)
            if isinstance(v, ir.Expr) and mentions(v, var):
                return True
            if isinstance(v, list) and v and isinstance(v[0], ir.Stmt) and stmt_mentions(v, var):
                return True
    return False


def _is_null_test(e: ir.Expr, var: ir.Var, op: str) -> bool:
    return (isinstance(e, ir.Compare) and e.op == op and isinstance(e.left, ir.Local) and e.left.var is var
            and isinstance(e.right, ir.Const) and e.right.value == 0)


def _rest(op: str, values: list[ir.Expr], like: ir.Expr) -> ir.Expr | None:
    if not values:
        return None
    return values[0] if len(values) == 1 else ir.BoolOp(like.type, like.pos, op, values)


def fuse_header_check(cg: Codegen, assign: ir.Stmt, nxt: ir.Stmt, whole: list[ir.Stmt]) -> bool:
    """Generate ``assign`` and ``nxt`` together when they are ``p = ctx.header(...)`` and ``if p ...``."""
    if not (isinstance(assign, ir.Assign) and isinstance(assign.value, ir.Header) and isinstance(nxt, ir.If)):
        return False
    var, cond = assign.var, nxt.cond
    assert var is not None and cond is not None
    parts = cond.values if isinstance(cond, ir.BoolOp) else [cond]
    op = cond.op if isinstance(cond, ir.BoolOp) else None
    none_first = _is_null_test(parts[0], var, "==") and op in (None, "or")
    some_first = _is_null_test(parts[0], var, "!=") and op in (None, "and")
    if none_first:  # failing the check runs the body: it must not read p, and must end the function
        if stmt_mentions(nxt.body, var) or not terminates(nxt.body):
            return False
    elif some_first:  # failing the check skips the body: nothing outside it may read p
        others = [s for s in whole if s is not nxt]
        if stmt_mentions(others, var) or stmt_mentions(nxt.orelse, var):
            return False
    else:
        return False
    else_l, end_l = cg.new_label("else"), cg.new_label("endif")
    miss = else_l if nxt.orelse else end_l
    rest = _rest(op or "and", parts[1:], cond)
    cg.pos = assign.pos
    home = cg.home_reg.get(var)
    store = None if home is not None else cg.home_stack[var]
    if none_first:
        body_l = cg.new_label("none")
        if rest is None:
            r = header(cg, assign.value, home, (miss, True), store)
        else:
            r = header(cg, assign.value, home, (body_l, False), store)
        cg.free(r)
        cg.pos = nxt.pos
        if rest is not None:
            cg.branch(rest, miss, False)
        cg.label(body_l)
    else:
        r = header(cg, assign.value, home, (miss, False), store)
        cg.free(r)
        cg.pos = nxt.pos
        if rest is not None:
            cg.branch(rest, miss, False)
    cg.block(nxt.body)
    if nxt.orelse:
        if not terminates(nxt.body):
            cg.pos = nxt.pos
            from ebpf.core.asm import jmp_a

            cg.emit(jmp_a(end_l))
        cg.label(else_l)
        cg.block(nxt.orelse)
    cg.label(end_l)
    return True
