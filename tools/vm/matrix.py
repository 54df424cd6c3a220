#!/usr/bin/env python3
"""The kernel test matrix: one test set on the host kernel and inside each Debian kernel, one table of results.

    python3 tools/vm/matrix.py                        # host + Debian 6.1 + 6.12, the whole suite
    python3 tools/vm/matrix.py --vm-set               # only what skips on the host (and its probes)
    python3 tools/vm/matrix.py --kernel 6.12 --tests packages/ebpf-core/tests/test_trampolines.py
    python3 tools/vm/matrix.py --sessions events,security -- -x     # chosen packages; after -- : pytest
    python3 tools/vm/matrix.py --jobs 3               # VMs at once (default 2; output kept in their run dirs)
    nox -s vm [-- <the same options>]                 # the same, from a fresh machine (installs everything)

It installs what is missing (apt: qemu-system-x86, kmod, busybox-static; virtme-ng into the cache's
venv), downloads and extracts the kernels once, runs pytest on the host, then boots each kernel once per
package (a big package's files cut into chunks; vng under QEMU, 1 vCPU), ``--jobs`` boots at a time, and
runs the same pytest command inside with the same interpreter.  Every run writes a JUnit XML file into its run directory (shared read-write with the guest); the table is
built from those files, never from vng's exit status (255 under TCG even after a clean run).

Exit status 0 when every kernel ran the set without a failure or error, 1 otherwise (a VM that timed
out or gave no result counts as a failure), 2 on a setup problem.  See tools/vm/README.md.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run as vm  # tools/vm/run.py, the single-VM harness

#: --sessions names -> test directories.
SESSIONS = {d.parent.name.removeprefix("ebpf-"): f"packages/{d.parent.name}/tests"
            for d in sorted(vm.CHECKOUT.glob("packages/ebpf-*/tests"), key=lambda d: d.parent.name != "ebpf-core")}
if (vm.CHECKOUT / "tests").is_dir():  # the cross-package tests (nox -s integration) are part of the suite too
    SESSIONS["integration"] = "tests"
#: Outcome columns in pytest's own order of its summary line.
OUTCOMES = ("failed", "error", "passed", "skipped")


@dataclass
class Counts:
    """Test outcomes of one module on one kernel."""

    passed: int = 0
    failed: int = 0
    error: int = 0
    skipped: int = 0

    def add(self, other: Counts) -> None:
        """Add ``other``'s counts to these."""
        for name in OUTCOMES:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def cell(self) -> str:
        """"12 passed", "1 failed, 10 passed, 2 skipped"; "-" when nothing ran."""
        parts = [f"{n} {name}{'s' if name == 'error' and n > 1 else ''}" for name in OUTCOMES if (n := getattr(self, name))]
        return ", ".join(parts) or "-"


@dataclass
class KernelRun:
    """One column of the matrix: where the tests ran and what came back."""

    label: str
    kind: str  # "host" or "vm"
    series: str
    release: str = ""
    image: str = ""
    exit: int | None = None  # pytest's status (from the rc file in a VM); None: no result
    seconds: float = 0.0
    rundir: str = ""
    junit: str = ""
    status: str = "not run"
    modules: dict[str, Counts] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)  # failed/errored test ids
    kernel_trouble: list[str] = field(default_factory=list)  # Oops/panic/BUG lines from the console
    units: list[dict[str, object]] = field(default_factory=list)  # one boot each: name, exit, seconds, status

    def total(self) -> Counts:
        """The counts over every module."""
        total = Counts()
        for counts in self.modules.values():
            total.add(counts)
        return total

    @property
    def ok(self) -> bool:
        """Ran, wrote its JUnit file, and nothing failed or errored."""
        total = self.total()
        return self.exit in (0, 5) and bool(self.junit) and not total.failed and not total.error


def log(msg: str) -> None:
    """A harness message on stderr (stdout carries the pytest output and the table)."""
    vm.log(msg)


# --- reading results ----------------------------------------------------------------------------------------


