"""``@inline`` helpers: one-expression Python functions expanded where kernel code calls them."""

from __future__ import annotations

import pytest
from ebpf.lang import ArrayMap, LangError, Struct, bpf, inline, kernel, load, u8, u16, u64
from ebpf.lang import ctx_types as ct


class Eth(Struct):
    dst: u8[6]
    src: u8[6]
    proto: u16


@inline
def is_ipv6(eth) -> bool:
    return eth.proto == bpf.htons(0x86DD)


@inline
def clamp(x, hi):
    return hi * (x > hi) + x * (x <= hi)


@inline
def scaled(x):
    return clamp(x, 1000) * SCALE


SCALE = 3
out = ArrayMap(u64, max_entries=4)


@kernel("xdp")
def uses_inline(ctx: ct.xdp_md) -> int:
    eth = ctx.header(Eth, 0)
    if eth is None:
        return 2
    out[0] = scaled(ctx.ingress_ifindex * 600)
    out[1] = is_ipv6(eth)
    if is_ipv6(eth):
        return 1
    return 2


def test_inline_functions_expand_and_run() -> None:
    with load([uses_inline]) as coll:
        prog = coll.programs["uses_inline"]
        assert prog.test_run(bytes(12) + b"\x86\xdd" + bytes(50)).retval == 1
        assert (coll.maps["out"][0], coll.maps["out"][1]) == (600 * 3, 1)  # ifindex 1: 600 <= 1000
        assert prog.test_run(bytes(12) + b"\x08\x06" + bytes(50)).retval == 2
        assert coll.maps["out"][1] == 0
    assert is_ipv6(Eth(proto=0xDD86))  # still a Python function in user space


def test_inline_needs_one_return() -> None:
    @inline
    def two_lines(x):
        y = x + 1
        return y

    @kernel("xdp")
    def f(ctx: ct.xdp_md) -> int:
        return two_lines(1)

    with pytest.raises(LangError, match=r"@inline function two_lines must be a single `return <expression>`"):
        f.compile()


def test_inline_argument_with_a_helper_call() -> None:
    @kernel("xdp")
    def f(ctx: ct.xdp_md) -> int:
        return clamp(bpf.ktime_get_ns(), 5)

    with pytest.raises(LangError, match=r"an argument of @inline clamp\(\) that calls a helper: assign it to a local"):
        f.compile()
