"""``MapSpec``, ``MapInfo`` and the ``Map`` base class (the dict-like protocol)."""

from __future__ import annotations

import ctypes
import errno
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, MutableSequence
from typing import Any, TypeVar

from ebpf.core import records
from ebpf.core._maps import batch as _batch
from ebpf.core._maps.fastpath import BufferPool, make_ops
from ebpf.core._maps.layout import Layout
from ebpf.core._sys import attrs, commands
from ebpf.core._sys.attrs import MapElemAttr
from ebpf.core._sys.syscall import SYS_BPF, Cmd, close_fd, get_errno, raw_syscall
from ebpf.core.codecs import Codec
from ebpf.core.errors import (
    BPFSyscallError,
    EBPFError,
    KeyNotFoundError,
    MapFullError,
    NotSupportedError,
    syscall_error,
)
from ebpf.core.extension import dispatcher
from ebpf.core.fdowner import FdOwner
from ebpf.core.pins import fd_kind, open_pinned
from ebpf.core.pins import pin as _pin
from ebpf.core.records import dataclass
from ebpf.core.types import MapType

__all__ = ["MapSpec", "MapInfo", "Map", "parse_update_flags", "ARRAY_TYPES", "MISSING"]

#: update flags by name (BPF_ANY, BPF_NOEXIST, BPF_EXIST, BPF_F_LOCK)
UPDATE_FLAGS = {"any": 0, "noexist": 1, "exist": 2, "lock": 4}
#: maps whose keys are the indexes 0..max_entries-1, always present
ARRAY_TYPES = frozenset({MapType.ARRAY, MapType.PERCPU_ARRAY, MapType.PROG_ARRAY, MapType.PERF_EVENT_ARRAY,
                         MapType.ARRAY_OF_MAPS, MapType.CGROUP_ARRAY})
MISSING: Any = object()
_MapT = TypeVar("_MapT", bound="Map")
_ELEM = ctypes.sizeof(MapElemAttr)


def parse_update_flags(flags: object) -> int:
    """``"any"``, ``"noexist"``, ``"exist"``, ``"lock"`` (or ``"exist|lock"``, or an int) -> BPF_* flags.

    :raises EBPFError: on an unknown name or a negative int.
    """
    if isinstance(flags, int) and not isinstance(flags, bool):
        if flags < 0 or flags > 7:
            raise EBPFError(f"unknown update flags {flags!r}")
        return flags
    if isinstance(flags, str):
        value = 0
        for part in flags.lower().split("|"):
            bit = UPDATE_FLAGS.get(part.strip())
            if bit is None:
                raise EBPFError(f"unknown update flag {part!r}; expected one of {sorted(UPDATE_FLAGS)}")
            value |= bit
        if value & 3 == 3:
            raise EBPFError("update flags 'noexist' and 'exist' exclude each other")
        return value
    raise EBPFError(f"update flags must be a name or an int, got {flags!r}")


@dataclass
class MapSpec:
    """Everything needed to create a map (plain data; :meth:`copy` before changing a shared one).

    ``key_codec``/``value_codec`` default to ints for sizes 4 and 8 (``u32``/``u64``) and to raw
    bytes for other sizes.  ``inner_map`` (a :class:`Map` or :class:`MapSpec`) is the template of
    array/hash of maps; ``btf`` an object with ``.fd``; ``mmapable`` adds BPF_F_MMAPABLE;
    ``token`` a BPF token (:func:`ebpf.core.token.create_token`) that delegates the creation.
    """

    map_type: MapType | str | int
    key_size: int = 4
    value_size: int = 4
    max_entries: int = 1
    name: str = ""
    flags: int = 0
    key_codec: Any = None
    value_codec: Any = None
    inner_map: Any = None
    btf: Any = None
    btf_key_type_id: int = 0
    btf_value_type_id: int = 0
    btf_vmlinux_value_type_id: int = 0
    map_extra: int = 0
    numa_node: int | None = None
    ifindex: int = 0
    pin_path: str | None = None
    mmapable: bool = False
    token: Any = None

    def copy(self, **changes: Any) -> MapSpec:
        """A shallow copy, with ``changes`` applied."""
        return records.replace(self, **changes)


