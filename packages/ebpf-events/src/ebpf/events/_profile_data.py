"""What a profiler returns: :class:`Profile` (samples, folded stacks, top functions, flame graph, speedscope)."""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterable
from typing import Any, NamedTuple

from ebpf.core.records import dataclass, field

__all__ = ["Frame", "Sample", "FunctionStat", "Profile"]

#: folded-stack suffixes flamegraph.pl's palettes understand (``--color=java``)
_SUFFIX = {"kernel": "_[k]", "jit": "_[j]"}


class Frame(NamedTuple):
    """One stack frame: function ``name`` (``"[unknown]"`` when it cannot be named), ``module``,
    ``kind`` ("kernel", "user" or "jit") and the raw ``address``."""

    name: str
    module: str
    kind: str
    address: int


@dataclass
class Sample:
    """One distinct stack and its weight: ``value`` samples (CPU) or microseconds (off-CPU).

    ``user`` and ``kernel`` are innermost first, as the kernel records them.
    """

    pid: int
    comm: str
    user: list[Frame]
    kernel: list[Frame]
    value: int

    def frames(self) -> list[Frame]:
        """Root first: user frames from the outermost, then the kernel frames it called."""
        return self.user[::-1] + self.kernel[::-1]


class FunctionStat(NamedTuple):
    """A function's ``self`` weight (at the top of the stack) and ``total`` (anywhere on it)."""

    name: str
    module: str
    self: int
    total: int


def _label(frame: Frame) -> str:
    return frame.name + _SUFFIX.get(frame.kind, "")


@dataclass
class Profile:
    """Stacks with weights.

    :ivar samples: one :class:`Sample` per distinct (pid, comm, user stack, kernel stack).
    :ivar unit: ``"samples"`` or ``"us"`` (microseconds off-CPU).
    :ivar kind: ``"cpu"`` or ``"offcpu"``.
    :ivar warnings: why some frames are unnamed or stacks missing (partial results, never a crash).
    :ivar errors: lost stacks by bpf_get_stackid error, with their weight.
    """

    samples: list[Sample]
    unit: str = "samples"
    kind: str = "cpu"
    duration: float = 0.0
    warnings: list[str] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        """The sum of every sample's weight."""
        return sum(s.value for s in self.samples)

    def for_pid(self, pid: int) -> Profile:
        """The samples of process ``pid`` alone (same unit, warnings and errors)."""
        return Profile([s for s in self.samples if s.pid == pid], self.unit, self.kind, self.duration,
                       list(self.warnings), dict(self.errors))

    def stacks(self, include_comm: bool = True) -> Counter[tuple[str, ...]]:
        """Weights by root-first frame labels (kernel frames end in ``_[k]``, JIT frames in ``_[j]``)."""
        out: Counter[tuple[str, ...]] = Counter()
        for s in self.samples:
            labels = tuple(_label(f) for f in s.frames())
            if include_comm:
                labels = (s.comm or f"pid {s.pid}", *labels)
            out[labels] += s.value
        return out

    def folded(self, include_comm: bool = True) -> str:
        """The folded-stack text flamegraph.pl, speedscope and inferno read: ``comm;f1;f2 weight`` lines."""
        lines = [f"{';'.join(k).replace(chr(10), ' ')} {v}" for k, v in sorted(self.stacks(include_comm).items())]
        return "\n".join(lines) + ("\n" if lines else "")

    def top(self, n: int = 10) -> list[FunctionStat]:
        """The ``n`` hottest functions by self weight (ties by total), each counted once per stack."""
        selfw: Counter[tuple[str, str]] = Counter()
        total: Counter[tuple[str, str]] = Counter()
        for s in self.samples:
            frames = s.frames()
            if not frames:
                continue
            leaf = frames[-1]
            selfw[leaf.name, leaf.module] += s.value
            for key in {(f.name, f.module) for f in frames}:
                total[key] += s.value
        ranked = sorted(total, key=lambda k: (-selfw[k], -total[k], k))
        return [FunctionStat(name, module, selfw[name, module], total[name, module]) for name, module in ranked[:n]]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: unit, kind, duration, total, warnings, errors, and every stack."""
        return {
            "kind": self.kind, "unit": self.unit, "duration": round(self.duration, 3), "total": self.total,
            "warnings": self.warnings, "errors": self.errors,
            "samples": [{"pid": s.pid, "comm": s.comm, "value": s.value,
                         "frames": [{"name": f.name, "module": f.module, "kind": f.kind, "address": f.address}
                                    for f in s.frames()]} for s in self.samples],
        }

    def flamegraph(self, path: str | os.PathLike[str] | None = None, *, title: str | None = None,
                   width: int = 1200) -> str:
        """An interactive flame graph as a self-contained SVG (click to zoom, Ctrl-F/search, tooltips).

        :param path: where to write it (None: only return the text).
        :param title: the heading (default: "CPU profile" / "Off-CPU time").
        :returns: the SVG text.
        """
        from ebpf.events._flamegraph import render_svg

        default = "Off-CPU time" if self.kind == "offcpu" else "CPU profile"
        svg = render_svg(self.stacks(), title=title or default, unit=self.unit, width=width)
        if path is not None:
            with open(path, "w", encoding="utf-8") as fh:
                fh.write(svg)
        return svg

    def speedscope(self, path: str | os.PathLike[str] | None = None, *, name: str | None = None) -> dict[str, Any]:
        """The profile in speedscope's JSON format (https://www.speedscope.app), one sampled profile.

        :param path: where to write it (None: only return the dict).
        :returns: the JSON document as a dict.
        """
        frames: list[dict[str, str]] = []
        index: dict[tuple[str, str], int] = {}
        stacks, weights = [], []
        for s in self.samples:
            ids = []
            for f in [Frame(s.comm or f"pid {s.pid}", "", "comm", 0), *s.frames()]:
                key = (f.name, f.module)
                if key not in index:
                    index[key] = len(frames)
                    frames.append({"name": f.name, "file": f.module} if f.module else {"name": f.name})
                ids.append(index[key])
            stacks.append(ids)
            weights.append(s.value)
        unit = "microseconds" if self.unit == "us" else "none"
        doc = {
            "$schema": "https://www.speedscope.app/file-format-schema.json",
            "exporter": "ebpf.events.profile", "name": name or self.kind, "activeProfileIndex": 0,
            "shared": {"frames": frames},
            "profiles": [{"type": "sampled", "name": name or self.kind, "unit": unit, "startValue": 0,
                          "endValue": sum(weights), "samples": stacks, "weights": weights}],
        }
        if path is not None:
            with open(path, "w", encoding="utf-8") as fh:
                json.dump(doc, fh)
        return doc


def parse_folded(lines: Iterable[str]) -> Counter[tuple[str, ...]]:
    """Read folded stacks (``a;b;c 12`` lines) back into weights by frame tuple; bad lines are skipped."""
    out: Counter[tuple[str, ...]] = Counter()
    for line in lines:
        stack, _, count = line.rstrip("\n").rpartition(" ")
        if stack and count.isdigit():
            out[tuple(stack.split(";"))] += int(count)
    return out
