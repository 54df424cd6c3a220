"""``perf_event_open(2)``: ``struct perf_event_attr``, the syscall and the ioctls BPF needs.

Used by :class:`ebpf.core.links.PerfEventLink` and by plugins (tracepoints, uprobes,
perf_event programs, perf buffers).
"""

from __future__ import annotations

import ctypes
import errno
import os
from ctypes import c_int32, c_uint16, c_uint32, c_uint64

from ebpf.core._checks import check_int, check_uint
from ebpf.core._sys.syscall import SYS_PERF_EVENT_OPEN, get_errno
from ebpf.core.errors import BPFSyscallError, EBPFError, NotSupportedError

__all__ = [
    "PerfEventAttr",
    "perf_event_open",
    "enable",
    "disable",
    "set_bpf",
    "reset",
    "tracepoint_id",
    "pmu_type",
    "open_tracepoint",
    "PERF_TYPE_HARDWARE",
    "PERF_TYPE_SOFTWARE",
    "PERF_TYPE_TRACEPOINT",
    "PERF_TYPE_HW_CACHE",
    "PERF_TYPE_RAW",
    "PERF_TYPE_BREAKPOINT",
    "PERF_COUNT_SW_CPU_CLOCK",
    "PERF_COUNT_SW_BPF_OUTPUT",
    "PERF_SAMPLE_RAW",
    "PERF_FLAG_FD_CLOEXEC",
    "PERF_EVENT_IOC_ENABLE",
    "PERF_EVENT_IOC_DISABLE",
    "PERF_EVENT_IOC_RESET",
    "PERF_EVENT_IOC_SET_BPF",
    "ATTR_DISABLED",
    "ATTR_FREQ",
    "ATTR_WATERMARK",
]

PERF_TYPE_HARDWARE = 0
PERF_TYPE_SOFTWARE = 1
PERF_TYPE_TRACEPOINT = 2
PERF_TYPE_HW_CACHE = 3
PERF_TYPE_RAW = 4
PERF_TYPE_BREAKPOINT = 5

PERF_COUNT_HW_CPU_CYCLES = 0
PERF_COUNT_SW_CPU_CLOCK = 0
PERF_COUNT_SW_TASK_CLOCK = 1
PERF_COUNT_SW_DUMMY = 9
PERF_COUNT_SW_BPF_OUTPUT = 10

PERF_SAMPLE_RAW = 1 << 10
PERF_FLAG_FD_NO_GROUP = 1 << 0
PERF_FLAG_FD_OUTPUT = 1 << 1
PERF_FLAG_PID_CGROUP = 1 << 2
PERF_FLAG_FD_CLOEXEC = 1 << 3

# Bits of perf_event_attr's flag word (the C bitfield, little-endian bit order).
ATTR_DISABLED = 1 << 0
ATTR_INHERIT = 1 << 1
ATTR_EXCLUDE_USER = 1 << 4
ATTR_EXCLUDE_KERNEL = 1 << 5
ATTR_EXCLUDE_HV = 1 << 6
ATTR_FREQ = 1 << 10
ATTR_WATERMARK = 1 << 14

# _IO('$', n) and _IOW('$', 8, __u32)
PERF_EVENT_IOC_ENABLE = 0x2400
PERF_EVENT_IOC_DISABLE = 0x2401
PERF_EVENT_IOC_REFRESH = 0x2402
PERF_EVENT_IOC_RESET = 0x2403
PERF_EVENT_IOC_SET_BPF = 0x40042408


class PerfEventAttr(ctypes.Structure):
    """``struct perf_event_attr`` (PERF_ATTR_SIZE_VER8, 136 bytes).

    Unions appear under one name: ``sample_period`` (= sample_freq), ``wakeup_events``
    (= wakeup_watermark), ``config1`` (= bp_addr, kprobe_func, uprobe_path), ``config2``
    (= bp_len, kprobe_addr, probe_offset).  ``flags`` is the bitfield word (``ATTR_*``).
    """

    _fields_ = [
        ("type", c_uint32),
        ("size", c_uint32),
        ("config", c_uint64),
        ("sample_period", c_uint64),
        ("sample_type", c_uint64),
        ("read_format", c_uint64),
        ("flags", c_uint64),
        ("wakeup_events", c_uint32),
        ("bp_type", c_uint32),
        ("config1", c_uint64),
        ("config2", c_uint64),
        ("branch_sample_type", c_uint64),
        ("sample_regs_user", c_uint64),
        ("sample_stack_user", c_uint32),
        ("clockid", c_int32),
        ("sample_regs_intr", c_uint64),
        ("aux_watermark", c_uint32),
        ("sample_max_stack", c_uint16),
        ("_reserved2", c_uint16),
        ("aux_sample_size", c_uint32),
        ("aux_action", c_uint32),
        ("sig_data", c_uint64),
        ("config3", c_uint64),
    ]

    def __init__(self, **fields: int) -> None:
        fields.setdefault("size", ctypes.sizeof(PerfEventAttr))
        super().__init__(**fields)


# A libc handle of our own: the shared one's ``syscall`` has argtypes fixed for bpf().
_libc = ctypes.CDLL(None, use_errno=True)
_raw = _libc.syscall
_raw.restype = ctypes.c_long
_ioctl = _libc.ioctl
_ioctl.restype = ctypes.c_int
_ioctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong]

