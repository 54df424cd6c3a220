"""Entry points of the installed distributions, read from the ``*.dist-info``/``*.egg-info`` directories.

:mod:`importlib.metadata` answers the same question, but importing it (email, zipfile, csv,
pathlib ...) costs more than the rest of a cold ``load_elf``.  This reads the same files the
same way (``sys.path`` in order, distributions in directory order, the first of a name wins) and
hands the question to :mod:`importlib.metadata` whenever ``sys.path`` holds anything but
directories or a finder other than the standard one provides distributions.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
from typing import Any

from ebpf.core.records import dataclass

__all__ = ["EntryPoint", "entry_points"]


@dataclass(frozen=True)
class EntryPoint:
    """One entry point: ``name = value`` of a group, and the distribution that declares it."""

    name: str
    value: str
    dist_name: str

    def load(self) -> Any:
        """Import the module of ``value`` (``module`` or ``module:attr.attr``) and return the object."""
        spec = self.value.split("[", 1)[0]  # extras do not change what is loaded
        module, _, attr = spec.partition(":")
        obj: Any = importlib.import_module(module.strip())
        for part in filter(None, attr.strip().split(".")):
            obj = getattr(obj, part)
        return obj


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower().replace("-", "_")


def _standard_only() -> bool:
    from importlib.machinery import PathFinder  # deferred: start-up time (only this path needs it)

    for finder in sys.meta_path:
        if finder is not PathFinder and getattr(finder, "find_distributions", None) is not None:
            return False
    return all(os.path.isdir(p or ".") or not os.path.exists(p or ".") for p in sys.path)


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read()
    except (OSError, UnicodeDecodeError):
        return ""


def _dist_name(info: str, stem: str) -> str:
    for meta in ("METADATA", "PKG-INFO"):
        text = _read(os.path.join(info, meta))
        for line in text.splitlines():
            if not line.strip():
                break  # end of the headers
            key, _, value = line.partition(":")
            if key.strip().lower() == "name":
                return value.strip()
    return stem


def _group(text: str, group: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    current: str | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = line[1:-1].strip()
        elif current == group and "=" in line:
            name, _, value = line.partition("=")
            out.append((name.strip(), value.strip()))
    return out


def entry_points(group: str) -> list[EntryPoint]:
    """The entry points of ``group``, as ``importlib.metadata.entry_points(group=group)`` lists them."""
    if not _standard_only():
        import importlib.metadata  # deferred: start-up time (only this path needs it)

        return [EntryPoint(ep.name, ep.value, ep.dist.name if ep.dist is not None else "")
                for ep in importlib.metadata.entry_points(group=group)]
    seen: set[str] = set()
    found: list[EntryPoint] = []
    for entry in sys.path:
        root = entry or "."
        try:
            children = os.listdir(root)
        except OSError:
            continue
        infos: dict[str, list[str]] = {}
        for child in children:
            low = child.lower()
            if low.endswith((".dist-info", ".egg-info")):
                infos.setdefault(_normalize(low.rpartition(".")[0].partition("-")[0]), []).append(child)
        for normalized, dirs in infos.items():
            for child in dirs:
                if normalized in seen:
                    break
                info = os.path.join(root, child)
                seen.add(normalized)
                pairs = _group(_read(os.path.join(info, "entry_points.txt")), group)
                if pairs:
                    dist = _dist_name(info, child.partition("-")[0])
                    found.extend(EntryPoint(name, value, dist) for name, value in pairs)
    return found
