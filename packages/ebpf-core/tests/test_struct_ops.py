"""struct_ops against the real kernel: a TCP congestion control written with the assembler (its
callbacks count themselves in a map and call the kernel's Reno kfuncs) is registered, chosen for a
loopback connection with setsockopt(TCP_CONGESTION), observed working, swapped and unregistered."""

from __future__ import annotations

import errno
import os
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from ebpf.core import asm
from ebpf.core._sys import commands
from ebpf.core.asm import DW, R0, R1, R2, R3, R6, R10, W
from ebpf.core.btf import load_vmlinux
from ebpf.core.errors import BPFSyscallError, EBPFError
from ebpf.core.features import have_link_type
from ebpf.core.maps import Map, create_array_map
from ebpf.core.programs import Program, load_program
from ebpf.core.struct_ops import (
    StructOpsLink,
    StructOpsMap,
    create_struct_ops_map,
    have_struct_ops,
    list_struct_ops,
)
from ebpf.core.testing import require

pytestmark = pytest.mark.privileged
CONG_AVOID, SSTHRESH = 0, 1  # counter slots (a second algorithm uses 2, 3)


def cc_name(tag: str = "") -> str:
    return f"ebr{tag}{os.getpid()}"[:15]  # unique per test process: the registry is global


def kfunc(name: str) -> int:
    return int(load_vmlinux().find(name, "func").id)


def bump(counters: Map, slot: int) -> list[Any]:
    return [asm.mov64(R1, slot), asm.stx_mem(W, R10, R1, -4), asm.ld_map_fd(R1, counters), asm.mov64(R2, R10),
            asm.add64(R2, -4), asm.call("map_lookup_elem"), asm.jeq(R0, 0, f"skip{slot}"), asm.mov64(R1, 1),
            asm.atomic_add(DW, R0, R1), asm.label(f"skip{slot}")]


def reno_programs(counters: Map, base: int = 0) -> dict[str, Program]:
    """ssthresh, cong_avoid and undo_cwnd of Reno (through the kernel's tcp_reno_* kfuncs), counting calls."""
    ssthresh = [asm.mov64(R6, R1), *bump(counters, base + SSTHRESH), asm.ldx_mem(DW, R1, R6, 0),
                asm.kfunc_call(kfunc("tcp_reno_ssthresh")), asm.exit_()]
    cong_avoid = [asm.mov64(R6, R1), *bump(counters, base + CONG_AVOID), asm.ldx_mem(DW, R1, R6, 0),
                  asm.ldx_mem(W, R2, R6, 8), asm.ldx_mem(W, R3, R6, 16),
                  asm.kfunc_call(kfunc("tcp_reno_cong_avoid")), asm.mov64(R0, 0), asm.exit_()]
    undo = [asm.ldx_mem(DW, R1, R1, 0), asm.kfunc_call(kfunc("tcp_reno_undo_cwnd")), asm.exit_()]
    return {member: load_program(prog_type="struct_ops", attach_to=f"tcp_congestion_ops:{member}", insns=insns,
                                 name=member)
            for member, insns in (("ssthresh", ssthresh), ("cong_avoid", cong_avoid), ("undo_cwnd", undo))}


@pytest.fixture
def counters() -> Iterator[Map]:
    require(have_struct_ops, "tcp_congestion_ops")
    with create_array_map(4, value_size=8, name="cc_calls") as m:
        yield m


@pytest.fixture
def programs(counters: Map) -> Iterator[dict[str, Program]]:
    progs = reno_programs(counters)
    yield progs
    for p in progs.values():
        p.close()


def transfer(algorithm: str, megabytes: int = 8) -> str:
    """Send ``megabytes`` over a loopback TCP connection using ``algorithm``; returns the algorithm the
    sending socket reports (TCP_CONGESTION)."""
    with socket.create_server(("127.0.0.1", 0)) as srv, socket.socket() as c:
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, algorithm.encode())
        c.connect(srv.getsockname())
        peer, _ = srv.accept()

        def sink() -> None:
            with peer:
                while peer.recv(1 << 16):
                    pass

        t = threading.Thread(target=sink)
        t.start()
        chunk = bytes(1 << 16)
        for _ in range(megabytes * 16):
            c.sendall(chunk)
        used = c.getsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, 16).rstrip(b"\0").decode()
        c.shutdown(socket.SHUT_WR)
        t.join(timeout=60)
        assert not t.is_alive()
    return used


def selectable(algorithm: str) -> bool:
    with socket.socket() as s:
        try:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, algorithm.encode())
        except OSError as exc:
            assert exc.errno == errno.ENOENT
            return False
    return True


def test_list_struct_ops_from_btf() -> None:
    require(have_struct_ops, "tcp_congestion_ops")
    assert "tcp_congestion_ops" in list_struct_ops()


@pytest.fixture
def linkable() -> None:
    require(have_link_type, "struct_ops")  # BPF_F_LINK struct_ops maps: Linux >= 6.4


