"""What real objects hit: our own test objects for each case of issue 18 (edge_cases.c,
legacy_trailing.c, core_ambiguous.c), and the before-load settings of a spec."""

from __future__ import annotations

import os
import struct
import time
import warnings

import pytest
from ebpf import elf
from ebpf.core import btf
from ebpf.core.errors import BTFError, EBPFError, ELFError
from ebpf.core.features import have_kfunc
from ebpf.core.testing import require
from ebpf.core.types import ProgType

pytestmark = pytest.mark.privileged

WORKING = {"kconfig_and_kfunc": {"autoload": True}, "lookup": {"autoload": True},
           "mystery": {"autoload": False}, "unresolved": {"autoload": False}}


def _kfuncs_of_working() -> None:
    """kconfig_and_kfunc (in WORKING) calls bpf_task_from_pid/bpf_task_release (Linux >= 6.2)."""
    for name in ("bpf_task_from_pid", "bpf_task_release"):
        require(have_kfunc, name)


def _wait_for_switches(counter) -> None:  # type: ignore[no-untyped-def]
    """Sleep briefly (each sleep is a context switch) until the program has run, 10 s at most."""
    deadline = time.monotonic() + 10
    while counter.value < 3 and time.monotonic() < deadline:
        time.sleep(0.001)


def test_broken_programs_fail_only_when_loaded(obj):
    _kfuncs_of_working()
    spec = elf.load_spec(obj("edge_cases"))
    assert set(spec.programs) == {"kconfig_and_kfunc", "lookup", "mystery", "unresolved"}
    assert spec.programs["mystery"].prog_type == ProgType.UNSPEC
    with pytest.raises(ELFError, match="unknown section 'totally_unknown_section'"):
        elf.load_elf(obj("edge_cases"), programs={"unresolved": {"autoload": False}})
    with pytest.raises(ELFError, match="not_defined_anywhere"):
        elf.load_elf(obj("edge_cases"), programs={"mystery": {"autoload": False}})
    with elf.load_elf(obj("edge_cases"), programs=WORKING) as coll:
        assert set(coll.programs) == {"kconfig_and_kfunc", "lookup"}
    info = {p.name: p for p in elf.inspect_elf(obj("edge_cases")).programs}
    assert "not_defined_anywhere" in (info["unresolved"].error or "") and info["mystery"].type == "unknown"


def test_autoload_on_the_spec(obj):
    _kfuncs_of_working()
    spec = elf.load_spec(obj("edge_cases"))
    spec.programs["mystery"].autoload = False
    spec.programs["unresolved"].autoload = False
    with spec.load() as coll:
        assert set(coll.programs) == {"kconfig_and_kfunc", "lookup"}


def test_small_kconfig_externs_and_unnamed_kfunc_params_keep_the_btf(obj, attach):
    _kfuncs_of_working()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "loading without BTF" fallback
        with elf.load_elf(obj("edge_cases"), programs=["kconfig_and_kfunc", "lookup"],
                          constants={"target_pid": os.getpid()}) as coll:
            prog = coll.programs["kconfig_and_kfunc"]
            assert prog.info().btf_id
            attach(prog)
            _wait_for_switches(coll.variables["visible_counter"])
            assert coll.variables["seen_cookie"].value == 1  # 1-byte extern
            assert coll.variables["seen_nr_cpus"].value == int(elf.kconfig.read_kernel_config().get("CONFIG_NR_CPUS", "0"))
            assert coll.variables["found_task"].value == 1  # bpf_task_from_pid(int): an unnamed parameter
            assert coll.variables["visible_counter"].value >= 1


def test_static_and_hidden_globals_are_not_variables(obj):
    spec = elf.load_spec(obj("edge_cases"))
    assert "visible_counter" in spec.variables
    assert "static_counter" not in spec.variables and "hidden_counter" not in spec.variables
    names = {v.name for v in elf.inspect_elf(obj("edge_cases")).variables}
    assert {"static_counter", "hidden_counter"} <= names  # still shown by inspect


def test_sk_lookup_with_a_label(obj):
    spec = elf.load_spec(obj("edge_cases"))
    assert spec.programs["lookup"].prog_type == ProgType.SK_LOOKUP
    assert elf.match_section("sk_lookup/with_a_label").prog_type == ProgType.SK_LOOKUP


def test_ulong_map_attribute(obj):
    spec = elf.load_spec(obj("edge_cases"))
    assert spec.maps["tunable"].map_extra == 0 and spec.maps["tunable"].max_entries == 8


def test_ulong_64_bit_map_extra(tmp_path):
    src = ("#include <bpf/bpf_helpers.h>\n"
           "struct { __uint(type, BPF_MAP_TYPE_ARENA); __uint(map_flags, BPF_F_MMAPABLE); __uint(max_entries, 2);\n"
           '  __ulong(map_extra, 0x7f0000000000ULL); } arena SEC(".maps");\n'
           'SEC("socket") int s(void *c) { return 0; }\nchar LICENSE[] SEC("license") = "GPL";\n')
    out = elf.compile_c(src, tmp_path / "arena.o", compiler="zig")
    assert elf.load_spec(out).maps["arena"].map_extra == 0x7F0000000000


def test_legacy_maps_sized_by_their_symbols(obj):
    with elf.load_elf(obj("legacy_trailing")) as coll:
        counts, flags_map = coll.maps["counts"], coll.maps["flags_map"]
        assert (counts.key_size, counts.value_size, counts.max_entries) == (4, 8, 4)
        assert (flags_map.key_size, flags_map.value_size, flags_map.max_entries) == (4, 4, 16)
        assert coll.programs["count"].test_run(bytes(64)).retval == 0
        assert int.from_bytes(counts.lookup_bytes(struct.pack("<I", 1)), "little") == 1


