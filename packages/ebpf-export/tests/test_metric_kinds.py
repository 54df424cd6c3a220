"""Gauges from a real program's map, and linear / fixed / exp2zero histogram layouts from real maps."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import ebpf.core as bpf
import pytest
from ebpf.export import Exporter, MetricFamily, parse_config, render_text
from ebpf.export.config import DecoderConfig, LabelConfig, MetricConfig
from ebpf.export.exporter import _MetricReader
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.privileged


def test_a_gauge_reads_the_same_map_as_a_counter(getppid_config: str,
                                                 getppid_calls: Callable[[str, int], None]) -> None:
    gauge = getppid_config.replace("counters:", "gauges:").replace(
        "- name: exp_test_getppid_total", "- name: exp_test_getppid_now\n          map: exp_test_getppid_total")
    comm = "gau" + uuid.uuid4().hex[:10]
    with Exporter(parse_config(gauge, "g.yaml")) as exporter:
        getppid_calls(comm, 17)
        parsed = {f.name: f for f in text_string_to_metric_families(exporter.render())}
    fam = parsed["exp_test_getppid_now"]
    assert fam.type == "gauge"
    assert [s.value for s in fam.samples if s.labels == {"comm": comm}] == [17]


def _histogram(bucket_type: str, counts: dict[int, int], **layout: object) -> MetricFamily:
    """A histogram over a hash map keyed by (u32 disk, u32 slot) holding ``counts`` for disk 3."""
    labels = (LabelConfig("disk", 4, (DecoderConfig("uint"),)), LabelConfig("bucket", 4, (DecoderConfig("uint"),)))
    metric = MetricConfig("histogram", "h_seconds", "h", "h", labels, "t.yaml:1", bucket_type, **layout)  # type: ignore[arg-type]
    with bpf.create_hash_map(64, key_size=8, value_size=8, key_codec=bpf.codecs.raw(8),
                             value_codec=bpf.codecs.u64) as m:
        for slot, count in counts.items():
            m[(3).to_bytes(4, "little") + slot.to_bytes(4, "little")] = count
        return _MetricReader(metric, m, None).family()


def _rows(fam: MetricFamily) -> list[tuple[str, str, float]]:
    (parsed,) = text_string_to_metric_families(render_text([fam]))  # the reference parser accepts it
    assert parsed.type == "histogram"
    return [(s, t, v) for s, t, v in fam.samples]


def test_linear_buckets_are_slot_times_multiplier() -> None:
    # slots 0..3 of 10 ms; slot 4 (bucket_max + 1) is the sum in slot units; slot 9 is past the top
    fam = _histogram("linear", {0: 1, 1: 2, 3: 4, 4: 70, 9: 5}, bucket_min=0, bucket_max=3, bucket_multiplier=0.01)
    assert _rows(fam) == [
        ("_bucket", '{disk="3",le="0"}', 1), ("_bucket", '{disk="3",le="0.01"}', 3),
        ("_bucket", '{disk="3",le="0.02"}', 3), ("_bucket", '{disk="3",le="0.03"}', 7),
        ("_bucket", '{disk="3",le="+Inf"}', 12), ("_sum", '{disk="3"}', pytest.approx(0.7)),
        ("_count", '{disk="3"}', 12)]


def test_fixed_buckets_use_the_listed_keys() -> None:
    fam = _histogram("fixed", {1: 2, 5: 3, 10: 1, 99: 4}, bucket_keys=(1.0, 5.0, 10.0), bucket_multiplier=0.001)
    assert _rows(fam) == [
        ("_bucket", '{disk="3",le="0.001"}', 2), ("_bucket", '{disk="3",le="0.005"}', 5),
        ("_bucket", '{disk="3",le="0.01"}', 6), ("_bucket", '{disk="3",le="+Inf"}', 10),
        ("_sum", '{disk="3"}', 0), ("_count", '{disk="3"}', 10)]


def test_exp2zero_keeps_a_zero_bucket() -> None:
    fam = _histogram("exp2zero", {0: 1, 1: 1, 3: 2}, bucket_min=0, bucket_max=3, bucket_multiplier=1.0)
    assert [t for s, t, _ in _rows(fam) if s == "_bucket"] == [
        '{disk="3",le="0"}', '{disk="3",le="1"}', '{disk="3",le="2"}', '{disk="3",le="4"}', '{disk="3",le="+Inf"}']
