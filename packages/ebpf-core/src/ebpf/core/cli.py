"""The ``ebpf`` command: ``ebpf check``, ``ebpf prog|map|link list``, ``ebpf btf dump``, ``ebpf top``, ``ebpf demo``.

The console script ``ebpf`` calls :func:`main`; ``python -m ebpf.core.cli`` does the same.
Plugins add subcommands through the ``ebpf_cli_commands(subparsers)`` hook.
"""

from __future__ import annotations

from ebpf.core._cli import build_parser, main

__all__ = ["main", "build_parser"]

if __name__ == "__main__":
    raise SystemExit(main())
