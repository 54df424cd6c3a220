"""Arena maps: created with their required flags, mapped from Python, the same pages read and written
by a program (through ``addr_space_cast``) and by Python.  This host's 6.18 refuses arena maps with
EPERM (the probe says so); the kernel matrix runs these for real."""

from __future__ import annotations

import mmap
import struct

import pytest
from ebpf.core import asm
from ebpf.core.arena import ARENA_MAX_PAGES, ArenaMap, create_arena_map
from ebpf.core.asm import DW, R0, R1, R3
from ebpf.core.errors import EBPFError
from ebpf.core.features import have_map_type
from ebpf.core.programs import load_program
from ebpf.core.testing import require

pytestmark = pytest.mark.privileged
MAGIC = 0x0123456789ABCDEF


def arena_program(arena: ArenaMap, offset: int) -> object:
    """Return the u64 at arena[offset + 8] and write MAGIC at arena[offset]."""
    return load_program(prog_type="socket_filter", name="arena_rw", insns=[
        asm.ld_map_value(R1, arena, offset),  # the arena's user address + offset
        asm.addr_space_cast(R1, R1, 0, 1),  # an arena pointer the program may dereference
        asm.ldx_mem(DW, R0, R1, 8),
        asm.ld_imm64(R3, MAGIC), asm.stx_mem(DW, R1, R3, 0),
        asm.exit_(),
    ])


def test_program_and_python_share_the_pages() -> None:
    require(have_map_type, "arena")
    with create_arena_map(4, name="arena_t") as arena:
        assert arena.map_type.lower_name == "arena" and arena.pages == 4
        view = arena.mmap()  # before the program loads: it bakes in the arena's address
        assert len(view) == 4 * mmap.PAGESIZE and arena.address
        off = 2 * mmap.PAGESIZE + 64
        struct.pack_into("<Q", view, off + 8, 4242)  # Python writes first (this also allocates the page)
        with arena_program(arena, off) as prog:
            result = prog.test_run(bytes(64))
        assert result.retval == 4242 & 0xFFFFFFFF  # the program read what Python wrote
        assert struct.unpack_from("<Q", view, off)[0] == MAGIC  # and Python sees what the program wrote


def test_fixed_address() -> None:
    require(have_map_type, "arena")
    address = 1 << 40
    with create_arena_map(2, address=address, name="arena_fix") as arena:
        view = arena.mmap()
        assert arena.address == address and arena.mmap() is view
        view[0] = 7
        assert view[0] == 7


def test_bad_input() -> None:
    for pages in (0, -1, ARENA_MAX_PAGES + 1, True, "4"):
        with pytest.raises(EBPFError, match="arena size"):
            create_arena_map(pages)  # type: ignore[arg-type]
    for address in (-4096, 123, "x"):
        with pytest.raises(EBPFError, match="page-aligned"):
            create_arena_map(1, address=address)  # type: ignore[arg-type]
    with pytest.raises(EBPFError, match="4 GiB boundary"):
        create_arena_map(2, address=(1 << 32) - mmap.PAGESIZE)
