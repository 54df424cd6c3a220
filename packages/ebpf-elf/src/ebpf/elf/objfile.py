"""The parsed object: programs (one per function symbol), subprograms, maps, global data, externs.

:func:`parse_object` turns the raw ELF (``_reader``) into an :class:`ElfObject`; nothing here
touches the kernel.  Map definitions are decoded in :mod:`ebpf.elf.mapdefs`, program linking
and relocations in :mod:`ebpf.elf.relocations`.
"""

from __future__ import annotations

import re
import struct

from ebpf.core.btf import Datasec, Func, Qualifier, Spec, Var, parse
from ebpf.core.errors import BTFError, ELFError
from ebpf.core.records import dataclass, field
from ebpf.elf._reader import SHN_UNDEF, SHT_NOBITS, SHT_PROGBITS, RawObject, RawSection, RawSymbol, read_object
from ebpf.elf.btf_ext import BtfExt, parse_btf_ext
from ebpf.elf.sections import SectionMatch, match_section

__all__ = ["Function", "DataSection", "Extern", "ElfObject", "parse_object", "is_data_section"]

_DATA_RE = re.compile(r"^\.(data|rodata|bss)(\..+)?$")


def is_data_section(name: str) -> bool:
    """True for global data sections that become array maps (``.data``, ``.rodata.foo``, ``.bss``)."""
    return bool(_DATA_RE.match(name))


@dataclass
class Function:
    """A function in a code section: a program (entry point) or a subprogram (``.text``)."""

    name: str
    section: RawSection
    offset: int
    size: int
    is_program: bool
    match: SectionMatch | None = None
    global_: bool = True

    @property
    def insns(self) -> bytes:
        """The function's raw instructions."""
        return self.section.data[self.offset : self.offset + self.size]


@dataclass
class DataSection:
    """A global data section (``.data``, ``.rodata``, ``.bss``, ``.data.*`` ...)."""

    section: RawSection
    readonly: bool
    datasec_id: int = 0
    variables: dict[str, tuple[int, int, int]] = field(default_factory=dict)  # name -> (offset, size, btf type)
    private: set[str] = field(default_factory=set)  # static or hidden: not settable from user space

    @property
    def name(self) -> str:
        """The section name (also the map's name in the collection)."""
        return self.section.name


@dataclass
class Extern:
    """An undefined symbol: a ``.kconfig`` value, a ``__ksym`` variable or a kfunc."""

    name: str
    kind: str  # "kconfig", "ksym", "kfunc", "undefined"
    weak: bool
    size: int = 8
    offset: int = 0  # in the synthetic .kconfig map
    btf_type: int = 0
    typeless: bool = False  # ``extern const void sym __ksym``: resolved to an address (kallsyms)


@dataclass
class ElfObject:
    """A parsed BPF object file (no kernel objects)."""

    path: str
    raw: RawObject
    license: str = ""
    kernel_version: int = 0
    btf: Spec | None = None
    btf_raw: bytes = b""
    btf_ext: BtfExt | None = None
    functions: dict[tuple[int, int], Function] = field(default_factory=dict)
    programs: list[Function] = field(default_factory=list)
    data: dict[int, DataSection] = field(default_factory=dict)
    externs: dict[str, Extern] = field(default_factory=dict)
    maps_section: int = -1
    legacy_maps_section: int = -1

    def function_at(self, section: int, offset: int) -> Function | None:
        """The function starting at ``offset`` of ``section``."""
        return self.functions.get((section, offset))

    def symbol(self, index: int, where: str) -> RawSymbol:
        """Symbol ``index``, or an ELFError naming ``where`` the reference was."""
        if 0 <= index < len(self.raw.symbols):
            return self.raw.symbols[index]
        raise ELFError(f"{self.path}: {where}: relocation to missing symbol #{index} "
                       f"(the symbol table has {len(self.raw.symbols)})")

    def program(self, name: str) -> Function:
        """The program called ``name``."""
        for fn in self.programs:
            if fn.name == name:
                return fn
        known = ", ".join(f.name for f in self.programs) or "none"
        raise ELFError(f"{self.path}: no program {name!r} (programs: {known})")


def _cstr(data: bytes) -> str:
    return data.split(b"\0", 1)[0].decode("utf-8", "replace")


def parse_object(path: str, data: bytes | None = None) -> ElfObject:
    """Parse the BPF object at ``path`` into an :class:`ElfObject`.

    :raises ELFError: malformed ELF, unknown machine, big-endian, missing symbols.
    :raises BTFError: malformed ``.BTF`` / ``.BTF.ext``.
    """
    raw = read_object(path, data)
    obj = ElfObject(path, raw)
    for sec in raw.sections:
        if sec.name == "license":
            obj.license = _cstr(sec.data)
        elif sec.name == "version" and len(sec.data) >= 4:
            obj.kernel_version = struct.unpack_from("<I", sec.data)[0]
        elif sec.name == ".BTF":
            obj.btf_raw = sec.data
            try:
                btf = parse(sec.data, name=f"{path}: section .BTF")
                # Check every record and reference now, so later walks meet only good types.
                btf.validate()
            except BTFError as exc:
                raise BTFError(f"{path}: {exc} (section .BTF at file offset {sec.offset:#x})") from None
            obj.btf = btf
        elif sec.name == ".maps":
            obj.maps_section = sec.index
        elif sec.name == "maps":
            obj.legacy_maps_section = sec.index
    ext = raw.section(".BTF.ext")
    if ext is not None and obj.btf is not None:
        try:
            obj.btf_ext = parse_btf_ext(ext.data, obj.btf.strings)
        except BTFError as exc:
            raise BTFError(f"{path}: {exc} (section .BTF.ext at file offset {ext.offset:#x})") from None
    _collect_functions(obj)
    _collect_data(obj)
    _collect_externs(obj)
    return obj


