"""Histogram: filled in the kernel by a program run with chosen values, read back with from_map, printed
in bcc's layout (the expected text is written out from bcc's documented format)."""

from __future__ import annotations

import io
import json
import struct

import pytest
from ebpf.core import asm
from ebpf.core.asm import R0, R1, R6, R7, R8, R9
from ebpf.core.errors import EBPFError
from ebpf.core.maps import create_array_map, create_hash_map, create_percpu_array_map
from ebpf.core.programs import load_program
from ebpf.events.hist import Histogram, format_log2_hist
from hypothesis import given, settings
from hypothesis import strategies as st


def _bar(n: int) -> str:
    return "|" + ("*" * n).ljust(40) + "|"


def test_print_log2_hist_is_bccs_layout() -> None:
    # slot 0: 0..1 x1, slot 2: 4..7 x4, slot 3: 8..15 x10, slot 4: 16..31 x2
    h = Histogram([1, 0, 4, 10, 2])
    out = io.StringIO()
    h.print_log2_hist("usecs", file=out)
    assert out.getvalue().splitlines() == [
        "     usecs               : count     distribution",
        "         0 -> 1          : 1        " + _bar(4),
        "         2 -> 3          : 0        " + _bar(0),
        "         4 -> 7          : 4        " + _bar(16),
        "         8 -> 15         : 10       " + _bar(40),
        "        16 -> 31         : 2        " + _bar(8),
    ]


def test_log2_layout_widens_past_slot_31_and_strips_leading_zeros() -> None:
    counts = [0] * 40
    counts[3], counts[35] = 3, 1
    text = format_log2_hist(counts, "ns", strip_leading_zero=True).splitlines()
    assert text[0] == "               ns                            : count     distribution"
    assert text[1] == "                   8 -> 15                   : 3        |" + "*" * 20 + "|"
    assert text[-1] == "         34359738368 -> 68719476735          : 1        |" + "******".ljust(20) + "|"
    assert len(text) == 1 + 35 - 3 + 1
    assert format_log2_hist([0, 0]) == ""


def test_print_linear_hist_is_bccs_layout() -> None:
    out = io.StringIO()
    Histogram([0, 3, 1], kind="linear").print_linear_hist("kbytes", file=out)
    assert out.getvalue().splitlines() == [
        "     kbytes        : count     distribution",
        "        0          : 0        " + _bar(0),
        "        1          : 3        " + _bar(40),
        "        2          : 1        " + _bar(13),
    ]
    stepped = Histogram([2, 1], kind="linear", step=10, base=100).format_linear_hist("ms").splitlines()
    assert [line.split(":")[0].strip() for line in stepped[1:]] == ["100", "110"]


def test_keyed_sections_print_with_section_header() -> None:
    h = Histogram({"sdb": [0, 1], "sda": [2]})
    text = h.format_log2_hist("usecs", section_header="disk")
    assert text.startswith("\ndisk = 'sda'\n     usecs")
    assert "\ndisk = 'sdb'\n" in text
    assert h.format_log2_hist(section_header="disk", section_print_fn=str.upper).count("\ndisk = SD") == 2
    assert h.counts == [2, 1] and h.keyed and h.section("sda").counts == [2]
    with pytest.raises(EBPFError, match="no section"):
        h.section("nvme0n1")


def test_mean_percentile_to_dict() -> None:
    h = Histogram.from_values([10] * 50 + [1000] * 50)  # slots 3 (8..15) and 9 (512..1023)
    assert h.total == 100 and h.counts[3] == 50 and h.counts[9] == 50
    assert h.mean == pytest.approx(((8 + 15) / 2 + (512 + 1023) / 2) / 2)
    assert 8 <= h.percentile(25) <= 16 and 512 <= h.percentile(99) <= 1024
    assert h.percentile(0) == 8 and h.percentile(100) == 1024
    d = h.to_dict()
    assert json.loads(json.dumps(d))["slots"] == [{"low": 8, "high": 15, "count": 50},
                                                  {"low": 512, "high": 1023, "count": 50}]
    with pytest.raises(EBPFError, match="between 0 and 100"):
        h.percentile(101)
    assert Histogram().mean == 0.0 and Histogram().percentile(50) == 0.0


def test_bad_input() -> None:
    with pytest.raises(EBPFError, match="kind"):
        Histogram([1], kind="log10")
    with pytest.raises(EBPFError, match="step"):
        Histogram([1], kind="linear", step=0)
    with pytest.raises(EBPFError, match="negative"):
        Histogram([-1])
    with pytest.raises(EBPFError, match="needs a map"):
        Histogram.from_map(object())
    with pytest.raises(EBPFError, match="struct format"):
        Histogram.from_map(object(), key="<Z")