@dataclass(frozen=True)
class MapInfo:
    """What the kernel says about a map (``struct bpf_map_info``)."""

    id: int
    type: MapType | int
    name: str
    key_size: int
    value_size: int
    max_entries: int
    flags: int
    btf_id: int = 0
    btf_key_type_id: int = 0
    btf_value_type_id: int = 0
    btf_vmlinux_value_type_id: int = 0
    map_extra: int = 0
    ifindex: int = 0

    @classmethod
    def from_kernel(cls, info: attrs.MapInfo) -> MapInfo:
        """Build from the raw ``struct bpf_map_info``."""
        try:
            mtype: MapType | int = MapType(info.type)
        except ValueError:
            mtype = info.type
        return cls(
            id=info.id, type=mtype, name=info.name.decode(errors="replace"), key_size=info.key_size,
            value_size=info.value_size, max_entries=info.max_entries, flags=info.map_flags, btf_id=info.btf_id,
            btf_key_type_id=info.btf_key_type_id, btf_value_type_id=info.btf_value_type_id,
            btf_vmlinux_value_type_id=info.btf_vmlinux_value_type_id, map_extra=info.map_extra, ifindex=info.ifindex,
        )


class _State:
    """Mutable per-map state shared with the generated hot path (kept apart from the Map: no cycles)."""

    __slots__ = ("batch", "closed", "max_entries", "name", "spare")

    def __init__(self, name: str, max_entries: int) -> None:
        self.spare: list[Any] = []  # reusable batch buffers
        self.closed = False
        self.batch = True
        self.name = name
        self.max_entries = max_entries


def _bad(what: str, codec: object) -> Any:
    def bad(obj: object, exc: BaseException) -> Exception:
        why = str(exc) or ("out of range" if isinstance(exc, OverflowError) else type(exc).__name__)
        return EBPFError(f"bad map {what} {obj!r} for codec {codec!r}: {why}")

    return bad


def _bad_key(key: object, exc: BaseException) -> Exception:
    return EBPFError(f"bad map key {key!r}: {exc or type(exc).__name__}")


def _bad_value(value: object, exc: BaseException) -> Exception:
    return EBPFError(f"bad map value {value!r}: {exc or type(exc).__name__}")


_CMD_NAMES = {1: "BPF_MAP_LOOKUP_ELEM", 2: "BPF_MAP_UPDATE_ELEM", 3: "BPF_MAP_DELETE_ELEM",
              21: "BPF_MAP_LOOKUP_AND_DELETE_ELEM"}


def raise_for(state: _State, cmd: int, err: int, key: object) -> None:
    """Raise our error for a failed element command."""
    name = _CMD_NAMES.get(cmd, f"bpf({cmd})")
    if state.closed:
        raise EBPFError(f"map {state.name!r} is closed")
    if err == errno.ENOENT:
        raise KeyNotFoundError(key, name)
    if err == errno.E2BIG and cmd == 2:
        raise MapFullError(name, state.max_entries)
    if err == errno.EEXIST:
        raise BPFSyscallError(err, name, f"key {key!r} already exists", "update flags 'noexist' refuse existing keys")
    raise syscall_error(err, name)


def _make_failed(state: _State) -> Any:
    def failed(cmd: int, key: object, default: object) -> object:
        err = get_errno()
        if cmd == 1 and err == errno.ENOENT and not state.closed:
            return default
        raise_for(state, cmd, err, key)
        return None

    return failed


