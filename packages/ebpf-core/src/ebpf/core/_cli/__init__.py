"""The ``ebpf`` command (private: use :func:`ebpf.core.cli.main`).

Subcommands live one group per module; plugins add theirs through the
``ebpf_cli_commands(subparsers)`` hook.  Every listing takes ``--json``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ebpf.core._cli import _btf, _check, _demo, _objects, _top
from ebpf.core._cli._signals import Terminated, sigterm_as_interrupt
from ebpf.core.errors import EBPFError

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The ``ebpf`` argument parser, with every built-in and plugin subcommand."""
    from ebpf.core import plugins  # deferred: start-up time (only this command needs it)

    parser = argparse.ArgumentParser(
        prog="ebpf",
        description="Inspect and use eBPF from Python: programs, maps, links, BTF, kernel features.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _check.add_commands(sub)
    _objects.add_commands(sub)
    _btf.add_commands(sub)
    _top.add_commands(sub)
    _demo.add_commands(sub)
    plugins.add_cli_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``ebpf`` command.

    :param argv: the arguments (default ``sys.argv[1:]``).
    :returns: the exit status: 0 on success, 1 on an ``EBPFError`` (printed to stderr),
        2 on a usage error, 130 when interrupted (Ctrl-C), 143 on SIGTERM -- unless the command
        handles the interruption itself (``trace`` and ``top`` detach and exit 0 on either).
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help or a usage error; in-process callers get the status back
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        # every command, long-running ones included (trace, top, demo): SIGTERM unwinds like Ctrl-C, so
        # programs are detached and objects closed on `kill` as well
        with sigterm_as_interrupt():
            status = func(args)
    except EBPFError as exc:
        print(f"ebpf: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as exc:
        return 143 if isinstance(exc, Terminated) else 130
    except BrokenPipeError:  # `ebpf prog list | head`
        return 0
    return int(status or 0)
