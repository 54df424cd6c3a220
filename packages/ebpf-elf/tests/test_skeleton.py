"""``ebpf gen skeleton``: generate a typed module, type-check it with mypy, import it and use it."""

from __future__ import annotations

import ctypes
import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
from ebpf import elf
from ebpf.core.btf import Composite
from ebpf.core.errors import EBPFError
from ebpf.elf.objfile import parse_object
from ebpf.elf.skeleton import generate_skeleton

pytestmark = pytest.mark.privileged

SRC = Path(elf.__file__).resolve().parents[2]  # packages/ebpf-elf/src
CORE_SRC = Path(__import__("ebpf.core").core.__file__).resolve().parents[2]

TYPED_SRC = r"""
#include <bpf/bpf_helpers.h>

/* A flow as the program keys it. */
struct flow_key {
	__u32 saddr;
	__u16 port;
	__u8 proto;
	__u8 flags: 3, urgent: 1;
};

struct stats {
	__u64 packets;
	union { __u64 bytes; __u32 halves[2]; };
	char label[8];
	__s16 delta[3];
};

/* Per-flow counters. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16);
	__type(key, struct flow_key);
	__type(value, struct stats);
} flows SEC(".maps");

/* How many flows the program saw. */
__u64 seen = 0;
const volatile __u32 limit = 10;
struct stats last = {};

/* Counts nothing, returns the limit. */
SEC("socket")
int count(void *ctx)
{
	seen++;
	return limit;
}

char LICENSE[] SEC("license") = "GPL";
"""


def _import(path: str, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _mypy(path: str) -> None:
    env = dict(os.environ)
    if "site-packages" not in str(SRC):  # a source checkout (editable install): point mypy at the sources
        env["MYPYPATH"] = f"{CORE_SRC}{os.pathsep}{SRC}"
    res = subprocess.run([sys.executable, "-m", "mypy", "--strict", "--follow-imports=silent", "--namespace-packages",
                          "--explicit-package-bases", "--ignore-missing-imports", "--no-incremental", path],
                         capture_output=True, text=True, env=env, cwd=os.path.dirname(path), timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr


def test_generate_typecheck_import_and_use(tmp_path):
    src = tmp_path / "flows.bpf.c"
    src.write_text(TYPED_SRC)
    out = generate_skeleton(src, tmp_path / "flows_skel.py", compiler="zig")
    text = Path(out).read_text()
    assert '"""A flow as the program keys it."""' in text and '"""Per-flow counters."""' in text
    assert '"""How many flows the program saw."""' in text and '"""Counts nothing, returns the limit."""' in text
    _mypy(out)
    mod = _import(out, "flows_skel")
    with mod.FlowsSkeleton(limit=3) as skel:
        assert skel.programs.count.test_run(bytes(64)).retval == 3
        assert skel.globals.seen == 1 and skel.globals.limit == 3
        skel.globals.seen = 7
        assert skel.globals.seen == 7
        flow = {"saddr": 1, "port": 80, "proto": 6, "flags": 2, "urgent": 1}
        skel.maps.flows[flow] = {"packets": 9, "label": "x"}
        raw_key = skel.maps.flows.key_codec.encode(flow)  # the map's own BTF codec agrees with ctypes
        key = skel.types.flow_key.parse(raw_key)
        assert (key.saddr, key.port, key.proto, key.flags, key.urgent) == (1, 80, 6, 2, 1)
        value = skel.types.stats.parse(skel.maps.flows.lookup_bytes(raw_key))
        assert value.packets == 9 and value.label == b"x" and value.bytes == 0 and list(value.delta) == [0, 0, 0]


@pytest.mark.parametrize("name", ["lt_opensnoop", "lt_runqlat", "lt_syscount", "lt_sigsnoop", "lt_tcpstates",
                                  "lt_uprobe", "lt_kprobes", "edge_cases"])
def test_ctypes_layouts_match_btf(fixtures, tmp_path, name):
    out = generate_skeleton(fixtures / f"{name}.o", tmp_path / f"{name}_skel.py")
    mod = _import(out, f"{name}_skel")
    btf = parse_object(str(fixtures / f"{name}.o")).btf
    assert btf is not None
    for cname, cls in vars(mod.Types).items():
        if cname.startswith("_"):
            continue
        t = next(t for t in btf.find_all(cname) if isinstance(t, Composite))
        assert ctypes.sizeof(cls) == t.size, cname
        for m in t.members:
            if m.name and not m.bitfield_size:
                assert getattr(cls, m.name).offset == m.bit_offset // 8, (cname, m.name)


def test_skeleton_of_a_tool_typechecks(fixtures, tmp_path):
    out = generate_skeleton(fixtures / "lt_opensnoop.o", tmp_path / "opensnoop_skel.py")
    _mypy(out)
    mod = _import(out, "opensnoop_skel")
    assert mod.Types.event.parse(bytes(400)).pid == 0


def test_cli_gen_skeleton(fixtures, tmp_path):
    res = subprocess.run([sys.executable, "-m", "ebpf.core.cli", "gen", "skeleton", str(fixtures / "lt_runqlat.o"),
                          "-o", str(tmp_path / "rq.py"), "--name", "RunQLat"], capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr
    assert "class RunQLat:" in (tmp_path / "rq.py").read_text()
    bad = subprocess.run([sys.executable, "-m", "ebpf.core.cli", "gen", "skeleton", str(tmp_path / "nope.o")],
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode == 1 and "does not exist" in bad.stderr
    with pytest.raises(EBPFError):
        generate_skeleton(tmp_path / "nope.c")
