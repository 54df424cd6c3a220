"""The syscall layer's ctypes structures and enums against the running kernel's own BTF.

Every class in ``ebpf.core._sys.attrs.LAYOUTS`` must have the kernel's size on the kernel the
layer models (Linux 6.18; on other kernels one struct must be a prefix of the other), and every
field the kernel also has must sit at the kernel's offset with the kernel's size.  A field the
kernel does not have is allowed when it lies past the end of an older kernel's struct, or when
the class docstring names it (an alias standing for a union, like ``LinkCreateAttr.extra``); it
must then run to the end of the struct.  On a kernel older than the modelled one, what it does not
have yet is not compared: a union variant it lacks (``link_create.netfilter`` before 6.4: a class
modelling only that variant skips, through a probe of the kernel's BTF, naming it), a field in a gap
of its struct (a padding it had not named yet), an enum member valued past its enum's last one.
"""

from __future__ import annotations

import ctypes
import enum
from collections.abc import Iterator

import pytest
from ebpf.core import types as ebpf_types
from ebpf.core._sys.attrs import LAYOUTS
from ebpf.core.btf import Composite, Enum, Member, Spec, load_vmlinux
from ebpf.core.errors import BTFError, UnsupportedFeatureError
from ebpf.core.system import kernel_version
from ebpf.core.testing import require

#: The uapi version the ctypes structures were written against.
MODELLED_KERNEL = (6, 18)


@pytest.fixture(scope="module")
def vmlinux() -> Spec:
    return load_vmlinux()


def _field_names(spec: Spec, t: Composite) -> set[str]:
    """Every member name of ``t``, including those inside anonymous structs/unions."""
    names: set[str] = set()
    for m in t.members:
        if m.name:
            names.add(m.name)
        else:
            inner = spec.resolve(m.type_id)
            if isinstance(inner, Composite):
                names |= _field_names(spec, inner)
    return names


def _first_field(spec: Spec, t: Composite) -> str | None:
    for m in t.members:
        if m.name:
            return m.name
        inner = spec.resolve(m.type_id)
        if isinstance(inner, Composite):
            return _first_field(spec, inner)  # e.g. a leading anonymous union
        return None
    return None


def kernel_struct(spec: Spec, kernel_type: str, key: str | None) -> Composite:
    """The kernel struct a LAYOUTS entry names: a whole struct, or one member of ``union bpf_attr``."""
    whole = spec.find(kernel_type)
    assert isinstance(whole, Composite)
    if key is None:
        return whole
    if "." in key or kernel_type.startswith("struct "):  # a member path: link_create.tcx, raw_tracepoint
        member = spec.resolve(spec.find_member(whole, key).type_id)
        assert isinstance(member, Composite), f"{kernel_type}.{key} is not a struct"
        return member
    candidates: list[tuple[Member, Composite]] = []
    for m in whole.members:
        inner = spec.resolve(m.type_id)
        if isinstance(inner, Composite):
            candidates.append((m, inner))
    for m, inner in candidates:  # a named member: bpf_attr.test, .query, .link_create ...
        if m.name == key:
            return inner
    for _, inner in candidates:  # an anonymous (or named) struct whose first field is `key`
        if _first_field(spec, inner) == key:
            return inner
    for _, inner in candidates:  # ... or that has a field `key` at all
        if key in _field_names(spec, inner):
            return inner
    raise AssertionError(f"{kernel_type} has no member identified by {key!r}")


def _kernel_has(spec: Spec, kernel_type: str, key: str | None) -> None:
    """A probe: the kernel's BTF has the member of ``kernel_type`` that ``key`` names (a union variant)."""
    try:
        kernel_struct(spec, kernel_type, key)
    except BTFError as exc:
        raise UnsupportedFeatureError(f"{kernel_type} member {key}",
                                      reason=f"not in this kernel's BTF ({exc}): newer than this kernel") from None


def _in_a_gap(kstruct: Composite, spec: Spec, offset: int, size: int) -> bool:
    """No member of the kernel's ``kstruct`` overlaps ``offset``..``offset + size`` (a pad it has not named)."""
    for m in kstruct.members:
        start = m.bit_offset // 8
        if start < offset + size and offset < start + spec.sizeof(m.type_id):
            return False
    return offset + size <= kstruct.size


