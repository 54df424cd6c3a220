"""Checking a MapSpec, BPF_MAP_CREATE, and wrapping an fd in the right Map kind."""

from __future__ import annotations

import errno
import resource
import threading
from typing import Any

from ebpf.core import records
from ebpf.core._checks import U32, U64, check_uint, object_name
from ebpf.core._maps import base as _base
from ebpf.core._maps.base import Map, MapSpec
from ebpf.core._maps.kinds import KIND_BY_TYPE, FdCodec, LPMKeyCodec, MmapArrayMap
from ebpf.core._sys import attrs, commands
from ebpf.core._sys.syscall import close_fd
from ebpf.core.codecs import Codec, RawCodec, resolve_codec
from ebpf.core.errors import BPFSyscallError, EBPFError
from ebpf.core.pins import check_pin_path
from ebpf.core.system import kernel_version
from ebpf.core.types import MapType

__all__ = ["create_map", "wrap_fd", "MAP_FLAGS", "parse_map_flags"]

#: BPF_F_* map creation flags by name
MAP_FLAGS = {
    "no_prealloc": 1 << 0, "no_common_lru": 1 << 1, "numa_node": 1 << 2, "rdonly": 1 << 3, "wronly": 1 << 4,
    "stack_build_id": 1 << 5, "zero_seed": 1 << 6, "rdonly_prog": 1 << 7, "wronly_prog": 1 << 8, "clone": 1 << 9,
    "mmapable": 1 << 10, "preserve_elems": 1 << 11, "inner_map": 1 << 12, "link": 1 << 13, "path_fd": 1 << 14,
    "vtype_btf_obj_fd": 1 << 15, "token_fd": 1 << 16, "segv_on_fault": 1 << 17, "no_user_conv": 1 << 18,
}
_ALL_FLAGS = (1 << 19) - 1
BPF_F_MMAPABLE = MAP_FLAGS["mmapable"]
BPF_F_NUMA_NODE = MAP_FLAGS["numa_node"]
_KEYLESS = {MapType.STACK, MapType.QUEUE, MapType.BLOOM_FILTER, MapType.RINGBUF, MapType.USER_RINGBUF,
            MapType.ARENA}
_FD_VALUES = {MapType.PROG_ARRAY, MapType.PERF_EVENT_ARRAY, MapType.ARRAY_OF_MAPS, MapType.HASH_OF_MAPS,
              MapType.CGROUP_ARRAY}

_memlock_done = False
_memlock_lock = threading.Lock()


_SIZED_BY_OWNER = frozenset(
    {
        MapType.SK_STORAGE,
        MapType.INODE_STORAGE,
        MapType.TASK_STORAGE,
        MapType.CGRP_STORAGE,
        MapType.CGROUP_STORAGE_DEPRECATED,
        MapType.PERCPU_CGROUP_STORAGE_DEPRECATED,
    }
)


