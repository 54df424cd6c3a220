"""Key, value and event codecs: Python objects <-> the bytes a BPF map or event holds.

A codec has ``size``, ``encode(obj) -> bytes`` and ``decode(buf) -> obj``:

- ``u8 u16 u32 u64 i8 i16 i32 i64`` -- integers in host byte order (what BPF programs see);
- ``struct(fmt)`` -- a :mod:`struct` format (native alignment by default, as C lays out
  a struct); one field decodes to a scalar, several to a tuple;
- ``ctype(Structure)`` -- a :class:`ctypes.Structure` (or any ctypes type);
- ``raw(size)`` -- bytes passthrough of exactly ``size`` bytes (``bytes`` as a codec means the same).

Maps pick a default codec when none is given: key/value sizes 4 and 8 are ``u32`` / ``u64``
ints, every other size is raw bytes (:func:`default_codec`).

Bad input (wrong type, out of range, wrong length) raises :class:`~ebpf.core.errors.EBPFError`,
never ``struct.error`` or ``IndexError``.
"""

from __future__ import annotations

import abc
import collections
import ctypes
import re
import struct as _struct
from collections.abc import Callable, Sequence
from typing import Any, Literal

from ebpf.core.errors import EBPFError

__all__ = [
    "Codec",
    "IntCodec",
    "StructCodec",
    "CTypeCodec",
    "RawCodec",
    "u8",
    "u16",
    "u32",
    "u64",
    "i8",
    "i16",
    "i32",
    "i64",
    "struct",
    "ctype",
    "raw",
    "default_codec",
    "resolve_codec",
    "EventParser",
    "EventSerializer",
    "make_event_parser",
    "make_event_serializer",
]


IntFormat = Literal["B", "H", "I", "Q", "b", "h", "i", "q"]


class Codec(abc.ABC):
    """Base of all codecs: ``size`` bytes <-> one Python object."""

    size: int = 0

    @abc.abstractmethod
    def encode(self, obj: Any) -> bytes:
        """Encode ``obj`` into exactly :attr:`size` bytes.

        :raises EBPFError: when ``obj`` has the wrong type or is out of range.
        """

    @abc.abstractmethod
    def decode(self, buf: bytes | bytearray | memoryview) -> Any:
        """Decode exactly :attr:`size` bytes.

        :raises EBPFError: when ``buf`` has the wrong length.
        """

    def __deepcopy__(self, memo: dict[int, Any]) -> Codec:
        return self  # codecs hold no per-use state: a copied spec shares them

    def _check_len(self, buf: bytes | bytearray | memoryview) -> None:
        if len(buf) != self.size:
            raise EBPFError(f"{self!r}: expected {self.size} bytes, got {len(buf)}")


class StructCodec(Codec):
    """A :mod:`struct` format; one field decodes to a scalar, several to a tuple.

    The default ``@`` byte order is native with C alignment but, unlike C, no trailing
    padding: append e.g. ``0Q`` or ``4x`` to match a C struct's size.
    """

    def __init__(self, fmt: str) -> None:
        try:
            self.struct = _struct.Struct(fmt)
        except (_struct.error, TypeError) as exc:
            raise EBPFError(f"bad struct format {fmt!r}: {exc}") from None
        self.format = fmt
        self.size = self.struct.size
        # One field means a scalar value, several a tuple.
        probe = self.struct.unpack(bytes(self.size))
        self.fields = len(probe)
        self.single = self.fields == 1

    def __repr__(self) -> str:
        return f"struct({self.format!r})"

    def encode(self, obj: Any) -> bytes:
        """Encode ``obj`` into exactly :attr:`size` bytes (:raises EBPFError: when it does not fit)."""
        try:
            if self.single:
                return self.struct.pack(obj)
            return self.struct.pack(*obj)
        except (_struct.error, TypeError, OverflowError, ValueError) as exc:
            raise EBPFError(f"{self!r} cannot encode {obj!r}: {exc}") from None

    def decode(self, buf: bytes | bytearray | memoryview) -> Any:
        """Decode exactly :attr:`size` bytes (:raises EBPFError: on another length)."""
        self._check_len(buf)
        values = self.struct.unpack(buf)
        return values[0] if self.single else values


