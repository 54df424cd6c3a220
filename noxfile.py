"""Sessions: each package tested alone in its own venv, integration, lint, typecheck, bench, demo, fixtures.

``nox`` with no arguments runs what CI runs: lint, typecheck, tests (every package) and integration.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import nox

ROOT = Path(__file__).parent
PACKAGES = ["core", "net", "events", "security", "elf", "export", "lang"]
# Extras each package's tests need beyond [test].
TEST_EXTRAS = {"elf": "test,compile"}
# Our own distributions a package depends on besides ebpf-core (installed from this tree, not PyPI).
LOCAL_DEPS = {"export": ["events", "elf"], "lang": ["elf", "net", "events"]}

nox.options.sessions = ["lint", "typecheck", "docs", "tests", "integration"]
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = True


def pkg(name: str, extras: str = "") -> str:
    path = str(ROOT / "packages" / f"ebpf-{name}")
    return f"{path}[{extras}]" if extras else path


def _sources_digest(paths: list[str]) -> str:
    """A digest of what goes into the given packages' builds: pyproject.toml and src/ (names and contents)."""
    digest = hashlib.sha256()
    for root in sorted(paths):
        for path in [Path(root) / "pyproject.toml", *sorted(Path(root, "src").rglob("*"))]:
            if path.is_file() and "__pycache__" not in path.parts:
                digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def install(session: nox.Session, *specs: str) -> None:
    """Install our packages (and their dependencies) into the session's venv.

    A reused venv has them already: pip then keeps the installed build of an unchanged version, so
    they are reinstalled (without their dependencies) only when their sources changed since.
    """
    # One pip call, so the local ebpf-core satisfies the others' dependency on it.
    session.install("hatchling")
    paths = [s.split("[")[0] for s in specs]
    stamp = Path(getattr(session.virtualenv, "location", "") or ".") / ".ebpf-sources"
    digest = _sources_digest(paths)
    if not stamp.is_file() or stamp.read_text() != digest:
        session.install("--no-build-isolation", "--force-reinstall", "--no-deps", *paths)
    session.install("--no-build-isolation", *specs)
    if getattr(session.virtualenv, "location", None):
        stamp.write_text(digest)


@nox.session
@nox.parametrize("package", PACKAGES)
def tests(session: nox.Session, package: str) -> None:
    """One package, installed alone with only its own dependencies (proves it stands alone)."""
    specs = [pkg(package, TEST_EXTRAS.get(package, "test"))]
    if package != "core":
        specs[:0] = [pkg("core"), *[pkg(dep) for dep in LOCAL_DEPS.get(package, [])]]
    install(session, *specs)
    session.run("pytest", str(ROOT / "packages" / f"ebpf-{package}" / "tests"), "-q", "-ra", *session.posargs)


@nox.session
def integration(session: nox.Session) -> None:
    """Cross-package tests with every package installed, including the example third-party plugin."""
    install(session, pkg("core", "test"), pkg("net"), pkg("events"), pkg("security"), pkg("elf", "compile"),
            pkg("export"), pkg("lang"))
    session.run("pytest", str(ROOT / "tests"), "-q", "-ra", *session.posargs)


@nox.session
def docs(session: nox.Session) -> None:
    """The documentation site (mkdocs-material + mkdocstrings), built with --strict; no empty reference page.

    The examples on its pages run in the integration session (tests/test_docs.py).
    """
    session.install("mkdocs-material", "mkdocstrings[python]", "mkdocs-gen-files", "mkdocs-literate-nav", "ruff")
    site = str(ROOT / ".nox" / "site")
    env = {"NO_MKDOCS_2_WARNING": "1", "DISABLE_MKDOCS_2_WARNING": "true"}
    session.run("mkdocs", "build", "--strict", "--config-file", str(ROOT / "mkdocs.yml"), "--site-dir", site, env=env)
    session.run("python", str(ROOT / "tools" / "docs" / "check_site.py"), site)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff over every package, the tests and the examples."""
    session.install("ruff")
    session.run("ruff", "check", str(ROOT))


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict for every package (per pyproject.toml)."""
    session.install("mypy", "pluggy", "pytest", "hypothesis", "prometheus-client", "types-PyYAML",
                    "opentelemetry-sdk", "opentelemetry-exporter-otlp-proto-http")
    session.run("mypy", *[str(ROOT / "packages" / f"ebpf-{p}" / "src" / "ebpf" / p) for p in PACKAGES])


