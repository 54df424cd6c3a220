"""The plugin contract's records and protocols, at the bottom of ebpf-core.

What plugins return through the hooks of :mod:`ebpf.core.hookspecs` (:class:`AttachBackend`,
:class:`EventReader`, :class:`ObjectLoader`, :class:`SectionType`, :class:`FeatureProbe`), what
core hands to them (:class:`AttachableProgram`, :class:`EventMap`, :class:`SupportsFd`), and the
interface of the dispatch registry (:class:`Dispatcher`) through which the kernel-object modules
(``maps``, ``programs``, ``system``) reach the plugins without importing the plugin manager.

This module imports only :mod:`ebpf.core.errors` and :mod:`ebpf.core.types`; every other module
of core may import it, and it imports none of them (see "Architecture" in docs/DEVELOPING.md).
:mod:`ebpf.core.plugins` fills the registry from pluggy; it is named here, not imported
(``DISPATCHER_MODULE``), so the layers stay one way.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias, runtime_checkable

from ebpf.core.errors import EBPFError
from ebpf.core.records import dataclass
from ebpf.core.types import AttachType, MapType, ProgType

if TYPE_CHECKING:  # pragma: no cover - only for annotations
    from ebpf.core.collection import Collection, CollectionSpec
    from ebpf.core.links import Link

__all__ = [
    "SupportsFd",
    "SupportsAssemble",
    "Instructions",
    "ProgTypeLike",
    "AttachTypeLike",
    "AttachableProgram",
    "EventMap",
    "AttachBackend",
    "EventReader",
    "ObjectLoader",
    "SectionType",
    "FeatureProbe",
    "BrokenPlugin",
    "LoadStep",
    "register_load_step",
    "load_step",
    "Dispatcher",
    "DISPATCHER_MODULE",
    "dispatcher",
    "set_dispatcher",
]


@runtime_checkable
class SupportsFd(Protocol):
    """Anything with an integer ``fd`` (a :class:`~ebpf.core.maps.Map`, a pinned object, ...)."""

    @property
    def fd(self) -> int:
        """The object's file descriptor."""
        ...


@runtime_checkable
class SupportsAssemble(Protocol):
    """An assembler program (``ebpf.core.asm`` builders): anything whose ``assemble()`` gives the bytes."""

    def assemble(self) -> bytes:
        """The program text: 8 bytes per instruction."""
        ...


#: A program's text as every ``load_*`` function takes it: bytes, a list of instructions,
#: assembler text, or an assembler program.
Instructions: TypeAlias = bytes | bytearray | memoryview | str | Sequence[Any] | SupportsAssemble
#: A program type: the enum member, its name (``"xdp"``) or its number.
ProgTypeLike: TypeAlias = ProgType | str | int
#: An attach type: the enum member, its name (``"cgroup_inet_egress"``) or its number.
AttachTypeLike: TypeAlias = AttachType | str | int


@runtime_checkable
class AttachableProgram(Protocol):
    """What an attach backend receives: a loaded program (``ebpf.core.programs.Program``)."""

    @property
    def fd(self) -> int:
        """The program's file descriptor."""
        ...

    @property
    def prog_type(self) -> ProgType:
        """The program type."""
        ...

    @property
    def expected_attach_type(self) -> AttachType | None:
        """The attach type it was loaded for, or None."""
        ...

    @property
    def name(self) -> str:
        """The program's name."""
        ...


@runtime_checkable
class EventMap(Protocol):
    """What an event reader receives: a ring buffer or perf event array map (``ebpf.core.maps.Map``)."""

    @property
    def fd(self) -> int:
        """The map's file descriptor."""
        ...

    @property
    def map_type(self) -> MapType:
        """The map type."""
        ...


def _set(obj: object, **fields: Any) -> None:
    for key, value in fields.items():
        object.__setattr__(obj, key, value)  # the records are frozen


def _parse_pairs(serves: Any) -> tuple[tuple[ProgType, AttachType | None], ...]:
    pairs = []
    for item in serves:
        if isinstance(item, (tuple, list)) and len(item) == 2:
            prog, att = item
        else:  # a bare program type means "any attach type"
            prog, att = item, None
        pairs.append((ProgType.parse(prog), None if att is None else AttachType.parse(att)))
    return tuple(pairs)