def module_of(case: ET.Element) -> str:
    """The test file of a JUnit ``testcase`` (``file`` with junit_family=xunit1; else from the classname)."""
    path = case.get("file")
    if path:
        return path
    # a collection error: classname empty, name is the module's dotted path
    dotted = case.get("classname") or case.get("name") or "?"
    parts = dotted.split(".")
    while parts and parts[-1][:1].isupper():  # drop test classes
        parts.pop()
    return "/".join(parts) + ".py" if parts else dotted


def read_junit(path: Path) -> tuple[dict[str, Counts], list[str]]:
    """Per-module counts and the failed/errored test ids of a pytest JUnit XML file.

    :raises ET.ParseError: when the file is not XML (a run cut off while writing it).
    """
    modules: dict[str, Counts] = {}
    problems: list[str] = []
    seen: set[tuple[str, str]] = set()  # a test that failed, then errored in teardown, has two elements
    for case in ET.parse(path).getroot().iter("testcase"):
        module = module_of(case)
        counts = modules.setdefault(module, Counts())
        cls = (case.get("classname") or "").rsplit(".", 1)[-1]
        test_id = f"{module}::{cls + '::' if cls[:1].isupper() else ''}{case.get('name', '?')}"
        key = (case.get("classname", ""), case.get("name", "?"))
        first = key not in seen
        seen.add(key)
        error = case.find("error")
        if error is not None:  # collection, setup or teardown error
            counts.error += 1
            problems.append(f"ERROR {test_id}")
        if case.find("failure") is not None:
            counts.failed += 1
            problems.append(f"FAILED {test_id}")
        elif error is not None and not (first and error.get("message", "").startswith("failed on teardown")):
            pass  # never ran, or a second element for a test that failed and then errored in teardown
        elif case.find("skipped") is not None:
            counts.skipped += 1
        else:
            counts.passed += 1  # as pytest counts it: a test that passed, then its teardown errored, is both
    return modules, problems


_VERBOSE = re.compile(r"^(\S+\.py)::(\S+) (PASSED|FAILED|SKIPPED|ERROR|XFAIL|XPASS)")


def read_verbose(output: Path) -> tuple[dict[str, Counts], list[str]]:
    """Per-module counts from ``pytest -v`` lines of a run that wrote no JUnit file, and which test was running."""
    modules: dict[str, Counts] = {}
    problems: list[str] = []
    last = ""
    for line in output.read_text(errors="replace").splitlines():
        m = _VERBOSE.match(line)
        if m is None:
            if "::" in line and line.split()[0].count("::"):
                last = line.split()[0]
            continue
        module, name, outcome = m.groups()
        counts = modules.setdefault(module, Counts())
        if outcome == "PASSED" or outcome == "XPASS":
            counts.passed += 1
        elif outcome in ("SKIPPED", "XFAIL"):
            counts.skipped += 1
        elif outcome == "FAILED":
            counts.failed += 1
            problems.append(f"FAILED {module}::{name}")
        else:
            counts.error += 1
            problems.append(f"ERROR {module}::{name}")
        last = ""
    if last:
        problems.append(f"cut off while running {last}")
    return modules, problems


def kernel_trouble(console: Path) -> list[str]:
    """The Oops/panic/BUG lines of a VM's console, each with the last test line before it (which test hit it)."""
    if not console.exists():
        return []
    found: list[str] = []
    last_test = ""
    for line in console.read_text(errors="replace").splitlines():
        if "::" in line and not vm.KERNEL_LINE.match(line):
            last_test = line.strip()
        elif vm.KERNEL_LINE.match(line) and re.search(r"Oops|Kernel panic|BUG:|general protection fault", line):
            found.append(f"{line.strip()}  (during: {last_test or 'before the first test'})")
    return found


#: Written by the matrix into a run directory when that run ends: its exit status and seconds, for --report.
STATUS_FILE = "status.json"


def save_status(result: KernelRun, rundir: Path) -> None:
    """Record how the run in ``rundir`` ended (exit status, seconds): ``--report`` reads it back."""
    if rundir.is_dir():
        (rundir / STATUS_FILE).write_text(json.dumps({"exit": result.exit, "seconds": round(result.seconds, 1)}))


