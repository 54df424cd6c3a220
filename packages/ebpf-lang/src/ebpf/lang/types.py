"""The language's types: explicit-width integers, fixed arrays, structs and (compiler-internal) pointers.

``u8 .. u64`` and ``i8 .. i64`` are objects usable three ways: as annotations (``x: u32 = 0``,
struct fields), as casts inside kernel code (``u32(x)``), and indexed for arrays (``u8[16]``,
``char[16]`` for strings that ``ebpf map dump`` shows as text).  Structs are classes deriving
from :class:`Struct`; their layout is C's (natural alignment), so the same class decodes the
records user space reads back (``Event.decode(data)``).
"""

from __future__ import annotations

import inspect
import struct as _struct
from typing import Any, ClassVar

from ebpf.core.btf import Builder, IntEncoding
from ebpf.core.errors import EBPFError
from ebpf.core.records import dataclass
from ebpf.lang.errors import declaration_error

__all__ = [
    "LangType", "IntType", "KPtrType", "ArrayType", "StructType", "PtrType", "Struct",
    "u8", "u16", "u32", "u64", "i8", "i16", "i32", "i64", "char", "BOOL",
    "BtfTypes", "type_of_annotation",
]


class LangType:
    """Base of every type the compiler knows."""

    size: int = 0
    align: int = 1

    def __getitem__(self, n: int) -> ArrayType:
        return ArrayType(self, n)

    def btf(self, types: BtfTypes) -> int:
        """This type's id in ``types`` (added on first use)."""
        raise NotImplementedError


class IntType(LangType):
    """An integer of ``size`` bytes; ``signed`` selects arithmetic shifts and signed compares."""

    def __init__(self, name: str, size: int, signed: bool, c_name: str = "") -> None:
        """``c_name`` is the BTF name (``"char"`` for ``char``), defaulting to ``name``."""
        self.name = name
        self.size = size
        self.align = size
        self.signed = signed
        self.c_name = c_name or ({"i": "s"}.get(name[0], name[0]) + name[1:])
        self.bits = size * 8

    def __call__(self, value: int) -> int:
        """In user space: ``value`` wrapped to this width (in kernel code the compiler casts)."""
        value &= (1 << self.bits) - 1
        if self.signed and value >> (self.bits - 1):
            value -= 1 << self.bits
        return value

    def fits(self, value: int) -> bool:
        """Whether ``value`` is representable."""
        if self.signed:
            return -(1 << (self.bits - 1)) <= value < (1 << (self.bits - 1))
        return 0 <= value < (1 << self.bits)

    def wrap(self, value: int) -> int:
        """``value`` reduced to this type (two's complement)."""
        return self(value)

    def btf(self, types: BtfTypes) -> int:
        """See :meth:`LangType.btf`."""
        return types.int_id(self)

    def __repr__(self) -> str:
        return self.name


u8 = IntType("u8", 1, False)
u16 = IntType("u16", 2, False)
u32 = IntType("u32", 4, False)
u64 = IntType("u64", 8, False)
i8 = IntType("i8", 1, True)
i16 = IntType("i16", 2, True)
i32 = IntType("i32", 4, True)
i64 = IntType("i64", 8, True)
#: One byte of text: ``char[16]`` holds a NUL-terminated string.
char = IntType("char", 1, True, "char")
#: The type of comparisons (0 or 1).
BOOL = u64


class KPtrType(IntType):
    """The address of a kernel struct (a ``u64``): its fields are read with ``bpf_probe_read_kernel``.

    ``target`` is anything with ``layout() -> StructType`` (a context type, or a BTF struct
    reached through a pointer field).
    """

    def __init__(self, target: Any) -> None:
        """A ``u64`` that knows what it points at."""
        super().__init__("u64", 8, False, "u64")
        self.target = target

    def __repr__(self) -> str:
        return f"kernel {getattr(self.target, 'name', '?')} *"


