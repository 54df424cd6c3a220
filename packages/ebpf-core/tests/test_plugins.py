"""The plugin contract: hookspecs, the plugin manager, broken plugins and dispatch.

Each hook is exercised by an in-test plugin registered programmatically, as a third
party would (tests/test_third_party_plugin.py covers the entry-point route end to end).
"""

from __future__ import annotations

import inspect
import os
import socket
import sys
import types
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pluggy
import pytest
from ebpf.core import hookspecs, plugins
from ebpf.core.errors import AttachError, EBPFError, PluginError, UnsupportedFeatureError
from ebpf.core.plugins import (
    AttachBackend,
    EventReader,
    FeatureProbe,
    ObjectLoader,
    PluginWarning,
    SectionType,
    hookimpl,
)
from ebpf.core.types import AttachType, MapType, ProgType

# BPF_MOV64_IMM(R0, 0); BPF_EXIT: a socket filter that keeps 0 bytes of every packet (drops it).
DROP_ALL = bytes([0xB7, 0, 0, 0, 0, 0, 0, 0, 0x95, 0, 0, 0, 0, 0, 0, 0])
SO_ATTACH_BPF = 50
SO_DETACH_BPF = 27

HOOKS = ("ebpf_attach_backends", "ebpf_event_readers", "ebpf_object_loaders", "ebpf_section_types",
         "ebpf_features", "ebpf_cli_commands", "ebpf_demo_steps")


@pytest.fixture
def pm(monkeypatch: pytest.MonkeyPatch) -> Iterator[pluggy.PluginManager]:
    """A fresh plugin manager without entry-point (or EBPF_PLUGINS) plugins, forgotten after the test."""
    monkeypatch.setenv("EBPF_DISABLE_PLUGIN_AUTOLOAD", "1")
    monkeypatch.delenv("EBPF_PLUGINS", raising=False)
    plugins._reset_for_tests()
    yield plugins.plugin_manager()
    plugins._reset_for_tests()


class Fake:
    """A stand-in for a program of a type this kernel cannot load (dispatch only looks at the types)."""

    def __init__(self, prog_type: ProgType, attach_type: AttachType | None = None) -> None:
        self.prog_type = prog_type
        self.expected_attach_type = attach_type


def _plugin(**hooks: Any) -> types.SimpleNamespace:
    """A plugin object whose hooks return the given values."""
    ns = types.SimpleNamespace()
    for name, value in hooks.items():
        def impl(value: Any = value) -> Any:  # a defaulted parameter is no hook argument for pluggy
            return value
        setattr(ns, name, hookimpl(impl))
    return ns


# -- the specification ---------------------------------------------------------------


def test_every_hook_of_the_design_is_specified(pm: pluggy.PluginManager) -> None:
    for name in HOOKS:
        assert hasattr(pm.hook, name), f"hookspec {name} missing"
    assert pm.project_name == "ebpf"


@pytest.mark.parametrize("name", HOOKS)
def test_every_hook_is_documented(name: str) -> None:
    """A hook without a docstring that says what it returns fails here."""
    spec = getattr(hookspecs, name)
    doc = inspect.getdoc(spec) or ""
    assert doc, f"{name} has no docstring"
    assert ":returns:" in doc, f"{name}'s docstring does not say what it returns"
    assert len(doc.splitlines()[0]) > 10


def test_no_undocumented_hookspec_hides_in_the_module(pm: pluggy.PluginManager) -> None:
    specified = {n for n in dir(pm.hook) if n.startswith("ebpf_")}
    assert specified == set(HOOKS)
    for n in specified:
        assert ":returns:" in (inspect.getdoc(getattr(hookspecs, n)) or "")


def test_cli_hook_is_called_directly_for_each_plugin(pm: pluggy.PluginManager) -> None:
    # add_cli_commands calls every implementation itself (a broken one is skipped): no historic replay
    assert pm.hook.ebpf_cli_commands.spec is not None and not pm.hook.ebpf_cli_commands.spec.opts["historic"]
    seen: list[object] = []

    class CliPlugin:
        @hookimpl
        def ebpf_cli_commands(self, subparsers: object) -> None:
            seen.append(subparsers)

    plugins.register(CliPlugin(), name="cli-test-plugin")
    try:
        marker = object()
        plugins.add_cli_commands(marker)
        assert seen == [marker]
    finally:
        plugins.unregister("cli-test-plugin")