def _twins(tmp_path) -> str:
    """A target BTF with two types called "struct twin" that place field b differently (as when
    two kernel compilation units define their own)."""
    b = btf.Builder()
    i32 = b.add_int("int", 4, btf.IntEncoding.SIGNED)
    b.add_struct("twin", [("a", i32), ("b", i32)])
    b.add_struct("twin", [("b", i32), ("a", i32)])
    path = tmp_path / "twins.btf"
    path.write_bytes(b.encode())
    return str(path)


def test_ambiguous_core_relocation_is_an_error(obj, tmp_path):
    with pytest.raises(BTFError, match="ambiguous CO-RE relocation"):
        elf.load_elf(obj("core_ambiguous"), btf_path=_twins(tmp_path))
    b = btf.Builder()
    i32 = b.add_int("int", 4, btf.IntEncoding.SIGNED)
    b.add_struct("twin", [("a", i32), ("b", i32)])
    b.add_struct("twin", [("a", i32), ("b", i32), ("c", i32)])  # agrees on b: not ambiguous
    (tmp_path / "ok.btf").write_bytes(b.encode())
    with elf.load_elf(obj("core_ambiguous"), btf_path=str(tmp_path / "ok.btf")) as coll:
        assert "read_twin" in coll.programs


def test_rejected_btf_is_an_error_unless_asked(obj):
    spec = elf.load_spec(obj("globals"))
    spec.btf = spec.btf[:24] + b"\xff" * 8 + spec.btf[32:]  # a header the kernel refuses
    with pytest.raises(BTFError, match="rejected the object's BTF"):
        spec.load()
    with pytest.warns(RuntimeWarning, match="without it"), spec.load(require_btf=False) as coll:
        assert "globals_prog" in coll.programs


def test_map_settings_before_load(obj):
    _kfuncs_of_working()
    with elf.load_elf(obj("edge_cases"), programs=WORKING,
                      maps={"tunable": {"max_entries": 64, "flags": 1}, "events": {"max_entries": 8192}}) as coll:
        assert coll.maps["tunable"].max_entries == 64 and coll.maps["tunable"].flags == 1  # BPF_F_NO_PREALLOC
        assert coll.maps["events"].max_entries == 8192
    spec = elf.load_spec(obj("edge_cases"))
    spec.maps["tunable"].max_entries = 3
    elf.settings.configure(spec, programs=WORKING, maps={"tunable": {"value_size": 16}})
    assert spec.maps["tunable"].btf_value_type_id == 0  # the BTF type no longer fits
    with spec.load() as coll:
        assert (coll.maps["tunable"].max_entries, coll.maps["tunable"].value_size) == (3, 16)


def test_pinning_set_before_load(obj, tmp_path):
    _kfuncs_of_working()
    from ebpf.core.system import ensure_bpf_fs

    ensure_bpf_fs()
    root = f"/sys/fs/bpf/elf-edge-{os.getpid()}"
    os.makedirs(root, exist_ok=True)
    try:
        with elf.load_elf(obj("edge_cases"), programs=WORKING, pin_root=root,
                          maps={"tunable": {"pinning": "by_name"}}):
            assert os.path.exists(f"{root}/tunable")
    finally:
        for name in os.listdir(root):
            os.unlink(f"{root}/{name}")
        os.rmdir(root)


@pytest.mark.parametrize(("maps", "programs", "message"), [
    ({"nope": {"max_entries": 1}}, None, "no map 'nope'"),
    ({"tunable": {"max_entry": 1}}, None, "unknown setting"),
    ({"tunable": {"max_entries": -1}}, None, "max_entries must be an int"),
    ({"tunable": {"pinning": "sometimes"}}, None, "pinning must be"),
    ({".bss": {"value_size": 4}}, None, "global data"),
    (None, {"nope": {"autoload": False}}, "no program 'nope'"),
    (None, {"lookup": {"autoload": "no"}}, "autoload must be"),
    (None, {"lookup": {"type": "no_such_type"}}, "lookup"),
    (None, ["nope"], "no program"),
])
def test_bad_settings_refused_before_any_syscall(obj, maps, programs, message):
    with pytest.raises(ELFError, match=message):
        elf.load_elf(obj("edge_cases"), maps=maps, programs=programs)


def test_program_type_set_before_load(obj):
    spec = elf.load_spec(obj("edge_cases"))
    elf.settings.configure(spec, programs={"mystery": {"type": "socket_filter"}, "unresolved": {"autoload": False}})
    assert spec.programs["mystery"].prog_type == ProgType.SOCKET_FILTER
    with pytest.raises(ELFError, match="unknown section"):  # still an object the loader could not place
        spec.load()


def test_variables_type_checked(obj):
    _kfuncs_of_working()
    with pytest.raises(EBPFError, match="give an int, not str"):
        elf.load_elf(obj("edge_cases"), programs=WORKING, constants={"visible_counter": "abc"})
    spec = elf.load_spec(obj("edge_cases"))
    assert spec.variables["visible_counter"].kind == "int"
    with pytest.raises(EBPFError, match="give an int"):
        spec.set_constants({"seen_cookie": b"\x01\x00\x00\x00"})
    with elf.load_elf(obj("edge_cases"), programs=WORKING, constants={"visible_counter": 41}) as coll:
        assert coll.variables["visible_counter"].value == 41