class IntCodec(StructCodec):
    """A fixed-width integer in host byte order."""

    _CTYPES = {
        "B": ctypes.c_uint8,
        "H": ctypes.c_uint16,
        "I": ctypes.c_uint32,
        "Q": ctypes.c_uint64,
        "b": ctypes.c_int8,
        "h": ctypes.c_int16,
        "i": ctypes.c_int32,
        "q": ctypes.c_int64,
    }

    def __init__(self, name: str, code: IntFormat) -> None:
        super().__init__("=" + code)
        self.name = name
        self.code: IntFormat = code
        self.signed = code.islower()
        self.ctype: type[ctypes._SimpleCData[int]] = self._CTYPES[code]
        bits = self.size * 8
        self.min = -(1 << (bits - 1)) if self.signed else 0
        self.max = (1 << (bits - 1)) - 1 if self.signed else (1 << bits) - 1

    def __repr__(self) -> str:
        return self.name

    def encode(self, obj: Any) -> bytes:
        """Encode ``obj`` into exactly :attr:`size` bytes (:raises EBPFError: when it does not fit)."""
        if isinstance(obj, bool) or not isinstance(obj, int):
            try:
                obj = obj.__index__()
            except AttributeError:
                raise EBPFError(f"{self.name} expects an int, got {type(obj).__name__} {obj!r}") from None
        return super().encode(obj)


class CTypeCodec(Codec):
    """A ctypes type (usually a :class:`ctypes.Structure`)."""

    def __init__(self, ctype_: type[Any]) -> None:
        try:
            self.size = ctypes.sizeof(ctype_)
        except TypeError:
            raise EBPFError(f"ctype() needs a ctypes type, got {ctype_!r}") from None
        self.ctype = ctype_

    def __repr__(self) -> str:
        return f"ctype({self.ctype.__name__})"

    def encode(self, obj: Any) -> bytes:
        """Encode ``obj`` into exactly :attr:`size` bytes (:raises EBPFError: when it does not fit)."""
        if isinstance(obj, self.ctype):
            return bytes(memoryview(obj).cast("B"))
        if isinstance(obj, (bytes, bytearray, memoryview)) and len(obj) == self.size:
            return bytes(obj)
        raise EBPFError(f"{self!r} expects a {self.ctype.__name__} instance, got {type(obj).__name__}")

    def decode(self, buf: bytes | bytearray | memoryview) -> Any:
        """Decode exactly :attr:`size` bytes (:raises EBPFError: on another length)."""
        self._check_len(buf)
        return self.ctype.from_buffer_copy(buf)


class RawCodec(Codec):
    """Bytes passthrough of exactly ``size`` bytes."""

    def __init__(self, size: int) -> None:
        if not isinstance(size, int) or size < 0:
            raise EBPFError(f"raw() needs a size >= 0, got {size!r}")
        self.size = size

    def __repr__(self) -> str:
        return f"raw({self.size})"

    def encode(self, obj: Any) -> bytes:
        """Encode ``obj`` into exactly :attr:`size` bytes (:raises EBPFError: when it does not fit)."""
        if not isinstance(obj, (bytes, bytearray, memoryview)):
            raise EBPFError(f"{self!r} expects bytes, got {type(obj).__name__}")
        if len(obj) != self.size:
            raise EBPFError(f"{self!r} expects exactly {self.size} bytes, got {len(obj)}")
        return bytes(obj)

    def decode(self, buf: bytes | bytearray | memoryview) -> Any:
        """Decode exactly :attr:`size` bytes (:raises EBPFError: on another length)."""
        self._check_len(buf)
        return bytes(buf)


u8 = IntCodec("u8", "B")
u16 = IntCodec("u16", "H")
u32 = IntCodec("u32", "I")
u64 = IntCodec("u64", "Q")
i8 = IntCodec("i8", "b")
i16 = IntCodec("i16", "h")
i32 = IntCodec("i32", "i")
i64 = IntCodec("i64", "q")

_INTS: dict[str, IntCodec] = {c.name: c for c in (u8, u16, u32, u64, i8, i16, i32, i64)}


def struct(fmt: str) -> StructCodec:
    """A codec for the :mod:`struct` format ``fmt``.

    :raises EBPFError: when ``fmt`` is not a valid format.
    """
    return StructCodec(fmt)


def ctype(ctype_: type[Any]) -> CTypeCodec:
    """A codec for a ctypes type (``ctypes.Structure`` subclass, array, scalar)."""
    return CTypeCodec(ctype_)


