"""Typed map kinds on the real kernel: per-CPU, stack/queue, LPM trie, bloom filter, fd arrays, mmap arrays."""

from __future__ import annotations

import ctypes
import ipaddress
import os
import resource
from collections.abc import Iterator

import pytest
from ebpf.core import codecs
from ebpf.core._maps import create as create_mod
from ebpf.core._sys import attrs, commands
from ebpf.core._sys.syscall import close_fd
from ebpf.core.errors import EBPFError, KeyNotFoundError, MapFullError, NotSupportedError
from ebpf.core.features import have_map_type
from ebpf.core.maps import (
    Map,
    MapSpec,
    MmapArrayMap,
    PerCPUMap,
    create_array_map,
    create_array_of_maps,
    create_bloom_filter_map,
    create_hash_map,
    create_hash_of_maps,
    create_lpm_trie_map,
    create_lru_percpu_hash_map,
    create_map,
    create_percpu_array_map,
    create_percpu_hash_map,
    create_perf_event_array,
    create_prog_array,
    create_queue_map,
    create_ringbuf_map,
    create_stack_map,
    decode_percpu,
    encode_percpu,
    percpu_avg,
    percpu_max,
    percpu_min,
    percpu_sum,
    queue_peek,
    queue_pop,
    queue_push,
    stack_peek,
    stack_pop,
    stack_push,
)
from ebpf.core.system import cpu_count
from ebpf.core.testing import open_fds, require
from ebpf.core.types import MapType

pytestmark = pytest.mark.privileged

RET0 = bytes.fromhex("b700000000000000" "9500000000000000")  # r0 = 0; exit


@pytest.fixture
def prog_fd() -> Iterator[int]:
    """A loaded socket filter program (raw BPF_PROG_LOAD: no dependency on ebpf.core.programs)."""
    insns = ctypes.create_string_buffer(RET0, len(RET0))
    lic = ctypes.create_string_buffer(b"GPL")
    attr = attrs.ProgLoadAttr(prog_type=1, insn_cnt=2, insns=ctypes.addressof(insns), license=ctypes.addressof(lic))
    from ebpf.core._sys.syscall import Cmd, bpf

    fd = bpf(Cmd.PROG_LOAD, attr)
    yield fd
    close_fd(fd)


# -- per-CPU -------------------------------------------------------------------------------------
@pytest.mark.parametrize("make", [create_percpu_hash_map, create_lru_percpu_hash_map])
def test_percpu_hash_values_are_one_per_possible_cpu(make: object) -> None:
    ncpus = cpu_count()
    with make(16, value_size=8) as m:  # type: ignore[operator]
        assert isinstance(m, PerCPUMap)
        m[1] = 5  # one value: replicated
        assert m[1] == [5] * ncpus
        m[2] = list(range(10, 10 + ncpus))
        assert m[2] == list(range(10, 10 + ncpus))
        assert percpu_sum(m[2]) == sum(range(10, 10 + ncpus))
        assert dict(m.items()) == {1: [5] * ncpus, 2: list(range(10, 10 + ncpus))}
        assert dict(m.lookup_batch()) == dict(m.items())
        m.update_batch({3: 1, 4: [7] * ncpus})
        assert m[4] == [7] * ncpus and m[3] == [1] * ncpus
        with pytest.raises(EBPFError, match="per-CPU"):
            m[5] = [1] * (ncpus + 1)
        assert 5 not in m


def test_percpu_array_with_4_byte_values_is_padded_per_cpu() -> None:
    ncpus = cpu_count()
    with create_percpu_array_map(4, value_size=4) as m:
        values = [0xFFFFFFFF - i for i in range(ncpus)]
        m[0] = values
        assert m[0] == values
        assert m[1] == [0] * ncpus
        raw = m.lookup_bytes(b"\0\0\0\0")
        assert raw is not None and len(raw) == 8 * ncpus


def test_percpu_struct_values() -> None:
    with create_percpu_hash_map(4, value_size=12, value_codec=codecs.struct("=IQ")) as m:
        m[1] = (1, 2)  # a tuple is one struct value here, replicated
        assert m[1] == [(1, 2)] * cpu_count()


@pytest.mark.parametrize("ncpus", [1, 3, 128])
@pytest.mark.parametrize("value_size", [1, 4, 8, 12])
def test_percpu_padding_for_other_cpu_counts(ncpus: int, value_size: int) -> None:
    codec = codecs.raw(value_size) if value_size not in (4, 8) else codecs.default_codec(value_size)
    one = b"\x5a" * value_size if value_size not in (4, 8) else 0x5A
    stride = (value_size + 7) // 8 * 8
    data = encode_percpu(codec, one, ncpus, value_size)
    assert len(data) == stride * ncpus
    assert all(data[i * stride + value_size : (i + 1) * stride] == bytes(stride - value_size) for i in range(ncpus))
    assert decode_percpu(codec, data, ncpus, value_size) == [one] * ncpus
    with pytest.raises(EBPFError):
        encode_percpu(codec, [one] * (ncpus + 1), ncpus, value_size)
    with pytest.raises(EBPFError):
        decode_percpu(codec, data[:-1], ncpus, value_size)


