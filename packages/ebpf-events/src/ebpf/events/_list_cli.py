"""``ebpf list kfuncs [--module M] [--probe NAME] [--json]``: the kernel's kfuncs from its BTF.

The ``list`` command may be shared with other plugins (``ebpf list tracepoints`` ...): it is
created here only when no plugin made it first, and ``kfuncs`` joins its subcommands.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

__all__ = ["add_commands", "list_group"]


def list_group(subparsers: argparse._SubParsersAction[Any]) -> argparse._SubParsersAction[Any]:
    """The subcommands of ``ebpf list``, creating ``list`` when nobody has yet."""
    parser: argparse.ArgumentParser | None = subparsers.choices.get("list")
    if parser is None:
        parser = subparsers.add_parser("list", help="list what the kernel offers (kfuncs, ...)")
        return parser.add_subparsers(dest="list_what", metavar="WHAT", required=True)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            found: argparse._SubParsersAction[Any] = action
            return found
    return parser.add_subparsers(dest="list_what", metavar="WHAT", required=True)


def add_commands(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add ``list kfuncs``."""
    sub = list_group(subparsers)
    text = "kernel functions BPF programs may call (bpf_kfunc decl tags in the kernel's BTF) (ebpf-events)"
    p = sub.add_parser("kfuncs", help=text, description=text)
    p.add_argument("--module", default=None, help="only this module's kfuncs ('vmlinux' for the kernel image)")
    p.add_argument("--grep", default=None, metavar="TEXT", help="only kfuncs whose name contains TEXT")
    p.add_argument("--probe", action="store_true",
                   help="also ask the verifier which program types may call each listed kfunc (slow)")
    p.add_argument("--json", action="store_true", help="a JSON list")
    p.set_defaults(func=_kfuncs)


def _kfuncs(args: argparse.Namespace) -> int:
    import dataclasses

    from ebpf.events.kfuncs import kfunc_program_types, list_kfuncs

    found = list_kfuncs(args.module)
    if args.grep:
        found = [k for k in found if args.grep in k.name]
    if args.probe:
        found = [dataclasses.replace(k, program_types=tuple(p.lower_name for p in kfunc_program_types(k.name)))
                 if k.module == "vmlinux" else k for k in found]
    if args.json:
        print(json.dumps([k.to_dict() for k in found], indent=1))
        return 0
    for k in found:
        extra = f"  [{k.module}]" if k.module != "vmlinux" else ""
        if k.tags:
            extra += f"  ({', '.join(k.tags)})"
        if k.program_types is not None:
            extra += f"  programs: {', '.join(k.program_types) or 'none of those probed'}"
        print(f"{k.prototype}{extra}")
    return 0
