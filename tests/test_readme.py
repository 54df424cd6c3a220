"""The README's Python snippets run as printed (as root, on this kernel) and print what their comments promise."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from ebpf.core.errors import UnsupportedFeatureError
from ebpf.core.features import have_kprobes

pytestmark = pytest.mark.privileged
ROOT = Path(__file__).resolve().parents[1]
PATHS = [str(p) for p in (ROOT / "packages").glob("ebpf-*/src")]


def _snippets() -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", (ROOT / "README.md").read_text(), re.S | re.M)


def _kprobe_text() -> str:
    try:
        have_kprobes()
    except UnsupportedFeatureError as exc:
        return re.escape(str(exc))
    return r"^$"  # the snippet prints nothing where kprobes work


#: what each snippet must print, in README order (a snippet added to the README needs a line here)
EXPECTED: list[list[str]] = [
    [r"\[\(1, 10\), \(2, 20\)\] 2", r"r0 = 2", r"\n2 1\n"],
    [_kprobe_text()],
    [r"^\d+ \d+ 0 \S+ \S*/true$"],
    [r"\[b'true'\]"],
    [r"uprobe .*getpid"],
    [r"Operation not permitted"],
    [r"int file_open\(struct file \*file\)"],
    [r"\['count'\] \['hits'\]"],
    [r"my socket filter"],
]


def test_every_snippet_has_its_expectations() -> None:
    assert len(_snippets()) == len(EXPECTED)


@pytest.mark.parametrize("index", range(len(EXPECTED)))
def test_readme_snippet_runs(index: int) -> None:
    code = _snippets()[index]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([*PATHS, *[p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]])
    proc = subprocess.run([sys.executable, "-c", code], env=env, text=True, capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for pattern in EXPECTED[index]:
        assert re.search(pattern, proc.stdout, re.M), f"snippet {index + 1}: no {pattern!r} in:\n{proc.stdout}"
