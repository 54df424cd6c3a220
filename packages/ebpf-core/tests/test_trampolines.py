"""BPF trampoline programs doing real work: LSM denying open(), fentry counting calls, fexit reading returns.

These need a kernel that lets trampolines load (no lockdown refusal, CONFIG_BPF_LSM, ``lsm=...,bpf``).
The development host refuses them (EPERM), so here they skip naming the feature; ``tools/vm/run.py``
boots a Debian kernel where they run.  Every program filters on one process id stored in a map by the
test, so other processes in the system never disturb the numbers.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from typing import Any

import pytest
from ebpf.core import asm
from ebpf.core.features import have_fentry, have_lsm
from ebpf.core.links import attach_raw_tracepoint, create_link
from ebpf.core.maps import create_array_map
from ebpf.core.programs import load_program
from ebpf.core.testing import Opener, require
from ebpf.core.types import AttachType, LinkType, ProgType

pytestmark = pytest.mark.privileged
R0, R1, R2, R6, R7, R10 = asm.R0, asm.R1, asm.R2, asm.R6, asm.R7, asm.R10

# The kernel function the fentry/fexit tests trace: unlink() of a missing path calls it once and
# changes nothing.  It is a global function, in vmlinux BTF on every kernel since 5.5 (the syscall
# wrappers such as __x64_sys_getppid are not in 6.1's BTF).  int do_unlinkat(int dfd, struct filename *name)
TARGET = "do_unlinkat"
# in a writable directory: on a read-only filesystem unlink() fails with EROFS before the lookup
MISSING = os.path.join(tempfile.gettempdir(), f"ebpf-vm-test-missing-{os.getpid()}")


def unlink_missing(n: int) -> None:
    """Call unlink() on a path that does not exist ``n`` times (each is one do_unlinkat call)."""
    for _ in range(n):
        with pytest.raises(FileNotFoundError):
            os.unlink(MISSING)


def unlink_from_a_child(n: int) -> None:
    """Another process calls unlink() ``n`` times (the pid filter must ignore it)."""
    code = f"import os\nfor _ in range({n}):\n    try: os.unlink({MISSING!r})\n    except OSError: pass"
    subprocess.run([sys.executable, "-c", code], check=True)

# state map value: u64 pid to match (set by the test), u64 calls seen, u64 last value recorded
STATE_SIZE = 24


@pytest.fixture
def state() -> Iterator[Any]:
    with create_array_map(1, value_size=STATE_SIZE, name="vm_state") as m:
        yield m


def set_pid(state: Any, pid: int) -> None:
    """Make the programs act on process ``pid`` only (0: on nobody)."""
    state.update_bytes(b"\0" * 4, pid.to_bytes(8, "little") + b"\0" * 16)


def read_state(state: Any) -> tuple[int, int, int]:
    """(pid, calls, last value) from the state map."""
    raw = state.lookup_bytes(b"\0" * 4) or b"\0" * STATE_SIZE
    # the last value is an int return value: the low 32 bits, signed
    return (int.from_bytes(raw[0:8], "little"), int.from_bytes(raw[8:16], "little"),
            int.from_bytes(raw[16:20], "little", signed=True))


def for_pid(state: Any, body: list[Any], other: int = 0) -> list[Any]:
    """Run ``body`` (R0 = state value, R6 = ctx) only in the process whose tgid is in the state map.

    ``body`` must end by setting R0; other processes get ``other`` back.
    """
    return [
        asm.mov64(R6, R1),
        asm.call("get_current_pid_tgid"), asm.rsh64(R0, 32), asm.mov64(R7, R0),
        asm.st_mem("w", R10, -4, 0), asm.ld_map_fd(R1, state), asm.mov64(R2, R10), asm.add64(R2, -4),
        asm.call("map_lookup_elem"), asm.jeq(R0, 0, "other"),
        asm.ldx_mem("dw", R1, R0, 0), asm.jne(R1, R7, "other"),
        asm.mov64(R1, 1), asm.atomic_add("dw", R0, R1, 8),
        *body,
        asm.exit_(),
        asm.label("other"), asm.mov64(R0, other), asm.exit_(),
    ]


@pytest.fixture
def opener() -> Iterator[Opener]:
    child = Opener()
    try:
        yield child
    finally:
        child.close()


def deny_open_insns(state: Any) -> list[Any]:
    """lsm/file_open (or fmod_ret on security_file_open): -EPERM for the chosen process, 0 for all others."""
    return for_pid(state, [asm.mov64(R0, -errno.EPERM)])


def test_lsm_file_open_denies_only_the_chosen_process(state: Any, opener: Opener) -> None:
    require(have_lsm)
    path = "/proc/self/status"
    with load_program(prog_type="lsm", expected_attach_type="lsm_mac", attach_to="file_open",
                      insns=deny_open_insns(state), maps=(state,), name="deny_open") as prog:
        assert prog.info().type is ProgType.LSM
        assert opener.open(path) == 0  # loaded but not attached: nothing happens
        with attach_raw_tracepoint(prog) as link:
            assert link.info().type is LinkType.TRACING
            assert opener.open(path) == 0  # attached, but the map names nobody yet
            set_pid(state, opener.pid)
            assert opener.open(path) == errno.EPERM
            assert opener.open("/etc/hostname") == errno.EPERM
            with open(path, "rb") as f:  # the test process itself is not the chosen one
                assert f.read(5) == b"Name:"
            assert read_state(state)[1] == 2  # the program saw exactly the child's two opens
        assert opener.open(path) == 0  # link closed: the hook is gone


def test_lsm_attach_through_link_create(state: Any, opener: Opener) -> None:
    require(have_lsm)
    with load_program(prog_type="lsm", expected_attach_type="lsm_mac", attach_to="file_open",
                      insns=deny_open_insns(state), maps=(state,)) as prog:
        # BPF_LINK_CREATE with target_fd 0: the target came from BTF at load (seen working on 6.1 and 6.12)
        with create_link(prog, 0, "lsm_mac") as link:
            info = link.info()
            assert info.type is LinkType.TRACING and info.attach_type is AttachType.LSM_MAC
            set_pid(state, opener.pid)
            assert opener.open("/etc/hostname") == errno.EPERM
        assert opener.open("/etc/hostname") == 0


def test_fentry_counts_exactly_our_calls(state: Any) -> None:
    require(have_fentry)
    with load_program(prog_type="tracing", expected_attach_type="trace_fentry", attach_to=TARGET,
                      insns=for_pid(state, [asm.mov64(R0, 0)]), maps=(state,), name="count_unlink") as prog:
        set_pid(state, os.getpid())
        unlink_missing(7)
        assert read_state(state)[1] == 0  # not attached yet
        with attach_raw_tracepoint(prog) as link:
            assert link.info().attach_type is AttachType.TRACE_FENTRY
            unlink_missing(25)
            unlink_from_a_child(40)
            assert read_state(state)[1] == 25
        unlink_missing(1)
        assert read_state(state)[1] == 25  # detached


def test_fexit_sees_the_return_value(state: Any) -> None:
    require(have_fentry)
    # fexit ctx: the function's arguments as u64s, then its return value (two arguments: at offset 16).
    body = [asm.ldx_mem("dw", R1, R6, 16), asm.stx_mem("dw", R0, R1, 16), asm.mov64(R0, 0)]
    with load_program(prog_type="tracing", expected_attach_type="trace_fexit", attach_to=TARGET,
                      insns=for_pid(state, body), maps=(state,)) as prog, attach_raw_tracepoint(prog):
        set_pid(state, os.getpid())
        unlink_missing(1)
        _, calls, value = read_state(state)
    assert calls == 1 and value == -errno.ENOENT


def test_fmod_ret_makes_open_fail_for_one_process(state: Any, opener: Opener) -> None:
    require(have_fentry)
    # security_* functions accept fmod_ret even without CONFIG_FUNCTION_ERROR_INJECTION; a non-zero
    # return skips the function and becomes its result.
    with load_program(prog_type="tracing", expected_attach_type="modify_return", attach_to="security_file_open",
                      insns=deny_open_insns(state), maps=(state,)) as prog, attach_raw_tracepoint(prog):
        set_pid(state, opener.pid)
        assert opener.open("/etc/hostname") == errno.EPERM
        with open("/etc/hostname", "rb"):
            pass
    assert opener.open("/etc/hostname") == 0
