"""Cold start: a fresh process loading an object (open, CO-RE, load every program) vs libbpf.

Prints one JSON line per figure (``nox -s bench``):

- ``coldstart_load``, per object: median wall time of a fresh ``python -c "load_elf(obj).close()"``
  and of a small C program doing ``bpf_object__open_file`` + ``bpf_object__load`` with the
  system's libbpf (built here; ``apt-get install libbpf-dev`` is tried when the headers are
  missing), runs interleaved, and the ratio; also the CPU time (user + system) of the same runs
  and its ratio (``cpu_ratio``: on a machine busy with other work the wall time is mostly
  waiting); then ``coldstart_load_median`` over the objects with CO-RE relocations that the
  system's libbpf loads (the goal: at most 4x), and ``coldstart_load_median_all`` over every
  object (with the three without CO-RE, where libbpf reads no kernel BTF and takes ~2 ms, so the
  ratio shows a fresh interpreter's own cost).  An object the system's libbpf refuses (libbpf
  1.1 passes a ring buffer's ``__type(value, ...)`` size to the kernel: lt_opensnoop,
  lt_sigsnoop) is printed with the error and left out of both medians.
- ``coldstart_import``: ``import ebpf.core`` and every package, each in a fresh process, in
  milliseconds above a bare interpreter (medians of interleaved runs), with ``-X importtime``'s
  cumulative figure for the same imports.
- ``coldstart_execsnoop``: ``ebpf trace execsnoop`` from process start to attached (its
  "tracing ..." line) and to the line of an exec run right then, against libbpf-tools'
  ``execsnoop`` (its header line) built from a bcc checkout named by ``EBPF_BENCH_BCC_SRC``
  (clang and bpftool needed; bcc's code is only compiled here, never copied into this tree).

Byte code is cached in a private ``PYTHONPYCACHEPREFIX`` and warmed first (an installed
package has its ``.pyc`` files; a source checkout under ``PYTHONDONTWRITEBYTECODE`` would
otherwise be compiled on every run).  ``EBPF_BENCH_COLD_RUNS`` sets the runs per figure (7).
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
FIXTURES = HERE.parent / "tests" / "fixtures"
RUNS = int(os.environ.get("EBPF_BENCH_COLD_RUNS", "7"))
# At least ten objects with CO-RE relocations, of different kinds, built by clang as
# libbpf-tools are (the goal's set: libbpf reads the kernel's BTF for them too); then objects
# without CO-RE (libbpf reads no kernel BTF for those: they show the floor of a fresh process).
OBJECTS = [
    ("lt_syscount", True),  # tracepoints, hash maps, CO-RE
    ("lt_opensnoop", True),  # tracepoints, ring buffer, CO-RE flavours
    ("lt_execsnoop", True),  # tracepoints, perf buffer, CO-RE
    ("lt_exitsnoop", True),  # tracepoint, ring buffer, CO-RE
    ("lt_runqlat", True),  # tp_btf, histograms
    ("lt_sigsnoop", True),  # tp_btf, ring buffer, weak kfunc
    ("lt_kprobes", True),  # kprobe, kretprobe, ksyscall, perf buffer, kconfig
    ("lt_oomkill", True),  # kprobe, perf buffer, CO-RE
    ("lt_uprobe", True),  # uprobe, uretprobe
    ("lt_tcpstates", True),  # tracepoint, ring buffer, CO-RE
    ("lt_profile", True),  # perf_event, stack map, CO-RE
    ("core", True),  # raw_tp, many CO-RE relocation kinds
    ("ringbuf_tp", False),  # tracepoint, ring buffer, globals
    ("usdt_args", False),  # usdt (uprobe) programs
    ("xdp_counter", False),  # xdp
]

C_LOADER = r"""
#include <stdio.h>
#include <bpf/libbpf.h>

static int quiet(enum libbpf_print_level level, const char *fmt, va_list ap) { return 0; }

