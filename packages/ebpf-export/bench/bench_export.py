"""Exporter scrape benchmark: read + decode + render against the raw batch read of the same map, in one run.

Prints one JSON line per figure: ``{"figure", "seconds", "ref", "ref_seconds", "ratio", "cpu_seconds",
"python"}``; ``ratio`` is the scrape time over the raw batch read (``Map.lookup_batch_columns`` of the
same map, raw keys and u64 values: the floor any exporter must pay), best of 7 rounds, interleaved.

- ``scrape_counter_10k``: a hash map of 10,000 keys (comm, pid, syscall) decoded into three labels
  (string; uint; uint -> syscall name), steady state (the decoded label sets are cached per key).
- ``scrape_counter_10k_cold``: the same with an empty cache (first scrape after start).
- ``scrape_histogram_100x50``: 100 histograms (one per key) of 50 exp2 buckets each, rendered as
  cumulative ``le`` buckets with ``_sum`` and ``_count``.

``cpu_seconds`` is the process CPU time per steady-state scrape. Run as root:
``python3 packages/ebpf-export/bench/bench_export.py`` (``nox -s bench`` runs it).
"""

from __future__ import annotations

import json
import os
import struct
import sys
import time
from collections.abc import Callable

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "ebpf-core", "bench"))

from _interp import PYTHON, print_interpreter  # noqa: E402
from ebpf.core import codecs  # noqa: E402
from ebpf.core.maps import create_hash_map  # noqa: E402
from ebpf.export.config import DecoderConfig, LabelConfig, MetricConfig  # noqa: E402
from ebpf.export.exporter import _MetricReader, render_text  # noqa: E402

ROUNDS = 7


def best(fn: Callable[[], object]) -> float:
    times = []
    for _ in range(ROUNDS):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def emit(figure: str, ours: float, ref: float, cpu: float | None = None) -> None:
    rec: dict[str, object] = {"figure": figure, "seconds": round(ours, 6), "ref": "raw_batch_read",
                              "ref_seconds": round(ref, 6), "ratio": round(ours / ref, 3)}
    if cpu is not None:
        rec["cpu_seconds"] = round(cpu, 6)
    rec["python"] = PYTHON
    print(json.dumps(rec), flush=True)


def counters() -> None:
    labels = (LabelConfig("comm", 16, (DecoderConfig("string"),)), LabelConfig("pid", 4, (DecoderConfig("uint"),)),
              LabelConfig("syscall", 4, (DecoderConfig("uint"), DecoderConfig("syscall"))))
    metric = MetricConfig("counter", "syscalls_total", "syscalls", "m", labels, "bench")
    with create_hash_map(10_240, key_size=24, value_size=8, key_codec=codecs.raw(24), value_codec=codecs.u64) as m:
        m.update_batch({f"proc{i % 500}".encode().ljust(16, b"\0") + struct.pack("<II", 1000 + i, i % 300): i
                        for i in range(10_000)})
        reader = _MetricReader(metric, m, None)

        def scrape() -> str:
            return render_text([reader.family()])

        scrape()
        assert len(reader.family().samples) == 10_000
        ours = best(scrape)
        ref = best(m.lookup_batch_columns)
        c0 = time.process_time()
        for _ in range(ROUNDS):
            scrape()
        emit("scrape_counter_10k", ours, ref, (time.process_time() - c0) / ROUNDS)

        def cold() -> str:
            reader.cache.clear()
            return scrape()
        emit("scrape_counter_10k_cold", best(cold), best(m.lookup_batch_columns))


def histograms() -> None:
    labels = (LabelConfig("disk", 4, (DecoderConfig("uint"),)), LabelConfig("bucket", 4, (DecoderConfig("uint"),)))
    metric = MetricConfig("histogram", "lat_seconds", "latency", "m", labels, "bench", "exp2", 0, 49, 1e-6)
    with create_hash_map(5_200, key_size=8, value_size=8, key_codec=codecs.raw(8), value_codec=codecs.u64) as m:
        m.update_batch({struct.pack("<II", k, b): k + b for k in range(100) for b in range(50)})
        reader = _MetricReader(metric, m, None)

        def scrape() -> str:
            return render_text([reader.family()])

        scrape()
        ours = best(scrape)
        ref = best(m.lookup_batch_columns)
        c0 = time.process_time()
        for _ in range(ROUNDS):
            scrape()
        emit("scrape_histogram_100x50", ours, ref, (time.process_time() - c0) / ROUNDS)


def main() -> None:
    print_interpreter("bench_export")
    counters()
    histograms()


if __name__ == "__main__":
    main()
