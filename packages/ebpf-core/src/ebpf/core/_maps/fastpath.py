"""Generated hot-path functions for ``Map.lookup`` / ``update`` / ``delete``.

Why generated: a single map operation is one ~1 us syscall, and every Python-level
step around it shows up in the benchmark (docs: PEERS.md, "within 10 % of the raw
ctypes floor").  The functions below are closures over a small pool of preallocated
buffer sets, with the key/value conversion for the map's codecs inlined as source
text, so a lookup of a u32 -> u64 map runs the same steps as the hand-written ctypes
loop plus one ``list.pop`` and one ``list.append`` -- and calls ``syscall`` without
ctypes argtypes (see ``_bpf_call``), which makes it faster than that loop.

Thread safety without a lock: ``list.pop()`` and ``list.append()`` are atomic under
the GIL, so between taking a set (``pop``) and giving it back (``append``, in a
``finally``) exactly one thread owns it.  A thread that finds the pool empty allocates
a new set, so the pool only grows to the number of threads using the map at once.

Closing: :meth:`BufferPool.invalidate` points every set (pooled or in use) at fd -1
and makes later sets start at -1; :meth:`BufferPool.drain` then waits until every
set is back, so no syscall that read the old fd number is still running when the
fd is closed (a later one fails with EBADF and reports the closed map).

Each variant (key kind x value kind) is compiled once and cached; a map instance
only calls the cached factory with its own pool.
"""

from __future__ import annotations

import ctypes
import os
import struct
import threading
import time
from collections.abc import Callable
from typing import Any

from ebpf.core._sys.attrs import MapElemAttr
from ebpf.core._sys.syscall import SYS_BPF, libc, raw_syscall
from ebpf.core.codecs import Codec, IntCodec, StructCodec
from ebpf.core.errors import EBPFError
from ebpf.core.records import compile_cached

__all__ = ["Buffers", "BufferPool", "make_ops", "BAD_INPUT"]

#: What a failed conversion raises inside the generated code (turned into EBPFError).
BAD_INPUT = (TypeError, ValueError, OverflowError, struct.error, AttributeError)

_ATTR_SIZE = ctypes.sizeof(MapElemAttr)

#: ``syscall(SYS_bpf, cmd, attr, size)`` for the hot path: a private function object of the same
#: (errno-saving) libc as :data:`ebpf.core._sys.syscall.raw_syscall`, but *without* argtypes.  With
#: argtypes ctypes calls ``from_param`` and allocates an argument object for every argument of every
#: call (~0.4 us of a ~1.3 us lookup here); without them it converts the small int constants in C (as C
#: ``int``: libffi widens them to the 64-bit registers) and passes the attr address from a prebuilt
#: ``c_void_p`` (a plain int would be truncated to 32 bits).  Only ever call it with exactly those types.
_bpf_call = libc["syscall"]
_bpf_call.restype = ctypes.c_long
if os.uname().machine not in ("x86_64", "aarch64", "arm64"):
    # Where we have not checked that libffi widens C ints into the argument registers, pay for argtypes.
    _bpf_call = raw_syscall
_CLOSED_FD = 0xFFFFFFFF  # -1 as the u32 map_fd field

#: One pooled set as the generated code sees it:
#: ``(key handle, value-in handle, value-out handle, attr_ptr, flag_attr, flag_attr_ptr, del_attr_ptr, Buffers)``.
Entry = tuple[Any, Any, Any, ctypes.c_void_p, MapElemAttr, ctypes.c_void_p, ctypes.c_void_p, "Buffers"]


class Buffers:
    """One set of preallocated attr and key/value buffers (owned by one thread at a time)."""

    def __init__(self, fd: int, key_size: int, value_bytes: int) -> None:
        self.key = ctypes.create_string_buffer(max(key_size, 1))
        self.value = ctypes.create_string_buffer(max(value_bytes, 1))
        self.key_addr = ctypes.addressof(self.key) if key_size else 0
        self.value_addr = ctypes.addressof(self.value)
        fd &= 0xFFFFFFFF
        self.attr = MapElemAttr(map_fd=fd, key=self.key_addr, value=self.value_addr)
        self.attr_addr = ctypes.addressof(self.attr)
        self.attr_ptr = ctypes.c_void_p(self.attr_addr)
        # Same buffers, with elem flags (update with "noexist", "exist", "lock").
        self.flag_attr = MapElemAttr(map_fd=fd, key=self.key_addr, value=self.value_addr)
        self.flag_attr_addr = ctypes.addressof(self.flag_attr)
        self.flag_attr_ptr = ctypes.c_void_p(self.flag_attr_addr)
        # BPF_MAP_DELETE_ELEM wants every field after ``key`` zero.
        self.del_attr = MapElemAttr(map_fd=fd, key=self.key_addr)
        self.del_attr_addr = ctypes.addressof(self.del_attr)
        self.del_attr_ptr = ctypes.c_void_p(self.del_attr_addr)

    def invalidate(self) -> None:
        """Point the attrs at fd -1 so a stale function can never touch a reused fd number."""
        self.attr.map_fd = _CLOSED_FD
        self.flag_attr.map_fd = _CLOSED_FD
        self.del_attr.map_fd = _CLOSED_FD


