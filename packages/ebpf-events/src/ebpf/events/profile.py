"""A sampling CPU profiler and off-CPU (blocked time) analysis, with flame graphs: bcc's
``profile`` and ``offcputime`` with no LLVM and no ``perf`` tool.

    from ebpf.events.profile import Profiler

    with Profiler(frequency=99, pid=1234) as prof:
        time.sleep(5)
    profile = prof.profile                       # or: prof.start(); ...; profile = prof.stop()
    print(profile.top(10))
    profile.flamegraph("cpu.svg")                # interactive SVG: click to zoom, search, tooltips
    open("cpu.folded", "w").write(profile.folded())

:class:`Profiler` attaches a perf_event program to every CPU (``cpu-clock`` at ``frequency`` Hz,
through :func:`ebpf.events.tracing.attach_perf_event`) that counts samples per (pid, user stack,
kernel stack, comm) in a hash map; stacks go to a :class:`~ebpf.core.maps.StackTraceMap`.
:class:`OffCpuProfiler` hooks the ``sched_switch`` raw tracepoint: when a task leaves the CPU
its stacks and the time are kept; when it comes back, the blocked microseconds are added under
those stacks.  ``stop()`` reads the maps, names every frame through :mod:`ebpf.events.symbols`
and returns a :class:`Profile`.  Frames that cannot be named stay in the profile as
``[unknown]`` and :attr:`Profile.warnings` says why (process gone, kptr_restrict, no symbols).

User stacks are walked by the kernel through frame pointers: code built without them
(``-fomit-frame-pointer``, the default at -O2 in many distributions) gives short user stacks.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from ebpf.core.errors import EBPFError
from ebpf.core.records import dataclass, field
from ebpf.events._profile_bpf import KEY, NO_STACK, START_VALUE, cpu_program, offcpu_program
from ebpf.events._profile_data import Frame, FunctionStat, Profile, Sample

__all__ = ["Profiler", "OffCpuProfiler", "Profile", "Sample", "Frame", "FunctionStat"]


# kernel functions that run the BPF program itself (bpf_prog_<tag>_<name> in kallsyms)
_INSTRUMENTATION = ("bpf_prog_", "bpf_trace_run", "__traceiter_", "__bpf_trace_", "bpf_dispatcher")


def _positive_int(value: object, what: str, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0 or value >= 1 << 31:
        raise EBPFError(f"{what} must be a positive int, got {value!r}")


@dataclass
class _Session:
    """What a running profiler owns, closed in reverse order."""

    closers: list[Callable[[], None]] = field(default_factory=list)

    def close(self) -> None:
        while self.closers:
            self.closers.pop()()


class _BaseProfiler:
    """Shared by :class:`Profiler` and :class:`OffCpuProfiler`: maps, symbolization, lifecycle."""

    unit = "samples"
    kind = "cpu"

    def __init__(self, pid: int | None, kernel: bool, user: bool, stack_depth: int, max_stacks: int) -> None:
        _positive_int(pid, "pid", allow_none=True)
        _positive_int(max_stacks, "max_stacks")
        if not isinstance(stack_depth, int) or isinstance(stack_depth, bool) or not 1 <= stack_depth <= 127:
            raise EBPFError(f"stack_depth must be an int in 1..127, got {stack_depth!r}")
        if not (kernel or user):
            raise EBPFError("nothing to profile: kernel=False and user=False")
        self.pid, self.kernel, self.user = pid, kernel, user
        self.stack_depth, self.max_stacks = stack_depth, max_stacks
        self._session: _Session | None = None
        self._started = 0.0
        self._procsyms: dict[int, Any] = {}
        #: the last :class:`Profile` returned by :meth:`stop`
        self.profile: Profile | None = None

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        """Create the maps, load and attach the program(s).

        :raises EBPFError: when already started, or loading/attaching fails (nothing is left behind).
        """
        from ebpf.core.maps import create_hash_map, create_stack_trace_map

        if self._session is not None:
            raise EBPFError("the profiler is already running")
        if self.pid is not None and not os.path.exists(f"/proc/{self.pid}"):
            raise EBPFError(f"no process {self.pid}")
        session = _Session()
        try:
            self.stacks = create_stack_trace_map(self.max_stacks, depth=self.stack_depth, name="prof_stacks")
            session.closers.append(self.stacks.close)
            self.counts = create_hash_map(self.max_stacks, key_size=KEY.size, value_size=8, name="prof_counts")
            session.closers.append(self.counts.close)
            self._attach(session)
        except BaseException:
            session.close()
            raise
        self._session = session
        self._started = time.monotonic()
        if self.pid is not None:  # read its maps now: it may be gone when we stop
            self._remember(self.pid)

    def _attach(self, session: _Session) -> None:
        raise NotImplementedError

    def stop(self) -> Profile:
        """Detach, read the maps, name the frames, release everything.

        :returns: the :class:`Profile` (also kept in :attr:`profile`).
        :raises EBPFError: when the profiler is not running.
        """
        if self._session is None:
            raise EBPFError("the profiler is not running")
        from ebpf.events.symbols import KernelSymbols

        session, self._session = self._session, None
        try:
            session.closers.pop()()  # the link (attached last): counting stops here
            duration = time.monotonic() - self._started
            # kallsyms while our program is still loaded (its frames appear in off-CPU stacks)
            kernel_syms = KernelSymbols.shared(reload=True) if self.kernel else None
            while len(session.closers) > 2:  # the programs (and off-CPU's start map) next
                session.closers.pop()()
            self.profile = self._read(duration, kernel_syms)
        finally:
            session.close()
        return self.profile

    def close(self) -> None:
        """Stop without reading (idempotent)."""
        if self._session is not None:
            session, self._session = self._session, None
            session.close()

    def __enter__(self) -> _BaseProfiler:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._session is not None:
            if exc[0] is None:
                self.stop()
            else:
                self.close()

    # -- reading ---------------------------------------------------------------------------
    def _remember(self, pid: int) -> Any:
        from ebpf.events.symbols import process_symbols

        if pid not in self._procsyms:
            try:
                self._procsyms[pid] = process_symbols(pid)
            except EBPFError as exc:
                self._procsyms[pid] = exc
        return self._procsyms[pid]

    def _read(self, duration: float, kernel_syms: Any) -> Profile:
        from ebpf.core.maps import stack_id_error

        warnings: list[str] = []
        if kernel_syms is not None and kernel_syms.reason:
            warnings.append(kernel_syms.reason)
        errors: Counter[str] = Counter()
        self._gone: dict[int, str] = {}
        stack_cache: dict[tuple[int, int], list[Frame]] = {}
        kstack_cache: dict[int, list[Frame]] = {}
        samples = []
        for raw_key, value in self.counts.items():
            pid, user_id, kernel_id, comm_raw = KEY.unpack(raw_key)
            comm = comm_raw.split(b"\0", 1)[0].decode("utf-8", "replace")
            user: list[Frame] = []
            kernel: list[Frame] = []
            if self.user and user_id != NO_STACK:
                if user_id >= 0:
                    if (pid, user_id) not in stack_cache:
                        stack_cache[pid, user_id] = self._user_frames(pid, comm, user_id, warnings)
                    user = stack_cache[pid, user_id]
                elif not (user_id == -14 and pid == 0):
                    errors[f"user stack {stack_id_error(user_id)}"] += value
            if self.kernel and kernel_id != NO_STACK:
                if kernel_id >= 0:
                    if kernel_id not in kstack_cache:
                        kstack_cache[kernel_id] = self._kernel_frames(kernel_id, kernel_syms)
                    kernel = kstack_cache[kernel_id]
                elif kernel_id != -14:  # EFAULT: the sample hit user mode, there is no kernel stack
                    errors[f"kernel stack {stack_id_error(kernel_id)}"] += value
            samples.append(Sample(pid, comm, user, kernel, value))
        if self._gone:
            names = ", ".join(f"pid {p} ({c})" for p, c in sorted(self._gone.items())[:10])
            more = f" and {len(self._gone) - 10} more" if len(self._gone) > 10 else ""
            warnings.append(f"{len(self._gone)} process(es) exited before their symbols were read, their user frames "
                            f"are unnamed: {names}{more}")
        for what, n in sorted(errors.items()):
            if "EFAULT" in what and what.startswith("user"):
                continue  # kernel threads have no user stack: not worth a warning
            warnings.append(f"{n} {self.unit} without a {what}")
        return Profile(samples, unit=self.unit, kind=self.kind, duration=duration, warnings=warnings,
                       errors=dict(errors))

    def _user_frames(self, pid: int, comm: str, stack_id: int, warnings: list[str]) -> list[Frame]:
        from ebpf.core.errors import KeyNotFoundError

        try:
            ips = self.stacks.stack(stack_id)
        except KeyNotFoundError:
            return []
        procsyms = self._remember(pid)
        if isinstance(procsyms, EBPFError):
            self._gone[pid] = comm
            return [Frame("[unknown]", "", "user", ip) for ip in ips]
        frames = []
        for ip, sym in zip(ips, procsyms.resolve_many(ips)):
            if sym is None:
                module = procsyms.module_of(ip) or ""
                frames.append(Frame("[unknown]", module, "user", ip))
            else:
                frames.append(Frame(sym.name, sym.module, sym.kind, ip))
        for module, reason in procsyms.reasons().items():
            note = f"{comm} ({pid}): {reason}"
            if any(f.module == module for f in frames) and note not in warnings:
                warnings.append(note)
        return frames

    def _kernel_frames(self, stack_id: int, kernel_syms: Any) -> list[Frame]:
        from ebpf.core.errors import KeyNotFoundError

        try:
            ips = self.stacks.stack(stack_id)
        except KeyNotFoundError:
            return []
        frames = []
        for ip in ips:
            sym = kernel_syms.resolve(ip)
            frames.append(Frame(sym.name, sym.module, "kernel", ip) if sym else Frame("[unknown]", "kernel", "kernel", ip))
        # the innermost frames of a tracepoint-made stack are our own instrumentation: drop them
        n = 0
        while n < len(frames) and frames[n].name.startswith(_INSTRUMENTATION):
            n += 1
        return frames[n:] if n < len(frames) else frames


class Profiler(_BaseProfiler):
    """Sample on-CPU stacks ``frequency`` times a second on every CPU (or one).

    :param frequency: samples per second per CPU (99 avoids lock-step with timers).
    :param pid: only this process (all threads); None: every process.
    :param cpu: only this CPU; None: every online CPU.
    :param kernel: collect kernel stacks.
    :param user: collect user stacks.
    :param idle: count the idle task too.
    :param stack_depth: frames kept per stack (1..127).
    :param max_stacks: distinct stacks (and counts entries) kept.
    :raises EBPFError: on bad arguments (before any syscall).
    """

    unit = "samples"
    kind = "cpu"

    def __init__(self, frequency: int = 99, pid: int | None = None, cpu: int | None = None, kernel: bool = True,
                 user: bool = True, *, idle: bool = False, stack_depth: int = 127, max_stacks: int = 16384) -> None:
        """Check the arguments; nothing is loaded until :meth:`start`."""
        super().__init__(pid, kernel, user, stack_depth, max_stacks)
        _positive_int(frequency, "frequency")
        if cpu is not None and (isinstance(cpu, bool) or not isinstance(cpu, int) or cpu < 0):
            raise EBPFError(f"cpu must be a CPU number >= 0, got {cpu!r}")
        self.frequency, self.cpu, self.idle = frequency, cpu, idle

    def _attach(self, session: _Session) -> None:
        from ebpf.core.programs import load_program
        from ebpf.events.tracing import attach_perf_event

        insns = cpu_program(self.stacks, self.counts, pid=self.pid, user=self.user, kernel=self.kernel,
                            idle=self.idle)
        prog = load_program(prog_type="perf_event", insns=insns, name="ebpf_profile")
        session.closers.append(prog.close)
        link = attach_perf_event(prog, "cpu-clock", sample_freq=self.frequency,
                                 cpus=None if self.cpu is None else [self.cpu])
        session.closers.append(link.close)


class OffCpuProfiler(_BaseProfiler):
    """Time spent off-CPU (blocked or waiting to run), per stack, in microseconds.

    :param pid: only this process; None: every process.
    :param min_block_us: ignore blocks shorter than this.
    :param max_block_us: ignore blocks longer than this (None: no limit).
    :param kernel: collect kernel stacks (where it blocked).
    :param user: collect user stacks.
    :raises EBPFError: on bad arguments (before any syscall).
    """

    unit = "us"
    kind = "offcpu"

    def __init__(self, pid: int | None = None, min_block_us: int = 1, max_block_us: int | None = None,
                 kernel: bool = True, user: bool = True, *, stack_depth: int = 127, max_stacks: int = 16384,
                 max_tasks: int = 16384) -> None:
        """Check the arguments; nothing is loaded until :meth:`start`."""
        super().__init__(pid, kernel, user, stack_depth, max_stacks)
        if isinstance(min_block_us, bool) or not isinstance(min_block_us, int) or not 0 <= min_block_us < 1 << 31:
            raise EBPFError(f"min_block_us must be an int >= 0, got {min_block_us!r}")
        _positive_int(max_block_us, "max_block_us", allow_none=True)
        _positive_int(max_tasks, "max_tasks")
        self.min_block_us, self.max_block_us, self.max_tasks = min_block_us, max_block_us, max_tasks

    def _attach(self, session: _Session) -> None:
        from ebpf.core.btf import Struct, load_vmlinux
        from ebpf.core.maps import create_lru_hash_map
        from ebpf.core.programs import load_program
        from ebpf.events.tracing import attach_raw_tracepoint

        task = load_vmlinux().find("task_struct")
        if not isinstance(task, Struct):
            raise EBPFError("the kernel's BTF has no struct task_struct (needed to read the next task's pid)")
        start = create_lru_hash_map(self.max_tasks, key_size=4, value_size=START_VALUE.size, name="offcpu_start")
        session.closers.append(start.close)
        insns = offcpu_program(self.stacks, self.counts, start, pid_offset=task.member("pid").offset, pid=self.pid,
                               user=self.user, kernel=self.kernel, min_block_us=self.min_block_us,
                               max_block_us=self.max_block_us)
        prog = load_program(prog_type="raw_tracepoint", insns=insns, name="ebpf_offcpu")
        session.closers.append(prog.close)
        link = attach_raw_tracepoint(prog, "sched_switch")
        session.closers.append(link.close)
