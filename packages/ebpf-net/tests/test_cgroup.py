"""cgroup v2 programs, observed by child processes moved into a fresh cgroup."""

from __future__ import annotations

import os
import socket

import pytest
from ebpf.core.asm import R1, R2, W, jeq, jne, label, ldx_mem
from ebpf.core.errors import AttachError
from ebpf.core.programs import load_program
from ebpf.net import cgroup

pytestmark = pytest.mark.privileged


def _deny_port(progs, port: int) -> list:
    # bpf_sock_addr.user_port (offset 24, network order): refuse `port`, allow the rest.
    return [
        ldx_mem(W, R2, R1, 24), jne(R2, socket.htons(port), "allow"),
        *progs.ret(0),
        label("allow"), *progs.ret(1),
    ]  # fmt: skip


@pytest.fixture
def listeners():
    """Two TCP listeners on loopback; yields their ports."""
    socks = []
    for _ in range(2):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        socks.append(s)
    yield [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()


CONNECT = """
import socket, sys
for port in map(int, sys.argv[1:]):
    s = socket.socket()
    try:
        s.connect(("127.0.0.1", port)); print(port, "ok")
    except OSError as e:
        print(port, e.errno)
    s.close()
"""


def _connects(in_cgroup, path, ports):
    code = "import sys; sys.argv[1:] = " + repr([str(p) for p in ports]) + "\n" + CONNECT
    out = in_cgroup(path, code)
    assert out.returncode == 0, out.stderr
    return dict(line.split() for line in out.stdout.splitlines())


@pytest.mark.parametrize("flags", [None, "multi", "override"])
def test_connect4_program_refuses_one_port_inside_the_cgroup_only(cgroup_dir, progs, listeners, in_cgroup, flags):
    denied, allowed = listeners
    prog = cgroup.load_cgroup_sock_addr_program(_deny_port(progs, denied), "connect4", name="deny_port")
    with prog, cgroup.attach_cgroup_program(cgroup_dir, prog, flags=flags):
        assert cgroup.query_cgroup_programs(cgroup_dir, "connect4") == [prog.info().id]
        result = _connects(in_cgroup, cgroup_dir, [denied, allowed])
        assert result == {str(denied): "1", str(allowed): "ok"}  # EPERM for the refused port
        with socket.create_connection(("127.0.0.1", denied), timeout=2):
            pass  # this process is outside the cgroup: unaffected
    assert cgroup.query_cgroup_programs(cgroup_dir, "connect4") == []
    assert _connects(in_cgroup, cgroup_dir, [denied]) == {str(denied): "ok"}


def test_program_attach_dispatches_on_cgroup_path(cgroup_dir, progs, listeners, in_cgroup):
    denied, _ = listeners
    with cgroup.load_cgroup_sock_addr_program(_deny_port(progs, denied)) as prog, prog.attach(cgroup_dir):
        assert _connects(in_cgroup, cgroup_dir, [denied]) == {str(denied): "1"}


SEND_UDP = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for _ in range(3):
    try:
        s.sendto(b"hello", ("127.0.0.1", int(sys.argv[1])))
    except OSError as e:
        print("send", e.errno)
"""


def test_cgroup_skb_egress_drop(cgroup_dir, progs, in_cgroup):
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    rx.settimeout(0.3)
    port = rx.getsockname()[1]
    code = f"import sys; sys.argv[1:] = [{str(port)!r}]\n" + SEND_UDP
    try:
        setup = cgroup.setup_cgroup_skb(cgroup_dir, progs.ret(0), "egress", name="drop_all")
        try:
            assert in_cgroup(cgroup_dir, code).returncode == 0
            with pytest.raises(TimeoutError):
                rx.recv(100)
        finally:
            cgroup.teardown_cgroup_program(setup)
            cgroup.teardown_cgroup_program(setup)
        assert setup.program.closed
        in_cgroup(cgroup_dir, code)
        assert rx.recv(100) == b"hello"
    finally:
        rx.close()


OPEN_DEVICES = """
import os
for path in ("/dev/null", "/dev/zero"):
    try:
        os.close(os.open(path, os.O_RDONLY)); print(path, "ok")
    except OSError as e:
        print(path, e.errno)
"""


def test_device_program_denies_opening_dev_null(cgroup_dir, progs, in_cgroup):
    # bpf_cgroup_dev_ctx: major at 4, minor at 8; deny 1:3 (/dev/null), allow the rest.
    insns = [
        ldx_mem(W, R2, R1, 4), jne(R2, 1, "allow"),
        ldx_mem(W, R2, R1, 8), jne(R2, 3, "allow"),
        *progs.ret(0),
        label("allow"), *progs.ret(1),
    ]  # fmt: skip
    with cgroup.load_cgroup_device_program(insns) as prog, cgroup.attach_cgroup_program(cgroup_dir, prog):
        out = in_cgroup(cgroup_dir, OPEN_DEVICES)
    assert dict(line.split() for line in out.stdout.splitlines()) == {"/dev/null": "1", "/dev/zero": "ok"}


WRITE_SYSCTL = """
path = "/proc/sys/net/ipv4/ip_default_ttl"
value = open(path).read()
print("read", value.strip())
try:
    with open(path, "w") as fh:
        fh.write(value)
    print("write ok")
except OSError as e:
    print("write", e.errno)
"""


def test_sysctl_program_denies_a_write(cgroup_dir, progs, in_cgroup):
    # bpf_sysctl.write (offset 0): refuse writes, allow reads.
    insns = [ldx_mem(W, R2, R1, 0), jeq(R2, 0, "allow"), *progs.ret(0), label("allow"), *progs.ret(1)]
    with cgroup.load_cgroup_sysctl_program(insns) as prog, cgroup.attach_cgroup_program(cgroup_dir, prog):
        out = in_cgroup(cgroup_dir, WRITE_SYSCTL)
    lines = out.stdout.splitlines()
    assert lines[0].startswith("read ") and lines[1] == "write 1", out


SET_OPTS = """
import socket
s = socket.socket()
for name, opt, val in (("priority", socket.SO_PRIORITY, 3), ("rcvbuf", socket.SO_RCVBUF, 65536)):
    try:
        s.setsockopt(socket.SOL_SOCKET, opt, val); print(name, "ok")
    except OSError as e:
        print(name, e.errno)
"""


def test_sockopt_program_denies_one_setsockopt(cgroup_dir, progs, in_cgroup):
    # bpf_sockopt: level at 24, optname at 28.  Refuse SOL_SOCKET/SO_PRIORITY.
    insns = [
        ldx_mem(W, R2, R1, 24), jne(R2, socket.SOL_SOCKET, "allow"),
        ldx_mem(W, R2, R1, 28), jne(R2, socket.SO_PRIORITY, "allow"),
        *progs.ret(0),
        label("allow"), *progs.ret(1),
    ]  # fmt: skip
    with cgroup.load_cgroup_sockopt_program(insns, "setsockopt") as prog:
        with cgroup.cgroup_program(cgroup_dir, prog, "setsockopt") as setup:
            assert not setup.owns_program
            out = in_cgroup(cgroup_dir, SET_OPTS)
        assert not prog.closed
    assert dict(line.split() for line in out.stdout.splitlines()) == {"priority": "1", "rcvbuf": "ok"}


def test_legacy_attach_detach_and_query(cgroup_dir, progs):
    one = cgroup.load_cgroup_skb_program(progs.ret(1), "ingress")
    two = cgroup.load_cgroup_skb_program(progs.ret(1), "ingress")
    with one, two:
        first = cgroup.attach_cgroup_program(cgroup_dir, one, flags="multi", method="attach")  # kept: GC detaches
        link = cgroup.attach_cgroup_program(cgroup_dir, two, flags=cgroup.BPF_F_ALLOW_MULTI)
        assert sorted(cgroup.query_cgroup_programs(cgroup_dir, "ingress")) == sorted([one.info().id, two.info().id])
        cgroup.detach_cgroup_program(cgroup_dir, "ingress", one)
        assert cgroup.query_cgroup_programs(cgroup_dir, "ingress") == [two.info().id]
        assert two.info().id in cgroup.query_cgroup_programs(cgroup_dir, "ingress", effective=True)
        link.close()
        assert cgroup.query_cgroup_programs(cgroup_dir, "ingress") == []
        with pytest.raises(AttachError, match=cgroup_dir):
            cgroup.detach_cgroup_program(cgroup_dir, "ingress", one)  # detach of nothing
        first.close()  # already detached: quietly nothing


def test_cgroup_discovery(cgroup_dir):
    root = cgroup.cgroup_root()
    assert root in ("/sys/fs/cgroup", "/sys/fs/cgroup/unified")
    assert cgroup.cgroup_exists(root) and cgroup.cgroup_exists(cgroup_dir)
    assert not cgroup.cgroup_exists("/tmp") and not cgroup.cgroup_exists("/nonexistent")
    assert cgroup_dir in cgroup.list_cgroup_children(root)
    current = cgroup.get_current_cgroup()
    assert cgroup.cgroup_exists(current) and current.startswith(root)
    child = cgroup.create_cgroup(os.path.join(cgroup_dir, "kid"))
    assert cgroup.list_cgroup_children(cgroup_dir) == [child]
    cgroup.remove_cgroup(child)
    assert cgroup.list_cgroup_children(cgroup_dir) == []


def test_cgroup_bad_input(cgroup_dir, progs, tmp_path):
    with cgroup.load_cgroup_skb_program(progs.ret(1), "egress") as prog:
        with pytest.raises(AttachError, match=str(tmp_path)):
            cgroup.attach_cgroup_program(str(tmp_path), prog)
        with pytest.raises(AttachError, match="/nonexistent"):
            cgroup.attach_cgroup_program("/nonexistent", prog)
        with pytest.raises(AttachError, match="does not go with"):
            cgroup.attach_cgroup_program(cgroup_dir, prog, "connect4")
        with pytest.raises(AttachError, match="flags"):
            cgroup.attach_cgroup_program(cgroup_dir, prog, flags="sometimes")
        with pytest.raises(AttachError, match="unknown cgroup attach type"):
            cgroup.query_cgroup_programs(cgroup_dir, "teleport")
        with pytest.raises(AttachError, match=str(tmp_path)):
            cgroup.list_cgroup_children(str(tmp_path))
        assert cgroup.query_cgroup_programs(cgroup_dir, "egress") == []
    with load_program(prog_type="xdp", insns=progs.ret(2)) as xdp_prog, pytest.raises(AttachError, match="cgroup_skb"):
        cgroup.attach_cgroup_program(cgroup_dir, xdp_prog, "egress")
