"""Map keys and values decoded from the object's BTF: what ``__type(key, ...)`` says they are.

:func:`btf_codec` turns a BTF type into a codec (``ebpf.core.codecs`` protocol): integers stay
the core's fast int codecs; a struct or union becomes a :class:`Record` (attributes by member
name, ``==``, ``repr``, ``to_dict()``), a ``char`` array a ``str``, any other array a list,
an enum its int (or its enumerator's name with ``enums="names"``), a pointer its address.
Encoding takes the same shapes back, a ``dict`` for a struct, or raw bytes of the exact size,
so ``m[key_bytes]`` keeps working.  The ELF loader gives these codecs to every BTF-typed map
(``load_elf(..., typed=False)`` keeps raw bytes); ``map.lookup_bytes`` is always raw.
"""

from __future__ import annotations

import struct
from typing import Any

from ebpf.core.btf import Array, Composite, Enum, Float, Int, Pointer, Spec, Type, Union
from ebpf.core.codecs import Codec, IntCodec, i8, i16, i32, i64, u8, u16, u32, u64
from ebpf.core.errors import BTFError, EBPFError

__all__ = ["btf_codec", "BTFCodec", "Record"]

_INTS: dict[tuple[int, bool], IntCodec] = {
    (1, False): u8, (2, False): u16, (4, False): u32, (8, False): u64,
    (1, True): i8, (2, True): i16, (4, True): i32, (8, True): i64,
}
_MAX_DEPTH = 32


