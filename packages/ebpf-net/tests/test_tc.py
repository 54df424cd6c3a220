"""TC: clsact filters and TCX links, observed on traffic between two private namespaces."""

from __future__ import annotations

import pytest
from ebpf.core.asm import DW, R0, R1, add64, label, ldx_mem, mul64, stx_mem
from ebpf.core.errors import AttachError
from ebpf.core.programs import load_program
from ebpf.core.testing import require
from ebpf.net import features, tc
from ebpf.net.tc import TcAction

pytestmark = pytest.mark.privileged


def _drop_udp_port(progs, port: int) -> list:
    return progs.udp_port_verdict(port, TcAction.SHOT, TcAction.OK)


def test_egress_filter_drops_one_port_and_passes_another(veth, progs):
    with tc.load_tc_program(_drop_udp_port(progs, 5001), name="drop5001") as prog:
        with veth.b():
            link = tc.attach_tc_filter(veth.b_if, prog, "egress")
        try:
            assert veth.send_udp("a", 5001) == 0
            assert veth.send_udp("a", 5002) == 5
        finally:
            link.close()
        assert veth.send_udp("a", 5001) == 5
        with veth.b():
            assert tc.list_tc_filters(veth.b_if, "egress") == []
            tc.remove_clsact_qdisc(veth.b_if)


def test_ingress_filter_counts_packets_and_is_listed(veth, progs, counter):
    with tc.load_tc_program(progs.counting(counter, TcAction.OK), name="count_in") as prog:
        with veth.a():
            setup = tc.setup_tc_ingress(veth.a_if, prog, priority=3, handle=7)
            filters = tc.list_tc_filters(veth.a_if, "ingress")
            prog_id = prog.info().id
            assert tc.list_tc_filters(veth.a_if, "egress") == []
        try:
            assert veth.send_udp("a", 5003) == 5
            assert counter[0] >= 5
        finally:
            with veth.a():
                tc.teardown_tc_filter(setup)
                tc.teardown_tc_filter(setup)  # twice is harmless
                assert not tc.has_clsact_qdisc(veth.a_if)  # the setup made the qdisc, so it removed it
    assert len(filters) == 1
    f = filters[0]
    assert (f.priority, f.handle, f.direction) == (3, 7, "ingress")
    assert f.prog_id == prog_id
    assert f.prog_name == "count_in" and f.name == "count_in" and f.direct_action


def test_setup_with_instructions_and_context_manager(veth, progs):
    with veth.b(), tc.tc_filter(veth.b_if, _drop_udp_port(progs, 5004), "egress", name="ctx") as setup:
        assert setup.owns_program and setup.created_qdisc
        assert [f.name for f in tc.list_tc_filters(veth.b_if, "egress")] == ["ctx"]
        assert veth.send_udp("a", 5004) == 0
    assert setup.program.closed
    assert veth.send_udp("a", 5004) == 5
    with veth.b():
        assert not tc.has_clsact_qdisc(veth.b_if)


def test_two_filters_and_detach_by_priority(veth, progs):
    with tc.load_tc_program(progs.ret(TcAction.OK)) as ok, veth.a():
        assert tc.add_clsact_qdisc(veth.a_if) is True
        try:
            first = tc.attach_tc_filter(veth.a_if, ok, "ingress", priority=1, handle=1, create_qdisc=False)
            second = tc.attach_tc_filter(veth.a_if, ok, "ingress", priority=2, handle=1, name="second")
            assert [(f.priority, f.name) for f in tc.list_tc_filters(veth.a_if)] == [(1, ok.name), (2, "second")]
            tc.detach_tc_filter(veth.a_if, "ingress", priority=2, handle=1)
            assert [f.priority for f in tc.list_tc_filters(veth.a_if)] == [1]
            second.close()  # its filter is gone already: nothing to do, no error
            with pytest.raises(AttachError, match=f"priority 1 and handle 1.*{veth.a_if}|{veth.a_if}"):
                tc.attach_tc_filter(veth.a_if, ok, "ingress", priority=1, handle=1)  # taken: EEXIST
            first.close()
            assert tc.list_tc_filters(veth.a_if) == []
        finally:
            tc.remove_clsact_qdisc(veth.a_if)


def test_program_attach_dispatches_to_tc_backend(veth, progs):
    with tc.load_tc_program(_drop_udp_port(progs, 5005)) as prog:
        with veth.b():
            link = prog.attach(veth.b_if, direction="egress", priority=9)
            assert [f.priority for f in tc.list_tc_filters(veth.b_if, "egress")] == [9]
        try:
            assert veth.send_udp("a", 5005) == 0
        finally:
            link.close()


def _append_digit(progs, counter, digit: int) -> list:
    # counter[0] = counter[0] * 10 + digit; return TCX_NEXT
    return [
        *progs.lookup_slot0(counter, "out"),
        ldx_mem(DW, R1, R0, 0), mul64(R1, 10), add64(R1, digit), stx_mem(DW, R0, R1, 0),
        label("out"), *progs.ret(TcAction.NEXT),
    ]  # fmt: skip


