"""Fixtures for ebpf-export's tests: real Prometheus (Debian's package, installed when missing), free ports."""

from __future__ import annotations

import gzip
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest
from ebpf.core.testing import debian_package
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)

HERE = Path(__file__).resolve().parent

#: A program counting getppid() calls per process name, and its one counter (tests add to it).
GETPPID_CONFIG = f"""\
programs:
  - name: getppid
    source: {HERE / "fixtures" / "counter.bpf.c"}
    metrics:
      counters:
        - name: exp_test_getppid_total
          help: getppid calls by process name
          labels:
            - name: comm
              size: 16
              decoders:
                - name: string
"""


def free_port() -> int:
    """A TCP port on loopback nobody listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(check: Callable[[], object], timeout: float, what: str) -> object:
    """Poll ``check`` until it returns something truthy; fail naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except OSError as exc:  # the server is not up yet
            last = exc
        if last and not isinstance(last, Exception):
            return last
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what} (last: {last!r})")


#: Debian packages these tests need, with the commands each provides: installed when missing by the fixture
#: below, and on the host by the kernel matrix before it boots its guests (tools/vm/matrix.py).
APT_PREREQUISITES = {"prometheus": ("prometheus", "promtool")}


@pytest.fixture(scope="session")
def prometheus_bin() -> str:
    """Debian's prometheus and promtool, installed by the test session when missing (as root)."""
    return debian_package("prometheus", *APT_PREREQUISITES["prometheus"])


class ExporterProcess:
    """``ebpf export ...`` in a child process, stopped with SIGTERM."""

    def __init__(self, args: list[str]) -> None:
        self.port = free_port()
        self.argv = [sys.executable, "-m", "ebpf.core.cli", "export", *args, "--listen", f"127.0.0.1:{self.port}"]
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline() if self.proc.stdout else ""
        if "serving" not in line:
            self.proc.wait(30)
            raise AssertionError(f"exporter did not start: {line}{self.proc.stderr.read() if self.proc.stderr else ''}")

    def url(self, path: str = "/metrics") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
        rc = self.proc.wait(60)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream:
                stream.close()
        return rc


@pytest.fixture
def run_exporter() -> Iterator[Callable[[list[str]], ExporterProcess]]:
    """Start exporters; each is stopped (SIGTERM) at the end of the test."""
    started: list[ExporterProcess] = []

    def start(args: list[str]) -> ExporterProcess:
        started.append(ExporterProcess(args))
        return started[-1]

    yield start
    for proc in started:
        proc.stop()


CHILD = """
import ctypes, os, sys
ctypes.CDLL(None).prctl(15, sys.argv[1].encode(), 0, 0, 0)  # PR_SET_NAME: our own comm
for _ in range(int(sys.argv[2])):
    os.getppid()
"""


def _getppid_calls(comm: str, count: int) -> None:
    subprocess.run([sys.executable, "-c", CHILD, comm, str(count)], check=True, timeout=60)


@pytest.fixture
def getppid_calls() -> Callable[[str, int], None]:
    """Run a child named ``comm`` (<= 15 chars) that calls getppid() ``count`` times."""
    return _getppid_calls


@pytest.fixture(name="wait_for")
def wait_for_fixture() -> Callable[[Callable[[], object], float, str], object]:
    """:func:`wait_for` for tests (bounded polling on a condition)."""
    return wait_for


@pytest.fixture(name="free_port")
def free_port_fixture() -> Callable[[], int]:
    """:func:`free_port` for tests."""
    return free_port


@pytest.fixture
def getppid_config() -> str:
    """The YAML text of :data:`GETPPID_CONFIG` (an absolute source path: any file name will do)."""
    return GETPPID_CONFIG


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[ExportMetricsServiceRequest]]]:
    """An OTLP/HTTP metrics receiver on loopback; yields (endpoint, decoded requests)."""
    got: list[ExportMetricsServiceRequest] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            req = ExportMetricsServiceRequest()
            req.ParseFromString(body)
            got.append(req)
            out = ExportMetricsServiceResponse().SerializeToString()
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        def log_message(self, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1/metrics", got
    server.shutdown()
    server.server_close()