@dataclass(eq=False)
class ArrayType(LangType):
    """``elem[n]``: ``n`` elements laid out back to back."""

    elem: LangType
    n: int

    def __post_init__(self) -> None:
        if not isinstance(self.n, int) or isinstance(self.n, bool) or self.n <= 0:
            raise declaration_error(f"array length must be a positive int, not {self.n!r}")
        self.size = self.elem.size * self.n
        self.align = self.elem.align

    def btf(self, types: BtfTypes) -> int:
        """See :meth:`LangType.btf`."""
        return types.array_id(self)

    def __repr__(self) -> str:
        return f"{self.elem!r}[{self.n}]"


@dataclass(eq=False)
class StructType(LangType):
    """The layout of a :class:`Struct` subclass: ``fields`` are ``(name, type, offset)``."""

    name: str
    fields: list[tuple[str, LangType, int]]
    size_: int
    align_: int
    cls: type | None = None

    def __post_init__(self) -> None:
        self.size = self.size_
        self.align = self.align_

    def field(self, name: str) -> tuple[LangType, int] | None:
        """``(type, offset)`` of field ``name``, or None."""
        for fname, ftype, off in self.fields:
            if fname == name:
                return ftype, off
        return None

    def btf(self, types: BtfTypes) -> int:
        """See :meth:`LangType.btf`."""
        return types.struct_id(self)

    def __repr__(self) -> str:
        return self.name


@dataclass(eq=False)
class PtrType(LangType):
    """A pointer the compiler tracks: to ``target`` in ``space``; ``nullable`` until checked.

    ``space`` is where it points: ``"map"`` (a map value), ``"packet"``, ``"ringbuf"``,
    ``"stack"``, ``"ctx"``.
    """

    target: LangType
    space: str
    nullable: bool = False

    def __post_init__(self) -> None:
        self.size = 8
        self.align = 8

    def btf(self, types: BtfTypes) -> int:
        """See :meth:`LangType.btf`."""
        return types.builder.add_pointer(self.target.btf(types))

    def __repr__(self) -> str:
        return f"{self.target!r} *{'?' if self.nullable else ''}"


def type_of_annotation(value: object) -> LangType | None:
    """The :class:`LangType` an annotation names (an int type, array, or Struct class), else None."""
    if isinstance(value, LangType):
        return value
    if isinstance(value, type) and issubclass(value, Struct) and value is not Struct:
        return value.__lang_type__
    return None


def _layout(name: str, hints: dict[str, Any]) -> StructType:
    fields: list[tuple[str, LangType, int]] = []
    off, align = 0, 1
    for fname, ann in hints.items():
        if fname.startswith("__"):
            continue
        ft = type_of_annotation(ann)
        if ft is None:
            raise declaration_error(f"struct {name} field {fname!r}: {ann!r} is not a field type "
                            f"(use u8..u64, i8..i64, char[N], T[N] or a Struct class)")
        off = (off + ft.align - 1) // ft.align * ft.align
        fields.append((fname, ft, off))
        off += ft.size
        align = max(align, ft.align)
    if not fields:
        raise declaration_error(f"struct {name} has no fields")
    size = (off + align - 1) // align * align
    return StructType(name, fields, size, align)


class Struct:
    """Base class of structs: ``class Event(Struct): pid: u32; comm: char[16]``.

    In kernel code, ``Event()`` is a zeroed struct on the stack; fields read and write as
    attributes.  In user space, ``Event.decode(data)`` turns a record into an instance with
    the same attributes (``char[N]`` fields as ``bytes`` up to the first NUL), and
    ``Event.size`` is its size in bytes.
    """

    __lang_type__: ClassVar[StructType]
    size: ClassVar[int]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        hints = inspect.get_annotations(cls, eval_str=True)
        st = _layout(cls.__name__, hints)
        st.cls = cls
        cls.__lang_type__ = st
        cls.size = st.size

    def __init__(self, **values: Any) -> None:
        """A user-space instance with the given field values (the others 0 / empty)."""
        st = type(self).__lang_type__
        for fname, ftype, _ in st.fields:
            setattr(self, fname, values.pop(fname, b"" if isinstance(ftype, ArrayType) else 0))
        if values:
            raise EBPFError(f"{st.name} has no field(s) {', '.join(values)}")

    @classmethod
    def decode(cls, data: bytes | bytearray | memoryview) -> Any:
        """An instance holding the fields of ``data`` (at least ``size`` bytes)."""
        raw = bytes(data)
        if len(raw) < cls.size:
            raise EBPFError(f"{cls.__name__} needs {cls.size} bytes, got {len(raw)}")
        obj = cls.__new__(cls)
        for fname, ftype, off in cls.__lang_type__.fields:
            setattr(obj, fname, _decode(ftype, raw, off))
        return obj

    def encode(self) -> bytes:
        """The instance's bytes, laid out as the kernel sees them."""
        st = type(self).__lang_type__
        out = bytearray(st.size)
        for fname, ftype, off in st.fields:
            _encode(ftype, getattr(self, fname), out, off)
        return bytes(out)

    def __repr__(self) -> str:
        st = type(self).__lang_type__
        return f"{st.name}({', '.join(f'{f}={getattr(self, f, None)!r}' for f, _, _ in st.fields)})"

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and self.encode() == other.encode()  # type: ignore[attr-defined,unused-ignore]

    __hash__ = None  # type: ignore[assignment]


