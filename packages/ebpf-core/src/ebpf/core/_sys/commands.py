"""One wrapper per bpf() command.

Wrappers take plain Python values, fill the command's attr structure and return
what the kernel returns (an fd, a count, an info structure).  Errors are
:class:`~ebpf.core.errors.BPFSyscallError` with the command name.  Hot paths
(map element operations) do not come through here: :mod:`ebpf.core.maps` keeps
preallocated attrs and calls :data:`raw_syscall` itself.
"""

from __future__ import annotations

import ctypes
import errno
import os
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from ebpf.core._checks import U64, check_uint, checked
from ebpf.core._sys.attrs import (
    BtfInfo,
    BtfLoadAttr,
    EnableStatsAttr,
    GetIdAttr,
    InfoAttr,
    LinkCreateAttr,
    LinkDetachAttr,
    LinkInfo,
    LinkUpdateAttr,
    MapCreateAttr,
    MapElemAttr,
    MapInfo,
    ObjPinAttr,
    ProgAttachAttr,
    ProgBindMapAttr,
    ProgInfo,
    ProgQueryAttr,
    RawTracepointAttr,
    TaskFdQueryAttr,
)
from ebpf.core._sys.syscall import Cmd, bpf, close_fd
from ebpf.core._sys.unions import LinkCreateTail
from ebpf.core.errors import BPFSyscallError

__all__ = [
    "addr",
    "map_create",
    "map_freeze",
    "obj_pin",
    "obj_get",
    "obj_info",
    "prog_info",
    "map_info",
    "link_info",
    "btf_info",
    "iter_ids",
    "iter_objects",
    "fd_by_id",
    "prog_attach",
    "prog_detach",
    "prog_query",
    "raw_tracepoint_open",
    "btf_load",
    "task_fd_query",
    "link_create",
    "link_update",
    "link_detach",
    "enable_stats",
    "prog_bind_map",
]

_I = TypeVar("_I", bound=ctypes.Structure)
_R = TypeVar("_R")


def addr(buf: ctypes.Array[Any] | ctypes.Structure | None) -> int:
    """Address of a ctypes buffer as an int (0 for None)."""
    return 0 if buf is None else ctypes.addressof(buf)


def map_create(attr: MapCreateAttr) -> int:
    """BPF_MAP_CREATE; returns the new map's fd."""
    return bpf(Cmd.MAP_CREATE, attr)


def map_freeze(map_fd: int) -> None:
    """BPF_MAP_FREEZE: make the map read-only for user space."""
    attr = MapElemAttr(map_fd=map_fd)
    bpf(Cmd.MAP_FREEZE, attr)


def obj_pin(fd: int, path: str) -> None:
    """BPF_OBJ_PIN ``fd`` at ``path`` (on a bpffs mount)."""
    raw = ctypes.create_string_buffer(os.fsencode(path))
    bpf(Cmd.OBJ_PIN, ObjPinAttr(pathname=addr(raw), bpf_fd=fd))


def obj_get(path: str, flags: int = 0) -> int:
    """BPF_OBJ_GET: open the object pinned at ``path``; returns its fd."""
    raw = ctypes.create_string_buffer(os.fsencode(path))
    return bpf(Cmd.OBJ_GET, ObjPinAttr(pathname=addr(raw), file_flags=flags))


def obj_info(fd: int, info_type: type[_I], info: _I | None = None) -> _I:
    """BPF_OBJ_GET_INFO_BY_FD into a fresh (or the given, pre-filled) info struct."""
    if info is None:
        info = info_type()
    bpf(Cmd.OBJ_GET_INFO_BY_FD, InfoAttr(bpf_fd=fd, info_len=ctypes.sizeof(info), info=addr(info)))
    return info


def prog_info(fd: int) -> ProgInfo:
    """``struct bpf_prog_info`` of a program fd."""
    return obj_info(fd, ProgInfo)


def map_info(fd: int) -> MapInfo:
    """``struct bpf_map_info`` of a map fd."""
    return obj_info(fd, MapInfo)


def link_info(fd: int) -> LinkInfo:
    """``struct bpf_link_info`` of a link fd."""
    return obj_info(fd, LinkInfo)


