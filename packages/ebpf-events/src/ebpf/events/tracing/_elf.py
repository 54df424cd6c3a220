"""A small struct-based ELF reader for uprobes and USDT: symbols, program headers, notes.

Only what attaching needs: ``.symtab``/``.dynsym`` symbols, PT_LOAD segments (to turn a
symbol's virtual address into the file offset the uprobe PMU wants) and the
``.note.stapsdt`` notes of USDT probes.  Malformed files raise :class:`ELFError`, never
``struct.error``/``IndexError``.
"""

from __future__ import annotations

import os
import struct
from typing import NamedTuple

from ebpf.core.errors import ELFError
from ebpf.core.records import dataclass

__all__ = ["ElfFile", "Symbol", "Segment", "Section", "UsdtNote", "STT_FUNC", "STT_GNU_IFUNC"]

SHT_SYMTAB = 2
SHT_NOTE = 7
SHT_DYNSYM = 11
PT_LOAD = 1
PF_X = 1
STT_OBJECT = 1
STT_FUNC = 2
STT_GNU_IFUNC = 10
_NT_STAPSDT = 3


class Section(NamedTuple):
    """An ELF section header."""

    name: str
    type: int
    flags: int
    addr: int
    offset: int
    size: int
    link: int
    entsize: int


class Segment(NamedTuple):
    """An ELF program header."""

    type: int
    flags: int
    offset: int
    vaddr: int
    filesz: int
    memsz: int


class Symbol(NamedTuple):
    """A symbol: ``value`` is its virtual address, ``type`` STT_*, ``table`` ``.symtab``/``.dynsym``."""

    name: str
    value: int
    size: int
    type: int
    bind: int
    shndx: int
    table: str


@dataclass(frozen=True)
class UsdtNote:
    """One ``.note.stapsdt`` entry as stored (addresses not yet adjusted)."""

    provider: str
    name: str
    pc: int
    base: int
    semaphore: int
    args: str


