"""Programs that stress the code generator: many locals (stack homes), pointers spilled to the
stack and checked there, struct values in maps, ring buffer output of a stack struct, signed
narrow types, headers at variable offsets -- each run on the kernel and checked."""

from __future__ import annotations

import pytest
from ebpf.lang import ArrayMap, HashMap, Map, RingBuf, Struct, bpf, char, i8, i16, i32, kernel, load, u8, u16, u32, u64
from ebpf.lang import ctx_types as ct

pytestmark = pytest.mark.privileged


class Point(Struct):
    x: i32
    y: i32
    tag: u8


class Hdr(Struct):
    kind: u8
    skip: u8
    value: u16


points = HashMap(u32, Point, max_entries=16)
ints = HashMap(u32, u64, max_entries=16)
res = ArrayMap(u64, max_entries=16)
small = ArrayMap(u32, max_entries=4)
rb = RingBuf(4096)


@kernel("xdp")
def many_locals(ctx: ct.xdp_md) -> int:
    a = u64(ctx.ingress_ifindex)
    b = a + 1
    c = b + 1
    d = c + 1
    e = d + 1
    f = e + 1
    g = f + 1
    p1 = points.lookup(1)
    p2 = points.lookup(2)
    p3 = points.lookup(3)
    total: u64 = a + b + c + d + e + f + g
    if p1 is not None:
        total += u32(p1.x)
    if p2 is not None and p3 is not None:
        total += u32(p2.y + p3.y)
    res[0] = total
    return 2


@kernel("xdp")
def structs(ctx: ct.xdp_md) -> int:
    pt = Point(x=-5, y=7, tag=3)
    points[10] = pt
    pt.x = pt.x * 2
    points[11] = pt
    q = points.lookup(10)
    if q is None:
        return 1
    q.y += 100
    rb.output(pt)
    res[1] = 10 in points
    res[2] = 12 in points
    del points[11]
    res[3] = 11 in points
    if q.x < 0:
        res[4] = 1
    n: i8 = -3
    m: i16 = n * 100
    res[5] = m
    res[6] = m < -299
    return 2


@kernel("xdp")
def variable_header(ctx: ct.xdp_md) -> int:
    first = ctx.header(Hdr, 0)
    if first is None:
        return 1
    second = ctx.header(Hdr, 4 + first.skip * 4)
    if second is None:
        return 1
    res[7] = second.kind
    res[8] = second.value
    for i in range(4):
        if i == first.kind:
            small[i] = 1
    return 2


@pytest.fixture(scope="module")
def coll() -> object:
    with load([many_locals, structs, variable_header]) as c:
        yield c


def test_many_locals_and_spilled_pointers(coll: object) -> None:
    c = coll
    pts = c.maps["points"]  # type: ignore[attr-defined]
    pts.update_bytes((1).to_bytes(4, "little"), Point(x=1000, y=0, tag=0).encode())
    pts.update_bytes((2).to_bytes(4, "little"), Point(x=0, y=20, tag=0).encode())
    assert c.programs["many_locals"].test_run(bytes(64)).retval == 2  # type: ignore[attr-defined]
    ifindex = 1
    base = sum(ifindex + k for k in range(7))
    assert c.maps["res"][0] == base + 1000  # type: ignore[attr-defined]  # p3 missing: p2 + p3 skipped
    pts.update_bytes((3).to_bytes(4, "little"), Point(x=0, y=-5, tag=0).encode())
    c.programs["many_locals"].test_run(bytes(64))  # type: ignore[attr-defined]
    assert c.maps["res"][0] == base + 1000 + 15  # type: ignore[attr-defined]


def test_struct_values_ringbuf_and_signed_types(coll: object) -> None:
    from ebpf.events.ringbuf import RingBuffer

    c = coll
    assert c.programs["structs"].test_run(bytes(64)).retval == 2  # type: ignore[attr-defined]
    got = Point.decode(c.maps["points"].lookup_bytes((10).to_bytes(4, "little")))  # type: ignore[attr-defined]
    assert (got.x, got.y, got.tag) == (-5, 107, 3)
    assert c.maps["points"].lookup_bytes((11).to_bytes(4, "little")) is None  # type: ignore[attr-defined]
    assert [c.maps["res"][k] for k in range(1, 7)] == [1, 0, 0, 1, (-300) & (2**64 - 1), 1]  # type: ignore[attr-defined]
    events: list[Point] = []
    with RingBuffer(c.maps["rb"], lambda r: events.append(Point.decode(bytes(r)))) as reader:  # type: ignore[attr-defined]
        reader.poll(timeout_ms=0)
    assert [(e.x, e.y, e.tag) for e in events] == [(-10, 7, 3)]


@pytest.mark.parametrize(("packet", "verdict", "kind", "value"), [
    (bytes([2, 1, 0, 0, 0, 0, 0, 0, 9, 0, 0x34, 0x12]) + bytes(52), 2, 9, 0x1234),  # second header at 8
    (bytes([1, 0, 0, 0, 7, 0, 0xCD, 0xAB]) + bytes(56), 2, 7, 0xABCD),               # second header at 4
])
def test_headers_at_variable_offsets(coll: object, packet: bytes, verdict: int, kind: int, value: int) -> None:
    c = coll
    assert c.programs["variable_header"].test_run(packet).retval == verdict  # type: ignore[attr-defined]
    assert (c.maps["res"][7], c.maps["res"][8]) == (kind, value)  # type: ignore[attr-defined]
    assert c.maps["small"][packet[0]] == 1  # type: ignore[attr-defined]


