"""XDP: drop/pass traffic between two private namespaces, through BPF links and netlink."""

from __future__ import annotations

import pytest
from ebpf.core.asm import DW, R0, R1, R2, R10, W, add64, atomic_add, call, exit_, jeq, label, ld_map_fd, mov64, stx_mem
from ebpf.core.errors import AttachError
from ebpf.core.programs import load_program
from ebpf.net import xdp
from ebpf.net.xdp import XdpAction

pytestmark = pytest.mark.privileged


@pytest.mark.parametrize("method", ["link", "netlink"])
def test_xdp_drop_stops_udp_and_counts_then_pass_restores(veth, progs, counter, method):
    assert veth.send_udp("a", 4000) == 5  # the world works before anything is attached
    drop = xdp.load_xdp_program(progs.counting(counter, XdpAction.DROP), name="count_drop")
    allow = xdp.load_xdp_program(progs.ret(XdpAction.PASS), name="pass")
    with drop, allow:
        with veth.a():
            link = xdp.attach_xdp(veth.a_if, drop, mode="skb", method=method)
            state = xdp.query_xdp(veth.a_if)
        assert state.mode == "skb" and state.prog_ids == {"skb": drop.info().id}
        assert veth.send_udp("a", 4000) == 0
        assert counter[0] >= 5
        with veth.a():
            link.close()
            assert not xdp.query_xdp(veth.a_if).attached
            with xdp.attach_xdp(veth.a_if, allow, method=method):
                assert veth.send_udp("a", 4000) == 5
            assert not xdp.query_xdp(veth.a_if).attached  # detach leaves the interface clean


def test_xdp_netlink_detach_from_another_namespace_still_hits_the_right_device(veth, progs):
    with xdp.load_xdp_program(progs.ret(XdpAction.DROP)) as prog:
        with veth.a():
            link = xdp.attach_xdp(veth.a_if, prog, method="netlink")
        link.close()  # back in the test's own namespace
        with veth.a():
            assert not xdp.query_xdp(veth.a_if).attached
        assert veth.send_udp("a", 4001) == 5


def test_xdp_link_update_swaps_program_in_place(veth, progs, counter):
    with xdp.load_xdp_program(progs.ret(XdpAction.DROP)) as drop, xdp.load_xdp_program(progs.ret(XdpAction.PASS)) as ok:
        with veth.a():
            link = xdp.attach_xdp(veth.a_if, drop, method="link")
        try:
            assert veth.send_udp("a", 4002) == 0
            link.update(ok)
            with veth.a():
                assert xdp.query_xdp(veth.a_if).skb_prog_id == ok.info().id
            assert veth.send_udp("a", 4002) == 5
        finally:
            link.close()


def test_detach_xdp_removes_netlink_program_and_refuses_link_held_one(veth, progs):
    with xdp.load_xdp_program(progs.ret(XdpAction.DROP)) as prog, veth.a():
        link = xdp.attach_xdp(veth.a_if, prog, method="netlink")  # kept: a collected link detaches
        xdp.detach_xdp(veth.a_if)
        assert not xdp.query_xdp(veth.a_if).attached
        link.close()  # nothing left to do, and no error
        with xdp.attach_xdp(veth.a_if, prog, method="link"):
            with pytest.raises(AttachError, match=veth.a_if):
                xdp.detach_xdp(veth.a_if, mode="skb")
            assert xdp.query_xdp(veth.a_if).attached  # still there: it belongs to the link
        with pytest.raises(AttachError, match="no XDP program is attached"):
            xdp.detach_xdp(veth.a_if)


def test_netlink_attach_refuses_to_clobber_unless_replace(veth, progs):
    with xdp.load_xdp_program(progs.ret(1)) as one, xdp.load_xdp_program(progs.ret(2)) as two, veth.a():
        first = xdp.attach_xdp(veth.a_if, one, method="netlink")
        with pytest.raises(AttachError, match=veth.a_if):
            xdp.attach_xdp(veth.a_if, two, method="netlink")
        assert xdp.query_xdp(veth.a_if).skb_prog_id == one.info().id
        second = xdp.attach_xdp(veth.a_if, two, method="netlink", replace=True)
        first.close()  # not ours any more: leaves the replacement alone
        assert xdp.query_xdp(veth.a_if).skb_prog_id == two.info().id
        second.close()
        assert not xdp.query_xdp(veth.a_if).attached


