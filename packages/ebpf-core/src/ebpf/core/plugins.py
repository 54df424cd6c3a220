"""The plugin manager: entry-point loading, programmatic registration and dispatch.

Core defines the hooks (:mod:`ebpf.core.hookspecs`); every other package registers through
them exactly as a third party would.  This module collects what plugins return and
dispatches to it: :func:`attach` (``Program.attach``), :func:`load` (object files),
:func:`open_events` (ring buffer / perf readers), :func:`run_feature_probes` (``ebpf check``,
``ebpf.core.init()``).

A broken plugin (cannot be imported, a hook raises, a hook returns the wrong type) is
reported with a :class:`PluginWarning` naming it and skipped; it is never fatal.
:func:`broken_plugins` lists what was skipped.  ``EBPF_DISABLE_PLUGIN_AUTOLOAD=1`` turns
entry-point loading off.
"""

from __future__ import annotations

import importlib
import os
import threading
import warnings
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import pluggy
from ebpf.core import hookspecs
from ebpf.core._probing import outcome
from ebpf.core.errors import AttachError, EBPFError, PluginError
from ebpf.core.extension import (
    AttachBackend,
    BrokenPlugin,
    EventReader,
    FeatureProbe,
    ObjectLoader,
    SectionType,
)
from ebpf.core.types import AttachType, MapType, ProgType

if TYPE_CHECKING:  # pragma: no cover - only for annotations
    from ebpf.core.collection import Collection
    from ebpf.core.demo import DemoStep
    from ebpf.core.links import Link

__all__ = [
    "ENTRY_POINT_GROUP",
    "PLUGINS_ENV",
    "hookimpl",
    "PluginWarning",
    "AttachBackend",
    "EventReader",
    "ObjectLoader",
    "SectionType",
    "FeatureProbe",
    "BrokenPlugin",
    "plugin_manager",
    "register",
    "unregister",
    "broken_plugins",
    "registered_plugins",
    "attach_backends",
    "event_readers",
    "object_loaders",
    "section_types",
    "feature_probes",
    "demo_steps",
    "find_section_type",
    "attach",
    "load",
    "open_events",
    "run_feature_probes",
    "add_cli_commands",
    "distribution_for",
]

#: The entry-point group plugins register under.
ENTRY_POINT_GROUP = "ebpf"
#: Set to ``1`` to skip loading plugins from entry points.
DISABLE_AUTOLOAD_ENV = "EBPF_DISABLE_PLUGIN_AUTOLOAD"
#: How many leading bytes of a file :func:`load` hands to ``ObjectLoader.recognizes``.
HEAD_SIZE = 64

#: Marker for hook implementations: ``@hookimpl def ebpf_attach_backends(): ...``.
hookimpl = pluggy.HookimplMarker("ebpf")


class PluginWarning(UserWarning):
    """A plugin is broken and was skipped (it could not be imported or a hook misbehaved)."""


# -- the manager ---------------------------------------------------------------------

_lock = threading.RLock()
_manager: pluggy.PluginManager | None = None
_broken: list[BrokenPlugin] = []
_distributions: dict[str, str] = {}  # plugin name -> distribution
_cache: dict[str, list[Any]] = {}

_COLLECT_TYPES: dict[str, type] = {
    "ebpf_attach_backends": AttachBackend,
    "ebpf_event_readers": EventReader,
    "ebpf_object_loaders": ObjectLoader,
    "ebpf_section_types": SectionType,
    "ebpf_features": FeatureProbe,
    "ebpf_demo_steps": object,  # DemoStep: ebpf.core.demo is imported when demo steps are collected
}


def _report(name: str, reason: str) -> None:
    dist = _distributions.get(name, "")
    record = BrokenPlugin(name, dist, reason)
    if record in _broken:  # hooks run again after register() cleared the cache: report once
        return
    _broken.append(record)
    where = f" (distribution {dist})" if dist else ""
    warnings.warn(f"ebpf plugin {name!r}{where} is broken and was skipped: {reason}", PluginWarning, stacklevel=3)


