"""Assembling: label resolution, map references, and the :class:`Assembler` builder."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ebpf.core.asm import alu, jumps, mem
from ebpf.core.asm import disasm as _disasm
from ebpf.core.asm.insn import Instruction, Label, MapRef, iter_slots
from ebpf.core.asm.opcodes import AsmError
from ebpf.core.asm.text import parse, scan_labels

__all__ = ["Assembler", "assemble", "flatten", "references", "disassemble"]

Item = Instruction | Label

# name -> constructor, for Assembler.<name>(...)
_CONSTRUCTORS: dict[str, Callable[..., Instruction]] = {
    name: fn
    for module in (alu, jumps, mem)
    for name, fn in vars(module).items()
    if not name.startswith("_") and inspect.isfunction(fn) and fn.__module__ == module.__name__ and name != "helper_id"
}
_CONSTRUCTORS.update({"ja": jumps.jmp_a, "exit_": jumps.exit_insn, "call_subprog": jumps.call_rel})


def _expand(program: object, out: list[object], labels: set[str], depth: int = 0) -> None:
    """Flatten nesting into Instruction/Label/str parts, collecting label names."""
    if depth > 64:
        raise AsmError("program items nested too deeply")
    if isinstance(program, (Instruction, Label)):
        if isinstance(program, Label):
            labels.add(program.name)
        out.append(program)
    elif isinstance(program, str):
        labels.update(scan_labels(program))
        out.append(program)
    elif isinstance(program, (bytes, bytearray, memoryview)):
        out.extend(insn for _, insn in iter_slots(program))
    elif isinstance(program, Assembler):
        _expand(program.items, out, labels, depth + 1)
    elif hasattr(program, "assemble") and callable(program.assemble):
        _expand(bytes(program.assemble()), out, labels, depth + 1)
    elif isinstance(program, Iterable):
        for item in program:
            _expand(item, out, labels, depth + 1)
    else:
        raise AsmError(f"not an instruction, a label or program text: {program!r}")


def flatten(program: object) -> list[Item]:
    """Turn a program given in any accepted form into a flat list of instructions and labels.

    :param program: an :class:`Instruction`, a :class:`Label`, program text, bytes, an
        :class:`Assembler` (or anything with ``.assemble() -> bytes``), or a (nested) list of those.
    :returns: the instructions and labels, symbols unresolved.
    :raises AsmError: for an item that is none of these, or text that does not parse.
    """
    parts: list[object] = []
    labels: set[str] = set()
    _expand(program, parts, labels)
    items: list[Item] = []
    for part in parts:
        if isinstance(part, str):
            items.extend(parse(part, labels))
        else:
            assert isinstance(part, (Instruction, Label))
            items.append(part)
    return items


def _label_positions(items: list[Item]) -> dict[str, int]:
    positions: dict[str, int] = {}
    slot = 0
    for item in items:
        if isinstance(item, Label):
            if item.name in positions:
                raise AsmError(f"duplicate label {item.name!r}")
            positions[item.name] = slot
        else:
            slot += item.slots
    return positions


def _map_fd(insn: Instruction, maps: Mapping[str, object] | None) -> Instruction:
    ref = insn.map_ref
    if ref is None:
        return insn
    if isinstance(ref, str):
        if maps is None or ref not in maps:
            known = ", ".join(sorted(maps)) if maps else "none given"
            raise AsmError(f"unknown map {ref!r} (maps: {known})")
        target = maps[ref]
        fd = target if isinstance(target, int) else getattr(target, "fd", None)
        if not isinstance(fd, int) or isinstance(fd, bool) or fd < 0:
            raise AsmError(f"map {ref!r} has no open file descriptor")
        return insn.with_map(fd)
    fd = insn.resolved_map_fd()
    assert fd is not None
    return insn.with_map(fd)


def assemble(program: object, *, maps: Mapping[str, object] | None = None) -> bytes:
    """Assemble a program into the bytes ``BPF_PROG_LOAD`` takes.

    Resolves labels into relative offsets and map references into fds (a Map's ``.fd``,
    or for a map given by name, ``maps[name]``, a Map or an fd).

    :param program: instructions and labels (``[mov64(R0, 0), exit_()]``), program text in
        ``llvm-objdump`` syntax, bytes, an :class:`Assembler`, or a nested list of these.
    :param maps: name -> Map (or fd) for map references made by name (``ld_map_fd(R1, "counters")``).
    :returns: the encoded instructions, 8 bytes per slot.
    :raises AsmError: for unknown or duplicate labels, jumps out of range, unknown maps,
        closed maps, or anything that is not an instruction.
    """
    if isinstance(program, (bytes, bytearray, memoryview)):
        data = bytes(program)
        for _ in iter_slots(data):  # validates
            pass
        return data
    items = flatten(program)
    labels = _label_positions(items)
    out = bytearray()
    slot = 0
    for item in items:
        if isinstance(item, Label):
            continue
        insn = _map_fd(item.with_target(slot, labels), maps)
        out += insn.encode()
        slot += insn.slots
    return bytes(out)


def references(program: object) -> list[tuple[int, MapRef]]:
    """Which instructions refer to which maps symbolically: ``[(slot, map_ref), ...]``.

    ``slot`` is the index of the ``ld_imm64`` (in 8-byte slots, as in the assembled bytes);
    ``map_ref`` is the Map object or the name given to ``ld_map_fd``/``ld_map_value``.
    Maps given as raw fds are not listed (they are already resolved).
    """
    found: list[tuple[int, MapRef]] = []
    slot = 0
    for item in flatten(program):
        if isinstance(item, Instruction):
            if item.map_ref is not None:
                found.append((slot, item.map_ref))
            slot += item.slots
    return found


class Assembler:
    """A program under construction; ``ProgramSpec(insns=asm)`` takes it directly.

    Every instruction constructor is a method that appends and returns the builder, so
    calls chain::

        a = Assembler()
        a.mov64(R0, 0).jeq(R1, 0, "out").mov64(R0, 1).label("out").exit_()
        a.assemble()

    :param items: initial instructions, labels or text (anything :func:`flatten` accepts).
    """

    def __init__(self, items: object = ()) -> None:
        self.items: list[Item] = flatten(items)

    def append(self, *items: object) -> Assembler:
        """Append instructions, labels, text or lists of them; returns ``self``."""
        self.items.extend(flatten(list(items)))
        return self

    def label(self, name: str) -> Assembler:
        """Mark the position of the next instruction as ``name``; returns ``self``."""
        self.items.append(Label(name))
        return self

    def __getattr__(self, name: str) -> Callable[..., Assembler]:
        constructor = _CONSTRUCTORS.get(name)
        if constructor is None:
            raise AttributeError(f"{type(self).__name__!r} has no attribute {name!r}")

        def emit(*args: Any, **kwargs: Any) -> Assembler:
            self.items.append(constructor(*args, **kwargs))
            return self

        emit.__name__ = name
        emit.__doc__ = constructor.__doc__
        return emit

    def __iter__(self) -> Any:
        return iter(self.items)

    def __len__(self) -> int:
        """The program's length in 8-byte slots (what the kernel counts)."""
        return sum(item.slots for item in self.items if isinstance(item, Instruction))

    def assemble(self, *, maps: Mapping[str, object] | None = None) -> bytes:
        """Assemble the program (see :func:`assemble`)."""
        return assemble(self.items, maps=maps)

    def references(self) -> list[tuple[int, MapRef]]:
        """The program's symbolic map references (see :func:`references`)."""
        return references(self.items)

    def disassemble(self, **options: Any) -> str:
        """The program as text, labels included (see :func:`disassemble`)."""
        return disassemble(self.items, **options)

    def __str__(self) -> str:
        return self.disassemble()

    def __repr__(self) -> str:
        return f"<Assembler: {len(self)} slots>"


