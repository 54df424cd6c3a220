"""The typed kinds of :class:`Map`: per-CPU, stack/queue, bloom filter, LPM trie, fd arrays, mmapable arrays."""

from __future__ import annotations

import ctypes
import errno
import mmap as _mmap
import operator
import weakref
from collections.abc import Callable
from typing import Any

from ebpf.core._maps.base import ARRAY_TYPES, MISSING, Map, _bad, _make_failed, parse_update_flags, raise_for
from ebpf.core._maps.fastpath import BAD_INPUT, Buffers, make_ops
from ebpf.core._maps.layout import Layout, decode_percpu, encode_percpu, round8
from ebpf.core._maps.stacktrace import StackTraceMap
from ebpf.core._sys.syscall import Cmd
from ebpf.core.codecs import Codec, IntCodec
from ebpf.core.errors import EBPFError, KeyNotFoundError, NotSupportedError
from ebpf.core.system import cpu_count
from ebpf.core.types import MapType

__all__ = ["PerCPUMap", "QueueMap", "BloomFilterMap", "LPMTrieMap", "FdArrayMap", "MmapArrayMap", "RingBufMap",
           "LPMKeyCodec", "FdCodec"]


class PerCPUMap(Map):
    """Per-CPU hash/array/LRU hash: a value is a list with one entry per possible CPU.

    ``update`` takes one value (written on every CPU) or a list of exactly
    :func:`ebpf.core.system.cpu_count` values.
    """

    def _make_value_layout(self) -> Layout:
        self.ncpus = cpu_count()
        return Layout(self.value_codec, self.value_size, self.ncpus)

    def _install_fast_ops(self) -> None:
        codec, ncpus, size = self.value_codec, self.ncpus, self.value_size
        stride = round8(size)

        def value_io(bufs: Buffers) -> tuple[Any, Any]:
            """(write, read) over one pooled buffer set's value buffer."""
            view = memoryview(bufs.value).cast("B")
            read: Any
            if isinstance(codec, IntCodec):
                # a (strided) view over the value buffer: its bound tolist() is the whole decoder
                ints = view[: stride * ncpus].cast(codec.code)
                read = ints[:: stride // codec.size].tolist if stride != codec.size else ints.tolist
            else:

                def read() -> Any:
                    return decode_percpu(codec, view, ncpus, size)

            def write(value: Any) -> None:
                data = encode_percpu(codec, value, ncpus, size)
                view[: len(data)] = data

            return write, read

        lookup, update, delete = make_ops(
            self._bufs, self.key_codec, None, value_io=value_io, parse_flags=parse_update_flags,
            bad_key=_bad("key", self.key_codec), bad_value=_bad("value", codec), failed=_make_failed(self._state),
        )
        self.__dict__.update(lookup=lookup, update=update, delete=delete)


class _KeylessMap(Map):
    """Maps without keys (stack, queue, bloom filter): element commands on the value alone."""

    def _value_op(self, cmd: int, value: bytes | None, flags: int = 0) -> bytes | None:
        buf = ctypes.create_string_buffer(value, self.value_size) if value is not None \
            else ctypes.create_string_buffer(self.value_size)
        err = self._elem(cmd, None, buf, flags)
        if err == errno.ENOENT:
            return None
        if err:
            raise_for(self._state, cmd, err, None)
        return buf.raw

    def _unsupported(self, what: str) -> NotSupportedError:
        return NotSupportedError(f"{self.map_type.lower_name} maps have no keys: {what} is not possible")

    def lookup(self, key: Any, default: Any = None) -> Any:
        """Not for keyless maps (use peek/pop or ``in``)."""
        raise self._unsupported("lookup by key")

    def delete(self, key: Any) -> None:
        """Not for keyless maps."""
        raise self._unsupported("delete by key")

    def items(self) -> Any:
        """Not for keyless maps."""
        raise self._unsupported("iteration")

    keys = values = items

    def count(self) -> int:
        """Not for keyless maps."""
        raise self._unsupported("counting")


class QueueMap(_KeylessMap):
    """Stack (LIFO) and queue (FIFO) maps: :meth:`push`, :meth:`pop`, :meth:`peek`."""

    def push(self, value: Any, flags: str | int = "any") -> None:
        """Add ``value``; with ``flags="exist"`` a full map drops its oldest element instead of failing.

        :raises MapFullError: when full (and not ``"exist"``).
        """
        data = self._encode_value(value)
        self._value_op(Cmd.MAP_UPDATE_ELEM, data, parse_update_flags(flags))

    def update(self, key: Any, value: Any, flags: str | int = "any") -> None:
        """Same as :meth:`push` (``key`` must be None)."""
        if key is not None:
            raise self._unsupported("update by key")
        self.push(value, flags)

    def pop(self) -> Any:
        """Remove and return the next element, or None when empty."""
        data = self._value_op(Cmd.MAP_LOOKUP_AND_DELETE_ELEM, None)
        return None if data is None else self.value_codec.decode(data)

    def peek(self) -> Any:
        """The next element without removing it, or None when empty."""
        data = self._value_op(Cmd.MAP_LOOKUP_ELEM, None)
        return None if data is None else self.value_codec.decode(data)

    def clear(self) -> None:
        """Pop until empty."""
        while self._value_op(Cmd.MAP_LOOKUP_AND_DELETE_ELEM, None) is not None:
            pass


class BloomFilterMap(_KeylessMap):
    """Bloom filter: :meth:`push` adds a value, ``value in bf`` may give false positives. Requires Linux >= 5.16."""

    def push(self, value: Any) -> None:
        """Add ``value`` to the filter."""
        self._value_op(Cmd.MAP_UPDATE_ELEM, self._encode_value(value))

    add = push

    def update(self, key: Any, value: Any, flags: str | int = "any") -> None:
        """Same as :meth:`push` (``key`` must be None)."""
        if key is not None:
            raise self._unsupported("update by key")
        self.push(value)

    def __contains__(self, value: object) -> bool:
        return self._value_op(Cmd.MAP_LOOKUP_ELEM, self._encode_value(value)) is not None

    def clear(self) -> None:
        """Bloom filters cannot forget."""
        raise self._unsupported("clear")


class LPMKeyCodec(Codec):
    """LPM trie keys: ``struct { u32 prefixlen; u8 data[N]; }`` <-> ipaddress networks or ``(prefixlen, bytes)``."""

    def __init__(self, size: int) -> None:
        if size <= 4:
            raise EBPFError(f"LPM trie keys need more than 4 bytes (prefixlen + data), got {size}")
        self.size = size
        self.data_size = size - 4

    def __repr__(self) -> str:
        return f"lpm_key({self.data_size})"

    def encode(self, obj: Any) -> bytes:
        """Encode ``obj`` into exactly :attr:`size` bytes (:raises EBPFError: when it does not fit)."""
        import ipaddress  # deferred: start-up time (only LPM trie keys need it)

        if isinstance(obj, str):
            try:
                obj = ipaddress.ip_network(obj, strict=False)
            except ValueError as exc:
                raise EBPFError(f"bad LPM trie key {obj!r}: {exc}") from None
        if isinstance(obj, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
            obj = ipaddress.ip_network(obj)
        if isinstance(obj, (ipaddress.IPv4Network, ipaddress.IPv6Network)):
            prefix, data = obj.prefixlen, obj.network_address.packed
        elif isinstance(obj, tuple) and len(obj) == 2 and isinstance(obj[0], int) \
                and isinstance(obj[1], (bytes, bytearray)):
            prefix, data = obj[0], bytes(obj[1])
        else:
            raise EBPFError(f"LPM trie key must be an ipaddress network, a str or (prefixlen, bytes), got {obj!r}")
        if len(data) != self.data_size:
            raise EBPFError(f"LPM trie key {obj!r} has {len(data)} data bytes, the map's keys have {self.data_size}")
        if not 0 <= prefix <= 8 * self.data_size:
            raise EBPFError(f"LPM prefix length {prefix} out of range 0..{8 * self.data_size}")
        return prefix.to_bytes(4, "little") + data

    def decode(self, buf: bytes | bytearray | memoryview) -> Any:
        """Decode exactly :attr:`size` bytes (:raises EBPFError: on another length)."""
        self._check_len(buf)
        raw = bytes(buf)
        prefix, data = int.from_bytes(raw[:4], "little"), raw[4:]
        if self.data_size in (4, 16) and prefix <= 8 * self.data_size:
            import ipaddress  # deferred: start-up time (only LPM trie keys need it)

            addr = ipaddress.ip_address(data)
            return ipaddress.ip_network((addr, prefix), strict=False)
        return (prefix, data)


class LPMTrieMap(Map):
    """Longest-prefix-match trie: keys are networks, :meth:`longest_match` finds the best one for an address."""

    def longest_match(self, address: Any) -> tuple[Any, Any] | None:
        """The most specific (network, value) containing ``address`` (an ipaddress address, str or bytes), or None."""
        codec = self.key_codec
        assert isinstance(codec, LPMKeyCodec)
        if isinstance(address, (bytes, bytearray)):
            data = bytes(address)
        else:
            import ipaddress  # deferred: start-up time (only LPM trie keys need it)

            try:
                data = ipaddress.ip_address(address).packed
            except ValueError as exc:
                raise EBPFError(f"bad address {address!r}: {exc}") from None
        if len(data) != codec.data_size:
            raise EBPFError(f"address {address!r} has {len(data)} bytes, the trie's keys have {codec.data_size}")
        value = self.lookup((8 * len(data), data), MISSING)
        if value is MISSING:
            return None
        # The kernel returns only the value: find which prefix matched by walking the keys.
        best: Any = None
        best_len = -1
        whole = int.from_bytes(data, "big")
        bits = 8 * len(data)
        for key in self.keys():
            prefix, kdata = (key.prefixlen, key.network_address.packed) if not isinstance(key, tuple) else key
            mask = ((1 << prefix) - 1) << (bits - prefix) if prefix else 0
            if prefix > best_len and (int.from_bytes(kdata, "big") & mask) == (whole & mask):
                best, best_len = key, prefix
        if best is None:
            return None
        return best, self.lookup(best, value)


class FdCodec(Codec):
    """Values of fd arrays: written as an fd (an int or an object with ``.fd``), read back as the object's id."""

    size = 4

    def __repr__(self) -> str:
        return "fd"

    def encode(self, obj: Any) -> bytes:
        """Encode ``obj`` into exactly :attr:`size` bytes (:raises EBPFError: when it does not fit)."""
        fd = getattr(obj, "fd", obj)
        if isinstance(fd, bool) or not isinstance(fd, int) or not 0 <= fd < 1 << 31:
            raise EBPFError(f"expected an fd or an object with .fd, got {obj!r}")
        return fd.to_bytes(4, "little")

    def decode(self, buf: bytes | bytearray | memoryview) -> Any:
        """Decode exactly :attr:`size` bytes (:raises EBPFError: on another length)."""
        self._check_len(buf)
        return int.from_bytes(bytes(buf), "little")


class FdArrayMap(Map):
    """Program arrays, perf event arrays, array/hash of maps: update with a Program/Map (or fd), lookup gives its id."""

    def clear(self) -> None:
        """Remove every entry."""
        if self.map_type in ARRAY_TYPES:
            self.delete_batch(range(self.max_entries))
        else:
            self.delete_batch(list(self.keys()))


class _Mmap:
    """The shared mapping of an mmapable array, made on first use.

    Lazily, because a writable mapping forbids BPF_MAP_FREEZE (EBUSY) and a frozen map allows
    only read-only mappings: the ELF loader's create -> fill -> freeze -> read flow must work.
    ``view`` is the value area as bytes; ``slots`` (int values only) has one item per array slot,
    typed by the value codec.  ``listener`` hears every change of ``slots`` (the hot path keeps
    it in a closure variable: cheaper than an attribute load per call).
    """

    __slots__ = ("code", "fd", "frozen", "length", "listener", "mm", "per", "readonly", "size", "slots", "view")

    def __init__(self, fd: int, stride: int, n: int, code: str | None, per: int, readonly: bool) -> None:
        self.fd = fd
        self.size = stride * n
        self.length = (max(self.size, 1) + _mmap.PAGESIZE - 1) // _mmap.PAGESIZE * _mmap.PAGESIZE
        self.code, self.per, self.readonly, self.frozen = code, per, readonly, False
        self.mm: _mmap.mmap | None = None
        self.view: memoryview | None = None
        self.slots: memoryview | None = None
        self.listener: Callable[[memoryview | None], None] | None = None

    def open(self) -> memoryview:
        """Map (once) and return the byte view of the value area."""
        if self.mm is None:
            prot = _mmap.PROT_READ
            if not (self.readonly or self.frozen):
                prot |= _mmap.PROT_WRITE
            try:
                self.mm = _mmap.mmap(self.fd, self.length, _mmap.MAP_SHARED, prot)
            except PermissionError:  # frozen by someone else: read-only then
                self.frozen = True
                self.mm = _mmap.mmap(self.fd, self.length, _mmap.MAP_SHARED, _mmap.PROT_READ)
            except OSError as exc:
                raise EBPFError(f"cannot mmap the array map: {exc}") from None
            self._views()
        assert self.view is not None
        return self.view

    def typed(self) -> memoryview:
        """A new view with one item per slot (int values; strided when the value is narrower than 8 bytes)."""
        assert self.mm is not None and self.code is not None
        ints: memoryview = memoryview(self.mm)[: self.size].cast(self.code)  # type: ignore[call-overload]
        if self.per == 1:
            return ints
        try:
            return ints[:: self.per]
        finally:
            ints.release()  # the slice holds the buffer itself

    def _views(self) -> None:
        assert self.mm is not None
        self.view = memoryview(self.mm)[: self.size]
        self.slots = self.typed() if self.code else None
        if self.listener is not None:
            self.listener(self.slots)

    def release(self, final: bool = False) -> None:
        """Unmap; raises EBPFError while the user still holds a view from ``mmap()`` or ``view()``.

        :param final: the map is closing: drop our views whatever happens (the mapping then goes
            with the user's last view) and raise nothing.
        """
        if self.mm is None:
            return
        if self.listener is not None:
            self.listener(None)
        for view in (self.slots, self.view):
            if view is not None:
                view.release()
        self.slots = self.view = None
        try:
            self.mm.close()
        except BufferError:
            if final:
                self.mm = None
                return
            self._views()  # still mapped: keep working
            raise EBPFError("views returned by mmap() or view() are still in use: release them first") from None
        self.mm = None


def _index(key: Any) -> int:
    """``key`` as an array index, or our error."""
    try:
        return operator.index(key)
    except TypeError as exc:
        raise EBPFError(f"bad map key {key!r}: {exc}") from None


class MmapArrayMap(Map):
    """An array map created with BPF_F_MMAPABLE: lookups and updates go through the mmap, no syscall.

    :meth:`view` gives the values as a typed memoryview (one int per slot, C-speed indexing, like
    cilium/ebpf's ``Map.Memory``); ``m[i]``, :meth:`lookup` and :meth:`update` keep the dict protocol
    (out-of-range keys: ``default`` / :class:`KeyNotFoundError`).  The mapping is made on first use;
    :meth:`freeze` unmaps it first (the kernel refuses to freeze a map with a writable mapping) and
    later mappings are read-only.  Requires Linux >= 5.5.
    """

    # A slot, not the instance dict: ``m[i]`` reads it on every call and a slot is the cheapest attribute.
    __slots__ = ("_view_slots",)
    _mm: _Mmap

    def _install_fast_ops(self) -> None:
        super()._install_fast_ops()  # syscall ops kept for the generic paths
        stride = round8(self.value_size)
        codec, n = self.value_codec, self.max_entries
        ints = isinstance(codec, IntCodec)
        st = self._mm = _Mmap(self._fd, stride, n, codec.code if isinstance(codec, IntCodec) else None,
                              stride // codec.size if ints else 1, bool(self.flags & 0x8))  # BPF_F_RDONLY
        name, state = self.name, self._state

        def usable() -> None:
            if state.closed:
                raise EBPFError(f"map {name!r} is closed")

        def read_only() -> EBPFError:
            return EBPFError(f"map {name!r} is read-only for user space (frozen or BPF_F_RDONLY)")

        def check_flags(flags: object) -> None:
            if flags not in ("any", "exist", 0, 2):
                raise EBPFError(f"array maps take update flags 'any' or 'exist', not {flags!r}")

        if ints:
            # The hot path tries the one likely case and leaves everything else to the slow path:
            # ``slots`` is None before the first use (TypeError), released after close (ValueError),
            # read-only when frozen (TypeError on a write); a key past the end raises IndexError.
            slots: Any = None
            self._view_slots = None
            owner = weakref.ref(self)  # no cycle map -> _Mmap -> listener -> map

            def set_slots(view: memoryview | None) -> None:
                nonlocal slots
                slots = view
                m = owner()
                if m is not None:
                    m._view_slots = view

            st.listener = set_slots

            def lookup_slow(key: Any, default: Any) -> Any:
                usable()
                k = _index(key)
                if not 0 <= k < n:
                    return default
                st.open()
                assert st.slots is not None
                return st.slots[k]

            def lookup(key: Any, default: Any = None) -> Any:
                try:
                    if key >= 0:
                        return slots[key]
                except IndexError:
                    return default
                except BAD_INPUT:
                    return lookup_slow(key, default)
                return default

            def update_slow(key: Any, value: Any) -> None:
                usable()
                k = _index(key)
                if not 0 <= k < n:
                    raise KeyNotFoundError(key, "mmap")
                if st.readonly or st.frozen:
                    raise read_only()
                codec.encode(value)  # our error for a bad value
                st.open()
                if st.frozen:  # found frozen by someone else on mapping
                    raise read_only()
                assert st.slots is not None
                try:
                    st.slots[k] = value
                except BAD_INPUT as exc:
                    raise EBPFError(f"bad map value {value!r}: {exc}") from None

            def update(key: Any, value: Any, flags: str | int = "any") -> None:
                if flags != "any":
                    check_flags(flags)
                try:
                    if key >= 0:
                        slots[key] = value
                        return
                except IndexError:
                    raise KeyNotFoundError(key, "mmap") from None
                except BAD_INPUT:
                    update_slow(key, value)
                    return
                raise KeyNotFoundError(key, "mmap")
        else:
            self._view_slots = None  # no typed view: m[i] goes through lookup
            size = self.value_size

            def lookup(key: Any, default: Any = None) -> Any:
                usable()
                k = _index(key)
                if not 0 <= k < n:
                    return default
                view = st.view if st.view is not None else st.open()
                return codec.decode(view[k * stride : k * stride + size])

            def update(key: Any, value: Any, flags: str | int = "any") -> None:
                if flags != "any":
                    check_flags(flags)
                usable()
                k = _index(key)
                if not 0 <= k < n:
                    raise KeyNotFoundError(key, "mmap")
                data = codec.encode(value)
                if st.readonly or st.frozen:
                    raise read_only()
                view = st.view if st.view is not None else st.open()
                if view.readonly:
                    raise read_only()
                view[k * stride : k * stride + size] = data

        self.__dict__.update(lookup=lookup, update=update)

    def __getitem__(self, key: Any) -> Any:
        # Inline fast case (one call less than lookup); anything unusual goes through lookup.
        try:
            if key >= 0:
                return self._view_slots[key]  # type: ignore[index]
        except IndexError:
            raise KeyNotFoundError(key, "mmap") from None
        except BAD_INPUT:
            value = self.lookup(key, MISSING)
            if value is not MISSING:
                return value
        raise KeyNotFoundError(key, "mmap")

    def __setitem__(self, key: Any, value: Any) -> None:
        try:
            if key >= 0:
                self._view_slots[key] = value  # type: ignore[index]
                return
        except IndexError:
            raise KeyNotFoundError(key, "mmap") from None
        except BAD_INPUT:
            pass
        self.update(key, value)  # the errors: bad key or value, read-only, closed, not mapped yet

    def mmap(self) -> memoryview:
        """The value area (``max_entries`` slots of ``round8(value_size)`` bytes), shared with the kernel.

        Read-only once the map is frozen.  Release the view before :meth:`freeze` or :meth:`close`.
        """
        if self._state.closed:
            raise EBPFError(f"map {self.name!r} is closed")
        self._mm.open()
        assert self._mm.mm is not None
        return memoryview(self._mm.mm)[: self._mm.size]

    def view(self) -> memoryview:
        """The values as a memoryview with one item per slot (``view()[i]`` is the value at index ``i``).

        Typed by the value codec (format ``"Q"`` for u64, ``"I"`` for u32, ...; slots narrower than
        8 bytes are a strided view), shared with the kernel and BPF programs both ways, indexed at C
        speed with no syscall.  Plain memoryview semantics: negative indexes count from the end and a
        bad index raises IndexError.  Read-only once the map is frozen.  Release it (``with`` or
        ``.release()``) before :meth:`freeze` or :meth:`close`.

        :raises NotSupportedError: for values that are not integers (use :meth:`mmap` for the bytes).
        """
        if self._state.closed:
            raise EBPFError(f"map {self.name!r} is closed")
        if self._mm.code is None:
            raise NotSupportedError(f"map {self.name!r} has {self.value_codec!r} values: view() needs integer "
                                    "values; mmap() gives the bytes")
        self._mm.open()
        return self._mm.typed()

    def freeze(self) -> None:
        """Unmap, freeze (user space read-only), and map read-only from then on. Requires Linux >= 5.2."""
        self._mm.release()
        super().freeze()
        self._mm.frozen = True

    def _release_extra(self) -> None:
        self._mm.release(final=True)  # a view the user still holds keeps the mapping until released


class RingBufMap(Map):
    """A BPF ring buffer (read it with ``ebpf.events.ringbuf.RingBuffer(map)`` or :meth:`Map.reader`)."""

    def items(self) -> Any:
        """Ring buffers have no elements to iterate: read them with a reader."""
        raise NotSupportedError("ring buffer maps are read with a reader (ebpf.events.ringbuf), not iterated")

    keys = values = items

    def count(self) -> int:
        """Not for ring buffers."""
        raise NotSupportedError("ring buffer maps have no entry count")


KIND_BY_TYPE: dict[MapType, type[Map]] = {
    MapType.PERCPU_HASH: PerCPUMap,
    MapType.PERCPU_ARRAY: PerCPUMap,
    MapType.LRU_PERCPU_HASH: PerCPUMap,
    MapType.PERCPU_CGROUP_STORAGE: PerCPUMap,
    MapType.STACK: QueueMap,
    MapType.QUEUE: QueueMap,
    MapType.BLOOM_FILTER: BloomFilterMap,
    MapType.LPM_TRIE: LPMTrieMap,
    MapType.PROG_ARRAY: FdArrayMap,
    MapType.PERF_EVENT_ARRAY: FdArrayMap,
    MapType.ARRAY_OF_MAPS: FdArrayMap,
    MapType.HASH_OF_MAPS: FdArrayMap,
    MapType.CGROUP_ARRAY: FdArrayMap,
    MapType.RINGBUF: RingBufMap,
    MapType.USER_RINGBUF: RingBufMap,
    MapType.STACK_TRACE: StackTraceMap,
}

_ = KeyNotFoundError
