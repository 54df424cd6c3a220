"""``ProcessSymbols``: a process's executable mappings and the symbol table behind each (see ``symbols``)."""

from __future__ import annotations

import bisect
import os
import time
from collections.abc import Iterable, Sequence

from ebpf.core.errors import EBPFError, ELFError
from ebpf.core.records import dataclass
from ebpf.events._elfsyms import DEBUG_DIRS, ElfImage, FileSymbols, Symbol, SymbolTable, file_symbols

__all__ = ["ProcessSymbols", "Mapping", "PerfMap"]

_bisect_right = bisect.bisect_right
#: seconds between re-reads of a process's maps prompted by addresses outside every mapping
RELOAD_INTERVAL = 0.25
_new_symbol = tuple.__new__  # Symbol(...) without the namedtuple's Python-level __new__: the hot path


class PerfMap:
    """A ``/tmp/perf-PID.map`` (``START SIZE name`` lines, hex), re-read when the file grows.

    :param path: the map file (it may not exist yet).
    """

    def __init__(self, path: str) -> None:
        """Remember ``path``; nothing is read until the first lookup."""
        self.path = path
        self._stamp: tuple[int, int] | None = None
        self._table = SymbolTable()

    def _refresh(self) -> None:
        try:
            st = os.stat(self.path)
        except OSError:
            return
        stamp = (st.st_size, st.st_mtime_ns)
        if stamp == self._stamp:
            return
        entries = []
        try:
            with open(self.path, "rb") as fh:
                for line in fh:
                    parts = line.rstrip(b"\n").split(b" ", 2)
                    if len(parts) != 3:
                        continue
                    try:
                        start, size = int(parts[0], 16), int(parts[1], 16)
                    except ValueError:
                        continue
                    entries.append((start, 0, size, parts[2].decode("utf-8", "replace")))
        except OSError:
            return
        self._table = SymbolTable(entries)
        self._stamp = stamp

    def lookup(self, addr: int) -> tuple[str, int] | None:
        """``(name, offset)`` of the JIT function holding ``addr``, or None."""
        found = self._table.lookup(addr)
        if found is None:
            self._refresh()
            found = self._table.lookup(addr)
        return found


@dataclass
class Mapping:
    """One executable mapping of ``/proc/PID/maps`` and how its addresses turn into symbols.

    ``bias`` is subtracted from an address to get the ELF virtual address; ``table`` is None
    for JIT/anonymous code (looked up in the perf map) and files that could not be read
    (``reason`` says why).
    """

    start: int
    end: int
    offset: int
    path: str
    module: str
    bias: int = 0
    table: SymbolTable | None = None
    kind: str = "user"
    reason: str | None = None
    source: str = ""


