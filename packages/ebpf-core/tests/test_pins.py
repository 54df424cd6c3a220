"""Pinning on bpffs, reopening maps (pinned, by id, by fd), info, freeze, dump_map and maps()."""

from __future__ import annotations

import ctypes
import os
from collections.abc import Iterator

import pytest
from ebpf.core import pins
from ebpf.core._sys import attrs, commands
from ebpf.core._sys.syscall import Cmd, bpf, close_fd
from ebpf.core.errors import BPFSyscallError, EBPFError
from ebpf.core.maps import (
    Map,
    PerCPUMap,
    create_array_map,
    create_hash_map,
    create_percpu_array_map,
    create_queue_map,
    dump_map,
    maps,
)
from ebpf.core.testing import open_fds
from ebpf.core.types import MapType

pytestmark = pytest.mark.privileged

RET0 = bytes.fromhex("b700000000000000" "9500000000000000")


@pytest.fixture
def prog_fd() -> Iterator[int]:
    insns = ctypes.create_string_buffer(RET0, len(RET0))
    lic = ctypes.create_string_buffer(b"GPL")
    fd = bpf(Cmd.PROG_LOAD, attrs.ProgLoadAttr(prog_type=1, insn_cnt=2, insns=ctypes.addressof(insns),
                                               license=ctypes.addressof(lic)))
    yield fd
    close_fd(fd)


def test_pin_and_reopen(pin_dir: str) -> None:
    path = os.path.join(pin_dir, "counts")
    with create_hash_map(32, value_size=8, name="pinned") as m:
        assert m.pin(path) == path
        m[1] = 11
    assert pins.is_pinned(path)
    with Map.from_pinned(path) as again:
        assert (again.map_type, again.key_size, again.value_size, again.max_entries, again.name) == (
            MapType.HASH, 4, 8, 32, "pinned")
        assert again[1] == 11  # the map outlived its first handle through the pin
    pins.unpin(path)
    assert not os.path.exists(path)


def test_pin_path_in_spec(pin_dir: str) -> None:
    path = os.path.join(pin_dir, "from_spec")
    with create_percpu_array_map(2, value_size=8, pin_path=path) as m:
        m[0] = 3
    with Map.from_pinned(path) as again:
        assert isinstance(again, PerCPUMap)
        assert again[0] == [3] * again.ncpus


def test_pin_path_checks(pin_dir: str, tmp_path: object) -> None:
    before = open_fds()
    with create_hash_map(2) as m:
        m.pin(os.path.join(pin_dir, "taken"))
        with pytest.raises(EBPFError, match="already exists"):
            m.pin(os.path.join(pin_dir, "taken"))
        with pytest.raises(EBPFError, match="not on a bpf filesystem"):
            m.pin(os.path.join(str(tmp_path), "x"))
        with pytest.raises(EBPFError, match="does not exist"):
            m.pin(os.path.join(pin_dir, "no", "such", "dir"))
    with pytest.raises(EBPFError, match="already exists"):
        create_hash_map(2, pin_path=os.path.join(pin_dir, "taken"))
    assert open_fds() == before


def test_from_pinned_errors(pin_dir: str, prog_fd: int) -> None:
    before = open_fds()
    with pytest.raises(EBPFError, match="nothing is pinned"):
        Map.from_pinned(os.path.join(pin_dir, "missing"))
    path = os.path.join(pin_dir, "a_prog")
    commands.obj_pin(prog_fd, path)
    with pytest.raises(EBPFError, match="holds a program, not a map"):
        Map.from_pinned(path)
    assert open_fds() == before
    with pytest.raises(EBPFError):
        pins.unpin(os.path.join(pin_dir, "missing"))


def test_from_id_and_from_fd() -> None:
    with create_array_map(4, value_size=8, name="by_id") as m:
        m[2] = 5
        with Map.from_id(m.info().id) as by_id:
            assert by_id[2] == 5 and by_id.name == "by_id"
        with Map.from_fd(m.fd) as by_fd:
            assert by_fd.fd != m.fd  # a duplicate, owned by the new Map
            by_fd[3] = 6
        assert m[3] == 6  # the original fd is still open
    before = open_fds()
    with pytest.raises(EBPFError):
        Map.from_fd(-1)
    with pytest.raises(EBPFError):
        Map.from_id(0)
    with pytest.raises(BPFSyscallError):
        Map.from_id(0x7FFFFFFF)
    r, w = os.pipe()
    try:
        with pytest.raises(EBPFError, match="not a BPF map"):
            Map.from_fd(r)
    finally:
        os.close(r)
        os.close(w)
    assert open_fds() == before


def test_info_and_freeze() -> None:
    with create_hash_map(8, value_size=8, name="frozen") as m:
        m[1] = 1
        info = m.info()
        assert info.id > 0 and info.name == "frozen" and info.type is MapType.HASH
        m.freeze()
        with pytest.raises(BPFSyscallError):
            m[2] = 2  # user space may no longer write
        assert m[1] == 1


def test_dump_map_shows_entries() -> None:
    with create_hash_map(8, value_size=8, name="dumped") as m:
        m.update_batch({1: 10, 2: 20})
        text = dump_map(m)
        assert "hash map 'dumped'" in text
        assert "1: 10" in text and "2: 20" in text and "(2 entries)" in text
    with create_hash_map(4, key_size=2, value_size=3) as raw:
        raw[b"\x01\x02"] = b"\xaa\xbb\xcc"
        assert "01 02: aa bb cc" in dump_map(raw)
    with create_queue_map(2) as q:
        assert "no keys" in dump_map(q)


def test_dump_map_uses_btf() -> None:
    from ebpf.core import btf

    spec, key_id, value_id = btf.map_btf("u32", [("count", "u64"), ("comm", "char[16]")])
    with spec.load() as handle, create_hash_map(4, key_size=4, value_size=24, btf=handle, btf_key_type_id=key_id,
                                                btf_value_type_id=value_id, name="typed") as m:
        m[7] = (5).to_bytes(8, "little") + b"bash".ljust(16, b"\0")
        text = dump_map(m)
        assert "'count': 5" in text and "'comm': 'bash'" in text, text
        with Map.from_id(m.info().id) as again:  # no BTF handle here: read back from the kernel by id
            assert "'comm': 'bash'" in dump_map(again)


def test_maps_lists_every_map() -> None:
    with create_hash_map(3, name="listed_a") as a, create_queue_map(2, name="listed_b") as b:
        found = {info.id: info for info in maps()}
        assert found[a.info().id].name == "listed_a"
        assert found[b.info().id].type is MapType.QUEUE
        import ebpf.core as bpf

        assert any(info.id == a.info().id for info in bpf.maps())  # type: ignore[attr-defined]  # facade name
    assert all(info.id > 0 for info in maps())


def test_fd_kind() -> None:
    with create_hash_map(1) as m:
        assert pins.fd_kind(m.fd) == "map"
    with pytest.raises(EBPFError):
        pins.fd_kind(10**6)
