"""Map definitions of an object: BTF-defined ``.maps`` and the legacy ``maps`` section.

``__uint(name, val)`` is ``int (*name)[val]`` in BTF (a pointer to an array of ``val``
elements), ``__type(name, T)`` a pointer to ``T`` and ``__array(values, struct inner)`` an
array of pointers to the inner map's definition, exactly as libbpf reads them.
"""

from __future__ import annotations

import struct

from ebpf.core.btf import Array, Composite, Datasec, Enum, FuncProto, Pointer, Spec, Struct, Type, Var
from ebpf.core.errors import BTFError, ELFError
from ebpf.core.records import dataclass, field
from ebpf.core.types import MapType
from ebpf.elf.objfile import ElfObject

__all__ = ["MapDef", "collect_maps", "LIBBPF_PIN_BY_NAME"]

LIBBPF_PIN_BY_NAME = 1

# The kernel takes no BTF key/value types for these (libbpf clears them too).
NO_BTF_TYPES = {
    MapType.PERF_EVENT_ARRAY, MapType.CGROUP_ARRAY, MapType.STACK_TRACE, MapType.ARRAY_OF_MAPS,
    MapType.HASH_OF_MAPS, MapType.DEVMAP, MapType.DEVMAP_HASH, MapType.CPUMAP, MapType.XSKMAP,
    MapType.SOCKMAP, MapType.SOCKHASH, MapType.QUEUE, MapType.STACK, MapType.ARENA, MapType.PROG_ARRAY,
    MapType.RINGBUF, MapType.USER_RINGBUF, MapType.BLOOM_FILTER, MapType.REUSEPORT_SOCKARRAY,
}


@dataclass
class MapDef:
    """One map as the object defines it."""

    name: str
    map_type: int = 0
    key_size: int = 0
    value_size: int = 0
    max_entries: int = 0
    flags: int = 0
    numa_node: int | None = None
    map_extra: int = 0
    pinning: int = 0
    key_type_id: int = 0  # given to the kernel (0 for map types that take no BTF types)
    value_type_id: int = 0
    decl_key_type_id: int = 0  # as declared with __type() (a ring buffer's record type, for decoding)
    decl_value_type_id: int = 0
    inner: MapDef | None = None
    values: list[tuple[int, str]] = field(default_factory=list)  # (index, symbol) initial contents
    offset: int = 0  # of its symbol in the maps section
    size: int = 0


def collect_maps(obj: ElfObject) -> dict[str, MapDef]:
    """Every map the object defines, by name (BTF ``.maps`` first, then legacy ``maps``).

    :raises ELFError: a ``.maps`` section without BTF, or a legacy definition that is too short.
    :raises BTFError: a map definition whose BTF is not a map definition.
    """
    out: dict[str, MapDef] = {}
    if obj.maps_section >= 0:
        out.update(_btf_maps(obj))
    if obj.legacy_maps_section >= 0:
        for name, m in _legacy_maps(obj).items():
            if name in out:
                raise ELFError(f"{obj.path}: map {name!r} defined twice")
            out[name] = m
    return out


def _symbols_in(obj: ElfObject, shndx: int) -> dict[str, tuple[int, int]]:
    return {s.name: (s.value, s.size) for s in obj.raw.symbols
            if s.shndx == shndx and s.name and s.type in ("STT_OBJECT", "STT_NOTYPE")}


def _legacy_maps(obj: ElfObject) -> dict[str, MapDef]:
    sec = obj.raw.sections[obj.legacy_maps_section]
    syms = sorted(_symbols_in(obj, sec.index).items(), key=lambda kv: kv[1][0])
    if not syms:
        return {}
    # Each definition's size is its symbol's: padding or trailing bytes in the section (a
    # compiler's alignment, an iproute2-style longer struct) do not shift the definitions.
    even = sec.size // len(syms)
    out = {}
    for name, (off, sym_size) in syms:
        size = sym_size or even
        if size < 20:
            raise ELFError(f"{obj.path}: section 'maps': map {name!r} is {size} bytes: a bpf_map_def needs at least 20")
        if off + 20 > len(sec.data):
            raise ELFError(f"{obj.path}: section 'maps': map {name!r} at offset {off:#x} is truncated")
        mt, ks, vs, me, fl = struct.unpack_from("<5I", sec.data, off)
        pinning = struct.unpack_from("<I", sec.data, off + 24)[0] if size >= 28 and off + 28 <= len(sec.data) else 0
        out[name] = MapDef(name, mt, ks, vs, me, fl, pinning=pinning, offset=off, size=size)
    return out


