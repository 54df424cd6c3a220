"""The plugin as ebpf-core sees it: the LSM attach backend, the feature probes, ``ebpf lsm hooks``."""

from __future__ import annotations

import json

import pytest
from ebpf.core import plugins
from ebpf.core.cli import main
from ebpf.core.types import AttachType, ProgType
from ebpf.security import lsm


def test_core_finds_the_lsm_backend() -> None:
    backend = next(b for b in plugins.attach_backends() if b.name == "lsm")
    assert backend.distribution == "ebpf-security"
    assert {(ProgType.LSM, AttachType.LSM_MAC), (ProgType.LSM, AttachType.LSM_CGROUP)} <= set(backend.serves)
    assert not [b for b in plugins.broken_plugins() if b.name == "security"]


def test_feature_probes_report_this_machine() -> None:
    results = plugins.run_feature_probes()
    assert "security.lsm" in results and "security.lsm_cgroup" in results
    assert (results["security.lsm"] is None) == lsm.lsm_available()
    if results["security.lsm"] is not None:  # refused here: the reason is the probe's own
        assert "BPF LSM is not supported" in results["security.lsm"]
        assert results["security.lsm_cgroup"] is not None


def test_ebpf_lsm_hooks_lists_the_kernels_hooks(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lsm", "hooks"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["HOOK", "CATEGORY", "DENY", "PROTOTYPE"]
    assert len(lines) == len(lsm.list_lsm_hooks()) + 1
    row = next(line for line in lines if line.startswith("file_open "))
    assert row.split()[1:3] == ["file-system", "yes"] and row.endswith("int file_open(struct file *file)")


def test_ebpf_lsm_hooks_json_and_category(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lsm", "hooks", "--category", "mount", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert {h["category"] for h in data} == {"mount"}
    assert [h["name"] for h in data] == [h.name for h in lsm.list_hooks_by_category("mount")]
    umount = next(h for h in data if h["name"] == "sb_umount")
    assert umount["args"] == [["mnt", "struct vfsmount *"], ["flags", "int"]] and umount["can_deny"] is True


def test_ebpf_lsm_hooks_refuses_an_unknown_category(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lsm", "hooks", "--category", "files"]) == 2
    assert "invalid choice: 'files'" in capsys.readouterr().err
