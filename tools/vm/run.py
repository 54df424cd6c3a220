#!/usr/bin/env python3
"""Run the test suite inside a Debian kernel booted with virtme-ng, for what the host kernel cannot run.

The host we develop on has no CONFIG_KPROBES and refuses fentry/fexit/LSM loads (EPERM), so those
tests skip there.  This script boots a stock Debian kernel (which allows all three; LSM with
``lsm=...,bpf`` on the command line) under QEMU through ``vng``, with the host's root filesystem
shared read-only (9p), and runs ``python3 -m pytest`` on the checkout inside it.

    python3 tools/vm/run.py --setup                # once: qemu, kmod, virtme-ng, the kernel
    python3 tools/vm/run.py                        # the default VM test set
    python3 tools/vm/run.py -- packages/ebpf-core/tests/test_trampolines.py -v
    python3 tools/vm/run.py --shell 'cat /sys/kernel/security/lsm'

The whole matrix (host + 6.1 + 6.12, one table of results) is ``tools/vm/matrix.py`` / ``nox -s vm``.
The exit status is pytest's (or the command's) inside the VM; 124 when the VM timed out, 125 when
it ended without reporting one.  See tools/vm/README.md for the recipe and timings.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parents[2]
#: The source tree has no entry points: name the project's plugins (see ebpf.core.plugins.PLUGINS_ENV).
EBPF_PLUGINS = ",".join(sorted(f"ebpf.{p.parent.name}.plugin" for p in CHECKOUT.glob("packages/*/src/ebpf/*/plugin.py")))
DEFAULT_CACHE = Path(os.environ.get("EBPF_VM_CACHE", "/var/cache/ebpf-vm"))
DEFAULT_LSM = "lockdown,capability,landlock,yama,apparmor,bpf"
#: every distribution of the checkout (ebpf-core first): the guest imports them from their src directories
PACKAGES = tuple(sorted((p.parent.name for p in CHECKOUT.glob("packages/ebpf-*/src")), key=lambda n: n != "ebpf-core"))
# The tests that skip on the host for kprobes/fentry/lsm, plus the files that probe those features.
DEFAULT_TESTS = (
    "packages/ebpf-security/tests",
    "packages/ebpf-core/tests/test_trampolines.py",
    "packages/ebpf-events/tests/test_kprobes.py",
    "packages/ebpf-core/tests/test_programs.py",
    "packages/ebpf-core/tests/test_features.py",
    "packages/ebpf-core/tests/test_perf.py",
    "packages/ebpf-events/tests/test_tracing.py",
)
KERNEL_LINE = re.compile(r"^\[\s*\d+\.\d+\] ")
#: Kernel console lines worth showing even without --verbose: the guest kernel is in trouble.
KERNEL_TROUBLE = re.compile(r"Oops|Kernel panic|BUG:|WARNING: CPU|general protection fault|Call Trace:|RIP: ")
GUEST_UP = "== ebpf-vm guest up"


def log(msg: str) -> None:
    """A harness message (on stderr, so stdout stays the guest's)."""
    print(f"[vm] {msg}", file=sys.stderr, flush=True)


def die(msg: str) -> int:
    """Report a setup problem; returns the exit status to use."""
    log(f"error: {msg}")
    return 2


def run(cmd: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    """Run a host command, echoing it."""
    log("$ " + shlex.join(cmd))
    return subprocess.run(cmd, check=True, text=True, **kw)  # type: ignore[call-overload, no-any-return]


# --- tools --------------------------------------------------------------------------------------------------


def find_vng(cache: Path) -> str | None:
    """``vng`` on PATH, or the one in the cache's venv."""
    found = shutil.which("vng")
    if found:
        return found
    local = cache / "venv" / "bin" / "vng"
    return str(local) if local.exists() else None


#: host tool -> the Debian package that has it.  vng builds its initramfs around a static busybox.
TOOLS = (("qemu-system-x86_64", "qemu-system-x86"), ("depmod", "kmod"), ("busybox", "busybox-static"),
         ("file", "file"), ("dpkg-deb", "dpkg"))


def setup_tools(cache: Path) -> None:
    """Install what is missing: qemu-system-x86, kmod (depmod), busybox-static from apt; virtme-ng into a venv.

    Idempotent: installs nothing when everything is there.  apt-get update runs only when the
    install fails (a fresh machine or container has no package lists yet).
    """
    missing = [pkg for tool, pkg in TOOLS if shutil.which(tool) is None]
    if missing:
        apt_env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing]
        try:
            run(install, env=apt_env)
        except subprocess.CalledProcessError:
            run(["apt-get", "update", "-q"], env=apt_env)
            run(install, env=apt_env)
    if find_vng(cache) is None:
        venv = cache / "venv"
        run([sys.executable, "-m", "venv", str(venv)])
        run([str(venv / "bin" / "pip"), "install", "-q", "virtme-ng"])


def check_tools(cache: Path) -> str | None:
    """The problem that stops a run, or None."""
    for tool, pkg in TOOLS:
        if shutil.which(tool) is None:
            return f"{tool} not found: run with --setup (apt-get install {pkg})"
    if find_vng(cache) is None:
        return "vng not found: run with --setup (or pip install virtme-ng)"
    return None


# --- kernels ------------------------------------------------------------------------------------------------


def _natural(name: str) -> list[object]:
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name)]


