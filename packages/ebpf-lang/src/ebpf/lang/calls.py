"""Calls in kernel code: ``bpf.<helper>(...)``, integer casts, map and ring buffer methods,
``ctx.header(T, offset)`` -- each checked against what it accepts."""

from __future__ import annotations

import ast
from typing import TYPE_CHECKING

from ebpf.lang import ir
from ebpf.lang.helpers import HELPERS, INTRINSICS
from ebpf.lang.maps import MapDecl
from ebpf.lang.opt import LIT, fold
from ebpf.lang.types import ArrayType, IntType, LangType, PtrType, Struct, StructType, i64, u16, u32, u64

if TYPE_CHECKING:
    from ebpf.lang.check_expr import ExprChecker

__all__ = ["check_call", "check_map_op"]

_MAP_METHODS = {"get", "lookup", "increment", "output", "reserve", "submit", "discard", "update", "delete", "push",
                "pop", "peek"}
_PACKET_CTX = {"xdp_md", "__sk_buff"}


def check_call(c: ExprChecker, node: ast.Call, statement: bool) -> ir.Expr:
    """Any call expression."""
    pos = c.pos(node)
    func = node.func
    helper = c.helper_of(func)
    if helper is not None:
        return _helper_call(c, helper.name, node)
    if isinstance(func, ast.Attribute) and c.map_of(func.value) is not None:
        if func.attr not in _MAP_METHODS:
            raise c.err(node, f"maps have no method {func.attr!r} in kernel code "
                              f"(use get, lookup, increment, update, delete, output, reserve, submit, discard)")
        if node.keywords:
            raise c.err(node, f"{func.attr}() takes positional arguments only")
        return check_map_op(c, func.attr, func.value, list(node.args), node)
    if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id == c.ctx.name:
        if func.attr == "header":
            return _header(c, node)
        raise c.err(node, f"the context has no method {func.attr!r} (ctx.header(T, offset) reads packet headers)")
    if isinstance(func, ast.Name) and func.id not in c.vars:
        value = c.namespace.get(func.id)
        if isinstance(value, IntType):
            if len(node.args) != 1 or node.keywords:
                raise c.err(node, f"{func.id}(x) takes one argument")
            return fold(c.convert(c.int_expr(node.args[0], "a cast operand"), value, node))
        if func.id == "len" and len(node.args) == 1:
            e = c.expr(node.args[0])
            if isinstance(e.type, ArrayType):
                return ir.Const(LIT, pos, e.type.n)
            raise c.err(node, "len() is only supported on arrays (a compile-time constant)")
        if isinstance(value, type) and issubclass(value, Struct):
            raise c.err(node, f"{func.id}() creates a struct: assign it to a local (`ev = {func.id}()`)")
        if callable(value) and getattr(value, "__ebpf_inline__", False):
            from ebpf.lang.inline import expand_inline

            return expand_inline(c, value, node)
        if func.id == "print":
            raise c.err(node, "print() is not available in the kernel: use bpf.trace_printk(\"fmt %d\\n\", x) "
                              "or send an event through a ring buffer")
        if value is c.fn or getattr(value, "__wrapped_kernel__", None) is not None:
            raise c.err(node, "calling kernel functions (and recursion) is not supported: inline the code")
    raise c.err(node, f"{ast.unparse(func)}() is not callable from kernel code: only bpf.<helper>(...), "
                      f"map methods, integer casts like u32(x), Struct() and ctx.header(T, offset) are; "
                      f"dynamic calls cannot be verified")


