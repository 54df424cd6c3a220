"""Socket redirection on loopback in a private namespace: sock_ops fills a sockhash, SK_MSG
redirects one connection's writes into another's receive queue, a stream verdict drops by prefix."""

from __future__ import annotations

import os
import select
import socket
import time

import pytest
from ebpf.core.asm import (
    DW,
    R0,
    R1,
    R2,
    R3,
    R4,
    R6,
    R10,
    W,
    add64,
    atomic_add,
    call,
    exit_,
    jeq,
    jne,
    label,
    ld_map_fd,
    ldx_mem,
    mov64,
    stx_mem,
)  # fmt: skip
from ebpf.core.errors import AttachError, EBPFError
from ebpf.core.features import have_link_type
from ebpf.core.maps import create_array_map, create_hash_map
from ebpf.core.testing import require
from ebpf.core.types import LinkType
from ebpf.net import cgroup, sockmap
from ebpf.net.sockmap import BPF_F_INGRESS, SkAction, SockOp

pytestmark = pytest.mark.privileged

_SOCK_OPS_LOCAL_PORT = 68  # struct bpf_sock_ops
_SK_MSG_LOCAL_PORT = 64  # struct sk_msg_md


def sock_ops_fill(socks):
    """Add every established TCP socket to ``socks`` keyed by its local port (host order)."""
    return [
        mov64(R6, R1),
        ldx_mem(W, R2, R6, 0),  # op
        jeq(R2, SockOp.ACTIVE_ESTABLISHED_CB, "add"),
        jeq(R2, SockOp.PASSIVE_ESTABLISHED_CB, "add"),
        mov64(R0, 1), exit_(),
        label("add"),
        ldx_mem(W, R2, R6, _SOCK_OPS_LOCAL_PORT), stx_mem(W, R10, R2, -4),
        mov64(R1, R6), ld_map_fd(R2, socks), mov64(R3, R10), add64(R3, -4), mov64(R4, 0),
        call("sock_hash_update"),
        mov64(R0, 1), exit_(),
    ]  # fmt: skip


def msg_redirect(routes, socks):
    """sendmsg on a socket whose local port is in ``routes`` goes to the ingress of socks[routes[port]]."""
    return [
        mov64(R6, R1),
        ldx_mem(W, R2, R6, _SK_MSG_LOCAL_PORT), stx_mem(W, R10, R2, -4),
        ld_map_fd(R1, routes), mov64(R2, R10), add64(R2, -4), call("map_lookup_elem"),
        jeq(R0, 0, "pass"),
        ldx_mem(W, R2, R0, 0), stx_mem(W, R10, R2, -8),
        mov64(R1, R6), ld_map_fd(R2, socks), mov64(R3, R10), add64(R3, -8), mov64(R4, BPF_F_INGRESS),
        call("msg_redirect_hash"),
        exit_(),
        label("pass"), mov64(R0, SkAction.PASS), exit_(),
    ]  # fmt: skip


def verdict_drop_prefix(prefix: bytes, drops):
    """Stream verdict: drop a received skb whose payload starts with the 4-byte ``prefix``; count drops."""
    return [
        mov64(R2, 0), mov64(R3, R10), add64(R3, -8), mov64(R4, 4),
        call("skb_load_bytes"),
        jne(R0, 0, "pass"),
        ldx_mem(W, R2, R10, -8),
        jne(R2, int.from_bytes(prefix, "little"), "pass"),
        mov64(R2, 0), stx_mem(W, R10, R2, -12),
        ld_map_fd(R1, drops), mov64(R2, R10), add64(R2, -12), call("map_lookup_elem"),
        jeq(R0, 0, "drop"),
        mov64(R1, 1), atomic_add(DW, R0, R1),
        label("drop"), mov64(R0, SkAction.DROP), exit_(),
        label("pass"), mov64(R0, SkAction.PASS), exit_(),
    ]  # fmt: skip


def _connect_pair(listener: socket.socket) -> tuple[socket.socket, socket.socket]:
    client = socket.create_connection(listener.getsockname(), timeout=2)
    client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    server, _ = listener.accept()
    server.settimeout(2)
    return client, server


def _wait_for(cond, timeout: float = 2.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.01)
    return cond()


