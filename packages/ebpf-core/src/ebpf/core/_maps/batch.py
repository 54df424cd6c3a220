"""BPF_MAP_*_BATCH operations, with the single-element fallback for kernels (or map types) without them.

A batch command the kernel does not have answers EINVAL (unknown command) or, for a map
type without batch operations, ENOTSUPP (524) / EOPNOTSUPP, before touching anything
(``count`` is left as it was); the map then remembers to use one-element commands.
"""

from __future__ import annotations

import ctypes
import errno
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from ebpf.core._sys.attrs import MapBatchAttr, MapElemAttr
from ebpf.core._sys.syscall import SYS_BPF, Cmd, get_errno, raw_syscall
from ebpf.core.errors import ENOTSUPP, EBPFError, KeyNotFoundError, MapFullError, syscall_error

if TYPE_CHECKING:
    from ebpf.core._maps.base import Map

__all__ = ["iter_chunks", "update_batch", "delete_batch", "NO_BATCH_ERRNOS", "BATCH_BYTES"]

NO_BATCH_ERRNOS = frozenset({errno.EINVAL, ENOTSUPP, errno.EOPNOTSUPP, errno.ENOSYS})
#: Upper bound on the buffers one batch call uses.
BATCH_BYTES = 4 << 20

# Module-level so a unit test can stand in for a kernel without batch commands.
_syscall = raw_syscall
_ATTR = ctypes.sizeof(MapBatchAttr)
_ELEM = ctypes.sizeof(MapElemAttr)


class _NoBatch(Exception):
    """The kernel has no batch command for this map."""


