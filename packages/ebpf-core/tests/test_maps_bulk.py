"""The fast paths of maps on the real kernel: typed mmap views of arrays, columnar batch reads."""

from __future__ import annotations

import array
import struct

import pytest
from ebpf.core import codecs
from ebpf.core._maps import batch as batch_mod
from ebpf.core.asm import (
    DW,
    R0,
    R1,
    R2,
    R6,
    R7,
    R10,
    Instruction,
    W,
    add64,
    call,
    exit_,
    jeq,
    label,
    ld_map_fd,
    ldx_mem,
    mov64,
    st_mem,
    stx_mem,
)
from ebpf.core.errors import EBPFError, KeyNotFoundError, NotSupportedError
from ebpf.core.maps import (
    MmapArrayMap,
    create_array_map,
    create_hash_map,
    create_percpu_hash_map,
)
from ebpf.core.programs import ProgramSpec, load_program
from ebpf.core.system import cpu_count

PACKET = bytes(64)


def _slot(m: MmapArrayMap, index: int) -> list[Instruction]:
    """r0 = &m[index] through bpf_map_lookup_elem (to "out" when missing)."""
    return [st_mem(W, R10, -4, index), ld_map_fd(R1, m), mov64(R2, R10), add64(R2, -4), call("map_lookup_elem"),
            jeq(R0, 0, "out")]


def _mmap_array(n: int, value_size: int = 8, **kw: object) -> MmapArrayMap:
    m = create_array_map(n, value_size=value_size, mmapable=True, **kw)
    assert isinstance(m, MmapArrayMap)
    return m


# -- typed views of mmapable arrays -----------------------------------------------------------------
def test_view_and_dict_writes_reach_a_bpf_program_and_back() -> None:
    with _mmap_array(8) as m:
        view = m.view()
        try:
            assert (view.format, len(view), view.readonly) == ("Q", 8, False)
            view[3] = 0x1234_5678_9ABC  # through the view
            m[5] = 77  # through the dict protocol
            # r0 = slot 3 + slot 5 (u32 retval: the low half); then slot 6 = slot 3 + 1
            prog = [
                *_slot(m, 3), ldx_mem(DW, R6, R0, 0),
                *_slot(m, 5), ldx_mem(DW, R7, R0, 0),
                *_slot(m, 6), mov64(R1, R6), add64(R1, 1), stx_mem(DW, R0, R1, 0),
                mov64(R0, R6), add64(R0, R7), exit_(),
                label("out"), mov64(R0, 0), exit_(),
            ]
            with load_program(ProgramSpec(prog_type="socket_filter", insns=prog)) as p:
                assert p.test_run(PACKET).retval == (0x1234_5678_9ABC + 77) & 0xFFFFFFFF
            # the program's write, seen by the view, the dict protocol and the syscall path alike
            assert view[6] == m[6] == m.lookup(6) == 0x1234_5678_9ABD
            assert m.lookup_bytes((6).to_bytes(4, "little")) == struct.pack("=Q", 0x1234_5678_9ABD)
            # and a syscall write, seen by the view
            m.update_bytes((7).to_bytes(4, "little"), struct.pack("=Q", 1 << 63))
            assert view[7] == 1 << 63 == m[7]
            assert view.tolist()[:3] == [0, 0, 0]
        finally:
            view.release()


def test_view_of_narrow_values_is_strided() -> None:
    with _mmap_array(5, value_size=4) as m:
        prog = [*_slot(m, 2), mov64(R1, -1), stx_mem(W, R0, R1, 0), label("out"), mov64(R0, 0), exit_()]
        with m.view() as view:
            assert (view.format, len(view), view.strides) == ("I", 5, (8,))
            view[1] = 42
            assert m[1] == 42 and m.lookup_bytes((1).to_bytes(4, "little")) == struct.pack("=I", 42)
            with load_program(ProgramSpec(prog_type="socket_filter", insns=prog)) as p:
                p.test_run(PACKET)
            assert view[2] == 0xFFFF_FFFF == m[2]
    with _mmap_array(3, value_size=2, value_codec=codecs.i16) as s, s.view() as v:
        assert (v.format, len(v), v.strides) == ("h", 3, (8,))
        s[0] = -3
        assert v[0] == -3


def test_view_follows_freeze_and_close() -> None:
    with _mmap_array(2) as m:
        view = m.view()
        view[0] = 5
        with pytest.raises(EBPFError, match="still in use"):
            m.freeze()
        view.release()
        m.freeze()
        with m.view() as ro:
            assert ro.readonly and ro[0] == 5
            with pytest.raises(TypeError):
                ro[0] = 6
        with pytest.raises(EBPFError, match="read-only"):
            m[0] = 6
    m2 = _mmap_array(2)
    held = m2.view()
    m2.close()  # closes despite the held view; the mapping lives until the view goes
    assert held[1] == 0
    held.release()
    with pytest.raises(EBPFError, match="closed"):
        m2.view()


