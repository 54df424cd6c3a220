"""USDT argument specs: decoding ``.note.stapsdt`` argument strings, the spec map, and the asm that reads them.

A USDT probe's note carries one spec per argument, e.g. ``"-4@%eax 8@-8(%rbp) 4@$5"``
(x86_64) or ``"-4@x0 8@[sp, 16] 4@5"`` (aarch64): the size (negative when signed), then
where the value is at the probe's instruction: a register, memory at register + offset,
or a constant.  As libbpf's ``usdt.bpf.h`` does, each attached site gets a *spec* (its
decoded arguments) in an ARRAY map ``__bpf_usdt_specs``, and the site's uprobe carries the
spec's index as its BPF cookie; the program then reads argument N with
:func:`usdt_arg` (``bpf_get_attach_cookie`` -> spec -> ``pt_regs`` / ``bpf_probe_read_user``
-> shifts for size and sign).  BPF cookies exist from Linux 5.15; libbpf's fallback for
older kernels (an IP -> spec id hash map) is not implemented.

The map layout is libbpf's (``struct __bpf_usdt_spec``): a C program built against
``usdt.bpf.h`` (libbpf's, or the one ebpf-elf ships) and loaded from its object has its own
``__bpf_usdt_specs`` map, which :meth:`UsdtSpecs.from_map` wraps; ``attach_usdt`` does that by
itself when the program uses such a map.
"""

from __future__ import annotations

import re
import struct
import weakref
from enum import IntEnum
from typing import Any

from ebpf.core import asm
from ebpf.core.errors import EBPFError
from ebpf.core.records import dataclass

__all__ = [
    "UsdtArg",
    "UsdtArgKind",
    "UsdtSpecs",
    "parse_usdt_args",
    "encode_usdt_spec",
    "usdt_arg",
    "usdt_cookie",
    "USDT_MAX_ARGS",
    "USDT_SPEC_SIZE",
    "USDT_SPECS_MAP",
    "PT_REGS_OFFSETS",
]

USDT_MAX_ARGS = 12  # BPF_USDT_MAX_ARG_CNT
_ARG_SPEC = struct.Struct("<QiH?b")  # val_off, arg_type, reg_off, arg_signed, arg_bitshift (16 bytes)
_COOKIE_OFF = USDT_MAX_ARGS * _ARG_SPEC.size  # u64 usdt_cookie
_CNT_OFF = _COOKIE_OFF + 8  # short arg_cnt
USDT_SPEC_SIZE = _CNT_OFF + 8  # sizeof(struct __bpf_usdt_spec): 208, padded to 8


class UsdtArgKind(IntEnum):
    """Where an argument lives (libbpf's ``enum __bpf_usdt_arg_type``)."""

    CONST = 0
    REG = 1
    REG_DEREF = 2


def _regs(*groups: tuple[int, tuple[str, ...]]) -> dict[str, int]:
    return {name: off for off, names in groups for name in names}


# struct pt_regs offsets (arch/x86/include/asm/ptrace.h); every alias of a register reads its low bytes
_X86_64 = _regs(
    (0, ("r15", "r15d", "r15w", "r15b")), (8, ("r14", "r14d", "r14w", "r14b")),
    (16, ("r13", "r13d", "r13w", "r13b")), (24, ("r12", "r12d", "r12w", "r12b")),
    (32, ("rbp", "ebp", "bp", "bpl")), (40, ("rbx", "ebx", "bx", "bl")),
    (48, ("r11", "r11d", "r11w", "r11b")), (56, ("r10", "r10d", "r10w", "r10b")),
    (64, ("r9", "r9d", "r9w", "r9b")), (72, ("r8", "r8d", "r8w", "r8b")),
    (80, ("rax", "eax", "ax", "al")), (88, ("rcx", "ecx", "cx", "cl")), (96, ("rdx", "edx", "dx", "dl")),
    (104, ("rsi", "esi", "si", "sil")), (112, ("rdi", "edi", "di", "dil")), (128, ("rip", "eip")),
    (152, ("rsp", "esp", "sp", "spl")),
)
# struct user_pt_regs (arch/arm64/include/uapi/asm/ptrace.h): regs[31], sp, pc
_AARCH64 = {**{f"x{i}": 8 * i for i in range(31)}, **{f"w{i}": 8 * i for i in range(31)}, "sp": 248, "pc": 256}
PT_REGS_OFFSETS = {"x86_64": _X86_64, "aarch64": _AARCH64}