def _helper_call(c: ExprChecker, name: str, node: ast.Call) -> ir.Expr:
    pos = c.pos(node)
    if node.keywords:
        raise c.err(node, f"bpf.{name}() takes positional arguments only")
    if name in INTRINSICS:
        if len(node.args) != 1:
            raise c.err(node, f"bpf.{name}(x) takes one argument")
        bits = INTRINSICS[name]
        t = {16: u16, 32: u32, 64: u64}[bits]
        e = c.convert(c.int_expr(node.args[0], f"bpf.{name}() argument"), t, node.args[0])
        return fold(ir.Swap(t, pos, e, bits))
    proto = HELPERS.get(name)
    if proto is None:
        known = ", ".join(sorted([*HELPERS, *INTRINSICS]))
        raise c.err(node.func, f"bpf.{name} is not a helper this compiler knows (known: {known})")
    user_args = [a for a in proto.args]
    lo, hi = len(user_args), len(user_args) + proto.variadic
    if not lo <= len(node.args) <= hi:
        want = f"{lo}" if lo == hi else f"{lo} to {hi}"
        raise c.err(node, f"bpf.{name}() takes {want} argument(s) ({', '.join(user_args) or 'none'}), "
                          f"got {len(node.args)}")
    args: list[ir.Arg] = []
    for i, (kind, a) in enumerate(zip(user_args + ["int"] * proto.variadic, node.args)):
        what = f"argument {i + 1} of bpf.{name}()"
        if kind == "int":
            args.append(ir.Arg(c.int_expr(a, what)))
        elif kind == "addr":
            if isinstance(a, (ast.Attribute, ast.Subscript)) and c.map_of(a.value) is None:
                place = c.place(a)
                if place.kernel and not isinstance(place.type, IntType):
                    args.append(ir.Arg(place.address(c.pos(a))))  # task.comm: the array's kernel address
                    continue
            e = c.expr(a)
            if not isinstance(e.type, (IntType, PtrType)):
                raise c.err(a, f"{what} must be an address (an integer such as ctx.args[0]), not {e.type!r}")
            args.append(ir.Arg(e))
        elif kind == "buf":
            addr, size = buffer_arg(c, a, what)
            args.extend([ir.Arg(addr), ir.Arg(None, size)])
        elif kind == "ctx":
            if not (isinstance(a, ast.Name) and a.id == c.ctx.name):
                raise c.err(a, f"{what} must be the context ({c.ctx.name})")
            c.ctx.uses += 1
            args.append(ir.Arg(None, 0, ctx=True))
        elif kind == "map":
            found = c.map_of(a)
            if found is None:
                raise c.err(a, f"{what} must be a map declared at module level")
            c.maps_used[found[0]] = found[1]
            args.append(ir.Arg(None, 0, map_name=found[0]))
        elif kind == "fmt":
            if not (isinstance(a, ast.Constant) and isinstance(a.value, (str, bytes))):
                raise c.err(a, f"{what} must be a constant string")
            raw = a.value.encode() if isinstance(a.value, str) else a.value
            args.extend([ir.Arg(None, 0, fmt=raw + b"\0"), ir.Arg(None, len(raw) + 1)])
    return ir.Call(proto.ret, pos, proto, args)


def buffer_arg(c: ExprChecker, a: ast.expr, what: str) -> tuple[ir.Expr, int]:
    """``(address, size)`` of a memory region argument (an array/struct local or field)."""
    pos = c.pos(a)
    if isinstance(a, ast.Name) and a.id in c.vars and isinstance(c.vars[a.id].type, PtrType):
        var = c.vars[a.id]
        place = c.place(a)
        return ir.Local(var.type, pos, var), place.type.size
    if not isinstance(a, (ast.Name, ast.Attribute, ast.Subscript)):
        raise c.err(a, f"{what} must be a buffer: a char[N]/array field or local, or a struct")
    place = c.place(a)
    if place.kernel:
        raise c.err(a, f"{what} must be memory of this program (a local, a struct field), not kernel memory")
    if not isinstance(place.type, (ArrayType, StructType)):
        raise c.err(a, f"{what} must be a buffer (char[N], an array or a struct), not {place.type!r}")
    return place.address(pos), place.type.size


