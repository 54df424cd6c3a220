"""``Spec``: a lazily decoded BTF blob (vmlinux, a module's split BTF, or an object's ``.BTF``).

Opening a spec only checks the header.  The first lookup builds an index of record
offsets (one pass over the type section's words); names are found by searching the
string section for ``\\0name\\0`` and then a packed array of every record's name offset
for that string offset, so ``find("task_struct")`` never decodes the other 150k types (nor
builds a dictionary of all their names).  Decoded types are cached.
"""

from __future__ import annotations

import struct
import sys
from array import array
from collections.abc import Iterator

from ebpf.core.btf.builder import Builder, CType
from ebpf.core.btf.handle import BTF, load_blob
from ebpf.core.btf.records import build_index, decode_record, read_header
from ebpf.core.btf.types import (
    VOID,
    Array,
    Composite,
    Datasec,
    DeclTag,
    Enum,
    Float,
    Func,
    FuncProto,
    Int,
    Kind,
    Member,
    Pointer,
    Qualifier,
    Type,
    Var,
)
from ebpf.core.errors import BTFError

__all__ = ["Spec", "parse", "map_btf"]

# Name lookups answered by searching the blob (about a millisecond each on vmlinux) before a
# dictionary of every name is built (a few hundred milliseconds): a program's CO-RE relocations
# and attach targets ask for a handful of names; only a tool that walks many types gets the index.
_INDEX_AFTER = 256
_MAX_DEPTH = 64  # nesting limit for values and alignment (real kernels stay far below)
_KIND_WORDS = {"struct": Kind.STRUCT, "union": Kind.UNION, "enum": Kind.ENUM, "typedef": Kind.TYPEDEF}


