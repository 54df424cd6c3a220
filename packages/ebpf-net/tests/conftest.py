"""Fixtures for ebpf-net tests: private network namespaces with a veth pair, fresh cgroups,
counter maps, and small program builders written with :mod:`ebpf.core.asm`.

Every world a test builds is removed by a finalizer: namespaces (with their veths),
cgroups (after moving leftover processes out).
"""

from __future__ import annotations

import ctypes
import itertools
import os
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import pytest
from ebpf.core.asm import (
    DW,
    R0,
    R1,
    R2,
    R3,
    R4,
    R5,
    R10,
    B,
    H,
    Instruction,
    Label,
    W,
    add64,
    atomic_add,
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
)
from ebpf.core.maps import Map, create_array_map
from ebpf.core.testing import plugin_registered

Item = Instruction | Label
_counter = itertools.count()
_CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


# ---------------------------------------------------------------------------- programs
#
# Small program builders, written with ebpf.core.asm.  Each returns a list of instructions and
# labels to splice into a program (``[*count_slot0(m), *ret(XdpAction.DROP)]``); tests get them
# through the ``progs`` fixture.  Labels are made unique per call, so a builder can be used twice
# in one program.


def _fresh(name: str) -> str:
    return f"{name}_{next(_counter)}"


def ret(value: int) -> list[Item]:
    """``return value``."""
    return [mov64(R0, int(value)), exit_()]


def lookup_slot0(map_: Map, miss: str) -> list[Item]:
    """``r0 = &map_[0]``; jump to label ``miss`` when the lookup fails.  Clobbers r0-r5."""
    return [
        st_mem(W, R10, -4, 0), mov64(R2, R10), add64(R2, -4),
        ld_map_fd(R1, map_), call("map_lookup_elem"),
        jeq(R0, 0, miss),
    ]  # fmt: skip


def count_slot0(map_: Map) -> list[Item]:
    """``map_[0] += 1`` (atomically) on an array map of u64; falls through.  Clobbers r0-r5."""
    done = _fresh("counted")
    return [*lookup_slot0(map_, done), mov64(R1, 1), atomic_add(DW, R0, R1), label(done)]


def counting(map_: Map, verdict: int) -> list[Item]:
    """Count into ``map_[0]``, then return ``verdict``."""
    return [*count_slot0(map_), *ret(verdict)]


def udp_to_port(port: int, otherwise: str) -> list[Item]:
    """For ``__sk_buff`` programs (r1 = context): fall through when the packet is IPv4/UDP
    (20-byte IP header) to ``port``, else jump to label ``otherwise``.  Uses r2-r5."""
    return [
        ldx_mem(W, R2, R1, 76),  # skb->data
        ldx_mem(W, R3, R1, 80),  # skb->data_end
        mov64(R4, R2), add64(R4, 38),  # Ethernet (14) + IPv4 (20) + UDP ports (4)
        jgt(R4, R3, otherwise),
        ldx_mem(B, R5, R2, 23), jne(R5, socket.IPPROTO_UDP, otherwise),  # iph->protocol
        ldx_mem(H, R5, R2, 36), jne(R5, socket.htons(port), otherwise),  # udph->dest, network order
    ]  # fmt: skip


def udp_port_verdict(port: int, match: int, other: int) -> list[Item]:
    """Return ``match`` for IPv4/UDP packets to ``port``, ``other`` for everything else."""
    miss = _fresh("other")
    return [*udp_to_port(port, miss), *ret(match), label(miss), *ret(other)]


@pytest.fixture(scope="session")
def progs() -> SimpleNamespace:
    """The program builders: ``progs.ret``, ``progs.lookup_slot0``, ``progs.count_slot0``,
    ``progs.counting``, ``progs.udp_to_port``, ``progs.udp_port_verdict``."""
    return SimpleNamespace(
        ret=ret, lookup_slot0=lookup_slot0, count_slot0=count_slot0, counting=counting,
        udp_to_port=udp_to_port, udp_port_verdict=udp_port_verdict,
    )  # fmt: skip


