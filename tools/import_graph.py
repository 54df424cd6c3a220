"""Print the import graph of a package in this tree and its import cycles.

    python tools/import_graph.py                 # ebpf.core: summary, cycles, deferred imports
    python tools/import_graph.py --edges         # ... and every edge (module -> what it imports)
    python tools/import_graph.py --deferred      # ... and every import inside a function (! = no comment why)
    python tools/import_graph.py ebpf.events     # another package of the namespace

Reads the sources as text (nothing is imported).  An edge is an ``import`` or ``from ... import``
of a module of the same package; imports under ``if TYPE_CHECKING:`` are left out (they never run).
"top" edges run when the module is imported; "deferred" ones inside a function body.  A cycle is a
strongly connected component of more than one module, counted twice: over the top-level edges
(what Python meets at import time) and over all edges (the layering: which module needs which).
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def source_root(package: str) -> Path:
    """The ``src`` directory of the distribution that holds ``package`` (``ebpf.core`` -> packages/ebpf-core/src)."""
    dist = "ebpf-" + package.split(".")[1]
    return ROOT / "packages" / dist / "src"


def modules(package: str) -> dict[str, Path]:
    """Dotted module name -> file, for every module of ``package``."""
    src = source_root(package)
    base = src.joinpath(*package.split("."))
    found = {}
    for path in sorted(base.rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _walk(node: ast.AST, deferred: bool) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _is_type_checking(child):
            for sub in child.orelse:
                yield from _walk(sub, deferred)
            continue
        if isinstance(child, (ast.Import, ast.ImportFrom)):
            yield child, deferred
        inner = deferred or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
        yield from _walk(child, inner)


def _resolve(module: str, is_pkg: bool, node: ast.Import | ast.ImportFrom, known: dict[str, Path]) -> list[str]:
    """The modules of ``known`` that ``node`` (in ``module``) imports."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names if alias.name in known]
    base = node.module or ""
    if node.level:
        anchor = module.split(".") if is_pkg else module.split(".")[:-1]
        anchor = anchor[: len(anchor) - (node.level - 1)]
        base = ".".join([*anchor, base] if base else anchor)
    targets = []
    for alias in node.names:
        sub = f"{base}.{alias.name}"
        if sub in known:
            targets.append(sub)  # `from pkg import submodule`
        elif base in known:
            targets.append(base)
    return targets


def graph(package: str) -> dict[str, dict[str, str]]:
    """module -> {imported module: "top" or "deferred"} (top wins when both)."""
    known = modules(package)
    edges: dict[str, dict[str, str]] = {m: {} for m in known}
    for module, path in known.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node, deferred in _walk(tree, False):
            for target in _resolve(module, path.name == "__init__.py", node, known):
                if target == module:
                    continue
                if edges[module].get(target) != "top":
                    edges[module][target] = "deferred" if deferred else "top"
    return edges


def deferred_count(package: str) -> tuple[int, int]:
    """(imports of the package's own modules inside function bodies, all such imports)."""
    known = modules(package)
    deferred = total = 0
    for module, path in known.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node, is_deferred in _walk(tree, False):
            if _resolve(module, path.name == "__init__.py", node, known):
                total += 1
                deferred += is_deferred
    return deferred, total


def deferred_imports(package: str, own_only: bool = False) -> list[tuple[str, int, str, bool]]:
    """Every import inside a function body: ``(file, line, statement, has a comment saying why)``.

    The comment is a ``#`` on one of the statement's lines or on the line just above it.
    ``own_only``: only imports of the package's own modules.
    """
    known = modules(package)
    found = []
    for module, path in known.items():
        lines = path.read_text(encoding="utf-8").splitlines()
        tree = ast.parse("\n".join(lines), str(path))
        for node, is_deferred in _walk(tree, False):
            if not is_deferred or (own_only and not _resolve(module, path.name == "__init__.py", node, known)):
                continue
            first, last = node.lineno, node.end_lineno or node.lineno
            text = lines[first - 1 : last]
            commented = any("#" in line for line in text) or (first > 1 and lines[first - 2].strip().startswith("#"))
            rel = path.relative_to(ROOT).as_posix()
            found.append((rel, first, " ".join(t.strip() for t in text).split("#")[0].strip(), commented))
    return found


def cycles(edges: dict[str, dict[str, str]], kinds: tuple[str, ...]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), over edges of ``kinds``."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]
    sys.setrecursionlimit(10_000)

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w, kind in edges[v].items():
            if kind not in kinds:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in edges:
        if v not in index:
            visit(v)
    return found


def main(argv: list[str] | None = None) -> int:
    """Print the summary (and with ``--edges`` the graph); exit 1 when there is a cycle over all edges."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("package", nargs="?", default="ebpf.core")
    parser.add_argument("--edges", action="store_true", help="print every edge")
    parser.add_argument("--deferred", action="store_true",
                        help="list every import inside a function, marking those without a comment saying why")
    args = parser.parse_args(argv)
    edges = graph(args.package)
    top = sum(kind == "top" for e in edges.values() for kind in e.values())
    late = sum(kind == "deferred" for e in edges.values() for kind in e.values())
    deferred, total = deferred_count(args.package)
    at_import = cycles(edges, ("top",))
    layering = cycles(edges, ("top", "deferred"))
    print(f"{args.package}: {len(edges)} modules, {top + late} edges ({top} top-level, {late} only deferred); "
          f"{total} imports of its own modules, {deferred} inside functions")
    print(f"cycles at import time: {len(at_import)} ({sum(map(len, at_import))} modules)")
    print(f"cycles over all edges: {len(layering)} ({sum(map(len, layering))} modules)")
    for comp in layering:
        print("  cycle: " + " ".join(m.removeprefix(args.package + ".") for m in comp))
    if args.edges:
        for module, targets in sorted(edges.items()):
            for target, kind in sorted(targets.items()):
                print(f"{module} -> {target}" + (" (deferred)" if kind == "deferred" else ""))
    late_imports = deferred_imports(args.package)
    bare = [d for d in late_imports if not d[3]]
    print(f"imports inside functions: {len(late_imports)} ({len(bare)} without a comment saying why)")
    if args.deferred:
        for rel, line, stmt, commented in late_imports:
            print(f"{'  ' if commented else '! '}{rel}:{line}: {stmt}")
    return 1 if layering else 0


if __name__ == "__main__":
    raise SystemExit(main())
