"""The everyday tools, each run as ``ebpf trace <tool>`` (or ``ebpf list``) in a subprocess while the test
causes the activity it must see: a known number of syscalls, a function called with known sleeps, a
process exec'd with argv, a failed open, reads from a loop device the test creates."""

from __future__ import annotations

import ctypes
import json
import mmap
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from ebpf.core.errors import EBPFError, UnsupportedFeatureError
from ebpf.core.testing import require

pytestmark = pytest.mark.privileged
SRC = [str(Path(__file__).resolve().parents[2] / p / "src") for p in ("ebpf-core", "ebpf-events")]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([*SRC, *[p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]])
    return env


def _start(*argv: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-m", "ebpf.core.cli", *argv], env=_env(), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    ready = proc.stderr.readline()  # "tracing ..." once the programs are attached
    if not ready.startswith("tracing"):
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"no 'tracing' line: {ready}{err}{out}")
    return proc


def _run_tool(argv: list[str], trigger: Callable[[], object] = lambda: None) -> str:
    """Run a tool around ``trigger``; without ``--duration`` it is stopped with SIGTERM (it prints what it saw,
    then exits 0) once ``trigger`` returned: bounded by what happened, not by a guess at how long it takes."""
    proc = _start(*argv)
    try:
        trigger()
        if "--duration" not in argv:
            proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    return out


def _json_lines(out: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[str]]:
    """A Python child that waits for a line on stdin, then runs the code it was given on the next line."""
    code = "import sys, time\nexec(sys.stdin.readline())\n"
    child = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, text=True)
    yield child
    if child.poll() is None:
        child.kill()
    child.wait()


def _go(child: subprocess.Popen[str], code: str) -> Callable[[], None]:
    def trigger() -> None:
        assert child.stdin is not None
        child.stdin.write(code + "\n")
        child.stdin.flush()
        child.wait(timeout=30)
    return trigger


def test_syscount_counts_our_syscalls_exactly() -> None:
    def calls() -> None:
        for _ in range(137):
            os.getppid()

    rows = _json_lines(_run_tool(["trace", "syscount", "--pid", str(os.getpid()), "-L", "--json", "--top", "100",
                                  "--duration", "1.5"], calls))
    by_name = {r["name"]: r for r in rows}
    assert by_name["getppid"]["count"] == 137
    assert by_name["getppid"]["total_ns"] > 0  # type: ignore[operator]


def test_syscount_per_process() -> None:
    def calls() -> None:
        for _ in range(50):
            os.getppid()

    rows = _json_lines(_run_tool(["trace", "syscount", "-P", "--syscall", "getppid", "--json", "--duration", "1.5"],
                                 calls))
    assert {"key": os.getpid(), "count": 50} in [{"key": r["key"], "count": r["count"]} for r in rows]


def test_syscount_failures_and_errno(tmp_path: Path) -> None:
    from ebpf.events.tools.syscount import SysCount

    missing, full = tmp_path / "missing", tmp_path / "full"
    (full / "inside").mkdir(parents=True)
    rmdir = "rmdir" if os.uname().machine == "x86_64" else "unlinkat"  # os.rmdir's syscall

    def calls() -> None:
        for path, times in ((missing, 7), (full, 5)):  # ENOENT, then ENOTEMPTY
            for _ in range(times):
                with pytest.raises(OSError):
                    os.rmdir(path)
        for _ in range(20):
            os.getppid()  # never fails

    with SysCount(pid=os.getpid(), failures=True) as failed, SysCount(pid=os.getpid(), errno="ENOENT") as enoent:
        calls()
        assert (failed.count(rmdir), failed.count("getppid")) == (12, 0)
        assert (enoent.count(rmdir), enoent.count("getppid")) == (7, 0)
    rows = _json_lines(_run_tool(["trace", "syscount", "--pid", str(os.getpid()), "-e", "ENOTEMPTY", "--json",
                                  "--duration", "1.5"], calls))
    assert [(r["name"], r["count"]) for r in rows] == [(rmdir, 5)]
    text = _run_tool(["trace", "syscount", "--pid", str(os.getpid()), "-x", "-L", "-m", "--duration", "1.5"], calls)
    assert "TIME (ms)" in text and re.search(rf"^{rmdir} +12 ", text, re.M), text


