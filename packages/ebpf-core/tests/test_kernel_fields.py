"""Integers bound for fixed-width kernel fields are range-checked before the syscall (ctypes would cut them:
``test_run(repeat=2**32 + 3)`` ran 3 times), and program and map names follow one rule."""

from __future__ import annotations

import pytest
from ebpf.core import asm
from ebpf.core._checks import check_int, check_uint, object_name
from ebpf.core._sys import commands
from ebpf.core._sys.perf import PERF_COUNT_SW_CPU_CLOCK, PERF_TYPE_SOFTWARE, PerfEventAttr, perf_event_open
from ebpf.core.errors import EBPFError
from ebpf.core.links import attach_raw_tracepoint, create_link
from ebpf.core.maps import MapSpec, create_map
from ebpf.core.programs import load_program
from ebpf.core.testing import open_fds

pytestmark = pytest.mark.privileged
RETURN_2 = [asm.mov64(asm.R0, 2), asm.exit_()]


def test_the_checkers() -> None:
    assert check_uint(2**32 - 1, "x") == 2**32 - 1 and check_uint(2**64 - 1, "x", 64) == 2**64 - 1
    for bad in (2**32, -1, True, 1.0, "1", None):
        with pytest.raises(EBPFError, match="x must be"):
            check_uint(bad, "x")
    assert check_int(-(2**31), "y") == -(2**31)
    with pytest.raises(EBPFError, match=r"between -2147483648 and 2147483647 \(a signed 32-bit field\), not 2147483648"):
        check_int(2**31, "y")
    with pytest.raises(EBPFError, match="between 1 and 4294967295"):
        check_uint(0, "max_entries", minimum=1)


def test_test_run_fields_are_range_checked_before_the_syscall() -> None:
    with load_program(prog_type="xdp", insns=RETURN_2, name="fields_xdp") as prog:
        assert prog.test_run(bytes(64), repeat=3).retval == 2
        fds = open_fds()
        for kwargs, field in [({"repeat": 2**32 + 3}, "repeat"), ({"repeat": -1}, "repeat"),
                              ({"flags": 2**32}, "flags"), ({"cpu": 2**32 + 1}, "cpu"), ({"cpu": -1}, "cpu"),
                              ({"data_size_out": 2**32}, "data_size_out"), ({"repeat": True}, "repeat")]:
            with pytest.raises(EBPFError, match=f"test_run {field} must be"):
                prog.test_run(bytes(64), **kwargs)
        assert open_fds() == fds


def test_map_fields_are_range_checked() -> None:
    fds = open_fds()
    for field, value in [("max_entries", 2**32), ("key_size", 2**32 + 4), ("value_size", -4),
                         ("btf_key_type_id", 2**32), ("btf_value_type_id", -1), ("ifindex", 2**40),
                         ("map_extra", 2**64), ("numa_node", 2**32)]:
        with pytest.raises(EBPFError, match=f"{field} must be"):
            create_map(MapSpec("hash", name="fields_map").copy(**{field: value}))
    with pytest.raises(EBPFError, match="unknown map flags"):
        create_map(map_type="hash", flags=2**32)
    assert open_fds() == fds


def test_attach_fields_are_range_checked() -> None:
    with load_program(prog_type="raw_tracepoint", insns=[asm.mov64(asm.R0, 0), asm.exit_()],
                      name="fields_rtp") as rtp, load_program(prog_type="xdp", insns=RETURN_2) as xdp:
        fds = open_fds()
        with pytest.raises(EBPFError, match="BPF_RAW_TRACEPOINT_OPEN cookie must be"):
            attach_raw_tracepoint(rtp, "sys_enter", cookie=2**64)
        with pytest.raises(EBPFError, match="BPF_LINK_CREATE flags must be"):
            create_link(xdp, 1, "xdp", flags=2**32 + 2)
        with pytest.raises(EBPFError, match="BPF_LINK_CREATE option word"):
            create_link(xdp, 1, "xdp", extra=(2**64,))
        with pytest.raises(EBPFError, match="BPF_PROG_ATTACH attach_flags must be"):
            commands.prog_attach(0, xdp.fd, 0, flags=-1)
        attr = PerfEventAttr(type=PERF_TYPE_SOFTWARE, config=PERF_COUNT_SW_CPU_CLOCK)
        with pytest.raises(EBPFError, match="perf_event_open cpu must be"):
            perf_event_open(attr, pid=0, cpu=2**32)
        assert open_fds() == fds


def test_program_and_map_names_follow_one_rule() -> None:
    # the kernel takes [A-Za-z0-9_.] and 15 characters: other characters become "_", longer names are cut
    assert object_name("prögram") == "pr_gram" and object_name("my-map") == "my_map"
    assert object_name("a_very_long_name_indeed") == "a_very_long_nam" and object_name("ok.name_1") == "ok.name_1"
    with pytest.raises(EBPFError, match="map name must be a str"):
        create_map(map_type="array", name=7)
    with pytest.raises(EBPFError, match="program name must be a str"):
        load_program(prog_type="xdp", insns=RETURN_2, name=b"x")
    for name in ("prögram", "my-map.v2 x", "a_very_long_name_indeed"):
        with load_program(prog_type="xdp", insns=RETURN_2, name=name) as prog, \
                create_map(map_type="array", name=name) as m:
            assert prog.name == m.name == object_name(name)
            assert prog.info().name == m.info().name == object_name(name)  # what the kernel keeps
