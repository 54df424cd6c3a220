"""Reads an ELF relocatable object into plain data: the one module that parses ELF.

Callers get :class:`RawObject` (sections, symbols and relocations as dataclasses), and every
parsing failure is an :class:`ELFError` naming the file, the section and the offset where it
could be told.  Only what a BPF loader needs is read (section headers, their contents, the
symbol table and REL entries), directly with :mod:`struct`: no ELF library to import.
"""

from __future__ import annotations

import struct

from ebpf.core.errors import ELFError
from ebpf.core.records import dataclass, field

__all__ = ["RawSection", "RawSymbol", "RawRelocation", "RawObject", "read_object", "EM_BPF"]

EM_BPF = 247
SHT_PROGBITS = 1
SHT_SYMTAB = 2
SHT_NOBITS = 8
SHT_REL = 9
SHF_EXECINSTR = 0x4
SHN_UNDEF = 0
SHN_ABS = 0xFFF1
SHN_COMMON = 0xFFF2


@dataclass
class RawSection:
    """One section header and its contents (``data`` is zeros for SHT_NOBITS)."""

    index: int
    name: str
    type: int
    flags: int
    size: int
    link: int
    info: int
    offset: int
    data: bytes = b""

    @property
    def executable(self) -> bool:
        """True for code sections (SHF_EXECINSTR)."""
        return bool(self.flags & SHF_EXECINSTR)


@dataclass
class RawSymbol:
    """One symbol table entry."""

    index: int
    name: str
    value: int
    size: int
    bind: str  # "STB_GLOBAL", "STB_LOCAL", "STB_WEAK"
    type: str  # "STT_FUNC", "STT_OBJECT", "STT_SECTION", "STT_NOTYPE", ...
    shndx: int  # SHN_UNDEF (0) for externs; SHN_ABS/SHN_COMMON as numbers
    visibility: str = "STV_DEFAULT"


@dataclass
class RawRelocation:
    """One REL entry: patch ``offset`` in the target section with ``symbol`` (relocation ``type``)."""

    offset: int
    symbol: int
    type: int


@dataclass
class RawObject:
    """A parsed relocatable ELF object: sections by index, symbols, relocations by target section.

    ``relocations`` leaves out those of the DWARF sections (``.rel.debug_*``): no loader reads them.
    """

    path: str
    sections: list[RawSection]
    symbols: list[RawSymbol]
    relocations: dict[int, list[RawRelocation]] = field(default_factory=dict)

    def section(self, name: str) -> RawSection | None:
        """The first section called ``name``, or None."""
        for sec in self.sections:
            if sec.name == name:
                return sec
        return None


_SHN_SPECIAL = {"SHN_UNDEF": SHN_UNDEF, "SHN_ABS": SHN_ABS, "SHN_COMMON": SHN_COMMON}


def _check_header(path: str, head: bytes) -> None:
    if len(head) < 64:
        raise ELFError(f"{path}: truncated ELF header ({len(head)} bytes, need 64)")
    if head[:4] != b"\x7fELF":
        raise ELFError(f"{path}: not an ELF file (magic {head[:4]!r} at offset 0)")
    if head[4] != 2:
        raise ELFError(f"{path}: 32-bit ELF (EI_CLASS={head[4]} at offset 4); BPF objects are ELF64")
    if head[5] != 1:
        raise ELFError(
            f"{path}: big-endian ELF (EI_DATA={head[5]} at offset 5); only little-endian BPF objects load on this machine"
        )
    e_type, e_machine = struct.unpack_from("<HH", head, 16)
    if e_machine != EM_BPF:
        raise ELFError(f"{path}: wrong machine e_machine={e_machine} at offset 18 (expected EM_BPF={EM_BPF})")
    if e_type != 1:
        raise ELFError(f"{path}: ELF type {e_type} at offset 16 is not a relocatable object (ET_REL)")


def read_object(path: str, data: bytes | None = None) -> RawObject:
    """Read the BPF object at ``path`` (or the bytes ``data``).

    :param path: the file (used in messages even when ``data`` is given).
    :param data: the file's bytes, when already in memory.
    :returns: the object's sections, symbols and relocations.
    :raises ELFError: the file is missing, not ELF64 little-endian EM_BPF ET_REL, or malformed.
    """
    if data is None:
        try:
            with open(path, "rb") as fh:
                data = fh.read()
        except OSError as exc:
            raise ELFError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    _check_header(path, data)
    # Section headers, symbols and relocations are read with struct (pyelftools' import alone
    # cost more than the rest of a load); struct.error, IndexError, UnicodeError ... on bad
    # input become ELFError naming what was being read.
    where = "ELF header"
    try:
        sections = _sections(path, data)
        symbols: list[RawSymbol] = []
        symtabs = [sec for sec in sections if sec.type == SHT_SYMTAB]
        if symtabs:
            symtab = symtabs[-1]
            where = f"symbol table {symtab.name!r} (offset {symtab.offset:#x})"
            symbols = _symbols(symtab, sections, path)
        relocations: dict[int, list[RawRelocation]] = {}
        for sec_raw in sections:
            if sec_raw.type != SHT_REL:
                continue
            if sec_raw.info < len(sections) and sections[sec_raw.info].name.startswith(".debug_"):
                continue  # DWARF's relocations (thousands of them): nothing a loader reads
            where = f"relocation section {sec_raw.name!r} (offset {sec_raw.offset:#x})"
            if sec_raw.size % 16:
                raise ELFError(f"{path}: {where}: size {sec_raw.size} is not a multiple of 16")
            entries = relocations.setdefault(sec_raw.info, [])
            for r_offset, r_info in _REL.iter_unpack(sec_raw.data):
                entries.append(RawRelocation(r_offset, r_info >> 32, r_info & 0xFFFFFFFF))
    except ELFError:
        raise
    except Exception as exc:  # struct.error, IndexError, UnicodeError ...
        raise ELFError(f"{path}: malformed ELF in {where}: {type(exc).__name__}: {exc}") from exc
    return RawObject(path, sections, symbols, relocations)