def test_syscount_one_thread_and_the_list() -> None:
    from ebpf.events.tools.syscount import SysCount

    ready, go, tids = threading.Event(), threading.Event(), []

    def worker() -> None:
        tids.append(threading.get_native_id())
        ready.set()
        go.wait(30)
        for _ in range(11):
            os.getppid()

    thread = threading.Thread(target=worker)
    thread.start()
    assert ready.wait(30)
    try:
        with SysCount(pid=os.getpid(), tid=tids[0], syscall="getppid") as tool:
            for _ in range(7):
                os.getppid()  # the main thread: not counted
            go.set()
            thread.join(30)
            assert tool.count("getppid") == 11
    finally:
        go.set()
        thread.join(30)
    listing = subprocess.run([sys.executable, "-m", "ebpf.core.cli", "trace", "syscount", "-l"], env=_env(),
                             capture_output=True, text=True, timeout=60)
    assert listing.returncode == 0 and re.search(r"^\d+ +getppid$", listing.stdout, re.M), listing.stdout[-500:]


def test_funclatency_on_a_uprobe_sees_the_known_sleeps(sleeper: subprocess.Popen[str]) -> None:
    # libc's usleep: a relative nanosleep, so each call lasts at least what it asks for.  (Python's time.sleep
    # sleeps to an absolute deadline: a process delayed before the call, as in a busy emulated VM, sleeps less.)
    work = ("import ctypes; libc = ctypes.CDLL('libc.so.6'); "
            "[libc.usleep(20000) for _ in range(5)]; [libc.usleep(2000) for _ in range(7)]")
    out = _run_tool(["trace", "funclatency", "libc.so.6:clock_nanosleep", "--pid", str(sleeper.pid), "-u", "--json"],
                    _go(sleeper, work))  # stopped once the sleeper has exited (under TCG its work took over 2.5 s)
    (hist,) = _json_lines(out)
    assert hist["unit"] == "usecs" and hist["total"] == 12
    slots = hist["slots"]
    assert isinstance(slots, list)
    assert all(s["low"] >= 1024 for s in slots)  # 2 ms and more: nothing below slot 10
    assert sum(s["count"] for s in slots if s["low"] >= 16384) >= 5  # the 20 ms sleeps


def test_funclatency_prints_bccs_layout(sleeper: subprocess.Popen[str]) -> None:
    out = _run_tool(["trace", "funclatency", "libc.so.6:clock_nanosleep", "-p", str(sleeper.pid), "-m",
                     "--duration", "2"], _go(sleeper, "[time.sleep(0.005) for _ in range(3)]"))
    lines = out.splitlines()
    assert lines[0] == "     msecs               : count     distribution"
    rows = [(int(line[:10]), int(line[14:24]), int(line[27:35])) for line in lines[1:]]  # low, high, count
    assert [r[:2] for r in rows[:3]] == [(0, 1), (2, 3), (4, 7)]
    assert sum(c for _, _, c in rows) == 3 and sum(c for low, _, c in rows if low < 4) == 0  # 5 ms or more each
    assert all(line.endswith("|") and len(line) == 78 for line in lines[1:])


LAT_LIB = """
#include <time.h>
static void nap(long ns) { struct timespec ts = {0, ns}; nanosleep(&ts, 0); }
__attribute__((noinline)) void lat_alpha(void) { nap(200000); }
__attribute__((noinline)) void lat_beta(void) { nap(2000000); }
__attribute__((noinline)) void other_gamma(void) { nap(1000); }
"""


