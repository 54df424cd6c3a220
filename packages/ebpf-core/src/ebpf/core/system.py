"""The machine: kernel version, possible CPUs, bpffs/tracefs/securityfs mounts, ``init()``."""

from __future__ import annotations

import ctypes
import errno
import functools
import os
import re
from typing import Any

from ebpf.core._sys.syscall import close_fd, libc
from ebpf.core.errors import BPFSyscallError, EBPFError, NotSupportedError
from ebpf.core.extension import dispatcher
from ebpf.core.records import dataclass, field

__all__ = [
    "SystemInfo",
    "init",
    "check_bpf_available",
    "kernel_version",
    "cpu_count",
    "bpf_fs_mounted",
    "ensure_bpf_fs",
    "ensure_tracefs",
    "ensure_securityfs",
    "tracefs_path",
    "fs_type",
    "BPF_FS_MAGIC",
]

BPF_FS_MAGIC = 0xCAFE4A11
TRACEFS_MAGIC = 0x74726163
DEBUGFS_MAGIC = 0x64626720
SECURITYFS_MAGIC = 0x73636673
BTF_VMLINUX = "/sys/kernel/btf/vmlinux"


class _StatFs(ctypes.Structure):
    _fields_ = [("f_type", ctypes.c_long), ("_rest", ctypes.c_byte * 112)]


_statfs = libc.statfs
_statfs.argtypes = [ctypes.c_char_p, ctypes.POINTER(_StatFs)]
_statfs.restype = ctypes.c_int
_mount = libc.mount
_mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_void_p]
_mount.restype = ctypes.c_int


def fs_type(path: str) -> int | None:
    """The filesystem magic number of ``path`` (``statfs.f_type``), or None if it does not exist."""
    buf = _StatFs()
    if _statfs(os.fsencode(path), ctypes.byref(buf)) != 0:
        return None
    return int(buf.f_type) & 0xFFFFFFFF


@functools.cache
def kernel_version() -> tuple[int, int, int]:
    """The running kernel's version as ``(major, minor, patch)``, from ``uname -r``."""
    match = re.match(r"(\d+)\.(\d+)(?:\.(\d+))?", os.uname().release)
    if not match:
        raise EBPFError(f"cannot parse kernel release {os.uname().release!r}")
    return int(match[1]), int(match[2]), int(match[3] or 0)


def parse_cpu_list(text: str) -> list[int]:
    """Parse a kernel CPU list such as ``"0-3,5,7-8"``.

    :raises EBPFError: on malformed text.
    """
    cpus: list[int] = []
    for part in text.strip().split(","):
        if not part:
            continue
        lo, sep, hi = part.partition("-")
        try:
            cpus.extend(range(int(lo), int(hi if sep else lo) + 1))
        except ValueError:
            raise EBPFError(f"malformed CPU list {text!r}") from None
    return cpus


@functools.cache
def cpu_count() -> int:
    """Number of possible CPUs: the length of a per-CPU map value list.

    Read from ``/sys/devices/system/cpu/possible`` (as the kernel sizes per-CPU maps),
    not the online count.
    """
    with open("/sys/devices/system/cpu/possible") as f:
        cpus = parse_cpu_list(f.read())
    return max(cpus) + 1 if cpus else 1


def possible_cpus() -> list[int]:
    """The possible CPU numbers."""
    with open("/sys/devices/system/cpu/possible") as f:
        return parse_cpu_list(f.read())


def online_cpus() -> list[int]:
    """The online CPU numbers (where perf events can be opened)."""
    with open("/sys/devices/system/cpu/online") as f:
        return parse_cpu_list(f.read())


def bpf_fs_mounted(path: str = "/sys/fs/bpf") -> bool:
    """True when ``path`` is on a bpf filesystem."""
    return fs_type(path) == BPF_FS_MAGIC


def _mount_fs(source: str, target: str, fstype: str) -> None:
    os.makedirs(target, exist_ok=True)
    if _mount(source.encode(), target.encode(), fstype.encode(), 0, None) != 0:
        err = ctypes.get_errno()
        raise BPFSyscallError(err, "mount", f"cannot mount {fstype} at {target}: {os.strerror(err)}",
                              "needs root (CAP_SYS_ADMIN)" if err == errno.EPERM else "")


def ensure_bpf_fs(path: str = "/sys/fs/bpf") -> str:
    """Mount bpffs at ``path`` unless it is mounted already; returns ``path``.

    :raises BPFSyscallError: when mounting fails (needs root).
    """
    if not bpf_fs_mounted(path):
        _mount_fs("bpf", path, "bpf")
    return path