def disassemble(
    code: bytes | bytearray | memoryview | Iterable[object],
    *,
    hex: bool = False,
    objdump: bool = False,
    helper_names: bool = False,
    strict: bool = True,
) -> str:
    """Disassemble a program to text, one instruction per line, in ``llvm-objdump -d`` syntax.

    :param code: the program's bytes, or a program in any form :func:`flatten` takes (labels are
        printed as ``name:`` lines and jumps to them by name).
    :param hex: immediates and offsets in hex (``r0 = 0x0``), as LLVM >= 15 prints them.
    :param objdump: prefix each line with the slot index and the raw bytes, as ``llvm-objdump -d``.
    :param helper_names: ``call map_lookup_elem`` instead of ``call 1``.
    :param strict: when False, a slot that is not a valid instruction prints as ``<unknown>``.
    :returns: the text; :func:`assemble` turns it back into the same bytes.
    :raises AsmError: for bytes that are not valid instructions, or items that are not a program.
    """
    if isinstance(code, (bytes, bytearray, memoryview)):
        return _disasm.disassemble(code, hex=hex, objdump=objdump, helper_names=helper_names, strict=strict)
    items = flatten(code)
    if objdump:  # slots and raw bytes need the assembled program
        return _disasm.disassemble(assemble(items), hex=hex, objdump=True, helper_names=helper_names)
    return _disasm.disassemble(items, hex=hex, helper_names=helper_names)
