"""BTF: parsing the running kernel's BTF, building and loading BTF, values, vmlinux.h."""

from __future__ import annotations

import ctypes
import dataclasses
import os
import pathlib
import struct
import subprocess
import sys

import pytest
from ebpf.core import btf
from ebpf.core._sys import attrs, commands
from ebpf.core._sys.syscall import close_fd
from ebpf.core.btf import (
    Array,
    Builder,
    Const,
    Datasec,
    Enum,
    Enum64,
    Func,
    FuncProto,
    Int,
    IntEncoding,
    Kind,
    Member,
    Pointer,
    Spec,
    Struct,
    Typedef,
    Union,
)
from ebpf.core.errors import BTFError

# -- helpers ----------------------------------------------------------------------------------------


def every_kind_blob() -> tuple[bytes, dict[str, int]]:
    """A small BTF blob with one type of every kind (ids by label)."""
    b = Builder()
    ids: dict[str, int] = {}
    ids["int"] = b.add_int("int", 4, IntEncoding.SIGNED)
    ids["uint"] = b.add_int("unsigned int", 4)
    ids["char"] = b.add_int("char", 1, IntEncoding.SIGNED)
    ids["u64"] = b.add_int("unsigned long long", 8)
    ids["ptr"] = b.add_pointer(ids["int"])
    ids["arr"] = b.add_array(ids["char"], 16, ids["uint"])
    ids["enum"] = b.add_enum("color", [("RED", 0), ("GREEN", 1), ("NEG", -1)])
    ids["enum64"] = b.add_enum("big", [("HUGE", 1 << 40), ("SMALL", 2)], size=8)
    ids["u32"] = b.add_typedef("u32", ids["uint"])
    ids["const_u32"] = b.add_const(ids["u32"])
    inner = b.add_struct("", [("x", ids["int"]), ("y", ids["int"])])
    anon_union = b.add_struct("", [("as_int", ids["int"]), ("as_u32", ids["u32"])], union=True)
    ids["struct"] = b.add(
        Struct(
            0,
            "point",
            36,
            (
                Member("a", ids["u32"], 0),
                Member("flag", ids["uint"], 32, 1),
                Member("level", ids["int"], 33, 3),
                Member("name", ids["arr"], 64),
                Member("", anon_union, 192),
                Member("pos", inner, 224),
            ),
        )
    )
    ids["union"] = b.add_struct("num", [("i", ids["int"]), ("c", ids["char"])], union=True)
    ids["fwd"] = b.add(btf.Fwd(0, "opaque", False))
    ids["volatile"] = b.add(btf.Volatile(0, "", ids["int"]))
    ids["restrict"] = b.add(btf.Restrict(0, "", ids["ptr"]))
    ids["proto"] = b.add_func_proto(ids["int"], [("ctx", ids["ptr"]), ("len", ids["u32"])])
    ids["func"] = b.add_func("handler", ids["proto"])
    ids["var"] = b.add_var("counter", ids["u64"])
    ids["datasec"] = b.add_datasec(".data", 8, [(ids["var"], 0, 8)])
    ids["float"] = b.add(btf.Float(0, "double", 8))
    ids["decl_tag"] = b.add(btf.DeclTag(0, "tagged", ids["func"], 0))
    ids["type_tag"] = b.add(btf.TypeTag(0, "user", ids["int"]))
    return b.encode(), ids


@pytest.fixture(scope="module")
def vmlinux() -> Spec:
    return btf.load_vmlinux()


# -- parsing the kernel's BTF -----------------------------------------------------------------------


def test_find_task_struct_in_vmlinux(vmlinux: Spec) -> None:
    task = vmlinux.find("task_struct")
    assert isinstance(task, Struct) and task.name == "task_struct"
    assert vmlinux.sizeof(task) == task.size > 1000
    names = {m.name for m in task.members}
    assert {"pid", "tgid", "comm", "flags"} <= names
    comm = vmlinux.find_member(task, "comm")
    comm_type = vmlinux.resolve(comm.type_id)
    assert isinstance(comm_type, Array) and comm_type.nelems == 16
    assert vmlinux.sizeof(comm.type_id) == 16
    assert vmlinux[task.id] is task  # decoded once, cached