int main(int argc, char **argv)
{
	struct bpf_object *obj;
	int err;

	libbpf_set_print(quiet);
	obj = bpf_object__open_file(argv[1], NULL);
	if (!obj || libbpf_get_error(obj))
		return 2;
	err = bpf_object__load(obj);
	bpf_object__close(obj);
	return err ? 3 : 0;
}
"""


def emit(**fields: object) -> None:
    """One JSON line."""
    fields.setdefault("python", f"{platform.python_implementation()} {platform.python_version()} ({sys.executable})")
    print(json.dumps(fields), flush=True)


def build_c_loader(workdir: Path) -> tuple[Path | None, str]:
    """The libbpf loader binary, or None and why not."""
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if cc is None:
        return None, "no C compiler"
    if not Path("/usr/include/bpf/libbpf.h").exists() and shutil.which("apt-get") and os.geteuid() == 0:
        subprocess.run(["apt-get", "install", "-y", "libbpf-dev"], capture_output=True, timeout=600, check=False)
    src, exe = workdir / "coldload.c", workdir / "coldload"
    src.write_text(C_LOADER)
    out = subprocess.run([cc, "-O2", "-o", str(exe), str(src), "-lbpf"], capture_output=True, text=True, check=False)
    if out.returncode:
        return None, f"cannot build the libbpf loader: {out.stderr.strip()[-300:]}"
    return exe, ""


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, int, str]:
    """Wall time (ms) of one fresh process, its exit status and the end of its stderr."""
    ms, _cpu, rc, err = timed_cpu(argv, env)
    return ms, rc, err


def timed_cpu(argv: list[str], env: dict[str, str]) -> tuple[float, float, int, str]:
    """Wall time and CPU time (user + system, ms) of one fresh process, its exit status and the end of its stderr.

    On a machine shared with other work, the wall time mostly measures waiting for a CPU; the
    CPU time is what the process itself cost, and stays put however busy the machine is.
    """
    t0 = time.perf_counter()
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        ms = (time.perf_counter() - t0) * 1000
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        text = err.read().decode(errors="replace").strip()[-300:]
    return ms, (usage.ru_utime + usage.ru_stime) * 1000, proc.returncode, text


def python_env(cache: Path) -> dict[str, str]:
    """The environment for the Python runs: byte code cached (in ``cache``), plugins as installed."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(cache)
    return env


def bench_loads(loader: Path | None, why: str, env: dict[str, str]) -> None:
    """``coldstart_load`` lines and their median ratio."""
    ratios: dict[bool, list[float]] = {True: [], False: []}
    cpu_ratios: dict[bool, list[float]] = {True: [], False: []}
    for name, core in OBJECTS:
        path = FIXTURES / f"{name}.clang.o"
        if not path.exists():
            path = FIXTURES / f"{name}.o"
        py = [sys.executable, "-c", f"from ebpf.elf import load_elf; load_elf({str(path)!r}).close()"]
        timed(py, env)  # warm the byte code and the page cache
        py_ms: list[float] = []
        c_ms: list[float] = []
        py_cpu: list[float] = []
        c_cpu: list[float] = []
        errors = []
        for _ in range(RUNS):  # interleaved, so load changes on the machine hit both alike
            if loader is not None:
                ms, cpu, rc, err = timed_cpu([str(loader), str(path)], env)
                c_ms.append(ms)
                c_cpu.append(cpu)
                if rc:
                    errors.append(f"libbpf loader exit {rc}")
            ms, cpu, rc, err = timed_cpu(py, env)
            py_ms.append(ms)
            py_cpu.append(cpu)
            if rc:
                errors.append(f"python exit {rc}: {err}")
        fields: dict[str, object] = {"figure": "coldstart_load", "object": path.name, "core": core,
                                     "ebpf_ms": round(statistics.median(py_ms), 1)}
        if loader is not None:
            fields["libbpf_ms"] = round(statistics.median(c_ms), 1)
            fields["ratio"] = round(statistics.median(py_ms) / statistics.median(c_ms), 2)
            # CPU time (user + system) of the same runs: the ratio a busy machine does not skew.
            fields["ebpf_cpu_ms"] = round(statistics.median(py_cpu), 1)
            fields["libbpf_cpu_ms"] = round(statistics.median(c_cpu), 1)
            fields["cpu_ratio"] = round(statistics.median(py_cpu) / max(statistics.median(c_cpu), 0.1), 2)
        else:
            fields["libbpf"] = why
        if errors:
            fields["error"] = sorted(set(errors))[0]
        elif loader is not None:
            ratios[core].append(float(fields["ratio"]))  # type: ignore[arg-type]
            cpu_ratios[core].append(float(fields["cpu_ratio"]))  # type: ignore[arg-type]
        emit(**fields)
    if ratios[True]:  # the goal: objects with CO-RE relocations that libbpf loads here
        emit(figure="coldstart_load_median", objects=len(ratios[True]), core=True,
             ratio=round(statistics.median(ratios[True]), 2), cpu_ratio=round(statistics.median(cpu_ratios[True]), 2),
             goal="<= 4x libbpf")
    every, every_cpu = ratios[True] + ratios[False], cpu_ratios[True] + cpu_ratios[False]
    if ratios[False]:
        emit(figure="coldstart_load_median_all", objects=len(every), ratio=round(statistics.median(every), 2),
             cpu_ratio=round(statistics.median(every_cpu), 2))


