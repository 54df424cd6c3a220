"""Fix the object's BTF up the way libbpf does before handing it to the kernel.

Compilers leave DATASEC sizes and variable offsets for the linker; externs (``__kconfig``,
``__ksym``, kfuncs) carry an ``extern`` linkage the kernel refuses.  :func:`fixup_btf`
returns BTF bytes the kernel accepts: DATASEC sizes from the ELF sections and offsets from
the symbols, ``.kconfig`` laid out like the loader's ``.kconfig`` map, ``.ksyms`` (and any
DATASEC without a section) turned into an empty anonymous struct, extern VARs made global
and extern FUNCs static.
"""

from __future__ import annotations

from ebpf.elf._btf import Btf, Kind
from ebpf.elf.objfile import ElfObject

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
    btf = Btf([t for t in obj.btf.types], bytes(obj.btf.strings))
    # Copy the records we change, so the parsed object stays as the file says.
    import copy

    btf.types = [copy.copy(t) for t in obj.btf.types]
    sections = {s.name: s for s in obj.raw.sections}
    symbols: dict[tuple[int, str], int] = {(s.shndx, s.name): s.value for s in obj.raw.symbols if s.name}
    kconfig = {e.name: e for e in obj.externs.values() if e.kind == "kconfig"}
    for t in btf.types[1:]:
        if t.kind == Kind.VAR and t.extra and t.extra[0] == VAR_GLOBAL_EXTERN:
            t.extra = [VAR_GLOBAL_ALLOCATED]
        elif t.kind == Kind.FUNC and t.vlen == FUNC_EXTERN:
            t.vlen = FUNC_STATIC
        elif t.kind == Kind.DATASEC:
            _fix_datasec(btf, t, sections, symbols, kconfig, obj)
    return btf.encode()


def _fix_datasec(btf: Btf, t: object, sections: dict, symbols: dict, kconfig: dict, obj: ElfObject) -> None:
    from ebpf.elf._btf import BtfType

    assert isinstance(t, BtfType)
    sec = sections.get(t.name)
    if t.name == ".kconfig" and kconfig:
        entries = []
        for type_id, _off, size in t.entries:
            var = btf[type_id]
            ext = kconfig.get(var.name)
            if ext is not None:
                entries.append([type_id, ext.offset, ext.size])
        t.entries = sorted(entries, key=lambda e: e[1])
        t.vlen = len(t.entries)
        t.size_type = kconfig_size(obj)
        if t.vlen:
            return
    if sec is None or t.name == ".ksyms" or not t.entries and sec is None:
        # Nothing the kernel could check this against: keep the type id, make it harmless.
        t.kind, t.name_off, t.vlen, t.kflag, t.size_type, t.entries = Kind.STRUCT, 0, 0, 0, 0, []
        return
    t.size_type = sec.size
    fixed = []
    for type_id, off, size in t.entries:
        var = btf[type_id]
        value = symbols.get((sec.index, var.name))
        if value is not None:
            off = value
        fixed.append([type_id, off, size])
    fixed.sort(key=lambda e: e[1])
    t.entries = fixed
    t.vlen = len(fixed)
