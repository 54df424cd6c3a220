"""The flame graph SVG in a real browser: headless Chromium (Debian's ``chromium``, installed by the
test session when missing) runs its script, and the frames are read back from the DOM."""

from __future__ import annotations

import re
import subprocess
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

import pytest
from ebpf.core.testing import debian_package
from ebpf.events._profile_data import parse_folded
from ebpf.events.profile import Frame, Profile, Profiler, Sample

SVG = "{http://www.w3.org/2000/svg}"
# one process (no zygote, renderer, GPU or utility children): each exec of Chromium costs much in an emulated VM
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--single-process", "--no-zygote"]
#: Seconds one headless Chromium run may take: ~2 s here, minutes in an emulated VM (the kernel matrix under
#: QEMU/TCG); a bound against a hang, never a measurement.
CHROMIUM_TIMEOUT = 900


#: Debian packages these tests need, with the commands each provides (also installed on the host by the
#: kernel matrix before it boots its guests: tools/vm/matrix.py).
APT_PREREQUISITES = {"chromium": ("chromium",)}


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's chromium, installed with apt-get (as root) when it is not there yet."""
    return debian_package("chromium", *APT_PREREQUISITES["chromium"])


def dump_dom(chromium: str, svg: Path, fragment: str = "") -> ET.Element:
    """Open ``svg`` (with ``#fragment``) in headless Chromium; the DOM after its script ran."""
    with tempfile.TemporaryDirectory(prefix="ebpf-chromium-") as profile_dir:
        proc = subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile_dir}", "--dump-dom",
                               svg.resolve().as_uri() + (f"#{fragment}" if fragment else "")],
                              capture_output=True, text=True, timeout=CHROMIUM_TIMEOUT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    root = ET.fromstring(proc.stdout)
    assert root.get("data-ready") == "1", "the flame graph's script did not run"
    return root


def frames(root: ET.Element) -> list[ET.Element]:
    return [g for g in root.iter(f"{SVG}g") if "f" in (g.get("class") or "").split()]


def width(g: ET.Element) -> float:
    rect = g.find(f"{SVG}rect")
    assert rect is not None
    return float(rect.get("width", "0"))


def visible(g: ET.Element) -> bool:
    return "hide" not in (g.get("class") or "").split()


def _synthetic() -> Profile:
    def u(name: str) -> Frame:
        return Frame(name, "app", "user", 0)

    return Profile([Sample(1, "app", [u("leaf_a"), u("middle"), u("main")], [], 6),
                    Sample(1, "app", [u("leaf_b"), u("middle"), u("main")], [Frame("do_syscall_64", "kernel",
                                                                                      "kernel", 0)], 3),
                    Sample(1, "app", [u("other"), u("main")], [], 1),
                    Sample(2, "py", [Frame("py::f:x.py", "[perf-map]", "jit", 0)], [], 10)])


def test_frames_read_back_from_the_dom(chromium: str, tmp_path: Path) -> None:
    profile = _synthetic()
    path = tmp_path / "synthetic.svg"
    profile.flamegraph(path, title="synthetic <test>")
    root = dump_dom(chromium, path)
    got = {(g.get("data-n"), g.get("data-k"), int(g.get("data-v", "0"))) for g in frames(root)}
    assert ("all", "root", 20) in got and ("main", "user", 10) in got and ("middle", "user", 9) in got
    assert ("do_syscall_64", "kernel", 3) in got and ("py::f:x.py", "jit", 10) in got
    assert all(visible(g) for g in frames(root))
    by_name = {g.get("data-n"): g for g in frames(root)}
    assert width(by_name["all"]) == pytest.approx(1180, abs=0.1)
    assert width(by_name["main"]) == pytest.approx(590, abs=0.1)
    colours = {g.get("data-k"): g.find(f"{SVG}rect").get("fill") for g in frames(root)}  # type: ignore[union-attr]
    assert len({colours["user"], colours["kernel"], colours["jit"]}) == 3
    title = by_name["main"].find(f"{SVG}title")
    assert title is not None and title.text == "main (10 samples, 50.00%)"  # the tooltip


def test_click_to_zoom_through_the_script(chromium: str, tmp_path: Path) -> None:
    path = tmp_path / "zoom.svg"
    _synthetic().flamegraph(path)
    root = dump_dom(chromium, path, "zoom=middle")
    assert root.get("data-zoomed") == "middle"
    by_name = {g.get("data-n"): g for g in frames(root)}
    assert width(by_name["middle"]) == pytest.approx(1180, abs=0.1)  # the zoomed frame fills the width
    assert width(by_name["leaf_a"]) == pytest.approx(1180 * 6 / 9, abs=0.1)
    assert not visible(by_name["other"]) and not visible(by_name["py::f:x.py"])
    assert "parent" in (by_name["main"].get("class") or "")


