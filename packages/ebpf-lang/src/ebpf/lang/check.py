"""The checker: a kernel function's Python AST -> typed IR, refusing what the subset lacks.

Statements are handled here; expressions in :mod:`ebpf.lang.check_expr`.  Flow facts follow
the code the way the verifier will: which locals are assigned on every path, and which
pointers (map lookups, ring buffer reservations, packet headers) were checked for None.
``for`` loops over ``range(CONST)`` are unrolled, so the loop variable is a constant in each
copy of the body (array indexes by it are checked at compile time).
"""

from __future__ import annotations

import ast
import inspect
import textwrap
from collections.abc import Callable
from typing import Any

from ebpf.core.records import dataclass, field
from ebpf.lang import ir
from ebpf.lang.check_expr import ExprChecker, Place
from ebpf.lang.ctx import CtxType
from ebpf.lang.errors import LangError, Where
from ebpf.lang.opt import LIT, const_value, terminates
from ebpf.lang.types import ArrayType, IntType, KPtrType, PtrType, StructType, i64, type_of_annotation, u64

__all__ = ["check_function", "MAX_UNROLL"]

#: Loops of at most this many iterations are unrolled (the loop variable is a constant in each
#: copy); longer ones compile to a loop the verifier bounds (kernels >= 5.3).
MAX_UNROLL = 64

_REFUSED: dict[type, str] = {
    ast.While: "while loops are not compiled (the verifier needs a bound): write `for i in range(N):` "
               "with a constant N, and `break` to stop early",
    ast.With: "`with` is not supported in kernel code",
    ast.Try: "try/except is not supported in kernel code: check values with `if` instead",
    ast.Raise: "raise is not supported in kernel code: return an error code instead",
    ast.FunctionDef: "nested functions are not supported: define kernel functions at module level",
    ast.AsyncFunctionDef: "async functions are not supported in kernel code",
    ast.ClassDef: "classes must be defined at module level, outside kernel functions",
    ast.Global: "`global` is not supported: keep state in maps",
    ast.Nonlocal: "`nonlocal` is not supported: keep state in maps",
    ast.Import: "imports inside kernel functions are not supported: import at module level",
    ast.ImportFrom: "imports inside kernel functions are not supported: import at module level",
    ast.Assert: "assert is not supported: use `if not cond: return 0`",
}


@dataclass
class State:
    """Flow facts at a point: locals assigned on every path, pointers known not None."""

    assigned: set[ir.Var] = field(default_factory=set)
    nonnull: set[ir.Var] = field(default_factory=set)

    def copy(self) -> State:
        """An independent copy."""
        return State(set(self.assigned), set(self.nonnull))

    @staticmethod
    def merge(states: list[State]) -> State:
        """What holds after paths meet: facts true on all of them."""
        if not states:
            return State()
        out = states[0].copy()
        for s in states[1:]:
            out.assigned &= s.assigned
            out.nonnull &= s.nonnull
        return out


def _source(fn: Callable[..., Any]) -> tuple[ast.FunctionDef, str, int, int, list[str]]:
    try:
        lines, first = inspect.getsourcelines(fn)
        filename = inspect.getsourcefile(fn) or "<unknown>"
    except (OSError, TypeError) as exc:
        raise LangError(f"cannot read the source of {getattr(fn, '__name__', fn)!r}: define kernel functions in a file",
                        "<unknown>") from exc
    text = textwrap.dedent("".join(lines))
    indent = len(lines[0]) - len(lines[0].lstrip()) if lines else 0
    tree = ast.parse(text)
    node = tree.body[0]
    if not isinstance(node, ast.FunctionDef):
        raise LangError("@kernel applies to plain `def` functions", filename, first)
    return node, filename, first, indent, text.splitlines()


