"""Kernel BTF: read vmlinux/module BTF from sysfs, load BTF blobs (BPF_BTF_LOAD), read BTF by id."""

from __future__ import annotations

import ctypes
import errno
import os
import threading
import weakref

from ebpf.core.btf.spec import Spec
from ebpf.core.errors import BPFSyscallError, BTFError

__all__ = ["BTF", "load_btf", "load_vmlinux", "load_module", "load_by_id", "SYSFS_BTF"]

#: Where the kernel exposes its own BTF (``vmlinux`` and one file per module).
SYSFS_BTF = "/sys/kernel/btf"

_LOG_START = 64 * 1024
_LOG_MAX = 1 << 30  # the kernel refuses log buffers past UINT_MAX >> 2

_lock = threading.Lock()
_vmlinux: Spec | None = None
_modules: dict[str, Spec] = {}


def _close_fd(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass  # already closed


class BTF:
    """A BTF object loaded into the kernel: owns ``fd``; ``close()``, ``with``, closed on GC as a last resort.

    :ivar spec: the parsed BTF the object was loaded from (None when opened by id).
    """

    def __init__(self, fd: int, spec: Spec | None = None) -> None:
        self._fd = fd
        self.spec = spec
        self._finalizer = weakref.finalize(self, _close_fd, fd)

    @property
    def fd(self) -> int:
        """The BTF object's file descriptor.

        :raises BTFError: after :meth:`close`.
        """
        if self._fd < 0:
            raise BTFError("BTF object is closed")
        return self._fd

    @property
    def closed(self) -> bool:
        """True after :meth:`close`."""
        return self._fd < 0

    @property
    def id(self) -> int:
        """The kernel's id of this BTF object (``bpftool btf list``)."""
        from ebpf.core._sys import commands

        return int(commands.btf_info(self.fd).id)

    @classmethod
    def from_id(cls, btf_id: int) -> BTF:
        """Open the kernel BTF object ``btf_id`` (e.g. a map's ``info().btf_id``).

        :raises BPFSyscallError: when there is no such object or no permission.
        """
        from ebpf.core._sys import commands

        return cls(commands.fd_by_id("btf", btf_id))

    def close(self) -> None:
        """Close the fd (the kernel frees the BTF when nothing else holds it). Idempotent."""
        if self._fd >= 0:
            self._finalizer()
            self._fd = -1

    def __enter__(self) -> BTF:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<BTF fd={self._fd}{' closed' if self._fd < 0 else ''}>"


def load_btf(data: bytes | Spec, log_level: int = 1) -> BTF:
    """Load a BTF blob into the kernel (BPF_BTF_LOAD) and return its handle.

    The blob is parsed and checked first, so malformed input fails before the syscall.
    When the kernel rejects it, the load is retried with a log buffer that grows until
    the whole log fits.

    :param data: the blob, or a :class:`Spec` (its bytes are loaded).
    :param log_level: verifier log level used when reporting a failure.
    :returns: the :class:`BTF` handle.
    :raises BTFError: on a malformed blob or when the kernel rejects it (``.log`` holds the
        kernel's log, ``.errno`` its errno).
    Requires Linux >= 4.18.
    """
    from ebpf.core._sys import commands

    spec = data if isinstance(data, Spec) else Spec(data)
    spec.count  # builds the index: truncated records / unknown kinds fail here  # noqa: B018
    blob = spec.data
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
    from ebpf.core._sys import commands

    size = _LOG_START
    while True:
        try:
            fd, log = commands.btf_load(blob, log_level=level, log_size=size)
        except BPFSyscallError as exc:
            log = getattr(exc, "log", "")
            if exc.errno == errno.ENOSPC and size < _LOG_MAX:
                size *= 4
                continue
            return log, exc.errno or err
        _close_fd(fd)  # accepted on the retry (a transient failure): report the first error
        return log, err


def load_vmlinux(path: str | None = None) -> Spec:
    """The running kernel's BTF (parsed lazily, cached for the process).

    :param path: another vmlinux BTF file to parse instead (not cached).
    :raises UnsupportedFeatureError: when the kernel exposes no BTF (CONFIG_DEBUG_INFO_BTF).
    Requires Linux >= 5.4.
    """
    global _vmlinux
    if path is not None:
        return Spec(_read(path, "vmlinux"), name="vmlinux")
    if _vmlinux is not None:
        return _vmlinux
    spec = Spec(_read(os.path.join(SYSFS_BTF, "vmlinux"), "vmlinux"), name="vmlinux")
    with _lock:
        if _vmlinux is None:
            _vmlinux = spec
        return _vmlinux


def load_module(name: str) -> Spec:
    """A kernel module's split BTF (``/sys/kernel/btf/<name>``) on top of vmlinux, cached.

    :raises BTFError: when the module is not loaded or has no BTF.
    Requires Linux >= 5.11.
    """
    if not name or "/" in name or name.startswith("."):
        raise BTFError(f"bad module name {name!r}")
    if name == "vmlinux":
        return load_vmlinux()
    cached = _modules.get(name)
    if cached is not None:
        return cached
    path = os.path.join(SYSFS_BTF, name)
    if not os.path.exists(path):
        raise BTFError(f"no BTF for module {name!r}: {path} does not exist (module not loaded, or no CONFIG_DEBUG_INFO_BTF_MODULES)")
    spec = Spec(_read(path, name), base=load_vmlinux(), name=name)
    with _lock:
        return _modules.setdefault(name, spec)


def _read(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        from ebpf.core.errors import UnsupportedFeatureError

        raise UnsupportedFeatureError(f"{what} BTF ({path})", "5.4", "kernel built without CONFIG_DEBUG_INFO_BTF") from None
    except OSError as exc:
        raise BTFError(f"cannot read {path}: {exc.strerror}") from exc


def load_by_id(btf_id: int) -> Spec:
    """Read the kernel BTF object ``btf_id`` (a map's or program's ``btf_id``) back as a :class:`Spec`.

    Kernel module BTF comes back split on vmlinux.

    :raises BPFSyscallError: when there is no such object.
    :raises BTFError: when its blob is malformed.
    """
    from ebpf.core._sys import commands
    from ebpf.core._sys.attrs import BtfInfo

    with BTF.from_id(btf_id) as handle:
        first = commands.btf_info(handle.fd)
        size = int(first.btf_size)
        buf = ctypes.create_string_buffer(max(size, 1))
        name = ctypes.create_string_buffer(64)
        info = BtfInfo(btf=ctypes.addressof(buf), btf_size=size, name=ctypes.addressof(name), name_len=64)
        info = commands.obj_info(handle.fd, BtfInfo, info)
    label = name.value.decode(errors="replace")
    base = load_vmlinux() if info.kernel_btf and label and label != "vmlinux" else None
    return Spec(buf.raw[:size], base=base, name=label or f"btf#{btf_id}")