def test_tcx_programs_run_in_the_requested_order(veth, progs, counter):
    require(features.probe_tcx)
    one = load_program(prog_type="sched_cls", insns=_append_digit(progs, counter, 1), name="tcx_one",
                       expected_attach_type="tcx_ingress")  # fmt: skip
    two = load_program(prog_type="sched_cls", insns=_append_digit(progs, counter, 2), name="tcx_two",
                       expected_attach_type="tcx_ingress")  # fmt: skip
    with one, two:
        with veth.a():
            link_one = tc.attach_tcx(veth.a_if, one, "ingress")
            link_two = tc.attach_tcx(veth.a_if, two, "ingress", before=link_one)
            order = tc.query_tcx(veth.a_if, "ingress")
        with link_one, link_two:
            assert order == [two.info().id, one.info().id]
            assert veth.send_udp("a", 5006, count=1) == 1
            assert counter[0] == 21  # two ran first, then one
        with veth.a():
            assert tc.query_tcx(veth.a_if, "ingress") == []


def test_tcx_after_by_program_id_and_plugin_dispatch(veth, progs, counter):
    require(features.probe_tcx)
    one = load_program(
        prog_type="sched_cls", insns=_append_digit(progs, counter, 1), expected_attach_type="tcx_ingress"
    )
    two = load_program(
        prog_type="sched_cls", insns=_append_digit(progs, counter, 2), expected_attach_type="tcx_ingress"
    )
    with one, two:
        with veth.a():
            link_two = two.attach(veth.a_if)  # TCX attach type -> a TCX link
            link_one = tc.attach_tcx(veth.a_if, one, "ingress", before=two.info().id)
            link_one.close()
            link_one = tc.attach_tcx(veth.a_if, one, "ingress", after=two)
            assert tc.query_tcx(veth.a_if) == [two.info().id, one.info().id]
            assert tc.list_tc_filters(veth.a_if) == []  # TCX needs no qdisc
        with link_one, link_two:
            assert veth.send_udp("a", 5007, count=1) == 1
            assert counter[0] == 21


def test_tc_bad_input(veth, progs):
    with tc.load_tc_program(progs.ret(0)) as prog, veth.a():
        with pytest.raises(AttachError, match="nosuchif0"):
            tc.attach_tc_filter("nosuchif0", prog)
        with pytest.raises(AttachError, match="direction"):
            tc.attach_tc_filter(veth.a_if, prog, "sideways")
        with pytest.raises(AttachError, match="priority"):
            tc.attach_tc_filter(veth.a_if, prog, priority=0)
        with pytest.raises(AttachError, match="no clsact"):
            tc.attach_tc_filter(veth.a_if, prog, create_qdisc=False)
        with pytest.raises(AttachError, match=f"{veth.a_if} has no clsact"):
            tc.remove_clsact_qdisc(veth.a_if)
        with pytest.raises(AttachError, match="no ingress filter"):
            tc.detach_tc_filter(veth.a_if, "ingress", 1, 1)
        tc.add_clsact_qdisc(veth.a_if)
        try:
            with pytest.raises(AttachError, match="already has a clsact"):
                tc.add_clsact_qdisc(veth.a_if)
            assert tc.add_clsact_qdisc(veth.a_if, exist_ok=True) is False
        finally:
            tc.remove_clsact_qdisc(veth.a_if)
        with pytest.raises(AttachError, match="give before= or after="):
            tc.attach_tcx(veth.a_if, prog, before=1, after=2)
        assert not tc.has_clsact_qdisc(veth.a_if)
    with pytest.raises(Exception, match="sched_cls or sched_act"):
        tc.load_tc_program(progs.ret(0), prog_type="xdp")


def test_wrong_program_type_leaves_nothing(veth, progs):
    with load_program(prog_type="xdp", insns=progs.ret(2)) as prog, veth.a():
        with pytest.raises(AttachError, match="sched_cls"):
            tc.attach_tc_filter(veth.a_if, prog)
        with pytest.raises(AttachError, match="sched_cls"):
            tc.attach_tcx(veth.a_if, prog)
        assert not tc.has_clsact_qdisc(veth.a_if)


def test_netlink_failure_becomes_our_error(veth, progs):
    # A kernel refusal inside pyroute2 (the tcx anchor program is not attached: ENOENT) is ours.
    with tc.load_tc_program(progs.ret(0)) as a, tc.load_tc_program(progs.ret(0)) as b, veth.a():
        with pytest.raises(AttachError, match=veth.a_if) as info:
            tc.attach_tcx(veth.a_if, a, before=b)
        assert tc.query_tcx(veth.a_if) == []
    assert info.value.errno  # the kernel's errno is kept
