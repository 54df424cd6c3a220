"""A UDP echo server in pure Python over AF_XDP, next to a port rewrite written with the packet DSL.

    sudo python3 examples/af_xdp_echo.py --duration 1

Two throw-away namespaces (see _netns.py) are joined by a veth pair.  On B's end:

- an ``XskSocket`` takes UDP to port 7007 straight from XDP into a UMEM shared with Python,
  which answers each datagram by building the reply frame and queuing it on the TX ring;
- for port 7008, an XDP program built with ``ebpf.net.packet`` rewrites the destination
  port to 7009 (checksum fixed in the program), so a normal socket on 7009 receives it.
"""

from __future__ import annotations

import argparse
import socket
import struct
import time

from _netns import Net, inside, veth_pair
from ebpf.net.packet import Packet
from ebpf.net.xdp import XdpAction, attach_xdp, load_xdp_program
from ebpf.net.xsk import Umem, XskSocket


def checksum(data: bytes) -> int:
    data += b"\0" * (len(data) % 2)
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def echo_frame(frame: bytes) -> bytes:
    """The reply to a UDP/IPv4 frame: MACs, addresses and ports swapped, checksums computed."""
    ihl = (frame[14] & 0x0F) * 4
    src, dst = frame[26:30], frame[30:34]
    sport, dport = struct.unpack("!HH", frame[14 + ihl : 18 + ihl])
    payload = frame[22 + ihl :]
    udp = struct.pack("!HHHH", dport, sport, 8 + len(payload), 0) + payload
    udp = udp[:6] + struct.pack("!H", checksum(dst + src + struct.pack("!BBH", 0, 17, len(udp)) + udp) or 0xFFFF) + udp[8:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0x4000, 64, 17, 0, dst, src)
    ip = ip[:10] + struct.pack("!H", checksum(ip)) + ip[12:]
    return frame[6:12] + frame[0:6] + b"\x08\x00" + ip + udp


def rewritten(net: Net, to_port: int, at_port: int, count: int) -> int:
    """Send ``count`` datagrams from A to B's ``to_port``; how many arrived on ``at_port``."""
    with inside(net.ns_b):
        rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with inside(net.ns_a):
        tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with rx, tx:
        rx.bind((net.ip_b, at_port))
        rx.settimeout(0.5)
        for _ in range(count):
            tx.sendto(b"rewrite me", (net.ip_b, to_port))
        got = 0
        try:
            while got < count:
                rx.recv(100)
                got += 1
        except TimeoutError:
            pass
    return got


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=float, default=3.0, help="seconds of echo traffic")
    args = parser.parse_args()

    with veth_pair("xsk") as net:
        with inside(net.ns_b):
            xsk = XskSocket(net.if_b, 0, umem=Umem(256, 2048), udp_port=7007)  # + its XSKMAP redirect program
        with inside(net.ns_a):
            client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        with xsk, client:
            client.bind((net.ip_a, 0))
            client.settimeout(1.0)
            answered = 0
            deadline = time.monotonic() + args.duration
            while time.monotonic() < deadline:
                client.sendto(b"hello %d" % answered, (net.ip_b, 7007))
                for frame in xsk.recv_batch(timeout=1.0):
                    xsk.send([echo_frame(bytes(frame))])
                reply = client.recv(100)
                if reply == b"hello %d" % answered:
                    answered += 1
            print(f"AF_XDP echo ({xsk.mode} mode): {answered} datagrams answered from Python")

        p = Packet("xdp")
        udp = p.ethernet().ipv4().udp()
        p.jump_if(udp.dport, "!=", 7008, p.miss)
        p.set(udp.dport, 7009)
        with load_xdp_program(p.program(on_miss=XdpAction.PASS, verdict=XdpAction.PASS)) as prog:
            with inside(net.ns_b):
                link = attach_xdp(net.if_b, prog)
            with link:
                print(f"sent to port 7008, received on 7009: {rewritten(net, 7008, 7009, 5)}/5")


if __name__ == "__main__":
    main()
