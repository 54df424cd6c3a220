"""Histogram speed: reading and printing a large keyed log2 histogram against plain Python.

A hash map ``u64 (section << 32 | slot) -> u64 count`` holds ``--sections`` x ``--slots`` keys
(10,000 by default: one histogram per process or disk, as runqlat -P or biolatency -D fill it).

- ``read``: ``Histogram.from_map(m, key=...)`` (one BPF_MAP_LOOKUP_BATCH pass, integer columns)
  against the plain-Python reference a bcc user writes: iterate the keys, look each one up
  (``for k in m: v = m[k]``), group into per-section lists;
- ``render``: ``format_log2_hist`` of every section against the reference rendering of bcc's
  ``print_log2_hist`` written plainly (%-formatting and the star loop per line), same text;
- ``read_and_render``: both steps, as a tool does when it stops;
- ``read_vs_c``: the same read against ``ref/hist_batch_ref.c`` (BPF_MAP_LOOKUP_BATCH over the
  pinned map and counts grouped per section in C, no libbpf), built with
  ``python3 -m ziglang cc -O2`` in this run.

Each figure is the best of ``--rounds``; one JSON line per figure with both times and the
ratio reference/ours (above 1: ours is faster).  Run as root:
``python3 packages/ebpf-events/bench/bench_hist.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any


def emit(**fields: Any) -> None:
    """Print one JSON line."""
    print(json.dumps(fields), flush=True)


def best(fn: Callable[[], Any], rounds: int) -> tuple[float, Any]:
    """Best wall time of ``rounds`` calls, and the last result."""
    times, result = [], None
    for _ in range(rounds):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return min(times), result


def reference_read(m: Any) -> dict[int, list[int]]:
    """What a bcc script does: one lookup per key, grouped by section."""
    out: dict[int, list[int]] = {}
    for k in list(m.keys()):
        v = m[k]
        vals = out.setdefault(k >> 32, [0] * 65)
        vals[k & 0xFFFFFFFF] = v
    return out


def _ref_stars(val: int, val_max: int, width: int) -> str:
    i, text = 0, ""
    while True:
        if i > (width * val / val_max) - 1 or i > width - 1:
            break
        text += "*"
        i += 1
    if val > val_max:
        text = text[:-1] + "+"
    return text


def reference_render(sections: dict[int, list[int]], val_type: str) -> str:
    """bcc's print_log2_hist layout written plainly (slot i holds [2**i, 2**(i+1)-1], as ours)."""
    parts = []
    for section in sorted(sections):
        vals = sections[section]
        parts.append(f"\nBucket ptr = {section!r}\n")
        idx_max, val_max = -1, 0
        for i, v in enumerate(vals):
            if v > 0:
                idx_max = i
            if v > val_max:
                val_max = v
        if idx_max < 0:
            continue
        if idx_max <= 31:
            header, body, stars = "     %-19s : count     distribution", "%10d -> %-10d : %-8d |%-*s|", 40
        else:
            header, body, stars = "               %-29s : count     distribution", "%20d -> %-20d : %-8d |%-*s|", 20
        lines = [header % val_type]
        for i in range(idx_max + 1):
            low, high = (1 << (i + 1)) >> 1, (1 << (i + 1)) - 1
            if low == high:
                low -= 1
            lines.append(body % (low, high, vals[i], stars, _ref_stars(vals[i], val_max, stars)))
        parts.append("\n".join(lines) + "\n")
    return "".join(parts)


def c_read(m: Any, rounds: int) -> tuple[float, int] | None:
    """Best seconds of the C batch reader over ``m`` (pinned on bpffs meanwhile); None if it cannot be built."""
    from ebpf.core.system import ensure_bpf_fs

    here = os.path.dirname(os.path.abspath(__file__))
    binary = os.path.join(tempfile.mkdtemp(prefix="ebpf-bench-hist-"), "hist_batch_ref")
    try:
        subprocess.run([sys.executable, "-m", "ziglang", "cc", "-O2", "-target", "x86_64-linux-gnu",
                        os.path.join(here, "ref", "hist_batch_ref.c"), "-o", binary], check=True,
                       capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        emit(bench="hist", figure="read_vs_c", error=f"cannot build the C reference: {getattr(exc, 'stderr', exc)}")
        return None
    pin = os.path.join(ensure_bpf_fs(), f"ebpf-bench-hist-{os.getpid()}")
    m.pin(pin)
    try:
        res = json.loads(subprocess.run([binary, pin, str(rounds)], check=True, capture_output=True,
                                        text=True).stdout)
    finally:
        os.unlink(pin)
    return res["ns"] / 1e9, res["sections"]


def main() -> int:
    """Fill the map, time both sides, print the figures."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sections", type=int, default=400)
    ap.add_argument("--slots", type=int, default=25)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()

    from ebpf.core.maps import create_hash_map
    from ebpf.events.hist import Histogram

    n = args.sections * args.slots
    base = {"bench": "hist", "keys": n, "sections": args.sections, "python": platform.python_implementation() + " "
            + platform.python_version(), "executable": sys.executable}
    with create_hash_map(n, key_size=8, value_size=8, name="bench_hist") as m:
        m.update_batch({(s << 32) | i: (s * 7 + i * 13) % 1000 + 1 for s in range(args.sections)
                        for i in range(args.slots)})

        def ours_read() -> Histogram:
            return Histogram.from_map(m, key="high32")

        t_read, hist = best(ours_read, args.rounds)
        r_read, ref_sections = best(lambda: reference_read(m), args.rounds)
        assert {s: hist.section(s).counts for s in hist.sections} == \
            {s: v[:args.slots] for s, v in ref_sections.items()}, "the two reads disagree"
        emit(**base, figure="read", seconds=t_read, reference_seconds=r_read, ratio=r_read / t_read,
             keys_per_second=n / t_read)

        t_render, text = best(lambda: hist.format_log2_hist("usecs"), args.rounds)
        r_render, ref_text = best(lambda: reference_render(ref_sections, "usecs"), args.rounds)
        assert text == ref_text, "the two renderings differ"
        emit(**base, figure="render", seconds=t_render, reference_seconds=r_render, ratio=r_render / t_render,
             lines=text.count("\n"))

        t_all, _ = best(lambda: ours_read().format_log2_hist("usecs"), args.rounds)
        r_all, _ = best(lambda: reference_render(reference_read(m), "usecs"), args.rounds)
        emit(**base, figure="read_and_render", seconds=t_all, reference_seconds=r_all, ratio=r_all / t_all)

        got = c_read(m, args.rounds)
        if got is not None:
            c_seconds, c_sections = got
            assert c_sections == len(hist.sections), "the C reader saw other sections"
            emit(**base, figure="read_vs_c", seconds=t_read, c_seconds=c_seconds, ratio_to_c=c_seconds / t_read,
                 c_keys_per_second=n / c_seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
