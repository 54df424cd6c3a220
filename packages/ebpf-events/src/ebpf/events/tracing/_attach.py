"""Tracepoints, raw tracepoints, BTF-typed programs (tp_btf, fentry/fexit/fmod_ret) and perf_event programs."""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ebpf.core.errors import AttachError, EBPFError, NotSupportedError
from ebpf.core.links import BPFLink, Link, PerfEventLink
from ebpf.core.links import attach_perf_event as _core_attach_perf
from ebpf.core.links import attach_raw_tracepoint as _core_raw_tp
from ebpf.core.lowlevel import close_fd
from ebpf.core.lowlevel import perf as _perf
from ebpf.core.types import AttachType
from ebpf.events.tracing._links import MultiLink, check_program

if TYPE_CHECKING:  # pragma: no cover
    from ebpf.core.programs import Program

__all__ = [
    "attach_tracepoint",
    "list_tracepoints",
    "attach_raw_tracepoint",
    "attach_tp_btf",
    "attach_fentry",
    "attach_fexit",
    "attach_fmod_ret",
    "attach_tracing",
    "load_tracing_program",
    "attach_perf_event",
    "PERF_EVENTS",
    "parse_tracepoint",
]

#: Named perf events for :func:`attach_perf_event`: name -> (perf type, config).
PERF_EVENTS: dict[str, tuple[int, int]] = {
    "cpu-clock": (_perf.PERF_TYPE_SOFTWARE, 0),
    "task-clock": (_perf.PERF_TYPE_SOFTWARE, 1),
    "page-faults": (_perf.PERF_TYPE_SOFTWARE, 2),
    "context-switches": (_perf.PERF_TYPE_SOFTWARE, 3),
    "cpu-migrations": (_perf.PERF_TYPE_SOFTWARE, 4),
    "minor-faults": (_perf.PERF_TYPE_SOFTWARE, 5),
    "major-faults": (_perf.PERF_TYPE_SOFTWARE, 6),
    "cycles": (_perf.PERF_TYPE_HARDWARE, 0),
    "instructions": (_perf.PERF_TYPE_HARDWARE, 1),
    "cache-references": (_perf.PERF_TYPE_HARDWARE, 2),
    "cache-misses": (_perf.PERF_TYPE_HARDWARE, 3),
    "branch-instructions": (_perf.PERF_TYPE_HARDWARE, 4),
    "branch-misses": (_perf.PERF_TYPE_HARDWARE, 5),
    "bus-cycles": (_perf.PERF_TYPE_HARDWARE, 6),
    "ref-cycles": (_perf.PERF_TYPE_HARDWARE, 9),
}


def parse_tracepoint(category: str, name: str | None = None) -> tuple[str, str]:
    """``("syscalls", "sys_enter_execve")`` from ``"syscalls:sys_enter_execve"`` or ``"syscalls/..."``.

    :raises EBPFError: on a malformed name.
    """
    if name is None:
        if not isinstance(category, str):
            raise EBPFError(f"tracepoint must be 'category:name', not {category!r}")
        sep = ":" if ":" in category else "/"
        category, _, name = category.partition(sep)
    for part in (category, name):
        if not isinstance(part, str) or not part or "/" in part or ":" in part or part in (".", "..") \
                or any(c.isspace() for c in part):
            raise EBPFError(f"bad tracepoint name {category!r}:{name!r}: expected 'category:name'")
    return category, name


def list_tracepoints(category: str | None = None) -> list[str]:
    """The kernel's tracepoints as ``"category:name"`` (from tracefs ``events/``), sorted.

    :param category: only this category (``"syscalls"``); unknown categories give [].
    """
    from ebpf.core.system import ensure_tracefs

    root = os.path.join(ensure_tracefs(), "events")
    cats = [category] if category is not None else sorted(os.listdir(root))
    out: list[str] = []
    for cat in cats:
        if not isinstance(cat, str) or "/" in cat or cat in ("", ".", ".."):
            raise EBPFError(f"bad tracepoint category {cat!r}")
        d = os.path.join(root, cat)
        if not os.path.isdir(d):
            continue
        out.extend(f"{cat}:{n}" for n in sorted(os.listdir(d)) if os.path.exists(os.path.join(d, n, "id")))
    return out