class Spec:
    """Parsed BTF: look types up by id (``spec[7]``) or name (``spec.find("task_struct")``).

    :param data: the BTF blob (a ``.BTF`` section, ``/sys/kernel/btf/*``, a builder's output).
    :param base: for split BTF (kernel modules), the spec it extends (vmlinux); type ids
        and string offsets continue after the base's.
    :param name: a label for messages (``"vmlinux"``, a module name, a file name).
    :raises BTFError: when the header is malformed.
    """

    def __init__(self, data: bytes | bytearray | memoryview, base: Spec | None = None, name: str = "") -> None:
        self._data = bytes(data)
        self.base = base
        self.name = name
        self._hdr = read_header(self._data)
        self._first_id = base.count if base is not None else 1
        self._str_base = base._str_end if base is not None else 0
        self._str_end: int = self._str_base + len(self._hdr.strings)
        self._index: array[int] | None = None
        self._cache: dict[int, Type] = {}
        self._lookups = 0
        self._str_index: dict[bytes, list[int]] | None = None
        self._off_index: dict[int, list[int]] | None = None
        self._name_words: bytes | None = None
        #: Size of a pointer in bytes (BTF does not record it; 8 on the 64-bit targets BPF uses).
        self.ptr_size = 8

    # -- raw access ---------------------------------------------------------------------------------

    @property
    def data(self) -> bytes:
        """The blob this spec was parsed from."""
        return self._data

    @property
    def strings(self) -> bytes:
        """This blob's raw string section (offsets into it start at the base's end for split BTF)."""
        return self._hdr.strings

    @property
    def byteorder(self) -> str:
        """``"little"`` or ``"big"``: the byte order of the blob (and of values it describes)."""
        return self._hdr.byteorder

    @property
    def first_id(self) -> int:
        """The id of this blob's first type (1, or the base's count for split BTF)."""
        return self._first_id

    @property
    def count(self) -> int:
        """One more than the largest type id (void and the base's types included)."""
        return self._first_id + len(self._offsets())

    def _offsets(self) -> array[int]:
        if self._index is None:
            self._index = build_index(self._hdr.words, self._hdr.type_start)
        return self._index

    def str_at(self, off: int) -> str:
        """The string at offset ``off`` of the string section (the base's, below its end).

        :raises BTFError: when ``off`` is out of range.
        """
        if off < self._str_base:
            assert self.base is not None
            return self.base.str_at(off)
        strings = self._hdr.strings
        o = off - self._str_base
        if o >= len(strings):
            raise BTFError(f"BTF string offset {off} out of range (string section ends at {self._str_end})")
        return strings[o : strings.index(b"\0", o)].decode("utf-8", "replace")

    # -- lookups ----------------------------------------------------------------------------------

    def type_by_id(self, type_id: int) -> Type:
        """The type with id ``type_id`` (0 is :data:`~ebpf.core.btf.types.VOID`).

        :raises BTFError: when the id is out of range or its record is malformed.
        """
        t = self._cache.get(type_id)
        if t is not None:
            return t
        if type_id == 0:
            return VOID
        if 0 < type_id < self._first_id:
            assert self.base is not None
            return self.base.type_by_id(type_id)
        offsets = self._offsets()
        idx = type_id - self._first_id
        if not 0 <= idx < len(offsets):
            raise BTFError(f"BTF type id {type_id} out of range (this BTF has ids 0..{self.count - 1})")
        t = decode_record(self._hdr.words, offsets[idx], type_id, self.str_at)
        self._cache[type_id] = t
        return t

    def __getitem__(self, type_id: int) -> Type:
        return self.type_by_id(type_id)

    def __iter__(self) -> Iterator[Type]:
        """Every type of this blob (not the base's), in id order."""
        for tid in range(self._first_id, self.count):
            yield self.type_by_id(tid)

    def _name_offsets(self, name: bytes) -> list[int]:
        offs = self.base._name_offsets(name) if self.base is not None else []
        if self._str_index is not None:
            return offs + self._str_index.get(name, [])
        strings, needle = self._hdr.strings, b"\0" + name + b"\0"
        if strings.startswith(needle[1:]):  # split BTF need not start its strings with ""
            offs.append(self._str_base)
        pos = strings.find(needle)
        while pos != -1:
            offs.append(self._str_base + pos + 1)
            pos = strings.find(needle, pos + 1)
        return offs

    def _build_name_index(self) -> None:
        # Repeated lookups (CO-RE relocations, attach targets) pay once for two dicts:
        # string -> its offsets, and name offset -> type ids.
        str_index: dict[bytes, list[int]] = {}
        pos = self._str_base
        for part in self._hdr.strings.split(b"\0"):
            str_index.setdefault(part, []).append(pos)
            pos += len(part) + 1
        words, first = self._hdr.words, self._first_id
        by_off: dict[int, list[int]] = {}
        for i, w in enumerate(self._offsets()):
            name_off = words[w]
            if name_off:
                by_off.setdefault(name_off, []).append(first + i)
        self._str_index, self._off_index = str_index, by_off

    def find_ids(self, name: str) -> list[int]:
        """Ids of every type named ``name`` (in the base too), ascending.

        The first few lookups search the blob directly (no index to build: fast when cold);
        after that a name index is built once and lookups are dictionary hits.
        """
        if not name:
            return []
        raw = name.encode()
        ids = self.base.find_ids(name) if self.base is not None else []
        self._lookups += 1
        if self._off_index is None and self._lookups > _INDEX_AFTER:
            self._build_name_index()
        if self._off_index is not None:
            for off in self._name_offsets(raw):
                ids.extend(self._off_index.get(off, ()))
            return sorted(set(ids))
        names = self._names()
        for off in self._name_offsets(raw):
            pattern = off.to_bytes(4, "big")
            pos = names.find(pattern)
            while pos != -1:
                if not pos & 3:
                    ids.append(self._first_id + pos // 4)
                pos = names.find(pattern, pos + 1)
        return sorted(set(ids))

    def _names(self) -> bytes:
        """Every record's name offset, packed big-endian.

        A name's records are the aligned hits of its offset here (the type section itself would
        also match sizes, ids and members), and a pattern ending in the offset's low byte lets
        the search skip ahead.
        """
        names = self._name_words
        if names is None:
            packed = array("I", map(self._hdr.words.__getitem__, self._offsets()))
            if sys.byteorder == "little":
                packed.byteswap()
            names = self._name_words = packed.tobytes()
        return names

    def _kind_of(self, type_id: int) -> Kind:
        if type_id < self._first_id:
            assert self.base is not None
            return self.base._kind_of(type_id)
        w = self._offsets()[type_id - self._first_id]
        return Kind((self._hdr.words[w + 1] >> 24) & 0x1F)

    def find_all(self, name: str, kind: object = None) -> list[Type]:
        """Every type named ``name``, optionally only of ``kind`` (``"struct"``, ``Kind.STRUCT``, ``Struct``).

        ``name`` may carry the kind as C spells it: ``"struct task_struct"``.  Kind ``enum``
        matches ENUM64 too.
        """
        word, _, rest = name.strip().partition(" ")
        if rest and word in _KIND_WORDS:
            name, kind = rest.strip(), _KIND_WORDS[word] if kind is None else kind
        want = Kind.parse(kind) if kind is not None else None
        out = []
        for tid in self.find_ids(name):
            k = self._kind_of(tid)
            if want is None or k == want or (want == Kind.ENUM and k == Kind.ENUM64):
                out.append(self.type_by_id(tid))
        return out

    def find(self, name: str, kind: object = None) -> Type:
        """The first type named ``name`` (of ``kind`` if given), e.g. ``find("task_struct", "struct")``.

        :raises BTFError: when there is none.
        """
        found = self.find_all(name, kind)
        if not found:
            what = f"{Kind.parse(kind).name.lower()} " if kind is not None else ""
            raise BTFError(f"no {what}type named {name!r} in {self.name or 'BTF'}")
        return found[0]

    def get(self, ref: Type | int | str) -> Type:
        """``ref`` as a type: a type passes through, an int is an id, a str a name (see :meth:`find`)."""
        if isinstance(ref, Type):
            return ref
        if isinstance(ref, int):
            return self.type_by_id(ref)
        return self.find(ref)

    # -- type arithmetic ----------------------------------------------------------------------------

    def resolve(self, ref: Type | int | str) -> Type:
        """Skip typedefs, const, volatile, restrict and type tags: the underlying type.

        :raises BTFError: on a cycle.
        """
        t = self.get(ref)
        for _ in range(self.count + 1):
            if not isinstance(t, Qualifier):
                return t
            t = self.type_by_id(t.type_id)
        raise BTFError(f"cycle in BTF qualifier chain at type {t.id}")

    def sizeof(self, ref: Type | int | str) -> int:
        """Size in bytes of a type (through typedefs, qualifiers, arrays and vars).

        :raises BTFError: for types without a size (void, functions, forward declarations) or cycles.
        """
        t = self.get(ref)
        mult = 1
        for _ in range(self.count + 1):
            if isinstance(t, (Int, Enum, Composite, Float, Datasec)):
                return mult * t.size
            if isinstance(t, Pointer):
                return mult * self.ptr_size
            if isinstance(t, Array):
                mult *= t.nelems
                t = self.type_by_id(t.type_id)
            elif isinstance(t, (Qualifier, Var)):
                t = self.type_by_id(t.type_id)
            else:
                raise BTFError(f"{t} has no size")
        raise BTFError(f"cycle in BTF type chain at type {t.id}")

    def alignof(self, ref: Type | int | str, _depth: int = 0) -> int:
        """Natural alignment in bytes (1 for a struct whose layout shows it is packed), as libbpf computes it.

        :raises BTFError: for types without a size, or nesting deeper than 64.
        """
        if _depth > _MAX_DEPTH:
            raise BTFError("BTF types nested too deeply (cycle?)")
        t = self.resolve(ref)
        if isinstance(t, (Int, Enum, Float)):
            return max(1, min(self.ptr_size, t.size))
        if isinstance(t, Pointer):
            return self.ptr_size
        if isinstance(t, Array):
            return self.alignof(t.type_id, _depth + 1)
        if isinstance(t, Composite):
            best = 1
            for m in t.members:
                a = self.alignof(m.type_id, _depth + 1)
                best = max(best, a)
                if not m.bitfield_size and m.bit_offset % (8 * a):
                    return 1
            return 1 if t.size % best else best
        raise BTFError(f"{t} has no alignment")

    def find_member(self, ref: Type | int | str, path: str) -> Member:
        """Member ``path`` (``"a.b.c"``) of a struct/union, searching anonymous members too.

        :returns: the member, with ``bit_offset`` counted from the start of the outer type.
        :raises BTFError: when a part of the path is missing or not a struct/union.
        """
        t = self.resolve(ref)
        base = 0
        found: Member | None = None
        for part in path.split("."):
            if not isinstance(t, Composite):
                raise BTFError(f"{t} is not a struct or union (looking for {part!r} of {path!r})")
            hit = self._search_member(t, part, 0)
            if hit is None:
                raise BTFError(f"{t} has no member {part!r}")
            m, off = hit
            base += off
            found = Member(m.name, m.type_id, base, m.bitfield_size)
            t = self.resolve(m.type_id)
        assert found is not None
        return found

    def _search_member(self, t: Composite, name: str, depth: int) -> tuple[Member, int] | None:
        if depth > _MAX_DEPTH:
            raise BTFError("BTF types nested too deeply (cycle?)")
        for m in t.members:
            if m.name == name:
                return m, m.bit_offset
        for m in t.members:
            if not m.name:
                inner = self.resolve(m.type_id)
                if isinstance(inner, Composite):
                    hit = self._search_member(inner, name, depth + 1)
                    if hit is not None:
                        return hit[0], m.bit_offset + hit[1]
        return None

    # -- values ---------------------------------------------------------------------------------------

    def format_value(self, ref: Type | int | str, data: bytes | bytearray | memoryview) -> object:
        """Decode ``data`` (a map key or value) as type ``ref`` into plain Python.

        Integers become ``int`` (``bool`` for ``_Bool``), enums the enumerator's name (or the int),
        structs/unions ``dict`` (anonymous members merged in), arrays ``list``, char arrays ``str``
        (up to the first NUL), pointers ``int``, floats ``float``, data sections a dict of variables.

        :raises BTFError: when ``data`` is shorter than the type or the type has no size.
        """
        buf = bytes(data)
        t = self.get(ref)
        size = self.sizeof(t)
        if len(buf) < size:
            raise BTFError(f"value of {len(buf)} bytes is too short for {t} ({size} bytes)")
        return self._value(t, buf, 0, 0)

    def _int(self, buf: bytes, off: int, size: int, signed: bool) -> int:
        if off + size > len(buf):
            raise BTFError(f"field at byte {off} (+{size}) runs past the end of the {len(buf)}-byte value")
        return int.from_bytes(buf[off : off + size], self.byteorder, signed=signed)  # type: ignore[arg-type]

    def _value(self, t: Type, buf: bytes, off: int, depth: int) -> object:
        if depth > _MAX_DEPTH:
            raise BTFError("BTF types nested too deeply (cycle?)")
        t = self.resolve(t)
        if isinstance(t, Int):
            v = self._int(buf, off, t.size, t.signed)
            if t.bits and t.bits != t.size * 8:
                v = (v >> t.offset) & ((1 << t.bits) - 1)
            return bool(v) if t.is_bool else v
        if isinstance(t, Enum):
            v = self._int(buf, off, t.size, t.signed)
            named = t.name_of(v)
            return named if named is not None else v
        if isinstance(t, Pointer):
            return self._int(buf, off, self.ptr_size, False)
        if isinstance(t, Float):
            fmt = {4: "f", 8: "d"}.get(t.size)
            endian = "<" if self.byteorder == "little" else ">"
            return struct.unpack_from(endian + fmt, buf, off)[0] if fmt else buf[off : off + t.size]
        if isinstance(t, Array):
            elem = self.resolve(t.type_id)
            if isinstance(elem, Int) and elem.is_char and elem.size == 1:
                raw = buf[off : off + t.nelems]
                return raw.split(b"\0", 1)[0].decode("utf-8", "replace")
            esize = self.sizeof(elem)
            if off + t.nelems * esize > len(buf) or (not esize and t.nelems > len(buf)):
                raise BTFError(f"{t} at byte {off} runs past the end of the {len(buf)}-byte value")
            return [self._value(elem, buf, off + i * esize, depth + 1) for i in range(t.nelems)]
        if isinstance(t, Composite):
            return self._composite(t, buf, off, depth)
        if isinstance(t, Datasec):
            out: dict[str, object] = {}
            for vs in t.vars:
                var = self.type_by_id(vs.type_id)
                key = var.name or f"var_{vs.type_id}"
                target = var.type_id if isinstance(var, Var) else vs.type_id
                if vs.offset + vs.size <= len(buf) + off:
                    out[key] = self._value(self.type_by_id(target), buf, off + vs.offset, depth + 1)
            return out
        if isinstance(t, (Func, FuncProto, DeclTag, Var)):
            raise BTFError(f"{t} is not a value type")
        raise BTFError(f"{t} has no size")

    def _composite(self, t: Composite, buf: bytes, off: int, depth: int) -> dict[str, object]:
        out: dict[str, object] = {}
        for i, m in enumerate(t.members):
            moff = off + m.bit_offset // 8
            if m.bitfield_size:
                mt = self.resolve(m.type_id)
                signed = isinstance(mt, (Int, Enum)) and mt.signed
                nbytes = (m.bit_offset % 8 + m.bitfield_size + 7) // 8
                raw = int.from_bytes(buf[moff : moff + nbytes], self.byteorder)  # type: ignore[arg-type]
                if self.byteorder == "little":
                    v = (raw >> (m.bit_offset % 8)) & ((1 << m.bitfield_size) - 1)
                else:
                    v = (raw >> (nbytes * 8 - m.bit_offset % 8 - m.bitfield_size)) & ((1 << m.bitfield_size) - 1)
                if signed and v >> (m.bitfield_size - 1):
                    v -= 1 << m.bitfield_size
                value: object = v
                if isinstance(mt, Enum):
                    value = mt.name_of(v) or v
                elif isinstance(mt, Int) and mt.is_bool:
                    value = bool(v)
            else:
                value = self._value(self.type_by_id(m.type_id), buf, moff, depth + 1)
            if not m.name and isinstance(value, dict):
                out.update(value)
            else:
                out[m.name or f"_anon{i}"] = value
        return out

    # -- whole-blob operations ------------------------------------------------------------------------

    def validate(self) -> None:
        """Decode every type and check every type id it refers to (a strict check of the whole blob).

        :raises BTFError: on the first problem found.
        """
        count = self.count
        for t in self:
            for ref in _refs(t):
                if not 0 <= ref < count:
                    raise BTFError(f"{t} refers to type id {ref}, out of range (max {count - 1})")
            if isinstance(t, Qualifier):
                self.resolve(t)

    def encode(self) -> bytes:
        """Serialize this blob's types back to BTF (strings re-deduplicated)."""
        return Builder.from_spec(self).encode()

    def load(self, log_level: int = 1) -> BTF:
        """Load this BTF into the kernel (BPF_BTF_LOAD), checked first (see :func:`ebpf.core.btf.load.load_btf`).

        :param log_level: verifier log level used when reporting a failure.
        :returns: the :class:`~ebpf.core.btf.handle.BTF` handle.
        :raises BTFError: on a malformed blob, or when the kernel rejects it.
        """
        self.count  # builds the index: truncated records / unknown kinds fail here  # noqa: B018
        return load_blob(self.data, self, log_level)

    def __repr__(self) -> str:
        label = f" {self.name!r}" if self.name else ""
        split = f" on {self.base.name or 'base'}" if self.base is not None else ""
        return f"<Spec{label}{split} {len(self._data)} bytes>"


def _refs(t: Type) -> list[int]:
    if isinstance(t, Composite):
        return [m.type_id for m in t.members]
    if isinstance(t, FuncProto):
        return [t.type_id] + [p.type_id for p in t.params]
    if isinstance(t, Array):
        return [t.type_id, t.index_type_id]
    if isinstance(t, Datasec):
        return [v.type_id for v in t.vars]
    ref = getattr(t, "type_id", None)
    return [ref] if isinstance(ref, int) else []


def parse(data: bytes | bytearray | memoryview, base: Spec | None = None, name: str = "") -> Spec:
    """Parse a BTF blob lazily; ``base`` for split BTF (kernel modules on vmlinux).

    :raises BTFError: when the header is malformed (records are checked as they are used).
    """
    return Spec(data, base, name)


def map_btf(key: CType, value: CType, key_name: str = "key", value_name: str = "value") -> tuple[Spec, int, int]:
    """BTF describing a map's key and value types.

    :param key: the key's C type (see :data:`CType`), e.g. ``"u32"``.
    :param value: the value's C type, e.g. ``[("count", "u64"), ("comm", "char[16]")]``.
    :param key_name: struct name used when ``key`` is a field list.
    :param value_name: struct name used when ``value`` is a field list.
    :returns: ``(spec, key_type_id, value_type_id)``; ``spec.load()`` gives the handle for
        ``create_map(btf=...)`` and ``spec.format_value(value_type_id, data)`` decodes values.
    :raises BTFError: for a type it cannot describe.
    """
    b = Builder()
    kid = b.add_c_type(key, key_name)
    vid = b.add_c_type(value, value_name)
    return Spec(b.encode(), name="map"), kid, vid