def test_plugin_manager_is_cached(pm: pluggy.PluginManager) -> None:
    assert plugins.plugin_manager() is pm


# -- ebpf_attach_backends ---------------------------------------------------------------


def _load_socket_filter() -> Any:
    from ebpf.core.programs import load_program

    return load_program(prog_type="socket_filter", insns=DROP_ALL, name="drop_all")


def test_attach_dispatches_to_the_registered_backend_and_drops_packets(pm: pluggy.PluginManager) -> None:
    from ebpf.core.links import CallbackLink

    calls: list[tuple[Any, Any, dict[str, Any]]] = []

    def attach_socket(program: Any, target: socket.socket, **options: Any) -> CallbackLink:
        calls.append((program, target, options))
        target.setsockopt(socket.SOL_SOCKET, SO_ATTACH_BPF, program.fd)
        return CallbackLink(lambda: target.setsockopt(socket.SOL_SOCKET, SO_DETACH_BPF, 0), program, "socket")

    class SocketPlugin:
        @hookimpl
        def ebpf_attach_backends(self) -> list[AttachBackend]:
            return [AttachBackend("test-socket", ((ProgType.SOCKET_FILTER, None),), attach_socket, "tests")]

    plugins.register(SocketPlugin(), name="socket-test")
    assert [b.name for b in plugins.attach_backends()] == ["test-socket"]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rx, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx, _load_socket_filter() as prog:
        rx.bind(("127.0.0.1", 0))
        rx.settimeout(0.2)
        link = prog.attach(rx, note="hi")
        assert calls == [(prog, rx, {"note": "hi"})]
        tx.sendto(b"dropped", rx.getsockname())
        with pytest.raises(socket.timeout):
            rx.recv(100)
        link.detach()
        tx.sendto(b"arrives", rx.getsockname())
        assert rx.recv(100) == b"arrives"


@pytest.mark.parametrize(("prog_type", "dist"), [
    (ProgType.XDP, "ebpf-net"), (ProgType.SCHED_CLS, "ebpf-net"), (ProgType.CGROUP_SKB, "ebpf-net"),
    (ProgType.SK_LOOKUP, "ebpf-net"), (ProgType.SOCKET_FILTER, "ebpf-net"), (ProgType.NETFILTER, "ebpf-net"),
    (ProgType.TRACEPOINT, "ebpf-events"), (ProgType.KPROBE, "ebpf-events"), (ProgType.TRACING, "ebpf-events"),
    (ProgType.RAW_TRACEPOINT_WRITABLE, "ebpf-events"), (ProgType.PERF_EVENT, "ebpf-events"),
    (ProgType.LSM, "ebpf-security"),
])
def test_no_backend_error_names_the_distribution(pm: pluggy.PluginManager, prog_type: ProgType, dist: str) -> None:
    with pytest.raises(AttachError, match=f"no attach backend for {prog_type.name} programs: pip install {dist}"):
        plugins.attach(Fake(prog_type), "eth0")


def test_no_backend_for_xdp_exact_message(pm: pluggy.PluginManager) -> None:
    with pytest.raises(AttachError) as info:
        plugins.attach(Fake(ProgType.XDP), "lo")
    assert str(info.value) == "no attach backend for XDP programs: pip install ebpf-net"


