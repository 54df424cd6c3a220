"""ELF loader benchmark: time to parse, link and load the fixture objects and a 100-program object.

Prints one JSON line per figure (``nox -s bench``): best-of-N wall time in milliseconds; for
``load_elf`` also the ratio to loading the already-parsed spec (map creation and the kernel's
verification, measured in the same run), so the cost of parsing and linking shows.
"""

from __future__ import annotations

import functools
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
FIXTURES = HERE.parent / "tests" / "fixtures"
REPEAT = int(os.environ.get("EBPF_BENCH_REPEAT", "5"))


def best(fn: Callable[[], object], repeat: int = REPEAT) -> float:
    """Best wall time of ``fn`` over ``repeat`` runs, in milliseconds."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times) * 1000


def emit(**fields: object) -> None:
    """One JSON line."""
    fields.setdefault("python", f"{platform.python_implementation()} {platform.python_version()} ({sys.executable})")
    print(json.dumps(fields), flush=True)


def main() -> int:
    """Run the benchmarks."""
    from ebpf import elf
    from ebpf.core.btf import load_vmlinux
    from ebpf.elf.info import inspect_elf

    # The kernel's BTF, the first time CO-RE needs it: opening it and one name lookup, cold (the
    # lookup indexes the record offsets; nothing else of vmlinux is decoded).
    t0 = time.perf_counter()
    load_vmlinux().find_all("task_struct")
    emit(figure="parse_vmlinux_btf", ms=round((time.perf_counter() - t0) * 1000, 2))
    # Then all of core.o's CO-RE relocations against it (their other names still cold).
    spec = elf.load_spec(str(FIXTURES / "core.o"))
    t0 = time.perf_counter()
    from ebpf.elf.steps import relocate

    relocate(spec)
    emit(figure="core_relocate_cold", object="core", ms=round((time.perf_counter() - t0) * 1000, 2))
    objects = sorted(p for p in FIXTURES.glob("*.o") if not p.name.endswith(".clang.o"))
    for path in objects:
        name = path.stem
        emit(figure="inspect", object=name, ms=round(best(functools.partial(inspect_elf, str(path))), 3))
        emit(figure="load_spec", object=name, ms=round(best(functools.partial(elf.load_spec, str(path))), 3))
        if name in ("core_bad", "storage_maps", "ksyms"):
            continue  # fail to load by design, or need what this kernel lacks

        def load(p: Path = path) -> None:
            elf.load_elf(str(p)).close()

        try:
            load_ms = best(load)
        except Exception as exc:  # a benchmark reports, never fails the run
            emit(figure="load_elf", object=name, error=f"{type(exc).__name__}: {exc}"[:200])
            continue
        # Reference, same run: loading an already-parsed spec (map creation + verification only).
        spec = elf.load_spec(str(path))

        def load_parsed(sp: object = spec) -> None:
            sp.load().close()  # type: ignore[attr-defined]

        ref_ms = best(load_parsed)
        emit(figure="load_elf", object=name, ms=round(load_ms, 3), programs=len(spec.programs), maps=len(spec.maps),
             spec_load_ms=round(ref_ms, 3), ratio_to_spec_load=round(load_ms / ref_ms, 2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
