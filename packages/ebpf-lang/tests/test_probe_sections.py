"""Probe sections written in Python: libbpf's ``uprobe/BINARY:FUNCTION`` sections with the ``pt_regs``
context typed from the kernel's BTF (a function's argument on entry, its return value on return), and
``tp_btf/`` programs reading the tracepoint's typed arguments (a ``task_struct``)."""

from __future__ import annotations

import ctypes
import os
import subprocess
from pathlib import Path

import pytest
from ebpf.lang import LangError, compile, load, source_module

pytestmark = pytest.mark.privileged

# The registers of the first argument and of the return value in the kernel's struct pt_regs.
REGS = {"x86_64": ("di", "ax")}

SOURCE = '''
from ebpf.lang import ArrayMap, kernel, u64, ctx_types as ct
seen = ArrayMap(u64, max_entries=2)

@kernel("uprobe/libc.so.6:labs")
def on_labs(ctx: ct.pt_regs) -> int:
    if ctx.{arg} == 4242:
        seen.increment(0)
    return 0

@kernel("uretprobe/libc.so.6:labs")
def on_labs_return(ctx: ct.pt_regs) -> int:
    if ctx.{ret} == 4242:
        seen.increment(1)
    return 0
'''


def test_uprobe_reads_the_argument_and_uretprobe_the_return_value() -> None:
    machine = os.uname().machine
    assert machine in REGS, f"add {machine}'s pt_regs argument/return registers to REGS"
    arg, ret = REGS[machine]
    mod = source_module(SOURCE.format(arg=arg, ret=ret), name="uprobe_labs")
    libc = ctypes.CDLL("libc.so.6")
    with load(mod) as coll:
        assert coll.programs["on_labs"].attach_target == "uprobe:libc.so.6:labs"
        with coll.programs["on_labs"].attach(), coll.programs["on_labs_return"].attach():
            for _ in range(5):
                assert libc.labs(ctypes.c_long(4242)) == 4242
            for _ in range(3):
                libc.labs(ctypes.c_long(-7))
        assert [coll.maps["seen"][0], coll.maps["seen"][1]] == [5, 5]


def test_uprobe_sections_in_an_elf_object_load_with_load_elf_and_libbpf(tmp_path: Path) -> None:
    import gc

    import pylibbpf
    from ebpf.elf import load_elf

    arg, ret = REGS.get(os.uname().machine, ("di", "ax"))
    path = str(tmp_path / "uprobe.o")
    compile(source_module(SOURCE.format(arg=arg, ret=ret), name="uprobe_elf"), path)
    with load_elf(path) as coll:
        assert coll.programs["on_labs_return"].attach_target == "uretprobe:libc.so.6:labs"
    obj = pylibbpf.BpfObject(path)
    obj.load()
    assert sorted(obj.get_program_names()) == ["on_labs", "on_labs_return"]
    del obj
    gc.collect()


def test_a_uprobe_section_needs_its_target() -> None:
    with pytest.raises(LangError, match=r"uprobe_no_target.py:4:0: unknown section 'uprobe/'"):
        source_module('''
from ebpf.lang import kernel, ctx_types as ct

@kernel("uprobe/")
def f(ctx: ct.pt_regs) -> int:
    return 0
''', name="uprobe_no_target")


TP_BTF = '''
from ebpf.lang import ArrayMap, kernel, u32, ctx_types as ct
parent = ArrayMap(u32, max_entries=1)   # [0]: the process whose children count
child = ArrayMap(u32, max_entries=2)    # [0]: the tgid of its last exec'd child, [1]: how many execs

@kernel("tp_btf/sched_process_exec")
def on_exec(ctx: ct.bpf_raw_tracepoint_args) -> int:
    task: ct.task_struct = ctx.args[0]   # sched_process_exec(struct task_struct *p, pid_t old_pid, ...)
    if task.real_parent.tgid == parent[0]:
        child[0] = task.tgid
        child.increment(1)
    return 0
'''


def test_tp_btf_reads_the_task_argument_and_attaches_to_its_own_target() -> None:
    with load(source_module(TP_BTF, name="tp_btf_exec")) as coll:
        prog = coll.programs["on_exec"]
        assert prog.attach_target is None  # attached where it was loaded for, as load_elf's tp_btf programs
        coll.maps["parent"][0] = os.getpid()
        with prog.attach():
            proc = subprocess.Popen(["true"])
            proc.wait()
        assert [coll.maps["child"][0], coll.maps["child"][1]] == [proc.pid, 1]