def test_find_by_kind_forms(vmlinux: Spec) -> None:
    by_str = vmlinux.find("bpf_attr", "union")
    assert isinstance(by_str, Union)
    assert vmlinux.find("bpf_attr", Union) is by_str
    assert vmlinux.find("bpf_attr", Kind.UNION) is by_str
    assert vmlinux.find("union bpf_attr") is by_str
    assert isinstance(vmlinux.find("bpf_map_type", "enum"), Enum)
    assert isinstance(vmlinux.find("u32", "typedef"), Typedef)
    with pytest.raises(BTFError, match="no struct type named 'bpf_attr'"):
        vmlinux.find("bpf_attr", "struct")
    with pytest.raises(BTFError, match="no type named"):
        vmlinux.find("no_such_type_in_any_kernel_xyz")
    with pytest.raises(BTFError, match="unknown BTF kind"):
        vmlinux.find("task_struct", "structure")


def test_repeated_lookups_use_a_name_index_with_the_same_answers(vmlinux: Spec) -> None:
    names = ["task_struct", "sk_buff", "u32", "bpf_attr", "vfs_read", "list_head", "no_such_name_xyz", "pid"]
    direct = btf.parse(vmlinux.data)
    first = [direct.find_ids(n) for n in names]  # the first lookups search the blob
    from ebpf.core.btf.spec import _INDEX_AFTER

    for _ in range(_INDEX_AFTER):
        direct.find_ids("file")
    assert direct._off_index is not None  # by now the index exists
    assert [direct.find_ids(n) for n in names] == first
    assert first[0] == [vmlinux.find("task_struct").id] and first[-2] == []


def test_typedef_and_qualifier_chains(vmlinux: Spec) -> None:
    u32 = vmlinux.find("u32", "typedef")
    base = vmlinux.resolve(u32)
    assert isinstance(base, Int) and base.size == 4 and not base.signed
    assert vmlinux.sizeof("u32") == 4
    assert vmlinux.sizeof("u64") == 8
    assert vmlinux.sizeof("struct list_head") == 16
    assert vmlinux.alignof("struct list_head") == 8


def test_function_prototypes_have_parameter_names(vmlinux: Spec) -> None:
    func = vmlinux.find("vfs_read", "func")
    assert isinstance(func, Func)
    proto = vmlinux[func.type_id]
    assert isinstance(proto, FuncProto)
    assert [p.name for p in proto.params] == ["file", "buf", "count", "pos"]
    first = vmlinux.resolve(proto.params[0].type_id)
    assert isinstance(first, Pointer) and vmlinux[first.type_id].name == "file"


def test_enums_and_nested_members(vmlinux: Spec) -> None:
    map_type = vmlinux.find("bpf_map_type", "enum")
    assert isinstance(map_type, Enum)
    assert map_type.value_of("BPF_MAP_TYPE_HASH") == 1
    assert map_type.name_of(2) == "BPF_MAP_TYPE_ARRAY"
    task = vmlinux.find("task_struct", "struct")
    se = vmlinux.find_member(task, "se")
    vruntime = vmlinux.find_member("sched_entity", "vruntime")
    assert vmlinux.find_member(task, "se.vruntime").bit_offset == se.bit_offset + vruntime.bit_offset
    with pytest.raises(BTFError, match="no member 'nope'"):
        vmlinux.find_member(task, "se.nope")


