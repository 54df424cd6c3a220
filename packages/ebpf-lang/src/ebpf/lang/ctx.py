"""Program contexts typed from the kernel's BTF: ``ctx: ct.xdp_md``, ``ct.trace_event_raw_sys_enter``.

``ctx_types`` resolves any struct the running kernel's BTF describes (``xdp_md``, ``__sk_buff``,
``bpf_sock_addr``, ``pt_regs``, ``trace_event_raw_*``) the first time a kernel function using it
is compiled, so importing a module of kernel functions reads no BTF.  Field types become the
language's types: integers by size and signedness, arrays of them, nested structs; pointers
become ``u64`` addresses (read through ``bpf.probe_read_kernel``).
"""

from __future__ import annotations

import functools
import os
import re
from typing import Any

from ebpf.core.btf import Array, Composite, Enum, Int, IntEncoding, Pointer, Qualifier, Spec
from ebpf.lang.types import ArrayType, KPtrType, LangType, StructType, char, i8, i16, i32, i64, u8, u16, u32, u64

__all__ = ["CtxType", "ctx_types", "PACKET_FIELDS"]

_INTS = {(1, False): u8, (2, False): u16, (4, False): u32, (8, False): u64,
         (1, True): i8, (2, True): i16, (4, True): i32, (8, True): i64}
#: Context fields the verifier turns into packet pointers: read through ``ctx.header(T, offset)``.
PACKET_FIELDS = {"data", "data_end", "data_meta"}
_MAX_DEPTH = 8


@functools.lru_cache(maxsize=1)
def _vmlinux() -> Spec:
    from ebpf.core.btf import load_vmlinux

    return load_vmlinux()


class CtxType:
    """A context struct named ``name`` in vmlinux BTF; ``layout()`` gives its fields as language types."""

    def __init__(self, name: str) -> None:
        """Name only; the BTF is read on first :meth:`layout`."""
        self.name = name
        self._layout: StructType | None = None

    def layout(self, spec: Spec | None = None) -> StructType:
        """The struct's fields as a :class:`StructType`.

        :raises KeyError: when the kernel's BTF has no struct of that name.
        """
        if self._layout is None:
            spec = spec or _vmlinux()
            try:
                t = spec.resolve(spec.find(self.name))
            except Exception as exc:  # BTFError: not in this kernel
                raise KeyError(f"struct {self.name} is not in the kernel's BTF") from exc
            if not isinstance(t, Composite):
                raise KeyError(f"{self.name} is not a struct in the kernel's BTF")
            self._layout = _struct(spec, t, 0)
        return self._layout

    def __repr__(self) -> str:
        return f"ct.{self.name}"


class _BtfRef:
    """A struct reached through a pointer field: its layout is converted on first use."""

    def __init__(self, spec: Spec, t: Composite) -> None:
        self.spec = spec
        self.t = t
        self.name = t.name or "<anon>"
        self._layout: StructType | None = None

    def layout(self, spec: Spec | None = None) -> StructType:
        if self._layout is None:
            self._layout = _struct(self.spec, self.t, 0)
        return self._layout


def _lang_type(spec: Spec, type_id: int, depth: int) -> LangType:
    t = spec.resolve(type_id)
    while isinstance(t, Qualifier):
        t = spec.resolve(t.type_id)
    if isinstance(t, Int):
        return _INTS.get((t.size, bool(t.encoding & IntEncoding.SIGNED)), u64)
    if isinstance(t, Enum):
        return _INTS.get((t.size, t.signed), u32)
    if isinstance(t, Pointer):
        target = spec.resolve(t.type_id)
        while isinstance(target, Qualifier):
            target = spec.resolve(target.type_id)
        if isinstance(target, Composite) and target.members:
            return KPtrType(_BtfRef(spec, target))
        return u64
    if isinstance(t, Array):
        elem = _lang_type(spec, t.type_id, depth + 1)
        return ArrayType(elem, t.nelems or 64)  # flexible arrays (raw_tp args): the verifier bounds them
    if isinstance(t, Composite) and depth < _MAX_DEPTH:
        return _struct(spec, t, depth + 1)
    return ArrayType(u8, max(1, spec.sizeof(t)) if not isinstance(t, Composite) else max(1, t.size))