def test_funclatency_patterns_and_per_function_histograms(tmp_path: Path) -> None:
    from ebpf.events.tools.funclatency import FuncLatency, matching_functions

    (tmp_path / "lat.c").write_text(LAT_LIB)
    lib = tmp_path / "liblat.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-O1", str(tmp_path / "lat.c"), "-o", str(lib)], check=True)
    assert matching_functions(str(lib), "lat_*") == ["lat_alpha", "lat_beta"]
    assert matching_functions(str(lib), "(lat_b|other)", regexp=True) == ["lat_beta", "other_gamma"]
    handle = ctypes.CDLL(str(lib))

    def calls() -> None:
        for fn, times in ((handle.lat_alpha, 3), (handle.lat_beta, 5), (handle.other_gamma, 2)):
            for _ in range(times):
                fn()

    with FuncLatency(f"{lib}:lat_*", pid=os.getpid(), per_function=True) as tool, \
            FuncLatency(f"{lib}:.*_(alpha|gamma)", pid=os.getpid(), regexp=True) as regexp:
        calls()
        per_function = tool.to_dict()
        assert {name: section["total"] for name, section in per_function["sections"].items()} == \
            {"lat_alpha": 3, "lat_beta": 5}
        beta = tool.histogram().section(tool.functions.index("lat_beta"))
        assert beta.total == 5 and beta.percentile(50) >= 1_000  # 2 ms sleeps, in microseconds
        assert "Function = lat_alpha" in tool.format() and "Function = lat_beta" in tool.format()
        assert regexp.functions == ["lat_alpha", "other_gamma"] and regexp.histogram().total == 5
    text = _run_tool(["trace", "funclatency", f"{lib}:lat_*", "-F", "--pid", str(os.getpid()), "--duration", "1.5"],
                     calls)
    assert "Function = lat_alpha" in text and "Function = lat_beta" in text and "other_gamma" not in text
    with pytest.raises(EBPFError, match=r"no function of .* matches"):
        FuncLatency(f"{lib}:nomatch_*")
    with pytest.raises(EBPFError, match="kernel function patterns"):
        FuncLatency("vfs_*")


def test_funclatency_on_a_kernel_function_or_a_clean_unsupported_error(tmp_path: Path) -> None:
    """A kernel function goes through kprobe/kretprobe: measured where the kernel has kprobes, else
    UnsupportedFeatureError naming kprobes (this machine: no CONFIG_KPROBES), nothing left loaded."""
    from ebpf.core.testing import open_fds
    from ebpf.events.tools.funclatency import FuncLatency

    before = open_fds()
    try:
        tool = FuncLatency("vfs_read", pid=os.getpid())
    except UnsupportedFeatureError as exc:
        assert "kprobe" in str(exc)
        assert open_fds() == before
        return
    with tool:
        (tmp_path / "f").write_text("x" * 100)
        for _ in range(20):
            (tmp_path / "f").read_text()
        assert tool.histogram().total >= 20


def test_runqlat_for_one_process(sleeper: subprocess.Popen[str]) -> None:
    out = _run_tool(["trace", "runqlat", "--pid", str(sleeper.pid), "--json", "--duration", "2.5"],
                    _go(sleeper, "[time.sleep(0.001) for _ in range(100)]"))
    (hist,) = _json_lines(out)
    assert hist["total"] >= 50  # each wakeup from a sleep is one wait on the run queue


@pytest.mark.parametrize("mode", ["tp_btf", "raw_tp"])
def test_runqlat_class_in_both_modes(sleeper: subprocess.Popen[str], mode: str) -> None:
    from ebpf.events.tools.runqlat import RunqLat

    with RunqLat(pid=sleeper.pid, mode=mode, per_process=True) as tool:
        _go(sleeper, "[time.sleep(0.001) for _ in range(60)]")()
        hist = tool.histogram()
    assert tool.mode == mode and hist.sections == [sleeper.pid] and hist.total >= 30


