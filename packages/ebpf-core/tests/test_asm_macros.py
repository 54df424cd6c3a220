"""asm.log2, linear_slot, hist_increment and ctx_field: run in the kernel with BPF_PROG_TEST_RUN
(raw_tracepoint programs take their context as bytes, so the test chooses every value)."""

from __future__ import annotations

import struct

import pytest
from ebpf.core import asm
from ebpf.core.asm import R0, R1, R6, R7, R8, R9, R10
from ebpf.core.errors import AsmError
from ebpf.core.maps import create_array_map, create_hash_map, create_percpu_array_map
from ebpf.core.programs import load_program
from hypothesis import given, settings
from hypothesis import strategies as st

VALUES = [0, 1, 2, 3, 4, 5, 7, 8, 1000, 1023, 1024, 65535, 65536, (1 << 32) - 1, 1 << 32, (1 << 63) + 5, (1 << 64) - 1]


def _floor_log2(v: int) -> int:
    return max(v.bit_length() - 1, 0)


def _run(prog: object, *args: int) -> int:
    return prog.test_run(ctx=struct.pack(f"<{len(args)}Q", *args)).retval  # type: ignore[attr-defined]


@pytest.mark.privileged
def test_log2_in_the_kernel_matches_floor_log2() -> None:
    insns = [asm.ldx_mem("dw", R6, R1, 0), *asm.log2(R0, R6, tmp=R7), asm.exit_()]
    with load_program(prog_type="raw_tracepoint", insns=insns) as prog:
        for v in VALUES:
            assert _run(prog, v) == _floor_log2(v), v


def test_log2_has_no_jumps_and_checks_registers() -> None:
    code = asm.log2(R0, R6, tmp=R7)
    assert all(isinstance(i, asm.Instruction) and i.code & 0x07 in (0x07, 0x04) for i in code)  # ALU64/ALU only
    assert asm.log2(R1, R6)[0] == asm.mov64(R0, R6)  # R0 is the default scratch
    with pytest.raises(AsmError, match="tmp="):
        asm.log2(R0, R6)
    with pytest.raises(AsmError, match="different"):
        asm.log2(R6, R6, tmp=R7)
    with pytest.raises(AsmError, match="R10"):
        asm.log2(R1, R10, tmp=R7)
    with pytest.raises(AsmError, match="register"):
        asm.log2(1, R6, tmp=R7)  # type: ignore[arg-type]


@given(st.integers(min_value=0, max_value=(1 << 64) - 1))
@settings(max_examples=300, deadline=None)
def test_log2_arithmetic_property(value: int) -> None:
    """The sequence's arithmetic evaluated over u64 in Python equals floor(log2) for any value."""
    m, v = (1 << 64) - 1, value
    r = ((-(v >> 32)) & m) >> 63 << 5
    v >>= r
    for bits in (4, 3, 2, 1):
        t = (((1 << (1 << bits)) - 1 - v) & m) >> 63 << bits
        v >>= t
        r |= t
    assert r | (v >> 1) == _floor_log2(value)


@pytest.mark.privileged
def test_hist_increment_array_fills_the_right_slots() -> None:
    values = [0, 1, 1, 3, 5, 6, 7, 100, 1000, 1 << 40]
    with create_array_map(64, value_size=8) as hist:
        insns = [asm.ldx_mem("dw", R6, R1, 0), *asm.log2(R7, R6, tmp=R8),
                 *asm.hist_increment(hist, R7, max_slots=64), asm.mov64(R0, 0), asm.exit_()]
        with load_program(prog_type="raw_tracepoint", insns=insns, maps=(hist,)) as prog:
            for v in values:
                _run(prog, v)
        counts = [int.from_bytes(hist[i], "little") if isinstance(hist[i], bytes) else hist[i] for i in range(64)]
    expected = [0] * 64
    for v in values:
        expected[_floor_log2(v)] += 1
    assert counts == expected


