"""ELF object -> :class:`~ebpf.core.collection.CollectionSpec` -> loaded :class:`Collection`.

The public functions of ``ebpf.elf`` (:func:`load_elf`, :func:`load_spec`, ...) live here.
Building the spec touches no kernel object; CO-RE relocations and ``__ksym``/kfunc externs
are resolved against the kernel's BTF (or ``btf_path=``) when the spec is loaded.
"""

from __future__ import annotations

import os
import struct
from typing import Any

from ebpf.core.btf import Array, Composite, Enum, Int, Pointer, Union
from ebpf.core.collection import Collection, CollectionSpec, VariableSpec
from ebpf.core.errors import BTFError, EBPFError, ELFError
from ebpf.core.types import MapType, ProgType
from ebpf.elf.btf_fixup import fixup_btf, kconfig_size
from ebpf.elf.mapdefs import LIBBPF_PIN_BY_NAME, MapDef, collect_maps
from ebpf.elf.objfile import ElfObject, Function, parse_object
from ebpf.elf.relocations import KCONFIG_MAP, LinkedProgram, link_program
from ebpf.elf.settings import configure
from ebpf.elf.steps import STEP, ElfLoadData

__all__ = [
    "load_spec",
    "load_elf",
    "load_program_from_elf",
    "create_maps_from_elf",
    "load_elf_program_and_maps",
    "link_object",
]

BPF_F_RDONLY_PROG = 1 << 7
BPF_F_MMAPABLE = 1 << 10


def _path(path: str | os.PathLike[str]) -> str:
    if not isinstance(path, (str, os.PathLike)):
        raise ELFError(f"path must be a str or os.PathLike, not {type(path).__name__}")
    return os.fspath(path)


def _codec(obj: ElfObject, type_id: int, size: int, enums: str) -> Any:
    """The BTF codec for a map's declared key or value type (None: the core's default by size)."""
    if obj.btf is None or not type_id or not size:
        return None
    from ebpf.elf.typed import btf_codec

    codec = btf_codec(obj.btf, type_id, enums)
    return codec if codec is not None and codec.size == size else None


def _map_spec(md: MapDef, obj: ElfObject, typed: bool = False, enums: str = "ints") -> Any:
    from ebpf.core.maps import MapSpec

    try:
        mtype = MapType.parse(md.map_type)
    except EBPFError:
        raise ELFError(f"{obj.path}: map {md.name!r}: unknown map type {md.map_type}") from None
    max_entries = md.max_entries
    key_size, value_size = md.key_size, md.value_size
    if mtype == MapType.PERF_EVENT_ARRAY:
        key_size, value_size = key_size or 4, value_size or 4
        if not max_entries:
            from ebpf.core.system import cpu_count

            max_entries = cpu_count()
    inner = None
    if md.inner is not None:  # the template needs no BTF (it is not kept by the kernel)
        inner = _map_spec(md.inner, obj).copy(btf_key_type_id=0, btf_value_type_id=0)
    return MapSpec(
        map_type=mtype,
        key_size=key_size,
        value_size=value_size,
        max_entries=max_entries,
        name=md.name[:15],
        flags=md.flags,
        inner_map=inner,
        btf_key_type_id=md.key_type_id,
        btf_value_type_id=md.value_type_id,
        map_extra=md.map_extra,
        numa_node=md.numa_node,
        key_codec=_codec(obj, md.decl_key_type_id, key_size, enums) if typed else None,
        value_codec=_codec(obj, md.decl_value_type_id, value_size, enums) if typed else None,
    )


