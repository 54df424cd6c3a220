"""Generated hot-path functions for ``Map.lookup`` / ``update`` / ``delete``.

Why generated: a single map operation is one ~1 us syscall, and every Python-level
step around it shows up in the benchmark (docs: PEERS.md, "within 10 % of the raw
ctypes floor").  The functions below are closures over preallocated buffers, with
the key/value conversion for the map's codecs inlined as source text, so a lookup of
a u32 -> u64 map runs the same steps as the hand-written ctypes loop plus a lock.

Each variant (key kind x value kind) is compiled once and cached; a map instance
only calls the cached factory with its own buffers.
"""

from __future__ import annotations

import ctypes
import errno
import struct
import threading
from collections.abc import Callable
from typing import Any

from ebpf.core._sys.attrs import MapElemAttr
from ebpf.core._sys.syscall import SYS_BPF, get_errno, raw_syscall
from ebpf.core.codecs import Codec, IntCodec, StructCodec
from ebpf.core.errors import EBPFError

__all__ = ["Buffers", "make_ops", "BAD_INPUT"]

#: What a failed conversion raises inside the generated code (turned into EBPFError).
BAD_INPUT = (TypeError, ValueError, OverflowError, struct.error, AttributeError)

_ATTR_SIZE = ctypes.sizeof(MapElemAttr)


class Buffers:
    """The preallocated attr and key/value buffers one map's hot path works on."""

    def __init__(self, fd: int, key_size: int, value_bytes: int) -> None:
        self.key = ctypes.create_string_buffer(max(key_size, 1))
        self.value = ctypes.create_string_buffer(max(value_bytes, 1))
        self.key_addr = ctypes.addressof(self.key) if key_size else 0
        self.value_addr = ctypes.addressof(self.value)
        self.attr = MapElemAttr(map_fd=fd, key=self.key_addr, value=self.value_addr)
        self.attr_addr = ctypes.addressof(self.attr)
        # Same buffers, with elem flags (update with "noexist", "exist", "lock").
        self.flag_attr = MapElemAttr(map_fd=fd, key=self.key_addr, value=self.value_addr)
        self.flag_attr_addr = ctypes.addressof(self.flag_attr)
        # BPF_MAP_DELETE_ELEM wants every field after ``key`` zero.
        self.del_attr = MapElemAttr(map_fd=fd, key=self.key_addr)
        self.del_attr_addr = ctypes.addressof(self.del_attr)
        self.lock = threading.Lock()

    def invalidate(self) -> None:
        """Point the attrs at fd -1 so a stale function can never touch a reused fd number."""
        self.attr.map_fd = 0xFFFFFFFF
        self.flag_attr.map_fd = 0xFFFFFFFF
        self.del_attr.map_fd = 0xFFFFFFFF


def _enc(kind: str, obj: str, pre: str) -> str:
    """Source that writes ``obj`` into the ``pre``-buffer for a codec kind."""
    if kind.startswith("uint"):
        bits = kind[4:]
        return f"if {obj} >> {bits}: raise OverflowError\n{pre}val.value = {obj}"
    if kind.startswith("sint"):
        nbits = int(kind[4:])
        return f"if ({obj} + {1 << (nbits - 1)}) >> {nbits}: raise OverflowError\n{pre}val.value = {obj}"
    if kind == "struct1":
        return f"{pre}pack({pre}buf, 0, {obj})"
    if kind == "structN":
        return f"{pre}pack({pre}buf, 0, *{obj})"
    if kind == "custom":
        return f"{pre}write({obj})"
    # generic codec: its own errors are already EBPFError
    return f"_b = {pre}enc({obj})\nif len(_b) != {pre}size: raise ValueError\nmemmove({pre}addr, _b, {pre}size)"


def _dec(kind: str) -> str:
    if kind.startswith(("uint", "sint")):
        return "vval.value"
    if kind == "struct1":
        return "vunpack(vbuf, 0)[0]"
    if kind == "structN":
        return "vunpack(vbuf, 0)"
    if kind == "custom":
        return "vread()"
    return "vdec(vbuf.raw)"


def _indent(src: str, n: int) -> str:
    pad = " " * n
    return "\n".join(pad + line for line in src.splitlines())


