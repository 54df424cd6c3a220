"""Expressions of kernel functions: names, arithmetic, comparisons, fields, helpers and map calls.

Integer typing follows C closely enough that results match a C version of the same program:
operands narrower than 32 bits are promoted to ``u32``/``i32``, the wider operand wins, and
unsigned wins at equal width; a literal takes the type of the other operand.  Values live in
64-bit registers, zero- or sign-extended from their type.
"""

from __future__ import annotations

import ast
import builtins
from collections.abc import Callable
from typing import Any

from ebpf.core.records import dataclass
from ebpf.lang import ir
from ebpf.lang.errors import Where
from ebpf.lang.helpers import _Helper
from ebpf.lang.maps import MapDecl
from ebpf.lang.opt import LIT, const_value, fold
from ebpf.lang.types import (
    BOOL,
    ArrayType,
    IntType,
    KPtrType,
    LangType,
    PtrType,
    Struct,
    StructType,
    i32,
    i64,
    u8,
    u16,
    u32,
    u64,
)

__all__ = ["ExprChecker", "Place"]

_BINOPS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.FloorDiv: "//", ast.Mod: "%", ast.BitAnd: "&",
           ast.BitOr: "|", ast.BitXor: "^", ast.LShift: "<<", ast.RShift: ">>"}
_CMPOPS = {ast.Eq: "==", ast.NotEq: "!=", ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">="}
_SWAP_CMP = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "==": "==", "!=": "!="}


@dataclass
class Place:
    """Memory holding a value of ``type`` at ``base + offset`` (``base``: a pointer expression)."""

    base: ir.Expr
    offset: int
    type: LangType
    readonly: bool = False
    kernel: bool = False  # kernel memory: read through bpf_probe_read_kernel

    def address(self, pos: ir.Pos) -> ir.Expr:
        """A pointer expression to the place."""
        if isinstance(self.base, ir.AddrOf):
            return ir.AddrOf(PtrType(self.type, "stack"), pos, self.base.var, self.base.offset + self.offset)
        if not self.offset:
            return self.base
        return ir.BinOp(self.base.type, pos, "+", self.base, ir.Const(i64, pos, self.offset))


def promote(t: IntType) -> IntType:
    """C's integer promotion, except that small unsigned types become ``u32``."""
    if t.size >= 4:
        return t
    return i32 if t.signed else u32


def common(a: IntType, b: IntType) -> IntType:
    """The type of ``a op b``."""
    if a is LIT:
        return LIT if b is LIT else promote(b)
    if b is LIT:
        return promote(a)
    a, b = promote(a), promote(b)
    if a.size != b.size:
        return a if a.size > b.size else b
    return a if not a.signed else b


