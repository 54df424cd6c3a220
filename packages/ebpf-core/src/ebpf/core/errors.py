"""The one exception hierarchy used by every ``ebpf`` package.

Every failure raised by ``ebpf.core`` and its plugins is an :class:`EBPFError`.
Kernel failures keep the errno, the bpf command and a hint a person can act on.
"""

from __future__ import annotations

import errno as _errno
import itertools
import os

__all__ = [
    "EBPFError",
    "BPFSyscallError",
    "KeyNotFoundError",
    "MapFullError",
    "VerifierError",
    "NotSupportedError",
    "UnsupportedFeatureError",
    "ProbeInconclusiveError",
    "ELFError",
    "BTFError",
    "AsmError",
    "AttachError",
    "PluginError",
    "syscall_error",
    "errno_name",
    "ENOTSUPP",
]

#: The kernel-internal "operation not supported" (524) that leaks to user space from some
#: bpf commands; not in :mod:`errno`.  The one definition every package uses.
ENOTSUPP = 524


def errno_name(err: int | None) -> str:
    """The symbolic name of an errno (``"EPERM"``, ``"ENOTSUPP"`` for 524), or its number as text."""
    if err == ENOTSUPP:
        return "ENOTSUPP"
    return _errno.errorcode.get(err or 0, str(err))


class EBPFError(Exception):
    """Base of everything the ``ebpf`` packages raise."""


class BPFSyscallError(EBPFError, OSError):
    """A kernel call failed.

    :ivar errno: the kernel's errno.
    :ivar command: the bpf command (or other syscall) that failed, e.g. ``"BPF_MAP_CREATE"``.
    :ivar hint: what a person can do about it, or ``""``.
    """

    def __init__(self, err: int, command: str, message: str = "", hint: str = "") -> None:
        self.command = command
        self.hint = hint
        text = f"{command}: {message or os.strerror(err)}"
        if hint:
            text += f" ({hint})"
        OSError.__init__(self, err, text)
        self.errno = err
        self.message = text

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.errno, self.command, "", self.hint))


class KeyNotFoundError(BPFSyscallError, KeyError):
    """The key is not in the map (ENOENT on a lookup or delete)."""

    def __init__(self, key: object = None, command: str = "BPF_MAP_LOOKUP_ELEM") -> None:
        self.key = key
        BPFSyscallError.__init__(self, _errno.ENOENT, command, f"key {key!r} not found")

    def __str__(self) -> str:
        return self.message


class MapFullError(BPFSyscallError):
    """The map has no room for another entry (E2BIG on update)."""

    def __init__(self, command: str = "BPF_MAP_UPDATE_ELEM", max_entries: int | None = None) -> None:
        extra = f" (max_entries={max_entries})" if max_entries is not None else ""
        BPFSyscallError.__init__(self, _errno.E2BIG, command, f"map is full{extra}")


class VerifierError(BPFSyscallError):
    """The verifier rejected a program.

    :ivar log: the whole verifier log (the buffer grows until it fits).
    """

    TAIL_LINES = 20

    def __init__(self, err: int, command: str, log: str, name: str = "", hint: str = "") -> None:
        self.log = log
        self.program_name = name
        BPFSyscallError.__init__(self, err, command, hint=hint)
        lines = log.rstrip("\n").splitlines()
        tail = "\n".join(lines[-self.TAIL_LINES :])
        who = f" {name!r}" if name else ""
        more = f" (last {self.TAIL_LINES} of {len(lines)} lines; .log has all)" if len(lines) > self.TAIL_LINES else ""
        self.message = f"{command}: verifier rejected program{who}: {os.strerror(err)}{more}"
        if hint:
            self.message += f" ({hint})"
        if tail:
            self.message += "\n" + tail


class NotSupportedError(EBPFError):
    """This kernel (or machine) cannot do what was asked."""


