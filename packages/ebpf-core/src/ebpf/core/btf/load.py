"""Kernel BTF: read vmlinux/module BTF from sysfs, load BTF blobs (BPF_BTF_LOAD), read BTF by id."""

from __future__ import annotations

import ctypes
import os
import threading

from ebpf.core._sys import commands
from ebpf.core._sys.attrs import BtfInfo
from ebpf.core.btf.handle import BTF
from ebpf.core.btf.spec import Spec
from ebpf.core.errors import BTFError, UnsupportedFeatureError

__all__ = ["BTF", "load_btf", "load_vmlinux", "load_module", "load_by_id", "SYSFS_BTF"]

#: Where the kernel exposes its own BTF (``vmlinux`` and one file per module).
SYSFS_BTF = "/sys/kernel/btf"


# Held while the kernel's BTF is read and parsed: threads loading at once share one parse.
_lock = threading.RLock()
_vmlinux: Spec | None = None
_modules: dict[str, Spec] = {}


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
    spec = data if isinstance(data, Spec) else Spec(data)
    return spec.load(log_level)


def load_vmlinux(path: str | None = None) -> Spec:
    """The running kernel's BTF (parsed lazily, once per process: threads asking at once share one
    parse; its record index is cached on disk by the blob's hash, see :mod:`ebpf.core.btf.cache`).

    :param path: another vmlinux BTF file to parse instead (not cached).
    :raises UnsupportedFeatureError: when the kernel exposes no BTF (CONFIG_DEBUG_INFO_BTF).
    Requires Linux >= 5.4.
    """
    global _vmlinux
    if path is not None:
        return Spec(_read(path, "vmlinux"), name="vmlinux")
    if _vmlinux is not None:
        return _vmlinux
    with _lock:
        if _vmlinux is None:  # another thread may have parsed it while this one waited
            from ebpf.core.btf.cache import VMLINUX, kernel_btf_identity, use_index_cache  # deferred: start-up time

            path = os.path.join(SYSFS_BTF, "vmlinux")
            # Taken before the read, so it names the blob read (None: hashed instead).
            identity = kernel_btf_identity() if path == VMLINUX else None
            spec = Spec(_read(path, "vmlinux"), name="vmlinux")
            use_index_cache(spec, identity)  # a fresh process reads the record index instead of rebuilding it
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
    base = load_vmlinux()
    with _lock:
        cached = _modules.get(name)
        if cached is None:
            cached = _modules[name] = Spec(_read(path, name), base=base, name=name)
        return cached


def _read(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        raise UnsupportedFeatureError(f"{what} BTF ({path})", "5.4", "kernel built without CONFIG_DEBUG_INFO_BTF") from None
    except OSError as exc:
        raise BTFError(f"cannot read {path}: {exc.strerror}") from exc


def load_by_id(btf_id: int) -> Spec:
    """Read the kernel BTF object ``btf_id`` (a map's or program's ``btf_id``) back as a :class:`Spec`.

    Kernel module BTF comes back split on vmlinux.

    :raises BPFSyscallError: when there is no such object.
    :raises BTFError: when its blob is malformed.
    """
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