def btf_info(fd: int) -> BtfInfo:
    """``struct bpf_btf_info`` of a BTF fd."""
    return obj_info(fd, BtfInfo)


_NEXT_ID = {"prog": Cmd.PROG_GET_NEXT_ID, "map": Cmd.MAP_GET_NEXT_ID, "link": Cmd.LINK_GET_NEXT_ID, "btf": Cmd.BTF_GET_NEXT_ID}
_FD_BY_ID = {
    "prog": Cmd.PROG_GET_FD_BY_ID,
    "map": Cmd.MAP_GET_FD_BY_ID,
    "link": Cmd.LINK_GET_FD_BY_ID,
    "btf": Cmd.BTF_GET_FD_BY_ID,
}


def iter_ids(kind: str) -> Iterator[int]:
    """Every id of ``kind`` ("prog", "map", "link", "btf") loaded on the system, ascending."""
    cmd = _NEXT_ID[kind]
    attr = GetIdAttr()
    while True:
        try:
            bpf(cmd, attr)
        except BPFSyscallError as exc:
            if exc.errno == errno.ENOENT:
                return
            raise
        yield attr.next_id
        attr.start_id = attr.next_id


def iter_objects(kind: str, read: Callable[[int], _R]) -> Iterator[_R]:
    """``read(fd)`` of every kernel object of ``kind`` (``"prog"``, ``"map"``, ``"link"``, ``"btf"``).

    Objects that vanish between listing and opening are skipped; each fd is closed after ``read``.

    :raises BPFSyscallError: when listing or opening fails otherwise (EPERM without CAP_SYS_ADMIN).
    """
    for obj_id in iter_ids(kind):
        try:
            fd = fd_by_id(kind, obj_id)
        except BPFSyscallError as exc:
            if exc.errno == errno.ENOENT:
                continue
            raise
        try:
            yield read(fd)
        finally:
            close_fd(fd)


def fd_by_id(kind: str, obj_id: int, open_flags: int = 0) -> int:
    """BPF_*_GET_FD_BY_ID: a new fd for the object ``obj_id`` of ``kind``."""
    return bpf(_FD_BY_ID[kind], GetIdAttr(start_id=obj_id, open_flags=open_flags))


def prog_attach(
    target_fd: int, prog_fd: int, attach_type: int, flags: int = 0, replace_fd: int = 0, relative_fd: int = 0
) -> None:
    """BPF_PROG_ATTACH (cgroup, sockmap, flow dissector, lirc, tcx ... legacy attach)."""
    attr = checked(ProgAttachAttr, "BPF_PROG_ATTACH", target_fd=target_fd, attach_bpf_fd=prog_fd,
                   attach_type=attach_type, attach_flags=flags, replace_bpf_fd=replace_fd, relative_fd=relative_fd)
    bpf(Cmd.PROG_ATTACH, attr)


def prog_detach(target_fd: int, prog_fd: int, attach_type: int) -> None:
    """BPF_PROG_DETACH."""
    bpf(Cmd.PROG_DETACH, ProgAttachAttr(target_fd=target_fd, attach_bpf_fd=prog_fd, attach_type=attach_type))


def prog_query(target_fd: int, attach_type: int, query_flags: int = 0, max_progs: int = 64) -> tuple[list[int], int, int]:
    """BPF_PROG_QUERY: (program ids, attach flags, revision) attached at ``target_fd``."""
    ids = (ctypes.c_uint32 * max_progs)()
    attr = ProgQueryAttr(
        target_fd=target_fd, attach_type=attach_type, query_flags=query_flags, prog_ids=addr(ids), prog_cnt=max_progs
    )
    bpf(Cmd.PROG_QUERY, attr)
    return list(ids[: attr.prog_cnt]), attr.attach_flags, attr.revision


