"""BPF tokens: a privileged process delegates some bpf() commands, map, program and attach types to
an unprivileged user namespace (Linux >= 6.9).

The delegation is a property of a bpffs instance: its ``delegate_cmds``, ``delegate_maps``,
``delegate_progs`` and ``delegate_attachs`` mount options (set by a process with CAP_SYS_ADMIN in the
initial user namespace) name what it delegates, and the bpffs must belong to the user namespace
that uses it (created there with ``fsopen("bpf")``).  A process in that namespace turns the bpffs
into a token with :func:`create_token` (BPF_TOKEN_CREATE) and passes ``token=`` to
:func:`~ebpf.core.maps.create_map` / :func:`~ebpf.core.programs.load_program`; the kernel then checks
its capabilities in the token's user namespace instead of the initial one.

:func:`delegated_bpffs` is the privileged half of that dance (configure and create the bpffs from an
``fsopen`` fd made in the other namespace, return a mount fd); :func:`open_bpffs_context` the
unprivileged half (the ``fsopen`` fd to hand over).
"""

from __future__ import annotations

import ctypes
import errno
import os
from collections.abc import Iterable

from ebpf.core._probing import feature_test, probe_error
from ebpf.core._sys.syscall import Cmd, bpf, close_fd
from ebpf.core.errors import BPFSyscallError, EBPFError
from ebpf.core.fdowner import FdOwner

__all__ = ["Token", "create_token", "open_bpffs_context", "delegated_bpffs", "have_bpf_token", "BPF_FS_MAGIC"]

BPF_FS_MAGIC = 0xCAFE4A11
_SYS_FSOPEN, _SYS_FSCONFIG, _SYS_FSMOUNT = 430, 431, 432  # x86_64 and arm64 (the asm-generic numbers)
_FSCONFIG_SET_STRING, _FSCONFIG_CMD_CREATE = 1, 6
_FSOPEN_CLOEXEC, _FSMOUNT_CLOEXEC = 1, 1
_DELEGATE = ("cmds", "maps", "progs", "attachs")

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


class _TokenCreateAttr(ctypes.Structure):
    """``union bpf_attr``'s ``token_create``."""

    _fields_ = [("flags", ctypes.c_uint32), ("bpffs_fd", ctypes.c_uint32)]


class Token(FdOwner):
    """A BPF token fd (owned): pass it as ``token=`` to map creation and program loads."""

    _kind = "BPF token"

    def __init__(self, fd: int, bpffs: str = "") -> None:
        """Wrap token ``fd`` (now owned)."""
        self._own_fd(fd)
        self.bpffs = bpffs

    def _label(self) -> str:
        return self.bpffs or "token"

    def __repr__(self) -> str:
        return f"<Token {'closed' if self.closed else f'fd={self._fd}'}>"


def _is_bpffs(fd: int) -> bool:
    class _StatFs(ctypes.Structure):
        _fields_ = [("f_type", ctypes.c_long), ("rest", ctypes.c_long * 15)]

    buf = _StatFs()
    if ctypes.CDLL(None, use_errno=True).fstatfs(fd, ctypes.byref(buf)) != 0:
        return False
    return bool((buf.f_type & 0xFFFFFFFF) == BPF_FS_MAGIC)


