"""Low-level BTF decoding: the header, the record index and one record at a time.

The type section is read as an array of u32 words (every BTF record is a multiple
of four bytes), so indexing ~150k records is one tight loop over two table look-ups
per record; malformed records are detected after the loop without slowing it down.
"""

from __future__ import annotations

import struct
import sys
from array import array
from typing import Protocol

from ebpf.core.btf.types import (
    VOID,
    Array,
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
    Restrict,
    Struct,
    Type,
    Typedef,
    TypeTag,
    Union,
    Var,
    VarSecinfo,
    Volatile,
)
from ebpf.core.errors import BTFError
from ebpf.core.records import dataclass

__all__ = ["MAGIC", "Header", "Words", "read_header", "build_index", "decode_record", "record_words"]

MAGIC = 0xEB9F
_HDR = struct.Struct("<HBBIIIII")
_HDR_BE = struct.Struct(">HBBIIIII")
HEADER_SIZE = _HDR.size

# Record size in u32 words = 3 + _EXTRA[k] + _PER[k] * vlen, indexed by the top byte of ``info``
# (kind in bits 24..28, kind_flag in bit 31).  Unknown kinds get a huge size so the indexing
# loop runs off the end and the check after it reports them.
_BAD = 1 << 40
_EXTRA_BY_KIND = {1: 1, 3: 3, 14: 1, 17: 1}
_PER_BY_KIND = {4: 3, 5: 3, 6: 2, 13: 2, 15: 3, 19: 3}
_EXTRA: list[int] = []
_PER: list[int] = []
for _b in range(256):
    _k = _b & 0x1F
    _valid = 1 <= _k <= 19 and (_b & 0x60) == 0
    _EXTRA.append(_EXTRA_BY_KIND.get(_k, 0) if _valid else _BAD)
    _PER.append(_PER_BY_KIND.get(_k, 0))


class Words(Protocol):
    """A sequence of u32 (a ``memoryview`` cast to ``"I"`` or an ``array("I")``)."""

    def __getitem__(self, i: int) -> int: ...

    def __len__(self) -> int: ...


@dataclass
class Header:
    """The decoded ``struct btf_header`` plus views of the two sections."""

    version: int
    flags: int
    hdr_len: int
    type_off: int
    type_len: int
    str_off: int
    str_len: int
    byteorder: str  # "little" or "big"
    words: Words
    strings: bytes
    type_start: int  # absolute offset of the type section in the blob


def read_header(data: bytes) -> Header:
    """Check the BTF header of ``data`` and return it with the type words and strings.

    :raises BTFError: on a bad magic, version or section bounds (with the offending offset).
    """
    if len(data) < HEADER_SIZE:
        raise BTFError(f"BTF blob too short for a header: {len(data)} bytes (offset 0)")
    if _HDR.unpack_from(data, 0)[0] == MAGIC:
        hdr, byteorder = _HDR.unpack_from(data, 0), "little"
    elif _HDR_BE.unpack_from(data, 0)[0] == MAGIC:
        hdr, byteorder = _HDR_BE.unpack_from(data, 0), "big"
    else:
        raise BTFError(f"bad BTF magic 0x{int.from_bytes(data[:2], 'little'):04x} at offset 0 (expected 0xeb9f)")
    _, version, flags, hdr_len, type_off, type_len, str_off, str_len = hdr
    if version != 1:
        raise BTFError(f"unsupported BTF version {version} at offset 2")
    if hdr_len < HEADER_SIZE or hdr_len > len(data):
        raise BTFError(f"BTF header length {hdr_len} out of range at offset 4 (blob is {len(data)} bytes)")
    body = len(data) - hdr_len
    if type_off % 4 or type_len % 4:
        raise BTFError(f"BTF type section misaligned (type_off={type_off}, type_len={type_len}) at offset 8")
    if type_off + type_len > body:
        raise BTFError(f"BTF type section [{type_off}, +{type_len}) runs past the end ({body} bytes) at offset 8")
    if str_off + str_len > body:
        raise BTFError(f"BTF string section [{str_off}, +{str_len}) runs past the end ({body} bytes) at offset 16")
    if type_len and str_len and type_off < str_off + str_len and str_off < type_off + type_len:
        raise BTFError(f"BTF type and string sections overlap (offset {hdr_len + type_off})")
    strings = bytes(data[hdr_len + str_off : hdr_len + str_off + str_len])
    if strings and strings[-1] != 0:
        raise BTFError(f"BTF string section does not end with NUL (offset {hdr_len + str_off + str_len - 1})")
    start = hdr_len + type_off
    raw = memoryview(data).cast("B")[start : start + type_len]
    words: Words
    if byteorder == sys.byteorder:
        words = raw.cast("I")
    else:
        arr = array("I", bytes(raw))
        arr.byteswap()
        words = arr
    return Header(version, flags, hdr_len, type_off, type_len, str_off, str_len, byteorder, words, strings, start)


