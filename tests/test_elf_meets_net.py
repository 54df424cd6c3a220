"""Cross-package: a C object loaded by ebpf-elf attaches through ebpf-net's backend, found by dispatch.

Nothing here names ebpf-net: ``bpf.load`` finds ebpf-elf's loader and ``program.attach("lo")``
finds ebpf-net's XDP backend, both through the ``ebpf`` entry points.  The traffic stays on the
loopback device of a network namespace made for the test.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parents[1] / "packages" / "ebpf-elf" / "tests" / "fixtures"

CHILD = textwrap.dedent(
    """
    import socket, sys
    import ebpf.core as bpf

    with bpf.load(sys.argv[1]) as coll:
        prog = coll.programs["count_packets"]
        with prog.attach("lo"):                      # XDP on lo, through ebpf-net
            rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            rx.bind(("127.0.0.1", 0))
            tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            for _ in range(5):
                tx.sendto(b"ping", rx.getsockname())
            got = sum(1 for _ in range(5) if rx.recv(16) == b"ping")
        seen = coll.maps["counters"][0]
        for _ in range(3):
            tx.sendto(b"late", rx.getsockname())
        print(got, seen, coll.maps["counters"][0])
    """
)


@pytest.fixture
def netns() -> Iterator[str]:
    name = f"ebpf-it-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


@pytest.mark.privileged
@pytest.mark.parametrize("obj", ["xdp_counter.o", "xdp_counter.clang.o"])
def test_elf_object_attaches_through_the_net_plugin(netns: str, obj: str) -> None:
    out = subprocess.run(
        ["ip", "netns", "exec", netns, sys.executable, "-c", CHILD, str(FIXTURES / obj)],
        capture_output=True, text=True, timeout=60, env=os.environ.copy(),
    )
    assert out.returncode == 0, out.stderr
    got, seen, after_detach = (int(x) for x in out.stdout.split())
    assert got == 5  # XDP_PASS: every datagram still arrives
    assert seen == 5  # ...and each was counted by the C program's map
    assert after_detach == 5  # detached: later traffic is not counted