_NUM = r"[-+]?(?:0[xX][0-9a-fA-F]+|\d+)"
_X86_ARG = re.compile(rf"\s*([-+]?\d+)\s*@\s*(?:\$({_NUM})|%(\w+)|({_NUM})?\s*\(\s*%(\w+)\s*\))(?=\s|$)")
_ARM_ARG = re.compile(rf"\s*([-+]?\d+)\s*@\s*(?:\[\s*(\w+)\s*(?:,\s*({_NUM})\s*)?\]|([a-z]\w*)|({_NUM}))(?=\s|$)")


@dataclass(frozen=True)
class UsdtArg:
    """One decoded USDT argument.

    :ivar size: bytes (1, 2, 4 or 8).
    :ivar signed: sign-extend the value.
    :ivar kind: :class:`UsdtArgKind` (CONST, REG, REG_DEREF).
    :ivar register: the register name as written (``"eax"``, ``"rbp"``, ``"x0"``), or None for a constant.
    :ivar reg_offset: the register's offset in ``struct pt_regs`` (0 for a constant).
    :ivar offset: the constant (CONST) or the offset added to the register (REG_DEREF).
    :ivar spec: the spec text it came from.
    """

    size: int
    signed: bool
    kind: UsdtArgKind
    register: str | None
    reg_offset: int
    offset: int
    spec: str

    @property
    def bitshift(self) -> int:
        """``64 - 8 * size``: the shift that keeps the argument's bytes (and extends its sign)."""
        return 64 - 8 * self.size


def _size(text: str, spec: str) -> tuple[int, bool]:
    n = int(text)
    if abs(n) not in (1, 2, 4, 8):
        raise EBPFError(f"bad USDT argument {spec!r}: size {n} is not 1, 2, 4 or 8 (negative when signed)")
    return abs(n), n < 0


def _reg(name: str, regs: dict[str, int], spec: str, arch: str) -> int:
    off = regs.get(name.lower())
    if off is None:
        raise EBPFError(f"bad USDT argument {spec!r}: unknown {arch} register {name!r}")
    return off