def build_index(words: Words, type_start: int) -> array[int]:
    """Word offset of every type record, in type id order (the first record is id 1 of this blob).

    :raises BTFError: on an unknown kind or a record running past the end of the section.
    """
    offsets: array[int] = array("I")
    add = offsets.append
    extra, per = _EXTRA, _PER
    i = 0
    n = len(words)
    try:
        while i < n:
            add(i)
            info = words[i + 1]
            k = info >> 24
            i += 3 + extra[k] + per[k] * (info & 0xFFFF)
    except IndexError:
        pass  # a header cut short: reported below
    if i != n:
        last = offsets[-1]
        off = type_start + last * 4
        if last + 3 > n:
            raise BTFError(f"BTF type record {len(offsets)} at offset {off} is truncated")
        info = words[last + 1]
        kind = (info >> 24) & 0x1F
        if extra[info >> 24] == _BAD:
            raise BTFError(f"BTF type record {len(offsets)} at offset {off} has unknown BTF kind {kind} (info 0x{info:08x})")
        raise BTFError(f"BTF type record {len(offsets)} ({Kind(kind).name}) at offset {off} runs past the end of the type section")
    return offsets


def record_words(info: int) -> int:
    """Size in u32 words of the record whose ``info`` word is ``info``."""
    k = info >> 24
    return 3 + _EXTRA[k] + _PER[k] * (info & 0xFFFF)


def _s32(v: int) -> int:
    return v - (1 << 32) if v & 0x80000000 else v


class _Names(Protocol):
    def __call__(self, off: int) -> str: ...


def decode_record(words: Words, w: int, tid: int, name_at: _Names) -> Type:
    """Decode the record at word ``w`` as type id ``tid``; ``name_at`` resolves string offsets."""
    name_off, info, st = words[w], words[w + 1], words[w + 2]
    kind = (info >> 24) & 0x1F
    vlen = info & 0xFFFF
    kflag = bool(info >> 31)
    name = name_at(name_off) if name_off else ""
    p = w + 3
    if kind == 1:
        enc = words[p]
        return Int(tid, name, st, IntEncoding((enc >> 24) & 0x0F), (enc >> 16) & 0xFF, enc & 0xFF)
    if kind == 2:
        return Pointer(tid, name, st)
    if kind == 3:
        return Array(tid, name, words[p], words[p + 1], words[p + 2])
    if kind == 4 or kind == 5:
        members = []
        for j in range(p, p + 3 * vlen, 3):
            moff = words[j + 2]
            mname = name_at(words[j]) if words[j] else ""
            if kflag:
                members.append(Member(mname, words[j + 1], moff & 0xFFFFFF, moff >> 24))
            else:
                members.append(Member(mname, words[j + 1], moff))
        cls = Struct if kind == 4 else Union
        return cls(tid, name, st, tuple(members))
    if kind == 6:
        conv = _s32 if kflag else int
        vals = tuple(EnumValue(name_at(words[j]), conv(words[j + 1])) for j in range(p, p + 2 * vlen, 2))
        return Enum(tid, name, st, vals, kflag)
    if kind == 19:
        vals64 = []
        for j in range(p, p + 3 * vlen, 3):
            v = words[j + 1] | (words[j + 2] << 32)
            if kflag and v >> 63:
                v -= 1 << 64
            vals64.append(EnumValue(name_at(words[j]), v))
        return Enum64(tid, name, st, tuple(vals64), kflag)
    if kind == 7:
        return Fwd(tid, name, kflag)
    if kind in _QUALS:
        return _QUALS[kind](tid, name, st)
    if kind == 12:
        return Func(tid, name, st, _linkage(vlen))
    if kind == 13:
        params = tuple(Param(name_at(words[j]) if words[j] else "", words[j + 1]) for j in range(p, p + 2 * vlen, 2))
        return FuncProto(tid, name, st, params)
    if kind == 14:
        return Var(tid, name, st, _linkage(words[p]))
    if kind == 15:
        secs = tuple(VarSecinfo(words[j], words[j + 1], words[j + 2]) for j in range(p, p + 3 * vlen, 3))
        return Datasec(tid, name, st, secs)
    if kind == 16:
        return Float(tid, name, st)
    if kind == 17:
        return DeclTag(tid, name, st, _s32(words[p]))
    if kind == 0:
        return VOID
    raise BTFError(f"unknown BTF kind {kind} for type {tid}")


_QUALS: dict[int, type[Typedef | Volatile | Const | Restrict | TypeTag]] = {
    8: Typedef,
    9: Volatile,
    10: Const,
    11: Restrict,
    18: TypeTag,
}


def _linkage(v: int) -> Linkage:
    try:
        return Linkage(v)
    except ValueError:
        raise BTFError(f"bad BTF linkage {v}") from None
