"""Kernel functions from source text: for ``python -c``, notebooks and documentation.

The compiler reads a function's source through :mod:`inspect`, which needs a file.  Source
given as a string is registered in :mod:`linecache` under a made-up file name, so the functions
defined in it compile like any others (and error messages and line_info name that file).
"""

from __future__ import annotations

import itertools
import linecache
import sys
import types

__all__ = ["source_module"]

_COUNTER = itertools.count(1)


def source_module(text: str, name: str = "", filename: str = "") -> types.ModuleType:
    """Execute ``text`` as a new module and return it (its ``@kernel`` functions compile).

    :param text: Python source: imports, maps, structs and ``@kernel`` functions.
    :param name: the module's name (default ``kernel_module_<n>``).
    :param filename: the file name errors and line_info show (default ``<name>.py``).
    :returns: the module (``ebpf.lang.load(module)`` loads its programs).
    """
    name = name or f"kernel_module_{next(_COUNTER)}"
    filename = filename or f"{name}.py"
    lines = text.splitlines(keepends=True)
    linecache.cache[filename] = (len(text), None, lines, filename)
    module = types.ModuleType(name)
    module.__file__ = filename
    sys.modules[name] = module  # Struct annotations and dataclass-like lookups resolve through it
    exec(compile(text, filename, "exec"), module.__dict__)  # the caller's own program text
    return module
