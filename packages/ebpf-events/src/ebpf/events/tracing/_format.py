"""Tracepoint record layouts from tracefs ``events/<category>/<name>/format``.

The kernel describes each tracepoint's record in text (``field:const char * filename;
offset:24; size:8; signed:0;``); :func:`tracepoint_format` parses it so that programs load
fields by name (``asm.ctx_field(R1, fmt, "filename", dst=R3)``), user space decodes records
(``fmt.parser()``) and C programs get the struct (``fmt.c_struct()``), with no offset counted
by hand.  Sizes come from the file, not from the C type (syscall arguments are declared
``int`` but stored in 8 bytes).
"""

from __future__ import annotations

import os
import re
import struct
import threading
from collections import namedtuple
from collections.abc import Callable
from typing import Any

from ebpf.core.errors import EBPFError
from ebpf.core.records import dataclass

__all__ = ["TracepointField", "TracepointFormat", "tracepoint_format", "parse_format"]

_FIELD = re.compile(r"^\s*field:(?P<decl>[^;]*);\s*offset:(?P<off>\d+);\s*size:(?P<size>\d+);\s*(?:signed:(?P<sg>\d+);)?")
_DECL = re.compile(r"^(?P<type>.*?)\s*\b(?P<name>[A-Za-z_][A-Za-z0-9_]*)\s*(?:\[(?P<len>[^\]]*)\])?\s*$")
_INTS = {(1, False): "B", (1, True): "b", (2, False): "H", (2, True): "h", (4, False): "I", (4, True): "i",
         (8, False): "Q", (8, True): "q"}
_C_INTS = {(1, False): "__u8", (1, True): "__s8", (2, False): "__u16", (2, True): "__s16", (4, False): "__u32",
           (4, True): "__s32", (8, False): "__u64", (8, True): "__s64"}


@dataclass(frozen=True)
class TracepointField:
    """One field of a tracepoint record.

    :ivar name: the field's name (``"filename"``).
    :ivar c_type: its C type as the kernel wrote it (``"const char *"``, ``"char"`` for ``char comm[16]``).
    :ivar offset: bytes from the start of the record (the program's context).
    :ivar size: bytes it takes (the whole array for arrays).
    :ivar signed: whether the kernel marks it signed.
    :ivar array_len: the element count of a fixed array, else None.
    :ivar data_loc: a ``__data_loc`` field: a u32 holding (length << 16 | offset) of data inside the record.
    :ivar common: one of the ``common_*`` fields every record starts with.
    """

    name: str
    c_type: str
    offset: int
    size: int
    signed: bool
    array_len: int | None = None
    data_loc: bool = False
    common: bool = False

    @property
    def is_string(self) -> bool:
        """A char array or a ``__data_loc char[]``."""
        return self.c_type.split()[-1:] == ["char"] and (self.array_len is not None or self.data_loc)


