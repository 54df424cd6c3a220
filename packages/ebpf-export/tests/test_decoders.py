"""Label decoders on real kernel data: syscall table, kallsyms, cgroupfs, /proc/partitions, BTF enums."""

from __future__ import annotations

import errno
import os
import struct

import pytest
from ebpf.events.symbols import KernelSymbols
from ebpf.events.tools.syscount import syscall_names
from ebpf.export.config import DecoderConfig, LabelConfig
from ebpf.export.decoders import LabelDecoder, SkipSeries, cgroup_paths


def decode(key: bytes, *labels: tuple[int, list[DecoderConfig]]) -> tuple[str, ...]:
    cfg = tuple(LabelConfig(f"l{i}", size, tuple(decs)) for i, (size, decs) in enumerate(labels))
    return LabelDecoder(cfg).decode(key)


def d(name: str, **kw: object) -> DecoderConfig:
    return DecoderConfig(name, **kw)  # type: ignore[arg-type]


def test_uint_string_hex_and_padding() -> None:
    key = b"bash\0junk" + bytes(7) + struct.pack("<Q", 42) + b"\xab\xcd"
    assert decode(key, (16, [d("string")]), (8, [d("uint")]), (2, [d("hex")])) == ("bash", "42", "abcd")
    padded = LabelDecoder((LabelConfig("a", 2, (d("uint"),), padding=2),))
    assert padded.decode(b"\xff\xff\x07\x00") == ("7",)


def test_syscall_names_come_from_this_architecture() -> None:
    table = syscall_names()
    assert table, "no asm/unistd_64.h found on the system nor in ziglang"
    nr = {name: n for n, name in table.items()}
    assert {"read", "write", "openat", "getppid"} <= set(nr)
    key = struct.pack("<Q", nr["getppid"])
    assert decode(key, (8, [d("uint"), d("syscall")])) == ("getppid",)
    assert decode(struct.pack("<Q", 99999), (8, [d("uint"), d("syscall")])) == ("unknown_syscall:99999",)


def test_errno_inet_ip_static_map_and_regexp() -> None:
    assert decode(struct.pack("<I", errno.ENOENT), (4, [d("uint"), d("errno")])) == ("ENOENT",)
    assert decode(bytes([127, 0, 0, 1]), (4, [d("inet_ip")])) == ("127.0.0.1",)
    mapped = bytes(10) + b"\xff\xff" + bytes([10, 1, 2, 3])
    assert decode(mapped, (16, [d("inet_ip")])) == ("10.1.2.3",)
    v6 = bytes.fromhex("20010db8000000000000000000000001")
    assert decode(v6, (16, [d("inet_ip")])) == ("2001:db8::1",)
    static = d("static_map", static_map={"1": "read", "2": "write"})
    assert decode(struct.pack("<I", 2), (4, [d("uint"), static])) == ("write",)
    assert decode(struct.pack("<I", 9), (4, [d("uint"), static])) == ("unknown:9",)
    allow = d("static_map", static_map={"1": "read"}, allow_unknown=True)
    assert decode(struct.pack("<I", 9), (4, [d("uint"), allow])) == ("9",)
    keep = d("regexp", regexps=("^(py)thon",))
    assert decode(b"python3\0", (8, [d("string"), keep])) == ("py",)
    with pytest.raises(SkipSeries):
        decode(b"bash\0\0\0\0", (8, [d("string"), keep]))


def test_ksym_names_a_kernel_function() -> None:
    syms = KernelSymbols.shared()
    i = syms.names.index("bpf_prog_put")
    addr = syms.addrs[i] + 1
    assert decode(struct.pack("<Q", addr), (8, [d("uint"), d("ksym")])) == ("bpf_prog_put",)


def test_cgroup_id_is_the_directory_inode() -> None:
    paths = cgroup_paths()
    with open("/proc/self/cgroup") as fh:
        rel = fh.read().strip().split("::", 1)[1]
    mine = next(p for p in paths.values() if p.endswith(rel)) if rel != "/" else min(paths.values(), key=len)
    cid = os.stat(mine).st_ino
    assert decode(struct.pack("<Q", cid), (8, [d("uint"), d("cgroup")])) == (mine,)
    assert decode(struct.pack("<Q", 1 << 60), (8, [d("uint"), d("cgroup")]))[0].startswith("unknown_cgroup_id:")


def test_majorminor_reads_proc_partitions() -> None:
    with open("/proc/partitions") as fh:
        rows = [line.split() for line in fh.readlines()[2:] if line.strip()]
    major, minor, _blocks, name = rows[0]
    dev = (int(major) << 20) | int(minor)  # the kernel's dev_t as block tracepoints record it
    assert decode(struct.pack("<I", dev), (4, [d("majorminor")])) == (name,)


def test_enum_names_from_kernel_btf() -> None:
    enum = d("enum", enum="bpf_map_type")
    assert decode(struct.pack("<I", 1), (4, [d("uint"), enum])) == ("BPF_MAP_TYPE_HASH",)