def test_runqlat_per_thread(sleeper: subprocess.Popen[str]) -> None:
    from ebpf.events.tools.runqlat import RunqLat

    work = ("import threading; t = threading.Thread(target=lambda: [time.sleep(0.001) for _ in range(60)]); "
            "t.start(); [time.sleep(0.001) for _ in range(60)]; t.join()")
    with RunqLat(pid=sleeper.pid, per_thread=True) as tool:
        _go(sleeper, work)()
        hist = tool.histogram()
    # the main thread (tid == pid) and one more thread of the same process, each with its own waits
    assert len(hist.sections) == 2 and sleeper.pid in hist.sections, hist.sections
    assert all(hist.section(tid).total >= 30 for tid in hist.sections)
    with pytest.raises(EBPFError, match="not both"):
        RunqLat(per_thread=True, per_process=True)


def test_runqlat_auto_falls_back_to_raw_tracepoints(monkeypatch: pytest.MonkeyPatch) -> None:
    """A kernel refusing tp_btf (EPERM here, mocked: this one allows it) leaves runqlat on raw tracepoints."""
    import errno

    from ebpf.core.errors import BPFSyscallError
    from ebpf.events import tracing
    from ebpf.events.tools.runqlat import RunqLat

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise BPFSyscallError(errno.EPERM, "BPF_PROG_LOAD")

    monkeypatch.setattr(tracing, "load_tracing_program", refuse)
    with RunqLat() as tool:
        assert tool.mode == "raw_tp"
        deadline = time.monotonic() + 10
        while tool.histogram().total == 0 and time.monotonic() < deadline:
            time.sleep(0.05)  # the machine keeps switching tasks: a wait on a condition, bounded
        assert tool.histogram().total > 0


def test_runqlat_stops_cleanly_on_sigterm() -> None:
    import select

    proc = _start("trace", "runqlat", "-P", "--interval", "0.2")
    assert proc.stdout is not None
    seen, deadline = "", time.monotonic() + 30
    while "pid = " not in seen and time.monotonic() < deadline:  # a first interval printed: it is running
        if select.select([proc.stdout], [], [], 1)[0]:
            seen += proc.stdout.readline()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "pid = " in seen
    assert "Traceback" not in err


class _SigtermOnWrite:
    """A stdout that sends this process a real SIGTERM while the column header is written."""

    def __init__(self) -> None:
        self.text = ""

    def write(self, text: str) -> int:
        self.text += text
        if text.startswith("PID") and signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, signal.SIG_IGN):
            signal.raise_signal(signal.SIGTERM)  # only once the tool's own handler is in place
        return len(text)

    def flush(self) -> None:
        pass


def test_sigterm_right_after_the_tracing_line_is_a_clean_stop(monkeypatch: pytest.MonkeyPatch) -> None:
    from ebpf.events.tools._common import run_event_tool

    out = _SigtermOnWrite()
    monkeypatch.setattr(sys, "stdout", out)
    try:
        rc = run_event_tool(iter(()), "nothing", None, False, (("PID", 7), ("COMM", 0)), lambda e: [], lambda e: {})
    except KeyboardInterrupt:
        pytest.fail("the SIGTERM escaped as KeyboardInterrupt (the CLI would exit 130)")
    assert rc == 0 and out.text.startswith("PID")
    assert signal.getsignal(signal.SIGTERM) is not None  # the previous handler is back


def test_histogram_tool_live_view_on_a_terminal() -> None:
    """On a terminal a histogram tool redraws a rich table while it runs (plain text without rich),
    then prints bcc's layout."""
    import importlib.util
    import pty

    pid, fd = pty.fork()
    if pid == 0:  # the child: the tool with the pty as its terminal
        os.environ.update(_env())
        os.execv(sys.executable, [sys.executable, "-m", "ebpf.core.cli", "trace", "runqlat", "--duration", "1.5"])
    out = b""
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO once the child has exited
            break
        if not chunk:
            break
        out += chunk
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    text = out.decode("utf-8", "replace")
    assert os.waitstatus_to_exitcode(status) == 0, text
    assert "usecs               : count     distribution" in text
    assert ("█" in text) == (importlib.util.find_spec("rich") is not None)