def test_every_kind_round_trips() -> None:
    blob, ids = every_kind_blob()
    spec = btf.parse(blob)
    spec.validate()
    assert spec.count == len(ids) + 3  # void + two anonymous helpers
    kinds = {spec[i].kind for i in ids.values()}
    assert kinds == set(Kind) - {Kind.UNKN}
    point = spec.find("point", "struct")
    assert isinstance(point, Struct)
    assert [(m.name, m.bit_offset, m.bitfield_size) for m in point.members][:3] == [("a", 0, 0), ("flag", 32, 1), ("level", 33, 3)]
    assert spec.find_member(point, "as_u32").bit_offset == 192  # through the anonymous union
    assert spec.find_member(point, "pos.y").bit_offset == 224 + 32
    big = spec.find("big")
    assert isinstance(big, Enum64) and big.value_of("HUGE") == 1 << 40
    color = spec.find("color", "enum")
    assert isinstance(color, Enum) and color.signed and color.value_of("NEG") == -1
    proto = spec[ids["proto"]]
    assert isinstance(proto, FuncProto) and [p.name for p in proto.params] == ["ctx", "len"]
    assert isinstance(spec[ids["const_u32"]], Const) and spec.sizeof(ids["const_u32"]) == 4
    assert spec.find("big", Enum) is big  # kind "enum" covers ENUM64
    again = btf.parse(spec.encode())
    assert list(again) == list(spec)


def test_split_btf_on_vmlinux(vmlinux: Spec, tmp_path: object, monkeypatch: pytest.MonkeyPatch) -> None:
    task = vmlinux.find("task_struct", "struct")
    u32 = vmlinux.find("u32", "typedef")
    b = Builder(base=vmlinux)
    ptr = b.add_pointer(task.id)
    mine = b.add_struct("my_module_state", [("owner", ptr), ("count", u32.id)])
    split = b.encode()
    spec = btf.parse(split, base=vmlinux, name="mymod")
    assert ptr == vmlinux.count
    state = spec.find("my_module_state", "struct")
    assert state.id == mine
    assert spec.find("task_struct") is task  # the base is searched too
    owner = spec.find_member(state, "owner")
    target = spec[owner.type_id]
    assert isinstance(target, Pointer) and spec[target.type_id] is task
    assert spec.sizeof(state) == 16
    # /sys/kernel/btf has no module files on this machine: serve this one from a temporary dir
    import pathlib

    directory = pathlib.Path(str(tmp_path))
    (directory / "mymod").write_bytes(split)
    from ebpf.core.btf import load as load_mod

    monkeypatch.setattr(load_mod, "SYSFS_BTF", str(directory))
    monkeypatch.setattr(load_mod, "_modules", {})
    module = btf.load_module("mymod")
    assert module.base is vmlinux and module.find("my_module_state").id == mine
    with pytest.raises(BTFError, match="no BTF for module 'absent'"):
        btf.load_module("absent")
    with pytest.raises(BTFError, match="bad module name"):
        btf.load_module("../etc")


# -- loading BTF into the kernel and maps with BTF ----------------------------------------------------


@pytest.mark.privileged
def test_map_with_btf_value_type_formats_values() -> None:
    spec, key_id, value_id = btf.map_btf("u32", [("count", "u64"), ("comm", "char[16]"), ("ok", "bool"), ("hist", "u16[3]")])
    value_size = spec.sizeof(value_id)
    assert value_size == 32
    with spec.load() as handle:
        attr = attrs.MapCreateAttr(
            map_type=1,
            key_size=4,
            value_size=value_size,
            max_entries=8,
            btf_fd=handle.fd,
            btf_key_type_id=key_id,
            btf_value_type_id=value_id,
        )
        map_fd = commands.map_create(attr)
        try:
            info = commands.map_info(map_fd)
            assert (info.btf_key_type_id, info.btf_value_type_id) == (key_id, value_id)
            assert info.btf_id == handle.id
            from_kernel = btf.load_by_id(info.btf_id)
            assert list(from_kernel) == list(spec)
        finally:
            close_fd(map_fd)
    assert handle.closed
    value = struct.pack("<Q16s?x3H", 7, b"bash", True, 1, 2, 3).ljust(32, b"\0")
    assert spec.format_value(value_id, value) == {"count": 7, "comm": "bash", "ok": True, "hist": [1, 2, 3]}
    assert spec.format_value(key_id, (5).to_bytes(4, "little")) == 5
    with pytest.raises(BTFError, match="too short"):
        spec.format_value(value_id, value[:8])