class FunctionChecker(ExprChecker):
    """Checks one function; see :func:`check_function`."""

    def __init__(self, fn: Callable[..., Any], ctx_type: CtxType | None) -> None:
        """Parse ``fn`` and prepare its scope (globals, closure constants)."""
        node, filename, first, indent, lines = _source(fn)
        self.node = node
        self.where = Where(filename, first, indent)
        self.source_lines = {first + i: line.strip() for i, line in enumerate(lines)}
        namespace = dict(fn.__globals__)
        closure = inspect.getclosurevars(fn).nonlocals
        namespace.update(closure)
        self.fn = fn
        self.loop_labels: list[tuple[str, str]] = []  # (break label, continue label)
        self.jump_states: dict[str, list[State]] = {}  # label -> flow facts where break/continue jump to it
        self.loop_vars: set[ir.Var] = set()  # counters of loops that are not unrolled
        self.active_loop_vars: set[ir.Var] = set()
        self.label_count = 0
        args = node.args
        if args.posonlyargs or args.vararg or args.kwonlyargs or args.kwarg or len(args.args) != 1:
            raise self.where.error(node, "a kernel function takes exactly one argument, the context: "
                                         "`def prog(ctx: ct.xdp_md) -> int:`")
        ctx_arg = args.args[0]
        if ctx_arg.annotation is not None:  # the annotation wins over the section's default
            ann = self._eval_annotation(ctx_arg.annotation, namespace)
            if not isinstance(ann, CtxType):
                raise self.where.error(ctx_arg, f"the context annotation {ast.unparse(ctx_arg.annotation)} is not a "
                                                f"context type: use ct.<kernel struct>, e.g. ct.xdp_md")
            ctx_type = ann
        ctx_layout: StructType | None = None
        if ctx_type is not None:
            try:
                ctx_layout = ctx_type.layout()
            except KeyError as exc:
                raise self.where.error(ctx_arg, f"{exc.args[0]}: pick a context struct this kernel has") from None
        ctx_var = ir.Var(ctx_arg.arg, PtrType(ctx_layout or StructType("ctx", [], 0, 8), "ctx"))
        super().__init__(self.where, namespace, ctx_var, fn)
        self.state = State({ctx_var}, {ctx_var})

    def _eval_annotation(self, node: ast.expr, namespace: dict[str, Any]) -> Any:
        try:
            return eval(compile(ast.Expression(node), "<annotation>", "eval"), namespace)
        except Exception as exc:
            raise self.where.error(node, f"cannot evaluate annotation {ast.unparse(node)}: {exc}") from None

    def check(self) -> ir.Function:
        """Build the function's IR."""
        body = self.block(self.node.body)
        if not terminates(body):
            end = (self.where.line(self.node.body[-1]), 1)
            body.append(ir.Return(end, ir.Const(i64, end, 0)))
        return ir.Function(self.node.name, self.ctx, body, list(self.vars.values()), self.where.filename,
                           self.source_lines, self.maps_used, self.where.first_line, self.where.line(self.node))

    # -- statements ---------------------------------------------------------------------------------

    def block(self, stmts: list[ast.stmt]) -> list[ir.Stmt]:
        """Check statements in order (what follows a return/break is not checked: it is dead)."""
        out: list[ir.Stmt] = []
        for s in stmts:
            out.extend(self.stmt(s))
            if terminates(out):
                break
        return out

    def stmt(self, s: ast.stmt) -> list[ir.Stmt]:
        """One statement -> IR statements."""
        pos = self.pos(s)
        refused = _REFUSED.get(type(s))
        if refused:
            raise self.where.error(s, refused)
        if isinstance(s, ast.Pass):
            return []
        if isinstance(s, ast.Expr):
            if isinstance(s.value, ast.Constant) and isinstance(s.value.value, str):
                return []  # docstring
            return [ir.ExprStmt(pos, self.expr(s.value, statement=True))]
        if isinstance(s, ast.Return):
            if s.value is None:
                return [ir.Return(pos, ir.Const(i64, pos, 0))]
            value = self.int_expr(s.value, "the return value")
            return [ir.Return(pos, self.convert(value, i64, s.value))]
        if isinstance(s, ast.Assign):
            if len(s.targets) != 1 or isinstance(s.targets[0], (ast.Tuple, ast.List)):
                raise self.where.error(s, "assign one target at a time (`a = x` then `b = y`); "
                                          "tuple unpacking is not supported")
            return self.assign(s.targets[0], s.value, None, s)
        if isinstance(s, ast.AnnAssign):
            t = self._eval_annotation(s.annotation, self.namespace)
            lt = KPtrType(t) if isinstance(t, CtxType) else type_of_annotation(t)  # task: ct.task_struct = addr
            if lt is None:
                raise self.where.error(s.annotation, f"{ast.unparse(s.annotation)} is not a type: "
                                                     f"use u8..u64, i8..i64, T[N] or a Struct class")
            if s.value is None:
                raise self.where.error(s, "give the variable a value: `x: u32 = 0`")
            return self.assign(s.target, s.value, lt, s)
        if isinstance(s, ast.AugAssign):
            return self.aug_assign(s)
        if isinstance(s, ast.If):
            return self.if_stmt(s)
        if isinstance(s, ast.For):
            return self.for_stmt(s)
        if isinstance(s, (ast.Break, ast.Continue)):
            if not self.loop_labels:
                raise self.where.error(s, f"`{'break' if isinstance(s, ast.Break) else 'continue'}` outside a loop")
            brk, cont = self.loop_labels[-1]
            target = brk if isinstance(s, ast.Break) else cont
            self.jump_states.setdefault(target, []).append(self.state.copy())
            return [ir.Jump(pos, target)]
        if isinstance(s, ast.Delete):
            out: list[ir.Stmt] = []
            for t in s.targets:
                if not isinstance(t, ast.Subscript) or self.map_of(t.value) is None:
                    raise self.where.error(t, "only `del m[key]` of a map is supported")
                out.append(ir.ExprStmt(pos, self.map_op("delete", t.value, [t.slice], t)))
            return out
        raise self.where.error(s, f"{type(s).__name__} statements are not supported in kernel code")

    def assign(self, target: ast.expr, value: ast.expr, ann: Any, s: ast.stmt) -> list[ir.Stmt]:
        """``target = value`` (``ann``: a declared type for a new local)."""
        pos = self.pos(s)
        if isinstance(target, ast.Name):
            return self.assign_name(target, value, ann, pos)
        if isinstance(target, ast.Subscript) and self.map_of(target.value) is not None:
            return [ir.ExprStmt(pos, self.map_op("update", target.value, [target.slice, value], target))]
        place = self.place(target)
        return [self.store(place, value, target)]

    def copy_from(self, dst: Place, value: ast.expr, node: ast.AST) -> ir.Stmt | None:
        """``dst = <a struct or array of the same type>``: a byte copy; None when ``value`` is not one."""
        if not isinstance(value, (ast.Name, ast.Attribute, ast.Subscript)) or self.map_of(value) is not None:
            return None
        try:
            src = self.place(value)
        except LangError:
            return None
        if not isinstance(src.type, (StructType, ArrayType)):
            return None
        if src.type is not dst.type:
            raise self.where.error(value, f"cannot copy a {src.type!r} into a {dst.type!r}")
        if src.kernel:
            raise self.where.error(value, "copy kernel memory with bpf.probe_read_kernel(dst, addr)")
        if dst.kernel or dst.readonly:
            raise self.where.error(node, "kernel memory is read-only here: copy what you need into a local or a struct")
        return ir.Copy(self.pos(node), dst.base, dst.offset, src.base, src.offset, src.type.size)

    def store(self, place: Place, value: ast.expr, node: ast.expr) -> ir.Stmt:
        """Write ``value`` to a field/element ``place``."""
        if isinstance(place.type, (StructType, ArrayType)):
            copied = self.copy_from(place, value, node)
            if copied is not None:
                return copied
        if isinstance(place.type, ArrayType) and isinstance(place.type.elem, IntType) and place.type.elem.size == 1:
            raise self.where.error(node, "assigning to a char[N] is not supported: fill it with a helper "
                                         "(bpf.get_current_comm(ev.comm), bpf.probe_read_user_str(ev.name, addr))")
        if not isinstance(place.type, IntType):
            raise self.where.error(node, f"cannot assign a whole {place.type!r}: assign its fields one by one")
        if place.kernel:
            raise self.where.error(node, "kernel memory is read-only here: copy what you need into a local or a struct")
        if place.readonly:
            raise self.where.error(node, f"{ast.unparse(node)} is read-only")
        v = self.convert(self.int_expr(value, "the assigned value"), place.type, value)
        return ir.Store(self.pos(node), place.base, place.offset, place.type, v)

    def assign_name(self, target: ast.Name, value: ast.expr, ann: Any, pos: ir.Pos) -> list[ir.Stmt]:
        """``name = value``: declares the local on first assignment."""
        name = target.id
        if name in self.consts or (name in self.vars and self.vars[name] in self.active_loop_vars):
            raise self.where.error(target, f"{name} is a loop variable; assign to another name")
        if name == self.ctx.name:
            raise self.where.error(target, f"{name} is the context; assign to another name")
        var = self.vars.get(name)
        st = self.struct_ctor(value)
        if st is not None:  # ev = Event()  -> a zeroed struct on the stack
            if var is None:
                var = self.vars[name] = ir.Var(name, st)
            elif var.type is not st:
                raise self.where.error(target, f"{name} is a {var.type!r}, not a {st!r}")
            self.state.assigned.add(var)
            assert isinstance(value, ast.Call)
            out: list[ir.Stmt] = [ir.Zero(pos, var)]
            for kw in value.keywords:
                if kw.arg is None:
                    raise self.where.error(kw, "**kwargs is not supported")
                f = st.field(kw.arg)
                if f is None:
                    raise self.where.error(kw, f"{st!r} has no field {kw.arg!r}")
                out.append(self.store(Place(ir.AddrOf(PtrType(st, "stack"), pos, var, 0), f[1], f[0]), kw.value, kw.value))
            return out
        if isinstance(value, (ast.Name, ast.Attribute, ast.Subscript)) and self.map_of(value) is None \
                and (var is None or var.in_memory) and not (isinstance(value, ast.Name) and value.id in self.vars
                                                            and not self.vars[value.id].in_memory):
            src_t = self._aggregate_type(value)
            if src_t is not None:  # snapshot = ev / p.inner: a copy into a struct local
                if var is None:
                    var = self.vars[name] = ir.Var(name, src_t)
                copied = self.copy_from(Place(ir.AddrOf(PtrType(var.type, "stack"), pos, var, 0), 0, var.type),
                                        value, value)
                if copied is not None:
                    self.state.assigned.add(var)
                    return [copied]
        e = self.expr(value)
        if isinstance(e.type, (StructType, ArrayType)):
            raise self.where.error(value, f"cannot copy a whole {e.type!r} into {name}: copy its fields")
        if var is None:
            t = ann if ann is not None else (i64 if e.type is LIT else e.type)
            var = self.vars[name] = ir.Var(name, t)
        elif ann is not None and ann is not var.type:
            raise self.where.error(target, f"{name} was declared {var.type!r} before")
        if var.in_memory:
            raise self.where.error(target, f"{name} is a {var.type!r}; assign its fields")
        if isinstance(var.type, PtrType):
            if not isinstance(e.type, PtrType) or e.type.target is not var.type.target:
                raise self.where.error(value, f"{name} holds a {var.type!r}; cannot assign a {e.type!r} to it")
            self.state.nonnull.discard(var)
            if not e.type.nullable or (isinstance(e, ir.Local) and e.var in self.state.nonnull):
                self.state.nonnull.add(var)
        else:
            if isinstance(e.type, PtrType):
                raise self.where.error(value, f"{name} is an integer ({var.type!r}); cannot assign a pointer to it")
            e = self.convert(e, var.type, value)
        self.state.assigned.add(var)
        return [ir.Assign(pos, var, e)]

    def _aggregate_type(self, value: ast.expr) -> StructType | ArrayType | None:
        """The struct/array type ``value`` names, when it names one (without side effects on errors)."""
        try:
            place = self.place(value)
        except LangError:
            return None
        return place.type if isinstance(place.type, (StructType, ArrayType)) else None

    def aug_assign(self, s: ast.AugAssign) -> list[ir.Stmt]:
        """``x += v``; ``m[k] += v`` is an atomic add on the map value."""
        pos = self.pos(s)
        op = self.binop_name(s.op, s)
        if isinstance(s.target, ast.Subscript) and self.map_of(s.target.value) is not None:
            if op not in ("+", "-"):
                raise self.where.error(s, "only `m[k] += v` / `m[k] -= v` are supported on maps")
            amount: ast.expr = s.value if op == "+" else ast.copy_location(ast.UnaryOp(ast.USub(), s.value), s.value)
            return [ir.ExprStmt(pos, self.map_op("increment", s.target.value, [s.target.slice, amount], s.target))]
        if isinstance(s.target, ast.Name):
            load = ast.copy_location(ast.Name(s.target.id, ast.Load()), s.target)
            new = ast.copy_location(ast.BinOp(load, s.op, s.value), s)
            return self.assign_name(s.target, new, None, pos)
        place = self.place(s.target)
        base_t = place.base.type
        if (op in ("+", "-") and isinstance(base_t, PtrType) and base_t.space == "map"
                and isinstance(place.type, IntType) and place.type.size in (4, 8)):
            # Map values are shared by every CPU: += / -= on them is one atomic add.
            add = self.convert(self.int_expr(s.value, "the amount"), place.type, s.value)
            if op == "-":
                add = ir.Unary(place.type, pos, "-", add)
            return [ir.AtomicAdd(pos, place.base, place.offset, place.type, add)]
        load_node = ast.copy_location(ast.BinOp(s.target, s.op, s.value), s)
        return [self.store(place, load_node, s.target)]

    def if_stmt(self, s: ast.If) -> list[ir.Stmt]:
        """``if``/``elif``/``else`` with None checks narrowing pointers in the branches."""
        pos = self.pos(s)
        cond = self.cond(s.test)
        when_true, when_false = self.narrowing(s.test)
        before = self.state
        self.state = before.copy()
        self.state.nonnull |= when_true
        body = self.block(s.body)
        after_body = self.state
        self.state = before.copy()
        self.state.nonnull |= when_false
        orelse = self.block(s.orelse)
        after_else = self.state
        falls = [st for st, b in ((after_body, body), (after_else, orelse)) if not terminates(b)]
        self.state = State.merge(falls) if falls else before.copy()
        return [ir.If(pos, cond, body, orelse)]

    def for_stmt(self, s: ast.For) -> list[ir.Stmt]:
        """``for i in range(...)`` with constant bounds, unrolled."""
        it = s.iter
        if not (isinstance(it, ast.Call) and isinstance(it.func, ast.Name) and it.func.id == "range"
                and 1 <= len(it.args) <= 3 and not it.keywords):
            raise self.where.error(it, "only `for i in range(N)` loops with constant bounds are supported "
                                       "(the verifier needs a bound)")
        if not isinstance(s.target, ast.Name):
            raise self.where.error(s.target, "the loop variable must be a plain name")
        if s.orelse:
            raise self.where.error(s.orelse[0], "for ... else is not supported")
        bounds = []
        for a in it.args:
            v = const_value(self.expr(a))
            if v is None:
                raise self.where.error(a, "range() bounds must be constants (the loop is unrolled); "
                                          "use a constant upper bound and `break`")
            bounds.append(v)
        if len(bounds) == 3 and bounds[2] == 0:
            raise self.where.error(it, "range() step must not be zero")
        values = range(*bounds)
        if len(values) > MAX_UNROLL:
            return self.bounded_loop(s, values)
        pos = self.pos(s)
        self.label_count += 1
        brk = f"loop{self.label_count}_end"
        name = s.target.id
        if name in self.vars and self.vars[name] not in self.loop_vars:
            raise self.where.error(s.target, f"{name} is already a local variable; name the loop variable differently")
        outer = self.consts.get(name)
        iterations: list[ir.Stmt] = []
        for k, value in enumerate(values):
            cont = f"{brk}_{k}"
            self.consts[name] = value
            self.loop_labels.append((brk, cont))
            body = self.block(s.body)
            self.loop_labels.pop()
            iterations.append(ir.Block(pos, body, cont))
            # The next iteration starts where this one fell off its end or continued.
            arriving = ([self.state] if not terminates(body) else []) + self.jump_states.pop(cont, [])
            self.state = State.merge(arriving)
        self.state = State.merge([self.state, *self.jump_states.pop(brk, [])])  # and where it broke out
        if outer is None:
            self.consts.pop(name, None)
        else:
            self.consts[name] = outer
        return [ir.Block(pos, iterations, brk)]

    def bounded_loop(self, s: ast.For, values: range) -> list[ir.Stmt]:
        """A loop too long to unroll: a counter the verifier sees bounded by the constant ``stop``."""
        assert isinstance(s.target, ast.Name)
        name, pos = s.target.id, self.pos(s)
        var = self.vars.get(name)
        t = u64 if min(values) >= 0 and values.stop >= 0 else i64  # unsigned when it can be: // and % work
        if var is None:
            var = self.vars[name] = ir.Var(name, t)
        elif var not in self.loop_vars or var.type is not t:
            raise self.where.error(s.target, f"{name} is already a local variable; name the loop variable differently")
        self.loop_vars.add(var)
        self.label_count += 1
        brk, cont = f"loop{self.label_count}_end", f"loop{self.label_count}_next"
        before = self.state.copy()
        before.assigned.add(var)
        self.state = before.copy()
        self.active_loop_vars.add(var)
        self.loop_labels.append((brk, cont))
        body = self.block(s.body)
        self.loop_labels.pop()
        self.active_loop_vars.discard(var)
        # After the loop: it may have run no iteration, some, or broken out anywhere.
        ends = ([self.state] if not terminates(body) else []) + self.jump_states.pop(cont, [])
        self.state = State.merge([before, *ends, *self.jump_states.pop(brk, [])])
        return [ir.Loop(pos, var, values.start, values.stop, values.step, body, brk, cont)]


def check_function(fn: Callable[..., Any], ctx_type: CtxType | None = None) -> ir.Function:
    """Type-check ``fn`` (a kernel function) and build its IR.

    :param ctx_type: the context type when the function's argument has no annotation.
    :raises LangError: for anything outside the subset, at its file, line and column.
    """
    return FunctionChecker(fn, ctx_type).check()

