"""``ebpf demo``'s plugin contract: the ``ebpf_demo_steps`` hook, DemoContext cleanups and output,
and the demo with only ebpf-core (plugins switched off)."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ebpf.core import plugins
from ebpf.core._cli._demo import run_demo
from ebpf.core.demo import DemoContext, DemoStep
from ebpf.core.errors import UnsupportedFeatureError
from ebpf.core.plugins import hookimpl

pytestmark = pytest.mark.privileged
CORE_SRC = Path(__file__).resolve().parents[1] / "src"


@pytest.fixture
def no_autoload(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A plugin manager without entry-point or EBPF_PLUGINS plugins, forgotten afterwards."""
    monkeypatch.setenv("EBPF_DISABLE_PLUGIN_AUTOLOAD", "1")
    monkeypatch.delenv("EBPF_PLUGINS", raising=False)
    plugins._reset_for_tests()
    yield
    plugins._reset_for_tests()


class _Plugin:
    def __init__(self, *steps: DemoStep) -> None:
        self.steps = list(steps)

    @hookimpl
    def ebpf_demo_steps(self) -> list[DemoStep]:
        return self.steps


def test_cleanups_run_last_first_even_when_one_fails() -> None:
    out = io.StringIO()
    ctx = DemoContext(out=out)
    order: list[str] = []
    ctx.defer(lambda: order.append("first"), "first")
    ctx.defer(lambda: 1 / 0, "broken")
    ctx.defer(lambda: order.append("last"), "last")
    failures = ctx.run_cleanups()
    assert order == ["last", "first"]
    assert len(failures) == 1 and "broken" in failures[0] and "ZeroDivisionError" in failures[0]
    assert ctx.run_cleanups() == []  # nothing runs twice


def test_cleanups_finish_before_a_ctrl_c_raised_by_one_of_them() -> None:
    ctx = DemoContext(out=io.StringIO())
    ran: list[str] = []

    def interrupted() -> None:
        raise KeyboardInterrupt

    ctx.defer(lambda: ran.append("a"), "a")
    ctx.defer(interrupted, "interrupt")
    with pytest.raises(KeyboardInterrupt):
        ctx.run_cleanups()
    assert ran == ["a"]


def test_plain_output_when_not_a_terminal() -> None:
    out = io.StringIO()
    ctx = DemoContext(out=out)
    assert ctx.live is False
    with ctx.live_table(["PID", "COMM"], "launches:") as view:
        view.add_row(1, "init")
        view.add_row(42, "python3")
    text = out.getvalue()
    assert "launches:" in text and "PID" in text and "python3" in text
    assert "\x1b[" not in text  # no terminal escapes


def test_live_display_through_rich() -> None:
    # rich is an optional extra (ebpf-core[demo]); the test extra installs it.
    out = io.StringIO()
    ctx = DemoContext(out=out, live=True)
    ctx.table(["A", "B"], [[1, 2]], "numbers")
    ctx.print("hello")
    assert "numbers" in out.getvalue() and "hello" in out.getvalue()


def test_plugin_steps_run_in_order_with_cleanup_and_summary(no_autoload: None) -> None:
    events: list[str] = []

    def ok(ctx: DemoContext) -> None:
        ctx.defer(lambda: events.append("cleanup ok"), "ok")
        ctx.print("step ok ran")
        ctx.summary("ok: did its thing")

    def broken(ctx: DemoContext) -> None:
        ctx.defer(lambda: events.append("cleanup broken"), "broken")
        raise RuntimeError("boom")

    def unsupported(ctx: DemoContext) -> None:
        raise UnsupportedFeatureError("teleport", "9.9")

    plugin = _Plugin(DemoStep("b-broken", "broken", broken, order=50), DemoStep("a-ok", "ok", ok, order=20),
                     DemoStep("c-unsupported", "unsupported", unsupported, order=60))
    plugins.register(plugin, name="demo-test")
    assert [s.name for s in plugins.demo_steps()] == ["a-ok", "b-broken", "c-unsupported"]
    out = io.StringIO()
    status = run_demo(out=out, live=False, duration=0.2)
    text = out.getvalue()
    assert status == 1  # a step failed
    assert text.index("step ok ran") < text.index("FAILED: RuntimeError: boom")
    assert "skipped:" in text and "teleport" in text
    assert "ok: did its thing" in text
    assert events == ["cleanup broken", "cleanup ok"]  # every cleanup, last first
    assert "demo_xdp" in text  # core's program, in the listing


def test_core_only_says_what_plugins_would_add(no_autoload: None) -> None:
    out = io.StringIO()
    assert run_demo(out=out, live=False) == 0
    text = out.getvalue()
    assert "XDP_PASS" in text
    assert "pip install ebpf-events" in text and "pip install ebpf-net" in text


def test_only_selects_steps_and_rejects_unknown(no_autoload: None) -> None:
    from ebpf.core.errors import EBPFError

    with pytest.raises(EBPFError, match="unknown demo step"):
        run_demo(out=io.StringIO(), only=["nope"])
    out = io.StringIO()
    assert run_demo(out=out, only=["core"]) == 0


def test_bad_step_record_is_reported_not_fatal(no_autoload: None) -> None:
    class Bad:
        @hookimpl
        def ebpf_demo_steps(self) -> Any:
            return ["not a step"]

    plugins.register(Bad(), name="bad-demo")
    with pytest.warns(plugins.PluginWarning, match="expected DemoStep"):
        assert plugins.demo_steps() == []


def test_core_only_demo_in_a_subprocess() -> None:
    env = dict(os.environ, EBPF_DISABLE_PLUGIN_AUTOLOAD="1", PYTHONPATH=str(CORE_SRC))
    env.pop("EBPF_PLUGINS", None)  # named plugins load even with autoload off (the source tree / VM harness sets it)
    done = subprocess.run([sys.executable, "-m", "ebpf.core.cli", "demo"], env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert "pip install ebpf-net" in done.stdout and "released everything" in done.stdout
