"""A self-contained interactive flame graph in SVG, written by us (no flamegraph.pl needed).

Every frame is a ``<g class="f">`` holding a ``<title>`` (the tooltip), a ``<rect>`` and a
``<text>``; its ``data-*`` attributes carry the name, kind, weight, depth and position as
fractions of the root, so the embedded script can zoom without the Python side.  Click a frame
to zoom into it, click the root or press Escape to reset; "Search" (or Ctrl-F) highlights
frames matching a regular expression and shows the share they cover.  The URL fragment
``#zoom=NAME`` or ``#search=REGEX`` applies either on load (handy for links and for tests).
Colours say what a frame is: user code warm, kernel orange, JIT/interpreted green, processes grey.
"""

from __future__ import annotations

import html
import zlib
from collections.abc import Mapping

__all__ = ["render_svg", "frame_kind"]

_FRAME_H = 16
_TOP = 48
_BOTTOM = 32
_FONT = 12
_CHAR_W = 0.59 * _FONT


def frame_kind(label: str, depth: int) -> tuple[str, str]:
    """``(display name, kind)`` of a folded-stack label at ``depth`` (1 is the process)."""
    if depth == 0:
        return label, "root"
    if depth == 1:
        return label, "comm"
    if label.endswith("_[k]"):
        return label[:-4], "kernel"
    if label.endswith("_[j]"):
        return label[:-4], "jit"
    return label, "user"


def _colour(name: str, kind: str) -> str:
    h = zlib.crc32(name.encode()) / 0xFFFFFFFF
    v = zlib.crc32(name[::-1].encode()) / 0xFFFFFFFF
    if kind == "kernel":
        return f"rgb({int(220 + 30 * v)},{int(120 + 60 * h)},{int(30 + 30 * v)})"
    if kind == "jit":
        return f"rgb({int(60 + 60 * h)},{int(180 + 60 * v)},{int(60 + 50 * h)})"
    if kind in ("comm", "root"):
        return f"rgb({int(170 + 30 * v)},{int(170 + 30 * v)},{int(190 + 30 * h)})"
    return f"rgb({int(205 + 50 * v)},{int(90 + 140 * h)},{int(40 + 30 * v)})"


class _Node:
    __slots__ = ("children", "name", "value")

    def __init__(self, name: str) -> None:
        self.name = name
        self.value = 0
        self.children: dict[str, _Node] = {}


def _tree(stacks: Mapping[tuple[str, ...], int]) -> tuple[_Node, int]:
    root = _Node("all")
    depth = 0
    for stack, value in stacks.items():
        if value <= 0:
            continue
        node = root
        node.value += value
        for label in stack:
            node = node.children.setdefault(label, _Node(label))
            node.value += value
        depth = max(depth, len(stack))
    return root, depth


def _fit(text: str, width: float) -> str:
    room = int((width - 6) / _CHAR_W)
    if room < 3:
        return ""
    return text if len(text) <= room else text[: room - 2] + ".."


def render_svg(stacks: Mapping[tuple[str, ...], int], *, title: str = "Flame graph", unit: str = "samples",
               width: int = 1200) -> str:
    """The SVG document of a flame graph of ``stacks`` (root-first frame labels -> weight).

    :param title: the heading.
    :param unit: what the weights count ("samples", "us").
    :param width: the image width in pixels.
    """
    root, depth = _tree(stacks)
    height = _TOP + (depth + 1) * _FRAME_H + _BOTTOM
    total = root.value or 1
    inner = width - 20
    min_frac = 0.1 / inner
    parts: list[str] = []

    def emit(node: _Node, level: int, start: float) -> None:
        frac = node.value / total
        if frac < min_frac:
            return
        name, kind = frame_kind(node.name, level)
        x, w = 10 + start * inner, frac * inner
        y = height - _BOTTOM - (level + 1) * _FRAME_H
        pct = 100.0 * node.value / total
        esc = html.escape(name, quote=True)
        parts.append(
            f'<g class="f" data-n="{esc}" data-k="{kind}" data-v="{node.value}" data-d="{level}" '
            f'data-x="{start:.9f}" data-w="{frac:.9f}"><title>{esc} ({node.value:,} {unit}, {pct:.2f}%)</title>'
            f'<rect x="{x:.2f}" y="{y}" width="{w:.2f}" height="{_FRAME_H - 1}" rx="2" fill="{_colour(name, kind)}"/>'
            f'<text x="{x + 3:.2f}" y="{y + _FRAME_H - 4}">{html.escape(_fit(name, w))}</text></g>')
        child_start = start
        for child in sorted(node.children.values(), key=lambda c: c.name):
            emit(child, level + 1, child_start)
            child_start += child.value / total

    emit(root, 0, 0.0)
    head = (f'<svg xmlns="http://www.w3.org/2000/svg" version="1.1" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" data-unit="{html.escape(unit)}" data-total="{root.value}">')
    style = ("<style>text{font-family:Verdana,sans-serif;font-size:FONTpx;fill:#000}.f{cursor:pointer}"
             ".f:hover rect{stroke:#000;stroke-width:0.5}.hide{display:none}.parent rect{opacity:0.5}"
             "#title{font-size:17px;text-anchor:middle}.btn{cursor:pointer;fill:#333}</style>").replace("FONT", str(_FONT))
    chrome = (f'<rect width="100%" height="100%" fill="#f8f8f8"/>'
              f'<text id="title" x="{width / 2}" y="24">{html.escape(title)}</text>'
              f'<text id="reset" class="btn hide" x="10" y="24">Reset Zoom</text>'
              f'<text id="search" class="btn" x="{width - 110}" y="24">Search</text>'
              f'<text id="matched" x="{width - 110}" y="{height - 10}"></text>'
              f'<text id="details" x="10" y="{height - 10}"> </text>')
    return "\n".join([head, style, chrome, '<g id="frames">', *parts, "</g>",
                      f"<script><![CDATA[{_SCRIPT % {'inner': inner, 'char': _CHAR_W}}]]></script>", "</svg>\n"])


