"""ebpf-export: eBPF maps as Prometheus metrics and OTLP, configured in YAML (cloudflare's ebpf_exporter's job).

``ebpf export --config FILE`` (or ``--builtin syscalls,runqlat,...``) compiles each program's C
source with ebpf-elf's ``compile_c``, loads and attaches it, and serves ``/metrics``,
``/healthz`` and ``/programs``. In Python::

    from ebpf.export import Exporter, load_config
    with Exporter(load_config("metrics.yaml")) as exporter:
        print(exporter.render())
"""

from __future__ import annotations

from ebpf.export.config import ConfigError, ExportConfig, load_config, parse_config
from ebpf.export.exporter import Exporter, ExportError, MetricFamily, builtin_config, builtin_names, render_text

__all__ = ["ConfigError", "ExportConfig", "ExportError", "Exporter", "MetricFamily", "builtin_config",
           "builtin_names", "load_config", "parse_config", "render_text"]