def _var_type(obj: ElfObject, type_id: int) -> tuple[bool, str, str]:
    """(signed, C type name, kind) of a global variable's BTF type."""
    btf = obj.btf
    if btf is None or not type_id:
        return False, "", ""
    try:
        t = btf.resolve(type_id)
        if isinstance(t, Int):
            return t.signed, t.name, "int"
        if isinstance(t, Array):
            elem = btf.resolve(t.type_id)
            return False, f"{elem.name}[{t.nelems}]", "array"
        if isinstance(t, Enum):
            return t.signed, f"enum {t.name}", "enum"
        if isinstance(t, Pointer):
            return False, "pointer", "pointer"
        if isinstance(t, Composite):
            kind = "union" if isinstance(t, Union) else "struct"
            return False, f"{kind} {t.name}".rstrip(), kind
        return False, t.name, ""
    except BTFError:
        return False, "", ""


def _add_data_maps(obj: ElfObject, spec: CollectionSpec) -> None:
    from ebpf.core.maps import MapSpec

    for d in obj.data.values():
        # .rodata is not mmapable: a writable mapping of a BPF_F_RDONLY_PROG map is refused,
        # and it is read with lookups (it is frozen after load anyway).
        flags = BPF_F_RDONLY_PROG if d.readonly else BPF_F_MMAPABLE
        spec.maps[d.name] = MapSpec(
            map_type=MapType.ARRAY, key_size=4, value_size=d.section.size, max_entries=1,
            name=d.name[:15], flags=flags, btf_value_type_id=d.datasec_id,
        )
        spec.map_contents[d.name] = [(bytes(4), bytes(d.section.data))]
        if d.readonly:
            spec.freeze.add(d.name)
        for vname, (off, size, type_id) in d.variables.items():
            if vname in d.private:
                continue
            signed, tname, kind = _var_type(obj, type_id)
            spec.variables[vname] = VariableSpec(vname, d.name, off, size, d.readonly, signed, tname, kind)
    size = kconfig_size(obj)
    if size:
        spec.maps[KCONFIG_MAP] = MapSpec(map_type=MapType.ARRAY, key_size=4, value_size=size, max_entries=1,
                                         name=KCONFIG_MAP, flags=BPF_F_RDONLY_PROG)
        spec.map_contents[KCONFIG_MAP] = [(bytes(4), _kconfig_values(obj, size))]
        spec.freeze.add(KCONFIG_MAP)


def _kconfig_values(obj: ElfObject, size: int) -> bytes:
    from ebpf.elf.kconfig import kconfig_value

    blob = bytearray(size)
    for ext in obj.externs.values():
        if ext.kind == "kconfig":
            value = kconfig_value(ext.name, ext.size, ext.weak, obj.path)
            blob[ext.offset : ext.offset + ext.size] = value
    return bytes(blob)


def _program_spec(obj: ElfObject, linked: LinkedProgram) -> Any:
    from ebpf.core.programs import ProgramSpec

    fn = linked.function
    m = fn.match
    if m is None:
        raise ELFError(f"{obj.path}: program {fn.name!r}: unknown section {fn.section.name!r} (no known prefix; "
                       f"plugins add prefixes through the ebpf_section_types hook)")
    func_info = b"".join(struct.pack("<II", i, t) for i, t in linked.func_info)
    line_info = b"".join(struct.pack("<IIII", *rec) for rec in linked.line_info)
    kernel_version = obj.kernel_version
    if m.prog_type == ProgType.KPROBE and not kernel_version:
        from ebpf.elf.kconfig import kernel_version_code

        kernel_version = kernel_version_code()
    return ProgramSpec(
        prog_type=m.prog_type,
        insns=bytes(linked.insns),
        license=obj.license or "GPL",
        name=fn.name,
        expected_attach_type=m.attach_type,
        attach_to=m.attach_to,
        kernel_version=kernel_version,
        flags=m.prog_flags,
        func_info=func_info if linked.func_info else b"",
        line_info=line_info if linked.func_info else b"",
    )


