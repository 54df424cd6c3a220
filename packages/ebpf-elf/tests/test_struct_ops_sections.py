"""``.struct_ops`` / ``.struct_ops.link`` sections read from objects (no kernel objects): the tables,
their bytes and programs, and the attach targets the programs get."""

from __future__ import annotations

from pathlib import Path

import pytest
from ebpf.core.errors import ELFError
from ebpf.elf import load_spec
from ebpf.elf.objfile import parse_object
from ebpf.elf.steps import STEP
from ebpf.elf.struct_ops import collect_struct_ops, is_struct_ops_section

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.mark.parametrize("obj", ["struct_ops_cc.o", "struct_ops_cc.clang.o"])
def test_tables_and_their_programs(obj: str) -> None:
    tables = {t.name: t for t in collect_struct_ops(parse_object(str(FIXTURES / obj)))}
    assert set(tables) == {"ebpf_reno", "ebpf_reno_old"}
    link, old = tables["ebpf_reno"], tables["ebpf_reno_old"]
    assert (link.link, old.link) == (True, False)
    assert link.struct_name == old.struct_name == "tcp_congestion_ops"
    assert link.programs == {"ssthresh": "c_ssthresh", "cong_avoid": "c_cong_avoid", "undo_cwnd": "c_undo_cwnd"}
    off, size, is_func = link.members["name"]
    assert not is_func and link.data[off:off + size].rstrip(b"\0") == b"ebpf_reno"
    assert link.members["ssthresh"][2]


@pytest.mark.parametrize("obj", ["struct_ops_cc.o", "struct_ops_cc.clang.o"])
def test_programs_get_their_member_as_target(obj: str) -> None:
    spec = load_spec(FIXTURES / obj)
    assert {n: p.attach_to for n, p in spec.programs.items()} == {
        "c_ssthresh": "tcp_congestion_ops:ssthresh", "c_cong_avoid": "tcp_congestion_ops:cong_avoid",
        "c_undo_cwnd": "tcp_congestion_ops:undo_cwnd"}  # c_unused: no table uses it, not loaded
    data = spec.loader_data[STEP]  # plain data the ELF load step builds the maps from, after the programs load
    assert "ebpf_reno" in [d.name for d in data.struct_ops] and "ebpf_reno" not in spec.maps


def test_section_names() -> None:
    assert all(is_struct_ops_section(n) for n in (".struct_ops", ".struct_ops.link", ".struct_ops.link.x"))
    assert not any(is_struct_ops_section(n) for n in ("struct_ops/ssthresh", ".struct_opsx", ".data"))


def test_a_table_pointing_at_a_non_program(tmp_path: Path) -> None:
    from ebpf.elf.compile import compile_c

    src = tmp_path / "bad.c"
    src.write_text('#include "bpf_helpers.h"\nstruct sock;\n'
                   "struct tcp_congestion_ops { unsigned int (*ssthresh)(struct sock *sk); char name[16]; };\n"
                   "__attribute__((noinline)) unsigned int helper(struct sock *sk) { return 1; }\n"
                   'SEC(".struct_ops.link") struct tcp_congestion_ops bad = { .ssthresh = (void *)helper };\n'
                   'char LICENSE[] SEC("license") = "GPL";\n')
    obj = compile_c(str(src), str(tmp_path / "bad.o"))
    with pytest.raises(ELFError, match=r"bad.ssthresh points at 'helper', which is not a program"):
        load_spec(obj)
