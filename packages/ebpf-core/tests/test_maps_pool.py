"""The lock-free buffer pool of the map hot path: concurrent use, growth, closing."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from ebpf.core import codecs
from ebpf.core.errors import EBPFError, KeyNotFoundError, MapFullError
from ebpf.core.maps import Map, create_hash_map, create_percpu_hash_map

pytestmark = pytest.mark.privileged

N_THREADS = 8


@pytest.fixture(autouse=True)
def _fast_switching() -> Iterator[None]:
    """Switch threads often, so that interleavings between pop and append really happen."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(old)


def _run(n: int, worker: Callable[[int], None]) -> list[BaseException]:
    errors: list[BaseException] = []
    start = threading.Barrier(n)

    def body(t: int) -> None:
        try:
            start.wait()
            worker(t)
        except BaseException as exc:  # reported to the main thread
            errors.append(exc)

    threads = [threading.Thread(target=body, args=(t,)) for t in range(n)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return errors


def _value(key: int, i: int) -> int:
    # distinct per key and per round: a read that sees another thread's key or value cannot match
    return (key << 32) | (i * 2654435761 & 0xFFFFFFFF)


def _hammer(m: Map, rounds: int, enc: Callable[[int], Any] = lambda v: v) -> list[tuple[int, int, Any, Any]]:
    """8 threads, each on its own keys: update then read back; returns every mismatch seen."""
    bad: list[tuple[int, int, Any, Any]] = []

    def worker(t: int) -> None:
        keys = [t * 1000 + j for j in range(16)]
        for i in range(rounds):
            key = keys[i % len(keys)]
            want = enc(_value(key, i))
            m.update(key, want)
            got = m.lookup(key)
            if got != want:
                bad.append((t, key, want, got))
            if i % 5 == 4:
                m.delete(key)
                if m.lookup(key) is not None:
                    bad.append((t, key, None, m.lookup(key)))

    errors = _run(N_THREADS, worker)
    assert not errors, errors[:3]
    return bad


def test_eight_threads_read_back_their_own_values() -> None:
    with create_hash_map(4096, key_size=4, value_size=8, name="t_pool") as m:
        bad = _hammer(m, 3000)
        assert not bad, bad[:5]
        # the pool only grows with concurrency: never more sets than threads
        assert 1 <= len(m._bufs.sets) <= N_THREADS
        assert len(m._bufs.free) == len(m._bufs.sets)


def _same(k: int) -> Any:
    return k


@pytest.mark.parametrize("key_codec, key_of, value_codec, enc", [
    (codecs.struct("=I"), _same, codecs.struct("=Q"), _same),  # struct1
    (codecs.struct("=HH"), lambda k: (k >> 16, k & 0xFFFF), codecs.struct("=II"),
     lambda v: (v >> 32, v & 0xFFFFFFFF)),  # structN
    (codecs.u32, _same, codecs.raw(8), lambda v: v.to_bytes(8, "little")),  # generic
    (codecs.i32, lambda k: -k, codecs.i64, lambda v: -v),  # signed ints
], ids=["struct1", "structN", "generic", "sint"])
def test_every_codec_kind_is_thread_safe(key_codec: Any, key_of: Callable[[int], Any], value_codec: Any,
                                         enc: Callable[[int], Any]) -> None:
    with create_hash_map(4096, key_size=4, value_size=8, key_codec=key_codec,
                         value_codec=value_codec) as m:
        bad: list[Any] = []

        def worker(t: int) -> None:
            for i in range(1500):
                k = t * 1000 + i % 16
                want = enc(_value(k, i))
                m.update(key_of(k), want)
                got = m.lookup(key_of(k))
                if got != want:
                    bad.append((k, want, got))

        assert not _run(N_THREADS, worker)
        assert not bad, bad[:5]


def test_percpu_values_are_thread_safe() -> None:
    with create_percpu_hash_map(1024, key_size=4, value_size=8) as m:
        bad: list[Any] = []

        def worker(t: int) -> None:
            for i in range(1000):
                k = t * 100 + i % 8
                want = [_value(k, i) + cpu for cpu in range(m.ncpus)]
                m.update(k, want)
                got = m.lookup(k)
                if got != want:
                    bad.append((k, want, got))

        assert not _run(N_THREADS, worker)
        assert not bad, bad[:5]
        assert len(m._bufs.sets) <= N_THREADS


def test_errors_and_flags_after_the_pool_grew() -> None:
    with create_hash_map(4, key_size=4, value_size=8) as m:
        assert not _run(N_THREADS, lambda t: [m.lookup(t) for _ in range(200)])
        with pytest.raises(EBPFError, match="bad map key"):
            m.update(-1, 1)
        with pytest.raises(EBPFError, match="bad map value"):
            m.update(1, 1 << 64)
        with pytest.raises(KeyNotFoundError):
            m.delete(3)
        with pytest.raises(KeyNotFoundError):
            m.update(3, 3, flags="exist")
        m.update(3, 3, flags="noexist")
        m.update(3, 4, flags="exist")
        assert m[3] == 4
        for k in (0, 1, 2):
            m[k] = k
        with pytest.raises(MapFullError):
            m.update(9, 9)
        m.delete(3)
        assert 3 not in m
        # every set went back to the pool, also after the errors
        assert len(m._bufs.free) == len(m._bufs.sets)


def test_close_while_threads_hammer() -> None:
    m = create_hash_map(1024, key_size=4, value_size=8)
    ops = (m.lookup, m.update, m.delete)  # functions captured before close must not reach a reused fd
    started = threading.Barrier(N_THREADS + 1)
    stop = threading.Event()
    errors: list[BaseException] = []

    def worker(t: int) -> None:
        lookup, update, _ = ops
        started.wait()
        try:
            while not stop.is_set():
                update(t, t)
                lookup(t)
        except EBPFError as exc:
            if "closed" not in str(exc):
                errors.append(exc)
        except BaseException as exc:  # reported to the main thread
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(N_THREADS)]
    for th in threads:
        th.start()
    started.wait()
    m.close()
    stop.set()
    for th in threads:
        th.join()
    assert not errors, errors[:3]
    pool = m._bufs
    assert all(b.attr.map_fd == b.flag_attr.map_fd == b.del_attr.map_fd == 0xFFFFFFFF for b in pool.sets)
    late = pool.new()[7]  # a set allocated after close starts invalid too
    assert late.attr.map_fd == late.del_attr.map_fd == 0xFFFFFFFF
    for op, args in zip(ops, ((1,), (1, 1), (1,))):
        with pytest.raises(EBPFError, match="closed"):
            op(*args)


def test_close_does_not_hang_on_a_lost_set() -> None:
    m = create_hash_map(4, key_size=4, value_size=8)
    m[1] = 1
    lost = m._bufs.new()  # taken and never given back (as if its thread died between pop and try)
    m.close()
    assert lost[7].attr.map_fd == 0xFFFFFFFF
    with pytest.raises(EBPFError, match="closed"):
        m.lookup(1)
