"""Fixtures for ebpf-net tests: private network namespaces with a veth pair, fresh cgroups,
and a tiny instruction encoder (so the tests do not depend on the assembler).

Every world a test builds is removed by a finalizer: namespaces (with their veths),
cgroups (after moving leftover processes out).
"""

from __future__ import annotations

import ctypes
import itertools
import os
import socket
import struct
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import pytest

_counter = itertools.count()
_CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


# ---------------------------------------------------------------------------- encoding


def _insn(op: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    return struct.pack("<BBhi", op, (src << 4) | dst, off, imm)


_SIZES = {"w": 0x00, "h": 0x08, "b": 0x10, "dw": 0x18}
_JMP = {"ja": 0x00, "eq": 0x10, "gt": 0x20, "ge": 0x30, "set": 0x40, "ne": 0x50, "lt": 0xA0, "le": 0xB0}
HELPERS = {
    "map_lookup_elem": 1, "map_update_elem": 2, "sk_assign": 124, "sk_release": 86,
    "sysctl_get_name": 101, "get_current_pid_tgid": 14,
}  # fmt: skip


def make_asm() -> SimpleNamespace:
    """Constructors returning encoded instructions (bytes); concatenate them."""

    def mov(dst: int, imm: int) -> bytes:
        return _insn(0xB7, dst, imm=imm)

    def mov32(dst: int, imm: int) -> bytes:
        return _insn(0xB4, dst, imm=imm)

    def movr(dst: int, src: int) -> bytes:
        return _insn(0xBF, dst, src)

    def add(dst: int, imm: int) -> bytes:
        return _insn(0x07, dst, imm=imm)

    def ldx(size: str, dst: int, src: int, off: int) -> bytes:
        return _insn(0x61 | _SIZES[size], dst, src, off)

    def stx(size: str, dst: int, src: int, off: int) -> bytes:
        return _insn(0x63 | _SIZES[size], dst, src, off)

    def st(size: str, dst: int, off: int, imm: int) -> bytes:
        return _insn(0x62 | _SIZES[size], dst, off=off, imm=imm)

    def jmp(cond: str, dst: int, imm: int, off: int) -> bytes:
        return _insn(0x05 | _JMP[cond], dst, off=off, imm=imm)

    def jmp32(cond: str, dst: int, imm: int, off: int) -> bytes:
        return _insn(0x06 | _JMP[cond], dst, off=off, imm=imm)

    def jmpr(cond: str, dst: int, src: int, off: int) -> bytes:
        return _insn(0x0D | _JMP[cond], dst, src, off)

    def mul(dst: int, imm: int) -> bytes:
        return _insn(0x27, dst, imm=imm)

    def ja(off: int) -> bytes:
        return _insn(0x05, off=off)

    def call(name: str) -> bytes:
        return _insn(0x85, imm=HELPERS[name])

    def exit_() -> bytes:
        return _insn(0x95)

    def ld_map_fd(dst: int, fd: int) -> bytes:
        return _insn(0x18, dst, 1, imm=fd) + _insn(0)

    def atomic_add(dst: int, src: int, off: int) -> bytes:
        return _insn(0xDB, dst, src, off)

    def ret(value: int) -> bytes:
        return mov(0, value) + exit_()

    def count(map_fd: int) -> bytes:
        """counter[0] += 1 on an array map of u64 (clobbers r0-r5)."""
        return (
            st("w", 10, -4, 0) + movr(2, 10) + add(2, -4) + ld_map_fd(1, map_fd) + call("map_lookup_elem")
            + jmp("eq", 0, 0, 2) + mov(1, 1) + atomic_add(0, 1, 0)
        )  # fmt: skip

    def lookup0(map_fd: int, miss_jump: int) -> bytes:
        """r0 = &map[0]; when missing jump ``miss_jump`` instructions after this block."""
        return (
            st("w", 10, -4, 0) + movr(2, 10) + add(2, -4) + ld_map_fd(1, map_fd) + call("map_lookup_elem")
            + jmp("eq", 0, 0, miss_jump)
        )  # fmt: skip

    def udp_dport_is(port: int, on_mismatch: int) -> bytes:
        """For __sk_buff programs: jump ``on_mismatch`` insns past this block unless the packet is
        IPv4/UDP (20-byte header) to ``port``.  Uses r2-r5; r1 must be the context."""
        swapped = ((port & 0xFF) << 8) | (port >> 8)
        return (
            ldx("w", 2, 1, 76) + ldx("w", 3, 1, 80) + movr(4, 2) + add(4, 38)
            + jmpr("gt", 4, 3, 4 + on_mismatch)
            + ldx("b", 5, 2, 23) + jmp("ne", 5, 17, 2 + on_mismatch)
            + ldx("h", 5, 2, 36) + jmp("ne", 5, swapped, on_mismatch)
        )  # fmt: skip

    return SimpleNamespace(**{k: v for k, v in locals().items() if callable(v)})


@pytest.fixture(scope="session")
def asm() -> SimpleNamespace:
    """The tiny encoder (see :func:`make_asm`)."""
    return make_asm()


class _RawArray:
    """A u64 array map made through the syscall layer (used until ebpf.core.maps is there)."""

    def __init__(self, max_entries: int) -> None:
        from ebpf.core._sys.attrs import MapCreateAttr
        from ebpf.core._sys.syscall import Cmd, bpf

        self.fd = bpf(Cmd.MAP_CREATE, MapCreateAttr(map_type=2, key_size=4, value_size=8, max_entries=max_entries))

    def lookup_bytes(self, key: bytes) -> bytes:
        from ebpf.core._sys.attrs import MapElemAttr
        from ebpf.core._sys.syscall import Cmd, bpf

        k = ctypes.create_string_buffer(key, 4)
        v = ctypes.create_string_buffer(8)
        bpf(Cmd.MAP_LOOKUP_ELEM, MapElemAttr(map_fd=self.fd, key=ctypes.addressof(k), value=ctypes.addressof(v)))
        return v.raw

    def close(self) -> None:
        os.close(self.fd)


def _array(max_entries: int) -> Any:
    try:
        from ebpf.core.maps import create_map
    except ImportError:
        return _RawArray(max_entries)
    return create_map(map_type="array", key_size=4, value_size=8, max_entries=max_entries, name="net_counter")


@pytest.fixture
def counter() -> Iterator[Any]:
    """A one-slot u64 array map used as a packet counter; ``.value()`` reads slot 0."""
    m = _array(1)

    def value() -> int:
        raw = m.lookup_bytes(b"\0\0\0\0")
        return int.from_bytes(raw or b"\0" * 8, "little")

    m.value = value
    yield m
    m.close()


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
def _net_plugin_registered() -> None:
    """Make sure ebpf-net's backends are registered (the entry point exists only when installed)."""
    import ebpf.net.plugin
    from ebpf.core import plugins

    pm = plugins.plugin_manager()
    if not any(pm.is_registered(p) and getattr(p, "__name__", "") == "ebpf.net.plugin" for p in pm.get_plugins()):
        plugins.register(ebpf.net.plugin, name="net")
