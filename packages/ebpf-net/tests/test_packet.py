"""The packet DSL: programs built with it run on crafted packets (test_run) and on real traffic
(a UDP port rewrite received on the new port, a port-based load balancer over two backends)."""

from __future__ import annotations

import ipaddress
import select
import socket
import struct
import time

import pytest
from ebpf.core.asm import R1, R2, R10, add64, and64, label
from ebpf.net import socket_filter, tc, xdp
from ebpf.net.packet import Packet, PacketError
from ebpf.net.tc import TcAction
from ebpf.net.xdp import XdpAction

pytestmark = pytest.mark.privileged

MAC_A, MAC_B = bytes.fromhex("020000000001"), bytes.fromhex("020000000002")


def csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def l4_sum_ok(src: bytes, dst: bytes, proto: int, seg: bytes) -> bool:
    pseudo = src + dst + (struct.pack("!BBH", 0, proto, len(seg)) if len(src) == 4 else
                          struct.pack("!IxxxB", len(seg), proto))  # fmt: skip
    return csum(pseudo + seg) == 0


def ipv4_udp(src: str, dst: str, sport: int, dport: int, payload: bytes, vlan: int | None = None,
             options: bytes = b"") -> bytes:  # fmt: skip
    s, d = ipaddress.ip_address(src).packed, ipaddress.ip_address(dst).packed
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    udp = udp[:6] + struct.pack("!H", csum(s + d + struct.pack("!BBH", 0, 17, len(udp)) + udp) or 0xFFFF) + udp[8:]
    ihl = 5 + len(options) // 4
    hdr = struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, 0, ihl * 4 + len(udp), 1, 0x4000, 64, 17, 0, s, d) + options
    hdr = hdr[:10] + struct.pack("!H", csum(hdr)) + hdr[12:]
    eth = MAC_B + MAC_A + (struct.pack("!HH", 0x8100, vlan) if vlan is not None else b"") + b"\x08\x00"
    return eth + hdr + udp


def ipv6_tcp(src: str, dst: str, sport: int, dport: int) -> bytes:
    s, d = ipaddress.ip_address(src).packed, ipaddress.ip_address(dst).packed
    tcp = struct.pack("!HHIIHHHH", sport, dport, 1, 0, 0x5002, 1024, 0, 0)
    pseudo = s + d + struct.pack("!IxxxB", len(tcp), 6)
    tcp = tcp[:16] + struct.pack("!H", csum(pseudo + tcp)) + tcp[18:]
    return MAC_B + MAC_A + b"\x86\xdd" + struct.pack("!IHBB16s16s", 6 << 28, len(tcp), 6, 64, s, d) + tcp


def parse_ipv4_udp(frame: bytes, l3: int = 14) -> tuple[int, int, bool, bool]:
    """(sport, dport, IPv4 header checksum ok, UDP checksum ok)."""
    ihl = (frame[l3] & 0xF) * 4
    ip = frame[l3 : l3 + ihl]
    udp = frame[l3 + ihl :]
    sport, dport = struct.unpack("!HH", udp[:4])
    return sport, dport, csum(ip) == 0, l4_sum_ok(ip[12:16], ip[16:20], 17, udp)


def dport_rewrite(ctx: str, old: int, new: int) -> list:
    p = Packet(ctx)
    udp = p.ethernet().ipv4().udp()
    p.jump_if(udp.dport, "!=", old, p.miss)
    p.set(udp.dport, new)
    ok = XdpAction.PASS if ctx == "xdp" else TcAction.OK
    return p.program(on_miss=ok, verdict=ok)


def _load(ctx: str, insns: list, name: str = "dsl"):
    if ctx == "xdp":
        return xdp.load_xdp_program(insns, name=name)
    return tc.load_tc_program(insns, name=name)


@pytest.mark.parametrize("ctx", ["xdp", "tc"])
def test_dport_rewrite_keeps_checksums_valid_on_crafted_packets(ctx):
    with _load(ctx, dport_rewrite(ctx, 5000, 6000)) as prog:
        for frame in (ipv4_udp("10.0.0.1", "10.0.0.2", 1234, 5000, b"hello"),
                      ipv4_udp("10.0.0.1", "10.0.0.2", 1234, 5000, b"odd!!", options=b"\x01\x01\x01\x00")):  # fmt: skip
            out = prog.test_run(frame).data_out
            assert parse_ipv4_udp(out) == (1234, 6000, True, True)
        other = ipv4_udp("10.0.0.1", "10.0.0.2", 1234, 5001, b"x")
        assert prog.test_run(other).data_out == other  # not ours: untouched
        assert prog.test_run(b"\x00" * 20).data_out == b"\x00" * 20  # short: the miss path


