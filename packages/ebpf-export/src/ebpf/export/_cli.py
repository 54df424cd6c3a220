"""``ebpf export --config FILE | --builtin NAMES [--listen HOST:PORT] [--otlp-endpoint URL]``.

Loads and attaches everything first (a bad configuration or a program the verifier refuses
exits with status 2 and nothing left loaded), then serves ``/metrics`` until SIGINT or SIGTERM,
which detach everything before the process exits with status 0.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from types import FrameType
from typing import Any

__all__ = ["add_commands", "run_export"]


def run_export(args: argparse.Namespace) -> int:
    """The ``export`` command's body (see the module docstring); returns the exit status."""
    from ebpf.core.errors import EBPFError
    from ebpf.export.config import ConfigError, ExportConfig, load_config
    from ebpf.export.exporter import Exporter, ExportError, builtin_config
    from ebpf.export.server import MetricsServer, parse_listen

    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    exporter: Exporter | None = None
    server: MetricsServer | None = None
    pusher: Any = None
    try:
        try:
            host, port = parse_listen(args.listen)
            programs: list[Any] = []
            if args.config:
                programs += load_config(args.config).programs
            if args.builtin:
                programs += builtin_config([n.strip() for n in args.builtin.split(",") if n.strip()]).programs
            if not programs:
                raise ConfigError("ebpf export", "give --config FILE or --builtin NAMES")
            exporter = Exporter(ExportConfig(tuple(programs), args.config or "--builtin"))
            exporter.start()
        except (ConfigError, ExportError) as exc:
            print(f"ebpf export: error: {exc}", file=sys.stderr)
            return 2
        server = MetricsServer(exporter, host, port)
        server.start()
        if args.otlp_endpoint:
            from ebpf.export.otlp import OtlpPusher

            pusher = OtlpPusher(exporter, args.otlp_endpoint, args.otlp_interval)
            pusher.start()
        names = ", ".join(p.name for p in exporter.config.programs)
        print(f"ebpf export: serving {names} on http://{host}:{server.port}/metrics", flush=True)
        while not stop.wait(1.0):
            pass
        return 0
    except EBPFError as exc:
        print(f"ebpf export: error: {exc}", file=sys.stderr)
        return 1
    finally:
        if pusher is not None:
            pusher.close()
        if server is not None:
            server.close()
        if exporter is not None:
            exporter.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def add_commands(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add ``export`` to the ``ebpf`` parser."""
    from ebpf.export._builtin import builtin_names  # not the exporter: every ebpf command builds this parser

    text = "serve eBPF map contents as Prometheus metrics (and push OTLP)"
    p = subparsers.add_parser("export", help=text + " (ebpf-export)", description=text)
    p.add_argument("--config", metavar="FILE", help="the YAML configuration (programs and metrics)")
    p.add_argument("--builtin", metavar="NAMES", help=f"comma-separated built-ins: {', '.join(builtin_names())}")
    p.add_argument("--listen", default="127.0.0.1:9435", metavar="HOST:PORT", help="where /metrics is served")
    p.add_argument("--otlp-endpoint", metavar="URL", help="also push to this OTLP/HTTP endpoint (.../v1/metrics)")
    p.add_argument("--otlp-interval", type=float, default=15.0, metavar="S", help="seconds between OTLP pushes")
    p.set_defaults(func=run_export)
