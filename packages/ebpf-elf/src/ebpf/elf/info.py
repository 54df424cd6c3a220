"""Inspecting an object without loading it: programs, maps, globals, BTF and relocations."""

from __future__ import annotations

import os

from ebpf.core.errors import ELFError
from ebpf.core.records import dataclass, field
from ebpf.elf.btf_ext import CoreReloKind
from ebpf.elf.objfile import ElfObject, parse_object

__all__ = ["ProgramInfo", "MapInfo", "VariableInfo", "RelocationInfo", "ObjectInfo", "parse_elf_file",
           "inspect_elf", "list_programs", "list_maps", "get_program"]


@dataclass(frozen=True)
class ProgramInfo:
    """A program of an object file.

    :ivar name: the function name.
    :ivar section: the ELF section (``"tracepoint/syscalls/sys_enter_openat"``).
    :ivar type: program type name (``"tracepoint"``), or ``"unknown"`` for an unknown section.
    :ivar attach_type: expected attach type name or None.
    :ivar attach_target: the section-derived target ``program.attach()`` uses, or None.
    :ivar attach_to: the BTF target of fentry/fexit/tp_btf/lsm/iter sections, or None.
    :ivar error: why the program cannot be loaded as it is (an unresolved reference), or None.
    :ivar size: bytes of its own instructions; ``insn_count`` after linking subprograms.
    """

    name: str
    section: str
    type: str
    attach_type: str | None
    attach_target: str | None
    size: int
    insn_count: int
    subprograms: tuple[str, ...] = ()
    attach_to: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class MapInfo:
    """A map an object defines (``kind``: ``"btf"`` for .maps, ``"legacy"``, ``"data"`` for globals)."""

    name: str
    type: str
    key_size: int
    value_size: int
    max_entries: int
    flags: int
    kind: str
    pinning: str = "none"
    inner: str | None = None


@dataclass(frozen=True)
class VariableInfo:
    """A global variable: its data section, offset and size."""

    name: str
    section: str
    offset: int
    size: int
    readonly: bool


@dataclass(frozen=True)
class RelocationInfo:
    """One relocation of a program (``kind``: map, data, call, kconfig, ksym, kfunc, core)."""

    program: str
    insn: int
    kind: str
    target: str


@dataclass
class ObjectInfo:
    """What :func:`inspect_elf` tells about an object file."""

    path: str
    license: str
    kernel_version: int
    programs: list[ProgramInfo] = field(default_factory=list)
    maps: list[MapInfo] = field(default_factory=list)
    variables: list[VariableInfo] = field(default_factory=list)
    relocations: list[RelocationInfo] = field(default_factory=list)
    btf: bool = False
    btf_types: int = 0
    btf_ext: bool = False
    externs: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready dict."""
        from dataclasses import asdict

        return asdict(self)


def parse_elf_file(path: str | os.PathLike[str]) -> ElfObject:
    """Parse an object file (no kernel objects).

    :raises ELFError: malformed ELF.  :raises BTFError: malformed BTF.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise ELFError(f"path must be a str or os.PathLike, not {type(path).__name__}")
    return parse_object(os.fspath(path))


def inspect_elf(path: str | os.PathLike[str] | ElfObject) -> ObjectInfo:
    """Describe an object: programs (name, section, type, size), maps, globals, BTF, relocations.

    :raises ELFError: malformed ELF or relocations.  :raises BTFError: malformed BTF.
    """
    from ebpf.core.types import MapType
    from ebpf.elf.loader import link_object

    obj = path if isinstance(path, ElfObject) else parse_elf_file(path)
    broken: dict[str, str] = {}
    maps, linked = link_object(obj, broken)
    info = ObjectInfo(obj.path, obj.license, obj.kernel_version, btf=obj.btf is not None,
                      btf_types=obj.btf.count - 1 if obj.btf else 0, btf_ext=obj.btf_ext is not None)

    def type_name(value: int) -> str:
        try:
            return MapType(value).lower_name
        except ValueError:
            return str(value)

    for fn in obj.programs:
        if fn.name in broken:  # cannot be linked (an unresolved reference): listed, not loadable
            m = fn.match
            info.programs.append(ProgramInfo(fn.name, fn.section.name, m.prog_type.lower_name if m else "unknown",
                                             None, None, fn.size, fn.size // 8, (), None, broken[fn.name]))
    for lp in linked:
        fn, m = lp.function, lp.function.match
        info.programs.append(ProgramInfo(
            fn.name, fn.section.name, m.prog_type.lower_name if m else "unknown",
            m.attach_type.lower_name if m and m.attach_type is not None else None,
            m.attach_target if m else None, fn.size, len(lp.insns) // 8, tuple(lp.subprograms),
            m.attach_to if m else None))
        for ref in lp.references:
            kind = "data" if ref.kind == "value" else "map"
            info.relocations.append(RelocationInfo(fn.name, ref.insn, kind, f"{ref.map}+{ref.offset}"))
        for ext in lp.externs:
            info.relocations.append(RelocationInfo(fn.name, ext.insn, ext.kind, ext.name))
        for idx, cr in lp.core_relos:
            root = obj.btf[cr.type_id].name if obj.btf else "?"
            access = obj.btf.str_at(cr.access_str_off) if obj.btf else "?"
            info.relocations.append(RelocationInfo(fn.name, idx, "core",
                                                   f"{CoreReloKind.NAMES[cr.kind]} {root} {access}"))
    legacy = {s.name for s in obj.raw.symbols if s.shndx == obj.legacy_maps_section}
    for md in maps.values():
        info.maps.append(MapInfo(md.name, type_name(md.map_type), md.key_size, md.value_size, md.max_entries,
                                 md.flags, "legacy" if md.name in legacy else "btf",
                                 "by_name" if md.pinning else "none",
                                 type_name(md.inner.map_type) if md.inner else None))
    for d in obj.data.values():
        info.maps.append(MapInfo(d.name, "array", 4, d.section.size, 1, 0, "data"))
        for vname, (off, size, _t) in sorted(d.variables.items(), key=lambda kv: kv[1][0]):
            info.variables.append(VariableInfo(vname, d.name, off, size, d.readonly))
    info.externs = sorted(f"{e.name} ({e.kind})" for e in obj.externs.values())
    return info


def list_programs(obj: str | os.PathLike[str] | ElfObject | ObjectInfo) -> list[ProgramInfo]:
    """The programs of an object (a path, a parsed object or an :class:`ObjectInfo`)."""
    return list((obj if isinstance(obj, ObjectInfo) else inspect_elf(obj)).programs)


def list_maps(obj: str | os.PathLike[str] | ElfObject | ObjectInfo) -> list[MapInfo]:
    """The maps of an object (global data maps included)."""
    return list((obj if isinstance(obj, ObjectInfo) else inspect_elf(obj)).maps)


def get_program(obj: str | os.PathLike[str] | ElfObject | ObjectInfo, name: str) -> ProgramInfo:
    """The program called ``name``.

    :raises ELFError: when the object has no such program.
    """
    progs = list_programs(obj)
    for p in progs:
        if p.name == name:
            return p
    where = obj.path if isinstance(obj, (ObjectInfo, ElfObject)) else os.fspath(obj)
    raise ELFError(f"{where}: no program {name!r} (programs: {', '.join(p.name for p in progs) or 'none'})")