def attach_tracepoint(program: Program, category: str, name: str | None = None, *, cookie: int = 0) -> PerfEventLink:
    """Attach a tracepoint program to ``category:name`` (``attach_tracepoint(p, "sched", "sched_process_exec")``
    or ``attach_tracepoint(p, "sched:sched_process_exec")``).

    Opens the tracepoint (its id from tracefs ``events/<category>/<name>/id``) as a perf event
    and attaches with a bpf link (Linux >= 5.15), else PERF_EVENT_IOC_SET_BPF.

    :raises EBPFError: wrong program type or malformed name; :raises AttachError: no such
        tracepoint (both before the attach syscalls).
    """
    check_program(program, ("tracepoint",), "attach_tracepoint")
    cat, tp = parse_tracepoint(category, name)
    try:
        tp_id = _perf.tracepoint_id(cat, tp)
    except NotSupportedError as exc:
        raise AttachError(f"no tracepoint {cat}:{tp} on this kernel ({exc}); see list_tracepoints()") from None
    fd = _perf.perf_event_open(_perf.PerfEventAttr(type=_perf.PERF_TYPE_TRACEPOINT, config=tp_id, sample_period=1,
                                                   wakeup_events=1), pid=-1, cpu=0)
    try:
        return _core_attach_perf(program, fd, cookie=cookie, description=f"{program.name or 'program'} on {cat}:{tp}")
    except BaseException:
        close_fd(fd)
        raise


def attach_raw_tracepoint(program: Program, name: str, *, cookie: int = 0) -> BPFLink:
    """Attach a raw_tracepoint program to raw tracepoint ``name`` (``"sys_enter"``, ``"sched_switch"``).

    :raises EBPFError: wrong program type or empty name.  :raises BPFSyscallError: ENOENT
        when there is no such tracepoint.

    Requires Linux >= 4.17.
    """
    check_program(program, ("raw_tracepoint", "raw_tracepoint_writable"), "attach_raw_tracepoint")
    if not isinstance(name, str) or not name or any(c.isspace() or c in "/:" for c in name):
        raise EBPFError(f"bad raw tracepoint name {name!r}")
    return _core_raw_tp(program, name, cookie)


_TRACING_KINDS = {
    "tp_btf": AttachType.TRACE_RAW_TP,
    "fentry": AttachType.TRACE_FENTRY,
    "fexit": AttachType.TRACE_FEXIT,
    "fmod_ret": AttachType.MODIFY_RETURN,
}


def attach_tracing(program: Program, kind: str | None = None, *, cookie: int = 0) -> BPFLink:
    """Attach a BTF-typed tracing program to the target it was loaded for (``ProgramSpec.attach_to``).

    :param kind: check the program is of this kind (``"tp_btf"``, ``"fentry"``, ``"fexit"``,
        ``"fmod_ret"``); None accepts any.
    :raises EBPFError: when the program is not a tracing program (of that kind).
    """
    check_program(program, ("tracing",), f"attach_{kind or 'tracing'}")
    if kind is not None:
        want = _TRACING_KINDS[kind]
        if program.expected_attach_type != want:
            got = program.expected_attach_type
            raise EBPFError(f"attach_{kind} needs a program loaded with expected_attach_type {want.lower_name}, "
                            f"not {got.lower_name if got is not None else None}")
    return _core_raw_tp(program, None, cookie)


def attach_tp_btf(program: Program, *, cookie: int = 0) -> BPFLink:
    """Attach a tp_btf program (loaded with ``attach_to="sched_process_exec"``). Requires Linux >= 5.5."""
    return attach_tracing(program, "tp_btf", cookie=cookie)


def attach_fentry(program: Program, *, cookie: int = 0) -> BPFLink:
    """Attach an fentry program (loaded with ``attach_to=<kernel function>``). Requires Linux >= 5.5."""
    return attach_tracing(program, "fentry", cookie=cookie)


def attach_fexit(program: Program, *, cookie: int = 0) -> BPFLink:
    """Attach an fexit program. Requires Linux >= 5.5."""
    return attach_tracing(program, "fexit", cookie=cookie)


