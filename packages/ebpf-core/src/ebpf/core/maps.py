"""BPF maps: ``MapSpec``, ``Map`` and its kinds, ``create_map`` and the convenience constructors.

    >>> import ebpf.core as bpf
    >>> with bpf.create_hash_map(1024) as m:     # u32 -> u32 by default
    ...     m[1] = 10
    ...     m.lookup(1), 2 in m, len(m)
    (10, False, 1)

Keys and values go through codecs (:mod:`ebpf.core.codecs`).  When none is given, sizes 4
and 8 are ``u32``/``u64`` ints and every other size is raw bytes.  Single operations run on
preallocated buffers (see ``ebpf.core._maps.fastpath``); bulk reads use BPF_MAP_*_BATCH.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, TypeVar

from ebpf.core._maps.base import Map, MapInfo, MapSpec, parse_update_flags
from ebpf.core._maps.batch import raw_keys
from ebpf.core._maps.create import MAP_FLAGS, create_map, parse_map_flags, wrap_fd
from ebpf.core._maps.kinds import (
    BloomFilterMap,
    FdArrayMap,
    LPMKeyCodec,
    LPMTrieMap,
    MmapArrayMap,
    PerCPUMap,
    QueueMap,
    RingBufMap,
)
from ebpf.core._maps.layout import decode_percpu, encode_percpu
from ebpf.core._maps.stacktrace import BUILD_ID_FRAME_SIZE, BuildIdFrame, StackTraceMap, stack_id_error
from ebpf.core._sys import commands
from ebpf.core.errors import EBPFError
from ebpf.core.system import cpu_count
from ebpf.core.types import MapType

__all__ = [
    "MapSpec", "Map", "MapInfo", "PerCPUMap", "QueueMap", "BloomFilterMap", "LPMTrieMap", "FdArrayMap",
    "MmapArrayMap", "RingBufMap", "LPMKeyCodec", "MAP_FLAGS", "create_map", "create_hash_map", "create_array_map",
    "create_lru_hash_map", "create_percpu_hash_map", "create_percpu_array_map", "create_lru_percpu_hash_map",
    "create_stack_map", "create_queue_map", "create_lpm_trie_map", "create_ringbuf_map", "create_perf_event_array",
    "create_prog_array", "create_array_of_maps", "create_hash_of_maps", "create_bloom_filter_map", "percpu_sum",
    "percpu_max", "percpu_min", "percpu_avg", "stack_push", "stack_pop", "stack_peek", "queue_push", "queue_pop",
    "queue_peek", "dump_map", "maps", "parse_map_flags", "parse_update_flags", "encode_percpu", "decode_percpu",
    "wrap_fd", "StackTraceMap", "BuildIdFrame", "stack_id_error", "create_stack_trace_map",
]


_M = TypeVar("_M", bound=Map)


def _kv(map_type: MapType, max_entries: int, key_size: int, value_size: int, **kw: Any) -> Map:
    return create_map(map_type=map_type, max_entries=max_entries, key_size=key_size, value_size=value_size, **kw)


def _typed(kind: type[_M], m: Map) -> _M:
    assert isinstance(m, kind)
    return m


def create_hash_map(max_entries: int, *, key_size: int = 4, value_size: int = 4, name: str = "", **kw: Any) -> Map:
    """A hash map (BPF_MAP_TYPE_HASH).  Other :class:`MapSpec` fields (codecs, flags ...) as keywords."""
    return _kv(MapType.HASH, max_entries, key_size, value_size, name=name, **kw)


def create_array_map(max_entries: int, *, value_size: int = 4, name: str = "", mmapable: bool = False,
                     **kw: Any) -> Map:
    """An array map (u32 index keys, every slot present, zero-filled).

    :param mmapable: create it BPF_F_MMAPABLE: lookups/updates then go through a shared mmap with no
        syscall, and :meth:`MmapArrayMap.mmap` gives the memory. Requires Linux >= 5.5.
    """
    kw.setdefault("key_size", 4)
    return _kv(MapType.ARRAY, max_entries, kw.pop("key_size"), value_size, name=name, mmapable=mmapable, **kw)


def create_lru_hash_map(max_entries: int, *, key_size: int = 4, value_size: int = 4, name: str = "",
                        **kw: Any) -> Map:
    """An LRU hash map: full maps evict the least recently used entry instead of failing."""
    return _kv(MapType.LRU_HASH, max_entries, key_size, value_size, name=name, **kw)


def create_percpu_hash_map(max_entries: int, *, key_size: int = 4, value_size: int = 4, name: str = "",
                           **kw: Any) -> PerCPUMap:
    """A per-CPU hash map: values are lists with one entry per possible CPU."""
    return _typed(PerCPUMap, _kv(MapType.PERCPU_HASH, max_entries, key_size, value_size, name=name, **kw))


def create_percpu_array_map(max_entries: int, *, value_size: int = 4, name: str = "", **kw: Any) -> PerCPUMap:
    """A per-CPU array map: values are lists with one entry per possible CPU."""
    kw.setdefault("key_size", 4)
    m = _kv(MapType.PERCPU_ARRAY, max_entries, kw.pop("key_size"), value_size, name=name, **kw)
    return _typed(PerCPUMap, m)


def create_lru_percpu_hash_map(max_entries: int, *, key_size: int = 4, value_size: int = 4, name: str = "",
                               **kw: Any) -> PerCPUMap:
    """A per-CPU LRU hash map."""
    return _typed(PerCPUMap, _kv(MapType.LRU_PERCPU_HASH, max_entries, key_size, value_size, name=name, **kw))


def create_stack_map(max_entries: int, *, value_size: int = 4, name: str = "", **kw: Any) -> QueueMap:
    """A stack (LIFO) map: ``push``/``pop``/``peek``. Requires Linux >= 4.20."""
    return _typed(QueueMap, _kv(MapType.STACK, max_entries, 0, value_size, name=name, **kw))


def create_stack_trace_map(max_entries: int, depth: int = 127, build_id: bool = False, *, name: str = "",
                           **kw: Any) -> StackTraceMap:
    """A stack trace map (BPF_MAP_TYPE_STACK_TRACE) for ``bpf_get_stackid``; not the LIFO :func:`create_stack_map`.

    :param max_entries: how many distinct stacks it holds.
    :param depth: frames per stack (1..127, the kernel's default sysctl perf_event_max_stack).
    :param build_id: store (build id, file offset) frames instead of addresses (BPF_F_STACK_BUILD_ID).
    :returns: a :class:`StackTraceMap`; ``m.stack(stack_id)`` gives the frames.
    :raises EBPFError: on a bad depth (before any syscall).
    """
    if isinstance(depth, bool) or not isinstance(depth, int) or not 1 <= depth <= 127:
        raise EBPFError(f"stack depth must be an int in 1..127, got {depth!r}")
    frame = BUILD_ID_FRAME_SIZE if build_id else 8
    flags = parse_map_flags(kw.pop("flags", 0)) | (MAP_FLAGS["stack_build_id"] if build_id else 0)
    m = _kv(MapType.STACK_TRACE, max_entries, 4, depth * frame, name=name, flags=flags, **kw)
    return _typed(StackTraceMap, m)


def create_queue_map(max_entries: int, *, value_size: int = 4, name: str = "", **kw: Any) -> QueueMap:
    """A queue (FIFO) map: ``push``/``pop``/``peek``. Requires Linux >= 4.20."""
    return _typed(QueueMap, _kv(MapType.QUEUE, max_entries, 0, value_size, name=name, **kw))


def create_lpm_trie_map(max_entries: int, *, key_size: int = 8, value_size: int = 4, name: str = "",
                        **kw: Any) -> LPMTrieMap:
    """A longest-prefix-match trie; ``key_size`` 8 for IPv4 (4 + 4 bytes), 20 for IPv6.

    Keys are ``ipaddress`` networks, strings ("10.0.0.0/8") or ``(prefix_len, bytes)``.  BPF_F_NO_PREALLOC
    is added (the kernel requires it).
    """
    kw["flags"] = parse_map_flags(kw.get("flags", 0)) | MAP_FLAGS["no_prealloc"]
    return _typed(LPMTrieMap, _kv(MapType.LPM_TRIE, max_entries, key_size, value_size, name=name, **kw))


def create_ringbuf_map(size_bytes: int, *, name: str = "", **kw: Any) -> RingBufMap:
    """A BPF ring buffer of ``size_bytes`` (a power of 2, multiple of the page size). Requires Linux >= 5.8."""
    return _typed(RingBufMap, _kv(MapType.RINGBUF, size_bytes, 0, 0, name=name, **kw))


def create_perf_event_array(cpus: int | None = None, *, name: str = "", **kw: Any) -> FdArrayMap:
    """A perf event array with one slot per CPU (``cpus`` defaults to the possible CPUs)."""
    n = cpus if cpus is not None else cpu_count()
    return _typed(FdArrayMap, _kv(MapType.PERF_EVENT_ARRAY, n, 4, 4, name=name, **kw))


def create_prog_array(max_entries: int, *, name: str = "", **kw: Any) -> FdArrayMap:
    """A program array for tail calls: ``m[i] = program`` (or its fd); lookups give program ids."""
    return _typed(FdArrayMap, _kv(MapType.PROG_ARRAY, max_entries, 4, 4, name=name, **kw))


def create_array_of_maps(max_entries: int, inner_map: Map | MapSpec, *, name: str = "", **kw: Any) -> FdArrayMap:
    """An array of maps; ``inner_map`` is the template of its values (``m[i] = a_map``; lookups give map ids)."""
    return _typed(FdArrayMap, _kv(MapType.ARRAY_OF_MAPS, max_entries, 4, 4, name=name, inner_map=inner_map, **kw))


def create_hash_of_maps(max_entries: int, inner_map: Map | MapSpec, *, key_size: int = 4, name: str = "",
                        **kw: Any) -> FdArrayMap:
    """A hash of maps; ``inner_map`` is the template of its values."""
    m = _kv(MapType.HASH_OF_MAPS, max_entries, key_size, 4, name=name, inner_map=inner_map, **kw)
    return _typed(FdArrayMap, m)


def create_bloom_filter_map(max_entries: int, *, value_size: int = 4, hash_functions: int = 0, name: str = "",
                            **kw: Any) -> BloomFilterMap:
    """A bloom filter: ``push(value)``, ``value in bf``. Requires Linux >= 5.16.

    :param hash_functions: 1..15 (``map_extra``); 0 lets the kernel choose (5).
    """
    if not isinstance(hash_functions, int) or not 0 <= hash_functions <= 15:
        raise EBPFError(f"hash_functions must be 0..15, got {hash_functions!r}")
    m = _kv(MapType.BLOOM_FILTER, max_entries, 0, value_size, name=name, map_extra=hash_functions, **kw)
    return _typed(BloomFilterMap, m)


# -- per-CPU helpers ----------------------------------------------------------------------------
def _numbers(values: Sequence[Any]) -> Sequence[Any]:
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not values:
        raise EBPFError(f"expected a non-empty list of per-CPU values, got {values!r}")
    return values


def percpu_sum(values: Sequence[Any]) -> Any:
    """The sum of per-CPU values."""
    return sum(_numbers(values))


def percpu_max(values: Sequence[Any]) -> Any:
    """The largest per-CPU value."""
    return max(_numbers(values))


def percpu_min(values: Sequence[Any]) -> Any:
    """The smallest per-CPU value."""
    return min(_numbers(values))


def percpu_avg(values: Sequence[Any]) -> float:
    """The mean of per-CPU values."""
    import statistics  # not at import time: it pulls in fractions and decimal

    return statistics.fmean(_numbers(values))


# -- stack/queue helpers ------------------------------------------------------------------------
def _queue(m: Map, kind: MapType) -> QueueMap:
    if not isinstance(m, QueueMap) or m.map_type != kind:
        raise EBPFError(f"expected a {kind.lower_name} map, got {m!r}")
    return m


def stack_push(m: Map, value: Any, flags: str | int = "any") -> None:
    """Push ``value`` on a stack map."""
    _queue(m, MapType.STACK).push(value, flags)


def stack_pop(m: Map) -> Any:
    """Pop from a stack map (None when empty)."""
    return _queue(m, MapType.STACK).pop()


def stack_peek(m: Map) -> Any:
    """The top of a stack map (None when empty)."""
    return _queue(m, MapType.STACK).peek()


def queue_push(m: Map, value: Any, flags: str | int = "any") -> None:
    """Append ``value`` to a queue map."""
    _queue(m, MapType.QUEUE).push(value, flags)


def queue_pop(m: Map) -> Any:
    """Take the head of a queue map (None when empty)."""
    return _queue(m, MapType.QUEUE).pop()


def queue_peek(m: Map) -> Any:
    """The head of a queue map (None when empty)."""
    return _queue(m, MapType.QUEUE).peek()


# -- inspection ---------------------------------------------------------------------------------
def _btf_formatter(m: Map) -> Any:
    """``(key_fn, value_fn)`` formatting raw bytes through the map's BTF, or None."""
    info = m.info()
    if not info.btf_id or not (info.btf_key_type_id or info.btf_value_type_id):
        return None
    try:
        from ebpf.core import btf as btf_mod  # written concurrently; optional
    except ImportError:
        return None
    spec = getattr(m.spec.btf, "spec", None)
    if spec is None or not hasattr(spec, "format_value"):
        loader = getattr(btf_mod, "from_id", None) or getattr(btf_mod, "load_by_id", None)
        if loader is None:
            return None
        try:
            spec = loader(info.btf_id)
        except Exception:  # BTF of this map unreadable: fall back to hex
            return None
        spec = getattr(spec, "spec", spec)
        if not hasattr(spec, "format_value"):
            return None

    def fmt(type_id: int, data: bytes) -> str:
        if not type_id:
            return data.hex(" ")
        try:
            return str(spec.format_value(type_id, data))
        except Exception:  # a type the formatter cannot show
            return data.hex(" ")

    return lambda kb, vb: (fmt(info.btf_key_type_id, kb), fmt(info.btf_value_type_id, vb))


def dump_map(m: Map, limit: int | None = None) -> str:
    """A readable listing of ``m``: a header line, then one ``key: value`` line per entry.

    Values are shown through the map's BTF when it has some (``ebpf.core.btf``), else through
    its codecs (ints) or as hex bytes.

    :param limit: show at most this many entries.
    """
    lines = [f"{m.map_type.lower_name} map {m.name!r}: key_size={m.key_size} value_size={m.value_size} "
             f"max_entries={m.max_entries}"]
    if isinstance(m, (QueueMap, BloomFilterMap, RingBufMap)):
        lines.append("(no keys to list)")
        return "\n".join(lines)
    btf_fmt = _btf_formatter(m)

    def show(obj: Any) -> str:
        if isinstance(obj, (bytes, bytearray)):
            return obj.hex(" ")
        return repr(obj) if isinstance(obj, str) else str(obj)

    n = 0
    if btf_fmt is not None:
        for kb in raw_keys(m):
            vb = m.lookup_bytes(kb)
            if vb is None:
                continue
            k, v = btf_fmt(kb, vb)
            lines.append(f"{k}: {v}")
            n += 1
            if limit is not None and n >= limit:
                break
    else:
        for k, v in m.items():
            lines.append(f"{show(k)}: {show(v)}")
            n += 1
            if limit is not None and n >= limit:
                break
    lines.append(f"({n} entries)")
    return "\n".join(lines)


def maps() -> Iterator[MapInfo]:
    """Every map loaded on the system (maps that vanish while listing are skipped)."""
    return commands.iter_objects("map", lambda fd: MapInfo.from_kernel(commands.map_info(fd)))


from ebpf.core._callable import make_module_callable  # noqa: E402

make_module_callable(__name__)
