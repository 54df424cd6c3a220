"""Codecs: ints, struct formats, ctypes structures, raw bytes, event parsers and serializers."""

from __future__ import annotations

import ctypes
import struct

import pytest
from ebpf.core import codecs
from ebpf.core.errors import EBPFError
from hypothesis import given
from hypothesis import strategies as st

INTS = [codecs.u8, codecs.u16, codecs.u32, codecs.u64, codecs.i8, codecs.i16, codecs.i32, codecs.i64]


class Pair(ctypes.Structure):
    _fields_ = [("pid", ctypes.c_uint32), ("ts", ctypes.c_uint64)]


@pytest.mark.parametrize("codec", INTS, ids=repr)
def test_int_codec_sizes_and_bounds(codec: codecs.IntCodec) -> None:
    assert codec.size == struct.calcsize(codec.code)
    assert codec.decode(codec.encode(codec.max)) == codec.max
    assert codec.decode(codec.encode(codec.min)) == codec.min
    with pytest.raises(EBPFError):
        codec.encode(codec.max + 1)
    with pytest.raises(EBPFError):
        codec.encode(codec.min - 1)
    with pytest.raises(EBPFError):
        codec.encode("1")
    with pytest.raises(EBPFError):
        codec.encode(1.0)


@given(st.data())
def test_int_codecs_round_trip(data: st.DataObject) -> None:
    codec = data.draw(st.sampled_from(INTS))
    value = data.draw(st.integers(codec.min, codec.max))
    raw = codec.encode(value)
    assert len(raw) == codec.size
    assert codec.decode(raw) == value


@given(st.sampled_from(INTS), st.binary(max_size=12))
def test_int_codecs_refuse_wrong_sizes(codec: codecs.IntCodec, raw: bytes) -> None:
    if len(raw) == codec.size:
        assert isinstance(codec.decode(raw), int)
    else:
        with pytest.raises(EBPFError):
            codec.decode(raw)


@given(st.integers(0, 2**32 - 1), st.integers(-(2**63), 2**63 - 1), st.binary(min_size=4, max_size=4))
def test_struct_codec_round_trip(a: int, b: int, c: bytes) -> None:
    codec = codecs.struct("=Iq4s")
    assert codec.size == 16
    assert codec.decode(codec.encode((a, b, c))) == (a, b, c)


def test_struct_codec_single_field_is_scalar_and_errors_are_ours() -> None:
    codec = codecs.struct("<H")
    assert codec.encode(513) == b"\x01\x02"
    assert codec.decode(b"\x01\x02") == 513
    with pytest.raises(EBPFError):
        codec.encode(70000)
    with pytest.raises(EBPFError):
        codec.decode(b"\x01")
    with pytest.raises(EBPFError):
        codecs.struct("not a format!")


@given(st.integers(0, 2**32 - 1), st.integers(0, 2**64 - 1))
def test_ctype_codec_round_trip(pid: int, ts: int) -> None:
    codec = codecs.ctype(Pair)
    assert codec.size == 16
    back = codec.decode(codec.encode(Pair(pid, ts)))
    assert (back.pid, back.ts) == (pid, ts)


def test_ctype_codec_refuses_other_objects() -> None:
    codec = codecs.ctype(Pair)
    with pytest.raises(EBPFError):
        codec.encode((1, 2))
    with pytest.raises(EBPFError):
        codec.decode(b"short")
    with pytest.raises(EBPFError):
        codecs.ctype(int)


@given(st.binary(max_size=40), st.integers(0, 40))
def test_raw_codec_passes_exact_sizes_only(raw: bytes, size: int) -> None:
    codec = codecs.raw(size)
    if len(raw) == size:
        assert codec.decode(codec.encode(raw)) == raw
    else:
        with pytest.raises(EBPFError):
            codec.encode(raw)
        with pytest.raises(EBPFError):
            codec.decode(raw)


def test_default_codecs() -> None:
    assert codecs.default_codec(4) is codecs.u32
    assert codecs.default_codec(8) is codecs.u64
    assert isinstance(codecs.default_codec(16), codecs.RawCodec)
    assert codecs.resolve_codec("u16", 2) is codecs.u16
    assert codecs.resolve_codec(bytes, 6).size == 6
    assert isinstance(codecs.resolve_codec(Pair, 16), codecs.CTypeCodec)
    assert isinstance(codecs.resolve_codec(struct.Struct("=I"), 4), codecs.StructCodec)
    with pytest.raises(EBPFError, match="size"):
        codecs.resolve_codec(codecs.u64, 4)
    with pytest.raises(EBPFError):
        codecs.resolve_codec(object(), 4)


def test_event_parser_lays_fields_out_like_c() -> None:
    parse = codecs.make_event_parser(["u32", "u64", "u32"])
    assert parse.size == ctypes.sizeof(type("E", (ctypes.Structure,), {"_fields_": [
        ("a", ctypes.c_uint32), ("b", ctypes.c_uint64), ("c", ctypes.c_uint32)]}))
    record = struct.pack("@IQI", 1, 2, 3) + b"\0" * 4
    assert parse(record) == (1, 2, 3)
    assert parse(record + b"extra padding") == (1, 2, 3)
    with pytest.raises(EBPFError):
        parse(record[:10])


def test_event_parser_names_and_strings() -> None:
    spec = [("pid", "u32"), ("comm", "char[16]"), ("ts", "u64")]
    parse = codecs.make_event_parser(spec)
    serialize = codecs.make_event_serializer(spec)
    data = serialize((42, "bash", 7))
    assert len(data) == parse.size
    event = parse(data)
    assert (event.pid, event.comm, event.ts) == (42, "bash", 7)
    assert serialize({"pid": 1, "comm": "x", "ts": 2}) == serialize((1, "x", 2))
    with pytest.raises(EBPFError):
        serialize((1, "a" * 17, 2))
    with pytest.raises(EBPFError):
        serialize((1, "a"))
    with pytest.raises(EBPFError):
        serialize((-1, "a", 2))


@given(st.integers(0, 2**32 - 1), st.text(alphabet=st.characters(min_codepoint=1, max_codepoint=127), max_size=15),
       st.integers(-(2**63), 2**63 - 1))
def test_event_round_trip(pid: int, comm: str, ts: int) -> None:
    spec = [("pid", "u32"), ("comm", "char[16]"), ("ts", "i64")]
    event = codecs.make_event_parser(spec)(codecs.make_event_serializer(spec)((pid, comm, ts)))
    assert tuple(event) == (pid, comm, ts)


@given(st.binary(max_size=64))
def test_event_parser_never_leaks_struct_errors(data: bytes) -> None:
    parse = codecs.make_event_parser([("a", "u16"), ("s", "char[8]"), ("b", "i32")])
    if len(data) < parse.size:
        with pytest.raises(EBPFError):
            parse(data)
    else:
        assert len(parse(data)) == 3


@pytest.mark.parametrize("spec", [[], "u32", ["u33"], [("a", "u32"), "u64"], [("a", "u32"), ("a", "u8")], [1]])
def test_event_spec_errors(spec: object) -> None:
    with pytest.raises(EBPFError):
        codecs.make_event_parser(spec)  # type: ignore[arg-type]


def test_packed_events() -> None:
    parse = codecs.make_event_parser(["u8", "u32"], packed=True)
    assert parse.size == 5
    assert parse(b"\x01\x02\x00\x00\x00") == (1, 2)