@pytest.mark.parametrize("ctx", ["xdp", "tc"])
def test_nat_rewrites_address_and_port_with_both_checksums(ctx):
    p = Packet(ctx)
    p.ethernet().ipv4().udp()
    p.nat(daddr="192.168.7.9", dport=53, saddr="172.16.0.1", sport=40000)
    with _load(ctx, p.program(on_miss=1, verdict=2)) as prog:
        res = prog.test_run(ipv4_udp("10.0.0.1", "10.0.0.2", 1234, 5000, b"nat me please"))
    assert res.retval == 2
    out = res.data_out
    assert out[26:34] == ipaddress.ip_address("172.16.0.1").packed + ipaddress.ip_address("192.168.7.9").packed
    assert parse_ipv4_udp(out) == (40000, 53, True, True)


@pytest.mark.parametrize("ctx", ["xdp", "tc"])
def test_byte_field_and_vlan_and_load(ctx):
    p = Packet(R1, kind=ctx)  # the context register form
    ip = p.ethernet().vlan().ipv4()
    p.jump_if(ip.ttl, "<", 2, p.miss)
    p.load(R2, ip.ttl).emit(add64(R2, -1)).set(ip.ttl, R2)
    with _load(ctx, p.program(on_miss=1, verdict=2)) as prog:
        frame = ipv4_udp("10.0.0.1", "10.0.0.2", 1, 2, b"v", vlan=100)
        res = prog.test_run(frame)
        assert res.retval == 2
        assert res.data_out[18 + 8] == 63
        assert csum(res.data_out[18:38]) == 0
        assert prog.test_run(ipv4_udp("10.0.0.1", "10.0.0.2", 1, 2, b"v")).retval == 1  # no tag: miss


def test_ipv6_tcp_port_rewrite_fixes_the_tcp_checksum():
    p = Packet("xdp")
    ip6 = p.ethernet().ipv6()
    tcp = ip6.tcp()
    p.jump_if(ip6.daddr.word(3), "==", 0x00000002, "mine")
    p.ret(XdpAction.DROP)
    p.emit(label("mine"))
    p.set(tcp.dport, 8080)
    with xdp.load_xdp_program(p.program(on_miss=XdpAction.ABORTED, verdict=XdpAction.PASS)) as prog:
        out = prog.test_run(ipv6_tcp("fd00::1", "fd00::2", 4000, 80))
        assert out.retval == XdpAction.PASS
        seg = out.data_out[54:]
        assert struct.unpack("!H", seg[2:4])[0] == 8080
        assert l4_sum_ok(out.data_out[22:38], out.data_out[38:54], 6, seg)
        assert prog.test_run(ipv6_tcp("fd00::1", "fd00::3", 4000, 80)).retval == XdpAction.DROP
        assert prog.test_run(ipv4_udp("10.0.0.1", "10.0.0.2", 1, 2, b"")).retval == XdpAction.ABORTED


@pytest.mark.parametrize("ctx", ["xdp", "tc"])
def test_set_mac_and_ipv6_address(ctx):
    p = Packet(ctx)
    eth = p.ethernet()
    ip6 = eth.ipv6()
    ip6.tcp()
    p.set(eth.dst, "02:aa:bb:cc:dd:ee").set(eth.src, bytes.fromhex("02ffeeddccbb"))
    p.set(ip6.daddr, "fd00::beef:7")
    with _load(ctx, p.program(on_miss=1, verdict=2)) as prog:
        out = prog.test_run(ipv6_tcp("fd00::1", "fd00::2", 4000, 80))
    assert out.retval == 2
    frame = out.data_out
    assert frame[:12] == bytes.fromhex("02aabbccddee02ffeeddccbb")
    assert frame[38:54] == ipaddress.ip_address("fd00::beef:7").packed
    assert l4_sum_ok(frame[22:38], frame[38:54], 6, frame[54:])  # the pseudo header moved with it


def test_dsl_misuse_is_a_clear_error():
    p = Packet("xdp")
    eth = p.ethernet()
    ip = eth.ipv4()
    with pytest.raises(PacketError, match="IPv4 header has no field 'dport'"):
        _ = ip.dport
    with pytest.raises(PacketError, match="follows an IPv4 or IPv6"):
        eth.udp()
    with pytest.raises(PacketError, match="6 bytes"):
        p.load(R2, eth.dst)
    with pytest.raises(PacketError, match="MAC"):
        p.set(eth.dst, "zz:00")
    with pytest.raises(PacketError, match="expected an int"):
        p.set(ip.ttl, 300)
    with pytest.raises(PacketError, match="does not appear"):
        p.set(ip.daddr, "not an address")
    with pytest.raises(PacketError, match="comparison"):
        p.jump_if(ip.ttl, "=~", 1, p.miss)
    with pytest.raises(PacketError, match="nat"):
        Packet("tc").nat(dport=1)
    with pytest.raises(PacketError, match="context"):
        Packet("socket")
    with pytest.raises(PacketError, match="context register"):
        Packet(R10)
    with pytest.raises(PacketError, match="kind="):
        Packet("xdp", kind="tc")
    with pytest.raises(PacketError, match="this Packet"):
        Packet("xdp").load(R2, ip.ttl)
    with pytest.raises(PacketError, match="swap"):
        p.swap(ip.ttl, ip.daddr)