def _bench_python() -> str | None:
    """The distribution's /usr/bin/python3 when it is there and new enough, else nox's own interpreter (None).

    Distribution builds are profile-optimized; pyenv-style builds without PGO run ctypes about 30 %
    slower, which would skew every figure against the C and C-extension references.
    """
    import subprocess

    path = "/usr/bin/python3"
    try:
        out = subprocess.run([path, "-c", "import sys; print(sys.version_info >= (3, 10))"], capture_output=True,
                             text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return path if out.strip() == "True" else None


def _bench_reuse(python: str | None) -> bool | None:
    """False when .nox/bench was made from another interpreter (nox checks that only under NOX_ENABLE_STALENESS_CHECK)."""
    if python is None:
        return None
    try:
        cfg = (ROOT / ".nox" / "bench" / "pyvenv.cfg").read_text()
    except OSError:
        return None
    home = {k.strip(): v.strip() for k, _, v in (line.partition("=") for line in cfg.splitlines())}.get("home")
    return None if home == str(Path(python).parent) else False


BENCH_PYTHON = _bench_python()


@nox.session(python=BENCH_PYTHON, reuse_venv=_bench_reuse(BENCH_PYTHON))
def bench(session: nox.Session) -> None:
    """Benchmarks: one JSON line per figure, with ratios to references measured in the same run.

    Runs on /usr/bin/python3 when present (see ``_bench_python``); pylibbpf (the fastest Python peer,
    a map reference in bench_maps.py) is installed here (and for ebpf-lang's tests, which load its objects with it).
    """
    install(session, pkg("core", "test"), pkg("net"), pkg("events", "numpy"), pkg("security"), pkg("elf", "compile"),
            pkg("export"), pkg("lang"))
    session.install("pylibbpf", "ziglang")
    for script in sorted(ROOT.glob("packages/*/bench/bench_*.py")):
        session.run("python", str(script), *session.posargs)


@nox.session
def demo(session: nox.Session) -> None:
    """The guided tour (`ebpf demo`)."""
    install(session, pkg("core", "demo"), pkg("net"), pkg("events"), pkg("security"), pkg("elf", "compile"))
    session.run("ebpf", "demo", *session.posargs)


@nox.session
def vm(session: nox.Session) -> None:
    """Kernel matrix: the whole suite (every package's tests) on the host and in Debian 6.1 and 6.12 under QEMU.

    Not run by default (about an hour on 2 cores under TCG; ``--vm-set`` runs only what skips on the host).  Installs what is missing (apt tools, virtme-ng, the kernels) on the way; the guests use
    this venv (packages installed editable, so the working tree) read-only.  ``nox -s vm -- --help`` for options
    (``--kernel 6.12`` or ``6.18``, ``--tests PATH...``, ``--sessions events,security``); tools/vm/README.md.
    """
    session.install("hatchling", "editables")  # hatchling's editable wheels of a namespace package need editables
    extras = {"core": "test,demo", "events": "test,numpy", "elf": "test,compile", "export": "test"}
    session.install("--no-build-isolation", *[f"-e{pkg(p, extras.get(p, 'test'))}" for p in PACKAGES])
    session.run("python", str(ROOT / "tools" / "vm" / "matrix.py"), "--python", str(Path(session.bin) / "python"),
                *session.posargs)


@nox.session
def fixtures(session: nox.Session) -> None:
    """Rebuild the committed BPF objects from their C sources (ziglang from PyPI)."""
    session.install("ziglang")
    for script in sorted(ROOT.glob("packages/*/tests/fixtures/build.py")):
        session.run("python", str(script))