_ProgTypeLike = ProgType | str | int
_AttachTypeLike = AttachType | str | int | None


@dataclass(frozen=True, init=False)
class AttachBackend:
    """A way to attach programs, returned by the ``ebpf_attach_backends`` hook.

    :param name: a short name, shown in errors and ``ebpf check``.
    :param serves: the ``(ProgType, AttachType | None)`` pairs it attaches; None as attach
        type means "whatever the expected attach type"; a bare program type is accepted too.
        Names (``("xdp", None)``) are parsed.
    :param attach: ``attach(program, target, **options) -> Link``.
    :param distribution: the distribution that ships it (``"ebpf-net"``).
    :param accepts: ``accepts(target) -> bool``, to choose among several backends serving
        the same program type; None accepts every target.
    """

    name: str
    serves: tuple[tuple[ProgType, AttachType | None], ...]
    attach: Callable[..., Link]
    distribution: str
    accepts: Callable[[object], bool] | None

    def __init__(
        self,
        name: str,
        serves: Iterable[tuple[_ProgTypeLike, _AttachTypeLike] | _ProgTypeLike],
        attach: Callable[..., Any],
        distribution: str = "",
        accepts: Callable[[object], bool] | None = None,
    ) -> None:
        """Check and normalize the fields (names become enum members).

        :raises EBPFError: for an unknown program or attach type name.
        """
        _set(self, name=name, serves=_parse_pairs(serves), attach=attach, distribution=distribution,
             accepts=accepts)


@dataclass(frozen=True, init=False)
class EventReader:
    """A reader of events from a map, returned by the ``ebpf_event_readers`` hook.

    :param map_type: the map type it reads (``MapType.RINGBUF``, ``"perf_event_array"``, ...).
    :param factory: ``factory(map, **options)`` returning the reader.
    :param name: a short name for messages.
    """

    map_type: MapType
    factory: Callable[..., object]
    name: str

    def __init__(self, map_type: MapType | str | int, factory: Callable[..., object], name: str = "") -> None:
        """Check and normalize the fields.

        :raises EBPFError: for an unknown map type.
        """
        _set(self, map_type=MapType.parse(map_type), factory=factory, name=name)


@dataclass(frozen=True)
class ObjectLoader:
    """A loader of object files, returned by the ``ebpf_object_loaders`` hook.

    :ivar name: a short name for messages (``"elf"``).
    :ivar recognizes: ``recognizes(path, head) -> bool`` where ``head`` holds the file's
        first bytes (up to :data:`HEAD_SIZE`).
    :ivar load_spec: ``load_spec(path) -> CollectionSpec``.
    """

    name: str
    recognizes: Callable[[str, bytes], bool]
    load_spec: Callable[..., CollectionSpec]


@dataclass(frozen=True, init=False)
class SectionType:
    """An ELF section-name prefix and what it means, from the ``ebpf_section_types`` hook.

    :param prefix: e.g. ``"xdp"``, ``"tracepoint/"``, ``"lsm/"``.
    :param prog_type: the program type of such sections.
    :param attach_type: the expected attach type, or None.
    :param extra: loader hints (e.g. ``{"attach_to_from_name": True}``).
    """

    prefix: str
    prog_type: ProgType
    attach_type: AttachType | None
    extra: dict[str, Any]

    def __init__(self, prefix: str, prog_type: _ProgTypeLike, attach_type: _AttachTypeLike = None,
                 extra: dict[str, Any] | None = None) -> None:
        """Check and normalize the fields.

        :raises EBPFError: for an unknown program or attach type.
        """
        _set(self, prefix=prefix, prog_type=ProgType.parse(prog_type),
             attach_type=None if attach_type is None else AttachType.parse(attach_type), extra=dict(extra or {}))


@dataclass(frozen=True)
class FeatureProbe:
    """A named feature probe, from the ``ebpf_features`` hook.

    :ivar name: e.g. ``"net.tcx"``.
    :ivar probe: returns None when supported, raises ``UnsupportedFeatureError`` when not.
    :ivar description: one line for ``ebpf check``.
    """

    name: str
    probe: Callable[[], None]
    description: str = ""


