"""End-to-end: committed fixture objects loaded into the running kernel and observed."""

from __future__ import annotations

import os
import struct
import threading
import time

import ebpf.core as bpf
import pytest
from ebpf import elf
from ebpf.core.errors import BTFError, EBPFError, ELFError, VerifierError
from ebpf.core.features import have_map_type
from ebpf.core.testing import require
from ebpf.core.types import AttachType, MapType, ProgType

pytestmark = pytest.mark.privileged

PACKET = bytes(64)


def _comm() -> bytes:
    with open("/proc/self/comm", "rb") as fh:
        return fh.read().strip()[:15]
XDP_DROP, XDP_PASS, XDP_TX = 1, 2, 3


def test_xdp_counter_counts_each_test_run(obj):
    with elf.load_elf(obj("xdp_counter")) as coll:
        prog = coll.programs["count_packets"]
        assert prog.prog_type == ProgType.XDP
        assert prog.expected_attach_type == AttachType.XDP
        for _ in range(3):
            assert prog.test_run(PACKET).retval == XDP_PASS
        counters = coll.maps["counters"]
        assert counters.lookup_bytes(struct.pack("<I", 0)) == struct.pack("<Q", 3)
        assert prog.test_run(PACKET, repeat=10).retval == XDP_PASS
        assert counters.lookup_bytes(struct.pack("<I", 0)) == struct.pack("<Q", 13)


def test_core_load_dispatches_to_the_elf_loader(obj):
    with bpf.load(obj("xdp_counter")) as coll:
        assert set(coll.programs) == {"count_packets"}
        assert coll.programs["count_packets"].test_run(PACKET).retval == XDP_PASS
    with bpf.load(obj("globals"), constants={"mode": 1}) as coll:  # options reach CollectionSpec.load
        assert coll.programs["globals_prog"].test_run(PACKET).retval == XDP_DROP


def test_every_map_kind_in_dot_maps_is_created(obj, pin_dir):
    with elf.load_elf(obj("maps_all"), pin_root=pin_dir) as coll:
        kinds = {name: m.map_type for name, m in coll.maps.items()}
        expected = {
            "m_hash": MapType.HASH, "m_array": MapType.ARRAY, "m_percpu_hash": MapType.PERCPU_HASH,
            "m_percpu_array": MapType.PERCPU_ARRAY, "m_lru_hash": MapType.LRU_HASH,
            "m_lru_percpu_hash": MapType.LRU_PERCPU_HASH, "m_lpm": MapType.LPM_TRIE, "m_stack": MapType.STACK,
            "m_queue": MapType.QUEUE, "m_ringbuf": MapType.RINGBUF, "m_perf": MapType.PERF_EVENT_ARRAY,
            "m_prog_array": MapType.PROG_ARRAY, "m_bloom": MapType.BLOOM_FILTER,
            "m_stack_trace": MapType.STACK_TRACE, "m_cgroup_array": MapType.CGROUP_ARRAY,
            "m_devmap": MapType.DEVMAP, "m_devmap_hash": MapType.DEVMAP_HASH, "m_cpumap": MapType.CPUMAP,
            "m_xskmap": MapType.XSKMAP, "m_sockmap": MapType.SOCKMAP, "m_sockhash": MapType.SOCKHASH,
            "m_user_ringbuf": MapType.USER_RINGBUF, "m_reuseport": MapType.REUSEPORT_SOCKARRAY,
            "m_pinned": MapType.HASH,
        }
        assert kinds == expected
        h = coll.maps["m_hash"]
        assert (h.key_size, h.value_size, h.max_entries) == (4, 16, 64)
        assert h.info().btf_id != 0  # created with the object's BTF (key/value types)
        assert coll.maps["m_perf"].max_entries == bpf.cpu_count()
        assert coll.maps["m_lpm"].key_size == 8
        assert isinstance(coll.maps["m_stack_trace"], bpf.StackTraceMap) and coll.maps["m_stack_trace"].depth == 127
        assert coll.maps["m_bloom"].info().map_extra == 3 if hasattr(coll.maps["m_bloom"].info(), "map_extra") else True
        # LIBBPF_PIN_BY_NAME: pinned under pin_root, and reused by the next load.
        assert os.path.exists(os.path.join(pin_dir, "m_pinned"))
        coll.maps["m_pinned"].update_bytes(struct.pack("<I", 0), struct.pack("<I", 77))
        prog = coll.programs["use_maps"]
        assert prog.prog_type == ProgType.SOCKET_FILTER
        assert prog.test_run(bytes(64)).retval == 77
    with elf.load_elf(obj("maps_all"), pin_root=pin_dir) as again:
        assert again.maps["m_pinned"].lookup_bytes(struct.pack("<I", 0)) == struct.pack("<I", 77)


