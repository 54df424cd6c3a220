"""Property-based tests: mutated and truncated BTF never escapes as anything but BTFError."""

from __future__ import annotations

import dataclasses
import struct
from typing import Any

from ebpf.core import btf
from ebpf.core.btf import Builder, Composite, IntEncoding, Member, Spec, Struct
from ebpf.core.errors import BTFError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st


def _small_blob() -> bytes:
    b = Builder()
    i32 = b.add_int("int", 4, IntEncoding.SIGNED)
    u8 = b.add_int("unsigned char", 1)
    u32 = b.add_typedef("u32", b.add_int("unsigned int", 4))
    arr = b.add_array(u8, 16, u32)
    color = b.add_enum("color", [("RED", 0), ("BLUE", 7)])
    b.add_enum("wide", [("W", 1 << 33)], size=8)
    inner = b.add_struct("", [("lo", u32), ("hi", u32)], union=True)
    node = b.add(
        Struct(0, "node", 40, (Member("id", u32, 0), Member("bits", i32, 32, 5), Member("name", arr, 64), Member("", inner, 192)))
    )
    ptr = b.add_pointer(node)
    b[node] = Struct(0, "node", 40, (*b[node].members, Member("next", ptr, 256), Member("color", color, 320)))  # type: ignore[attr-defined]
    proto = b.add_func_proto(i32, [("n", ptr), ("", 0)])
    func = b.add_func("walk", proto)
    b.add(btf.DeclTag(0, "hot", func, -1))
    b.add(btf.Const(0, "", b.add(btf.Volatile(0, "", ptr))))
    var = b.add_var("head", ptr)
    b.add_datasec(".bss", 8, [(var, 0, 8)])
    b.add(btf.Float(0, "float", 4))
    b.add(btf.Fwd(0, "later", True))
    b.add(btf.TypeTag(0, "rcu", node))
    return b.encode()


def _vmlinux_slice(roots: tuple[str, ...] = ("bpf_attr", "bpf_prog_info", "bpf_func_id", "vfs_read", "task_struct")) -> bytes:
    """Kernel types reachable from ``roots`` (structs behind pointers become forward declarations)."""
    kernel = btf.load_vmlinux()
    b = Builder()
    new_ids: dict[int, int] = {0: 0}

    fwds: dict[int, int] = {}

    def copy(tid: int, through_ptr: bool = False) -> int:
        if tid in new_ids:
            return new_ids[tid]
        t = kernel[tid]
        if through_ptr and isinstance(t, Composite) and t.name:
            if tid not in fwds:
                fwds[tid] = b.add(btf.Fwd(0, t.name, isinstance(t, btf.Union)))
            return fwds[tid]
        new_ids[tid] = placeholder = b.add(btf.Int(0, "placeholder", 4))
        ptr = isinstance(t, btf.Pointer)
        changes: dict[str, Any] = {}
        ref = getattr(t, "type_id", None)
        if ref is not None:
            changes["type_id"] = copy(ref, ptr or isinstance(t, btf.FuncProto))
        if isinstance(t, btf.Array):
            changes["index_type_id"] = copy(t.index_type_id)
        if isinstance(t, Composite):
            changes["members"] = tuple(dataclasses.replace(m, type_id=copy(m.type_id)) for m in t.members)
        if isinstance(t, btf.FuncProto):
            changes["params"] = tuple(dataclasses.replace(p, type_id=copy(p.type_id, True)) for p in t.params)
        b[placeholder] = dataclasses.replace(t, **changes)
        return placeholder

    for name in roots:
        copy(kernel.find(name).id)
    return b.encode()


SMALL = _small_blob()
SLICE = _vmlinux_slice()


def exercise(blob: bytes) -> None:
    """Everything a user does with a spec; only BTFError may come out."""
    try:
        spec = Spec(blob)
        for t in spec:
            if t.name:
                spec.find_all(t.name)
            try:
                size = spec.sizeof(t)
            except BTFError:
                continue
            if size <= 4096:
                spec.format_value(t, bytes(range(256)) * (size // 256 + 1))
            spec.alignof(t)
        spec.validate()
        btf.dump_c_header(spec)
        btf.parse(spec.encode()).validate()
    except BTFError:
        pass


def test_seeds_are_valid() -> None:
    for blob in (SMALL, SLICE):
        spec = Spec(blob)
        spec.validate()
        assert "struct" in btf.dump_c_header(spec)
    node = Spec(SMALL).find("node")
    assert isinstance(node, Struct) and node.size == 40


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_small_blob(data: st.DataObject) -> None:
    blob = bytearray(SMALL)
    for _ in range(data.draw(st.integers(1, 8))):
        pos = data.draw(st.integers(0, len(blob) - 1))
        blob[pos] = data.draw(st.integers(0, 255))
    exercise(bytes(blob))


@settings(max_examples=200, deadline=None)
@given(st.integers(0, len(SMALL)))
def test_truncated_small_blob(n: int) -> None:
    exercise(SMALL[:n])


@settings(max_examples=100, deadline=None)
@given(st.integers(24, len(SMALL)), st.integers(0, 0xFFFFFFFF))
def test_small_blob_with_a_random_word(pos: int, word: int) -> None:
    blob = bytearray(SMALL)
    pos -= pos % 4
    blob[pos : pos + 4] = word.to_bytes(4, "little")
    exercise(bytes(blob[: len(SMALL)]))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_vmlinux_slice(data: st.DataObject) -> None:
    blob = bytearray(SLICE)
    type_end = 24 + struct.unpack_from("<I", SLICE, 12)[0]
    for _ in range(data.draw(st.integers(1, 6))):
        pos = data.draw(st.integers(0, type_end - 1))
        blob[pos] = data.draw(st.integers(0, 255))
    cut = data.draw(st.one_of(st.just(len(blob)), st.integers(0, len(blob))))
    exercise(bytes(blob[:cut]))
