"""deploy/: the DaemonSet runs the exporter exactly as written; Prometheus accepts the scrape config;
every dashboard query names metrics the built-ins export."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

DEPLOY = Path(__file__).resolve().parents[3] / "deploy"


def container() -> dict[str, Any]:
    ds = yaml.safe_load((DEPLOY / "daemonset.yaml").read_text())
    assert ds["kind"] == "DaemonSet"
    spec = ds["spec"]["template"]["spec"]
    assert spec["hostPID"] is True and spec["hostNetwork"] is True
    (c,) = spec["containers"]
    assert c["securityContext"]["privileged"] is True
    mounts = {m["mountPath"] for m in c["volumeMounts"]}
    assert {"/sys/fs/bpf", "/sys/kernel/tracing", "/sys/kernel/debug"} <= mounts
    return dict(c)


def test_the_daemonset_command_runs_the_exporter(wait_for: Callable[..., Any]) -> None:
    c = container()
    env = {e["name"]: "127.0.0.1" for e in c["env"] if e["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"}
    # the kubelet expands $(VAR) from the container's env: the pod IP is loopback here
    argv = [re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], a) for a in c["command"]]
    assert argv[:2] == ["ebpf", "export"]
    port = c["readinessProbe"]["httpGet"]["port"]
    proc = subprocess.Popen([sys.executable, "-m", "ebpf.core.cli", *argv[1:]], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert f"on http://127.0.0.1:{port}/metrics" in line, line + (proc.stderr.read() if proc.stderr else "")
        url = f"http://127.0.0.1:{port}"
        with urllib.request.urlopen(url + c["readinessProbe"]["httpGet"]["path"], timeout=10) as resp:
            assert resp.read() == b"ok\n"
        body = wait_for(lambda: urllib.request.urlopen(url + "/metrics", timeout=10).read().decode(), 30, "/metrics")
        exported = set(re.findall(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{| )", body, re.M))
        for name, kind in re.findall(r"^# TYPE (\S+) (\S+)$", body, re.M):  # families with no series yet too
            exported |= {name + s for s in ("_bucket", "_sum", "_count")} if kind == "histogram" else {name}
        dashboard = json.loads((DEPLOY / "grafana-dashboard.json").read_text())
        for panel in dashboard["panels"]:
            for target in panel["targets"]:
                names = set(re.findall(r"\b([a-z_]+_(?:total|bucket|count|sum))\b", target["expr"]))
                assert names and names <= exported, (panel["title"], names - exported)
    finally:
        proc.terminate()
        assert proc.wait(60) == 0
        for stream in (proc.stdout, proc.stderr):
            if stream:
                stream.close()


def test_prometheus_accepts_the_scrape_config(prometheus_bin: str, tmp_path: Path) -> None:
    cfg = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    (job,) = cfg["scrape_configs"]
    assert job["kubernetes_sd_configs"] == [{"role": "pod"}]
    # Debian's Prometheus is built without Kubernetes discovery: promtool checks everything else of the
    # job (relabel rules included) with a file-based discovery in its place.
    del job["kubernetes_sd_configs"]
    job["file_sd_configs"] = [{"files": [str(tmp_path / "targets.json")]}]
    (tmp_path / "targets.json").write_text('[{"targets": ["127.0.0.1:9435"]}]')
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(cfg))
    check = subprocess.run(["promtool", "check", "config", str(tmp_path / "prometheus.yml")], capture_output=True,
                           text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
