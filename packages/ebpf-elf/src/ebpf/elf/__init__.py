"""ebpf-elf: load BPF ELF objects (BTF maps, relocations, globals, CO-RE) and compile BPF C.

Use it as ``from ebpf import elf``::

    with elf.load_elf("prog.o", constants={"target_pid": 42}) as coll:
        link = coll.programs["handle_exec"].attach()
        print(coll.variables["events_seen"].value)

``ebpf.core.load("prog.o")`` works too: this package registers an object loader.
"""


from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

# Submodules and the names re-exported from them, imported on first use: importing the package
# (its plugin, say) costs nothing until a name is used.
_MODULES: list[str] = []
_NAMES = {
    "CompileError": "compile",
    "CompileResult": "compile",
    "CompileWarning": "compile",
    "MapInfo": "info",
    "ObjectInfo": "info",
    "ProgramInfo": "info",
    "RelocationInfo": "info",
    "SECTION_DEFS": "sections",
    "SectionMatch": "sections",
    "VariableInfo": "info",
    "compile_c": "compile",
    "configure": "settings",
    "create_maps_from_elf": "loader",
    "get_program": "info",
    "include_dir": "compile",
    "inspect_elf": "info",
    "list_maps": "info",
    "list_programs": "info",
    "load_elf": "loader",
    "load_elf_program_and_maps": "loader",
    "load_program_from_elf": "loader",
    "load_spec": "loader",
    "match_section": "sections",
    "parse_elf_file": "info",
    "vmlinux_header": "compile",
}

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


def __getattr__(name: str) -> Any:
    if name in _MODULES:
        value = importlib.import_module(f"ebpf.elf.{name}")
    elif name in _NAMES:
        value = getattr(importlib.import_module(f"ebpf.elf.{_NAMES[name]}"), name)
    else:
        raise AttributeError(f"module 'ebpf.elf' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
