"""Links: raw tracepoint, tp_btf, cgroup and perf event links observed through a map counter."""

from __future__ import annotations

import ctypes
import errno
import os
import struct
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import TypeVar

import pytest
from ebpf.core._sys import commands
from ebpf.core._sys import perf as sysperf
from ebpf.core._sys.attrs import MapCreateAttr, MapElemAttr
from ebpf.core._sys.syscall import Cmd, bpf, close_fd, libc
from ebpf.core.errors import BPFSyscallError, EBPFError, NotSupportedError
from ebpf.core.features import have_link_type, have_perf_event_link_info
from ebpf.core.links import (
    BPFLink,
    CallbackLink,
    Link,
    PerfEventLink,
    attach_perf_event,
    attach_raw_tracepoint,
    create_link,
    enable_stats,
    links,
)
from ebpf.core.programs import Program, load_program
from ebpf.core.testing import require, wait_for
from ebpf.core.types import AttachType, LinkType

pytestmark = pytest.mark.privileged
T = TypeVar("T")


def insn(op: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    """One raw BPF instruction."""
    return struct.pack("<BBhi", op, (src << 4) | dst, off, imm)


def ret(value: int) -> bytes:
    return insn(0xB7, 0, imm=value) + insn(0x95)


class Counter:
    """A one-slot u64 array map, and a program text that adds 1 to it."""

    def __init__(self) -> None:
        self.fd = commands.map_create(MapCreateAttr(map_type=2, key_size=4, value_size=8, max_entries=1))

    def program_text(self, retval: int = 0) -> bytes:
        return b"".join([
            insn(0x62, 10, 0, -4, 0),  # *(u32 *)(r10 - 4) = 0
            insn(0x18, 1, 1, imm=self.fd), insn(0),  # r1 = map
            insn(0xBF, 2, 10),  # r2 = r10
            insn(0x07, 2, imm=-4),  # r2 += -4
            insn(0x85, imm=1),  # call map_lookup_elem
            insn(0x15, 0, off=2, imm=0),  # if r0 == 0 goto +2
            insn(0xB7, 1, imm=1),  # r1 = 1
            insn(0xDB, 0, 1, 0, 0),  # lock *(u64 *)(r0 + 0) += r1
            ret(retval),
        ])

    @property
    def value(self) -> int:
        key, val = ctypes.c_uint32(0), ctypes.c_uint64(0)
        bpf(Cmd.MAP_LOOKUP_ELEM, MapElemAttr(map_fd=self.fd, key=ctypes.addressof(key), value=ctypes.addressof(val)))
        return val.value

    def close(self) -> None:
        close_fd(self.fd)


@pytest.fixture
def counter() -> Iterator[Counter]:
    c = Counter()
    yield c
    c.close()


def syscalls(n: int = 20) -> None:
    for _ in range(n):
        os.getppid()


def test_raw_tracepoint_link_counts_and_reports(counter: Counter, pin_dir: str) -> None:
    with load_program(prog_type="raw_tracepoint", insns=counter.program_text(), name="count_sys") as prog:
        link = attach_raw_tracepoint(prog, "sys_enter")
        with link:
            syscalls()
            assert counter.value > 0
            info = link.info()
            assert info.type is LinkType.RAW_TRACEPOINT
            assert info.tp_name == "sys_enter"
            assert info.prog_id == prog.info().id
            assert info.id in {i.id for i in links()}
            path = os.path.join(pin_dir, "link")
            link.pin(path)
            with Link.from_pinned(path) as pinned:
                assert pinned.info().id == info.id
            with Link.from_id(info.id) as by_id, Link.from_fd(link.fd) as by_fd:
                assert by_id.info().tp_name == "sys_enter" and by_fd.info().id == info.id
            with pytest.raises(BPFSyscallError):
                link.update(prog)  # raw tracepoint links cannot swap programs
            link.detach()  # pinned, and raw tracepoints have no BPF_LINK_DETACH: the pin goes too
            assert not os.path.exists(path)
        assert link.closed
        assert info.id not in {i.id for i in links()}
        before = counter.value
        syscalls()
        assert counter.value == before


def test_tp_btf_link(counter: Counter) -> None:
    with load_program(prog_type="tracing", expected_attach_type="trace_raw_tp", attach_to="sys_enter",
                      insns=counter.program_text()) as prog, attach_raw_tracepoint(prog) as link:
        syscalls()
        assert counter.value > 0
        info = link.info()
        # The kernel reports tp_btf attachments as raw tracepoint links.
        assert info.type is LinkType.RAW_TRACEPOINT
        assert info.tp_name == "sys_enter"
        assert info.prog_id == prog.info().id


def _cgroup2_root() -> str:
    with open("/proc/mounts") as f:
        for line in f:
            _dev, mnt, fstype = line.split()[:3]
            if fstype == "cgroup2":
                return mnt
    raise AssertionError("no cgroup2 mount")


@pytest.fixture
def cgroup_fd() -> Iterator[tuple[int, str]]:
    path = os.path.join(_cgroup2_root(), f"ebpf-test-{uuid.uuid4().hex[:8]}")
    os.mkdir(path)
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        yield fd, path
    finally:
        os.close(fd)
        os.rmdir(path)


def test_cgroup_link_info_update_detach(cgroup_fd: tuple[int, str]) -> None:
    require(have_link_type, "cgroup")
    fd, path = cgroup_fd
    with load_program(prog_type="cgroup_skb", insns=ret(1), name="allow") as first, \
            load_program(prog_type="cgroup_skb", insns=ret(1), name="allow2") as second:
        link = create_link(first, fd, "cgroup_inet_egress")
        assert isinstance(link, BPFLink)
        info = link.info()
        assert info.type is LinkType.CGROUP
        assert info.attach_type is AttachType.CGROUP_INET_EGRESS
        assert info.cgroup_id == os.stat(path).st_ino
        assert commands.prog_query(fd, AttachType.CGROUP_INET_EGRESS)[0] == [first.info().id]
        link.update(second)
        assert link.info().prog_id == second.info().id and link.program is second
        with pytest.raises(BPFSyscallError):
            link.update(first, old_program=first)  # first is no longer the attached one
        link.detach()
        assert commands.prog_query(fd, AttachType.CGROUP_INET_EGRESS)[0] == []
        link.close()


def test_perf_event_link_on_a_tracepoint(counter: Counter) -> None:
    require(have_link_type, "perf_event")
    require(have_perf_event_link_info)  # the tracepoint's name in the link's info
    perf_fd = sysperf.open_tracepoint("syscalls", "sys_enter_getppid", pid=0, cpu=-1)
    with load_program(prog_type="tracepoint", insns=counter.program_text(), name="getppid") as prog:
        with attach_perf_event(prog, perf_fd) as link:
            assert isinstance(link, PerfEventLink) and link.bpf_link_fd >= 0
            syscalls(5)
            assert counter.value == 5
            info = link.info()
            assert info.type is LinkType.PERF_EVENT
            assert info.perf_event_type == "tracepoint"
            assert info.tp_name == "sys_enter_getppid"
        assert link.closed and link.fd == -1
        syscalls(5)
        assert counter.value == 5


def test_perf_event_link_with_set_bpf(counter: Counter) -> None:
    perf_fd = sysperf.open_tracepoint("syscalls", "sys_enter_getppid", pid=0, cpu=-1)
    with load_program(prog_type="tracepoint", insns=counter.program_text()) as prog:
        sysperf.set_bpf(perf_fd, prog.fd)
        sysperf.enable(perf_fd)
        with PerfEventLink(perf_fd, prog, description="legacy") as link:
            syscalls(3)
            assert counter.value == 3
            assert link.fd == perf_fd
            with pytest.raises(NotSupportedError, match="no bpf link"):
                link.info()
            with pytest.raises(NotSupportedError):
                link.pin("/sys/fs/bpf/x")


def test_callback_link_runs_once() -> None:
    calls: list[int] = []
    with CallbackLink(lambda: calls.append(1), description="fake netlink") as link:
        assert link.fd == -1
        with pytest.raises(NotSupportedError, match="cannot be pinned"):
            link.pin("/sys/fs/bpf/nope")
        with pytest.raises(NotSupportedError):
            link.info()
        with pytest.raises(NotSupportedError):
            link.update(None)  # type: ignore[arg-type]
    link.close()
    assert calls == [1] and link.closed


def test_enable_stats_counts_runs() -> None:
    with load_program(prog_type="xdp", insns=ret(2)) as prog:
        with enable_stats() as stats:
            assert stats.active
            prog.test_run(b"\0" * 64, repeat=3)
        assert not stats.active
        assert prog.info().run_cnt >= 3


def test_bad_input() -> None:
    with load_program(prog_type="xdp", insns=ret(2)) as xdp, load_program(prog_type="raw_tracepoint",
                                                                           insns=ret(0)) as raw:
        with pytest.raises(EBPFError, match="cannot be attached with BPF_RAW_TRACEPOINT_OPEN"):
            attach_raw_tracepoint(xdp, "sys_enter")
        with pytest.raises(EBPFError, match="need a tracepoint name"):
            attach_raw_tracepoint(raw)
        with pytest.raises(BPFSyscallError) as exc:
            attach_raw_tracepoint(raw, "no_such_tracepoint_xyz")
        assert exc.value.errno == errno.ENOENT
        with pytest.raises(EBPFError, match="target_fd"):
            create_link(xdp, -1, "xdp")
        with pytest.raises(EBPFError, match="unknown AttachType"):
            create_link(xdp, 1, "nope")
        with pytest.raises(EBPFError, match="MapCreateAttr is not a BPF_LINK_CREATE variant"):
            create_link(xdp, 1, "xdp", extra=MapCreateAttr())
        with pytest.raises(EBPFError, match="positive int"):
            Link.from_id(0)
        with pytest.raises(EBPFError, match="not a bpf link"):
            Link.from_fd(xdp.fd)


def test_from_pinned_of_a_program(pin_dir: str) -> None:
    path = os.path.join(pin_dir, "prog")
    with load_program(prog_type="xdp", insns=ret(2)) as prog:
        prog.pin(path)
    with pytest.raises(EBPFError, match="holds a program, not a link"):
        Link.from_pinned(path)
    with Program.from_pinned(path) as again:
        assert again.prog_type.lower_name == "xdp"


def test_closed_link_use() -> None:
    with load_program(prog_type="raw_tracepoint", insns=ret(0)) as prog:
        link = attach_raw_tracepoint(prog, "sys_enter")
        link.close()
        link.close()
        with pytest.raises(EBPFError, match="closed"):
            link.info()
        assert "closed" in repr(link)


def test_pinned_link_outlives_its_handle(pin_dir: str, counter: Counter) -> None:
    path = os.path.join(pin_dir, "kept")
    with load_program(prog_type="raw_tracepoint", insns=counter.program_text()) as prog, \
            attach_raw_tracepoint(prog, "sys_enter") as link:
        link.pin(path)
    # handle and program closed: the pin keeps the attachment alive
    before = counter.value
    syscalls()
    wait_for(lambda: counter.value > before, what="a sys_enter counted through the pinned link")
    with Link.from_pinned(path) as again:
        again.detach()
    assert not os.path.exists(path)


def in_private_netns(body: Callable[[], T]) -> T:
    """Run ``body`` on a thread moved to a fresh network namespace (its ``lo`` is ifindex 1)."""
    result: list[object] = []

    def run() -> None:
        try:
            if libc.unshare(0x40000000) != 0:  # CLONE_NEWNET, for this thread only
                raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNET)")
            result.append(body())
        except BaseException as exc:
            result.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if isinstance(result[0], BaseException):
        raise result[0]
    return result[0]  # type: ignore[return-value]