def test_percpu_helpers() -> None:
    assert percpu_sum([1, 2, 3]) == 6
    assert percpu_max([1, 5, 3]) == 5
    assert percpu_min([4, 2, 3]) == 2
    assert percpu_avg([1, 2, 3]) == 2.0
    with pytest.raises(EBPFError):
        percpu_sum([])


# -- stack / queue / bloom -----------------------------------------------------------------------
def test_stack_is_lifo() -> None:
    with create_stack_map(3, value_size=8) as s:
        assert s.pop() is None and s.peek() is None
        for v in (1, 2, 3):
            stack_push(s, v)
        with pytest.raises(MapFullError):
            s.push(4)
        assert stack_peek(s) == 3
        assert [stack_pop(s), s.pop(), s.pop(), s.pop()] == [3, 2, 1, None]
        with pytest.raises(NotSupportedError):
            list(s.items())
        with pytest.raises(EBPFError):
            queue_push(s, 1)


def test_queue_is_fifo_and_can_overwrite() -> None:
    with create_queue_map(2) as q:
        queue_push(q, 1)
        queue_push(q, 2)
        q.push(3, flags="exist")  # full: drops the oldest
        assert queue_peek(q) == 2
        assert [queue_pop(q), queue_pop(q), queue_pop(q)] == [2, 3, None]
        q.push(9)
        q.clear()
        assert q.pop() is None


def test_bloom_filter() -> None:
    with create_bloom_filter_map(100, value_size=8, hash_functions=3) as bf:
        for v in range(10):
            bf.push(v)
        assert all(v in bf for v in range(10))
        assert sum(v in bf for v in range(1000, 1100)) < 50
    with pytest.raises(EBPFError):
        create_bloom_filter_map(10, hash_functions=16)


# -- LPM trie ------------------------------------------------------------------------------------
def test_lpm_trie_ipv4() -> None:
    with create_lpm_trie_map(16, value_size=4) as t:
        t[ipaddress.ip_network("10.0.0.0/8")] = 1
        t["10.1.0.0/16"] = 2
        t[(24, bytes([10, 1, 2, 0]))] = 3
        assert t.longest_match("10.1.2.3") == (ipaddress.ip_network("10.1.2.0/24"), 3)
        assert t.longest_match(ipaddress.ip_address("10.1.9.9")) == (ipaddress.ip_network("10.1.0.0/16"), 2)
        assert t.longest_match(bytes([10, 9, 9, 9])) == (ipaddress.ip_network("10.0.0.0/8"), 1)
        assert t.longest_match("192.168.0.1") is None
        assert set(t.keys()) == {ipaddress.ip_network(n) for n in ("10.0.0.0/8", "10.1.0.0/16", "10.1.2.0/24")}
        del t["10.1.2.0/24"]
        assert t.longest_match("10.1.2.3") == (ipaddress.ip_network("10.1.0.0/16"), 2)
        with pytest.raises(EBPFError):
            t["2001:db8::/32"] = 1  # IPv6 key in an IPv4 trie
        with pytest.raises(EBPFError):
            t.longest_match("not an address")
        with pytest.raises(EBPFError):
            t[(40, bytes(4))] = 1


def test_lpm_trie_ipv6() -> None:
    with create_lpm_trie_map(16, key_size=20, value_size=8) as t:
        t["2001:db8::/32"] = 32
        t["2001:db8:1::/48"] = 48
        assert t.longest_match("2001:db8:1::5") == (ipaddress.ip_network("2001:db8:1::/48"), 48)
        assert t.longest_match("2001:db8:2::5") == (ipaddress.ip_network("2001:db8::/32"), 32)


# -- fd arrays -----------------------------------------------------------------------------------
def test_prog_array_holds_programs(prog_fd: int) -> None:
    with create_prog_array(4) as pa:
        pa[1] = prog_fd
        prog_id = commands.prog_info(prog_fd).id
        assert pa[1] == prog_id
        assert dict(pa.items()) == {1: prog_id}
        pa.clear()
        assert pa.lookup(1) is None
        with pytest.raises(EBPFError):
            pa[0] = "not a program"


@pytest.mark.parametrize("inner_as_spec", [True, False])
def test_array_and_hash_of_maps(inner_as_spec: bool) -> None:
    template = create_hash_map(8)
    inner = template.spec.copy() if inner_as_spec else template
    with create_array_of_maps(4, inner) as aom, create_hash_of_maps(4, inner) as hom, create_hash_map(8) as value:
        aom[0] = value
        hom[7] = value
        assert aom[0] == hom[7] == value.info().id
        with pytest.raises(EBPFError):
            aom[1] = "nope"
    template.close()
    with pytest.raises(EBPFError, match="inner_map"):
        create_array_of_maps(1, 5)  # type: ignore[arg-type]


