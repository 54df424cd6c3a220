"""ebpf.core.collection on its own: a CollectionSpec built by hand, no ELF involved."""

from __future__ import annotations

import struct

import pytest
from ebpf.core.collection import CollectionSpec, MapReference, VariableSpec
from ebpf.core.errors import BTFError, EBPFError, VerifierError
from ebpf.core.maps import MapSpec
from ebpf.core.programs import ProgramSpec
from ebpf.core.testing import open_fds

pytestmark = pytest.mark.privileged


def _insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    return struct.pack("<BBhi", code, dst | (src << 4), off, imm)


LD_IMM64_R1 = _insn(0x18, 1) + _insn(0)
RET_PASS = _insn(0xB7, 0, imm=2) + _insn(0x95)
STORE_7_AT_R1 = _insn(0x62, 1, imm=7)  # *(u32 *)(r1 + 0) = 7


def _spec() -> CollectionSpec:
    spec = CollectionSpec()
    spec.maps["m"] = MapSpec("array", key_size=4, value_size=8, max_entries=1, name="m")
    spec.maps["data"] = MapSpec("array", key_size=4, value_size=8, max_entries=1, name=".data", flags=1 << 10)
    spec.map_contents["data"] = [(bytes(4), struct.pack("<II", 5, 6))]
    spec.variables["a"] = VariableSpec("a", "data", 0, 4)
    spec.variables["b"] = VariableSpec("b", "data", 4, 4)
    spec.programs["uses_fd"] = ProgramSpec("xdp", LD_IMM64_R1 + RET_PASS, name="uses_fd")
    spec.references["uses_fd"] = [MapReference(0, "m")]
    spec.programs["writes_b"] = ProgramSpec("xdp", LD_IMM64_R1 + STORE_7_AT_R1 + RET_PASS, name="writes_b")
    spec.references["writes_b"] = [MapReference(0, "data", offset=4, kind="value")]
    spec.attach_targets["writes_b"] = "eth0"
    return spec


def test_load_patches_references_and_exposes_variables():
    spec = _spec()
    with spec.load() as coll:
        assert coll.programs["uses_fd"].test_run(bytes(64)).retval == 2
        assert coll.variables["a"].value == 5 and coll.variables["b"].value == 6
        coll.programs["writes_b"].test_run(bytes(64))
        assert coll.variables["b"].value == 7  # the program wrote data+4 through a value reference
        coll.variables["a"].value = 11
        assert coll.maps["data"].lookup_bytes(bytes(4))[:4] == struct.pack("<I", 11)
        assert coll.programs["writes_b"].attach_target == "eth0"
    # The spec is plain data: loading did not change it, and it loads again.
    assert spec.map_contents["data"] == [(bytes(4), struct.pack("<II", 5, 6))]
    with spec.load(constants={"a": 99}) as coll:
        assert coll.variables["a"].value == 99


def test_copy_is_independent():
    spec = _spec()
    dup = spec.copy()
    dup.set_constants({"b": 1})
    assert spec.map_contents["data"][0][1] == struct.pack("<II", 5, 6)
    assert dup.map_contents["data"][0][1] == struct.pack("<II", 5, 1)


def test_bad_constants_and_references_fail_before_any_syscall():
    spec = _spec()
    with pytest.raises(EBPFError, match="no global variable"):
        spec.load(constants={"zzz": 1})
    spec.references["uses_fd"] = [MapReference(0, "nope")]
    before = open_fds()
    with pytest.raises(EBPFError, match="unknown map 'nope'"):
        spec.load()
    assert open_fds() == before


def test_a_rejected_program_closes_everything_made_so_far():
    spec = _spec()
    spec.programs["bad"] = ProgramSpec("xdp", _insn(0x95), name="bad")  # exit with r0 unset
    before = open_fds()
    with pytest.raises(VerifierError):
        spec.load()
    assert open_fds() == before


def test_object_btf_rejected_by_the_kernel():
    spec = _spec()
    # A BTF header, one 4-byte "type" that is garbage, and an empty string section.
    spec.btf = b"\x9f\xeb\x01\x00\x18\x00\x00\x00" + struct.pack("<IIII", 0, 4, 4, 1) + b"\xff\xff\xff\xff\0"
    with pytest.warns(RuntimeWarning, match="rejected the object's BTF"), spec.load() as coll:
        assert coll.programs["uses_fd"].test_run(bytes(64)).retval == 2
    with pytest.raises(BTFError, match="rejected"):
        spec.load(require_btf=True)


def test_pins_made_by_a_failed_load_are_removed(pin_dir):
    import os

    spec = _spec()
    spec.pin_by_name.add("m")
    spec.programs["bad"] = ProgramSpec("xdp", _insn(0x95), name="bad")
    with pytest.raises(VerifierError):
        spec.load(pin_root=pin_dir)
    assert not os.path.exists(os.path.join(pin_dir, "m"))
    del spec.programs["bad"]
    with spec.load(pin_root=pin_dir) as coll:
        assert os.path.exists(os.path.join(pin_dir, "m"))
        assert coll.programs["uses_fd"].test_run(bytes(64)).retval == 2
