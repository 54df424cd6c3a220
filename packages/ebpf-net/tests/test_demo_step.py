"""ebpf-net's parts of ``ebpf demo`` run against the real kernel: they show the counts and the
EPERM, and leave no namespace, cgroup or program behind once the cleanups ran."""

from __future__ import annotations

import io
import os
import re
import time

import pytest
from ebpf.core.demo import DemoContext
from ebpf.core.errors import BPFSyscallError
from ebpf.core.plugins import demo_steps
from ebpf.core.programs import Program
from ebpf.net._demo import cgroup_step, network_step

pytestmark = pytest.mark.privileged


def _gone(prog_id: int) -> bool:
    for _ in range(50):  # the kernel frees a program once its last reference is dropped
        try:
            Program.from_id(prog_id).close()
        except BPFSyscallError:
            return True
        time.sleep(0.02)
    return False


def test_network_step_counts_protocols_and_drops_then_cleans_up() -> None:
    out = io.StringIO()
    ctx = DemoContext(out=out, live=False)
    try:
        network_step(ctx)
        namespaces = re.findall(r"ebpf-demo-[ab]-\d+", out.getvalue())
        assert namespaces and all(os.path.exists(f"/run/netns/{n}") for n in namespaces)
    finally:
        assert ctx.run_cleanups() == []
    text = out.getvalue()
    assert re.search(r"udp\s+10\b", text) and re.search(r"icmp\s+3\b", text), text
    assert "the TC filter dropped 5 packet(s)" in text
    assert not any(os.path.exists(f"/run/netns/{n}") for n in namespaces)
    assert all(_gone(i) for i in ctx.program_ids)
    assert any("TC dropped 5" in s for s in ctx.summaries)


def test_cgroup_step_shows_eperm_then_removes_the_cgroup() -> None:
    out = io.StringIO()
    ctx = DemoContext(out=out, live=False)
    try:
        cgroup_step(ctx)
        path = re.search(r"created cgroup (\S+)", out.getvalue())
        assert path and os.path.isdir(path.group(1))
    finally:
        assert ctx.run_cleanups() == []
    text = out.getvalue()
    assert "EPERM" in text and "connected" in text
    assert not os.path.exists(path.group(1))
    assert all(_gone(i) for i in ctx.program_ids)


def test_steps_are_contributed_through_the_hook() -> None:
    names = {s.name: s for s in demo_steps()}
    assert {"network", "cgroup"} <= set(names)
    assert names["network"].distribution == "ebpf-net" and names["network"].order < names["cgroup"].order