def test_perf_event_array_and_ringbuf_create() -> None:
    with create_perf_event_array() as pe:
        assert pe.max_entries == cpu_count() and pe.map_type is MapType.PERF_EVENT_ARRAY
    with create_perf_event_array(cpus=1) as pe1:
        assert pe1.max_entries == 1
    with create_ringbuf_map(1 << 14) as rb:
        assert rb.info().max_entries == 1 << 14
        with pytest.raises(NotSupportedError):
            list(rb.items())
    with pytest.raises(EBPFError):
        create_ringbuf_map(5000)


# -- mmapable arrays -----------------------------------------------------------------------------
def test_mmap_array_reads_and_writes_without_syscalls() -> None:
    with create_array_map(16, value_size=8, mmapable=True) as m:
        assert isinstance(m, MmapArrayMap)
        m[3] = 99
        assert m.lookup_bytes((3).to_bytes(4, "little")) == (99).to_bytes(8, "little")  # the kernel sees it
        m.update_bytes((4).to_bytes(4, "little"), (7).to_bytes(8, "little"))
        assert m[4] == 7  # and we see the kernel's writes
        assert m.lookup(16) is None
        with pytest.raises(KeyNotFoundError):
            m[16] = 1
        with pytest.raises(EBPFError):
            m[-1] = 1
        with pytest.raises(EBPFError):
            m["x"]
        with pytest.raises(EBPFError):
            m[1] = -5
        view = m.mmap()
        assert bytes(view[24:32]) == (99).to_bytes(8, "little")
        assert dict(m.items())[3] == 99
    with create_array_map(4, value_size=12, mmapable=True, value_codec=codecs.struct("=Iq")) as s:
        s[1] = (1, -2)
        assert s[1] == (1, -2)
        assert s.lookup(0) == (0, 0)


def test_mmap_array_freeze_then_read_only() -> None:
    """The ELF loader's .rodata flow: create, fill, freeze, then read through the mmap."""
    with create_array_map(2, value_size=8, mmapable=True) as m:
        m[0] = 5  # maps writable on first use
        view = m.mmap()
        with pytest.raises(EBPFError, match="still in use"):
            m.freeze()
        view.release()
        m.freeze()
        assert m[0] == 5
        assert bytes(m.mmap()[:8]) == (5).to_bytes(8, "little")
        with pytest.raises(EBPFError, match="read-only"):
            m[0] = 6
        with Map.from_id(m.info().id) as again:  # frozen elsewhere: maps read-only
            assert again[0] == 5


def test_mmap_array_with_4_byte_values() -> None:
    with create_array_map(4, value_size=4, mmapable=True) as m:
        m[2] = 0xFFFFFFFF
        assert m[2] == 0xFFFFFFFF and m[1] == 0
        assert m.lookup_bytes((2).to_bytes(4, "little")) == b"\xff" * 4


# -- memlock -------------------------------------------------------------------------------------
@pytest.mark.parametrize("version,raised", [((5, 10, 0), True), ((5, 11, 0), False), ((6, 18, 0), False)])
def test_memlock_is_raised_once_on_old_kernels(monkeypatch: pytest.MonkeyPatch, version: tuple[int, int, int],
                                               raised: bool) -> None:
    calls: list[tuple[int, tuple[int, int]]] = []
    monkeypatch.setattr(create_mod, "kernel_version", lambda: version)
    monkeypatch.setattr(resource, "setrlimit", lambda which, lim: calls.append((which, lim)))
    monkeypatch.setattr(create_mod, "_memlock_done", False)
    with create_hash_map(2), create_hash_map(2):
        pass
    expected = [(resource.RLIMIT_MEMLOCK, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))] if raised else []
    assert calls == expected


def test_bad_kind_input_does_not_leak() -> None:
    before = open_fds()
    for make in (lambda: create_stack_map(0), lambda: create_lpm_trie_map(4, key_size=4),
                 lambda: create_array_of_maps(2, MapSpec("hash", 4, 4, 0)),
                 lambda: create_percpu_hash_map(4, value_size=8, value_codec=codecs.u32)):
        with pytest.raises(EBPFError):
            make()
    assert open_fds() == before
    _ = os


@pytest.mark.parametrize("map_type", ["task_storage", "sk_storage", "inode_storage", "cgrp_storage"])
def test_local_storage_maps_are_sized_by_their_owners(map_type: str) -> None:
    # The kernel wants max_entries 0, BPF_F_NO_PREALLOC and BTF key/value types for these.
    from ebpf.core.btf.spec import map_btf

    require(have_map_type, map_type)  # cgrp_storage is newer (6.2) than the others
    spec, key_id, value_id = map_btf("int", "u64")
    with spec.load() as handle, create_map(
        map_type=map_type, key_size=4, value_size=8, max_entries=0, flags="no_prealloc",
        btf=handle, btf_key_type_id=key_id, btf_value_type_id=value_id,
    ) as m:
        assert m.info().max_entries == 0 and m.map_type.lower_name == map_type
    with pytest.raises(EBPFError, match="sized by their owners"):
        create_map(map_type=map_type, key_size=4, value_size=8, max_entries=16, flags="no_prealloc")
