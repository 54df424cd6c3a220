"""Kernel programs written in Python: a restricted-Python-to-BPF compiler in pure Python (no LLVM).

::

    from ebpf.lang import bpf, kernel, u32, u64, HashMap, ctx_types as ct

    counts = HashMap(u32, u64, max_entries=10240)

    @kernel("tracepoint/syscalls/sys_enter_openat")
    def count_opens(ctx: ct.trace_event_raw_sys_enter) -> int:
        pid = bpf.get_current_pid_tgid() >> 32
        counts[pid] += 1            # an atomic add; counts.increment(pid) says the same
        return 0

    coll = ebpf.lang.load(sys.modules[__name__])    # maps shared by the module's programs
    link = coll.programs["count_opens"].attach()

The subset: explicit-width integers, arithmetic, comparisons, ``if``/``elif``/``else``,
``and``/``or``/``not``, early ``return``, ``for i in range(N)`` (unrolled), locals, structs
(:class:`Struct`), fixed arrays and ``char[N]`` strings, module-level maps, ring buffers and
perf arrays, ``bpf.<helper>(...)``, contexts typed from the kernel's BTF and packet headers
through ``ctx.header(T, offset)`` (bounds checks inserted).  Anything else is a
:class:`LangError` naming the file, line and column and saying what to write instead.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ebpf.lang.ctx import CtxType, ctx_types
    from ebpf.lang.errors import LangError
    from ebpf.lang.helpers import bpf
    from ebpf.lang.inline import inline
    from ebpf.lang.kernel import CompiledModule, CompiledProgram, KernelFunction, compile_module, kernel, load
    from ebpf.lang.maps import (
        ArrayMap,
        BloomFilter,
        HashMap,
        LruHashMap,
        LruPerCpuHashMap,
        Map,
        MapDecl,
        PerCpuArrayMap,
        PerCpuHashMap,
        PerfEventArray,
        QueueMap,
        RingBuf,
        StackMap,
    )
    from ebpf.lang.source import source_module
    from ebpf.lang.types import Struct, char, i8, i16, i32, i64, u8, u16, u32, u64

# Submodules and the names re-exported from them, imported on first use: importing the package
# (its plugin, say) costs nothing until a name is used.
_MODULES: list[str] = []
_NAMES = {
    "ArrayMap": "maps",
    "BloomFilter": "maps",
    "CompiledModule": "kernel",
    "CompiledProgram": "kernel",
    "CtxType": "ctx",
    "HashMap": "maps",
    "KernelFunction": "kernel",
    "LangError": "errors",
    "LruHashMap": "maps",
    "LruPerCpuHashMap": "maps",
    "Map": "maps",
    "MapDecl": "maps",
    "PerCpuArrayMap": "maps",
    "PerCpuHashMap": "maps",
    "PerfEventArray": "maps",
    "QueueMap": "maps",
    "RingBuf": "maps",
    "StackMap": "maps",
    "Struct": "types",
    "bpf": "helpers",
    "char": "types",
    "compile_module": "kernel",
    "ctx_types": "ctx",
    "i16": "types",
    "i32": "types",
    "i64": "types",
    "i8": "types",
    "load": "kernel",
    "source_module": "source",
    "u16": "types",
    "u32": "types",
    "u64": "types",
    "u8": "types",
}

__all__ = [
    "ArrayMap", "BloomFilter", "QueueMap", "StackMap", "CompiledModule", "CompiledProgram", "CtxType", "HashMap", "KernelFunction", "LangError",
    "LruHashMap", "LruPerCpuHashMap", "Map", "MapDecl", "PerCpuArrayMap", "PerCpuHashMap", "PerfEventArray",
    "RingBuf", "Struct", "bpf", "char", "compile", "compile_module", "ctx_types", "i8", "i16", "i32", "i64",
    "inline", "kernel", "load", "source_module", "u8", "u16", "u32", "u64",
]


def compile(source: object, path: str | None = None) -> bytes:
    """Compile a module's kernel functions into an ELF object (as clang would write it).

    The object has one section per program, BTF-defined maps in ``.maps``, ``.BTF`` and
    ``.BTF.ext`` (func_info and line_info), a license and map relocations, so ``load_elf``
    and libbpf-based tools load it.

    :param source: a module, a kernel function, or several.
    :param path: also write the object there.
    :returns: the object file's bytes.
    :raises LangError: for code outside the subset.
    """
    from ebpf.lang.elfwriter import write_elf
    from ebpf.lang.kernel import compile_module

    data = write_elf(compile_module(source))  # type: ignore[arg-type]
    if path is not None:
        with open(path, "wb") as f:
            f.write(data)
    return data


def __getattr__(name: str) -> Any:
    if name in _MODULES:
        value = importlib.import_module(f"ebpf.lang.{name}")
    elif name in _NAMES:
        value = getattr(importlib.import_module(f"ebpf.lang.{_NAMES[name]}"), name)
    else:
        raise AttributeError(f"module 'ebpf.lang' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


def _function_not_module(name: str) -> property:
    """The function ``name`` of the submodule of the same name, whatever the import system binds."""

    def get(self: types.ModuleType) -> Any:
        return getattr(importlib.import_module(f"ebpf.lang.{name}"), name)

    def ignore(self: types.ModuleType, value: Any) -> None:
        pass  # the import system binding the submodule ebpf.lang.<name> on the package

    return property(get, ignore)


class _Package(types.ModuleType):
    """``ebpf.lang.kernel`` and ``ebpf.lang.inline`` stay the decorators: importing the submodules of
    the same names binds the package's attributes to the modules, which these properties ignore."""

    kernel = _function_not_module("kernel")
    inline = _function_not_module("inline")


sys.modules[__name__].__class__ = _Package