def test_view_needs_integer_values() -> None:
    with _mmap_array(2, value_size=12, value_codec=codecs.struct("=Iq")) as m:
        with pytest.raises(NotSupportedError, match="mmap"):
            m.view()
        m[1] = (3, -4)
        assert m[1] == (3, -4)


def test_mmap_dict_path_errors() -> None:
    with _mmap_array(4) as m:
        assert m.lookup(2) == 0  # the first use maps the array
        assert m.lookup(4) is None and m.lookup(4, "d") == "d" and m.lookup(-1, "d") == "d"
        assert m.lookup(1 << 70, "d") == "d"
        with pytest.raises(KeyNotFoundError):
            m[4]
        with pytest.raises(KeyNotFoundError):
            m[-1]
        with pytest.raises(EBPFError, match="bad map key"):
            m["x"]
        with pytest.raises(EBPFError, match="bad map key"):
            m.lookup(1.5)
        with pytest.raises(KeyNotFoundError):
            m[4] = 1
        with pytest.raises(KeyNotFoundError):
            m.update(-2, 1)
        with pytest.raises(EBPFError, match="bad map key"):
            m[None] = 1
        with pytest.raises(EBPFError):
            m[1] = -5
        with pytest.raises(EBPFError):
            m[1] = 1 << 64
        with pytest.raises(EBPFError):
            m[1] = "1"
        with pytest.raises(EBPFError, match="update flags"):
            m.update(1, 1, "noexist")
        m.update(1, 9, "exist")
        assert m[1] == 9 and 1 in m and 4 not in m
        assert [m[i] for i in range(4)] == [0, 9, 0, 0]
        lookup, update = m.lookup, m.update
    # a function taken before close reports the closed map, not stale memory
    with pytest.raises(EBPFError, match="closed"):
        lookup(0)
    with pytest.raises(EBPFError, match="closed"):
        update(0, 1)
    with pytest.raises(EBPFError, match="closed"):
        m[0]
    with pytest.raises(EBPFError, match="closed"):
        m[0] = 1


def test_mmap_dict_path_before_first_use_and_from_fd() -> None:
    with _mmap_array(3) as m:
        m[2] = 11  # the first use is a write
        with MmapArrayMap.from_id(m.info().id) as again:
            assert isinstance(again, MmapArrayMap)
            assert again[2] == 11  # its first use is a read of the same memory
            again[0] = 1
        assert m[0] == 1


# -- columnar batch reads ---------------------------------------------------------------------------
def test_lookup_batch_columns_of_ints(monkeypatch: pytest.MonkeyPatch) -> None:
    with create_hash_map(5000, key_size=4, value_size=8) as m:
        keys, values = m.lookup_batch_columns()
        assert (list(keys), list(values)) == ([], [])
        expected = {i * 7: i * i + (1 << 40) for i in range(3000)}
        m.update_batch(expected)
        keys, values = m.lookup_batch_columns()
        assert isinstance(keys, array.array) and isinstance(values, array.array)
        assert (keys.typecode, values.typecode) == ("I", "Q")
        assert dict(zip(keys, values)) == expected and len(keys) == 3000
        assert sorted(m.lookup_batch()) == sorted(zip(keys, values))
        # several batch calls (small buffers), then the one-element fallback: the same columns
        monkeypatch.setattr(batch_mod, "BATCH_BYTES", 12 * 100)
        m._state.spare.clear()
        k2, v2 = m.lookup_batch_columns()
        assert isinstance(k2, array.array) and dict(zip(k2, v2)) == expected
        monkeypatch.setattr(m._state, "batch", False)
        k3, v3 = m.lookup_batch_columns()
        assert isinstance(k3, array.array) and dict(zip(k3, v3)) == expected


def test_lookup_batch_columns_of_other_codecs() -> None:
    with create_hash_map(16, key_size=8, value_size=12, key_codec=codecs.i64,
                         value_codec=codecs.struct("=Iq")) as m:
        m.update_batch({-1: (1, -2), 5: (3, 4)})
        keys, values = m.lookup_batch_columns()
        assert isinstance(keys, array.array) and keys.typecode == "q"
        assert isinstance(values, list) and dict(zip(keys, values)) == {-1: (1, -2), 5: (3, 4)}
    with create_percpu_hash_map(8, key_size=4, value_size=8) as p:
        p[3] = 9
        keys, values = p.lookup_batch_columns()
        assert list(keys) == [3] and values == [[9] * cpu_count()]
    with create_array_map(3, value_size=8) as a:
        a[1] = 5
        keys, values = a.lookup_batch_columns()
        assert list(keys) == [0, 1, 2] and list(values) == [0, 5, 0]
