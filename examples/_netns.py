"""Helper for the network examples: two throw-away network namespaces joined by a veth pair.

The examples never touch a real interface.  ``with veth_pair() as net:`` makes namespaces
``ns_a``/``ns_b`` (10.199.0.1 and 10.199.0.2) with ``ip`` from iproute2 and deletes them
(and the veth, and anything attached to it) when the block ends, even on Ctrl-C.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

_libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWNET = 0x40000000


def ip(*args: str) -> None:
    """Run ``ip ARGS`` and fail loudly."""
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


@contextlib.contextmanager
def inside(ns: str) -> Iterator[None]:
    """Run the block with this thread in network namespace ``ns`` (sockets made there stay there)."""
    back = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{ns}", os.O_RDONLY)
    try:
        if _libc.setns(target, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns {ns}")
        yield
    finally:
        _libc.setns(back, CLONE_NEWNET)
        os.close(target)
        os.close(back)


@dataclass
class Net:
    """The two namespaces and their veth ends."""

    ns_a: str
    ns_b: str
    if_a: str
    if_b: str
    ip_a: str = "10.199.0.1"
    ip_b: str = "10.199.0.2"

    def send_udp(self, port: int, count: int) -> int:
        """Send ``count`` datagrams from A to B's ``port``; returns how many arrived."""
        with inside(self.ns_b):
            rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        with inside(self.ns_a):
            tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        with rx, tx:
            rx.bind((self.ip_b, port))
            rx.settimeout(0.3)
            for _ in range(count):
                tx.sendto(b"hello", (self.ip_b, port))
            got = 0
            with contextlib.suppress(OSError):
                while got < count:
                    rx.recv(100)
                    got += 1
        return got


@contextlib.contextmanager
def veth_pair(tag: str = "ex") -> Iterator[Net]:
    """Make the namespaces and the veth pair; remove them afterwards."""
    pid = os.getpid()
    net = Net(f"ebpf-{tag}-a-{pid}", f"ebpf-{tag}-b-{pid}", f"{tag}{pid}a"[:15], f"{tag}{pid}b"[:15])
    try:
        ip("netns", "add", net.ns_a)
        ip("netns", "add", net.ns_b)
        ip("link", "add", net.if_a, "netns", net.ns_a, "type", "veth", "peer", "name", net.if_b, "netns", net.ns_b)
        for ns, ifname, addr in ((net.ns_a, net.if_a, net.ip_a), (net.ns_b, net.if_b, net.ip_b)):
            ip("-n", ns, "addr", "add", f"{addr}/24", "dev", ifname)
            ip("-n", ns, "link", "set", ifname, "up")
        yield net
    finally:
        subprocess.run(["ip", "netns", "del", net.ns_a], capture_output=True)
        subprocess.run(["ip", "netns", "del", net.ns_b], capture_output=True)
