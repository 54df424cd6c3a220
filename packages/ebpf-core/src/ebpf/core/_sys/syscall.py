"""The raw ``bpf()`` syscall through ctypes, and the command numbers."""

from __future__ import annotations

import ctypes
import enum
import errno
import os

from ebpf.core.errors import BPFSyscallError, syscall_error

__all__ = ["Cmd", "libc", "bpf", "raw_syscall", "get_errno", "SYS_BPF", "SYS_PERF_EVENT_OPEN"]

# Syscall numbers differ by architecture; these are the ones Linux assigns.
_SYSCALLS = {
    "x86_64": (321, 298),
    "aarch64": (280, 241),
    "arm64": (280, 241),
    "riscv64": (280, 241),
    "ppc64le": (361, 319),
    "s390x": (351, 331),
    "i686": (357, 336),
    "armv7l": (386, 364),
}
SYS_BPF, SYS_PERF_EVENT_OPEN = _SYSCALLS.get(os.uname().machine, (321, 298))

libc = ctypes.CDLL(None, use_errno=True)
#: ``syscall(nr, a, b, c)`` with integer arguments: addresses are passed as ints,
#: which is the cheapest way through ctypes (no pointer objects per call).
raw_syscall = libc.syscall
raw_syscall.restype = ctypes.c_long
raw_syscall.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_long]
get_errno = ctypes.get_errno


class Cmd(enum.IntEnum):
    """``enum bpf_cmd``."""

    MAP_CREATE = 0
    MAP_LOOKUP_ELEM = 1
    MAP_UPDATE_ELEM = 2
    MAP_DELETE_ELEM = 3
    MAP_GET_NEXT_KEY = 4
    PROG_LOAD = 5
    OBJ_PIN = 6
    OBJ_GET = 7
    PROG_ATTACH = 8
    PROG_DETACH = 9
    PROG_TEST_RUN = 10
    PROG_GET_NEXT_ID = 11
    MAP_GET_NEXT_ID = 12
    PROG_GET_FD_BY_ID = 13
    MAP_GET_FD_BY_ID = 14
    OBJ_GET_INFO_BY_FD = 15
    PROG_QUERY = 16
    RAW_TRACEPOINT_OPEN = 17
    BTF_LOAD = 18
    BTF_GET_FD_BY_ID = 19
    TASK_FD_QUERY = 20
    MAP_LOOKUP_AND_DELETE_ELEM = 21
    MAP_FREEZE = 22
    BTF_GET_NEXT_ID = 23
    MAP_LOOKUP_BATCH = 24
    MAP_LOOKUP_AND_DELETE_BATCH = 25
    MAP_UPDATE_BATCH = 26
    MAP_DELETE_BATCH = 27
    LINK_CREATE = 28
    LINK_UPDATE = 29
    LINK_GET_FD_BY_ID = 30
    LINK_GET_NEXT_ID = 31
    ENABLE_STATS = 32
    ITER_CREATE = 33
    LINK_DETACH = 34
    PROG_BIND_MAP = 35
    TOKEN_CREATE = 36
    PROG_STREAM_READ_BY_FD = 37


_NAMES = {c.value: f"BPF_{c.name}" for c in Cmd}


def bpf(cmd: int, attr: ctypes.Structure, command: str | None = None) -> int:
    """Call ``bpf(cmd, &attr, sizeof(attr))`` and return its result.

    :raises BPFSyscallError: with the errno, the command name and a hint on failure.
    """
    ret = raw_syscall(SYS_BPF, cmd, ctypes.addressof(attr), ctypes.sizeof(attr))
    if ret < 0:
        err = get_errno()
        name = command or _NAMES.get(cmd, f"bpf({cmd})")
        if err == errno.EPERM:  # name the capability this process lacks, when it lacks one
            from ebpf.core._privileges import eperm_hint  # deferred: start-up time (only this path needs it)

            raise syscall_error(err, name, hint=eperm_hint(name))
        raise syscall_error(err, name)
    return int(ret)


def close_fd(fd: int) -> None:
    """Close ``fd``, ignoring EBADF (already closed)."""
    try:
        os.close(fd)
    except OSError:
        pass


def check(ret: int, command: str) -> int:
    """Raise the error for a raw syscall result ``ret`` < 0, else return ``ret``."""
    if ret < 0:
        raise syscall_error(get_errno(), command)
    return ret


_ = BPFSyscallError  # re-exported for type checkers reading this module
