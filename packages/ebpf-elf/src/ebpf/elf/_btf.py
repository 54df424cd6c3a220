"""A small BTF reader/writer for the ELF loader: object BTF fix-ups, ``.maps`` parsing and CO-RE.

It parses raw BTF (object ``.BTF`` sections and ``/sys/kernel/btf/vmlinux``) into a list of
:class:`BtfType` records that can be edited and encoded back, which is what libbpf's
object fix-ups need (DATASEC sizes, VAR offsets, FUNC linkage, kinds the kernel rejects).
Every malformed input raises :class:`BTFError` with the offset.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from ebpf.core.errors import BTFError

__all__ = ["Btf", "BtfType", "Kind", "parse_btf", "load_vmlinux_btf"]

MAGIC = 0xEB9F


class Kind:
    """BTF kind numbers."""

    UNKN, INT, PTR, ARRAY, STRUCT, UNION, ENUM, FWD, TYPEDEF, VOLATILE, CONST, RESTRICT = range(12)
    FUNC, FUNC_PROTO, VAR, DATASEC, FLOAT, DECL_TAG, TYPE_TAG, ENUM64 = range(12, 20)

    NAMES = ("void", "int", "ptr", "array", "struct", "union", "enum", "fwd", "typedef", "volatile",
             "const", "restrict", "func", "func_proto", "var", "datasec", "float", "decl_tag",
             "type_tag", "enum64")


# kind -> (per-type extra words, per-vlen entry words)
_LAYOUT = {
    Kind.INT: (1, 0), Kind.PTR: (0, 0), Kind.ARRAY: (3, 0), Kind.STRUCT: (0, 3), Kind.UNION: (0, 3),
    Kind.ENUM: (0, 2), Kind.FWD: (0, 0), Kind.TYPEDEF: (0, 0), Kind.VOLATILE: (0, 0), Kind.CONST: (0, 0),
    Kind.RESTRICT: (0, 0), Kind.FUNC: (0, 0), Kind.FUNC_PROTO: (0, 2), Kind.VAR: (1, 0),
    Kind.DATASEC: (0, 3), Kind.FLOAT: (0, 0), Kind.DECL_TAG: (1, 0), Kind.TYPE_TAG: (0, 0), Kind.ENUM64: (0, 3),
}
_MODIFIERS = {Kind.TYPEDEF, Kind.VOLATILE, Kind.CONST, Kind.RESTRICT, Kind.TYPE_TAG}


@dataclass
class BtfType:
    """One BTF type record.

    ``size_type`` is the size (INT, STRUCT, UNION, ENUM, DATASEC, FLOAT, ENUM64) or the
    referenced type id (PTR, TYPEDEF, modifiers, FUNC, FUNC_PROTO return, VAR, DECL_TAG);
    ``extra`` the kind's extra words; ``entries`` the vlen records (members, params, values,
    DATASEC vars) as tuples of u32 words.
    """

    id: int
    kind: int
    name: str
    name_off: int
    vlen: int
    kflag: int
    size_type: int
    extra: list[int] = field(default_factory=list)
    entries: list[list[int]] = field(default_factory=list)

    @property
    def kind_name(self) -> str:
        """The kind in lower case (``"struct"``)."""
        return Kind.NAMES[self.kind] if self.kind < len(Kind.NAMES) else f"kind{self.kind}"


class Btf:
    """Parsed BTF: ``types[id]`` (``types[0]`` is void) and the string section."""

    def __init__(self, types: list[BtfType], strings: bytes, base: Btf | None = None) -> None:
        self.types = types
        self.strings = bytearray(strings)
        self._by_name: dict[str, list[int]] | None = None
        self.base = base

    def string(self, off: int) -> str:
        """The NUL-terminated string at ``off`` of the string section."""
        if off < 0 or off >= len(self.strings):
            if off == 0:
                return ""
            raise BTFError(f"BTF string offset {off} is outside the string section ({len(self.strings)} bytes)")
        end = self.strings.find(b"\0", off)
        if end < 0:
            end = len(self.strings)
        return self.strings[off:end].decode("utf-8", errors="replace")

    def add_string(self, text: str) -> int:
        """Append ``text`` to the string section; returns its offset."""
        off = len(self.strings)
        self.strings += text.encode() + b"\0"
        return off

    def __getitem__(self, type_id: int) -> BtfType:
        if 0 <= type_id < len(self.types):
            return self.types[type_id]
        raise BTFError(f"BTF type id {type_id} out of range (have {len(self.types) - 1} types)")

    def by_name(self, name: str) -> list[int]:
        """Ids of every type called ``name`` (any kind)."""
        if self._by_name is None:
            index: dict[str, list[int]] = {}
            for t in self.types[1:]:
                if t.name:
                    index.setdefault(t.name, []).append(t.id)
            self._by_name = index
        return self._by_name.get(name, [])

    def find(self, name: str, kind: int) -> BtfType | None:
        """The first type called ``name`` of ``kind``, or None."""
        for tid in self.by_name(name):
            if self.types[tid].kind == kind:
                return self.types[tid]
        return None

    def skip_mods(self, type_id: int) -> BtfType:
        """The type behind typedefs, const/volatile/restrict and type tags."""
        t = self[type_id]
        for _ in range(64):
            if t.kind not in _MODIFIERS:
                return t
            t = self[t.size_type]
        raise BTFError(f"BTF type {type_id}: modifier chain too long (loop?)")

    def size_of(self, type_id: int) -> int:
        """Size in bytes of ``type_id``."""
        for _ in range(64):
            t = self[type_id]
            if t.kind in (Kind.INT, Kind.STRUCT, Kind.UNION, Kind.ENUM, Kind.ENUM64, Kind.DATASEC, Kind.FLOAT):
                return t.size_type
            if t.kind == Kind.PTR:
                return 8
            if t.kind == Kind.ARRAY:
                return t.extra[2] * self.size_of(t.extra[0])
            if t.kind in _MODIFIERS or t.kind == Kind.VAR:
                type_id = t.size_type
                continue
            raise BTFError(f"BTF type {type_id} ({t.kind_name}) has no size")
        raise BTFError(f"BTF type {type_id}: type chain too long (loop?)")

    def members(self, t: BtfType) -> list[tuple[str, int, int, int]]:
        """Members of a struct/union as (name, type id, bit offset, bitfield size)."""
        out = []
        for name_off, type_id, offset in t.entries:
            if t.kflag:
                out.append((self.string(name_off), type_id, offset & 0xFFFFFF, offset >> 24))
            else:
                out.append((self.string(name_off), type_id, offset, 0))
        return out

    def encode(self) -> bytes:
        """Encode back to raw BTF (header, types, strings)."""
        parts = []
        for t in self.types[1:]:
            info = (t.vlen & 0xFFFF) | ((t.kind & 0x1F) << 24) | ((t.kflag & 1) << 31)
            words = [t.name_off, info, t.size_type, *t.extra]
            for entry in t.entries:
                words.extend(entry)
            parts.append(struct.pack(f"<{len(words)}I", *(w & 0xFFFFFFFF for w in words)))
        type_data = b"".join(parts)
        strings = bytes(self.strings)
        header = struct.pack("<HBBIIIII", MAGIC, 1, 0, 24, 0, len(type_data), len(type_data), len(strings))
        return header + type_data + strings


def parse_btf(data: bytes, what: str = ".BTF", base: Btf | None = None) -> Btf:
    """Parse raw BTF.

    :param data: the bytes (a ``.BTF`` section or ``/sys/kernel/btf/*``).
    :param what: named in error messages.
    :param base: for split BTF (kernel modules), the base BTF whose ids come first.
    :returns: the parsed :class:`Btf`.
    :raises BTFError: malformed BTF, with the offset.
    """
    if len(data) < 24:
        raise BTFError(f"{what}: truncated BTF header ({len(data)} bytes, need 24)")
    magic, version, _flags, hdr_len = struct.unpack_from("<HBBI", data, 0)
    if magic != MAGIC:
        raise BTFError(f"{what}: bad BTF magic {magic:#x} at offset 0 (expected 0xeb9f; big-endian BTF is not supported)")
    if version != 1:
        raise BTFError(f"{what}: unsupported BTF version {version} at offset 2")
    if hdr_len < 24 or hdr_len > len(data):
        raise BTFError(f"{what}: bad BTF header length {hdr_len} at offset 4")
    type_off, type_len, str_off, str_len = struct.unpack_from("<IIII", data, 8)
    types_start = hdr_len + type_off
    str_start = hdr_len + str_off
    if types_start + type_len > len(data) or str_start + str_len > len(data):
        raise BTFError(f"{what}: BTF sections (types {type_off}+{type_len}, strings {str_off}+{str_len}) "
                       f"extend past the data ({len(data)} bytes)")
    strings = data[str_start : str_start + str_len]
    first = len(base.types) if base is not None else 1
    types: list[BtfType] = list(base.types) if base is not None else [BtfType(0, 0, "void", 0, 0, 0, 0)]
    base_strings = bytes(base.strings) if base is not None else b""
    all_strings = base_strings + strings
    unpack = struct.unpack_from
    pos, end = types_start, types_start + type_len
    tid = first
    try:
        while pos < end:
            name_off, info, size_type = unpack("<III", data, pos)
            kind = (info >> 24) & 0x1F
            vlen = info & 0xFFFF
            layout = _LAYOUT.get(kind)
            if layout is None:
                raise BTFError(f"{what}: type {tid} at offset {pos}: unknown BTF kind {kind}")
            n_extra, per = layout
            words = n_extra + per * vlen
            if pos + 12 + 4 * words > end:
                raise BTFError(f"{what}: type {tid} at offset {pos} runs past the type section")
            raw = unpack(f"<{words}I", data, pos + 12) if words else ()
            extra = list(raw[:n_extra])
            entries = [list(raw[n_extra + i * per : n_extra + (i + 1) * per]) for i in range(vlen)] if per else []
            if name_off >= len(all_strings):
                raise BTFError(f"{what}: type {tid} at offset {pos}: name offset {name_off} outside strings")
            nul = all_strings.find(b"\0", name_off)
            name = all_strings[name_off : nul if nul >= 0 else len(all_strings)].decode("utf-8", "replace")
            types.append(BtfType(tid, kind, name, name_off, vlen, info >> 31, size_type, extra, entries))
            pos += 12 + 4 * words
            tid += 1
    except struct.error as exc:
        raise BTFError(f"{what}: truncated type {tid} at offset {pos}") from exc
    btf = Btf(types, all_strings, base)
    _validate(btf, what)
    return btf


def _validate(btf: Btf, what: str) -> None:
    """Refuse references to missing types, so later walks never index out of range."""
    count = len(btf.types)
    refs = (Kind.PTR, Kind.TYPEDEF, Kind.VOLATILE, Kind.CONST, Kind.RESTRICT, Kind.FUNC, Kind.FUNC_PROTO,
            Kind.VAR, Kind.DECL_TAG, Kind.TYPE_TAG)
    for t in btf.types[1:]:
        targets: list[int] = []
        if t.kind in refs:
            targets.append(t.size_type)
        if t.kind == Kind.ARRAY:
            targets += t.extra[:2]
        elif t.kind in (Kind.STRUCT, Kind.UNION, Kind.DATASEC):
            targets += [e[1] if t.kind != Kind.DATASEC else e[0] for e in t.entries]
        elif t.kind == Kind.FUNC_PROTO:
            targets += [e[1] for e in t.entries]
        for ref in targets:
            if ref >= count:
                raise BTFError(f"{what}: type {t.id} ({t.kind_name} {t.name!r}) refers to missing type {ref}")


_VMLINUX: Btf | None = None


def load_vmlinux_btf(path: str = "/sys/kernel/btf/vmlinux") -> Btf:
    """The running kernel's BTF (cached after the first call for the default path).

    :raises BTFError: the file is missing or malformed.
    """
    global _VMLINUX
    if path == "/sys/kernel/btf/vmlinux" and _VMLINUX is not None:
        return _VMLINUX
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        raise BTFError(f"cannot read kernel BTF {path}: {exc.strerror or exc}") from exc
    btf = parse_btf(data, path)
    if path == "/sys/kernel/btf/vmlinux":
        _VMLINUX = btf
    return btf
