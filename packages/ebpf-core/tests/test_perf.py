"""perf_event_open wrapper: the attr layout, software counters, tracepoint ids, SET_BPF."""

from __future__ import annotations

import ctypes
import os
import struct

import pytest
from ebpf.core._sys import perf
from ebpf.core.errors import BPFSyscallError, EBPFError, NotSupportedError, UnsupportedFeatureError
from ebpf.core.features import have_kprobes
from ebpf.core.system import kernel_version

pytestmark = pytest.mark.privileged


def test_attr_layout_matches_the_kernel_abi() -> None:
    # PERF_ATTR_SIZE_VER8 and offsets from include/uapi/linux/perf_event.h
    assert ctypes.sizeof(perf.PerfEventAttr) == 136
    assert perf.PerfEventAttr.config.offset == 8
    assert perf.PerfEventAttr.flags.offset == 40
    assert perf.PerfEventAttr.wakeup_events.offset == 48
    assert perf.PerfEventAttr.config1.offset == 56
    assert perf.PerfEventAttr.sample_regs_intr.offset == 96
    assert perf.PerfEventAttr.aux_sample_size.offset == 112
    assert perf.PerfEventAttr.config3.offset == 128
    assert perf.PerfEventAttr().size == 136


def test_attr_layout_matches_kernel_btf() -> None:
    from ebpf.core.btf import load_vmlinux

    typ = load_vmlinux().find("perf_event_attr", "struct")
    # perf_event_attr only grows (the kernel takes any size it knows); ours is the 6.18 one.
    assert typ.size <= ctypes.sizeof(perf.PerfEventAttr)
    kernel = {m.name: m.bit_offset for m in typ.members if m.name}
    ours = {name: getattr(perf.PerfEventAttr, name).offset * 8 for name, _ in perf.PerfEventAttr._fields_}
    shared = set(kernel) & set(ours)
    assert {"type", "config", "sample_type", "bp_type", "clockid", "sample_regs_intr"} <= shared
    assert "config3" in shared or kernel_version() < (6, 3)  # config3 came with Linux 6.3
    for name in shared:
        assert ours[name] == kernel[name], name
    flags = ours["flags"]
    assert kernel["disabled"] - flags == 0 and 1 << (kernel["freq"] - flags) == perf.ATTR_FREQ
    assert 1 << (kernel["watermark"] - flags) == perf.ATTR_WATERMARK
    assert 1 << (kernel["exclude_kernel"] - flags) == perf.ATTR_EXCLUDE_KERNEL


def test_software_counter_enable_disable() -> None:
    attr = perf.PerfEventAttr(type=perf.PERF_TYPE_SOFTWARE, config=perf.PERF_COUNT_SW_TASK_CLOCK,
                              flags=perf.ATTR_DISABLED)
    fd = perf.perf_event_open(attr, pid=0, cpu=-1)
    try:
        assert struct.unpack("<Q", os.read(fd, 8))[0] == 0  # disabled: nothing counted
        perf.enable(fd)
        sum(range(100000))
        perf.disable(fd)
        counted = struct.unpack("<Q", os.read(fd, 8))[0]
        assert counted > 0
        perf.reset(fd)
        assert struct.unpack("<Q", os.read(fd, 8))[0] == 0
    finally:
        os.close(fd)


def test_tracepoint_ids() -> None:
    tp_id = perf.tracepoint_id("syscalls", "sys_enter_getppid")
    assert tp_id > 0
    fd = perf.open_tracepoint("syscalls", "sys_enter_getppid", pid=0, cpu=-1)
    os.close(fd)
    with pytest.raises(NotSupportedError, match="no tracepoint"):
        perf.tracepoint_id("syscalls", "no_such_event_xyz")
    with pytest.raises(EBPFError, match="bad tracepoint name"):
        perf.tracepoint_id("../x", "y")


def test_pmu_types() -> None:
    assert perf.pmu_type("uprobe") > 0
    try:
        have_kprobes()
    except UnsupportedFeatureError:
        with pytest.raises(NotSupportedError, match="no kprobe PMU"):
            perf.pmu_type("kprobe")
    else:
        assert perf.pmu_type("kprobe") > 0


def test_bad_arguments() -> None:
    attr = perf.PerfEventAttr(type=perf.PERF_TYPE_SOFTWARE, config=perf.PERF_COUNT_SW_CPU_CLOCK)
    with pytest.raises(EBPFError, match="cannot both be -1"):
        perf.perf_event_open(attr, pid=-1, cpu=-1)
    bad = perf.PerfEventAttr(type=0xFFFF, config=0)
    with pytest.raises(BPFSyscallError) as exc:
        perf.perf_event_open(bad, pid=0, cpu=-1)
    assert exc.value.command == "perf_event_open"


def test_set_bpf_on_a_non_tracepoint_event_fails_cleanly() -> None:
    attr = perf.PerfEventAttr(type=perf.PERF_TYPE_SOFTWARE, config=perf.PERF_COUNT_SW_CPU_CLOCK)
    fd = perf.perf_event_open(attr, pid=0, cpu=-1)
    try:
        with pytest.raises(BPFSyscallError) as exc:
            perf.set_bpf(fd, -1)
        assert exc.value.command == "ioctl(PERF_EVENT_IOC_SET_BPF)"
    finally:
        os.close(fd)
