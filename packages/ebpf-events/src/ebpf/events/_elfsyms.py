"""Function symbol tables of ELF files for symbolization, read with ``struct`` from bytes or an mmap.

What a symbolizer needs and nothing more: PT_LOAD segments (file offset -> virtual address),
the GNU build id, ``.gnu_debuglink``, ``.gnu_debugdata`` (MiniDebugInfo: an xz-compressed ELF
holding a ``.symtab``) and the STT_FUNC/STT_GNU_IFUNC symbols of ``.symtab`` and ``.dynsym``,
as sorted parallel lists ready for ``bisect``.  Malformed input raises :class:`ELFError`, never
``struct.error``/``IndexError``.  (``ebpf.events.tracing._elf`` reads whole files into symbol
records for attaching; this one keeps only what lookups need, which is several times faster
on large tables.)
"""

from __future__ import annotations

import bisect
import lzma
import mmap
import os
import struct
import threading
import zlib
from collections.abc import Sequence
from typing import NamedTuple

from ebpf.core.errors import ELFError
from ebpf.core.records import dataclass

__all__ = ["ElfImage", "SymbolTable", "Symbol", "FileSymbols", "file_symbols", "by_build_id", "drop_file_cache", "DEBUG_DIRS",
           "PT_LOAD"]

#: Where separate debug files are looked for (``.build-id/xx/rest.debug`` and debuglink paths);
#: change it in place (``DEBUG_DIRS.append(...)``): every module shares this one list.
DEBUG_DIRS: list[str] = ["/usr/lib/debug"]

PT_LOAD = 1
SHT_SYMTAB = 2
SHT_NOTE = 7
SHT_NOBITS = 8
SHT_DYNSYM = 11
_FUNC_TYPES = (2, 10)  # STT_FUNC, STT_GNU_IFUNC
_NT_GNU_BUILD_ID = 3
_BIND_RANK = {1: 0, 2: 1, 0: 2}  # prefer GLOBAL, then WEAK, then LOCAL names for aliases
_BAD = (struct.error, IndexError, ValueError, OverflowError, UnicodeDecodeError)


class _Section(NamedTuple):
    name: str
    type: int
    offset: int
    size: int
    link: int


class _Load(NamedTuple):
    offset: int
    vaddr: int
    filesz: int
    memsz: int = 0


def offset_to_vaddr(loads: Sequence[_Load], offset: int) -> int | None:
    """The virtual address of file ``offset`` through the PT_LOAD segment holding it, or None."""
    for seg in loads:
        if seg.offset <= offset < seg.offset + max(seg.filesz, 1):
            return offset - seg.offset + seg.vaddr
    return None


class SymbolTable:
    """Function symbols sorted by address: ``addrs``, ``sizes`` and ``names`` are parallel lists."""

    __slots__ = ("addrs", "names", "sizes")

    def __init__(self, entries: Sequence[tuple[int, int, int, str]] = ()) -> None:
        """Build from ``(address, rank, size, name)`` entries (the lowest rank wins among aliases)."""
        addrs: list[int] = []
        sizes: list[int] = []
        names: list[str] = []
        last = -1
        for addr, _rank, size, name in sorted(entries):
            if addr == last:
                if size > sizes[-1]:  # an alias with a size beats one without
                    sizes[-1] = size
                continue
            addrs.append(addr)
            sizes.append(size)
            names.append(name)
            last = addr
        self.addrs, self.sizes, self.names = addrs, sizes, names

    def __len__(self) -> int:
        return len(self.addrs)

    def lookup(self, vaddr: int) -> tuple[str, int] | None:
        """``(name, offset)`` of the function holding ``vaddr``, or None."""
        i = bisect.bisect_right(self.addrs, vaddr) - 1
        if i < 0:
            return None
        start, size = self.addrs[i], self.sizes[i]
        if size and vaddr >= start + size:
            return None
        return self.names[i], vaddr - start