def parse_usdt_args(text: str, arch: str = "x86_64") -> tuple[UsdtArg, ...]:
    """Decode a ``.note.stapsdt`` argument string into :class:`UsdtArg`s.

    x86_64 forms: ``-4@%eax`` (register), ``8@-8(%rbp)`` / ``-4@ -4(%rbp)`` / ``8@(%rax)``
    (memory at register + offset), ``4@$5`` (constant).  aarch64: ``-4@x0``, ``8@[sp, 16]``,
    ``4@[x1]``, ``4@5``.

    :param arch: ``"x86_64"`` or ``"aarch64"``.
    :returns: the arguments, in order (at most 12).
    :raises EBPFError: an unknown architecture, register or form (e.g. x86's
        base+index*scale addressing), a bad size, or more than 12 arguments.
    """
    if not isinstance(text, str):
        raise EBPFError(f"USDT argument specs must be a str, not {type(text).__name__}")
    regs = PT_REGS_OFFSETS.get(arch)
    if regs is None:
        raise EBPFError(f"USDT arguments on {arch!r} are not supported (x86_64, aarch64)")
    pattern = _X86_ARG if arch == "x86_64" else _ARM_ARG
    out: list[UsdtArg] = []
    pos = 0
    while text[pos:].strip():
        m = pattern.match(text, pos)
        if m is None:
            bad = text[pos:].split()[0] if text[pos:].split() else text[pos:]
            raise EBPFError(f"bad USDT argument spec {bad!r} in {text!r} ({arch})")
        spec = m.group(0).strip()
        size, signed = _size(m.group(1), spec)
        if arch == "x86_64":
            const, reg, off, base = m.group(2), m.group(3), m.group(4), m.group(5)
        else:
            base, off, reg, const = m.group(2), m.group(3), m.group(4), m.group(5)
        if const is not None:
            arg = UsdtArg(size, signed, UsdtArgKind.CONST, None, 0, int(const, 0), spec)
        elif reg is not None:
            arg = UsdtArg(size, signed, UsdtArgKind.REG, reg, _reg(reg, regs, spec, arch), 0, spec)
        else:
            arg = UsdtArg(size, signed, UsdtArgKind.REG_DEREF, base, _reg(base, regs, spec, arch),
                          int(off, 0) if off else 0, spec)
        out.append(arg)
        pos = m.end()
    if len(out) > USDT_MAX_ARGS:
        raise EBPFError(f"USDT probe has {len(out)} arguments; at most {USDT_MAX_ARGS} are supported")
    return tuple(out)


def encode_usdt_spec(args: tuple[UsdtArg, ...] | list[UsdtArg], cookie: int = 0) -> bytes:
    """``struct __bpf_usdt_spec`` (libbpf's layout, :data:`USDT_SPEC_SIZE` bytes) for ``args``.

    :param cookie: the user's cookie, readable in the program with :func:`usdt_cookie`.
    :raises EBPFError: more than 12 arguments or a cookie outside u64.
    """
    if len(args) > USDT_MAX_ARGS:
        raise EBPFError(f"at most {USDT_MAX_ARGS} USDT arguments, not {len(args)}")
    if not isinstance(cookie, int) or not 0 <= cookie < 1 << 64:
        raise EBPFError(f"USDT cookie must be a u64, not {cookie!r}")
    buf = bytearray(USDT_SPEC_SIZE)
    for i, a in enumerate(args):
        _ARG_SPEC.pack_into(buf, i * _ARG_SPEC.size, a.offset & (1 << 64) - 1, int(a.kind), a.reg_offset, a.signed,
                            a.bitshift)
    struct.pack_into("<Qh", buf, _COOKIE_OFF, cookie, len(args))
    return bytes(buf)


USDT_SPECS_MAP = "__bpf_usdt_spec"  # libbpf's __bpf_usdt_specs, as the kernel keeps it (15 characters)

# One UsdtSpecs per kernel map, so every program sharing an object's spec map shares its slot bookkeeping.
_BY_MAP_ID: weakref.WeakValueDictionary[int, UsdtSpecs] = weakref.WeakValueDictionary()


