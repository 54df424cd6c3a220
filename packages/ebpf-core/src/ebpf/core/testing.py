"""pytest plugin shared by every ``ebpf`` package (registered through the ``pytest11`` entry point).

Gives: the ``privileged`` and ``kernel(min=...)`` markers, the ``bpffs`` and ``tracefs``
fixtures, :func:`require` (skip only on :class:`UnsupportedFeatureError`), :class:`Opener` (a child
process that opens files on request, for programs that deny opens), and the session-wide fd-leak check:
the open fds at session start must equal those at the end.
"""

from __future__ import annotations

import gc
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager
from typing import Any

import pluggy
import pytest
from ebpf.core.errors import UnsupportedFeatureError

__all__ = ["require", "wait_for", "open_fds", "Opener", "build_host_program", "plugin_registered", "debian_package"]

#: Set (to anything) where apt cannot work, e.g. in the kernel matrix's guests (no network, read-only root):
#: a missing Debian package is then a failure at once instead of minutes of apt-get.
NO_APT_ENV = "EBPF_TESTS_NO_APT"



class Opener:
    """A child Python process that opens the paths it is sent and answers with the errno (0: it worked).

    For programs that deny opens (LSM ``file_open``, fmod_ret): the child is the process the program
    targets, or must not.  Started with ``close_fds`` (the default) so it holds none of our BPF fds:
    closing a link in the test really detaches the program.  ``with Opener() as child: child.open(p)``.
    """

    CODE = ("import os, sys\nprint('ready', flush=True)\nfor line in sys.stdin:\n"
            "    try:\n        os.close(os.open(line.strip(), os.O_RDONLY))\n        print(0, flush=True)\n"
            "    except OSError as exc:\n        print(exc.errno, flush=True)\n")

    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", self.CODE], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        if self.readline() != "ready":  # from here on the child opens only what we ask
            self.close()
            raise RuntimeError("the opener child did not start")

    @property
    def pid(self) -> int:
        """The child's process id (its tgid, which programs match)."""
        return self.proc.pid

    def readline(self) -> str:
        """One answer line from the child."""
        assert self.proc.stdout is not None
        return self.proc.stdout.readline().strip()

    def open(self, path: str) -> int:
        """Ask the child to open ``path``; returns the errno it got (0 on success)."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(path + "\n")
        self.proc.stdin.flush()
        return int(self.readline())

    def close(self) -> None:
        """End the child and reap it.  Twice is harmless."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        if not self.proc.stdin.closed:
            self.proc.stdin.close()
        self.proc.wait(timeout=60)
        self.proc.stdout.close()

    def __enter__(self) -> Opener:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def build_host_program(source: str | os.PathLike[str], out: str | os.PathLike[str]) -> str:
    """Compile a user-space C test target (a uprobe/USDT target): the system's ``cc`` when there is
    one (much quicker than zig's first libc build, minutes under an emulated VM), else the ziglang
    wheel (a test dependency) for this machine's ``<arch>-linux-musl``.

    :returns: ``out`` as a string.
    :raises RuntimeError: with each compiler's error output when none succeeds.
    """
    src, dst = os.fspath(source), os.fspath(out)
    commands = [["cc", "-O1", src, "-o", dst]] if shutil.which("cc") else []
    commands.append([sys.executable, "-m", "ziglang", "cc", "-O1", "-target", f"{platform.machine()}-linux-musl",
                     src, "-o", dst])
    errors = []
    for cmd in commands:
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode == 0:
            return dst
        errors.append(f"{cmd[0]}: {proc.stderr[-500:]}")
        if cmd[0] == "cc" and _source_error(proc.stderr, src):
            break  # the source is wrong: zig would say so too, after minutes of building musl (under TCG, hours)
    raise RuntimeError(f"cannot build {src}: {errors}")


def debian_package(package: str, *commands: str, timeout: float = 1800) -> str:
    """The path of ``commands[0]`` (default: ``package``), installing Debian's ``package`` with apt-get when one
    of ``commands`` is missing (as root; ``apt-get update`` only when the first try fails).

    The tests' single way to get a tool from apt; the kernel matrix (tools/vm/matrix.py) calls it on the
    host for each test file's ``APT_PREREQUISITES`` before booting guests, which cannot install anything.

    :param package: the Debian package name.
    :param commands: executables it must provide on ``PATH``.
    :param timeout: seconds for each apt-get call.
    :returns: the absolute path of the first command.
    :raises RuntimeError: when apt-get fails, is not allowed here (``EBPF_TESTS_NO_APT``), or the package
        does not provide the commands.
    """
    wanted = commands or (package,)
    if all(shutil.which(c) for c in wanted):
        return str(shutil.which(wanted[0]))
    missing = [c for c in wanted if not shutil.which(c)]
    if os.environ.get(NO_APT_ENV):
        raise RuntimeError(f"{', '.join(missing)} missing and apt is not available here ({NO_APT_ENV} is set): "
                           f"install Debian's {package} where these tests' root filesystem comes from "
                           "(tools/vm/matrix.py does it on the host before booting)")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", package]
    proc = subprocess.run(install, capture_output=True, text=True, env=env, timeout=timeout)
    if proc.returncode:  # a stale or empty package index: refresh it once
        subprocess.run(["apt-get", "update", "-q"], capture_output=True, env=env, timeout=timeout)
        proc = subprocess.run(install, capture_output=True, text=True, env=env, timeout=timeout)
    found = shutil.which(wanted[0])
    if proc.returncode or not found or not all(shutil.which(c) for c in wanted):
        raise RuntimeError(f"cannot install Debian's {package} (providing {', '.join(wanted)}): "
                           f"apt-get exit {proc.returncode}: {proc.stderr[-800:]}")
    return found