def _have_loop_devices() -> None:
    if not os.path.exists("/dev/loop-control") or shutil.which("losetup") is None:
        raise UnsupportedFeatureError("loop block devices (/dev/loop-control and losetup)")


@pytest.fixture
def loop_device() -> Iterator[str]:
    require(_have_loop_devices)
    with tempfile.TemporaryDirectory() as d:
        image = os.path.join(d, "disk.img")
        with open(image, "wb") as fh:
            fh.truncate(8 << 20)
        dev = subprocess.run(["losetup", "-f", "--show", "--direct-io=on", image], capture_output=True, text=True,
                             check=True).stdout.strip()
        try:
            yield dev
        finally:
            subprocess.run(["losetup", "-d", dev], check=False)


def test_biolatency_sees_reads_from_a_loop_device(loop_device: str) -> None:
    def reads() -> None:
        fd = os.open(loop_device, os.O_RDONLY | os.O_DIRECT)
        buf = mmap.mmap(-1, 4096)  # page aligned, as O_DIRECT wants
        try:
            for i in range(64):
                os.preadv(fd, [buf], i * 65536)
        finally:
            os.close(fd)
            buf.close()

    name = os.path.basename(loop_device)
    (hist,) = _json_lines(_run_tool(["trace", "biolatency", "--disk", name, "--json", "--duration", "2"], reads))
    assert hist["total"] >= 64
    per_disk = _run_tool(["trace", "biolatency", "-D", "--duration", "2"], reads)
    assert f"disk = {name}\n     usecs" in per_disk


def _direct_reads(dev: str, count: int = 64) -> None:
    fd = os.open(dev, os.O_RDONLY | os.O_DIRECT)
    buf = mmap.mmap(-1, 4096)  # page aligned, as O_DIRECT wants
    try:
        for i in range(count):
            os.preadv(fd, [buf], i * 65536)
    finally:
        os.close(fd)
        buf.close()


def test_biolatency_pid_counts_this_process_not_a_child(loop_device: str) -> None:
    from ebpf.events.tools.biolatency import BioLatency

    with BioLatency(disk=os.path.basename(loop_device), pid=os.getpid()) as tool:
        subprocess.run([sys.executable, "-c", "import os, mmap\n"
                        f"fd = os.open({loop_device!r}, os.O_RDONLY | os.O_DIRECT); b = mmap.mmap(-1, 4096)\n"
                        "for i in range(32): os.preadv(fd, [b], i * 65536)"], check=True)
        assert tool.to_dict()["total"] == 0
        _direct_reads(loop_device)
        assert tool.to_dict()["total"] >= 64


def test_biolatency_per_flags_names_reads_and_writes(loop_device: str) -> None:
    from ebpf.events.tools.biolatency import BioLatency, flags_name

    def io() -> None:
        _direct_reads(loop_device, 16)
        fd = os.open(loop_device, os.O_WRONLY | os.O_DIRECT)
        buf = mmap.mmap(-1, 4096)
        try:
            for i in range(8):
                os.pwritev(fd, [buf], i * 65536)
        finally:
            os.close(fd)
            buf.close()

    with BioLatency(disk=os.path.basename(loop_device), per_flags=True) as tool:
        io()
        totals = {name: section["total"] for name, section in tool.to_dict()["sections"].items()}
    assert sum(n for name, n in totals.items() if name.endswith("Read")) == 16, totals
    assert sum(n for name, n in totals.items() if name.endswith("-Write") or name == "Write") == 8, totals
    assert flags_name(1) == "Write" and flags_name(0) == "Read"  # REQ_OP_WRITE, REQ_OP_READ
    text = _run_tool(["trace", "biolatency", "-F", "--disk", os.path.basename(loop_device), "--duration", "2"], io)
    assert re.search(r"^flags = \S*Read$", text, re.M) and re.search(r"^flags = \S*Write$", text, re.M), text