IMPORTS = {
    "bare": "pass",
    "ebpf.core": "import ebpf.core",
    "all packages": "import ebpf.core, ebpf.elf, ebpf.events, ebpf.net, ebpf.security, ebpf.lang, ebpf.export",
}
GOALS = {"ebpf.core": 30, "all packages": 80}


def importtime_ms(code: str, env: dict[str, str]) -> float:
    """``-X importtime``'s cumulative milliseconds of the top-level ``ebpf`` imports of ``code``."""
    out = subprocess.run([sys.executable, "-X", "importtime", "-c", code], env=env, capture_output=True, text=True,
                         check=False)
    total = 0
    for line in out.stderr.splitlines():
        parts = line.split("|")
        if len(parts) == 3 and parts[2].startswith(" ebpf"):  # top level only (nested imports are indented)
            total += int(parts[1])
    return total / 1000


def bench_imports(env: dict[str, str]) -> None:
    """``coldstart_import`` lines: each import above a bare interpreter."""
    times: dict[str, list[float]] = {k: [] for k in IMPORTS}
    for code in IMPORTS.values():
        timed([sys.executable, "-c", code], env)  # warm
    for _ in range(RUNS * 2):
        for key, code in IMPORTS.items():
            times[key].append(timed([sys.executable, "-c", code], env)[0])
    bare = statistics.median(times["bare"])
    for key in ("ebpf.core", "all packages"):
        emit(figure="coldstart_import", what=key, bare_ms=round(bare, 1),
             above_bare_ms=round(statistics.median(times[key]) - bare, 1),
             importtime_ms=round(statistics.median(importtime_ms(IMPORTS[key], env) for _ in range(3)), 1),
             goal_ms=GOALS[key])


def build_execsnoop(workdir: Path) -> tuple[Path | None, str]:
    """libbpf-tools' execsnoop built from ``$EBPF_BENCH_BCC_SRC/libbpf-tools``, or None and why not."""
    src = os.environ.get("EBPF_BENCH_BCC_SRC")
    if not src:
        return None, "EBPF_BENCH_BCC_SRC (a bcc checkout) not set"
    tools = Path(src) / "libbpf-tools"
    bpftool = shutil.which("bpftool") or ("/usr/sbin/bpftool" if Path("/usr/sbin/bpftool").exists() else None)
    clang, cc = shutil.which("clang"), shutil.which("cc")
    if bpftool is None or clang is None or cc is None:
        return None, "bpftool, clang and cc are needed"
    out = workdir / "lt"
    out.mkdir()
    helpers = ["trace_helpers", "btf_helpers", "errno_helpers", "map_helpers", "uprobe_helpers", "compat"]
    for name in ["execsnoop.bpf.c", "execsnoop.c", "execsnoop.h", "compat.bpf.h", "core_fixes.bpf.h",
                 "maps.bpf.h", "bits.bpf.h", *(f"{h}.{x}" for h in helpers for x in "ch")]:
        if (tools / name).exists():
            shutil.copy(tools / name, out / name)
    steps = [
        f"{bpftool} btf dump file /sys/kernel/btf/vmlinux format c > vmlinux.h",
        f"{clang} -g -O2 -target bpf -D__TARGET_ARCH_x86 -I. -c execsnoop.bpf.c -o execsnoop.bpf.o",
        f"{bpftool} gen skeleton execsnoop.bpf.o > execsnoop.skel.h",
        f"{cc} -O2 -I. -o execsnoop execsnoop.c {' '.join(h + '.c' for h in helpers)} -lbpf -lelf -lz",
    ]
    for step in steps:
        res = subprocess.run(step, shell=True, cwd=out, capture_output=True, text=True, check=False)
        if res.returncode:
            return None, f"build failed: {step.split()[0]}: {res.stderr.strip()[-200:]}"
    return out / "execsnoop", ""