class ElfFile:
    """Parse the headers of the ELF file at ``path`` (32/64-bit, either byte order).

    :raises ELFError: when the file cannot be read or is not a well-formed ELF file.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        """Read and parse ``path``."""
        self.path = os.fspath(path)
        try:
            with open(self.path, "rb") as f:
                self.data = f.read()
        except OSError as exc:
            raise ELFError(f"cannot read {self.path!r}: {exc.strerror or exc}") from None
        try:
            self._parse()
        except (struct.error, IndexError, ValueError, OverflowError, UnicodeDecodeError) as exc:
            raise ELFError(f"{self.path}: malformed ELF file ({exc})") from None

    def _parse(self) -> None:
        d = self.data
        if len(d) < 16 or d[:4] != b"\x7fELF":
            raise ELFError(f"{self.path} is not an ELF file")
        if d[4] not in (1, 2) or d[5] not in (1, 2):
            raise ELFError(f"{self.path}: unknown ELF class/data encoding")
        self.is64 = d[4] == 2
        self.endian = "<" if d[5] == 1 else ">"
        e = self.endian
        if self.is64:
            hdr = struct.unpack_from(e + "HHIQQQIHHHHHH", d, 16)
        else:
            hdr = struct.unpack_from(e + "HHIIIIIHHHHHH", d, 16)
        (self.e_type, self.machine, _ver, self.entry, phoff, shoff, _flags, _eh, phentsize, phnum,
         shentsize, shnum, shstrndx) = hdr
        self.segments = [self._phdr(phoff + i * phentsize) for i in range(phnum)] if phoff else []
        raw = [self._shdr(shoff + i * shentsize) for i in range(shnum)] if shoff else []
        names = raw[shstrndx] if 0 < shstrndx < len(raw) else None
        self.sections = [Section(self._str(names, s[0]) if names else "", *s[1:]) for s in raw]

    def _phdr(self, off: int) -> Segment:
        e = self.endian
        if self.is64:
            typ, flags, offset, vaddr, _p, filesz, memsz, _a = struct.unpack_from(e + "IIQQQQQQ", self.data, off)
        else:
            typ, offset, vaddr, _p, filesz, memsz, flags, _a = struct.unpack_from(e + "IIIIIIII", self.data, off)
        return Segment(typ, flags, offset, vaddr, filesz, memsz)

    def _shdr(self, off: int) -> tuple[int, int, int, int, int, int, int, int]:
        e = self.endian
        if self.is64:
            name, typ, flags, addr, offset, size, link, _info, _al, entsize = struct.unpack_from(
                e + "IIQQQQIIQQ", self.data, off)
        else:
            name, typ, flags, addr, offset, size, link, _info, _al, entsize = struct.unpack_from(
                e + "IIIIIIIIII", self.data, off)
        return name, typ, flags, addr, offset, size, link, entsize

    def _str(self, table: tuple[int, ...] | Section, index: int) -> str:
        start = table[4] + index
        end = self.data.index(b"\0", start, table[4] + table[5])
        return self.data[start:end].decode("utf-8", errors="replace")

    def section(self, name: str) -> Section | None:
        """The first section called ``name``, or None."""
        return next((s for s in self.sections if s.name == name), None)

    def _symbols(self, sec: Section) -> list[Symbol]:
        if not 0 <= sec.link < len(self.sections):
            raise ELFError(f"{self.path}: symbol table {sec.name} links to no string table")
        strtab = self.sections[sec.link]
        e, d = self.endian, self.data
        fmt, ent = (e + "IBBHQQ", 24) if self.is64 else (e + "IIIBBH", 16)
        if sec.offset + sec.size > len(d):
            raise ELFError(f"{self.path}: section {sec.name} runs past the end of the file")
        out = []
        for off in range(sec.offset + ent, sec.offset + sec.size - ent + 1, ent):  # entry 0 is the null symbol
            if self.is64:
                name, info, _other, shndx, value, size = struct.unpack_from(fmt, d, off)
            else:
                name, value, size, info, _other, shndx = struct.unpack_from(fmt, d, off)
            if name == 0:
                continue
            out.append(Symbol(self._str(strtab, name), value, size, info & 0xF, info >> 4, shndx, sec.name))
        return out

    def symbols(self) -> list[Symbol]:
        """Every named symbol of ``.symtab`` then ``.dynsym``."""
        try:
            return [sym for sec in self.sections if sec.type in (SHT_SYMTAB, SHT_DYNSYM)
                    for sym in self._symbols(sec)]
        except (struct.error, IndexError, ValueError, OverflowError) as exc:
            raise ELFError(f"{self.path}: malformed symbol table ({exc})") from None

    def find_symbol(self, name: str) -> Symbol:
        """The defined function (or object) symbol ``name`` (a ``@VERSION`` suffix is ignored).

        :raises ELFError: when there is no such defined symbol.
        """
        want = name.split("@", 1)[0]
        fallback: Symbol | None = None
        for sym in self.symbols():
            if sym.name.split("@", 1)[0] != want or sym.shndx == 0 or sym.value == 0:
                continue
            if sym.type in (STT_FUNC, STT_GNU_IFUNC):
                return sym
            fallback = fallback or sym
        if fallback is not None:
            return fallback
        raise ELFError(f"no symbol {name!r} in {self.path}")

    def vaddr_to_offset(self, vaddr: int) -> int:
        """The file offset of virtual address ``vaddr`` (through the PT_LOAD segment holding it).

        For an executable or a shared library alike this is what the uprobe PMU needs.

        :raises ELFError: when no loadable segment contains ``vaddr``.
        """
        for seg in self.segments:
            if seg.type == PT_LOAD and seg.vaddr <= vaddr < seg.vaddr + max(seg.memsz, seg.filesz):
                return vaddr - seg.vaddr + seg.offset
        if not any(s.type == PT_LOAD for s in self.segments):  # a relocatable object: offsets are addresses
            return vaddr
        raise ELFError(f"{self.path}: address {vaddr:#x} is in no loadable segment")

    def notes(self, section_name: str) -> list[tuple[str, int, bytes]]:
        """``(owner, type, desc)`` of every note in section ``section_name``."""
        sec = self.section(section_name)
        if sec is None:
            return []
        d, e, out = self.data, self.endian, []
        off, end = sec.offset, min(sec.offset + sec.size, len(self.data))
        try:
            while off + 12 <= end:
                namesz, descsz, typ = struct.unpack_from(e + "III", d, off)
                off += 12
                name = d[off:off + namesz].rstrip(b"\0").decode("utf-8", errors="replace")
                off += (namesz + 3) & ~3
                desc = d[off:off + descsz]
                if len(desc) != descsz:
                    raise ELFError(f"{self.path}: truncated note in {section_name}")
                off += (descsz + 3) & ~3
                out.append((name, typ, desc))
        except (struct.error, OverflowError) as exc:
            raise ELFError(f"{self.path}: malformed note section {section_name} ({exc})") from None
        return out

    def usdt_notes(self) -> list[UsdtNote]:
        """The USDT probes of ``.note.stapsdt``, as stored.

        :raises ELFError: on a malformed note.
        """
        word = 8 if self.is64 else 4
        fmt = self.endian + ("QQQ" if self.is64 else "III")
        out = []
        for owner, typ, desc in self.notes(".note.stapsdt"):
            if owner != "stapsdt" or typ != _NT_STAPSDT:
                continue
            if len(desc) < 3 * word:
                raise ELFError(f"{self.path}: truncated stapsdt note")
            pc, base, sema = struct.unpack_from(fmt, desc, 0)  # len(desc) checked above
            parts = desc[3 * word:].split(b"\0")
            if len(parts) < 3:
                raise ELFError(f"{self.path}: stapsdt note without provider/name/args")
            provider, name, args = (p.decode("utf-8", errors="replace") for p in parts[:3])
            out.append(UsdtNote(provider, name, pc, base, sema, args))
        return out