def tracefs_path() -> str | None:
    """Where tracefs is mounted (``/sys/kernel/tracing`` or debugfs's ``tracing``), or None."""
    for path in ("/sys/kernel/tracing", "/sys/kernel/debug/tracing"):
        if fs_type(path) == TRACEFS_MAGIC:
            return path
    return None


def ensure_tracefs(path: str = "/sys/kernel/tracing") -> str:
    """Mount tracefs unless it is mounted already; returns where it is.

    :raises BPFSyscallError: when it is not mounted and mounting fails (needs CAP_SYS_ADMIN), or when it
        is mounted but this process may not read it (needs root or CAP_DAC_OVERRIDE); both name what is missing.
    """
    found = tracefs_path()
    if found:
        if not os.access(found, os.R_OK | os.X_OK):  # mounted, but root's (mode 0700): say what is missing
            from ebpf.core._privileges import tracefs_denied  # deferred: start-up time (only this path needs it)

            raise tracefs_denied(found)
        return found
    try:
        _mount_fs("tracefs", path, "tracefs")
    except BPFSyscallError as exc:
        if exc.errno != errno.EPERM:
            raise
        raise BPFSyscallError(exc.errno, "mount", f"tracefs is not mounted (looked at /sys/kernel/tracing and "
                              f"/sys/kernel/debug/tracing) and this process may not mount it at {path}",
                              "mounting needs CAP_SYS_ADMIN: as root, mount -t tracefs tracefs "
                              "/sys/kernel/tracing") from None
    return path


def ensure_securityfs(path: str = "/sys/kernel/security") -> str:
    """Mount securityfs unless it is mounted already; returns ``path``."""
    if fs_type(path) != SECURITYFS_MAGIC:
        _mount_fs("securityfs", path, "securityfs")
    return path


def check_bpf_available() -> None:
    """Check that this process can use ``bpf()``.

    :raises NotSupportedError: naming the reason (no syscall, no privilege, disabled).
    """
    from ebpf.core._sys import attrs, commands  # deferred: start-up time (only this path needs it)

    try:
        fd = commands.map_create(attrs.MapCreateAttr(map_type=2, key_size=4, value_size=4, max_entries=1))
    except BPFSyscallError as exc:
        if exc.errno == errno.ENOSYS:
            raise NotSupportedError("the kernel has no bpf() syscall (CONFIG_BPF_SYSCALL is off)") from exc
        if exc.errno == errno.EPERM:
            raise NotSupportedError(
                "bpf() is not permitted: run as root or with CAP_BPF "
                "(kernel.unprivileged_bpf_disabled forbids unprivileged use)"
            ) from exc
        raise NotSupportedError(f"bpf() does not work here: {exc}") from exc
    close_fd(fd)


def _has_cap_bpf() -> bool:
    # CAP_BPF is bit 39, CAP_SYS_ADMIN bit 21 of CapEff.
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("CapEff:"):
                    caps = int(line.split()[1], 16)
                    return bool(caps & (1 << 39)) or bool(caps & (1 << 21))
    except OSError:
        pass
    return os.geteuid() == 0


@dataclass
class SystemInfo:
    """What :func:`init` found about the machine."""

    kernel_version: tuple[int, int, int]
    bpf_fs_mounted: bool
    has_cap_bpf: bool
    btf_available: bool
    cpu_count: int
    bpf_available: bool = True
    reason: str = ""
    features: dict[str, Any] = field(default_factory=dict)


def init(mount: bool = True) -> SystemInfo:
    """Look at the machine (and mount bpffs when root and ``mount``); never raises for a missing feature.

    ``features`` holds each plugin's feature probes: name -> None (supported) or the error text.
    """
    reason = ""
    try:
        check_bpf_available()
        ok = True
    except NotSupportedError as exc:
        ok, reason = False, str(exc)
    if mount and os.geteuid() == 0:
        try:
            ensure_bpf_fs()
        except EBPFError:
            pass
    info = SystemInfo(
        kernel_version=kernel_version(),
        bpf_fs_mounted=bpf_fs_mounted(),
        has_cap_bpf=_has_cap_bpf(),
        btf_available=os.path.exists(BTF_VMLINUX),
        cpu_count=cpu_count(),
        bpf_available=ok,
        reason=reason,
    )
    try:
        info.features = dispatcher().run_feature_probes()
    except ImportError:
        pass  # no pluggy: no plugins to ask
    return info
