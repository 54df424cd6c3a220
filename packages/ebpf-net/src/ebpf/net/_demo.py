"""ebpf-net's parts of ``ebpf demo``: a private two-namespace network with XDP and TC programs,
and a cgroup program that makes connect() fail with EPERM.

Nothing here touches a real interface: the network step builds two namespaces joined by a
veth pair (``ip`` from iproute2 makes them) and every object is handed to the demo context's
cleanups (filters, links, qdisc, namespaces, cgroup), which run even on Ctrl-C.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import shutil
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

from ebpf.core import asm
from ebpf.core.errors import EBPFError, NotSupportedError

__all__ = ["network_step", "cgroup_step", "xdp_counter_insns", "tc_drop_insns", "connect_block_insns", "Netns",
           "VethPair"]

R0, R1, R2, R3, R4, R5, R6, R10 = asm.R0, asm.R1, asm.R2, asm.R3, asm.R4, asm.R5, asm.R6, asm.R10
XDP_PASS, TC_ACT_OK, TC_ACT_SHOT = 2, 0, 2
NON_IPV4 = 255  # the counter slot for frames that are not IPv4 (IP protocol 255 is reserved)
PROTOCOLS = {1: "icmp", 6: "tcp", 17: "udp", NON_IPV4: "not ipv4"}
ALLOWED_PORT, BLOCKED_PORT, TCP_PORT = 7777, 9999, 8080
_CLONE_NEWNET = 0x40000000
_ETH_P_IP_LE = 0x0008  # htons(ETH_P_IP) as a little-endian load sees it


def _be16(port: int) -> int:
    """A port in network byte order as a little-endian u16 load sees it."""
    return ((port & 0xFF) << 8) | (port >> 8)


def xdp_counter_insns(counts: Any) -> list[Any]:
    """XDP: ``counts[IPv4 protocol or 255] += 1`` for every frame, then XDP_PASS.

    :param counts: an array map (u32 key, u64 value, 256 entries).
    :returns: the instructions.
    """
    return [
        asm.ldx_mem("w", R2, R1, 0), asm.ldx_mem("w", R3, R1, 4),  # data, data_end
        asm.mov64(R4, R2), asm.add64(R4, 14 + 20), asm.jgt(R4, R3, "other"),  # Ethernet + IPv4 header present?
        asm.ldx_mem("h", R5, R2, 12), asm.jne(R5, _ETH_P_IP_LE, "other"),
        asm.ldx_mem("b", R5, R2, 14 + 9), asm.stx_mem("w", R10, R5, -4), asm.jmp_a("count"),
        asm.label("other"), asm.st_mem("w", R10, -4, NON_IPV4),
        asm.label("count"),
        asm.ld_map_fd(R1, counts), asm.mov64(R2, R10), asm.add64(R2, -4), asm.call("map_lookup_elem"),
        asm.jeq(R0, 0, "out"), asm.mov64(R1, 1), asm.atomic_add("dw", R0, R1, 0),
        asm.label("out"), asm.mov64(R0, XDP_PASS), asm.exit_insn(),
    ]


def tc_drop_insns(drops: Any, port: int) -> list[Any]:
    """TC (direct action): drop IPv4 UDP datagrams to ``port`` and count them in ``drops[0]``.

    :param drops: an array map (u32 key, u64 value, 1 entry).
    :param port: the UDP destination port to drop.
    :returns: the instructions.
    """
    return [
        asm.ldx_mem("w", R2, R1, 76), asm.ldx_mem("w", R3, R1, 80),  # __sk_buff data, data_end
        asm.mov64(R4, R2), asm.add64(R4, 14 + 20 + 4), asm.jgt(R4, R3, "pass"),
        asm.ldx_mem("h", R5, R2, 12), asm.jne(R5, _ETH_P_IP_LE, "pass"),
        asm.ldx_mem("b", R5, R2, 14), asm.jne(R5, 0x45, "pass"),  # IPv4 without options
        asm.ldx_mem("b", R5, R2, 14 + 9), asm.jne(R5, socket.IPPROTO_UDP, "pass"),
        asm.ldx_mem("h", R5, R2, 14 + 20 + 2), asm.jne(R5, _be16(port), "pass"),
        asm.st_mem("w", R10, -4, 0),
        asm.ld_map_fd(R1, drops), asm.mov64(R2, R10), asm.add64(R2, -4), asm.call("map_lookup_elem"),
        asm.jeq(R0, 0, "shot"), asm.mov64(R1, 1), asm.atomic_add("dw", R0, R1, 0),
        asm.label("shot"), asm.mov64(R0, TC_ACT_SHOT), asm.exit_insn(),
        asm.label("pass"), asm.mov64(R0, TC_ACT_OK), asm.exit_insn(),
    ]


def connect_block_insns(port: int) -> list[Any]:
    """cgroup/connect4: refuse (EPERM) connects to ``port``, allow the rest.

    :returns: the instructions.
    """
    return [
        asm.ldx_mem("w", R2, R1, 24),  # struct bpf_sock_addr.user_port, network byte order
        asm.jne(R2, _be16(port), "allow"),
        asm.mov64(R0, 0), asm.exit_insn(),
        asm.label("allow"), asm.mov64(R0, 1), asm.exit_insn(),
    ]


# -- namespaces -------------------------------------------------------------------------------


class Netns:
    """A named network namespace made with ``ip netns add`` (``enter()`` switches this thread into it)."""

    _libc = ctypes.CDLL(None, use_errno=True)

    def __init__(self, name: str) -> None:
        """Create the namespace with its loopback up.

        :raises EBPFError: when ``ip`` is missing or fails.
        """
        self.name = name
        _ip("netns", "add", name)
        try:
            _ip("-n", name, "link", "set", "lo", "up")
        except BaseException:
            self.delete()
            raise

    @contextlib.contextmanager
    def enter(self) -> Iterator[None]:
        """Run the block with this thread inside the namespace (sockets made there stay there)."""
        back = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        try:
            target = os.open(f"/run/netns/{self.name}", os.O_RDONLY)
            try:
                if self._libc.setns(target, _CLONE_NEWNET) != 0:
                    raise EBPFError(f"setns({self.name}): {os.strerror(ctypes.get_errno())}")
                try:
                    yield
                finally:
                    self._libc.setns(back, _CLONE_NEWNET)
            finally:
                os.close(target)
        finally:
            os.close(back)

    def delete(self) -> None:
        """Remove the namespace (and the veth end inside it)."""
        _ip("netns", "del", self.name, check=False)


def _ip(*args: str, check: bool = True) -> None:
    if shutil.which("ip") is None:
        raise NotSupportedError("the network demo needs the `ip` command (iproute2) to make namespaces")
    done = subprocess.run(["ip", *args], capture_output=True, text=True)
    if check and done.returncode != 0:
        raise EBPFError(f"ip {' '.join(args)}: {done.stderr.strip()}")


class VethPair:
    """A veth pair joining ``a`` and ``b`` (10.231.7.1 and 10.231.7.2, static neighbours: no ARP)."""

    a_ip, b_ip = "10.231.7.1", "10.231.7.2"

    def __init__(self, a: Netns, b: Netns, tag: str) -> None:
        """Create and configure the pair (it disappears with the namespaces)."""
        self.a, self.b = a, b
        self.a_if, self.b_if = f"edemo{tag}a"[:15], f"edemo{tag}b"[:15]
        _ip("link", "add", self.a_if, "netns", a.name, "type", "veth", "peer", "name", self.b_if, "netns", b.name)
        macs = {a.name: "02:00:00:e8:0f:01", b.name: "02:00:00:e8:0f:02"}
        sides = ((a, self.a_if, self.a_ip, self.b_ip, b), (b, self.b_if, self.b_ip, self.a_ip, a))
        for ns, ifname, ip, peer_ip, peer in sides:
            _ip("-n", ns.name, "link", "set", ifname, "address", macs[ns.name])
            _ip("-n", ns.name, "addr", "add", f"{ip}/24", "dev", ifname)
            _ip("-n", ns.name, "link", "set", ifname, "up")
            _ip("-n", ns.name, "neigh", "replace", peer_ip, "lladdr", macs[peer.name], "dev", ifname, "nud",
                "permanent")


# -- traffic ----------------------------------------------------------------------------------


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def _ping(veth: VethPair, count: int) -> int:
    """ICMP echo requests from A to B over a raw socket; returns how many replies came back."""
    with veth.a.enter():
        s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    s.settimeout(0.5)
    replies = 0
    with s:
        for seq in range(count):
            header = struct.pack("!BBHHH", 8, 0, 0, 0x4242, seq)
            payload = b"ebpf demo"
            packet = struct.pack("!BBHHH", 8, 0, _checksum(header + payload), 0x4242, seq) + payload
            s.sendto(packet, (veth.b_ip, 0))
            with contextlib.suppress(OSError):
                reply = s.recv(1024)
                replies += reply[20] == 0  # echo reply
    return replies


def _udp(veth: VethPair, port: int, count: int) -> int:
    """``count`` datagrams from A to B's ``port``; returns how many arrived."""
    with veth.b.enter():
        rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with veth.a.enter():
        tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with rx, tx:
        rx.bind((veth.b_ip, port))
        rx.settimeout(0.3)
        for _ in range(count):
            tx.sendto(b"x" * 32, (veth.b_ip, port))
        got = 0
        with contextlib.suppress(OSError):
            while got < count:
                rx.recv(2048)
                got += 1
    return got