_KEYRING = "[signed-by=/usr/share/keyrings/debian-archive-keyring.gpg]"
# Backports first: it is why the private index exists.  The rest covers a host whose own apt lists are
# empty (a fresh container) or are not Debian 12's.
BACKPORTS = (f"deb {_KEYRING} http://deb.debian.org/debian bookworm-backports main\n"
             f"deb {_KEYRING} http://deb.debian.org/debian bookworm main\n"
             f"deb {_KEYRING} http://deb.debian.org/debian bookworm-updates main\n"
             f"deb {_KEYRING} http://security.debian.org/debian-security bookworm-security main\n")


#: Debian 13 with backports: the first Debian kernels with sched_ext (CONFIG_SCHED_CLASS_EXT), e.g.
#: trixie-backports' linux-image-6.18.15+deb13-amd64 (Debian's 6.12 kernels, 12 or 13, do not have it).
TRIXIE = (f"deb {_KEYRING} http://deb.debian.org/debian trixie-backports main\n"
          f"deb {_KEYRING} http://deb.debian.org/debian trixie main\n"
          f"deb {_KEYRING} http://deb.debian.org/debian trixie-updates main\n"
          f"deb {_KEYRING} http://security.debian.org/debian-security trixie-security main\n")


def backports_apt(cache: Path, release: str = "bookworm") -> list[str]:
    """apt options for a private Debian index (with backports) in the cache; the host's apt config is untouched.

    Newer kernels live in backports, which the host need not have configured: 6.12 in
    bookworm-backports, 6.16-6.18 (with sched_ext) in trixie-backports.

    :param release: ``bookworm`` (Debian 12, in ``<cache>/apt``) or ``trixie`` (Debian 13, ``<cache>/apt-trixie``).
    """
    root = cache / ("apt" if release == "bookworm" else f"apt-{release}")
    wanted = BACKPORTS if release == "bookworm" else TRIXIE
    (root / "lists" / "partial").mkdir(parents=True, exist_ok=True)
    (root / "cache").mkdir(parents=True, exist_ok=True)
    sources = root / "sources.list"
    changed = not sources.exists() or sources.read_text() != wanted
    sources.write_text(wanted)
    opts = ["-o", f"Dir::Etc::SourceList={sources}", "-o", "Dir::Etc::SourceParts=/dev/null",
            "-o", f"Dir::State::Lists={root / 'lists'}", "-o", f"Dir::Cache={root / 'cache'}"]
    if changed or not any((root / "lists").glob("*_Packages*")):  # apt may store them .lz4
        run(["apt-get", *opts, "update"], capture_output=True)
    return opts


