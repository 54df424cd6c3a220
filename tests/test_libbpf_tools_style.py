"""Cross-package: programs written the way bcc's libbpf-tools are (``vmlinux.h``, ``<bpf/bpf_helpers.h>``,
``<bpf/bpf_tracing.h>``, ``<bpf/bpf_core_read.h>``, ``<bpf/bpf_endian.h>``, all shipped by ebpf-elf),
built by ``compile_c`` with nothing else installed, loaded by ebpf-elf, attached by ebpf-events, and
observed doing their job on this kernel.

The sources are ``packages/ebpf-elf/tests/fixtures/lt_*.c``; each test runs on the object built by
ziglang and on the one built by Debian's clang.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import socket
import struct
import threading
import time
from pathlib import Path

import pytest
from ebpf import elf
from ebpf.core.errors import UnsupportedFeatureError
from ebpf.core.features import have_kfunc
from ebpf.events import tracing
from ebpf.events.ringbuf import RingBuffer

pytestmark = pytest.mark.privileged

FIXTURES = Path(__file__).parents[1] / "packages" / "ebpf-elf" / "tests" / "fixtures"
BUILDS = [".o", ".clang.o"]
SYS_GETPPID = {"x86_64": 110, "aarch64": 173}[os.uname().machine]


def lt(name: str, suffix: str) -> str:
    """Path of the committed object of ``lt_<name>.c``."""
    return str(FIXTURES / f"lt_{name}{suffix}")


def wait_until(predicate, timeout: float = 10.0) -> bool:  # type: ignore[no-untyped-def]
    """Poll ``predicate`` until it is true or ``timeout`` seconds passed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return bool(predicate())


@pytest.mark.parametrize("suffix", BUILDS)
def test_syscount_counts_our_syscalls(suffix: str) -> None:
    with elf.load_elf(lt("syscount", suffix), constants={"filter_pid": os.getpid()}) as coll:
        links = [coll.programs[p].attach() for p in ("sys_enter", "sys_exit")]
        try:
            for _ in range(50):
                os.getppid()
        finally:
            for link in links:
                link.close()
        raw = coll.maps["data"].lookup_bytes(struct.pack("<I", SYS_GETPPID))
        assert raw is not None
        count, total_ns = struct.unpack("<QQ", raw)
        assert count >= 50 and total_ns > 0


@pytest.mark.parametrize("suffix", BUILDS)
def test_opensnoop_sees_our_open_with_core_checks(suffix: str, tmp_path: Path) -> None:
    target = tmp_path / f"opensnoop-{os.getpid()}.txt"
    target.write_text("x")
    with elf.load_elf(lt("opensnoop", suffix), constants={"targ_tgid": os.getpid()}) as coll:
        links = [coll.programs[p].attach() for p in sorted(coll.programs)]
        try:
            fd = os.open(target, os.O_RDONLY)
            os.close(fd)
            with RingBuffer(coll.maps["events"]) as rb:
                records = [bytes(r) for r in rb.read_batch(64)]
        finally:
            for link in links:
                link.close()
    # struct event: ts, pid, uid, ret, flags, ppid, has_loginuid, comm[16], fname[255]
    fmt = struct.Struct("<QiIiiII16s255s")
    events = [fmt.unpack_from(r) for r in records if len(r) >= fmt.size]
    ours = [e for e in events if e[8].split(b"\0")[0] == str(target).encode()]
    assert ours, [e[8][:60] for e in events]
    _ts, pid, uid, ret, flags, ppid, has_loginuid, _comm, _name = ours[0]
    assert pid == os.getpid() and uid == os.getuid() and ret >= 0 and flags & 3 == os.O_RDONLY
    assert ppid == os.getppid()  # BPF_CORE_READ(task, real_parent, tgid)
    # loginuid exists (CONFIG_AUDIT) or not, but struct task_struct___old's "state" is gone since 5.14
    assert has_loginuid in (0, 1)