@pytest.mark.privileged
def test_create_map_with_btf_and_dump_it() -> None:
    from ebpf.core.maps import create_map, dump_map

    spec, key_id, value_id = btf.map_btf("u32", [("count", "u64"), ("comm", "char[16]")])
    with spec.load() as handle, create_map(
        map_type="hash",
        key_size=4,
        value_size=spec.sizeof(value_id),
        max_entries=4,
        name="btf_demo",
        btf=handle,
        btf_key_type_id=key_id,
        btf_value_type_id=value_id,
    ) as m:
        m.update_bytes((1).to_bytes(4, "little"), struct.pack("<Q16s", 42, b"bash"))
        assert m.info().btf_id == handle.id
        assert "1: {'count': 42, 'comm': 'bash'}" in dump_map(m)


def test_format_value_bitfields_enums_unions() -> None:
    blob, ids = every_kind_blob()
    spec = btf.parse(blob)
    data = bytearray(36)
    struct.pack_into("<I", data, 0, 42)
    data[4] = 0b1011  # flag=1, level=0b101 (signed 3 bits: -3)
    data[8:12] = b"abc\0"
    struct.pack_into("<iii", data, 24, -5, 4, 9)
    value = spec.format_value(ids["struct"], bytes(data))
    assert value == {"a": 42, "flag": 1, "level": -3, "name": "abc", "as_int": -5, "as_u32": 2**32 - 5, "pos": {"x": 4, "y": 9}}
    assert spec.format_value(ids["enum"], (1).to_bytes(4, "little")) == "GREEN"
    assert spec.format_value(ids["enum"], (77).to_bytes(4, "little")) == 77
    assert spec.format_value(ids["datasec"], (3).to_bytes(8, "little")) == {"counter": 3}
    assert spec.format_value(ids["float"], struct.pack("<d", 1.5)) == 1.5


@pytest.mark.privileged
def test_kernel_rejection_carries_the_log() -> None:
    b = Builder()
    b.add_int("int", 4, IntEncoding.SIGNED)
    b.add_pointer(99)  # a dangling type id: well-formed records, rejected by the kernel
    with pytest.raises(BTFError) as info:
        btf.load_btf(b.encode())
    log: str = info.value.log  # type: ignore[attr-defined]
    assert "Invalid type_id" in log and "PTR" in log
    assert "Invalid type_id" in str(info.value)


@pytest.mark.privileged
def test_failure_log_grows_until_it_fits(monkeypatch: pytest.MonkeyPatch) -> None:
    from ebpf.core.btf import handle as load_mod  # the BPF_BTF_LOAD and its log growth live there

    monkeypatch.setattr(load_mod, "_LOG_START", 16)  # far too small: the buffer must grow
    b = Builder()
    for i in range(40):
        b.add_int(f"int_number_{i}", 4, IntEncoding.SIGNED)
    b.add_pointer(999)
    with pytest.raises(BTFError) as info:
        btf.load_btf(b.encode())
    log: str = info.value.log  # type: ignore[attr-defined]
    assert log.startswith("magic: 0xeb9f")
    assert "int_number_39" in log and "Invalid type_id" in log
    assert info.value.errno == 22  # type: ignore[attr-defined]


@pytest.mark.privileged
def test_malformed_blob_fails_before_the_syscall() -> None:
    fds = set(os.listdir("/proc/self/fd"))
    with pytest.raises(BTFError, match="bad BTF magic"):
        btf.load_btf(b"\x00" * 64)
    blob, _ = every_kind_blob()
    with pytest.raises(BTFError, match="runs past the end"):
        btf.load_btf(blob[:24] + blob[24:60])  # header claims more than there is
    assert set(os.listdir("/proc/self/fd")) == fds


@pytest.mark.privileged
def test_btf_handle_lifecycle() -> None:
    blob, _ = every_kind_blob()
    handle = btf.load_btf(blob)
    fd = handle.fd
    assert os.fstat(fd)
    assert handle.id > 0
    reopened = btf.BTF.from_id(handle.id)
    with reopened:
        assert commands.btf_info(reopened.fd).id == handle.id
    handle.close()
    handle.close()  # idempotent
    with pytest.raises(BTFError, match="closed"):
        _ = handle.fd
    with pytest.raises(OSError):
        os.fstat(fd)