def _until(proc: subprocess.Popen[bytes], ready: bytes, nonce: bytes, deadline: float) -> tuple[float, float]:
    """Seconds until a line containing ``ready``, then until one containing ``nonce`` (an exec run then)."""
    import selectors

    t0 = time.perf_counter()
    sel = selectors.DefaultSelector()
    for stream in (proc.stdout, proc.stderr):
        assert stream is not None
        os.set_blocking(stream.fileno(), False)
        sel.register(stream, selectors.EVENT_READ)
    seen = b""
    t_ready = t_event = float("nan")
    while time.perf_counter() < deadline:
        for key, _ in sel.select(timeout=0.05):
            chunk = os.read(key.fd, 65536)
            seen += chunk
        if t_ready != t_ready and ready in seen:  # NaN: not ready yet
            t_ready = time.perf_counter() - t0
            subprocess.run(["/bin/true", nonce.decode()], check=False)
        if t_ready == t_ready and nonce in seen:
            t_event = time.perf_counter() - t0
            break
    sel.close()
    return t_ready * 1000, t_event * 1000


def bench_execsnoop(workdir: Path, env: dict[str, str]) -> None:
    """``coldstart_execsnoop``: start to attached and to the first event, ours vs libbpf-tools'."""
    import signal

    binary, why = build_execsnoop(workdir)
    ebpf_cli = shutil.which("ebpf", path=str(Path(sys.executable).parent)) or shutil.which("ebpf")
    if ebpf_cli is None:
        emit(figure="coldstart_execsnoop", error="no ebpf command")
        return
    ours = [ebpf_cli, "trace", "execsnoop"]
    theirs = ["stdbuf", "-oL", str(binary)] if binary is not None else None
    runs: dict[str, list[tuple[float, float]]] = {"ebpf": [], "libbpf_tools": []}
    for i in range(-1, RUNS):  # run -1 warms the byte code and the page cache
        for key, argv, ready in (("ebpf", ours, b"tracing execsnoop"), ("libbpf_tools", theirs, b"PCOMM")):
            if argv is None:
                continue
            proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            try:
                times = _until(proc, ready, f"coldstart-{os.getpid()}-{i}".encode(), time.perf_counter() + 30)
                if i >= 0:
                    runs[key].append(times)
            finally:
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
    fields: dict[str, object] = {"figure": "coldstart_execsnoop"}
    for key, values in runs.items():
        if values:
            fields[f"{key}_attached_ms"] = round(statistics.median(v[0] for v in values), 1)
            fields[f"{key}_first_event_ms"] = round(statistics.median(v[1] for v in values), 1)
    if runs["libbpf_tools"]:
        fields["ratio_attached"] = round(float(fields["ebpf_attached_ms"]) / float(fields["libbpf_tools_attached_ms"]), 2)  # type: ignore[arg-type]
        fields["goal"] = "<= 4x libbpf-tools"
    else:
        fields["libbpf_tools"] = why
    emit(**fields)


def main() -> int:
    """Run the cold-start benchmarks."""
    with tempfile.TemporaryDirectory(prefix="ebpf-coldstart-") as tmp:
        work = Path(tmp)
        env = python_env(work / "pycache")
        loader, why = build_c_loader(work)
        bench_imports(env)
        bench_execsnoop(work, env)
        bench_loads(loader, why, env)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
