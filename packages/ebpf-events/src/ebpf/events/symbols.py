"""Turning addresses into function names: the kernel's, a process's, a JIT's.

    >>> from ebpf.events.symbols import ksym, usym, symbolize
    >>> ksym(0xffffffff81234567)                        # doctest: +SKIP
    'do_syscall_64'
    >>> symbolize([0x7f12..., 0xffffffff8123...], pid=1234)   # doctest: +SKIP
    ['hot_spin_loop+0x1f [spin]', 'do_syscall_64+0x5b [kernel]']

- :class:`KernelSymbols` reads ``/proc/kallsyms`` once (module names included) into a sorted
  array and resolves by ``bisect``; when ``kernel.kptr_restrict`` hides the addresses it says so
  (:attr:`KernelSymbols.reason`) and resolves nothing instead of guessing.
- :class:`ProcessSymbols` follows ``/proc/PID/maps``: each executable mapping's file offset gives
  the ELF virtual address through the file's PT_LOAD segments, so PIE, non-PIE and shared
  libraries need no special cases.  Symbols come from ``.symtab`` + ``.dynsym``; for stripped
  files from a separate debug file (``/usr/lib/debug/.build-id/xx/rest.debug``, then
  ``.gnu_debuglink``) or MiniDebugInfo (``.gnu_debugdata``, xz, read with the stdlib ``lzma``).
  The vDSO is read from the process's memory, binaries deleted or replaced since the process
  started through ``/proc/PID/map_files``, and JIT code through ``/tmp/perf-PID.map``
  (Python >= 3.12 ``-X perf``, Node ``--perf-basic-prof``, the JVM's perf-map-agent).
- Parsed files are cached per build id (or device/inode/size/mtime) for the whole process, so
  fifty processes sharing libc parse it once.  A process's maps are re-read when an address
  falls outside every known mapping (it mapped something new).
"""

from __future__ import annotations

import bisect
import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence

from ebpf.core.errors import EBPFError
from ebpf.events._elfsyms import DEBUG_DIRS, Symbol, by_build_id, drop_file_cache, file_symbols
from ebpf.events._procsyms import Mapping, PerfMap, ProcessSymbols

__all__ = ["Symbol", "KernelSymbols", "ProcessSymbols", "PerfMap", "Mapping", "ksym", "usym", "symbolize",
           "DEBUG_DIRS", "is_kernel_address", "process_symbols", "file_symbols", "drop_file_cache",
           "resolve_build_id"]
_KERNEL_START = 0xFFFF800000000000
_bisect_right = bisect.bisect_right
_new_symbol = tuple.__new__  # Symbol(...) without the namedtuple's Python-level __new__: the hot path
_TEXT_TYPES = frozenset("tTwW")


def _parse_kallsyms(text: str) -> list[tuple[int, str, str]]:
    """(address, name, module) of the text symbols with a non-zero address, in file order.

    Lines are "ffffffff81000000 T _stext" or "ffffffffc0a01000 t fn\t[module]"; the fixed-width
    64-bit layout is read by position (the fast path), anything else by splitting.
    """
    rows: list[tuple[int, str, str]] = []
    add = rows.append
    for line in text.splitlines():
        if len(line) > 19 and line[16] == " " and line[18] == " ":
            if line[17] not in _TEXT_TYPES:
                continue
            name, _, module = line[19:].partition("\t")
            addr = int(line[:16], 16)
            if addr:
                add((addr, name, module[1:-1] if module else "kernel"))
            continue
        parts = line.split()
        if len(parts) >= 3 and parts[1] in _TEXT_TYPES:
            try:
                addr = int(parts[0], 16)
            except ValueError:
                continue
            if addr:
                add((addr, parts[2], parts[3][1:-1] if len(parts) > 3 else "kernel"))
    return rows


def is_kernel_address(addr: int) -> bool:
    """True for x86-64 kernel-half addresses."""
    return addr >= _KERNEL_START


