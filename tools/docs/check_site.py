"""After ``mkdocs build``: every API reference page documents at least one object (no empty page).

Usage: ``python tools/docs/check_site.py SITE_DIR``; exits 1 naming the empty pages.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path


def main(site: str) -> int:
    """Check the built site; returns the exit status."""
    pages = sorted(p for p in Path(site, "reference").rglob("index.html") if "SUMMARY" not in p.parts)
    empty = [str(p.relative_to(site)) for p in pages
             if len(re.findall(r'class="doc doc-object', p.read_text())) < 2]  # the module itself + a member
    print(f"{len(pages)} reference pages, {len(empty)} empty")
    for page in empty:
        print(f"  empty: {page}")
    return 1 if empty or not pages else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1]))
