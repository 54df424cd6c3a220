"""OTLP/HTTP push: a local receiver decodes the protobuf request and finds the metric and its attributes."""

from __future__ import annotations

import gzip
import threading
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest
from ebpf.export import Exporter, parse_config
from ebpf.export.otlp import OtlpPusher
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)

RUNQLAT = "  - name: runqlat\n    builtin: runqlat\n"


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[ExportMetricsServiceRequest]]]:
    """An OTLP/HTTP metrics receiver on loopback; yields (endpoint, decoded requests)."""
    got: list[ExportMetricsServiceRequest] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            req = ExportMetricsServiceRequest()
            req.ParseFromString(body)
            got.append(req)
            out = ExportMetricsServiceResponse().SerializeToString()
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        def log_message(self, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1/metrics", got
    server.shutdown()
    server.server_close()


def test_push_carries_counters_and_histograms(receiver: tuple[str, list[Any]], getppid_config: str,
                                              getppid_calls: Callable[[str, int], None]) -> None:
    endpoint, got = receiver
    comm = "otl" + uuid.uuid4().hex[:10]
    with Exporter(parse_config(getppid_config + RUNQLAT, "t.yaml")) as exporter:
        getppid_calls(comm, 77)
        pusher = OtlpPusher(exporter, endpoint, interval=3600)
        try:
            assert pusher.push()
        finally:
            pusher.close()
    (req,) = got
    (rm,) = req.resource_metrics
    assert {a.key: a.value.string_value for a in rm.resource.attributes}["service.name"] == "ebpf-export"
    metrics = {m.name: m for sm in rm.scope_metrics for m in sm.metrics}
    counter = metrics["exp_test_getppid_total"]
    assert counter.sum.is_monotonic
    points = {tuple((a.key, a.value.string_value) for a in p.attributes): p.as_int for p in counter.sum.data_points}
    assert points[(("comm", comm),)] == 77
    (hist,) = metrics["run_queue_latency_seconds"].histogram.data_points
    assert hist.count == sum(hist.bucket_counts) and len(hist.bucket_counts) == len(hist.explicit_bounds) + 1
    assert hist.explicit_bounds[0] == pytest.approx(1e-06)