def link_object(obj: ElfObject, errors: dict[str, str] | None = None) -> tuple[dict[str, MapDef], list[LinkedProgram]]:
    """The object's map definitions and its linked programs (no kernel objects).

    :param errors: when given, a program that cannot be linked (a reference to an undefined
        symbol, say) is left out and its error recorded here by name, instead of raised: as
        libbpf and cilium/ebpf, a broken program matters only when it is loaded.
    :raises ELFError: bad relocations, unknown symbols.
    """
    maps = collect_maps(obj)
    names = [fn.name for fn in obj.programs]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise ELFError(f"{obj.path}: several programs called {sorted(dup)}")
    linked = []
    for fn in obj.programs:
        try:
            linked.append(link_program(obj, fn, maps))
        except ELFError as exc:
            if errors is None:
                raise
            errors[fn.name] = str(exc)
    return maps, linked


def load_spec(path: str | os.PathLike[str], **options: Any) -> CollectionSpec:
    """Read an object file into a :class:`CollectionSpec` (no kernel objects yet).

    :param path: the ``.o`` file.
    :param options: ``typed=False`` keeps map keys and values as the core's defaults (ints of
        4 and 8 bytes, else raw bytes) instead of decoding them from the object's BTF
        (:mod:`ebpf.elf.typed`); ``enums="names"`` decodes enum values to their names.  Other
        options are for ``spec.load(**options)`` and ignored here.
    :returns: the spec: programs, maps, variables, references, initial data.
    :raises ELFError: malformed or unusable ELF.
    :raises BTFError: malformed BTF or BTF map definitions.
    """
    name = _path(path)
    obj = parse_object(name)
    broken: dict[str, str] = {}
    maps, linked = link_object(obj, broken)
    spec = CollectionSpec(btf=fixup_btf(obj))
    for md in maps.values():
        if md.inner is not None and md.name.endswith(".inner"):
            continue
        spec.maps[md.name] = _map_spec(md, obj, options.get("typed", True), options.get("enums", "ints"))
        if md.pinning == LIBBPF_PIN_BY_NAME:
            spec.pin_by_name.add(md.name)
    _add_data_maps(obj, spec)
    program_names = {fn.name for fn in obj.programs}
    for md in maps.values():
        entries: list[tuple[bytes, bytes | str]] = []
        for index, target in md.values:
            if target not in spec.maps and target not in program_names:
                raise ELFError(f"{obj.path}: map {md.name!r}: initial value {index} refers to {target!r}, "
                               f"which is neither a map nor a program")
            entries.append((index.to_bytes(4, "little"), target))
        if entries:
            spec.map_contents[md.name] = entries
    linked_names = {lp.function.name for lp in linked}
    for fn in obj.programs:
        if fn.match is None and fn.name not in broken:
            broken[fn.name] = (f"{obj.path}: program {fn.name!r}: unknown section {fn.section.name!r} (no known "
                               f"prefix; plugins add prefixes through the ebpf_section_types hook)")
    for lp in linked:
        pname = lp.function.name
        if pname in broken:
            continue
        spec.programs[pname] = _program_spec(obj, lp)
        spec.references[pname] = list(lp.references)
        spec.attach_targets[pname] = lp.function.match.attach_target if lp.function.match else None
        spec.sections[pname] = lp.function.section.name
    for fn in obj.programs:
        if fn.name in broken:  # listed (so it can be switched off), refused only if loaded
            spec.programs[fn.name] = _placeholder(obj, fn, fn.name in linked_names)
            spec.references[fn.name] = []
            spec.attach_targets[fn.name] = None
            spec.sections[fn.name] = fn.section.name
    tables: tuple[Any, ...] = ()
    if any(sec.name.startswith(".struct_ops") for sec in obj.raw.sections) or any(
            ProgType.parse(p.prog_type) == ProgType.STRUCT_OPS for p in spec.programs.values()):
        from ebpf.elf.struct_ops import apply_struct_ops  # deferred: start-up time (struct_ops objects are rare)

        tables = apply_struct_ops(obj, spec)  # struct_ops tables: program targets now, the maps after load
    core = None
    if any(lp.core_relos or lp.externs for lp in linked):
        from ebpf.elf.core_relo import CoreData  # deferred: start-up time (CO-RE only when the object uses it)

        core = CoreData.of(obj, linked)
    # Plain data for load time; ebpf.elf.steps (imported above) performs it.  Loading without the
    # object's BTF silently loses typed maps, source lines, kfunc and CO-RE checks: refuse by default.
    spec.require_btf = True
    spec.loader_data[STEP] = ElfLoadData(obj.path, dict(broken), core, tables)
    return spec