def test_xdp_program_context_manager_loads_attaches_and_cleans_up(veth, progs):
    with veth.a(), xdp.xdp_program(veth.a_if, progs.ret(XdpAction.DROP), name="ctx_drop") as link:
        assert link.program is not None and link.program.name == "ctx_drop"
        assert xdp.query_xdp(veth.a_if).attached
    assert veth.send_udp("a", 4003) == 5
    with veth.a():
        assert not xdp.query_xdp(veth.a_if).attached


def test_program_attach_dispatches_to_xdp_backend(veth, progs):
    with xdp.load_xdp_program(progs.ret(XdpAction.DROP)) as prog:
        with veth.a():
            link = prog.attach(veth.a_if, mode="skb")
        try:
            assert veth.send_udp("a", 4004) == 0
        finally:
            link.close()
        assert veth.send_udp("a", 4004) == 5


def test_interface_name_index_round_trip(veth):
    with veth.a():
        index = xdp.interface_name_to_index(veth.a_if)
        assert xdp.interface_index_to_name(index) == veth.a_if
        assert xdp.interface_name_to_index("lo") == 1


@pytest.mark.parametrize("bad", ["", "x" * 16, "a/b", "has space", 0, -1, 2**40, 1.5, None, True])
def test_bad_interfaces_are_refused_before_any_syscall(bad):
    with pytest.raises(AttachError):
        xdp.interface_name_to_index(bad) if isinstance(bad, str) else xdp.interface_index_to_name(bad)


def test_missing_interface_is_named(progs):
    with xdp.load_xdp_program(progs.ret(2)) as prog, pytest.raises(AttachError, match="nosuchif0"):
        xdp.attach_xdp("nosuchif0", prog)


def test_wrong_program_type_is_refused(veth, progs):
    with load_program(prog_type="sched_cls", insns=progs.ret(0), name="not_xdp") as prog, veth.a():
        with pytest.raises(AttachError, match="xdp program"):
            xdp.attach_xdp(veth.a_if, prog)
        assert not xdp.query_xdp(veth.a_if).attached


@pytest.mark.parametrize("method", ["link", "netlink"])
def test_driver_mode_on_loopback_is_a_clear_error_and_leaves_nothing(veth, progs, method):
    # lo has no native XDP: drv mode must fail, naming the interface, with nothing attached.
    with xdp.load_xdp_program(progs.ret(2)) as prog, veth.a():
        with pytest.raises(AttachError, match=r"lo.*(EOPNOTSUPP|ENOTSUP)"):
            xdp.attach_xdp("lo", prog, mode="drv", method=method)
        assert not xdp.query_xdp("lo").attached


def test_bad_mode_and_method(veth, progs):
    with xdp.load_xdp_program(progs.ret(2)) as prog:
        with pytest.raises(AttachError, match="mode"):
            xdp.attach_xdp("lo", prog, mode="turbo")
        with pytest.raises(AttachError, match="method"):
            xdp.attach_xdp("lo", prog, method="carrier-pigeon")
        with pytest.raises(AttachError, match="closed"):
            prog.close()
            xdp.attach_xdp("lo", prog)


def test_detach_of_nothing_is_an_error(veth):
    with veth.a(), pytest.raises(AttachError, match=veth.a_if):
        xdp.detach_xdp(veth.a_if, mode="skb")


def test_redirect_maps():
    with xdp.create_devmap(4) as dev, xdp.create_cpumap(2) as cpu, xdp.create_xskmap(2) as xsk:
        assert (dev.map_type.name, cpu.map_type.name, xsk.map_type.name) == ("DEVMAP", "CPUMAP", "XSKMAP")
        dev.update_bytes((0).to_bytes(4, "little"), (1).to_bytes(4, "little"))  # slot 0 -> lo
        assert dev.lookup_bytes((0).to_bytes(4, "little")) == (1).to_bytes(4, "little")
    with xdp.create_devmap(4, hashed=True) as h:
        assert h.map_type.name == "DEVMAP_HASH"
    with pytest.raises(Exception, match="max_entries"):
        xdp.create_devmap(0)


def test_program_written_with_the_core_assembler_counts_and_drops(veth, counter):
    insns = [
        mov64(R0, 0), stx_mem(W, R10, R0, -4),
        ld_map_fd(R1, counter), mov64(R2, R10), add64(R2, -4), call("map_lookup_elem"),
        jeq(R0, 0, "out"), mov64(R1, 1), atomic_add(DW, R0, R1),
        label("out"), mov64(R0, XdpAction.DROP), exit_(),
    ]  # fmt: skip
    with xdp.load_xdp_program(insns, name="asm_drop") as prog:
        with veth.a():
            link = xdp.attach_xdp(veth.a_if, prog)
        with link:
            assert veth.send_udp("a", 4005, count=3) == 0
    assert counter[0] >= 3
