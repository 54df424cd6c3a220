"""One setup/teardown contract for TC and cgroup (LSM: ebpf-security's tests): every ``setup_*``
returns an :class:`ebpf.core.fdowner.Setup` — a context manager whose ``close()`` detaches and
releases everything it made, twice harmlessly — and ``teardown_*(s)`` is ``s.close()``."""

from __future__ import annotations

import os

import pytest
from ebpf.core.errors import EBPFError
from ebpf.core.fdowner import Setup
from ebpf.net import cgroup, tc
from ebpf.net.tc import TcAction


def test_tc_setup_is_a_context_manager_that_undoes_everything(veth, progs):
    with veth.b():  # the setup and its teardown act on the namespace's interface
        setup = tc.setup_tc_egress(veth.b_if, progs.udp_port_verdict(5006, TcAction.SHOT, TcAction.OK), name="contract")
        assert isinstance(setup, Setup) and not setup.closed
        with setup as same:
            assert same is setup
            assert veth.send_udp("a", 5006) == 0  # dropped while set up
        assert setup.closed and setup.program.closed
        assert not tc.has_clsact_qdisc(veth.b_if)  # the qdisc the setup added is gone too
        tc.teardown_tc_filter(setup)  # teardown is close(): again is harmless
        setup.close()
    assert veth.send_udp("a", 5006) == 5


def test_cgroup_setup_closes_like_teardown_even_when_the_link_was_pinned(cgroup_dir, progs):
    setup = cgroup.setup_cgroup_skb(cgroup_dir, progs.ret(1), "egress", name="contract")
    prog_id = setup.program.info().id
    pin = f"/sys/fs/bpf/ebpf-net-contract-{os.getpid()}"
    assert isinstance(setup, Setup)
    try:
        setup.link.pin(pin)  # someone pinned the link: teardown still ends the attachment
        assert cgroup.query_cgroup_programs(cgroup_dir, "egress") == [prog_id]
        with setup:
            pass
        assert setup.closed and setup.program.closed
        assert cgroup.query_cgroup_programs(cgroup_dir, "egress") == []
        cgroup.teardown_cgroup_program(setup)
    finally:
        if os.path.exists(pin):
            os.unlink(pin)
        setup.close()


def test_teardown_functions_are_close_and_refuse_other_objects(cgroup_dir, progs):
    setup = cgroup.setup_cgroup_skb(cgroup_dir, progs.ret(1), "ingress", name="contract")
    cgroup.teardown_cgroup_program(setup)
    assert setup.closed and cgroup.query_cgroup_programs(cgroup_dir, "ingress") == []
    with pytest.raises(EBPFError, match="needs a CgroupSetup"):
        cgroup.teardown_cgroup_program(object())  # type: ignore[arg-type]
    with pytest.raises(EBPFError, match="needs a TcSetup"):
        tc.teardown_tc_filter(setup)  # type: ignore[arg-type]
