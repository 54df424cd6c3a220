"""``dump_c_header``: write BTF as a C header (``vmlinux.h``), as ``bpftool btf dump format c`` does.

Every named struct/union is forward-declared first; then types are emitted in dependency
order (a type used by value is defined before its user; through a pointer a forward
declaration is enough).  Anonymous structs, unions and enums are written inline.  Struct
layouts are reproduced exactly: explicit padding (``long: 64;``) where the BTF offsets
differ from natural C alignment, ``__attribute__((packed))`` where a member is misaligned.
Functions tagged ``bpf_kfunc`` (the kernel's kfuncs) end the header as weak ``__ksym`` externs.
"""

from __future__ import annotations

import sys

from ebpf.core.btf.spec import Spec
from ebpf.core.btf.types import (
    Array,
    Composite,
    Const,
    DeclTag,
    Enum,
    Enum64,
    Float,
    Func,
    FuncProto,
    Fwd,
    Int,
    Pointer,
    Qualifier,
    Restrict,
    Struct,
    Type,
    Typedef,
    TypeTag,
    Union,
    Void,
    Volatile,
)
from ebpf.core.errors import BTFError

__all__ = ["dump_c_header"]

_PRAGMA_PUSH = (
    "#ifndef BPF_NO_PRESERVE_ACCESS_INDEX\n"
    "#pragma clang attribute push (__attribute__((preserve_access_index)), apply_to = record)\n"
    "#endif\n"
)
_PRAGMA_POP = "#ifndef BPF_NO_PRESERVE_ACCESS_INDEX\n#pragma clang attribute pop\n#endif\n"
# A compiler built-in: redefining it breaks compilation (bpftool skips it too).
_SKIP_TYPEDEFS = {"__builtin_va_list"}


def dump_c_header(spec: Spec | None = None, guard: str = "__VMLINUX_H__") -> str:
    """Every type of ``spec`` (default: the running kernel's BTF) as a compilable C header.

    :param spec: the BTF to dump; None for ``/sys/kernel/btf/vmlinux``.
    :param guard: the include-guard macro.
    :returns: the header text (with ``preserve_access_index`` applied to every record, for CO-RE).
    :raises BTFError: when the BTF is malformed.
    """
    if spec is None:
        from ebpf.core.btf.load import load_vmlinux  # deferred: start-up time (only this path needs it)

        spec = load_vmlinux()
    spec.validate()  # every referenced id in range, no qualifier cycles
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(max(old, 5000))
    try:
        return _Dumper(spec).dump(guard)
    except RecursionError:
        raise BTFError("BTF types nested too deeply to dump (cycle?)") from None
    finally:
        sys.setrecursionlimit(old)


