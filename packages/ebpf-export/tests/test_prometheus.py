"""A real Prometheus server scrapes the exporter; promtool accepts the exposition."""

from __future__ import annotations

import json
import subprocess
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics

RUNQLAT = "  - name: runqlat\n    builtin: runqlat\n"


def fetch(url: str, headers: dict[str, str] | None = None) -> bytes:
    req = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return bytes(resp.read())


@pytest.fixture
def prometheus(prometheus_bin: str, tmp_path: Path, free_port: Callable[[], int],
               wait_for: Callable[..., Any]) -> Iterator[Callable[[int], int]]:
    """Start Prometheus on loopback scraping 127.0.0.1:<port> every second; yields a starter -> its port."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(target_port: int) -> int:
        port = free_port()
        cfg = tmp_path / "prometheus.yml"
        cfg.write_text("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
                       "scrape_configs:\n  - job_name: ebpf\n    static_configs:\n"
                       f"      - targets: ['127.0.0.1:{target_port}']\n")
        procs.append(subprocess.Popen(
            [prometheus_bin, f"--config.file={cfg}", f"--storage.tsdb.path={tmp_path / 'data'}",
             f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        wait_for(lambda: fetch(f"http://127.0.0.1:{port}/-/ready"), 60, "Prometheus to be ready")
        return port

    yield start
    for proc in procs:
        proc.terminate()
        proc.wait(30)


def query(port: int, expr: str) -> list[dict[str, Any]]:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    body = json.loads(fetch(url))
    assert body["status"] == "success", body
    return list(body["data"]["result"])


def test_prometheus_scrapes_the_series_a_child_process_causes(
        run_exporter: Callable[[list[str]], Any], prometheus: Callable[[int], int],
        getppid_calls: Callable[[str, int], None], wait_for: Callable[..., Any], tmp_path: Path,
        getppid_config: str) -> None:
    cfg = tmp_path / "export.yaml"
    cfg.write_text(getppid_config + RUNQLAT)
    exporter = run_exporter(["--config", str(cfg)])
    prom = prometheus(exporter.port)
    comm = "prm" + uuid.uuid4().hex[:10]
    getppid_calls(comm, 1234)

    def arrived() -> list[dict[str, Any]]:
        return [r for r in query(prom, f'exp_test_getppid_total{{comm="{comm}"}}') if r["value"][1] == "1234"]

    (series,) = wait_for(arrived, 60, "the getppid series in Prometheus")  # type: ignore[misc]
    assert series["metric"]["job"] == "ebpf" and series["metric"]["instance"] == f"127.0.0.1:{exporter.port}"
    subprocess.run(["sh", "-c", "for i in 1 2 3 4 5 6 7 8 9 10; do sleep 0.01; done"], check=True)
    counted = wait_for(lambda: [r for r in query(prom, "run_queue_latency_seconds_count") if float(r["value"][1]) > 0],
                       60, "the runqlat histogram in Prometheus")
    assert counted
    buckets = query(prom, "run_queue_latency_seconds_bucket")
    assert {r["metric"]["le"] for r in buckets} >= {"1e-06", "0.001024", "+Inf"}
    quantile = query(prom, "histogram_quantile(0.99, run_queue_latency_seconds_bucket)")
    assert quantile and float(quantile[0]["value"][1]) > 0

    # promtool lints the text format; the OpenMetrics form must parse with the reference parser
    check = subprocess.run(["promtool", "check", "metrics"], input=fetch(exporter.url()), capture_output=True,
                           timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    om = fetch(exporter.url(), {"Accept": "application/openmetrics-text; version=1.0.0"}).decode()
    families = {f.name: f for f in parse_openmetrics(om)}
    assert families["exp_test_getppid"].type == "counter" and families["run_queue_latency_seconds"].type == "histogram"
    programs = json.loads(fetch(exporter.url("/programs")))
    assert {p["config"] for p in programs} == {"getppid", "runqlat"}
    assert fetch(exporter.url("/healthz")) == b"ok\n"
    assert exporter.stop() == 0
