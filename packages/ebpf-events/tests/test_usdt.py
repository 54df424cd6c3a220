"""USDT argument specs: decoding (unit), the spec map layout, and a real probe whose arguments a program reads
with the asm helper (a constant, registers of several widths and a stack slot, at two sites with different
layouts), checked value by value."""

from __future__ import annotations

import os
import struct
import subprocess
from pathlib import Path
from typing import Any

import pytest
from ebpf.core import asm
from ebpf.core.errors import AttachError, EBPFError
from ebpf.core.features import have_helper
from ebpf.core.maps import create_array_map, create_ringbuf_map
from ebpf.core.programs import load_program
from ebpf.core.testing import build_host_program, require
from ebpf.events import tracing
from ebpf.events.ringbuf import RingBuffer
from ebpf.events.tracing import UsdtArg, UsdtArgKind, UsdtLink, UsdtSpecs, parse_usdt_args, usdt_arg, usdt_cookie
from ebpf.events.tracing._usdt_args import USDT_SPEC_SIZE, encode_usdt_spec

HERE = Path(__file__).parent
R0, R1, R2, R3, R4, R6, R10 = asm.R0, asm.R1, asm.R2, asm.R3, asm.R4, asm.R6, asm.R10
K, R, D = UsdtArgKind.CONST, UsdtArgKind.REG, UsdtArgKind.REG_DEREF


@pytest.mark.parametrize(("text", "expected"), [
    ("-4@%eax", [(4, True, R, "eax", 80, 0)]),
    ("8@%rdi", [(8, False, R, "rdi", 112, 0)]),
    ("8@-8(%rbp)", [(8, False, D, "rbp", 32, -8)]),
    ("-4@ -4(%rbp)", [(4, True, D, "rbp", 32, -4)]),
    ("4@$5", [(4, False, K, None, 0, 5)]),
    ("-4@$-17", [(4, True, K, None, 0, -17)]),
    ("8@$0x1000", [(8, False, K, None, 0, 0x1000)]),
    ("1@%al 2@%cx -2@%r8w 1@%sil", [(1, False, R, "al", 80, 0), (2, False, R, "cx", 88, 0),
                                     (2, True, R, "r8w", 72, 0), (1, False, R, "sil", 104, 0)]),
    ("8@(%rax)", [(8, False, D, "rax", 80, 0)]),
    ("8@16(%rsp)  -8@%r15", [(8, False, D, "rsp", 152, 16), (8, True, R, "r15", 0, 0)]),
    ("8@0x10(%r12)", [(8, False, D, "r12", 24, 16)]),
    ("8@%rip", [(8, False, R, "rip", 128, 0)]),
    ("", []),
    ("   ", []),
])
def test_parse_x86_64(text: str, expected: list[tuple[Any, ...]]) -> None:
    args = parse_usdt_args(text)
    assert [(a.size, a.signed, a.kind, a.register, a.reg_offset, a.offset) for a in args] == expected
    assert all(a.bitshift == 64 - 8 * a.size for a in args)


@pytest.mark.parametrize(("text", "expected"), [
    ("-4@x0", [(4, True, R, "x0", 0, 0)]),
    ("8@[sp, 16]", [(8, False, D, "sp", 248, 16)]),
    ("4@[x1]", [(4, False, D, "x1", 8, 0)]),
    ("-8@[x29, -24] 4@5 2@w3", [(8, True, D, "x29", 232, -24), (4, False, K, None, 0, 5), (2, False, R, "w3", 24, 0)]),
])
def test_parse_aarch64(text: str, expected: list[tuple[Any, ...]]) -> None:
    args = parse_usdt_args(text, "aarch64")
    assert [(a.size, a.signed, a.kind, a.register, a.reg_offset, a.offset) for a in args] == expected


