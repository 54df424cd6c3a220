"""ebpf-events's pluggy hook implementations: attach backends, event readers, feature probes.

Registered through the ``ebpf`` entry-point group.  Targets understood by ``program.attach``:

- tracepoint programs: ``"category:name"`` (``"syscalls:sys_enter_execve"``), ``cookie=``;
- raw_tracepoint programs: ``"sys_enter"``;
- tracing programs (tp_btf, fentry, fexit, fmod_ret): no target (it came from BTF at load);
- kprobe programs: ``"do_sys_openat2"``, ``"kprobe:func+0x10"``, ``"kretprobe:func"``;
  ``"uprobe:/path/or/lib:symbol"``, ``"uretprobe:libc.so.6:malloc"`` (``pid=`` option);
  ``"usdt:/path:provider:name"``; programs loaded for kprobe.multi / uprobe.multi take a list
  of symbols (``program.attach(["a", "b"])`` / ``program.attach(("/bin/x", ["f", "g"]))``);
- iterator programs (``iter/<target>``): no target; ``map=``, ``task=``, ``cgroup=`` options;
- perf_event programs: ``"cpu-clock"`` (default), ``"cycles"``, ... with ``sample_freq=``/``sample_period=``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ebpf.core.errors import EBPFError
from ebpf.core.plugins import AttachBackend, EventReader, FeatureProbe, hookimpl

if TYPE_CHECKING:
    from ebpf.core.demo import DemoStep

__all__ = [
    "ebpf_attach_backends",
    "ebpf_event_readers",
    "ebpf_features",
    "ebpf_cli_commands",
    "ebpf_demo_steps",
    "attach_kprobe_target",
]

_DIST = "ebpf-events"


def _tracepoint(program: Any, target: object = None, **options: Any) -> Any:
    from ebpf.events.tracing import attach_tracepoint

    if not isinstance(target, str):
        raise EBPFError(f"tracepoint programs attach to 'category:name', not {target!r}")
    return attach_tracepoint(program, target, **options)


def _raw_tp(program: Any, target: object = None, **options: Any) -> Any:
    from ebpf.events.tracing import attach_raw_tracepoint

    if not isinstance(target, str):
        raise EBPFError(f"raw tracepoint programs attach to a tracepoint name ('sys_enter'), not {target!r}")
    return attach_raw_tracepoint(program, target, **options)


def _tracing(program: Any, target: object = None, **options: Any) -> Any:
    from ebpf.events.tracing import attach_tracing

    if target is not None:
        raise EBPFError("tracing programs (tp_btf/fentry/fexit/fmod_ret) attach to the target they were loaded "
                        f"for (ProgramSpec.attach_to); pass no target, not {target!r}")
    return attach_tracing(program, **options)


def _split_path_target(rest: str, parts: int) -> list[str]:
    """``"/usr/lib/libc.so.6:malloc"`` -> [path, symbol]; the path itself holds no ':'."""
    pieces = rest.split(":")
    if len(pieces) < parts or not all(pieces[-(parts - 1):]):
        raise EBPFError(f"bad probe target {rest!r}")
    return [":".join(pieces[: len(pieces) - parts + 1]), *pieces[len(pieces) - parts + 1:]]


def attach_kprobe_target(program: Any, target: object = None, **options: Any) -> Any:
    """Attach a kprobe-type program from a target string (see the module docs)."""
    from ebpf.core.types import AttachType
    from ebpf.events import tracing

    if program.expected_attach_type == AttachType.TRACE_KPROBE_MULTI:
        return tracing.attach_kprobe_multi(program, target, **options)  # type: ignore[arg-type]
    if program.expected_attach_type == AttachType.TRACE_UPROBE_MULTI:
        if not (isinstance(target, tuple) and len(target) == 2):
            raise EBPFError("uprobe.multi programs attach to (binary, [symbols])")
        return tracing.attach_uprobe_multi(program, target[0], list(target[1]), **options)
    if not isinstance(target, str) or not target:
        raise EBPFError(f"kprobe programs attach to 'function', 'uprobe:/path:symbol' or 'usdt:/path:prov:name', "
                        f"not {target!r}")
    kind, sep, rest = target.partition(":")
    if not sep:
        return tracing.attach_kprobe(program, target, **options)
    if kind in ("kprobe", "kretprobe"):
        return tracing.attach_kprobe(program, rest, retprobe=kind == "kretprobe", **options)
    if kind in ("uprobe", "uretprobe"):
        path, symbol = _split_path_target(rest, 2)
        return tracing.attach_uprobe(program, path, symbol, retprobe=kind == "uretprobe", **options)
    if kind == "usdt":
        path, provider, name = _split_path_target(rest, 3)
        return tracing.attach_usdt(program, path, provider, name, **options)
    if target.startswith("/"):
        path, symbol = _split_path_target(target, 2)
        return tracing.attach_uprobe(program, path, symbol, **options)
    raise EBPFError(f"unknown probe kind {kind!r} in {target!r}")


def _iter(program: Any, target: object = None, **options: Any) -> Any:
    from ebpf.events.iterators import attach_iter

    if target is not None:
        raise EBPFError(f"iterator programs take map=/task=/cgroup= options, not a target ({target!r})")
    return attach_iter(program, **options)


def _perf_event(program: Any, target: object = None, **options: Any) -> Any:
    from ebpf.events.tracing import attach_perf_event

    return attach_perf_event(program, "cpu-clock" if target is None else target, **options)  # type: ignore[arg-type]


@hookimpl
def ebpf_attach_backends() -> list[AttachBackend]:
    """Tracepoint, raw tracepoint, tracing (tp_btf/fentry/fexit/fmod_ret), kprobe/uprobe/USDT, perf_event, iter."""
    return [
        AttachBackend("tracepoint", [("tracepoint", None)], _tracepoint, _DIST),
        AttachBackend("raw_tracepoint", [("raw_tracepoint", None), ("raw_tracepoint_writable", None)], _raw_tp,
                      _DIST),
        AttachBackend("tracing", [("tracing", "trace_raw_tp"), ("tracing", "trace_fentry"),
                                  ("tracing", "trace_fexit"), ("tracing", "modify_return")], _tracing, _DIST),
        AttachBackend("kprobe/uprobe/usdt", [("kprobe", None)], attach_kprobe_target, _DIST),
        AttachBackend("perf_event", [("perf_event", None)], _perf_event, _DIST),
        AttachBackend("iter", [("tracing", "trace_iter")], _iter, _DIST),
    ]


def _open_ringbuf(map: Any, **options: Any) -> Any:
    from ebpf.events.ringbuf import RingBuffer

    return RingBuffer(map, **options)


def _open_perf(map: Any, **options: Any) -> Any:
    from ebpf.events.perf import PerfBuffer

    return PerfBuffer(map, **options)


@hookimpl
def ebpf_event_readers() -> list[EventReader]:
    """RingBuffer for ringbuf maps, PerfBuffer for perf event arrays."""
    return [EventReader("ringbuf", _open_ringbuf, "ringbuf"), EventReader("perf_event_array", _open_perf, "perf")]


def _probe_uprobes() -> None:
    import os

    from ebpf.core.errors import UnsupportedFeatureError

    if not os.path.exists("/sys/bus/event_source/devices/uprobe"):
        raise UnsupportedFeatureError("uprobes", "4.17", "no uprobe PMU in /sys/bus/event_source/devices")


def _probe_kprobes() -> None:
    from ebpf.core.features import have_kprobes

    have_kprobes()


def _probe_fentry() -> None:
    from ebpf.core.features import have_fentry

    have_fentry()


@hookimpl
def ebpf_features() -> list[FeatureProbe]:
    """Probes shown by ``ebpf check``."""
    return [
        FeatureProbe("events.kprobes", _probe_kprobes, "kprobe/kretprobe attach"),
        FeatureProbe("events.uprobes", _probe_uprobes, "uprobe/uretprobe/USDT attach (uprobe PMU)"),
        FeatureProbe("events.fentry", _probe_fentry, "fentry/fexit/fmod_ret programs"),
        FeatureProbe("events.iter_task", _probe_iter_task, "BPF iterators (iter/task)"),
        FeatureProbe("events.iter_map_elem", _probe_iter_map_elem, "map element iterators (iter/bpf_map_elem)"),
        FeatureProbe("events.user_ringbuf", _probe_user_ringbuf, "user ring buffer (UserRingBuffer)"),
    ]


def _probe_iter_task() -> None:
    from ebpf.events.iterators import have_iter_target

    have_iter_target("task")


def _probe_iter_map_elem() -> None:
    from ebpf.events.iterators import have_iter_target

    have_iter_target("bpf_map_elem")


def _probe_user_ringbuf() -> None:
    from ebpf.core.features import have_helper, have_map_type

    have_map_type("user_ringbuf")
    have_helper("tracepoint", "user_ringbuf_drain")


@hookimpl
def ebpf_cli_commands(subparsers: Any) -> None:
    """``ebpf trace exec|open|tcp-connect``, ``ebpf list kfuncs``."""
    from ebpf.events import _list_cli
    from ebpf.events._trace_cli import add_commands

    add_commands(subparsers)
    _list_cli.add_commands(subparsers)


def _exec_step(ctx: Any) -> None:
    from ebpf.events._demo import exec_step

    exec_step(ctx)


@hookimpl
def ebpf_demo_steps() -> list[DemoStep]:
    """The execve tracer of ``ebpf demo``."""
    from ebpf.core.demo import DemoStep  # deferred: start-up time (only `ebpf demo` needs it)

    return [DemoStep("trace-exec", "an execve tracer: tracepoint + ring buffer (ebpf-events)", _exec_step,
                     order=20, distribution=_DIST)]