def _source_error(stderr: str, src: str) -> bool:
    """Whether a compiler's output reports an error in ``src`` itself ("bad.c:1:25: error: ..."), not a
    toolchain problem (a missing header or linker, where another compiler may do better)."""
    return any(line.startswith(f"{src}:") and ": error:" in line and "fatal error" not in line
               for line in stderr.splitlines())


@contextmanager
def plugin_registered(module: Any, name: str) -> Iterator[None]:
    """Make sure plugin ``module`` is registered under ``name`` for the ``with`` block (a source tree
    without an entry point, or ``EBPF_DISABLE_PLUGIN_AUTOLOAD=1``).  A no-op when an entry point or
    EBPF_PLUGINS already did it; a registration made here is undone at the end."""
    from ebpf.core import plugins  # late: the plugin manager is not needed by the other helpers

    pm = plugins.plugin_manager()
    if pm.is_registered(module) or pm.has_plugin(name):
        yield
        return
    plugins.register(module, name=name)
    try:
        yield
    finally:
        plugins.unregister(module)

def open_fds() -> set[int]:
    """The fds this process has open (from ``/proc/self/fd``)."""
    fds = set()
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        try:
            os.fstat(fd)
        except OSError:
            continue  # the listing's own directory fd, gone by now
        fds.add(fd)
    return fds


def _describe(fd: int) -> str:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return "?"


def _skip_reason(exc: UnsupportedFeatureError) -> str:
    return f"unsupported feature: {exc.feature} ({exc})"


def require(probe: Callable[..., None], *args: Any) -> None:
    """Run a feature probe; skip the test when it raises :class:`UnsupportedFeatureError`.

    Any other error propagates (a probe that cannot tell is a failure, not a skip).
    """
    try:
        probe(*args)
    except UnsupportedFeatureError as exc:
        pytest.skip(_skip_reason(exc))


def wait_for(condition: Callable[[], object], timeout: float = 5.0, what: str = "the condition") -> None:
    """Wait until ``condition()`` is true, checking every few milliseconds, for at most ``timeout`` seconds.

    Tests wait on what they can observe, never for a fixed time.

    :param condition: called until it returns something true.
    :param timeout: the deadline, in seconds.
    :param what: named in the failure.
    :raises AssertionError: when the deadline passes first.
    """
    deadline = time.monotonic() + timeout
    pause = 0.001
    while not condition():
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what} did not happen within {timeout} s")
        time.sleep(pause)
        pause = min(pause * 2, 0.05)  # quick for fast conditions, light on the CPU for slow ones


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "privileged: needs root and a kernel with BPF")
    config.addinivalue_line("markers", "kernel(min): needs at least this kernel version, e.g. kernel(min='5.8')")


@pytest.hookimpl(trylast=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    # Taken here, after pytest has opened its own capture and faulthandler fds.
    session.config._ebpf_fds_at_start = open_fds()  # type: ignore[attr-defined]


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("privileged") and os.geteuid() != 0:
        pytest.fail("privileged test run without root: run the suite as root")
    marker = item.get_closest_marker("kernel")
    if marker is not None:
        from ebpf.core.system import kernel_version  # deferred: start-up time (only this helper needs it)

        wanted = tuple(int(x) for x in str(marker.kwargs.get("min", "0")).split("."))
        if kernel_version()[: len(wanted)] < wanted:
            exc = UnsupportedFeatureError(item.name, ".".join(map(str, wanted)))
            pytest.skip(_skip_reason(exc))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, pluggy.Result[None], None]:
    # A test that hits UnsupportedFeatureError outside require() is still a skip that names the feature.
    outcome = yield
    exc = outcome.excinfo
    if exc is not None and isinstance(exc[1], UnsupportedFeatureError):
        outcome.force_exception(pytest.skip.Exception(_skip_reason(exc[1])))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    start: set[int] | None = getattr(session.config, "_ebpf_fds_at_start", None)
    if start is None or os.environ.get("EBPF_SKIP_FD_CHECK"):
        return
    gc.collect()
    leaked = open_fds() - start
    if leaked:
        lines = ", ".join(f"{fd} -> {_describe(fd)}" for fd in sorted(leaked))
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        msg = f"fd leak: {len(leaked)} fd(s) open at session end that were not open at start: {lines}"
        if reporter is not None:
            reporter.write_line(msg, red=True)
        else:
            print(msg)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(scope="session")
def bpffs() -> str:
    """A mounted bpffs (mounted here when missing); returns its path."""
    from ebpf.core.system import ensure_bpf_fs  # deferred: start-up time (only this helper needs it)

    return ensure_bpf_fs()


@pytest.fixture
def pin_dir(bpffs: str, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh directory on bpffs for the test's pins, removed (with what is left in it) afterwards."""
    import shutil  # deferred: start-up time (only this helper needs it)
    import uuid  # deferred: start-up time (only this helper needs it)

    path = os.path.join(bpffs, f"ebpf-test-{uuid.uuid4().hex[:12]}")
    os.mkdir(path)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def tracefs() -> str:
    """A mounted tracefs (mounted here when missing); returns its path."""
    from ebpf.core.system import ensure_tracefs  # deferred: start-up time (only this helper needs it)

    return ensure_tracefs()
