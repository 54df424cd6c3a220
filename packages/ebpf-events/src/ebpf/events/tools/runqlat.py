"""runqlat: how long runnable tasks wait for a CPU, as a log2 histogram (bcc/libbpf-tools ``runqlat``).

tp_btf programs on ``sched_wakeup``/``sched_wakeup_new`` store the time a task became
runnable; ``sched_switch`` also stores it for a task preempted while still runnable
(``prev_state == TASK_RUNNING``), and counts ``now - start`` for the task switched in.  Task
fields (``pid``, ``tgid``) are read through their BTF offsets in ``task_struct``, so the
programs fit the running kernel.  Requires tp_btf (Linux >= 5.5) and vmlinux BTF.
"""

from __future__ import annotations

from typing import Any

from ebpf.core import asm
from ebpf.core.asm import R0, R1, R2, R3, R4, R6, R7, R8, R9, R10
from ebpf.core.errors import BTFError
from ebpf.events.hist import HIGH32, Histogram
from ebpf.events.tools._common import UNITS, ToolBase, check_common, ktime_to

__all__ = ["RunqLat"]

_SLOTS = 64


def _task_offsets() -> tuple[int, int]:
    from ebpf.core.btf import Struct, load_vmlinux

    task = load_vmlinux().find("task_struct")
    if not isinstance(task, Struct):
        raise BTFError("vmlinux BTF has no struct task_struct")
    return task.member("pid").offset, task.member("tgid").offset


class RunqLat(ToolBase):
    """Run-queue latency histogram, attached when created.

    :param pid: only tasks of this process (tgid).
    :param per_process: one histogram per process (keyed by tgid).
    :param unit: ``"usecs"`` (default), ``"nsecs"`` or ``"msecs"``.
    :raises EBPFError: bad arguments; :raises UnsupportedFeatureError/BPFSyscallError: no tp_btf here.
    """

    def __init__(self, *, pid: int | None = None, per_process: bool = False, unit: str = "usecs") -> None:
        """Create the maps, load and attach the three programs."""
        super().__init__()
        check_common(pid=pid, unit=unit)
        self.pid, self.per_process, self.unit = pid, per_process, unit
        from ebpf.core.maps import create_array_map, create_hash_map
        from ebpf.events.tracing import attach_tp_btf, load_tracing_program

        self._pid_off, self._tgid_off = _task_offsets()
        try:
            self.start = self._hold(create_hash_map(10240, key_size=4, value_size=8, name="rq_start"))
            self.hist = self._hold(create_hash_map(10240, key_size=8, value_size=8, name="rq_hist") if per_process
                                   else create_array_map(_SLOTS, value_size=8, name="rq_hist"))
            maps = (self.start, self.hist)
            for target, insns in (("sched_wakeup", self._wakeup()), ("sched_wakeup_new", self._wakeup()),
                                  ("sched_switch", self._switch())):
                prog = self._hold(load_tracing_program(insns, "tp_btf", target, name=f"rq_{target}"[:15], maps=maps))
                self._hold(attach_tp_btf(prog))
        except BaseException:
            self.close()
            raise

    def _enqueue(self, task: Any, skip: str) -> list[Any]:
        """start[task->pid] = now, if task passes the pid filter (task in R6..R9; clobbers R0-R5)."""
        out = []
        if self.pid is not None:
            out += [asm.ldx_mem("w", R0, task, self._tgid_off), asm.jne(R0, self.pid, skip)]
        return [*out, asm.ldx_mem("w", R0, task, self._pid_off), asm.jeq(R0, 0, skip),  # the idle task
                asm.stx_mem("w", R10, R0, -4), asm.call("ktime_get_ns"), asm.stx_mem("dw", R10, R0, -16),
                asm.ld_map_fd(R1, self.start), asm.mov64(R2, R10), asm.add64(R2, -4),
                asm.mov64(R3, R10), asm.add64(R3, -16), asm.mov64(R4, 0), asm.call("map_update_elem")]

    def _wakeup(self) -> list[Any]:
        return [asm.ldx_mem("dw", R6, R1, 0), *self._enqueue(R6, "out"), asm.label("out"), asm.mov64(R0, 0),
                asm.exit_()]

    def _switch(self) -> list[Any]:
        # args: bool preempt, struct task_struct *prev, struct task_struct *next, unsigned int prev_state
        count = [*asm.log2(R8, R0, tmp=R9)]
        if self.per_process:
            count += [asm.ldx_mem("w", R9, R7, self._tgid_off), asm.lsh64(R9, 32), asm.or64(R8, R9),
                      *asm.hist_increment(self.hist, R8, key_size=8, key_off=-24, create=True)]
        else:
            count += asm.hist_increment(self.hist, R8, max_slots=_SLOTS, key_off=-24)
        return [
            asm.ldx_mem("dw", R6, R1, 8), asm.ldx_mem("dw", R7, R1, 16), asm.ldx_mem("dw", R8, R1, 24),
            asm.jne(R8, 0, "next"), *self._enqueue(R6, "next"),  # prev still runnable: it waits again
            asm.label("next"),
            *([asm.ldx_mem("w", R0, R7, self._tgid_off), asm.jne(R0, self.pid, "out")] if self.pid else []),
            asm.ldx_mem("w", R0, R7, self._pid_off), asm.stx_mem("w", R10, R0, -4),
            asm.ld_map_fd(R1, self.start), asm.mov64(R2, R10), asm.add64(R2, -4), asm.call("map_lookup_elem"),
            asm.jeq(R0, 0, "out"), asm.ldx_mem("dw", R6, R0, 0),
            asm.call("ktime_get_ns"), asm.sub64(R0, R6), asm.jslt(R0, 0, "drop"), *ktime_to(UNITS[self.unit]),
            *count,
            asm.label("drop"),
            asm.ldx_mem("w", R0, R7, self._pid_off), asm.stx_mem("w", R10, R0, -4),
            asm.ld_map_fd(R1, self.start), asm.mov64(R2, R10), asm.add64(R2, -4), asm.call("map_delete_elem"),
            asm.label("out"), asm.mov64(R0, 0), asm.exit_(),
        ]

    def histogram(self) -> Histogram:
        """The waits so far (keyed by tgid with ``per_process``)."""
        if self.per_process:
            return Histogram.from_map(self.hist, key=HIGH32)
        return Histogram.from_map(self.hist)

    def clear(self) -> None:
        """Zero the histogram."""
        if self.per_process:
            self.hist.clear()
        else:
            for i in range(_SLOTS):
                self.hist[i] = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: unit and the histogram's ``to_dict()``."""
        return {"unit": self.unit, **self.histogram().to_dict()}