class UnsupportedFeatureError(NotSupportedError):
    """A feature probe found the feature missing.

    :ivar feature: what is missing, e.g. ``"map type ringbuf"``.
    :ivar min_kernel: the first Linux version with it, e.g. ``"5.8"``, or ``""``.
    :ivar reason: why it is missing, e.g. ``"in Linux since 6.9, but refused by this kernel's build or
        configuration: EPERM"``, or ``""``.
    :ivar refused: the errno name the kernel answered the probe with (``"EPERM"``), or ``""``.
    """

    def __init__(self, feature: str, min_kernel: str = "", reason: str = "", refused: str = "") -> None:
        self.feature = feature
        self.min_kernel = min_kernel
        self.refused = refused
        new_enough = bool(min_kernel) and _running_kernel() >= _version_tuple(min_kernel)
        if refused:
            # A refusal on a kernel new enough is a build/config gap: say so, with the kernel's word.
            why = (f"in Linux since {min_kernel}, but refused by this kernel's build or configuration: {refused}"
                   if new_enough else
                   f"requires Linux >= {min_kernel}; the kernel answered {refused}" if min_kernel else
                   f"refused by this kernel's build or configuration: {refused}")
            reason = f"{why} ({reason})" if reason else why
        self.reason = reason
        text = f"{feature} is not supported by this kernel"
        if min_kernel and not refused:
            if new_enough:
                text += f" (in Linux since {min_kernel}, but not in this kernel's build or configuration)"
            else:
                text += f" (requires Linux >= {min_kernel})"
        if reason:
            text += f": {reason}"
        super().__init__(text)


class ProbeInconclusiveError(EBPFError):
    """A feature probe could not tell whether the feature is there (e.g. the caller lacks privileges).

    Deliberately not an :class:`UnsupportedFeatureError`: nothing is known to be missing.

    :ivar feature: what was probed.
    :ivar errno: the kernel's errno that left the question open, or None.
    """

    def __init__(self, feature: str, reason: str, err: int | None = None) -> None:
        self.feature = feature
        self.reason = reason
        self.errno = err
        super().__init__(f"could not tell whether {feature} is supported: {reason}")


def _version_tuple(text: str) -> tuple[int, ...]:
    parts = []
    for piece in text.split("."):
        digits = "".join(itertools.takewhile(str.isdigit, piece))
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)


def _running_kernel() -> tuple[int, ...]:
    return _version_tuple(os.uname().release)


class ELFError(EBPFError):
    """A malformed or unusable ELF object."""


class BTFError(EBPFError):
    """Malformed BTF, or a type that cannot be found or used."""


class AsmError(EBPFError):
    """A program that cannot be assembled, or bytes that are not valid BPF instructions."""


class AttachError(EBPFError):
    """Attaching or detaching a program failed, or no backend can do it."""


class PluginError(EBPFError):
    """A plugin is broken or returned something unusable."""


_HINTS = {
    _errno.EPERM: "needs root or CAP_BPF (+CAP_PERFMON/CAP_NET_ADMIN/CAP_SYS_ADMIN for some types)",
    _errno.EACCES: "permission denied: the program may be unsafe, or the caller lacks CAP_BPF",
    _errno.ENOMEM: "out of memory: the object may be too large, or RLIMIT_MEMLOCK too low on kernels < 5.11",
    _errno.E2BIG: "an argument is larger than the kernel accepts",
    _errno.EINVAL: "the kernel rejected an argument",
    _errno.ENOSYS: "this kernel has no bpf() syscall (CONFIG_BPF_SYSCALL)",
    _errno.EBADF: "the file descriptor is not valid (was the object closed?)",
}


def syscall_error(err: int, command: str, message: str = "", hint: str | None = None) -> BPFSyscallError:
    """Build the :class:`BPFSyscallError` for ``err`` from ``command``, with a default hint."""
    if hint is None:
        hint = _HINTS.get(err, "")
    return BPFSyscallError(err, command, message, hint)
