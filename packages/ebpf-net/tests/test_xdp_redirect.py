"""XDP_REDIRECT through a devmap and a cpumap, and XDP_TX, with real packets between namespaces
A -- B -- C (B never forwards: only its XDP program moves the frames)."""

from __future__ import annotations

import socket

import pytest
from ebpf.core.asm import (
    R0,
    R1,
    R2,
    R3,
    R4,
    R5,
    R6,
    R7,
    B,
    H,
    W,
    add64,
    call,
    exit_,
    jgt,
    jne,
    label,
    ld_map_fd,
    ldx_mem,
    mov64,
    stx_mem,
)
from ebpf.core.errors import EBPFError
from ebpf.core.maps import create_array_map
from ebpf.core.system import cpu_count
from ebpf.core.types import AttachType
from ebpf.net import xdp
from ebpf.net.xdp import XdpAction

pytestmark = pytest.mark.privileged


def xdp_udp_to_port(port: int, otherwise: str) -> list:
    """XDP (r1 = ctx): fall through for IPv4/UDP to ``port`` with r2 = data (38 bytes checked), else jump."""
    return [
        ldx_mem(W, R2, R1, 0), ldx_mem(W, R3, R1, 4),  # xdp_md data, data_end
        mov64(R4, R2), add64(R4, 38), jgt(R4, R3, otherwise),
        ldx_mem(B, R5, R2, 23), jne(R5, socket.IPPROTO_UDP, otherwise),
        ldx_mem(H, R5, R2, 36), jne(R5, socket.htons(port), otherwise),
    ]  # fmt: skip


def redirect_to(map_, key: int, port: int, progs, counter) -> list:
    return [
        mov64(R6, R1), *xdp_udp_to_port(port, "pass"),
        *progs.count_slot0(counter),
        ld_map_fd(R1, map_), mov64(R2, key), mov64(R3, 0), call("redirect_map"), exit_(),
        label("pass"), *progs.ret(XdpAction.PASS),
    ]  # fmt: skip


def _swap(size, a: int, b: int) -> list:
    return [ldx_mem(size, R4, R2, a), ldx_mem(size, R5, R2, b), stx_mem(size, R2, R5, a), stx_mem(size, R2, R4, b)]


def reflect(port: int, progs, counter) -> list:
    """Send UDP to ``port`` back where it came from: swap MACs, addresses and ports (checksums keep)."""
    return [
        *xdp_udp_to_port(port, "pass"),
        *_swap(W, 0, 6), *_swap(H, 4, 10),  # Ethernet destination <-> source
        *_swap(W, 26, 30),  # IPv4 saddr <-> daddr
        *_swap(H, 34, 36),  # UDP sport <-> dport
        *progs.count_slot0(counter), *progs.ret(XdpAction.TX),
        label("pass"), *progs.ret(XdpAction.PASS),
    ]  # fmt: skip


def _send(tx: socket.socket, rx: socket.socket, to: tuple[str, int], count: int = 5) -> list[bytes]:
    got = []
    for i in range(count):
        tx.sendto(b"pkt%d" % i, to)
    for _ in range(count):
        try:
            got.append(rx.recv(100))
        except TimeoutError:
            break
    return got


def test_devmap_redirect_moves_frames_from_a_through_b_to_c(chain, progs, counter):
    rx = chain.udp("c", chain.ips["c0"], 7100)
    tx = chain.udp("a", chain.ips["a0"])
    with rx, tx, xdp.create_devmap(4) as devmap:
        assert _send(tx, rx, (chain.ips["c0"], 7100), count=2) == []  # B does not forward by itself
        with chain.enter("b"):
            devmap[0] = xdp.interface_name_to_index(chain.ifs["b1"])
        with xdp.load_xdp_program(redirect_to(devmap, 0, 7100, progs, counter), name="to_b1") as prog:
            with chain.enter("b"):
                link = xdp.attach_xdp(chain.ifs["b0"], prog, mode="skb")
            with link:
                got = _send(tx, rx, (chain.ips["c0"], 7100))
        assert sorted(got) == [b"pkt%d" % i for i in range(5)]
        assert counter[0] == 5  # every one went through B's redirect