class Named(Struct):
    comm: char[16]
    tag: u8[3]


names = ArrayMap(u64, max_entries=4)


@kernel("tracepoint/syscalls/sys_enter_getppid")
def by_comm(ctx: ct.trace_event_raw_sys_enter) -> int:
    n = Named()
    bpf.get_current_comm(n.comm)
    if n.comm == b"lang-comm-test":
        names[0] = 1
    if n.comm != "lang-comm-test":   # str works too
        names[1] = 1
    if n.comm == b"lang-comm":       # a prefix is not equal: the NUL must follow
        names[2] = 1
    task: ct.task_struct = bpf.get_current_task()
    if task.comm == b"lang-comm-test":   # kernel memory: compared through probe reads
        names[3] = 1
    return 0


def test_string_comparisons() -> None:
    import ctypes
    import os
    import threading

    def named_thread(name: bytes) -> None:
        ctypes.CDLL(None).prctl(15, name, 0, 0, 0)  # PR_SET_NAME: this thread's comm
        os.getppid()

    with load([by_comm]) as c, c.programs["by_comm"].attach():
        for name in (b"lang-comm-test", b"lang-other"):
            t = threading.Thread(target=named_thread, args=(name,))
            t.start()
            t.join()
        got = [c.maps["names"][k] for k in range(4)]
    assert got == [1, 1, 0, 1]


progs = Map("prog_array", u32, u32, 4)


@kernel("xdp")
def first(ctx: ct.xdp_md) -> int:
    bpf.tail_call(ctx, progs, 1)
    return 2          # reached only when slot 1 is empty


@kernel("xdp")
def second(ctx: ct.xdp_md) -> int:
    return 1


def test_tail_call_through_a_program_array() -> None:
    with load([first, second]) as c:
        prog = c.programs["first"]
        assert prog.test_run(bytes(64)).retval == 2
        c.maps["progs"][1] = c.programs["second"].fd
        assert prog.test_run(bytes(64)).retval == 1


def test_map_argument_must_be_a_map() -> None:
    from ebpf.lang import LangError

    @kernel("xdp")
    def bad(ctx: ct.xdp_md) -> int:
        bpf.tail_call(ctx, 5, 1)
        return 2

    with pytest.raises(LangError, match=r"argument 2 of bpf.tail_call\(\) must be a map declared at module level"):
        bad.compile()


class Slots(Struct):
    hits: u64[8]
    small: u16[4]


slot_stats = HashMap(u32, Slots, max_entries=2)


@kernel("xdp")
def run_time_index(ctx: ct.xdp_md) -> int:
    i = res.get(9, 0)                # a run-time index
    s = slot_stats.lookup(0)
    if s is None:
        return 1
    s.hits[i] += 5                   # map value: atomic add, skipped when i >= 8
    s.small[i & 3] = u16(i + 100)
    local = Slots()
    local.hits[i] = 7
    res[10] = local.hits[i] + s.small[i]   # out of range reads 0
    return 2


def test_run_time_indexes() -> None:
    with load([run_time_index]) as c:
        c.maps["slot_stats"].update_bytes(bytes(4), bytes(Slots.size))
        seen = []
        for i in (3, 3, 7, 9, 1000):
            c.maps["res"][9] = i
            assert c.programs["run_time_index"].test_run(bytes(64)).retval == 2
            seen.append(c.maps["res"][10])
        got = Slots.decode(c.maps["slot_stats"].lookup_bytes(bytes(4)))
    assert seen == [7 + 103, 7 + 103, 7, 0, 0]
    assert got.hits == [0, 0, 0, 10, 0, 0, 0, 5]
    assert got.small == [1100, 109, 0, 107]


class Inner(Struct):
    a: u32
    b: u16


class Outer(Struct):
    tag: u32
    inner: Inner
    more: u8[5]


outers = HashMap(u32, Outer, max_entries=4)


@kernel("xdp")
def copies(ctx: ct.xdp_md) -> int:
    o = Outer(tag=7)
    o.inner.a = 11
    o.inner.b = 22
    o.more[4] = 9
    snap = o                  # a copy, not an alias
    o.tag = 8
    outers[1] = snap
    p = outers.lookup(1)
    if p is None:
        return 1
    kept = p.inner            # a copy of a map value's member
    p.inner.a = 99
    res[11] = kept.a + snap.tag * 1000 + o.tag * 100000
    o.inner = kept            # a member from a struct
    res[12] = o.inner.b + o.more[4]
    return 2


def test_struct_copies() -> None:
    with load([copies]) as c:
        assert c.programs["copies"].test_run(bytes(64)).retval == 2
        assert c.maps["res"][11] == 11 + 7 * 1000 + 8 * 100000
        assert c.maps["res"][12] == 22 + 9
        got = Outer.decode(c.maps["outers"].lookup_bytes((1).to_bytes(4, "little")))
    assert (got.tag, got.inner.a, got.inner.b, list(got.more)) == (7, 99, 22, [0, 0, 0, 0, 9])
