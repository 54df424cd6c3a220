"""Malformed objects: our ELFError/BTFError naming the section and offset, never a raw
pyelftools/struct/IndexError, and nothing created in the kernel."""

from __future__ import annotations

import struct
from pathlib import Path

import ebpf.core as bpf
import pytest
from ebpf import elf
from ebpf.core.errors import BTFError, EBPFError, ELFError
from ebpf.elf._reader import read_object
from ebpf.elf.loader import link_object
from ebpf.elf.objfile import parse_object
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

FIXTURES = Path(__file__).resolve().parent / "fixtures"
OBJECTS = sorted(p.name for p in FIXTURES.glob("*.o") if p.name != "many_progs.o")


def _bytes(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def _write(tmp_path: Path, data: bytes, name: str = "bad.o") -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def _section(data: bytes, name: str):
    raw = read_object("x.o", data)
    sec = raw.section(name)
    assert sec is not None
    return sec


def test_missing_file_is_an_elf_error():
    with pytest.raises(ELFError, match="cannot read"):
        elf.load_elf("/nonexistent/prog.o")


@pytest.mark.parametrize("length", [0, 3, 16, 63, 64, 200, 1000])
def test_truncated_files(tmp_path, length):
    data = _bytes("xdp_counter.o")[:length]
    with pytest.raises((ELFError, BTFError)):
        elf.load_elf(_write(tmp_path, data))


def test_non_elf_file(tmp_path):
    with pytest.raises(ELFError, match="not an ELF file"):
        elf.inspect_elf(_write(tmp_path, b"#!/bin/sh\necho hello\n" * 10))


def test_wrong_machine(tmp_path):
    data = bytearray(_bytes("xdp_counter.o"))
    struct.pack_into("<H", data, 18, 62)  # EM_X86_64
    with pytest.raises(ELFError, match=r"wrong machine e_machine=62 at offset 18"):
        elf.load_elf(_write(tmp_path, bytes(data)))


def test_big_endian_object(tmp_path):
    data = bytearray(_bytes("xdp_counter.o"))
    data[5] = 2  # ELFDATA2MSB
    with pytest.raises(ELFError, match="big-endian"):
        elf.load_elf(_write(tmp_path, bytes(data)))


def test_32bit_object(tmp_path):
    data = bytearray(_bytes("xdp_counter.o"))
    data[4] = 1
    with pytest.raises(ELFError, match="32-bit"):
        elf.inspect_elf(_write(tmp_path, bytes(data)))


def test_core_load_refuses_other_elf_files():
    with pytest.raises(EBPFError, match="no object loader"):
        bpf.load("/bin/true")


def test_unknown_section(tmp_path):
    src = tmp_path / "unknown.c"
    src.write_text('#include "bpf_helpers.h"\nSEC("bogus_section") int f(void *ctx) { return 0; }\n'
                   'char LICENSE[] SEC("license") = "GPL";\n')
    out = elf.compile_c(src)
    info = elf.inspect_elf(out)
    assert [(p.name, p.type) for p in info.programs] == [("f", "unknown")]
    with pytest.raises(ELFError, match="unknown section 'bogus_section'"):
        elf.load_elf(out)


def test_relocation_to_missing_symbol(tmp_path):
    data = bytearray(_bytes("xdp_counter.o"))
    rel = _section(bytes(data), ".relxdp")
    r_offset, r_info = struct.unpack_from("<QQ", data, rel.offset)
    struct.pack_into("<QQ", data, rel.offset, r_offset, (9999 << 32) | (r_info & 0xFFFFFFFF))
    with pytest.raises(ELFError, match="missing symbol #9999"):
        elf.load_elf(_write(tmp_path, bytes(data)))


def test_corrupt_btf_magic(tmp_path):
    data = bytearray(_bytes("xdp_counter.o"))
    btf = _section(bytes(data), ".BTF")
    data[btf.offset : btf.offset + 2] = b"\x00\x00"
    with pytest.raises(BTFError, match=r"bad BTF magic .* at offset 0 .*section .BTF"):
        elf.load_elf(_write(tmp_path, bytes(data)))


def test_corrupt_btf_type_kind(tmp_path):
    data = bytearray(_bytes("xdp_counter.o"))
    btf = _section(bytes(data), ".BTF")
    hdr_len, type_off = struct.unpack_from("<II", data, btf.offset + 4)
    info_at = btf.offset + hdr_len + type_off + 4
    struct.pack_into("<I", data, info_at, 31 << 24)  # kind 31 does not exist
    with pytest.raises(BTFError, match="unknown BTF kind 31"):
        elf.load_elf(_write(tmp_path, bytes(data)))


def test_corrupt_btf_ext(tmp_path):
    data = bytearray(_bytes("core.o"))
    ext = _section(bytes(data), ".BTF.ext")
    hdr_len, fi_off = struct.unpack_from("<II", data, ext.offset + 4)
    struct.pack_into("<I", data, ext.offset + hdr_len + fi_off, 3)  # func_info record size 3
    with pytest.raises(BTFError, match=r"func_info record size 3 .*section .BTF.ext"):
        elf.load_elf(_write(tmp_path, bytes(data)))


def test_section_past_end_of_file(tmp_path):
    data = bytearray(_bytes("xdp_counter.o"))
    raw = read_object("x.o", bytes(data))
    e_shoff = struct.unpack_from("<Q", data, 0x28)[0]
    sec = raw.section("xdp")
    sh = e_shoff + sec.index * 64
    struct.pack_into("<Q", data, sh + 0x20, 1 << 40)  # sh_size
    with pytest.raises(ELFError, match="'xdp'"):
        elf.load_elf(_write(tmp_path, bytes(data)))


def _parse_everything(path: str, data: bytes) -> None:
    """Everything short of the kernel: parse, link, fix BTF up, build the spec, apply CO-RE."""
    import tempfile

    from ebpf.elf.btf_fixup import fixup_btf

    obj = parse_object(path, data)
    link_object(obj)
    fixup_btf(obj)
    elf.inspect_elf(obj)
    with tempfile.NamedTemporaryFile(suffix=".o") as fh:
        fh.write(data)
        fh.flush()
        spec = elf.load_spec(fh.name)
    spec.prepare()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(OBJECTS), data=st.data())
def test_fuzz_mutated_objects_raise_only_our_errors(name, data):
    blob = bytearray(_bytes(name))
    for _ in range(data.draw(st.integers(1, 8))):
        pos = data.draw(st.integers(0, len(blob) - 1))
        blob[pos] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()):
        blob = blob[: data.draw(st.integers(0, len(blob)))]
    try:
        _parse_everything(name, bytes(blob))
    except (ELFError, BTFError):
        pass


@settings(max_examples=200, deadline=None)
@given(name=st.sampled_from(OBJECTS), data=st.data())
def test_fuzz_btf_sections(name, data):
    blob = bytearray(_bytes(name))
    sec = _section(bytes(blob), data.draw(st.sampled_from([".BTF", ".BTF.ext"])))
    for _ in range(data.draw(st.integers(1, 6))):
        pos = sec.offset + data.draw(st.integers(0, sec.size - 1))
        blob[pos] = data.draw(st.integers(0, 255))
    try:
        _parse_everything(name, bytes(blob))
    except (ELFError, BTFError):
        pass