@pytest.mark.parametrize(("text", "arch", "match"), [
    ("3@%eax", "x86_64", "size 3"),
    ("-16@%rax", "x86_64", "size -16"),
    ("4@%xyz", "x86_64", "unknown x86_64 register 'xyz'"),
    ("4@%ah", "x86_64", "unknown x86_64 register 'ah'"),
    ("8@8(%rax,%rbx,2)", "x86_64", "bad USDT argument spec"),
    ("eax", "x86_64", "bad USDT argument spec"),
    ("4@", "x86_64", "bad USDT argument spec"),
    ("4@%eax,8@%rbx", "x86_64", "bad USDT argument spec"),
    (" ".join(["4@$1"] * 13), "x86_64", "at most 12"),
    ("4@%eax", "mips", "not supported"),
    ("4@[q9, 8]", "aarch64", "unknown aarch64 register 'q9'"),
])
def test_parse_bad_specs(text: str, arch: str, match: str) -> None:
    with pytest.raises(EBPFError, match=match):
        parse_usdt_args(text, arch)


def test_spec_layout_is_libbpfs() -> None:
    args = parse_usdt_args("-4@-44(%rbp) 2@%cx 8@$7")
    raw = encode_usdt_spec(args, cookie=0xABCDEF)
    assert len(raw) == USDT_SPEC_SIZE == 208
    # struct __bpf_usdt_arg_spec { u64 val_off; enum arg_type; short reg_off; bool arg_signed; char arg_bitshift; }
    assert struct.unpack_from("<qiH?b", raw, 0) == (-44, 2, 32, True, 32)
    assert struct.unpack_from("<QiH?b", raw, 16) == (0, 1, 88, False, 48)
    assert struct.unpack_from("<QiH?b", raw, 32) == (7, 0, 0, False, 0)
    assert struct.unpack_from("<Qh", raw, 192) == (0xABCDEF, 3)
    with pytest.raises(EBPFError, match="u64"):
        encode_usdt_spec(args, cookie=-1)


def test_usdt_arg_helper_refuses_bad_input() -> None:
    fake_map = object()
    with pytest.raises(EBPFError, match="0-11"):
        usdt_arg(12, fake_map, fail="out")
    with pytest.raises(EBPFError, match="callee-saved"):
        usdt_arg(0, fake_map, ctx=R1, fail="out")
    with pytest.raises(EBPFError, match="dst"):
        usdt_arg(0, fake_map, dst=R6, fail="out")
    assert isinstance(UsdtArg(4, True, K, None, 0, 1, "-4@$1").bitshift, int)


# --- on the real kernel ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> str:
    """tests/usdt_target.c built with the system's cc, or the ziglang toolchain (a test dependency)."""
    out = str(tmp_path_factory.mktemp("usdt") / "usdt_target")
    return build_host_program(HERE / "usdt_target.c", out)


def args_program(specs: UsdtSpecs, rb: Any) -> Any:
    """kprobe program: read USDT args 0-3 and the cookie, emit them as 5 u64 to ``rb``."""
    insns: list[Any] = [asm.mov64(R6, R1)]
    for n in range(4):
        insns += [*usdt_arg(n, specs, dst=R0, fail="out"), asm.stx_mem("dw", R10, R0, -48 + 8 * n)]
    insns += [*usdt_cookie(specs, dst=R0, fail="out"), asm.stx_mem("dw", R10, R0, -16),
              asm.ld_map_fd(R1, rb), asm.mov64(R2, R10), asm.add64(R2, -48), asm.mov64(R3, 40), asm.mov64(R4, 0),
              asm.call("ringbuf_output"),
              asm.label("out"), asm.mov64(R0, 0), asm.exit_()]
    return load_program(prog_type="kprobe", insns=insns, name="usdt_args", maps=(specs.map, rb))


