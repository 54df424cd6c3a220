"""ebpf.core.lowlevel is the supported face of the syscall layer for plugin packages: it has every
command wrapper, attr struct and union variant of ebpf.core._sys, and they are the same objects."""

from __future__ import annotations

from ebpf.core import lowlevel
from ebpf.core._sys import attrs, commands, perf, unions
from ebpf.core.lowlevel import perf as lowperf


def test_lowlevel_is_the_syscall_layer_not_a_copy() -> None:
    for module in (attrs, commands, unions):
        for name in module.__all__:
            assert getattr(lowlevel, name) is getattr(module, name), name
            assert name in lowlevel.__all__
    for name in perf.__all__:
        assert getattr(lowperf, name) is getattr(perf, name)
    for name in ("bpf", "Cmd", "close_fd", "prog_query", "link_create", "LinkCreateKprobeMulti", "IterCreateAttr"):
        assert name in lowlevel.__all__
    assert all(hasattr(lowlevel, name) for name in lowlevel.__all__)
