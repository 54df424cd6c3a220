"""compile_c (ziglang here, clang when installed), the shipped headers, vmlinux.h, and the CLI."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from ebpf import elf
from ebpf.core.errors import EBPFError

pytestmark = pytest.mark.privileged


@pytest.mark.parametrize("compiler", ["zig", "clang"])
def test_compile_source_text_and_load(tmp_path, compiler):
    from ebpf.core.testing import require
    from ebpf.elf.compile import find_compiler

    require(find_compiler, compiler)  # skips (naming the compiler) only when it is not installed
    out = elf.compile_c(
        '#include "bpf_helpers.h"\nSEC("xdp") int f(struct xdp_md *ctx) { return XDP_DROP; }\n'
        'char LICENSE[] SEC("license") = "GPL";\n',
        tmp_path / "f.o",
        compiler=compiler,
    )
    with elf.load_elf(out) as coll:
        assert coll.programs["f"].test_run(bytes(64)).retval == 1


def test_compile_error_carries_compiler_output(tmp_path):
    src = tmp_path / "broken.c"
    src.write_text("int f( { return 0; }\n")
    with pytest.raises(elf.CompileError) as info:
        elf.compile_c(src)
    assert "broken.c" in info.value.output


def test_compile_missing_file():
    with pytest.raises(EBPFError):
        elf.compile_c(__file__ + ".does-not-exist.c")


def test_helper_header_prototypes_compile(tmp_path):
    # Common helpers with exact prototypes, an unprototyped rare one, and the CO-RE macros.
    src = tmp_path / "helpers.c"
    src.write_text(
        '#include "bpf_helpers.h"\n'
        "struct task_struct { int pid; } __attribute__((preserve_access_index));\n"
        'SEC("raw_tp/sys_enter") int h(void *ctx) {\n'
        "  char comm[16]; __u64 t = bpf_ktime_get_ns(); bpf_get_current_comm(comm, sizeof(comm));\n"
        "  struct task_struct *task = (void *)bpf_get_current_task();\n"
        "  int pid = BPF_CORE_READ(task, pid); if (bpf_core_field_exists(task->pid)) pid++;\n"
        '  bpf_printk("pid %d t %llu", pid, t); return bpf_get_smp_processor_id() + (int)bpf_jiffies64();\n'
        "}\n"
        'char LICENSE[] SEC("license") = "GPL";\n'
    )
    out = elf.compile_c(src)
    with elf.load_elf(out) as coll:
        assert "h" in coll.programs


def test_vmlinux_h_is_generated_from_kernel_btf(tmp_path):
    src = tmp_path / "vm.c"
    src.write_text(
        '#include "vmlinux.h"\n#include "bpf_helpers.h"\n'
        'SEC("tp_btf/sched_process_exec") int on_exec(__u64 *ctx) {\n'
        "  struct task_struct *t = bpf_get_current_task_btf(); return t->pid > 0 ? 0 : 1;\n}\n"
        'char LICENSE[] SEC("license") = "GPL";\n'
    )
    out = elf.compile_c(src, cflags=["-Wno-error"])
    info = elf.inspect_elf(out)
    assert [(p.name, p.type, p.section, p.attach_to) for p in info.programs] == [
        ("on_exec", "tracing", "tp_btf/sched_process_exec", "sched_process_exec")]
    with elf.load_elf(out) as coll:
        prog = coll.programs["on_exec"]
        assert prog.spec.attach_to == "sched_process_exec"


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ebpf.core.cli", *args], capture_output=True, text=True,
                          timeout=300)


def test_cli_inspect(obj):
    res = _cli("inspect", obj("core"))
    assert res.returncode == 0, res.stderr
    assert "read_task" in res.stdout and "raw_tp/sys_enter" in res.stdout
    assert "results" in res.stdout and "target_tgid" in res.stdout
    assert "byte_off task_struct" in res.stdout
    data = json.loads(_cli("inspect", "--json", obj("map_in_map")).stdout)
    assert {m["name"] for m in data["maps"]} >= {"outer", "inner_a", "jump_table"}
    btf = _cli("inspect", "--btf", obj("core"))
    assert "STRUCT 'task_struct'" in btf.stdout and "DATASEC '.rodata'" in btf.stdout
    bad = _cli("inspect", "/bin/true")
    assert bad.returncode == 1 and "wrong machine" in bad.stderr


def test_cli_compile(tmp_path):
    src = tmp_path / "c.c"
    src.write_text('#include "bpf_helpers.h"\nSEC("socket") int s(void *c) { return 0; }\n')
    res = _cli("compile", str(src), "-o", str(tmp_path / "c.o"))
    assert res.returncode == 0, res.stderr
    assert elf.list_programs(str(tmp_path / "c.o"))[0].name == "s"