@pytest.mark.privileged
def test_program_reads_usdt_arguments_at_every_site(target: str) -> None:
    require(have_helper, "kprobe", "get_attach_cookie")
    sites = [p for p in tracing.list_usdt(target) if (p.provider, p.name) == ("test", "args4")]
    assert len(sites) == 2 and all(p.semaphore_offset for p in sites)
    kinds = [[a.kind for a in p.arguments] for p in sites]
    assert all(k[0] == K and k[1] == R and k[3] == R for k in kinds)  # the constraints "n", "r", "r"
    n = 5
    with UsdtSpecs(16) as specs, create_ringbuf_map(1 << 14) as rb, args_program(specs, rb) as prog:
        with tracing.attach_usdt(prog, target, "test", "args4", cookie=0xC0FFEE, specs=specs) as link:
            assert isinstance(link, UsdtLink) and len(link.spec_ids) == 2 and len(specs.in_use()) == 2
            out = subprocess.run([target, str(n)], capture_output=True, text=True, check=True).stdout
        assert specs.in_use() == {}  # the slots went back with the link
        # the kernel raised the semaphore while attached: every guarded probe fired
        assert out.strip() == str(n)
        with RingBuffer(rb) as reader:
            got = [struct.unpack("<QqqQQ", r) for r in reader.read_batch()]
    expected = []
    for i in range(n):
        big, neg, small = -1000 * (i + 1) - 7, -3 * (i + 1), 60000 + i
        expected += [(5, big, neg, small, 0xC0FFEE), (5, 2 * big, 2 * neg, small + 1, 0xC0FFEE)]
    assert got == expected


@pytest.mark.privileged
def test_spec_slots_are_shared_and_bad_input(target: str) -> None:
    require(have_helper, "kprobe", "get_attach_cookie")
    fds = len(os.listdir("/proc/self/fd"))
    with UsdtSpecs(2) as specs, create_ringbuf_map(1 << 12) as rb, args_program(specs, rb) as prog:
        with tracing.attach_usdt(prog, target, "test", "args4", specs=specs) as a, \
                prog.attach(f"usdt:{target}:test:args4", specs=specs) as b:  # core's dispatch passes specs on
            assert isinstance(b, UsdtLink)
            assert sorted(a.spec_ids) == sorted(b.spec_ids) == [0, 1]  # identical specs share slots
            with pytest.raises(EBPFError, match="spec slots"):  # a third, different spec finds no room
                tracing.attach_usdt(prog, target, "test", "args4", cookie=1, specs=specs)
            assert len(specs.in_use()) == 2
        assert specs.in_use() == {}
        with pytest.raises(EBPFError, match="UsdtSpecs"):
            tracing.attach_usdt(prog, target, "test", "args4", specs=rb)  # type: ignore[arg-type]
        with pytest.raises(AttachError, match="no USDT probe"):
            tracing.attach_usdt(prog, target, "test", "nope", specs=specs)
    with pytest.raises(EBPFError, match="closed"):
        specs.acquire(b"\0" * USDT_SPEC_SIZE)
    assert len(os.listdir("/proc/self/fd")) == fds


@pytest.mark.privileged
def test_a_program_using_a_spec_map_needs_no_specs_argument(target: str) -> None:
    require(have_helper, "kprobe", "get_attach_cookie")
    with UsdtSpecs(4) as own:
        assert UsdtSpecs.from_map(own.map) is own  # one bookkeeping per map
    # a map of the spec layout made elsewhere (as an ELF object's __bpf_usdt_specs) is borrowed
    with create_array_map(8, value_size=USDT_SPEC_SIZE, name="__bpf_usdt_spec") as m, \
            create_ringbuf_map(1 << 12) as rb:
        specs = UsdtSpecs.from_map(m)
        with args_program(specs, rb) as prog:
            assert UsdtSpecs.of_program(prog) is specs
            with tracing.attach_usdt(prog, target, "test", "args4", cookie=9) as link:  # no specs=
                assert isinstance(link, UsdtLink) and link.specs is specs and len(specs.in_use()) == 2
                subprocess.run([target, "1"], capture_output=True, check=True)
        specs.close()
        assert specs.closed and not m.closed  # closing the wrapper leaves a borrowed map open
        with RingBuffer(rb) as reader:
            got = [struct.unpack("<QqqQQ", r) for r in reader.read_batch()]
    assert got == [(5, -1007, -3, 60000, 9), (5, -2014, -6, 60001, 9)]
    with create_array_map(8, value_size=8) as wrong, pytest.raises(EBPFError, match="not a USDT spec map"):
        UsdtSpecs.from_map(wrong)
