"""The records of ``ebpf demo``: :class:`DemoStep` (what a plugin contributes through the
``ebpf_demo_steps`` hook) and :class:`DemoContext` (what a step gets to print, to register
cleanups and to report).

A step is a plain callable ``run(ctx)``; it prints through ``ctx`` (plain lines, or a live
``rich`` display when stdout is a terminal and rich is installed), registers every object it
creates with :meth:`DemoContext.defer` (cleanups always run, last registered first, even on
Ctrl-C or an exception), records the programs it loaded with :meth:`DemoContext.track` and
one-line results with :meth:`DemoContext.summary`::

    def run(ctx: DemoContext) -> None:
        prog = ctx.track(load_program(...))
        ctx.defer(prog.close, "close program")
        ctx.print("loaded", prog.name)
        ctx.summary("tracer: saw 3 launches")

    DemoStep("trace", "trace process launches", run, order=20, distribution="ebpf-events")
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TextIO

from ebpf.core.records import dataclass, field

__all__ = ["DemoStep", "DemoContext", "LiveTable"]


@dataclass(frozen=True)
class DemoStep:
    """One part of ``ebpf demo``, returned by the ``ebpf_demo_steps`` hook.

    :ivar name: a short identifier (``"trace-exec"``), unique among steps.
    :ivar title: one line shown as the step's heading.
    :ivar run: ``run(ctx: DemoContext) -> None``; raises to report a failure (the demo goes on
        with the next step).  A :class:`~ebpf.core.errors.NotSupportedError` (such as
        :class:`~ebpf.core.errors.UnsupportedFeatureError`) is shown as "skipped", not as a failure.
    :ivar order: steps run by ascending order (core's own part is 10; events 20; net 30, 40).
    :ivar distribution: the distribution contributing the step (``"ebpf-net"``).
    """

    name: str
    title: str
    run: Callable[[DemoContext], None]
    order: int = 100
    distribution: str = ""


@dataclass
class _Cleanup:
    """Something to undo when the demo ends, and what it is (for the message if it fails)."""

    func: Callable[[], Any]
    what: str


class LiveTable:
    """A table that grows while a step runs, from :meth:`DemoContext.live_table`.

    On a terminal with ``rich`` it redraws in place; otherwise the final rows are printed as an
    aligned plain table when the ``with`` block ends (so piped output stays readable).
    """

    def __init__(self, ctx: DemoContext, headers: Sequence[str], title: str = "") -> None:
        """Start an empty table (use it as a context manager)."""
        self._ctx = ctx
        self.headers = list(headers)
        self.title = title
        self.rows: list[list[Any]] = []
        self._live: Any = None

    def add_row(self, *values: Any) -> None:
        """Append a row and redraw."""
        self.rows.append(list(values))
        self._refresh()

    def set_rows(self, rows: Sequence[Sequence[Any]]) -> None:
        """Replace every row and redraw."""
        self.rows = [list(r) for r in rows]
        self._refresh()

    def _render(self) -> Any:
        from ebpf.core._cli._output import cell  # deferred: start-up time (only this path needs it)
        from rich.table import Table  # deferred: optional dependency (rich, the [demo] extra)

        table = Table(*self.headers, title=self.title or None, title_justify="left")
        for row in self.rows[-20:]:  # keep it on one screen
            table.add_row(*(cell(v) for v in row))
        return table

    def _refresh(self) -> None:
        if self._live is not None:
            self._live.update(self._render())

    def __enter__(self) -> LiveTable:
        if self._ctx.live:
            from rich.live import Live  # deferred: optional dependency (rich, the [demo] extra)

            self._live = Live(self._render(), console=self._ctx._console, refresh_per_second=8, transient=False)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.update(self._render())
            self._live.__exit__(None, None, None)
            self._live = None
            return
        from ebpf.core._cli._output import format_table  # deferred: start-up time (only this path needs it)

        if self.title:
            self._ctx.print(self.title)
        self._ctx.print("\n".join("   " + line for line in format_table(self.headers, self.rows).splitlines()))


@dataclass
class DemoContext:
    """What a :class:`DemoStep` gets: output, cleanups, tracked programs and summary lines.

    :ivar out: where to print (default stdout).
    :ivar live: use a live ``rich`` display; None (default) means "when ``out`` is a terminal
        and rich is importable".
    :ivar duration: how long (seconds) a step may spend generating and watching events.
    """

    out: TextIO | None = None
    live: bool | None = None
    duration: float = 2.0
    summaries: list[str] = field(default_factory=list)
    program_ids: list[int] = field(default_factory=list)
    _cleanups: list[_Cleanup] = field(default_factory=list, init=False, repr=False)
    _console: Any = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        stream = self.out if self.out is not None else sys.stdout
        self.out = stream
        if self.live is None:
            self.live = bool(getattr(stream, "isatty", lambda: False)()) and _have_rich()
        if self.live:
            from rich.console import Console  # deferred: optional dependency (rich, the [demo] extra)

            self._console = Console(file=stream, highlight=False)

    # -- output -------------------------------------------------------------------------------

    def print(self, *parts: Any) -> None:
        """Print one line (parts joined by spaces), through rich when the display is live."""
        text = " ".join(str(p) for p in parts)
        if self._console is not None:
            self._console.print(text, markup=False)
        else:
            print(text, file=self.out, flush=True)

    def heading(self, text: str) -> None:
        """Print a step heading (bold on a live display)."""
        if self._console is not None:
            self._console.rule(text, align="left")
        else:
            self.print("")
            self.print(f"== {text}")

    def table(self, headers: Sequence[str], rows: Sequence[Sequence[Any]], title: str = "") -> None:
        """Print a finished table."""
        view = self.live_table(headers, title)
        view.rows = [list(r) for r in rows]
        if self._console is not None:
            self._console.print(view._render())
            return
        with view:
            pass

    def live_table(self, headers: Sequence[str], title: str = "") -> LiveTable:
        """A table that redraws as rows arrive (plain: printed once at the end); use with ``with``."""
        return LiveTable(self, headers, title)

    # -- bookkeeping --------------------------------------------------------------------------

    def defer(self, func: Callable[[], Any], what: str = "") -> None:
        """Register a cleanup; cleanups run last-registered first when the demo ends, whatever happens.

        :param func: called without arguments; its exceptions are reported, never raised.
        :param what: a description for the report when it fails.
        """
        self._cleanups.append(_Cleanup(func, what or getattr(func, "__qualname__", repr(func))))

    def track(self, program: Any) -> Any:
        """Remember a loaded program for the final listing; returns it unchanged."""
        try:
            self.program_ids.append(int(program.info().id))
        except Exception:  # a listing detail; never fail a step over it
            pass
        return program

    def summary(self, line: str) -> None:
        """Record one line for the final summary."""
        self.summaries.append(line)

    def run_cleanups(self) -> list[str]:
        """Run every registered cleanup (last first), even if one fails or Ctrl-C arrives meanwhile.

        :returns: a description of each cleanup that failed (empty when all went well).
        """
        failures: list[str] = []
        interrupted = False
        while self._cleanups:
            item = self._cleanups.pop()
            try:
                item.func()
            except KeyboardInterrupt:  # finish cleaning up first, then let the interrupt through
                interrupted = True
            except Exception as exc:
                failures.append(f"{item.what}: {type(exc).__name__}: {exc}")
        if interrupted:
            raise KeyboardInterrupt
        return failures

    @contextlib.contextmanager
    def cleaning_up(self) -> Iterator[DemoContext]:
        """``with ctx.cleaning_up():`` runs :meth:`run_cleanups` when the block ends, however it ends."""
        try:
            yield self
        finally:
            for failure in self.run_cleanups():
                self.print(f"cleanup failed: {failure}")


def _have_rich() -> bool:
    import importlib.util  # deferred: start-up time (only this path needs it)

    try:
        return importlib.util.find_spec("rich") is not None
    except (ImportError, ValueError):
        return False
