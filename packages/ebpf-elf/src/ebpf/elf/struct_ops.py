"""struct_ops in objects: the ``.struct_ops`` / ``.struct_ops.link`` sections, as libbpf reads them.

A C program declares the table as a global of the kernel struct's type in one of those sections::

    SEC(".struct_ops.link")
    struct tcp_congestion_ops ebpf_reno = { .ssthresh = (void *)my_ssthresh, .name = "ebpf_reno" };

The section holds the variable's bytes (laid out by the object's own, possibly partial, definition
of the struct), its BTF DATASEC names the variable and its type, and its relocations put program
symbols at the function-pointer members.  From these:

- each program a table references gets ``attach_to="<struct>:<member>"`` (its ``attach_btf_id`` is
  the kernel struct, its ``expected_attach_type`` the member index), as libbpf derives it;
- after the programs load, a :class:`~ebpf.core.struct_ops.StructOpsMap` named after the variable
  is created (``BPF_F_LINK`` for ``.struct_ops.link``), members copied by name from the object's
  layout to the kernel's, programs put in the function pointers.  It is in ``collection.maps``;
  ``collection.maps["ebpf_reno"].register()`` registers it (a link, closed to unregister).

struct_ops programs no table references are not loaded (as libbpf).
"""

from __future__ import annotations

from typing import Any

from ebpf.core.btf import Datasec, FuncProto, Pointer, Struct, Var
from ebpf.core.errors import BTFError, EBPFError, ELFError
from ebpf.core.records import dataclass, field
from ebpf.core.types import ProgType
from ebpf.elf.objfile import ElfObject

__all__ = ["StructOpsDef", "collect_struct_ops", "apply_struct_ops", "build_struct_ops", "is_struct_ops_section"]


def is_struct_ops_section(name: str) -> bool:
    """True for ``.struct_ops``, ``.struct_ops.link`` and their ``.<suffix>`` variants."""
    return name in (".struct_ops", ".struct_ops.link") or name.startswith((".struct_ops.", ".struct_ops.link."))


@dataclass
class StructOpsDef:
    """One struct_ops table of an object: the variable, its kernel struct, its bytes and programs."""

    name: str
    struct_name: str
    link: bool
    data: bytes
    #: object-layout members: name -> (offset in ``data``, size, is a function pointer)
    members: dict[str, tuple[int, int, bool]] = field(default_factory=dict)
    #: member name -> the program (function symbol) it points at
    programs: dict[str, str] = field(default_factory=dict)


