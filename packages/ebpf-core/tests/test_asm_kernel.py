"""Assembled programs loaded into the real kernel and run with BPF_PROG_TEST_RUN."""

from __future__ import annotations

import ctypes
import struct
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from ebpf.core._sys.attrs import MapCreateAttr, MapElemAttr, ProgLoadAttr, TestRunAttr
from ebpf.core._sys.commands import map_create
from ebpf.core._sys.syscall import Cmd, bpf, close_fd
from ebpf.core.asm import (
    DW,
    R0,
    R1,
    R2,
    R3,
    R6,
    R10,
    Assembler,
    B,
    H,
    Instruction,
    Label,
    W,
    add64,
    assemble,
    atomic_add,
    atomic_cmpxchg,
    atomic_or,
    atomic_xchg,
    be16,
    be32,
    bswap16,
    bswap64,
    call,
    call_rel,
    disassemble,
    exit_,
    gotol,
    jeq,
    jeq32,
    jne,
    jslt,
    label,
    ld_abs,
    ld_imm64,
    ld_map_fd,
    ld_map_value,
    ldx_mem,
    ldx_memsx,
    le16,
    load_acquire,
    lsh64,
    may_goto,
    mov32,
    mov64,
    movsx64_reg,
    mul64,
    rsh64,
    sdiv64,
    smod64,
    st_mem,
    store_release,
    stx_mem,
    sub64,
)
from ebpf.core.errors import BPFSyscallError, VerifierError
from ebpf.core.features import have_instructions
from ebpf.core.testing import require
from ebpf.core.types import MapType, ProgType

pytestmark = pytest.mark.privileged

PACKET = bytes(range(14)) + b"\xab\xcd" + bytes(48)  # an Ethernet header, then the "network" data