@pytest.mark.parametrize("suffix", BUILDS)
def test_runqlat_histogram_fills_from_tp_btf(suffix: str) -> None:
    with elf.load_elf(lt("runqlat", suffix)) as coll:
        links = [coll.programs[p].attach() for p in sorted(coll.programs)]
        try:
            stop = threading.Event()

            def sleeper() -> None:
                while not stop.is_set():
                    time.sleep(0.001)

            t = threading.Thread(target=sleeper)
            t.start()
            try:
                assert wait_until(lambda: coll.variables["switches"].value >= 20)
            finally:
                stop.set()
                t.join(5)
        finally:
            for link in links:
                link.close()
        raw = coll.maps["hists"].lookup_bytes(bytes(4))
        slots = struct.unpack_from("<26I", raw)
        assert sum(slots) >= 20 and coll.variables["wakeups"].value > 0


@pytest.mark.parametrize("suffix", BUILDS)
def test_kprobe_tool_loads_and_attach_says_unsupported(suffix: str) -> None:
    with elf.load_elf(lt("kprobes", suffix)) as coll:
        assert coll.programs["kill_entry"].attach_target.startswith("kprobe:__")  # the syscall wrapper
        for name in ("do_unlinkat", "do_unlinkat_ret", "kill_entry"):
            try:
                link = coll.programs[name].attach()
            except UnsupportedFeatureError as exc:
                assert "kprobe" in str(exc)
            else:  # a kernel with kprobes: the probe attaches
                link.close()


@pytest.mark.parametrize("suffix", BUILDS)
def test_exitsnoop_sees_a_child_exit_with_its_code(suffix: str) -> None:
    with elf.load_elf(lt("exitsnoop", suffix)) as coll:
        link = coll.programs["sched_process_exit"].attach()
        try:
            with RingBuffer(coll.maps["events"]) as rb:
                child = os.fork()
                if child == 0:
                    os._exit(7)
                os.waitpid(child, 0)
                records: list[bytes] = []

                def seen() -> bool:
                    records.extend(bytes(r) for r in rb.read_batch(64, timeout_ms=50))
                    return any(struct.unpack_from("<i", r, 16)[0] == child for r in records)

                assert wait_until(seen)
        finally:
            link.close()
    # struct event: start_time, exit_time, pid, tid, ppid, sig, exit_code, comm[16]
    fmt = struct.Struct("<QQiiiii16s")
    ours = [fmt.unpack_from(r) for r in records if struct.unpack_from("<i", r, 16)[0] == child]
    start, end, pid, tid, ppid, sig, code, _comm = ours[0]
    assert (pid, tid, ppid, sig, code) == (child, child, os.getpid(), 0, 7)  # ppid and exit code by CO-RE
    assert 0 < start < end  # task->start_time (CO-RE), bpf_ktime_get_ns() at exit


@pytest.mark.parametrize("suffix", BUILDS)
def test_oomkill_loads_with_core_reads_of_oom_control(suffix: str) -> None:
    with elf.load_elf(lt("oomkill", suffix)) as coll:
        prog = coll.programs["oom_kill_process"]
        assert prog.attach_target == "kprobe:oom_kill_process"
        try:
            link = prog.attach()
        except UnsupportedFeatureError as exc:  # no CONFIG_KPROBES here; the VM kernels attach it
            assert "kprobe" in str(exc)
        else:
            link.close()


@pytest.mark.parametrize("suffix", BUILDS)
def test_uprobe_tool_reads_arguments_and_return_value(suffix: str) -> None:
    libc_path = ctypes.util.find_library("c")
    assert libc_path
    libc = ctypes.CDLL(libc_path)
    binary = next(line.split()[-1] for line in Path("/proc/self/maps").read_text().splitlines()
                  if "libc.so" in line or "libc-" in line)
    libc.labs.argtypes = [ctypes.c_long]
    libc.labs.restype = ctypes.c_long
    with elf.load_elf(lt("uprobe", suffix), constants={"targ_tgid": os.getpid()}) as coll:
        entry = tracing.attach_uprobe(coll.programs["labs_entry"], binary, "labs", pid=os.getpid())
        ret = tracing.attach_uretprobe(coll.programs["labs_exit"], binary, "labs", pid=os.getpid())
        try:
            assert libc.labs(-123457) == 123457
        finally:
            entry.close()
            ret.close()
        assert coll.variables["calls"].value >= 1
        assert ctypes.c_long(coll.variables["last_arg"].value).value == -123457
        assert coll.variables["last_ret"].value == 123457