def _collect_functions(obj: ElfObject) -> None:
    by_section: dict[int, list[RawSymbol]] = {}
    nsec = len(obj.raw.sections)
    for sym in obj.raw.symbols:
        if sym.type == "STT_FUNC" and sym.shndx != SHN_UNDEF and sym.shndx < nsec:
            by_section.setdefault(sym.shndx, []).append(sym)
    for sec in obj.raw.sections:
        if sec.type != SHT_PROGBITS or not sec.executable or sec.size == 0:
            continue
        is_text = sec.name == ".text"
        match = None if is_text else match_section(sec.name)
        syms = sorted(by_section.get(sec.index, []), key=lambda s: s.value)
        if not syms:  # hand-written assembly: the whole section is one program
            syms = [RawSymbol(-1, re.sub(r"[^A-Za-z0-9_]", "_", sec.name), 0, sec.size, "STB_GLOBAL", "STT_FUNC",
                              sec.index)]
        for sym in syms:
            if sym.value % 8 or sym.size % 8 or sym.value + sym.size > sec.size:
                raise ELFError(f"{obj.path}: function {sym.name!r} in section {sec.name!r} at offset {sym.value:#x} "
                               f"(size {sym.size}) is not whole instructions inside the section")
            fn = Function(sym.name, sec, sym.value, sym.size or sec.size - sym.value, not is_text, match,
                          sym.bind != "STB_LOCAL")
            obj.functions[(sec.index, sym.value)] = fn
            if fn.is_program:
                obj.programs.append(fn)


def _datasec_vars(obj: ElfObject, name: str) -> tuple[int, dict[str, int]]:
    """(DATASEC type id, {var name: var type id}) for section ``name``."""
    btf = obj.btf
    if btf is None:
        return 0, {}
    found = btf.find_all(name, "datasec")
    if not found:
        return 0, {}
    ds = found[0]
    assert isinstance(ds, Datasec)
    out = {}
    for vs in ds.vars:
        var = btf[vs.type_id]
        if isinstance(var, Var):
            out[var.name] = var.type_id
    return ds.id, out


def _collect_data(obj: ElfObject) -> None:
    for sec in obj.raw.sections:
        if sec.type not in (SHT_PROGBITS, SHT_NOBITS) or not is_data_section(sec.name) or sec.size == 0:
            continue
        if sec.executable:
            continue
        ds_id, var_types = _datasec_vars(obj, sec.name)
        d = DataSection(sec, sec.name.startswith(".rodata"), ds_id)
        for sym in obj.raw.symbols:
            if sym.shndx != sec.index or sym.type != "STT_OBJECT" or not sym.name or "." in sym.name:
                continue
            if sym.value + sym.size > sec.size:
                raise ELFError(f"{obj.path}: variable {sym.name!r} at offset {sym.value:#x} runs past section {sec.name!r}")
            d.variables[sym.name] = (sym.value, sym.size, var_types.get(sym.name, 0))
            if sym.bind == "STB_LOCAL" or sym.visibility == "STV_HIDDEN":
                d.private.add(sym.name)  # as libbpf's skeleton: the object's own business
        obj.data[sec.index] = d


def _collect_externs(obj: ElfObject) -> None:
    kconfig_ids: dict[str, int] = {}
    ksym_names: dict[str, int] = {}  # name -> the VAR's type (0 = void: typeless)
    if obj.btf is not None:
        for sec_name, target in ((".kconfig", kconfig_ids), (".ksyms", None)):
            for ds in obj.btf.find_all(sec_name, "datasec")[:1]:
                assert isinstance(ds, Datasec)
                for vs in ds.vars:
                    t = obj.btf[vs.type_id]
                    if target is not None:
                        target[t.name] = t.type_id if isinstance(t, (Var, Qualifier, Func)) else 0
                    elif isinstance(t, Var):
                        ksym_names[t.name] = _resolved_id(obj.btf, t.type_id)
                    else:
                        ksym_names[t.name] = -1
    offset = 0
    for sym in obj.raw.symbols:
        if sym.shndx != SHN_UNDEF or not sym.name or sym.type == "STT_FILE":
            continue
        weak = sym.bind == "STB_WEAK"
        if sym.name in kconfig_ids:
            size = 8
            try:
                size = obj.btf.sizeof(kconfig_ids[sym.name]) if obj.btf else 8
            except BTFError:
                size = 8
            offset = (offset + 7) & ~7
            obj.externs[sym.name] = Extern(sym.name, "kconfig", weak, size, offset, kconfig_ids[sym.name])
            offset += size
        elif sym.type == "STT_FUNC" or (sym.name in ksym_names and _is_func(obj, sym.name)):
            obj.externs[sym.name] = Extern(sym.name, "kfunc", weak)
        elif sym.name in ksym_names:
            obj.externs[sym.name] = Extern(sym.name, "ksym", weak, typeless=ksym_names[sym.name] == 0)
        else:
            obj.externs[sym.name] = Extern(sym.name, "undefined", weak)


def _resolved_id(btf: Spec, type_id: int) -> int:
    """The id behind modifiers (0 for ``const void``); -1 when the BTF is broken."""
    try:
        return btf.resolve(type_id).id
    except BTFError:
        return -1


def _is_func(obj: ElfObject, name: str) -> bool:
    return obj.btf is not None and bool(obj.btf.find_all(name, "func"))
