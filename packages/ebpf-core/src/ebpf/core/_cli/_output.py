"""Plain-text tables and JSON for the ``ebpf`` command (no dependency)."""

from __future__ import annotations

import enum
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TextIO

from ebpf.core import records

__all__ = ["to_jsonable", "print_json", "format_table", "print_table", "cell", "format_fields"]


def to_jsonable(obj: Any) -> Any:
    """``obj`` as plain JSON data: dataclasses become dicts, enums their lowercase names, bytes hex."""
    if isinstance(obj, enum.Enum):
        return obj.name.lower()
    if isinstance(obj, (bool, int, float, str)) or obj is None:
        return obj
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return bytes(obj).hex()
    if records.is_dataclass(obj) and not isinstance(obj, type):
        return {name: to_jsonable(getattr(obj, name)) for name in records.field_names(obj)}
    if isinstance(obj, Mapping):
        return {str(to_jsonable(k)): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, Iterable):
        return [to_jsonable(v) for v in obj]
    if hasattr(obj, "_asdict"):
        return to_jsonable(obj._asdict())
    return str(obj)


def print_json(data: Any, out: TextIO | None = None) -> None:
    """Print ``data`` as one indented JSON document."""
    import json  # deferred: start-up time (only --json output needs it)

    print(json.dumps(to_jsonable(data), indent=2, sort_keys=False), file=out or sys.stdout)


def cell(value: Any) -> str:
    """One table cell: enums as lowercase names, bytes as hex, sequences comma-joined."""
    if isinstance(value, enum.Enum):
        return value.name.lower()
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).hex()
    if isinstance(value, (list, tuple)):
        return ",".join(cell(v) for v in value)
    if value is None:
        return "-"
    return str(value)


def format_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """Aligned columns; columns holding only numbers are right-aligned."""
    raw_rows = [list(r) for r in rows]
    text_rows = [[cell(v) for v in row] for row in raw_rows]
    widths = [len(h) for h in headers]
    for row in text_rows:
        for i, v in enumerate(row):
            widths[i] = max(widths[i], len(v))
    numeric = [
        bool(text_rows) and all(isinstance(r[i], int) and not isinstance(r[i], bool) for r in raw_rows)
        for i in range(len(headers))
    ]

    def line(values: Sequence[str]) -> str:
        parts = [v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric)]
        return "  ".join(parts).rstrip()

    return "\n".join([line(list(headers)), *(line(r) for r in text_rows)])


def print_table(headers: Sequence[str], rows: Iterable[Sequence[Any]], out: TextIO | None = None) -> None:
    """Print :func:`format_table`."""
    print(format_table(headers, list(rows)), file=out or sys.stdout)


def format_fields(pairs: Iterable[tuple[str, Any]]) -> str:
    """``key  value`` lines with the keys aligned."""
    items = [(k, cell(v)) for k, v in pairs]
    width = max((len(k) for k, _ in items), default=0)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in items)
