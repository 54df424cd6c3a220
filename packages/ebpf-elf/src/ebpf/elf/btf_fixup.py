"""Fix the object's BTF up the way libbpf does before handing it to the kernel.

Compilers leave DATASEC sizes and variable offsets for the linker; externs (``__kconfig``,
``__ksym``, kfuncs) carry an ``extern`` linkage the kernel refuses.  :func:`fixup_btf`
returns BTF bytes the kernel accepts: DATASEC sizes from the ELF sections and offsets from
the symbols, ``.kconfig`` laid out like the loader's ``.kconfig`` map, ``.ksyms`` (and any
DATASEC without a section) turned into an empty anonymous struct (ids stay stable), extern
VARs made global (``.kconfig`` ones keep their type), extern FUNCs static with every parameter
named.
"""

from __future__ import annotations

from ebpf.core import records
from ebpf.core.btf import (
    Builder,
    Datasec,
    Func,
    FuncProto,
    Int,
    IntEncoding,
    Linkage,
    Param,
    Spec,
    Struct,
    Var,
    VarSecinfo,
)
from ebpf.core.errors import BTFError
from ebpf.elf._reader import RawSection
from ebpf.elf.objfile import ElfObject, Extern

__all__ = ["fixup_btf", "kconfig_size"]


def kconfig_size(obj: ElfObject) -> int:
    """Size of the ``.kconfig`` map value (0 when the object has no kconfig externs)."""
    ends = [e.offset + e.size for e in obj.externs.values() if e.kind == "kconfig"]
    return max(ends, default=0)


def fixup_btf(obj: ElfObject) -> bytes | None:
    """The object's BTF, fixed up for BPF_BTF_LOAD; None when the object has no BTF.

    The string section is kept as the object has it (line info in ``.BTF.ext`` points into it).
    """
    if obj.btf is None:
        return None
    # The builder holds copies: the parsed object stays as the file says.
    b = Builder.from_spec(obj.btf, keep_strings=True)
    sections = {s.name: s for s in obj.raw.sections}
    symbols = {(s.shndx, s.name): s.value for s in obj.raw.symbols if s.name}
    kconfig = {e.name: e for e in obj.externs.values() if e.kind == "kconfig"}
    for t in list(b.types):
        if isinstance(t, Var) and t.linkage == Linkage.EXTERN:
            if t.name in kconfig and _sized(obj.btf, t.type_id):
                # A .kconfig value keeps its own type: its DATASEC entry has the type's size
                # (``_Bool`` is 1 byte; an int in its place would overflow the entry).
                b[t.id] = records.replace(t, linkage=Linkage.GLOBAL)
            else:
                # Extern VARs may be typeless (``const void``), which the kernel refuses: as libbpf,
                # give them a plain int (their DATASEC is neutralized below anyway).
                b[t.id] = records.replace(t, type_id=_int_type(b), linkage=Linkage.GLOBAL)
        elif isinstance(t, Func) and t.linkage == Linkage.EXTERN:
            b[t.id] = records.replace(t, linkage=Linkage.STATIC)
            proto = b[t.type_id]
            if isinstance(proto, FuncProto) and any(not p.name and p.type_id for p in proto.params):
                # The kernel wants every parameter of a FUNC named; a prototype such as
                # ``extern struct task_struct *bpf_task_from_pid(s32) __ksym`` has none.
                named = tuple(p if p.name or not p.type_id else Param(f"arg{i}", p.type_id)
                              for i, p in enumerate(proto.params))
                b[proto.id] = records.replace(proto, params=named)
        elif isinstance(t, Datasec):
            b[t.id] = _fix_datasec(obj.btf, t, sections.get(t.name), symbols, kconfig, kconfig_size(obj))
    return b.encode()


def _sized(btf: Spec, type_id: int) -> bool:
    """True when ``type_id`` has a size (not ``void``, not broken)."""
    try:
        return type_id != 0 and btf.sizeof(type_id) > 0
    except BTFError:
        return False


def _int_type(b: Builder) -> int:
    """Id of a 4-byte 32-bit int, appended when the BTF has none."""
    for t in b.types:
        if isinstance(t, Int) and t.size == 4 and t.bits == 32:
            return t.id
    return b.add_int("int", 4, IntEncoding.SIGNED)


def _neutral(t: Datasec) -> Struct:
    """Nothing the kernel could check this DATASEC against: keep the id, make it an empty struct."""
    return Struct(t.id, "", 0, ())


def _fix_datasec(btf: Spec, t: Datasec, sec: RawSection | None, symbols: dict[tuple[int, str], int],
                 kconfig: dict[str, Extern], kconfig_bytes: int) -> Datasec | Struct:
    if t.name == ".kconfig" and kconfig:
        entries = []
        for vs in t.vars:
            ext = kconfig.get(btf[vs.type_id].name)
            if ext is not None:
                entries.append(VarSecinfo(vs.type_id, ext.offset, ext.size))
        if not entries:
            return _neutral(t)
        return records.replace(t, size=kconfig_bytes, vars=tuple(sorted(entries, key=lambda e: e.offset)))
    if sec is None or t.name == ".ksyms" or not t.vars:
        return _neutral(t)
    fixed = []
    for vs in t.vars:
        value = symbols.get((sec.index, btf[vs.type_id].name))
        fixed.append(VarSecinfo(vs.type_id, vs.offset if value is None else value, vs.size))
    return records.replace(t, size=sec.size, vars=tuple(sorted(fixed, key=lambda e: e.offset)))