class UsdtSpecs:
    """The ``__bpf_usdt_specs`` ARRAY map and the allocation of its slots (spec ids).

    Identical specs share a slot (reference counted); :func:`~ebpf.events.tracing.attach_usdt`
    takes slots for the sites it attaches and gives them back when its link closes.
    :meth:`from_map` wraps the map an ELF object built with ``usdt.bpf.h`` defines.

    :param max_entries: how many distinct specs can be attached at once (libbpf: 256).
    :raises EBPFError: a bad size.  :raises BPFSyscallError: when the map cannot be created.
    """

    def __init__(self, max_entries: int = 256) -> None:
        """Create the spec map."""
        from ebpf.core.maps import create_array_map

        if not isinstance(max_entries, int) or isinstance(max_entries, bool) or max_entries <= 0:
            raise EBPFError(f"max_entries must be a positive int, not {max_entries!r}")
        # the kernel keeps 15 characters of a map name, as libbpf's __bpf_usdt_specs becomes
        self._setup(create_array_map(max_entries, value_size=USDT_SPEC_SIZE, name=USDT_SPECS_MAP), owns=True)

    def _setup(self, the_map: Any, owns: bool) -> None:
        self.map = the_map
        self._owns = owns
        self._closed = False
        self._slots: dict[bytes, tuple[int, int]] = {}  # spec bytes -> (id, references)
        self._free = list(range(the_map.max_entries - 1, -1, -1))
        try:
            _BY_MAP_ID[the_map.info().id] = self
        except EBPFError:
            pass  # no id to share by (the map still works for this wrapper)

    @classmethod
    def from_map(cls, the_map: Any) -> UsdtSpecs:
        """The :class:`UsdtSpecs` over an existing spec map, e.g. the ``__bpf_usdt_specs`` map of an
        object built with ``usdt.bpf.h`` (``collection.maps["__bpf_usdt_specs"]``).

        The map is borrowed, not owned: :meth:`close` leaves it open.  Every call for the same
        kernel map returns the same object while it is in use, so programs sharing the map share
        its slots.  The map's slots are taken to be free (as they are in a freshly loaded object).

        :param the_map: an open ARRAY map with 4-byte keys and ``struct __bpf_usdt_spec`` values
            (:data:`USDT_SPEC_SIZE` bytes).
        :raises EBPFError: not a map, closed, or not that layout (checked before any syscall).
        """
        from ebpf.core.maps import Map
        from ebpf.core.types import MapType

        if not isinstance(the_map, Map):
            raise EBPFError(f"UsdtSpecs.from_map takes a Map, not {type(the_map).__name__}")
        if the_map.closed:
            raise EBPFError(f"UsdtSpecs.from_map: map {the_map.name!r} is closed")
        layout = (the_map.map_type, the_map.key_size, the_map.value_size)
        if layout != (MapType.ARRAY, 4, USDT_SPEC_SIZE):
            raise EBPFError(f"map {the_map.name!r} is not a USDT spec map: need an array with 4-byte keys and "
                            f"{USDT_SPEC_SIZE}-byte values (struct __bpf_usdt_spec), not "
                            f"{the_map.map_type.lower_name} key {the_map.key_size} value {the_map.value_size}")
        known = _BY_MAP_ID.get(the_map.info().id)
        if known is not None and not known.closed:
            return known
        specs = cls.__new__(cls)
        specs._setup(the_map, owns=False)
        return specs

    @classmethod
    def of_program(cls, program: Any) -> UsdtSpecs | None:
        """The :class:`UsdtSpecs` over the spec map ``program`` uses (a map named ``__bpf_usdt_specs``,
        as ``usdt.bpf.h`` declares, kept by the kernel as ``__bpf_usdt_spec``), or None.

        :raises EBPFError: when that map does not have the spec layout.
        """
        spec = getattr(program, "spec", None)
        for m in getattr(spec, "maps", None) or ():
            if getattr(m, "name", None) == USDT_SPECS_MAP and not getattr(m, "closed", True):
                return cls.from_map(m)
        return None

    def acquire(self, spec: bytes) -> int:
        """The slot holding ``spec`` (written to the map when new); one more reference to it.

        :raises EBPFError: when every slot is taken or the map is closed.
        """
        if self.closed:
            raise EBPFError("UsdtSpecs is closed")
        if spec in self._slots:
            sid, refs = self._slots[spec]
            self._slots[spec] = (sid, refs + 1)
            return sid
        if not self._free:
            raise EBPFError(f"all {self.map.max_entries} USDT spec slots are in use (UsdtSpecs(max_entries=...))")
        sid = self._free[-1]
        self.map.update_bytes(struct.pack("<I", sid), spec)
        self._free.pop()
        self._slots[spec] = (sid, 1)
        return sid

    def release(self, sid: int) -> None:
        """Drop a reference taken by :meth:`acquire`; the slot is free once none is left."""
        for spec, (s, refs) in list(self._slots.items()):
            if s == sid:
                if refs > 1:
                    self._slots[spec] = (s, refs - 1)
                else:
                    del self._slots[spec]
                    self._free.append(s)
                return

    def in_use(self) -> dict[int, bytes]:
        """The slots in use and their spec bytes."""
        return {sid: spec for spec, (sid, _) in self._slots.items()}

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called or the map is closed."""
        return self._closed or bool(self.map.closed)

    def close(self) -> None:
        """Close the map when this object created it (programs that use it keep their own reference);
        a map given to :meth:`from_map` stays open."""
        self._closed = True
        for key, value in list(_BY_MAP_ID.items()):
            if value is self:
                del _BY_MAP_ID[key]
        if self._owns:
            self.map.close()

    def __enter__(self) -> UsdtSpecs:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def release_later(owner: object, specs: UsdtSpecs, ids: list[int]) -> weakref.finalize[Any, Any]:
    """Give ``ids`` back to ``specs`` when ``owner`` is collected, or when the returned finalizer is called."""
    return weakref.finalize(owner, _release_ids, weakref.ref(specs), ids)


def _release_ids(specs_ref: Any, ids: list[int]) -> None:
    specs = specs_ref()
    if specs is not None:
        for sid in ids:
            specs.release(sid)


_SCRATCH = (asm.R0, asm.R1, asm.R2, asm.R3, asm.R4, asm.R5, asm.R10)


def _check_regs(ctx: Any, spec: Any, dst: Any) -> None:
    if ctx in _SCRATCH or spec in _SCRATCH or ctx == spec:
        raise EBPFError("usdt_arg: ctx and spec must be two different callee-saved registers (R6-R9)")
    if dst in (asm.R1, asm.R2, asm.R10, ctx, spec):
        raise EBPFError("usdt_arg: dst must not be R1, R2, R10, ctx or spec")


def usdt_arg(n: int, specs: UsdtSpecs | Any, *, dst: Any = asm.R0, ctx: Any = asm.R6, spec: Any = asm.R7,
             stack: int = -8, fail: str, prefix: str | None = None) -> list[Any]:
    """Instructions that read USDT argument ``n`` of the current probe hit into ``dst``.

    What ``bpf_usdt_arg()`` of libbpf's ``usdt.bpf.h`` does: ``bpf_get_attach_cookie(ctx)``
    is the spec id, the spec is looked up in the ``__bpf_usdt_specs`` map, then by the
    argument's kind: the constant, the register read from ``struct pt_regs``
    (``bpf_probe_read_kernel``), or that register plus an offset read from user memory
    (``bpf_probe_read_user``); finally shifted left then right (arithmetic when signed) by
    ``64 - 8 * size`` so only the argument's bytes remain, sign-extended when signed.

    R0-R5 are clobbered; ``ctx`` must hold the program's context (``struct pt_regs *``) and
    is kept; ``spec`` is overwritten with the spec's address; 8 bytes of stack at ``stack``
    are used.  The program must be GPL (``bpf_probe_read_*``).

    :param n: the argument index (0-11).
    :param specs: the :class:`UsdtSpecs` (or its map) given to ``attach_usdt``.
    :param fail: the label jumped to when there is no spec, no argument ``n`` or a read fails.
    :param prefix: label prefix (default ``usdt<n>``): give each use in one program its own.
    :returns: the instructions and labels (to splice into a program list).
    :raises EBPFError: bad ``n`` or registers.

    Requires Linux >= 5.15 (BPF cookies for uprobes).
    """
    if not isinstance(n, int) or isinstance(n, bool) or not 0 <= n < USDT_MAX_ARGS:
        raise EBPFError(f"USDT argument index must be 0-{USDT_MAX_ARGS - 1}, not {n!r}")
    _check_regs(ctx, spec, dst)
    the_map = specs.map if isinstance(specs, UsdtSpecs) else specs
    p = prefix or f"usdt{n}"
    a = n * _ARG_SPEC.size
    R0, R1, R2, R3, R10 = asm.R0, asm.R1, asm.R2, asm.R3, asm.R10
    read_reg = [asm.mov64(R1, R10), asm.add64(R1, stack), asm.mov64(R2, 8), asm.ldx_mem("h", R3, spec, a + 12),
                asm.add64(R3, ctx), asm.call("probe_read_kernel"), asm.jne(R0, 0, fail)]
    return [
        asm.mov64(R1, ctx), asm.call("get_attach_cookie"), asm.stx_mem("w", R10, R0, stack),
        asm.ld_map_fd(R1, the_map), asm.mov64(R2, R10), asm.add64(R2, stack), asm.call("map_lookup_elem"),
        asm.jeq(R0, 0, fail), asm.mov64(spec, R0),
        asm.ldx_mem("h", R1, spec, _CNT_OFF), asm.jle(R1, n, fail),  # arg_cnt <= n: no such argument
        asm.ldx_mem("w", R1, spec, a + 8),
        asm.jeq(R1, int(UsdtArgKind.REG), f"{p}_reg"),
        asm.jeq(R1, int(UsdtArgKind.REG_DEREF), f"{p}_deref"),
        asm.jne(R1, int(UsdtArgKind.CONST), fail),
        asm.ldx_mem("dw", R1, spec, a), asm.stx_mem("dw", R10, R1, stack), asm.jmp_a(f"{p}_shift"),
        asm.label(f"{p}_reg"), *read_reg, asm.jmp_a(f"{p}_shift"),
        asm.label(f"{p}_deref"), *read_reg,
        asm.ldx_mem("dw", R3, R10, stack), asm.ldx_mem("dw", R1, spec, a), asm.add64(R3, R1),
        asm.mov64(R1, R10), asm.add64(R1, stack), asm.mov64(R2, 8), asm.call("probe_read_user"),
        asm.jne(R0, 0, fail),
        asm.label(f"{p}_shift"),
        asm.ldx_mem("dw", dst, R10, stack), asm.ldx_mem("b", R1, spec, a + 15), asm.lsh64(dst, R1),
        asm.ldx_mem("b", R2, spec, a + 14), asm.jeq(R2, 0, f"{p}_unsigned"),
        asm.arsh64(dst, R1), asm.jmp_a(f"{p}_done"),
        asm.label(f"{p}_unsigned"), asm.rsh64(dst, R1),
        asm.label(f"{p}_done"),
    ]


def usdt_cookie(specs: UsdtSpecs | Any, *, dst: Any = asm.R0, ctx: Any = asm.R6, stack: int = -8,
                fail: str) -> list[Any]:
    """Instructions that load the cookie given to ``attach_usdt(..., cookie=)`` into ``dst``
    (libbpf's ``bpf_usdt_cookie()``).  Clobbers R0-R5; jumps to ``fail`` when there is no spec.

    Requires Linux >= 5.15.
    """
    if ctx in _SCRATCH or dst in (asm.R1, asm.R2, asm.R10, ctx):
        raise EBPFError("usdt_cookie: ctx must be R6-R9 and dst not R1, R2, R10 or ctx")
    the_map = specs.map if isinstance(specs, UsdtSpecs) else specs
    R0, R1, R2, R10 = asm.R0, asm.R1, asm.R2, asm.R10
    return [
        asm.mov64(R1, ctx), asm.call("get_attach_cookie"), asm.stx_mem("w", R10, R0, stack),
        asm.ld_map_fd(R1, the_map), asm.mov64(R2, R10), asm.add64(R2, stack), asm.call("map_lookup_elem"),
        asm.jeq(R0, 0, fail), asm.ldx_mem("dw", dst, R0, _COOKIE_OFF),
    ]
