"""A scrape reads each map through the batch path: the bpf() commands this process issues during a
scrape of 1,000 series, counted by a tracepoint program on ``syscalls:sys_enter_bpf``, are
BPF_MAP_LOOKUP_BATCH calls and no per-key lookups or key walks."""

from __future__ import annotations

import os

import pytest
from ebpf.core import asm
from ebpf.core.asm import R0, R1, R6, R7
from ebpf.core.maps import create_array_map
from ebpf.core.programs import load_program
from ebpf.events.tracing import attach_tracepoint, tracepoint_format
from ebpf.export import Exporter, parse_config

pytestmark = pytest.mark.privileged

# bpf() commands (uapi enum bpf_cmd)
MAP_LOOKUP_ELEM, MAP_GET_NEXT_KEY, MAP_LOOKUP_BATCH = 1, 4, 24
SERIES = 1000


def test_a_scrape_uses_batch_lookups_only(getppid_config: str) -> None:
    fmt = tracepoint_format("syscalls", "sys_enter_bpf")
    with Exporter(parse_config(getppid_config, "t.yaml")) as exporter, \
            create_array_map(64, value_size=8, name="bpf_cmds") as cmds:
        counts = exporter.programs[0].collection.maps["exp_test_getppid_total"]
        for i in range(SERIES):  # 1,000 process names, as if 1,000 processes had called getppid()
            counts[f"batch{i:05d}".encode().ljust(16, b"\0")] = i + 1
        insns = [asm.mov64(R6, R1),
                 asm.call("get_current_pid_tgid"), asm.rsh64(R0, 32), asm.jne(R0, os.getpid(), "out"),  # ours only
                 asm.ctx_field(R6, fmt, "cmd"), asm.jgt(R0, 63, "out"), asm.mov64(R7, R0),
                 *asm.hist_increment(cmds, R7, max_slots=64), asm.label("out"), asm.mov64(R0, 0), asm.exit_()]
        with load_program(prog_type="tracepoint", insns=insns, name="count_bpf_cmds", maps=(cmds,)) as prog, \
                attach_tracepoint(prog, "syscalls", "sys_enter_bpf"):
            families = exporter.collect()
        series = [labels for fam in families for suffix, labels, _ in fam.samples
                  if fam.name + suffix == "exp_test_getppid_total" and "batch" in labels]
        assert len(series) == SERIES
        used = {cmd: cmds[cmd] for cmd in (MAP_LOOKUP_ELEM, MAP_GET_NEXT_KEY, MAP_LOOKUP_BATCH)}
    assert used[MAP_LOOKUP_BATCH] >= 1
    assert used[MAP_LOOKUP_ELEM] == 0 and used[MAP_GET_NEXT_KEY] == 0, used
