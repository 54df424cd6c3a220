"""Histograms read from BPF maps, printed the way bcc prints them.

A program counts values into slots (``asm.log2`` + ``asm.hist_increment``, or ``log2l`` +
``hist_increment`` from ``<ebpf/hist.bpf.h>`` in C); :meth:`Histogram.from_map` reads the map
once (one BPF_MAP_LOOKUP_BATCH pass where the kernel has it) and gives counts per slot::

    hist = Histogram.from_map(latency_map)            # array, per-CPU array or hash map
    hist.print_log2_hist("usecs")                     # bcc's layout, column for column
    print(hist.percentile(99), hist.mean, hist.to_dict())

Slot numbering is libbpf-tools': log2 slot ``i`` holds ``[2**i, 2**(i+1) - 1]`` (slot 0 also
holds 0), linear slot ``i`` holds ``[base + i*step, base + (i+1)*step - 1]``.  Keyed
histograms (one per disk, per process) come from maps whose key holds a section and a slot;
``key=`` says how to split it, and the printout has one ``section_header = value`` block per
section as in bcc.  Mean and percentiles are estimates from the slots (a slot's values are
taken as spread evenly over it): exact values never reach user space.
"""

from __future__ import annotations

import math
import struct
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import IO, Any

from ebpf.core.errors import EBPFError

__all__ = ["Histogram", "format_log2_hist", "format_linear_hist", "STARS_MAX", "HIGH32"]

#: Width of the distribution column (bcc's ``stars_max``).
STARS_MAX = 40
#: ``Histogram.from_map(m, key=HIGH32)``: u64 keys ``section << 32 | slot``.
HIGH32 = "high32"
_KINDS = ("log2", "linear")
KeySplitter = Callable[[Any], tuple[Any, int]]


def _stars(val: int, val_max: int, width: int) -> str:
    # bcc adds a star while i <= width*val/val_max - 1 (i < width): that many is floor(x - 1) + 1
    x = width * val / val_max - 1
    text = "*" * (min(math.floor(x) + 1, width) if x >= 0 else 0)
    return text[:-1] + "+" if val > val_max else text


