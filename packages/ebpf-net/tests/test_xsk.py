"""AF_XDP in pure Python: frames sent into a veth in a namespace arrive in the UMEM with their
payload, and a reply queued on the TX ring reaches the sender."""

from __future__ import annotations

import os
import struct

import pytest
from ebpf.core.errors import AttachError, EBPFError
from ebpf.net import xdp
from ebpf.net.xsk import Umem, XskSocket

pytestmark = pytest.mark.privileged


def _csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def reply_frame(frame: bytes, payload: bytes) -> bytes:
    """The UDP/IPv4 answer to ``frame``: addresses and ports swapped, checksums computed."""
    dst_mac, src_mac = frame[0:6], frame[6:12]
    src_ip, dst_ip = frame[26:30], frame[30:34]
    sport, dport = struct.unpack("!HH", frame[34:38])
    udp = struct.pack("!HHHH", dport, sport, 8 + len(payload), 0) + payload
    pseudo = dst_ip + src_ip + struct.pack("!BBH", 0, 17, len(udp))
    udp = udp[:6] + struct.pack("!H", _csum(pseudo + udp) or 0xFFFF) + udp[8:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0x4000, 64, 17, 0, dst_ip, src_ip)
    ip = ip[:10] + struct.pack("!H", _csum(ip)) + ip[12:]
    return src_mac + dst_mac + b"\x08\x00" + ip + udp


def test_xsk_receives_payloads_in_python_and_the_reply_reaches_the_sender(veth):
    with veth.b():
        xsk = XskSocket(veth.b_if, 0, umem=Umem(256, 2048), udp_port=9000, mode="auto")
    sender = veth.udp_socket("a", 9001)
    with xsk, sender:
        with veth.b():
            assert xdp.query_xdp(veth.b_if).attached  # the redirect program is in place
        for i in range(3):
            sender.sendto(b"ping %d" % i, (veth.b_ip, 9000))
        got: list[bytes] = []
        while len(got) < 3:
            batch = xsk.recv_batch(timeout=2.0)
            assert batch, "no frame reached the AF_XDP socket"
            got += [bytes(f) for f in batch]
        assert [f[42:] for f in got] == [b"ping 0", b"ping 1", b"ping 2"]
        assert all(f[12:14] == b"\x08\x00" and struct.unpack("!H", f[36:38])[0] == 9000 for f in got)
        assert xsk.send([reply_frame(f, b"pong" + f[46:]) for f in got]) == 3
        assert xsk.flush()
        answers = sorted(sender.recvfrom(100) for _ in range(3))
        assert answers == [(b"pong %d" % i, (veth.b_ip, 9000)) for i in range(3)]
        other = veth.send_udp("b", 9002, count=2)  # other traffic still reaches the stack
        assert other == 2
        assert xsk.stats().rx_dropped == 0
        assert xsk.mode == "copy"
    with veth.b():
        assert not xdp.query_xdp(veth.b_if).attached  # closing removed the program


def test_xsk_bad_input_is_refused_and_leaves_nothing(veth):
    before = set(os.listdir("/proc/self/fd"))
    for bad in (3000, 1000, 8192, 0):
        with pytest.raises(EBPFError, match="power of two"):
            Umem(16, bad)
    with pytest.raises(EBPFError, match="power of two"):
        Umem(100, 2048)
    with pytest.raises(AttachError, match="no network interface"):
        XskSocket("nosuchif0", 0)
    with veth.b():
        with pytest.raises(AttachError, match="no queue 5"):
            XskSocket(veth.b_if, 5)
        with pytest.raises(EBPFError, match="mode"):
            XskSocket(veth.b_if, 0, mode="fast")
        with pytest.raises(AttachError, match="bind AF_XDP socket"):
            XskSocket(veth.b_if, 0, mode="zerocopy")  # veth has no zero-copy AF_XDP
        with XskSocket(veth.b_if, 0, redirect=False) as first:
            with pytest.raises(AttachError, match="EBUSY"):
                XskSocket(veth.b_if, 0, redirect=False)
            assert first.recv_batch() == []
            with pytest.raises(EBPFError, match="does not fit"):
                first.send([b"x" * 4096])
        assert not xdp.query_xdp(veth.b_if).attached
    with pytest.raises(EBPFError, match="closed"):
        first.recv_batch()
    assert set(os.listdir("/proc/self/fd")) == before
