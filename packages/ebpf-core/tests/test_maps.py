"""Hash, array and LRU maps on the real kernel: the dict protocol, flags, batches, errors, threads."""

from __future__ import annotations

import ctypes
import errno
import threading
from collections.abc import Callable, Iterator

import pytest
from ebpf.core import codecs
from ebpf.core._maps import batch as batch_mod
from ebpf.core.errors import BPFSyscallError, EBPFError, KeyNotFoundError, MapFullError
from ebpf.core.maps import Map, MapSpec, create_array_map, create_hash_map, create_lru_hash_map, create_map
from ebpf.core.testing import open_fds
from ebpf.core.types import MapType
from hypothesis import given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.privileged


@pytest.fixture
def hmap() -> Iterator[Map]:
    with create_hash_map(64, key_size=4, value_size=8, name="t_hash") as m:
        yield m


def test_hash_map_dict_protocol(hmap: Map) -> None:
    hmap[1] = 100
    hmap.update(2, 200)
    assert hmap[1] == 100
    assert hmap.lookup(2) == 200
    assert hmap.lookup(3) is None
    assert hmap.lookup(3, default=-1) == -1
    assert 1 in hmap and 3 not in hmap
    assert len(hmap) == hmap.count() == 2
    assert sorted(hmap) == [1, 2]
    assert sorted(hmap.keys()) == [1, 2]
    assert sorted(hmap.values()) == [100, 200]
    assert dict(hmap.items()) == {1: 100, 2: 200}
    del hmap[1]
    hmap.delete(2)
    assert len(hmap) == 0


def test_missing_keys_raise_key_not_found(hmap: Map) -> None:
    with pytest.raises(KeyNotFoundError) as info:
        hmap[5]
    assert isinstance(info.value, KeyError)
    with pytest.raises(KeyNotFoundError):
        del hmap[5]
    with pytest.raises(KeyNotFoundError):
        hmap.delete(5)


def test_update_flags(hmap: Map) -> None:
    hmap.update(1, 1, flags="noexist")
    with pytest.raises(BPFSyscallError) as info:
        hmap.update(1, 2, flags="noexist")
    assert info.value.errno == errno.EEXIST
    hmap.update(1, 3, flags="exist")
    assert hmap[1] == 3
    with pytest.raises(KeyNotFoundError):
        hmap.update(2, 3, flags="exist")
    hmap.update(2, 4, flags="any")
    assert hmap[2] == 4
    with pytest.raises(EBPFError, match="unknown update flag"):
        hmap.update(2, 4, flags="sometimes")
    with pytest.raises(EBPFError):
        hmap.update(2, 4, flags="noexist|exist")


def test_full_map_raises_map_full() -> None:
    with create_hash_map(2) as m:
        m[1] = 1
        m[2] = 2
        with pytest.raises(MapFullError):
            m[3] = 3
        m[2] = 5  # replacing still works


def test_lru_map_evicts_instead_of_failing() -> None:
    with create_lru_hash_map(32, value_size=8) as m:
        for i in range(200):
            m[i] = i
        assert 0 < len(m) <= 32
        assert m[199] == 199


def test_array_map_slots_always_exist() -> None:
    with create_array_map(8, value_size=8) as m:
        assert len(m) == 8
        assert m[3] == 0
        m[3] = 42
        assert m[3] == 42
        assert m.lookup(8) is None
        assert list(m.items())[3] == (3, 42)
        with pytest.raises(BPFSyscallError):
            del m[3]  # array slots cannot be removed
        m.clear()
        assert m[3] == 0


def test_custom_codecs() -> None:
    class Val(ctypes.Structure):
        _fields_ = [("count", ctypes.c_uint64), ("bytes", ctypes.c_uint64)]

    spec = MapSpec("hash", key_size=16, value_size=16, max_entries=8, key_codec=codecs.struct("=4sHH8x"),
                   value_codec=codecs.ctype(Val))
    with create_map(spec) as m:
        m[(b"\x0a\0\0\x01", 80, 6)] = Val(3, 1500)
        got = m[(b"\x0a\0\0\x01", 80, 6)]
        assert (got.count, got.bytes) == (3, 1500)
        assert list(m.keys()) == [(b"\x0a\0\0\x01", 80, 6)]
    with create_hash_map(4, key_size=6, value_size=3) as raw:  # odd sizes: raw bytes
        raw[b"abcdef"] = b"xyz"
        assert raw[b"abcdef"] == b"xyz"
        assert raw.lookup_bytes(b"abcdef") == b"xyz"
        with pytest.raises(EBPFError):
            raw[b"abc"] = b"xyz"
    with create_hash_map(4, key_size=4, value_size=4, key_codec="i32", value_codec=codecs.i32) as signed:
        signed[-5] = -7
        assert signed[-5] == -7
        with pytest.raises(EBPFError):
            signed[2**31] = 0


