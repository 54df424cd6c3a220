"""<ebpf/hist.bpf.h> from C: log2l, hist_log2_slot, hist_linear_slot, hist_increment(_key) fill the
slots a Python reference computes for values fed to the program with BPF_PROG_TEST_RUN."""

from __future__ import annotations

import struct
from collections import Counter

import pytest
from ebpf import elf

pytestmark = pytest.mark.privileged

SOURCE = r"""
#include <bpf/bpf_helpers.h>
#include <ebpf/hist.bpf.h>

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, __u64);
} log2_hist SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 16);
	__type(key, __u32);
	__type(value, __u64);
} linear_hist SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, __u64);
	__type(value, __u64);
} keyed_hist SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} last_log2 SEC(".maps");

SEC("raw_tracepoint/ebpf_hist_test")
int fill(unsigned long long *ctx)
{
	__u64 v = ctx[0], section = ctx[1], key;
	__u32 zero = 0;
	__u64 raw = log2l(v);

	bpf_map_update_elem(&last_log2, &zero, &raw, BPF_ANY);
	hist_increment(&log2_hist, hist_log2_slot(v, 64));
	hist_increment(&linear_hist, hist_linear_slot(v, 100, 16));
	key = section << 32 | hist_log2_slot(v, 64);
	hist_increment_key(&keyed_hist, &key, 2);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
"""

VALUES = [0, 1, 2, 3, 3, 99, 100, 250, 900, 1023, 1024, 1599, 5_000_000, (1 << 63) + 5, (1 << 64) - 1]


def log2(v: int) -> int:
    return max(v.bit_length() - 1, 0)


def test_hist_header_fills_the_reference_slots(tmp_path: object) -> None:
    obj = elf.compile_c(SOURCE, str(tmp_path) + "/hist.o")  # type: ignore[operator]
    with elf.load_elf(obj) as coll:  # BTF-typed: __u32 keys and __u64 values as ints
        prog = coll.programs["fill"]
        for i, v in enumerate(VALUES):
            prog.test_run(ctx=struct.pack("<QQ", v, i % 3))
            assert coll.maps["last_log2"][0] == log2(v), v
        log2_counts = [coll.maps["log2_hist"][i] for i in range(64)]
        linear_counts = [coll.maps["linear_hist"][i] for i in range(16)]
        keyed = dict(coll.maps["keyed_hist"].items())
    want_log2 = Counter(log2(v) for v in VALUES)
    assert log2_counts == [want_log2.get(i, 0) for i in range(64)]
    want_linear = Counter(min(v // 100, 15) for v in VALUES)
    assert linear_counts == [want_linear.get(i, 0) for i in range(16)]
    want_keyed: Counter[int] = Counter()
    for i, v in enumerate(VALUES):
        want_keyed[(i % 3) << 32 | log2(v)] += 2
    assert keyed == dict(want_keyed)