@dataclass(frozen=True)
class BrokenPlugin:
    """A plugin that was skipped, as :func:`broken_plugins` reports it."""

    name: str
    distribution: str
    reason: str


@dataclass(frozen=True)
class LoadStep:
    """A load-time step of an object loader, for the plain data it leaves on a spec.

    A loader records what it knows on :attr:`CollectionSpec.loader_data
    <ebpf.core.collection.CollectionSpec.loader_data>` under ``name`` (CO-RE relocation records,
    struct_ops tables, ...); :meth:`CollectionSpec.load <ebpf.core.collection.CollectionSpec.load>`
    runs the step registered under that name.  By convention ``name`` is the module that
    registers the step when imported, so a spec read back in a fresh process still finds it.

    :ivar name: the key in ``loader_data`` (``"ebpf.elf.steps"``).
    :ivar prepare: ``prepare(spec, data, options)`` on the load's own copy of the spec, before
        anything is created (may rewrite programs, drop them, add ``load_notes``).
    :ivar after_load: ``after_load(spec, data, maps, programs, options)`` once every program
        loaded; it may add maps to ``maps`` (closed with the rest if the load fails later).
    """

    name: str
    prepare: Callable[[CollectionSpec, Any, dict[str, Any]], None] | None = None
    after_load: Callable[[CollectionSpec, Any, dict[str, Any], dict[str, Any], dict[str, Any]], None] | None = None


_load_steps: dict[str, LoadStep] = {}


def register_load_step(step: LoadStep) -> None:
    """Make ``step`` run for every spec whose ``loader_data`` has its name (a later one replaces it).

    :param step: the step.
    :raises EBPFError: when ``step`` is not a :class:`LoadStep`.
    """
    if not isinstance(step, LoadStep):
        raise EBPFError(f"register_load_step() takes a LoadStep, not {type(step).__name__}")
    with _lock:
        _load_steps[step.name] = step


def load_step(name: str) -> LoadStep:
    """The step registered under ``name``, importing module ``name`` first if none is yet.

    :param name: a key of ``CollectionSpec.loader_data``.
    :returns: the step.
    :raises EBPFError: when no installed module registers a step of that name.
    """
    with _lock:
        step = _load_steps.get(name)
    if step is None:
        try:
            importlib.import_module(name)  # by convention the module registers its step on import
        except ImportError:
            pass
        with _lock:
            step = _load_steps.get(name)
    if step is None:
        raise EBPFError(f"the spec carries data for load step {name!r}, which no installed package registers "
                        f"(is the package that made the spec installed?)")
    return step


class Dispatcher(Protocol):
    """The dispatch registry's interface: what the kernel-object modules ask of the plugins."""

    def attach(self, program: Any, target: object = None, **options: Any) -> Link:
        """Attach ``program`` through the backend that serves its type (``Program.attach``)."""
        ...

    def open_events(self, map: Any, **options: Any) -> object:
        """Open the event reader for ``map`` (``Map.open_events``)."""
        ...

    def load(self, path: Any, **options: Any) -> Collection:
        """Load an object file through the loader that recognizes it."""
        ...

    def run_feature_probes(self) -> dict[str, str | None]:
        """Every plugin feature probe's outcome (``init()``, ``ebpf check``); never raises."""
        ...


#: The module that implements :class:`Dispatcher` (its module-level functions), imported on first dispatch.
DISPATCHER_MODULE = "ebpf.core.plugins"

_dispatcher: Dispatcher | None = None
_lock = threading.Lock()


def set_dispatcher(impl: Dispatcher | None) -> None:
    """Install the dispatch registry (None: the default, :data:`DISPATCHER_MODULE`, on next use)."""
    global _dispatcher
    with _lock:
        _dispatcher = impl


def dispatcher() -> Dispatcher:
    """The dispatch registry; the pluggy-backed default is loaded on first use (it costs start-up time).

    :returns: the installed :class:`Dispatcher`.
    """
    global _dispatcher
    with _lock:
        if _dispatcher is None:
            # By name, not an import statement: the plugin manager sits above this module.
            _dispatcher = importlib.import_module(DISPATCHER_MODULE)
        assert _dispatcher is not None
        return _dispatcher