@pytest.mark.privileged
def test_object_btf_reencoded_loads() -> None:
    # A Spec decoded from a blob re-encodes to a blob the kernel accepts.
    blob, _ = every_kind_blob()
    with btf.parse(btf.parse(blob).encode()).load() as handle:
        assert handle.spec is not None and handle.spec.find("point").name == "point"


def test_from_spec_keep_strings_keeps_the_string_section_byte_for_byte() -> None:
    # An object's .BTF string section also holds strings only .BTF.ext refers to (source lines):
    # a loader that edits types must keep every offset into it valid.
    b = Builder()
    u32 = b.add_int("u32", 4)
    var = b.add_var("counter", u32)
    sec = b.add_datasec(".data", 0, [(var, 0, 4)])
    blob = b.encode()
    hdr_len, type_off, type_len, str_off, _ = struct.unpack_from("<IIIII", blob, 4)
    line = b"  counter += 1; // a source line\0"
    strings = blob[hdr_len + str_off :] + line
    header = struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, type_off, type_len, str_off, len(strings))
    blob = header + blob[24 : 24 + type_len] + strings
    spec = btf.parse(blob)
    assert spec.strings == strings
    line_off = len(strings) - len(line)
    assert spec.str_at(line_off) == line[:-1].decode()

    kept = Builder.from_spec(spec, keep_strings=True)
    datasec = kept[sec]
    assert isinstance(datasec, Datasec)
    kept[sec] = dataclasses.replace(datasec, size=64)  # replace a type, as a loader's fix-ups do
    added = kept.add_int("a_new_name", 8)
    out = btf.parse(kept.encode())
    out.validate()
    assert out.strings.startswith(strings)  # unchanged, new names appended
    assert out.str_at(line_off) == line[:-1].decode()
    assert out.sizeof(sec) == 64 and out[added].name == "a_new_name"
    assert [t for t in out if t.id != sec and t.id != added] == [t for t in spec if t.id != sec]
    assert out.find("counter", "var").id == var

    # By default strings are re-deduplicated: only names the types use are kept.
    plain = btf.parse(Builder.from_spec(spec).encode())
    assert list(plain) == list(spec) and line[:-1] not in plain.strings


# -- bad input --------------------------------------------------------------------------------------


def _header(type_len: int, str_len: int, type_off: int = 0, str_off: int | None = None) -> bytes:
    return struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, type_off, type_len, type_len if str_off is None else str_off, str_len)


@pytest.mark.parametrize(
    ("blob", "message"),
    [
        (b"", "too short"),
        (b"\x12\x34\x01\x00" + b"\x00" * 20, "bad BTF magic"),
        (struct.pack("<HBBIIIII", 0xEB9F, 2, 0, 24, 0, 0, 0, 1) + b"\0", "version"),
        (struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 4000, 0, 0, 0, 1) + b"\0", "header length"),
        (_header(12, 1) + b"\0" * 4, "runs past the end"),
        (_header(0, 100) + b"\0", "string section"),
        (_header(12, 1) + struct.pack("<III", 0, 20 << 24, 0) + b"\0", "unknown BTF kind 20"),
        (_header(12, 1) + struct.pack("<III", 0, (4 << 24) | 5, 8) + b"\0", "runs past the end of the type section"),
        (_header(16, 1) + struct.pack("<IIII", 999, 1 << 24, 4, 32) + b"\0", "string offset 999 out of range"),
        (_header(12, 1) + struct.pack("<III", 0, 2 << 24, 77) + b"\0", "type id 77"),
        (_header(24, 1) + struct.pack("<IIIIII", 0, 8 << 24, 2, 0, 10 << 24, 1) + b"\0", "cycle"),
        (_header(12, 2) + struct.pack("<III", 0, 2 << 24, 1) + b"\0x", "does not end with NUL"),
    ],
)
def test_corrupt_blobs_raise_btf_error(blob: bytes, message: str) -> None:
    with pytest.raises(BTFError, match=message) as info:
        spec = btf.parse(blob)
        spec.validate()
        for t in spec:
            spec.sizeof(t)
    assert "offset" in str(info.value) or "id" in str(info.value) or "cycle" in str(info.value)


