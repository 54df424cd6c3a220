"""mkdocs-gen-files script: one API reference page per public module of every distribution.

Public means: no path component starts with an underscore. Run by ``mkdocs build`` (the
``gen-files`` plugin); the pages exist only in the built site.
"""

from __future__ import annotations

from pathlib import Path

import mkdocs_gen_files

ROOT = Path(__file__).resolve().parents[2]
nav = mkdocs_gen_files.Nav()

_listed = (ROOT / "mkdocs.yml").read_text()
_missing = [p.relative_to(ROOT).as_posix() for p in sorted(ROOT.glob("packages/ebpf-*/src"))
            if p.relative_to(ROOT).as_posix() not in _listed]
if _missing:  # a new distribution must be added to the mkdocstrings handler's paths
    raise SystemExit(f"mkdocs.yml: add {', '.join(_missing)} to plugins.mkdocstrings.handlers.python.paths")

for src in sorted(ROOT.glob("packages/ebpf-*/src")):
    for path in sorted(src.rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if len(parts) < 2 or any(p.startswith("_") for p in parts) or "builtin" in parts:
            continue
        module = ".".join(parts)
        doc = Path("reference", *parts[1:], "index.md" if path.name == "__init__.py" else f"{parts[-1]}.md")
        if path.name != "__init__.py":
            doc = Path("reference", *parts[1:-1], f"{parts[-1]}.md")
        nav[tuple(parts[1:])] = doc.relative_to("reference").as_posix()
        with mkdocs_gen_files.open(doc, "w") as fh:
            fh.write(f"# `{module}`\n\n::: {module}\n")

with mkdocs_gen_files.open("reference/SUMMARY.md", "w") as fh:
    fh.writelines(nav.build_literate_nav())