def test_devmap_program_runs_on_the_way_out(chain, progs, counter):
    rx = chain.udp("c", chain.ips["c0"], 7101)
    tx = chain.udp("a", chain.ips["a0"])
    egress = xdp.load_xdp_program(progs.counting(counter, XdpAction.PASS), name="on_egress",
                                  expected_attach_type=AttachType.XDP_DEVMAP)  # fmt: skip
    with rx, tx, egress, xdp.create_devmap(1, programs=True) as devmap, create_array_map(1, value_size=8) as hits:
        with chain.enter("b"):  # the kernel resolves the ifindex in the updating thread's namespace
            b1 = xdp.interface_name_to_index(chain.ifs["b1"])
            devmap[0] = (b1, egress)
        assert devmap[0] == (b1, egress.info().id)
        prog = xdp.load_xdp_program(redirect_to(devmap, 0, 7101, progs, hits), name="to_b1")
        with prog, chain.enter("b"), xdp.attach_xdp(chain.ifs["b0"], prog, mode="skb"):
            assert len(_send(tx, rx, (chain.ips["c0"], 7101), count=3)) == 3
        assert hits[0] == 3 and counter[0] == 3  # redirected on B's way in, seen by the devmap program on b1


def test_cpumap_redirect_runs_the_cpumap_program_on_the_chosen_cpu(chain, progs, counter):
    target = cpu_count() - 1
    seen_cpu = create_array_map(1, value_size=8, name="seen_cpu")
    on_cpu = xdp.load_xdp_program(
        [
            mov64(R6, R1), call("get_smp_processor_id"), add64(R0, 1), mov64(R7, R0),
            *progs.lookup_slot0(seen_cpu, "skip"), stx_mem(W, R0, R7, 0), label("skip"),
            *progs.counting(counter, XdpAction.PASS),
        ],
        name="on_cpu", expected_attach_type=AttachType.XDP_CPUMAP,
    )  # fmt: skip
    rx = chain.udp("b", chain.ips["b0"], 7200)
    tx = chain.udp("a", chain.ips["a0"])
    with seen_cpu, on_cpu, rx, tx, xdp.create_cpumap(cpu_count(), programs=True) as cpumap:
        cpumap[target] = (192, on_cpu)
        assert cpumap[target] == (192, on_cpu.info().id)
        with create_array_map(1, value_size=8) as redirected:
            prog = xdp.load_xdp_program(redirect_to(cpumap, target, 7200, progs, redirected))
            with prog, chain.enter("b"), xdp.attach_xdp(chain.ifs["b0"], prog, mode="skb"):
                got = _send(tx, rx, (chain.ips["b0"], 7200))
            assert redirected[0] == 5
        assert len(got) == 5  # B's own stack got them, through the other CPU's queue
        assert counter[0] == 5
        assert seen_cpu[0] == target + 1


def test_xdp_tx_sends_the_frame_back_out_of_the_interface(chain, progs, counter):
    sock = chain.udp("a", chain.ips["a0"], 7300)
    prog = xdp.load_xdp_program(reflect(7300, progs, counter), name="reflect")
    with sock, prog, chain.enter("b"), xdp.attach_xdp(chain.ifs["b0"], prog, mode="skb"):
        # A sends to B:7300 from port 7300, so the reflected datagram comes back to the same socket.
        sock.sendto(b"echo me", (chain.ips["b0"], 7300))
        data, peer = sock.recvfrom(100)
    assert data == b"echo me" and peer == (chain.ips["b0"], 7300)
    assert counter[0] == 1


def test_redirect_map_values_are_checked_before_the_kernel():
    with xdp.create_cpumap(2, programs=True) as cpumap:
        for bad in ("x", (1, 2, 3), (-1, None), (5, "prog"), True):
            with pytest.raises(EBPFError, match="cpumap"):
                cpumap[0] = bad
    with pytest.raises(EBPFError, match="max_entries"):
        xdp.create_devmap(0, programs=True)