def test_attach_prefers_exact_attach_type_then_generic_then_accepts(pm: pluggy.PluginManager) -> None:
    def backend(name: str, serves: Any, accepts: Any = None) -> AttachBackend:
        def attach(program: Any, target: Any, **options: Any) -> Any:
            return (name, target)  # what was chosen, instead of a real link
        return AttachBackend(name, serves, attach, accepts=accepts)

    plugins.register(_plugin(ebpf_attach_backends=[
        backend("generic", [("cgroup_skb", None)]),
        backend("egress", [("cgroup_skb", "cgroup_inet_egress")]),
        backend("paths-only", [("xdp", None)], accepts=lambda t: isinstance(t, str)),
        backend("ints", [("xdp", None)], accepts=lambda t: isinstance(t, int)),
    ]))
    chosen: Any = plugins.attach(Fake(ProgType.CGROUP_SKB, AttachType.CGROUP_INET_EGRESS), "/cg")
    assert chosen == ("egress", "/cg")
    chosen = plugins.attach(Fake(ProgType.CGROUP_SKB, AttachType.CGROUP_INET_INGRESS), "/cg")
    assert chosen == ("generic", "/cg")
    chosen = plugins.attach(Fake(ProgType.XDP), 3)
    assert chosen == ("ints", 3)
    chosen = plugins.attach(Fake(ProgType.XDP), "lo")
    assert chosen == ("paths-only", "lo")
    with pytest.raises(AttachError, match=r"accepts target 3\.5"):
        plugins.attach(Fake(ProgType.XDP), 3.5)


def test_backend_serves_are_parsed_and_bad_names_refused() -> None:
    b = AttachBackend("x", [("xdp", None), "sched_cls", ("cgroup_skb", 1)], lambda *a, **k: None)
    assert b.serves == ((ProgType.XDP, None), (ProgType.SCHED_CLS, None),
                        (ProgType.CGROUP_SKB, AttachType.CGROUP_INET_EGRESS))
    with pytest.raises(EBPFError, match="unknown ProgType"):
        AttachBackend("x", [("not_a_type", None)], lambda *a, **k: None)


def test_foreign_exception_from_backend_becomes_attach_error(pm: pluggy.PluginManager) -> None:
    def boom(program: Any, target: Any) -> Any:
        raise OSError(19, "No such device")

    plugins.register(_plugin(ebpf_attach_backends=AttachBackend("boom", [("xdp", None)], boom)))
    with pytest.raises(AttachError, match="attach backend 'boom' failed: OSError") as info:
        plugins.attach(Fake(ProgType.XDP), "nope0")
    assert isinstance(info.value.__cause__, OSError)


def test_attach_refuses_what_is_not_a_program(pm: pluggy.PluginManager) -> None:
    with pytest.raises(AttachError, match="not a loaded program"):
        plugins.attach(object(), "lo")


# -- ebpf_event_readers ----------------------------------------------------------------


def test_open_events_uses_the_reader_for_the_map_type(pm: pluggy.PluginManager) -> None:
    from ebpf.core.maps import create_ringbuf_map

    made: list[tuple[Any, dict[str, Any]]] = []

    def factory(m: Any, **options: Any) -> str:
        made.append((m, options))
        return "reader"

    plugins.register(_plugin(ebpf_event_readers=[EventReader("ringbuf", factory, "test")]))
    assert plugins.event_readers()[0].map_type is MapType.RINGBUF
    with create_ringbuf_map(4096) as rb:
        assert plugins.open_events(rb, parser="u32") == "reader"
        assert made == [(rb, {"parser": "u32"})]


def test_open_events_without_reader_names_the_distribution(pm: pluggy.PluginManager) -> None:
    from ebpf.core.maps import create_ringbuf_map

    with create_ringbuf_map(4096) as rb, pytest.raises(EBPFError, match="no event reader for RINGBUF maps: pip install ebpf-events"):
        plugins.open_events(rb)


# -- ebpf_object_loaders ----------------------------------------------------------------


class _ToySpec:
    def __init__(self, path: str) -> None:
        self.path = path

    def load(self, **options: Any) -> tuple[str, dict[str, Any]]:
        return (self.path, options)


