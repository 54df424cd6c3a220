"""``ebpf btf dump``: the kernel's (or a file's) BTF as C (a ``vmlinux.h``) or as raw type records."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator
from typing import Any

__all__ = ["add_commands"]


def _load(path: str | None) -> Any:
    from ebpf.core import btf  # deferred: start-up time (only this command needs it)
    from ebpf.core.errors import BTFError  # deferred: start-up time (only this command needs it)

    if path is None:
        return btf.load_vmlinux()
    real = os.path.realpath(path)
    if os.path.dirname(real) == "/sys/kernel/btf" and os.path.basename(real) != "vmlinux":
        return btf.load_module(os.path.basename(real))  # split BTF: needs vmlinux as its base
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise BTFError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if data[:4] == b"\x7fELF":
        raise BTFError(f"{path} is an ELF object: `ebpf inspect` (ebpf-elf) reads its .BTF section")
    return btf.parse(data, name=os.path.basename(path))


def _raw_lines(spec: Any) -> Iterator[str]:
    for typ in spec:
        yield f"[{typ.id}] {typ.kind.name} '{typ.name or '(anon)'}'" + _details(typ)


def _details(typ: Any) -> str:
    parts = []
    for attr in ("size", "bits", "type_id", "nelems", "vlen"):
        value = getattr(typ, attr, None)
        if isinstance(value, int):
            parts.append(f"{attr}={value}")
    members = getattr(typ, "members", None)
    if members is not None and not parts:
        parts.append(f"vlen={len(members)}")
    return (" " + " ".join(parts)) if parts else ""


def _dump(args: argparse.Namespace) -> int:
    from ebpf.core import btf  # deferred: start-up time (only this command needs it)
    from ebpf.core.errors import NotSupportedError  # deferred: start-up time (only this command needs it)

    spec = _load(args.file)
    out = sys.stdout
    if args.format == "c":
        dump_c_header = getattr(btf, "dump_c_header", None)
        if dump_c_header is None:
            raise NotSupportedError("this ebpf-core has no C header writer (ebpf.core.btf.dump_c_header)")
        out.write(dump_c_header(spec))
    else:
        for line in _raw_lines(spec):
            out.write(line + "\n")
    out.flush()
    return 0


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``btf dump`` to the ``ebpf`` parser."""
    p = sub.add_parser("btf", help="BTF type information")
    btf_sub = p.add_subparsers(dest="btf_command", metavar="{dump}", required=True)
    d = btf_sub.add_parser("dump", help="dump BTF as C (a vmlinux.h) or raw type records")
    d.add_argument("--format", choices=("c", "raw"), default="raw", help="c: a header for BPF C; raw: one line per type")
    d.add_argument("file", nargs="?", default=None,
                   help="a BTF file (default: the running kernel's, /sys/kernel/btf/vmlinux)")
    d.set_defaults(func=_dump)