class ExprChecker:
    """Expression checking shared by the function checker (scope, typing, map and helper calls)."""

    def __init__(self, where: Where, namespace: dict[str, Any], ctx: ir.Var, fn: Callable[..., Any]) -> None:
        """Start with the globals ``namespace`` and the context variable ``ctx``."""
        self.where = where
        self.namespace = namespace
        self.ctx = ctx
        self.fn = fn
        self.vars: dict[str, ir.Var] = {}
        self.consts: dict[str, int] = {}
        self.maps_used: dict[str, MapDecl] = {}
        self.state: Any = None  # set by the function checker
        self.bound: dict[str, ir.Expr | Place] = {}  # parameters of the @inline function being expanded
        self.inline_depth = 0

    def pos(self, node: ast.AST) -> ir.Pos:
        """The (line, column) of ``node``."""
        return (self.where.line(node), self.where.col(node))

    def err(self, node: ast.AST, message: str) -> Exception:
        """A LangError at ``node``."""
        return self.where.error(node, message)

    # -- names --------------------------------------------------------------------------------------

    def lookup_global(self, node: ast.Name) -> Any:
        """The module-level value a name refers to."""
        if node.id in self.namespace:
            return self.namespace[node.id]
        if hasattr(builtins, node.id):
            return getattr(builtins, node.id)
        raise self.err(node, f"name {node.id!r} is not defined (assign it before use, or define it at module level)")

    def map_of(self, node: ast.expr) -> tuple[str, MapDecl] | None:
        """``(name, declaration)`` when ``node`` names a module-level map."""
        if isinstance(node, ast.Name) and node.id not in self.vars:
            value = self.namespace.get(node.id)
            if isinstance(value, MapDecl):
                return node.id, value
        return None

    def struct_ctor(self, node: ast.expr) -> StructType | None:
        """The struct type when ``node`` is ``SomeStruct(...)``."""
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id not in self.vars:
            value = self.namespace.get(node.func.id)
            if isinstance(value, type) and issubclass(value, Struct) and value is not Struct:
                if node.args:
                    raise self.err(node, f"{node.func.id}(...) takes field values by keyword: {node.func.id}(pid=1)")
                return value.__lang_type__
        return None

    def use_var(self, var: ir.Var, node: ast.AST) -> ir.Var:
        """Count a use and check the local is assigned on every path to here."""
        if var not in self.state.assigned:
            raise self.err(node, f"{var.name} may be unassigned here: assign it on every path before this line")
        var.uses += 1
        return var

    # -- values ---------------------------------------------------------------------------------------

    def int_expr(self, node: ast.expr, what: str) -> ir.Expr:
        """An expression that must be an integer."""
        e = self.expr(node)
        if not isinstance(e.type, IntType):
            raise self.err(node, f"{what} must be an integer, not {e.type!r}")
        return e

    def convert(self, e: ir.Expr, t: LangType, node: ast.AST) -> ir.Expr:
        """``e`` as type ``t`` (integers are truncated or extended; constants must fit)."""
        if e.type is t:
            return e
        if isinstance(t, IntType) and isinstance(e.type, IntType):
            if isinstance(e, ir.Const):
                if e.type is LIT and not -(1 << (t.bits - 1)) <= e.value < (1 << t.bits):
                    raise self.err(node, f"{e.value} does not fit in {t!r}")
                return ir.Const(t, e.pos, t.wrap(e.value))
            return ir.Cast(t, e.pos, e)
        raise self.err(node, f"expected {t!r}, got {e.type!r}")

    def expr(self, node: ast.expr, statement: bool = False) -> ir.Expr:
        """Any expression -> IR."""
        pos = self.pos(node)
        if isinstance(node, ast.Constant):
            v = node.value
            if isinstance(v, bool):
                return ir.Const(LIT, pos, int(v))
            if isinstance(v, int):
                if not -(1 << 63) <= v < (1 << 64):
                    raise self.err(node, f"{v} does not fit in 64 bits")
                return ir.Const(LIT, pos, v)
            if isinstance(v, float):
                raise self.err(node, "floats are not supported in kernel code: use integers (e.g. nanoseconds, "
                                     "or a value scaled by 1000)")
            if v is None:
                raise self.err(node, "None is only allowed in `p is None` / `p is not None` checks")
            raise self.err(node, f"{type(v).__name__} constants are only allowed as bpf.trace_printk formats")
        if isinstance(node, ast.Name):
            return self.name(node)
        if isinstance(node, ast.BinOp):
            return self.binop(node)
        if isinstance(node, ast.UnaryOp):
            return self.unary(node)
        if isinstance(node, (ast.Compare, ast.BoolOp)):
            return self.cond(node)
        if isinstance(node, ast.Call):
            return self.call(node, statement)
        if isinstance(node, ast.Subscript) and self.map_of(node.value) is not None:
            return self.map_op("get", node.value, [node.slice, ast.Constant(0)], node)
        if isinstance(node, (ast.Attribute, ast.Subscript)):
            place = self.place(node)
            if place.kernel and isinstance(place.type, IntType):
                return ir.KLoad(place.type, pos, place.base, place.offset)
            return ir.Load(place.type, pos, place.base, place.offset)  # an aggregate is only valid as an address
        if isinstance(node, ast.IfExp):
            raise self.err(node, "conditional expressions are not supported: use an if statement")
        if isinstance(node, (ast.Lambda, ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)):
            raise self.err(node, f"{type(node).__name__} is not supported in kernel code")
        if isinstance(node, (ast.List, ast.Tuple, ast.Dict, ast.Set)):
            raise self.err(node, "containers are not supported in kernel code: use a Struct, an array field or a map")
        if isinstance(node, (ast.JoinedStr, ast.FormattedValue)):
            raise self.err(node, "f-strings are not supported: use bpf.trace_printk(\"fmt %d\", x)")
        if isinstance(node, ast.NamedExpr):
            raise self.err(node, "`:=` is not supported: assign on its own line")
        raise self.err(node, f"{type(node).__name__} expressions are not supported in kernel code")

    def name(self, node: ast.Name) -> ir.Expr:
        """A local, a loop constant, or a module-level integer constant."""
        pos = self.pos(node)
        bound = self.bound.get(node.id)
        if isinstance(bound, ir.Expr):
            return bound  # a parameter of an @inline function
        if isinstance(bound, Place):
            return ir.Load(bound.type, pos, bound.base, bound.offset)
        if node.id in self.consts:
            return ir.Const(LIT, pos, self.consts[node.id])
        if node.id == self.ctx.name:
            self.ctx.uses += 1
            return ir.Local(self.ctx.type, pos, self.ctx)
        var = self.vars.get(node.id)
        if var is not None:
            self.use_var(var, node)
            if var.in_memory:
                return ir.Load(var.type, pos, ir.AddrOf(PtrType(var.type, "stack"), pos, var, 0), 0)
            return ir.Local(var.type, pos, var)
        value = self.lookup_global(node)
        if isinstance(value, bool):
            return ir.Const(LIT, pos, int(value))
        if isinstance(value, int):
            return ir.Const(LIT, pos, value)
        if isinstance(value, MapDecl):
            raise self.err(node, f"map {node.id} is used with m[k], m.get(k, 0), k in m, m.increment(k), "
                                 f"m.lookup(k) or output()/reserve(); not as a value")
        if getattr(value, "__wrapped_kernel__", None) is not None or value is self.fn:
            raise self.err(node, "calling kernel functions (and recursion) is not supported: inline the code")
        raise self.err(node, f"{node.id} is a {type(value).__name__}; kernel code can use integers, "
                             f"maps, structs and bpf.<helper> from module level")

    def binop_name(self, op: ast.operator, node: ast.AST) -> str:
        """The IR name of a Python arithmetic operator."""
        name = _BINOPS.get(type(op))
        if name is None:
            if isinstance(op, ast.Div):
                raise self.err(node, "`/` is float division: use `//` for integer division")
            if isinstance(op, ast.Pow):
                raise self.err(node, "`**` is only supported between constants: use `<<` for powers of two")
            raise self.err(node, f"operator {type(op).__name__} is not supported")
        return name

    def binop(self, node: ast.BinOp) -> ir.Expr:
        """Arithmetic with C-like typing."""
        pos = self.pos(node)
        if isinstance(node.op, ast.Pow):
            a, b = const_value(self.expr(node.left)), const_value(self.expr(node.right))
            if a is None or b is None or b < 0:
                self.binop_name(node.op, node)
            return ir.Const(LIT, pos, int(a) ** int(b))  # type: ignore[arg-type]
        op = self.binop_name(node.op, node)
        left, right = self.expr(node.left), self.expr(node.right)
        if isinstance(left.type, PtrType) or isinstance(right.type, PtrType):
            raise self.err(node, "pointer arithmetic is not supported: use fields, array indexes "
                                 "or ctx.header(T, offset)")
        for side, e in ((node.left, left), (node.right, right)):
            if not isinstance(e.type, IntType):
                raise self.err(side, f"arithmetic needs integers, not {e.type!r}")
        assert isinstance(left.type, IntType) and isinstance(right.type, IntType)
        t = common(left.type, right.type) if op not in ("<<", ">>") else (
            promote(left.type) if left.type is not LIT else LIT)
        if t.signed and t is not LIT and op in ("//", "%") and not (
                isinstance(right, ir.Const) and right.value > 0 and const_value(left) is not None):
            raise self.err(node, f"signed `{op}` is not supported "
                                 f"(BPF divides unsigned): cast to an unsigned type, e.g. u64(x) {op} y")
        left = self.convert(left, t, node.left) if t is not LIT else left
        right = self.convert(right, t if op not in ("<<", ">>") else (right.type if right.type is not LIT else t),
                             node.right) if t is not LIT else right
        return fold(ir.BinOp(t, pos, op, left, right))

    def unary(self, node: ast.UnaryOp) -> ir.Expr:
        """``-x``, ``~x``, ``+x``, ``not x``."""
        pos = self.pos(node)
        if isinstance(node.op, ast.Not):
            return fold(ir.Not(BOOL, pos, self.cond(node.operand)))
        e = self.int_expr(node.operand, "the operand")
        assert isinstance(e.type, IntType)
        if isinstance(node.op, ast.UAdd):
            return e
        t = promote(e.type) if e.type is not LIT else LIT
        e = self.convert(e, t, node) if t is not LIT else e
        return fold(ir.Unary(t, pos, "-" if isinstance(node.op, ast.USub) else "~", e))

    # -- conditions -----------------------------------------------------------------------------------

    def cond(self, node: ast.expr) -> ir.Expr:
        """A condition: comparisons, ``and``/``or``/``not``, None checks, ``k in m``, or any integer."""
        pos = self.pos(node)
        if isinstance(node, ast.BoolOp):
            op = "and" if isinstance(node.op, ast.And) else "or"
            values = []
            saved = set(self.state.nonnull)
            for v in node.values:
                values.append(self.cond(v))
                t, f = self.narrowing(v)
                self.state.nonnull |= t if op == "and" else f  # later operands run only when this one passed
            self.state.nonnull = saved
            return fold(ir.BoolOp(BOOL, pos, op, values))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            return fold(ir.Not(BOOL, pos, self.cond(node.operand)))
        if isinstance(node, ast.Compare):
            parts = []
            lhs = node.left
            for cmp_op, rhs in zip(node.ops, node.comparators):
                parts.append(self.compare(lhs, cmp_op, rhs, node))
                lhs = rhs
            return parts[0] if len(parts) == 1 else fold(ir.BoolOp(BOOL, pos, "and", parts))
        e = self.expr(node)
        if isinstance(e, (ir.Compare, ir.BoolOp, ir.Not)):
            return e
        if isinstance(e.type, (IntType, PtrType)):
            return ir.Compare(BOOL, pos, "!=", e, ir.Const(e.type if isinstance(e.type, IntType) else u64, pos, 0))
        raise self.err(node, f"a {e.type!r} is not a condition")

    def compare(self, left_node: ast.expr, op: ast.cmpop, right_node: ast.expr, node: ast.AST) -> ir.Expr:
        """One comparison."""
        pos = self.pos(node)
        if isinstance(op, (ast.Is, ast.IsNot)):
            if not (isinstance(right_node, ast.Constant) and right_node.value is None):
                raise self.err(node, "`is` is only supported as `p is None` / `p is not None`")
            e = self.expr(left_node)
            if not isinstance(e.type, PtrType):
                raise self.err(left_node, f"{ast.unparse(left_node)} is a {e.type!r}, never None")
            return ir.Compare(BOOL, pos, "==" if isinstance(op, ast.Is) else "!=", e, ir.Const(u64, pos, 0))
        if isinstance(op, (ast.In, ast.NotIn)):
            if self.map_of(right_node) is None:
                raise self.err(node, "`in` is only supported as `key in m` for a map m")
            e = self.map_op("contains", right_node, [left_node], node)
            return e if isinstance(op, ast.In) else ir.Not(BOOL, pos, e)
        name = _CMPOPS.get(type(op))
        if name is None:
            raise self.err(node, f"comparison {type(op).__name__} is not supported")
        for a, b in ((left_node, right_node), (right_node, left_node)):
            if isinstance(b, ast.Constant) and isinstance(b.value, (bytes, str)):
                return self.compare_bytes(a, b.value, name, node)
        left, right = self.int_expr(left_node, "a compared value"), self.int_expr(right_node, "a compared value")
        assert isinstance(left.type, IntType) and isinstance(right.type, IntType)
        t = common(left.type, right.type)
        if t is not LIT:
            left, right = self.convert(left, t, left_node), self.convert(right, t, right_node)
        if isinstance(left, ir.Const) and not isinstance(right, ir.Const):
            left, right, name = right, left, _SWAP_CMP[name]
        return fold(ir.Compare(BOOL, pos, name, left, right, t.signed and t is not LIT))

    def compare_bytes(self, node: ast.expr, const: bytes | str, op: str, where: ast.AST) -> ir.Expr:
        """``ev.comm == b"bash"``: the array holds the string and a NUL (or is exactly full), compared
        8, 4, 2 and 1 bytes at a time."""
        pos = self.pos(where)
        if op not in ("==", "!="):
            raise self.err(where, "strings compare with == and != only")
        if not isinstance(node, (ast.Name, ast.Attribute, ast.Subscript)):
            raise self.err(node, "compare a char[N] field or local with a string constant")
        place = self.place(node)
        t = place.type
        if not (isinstance(t, ArrayType) and isinstance(t.elem, IntType) and t.elem.size == 1):
            raise self.err(node, f"{ast.unparse(node)} is a {t!r}: only char[N]/u8[N] compare with a string")
        data = const.encode() if isinstance(const, str) else const
        if len(data) > t.n:
            return ir.Const(BOOL, pos, int(op == "!="))  # cannot hold it
        if len(data) < t.n:
            data += b"\0"  # the string ends there
        parts: list[ir.Expr] = []
        off = 0
        while off < len(data):
            size = next(s for s in (8, 4, 2, 1) if off + s <= len(data))
            load_t = {8: u64, 4: u32, 2: u16, 1: u8}[size]
            cls = ir.KLoad if place.kernel else ir.Load
            chunk = cls(load_t, pos, place.base, place.offset + off)
            want = int.from_bytes(data[off:off + size], "little")
            parts.append(ir.Compare(BOOL, pos, "==", chunk, ir.Const(load_t, pos, want)))
            off += size
        same = parts[0] if len(parts) == 1 else ir.BoolOp(BOOL, pos, "and", parts)
        return same if op == "==" else ir.Not(BOOL, pos, same)

    def narrowing(self, node: ast.expr) -> tuple[set[ir.Var], set[ir.Var]]:
        """Pointers known not None when ``node`` is true, and when it is false."""
        if isinstance(node, ast.Name):
            var = self.vars.get(node.id)
            if var is not None and isinstance(var.type, PtrType):
                return {var}, set()
            return set(), set()
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            t, f = self.narrowing(node.operand)
            return f, t
        if isinstance(node, ast.Compare) and len(node.ops) == 1 and isinstance(node.left, ast.Name):
            var = self.vars.get(node.left.id)
            right = node.comparators[0]
            if var is not None and isinstance(right, ast.Constant) and right.value is None:
                if isinstance(node.ops[0], ast.Is):
                    return set(), {var}
                if isinstance(node.ops[0], ast.IsNot):
                    return {var}, set()
        if isinstance(node, ast.BoolOp):
            parts = [self.narrowing(v) for v in node.values]
            if isinstance(node.op, ast.And):
                return set().union(*(p[0] for p in parts)), set()
            return set(), set().union(*(p[1] for p in parts))
        return set(), set()

    # -- places ---------------------------------------------------------------------------------------

    def place(self, node: ast.expr) -> Place:
        """The memory an attribute/subscript chain names."""
        pos = self.pos(node)
        if isinstance(node, ast.Name) and node.id in self.bound:
            bound = self.bound[node.id]
            if isinstance(bound, Place):
                return bound
            raise self.err(node, f"{node.id} is an integer; it has no fields or elements")
        if isinstance(node, ast.Name):
            if node.id == self.ctx.name:
                self.ctx.uses += 1
                assert isinstance(self.ctx.type, PtrType)
                return Place(ir.Local(self.ctx.type, pos, self.ctx), 0, self.ctx.type.target)
            var = self.vars.get(node.id)
            if var is None:
                raise self.err(node, f"{node.id} is not a local struct, array or pointer")
            self.use_var(var, node)
            if var.in_memory:
                return Place(ir.AddrOf(PtrType(var.type, "stack"), pos, var, 0), 0, var.type)
            if isinstance(var.type, KPtrType):
                return Place(ir.Local(var.type, pos, var), 0, self.kernel_layout(var.type, node), kernel=True)
            if isinstance(var.type, PtrType):
                if var not in self.state.nonnull:
                    raise self.err(node, f"{var.name} may be None here: check it first "
                                         f"(`if {var.name} is None: return 0`)")
                return Place(ir.Local(var.type, pos, var), 0, var.type.target)
            raise self.err(node, f"{var.name} is an integer; it has no fields or elements")
        if isinstance(node, ast.Attribute):
            base = self.place(node.value)
            if isinstance(base.type, KPtrType):  # through a pointer field: read the pointer, then the struct
                value = (ir.KLoad if base.kernel else ir.Load)(u64, pos, base.base, base.offset)
                base = Place(value, 0, self.kernel_layout(base.type, node), kernel=True)
            if not isinstance(base.type, StructType):
                raise self.err(node, f"{ast.unparse(node.value)} is a {base.type!r}; it has no field {node.attr!r}")
            if base.type is getattr(self.ctx.type, "target", None) and node.attr in ("data", "data_end", "data_meta"):
                raise self.err(node, f"ctx.{node.attr} is a packet pointer: read packet headers with "
                                     f"ctx.header(StructClass, offset), which checks the bounds")
            f = base.type.field(node.attr)
            if f is None:
                names = ", ".join(n for n, _, _ in base.type.fields[:12])
                raise self.err(node, f"{base.type!r} has no field {node.attr!r} (fields: {names})")
            return Place(base.base, base.offset + f[1], f[0], base.readonly, base.kernel)
        if isinstance(node, ast.Subscript):
            base = self.place(node.value)
            if isinstance(base.type, IntType) and isinstance(base.base, ir.Local) and base.offset == 0 \
                    and isinstance(base.base.type, PtrType):
                if const_value(self.expr(node.slice)) != 0:
                    raise self.err(node.slice, "a pointer to one value is indexed with [0] only")
                return base  # p[0]: the value a lookup() pointer points at
            if not isinstance(base.type, ArrayType):
                raise self.err(node, f"{ast.unparse(node.value)} is a {base.type!r}, not an array")
            if isinstance(node.slice, ast.Slice):
                raise self.err(node, "slices are not supported: index one element at a time")
            index_expr = self.expr(node.slice)
            index = const_value(index_expr)
            if index is None:
                return self.variable_index(node, base, index_expr)
            if not 0 <= index < base.type.n:
                raise self.err(node.slice, f"index {index} is out of bounds for {base.type!r}")
            return Place(base.base, base.offset + index * base.type.elem.size, base.type.elem, base.readonly,
                         base.kernel)
        if isinstance(node, ast.Call):
            e = self.expr(node)
            raise self.err(node, f"the result of a call ({e.type!r}) has no fields: assign it to a local "
                                 f"and check it for None first")
        raise self.err(node, f"{ast.unparse(node)} is not a field, element or local")

    def variable_index(self, node: ast.Subscript, base: Place, index: ir.Expr) -> Place:
        """``a[i]`` with ``i`` known only at run time: an integer element of an array in this program's
        memory (a local or a map value), read as 0 / not written when ``i`` is out of range."""
        assert isinstance(base.type, ArrayType)
        space = base.base.type.space if isinstance(base.base.type, PtrType) else ""
        if base.kernel or space in ("ctx", "packet") or not isinstance(base.type.elem, IntType):
            raise self.err(node.slice, "array indexes must be constants here (the variable of a loop of at most "
                                       "64 iterations is): only integer arrays in locals and map values take "
                                       "an index known at run time")
        if not isinstance(index.type, IntType):
            raise self.err(node.slice, f"an array index must be an integer, not {index.type!r}")
        pos = self.pos(node)
        elem = base.type.elem
        addr = ir.IndexAddr(PtrType(elem, space or "stack"), pos, base.address(pos),
                            self.convert(index, u64, node.slice), base.type.n, elem.size)
        return Place(addr, 0, elem, base.readonly)

    def kernel_layout(self, t: KPtrType, node: ast.AST) -> StructType:
        """The struct a kernel pointer points at (from the kernel's BTF)."""
        try:
            layout = t.target.layout()
        except KeyError as exc:
            raise self.err(node, f"{exc.args[0]}: pick a struct this kernel has") from None
        assert isinstance(layout, StructType)
        return layout

    # -- calls ----------------------------------------------------------------------------------------

    def call(self, node: ast.Call, statement: bool) -> ir.Expr:
        """Helpers, casts, map methods, ring buffer methods and ``ctx.header``."""
        from ebpf.lang.calls import check_call

        return check_call(self, node, statement)

    def map_op(self, op: str, map_node: ast.expr, args: list[ast.expr], node: ast.AST) -> ir.Expr:
        """A map operation on the map ``map_node`` names."""
        from ebpf.lang.calls import check_map_op

        return check_map_op(self, op, map_node, args, node)

    def helper_of(self, func: ast.expr) -> _Helper | None:
        """The helper ``bpf.<name>`` refers to, or None."""
        if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id not in self.vars:
            owner = self.namespace.get(func.value.id)
            from ebpf.lang.helpers import _Bpf

            if isinstance(owner, _Bpf):
                return _Helper(func.attr)
        return None