def generic_kernel(series: str, signed: bool = False) -> re.Pattern[str]:
    """Package names of the generic flavour of ``series``: 6.1.0-50-amd64, 6.12.95+deb12-amd64 (not -rt-, -cloud-).

    "6.1" does not match 6.12 kernels.

    :param signed: also the signed package (``...-amd64``): trixie-backports has no ``-unsigned`` one.
    """
    tail = "(-unsigned)?" if signed else "-unsigned"
    return re.compile(rf"^linux-image-{re.escape(series)}(\.\d+)*(-\d+|\+deb\d+)-amd64{tail}$")


def kernel_package(series: str, apt_opts: list[str]) -> str | None:
    """The newest ``linux-image-<series>...-amd64-unsigned`` apt knows (6.1 -> linux-image-6.1.0-50-...), or None."""
    out = subprocess.run(["apt-cache", *apt_opts, "search", "--names-only", f"^linux-image-{re.escape(series)}"],
                         check=True, text=True, capture_output=True).stdout
    names = sorted((line.split(" ", 1)[0] for line in out.splitlines()), key=_natural)
    # the unsigned image when there is one (the same kernel without the Secure Boot signature)
    for pattern in (generic_kernel(series), generic_kernel(series, signed=True)):
        found = [n for n in names if pattern.match(n)]
        if found:
            return found[-1]
    return None


def find_vmlinuz(root: Path) -> Path | None:
    """The kernel image in an extracted kernel package."""
    images = sorted((root / "boot").glob("vmlinuz-*"))
    return images[-1] if images else None


