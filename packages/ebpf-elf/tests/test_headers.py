"""The shipped libbpf-compatible headers and compile_c's behaviour (warnings, errors, no temp files)."""

from __future__ import annotations

import glob
import os
import tempfile
import warnings

import pytest
from ebpf import elf
from ebpf.core.features import have_kfunc, have_kfunc_tags
from ebpf.core.testing import require
from ebpf.elf.compile import CompileResult, CompileWarning, find_compiler

pytestmark = pytest.mark.privileged

COMPILERS = ["zig", "clang"]
LICENSE = 'char LICENSE[] SEC("license") = "GPL";\n'


@pytest.fixture(params=COMPILERS)
def compiler(request: pytest.FixtureRequest) -> str:
    """Each test runs with ziglang's clang and with Debian's clang (skipped when not installed)."""
    require(find_compiler, request.param)
    return str(request.param)


@pytest.mark.parametrize("header", ["bpf_helpers", "bpf_helper_defs", "bpf_tracing", "bpf_core_read",
                                    "bpf_endian", "usdt.bpf"])
def test_headers_reachable_as_bpf_and_top_level(tmp_path, header):
    for form in (f"<bpf/{header}.h>", f'"{header}.h"'):
        src = f'#include <bpf/bpf_helpers.h>\n#include {form}\nSEC("socket") int s(void *c) {{ return 0; }}\n' + LICENSE
        out = elf.compile_c(src, tmp_path / "h.o", compiler="zig")
        assert elf.list_programs(out)[0].name == "s"


def test_uapi_constants_without_vmlinux(tmp_path, compiler):
    src = ("#include <bpf/bpf_helpers.h>\n#include <bpf/bpf_endian.h>\n"
           "struct { __uint(type, BPF_MAP_TYPE_HASH); __uint(max_entries, 4); __type(key, __u32); "
           '__type(value, __u64); } m SEC(".maps");\n'
           'SEC("xdp") int x(struct xdp_md *ctx) {\n'
           "  __u64 flags = BPF_F_USER_STACK | BPF_F_CURRENT_CPU | BPF_RB_NO_WAKEUP; __u32 k = bpf_htonl(1);\n"
           "  bpf_map_update_elem(&m, &k, &flags, BPF_NOEXIST);\n"
           '  bpf_printk("%d %d %d %d %d", 1, 2, 3, 4, 5);\n'
           "  return bpf_ntohs(bpf_htons(XDP_PASS)) == XDP_PASS ? XDP_DROP : XDP_PASS;\n}\n" + LICENSE)
    out = elf.compile_c(src, tmp_path / "u.o", compiler=compiler)
    with elf.load_elf(out) as coll:
        assert coll.programs["x"].test_run(bytes(64)).retval == 1  # XDP_DROP
        key = (1).to_bytes(4, "big")
        assert int.from_bytes(coll.maps["m"].lookup_bytes(key), "little") == (1 << 8) | 0xFFFFFFFF | 1


def test_misspelled_helper_is_a_compile_error_with_its_line(tmp_path, compiler):
    src = tmp_path / "typo.c"
    src.write_text('#include <bpf/bpf_helpers.h>\nSEC("socket") int s(void *c) {\n'
                   "  return bpf_get_curent_pid_tgid();\n}\n" + LICENSE)
    with pytest.raises(elf.CompileError) as info:
        elf.compile_c(src, tmp_path / "typo.o", compiler=compiler)
    assert "typo.c:3" in info.value.output and "bpf_get_curent_pid_tgid" in info.value.output


