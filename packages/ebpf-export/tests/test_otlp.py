"""OTLP/HTTP push: a local receiver decodes the protobuf request and finds the metric and its attributes."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from ebpf.export import Exporter, parse_config
from ebpf.export.otlp import OtlpPusher

RUNQLAT = "  - name: runqlat\n    builtin: runqlat\n"


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