def _use_mq_deadline(dev: str) -> None:
    path = f"/sys/block/{os.path.basename(dev)}/queue/scheduler"
    try:
        with open(path, "w") as fh:
            fh.write("mq-deadline")
    except OSError as exc:
        raise UnsupportedFeatureError("the mq-deadline I/O scheduler", reason=f"{path}: {exc}") from None


def test_biolatency_queued_starts_at_insert(loop_device: str) -> None:
    from ebpf.core.links import enable_stats
    from ebpf.events.tools.biolatency import BioLatency

    require(lambda: _use_mq_deadline(loop_device))  # a scheduler queue: every request is inserted, then issued
    with enable_stats(), BioLatency(disk=os.path.basename(loop_device), queued=True) as tool:
        _direct_reads(loop_device)
        assert tool.programs["block_rq_insert"].info().run_cnt >= 64
        assert tool.to_dict()["total"] == 64  # one latency per request: issue does not restart the clock
    (hist,) = _json_lines(_run_tool(["trace", "biolatency", "-Q", "--pid", str(os.getpid()), "--disk",
                                     os.path.basename(loop_device), "--json", "--duration", "2"],
                                    lambda: _direct_reads(loop_device)))
    assert hist["total"] >= 64


def test_execsnoop_one_line_per_exec_with_argv_and_failures_folded(tmp_path: Path) -> None:
    marker = tmp_path / "ebpf-execsnoop-marker"
    marker.symlink_to(shutil.which("true") or "/bin/true")

    def launch() -> None:
        subprocess.run([str(marker), "an arg", "two"], check=True)
        with pytest.raises(FileNotFoundError):  # searches every $PATH directory: one execve each
            subprocess.run(["no-such-command-ebpf-test", "x"])

    events = _json_lines(_run_tool(["trace", "execsnoop", "-x", "--pid", str(os.getpid()), "--json",
                                    "--duration", "2"], launch))
    ok = [e for e in events if e["argv"] == [str(marker), "an arg", "two"]]
    assert len(ok) == 1 and ok[0]["ret"] == 0 and ok[0]["ppid"] == os.getpid()
    failed = [e for e in events if e["argv"] and e["argv"][0] == "no-such-command-ebpf-test"]  # type: ignore[index]
    assert len(failed) == 1 and failed[0]["ret"] == -2 and failed[0]["error"] == "ENOENT"