class BufferPool:
    """The buffer sets of one map's hot path, plus the lock of its slow paths.

    ``free`` is the pool proper (the generated code pops and appends entries);
    :meth:`new` allocates a set when it is empty.  ``lock`` serialises the slow paths
    (``*_bytes``, batches, allocation) with :meth:`Map.close`; the hot path never takes it.
    """

    def __init__(self, fd: int, key_size: int, value_bytes: int) -> None:
        self.fd = fd
        self.key_size = key_size
        self.value_bytes = value_bytes
        self.lock = threading.Lock()
        self.closed = False
        self.free: list[Entry] = []
        self.sets: list[Buffers] = []  # every set ever allocated (pooled or in use)
        self.entry: Callable[[Buffers], Entry] | None = None  # set by make_ops

    def new(self) -> Entry:
        """A fresh entry (not in ``free``); it points at fd -1 once the pool is invalidated."""
        with self.lock:
            if self.entry is None:
                raise EBPFError("map has no fast path")
            bufs = Buffers(-1 if self.closed else self.fd, self.key_size, self.value_bytes)
            entry = self.entry(bufs)
            self.sets.append(bufs)
            return entry

    def invalidate(self) -> None:
        """Point every set, present and future, at fd -1 (call with ``lock`` held)."""
        self.closed = True
        for bufs in self.sets:
            bufs.invalidate()

    def drain(self, timeout: float = 1.0) -> None:
        """Wait until every set is back in the pool (call with ``lock`` held, after :meth:`invalidate`).

        A set still out may be inside a syscall that read the old fd; once all are back
        no one can use that fd number any more.  Map element syscalls do not block, so this
        takes microseconds; the wait is bounded by ``timeout`` all the same, since a set can
        be lost for good (an asynchronous KeyboardInterrupt between ``pop`` and ``try``), and
        a lost set is invalid and unused anyway.
        """
        delay = 0.0
        deadline = time.monotonic() + timeout
        while len(self.free) < len(self.sets) and time.monotonic() < deadline:
            time.sleep(delay)
            delay = min(0.001, delay + 0.0001)


def _enc(kind: str, obj: str, pre: str, h: str) -> str:
    """Source that writes ``obj`` through handle ``h`` for a codec kind (``pre``: codec-level names)."""
    if kind.startswith("uint"):
        bits = kind[4:]
        return f"if {obj} >> {bits}: raise OverflowError\n{h}.value = {obj}"
    if kind.startswith("sint"):
        nbits = int(kind[4:])
        return f"if ({obj} + {1 << (nbits - 1)}) >> {nbits}: raise OverflowError\n{h}.value = {obj}"
    if kind == "struct1":
        return f"{pre}pack({h}, 0, {obj})"
    if kind == "structN":
        return f"{pre}pack({h}, 0, *{obj})"
    if kind == "custom":
        return f"{h}({obj})"
    # generic codec: its own errors are already EBPFError
    return f"_b = {pre}enc({obj})\nif len(_b) != {pre}size: raise ValueError\nmemmove({h}, _b, {pre}size)"


def _dec(kind: str, h: str) -> str:
    if kind.startswith(("uint", "sint")):
        return f"{h}.value"
    if kind == "struct1":
        return f"vunpack({h}, 0)[0]"
    if kind == "structN":
        return f"vunpack({h}, 0)"
    if kind == "custom":
        return f"{h}()"
    return f"vdec({h}.raw)"


def _indent(src: str, n: int) -> str:
    pad = " " * n
    return "\n".join(pad + line for line in src.splitlines())


_TEMPLATE = """
def factory(pop, append, new, syscall, kpack, kenc, ksize, vpack, vunpack, venc, vdec, vsize,
            memmove, parse_flags, bad_key, bad_value, failed):
    def lookup(key, default=None):
        try:
            b = pop()
        except IndexError:
            b = new()
        try:
            try:
{kenc}
            except BAD as exc:
                raise bad_key(key, exc) from None
            if syscall({sys_bpf}, 1, b[3], {attr_size}) < 0:
                return failed(1, key, default)
            return {vdec}
        finally:
            append(b)

    def update(key, value, flags="any"):
        try:
            b = pop()
        except IndexError:
            b = new()
        try:
            try:
{kenc}
            except BAD as exc:
                raise bad_key(key, exc) from None
            try:
{venc}
            except BAD as exc:
                raise bad_value(value, exc) from None
            if flags == "any" or flags == 0:
                addr = b[3]
            else:
                b[4].flags = parse_flags(flags)
                addr = b[5]
            if syscall({sys_bpf}, 2, addr, {attr_size}) < 0:
                failed(2, key, None)
        finally:
            append(b)

    def delete(key):
        try:
            b = pop()
        except IndexError:
            b = new()
        try:
            try:
{kenc}
            except BAD as exc:
                raise bad_key(key, exc) from None
            if syscall({sys_bpf}, 3, b[6], {attr_size}) < 0:
                failed(3, key, None)
        finally:
            append(b)

    return lookup, update, delete
"""