# -- vmlinux.h --------------------------------------------------------------------------------------

PROGRAM = r"""
#include "vmlinux.h"
#define SEC(x) __attribute__((section(x), used))
static long (*bpf_probe_read_kernel)(void *dst, __u32 size, const void *src) = (void *) 113;

SEC("tp_btf/sched_process_exec")
int handle_exec(unsigned long long *ctx)
{
	struct task_struct *task = (struct task_struct *)ctx[0];
	int pid = 0;
	char comm[16];
	bpf_probe_read_kernel(&pid, sizeof(pid), &task->pid);
	bpf_probe_read_kernel(comm, sizeof(comm), task->comm);
	return pid + task->tgid + comm[0] + (int)sizeof(struct bpf_map_info);
}

char LICENSE[] SEC("license") = "GPL";
"""


def _elf_section(path: str, wanted: str) -> bytes:
    with open(path, "rb") as f:
        data = f.read()
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    sections = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)]
    names_off = sections[shstrndx][4]
    for sh in sections:
        name = data[names_off + sh[0] : data.index(b"\0", names_off + sh[0])].decode()
        if name == wanted:
            return data[sh[4] : sh[4] + sh[5]]
    raise AssertionError(f"no {wanted} section")


@pytest.mark.privileged
def test_dump_c_header_compiles_a_bpf_program(tmp_path: object, vmlinux: Spec) -> None:
    header = btf.dump_c_header()
    assert header.startswith("#ifndef __VMLINUX_H__\n#define __VMLINUX_H__")
    assert "#pragma clang attribute push (__attribute__((preserve_access_index)), apply_to = record)" in header
    assert "struct task_struct {" in header and "struct task_struct;" in header
    assert "\tBPF_MAP_TYPE_HASH = 1," in header
    directory = str(tmp_path)
    with open(os.path.join(directory, "vmlinux.h"), "w") as f:
        f.write(header)
    with open(os.path.join(directory, "prog.c"), "w") as f:
        f.write(PROGRAM)
    out = os.path.join(directory, "prog.o")
    cmd = [sys.executable, "-m", "ziglang", "cc", "-target", "bpfel-freestanding", "-O2", "-g", "-c", "prog.c", "-o", out]
    proc = subprocess.run(cmd, cwd=directory, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # The object's own BTF (clang's .BTF section) describes task_struct exactly as the kernel does.
    obj = btf.parse(_elf_section(out, ".BTF"), name="prog.o")
    task = obj.find("task_struct", "struct")
    kernel_task = vmlinux.find("task_struct", "struct")
    assert isinstance(task, Struct) and isinstance(kernel_task, Struct) and task.size == kernel_task.size
    for name in ("pid", "tgid", "comm"):
        assert obj.find_member(task, name).bit_offset == vmlinux.find_member(kernel_task, name).bit_offset
    # What an ELF loader does: fix the DATASEC sizes/offsets clang leaves at 0, re-encode, load.
    license_sec = obj.find("license", "datasec")
    assert isinstance(license_sec, btf.Datasec) and license_sec.size == 0
    builder = Builder.from_spec(obj)
    size = len(_elf_section(out, "license"))
    builder[license_sec.id] = dataclasses.replace(license_sec, size=size, vars=(btf.VarSecinfo(license_sec.vars[0].type_id, 0, size),))
    with btf.load_btf(builder.encode()) as handle:
        assert handle.fd >= 0


def test_dump_c_header_of_small_spec() -> None:
    blob, _ = every_kind_blob()
    header = btf.dump_c_header(btf.parse(blob), guard="SMALL_H")
    assert "#ifndef SMALL_H" in header
    assert "struct point {" in header
    assert "\tunsigned int flag: 1;" in header and "\tint level: 3;" in header
    assert "\tunion {\n" in header  # the anonymous union, inline
    assert "typedef unsigned int u32;" in header
    assert "enum big {" in header and "HUGE = 1099511627776ULL," in header


def test_dump_c_header_declares_kfuncs_from_decl_tags() -> None:
    # The kernel marks kfuncs with a "bpf_kfunc" decl tag; vmlinux.h declares them weak __ksym.
    b = btf.Builder()
    i32 = b.add_int("int", 4, btf.IntEncoding.SIGNED)
    task = b.add_struct("task_struct", [("pid", i32)])
    ptr = b.add_pointer(task)
    proto = b.add_func_proto(ptr, [("pid", i32)])
    kfunc = b.add_func("bpf_task_from_pid", proto)
    b.add(btf.DeclTag(b.next_id, "bpf_kfunc", kfunc))
    b.add_func("not_a_kfunc", b.add_func_proto(i32, []))
    header = btf.dump_c_header(btf.parse(b.encode()))
    assert "extern struct task_struct *bpf_task_from_pid(int pid) __weak __ksym;" in header
    assert "not_a_kfunc" not in header
    assert header.index("bpf_task_from_pid") > header.index("#pragma clang attribute pop")


def test_ctypes_struct_from_btf_matches(vmlinux: Spec) -> None:
    # sizeof/find_member agree with the kernel ABI the syscall layer was written against.
    info = vmlinux.find("bpf_map_info", "struct")
    # Equal on the kernel the layer models (6.18); an older kernel's struct is a prefix of ours.
    assert vmlinux.sizeof(info) <= ctypes.sizeof(attrs.MapInfo)
    assert vmlinux.find_member(info, "map_extra").offset == attrs.MapInfo.map_extra.offset
    assert vmlinux.find_member(info, "btf_id").offset == attrs.MapInfo.btf_id.offset


def test_dump_c_header_forward_declares_enums_known_only_by_name(tmp_path: pathlib.Path) -> None:
    # Kernels emit such enums (e.g. x86_intercept_stage on 6.12) and use them through pointers;
    # "enum x {};" does not compile, so they are written as bpftool does: "enum x;".
    from ebpf.core.btf.builder import Builder

    b = Builder()
    u32 = b.add_int("unsigned int", 4)
    stage = b.add_enum("stage", [])
    b.add_struct("holder", [("s", b.add_pointer(stage)), ("n", u32)])
    header = btf.dump_c_header(btf.parse(b.encode()), guard="FWD_H")
    assert "enum stage;" in header and "enum stage {" not in header
    src = tmp_path / "x.c"
    src.write_text(header + "\nint f(struct holder *h) { return h->n; }\n")
    subprocess.run([sys.executable, "-m", "ziglang", "cc", "-target", "bpfel-freestanding", "-c", str(src),
                    "-o", str(tmp_path / "x.o")], check=True, capture_output=True)


@pytest.mark.parametrize("cls", [btf.Void, btf.Struct, btf.Union, btf.Enum64, btf.Typedef, btf.Volatile, btf.Const,
                                 btf.Restrict, btf.TypeTag])
def test_kinds_without_fields_of_their_own_behave_as_frozen_dataclasses(cls: type) -> None:
    """These reuse their parent's generated methods (a cold-start saving): same behaviour as decorated ones."""
    sample = {"id": 7, "name": "x", "size": 8, "members": (), "values": (), "signed": True, "type_id": 1}
    names = [f.name for f in dataclasses.fields(cls)]
    a, b = cls(**{n: sample[n] for n in names}), cls(**{n: sample[n] for n in names})
    assert dataclasses.is_dataclass(a) and names == [f.name for f in dataclasses.fields(cls.__mro__[1])]
    assert repr(a) == f"{cls.__name__}(" + ", ".join(f"{n}={sample[n]!r}" for n in names) + ")"
    assert a == b and hash(a) == hash(b) and a != cls.__mro__[1](**{n: sample[n] for n in names})
    for attr in ("name", "not_a_field"):
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(a, attr, 1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        del a.name
    moved = dataclasses.replace(a, id=9)
    assert type(moved) is cls and moved.id == 9 and a.id == 7 and a.kind == cls.kind
