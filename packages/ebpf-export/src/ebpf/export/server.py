"""HTTP endpoints of the exporter: ``/metrics``, ``/healthz`` and ``/programs``.

``/metrics`` serves the Prometheus text format, or OpenMetrics when the scraper asks for it in
``Accept`` (Prometheus does); the exporter's own process metrics (CPU, memory, fds) and scrape
figures come from ``prometheus_client``'s registry and follow the map metrics.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from ebpf.core.errors import EBPFError
from ebpf.export.exporter import Exporter
from prometheus_client import REGISTRY, CollectorRegistry, Gauge, generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

__all__ = ["MetricsServer", "parse_listen"]

_OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"
_TEXT = "text/plain; version=0.0.4; charset=utf-8"


def parse_listen(value: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6) -> (host, port).

    :raises EBPFError: for a malformed address or a port outside 0..65535.
    """
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise EBPFError(f"--listen wants HOST:PORT, not {value!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            openmetrics = "application/openmetrics-text" in self.headers.get("Accept", "")
            body, ctype = self.server.owner.metrics(openmetrics)
            self._send(200, body, ctype)
        elif path == "/healthz":
            self._send(200, b"ok\n", "text/plain; charset=utf-8")
        elif path == "/programs":
            body = json.dumps(self.server.owner.exporter.programs_info(), indent=2).encode() + b"\n"
            self._send(200, body, "application/json")
        else:
            self._send(404, b"not found: try /metrics, /healthz or /programs\n", "text/plain; charset=utf-8")

    def _send(self, status: int, body: bytes, ctype: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # one line per scrape would drown the exporter's own output


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    owner: MetricsServer


class MetricsServer:
    """Serves an :class:`Exporter` over HTTP on ``(host, port)``; ``port=0`` picks a free one."""

    def __init__(self, exporter: Exporter, host: str = "127.0.0.1", port: int = 9435) -> None:
        """Bind the socket (nothing is served until :meth:`start`).

        :raises EBPFError: the address cannot be bound (in use, or not a local address).
        """
        self.exporter = exporter
        try:
            self.httpd = _Server((host, port), _Handler)
        except OSError as exc:
            raise EBPFError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
        self.httpd.owner = self
        self.registry = CollectorRegistry()
        self._scrape = Gauge("ebpf_exporter_scrape_duration_seconds", "Time the last map read and decode took",
                             registry=self.registry)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The port actually bound."""
        return int(self.httpd.server_address[1])

    def metrics(self, openmetrics: bool) -> tuple[bytes, str]:
        """The /metrics body and its content type."""
        maps = self.exporter.render(openmetrics=openmetrics)
        self._scrape.set(self.exporter.last_scrape_seconds)
        if openmetrics:
            own = generate_openmetrics(self.registry) + generate_openmetrics(REGISTRY)  # type: ignore[no-untyped-call]
            # one exposition: drop our renderer's "# EOF" and each registry's, end with one
            text = maps.replace("# EOF\n", "").encode() + own.replace(b"# EOF\n", b"") + b"# EOF\n"
            return text, _OPENMETRICS
        return maps.encode() + generate_latest(self.registry) + generate_latest(REGISTRY), _TEXT

    def start(self) -> None:
        """Serve in a background thread."""
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="ebpf-export-http", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop serving and release the socket."""
        if self._thread is not None:
            self.httpd.shutdown()
            self._thread.join(5)
            self._thread = None
        self.httpd.server_close()