def format_log2_hist(counts: Sequence[int], val_type: str = "value", strip_leading_zero: bool = False) -> str:
    """Text of a log2 histogram in bcc's layout (``print_log2_hist``); '' when every slot is 0.

    :param counts: counts per slot, slot ``i`` holding ``[2**i, 2**(i+1) - 1]`` (and 0 in slot 0).
    :param val_type: the column header (``"usecs"``).
    :param strip_leading_zero: leave out the empty slots before the first non-empty one.
    :returns: the lines, each ending in a newline.
    """
    idx_max, val_max = -1, 0
    for i, v in enumerate(counts):
        if v > 0:
            idx_max = i
        val_max = max(val_max, v)
    if idx_max < 0:
        return ""
    # bcc indexes slots from 1 (its log2 adds one); its layout switch at index 32 is our 31
    if idx_max <= 31:
        header, body, stars = "     %-19s : count     distribution", "%10d -> %-10d : %-8d |%-*s|", STARS_MAX
    else:
        header, body, stars = ("               %-29s : count     distribution", "%20d -> %-20d : %-8d |%-*s|",
                               STARS_MAX // 2)
    lines = [header % val_type]
    for i in range(idx_max + 1):
        low, high = (1 << (i + 1)) >> 1, (1 << (i + 1)) - 1
        if low == high:
            low -= 1
        val = counts[i]
        if strip_leading_zero:
            if not val:
                continue
            strip_leading_zero = False
        lines.append(body % (low, high, val, stars, _stars(val, val_max, stars)))
    return "\n".join(lines) + "\n"


def format_linear_hist(counts: Sequence[int], val_type: str = "value", step: int = 1, base: int = 0) -> str:
    """Text of a linear histogram in bcc's layout (``print_linear_hist``); '' when every slot is 0.

    :param counts: counts per slot.
    :param val_type: the column header.
    :param step: the width of a slot; each line shows its slot's lowest value (bcc: step 1, the index).
    :param base: the lowest value of slot 0.
    :returns: the lines, each ending in a newline.
    """
    idx_max, val_max = -1, 0
    for i, v in enumerate(counts):
        if v > 0:
            idx_max = i
        val_max = max(val_max, v)
    if idx_max < 0:
        return ""
    lines = [f"     {val_type:<13} : count     distribution"]
    for i in range(idx_max + 1):
        val = counts[i]
        lines.append(f"        {base + i * step:<10d} : {val:<8d} |{_stars(val, val_max, STARS_MAX):<{STARS_MAX}}|")
    return "\n".join(lines) + "\n"


def _as_int(value: Any, what: str) -> int:
    if isinstance(value, int):
        return value
    if isinstance(value, (bytes, bytearray, memoryview)) and len(value) <= 8:
        return int.from_bytes(bytes(value), "little")
    if isinstance(value, (list, tuple)):  # per-CPU: one value per possible CPU
        return sum(_as_int(v, what) for v in value)
    raise EBPFError(f"histogram {what} must be an integer (u32/u64 map), not {type(value).__name__}")


def _group_high32(keys: Any, values: Any, max_slots: int) -> dict[int, list[int]]:
    """Counts per section of u64 keys ``section << 32 | slot``: NumPy for large maps, else one Python pass."""
    if not keys:
        return {}
    if isinstance(keys[0], (bytes, bytearray)) or not isinstance(keys[0], int):
        raise EBPFError("key='high32' needs a map with 8-byte integer keys")
    np: Any = None
    if len(keys) >= 512:
        try:
            import numpy

            np = numpy
        except ImportError:
            pass
    if np is not None:
        k = np.asarray(keys, dtype=np.uint64)
        v = np.asarray(values, dtype=np.uint64)
        slots = (k & np.uint64(0xFFFFFFFF)).astype(np.int64)
        top = int(slots.max())
        if top >= max_slots:
            raise EBPFError(f"slot {top} out of range 0..{max_slots - 1}: is this a histogram map?")
        high = k >> np.uint64(32)
        # Not np.unique(return_inverse=True): its argsort (AVX2 quicksort) returned wrong orders
        # under QEMU TCG (the Debian 6.1/6.12 guests of the kernel matrix); sort + binary search did not.
        secs = np.unique(high)
        inverse = np.searchsorted(secs, high)
        dense = np.zeros((len(secs), top + 1), dtype=np.uint64)
        np.add.at(dense, (inverse, slots), v)
        return dict(zip(secs.tolist(), dense.tolist()))
    out: dict[int, list[int]] = {}
    for key, value in zip(keys, values):
        slot = key & 0xFFFFFFFF
        if slot >= max_slots:
            raise EBPFError(f"slot {slot} out of range 0..{max_slots - 1}: is this a histogram map?")
        counts = out.get(key >> 32)
        if counts is None:
            counts = out[key >> 32] = []
        if slot >= len(counts):
            counts.extend([0] * (slot + 1 - len(counts)))
        counts[slot] += value
    return out


def _key_splitter(key: Any) -> KeySplitter | None:
    if key is None:
        return None
    if callable(key):
        fn: KeySplitter = key
        return fn
    if isinstance(key, str):
        try:
            fmt = struct.Struct(key)
        except struct.error as exc:
            raise EBPFError(f"key format {key!r} is not a struct format: {exc}") from None
        if len(fmt.unpack(bytes(fmt.size))) < 2:
            raise EBPFError(f"key format {key!r} must unpack to a section and a slot (slot last)")

        def split(raw: Any) -> tuple[Any, int]:
            data = raw if isinstance(raw, (bytes, bytearray)) else int(raw).to_bytes(fmt.size, "little")
            parts = fmt.unpack(bytes(data))
            return (parts[0] if len(parts) == 2 else parts[:-1]), parts[-1]

        return split
    raise EBPFError(f"key must be None, a callable raw_key -> (section, slot) or a struct format, not {key!r}")


class Histogram:
    """Counts per slot, one list per section (a single section, ``None``, unless keyed).

    :param counts: counts per slot, or a mapping section -> counts per slot.
    :param kind: ``"log2"`` or ``"linear"``.
    :param step: the width of a linear slot.
    :param base: the lowest value of linear slot 0.
    :raises EBPFError: for an unknown kind, a bad step or negative counts.
    """

    def __init__(self, counts: Sequence[int] | Mapping[Any, Sequence[int]] = (), *, kind: str = "log2",
                 step: int = 1, base: int = 0) -> None:
        """Check and keep the counts."""
        if kind not in _KINDS:
            raise EBPFError(f"kind must be 'log2' or 'linear', not {kind!r}")
        if isinstance(step, bool) or not isinstance(step, int) or step <= 0:
            raise EBPFError(f"step must be a positive int, not {step!r}")
        if isinstance(base, bool) or not isinstance(base, int):
            raise EBPFError(f"base must be an int, not {base!r}")
        self.kind, self.step, self.base = kind, step, base
        raw = dict(counts) if isinstance(counts, Mapping) else {None: counts}
        self._sections: dict[Any, list[int]] = {}
        for section, values in raw.items():
            vals = [int(v) for v in values]
            if any(v < 0 for v in vals):
                raise EBPFError(f"histogram counts must not be negative (section {section!r})")
            self._sections[section] = vals

    # -- building ------------------------------------------------------------------------

    @classmethod
    def from_map(cls, m: Any, kind: str = "log2", step: int = 1, key: Any = None, *, base: int = 0,
                 max_slots: int = 1025) -> Histogram:
        """Read a histogram map: array or hash map slot -> count, per-CPU counts summed.

        :param m: an open map with u32/u64 values (``Map``, ``PerCPUMap``).
        :param kind: ``"log2"`` or ``"linear"``.
        :param step: the width of a linear slot.
        :param key: how the key splits into (section, slot) for a keyed histogram: None (the
            key is the slot), :data:`HIGH32` (``"high32"``: a u64 key ``section << 32 | slot``, as
            ``asm.hist_increment(key_size=8)`` and the tools build it; the fast path, NumPy when
            installed), a callable ``key -> (section, slot)`` (integer keys up to 8 bytes come as
            ints), or a struct format such as ``"<II"`` (slot last, the rest the section).
        :param base: the lowest value of linear slot 0.
        :param max_slots: refuse slots past this (a guard against a map that is not a histogram).
        :returns: the histogram.
        :raises EBPFError: for a closed map, non-integer values, a slot out of range or a bad ``key``.
        """
        split = None if key == HIGH32 else _key_splitter(key)
        try:
            keys, values = m.lookup_batch_columns()
        except AttributeError:
            raise EBPFError(f"Histogram.from_map needs a map, not {type(m).__name__}") from None
        if values and isinstance(values[0], list):  # per-CPU
            values = [sum(v) for v in values]
        if key == HIGH32:
            return cls(_group_high32(keys, values, max_slots), kind=kind, step=step, base=base)
        sections: dict[Any, list[int]] = {}
        if split is None:
            counts = sections.setdefault(None, [])
            for k, v in zip(keys, values):
                slot = _as_int(k, "key")
                if not 0 <= slot < max_slots:
                    raise EBPFError(f"slot {slot} out of range 0..{max_slots - 1}: is this a histogram map?")
                if slot >= len(counts):
                    counts.extend([0] * (slot + 1 - len(counts)))
                counts[slot] += _as_int(v, "value")
        else:
            for k, v in zip(keys, values):
                section, slot = split(k if isinstance(k, (int, bytes)) else _as_int(k, "key"))
                if not isinstance(slot, int) or not 0 <= slot < max_slots:
                    raise EBPFError(f"slot {slot!r} out of range 0..{max_slots - 1} (section {section!r})")
                counts = sections.setdefault(section, [])
                if slot >= len(counts):
                    counts.extend([0] * (slot + 1 - len(counts)))
                counts[slot] += _as_int(v, "value")
        return cls(sections if split is not None else sections.get(None, []), kind=kind, step=step, base=base)

    @classmethod
    def from_values(cls, values: Iterable[int], kind: str = "log2", step: int = 1, base: int = 0) -> Histogram:
        """Bucket values in Python exactly as the in-kernel helpers do (for tests and references).

        :raises EBPFError: for a negative value or a bad kind/step.
        """
        counts: list[int] = []
        for v in values:
            if v < 0:
                raise EBPFError(f"values must be non-negative, not {v}")
            slot = max(v.bit_length() - 1, 0) if kind == "log2" else max(v - base, 0) // max(step, 1)
            if slot >= len(counts):
                counts.extend([0] * (slot + 1 - len(counts)))
            counts[slot] += 1
        return cls(counts, kind=kind, step=step, base=base)

    # -- reading -------------------------------------------------------------------------

    @property
    def keyed(self) -> bool:
        """True when the histogram has sections (from a keyed map)."""
        return list(self._sections) != [None]

    @property
    def sections(self) -> list[Any]:
        """The section keys (``[None]`` for a plain histogram)."""
        return list(self._sections)

    def section(self, key: Any) -> Histogram:
        """The histogram of one section.

        :raises EBPFError: when there is no such section.
        """
        if key not in self._sections:
            raise EBPFError(f"no section {key!r} in this histogram; sections: {self.sections[:10]}")
        return Histogram(self._sections[key], kind=self.kind, step=self.step, base=self.base)

    @property
    def counts(self) -> list[int]:
        """Counts per slot, summed over the sections."""
        out: list[int] = []
        for vals in self._sections.values():
            if len(vals) > len(out):
                out.extend([0] * (len(vals) - len(out)))
            for i, v in enumerate(vals):
                out[i] += v
        return out

    @property
    def total(self) -> int:
        """The number of values counted."""
        return sum(sum(v) for v in self._sections.values())

    def slot_range(self, slot: int) -> tuple[int, int]:
        """The lowest and highest value slot ``slot`` holds."""
        if self.kind == "log2":
            return (0 if slot == 0 else 1 << slot), (1 << (slot + 1)) - 1
        low = self.base + slot * self.step
        return low, low + self.step - 1

    @property
    def mean(self) -> float:
        """The mean, each slot's values taken at the slot's middle (0.0 when empty)."""
        counts, total = self.counts, self.total
        if not total:
            return 0.0
        return sum(c * sum(self.slot_range(i)) / 2 for i, c in enumerate(counts) if c) / total

    def percentile(self, p: float) -> float:
        """The value below which ``p`` percent of the values fall, interpolated inside its slot.

        :param p: 0..100.
        :returns: the estimate (0.0 when empty).
        :raises EBPFError: for ``p`` outside 0..100.
        """
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p <= 100:
            raise EBPFError(f"percentile must be between 0 and 100, not {p!r}")
        counts, total = self.counts, self.total
        if not total:
            return 0.0
        rank, seen = p / 100 * total, 0
        for i, c in enumerate(counts):
            if c and seen + c >= rank:
                low, high = self.slot_range(i)
                return low + (high + 1 - low) * max(rank - seen, 0) / c
            seen += c
        return float(self.slot_range(len(counts) - 1)[1])

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON: kind, step, base, total, mean, p50/p90/p99 and the non-empty slots
        (``[{"low", "high", "count"}]``), per section under ``"sections"`` when keyed."""
        def one(h: Histogram) -> dict[str, Any]:
            slots = [{"low": lo, "high": hi, "count": c} for i, c in enumerate(h.counts) if c
                     for lo, hi in [h.slot_range(i)]]
            return {"total": h.total, "mean": h.mean, "p50": h.percentile(50), "p90": h.percentile(90),
                    "p99": h.percentile(99), "slots": slots}

        out: dict[str, Any] = {"kind": self.kind, "step": self.step, "base": self.base, **one(self)}
        if self.keyed:
            out["sections"] = {str(s): one(self.section(s)) for s in self._sorted_sections(None)}
        return out

    # -- printing ------------------------------------------------------------------------

    def _sorted_sections(self, sort_fn: Callable[[list[Any]], Iterable[Any]] | None) -> list[Any]:
        keys = list(self._sections)
        if sort_fn is not None:
            return list(sort_fn(keys))
        try:
            return sorted(keys)
        except TypeError:
            return keys

    def _format(self, val_type: str, section_header: str, section_print_fn: Callable[[Any], str] | None,
                bucket_sort_fn: Callable[[list[Any]], Iterable[Any]] | None,
                one: Callable[[list[int]], str]) -> str:
        if not self.keyed:
            return one(self._sections[None])
        parts = []
        for s in self._sorted_sections(bucket_sort_fn):
            shown = section_print_fn(s) if section_print_fn is not None else repr(s)
            parts.append(f"\n{section_header} = {shown}\n" + one(self._sections[s]))
        return "".join(parts)

    def format_log2_hist(self, val_type: str = "value", section_header: str = "Bucket ptr",
                         section_print_fn: Callable[[Any], str] | None = None, strip_leading_zero: bool = False,
                         bucket_sort_fn: Callable[[list[Any]], Iterable[Any]] | None = None) -> str:
        """The text :meth:`print_log2_hist` prints."""
        return self._format(val_type, section_header, section_print_fn, bucket_sort_fn,
                            lambda c: format_log2_hist(c, val_type, strip_leading_zero))

    def print_log2_hist(self, val_type: str = "value", section_header: str = "Bucket ptr",
                        section_print_fn: Callable[[Any], str] | None = None, strip_leading_zero: bool = False,
                        bucket_sort_fn: Callable[[list[Any]], Iterable[Any]] | None = None,
                        file: IO[str] | None = None) -> None:
        """Print as bcc's ``print_log2_hist``: a header, then ``low -> high : count |stars|`` per slot.

        Keyed histograms print one block per section, headed ``"\\n<section_header> = <section>"``
        (``section_print_fn(section)`` when given, else ``repr``), sections sorted unless
        ``bucket_sort_fn`` orders them.

        :param val_type: the column header (``"usecs"``).
        :param file: where to print (default stdout).
        """
        print(self.format_log2_hist(val_type, section_header, section_print_fn, strip_leading_zero, bucket_sort_fn),
              end="", file=file or sys.stdout)

    def format_linear_hist(self, val_type: str = "value", section_header: str = "Bucket ptr",
                           section_print_fn: Callable[[Any], str] | None = None,
                           bucket_sort_fn: Callable[[list[Any]], Iterable[Any]] | None = None) -> str:
        """The text :meth:`print_linear_hist` prints."""
        return self._format(val_type, section_header, section_print_fn, bucket_sort_fn,
                            lambda c: format_linear_hist(c, val_type, self.step, self.base))

    def print_linear_hist(self, val_type: str = "value", section_header: str = "Bucket ptr",
                          section_print_fn: Callable[[Any], str] | None = None,
                          bucket_sort_fn: Callable[[list[Any]], Iterable[Any]] | None = None,
                          file: IO[str] | None = None) -> None:
        """Print as bcc's ``print_linear_hist``: one ``value : count |stars|`` line per slot.

        :param val_type: the column header.
        :param file: where to print (default stdout).
        """
        print(self.format_linear_hist(val_type, section_header, section_print_fn, bucket_sort_fn),
              end="", file=file or sys.stdout)

    def format(self, val_type: str = "value", **options: Any) -> str:
        """:meth:`format_log2_hist` or :meth:`format_linear_hist`, by kind."""
        if self.kind == "log2":
            return self.format_log2_hist(val_type, **options)
        return self.format_linear_hist(val_type, **options)

    def rich_table(self, val_type: str = "value", title: str | None = None) -> Any:
        """A ``rich`` Table of the merged counts (ranges, counts, bars) for terminals.

        :raises EBPFError: when ``rich`` is not installed (``pip install rich``).
        """
        try:
            from rich.table import Table
        except ImportError:
            raise EBPFError("rich rendering needs the 'rich' package (pip install rich)") from None
        table = Table(title=title, show_edge=False)
        table.add_column(val_type, justify="right")
        table.add_column("count", justify="right")
        table.add_column("distribution")
        counts = self.counts
        peak = max(counts, default=0) or 1
        first = next((i for i, c in enumerate(counts) if c), len(counts))
        for i in range(first, len(counts)):
            lo, hi = self.slot_range(i)
            bar = "█" * round(STARS_MAX * counts[i] / peak)
            table.add_row(f"{lo} -> {hi}" if self.kind == "log2" else str(lo), str(counts[i]), f"[green]{bar}[/]")
        return table

    def __rich__(self) -> Any:
        return self.rich_table()

    def __repr__(self) -> str:
        return f"Histogram(kind={self.kind!r}, total={self.total}, sections={len(self._sections)})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Histogram):
            return NotImplemented
        strip = {k: _trim(v) for k, v in self._sections.items()}
        return (self.kind, self.step, self.base, strip) == \
            (other.kind, other.step, other.base, {k: _trim(v) for k, v in other._sections.items()})

    __hash__ = None  # type: ignore[assignment]


def _trim(values: list[int]) -> list[int]:
    end = len(values)
    while end and not values[end - 1]:
        end -= 1
    return values[:end]