def test_local_storage_maps_are_created(obj):
    # socket/task/cgroup storage maps have max_entries 0 and need the object's BTF.
    require(have_map_type, "cgrp_storage")  # Linux >= 6.2, the newest of the three
    with elf.load_elf(obj("storage_maps")) as coll:
        assert coll.maps["m_task_storage"].map_type == MapType.TASK_STORAGE
        assert coll.maps["m_sk_storage"].map_type == MapType.SK_STORAGE
        assert coll.maps["m_cgrp_storage"].map_type == MapType.CGRP_STORAGE


def test_globals_in_data_rodata_bss_and_custom_sections(obj):
    with elf.load_elf(obj("globals")) as coll:
        assert {".data", ".rodata", ".bss", ".data.custom", ".rodata.custom"} <= set(coll.maps)
        v = coll.variables
        assert v["data_counter"].value == 5
        assert v["bss_hits"].value == 0
        assert v["mode"].value == 0 and v["mode"].readonly
        assert v["custom_data"].value == 7 and v["custom_const"].value == 11
        assert v["name_buf"].value == b"hello".ljust(16, b"\0")
        prog = coll.programs["globals_prog"]
        assert prog.test_run(PACKET).retval == XDP_PASS
        assert v["bss_hits"].value == 1
        assert v["data_counter"].value == 7
        assert v["custom_data"].value == 7 + 11 + 3
        # Written from Python, seen by the program: bss_hits > drop_after -> XDP_ABORTED (0).
        v["bss_hits"].value = 5000
        assert prog.test_run(PACKET).retval == 0
        assert v["bss_hits"].value == 5001
        with pytest.raises(EBPFError, match="read-only"):
            v["mode"].value = 1
        # .rodata is frozen: user space cannot change it after load.
        with pytest.raises(OSError):
            coll.maps[".rodata"].update_bytes(bytes(4), bytes(coll.maps[".rodata"].value_size))


def test_rodata_constant_set_before_load_changes_behaviour(obj):
    with elf.load_elf(obj("globals"), constants={"mode": 1}) as coll:
        assert coll.variables["mode"].value == 1
        assert coll.programs["globals_prog"].test_run(PACKET).retval == XDP_DROP
    with elf.load_elf(obj("globals"), constants={"drop_after": 0}) as coll:
        assert coll.programs["globals_prog"].test_run(PACKET).retval == 0  # 1 > 0: aborted
    with pytest.raises(EBPFError, match="no global variable 'nope'"):
        elf.load_elf(obj("globals"), constants={"nope": 1})
    with pytest.raises(EBPFError, match="does not fit"):
        elf.load_elf(obj("globals"), constants={"mode": 1 << 40})


def test_subprograms_are_linked_into_each_caller(obj):
    info = elf.inspect_elf(obj("subprog"))
    by_name = {p.name: p for p in info.programs}
    assert by_name["sub_a"].subprograms == ("add",)
    assert set(by_name["sub_b"].subprograms) == {"add", "mul"}
    assert by_name["loop_prog"].subprograms == ("count_cb",)
    with elf.load_elf(obj("subprog")) as coll:
        assert coll.programs["sub_a"].test_run(PACKET).retval == XDP_PASS  # add(1, 1)
        assert coll.programs["sub_b"].test_run(PACKET).retval == XDP_DROP  # mul(add(0, 1), 3) - 2
        assert coll.programs["loop_prog"].test_run(PACKET).retval == XDP_TX  # bpf_loop callback ran 5 times