def test_rich_table_renders() -> None:
    pytest.importorskip("rich")
    from rich.console import Console

    console = Console(file=io.StringIO(), width=100)
    console.print(Histogram([1, 0, 4]))
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert "4 -> 7" in text and "█" in text


def _fill(hist: object, values: list[int], *, section: bool = False) -> None:
    """Run a raw_tracepoint program once per value: slot = log2(value) (keyed: ctx[1] << 32 | slot)."""
    body = [asm.ldx_mem("dw", R6, R1, 0), asm.ldx_mem("dw", R9, R1, 8), *asm.log2(R7, R6, tmp=R8)]
    if section:
        body += [asm.lsh64(R9, 32), asm.or64(R7, R9)]
        body += asm.hist_increment(hist, R7, key_size=8, create=True)
    else:
        body += asm.hist_increment(hist, R7, max_slots=64)
    with load_program(prog_type="raw_tracepoint", insns=[*body, asm.mov64(R0, 0), asm.exit_()], maps=(hist,)) as p:
        for v in values:
            p.test_run(ctx=struct.pack("<QQ", v & ((1 << 64) - 1), v >> 64))


@pytest.mark.privileged
def test_from_map_of_a_known_distribution() -> None:
    values = [0, 1, 2, 3, 3, 900, 1000, 1023, 1024, 5_000_000]
    with create_array_map(64, value_size=8) as hist:
        _fill(hist, values)
        got = Histogram.from_map(hist)
    assert got == Histogram.from_values(values)
    assert got.counts[:2] == [2, 3] and got.counts[9] == 3 and got.counts[10] == 1 and got.total == len(values)


@pytest.mark.privileged
def test_from_map_per_cpu_sums_the_cpus() -> None:
    with create_percpu_array_map(64, value_size=8) as hist:
        _fill(hist, [5, 6, 7, 100])
        assert Histogram.from_map(hist).counts[2] == 3


@pytest.mark.privileged
def test_from_map_keyed_by_section() -> None:
    with create_hash_map(256, key_size=8, value_size=8) as hist:
        _fill(hist, [10, 12, 3000] + [(7 << 64) | 5] * 4, section=True)
        got = Histogram.from_map(hist, key=lambda k: (k >> 32, k & 0xFFFFFFFF))
        by_struct = Histogram.from_map(hist, key="<II")  # little-endian u64: slot first, then the section
    assert sorted(got.sections) == [0, 7]
    assert got.section(0).counts == Histogram.from_values([10, 12, 3000]).counts
    assert got.section(7).counts == [0, 0, 4]
    assert sorted(by_struct.sections) == [2, 3, 11]  # that format reads the halves the other way round


@given(st.integers(min_value=1, max_value=10**12), st.data(), st.sampled_from([20, 40]))
@settings(max_examples=500, deadline=None)
def test_star_count_matches_bccs_loop(val_max: int, data: st.DataObject, width: int) -> None:
    from ebpf.events.hist import _stars

    val = data.draw(st.integers(min_value=0, max_value=val_max + 5))
    i, text = 0, ""
    while not (i > (width * val / val_max) - 1 or i > width - 1):  # bcc's _stars, step by step
        text += "*"
        i += 1
    if val > val_max:
        text = text[:-1] + "+"
    assert _stars(val, val_max, width) == text


@pytest.mark.privileged
@pytest.mark.parametrize("sections", [3, 100])  # 3 x 10 keys: the Python pass; 100 x 10: NumPy (when installed)
def test_from_map_high32_fast_path_matches_the_callable(sections: int) -> None:
    with create_hash_map(4096, key_size=8, value_size=8) as hist:
        hist.update_batch({(s << 32) | i: s * 100 + i + 1 for s in range(sections) for i in range(0, 20, 2)})
        fast = Histogram.from_map(hist, key="high32")
        slow = Histogram.from_map(hist, key=lambda k: (k >> 32, k & 0xFFFFFFFF))
        assert fast == slow and sorted(fast.sections) == list(range(sections))
        assert fast.section(2).counts[18] == 219
        hist[(7 << 32) | 5000] = 1
        with pytest.raises(EBPFError, match="slot 5000 out of range"):
            Histogram.from_map(hist, key="high32")
