"""ebpf-security's pluggy hook implementations: the LSM attach backend, feature probes, ``ebpf lsm``.

Registered through the ``ebpf`` entry-point group.  Targets understood by ``program.attach``
for LSM programs:

- ``BPF_LSM_MAC`` programs: no target (the hook came from BTF at load);
- ``BPF_LSM_CGROUP`` programs: a cgroup v2 directory path (``"/sys/fs/cgroup/app"``) or an open fd of one.
"""

from __future__ import annotations

from typing import Any

from ebpf.core.plugins import AttachBackend, FeatureProbe, hookimpl

__all__ = ["ebpf_attach_backends", "ebpf_features", "ebpf_cli_commands", "attach_lsm_target"]

_DIST = "ebpf-security"


def attach_lsm_target(program: Any, target: object = None, **options: Any) -> Any:
    """Attach an LSM program: to its hook (``target`` None), or to the cgroup ``target``.

    :raises AttachError: for unknown options or a target that does not fit the program.
    """
    from ebpf.core.errors import AttachError
    from ebpf.security.lsm import attach_lsm_program

    if options:
        raise AttachError(f"LSM programs take no attach options, not {', '.join(sorted(options))}")
    return attach_lsm_program(program, target)


@hookimpl
def ebpf_attach_backends() -> list[AttachBackend]:
    """LSM programs: BPF_LSM_MAC (every process) and BPF_LSM_CGROUP (one cgroup)."""
    return [AttachBackend("lsm", [("lsm", "lsm_mac"), ("lsm", "lsm_cgroup"), ("lsm", None)], attach_lsm_target,
                          _DIST)]


def _probe_lsm() -> None:
    from ebpf.security.lsm import have_bpf_lsm

    have_bpf_lsm()


def _probe_lsm_cgroup() -> None:
    from ebpf.security.lsm import have_lsm_cgroup

    have_lsm_cgroup()


@hookimpl
def ebpf_features() -> list[FeatureProbe]:
    """Probes shown by ``ebpf check``."""
    return [
        FeatureProbe("security.lsm", _probe_lsm, "BPF LSM programs (bpf LSM active, BTF hooks, a real load)"),
        FeatureProbe("security.lsm_cgroup", _probe_lsm_cgroup, "cgroup-scoped LSM programs (BPF_LSM_CGROUP)"),
    ]


@hookimpl
def ebpf_cli_commands(subparsers: Any) -> None:
    """``ebpf lsm hooks [--category C] [--json]``."""
    from ebpf.security._cli import add_commands

    add_commands(subparsers)