def _uint(btf: Spec, type_id: int, where: str) -> int:
    """Value of ``__uint(name, val)`` (a pointer to an array of ``val`` elements) or of
    ``__ulong(name, val)`` (an anonymous enum, 64-bit when needed, whose one value is ``val``)."""
    t = btf.resolve(type_id)
    if isinstance(t, Enum):  # Enum64 too
        if len(t.values) != 1:
            raise BTFError(f"{where}: expected __ulong() (an enum with one value), found {len(t.values)} values")
        return t.values[0].value & ((1 << 64) - 1)
    if not isinstance(t, Pointer):
        raise BTFError(f"{where}: expected __uint() (a pointer to an array), found {t.kind_name}")
    arr = btf.resolve(t.type_id)
    if not isinstance(arr, Array):
        raise BTFError(f"{where}: expected __uint() (a pointer to an array), found pointer to {arr.kind_name}")
    return arr.nelems


def _maps_datasec(btf: Spec) -> Datasec | None:
    found = btf.find_all(".maps", "datasec")
    return found[0] if found and isinstance(found[0], Datasec) else None


def _btf_maps(obj: ElfObject) -> dict[str, MapDef]:
    btf = obj.btf
    if btf is None:
        raise ELFError(f"{obj.path}: section '.maps' needs BTF (compile with -g)")
    ds = _maps_datasec(btf)
    if ds is None:
        raise ELFError(f"{obj.path}: section '.maps' has no DATASEC in .BTF")
    syms = _symbols_in(obj, obj.maps_section)
    out = {}
    for vs in ds.vars:
        var = btf[vs.type_id]
        if not isinstance(var, Var):
            raise BTFError(f"{obj.path}: .maps entry type {vs.type_id} is a {var.kind_name}, not a variable")
        where = f"{obj.path}: map {var.name!r}"
        m = _parse_def(btf, btf.resolve(var.type_id), var.name, where)
        off, size = syms.get(var.name, (0, 0))
        m.offset, m.size = off, size
        out[var.name] = m
    _collect_values(obj, out)
    return out


