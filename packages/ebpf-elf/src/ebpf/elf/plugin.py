"""ebpf-elf's pluggy hooks: the ELF object loader (``ebpf.core.load("x.o")``) and the
``ebpf inspect`` / ``ebpf compile`` / ``ebpf gen skeleton`` commands."""

from __future__ import annotations

import struct
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # annotations only: argparse is imported by the CLI that calls these
    import argparse

from ebpf.core.plugins import ObjectLoader, hookimpl

__all__ = ["ebpf_object_loaders", "ebpf_cli_commands", "recognizes"]

EM_BPF = 247


def recognizes(path: str, head: bytes) -> bool:
    """True for a little-endian ELF64 object for EM_BPF (by its first bytes)."""
    return (
        len(head) >= 20 and head[:4] == b"\x7fELF" and head[4] == 2 and head[5] == 1
        and struct.unpack_from("<H", head, 18)[0] == EM_BPF
    )


def _load_spec(path: str, **options: Any) -> Any:
    from ebpf.elf.loader import load_spec

    return load_spec(path, **options)


@hookimpl
def ebpf_object_loaders() -> list[ObjectLoader]:
    """The ELF loader."""
    return [ObjectLoader("elf", recognizes, _load_spec)]


def _cmd_inspect(args: argparse.Namespace) -> int:
    from ebpf.core.errors import EBPFError
    from ebpf.elf.info import inspect_elf

    try:
        info = inspect_elf(args.file)
    except EBPFError as exc:
        print(f"ebpf inspect: {exc}", file=sys.stderr)
        return 1
    if args.json:
        import json

        print(json.dumps(info.to_dict(), indent=2))
        return 0
    out = [f"{info.path}: license {info.license!r}, BTF {'yes' if info.btf else 'no'} ({info.btf_types} types), "
           f".BTF.ext {'yes' if info.btf_ext else 'no'}", "", "programs:"]
    for p in info.programs:
        extra = f" -> {p.attach_target or p.attach_to}" if p.attach_target or p.attach_to else ""
        subs = f" (calls {', '.join(p.subprograms)})" if p.subprograms else ""
        out.append(f"  {p.name:<24} {p.type:<16} {p.section}{extra}  {p.insn_count} insns{subs}")
    out.append("maps:")
    for m in info.maps:
        inner = f" inner={m.inner}" if m.inner else ""
        pin = " pinned by name" if m.pinning != "none" else ""
        out.append(f"  {m.name:<24} {m.type:<16} key {m.key_size} value {m.value_size} max {m.max_entries} "
                   f"flags {m.flags:#x} [{m.kind}]{inner}{pin}")
    if info.variables:
        out.append("globals:")
        for v in info.variables:
            ro = " (const)" if v.readonly else ""
            out.append(f"  {v.name:<24} {v.section}+{v.offset} {v.size} bytes{ro}")
    if info.externs:
        out.append("externs: " + ", ".join(info.externs))
    if info.relocations:
        out.append("relocations:")
        for r in info.relocations:
            out.append(f"  {r.program}[{r.insn}] {r.kind:<6} {r.target}")
    if args.btf:
        out.append("btf:")
        out.extend(f"  {line}" for line in _btf_lines(args.file))
    print("\n".join(out))
    return 0


def _btf_lines(path: str) -> list[str]:
    """One line per type of the object's BTF: ``[id] KIND 'name' details``."""
    from ebpf.core.btf import Array, Composite, Datasec, Enum, Float, Int
    from ebpf.elf.objfile import parse_object

    btf = parse_object(path).btf
    if btf is None:
        return ["(none)"]
    lines = []
    for t in btf:
        detail = ""
        if isinstance(t, Composite):
            members = ", ".join(f"{m.name or '(anon)'}@{m.bit_offset // 8}" for m in t.members)
            detail = f" size={t.size} {{{members}}}"
        elif isinstance(t, Datasec):
            vars_ = ", ".join(f"{btf[v.type_id].name}@{v.offset}" for v in t.vars)
            detail = f" size={t.size} {{{vars_}}}"
        elif isinstance(t, (Int, Enum, Float)):
            detail = f" size={t.size}"
        elif isinstance(t, Array):
            detail = f" type={t.type_id} nelems={t.nelems}"
        else:
            detail = f" type={getattr(t, 'type_id', 0)}"
        lines.append(f"[{t.id}] {t.kind_name.upper()} {t.name or '(anon)'!r}{detail}")
    return lines


def _cmd_compile(args: argparse.Namespace) -> int:
    from ebpf.core.errors import EBPFError
    from ebpf.elf.compile import compile_c

    try:
        out = compile_c(args.file, args.output, tuple(args.cflag or ()), compiler=args.compiler)
    except EBPFError as exc:
        print(f"ebpf compile: {exc}", file=sys.stderr)
        return 1
    print(out)
    return 0


def _cmd_gen_skeleton(args: argparse.Namespace) -> int:
    from ebpf.core.errors import EBPFError
    from ebpf.elf.skeleton import generate_skeleton

    try:
        out = generate_skeleton(args.file, args.output, class_name=args.name, compiler=args.compiler,
                                cflags=tuple(args.cflag or ()))
    except EBPFError as exc:
        print(f"ebpf gen skeleton: {exc}", file=sys.stderr)
        return 1
    print(out)
    return 0


@hookimpl
def ebpf_cli_commands(subparsers: Any) -> None:
    """``ebpf inspect FILE.o``, ``ebpf compile FILE.c`` and ``ebpf gen skeleton FILE``."""
    p = subparsers.add_parser("inspect", help="show the programs, maps, globals, BTF and relocations of a .o")
    p.add_argument("file")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--btf", action="store_true", help="also list the object's BTF types")
    p.set_defaults(func=_cmd_inspect)
    c = subparsers.add_parser("compile", help="compile BPF C to an object (clang, or the ziglang toolchain)")
    c.add_argument("file")
    c.add_argument("-o", "--output", default=None)
    c.add_argument("--compiler", choices=("auto", "clang", "zig"), default="auto")
    c.add_argument("-C", "--cflag", action="append", help="extra compiler flag (repeatable)")
    c.set_defaults(func=_cmd_compile)
    g = subparsers.add_parser("gen", help="generate code from a BPF object")
    gsub = g.add_subparsers(dest="gen_command", required=True)
    sk = gsub.add_parser("skeleton", help="a typed Python module that loads a .o (or a .c, compiled first)")
    sk.add_argument("file", help="prog.bpf.c or prog.o")
    sk.add_argument("-o", "--output", default=None, help="the module to write (default: <stem>_skel.py)")
    sk.add_argument("--name", default=None, help="the loader class name")
    sk.add_argument("--compiler", choices=("auto", "clang", "zig"), default="auto")
    sk.add_argument("-C", "--cflag", action="append", help="extra compiler flag (repeatable)")
    sk.set_defaults(func=_cmd_gen_skeleton)
