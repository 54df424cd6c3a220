"""``perf_event_open(2)`` for plugin packages: ``struct perf_event_attr``, the syscall and the ioctls BPF needs.

The supported home of what ``ebpf.core._sys.perf`` implements (see :mod:`ebpf.core.lowlevel`):
tracepoint, kprobe/uprobe PMU and perf_event attachments, and perf buffers, are built on it.
"""

from __future__ import annotations

from ebpf.core._sys.perf import (
    ATTR_DISABLED,
    ATTR_FREQ,
    ATTR_WATERMARK,
    PERF_COUNT_SW_BPF_OUTPUT,
    PERF_COUNT_SW_CPU_CLOCK,
    PERF_EVENT_IOC_DISABLE,
    PERF_EVENT_IOC_ENABLE,
    PERF_EVENT_IOC_RESET,
    PERF_EVENT_IOC_SET_BPF,
    PERF_FLAG_FD_CLOEXEC,
    PERF_SAMPLE_RAW,
    PERF_TYPE_BREAKPOINT,
    PERF_TYPE_HARDWARE,
    PERF_TYPE_HW_CACHE,
    PERF_TYPE_RAW,
    PERF_TYPE_SOFTWARE,
    PERF_TYPE_TRACEPOINT,
    PerfEventAttr,
    disable,
    enable,
    open_tracepoint,
    perf_event_open,
    pmu_type,
    reset,
    set_bpf,
    tracepoint_id,
)

__all__ = [
    "PerfEventAttr",
    "perf_event_open",
    "enable",
    "disable",
    "set_bpf",
    "reset",
    "tracepoint_id",
    "pmu_type",
    "open_tracepoint",
    "PERF_TYPE_HARDWARE",
    "PERF_TYPE_SOFTWARE",
    "PERF_TYPE_TRACEPOINT",
    "PERF_TYPE_HW_CACHE",
    "PERF_TYPE_RAW",
    "PERF_TYPE_BREAKPOINT",
    "PERF_COUNT_SW_CPU_CLOCK",
    "PERF_COUNT_SW_BPF_OUTPUT",
    "PERF_SAMPLE_RAW",
    "PERF_FLAG_FD_CLOEXEC",
    "PERF_EVENT_IOC_ENABLE",
    "PERF_EVENT_IOC_DISABLE",
    "PERF_EVENT_IOC_RESET",
    "PERF_EVENT_IOC_SET_BPF",
    "ATTR_DISABLED",
    "ATTR_FREQ",
    "ATTR_WATERMARK",
]