def raw(size: int) -> RawCodec:
    """A bytes passthrough codec of exactly ``size`` bytes."""
    return RawCodec(size)


def default_codec(size: int) -> Codec:
    """The codec a map uses when none is given: ``u32`` for 4 bytes, ``u64`` for 8, else raw bytes."""
    if size == 4:
        return u32
    if size == 8:
        return u64
    return RawCodec(size)


def resolve_codec(spec: object, size: int, what: str = "value") -> Codec:
    """Turn a codec argument into a :class:`Codec` for ``size`` bytes and check the size.

    ``spec`` may be None (the default codec), a :class:`Codec`, ``bytes`` (raw), an int
    name (``"u32"``), a :class:`struct.Struct`, or a ctypes type.

    :raises EBPFError: when ``spec`` is unusable or its size is not ``size``.
    """
    codec: Codec
    if spec is None:
        return default_codec(size)
    if isinstance(spec, Codec):
        codec = spec
    elif spec is bytes:
        codec = RawCodec(size)
    elif isinstance(spec, str) and spec in _INTS:
        codec = _INTS[spec]
    elif isinstance(spec, _struct.Struct):
        codec = StructCodec(spec.format)
    elif isinstance(spec, type) and issubclass(spec, (ctypes.Structure, ctypes.Union, ctypes.Array, ctypes._SimpleCData)):
        codec = CTypeCodec(spec)
    else:
        raise EBPFError(f"unusable {what} codec {spec!r}: give a Codec, 'u32'..., bytes, a struct.Struct or a ctypes type")
    if codec.size != size:
        raise EBPFError(f"{what} codec {codec!r} is {codec.size} bytes but the map's {what} size is {size}")
    return codec


# ---------------------------------------------------------------------------------------------
# Event records

_FIELD_FORMATS = {"u8": "B", "u16": "H", "u32": "I", "u64": "Q", "i8": "b", "i16": "h", "i32": "i", "i64": "q",
                  "char": "c", "bool": "?", "f32": "f", "f64": "d"}
_ARRAY_RE = re.compile(r"^\s*(char|u8)\s*\[\s*(\d+)\s*\]\s*$")

FieldSpec = str | tuple[str, str]


def _compile(spec: Sequence[FieldSpec], packed: bool) -> tuple[str, tuple[str, ...] | None, tuple[int, ...]]:
    """Struct format, field names (or None) and the indexes of ``char[N]`` fields."""
    if isinstance(spec, (str, bytes)) or not isinstance(spec, Sequence) or not spec:
        raise EBPFError(f"event spec must be a non-empty list of types or (name, type) pairs, got {spec!r}")
    names: list[str] = []
    parts: list[str] = []
    strings: list[int] = []
    max_align = 1
    for i, field in enumerate(spec):
        if isinstance(field, tuple) and len(field) == 2 and all(isinstance(x, str) for x in field):
            name, ftype = field
            names.append(name)
        elif isinstance(field, str):
            ftype = field
        else:
            raise EBPFError(f"event field {i}: expected a type name or (name, type), got {field!r}")
        match = _ARRAY_RE.match(ftype)
        if match:
            parts.append(f"{int(match[2])}s")
            if match[1] == "char":
                strings.append(i)
            continue
        code = _FIELD_FORMATS.get(ftype.strip())
        if code is None:
            raise EBPFError(f"event field {i}: unknown type {ftype!r}; expected one of {sorted(_FIELD_FORMATS)} or char[N]")
        parts.append(code)
        max_align = max(max_align, _struct.calcsize(code))
    if names and len(names) != len(spec):
        raise EBPFError("event spec: name every field or none")
    if names and len(set(names)) != len(names):
        raise EBPFError(f"event spec: duplicate field names in {names}")
    fmt = ("=" if packed else "@") + "".join(parts)
    if not packed:
        # C pads the struct to a multiple of its largest member's alignment.
        size = _struct.calcsize(fmt)
        fmt += "x" * (-size % max_align)
    return fmt, (tuple(names) if names else None), tuple(strings)