class ProcessSymbols:
    """The symbols of process ``pid``: :meth:`resolve` maps a user address to a :class:`Symbol`.

    :param pid: the process.
    :param debug_dirs: where separate debug files are looked for (default :data:`DEBUG_DIRS`).
    :raises EBPFError: when ``pid`` is not a positive int or names no process.
    """

    def __init__(self, pid: int, *, debug_dirs: Sequence[str] | None = None) -> None:
        """Read ``/proc/PID/maps`` and parse (or find cached) every executable file in it."""
        if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0:
            raise EBPFError(f"pid must be a positive int, got {pid!r}")
        self.pid = pid
        self.debug_dirs = list(DEBUG_DIRS if debug_dirs is None else debug_dirs)
        self.perf_map = PerfMap(f"/tmp/perf-{pid}.map")
        self.mappings: list[Mapping] = []
        self._starts: list[int] = []
        self._flat_addrs: list[int] = []
        self._loaded_at = 0.0
        self._flat_rows: list[tuple[int, int, str, str, str]] = []
        self.load()

    # -- maps ------------------------------------------------------------------------------
    def load(self) -> None:
        """(Re-)read the process's mappings.

        :raises EBPFError: when the process does not exist (any more).
        """
        try:
            with open(f"/proc/{self.pid}/maps") as fh:
                lines = fh.read().splitlines()
        except OSError as exc:
            raise EBPFError(f"no process {self.pid} ({exc.strerror or exc})") from None
        maps = []
        for line in lines:
            parts = line.split(None, 5)
            if len(parts) < 5 or "x" not in parts[1]:
                continue
            lo, _, hi = parts[0].partition("-")
            path = parts[5] if len(parts) > 5 else ""
            try:
                start, end, off = int(lo, 16), int(hi, 16), int(parts[2], 16)
            except ValueError:
                continue
            maps.append(self._mapping(start, end, off, path, parts[0]))
        maps.sort(key=lambda m: m.start)
        self._loaded_at = time.monotonic()
        self.mappings = maps
        self._starts = [m.start for m in maps]
        self._flatten()

    def _flatten(self) -> None:
        """One table of run-time addresses over every mapping: a lookup is then one ``bisect``.

        Each function's end is its start + size, or (no size) the next function or the mapping's end.
        """
        rows: list[tuple[int, int, str, str, str]] = []
        for m in self.mappings:
            table = m.table
            if table is None:
                continue
            lo = _bisect_right(table.addrs, m.start - m.bias - 1)
            hi = _bisect_right(table.addrs, m.end - m.bias - 1)
            addrs, sizes, names = table.addrs, table.sizes, table.names
            for j in range(lo, hi):
                start = addrs[j] + m.bias
                following = addrs[j + 1] + m.bias if j + 1 < hi else m.end
                end = min(start + sizes[j], m.end) if sizes[j] else following
                rows.append((start, end, names[j], m.module, m.kind))
        rows.sort()
        self._flat_addrs = [r[0] for r in rows]
        self._flat_rows = rows

    def _mapping(self, start: int, end: int, off: int, path: str, span: str) -> Mapping:
        if not path or path.startswith("[anon") or path.startswith("//anon") or path == "[heap]":
            return Mapping(start, end, off, path, "[perf-map]", kind="jit")
        if path == "[vdso]":
            return self._vdso(start, end)
        if path.startswith("["):  # [vsyscall] and other specials: nothing to read
            return Mapping(start, end, off, path, path, reason=f"{path} has no symbols")
        deleted = path.endswith(" (deleted)")
        name = path[: -len(" (deleted)")] if deleted else path
        module = os.path.basename(name)
        # map_files reaches deleted/replaced binaries; /proc/PID/root reaches other mount namespaces
        opener = f"/proc/{self.pid}/map_files/{span}" if deleted else f"/proc/{self.pid}/root{name}"
        if not deleted and not os.path.exists(opener):
            opener = name
        m = Mapping(start, end, off, path, module)
        try:
            fs = self._file(opener, name)
        except ELFError as exc:
            m.reason = str(exc)
            return m
        vaddr = fs.file_offset_to_vaddr(off)
        if vaddr is None:
            m.reason = f"{name}: file offset {off:#x} is in no loadable segment"
            return m
        m.bias, m.table, m.source, m.reason = start - vaddr, fs.table, fs.source, fs.reason
        return m

    def _file(self, opener: str, name: str) -> FileSymbols:
        return file_symbols(opener, self.debug_dirs)

    def _vdso(self, start: int, end: int) -> Mapping:
        m = Mapping(start, end, 0, "[vdso]", "[vdso]")
        try:
            with open(f"/proc/{self.pid}/mem", "rb") as fh:
                fh.seek(start)
                data = fh.read(end - start)
            image = ElfImage(data, f"[vdso] of {self.pid}")
            vaddr = image.file_offset_to_vaddr(0)
            m.table = SymbolTable(image.function_symbols())
            m.bias = start - (vaddr or 0)
            m.source = "vdso"
        except (OSError, ELFError) as exc:
            m.reason = f"[vdso] unreadable ({exc})"
        return m

    # -- lookups ---------------------------------------------------------------------------
    def _find(self, addr: int) -> Mapping | None:
        i = bisect.bisect_right(self._starts, addr) - 1
        if i >= 0 and addr < self.mappings[i].end:
            return self.mappings[i]
        return None

    def mapping_of(self, addr: int) -> Mapping | None:
        """The executable mapping holding ``addr``, or None.

        When none holds it the maps are re-read (the process may have mapped something new), at
        most every :data:`RELOAD_INTERVAL` seconds: stray addresses of a broken stack walk would
        otherwise re-read them once each.
        """
        m = self._find(addr)
        if m is None and time.monotonic() - self._loaded_at >= RELOAD_INTERVAL:
            try:
                self.load()
            except EBPFError:
                self._loaded_at = time.monotonic()
                return None  # the process exited: keep what we had
            m = self._find(addr)
        return m

    def module_of(self, addr: int) -> str | None:
        """The base name of the file (or ``[vdso]``, ``[perf-map]``) mapped at ``addr``, or None."""
        m = self.mapping_of(addr)
        return m.module if m else None

    def resolve(self, addr: int) -> Symbol | None:
        """The function holding user address ``addr``, or None when it cannot be named."""
        i = _bisect_right(self._flat_addrs, addr) - 1
        if i >= 0:
            start, end, name, module, kind = self._flat_rows[i]
            if addr < end:  # the common case: one bisect over every mapping's functions
                return _new_symbol(Symbol, (name, addr - start, module, kind))
        m2 = self.mapping_of(addr)
        if m2 is not None and m2.table is not None:
            found = m2.table.lookup(addr - m2.bias)
            return Symbol(found[0], found[1], m2.module, m2.kind) if found else None
        found = self.perf_map.lookup(addr)
        if found is not None:
            return Symbol(found[0], found[1], "[perf-map]", "jit")
        return None

    def resolve_many(self, addresses: Iterable[int]) -> list[Symbol | None]:
        """:meth:`resolve` of each address, in one loop (the bulk path: no call per address)."""
        flat_addrs, rows, bisect_right, new = self._flat_addrs, self._flat_rows, _bisect_right, _new_symbol
        out: list[Symbol | None] = []
        add = out.append
        for addr in addresses:
            i = bisect_right(flat_addrs, addr) - 1
            if i >= 0:
                row = rows[i]
                if addr < row[1]:
                    add(new(Symbol, (row[2], addr - row[0], row[3], row[4])))
                    continue
            add(self.resolve(addr))
        return out

    def reasons(self) -> dict[str, str]:
        """Why some mapped files give no (or only partial) symbols: module -> reason."""
        return {m.module: m.reason for m in self.mappings if m.reason}