def test_congestion_control_in_asm_through_a_link(counters: Map, programs: dict[str, Program], linkable: None) -> None:
    name = cc_name()
    with create_struct_ops_map("tcp_congestion_ops", "ebr_asm", members={"name": name, **programs}) as ops:
        assert not selectable(name)
        link = ops.register()
        assert isinstance(link, StructOpsLink) and link.info().map_id == ops.info().id
        with link:
            assert transfer(name) == name  # the connection runs our algorithm
            assert counters[CONG_AVOID] > 0
        assert not selectable(name)  # unregistered: new sockets can no longer choose it
        before = counters[CONG_AVOID]
        assert transfer("reno") == "reno" and counters[CONG_AVOID] == before


def test_congestion_control_by_map_update(counters: Map, programs: dict[str, Program]) -> None:
    name = cc_name("u")
    ops = create_struct_ops_map("tcp_congestion_ops", "ebr_upd", link=False)
    ops.set(name=name, **programs)
    with ops:
        with ops.register():
            assert selectable(name) and transfer(name, 2) == name and counters[CONG_AVOID] > 0
        assert not selectable(name)
        with pytest.raises(EBPFError, match="registered by update once"):
            ops.register()
    again = create_struct_ops_map("tcp_congestion_ops", "ebr_upd2", link=False, members={"name": name, **programs})
    again.register()
    assert selectable(name)
    again.close()  # closing the map unregisters too
    assert not selectable(name)


def test_link_update_swaps_the_algorithm(counters: Map, programs: dict[str, Program], linkable: None) -> None:
    name = cc_name("s")
    second = reno_programs(counters, base=2)
    try:
        with create_struct_ops_map("tcp_congestion_ops", "ebr_a", members={"name": name, **programs}) as a, \
                create_struct_ops_map("tcp_congestion_ops", "ebr_b", members={"name": name, **second}) as b, \
                a.register() as link:
            transfer(name, 2)
            first_calls = counters[CONG_AVOID]
            assert first_calls > 0 and counters[2 + CONG_AVOID] == 0
            link.update(b)
            assert link.info().map_id == b.info().id
            transfer(name, 2)
            assert counters[2 + CONG_AVOID] > 0 and counters[CONG_AVOID] == first_calls
            with create_struct_ops_map("tcp_congestion_ops", link=False) as legacy, \
                    pytest.raises(EBPFError, match="link=True"):
                link.update(legacy)
        assert not selectable(name)
    finally:
        for p in second.values():
            p.close()


# --- bad input: clear errors, nothing created or registered -----------------------------------


@pytest.fixture
def no_syscalls(monkeypatch: pytest.MonkeyPatch) -> None:
    require(have_struct_ops, "tcp_congestion_ops")  # probe first (cached): it creates a map

    def refuse(*args: object) -> int:
        raise AssertionError("a map was created for bad input")

    monkeypatch.setattr(commands, "map_create", refuse)


def test_a_struct_ops_type_that_does_not_exist(no_syscalls: None) -> None:
    with pytest.raises(EBPFError, match=r"no struct_ops type 'no_such_ops'.* it knows: .*tcp_congestion_ops"):
        create_struct_ops_map("no_such_ops")
    with pytest.raises(EBPFError, match="must be a name"):
        create_struct_ops_map("")


def test_bad_members(programs: dict[str, Program], no_syscalls: None) -> None:
    def bad(match: str, **members: Any) -> None:
        with pytest.raises(EBPFError, match=match):
            create_struct_ops_map("tcp_congestion_ops", members=members)

    bad("name is not a function pointer", name=programs["ssthresh"])
    bad("flags is not a function pointer", flags=programs["ssthresh"])
    bad("has no member 'nope'", nope=1)
    bad("is a function pointer: give a Program", ssthresh=5)
    bad("too long", name="x" * 16)
    bad("was loaded for 'tcp_congestion_ops:ssthresh', not 'tcp_congestion_ops:cong_avoid'",
        cong_avoid=programs["ssthresh"])
    bad("takes an int", flags="1")
    bad("does not fit", flags=1 << 40)
    with load_program(prog_type="socket_filter", insns=[asm.mov64(R0, 0), asm.exit_()]) as sf:
        bad("needs a struct_ops program", ssthresh=sf)


def test_a_table_the_kernel_refuses_is_not_registered(counters: Map, programs: dict[str, Program],
                                                      linkable: None) -> None:
    name = cc_name("m")
    ops: StructOpsMap
    with create_struct_ops_map("tcp_congestion_ops", "ebr_bad", members={"name": name,
                                                                           "ssthresh": programs["ssthresh"]}) as ops:
        with pytest.raises(BPFSyscallError, match=r"required member may be missing.*cong_avoid"):
            ops.register()  # Reno needs cong_avoid and undo_cwnd too
        assert not selectable(name)
        ops.set(cong_avoid=programs["cong_avoid"], undo_cwnd=programs["undo_cwnd"])
        with ops.register():
            assert selectable(name)
            with pytest.raises(EBPFError, match="already registered"):
                ops.register()
            with pytest.raises(EBPFError, match="members are fixed"):
                ops.set(flags=0)
        assert not selectable(name)
        with ops.register():  # a link=True map registers again through a new link
            assert selectable(name)
    assert not selectable(name)
