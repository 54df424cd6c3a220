"""The plugin registration, dispatch errors, and the netlink wrapper's parsing and error translation."""

from __future__ import annotations

import errno
import struct

import ebpf.net
import pytest
from ebpf.core import plugins
from ebpf.core.errors import AttachError, BPFSyscallError, EBPFError
from ebpf.core.types import AttachType, ProgType
from ebpf.net import _netlink, plugin, tc, xdp
from hypothesis import given
from hypothesis import strategies as st


def test_every_network_program_type_has_a_backend():
    served = {
        pair for backend in plugins.attach_backends() if backend.distribution == "ebpf-net" for pair in backend.serves
    }
    for prog_type in (
        ProgType.XDP, ProgType.SCHED_CLS, ProgType.SCHED_ACT, ProgType.CGROUP_SKB, ProgType.CGROUP_SOCK,
        ProgType.CGROUP_SOCK_ADDR, ProgType.CGROUP_DEVICE, ProgType.CGROUP_SYSCTL, ProgType.CGROUP_SOCKOPT,
        ProgType.SOCKET_FILTER, ProgType.SK_LOOKUP, ProgType.NETFILTER,
    ):  # fmt: skip
        assert (prog_type, None) in served, prog_type
    assert (ProgType.SCHED_CLS, AttachType.TCX_EGRESS) in served


def test_section_types_cover_libbpf_names():
    by_prefix = {s.prefix: s for s in plugin.ebpf_section_types()}
    assert by_prefix["xdp"].prog_type is ProgType.XDP
    assert by_prefix["tcx/ingress"].attach_type is AttachType.TCX_INGRESS
    assert by_prefix["cgroup/connect4"].attach_type is AttachType.CGROUP_INET4_CONNECT
    assert by_prefix["cgroup/recvmsg6"].attach_type is AttachType.CGROUP_UDP6_RECVMSG
    assert by_prefix["cgroup_skb/egress"].prog_type is ProgType.CGROUP_SKB
    found = plugins.find_section_type("cgroup/sendmsg4")
    assert found is not None and found.attach_type is AttachType.CGROUP_UDP4_SENDMSG


@pytest.mark.privileged
def test_dispatch_refuses_targets_of_the_wrong_kind(progs):
    with xdp.load_xdp_program(progs.ret(2)) as prog, pytest.raises(AttachError, match="accepts target"):
        prog.attach(["not", "an", "interface"])
    with tc.load_tc_program(progs.ret(0)) as prog, pytest.raises(AttachError, match="method"):
        prog.attach("lo", method="telepathy")


def test_public_names_are_documented():
    for name in ebpf.net.__all__:
        obj = getattr(ebpf.net, name)
        assert getattr(obj, "__doc__", None), name


@given(st.binary(max_size=64))
def test_tc_option_parser_never_raises(raw):
    parsed = _netlink.parse_bpf_options(raw)
    assert all(isinstance(k, int) and isinstance(v, bytes) for k, v in parsed.items())


def test_tc_option_parser_reads_id_name_and_flags():
    def attr(kind: int, payload: bytes) -> bytes:
        body = struct.pack("=HH", 4 + len(payload), kind) + payload
        return body + b"\0" * (-len(body) % 4)

    inner = attr(7, b"myprog\0") + attr(11, struct.pack("=I", 42)) + attr(8, struct.pack("=I", 1))
    raw = struct.pack("=HH", 4 + len(inner), 2) + inner
    parsed = _netlink.parse_bpf_options(raw)
    assert parsed[7] == b"myprog\0" and parsed[11] == struct.pack("=I", 42)


def test_attach_failure_keeps_errno_and_hides_pyroute2():
    exc = _netlink.attach_failure(errno.EEXIST, "attach tc filter to veth0", "taken")
    assert isinstance(exc, AttachError) and exc.errno == errno.EEXIST
    assert "veth0" in str(exc) and "EEXIST" in str(exc)
    assert isinstance(exc.__cause__, BPFSyscallError)


@pytest.mark.privileged
def test_netlink_refusal_surfaces_as_our_error_without_pyroute2_in_the_chain(veth, progs):
    with tc.load_tc_program(progs.ret(0)) as prog, veth.a():
        first = tc.attach_tc_filter(veth.a_if, prog)
        try:
            with pytest.raises(AttachError, match=veth.a_if) as info:
                tc.attach_tc_filter(veth.a_if, prog)  # same priority and handle: the kernel says EEXIST
        finally:
            first.close()
            tc.remove_clsact_qdisc(veth.a_if)
    chain, exc = [], info.value
    while exc is not None:
        chain.append(exc)
        exc = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
    assert all(isinstance(e, EBPFError) for e in chain), [type(e) for e in chain]
    assert info.value.errno == errno.EEXIST


def test_xdp_state_views():
    state = xdp.XdpState(3, "eth9", "skb", 7, 0, 0)
    assert state.prog_ids == {"skb": 7} and state.attached
    assert not xdp.XdpState(3, "eth9", None, 0, 0, 0).attached


@pytest.mark.privileged
def test_feature_probes_are_registered_and_answer():
    probes = {p.name: p for p in plugins.feature_probes()}
    for name in ("net.xdp_link", "net.tcx", "net.netfilter_link", "net.sk_lookup"):
        assert probes[name].probe() is None  # all present on the kernels we test on (6.18)