def test_warnings_reach_the_caller(tmp_path, compiler):
    src = '#include <bpf/bpf_helpers.h>\nSEC("socket") int s(void *c) { int unused_x; return 0; }\n' + LICENSE
    with pytest.warns(CompileWarning, match="unused_x"):
        out = elf.compile_c(src, tmp_path / "w.o", cflags=["-Wunused-variable"], compiler=compiler)
    assert isinstance(out, CompileResult) and isinstance(out, str)
    assert len(out.warnings) == 1 and "unused_x" in out.warnings[0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        quiet = elf.compile_c(src, tmp_path / "w2.o", cflags=["-Wunused-variable"], compiler=compiler, warn=False)
    assert quiet.warnings and os.path.exists(quiet)


def test_missing_path_is_an_error_not_source_text(tmp_path):
    with pytest.raises(elf.CompileError, match="does not exist"):
        elf.compile_c(str(tmp_path / "nope.c"))
    with pytest.raises(elf.CompileError, match="does not exist"):
        elf.compile_c(tmp_path / "nope.c")
    with pytest.raises(elf.CompileError, match="is not a file"):
        elf.compile_c(str(tmp_path))
    with pytest.raises(elf.CompileError, match="path or C source"):
        elf.compile_c(42)  # type: ignore[arg-type]


def test_no_temporary_files_left_behind(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    # A temporary directory of this test's own (for us and the compiler): the shared /tmp sees other
    # processes' files come and go (in a VM guest, the host's /tmp too).
    private = tmp_path / "tmp"
    private.mkdir()
    monkeypatch.setenv("TMPDIR", str(private))
    monkeypatch.setattr(tempfile, "tempdir", str(private))
    before = set(glob.glob(os.path.join(tempfile.gettempdir(), "*")))
    src = '#include <bpf/bpf_helpers.h>\nSEC("socket") int s(void *c) { return 7; }\n' + LICENSE
    out = elf.compile_c(src, compiler="zig")
    assert out.startswith(str(tmp_path / "cache"))  # content-addressed, not a temp file
    assert elf.compile_c(src, compiler="zig") == out
    with pytest.raises(elf.CompileError):
        elf.compile_c(src.replace("return 7", "return"), compiler="zig")
    assert set(glob.glob(os.path.join(tempfile.gettempdir(), "*"))) == before == set()


def test_target_arch_defined_for_this_machine_and_overridable(tmp_path):
    src = ('#include <bpf/bpf_helpers.h>\n#ifndef __TARGET_ARCH_x86\n#error "no arch"\n#endif\n'
           'SEC("socket") int s(void *c) { return 0; }\n' + LICENSE)
    import platform

    if platform.machine() == "x86_64":
        elf.compile_c(src, tmp_path / "a.o", compiler="zig")
    with pytest.raises(elf.CompileError, match="no arch"):
        elf.compile_c(src, tmp_path / "b.o", cflags=["-D__TARGET_ARCH_arm64"], compiler="zig")


ARM64_KPROBE = """
#include <bpf/bpf_helpers.h>
struct user_pt_regs { __u64 regs[31]; __u64 sp; __u64 pc; __u64 pstate; };
struct pt_regs { union { struct user_pt_regs user_regs; struct { __u64 regs[31]; __u64 sp; __u64 pc; __u64 pstate; }; };
                 __u64 orig_x0; } __attribute__((preserve_access_index));
#include <bpf/bpf_tracing.h>
SEC("kprobe/do_unlinkat") int BPF_KPROBE(k, int dfd, void *name, long a3, long a4, long a5, long a6, long a7, long a8)
{ return dfd + a8 + PT_REGS_RC(ctx) + PT_REGS_SP(ctx) + PT_REGS_FP(ctx) + PT_REGS_IP(ctx); }
SEC("ksyscall/kill") int BPF_KSYSCALL(ks, int pid, int sig) { return pid + sig; }
SEC("kretprobe/do_unlinkat") int BPF_KRETPROBE(kr, long ret) { return ret; }
"""


def test_bpf_tracing_for_arm64_compiles(tmp_path):
    out = elf.compile_c(ARM64_KPROBE + LICENSE, tmp_path / "arm.o", cflags=["-D__TARGET_ARCH_arm64"], compiler="zig")
    assert {p.name for p in elf.list_programs(out)} == {"k", "ks", "kr"}


BPF_PROG2_SRC = """
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
__u64 seen_prev_pid, seen_count;
SEC("tp_btf/sched_switch")
int BPF_PROG2(sw2, bool, preempt, struct task_struct *, prev, struct task_struct *, next)
{
	seen_prev_pid = prev->pid;
	seen_count++;
	return 0;
}
"""


def test_bpf_prog2_compiles_and_loads(tmp_path, compiler):
    out = elf.compile_c(BPF_PROG2_SRC + LICENSE, tmp_path / "p2.o", compiler=compiler)
    with elf.load_elf(out) as coll:
        assert coll.programs["sw2"].spec.attach_to == "sched_switch"


def test_vmlinux_header_declares_the_kernels_kfuncs():
    require(have_kfunc_tags)  # what marks a function as a kfunc in the kernel's BTF
    require(have_kfunc, "bpf_task_from_pid")
    header = os.path.join(elf.vmlinux_header(), "vmlinux.h")
    with open(header) as fh:
        text = fh.read()
    assert "bpf_task_from_pid(" in text and "__weak __ksym;" in text
    assert "preserve_access_index" in text


ITER_SRC = """
#include <bpf/bpf_helpers.h>
SEC("xdp") int sum(struct xdp_md *ctx)
{
	int i, total = 0, *v;

	bpf_for(i, 0, 5)
		total += i;                 /* 0+1+2+3+4 */
	bpf_for_each(num, v, 10, 12)
		total += *v;                /* 10+11 */
	bpf_repeat(3)
		total += 100;
	return total;
}
"""


def test_open_coded_iterators(tmp_path, compiler):
    require(have_kfunc, "bpf_iter_num_new")  # bpf_for() & co. call the numbers iterator's kfuncs (6.4)
    out = elf.compile_c(ITER_SRC + LICENSE, tmp_path / "iter.o", compiler=compiler)
    with elf.load_elf(out) as coll:
        assert coll.programs["sum"].test_run(bytes(64)).retval == 10 + 21 + 300


CORE_SRC = """
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

__u64 type_size, type_ok, enum_tgid, enum_has_tgid, field_size, field_off, reset_bit, tgid, matches, ran;
const volatile __u32 target_tgid = 0;

SEC("raw_tp/sys_enter")
int core_macros(void *ctx)
{
	struct task_struct *task = (void *)bpf_get_current_task();

	if ((bpf_get_current_pid_tgid() >> 32) != target_tgid)
		return 0;
	type_size = bpf_core_type_size(struct task_struct);
	type_ok = bpf_core_type_exists(struct task_struct);
	enum_tgid = bpf_core_enum_value(enum pid_type, PIDTYPE_TGID);
	enum_has_tgid = bpf_core_enum_value_exists(enum pid_type, PIDTYPE_TGID);
	field_size = bpf_core_field_size(struct task_struct, tgid);
	field_off = bpf_core_field_offset(task->tgid);
	reset_bit = BPF_CORE_READ_BITFIELD_PROBED(task, sched_reset_on_fork) + 2;
	tgid = BPF_CORE_READ(task, group_leader, tgid);
#if __clang_major__ >= 15
	matches = bpf_core_type_matches(struct task_struct);
#else
	matches = 1;
#endif
	ran = 1;
	return 0;
}
"""


def test_core_read_macros_against_the_kernel(tmp_path, compiler, attach):
    import os

    from ebpf.core.btf import load_vmlinux

    out = elf.compile_c(CORE_SRC + LICENSE, tmp_path / "core.o", compiler=compiler)
    vm = load_vmlinux()
    task = vm.find("task_struct", "struct")
    with elf.load_elf(out, constants={"target_tgid": os.getpid()}) as coll:
        attach(coll.programs["core_macros"])
        v = coll.variables
        for _ in range(1000):
            os.getppid()
            if v["ran"].value:
                break
        assert v["ran"].value == 1
        assert v["type_size"].value == vm.sizeof(task) and v["type_ok"].value == 1 and v["matches"].value == 1
        assert v["enum_tgid"].value == 1 and v["enum_has_tgid"].value == 1
        assert v["field_size"].value == 4 and v["field_off"].value == vm.find_member(task, "tgid").bit_offset // 8
        assert v["reset_bit"].value in (2, 3) and v["tgid"].value == os.getpid()


# The macros of libbpf's bpf_helpers.h, bpf_tracing.h, bpf_core_read.h and bpf_endian.h (and usdt.bpf.h)
# that BPF programs use, by name: each must be defined by the shipped headers.
_LIBBPF_MACRO_TEXT = """
SEC __always_inline __noinline __weak __hidden __uint __type __array __ulong __ksym __kconfig __kptr
__kptr_untrusted __percpu_kptr __arg_ctx __arg_nonnull __arg_nullable __arg_trusted __arg_arena __bpf_fastcall
bpf_ksym_exists barrier barrier_var __bpf_unreachable bpf_printk BPF_SEQ_PRINTF BPF_SNPRINTF
bpf_for_each bpf_for bpf_repeat KERNEL_VERSION offsetof
PT_REGS_PARM1 PT_REGS_PARM2 PT_REGS_PARM3 PT_REGS_PARM4 PT_REGS_PARM5 PT_REGS_PARM6 PT_REGS_PARM7 PT_REGS_PARM8
PT_REGS_PARM1_CORE PT_REGS_PARM6_CORE PT_REGS_PARM7_CORE PT_REGS_PARM8_CORE PT_REGS_RET PT_REGS_FP PT_REGS_RC
PT_REGS_SP PT_REGS_IP PT_REGS_RET_CORE PT_REGS_FP_CORE PT_REGS_RC_CORE PT_REGS_SP_CORE PT_REGS_IP_CORE
PT_REGS_SYSCALL_REGS PT_REGS_PARM1_SYSCALL PT_REGS_PARM4_SYSCALL PT_REGS_PARM6_SYSCALL PT_REGS_PARM7_SYSCALL
PT_REGS_PARM1_CORE_SYSCALL PT_REGS_PARM4_CORE_SYSCALL PT_REGS_PARM6_CORE_SYSCALL PT_REGS_PARM7_CORE_SYSCALL
BPF_KPROBE_READ_RET_IP BPF_KRETPROBE_READ_RET_IP BPF_PROG BPF_PROG2 BPF_KPROBE BPF_KRETPROBE BPF_KSYSCALL
BPF_KPROBE_SYSCALL BPF_UPROBE BPF_URETPROBE
bpf_core_read bpf_core_read_user bpf_core_read_str bpf_core_read_user_str BPF_CORE_READ BPF_CORE_READ_INTO
BPF_CORE_READ_STR_INTO BPF_CORE_READ_USER BPF_CORE_READ_USER_INTO BPF_CORE_READ_USER_STR_INTO BPF_PROBE_READ
BPF_PROBE_READ_INTO BPF_PROBE_READ_STR_INTO BPF_PROBE_READ_USER BPF_PROBE_READ_USER_INTO BPF_PROBE_READ_USER_STR_INTO
BPF_CORE_READ_BITFIELD BPF_CORE_READ_BITFIELD_PROBED BPF_CORE_WRITE_BITFIELD bpf_core_field_exists
bpf_core_field_size bpf_core_field_offset bpf_core_type_id_local bpf_core_type_id_kernel bpf_core_type_exists
bpf_core_type_size bpf_core_type_matches bpf_core_enum_value_exists bpf_core_enum_value bpf_core_cast
bpf_htons bpf_ntohs bpf_htonl bpf_ntohl bpf_cpu_to_be64 bpf_be64_to_cpu __bpf_constant_htons __bpf_constant_ntohs
__bpf_constant_htonl __bpf_constant_ntohl __bpf_constant_cpu_to_be64 __bpf_constant_be64_to_cpu
BPF_USDT
"""
LIBBPF_MACROS = _LIBBPF_MACRO_TEXT.split()


def test_every_libbpf_macro_name_is_defined(tmp_path):
    includes = "".join(f"#include <bpf/{h}.h>\n" for h in ("bpf_helpers", "bpf_tracing", "bpf_core_read",
                                                          "bpf_endian", "usdt.bpf"))
    checks = "".join(f'#ifndef {name}\n#warning "missing: {name}"\n#endif\n' for name in LIBBPF_MACROS)
    # libbpf's inline functions (not macros): taking their address fails to compile when one is missing
    funcs = 'static void *const libbpf_functions[] __attribute__((unused)) = { (void *)&bpf_tail_call_static };\n'
    src = '#include "vmlinux.h"\n' + includes + checks + funcs + 'SEC("socket") int s(void *c) { return 0; }\n' + LICENSE
    out = elf.compile_c(src, tmp_path / "macros.o", compiler="zig", warn=False)
    missing = [w for w in out.warnings if "missing:" in w]
    assert not missing, missing
