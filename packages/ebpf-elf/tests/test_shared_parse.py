"""What a process parses for loading is parsed once and shared, also by threads loading at the same time.

The kernel's BTF (CO-RE, kfunc and ``__ksym`` ids) and the kernel's own symbols of
``/proc/kallsyms`` (typeless ``__ksym`` addresses) are read once per process, however many
collections load them and from however many threads.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from ebpf.core.btf import load
from ebpf.core.features import have_kfunc
from ebpf.core.testing import require
from ebpf.elf import core_relo
from ebpf.elf.loader import load_elf, load_spec
from ebpf.elf.steps import relocate

THREADS = 6
DEADLINE = 120.0  # seconds for every thread to finish (they take well under one each)


def _in_threads(work: Callable[[], Any]) -> list[Any]:
    """Run ``work`` in THREADS threads released together; its results (an exception is re-raised)."""
    barrier = threading.Barrier(THREADS)
    results: list[Any] = [None] * THREADS
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            barrier.wait(timeout=DEADLINE)
            results[i] = work()
        except BaseException as exc:  # reported by the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=DEADLINE)
    assert not any(t.is_alive() for t in threads), "a loading thread did not finish"
    if errors:
        raise errors[0]
    return results


def _without_fds(insns: bytes) -> bytes:
    """The instructions with each collection's own map fds (ld_imm64 of a map) zeroed."""
    out = bytearray(insns)
    for pos in range(0, len(out) - 15, 8):
        if out[pos] == 0x18 and out[pos + 1] >> 4 in (1, 2):  # BPF_PSEUDO_MAP_FD, BPF_PSEUDO_MAP_VALUE
            out[pos + 4 : pos + 8] = bytes(4)
    return bytes(out)


@pytest.fixture
def fresh(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """As a fresh process: nothing parsed yet, no on-disk caches; counts the reads of each source."""
    require(load.load_vmlinux)
    monkeypatch.setenv("EBPF_CACHE_DIR", "")
    monkeypatch.setattr(load, "_vmlinux", None)
    monkeypatch.setattr(core_relo, "_kernel_symbols", None)
    counts = {"vmlinux": 0, "kallsyms": 0}
    read, read_symbols = load._read, core_relo._read_kernel_symbols

    def counted_read(path: str, what: str) -> bytes:
        if what == "vmlinux":
            counts["vmlinux"] += 1
        return read(path, what)

    def counted_symbols() -> dict[str, int] | None:
        counts["kallsyms"] += 1
        return read_symbols()

    monkeypatch.setattr(load, "_read", counted_read)
    monkeypatch.setattr(core_relo, "_read_kernel_symbols", counted_symbols)
    return counts


def test_threads_loading_at_once_share_one_parse_of_the_kernel_btf(fresh: dict[str, int], fixtures: Any) -> None:
    path = str(fixtures / "lt_opensnoop.clang.o")

    def work() -> tuple[int, dict[str, bytes]]:
        with load_elf(path) as coll:
            return id(load.load_vmlinux()), {n: _without_fds(p.spec.insns) for n, p in coll.programs.items()}

    results = _in_threads(work)
    assert fresh["vmlinux"] == 1
    assert len({spec_id for spec_id, _ in results}) == 1  # one Spec, shared
    assert all(insns == results[0][1] for _, insns in results)  # the same relocations everywhere
    with load_elf(path):  # and a later collection of the process reads nothing again
        pass
    assert fresh["vmlinux"] == 1


def _kallsyms_snapshot(directory: Path) -> Path:
    """A copy of /proc/kallsyms with the addresses shown: other tests on this machine may hide them
    (kernel.kptr_restrict=2) for a moment, which this test is not about."""
    snapshot = directory / "kallsyms"
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        with open("/proc/kallsyms", "rb") as fh:
            text = fh.read()
        if any(int(line.split(None, 1)[0] or b"0", 16) for line in text.splitlines()[:100] if line):
            snapshot.write_bytes(text)
            return snapshot
        time.sleep(0.05)  # polled until the addresses show again (bounded by the deadline)
    raise AssertionError("/proc/kallsyms kept every address hidden (kernel.kptr_restrict)")


def test_kernel_symbols_are_read_once_for_every_load(fresh: dict[str, int], fixtures: Any, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    require(have_kfunc, "bpf_rcu_read_lock")  # the object's kfunc_prog calls it (Linux >= 6.2)
    path = str(fixtures / "ksyms.clang.o")
    monkeypatch.setattr(core_relo, "KALLSYMS", str(_kallsyms_snapshot(tmp_path)))

    def work() -> dict[str, bytes]:
        spec = load_spec(path)
        relocate(spec)  # the CO-RE / extern step alone: typeless __ksym addresses come from kallsyms
        return {n: bytes(p.insns) for n, p in spec.programs.items()}

    results = _in_threads(work)
    assert fresh["kallsyms"] == 1 and fresh["vmlinux"] == 1
    assert all(r == results[0] for r in results)
    addr = core_relo.kallsyms_address("schedule")
    with open(core_relo.KALLSYMS) as fh:  # the shared table answers as the file does
        first = next((int(p[0], 16) for p in map(str.split, fh) if len(p) >= 3 and p[2] == "schedule"), None)
    assert addr == (first or None)
    assert fresh["kallsyms"] == 1
