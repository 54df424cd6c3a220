"""``ebpf trace profile`` and ``ebpf trace offcpu`` run as a user would, on the spin_target C program."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.privileged
SRC = [str(Path(__file__).resolve().parents[2] / p / "src") for p in ("ebpf-core", "ebpf-events")]


def _ebpf(*argv: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([*SRC, *[p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]])
    return subprocess.run([sys.executable, "-m", "ebpf.core.cli", "trace", *argv], env=env, text=True,
                          capture_output=True, timeout=120)


def test_profile_folded_and_top(spin_builder, spawn) -> None:  # type: ignore[no-untyped-def]
    with spawn(spin_builder.plain, "spin") as target:
        folded = _ebpf("profile", "-F", "199", "-p", str(target.pid), "--duration", "1", "--folded")
        top = _ebpf("profile", "-p", str(target.pid), "--duration", "1", "--top", "3", "--json")
    assert folded.returncode == 0, folded.stderr
    assert folded.stderr.startswith("profiling on-CPU stacks at 199 Hz of pid")
    assert any(line.startswith("spin_plain;") and ";main;hot_spin_loop " in line for line in folded.stdout.splitlines())
    assert top.returncode == 0, top.stderr
    doc = json.loads(top.stdout)
    assert doc["top"][0]["name"] == "hot_spin_loop" and len(doc["top"]) <= 3


def test_profile_svg_speedscope_and_json(spin_builder, spawn, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    svg, speedscope = tmp_path / "cpu.svg", tmp_path / "cpu.json"
    with spawn(spin_builder.plain, "spin") as target:
        r1 = _ebpf("profile", "-p", str(target.pid), "--duration", "0.5", "--svg", str(svg))
        r2 = _ebpf("profile", "-p", str(target.pid), "--duration", "0.5", "--speedscope", str(speedscope))
        r3 = _ebpf("profile", "-p", str(target.pid), "--duration", "0.5", "--json", "--user-only")
    assert r1.returncode == 0 and r2.returncode == 0 and r3.returncode == 0, (r1.stderr, r2.stderr, r3.stderr)
    assert svg.read_text().startswith("<svg") and 'data-n="hot_spin_loop"' in svg.read_text()
    assert json.loads(speedscope.read_text())["profiles"][0]["type"] == "sampled"
    doc = json.loads(r3.stdout)
    assert doc["kind"] == "cpu" and doc["samples"]
    assert all(f["kind"] != "kernel" for s in doc["samples"] for f in s["frames"])


def test_offcpu_json(spin_builder, spawn) -> None:  # type: ignore[no-untyped-def]
    with spawn(spin_builder.plain, "sleep") as target:
        r = _ebpf("offcpu", "-p", str(target.pid), "--duration", "1", "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["unit"] == "us" and doc["total"] > 300_000
    assert any("nanosleep" in f["name"] for s in doc["samples"] for f in s["frames"])


@pytest.mark.parametrize("argv", [["profile", "--duration", "0"], ["profile", "-F", "0", "--duration", "1"],
                                  ["offcpu", "--min-block-us", "-5", "--duration", "1"],
                                  ["profile", "--folded", "--svg", "x.svg"]])
def test_bad_options(argv: list[str]) -> None:
    r = _ebpf(*argv)
    assert r.returncode != 0 and "Traceback" not in r.stderr, r.stderr
