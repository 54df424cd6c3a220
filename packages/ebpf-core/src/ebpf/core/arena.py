"""Arena maps (``BPF_MAP_TYPE_ARENA``): pages shared by programs and user space at one address.

An arena is a sparse region of up to 4 GiB of pages.  User space ``mmap``s it; a page exists once
either side touches it (a user page fault, or the program's ``bpf_arena_alloc_pages``).  Programs
see the same bytes through arena pointers (``addr_space_cast``), and because both sides agree on
the user address (``map_extra`` fixes it, else the first ``mmap`` picks it), pointers stored in the
arena mean the same thing to both.

The kernel wants ``key_size = value_size = 0``, ``max_entries`` = the number of pages and
``BPF_F_MMAPABLE``; :func:`create_arena_map` sets them.  :meth:`ArenaMap.mmap` maps the whole
arena shared, at ``address`` when one was given (``MAP_FIXED_NOREPLACE``), through libc's ``mmap``
because Python's :mod:`mmap` cannot choose the address.

Requires Linux >= 6.9, x86_64 or arm64 (a JIT that supports arena), and a kernel build that allows
it: some 6.18 builds refuse the map with EPERM even to root -- :func:`ebpf.core.features.have_map_type`
says so.
"""

from __future__ import annotations

import ctypes
import mmap as _mmap
import weakref
from typing import Any

from ebpf.core._maps.base import Map, MapSpec
from ebpf.core.errors import BPFSyscallError, EBPFError
from ebpf.core.types import MapType

__all__ = ["ArenaMap", "create_arena_map", "ARENA_MAX_PAGES"]

#: An arena spans at most 4 GiB (the 32-bit offsets programs use).
ARENA_MAX_PAGES = (1 << 32) // _mmap.PAGESIZE
_MAP_FIXED_NOREPLACE = 0x100000
_MAP_FAILED = ctypes.c_void_p(-1).value

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
_libc.munmap.restype = ctypes.c_int
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]


def _unmap(addr: int, length: int) -> None:
    _libc.munmap(addr, length)


class ArenaMap(Map):
    """An arena map; :meth:`mmap` gives its pages as a writable memoryview."""

    _view: memoryview | None = None
    _addr: int = 0
    _unmapper: Any = None

    @property
    def pages(self) -> int:
        """The arena's size in pages (its ``max_entries``)."""
        return int(self.max_entries)

    @property
    def size(self) -> int:
        """The arena's size in bytes."""
        return self.pages * _mmap.PAGESIZE

    @property
    def address(self) -> int:
        """The user address of the arena once mapped (0 before :meth:`mmap`)."""
        return self._addr

    def mmap(self) -> memoryview:
        """Map the arena (once; later calls return the same view).

        :returns: a writable memoryview of :attr:`size` bytes; touching a page allocates it.
        :raises BPFSyscallError: when the kernel refuses the mapping (EBUSY: the address is taken).
        """
        if self._view is not None:
            return self._view
        want = int(self.spec.map_extra)
        flags = _mmap.MAP_SHARED | (_MAP_FIXED_NOREPLACE if want else 0)
        addr = _libc.mmap(want or None, self.size, _mmap.PROT_READ | _mmap.PROT_WRITE, flags, self.fd, 0)
        if addr is None or addr == _MAP_FAILED:
            err = ctypes.get_errno()
            raise BPFSyscallError(err, "mmap", hint="the arena's address is already mapped" if err in (16, 17) else "")
        if want and addr != want:  # a kernel without MAP_FIXED_NOREPLACE treats it as a hint
            _libc.munmap(addr, self.size)
            raise BPFSyscallError(16, "mmap", f"the arena could not be mapped at {want:#x}")
        self._addr = addr
        self._unmapper = weakref.finalize(self, _unmap, addr, self.size)
        self._view = memoryview((ctypes.c_char * self.size).from_address(addr)).cast("B")
        return self._view

    def close(self) -> None:
        """Unmap the arena and close the map fd (views handed out must not be used afterwards)."""
        if self._view is not None:
            self._view.release()
            self._view = None
        if self._unmapper is not None:
            self._unmapper()
            self._unmapper = None
        super().close()


def create_arena_map(pages: int, *, address: int = 0, name: str = "", numa_node: int | None = None) -> ArenaMap:
    """Create an arena of ``pages`` pages.

    :param pages: the arena's size in pages (1 .. 4 GiB worth).
    :param address: the user address both sides use (``map_extra``; page aligned, and the arena must
        not cross a 4 GiB boundary); 0 lets the first :meth:`ArenaMap.mmap` choose.
    :param name: the map's name.
    :param numa_node: allocate its pages on this NUMA node.
    :returns: the :class:`ArenaMap` (not yet mapped).
    :raises EBPFError: for a bad size or address (before any syscall).
    :raises BPFSyscallError: when the kernel refuses (EPERM on builds that refuse arena).
    """
    from ebpf.core._maps.create import BPF_F_MMAPABLE, create_map  # deferred: start-up time (only this path needs it)

    if isinstance(pages, bool) or not isinstance(pages, int) or not 0 < pages <= ARENA_MAX_PAGES:
        raise EBPFError(f"arena size must be 1..{ARENA_MAX_PAGES} pages, not {pages!r}")
    if isinstance(address, bool) or not isinstance(address, int) or address < 0 or address % _mmap.PAGESIZE:
        raise EBPFError(f"arena address must be a page-aligned non-negative int, not {address!r}")
    size = pages * _mmap.PAGESIZE
    if address and (address >> 32) != ((address + size - 1) >> 32):
        raise EBPFError(f"an arena at {address:#x} of {size} bytes would cross a 4 GiB boundary")
    spec = MapSpec(map_type=MapType.ARENA, key_size=0, value_size=0, max_entries=pages, name=name,
                   flags=BPF_F_MMAPABLE, map_extra=address, numa_node=numa_node)
    plain = create_map(spec)
    # rewrap the fd as an ArenaMap (same spec and codecs), handing the fd over
    arena = ArenaMap(plain._fd, plain.spec, plain.key_codec, plain.value_codec)
    if plain._finalizer is not None:
        plain._finalizer.detach()  # the fd now belongs to `arena`
    plain._state.closed = True
    return arena