class _Dumper:
    def __init__(self, spec: Spec) -> None:
        self.spec = spec
        self.types: list[Type] = [spec.type_by_id(i) for i in range(spec.count)]
        self.names: dict[int, str] = {}
        self.tag_kind: dict[str, str] = {}
        self.enum_values: dict[tuple[int, int], str] = {}
        self.referenced: set[int] = set()
        self.state: dict[int, int] = {}
        self.active: set[int] = set()
        self.order: list[int] = []
        self._resolve_names()

    def _resolve_names(self) -> None:
        tags: dict[str, int] = {}
        idents: dict[str, int] = {}

        def unique(table: dict[str, int], name: str) -> str:
            n = table.get(name, 0) + 1
            table[name] = n
            return name if n == 1 else f"{name}___{n}"

        for t in self.types:
            if isinstance(t, (Composite, Enum)) and t.name:
                self.names[t.id] = unique(tags, t.name)
                self.tag_kind.setdefault(t.name, "union" if isinstance(t, Union) else "enum" if isinstance(t, Enum) else "struct")
            elif isinstance(t, Typedef):
                self.names[t.id] = unique(idents, t.name)
            if isinstance(t, Enum):
                for i, v in enumerate(t.values):
                    self.enum_values[(t.id, i)] = unique(idents, v.name)
            for ref in _refs(t):
                self.referenced.add(ref)
        for t in self.types:
            if isinstance(t, Fwd) and t.name:
                self.names[t.id] = t.name  # refers to the definition of that name, if any
                if t.name not in self.tag_kind:
                    tags.setdefault(t.name, 1)

    # -- ordering -------------------------------------------------------------------------------

    def _order(self, tid: int, through_ptr: bool) -> None:
        t = self.types[tid] if 0 <= tid < len(self.types) else None
        if t is None:
            raise BTFError(f"type id {tid} out of range")
        if isinstance(t, Composite):
            if t.name and through_ptr:
                return  # the forward declaration at the top is enough
            if self.state.get(tid):
                return
            self.state[tid] = 1
            for m in t.members:
                self._order(m.type_id, False)
            self.state[tid] = 2
            if t.name:
                self.order.append(tid)
        elif isinstance(t, Enum):
            if not self.state.get(tid):
                self.state[tid] = 2
                if t.name:
                    self.order.append(tid)
        elif isinstance(t, Typedef):
            # The typedef itself only needs its target declared; a user of the typedef by
            # value needs the target complete, so that is ordered after the typedef.
            if not self.state.get(tid):
                self.state[tid] = 1
                self._order(t.type_id, True)
                self.state[tid] = 2
                if t.name not in _SKIP_TYPEDEFS:
                    self.order.append(tid)
            if not through_ptr and self.state[tid] == 2:
                self._order(t.type_id, False)
        elif isinstance(t, (Pointer, Array, Qualifier)):
            if tid in self.active:
                return  # a cycle without a struct in it: not C, cut it
            self.active.add(tid)
            if isinstance(t, Pointer):
                self._order(t.type_id, True)
            elif isinstance(t, Array):
                self._order(t.type_id, False)  # array elements must be complete, even behind a pointer
            else:
                self._order(t.type_id, through_ptr)
            self.active.discard(tid)
        elif isinstance(t, FuncProto):
            if self.state.get(tid):
                return
            self.state[tid] = 1
            self._order(t.type_id, True)
            for p in t.params:
                self._order(p.type_id, True)
            self.state[tid] = 2

    # -- declarations -----------------------------------------------------------------------------

    def _tag(self, t: Type) -> str:
        if isinstance(t, Fwd):
            kw = self.tag_kind.get(t.name) or ("union" if t.is_union else "struct")
            return f"{kw} {t.name}"
        kw = "union" if isinstance(t, Union) else "enum" if isinstance(t, Enum) else "struct"
        return f"{kw} {self.names[t.id]}"

    def decl(self, tid: int, inner: str, lvl: int, depth: int = 0) -> str:
        if depth > 256 or lvl > 64:
            raise BTFError(f"type {tid} nests too deeply to write as C (cycle?)")
        t = self.types[tid]
        d = depth + 1
        if isinstance(t, Void):
            return _join("void", inner)
        if isinstance(t, (Int, Float)):
            return _join(t.name, inner)
        if isinstance(t, (Composite, Enum)):
            if t.name:
                return _join(self._tag(t), inner)
            body = self._struct_body(t, lvl) if isinstance(t, Composite) else self._enum_body(t, lvl)
            return _join(body, inner)
        if isinstance(t, Fwd):
            return _join(self._tag(t), inner)
        if isinstance(t, Typedef):
            return _join(self.names[t.id], inner)
        if isinstance(t, Pointer):
            target = self._skip_tags(t.type_id)
            s = "*" + inner
            if isinstance(target, (Array, FuncProto)):
                s = f"({s})"
            return self.decl(t.type_id, s, lvl, d)
        if isinstance(t, TypeTag):
            return self.decl(t.type_id, inner, lvl, d)
        if isinstance(t, (Const, Volatile, Restrict)):
            q = {Const: "const", Volatile: "volatile", Restrict: "restrict"}[type(t)]
            if isinstance(self._skip_tags(t.type_id), Pointer):
                return self.decl(t.type_id, _join(q, inner), lvl, d)
            text = self.decl(t.type_id, inner, lvl, d)
            return text if text.startswith(q + " ") else f"{q} {text}"
        if isinstance(t, Array):
            return self.decl(t.type_id, f"{inner}[{t.nelems}]", lvl, d)
        if isinstance(t, FuncProto):
            if not t.params:
                params = "void"
            else:
                params = ", ".join("..." if p.type_id == 0 else self.decl(p.type_id, "", lvl, d) for p in t.params)
            return self.decl(t.type_id, f"{inner}({params})", lvl, d)
        return _join("void", inner)  # FUNC/VAR/DATASEC/DECL_TAG never appear in declarations

    def _skip_tags(self, tid: int) -> Type:
        t = self.types[tid]
        for _ in range(len(self.types)):
            if not isinstance(t, TypeTag):
                break
            t = self.types[t.type_id]
        return t

    def _struct_body(self, t: Composite, lvl: int) -> str:
        kw = "struct" if isinstance(t, Struct) else "union"
        head = f"{kw} {self.names[t.id]} {{" if t.name else f"{kw} {{"
        packed = isinstance(t, Struct) and self._packed(t)
        align = 1 if packed else self._align(t.id)
        ind = "\t" * (lvl + 1)
        lines: list[str] = []
        off = 0
        prev_bitfield = False
        for m in t.members:
            m_align = 1 if packed else self._align(m.type_id)
            in_bitfield = prev_bitfield and m.bitfield_size != 0
            _pad(lines, off, m.bit_offset, m_align, in_bitfield, ind, self.spec.ptr_size)
            text = self.decl(m.type_id, m.name, lvl + 1)
            if m.bitfield_size:
                text += f": {m.bitfield_size}"
                off = m.bit_offset + m.bitfield_size
                prev_bitfield = True
            else:
                off = m.bit_offset + self._size(m.type_id) * 8
                prev_bitfield = False
            lines.append(f"{ind}{text};")
        if isinstance(t, Struct):
            _pad(lines, off, t.size * 8, align, False, ind, self.spec.ptr_size)
        body = head + ("\n" + "\n".join(lines) + "\n" + "\t" * lvl if lines else "") + "}"
        return body + (" __attribute__((packed))" if packed else "")

    def _enum_body(self, t: Enum, lvl: int) -> str:
        head = f"enum {self.names[t.id]} {{" if t.name else "enum {"
        ind = "\t" * (lvl + 1)
        lines = []
        for i, v in enumerate(t.values):
            value = str(v.value)
            if isinstance(t, Enum64) and not -(1 << 31) <= v.value < (1 << 32):
                value += "LL" if v.value < 0 else "ULL"
            lines.append(f"{ind}{self.enum_values[(t.id, i)]} = {value},")
        body = head + ("\n" + "\n".join(lines) + "\n" + "\t" * lvl if lines else "") + "}"
        if t.size == 1:
            body += " __attribute__((mode(byte)))"
        elif t.size == 2:
            body += " __attribute__((mode(HI)))"
        elif t.size == 8 and (not isinstance(t, Enum64) or all(-(1 << 31) <= v.value < (1 << 32) for v in t.values)):
            body += " __attribute__((mode(word)))"
        return body

    def _align(self, tid: int) -> int:
        try:
            return self.spec.alignof(tid)
        except BTFError:
            return 1

    def _size(self, tid: int) -> int:
        try:
            return self.spec.sizeof(tid)
        except BTFError:
            return 0

    def _packed(self, t: Composite) -> bool:
        best = 1
        for m in t.members:
            a = self._align(m.type_id)
            if not m.bitfield_size and m.bit_offset % (8 * a):
                return True
            best = max(best, a)
        return t.size % best != 0

    # -- the header ---------------------------------------------------------------------------------

    def dump(self, guard: str) -> str:
        for t in self.types:
            if isinstance(t, (Composite, Enum, Typedef)) and (t.name or isinstance(t, Enum)):
                self._order(t.id, False)
        out = [f"#ifndef {guard}\n#define {guard}\n\n", _PRAGMA_PUSH, "\n"]
        declared: set[str] = set()
        for t in self.types:
            if isinstance(t, (Composite, Fwd)) and t.name:
                tag = self._tag(t)
                if tag not in declared and not tag.startswith("enum "):
                    declared.add(tag)
                    out.append(f"{tag};\n")
        out.append("\n")
        for tid in self.order:
            out.append(self._definition(self.types[tid]))
        for t in self.types:  # anonymous enums nobody uses inline: their constants still matter
            if isinstance(t, Enum) and not t.name and t.id not in self.referenced:
                out.append(self._enum_body(t, 0) + ";\n\n")
        out += [_PRAGMA_POP, self._kfuncs(), f"\n#endif /* {guard} */\n"]
        return "".join(out)

    def _kfuncs(self) -> str:
        """``extern`` prototypes of the kernel's kfuncs: FUNCs carrying the ``bpf_kfunc`` decl tag.

        Weak, so a program that checks ``bpf_ksym_exists(f)`` still loads where ``f`` is missing.
        """
        tagged = {t.type_id for t in self.types if isinstance(t, DeclTag) and t.name == "bpf_kfunc"
                  and t.component_idx == -1}
        lines = []
        seen: set[str] = set()
        for tid in sorted(tagged):
            fn = self.types[tid] if 0 <= tid < len(self.types) else None
            if not isinstance(fn, Func) or fn.name in seen:
                continue
            proto = self.types[fn.type_id]
            if not isinstance(proto, FuncProto):
                continue
            seen.add(fn.name)
            params = ", ".join("..." if p.type_id == 0 else self.decl(p.type_id, p.name, 0) for p in proto.params)
            inner = f"{fn.name}({params or 'void'})"
            lines.append(f"extern {self.decl(proto.type_id, inner, 0)} __weak __ksym;\n")
        if not lines:
            return ""
        return ("\n#ifndef BPF_NO_KFUNC_PROTOTYPES\n#ifndef __ksym\n"
                "#define __ksym __attribute__((section(\".ksyms\")))\n#endif\n"
                "#ifndef __weak\n#define __weak __attribute__((weak))\n#endif\n"
                + "".join(lines) + "#endif /* BPF_NO_KFUNC_PROTOTYPES */\n")

    def _definition(self, t: Type) -> str:
        if isinstance(t, Typedef):
            return f"typedef {self.decl(t.type_id, self.names[t.id], 0)};\n\n"
        if isinstance(t, Composite):
            return self._struct_body(t, 0) + ";\n\n"
        if isinstance(t, Enum):
            if not t.values and t.name:
                # An enum BTF knows only by name (vlen 0): "enum x {};" is an error, a forward declaration is not.
                return f"enum {self.names[t.id]};\n\n"
            return self._enum_body(t, 0) + ";\n\n"
        return ""


