"""``Builder``: assemble BTF types and encode them as a BTF blob.

Used to re-encode object BTF after fixups (``Builder.from_spec(spec)``, replace types,
``encode()``) and to build the small BTF that describes a map's key and value::

    spec, key_id, value_id = map_btf("u32", [("count", "u64"), ("comm", "char[16]")])
    with spec.load() as handle:
        create_map(..., btf=handle, btf_key_type_id=key_id, btf_value_type_id=value_id)
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, TypeAlias, cast

from ebpf.core import records
from ebpf.core.btf.types import (
    VOID,
    Array,
    Composite,
    Const,
    Datasec,
    DeclTag,
    Enum,
    Enum64,
    EnumValue,
    Float,
    Func,
    FuncProto,
    Fwd,
    Int,
    IntEncoding,
    Kind,
    Linkage,
    Member,
    Param,
    Pointer,
    Qualifier,
    Struct,
    Type,
    Typedef,
    Union,
    Var,
    VarSecinfo,
)
from ebpf.core.errors import BTFError

if TYPE_CHECKING:  # pragma: no cover - the spec imports this module, not the other way
    from ebpf.core.btf.spec import Spec

__all__ = ["Builder", "CType"]

#: A C type for :meth:`Builder.add_c_type`: a name (``"u32"``, ``"int"``, ``"char[16]"``,
#: ``"u64[4]"``, ``"void *"``), an existing type id, or a struct as ``[(field, CType), ...]``.
CType: TypeAlias = "str | int | Sequence[tuple[str, CType]]"

_INTS: dict[str, tuple[str, int, IntEncoding]] = {}
for _bits in (8, 16, 32, 64):
    _INTS[f"u{_bits}"] = (f"u{_bits}", _bits // 8, IntEncoding.NONE)
    _INTS[f"__u{_bits}"] = (f"__u{_bits}", _bits // 8, IntEncoding.NONE)
    _INTS[f"s{_bits}"] = (f"s{_bits}", _bits // 8, IntEncoding.SIGNED)
    _INTS[f"i{_bits}"] = (f"s{_bits}", _bits // 8, IntEncoding.SIGNED)
    _INTS[f"__s{_bits}"] = (f"__s{_bits}", _bits // 8, IntEncoding.SIGNED)
_INTS.update(
    {
        "char": ("char", 1, IntEncoding.SIGNED),
        "unsigned char": ("unsigned char", 1, IntEncoding.NONE),
        "signed char": ("signed char", 1, IntEncoding.SIGNED),
        "_Bool": ("_Bool", 1, IntEncoding.BOOL),
        "bool": ("_Bool", 1, IntEncoding.BOOL),
        "short": ("short", 2, IntEncoding.SIGNED),
        "unsigned short": ("unsigned short", 2, IntEncoding.NONE),
        "int": ("int", 4, IntEncoding.SIGNED),
        "unsigned int": ("unsigned int", 4, IntEncoding.NONE),
        "unsigned": ("unsigned int", 4, IntEncoding.NONE),
        "long": ("long", 8, IntEncoding.SIGNED),
        "unsigned long": ("unsigned long", 8, IntEncoding.NONE),
        "long long": ("long long", 8, IntEncoding.SIGNED),
        "unsigned long long": ("unsigned long long", 8, IntEncoding.NONE),
    }
)
_ARRAY_RE = re.compile(r"^(.*?)\s*\[\s*(\d+)\s*\]$")


class Builder:
    """A growing list of BTF types with ids, encodable with :meth:`encode`.

    :param base: for split BTF, the spec the new types extend (ids continue after it).
    """

    def __init__(self, base: Spec | None = None) -> None:
        self.base = base
        self.first_id = base.count if base is not None else 1
        self.types: list[Type] = []
        #: A string section :meth:`encode` starts from, byte for byte (new names are appended):
        #: offsets into it that other data holds (``.BTF.ext`` line info) stay valid.
        self.strings = b""
        self._named: dict[tuple[str, str], int] = {}

    # -- adding types -------------------------------------------------------------------------------

    @classmethod
    def from_spec(cls, spec: Spec, keep_strings: bool = False) -> Builder:
        """A builder holding every type of ``spec`` (same ids), to modify and re-encode.

        :param keep_strings: start the encoded string section with ``spec``'s own, unchanged,
            so string offsets that refer to it from elsewhere (an object's ``.BTF.ext``
            line info) still hold; by default strings are re-deduplicated.
        """
        b = cls(spec.base)
        b.types = list(spec)
        if keep_strings:
            b.strings = spec.strings
        return b

    @property
    def next_id(self) -> int:
        """The id the next added type gets."""
        return self.first_id + len(self.types)

    def add(self, t: Type) -> int:
        """Append ``t`` (its ``id`` is replaced by the next id); returns that id."""
        tid = self.next_id
        self.types.append(records.replace(t, id=tid))
        return tid

    def __getitem__(self, type_id: int) -> Type:
        idx = type_id - self.first_id
        if not 0 <= idx < len(self.types):
            raise BTFError(f"type id {type_id} is not in this builder")
        return self.types[idx]

    def __setitem__(self, type_id: int, t: Type) -> None:
        """Replace the type with id ``type_id`` (e.g. a DATASEC whose size a loader fixed up)."""
        idx = type_id - self.first_id
        if not 0 <= idx < len(self.types):
            raise BTFError(f"type id {type_id} is not in this builder")
        self.types[idx] = records.replace(t, id=type_id)

    def __len__(self) -> int:
        return len(self.types)

    def add_int(self, name: str, size: int, encoding: IntEncoding = IntEncoding.NONE, bits: int = 0) -> int:
        """An INT of ``size`` bytes (``bits`` defaults to all of them); returns its id."""
        if size not in (1, 2, 4, 8, 16):
            raise BTFError(f"BTF int size must be 1, 2, 4, 8 or 16, not {size}")
        return self.add(Int(0, name, size, encoding, 0, bits or size * 8))

    def add_pointer(self, target: int) -> int:
        """A pointer to type id ``target``."""
        return self.add(Pointer(0, "", target))

    def add_array(self, elem: int, nelems: int, index_type: int | None = None) -> int:
        """An array of ``nelems`` elements of type id ``elem`` (index type: a u32 made on demand)."""
        if nelems < 0:
            raise BTFError(f"array length must be >= 0, not {nelems}")
        if index_type is None:
            index_type = self._c_name("__u32")
        return self.add(Array(0, "", elem, index_type, nelems))

    def add_struct(self, name: str, fields: Sequence[tuple[str, int]], size: int | None = None, union: bool = False) -> int:
        """A struct (or union) laid out with C's natural alignment from ``(name, type id)`` pairs."""
        members, off, align = [], 0, 1
        for fname, tid in fields:
            a, sz = self._align(tid), self._sizeof(tid)
            align = max(align, a)
            if union:
                members.append(Member(fname, tid, 0))
                off = max(off, sz)
                continue
            off = (off + a - 1) // a * a
            members.append(Member(fname, tid, off * 8))
            off += sz
        total = (off + align - 1) // align * align
        cls = Union if union else Struct
        return self.add(cls(0, name, size if size is not None else total, tuple(members)))

    def add_typedef(self, name: str, target: int) -> int:
        """``typedef <target> name``."""
        return self.add(Typedef(0, name, target))

    def add_const(self, target: int) -> int:
        """``const <target>``."""
        return self.add(Const(0, "", target))

    def add_enum(self, name: str, values: Sequence[tuple[str, int]], size: int = 4) -> int:
        """An enum (ENUM64 when ``size`` is 8); values may be negative."""
        vals = tuple(EnumValue(n, v) for n, v in values)
        signed = any(v.value < 0 for v in vals)
        cls = Enum64 if size == 8 else Enum
        return self.add(cls(0, name, size, vals, signed))

    def add_func_proto(self, ret: int, params: Sequence[tuple[str, int]]) -> int:
        """A function prototype returning ``ret`` with ``(name, type id)`` parameters."""
        return self.add(FuncProto(0, "", ret, tuple(Param(n, t) for n, t in params)))

    def add_func(self, name: str, proto: int, linkage: Linkage = Linkage.GLOBAL) -> int:
        """A FUNC named ``name`` with prototype ``proto``."""
        return self.add(Func(0, name, proto, linkage))

    def add_var(self, name: str, type_id: int, linkage: Linkage = Linkage.GLOBAL) -> int:
        """A global VAR."""
        return self.add(Var(0, name, type_id, linkage))

    def add_datasec(self, name: str, size: int, variables: Sequence[tuple[int, int, int]]) -> int:
        """A DATASEC of ``size`` bytes holding ``(var id, offset, size)`` entries."""
        return self.add(Datasec(0, name, size, tuple(VarSecinfo(*v) for v in variables)))

    def add_c_type(self, ctype: CType, name: str = "") -> int:
        """Add (or reuse) the type described by ``ctype``; see :data:`CType`.

        :param name: the struct's name when ``ctype`` is a field list.
        :returns: the type id.
        :raises BTFError: for a type name it does not know.
        """
        if isinstance(ctype, int):
            return ctype
        if isinstance(ctype, str):
            return self._c_name(ctype.strip())
        fields = [(fname, self.add_c_type(ft)) for fname, ft in ctype]
        return self.add_struct(name, fields)

    def _c_name(self, text: str) -> int:
        arr = _ARRAY_RE.match(text)
        if arr:
            return self.add_array(self._c_name(arr.group(1)), int(arr.group(2)))
        if text.endswith("*"):
            inner = text[:-1].strip()
            return self.add_pointer(0 if inner == "void" else self._c_name(inner))
        key = ("int", text)
        if key in self._named:
            return self._named[key]
        if text in _INTS:
            cname, size, enc = _INTS[text]
            tid = self._c_name(cname) if cname != text else self.add_int(text, size, enc)
            self._named[key] = tid
            return tid
        if text in ("float", "double"):
            tid = self.add(Float(0, text, 4 if text == "float" else 8))
            self._named[key] = tid
            return tid
        raise BTFError(f"unknown C type {text!r} (use u8..u64, s8..s64, int, char, long, float, T[N], T *)")

    # -- layout helpers (over this builder and its base) ----------------------------------------------

    def _type(self, tid: int) -> Type:
        if tid < self.first_id:
            if self.base is None:
                if tid == 0:
                    return VOID
                raise BTFError(f"type id {tid} is not in this builder")
            return self.base.type_by_id(tid)
        return self[tid]

    def _sizeof(self, tid: int, depth: int = 0) -> int:
        t = self._type(tid)
        if depth > 64:
            raise BTFError("type chain too deep")
        if isinstance(t, (Int, Enum, Composite, Float, Datasec)):
            return t.size
        if isinstance(t, Pointer):
            return 8
        if isinstance(t, Array):
            return t.nelems * self._sizeof(t.type_id, depth + 1)
        if isinstance(t, (Qualifier, Var)):
            return self._sizeof(t.type_id, depth + 1)
        raise BTFError(f"{t} has no size")

    def _align(self, tid: int, depth: int = 0) -> int:
        t = self._type(tid)
        if depth > 64:
            raise BTFError("type chain too deep")
        if isinstance(t, (Int, Enum, Float)):
            return max(1, min(8, t.size))
        if isinstance(t, Pointer):
            return 8
        if isinstance(t, (Array, Qualifier)):
            return self._align(t.type_id, depth + 1)
        if isinstance(t, Composite):
            return max([self._align(m.type_id, depth + 1) for m in t.members] or [1])
        raise BTFError(f"{t} has no alignment")

    # -- encoding -------------------------------------------------------------------------------------

    def encode(self) -> bytes:
        """The BTF blob (header, type section, string section) for the builder's types.

        :raises BTFError: when a type cannot be encoded (a field out of range).
        """
        strings = bytearray(b"\0")
        offsets: dict[str, int] = {"": 0}
        str_base = self.base._str_end if self.base is not None else 0
        if self.strings:
            strings = bytearray(self.strings)
            if strings[-1:] != b"\0":
                strings += b"\0"
            pos = 0
            for part in bytes(strings[:-1]).split(b"\0"):
                offsets.setdefault(part.decode("utf-8", "replace"), str_base + pos)
                pos += len(part) + 1
            offsets[""] = 0  # anonymous: name offset 0, whatever the kept section holds there

        def s(text: str) -> int:
            off = offsets.get(text)
            if off is None:
                off = offsets[text] = str_base + len(strings)
                strings.extend(text.encode() + b"\0")
            return off

        out = bytearray()
        for t in self.types:
            try:
                out += _encode(t, s)
            except (struct.error, OverflowError, ValueError) as exc:
                raise BTFError(f"cannot encode {t}: {exc}") from None
        hdr = struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(out), len(out), len(strings))
        return hdr + bytes(out) + bytes(strings)