def _parse_def(btf: Spec, t: Type, name: str, where: str, inner: bool = False) -> MapDef:
    if not isinstance(t, Struct):
        raise BTFError(f"{where}: a map definition must be a struct, found {t.kind_name}")
    m = MapDef(name)
    for member in t.members:
        mname, mtype = member.name, member.type_id
        w = f"{where}.{mname}"
        if mname == "type":
            m.map_type = _uint(btf, mtype, w)
        elif mname == "max_entries":
            m.max_entries = _uint(btf, mtype, w)
        elif mname == "map_flags":
            m.flags = _uint(btf, mtype, w)
        elif mname == "numa_node":
            m.numa_node = _uint(btf, mtype, w)
        elif mname == "map_extra":
            m.map_extra = _uint(btf, mtype, w)
        elif mname == "pinning":
            m.pinning = _uint(btf, mtype, w)
            if m.pinning not in (0, LIBBPF_PIN_BY_NAME):
                raise BTFError(f"{w}: unsupported pinning {m.pinning} (0 = none, 1 = by name)")
        elif mname == "key_size":
            m.key_size = _uint(btf, mtype, w)
        elif mname == "value_size":
            m.value_size = _uint(btf, mtype, w)
        elif mname in ("key", "value"):
            ptr = btf.resolve(mtype)
            if not isinstance(ptr, Pointer):
                raise BTFError(f"{w}: expected __type() (a pointer), found {ptr.kind_name}")
            size = btf.sizeof(ptr.type_id)
            if mname == "key":
                m.key_size, m.key_type_id = size, ptr.type_id
            else:
                m.value_size, m.value_type_id = size, ptr.type_id
        elif mname == "values":
            arr = btf.resolve(mtype)
            if not isinstance(arr, Array):
                raise BTFError(f"{w}: expected __array(values, ...), found {arr.kind_name}")
            elem = btf.resolve(arr.type_id)
            if not isinstance(elem, Pointer):
                raise BTFError(f"{w}: __array elements must be pointers, found {elem.kind_name}")
            target = btf.resolve(elem.type_id)
            if inner:
                raise BTFError(f"{w}: an inner map cannot have values (maps nest one level)")
            if isinstance(target, Struct):
                m.inner = _parse_def(btf, target, f"{name}.inner", w, inner=True)
            elif not isinstance(target, FuncProto):  # prog arrays: __array(values, int (void *))
                raise BTFError(f"{w}: __array elements must point to a map definition or a function prototype")
        else:
            raise BTFError(f"{w}: unknown map attribute {mname!r}")
    if m.map_type in (MapType.ARRAY_OF_MAPS, MapType.HASH_OF_MAPS):
        if m.inner is None:
            raise BTFError(f"{where}: map-in-map needs __array(values, struct ...) for its inner map")
        m.value_size = m.value_size or 4
    if m.map_type == MapType.PROG_ARRAY:
        m.key_size, m.value_size = m.key_size or 4, m.value_size or 4
    m.decl_key_type_id, m.decl_value_type_id = m.key_type_id, m.value_type_id
    if m.map_type in (MapType.RINGBUF, MapType.USER_RINGBUF):
        # __type(value, struct event) documents the record type; the kernel wants no key or value.
        m.key_size = m.value_size = 0
    elif m.map_type == MapType.PERF_EVENT_ARRAY:
        m.key_size = m.value_size = 4  # CPU index -> perf event fd, whatever __type() said
    if m.map_type in NO_BTF_TYPES:
        m.key_type_id = m.value_type_id = 0
    return m


def _collect_values(obj: ElfObject, maps: dict[str, MapDef]) -> None:
    """Initial ``values = { [i] = &inner_map }`` / ``{ [i] = &prog }`` from the .maps relocations."""
    relocs = obj.raw.relocations.get(obj.maps_section, [])
    for r in relocs:
        sym = obj.symbol(r.symbol, f"section '.maps' offset {r.offset:#x}")
        owner = next((m for m in maps.values() if m.offset <= r.offset < m.offset + max(m.size, 1)), None)
        if owner is None or owner.map_type not in (MapType.ARRAY_OF_MAPS, MapType.HASH_OF_MAPS, MapType.PROG_ARRAY):
            raise ELFError(f"{obj.path}: section '.maps': relocation at offset {r.offset:#x} (to {sym.name!r}) "
                           f"is not inside a map-in-map or program array values")
        values_off = _values_offset(obj, owner)
        index = (r.offset - owner.offset - values_off) // 8
        if index < 0:
            raise ELFError(f"{obj.path}: map {owner.name!r}: relocation at offset {r.offset:#x} is before its values")
        if owner.max_entries and index >= owner.max_entries:
            raise ELFError(f"{obj.path}: map {owner.name!r}: initial value index {index} >= max_entries "
                           f"{owner.max_entries}")
        owner.values.append((index, sym.name))


def _values_offset(obj: ElfObject, m: MapDef) -> int:
    btf = obj.btf
    assert btf is not None
    ds = _maps_datasec(btf)
    assert ds is not None
    for vs in ds.vars:
        var = btf[vs.type_id]
        if var.name == m.name and isinstance(var, Var):
            t = btf.resolve(var.type_id)
            for member in t.members if isinstance(t, Composite) else ():
                if member.name == "values":
                    return member.bit_offset // 8
    raise ELFError(f"{obj.path}: map {m.name!r} has no values member")
