"""``ebpf export`` as a process: /programs with BPF run statistics, ``--otlp-endpoint`` from the command
line, and SIGINT / SIGTERM detaching every program before a clean exit."""

from __future__ import annotations

import json
import signal
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ebpf.core as bpf
import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

pytestmark = pytest.mark.privileged


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return bytes(resp.read())


def _loaded_ids() -> set[int]:
    return {p.id for p in bpf.programs()}


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_detaches_everything_and_exits_0(signum: int, run_exporter: Callable[[list[str]], Any],
                                                tmp_path: Path, getppid_config: str,
                                                getppid_calls: Callable[[str, int], None],
                                                wait_for: Callable[..., Any]) -> None:
    cfg = tmp_path / "export.yaml"
    cfg.write_text(getppid_config + "  - name: runqlat\n    builtin: runqlat\n")
    exporter = run_exporter(["--config", str(cfg)])
    programs = json.loads(_get(exporter.url("/programs")))
    ids = {prog["id"] for entry in programs for prog in entry["programs"]}
    assert len(ids) >= 2 and ids <= _loaded_ids()
    getppid_calls("sig" + uuid.uuid4().hex[:10], 50)

    def ran() -> bool:  # BPF stats are on while the exporter runs: the count and the time grow
        (prog,) = next(e for e in json.loads(_get(exporter.url("/programs"))) if e["config"] == "getppid")["programs"]
        return bool(prog["run_cnt"] >= 50 and prog["run_time_ns"] > 0)

    wait_for(ran, 30, "run_cnt/run_time_ns of the getppid program in /programs")
    exporter.proc.send_signal(signum)
    assert exporter.proc.wait(60) == 0
    assert not ids & _loaded_ids(), f"programs still loaded after {signal.Signals(signum).name}"


def test_otlp_endpoint_from_the_command_line(run_exporter: Callable[[list[str]], Any], tmp_path: Path,
                                             receiver: tuple[str, list[ExportMetricsServiceRequest]],
                                             getppid_config: str, getppid_calls: Callable[[str, int], None],
                                             wait_for: Callable[..., Any]) -> None:
    endpoint, got = receiver
    cfg = tmp_path / "export.yaml"
    cfg.write_text(getppid_config)
    comm = "cli" + uuid.uuid4().hex[:10]
    exporter = run_exporter(["--config", str(cfg), "--otlp-endpoint", endpoint, "--otlp-interval", "0.5"])
    getppid_calls(comm, 42)

    def pushed() -> bool:
        for req in list(got):
            for rm in req.resource_metrics:
                for sm in rm.scope_metrics:
                    for m in sm.metrics:
                        if m.name != "exp_test_getppid_total":
                            continue
                        for p in m.sum.data_points:
                            attrs = {a.key: a.value.string_value for a in p.attributes}
                            if attrs == {"comm": comm} and p.as_int == 42:
                                return True
        return False

    wait_for(pushed, 30, "the getppid counter pushed over OTLP")
    assert exporter.stop() == 0


def test_registered_through_the_ebpf_entry_point_group() -> None:
    """Found as a third-party plugin would be: the ``ebpf`` group names our hook module, pluggy loads it."""
    from importlib.metadata import entry_points

    from ebpf.core.plugins import plugin_manager

    (ep,) = [e for e in entry_points(group="ebpf") if e.name == "export"]
    assert ep.value == "ebpf.export.plugin" and ep.dist is not None and ep.dist.name == "ebpf-export"
    assert any(getattr(p, "__name__", "") == "ebpf.export.plugin" for p in plugin_manager().get_plugins())