def load_status(result: KernelRun, rundir: Path) -> None:
    """Exit status and seconds of a finished run for ``--report``, from what its run directory holds.

    The matrix's status file when it wrote one; else the guest's ``rc`` (or, on the host, the JUnit
    file's verdict) and pytest's own seconds; a run directory with neither was cut off when the
    whole run was stopped (exit 130), not timed out.
    """
    status = rundir / STATUS_FILE
    if status.exists():
        data = json.loads(status.read_text())
        result.exit, result.seconds = data.get("exit"), float(data.get("seconds") or 0.0)
        return
    rc, junit = rundir / "rc", rundir / "junit.xml"
    if rc.exists():
        result.exit = int(rc.read_text().strip() or "125")
    elif junit.exists() and result.kind == "host":  # the host writes no rc: pytest's verdict is in the file
        try:
            root = ET.parse(junit).getroot()
            suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
            bad = sum(int(x.get("failures") or 0) + int(x.get("errors") or 0) for x in suites)
            result.exit = 1 if bad else 0
            result.seconds = sum(float(x.get("time") or 0.0) for x in suites)
        except ET.ParseError:
            result.exit = 130
        return
    else:
        result.exit = 130
    console = rundir / "console.txt"
    said = re.findall(r"== command exited \d+ after ([0-9.]+)s", console.read_text(errors="replace")) \
        if console.exists() else []
    if said:
        result.seconds = float(said[-1])


def collect(result: KernelRun, rundir: Path) -> None:
    """Fill ``result`` from the files a run left in ``rundir`` (junit.xml, rc, uname, console.txt)."""
    junit = rundir / "junit.xml"
    if junit.exists():
        try:
            result.modules, result.problems = read_junit(junit)
            result.junit = str(junit)
        except ET.ParseError as exc:
            result.problems.append(f"unreadable {junit}: {exc}")
    elif (rundir / "output.txt").exists():  # cut off (timed out): what pytest -v printed so far
        result.modules, result.problems = read_verbose(rundir / "output.txt")
    uname = rundir / "uname"
    if uname.exists():
        result.release = uname.read_text().strip()
    result.kernel_trouble = kernel_trouble(rundir / "console.txt")


def describe(result: KernelRun, timeout: int) -> str:
    """The status cell: "ok", "FAILED (pytest exit 1)", "no result (VM timed out after 600 s)"."""
    if result.exit == 124:
        return f"no result (timed out after {timeout} s)"
    if result.exit == 130:
        return "no result (the run was stopped while this boot ran)"
    if result.exit is None or result.exit == 125:
        return "no result (VM ended without a status: crash?)"
    if not result.junit:
        return f"no result (no JUnit file; exit {result.exit})"
    if result.ok:
        return "ok"
    return f"FAILED (pytest exit {result.exit})"


# --- running ------------------------------------------------------------------------------------------------


def pytest_args(tests: list[str], junit: Path, extra: list[str]) -> list[str]:
    """The arguments after ``python -m pytest -p ebpf.core.testing ...`` for one run."""
    # xunit1 puts each testcase's file in the XML: the table's rows
    return [*tests, "-v", "-rs", f"--junitxml={junit}", "-o", "junit_family=xunit1", *extra]


def installed_plugin(python: str) -> bool:
    """Whether ``python``'s environment has ebpf-core installed (its pytest11 entry point loads ebpf.core.testing)."""
    probe = ("import importlib.metadata as m; "
             "raise SystemExit(not any(ep.value == 'ebpf.core.testing' for ep in m.entry_points(group='pytest11')))")
    return subprocess.run([python, "-c", probe], capture_output=True).returncode == 0


def apt_prerequisites(tests: list[str]) -> dict[str, tuple[str, ...]]:
    """The Debian packages the selected tests need: each ``APT_PREREQUISITES = {package: (command, ...)}`` at
    the top of a test module or ``conftest.py`` under ``tests`` (a file's own directory's conftest.py too),
    read without importing anything."""
    files: set[Path] = set()
    for test in tests:
        path = vm.CHECKOUT / test.split("::")[0]
        if path.is_dir():
            files.update(path.rglob("test_*.py"))
            files.update(path.rglob("conftest.py"))
        else:
            files.update([path, path.parent / "conftest.py"])
    wanted: dict[str, tuple[str, ...]] = {}
    for f in sorted(p for p in files if p.is_file()):
        for node in ast.parse(f.read_text(), str(f)).body:
            if (isinstance(node, ast.Assign) and len(node.targets) == 1
                    and isinstance(node.targets[0], ast.Name) and node.targets[0].id == "APT_PREREQUISITES"):
                for package, commands in ast.literal_eval(node.value).items():
                    wanted[package] = tuple(commands)
    return wanted


