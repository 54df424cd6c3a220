"""BPF iterators against the real kernel: programs written with the assembler walk tasks, a hash
map's elements and the kernel's symbols; pinned iterators are read with ``cat``; bad input is
refused before any syscall."""

from __future__ import annotations

import os
import struct
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
from ebpf.core import asm
from ebpf.core.asm import DW, R0, R1, R2, R3, R6, R7, R10, W
from ebpf.core.btf import load_vmlinux
from ebpf.core.errors import AttachError, EBPFError, UnsupportedFeatureError
from ebpf.core.maps import create_array_map, create_hash_map, create_ringbuf_map
from ebpf.core.programs import Program, load_program
from ebpf.core.testing import require
from ebpf.events.iterators import (
    IterLink,
    attach_iter,
    have_iter_target,
    iter_target,
    list_iter_targets,
)

pytestmark = pytest.mark.privileged
TASK = [("pid", "u32"), ("tgid", "u32"), ("comm", "char[16]")]
KSYM = struct.Struct("<Q120s")  # address, name


def offset(struct_name: str, member: str) -> int:
    spec = load_vmlinux()
    return spec.find_member(spec.find(struct_name, "struct"), member).bit_offset // 8


def seq_write(size: int, stack_off: int) -> list[Any]:
    """``bpf_seq_write(ctx->meta->seq, fp+stack_off, size)``, ctx in R6."""
    return [asm.ldx_mem(DW, R1, R6, 0), asm.ldx_mem(DW, R1, R1, 0),
            asm.mov64(R2, R10), asm.add64(R2, stack_off), asm.mov64(R3, size), asm.call("seq_write")]


def iter_program(target: str, body: list[Any], name: str) -> Program:
    insns = [asm.mov64(R6, R1), *body, asm.label("out"), asm.mov64(R0, 0), asm.exit_()]
    return load_program(prog_type="tracing", expected_attach_type="trace_iter", attach_to=target, insns=insns,
                        name=name)


@pytest.fixture
def task_prog() -> Iterator[Program]:
    """iter/task: one {pid, tgid, comm[16]} record per task."""
    require(have_iter_target, "task")
    body = [
        asm.ldx_mem(DW, R7, R6, 8), asm.jeq(R7, 0, "out"),  # ctx->task, NULL on the final call
        asm.ldx_mem(W, R1, R7, offset("task_struct", "pid")), asm.stx_mem(W, R10, R1, -24),
        asm.ldx_mem(W, R1, R7, offset("task_struct", "tgid")), asm.stx_mem(W, R10, R1, -20),
        asm.mov64(R1, R10), asm.add64(R1, -16), asm.mov64(R2, 16),
        asm.mov64(R3, R7), asm.add64(R3, offset("task_struct", "comm")), asm.call("probe_read_kernel"),
        *seq_write(24, -24),
    ]
    with iter_program("task", body, "it_task") as prog:
        yield prog


def own_comm() -> str:
    with open("/proc/self/comm") as f:
        return f.read().strip()


def test_targets_come_from_btf() -> None:
    require(have_iter_target, "task")
    targets = list_iter_targets()
    assert {"task", "bpf_map", "bpf_map_elem"} <= set(targets)
    assert not any(t.endswith(("_new", "_next", "_destroy")) for t in targets)  # open-coded iterator kfuncs


def test_task_iterator_lists_this_process(task_prog: Program) -> None:
    assert iter_target(task_prog) == "task"
    with attach_iter(task_prog) as link:
        assert isinstance(link, IterLink) and link.info().details["target_name"] == "task"
        records = list(link.read_records(TASK))
        again = list(link.read_records(TASK))  # every open() is a new walk
    mine = [r for r in records if r.pid == os.getpid()]
    assert len(mine) == 1 and mine[0].tgid == os.getpid() and mine[0].comm == own_comm()
    assert len(records) > 10 and os.getpid() in {r.pid for r in again}


def test_task_iterator_through_program_attach(task_prog: Program) -> None:
    with task_prog.attach() as link, link.open() as f:  # the ebpf-events attach backend
        data = f.read()
    assert len(data) % 24 == 0 and struct.pack("<II", os.getpid(), os.getpid()) in data


def test_task_iterator_narrowed_to_one_task(task_prog: Program) -> None:
    try:
        link = attach_iter(task_prog, task=os.getpid())
    except AttachError as exc:  # task= is Linux >= 6.1: older kernels say EINVAL
        pytest.skip(f"per-task iterator filter not supported: {exc}")
    with link:
        records = list(link.read_records(TASK))
    assert {r.tgid for r in records} == {os.getpid()} and os.getpid() in {r.pid for r in records}


def test_pinned_iterator_reads_with_cat(task_prog: Program, pin_dir: str) -> None:
    path = os.path.join(pin_dir, "tasks")
    with attach_iter(task_prog) as link:
        link.pin(path)
        out = subprocess.run(["cat", path], capture_output=True, check=True, timeout=30).stdout
        link.unpin()
    assert not os.path.exists(path)
    assert struct.pack("<II", os.getpid(), os.getpid()) + own_comm().encode() in out


def map_elem_sum_program(acc: Any) -> Program:
    """iter/bpf_map_elem: add each u64 value into acc[0]; on the last call (value NULL) write the sum."""
    body = [
        asm.mov64(R1, 0), asm.stx_mem(W, R10, R1, -4),
        asm.ld_map_fd(R1, acc), asm.mov64(R2, R10), asm.add64(R2, -4), asm.call("map_lookup_elem"),
        asm.jeq(R0, 0, "out"), asm.mov64(R7, R0),
        asm.ldx_mem(DW, R1, R6, 24), asm.jeq(R1, 0, "end"),  # ctx->value
        asm.ldx_mem(DW, R1, R1, 0), asm.atomic_add(DW, R7, R1), asm.ja("out"),
        asm.label("end"), asm.ldx_mem(DW, R1, R7, 0), asm.stx_mem(DW, R10, R1, -16),
        *seq_write(8, -16),
    ]
    return iter_program("bpf_map_elem", body, "it_sum")


