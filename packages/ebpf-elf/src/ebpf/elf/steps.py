"""The ELF loader's load-time step: what :func:`ebpf.elf.load_spec` leaves on a spec, and what
``spec.load()`` does with it.

The spec stays plain data: the loader records an :class:`ElfLoadData` under
``spec.loader_data["ebpf.elf.steps"]`` (programs that cannot load and why, CO-RE relocation
records, struct_ops tables) and sets ``spec.require_btf = True``.  Importing this module
registers the :class:`~ebpf.core.extension.LoadStep` of that name; at load it

- refuses a program that cannot load but is still wanted (``autoload`` not switched off),
- applies CO-RE relocations and extern ids against the kernel BTF (``kernel_btf=`` /
  ``btf_path=`` of :class:`~ebpf.core.collection.CollectionOptions`, else the running kernel's),
- once the programs loaded, creates the struct_ops maps from them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ebpf.core.errors import ELFError
from ebpf.core.extension import LoadStep, register_load_step
from ebpf.core.records import dataclass, field

if TYPE_CHECKING:
    from ebpf.core.collection import CollectionSpec
    from ebpf.elf.core_relo import CoreData
    from ebpf.elf.struct_ops import StructOpsDef

__all__ = ["STEP", "ElfLoadData", "relocate"]

#: The key of :class:`ElfLoadData` in ``CollectionSpec.loader_data`` (this module's name).
STEP = __name__


@dataclass(frozen=True)
class ElfLoadData:
    """What the ELF loader knows that only matters at load time.

    :ivar path: the object file, for messages.
    :ivar broken: program name -> why it cannot load (unknown section, unresolved reference).
    :ivar core: CO-RE relocation and extern records, or None when the object has none.
    :ivar struct_ops: the struct_ops tables to create after the programs load.
    """

    path: str
    broken: dict[str, str] = field(default_factory=dict)
    core: CoreData | None = None
    struct_ops: tuple[StructOpsDef, ...] = ()


def _prepare(spec: CollectionSpec, data: ElfLoadData, options: dict[str, Any]) -> None:
    for pname, pspec in list(spec.programs.items()):
        if not getattr(pspec, "autoload", True):
            _drop_program(spec, pname)  # before CO-RE: a left-out program need not relocate
        elif pname in data.broken:
            raise ELFError(f"{data.broken[pname]} (leave the program out: spec.programs[{pname!r}].autoload = False, "
                           f"or load_elf(..., programs={{{pname!r}: {{'autoload': False}}}}))")
    _relocate(spec, data, options)


def relocate(spec: CollectionSpec, options: dict[str, Any] | None = None) -> None:
    """Apply only the CO-RE relocations and extern ids an ELF spec records (in place; for tools and tests).

    :param spec: a spec from :func:`ebpf.elf.load_spec` (one without ELF data is left alone).
    :param options: load options; ``btf_path`` names the kernel BTF.
    :raises BTFError: an unsatisfiable relocation.
    """
    data = spec.loader_data.get(STEP)
    if isinstance(data, ElfLoadData):
        _relocate(spec, data, dict(options or {}))


def _relocate(spec: CollectionSpec, data: ElfLoadData, options: dict[str, Any]) -> None:
    if data.core is None:
        return
    from ebpf.elf.core_relo import relocate as core_relocate  # deferred: start-up time (CO-RE only when used)

    core_relocate(spec, data.core, options)


def _after_load(spec: CollectionSpec, data: ElfLoadData, maps: dict[str, Any], programs: dict[str, Any],
                options: dict[str, Any]) -> None:
    if data.struct_ops:
        from ebpf.elf.struct_ops import build_struct_ops  # deferred: start-up time (struct_ops objects are rare)

        build_struct_ops(data.struct_ops, data.path, maps, programs)


def _drop_program(spec: CollectionSpec, pname: str) -> None:
    del spec.programs[pname]
    spec.references.pop(pname, None)
    for entries in spec.map_contents.values():
        entries[:] = [(k, v) for k, v in entries if v != pname]


register_load_step(LoadStep(STEP, prepare=_prepare, after_load=_after_load))
