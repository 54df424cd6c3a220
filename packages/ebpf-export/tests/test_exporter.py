"""The exporter on the real kernel: a program compiled at start, its map read at scrape time."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import ebpf.core as bpf
import pytest
from ebpf.export import ConfigError, Exporter, ExportError, MetricFamily, parse_config, render_text
from ebpf.export.config import MetricConfig
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families

HERE = Path(__file__).resolve().parent
COUNTER = str(HERE / "fixtures" / "counter.bpf.c")
BAD = str(HERE / "fixtures" / "bad_verifier.bpf.c")



def programs_named(name: str) -> set[int]:
    """Ids of loaded programs with this name (other processes may load their own: compare sets)."""
    return {p.id for p in bpf.programs() if p.name == name}


def sample(families: list[MetricFamily], name: str, labels: str) -> float | None:
    for fam in families:
        for suffix, text, value in fam.samples:
            if fam.name + suffix == name and text == labels:
                return value
    return None


def test_counts_what_a_child_process_does(getppid_calls: Any, getppid_config: str) -> None:
    comm = "exp" + uuid.uuid4().hex[:10]
    with Exporter(parse_config(getppid_config, "t.yaml")) as exporter:
        ours = {p["id"] for p in exporter.programs_info()[0]["programs"]}
        assert ours <= programs_named("exp_test_count")
        getppid_calls(comm, 321)
        fams = exporter.collect()
        assert sample(fams, "exp_test_getppid_total", f'{{comm="{comm}"}}') == 321
        getppid_calls(comm, 9)
        assert sample(exporter.collect(), "exp_test_getppid_total", f'{{comm="{comm}"}}') == 330
        (info,) = exporter.programs_info()
        assert info["config"] == "getppid" and info["programs"][0]["name"] == "exp_test_count"
        text = exporter.render()
        parsed = {f.name: f for f in text_string_to_metric_families(text)}
        assert parsed["exp_test_getppid"].type == "counter"  # the parser drops _total
        om = {f.name: f for f in parse_openmetrics(exporter.render(openmetrics=True))}
        assert any(s.labels == {"comm": comm} and s.value == 330 for s in om["exp_test_getppid"].samples)
    assert not ours & programs_named("exp_test_count"), "close() left the program loaded"


def test_interval_serves_cached_reads(getppid_calls: Any, getppid_config: str) -> None:
    comm = "exp" + uuid.uuid4().hex[:10]
    cfg = parse_config(getppid_config.replace("    metrics:", "    interval: 3600\n    metrics:"), "t.yaml")
    with Exporter(cfg) as exporter:
        getppid_calls(comm, 5)
        first = sample(exporter.collect(), "exp_test_getppid_total", f'{{comm="{comm}"}}')
        getppid_calls(comm, 5)
        assert sample(exporter.collect(), "exp_test_getppid_total", f'{{comm="{comm}"}}') == first == 5


def test_histogram_buckets_are_cumulative_with_sum_and_count(getppid_config: str) -> None:
    key_size = 8  # a 4-byte disk id and a 4-byte bucket
    metric = MetricConfig("histogram", "lat_seconds", "latency", "lat", parse_config(
        getppid_config, "t.yaml").programs[0].metrics[0].labels[:0], "t.yaml:1", "exp2", 0, 3, 0.5)
    from ebpf.export.config import DecoderConfig, LabelConfig
    from ebpf.export.exporter import _MetricReader

    labels = (LabelConfig("disk", 4, (DecoderConfig("uint"),)), LabelConfig("bucket", 4, (DecoderConfig("uint"),)))
    metric = MetricConfig(**{**metric.__dict__, "labels": labels})
    with bpf.create_hash_map(64, key_size=key_size, value_size=8, key_codec=bpf.codecs.raw(8),
                             value_codec=bpf.codecs.u64) as m:
        for bucket, count in ((0, 2), (2, 3), (3, 1), (4, 100)):  # slot 4 = bucket_max + 1: the sum
            m[(7).to_bytes(4, "little") + bucket.to_bytes(4, "little")] = count
        fam = _MetricReader(metric, m, None).family()
    rows = [(s, t, v) for s, t, v in fam.samples]
    assert rows == [
        ("_bucket", '{disk="7",le="0.5"}', 2), ("_bucket", '{disk="7",le="1"}', 2),
        ("_bucket", '{disk="7",le="2"}', 5), ("_bucket", '{disk="7",le="4"}', 6),
        ("_bucket", '{disk="7",le="+Inf"}', 6), ("_sum", '{disk="7"}', 50.0), ("_count", '{disk="7"}', 6)]
    (parsed,) = text_string_to_metric_families(render_text([fam]))
    assert parsed.type == "histogram"


def test_bad_configs_fail_before_anything_stays_loaded(getppid_config: str) -> None:
    before = programs_named("exp_test_count") | programs_named("exp_bad_prog")
    wrong_map = getppid_config.replace("- name: exp_test_getppid_total", "- name: exp_nope_total")
    with pytest.raises(ConfigError, match=r"t.yaml:6: programs\[0\].metrics.counters\[0\]: the object has no map "
                                          r"'exp_nope_total' \(maps: exp_test_getppid_total\)"):
        Exporter(parse_config(wrong_map, "t.yaml")).start()
    wrong_size = getppid_config.replace("size: 16", "size: 12")
    with pytest.raises(ConfigError, match="the labels describe 12 bytes of key, but map 'exp_test_getppid_total' "
                                          "has key_size 16"):
        Exporter(parse_config(wrong_size, "t.yaml")).start()
    verifier = getppid_config.replace(COUNTER, BAD)
    with pytest.raises(ExportError, match=r"t.yaml:2: programs\[0\]: loading .* failed: .*exp_bad_prog"):
        Exporter(parse_config(verifier, "t.yaml")).start()
    assert programs_named("exp_test_count") | programs_named("exp_bad_prog") <= before


def test_cli_exits_2_on_a_bad_config(tmp_path: Path, getppid_config: str) -> None:
    before = programs_named("exp_bad_prog")
    path = tmp_path / "bad.yaml"
    path.write_text(getppid_config.replace("name: string", "name: nosuch"))
    proc = subprocess.run([sys.executable, "-m", "ebpf.core.cli", "export", "--config", str(path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert f"{path}:12: programs[0].metrics.counters[0].labels[0].decoders[0].name: unknown decoder 'nosuch'" \
        in proc.stderr
    path.write_text(getppid_config.replace(COUNTER, BAD))
    proc = subprocess.run([sys.executable, "-m", "ebpf.core.cli", "export", "--config", str(path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "exp_bad_prog" in proc.stderr
    assert programs_named("exp_bad_prog") <= before
