"""The CPU and off-CPU profilers on real processes: a C program spinning in hot_spin_loop, calling
getpid() in a loop, sleeping in nanosleep(); stripped variants; Python's perf maps; bad input."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from ebpf.core.errors import EBPFError
from ebpf.events import symbols
from ebpf.events.profile import OffCpuProfiler, Profile, Profiler
from ebpf.events.symbols import KernelSymbols

pytestmark = pytest.mark.privileged


def _profile(profiler: Profiler | OffCpuProfiler, seconds: float) -> Profile:
    profiler.start()
    try:
        time.sleep(seconds)  # the profiler samples for a fixed span: that is the measurement itself
    except BaseException:
        profiler.close()
        raise
    return profiler.stop()


def _leaf_share(profile: Profile, name: str) -> float:
    user = [s for s in profile.samples if s.user]
    hits = sum(s.value for s in user if s.user[0].name == name)
    return hits / max(1, sum(s.value for s in user))


def test_hot_spin_loop_is_hot_and_called_from_main(spin_builder, spawn) -> None:  # type: ignore[no-untyped-def]
    with spawn(spin_builder.plain, "spin") as target:
        profile = _profile(Profiler(frequency=99, pid=target.pid), 2.0).for_pid(target.pid)
    assert profile.total > 0
    assert _leaf_share(profile, "hot_spin_loop") >= 0.5, profile.folded()
    hot = [s for s in profile.samples if s.user and s.user[0].name == "hot_spin_loop"]
    from_main = sum(s.value for s in hot if len(s.user) > 1 and s.user[1].name == "main")
    # (a sample on hot_spin_loop's first instruction, before its frame is pushed, skips main)
    assert from_main >= 0.9 * sum(s.value for s in hot), profile.folded()
    assert any(";main;hot_spin_loop " in line for line in profile.folded().splitlines())
    top = profile.top(3)
    assert top[0].name == "hot_spin_loop" and top[0].self >= profile.total // 2
    assert next(t for t in profile.top(20) if t.name == "main").self == 0


@pytest.mark.parametrize("variant", ["minidebuginfo", "debugfile"])
def test_stripped_variants_still_resolve(spin_builder, spawn, variant: str) -> None:  # type: ignore[no-untyped-def]
    binary, debug_dir = spin_builder.variant(variant)
    symbols.drop_file_cache()  # the unstripped copy shares the build id
    saved = list(symbols.DEBUG_DIRS)
    symbols.DEBUG_DIRS[:] = [str(debug_dir)] if debug_dir else []  # a list shared by every module: edit in place
    try:
        with spawn(binary, "spin") as target:
            profile = _profile(Profiler(pid=target.pid), 1.5).for_pid(target.pid)
    finally:
        symbols.DEBUG_DIRS[:] = saved
    assert _leaf_share(profile, "hot_spin_loop") >= 0.5, profile.folded()


def test_getpid_loop_shows_the_syscall_entry_path(spin_builder, spawn) -> None:  # type: ignore[no-untyped-def]
    with spawn(spin_builder.plain, "getpid") as target:
        profile = _profile(Profiler(pid=target.pid), 1.5).for_pid(target.pid)
    kernel_names = {f.name for s in profile.samples for f in s.kernel}
    entry = {n for n in kernel_names if n.startswith("entry_SYSCALL_64") or n == "do_syscall_64"}
    assert entry, profile.folded()
    kallsyms = KernelSymbols.shared()
    assert all(kallsyms.address(n) is not None for n in entry)  # named as kallsyms names them
    assert all(f.kind == "kernel" and f.module == "kernel" for s in profile.samples for f in s.kernel
               if f.name in entry)
    assert "_[k]" in profile.folded()
    # libc's syscall() keeps no frame pointer: a sample inside it unwinds to main, past getpid_loop
    assert {"getpid_loop", "main"} & {f.name for s in profile.samples for f in s.user}, profile.folded()


def test_offcpu_time_of_nanosleep(spin_builder, spawn) -> None:  # type: ignore[no-untyped-def]
    with spawn(spin_builder.plain, "sleep") as target:
        profile = _profile(OffCpuProfiler(pid=target.pid), 1.5)
    assert profile.unit == "us" and profile.kind == "offcpu"
    heaviest = max(profile.samples, key=lambda s: s.value)
    # profile.duration runs from attach to stop; the process sleeps nearly all of it
    assert 0.5 * profile.duration * 1e6 <= profile.total <= 1.5 * profile.duration * 1e6, profile.folded()
    assert heaviest.value >= 0.5 * profile.total
    names = [f.name for f in heaviest.kernel]
    assert any("nanosleep" in n for n in names) and "schedule" in names[:3], names
    assert not any(n.startswith("bpf_prog_") for n in names)  # our own instrumentation is trimmed
    # the user stack: libc's nanosleep wrapper (no frame pointer of its own, so its caller's caller follows)
    assert heaviest.user and heaviest.user[0].module.startswith("libc") and "main" in {f.name for f in heaviest.user}


def test_offcpu_min_block_filter(spin_builder, spawn) -> None:  # type: ignore[no-untyped-def]
    with spawn(spin_builder.plain, "sleep") as target:  # 20 ms sleeps: all below the 200 ms threshold
        profile = _profile(OffCpuProfiler(pid=target.pid, min_block_us=200_000), 0.6)
    assert profile.total == 0


def test_python_perf_map_frames(perf_fp_python: str) -> None:
    code = ("def hot_py_function():\n  n = 0\n  while True:\n    n += 1\n"
            "print('go', flush=True)\nhot_py_function()\n")
    proc = subprocess.Popen([perf_fp_python, "-X", "perf", "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout and proc.stdout.readline().strip() == "go"
        profile = _profile(Profiler(pid=proc.pid), 2.0).for_pid(proc.pid)
    finally:
        proc.kill()
        proc.wait()
        if proc.stdout:
            proc.stdout.close()
        Path(f"/tmp/perf-{proc.pid}.map").unlink(missing_ok=True)
    jit = {f.name for s in profile.samples for f in s.user if f.kind == "jit"}
    assert any("hot_py_function" in n for n in jit), profile.folded()
    assert "_[j]" in profile.folded()


def test_pid_exiting_during_profiling(spin_builder) -> None:  # type: ignore[no-untyped-def]
    # the target pid's maps are read at start, so its frames are named even though it is gone at stop
    proc = subprocess.Popen([str(spin_builder.plain), "exit", "800"], stdout=subprocess.PIPE, text=True)
    assert proc.stdout and proc.stdout.readline().startswith("ready")
    profiler = Profiler(pid=proc.pid)
    profiler.start()
    try:
        proc.wait(timeout=30)
    finally:
        profile = profiler.stop()
        proc.stdout.close()
    own = {f.name for s in profile.samples for f in s.user if f.module == spin_builder.plain.name}
    assert "hot_spin_loop" in own and own <= {"hot_spin_loop", "main", "now_ms", "_start"}, profile.folded()


def test_process_gone_before_stop_is_reported(spin_builder) -> None:  # type: ignore[no-untyped-def]
    profiler = Profiler()  # every process: the short-lived one is first seen at stop()
    profiler.start()
    try:
        proc = subprocess.Popen([str(spin_builder.plain), "exit", "600"], stdout=subprocess.PIPE, text=True)
        proc.wait(timeout=30)
        assert proc.stdout
        proc.stdout.close()
    finally:
        profile = profiler.stop()
    mine = profile.for_pid(proc.pid)
    assert mine.total > 0, "the spinning process was never sampled"
    assert all(f.name == "[unknown]" for s in mine.samples for f in s.user)
    assert any("exited before their symbols were read" in w for w in profile.warnings), profile.warnings


def test_kptr_restrict_2_keeps_user_frames(spin_builder, spawn, kptr_restrict_2: None) -> None:  # type: ignore[no-untyped-def]
    with spawn(spin_builder.plain, "getpid") as target:
        deadline = time.monotonic() + 60
        while True:  # one 1 s span is plenty here; an emulated, busy VM may give the target too few samples
            profile = _profile(Profiler(pid=target.pid), 1.0).for_pid(target.pid)
            seen = {f.name for s in profile.samples for f in s.user}
            if ("getpid_loop" in seen and any(s.kernel for s in profile.samples)) or time.monotonic() > deadline:
                break
    assert any("kptr_restrict" in w for w in profile.warnings)
    assert all(f.name == "[unknown]" for s in profile.samples for f in s.kernel)
    # libc's syscall() keeps no frame pointer: a sample inside it unwinds to main, past getpid_loop
    assert {"getpid_loop", "main"} & {f.name for s in profile.samples for f in s.user}, profile.folded()


def test_binary_without_symbols_gives_partial_profile(spin_builder, spawn) -> None:  # type: ignore[no-untyped-def]
    binary, _ = spin_builder.variant("nosym")
    symbols.drop_file_cache()
    with spawn(binary, "spin") as target:
        profile = _profile(Profiler(pid=target.pid), 1.0).for_pid(target.pid)
    assert profile.total > 0
    assert any(f.name == "[unknown]" and f.module == binary.name for s in profile.samples for f in s.user)
    assert any("no symbols" in w for w in profile.warnings), profile.warnings


@pytest.mark.parametrize("kwargs", [{"frequency": 0}, {"frequency": True}, {"pid": -1}, {"pid": 0}, {"cpu": -1},
                                    {"kernel": False, "user": False}, {"stack_depth": 128}, {"max_stacks": 0}])
def test_bad_profiler_arguments(kwargs: dict[str, object]) -> None:
    with pytest.raises(EBPFError):
        Profiler(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("kwargs", [{"min_block_us": -1}, {"max_block_us": 0}, {"pid": "1"}, {"max_tasks": 0}])
def test_bad_offcpu_arguments(kwargs: dict[str, object]) -> None:
    with pytest.raises(EBPFError):
        OffCpuProfiler(**kwargs)  # type: ignore[arg-type]


def test_missing_pid_refused_at_start() -> None:
    profiler = Profiler(pid=2**22 + 4321)  # above pid_max's usual range: no such process
    with pytest.raises(EBPFError, match="no process"):
        profiler.start()
    with pytest.raises(EBPFError, match="not running"):
        profiler.stop()


def test_lifecycle_errors() -> None:
    profiler = Profiler(pid=os.getpid())
    with pytest.raises(EBPFError, match="not running"):
        profiler.stop()
    with profiler, pytest.raises(EBPFError, match="already running"):
        profiler.start()
    assert profiler.profile is not None
    profiler.close()  # idempotent


@pytest.fixture
def synthetic() -> Iterator[Profile]:
    from ebpf.events.profile import Frame, Sample

    def u(name: str) -> Frame:
        return Frame(name, "app", "user", 0)

    def k(name: str) -> Frame:
        return Frame(name, "kernel", "kernel", 0)

    yield Profile([Sample(1, "app", [u("leaf"), u("main")], [], 6),
                   Sample(1, "app", [u("main")], [k("do_syscall_64")], 3),
                   Sample(2, "other", [u("py::f:x.py")._replace(kind="jit")], [], 1)])


def test_folded_top_and_speedscope(synthetic: Profile, tmp_path: Path) -> None:
    assert synthetic.folded() == "app;main;do_syscall_64_[k] 3\napp;main;leaf 6\nother;py::f:x.py_[j] 1\n"
    top = synthetic.top(2)
    assert [(t.name, t.self, t.total) for t in top] == [("leaf", 6, 6), ("do_syscall_64", 3, 3)]
    doc = synthetic.speedscope(tmp_path / "p.json")
    assert (tmp_path / "p.json").exists() and doc["profiles"][0]["weights"] == [6, 3, 1]
    names = [f["name"] for f in doc["shared"]["frames"]]
    assert [names[i] for i in doc["profiles"][0]["samples"][0]] == ["app", "main", "leaf"]
    assert synthetic.to_dict()["total"] == 10