def test_execsnoop_and_opensnoop_bcc_filters(tmp_path: Path) -> None:
    marker = tmp_path / "ebpf-snoopfilter-marker"
    marker.symlink_to(shutil.which("true") or "/bin/true")
    target = tmp_path / "opened.txt"
    target.write_text("x")

    def launch() -> None:
        for arg in ("keep-me", "drop-me"):
            subprocess.run([str(marker), arg], check=True)

    pid = str(os.getpid())
    events = _json_lines(_run_tool(["trace", "execsnoop", "--pid", pid, "-n", "snoopfilter", "-l", "keep-",
                                    "-u", str(os.getuid()), "-t", "-T", "--json", "--duration", "1.5"], launch))
    assert [e["argv"] for e in events] == [[str(marker), "keep-me"]]
    assert isinstance(events[0]["time"], float) and 0 <= events[0]["time"] < 60  # -t: seconds since start
    assert re.fullmatch(r"\d\d:\d\d:\d\d", events[0]["clock"])  # -T: wall clock
    text = _run_tool(["trace", "execsnoop", "--pid", pid, "-n", "snoopfilter", "-q", "--duration", "1.5"], launch)
    assert f'"{marker}" "keep-me"' in text and f'"{marker}" "drop-me"' in text, text
    from ebpf.events.tools.execsnoop import ExecEvent

    assert ExecEvent(1, 1, 0, "x", 0, "/x", ("/x", 'say "hi"')).quoted_args == '"/x" "say \\"hi\\""'
    other_uid = str(os.getuid() + 4242)
    assert _json_lines(_run_tool(["trace", "execsnoop", "--pid", pid, "-u", other_uid, "--json", "--duration", "1.5"],
                                 launch)) == []
    text = _run_tool(["trace", "opensnoop", "--pid", pid, "-n", "^(python|pytest)", "-T", "--duration", "1.5"],
                     lambda: target.read_text())
    assert text.splitlines()[0].split()[:2] == ["TIME(s)", "PID"] and str(target) in text
    assert str(target) not in _run_tool(["trace", "opensnoop", "--pid", pid, "-n", "^nomatch$", "--duration", "1.5"],
                                        lambda: target.read_text())
    appended = tmp_path / "appended.txt"

    def read_and_append() -> None:
        target.read_text()
        with open(appended, "a") as fh:
            fh.write("x")

    text = _run_tool(["trace", "opensnoop", "--pid", pid, "-f", "O_APPEND", "--duration", "1.5"], read_and_append)
    assert str(appended) in text and str(target) not in text
    # the histogram tools' -T: the wall-clock time before each printout, as bcc's
    text = _run_tool(["trace", "runqlat", "-T", "--pid", pid, "--duration", "1"])
    assert re.fullmatch(r"\d\d:\d\d:\d\d", text.splitlines()[0]), text


def test_opensnoop_fd_error_and_flag_names(tmp_path: Path) -> None:
    target = tmp_path / "present.txt"
    target.write_text("x")
    missing = tmp_path / "missing.txt"
    fds: list[int] = []

    def opens() -> None:
        fds.append(os.open(target, os.O_RDONLY | os.O_CLOEXEC))
        os.close(fds[0])
        with pytest.raises(FileNotFoundError):
            os.open(missing, os.O_WRONLY | os.O_APPEND)

    events = _json_lines(_run_tool(["trace", "opensnoop", "--pid", str(os.getpid()), "--json", "--duration", "1.5"],
                                   opens))
    ok = [e for e in events if e["path"] == str(target)]
    bad = [e for e in events if e["path"] == str(missing)]
    assert ok and ok[0]["fd"] == fds[0] and ok[0]["error"] == "" and ok[0]["flag_names"] == "O_RDONLY|O_CLOEXEC"
    assert bad and bad[0]["fd"] is None and bad[0]["error"] == "ENOENT" and bad[0]["errno"] == 2
    assert "O_WRONLY" in str(bad[0]["flag_names"]) and "O_APPEND" in str(bad[0]["flag_names"])
    assert all(e["pid"] == os.getpid() for e in events)

    failed_only = _run_tool(["trace", "open", "-x", "--pid", str(os.getpid()), "--duration", "1.5"], opens)
    lines = failed_only.splitlines()
    assert lines[0].split() == ["PID", "UID", "COMM", "FD", "ERR", "FLAGS", "PATH"]
    assert any(str(missing) in line and "ENOENT" in line and " -1 " in line for line in lines)
    assert not any(str(target) in line for line in lines)


