"""The BPF programs behind :mod:`ebpf.events.profile`, written with :mod:`ebpf.core.asm`.

Both fill a counts map keyed by a 32-byte :data:`KEY` (tgid, user stack id, kernel stack id,
comm) with u64 values: samples for the CPU profiler, blocked microseconds for off-CPU time.
Stack ids come from ``bpf_get_stackid``; a negative id (errno) is kept in the key so the
profile can say how many stacks were lost and why.
"""

from __future__ import annotations

import struct
from typing import Any

from ebpf.core import asm

__all__ = ["KEY", "START_VALUE", "cpu_program", "offcpu_program", "NO_STACK"]

R0, R1, R2, R3, R4, R6, R7, R8, R9, R10 = (asm.R0, asm.R1, asm.R2, asm.R3, asm.R4, asm.R6, asm.R7, asm.R8,
                                           asm.R9, asm.R10)
#: counts map key: tgid, user stack id, kernel stack id, pad, comm[16]
KEY = struct.Struct("<Iii4x16s")
#: off-CPU start map value: switch-out time (ns), then the key of the stack that blocked
START_VALUE = struct.Struct("<Q32s")
#: the stack id stored when that stack was not asked for
NO_STACK = -1
_USER_STACK = 1 << 8
_NOEXIST = 1
_KEY_OFF = -32  # the key lives at fp-32 .. fp-1


def _stackid(stacks: Any, flags: int, dst_off: int) -> list[Any]:
    """*(s32 *)(fp + dst_off) = bpf_get_stackid(ctx in r6, stacks, flags)."""
    return [asm.mov64(R1, R6), asm.ld_map_fd(R2, stacks), asm.mov64(R3, flags), asm.call("get_stackid"),
            asm.stx_mem("w", R10, R0, dst_off)]


def _fill_key(stacks: Any, tgid_reg: Any, key_off: int, user: bool, kernel: bool) -> list[Any]:
    """The key at fp + key_off: tgid, stack ids of the current task, comm."""
    out = [asm.st_mem("dw", R10, key_off + i, 0) for i in range(0, 32, 8)]
    out.append(asm.stx_mem("w", R10, tgid_reg, key_off))
    out += _stackid(stacks, _USER_STACK, key_off + 4) if user else [asm.st_mem("w", R10, key_off + 4, NO_STACK)]
    out += _stackid(stacks, 0, key_off + 8) if kernel else [asm.st_mem("w", R10, key_off + 8, NO_STACK)]
    out += [asm.mov64(R1, R10), asm.add64(R1, key_off + 16), asm.mov64(R2, 16), asm.call("get_current_comm")]
    return out


def _add_to_counts(counts: Any, key_off: int, value_reg: Any, scratch_off: int, done: str) -> list[Any]:
    """counts[key at fp + key_off] += value_reg (an atomic add, or an insert of the first value)."""
    return [
        asm.ld_map_fd(R1, counts), asm.mov64(R2, R10), asm.add64(R2, key_off), asm.call("map_lookup_elem"),
        asm.jeq(R0, 0, f"{done}_new"),
        asm.atomic_add("dw", R0, value_reg), asm.jmp_a(done),
        asm.label(f"{done}_new"),
        asm.stx_mem("dw", R10, value_reg, scratch_off),
        asm.ld_map_fd(R1, counts), asm.mov64(R2, R10), asm.add64(R2, key_off),
        asm.mov64(R3, R10), asm.add64(R3, scratch_off), asm.mov64(R4, _NOEXIST), asm.call("map_update_elem"),
        asm.jeq(R0, 0, done),
        # another CPU inserted the same key meanwhile: add to its value
        asm.ld_map_fd(R1, counts), asm.mov64(R2, R10), asm.add64(R2, key_off), asm.call("map_lookup_elem"),
        asm.jeq(R0, 0, done),
        asm.atomic_add("dw", R0, value_reg),
        asm.label(done),
    ]


