"""ebpf-core: eBPF for Python through the ``bpf()`` syscall and ctypes.

Use it as ``import ebpf.core as bpf``.  Names are imported lazily on first use, so
``import ebpf.core`` stays cheap (the ``ebpf`` command starts fast) and a user who
only needs maps never pays for the assembler or the BTF parser.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# name -> defining submodule (relative to ebpf.core)
_EXPORTS: dict[str, str] = {}


def _export(module: str, *names: str) -> None:
    for name in names:
        _EXPORTS[name] = module


_export(
    "errors",
    "EBPFError",
    "BPFSyscallError",
    "KeyNotFoundError",
    "MapFullError",
    "VerifierError",
    "NotSupportedError",
    "UnsupportedFeatureError",
    "ProbeInconclusiveError",
    "ELFError",
    "BTFError",
    "AsmError",
    "AttachError",
    "PluginError",
)
_export("types", "MapType", "ProgType", "AttachType", "LinkType", "Helper")
_export(
    "system",
    "SystemInfo",
    "init",
    "check_bpf_available",
    "kernel_version",
    "cpu_count",
    "bpf_fs_mounted",
    "ensure_bpf_fs",
    "ensure_tracefs",
    "ensure_securityfs",
)
_export(
    "maps",
    "MapSpec",
    "Map",
    "MapInfo",
    "create_map",
    "create_hash_map",
    "create_array_map",
    "create_lru_hash_map",
    "create_percpu_hash_map",
    "create_percpu_array_map",
    "create_lru_percpu_hash_map",
    "create_stack_map",
    "create_stack_trace_map",
    "StackTraceMap",
    "create_queue_map",
    "create_lpm_trie_map",
    "create_ringbuf_map",
    "create_perf_event_array",
    "create_prog_array",
    "create_array_of_maps",
    "create_hash_of_maps",
    "create_bloom_filter_map",
    "percpu_sum",
    "percpu_max",
    "percpu_min",
    "percpu_avg",
    "stack_push",
    "stack_pop",
    "stack_peek",
    "queue_push",
    "queue_pop",
    "queue_peek",
    "dump_map",
)
_export("codecs", "make_event_parser", "make_event_serializer")
_export("programs", "ProgramSpec", "Program", "ProgramInfo", "TestRunResult", "load_program")
_export("links", "Link", "BPFLink", "PerfEventLink", "CallbackLink", "LinkInfo", "create_link", "enable_stats")
_export("plugins", "hookimpl", "plugin_manager", "load", "open_events", "AttachBackend")
_export("collection", "Collection", "CollectionSpec", "CollectionOptions")
_export("arena", "ArenaMap", "create_arena_map")
_export("token", "Token", "create_token")
_export("fdowner", "FdOwner", "ResourceOwner")
_export("struct_ops", "StructOpsMap", "StructOpsLink", "create_struct_ops_map", "list_struct_ops")

# ``maps``, ``programs`` and ``links`` are both submodules and (callable, see _callable.py)
# the enumeration functions API.md promises: ``bpf.maps()``.
_SUBMODULES = {"asm", "btf", "features", "codecs", "errors", "types", "system", "plugins", "hookspecs", "pins", "maps", "programs", "links",
               "extension", "lowlevel", "fdowner"}

__all__ = sorted(_EXPORTS) + sorted(_SUBMODULES)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is not None:
        value = getattr(importlib.import_module(f"ebpf.core.{module}"), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f"ebpf.core.{name}")
    else:
        raise AttributeError(f"module 'ebpf.core' has no attribute {name!r}")
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return __all__


if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from ebpf.core import (
        asm,
        btf,
        codecs,
        errors,
        extension,
        fdowner,
        features,
        hookspecs,
        lowlevel,
        pins,
        plugins,
        system,
        types,
    )
    from ebpf.core.arena import ArenaMap, create_arena_map
    from ebpf.core.codecs import make_event_parser, make_event_serializer
    from ebpf.core.collection import Collection, CollectionOptions, CollectionSpec
    from ebpf.core.errors import (
        AsmError,
        AttachError,
        BPFSyscallError,
        BTFError,
        EBPFError,
        ELFError,
        KeyNotFoundError,
        MapFullError,
        NotSupportedError,
        PluginError,
        ProbeInconclusiveError,
        UnsupportedFeatureError,
        VerifierError,
    )
    from ebpf.core.fdowner import FdOwner, ResourceOwner
    from ebpf.core.links import BPFLink, CallbackLink, Link, LinkInfo, PerfEventLink, create_link, enable_stats, links
    from ebpf.core.maps import (
        Map,
        MapInfo,
        MapSpec,
        StackTraceMap,
        create_array_map,
        create_array_of_maps,
        create_bloom_filter_map,
        create_hash_map,
        create_hash_of_maps,
        create_lpm_trie_map,
        create_lru_hash_map,
        create_lru_percpu_hash_map,
        create_map,
        create_percpu_array_map,
        create_percpu_hash_map,
        create_perf_event_array,
        create_prog_array,
        create_queue_map,
        create_ringbuf_map,
        create_stack_map,
        create_stack_trace_map,
        dump_map,
        maps,
        percpu_avg,
        percpu_max,
        percpu_min,
        percpu_sum,
        queue_peek,
        queue_pop,
        queue_push,
        stack_peek,
        stack_pop,
        stack_push,
    )
    from ebpf.core.plugins import AttachBackend, hookimpl, load, open_events, plugin_manager
    from ebpf.core.programs import Program, ProgramInfo, ProgramSpec, TestRunResult, load_program, programs
    from ebpf.core.struct_ops import StructOpsLink, StructOpsMap, create_struct_ops_map, list_struct_ops
    from ebpf.core.system import (
        SystemInfo,
        bpf_fs_mounted,
        check_bpf_available,
        cpu_count,
        ensure_bpf_fs,
        ensure_securityfs,
        ensure_tracefs,
        init,
        kernel_version,
    )
    from ebpf.core.token import Token, create_token
    from ebpf.core.types import AttachType, Helper, LinkType, MapType, ProgType
