"""``.BTF.ext`` parsing: per-section func_info, line_info and CO-RE relocation records.

In an object file the records' instruction offsets are byte offsets inside their ELF
section; the loader turns them into instruction indices of each linked program.
"""

from __future__ import annotations

import struct

from ebpf.core.errors import BTFError
from ebpf.core.records import dataclass, field

__all__ = ["FuncInfo", "LineInfo", "CoreRelo", "BtfExt", "parse_btf_ext", "CoreReloKind"]


class CoreReloKind:
    """``enum bpf_core_relo_kind``."""

    FIELD_BYTE_OFFSET = 0
    FIELD_BYTE_SIZE = 1
    FIELD_EXISTS = 2
    FIELD_SIGNED = 3
    FIELD_LSHIFT_U64 = 4
    FIELD_RSHIFT_U64 = 5
    TYPE_ID_LOCAL = 6
    TYPE_ID_TARGET = 7
    TYPE_EXISTS = 8
    TYPE_SIZE = 9
    ENUMVAL_EXISTS = 10
    ENUMVAL_VALUE = 11
    TYPE_MATCHES = 12

    NAMES = ("byte_off", "byte_sz", "field_exists", "signed", "lshift_u64", "rshift_u64", "local_type_id",
             "target_type_id", "type_exists", "type_size", "enumval_exists", "enumval_value", "type_matches")


@dataclass
class FuncInfo:
    """A function's start (byte offset in its section) and its BTF FUNC type id."""

    insn_off: int
    type_id: int


@dataclass
class LineInfo:
    """Source position of the instruction at byte offset ``insn_off``."""

    insn_off: int
    file_name_off: int
    line_off: int
    line_col: int


@dataclass
class CoreRelo:
    """One CO-RE relocation: patch the instruction at ``insn_off`` for ``type_id`` + ``access``."""

    insn_off: int
    type_id: int
    access_str_off: int
    kind: int


@dataclass
class BtfExt:
    """Parsed ``.BTF.ext``: records grouped by ELF section name."""

    func_info: dict[str, list[FuncInfo]] = field(default_factory=dict)
    line_info: dict[str, list[LineInfo]] = field(default_factory=dict)
    core_relos: dict[str, list[CoreRelo]] = field(default_factory=dict)
    func_info_rec_size: int = 8
    line_info_rec_size: int = 16


def _blocks(data: bytes, start: int, length: int, what: str, min_rec: int, strings: bytes) -> tuple[int, list[tuple[str, int, int]]]:
    """(rec_size, [(section name, number of records, offset of first record)])."""
    if length == 0:
        return min_rec, []
    end = start + length
    if end > len(data) or length < 4:
        raise BTFError(f".BTF.ext: {what} at offset {start} (+{length}) runs past the section ({len(data)} bytes)")
    (rec_size,) = struct.unpack_from("<I", data, start)
    if rec_size < min_rec or rec_size % 4:
        raise BTFError(f".BTF.ext: {what} record size {rec_size} at offset {start} is invalid (min {min_rec})")
    pos = start + 4
    out = []
    while pos < end:
        if pos + 8 > end:
            raise BTFError(f".BTF.ext: {what}: truncated section header at offset {pos}")
        name_off, count = struct.unpack_from("<II", data, pos)
        if name_off >= len(strings):
            raise BTFError(f".BTF.ext: {what}: section name offset {name_off} at offset {pos} outside .BTF strings")
        nul = strings.find(b"\0", name_off)
        name = strings[name_off : nul if nul >= 0 else len(strings)].decode("utf-8", "replace")
        pos += 8
        if pos + count * rec_size > end:
            raise BTFError(f".BTF.ext: {what} for {name!r}: {count} records at offset {pos} run past the data")
        out.append((name, count, pos))
        pos += count * rec_size
    return rec_size, out


def parse_btf_ext(data: bytes, strings: bytes) -> BtfExt:
    """Parse a ``.BTF.ext`` section.

    :param data: the section's bytes.
    :param strings: the object's ``.BTF`` string section (section names live there).
    :returns: the records grouped by section.
    :raises BTFError: malformed data, with the offset.
    """
    if len(data) < 24:
        raise BTFError(f".BTF.ext: truncated header ({len(data)} bytes, need 24) at offset 0")
    magic, version, _flags, hdr_len = struct.unpack_from("<HBBI", data, 0)
    if magic != 0xEB9F:
        raise BTFError(f".BTF.ext: bad magic {magic:#x} at offset 0")
    if version != 1:
        raise BTFError(f".BTF.ext: unsupported version {version} at offset 2")
    if hdr_len < 24 or hdr_len > len(data):
        raise BTFError(f".BTF.ext: bad header length {hdr_len} at offset 4")
    fi_off, fi_len, li_off, li_len = struct.unpack_from("<IIII", data, 8)
    cr_off = cr_len = 0
    if hdr_len >= 32:
        cr_off, cr_len = struct.unpack_from("<II", data, 24)
    ext = BtfExt()
    rec, blocks = _blocks(data, hdr_len + fi_off, fi_len, "func_info", 8, strings)
    ext.func_info_rec_size = rec
    for name, count, pos in blocks:
        ext.func_info[name] = [FuncInfo(*struct.unpack_from("<II", data, pos + i * rec)) for i in range(count)]
    rec, blocks = _blocks(data, hdr_len + li_off, li_len, "line_info", 16, strings)
    ext.line_info_rec_size = rec
    for name, count, pos in blocks:
        ext.line_info[name] = [LineInfo(*struct.unpack_from("<IIII", data, pos + i * rec)) for i in range(count)]
    rec, blocks = _blocks(data, hdr_len + cr_off, cr_len, "core_relo", 16, strings)
    for name, count, pos in blocks:
        ext.core_relos[name] = [CoreRelo(*struct.unpack_from("<IIII", data, pos + i * rec)) for i in range(count)]
    for name, relos in ext.core_relos.items():
        for r in relos:
            if r.kind > CoreReloKind.TYPE_MATCHES:
                raise BTFError(f".BTF.ext: CO-RE relocation in {name!r} at insn offset {r.insn_off}: unknown kind {r.kind}")
    return ext
