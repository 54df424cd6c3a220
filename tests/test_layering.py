"""The layering promises, checked on the sources: plugin packages use only ebpf-core's public modules,
and ebpf-core has no import cycle at import time (``python tools/import_graph.py`` prints the graph)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PLUGIN_DISTS = ["ebpf-net", "ebpf-events", "ebpf-security", "ebpf-elf"]
OTHER_DISTS = sorted(p.name for p in (ROOT / "packages").iterdir() if p.name.startswith("ebpf-") and p.name != "ebpf-core")
PRIVATE_CORE = re.compile(r"^\s*(from|import)\s+ebpf\.core\._|^\s*from\s+ebpf\.core\s+import\s+_", re.M)


@pytest.mark.parametrize("dist", OTHER_DISTS)
def test_plugin_packages_import_no_private_module_of_core(dist: str) -> None:
    offenders = [f"{path.relative_to(ROOT)}: {m.group(0).strip()}"
                 for path in sorted((ROOT / "packages" / dist).rglob("*.py"))
                 for m in PRIVATE_CORE.finditer(path.read_text(encoding="utf-8"))]
    assert offenders == [], "use ebpf.core.lowlevel (or another public module) instead"


@pytest.mark.parametrize("dist", PLUGIN_DISTS)
def test_plugin_packages_pin_the_core_range_they_were_built_against(dist: str) -> None:
    text = (ROOT / "packages" / dist / "pyproject.toml").read_text(encoding="utf-8")
    assert re.search(r'"ebpf-core>=[0-9.]+,<[0-9.]+"', text), f"{dist} must pin ebpf-core to a version range"


def test_core_has_no_import_cycle() -> None:
    out = subprocess.run([sys.executable, str(ROOT / "tools" / "import_graph.py")], capture_output=True, text=True,
                         timeout=60).stdout
    assert "cycles at import time: 0 " in out, out
    assert "cycles over all edges: 0 " in out, out  # imports inside functions included


def test_every_import_inside_a_function_of_core_says_why() -> None:
    # Deferred imports are kept only for start-up time, an optional dependency or a cycle; the
    # comment on (or just above) the import says which (`tools/import_graph.py --deferred` lists them).
    out = subprocess.run([sys.executable, str(ROOT / "tools" / "import_graph.py"), "--deferred"], capture_output=True,
                         text=True, timeout=60).stdout
    assert "(0 without a comment saying why)" in out, [line for line in out.splitlines() if line.startswith("! ")]