def _kernel_end(spec: Spec, kstruct: Composite, path: str) -> int:
    """Where the kernel's members end in the deepest (sub)struct of ``path`` this kernel has (an offset in
    ``kstruct``): a field of ours at or past it is newer than this kernel, even inside a union that other
    members make larger (``bpf_attr``'s prog-load part, ``bpf_link_info.raw_tracepoint``)."""
    parts = path.split(".")[:-1]
    base, comp = 0, kstruct
    for i in range(len(parts), 0, -1):  # the deepest ancestor the kernel knows
        try:
            member = spec.find_member(kstruct, ".".join(parts[:i]))
        except BTFError:
            continue
        inner = spec.resolve(member.type_id)
        if isinstance(inner, Composite):
            base, comp = member.bit_offset // 8, inner
            break
    ends = [m.bit_offset // 8 + spec.sizeof(m.type_id) for m in comp.members]
    return base + max(ends, default=0)


def _has_member(spec: Spec, kstruct: Composite, path: str) -> bool:
    try:
        spec.find_member(kstruct, path)
    except BTFError:
        return False
    return True


def _alias_fields(cls: type[ctypes.Structure | ctypes.Union]) -> set[str]:
    doc = cls.__doc__ or ""
    return {name for name, *_ in cls._fields_ if f"``{name}" in doc}


def _leaves(cls: type[ctypes.Structure | ctypes.Union], base: int = 0, prefix: str = "",
            variant: str = "") -> Iterator[tuple[str, int, int, type[ctypes.Structure | ctypes.Union], str]]:
    """(kernel member path, offset, size, owning class, union variant) of every field, nested structs and
    unions included; the variant is the path of the first union member the field is in ("" if none).

    A member listed in ``_anonymous_`` is anonymous in the kernel too: its fields carry no prefix.
    """
    anonymous = set(getattr(cls, "_anonymous_", ()))
    for name, ctype, *_ in cls._fields_:
        if name.startswith("_pad"):
            continue
        offset = getattr(cls, name).offset + base
        path = prefix if name in anonymous else f"{prefix}{name}."
        inner_variant = variant or (path.rstrip(".") if issubclass(cls, ctypes.Union) and name not in anonymous
                                    else "")
        if isinstance(ctype, type) and issubclass(ctype, (ctypes.Structure, ctypes.Union)):
            yield from _leaves(ctype, offset, path, inner_variant)
        else:
            yield f"{prefix}{name}", offset, ctypes.sizeof(ctype), cls, inner_variant


@pytest.mark.parametrize("cls", list(LAYOUTS), ids=lambda c: c.__name__)
def test_attr_layout_matches_kernel(vmlinux: Spec, cls: type[ctypes.Structure]) -> None:
    kernel_type, key = LAYOUTS[cls]
    require(_kernel_has, vmlinux, kernel_type, key)  # a union variant newer than this kernel: nothing to compare
    kstruct = kernel_struct(vmlinux, kernel_type, key)
    if kernel_version()[:2] == MODELLED_KERNEL:
        assert ctypes.sizeof(cls) == kstruct.size, f"{cls.__name__}: sizeof {ctypes.sizeof(cls)} != kernel {kstruct.size}"
    problems = []
    for path, offset, size, owner, variant in _leaves(cls):
        try:
            member = vmlinux.find_member(kstruct, path)
        except BTFError:
            if offset >= kstruct.size or offset >= _kernel_end(vmlinux, kstruct, path):
                continue  # a field newer than this kernel: its (sub)struct is a prefix of ours
            if variant and variant != path and not _has_member(vmlinux, kstruct, variant):
                continue  # a union variant newer than this kernel (its own class is checked where it exists)
            if _in_a_gap(kstruct, vmlinux, offset, size):
                continue  # where this kernel has padding: a field it had not named yet
            name = path.rsplit(".", 1)[-1]
            if name not in _alias_fields(owner):
                problems.append(f"{path}: not in the kernel's {kernel_type} ({key}) and not documented as an alias")
                continue
            # an alias for a union: it starts where a kernel member starts and runs to the end
            starts = {m.bit_offset // 8 for m in kstruct.members}
            if offset not in starts or offset + size != ctypes.sizeof(cls):
                problems.append(f"{path}: alias at {offset}+{size} does not cover a kernel member to the end")
            continue
        ksize = vmlinux.sizeof(member.type_id)
        if (offset, size) != (member.bit_offset // 8, ksize):
            problems.append(f"{path}: ours at {offset}+{size}, kernel at {member.bit_offset // 8}+{ksize}")
    assert not problems, f"{cls.__name__}: " + "; ".join(problems)


def test_every_union_variant_is_checked() -> None:
    from ebpf.core._sys import unions

    variants = {obj for obj in vars(unions).values() if isinstance(obj, type) and obj.__name__.startswith("Link")
                and issubclass(obj, ctypes.Structure)}
    unchecked = {cls.__name__ for cls in variants if cls not in LAYOUTS} - {"LinkCreateIter"}  # anonymous in the kernel
    assert unchecked == set()


_ENUMS = [
    (ebpf_types.MapType, "bpf_map_type", "BPF_MAP_TYPE_"),
    (ebpf_types.ProgType, "bpf_prog_type", "BPF_PROG_TYPE_"),
    (ebpf_types.AttachType, "bpf_attach_type", "BPF_"),
    (ebpf_types.LinkType, "bpf_link_type", "BPF_LINK_TYPE_"),
    (ebpf_types.Helper, "bpf_func_id", "BPF_FUNC_"),
]


@pytest.mark.parametrize(("ours", "kernel_name", "prefix"), _ENUMS, ids=[e[1] for e in _ENUMS])
def test_enum_values_match_kernel(vmlinux: Spec, ours: type[enum.IntEnum], kernel_name: str, prefix: str) -> None:
    kernel = vmlinux.find(kernel_name, "enum")
    assert isinstance(kernel, Enum)
    kernel_values = {v.name[len(prefix) :].upper(): v.value for v in kernel.values if v.name.startswith(prefix)}
    both = [m for m in ours if m.name in kernel_values]
    assert both, f"no {ours.__name__} member found in {kernel_name}"
    # uapi enums only grow at their end: what an older kernel lacks is valued past its last member,
    # or is a later name of a value it has (BPF_MAP_TYPE_CGROUP_STORAGE_DEPRECATED, 6.2: CGROUP_STORAGE)
    last, values = max(kernel_values.values()), set(kernel_values.values())
    unknown = [f"{m.name} = {m.value}" for m in ours
               if m.name not in kernel_values and m.value <= last and m.value not in values]
    assert not unknown, f"{ours.__name__} members not in the kernel's {kernel_name} (whose last is {last}): {unknown}"
    wrong = [f"{m.name}: ours {m.value}, kernel {kernel_values[m.name]}" for m in both if kernel_values[m.name] != m.value]
    assert not wrong, f"{ours.__name__}: " + "; ".join(wrong)