def test_load_asks_each_loader_with_the_file_head(pm: pluggy.PluginManager, tmp_path: Path) -> None:
    seen: list[tuple[str, bytes]] = []

    def recognizes(path: str, head: bytes) -> bool:
        seen.append((path, head))
        return head.startswith(b"TOYO")

    def load_spec(path: str) -> Any:
        return _ToySpec(path)

    plugins.register(_plugin(ebpf_object_loaders=[ObjectLoader("toy", recognizes, load_spec)]))
    toy = tmp_path / "x.toy"
    toy.write_bytes(b"TOYO" + bytes(100))
    loaded: Any = plugins.load(toy, pin="/sys/fs/bpf/x")
    assert loaded == (str(toy), {"pin": "/sys/fs/bpf/x"})
    assert seen == [(str(toy), b"TOYO" + bytes(plugins.HEAD_SIZE - 4))]
    other = tmp_path / "x.o"
    other.write_bytes(b"\x7fELF")
    with pytest.raises(EBPFError, match=r"no object loader for .*x\.o'?: pip install ebpf-elf"):
        plugins.load(other)


def test_load_of_missing_file_is_our_error(pm: pluggy.PluginManager, tmp_path: Path) -> None:
    with pytest.raises(EBPFError, match="cannot read"):
        plugins.load(tmp_path / "missing.o")


# -- ebpf_section_types -----------------------------------------------------------------


def test_section_types_longest_prefix_wins(pm: pluggy.PluginManager) -> None:
    plugins.register(_plugin(ebpf_section_types=[
        SectionType("tp/", "tracepoint"),
        SectionType("tp_btf/", "tracing", "trace_raw_tp", {"attach_to_from_name": True}),
    ]))
    found = plugins.find_section_type("tp_btf/sched_switch")
    assert found is not None and found.prog_type is ProgType.TRACING
    assert found.attach_type is AttachType.TRACE_RAW_TP and found.extra == {"attach_to_from_name": True}
    tp = plugins.find_section_type("tp/syscalls/sys_enter_openat")
    assert tp is not None and tp.prog_type is ProgType.TRACEPOINT
    assert plugins.find_section_type("unknown/x") is None
    assert len(plugins.section_types()) == 2


# -- ebpf_features ----------------------------------------------------------------------


def test_feature_probes_report_three_outcomes_and_reach_init(pm: pluggy.PluginManager) -> None:
    from ebpf.core.system import init

    def missing() -> None:
        raise UnsupportedFeatureError("toy feature", "9.9")

    def cannot_tell() -> None:
        raise RuntimeError("probe crashed")

    plugins.register(_plugin(ebpf_features=[
        FeatureProbe("toy.ok", lambda: None, "works"),
        FeatureProbe("toy.missing", missing),
        FeatureProbe("toy.unknown", cannot_tell),
    ]))
    results = plugins.run_feature_probes()
    assert results["toy.ok"] is None
    assert "requires Linux >= 9.9" in (results["toy.missing"] or "")
    assert results["toy.unknown"] == "could not tell: RuntimeError: probe crashed"  # never "supported"
    assert init(mount=False).features == results


