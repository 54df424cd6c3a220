"""Regenerate ``include/bpf/bpf_helper_defs.h`` from the kernel's own list of BPF helpers.

The kernel documents every helper in ``include/uapi/linux/bpf.h``: a comment block with one
prototype line per helper (`` * long bpf_map_update_elem(struct bpf_map *map, ...)``) and the
``__BPF_FUNC_MAPPER`` list whose order gives the helper ids.  This script reads both from a
uapi header (default ``/usr/include/linux/bpf.h``, Debian's ``linux-libc-dev``), turns the
kernel-internal types into what a BPF program sees (``u64`` -> ``__u64``, ``struct sk_buff *``
-> ``struct __sk_buff *``, ``struct bpf_map *`` -> ``void *``), checks the ids against
``ebpf.core.types.Helper`` and writes one ``static`` function pointer per helper.  Helpers the
header knows by id but documents without a prototype get an unprototyped declaration.

Run: ``python3 packages/ebpf-elf/tools/gen_helpers.py [path/to/linux/bpf.h]``.
"""

from __future__ import annotations

import pathlib
import re
import sys

HERE = pathlib.Path(__file__).resolve().parent
TARGET = HERE.parent / "src/ebpf/elf/include/bpf/bpf_helper_defs.h"

_PROTO = re.compile(r"^ \* ((?:const )?(?:struct )?[a-z_0-9]+ ?\**)\s*(bpf_[a-z0-9_]+)\((.*)\)\s*$")
_MAPPER = re.compile(r"^\s*FN\(([a-z0-9_]+)(?:,\s*(\d+))?")

# Kernel-side names -> the names a BPF program compiles against.
_TYPES = {
    "u8": "__u8", "u16": "__u16", "u32": "__u32", "u64": "__u64",
    "s8": "__s8", "s16": "__s16", "s32": "__s32", "s64": "__s64",
    "size_t": "unsigned long",
    "struct bpf_map": "void",
    "struct sk_buff": "struct __sk_buff",
    "struct sk_msg_buff": "struct sk_msg_md",
    "struct xdp_buff": "struct xdp_md",
}


def _convert(decl: str) -> str:
    """One declaration (``const struct sk_buff *skb``) with kernel types translated."""
    decl = decl.strip()
    if decl in ("...", "void"):
        return decl
    const = ""
    if decl.startswith("const "):
        const, decl = "const ", decl[6:]
    m = re.match(r"^((?:struct |unsigned )?[A-Za-z_0-9]+)(.*)$", decl)
    if m is None:
        raise ValueError(f"cannot read the declaration {decl!r}")
    base, rest = m.group(1), m.group(2)
    return const + _TYPES.get(base, base) + rest


def parse_header(text: str) -> tuple[list[str], dict[str, tuple[str, list[str]]]]:
    """(helper names in id order, {name: (return type, [parameter declarations])})."""
    order: list[str] = []
    in_mapper = False
    for line in text.splitlines():
        if "__BPF_FUNC_MAPPER(FN" in line and "#define" in line:
            in_mapper = True
            continue
        if in_mapper:
            m = _MAPPER.match(line)
            if m:
                if m.group(2) is not None and int(m.group(2)) != len(order):
                    raise ValueError(f"helper {m.group(1)}: id {m.group(2)} out of order")
                order.append(m.group(1))
            elif not line.strip().endswith("\\") and order:
                in_mapper = False
    protos: dict[str, tuple[str, list[str]]] = {}
    for line in text.splitlines():
        m = _PROTO.match(line)
        if m is None:
            continue
        ret, name, params = m.group(1).strip(), m.group(2), m.group(3)
        args = [] if params.strip() in ("", "void") else [p for p in params.split(",")]
        protos[name[4:]] = (ret, args)
    if not order:
        raise ValueError("no __BPF_FUNC_MAPPER list found")
    return order, protos


# Helpers newer than the header at hand (from ebpf.core.types.Helper), as their kernels document them.
NEWER: dict[str, tuple[str, list[str]]] = {
    "cgrp_storage_get": ("void *", ["struct bpf_map *map", "struct cgroup *cgroup", "void *value", "u64 flags"]),
    "cgrp_storage_delete": ("long", ["struct bpf_map *map", "struct cgroup *cgroup"]),
}


def _forwards(decls: list[str]) -> list[str]:
    """Struct names used by the prototypes (declared up front so each use names one type)."""
    found: list[str] = []
    for d in decls:
        for name in re.findall(r"struct ([A-Za-z_0-9]+)", d):
            if name not in found:
                found.append(name)
    return sorted(found)


def render(text: str, source: str = "include/uapi/linux/bpf.h") -> str:
    """The header for the uapi header ``text``."""
    order, protos = parse_header(text)
    order = order + _newer(len(order))
    protos = {**NEWER, **protos}
    lines: list[str] = []
    decls: list[str] = []
    for hid, name in enumerate(order):
        if hid == 0:
            continue
        proto = protos.get(name)
        if proto is None:  # known by id only: unprototyped (valid C17), the verifier checks arguments
            lines.append(f"static long (* const bpf_{name})() = (void *) {hid};")
            continue
        ret, args = proto
        params = ", ".join(_convert(a) for a in args) or "void"
        ret_c = _convert(ret)
        decls += [ret_c, params]
        star = ret_c.endswith("*")
        lines.append(f"static {ret_c}{'' if star else ' '}(* const bpf_{name})({params}) = (void *) {hid};")
    head = [
        "/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */",
        f"/* Generated by packages/ebpf-elf/tools/gen_helpers.py from the helper list of {source}:",
        f" * {len(order) - 1} helpers, ids in the kernel's order.  Do not edit. */",
        "#ifndef __BPF_HELPER_DEFS_H__",
        "#define __BPF_HELPER_DEFS_H__",
        "",
        *[f"struct {n};" for n in _forwards(decls)],
        "",
    ]
    return "\n".join([*head, *lines, "", "#endif /* __BPF_HELPER_DEFS_H__ */", ""])


def _newer(first: int) -> list[str]:
    """Names of the helpers ebpf.core.types.Helper knows past id ``first - 1``."""
    try:
        from ebpf.core.types import Helper
    except ImportError:
        return []
    return [h.name.lower() for h in sorted(Helper, key=int) if h >= first]


def _check_ids(order: list[str]) -> None:
    """The ids must agree with ebpf.core.types.Helper (the assembler's helper names)."""
    try:
        from ebpf.core.types import Helper
    except ImportError:
        return
    for hid, name in enumerate(order):
        try:
            known = Helper(hid).name.lower()
        except ValueError:
            continue
        if known != name:
            raise SystemExit(f"helper id {hid}: the header says {name!r}, ebpf.core.types.Helper says {known!r}")


def main(argv: list[str]) -> int:
    """Write the header; prints its path."""
    src = pathlib.Path(argv[0] if argv else "/usr/include/linux/bpf.h")
    text = src.read_text()
    order, _ = parse_header(text)
    _check_ids(order)
    TARGET.parent.mkdir(parents=True, exist_ok=True)
    TARGET.write_text(render(text))
    print(TARGET)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
