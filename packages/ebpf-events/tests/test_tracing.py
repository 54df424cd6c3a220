"""Tracing attach on the real kernel: uprobes, uprobe.multi, USDT, raw_tp, tp_btf, perf_event, fentry, bad input."""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
import time
from typing import Any

import pytest
from ebpf.core import asm
from ebpf.core.errors import AttachError, EBPFError, UnsupportedFeatureError
from ebpf.core.features import have_fentry, have_kprobes, have_link_type
from ebpf.core.maps import create_array_map
from ebpf.core.programs import load_program
from ebpf.core.testing import require
from ebpf.events import tracing
from ebpf.events.tracing import MultiLink

pytestmark = pytest.mark.privileged
R0, R1, R2, R10 = asm.R0, asm.R1, asm.R2, asm.R10
LIBC = "libc.so.6"


def counter_insns(counts: Any) -> list[Any]:
    """counts[0] += 1; return 0."""
    return [
        asm.st_mem("w", R10, -4, 0), asm.ld_map_fd(R1, counts), asm.mov64(R2, R10), asm.add64(R2, -4),
        asm.call("map_lookup_elem"), asm.jeq(R0, 0, "out"), asm.mov64(R1, 1), asm.atomic_add("dw", R0, R1, 0),
        asm.label("out"), asm.mov64(R0, 0), asm.exit_(),
    ]


@pytest.fixture
def counts() -> Any:
    with create_array_map(1, value_size=8, name="ev_counts") as m:
        yield m


def count_of(m: Any) -> int:
    return int.from_bytes(m.lookup_bytes(b"\0\0\0\0") or b"\0" * 8, "little")


def test_uprobe_on_libc_function_filtered_by_pid(counts: Any) -> None:
    libc = ctypes.CDLL(LIBC)
    with load_program(prog_type="kprobe", insns=counter_insns(counts), maps=(counts,)) as prog, \
            tracing.attach_uprobe(prog, LIBC, "strverscmp", pid=os.getpid()) as link:
        for _ in range(5):
            libc.strverscmp(b"a1", b"a2")
        mine = count_of(counts)
        # another process calling the same function is filtered out by the pid
        code = "import ctypes; f = ctypes.CDLL('libc.so.6').strverscmp\nfor _ in range(50): f(b'a', b'b')"
        subprocess.run([sys.executable, "-c", code], check=True)
        after = count_of(counts)
    assert link.closed
    assert mine >= 5 and after - mine < 50


def test_uretprobe_and_program_attach_target(counts: Any) -> None:
    libc = ctypes.CDLL(LIBC)
    with load_program(prog_type="kprobe", insns=counter_insns(counts), maps=(counts,)) as prog, \
            prog.attach(f"uretprobe:{LIBC}:strverscmp", pid=os.getpid()):
        for _ in range(3):
            libc.strverscmp(b"x", b"y")
    assert count_of(counts) >= 3


def test_uprobe_through_tracefs_removes_its_event(counts: Any, tracefs: str) -> None:
    libc = ctypes.CDLL(LIBC)
    with load_program(prog_type="kprobe", insns=counter_insns(counts), maps=(counts,)) as prog:
        link = tracing.attach_uprobe(prog, LIBC, "strverscmp", pid=os.getpid(), legacy=True)
        assert isinstance(link, tracing.TracefsProbeLink)
        with open(os.path.join(tracefs, "uprobe_events")) as f:
            assert link.event in f.read()
        with link:
            libc.strverscmp(b"1", b"2")
        with open(os.path.join(tracefs, "uprobe_events")) as f:
            assert link.event not in f.read()
    assert count_of(counts) >= 1


def test_uprobe_multi(counts: Any) -> None:
    require(have_link_type, "uprobe_multi")
    libc = ctypes.CDLL(LIBC)
    with load_program(prog_type="kprobe", expected_attach_type="trace_uprobe_multi", insns=counter_insns(counts),
                      maps=(counts,)) as prog, \
            tracing.attach_uprobe_multi(prog, LIBC, ["strverscmp", "ffsll"], pid=os.getpid()):
        libc.strverscmp(b"a", b"b")
        libc.ffsll(ctypes.c_longlong(8))
        libc.ffsll(ctypes.c_longlong(16))
    assert count_of(counts) >= 3


def test_usdt_listed_and_attached_on_python() -> None:
    probes = tracing.list_usdt("/usr/bin/python3.11")
    entry = [p for p in probes if (p.provider, p.name) == ("python", "function__entry")]
    assert entry and entry[0].offset > 0 and entry[0].semaphore and entry[0].args
    with create_array_map(1, value_size=8) as counts, \
            load_program(prog_type="kprobe", insns=counter_insns(counts), maps=(counts,)) as prog, \
            tracing.attach_usdt(prog, "/usr/bin/python3.11", "python", "function__entry"):
        code = "def f(): pass\nfor _ in range(100): f()"
        subprocess.run(["/usr/bin/python3.11", "-c", code], check=True)
        # the semaphore was raised by the kernel (ref_ctr_offset), so the guarded probe fired
        # (CPython 3.11 fires function__entry only for some frames, not once per call)
        assert count_of(counts) >= 1


