"""The :class:`Instruction` record, labels, and the binary encoding (``struct bpf_insn``).

``struct bpf_insn`` is eight bytes: ``u8 code; u8 dst_reg:4, src_reg:4; s16 off; s32 imm``
(little-endian on every architecture we run on).  ``ld_imm64`` takes two slots; the
second slot carries only the upper 32 bits (or, for map values, the offset).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator

from ebpf.core.asm.opcodes import (
    DW,
    IMM,
    INSN_SIZE,
    JMP,
    JMP32,
    LD,
    PSEUDO_CALL,
    PSEUDO_FUNC,
    PSEUDO_MAP_FD,
    PSEUDO_MAP_IDX,
    PSEUDO_MAP_IDX_VALUE,
    PSEUDO_MAP_VALUE,
    AsmError,
    insn_class,
    is_valid_opcode,
)
from ebpf.core.extension import SupportsFd  # the plugin contract's protocol, re-exported here
from ebpf.core.records import dataclass, field, replace

__all__ = ["Instruction", "Label", "SupportsFd", "MapRef", "label", "decode", "iter_slots"]

_INSN = struct.Struct("<BBhi")

#: How ``str(Instruction)`` prints: installed by :mod:`ebpf.core.asm.disasm`, which imports this module.
_formatter: Callable[[Instruction], str] | None = None


def set_formatter(formatter: Callable[[Instruction], str]) -> None:
    """Install the function ``str(instruction)`` calls (the disassembler's :func:`format_insn`)."""
    global _formatter
    _formatter = formatter
_LD_IMM64 = LD | IMM | DW


#: What a map reference may be: a raw fd, an object with ``.fd``, or a name resolved at assemble time.
MapRef = int | str | SupportsFd


def _signed32(value: int, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise AsmError(f"{what} must be an int, not {type(value).__name__}")
    if not -(1 << 31) <= value < (1 << 32):
        raise AsmError(f"{what} {value} does not fit in 32 bits")
    return value - (1 << 32) if value >= (1 << 31) else value


@dataclass(frozen=True)
class Label:
    """A jump target: ``label("out")`` marks the position of the next instruction.

    :ivar name: the label's name, used by jumps (``jeq(R0, 0, "out")``) and calls.
    """

    name: str

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise AsmError(f"a label name must be a non-empty string, not {self.name!r}")


def label(name: str) -> Label:
    """Mark a jump target; the label refers to the instruction that follows it.

    :param name: the label's name.
    :returns: a :class:`Label` to put in the instruction list.
    """
    return Label(name)


@dataclass(frozen=True)
class Instruction:
    """One BPF instruction (two slots for ``ld_imm64``).

    Fields are the kernel's ``struct bpf_insn``; ``imm2`` is the second slot's imm of an
    ``ld_imm64`` (the high half of the constant, or the offset into a map value).
    Symbolic parts stay unresolved until :func:`~ebpf.core.asm.assemble`: ``target`` is a
    label name whose relative position goes into ``off`` (or ``imm`` for ``gotol``,
    bpf-to-bpf calls and function pointers), ``map_ref`` the map an ``ld_imm64`` refers to.

    :raises AsmError: for an unknown opcode, a register outside R0..R10, or an
        offset or immediate that does not fit its field.
    """

    code: int
    dst: int = 0
    src: int = 0
    off: int = 0
    imm: int = 0
    imm2: int = 0
    target: str | None = None
    map_ref: MapRef | None = field(default=None, hash=False)

    def __post_init__(self) -> None:
        if not isinstance(self.code, int) or not is_valid_opcode(self.code):
            shown = f"0x{self.code:02x}" if isinstance(self.code, int) else repr(self.code)
            raise AsmError(f"invalid opcode {shown}")
        for name in ("dst", "src"):
            value = getattr(self, name)
            if not isinstance(value, int) or not 0 <= value <= 10:
                raise AsmError(f"{name} register {value!r} out of range (R0..R10)")
        if not isinstance(self.off, int) or not -(1 << 15) <= self.off < (1 << 15):
            raise AsmError(f"offset {self.off!r} does not fit in 16 bits (-32768..32767)")
        object.__setattr__(self, "imm", _signed32(self.imm, "immediate"))
        object.__setattr__(self, "imm2", _signed32(self.imm2, "second immediate"))
        object.__setattr__(self, "dst", int(self.dst))
        object.__setattr__(self, "src", int(self.src))
        if self.imm2 and not self.is_wide:
            raise AsmError("imm2 is only meaningful for ld_imm64")

    @property
    def cls(self) -> int:
        """The instruction class (``LD`` .. ``ALU64``)."""
        return insn_class(self.code)

    @property
    def is_wide(self) -> bool:
        """Whether this is an ``ld_imm64`` (two slots)."""
        return self.code == _LD_IMM64

    @property
    def slots(self) -> int:
        """How many 8-byte slots the instruction takes (1, or 2 for ``ld_imm64``)."""
        return 2 if self.is_wide else 1

    @property
    def value(self) -> int:
        """The 64-bit constant of an ``ld_imm64`` (unsigned)."""
        return ((self.imm2 & 0xFFFFFFFF) << 32) | (self.imm & 0xFFFFFFFF)

    @property
    def target_in_imm(self) -> bool:
        """Whether a label target goes into ``imm`` (gotol, bpf-to-bpf call, func pointer) instead of ``off``."""
        if self.code == JMP32:  # JMP32 | JA: gotol
            return True
        if self.code == JMP | 0x80 and self.src == PSEUDO_CALL:
            return True
        return self.is_wide and self.src == PSEUDO_FUNC

    @property
    def is_jump(self) -> bool:
        """Whether the instruction is a jump taking an ``off`` (not call/exit)."""
        return self.cls in (JMP, JMP32) and (self.code & 0xF0) not in (0x80, 0x90)

    @property
    def references_map(self) -> bool:
        """Whether this is an ``ld_imm64`` whose imm is a map (fd or index)."""
        return self.is_wide and self.src in (PSEUDO_MAP_FD, PSEUDO_MAP_VALUE, PSEUDO_MAP_IDX, PSEUDO_MAP_IDX_VALUE)

    def with_target(self, position: int, labels: dict[str, int]) -> Instruction:
        """Resolve ``target`` against ``labels`` (name -> slot) for this instruction at slot ``position``.

        :raises AsmError: for an unknown label or an offset that does not fit.
        """
        if self.target is None:
            return self
        if self.target not in labels:
            known = ", ".join(sorted(labels)) or "none"
            raise AsmError(f"unknown label {self.target!r} (labels: {known})")
        delta = labels[self.target] - position - 1
        if self.target_in_imm:
            if not -(1 << 31) <= delta < (1 << 31):
                raise AsmError(f"label {self.target!r} is out of range ({delta} slots)")
            return replace(self, imm=delta, target=None)
        if not -(1 << 15) <= delta < (1 << 15):
            raise AsmError(f"jump to {self.target!r} is out of range: {delta} slots does not fit in 16 bits")
        return replace(self, off=delta, target=None)

    def with_map(self, fd: int) -> Instruction:
        """Return a copy with the map reference resolved to ``fd``."""
        return replace(self, imm=fd, map_ref=None)

    def resolved_map_fd(self) -> int | None:
        """The fd of ``map_ref`` when it can be known without a name table, else None.

        :raises AsmError: when the referenced object has no usable fd (closed).
        """
        ref = self.map_ref
        if ref is None or isinstance(ref, str):
            return None
        fd = ref if isinstance(ref, int) else getattr(ref, "fd", None)
        if not isinstance(fd, int) or fd < 0:
            raise AsmError(f"map reference {ref!r} has no open file descriptor")
        return fd

    def encode(self) -> bytes:
        """The instruction's bytes (8, or 16 for ``ld_imm64``).

        :raises AsmError: when a label or a map name is still unresolved (use ``assemble``).
        """
        if self.target is not None:
            raise AsmError(f"unresolved label {self.target!r}: assemble the whole program")
        imm = self.imm
        if self.map_ref is not None:
            fd = self.resolved_map_fd()
            if fd is None:
                raise AsmError(f"unresolved map {self.map_ref!r}: pass maps={{name: map}} to assemble()")
            imm = fd
        regs = (self.src << 4) | self.dst
        first = _INSN.pack(self.code, regs, self.off, imm)
        if self.is_wide:
            return first + _INSN.pack(0, 0, 0, self.imm2)
        return first

    @classmethod
    def decode(cls, data: bytes | bytearray | memoryview, index: int = 0) -> Instruction:
        """Decode the instruction at slot ``index`` of ``data`` (reads two slots for ``ld_imm64``).

        :raises AsmError: for a bad opcode, a bad register, a truncated buffer or a bad second slot.
        """
        start = index * INSN_SIZE
        if start + INSN_SIZE > len(data):
            raise AsmError(f"insn {index}: truncated instruction ({len(data) - start} bytes)")
        code, regs, off, imm = _INSN.unpack_from(data, start)
        dst, src = regs & 0x0F, regs >> 4
        if not is_valid_opcode(code):
            raise AsmError(f"insn {index}: invalid opcode 0x{code:02x}")
        if dst > 10 or src > 10:
            raise AsmError(f"insn {index}: invalid register (dst r{dst}, src r{src}; R0..R10 exist)")
        imm2 = 0
        if code == _LD_IMM64:
            if start + 2 * INSN_SIZE > len(data):
                raise AsmError(f"insn {index}: ld_imm64 is missing its second slot")
            code2, regs2, off2, imm2 = _INSN.unpack_from(data, start + INSN_SIZE)
            if code2 or regs2 or off2:
                raise AsmError(f"insn {index}: invalid second slot of ld_imm64 (code, registers and offset must be 0)")
        return cls(code, dst, src, off, imm, imm2)

    def __str__(self) -> str:
        if _formatter is None:  # only before ebpf.core.asm.disasm is imported (the package imports it)
            return repr(self)
        return _formatter(self)


def iter_slots(data: bytes | bytearray | memoryview) -> Iterator[tuple[int, Instruction]]:
    """Yield ``(slot, instruction)`` for each instruction in ``data``.

    :raises AsmError: when the length is not a multiple of 8 or an instruction is invalid.
    """
    if len(data) % INSN_SIZE:
        raise AsmError(f"instruction bytes must be a multiple of {INSN_SIZE} long, got {len(data)}")
    slot = 0
    total = len(data) // INSN_SIZE
    while slot < total:
        insn = Instruction.decode(data, slot)
        yield slot, insn
        slot += insn.slots


def decode(data: bytes | bytearray | memoryview) -> list[Instruction]:
    """Decode a program's bytes into instructions (``ld_imm64`` becomes one instruction).

    :param data: the program, 8 bytes per slot.
    :returns: the instructions in order.
    :raises AsmError: for an odd length, a bad opcode or register, or a truncated ``ld_imm64``.
    """
    return [insn for _, insn in iter_slots(data)]