def _load_entry_points(pm: pluggy.PluginManager) -> None:
    from ebpf.core._entrypoints import entry_points  # not importlib.metadata: a cold start cannot afford it

    seen: set[tuple[str, str]] = set()
    for ep in entry_points(ENTRY_POINT_GROUP):
        dist = ep.dist_name
        if (ep.name, ep.value) in seen or pm.has_plugin(ep.name):
            continue  # the same distribution found twice on sys.path
        seen.add((ep.name, ep.value))
        _distributions[ep.name] = dist
        try:
            plugin = ep.load()
        except Exception as exc:
            _report(ep.name, f"cannot import {ep.value}: {type(exc).__name__}: {exc}")
            continue
        try:
            _register_checked(pm, plugin, ep.name)
        except Exception as exc:  # pluggy.PluginValidationError, ValueError (registered twice)
            _report(ep.name, f"invalid hooks: {exc}")


#: Comma-separated plugin modules to register besides the entry points, as pytest's PYTEST_PLUGINS:
#: for plugins run from a source tree (no installed metadata, so no entry points).  Any plugin,
#: first party or not, can be named here; EBPF_DISABLE_PLUGIN_AUTOLOAD does not turn it off.
PLUGINS_ENV = "EBPF_PLUGINS"


def _load_env_plugins(pm: pluggy.PluginManager) -> None:
    for module in filter(None, (m.strip() for m in os.environ.get(PLUGINS_ENV, "").split(","))):
        try:
            plugin = importlib.import_module(module)
        except Exception as exc:
            _report(module, f"cannot import {module} (named in {PLUGINS_ENV}): {type(exc).__name__}: {exc}")
            continue
        if pm.is_registered(plugin):
            continue  # its entry point registered it already
        try:
            _register_checked(pm, plugin, module)
        except Exception as exc:
            _report(module, f"invalid hooks: {exc}")


def _register_checked(pm: pluggy.PluginManager, plugin: object, name: str | None) -> str | None:
    already = pm.is_registered(plugin)
    try:
        registered = pm.register(plugin, name=name)
        # An ebpf_* function no spec knows (a typo such as ebpf_attach_backend) is an error, not a silent no-op.
        pm.check_pending()
    except Exception:
        if not already and pm.is_registered(plugin):  # pluggy keeps a half-registered plugin on failure
            pm.unregister(plugin)
        raise
    return registered


def plugin_manager() -> pluggy.PluginManager:
    """The process-wide plugin manager (created on first use).

    It knows the hook specifications of :mod:`ebpf.core.hookspecs`, every plugin of the
    entry-point group ``"ebpf"`` unless ``EBPF_DISABLE_PLUGIN_AUTOLOAD=1``, and the plugin
    modules named in ``EBPF_PLUGINS`` (comma-separated).
    Broken plugins are skipped with a :class:`PluginWarning`.

    :returns: the :class:`pluggy.PluginManager`.
    """
    global _manager
    with _lock:
        if _manager is None:
            pm = pluggy.PluginManager("ebpf")
            pm.add_hookspecs(hookspecs)
            _manager = pm
            if os.environ.get(DISABLE_AUTOLOAD_ENV, "") not in ("1", "true", "yes"):
                _load_entry_points(pm)
            _load_env_plugins(pm)
        return _manager


def register(plugin: object, name: str | None = None) -> str:
    """Register a plugin (a module or object with ``@hookimpl`` functions) at run time.

    :param plugin: the plugin.
    :param name: its name (default: pluggy's, the module name or the object's id).
    :returns: the name it was registered under.
    :raises PluginError: when its hooks do not match the specifications, or it is registered already.
    """
    pm = plugin_manager()
    with _lock:
        try:
            registered = _register_checked(pm, plugin, name)
        except Exception as exc:  # pluggy.PluginValidationError or ValueError
            raise PluginError(f"cannot register plugin {name or plugin!r}: {exc}") from exc
        _cache.clear()
    if registered is None:  # pluggy returns None for a blocked name
        raise PluginError(f"plugin name {name!r} is blocked")
    return registered