_FACTORIES: dict[tuple[str, str], Callable[..., tuple[Callable[..., Any], ...]]] = {}
_FACTORY_LOCK = threading.Lock()


def codec_kind(codec: Codec | None) -> str:
    """How the generated code converts values of this codec."""
    if codec is None:
        return "custom"
    if isinstance(codec, IntCodec) and codec.size in (1, 2, 4, 8):
        return ("sint" if codec.signed else "uint") + str(codec.size * 8)
    if isinstance(codec, StructCodec):
        return "struct1" if codec.single else "structN"
    return "generic"


def _factory(kkind: str, vkind: str) -> Callable[..., tuple[Callable[..., Any], ...]]:
    key = (kkind, vkind)
    with _FACTORY_LOCK:
        fn = _FACTORIES.get(key)
        if fn is None:
            src = _TEMPLATE.format(
                kenc=_indent(_enc(kkind, "key", "k", "b[0]"), 16),
                venc=_indent(_enc(vkind, "value", "v", "b[1]"), 16),
                vdec=_dec(vkind, "b[2]"),
                sys_bpf=SYS_BPF,
                attr_size=_ATTR_SIZE,
            )
            ns: dict[str, Any] = {"BAD": BAD_INPUT}
            exec(compile_cached(src, f"<ebpf map fastpath {kkind}/{vkind}>"), ns)
            fn = ns["factory"]
            _FACTORIES[key] = fn
    return fn


def _handles(kind: str, buf: ctypes.Array[ctypes.c_char], addr: int, codec: Codec | None) -> tuple[Any, Any]:
    """The (write, read) handles of one buffer for a codec kind (custom values are handled by the caller)."""
    if kind.startswith(("uint", "sint")):
        assert isinstance(codec, IntCodec)
        scalar = codec.ctype.from_buffer(buf)
        return scalar, scalar
    if kind.startswith("struct"):
        return buf, buf
    return addr, buf  # generic: memmove into the address, decode the raw bytes


def make_ops(
    pool: BufferPool,
    key_codec: Codec,
    value_codec: Codec | None,
    *,
    value_io: Callable[[Buffers], tuple[Callable[[Any], None], Callable[[], Any]]] | None = None,
    parse_flags: Callable[[Any], int],
    bad_key: Callable[[Any, BaseException], Exception],
    bad_value: Callable[[Any, BaseException], Exception],
    failed: Callable[[int, Any, Any], Any],
) -> tuple[Callable[..., Any], Callable[..., None], Callable[[Any], None]]:
    """Build ``(lookup, update, delete)`` for one map, working on the sets of ``pool``.

    :param value_codec: None when ``value_io`` converts values (per-CPU maps).
    :param value_io: ``value_io(bufs)`` returns ``(write, read)`` over one set's value buffer.
    :param failed: ``failed(cmd, key, default)`` handles a negative syscall result (reads errno).
    """
    kkind = codec_kind(key_codec)
    vkind = codec_kind(value_codec)
    if not key_codec.size:
        raise EBPFError("maps without keys have no lookup/update/delete by key")
    if value_codec is None and value_io is None:
        raise EBPFError("a map without a value codec needs value_io")
    fn = _factory(kkind, vkind)

    def entry(bufs: Buffers) -> Entry:
        k, _ = _handles(kkind, bufs.key, bufs.key_addr, key_codec)
        if value_codec is None:
            assert value_io is not None
            vi, vo = value_io(bufs)
        else:
            vi, vo = _handles(vkind, bufs.value, bufs.value_addr, value_codec)
        return (k, vi, vo, bufs.attr_ptr, bufs.flag_attr, bufs.flag_attr_ptr, bufs.del_attr_ptr, bufs)

    pool.entry = entry

    def _s(codec: Codec | None) -> Any:
        return codec.struct if isinstance(codec, StructCodec) else None

    ks, vs = _s(key_codec), _s(value_codec)
    free = pool.free
    return fn(  # type: ignore[return-value]
        free.pop,
        free.append,
        pool.new,
        _bpf_call,
        ks.pack_into if ks else None,
        key_codec.encode,
        key_codec.size,
        vs.pack_into if vs else None,
        vs.unpack_from if vs else None,
        value_codec.encode if value_codec else None,
        value_codec.decode if value_codec else None,
        value_codec.size if value_codec else 0,
        ctypes.memmove,
        parse_flags,
        bad_key,
        bad_value,
        failed,
    )

