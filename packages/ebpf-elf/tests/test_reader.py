"""The ELF reader (plain struct parsing) against pyelftools, on every fixture object."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from ebpf.elf._reader import read_object

FIXTURES = Path(__file__).resolve().parent / "fixtures"
OBJECTS = sorted(FIXTURES.glob("*.o"))
# pyelftools names the section types; the reader keeps the numbers.
_TYPES = {"SHT_NULL": 0, "SHT_PROGBITS": 1, "SHT_SYMTAB": 2, "SHT_STRTAB": 3, "SHT_RELA": 4, "SHT_NOBITS": 8,
          "SHT_REL": 9}


@pytest.mark.parametrize("path", OBJECTS, ids=[p.name for p in OBJECTS])
def test_sections_symbols_and_relocations_match_pyelftools(path: Path) -> None:
    elffile = pytest.importorskip("elftools.elf.elffile")
    data = path.read_bytes()
    raw = read_object(str(path), data)
    ref = elffile.ELFFile(io.BytesIO(data))
    assert len(raw.sections) == ref.num_sections()
    for sec, rsec in zip(raw.sections, ref.iter_sections()):
        assert (sec.name, sec.flags, sec.size, sec.link, sec.info, sec.offset) == (
            rsec.name, rsec["sh_flags"], rsec["sh_size"], rsec["sh_link"], rsec["sh_info"], rsec["sh_offset"])
        if rsec["sh_type"] in _TYPES:
            assert sec.type == _TYPES[rsec["sh_type"]]
        if sec.type not in (0, 8):
            assert sec.data == rsec.data()
    symtab = ref.get_section_by_name(".symtab")
    assert [(s.name, s.value, s.size, s.bind, s.type, s.visibility) for s in raw.symbols] == [
        (s.name, s["st_value"], s["st_size"], s["st_info"]["bind"], s["st_info"]["type"], s["st_other"]["visibility"])
        for s in symtab.iter_symbols()]
    for rel in ref.iter_sections():
        if rel["sh_type"] == "SHT_REL" and not ref.get_section(rel["sh_info"]).name.startswith(".debug_"):
            assert [(r.offset, r.symbol, r.type) for r in raw.relocations[rel["sh_info"]]] == [
                (r["r_offset"], r["r_info_sym"], r["r_info_type"]) for r in rel.iter_relocations()]
    debug = {i for i, sec in enumerate(raw.sections) if sec.name.startswith(".debug_")}
    assert not debug & set(raw.relocations)  # DWARF's relocations are not read