def unregister(plugin: object) -> None:
    """Remove a plugin registered with :func:`register` (by the object or by its name).

    :raises PluginError: when no such plugin is registered.
    """
    pm = plugin_manager()
    with _lock:
        found = pm.get_plugin(plugin) if isinstance(plugin, str) else plugin
        if found is None or not pm.is_registered(found):
            raise PluginError(f"cannot unregister plugin {plugin!r}: it is not registered")
        pm.unregister(found)
        _cache.clear()


def registered_plugins() -> list[tuple[str, str]]:
    """``(name, distribution)`` of every registered plugin (distribution ``""`` when registered in code)."""
    pm = plugin_manager()
    return [(name, _distributions.get(name, "")) for name, _ in pm.list_name_plugin()]


def broken_plugins() -> list[BrokenPlugin]:
    """The plugins skipped so far: import errors, hooks that raised or returned the wrong type."""
    plugin_manager()
    for hook in _COLLECT_TYPES:
        _collect(hook)  # a hook's failure shows up only once it has been called
    return list(_broken)


def _impls(hook_name: str) -> list[pluggy.HookImpl]:
    hook = getattr(plugin_manager().hook, hook_name)
    # pluggy calls the last registered (and tryfirst) implementations first.
    return [i for i in reversed(hook.get_hookimpls()) if not (i.hookwrapper or i.wrapper)]


def _call(impl: pluggy.HookImpl, hook_name: str, kwargs: dict[str, Any]) -> tuple[bool, Any]:
    try:
        return True, impl.function(*(kwargs[a] for a in impl.argnames))
    except Exception as exc:
        _report(impl.plugin_name, f"{hook_name}() raised {type(exc).__name__}: {exc}")
        return False, None


def _collect(hook_name: str) -> list[Any]:
    with _lock:
        cached = _cache.get(hook_name)
        if cached is not None:
            return cached
        want = _COLLECT_TYPES[hook_name]
        if hook_name == "ebpf_demo_steps":
            from ebpf.core.demo import DemoStep  # deferred: start-up time (only `ebpf demo` needs it)

            want = DemoStep
        items: list[Any] = []
        for impl in _impls(hook_name):
            ok, result = _call(impl, hook_name, {})
            if not ok or result is None:
                continue
            values = list(result) if isinstance(result, Iterable) and not isinstance(result, (str, bytes)) else [result]
            bad = [v for v in values if not isinstance(v, want)]
            if bad:
                _report(impl.plugin_name, f"{hook_name}() returned {type(bad[0]).__name__}, expected {want.__name__}")
            items.extend(v for v in values if isinstance(v, want))
        _cache[hook_name] = items
        return items


def attach_backends() -> list[AttachBackend]:
    """Every registered :class:`AttachBackend`, in dispatch order."""
    return list(_collect("ebpf_attach_backends"))


def event_readers() -> list[EventReader]:
    """Every registered :class:`EventReader`, in dispatch order."""
    return list(_collect("ebpf_event_readers"))


def object_loaders() -> list[ObjectLoader]:
    """Every registered :class:`ObjectLoader`, in the order :func:`load` asks them."""
    return list(_collect("ebpf_object_loaders"))


def section_types() -> list[SectionType]:
    """Every registered :class:`SectionType` (use :func:`find_section_type` to match a name)."""
    return list(_collect("ebpf_section_types"))


def feature_probes() -> list[FeatureProbe]:
    """Every registered :class:`FeatureProbe`."""
    return list(_collect("ebpf_features"))


def demo_steps() -> list[DemoStep]:
    """Every registered :class:`~ebpf.core.demo.DemoStep`, sorted by ``order`` (``ebpf demo`` runs them)."""
    return sorted(_collect("ebpf_demo_steps"), key=lambda s: s.order)


