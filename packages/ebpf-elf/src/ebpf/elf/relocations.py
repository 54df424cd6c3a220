"""Linking one program: its instructions, the subprograms it calls, and every relocation.

For each program libbpf's way is followed: the entry function comes first, each subprogram
it (transitively) calls is appended once (``.text`` functions and static functions of the
same section), ``call`` and ``ld_imm64`` function-pointer offsets are recomputed, map and
global-data references (``R_BPF_64_64``) become :class:`MapReference` s, externs
(``__kconfig``, ``__ksym``, kfuncs) are recorded for the loader, and ``.BTF.ext`` func_info,
line_info and CO-RE records are remapped to the linked instruction indices.
"""

from __future__ import annotations

import struct
from bisect import bisect_left
from typing import Any

from ebpf.core.collection import MapReference
from ebpf.core.errors import ELFError
from ebpf.core.records import dataclass, field
from ebpf.elf._reader import SHN_UNDEF, RawRelocation
from ebpf.elf.btf_ext import CoreRelo
from ebpf.elf.mapdefs import MapDef
from ebpf.elf.objfile import ElfObject, Function

__all__ = ["LinkedProgram", "ExternRef", "link_program", "KCONFIG_MAP"]

KCONFIG_MAP = ".kconfig"

R_BPF_NONE = 0
R_BPF_64_64 = 1
R_BPF_64_ABS64 = 2
R_BPF_64_ABS32 = 3
R_BPF_64_NODYLD32 = 4
R_BPF_64_32 = 10

OP_CALL = 0x85
OP_LD_IMM64 = 0x18
PSEUDO_CALL = 1
PSEUDO_KFUNC_CALL = 2
PSEUDO_BTF_ID = 3
PSEUDO_FUNC = 4


@dataclass
class ExternRef:
    """An instruction that needs a kernel symbol's BTF id (``__ksym`` variable or kfunc call)."""

    insn: int
    name: str
    # "ksym" (ld_imm64 of a typed kernel variable), "ksym_addr" (typeless: address), "kfunc" (call),
    # "kfunc_addr" (ld_imm64 of a kfunc: bpf_ksym_exists)
    kind: str
    weak: bool


@dataclass
class LinkedProgram:
    """A program with its subprograms appended and its relocations collected."""

    function: Function
    insns: bytearray
    references: list[MapReference] = field(default_factory=list)
    externs: list[ExternRef] = field(default_factory=list)
    func_info: list[tuple[int, int]] = field(default_factory=list)  # (insn, btf FUNC id)
    line_info: list[tuple[int, int, int, int]] = field(default_factory=list)
    core_relos: list[tuple[int, CoreRelo]] = field(default_factory=list)
    subprograms: list[str] = field(default_factory=list)


def _relocs_by_offset(obj: ElfObject, section: int) -> dict[int, RawRelocation]:
    cache: dict[int, dict[int, RawRelocation]] = obj.__dict__.setdefault("_reloc_cache", {})
    if section not in cache:
        cache[section] = {r.offset: r for r in obj.raw.relocations.get(section, [])}
    return cache[section]


def _function_containing(obj: ElfObject, section: int, offset: int, where: str) -> Function:
    best = obj.functions.get((section, offset))  # calls target a function's start
    if best is None:
        for (sec, start), fn in obj.functions.items():
            if sec == section and start <= offset < start + fn.size:
                best = fn
    if best is None:
        name = obj.raw.sections[section].name if 0 <= section < len(obj.raw.sections) else f"#{section}"
        raise ELFError(f"{obj.path}: {where}: call target offset {offset:#x} in section {name!r} is not in any function")
    return best


def _map_at(maps: dict[str, MapDef], offset: int) -> MapDef | None:
    for m in maps.values():
        if m.offset <= offset < m.offset + max(m.size, 1):
            return m
    return None


