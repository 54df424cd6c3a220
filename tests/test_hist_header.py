"""Cross-package: a C program using ``<ebpf/hist.bpf.h>`` (shipped by ebpf-elf) fills a log2 histogram,
keyed and plain, in the kernel; ebpf-events' Histogram.from_map reads back exactly the slots Python
computes for the same values."""

from __future__ import annotations

import struct

import pytest
from ebpf.core.errors import NotSupportedError
from ebpf.events.hist import Histogram

pytestmark = pytest.mark.privileged

SOURCE = r"""
#include "bpf_helpers.h"
#include <ebpf/hist.bpf.h>

struct { __uint(type, BPF_MAP_TYPE_ARRAY); __uint(max_entries, 64); __type(key, __u32); __type(value, __u64); }
    hist SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_HASH); __uint(max_entries, 1024); __type(key, __u64); __type(value, __u64); }
    keyed SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_ARRAY); __uint(max_entries, 16); __type(key, __u32); __type(value, __u64); }
    lin SEC(".maps");

SEC("raw_tracepoint/sys_enter")
int fill(unsigned long long *ctx)
{
    unsigned long long v = ctx[0], section = ctx[1];
    unsigned long long key = (section << 32) | log2l(v);

    hist_increment(&hist, hist_log2_slot(v, 64));
    hist_increment_key(&keyed, &key, 1);
    hist_increment(&lin, hist_linear_slot(v, 100, 16));
    return 0;
}
char LICENSE[] SEC("license") = "GPL";
"""


def test_hist_header_fills_the_slots_python_expects(tmp_path: object) -> None:
    from ebpf.elf import compile_c, load_elf

    try:
        obj = compile_c(SOURCE)
    except NotSupportedError as exc:  # no compiler: ebpf-elf[compile] not installed
        pytest.skip(f"no BPF C compiler: {exc}")
    values = [(0, 1), (1, 1), (5, 1), (7, 2), (300, 2), (1 << 40, 2), ((1 << 64) - 1, 3), (99, 3), (150, 3)]
    with load_elf(obj) as coll:
        prog = coll.programs["fill"]
        for v, section in values:
            prog.test_run(ctx=struct.pack("<QQ", v, section))
        plain = Histogram.from_map(coll.maps["hist"])
        keyed = Histogram.from_map(coll.maps["keyed"], key=lambda k: (k >> 32, k & 0xFFFFFFFF))
        linear = Histogram.from_map(coll.maps["lin"], kind="linear", step=100)
    assert plain == Histogram.from_values([v for v, _ in values])
    assert sorted(keyed.sections) == [1, 2, 3]
    assert keyed.section(2) == Histogram.from_values([7, 300, 1 << 40])
    assert linear.counts[:4] == [5, 1, 0, 1] and linear.counts[15] == 2  # 0..99, 100..199, .., clamped