_TEMPLATE = """
def factory(acquire, release, syscall, kbuf, kval, kpack, kenc, kaddr, ksize,
            vbuf, vval, vpack, vunpack, venc, vdec, vwrite, vread, vaddr, vsize,
            memmove, attr_addr, flag_attr, flag_attr_addr, del_attr_addr, parse_flags, bad_key, bad_value, failed):
    def lookup(key, default=None):
        acquire()
        try:
            try:
{kenc}
            except BAD as exc:
                raise bad_key(key, exc) from None
            if syscall({sys_bpf}, 1, attr_addr, {attr_size}) < 0:
                return failed(1, key, default)
            return {vdec}
        finally:
            release()

    def update(key, value, flags="any"):
        acquire()
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
                addr = attr_addr
            else:
                flag_attr.flags = parse_flags(flags)
                addr = flag_attr_addr
            if syscall({sys_bpf}, 2, addr, {attr_size}) < 0:
                failed(2, key, None)
        finally:
            release()

    def delete(key):
        acquire()
        try:
            try:
{kenc}
            except BAD as exc:
                raise bad_key(key, exc) from None
            if syscall({sys_bpf}, 3, del_attr_addr, {attr_size}) < 0:
                failed(3, key, None)
        finally:
            release()

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
                kenc=_indent(_enc(kkind, "key", "k"), 16),
                venc=_indent(_enc(vkind, "value", "v"), 16),
                vdec=_dec(vkind),
                sys_bpf=SYS_BPF,
                attr_size=_ATTR_SIZE,
            )
            ns: dict[str, Any] = {"BAD": BAD_INPUT}
            exec(compile(src, f"<ebpf map fastpath {kkind}/{vkind}>", "exec"), ns)
            fn = ns["factory"]
            _FACTORIES[key] = fn
    return fn


def _scalar(buf: ctypes.Array[ctypes.c_char], codec: Codec | None) -> Any:
    if isinstance(codec, IntCodec):
        return codec.ctype.from_buffer(buf)
    return None


def make_ops(
    bufs: Buffers,
    key_codec: Codec,
    value_codec: Codec | None,
    *,
    value_write: Callable[[Any], None] | None = None,
    value_read: Callable[[], Any] | None = None,
    parse_flags: Callable[[Any], int],
    bad_key: Callable[[Any, BaseException], Exception],
    bad_value: Callable[[Any, BaseException], Exception],
    failed: Callable[[int, Any, Any], Any],
) -> tuple[Callable[..., Any], Callable[..., None], Callable[[Any], None]]:
    """Build ``(lookup, update, delete)`` for one map.

    :param value_codec: None when ``value_write``/``value_read`` convert values (per-CPU maps).
    :param failed: ``failed(cmd, key, default)`` handles a negative syscall result (reads errno).
    """
    kkind = codec_kind(key_codec)
    vkind = codec_kind(value_codec)
    if not key_codec.size:
        raise EBPFError("maps without keys have no lookup/update/delete by key")
    fn = _factory(kkind, vkind)

    def _s(codec: Codec | None) -> Any:
        return codec.struct if isinstance(codec, StructCodec) else None

    ks, vs = _s(key_codec), _s(value_codec)
    return fn(  # type: ignore[return-value]
        bufs.lock.acquire,
        bufs.lock.release,
        raw_syscall,
        bufs.key,
        _scalar(bufs.key, key_codec),
        ks.pack_into if ks else None,
        key_codec.encode,
        bufs.key_addr,
        key_codec.size,
        bufs.value,
        _scalar(bufs.value, value_codec),
        vs.pack_into if vs else None,
        vs.unpack_from if vs else None,
        value_codec.encode if value_codec else None,
        value_codec.decode if value_codec else None,
        value_write,
        value_read,
        bufs.value_addr,
        value_codec.size if value_codec else 0,
        ctypes.memmove,
        bufs.attr_addr,
        bufs.flag_attr,
        bufs.flag_attr_addr,
        bufs.del_attr_addr,
        parse_flags,
        bad_key,
        bad_value,
        failed,
    )


def errno_now() -> int:
    """The errno of the last raw syscall in this thread."""
    return get_errno()


_ = errno  # errno constants are used by callers of this module
