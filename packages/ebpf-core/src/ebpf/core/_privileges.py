"""What a permission error lacked: the capabilities a command needs against the ones this process has (private).

The kernel answers EPERM/EACCES without saying why; these helpers read the process's effective capabilities
(``/proc/self/status``) and name the missing one (``"BPF_PROG_GET_NEXT_ID needs CAP_SYS_ADMIN; this process
(uid 65534) has CAP_BPF but lacks CAP_SYS_ADMIN"``), or the tracefs mount/permission that is missing.
"""

from __future__ import annotations

import errno
import os

from ebpf.core.errors import BPFSyscallError

__all__ = ["CAPABILITIES", "effective_capabilities", "has_capability", "eperm_hint", "tracefs_denied"]

#: capability name -> bit (include/uapi/linux/capability.h), the ones eBPF work needs
CAPABILITIES = {"CAP_DAC_OVERRIDE": 1, "CAP_DAC_READ_SEARCH": 2, "CAP_NET_ADMIN": 12, "CAP_SYS_ADMIN": 21,
                "CAP_PERFMON": 38, "CAP_BPF": 39}

# What a bpf command needs (kernel/bpf/syscall.c): walking or opening objects by id is CAP_SYS_ADMIN only.
_BY_ID = ("CAP_SYS_ADMIN",)
_NEEDS: dict[str, tuple[str, ...]] = {
    **{f"BPF_{kind}_GET_NEXT_ID": _BY_ID for kind in ("PROG", "MAP", "LINK", "BTF")},
    **{f"BPF_{kind}_GET_FD_BY_ID": _BY_ID for kind in ("PROG", "MAP", "LINK", "BTF")},
    "BPF_ENABLE_STATS": _BY_ID,
    "BPF_TASK_FD_QUERY": _BY_ID,
}


def effective_capabilities() -> int | None:
    """The effective capability mask of this process, or None when /proc does not say."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("CapEff:"):
                    return int(line.split()[1], 16)
    except (OSError, ValueError, IndexError):
        pass
    return None


def has_capability(name: str) -> bool | None:
    """Whether this process holds capability ``name`` (``"CAP_BPF"``); None when unknown."""
    eff = effective_capabilities()
    return None if eff is None else bool(eff >> CAPABILITIES[name] & 1)


def _lacking(needs: tuple[str, ...], also_show: tuple[str, ...] = ()) -> str | None:
    """"this process (uid N) has A but lacks B" for the ``needs`` it lacks (naming the ``also_show`` it has),
    or None when it has them all (or cannot tell)."""
    eff = effective_capabilities()
    if eff is None:
        return None
    missing = [n for n in needs if not eff >> CAPABILITIES[n] & 1]
    if not missing:
        return None
    have = [n for n in (*also_show, *needs) if eff >> CAPABILITIES[n] & 1]
    return (f"this process (uid {os.geteuid()}) " + (f"has {' and '.join(have)} but " if have else "")
            + f"lacks {' and '.join(missing)}")


def eperm_hint(command: str) -> str | None:
    """The hint for EPERM from bpf command ``command``, naming the capability this process lacks; None to keep
    the default hint (it has them all: the refusal has another cause, such as an LSM or a sysctl)."""
    extra = _NEEDS.get(command)
    if extra:
        lacking = _lacking(extra, also_show=("CAP_BPF",))
        return f"{command} needs {' and '.join(extra)}, CAP_BPF is not enough; {lacking}" if lacking else None
    lacking = _lacking(("CAP_BPF",))
    return f"needs root or CAP_BPF (+CAP_PERFMON/CAP_NET_ADMIN for some types); {lacking}" if lacking else None


def tracefs_denied(path: str, err: int = errno.EACCES) -> BPFSyscallError:
    """The error for tracefs at ``path`` that this process may not read or write, naming what is missing."""
    lacking = _lacking(("CAP_DAC_OVERRIDE",))
    return BPFSyscallError(
        err, f"open({path})", "permission denied on tracefs",
        "tracefs belongs to root (mode 0700): run as root or with CAP_DAC_OVERRIDE, or remount it for a group "
        "(mount -o remount,gid=GROUP,mode=0750 tracefs " + path.split("/events")[0] + ")"
        + (f"; {lacking}" if lacking else ""))
