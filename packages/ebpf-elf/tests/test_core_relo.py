"""CO-RE relocations, kfuncs and __ksym externs, checked against BTF we control and the kernel's."""

from __future__ import annotations

import struct

import pytest
from ebpf import elf
from ebpf.core.btf import Builder, Enum, EnumValue, IntEncoding, Member, Struct, load_vmlinux, parse
from ebpf.core.errors import BTFError
from ebpf.core.features import have_kfunc
from ebpf.core.testing import require
from ebpf.elf.core_relo import essential_name
from ebpf.elf.steps import relocate

XDP_PASS = 2


def _prepared(path: str, **options):
    spec = elf.load_spec(path)
    relocate(spec, options)
    return spec


def _insn(spec, prog: str, idx: int) -> tuple[int, int, int, int]:
    code, regs, off, imm = struct.unpack_from("<BBhi", spec.programs[prog].insns, idx * 8)
    return code, regs >> 4, off, imm


def _core_relos(path: str, prog: str):
    return [r for r in elf.inspect_elf(path).relocations if r.program == prog and r.kind == "core"]


def test_essential_names():
    assert essential_name("task_struct___old") == "task_struct"
    assert essential_name("task_struct") == "task_struct"
    assert essential_name("___x") == "___x"


def _fake_kernel_btf(tmp_path, pid_off: int, tgid_off: int, comm_off: int) -> str:
    """A 'kernel' BTF where task_struct's fields sit at offsets we choose."""
    b = Builder()
    assert b.add_int("int", 4, IntEncoding.SIGNED) == 1
    assert b.add_int("char", 1, IntEncoding.SIGNED) == 2
    assert b.add_array(2, 16, index_type=1) == 3
    members = (Member("comm", 3, comm_off * 8), Member("tgid", 1, tgid_off * 8), Member("pid", 1, pid_off * 8))
    assert b.add(Struct(0, "task_struct", 4096, members)) == 4
    assert b.add(Enum(0, "pid_type", 4, (EnumValue("PIDTYPE_SID", 7),))) == 5
    path = tmp_path / "fake.btf"
    path.write_bytes(b.encode())
    parse(path.read_bytes()).validate()  # the builder's output parses back
    return str(path)


def test_field_offsets_follow_the_target_btf(obj, tmp_path):
    path = obj("core")
    fake = _fake_kernel_btf(tmp_path, pid_off=1000, tgid_off=2000, comm_off=3000)
    spec = _prepared(path, btf_path=fake)
    got = {}
    for r in _core_relos(path, "read_task"):
        kind, root, access = r.target.split()
        if root == "task_struct" or kind in ("enumval_value", "field_exists"):
            got[(kind, access)] = _insn(spec, "read_task", r.insn)
    # The access strings index the object's struct: 0:0 pid, 0:1 tgid, 0:2 comm.
    assert got[("byte_off", "0:0")][3] == 1000 or got[("byte_off", "0:0")][2] == 1000
    assert 2000 in got[("byte_off", "0:1")][2:]
    assert 3000 in got[("byte_off", "0:2")][2:]
    assert got[("enumval_value", "0")][3] == 7
    assert got[("field_exists", "0:0")][3] == 0
    assert got[("byte_sz", "0:0")][3] == 4


def test_field_offsets_match_the_running_kernel(obj):
    path = obj("core")
    task = load_vmlinux().find("task_struct", "struct")
    assert isinstance(task, Struct)
    offsets = {m.name: m.bit_offset // 8 for m in task.members}
    spec = _prepared(path)
    for r in _core_relos(path, "read_task"):
        kind, root, access = r.target.split()
        if kind == "byte_off" and access == "0:0" and root == "task_struct":
            assert offsets["pid"] in _insn(spec, "read_task", r.insn)[2:]


def test_unsatisfied_relocation_is_poisoned_not_fatal_until_reached(obj):
    path = obj("core_bad")
    spec = _prepared(path)
    (reloc,) = _core_relos(path, "read_missing")
    code, _src, _off, imm = _insn(spec, "read_missing", reloc.insn)
    assert (code, imm) == (0x85, 0xBAD2310)  # libbpf's poison: a call to an invalid helper
    assert "no_such_field_in_any_kernel" in spec.load_notes["read_missing"][0]


def test_bad_btf_path_content(obj, tmp_path):
    junk = tmp_path / "junk.btf"
    junk.write_bytes(b"\x9f\xeb" + bytes(30))
    with pytest.raises(BTFError, match=r"junk\.btf"):
        _prepared(obj("core"), btf_path=str(junk))


@pytest.mark.privileged
def test_kfunc_calls_resolve_and_run(obj):
    require(have_kfunc, "bpf_rcu_read_lock")  # Linux >= 6.2
    with elf.load_elf(obj("ksyms"), programs=["kfunc_prog"]) as coll:
        assert coll.programs["kfunc_prog"].test_run(bytes(64)).retval == XDP_PASS
        assert coll.variables["seen"].value == 100


@pytest.mark.privileged
def test_typeless_ksym_is_the_kallsyms_address(obj):
    from ebpf.elf.core_relo import kallsyms_address

    with elf.load_elf(obj("ksyms"), programs=["typeless_prog"]) as coll:
        coll.programs["typeless_prog"].test_run(bytes(64))
        assert coll.variables["schedule_addr"].value == kallsyms_address("schedule") != 0


def test_typed_ksym_gets_the_vmlinux_btf_id(obj):
    path = obj("ksyms")
    kfuncs = [r for r in elf.inspect_elf(path).relocations if r.kind == "kfunc"]
    for r in kfuncs:
        require(have_kfunc, r.target)  # a missing (strong) kfunc makes the relocation fail
    spec = _prepared(path)
    (reloc,) = [r for r in elf.inspect_elf(path).relocations if r.kind == "ksym"]
    assert reloc.target == "bpf_prog_active"
    code, src, _off, imm = _insn(spec, reloc.program, reloc.insn)
    assert (code, src) == (0x18, 3)  # ld_imm64 BPF_PSEUDO_BTF_ID
    assert imm == load_vmlinux().find("bpf_prog_active", "var").id
    for r in kfuncs:
        code, src, _off, imm = _insn(spec, r.program, r.insn)
        assert (code, src) == (0x85, 2)  # call BPF_PSEUDO_KFUNC_CALL
        assert imm == load_vmlinux().find(r.target, "func").id
