"""Where the built-in configurations live, without importing the exporter (the ``ebpf`` CLI lists them)."""

from __future__ import annotations

import os

__all__ = ["DIRECTORY", "builtin_names"]

#: The package's ``builtin`` directory (``exporter.BUILTIN_DIR`` is the same, as a Path).
DIRECTORY = os.path.join(os.path.dirname(os.path.realpath(__file__)), "builtin")


def builtin_names() -> list[str]:
    """The built-in configurations shipped with the package (``ebpf export --builtin NAME``)."""
    try:
        names = os.listdir(DIRECTORY)
    except OSError:
        return []
    return sorted(n[: -len(".yaml")] for n in names if n.endswith(".yaml") and not n.startswith("."))