def test_map_in_map_and_program_array_initial_values(obj):
    with elf.load_elf(obj("map_in_map")) as coll:
        outer, inner_b = coll.maps["outer"], coll.maps["inner_b"]
        assert outer.map_type == MapType.ARRAY_OF_MAPS
        assert coll.maps["outer_hash"].map_type == MapType.HASH_OF_MAPS
        inner_b.update_bytes(struct.pack("<I", 0), struct.pack("<I", XDP_TX))
        # outer[1] = inner_b was set from the object's initializer.
        assert coll.programs["mim_lookup"].test_run(PACKET).retval == XDP_TX
        inner_b.update_bytes(struct.pack("<I", 0), struct.pack("<I", XDP_DROP))
        assert coll.programs["mim_lookup"].test_run(PACKET).retval == XDP_DROP
        inner_ids = {coll.maps["inner_a"].info().id, inner_b.info().id}
        got = {struct.unpack("<I", outer.lookup_bytes(struct.pack("<I", i)))[0] for i in (0, 1)}
        assert got == inner_ids
        # jump_table[1] = tail_target: the tail call returns XDP_TX instead of falling through to DROP.
        assert coll.programs["tail_caller"].test_run(PACKET).retval == XDP_TX


def test_several_programs_per_section_legacy_maps_and_kconfig(obj):
    info = elf.inspect_elf(obj("multi"))
    sections = {p.name: p.section for p in info.programs}
    assert sections["xdp_one"] == sections["xdp_two"] == "xdp"
    assert sections["sock_one"] == sections["sock_two"] == "socket"
    assert sections["tp_one"] == sections["tp_two"] == "tracepoint/syscalls/sys_enter_getppid"
    assert {m.name: m.kind for m in info.maps}["legacy_hash"] == "legacy"
    with elf.load_elf(obj("multi")) as coll:
        assert len(coll.programs) == 6
        assert coll.programs["xdp_one"].test_run(PACKET).retval == XDP_DROP
        assert coll.programs["xdp_two"].test_run(PACKET).retval == XDP_PASS
        major, minor, patch = [*bpf.kernel_version(), 0, 0, 0][:3]
        assert coll.variables["seen_version"].value == (major << 16) | (minor << 8) | min(patch, 255)
        assert coll.variables["seen_bpf_syscall"].value == 1  # CONFIG_BPF_SYSCALL=y in /proc/config.gz
        assert coll.variables["seen_missing"].value == 0  # __weak and unset
        coll.programs["sock_one"].test_run(bytes(64))
        legacy = coll.maps["legacy_hash"]
        assert legacy.map_type == MapType.HASH
        assert legacy.lookup_bytes(struct.pack("<I", 1)) == struct.pack("<Q", 9)
        assert coll.programs["tp_one"].attach_target == "syscalls/sys_enter_getppid"


def test_tracepoint_ring_buffer_events_end_to_end(obj, attach, read_ringbuf):
    with elf.load_elf(obj("ringbuf_tp"), constants={"target_tgid": os.getpid()}) as coll:
        prog = coll.programs["on_getppid"]
        assert prog.attach_target == "syscalls/sys_enter_getppid"
        attach(prog)
        for _ in range(3):
            os.getppid()
        events = read_ringbuf(coll.maps["events"])
    assert len(events) == 3
    comm = _comm()
    for raw in events:
        pid, tgid, name = struct.unpack("<II16s", raw[:24])
        assert tgid == os.getpid()
        assert pid == threading.get_native_id()
        assert name.rstrip(b"\0") == comm