def _tcp(veth: VethPair) -> bool:
    """One TCP connection from A to B carrying a few bytes; True when they arrived."""
    with veth.b.enter():
        server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    with veth.a.enter():
        client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    with server, client:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind((veth.b_ip, TCP_PORT))
        server.listen(1)
        server.settimeout(2)
        client.settimeout(2)
        client.connect((veth.b_ip, TCP_PORT))
        conn, _ = server.accept()
        with conn:
            client.sendall(b"hello over veth")
            conn.settimeout(2)
            data = conn.recv(64)
        client.close()
    return data == b"hello over veth"


# -- the steps --------------------------------------------------------------------------------


def network_step(ctx: Any) -> None:
    """Two namespaces + veth, an XDP counter and a TC drop filter on B, traffic from A.

    :param ctx: the :class:`ebpf.core.demo.DemoContext`.
    :raises AssertionError: when the counts do not match the traffic.
    """
    from ebpf.core.maps import create_map
    from ebpf.net.tc import attach_tc_filter, load_tc_program, remove_clsact_qdisc
    from ebpf.net.xdp import attach_xdp, load_xdp_program

    tag = str(os.getpid())
    a = Netns(f"ebpf-demo-a-{tag}")
    ctx.defer(a.delete, f"delete netns {a.name}")
    b = Netns(f"ebpf-demo-b-{tag}")
    ctx.defer(b.delete, f"delete netns {b.name}")
    veth = VethPair(a, b, tag)
    ctx.print(f"namespaces {a.name} ({veth.a_ip}) and {b.name} ({veth.b_ip}) joined by veth "
              f"{veth.a_if} <-> {veth.b_if}")

    counts = create_map(map_type="array", key_size=4, value_size=8, max_entries=256, name="demo_proto_cnt")
    ctx.defer(counts.close, "close map demo_proto_cnt")
    drops = create_map(map_type="array", key_size=4, value_size=8, max_entries=1, name="demo_drops")
    ctx.defer(drops.close, "close map demo_drops")
    xdp = ctx.track(load_xdp_program(xdp_counter_insns(counts), name="demo_xdp_count", maps=(counts,)))
    ctx.defer(xdp.close, "close program demo_xdp_count")
    tc = ctx.track(load_tc_program(tc_drop_insns(drops, BLOCKED_PORT), name="demo_tc_drop", maps=(drops,)))
    ctx.defer(tc.close, "close program demo_tc_drop")
    with b.enter():
        xdp_link = attach_xdp(veth.b_if, xdp)
        ctx.defer(xdp_link.close, f"detach XDP from {veth.b_if}")
        ctx.defer(lambda: _in(b, lambda: remove_clsact_qdisc(veth.b_if, missing_ok=True)),
                  f"remove clsact qdisc of {veth.b_if}")
        tc_link = attach_tc_filter(veth.b_if, tc, "ingress")
        ctx.defer(tc_link.close, f"remove TC filter of {veth.b_if}")
    ctx.print(f"attached XDP {xdp.name!r} (id {xdp.info().id}) and TC ingress filter {tc.name!r} "
              f"(id {tc.info().id}, drops UDP to port {BLOCKED_PORT}) on {veth.b_if}")

    results: list[list[Any]] = []
    with ctx.live_table(["TRAFFIC A -> B", "SENT", "ARRIVED"], "traffic from A to B:") as view:
        replies = _ping(veth, 3)
        results.append(["icmp echo", 3, replies])
        view.set_rows(results)
        allowed = _udp(veth, ALLOWED_PORT, 5)
        results.append([f"udp to port {ALLOWED_PORT}", 5, allowed])
        view.set_rows(results)
        blocked = _udp(veth, BLOCKED_PORT, 5)
        results.append([f"udp to port {BLOCKED_PORT} (TC drops)", 5, blocked])
        view.set_rows(results)
        tcp_ok = _tcp(veth)
        results.append([f"tcp connection to port {TCP_PORT}", 1, int(tcp_ok)])
        view.set_rows(results)
    seen = {k: int.from_bytes(counts.lookup_bytes(struct.pack("<I", k)) or bytes(8), "little") for k in PROTOCOLS}
    dropped = int.from_bytes(drops.lookup_bytes(bytes(4)) or bytes(8), "little")
    ctx.table(["PROTOCOL", "PACKETS (XDP on B)"], [[PROTOCOLS[k], n] for k, n in seen.items() if n],
              "what the XDP program counted, per protocol:")
    ctx.print(f"the TC filter dropped {dropped} packet(s); B received {allowed}/5 on port {ALLOWED_PORT} "
              f"and {blocked}/5 on port {BLOCKED_PORT}")
    problems = []
    if seen[17] < 10 or seen[1] < 3 or seen[6] < 3:
        problems.append(f"XDP counts too low: {seen}")
    if dropped != 5 or blocked != 0 or allowed != 5 or not tcp_ok or replies != 3:
        problems.append(f"dropped={dropped} blocked={blocked} allowed={allowed} tcp={tcp_ok} ping={replies}")
    if problems:
        raise AssertionError("; ".join(problems))
    ctx.summary(f"ebpf-net: XDP counted icmp {seen[1]}, udp {seen[17]}, tcp {seen[6]} packets on a veth; "
                f"TC dropped {dropped} UDP datagrams to port {BLOCKED_PORT}")


