"""Contexts from tracefs formats, perf event output, and what a kernel program sees of its context."""

from __future__ import annotations

import os
import tempfile

import pytest
from ebpf.lang import (
    ArrayMap,
    BloomFilter,
    HashMap,
    PerfEventArray,
    QueueMap,
    StackMap,
    Struct,
    bpf,
    char,
    kernel,
    load,
    u8,
    u16,
    u32,
    u64,
)
from ebpf.lang import ctx_types as ct

pytestmark = pytest.mark.privileged

flags_seen = HashMap(u32, u64, max_entries=16)
perf_events = PerfEventArray()


class Hello(Struct):
    pid: u32
    comm: char[16]
    magic: u64


@kernel("tracepoint/syscalls/sys_enter_openat")
def openat_flags(ctx: ct.tracepoint("syscalls", "sys_enter_openat")) -> int:
    if bpf.get_current_pid_tgid() >> 32 == TARGET:
        flags_seen[u32(ctx.dfd)] = ctx.flags
    return 0


@kernel("tracepoint/syscalls/sys_enter_openat")
def openat_default(ctx) -> int:  # no annotation: the section's tracepoint format
    if bpf.get_current_pid_tgid() >> 32 == TARGET:
        flags_seen[1000] = ctx.flags | 1
    return 0


@kernel("tracepoint/syscalls/sys_enter_getppid")
def hello(ctx: ct.trace_event_raw_sys_enter) -> int:
    pid = bpf.get_current_pid_tgid() >> 32
    if pid != TARGET:
        return 0
    ev = Hello(magic=0x1122334455)
    ev.pid = pid
    bpf.get_current_comm(ev.comm)
    perf_events.output(ev)
    return 0


class EthHdr(Struct):
    dst: u8[6]
    src: u8[6]
    proto: u16


@kernel("tc")
def tc_proto(ctx: ct.__sk_buff) -> int:
    eth = ctx.header(EthHdr, 0)
    if eth is None:
        return 0
    return bpf.ntohs(eth.proto) + ctx.len * 0x10000


TARGET = os.getpid()


def test_tracepoint_format_fields() -> None:
    layout = ct.tracepoint("sched", "sched_switch").layout()
    assert [(name, repr(t), off) for name, t, off in layout.fields if name in ("prev_comm", "prev_pid")] == [
        ("prev_comm", "char[16]", 8), ("prev_pid", "i32", 24)]
    with pytest.raises(KeyError, match="tracepoint nosuch/event has no format in tracefs"):
        ct.tracepoint("nosuch", "event").layout()


def test_tracepoint_context_fields_reach_the_program() -> None:
    with load([openat_flags, openat_default]) as coll, tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "f")
        with coll.programs["openat_flags"].attach(), coll.programs["openat_default"].attach():
            fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o600)
            os.close(fd)
        want = os.O_CREAT | os.O_WRONLY | os.O_EXCL | os.O_CLOEXEC  # Python adds O_CLOEXEC
        seen = dict(coll.maps["flags_seen"].items())
    dfd = (-100) & 0xFFFFFFFF  # AT_FDCWD, as a u32 key
    assert seen.get(dfd) == want
    assert seen.get(1000) == want | 1


def test_perf_event_output() -> None:
    from ebpf.events.perf import PerfBuffer

    with load([hello]) as coll:
        received: list[Hello] = []
        with PerfBuffer(coll.maps["perf_events"], lambda data: received.append(Hello.decode(bytes(data)))) as pb, \
                coll.programs["hello"].attach():
            for _ in range(3):
                os.getppid()
            pb.poll(timeout_ms=500)
            pb.poll(timeout_ms=0)
    assert len(received) == 3
    assert {(e.pid, e.magic) for e in received} == {(os.getpid(), 0x1122334455)}
    assert all(e.comm for e in received)


def test_sk_buff_context_and_packet_headers() -> None:
    with load([tc_proto]) as coll:
        prog = coll.programs["tc_proto"]
        assert prog.test_run(bytes(12) + b"\x86\xdd" + bytes(50)).retval == 0x86DD + 64 * 0x10000
        assert prog.test_run(bytes(12) + b"\x08\x06" + bytes(2)).retval == 0x0806 + 16 * 0x10000  # ARP


queue = QueueMap(u32, max_entries=8)
lifo = StackMap(u64, max_entries=8)
seen_before = BloomFilter(u32, max_entries=64)
results = ArrayMap(u64, max_entries=8)


@kernel("xdp")
def queues(ctx: ct.xdp_md) -> int:
    queue.push(ctx.ingress_ifindex + 10)
    queue.push(7)
    lifo.push(1)
    lifo.push(2)
    results[0] = queue.pop(99)
    results[1] = queue.peek(99)
    results[2] = lifo.pop(99)
    results[3] = lifo.pop(99)
    results[4] = lifo.pop(99)       # empty: the default
    seen_before.push(42)
    results[5] = 42 in seen_before
    if 43 in seen_before:
        results[6] = 1
    return 2


def test_queue_stack_and_bloom_filter() -> None:
    with load([queues]) as coll:
        assert coll.programs["queues"].test_run(bytes(64)).retval == 2
        got = [coll.maps["results"][k] for k in range(7)]
        left = [coll.maps["queue"].pop(), coll.maps["queue"].pop()]
    assert got[:6] == [10 + 1, 7, 2, 1, 99, 1]  # test_run's packet arrives on lo (ifindex 1)
    assert got[6] in (0, 1)  # a bloom filter may say yes to a value never added
    assert left == [7, None]
