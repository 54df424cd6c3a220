"""The syscall layer: ``bpf_attr`` structures, one function per command, errno mapping.

Private: the public API is in :mod:`ebpf.core`.  Plugins may use it (it is stable
within a release) for commands core does not wrap in objects.
"""

from ebpf.core._sys import attrs, commands
from ebpf.core._sys.syscall import SYS_BPF, SYS_PERF_EVENT_OPEN, Cmd, bpf, check, close_fd, get_errno, libc, raw_syscall

__all__ = [
    "attrs",
    "commands",
    "Cmd",
    "bpf",
    "check",
    "close_fd",
    "get_errno",
    "libc",
    "raw_syscall",
    "SYS_BPF",
    "SYS_PERF_EVENT_OPEN",
]
