"""Pinning objects on bpffs and opening pinned objects, with the checks that come first.

A pin path must lie on a mounted bpf filesystem and must not exist yet; an object opened
from a pin is checked to be of the expected kind (a map path that holds a program is a
clear error, not a confusing failure later).
"""

from __future__ import annotations

import errno
import os

from ebpf.core._sys import commands
from ebpf.core._sys.syscall import close_fd
from ebpf.core.errors import BPFSyscallError, EBPFError
from ebpf.core.system import BPF_FS_MAGIC, fs_type

__all__ = ["check_pin_path", "pin", "unpin", "open_pinned", "fd_kind", "is_pinned"]

# anon_inode names the kernel gives bpf objects (``readlink /proc/self/fd/N``).
_KINDS = {
    "anon_inode:bpf-map": "map",
    "anon_inode:bpf-prog": "program",
    "anon_inode:bpf_link": "link",
    "anon_inode:bpf-link": "link",
    "anon_inode:btf": "btf",
}


def fd_kind(fd: int) -> str:
    """What kind of bpf object ``fd`` is: ``"map"``, ``"program"``, ``"link"``, ``"btf"``, or ``"other"``.

    :raises EBPFError: when ``fd`` is not open.
    """
    try:
        target = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        raise EBPFError(f"fd {fd} is not open") from None
    return _KINDS.get(target, "other")


def check_pin_path(path: str) -> str:
    """Check that ``path`` can take a new pin: its directory is on bpffs and it does not exist.

    :returns: the path, made absolute.
    :raises EBPFError: when the directory is missing or not on bpffs, or ``path`` exists.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise EBPFError(f"pin path must be a str or os.PathLike, got {type(path).__name__}")
    path = os.path.abspath(os.fspath(path))
    parent = os.path.dirname(path)
    kind = fs_type(parent)
    if kind is None:
        raise EBPFError(f"cannot pin at {path}: directory {parent} does not exist")
    if kind != BPF_FS_MAGIC:
        raise EBPFError(
            f"cannot pin at {path}: {parent} is not on a bpf filesystem (mount one with ebpf.core.ensure_bpf_fs())"
        )
    if os.path.lexists(path):
        raise EBPFError(f"cannot pin at {path}: the path already exists")
    return path


def pin(fd: int, path: str) -> str:
    """Pin the object behind ``fd`` at ``path`` (checked with :func:`check_pin_path` first).

    :returns: the absolute path.
    :raises EBPFError: on a bad path; :class:`BPFSyscallError` when the kernel refuses.
    """
    path = check_pin_path(path)
    commands.obj_pin(fd, path)
    return path


def unpin(path: str) -> None:
    """Remove the pin at ``path`` (the object lives on while something else holds it).

    :raises EBPFError: when ``path`` is not a pin on bpffs.
    """
    path = os.path.abspath(os.fspath(path))
    if fs_type(os.path.dirname(path)) != BPF_FS_MAGIC:
        raise EBPFError(f"{path} is not on a bpf filesystem")
    try:
        os.unlink(path)
    except FileNotFoundError:
        raise EBPFError(f"nothing is pinned at {path}") from None
    except OSError as exc:
        raise BPFSyscallError(exc.errno or errno.EIO, "unlink", str(exc)) from None


def is_pinned(path: str) -> bool:
    """True when ``path`` exists on a bpf filesystem."""
    path = os.path.abspath(os.fspath(path))
    return os.path.lexists(path) and fs_type(os.path.dirname(path)) == BPF_FS_MAGIC


def open_pinned(path: str, expect: str, flags: int = 0) -> int:
    """Open the object pinned at ``path`` and check it is of kind ``expect`` ("map", "program", "link").

    :returns: a new fd owned by the caller.
    :raises EBPFError: when nothing is pinned there or it is another kind of object (no fd is left open).
    """
    path = os.path.abspath(os.fspath(path))
    if not os.path.lexists(path):
        raise EBPFError(f"nothing is pinned at {path}")
    if fs_type(os.path.dirname(path)) != BPF_FS_MAGIC:
        raise EBPFError(f"{path} is not on a bpf filesystem")
    fd = commands.obj_get(path, flags)
    try:
        kind = fd_kind(fd)
    except EBPFError:
        close_fd(fd)
        raise
    if kind != expect:
        close_fd(fd)
        article = "an" if kind[0] in "aeiou" else "a"
        raise EBPFError(f"{path} holds {article} {kind}, not a {expect}")
    return fd