_HEAD = struct.Struct("<III")


def _head(name_off: int, kind: Kind, vlen: int, kflag: bool, size_or_type: int) -> bytes:
    if not 0 <= vlen <= 0xFFFF:
        raise ValueError(f"too many members/values/params ({vlen})")
    return _HEAD.pack(name_off, (int(kflag) << 31) | (int(kind) << 24) | vlen, size_or_type & 0xFFFFFFFF)


def _encode(t: Type, s: object) -> bytes:

    name = cast("Callable[[str], int]", s)
    n = name(t.name)
    if isinstance(t, Int):
        return _head(n, Kind.INT, 0, False, t.size) + struct.pack("<I", (int(t.encoding) << 24) | (t.offset << 16) | t.bits)
    if isinstance(t, Pointer):
        return _head(n, Kind.PTR, 0, False, t.type_id)
    if isinstance(t, Array):
        return _head(n, Kind.ARRAY, 0, False, 0) + struct.pack("<III", t.type_id, t.index_type_id, t.nelems)
    if isinstance(t, Composite):
        kflag = any(m.bitfield_size for m in t.members)
        body = b"".join(
            struct.pack("<III", name(m.name), m.type_id, (m.bitfield_size << 24 | m.bit_offset) if kflag else m.bit_offset)
            for m in t.members
        )
        return _head(n, t.kind, len(t.members), kflag, t.size) + body
    if isinstance(t, Enum64):
        body = b"".join(struct.pack("<III", name(v.name), v.value & 0xFFFFFFFF, (v.value >> 32) & 0xFFFFFFFF) for v in t.values)
        return _head(n, Kind.ENUM64, len(t.values), t.signed, t.size) + body
    if isinstance(t, Enum):
        body = b"".join(struct.pack("<II", name(v.name), v.value & 0xFFFFFFFF) for v in t.values)
        return _head(n, Kind.ENUM, len(t.values), t.signed, t.size) + body
    if isinstance(t, Fwd):
        return _head(n, Kind.FWD, 0, t.is_union, 0)
    if isinstance(t, Qualifier):
        return _head(n, t.kind, 0, False, t.type_id)
    if isinstance(t, Func):
        return _head(n, Kind.FUNC, int(t.linkage), False, t.type_id)
    if isinstance(t, FuncProto):
        body = b"".join(struct.pack("<II", name(p.name), p.type_id) for p in t.params)
        return _head(n, Kind.FUNC_PROTO, len(t.params), False, t.type_id) + body
    if isinstance(t, Var):
        return _head(n, Kind.VAR, 0, False, t.type_id) + struct.pack("<I", int(t.linkage))
    if isinstance(t, Datasec):
        body = b"".join(struct.pack("<III", v.type_id, v.offset, v.size) for v in t.vars)
        return _head(n, Kind.DATASEC, len(t.vars), False, t.size) + body
    if isinstance(t, Float):
        return _head(n, Kind.FLOAT, 0, False, t.size)
    if isinstance(t, DeclTag):
        return _head(n, Kind.DECL_TAG, 0, False, t.type_id) + struct.pack("<i", t.component_idx)
    raise ValueError(f"cannot encode a {type(t).__name__}")
