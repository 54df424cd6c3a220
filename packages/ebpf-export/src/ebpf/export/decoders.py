"""Label decoders: raw key bytes -> label values, each decoder feeding the next (as ebpf_exporter's).

A chain starts on the label's bytes (``uint``, ``hex``, ``string``, ``inet_ip``, ``majorminor``)
and may continue on the text the previous step produced (``syscall``, ``errno``, ``ksym``,
``cgroup``, ``enum``, ``static_map``, ``regexp``). ``regexp`` drops the whole series when
nothing matches. A decoded key is cached by the exporter, so each step runs once per new key.
"""

from __future__ import annotations

import errno as _errno
import ipaddress
import os
import re
import sys
from collections.abc import Callable

from ebpf.events.symbols import ksym
from ebpf.events.tools.syscount import syscall_names
from ebpf.export.config import DecoderConfig, LabelConfig

__all__ = ["SkipSeries", "LabelDecoder", "cgroup_paths"]


class SkipSeries(Exception):
    """Raised by a decoder (``regexp``) when the series must not be exported."""


Step = Callable[[bytes], bytes]


def _uint(data: bytes) -> bytes:
    return str(int.from_bytes(data, sys.byteorder)).encode()


def _string(data: bytes) -> bytes:
    end = data.find(b"\0")
    return data if end < 0 else data[:end]


def _inet_ip(data: bytes) -> bytes:
    addr = ipaddress.ip_address(bytes(data))
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped  # the kernel stores IPv4 peers of dual-stack sockets as ::ffff:a.b.c.d
    return str(addr).encode()


def _number(data: bytes) -> int:
    try:
        return int(data)
    except ValueError:
        raise SkipSeries from None


def cgroup_paths(root: str | None = None) -> dict[int, str]:
    """cgroup v2 id (the directory's inode number) -> path, over the whole hierarchy."""
    if root is None:
        root = next((p for p in ("/sys/fs/cgroup/unified", "/sys/fs/cgroup")
                     if os.path.exists(os.path.join(p, "cgroup.controllers"))), "/sys/fs/cgroup")
    out: dict[int, str] = {}
    for dirpath, _dirs, _files in os.walk(root):
        try:
            out[os.stat(dirpath).st_ino] = dirpath
        except OSError:
            continue
    return out


def _majorminor(data: bytes) -> bytes:
    dev = int.from_bytes(data[:4], sys.byteorder)
    major, minor = dev >> 20, dev & 0xFFFFF  # the kernel's internal dev_t, as tracepoints record it
    try:
        with open("/proc/partitions") as fh:
            for line in fh:
                parts = line.split()
                if len(parts) == 4 and parts[0] == str(major) and parts[1] == str(minor):
                    return parts[3].encode()
    except OSError:
        pass
    return f"{major}:{minor}".encode()


class _Cgroups:
    def __init__(self) -> None:
        self.paths: dict[int, str] = {}

    def __call__(self, data: bytes) -> bytes:
        cid = _number(data)
        if cid not in self.paths:
            self.paths = cgroup_paths()  # a new cgroup since the last walk
        return self.paths.get(cid, f"unknown_cgroup_id:{cid}").encode()


def _enum_names(type_name: str, btf: object | None) -> dict[int, str]:
    from ebpf.core import btf as btfmod

    specs = [btf] if btf is not None else []
    try:
        specs.append(btfmod.load_vmlinux())
    except Exception:
        pass
    for spec in specs:
        try:
            t = spec.find(type_name)  # type: ignore[attr-defined]
        except Exception:
            continue
        if isinstance(t, btfmod.Enum):
            return {int(v.value): v.name for v in t.values}
    return {}


def _step(dec: DecoderConfig, btf: object | None) -> Step:
    name = dec.name
    if name == "uint":
        return _uint
    if name == "hex":
        return lambda d: bytes(d).hex().encode()
    if name == "string":
        return _string
    if name == "inet_ip":
        return _inet_ip
    if name == "majorminor":
        return _majorminor
    if name == "syscall":
        table = syscall_names()
        return lambda d: table.get(_number(d), f"unknown_syscall:{_number(d)}").encode()
    if name == "errno":
        return lambda d: _errno.errorcode.get(_number(d), f"unknown_errno:{_number(d)}").encode()
    if name == "ksym":  # ebpf-events' kallsyms table, parsed once per process
        return lambda d: ksym(_number(d)).encode()
    if name == "cgroup":
        return _Cgroups()
    if name == "enum":
        names = _enum_names(dec.enum, btf)
        return lambda d: names.get(_number(d), f"unknown:{_number(d)}").encode()
    if name == "static_map":
        mapping = {k.encode(): v.encode() for k, v in dec.static_map.items()}

        def static(d: bytes) -> bytes:
            if d in mapping:
                return mapping[d]
            return bytes(d) if dec.allow_unknown else b"unknown:" + bytes(d)
        return static
    patterns = [re.compile(r.encode()) for r in dec.regexps]

    def regexp(d: bytes) -> bytes:
        for pat in patterns:
            m = pat.search(d)
            if m:
                return m.group(1) if m.groups() else m.group(0)
        raise SkipSeries
    return regexp


class LabelDecoder:
    """Splits a key into its labels and decodes each; ``decode(key)`` -> values, or SkipSeries."""

    def __init__(self, labels: tuple[LabelConfig, ...], btf: object | None = None) -> None:
        """:param btf: the object's BTF, searched first by ``enum`` decoders."""
        self.slices: list[tuple[int, int, list[Step]]] = []
        off = 0
        for lab in labels:
            off += lab.padding
            self.slices.append((off, off + lab.size, [_step(d, btf) for d in lab.decoders]))
            off += lab.size

    def decode(self, key: bytes) -> tuple[str, ...]:
        """Label values of one key, in label order.

        :raises SkipSeries: a ``regexp`` decoder matched nothing.
        """
        out = []
        for start, end, steps in self.slices:
            data = key[start:end]
            for step in steps:
                data = step(data)
            out.append(data.decode("utf-8", "replace"))
        return tuple(out)
