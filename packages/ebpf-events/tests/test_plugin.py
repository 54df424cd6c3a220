"""The plugin: found by ebpf-core, its attach backends, event readers and feature probes."""

from __future__ import annotations

import os
from importlib import metadata
from typing import Any

import ebpf.events
import ebpf.events.plugin as plugin
import pytest
import tomllib
from ebpf.core import asm, plugins
from ebpf.core.errors import EBPFError
from ebpf.core.maps import create_array_map
from ebpf.core.programs import load_program
from ebpf.core.types import MapType, ProgType
from ebpf.events.tracing import MultiLink

R0 = asm.R0
HERE = os.path.dirname(os.path.abspath(__file__))


def test_entry_point_declared_and_installed_metadata_agrees() -> None:
    with open(os.path.join(HERE, "..", "pyproject.toml"), "rb") as f:
        project = tomllib.load(f)
    assert project["project"]["entry-points"]["ebpf"]["events"] == "ebpf.events.plugin"
    try:
        metadata.distribution("ebpf-events")
    except metadata.PackageNotFoundError:
        return  # a source checkout on PYTHONPATH: core finds the plugin by module name
    eps = {ep.name: ep.value for ep in metadata.entry_points(group="ebpf")}
    assert eps.get("events") == "ebpf.events.plugin"


def test_core_finds_backends_and_readers() -> None:
    names = {b.name: b for b in plugins.attach_backends()}
    assert {"tracepoint", "raw_tracepoint", "tracing", "kprobe/uprobe/usdt", "perf_event"} <= set(names)
    assert all(names[n].distribution == "ebpf-events" for n in ("tracepoint", "perf_event"))
    served = {p for b in plugins.attach_backends() for p, _ in b.serves}
    assert {ProgType.TRACEPOINT, ProgType.KPROBE, ProgType.RAW_TRACEPOINT, ProgType.TRACING,
            ProgType.PERF_EVENT} <= served
    readers = {r.map_type for r in plugins.event_readers()}
    assert {MapType.RINGBUF, MapType.PERF_EVENT_ARRAY} <= readers
    assert not [b for b in plugins.broken_plugins() if b.name == "events"]
    assert ebpf.events.ringbuf.__name__ == "ebpf.events.ringbuf" and "tracing" in dir(ebpf.events)


def test_feature_probes_report_this_machine() -> None:
    results = plugins.run_feature_probes()
    assert results["events.uprobes"] is None  # the uprobe PMU exists here
    assert "events.kprobes" in results and "events.fentry" in results


@pytest.mark.privileged
def test_perf_event_program_through_program_attach() -> None:
    with create_array_map(1, value_size=8) as counts, \
            load_program(prog_type="perf_event", insns=[asm.mov64(R0, 0), asm.exit_()]) as prog, \
            prog.attach("cpu-clock", sample_freq=50) as link:
        assert isinstance(link, MultiLink) and link.links and counts.max_entries == 1
    assert link.closed


@pytest.mark.privileged
def test_bad_targets_are_clear_errors() -> None:
    with load_program(prog_type="tracepoint", insns=[asm.mov64(R0, 0), asm.exit_()]) as tp, \
            load_program(prog_type="kprobe", insns=[asm.mov64(R0, 0), asm.exit_()]) as kp, \
            load_program(prog_type="raw_tracepoint", insns=[asm.mov64(R0, 0), asm.exit_()]) as rt:
        for prog, target, match in ((tp, None, "category:name"), (rt, 5, "tracepoint name"),
                                    (kp, None, "kprobe programs attach"), (kp, "nope:x", "unknown probe kind"),
                                    (kp, "uprobe:/bin/true", "bad probe target")):
            with pytest.raises(EBPFError, match=match):
                prog.attach(target)


def test_probe_target_parsing(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[Any, ...]] = []
    from ebpf.events import tracing

    monkeypatch.setattr(tracing, "attach_uprobe", lambda p, *a, **k: calls.append(("uprobe", *a, k)))
    monkeypatch.setattr(tracing, "attach_usdt", lambda p, *a, **k: calls.append(("usdt", *a, k)))
    monkeypatch.setattr(tracing, "attach_kprobe", lambda p, *a, **k: calls.append(("kprobe", *a, k)))

    class Prog:
        expected_attach_type = None

    plugin.attach_kprobe_target(Prog(), "uretprobe:/usr/lib/libc.so.6:malloc", pid=3)
    plugin.attach_kprobe_target(Prog(), "usdt:/usr/bin/python3.11:python:function__entry")
    plugin.attach_kprobe_target(Prog(), "kretprobe:vfs_read+4")
    plugin.attach_kprobe_target(Prog(), "/bin/bash:readline")
    assert calls == [
        ("uprobe", "/usr/lib/libc.so.6", "malloc", {"retprobe": True, "pid": 3}),
        ("usdt", "/usr/bin/python3.11", "python", "function__entry", {}),
        ("kprobe", "vfs_read+4", {"retprobe": True}),
        ("uprobe", "/bin/bash", "readline", {}),
    ]