class EventParser:
    """Callable ``bytes -> tuple`` (or a named record) built by :func:`make_event_parser`."""

    def __init__(self, spec: Sequence[FieldSpec], packed: bool = False) -> None:
        fmt, names, strings = _compile(spec, packed)
        self.struct = _struct.Struct(fmt)
        self.format = fmt
        self.size = self.struct.size
        self.names = names
        self.record: Callable[..., Any] | None = None
        if names is not None:
            try:
                self.record = getattr(collections.namedtuple("Event", names), "_make")  # noqa: B009
            except ValueError as exc:
                raise EBPFError(f"event spec: bad field names {names}: {exc}") from None
        self._strings = strings
        self._unpack = self.struct.unpack_from

    def __call__(self, data: bytes | bytearray | memoryview) -> Any:
        """Decode one event from the start of ``data`` (longer data is fine: perf pads records).

        :raises EBPFError: when ``data`` is shorter than :attr:`size`.
        """
        if len(data) < self.size:
            raise EBPFError(f"event record of {len(data)} bytes is shorter than the {self.size} bytes expected")
        values = self._unpack(data)
        if self._strings:
            items = list(values)
            for i in self._strings:
                items[i] = items[i].split(b"\0", 1)[0].decode(errors="replace")
            values = tuple(items)
        return self.record(values) if self.record is not None else values


class EventSerializer:
    """Callable ``tuple -> bytes`` built by :func:`make_event_serializer` (the parser's inverse)."""

    def __init__(self, spec: Sequence[FieldSpec], packed: bool = False) -> None:
        fmt, names, strings = _compile(spec, packed)
        self.struct = _struct.Struct(fmt)
        self.format = fmt
        self.size = self.struct.size
        self.names = names
        self._strings = strings
        self._lengths = {i: _struct.calcsize("=" + p) for i, p in enumerate(_split(fmt))}

    def __call__(self, record: Sequence[Any] | dict[str, Any]) -> bytes:
        """Encode one record (a tuple, a named record, or a dict when fields are named).

        :raises EBPFError: on a wrong field count, type, range, or a string too long for its ``char[N]``.
        """
        if isinstance(record, dict):
            if self.names is None:
                raise EBPFError("a dict record needs a spec with field names")
            try:
                values = [record[n] for n in self.names]
            except KeyError as exc:
                raise EBPFError(f"event record is missing field {exc.args[0]!r}") from None
        else:
            values = list(record)
        n = (self.names and len(self.names)) or len(self._lengths)
        if len(values) != n:
            raise EBPFError(f"event record has {len(values)} fields, the spec has {n}")
        for i in self._strings:
            text = values[i]
            data = text.encode() if isinstance(text, str) else text
            if not isinstance(data, (bytes, bytearray)) or len(data) > self._lengths[i]:
                raise EBPFError(f"field {i}: expected a string of at most {self._lengths[i]} bytes, got {text!r}")
            values[i] = data
        try:
            return self.struct.pack(*values)
        except (_struct.error, TypeError, OverflowError, ValueError) as exc:
            raise EBPFError(f"cannot encode event record {record!r}: {exc}") from None


def _split(fmt: str) -> list[str]:
    """The field codes of a format built by :func:`_compile` (padding excluded)."""
    return [m[0] for m in re.finditer(r"\d+s|[BHIQbhiqc?fd]", fmt[1:])]


def make_event_parser(spec: Sequence[FieldSpec], packed: bool = False) -> EventParser:
    """Build a parser ``bytes -> tuple`` for fixed-size event records.

    ``spec`` lists field types (``"u32"``, ``"i64"``, ``"char[16]"`` ...) or ``(name, type)``
    pairs; named fields give namedtuple records.  ``char[N]`` decodes to ``str`` up to the
    first NUL.  Fields are laid out as a C compiler would (natural alignment, trailing padding)
    unless ``packed``.

    :param spec: the fields, e.g. ``[("pid", "u32"), ("ts", "u64"), ("comm", "char[16]")]``.
    :param packed: no alignment padding (``__attribute__((packed))``).
    :returns: an :class:`EventParser` (callable; ``.size`` is the record size).
    :raises EBPFError: on an unknown type or a malformed spec.
    """
    return EventParser(spec, packed)


def make_event_serializer(spec: Sequence[FieldSpec], packed: bool = False) -> EventSerializer:
    """Build the inverse of :func:`make_event_parser`: a callable ``tuple -> bytes``.

    :param spec: the same field list as for :func:`make_event_parser`.
    :param packed: no alignment padding.
    :returns: an :class:`EventSerializer`.
    :raises EBPFError: on an unknown type or a malformed spec.
    """
    return EventSerializer(spec, packed)