def _struct_arg(c: ExprChecker, t: LangType | None, a: ast.expr, what: str) -> ir.Expr:
    """The address of a key/value region of type ``t`` (a struct local/field or a checked pointer)."""
    addr, size = buffer_arg(c, a, what)
    if t is not None and size != t.size:
        raise c.err(a, f"{what} is {size} bytes; the map wants {t!r} ({t.size} bytes)")
    return addr


def _key(c: ExprChecker, decl_key: LangType | None, a: ast.expr, what: str) -> ir.Expr:
    if isinstance(decl_key, IntType):
        return c.convert(c.int_expr(a, what), decl_key, a)
    return _struct_arg(c, decl_key, a, what)


def check_map_op(c: ExprChecker, op: str, map_node: ast.expr, args: list[ast.expr], node: ast.AST) -> ir.Expr:
    """``m.get(k, d)``, ``m[k] = v`` ... on the map ``map_node`` names."""
    pos = c.pos(node)
    found = c.map_of(map_node)
    assert found is not None
    mname, decl = found
    c.maps_used[mname] = decl
    kind = decl.kind

    def need(n: int, sig: str) -> None:
        if len(args) != n:
            raise c.err(node, f"{mname}.{sig} takes {n} argument(s), got {len(args)}")

    if kind in ("ringbuf", "perf"):
        if op == "output":
            need(1, "output(event)")
            if kind == "perf":
                c.ctx.uses += 1  # bpf_perf_event_output takes the context
            return ir.MapOp(i64, pos, "output", decl, mname, value=_struct_arg(c, None, args[0], "the event"),
                            flags=_size_of(c, args[0]))
        if op == "reserve" and kind == "ringbuf":
            need(1, "reserve(StructClass)")
            t = _type_arg(c, args[0])
            return ir.MapOp(PtrType(t, "ringbuf", nullable=True), pos, "reserve", decl, mname, flags=t.size)
        if op in ("submit", "discard") and kind == "ringbuf":
            need(1, f"{op}(event)")
            a = args[0]
            var = c.vars.get(a.id) if isinstance(a, ast.Name) else None
            if var is None or not isinstance(var.type, PtrType) or var.type.space != "ringbuf":
                raise c.err(a, f"{mname}.{op}() takes a local holding {mname}.reserve(...)")
            e = _struct_arg(c, None, a, "the event")
            c.state.nonnull.discard(var)  # gone: using it again would be refused by the verifier
            return ir.MapOp(i64, pos, op, decl, mname, value=e)
        raise c.err(node, f"{mname} is a {decl.map_type.lower_name} map: use {mname}.output(event)"
                          + (f", {mname}.reserve(T) / submit(p) / discard(p)" if kind == "ringbuf" else ""))
    if kind in ("queue", "bloom"):
        return _queue_op(c, op, mname, decl, args, node)
    if kind not in ("hash", "array"):
        raise c.err(node, f"{mname} is a {decl.map_type.lower_name} map: kernel code supports hash and array "
                          f"maps, ring buffers and perf arrays")
    vt = decl.value
    if op == "get":
        need(2, "get(key, default)")
        if not isinstance(vt, IntType):
            raise c.err(node, f"{mname} holds {vt!r} values: use p = {mname}.lookup(key) and check p is not None")
        key = _key(c, decl.key, args[0], "the key")
        default = c.convert(c.int_expr(args[1], "the default"), vt, args[1])
        return ir.MapOp(vt, pos, "get", decl, mname, key=key, default=default)
    if op == "lookup":
        need(1, "lookup(key)")
        assert vt is not None
        return ir.MapOp(PtrType(vt, "map", nullable=True), pos, "lookup", decl, mname,
                        key=_key(c, decl.key, args[0], "the key"))
    if op == "contains":
        return ir.MapOp(u64, pos, "contains", decl, mname, key=_key(c, decl.key, args[0], "the key"))
    if op == "delete":
        need(1, "delete(key)")
        if kind == "array":
            raise c.err(node, f"{mname} is an array map: its entries cannot be deleted (store 0 instead)")
        return ir.MapOp(i64, pos, "delete", decl, mname, key=_key(c, decl.key, args[0], "the key"))
    if op == "update":
        if len(args) not in (2, 3):
            need(2, "update(key, value)")
        key = _key(c, decl.key, args[0], "the key")
        value = (c.convert(c.int_expr(args[1], "the value"), vt, args[1]) if isinstance(vt, IntType)
                 else _struct_arg(c, vt, args[1], "the value"))
        return ir.MapOp(i64, pos, "update", decl, mname, key=key, value=value)
    if op == "increment":
        if len(args) not in (1, 2):
            need(1, "increment(key[, amount])")
        if not isinstance(vt, IntType) or vt.size not in (4, 8):
            raise c.err(node, f"{mname}.increment() needs u32/u64 values (an atomic add), not {vt!r}")
        key = _key(c, decl.key, args[0], "the key")
        amount: ir.Expr = (c.convert(c.int_expr(args[1], "the amount"), vt, args[1]) if len(args) == 2
                           else ir.Const(vt, pos, 1))
        return ir.MapOp(i64, pos, "increment", decl, mname, key=key, value=amount)
    raise c.err(node, f"{mname} is a {decl.map_type.lower_name} map: {op}() applies to ring buffers")