@contextmanager
def loaded(insns: bytes, prog_type: ProgType = ProgType.SOCKET_FILTER) -> Iterator[int]:
    """BPF_PROG_LOAD through the raw syscall layer; yields the fd and closes it."""
    code = ctypes.create_string_buffer(insns, len(insns))
    license_ = ctypes.create_string_buffer(b"GPL")
    log = ctypes.create_string_buffer(1 << 20)
    attr = ProgLoadAttr(prog_type=prog_type, insn_cnt=len(insns) // 8, insns=ctypes.addressof(code))
    attr.license = ctypes.addressof(license_)
    attr.log_level, attr.log_size, attr.log_buf = 1, len(log), ctypes.addressof(log)
    try:
        fd = bpf(Cmd.PROG_LOAD, attr)
    except BPFSyscallError as exc:
        raise VerifierError(exc.errno or 0, "BPF_PROG_LOAD", log.value.decode(errors="replace")) from None
    try:
        yield fd
    finally:
        close_fd(fd)


def run_once(fd: int, data: bytes = PACKET) -> int:
    """BPF_PROG_TEST_RUN once; returns the program's return value."""
    data_in = ctypes.create_string_buffer(data, len(data))
    attr = TestRunAttr(prog_fd=fd, data_size_in=len(data), data_in=ctypes.addressof(data_in), repeat=1)
    bpf(Cmd.PROG_TEST_RUN, attr)
    return int(attr.retval)


def run(prog: object, data: bytes = PACKET) -> int:
    with loaded(assemble(prog)) as fd:
        return run_once(fd, data)


def u32(value: int) -> int:
    return value & 0xFFFFFFFF


@contextmanager
def array_map(value_size: int = 8) -> Iterator[int]:
    attr = MapCreateAttr(map_type=MapType.ARRAY, key_size=4, value_size=value_size, max_entries=1)
    fd = map_create(attr)
    try:
        yield fd
    finally:
        close_fd(fd)


def map_value(fd: int, size: int = 8) -> bytes:
    key = ctypes.create_string_buffer(4)
    value = ctypes.create_string_buffer(size)
    bpf(Cmd.MAP_LOOKUP_ELEM, MapElemAttr(map_fd=fd, key=ctypes.addressof(key), value=ctypes.addressof(value)))
    return value.raw


CLASSIC = [
    ("arithmetic", [mov64(R0, 7), add64(R0, 5), mul64(R0, 3), sub64(R0, 1), exit_()], 35),
    ("shifts", [mov64(R0, 1), lsh64(R0, 40), rsh64(R0, 36), exit_()], 16),
    ("ld_imm64 and jmp32", [ld_imm64(R1, 0x1_0000_0001), mov64(R0, 0), jeq32(R1, 1, "yes"), exit_(), label("yes"), mov64(R0, 1), exit_()], 1),
    ("signed compare", [mov64(R1, -5), mov64(R0, 0), jslt(R1, 0, 1), exit_(), mov64(R0, 2), exit_()], 2),
    ("loop 1..10", [mov64(R0, 0), mov64(R1, 0), label("top"), add64(R1, 1), add64(R0, R1), jne(R1, 10, "top"), exit_()], 55),
    ("stack store/load", [st_mem(W, R10, -4, 0x1234), ldx_mem(H, R0, R10, -4), exit_()], 0x1234),
    ("byte swaps", [mov64(R0, 0x1234), be16(R0), mov64(R1, 0x12345678), le16(R1), add64(R0, R1), exit_()], 0x3412 + 0x5678),
    ("be32", [mov32(R0, 0x12345678), be32(R0), exit_()], 0x78563412),
    (
        "atomics on the stack",
        [
            st_mem(DW, R10, -8, 10),
            mov64(R1, 5),
            atomic_add(DW, R10, R1, -8, fetch=True),  # r1 = 10, mem = 15
            mov64(R2, 0x100),
            atomic_or(DW, R10, R2, -8),  # mem = 0x10f
            mov64(R0, 0x10F),
            mov64(R3, 7),
            atomic_cmpxchg(DW, R10, R3, -8),  # matches r0: mem = 7, r0 = 0x10f
            mov64(R2, 9),
            atomic_xchg(DW, R10, R2, -8),  # r2 = 7, mem = 9
            ldx_mem(DW, R3, R10, -8),
            mul64(R1, 1000),
            add64(R0, R1),
            mul64(R2, 100000),
            add64(R0, R2),
            mul64(R3, 10000000),
            add64(R0, R3),
            exit_(),
        ],
        0x10F + 10_000 + 700_000 + 90_000_000,
    ),
    (
        "bpf-to-bpf call",
        [mov64(R1, 20), call_rel("double"), add64(R0, 2), exit_(), label("double"), mov64(R0, R1), lsh64(R0, 1), exit_()],
        42,
    ),
    ("helper by name", [call("ktime_get_ns"), mov64(R1, R0), mov64(R0, 1), jne(R1, 0, 1), mov64(R0, 0), exit_()], 1),
    ("ld_abs after the Ethernet header", [mov64(R6, R1), ld_abs(H, 0), exit_()], 0xABCD),
]


@pytest.mark.parametrize(("prog", "expected"), [(p, e) for _, p, e in CLASSIC], ids=[n for n, _, _ in CLASSIC])
def test_program_runs_in_the_kernel(prog: list[Instruction | Label], expected: int) -> None:
    assert run(prog) == u32(expected)


CPU_V4 = [
    ("sdiv", [mov64(R0, -20), sdiv64(R0, 3), exit_()], -6),
    ("smod", [mov64(R0, -20), smod64(R0, 3), exit_()], -2),
    ("movsx", [mov64(R1, 0x80), movsx64_reg(R0, R1, 8), exit_()], -128),
    ("memsx", [st_mem(H, R10, -2, 0xFF80), ldx_memsx(H, R0, R10, -2), exit_()], -128),
    ("bswap", [mov64(R0, 0x1234), bswap16(R0), ld_imm64(R1, 0x0102030405060708), bswap64(R1), rsh64(R1, 32), add64(R0, R1), exit_()], 0x3412 + 0x08070605),
    ("gotol", [mov64(R0, 1), jne(R0, 1, "mid"), gotol("end"), label("mid"), mov64(R0, 2), label("end"), exit_()], 1),
]


@pytest.mark.parametrize(("prog", "expected"), [(p, e) for _, p, e in CPU_V4], ids=[n for n, _, _ in CPU_V4])
def test_cpu_v4_instructions_run_in_the_kernel(prog: list[Instruction | Label], expected: int) -> None:
    require(have_instructions, "cpu_v4")  # the kernel's answer, not its version
    assert run(prog) == u32(expected)


def test_may_goto_loop() -> None:
    require(have_instructions, "may_goto")  # the kernel's answer, not its version
    prog = [mov64(R0, 0), label("top"), may_goto("out"), add64(R0, 1), jne(R0, 100, "top"), label("out"), exit_()]
    assert run(prog) == 100


def test_load_acquire_store_release() -> None:
    require(have_instructions, "load_acquire")  # the kernel's answer, not its version
    prog = [
        st_mem(DW, R10, -8, 0),
        mov64(R1, 77),
        store_release(DW, R10, R1, -8),
        load_acquire(B, R0, R10, -8),
        exit_(),
    ]
    assert run(prog) == 77


def test_map_program_counts_with_atomics() -> None:
    with array_map() as fd:
        prog = [
            st_mem(W, R10, -4, 0),
            ld_map_fd(R1, "counters"),
            mov64(R2, R10),
            add64(R2, -4),
            call("map_lookup_elem"),
            jeq(R0, 0, "out"),
            mov64(R1, 3),
            atomic_add(DW, R0, R1),
            label("out"),
            mov64(R0, 0),
            exit_(),
        ]
        with loaded(assemble(prog, maps={"counters": fd})) as prog_fd:
            for _ in range(4):
                assert run_once(prog_fd) == 0
        assert struct.unpack("<Q", map_value(fd)) == (12,)


def test_map_value_direct_access_and_text_form() -> None:
    class Holder:  # any object with an int .fd is a map reference
        def __init__(self, fd: int) -> None:
            self.fd = fd

    with array_map(16) as fd:
        holder = Holder(fd)
        prog = [ld_map_value(R1, holder, 8), st_mem(DW, R1, 0, 0x55), ldx_mem(DW, R0, R1, 0), exit_()]
        code = assemble(prog)
        text = disassemble(code)
        assert f"r1 = map[fd:{fd}][0]+8 ll" in text
        with loaded(assemble(text)) as prog_fd:
            assert run_once(prog_fd) == 0x55
        assert map_value(fd, 16)[8:] == struct.pack("<Q", 0x55)


def test_text_program_runs() -> None:
    text = """
        r0 = 0
        r1 = 0
    loop:
        r1 += 1
        r0 += r1
        if r1 < 5 goto loop
        w0 *= 2
        exit
    """
    assert run(text) == 30


def test_program_spec_takes_an_assembler() -> None:
    from ebpf.core.maps import create_map
    from ebpf.core.programs import ProgramSpec, load_program

    with create_map(map_type="array", key_size=4, value_size=8, max_entries=1) as counters:
        a = Assembler()
        a.ld_map_value(R1, counters, 0).mov64(R2, 7).atomic_add(DW, R1, R2).mov64(R0, 3).exit_()
        with load_program(ProgramSpec(prog_type="socket_filter", insns=a)) as prog:
            assert prog.test_run(PACKET).retval == 3
        assert counters.lookup_bytes(b"\0\0\0\0") == struct.pack("<Q", 7)


def test_verifier_rejects_a_program_without_exit() -> None:
    with pytest.raises(VerifierError):
        run([mov64(R0, 0), stx_mem(DW, R10, R0, -8)])