def install_prerequisites(args: argparse.Namespace, tests: list[str]) -> None:
    """Install the tests' Debian packages on the host before anything boots: the guests see the host's root
    read-only and have no network, so a tool a test would apt-get there must be here first.  Done by the
    tests' own helper (``ebpf.core.testing.debian_package``, which installs only what is missing) in the test
    interpreter.

    :raises subprocess.CalledProcessError: when an install fails (the helper's message is on stderr).
    """
    wanted = apt_prerequisites(tests)
    if not wanted:
        return
    log(f"Debian packages the tests need: {', '.join(sorted(wanted))}")
    pythonpath = ":".join(str(vm.CHECKOUT / "packages" / p / "src") for p in vm.PACKAGES)
    env = dict(os.environ, PYTHONPATH=pythonpath, EBPF_PLUGINS=vm.EBPF_PLUGINS, PYTHONDONTWRITEBYTECODE="1")
    env.pop("EBPF_TESTS_NO_APT", None)
    code = ("import sys, json; from ebpf.core.testing import debian_package\n"
            "for package, commands in json.loads(sys.argv[1]).items(): debian_package(package, *commands)")
    subprocess.run([args.python, "-c", code, json.dumps(wanted)], cwd=vm.CHECKOUT, env=env, check=True)


def run_host(args: argparse.Namespace, tests: list[str], extra: list[str], outdir: Path) -> KernelRun:
    """The test set on the host kernel, directly (same interpreter, same PYTHONPATH as in the guest)."""
    release = os.uname().release
    result = KernelRun(label=f"host {'.'.join(release.split('.')[:2])}", kind="host", series="host",
                       release=release)
    rundir = outdir / "host"
    rundir.mkdir(parents=True)
    pythonpath = ":".join(str(vm.CHECKOUT / "packages" / p / "src") for p in vm.PACKAGES)
    env = dict(os.environ, PYTHONPATH=pythonpath, EBPF_PLUGINS=vm.EBPF_PLUGINS, PYTHONDONTWRITEBYTECODE="1",
               HYPOTHESIS_STORAGE_DIRECTORY=str(rundir / "hypothesis"))
    cmd = shlex.split(vm.pytest_command(args.python, pytest_args(tests, rundir / "junit.xml", extra),
                                        plugin=not args.installed))
    log(f"== host kernel {release}")
    log("$ " + shlex.join(cmd))
    started = time.monotonic()
    try:
        result.exit = subprocess.run(cmd, cwd=vm.CHECKOUT, env=env, timeout=args.timeout).returncode
    except subprocess.TimeoutExpired:
        result.exit = 124
    result.seconds = time.monotonic() - started
    result.rundir = str(rundir)
    collect(result, rundir)
    save_status(result, rundir)
    return result


@dataclass
class Unit:
    """One pytest run in one VM: a package's tests, or a chunk of its test files."""

    name: str
    tests: list[str]
    weight: float = 1.0  # expected cost (host seconds, or tests): the longest units start first