class ElfImage:
    """The headers of one ELF image held in ``data`` (bytes or an mmap).

    :param data: the whole file.
    :param where: a name for error messages (the path).
    :raises ELFError: when ``data`` is not a well-formed ELF image.
    """

    def __init__(self, data: bytes | mmap.mmap, where: str) -> None:
        """Parse the ELF, program and section headers."""
        self.data = data
        self.where = where
        try:
            self._parse()
        except ELFError:
            raise
        except _BAD as exc:
            raise ELFError(f"{where}: malformed ELF file ({exc})") from None

    @classmethod
    def from_path(cls, path: str) -> ElfImage:
        """Map the file at ``path`` read-only (only the sections used are ever copied).

        :raises ELFError: when it cannot be read or is not ELF.
        """
        try:
            with open(path, "rb") as fh:
                size = os.fstat(fh.fileno()).st_size
                if size < 64:
                    raise ELFError(f"{path} is not an ELF file (only {size} bytes)")
                data = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        except OSError as exc:
            raise ELFError(f"cannot read {path}: {exc.strerror or exc}") from None
        return cls(data, path)

    def _parse(self) -> None:
        d = self.data
        if len(d) < 52 or d[:4] != b"\x7fELF" or d[4] not in (1, 2) or d[5] not in (1, 2):
            raise ELFError(f"{self.where} is not an ELF file")
        self.is64 = d[4] == 2
        e = self.endian = "<" if d[5] == 1 else ">"
        hdr = struct.unpack_from(e + ("HHIQQQIHHHHHH" if self.is64 else "HHIIIIIHHHHHH"), d, 16)
        _t, _m, _v, _entry, phoff, shoff, _f, _eh, phentsize, phnum, shentsize, shnum, shstrndx = hdr
        self.loads: list[_Load] = []
        for i in range(phnum if phoff else 0):
            off = phoff + i * phentsize
            if self.is64:
                typ, _fl, p_off, vaddr, _p, filesz, memsz, _a = struct.unpack_from(e + "IIQQQQQQ", d, off)
            else:
                typ, p_off, vaddr, _p, filesz, memsz, _fl, _a = struct.unpack_from(e + "IIIIIIII", d, off)
            if typ == PT_LOAD:
                self.loads.append(_Load(p_off, vaddr, filesz, memsz))
        raw = []
        fmt = e + ("IIQQQQIIQQ" if self.is64 else "IIIIIIIIII")
        for i in range(shnum if shoff else 0):
            name, typ, _fl, _addr, offset, size, link, _info, _al, _ent = struct.unpack_from(fmt, d, shoff + i * shentsize)
            raw.append((name, typ, offset, size, link))
        names = raw[shstrndx] if 0 < shstrndx < len(raw) else None
        self.sections = [_Section(self._cstr(names[2], names[3], s[0]) if names else "", *s[1:]) for s in raw]

    def _cstr(self, table_off: int, table_size: int, index: int) -> str:
        start = table_off + index
        end = self.data.find(b"\0", start, table_off + table_size)
        if end < 0:
            raise ELFError(f"{self.where}: unterminated string in a string table")
        return bytes(self.data[start:end]).decode("utf-8", errors="replace")

    def section(self, name: str) -> _Section | None:
        """The first section called ``name``, or None."""
        return next((s for s in self.sections if s.name == name), None)

    def section_bytes(self, sec: _Section) -> bytes:
        """The contents of ``sec`` (empty for SHT_NOBITS).

        :raises ELFError: when it runs past the end of the file.
        """
        if sec.type == SHT_NOBITS:
            return b""
        if sec.offset + sec.size > len(self.data):
            raise ELFError(f"{self.where}: section {sec.name} runs past the end of the file")
        return bytes(self.data[sec.offset:sec.offset + sec.size])

    def file_offset_to_vaddr(self, offset: int) -> int | None:
        """The virtual address of file ``offset`` (through its PT_LOAD segment), or None."""
        return offset_to_vaddr(self.loads, offset)

    def close(self) -> None:
        """Unmap the file (an mmap holds a duplicate of its descriptor)."""
        if isinstance(self.data, mmap.mmap):
            self.data.close()

    def __enter__(self) -> ElfImage:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def build_id(self) -> bytes | None:
        """The GNU build id (from the SHT_NOTE sections), or None."""
        for sec in self.sections:
            if sec.type != SHT_NOTE:
                continue
            try:
                note = self.section_bytes(sec)
                off = 0
                while off + 12 <= len(note):
                    namesz, descsz, typ = struct.unpack_from(self.endian + "III", note, off)
                    off += 12
                    name = note[off:off + namesz]
                    off += (namesz + 3) & ~3
                    desc = note[off:off + descsz]
                    off += (descsz + 3) & ~3
                    if typ == _NT_GNU_BUILD_ID and name.rstrip(b"\0") == b"GNU" and desc:
                        return desc
            except (*_BAD, ELFError):
                continue  # a broken note is no build id
        return None

    def debuglink(self) -> tuple[str, int] | None:
        """``(file name, crc32)`` of ``.gnu_debuglink``, or None."""
        sec = self.section(".gnu_debuglink")
        if sec is None:
            return None
        try:
            raw = self.section_bytes(sec)
            end = raw.index(b"\0")
            crc_off = (end + 4) & ~3
            (crc,) = struct.unpack_from(self.endian + "I", raw, crc_off)
            return raw[:end].decode("utf-8", errors="replace"), crc
        except (*_BAD, ELFError):
            return None

    def minidebuginfo(self) -> ElfImage | None:
        """The ELF image inside ``.gnu_debugdata`` (MiniDebugInfo, xz-compressed), or None.

        :raises ELFError: when the section is there but does not decompress into ELF.
        """
        sec = self.section(".gnu_debugdata")
        if sec is None:
            return None
        try:
            inner = lzma.decompress(self.section_bytes(sec))
        except lzma.LZMAError as exc:
            raise ELFError(f"{self.where}: .gnu_debugdata does not decompress ({exc})") from None
        return ElfImage(inner, f"{self.where} (.gnu_debugdata)")

    def has_symtab(self) -> bool:
        """True when the image has a ``.symtab`` with entries (not stripped)."""
        return any(s.type == SHT_SYMTAB and s.size > 0 and s.type != SHT_NOBITS for s in self.sections)

    def function_symbols(self, tables: tuple[int, ...] = (SHT_SYMTAB, SHT_DYNSYM)) -> list[tuple[int, int, int, str]]:
        """Defined function symbols as ``(address, rank, size, name)`` (for :class:`SymbolTable`).

        :raises ELFError: on a malformed symbol table.
        """
        out: list[tuple[int, int, int, str]] = []
        for sec in self.sections:
            if sec.type not in tables:
                continue
            try:
                out.extend(self._functions(sec))
            except _BAD as exc:
                raise ELFError(f"{self.where}: malformed symbol table {sec.name} ({exc})") from None
        return out

    def _functions(self, sec: _Section) -> list[tuple[int, int, int, str]]:
        if not 0 <= sec.link < len(self.sections):
            raise ELFError(f"{self.where}: symbol table {sec.name} links to no string table")
        strtab = self.section_bytes(self.sections[sec.link])
        raw = self.section_bytes(sec)
        if self.is64:
            ent, fmt = 24, self.endian + "IBBHQQ"
        else:
            ent, fmt = 16, self.endian + "IIIBBH"
        raw = raw[: len(raw) - len(raw) % ent]
        out = []
        find = strtab.find
        for rec in struct.iter_unpack(fmt, raw):
            if self.is64:
                name, info, _other, shndx, value, size = rec
            else:
                name, value, size, info, _other, shndx = rec
            if (info & 0xF) not in _FUNC_TYPES or not shndx or not value or not name:
                continue
            end = find(b"\0", name)
            if end < 0:
                raise ELFError(f"{self.where}: symbol name runs past its string table")
            out.append((value, _BIND_RANK.get(info >> 4, 3), size,
                        strtab[name:end].decode("utf-8", errors="replace")))
        return out


