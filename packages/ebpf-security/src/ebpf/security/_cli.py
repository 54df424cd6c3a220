"""``ebpf lsm hooks [--category C] [--json]``: the LSM hooks of the running kernel.

Registered by ebpf-security through the ``ebpf_cli_commands`` hook.  Plain output is one line
per hook (name, category, whether it can deny, the C prototype); ``--json`` prints a JSON list
of objects with ``name``, ``category``, ``args`` (``[name, type]`` pairs), ``return_type`` and
``can_deny``.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

__all__ = ["add_commands", "print_hooks"]


def print_hooks(category: str | None = None, as_json: bool = False) -> int:
    """Print the hooks of the running kernel (optionally one category).

    :returns: 0.
    :raises EBPFError: for an unknown category; UnsupportedFeatureError without BTF or BPF LSM hooks.
    """
    from ebpf.security.hooks import list_lsm_hooks

    hooks = list_lsm_hooks(category)
    if as_json:
        data = [{"name": h.name, "category": h.category, "args": [list(a) for a in h.args],
                 "return_type": h.return_type, "can_deny": h.can_deny} for h in hooks]
        print(json.dumps(data, indent=2))
        return 0
    name_w = max([4, *(len(h.name) for h in hooks)])
    cat_w = max([8, *(len(h.category) for h in hooks)])
    print(f"{'HOOK'.ljust(name_w)} {'CATEGORY'.ljust(cat_w)} DENY PROTOTYPE")
    for h in hooks:
        print(f"{h.name.ljust(name_w)} {h.category.ljust(cat_w)} {'yes ' if h.can_deny else 'no  '} {h.signature()}")
    return 0


def _hooks(args: argparse.Namespace) -> int:
    return print_hooks(args.category, args.json)


def add_commands(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add ``lsm hooks`` to the ``ebpf`` parser."""
    from ebpf.security.hooks import CATEGORIES

    p = subparsers.add_parser("lsm", help="BPF LSM: the kernel's security hooks (ebpf-security)")
    sub = p.add_subparsers(dest="lsm_command", metavar="COMMAND", required=True)
    text = "the LSM hooks of the running kernel, from its BTF, with their arguments"
    h = sub.add_parser("hooks", help=text, description=text)
    h.add_argument("--category", choices=CATEGORIES, default=None, help="only hooks of this category")
    h.add_argument("--json", action="store_true", help="a JSON list instead of columns")
    h.set_defaults(func=_hooks)