def find_section_type(section: str) -> SectionType | None:
    """The registered :class:`SectionType` with the longest prefix of ``section``, or None."""
    best: SectionType | None = None
    for st in section_types():
        if section.startswith(st.prefix) and (best is None or len(st.prefix) > len(best.prefix)):
            best = st
    return best


# -- dispatch ------------------------------------------------------------------------

_EVENTS = "ebpf-events"
_DISTRIBUTIONS: dict[ProgType, str] = {
    ProgType.parse(name): dist
    for dist, names in {
        "ebpf-net": "xdp sched_cls sched_act cgroup_skb cgroup_sock cgroup_device cgroup_sock_addr cgroup_sysctl "
        "cgroup_sockopt sock_ops sk_skb sk_msg sk_reuseport socket_filter sk_lookup netfilter flow_dissector",
        _EVENTS: "tracepoint kprobe raw_tracepoint raw_tracepoint_writable perf_event tracing",
        "ebpf-security": "lsm",
    }.items()
    for name in names.split()
}
_READER_DISTRIBUTIONS = {MapType.RINGBUF: _EVENTS, MapType.PERF_EVENT_ARRAY: _EVENTS}


def distribution_for(prog_type: ProgType | str | int) -> str | None:
    """The distribution whose plugin attaches programs of ``prog_type`` (``"ebpf-net"`` for XDP), or None."""
    return _DISTRIBUTIONS.get(ProgType.parse(prog_type))


def _install_hint(dist: str | None) -> str:
    if dist:
        return f"pip install {dist}"
    return "no known distribution provides one; register an AttachBackend through the ebpf_attach_backends hook"


def _broken_note() -> str:
    if not _broken:
        return ""
    return f" (skipped broken plugins: {', '.join(sorted({b.name for b in _broken}))}; see `ebpf check`)"


def _candidates(prog_type: ProgType, attach_type: AttachType | None) -> list[AttachBackend]:
    backends = attach_backends()
    exact = [b for b in backends if (prog_type, attach_type) in b.serves] if attach_type is not None else []
    generic = [b for b in backends if (prog_type, None) in b.serves and b not in exact]
    found = exact + generic
    if attach_type is None:  # a program loaded without an expected attach type: any backend of its type
        found += [b for b in backends if b not in found and any(p == prog_type for p, _ in b.serves)]
    return found


def _accepts(backend: AttachBackend, target: object) -> bool:
    if backend.accepts is None:
        return True
    try:
        return bool(backend.accepts(target))
    except Exception as exc:
        warnings.warn(f"attach backend {backend.name!r}: accepts() raised {type(exc).__name__}: {exc}",
                      PluginWarning, stacklevel=4)
        return False


def attach(program: Any, target: object = None, **options: Any) -> Link:
    """Attach ``program`` to ``target`` through the plugin that serves its type.

    Picks the backend for ``(program.prog_type, program.expected_attach_type)``, falling back
    to backends serving the program type with attach type None; among several, the first
    whose ``accepts(target)`` is True.  ``Program.attach`` calls this.

    :param program: a loaded program (``ebpf.core.programs.Program``).
    :param target: what to attach to (an interface, a cgroup path, a socket, ...).
    :param options: passed on to the backend.
    :returns: the :class:`~ebpf.core.links.Link`.
    :raises AttachError: when no backend serves the program type (the message names the
        distribution to install) or none accepts the target; errors of the backend propagate
        (non-``EBPFError`` exceptions are wrapped in AttachError).
    """
    try:
        prog_type = ProgType.parse(program.prog_type)
        raw_attach = getattr(program, "expected_attach_type", None)
        attach_type = None if raw_attach is None else AttachType.parse(raw_attach)
    except (AttributeError, EBPFError) as exc:
        raise AttachError(f"cannot attach {program!r}: not a loaded program ({exc})") from exc
    candidates = _candidates(prog_type, attach_type)
    if not candidates:
        raise AttachError(
            f"no attach backend for {prog_type.name} programs: {_install_hint(distribution_for(prog_type))}"
            + _broken_note()
        )
    chosen = next((b for b in candidates if _accepts(b, target)), None)
    if chosen is None:
        names = ", ".join(b.name for b in candidates)
        raise AttachError(f"no attach backend for {prog_type.name} programs accepts target {target!r} (tried: {names})")
    try:
        return chosen.attach(program, target, **options)
    except EBPFError:
        raise
    except Exception as exc:
        raise AttachError(f"attach backend {chosen.name!r} failed: {type(exc).__name__}: {exc}") from exc