@pytest.fixture
def counter() -> Iterator[Map]:
    """A one-slot u64 array map used as a packet counter: ``counter[0]`` is the count."""
    with create_array_map(1, value_size=8, name="net_counter") as m:
        yield m


# ---------------------------------------------------------------------------- namespaces


def sh(cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a shell command (setup/teardown of test worlds)."""
    return subprocess.run(cmd, shell=True, check=check, capture_output=True, text=True)


@contextmanager
def in_netns(name: str) -> Iterator[None]:
    """Run the block with this thread inside network namespace ``name``."""
    back = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        if _libc.setns(target, _CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns {name}")
        try:
            yield
        finally:
            if _libc.setns(back, _CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns back")
    finally:
        os.close(target)
        os.close(back)


@dataclass
class VethWorld:
    """Two namespaces joined by a veth pair: ``a_if`` (``a_ip``) in ``ns_a``, ``b_if`` (``b_ip``) in ``ns_b``."""

    ns_a: str
    ns_b: str
    a_if: str
    b_if: str
    a_ip: str
    b_ip: str

    def a(self) -> Any:
        """Context manager: inside namespace A."""
        return in_netns(self.ns_a)

    def b(self) -> Any:
        """Context manager: inside namespace B."""
        return in_netns(self.ns_b)

    def udp_socket(self, side: str, port: int = 0) -> socket.socket:
        """A UDP socket created inside ``side`` ("a"/"b"), bound to its address (and ``port``)."""
        with in_netns(self.ns_a if side == "a" else self.ns_b):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind((self.a_ip if side == "a" else self.b_ip, port))
        s.settimeout(0.3)
        return s

    def send_udp(self, to_side: str, port: int, count: int = 5, payload: bytes = b"x" * 32) -> int:
        """Send ``count`` datagrams to ``port`` on ``to_side``; returns how many arrived."""
        rx = self.udp_socket(to_side, port)
        tx = self.udp_socket("b" if to_side == "a" else "a")
        dest = self.a_ip if to_side == "a" else self.b_ip
        try:
            for _ in range(count):
                tx.sendto(payload, (dest, port))
            got = 0
            deadline = time.monotonic() + 1.0
            while got < count and time.monotonic() < deadline:
                try:
                    rx.recv(4096)
                    got += 1
                except (TimeoutError, BlockingIOError):
                    break
            return got
        finally:
            rx.close()
            tx.close()


def _make_world() -> VethWorld:
    n = next(_counter)
    pid = os.getpid()
    tag = f"{pid % 100000}x{n}"
    world = VethWorld(f"ebpfnet-a-{tag}", f"ebpfnet-b-{tag}", f"va{tag}", f"vb{tag}", "10.213.0.1", "10.213.0.2")
    try:
        sh(f"ip netns add {world.ns_a}")
        sh(f"ip netns add {world.ns_b}")
        for ns in (world.ns_a, world.ns_b):
            sh(f"ip netns exec {ns} sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1")
            sh(f"ip -n {ns} link set lo up")
        sh(f"ip link add {world.a_if} netns {world.ns_a} type veth peer name {world.b_if} netns {world.ns_b}")
        mac_a = "02:00:00:00:aa:01"
        mac_b = "02:00:00:00:bb:02"
        sh(f"ip -n {world.ns_a} link set {world.a_if} address {mac_a}")
        sh(f"ip -n {world.ns_b} link set {world.b_if} address {mac_b}")
        sh(f"ip -n {world.ns_a} addr add {world.a_ip}/24 dev {world.a_if}")
        sh(f"ip -n {world.ns_b} addr add {world.b_ip}/24 dev {world.b_if}")
        sh(f"ip -n {world.ns_a} link set {world.a_if} up")
        sh(f"ip -n {world.ns_b} link set {world.b_if} up")
        # Static neighbours: no ARP traffic to confuse packet counts.
        sh(f"ip -n {world.ns_a} neigh replace {world.b_ip} lladdr {mac_b} dev {world.a_if} nud permanent")
        sh(f"ip -n {world.ns_b} neigh replace {world.a_ip} lladdr {mac_a} dev {world.b_if} nud permanent")
    except BaseException:
        _remove_world(world)
        raise
    return world


def _remove_world(world: VethWorld) -> None:
    sh(f"ip netns del {world.ns_a}", check=False)
    sh(f"ip netns del {world.ns_b}", check=False)


@pytest.fixture
def veth() -> Iterator[VethWorld]:
    """A fresh pair of namespaces joined by a veth pair (removed afterwards)."""
    world = _make_world()
    try:
        yield world
    finally:
        _remove_world(world)
        assert not os.path.exists(f"/run/netns/{world.ns_a}")


@pytest.fixture
def make_veth() -> Iterator[Callable[[], VethWorld]]:
    """A factory of extra worlds (all removed afterwards)."""
    made: list[VethWorld] = []

    def make() -> VethWorld:
        made.append(_make_world())
        return made[-1]

    yield make
    for world in made:
        _remove_world(world)


# ---------------------------------------------------------------------------- cgroups


@pytest.fixture
def cgroup_dir() -> Iterator[str]:
    """A fresh child cgroup of the cgroup v2 root (removed afterwards, processes moved out)."""
    from ebpf.net.cgroup import cgroup_root

    path = os.path.join(cgroup_root(), f"ebpf-net-test-{os.getpid()}-{next(_counter)}")
    os.mkdir(path)
    try:
        yield path
    finally:
        _remove_cgroup(path)


def _remove_cgroup(path: str) -> None:
    for _ in range(50):
        try:
            with open(os.path.join(path, "cgroup.procs")) as fh:
                pids = [p for p in fh.read().split() if p]
        except OSError:
            pids = []
        for pid in pids:
            try:
                with open(os.path.join(os.path.dirname(path), "cgroup.procs"), "w") as fh:
                    fh.write(pid)
            except OSError:
                pass
        try:
            os.rmdir(path)
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.05)
    os.rmdir(path)


def run_in_cgroup(cgroup: str, code: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    """Run ``python3 -c code`` in a child process that first moves itself into ``cgroup``."""
    prelude = f"import os\nopen({os.path.join(cgroup, 'cgroup.procs')!r}, 'w').write(str(os.getpid()))\n"
    return subprocess.run(["python3", "-c", prelude + code], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def in_cgroup() -> Callable[[str, str], subprocess.CompletedProcess[str]]:
    """``in_cgroup(path, code)``: run Python ``code`` in a child process placed in cgroup ``path``."""
    return run_in_cgroup


@pytest.fixture(scope="session", autouse=True)
def _net_plugin_registered() -> Iterator[None]:
    """Make sure ebpf-net's backends are registered, e.g. with ``EBPF_DISABLE_PLUGIN_AUTOLOAD=1`` in a
    source tree with no entry point.  A no-op when the entry point (or EBPF_PLUGINS) did it;
    a registration made here is undone at the end of the session."""
    import ebpf.net.plugin

    with plugin_registered(ebpf.net.plugin, "net"):
        yield


# ---------------------------------------------------------------------------- one namespace, own cgroup


@pytest.fixture
def netns() -> Iterator[str]:
    """A fresh network namespace with only ``lo`` (up); its name, removed afterwards."""
    name = f"ebpfnet-n-{os.getpid() % 100000}x{next(_counter)}"
    sh(f"ip netns add {name}")
    try:
        sh(f"ip -n {name} link set lo up")
        yield name
    finally:
        sh(f"ip netns del {name}", check=False)


@contextmanager
def self_in_cgroup(path: str) -> Iterator[None]:
    """Run the block with this process moved into cgroup ``path`` (moved back to where it was after)."""
    from ebpf.net.cgroup import cgroup_root, get_current_cgroup

    home = get_current_cgroup()
    if not home.startswith("/"):
        home = os.path.join(cgroup_root(), home)
    with open(os.path.join(path, "cgroup.procs"), "w") as fh:
        fh.write(str(os.getpid()))
    try:
        yield
    finally:
        with open(os.path.join(home, "cgroup.procs"), "w") as fh:
            fh.write(str(os.getpid()))


@pytest.fixture(scope="session")
def enter() -> SimpleNamespace:
    """``enter.netns(name)`` and ``enter.cgroup(path)``: context managers that move this thread into a
    network namespace / this process into a cgroup for the block."""
    return SimpleNamespace(netns=in_netns, cgroup=self_in_cgroup)


# ---------------------------------------------------------------------------- three hosts in a row


@dataclass
class ChainWorld:
    """A -- B -- C: namespaces ``ns["a"]``, ``ns["b"]``, ``ns["c"]``; veth ``a0``<->``b0`` and ``b1``<->``c0``
    (names in ``ifs``, addresses in ``ips``, MACs in ``macs``).  B does not forward; A reaches C's address
    with C's MAC directly, so a frame from A gets to C only when B's XDP redirects it."""

    ns: dict[str, str]
    ifs: dict[str, str]
    ips: dict[str, str]
    macs: dict[str, str]

    def enter(self, host: str) -> Any:
        """Context manager: inside host ``host``'s namespace."""
        return in_netns(self.ns[host])

    def udp(self, host: str, ip: str, port: int = 0) -> socket.socket:
        """A UDP socket in ``host`` bound to ``(ip, port)`` (timeout 0.5 s)."""
        with self.enter(host):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind((ip, port))
        s.settimeout(0.5)
        return s


def _make_chain() -> ChainWorld:
    tag = f"{os.getpid() % 100000}x{next(_counter)}"
    w = ChainWorld(
        ns={h: f"ebpfnet-{h}-{tag}" for h in "abc"},
        ifs={i: f"{i}{tag}" for i in ("a0", "b0", "b1", "c0")},
        ips={"a0": "10.214.1.1", "b0": "10.214.1.2", "b1": "10.214.2.1", "c0": "10.214.2.2"},
        macs={"a0": "02:00:00:01:01:01", "b0": "02:00:00:01:01:02", "b1": "02:00:00:02:02:01",
              "c0": "02:00:00:02:02:02"},
    )  # fmt: skip
    host = {"a0": "a", "b0": "b", "b1": "b", "c0": "c"}
    try:
        for ns in w.ns.values():
            sh(f"ip netns add {ns}")
            sh(f"ip netns exec {ns} sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1")
            sh(f"ip -n {ns} link set lo up")
        for x, y in (("a0", "b0"), ("b1", "c0")):
            sh(f"ip link add {w.ifs[x]} netns {w.ns[host[x]]} type veth peer name {w.ifs[y]} netns {w.ns[host[y]]}")
        for i, h in host.items():
            n, dev = w.ns[h], w.ifs[i]
            sh(f"ip -n {n} link set {dev} address {w.macs[i]}")
            sh(f"ip -n {n} addr add {w.ips[i]}/24 dev {dev}")
            sh(f"ip -n {n} link set {dev} up")
        a, c = w.ns["a"], w.ns["c"]
        sh(f"ip -n {a} route add 10.214.2.0/24 dev {w.ifs['a0']}")
        sh(f"ip -n {c} route add 10.214.1.0/24 dev {w.ifs['c0']}")
        sh(f"ip -n {a} neigh replace {w.ips['c0']} lladdr {w.macs['c0']} dev {w.ifs['a0']} nud permanent")
        sh(f"ip -n {a} neigh replace {w.ips['b0']} lladdr {w.macs['b0']} dev {w.ifs['a0']} nud permanent")
        sh(f"ip -n {c} neigh replace {w.ips['a0']} lladdr {w.macs['a0']} dev {w.ifs['c0']} nud permanent")
        sh(f"ip -n {w.ns['b']} neigh replace {w.ips['a0']} lladdr {w.macs['a0']} dev {w.ifs['b0']} nud permanent")
    except BaseException:
        for ns in w.ns.values():
            sh(f"ip netns del {ns}", check=False)
        raise
    return w


@pytest.fixture
def chain() -> Iterator[ChainWorld]:
    """Three namespaces in a row, A -- B -- C (removed afterwards)."""
    world = _make_chain()
    try:
        yield world
    finally:
        for ns in world.ns.values():
            sh(f"ip netns del {ns}", check=False)
