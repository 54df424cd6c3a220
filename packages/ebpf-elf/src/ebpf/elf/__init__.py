"""ebpf-elf: load BPF ELF objects (BTF maps, relocations, globals, CO-RE) and compile BPF C.

Use it as ``from ebpf import elf``::

    with elf.load_elf("prog.o", constants={"target_pid": 42}) as coll:
        link = coll.programs["handle_exec"].attach()
        print(coll.variables["events_seen"].value)

``ebpf.core.load("prog.o")`` works too: this package registers an object loader.
"""

from __future__ import annotations

from ebpf.elf.compile import CompileError, CompileResult, CompileWarning, compile_c, include_dir, vmlinux_header
from ebpf.elf.info import (
    MapInfo,
    ObjectInfo,
    ProgramInfo,
    RelocationInfo,
    VariableInfo,
    get_program,
    inspect_elf,
    list_maps,
    list_programs,
    parse_elf_file,
)
from ebpf.elf.loader import (
    create_maps_from_elf,
    load_elf,
    load_elf_program_and_maps,
    load_program_from_elf,
    load_spec,
)
from ebpf.elf.sections import SECTION_DEFS, SectionMatch, match_section
from ebpf.elf.settings import configure

__all__ = [
    "CompileError",
    "CompileResult",
    "CompileWarning",
    "MapInfo",
    "ObjectInfo",
    "ProgramInfo",
    "RelocationInfo",
    "SECTION_DEFS",
    "SectionMatch",
    "VariableInfo",
    "compile_c",
    "configure",
    "create_maps_from_elf",
    "get_program",
    "include_dir",
    "inspect_elf",
    "list_maps",
    "list_programs",
    "load_elf",
    "load_elf_program_and_maps",
    "load_program_from_elf",
    "load_spec",
    "match_section",
    "parse_elf_file",
    "vmlinux_header",
]
