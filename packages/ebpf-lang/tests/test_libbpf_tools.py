"""What ``ebpf.lang.compile`` writes is used by libbpf-based tools as a clang-built object would be:
libbpf (pylibbpf) loads, auto-attaches it by its section and reads its maps; bpftool loads and pins
it and dumps the maps' values typed from the object's BTF."""

from __future__ import annotations

import gc
import json
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Iterator
from types import ModuleType

import pytest
from ebpf.core.errors import UnsupportedFeatureError
from ebpf.core.testing import require
from ebpf.events.tools.syscount import syscall_names
from ebpf.lang import compile

pytestmark = pytest.mark.privileged

CALLS = 25


def _getppid_nr() -> int:
    return next(nr for nr, name in syscall_names().items() if name == "getppid")


@pytest.fixture
def syscount_object(example: Callable[[str], ModuleType]) -> Iterator[str]:
    """examples/lang/syscount.py compiled to an ELF object (a tracepoint program, a hash and an array map)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "syscount.o")
        compile(example("syscount"), path)
        yield path


def test_libbpf_loads_attaches_by_section_and_counts(syscount_object: str) -> None:
    import pylibbpf

    obj = pylibbpf.BpfObject(syscount_object)
    obj.load()
    try:
        assert sorted(obj.get_map_names()) == ["counts", "target"]
        obj.get_map("target").update(0, os.getpid())
        prog = obj.get_program("count_syscalls")
        prog.attach()  # libbpf's bpf_program__attach: the target comes from SEC("tracepoint/raw_syscalls/sys_enter")
        try:
            for _ in range(CALLS):
                os.getppid()
        finally:
            prog.detach()
        assert obj.get_map("counts").lookup(_getppid_nr()) == CALLS
    finally:
        del obj
        gc.collect()  # libbpf closes the object's fds when it is destroyed


def _bpftool_and_bpffs() -> None:
    if shutil.which("bpftool") is None:
        raise UnsupportedFeatureError("bpftool", reason="bpftool is not installed")
    if not os.path.ismount("/sys/fs/bpf"):
        raise UnsupportedFeatureError("bpffs", reason="/sys/fs/bpf is not mounted")


def _bpftool(*args: str) -> object:
    proc = subprocess.run(["bpftool", "-j", *args], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout) if proc.stdout.strip() else None


def test_bpftool_loads_it_and_dumps_typed_values(syscount_object: str) -> None:
    from ebpf.core.programs import Program
    from ebpf.events.tracing import attach_tracepoint

    require(_bpftool_and_bpffs)
    pins = f"/sys/fs/bpf/ebpf-lang-test-{uuid.uuid4().hex[:8]}"
    os.mkdir(pins)
    try:
        _bpftool("prog", "loadall", syscount_object, f"{pins}/progs", "pinmaps", f"{pins}/maps")
        info = _bpftool("prog", "show", "pinned", f"{pins}/progs/count_syscalls")
        assert isinstance(info, dict) and info["type"] == "tracepoint" and info["name"] == "count_syscalls"
        assert info.get("btf_id", 0) > 0  # libbpf loaded the object's BTF with it
        pid = os.getpid().to_bytes(4, "little")
        _bpftool("map", "update", "pinned", f"{pins}/maps/target", "key", "0", "0", "0", "0",
                 "value", *[str(b) for b in pid])
        with Program.from_pinned(f"{pins}/progs/count_syscalls") as prog, \
                attach_tracepoint(prog, "raw_syscalls", "sys_enter"):
            for _ in range(CALLS):
                os.getppid()
        dump = _bpftool("map", "dump", "pinned", f"{pins}/maps/counts")
        assert isinstance(dump, list)
        typed = {row["formatted"]["key"]: row["formatted"]["value"] for row in dump}  # decoded through BTF
        assert typed[_getppid_nr()] == CALLS
    finally:
        shutil.rmtree(pins, ignore_errors=True)
