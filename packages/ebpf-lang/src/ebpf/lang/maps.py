"""Map declarations made at module level: ``counts = HashMap(u32, u64, max_entries=1024)``.

A declaration is plain data (key type, value type, size); the compiler turns the ones a module's
kernel functions use into :class:`~ebpf.core.maps.MapSpec` with BTF for key and value, so
``ebpf map dump`` shows typed values.  In kernel code they take Python syntax: ``m[k]``,
``m[k] = v``, ``m.get(k, default)``, ``k in m``, ``del m[k]``, ``m.increment(k)`` (an atomic
add), ``m.lookup(k)`` (a pointer to the value, None when absent); ring buffers ``output(ev)``
and ``reserve(T)`` / ``submit(p)`` / ``discard(p)``; perf arrays ``output(ev)``.
"""

from __future__ import annotations

from typing import Any

from ebpf.core.types import MapType
from ebpf.lang.errors import declaration_error
from ebpf.lang.types import IntType, LangType, type_of_annotation, u32

__all__ = [
    "MapDecl", "Map", "HashMap", "ArrayMap", "LruHashMap", "PerCpuHashMap", "PerCpuArrayMap",
    "LruPerCpuHashMap", "RingBuf", "PerfEventArray", "QueueMap", "StackMap", "BloomFilter",
]


def _as_type(value: object, what: str) -> LangType:
    t = type_of_annotation(value)
    if t is None:
        raise declaration_error(f"map {what} type {value!r} is not a type (use u8..u64, i8..i64, T[N] or a Struct class)")
    return t


class MapDecl:
    """A map declared at module level; the compiler creates it once per loaded collection.

    :param map_type: any :class:`~ebpf.core.types.MapType` (name or value).
    :param key: key type (None for maps without keys: ring buffers).
    :param value: value type (None for maps without values).
    :param max_entries: capacity (ring buffers: size in bytes, a power of two times the page size).
    :param flags: BPF_MAP_CREATE flags.
    """

    def __init__(self, map_type: MapType | str | int, key: object, value: object, max_entries: int,
                 flags: int = 0) -> None:
        """Check the declaration (raises ``TypeError``/``ValueError`` for a bad one)."""
        self.map_type = MapType.parse(map_type)
        self.key: LangType | None = None if key is None else _as_type(key, "key")
        self.value: LangType | None = None if value is None else _as_type(value, "value")
        if not isinstance(max_entries, int) or max_entries <= 0:
            raise declaration_error(f"max_entries must be a positive int, not {max_entries!r}")
        self.max_entries = max_entries
        self.flags = flags
        self.map_extra = 0

    @property
    def kind(self) -> str:
        """How kernel code may use it: ``"hash"``, ``"array"``, ``"ringbuf"``, ``"perf"`` or ``"other"``."""
        t = self.map_type
        if t in (MapType.HASH, MapType.LRU_HASH, MapType.PERCPU_HASH, MapType.LRU_PERCPU_HASH):
            return "hash"
        if t in (MapType.ARRAY, MapType.PERCPU_ARRAY):
            return "array"
        if t == MapType.RINGBUF:
            return "ringbuf"
        if t == MapType.PERF_EVENT_ARRAY:
            return "perf"
        if t in (MapType.QUEUE, MapType.STACK):
            return "queue"
        if t == MapType.BLOOM_FILTER:
            return "bloom"
        return "other"

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.map_type.lower_name} key={self.key!r} value={self.value!r} max_entries={self.max_entries}>"

    def _kernel_only(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError("map operations on a declaration run only inside @kernel functions; "
                        "in user space use the loaded map: collection.maps[name]")

    __getitem__ = __setitem__ = __delitem__ = __contains__ = _kernel_only
    get = lookup = increment = output = reserve = submit = discard = push = pop = peek = _kernel_only


def Map(map_type: MapType | str | int, key: object, value: object, max_entries: int, flags: int = 0) -> MapDecl:
    """A map of any type the core knows (the specific constructors below are shorter)."""
    return MapDecl(map_type, key, value, max_entries, flags)


def HashMap(key: object, value: object, max_entries: int = 10240, flags: int = 0) -> MapDecl:
    """A hash map."""
    return MapDecl(MapType.HASH, key, value, max_entries, flags)


def LruHashMap(key: object, value: object, max_entries: int = 10240, flags: int = 0) -> MapDecl:
    """An LRU hash map (old entries make room for new ones)."""
    return MapDecl(MapType.LRU_HASH, key, value, max_entries, flags)


def PerCpuHashMap(key: object, value: object, max_entries: int = 10240, flags: int = 0) -> MapDecl:
    """A per-CPU hash map (user space sees one value per possible CPU)."""
    return MapDecl(MapType.PERCPU_HASH, key, value, max_entries, flags)


def LruPerCpuHashMap(key: object, value: object, max_entries: int = 10240, flags: int = 0) -> MapDecl:
    """A per-CPU LRU hash map."""
    return MapDecl(MapType.LRU_PERCPU_HASH, key, value, max_entries, flags)


def ArrayMap(value: object, max_entries: int, key: IntType = u32) -> MapDecl:
    """An array map (keys ``0 .. max_entries-1``, u32)."""
    return MapDecl(MapType.ARRAY, key, value, max_entries)


def PerCpuArrayMap(value: object, max_entries: int, key: IntType = u32) -> MapDecl:
    """A per-CPU array map."""
    return MapDecl(MapType.PERCPU_ARRAY, key, value, max_entries)


def QueueMap(value: object, max_entries: int) -> MapDecl:
    """A FIFO queue: ``q.push(v)``, ``q.pop(default)``, ``q.peek(default)``."""
    return MapDecl(MapType.QUEUE, None, value, max_entries)


def StackMap(value: object, max_entries: int) -> MapDecl:
    """A LIFO stack (not a stack trace map): ``s.push(v)``, ``s.pop(default)``, ``s.peek(default)``."""
    return MapDecl(MapType.STACK, None, value, max_entries)


def BloomFilter(value: object, max_entries: int, hashes: int = 0) -> MapDecl:
    """A bloom filter: ``b.push(v)`` adds, ``v in b`` may answer True for values never added.

    :param hashes: how many hash functions (1..15; 0: the kernel's default, 5).
    """
    decl = MapDecl(MapType.BLOOM_FILTER, None, value, max_entries)
    decl.map_extra = hashes
    return decl


def RingBuf(size: int = 1 << 16) -> MapDecl:
    """A ring buffer of ``size`` bytes (a power of two, at least one page)."""
    if size <= 0 or size & (size - 1):
        raise declaration_error(f"ring buffer size must be a power of two, not {size}")
    return MapDecl(MapType.RINGBUF, None, None, size)


def PerfEventArray(max_entries: int = 0) -> MapDecl:
    """A perf event array for ``output(ev)``; ``max_entries`` 0 means one slot per possible CPU."""
    if max_entries <= 0:
        from ebpf.core.system import cpu_count

        max_entries = cpu_count()
    return MapDecl(MapType.PERF_EVENT_ARRAY, u32, u32, max_entries)
