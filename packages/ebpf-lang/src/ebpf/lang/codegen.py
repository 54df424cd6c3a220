"""IR -> BPF instructions (through ``ebpf.core.asm``), with the source position of each one.

Registers: locals used most get R6-R9 (callee-saved, they survive helper calls); the others
live in 8-byte stack slots (spilled).  Expressions are evaluated into scratch registers R0-R5;
scratch values still needed across a helper call are spilled to stack temporaries and
reloaded.  Helper arguments are evaluated straight into R1..R5.  The stack is the kernel's
512 bytes: struct locals, spilled locals, map keys and temporaries share it.
"""

from __future__ import annotations

from ebpf.core.asm import (
    AND,
    ARSH,
    DW,
    IMM,
    LD,
    PSEUDO_MAP_FD,
    Instruction,
    Label,
    Reg,
    alu64_imm,
    alu64_reg,
    atomic_add,
    call,
    exit_,
    jmp_a,
    jmp_imm,
    jmp_reg,
    ld_imm64,
    ldx_mem,
    mov32,
    mov64,
    st_mem,
    stx_mem,
)
from ebpf.core.asm.opcodes import (
    ADD,
    DIV,
    JEQ,
    JGE,
    JGT,
    JLE,
    JLT,
    JNE,
    JSGE,
    JSGT,
    JSLE,
    JSLT,
    LSH,
    MOD,
    MUL,
    OR,
    RSH,
    SUB,
    XOR,
)
from ebpf.core.records import dataclass, field
from ebpf.lang import ir
from ebpf.lang.errors import LangError
from ebpf.lang.opt import LIT, terminates
from ebpf.lang.types import IntType, LangType, i64

__all__ = ["Codegen", "Output"]

STACK_LIMIT = 512
_SIZES = {1: "b", 2: "h", 4: "w", 8: "dw"}
_ALU = {"+": ADD, "-": SUB, "*": MUL, "//": DIV, "%": MOD, "&": AND, "|": OR, "^": XOR, "<<": LSH, ">>": RSH}
_JUMP = {"==": JEQ, "!=": JNE, ">": JGT, ">=": JGE, "<": JLT, "<=": JLE}
_SJUMP = {"==": JEQ, "!=": JNE, ">": JSGT, ">=": JSGE, "<": JSLT, "<=": JSLE}
_NEGATE = {"==": "!=", "!=": "==", "<": ">=", ">=": "<", ">": "<=", "<=": ">"}
_CALLEE_SAVED = (Reg.R6, Reg.R7, Reg.R8, Reg.R9)
_SCRATCH = (Reg.R0, Reg.R1, Reg.R2, Reg.R3, Reg.R4, Reg.R5)


def _fits32(v: int) -> bool:
    return -(1 << 31) <= v < (1 << 31)


def _int(t: LangType) -> IntType:
    return t if isinstance(t, IntType) and t is not LIT else i64


@dataclass
class Output:
    """What code generation produced: instructions and labels, each instruction's source
    position, and which instructions load which map (by name)."""

    items: list[Instruction | Label] = field(default_factory=list)
    positions: list[ir.Pos] = field(default_factory=list)  # one per Instruction in items
    map_loads: list[tuple[int, str]] = field(default_factory=list)  # (index among instructions, map name)
    stack_size: int = 0


