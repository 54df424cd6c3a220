"""Programs written as libbpf-tools are (``lt_*.c``) build with ``compile_c`` alone and load.

Attaching and observing them is ``tests/test_libbpf_tools_style.py`` (it needs ebpf-events).
"""

from __future__ import annotations

import pytest
from ebpf import elf
from ebpf.core.testing import require
from ebpf.elf.compile import find_compiler

pytestmark = pytest.mark.privileged

TOOLS = {
    "syscount": {"sys_enter", "sys_exit"},
    "opensnoop": {"tracepoint__syscalls__sys_enter_openat", "tracepoint__syscalls__sys_exit_openat"},
    "runqlat": {"sched_wakeup", "sched_wakeup_new", "sched_switch"},
    "kprobes": {"do_unlinkat", "do_unlinkat_ret", "kill_entry"},
    "uprobe": {"labs_entry", "labs_exit"},
    "tcpstates": {"handle_set_state"},
    "sigsnoop": {"sig_trace"},
    "execsnoop": {"tracepoint__syscalls__sys_enter_execve", "tracepoint__syscalls__sys_exit_execve"},
    "profile": {"do_perf_event"},
    "exitsnoop": {"sched_process_exit"},
    "oomkill": {"oom_kill_process"},
}


@pytest.mark.parametrize("compiler", ["zig", "clang"])
@pytest.mark.parametrize("tool", sorted(TOOLS))
def test_tool_compiles_without_warnings_and_loads(fixtures, tmp_path, tool, compiler):
    require(find_compiler, compiler)
    out = elf.compile_c(fixtures / f"lt_{tool}.c", tmp_path / f"{tool}.o", compiler=compiler)
    assert out.warnings == []
    with elf.load_elf(out) as coll:
        assert set(coll.programs) == TOOLS[tool]


def test_ringbuf_declared_with_a_record_type_loads(obj):
    # __type(value, struct event) on a ring buffer: the kernel wants value_size 0 (it stays for decoding)
    spec = elf.load_spec(obj("lt_opensnoop"))
    assert spec.maps["events"].value_size == 0 and spec.maps["events"].key_size == 0
    with elf.load_elf(obj("lt_opensnoop")) as coll:
        assert coll.maps["events"].max_entries == 256 * 1024


def test_perf_array_declared_with_types_loads(obj):
    with elf.load_elf(obj("lt_kprobes")) as coll:
        events = coll.maps["events"]
        assert (events.key_size, events.value_size) == (4, 4)


def test_one_byte_kconfig_extern_and_kfunc_value(obj):
    # lt_kprobes uses BPF_KSYSCALL: ``extern _Bool LINUX_HAS_SYSCALL_WRAPPER __kconfig`` (1 byte);
    # lt_sigsnoop takes a weak kfunc as a value (bpf_ksym_exists). Both need the kernel to take the BTF.
    for name in ("lt_kprobes", "lt_sigsnoop"):
        with elf.load_elf(obj(name)) as coll:
            prog = next(iter(coll.programs.values()))
            assert prog.info().btf_id  # loaded with the object's BTF, not without it