def raw_tracepoint_open(name: str | None, prog_fd: int, cookie: int = 0) -> int:
    """BPF_RAW_TRACEPOINT_OPEN; ``name`` None for tp_btf/fentry programs (target in the program)."""
    raw = ctypes.create_string_buffer(name.encode()) if name else None
    return bpf(Cmd.RAW_TRACEPOINT_OPEN, checked(RawTracepointAttr, "BPF_RAW_TRACEPOINT_OPEN", name=addr(raw),
                                                prog_fd=prog_fd, cookie=cookie))


def btf_load(blob: bytes, log_level: int = 0, log_size: int = 0) -> tuple[int, str]:
    """BPF_BTF_LOAD; returns (fd, log).  On failure the raised error's ``log`` attribute holds the log."""
    data = ctypes.create_string_buffer(blob, len(blob))
    log = ctypes.create_string_buffer(log_size) if log_size else None
    attr = BtfLoadAttr(btf=addr(data), btf_size=len(blob), btf_log_buf=addr(log), btf_log_size=log_size, btf_log_level=log_level)
    try:
        fd = bpf(Cmd.BTF_LOAD, attr)
    except BPFSyscallError as exc:
        exc.log = log.value.decode(errors="replace") if log is not None else ""  # type: ignore[attr-defined]
        raise
    return fd, log.value.decode(errors="replace") if log is not None else ""


def task_fd_query(pid: int, fd: int) -> TaskFdQueryAttr:
    """BPF_TASK_FD_QUERY: what the perf event / raw tracepoint ``fd`` of ``pid`` is attached to."""
    buf = ctypes.create_string_buffer(256)
    attr = TaskFdQueryAttr(pid=pid, fd=fd, buf=addr(buf), buf_len=256)
    bpf(Cmd.TASK_FD_QUERY, attr)
    return attr


def link_create(prog_fd: int, target_fd: int, attach_type: int, flags: int = 0,
                extra: ctypes.Structure | tuple[int, ...] | None = None) -> int:
    """BPF_LINK_CREATE.

    :param extra: the per-type part, one of the typed variants of :mod:`ebpf.core._sys.unions`
        (``LinkCreateKprobeMulti(...)``, ``LinkCreateRelative(...)``, ...), copied into the union
        member of its type; or, for callers of older releases, the union as u64 words.
    :returns: the link fd.
    """
    attr = checked(LinkCreateAttr, "BPF_LINK_CREATE", prog_fd=prog_fd, target_fd=target_fd,
                   attach_type=attach_type, flags=flags)
    if isinstance(extra, ctypes.Structure):
        member = next((name for name, ctype, *_ in LinkCreateTail._fields_ if ctype is type(extra)), None)
        if member is None:
            raise TypeError(f"{type(extra).__name__} is not a BPF_LINK_CREATE union variant")
        setattr(attr._tail, member, extra)  # the union shares the attr's memory
    elif extra:
        for i, word in enumerate(extra):
            attr.extra[i] = check_uint(word, "BPF_LINK_CREATE option word (cookie, offset, ...)", U64)
    return bpf(Cmd.LINK_CREATE, attr)


def link_update(link_fd: int, new_prog_fd: int, flags: int = 0, old_prog_fd: int = 0) -> None:
    """BPF_LINK_UPDATE: replace the program behind a link."""
    bpf(Cmd.LINK_UPDATE, checked(LinkUpdateAttr, "BPF_LINK_UPDATE", link_fd=link_fd, new_prog_fd=new_prog_fd,
                                 flags=flags, old_prog_fd=old_prog_fd))


def link_detach(link_fd: int) -> None:
    """BPF_LINK_DETACH: detach without closing (the link fd stays valid, defunct)."""
    bpf(Cmd.LINK_DETACH, LinkDetachAttr(link_fd=link_fd))


def enable_stats(stats_type: int = 0) -> int:
    """BPF_ENABLE_STATS; returns an fd that keeps the statistics on while open (0 = run time)."""
    return bpf(Cmd.ENABLE_STATS, EnableStatsAttr(type=stats_type))


def prog_bind_map(prog_fd: int, map_fd: int) -> None:
    """BPF_PROG_BIND_MAP: keep ``map_fd`` alive as long as the program."""
    bpf(Cmd.PROG_BIND_MAP, ProgBindMapAttr(prog_fd=prog_fd, map_fd=map_fd))
