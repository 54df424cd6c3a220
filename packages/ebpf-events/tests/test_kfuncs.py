"""kfunc discovery from the kernel's BTF decl tags, the verifier's word on program types, and
``ebpf list kfuncs``."""

from __future__ import annotations

import json

import pytest
from ebpf.core.cli import main
from ebpf.core.errors import EBPFError
from ebpf.core.testing import require
from ebpf.core.types import ProgType
from ebpf.events.kfuncs import Kfunc, kfunc_program_types, list_kfuncs


def have_kfunc_tags() -> None:
    list_kfuncs("vmlinux")  # raises UnsupportedFeatureError without bpf_kfunc decl tags


def test_kfuncs_come_from_decl_tags() -> None:
    require(have_kfunc_tags)
    kfuncs = {k.name: k for k in list_kfuncs()}
    assert len(kfuncs) > 50
    acquire = kfuncs["bpf_task_acquire"]
    assert acquire.module == "vmlinux" and acquire.btf_id > 0
    assert acquire.prototype == "struct task_struct *bpf_task_acquire(struct task_struct *p)"
    assert kfuncs["bpf_rcu_read_lock"].prototype == "void bpf_rcu_read_lock(void)"
    assert all(isinstance(k, Kfunc) and k.program_types is None for k in kfuncs.values())
    assert "bpf_map_lookup_elem" not in kfuncs  # a helper, not a kfunc


@pytest.mark.privileged
def test_the_verifier_says_which_programs_may_call_a_kfunc() -> None:
    require(have_kfunc_tags)
    allowed = kfunc_program_types("bpf_task_acquire")
    assert ProgType.TRACING in allowed and ProgType.SOCKET_FILTER not in allowed
    if "tcp_reno_ssthresh" in {k.name for k in list_kfuncs()}:
        assert kfunc_program_types("tcp_reno_ssthresh", [ProgType.XDP, ProgType.STRUCT_OPS]) == [ProgType.STRUCT_OPS]


def test_unknown_kfunc_or_module() -> None:
    require(have_kfunc_tags)
    with pytest.raises(EBPFError, match="no kfunc named 'no_such_kfunc'"):
        kfunc_program_types("no_such_kfunc")
    with pytest.raises(EBPFError, match="no BTF for module 'no_such_module'"):
        list_kfuncs("no_such_module")


def test_cli_lists_kfuncs(capsys: pytest.CaptureFixture[str]) -> None:
    require(have_kfunc_tags)
    assert main(["list", "kfuncs", "--grep", "bpf_task_acq"]) == 0
    assert "struct task_struct *bpf_task_acquire(struct task_struct *p)" in capsys.readouterr().out
    assert main(["list", "kfuncs", "--json", "--module", "vmlinux"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert {"name", "prototype", "btf_id", "module", "tags", "program_types"} <= set(listed[0])
    assert "bpf_task_acquire" in {k["name"] for k in listed}