def _join(a: str, b: str) -> str:
    return f"{a} {b}" if b else a


def _refs(t: Type) -> list[int]:
    if isinstance(t, Composite):
        return [m.type_id for m in t.members]
    if isinstance(t, FuncProto):
        return [t.type_id] + [p.type_id for p in t.params]
    ref = getattr(t, "type_id", None)
    return [ref] if isinstance(ref, int) else []


_PADS = (("long", 64), ("int", 32), ("short", 16), ("char", 8))


def _roundup(x: int, a: int) -> int:
    return (x + a - 1) // a * a


def _pad(out: list[str], cur: int, nxt: int, nxt_align: int, in_bitfield: bool, ind: str, ptr_size: int) -> None:
    """Explicit padding from bit ``cur`` to bit ``nxt`` (libbpf's btf_dump_emit_bit_padding)."""
    if cur >= nxt:
        return
    pads = (("long", ptr_size * 8), *_PADS[1:])
    pad_type, pad_bits, new = pads[-1][0], pads[-1][1], cur
    for pad_type, pad_bits in pads:  # noqa: B007 - the last values tried are used below
        new = _roundup(cur, pad_bits)
        if new <= nxt:
            break
    if cur < new <= nxt:
        if (
            in_bitfield
            or (new == nxt and _roundup(cur, nxt_align * 8) != new)
            or (new != nxt and nxt - new <= new - cur)
        ):
            out.append(f"{ind}{pad_type}: {new - cur if in_bitfield else 0};")
        cur = new
    if nxt - cur >= 64 * 64 and cur % 8 == 0:
        # a huge hole (only in odd or corrupt BTF): one byte array instead of thousands of lines
        nbytes = (nxt - cur) // 8
        out.append(f"{ind}char __pad_{cur // 8}[{nbytes}];")
        cur += nbytes * 8
    while cur < nxt:
        bits = min(nxt - cur, pad_bits)
        if bits == pad_bits:
            out.append(f"{ind}{pad_type}: {pad_bits};")
            cur += bits
            continue
        for name, size in reversed(pads):
            if size >= bits:
                out.append(f"{ind}{name}: {bits};")
                cur += bits
                break