class Symbol(NamedTuple):
    """A resolved address: function ``name``, ``offset`` into it, ``module`` (``"kernel"``, a kernel
    module, a file's base name, ``"[vdso]"``, ``"[perf-map]"``), and ``kind``: "kernel", "user" or "jit"."""

    name: str
    offset: int
    module: str
    kind: str = "user"

    def __str__(self) -> str:
        return f"{self.name}+{self.offset:#x} [{self.module}]"


# -- ELF files, cached process-wide ------------------------------------------------------------
@dataclass
class FileSymbols:
    """One ELF file's function table, where it came from, and its PT_LOAD segments."""

    table: SymbolTable
    loads: list[_Load]
    source: str
    reason: str | None
    name: str = ""

    def file_offset_to_vaddr(self, offset: int) -> int | None:
        """The virtual address of file ``offset``, or None."""
        return offset_to_vaddr(self.loads, offset)


_files: dict[object, FileSymbols] = {}
_files_lock = threading.Lock()


def _debug_candidates(image: ElfImage, path: str, debug_dirs: Sequence[str]) -> list[tuple[str, str]]:
    out = []
    bid = image.build_id()
    if bid and len(bid) > 1:
        hexid = bid.hex()
        out += [(os.path.join(d, ".build-id", hexid[:2], hexid[2:] + ".debug"), "build-id debug file")
                for d in debug_dirs]
    link = image.debuglink()
    if link:
        here = os.path.dirname(path)
        names = [os.path.join(here, link[0]), os.path.join(here, ".debug", link[0])]
        names += [os.path.join(d, here.lstrip("/"), link[0]) for d in debug_dirs]
        out += [(n, "debuglink") for n in names if not _same_file(n, path)]
    return out