class Codegen:
    """Generates one function's code; see :meth:`run`."""

    def __init__(self, fn: ir.Function) -> None:
        """Prepare register and stack homes for ``fn``'s locals."""
        self.fn = fn
        self.out = Output()
        self.pos: ir.Pos = (fn.def_line, 1)
        self.n_insns = 0
        self.labels = 0
        self.stack = 0
        self.free_temps: list[int] = []
        self.busy: list[Reg] = []
        self.guards: list[str] = []  # skip labels of run-time index checks, placed after the access
        self.home_reg: dict[ir.Var, Reg] = {}
        self.home_stack: dict[ir.Var, int] = {}
        self._assign_homes()

    # -- emission -------------------------------------------------------------------------------------

    def emit(self, insn: Instruction) -> None:
        """Append one instruction at the current source position."""
        self.out.items.append(insn)
        self.out.positions.append(self.pos)
        self.n_insns += 1

    def label(self, name: str) -> None:
        """Place a label."""
        self.out.items.append(Label(name))

    def new_label(self, hint: str = "L") -> str:
        """A fresh label name."""
        self.labels += 1
        return f"{hint}{self.labels}"

    def error(self, message: str) -> LangError:
        """A LangError at the current position."""
        return LangError(message, self.fn.filename, self.pos[0], self.pos[1])

    # -- stack and registers --------------------------------------------------------------------------

    def alloc_stack(self, size: int) -> int:
        """Reserve ``size`` bytes (8-aligned) on the stack; returns the offset from R10."""
        self.stack += (size + 7) // 8 * 8
        if self.stack > STACK_LIMIT:
            raise self.error(f"the locals need more than the kernel's {STACK_LIMIT}-byte stack: "
                             f"use smaller structs, or keep big data in a per-CPU array map")
        self.out.stack_size = self.stack
        return -self.stack

    def temp(self) -> int:
        """An 8-byte stack temporary (returned with :meth:`release_temp`)."""
        return self.free_temps.pop() if self.free_temps else self.alloc_stack(8)

    def release_temp(self, off: int) -> None:
        """Give a temporary back."""
        self.free_temps.append(off)

    def _assign_homes(self) -> None:
        scalars = [v for v in [self.fn.ctx, *self.fn.locals] if not v.in_memory]
        scalars.sort(key=lambda v: (v is not self.fn.ctx, -v.uses))
        for i, var in enumerate(scalars):
            if i < len(_CALLEE_SAVED):
                self.home_reg[var] = _CALLEE_SAVED[i]
            else:
                self.home_stack[var] = self.alloc_stack(8)
        for var in self.fn.locals:
            if var.in_memory:
                self.home_stack[var] = self.alloc_stack(var.type.size)

    def alloc(self, prefer: Reg | None = None) -> Reg:
        """A free scratch register (``prefer`` when it is free)."""
        if prefer is not None and prefer in _SCRATCH and prefer not in self.busy:
            self.busy.append(prefer)
            return prefer
        for r in _SCRATCH:
            if r not in self.busy:
                self.busy.append(r)
                return r
        raise self.error("expression too complex for the scratch registers: split it into locals")

    def free(self, r: Reg) -> None:
        """Release a scratch register (no-op for a local's home register)."""
        if r in self.busy:
            self.busy.remove(r)

    # -- functions and statements ---------------------------------------------------------------------

    def run(self) -> Output:
        """Generate the whole function."""
        ctx_home = self.home_reg.get(self.fn.ctx)
        if self.fn.ctx.uses:
            if ctx_home is not None:
                self.emit(mov64(ctx_home, Reg.R1))
            else:
                self.emit(stx_mem("dw", Reg.R10, Reg.R1, self.home_stack[self.fn.ctx]))
        self.block(self.fn.body)
        self._share_exits()
        self._peephole()
        return self.out

    def _share_exits(self) -> None:
        """``r0 = K; exit`` repeated: later copies jump to the first (one instruction instead of two)."""
        items, positions = self.out.items, self.out.positions
        mov_r0, exit_code = mov64(Reg.R0, 0).code, exit_().code
        out_items: list[Instruction | Label] = []
        out_pos: list[ir.Pos] = []
        index_map: dict[int, int] = {}
        first: dict[int, str] = {}
        n = i = 0
        while i < len(items):
            item, nxt = items[i], items[i + 1] if i + 1 < len(items) else None
            if (isinstance(item, Instruction) and isinstance(nxt, Instruction) and item.code == mov_r0
                    and item.dst == 0 and nxt.code == exit_code):
                if item.imm in first:
                    index_map[n] = len(out_pos)
                    out_items.append(jmp_a(first[item.imm]))
                    out_pos.append(positions[n])
                    n, i = n + 2, i + 2
                    continue
                first[item.imm] = self.new_label("ret")
                out_items.append(Label(first[item.imm]))
            if isinstance(item, Instruction):
                index_map[n] = len(out_pos)
                out_pos.append(positions[n])
                n += 1
            out_items.append(item)
            i += 1
        self.out.items, self.out.positions = out_items, out_pos
        self.out.map_loads = [(index_map[k], name) for k, name in self.out.map_loads]

    def _peephole(self) -> None:
        """Drop jumps to the label that immediately follows them."""
        items, positions = self.out.items, self.out.positions
        keep_items: list[Instruction | Label] = []
        keep_pos: list[ir.Pos] = []
        index_map: dict[int, int] = {}
        n = 0
        for i, item in enumerate(items):
            if isinstance(item, Instruction):
                nxt = next((x for x in items[i + 1:] if isinstance(x, Instruction) or x.name == item.target), None)
                if item.code == jmp_a("x").code and item.target is not None and isinstance(nxt, Label) and all(
                        isinstance(x, Label) for x in items[i + 1: items.index(nxt)]):
                    n += 1
                    continue
                index_map[n] = len(keep_pos)
                keep_pos.append(positions[n])
                n += 1
            keep_items.append(item)
        self.out.items, self.out.positions = keep_items, keep_pos
        self.out.map_loads = [(index_map[i], name) for i, name in self.out.map_loads]

    def block(self, body: list[ir.Stmt]) -> None:
        """Statements in order."""
        from ebpf.lang.codegen_fuse import fuse_header_check

        i = 0
        while i < len(body):
            if i + 1 < len(body) and fuse_header_check(self, body[i], body[i + 1], self.fn.body):
                i += 2
                continue
            self.stmt(body[i])
            i += 1

    def stmt(self, s: ir.Stmt) -> None:
        """One statement."""
        self.pos = s.pos
        if isinstance(s, ir.Assign):
            assert s.var is not None and s.value is not None
            self.assign(s.var, s.value)
        elif isinstance(s, ir.Store):
            assert s.base is not None and s.value is not None and s.type is not None
            self.store(s.base, s.offset, s.type, s.value)
        elif isinstance(s, ir.AtomicAdd):
            assert s.base is not None and s.value is not None and s.type is not None
            v = self.value(s.value)
            b, off, owned = self.address(s.base, s.offset)
            self.emit(atomic_add(_SIZES[s.type.size], b, v, off))
            self.free(v)
            if owned:
                self.free(b)
            self.end_guards()
        elif isinstance(s, ir.Copy):
            self.copy(s)
        elif isinstance(s, ir.Zero):
            assert s.var is not None
            off = self.home_stack[s.var]
            for k in range(0, (s.var.type.size + 7) // 8 * 8, 8):
                self.emit(st_mem("dw", Reg.R10, off + k, 0))
        elif isinstance(s, ir.ExprStmt):
            assert s.expr is not None
            self.free(self.value(s.expr))
        elif isinstance(s, ir.Return):
            assert s.value is not None
            r = self.value(s.value, Reg.R0)
            if r != Reg.R0:
                self.emit(mov64(Reg.R0, r))
            self.free(r)
            self.emit(exit_())
        elif isinstance(s, ir.If):
            self.if_stmt(s)
        elif isinstance(s, ir.Block):
            self.block(s.body)
            self.label(s.label)
        elif isinstance(s, ir.Jump):
            self.emit(jmp_a(s.label))
        elif isinstance(s, ir.Loop):
            self.loop(s)
        else:  # pragma: no cover - the checker produces no other statements
            raise self.error(f"cannot generate {type(s).__name__}")
        assert not self.busy, f"scratch registers leaked: {self.busy}"

    def loop(self, s: ir.Loop) -> None:
        """``var = start; top: if not var < stop: break; body; next: var += step; goto top``."""
        assert s.var is not None
        pos, var, t = s.pos, s.var, _int(s.var.type)
        self.assign(var, ir.Const(t, pos, s.start))
        top = self.new_label("loop")
        self.label(top)
        local = ir.Local(t, pos, var)
        self.branch(ir.Compare(t, pos, "<" if s.step > 0 else ">", local, ir.Const(t, pos, s.stop), t.signed),
                    s.label, False)
        self.block(s.body)
        self.label(s.next_label)
        self.pos = pos
        self.assign(var, ir.BinOp(t, pos, "+", local, ir.Const(t, pos, t.wrap(s.step))))
        self.emit(jmp_a(top))
        self.label(s.label)

    def if_stmt(self, s: ir.If) -> None:
        """``if`` with the condition compiled to branches."""
        assert s.cond is not None
        else_l, end_l = self.new_label("else"), self.new_label("endif")
        self.branch(s.cond, else_l if s.orelse else end_l, False)
        self.block(s.body)
        if s.orelse:
            if not terminates(s.body):
                self.pos = s.pos
                self.emit(jmp_a(end_l))
            self.label(else_l)
            self.block(s.orelse)
        self.label(end_l)

    def assign(self, var: ir.Var, value: ir.Expr) -> None:
        """Store a value into a local's home."""
        home = self.home_reg.get(var)
        if home is not None:
            r = self.value(value, home)
            if r != home:
                self.emit(mov64(home, r))
                self.free(r)
            return
        off = self.home_stack[var]
        if isinstance(value, ir.Const) and _fits32(value.value):
            self.emit(st_mem("dw", Reg.R10, off, value.value))
            return
        r = self.value(value)
        self.emit(stx_mem("dw", Reg.R10, r, off))
        self.free(r)

    def address(self, base: ir.Expr, offset: int) -> tuple[Reg, int, bool]:
        """``(register, offset, owned)`` addressing ``base + offset``.

        For an element at a run-time index this emits the bounds check, whose skip label the
        caller places with :meth:`end_guards` right after its access.
        """
        if isinstance(base, ir.IndexAddr):
            return self.index_pointer(base), offset, True
        if isinstance(base, ir.AddrOf):
            assert base.var is not None
            return Reg.R10, self.home_stack[base.var] + base.offset + offset, False
        if isinstance(base, ir.Local) and base.var in self.home_reg:
            assert base.var is not None
            return self.home_reg[base.var], offset, False
        r = self.value(base)
        return r, offset, True

    def copy(self, s: ir.Copy) -> None:
        """A byte copy through a scratch register, 8, 4, 2 or 1 bytes at a time."""
        assert s.src is not None and s.dst is not None
        src, soff, src_owned = self.address(s.src, s.src_offset)
        dst, doff, dst_owned = self.address(s.dst, s.dst_offset)
        tmp = self.alloc()
        done = 0
        while done < s.size:
            # The widest access that fits and keeps both sides aligned (the verifier checks stack alignment).
            n = next(k for k in (8, 4, 2, 1)
                     if done + k <= s.size and (soff + done) % k == 0 and (doff + done) % k == 0)
            self.emit(ldx_mem(_SIZES[n], tmp, src, soff + done))
            self.emit(stx_mem(_SIZES[n], dst, tmp, doff + done))
            done += n
        self.free(tmp)
        for reg, owned in ((src, src_owned), (dst, dst_owned)):
            if owned:
                self.free(reg)
        self.end_guards()

    def index_pointer(self, e: ir.IndexAddr) -> Reg:
        """``base + index * size`` in a scratch register, after ``if index >= n: goto <skip>``."""
        assert e.index is not None and e.base is not None
        skip = self.new_label("oob")
        self.guards.append(skip)
        ri = self.value(e.index)
        self.emit(jmp_imm(JGE, ri, e.n, skip))
        if e.size > 1:
            self.emit(alu64_imm(LSH, ri, e.size.bit_length() - 1))  # sizes are 1, 2, 4, 8
        b, off, owned = self.address(e.base, 0)
        rp = b if owned else self.alloc()
        if not owned:
            self.emit(mov64(rp, b))
        if off:
            self.emit(add_imm(rp, off))
        self.emit(alu64_reg(ADD, rp, ri))
        self.free(ri)
        return rp

    def end_guards(self) -> None:
        """Place the skip labels of run-time index checks (after the guarded access)."""
        while self.guards:
            self.label(self.guards.pop())

    def store(self, base: ir.Expr, offset: int, t: LangType, value: ir.Expr) -> None:
        """``*(t *)(base + offset) = value``."""
        size = _SIZES[t.size]
        value = strip_casts(value, t.size)
        if isinstance(value, ir.Const) and _fits32(value.value):
            b, off, owned = self.address(base, offset)
            self.emit(st_mem(size, b, off, _int(t).wrap(value.value)))
        else:
            v, v_owned = self.operand(value, imm=False)
            assert isinstance(v, Reg)
            b, off, owned = self.address(base, offset)
            self.emit(stx_mem(size, b, v, off))
            if v_owned:
                self.free(v)
        if owned:
            self.free(b)
        self.end_guards()

    # -- values ---------------------------------------------------------------------------------------

    def normalize(self, r: Reg, t: LangType) -> None:
        """Make ``r`` hold ``t``'s value extended to 64 bits (after an operation that may overflow)."""
        t = _int(t)
        if t.size == 8:
            return
        if t.signed:
            shift = 64 - t.bits
            self.emit(alu64_imm(LSH, r, shift))
            self.emit(alu64_imm(ARSH, r, shift))
        elif t.size == 4:
            self.emit(mov32(r, r))
        else:
            self.emit(alu64_imm(AND, r, (1 << t.bits) - 1))

    def load_const(self, r: Reg, value: int) -> None:
        """``r = value`` (two slots when it does not fit 32 bits)."""
        if _fits32(value):
            self.emit(mov64(r, value))
        elif 0 <= value < (1 << 32):
            self.emit(mov32(r, value - (1 << 32) if value >= (1 << 31) else value))
        else:
            self.emit(ld_imm64(r, value & ((1 << 64) - 1)))

    def operand(self, e: ir.Expr, imm: bool = True) -> tuple[Reg | int, bool]:
        """A right-hand operand: an immediate (when ``imm``), a local's register (not owned), or a
        scratch register (owned)."""
        while isinstance(e, ir.Cast) and e.operand is not None and noop_cast(e.operand.type, e.type):
            e = e.operand
        if imm and isinstance(e, ir.Const) and _fits32(e.value):
            return e.value, False
        if isinstance(e, ir.Local) and e.var in self.home_reg:
            assert e.var is not None
            return self.home_reg[e.var], False
        return self.value(e), True

    def value(self, e: ir.Expr, dst: Reg | None = None) -> Reg:
        """Evaluate ``e`` into a scratch register the caller owns (``dst`` when given and possible).

        When fewer than two scratch registers are free and ``e`` needs more than one, the live
        ones are spilled to stack slots around the evaluation (and reloaded into the same
        registers), so expressions of any depth compile.
        """
        from ebpf.lang.codegen_ops import value_of

        free = len(_SCRATCH) - len(self.busy)
        if free >= 2 or isinstance(e, (ir.Const, ir.Local, ir.AddrOf)):
            return value_of(self, e, dst)
        saved = self.spill_busy()
        r = value_of(self, e, None)
        self.busy.remove(r)
        result = self.restore(saved, r)
        assert result is not None
        return result

    def target(self, dst: Reg | None) -> Reg:
        """``dst`` when it is a local's home register (written directly), else a scratch register."""
        if dst is not None and dst not in _SCRATCH:
            return dst
        return self.alloc(dst)

    def branch(self, e: ir.Expr, label: str, when: bool) -> None:
        """Jump to ``label`` when the truth of ``e`` equals ``when``; fall through otherwise."""
        if isinstance(e, ir.Const):
            if bool(e.value) == when:
                self.emit(jmp_a(label))
            return
        if isinstance(e, ir.Not):
            assert e.operand is not None
            self.branch(e.operand, label, not when)
            return
        if isinstance(e, ir.BoolOp):
            decisive = e.op == "or"  # the value of an operand that decides the whole expression
            if when == decisive:
                for v in e.values:
                    self.branch(v, label, when)
            else:
                skip = self.new_label("skip")
                for v in e.values[:-1]:
                    self.branch(v, skip, decisive)
                self.branch(e.values[-1], label, when)
                self.label(skip)
            return
        if isinstance(e, ir.MapOp) and e.op == "contains" and e.map is not None and e.map.kind in ("hash", "array"):
            from ebpf.lang.codegen_maps import key_arg, lookup

            temps: list[int] = []
            assert e.key is not None and e.map is not None
            p = lookup(self, e, key_arg(self, e.key, e.map.key, temps))
            self.emit(jmp_imm(JNE if when else JEQ, p, 0, label))
            self.free(p)
            for off in temps:
                self.release_temp(off)
            return
        if isinstance(e, ir.Compare):
            assert e.left is not None and e.right is not None
            op = e.op if when else _NEGATE[e.op]
            jop = (_SJUMP if e.signed else _JUMP)[op]
            left, _ = self.operand(e.left, imm=False)
            assert isinstance(left, Reg)
            right, owned = self.operand(e.right)
            if not isinstance(right, Reg):
                self.emit(jmp_imm(jop, left, right, label))
            else:
                self.emit(jmp_reg(jop, left, right, label))
                if owned:
                    self.free(right)
            self.free(left)
            return
        r = self.value(e)
        self.emit(jmp_imm(JNE if when else JEQ, r, 0, label))
        self.free(r)

    # -- calls ----------------------------------------------------------------------------------------

    def spill_busy(self) -> list[tuple[Reg, int]]:
        """Save live scratch registers before a call; returns what :meth:`restore` reloads."""
        saved = []
        for r in list(self.busy):
            off = self.temp()
            self.emit(stx_mem("dw", Reg.R10, r, off))
            saved.append((r, off))
            self.busy.remove(r)
        return saved

    def restore(self, saved: list[tuple[Reg, int]], result: Reg | None) -> Reg | None:
        """Reload spilled registers after a call; moves the result out of their way."""
        saved_regs = {r for r, _ in saved}
        if result is not None and result in saved_regs:
            spare = next((r for r in _SCRATCH if r not in self.busy and r not in saved_regs), None)
            if spare is None:
                raise self.error("expression too complex around a helper call: split it into locals")
            self.emit(mov64(spare, result))
            result = spare
        if result is not None:
            self.busy.append(result)
        for r, off in saved:
            self.emit(ldx_mem("dw", r, Reg.R10, off))
            self.busy.append(r)
            self.release_temp(off)
        return result

    def call(self, helper: str, args: list[ir.Expr | int | tuple[str, object]], result: bool = True) -> Reg | None:
        """Call ``helper`` with ``args`` (IR expressions, immediates, ``("stack", off)`` addresses,
        ``("map", name)``, ``("ctx", None)``); returns R0 (owned) when ``result``."""
        saved = self.spill_busy()
        from ebpf.lang.codegen_ops import has_call

        staged: dict[int, int] = {}
        calling = [i for i, a in enumerate(args) if isinstance(a, ir.Expr) and has_call(a)]
        early: int | None = None
        if len(calling) == 1 and all(i in calling or not isinstance(a, ir.Expr)
                                     or isinstance(a, (ir.Const, ir.Local, ir.AddrOf)) for i, a in enumerate(args)):
            # One argument calls a helper itself and the others need no scratch register:
            # evaluate it first, straight into its argument register.
            early = calling[0]
            reg = Reg(early + 1)
            r = self.value(args[early], reg)  # type: ignore[arg-type]
            if r != reg:
                self.emit(mov64(reg, r))
                self.free(r)
                self.busy.append(reg)
        for i, a in enumerate(args):  # arguments that call helpers themselves go first, via the stack
            if i != early and isinstance(a, ir.Expr) and has_call(a):
                r = self.value(a)
                off = self.temp()
                self.emit(stx_mem("dw", Reg.R10, r, off))
                self.free(r)
                staged[i] = off
        for i, a in enumerate(args):
            reg = Reg(i + 1)
            if i == early:
                continue
            self.busy.append(reg)
            if i in staged:
                self.emit(ldx_mem("dw", reg, Reg.R10, staged[i]))
                self.release_temp(staged[i])
            elif isinstance(a, int):
                self.load_const(reg, a)
            elif isinstance(a, tuple):
                kind, what = a
                if kind == "stack":
                    assert isinstance(what, int)
                    self.emit(mov64(reg, Reg.R10))
                    self.emit(add_imm(reg, what))
                elif kind == "map":
                    self.load_map(reg, str(what))
                elif kind == "ctx":
                    home = self.home_reg.get(self.fn.ctx)
                    if home is not None:
                        self.emit(mov64(reg, home))
                    else:
                        self.emit(ldx_mem("dw", reg, Reg.R10, self.home_stack[self.fn.ctx]))
                elif kind == "u32":
                    assert isinstance(what, int)
                    self.emit(mov32(reg, what))
            else:
                self.busy.remove(reg)
                r = self.value(a, reg)
                if r != reg:
                    self.busy.append(reg)
                    self.emit(mov64(reg, r))
                    self.free(r)
        for i in range(len(args)):
            self.busy.remove(Reg(i + 1))
        self.emit(call(helper))
        return self.restore(saved, Reg.R0 if result else None)

    def load_map(self, reg: Reg, name: str) -> None:
        """``reg = map fd`` as a two-slot ld_imm64 the loader patches (recorded in ``map_loads``)."""
        self.out.map_loads.append((self.n_insns, name))
        self.emit(Instruction(LD | IMM | DW, int(reg), PSEUDO_MAP_FD, 0, 0, 0))


def noop_cast(src: LangType, dst: LangType) -> bool:
    """Whether converting ``src`` to ``dst`` leaves a (64-bit extended) register unchanged."""
    s, d = _int(src), _int(dst)
    return d.size == 8 or (d.size > s.size and not s.signed) or (d.size >= s.size and d.signed == s.signed)


def strip_casts(e: ir.Expr, size: int) -> ir.Expr:
    """``e`` without casts to ``size``-byte types: a ``size``-byte store keeps the same low bytes anyway."""
    while isinstance(e, ir.Cast) and e.type.size == size and e.operand is not None:
        e = e.operand
    return e


def add_imm(r: Reg, value: int) -> Instruction:
    """``r += value``."""
    return alu64_imm(ADD, r, value)


