"""The user ring buffer against the real kernel: Python produces, a tracepoint program drains with
``bpf_user_ringbuf_drain`` (run by this process's getppid() calls) and pushes each sample's first
u64 into a queue map, so the test sees what the kernel saw, in order."""

from __future__ import annotations

import os
import struct
import time
from collections.abc import Iterator
from typing import Any

import pytest
from ebpf.core import asm
from ebpf.core.asm import DW, R0, R1, R2, R3, R4, R5, R6, R10
from ebpf.core.errors import EBPFError, MapFullError
from ebpf.core.features import have_helper, have_map_type
from ebpf.core.maps import Map, create_array_map, create_map, create_queue_map, create_ringbuf_map
from ebpf.core.programs import load_program
from ebpf.core.testing import require
from ebpf.events.tracing import attach_tracepoint
from ebpf.events.userringbuf import HEADER_SIZE, UserRingBuffer

pytestmark = pytest.mark.privileged
RING = 4096


def drain_program(urb: Map, seen: Map, drained: Map) -> Any:
    """On this process's getppid(): drain ``urb``; each sample's first u64 goes to the ``seen`` queue;
    ``drained[0]`` += what the drain call returned."""
    insns = [
        asm.call("get_current_pid_tgid"), asm.rsh64(R0, 32), asm.jne(R0, os.getpid(), "out"),
        asm.ld_map_fd(R1, urb), asm.ld_func(R2, "cb"), asm.mov64(R3, 0), asm.mov64(R4, 0),
        asm.call("user_ringbuf_drain"), asm.mov64(R6, R0),
        asm.mov64(R1, 0), asm.stx_mem("W", R10, R1, -4),
        asm.ld_map_fd(R1, drained), asm.mov64(R2, R10), asm.add64(R2, -4), asm.call("map_lookup_elem"),
        asm.jeq(R0, 0, "out"), asm.atomic_add(DW, R0, R6),
        asm.label("out"), asm.mov64(R0, 0), asm.exit_(),
        # long cb(struct bpf_dynptr *sample, void *ctx)
        asm.label("cb"), asm.mov64(R3, R1),
        asm.mov64(R1, R10), asm.add64(R1, -8), asm.mov64(R2, 8), asm.mov64(R4, 0), asm.mov64(R5, 0),
        asm.call("dynptr_read"), asm.jne(R0, 0, "stop"),
        asm.ld_map_fd(R1, seen), asm.mov64(R2, R10), asm.add64(R2, -8), asm.mov64(R3, 0),
        asm.call("map_push_elem"), asm.mov64(R0, 0), asm.exit_(),
        asm.label("stop"), asm.mov64(R0, 1), asm.exit_(),
    ]
    return load_program(prog_type="tracepoint", insns=insns, name="urb_drain", **func_info(insns, "main", "cb"))


def func_info(insns: list[Any], *labels: str) -> dict[str, Any]:
    """BTF and func_info naming each function (the program at slot 0, then each callback label):
    the verifier wants them for programs with callbacks."""
    from ebpf.core.asm.builder import _label_positions, flatten
    from ebpf.core.btf.builder import Builder
    from ebpf.core.btf.load import load_btf
    from ebpf.core.btf.types import Linkage

    slots = _label_positions(flatten(insns))
    b = Builder()
    long_t = b.add_int("long", 8)
    ptr = b.add_pointer(0)
    records = b""
    for i, name in enumerate(labels):
        proto = b.add_func_proto(long_t, [("a", ptr), ("b", ptr)] if i else [("ctx", ptr)])
        fn = b.add_func(name, proto, Linkage.STATIC if i else Linkage.GLOBAL)
        records += struct.pack("<II", slots[name] if i else 0, fn)
    return {"btf": load_btf(b.encode()), "func_info": records, "func_info_rec_size": 8}