# -- the kernel ------------------------------------------------------------------------------
class KernelSymbols:
    """``/proc/kallsyms`` as a sorted table: :meth:`resolve` maps a kernel address to a :class:`Symbol`.

    Use :meth:`shared` for the process-wide instance (parsed once).

    :param path: the kallsyms file (tests may pass a copy).
    :raises EBPFError: when the file cannot be read.
    """

    _shared: KernelSymbols | None = None
    _shared_lock = threading.Lock()

    def __init__(self, path: str = "/proc/kallsyms") -> None:
        """Read and sort ``path``."""
        try:
            with open(path, "rb") as fh:
                text = fh.read()
        except OSError as exc:
            raise EBPFError(f"cannot read {path}: {exc.strerror or exc}") from None
        rows = _parse_kallsyms(text.decode("utf-8", "replace"))
        hidden = not rows  # kptr_restrict shows every address as 0
        rows.sort()  # already nearly sorted (modules come last): cheap
        columns = list(zip(*rows)) or [(), (), ()]
        self.addrs: list[int] = list(columns[0])
        self.names: list[str] = list(columns[1])
        self.modules: list[str] = list(columns[2])
        #: why nothing resolves (kptr_restrict), or None
        self.reason: str | None = None
        if hidden:
            self.reason = (f"{path} shows every address as 0 (kernel.kptr_restrict={_read_sysctl('kptr_restrict')}): "
                           "kernel frames cannot be named; as root run `sysctl kernel.kptr_restrict=0` (or 1)")

    @classmethod
    def shared(cls, reload: bool = False) -> KernelSymbols:
        """The process-wide instance (parsed on first use, or again with ``reload``)."""
        with cls._shared_lock:
            if cls._shared is None or reload:
                cls._shared = cls()
            return cls._shared

    def __len__(self) -> int:
        return len(self.addrs)

    def resolve(self, addr: int) -> Symbol | None:
        """The kernel function holding ``addr`` (module-qualified), or None when unknown or hidden."""
        i = _bisect_right(self.addrs, addr) - 1
        if i < 0 or addr < _KERNEL_START:
            return None
        return _new_symbol(Symbol, (self.names[i], addr - self.addrs[i], self.modules[i], "kernel"))

    def address(self, name: str) -> int | None:
        """The address of kernel function ``name`` (linear search: for tests and tools), or None."""
        try:
            return self.addrs[self.names.index(name)]
        except ValueError:
            return None


def _read_sysctl(name: str) -> str:
    try:
        with open(f"/proc/sys/kernel/{name}") as fh:
            return fh.read().strip()
    except OSError:
        return "?"


# -- bcc-style conveniences ---------------------------------------------------------------------
_processes: OrderedDict[tuple[int, str], ProcessSymbols] = OrderedDict()
_processes_lock = threading.Lock()


def _start_time(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[1].split()[19].decode()
    except (OSError, IndexError):
        return ""


def process_symbols(pid: int) -> ProcessSymbols:
    """A cached :class:`ProcessSymbols` for ``pid`` (a new one when the pid was reused).

    :raises EBPFError: when there is no such process.
    """
    key = (pid, _start_time(pid))
    with _processes_lock:
        found = _processes.get(key)
        if found is not None:
            _processes.move_to_end(key)
            return found
    syms = ProcessSymbols(pid)
    with _processes_lock:
        _processes[key] = syms
        while len(_processes) > 64:
            _processes.popitem(last=False)
    return syms


def _fmt(sym: Symbol | None, addr: int, show_offset: bool, show_module: bool) -> str:
    if sym is None:
        return "[unknown]"
    text = f"{sym.name}+{sym.offset:#x}" if show_offset else sym.name
    return f"{text} [{sym.module}]" if show_module else text


def ksym(addr: int, *, show_offset: bool = False, show_module: bool = False) -> str:
    """The kernel function name at ``addr``, ``"[unknown]"`` when it cannot be named (as bcc's ``ksym``)."""
    return _fmt(KernelSymbols.shared().resolve(addr), addr, show_offset, show_module)


def usym(pid: int, addr: int, *, show_offset: bool = False, show_module: bool = False) -> str:
    """The function name at ``addr`` in process ``pid``, ``"[unknown]"`` when unknown (as bcc's ``sym``).

    :raises EBPFError: when there is no such process.
    """
    return _fmt(process_symbols(pid).resolve(addr), addr, show_offset, show_module)


def symbolize(addresses: Iterable[int], pid: int | None = None) -> list[str]:
    """Frames as ``"func+0x1f [libc.so.6]"``: kernel addresses through kallsyms, others through ``pid``.

    Addresses that cannot be named become ``"0x7f... [libfoo.so]"`` (module known) or
    ``"0x... [unknown]"``.

    :param pid: the process the user addresses belong to (None: kernel addresses only).
    :raises EBPFError: when ``pid`` names no process.
    """
    kernel = KernelSymbols.shared()
    proc = process_symbols(pid) if pid is not None else None
    out = []
    for addr in addresses:
        if is_kernel_address(addr):
            sym = kernel.resolve(addr)
            out.append(str(sym) if sym else f"{addr:#x} [kernel]")
            continue
        sym = proc.resolve(addr) if proc is not None else None
        if sym is not None:
            out.append(str(sym))
        else:
            module = proc.module_of(addr) if proc is not None else None
            out.append(f"{addr:#x} [{module or 'unknown'}]")
    return out


def resolve_build_id(build_id: bytes, offset: int, *, debug_dirs: Sequence[str] | None = None) -> Symbol | None:
    """Name a frame of a build-id stack (:class:`ebpf.core.maps.BuildIdFrame`: build id + file offset).

    The file is one parsed before (any :class:`ProcessSymbols` of a process mapping it), else its
    debug file ``<debug dir>/.build-id/xx/rest.debug``; the process need not exist any more.

    :returns: the symbol, or None when no file with this build id is known or no function holds the offset.
    """
    fs = by_build_id(bytes(build_id), debug_dirs)
    if fs is None:
        return None
    vaddr = fs.file_offset_to_vaddr(offset)
    found = fs.table.lookup(vaddr) if vaddr is not None else None
    return Symbol(found[0], found[1], fs.name, "user") if found else None
