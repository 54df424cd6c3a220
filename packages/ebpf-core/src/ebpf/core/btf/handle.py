"""A BTF object in the kernel (:class:`BTF`, an fd owner) and the BPF_BTF_LOAD that makes one.

Below :mod:`ebpf.core.btf.spec` and :mod:`ebpf.core.btf.load`: both load through :func:`load_blob`,
so ``Spec.load()`` needs no import of the loader that parses vmlinux.
"""

from __future__ import annotations

import errno
import os
from typing import TYPE_CHECKING, Any

from ebpf.core._sys import commands
from ebpf.core._sys.syscall import close_fd
from ebpf.core.errors import BPFSyscallError, BTFError
from ebpf.core.fdowner import FdOwner

if TYPE_CHECKING:  # pragma: no cover - only for annotations
    from ebpf.core.btf.spec import Spec

__all__ = ["BTF", "load_blob"]

_LOG_START = 64 * 1024
_LOG_MAX = 1 << 30  # the kernel refuses log buffers past UINT_MAX >> 2
_LOG_MIN = 128  # kernels before 6.4 refuse a smaller log buffer (EINVAL, and no log)


class BTF(FdOwner):
    """A BTF object loaded into the kernel: owns ``fd``; ``close()``, ``with``; collected while open: a ResourceWarning.

    :ivar spec: the parsed BTF the object was loaded from (None when opened by id).
    """

    _kind = "BTF object"

    def __init__(self, fd: int, spec: Spec | None = None) -> None:
        """Wrap ``fd`` (now owned by this object)."""
        self._own_fd(fd)
        self.spec = spec

    @property
    def fd(self) -> int:
        """The BTF object's file descriptor.

        :raises BTFError: after :meth:`close`.
        """
        if self._fd < 0:
            raise BTFError("BTF object is closed")
        return self._fd

    @property
    def id(self) -> int:
        """The kernel's id of this BTF object (``bpftool btf list``)."""
        return int(commands.btf_info(self.fd).id)

    @classmethod
    def from_id(cls, btf_id: int) -> BTF:
        """Open the kernel BTF object ``btf_id`` (e.g. a map's ``info().btf_id``).

        :raises BPFSyscallError: when there is no such object or no permission.
        """
        return cls(commands.fd_by_id("btf", btf_id))

    def __repr__(self) -> str:
        return f"<BTF fd={self._fd}{' closed' if self._fd < 0 else ''}>"


def load_blob(blob: bytes, spec: Any = None, log_level: int = 1) -> BTF:
    """BPF_BTF_LOAD of a checked blob; on failure, retried with a log buffer that grows until the log fits.

    :param blob: the BTF bytes (already parsed and checked by the caller).
    :param spec: the parsed :class:`~ebpf.core.btf.spec.Spec`, kept on the handle.
    :param log_level: verifier log level used when reporting a failure.
    :returns: the :class:`BTF` handle.
    :raises BTFError: when the kernel rejects it (``.log`` holds the kernel's log, ``.errno`` its errno).
    """
    try:
        fd, _ = commands.btf_load(blob)
        return BTF(fd, spec)
    except BPFSyscallError as exc:
        first = exc
    if first.errno in (errno.EPERM, errno.ENOSYS):
        log, err = "", first.errno  # no log to be had: the kernel refused the command itself
    else:
        log, err = _failure_log(blob, log_level or 1, first.errno or 0)
    tail = "\n".join(log.rstrip("\n").splitlines()[-20:])
    hint = f" ({first.hint})" if first.hint and not log else ""
    error = BTFError(f"BPF_BTF_LOAD: kernel rejected BTF: {os.strerror(err)}{hint}" + (f"\n{tail}" if tail else ""))
    error.log = log  # type: ignore[attr-defined]
    error.errno = err  # type: ignore[attr-defined]
    raise error from first


def _failure_log(blob: bytes, level: int, err: int) -> tuple[str, int]:
    size = max(_LOG_START, _LOG_MIN)
    while True:
        try:
            fd, log = commands.btf_load(blob, log_level=level, log_size=size)
        except BPFSyscallError as exc:
            log = getattr(exc, "log", "")
            # Linux >= 6.4 says ENOSPC when the log did not fit; older kernels report the load's own
            # errno and cut the log at the buffer's end (size - 1 characters and the NUL).
            cut = exc.errno == errno.ENOSPC or len(log) >= size - 1
            if cut and size < _LOG_MAX:
                size *= 4
                continue
            return log, exc.errno or err
        close_fd(fd)  # accepted on the retry (a transient failure): report the first error
        return log, err
