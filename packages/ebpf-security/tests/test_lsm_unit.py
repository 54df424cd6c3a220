"""What can be shown on any kernel: return codes, the checks made before any syscall, the reasons
given when the kernel refuses, and that a refused or bad load leaves nothing behind."""

from __future__ import annotations

import errno
import re
from pathlib import Path

import pytest
from ebpf.core import asm
from ebpf.core.errors import AttachError, EBPFError, UnsupportedFeatureError
from ebpf.core.links import Link
from ebpf.core.programs import load_program
from ebpf.core.types import ProgType
from ebpf.security import lsm

R0 = asm.R0
ALLOW = [asm.mov64(R0, 0), asm.exit_()]
DENY = [asm.mov64(R0, -errno.EPERM), asm.exit_()]
ALL_CAPS = (1 << 41) - 1


def test_return_codes_for_mac_and_cgroup_programs() -> None:
    assert lsm.lsm_return_code("allow") == 0
    assert lsm.lsm_return_code("deny") == -errno.EPERM
    assert lsm.lsm_return_code("deny", "file_open", errno=errno.EACCES) == -errno.EACCES
    assert lsm.lsm_return_code("allow", cgroup=True) == 1
    assert lsm.lsm_return_code("deny", "file_open", cgroup=True) == 0


def test_return_code_refuses_a_deny_on_a_void_hook_and_bad_values() -> None:
    with pytest.raises(EBPFError, match=r"'file_free_security' returns void and cannot deny.*void file_free"):
        lsm.lsm_return_code("deny", "file_free_security")
    assert lsm.lsm_return_code("allow", "file_free_security") == 0
    with pytest.raises(EBPFError, match="'allow' or 'deny', not 'block'"):
        lsm.lsm_return_code("block")
    with pytest.raises(EBPFError, match="errno must be"):
        lsm.lsm_return_code("deny", errno=-1)
    with pytest.raises(EBPFError, match="did you mean file_open"):
        lsm.lsm_return_code("deny", "file_opne")


def test_denying_returns_finds_constant_deny_values() -> None:
    text = asm.assemble([asm.jeq(R0, 0, "x"), *DENY, asm.label("x"), *ALLOW])
    assert lsm.denying_returns(text) == [-errno.EPERM]
    assert lsm.denying_returns(asm.assemble(ALLOW)) == []
    assert lsm.denying_returns(asm.assemble(ALLOW), cgroup=True) == [0]
    assert lsm.denying_returns(asm.assemble([asm.mov64(R0, 1), asm.exit_()]), cgroup=True) == []


def test_unknown_hook_is_refused_before_loading(nothing_left_behind: None) -> None:
    with pytest.raises(EBPFError, match=r"unknown LSM hook 'file_opem'.*did you mean file_open"):
        lsm.load_lsm_program(ALLOW, "file_opem")
    with pytest.raises(EBPFError, match="unknown LSM hook"):
        lsm.setup_lsm_hook(ALLOW, "no_such_hook")


def test_deny_on_a_void_hook_is_refused_before_loading(nothing_left_behind: None) -> None:
    with pytest.raises(EBPFError, match=r"'file_free_security' returns void.*the program returns -1"):
        lsm.load_lsm_program(DENY, "file_free_security")
    with pytest.raises(EBPFError, match=r"returns void.*the program returns 0"):
        lsm.load_lsm_program(ALLOW, "file_free_security", cgroup=True)  # 0 denies in a cgroup program
    with pytest.raises(EBPFError, match="returns void"), lsm.lsm_hook(DENY, "file_free_security"):
        pass


def test_non_gpl_license_and_conflicting_fields_are_refused(nothing_left_behind: None) -> None:
    with pytest.raises(EBPFError, match="LSM programs must be GPL-compatible; license 'MIT'"):
        lsm.load_lsm_program(ALLOW, "file_open", license="MIT")
    with pytest.raises(EBPFError, match="sets prog_type itself"):
        lsm.load_lsm_program(ALLOW, "file_open", prog_type="xdp")
    with pytest.raises(EBPFError, match="insns must be"):
        lsm.load_lsm_program(42, "file_open")


def test_inactive_bpf_lsm_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           nothing_left_behind: None) -> None:
    # A kernel booted without 'bpf' in lsm=: programs would load and never run, so nothing is loaded.
    listing = tmp_path / "lsm"
    listing.write_text("lockdown,capability,landlock")
    monkeypatch.setattr(lsm, "LSM_LIST", str(listing))
    for attempt in (lambda: lsm.load_lsm_program(ALLOW, "file_open"), lsm.have_bpf_lsm,
                    lambda: lsm.setup_lsm_hook(ALLOW, "file_open")):
        with pytest.raises(UnsupportedFeatureError) as info:
            attempt()
        assert info.value.feature == "BPF LSM"
        assert "the 'bpf' LSM is not active (active: lockdown,capability,landlock); boot with " \
               "lsm=lockdown,capability,landlock,bpf" in str(info.value)
    assert lsm.lsm_available() is False


