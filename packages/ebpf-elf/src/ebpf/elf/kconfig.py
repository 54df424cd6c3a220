"""Values for ``extern ... __kconfig`` variables: LINUX_KERNEL_VERSION and the kernel's CONFIG_*."""

from __future__ import annotations

import gzip
import os
import platform

from ebpf.core.errors import ELFError

__all__ = ["kconfig_value", "read_kernel_config", "kernel_version_code"]

_CONFIG: dict[str, str] | None = None


def read_kernel_config() -> dict[str, str]:
    """The running kernel's config (``/proc/config.gz`` or ``/boot/config-$(uname -r)``); {} when absent."""
    global _CONFIG
    if _CONFIG is not None:
        return _CONFIG
    text = ""
    for path in ("/proc/config.gz", f"/boot/config-{platform.release()}"):
        try:
            if path.endswith(".gz"):
                with gzip.open(path, "rt", errors="replace") as fh:
                    text = fh.read()
            else:
                with open(path, errors="replace") as fh:
                    text = fh.read()
            break
        except OSError:
            continue
    config = {}
    for line in text.splitlines():
        if line.startswith("CONFIG_") and "=" in line:
            key, _, value = line.partition("=")
            config[key] = value
    _CONFIG = config
    return config


def kernel_version_code() -> int:
    """The running kernel's version as ``KERNEL_VERSION(major, minor, patch)`` (patch capped at 255)."""
    from ebpf.core.system import kernel_version

    major, minor, patch = [*kernel_version(), 0, 0, 0][:3]
    return (major << 16) | (minor << 8) | min(patch, 255)


def kconfig_value(name: str, size: int, weak: bool, where: str = "") -> bytes:
    """Encode the value of ``__kconfig`` extern ``name`` in ``size`` bytes.

    ``y``/``m``/``n`` become 1/2/0, numbers their value, quoted strings their bytes.

    :raises ELFError: a strong (non-weak) extern with no value on this kernel.
    """
    if name == "LINUX_KERNEL_VERSION":
        value: int | bytes = kernel_version_code()
    elif name == "LINUX_HAS_SYSCALL_WRAPPER":
        value = 1 if platform.machine() in ("x86_64", "aarch64", "s390x", "riscv64") else 0
    elif name == "LINUX_HAS_BPF_COOKIE":
        value = 1
    elif name.startswith("CONFIG_"):
        raw = read_kernel_config().get(name)
        if raw is None:
            if not weak and os.path.exists("/proc/config.gz"):
                # The kernel says it is not set: "n" (libbpf treats missing tristates as n).
                raw = "n"
            elif not weak:
                raise ELFError(f"{where}: __kconfig extern {name!r}: no kernel config found to read it from "
                               f"(declare it __weak to default to 0)")
            else:
                raw = "n"
        value = {"y": 1, "m": 2, "n": 0}.get(raw)  # type: ignore[assignment]
        if value is None:
            if raw.startswith('"'):
                value = raw.strip('"').encode()
            else:
                try:
                    value = int(raw, 0)
                except ValueError:
                    raise ELFError(f"{where}: __kconfig extern {name!r}: cannot use value {raw!r}") from None
    elif weak:
        value = 0
    else:
        raise ELFError(f"{where}: unknown __kconfig extern {name!r} (declare it __weak to default to 0)")
    if isinstance(value, bytes):
        return value[:size].ljust(size, b"\0")
    return (value & ((1 << (8 * size)) - 1)).to_bytes(size, "little")