def fetch_kernel(series: str, cache: Path) -> Path:
    """Download and extract the newest Debian kernel of ``series`` into the cache (once); returns vmlinuz.

    The modules land next to it (``<root>/lib/modules``, ``<root>/usr/lib/modules`` in Debian 13), where vng finds them for the initramfs.
    """
    cached = [image for root in sorted((cache / "kernels").glob(f"linux-image-{series}*"), key=lambda p: _natural(p.name))
              if generic_kernel(series, signed=True).match(root.name) and (image := find_vmlinuz(root)) is not None]
    if cached:
        return cached[-1]
    apt_opts: list[str] = []
    pkg = kernel_package(series, apt_opts) if shutil.which("apt-cache") else None
    for release in ("bookworm", "trixie"):  # Debian 12 (+ backports), then 13 (+ backports: 6.18, sched_ext)
        if pkg is None:
            apt_opts = backports_apt(cache, release)
            pkg = kernel_package(series, apt_opts)
    if pkg is None:
        raise SystemExit(die(f"apt (with bookworm- and trixie-backports) knows no linux-image-{series}*-amd64"))
    debs = cache / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    run(["apt-get", *apt_opts, "download", pkg], cwd=debs)
    deb = max(debs.glob(f"{pkg}_*.deb"), key=lambda p: p.stat().st_mtime)
    root = cache / "kernels" / pkg
    # dpkg-deb makes only the last directory; extract beside and rename, so a cut-off run leaves no half kernel
    partial = root.with_name(root.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.parent.mkdir(parents=True, exist_ok=True)
    run(["dpkg-deb", "-x", str(deb), str(partial)])
    shutil.rmtree(root, ignore_errors=True)
    partial.rename(root)
    image = find_vmlinuz(root)
    if image is None:
        raise SystemExit(die(f"{deb} holds no boot/vmlinuz-*"))
    return image


# --- the guest ----------------------------------------------------------------------------------------------


def guest_script(rundir: Path, python: str, command: str, zig_cache: Path | None = None,
                 modules: Path | None = None, boot_dir: Path | None = None) -> str:
    """The shell script the guest runs: mount the BPF filesystems, report the kernel, run ``command``.

    :param zig_cache: a directory shared read-write with the guest for zig's global cache: zig does not
        reuse the host's cache in the guest (it rebuilds musl for a host-program test, minutes under TCG),
        so each kernel keeps its own across runs.
    """
    zig = f"export ZIG_GLOBAL_CACHE_DIR={shlex.quote(str(zig_cache))}\n" if zig_cache is not None else ""
    # the guest kernel's modules (veth, sch_ingress, ...; the host root has none for it): autoloading finds them
    mods = (f'mkdir -p /lib/modules && ln -sfn {shlex.quote(str(modules))}/"$(uname -r)" /lib/modules/"$(uname -r)" '
            f'|| echo "== cannot link the kernel modules"\n') if modules is not None else ""
    # the guest kernel's config where a Debian system has it (/boot/config-<release>): __kconfig externs
    # are read from it (the kernels have no /proc/config.gz); the package's boot/ goes over the host's /boot
    if boot_dir is not None:
        mods += (f'[ -e /boot/config-"$(uname -r)" ] || mount --bind {shlex.quote(str(boot_dir))} /boot '
                 f'|| echo "== cannot show the kernel config in /boot"\n')
    pythonpath = ":".join(str(CHECKOUT / "packages" / p / "src") for p in PACKAGES)
    return f"""#!/bin/bash
echo "{GUEST_UP}: $(uname -r) ($(nproc) cpus)"
uname -r > {shlex.quote(str(rundir / "uname"))}
for fs in "bpf /sys/fs/bpf" "tracefs /sys/kernel/tracing" "debugfs /sys/kernel/debug" \\
          "securityfs /sys/kernel/security"; do
    set -- $fs
    mountpoint -q "$2" || mount -t "$1" "$1" "$2" || echo "== cannot mount $1 on $2"
done
{mods}echo "== lsm: $(cat /sys/kernel/security/lsm 2>/dev/null)"
echo "== cmdline: $(cat /proc/cmdline | tr ' ' '\\n' | grep -E '^lsm=')"
echo "== perf PMUs: $(ls /sys/bus/event_source/devices | tr '\\n' ' ')"
cd {shlex.quote(str(CHECKOUT))}
export PYTHONPATH={shlex.quote(pythonpath)} EBPF_PLUGINS={EBPF_PLUGINS} PYTHONDONTWRITEBYTECODE=1 PYTHON={shlex.quote(python)}
export HYPOTHESIS_STORAGE_DIRECTORY=/tmp/hypothesis
# no network, read-only root: a test that would apt-get a missing tool fails at once, naming it
export EBPF_TESTS_NO_APT=1
{zig}start=$(date +%s.%N)
# the output also goes to the run directory: it survives a timeout there (run.py keeps that directory)
{{ {command} ; }} 2>&1 | tee {shlex.quote(str(rundir / "output.txt"))}
rc=${{PIPESTATUS[0]}}
end=$(date +%s.%N)
echo "== command exited $rc after $(echo "$end - $start" | bc 2>/dev/null || echo "?")s"
echo $rc > {shlex.quote(str(rundir / "rc"))}
"""


def pytest_command(python: str, args: list[str], plugin: bool = True) -> str:
    """The pytest invocation (as in docs/DEVELOPING.md) with ``args``.

    :param plugin: name ``-p ebpf.core.testing``; False when ebpf-core is installed in ``python``'s
        environment, whose pytest11 entry point loads it already (pytest refuses a plugin registered twice).
    """
    base = [python, "-m", "pytest", *(["-p", "ebpf.core.testing"] if plugin else []), "-p", "no:cacheprovider",
            "--import-mode=importlib"]
    return shlex.join(base + (args or [*DEFAULT_TESTS, "-v", "-rs"]))


def choose_accel(wanted: str) -> str:
    """``kvm`` or ``tcg``: auto picks kvm only when /dev/kvm is usable AND the CPU advertises vmx/svm.

    Inside a VM that exposes /dev/kvm without those flags (this development host), guest kernels
    hang right after the decompressor under KVM; TCG boots them in about 5 s.
    """
    if wanted != "auto":
        return wanted
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return "tcg"
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith("flags")), "").split()
    except OSError:
        return "tcg"
    return "kvm" if ("vmx" in flags or "svm" in flags) else "tcg"


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def new_rundir(cache: Path) -> Path:
    """A fresh run directory under ``<cache>/runs`` (shared read-write with the guest)."""
    runs = cache / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix="run-", dir=runs))