def link_program(obj: ElfObject, fn: Function, maps: dict[str, MapDef]) -> LinkedProgram:
    """Link program ``fn``: append the subprograms it calls, collect its relocations.

    :raises ELFError: relocations to missing symbols, calls outside functions, references to
        sections that are neither maps nor data.
    """
    out = bytearray(fn.insns)
    linked = LinkedProgram(fn, out)
    bases: dict[tuple[int, int], int] = {(fn.section.index, fn.offset): 0}
    order = [fn]

    def ensure(callee: Function) -> int:
        key = (callee.section.index, callee.offset)
        if key not in bases:
            bases[key] = len(out) // 8
            out.extend(callee.insns)
            order.append(callee)
            linked.subprograms.append(callee.name)
        return bases[key]

    k = 0
    while k < len(order):
        f = order[k]
        k += 1
        base = bases[(f.section.index, f.offset)]
        relocs = _relocs_by_offset(obj, f.section.index)
        for j in range(f.size // 8):
            sec_off = f.offset + j * 8
            pos = (base + j) * 8
            code, regs = out[pos], out[pos + 1]
            src = regs >> 4
            imm = struct.unpack_from("<i", out, pos + 4)[0]
            r = relocs.get(sec_off)
            where = f"section {f.section.name!r} offset {sec_off:#x} (program {fn.name!r})"
            if r is not None and r.type == R_BPF_NONE:
                r = None
            call_sym = obj.symbol(r.symbol, where) if code == OP_CALL and r is not None else None
            if call_sym is not None and call_sym.shndx == SHN_UNDEF:
                ext = obj.externs.get(call_sym.name)
                if ext is None or ext.kind not in ("kfunc", "ksym"):
                    raise ELFError(f"{obj.path}: {where}: call to undefined function {call_sym.name!r} "
                                   f"(not a __ksym kfunc)")
                out[pos + 1] = (regs & 0x0F) | (PSEUDO_KFUNC_CALL << 4)
                struct.pack_into("<hi", out, pos + 2, 0, 0)
                linked.externs.append(ExternRef(base + j, call_sym.name, "kfunc", ext.weak))
            elif code == OP_CALL and src == PSEUDO_CALL:
                if call_sym is not None:
                    target_sec, target = call_sym.shndx, call_sym.value + (imm + 1) * 8
                else:
                    target_sec, target = f.section.index, sec_off + (imm + 1) * 8
                callee = _function_containing(obj, target_sec, target, where)
                cbase = ensure(callee)
                new = cbase + (target - callee.offset) // 8 - (base + j) - 1
                struct.pack_into("<i", out, pos + 4, new)
            elif code == OP_CALL and call_sym is not None:
                raise ELFError(f"{obj.path}: {where}: call relocation to {call_sym.name!r}, which is neither a "
                               f"function of this object nor a kfunc")
            elif code == OP_LD_IMM64 and r is not None:
                if pos + 16 > len(out):
                    raise ELFError(f"{obj.path}: {where}: truncated ld_imm64")
                _ld_imm64(obj, linked, maps, r, base + j, imm, where, ensure)
            elif r is not None:
                raise ELFError(f"{obj.path}: {where}: relocation (type {r.type}) at an instruction (opcode "
                               f"{code:#04x}) that is neither a call nor a ld_imm64")
        _remap_ext(obj, linked, f, base)
    return linked


def _ld_imm64(obj: ElfObject, linked: LinkedProgram, maps: dict[str, MapDef], r: RawRelocation, idx: int,
              imm: int, where: str, ensure: object) -> None:
    out = linked.insns
    pos = idx * 8
    sym = obj.symbol(r.symbol, where)
    sec_sym = sym.type == "STT_SECTION"
    if sym.shndx == SHN_UNDEF:
        ext = obj.externs.get(sym.name)
        if ext is None or ext.kind == "undefined":
            raise ELFError(f"{obj.path}: {where}: relocation to undefined symbol {sym.name!r} "
                           f"(not a __kconfig or __ksym extern)")
        if ext.kind == "kconfig":
            linked.references.append(MapReference(idx, KCONFIG_MAP, ext.offset, "value"))
        elif ext.kind == "kfunc":  # bpf_ksym_exists(kfunc): the kfunc's BTF id, or 0 when missing
            out[pos + 1] = (out[pos + 1] & 0x0F) | (PSEUDO_BTF_ID << 4)
            linked.externs.append(ExternRef(idx, sym.name, "kfunc_addr", ext.weak))
        elif ext.typeless:  # a plain address from kallsyms, patched in at load time
            linked.externs.append(ExternRef(idx, sym.name, "ksym_addr", ext.weak))
        else:
            out[pos + 1] = (out[pos + 1] & 0x0F) | (PSEUDO_BTF_ID << 4)
            linked.externs.append(ExternRef(idx, sym.name, "ksym", ext.weak))
        return
    if sym.shndx in (obj.maps_section, obj.legacy_maps_section):
        off = sym.value + (imm if sec_sym else 0)
        m = _map_at(maps, off)
        if m is None:
            raise ELFError(f"{obj.path}: {where}: reference to offset {off:#x} of the maps section, where no map is")
        linked.references.append(MapReference(idx, m.name, 0, "fd"))
        return
    data = obj.data.get(sym.shndx)
    if data is not None:
        off = (0 if sec_sym else sym.value) + imm
        linked.references.append(MapReference(idx, data.name, off, "value"))
        return
    if 0 <= sym.shndx < len(obj.raw.sections) and obj.raw.sections[sym.shndx].executable:
        target = (0 if sec_sym else sym.value) + imm
        callee = _function_containing(obj, sym.shndx, target, where)
        cbase = ensure(callee)  # type: ignore[operator]
        out[pos + 1] = (out[pos + 1] & 0x0F) | (PSEUDO_FUNC << 4)
        struct.pack_into("<i", out, pos + 4, cbase + (target - callee.offset) // 8 - idx - 1)
        return
    sec_name = obj.raw.sections[sym.shndx].name if 0 <= sym.shndx < len(obj.raw.sections) else f"#{sym.shndx}"
    raise ELFError(f"{obj.path}: {where}: reference to {sym.name or 'a symbol'!r} in section {sec_name!r}, "
                   f"which is neither a map nor global data")


def _in_range(obj: ElfObject, kind: str, sec: str, records: list[Any], lo: int, hi: int) -> list[Any]:
    """The records of ``sec`` with ``lo <= insn_off < hi`` (sorted once per section, then bisected)."""
    cache: dict[tuple[str, str], tuple[list[int], list[Any]]] = obj.__dict__.setdefault("_ext_cache", {})
    key = (kind, sec)
    if key not in cache:
        ordered = sorted(records, key=lambda r: r.insn_off)
        cache[key] = ([r.insn_off for r in ordered], ordered)
    offsets, ordered = cache[key]
    return ordered[bisect_left(offsets, lo) : bisect_left(offsets, hi)]


def _remap_ext(obj: ElfObject, linked: LinkedProgram, f: Function, base: int) -> None:
    ext = obj.btf_ext
    if ext is None:
        return
    lo, hi = f.offset, f.offset + f.size
    sec = f.section.name
    for fi in _in_range(obj, "func", sec, ext.func_info.get(sec, []), lo, hi):
        linked.func_info.append((base + (fi.insn_off - lo) // 8, fi.type_id))
    for li in _in_range(obj, "line", sec, ext.line_info.get(sec, []), lo, hi):
        linked.line_info.append((base + (li.insn_off - lo) // 8, li.file_name_off, li.line_off, li.line_col))
    for cr in _in_range(obj, "core", sec, ext.core_relos.get(sec, []), lo, hi):
        linked.core_relos.append((base + (cr.insn_off - lo) // 8, cr))
