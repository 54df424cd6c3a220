"""ebpf.lang against clang: compile time and instruction count for each example of examples/lang/.

For every kernel function of every example:

- ``lang.compile.<example>.<program>``: the time to compile the Python function to
  instructions (best of ``--rounds``, a fresh compile each time: parse, check, optimize,
  generate, assemble), against the time ``compile_c`` takes to build the example's C version
  (``examples/lang/c/<example>.c``, clang -O2 when Debian's clang is installed, else zig cc)
  in the same run, for the whole object;
- ``lang.insns.<example>.<program>``: the number of instruction slots ebpf.lang emits against
  the C version's, read from the object clang wrote; ``ratio`` = ours / clang's, ``target`` 1.5
  (the issue's), ``met`` whether the ratio is at most that.

No kernel is needed (nothing is loaded).  Prints one JSON line per figure:
``python3 packages/ebpf-lang/bench/bench_lang.py``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import tempfile
import time
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
EXAMPLES = os.path.join(ROOT, "examples", "lang")
NAMES = ["execve_tracer", "xdp_counter", "cgroup_connect_block", "syscount", "latency_hist"]
TARGET = 1.5


def emit(**fields: Any) -> None:
    """Print one JSON line."""
    print(json.dumps(fields), flush=True)


def compile_seconds(fn: Any, rounds: int) -> tuple[float, int]:
    """Best time of ``rounds`` fresh compilations of kernel function ``fn``; and its slot count."""
    from ebpf.lang import KernelFunction

    best, count = float("inf"), 0
    for _ in range(rounds):
        fresh = KernelFunction(fn.fn, fn.section, fn.license, fn.name)
        t0 = time.perf_counter()
        compiled = fresh.compile()
        best = min(best, time.perf_counter() - t0)
        count = compiled.insn_count
    return best, count


def clang_build(name: str, tmp: str, rounds: int) -> tuple[float, dict[str, int], str]:
    """Best build time of the C version, its programs' slot counts, and the compiler used."""
    from ebpf.elf import compile_c
    from ebpf.elf.compile import find_compiler
    from ebpf.elf.loader import load_spec

    src = os.path.join(EXAMPLES, "c", f"{name}.c")
    best, obj = float("inf"), ""
    for i in range(rounds):
        out = os.path.join(tmp, f"{name}-{i}.o")
        t0 = time.perf_counter()
        obj = compile_c(src, out)
        best = min(best, time.perf_counter() - t0)
    spec = load_spec(obj)
    counts = {pname: len(p.insns) // 8 for pname, p in spec.programs.items()}
    try:
        compiler = " ".join(map(str, find_compiler()))
    except Exception:  # the name is only informative
        compiler = "compile_c"
    return best, counts, compiler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5, help="compilations per figure (best is reported)")
    args = parser.parse_args()
    sys.path.insert(0, EXAMPLES)
    with tempfile.TemporaryDirectory() as tmp:
        for name in NAMES:
            from ebpf.lang import KernelFunction

            module = importlib.import_module(name)
            functions = [v for v in vars(module).values() if isinstance(v, KernelFunction)]
            try:
                c_seconds, c_counts, compiler = clang_build(name, tmp, max(1, args.rounds // 2))
            except Exception as exc:  # no C compiler: report ours alone
                c_seconds, c_counts, compiler = 0.0, {}, f"unavailable: {exc}"
            for fn in functions:
                seconds, count = compile_seconds(fn, args.rounds)
                emit(bench=f"lang.compile.{name}.{fn.name}", compile_ms=round(seconds * 1000, 3),
                     clang_object_ms=round(c_seconds * 1000, 3) if c_seconds else None,
                     ratio=round(seconds / c_seconds, 4) if c_seconds else None, compiler=compiler)
                ref = c_counts.get(fn.name)
                ratio = round(count / ref, 3) if ref else None
                emit(bench=f"lang.insns.{name}.{fn.name}", insns=count, clang_insns=ref, ratio=ratio,
                     target=TARGET, met=ratio is not None and ratio <= TARGET, compiler=compiler)


if __name__ == "__main__":
    main()
