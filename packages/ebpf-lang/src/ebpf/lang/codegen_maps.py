"""Code for map, ring buffer and perf buffer operations (helper calls with keys on the stack)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ebpf.core.asm import Instruction, Reg, atomic_add, jmp_a, jmp_imm, ldx_mem, st_mem, stx_mem
from ebpf.core.asm.opcodes import JEQ, JNE
from ebpf.lang import ir
from ebpf.lang.codegen import strip_casts
from ebpf.lang.types import IntType, LangType

if TYPE_CHECKING:
    from ebpf.lang.codegen import Codegen

__all__ = ["map_op", "lookup", "key_arg"]

_SIZES = {1: "b", 2: "h", 4: "w", 8: "dw"}
BPF_NOEXIST = 1
_Arg = ir.Expr | int | tuple[str, object]


def _in_memory(cg: Codegen, e: ir.Expr, t: LangType | None, temps: list[int]) -> _Arg:
    """An argument pointing at ``e``'s value: a stack slot holding an integer, or the address of a struct."""
    if isinstance(t, IntType):
        off = cg.temp()
        temps.append(off)
        size = _SIZES[t.size]
        e = strip_casts(e, t.size)
        if isinstance(e, ir.Const) and -(1 << 31) <= e.value < (1 << 31):
            cg.emit(st_mem(size, Reg.R10, off, t.wrap(e.value)))
        else:
            r, owned = cg.operand(e, imm=False)
            assert isinstance(r, Reg)
            cg.emit(stx_mem(size, Reg.R10, r, off))
            if owned:
                cg.free(r)
        return ("stack", off)
    if isinstance(e, ir.AddrOf):
        assert e.var is not None
        return ("stack", cg.home_stack[e.var] + e.offset)
    return e


key_arg = _in_memory


def lookup(cg: Codegen, e: ir.MapOp, key: _Arg) -> Reg:
    """``map_lookup_elem``: R0 (owned) holds the value pointer or 0."""
    r = cg.call("map_lookup_elem", [("map", e.map_name), key])
    assert r is not None
    return r


def map_op(cg: Codegen, e: ir.MapOp, dst: Reg | None) -> Reg:
    """Generate ``e``; returns a register the caller owns (the helper's result)."""
    assert e.map is not None
    prev = cg.pos
    cg.pos = e.pos
    temps: list[int] = []
    try:
        return _map_op(cg, e, dst, temps)
    finally:
        for off in temps:
            cg.release_temp(off)
        cg.pos = prev


def _map_op(cg: Codegen, e: ir.MapOp, dst: Reg | None, temps: list[int]) -> Reg:
    assert e.map is not None
    m = e.map
    op = e.op
    if op in ("output", "reserve", "submit", "discard"):
        return _events(cg, e, temps)
    if m.kind in ("queue", "bloom"):
        return _queue(cg, e, dst, temps)
    assert e.key is not None
    key = _in_memory(cg, e.key, m.key, temps)
    if op == "lookup":
        return lookup(cg, e, key)
    if op == "contains":
        p = lookup(cg, e, key)
        done = cg.new_label("in")
        cg.emit(jmp_imm(JEQ, p, 0, done))
        cg.emit(_mov1(p))
        cg.label(done)
        return p
    if op == "get":
        assert e.default is not None and isinstance(e.type, IntType)
        default = e.default
        p = lookup(cg, e, key)
        res = cg.value(default, dst if dst is not None and dst != p else None)
        done = cg.new_label("get")
        cg.emit(jmp_imm(JEQ, p, 0, done))
        cg.emit(ldx_mem(_SIZES[e.type.size], res, p, 0))
        if e.type.signed and e.type.size < 8:
            cg.normalize(res, e.type)
        cg.label(done)
        cg.free(p)
        return res
    if op == "delete":
        r = cg.call("map_delete_elem", [("map", e.map_name), key])
        assert r is not None
        return r
    if op == "update":
        assert e.value is not None
        value = _in_memory(cg, e.value, m.value, temps)
        r = cg.call("map_update_elem", [("map", e.map_name), key, value, 0])
        assert r is not None
        return r
    if op == "increment":
        return _increment(cg, e, key, temps)
    raise cg.error(f"map operation {op} is not supported")  # pragma: no cover


def _mov1(r: Reg) -> Instruction:
    from ebpf.core.asm import mov64

    return mov64(r, 1)


