"""netkit: the probe answers without leaving anything behind; where the kernel has netkit, a pair
between two namespaces carries traffic through programs attached with links."""

from __future__ import annotations

import os
import socket
import subprocess

import pytest
from ebpf.core.errors import AttachError, UnsupportedFeatureError
from ebpf.core.maps import create_array_map
from ebpf.core.testing import require
from ebpf.net import netkit, tc, xdp
from ebpf.net.netkit import NetkitAction

pytestmark = pytest.mark.privileged


def _links() -> str:
    return subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout


def test_probe_answers_and_leaves_nothing_behind():
    threads = set(os.listdir("/proc/self/task"))
    try:
        netkit.probe_netkit.__wrapped__()  # type: ignore[attr-defined]  # past the cache: really probe
    except UnsupportedFeatureError as exc:
        assert "netkit" in str(exc) and "6.7" in str(exc)
    # It worked in a namespace of its own, on a thread that is gone: no device here, no named namespace.
    assert "nkprobe0" not in _links()
    assert set(os.listdir("/proc/self/task")) <= threads
    assert not any("nkprobe" in n for n in (os.listdir("/run/netns") if os.path.isdir("/run/netns") else []))


def test_netkit_bad_input_is_refused_before_the_kernel(netns, enter, progs):
    with pytest.raises(AttachError, match="not a valid network interface name"):
        netkit.create_netkit("bad/name")
    with pytest.raises(AttachError, match="no network namespace"):
        netkit.create_netkit("nkok0", peer_netns="ebpfnet-no-such-ns")
    with xdp.load_xdp_program(progs.ret(2)) as wrong, enter.netns(netns):
        with pytest.raises(AttachError, match="sched_cls"):
            netkit.attach_netkit(wrong, "lo")
        with tc.load_tc_program(progs.ret(0)) as prog:
            with pytest.raises(AttachError, match="no network interface"):
                netkit.attach_netkit(prog, "nosuchnk0")
            with pytest.raises(AttachError, match="netkit"):
                netkit.attach_netkit(prog, "lo")  # not a netkit device
    assert "nkok0" not in _links()


def test_netkit_pair_runs_programs_attached_with_links(veth, progs):
    require(netkit.probe_netkit)
    with veth.a():
        pair = netkit.create_netkit("nkhost0", peer_name="nkpod0", peer_netns=veth.ns_b)
        subprocess.run(["ip", "addr", "add", "10.216.0.1/24", "dev", "nkhost0"], check=True)
    with veth.b():
        subprocess.run(["ip", "addr", "add", "10.216.0.2/24", "dev", "nkpod0"], check=True)
        subprocess.run(["ip", "link", "set", "nkpod0", "up"], check=True)
    with create_array_map(1, value_size=8) as seen:
        count = tc.load_tc_program(progs.counting(seen, NetkitAction.PASS), name="nk_count")
        with count, veth.a():
            links = [netkit.attach_netkit(count, pair.name), netkit.attach_netkit(count, pair.name, peer=True)]
        with links[0], links[1]:
            with veth.b():
                rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                rx.bind(("10.216.0.2", 7500))
            with veth.a():
                tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            with rx, tx:
                rx.settimeout(2)
                tx.sendto(b"through netkit", ("10.216.0.2", 7500))
                assert rx.recv(100) == b"through netkit"
        assert seen[0] >= 1
    with veth.a():
        netkit.delete_netkit(pair.name)