def _same_file(a: str, b: str) -> bool:
    """Whether two paths name one file; False when either cannot be resolved (a ``/proc/PID/root``
    path of a process that exited meanwhile: then there is nothing to read through it anyway)."""
    try:
        return os.path.realpath(a) == os.path.realpath(b)
    except OSError:
        return False


def _crc_matches(path: str, want: int) -> bool:
    crc = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            crc = zlib.crc32(chunk, crc)
    return crc == want


def _load_file(image: ElfImage, path: str, debug_dirs: Sequence[str]) -> FileSymbols:
    """Build the function table of ``image``: its own .symtab, else a debug file, else MiniDebugInfo."""
    dyn = image.function_symbols((11,))  # .dynsym is always kept: debug files may lack exported aliases
    if image.has_symtab():
        return FileSymbols(SymbolTable(image.function_symbols()), image.loads, "symtab", None)
    link = image.debuglink()
    for candidate, how in _debug_candidates(image, path, debug_dirs):
        if not os.path.isfile(candidate):
            continue
        try:
            if how == "debuglink" and link and not _crc_matches(candidate, link[1]):
                continue
            with ElfImage.from_path(candidate) as debug:
                if debug.has_symtab():
                    table = SymbolTable(debug.function_symbols() + dyn)
                    return FileSymbols(table, image.loads, f"{how} {candidate}", None)
        except (OSError, ELFError):
            continue
    try:
        mini = image.minidebuginfo()
    except ELFError as exc:
        mini, why = None, str(exc)
    else:
        why = "stripped: no .symtab, no debug file, no .gnu_debugdata"
    if mini is not None:
        return FileSymbols(SymbolTable(mini.function_symbols() + dyn), image.loads, "minidebuginfo", None)
    reason = None if dyn else f"{path}: no symbols ({why})"
    return FileSymbols(SymbolTable(dyn), image.loads, "dynsym", reason)


def file_symbols(path: str, debug_dirs: Sequence[str] | None = None, stat_path: str | None = None) -> FileSymbols:
    """The cached function table of the ELF file at ``path``.

    :param stat_path: the path whose identity keys the cache (defaults to ``path``).
    :raises ELFError: when the file cannot be read or is not ELF.
    """
    try:
        st = os.stat(stat_path or path)
    except OSError as exc:
        raise ELFError(f"cannot read {path}: {exc.strerror or exc}") from None
    key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    with _files_lock:
        found = _files.get(key)
    if found is not None:
        return found
    with ElfImage.from_path(path) as image:
        bid = image.build_id()
        if bid:
            with _files_lock:
                found = _files.get(bid)
            if found is not None:
                _files[key] = found
                return found
        loaded = _load_file(image, path, DEBUG_DIRS if debug_dirs is None else debug_dirs)
    loaded.name = os.path.basename(path)
    with _files_lock:
        _files[key] = loaded
        if bid:
            _files["any", bid] = loaded  # for build-id stacks: whatever we have
            if loaded.source != "dynsym":  # a copy with symbols may turn up later: do not pin the poorer one
                _files[bid] = loaded
    return loaded


def by_build_id(build_id: bytes, debug_dirs: Sequence[str] | None = None) -> FileSymbols | None:
    """The function table of the file with ``build_id``: one parsed before (by any process's
    symbols), else ``<debug dir>/.build-id/xx/rest.debug``; None when neither is there."""
    with _files_lock:
        found = _files.get(build_id) or _files.get(("any", build_id))
    if found is not None or len(build_id) < 2:
        return found
    hexid = build_id.hex()
    for d in DEBUG_DIRS if debug_dirs is None else debug_dirs:
        path = os.path.join(d, ".build-id", hexid[:2], hexid[2:] + ".debug")
        if not os.path.isfile(path):
            continue
        try:
            with ElfImage.from_path(path) as image:
                if image.build_id() != build_id:
                    continue
                # A debug file's program headers keep addresses but not file offsets (its code is
                # gone): take offsets as addresses, as ld and lld lay out PIE executables and libraries.
                loads = [_Load(seg.vaddr, seg.vaddr, seg.memsz, seg.memsz) for seg in image.loads]
                fs = FileSymbols(SymbolTable(image.function_symbols()), loads, f"build-id debug file {path}", None)
        except ELFError:
            continue
        fs.name = os.path.basename(path)
        with _files_lock:
            _files["any", build_id] = fs
        return fs
    return None


def drop_file_cache() -> None:
    """Forget every parsed file (tests and benchmarks measure first resolutions with it)."""
    with _files_lock:
        _files.clear()