@pytest.mark.parametrize(("active", "lockdown", "caps", "expected"), [
    (["capability", "selinux"], "none", ALL_CAPS, "EPERM: the 'bpf' LSM is not active (active: capability,selinux)"),
    (["bpf"], "none", 0, "EPERM: missing capability CAP_BPF, CAP_PERFMON, CAP_SYS_ADMIN"),
    (["bpf"], "none", (1 << 39) | (1 << 38), "EPERM: missing capability CAP_SYS_ADMIN"),
    (["bpf"], "integrity", ALL_CAPS, "kernel lockdown is 'integrity'"),
    (["bpf"], "none", ALL_CAPS, "a hardened kernel or a security policy"),
    (None, None, None, "the active LSMs or capabilities could not be read"),
])
def test_refusals_are_explained(active: list[str] | None, lockdown: str | None, caps: int | None,
                                expected: str) -> None:
    assert expected in lsm.explain_refusal(errno.EPERM, active, lockdown, caps)


def test_this_kernel_loads_lsm_programs_or_says_why(nothing_left_behind: None) -> None:
    """On this host the load fails with EPERM: the error names BPF LSM and the cause; where the kernel
    allows LSM (the VM) the same call loads a program of type LSM."""
    try:
        prog = lsm.load_lsm_program(ALLOW, "file_open")
    except UnsupportedFeatureError as exc:
        assert exc.feature == "BPF LSM" and not lsm.lsm_available()
        text = str(exc)
        assert re.search(r"EPERM|EACCES", text), text
        assert re.search(r"not active|missing capability|lockdown|hardened kernel", text), text
        return
    with prog:
        assert prog.prog_type is ProgType.LSM and lsm.lsm_available()


def test_wrong_program_type_is_refused(nothing_left_behind: None) -> None:
    with load_program(prog_type="socket_filter", insns=ALLOW) as prog:
        with pytest.raises(AttachError, match=r"needs an lsm program; .* is a socket_filter program"):
            lsm.attach_lsm_program(prog)
        with pytest.raises(AttachError, match="needs an lsm program"):
            lsm.setup_lsm_hook(prog, "file_open")
    with pytest.raises(AttachError, match="needs a loaded Program, not list"):
        lsm.attach_lsm_program(ALLOW)  # type: ignore[arg-type]
    with pytest.raises(EBPFError, match="needs the Link"):
        lsm.detach_lsm_program("link")  # type: ignore[arg-type]
    with pytest.raises(EBPFError, match="needs an LsmSetup"):
        lsm.teardown_lsm_hook(None)  # type: ignore[arg-type]


def test_bad_cgroup_is_refused_before_loading(tmp_path: Path, nothing_left_behind: None) -> None:
    with pytest.raises(AttachError, match="is not a cgroup v2 directory"):
        lsm.setup_lsm_hook([asm.mov64(R0, 1), asm.exit_()], "file_open", cgroup=str(tmp_path))
    with pytest.raises(AttachError, match="a cgroup is a cgroup v2 directory path or fd, not float"):
        lsm.setup_lsm_hook(ALLOW, "file_open", cgroup=1.5)


def test_link_type_is_the_core_link() -> None:
    # detach_lsm_program takes any core Link: a closed one is harmless to detach again
    from ebpf.core.links import CallbackLink

    calls: list[int] = []
    link = CallbackLink(lambda: calls.append(1), description="test")
    assert isinstance(link, Link)
    lsm.detach_lsm_program(link)
    lsm.detach_lsm_program(link)
    assert calls == [1]


def test_cgroup_lsm_before_linux_6_0_is_refused_before_loading(monkeypatch: pytest.MonkeyPatch,
                                                               nothing_left_behind: None) -> None:
    import ebpf.core.system

    monkeypatch.setattr(ebpf.core.system, "kernel_version", lambda: (5, 15, 0))  # what this host cannot be
    with pytest.raises(UnsupportedFeatureError) as info:
        lsm.load_lsm_program([asm.mov64(R0, 1), asm.exit_()], "file_open", cgroup=True)
    assert info.value.feature == "cgroup-scoped BPF LSM (BPF_LSM_CGROUP)" and info.value.min_kernel == "6.0"


def test_lsm_setup_follows_the_one_setup_contract(nothing_left_behind: None) -> None:
    # LSM programs do not load on every kernel: the setup is built from a real program and a link
    # whose detach is observed, to show what close(), with and teardown_lsm_hook do with them.
    from ebpf.core.fdowner import Setup
    from ebpf.core.links import CallbackLink

    detached: list[str] = []
    prog = load_program(prog_type="socket_filter", insns=ALLOW)
    link = CallbackLink(lambda: detached.append("detached"), program=prog, description="lsm file_open")
    setup = lsm.LsmSetup(lsm.find_lsm_hook("file_open"), prog, link)
    assert isinstance(setup, Setup) and not setup.closed
    with setup as same:
        assert same is setup
    assert setup.closed and link.closed and prog.closed and detached == ["detached"]
    lsm.teardown_lsm_hook(setup)  # teardown is close(): again is harmless
    assert detached == ["detached"]
