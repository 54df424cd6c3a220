"""Compiled arithmetic, comparisons, casts, loops and structs give what Python's model says,
checked on the kernel (BPF_PROG_TEST_RUN) over generated inputs."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from ebpf.lang import ArrayMap, Struct, bpf, i32, i64, kernel, u8, u16, u32, u64
from ebpf.lang import ctx_types as ct
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.privileged

inp = ArrayMap(u64, max_entries=4)
out = ArrayMap(u64, max_entries=32)
M64 = (1 << 64) - 1
PACKET = bytes(64)


class Rec(Struct):
    a: u8
    b: u32
    c: u16
    d: u64


@kernel("xdp")
def arith(ctx: ct.xdp_md) -> int:
    a = u32(inp.get(0, 0))
    b = u32(inp.get(1, 0))
    x = inp.get(2, 0)
    y = i32(inp.get(3, 0))
    out[0] = a + b
    out[1] = a - b
    out[2] = a * b
    out[3] = a // b
    out[4] = a % b
    out[5] = a << (b & 31)
    out[6] = a >> (b & 31)
    out[7] = (a & b) | (a ^ 0xF0F0)
    out[8] = x * 3 + (x >> 7)
    out[9] = y * 3 - 7
    out[10] = y >> 3
    small: u8 = a + b
    out[11] = small
    out[12] = u16(x) + 1
    out[13] = i64(i32(a)) + 1
    if a < b and not x == 0:  # noqa: SIM201  (compiles `not`)
        out[14] = 1
    elif a == b or y < 0:
        out[14] = 2
    else:
        out[14] = 3
    total: u64 = 0
    for i in range(8):
        if i == 6:
            break
        if i % 2 == 1:
            continue
        total += (x >> (i * 8)) & 0xFF
    out[15] = total
    r = Rec(a=a, d=x)
    r.b = r.a + 1
    r.c = ~b
    out[16] = r.a + r.b + r.c + r.d
    out[17] = bpf.htons(u16(a)) + bpf.ntohl(b)
    out[18] = -y
    out[19] = a > 100 and b <= 7
    # Deeper than the six scratch registers: live values are spilled to the stack and reloaded.
    out[20] = r.a + (r.b * (r.c - (r.d + (r.a | (r.b + (r.c ^ (r.d + (r.a & (r.b + 3)))))))))
    return 2


def model(a: int, b: int, x: int, y: int) -> list[int]:
    """What the program stores, computed in Python with C's wrap-around."""
    u32m, i32w = (1 << 32) - 1, lambda v: ((v + (1 << 31)) & ((1 << 32) - 1)) - (1 << 31)
    res = [
        (a + b) & u32m, (a - b) & u32m, (a * b) & u32m, a // b if b else 0, a % b if b else a,
        (a << (b & 31)) & u32m, a >> (b & 31), (a & b) | (a ^ 0xF0F0), (x * 3 + (x >> 7)) & M64,
        i32w(y * 3 - 7) & M64, (y >> 3) & M64, (a + b) & 0xFF, (x & 0xFFFF) + 1, (i32w(a) + 1) & M64,
    ]
    res.append(1 if a < b and x != 0 else 2 if a == b or y < 0 else 3)
    res.append(sum((x >> (i * 8)) & 0xFF for i in range(0, 6, 2)))
    ra = a & 0xFF
    res.append(ra + ((ra + 1) & u32m) + ((~b) & 0xFFFF) + x & M64)
    res.append((int.from_bytes((a & 0xFFFF).to_bytes(2, "little"), "big")
                + int.from_bytes(b.to_bytes(4, "little"), "big")) & u32m)  # u16 + u32 wraps at 32 bits
    res.append((-y) & M64 if y != -(1 << 31) else (1 << 31) | (M64 ^ u32m))
    res.append(int(a > 100 and b <= 7))
    rb, rc, rd = (ra + 1) & u32m, (~b) & 0xFFFF, x
    res.append((ra + (rb * (rc - (rd + (ra | (rb + (rc ^ (rd + (ra & (rb + 3)))))))))) & M64)
    return res


@kernel("xdp")
def long_loop(ctx: ct.xdp_md) -> int:
    limit = inp.get(0, 0)
    total: u64 = 0
    count: u64 = 0
    for i in range(5000):      # too long to unroll: a loop the verifier bounds
        if i >= limit:
            break
        if i % 3 == 0:
            continue
        total += i
        count += 1
    out[30] = total
    out[31] = count
    down: u64 = 0
    for j in range(99, -1, -1):   # counting down to 0 (a signed counter: the bound is -1)
        down += j
    out[29] = down
    return 2


def test_bounded_loop_matches_python() -> None:
    from ebpf.lang import load

    assert "goto -" in long_loop.disassemble()  # a backward jump: not unrolled
    with load([long_loop]) as coll:
        for limit in (0, 1, 10, 4999, 5000, 10**6):
            coll.maps["inp"][0] = limit
            assert coll.programs["long_loop"].test_run(PACKET).retval == 2
            want = [i for i in range(min(limit, 5000)) if i % 3]
            assert (coll.maps["out"][30], coll.maps["out"][31]) == (sum(want), len(want))
            assert coll.maps["out"][29] == sum(range(100))


@pytest.fixture(scope="module")
def loaded() -> Iterator[object]:
    from ebpf.lang import load

    with load([arith]) as coll:
        yield coll


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])  # slow VMs (TCG)
@given(a=st.integers(0, (1 << 32) - 1), b=st.integers(0, (1 << 32) - 1), x=st.integers(0, M64),
       y=st.integers(-(1 << 31), (1 << 31) - 1))
def test_arithmetic_matches_python(loaded: object, a: int, b: int, x: int, y: int) -> None:
    coll = loaded
    maps = coll.maps  # type: ignore[attr-defined]
    for k, v in enumerate((a, b, x, y & M64)):
        maps["inp"][k] = v
    assert coll.programs["arith"].test_run(PACKET).retval == 2  # type: ignore[attr-defined]
    got = [maps["out"][k] for k in range(21)]
    assert got == model(a, b, x, y)


def test_small_values(loaded: object) -> None:
    """Edge values the generator may miss: zero divisors, equal operands, the most negative i32."""
    for a, b, x, y in [(0, 0, 0, 0), (7, 7, 1, -1), ((1 << 32) - 1, 1, M64, -(1 << 31)), (101, 7, 5, 5)]:
        maps = loaded.maps  # type: ignore[attr-defined]
        for k, v in enumerate((a, b, x, y & M64)):
            maps["inp"][k] = v
        loaded.programs["arith"].test_run(PACKET)  # type: ignore[attr-defined]
        assert [maps["out"][k] for k in range(21)] == model(a, b, x, y), (a, b, x, y)
