"""The skeleton installs, imports, and is found through the ``ebpf`` entry-point group."""

from importlib.metadata import entry_points

import ebpf.security
import ebpf.security.plugin


def test_entry_point_names_the_plugin_module() -> None:
    eps = {ep.name: ep.value for ep in entry_points(group="ebpf")}
    assert eps.get("security") == "ebpf.security.plugin"


def test_plugin_module_imports() -> None:
    assert ebpf.security.plugin.__name__ == "ebpf.security.plugin"
    assert ebpf.security.__all__ == []