def test_raw_tracepoint_fires(counts: Any) -> None:
    with load_program(prog_type="raw_tracepoint", insns=counter_insns(counts), maps=(counts,)) as prog, \
            prog.attach("sys_enter") as link:
        os.getppid()
        assert link.info().tp_name == "sys_enter"
    assert count_of(counts) > 0


def test_tp_btf_fires(counts: Any) -> None:
    prog = tracing.load_tracing_program(counter_insns(counts), "tp_btf", "sched_process_exec", maps=(counts,))
    with prog, prog.attach():
        subprocess.run(["/bin/true"], check=True)
        time.sleep(0.01)
    assert count_of(counts) >= 1


def test_perf_event_program_samples_cpu_clock(counts: Any) -> None:
    with load_program(prog_type="perf_event", insns=counter_insns(counts), maps=(counts,)) as prog, \
            tracing.attach_perf_event(prog, "cpu-clock", sample_period=100_000) as link:
        assert isinstance(link, MultiLink) and len(link.links) >= 1
        end = time.monotonic() + 0.2
        while time.monotonic() < end:
            pass
    assert link.closed and count_of(counts) > 0


def test_fentry_attach(counts: Any) -> None:
    require(have_fentry)
    prog = tracing.load_tracing_program(counter_insns(counts), "fentry", "bpf_fentry_test1", maps=(counts,))
    with prog, tracing.attach_fentry(prog):
        # BPF_PROG_TEST_RUN of an fentry program makes the kernel call bpf_fentry_test1..8 once each
        prog.test_run()
    assert count_of(counts) >= 1


def test_kprobe_clean_error_or_attach(counts: Any) -> None:
    with load_program(prog_type="kprobe", insns=counter_insns(counts), maps=(counts,)) as prog:
        try:
            have_kprobes()
        except UnsupportedFeatureError:
            with pytest.raises(UnsupportedFeatureError, match="kprobes"):
                tracing.attach_kprobe(prog, "do_sys_openat2")
            with pytest.raises(UnsupportedFeatureError):
                prog.attach("kretprobe:do_sys_openat2")
            return
        with tracing.attach_kprobe(prog, "do_sys_openat2"):
            open("/dev/null").close()
        assert count_of(counts) > 0


def test_list_tracepoints() -> None:
    sys_tps = tracing.list_tracepoints("syscalls")
    assert "syscalls:sys_enter_execve" in sys_tps
    assert tracing.list_tracepoints("no_such_category") == []


def test_bad_input(counts: Any) -> None:
    fds = len(os.listdir("/proc/self/fd"))
    with load_program(prog_type="tracepoint", insns=[asm.mov64(R0, 0), asm.exit_()]) as tp, \
            load_program(prog_type="kprobe", insns=[asm.mov64(R0, 0), asm.exit_()]) as kp:
        with pytest.raises(AttachError, match="no tracepoint"):
            tracing.attach_tracepoint(tp, "sched:no_such_tracepoint")
        with pytest.raises(EBPFError, match="category:name"):
            tracing.attach_tracepoint(tp, "../etc")
        with pytest.raises(EBPFError, match="needs a kprobe"):
            tracing.attach_uprobe(tp, LIBC, "strverscmp")
        with pytest.raises(EBPFError, match="needs a tracepoint"):
            tracing.attach_tracepoint(kp, "sched:sched_process_exec")
        with pytest.raises(EBPFError, match="raw_tracepoint"):
            tracing.attach_raw_tracepoint(kp, "sys_enter")
        with pytest.raises(AttachError, match="no such binary"):
            tracing.attach_uprobe(kp, "/no/such/binary", "main")
        with pytest.raises(AttachError, match="no symbol"):
            tracing.attach_uprobe(kp, LIBC, "no_such_function_xyz")
        with pytest.raises(AttachError, match="no USDT probe"):
            tracing.attach_usdt(kp, "/usr/bin/python3.11", "python", "nope")
        with pytest.raises(EBPFError, match="bad symbol"):
            tracing.attach_uprobe(kp, LIBC, "bad symbol!")
        with pytest.raises(EBPFError, match="perf_event"):
            tracing.attach_perf_event(kp)
        with pytest.raises(EBPFError, match="trace_uprobe_multi"):
            tracing.attach_uprobe_multi(kp, LIBC, ["strverscmp"])
        with pytest.raises(EBPFError, match="tracing"):
            tracing.attach_fentry(kp)
    assert len(os.listdir("/proc/self/fd")) == fds