def _increment(cg: Codegen, e: ir.MapOp, key: _Arg, temps: list[int]) -> Reg:
    """Atomic add to the value; a missing hash entry is created holding the amount."""
    assert e.map is not None and e.value is not None and isinstance(e.map.value, IntType)
    vt = e.map.value
    amount = e.value
    const = isinstance(amount, ir.Const) and -(1 << 31) <= amount.value < (1 << 31)
    saved: int | None = None
    if not const and not (isinstance(amount, ir.Local) and amount.var in cg.home_reg):
        r = cg.value(amount)
        saved = cg.temp()
        temps.append(saved)
        cg.emit(stx_mem("dw", Reg.R10, r, saved))
        cg.free(r)
    p = lookup(cg, e, key)
    init, done = cg.new_label("init"), cg.new_label("incdone")
    cg.emit(jmp_imm(JEQ, p, 0, done if e.map.kind == "array" else init))
    if isinstance(amount, ir.Const) and const:
        a = cg.alloc()
        cg.load_const(a, amount.value)
    elif saved is not None:
        a = cg.alloc()
        cg.emit(ldx_mem("dw", a, Reg.R10, saved))
    else:
        assert isinstance(amount, ir.Local) and amount.var is not None
        a = cg.home_reg[amount.var]
    cg.emit(atomic_add(_SIZES[vt.size], p, a, 0))
    cg.free(a)
    if e.map.kind != "array":
        cg.emit(jmp_a(done))
        cg.label(init)
        slot = cg.temp()
        temps.append(slot)
        if isinstance(amount, ir.Const) and const:
            cg.emit(st_mem(_SIZES[vt.size], Reg.R10, slot, vt.wrap(amount.value)))
        else:
            b = cg.alloc()
            if saved is not None:
                cg.emit(ldx_mem("dw", b, Reg.R10, saved))
            else:
                assert isinstance(amount, ir.Local) and amount.var is not None
                from ebpf.core.asm import mov64

                cg.emit(mov64(b, cg.home_reg[amount.var]))
            cg.emit(stx_mem(_SIZES[vt.size], Reg.R10, b, slot))
            cg.free(b)
        cg.free(p)
        res = cg.call("map_update_elem", [("map", e.map_name), key, ("stack", slot), BPF_NOEXIST])
        assert res is not None
        cg.free(res)
        cg.label(done)
        return cg.alloc(Reg.R0)
    cg.label(done)
    return p


def _queue(cg: Codegen, e: ir.MapOp, dst: Reg | None, temps: list[int]) -> Reg:
    """push: ``map_push_elem``; pop/peek: the value or the default; bloom ``in``: ``map_peek_elem == 0``."""
    from ebpf.core.asm import add64, mov64

    assert e.map is not None and isinstance(e.map.value, IntType)
    vt = e.map.value
    if e.op in ("push", "contains"):
        assert e.value is not None
        arg = _in_memory(cg, e.value, vt, temps)
        helper = "map_push_elem" if e.op == "push" else "map_peek_elem"
        r = cg.call(helper, [("map", e.map_name), arg, 0] if e.op == "push" else [("map", e.map_name), arg])
        assert r is not None
        if e.op == "contains":
            found = cg.new_label("found")
            cg.emit(jmp_imm(JEQ, r, 0, found))  # 0: present
            cg.emit(mov64(r, -1))
            cg.label(found)
            cg.emit(add64(r, 1))  # -1 -> 0 (absent), 0 -> 1 (present)
        return r
    assert e.default is not None
    slot = cg.temp()
    temps.append(slot)
    r = cg.call(f"map_{e.op}_elem", [("map", e.map_name), ("stack", slot)])
    assert r is not None
    res = cg.value(e.default, dst if dst is not None and dst != r else None)
    done = cg.new_label("popped")
    cg.emit(jmp_imm(JNE, r, 0, done))  # empty: keep the default
    cg.emit(ldx_mem(_SIZES[vt.size], res, Reg.R10, slot))
    if vt.signed and vt.size < 8:
        cg.normalize(res, vt)
    cg.label(done)
    cg.free(r)
    return res


def _events(cg: Codegen, e: ir.MapOp, temps: list[int]) -> Reg:
    assert e.map is not None
    op, kind = e.op, e.map.kind
    if op == "output":
        assert e.value is not None
        data = _in_memory(cg, e.value, None, temps)
        if kind == "ringbuf":
            r = cg.call("ringbuf_output", [("map", e.map_name), data, e.flags, 0])
        else:
            r = cg.call("perf_event_output", [("ctx", None), ("map", e.map_name), ("u32", -1), data, e.flags])
    elif op == "reserve":
        r = cg.call("ringbuf_reserve", [("map", e.map_name), e.flags, 0])
    else:
        assert e.value is not None
        r = cg.call(f"ringbuf_{op}", [e.value, 0])
    assert r is not None
    return r