def test_feature_probe_without_privileges_says_could_not_tell(pm: pluggy.PluginManager,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from ebpf.core import _probing
    from ebpf.core.errors import ProbeInconclusiveError

    def refused() -> None:
        raise ProbeInconclusiveError("toy feature", "EPERM without full privileges")

    monkeypatch.setattr(_probing, "fully_privileged", lambda: False)
    plugins.register(_plugin(ebpf_features=[FeatureProbe("toy.refused", refused)]))
    assert plugins.run_feature_probes()["toy.refused"] == "could not tell (not root): EPERM without full privileges"


# -- ebpf_cli_commands ------------------------------------------------------------------


def test_cli_commands_hook_adds_a_subcommand(pm: pluggy.PluginManager, capsys: pytest.CaptureFixture[str]) -> None:
    from ebpf.core.cli import main

    class HelloPlugin:
        @hookimpl
        def ebpf_cli_commands(self, subparsers: Any) -> None:
            p = subparsers.add_parser("hello", help="say hello")
            p.add_argument("who")
            p.set_defaults(func=lambda args: print(f"hello {args.who}") or 7)

    plugins.register(HelloPlugin())
    assert main(["hello", "world"]) == 7
    assert capsys.readouterr().out == "hello world\n"


# -- broken plugins ---------------------------------------------------------------------


def test_hook_that_raises_is_reported_and_skipped(pm: pluggy.PluginManager) -> None:
    def boom() -> list[FeatureProbe]:
        raise ValueError("kaput")

    class Broken:
        @hookimpl
        def ebpf_features(self) -> list[FeatureProbe]:
            return boom()

    plugins.register(Broken(), name="broken-one")
    plugins.register(_plugin(ebpf_features=[FeatureProbe("good", lambda: None)]), name="good-one")
    with pytest.warns(PluginWarning, match="'broken-one'.*ebpf_features\\(\\) raised ValueError: kaput"):
        assert plugins.run_feature_probes() == {"good": None}
    assert [(b.name, "kaput" in b.reason) for b in plugins.broken_plugins()] == [("broken-one", True)]


def test_wrong_return_type_is_reported_and_skipped(pm: pluggy.PluginManager) -> None:
    plugins.register(_plugin(ebpf_attach_backends=["not a backend"]), name="wrong-type")
    with pytest.warns(PluginWarning, match="'wrong-type'.*returned str, expected AttachBackend"):
        assert plugins.attach_backends() == []
    with pytest.raises(AttachError, match="skipped broken plugins: wrong-type"):
        plugins.attach(Fake(ProgType.XDP), "lo")


def test_broken_cli_plugin_does_not_break_the_command(pm: pluggy.PluginManager,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    from ebpf.core.cli import main

    class BadCli:
        @hookimpl
        def ebpf_cli_commands(self, subparsers: Any) -> None:
            raise RuntimeError("no commands today")

    plugins.register(BadCli(), name="bad-cli")
    with pytest.warns(PluginWarning, match="bad-cli"):
        assert main(["--help"]) == 0
    assert "check" in capsys.readouterr().out


def test_register_refuses_unknown_hooks_and_bad_signatures(pm: pluggy.PluginManager) -> None:
    class Typo:
        @hookimpl
        def ebpf_attach_backend(self) -> list[AttachBackend]:  # missing "s"
            return []

    class BadArgs:
        @hookimpl
        def ebpf_features(self, nonsense: int) -> list[FeatureProbe]:
            return []

    with pytest.raises(PluginError, match="ebpf_attach_backend"):
        plugins.register(Typo())
    with pytest.raises(PluginError, match="nonsense"):
        plugins.register(BadArgs())
    assert plugins.registered_plugins() == []


def test_unregister_removes_the_plugin(pm: pluggy.PluginManager) -> None:
    name = plugins.register(_plugin(ebpf_section_types=[SectionType("toy", "xdp")]), name="toy")
    assert name == "toy" and len(plugins.section_types()) == 1
    plugins.unregister("toy")
    assert plugins.section_types() == []
    with pytest.raises(PluginError):
        plugins.unregister("toy")


def _write_distribution(root: Path, name: str, entry_points: str, modules: dict[str, str]) -> None:
    """A minimal installed distribution (dist-info with entry points) on ``root``."""
    info = root / f"{name.replace('-', '_')}-1.0.dist-info"  # as installers name it (the stem is parsed)
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[ebpf]\n{entry_points}\n")
    for mod, src in modules.items():
        (root / f"{mod}.py").write_text(src)


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A directory on sys.path holding fake installed distributions."""
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for mod in ("toy_good_plugin", "toy_typo_plugin"):
        sys.modules.pop(mod, None)
    plugins._reset_for_tests()


GOOD_PLUGIN = """
from ebpf.core.plugins import FeatureProbe, hookimpl

@hookimpl
def ebpf_features():
    return [FeatureProbe("toy.from_entry_point", lambda: None)]
"""


def test_entry_points_load_and_broken_ones_are_skipped(site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write_distribution(site, "toy-good", "good = toy_good_plugin", {"toy_good_plugin": GOOD_PLUGIN})
    _write_distribution(site, "toy-missing", "missing = toy_no_such_module", {})
    _write_distribution(site, "toy-typo", "typo = toy_typo_plugin", {
        "toy_typo_plugin": "from ebpf.core.plugins import hookimpl\n@hookimpl\ndef ebpf_featurez():\n    return []\n"})
    monkeypatch.delenv("EBPF_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    plugins._reset_for_tests()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        plugins.plugin_manager()
    messages = [str(w.message) for w in caught if issubclass(w.category, PluginWarning)]
    assert any("'missing' (distribution toy-missing)" in m and "cannot import toy_no_such_module" in m
               for m in messages), messages
    assert any("'typo' (distribution toy-typo)" in m and "ebpf_featurez" in m for m in messages), messages
    assert ("good", "toy-good") in plugins.registered_plugins()
    assert plugins.run_feature_probes()["toy.from_entry_point"] is None
    broken = {b.name: b.distribution for b in plugins.broken_plugins()}
    assert broken["missing"] == "toy-missing" and broken["typo"] == "toy-typo"


def test_autoload_can_be_disabled(site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write_distribution(site, "toy-good", "good = toy_good_plugin", {"toy_good_plugin": GOOD_PLUGIN})
    monkeypatch.setenv("EBPF_DISABLE_PLUGIN_AUTOLOAD", "1")
    monkeypatch.delenv("EBPF_PLUGINS", raising=False)
    plugins._reset_for_tests()
    assert plugins.registered_plugins() == []
    assert "toy.from_entry_point" not in plugins.run_feature_probes()
    assert os.environ["EBPF_DISABLE_PLUGIN_AUTOLOAD"] == "1"


def test_plugins_named_in_the_environment_load_without_metadata(site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A source tree on PYTHONPATH has no entry points: EBPF_PLUGINS names plugin modules to load."""
    (site / "toy_env_plugin.py").write_text(GOOD_PLUGIN)
    monkeypatch.setenv("EBPF_PLUGINS", "toy_env_plugin, toy_absent_plugin")
    monkeypatch.setenv("EBPF_DISABLE_PLUGIN_AUTOLOAD", "1")  # entry points off; the variable still counts
    plugins._reset_for_tests()
    try:
        with pytest.warns(PluginWarning, match="toy_absent_plugin"):
            assert "toy_env_plugin" in dict(plugins.registered_plugins())
        assert plugins.run_feature_probes()["toy.from_entry_point"] is None
        assert [b.name for b in plugins.broken_plugins()] == ["toy_absent_plugin"]
    finally:
        sys.modules.pop("toy_env_plugin", None)
        plugins._reset_for_tests()


def test_ebpf_check_reports_broken_plugins(site: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from ebpf.core.cli import main

    _write_distribution(site, "toy-missing", "missing = toy_no_such_module", {})
    monkeypatch.delenv("EBPF_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    plugins._reset_for_tests()
    with pytest.warns(PluginWarning, match="missing"):
        assert main(["check", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    broken = [b for b in report["broken_plugins"] if b["name"] == "missing"]
    assert broken and broken[0]["distribution"] == "toy-missing"
    assert "toy_no_such_module" in broken[0]["reason"]
    assert main(["check"]) == 0
    assert "missing (toy-missing): cannot import toy_no_such_module" in capsys.readouterr().out


def test_entry_points_are_read_as_importlib_metadata_reads_them(site: Path) -> None:
    import importlib.metadata

    from ebpf.core._entrypoints import entry_points

    _write_distribution(site, "toy-good", "good = toy_good_plugin\n# a comment\nother = toy_good_plugin:x.y [extra]",
                        {"toy_good_plugin": GOOD_PLUGIN})
    for group in ("ebpf", "console_scripts", "pytest11"):
        assert [(e.name, e.value, e.dist_name) for e in entry_points(group)] == [
            (e.name, e.value, e.dist.name if e.dist is not None else "")
            for e in importlib.metadata.entry_points(group=group)]
    good = next(e for e in entry_points("ebpf") if e.name == "good")
    assert good.dist_name == "toy-good" and hasattr(good.load(), "ebpf_features")
