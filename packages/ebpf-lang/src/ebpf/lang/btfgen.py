"""BTF for a compiled module: map key/value types, one FUNC per program, func_info and line_info.

line_info maps instructions to Python lines: each record names the source file, the line's
text and ``line << 10 | column``, so the verifier prints the Python line above the
instructions it rejects (``; counts[pid] += 1 @ tool.py:14``).
"""

from __future__ import annotations

import struct

from ebpf.core.btf import Builder, Linkage
from ebpf.core.records import dataclass, field
from ebpf.lang.types import BtfTypes, LangType, i32

__all__ = ["ModuleBtf", "ProgramBtf"]


@dataclass
class ProgramBtf:
    """One program's records: ``func_type`` (a FUNC id) and ``lines`` as
    (instruction slot, file, line text, line, column)."""

    func_type: int
    lines: list[tuple[int, str, str, int, int]] = field(default_factory=list)


class ModuleBtf:
    """Collects the types and source strings of every program and map of a module."""

    def __init__(self) -> None:
        """An empty BTF with a string section built as records are added."""
        self.types = BtfTypes(Builder())
        self._strings = bytearray(b"\0")
        self._offsets: dict[str, int] = {"": 0}
        self._protos: dict[tuple[str, int], int] = {}

    def string(self, text: str) -> int:
        """The offset of ``text`` in the string section (added once)."""
        off = self._offsets.get(text)
        if off is None:
            off = self._offsets[text] = len(self._strings)
            self._strings += text.encode() + b"\0"
        return off

    def func(self, name: str, ctx_name: str, ctx: LangType | None = None) -> int:
        """A global FUNC ``int name(struct <ctx> *ctx)`` (``void *`` without a context type)."""
        b = self.types.builder
        target = ctx.btf(self.types) if ctx is not None and ctx.size else 0
        proto = self._protos.get((ctx_name, target))
        if proto is None:
            ret = self.types.int_id(i32)
            proto = self._protos[(ctx_name, target)] = b.add_func_proto(ret, [(ctx_name, b.add_pointer(target))])
        return b.add_func(name, proto, Linkage.GLOBAL)

    def encode(self) -> bytes:
        """The BTF blob (types, then strings: the line texts first, at the offsets handed out).

        Call it after :meth:`line_info`, which adds the strings its records point at.
        """
        self.types.builder.strings = bytes(self._strings)
        return self.types.builder.encode()

    def func_info(self, prog: ProgramBtf) -> bytes:
        """``struct bpf_func_info`` records (the program starts at instruction 0)."""
        return struct.pack("<II", 0, prog.func_type)

    def line_info(self, prog: ProgramBtf) -> bytes:
        """``struct bpf_line_info`` records, instruction offsets in slots (as BPF_PROG_LOAD wants)."""
        out = bytearray()
        for slot, filename, text, line, col in prog.lines:
            out += struct.pack("<IIII", slot, self.string(filename), self.string(text), (line << 10) | min(col, 0x3FF))
        return bytes(out)