def test_xdp_link_on_loopback_of_a_private_netns() -> None:
    require(have_link_type, "xdp")

    def body() -> None:
        with load_program(prog_type="xdp", insns=ret(2)) as passer, \
                load_program(prog_type="xdp", insns=ret(2)) as other, \
                create_link(passer, 1, "xdp") as link:
            info = link.info()
            assert info.type is LinkType.XDP and info.ifindex == 1 and info.prog_id == passer.info().id
            link.update(other)
            assert link.info().prog_id == other.info().id

    in_private_netns(body)


def test_tcx_link_on_loopback_of_a_private_netns() -> None:
    require(have_link_type, "tcx")

    def body() -> None:
        with load_program(prog_type="sched_cls", insns=ret(0)) as prog, \
                create_link(prog, 1, "tcx_ingress") as link:
            info = link.info()
            assert info.type is LinkType.TCX
            assert info.ifindex == 1 and info.attach_type is AttachType.TCX_INGRESS

    in_private_netns(body)


def test_netns_link_for_a_flow_dissector() -> None:
    require(have_link_type, "netns")

    def body() -> None:
        ns = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        try:
            with load_program(prog_type="flow_dissector", insns=ret(0)) as prog, \
                    create_link(prog, ns, "flow_dissector") as link:
                info = link.info()
                assert info.type is LinkType.NETNS and info.attach_type is AttachType.FLOW_DISSECTOR
                assert info.netns_ino == os.fstat(ns).st_ino
        finally:
            os.close(ns)

    in_private_netns(body)
