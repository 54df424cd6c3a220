"""kprobes and kretprobes doing real work: exact call counts, return values, the tracefs path, cookies.

The development host has no CONFIG_KPROBES, so here these skip naming the feature; ``tools/vm/run.py``
boots a Debian kernel where they run.  Every program filters on the test's own process id (kept in a
map) so the counts are exact whatever else runs on the machine.
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
from ebpf.core.errors import AttachError, BPFSyscallError
from ebpf.core.features import have_kprobes, have_link_type
from ebpf.core.maps import create_array_map
from ebpf.core.programs import load_program
from ebpf.core.system import ensure_tracefs
from ebpf.core.testing import require
from ebpf.events import tracing

pytestmark = pytest.mark.privileged
R0, R1, R2, R6, R7, R10 = asm.R0, asm.R1, asm.R2, asm.R6, asm.R7, asm.R10

# unlink() of a missing path calls this once and changes nothing: N calls from Python are N entries.
TARGET = "do_unlinkat"
# in a writable directory: on a read-only filesystem unlink() fails with EROFS before the lookup
MISSING = os.path.join(tempfile.gettempdir(), f"ebpf-vm-test-missing-{os.getpid()}")
PT_REGS_AX = 80  # offsetof(struct pt_regs, ax) on x86_64: the return value in a kretprobe
STATE_SIZE = 24  # u64 pid to match, u64 calls, u64 last value


@pytest.fixture
def state() -> Iterator[Any]:
    with create_array_map(1, value_size=STATE_SIZE, name="kp_state") as m:
        m.update_bytes(b"\0" * 4, os.getpid().to_bytes(8, "little") + b"\0" * 16)
        yield m


def read_state(state: Any) -> tuple[int, int]:
    """(calls, last value) from the state map."""
    raw = state.lookup_bytes(b"\0" * 4) or b"\0" * STATE_SIZE
    # the last value is an int return value (or a cookie below 2**31): the low 32 bits, signed
    return int.from_bytes(raw[8:16], "little"), int.from_bytes(raw[16:20], "little", signed=True)


def for_pid(state: Any, body: list[Any]) -> list[Any]:
    """Count the call and run ``body`` (R0 = state value, R6 = ctx) only in the process in the state map."""
    return [
        asm.mov64(R6, R1),
        asm.call("get_current_pid_tgid"), asm.rsh64(R0, 32), asm.mov64(R7, R0),
        asm.st_mem("w", R10, -4, 0), asm.ld_map_fd(R1, state), asm.mov64(R2, R10), asm.add64(R2, -4),
        asm.call("map_lookup_elem"), asm.jeq(R0, 0, "out"),
        asm.ldx_mem("dw", R1, R0, 0), asm.jne(R1, R7, "out"),
        asm.mov64(R1, 1), asm.atomic_add("dw", R0, R1, 8),
        *body,
        asm.label("out"), asm.mov64(R0, 0), asm.exit_(),
    ]


def unlink_missing(n: int) -> None:
    """Call unlink() on a path that does not exist ``n`` times (each is one do_unlinkat call)."""
    for _ in range(n):
        with pytest.raises(FileNotFoundError):
            os.unlink(MISSING)


def calls_from_a_child(n: int) -> None:
    """Another process calls unlink() ``n`` times (the pid filter must ignore it)."""
    code = f"import os\nfor _ in range({n}):\n    try: os.unlink({MISSING!r})\n    except OSError: pass"
    subprocess.run([sys.executable, "-c", code], check=True)


def kprobe_events() -> str:
    """The tracefs kprobe_events listing (the events defined through tracefs)."""
    with open(os.path.join(ensure_tracefs(), "kprobe_events")) as f:
        return f.read()


@pytest.mark.parametrize("legacy", [False, True], ids=["pmu", "tracefs"])
def test_kprobe_counts_exactly_our_calls(state: Any, legacy: bool) -> None:
    require(have_kprobes)
    with load_program(prog_type="kprobe", insns=for_pid(state, []), maps=(state,), name="count_ppid") as prog:
        unlink_missing(1)
        with tracing.attach_kprobe(prog, TARGET, legacy=legacy) as link:
            if legacy:  # the tracefs path defines a named event while attached
                assert TARGET in kprobe_events()
            unlink_missing(30)
            calls_from_a_child(50)
            assert read_state(state)[0] == 30
        assert link.closed
        unlink_missing(1)
        assert read_state(state)[0] == 30  # detached
        assert TARGET not in kprobe_events()  # and no tracefs event left behind


def test_kretprobe_sees_the_return_value(state: Any) -> None:
    require(have_kprobes)
    body = [asm.ldx_mem("dw", R1, R6, PT_REGS_AX), asm.stx_mem("dw", R0, R1, 16)]
    with load_program(prog_type="kprobe", insns=for_pid(state, body), maps=(state,)) as prog, \
            tracing.attach_kretprobe(prog, TARGET):
        unlink_missing(1)
        calls, value = read_state(state)
    assert calls == 1 and value == -errno.ENOENT


def test_kprobe_cookie_reaches_the_program(state: Any) -> None:
    require(have_kprobes)
    body = [asm.mov64(R1, R6), asm.mov64(R7, R0), asm.call("get_attach_cookie"),
            asm.stx_mem("dw", R7, R0, 16)]
    with load_program(prog_type="kprobe", insns=for_pid(state, body), maps=(state,)) as prog, \
            tracing.attach_kprobe(prog, TARGET, cookie=0xC0FFEE):
        unlink_missing(1)
        calls, value = read_state(state)
    assert calls == 1 and value == 0xC0FFEE


def test_kprobe_on_missing_function_is_attach_error() -> None:
    require(have_kprobes)
    with load_program(prog_type="kprobe", insns=[asm.mov64(R0, 0), asm.exit_()]) as prog, \
            pytest.raises((AttachError, BPFSyscallError)):
        tracing.attach_kprobe(prog, "no_such_kernel_function_xyz")


def test_kprobe_multi_counts_calls(state: Any) -> None:
    require(have_kprobes)
    require(have_link_type, "kprobe_multi")
    with load_program(prog_type="kprobe", expected_attach_type="trace_kprobe_multi", insns=for_pid(state, []),
                      maps=(state,)) as prog, \
            tracing.attach_kprobe_multi(prog, [TARGET, "do_rmdir"]):
        unlink_missing(10)
        for _ in range(5):
            with pytest.raises(FileNotFoundError):
                os.rmdir(MISSING)
        calls_from_a_child(20)
        assert read_state(state)[0] == 15