class Record:
    """A decoded struct or union: one attribute per named member (anonymous members flattened)."""

    __slots__ = ("_type_name", "_values")

    def __init__(self, type_name: str, values: dict[str, Any]) -> None:
        """Wrap ``values`` (member name -> decoded value) of C type ``type_name``."""
        object.__setattr__(self, "_type_name", type_name)
        object.__setattr__(self, "_values", values)

    def __getattr__(self, name: str) -> Any:
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(f"{self._type_name} has no member {name!r} "
                                 f"(members: {', '.join(self._values)})") from None

    def __setattr__(self, name: str, value: Any) -> None:
        if name not in self._values:
            raise AttributeError(f"{self._type_name} has no member {name!r}")
        self._values[name] = value

    def __getitem__(self, name: str) -> Any:
        return self._values[name]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Record):
            return bool(self._values == other._values)
        if isinstance(other, dict):
            return bool(self._values == other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable, like a dataclass

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={v!r}" for k, v in self._values.items())
        return f"{self._type_name}({inner})"

    def to_dict(self) -> dict[str, Any]:
        """The members as a dict (nested records as dicts too)."""
        return {k: v.to_dict() if isinstance(v, Record) else v for k, v in self._values.items()}


class BTFCodec(Codec):
    """Encode and decode values of one BTF type (see the module docstring for the shapes)."""

    def __init__(self, spec: Spec, type_id: int, enums: str = "ints") -> None:
        """Codec for ``type_id`` of ``spec``; ``enums="names"`` decodes enums to their names.

        :raises BTFError: for a type without a size (void, function, forward declaration).
        """
        if enums not in ("ints", "names"):
            raise EBPFError(f"enums must be 'ints' or 'names', not {enums!r}")
        self.spec = spec
        self.type_id = type_id
        self.enums = enums
        self.size = spec.sizeof(type_id)
        t = spec.resolve(type_id)
        self.type_name = _c_name(t)

    def __repr__(self) -> str:
        return f"BTFCodec({self.type_name}, {self.size} bytes)"

    def decode(self, buf: bytes | bytearray | memoryview) -> Any:
        """Decode exactly :attr:`size` bytes."""
        self._check_len(buf)
        return self._decode(self.type_id, bytes(buf), 0, 0)

    def encode(self, obj: Any) -> bytes:
        """Encode a decoded value (record, dict, str, list, int) or raw bytes of the exact size."""
        if isinstance(obj, (bytes, bytearray, memoryview)) and len(obj) == self.size:
            return bytes(obj)
        out = bytearray(self.size)
        self._encode(self.type_id, obj, out, 0, 0, self.type_name)
        return bytes(out)

    def _decode(self, tid: int, buf: bytes, off: int, depth: int) -> Any:
        if depth > _MAX_DEPTH:
            raise BTFError(f"{self.type_name}: types nest deeper than {_MAX_DEPTH}")
        t = self.spec.resolve(tid)
        if isinstance(t, Int):
            if t.name == "_Bool":
                return bool(buf[off])
            return int.from_bytes(buf[off : off + t.size], "little", signed=t.signed)
        if isinstance(t, Enum):
            value = int.from_bytes(buf[off : off + t.size], "little", signed=t.signed)
            if self.enums == "names":
                for ev in t.values:
                    if ev.value == value:
                        return ev.name
            return value
        if isinstance(t, Pointer):
            return int.from_bytes(buf[off : off + self.spec.ptr_size], "little")
        if isinstance(t, Float):
            return struct.unpack_from({4: "<f", 8: "<d"}.get(t.size, "<d"), buf, off)[0] if t.size in (4, 8) else 0.0
        if isinstance(t, Array):
            if _is_char(self.spec, t.type_id):
                raw = buf[off : off + t.nelems]
                return raw.split(b"\0", 1)[0].decode("utf-8", "replace")
            esize = self.spec.sizeof(t.type_id)
            return [self._decode(t.type_id, buf, off + i * esize, depth + 1) for i in range(t.nelems)]
        if isinstance(t, Composite):
            values: dict[str, Any] = {}
            self._members(t, buf, off, depth, values)
            return Record(_c_name(t), values)
        return buf[off : off + self.spec.sizeof(tid)]

    def _members(self, t: Composite, buf: bytes, off: int, depth: int, values: dict[str, Any]) -> None:
        for m in t.members:
            moff = off + m.bit_offset // 8
            if m.bitfield_size:
                mt = self.spec.resolve(m.type_id)
                size = self.spec.sizeof(m.type_id)
                start = off + (m.bit_offset // (size * 8)) * size
                word = int.from_bytes(buf[start : start + size], "little")
                v = (word >> (m.bit_offset % (size * 8))) & ((1 << m.bitfield_size) - 1)
                if isinstance(mt, (Int, Enum)) and mt.signed and v >> (m.bitfield_size - 1):
                    v -= 1 << m.bitfield_size
                values[m.name] = v
            elif not m.name and isinstance(self.spec.resolve(m.type_id), Composite):
                inner = self.spec.resolve(m.type_id)
                assert isinstance(inner, Composite)
                self._members(inner, buf, moff, depth + 1, values)  # anonymous struct/union: flattened
            elif m.name:
                values[m.name] = self._decode(m.type_id, buf, moff, depth + 1)

    def _encode(self, tid: int, obj: Any, out: bytearray, off: int, depth: int, where: str) -> None:
        if depth > _MAX_DEPTH:
            raise BTFError(f"{self.type_name}: types nest deeper than {_MAX_DEPTH}")
        t = self.spec.resolve(tid)
        size = self.spec.sizeof(tid)
        if isinstance(obj, (bytes, bytearray, memoryview)) and len(obj) == size and not (
                isinstance(t, Array) and _is_char(self.spec, t.type_id)):
            out[off : off + size] = bytes(obj)
            return
        if isinstance(t, (Int, Enum, Pointer)):
            if isinstance(t, Enum) and isinstance(obj, str):
                found = [ev.value for ev in t.values if ev.name == obj]
                if not found:
                    raise EBPFError(f"{where}: {obj!r} is not a value of enum {t.name or '(anon)'}")
                obj = found[0]
            if not isinstance(obj, int):
                raise EBPFError(f"{where}: expected an int, not {type(obj).__name__}")
            signed = isinstance(t, (Int, Enum)) and t.signed
            try:
                out[off : off + size] = int(obj).to_bytes(size, "little", signed=signed and obj < 0)
            except OverflowError:
                raise EBPFError(f"{where}: {obj} does not fit {size} bytes") from None
            return
        if isinstance(t, Float):
            if not isinstance(obj, (int, float)) or size not in (4, 8):
                raise EBPFError(f"{where}: expected a float, not {type(obj).__name__}")
            struct.pack_into("<f" if size == 4 else "<d", out, off, float(obj))
            return
        if isinstance(t, Array):
            self._encode_array(t, obj, out, off, depth, where)
            return
        if isinstance(t, Composite):
            values = obj.to_dict() if isinstance(obj, Record) else obj
            if not isinstance(values, dict):
                raise EBPFError(f"{where}: expected a record or dict for {_c_name(t)}, not {type(obj).__name__}")
            unknown = set(values) - set(_member_names(self.spec, t))
            if unknown:
                raise EBPFError(f"{where}: {_c_name(t)} has no member(s) {sorted(unknown)}")
            self._encode_members(t, values, out, off, depth, where)
            return
        raise EBPFError(f"{where}: cannot encode a {t.kind_name} from {type(obj).__name__}: give {size} raw bytes")

    def _encode_array(self, t: Array, obj: Any, out: bytearray, off: int, depth: int, where: str) -> None:
        if _is_char(self.spec, t.type_id):
            data = obj.encode() if isinstance(obj, str) else obj
            if not isinstance(data, (bytes, bytearray)) or len(data) > t.nelems:
                raise EBPFError(f"{where}: expected a str of at most {t.nelems} bytes")
            out[off : off + len(data)] = data
            return
        if not isinstance(obj, (list, tuple)) or len(obj) > t.nelems:
            raise EBPFError(f"{where}: expected a list of at most {t.nelems} elements")
        esize = self.spec.sizeof(t.type_id)
        for i, item in enumerate(obj):
            self._encode(t.type_id, item, out, off + i * esize, depth + 1, f"{where}[{i}]")

    def _encode_members(self, t: Composite, values: dict[str, Any], out: bytearray, off: int, depth: int,
                        where: str) -> None:
        for m in t.members:
            moff = off + m.bit_offset // 8
            if not m.name and isinstance(self.spec.resolve(m.type_id), Composite):
                inner = self.spec.resolve(m.type_id)
                assert isinstance(inner, Composite)
                self._encode_members(inner, values, out, moff, depth + 1, where)
            elif m.name in values:
                if m.bitfield_size:
                    size = self.spec.sizeof(m.type_id)
                    start = off + (m.bit_offset // (size * 8)) * size
                    shift = m.bit_offset % (size * 8)
                    mask = ((1 << m.bitfield_size) - 1) << shift
                    word = int.from_bytes(out[start : start + size], "little")
                    word = (word & ~mask) | ((int(values[m.name]) << shift) & mask)
                    out[start : start + size] = word.to_bytes(size, "little")
                else:
                    self._encode(m.type_id, values[m.name], out, moff, depth + 1, f"{where}.{m.name}")


def _member_names(spec: Spec, t: Composite) -> list[str]:
    names = []
    for m in t.members:
        if m.name:
            names.append(m.name)
        else:
            inner = spec.resolve(m.type_id)
            if isinstance(inner, Composite):
                names += _member_names(spec, inner)
    return names


def _is_char(spec: Spec, tid: int) -> bool:
    t = spec.resolve(tid)
    return isinstance(t, Int) and t.size == 1 and "char" in t.name


def _c_name(t: Type) -> str:
    if isinstance(t, Composite):
        return f"{'union' if isinstance(t, Union) else 'struct'} {t.name or '(anon)'}"
    if isinstance(t, Enum):
        return f"enum {t.name or '(anon)'}"
    return t.name or t.kind_name


def btf_codec(spec: Spec, type_id: int, enums: str = "ints") -> Codec | None:
    """The codec for BTF type ``type_id`` of ``spec``; None when the type has no size.

    Plain integers of 1, 2, 4 or 8 bytes get the core's int codecs (batch operations keep
    their fast paths); everything else a :class:`BTFCodec`.
    """
    try:
        t = spec.resolve(type_id)
        if isinstance(t, Int) and t.name != "_Bool" and (t.size, t.signed) in _INTS:
            return _INTS[(t.size, t.signed)]
        if isinstance(t, Enum) and enums == "ints" and (t.size, t.signed) in _INTS:
            return _INTS[(t.size, t.signed)]
        return BTFCodec(spec, type_id, enums)
    except BTFError:
        return None
