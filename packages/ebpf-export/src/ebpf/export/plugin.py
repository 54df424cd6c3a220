"""ebpf-export's pluggy hook implementations: the ``ebpf export`` command.

Registered through the ``ebpf`` entry-point group, exactly as a third-party package would be.
"""

from __future__ import annotations

from typing import Any

from ebpf.core.plugins import hookimpl

__all__ = ["ebpf_cli_commands"]


@hookimpl
def ebpf_cli_commands(subparsers: Any) -> None:
    """``ebpf export ...``."""
    from ebpf.export._cli import add_commands

    add_commands(subparsers)
