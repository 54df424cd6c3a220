"""Count packets per IP protocol and drop UDP to the discard port (9) with XDP, written in Python.

    sudo python3 examples/lang/xdp_counter.py --duration 2

The kernel side parses Ethernet, IPv4 and UDP headers through ``ctx.header(T, offset)``: the
compiler inserts the bounds checks the verifier demands, and the header is None when the
packet is too short.  A private veth pair (examples/_netns.py) carries the traffic.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from ebpf.lang import ArrayMap, Struct, bpf, kernel, u8, u16, u32, u64
from ebpf.lang import ctx_types as ct

XDP_DROP, XDP_PASS = 1, 2
DISCARD_PORT = 9


class EthHdr(Struct):
    dst: u8[6]
    src: u8[6]
    proto: u16


class IpHdr(Struct):
    ver_ihl: u8
    tos: u8
    tot_len: u16
    id: u16
    frag_off: u16
    ttl: u8
    protocol: u8
    check: u16
    saddr: u32
    daddr: u32


class UdpHdr(Struct):
    sport: u16
    dport: u16
    len: u16
    check: u16


proto_counts = ArrayMap(u64, max_entries=256)


@kernel("xdp")
def xdp_count(ctx: ct.xdp_md) -> int:
    eth = ctx.header(EthHdr, 0)
    if eth is None or eth.proto != bpf.htons(0x0800):
        return XDP_PASS
    ip = ctx.header(IpHdr, 14)
    if ip is None:
        return XDP_PASS
    proto_counts.increment(ip.protocol)
    if ip.protocol != 17:
        return XDP_PASS
    udp = ctx.header(UdpHdr, 14 + (ip.ver_ihl & 0xF) * 4)
    if udp is not None and udp.dport == bpf.htons(DISCARD_PORT):
        return XDP_DROP
    return XDP_PASS


def main() -> None:
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    import socket

    from _netns import inside, veth_pair
    from ebpf.lang import load
    from ebpf.net.xdp import attach_xdp

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=float, default=2.0, help="seconds of traffic")
    args = parser.parse_args()
    with veth_pair("lxdp") as net, load(sys.modules[__name__]) as coll:
        with inside(net.ns_b):
            link = attach_xdp(net.if_b, coll.programs["xdp_count"])
        with link, inside(net.ns_a), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            deadline = time.monotonic() + args.duration
            while time.monotonic() < deadline:
                s.sendto(b"x", (net.ip_b, 9999))
                time.sleep(0.01)
        counts = coll.maps["proto_counts"]
        for proto, name in ((1, "icmp"), (6, "tcp"), (17, "udp")):
            print(f"{name:>5}: {counts[proto]}")


if __name__ == "__main__":
    main()
