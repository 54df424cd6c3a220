"""Which interpreter a benchmark ran on (figures compare only within one interpreter and one run)."""

from __future__ import annotations

import json
import platform
import sys
import sysconfig

#: ``"<executable> <version>"``, put on every figure.
PYTHON = f"{sys.executable} {sys.version.split()[0]}"


def interpreter() -> dict[str, object]:
    """The running interpreter: path, version, build flags.

    ``pgo`` is whether ``configure`` ran with ``--enable-optimizations``.  Distribution builds
    (Debian's ``/usr/bin/python3``) do their PGO/LTO in their own build rules, not through that
    flag, so they show ``false`` here; ``distribution`` says whether it is one of those.
    """
    config = sysconfig.get_config_var("CONFIG_ARGS") or ""
    base = getattr(sys, "_base_executable", sys.executable)
    return {
        "interpreter": sys.executable,
        "base_executable": base,
        "version": platform.python_version(),
        "implementation": platform.python_implementation(),
        "pgo": "--enable-optimizations" in config,
        "lto": "--with-lto" in config,
        "distribution": sys.base_prefix == "/usr",
    }


def print_interpreter(bench: str) -> None:
    """Print the interpreter as the benchmark's first JSON line."""
    print(json.dumps({"bench": bench, **interpreter()}), flush=True)
