"""ebpf-export: eBPF maps as Prometheus metrics and OTLP, configured in YAML (cloudflare's ebpf_exporter's job).

``ebpf export --config FILE`` (or ``--builtin syscalls,runqlat,...``) compiles each program's C
source with ebpf-elf's ``compile_c``, loads and attaches it, and serves ``/metrics``,
``/healthz`` and ``/programs``. In Python::

    from ebpf.export import Exporter, load_config
    with Exporter(load_config("metrics.yaml")) as exporter:
        print(exporter.render())
"""


from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ebpf.export.config import ConfigError, ExportConfig, load_config, parse_config
    from ebpf.export.exporter import Exporter, ExportError, MetricFamily, builtin_config, builtin_names, render_text

# Submodules and the names re-exported from them, imported on first use: importing the package
# (its plugin, say) costs nothing until a name is used.
_MODULES: list[str] = []
_NAMES = {
    "ConfigError": "config",
    "ExportConfig": "config",
    "ExportError": "exporter",
    "Exporter": "exporter",
    "MetricFamily": "exporter",
    "builtin_config": "exporter",
    "builtin_names": "exporter",
    "load_config": "config",
    "parse_config": "config",
    "render_text": "exporter",
}

__all__ = ["ConfigError", "ExportConfig", "ExportError", "Exporter", "MetricFamily", "builtin_config",
           "builtin_names", "load_config", "parse_config", "render_text"]


def __getattr__(name: str) -> Any:
    if name in _MODULES:
        value = importlib.import_module(f"ebpf.export.{name}")
    elif name in _NAMES:
        value = getattr(importlib.import_module(f"ebpf.export.{_NAMES[name]}"), name)
    else:
        raise AttributeError(f"module 'ebpf.export' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