def test_raw_bytes_access(hmap: Map) -> None:
    key = (7).to_bytes(4, "little")
    hmap.update_bytes(key, (9).to_bytes(8, "little"))
    assert hmap[7] == 9
    assert hmap.lookup_bytes(key) == (9).to_bytes(8, "little")
    hmap.delete_bytes(key)
    assert hmap.lookup_bytes(key) is None


def test_batch_operations(hmap: Map) -> None:
    assert hmap.update_batch({i: i * 10 for i in range(40)}) == 40
    assert dict(hmap.lookup_batch()) == {i: i * 10 for i in range(40)}
    assert dict(hmap.lookup_batch([1, 2, 99])) == {1: 10, 2: 20}
    assert hmap.delete_batch([0, 1, 2, 1000]) == 3
    assert len(hmap) == 37
    drained = dict(hmap.lookup_and_delete_batch([3, 4]))
    assert drained == {3: 30, 4: 40}
    rest = dict(hmap.lookup_and_delete_batch())
    assert rest == {i: i * 10 for i in range(5, 40)}
    assert len(hmap) == 0
    hmap.update_batch([(1, 1), (2, 2)])
    hmap.clear()
    assert len(hmap) == 0


def test_items_of_a_large_map_go_through_several_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(batch_mod, "BATCH_BYTES", 12 * 100)  # 100 entries per batch
    with create_hash_map(5000, value_size=8) as m:
        m.update_batch({i: i + 1 for i in range(1234)})
        assert dict(m.items()) == {i: i + 1 for i in range(1234)}
        assert len(m) == 1234


@pytest.mark.parametrize("err", [errno.EINVAL, batch_mod.ENOTSUPP, errno.EOPNOTSUPP])
def test_batch_fallback_when_kernel_lacks_batch_commands(monkeypatch: pytest.MonkeyPatch, err: int) -> None:
    """A kernel without BPF_MAP_*_BATCH (simulated: the batch commands fail) still gets every operation."""
    real = batch_mod._syscall
    seen: list[int] = []

    def no_batch(nr: int, cmd: int, addr: int, size: int) -> int:
        if cmd in (24, 25, 26, 27):
            seen.append(cmd)
            ctypes.set_errno(err)
            return -1
        return int(real(nr, cmd, addr, size))

    monkeypatch.setattr(batch_mod, "_syscall", no_batch)
    with create_hash_map(64, value_size=8) as m:
        assert m.update_batch({i: i for i in range(20)}) == 20
        assert 26 in seen
        assert not m._state.batch  # remembered: no more batch attempts
        m._state.batch = True
        assert dict(m.items()) == {i: i for i in range(20)}
        m._state.batch = True
        assert m.delete_batch([0, 1, 99]) == 2
        m._state.batch = True
        assert dict(m.lookup_and_delete_batch()) == {i: i for i in range(2, 20)}
        assert len(m) == 0
        assert set(seen) == {24, 25, 26, 27}


def test_batch_errors_other_than_missing_support_are_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    def failing(nr: int, cmd: int, addr: int, size: int) -> int:
        ctypes.set_errno(errno.EFAULT)
        return -1

    monkeypatch.setattr(batch_mod, "_syscall", failing)
    with create_hash_map(8) as m:
        with pytest.raises(BPFSyscallError) as info:
            list(m.items())
        assert info.value.errno == errno.EFAULT