def _placeholder(obj: ElfObject, fn: Function, linked: bool) -> Any:
    """The spec of a program that cannot load as it is (unknown section or unresolved reference)."""
    from ebpf.core.programs import ProgramSpec

    m = fn.match
    return ProgramSpec(prog_type=m.prog_type if m else ProgType.UNSPEC, insns=fn.insns, license=obj.license or "GPL",
                       name=fn.name, expected_attach_type=m.attach_type if m else None)


def load_elf(path: str | os.PathLike[str], **options: Any) -> Collection:
    """Load every map and program of an object file.

    :param path: the ``.o`` file.
    :param options: ``constants={name: value}`` (``.rodata`` and other globals set before load;
        an int or enum variable takes only an int), ``maps={name: {"max_entries": n, "value_size": n,
        "flags": n, "pinning": "by_name", ...}}`` and ``programs=[names]`` or ``programs={name:
        {"autoload": False, "type": "kprobe", ...}}`` (see :func:`ebpf.elf.settings.configure`),
        ``btf_path=`` (kernel BTF for CO-RE instead of ``/sys/kernel/btf/vmlinux``),
        ``pin_root=`` (for maps pinned by name; default ``/sys/fs/bpf``), ``log_level=``,
        ``keep_log=``, ``require_btf=False``
        (load without the object's BTF when the kernel rejects it, with a warning; by default
        that is a :class:`BTFError`).
    :returns: the :class:`Collection` (``programs``, ``maps``, ``variables``); close it or use ``with``.
    :raises ELFError: malformed object.  :raises BTFError: bad BTF or an unsatisfiable CO-RE relocation.
    :raises VerifierError: the verifier rejected a program (``.log`` points at source lines).
    """
    spec = load_spec(path, typed=options.pop("typed", True), enums=options.pop("enums", "ints"))
    configure(spec, maps=options.pop("maps", None), programs=options.pop("programs", None))
    return spec.load_in_place(**options)  # the spec is this call's own: no copy


def load_program_from_elf(path: str | os.PathLike[str], name: str, **options: Any) -> Any:
    """Load one program (and the maps it uses) from an object file.

    The returned program keeps its maps alive; closing it releases everything.

    :returns: the :class:`~ebpf.core.programs.Program`.
    """
    prog, _maps = load_elf_program_and_maps(path, name, **options)
    return prog


def load_elf_program_and_maps(path: str | os.PathLike[str], name: str, **options: Any) -> tuple[Any, dict[str, Any]]:
    """Load program ``name`` and every map of the object.

    :returns: ``(program, {map name: Map})``; the caller owns them (close each).
    :raises ELFError: when the object has no program ``name``.
    """
    coll = load_elf(path, programs=[name], **options)
    prog = coll.programs.pop(name)
    maps = dict(coll.maps)
    for var in coll.variables.values():
        var.close()
    coll.maps.clear()
    coll.close()  # closes only what is left (BTF fd); maps and program were handed over
    return prog, maps


def create_maps_from_elf(path: str | os.PathLike[str], **options: Any) -> dict[str, Any]:
    """Create every map an object defines (global data included), with their initial contents.

    :returns: ``{name: Map}``; the caller owns them.
    """
    spec = load_spec(path)
    spec.programs.clear()
    spec.references.clear()
    for entries in spec.map_contents.values():
        entries[:] = [(k, v) for k, v in entries if not isinstance(v, str) or v in spec.maps]
    coll = spec.load(**options)
    maps = dict(coll.maps)
    for var in coll.variables.values():
        var.close()
    coll.maps.clear()
    coll.close()
    return maps

