"""Stack trace maps on the real kernel: bpf_get_stackid fills them, ``stack()`` reads the frames back."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from ebpf.core import asm
from ebpf.core.errors import EBPFError, KeyNotFoundError
from ebpf.core.links import attach_raw_tracepoint
from ebpf.core.maps import (
    BuildIdFrame,
    Map,
    StackTraceMap,
    create_array_map,
    create_stack_map,
    create_stack_trace_map,
    stack_id_error,
)
from ebpf.core.programs import load_program

pytestmark = pytest.mark.privileged
R0, R1, R2, R3, R4, R6, R10 = asm.R0, asm.R1, asm.R2, asm.R3, asm.R4, asm.R6, asm.R10
BPF_F_USER_STACK = 1 << 8
BPF_F_REUSE_STACKID = 1 << 10  # a bucket collision replaces the old stack instead of failing (EEXIST)


def _store(ids: Map, slot: int) -> list[asm.Instruction]:
    """ids[slot] = r0 (a stack id or a negative errno)."""
    return [asm.stx_mem("dw", R10, R0, -16), asm.st_mem("w", R10, -4, slot),
            asm.ld_map_fd(R1, ids), asm.mov64(R2, R10), asm.add64(R2, -4), asm.mov64(R3, R10), asm.add64(R3, -16),
            asm.mov64(R4, 0), asm.call("map_update_elem")]


def _stackid_program(stacks: StackTraceMap, ids: Map) -> list[asm.Instruction]:
    """On sys_enter of this process: ids[0] = user stack id, ids[1] = kernel stack id."""
    return [
        asm.mov64(R6, R1),
        asm.call("get_current_pid_tgid"), asm.rsh64(R0, 32), asm.jne(R0, os.getpid(), "out"),
        asm.mov64(R1, R6), asm.ld_map_fd(R2, stacks), asm.mov64(R3, BPF_F_USER_STACK | BPF_F_REUSE_STACKID),
        asm.call("get_stackid"),
        *_store(ids, 0),
        asm.mov64(R1, R6), asm.ld_map_fd(R2, stacks), asm.mov64(R3, BPF_F_REUSE_STACKID), asm.call("get_stackid"),
        *_store(ids, 1),
        asm.label("out"), asm.mov64(R0, 0), asm.exit_insn(),
    ]


def _signed(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


@pytest.fixture
def ids() -> Iterator[Map]:
    with create_array_map(2, value_size=8, name="stk_ids") as m:
        yield m


def _capture(stacks: StackTraceMap, ids: Map) -> tuple[int, int]:
    with load_program(prog_type="raw_tracepoint", insns=_stackid_program(stacks, ids), name="stk_test") as prog, \
            attach_raw_tracepoint(prog, "sys_enter"):
        os.getppid()
    return _signed(ids[0]), _signed(ids[1])


def test_stack_ids_give_user_and_kernel_frames(ids: Map) -> None:
    with create_stack_trace_map(1024, depth=32, name="stk") as stacks:
        assert isinstance(stacks, StackTraceMap) and stacks.depth == 32 and not stacks.build_id
        user_id, kernel_id = _capture(stacks, ids)
        assert user_id >= 0 and kernel_id >= 0, (stack_id_error(user_id), stack_id_error(kernel_id))
        user, kernel = stacks.stack(user_id), stacks.stack(kernel_id)
        assert user and all(0 < ip < 1 << 47 for ip in user)          # user-space addresses
        assert kernel and all(ip >= 0xFFFF800000000000 for ip in kernel)  # kernel addresses
        stored = dict(stacks.stacks())  # other syscalls of this process may have added stacks
        assert stored[user_id] == user and stored[kernel_id] == kernel
        del stacks[user_id]
        with pytest.raises(KeyNotFoundError):
            stacks.stack(user_id)
        # read back through the kernel's info: the same kind
        with Map.from_id(stacks.info().id) as again:
            assert isinstance(again, StackTraceMap) and again.stack(kernel_id) == kernel


def test_build_id_frames(ids: Map) -> None:
    with create_stack_trace_map(256, depth=8, build_id=True, name="stk_bid") as stacks:
        assert stacks.build_id and stacks.depth == 8 and stacks.value_size == 8 * 32
        user_id, _ = _capture(stacks, ids)
        assert user_id >= 0, stack_id_error(user_id)
        frames = stacks.stack(user_id)
        assert frames and all(isinstance(f, BuildIdFrame) and f.status in ("valid", "ip") for f in frames)
        valid = [f for f in frames if f.status == "valid"]
        assert valid and all(len(f.build_id) == 20 and any(f.build_id) for f in valid)
        libc = next(m for m in open("/proc/self/maps") if "libc.so" in m and "r-xp" in m).split()  # noqa: SIM115
        lo, hi = (int(x, 16) for x in libc[0].split("-"))
        assert 0 < valid[0].offset < int(libc[2], 16) + hi - lo  # a file offset inside libc's text


def test_negative_ids_are_named() -> None:
    assert stack_id_error(3) is None
    assert stack_id_error(-14).startswith("EFAULT")
    assert stack_id_error(-17).startswith("EEXIST")
    assert "errno 4242" in (stack_id_error(-4242) or "")
    with create_stack_trace_map(4, depth=4) as stacks:
        with pytest.raises(EBPFError, match="EEXIST"):
            stacks.stack(-17)
        with pytest.raises(EBPFError):
            stacks.stack("1")  # type: ignore[arg-type]


@pytest.mark.parametrize("depth", [0, 128, -1, 1.5, True])
def test_bad_depth_refused_before_syscall(depth: object) -> None:
    with pytest.raises(EBPFError, match="depth"):
        create_stack_trace_map(4, depth=depth)  # type: ignore[arg-type]


def test_lifo_stack_map_is_not_a_stack_trace_map() -> None:
    with create_stack_map(4) as lifo:
        assert not isinstance(lifo, StackTraceMap)
