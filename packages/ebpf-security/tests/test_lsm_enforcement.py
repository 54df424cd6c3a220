"""BPF LSM programs doing real work: denying one file's open() (and one file's execution), for every
process or only for the processes of one cgroup, and access coming back once detached.

The development host refuses LSM programs (EPERM), so these skip there naming the feature;
``python3 tools/vm/run.py --kernel 6.1|6.12 -- packages/ebpf-security/tests`` runs them in a VM.
Each program matches one inode number of a file the test made, so nothing else in the system is
affected.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from ebpf.core import asm
from ebpf.core.errors import AttachError, BPFSyscallError
from ebpf.core.testing import require
from ebpf.core.types import AttachType, LinkType, ProgType
from ebpf.security import lsm

pytestmark = pytest.mark.privileged
R0 = asm.R0
DenyInsns = Callable[..., list[Any]]


def opens(path: Path) -> int:
    """open() ``path`` in this process: 0 when it works, else the errno."""
    try:
        os.close(os.open(path, os.O_RDONLY))
    except OSError as exc:
        return exc.errno or -1
    return 0


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    """Two files: the one the programs deny and another one."""
    denied, other = tmp_path / "denied", tmp_path / "other"
    denied.write_text("secret")
    other.write_text("public")
    return denied, other


def mac_deny(deny_inode_insns: DenyInsns, path: Path) -> list[Any]:
    return deny_inode_insns(path.stat().st_ino, lsm.lsm_return_code("deny", "file_open"),
                            lsm.lsm_return_code("allow"))


def test_file_open_denies_one_file_until_detached(files: tuple[Path, Path], deny_inode_insns: DenyInsns,
                                                  nothing_left_behind: None) -> None:
    require(lsm.have_bpf_lsm)
    denied, other = files
    assert opens(denied) == 0
    with lsm.lsm_hook(mac_deny(deny_inode_insns, denied), "file_open", name="deny_one") as setup:
        assert setup.program.info().type is ProgType.LSM and setup.hook.name == "file_open"
        info = setup.link.info()
        assert info.type is LinkType.TRACING and info.attach_type is AttachType.LSM_MAC
        assert opens(denied) == errno.EPERM
        with pytest.raises(PermissionError):
            denied.read_text()
        assert opens(other) == 0 and other.read_text() == "public"
        assert opens(Path("/etc/hostname")) == 0
    assert opens(denied) == 0 and denied.read_text() == "secret"


def test_load_attach_detach_and_attach_again_through_program_attach(
        files: tuple[Path, Path], deny_inode_insns: DenyInsns, nothing_left_behind: None) -> None:
    require(lsm.have_bpf_lsm)
    denied, other = files
    with lsm.load_lsm_program(mac_deny(deny_inode_insns, denied), "file_open") as prog:
        assert prog.expected_attach_type is AttachType.LSM_MAC
        assert opens(denied) == 0  # loaded, not attached
        link = lsm.attach_lsm_program(prog)
        assert opens(denied) == errno.EPERM and opens(other) == 0
        lsm.detach_lsm_program(link)
        assert opens(denied) == 0
        with prog.attach() as again:  # core dispatches to the plugin's lsm backend
            assert again.info().attach_type is AttachType.LSM_MAC
            assert opens(denied) == errno.EPERM
        assert opens(denied) == 0


def test_kernels_without_lsm_links_attach_through_raw_tracepoint_open(
        files: tuple[Path, Path], deny_inode_insns: DenyInsns, monkeypatch: pytest.MonkeyPatch,
        nothing_left_behind: None) -> None:
    require(lsm.have_bpf_lsm)

    def no_links(*args: Any, **kwargs: Any) -> Any:
        raise BPFSyscallError(errno.EINVAL, "BPF_LINK_CREATE")  # what a kernel before LSM links answers

    monkeypatch.setattr(lsm, "create_link", no_links)
    denied, other = files
    with lsm.lsm_hook(mac_deny(deny_inode_insns, denied), "file_open") as setup:
        assert setup.link.info().type is LinkType.TRACING
        assert opens(denied) == errno.EPERM and opens(other) == 0
    assert opens(denied) == 0


def test_bprm_check_security_denies_executing_one_file(tmp_path: Path, deny_inode_insns: DenyInsns,
                                                       nothing_left_behind: None) -> None:
    require(lsm.have_bpf_lsm)
    true = shutil.which("true")
    assert true is not None
    denied, other = tmp_path / "denied-true", tmp_path / "other-true"
    shutil.copy(true, denied)
    shutil.copy(true, other)
    hook = lsm.find_lsm_hook("bprm_check_security")
    assert hook.args == (("bprm", "struct linux_binprm *"),)
    insns = deny_inode_insns(denied.stat().st_ino, lsm.lsm_return_code("deny", hook), lsm.lsm_return_code("allow"),
                             via=(("linux_binprm", "file"),))
    with lsm.lsm_hook(insns, hook):
        with pytest.raises(PermissionError):
            subprocess.run([str(denied)], check=True)
        assert subprocess.run([str(other)]).returncode == 0
    assert subprocess.run([str(denied)]).returncode == 0


def test_an_allow_program_runs_on_a_void_hook(nothing_left_behind: None) -> None:
    require(lsm.have_bpf_lsm)
    allow = [asm.mov64(R0, lsm.lsm_return_code("allow", "file_free_security")), asm.exit_()]
    with lsm.lsm_hook(allow, "file_free_security") as setup:
        assert setup.link.info().attach_type is AttachType.LSM_MAC and not setup.hook.can_deny


def test_cgroup_lsm_denies_only_inside_its_cgroup(files: tuple[Path, Path], deny_inode_insns: DenyInsns,
                                                  openers: Any, child_cgroup: str,
                                                  move_to_cgroup: Callable[[int, str], None],
                                                  nothing_left_behind: None) -> None:
    require(lsm.have_lsm_cgroup)
    denied, other = files
    inside, outside = openers
    move_to_cgroup(inside.pid, child_cgroup)
    insns = deny_inode_insns(denied.stat().st_ino, lsm.lsm_return_code("deny", "file_open", cgroup=True),
                             lsm.lsm_return_code("allow", cgroup=True))
    with lsm.lsm_hook(insns, "file_open", cgroup=child_cgroup) as setup:
        assert setup.program.expected_attach_type is AttachType.LSM_CGROUP and setup.cgroup == child_cgroup
        assert setup.link.info().attach_type is AttachType.LSM_CGROUP
        assert inside.open(str(denied)) == errno.EPERM
        assert inside.open(str(other)) == 0
        assert outside.open(str(denied)) == 0
        assert opens(denied) == 0  # this process is outside the cgroup too
    assert inside.open(str(denied)) == 0


def test_cgroup_lsm_through_program_attach(files: tuple[Path, Path], deny_inode_insns: DenyInsns, openers: Any,
                                           child_cgroup: str, move_to_cgroup: Callable[[int, str], None],
                                           nothing_left_behind: None) -> None:
    require(lsm.have_lsm_cgroup)
    denied, _ = files
    inside, outside = openers
    move_to_cgroup(inside.pid, child_cgroup)
    insns = deny_inode_insns(denied.stat().st_ino, 0, 1)
    with lsm.load_lsm_program(insns, "file_open", cgroup=True) as prog:
        with pytest.raises(AttachError, match="loaded for BPF_LSM_CGROUP: give the cgroup"):
            lsm.attach_lsm_program(prog)
        with prog.attach(child_cgroup):
            assert inside.open(str(denied)) == errno.EPERM and outside.open(str(denied)) == 0
        assert inside.open(str(denied)) == 0


def test_mac_program_is_not_attached_to_a_cgroup(child_cgroup: str, nothing_left_behind: None) -> None:
    require(lsm.have_bpf_lsm)
    with lsm.load_lsm_program([asm.mov64(R0, 0), asm.exit_()], "file_open") as prog, \
            pytest.raises(AttachError, match="loaded for BPF_LSM_MAC"):
        lsm.attach_lsm_program(prog, child_cgroup)