def _in(ns: Netns, func: Any) -> None:
    with ns.enter():
        func()


_CHILD = """
import errno, os, socket, sys
open(sys.argv[1], "w").write(str(os.getpid()))
s = socket.socket()
s.settimeout(2)
try:
    s.connect(("127.0.0.1", int(sys.argv[2])))
    print("connected")
except OSError as exc:
    print(errno.errorcode.get(exc.errno, str(exc.errno)), exc.strerror)
"""


def _remove_cgroup_dir(path: str) -> None:
    for _ in range(40):  # the child's exit takes a moment to leave the cgroup
        try:
            os.rmdir(path)
            return
        except FileNotFoundError:
            return
        except OSError as exc:
            if exc.errno != errno.EBUSY:
                raise
            time.sleep(0.05)
    os.rmdir(path)


def cgroup_step(ctx: Any) -> None:
    """A child cgroup whose connect4 program refuses one port: connect() there fails with EPERM.

    :param ctx: the :class:`ebpf.core.demo.DemoContext`.
    :raises AssertionError: when the connect was not refused, or was refused outside the cgroup.
    """
    from ebpf.net.cgroup import attach_cgroup_program, cgroup_root, create_cgroup, load_cgroup_sock_addr_program

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        port = listener.getsockname()[1]
        path = create_cgroup(os.path.join(cgroup_root(), f"ebpf-demo-{os.getpid()}"))
        ctx.defer(lambda: _remove_cgroup_dir(path), f"remove cgroup {path}")
        prog = ctx.track(load_cgroup_sock_addr_program(connect_block_insns(port), "connect4",
                                                       name="demo_no_connect"))
        ctx.defer(prog.close, "close program demo_no_connect")
        link = attach_cgroup_program(path, prog)
        ctx.defer(link.close, f"detach demo_no_connect from {path}")
        ctx.print(f"created cgroup {path} and attached cgroup/connect4 program {prog.name!r} (id {prog.info().id}) "
                  f"refusing connects to 127.0.0.1:{port}")
        inside = subprocess.run([sys.executable, "-c", _CHILD, os.path.join(path, "cgroup.procs"), str(port)],
                                capture_output=True, text=True, timeout=30).stdout.strip()
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            outside = "connected"
    ctx.table(["WHERE", f"connect(127.0.0.1:{port})"], [["child process in the cgroup", inside],
                                                          ["this process (outside)", outside]])
    if not inside.startswith("EPERM") or outside != "connected":
        raise AssertionError(f"expected EPERM inside and a connection outside, got {inside!r} / {outside!r}")
    ctx.summary(f"ebpf-net: a cgroup/connect4 program made connect() fail with EPERM inside {os.path.basename(path)} "
                "only")