@dataclass(frozen=True)
class TracepointFormat:
    """The record layout of one tracepoint.

    :ivar category: ``"syscalls"``.  :ivar name: ``"sys_enter_openat"``.  :ivar id: the event id.
    :ivar fields: the tracepoint's own fields in record order (``common_*`` left out).
    :ivar common_fields: the ``common_*`` header fields.
    :ivar print_fmt: the kernel's ``print fmt`` line.
    """

    category: str
    name: str
    id: int
    fields: tuple[TracepointField, ...]
    common_fields: tuple[TracepointField, ...] = ()
    print_fmt: str = ""

    @property
    def size(self) -> int:
        """The fixed part's size: the end of the last field."""
        every = self.common_fields + self.fields
        return max((f.offset + f.size for f in every), default=0)

    def field(self, name: str) -> TracepointField:
        """The field called ``name`` (common fields included).

        :raises EBPFError: when there is none (the message lists the fields).
        """
        for f in self.fields + self.common_fields:
            if f.name == name:
                return f
        raise EBPFError(f"tracepoint {self.category}:{self.name} has no field {name!r}; "
                        f"fields: {', '.join(f.name for f in self.fields)}")

    def __getitem__(self, name: str) -> TracepointField:
        return self.field(name)

    def offsets(self) -> dict[str, tuple[int, int]]:
        """name -> (offset, size) of every field."""
        return {f.name: (f.offset, f.size) for f in self.common_fields + self.fields}

    def parser(self, common: bool = False) -> Callable[[bytes], Any]:
        """A callable ``record bytes -> namedtuple`` of the fields (strings decoded, ``__data_loc``
        followed, other arrays as tuples of ints; leading underscores dropped from names).

        :param common: include the ``common_*`` fields.
        :returns: the parser; it raises :class:`EBPFError` for a record shorter than the layout.
        """
        fields = (self.common_fields if common else ()) + self.fields
        # namedtuple fields cannot start with "_": "__syscall_nr" becomes "syscall_nr"
        record = namedtuple(f"{self.name}_record", [f.name.lstrip("_") or "field" for f in fields],  # type: ignore[misc]
                            rename=True)
        readers = [_reader(f) for f in fields]
        need = max((f.offset + f.size for f in fields), default=0)
        where = f"{self.category}:{self.name}"

        def parse(raw: bytes) -> Any:
            data = bytes(raw)
            if len(data) < need:
                raise EBPFError(f"{where} record is {len(data)} bytes, the format needs {need}")
            return record(*(r(data) for r in readers))

        return parse

    def c_struct(self, name: str | None = None) -> str:
        """C source of the record as a struct (bcc's ``args->field``), padded to the kernel's offsets.

        :param name: the struct's name (default ``tracepoint__<category>__<name>``).
        :returns: the declaration.
        """
        lines = [f"struct {name or f'tracepoint__{self.category}__{self.name}'} {{"]
        pos = 0
        for f in self.common_fields + self.fields:
            if f.offset > pos:
                lines.append(f"\tchar __pad_{pos}[{f.offset - pos}];")
            if f.data_loc:
                decl = f"__u32 __data_loc_{f.name}; /* __data_loc {f.c_type}[]: length << 16 | offset */"
            elif f.array_len is not None:
                elem = f.c_type if f.is_string else _C_INTS.get((f.size // max(f.array_len, 1), f.signed), "__u8")
                decl = f"{elem} {f.name}[{f.array_len}];"
            elif "*" in f.c_type and f.size == 8:
                decl = f"{f.c_type} {f.name};" if f.c_type.endswith("*") else f"{f.c_type} *{f.name};"
            elif (f.size, f.signed) in _C_INTS:
                decl = f"{_C_INTS[f.size, f.signed]} {f.name};"
            else:
                decl = f"__u8 {f.name}[{f.size}];"
            lines.append(f"\t{decl}")
            pos = f.offset + f.size
        lines.append("};")
        return "\n".join(lines) + "\n"


def _reader(f: TracepointField) -> Callable[[bytes], Any]:
    off, size = f.offset, f.size
    if f.data_loc:
        def data_loc(data: bytes) -> Any:
            loc = int.from_bytes(data[off:off + 4], "little")
            start, length = loc & 0xFFFF, loc >> 16
            chunk = data[start:start + length]
            return chunk.split(b"\0", 1)[0].decode("utf-8", "replace") if f.is_string else chunk
        return data_loc
    if f.is_string:
        return lambda data: data[off:off + size].split(b"\0", 1)[0].decode("utf-8", "replace")
    if f.array_len:
        elem = size // f.array_len
        code = _INTS.get((elem, f.signed))
        if code is not None:
            s = struct.Struct(f"<{f.array_len}{code}")
            return lambda data: s.unpack_from(data, off)
        return lambda data: data[off:off + size]
    code = _INTS.get((size, f.signed))
    if code is None:
        return lambda data: data[off:off + size]
    one = struct.Struct("<" + code)
    return lambda data: one.unpack_from(data, off)[0]


def parse_format(text: str, category: str = "", name: str = "") -> TracepointFormat:
    """Parse the text of a tracefs ``format`` file.

    :raises EBPFError: when the text has no ``field:`` lines or a line does not parse.
    """
    if not isinstance(text, str):
        raise EBPFError(f"format text must be str, not {type(text).__name__}")
    fields: list[TracepointField] = []
    tp_id, print_fmt = 0, ""
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("name:") and not name:
            name = stripped[5:].strip()
        elif stripped.startswith("ID:"):
            try:
                tp_id = int(stripped[3:])
            except ValueError:
                raise EBPFError(f"bad ID line in tracepoint format: {stripped!r}") from None
        elif stripped.startswith("print fmt:"):
            print_fmt = stripped[10:].strip()
        elif stripped.startswith("field:"):
            fields.append(_parse_field(stripped))
    if not fields:
        raise EBPFError(f"no fields in the format of tracepoint {category}:{name}")
    common = tuple(f for f in fields if f.common)
    return TracepointFormat(category, name, tp_id, tuple(f for f in fields if not f.common), common, print_fmt)


def _parse_field(line: str) -> TracepointField:
    m = _FIELD.match(line)
    if m is None:
        raise EBPFError(f"cannot parse tracepoint field line {line!r}")
    decl = m.group("decl").strip()
    data_loc = decl.startswith("__data_loc ")
    if data_loc:
        decl = decl[len("__data_loc "):].replace("[]", "").strip()
    d = _DECL.match(decl)
    if d is None:
        raise EBPFError(f"cannot parse tracepoint field declaration {decl!r}")
    name, c_type = d.group("name"), d.group("type").strip()
    if data_loc:  # "__data_loc char[] name": the type is everything before the name
        c_type = c_type or "char"
    array_len: int | None = None
    if d.group("len") is not None:
        size = int(m.group("size"))
        try:
            array_len = int(d.group("len"), 0)
        except ValueError:  # a macro the kernel did not expand: infer from the size for byte arrays
            array_len = size
    return TracepointField(name=name, c_type=c_type, offset=int(m.group("off")), size=int(m.group("size")),
                           signed=m.group("sg") == "1", array_len=array_len, data_loc=data_loc,
                           common=name.startswith("common_"))


def tracepoint_format(category: str, name: str | None = None) -> TracepointFormat:
    """Read and parse ``events/<category>/<name>/format`` from tracefs (mounted on demand).

    ``tracepoint_format("syscalls", "sys_enter_openat")`` or ``tracepoint_format("syscalls:sys_enter_openat")``.

    :returns: the layout.
    :raises EBPFError: for a malformed name; :raises NotSupportedError: tracefs unavailable;
        :raises AttachError: no such tracepoint.
    """
    from ebpf.core.errors import AttachError
    from ebpf.core.system import ensure_tracefs
    from ebpf.events.tracing._attach import parse_tracepoint

    cat, tp = parse_tracepoint(category, name)
    path = os.path.join(ensure_tracefs(), "events", cat, tp, "format")
    try:
        with open(path) as fh:
            st = os.fstat(fh.fileno())
            # One parse per process and tracepoint, shared by every caller and thread (the layout
            # is immutable); a module reloaded with other fields has a new file: parsed again.
            identity = (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_ctime_ns)
            with _FORMATS_LOCK:
                cached = _FORMATS.get(path)
            if cached is not None and cached[0] == identity:
                return cached[1]
            text = fh.read()
    except OSError as exc:
        raise AttachError(f"no tracepoint {cat}:{tp} ({path}: {exc.strerror}); see list_tracepoints()") from None
    fmt = parse_format(text, cat, tp)
    with _FORMATS_LOCK:
        cached = _FORMATS.get(path)
        if cached is not None and cached[0] == identity:
            return cached[1]  # another thread parsed it meanwhile: everyone shares its layout
        _FORMATS[path] = (identity, fmt)
    return fmt


_FORMATS: dict[str, tuple[tuple[int, int, int, int], TracepointFormat]] = {}
_FORMATS_LOCK = threading.Lock()
