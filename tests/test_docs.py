"""Every Python example of the documentation site runs as printed and prints what the page shows.

Conventions a page follows (docs/DEVELOPING.md, "Documentation"):

- a ```` ```python ```` block runs as a script file in a fresh interpreter as root, with every package
  importable;
- the ```` ```text title="Output" ```` block right after it lists what it must print: each line,
  in order, must appear in a line of the output, ``…`` standing for anything;
- ``<!-- requires: module:probe -->`` on the line before a block names the feature probe it needs;
  where the probe raises UnsupportedFeatureError the block is skipped with that reason (and runs in
  the kernel matrix, ``./dev.sh vm``, where the kernel has the feature);
- ``<!-- no-run -->`` marks a block that only shows a fragment (never used for a whole example).
"""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from ebpf.core.testing import require

pytestmark = pytest.mark.privileged
ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PATHS = [str(p) for p in (ROOT / "packages").glob("ebpf-*/src")]
BLOCK = re.compile(r"(?:<!-- (?P<marker>[^>]*?) -->\n)?```python\n(?P<code>.*?)^```\n"
                   r"(?:\s*```text title=\"Output\"\n(?P<out>.*?)^```)?", re.S | re.M)


@dataclass
class Example:
    page: str
    index: int
    code: str
    expected: list[str]
    marker: str

    @property
    def id(self) -> str:
        return f"{self.page}#{self.index}"


def examples() -> list[Example]:
    found = []
    for page in sorted(DOCS.rglob("*.md")):
        text = page.read_text()
        for i, m in enumerate(BLOCK.finditer(text), 1):
            out = (m.group("out") or "").splitlines()
            found.append(Example(str(page.relative_to(DOCS)), i, m.group("code"), out, m.group("marker") or ""))
    return found


EXAMPLES = examples()


def test_the_site_has_examples() -> None:
    assert len(EXAMPLES) >= 20
    assert not [e.id for e in EXAMPLES if e.marker == "no-run" and "import" in e.code], \
        "no-run is for fragments only: a whole example must run"


def _matches(expected: list[str], output: str) -> bool:
    lines = output.splitlines()
    pos = 0
    for want in expected:
        pattern = re.compile(".*".join(re.escape(part) for part in want.split("…")))
        while pos < len(lines) and not pattern.search(lines[pos]):
            pos += 1
        if pos == len(lines):
            return False
        pos += 1
    return True


@pytest.mark.parametrize("example", [e for e in EXAMPLES if e.marker != "no-run"], ids=lambda e: e.id)
def test_example_runs_and_prints_what_the_page_shows(example: Example, tmp_path: Path) -> None:
    if example.marker.startswith("requires:"):
        module, _, name = example.marker.split(":", 1)[1].strip().partition(":")
        require(getattr(importlib.import_module(module), name))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([*PATHS, *[p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]])
    script = tmp_path / "example.py"  # a file, as a user runs it (ebpf.lang reads function sources)
    script.write_text(example.code)
    proc = subprocess.run([sys.executable, str(script)], env=env, text=True, capture_output=True, timeout=300,
                          cwd=ROOT)
    assert proc.returncode == 0, f"{example.id} failed:\n{proc.stdout}{proc.stderr}"
    assert _matches(example.expected, proc.stdout), \
        f"{example.id}: expected, in order:\n" + "\n".join(example.expected) + f"\ngot:\n{proc.stdout}"
