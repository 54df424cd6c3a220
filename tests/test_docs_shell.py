"""The shell and TOML blocks of the documentation site: every ``ebpf ...`` command line parses with the
real command-line parser exactly as printed, and runs (as root, ``sudo`` dropped) with only what a
test must change: a free port for ``--listen``, a live pid for ``-p``, one second for ``--duration``,
a temporary directory for the files it writes.  ``pip install`` names our distributions; the entry
point group of the plugin page is the one the core loads."""

from __future__ import annotations

import os
import re
import shlex
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.privileged
ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PATHS = [str(p) for p in (ROOT / "packages").glob("ebpf-*/src")]
BLOCK = re.compile(r"^```(?P<lang>sh|toml)\n(?P<body>.*?)^```$", re.S | re.M)


def _blocks(lang: str) -> list[tuple[str, str]]:
    return [(str(page.relative_to(DOCS)), m.group("body")) for page in sorted(DOCS.rglob("*.md"))
            for m in BLOCK.finditer(page.read_text()) if m.group("lang") == lang]


def _lines(body: str) -> list[str]:
    """Command lines without comments and blank lines (``#`` starts a comment outside quotes)."""
    out = []
    for line in body.splitlines():
        words = shlex.split(line, comments=True)
        if words:
            out.append(shlex.join(words))
    return out


COMMANDS = [(page, line) for page, body in _blocks("sh") for line in _lines(body)]
EBPF = [(page, line) for page, line in COMMANDS if re.match(r"(sudo )?ebpf ", line)]


def test_the_pages_have_shell_commands() -> None:
    assert len(EBPF) >= 4 and any(line.startswith("pip install") for _, line in COMMANDS)
    unknown = [(p, line) for p, line in COMMANDS if not re.match(r"(sudo )?(ebpf|pip install) ", line)]
    assert not unknown, f"a shell line this test does not know how to check: {unknown}"


def _argv(line: str) -> list[str]:
    words = shlex.split(line)
    words = words[1:] if words[0] == "sudo" else words
    if ">" in words:  # a redirection: the test captures stdout itself
        words = words[: words.index(">")]
    return words[1:]


@pytest.mark.parametrize(("page", "line"), EBPF, ids=[f"{p}:{line[:40]}" for p, line in EBPF])
def test_ebpf_command_parses_as_printed(page: str, line: str) -> None:
    from ebpf.core.cli import build_parser

    try:
        build_parser().parse_args(_argv(line))
    except SystemExit as exc:
        pytest.fail(f"{page}: `{line}` does not parse (exit {exc.code})")


def test_pip_install_names_our_distributions() -> None:
    ours = {p.name for p in (ROOT / "packages").glob("ebpf-*")}
    for page, line in COMMANDS:
        if line.startswith("pip install"):
            names = [w.split("[")[0] for w in shlex.split(line)[2:] if not w.startswith("-")]
            assert names and set(names) <= ours, f"{page}: {line}"


def test_plugin_entry_point_group_is_the_one_loaded() -> None:
    from ebpf.core.plugins import ENTRY_POINT_GROUP

    (body,) = [b for p, b in _blocks("toml") if p == "concepts/plugins.md"]
    assert f"[project.entry-points.{ENTRY_POINT_GROUP}]" in body


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([*PATHS, *[p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]])
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _adjust(argv: list[str], pid: int) -> list[str]:
    """What a test must change: a free port, a live pid, a short duration."""
    out = list(argv)
    for i, word in enumerate(out[:-1]):
        if word == "--listen":
            out[i + 1] = f"127.0.0.1:{_free_port()}"
        elif word in ("-p", "--pid"):
            out[i + 1] = str(pid)
        elif word == "--duration":
            out[i + 1] = "1"
    return out


@pytest.mark.parametrize(("page", "line"), EBPF, ids=[f"{p}:{line[:40]}" for p, line in EBPF])
def test_ebpf_command_runs(page: str, line: str, tmp_path: Path) -> None:
    sleeper = subprocess.Popen([sys.executable, "-c", "import time\nwhile True: time.sleep(0.01)"])
    try:
        argv = [sys.executable, "-m", "ebpf.core.cli", *_adjust(_argv(line), sleeper.pid)]
        if "--listen" in argv:  # a server: runs until SIGTERM
            _serve_once(argv, tmp_path)
            return
        proc = subprocess.run(argv, env=_env(), cwd=tmp_path, capture_output=True, text=True, timeout=180)
        assert proc.returncode == 0, f"{page}: `{line}`:\n{proc.stdout}{proc.stderr}"
        for word in argv:  # the files it was told to write are there
            if re.fullmatch(r"[\w-]+\.(svg|json|folded)", word):
                assert (tmp_path / word).stat().st_size > 0, word
        if ">" in shlex.split(line):
            assert proc.stdout, f"{page}: `{line}` printed nothing to redirect"
    finally:
        sleeper.kill()
        sleeper.wait()


def _serve_once(argv: list[str], cwd: Path) -> None:
    listen = argv[argv.index("--listen") + 1]
    proc = subprocess.Popen(argv, env=_env(), cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert "serving" in line, line + (proc.stderr.read() if proc.stderr else "")
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://{listen}/metrics", timeout=10) as resp:
                    assert resp.status == 200 and b"# TYPE" in resp.read()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        proc.terminate()
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream:
                stream.close()


def test_troubleshooting_names_every_error_class() -> None:
    """Every exception class of every package has its row in the troubleshooting guide."""
    import importlib
    import inspect

    from ebpf.core.errors import EBPFError

    modules = ["ebpf.core.errors", "ebpf.elf.compile", "ebpf.export.config", "ebpf.export.exporter",
               "ebpf.lang.errors", "ebpf.net.packet"]
    classes = {name for mod in modules for name, obj in vars(importlib.import_module(mod)).items()
               if inspect.isclass(obj) and issubclass(obj, EBPFError) and obj.__module__ == mod}
    text = (DOCS / "guides" / "troubleshooting.md").read_text()
    assert len(classes) >= 15
    assert not sorted(c for c in classes if f"`{c}`" not in text)