def test_printk_command_reads_our_lines() -> None:
    from ebpf.core import asm
    from ebpf.core.programs import load_program

    def _printk_program(message: bytes) -> list[object]:
        msg = message + b"\0" * (8 - len(message) % 8)
        insns: list[object] = []
        for i in range(0, len(msg), 8):
            insns += [asm.ld_imm64(asm.R1, int.from_bytes(msg[i:i + 8], "little")),
                      asm.stx_mem("dw", asm.R10, asm.R1, i - len(msg))]
        return [*insns, asm.mov64(asm.R1, asm.R10), asm.add64(asm.R1, -len(msg)), asm.mov64(asm.R2, len(message) + 1),
                asm.mov64(asm.R3, 4242), asm.call("trace_printk"), asm.mov64(asm.R0, 0), asm.exit_()]

    with load_program(prog_type="raw_tracepoint", insns=_printk_program(b"cli-printk %d")) as prog:
        def fire() -> None:
            for _ in range(3):
                prog.test_run(ctx=bytes(8))

        tid = threading.get_native_id()  # test_run runs here: the lines carry this thread's id
        lines = _json_lines(_run_tool(["trace", "printk", "--pid", str(tid), "--json", "--duration", "1.5"],
                                      fire))
    assert [line["msg"] for line in lines] == ["cli-printk 4242"] * 3
    assert {line["pid"] for line in lines} == {tid}


def _list(*argv: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "ebpf.core.cli", "list", *argv], env=_env(), text=True,
                          capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_list_tracepoints_kfuncs_helpers_lsm() -> None:
    (tp,) = [t for t in _json_lines(_list("tracepoints", "syscalls:sys_enter_openat", "-v", "--json"))
             if t["name"] == "syscalls:sys_enter_openat"]
    assert {"name": "filename", "type": "const char *", "offset": 24, "size": 8, "signed": False} in tp["fields"]  # type: ignore[operator]
    assert "sched:sched_switch" in _list("tracepoints", "sched:*").split()
    assert {"name": "bpf_map_lookup_elem", "id": 1} in _json_lines(_list("helpers", "map_lookup", "--json"))
    assert "file_open" in _list("lsm", "file_").split()


def test_list_kfuncs() -> None:
    from ebpf.events.kfuncs import list_kfuncs

    require(list_kfuncs, "vmlinux")  # the kernel's BTF must carry bpf_kfunc decl tags (pahole >= 1.26)
    assert "bpf_task_acquire(" in _list("kfuncs", "--grep", "bpf_task_")  # ebpf.events._list_cli's, same group


def test_list_usdt_of_a_binary(tmp_path: Path) -> None:
    from ebpf.core.testing import build_host_program

    target = build_host_program(Path(__file__).parent / "usdt_target.c", str(tmp_path / "usdt_target"))
    rows = _json_lines(_list("usdt", target, "--json"))
    assert any(r["name"] == "test:args4" for r in rows)


def test_bad_arguments_fail_before_loading() -> None:
    from ebpf.core.cli import main

    assert main(["trace", "funclatency", "libc.so.6:"]) == 1
    assert main(["trace", "syscount", "--syscall", "no_such_syscall"]) == 1
    assert main(["trace", "syscount", "-e", "ENOSUCHERROR"]) == 1
    assert main(["trace", "execsnoop", "-n", "(unclosed"]) == 1
    assert main(["trace", "biolatency", "-D", "-F", "--duration", "1"]) == 1
    assert main(["trace", "runqlat", "-P", "-L", "--duration", "1"]) == 1
    assert main(["trace", "opensnoop", "-f", "O_RDONLY", "--duration", "1"]) == 1
    assert main(["trace", "biolatency", "--disk", "no-such-disk"]) == 1
    assert main(["trace", "runqlat", "--duration", "-1"]) == 1
    assert main(["trace", "funclatency", "libc.so.6:no_such_function_xyz", "--duration", "1"]) == 1


def test_tool_classes_release_everything() -> None:
    from ebpf.core.testing import open_fds
    from ebpf.events.tools.funclatency import FuncLatency
    from ebpf.events.tools.opensnoop import OpenSnoop
    from ebpf.events.tools.syscount import SysCount

    before = open_fds()
    with SysCount(pid=os.getpid()), OpenSnoop(pid=os.getpid()):
        pass
    with pytest.raises(Exception, match="no_such_function"):
        FuncLatency("libc.so.6:no_such_function_xyz")
    assert open_fds() == before