def test_map_element_iterator_sums_in_the_kernel() -> None:
    require(have_iter_target, "bpf_map_elem")
    values = {k: k * 1000 + 7 for k in range(1, 301)}
    with create_hash_map(512, key_size=4, value_size=8, name="it_vals") as vals, \
            create_array_map(1, value_size=8, name="it_acc") as acc, map_elem_sum_program(acc) as prog:
        vals.update_batch(values.items())
        with attach_iter(prog, map=vals) as link:
            assert link.info().map_id == vals.info().id
            assert list(link.read_records("u64")) == [sum(values.values())]
            assert acc[0] == sum(values.values())
            with pytest.raises(EBPFError, match="8 bytes is not a whole number of 5-byte records"):
                list(link.read_records(struct.Struct("<I1s")))  # a second walk: it adds them again
            assert acc[0] == 2 * sum(values.values())


def test_map_element_probe_says_why_a_kernel_refuses_it() -> None:
    require(have_iter_target, "task")
    try:
        have_iter_target.__wrapped__("bpf_map_elem")  # type: ignore[attr-defined]  # past the cache
    except UnsupportedFeatureError as exc:
        # this host's 6.18.44-fc kernel: EPERM before verification, for map-memory contexts only
        assert exc.refused == "EPERM", exc
        assert "while iter/task loads" in exc.reason and "PTR_TO_BUF" in exc.reason
        assert "not a capability or lockdown matter" in exc.reason
    else:  # a stock kernel (Debian 6.18 in tools/vm) loads it: the iterator tests above run there
        load_program(prog_type="tracing", expected_attach_type="trace_iter", attach_to="bpf_map_elem",
                     insns=[asm.mov64(R0, 0), asm.exit_()]).close()


def test_map_element_iterator_refuses_small_values() -> None:
    require(have_iter_target, "bpf_map_elem")
    with create_hash_map(4, key_size=4, value_size=4, name="it_small") as small, \
            create_array_map(1, value_size=8, name="it_acc2") as acc, map_elem_sum_program(acc) as prog, \
            pytest.raises(AttachError, match=r"EACCES|Permission"):
        attach_iter(prog, map=small)  # the program reads 8 value bytes, the map has 4


def test_ksym_iterator_finds_bpf_prog_put() -> None:
    require(have_iter_target, "ksym")
    body = [
        asm.ldx_mem(DW, R7, R6, 8), asm.jeq(R7, 0, "out"),  # ctx->ksym
        asm.ldx_mem(DW, R1, R7, offset("kallsym_iter", "value")), asm.stx_mem(DW, R10, R1, -128),
        asm.mov64(R1, R10), asm.add64(R1, -120), asm.mov64(R2, 120),
        asm.mov64(R3, R7), asm.add64(R3, offset("kallsym_iter", "name")), asm.call("probe_read_kernel_str"),
        *seq_write(KSYM.size, -128),
    ]
    with iter_program("ksym", body, "it_ksym") as prog, attach_iter(prog) as link:
        symbols = {name.split(b"\0", 1)[0].decode(): addr for addr, name in link.read_records(KSYM)}
    assert "bpf_prog_put" in symbols and len(symbols) > 1000
    with open("/proc/kallsyms") as f:
        listed = {line.split()[2]: int(line.split()[0], 16) for line in f if line.split()[2] == "bpf_prog_put"}
    assert symbols["bpf_prog_put"] == listed["bpf_prog_put"]


# --- bad input: clear errors before any syscall, nothing attached ---------------------------------


def test_map_iterator_on_a_map_of_the_wrong_type() -> None:
    require(have_iter_target, "bpf_map_elem")
    with create_ringbuf_map(4096, name="it_rb") as rb, create_array_map(1, value_size=8, name="it_acc3") as acc, \
            map_elem_sum_program(acc) as prog:
        with pytest.raises(EBPFError, match="cannot walk a ringbuf map"):
            attach_iter(prog, map=rb)
        with pytest.raises(EBPFError, match="walks one map: pass map="):
            attach_iter(prog)
        with pytest.raises(EBPFError, match="at most one of"):
            attach_iter(prog, map=acc, task=1)


def test_options_the_target_does_not_take(task_prog: Program) -> None:
    with create_array_map(1, value_size=8, name="it_acc4") as acc, pytest.raises(EBPFError, match="map= is only for"):
        attach_iter(task_prog, map=acc)
    for bad in (0, -3, True, "1"):
        with pytest.raises(EBPFError, match="positive int"):
            attach_iter(task_prog, task=bad)  # type: ignore[arg-type]
    with pytest.raises(EBPFError, match="cgroup iterator"):
        attach_iter(task_prog, cgroup="/sys/fs/cgroup")


def test_not_an_iterator_program() -> None:
    prog = load_program(prog_type="socket_filter", insns=[asm.mov64(R0, 0), asm.exit_()])
    with prog, pytest.raises(EBPFError, match="not an iterator"):
        attach_iter(prog)
    with pytest.raises(EBPFError, match="takes a Program"):
        attach_iter("task")  # type: ignore[arg-type]


def test_bad_record_codec(task_prog: Program) -> None:
    with attach_iter(task_prog) as link, pytest.raises(EBPFError, match="unusable record codec"):
        list(link.read_records(object()))
