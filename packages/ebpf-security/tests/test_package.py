"""The package installs, imports, and is found through the ``ebpf`` entry-point group."""

from __future__ import annotations

import os
from importlib import metadata

import ebpf.security
import ebpf.security.plugin
import tomllib

HERE = os.path.dirname(os.path.abspath(__file__))


def test_entry_point_declared_and_installed_metadata_agrees() -> None:
    with open(os.path.join(HERE, "..", "pyproject.toml"), "rb") as f:
        project = tomllib.load(f)
    assert project["project"]["entry-points"]["ebpf"]["security"] == "ebpf.security.plugin"
    try:
        metadata.distribution("ebpf-security")
    except metadata.PackageNotFoundError:
        return  # a source checkout on PYTHONPATH: core finds the plugin through EBPF_PLUGINS
    eps = {ep.name: ep.value for ep in metadata.entry_points(group="ebpf")}
    assert eps.get("security") == "ebpf.security.plugin"


def test_public_names_are_exported() -> None:
    from ebpf.security import lsm

    assert ebpf.security.lsm is lsm
    for name in ("lsm_available", "list_lsm_hooks", "list_hooks_by_category", "get_hook_category",
                 "load_lsm_program", "attach_lsm_program", "detach_lsm_program", "setup_lsm_hook",
                 "teardown_lsm_hook", "lsm_hook", "lsm_return_code"):
        assert name in lsm.__all__ and callable(getattr(lsm, name)), name
    assert all(hasattr(ebpf.security, name) for name in ebpf.security.__all__)
    assert all(getattr(lsm, name).__doc__ for name in lsm.__all__ if callable(getattr(lsm, name)))
