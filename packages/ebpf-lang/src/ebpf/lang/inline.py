"""``@inline`` functions: small Python helpers expanded at each call in kernel code.

An inline function is one ``return <expression>``; its parameters are bound to the caller's
arguments (integers as values, structs and checked pointers as the memory they name), and the
expression is checked in the function's own module.  The function stays an ordinary Python
function, so user space can call it too::

    @inline
    def is_ipv4(eth) -> bool:
        return eth.proto == bpf.htons(0x0800)
"""

from __future__ import annotations

import ast
import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from ebpf.lang import ir

if TYPE_CHECKING:
    from ebpf.lang.check_expr import ExprChecker

__all__ = ["inline", "expand_inline", "MAX_INLINE_DEPTH"]

F = TypeVar("F", bound=Callable[..., Any])
MAX_INLINE_DEPTH = 16


def inline(fn: F) -> F:
    """Mark ``fn`` (one ``return <expression>``) for expansion where kernel code calls it."""
    fn.__ebpf_inline__ = True  # type: ignore[attr-defined]
    return fn


def _restamp(e: ir.Expr, pos: ir.Pos, seen: set[int]) -> None:
    """Give every node of ``e`` the call site's position (the callee may live in another file)."""
    if id(e) in seen:
        return
    seen.add(id(e))
    e.pos = pos
    for f in dataclasses.fields(e):
        v = getattr(e, f.name)
        if isinstance(v, ir.Expr):
            _restamp(v, pos, seen)
        elif isinstance(v, list):
            for x in v:
                if isinstance(x, ir.Expr):
                    _restamp(x, pos, seen)
                elif isinstance(x, ir.Arg) and x.expr is not None:
                    _restamp(x.expr, pos, seen)


def expand_inline(c: ExprChecker, fn: Callable[..., Any], call: ast.Call) -> ir.Expr:
    """The expression of ``fn``'s body with its parameters bound to ``call``'s arguments."""
    from ebpf.lang.check import _source
    from ebpf.lang.check_expr import Place
    from ebpf.lang.codegen_ops import has_call
    from ebpf.lang.errors import LangError, Where
    from ebpf.lang.types import IntType

    name = getattr(fn, "__name__", "?")
    if c.inline_depth >= MAX_INLINE_DEPTH:
        raise c.err(call, f"@inline {name}() expands too deep (recursion?): at most {MAX_INLINE_DEPTH} levels")
    node, filename, first, indent, _ = _source(fn)
    where = Where(filename, first, indent)
    body = [s for s in node.body if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant)
                                         and isinstance(s.value.value, str))]
    if len(body) != 1 or not isinstance(body[0], ast.Return) or body[0].value is None:
        raise where.error(node, f"@inline function {name} must be a single `return <expression>` "
                                f"(longer code: write it in the kernel function)")
    params = node.args
    if params.posonlyargs or params.vararg or params.kwonlyargs or params.kwarg or params.defaults:
        raise where.error(node, f"@inline function {name} takes plain positional parameters only")
    if call.keywords or len(call.args) != len(params.args):
        raise c.err(call, f"{name}() takes {len(params.args)} argument(s), got {len(call.args) + len(call.keywords)}")
    bound: dict[str, ir.Expr | Place] = {}
    for p, a in zip(params.args, call.args):
        # Structs, arrays, checked pointers and the context are bound as the memory they name.
        if isinstance(a, (ast.Name, ast.Attribute, ast.Subscript)) and not (
                isinstance(a, ast.Name) and (a.id in c.consts or a.id in c.bound)) and c.map_of(a) is None:
            try:
                place: Place | None = c.place(a)
            except LangError:
                place = None
            if place is not None and not isinstance(place.type, IntType):
                bound[p.arg] = place
                continue
        e = c.expr(a)
        if has_call(e):
            raise c.err(a, f"an argument of @inline {name}() that calls a helper: assign it to a local first")
        bound[p.arg] = e
    # The body sees its parameters and its own module, not the caller's locals.
    saved = (c.where, c.namespace, c.bound, c.consts, c.vars)
    c.where, c.namespace, c.bound, c.consts, c.vars = where, dict(fn.__globals__), bound, {}, {}
    c.inline_depth += 1
    try:
        result = c.expr(body[0].value)
    finally:
        c.where, c.namespace, c.bound, c.consts, c.vars = saved
        c.inline_depth -= 1
    _restamp(result, c.pos(call), set())
    return result
