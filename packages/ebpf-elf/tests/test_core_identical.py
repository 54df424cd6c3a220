"""No behaviour change from the cold-start work: the CO-RE-relocated instructions of every fixture object.

``data/core_relocated.json`` was recorded with the loader as it was before the CO-RE candidate
search and the ELF reader were made fast (``python test_core_identical.py --record``).  Each
program's instructions after the load-time hook (CO-RE relocations, kfunc and ``__ksym``
ids) are hashed; the address of a typeless ``__ksym`` (kallsyms, moves with KASLR) is masked.
The recorded hashes hold for the kernel BTF they were recorded on (its sha256 is in the file).
On every kernel, the relocations are also recomputed with a reference candidate search
(every type of the kernel's BTF decoded and grouped by name, no shortcut) and must agree, and
the on-disk cache of results (:mod:`ebpf.elf.core_cache`) must give the same instructions as
computing them, whether it is written or read, without reading the kernel's BTF when it is read.
"""

from __future__ import annotations

import hashlib
import json
import struct
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from ebpf.core.errors import EBPFError
from ebpf.elf.steps import relocate

HERE = Path(__file__).resolve().parent
FIXTURES = HERE / "fixtures"
RECORD = HERE / "data" / "core_relocated.json"
VMLINUX = "/sys/kernel/btf/vmlinux"


def _objects() -> list[Path]:
    return sorted(FIXTURES.glob("*.o"))


def relocated(path: Path) -> dict[str, str]:
    """Program name -> sha256 of its instructions after the CO-RE/extern hook (or ``"error: ..."``)."""
    from ebpf.elf.loader import link_object, load_spec
    from ebpf.elf.objfile import parse_object

    try:
        spec = load_spec(path)
    except EBPFError as exc:
        return {"": f"error: {type(exc).__name__}: {exc}"}
    _, linked = link_object(parse_object(str(path)), {})
    masked = {lp.function.name: [e.insn for e in lp.externs if e.kind == "ksym_addr"] for lp in linked}
    out: dict[str, str] = {}
    try:
        relocate(spec)
    except EBPFError as exc:
        return {"": f"error: {type(exc).__name__}: {exc}"}
    for name, pspec in sorted(spec.programs.items()):
        insns = bytearray(pspec.insns)
        for idx in masked.get(name, []):
            struct.pack_into("<I", insns, idx * 8 + 4, 0)
            struct.pack_into("<I", insns, idx * 8 + 12, 0)
        out[name] = hashlib.sha256(insns).hexdigest()
    return out


def kernel_btf_sha256() -> str:
    """sha256 of the running kernel's BTF ("" without one)."""
    try:
        with open(VMLINUX, "rb") as fh:
            return hashlib.sha256(fh.read()).hexdigest()
    except OSError:
        return ""


def _snapshot() -> dict[str, Any]:
    return {"vmlinux_sha256": kernel_btf_sha256(),
            "objects": {p.name: relocated(p) for p in _objects()}}


@contextmanager
def _reference_candidates() -> Iterator[None]:
    """Swap the CO-RE name lookup for a plain scan of every type of the target BTF."""
    from ebpf.core.btf import Spec, Type
    from ebpf.elf import core_relo

    by_spec: dict[int, dict[str, list[Type]]] = {}

    def named(target: Spec, name: str) -> list[Type]:
        table = by_spec.get(id(target))
        if table is None:
            table = by_spec[id(target)] = {}
            for t in target:
                if t.name:
                    table.setdefault(t.name, []).append(t)
        return list(table.get(name, []))

    saved: Callable[[Spec, str], list[Type]] = core_relo._named
    core_relo._named = named  # type: ignore[assignment]
    try:
        yield
    finally:
        core_relo._named = saved  # type: ignore[assignment]


@pytest.fixture(autouse=True)
def _no_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    """Computed, not read from the cache of earlier runs (the cache's own test turns it on)."""
    monkeypatch.setenv("EBPF_CACHE_DIR", "")


def test_recorded_objects_still_exist():
    recorded = json.loads(RECORD.read_text())["objects"]
    assert len(recorded) >= 40
    missing = [name for name in recorded if not (FIXTURES / name).exists()]
    assert not missing


def test_relocated_instructions_match_the_recording():
    recorded = json.loads(RECORD.read_text())
    now = {p.name: relocated(p) for p in _objects() if p.name in recorded["objects"]}
    if recorded["vmlinux_sha256"] == kernel_btf_sha256():
        assert now == {name: recorded["objects"][name] for name in now}
    # Another kernel: the recording says nothing about it; the next test checks the search itself.


def test_fast_candidate_search_matches_a_full_scan():
    fast = {p.name: relocated(p) for p in _objects()}
    with _reference_candidates():
        slow = {p.name: relocated(p) for p in _objects()}
    assert fast == slow


def test_cached_results_match_computed_ones(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from ebpf.core.btf import load
    from ebpf.core.testing import require

    require(load.load_vmlinux)
    computed = {p.name: relocated(p) for p in _objects()}
    monkeypatch.setenv("EBPF_CACHE_DIR", str(tmp_path))
    written = {p.name: relocated(p) for p in _objects()}
    assert written == computed
    assert list(tmp_path.glob("core-*.bin"))

    def no_btf(path: str | None = None) -> Any:
        raise AssertionError("the kernel's BTF was read although the results are cached")

    monkeypatch.setattr(load, "_vmlinux", None)  # as in a fresh process
    monkeypatch.setattr("ebpf.elf.core_relo.load_vmlinux", no_btf)
    read = {p.name: relocated(p) for p in _objects() if "error" not in str(computed[p.name])}
    assert read == {name: computed[name] for name in read}


if __name__ == "__main__":
    if sys.argv[1:] == ["--record"]:
        RECORD.parent.mkdir(exist_ok=True)
        RECORD.write_text(json.dumps(_snapshot(), indent=1, sort_keys=True) + "\n")
        print(f"recorded {RECORD}")
    else:
        print(__doc__)