def _struct_members(obj: ElfObject, struct: Struct) -> dict[str, tuple[int, int, bool]]:
    btf = obj.btf
    assert btf is not None
    out = {}
    for m in struct.members:
        if m.bitfield_size or m.bit_offset % 8:
            raise ELFError(f"{obj.path}: struct {struct.name} member {m.name!r} is a bitfield (not supported in "
                           "struct_ops tables)")
        t = btf.resolve(m.type_id)
        is_func = isinstance(t, Pointer) and isinstance(btf.resolve(t.type_id), FuncProto)
        out[m.name] = (m.bit_offset // 8, btf.sizeof(m.type_id), is_func)
    return out


def collect_struct_ops(obj: ElfObject) -> list[StructOpsDef]:
    """The struct_ops tables of ``obj`` (no kernel objects).

    :raises ELFError: a table without BTF, a relocation that is not a program at a function-pointer member.
    """
    tables: list[StructOpsDef] = []
    for sec in obj.raw.sections:
        if not is_struct_ops_section(sec.name):
            continue
        if obj.btf is None:
            raise ELFError(f"{obj.path}: section {sec.name} needs the object's BTF (compile with -g)")
        found = obj.btf.find_all(sec.name, "datasec")
        if not found or not isinstance(found[0], Datasec):
            raise ELFError(f"{obj.path}: no BTF DATASEC for section {sec.name}")
        placed: list[tuple[int, int, StructOpsDef]] = []
        for vs in found[0].vars:
            var = obj.btf[vs.type_id]
            if not isinstance(var, Var):
                continue
            st = obj.btf.resolve(var.type_id)
            if not isinstance(st, Struct):
                raise ELFError(f"{obj.path}: {sec.name} variable {var.name!r} is not a struct")
            if vs.offset + vs.size > len(sec.data):
                raise ELFError(f"{obj.path}: {sec.name} variable {var.name!r} runs past the section")
            # libbpf's flavours: "tcp_congestion_ops___v2" is still tcp_congestion_ops
            d = StructOpsDef(var.name, st.name.split("___")[0], ".link" in sec.name,
                             bytes(sec.data[vs.offset:vs.offset + vs.size]), _struct_members(obj, st))
            placed.append((vs.offset, vs.size, d))
            tables.append(d)
        for rel in obj.raw.relocations.get(sec.index, []):
            where = next(((off, d) for off, size, d in placed if off <= rel.offset < off + size), None)
            if where is None:
                raise ELFError(f"{obj.path}: {sec.name}: relocation at {rel.offset:#x} is outside every variable")
            off, d = where
            member = next((n for n, (moff, _, _) in d.members.items() if moff == rel.offset - off), None)
            if member is None or not d.members[member][2]:
                raise ELFError(f"{obj.path}: {d.name}: relocation at offset {rel.offset - off:#x} is not at a "
                               "function-pointer member")
            sym = obj.symbol(rel.symbol, f"{sec.name} relocation")
            target = next((fn for fn in obj.programs if fn.name == sym.name), None)
            if target is None:
                raise ELFError(f"{obj.path}: {d.name}.{member} points at {sym.name!r}, which is not a program "
                               "(put it in a SEC(\"struct_ops/...\") section)")
            d.programs[member] = target.name
    return tables


def apply_struct_ops(obj: ElfObject, spec: Any) -> tuple[StructOpsDef, ...]:
    """Point the object's struct_ops programs at their members; the tables to build after load.

    :param spec: the :class:`~ebpf.core.collection.CollectionSpec` being built from ``obj``.
    :returns: the tables (:func:`build_struct_ops` makes their maps once the programs loaded).
    :raises ELFError: a program used by two members, or a table on no struct_ops program.
    """
    tables = collect_struct_ops(obj)
    used: dict[str, str] = {}
    for d in tables:
        for member, prog in d.programs.items():
            target = f"{d.struct_name}:{member}"
            if used.setdefault(prog, target) != target:
                raise ELFError(f"{obj.path}: program {prog!r} is used for both {used[prog]} and {target}")
            pspec = spec.programs.get(prog)
            if pspec is None or ProgType.parse(pspec.prog_type) != ProgType.STRUCT_OPS:
                raise ELFError(f"{obj.path}: {d.name}.{member} points at {prog!r}, which is not a struct_ops program")
            pspec.attach_to = target
    for name, pspec in list(spec.programs.items()):
        if ProgType.parse(pspec.prog_type) == ProgType.STRUCT_OPS and name not in used:
            for table in (spec.programs, spec.references, spec.attach_targets, spec.sections):
                table.pop(name, None)  # no table uses it: libbpf does not load it either
    return tuple(tables)


def build_struct_ops(tables: tuple[StructOpsDef, ...], path: str, maps: dict[str, Any],
                     programs: dict[str, Any]) -> None:
    """Create the struct_ops map of each table from the loaded ``programs``, added to ``maps``.

    :raises ELFError: a table named like another map, or a member the kernel's struct lacks.
    """
    for d in tables:
        if d.name in maps:
            raise ELFError(f"{path}: struct_ops table {d.name!r} has the name of another map")
        maps[d.name] = _create(d, programs, path)


def _create(d: StructOpsDef, programs: dict[str, Any], path: str) -> Any:
    from ebpf.core.struct_ops import create_struct_ops_map

    ops = create_struct_ops_map(d.struct_name, d.name[:15], link=d.link)
    try:
        values: dict[str, Any] = {}
        for member, (off, size, is_func) in d.members.items():
            if is_func:
                if member in d.programs:
                    values[member] = programs[d.programs[member]]
                continue
            raw = d.data[off:off + size]
            if not any(raw):
                continue  # zero is the kernel's default for every member
            kernel = ops.members.get(member)
            if kernel is None:
                raise ELFError(f"{path}: {d.name}: the kernel's struct {d.struct_name} has no member {member!r}")
            if kernel.size != size:
                raise ELFError(f"{path}: {d.name}.{member} is {size} bytes in the object but {kernel.size} in the "
                               "kernel")
            if kernel.kind == "int":
                values[member] = int.from_bytes(raw, "little", signed=kernel.signed)
            elif kernel.kind == "char[]":
                values[member] = raw.split(b"\0", 1)[0]
            else:
                values[member] = raw
        ops.set(**values)
    except (EBPFError, BTFError):
        ops.close()
        raise
    return ops