def test_threads_hammering_one_map() -> None:
    with create_hash_map(4096, value_size=8) as m:
        errors: list[BaseException] = []

        def worker(base: int) -> None:
            try:
                for i in range(2000):
                    key = base * 10000 + (i % 500)
                    m[key] = key * 3
                    assert m[key] == key * 3
                    assert m.lookup(base * 10000 + 499 + 1) is None or True
                    if i % 7 == 0:
                        del m[key]
            except BaseException as exc:  # reported to the main thread
                errors.append(exc)

        threads = [threading.Thread(target=worker, args=(t,)) for t in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors
        for key, value in m.items():
            assert value == key * 3


def test_closed_map_refuses_operations() -> None:
    m = create_hash_map(4)
    m[1] = 1
    lookup = m.lookup  # a function captured before close must not reach a reused fd
    m.close()
    m.close()  # idempotent
    assert m.closed
    for op in (lambda: m.lookup(1), lambda: m.update(1, 1), lambda: m.delete(1), lambda: m[1],
               lambda: list(m.items()), lambda: m.fd, lambda: m.update_batch({1: 1}), lambda: lookup(1),
               lambda: m.lookup_bytes(b"\0\0\0\0")):
        with pytest.raises(EBPFError, match="closed"):
            op()


BAD_CREATES: list[tuple[str, Callable[[], object]]] = [
    ("unknown type", lambda: create_map(map_type="no_such_type", key_size=4, value_size=4, max_entries=1)),
    ("unknown flag", lambda: create_hash_map(4, flags="fast")),
    ("unknown flag bits", lambda: create_hash_map(4, flags=1 << 30)),
    ("max_entries 0", lambda: create_hash_map(0)),
    ("max_entries negative", lambda: create_hash_map(-1)),
    ("key size 0", lambda: create_hash_map(4, key_size=0)),
    ("value size negative", lambda: create_hash_map(4, value_size=-4)),
    ("codec size", lambda: create_hash_map(4, key_size=4, key_codec=codecs.u64)),
    ("bad codec", lambda: create_hash_map(4, value_codec=object())),
    ("name not a str", lambda: create_hash_map(4, name=b"x")),  # long or odd names are sanitized (one rule)
    ("max_entries beyond u32", lambda: create_hash_map(2**32)),
    ("mmapable hash", lambda: create_hash_map(4, mmapable=True)),
    ("unknown field", lambda: create_map(map_type="hash", colour="red")),
    ("no map type", lambda: create_map(key_size=4)),
    ("ringbuf size", lambda: create_map(map_type="ringbuf", key_size=0, value_size=0, max_entries=1000)),
    ("of maps without inner", lambda: create_map(map_type="array_of_maps", max_entries=2)),
    ("pin outside bpffs", lambda: create_hash_map(4, pin_path="/tmp/not-bpffs-pin")),
]


@pytest.mark.parametrize("name,make", BAD_CREATES, ids=[n for n, _ in BAD_CREATES])
def test_bad_creation_is_refused_without_leaking(name: str, make: Callable[[], object]) -> None:
    before = open_fds()
    with pytest.raises(EBPFError):
        make()
    assert open_fds() == before


def test_bad_keys_and_values_are_refused_without_leaking(hmap: Map) -> None:
    before = open_fds()
    for key, value in [("1", 1), (1.5, 1), (-1, 1), (2**32, 1), (None, 1), (1, "x"), (1, -1), (1, 2**64), (1, None)]:
        with pytest.raises(EBPFError):
            hmap.update(key, value)
    for key in ["1", 2**40, -3, b"1234"]:
        with pytest.raises(EBPFError):
            hmap.lookup(key)
        with pytest.raises(EBPFError):
            hmap.delete(key)
    with pytest.raises(EBPFError):
        hmap.update_batch({1: "x"})
    with pytest.raises(EBPFError):
        hmap.lookup_bytes(b"12")
    assert len(hmap) == 0
    assert open_fds() == before


def test_map_attributes_and_spec(hmap: Map) -> None:
    assert hmap.map_type is MapType.HASH
    assert (hmap.key_size, hmap.value_size, hmap.max_entries, hmap.name) == (4, 8, 64, "t_hash")
    assert hmap.spec.copy(max_entries=5).max_entries == 5
    assert hmap.fd >= 0
    assert "t_hash" in repr(hmap)
    info = hmap.info()
    assert (info.type, info.key_size, info.value_size, info.max_entries, info.name) == (MapType.HASH, 4, 8, 64, "t_hash")


def test_map_flags_by_name() -> None:
    with create_hash_map(4, flags="no_prealloc") as m:
        assert m.info().flags & 1
    with create_hash_map(4, flags=["no_prealloc", "BPF_F_ZERO_SEED"]) as m:
        assert m.info().flags == 1 | 64


@settings(max_examples=40, deadline=None)
@given(st.dictionaries(st.integers(0, 2**32 - 1), st.integers(0, 2**64 - 1), max_size=50))
def test_round_trip_through_the_kernel(entries: dict[int, int]) -> None:
    with create_hash_map(64, value_size=8) as m:
        for k, v in entries.items():
            m[k] = v
        assert all(m[k] == v for k, v in entries.items())
        assert dict(m.items()) == entries
        assert dict(m.lookup_batch()) == entries
        m.clear()
        assert m.update_batch(entries) == len(entries)
        assert dict(m.items()) == entries


@settings(max_examples=40, deadline=None)
@given(st.binary(min_size=12, max_size=12), st.binary(min_size=5, max_size=5))
def test_raw_round_trip_through_the_kernel(key: bytes, value: bytes) -> None:
    with create_hash_map(4, key_size=12, value_size=5) as m:
        m[key] = value
        assert m[key] == value and list(m.items()) == [(key, value)]


def test_dropped_maps_close_their_fd_without_waiting_for_gc() -> None:
    before = open_fds()
    for make in (lambda: create_hash_map(2), lambda: create_array_map(2, value_size=8, mmapable=True)):
        m = make()
        m[1] = 1
        assert open_fds() != before
        del m  # no reference cycles: the fd goes with the last reference
        assert open_fds() == before