def _read_head(path: str | os.PathLike[str]) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(HEAD_SIZE)
    except OSError as exc:
        raise EBPFError(f"cannot read {os.fspath(path)!r}: {exc.strerror or exc}") from exc


def load(path: str | os.PathLike[str], **options: Any) -> Collection:
    """Load an object file (an ELF ``.o``) through the first loader that recognizes it.

    :param path: the file.
    :param options: passed to ``CollectionSpec.load(**options)``.
    :returns: the loaded :class:`~ebpf.core.collection.Collection`.
    :raises EBPFError: when the file cannot be read or no loader recognizes it (the message
        says ``pip install ebpf-elf``); the loader's own errors propagate.
    """
    name = os.fspath(path)
    head = _read_head(name)
    for loader in object_loaders():
        try:
            if not loader.recognizes(name, head):
                continue
        except Exception as exc:
            warnings.warn(f"object loader {loader.name!r}: recognizes() raised {type(exc).__name__}: {exc}",
                          PluginWarning, stacklevel=2)
            continue
        spec = loader.load_spec(name)
        if not callable(getattr(spec, "load", None)):
            raise PluginError(f"object loader {loader.name!r} returned {type(spec).__name__}, not a CollectionSpec")
        return spec.load(**options)
    raise EBPFError(f"no object loader for {name!r}: pip install ebpf-elf" + _broken_note())


def open_events(map: Any, **options: Any) -> object:
    """Open a reader of events from ``map`` (a ring buffer or perf event array).

    :param map: an ``ebpf.core.maps.Map``.
    :param options: passed to the reader factory (e.g. ``callback=``, ``parser=``).
    :returns: the reader the plugin builds (e.g. ``ebpf.events.ringbuf.RingBuffer``).
    :raises EBPFError: when no plugin reads maps of this type.
    """
    try:
        map_type = MapType.parse(map.map_type)
    except (AttributeError, EBPFError) as exc:
        raise EBPFError(f"cannot read events from {map!r}: not a map ({exc})") from exc
    for reader in event_readers():
        if reader.map_type == map_type:
            return reader.factory(map, **options)
    dist = _READER_DISTRIBUTIONS.get(map_type)
    hint = f"pip install {dist}" if dist else "no known distribution reads such maps"
    raise EBPFError(f"no event reader for {map_type.name} maps: {hint}" + _broken_note())


def run_feature_probes() -> dict[str, str | None]:
    """Run every plugin's feature probes; never raises.

    :returns: feature name -> None when supported, else the reason (the error's text;
        a probe that could not tell says "could not tell ...", see :func:`ebpf.core.features.outcome`).
    """
    try:
        probes = feature_probes()
    except Exception as exc:  # never raise: init() and `ebpf check` rely on it
        return {"plugins": f"{type(exc).__name__}: {exc}"}
    return {fp.name: outcome(fp.probe) for fp in probes}


def add_cli_commands(subparsers: Any) -> None:
    """Call every plugin's ``ebpf_cli_commands(subparsers)``; a plugin that raises is reported and skipped."""
    for impl in _impls("ebpf_cli_commands"):
        _call(impl, "ebpf_cli_commands", {"subparsers": subparsers})


def _reset_for_tests() -> None:
    """Forget the manager, caches and broken plugins (tests only)."""
    global _manager
    with _lock:
        _manager = None
        _broken.clear()
        _distributions.clear()
        _cache.clear()