_BINDS = {0: "STB_LOCAL", 1: "STB_GLOBAL", 2: "STB_WEAK"}
_TYPES = {0: "STT_NOTYPE", 1: "STT_OBJECT", 2: "STT_FUNC", 3: "STT_SECTION", 4: "STT_FILE", 5: "STT_COMMON",
          6: "STT_TLS"}
_VISIBILITY = {0: "STV_DEFAULT", 1: "STV_INTERNAL", 2: "STV_HIDDEN", 3: "STV_PROTECTED"}
_SYM = struct.Struct("<IBBHQQ")


def _symbols(symtab: RawSection, sections: list[RawSection], path: str) -> list[RawSymbol]:
    """Elf64_Sym entries."""
    if symtab.size % _SYM.size:
        raise ELFError(f"{path}: symbol table at offset {symtab.offset:#x}: size {symtab.size} is not a multiple "
                       f"of {_SYM.size}")
    if not 0 < symtab.link < len(sections):
        raise ELFError(f"{path}: symbol table at offset {symtab.offset:#x}: bad string table index {symtab.link}")
    strtab = sections[symtab.link].data
    out = []
    for i, (name_off, info, other, shndx, value, size) in enumerate(_SYM.iter_unpack(symtab.data)):
        if name_off >= len(strtab) and name_off:
            raise ELFError(f"{path}: symbol #{i} (offset {symtab.offset + i * _SYM.size:#x}): name offset "
                           f"{name_off} outside the string table")
        end = strtab.find(b"\0", name_off)
        name = strtab[name_off : end if end >= 0 else len(strtab)].decode("utf-8", "replace") if name_off else ""
        out.append(RawSymbol(i, name, value, size, _BINDS.get(info >> 4, f"STB_{info >> 4}"),
                             _TYPES.get(info & 0xF, f"STT_{info & 0xF}"), shndx,
                             _VISIBILITY.get(other & 3, "STV_DEFAULT")))
    return out


_SHDR = struct.Struct("<IIQQQQIIQQ")  # Elf64_Shdr
_REL = struct.Struct("<QQ")  # Elf64_Rel
SHN_XINDEX = 0xFFFF


def _sections(path: str, data: bytes) -> list[RawSection]:
    """Every section header with its name and contents (``data`` holds a checked ELF64 LE header)."""
    e_shoff, = struct.unpack_from("<Q", data, 0x28)
    e_shentsize, e_shnum, e_shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    if not e_shoff:
        return []
    if e_shentsize != _SHDR.size:
        raise ELFError(f"{path}: section header size {e_shentsize} at offset 0x3a (expected {_SHDR.size})")
    if e_shoff + _SHDR.size > len(data):
        raise ELFError(f"{path}: section headers at {e_shoff:#x} (e_shoff, offset 0x28) lie past the end of the "
                       f"file ({len(data):#x} bytes)")
    first = _SHDR.unpack_from(data, e_shoff)
    count = e_shnum or first[5]  # more than 0xff00 sections: the count is section 0's sh_size
    if e_shstrndx == SHN_XINDEX:
        e_shstrndx = first[6]
    if e_shoff + count * _SHDR.size > len(data):
        raise ELFError(f"{path}: {count} section headers at {e_shoff:#x} run past the end of the file "
                       f"({len(data):#x} bytes)")
    headers = [_SHDR.unpack_from(data, e_shoff + i * _SHDR.size) for i in range(count)]
    names = b""
    if 0 < e_shstrndx < count:
        _, _, _, _, off, size, *_ = headers[e_shstrndx]
        if off + size > len(data):
            raise ELFError(f"{path}: section name table (index {e_shstrndx}, offset {off:#x}) extends to "
                           f"{off + size:#x}, past the end of the file ({len(data):#x} bytes)")
        names = data[off : off + size]
    elif count:
        raise ELFError(f"{path}: section name table index {e_shstrndx} (e_shstrndx, offset 0x3e) is not one of "
                       f"the {count} sections")
    sections = []
    for index, (sh_name, sh_type, flags, _addr, off, size, link, info, _align, _entsize) in enumerate(headers):
        if sh_name >= len(names) and (sh_name or index):
            raise ELFError(f"{path}: section header {index}: name offset {sh_name} outside the section name table")
        end = names.find(b"\0", sh_name)
        name = names[sh_name : end if end >= 0 else len(names)].decode("utf-8", "replace") if names else ""
        if sh_type == SHT_NOBITS:
            body = bytes(size) if size < (1 << 30) else b""
        elif sh_type == 0:
            body = b""
        else:
            if off + size > len(data):
                raise ELFError(f"{path}: section {name!r} (index {index}, offset {off:#x}): extends to "
                               f"{off + size:#x}, past the end of the file ({len(data):#x} bytes)")
            body = data[off : off + size]
        sections.append(RawSection(index, name, sh_type, flags, size, link, info, off, body))
    return sections