def _batch_size(m: Map, elem: int) -> int:
    return max(1, min(m.max_entries, BATCH_BYTES // max(1, m.key_size + elem)))


def _check_open(m: Map) -> None:
    if m._state.closed:
        raise EBPFError(f"map {m.name!r} is closed")


class _BatchBuffers:
    """Key/value/token buffers for batch reads, reused between calls (allocating and faulting in
    hundreds of KiB per call costs as much as decoding them)."""

    def __init__(self, m: Map, n: int) -> None:
        self.n = n
        self.tok = max(m.key_size, 8)
        self.tok_in = ctypes.create_string_buffer(self.tok)
        self.tok_out = ctypes.create_string_buffer(self.tok)
        self.keys = ctypes.create_string_buffer(max(1, n * m.key_size))
        self.values = ctypes.create_string_buffer(max(1, n * m._value_layout.elem_size))
        self.attr = MapBatchAttr(keys=ctypes.addressof(self.keys), values=ctypes.addressof(self.values),
                                 out_batch=ctypes.addressof(self.tok_out))
        self.attr_addr = ctypes.addressof(self.attr)
        self.tok_in_addr = ctypes.addressof(self.tok_in)


def _take_buffers(m: Map) -> _BatchBuffers:
    # list.pop is atomic: two threads iterating one map at once each get their own buffers.
    try:
        spare: _BatchBuffers = m._state.spare.pop()
        return spare
    except IndexError:
        return _BatchBuffers(m, _batch_size(m, m._value_layout.elem_size))


def _batch_chunks(m: Map, delete: bool, columns: bool = False) -> Iterator[tuple[Sequence[Any], Sequence[Any]]]:
    cmd = Cmd.MAP_LOOKUP_AND_DELETE_BATCH if delete else Cmd.MAP_LOOKUP_BATCH
    klay, vlay = m._key_layout, m._value_layout
    kdec, vdec = (klay.decode_column, vlay.decode_column) if columns else (klay.decode_many, vlay.decode_many)
    bufs = _take_buffers(m)
    attr = bufs.attr
    attr.map_fd = m.fd
    first = True
    try:
        while True:
            attr.in_batch = 0 if first else bufs.tok_in_addr
            attr.count = bufs.n
            with m._bufs.lock:
                _check_open(m)
                ret = _syscall(SYS_BPF, cmd, bufs.attr_addr, _ATTR)
                err = get_errno() if ret < 0 else 0
            got = attr.count
            if ret < 0 and err != errno.ENOENT:
                if err == errno.ENOSPC and got == 0:
                    # a hash bucket holds more entries than fit: grow and retry
                    bufs = _BatchBuffers(m, bufs.n * 2)
                    attr = bufs.attr
                    attr.map_fd = m.fd
                    continue
                # no such command / no batch op for this map type: the kernel leaves count alone
                if first and got in (0, bufs.n) and err in NO_BATCH_ERRNOS:
                    raise _NoBatch
                raise syscall_error(err, cmd_name(cmd))
            if got:
                chunk = kdec(bufs.keys, got), vdec(bufs.values, got)
                if ret < 0:
                    break
                ctypes.memmove(bufs.tok_in, bufs.tok_out, bufs.tok)
                first = False
                yield chunk
            elif ret < 0:
                break
            else:
                ctypes.memmove(bufs.tok_in, bufs.tok_out, bufs.tok)
                first = False
    finally:
        if not m._state.spare:
            m._state.spare.append(bufs)
    if got:
        yield chunk


def cmd_name(cmd: int) -> str:
    """``BPF_<NAME>`` of a command number."""
    return f"BPF_{Cmd(cmd).name}"


def _next_key(m: Map, key: bytes | None) -> bytes | None:
    cur = ctypes.create_string_buffer(key, m.key_size) if key is not None else None
    nxt = ctypes.create_string_buffer(m.key_size)
    attr = MapElemAttr(map_fd=m.fd, key=ctypes.addressof(cur) if cur is not None else 0, value=ctypes.addressof(nxt))
    with m._bufs.lock:
        _check_open(m)
        ret = raw_syscall(SYS_BPF, Cmd.MAP_GET_NEXT_KEY, ctypes.addressof(attr), _ELEM)
        err = get_errno() if ret < 0 else 0
    if ret < 0:
        if err == errno.ENOENT:
            return None
        raise syscall_error(err, "BPF_MAP_GET_NEXT_KEY")
    return nxt.raw


def raw_keys(m: Map) -> Iterator[bytes]:
    """Every key as bytes, through BPF_MAP_GET_NEXT_KEY."""
    key = _next_key(m, None)
    while key is not None:
        yield key
        key = _next_key(m, key)


def _single_chunks(m: Map, delete: bool) -> Iterator[tuple[list[Any], list[Any]]]:
    klay, vlay = m._key_layout, m._value_layout
    if delete:
        for kb in list(raw_keys(m)):
            vb = m.lookup_bytes(kb)
            if vb is None:
                continue
            m.delete_bytes(kb, missing_ok=True)
            yield [klay.decode(kb)], [vlay.decode(vb)]
        return
    for kb in raw_keys(m):
        vb = m.lookup_bytes(kb)
        if vb is not None:  # deleted meanwhile
            yield [klay.decode(kb)], [vlay.decode(vb)]


def iter_chunks(m: Map, delete: bool = False, columns: bool = False
                ) -> Iterator[tuple[Sequence[Any], Sequence[Any]]]:
    """(keys, values) chunks of every entry; with ``delete`` each chunk is removed as it is read.

    :param columns: integer chunks from batch commands come as ``array.array`` (see ``Layout.decode_column``);
        the one-element fallback always gives lists.
    """
    if m._state.batch:
        gen = _batch_chunks(m, delete, columns)
        try:
            first = next(gen)
        except StopIteration:
            return
        except _NoBatch:
            m._state.batch = False
        else:
            yield first
            yield from gen
            return
    yield from _single_chunks(m, delete)


def update_batch(m: Map, keys: Sequence[Any], values: Sequence[Any], flags: int) -> int:
    """BPF_MAP_UPDATE_BATCH (or one update per entry); returns how many were written."""
    if len(keys) != len(values):
        raise EBPFError(f"update_batch: {len(keys)} keys but {len(values)} values")
    if not keys:
        return 0
    ks, vs = m._key_layout.elem_size, m._value_layout.elem_size
    kc = ctypes.create_string_buffer(len(keys) * ks)
    vc = ctypes.create_string_buffer(len(keys) * vs)
    m._key_layout.pack_into(kc, keys)
    m._value_layout.pack_into(vc, values)
    if m._state.batch:
        attr = MapBatchAttr(map_fd=m.fd, keys=ctypes.addressof(kc), values=ctypes.addressof(vc), count=len(keys),
                            elem_flags=flags)
        with m._bufs.lock:
            _check_open(m)
            ret = _syscall(SYS_BPF, Cmd.MAP_UPDATE_BATCH, ctypes.addressof(attr), _ATTR)
            err = get_errno() if ret < 0 else 0
        if ret >= 0:
            return len(keys)
        if not (attr.count in (0, len(keys)) and err in NO_BATCH_ERRNOS):
            if err == errno.E2BIG:
                raise MapFullError("BPF_MAP_UPDATE_BATCH", m.max_entries)
            raise syscall_error(err, "BPF_MAP_UPDATE_BATCH", f"failed after {attr.count} of {len(keys)} entries")
        m._state.batch = False
    kbuf, vbuf = kc.raw, vc.raw
    for i in range(len(keys)):
        m.update_bytes(kbuf[i * ks : (i + 1) * ks], vbuf[i * vs : (i + 1) * vs], flags)
    return len(keys)


def delete_batch(m: Map, keys: Sequence[Any]) -> int:
    """BPF_MAP_DELETE_BATCH (or one delete per key); missing keys are skipped; returns how many went."""
    if not keys:
        return 0
    ks = m.key_size
    kbuf = m._key_layout.encode_many(keys)
    total = len(keys)
    deleted = 0
    start = 0
    if m._state.batch:
        kc = ctypes.create_string_buffer(kbuf, len(kbuf))
        while start < total:
            attr = MapBatchAttr(map_fd=m.fd, keys=ctypes.addressof(kc) + start * ks, count=total - start)
            with m._bufs.lock:
                _check_open(m)
                ret = _syscall(SYS_BPF, Cmd.MAP_DELETE_BATCH, ctypes.addressof(attr), _ATTR)
                err = get_errno() if ret < 0 else 0
            if ret >= 0:
                return deleted + total - start
            if err == errno.ENOENT:  # stopped at a missing key: skip it
                deleted += attr.count
                start += attr.count + 1
                continue
            if start == 0 and attr.count in (0, total) and err in NO_BATCH_ERRNOS:
                m._state.batch = False
                break
            raise syscall_error(err, "BPF_MAP_DELETE_BATCH")
        else:
            return deleted
    for i in range(start, total):
        try:
            m.delete_bytes(kbuf[i * ks : (i + 1) * ks])
            deleted += 1
        except KeyNotFoundError:
            pass
    return deleted