def raise_memlock() -> None:
    """Lift RLIMIT_MEMLOCK once on kernels < 5.11, which charge map memory against it."""
    global _memlock_done
    if _memlock_done:
        return
    with _memlock_lock:
        if not _memlock_done:
            if kernel_version() < (5, 11, 0):
                try:
                    resource.setrlimit(resource.RLIMIT_MEMLOCK, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
                except (ValueError, OSError):
                    pass  # unprivileged: creation reports EPERM/ENOMEM with a hint
            _memlock_done = True


def parse_map_flags(flags: object) -> int:
    """Map creation flags: an int, a name (``"no_prealloc"``), or names joined by ``|`` or in a list.

    :raises EBPFError: on unknown names or bits.
    """
    if isinstance(flags, int) and not isinstance(flags, bool):
        if flags < 0 or flags & ~_ALL_FLAGS:
            raise EBPFError(f"unknown map flags {flags:#x}")
        return flags
    names: list[object]
    if isinstance(flags, str):
        names = [p for p in flags.split("|") if p.strip()]
    elif isinstance(flags, (list, tuple, set, frozenset)):
        names = list(flags)
    else:
        raise EBPFError(f"map flags must be an int or names, got {flags!r}")
    value = 0
    for name in names:
        key = str(name).strip().lower().removeprefix("bpf_f_")
        if key not in MAP_FLAGS:
            raise EBPFError(f"unknown map flag {name!r}; expected one of {sorted(MAP_FLAGS)}")
        value |= MAP_FLAGS[key]
    return value


def _check_int(value: object, what: str, minimum: int) -> int:
    return check_uint(value, what, U32, minimum)


def _codecs(spec: MapSpec, mtype: MapType) -> tuple[Codec, Codec]:
    if mtype == MapType.LPM_TRIE and spec.key_codec is None:
        key: Codec = LPMKeyCodec(spec.key_size)
    else:
        key = resolve_codec(spec.key_codec, spec.key_size, "key")
    if mtype in _FD_VALUES and spec.value_codec is None:
        value: Codec = FdCodec()
    else:
        value = resolve_codec(spec.value_codec, spec.value_size, "value")
    return key, value


def check_spec(spec: MapSpec) -> tuple[MapSpec, MapType, int, Codec, Codec]:
    """Everything about ``spec`` that can be checked before BPF_MAP_CREATE.

    :returns: (normalised spec, map type, flags, key codec, value codec).
    :raises EBPFError: on the first problem.
    """
    if not isinstance(spec, MapSpec):
        raise EBPFError(f"expected a MapSpec, got {type(spec).__name__}")
    mtype = MapType.parse(spec.map_type)
    if mtype == MapType.UNSPEC:
        raise EBPFError("map_type 'unspec' cannot be created")
    flags = parse_map_flags(spec.flags)
    if spec.mmapable:
        flags |= BPF_F_MMAPABLE
    if flags & BPF_F_MMAPABLE and mtype not in (MapType.ARRAY, MapType.ARENA):
        raise EBPFError(f"mmapable (BPF_F_MMAPABLE) is only for array maps, not {mtype.lower_name}")
    if spec.numa_node is not None:
        _check_int(spec.numa_node, "numa_node", 0)
        flags |= BPF_F_NUMA_NODE
    key_size = _check_int(spec.key_size, "key_size", 0)
    value_size = _check_int(spec.value_size, "value_size", 0)
    # Local-storage maps are sized by their owners (sockets, tasks, ...): the kernel wants 0.
    storage = mtype in _SIZED_BY_OWNER
    max_entries = _check_int(spec.max_entries, "max_entries", 0 if storage else 1)
    if storage and max_entries:
        raise EBPFError(f"{mtype.lower_name} maps are sized by their owners: max_entries must be 0, got {max_entries}")
    if key_size == 0 and mtype not in _KEYLESS:
        raise EBPFError(f"{mtype.lower_name} maps need key_size > 0")
    if key_size and mtype in (MapType.STACK, MapType.QUEUE, MapType.BLOOM_FILTER):
        raise EBPFError(f"{mtype.lower_name} maps have no keys: key_size must be 0, got {key_size}")
    if value_size == 0 and mtype not in (MapType.RINGBUF, MapType.USER_RINGBUF, MapType.ARENA):
        raise EBPFError(f"{mtype.lower_name} maps need value_size > 0")
    if mtype in (MapType.RINGBUF, MapType.USER_RINGBUF) and (max_entries & (max_entries - 1) or max_entries % 4096):
        raise EBPFError(f"ring buffer size must be a power of 2 and a multiple of the page size, got {max_entries}")
    if mtype in (MapType.ARRAY_OF_MAPS, MapType.HASH_OF_MAPS) and spec.inner_map is None:
        raise EBPFError(f"{mtype.lower_name} needs inner_map (a Map or MapSpec: the template of its values)")
    name = object_name(spec.name, "map name")  # the rule of program names too
    if name != spec.name:
        spec = spec.copy(name=name)
    for field_name in ("btf_key_type_id", "btf_value_type_id", "btf_vmlinux_value_type_id", "ifindex"):
        check_uint(getattr(spec, field_name), field_name, U32)
    check_uint(spec.map_extra, "map_extra", U64)
    if spec.pin_path is not None:
        check_pin_path(spec.pin_path)
    if mtype in _KEYLESS:
        key_codec: Codec = RawCodec(0)
        value_codec = resolve_codec(spec.value_codec, value_size, "value") if value_size else RawCodec(0)
    else:
        key_codec, value_codec = _codecs(spec, mtype)
    return spec, mtype, flags, key_codec, value_codec


def create_map(spec: MapSpec | None = None, **fields: Any) -> Map:
    """Create a map from ``spec`` and/or keyword fields of :class:`MapSpec` (fields override the spec).

    Every argument is checked before the syscall (unknown type or flag, sizes, ``max_entries``
    <= 0, codec sizes, pin path); nothing is left behind when creation fails.

    :returns: the :class:`Map` kind for the type (per-CPU, stack/queue, LPM trie ...).
    :raises EBPFError: on bad input; :class:`BPFSyscallError` when the kernel refuses.
    """
    if spec is None:
        if "map_type" not in fields:
            raise EBPFError("create_map needs a MapSpec or map_type=")
        try:
            spec = MapSpec(**fields)
        except TypeError as exc:
            raise EBPFError(f"create_map: {exc}") from None
    elif fields:
        try:
            spec = spec.copy(**fields)
        except TypeError as exc:
            raise EBPFError(f"create_map: {exc}") from None
    spec, mtype, flags, key_codec, value_codec = check_spec(spec)
    raise_memlock()
    attr = attrs.MapCreateAttr(
        map_type=mtype, key_size=spec.key_size, value_size=spec.value_size, max_entries=spec.max_entries,
        map_flags=flags, numa_node=spec.numa_node or 0, map_name=spec.name.encode(), map_ifindex=spec.ifindex,
        btf_key_type_id=spec.btf_key_type_id, btf_value_type_id=spec.btf_value_type_id,
        btf_vmlinux_value_type_id=spec.btf_vmlinux_value_type_id, map_extra=spec.map_extra,
    )
    if spec.btf is not None:
        attr.btf_fd = spec.btf.fd
    if spec.token is not None:  # BPF_F_TOKEN_FD: the token's user namespace grants the capabilities
        attr.map_token_fd, attr.map_flags = spec.token.fd, attr.map_flags | MAP_FLAGS["token_fd"]
    inner: Map | None = None
    if spec.inner_map is not None:
        if isinstance(spec.inner_map, Map):
            attr.inner_map_fd = spec.inner_map.fd
        elif isinstance(spec.inner_map, MapSpec):
            inner = create_map(spec.inner_map.copy(pin_path=None))
            attr.inner_map_fd = inner.fd
        else:
            raise EBPFError(f"inner_map must be a Map or MapSpec, got {type(spec.inner_map).__name__}")
    try:
        fd = commands.map_create(attr)
    except BPFSyscallError as exc:
        raise _explain(exc, mtype, spec) from None
    finally:
        if inner is not None:
            inner.close()
    final = records.replace(spec, map_type=mtype, flags=flags)
    try:
        m = _make(fd, final, key_codec, value_codec)
    except BaseException:
        close_fd(fd)
        raise
    if spec.pin_path is not None:
        try:
            m.pin(spec.pin_path)
        except BaseException:
            m.close()
            raise
    return m


def _explain(exc: BPFSyscallError, mtype: MapType, spec: MapSpec) -> BPFSyscallError:
    sizes = (f"{spec.max_entries} entries x ({spec.key_size}-byte key + {spec.value_size}-byte value)"
             f" = {_human(spec.max_entries * (spec.key_size + spec.value_size))}")
    if exc.errno == errno.EINVAL:  # name the usual suspects
        return BPFSyscallError(exc.errno, exc.command, f"the kernel rejected this {mtype.lower_name} map",
                               "check key/value sizes and flags for this map type, or the type is not supported")
    if exc.errno == errno.E2BIG:  # on create, E2BIG is a size limit, not a full map
        return BPFSyscallError(exc.errno, exc.command, f"{mtype.lower_name} map too large: {sizes}",
                               "the key or value size (or max_entries) exceeds this map type's limit")
    if exc.errno == errno.ENOMEM:
        return BPFSyscallError(exc.errno, exc.command, f"cannot allocate the {mtype.lower_name} map: {sizes}",
                               "lower max_entries or value_size; on kernels < 5.11 raise RLIMIT_MEMLOCK")
    return exc


def _human(n: int) -> str:
    if n < 1024:
        return f"{n} bytes"
    size, unit = float(n) / 1024, "KiB"
    for bigger in ("MiB", "GiB", "TiB"):
        if size < 1024:
            break
        size, unit = size / 1024, bigger
    return f"{size:.1f} {unit}"


def _make(fd: int, spec: MapSpec, key_codec: Codec, value_codec: Codec) -> Map:
    mtype = MapType.parse(spec.map_type)
    cls = KIND_BY_TYPE.get(mtype, Map)
    if mtype == MapType.ARRAY and int(spec.flags) & BPF_F_MMAPABLE:
        cls = MmapArrayMap
    return cls(fd, spec, key_codec, value_codec)


def wrap_fd(fd: int, *, key_codec: Any = None, value_codec: Any = None) -> Map:
    """A Map owning ``fd`` (a map fd), with type and sizes read from the kernel; closes ``fd`` on error."""
    try:
        info = commands.map_info(fd)
        try:
            mtype = MapType(info.type)
        except ValueError:
            raise EBPFError(f"map type {info.type} is unknown to this version of ebpf") from None
        spec = MapSpec(map_type=mtype, key_size=info.key_size, value_size=info.value_size,
                       max_entries=info.max_entries, name=info.name.decode(errors="replace"), flags=info.map_flags,
                       key_codec=key_codec, value_codec=value_codec, map_extra=info.map_extra,
                       btf_key_type_id=info.btf_key_type_id, btf_value_type_id=info.btf_value_type_id)
        if mtype in _KEYLESS:
            kc: Codec = RawCodec(0)
            vc = resolve_codec(value_codec, info.value_size, "value") if info.value_size else RawCodec(0)
        else:
            kc, vc = _codecs(spec, mtype)
        return _make(fd, spec, kc, vc)
    except BaseException:
        close_fd(fd)
        raise


_base.set_fd_wrapper(wrap_fd)  # Map.from_fd/from_id/from_pinned wrap through the kinds known here