def boot(args: argparse.Namespace, vng: str, image: Path, command: str, rundir: Path | None = None) -> int:
    """Boot ``image`` with vng, run ``command`` in it, stream its output; returns the command's status.

    vng's own exit status means nothing here (255 under TCG even after a clean run): the status is the
    one the guest script wrote to ``<rundir>/rc``.  Everything the VM printed, the kernel console
    included, goes to ``<rundir>/console.txt``.  A ``rundir`` passed in is the caller's: it is kept.

    Optional attributes of ``args`` for running several VMs at once (tools/vm/matrix.py --jobs):
    ``quiet`` (print only harness lines and kernel trouble, all prefixed with ``tag``) and ``stop``
    (a ``threading.Event``: when set, the VM is killed and the status is 130).

    :param rundir: the directory shared read-write with the guest (default: a new one, removed after success).
    """
    quiet: bool = getattr(args, "quiet", False)
    tag: str = getattr(args, "tag", "")
    stop: threading.Event | None = getattr(args, "stop", None)

    def say(msg: str) -> None:
        log(tag + msg)

    accel = choose_accel(args.accel)
    owned = rundir is None
    if rundir is None:
        rundir = new_rundir(args.cache)
    rundir.mkdir(parents=True, exist_ok=True)
    script = rundir / "guest.sh"
    zig_cache: Path | None = getattr(args, "zig_cache", None)
    if zig_cache is not None:
        zig_cache.mkdir(parents=True, exist_ok=True)
    # the extracted package's, next to boot/vmlinuz-*: lib/modules (Debian 12), usr/lib/modules (13, merged /usr)
    root = image.parent.parent
    modules = next((d for d in (root / "lib" / "modules", root / "usr" / "lib" / "modules") if d.is_dir()), None)
    script.write_text(guest_script(rundir, args.python, command, zig_cache, modules, image.parent))
    append = f"lsm={args.lsm} edd=off" + (f" {args.append}" if args.append else "")
    # --force-9p: vng otherwise tries virtiofsd first (absent on Debian 12) and waits for it
    cmd = [vng, "--verbose", "--force-9p", "--run", str(image), "--memory", args.memory, "--cpus", str(args.cpus),
           "--cwd", str(CHECKOUT), "--rwdir", str(rundir), *(["--rwdir", str(zig_cache)] if zig_cache else []),
           *(["--rodir", str(modules)] if modules else []),
           "--rodir", str(image.parent),  # its config, bind-mounted on /boot by the guest script (/var is hidden)
           "--overlay-rwdir", str(CHECKOUT),
           # a writable (throw-away) home: compilers want ~/.cache (zig's cache stays warm this way)
           "--overlay-rwdir", os.path.expanduser("~"),
           "--append", append, "--exec", f"bash {script}"]
    if accel == "tcg":
        cmd.insert(1, "--disable-kvm")
    say(f"kernel {image} accel={accel} memory={args.memory} cpus={args.cpus} timeout={args.timeout}s")
    say("$ " + shlex.join(cmd))
    env = dict(os.environ, PATH=f"{Path(vng).parent}:{os.environ.get('PATH', '')}")
    started = time.monotonic()
    up_at: float | None = None
    # SIGTERM (a CI or nox timeout) unwinds like Ctrl-C, so the finally below still kills the VM
    # (only the main thread may set handlers: a caller running VMs in threads sets ``stop`` instead)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _interrupt)
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env=env, start_new_session=True)
    timed_out = stopped = False
    assert proc.stdout is not None
    console = (rundir / "console.txt").open("w", encoding="utf-8")
    try:
        deadline = started + args.timeout
        import selectors

        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ)
        buf = b""
        while True:
            if time.monotonic() > deadline:
                timed_out = True
                break
            if stop is not None and stop.is_set():
                stopped = True
                break
            if not sel.select(timeout=1.0):
                if proc.poll() is not None:
                    break
                continue
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk:
                break
            buf += chunk
            *lines, buf = buf.split(b"\n")
            for raw in lines:
                line = raw.decode(errors="replace").rstrip("\r")
                line = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]|\x1bc", "", line)  # firmware's terminal resets
                if GUEST_UP in line and up_at is None:
                    up_at = time.monotonic()
                    say(f"guest up after {up_at - started:.1f}s")
                console.write(line + "\n")
                if KERNEL_LINE.match(line) and KERNEL_TROUBLE.search(line) and (quiet or not args.verbose):
                    say(f"kernel: {line}")
                elif not quiet and (args.verbose or not KERNEL_LINE.match(line)):
                    print(line, flush=True)
    finally:
        if timed_out or stopped or proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # the process group we started (vng and its qemu)
        proc.wait()
        proc.stdout.close()
        console.close()
    total = time.monotonic() - started
    say(f"VM ran {total:.1f}s in all" + (f" (boot {up_at - started:.1f}s)" if up_at else ""))
    if stopped:
        return 130
    if timed_out:
        say(f"timed out after {args.timeout}s; the guest's output so far: {rundir / 'output.txt'}")
        return 124
    rc_file = rundir / "rc"
    if not rc_file.exists():
        say(f"the VM ended without reporting a status (crash? the kernel log: {rundir / 'console.txt'})")
        return 125
    rc = int(rc_file.read_text().strip() or "125")
    if owned and not args.keep and rc == 0:
        shutil.rmtree(rundir, ignore_errors=True)
    return rc


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, prepare, boot, return the guest's status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="Arguments after -- go to pytest (default: the VM test set).")
    parser.add_argument("--kernel", default="6.1", help="Debian kernel series to boot: 6.1, 6.12 (bookworm-backports), 6.18 (trixie-backports, sched_ext); default 6.1")
    parser.add_argument("--vmlinuz", type=Path, help="boot this image instead (modules from <root>/lib/modules)")
    parser.add_argument("--accel", choices=("auto", "kvm", "tcg"), default="auto")
    parser.add_argument("--memory", "-m", default="2G")
    parser.add_argument("--cpus", "-p", type=int, default=1,
                        help="vCPUs (default 1: under TCG a 2-vCPU guest sometimes panicked)")
    parser.add_argument("--timeout", type=int, default=600, help="seconds before the VM is killed (default 600)")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help=f"default {DEFAULT_CACHE} ($EBPF_VM_CACHE)")
    parser.add_argument("--lsm", default=DEFAULT_LSM, help=f"the lsm= boot list (default {DEFAULT_LSM})")
    parser.add_argument("--append", default="", help="more kernel command line")
    parser.add_argument("--python", default=os.path.realpath(sys.executable), help="python inside the VM")
    parser.add_argument("--shell", help="run this shell command in the VM instead of pytest")
    parser.add_argument("--setup", action="store_true",
                        help="install what is missing first: qemu, kmod, busybox-static (apt), virtme-ng (venv)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the run directory (guest script, output, status) even after a success")
    parser.add_argument("--verbose", "-v", action="store_true", help="show the kernel console too")
    ours, _, rest = (argv if argv is not None else sys.argv[1:], None, [])
    if "--" in ours:
        i = ours.index("--")
        ours, rest = ours[:i], ours[i + 1:]
    args = parser.parse_args(ours)
    args.cache = args.cache.resolve()
    if args.setup:
        setup_tools(args.cache)
    problem = check_tools(args.cache)
    if problem:
        return die(problem)
    vng = find_vng(args.cache)
    assert vng is not None
    image = args.vmlinuz.resolve() if args.vmlinuz else fetch_kernel(args.kernel, args.cache)
    if not image.exists():
        return die(f"no kernel image {image}")
    command = args.shell if args.shell else pytest_command(args.python, rest)
    return boot(args, vng, image, command)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        log("interrupted; the VM was stopped")
        sys.exit(130)
