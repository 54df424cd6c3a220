"""Fix the object's BTF up the way libbpf does before handing it to the kernel.

Compilers leave DATASEC sizes and variable offsets for the linker; externs (``__kconfig``,
``__ksym``, kfuncs) carry an ``extern`` linkage the kernel refuses.  :func:`fixup_btf`
returns BTF bytes the kernel accepts: DATASEC sizes from the ELF sections and offsets from
the symbols, ``.kconfig`` laid out like the loader's ``.kconfig`` map, ``.ksyms`` (and any
DATASEC without a section) turned into an empty anonymous struct (ids stay stable), extern
VARs made global and extern FUNCs static.
"""

from __future__ import annotations

import copy

from ebpf.elf._btf import Btf, BtfType, Kind
from ebpf.elf._reader import RawSection
from ebpf.elf.objfile import ElfObject, Extern

__all__ = ["fixup_btf", "kconfig_size"]

VAR_STATIC, VAR_GLOBAL_ALLOCATED, VAR_GLOBAL_EXTERN = 0, 1, 2
FUNC_STATIC, FUNC_GLOBAL, FUNC_EXTERN = 0, 1, 2


def kconfig_size(obj: ElfObject) -> int:
    """Size of the ``.kconfig`` map value (0 when the object has no kconfig externs)."""
    ends = [e.offset + e.size for e in obj.externs.values() if e.kind == "kconfig"]
    return max(ends, default=0)


def fixup_btf(obj: ElfObject) -> bytes | None:
    """The object's BTF, fixed up for BPF_BTF_LOAD; None when the object has no BTF."""
    if obj.btf is None:
        return None
    # Copy the records we change, so the parsed object stays as the file says.
    btf = Btf([copy.copy(t) for t in obj.btf.types], bytes(obj.btf.strings))
    sections = {s.name: s for s in obj.raw.sections}
    symbols = {(s.shndx, s.name): s.value for s in obj.raw.symbols if s.name}
    kconfig = {e.name: e for e in obj.externs.values() if e.kind == "kconfig"}
    for t in btf.types[1:]:
        if t.kind == Kind.VAR and t.extra and t.extra[0] == VAR_GLOBAL_EXTERN:
            t.extra = [VAR_GLOBAL_ALLOCATED]
            # Extern VARs may be typeless (``const void``), which the kernel refuses: as libbpf,
            # give them a plain int (their DATASEC is neutralized below anyway).
            t.size_type = _int_type(btf)
        elif t.kind == Kind.FUNC and t.vlen == FUNC_EXTERN:
            t.vlen = FUNC_STATIC
        elif t.kind == Kind.DATASEC:
            _fix_datasec(btf, t, sections.get(t.name), symbols, kconfig, kconfig_size(obj))
    return btf.encode()


def _int_type(btf: Btf) -> int:
    """Id of a 4-byte signed int, appended when the BTF has none."""
    for t in btf.types[1:]:
        if t.kind == Kind.INT and t.size_type == 4 and t.extra and (t.extra[0] & 0xFF) == 32:
            return t.id
    tid = len(btf.types)
    btf.types.append(BtfType(tid, Kind.INT, "int", btf.add_string("int"), 0, 0, 4, [(1 << 24) | 32]))
    return tid


def _neutralize(t: BtfType) -> None:
    """Nothing the kernel could check this DATASEC against: keep the id, make it an empty struct."""
    t.kind, t.name_off, t.vlen, t.kflag, t.size_type, t.entries = Kind.STRUCT, 0, 0, 0, 0, []


def _fix_datasec(btf: Btf, t: BtfType, sec: RawSection | None, symbols: dict[tuple[int, str], int],
                 kconfig: dict[str, Extern], kconfig_bytes: int) -> None:
    if t.name == ".kconfig" and kconfig:
        entries = []
        for type_id, _off, _size in t.entries:
            ext = kconfig.get(btf[type_id].name)
            if ext is not None:
                entries.append([type_id, ext.offset, ext.size])
        t.entries = sorted(entries, key=lambda e: e[1])
        t.vlen, t.size_type = len(t.entries), kconfig_bytes
        if not t.vlen:
            _neutralize(t)
        return
    if sec is None or t.name == ".ksyms" or not t.entries:
        _neutralize(t)
        return
    t.size_type = sec.size
    fixed = []
    for type_id, off, size in t.entries:
        value = symbols.get((sec.index, btf[type_id].name))
        fixed.append([type_id, off if value is None else value, size])
    t.entries = sorted(fixed, key=lambda e: e[1])
    t.vlen = len(fixed)