def create_token(bpffs: int | str | os.PathLike[str]) -> Token:
    """BPF_TOKEN_CREATE from a bpffs mounted with ``delegate_*`` options.

    :param bpffs: the bpffs root: an open fd (e.g. the mount fd from :func:`delegated_bpffs`) or a path.
    :returns: the :class:`Token`.
    :raises EBPFError: when ``bpffs`` is not the root of a bpffs (before the syscall).
    :raises BPFSyscallError: ENOENT when the bpffs delegates nothing, EPERM when it belongs to another
        user namespace than the caller's (or the caller lacks CAP_BPF there).
    """
    if isinstance(bpffs, bool) or not isinstance(bpffs, (int, str, os.PathLike)):
        raise EBPFError(f"bpffs must be an fd or a path, not {bpffs!r}")
    # a mount fd from fsmount() is an O_PATH fd, which bpf() does not take: open its root for real
    where = f"fd {bpffs}" if isinstance(bpffs, int) else os.fspath(bpffs)
    try:
        if isinstance(bpffs, int):
            fd = owned = os.open(".", os.O_RDONLY | os.O_DIRECTORY, dir_fd=bpffs)
        else:
            fd = owned = os.open(where, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as exc:
        raise EBPFError(f"cannot open bpffs {where!r}: {exc.strerror}") from None
    try:
        if not _is_bpffs(fd):
            raise EBPFError(f"{where} is not a bpffs (mount one with delegate_* options to create tokens)")
        try:
            tfd = bpf(Cmd.TOKEN_CREATE, _TokenCreateAttr(bpffs_fd=fd))
        except BPFSyscallError as exc:
            hints = {errno.ENOENT: f"the bpffs at {where} delegates nothing: mount it with delegate_cmds=/"
                                   "delegate_maps=/delegate_progs=/delegate_attachs= options",
                     errno.EPERM: "the bpffs must belong to the caller's user namespace (created there with "
                                  "fsopen) and the caller needs CAP_BPF in it",
                     errno.EINVAL: "not the root of a bpffs mount, or the kernel has no BPF tokens (Linux >= 6.9)",
                     errno.EOPNOTSUPP: "tokens are made inside a user namespace, never in the initial one"}
            raise BPFSyscallError(exc.errno or 0, "BPF_TOKEN_CREATE", hint=hints.get(exc.errno or 0, exc.hint)) \
                from None
        return Token(tfd, where)
    finally:
        if owned >= 0:
            os.close(owned)


@feature_test
def have_bpf_token() -> None:
    """Probe for BPF tokens: BPF_TOKEN_CREATE on a bad fd is EBADF where the command exists.

    :raises UnsupportedFeatureError: on kernels without BPF tokens (Linux < 6.9).
    """
    try:
        close_fd(bpf(Cmd.TOKEN_CREATE, _TokenCreateAttr(bpffs_fd=0x7FFFFFFF)))
    except BPFSyscallError as exc:
        if exc.errno == errno.EBADF:
            return
        raise probe_error(exc, "BPF tokens", "6.9") from None


def _check(ret: int, what: str) -> int:
    if ret < 0:
        raise BPFSyscallError(ctypes.get_errno(), what)
    return ret


def open_bpffs_context() -> int:
    """``fsopen("bpf")`` in the caller's user and mount namespaces: the fd to hand to the privileged side.

    :raises BPFSyscallError: when the caller may not create a bpffs (it needs CAP_SYS_ADMIN over its
        mount namespace: unshare CLONE_NEWUSER and CLONE_NEWNS first).
    """
    return _check(_libc.syscall(_SYS_FSOPEN, b"bpf", _FSOPEN_CLOEXEC), "fsopen")


def delegated_bpffs(context_fd: int, cmds: Iterable[str] | str | None = "any",
                    maps: Iterable[str] | str | None = "any", progs: Iterable[str] | str | None = "any",
                    attachs: Iterable[str] | str | None = "any") -> int:
    """Configure the bpffs context ``context_fd`` to delegate, create it and return its mount fd.

    Run by a process with CAP_SYS_ADMIN in the initial user namespace; ``context_fd`` comes from
    :func:`open_bpffs_context` in the namespace that will use the tokens.

    :param cmds: bpf commands by name (``"map_create"``, ``"prog_load"``, ...) or ``"any"``; likewise
        ``maps`` (map types), ``progs`` (program types) and ``attachs`` (attach types); None leaves
        that option unset (a bpffs with none set delegates nothing).
    :returns: the mount fd (owned by the caller): hand it back; :func:`create_token` takes it.
    :raises EBPFError: for bad option values (before any syscall).
    :raises BPFSyscallError: when the kernel refuses an option or the creation.
    """
    values = {}
    for key, value in zip(_DELEGATE, (cmds, maps, progs, attachs)):
        if value is None:
            continue
        names = [value] if isinstance(value, str) else list(value)
        if not names or not all(isinstance(n, str) and n and ":" not in n and "," not in n for n in names):
            raise EBPFError(f"delegate_{key} must be 'any' or a list of names, not {value!r}")
        values[f"delegate_{key}"] = ":".join(names)
    for key, text in values.items():
        _check(_libc.syscall(_SYS_FSCONFIG, context_fd, _FSCONFIG_SET_STRING, key.encode(), text.encode(), 0),
               f"fsconfig {key}={text}")
    _check(_libc.syscall(_SYS_FSCONFIG, context_fd, _FSCONFIG_CMD_CREATE, None, None, 0), "fsconfig create")
    return _check(_libc.syscall(_SYS_FSMOUNT, context_fd, _FSMOUNT_CLOEXEC, 0), "fsmount")