def cpu_program(stacks: Any, counts: Any, *, pid: int | None, user: bool, kernel: bool,
                idle: bool = False) -> list[Any]:
    """A perf_event program: one sample of the current task's stacks into ``counts``.

    :param pid: only this process (tgid), or every process.
    :param idle: count the idle task (pid 0) too.
    """
    out: list[Any] = [asm.mov64(R6, R1), asm.call("get_current_pid_tgid")]
    if not idle:
        out.append(asm.jeq(R0, 0, "out"))
    out += [asm.mov64(R7, R0), asm.rsh64(R7, 32)]
    if pid is not None:
        out.append(asm.jne(R7, pid, "out"))
    out += _fill_key(stacks, R7, _KEY_OFF, user, kernel)
    out += [asm.mov64(R8, 1)]
    out += _add_to_counts(counts, _KEY_OFF, R8, -40, "counted")
    out += [asm.label("out"), asm.mov64(R0, 0), asm.exit_insn()]
    return out


def offcpu_program(stacks: Any, counts: Any, start: Any, *, pid_offset: int, pid: int | None, user: bool,
                   kernel: bool, min_block_us: int, max_block_us: int | None) -> list[Any]:
    """A raw tracepoint program on ``sched_switch(preempt, prev, next, prev_state)``.

    The task switched out is the current one: its stacks and the time go into ``start[tid]``.
    The task switched in (``next``, its tid read at ``pid_offset`` of ``task_struct``) had its
    blocked time measured: ``counts[its key] += microseconds`` when within the bounds.
    """
    out: list[Any] = [asm.mov64(R6, R1), asm.call("get_current_pid_tgid"), asm.jeq(R0, 0, "switch_in"),
                      asm.mov64(R9, R0), asm.mov64(R7, R0), asm.rsh64(R7, 32)]
    if pid is not None:
        out.append(asm.jne(R7, pid, "switch_in"))
    # start value at fp-72: u64 ts, then the 32-byte key at fp-64
    out += _fill_key(stacks, R7, -64, user, kernel)
    out += [asm.call("ktime_get_ns"), asm.stx_mem("dw", R10, R0, -72),
            asm.stx_mem("w", R10, R9, -76),
            asm.ld_map_fd(R1, start), asm.mov64(R2, R10), asm.add64(R2, -76), asm.mov64(R3, R10),
            asm.add64(R3, -72), asm.mov64(R4, 0), asm.call("map_update_elem")]
    out += [
        asm.label("switch_in"),
        asm.st_mem("w", R10, -80, 0),
        asm.ldx_mem("dw", R3, R6, 16), asm.add64(R3, pid_offset),  # &next->pid
        asm.mov64(R1, R10), asm.add64(R1, -80), asm.mov64(R2, 4), asm.call("probe_read_kernel"),
        asm.jne(R0, 0, "out"),
        asm.ld_map_fd(R1, start), asm.mov64(R2, R10), asm.add64(R2, -80), asm.call("map_lookup_elem"),
        asm.jeq(R0, 0, "out"),
        asm.mov64(R9, R0),
        asm.call("ktime_get_ns"), asm.ldx_mem("dw", R1, R9, 0), asm.sub64(R0, R1), asm.mov64(R7, R0),
        asm.div64(R7, 1000),
    ]
    for i in range(0, 32, 8):  # copy the key out before the entry goes
        out += [asm.ldx_mem("dw", R1, R9, 8 + i), asm.stx_mem("dw", R10, R1, _KEY_OFF + i)]
    out += [asm.ld_map_fd(R1, start), asm.mov64(R2, R10), asm.add64(R2, -80), asm.call("map_delete_elem")]
    if min_block_us > 0:
        out.append(asm.jlt(R7, min_block_us, "out"))
    if max_block_us is not None:
        out.append(asm.jgt(R7, max_block_us, "out"))
    out += _add_to_counts(counts, _KEY_OFF, R7, -40, "counted")
    out += [asm.label("out"), asm.mov64(R0, 0), asm.exit_insn()]
    return out