def test_search_highlights_and_measures(chromium: str, tmp_path: Path) -> None:
    path = tmp_path / "search.svg"
    _synthetic().flamegraph(path)
    root = dump_dom(chromium, path, "search=^leaf_")
    assert root.get("data-matched") == "45.0"  # leaf_a 6 + leaf_b 3 of 20
    hits = {g.get("data-n") for g in frames(root) if "match" in (g.get("class") or "").split()}
    assert hits == {"leaf_a", "leaf_b"}


# Appended to a copy of the SVG by the test: DOM events the browser dispatches to the flame graph's own
# listeners, as a user's clicks, hover and Escape key would (steps from the URL fragment, in order).
DRIVER = """<script><![CDATA[
(function () {
  var byName = {};
  document.querySelectorAll('g.f').forEach(function (g) { byName[g.getAttribute('data-n')] = g; });
  var steps = decodeURIComponent((window.location.hash || '').slice(1)).split(',');
  steps.forEach(function (step) {
    var what = step.split(':')[0], name = step.slice(what.length + 1);
    if (what === 'escape') window.dispatchEvent(new KeyboardEvent('keydown', {key: 'Escape', bubbles: true}));
    else byName[name].querySelector('rect').dispatchEvent(new MouseEvent(what, {bubbles: true}));
  });
  document.documentElement.setAttribute('data-driven', steps.length);
})();
]]></script>
</svg>
"""


def _driven(chromium: str, tmp_path: Path, steps: str) -> ET.Element:
    path = tmp_path / "driven.svg"
    _synthetic().flamegraph(path)
    text = path.read_text()
    assert text.rstrip().endswith("</svg>")
    path.write_text(text.rstrip()[: -len("</svg>")] + DRIVER)
    root = dump_dom(chromium, path, steps)
    assert root.get("data-driven") == str(len(steps.split(",")))
    return root


def test_click_hover_and_escape_through_the_listeners(chromium: str, tmp_path: Path) -> None:
    root = _driven(chromium, tmp_path, "click:middle,mouseover:leaf_b")
    assert root.get("data-zoomed") == "middle"
    by_name = {g.get("data-n"): g for g in frames(root)}
    assert width(by_name["middle"]) == pytest.approx(1180, abs=0.1)
    assert not visible(by_name["other"]) and "parent" in (by_name["main"].get("class") or "")
    details = next(t for t in root.iter(f"{SVG}text") if t.get("id") == "details")
    assert details.text == "Function: leaf_b (3 samples, 15.00%)"  # the hover line
    reset = next(t for t in root.iter(f"{SVG}text") if t.get("id") == "reset")
    assert "hide" not in (reset.get("class") or "").split()  # "Reset Zoom" shows while zoomed

    root = _driven(chromium, tmp_path, "click:middle,escape")
    assert root.get("data-zoomed") is None and all(visible(g) for g in frames(root))
    root = _driven(chromium, tmp_path, "click:leaf_a,click:all")  # clicking the root resets too
    assert root.get("data-zoomed") is None
    assert width({g.get("data-n"): g for g in frames(root)}["main"]) == pytest.approx(590, abs=0.1)


@pytest.mark.privileged
def test_real_profile_svg_in_the_browser(chromium: str, spin_builder, spawn, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    with spawn(spin_builder.plain, "spin") as target:
        profiler = Profiler(pid=target.pid)
        profiler.start()
        time.sleep(1.0)  # sampling span
        profile = profiler.stop().for_pid(target.pid)
    path = tmp_path / "cpu.svg"
    profile.flamegraph(path)
    root = dump_dom(chromium, path, "zoom=hot_spin_loop")
    names = Counter(g.get("data-n") for g in frames(root))
    assert names["hot_spin_loop"] >= 1 and names["main"] >= 1
    folded = parse_folded(profile.folded().splitlines())
    hot_total = sum(v for k, v in folded.items() if "hot_spin_loop" in k)
    hot = [g for g in frames(root) if g.get("data-n") == "hot_spin_loop"]
    assert sum(int(g.get("data-v", "0")) for g in hot) == hot_total
    assert root.get("data-zoomed") == "hot_spin_loop"
    assert re.fullmatch(r"[\d.]+", str(width(hot[0])))