def run_vm(args: argparse.Namespace, vng: str, series: str, image: Path, unit: Unit, extra: list[str],
           outdir: Path) -> KernelRun:
    """Boot ``image`` once and run ``unit``'s tests inside; the result of that one boot."""
    result = KernelRun(label=series, kind="vm", series=series, image=str(image))
    rundir = outdir / series / unit.name if unit.name else outdir / series
    # zig's cache per kernel and unit, kept across runs (two guests never share one: no locking over 9p)
    extra_args = {"zig_cache": args.cache / "zig" / series / (unit.name or "all")}
    if args.quiet:
        extra_args["tag"] = f"{series}{'/' + unit.name if unit.name else ''}: "
    args = argparse.Namespace(**vars(args), **extra_args)
    command = vm.pytest_command(args.python, pytest_args(unit.tests, rundir / "junit.xml", extra),
                                plugin=not args.installed)
    log(f"== Debian {series}{' [' + unit.name + ']' if unit.name else ''}: {image}")
    started = time.monotonic()
    result.exit = vm.boot(args, vng, image, command, rundir=rundir)  # the guest's rc file, never vng's status
    result.seconds = time.monotonic() - started
    result.rundir = str(rundir)
    collect(result, rundir)
    save_status(result, rundir)
    if result.release:
        result.label = result.release
    if args.quiet:  # the output was not streamed: show pytest's summary line
        output = rundir / "output.txt"
        lines = output.read_text(errors="replace").splitlines() if output.exists() else []
        log(f"{series}{'/' + unit.name if unit.name else ''}: {lines[-1] if lines else 'no output'} "
            f"({result.seconds:.0f} s, {output})")
    return result


def merge(series: str, image: Path, units: list[Unit], runs: list[KernelRun], timeout: int) -> KernelRun:
    """One kernel's column out of the boots of its units: counts added; ok only when every boot is."""
    merged = KernelRun(label=series, kind="vm", series=series, image=str(image), exit=0)
    for unit, run in zip(units, runs):
        if run.release:
            merged.label = merged.release = run.release
        for module, counts in run.modules.items():
            merged.modules.setdefault(module, Counts()).add(counts)
        merged.problems += run.problems
        merged.kernel_trouble += run.kernel_trouble
        merged.seconds += run.seconds
        status = describe(run, timeout)
        merged.units.append({"name": unit.name, "tests": unit.tests, "exit": run.exit,
                             "seconds": round(run.seconds, 1), "status": status, "rundir": run.rundir})
        if merged.exit in (0, 5) and (run.exit not in (0, 5) or not run.junit):
            merged.exit = run.exit if run.exit not in (0, 5) else 125  # the first boot that gave no good result
        if not run.junit or run.exit not in (0, 5):
            merged.problems.append(f"boot {unit.name or '(all)'}: {status} ({run.rundir})")
    merged.junit = runs[0].junit if runs and all(r.junit for r in runs) else ""
    merged.rundir = str(Path(runs[0].rundir).parent) if len(runs) > 1 else (runs[0].rundir if runs else "")
    return merged


def run_vms(args: argparse.Namespace, vng: str, images: dict[str, Path], units: list[Unit], extra: list[str],
            outdir: Path) -> list[KernelRun]:
    """Every (kernel, unit) boot, ``--jobs`` at a time, longest first; one merged column per kernel."""
    # longest first (the whole run ends sooner), or --shortest-first (the most boots done by a deadline)
    sign = 1 if args.shortest_first else -1
    jobs = sorted(((series, unit) for series in images for unit in units), key=lambda j: sign * j[1].weight)
    if args.jobs <= 1 or len(jobs) <= 1:
        done = {(s, u.name): run_vm(args, vng, s, images[s], u, extra, outdir) for s, u in jobs}
    else:
        args.quiet, args.stop = True, threading.Event()
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            futures = {(s, u.name): pool.submit(run_vm, args, vng, s, images[s], u, extra, outdir) for s, u in jobs}
            try:
                done = {key: f.result() for key, f in futures.items()}
            except BaseException:
                args.stop.set()  # Ctrl-C/SIGTERM: each boot() kills its VM within a second
                raise
    return [merge(s, image, units, [done[(s, u.name)] for u in units], args.timeout) for s, image in images.items()]


