"""Flow dissector programs: keys from crafted frames through test_run, and the program attached to a
namespace dissecting real traffic (fq_codel hashes every packet it queues)."""

from __future__ import annotations

import ipaddress
import socket
import struct

import pytest
from ebpf.core.asm import (
    DW,
    R0,
    R1,
    R2,
    R3,
    R4,
    R5,
    R6,
    R7,
    R8,
    R10,
    B,
    H,
    W,
    add64,
    and64,
    atomic_add,
    be16,
    call,
    exit_,
    jeq,
    jgt,
    jne,
    label,
    ld_map_fd,
    ldx_mem,
    mov64,
    st_mem,
    stx_mem,
)  # fmt: skip
from ebpf.core.errors import AttachError, EBPFError
from ebpf.core.maps import create_array_map
from ebpf.net import flow_dissector as fd
from ebpf.net import tc
from ebpf.net.flow_dissector import FlowDissectorVerdict
from ebpf.net.tc import TcAction

pytestmark = pytest.mark.privileged


def ipv4_dissector(seen):
    """Plain IPv4 (no options) + ports; seen[0] counts runs, seen[1] is the last dport."""
    return [
        mov64(R6, R1),
        ldx_mem(DW, R7, R6, fd.FLOW_KEYS_OFFSET),
        ldx_mem(H, R2, R7, 10), jne(R2, socket.htons(0x0800), "drop"),  # keys->n_proto
        ldx_mem(H, R2, R7, 0), jgt(R2, 256, "drop"),  # keys->nhoff, bounded for the verifier
        ldx_mem(W, R3, R6, 76), ldx_mem(W, R4, R6, 80), add64(R3, R2),
        mov64(R5, R3), add64(R5, 24), jgt(R5, R4, "drop"),
        ldx_mem(B, R0, R3, 0), and64(R0, 0x0F), jne(R0, 5, "drop"),
        ldx_mem(B, R0, R3, 9), stx_mem(B, R7, R0, 9),
        st_mem(H, R7, 4, 0x0800),
        ldx_mem(W, R0, R3, 12), stx_mem(W, R7, R0, 16),
        ldx_mem(W, R0, R3, 16), stx_mem(W, R7, R0, 20),
        add64(R2, 20), stx_mem(H, R7, R2, 2),
        ldx_mem(H, R0, R3, 20), stx_mem(H, R7, R0, 12),
        ldx_mem(H, R8, R3, 22), stx_mem(H, R7, R8, 14), be16(R8),
        st_mem(W, R10, -4, 0), mov64(R2, R10), add64(R2, -4), ld_map_fd(R1, seen), call("map_lookup_elem"),
        jeq(R0, 0, "ok"), mov64(R1, 1), atomic_add(DW, R0, R1),
        st_mem(W, R10, -4, 1), mov64(R2, R10), add64(R2, -4), ld_map_fd(R1, seen), call("map_lookup_elem"),
        jeq(R0, 0, "ok"), stx_mem(DW, R0, R8, 0),
        label("ok"), mov64(R0, FlowDissectorVerdict.OK), exit_(),
        label("drop"), mov64(R0, FlowDissectorVerdict.DROP), exit_(),
    ]  # fmt: skip


def udp_frame(src: str, dst: str, sport: int, dport: int) -> bytes:
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 28, 0, 0, 64, 17, 0, ipaddress.ip_address(src).packed,
                     ipaddress.ip_address(dst).packed)  # fmt: skip
    return b"\x02" * 6 + b"\x04" * 6 + b"\x08\x00" + ip + struct.pack("!HHHH", sport, dport, 8, 0)


def test_dissect_crafted_frames_through_test_run():
    with create_array_map(2, value_size=8) as seen, fd.load_flow_dissector_program(ipv4_dissector(seen)) as prog:
        ret, keys = fd.dissect(prog, udp_frame("10.1.2.3", "10.4.5.6", 1111, 2222))
        assert ret == FlowDissectorVerdict.OK
        assert (keys.nhoff, keys.thoff, keys.n_proto, keys.ip_proto) == (14, 34, 0x0800, 17)
        assert (keys.sport, keys.dport) == (1111, 2222)
        assert (str(keys.src), str(keys.dst)) == ("10.1.2.3", "10.4.5.6")
        assert seen[0] == 1 and seen[1] == 2222
        ret, _ = fd.dissect(prog, udp_frame("10.1.2.3", "10.4.5.6", 1, 2)[:30])  # cut short
        assert ret == FlowDissectorVerdict.DROP
        ipv6 = b"\x02" * 6 + b"\x04" * 6 + b"\x86\xdd" + bytes(40)
        assert fd.dissect(prog, ipv6)[0] == FlowDissectorVerdict.DROP
        with pytest.raises(EBPFError, match="14 bytes"):
            fd.dissect(prog, b"short")


def test_flow_dissector_on_a_namespace_sees_real_traffic(veth):
    # A TC program asks for each received packet's flow hash: with none yet, the namespace's dissector runs.
    hashing = tc.load_tc_program([call("get_hash_recalc"), mov64(R0, TcAction.OK), exit_()], name="want_hash")
    seen = create_array_map(2, value_size=8)
    prog = fd.load_flow_dissector_program(ipv4_dissector(seen))
    with seen, prog, hashing, veth.b(), tc.attach_tcx(veth.b_if, hashing, "ingress"):
        assert veth.send_udp("b", 7400, count=3) == 3
        assert seen[0] == 0  # nothing attached yet: the kernel's own dissector ran
        with prog.attach(veth.ns_b):  # the plugin's flow_dissector backend
            assert veth.send_udp("b", 7401, count=3) == 3
            runs = seen[0]
            assert runs >= 3 and seen[1] == 7401
        assert veth.send_udp("b", 7402, count=3) == 3
        assert seen[0] == runs  # detached with the link


def test_attach_flow_dissector_bad_input(netns, progs):
    with create_array_map(1) as m, pytest.raises(AttachError, match="flow_dissector"):
        fd.attach_flow_dissector(m, netns)  # type: ignore[arg-type]
    with fd.load_flow_dissector_program(progs.ret(0)) as prog:
        with pytest.raises(AttachError, match="no network namespace"):
            fd.attach_flow_dissector(prog, "ebpfnet-no-such-ns")
        with fd.attach_flow_dissector(prog, netns), pytest.raises(AttachError, match="already attached"):
            fd.attach_flow_dissector(prog, netns)
