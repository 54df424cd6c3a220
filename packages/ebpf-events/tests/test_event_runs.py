"""The readers' run-at-a-time fast paths on the real kernel: records of mixed sizes, limits inside a run,
a callback raising inside a run.  Every record carries a sequence number, so a record lost or delivered
twice shows."""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from typing import Any

import pytest
from ebpf.core import asm
from ebpf.core.maps import create_array_map, create_ringbuf_map
from ebpf.core.programs import load_program
from ebpf.events.perf import PerfBuffer, create_perf_event_array
from ebpf.events.ringbuf import RingBuffer

pytestmark = pytest.mark.privileged
R0, R1, R2, R3, R4, R5, R6, R7, R10 = asm.R0, asm.R1, asm.R2, asm.R3, asm.R4, asm.R5, asm.R6, asm.R7, asm.R10
CURRENT_CPU = 0xFFFFFFFF
# (record size, how many) in the order produced: long runs, single records, a size coming back
PATTERN = [(16, 50), (24, 3), (16, 1), (40, 1), (16, 1), (24, 200), (16, 2), (40, 70)]


def seq_program(out: Any, counter: Any, size: int, perf: bool) -> Any:
    """XDP: seq = ++counter[0]; emit {seq, 1, 2, ...} (``size`` bytes) to the ring buffer or perf array ``out``."""
    buf = -(8 + size)
    insns = [
        asm.mov64(R6, R1), asm.st_mem("w", R10, -4, 0), asm.ld_map_fd(R1, counter), asm.mov64(R2, R10),
        asm.add64(R2, -4), asm.call("map_lookup_elem"), asm.jeq(R0, 0, "out"),
        asm.ldx_mem("dw", R7, R0, 0), asm.add64(R7, 1), asm.stx_mem("dw", R0, R7, 0),
        asm.stx_mem("dw", R10, R7, buf), *(asm.st_mem("dw", R10, buf + 8 * i, i) for i in range(1, size // 8)),
    ]
    if perf:
        insns += [asm.mov64(R1, R6), asm.ld_map_fd(R2, out), asm.ld_imm64(R3, CURRENT_CPU), asm.mov64(R4, R10),
                  asm.add64(R4, buf), asm.mov64(R5, size), asm.call("perf_event_output")]
    else:
        insns += [asm.ld_map_fd(R1, out), asm.mov64(R2, R10), asm.add64(R2, buf), asm.mov64(R3, size),
                  asm.mov64(R4, 0), asm.call("ringbuf_output")]
    insns += [asm.label("out"), asm.mov64(R0, 2), asm.exit_()]
    return load_program(prog_type="xdp", insns=insns, name=f"seq{size}", maps=(out, counter))


@pytest.fixture
def one_cpu() -> Iterator[None]:
    """Keep this process on one CPU: perf samples go to the ring of the CPU that ran the program."""
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(before)})
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def produce(progs: dict[int, Any]) -> list[tuple[int, int]]:
    """Run the programs in PATTERN order; the expected (seq, size) of every record."""
    expected: list[tuple[int, int]] = []
    for size, count in PATTERN:
        progs[size].test_run(bytes(64), repeat=count)
        expected += [(len(expected) + 1 + i, size) for i in range(count)]
    return expected


def decode(record: Any, perf: bool) -> tuple[int, int]:
    """(seq, size) of a record; the rest of its words must be 1, 2, ..."""
    data = bytes(record)
    if perf:  # the kernel pads samples so that 4 + len(data) is a multiple of 8: 4 bytes here
        data = data[:-4]
    words = struct.unpack(f"<{len(data) // 8}Q", data)
    assert list(words[1:]) == list(range(1, len(words)))
    return words[0], len(data)


@pytest.fixture(params=["ringbuf", "perf"])
def source(request: pytest.FixtureRequest, one_cpu: None) -> Iterator[tuple[Any, dict[int, Any], bool]]:
    perf = request.param == "perf"
    with create_array_map(1, value_size=8, name="seq_counter") as counter:
        out = create_perf_event_array(name="seq_perf") if perf else create_ringbuf_map(1 << 16, name="seq_rb")
        with out:
            progs = {size: seq_program(out, counter, size, perf) for size, _ in PATTERN}
            try:
                yield out, progs, perf
            finally:
                for p in progs.values():
                    p.close()


def reader(out: Any, perf: bool, **kw: Any) -> Any:
    return PerfBuffer(out, buffer_pages=16, **kw) if perf else RingBuffer(out, **kw)


@pytest.mark.parametrize("zero_copy", [False, True])
def test_mixed_sizes_in_order_with_limits(source: tuple[Any, dict[int, Any], bool], zero_copy: bool) -> None:
    out, progs, perf = source
    opts = {} if perf else {"zero_copy": zero_copy}
    with reader(out, perf, **opts) as rb:
        expected = produce(progs)
        got: list[tuple[int, int]] = []
        # limits that end inside runs and on single records
        for limit in (37, 14, 1, 1, 100):
            assert rb.consume(lambda r: got.append(decode(r, perf)), max_events=limit) == limit
        assert rb.consume(lambda r: got.append(decode(r, perf))) == len(expected) - 153
        assert got == expected
        expected = produce(progs)
        batch = rb.read_batch(60) + rb.read_batch()
        assert [decode(r, perf) for r in batch] == [(seq + len(got), size) for seq, size in expected]
        assert rb.read_batch() == []


def test_callback_raising_inside_a_run_consumes_that_record_only(source: tuple[Any, dict[int, Any], bool]) -> None:
    out, progs, perf = source
    seen: list[int] = []

    def callback(record: Any) -> None:
        seq = decode(record, perf)[0]
        seen.append(seq)
        if seq in (120, 121, 300):
            raise ValueError(f"bad record {seq}")

    with reader(out, perf) as rb:
        expected = produce(progs)
        for bad in (120, 121, 300):
            with pytest.raises(ValueError, match=f"bad record {bad}"):
                rb.consume(callback)
        assert rb.consume(callback) == len(expected) - 300
        assert seen == [seq for seq, _ in expected]  # none lost, none twice
        assert rb.consume(callback) == 0


def test_space_is_freed_during_a_long_drain(source: tuple[Any, dict[int, Any], bool]) -> None:
    """A full ring drained by one call: records produced from inside the callback find room, because
    the reader publishes its position run by run, not only when the drain ends."""
    out, progs, perf = source
    seen: list[int] = []

    def callback(record: Any) -> None:
        seen.append(decode(record, perf)[0])
        if len(seen) == 100:
            progs[16].test_run(bytes(64), repeat=50)  # seq 5001..5050, only if space was freed

    with reader(out, perf) as rb:
        progs[16].test_run(bytes(64), repeat=5000)  # far more than the 64 KiB ring holds
        while rb.consume(callback):
            pass
        capacity = len(seen) - 50
        assert 1000 < capacity < 5000
        assert seen == [*range(1, capacity + 1), *range(5001, 5051)]
