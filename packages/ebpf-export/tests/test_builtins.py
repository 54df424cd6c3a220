"""Every built-in configuration loads, attaches and counts what the test itself causes."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from ebpf.core.errors import UnsupportedFeatureError
from ebpf.core.testing import require
from ebpf.export import Exporter, MetricFamily, builtin_config, builtin_names


def series(families: list[MetricFamily], name: str) -> dict[str, float]:
    return {labels: value for fam in families for suffix, labels, value in fam.samples if fam.name + suffix == name}


@pytest.fixture(scope="module")
def exporter() -> Iterator[Exporter]:
    with Exporter(builtin_config(builtin_names())) as exp:
        yield exp


def test_the_six_builtins_are_there(exporter: Exporter) -> None:
    assert builtin_names() == ["biolatency", "execs", "oom_kills", "runqlat", "syscalls", "tcp_retransmits"]
    info = {p["config"]: p for p in exporter.programs_info()}
    assert set(info) == set(builtin_names())
    assert all(prog["id"] > 0 for p in info.values() for prog in p["programs"])


def test_syscalls_per_process_and_syscall(exporter: Exporter, getppid_calls: Callable[[str, int], None]) -> None:
    comm = "sys" + uuid.uuid4().hex[:10]
    getppid_calls(comm, 500)
    assert series(exporter.collect(), "syscalls_total")[f'{{comm="{comm}",syscall="getppid"}}'] == 500


def _cgroup2_root() -> str:
    for root in ("/sys/fs/cgroup/unified", "/sys/fs/cgroup"):
        if os.path.exists(os.path.join(root, "cgroup.procs")) and os.path.exists(os.path.join(root, "cgroup.controllers")):
            return root
    raise AssertionError("no cgroup v2 hierarchy mounted")


def test_execs_per_cgroup(exporter: Exporter) -> None:
    path = os.path.join(_cgroup2_root(), "ebpf-export-test-" + uuid.uuid4().hex[:8])
    os.mkdir(path)
    try:
        for _ in range(3):  # the shell moves itself into the cgroup, then execs
            subprocess.run(["sh", "-c", f"echo $$ > {path}/cgroup.procs && exec true"], check=True)
        assert series(exporter.collect(), "execs_total")[f'{{cgroup="{path}"}}'] == 3
    finally:
        os.rmdir(path)


def test_runqlat_histogram_fills(exporter: Exporter) -> None:
    subprocess.run(["sh", "-c", "for i in 1 2 3 4 5; do sleep 0.01; done"], check=True)
    rows = series(exporter.collect(), "run_queue_latency_seconds_count")
    assert rows[""] > 0
    buckets = series(exporter.collect(), "run_queue_latency_seconds_bucket")
    assert '{le="+Inf"}' in buckets and '{le="1e-06"}' in buckets


def _attach_loop(backing: Path) -> str:
    proc = subprocess.run(["losetup", "--find", "--show", str(backing)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise UnsupportedFeatureError("loop block devices", reason=f"losetup failed: {proc.stderr.strip()}")
    return proc.stdout.strip()


def test_biolatency_per_disk_on_a_loop_device(exporter: Exporter, tmp_path: Path) -> None:
    backing = tmp_path / "disk.img"
    backing.write_bytes(bytes(8 << 20))
    devices: list[str] = []
    require(lambda: devices.append(_attach_loop(backing)))
    (dev,) = devices
    try:
        subprocess.run(["dd", f"if={dev}", "of=/dev/null", "bs=4096", "count=200", "iflag=direct"],
                       check=True, capture_output=True)
        counts = series(exporter.collect(), "bio_latency_seconds_count")
        assert counts[f'{{disk="{os.path.basename(dev)}"}}'] >= 200
    finally:
        subprocess.run(["losetup", "--detach", dev], check=False)


def _memory_cgroup() -> str:
    """A memory-limited cgroup (v2 memory.max, or v1 memory.limit_in_bytes) for this process's children."""
    with open("/proc/self/cgroup") as fh:
        rows = [line.rstrip("\n").split(":", 2) for line in fh]
    v1 = next((path for _, ctrl, path in rows if "memory" in ctrl.split(",")), None)
    name = "ebpf-export-oom-" + uuid.uuid4().hex[:8]
    if v1 is not None and os.path.isdir(f"/sys/fs/cgroup/memory{v1}"):
        path = f"/sys/fs/cgroup/memory{v1.rstrip('/')}/{name}"
        os.mkdir(path)
        with open(f"{path}/memory.limit_in_bytes", "w") as fh:
            fh.write(str(32 << 20))
        return path
    root = _cgroup2_root()
    with open(os.path.join(root, "cgroup.controllers")) as fh:
        if "memory" not in fh.read().split():
            raise UnsupportedFeatureError("memory cgroup", reason="no memory controller in cgroup v1 or v2")
    # systemd enables the controller for the root's children; a bare init (the kernel matrix's guests) does not
    with open(os.path.join(root, "cgroup.subtree_control")) as fh:
        enabled = "memory" in fh.read().split()
    if not enabled:
        with open(os.path.join(root, "cgroup.subtree_control"), "w") as fh:
            fh.write("+memory")
    path = os.path.join(root, name)
    os.mkdir(path)
    with open(f"{path}/memory.max", "w") as fh:
        fh.write(str(32 << 20))
    return path


def test_oom_kills_counts_a_real_oom_kill(exporter: Exporter) -> None:
    paths: list[str] = []
    require(lambda: paths.append(_memory_cgroup()))
    (path,) = paths
    try:
        before = series(exporter.collect(), "oom_kills_total")[""]
        hog = f"echo $$ > {path}/cgroup.procs && exec {sys.executable} -c 'x = bytearray(256 << 20)'"
        proc = subprocess.run(["sh", "-c", hog], capture_output=True)
        assert proc.returncode == -9 or proc.returncode == 137, proc
        assert series(exporter.collect(), "oom_kills_total")[""] == before + 1
    finally:
        os.rmdir(path)


def test_tcp_retransmits_is_attached(exporter: Exporter) -> None:
    info = {p["config"]: p for p in exporter.programs_info()}["tcp_retransmits"]
    assert info["metrics"] == ["tcp_retransmits_total"] and info["programs"][0]["name"] == "on_retransmit"
    assert "tcp_retransmits_total" in series_names(exporter.collect())


def series_names(families: list[MetricFamily]) -> set[str]:
    return {f.name for f in families}
