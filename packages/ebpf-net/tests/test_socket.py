"""Socket filters, sk_lookup and netfilter programs, in private network namespaces."""

from __future__ import annotations

import errno
import socket
import time

import pytest
from ebpf.core.asm import R0, R1, R2, R3, R6, R7, W, call, jne, label, ldx_mem, mov64
from ebpf.core.errors import AttachError
from ebpf.core.maps import create_map
from ebpf.core.programs import load_program
from ebpf.core.testing import require
from ebpf.net import features, netfilter, sk_lookup, socket_filter

pytestmark = pytest.mark.privileged


def _recv_all(sock: socket.socket, wait: float = 0.5) -> list[bytes]:
    got: list[bytes] = []
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        try:
            got.append(sock.recv(65536))
        except (BlockingIOError, TimeoutError):
            time.sleep(0.02)
    return got


def test_raw_socket_filter_truncates_packets(veth, progs):
    # Keep 34 bytes (Ethernet + IPv4 header) of every packet.
    with socket_filter.load_socket_filter(progs.ret(34), name="trunc34") as prog:
        with veth.b():
            raw = socket_filter.attach_raw_socket(prog, veth.b_if)
        with raw:
            veth.send_udp("b", 6000, count=3, payload=b"p" * 200)
            packets = [p for p in _recv_all(raw) if p[12:14] == b"\x08\x00"]
    assert len(packets) >= 3
    assert {len(p) for p in packets} == {34}


def test_socket_filter_drops_then_detach_restores(veth, progs):
    with socket_filter.load_socket_filter(progs.ret(0), name="drop_all") as prog:
        rx = veth.udp_socket("a", 6001)
        tx = veth.udp_socket("b")
        with rx, tx:
            link = socket_filter.attach_socket_filter(rx, prog)
            tx.sendto(b"dropped", (veth.a_ip, 6001))
            with pytest.raises(TimeoutError):
                rx.recv(100)
            link.close()
            tx.sendto(b"kept", (veth.a_ip, 6001))
            assert rx.recv(100) == b"kept"
            with prog.attach(rx):  # through the plugin
                tx.sendto(b"dropped", (veth.a_ip, 6001))
                with pytest.raises(TimeoutError):
                    rx.recv(100)


def test_socket_filter_bad_input(progs):
    with socket_filter.load_socket_filter(progs.ret(0)) as prog:
        with pytest.raises(AttachError, match="socket"):
            socket_filter.attach_socket_filter("not a socket", prog)
        with open("/dev/null") as fh, pytest.raises(AttachError, match="not a socket"):
            socket_filter.attach_socket_filter(fh.fileno(), prog)
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.close()
        with pytest.raises(AttachError, match="closed"):
            socket_filter.attach_socket_filter(s, prog)
        with pytest.raises(AttachError, match="nosuchif0"):
            socket_filter.attach_raw_socket(prog, "nosuchif0")
    with load_program(prog_type="xdp", insns=progs.ret(2)) as xdp_prog, socket.socket() as s:
        with pytest.raises(AttachError, match="socket_filter"):
            socket_filter.attach_socket_filter(s, xdp_prog)
        with pytest.raises(AttachError):
            socket_filter.detach_socket_filter(s)  # nothing attached


def _steer_to_map0(progs, sockmap, port: int) -> list:
    # if ctx->local_port == port: sk = sockmap[0]; bpf_sk_assign(ctx, sk, 0); bpf_sk_release(sk)
    return [
        mov64(R6, R1),
        ldx_mem(W, R2, R6, 60), jne(R2, port, "out"),  # bpf_sk_lookup.local_port, host order
        *progs.lookup_slot0(sockmap, "out"),
        mov64(R7, R0), mov64(R1, R6), mov64(R2, R7), mov64(R3, 0), call("sk_assign"),
        mov64(R1, R7), call("sk_release"),
        label("out"), *progs.ret(sk_lookup.SkAction.PASS),
    ]  # fmt: skip


def test_sk_lookup_steers_connection_to_chosen_socket(veth, progs):
    require(features.probe_sk_lookup)
    steer_port = 7777  # nothing listens here: the program hands connections to `target`
    with veth.a():
        target = socket.socket()
        target.bind(("127.0.0.1", 0))
        target.listen(4)
        client = socket.socket()
    sockmap = create_map(map_type="sockmap", key_size=4, value_size=8, max_entries=1, name="steer")
    with sockmap, target, client:
        sockmap.update_bytes(b"\0\0\0\0", target.fileno().to_bytes(8, "little"))
        prog = sk_lookup.load_sk_lookup_program(_steer_to_map0(progs, sockmap, steer_port))
        with prog, sk_lookup.attach_sk_lookup(prog, veth.ns_a):
            client.settimeout(2)
            client.connect(("127.0.0.1", steer_port))
            target.settimeout(2)
            conn, _ = target.accept()
            with conn:
                client.sendall(b"steered")
                assert conn.recv(100) == b"steered"
        with veth.a(), socket.socket() as again:
            assert again.connect_ex(("127.0.0.1", steer_port)) == errno.ECONNREFUSED  # link closed


def test_sk_lookup_bad_input(progs):
    with sk_lookup.load_sk_lookup_program(progs.ret(1)) as prog:
        with pytest.raises(AttachError, match="no-such-netns"):
            sk_lookup.attach_sk_lookup(prog, "no-such-netns")
        with pytest.raises(AttachError, match="not a network namespace"):
            sk_lookup.attach_sk_lookup(prog, "/proc/self/ns/uts")
        with pytest.raises(AttachError):
            sk_lookup.attach_sk_lookup(prog, -3)
    with load_program(prog_type="xdp", insns=progs.ret(2)) as xdp_prog, pytest.raises(AttachError, match="sk_lookup"):
        sk_lookup.attach_sk_lookup(xdp_prog)


def test_netfilter_link_drops_local_in_of_one_namespace(veth, progs, counter):
    require(features.probe_netfilter_link)
    with netfilter.load_netfilter_program(progs.counting(counter, netfilter.NfVerdict.DROP)) as prog:
        with veth.a():
            link = netfilter.attach_netfilter(prog, "ipv4", "local_in", priority=-100)
        with link:
            assert link.info().type.name == "NETFILTER"
            assert veth.send_udp("a", 6002, count=3) == 0
            assert counter[0] >= 3
        assert veth.send_udp("a", 6002, count=3) == 3
        with veth.a(), prog.attach(None, pf="ipv4", hook="local_in", priority=10):
            assert veth.send_udp("a", 6002, count=1) == 0


def test_netfilter_bad_input(progs):
    require(features.probe_netfilter_link)
    with netfilter.load_netfilter_program(progs.ret(1)) as prog:
        with pytest.raises(AttachError, match="protocol family"):
            netfilter.attach_netfilter(prog, pf="ipx")
        with pytest.raises(AttachError, match="hook"):
            netfilter.attach_netfilter(prog, hook="sideways")
        with pytest.raises(AttachError, match="priority"):
            netfilter.attach_netfilter(prog, priority=-(2**31))
        with pytest.raises(AttachError, match="no target"):
            prog.attach("eth0")
