"""ebpf-lang's pluggy hook: the ``ebpf lang`` command.

- ``ebpf lang check FILE.py``: compile every ``@kernel`` function, report errors at their lines;
- ``ebpf lang disasm FILE.py [--function NAME]``: the instructions under their Python lines;
- ``ebpf lang compile FILE.py [-o OUT.o]``: write the ELF object.

``FILE.py`` is imported as a module named after the file (its ``if __name__ == "__main__"``
block does not run).
"""

from __future__ import annotations

import os
import sys
import types
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # annotations only: argparse is imported by the CLI that calls these
    import argparse

from ebpf.core.plugins import hookimpl

__all__ = ["ebpf_cli_commands", "import_file"]


def import_file(path: str) -> types.ModuleType:
    """Import the Python file ``path`` as a module (without running its ``__main__`` block).

    :raises OSError: when the file cannot be read.
    """
    name = os.path.splitext(os.path.basename(path))[0].replace("-", "_") or "kernel_module"
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise OSError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # Struct annotations resolve through the module
    spec.loader.exec_module(module)
    return module


def _functions(module: types.ModuleType, only: str | None) -> list[Any]:
    from ebpf.lang.kernel import KernelFunction

    found = [v for v in vars(module).values() if isinstance(v, KernelFunction)]
    if only is not None:
        found = [f for f in found if f.name == only]
    return found


def _run(args: argparse.Namespace) -> int:
    from ebpf.core.errors import EBPFError
    from ebpf.lang import compile as compile_object
    from ebpf.lang.errors import LangError

    try:
        module = import_file(args.file)
    except (OSError, SyntaxError) as exc:
        print(f"ebpf lang: {exc}", file=sys.stderr)
        return 1
    functions = _functions(module, getattr(args, "function", None))
    if not functions:
        print(f"ebpf lang: no @kernel functions in {args.file}", file=sys.stderr)
        return 1
    try:
        if args.lang_command == "compile":
            out = args.output or os.path.splitext(args.file)[0] + ".o"
            compile_object(functions, out)
            print(f"wrote {out}: {', '.join(f'{f.name} ({f.compile().insn_count} insns)' for f in functions)}")
        elif args.lang_command == "disasm":
            for f in functions:
                print(f"{f.name} ({f.section}):\n{f.disassemble()}\n")
        else:
            rows = [{"name": f.name, "section": f.section, "insns": f.compile().insn_count,
                     "stack": f.compile().stack_size} for f in functions]
            if args.json:
                import json

                print(json.dumps(rows, indent=2))
            else:
                for r in rows:
                    print(f"{r['name']:<24} {r['section']:<40} {r['insns']:>5} insns {r['stack']:>4} stack bytes")
    except LangError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    except EBPFError as exc:
        print(f"ebpf lang: {exc}", file=sys.stderr)
        return 1
    return 0


@hookimpl
def ebpf_cli_commands(subparsers: argparse._SubParsersAction[Any]) -> None:
    """``ebpf lang check|disasm|compile FILE.py``."""
    lang = subparsers.add_parser("lang", help="compile kernel programs written in Python (ebpf-lang)")
    sub = lang.add_subparsers(dest="lang_command", required=True)
    check = sub.add_parser("check", help="compile every @kernel function of a file and report errors")
    check.add_argument("file")
    check.add_argument("--json", action="store_true", help="one record per function")
    disasm = sub.add_parser("disasm", help="show the instructions under their Python lines")
    disasm.add_argument("file")
    disasm.add_argument("--function", help="only this kernel function")
    comp = sub.add_parser("compile", help="write an ELF object (load_elf and libbpf load it)")
    comp.add_argument("file")
    comp.add_argument("-o", "--output", help="the object to write (default: FILE.o)")
    for p in (check, disasm, comp):
        p.set_defaults(func=_run)
