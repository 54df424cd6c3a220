"""BTF benchmark: cold ``find("task_struct")`` in the kernel's BTF, indexing, decoding, vmlinux.h.

Prints one JSON line per figure: ``{"figure", "value", "unit", "target", "ref", "ratio", "python"}``.
The cold figure runs in fresh subprocesses (nothing imported, nothing cached): it covers
importing ``ebpf.core.btf``, reading ``/sys/kernel/btf/vmlinux``, indexing and the lookup;
``ref`` is reading the same file in the same subprocess, so ``ratio`` shows the cost of
the parse over the I/O.  Best of 7 (median printed too).

Run: ``python3 packages/ebpf-core/bench/bench_btf.py``.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(HERE, "..", "src")
sys.path.insert(0, SRC)

from _interp import PYTHON, print_interpreter  # noqa: E402

ROUNDS = 7

_COLD = r"""
import sys, time, json
t0 = time.perf_counter()
with open("/sys/kernel/btf/vmlinux", "rb") as f:
    f.read()
t_read = time.perf_counter() - t0
t0 = time.perf_counter()
from ebpf.core.btf import load_vmlinux
task = load_vmlinux().find("task_struct")
t_find = time.perf_counter() - t0
assert task.size > 0 and task.members
print(json.dumps({"find": t_find, "read": t_read}))
"""


def emit(figure: str, value: float, unit: str, target: float | None = None, ref: float | None = None, **extra: object) -> None:
    """Print one figure as a JSON line."""
    line: dict[str, object] = {"figure": figure, "value": round(value, 3), "unit": unit}
    if target is not None:
        line["target"] = target
        line["ok"] = value <= target
    if ref is not None:
        line["ref"] = round(ref, 3)
        line["ratio"] = round(value / ref, 2) if ref else None
    line.update(extra)
    line["python"] = PYTHON
    print(json.dumps(line), flush=True)


def best(fn: Callable[[], object], rounds: int = ROUNDS) -> float:
    """Best wall time of ``fn`` in seconds."""
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def cold_find() -> None:
    """Cold find in fresh interpreters."""
    env = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""))
    finds, reads = [], []
    for _ in range(ROUNDS):
        out = subprocess.run([sys.executable, "-c", _COLD], env=env, capture_output=True, text=True, check=True)
        res = json.loads(out.stdout)
        finds.append(res["find"] * 1000)
        reads.append(res["read"] * 1000)
    emit(
        "btf_find_task_struct_cold_ms",
        min(finds),
        "ms",
        target=150,
        ref=min(reads),
        median=round(statistics.median(finds), 3),
    )


def warm_figures() -> None:
    """Figures measured in this process on the already-read blob."""
    from ebpf.core.btf import dump_c_header, map_btf
    from ebpf.core.btf.records import build_index, read_header
    from ebpf.core.btf.spec import Spec

    with open("/sys/kernel/btf/vmlinux", "rb") as f:
        data = f.read()
    hdr = read_header(data)
    n_types = len(build_index(hdr.words, hdr.type_start))
    emit("btf_index_ms", best(lambda: build_index(hdr.words, hdr.type_start)) * 1000, "ms", types=n_types)

    def fresh_find() -> None:
        Spec(data).find("task_struct")

    emit("btf_find_task_struct_fresh_spec_ms", best(fresh_find) * 1000, "ms", target=150)
    spec = Spec(data)
    spec.find("task_struct")
    emit("btf_find_indexed_us", best(lambda: spec.find_ids("sk_buff"), 50) * 1e6, "us")
    emit("btf_decode_all_s", best(lambda: Spec(data).validate(), 2), "s", types=n_types)
    emit("btf_dump_c_header_s", best(lambda: dump_c_header(Spec(data)), 2), "s")
    mspec, _, vid = map_btf("u32", [("count", "u64"), ("comm", "char[16]"), ("hist", "u32[8]")])
    value = bytes(mspec.sizeof(vid))
    emit("btf_format_value_us", best(lambda: [mspec.format_value(vid, value) for _ in range(1000)]) * 1000, "us")


def main() -> None:
    """Run every figure."""
    print_interpreter("bench_btf")
    cold_find()
    warm_figures()


if __name__ == "__main__":
    main()
