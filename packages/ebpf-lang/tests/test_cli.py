"""``ebpf lang check|disasm|compile FILE.py`` (the plugin's command)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from ebpf.core.cli import main

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "lang"
BAD = '''\
from ebpf.lang import kernel, ctx_types as ct


@kernel("xdp")
def spin(ctx: ct.xdp_md) -> int:
    x = 0.5
    return 2
'''


def test_check_lists_each_function(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lang", "check", "--json", str(EXAMPLES / "latency_hist.py")]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["name"], r["section"]) for r in rows] == [
        ("sleep_enter", "tracepoint/syscalls/sys_enter_clock_nanosleep"),
        ("sleep_exit", "tracepoint/syscalls/sys_exit_clock_nanosleep")]
    assert all(r["insns"] > 10 for r in rows)


def test_check_reports_the_python_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad_prog.py"
    bad.write_text(BAD)
    assert main(["lang", "check", str(bad)]) == 1
    assert capsys.readouterr().err.strip() == (
        f"{bad}:6:9: floats are not supported in kernel code: use integers (e.g. nanoseconds, or a value scaled by 1000)")


def test_compile_writes_an_object(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "xdp.o"
    assert main(["lang", "compile", str(EXAMPLES / "xdp_counter.py"), "-o", str(out)]) == 0
    assert f"wrote {out}: xdp_count (" in capsys.readouterr().out
    assert out.read_bytes()[:4] == b"\x7fELF"


def test_disasm_shows_python_lines(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lang", "disasm", str(EXAMPLES / "cgroup_connect_block.py"), "--function", "block_connect"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("block_connect (cgroup/connect4):")
    assert "; refused[0] += 1" in text and "lock *(u64 *)" in text


def test_missing_file_and_no_functions(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lang", "check", str(tmp_path / "nope.py")]) == 1
    assert "ebpf lang:" in capsys.readouterr().err
    empty = tmp_path / "empty.py"
    empty.write_text("x = 1\n")
    assert main(["lang", "check", str(empty)]) == 1
    assert capsys.readouterr().err.strip() == f"ebpf lang: no @kernel functions in {empty}"
