"""The one module that touches pyelftools: reads an ELF relocatable object into plain data.

Nothing of pyelftools leaks out: callers get :class:`RawObject` (sections, symbols and
relocations as dataclasses), and every parsing failure is an :class:`ELFError` naming the
file, the section and the offset where it could be told.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass, field
from typing import Any

from ebpf.core.errors import ELFError

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
    """A parsed relocatable ELF object: sections by index, symbols, relocations by target section."""

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
    # pyelftools raises ELFParseError, struct.error, ValueError, IndexError, KeyError ... on bad
    # input; every one becomes ELFError naming the section being read.
    where = "ELF header"
    try:
        from elftools.elf.elffile import ELFFile

        elf = ELFFile(io.BytesIO(data))
        shnum = elf.num_sections()
        sections: list[RawSection] = []
        symtab: Any = None
        symtab_index = 0
        for index in range(shnum):
            where = f"section header {index}"
            sec = elf.get_section(index)
            where = f"section {sec.name!r} (index {index}, offset {sec['sh_offset']:#x})"
            sh_type = sec["sh_type"]
            type_num = _section_type_number(sh_type)
            size = sec["sh_size"]
            if type_num == SHT_NOBITS:
                body = bytes(size) if size < (1 << 30) else b""
            elif type_num == 0:
                body = b""
            else:
                off = sec["sh_offset"]
                if off + size > len(data):
                    raise ELFError(
                        f"{path}: {where}: extends to {off + size:#x}, past the end of the file ({len(data):#x} bytes)"
                    )
                body = data[off : off + size]
            sections.append(
                RawSection(index, sec.name, type_num, sec["sh_flags"], size, sec["sh_link"], sec["sh_info"],
                           sec["sh_offset"], body)
            )
            if type_num == SHT_SYMTAB:
                symtab, symtab_index = sec, index
        symbols: list[RawSymbol] = []
        if symtab is not None:
            where = f"symbol table {symtab.name!r} (offset {symtab['sh_offset']:#x})"
            symbols = _symbols(sections[symtab_index], sections, path)
        relocations: dict[int, list[RawRelocation]] = {}
        for sec_raw in sections:
            if sec_raw.type != SHT_REL:
                continue
            where = f"relocation section {sec_raw.name!r} (offset {sec_raw.offset:#x})"
            if sec_raw.size % 16:
                raise ELFError(f"{path}: {where}: size {sec_raw.size} is not a multiple of 16")
            entries = relocations.setdefault(sec_raw.info, [])
            for off in range(0, sec_raw.size, 16):
                r_offset, r_info = struct.unpack_from("<QQ", sec_raw.data, off)
                entries.append(RawRelocation(r_offset, r_info >> 32, r_info & 0xFFFFFFFF))
    except ELFError:
        raise
    except Exception as exc:  # pyelftools' own errors, struct.error, IndexError, UnicodeError ...
        raise ELFError(f"{path}: malformed ELF in {where}: {type(exc).__name__}: {exc}") from exc
    return RawObject(path, sections, symbols, relocations)


_BINDS = {0: "STB_LOCAL", 1: "STB_GLOBAL", 2: "STB_WEAK"}
_TYPES = {0: "STT_NOTYPE", 1: "STT_OBJECT", 2: "STT_FUNC", 3: "STT_SECTION", 4: "STT_FILE", 5: "STT_COMMON",
          6: "STT_TLS"}
_VISIBILITY = {0: "STV_DEFAULT", 1: "STV_INTERNAL", 2: "STV_HIDDEN", 3: "STV_PROTECTED"}
_SYM = struct.Struct("<IBBHQQ")


def _symbols(symtab: RawSection, sections: list[RawSection], path: str) -> list[RawSymbol]:
    """Elf64_Sym entries, read directly (pyelftools' per-symbol parsing is the loader's hot spot)."""
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


_TYPE_NAMES = {"SHT_NULL": 0, "SHT_PROGBITS": 1, "SHT_SYMTAB": 2, "SHT_STRTAB": 3, "SHT_RELA": 4,
               "SHT_HASH": 5, "SHT_DYNAMIC": 6, "SHT_NOTE": 7, "SHT_NOBITS": 8, "SHT_REL": 9,
               "SHT_DYNSYM": 11, "SHT_INIT_ARRAY": 14, "SHT_FINI_ARRAY": 15, "SHT_GROUP": 17,
               "SHT_SYMTAB_SHNDX": 18}


def _section_type_number(sh_type: object) -> int:
    if isinstance(sh_type, int):
        return sh_type
    return _TYPE_NAMES.get(str(sh_type), 0x6FFF0000)
