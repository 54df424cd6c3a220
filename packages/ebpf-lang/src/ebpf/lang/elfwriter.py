"""Write a compiled module as an ELF object, laid out the way clang writes BPF objects.

Sections: one per program section name (programs sharing a name are concatenated), a
``.rel<section>`` of ``R_BPF_64_64`` relocations for each map load, ``.maps`` holding
BTF-defined maps (``struct { int (*type)[T]; int (*max_entries)[N]; K *key; V *value; }``),
``license``, ``.BTF`` (map, key/value and function types), ``.BTF.ext`` (func_info and
line_info, offsets in bytes within each section), ``.symtab`` and ``.strtab``.
Written with :mod:`struct` only.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

from ebpf.core.btf import Builder, Linkage, Member, Var
from ebpf.core.btf import Struct as BtfStruct
from ebpf.core.types import MapType
from ebpf.lang.btfgen import ModuleBtf, ProgramBtf
from ebpf.lang.kernel import CompiledModule, CompiledProgram
from ebpf.lang.maps import MapDecl
from ebpf.lang.types import PtrType, i32

__all__ = ["write_elf"]

EM_BPF = 247
SHT_PROGBITS, SHT_SYMTAB, SHT_STRTAB, SHT_REL = 1, 2, 3, 9
SHF_WRITE, SHF_ALLOC, SHF_EXECINSTR = 1, 2, 4
STB_GLOBAL, STT_OBJECT, STT_FUNC = 1, 1, 2
R_BPF_64_64 = 1
_SHDR = struct.Struct("<IIQQQQIIQQ")
_SYM = struct.Struct("<IBBHQQ")
_REL = struct.Struct("<QQ")


class _Strtab:
    def __init__(self) -> None:
        self.data = bytearray(b"\0")
        self.offsets: dict[str, int] = {"": 0}

    def add(self, text: str) -> int:
        off = self.offsets.get(text)
        if off is None:
            off = self.offsets[text] = len(self.data)
            self.data += text.encode() + b"\0"
        return off


def _map_def(decl: MapDecl, btf: ModuleBtf) -> list[tuple[str, int]]:
    """The members of a BTF map definition: ``(name, type id)``."""
    b: Builder = btf.types.builder
    int_id = btf.types.int_id(i32)

    def uint(value: int) -> int:  # __uint(name, value): int (*name)[value]
        return b.add_pointer(b.add_array(int_id, value, int_id))

    members = [("type", uint(int(decl.map_type))), ("max_entries", uint(decl.max_entries))]
    if decl.map_type == MapType.PERF_EVENT_ARRAY:
        members += [("key_size", uint(4)), ("value_size", uint(4))]
    elif decl.key is not None and decl.value is not None:
        members += [("key", b.add_pointer(decl.key.btf(btf.types))), ("value", b.add_pointer(decl.value.btf(btf.types)))]
    elif decl.value is not None:  # queue, stack, bloom filter
        members.append(("value", b.add_pointer(decl.value.btf(btf.types))))
    if decl.map_extra:
        members.append(("map_extra", uint(decl.map_extra)))
    if decl.flags:
        members.append(("map_flags", uint(decl.flags)))
    return members


def _sections(programs: Sequence[CompiledProgram]) -> dict[str, list[tuple[CompiledProgram, int]]]:
    out: dict[str, list[tuple[CompiledProgram, int]]] = {}
    for p in programs:
        entries = out.setdefault(p.section, [])
        offset = sum(len(q.insns) for q, _ in entries)
        entries.append((p, offset))
    return out


def _btf_ext(btf: ModuleBtf, sections: dict[str, list[tuple[CompiledProgram, int]]],
             funcs: dict[str, ProgramBtf]) -> bytes:
    finfo = bytearray(struct.pack("<I", 8))
    linfo = bytearray(struct.pack("<I", 16))
    for name, entries in sections.items():
        sec_off = btf.string(name)
        finfo += struct.pack("<II", sec_off, len(entries))
        rows: list[bytes] = []
        for p, offset in entries:
            pb = funcs[p.name]
            finfo += struct.pack("<II", offset, pb.func_type)
            for slot, filename, text, line, col in pb.lines:
                rows.append(struct.pack("<IIII", offset + slot * 8, btf.string(filename), btf.string(text),
                                        (line << 10) | min(col, 0x3FF)))
        linfo += struct.pack("<II", sec_off, len(rows)) + b"".join(rows)
    hdr_len = 32
    header = struct.pack("<HBBIIIIIII", 0xEB9F, 1, 0, hdr_len, 0, len(finfo), len(finfo), len(linfo),
                         len(finfo) + len(linfo), 0)
    return header + bytes(finfo) + bytes(linfo)


def write_elf(module: CompiledModule) -> bytes:
    """The ELF object of ``module`` (see the module docstring for its layout)."""
    btf = ModuleBtf()
    sections = _sections(module.programs)
    funcs: dict[str, ProgramBtf] = {}
    for p in module.programs:
        ctx_t = p.function.ctx.type
        funcs[p.name] = ProgramBtf(btf.func(p.name, p.function.ctx.name,
                                            ctx_t.target if isinstance(ctx_t, PtrType) else None), p.line_records())
    # .maps: one definition (8 bytes per member, all zero) per map, described by BTF.
    map_offsets: dict[str, tuple[int, int]] = {}
    secinfo: list[tuple[int, int, int]] = []
    maps_size = 0
    for name, decl in module.maps.items():
        members = _map_def(decl, btf)
        struct_id = btf.types.builder.add(BtfStruct(0, "", 8 * len(members),
                                                    tuple(Member(n, t, 64 * i) for i, (n, t) in enumerate(members))))
        var_id = btf.types.builder.add(Var(0, name, struct_id, Linkage.GLOBAL))
        size = 8 * len(members)
        map_offsets[name] = (maps_size, size)
        secinfo.append((var_id, maps_size, size))
        maps_size += size
    if secinfo:
        btf.types.builder.add_datasec(".maps", maps_size, secinfo)
    btf_ext = _btf_ext(btf, sections, funcs)
    btf_blob = btf.encode()
    licenses = {p.license for p in module.programs}
    license = (sorted(licenses)[0] if len(licenses) == 1 else "GPL").encode() + b"\0"

    strtab = _Strtab()
    shdrs: list[tuple[int, int, int, bytes, int, int, int, int]] = []  # name, type, flags, data, link, info, align, entsize

    def section(name: str, sh_type: int, flags: int, data: bytes, link: int = 0, info: int = 0, align: int = 1,
                entsize: int = 0) -> int:
        shdrs.append((strtab.add(name), sh_type, flags, data, link, info, align, entsize))
        return len(shdrs)  # index (0 is the null section)

    prog_index: dict[str, int] = {}
    for name, entries in sections.items():
        prog_index[name] = section(name, SHT_PROGBITS, SHF_ALLOC | SHF_EXECINSTR, b"".join(p.insns for p, _ in entries),
                                   align=8)
    maps_index = section(".maps", SHT_PROGBITS, SHF_ALLOC | SHF_WRITE, bytes(maps_size), align=8) if secinfo else 0
    license_index = section("license", SHT_PROGBITS, SHF_ALLOC | SHF_WRITE, license)
    # Symbols: programs, maps, LICENSE (all global; index 0 is the null symbol).
    symbols: list[bytes] = [_SYM.pack(0, 0, 0, 0, 0, 0)]
    map_sym: dict[str, int] = {}
    for name, entries in sections.items():
        for p, offset in entries:
            symbols.append(_SYM.pack(strtab.add(p.name), (STB_GLOBAL << 4) | STT_FUNC, 0, prog_index[name], offset,
                                     len(p.insns)))
    for name, (offset, size) in map_offsets.items():
        map_sym[name] = len(symbols)
        symbols.append(_SYM.pack(strtab.add(name), (STB_GLOBAL << 4) | STT_OBJECT, 0, maps_index, offset, size))
    symbols.append(_SYM.pack(strtab.add("LICENSE"), (STB_GLOBAL << 4) | STT_OBJECT, 0, license_index, 0, len(license)))
    symtab_index = len(shdrs) + 1 + sum(1 for entries in sections.values() if any(p.map_loads for p, _ in entries))
    for name, entries in sections.items():
        rels = [_REL.pack(offset + slot * 8, (map_sym[m] << 32) | R_BPF_64_64)
                for p, offset in entries for slot, m in p.map_loads]
        if rels:
            section(f".rel{name}", SHT_REL, 0, b"".join(rels), link=symtab_index, info=prog_index[name], align=8,
                    entsize=_REL.size)
    assert len(shdrs) + 1 == symtab_index
    strtab_index = symtab_index + 1
    section(".symtab", SHT_SYMTAB, 0, b"".join(symbols), link=strtab_index, info=1, align=8, entsize=_SYM.size)
    btf_name = strtab.add(".BTF")
    ext_name = strtab.add(".BTF.ext")
    shstr_name = strtab.add(".strtab")
    shdrs.append((shstr_name, SHT_STRTAB, 0, b"", 0, 0, 1, 0))  # filled last: it holds every name
    shdrs.append((btf_name, SHT_PROGBITS, 0, btf_blob, 0, 0, 4, 0))
    shdrs.append((ext_name, SHT_PROGBITS, 0, btf_ext, 0, 0, 4, 0))
    shdrs[strtab_index - 1] = (shstr_name, SHT_STRTAB, 0, bytes(strtab.data), 0, 0, 1, 0)

    out = bytearray(64)
    headers = [_SHDR.pack(0, 0, 0, 0, 0, 0, 0, 0, 0, 0)]
    for name_off, sh_type, flags, data, link, info, align, entsize in shdrs:
        pad = (-len(out)) % max(align, 1)
        out += bytes(pad)
        headers.append(_SHDR.pack(name_off, sh_type, flags, 0, len(out), len(data), link, info, align, entsize))
        out += data
    out += bytes((-len(out)) % 8)
    shoff = len(out)
    out += b"".join(headers)
    ident = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)
    out[:64] = ident + struct.pack("<HHIQQQIHHHHHH", 1, EM_BPF, 1, 0, 0, shoff, 0, 64, 0, 0, _SHDR.size,
                                   len(headers), strtab_index)
    return bytes(out)
