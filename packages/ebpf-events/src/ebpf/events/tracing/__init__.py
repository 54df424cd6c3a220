"""Attaching tracing programs: tracepoints, raw tracepoints, tp_btf, fentry/fexit/fmod_ret,
kprobes (PMU, tracefs, kprobe.multi), uprobes (PMU, tracefs, uprobe.multi), USDT probes (with their arguments decoded and readable from the program)
and perf_event programs.  Every attach function returns a core :class:`~ebpf.core.links.Link`.
"""

from __future__ import annotations

from ebpf.events.tracing._attach import (
    PERF_EVENTS,
    attach_fentry,
    attach_fexit,
    attach_fmod_ret,
    attach_perf_event,
    attach_raw_tracepoint,
    attach_tp_btf,
    attach_tracepoint,
    attach_tracing,
    list_tracepoints,
    load_tracing_program,
    parse_tracepoint,
)
from ebpf.events.tracing._elf import ElfFile, Symbol
from ebpf.events.tracing._format import TracepointField, TracepointFormat, parse_format, tracepoint_format
from ebpf.events.tracing._links import MultiLink, TracefsProbeLink
from ebpf.events.tracing._probes import (
    attach_kprobe,
    attach_kprobe_multi,
    attach_kretprobe,
    attach_uprobe,
    attach_uprobe_multi,
    attach_uretprobe,
    resolve_binary,
    resolve_uprobe_offset,
)
from ebpf.events.tracing._usdt import UsdtLink, UsdtProbe, attach_usdt, list_usdt
from ebpf.events.tracing._usdt_args import (
    UsdtArg,
    UsdtArgKind,
    UsdtSpecs,
    encode_usdt_spec,
    parse_usdt_args,
    usdt_arg,
    usdt_cookie,
)

__all__ = [
    "PERF_EVENTS",
    "ElfFile",
    "MultiLink",
    "Symbol",
    "TracefsProbeLink",
    "TracepointField",
    "TracepointFormat",
    "UsdtArg",
    "UsdtArgKind",
    "UsdtLink",
    "UsdtProbe",
    "UsdtSpecs",
    "attach_fentry",
    "attach_fexit",
    "attach_fmod_ret",
    "attach_kprobe",
    "attach_kprobe_multi",
    "attach_kretprobe",
    "attach_perf_event",
    "attach_raw_tracepoint",
    "attach_tp_btf",
    "attach_tracepoint",
    "attach_tracing",
    "attach_uprobe",
    "attach_uprobe_multi",
    "attach_uretprobe",
    "attach_usdt",
    "encode_usdt_spec",
    "list_tracepoints",
    "list_usdt",
    "load_tracing_program",
    "parse_format",
    "parse_tracepoint",
    "parse_usdt_args",
    "resolve_binary",
    "resolve_uprobe_offset",
    "tracepoint_format",
    "usdt_arg",
    "usdt_cookie",
]