def test_sock_ops_fills_sockhash_and_sk_msg_proxies_between_connections(netns, cgroup_dir, enter):
    socks = sockmap.create_sockhash(16, name="proxy_socks")
    routes = create_hash_map(16, name="proxy_routes")
    fill = sockmap.load_sock_ops_program(sock_ops_fill(socks), name="fill_socks")
    proxy = sockmap.load_sk_msg_program(msg_redirect(routes, socks), name="proxy")
    with socks, routes, fill, proxy:
        with cgroup.attach_cgroup_program(cgroup_dir, fill), sockmap.attach_sk_msg(proxy, socks):
            with enter.cgroup(cgroup_dir), enter.netns(netns):
                l1 = socket.create_server(("127.0.0.1", 0))
                l2 = socket.create_server(("127.0.0.1", 0))
                c1, s1 = _connect_pair(l1)
                c2, s2 = _connect_pair(l2)
            conns = (l1, l2, c1, s1, c2, s2)
            try:
                ports = {name: sock.getsockname()[1] for name, sock in zip(("c1", "s1", "c2", "s2"), conns[2:])}
                # sock_ops put all four established sockets in, keyed by local port; never the listeners.
                assert _wait_for(lambda: len(socks) == 4)
                assert socks[ports["s2"]] == sockmap.socket_cookie(s2)
                assert socks[ports["c1"]] == sockmap.socket_cookie(c1)
                routes[ports["c1"]] = ports["s2"]  # what c1 writes lands in s2's receive queue
                c1.sendall(b"through the proxy")
                assert s2.recv(100) == b"through the proxy"
                s1.setblocking(False)
                with pytest.raises(BlockingIOError):
                    s1.recv(100)  # the first connection never carried it
                c2.sendall(b"direct")  # no route: the normal path
                assert s2.recv(100) == b"direct"
            finally:
                for sock in conns:
                    sock.close()
        assert _wait_for(lambda: len(socks) == 0)  # closed sockets leave the map by themselves


def test_stream_verdict_drops_messages_with_a_prefix(netns, enter):
    guarded = sockmap.create_sockmap(4, name="guarded")
    drops = create_array_map(1, value_size=8, name="drops")
    verdict = sockmap.load_sk_skb_program(verdict_drop_prefix(b"DROP", drops), kind="stream_verdict")
    with guarded, drops, verdict, enter.netns(netns):
        listener = socket.create_server(("127.0.0.1", 0))
        client, server = _connect_pair(listener)
        with listener, client, server, sockmap.attach_sk_skb(verdict, guarded):
            guarded[0] = server
            assert guarded[0] == sockmap.socket_cookie(server)
            client.sendall(b"DROP this one")
            assert _wait_for(lambda: drops[0] == 1)
            client.sendall(b"keep this one")
            assert server.recv(100) == b"keep this one"
            assert drops[0] == 1


def test_sockmap_bad_input_is_refused_before_the_kernel(tmp_path):
    with sockmap.create_sockmap(2) as m:
        with pytest.raises(EBPFError, match="socket"):
            m[0] = "not a socket"
        with open(tmp_path / "f", "w") as fh, pytest.raises(EBPFError, match="not one"):
            m[0] = fh
        closed = socket.socket()
        closed.close()
        with pytest.raises(EBPFError, match="open socket"):
            m[0] = closed
        r, w = os.pipe()
        try:
            with pytest.raises(EBPFError, match="not one"):
                m[1] = r
        finally:
            os.close(r)
            os.close(w)
        assert len(m) == 0
    with pytest.raises(EBPFError, match="max_entries"):
        sockmap.create_sockhash(0)
    with create_array_map(1) as arr, sockmap.load_sk_msg_program([mov64(R0, 1), exit_()]) as prog:
        with pytest.raises(AttachError, match="sockmap or sockhash"):
            sockmap.attach_sk_msg(prog, arr)
        with pytest.raises(AttachError, match="sk_skb"):
            sockmap.attach_sk_skb(prog, arr)
        with sockmap.create_sockmap(1) as m, pytest.raises(AttachError, match="method"):
            sockmap.attach_sk_msg(prog, m, method="bogus")
    with pytest.raises(AttachError, match="kind"):
        sockmap.load_sk_skb_program([mov64(R0, 1), exit_()], kind="parser")


def test_sk_msg_through_a_bpf_link_and_tcp_listener_in_a_sockmap(netns, enter):
    with sockmap.create_sockmap(2) as m, sockmap.load_sk_msg_program([mov64(R0, 1), exit_()]) as prog:
        with enter.netns(netns):
            listener = socket.create_server(("127.0.0.1", 0))
        with listener:
            m[0] = listener  # listening TCP sockets are accepted in a sockmap
            require(have_link_type, LinkType.SOCKMAP)
            with sockmap.attach_sk_msg(prog, m, method="link") as link:
                assert link.info().prog_id == prog.info().id
            del m[0]
        assert select.select([], [], [], 0) == ([], [], [])


def test_stream_parser_and_verdict_splice_one_connection_into_another(netns, enter):
    """SK_SKB proxy: what s1 receives is sent out of s2 (to c2) by the kernel, never read by Python."""
    socks = sockmap.create_sockmap(2, name="splice")
    parser = sockmap.load_sk_skb_program([ldx_mem(W, R0, R1, 0), exit_()], kind="stream_parser")  # skb->len
    verdict = sockmap.load_sk_skb_program(
        [ld_map_fd(R2, socks), mov64(R3, 1), mov64(R4, 0), call("sk_redirect_map"), exit_()], kind="stream_verdict"
    )
    with socks, parser, verdict, enter.netns(netns):
        l1, l2 = socket.create_server(("127.0.0.1", 0)), socket.create_server(("127.0.0.1", 0))
        c1, s1 = _connect_pair(l1)
        c2, s2 = _connect_pair(l2)
        with l1, l2, c1, s1, c2, s2, parser.attach(socks), verdict.attach(socks):  # through the plugin
            socks[0], socks[1] = s1, s2
            c1.sendall(b"spliced by the kernel")
            assert c2.recv(100) == b"spliced by the kernel"