@pytest.mark.parametrize("suffix", BUILDS)
def test_tcpstates_reports_ports_in_host_order(suffix: str) -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    try:
        with elf.load_elf(lt("tcpstates", suffix), constants={"target_port": port}) as coll:
            link = coll.programs["handle_set_state"].attach()
            try:
                client = socket.create_connection(("127.0.0.1", port), timeout=5)
                conn, _ = server.accept()
                conn.close()
                client.close()
                with RingBuffer(coll.maps["events"]) as rb:
                    records = [bytes(r) for r in rb.read_batch(64)]
            finally:
                link.close()
    finally:
        server.close()
    fmt = struct.Struct("<QIiiHHHHIII")
    events = [fmt.unpack_from(r) for r in records]
    # the client's SYN_SENT -> ESTABLISHED (before it, the local port is not chosen yet)
    connects = [e for e in events if e[6] == port and e[3] == 1]  # dport from bpf_ntohs(skc_dport)
    assert connects, events
    _sk, netns, _old, _new, family, sport, dport, sport_tp, saddr, daddr, _pid = connects[0]
    assert family == socket.AF_INET and dport == port and sport == sport_tp and sport != 0
    assert saddr == daddr == struct.unpack("<I", socket.inet_aton("127.0.0.1"))[0]
    assert netns == os.stat("/proc/self/ns/net").st_ino  # BPF_CORE_READ(sk, ..skc_net.net, ns.inum)


@pytest.mark.parametrize("suffix", BUILDS)
def test_sigsnoop_uses_the_kfunc_it_checked_for(suffix: str) -> None:
    got = threading.Event()
    old = signal.signal(signal.SIGUSR2, lambda *_: got.set())
    try:
        with elf.load_elf(lt("sigsnoop", suffix), constants={"filter_sig": int(signal.SIGUSR2)}) as coll:
            link = coll.programs["sig_trace"].attach()
            try:
                os.kill(os.getpid(), signal.SIGUSR2)
                assert wait_until(got.is_set)
                with RingBuffer(coll.maps["events"]) as rb:
                    records = [bytes(r) for r in rb.read_batch(64)]
            finally:
                link.close()
            assert coll.variables["missing_kfunc_seen"].value == 0  # weak, absent: bpf_ksym_exists -> 0
    finally:
        signal.signal(signal.SIGUSR2, old)
    fmt = struct.Struct("<IIiiII16s")
    events = [fmt.unpack_from(r) for r in records]
    ours = [e for e in events if e[1] == os.getpid() or e[0] == os.getpid()]
    assert ours, events
    pid, _tpid, sig, _ret, target_tgid, used_kfunc, _comm = ours[0]
    assert sig == signal.SIGUSR2 and pid == os.getpid()
    try:
        have_kfunc("bpf_task_from_pid")  # Linux >= 6.2
    except UnsupportedFeatureError:  # weak and absent: bpf_ksym_exists() -> 0, the branch was left out
        assert used_kfunc == 0
    else:  # bpf_ksym_exists(bpf_task_from_pid) resolved to the kfunc's BTF id: the branch ran
        assert used_kfunc == 1 and target_tgid == os.getpid()


def test_generated_skeleton_drives_opensnoop(tmp_path: Path) -> None:
    # `ebpf gen skeleton` from the C source; the ring buffer parses records with the generated type
    import importlib.util

    from ebpf.elf.skeleton import generate_skeleton

    out = generate_skeleton(FIXTURES / "lt_opensnoop.c", tmp_path / "opensnoop_skel.py", compiler="zig")
    spec = importlib.util.spec_from_file_location("opensnoop_skel", out)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    target = tmp_path / "skeleton-target.txt"
    target.write_text("x")
    with mod.LtOpensnoopSkeleton(targ_tgid=os.getpid()) as skel:
        skel.attach()
        os.close(os.open(target, os.O_RDONLY))
        with RingBuffer(skel.maps.events) as rb:
            events = [skel.types.event.parse(r) for r in rb.read_batch(64)]
    ours = [e for e in events if e.fname == str(target).encode()]
    assert ours and ours[0].pid == os.getpid() and ours[0].ppid == os.getppid() and ours[0].comm
