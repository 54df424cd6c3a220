"""The plugin contract: pluggy hook specifications of the project ``"ebpf"``.

Every package other than ``ebpf-core`` (``ebpf-net``, ``ebpf-events``, ``ebpf-security``,
``ebpf-elf``) and every third-party plugin extends ``ebpf`` only through these hooks.
A plugin is a module (or object) with ``@ebpf.core.plugins.hookimpl`` functions named
like the hooks below, made known through the entry-point group ``"ebpf"``::

    [project.entry-points.ebpf]
    net = "ebpf.net.plugin"

or registered at run time with :func:`ebpf.core.plugins.register`.  Implementations
may take fewer arguments than the specification.  The ``collect`` hooks return a list
(or a single item, or None); core flattens the lists of every plugin, checks the type
of each item and skips (with a warning naming the plugin) whatever is unusable.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:  # pragma: no cover - only for annotations
    import argparse

    from ebpf.core.demo import DemoStep
    from ebpf.core.extension import AttachBackend, EventReader, FeatureProbe, ObjectLoader, SectionType

__all__ = [
    "hookspec",
    "ebpf_attach_backends",
    "ebpf_event_readers",
    "ebpf_object_loaders",
    "ebpf_section_types",
    "ebpf_features",
    "ebpf_cli_commands",
    "ebpf_demo_steps",
]

#: Marker for the hook specifications of project ``"ebpf"``.
hookspec = pluggy.HookspecMarker("ebpf")


# -- attaching programs --------------------------------------------------------------


@hookspec
def ebpf_attach_backends() -> list[AttachBackend]:  # type: ignore[empty-body]
    """Return the attach backends this plugin provides.

    An :class:`~ebpf.core.plugins.AttachBackend` names the ``(ProgType, AttachType | None)``
    pairs it serves and an ``attach(program, target, **options) -> Link`` callable.
    ``Program.attach(target, **options)`` (and :func:`ebpf.core.plugins.attach`) picks the
    backend for the program's type and expected attach type, falling back to entries whose
    attach type is None; among several, the first whose ``accepts(target)`` is True.

    :returns: a list of :class:`~ebpf.core.plugins.AttachBackend` (or one, or None).
    """


# -- reading events ------------------------------------------------------------------


@hookspec
def ebpf_event_readers() -> list[EventReader]:  # type: ignore[empty-body]
    """Return the event readers this plugin provides, keyed by map type.

    An :class:`~ebpf.core.plugins.EventReader` has the ``map_type`` it reads (e.g.
    ``MapType.RINGBUF`` or ``MapType.PERF_EVENT_ARRAY``) and a ``factory(map, **options)``
    building the reader; :func:`ebpf.core.plugins.open_events` dispatches to it.

    :returns: a list of :class:`~ebpf.core.plugins.EventReader` (or one, or None).
    """


# -- loading objects -----------------------------------------------------------------


@hookspec
def ebpf_object_loaders() -> list[ObjectLoader]:  # type: ignore[empty-body]
    """Return the object-file loaders this plugin provides.

    An :class:`~ebpf.core.plugins.ObjectLoader` has ``recognizes(path, head) -> bool``
    (``head`` holds the file's first bytes, e.g. the ELF magic) and
    ``load_spec(path) -> CollectionSpec``; :func:`ebpf.core.plugins.load` asks each loader
    in turn and loads the spec of the first that recognizes the file.

    :returns: a list of :class:`~ebpf.core.plugins.ObjectLoader` (or one, or None).
    """


@hookspec
def ebpf_section_types() -> list[SectionType]:  # type: ignore[empty-body]
    """Return ELF section-name prefixes and the program types they mean.

    A :class:`~ebpf.core.plugins.SectionType` maps a prefix such as ``"xdp"`` or
    ``"tp_btf/"`` to ``(prog_type, attach_type)`` (plus loader hints in ``extra``), so a
    plugin can teach the object loader sections it did not know.

    :returns: a list of :class:`~ebpf.core.plugins.SectionType` (or one, or None).
    """


# -- reporting -----------------------------------------------------------------------


@hookspec
def ebpf_features() -> list[FeatureProbe]:  # type: ignore[empty-body]
    """Return named feature probes, shown by ``ebpf check`` and ``ebpf.core.init()``.

    A :class:`~ebpf.core.plugins.FeatureProbe` has a ``name`` and a ``probe()`` callable
    that returns None when the feature works here and raises
    :class:`~ebpf.core.errors.UnsupportedFeatureError` when it does not (any other error
    means "could not tell").

    :returns: a list of :class:`~ebpf.core.plugins.FeatureProbe` (or one, or None).
    """


# -- the command line ----------------------------------------------------------------


@hookspec
def ebpf_cli_commands(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add subcommands to the ``ebpf`` command.

    Call ``subparsers.add_parser(name, help=...)``, add arguments, and
    ``set_defaults(func=handler)`` where ``handler(args: argparse.Namespace) -> int`` runs
    the command and returns the exit status.  A subcommand that lists things should
    offer ``--json``.

    :param subparsers: the ``ebpf`` parser's subparsers (``ArgumentParser.add_subparsers()``).
    :returns: nothing; the hook works by adding parsers.
    """


@hookspec
def ebpf_demo_steps() -> list[DemoStep]:  # type: ignore[empty-body]
    """Return the parts this plugin adds to ``ebpf demo``.

    A :class:`~ebpf.core.demo.DemoStep` has a ``name``, a one-line ``title``, an ``order``
    (core's own part is 10; steps run by ascending order) and a ``run(ctx)`` callable taking
    a :class:`~ebpf.core.demo.DemoContext`: it prints through ``ctx.print``/``ctx.live_table``
    (plain lines, or a live display on a terminal), registers a cleanup with ``ctx.defer`` for
    everything it creates (cleanups always run, even on Ctrl-C), passes loaded programs to
    ``ctx.track`` (listed at the end) and reports results with ``ctx.summary``.  The hook
    itself must be cheap: build nothing until ``run`` is called.

    :returns: a list of :class:`~ebpf.core.demo.DemoStep` (or one, or None).
    """