@pytest.mark.privileged
def test_hist_increment_keyed_hash_creates_keys() -> None:
    with create_hash_map(128, key_size=8, value_size=8) as hist:
        # key = (section << 32) | linear slot of width 10 clamped to 8 slots; increment by a register
        insns = [asm.ldx_mem("dw", R6, R1, 0), asm.ldx_mem("dw", R9, R1, 8), asm.ldx_mem("dw", R8, R1, 16),
                 *asm.linear_slot(R7, R6, step=10, max_slots=8), asm.lsh64(R9, 32), asm.or64(R7, R9),
                 *asm.hist_increment(hist, R7, key_size=8, create=True, increment=R8), asm.mov64(R0, 0), asm.exit_()]
        with load_program(prog_type="raw_tracepoint", insns=insns, maps=(hist,)) as prog:
            for value, section, n in [(5, 1, 1), (9, 1, 2), (15, 1, 1), (500, 2, 1), (25, 2, 3)]:
                _run(prog, value, section, n)
        got = {int.from_bytes(bytes(k), "little") if not isinstance(k, int) else k:
               int.from_bytes(bytes(v), "little") if not isinstance(v, int) else v for k, v in hist.items()}
    assert got == {(1 << 32) | 0: 3, (1 << 32) | 1: 1, (2 << 32) | 7: 1, (2 << 32) | 2: 3}


@pytest.mark.privileged
def test_hist_increment_percpu_array() -> None:
    with create_percpu_array_map(8, value_size=8) as hist:
        insns = [asm.ldx_mem("dw", R6, R1, 0), *asm.linear_slot(R6, R6, base=100, step=50, max_slots=8),
                 *asm.hist_increment(hist, R6), asm.mov64(R0, 0), asm.exit_()]
        with load_program(prog_type="raw_tracepoint", insns=insns, maps=(hist,)) as prog:
            for v in (0, 120, 160, 10_000):  # below base -> 0, 0, 1, clamped -> 7
                _run(prog, v)
        per_slot = [sum(int.from_bytes(bytes(c), "little") if not isinstance(c, int) else c for c in hist[i])
                    for i in range(8)]
    assert per_slot == [2, 1, 0, 0, 0, 0, 0, 1]


def test_hist_increment_bad_input() -> None:
    fake = type("M", (), {"fd": 3})()
    with pytest.raises(AsmError, match="key_size"):
        asm.hist_increment(fake, R6, key_size=2)
    with pytest.raises(AsmError, match="key_off"):
        asm.hist_increment(fake, R6, key_off=-4)
    with pytest.raises(AsmError, match=r"R6\.\.R9"):
        asm.hist_increment(fake, R6, increment=asm.R2)
    with pytest.raises(AsmError, match="register"):
        asm.hist_increment(fake, 6)  # type: ignore[arg-type]
    with pytest.raises(AsmError, match="step"):
        asm.linear_slot(R1, asm.R2, step=0)
    with pytest.raises(AsmError, match="max_slots"):
        asm.linear_slot(R1, asm.R2, max_slots=0)


def test_two_increments_in_one_program_use_distinct_labels() -> None:
    fake = type("M", (), {"fd": 3})()
    a, b = asm.hist_increment(fake, R6), asm.hist_increment(fake, R7)
    names = {i.name for i in a + b if isinstance(i, asm.Label)}
    assert len(names) == 4


class _Fmt:
    class _F:
        def __init__(self, offset: int, size: int, signed: bool) -> None:
            self.offset, self.size, self.signed = offset, size, signed

    def field(self, name: str) -> _F:
        fields = {"dfd": self._F(16, 4, True), "filename": self._F(24, 8, False), "comm": self._F(32, 16, False)}
        if name not in fields:
            raise KeyError(f"no field {name!r}")
        return fields[name]


def test_ctx_field_reads_offsets_from_the_format() -> None:
    fmt = _Fmt()
    assert asm.ctx_field(R1, fmt, "filename", dst=asm.R3) == asm.ldx_mem("dw", asm.R3, R1, 24)
    assert asm.ctx_field(R1, fmt, "dfd") == asm.ldx_mem("w", R0, R1, 16)
    assert asm.ctx_field(R1, fmt, "dfd", sign_extend=True) == asm.ldx_memsx("w", R0, R1, 16)
    assert asm.ctx_field(R1, {"x": (8, 2)}, "x", dst=R6) == asm.ldx_mem("h", R6, R1, 8)
    assert asm.ctx_field_addr(R1, fmt, "comm", R7) == [asm.mov64(R7, R1), asm.add64(R7, 32)]
    with pytest.raises(AsmError, match="nosuch"):
        asm.ctx_field(R1, fmt, "nosuch")
    with pytest.raises(AsmError, match="ctx_field_addr"):
        asm.ctx_field(R1, fmt, "comm")
    with pytest.raises(AsmError, match="tracepoint format"):
        asm.ctx_field(R1, 42, "x")