def attach_fmod_ret(program: Program, *, cookie: int = 0) -> BPFLink:
    """Attach an fmod_ret program (only on functions allowing error injection). Requires Linux >= 5.7."""
    return attach_tracing(program, "fmod_ret", cookie=cookie)


def load_tracing_program(insns: Any, kind: str, target: str, **fields: Any) -> Program:
    """Load a BTF-typed tracing program: ``kind`` ``"tp_btf"``/``"fentry"``/``"fexit"``/``"fmod_ret"``
    on ``target`` (a raw tracepoint or kernel function, looked up in vmlinux BTF).

    :raises EBPFError: for an unknown kind.  :raises BTFError: unknown target.
    :raises BPFSyscallError: when the kernel refuses the load (EPERM for fentry under lockdown).
    """
    from ebpf.core.programs import load_program

    if kind not in _TRACING_KINDS:
        raise EBPFError(f"unknown tracing kind {kind!r}: one of {', '.join(_TRACING_KINDS)}")
    if not isinstance(target, str) or not target:
        raise EBPFError(f"bad {kind} target {target!r}")
    return load_program(prog_type="tracing", insns=insns, expected_attach_type=_TRACING_KINDS[kind],
                        attach_to=target, **fields)


def _event(event: str | tuple[int, int]) -> tuple[int, int]:
    if isinstance(event, str):
        if event not in PERF_EVENTS:
            raise EBPFError(f"unknown perf event {event!r}: one of {', '.join(PERF_EVENTS)} or (type, config)")
        return PERF_EVENTS[event]
    if isinstance(event, tuple) and len(event) == 2 and all(isinstance(x, int) and x >= 0 for x in event):
        return event
    raise EBPFError(f"perf event must be a name or (type, config), not {event!r}")


def attach_perf_event(program: Program, event: str | tuple[int, int] = "cpu-clock", *,
                      sample_period: int | None = None, sample_freq: int | None = None,
                      cpus: Iterable[int] | None = None, pid: int = -1, cookie: int = 0) -> MultiLink:
    """Run a perf_event program on samples of ``event`` (the profiler use case).

    :param event: a name from :data:`PERF_EVENTS` (``"cpu-clock"``, ``"cycles"``) or ``(type, config)``.
    :param sample_period: sample every N events (nanoseconds for the clocks).
    :param sample_freq: sample N times a second (default 99 when neither is given).
    :param cpus: the CPUs to sample (default: all online CPUs; one event each); with
        ``pid`` >= 0 and ``cpus`` None, one event following the process on any CPU.
    :returns: a :class:`MultiLink` of one :class:`~ebpf.core.links.PerfEventLink` per CPU.
    :raises EBPFError: wrong program type or bad arguments (before any syscall).
    """
    from ebpf.core.system import online_cpus

    check_program(program, ("perf_event",), "attach_perf_event")
    typ, config = _event(event)
    if sample_period is not None and sample_freq is not None:
        raise EBPFError("give sample_period or sample_freq, not both")
    value = sample_period if sample_period is not None else (sample_freq if sample_freq is not None else 99)
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise EBPFError(f"sample period/frequency must be a positive int, not {value!r}")
    freq = sample_period is None
    cpu_list = [-1] if pid >= 0 and cpus is None else sorted(set(online_cpus() if cpus is None else cpus))
    links: list[Link] = []
    try:
        for cpu in cpu_list:
            attr = _perf.PerfEventAttr(type=typ, config=config, sample_period=value,
                                       flags=_perf.ATTR_DISABLED | (_perf.ATTR_FREQ if freq else 0))
            fd = _perf.perf_event_open(attr, pid=pid, cpu=cpu)
            try:
                links.append(attach_perf_event_fd(program, fd, cookie, f"{event} cpu {cpu}"))
            except BaseException:
                close_fd(fd)
                raise
    except BaseException:
        for link in links:
            link.close()
        raise
    name = event if isinstance(event, str) else f"perf event {event}"
    return MultiLink(links, program, f"{program.name or 'program'} on {name} ({len(links)} events)")


def attach_perf_event_fd(program: Program, fd: int, cookie: int = 0, description: str = "") -> PerfEventLink:
    """Attach ``program`` to an already opened perf event ``fd`` (the link then owns it)."""
    return _core_attach_perf(program, fd, cookie=cookie, description=description)