def test_core_reads_task_struct_fields(obj, attach):
    with elf.load_elf(obj("core"), constants={"target_tgid": os.getpid()}) as coll:
        attach(coll.programs["read_task"])
        os.getppid()
        time.sleep(0.01)
        raw = coll.maps["results"].lookup_bytes(struct.pack("<I", 0))
    pid, tgid, comm, missing, pid_size, sid, task_exists, missing_value = struct.unpack("<II16sIIIII", raw)
    assert tgid == os.getpid()
    assert pid == threading.get_native_id()
    assert comm.rstrip(b"\0") == _comm()
    assert missing == 0  # bpf_core_field_exists on a field no kernel has
    assert pid_size == 4
    assert sid == 3  # the kernel's PIDTYPE_SID, not the object's 42
    assert task_exists == 1
    assert missing_value == 12345  # the guarded read of the missing field was poisoned and never ran


def test_core_with_an_explicit_btf_path(obj):
    with elf.load_elf(obj("core"), btf_path="/sys/kernel/btf/vmlinux") as coll:
        assert "read_task" in coll.programs
    with pytest.raises(BTFError, match="cannot read"):
        elf.load_elf(obj("core"), btf_path="/nonexistent/vmlinux")


def test_unsatisfiable_core_relocation_names_type_and_field(obj):
    with pytest.raises(BTFError, match="no_such_field_in_any_kernel"):
        elf.load_elf(obj("core_bad"))


def test_load_program_from_elf_and_helpers(obj):
    prog = elf.load_program_from_elf(obj("multi"), "xdp_two")
    try:
        assert prog.test_run(PACKET).retval == XDP_PASS
    finally:
        prog.close()
    prog, maps = elf.load_elf_program_and_maps(obj("xdp_counter"), "count_packets")
    try:
        prog.test_run(PACKET)
        assert maps["counters"].lookup_bytes(bytes(4)) == struct.pack("<Q", 1)
    finally:
        prog.close()
        for m in maps.values():
            m.close()
    maps = elf.create_maps_from_elf(obj("globals"))
    try:
        assert {".data", ".bss", ".rodata"} <= set(maps)
        assert maps[".data"].lookup_bytes(bytes(4))[:4] == struct.pack("<i", 5)
    finally:
        for m in maps.values():
            m.close()
    with pytest.raises(ELFError, match="no program"):
        elf.load_program_from_elf(obj("multi"), "nope")


def test_verifier_errors_point_at_c_source_lines(tmp_path):
    src = tmp_path / "bad.c"
    src.write_text(
        '#include "bpf_helpers.h"\n'
        "struct { __uint(type, BPF_MAP_TYPE_HASH); __uint(max_entries, 1); __type(key, __u32); "
        '__type(value, __u64); } m SEC(".maps");\n'
        'SEC("xdp") int bad(struct xdp_md *ctx) {\n'
        "    __u32 k = 0;\n"
        "    __u64 *v = bpf_map_lookup_elem(&m, &k);\n"
        "    return *v; /* no NULL check */\n"
        "}\n"
        'char LICENSE[] SEC("license") = "GPL";\n'
    )
    out = elf.compile_c(src)
    with pytest.raises(VerifierError) as info:
        elf.load_elf(out)
    assert "return *v; /* no NULL check */" in info.value.log


def test_usdt_programs_built_with_the_shipped_usdt_header(obj):
    # usdt.bpf.h declares libbpf's two maps with libbpf's layouts; each program uses the spec map.
    with elf.load_elf(obj("usdt_args")) as coll:
        specs, by_ip = coll.maps["__bpf_usdt_specs"], coll.maps["__bpf_usdt_ip_to_spec_id"]
        assert (specs.map_type, specs.key_size, specs.value_size, specs.max_entries) == (MapType.ARRAY, 4, 208, 256)
        assert specs.name == "__bpf_usdt_spec"  # the kernel keeps 15 characters
        assert (by_ip.map_type, by_ip.key_size, by_ip.value_size, by_ip.max_entries) == (MapType.HASH, 8, 4, 1024)
        for name, target in (("on_args", None), ("on_args_by_section", "usdt:usdt_target:test:args4")):
            prog = coll.programs[name]
            assert prog.prog_type == ProgType.KPROBE and prog.attach_target == target
            assert specs in prog.spec.maps  # how ebpf-events finds the spec map when attaching
