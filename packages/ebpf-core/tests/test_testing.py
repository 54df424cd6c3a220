"""The shared pytest plugin: the fd-leak check fails a leaking session, and skips name the feature."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest
from ebpf.core.testing import Opener, build_host_program, plugin_registered

pytest_plugins = ["pytester"]

# Installed, the plugin loads through its pytest11 entry point; from a source tree, by -p.
PLUGIN_ARGS = [] if any(ep.name == "ebpf" for ep in entry_points(group="pytest11")) else ["-p", "ebpf.core.testing"]


@pytest.fixture(autouse=True)
def _child_finds_ebpf(monkeypatch: pytest.MonkeyPatch) -> None:
    # The child pytest runs in a temporary directory: give it absolute import paths.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(os.path.abspath(p) for p in sys.path if p))


def test_fd_leak_fails_the_session(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import os
        LEAK = []
        def test_leaks():
            LEAK.append(os.open("/dev/null", os.O_RDONLY))
        """
    )
    result = pytester.runpytest_subprocess(*PLUGIN_ARGS)
    result.stdout.fnmatch_lines(["*fd leak: 1 fd(s)*/dev/null*"])
    assert result.ret == pytest.ExitCode.TESTS_FAILED


def test_clean_session_passes(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import os
        def test_closes():
            os.close(os.open("/dev/null", os.O_RDONLY))
        """
    )
    result = pytester.runpytest_subprocess(*PLUGIN_ARGS)
    assert result.ret == pytest.ExitCode.OK


def test_unsupported_feature_becomes_a_named_skip(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        from ebpf.core.errors import UnsupportedFeatureError
        from ebpf.core.testing import require
        def probe():
            raise UnsupportedFeatureError("map type frobnicator", "9.9")
        def test_via_require():
            require(probe)
        def test_raised_inside():
            probe()
        """
    )
    result = pytester.runpytest_subprocess(*PLUGIN_ARGS, "-rs")
    result.stdout.fnmatch_lines(["*unsupported feature: map type frobnicator*"])
    result.assert_outcomes(skipped=2)


def test_other_errors_are_failures_not_skips(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        from ebpf.core.errors import NotSupportedError
        def test_fails():
            raise NotSupportedError("cannot tell")
        """
    )
    result = pytester.runpytest_subprocess(*PLUGIN_ARGS)
    result.assert_outcomes(failed=1)



def test_kernel_marker_skips_on_older_kernels_and_names_the_version(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest
        @pytest.mark.kernel(min="99.0")
        def test_future():
            raise AssertionError("must not run")
        @pytest.mark.kernel(min="3.0")
        def test_past():
            pass
        """
    )
    result = pytester.runpytest_subprocess(*PLUGIN_ARGS, "-rs")
    result.stdout.fnmatch_lines(["*unsupported feature: test_future*requires Linux >= 99.0*"])
    result.assert_outcomes(passed=1, skipped=1)


def test_opener_child_reports_each_open_errno(tmp_path: Path) -> None:
    present = tmp_path / "present"
    present.write_text("x")
    with Opener() as child:
        assert child.pid != os.getpid()
        assert child.open(str(present)) == 0
        assert child.open(str(tmp_path / "missing")) == errno.ENOENT
    child.close()  # twice is harmless
    assert child.proc.returncode == 0


def test_plugin_registered_registers_for_the_block_only() -> None:
    from ebpf.core import plugins

    class Probe:
        """A plugin with no hooks."""

    probe = Probe()
    with plugin_registered(probe, "testing-probe"):
        assert plugins.plugin_manager().is_registered(probe)
        with plugin_registered(probe, "testing-probe"):  # already there: left alone
            pass
        assert plugins.plugin_manager().is_registered(probe)
    assert not plugins.plugin_manager().is_registered(probe)


def test_build_host_program_reports_compiler_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.c"
    bad.write_text("int main(void) { return }\n")
    with pytest.raises(RuntimeError, match="cannot build"):
        build_host_program(bad, tmp_path / "bad")
    good = tmp_path / "good.c"
    good.write_text("int main(void) { return 7; }\n")
    assert subprocess.run([build_host_program(good, tmp_path / "good")]).returncode == 7


def test_wait_for_returns_once_true_and_fails_at_its_deadline() -> None:
    from ebpf.core.testing import wait_for

    calls: list[int] = []
    wait_for(lambda: calls.append(1) or len(calls) >= 3)
    assert len(calls) == 3
    with pytest.raises(AssertionError, match=r"the moon did not happen within 0\.05 s"):
        wait_for(lambda: False, timeout=0.05, what="the moon")