def plan_units(tests: list[str], split: int, host: KernelRun | None) -> list[Unit]:
    """The boots per kernel: one per package test directory, a package with more than ``split`` tests cut into
    chunks of its files balanced by their host seconds (or test counts); other paths run together in one boot.

    A VM boot is ~10-30 s under TCG, a package's tests minutes: per package, the boots of both kernels can run
    side by side (``--jobs``) and one that times out costs only its own tests.
    """
    host_seconds: dict[str, float] = {}
    host_counts: dict[str, int] = {}
    if host is not None and host.junit:
        for case in ET.parse(host.junit).getroot().iter("testcase"):
            module = module_of(case)
            host_seconds[module] = host_seconds.get(module, 0.0) + float(case.get("time") or 0)
            host_counts[module] = host_counts.get(module, 0) + 1
    dirs = [t for t in tests if t in SESSIONS.values()]
    rest = [t for t in tests if t not in dirs]
    units: list[Unit] = []
    names = {path: name for name, path in SESSIONS.items()}
    for d in dirs:
        name = names[d]
        files = sorted(str(f.relative_to(vm.CHECKOUT)) for f in (vm.CHECKOUT / d).glob("test_*.py"))
        # weight: host seconds (x8 under TCG is the same for all), plus a boot-ish cost per test
        weights = {f: host_seconds.get(f, 0.0) + 0.05 * host_counts.get(f, 0) or (vm.CHECKOUT / f).stat().st_size / 1e4
                   for f in files}
        # tests per file: the host's count, else the test functions in the source (x2 for parametrized ones)
        count = sum(host_counts.get(f) or 2 * (vm.CHECKOUT / f).read_text().count("\ndef test_") for f in files)
        chunks = max(1, -(-count // split)) if split > 0 and count else 1
        if chunks == 1:
            units.append(Unit(name, [d], sum(weights.values())))
            continue
        bins: list[list[str]] = [[] for _ in range(chunks)]
        loads = [0.0] * chunks
        for f in sorted(files, key=lambda f: -weights[f]):  # greedy: the heaviest file into the lightest chunk
            i = loads.index(min(loads))
            bins[i].append(f)
            loads[i] += weights[f]
        units += [Unit(f"{name}-{i + 1}", sorted(b), loads[i]) for i, b in enumerate(bins) if b]
    if rest:
        units.append(Unit("" if not units else "other", rest, 1.0))
    return units


# --- the summary ----------------------------------------------------------------------------------------------


def table(results: list[KernelRun], timeout: int) -> str:
    """A Markdown table: one row per test module, one column per kernel, then totals, status and time."""
    modules = sorted({m for r in results for m in r.modules})
    header = ["test module", *[r.label for r in results]]
    rows = [[m, *[r.modules[m].cell() if m in r.modules else "-" for r in results]] for m in modules]
    rows.append(["**total**", *[r.total().cell() for r in results]])
    rows.append(["**result**", *[describe(r, timeout) for r in results]])
    rows.append(["**seconds**", *[f"{r.seconds:.0f}" for r in results]])
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"

    return "\n".join([line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, rows)])


def resolve_tests(args: argparse.Namespace) -> list[str]:
    """The test paths: --tests, else --sessions' directories, else the default VM set; each must exist."""
    if args.tests:
        tests = list(args.tests)
    elif args.sessions:
        names = [n.strip().removeprefix("ebpf-") for n in args.sessions.split(",") if n.strip()]
        unknown = [n for n in names if n not in SESSIONS]
        if unknown:
            raise SystemExit(vm.die(f"unknown session(s) {', '.join(unknown)}; known: {', '.join(SESSIONS)}"))
        tests = [SESSIONS[n] for n in names]
    elif args.vm_set:
        tests = list(vm.DEFAULT_TESTS)
    else:  # the whole suite: every package's tests/ directory
        tests = list(SESSIONS.values())
    missing = [t for t in tests if not (vm.CHECKOUT / t.split("::")[0]).exists()]
    if missing:
        raise SystemExit(vm.die(f"no such test path in {vm.CHECKOUT}: {', '.join(missing)}"))
    return tests


def parse(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """Our options, and the pytest arguments after ``--``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="Arguments after -- go to every pytest run.")
    parser.add_argument("--kernel", action="append", metavar="SERIES",
                        help="Debian kernel series to boot; repeat or comma-separate (default 6.1,6.12; 6.18: trixie-backports, with sched_ext)")
    parser.add_argument("--no-host", action="store_true", help="skip the run on the host kernel")
    parser.add_argument("--tests", nargs="+", metavar="PATH",
                        help="test files/dirs/node ids, all in one boot per kernel (default: the whole suite)")
    parser.add_argument("--vm-set", action="store_true",
                        help="only the tests that skip on the host and their probes (run.py's DEFAULT_TESTS)")
    parser.add_argument("--split", type=int, default=120, metavar="N",
                        help="boot per package; a package with more than N tests (on the host) is cut into "
                             "chunks of files (default 120; 0: one chunk per package)")
    parser.add_argument("--sessions", help=f"comma-separated packages whose tests/ to run: {', '.join(SESSIONS)}")
    parser.add_argument("--cpus", "-p", type=int, default=1, help="vCPUs per VM (default 1: 2 sometimes panicked)")
    parser.add_argument("--jobs", "-j", type=int, default=2,
                        help="VMs at once (default 2; above 1 no output is streamed: each VM's is in its run dir)")
    parser.add_argument("--memory", "-m", default="2G")
    parser.add_argument("--timeout", type=int, default=3600,
                        help="seconds per boot (one package or chunk on one kernel) before it is killed (3600: an "
                             "ebpf-events chunk took 1844 s of pytest under TCG on a busy host)")
    parser.add_argument("--accel", choices=("auto", "kvm", "tcg"), default="auto")
    parser.add_argument("--lsm", default=vm.DEFAULT_LSM, help=f"the lsm= boot list (default {vm.DEFAULT_LSM})")
    parser.add_argument("--append", default="", help="more kernel command line")
    # not realpath'd (unlike run.py's default): a venv's python must stay the venv's, for its site-packages
    parser.add_argument("--python", default=sys.executable, help="interpreter for the tests (default: this one)")
    parser.add_argument("--cache", type=Path, default=vm.DEFAULT_CACHE, help=f"default {vm.DEFAULT_CACHE}")
    parser.add_argument("--json", type=Path, help="write the summary here (default <cache>/results/matrix-<stamp>.json)")
    parser.add_argument("--verbose", "-v", action="store_true", help="show the kernel console too")
    parser.add_argument("--shortest-first", action="store_true",
                        help="start the quickest boots first (the most results by a deadline; default: longest first)")
    parser.add_argument("--report", type=Path, metavar="RESULTS_DIR",
                        help="boot nothing: print the table of an earlier (or cut-off) run from its results directory")
    ours, rest = argv, []
    if "--" in argv:
        i = argv.index("--")
        ours, rest = argv[:i], argv[i + 1:]
    args = parser.parse_args(ours)
    args.cache = args.cache.resolve()
    args.kernels = [k.strip() for spec in (args.kernel or ["6.1,6.12"]) for k in spec.split(",") if k.strip()]
    args.keep = True  # boot() keeps the run directories we hand it anyway; the results live there
    args.quiet = False
    return args, rest


def report(outdir: Path, timeout: int) -> int:
    """The table of the run whose files are in ``outdir`` (``host/``, ``<series>/<unit>/``), even a cut-off one."""
    results: list[KernelRun] = []
    if (outdir / "host").is_dir():
        host = KernelRun(label="host", kind="host", series="host")
        load_status(host, outdir / "host")
        collect(host, outdir / "host")
        host.label = f"host {'.'.join(host.release.split('.')[:2])}" if host.release else "host"
        results.append(host)
    for series_dir in sorted(d for d in outdir.iterdir() if d.is_dir() and d.name != "host"):
        units, runs = [], []
        # one boot per kernel (--tests): the kernel's directory is the run directory
        boots = [series_dir] if (series_dir / "guest.sh").exists() else sorted(d for d in series_dir.iterdir()
                                                                                 if d.is_dir())
        for rundir in boots:
            run = KernelRun(label=series_dir.name, kind="vm", series=series_dir.name, rundir=str(rundir))
            load_status(run, rundir)
            collect(run, rundir)
            units.append(Unit("" if rundir == series_dir else rundir.name, []))
            runs.append(run)
        if runs:
            results.append(merge(series_dir.name, Path(), units, runs, timeout))
    for r in results:
        r.status = describe(r, timeout)
    print(f"\n## Kernel matrix (from {outdir})\n", flush=True)
    print(table(results, timeout))
    for r in results:
        for text in [*r.problems, *(f"kernel: {t}" for t in r.kernel_trouble)]:
            print(f"{r.label}: {text}")
        for u in r.units:
            print(f"{r.label}: boot {u['name'] or '(all)'}: {u['status']}")
    return 0 if all(r.ok for r in results) else 1


def main(argv: list[str] | None = None) -> int:
    """Set up, run every kernel, print the table, write the JSON; returns the exit status."""
    wall = time.monotonic()
    # SIGTERM (CI, nox) unwinds like Ctrl-C, so every VM gets killed on the way out
    signal.signal(signal.SIGTERM, vm._interrupt)
    args, extra = parse(sys.argv[1:] if argv is None else argv)
    if args.report is not None:
        return report(args.report, args.timeout)
    tests = resolve_tests(args)
    check = subprocess.run([args.python, "-c", "import pytest, pluggy"], capture_output=True)
    if check.returncode != 0:
        return vm.die(f"{args.python} cannot import pytest/pluggy: use `nox -s vm`, or --python with a venv "
                      "that has the packages' test dependencies")
    # An environment with the packages installed (nox -s vm) has their entry points (plugins, pytest11);
    # PYTHONPATH still puts the checkout's src first, so the tests import the working tree either way.
    args.installed = installed_plugin(args.python)
    log(f"python {args.python}: " + ("ebpf packages installed" if args.installed else "dev tree (PYTHONPATH only)"))
    try:
        vm.setup_tools(args.cache)  # installs only what is missing
        problem = vm.check_tools(args.cache)
        if problem:
            return vm.die(problem)
        install_prerequisites(args, tests)  # apt tools the tests use (the guests cannot install them)
        images = {series: vm.fetch_kernel(series, args.cache) for series in args.kernels}  # all downloads first
    except subprocess.CalledProcessError as exc:
        return vm.die(f"setup step failed (exit {exc.returncode}): {shlex.join(map(str, exc.cmd))}")
    vng = vm.find_vng(args.cache)
    assert vng is not None
    stamp = time.strftime("%Y%m%d-%H%M%S")
    outdir = args.cache / "results" / f"matrix-{stamp}"
    outdir.mkdir(parents=True)
    log(f"tests: {' '.join(tests)}; results in {outdir}")

    results: list[KernelRun] = []
    host = None
    if not args.no_host:
        host = run_host(args, tests, extra, outdir)
        results.append(host)
    # --tests: one boot per kernel, as given; else per package (chunks of files balanced by the host's seconds)
    if host is None:  # --no-host: balance the chunks by the latest host run's seconds, if there is one
        earlier = sorted(args.cache.glob("results/matrix-*/host/junit.xml"))
        if earlier:
            host = KernelRun(label="host", kind="host", series="host", junit=str(earlier[-1]))
    units = [Unit("", tests)] if args.tests else plan_units(tests, args.split, host)
    log("boots per kernel: " + "; ".join(f"{u.name or 'all'} ({len(u.tests)} paths)" for u in units))
    results.extend(run_vms(args, vng, images, units, extra, outdir))
    for r in results:
        r.status = describe(r, args.timeout)
    elapsed = time.monotonic() - wall

    print(f"\n## Kernel matrix ({elapsed:.0f} s; tests: {' '.join(tests)})\n", flush=True)
    print(table(results, args.timeout))
    for r in results:
        for text in [*r.problems, *(f"kernel: {t}" for t in r.kernel_trouble)]:
            print(f"{r.label}: {text}")
    summary = {
        "ok": all(r.ok for r in results),
        "wall_seconds": round(elapsed, 1),
        "tests": tests,
        "pytest_extra": extra,
        "cpus": args.cpus,
        "jobs": args.jobs,
        "split": args.split,
        "results_dir": str(outdir),
        "kernels": [dict(asdict(r), ok=r.ok, total=asdict(r.total()), seconds=round(r.seconds, 1))
                    for r in results],
    }
    path = args.json or (args.cache / "results" / f"matrix-{stamp}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"\nsummary: {path}")
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        log("interrupted; the VM was stopped")
        sys.exit(130)