class Map(FdOwner):
    """A live BPF map: owns one fd; dict-like (``m[k]``, ``k in m``, ``len(m)``, iteration).

    Keys and values go through the map's codecs (default: ``u32``/``u64`` ints for sizes 4/8,
    raw bytes otherwise).  Safe to use from several threads at once.  Close it with
    :meth:`close` or ``with``; collected while open, it is closed with a ResourceWarning.
    """

    _kind = "map"

    _state: _State

    def __init__(self, fd: int, spec: MapSpec, key_codec: Codec, value_codec: Codec) -> None:
        self.spec = spec
        self.map_type = MapType.parse(spec.map_type)
        self.key_size = spec.key_size
        self.value_size = spec.value_size
        self.max_entries = spec.max_entries
        self.name = spec.name
        self.flags = spec.flags
        self.key_codec = key_codec
        self.value_codec = value_codec
        self._own_fd(fd)
        self._state = _State(spec.name, spec.max_entries)
        self._key_layout = Layout(key_codec, self.key_size)
        self._value_layout = self._make_value_layout()
        self._bufs = BufferPool(fd, self.key_size, self._value_layout.elem_size)
        if self.key_size:
            self._install_fast_ops()

    # -- construction helpers (overridden by kinds) --------------------------------------------
    def _make_value_layout(self) -> Layout:
        return Layout(self.value_codec, self.value_size)

    def _install_fast_ops(self) -> None:
        lookup, update, delete = make_ops(
            self._bufs, self.key_codec, self.value_codec, parse_flags=parse_update_flags,
            bad_key=_bad("key", self.key_codec), bad_value=_bad("value", self.value_codec),
            failed=_make_failed(self._state),
        )
        # Instance attributes shadow the (slower, generic) class methods of the same name.
        self.__dict__.update(lookup=lookup, update=update, delete=delete)

    # -- properties ----------------------------------------------------------------------------
    @property
    def fd(self) -> int:
        """The map's file descriptor.

        :raises EBPFError: when the map is closed.
        """
        if self._state.closed:
            raise EBPFError(f"map {self.name!r} is closed")
        return self._fd

    @property
    def closed(self) -> bool:
        """True after :meth:`close`."""
        return self._state.closed

    def __repr__(self) -> str:
        state = " closed" if self._state.closed else f" fd={self._fd}"
        return (f"<{type(self).__name__} {self.map_type.lower_name} {self.name!r}{state} key_size={self.key_size} "
                f"value_size={self.value_size} max_entries={self.max_entries}>")

    # -- single elements -----------------------------------------------------------------------
    def lookup(self, key: Any, default: Any = None) -> Any:
        """The value stored under ``key``, or ``default`` when there is none.

        :raises EBPFError: when ``key`` does not encode, or the map is closed.
        """
        kb = self._encode_key(key)
        vb = self.lookup_bytes(kb)
        return default if vb is None else self._value_layout.decode(vb)

    def update(self, key: Any, value: Any, flags: str | int = "any") -> None:
        """Store ``value`` under ``key``.

        :param flags: ``"any"`` (create or replace), ``"noexist"`` (create only), ``"exist"``
            (replace only), ``"lock"`` (BPF_F_LOCK, for values with a bpf_spin_lock).
        :raises MapFullError: when the map has no room (E2BIG).
        :raises KeyNotFoundError: with ``"exist"`` and no such key.
        :raises BPFSyscallError: EEXIST with ``"noexist"`` and an existing key.
        :raises EBPFError: on a key/value that does not encode, unknown flags, a closed map.
        """
        self.update_bytes(self._encode_key(key), self._encode_value(value), parse_update_flags(flags))

    def delete(self, key: Any) -> None:
        """Remove ``key``.

        :raises KeyNotFoundError: when the key is not there.
        """
        self.delete_bytes(self._encode_key(key))

    def _encode_key(self, key: Any) -> bytes:
        try:
            return self._key_layout.encode(key)
        except EBPFError:
            raise
        except _BAD as exc:
            raise _bad_key(key, exc) from None

    def _encode_value(self, value: Any) -> bytes:
        try:
            return self._value_layout.encode(value)
        except EBPFError:
            raise
        except _BAD as exc:
            raise _bad_value(value, exc) from None

    def _elem(self, cmd: int, key: bytes | None, value: ctypes.Array[ctypes.c_char] | None, flags: int = 0) -> int:
        """One element command on fresh buffers; returns 0 or the errno."""
        kbuf = ctypes.create_string_buffer(key, len(key)) if key else None
        attr = MapElemAttr(key=ctypes.addressof(kbuf) if kbuf is not None else 0,
                           value=ctypes.addressof(value) if value is not None else 0, flags=flags)
        with self._bufs.lock:
            if self._state.closed:
                raise EBPFError(f"map {self.name!r} is closed")
            attr.map_fd = self._fd
            ret = raw_syscall(SYS_BPF, cmd, ctypes.addressof(attr), _ELEM)
            return get_errno() if ret < 0 else 0

    def _check_key_bytes(self, key: bytes) -> None:
        if not isinstance(key, (bytes, bytearray)) or len(key) != self.key_size:
            raise EBPFError(f"key must be {self.key_size} bytes, got {key!r}")

    def lookup_bytes(self, key: bytes) -> bytes | None:
        """The raw value bytes under the raw ``key`` bytes (no codecs), or None."""
        self._check_key_bytes(key)
        value = ctypes.create_string_buffer(max(1, self._value_layout.elem_size))
        err = self._elem(Cmd.MAP_LOOKUP_ELEM, key, value)
        if err == errno.ENOENT:
            return None
        if err:
            raise_for(self._state, Cmd.MAP_LOOKUP_ELEM, err, key)
        return value.raw[: self._value_layout.elem_size]

    def update_bytes(self, key: bytes, value: bytes, flags: int = 0) -> None:
        """Store raw ``value`` bytes under raw ``key`` bytes (no codecs)."""
        self._check_key_bytes(key)
        if not isinstance(value, (bytes, bytearray)) or len(value) != self._value_layout.elem_size:
            raise EBPFError(f"value must be {self._value_layout.elem_size} bytes, got {len(value)}")
        vbuf = ctypes.create_string_buffer(bytes(value), len(value))
        err = self._elem(Cmd.MAP_UPDATE_ELEM, key, vbuf, parse_update_flags(flags))
        if err:
            raise_for(self._state, Cmd.MAP_UPDATE_ELEM, err, key)

    def delete_bytes(self, key: bytes, missing_ok: bool = False) -> None:
        """Remove the raw ``key`` bytes.

        :raises KeyNotFoundError: when absent (unless ``missing_ok``).
        """
        self._check_key_bytes(key)
        err = self._elem(Cmd.MAP_DELETE_ELEM, key, None)
        if err and not (missing_ok and err == errno.ENOENT):
            raise_for(self._state, Cmd.MAP_DELETE_ELEM, err, key)

    # -- dict protocol -------------------------------------------------------------------------
    def __getitem__(self, key: Any) -> Any:
        value = self.lookup(key, MISSING)
        if value is MISSING:
            raise KeyNotFoundError(key)
        return value

    def __setitem__(self, key: Any, value: Any) -> None:
        self.update(key, value)

    def __delitem__(self, key: Any) -> None:
        self.delete(key)

    def __contains__(self, key: object) -> bool:
        return self.lookup(key, MISSING) is not MISSING

    def __iter__(self) -> Iterator[Any]:
        return self.keys()

    def __len__(self) -> int:
        return self.count()

    def __bool__(self) -> bool:
        return True  # a map object is truthy even when empty (len() costs a walk)

    def items(self) -> Iterator[tuple[Any, Any]]:
        """Every (key, value), lazily, read in batches (BPF_MAP_LOOKUP_BATCH) where the kernel can."""
        for keys, values in _batch.iter_chunks(self):
            yield from zip(keys, values)

    def keys(self) -> Iterator[Any]:
        """Every key, lazily."""
        for keys, _ in _batch.iter_chunks(self):
            yield from keys

    def values(self) -> Iterator[Any]:
        """Every value, lazily."""
        for _, values in _batch.iter_chunks(self):
            yield from values

    def count(self) -> int:
        """The number of entries (``max_entries`` for array maps, whose slots always exist)."""
        if self.map_type in ARRAY_TYPES:
            return self.max_entries
        return sum(len(keys) for keys, _ in _batch.iter_chunks(self))

    def clear(self) -> None:
        """Remove every entry (array maps: set every value to zero)."""
        if self.map_type in ARRAY_TYPES:
            zero = bytes(self._value_layout.elem_size)
            keys = list(range(self.max_entries))
            self.update_batch(dict.fromkeys(keys, self._value_layout.decode(zero)))
            return
        keys = list(self.keys())
        self.delete_batch(keys)

    # -- batches -------------------------------------------------------------------------------
    def lookup_batch(self, keys: Iterable[Any] | None = None) -> list[tuple[Any, Any]]:
        """(key, value) pairs: every entry (BPF_MAP_LOOKUP_BATCH) when ``keys`` is None, else those of ``keys`` present.

        Falls back to one lookup per entry where the kernel has no batch command.
        """
        if keys is None:
            out: list[tuple[Any, Any]] = []
            for ks, vs in _batch.iter_chunks(self):
                out.extend(zip(ks, vs))
            return out
        lookup = self.lookup
        pairs = [(k, lookup(k, MISSING)) for k in keys]
        return [(k, v) for k, v in pairs if v is not MISSING]

    def lookup_batch_columns(self) -> tuple[MutableSequence[Any], MutableSequence[Any]]:
        """Every entry as two columns, ``(keys, values)``, with ``values[i]`` stored under ``keys[i]``.

        The bulk read of :meth:`lookup_batch` (BPF_MAP_LOOKUP_BATCH, one lookup per entry where the
        kernel has no batch command) without a tuple per entry: integer keys/values come as
        ``array.array`` (indexable, iterable, ``.tolist()``, zero-copy into NumPy with
        ``numpy.frombuffer``), copied straight from the kernel's buffers; other codecs give lists.
        """
        keys, values = self._key_layout.column(), self._value_layout.column()
        for ks, vs in _batch.iter_chunks(self, columns=True):
            keys.extend(ks)
            values.extend(vs)
        return keys, values

    def update_batch(self, items: Mapping[Any, Any] | Iterable[tuple[Any, Any]], flags: str | int = "any") -> int:
        """Store many entries with BPF_MAP_UPDATE_BATCH (one update each where unsupported).

        :returns: the number of entries written.
        """
        if isinstance(items, Mapping):
            keys, values = list(items), list(items.values())
        else:
            pairs = list(items)
            keys = [k for k, _ in pairs]
            values = [v for _, v in pairs]
        return _batch.update_batch(self, keys, values, parse_update_flags(flags))

    def delete_batch(self, keys: Iterable[Any]) -> int:
        """Remove many keys with BPF_MAP_DELETE_BATCH; missing keys are skipped.

        :returns: the number of entries removed.
        """
        return _batch.delete_batch(self, list(keys))

    def lookup_and_delete_batch(self, keys: Iterable[Any] | None = None) -> list[tuple[Any, Any]]:
        """Read and remove entries: all of them (BPF_MAP_LOOKUP_AND_DELETE_BATCH) or those of ``keys``.

        :returns: the (key, value) pairs removed.
        """
        if keys is None:
            out: list[tuple[Any, Any]] = []
            for ks, vs in _batch.iter_chunks(self, delete=True):
                out.extend(zip(ks, vs))
            return out
        found = self.lookup_batch(keys)
        self.delete_batch([k for k, _ in found])
        return found

    # -- object management ---------------------------------------------------------------------
    def pin(self, path: str) -> str:
        """Pin the map at ``path`` on bpffs.

        :returns: the absolute path.
        :raises EBPFError: when the path is not on bpffs or exists already.
        """
        return _pin(self.fd, path)

    def freeze(self) -> None:
        """Make the map read-only for user space (BPF programs may still write). Requires Linux >= 5.2."""
        commands.map_freeze(self.fd)

    def info(self) -> MapInfo:
        """What the kernel says about this map (id, type, sizes, flags, BTF ids)."""
        return MapInfo.from_kernel(commands.map_info(self.fd))

    def reader(self, **options: Any) -> object:
        """An event reader for this map from the plugin registered for its type (ringbuf, perf)."""
        return dispatcher().open_events(self, **options)

    def mmap(self) -> memoryview:
        """The shared value memory of an array map created ``mmapable=True`` (BPF_F_MMAPABLE).

        :raises NotSupportedError: for every other map.
        """
        raise NotSupportedError(f"map {self.name!r} was not created mmapable (BPF_F_MMAPABLE array maps only)")

    def _release_extra(self) -> None:
        """Kinds free their own resources (mmaps) here."""

    def close(self) -> None:
        """Close the map's fd (idempotent).  Later operations raise :class:`EBPFError`."""
        with self._bufs.lock:
            if self._state.closed:
                return
            self._state.closed = True
            self._bufs.invalidate()  # every buffer set, pooled, in use or future, points at fd -1
            self._bufs.drain()  # and no syscall that read the old fd is still running
            name = self.name

            def closed(*_args: Any, **_kwargs: Any) -> Any:
                raise EBPFError(f"map {name!r} is closed")

            for op in ("lookup", "update", "delete"):
                self.__dict__[op] = closed
            self._release_extra()
            self._release()

    # -- alternate constructors ----------------------------------------------------------------
    @classmethod
    def from_fd(cls, fd: int, *, key_codec: Any = None, value_codec: Any = None) -> Map:
        """A Map for an existing map fd; the Map owns a duplicate (``fd`` stays the caller's).

        :raises EBPFError: when ``fd`` is not a map.
        """
        if not isinstance(fd, int) or isinstance(fd, bool) or fd < 0:
            raise EBPFError(f"not a file descriptor: {fd!r}")
        if fd_kind(fd) != "map":
            raise EBPFError(f"fd {fd} is not a BPF map")
        return _wrap_fd(os.dup(fd), key_codec=key_codec, value_codec=value_codec)

    @classmethod
    def from_id(cls, map_id: int, *, key_codec: Any = None, value_codec: Any = None) -> Map:
        """Open the map with kernel id ``map_id``.

        :raises BPFSyscallError: ENOENT when there is no such map.
        """
        if not isinstance(map_id, int) or map_id <= 0:
            raise EBPFError(f"map id must be a positive int, got {map_id!r}")
        return _wrap_fd(commands.fd_by_id("map", map_id), key_codec=key_codec, value_codec=value_codec)

    @classmethod
    def from_pinned(cls, path: str, *, key_codec: Any = None, value_codec: Any = None) -> Map:
        """Open the map pinned at ``path``; its type and sizes are read back from the kernel.

        :raises EBPFError: when nothing is pinned there, or the pin holds a program or link.
        """
        return _wrap_fd(open_pinned(path, "map"), key_codec=key_codec, value_codec=value_codec)


#: Wraps a map fd in the Map subclass of its type; installed by :mod:`ebpf.core._maps.create`, which
#: knows the kinds and sits above this module (``ebpf.core._maps`` imports it, so it is always set).
_fd_wrapper: Callable[..., Map] | None = None


def set_fd_wrapper(wrapper: Callable[..., Map]) -> None:
    """Install the function ``Map.from_fd/from_id/from_pinned`` wrap their fd with."""
    global _fd_wrapper
    _fd_wrapper = wrapper


def _wrap_fd(fd: int, **codecs: Any) -> Map:
    if _fd_wrapper is None:  # pragma: no cover - ebpf.core._maps imports create first
        close_fd(fd)
        raise EBPFError("ebpf.core._maps.create is not loaded")
    return _fd_wrapper(fd, **codecs)


_BAD = (TypeError, ValueError, OverflowError, AttributeError)