def _struct(spec: Spec, t: Composite, depth: int) -> StructType:
    fields: list[tuple[str, LangType, int]] = []
    for m in t.members:
        if m.bitfield_size:
            continue
        if not m.name:  # anonymous union/struct: lift its members (as C does)
            inner = spec.resolve(m.type_id)
            if isinstance(inner, Composite):
                for fname, ftype, off in _struct(spec, inner, depth + 1).fields:
                    fields.append((fname, ftype, off + m.bit_offset // 8))
            continue
        fields.append((m.name, _lang_type(spec, m.type_id, depth), m.bit_offset // 8))
    # Flexible array members (``__data[]``, raw_tp ``args[]``) may reach past the C size.
    size = max([t.size, *(off + ft.size for _, ft, off in fields)])
    return StructType(t.name or "<anon>", fields, size, 8)


_FIELD_RE = re.compile(r"field:([^;]+);\s*offset:(\d+);\s*size:(\d+);\s*signed:(\d+);")


class TracepointFormat(CtxType):
    """A tracepoint's record as tracefs describes it (``events/<category>/<name>/format``):
    ``ctx: ct.tracepoint("syscalls", "sys_enter_openat")`` gives ``ctx.filename``, ``ctx.flags``..."""

    def __init__(self, category: str, name: str) -> None:
        """Names only; the format file is read on first :meth:`layout`."""
        super().__init__(f"{category}_{name}")
        self.category = category
        self.event = name

    def layout(self, spec: Spec | None = None) -> StructType:
        """The record's fields (``__data_loc`` fields as ``u32``, pointers as ``u64`` addresses).

        :raises KeyError: when tracefs has no such tracepoint (or cannot be read).
        """
        if self._layout is None:
            self._layout = _tracefs_layout(self.category, self.event)
        return self._layout

    def __repr__(self) -> str:
        return f"ct.tracepoint({self.category!r}, {self.event!r})"


def _tracefs_layout(category: str, name: str) -> StructType:
    from ebpf.core.system import ensure_tracefs

    try:
        root = ensure_tracefs()
        with open(os.path.join(root, "events", category, name, "format")) as f:
            text = f.read()
    except OSError as exc:
        raise KeyError(f"tracepoint {category}/{name} has no format in tracefs ({exc.strerror or exc})") from None
    fields: list[tuple[str, LangType, int]] = []
    for decl, off, size, signed in _FIELD_RE.findall(text):
        offset, nbytes, is_signed = int(off), int(size), signed == "1"
        decl = decl.strip()
        array = re.search(r"\[(\d+)\]\s*$", decl)
        fname = re.findall(r"[A-Za-z_]\w*", decl[: array.start()] if array else decl)[-1]
        t: LangType
        if array and int(array.group(1)):
            n = int(array.group(1))
            elem_size = max(1, nbytes // n)
            elem = char if decl.startswith(("char", "const char")) and elem_size == 1 else \
                _INTS.get((elem_size, is_signed), u8)
            t = ArrayType(elem, n)
        elif "*" in decl:
            t = u64
        else:
            t = _INTS.get((nbytes, is_signed)) or ArrayType(u8, max(1, nbytes))
        fields.append((fname, t, offset))
    if not fields:
        raise KeyError(f"tracepoint {category}/{name}: no fields in its format")
    size = max(off + t.size for _, t, off in fields)
    return StructType(f"{category}_{name}", fields, (size + 7) // 8 * 8, 8)


class FirstOf(CtxType):
    """The first of several context types whose layout this kernel has (a section's default)."""

    def __init__(self, *choices: CtxType) -> None:
        """Try ``choices`` in order."""
        super().__init__(choices[0].name)
        self.choices = choices

    def layout(self, spec: Spec | None = None) -> StructType:
        """The first layout that resolves.  :raises KeyError: when none does (the first one's reason)."""
        if self._layout is None:
            first: KeyError | None = None
            for c in self.choices:
                try:
                    self._layout = c.layout(spec)
                    break
                except KeyError as exc:
                    first = first or exc
            else:
                assert first is not None
                raise first
        return self._layout


class _CtxTypes:
    """``ct.<struct name>`` -> :class:`CtxType` (one object per name)."""

    def __init__(self) -> None:
        self._cache: dict[str, CtxType] = {}

    def __getattr__(self, name: str) -> CtxType:
        if name.startswith("__") and name.endswith("__") and name != "__sk_buff":
            raise AttributeError(name)
        found = self._cache.get(name)
        if found is None:
            found = self._cache[name] = CtxType(name)
        return found

    def __call__(self, name: str) -> CtxType:
        """``ct("struct name")``, for names that are not identifiers."""
        return getattr(self, name)  # type: ignore[no-any-return]

    def tracepoint(self, category: str, name: str) -> TracepointFormat:
        """The record of tracepoint ``category/name`` from its tracefs format (named fields)."""
        key = f"tracepoint:{category}/{name}"
        found = self._cache.get(key)
        if not isinstance(found, TracepointFormat):
            found = TracepointFormat(category, name)
            self._cache[key] = found
        return found

    def __repr__(self) -> str:
        return "<ebpf.lang context types (from the kernel's BTF)>"


#: The context types: ``ct.xdp_md``, ``ct.__sk_buff``, ``ct.bpf_sock_addr``, ``ct.trace_event_raw_sys_enter`` ...
ctx_types: Any = _CtxTypes()
