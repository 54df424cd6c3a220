"""The ``tcp_retransmits`` built-in counts real TCP retransmissions, scraped over HTTP as Prometheus would.

A child process in a network namespace of its own (``unshare --net``) opens a TCP connection on
loopback to a 127.x.y.z address nobody else uses, and a socket filter of ours on the receiving side
drops every data segment: the sender's retransmission timer fires again and again, each time through
``tcp:tcp_retransmit_skb``. Once the exporter's ``/metrics`` shows the retransmits under that address,
the test tells the child to detach the filter and the data gets through.
"""

from __future__ import annotations

import random
import re
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Callable

import pytest
from ebpf.core.errors import UnsupportedFeatureError
from ebpf.core.testing import require

pytestmark = pytest.mark.privileged

PAYLOAD = 1000  # bytes the client sends: one data segment, far above the filter's 200-byte threshold

#: Runs inside ``unshare --net``: loopback up, a server whose socket drops data segments, a client
#: that sends PAYLOAD bytes; "sent" on stdout, then waits for a line on stdin before letting data in.
CHILD = r"""
import socket, subprocess, sys
from ebpf.core.asm import R0, R1, W, exit_, jgt, label, ldx_mem, mov32
from ebpf.core.programs import load_program

SO_ATTACH_BPF, SO_DETACH_BPF = 50, 27
addr, payload = sys.argv[1], int(sys.argv[2])
subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
# A socket filter returning 0 drops the segment in tcp_v4_rcv (tcp_filter): the handshake and
# ACKs (short) pass, data segments (skb->len > 200) never reach the socket, so the sender retransmits.
drop_data = load_program(prog_type="socket_filter", name="drop_data", insns=[
    ldx_mem(W, R0, R1, 0),  # __sk_buff.len
    jgt(R0, 200, "drop"),
    mov32(R0, -1), exit_(),
    label("drop"), mov32(R0, 0), exit_(),
])
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, SO_ATTACH_BPF, drop_data.fd)  # accepted sockets inherit it
server.bind((addr, 0))
server.listen(1)
client = socket.create_connection(server.getsockname(), timeout=10)
conn, _ = server.accept()
client.sendall(b"x" * payload)
print("sent", flush=True)
sys.stdin.readline()
conn.setsockopt(socket.SOL_SOCKET, SO_DETACH_BPF, 0)
conn.settimeout(30)
got = 0
while got < payload:
    chunk = conn.recv(65536)
    if not chunk:
        break
    got += len(chunk)
print("received", got, flush=True)
"""


def _scrape(url: str, daddr: str) -> float:
    """The value of ``tcp_retransmits_total{daddr=...}`` in the exposition at ``url`` (0 when absent)."""
    with urllib.request.urlopen(url, timeout=10) as resp:
        text = resp.read().decode()
    match = re.search(rf'^tcp_retransmits_total\{{daddr="{re.escape(daddr)}"\}} (\S+)$', text, re.M)
    return float(match.group(1)) if match else 0.0


def _unshare_net() -> None:
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        raise UnsupportedFeatureError("network namespaces", reason="unshare(1) or ip(8) is not installed")
    proc = subprocess.run(["unshare", "--net", "true"], capture_output=True, text=True)
    if proc.returncode != 0:
        raise UnsupportedFeatureError("network namespaces", reason=f"unshare --net failed: {proc.stderr.strip()}")


def test_tcp_retransmits_counts_real_retransmissions(run_exporter: Callable[[list[str]], object],
                                                     wait_for: Callable[[Callable[[], object], float, str], object]
                                                     ) -> None:
    require(_unshare_net)
    exporter = run_exporter(["--builtin", "tcp_retransmits"])
    url: str = exporter.url()  # type: ignore[attr-defined]
    # A loopback address of our own: the tracepoint is global, other tests may retransmit to 127.0.0.1.
    daddr = f"127.{random.randint(1, 254)}.{random.randint(1, 254)}.{random.randint(1, 254)}"
    assert _scrape(url, daddr) == 0.0
    child = subprocess.Popen(["unshare", "--net", "--", sys.executable, "-c", CHILD, daddr, str(PAYLOAD)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdin is not None
        line = child.stdout.readline()
        assert line == "sent\n", f"child failed: {line}{child.stderr.read() if child.stderr else ''}"
        # RTO on loopback starts at 200 ms and doubles: two retransmissions within about a second.
        wait_for(lambda: _scrape(url, daddr) >= 2, 30, f"two retransmits to {daddr} in /metrics")
        child.stdin.write("go\n")
        child.stdin.flush()
        assert child.stdout.readline() == f"received {PAYLOAD}\n"
        assert child.wait(30) == 0
        counted = _scrape(url, daddr)
        assert counted >= 2
        # Once the data got through, the connection is quiet: the counter stays where it is.
        assert _scrape(url, daddr) == counted
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(30)
        for stream in (child.stdin, child.stdout, child.stderr):
            if stream:
                stream.close()