@pytest.fixture
def setup() -> Iterator[tuple[UserRingBuffer, Map, Map]]:
    require(have_map_type, "user_ringbuf")
    require(have_helper, "tracepoint", "user_ringbuf_drain")
    with create_map(map_type="user_ringbuf", key_size=0, value_size=0, max_entries=RING, name="urb") as urb, \
            create_queue_map(1024, value_size=8, name="urb_seen") as seen, \
            create_array_map(1, value_size=8, name="urb_cnt") as drained, \
            drain_program(urb, seen, drained) as prog, \
            attach_tracepoint(prog, "syscalls:sys_enter_getppid"), UserRingBuffer(urb) as rb:
        yield rb, seen, drained


def popped(queue: Map) -> list[int]:
    out = []
    while (v := queue.pop()) is not None:
        out.append(v)
    return out


def test_every_sample_seen_once_in_order(setup: tuple[UserRingBuffer, Map, Map]) -> None:
    rb, seen, drained = setup
    for i in range(50):
        rb.write(struct.pack("<Q", 1000 + i) + bytes(i % 3 * 8))  # 8, 16 or 24 bytes
    s = rb.reserve(8)
    s.data[:] = struct.pack("<Q", 1)
    s.discard()  # skipped by the kernel
    rb.write(struct.pack("<Q", 2000))
    assert popped(seen) == []  # nothing drains until the program runs
    os.getppid()
    assert popped(seen) == [*range(1000, 1050), 2000]
    assert drained[0] == 51
    os.getppid()
    assert popped(seen) == [] and drained[0] == 51  # consumed once
    assert rb.free_space() == RING


def test_a_reserved_sample_blocks_the_drain_until_submitted(setup: tuple[UserRingBuffer, Map, Map]) -> None:
    rb, seen, _ = setup
    rb.write(struct.pack("<Q", 7))
    pending = rb.reserve(8)
    rb.write(struct.pack("<Q", 9))
    os.getppid()
    assert popped(seen) == [7]  # the kernel stops at the busy sample
    pending.data[:] = struct.pack("<Q", 8)
    pending.submit()
    os.getppid()
    assert popped(seen) == [8, 9]


def test_full_ring(setup: tuple[UserRingBuffer, Map, Map]) -> None:
    rb, seen, drained = setup
    per = 8 + HEADER_SIZE
    for i in range(RING // per):
        rb.write(struct.pack("<Q", i))
    assert rb.free_space() == 0
    with pytest.raises(MapFullError):
        rb.write(struct.pack("<Q", 99))
    start = time.monotonic()
    with pytest.raises(MapFullError):
        rb.reserve(8, timeout=0.2)  # waits, bounded
    assert time.monotonic() - start < 5
    os.getppid()
    assert popped(seen) == list(range(RING // per))
    rb.write(struct.pack("<Q", 99))  # room again
    os.getppid()
    assert popped(seen) == [99] and drained[0] == RING // per + 1


def test_bad_input() -> None:
    require(have_map_type, "user_ringbuf")
    with create_ringbuf_map(4096, name="urb_wrong") as wrong, pytest.raises(EBPFError, match="user_ringbuf map"):
        UserRingBuffer(wrong)
    with create_map(map_type="user_ringbuf", key_size=0, value_size=0, max_entries=RING, name="urb2") as urb, \
            UserRingBuffer(urb) as rb, UserRingBuffer(urb) as other:
        for size in (0, -1, True, "8", RING):
            with pytest.raises(EBPFError):
                rb.reserve(size)  # type: ignore[arg-type]
        s = rb.reserve(8)
        with pytest.raises(EBPFError, match="not a sample reserved from this"):
            other.submit(s)
        s.submit()
        with pytest.raises(EBPFError, match="already submitted"):
            s.discard()
        with pytest.raises(EBPFError):
            rb.write(b"")
        left = rb.reserve(16)
        rb.close()  # discards what is still reserved
        assert left.done
        with pytest.raises(EBPFError, match="closed"):
            rb.write(b"12345678")