_SCRIPT = """
(function () {
  var INNER = %(inner)s, CHAR = %(char)s;
  var frames = Array.prototype.slice.call(document.querySelectorAll('g.f'));
  var unit = document.documentElement.getAttribute('data-unit');
  var total = +document.documentElement.getAttribute('data-total') || 1;
  var details = document.getElementById('details'), matched = document.getElementById('matched');
  var reset = document.getElementById('reset');
  function attr(g, k) { return g.getAttribute('data-' + k); }
  function fit(name, w) {
    var room = Math.floor((w - 6) / CHAR);
    if (room < 3) return '';
    return name.length <= room ? name : name.slice(0, room - 2) + '..';
  }
  function place(g, x, w) {
    var r = g.querySelector('rect'), t = g.querySelector('text');
    r.setAttribute('x', (10 + x * INNER).toFixed(2)); r.setAttribute('width', (w * INNER).toFixed(2));
    t.setAttribute('x', (13 + x * INNER).toFixed(2)); t.textContent = fit(attr(g, 'n'), w * INNER);
  }
  function zoom(target) {
    var x0 = +attr(target, 'x'), w0 = +attr(target, 'w'), d0 = +attr(target, 'd'), eps = 1e-9;
    frames.forEach(function (g) {
      var x = +attr(g, 'x'), w = +attr(g, 'w'), d = +attr(g, 'd');
      g.classList.remove('hide'); g.classList.remove('parent');
      if (d < d0 && x <= x0 + eps && x + w >= x0 + w0 - eps) { g.classList.add('parent'); place(g, 0, 1); }
      else if (d >= d0 && x >= x0 - eps && x + w <= x0 + w0 + eps) { place(g, (x - x0) / w0, w / w0); }
      else { g.classList.add('hide'); }
    });
    document.documentElement.setAttribute('data-zoomed', attr(target, 'n'));
    reset.classList.toggle('hide', d0 === 0);
  }
  function unzoom() { zoom(frames[0]); document.documentElement.removeAttribute('data-zoomed'); }
  function search(pattern) {
    var re; try { re = new RegExp(pattern); } catch (e) { return; }
    var spans = [];
    frames.forEach(function (g) {
      var r = g.querySelector('rect');
      if (!r.hasAttribute('data-fill')) r.setAttribute('data-fill', r.getAttribute('fill'));
      var hit = pattern !== '' && re.test(attr(g, 'n'));
      r.setAttribute('fill', hit ? 'rgb(230,0,230)' : r.getAttribute('data-fill'));
      g.classList.toggle('match', hit);
      if (hit) spans.push([+attr(g, 'x'), +attr(g, 'x') + +attr(g, 'w'), +attr(g, 'v')]);
    });
    spans.sort(function (a, b) { return a[0] - b[0] || b[1] - a[1]; });
    var covered = 0, end = -1;
    spans.forEach(function (s) { if (s[0] >= end - 1e-12) { covered += s[2]; end = s[1]; } });
    matched.textContent = pattern === '' ? '' : 'Matched: ' + (100 * covered / total).toFixed(1) + '%%';
    document.documentElement.setAttribute('data-matched', (100 * covered / total).toFixed(1));
  }
  frames.forEach(function (g) {
    g.addEventListener('click', function () { if (+attr(g, 'd') === 0) unzoom(); else zoom(g); });
    g.addEventListener('mouseover', function () {
      details.textContent = 'Function: ' + attr(g, 'n') + ' (' + (+attr(g, 'v')).toLocaleString() + ' ' + unit +
        ', ' + (100 * attr(g, 'v') / total).toFixed(2) + '%%)';
    });
    g.addEventListener('mouseout', function () { details.textContent = ' '; });
  });
  reset.addEventListener('click', unzoom);
  document.getElementById('search').addEventListener('click', function () {
    var p = window.prompt('Search (regular expression)', ''); if (p !== null) search(p);
  });
  window.addEventListener('keydown', function (e) {
    if (e.key === 'Escape') unzoom();
    if ((e.ctrlKey || e.metaKey) && e.key === 'f') {
      e.preventDefault(); var p = window.prompt('Search (regular expression)', ''); if (p !== null) search(p);
    }
  });
  var hash = decodeURIComponent((window.location.hash || '').slice(1));
  if (hash.indexOf('zoom=') === 0) {
    var name = hash.slice(5);
    var hit = frames.filter(function (g) { return attr(g, 'n') === name; })[0];
    if (hit) zoom(hit);
  } else if (hash.indexOf('search=') === 0) { search(hash.slice(7)); }
  document.documentElement.setAttribute('data-ready', '1');
})();
"""
