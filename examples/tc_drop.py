"""Drop UDP datagrams to one port with a TC (clsact, direct-action) filter on a private veth.

    sudo python3 examples/tc_drop.py --port 9999 --duration 2

Datagrams to ``--port`` never arrive while the filter is attached; other ports are fine.
"""

from __future__ import annotations

import argparse
import time

from _netns import inside, veth_pair
from ebpf.core import asm
from ebpf.core.asm import R0, R1, R2, R3, R4, R5
from ebpf.net.tc import attach_tc_filter, load_tc_program


def dropper(port: int) -> list[object]:
    be_port = ((port & 0xFF) << 8) | (port >> 8)                 # network byte order, as a u16 load sees it
    return [
        asm.ldx_mem("w", R2, R1, 76), asm.ldx_mem("w", R3, R1, 80),  # skb->data, skb->data_end
        asm.mov64(R4, R2), asm.add64(R4, 38), asm.jgt(R4, R3, "pass"),  # Ethernet + IPv4 + UDP ports in bounds?
        asm.ldx_mem("h", R5, R2, 12), asm.jne(R5, 0x0008, "pass"),   # IPv4
        asm.ldx_mem("b", R5, R2, 14), asm.jne(R5, 0x45, "pass"),     # no IP options
        asm.ldx_mem("b", R5, R2, 23), asm.jne(R5, 17, "pass"),       # UDP
        asm.ldx_mem("h", R5, R2, 36), asm.jne(R5, be_port, "pass"),  # destination port
        asm.mov64(R0, 2), asm.exit_insn(),                           # TC_ACT_SHOT
        asm.label("pass"), asm.mov64(R0, 0), asm.exit_insn(),       # TC_ACT_OK
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=9999, help="UDP port to drop")
    parser.add_argument("--duration", type=float, default=2.0, help="seconds to keep the filter")
    args = parser.parse_args()

    with veth_pair("tc") as net, load_tc_program(dropper(args.port), name="udp_drop") as prog:
        print(f"before: {net.send_udp(args.port, 5)}/5 datagrams to port {args.port} arrived")
        with inside(net.ns_b):
            link = attach_tc_filter(net.if_b, prog, "ingress")  # adds the clsact qdisc when missing
        with link:
            time.sleep(args.duration / 2)
            print(f"filter attached: {net.send_udp(args.port, 5)}/5 to port {args.port} arrived, "
                  f"{net.send_udp(args.port + 1, 5)}/5 to port {args.port + 1}")
            time.sleep(args.duration / 2)
        print(f"after: {net.send_udp(args.port, 5)}/5 datagrams to port {args.port} arrived")


if __name__ == "__main__":
    main()
