"""runqlat: how long runnable tasks wait for a CPU, as a log2 histogram (bcc/libbpf-tools ``runqlat``).

tp_btf programs on ``sched_wakeup``/``sched_wakeup_new`` store the time a task became
runnable; ``sched_switch`` also stores it for a task preempted while still runnable
(``prev_state == TASK_RUNNING``), and counts ``now - start`` for the task switched in.  Task
fields (``pid``, ``tgid``) are read through their BTF offsets in ``task_struct``, so the
programs fit the running kernel.  Where tp_btf programs cannot load, the same programs run
as raw tracepoints (Linux >= 4.17), reading the task fields with ``bpf_probe_read_kernel``.
Requires vmlinux BTF (for the offsets).
"""

from __future__ import annotations

from typing import Any

from ebpf.core import asm
from ebpf.core.asm import R0, R1, R2, R3, R4, R6, R7, R8, R9, R10
from ebpf.core.errors import BPFSyscallError, BTFError, EBPFError, NotSupportedError
from ebpf.events._common import log
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
    :param per_thread: one histogram per thread (keyed by tid; bcc's ``-L``); not with ``per_process``.
    :param unit: ``"usecs"`` (default), ``"nsecs"`` or ``"msecs"``.
    :param mode: ``"tp_btf"``, ``"raw_tp"`` or ``"auto"`` (tp_btf, else raw tracepoints); :attr:`mode` says which ran.
    :raises EBPFError: bad arguments; :raises BPFSyscallError: neither kind of program loads.
    """

    def __init__(self, *, pid: int | None = None, per_process: bool = False, unit: str = "usecs",
                 mode: str = "auto", per_thread: bool = False) -> None:
        """Create the maps, load and attach the three programs."""
        super().__init__()
        check_common(pid=pid, unit=unit)
        if mode not in ("auto", "tp_btf", "raw_tp"):
            raise EBPFError(f"mode must be 'auto', 'tp_btf' or 'raw_tp', not {mode!r}")
        if per_process and per_thread:
            raise EBPFError("runqlat: one histogram per process or per thread, not both")
        self.pid, self.per_process, self.per_thread, self.unit = pid, per_process, bool(per_thread), unit
        from ebpf.core.maps import create_array_map, create_hash_map

        self._pid_off, self._tgid_off = _task_offsets()
        try:
            self.start = self._hold(create_hash_map(10240, key_size=4, value_size=8, name="rq_start"))
            self.hist = self._hold(create_hash_map(10240, key_size=8, value_size=8, name="rq_hist") if self._keyed
                                   else create_array_map(_SLOTS, value_size=8, name="rq_hist"))
            if mode == "auto":
                try:
                    self._attach("tp_btf")
                except (BPFSyscallError, NotSupportedError) as exc:
                    log.info("runqlat: tp_btf unavailable (%s); using raw tracepoints", exc)
                    self._attach("raw_tp")
            else:
                self._attach(mode)
        except BaseException:
            self.close()
            raise

    @property
    def _keyed(self) -> bool:
        return self.per_process or self.per_thread

    def _attach(self, mode: str) -> None:
        from ebpf.core.programs import load_program
        from ebpf.events.tracing import attach_raw_tracepoint, attach_tp_btf, load_tracing_program

        self.mode = mode
        maps = (self.start, self.hist)
        held = len(self._closers)
        try:
            for target, insns in (("sched_wakeup", self._wakeup()), ("sched_wakeup_new", self._wakeup()),
                                  ("sched_switch", self._switch())):
                name = f"rq_{target}"[:15]
                if mode == "tp_btf":
                    prog = self._hold(load_tracing_program(insns, "tp_btf", target, name=name, maps=maps))
                    self._hold(attach_tp_btf(prog))
                else:
                    prog = self._hold(load_program(prog_type="raw_tracepoint", insns=insns, name=name, maps=maps))
                    self._hold(attach_raw_tracepoint(prog, target))
        except BaseException:
            while len(self._closers) > held:  # this mode's programs and links only; the maps stay
                self._closers.pop()()
            raise

    def _u32(self, task: Any, off: int, dst: Any) -> list[Any]:
        """dst = *(u32 *)(task + off): a BTF-typed load (tp_btf) or probe_read_kernel (raw_tp; clobbers R0-R5)."""
        if self.mode == "tp_btf":
            return [asm.ldx_mem("w", dst, task, off)]
        return [asm.mov64(R1, R10), asm.add64(R1, -32), asm.mov64(R2, 4), asm.mov64(R3, task), asm.add64(R3, off),
                asm.call("probe_read_kernel"), asm.ldx_mem("w", dst, R10, -32)]

    def _enqueue(self, task: Any, skip: str) -> list[Any]:
        """start[task->pid] = now, if task passes the pid filter (task in R6..R9; clobbers R0-R5)."""
        out = [asm.st_mem("dw", R10, -32, 0)]
        if self.pid is not None:
            out += [*self._u32(task, self._tgid_off, R0), asm.jne(R0, self.pid, skip)]
        return [*out, *self._u32(task, self._pid_off, R0), asm.jeq(R0, 0, skip),  # the idle task
                asm.stx_mem("w", R10, R0, -4), asm.call("ktime_get_ns"), asm.stx_mem("dw", R10, R0, -16),
                asm.ld_map_fd(R1, self.start), asm.mov64(R2, R10), asm.add64(R2, -4),
                asm.mov64(R3, R10), asm.add64(R3, -16), asm.mov64(R4, 0), asm.call("map_update_elem")]

    def _wakeup(self) -> list[Any]:
        return [asm.ldx_mem("dw", R6, R1, 0), *self._enqueue(R6, "out"), asm.label("out"), asm.mov64(R0, 0),
                asm.exit_()]

    def _switch(self) -> list[Any]:
        # args: bool preempt, struct task_struct *prev, struct task_struct *next, unsigned int prev_state
        count = [*asm.log2(R8, R0, tmp=R9)]
        if self._keyed:
            off = self._tgid_off if self.per_process else self._pid_off
            count += [*self._u32(R7, off, R9), asm.lsh64(R9, 32), asm.or64(R8, R9),
                      *asm.hist_increment(self.hist, R8, key_size=8, key_off=-24, create=True)]
        else:
            count += asm.hist_increment(self.hist, R8, max_slots=_SLOTS, key_off=-24)
        return [
            asm.st_mem("dw", R10, -32, 0),
            asm.ldx_mem("dw", R6, R1, 8), asm.ldx_mem("dw", R7, R1, 16), asm.ldx_mem("dw", R8, R1, 24),
            asm.jne(R8, 0, "next"), *self._enqueue(R6, "next"),  # prev still runnable: it waits again
            asm.label("next"),
            *([*self._u32(R7, self._tgid_off, R0), asm.jne(R0, self.pid, "out")] if self.pid else []),
            *self._u32(R7, self._pid_off, R0), asm.stx_mem("w", R10, R0, -4),
            asm.ld_map_fd(R1, self.start), asm.mov64(R2, R10), asm.add64(R2, -4), asm.call("map_lookup_elem"),
            asm.jeq(R0, 0, "out"), asm.ldx_mem("dw", R6, R0, 0),
            asm.call("ktime_get_ns"), asm.sub64(R0, R6), asm.jslt(R0, 0, "drop"), *ktime_to(UNITS[self.unit]),
            *count,
            asm.label("drop"),
            *self._u32(R7, self._pid_off, R0), asm.stx_mem("w", R10, R0, -4),
            asm.ld_map_fd(R1, self.start), asm.mov64(R2, R10), asm.add64(R2, -4), asm.call("map_delete_elem"),
            asm.label("out"), asm.mov64(R0, 0), asm.exit_(),
        ]

    def histogram(self) -> Histogram:
        """The waits so far (keyed by tgid with ``per_process``, by tid with ``per_thread``)."""
        if self._keyed:
            return Histogram.from_map(self.hist, key=HIGH32)
        return Histogram.from_map(self.hist)

    def clear(self) -> None:
        """Zero the histogram."""
        if self._keyed:
            self.hist.clear()
        else:
            for i in range(_SLOTS):
                self.hist[i] = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: unit and the histogram's ``to_dict()``."""
        return {"unit": self.unit, **self.histogram().to_dict()}