_FMT = {1: "b", 2: "h", 4: "i", 8: "q"}


def _decode(t: LangType, raw: bytes, off: int) -> Any:
    if isinstance(t, IntType):
        code = _FMT[t.size] if t.signed else _FMT[t.size].upper()
        return _struct.unpack_from("<" + code, raw, off)[0]
    if isinstance(t, ArrayType):
        chunk = raw[off: off + t.size]
        if isinstance(t.elem, IntType) and t.elem.size == 1:
            return chunk.split(b"\0", 1)[0] if t.elem is char else chunk
        return [_decode(t.elem, raw, off + i * t.elem.size) for i in range(t.n)]
    if isinstance(t, StructType) and t.cls is not None:
        return t.cls.decode(raw[off: off + t.size])  # type: ignore[attr-defined]
    raise EBPFError(f"cannot decode {t!r}")


def _encode(t: LangType, value: Any, out: bytearray, off: int) -> None:
    if isinstance(t, IntType):
        out[off: off + t.size] = (int(value) & ((1 << t.bits) - 1)).to_bytes(t.size, "little")
    elif isinstance(t, ArrayType) and isinstance(value, (bytes, bytearray, str)):
        data = value.encode() if isinstance(value, str) else bytes(value)
        out[off: off + t.size] = data[: t.size].ljust(t.size, b"\0")
    elif isinstance(t, ArrayType):
        for i, v in enumerate(value):
            _encode(t.elem, v, out, off + i * t.elem.size)
    elif isinstance(t, StructType):
        out[off: off + t.size] = value.encode()


class BtfTypes:
    """The BTF types of one compiled module, built once each (ints, arrays, structs)."""

    def __init__(self, builder: Builder | None = None) -> None:
        """Start from ``builder`` (or a new one)."""
        self.builder = builder or Builder()
        self._ints: dict[str, int] = {}
        self._arrays: dict[tuple[int, int], int] = {}
        self._structs: dict[int, int] = {}

    def int_id(self, t: IntType) -> int:
        """The INT named after ``t``'s C name."""
        tid = self._ints.get(t.c_name)
        if tid is None:
            enc = IntEncoding.SIGNED if t.signed else IntEncoding.NONE
            tid = self._ints[t.c_name] = self.builder.add_int(t.c_name, t.size, enc)
        return tid

    def array_id(self, t: ArrayType) -> int:
        """An ARRAY of ``t.n`` elements (index type ``unsigned int``)."""
        elem = t.elem.btf(self)
        key = (elem, t.n)
        tid = self._arrays.get(key)
        if tid is None:
            index = self.int_id(IntType("u32", 4, False, "unsigned int"))
            tid = self._arrays[key] = self.builder.add_array(elem, t.n, index)
        return tid

    def struct_id(self, t: StructType) -> int:
        """A STRUCT with ``t``'s members at their offsets."""
        tid = self._structs.get(id(t))
        if tid is None:
            from ebpf.core.btf import Member
            from ebpf.core.btf import Struct as BtfStruct

            members = tuple(Member(fname, ft.btf(self), off * 8) for fname, ft, off in t.fields)
            tid = self._structs[id(t)] = self.builder.add(BtfStruct(0, t.name, t.size, members))
        return tid
