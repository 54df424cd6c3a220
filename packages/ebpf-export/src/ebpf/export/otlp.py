"""Push the exporter's metrics to an OpenTelemetry collector over OTLP/HTTP (``ebpf-export[otlp]``).

Each push reads the maps once and builds the SDK's own data records: counters become
cumulative monotonic sums, gauges gauges, histograms explicit-bucket histograms (the
Prometheus buckets de-cumulated), with the labels as attributes.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from ebpf.core.errors import UnsupportedFeatureError
from ebpf.export.exporter import Exporter, MetricFamily

__all__ = ["OtlpPusher"]


def _attrs(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    inner = text[1:-1]
    while inner:
        name, _, rest = inner.partition('="')
        value, i = [], 0
        while i < len(rest):
            ch = rest[i]
            if ch == "\\" and i + 1 < len(rest):
                value.append({"n": "\n"}.get(rest[i + 1], rest[i + 1]))
                i += 2
                continue
            if ch == '"':
                break
            value.append(ch)
            i += 1
        out[name] = "".join(value)
        inner = rest[i + 1:].lstrip(",")
    return out


class OtlpPusher:
    """Pushes every ``interval`` seconds to ``endpoint`` (``http://host:4318/v1/metrics``).

    :raises UnsupportedFeatureError: the OpenTelemetry packages are not installed.
    """

    def __init__(self, exporter: Exporter, endpoint: str, interval: float = 15.0) -> None:
        """Build the OTLP exporter (no request is sent until :meth:`push` or :meth:`start`)."""
        try:
            from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
            from opentelemetry.sdk.resources import Resource
        except ImportError:
            raise UnsupportedFeatureError("OTLP export", reason="pip install 'ebpf-export[otlp]'") from None
        self.exporter = exporter
        self.interval = interval
        self.otlp = OTLPMetricExporter(endpoint=endpoint)
        self.resource = Resource.create({"service.name": "ebpf-export"})
        self.start_ns = time.time_ns()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.pushes = 0
        self.failures = 0

    def _metric(self, fam: MetricFamily, now: int) -> Any:
        from opentelemetry.sdk.metrics.export import (
            AggregationTemporality,
            Gauge,
            Histogram,
            HistogramDataPoint,
            Metric,
            NumberDataPoint,
            Sum,
        )

        if fam.kind != "histogram":
            points = [NumberDataPoint(_attrs(labels), self.start_ns, now, int(value)) for _, labels, value in fam.samples]
            data: Any = (Sum(points, AggregationTemporality.CUMULATIVE, True) if fam.kind == "counter"
                         else Gauge(points))
            return Metric(fam.name, fam.help, "", data)
        series: dict[str, dict[str, Any]] = {}
        for suffix, labels, value in fam.samples:
            attrs = _attrs(labels)
            le = attrs.pop("le", None)
            key = repr(sorted(attrs.items()))
            s = series.setdefault(key, {"attrs": attrs, "bounds": [], "cum": [], "sum": 0.0, "count": 0})
            if suffix == "_bucket" and le is not None and le != "+Inf":
                s["bounds"].append(float(le))
                s["cum"].append(int(value))
            elif suffix == "_sum":
                s["sum"] = float(value)
            elif suffix == "_count":
                s["count"] = int(value)
        hpoints = []
        for s in series.values():
            cum = [*s["cum"], s["count"]]
            counts = [c - (cum[i - 1] if i else 0) for i, c in enumerate(cum)]
            # min/max are unknown (the kernel keeps buckets only); the encoder leaves None fields unset
            hpoints.append(HistogramDataPoint(s["attrs"], self.start_ns, now, s["count"], s["sum"], counts,
                                              s["bounds"], None, None))  # type: ignore[arg-type]
        return Metric(fam.name, fam.help, "", Histogram(hpoints, AggregationTemporality.CUMULATIVE))

    def push(self) -> bool:
        """Read the maps and send one export request; True when the collector accepted it."""
        from opentelemetry.sdk.metrics.export import MetricExportResult, MetricsData, ResourceMetrics, ScopeMetrics
        from opentelemetry.sdk.util.instrumentation import InstrumentationScope

        now = time.time_ns()
        metrics = [self._metric(fam, now) for fam in self.exporter.collect()]
        data = MetricsData([ResourceMetrics(self.resource, [ScopeMetrics(InstrumentationScope("ebpf.export"),
                                                                         metrics, "")], "")])
        ok = self.otlp.export(data) == MetricExportResult.SUCCESS
        self.pushes += 1
        self.failures += not ok
        return ok

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.push()

    def start(self) -> None:
        """Push in a background thread every ``interval`` seconds."""
        self._thread = threading.Thread(target=self._run, name="ebpf-export-otlp", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop pushing (one last push is not made: the collector keeps the previous one)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
        self.otlp.shutdown()