def _raw_udp_sender(veth, sport: int, dport: int, payload: bytes) -> None:
    """Send from A with a UDP checksum computed here (no offload: the receiver checks it for real)."""
    s, d = socket.inet_aton(veth.a_ip), socket.inet_aton(veth.b_ip)
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    udp = udp[:6] + struct.pack("!H", csum(s + d + struct.pack("!BBH", 0, 17, len(udp)) + udp) or 0xFFFF) + udp[8:]
    with veth.a():
        raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_UDP)
    with raw:
        raw.sendto(udp, (veth.b_ip, 0))


def _captured_udp(tap: socket.socket, dport: int, deadline: float) -> bytes | None:
    while time.monotonic() < deadline:
        select.select([tap], [], [], max(0.0, deadline - time.monotonic()))
        try:
            frame = tap.recv(2048)
        except BlockingIOError:
            continue
        if frame[12:14] == b"\x08\x00" and frame[23] == 17 and struct.unpack("!H", frame[36:38])[0] == dport:
            return frame
    return None


@pytest.mark.parametrize("ctx", ["xdp", "tc"])
def test_udp_dport_rewrite_is_received_on_the_new_port_with_a_valid_checksum(veth, ctx):
    rx = veth.udp_socket("b", 6100)
    with veth.b():
        tap = socket_filter.open_raw_socket(veth.b_if)
    with rx, tap, _load(ctx, dport_rewrite(ctx, 5100, 6100), name="to6100") as prog:
        if ctx == "xdp":  # on B's way in
            with veth.b():
                link = xdp.attach_xdp(veth.b_if, prog, mode="skb")
        else:  # on A's way out (a tap on B then sees the rewritten frame)
            with veth.a():
                link = tc.attach_tcx(veth.a_if, prog, direction="egress")
        with link:
            _raw_udp_sender(veth, 4321, 5100, b"rewritten on the way")
            data, peer = rx.recvfrom(100)
            frame = _captured_udp(tap, 6100, time.monotonic() + 2)
    assert data == b"rewritten on the way" and peer == (veth.a_ip, 4321)
    assert frame is not None
    assert parse_ipv4_udp(frame) == (4321, 6100, True, True)


def test_port_based_load_balancer_splits_connections_over_two_backends(veth):
    # B's ingress: TCP to the service port 8000 goes to backend 8001 + (source port & 1).
    p = Packet("tc")
    tcp = p.ethernet().ipv4().tcp()
    p.jump_if(tcp.dport, "!=", 8000, p.miss)
    p.load(R2, tcp.sport).emit(and64(R2, 1), add64(R2, 8001))
    p.set(tcp.dport, R2)
    to_backend = p.program(on_miss=TcAction.OK, verdict=TcAction.OK)
    # B's egress: replies from a backend leave as from the service port.
    q = Packet("tc")
    tcp = q.ethernet().ipv4().tcp()
    q.jump_if(tcp.sport, "<", 8001, q.miss).jump_if(tcp.sport, ">", 8002, q.miss)
    q.set(tcp.sport, 8000)
    from_backend = q.program(on_miss=TcAction.OK, verdict=TcAction.OK)
    with veth.b():
        backends = {port: socket.create_server((veth.b_ip, port)) for port in (8001, 8002)}
    ingress = tc.load_tc_program(to_backend, name="lb_in")
    egress = tc.load_tc_program(from_backend, name="lb_out")
    clients: list[socket.socket] = []
    served = {8001: 0, 8002: 0}
    try:
        with ingress, egress, veth.b():
            links = [tc.attach_tcx(veth.b_if, ingress, "ingress"), tc.attach_tcx(veth.b_if, egress, "egress")]
        with links[0], links[1]:
            for i in range(6):
                with veth.a():
                    c = socket.socket()
                c.settimeout(2)
                clients.append(c)
                c.bind((veth.a_ip, 41000 + i))
                c.connect((veth.b_ip, 8000))  # the handshake itself needs both rewrites
                assert c.getpeername() == (veth.b_ip, 8000)
                ready, _, _ = select.select(list(backends.values()), [], [], 2)
                assert len(ready) == 1
                port = ready[0].getsockname()[1]
                conn, peer = ready[0].accept()
                with conn:
                    assert peer == (veth.a_ip, 41000 + i)
                    conn.sendall(b"backend %d" % port)
                    assert c.recv(100) == b"backend %d" % port
                served[port] += 1
                assert port == 8001 + (i & 1)
    finally:
        for sock in [*clients, *backends.values()]:
            sock.close()
    assert served == {8001: 3, 8002: 3}