_HINTS = {
    errno.EACCES: "perf events need root or CAP_PERFMON (see /proc/sys/kernel/perf_event_paranoid)",
    errno.EPERM: "perf events need root or CAP_PERFMON (see /proc/sys/kernel/perf_event_paranoid)",
    errno.ENOENT: "no such event on this machine (PMU or event config unknown)",
    errno.ENODEV: "the PMU does not support this event on this CPU",
    errno.EINVAL: "the kernel rejected the perf_event_attr",
    errno.EMFILE: "too many open files",
}


def perf_event_open(attr: PerfEventAttr, pid: int = -1, cpu: int = 0, group_fd: int = -1,
                    flags: int = PERF_FLAG_FD_CLOEXEC) -> int:
    """Open a perf event; returns its fd.

    :param pid: -1 for every task (needs ``cpu`` >= 0), 0 for this one, else a pid.
    :param cpu: a CPU number, or -1 for any CPU (needs ``pid`` >= 0).
    :raises EBPFError: when ``pid`` and ``cpu`` are both -1.
    :raises BPFSyscallError: command ``perf_event_open`` with the errno and a hint.
    """
    if pid == -1 and cpu == -1:
        raise EBPFError("perf_event_open: pid and cpu cannot both be -1")
    for what, value in (("pid", pid), ("cpu", cpu), ("group_fd", group_fd)):
        check_int(value, f"perf_event_open {what}", 32)  # int arguments of the syscall: never cut
    check_uint(flags, "perf_event_open flags", 64)
    ret = _raw(ctypes.c_long(SYS_PERF_EVENT_OPEN), ctypes.c_long(ctypes.addressof(attr)), ctypes.c_long(pid),
               ctypes.c_long(cpu), ctypes.c_long(group_fd), ctypes.c_ulong(flags))
    if ret < 0:
        err = get_errno()
        raise BPFSyscallError(err, "perf_event_open", hint=_HINTS.get(err, ""))
    return int(ret)


def _ioctl_call(fd: int, request: int, arg: int, what: str) -> None:
    if _ioctl(fd, request, arg) < 0:
        err = get_errno()
        raise BPFSyscallError(err, f"ioctl({what})", hint=_HINTS.get(err, ""))


def enable(fd: int) -> None:
    """PERF_EVENT_IOC_ENABLE."""
    _ioctl_call(fd, PERF_EVENT_IOC_ENABLE, 0, "PERF_EVENT_IOC_ENABLE")


def disable(fd: int) -> None:
    """PERF_EVENT_IOC_DISABLE."""
    _ioctl_call(fd, PERF_EVENT_IOC_DISABLE, 0, "PERF_EVENT_IOC_DISABLE")


def reset(fd: int) -> None:
    """PERF_EVENT_IOC_RESET (zero the counter)."""
    _ioctl_call(fd, PERF_EVENT_IOC_RESET, 0, "PERF_EVENT_IOC_RESET")


def set_bpf(fd: int, prog_fd: int) -> None:
    """PERF_EVENT_IOC_SET_BPF: run program ``prog_fd`` when the event fires (the pre-5.15 attach)."""
    _ioctl_call(fd, PERF_EVENT_IOC_SET_BPF, prog_fd, "PERF_EVENT_IOC_SET_BPF")


def tracepoint_id(category: str, name: str) -> int:
    """The id of tracepoint ``category:name`` from tracefs (mounted when missing).

    :raises EBPFError: on a malformed name.  :raises NotSupportedError: when there is no such tracepoint.
    """
    from ebpf.core.system import ensure_tracefs  # deferred: start-up time (only this path needs it)

    for part in (category, name):
        if not isinstance(part, str) or not part or "/" in part or part in (".", ".."):
            raise EBPFError(f"bad tracepoint name {category!r}:{name!r}")
    path = os.path.join(ensure_tracefs(), "events", category, name, "id")
    try:
        with open(path) as f:
            return int(f.read().strip())
    except FileNotFoundError:
        raise NotSupportedError(f"no tracepoint {category}:{name} on this kernel ({path} is missing)") from None
    except (OSError, ValueError) as exc:
        raise EBPFError(f"cannot read {path}: {exc}") from exc


def pmu_type(name: str) -> int:
    """The dynamic PMU type number of ``name`` (``"uprobe"``, ``"kprobe"``) from sysfs.

    :raises NotSupportedError: when the PMU is missing (e.g. no CONFIG_KPROBES).
    """
    path = f"/sys/bus/event_source/devices/{name}/type"
    try:
        with open(path) as f:
            return int(f.read().strip())
    except FileNotFoundError:
        raise NotSupportedError(f"no {name} PMU on this kernel ({path} is missing)") from None
    except (OSError, ValueError) as exc:
        raise EBPFError(f"cannot read {path}: {exc}") from exc


def open_tracepoint(category: str, name: str, pid: int = -1, cpu: int = 0) -> int:
    """Open tracepoint ``category:name`` as a perf event (for BPF: one CPU is enough); returns the fd."""
    attr = PerfEventAttr(type=PERF_TYPE_TRACEPOINT, config=tracepoint_id(category, name), sample_period=1,
                         wakeup_events=1)
    return perf_event_open(attr, pid=pid, cpu=cpu)