def _queue_op(c: ExprChecker, op: str, mname: str, decl: MapDecl, args: list[ast.expr], node: ast.AST) -> ir.Expr:
    """Queue/stack ``push``/``pop``/``peek`` and bloom filter ``push`` / ``v in b``."""
    pos = c.pos(node)
    vt = decl.value
    if not isinstance(vt, IntType):
        raise c.err(node, f"{mname} holds {vt!r} values: kernel code supports queues, stacks and bloom filters "
                          f"of integers")
    ops = ("push", "pop", "peek") if decl.kind == "queue" else ("push", "contains")
    if op not in ops:
        uses = "push(v), pop(default), peek(default)" if decl.kind == "queue" else "push(v) and `v in m`"
        raise c.err(node, f"{mname} is a {decl.map_type.lower_name} map: use {uses}")
    if len(args) != 1:
        raise c.err(node, f"{mname}.{op}() takes 1 argument, got {len(args)}")
    value = c.convert(c.int_expr(args[0], "the value"), vt, args[0])
    if op in ("push", "contains"):
        return ir.MapOp(i64 if op == "push" else u64, pos, op, decl, mname, value=value)
    return ir.MapOp(vt, pos, op, decl, mname, default=value)


def _type_arg(c: ExprChecker, a: ast.expr) -> StructType:
    value = c.namespace.get(a.id) if isinstance(a, ast.Name) else None
    if not (isinstance(value, type) and issubclass(value, Struct) and value is not Struct):
        raise c.err(a, "give a Struct class: events.reserve(Event)")
    return value.__lang_type__


def _size_of(c: ExprChecker, a: ast.expr) -> int:
    return buffer_arg(c, a, "the event")[1]


def _header(c: ExprChecker, node: ast.Call) -> ir.Expr:
    """``ctx.header(T, offset)`` -> a packet pointer to T, None when the packet is shorter."""
    pos = c.pos(node)
    assert isinstance(c.ctx.type, PtrType)
    ctx_struct = c.ctx.type.target
    if not isinstance(ctx_struct, StructType) or ctx_struct.name not in _PACKET_CTX:
        raise c.err(node, "ctx.header() reads packets: the context must be ct.xdp_md or ct.__sk_buff")
    if len(node.args) != 2 or node.keywords:
        raise c.err(node, "ctx.header(StructClass, offset) takes two arguments")
    t = _type_arg(c, node.args[0])
    off = c.convert(c.int_expr(node.args[1], "the offset"), u64, node.args[1])
    data, end = ctx_struct.field("data"), ctx_struct.field("data_end")
    assert data is not None and end is not None
    c.ctx.uses += 1
    return ir.Header(PtrType(t, "packet", nullable=True), pos, off, t.size, data[1], end[1])


