"""Count packets per IP protocol with XDP on one end of a private veth pair.

    sudo python3 examples/xdp_counter.py --duration 2

Two throw-away namespaces (see _netns.py) are joined by a veth pair; the XDP program on B's
end counts every frame by IPv4 protocol in an array map; A sends UDP datagrams for
``--duration`` seconds.  Everything goes away when the namespaces are deleted.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from _netns import inside, veth_pair
from ebpf.core import asm
from ebpf.core.asm import R0, R1, R2, R3, R4, R5, R10
from ebpf.core.maps import create_array_map
from ebpf.net.xdp import attach_xdp, load_xdp_program

NAMES = {1: "icmp", 6: "tcp", 17: "udp", 255: "other"}


def counter(counts: Any) -> list[Any]:
    return [
        asm.ldx_mem("w", R2, R1, 0), asm.ldx_mem("w", R3, R1, 4),   # data, data_end
        asm.mov64(R4, R2), asm.add64(R4, 34), asm.jgt(R4, R3, "other"),  # Ethernet + IPv4 header in bounds?
        asm.ldx_mem("h", R5, R2, 12), asm.jne(R5, 0x0008, "other"),  # EtherType IPv4 (big-endian 0x0800)
        asm.ldx_mem("b", R5, R2, 23), asm.stx_mem("w", R10, R5, -4), asm.jmp_a("count"),  # key = ip->protocol
        asm.label("other"), asm.st_mem("w", R10, -4, 255),
        asm.label("count"), asm.ld_map_fd(R1, counts), asm.mov64(R2, R10), asm.add64(R2, -4),
        asm.call("map_lookup_elem"), asm.jeq(R0, 0, "out"), asm.mov64(R1, 1), asm.atomic_add("dw", R0, R1, 0),
        asm.label("out"), asm.mov64(R0, 2), asm.exit_insn(),           # XDP_PASS
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=float, default=3.0, help="seconds of traffic")
    args = parser.parse_args()

    with veth_pair("xdp") as net, create_array_map(256, value_size=8, name="proto_counts") as counts, \
            load_xdp_program(counter(counts), name="xdp_count", maps=(counts,)) as prog:
        with inside(net.ns_b):
            link = attach_xdp(net.if_b, prog)   # an XDP link: detached when closed
        with link:
            sent = 0
            deadline = time.monotonic() + args.duration
            while time.monotonic() < deadline:
                net.send_udp(5353, 10)
                sent += 10
                time.sleep(0.05)
            print(f"sent {sent} UDP datagrams from {net.ns_a} to {net.ns_b}")
            for proto, name in NAMES.items():
                if counts[proto]:
                    print(f"XDP saw {counts[proto]:>6} {name} packets")


if __name__ == "__main__":
    main()
