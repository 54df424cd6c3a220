"""Programs: loading every common type, test runs, pins, info, the verifier log, bad input."""

from __future__ import annotations

import errno
import os
import struct

import pytest
from ebpf.core._sys import commands
from ebpf.core._sys.attrs import MapCreateAttr
from ebpf.core._sys.syscall import close_fd
from ebpf.core.errors import BPFSyscallError, BTFError, EBPFError, UnsupportedFeatureError, VerifierError
from ebpf.core.features import have_fentry, have_lsm
from ebpf.core.links import enable_stats
from ebpf.core.programs import INITIAL_LOG_SIZE, Program, ProgramSpec, load_program, programs
from ebpf.core.testing import require
from ebpf.core.types import AttachType, ProgType

pytestmark = pytest.mark.privileged


def insn(op: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    """One raw BPF instruction."""
    return struct.pack("<BBhi", op, (src << 4) | dst, off, imm)


def ret(value: int) -> bytes:
    """``mov r0, value; exit``."""
    return insn(0xB7, 0, imm=value) + insn(0x95)


def ld_map_fd(dst: int, fd: int) -> bytes:
    """``ld_imm64 dst, map_fd`` (BPF_PSEUDO_MAP_FD)."""
    return insn(0x18, dst, 1, imm=fd) + insn(0)


def array_map(value_size: int = 8) -> int:
    return commands.map_create(MapCreateAttr(map_type=2, key_size=4, value_size=value_size, max_entries=1))


XDP_PASS, XDP_DROP = 2, 1
PACKET = bytes(range(64))


@pytest.mark.parametrize(
    ("prog_type", "fields"),
    [
        ("socket_filter", {}),
        ("xdp", {}),
        ("sched_cls", {}),
        ("sched_act", {}),
        ("tracepoint", {}),
        ("raw_tracepoint", {}),
        ("cgroup_skb", {}),
        ("kprobe", {}),
        ("perf_event", {}),
        ("cgroup_sock_addr", {"expected_attach_type": "cgroup_inet4_connect"}),
        ("tracing", {"expected_attach_type": "trace_raw_tp", "attach_to": "sys_enter"}),
        ("tracing", {"expected_attach_type": "trace_iter", "attach_to": "task"}),
    ],
)
def test_load_program_types(prog_type: str, fields: dict[str, object]) -> None:
    with load_program(prog_type=prog_type, insns=ret(1), name=f"t_{prog_type}", **fields) as prog:
        info = prog.info()
        assert prog.prog_type is ProgType.parse(prog_type)
        assert info.type is ProgType.parse(prog_type)
        assert info.name == f"t_{prog_type}"[:15]
        assert len(info.tag) == 16 and int(info.tag, 16) >= 0
        assert info.xlated_size == 16 and info.verified_insns >= 2 and info.gpl_compatible
        if "expected_attach_type" in fields:
            assert prog.expected_attach_type is AttachType.parse(fields["expected_attach_type"])
    assert prog.closed


def test_tp_btf_attach_to_resolves_btf_id() -> None:
    with load_program(prog_type="tracing", expected_attach_type="trace_raw_tp", attach_to="sys_enter",
                      insns=ret(0)) as prog:
        info = prog.info()
        assert info.attach_btf_id > 0 and info.attach_btf_obj_id > 0
        assert prog.spec.attach_to == "sys_enter"


def test_attach_to_unknown_name_is_btf_error() -> None:
    with pytest.raises(BTFError, match="no_such_tracepoint_xyz"):
        load_program(prog_type="tracing", expected_attach_type="trace_raw_tp", attach_to="no_such_tracepoint_xyz",
                     insns=ret(0))


def test_attach_to_on_a_type_without_btf_target() -> None:
    with pytest.raises(EBPFError, match="attach_to is not used by xdp"):
        load_program(prog_type="xdp", attach_to="sys_enter", insns=ret(0))


def test_insns_from_an_object_with_assemble() -> None:
    class Asm:
        def assemble(self) -> bytes:
            return ret(XDP_PASS)

    with load_program(prog_type="xdp", insns=Asm()) as prog:
        assert prog.test_run(PACKET).retval == XDP_PASS


def test_insns_from_the_assembler() -> None:
    from ebpf.core import asm

    class MapFd:
        def __init__(self, fd: int) -> None:
            self.fd = fd

    fd = array_map()
    try:
        text = [
            asm.mov64(asm.R0, 0),
            asm.stx_mem(asm.W, asm.R10, asm.R0, -4),
            asm.ld_map_fd(asm.R1, MapFd(fd)),
            asm.mov64(asm.R2, asm.R10), asm.add64(asm.R2, -4),
            asm.call("map_lookup_elem"),
            asm.jeq(asm.R0, 0, "out"),
            asm.mov64(asm.R1, 1),
            asm.atomic_add(asm.DW, asm.R0, asm.R1),
            asm.label("out"), asm.mov64(asm.R0, XDP_PASS), asm.exit_(),
        ]
        with load_program(prog_type="xdp", insns=text) as prog:
            assert prog.test_run(PACKET, repeat=3).retval == XDP_PASS
            assert prog.info().map_ids == (commands.map_info(fd).id,)
        with load_program(prog_type="xdp", insns="r0 = 1\nexit") as from_text:
            assert from_text.test_run(PACKET).retval == XDP_DROP
    finally:
        close_fd(fd)


def test_xdp_test_run_pass_and_drop() -> None:
    with load_program(prog_type="xdp", insns=ret(XDP_PASS)) as passer, \
            load_program(prog_type="xdp", insns=ret(XDP_DROP)) as dropper:
        result = passer.test_run(PACKET)
        assert result.retval == XDP_PASS
        assert result.data_out == PACKET
        assert dropper.test_run(PACKET, repeat=10).retval == XDP_DROP


def test_socket_filter_test_run_sees_the_packet() -> None:
    # r0 = skb->len (struct __sk_buff.len is at offset 0)
    text = insn(0x61, 0, 1, 0) + insn(0x95)
    with load_program(prog_type="socket_filter", insns=text) as prog:
        result = prog.test_run(PACKET)
    # Socket filters see the packet after the Ethernet header (ETH_HLEN = 14) is pulled.
    assert result.retval == len(PACKET) - 14
    assert len(result.data_out) == len(PACKET)
    assert result.data_out[14:] == PACKET[14:]


def test_raw_tracepoint_test_run_with_ctx() -> None:
    # r0 = args[0]
    text = insn(0x79, 0, 1, 0) + insn(0x95)
    with load_program(prog_type="raw_tracepoint", insns=text) as prog:
        result = prog.test_run(ctx=struct.pack("<QQ", 42, 7))
    assert result.retval == 42


def test_run_cnt_counts_under_enable_stats() -> None:
    with load_program(prog_type="xdp", insns=ret(XDP_PASS)) as prog:
        assert prog.info().run_cnt == 0
        with enable_stats():
            prog.test_run(PACKET, repeat=5)
        info = prog.info()
    assert info.run_cnt >= 5
    assert info.run_time_ns > 0


def test_pin_from_pinned_from_id_from_fd(pin_dir: str) -> None:
    path = os.path.join(pin_dir, "prog")
    with load_program(prog_type="xdp", insns=ret(XDP_PASS), name="pinned") as prog:
        prog.pin(path)
        info = prog.info()
    with Program.from_pinned(path) as again:
        assert again.info().id == info.id
        assert again.name == "pinned" and again.prog_type is ProgType.XDP
        assert again.test_run(PACKET).retval == XDP_PASS
        with Program.from_id(info.id) as by_id, Program.from_fd(again.fd) as by_fd:
            assert by_id.info().tag == info.tag
            assert by_fd.info().id == info.id and by_fd.fd != again.fd
    os.unlink(path)
    with pytest.raises(BPFSyscallError) as exc:
        Program.from_id(info.id)
    assert exc.value.errno == errno.ENOENT


def test_from_pinned_of_a_map_is_a_clear_error(pin_dir: str) -> None:
    fd = array_map()
    path = os.path.join(pin_dir, "map")
    try:
        commands.obj_pin(fd, path)
    finally:
        close_fd(fd)
    with pytest.raises(EBPFError, match="holds a map, not a program"):
        Program.from_pinned(path)


def test_pin_outside_bpffs_is_refused() -> None:
    with load_program(prog_type="xdp", insns=ret(XDP_PASS)) as prog, \
            pytest.raises(EBPFError, match="not on a bpf filesystem"):
        prog.pin("/tmp/not-bpffs-prog")
    assert not os.path.exists("/tmp/not-bpffs-prog")


def test_info_lists_the_maps_a_program_uses() -> None:
    fd = array_map()
    try:
        map_id = commands.map_info(fd).id
        text = ld_map_fd(1, fd) + ret(0)
        with load_program(prog_type="xdp", insns=text) as prog:
            assert prog.info().map_ids == (map_id,)
    finally:
        close_fd(fd)


def test_programs_lists_ours() -> None:
    with load_program(prog_type="socket_filter", insns=ret(0), name="listed") as prog:
        ours = prog.info().id
        found = [p for p in programs() if p.id == ours]
    assert len(found) == 1 and found[0].name == "listed"


def test_verifier_log_grows_until_it_fits() -> None:
    # 6000 instructions, then exit without setting r0: rejected at the very end, after a
    # log line per instruction -- far more than the first buffer.
    text = insn(0xB7, 1, imm=1) * 6000 + insn(0x95)
    with pytest.raises(VerifierError) as exc:
        load_program(prog_type="socket_filter", insns=text, name="toolong")
    err = exc.value
    assert len(err.log) > INITIAL_LOG_SIZE
    assert "0: (b7) r1 = 1" in err.log  # the beginning is there ...
    assert "R0 !read_ok" in err.log  # ... and so is the end
    assert err.errno == errno.EACCES
    assert "R0 !read_ok" in str(err) and len(str(err)) < 4000  # str() shows the tail only
    assert err.program_name == "toolong"


def test_keep_log_on_success() -> None:
    with load_program(prog_type="xdp", insns=ret(XDP_PASS), keep_log=True) as prog:
        assert "processed 2 insns" in prog.verifier_log
    with load_program(prog_type="xdp", insns=ret(XDP_PASS)) as quiet:
        assert quiet.verifier_log == ""


def test_long_names_are_truncated_and_sanitised() -> None:
    with load_program(prog_type="xdp", insns=ret(XDP_PASS), name="a-very-long-program-name") as prog:
        assert prog.name == "a_very_long_pro"
        assert prog.info().name == "a_very_long_pro"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"prog_type": "xdp", "insns": b"\x95" * 7}, "multiple of the 8-byte"),
        ({"prog_type": "xdp", "insns": b""}, "at least one instruction"),
        ({"prog_type": "xdp", "insns": 42}, "insns must be bytes"),
        ({"prog_type": "no_such_type", "insns": ret(0)}, "unknown ProgType"),
        ({"prog_type": "xdp", "insns": ret(0), "license": b"GPL"}, "license must be a str"),
        ({"prog_type": "xdp", "insns": ret(0), "name": 5}, "name must be a str"),
        ({"prog_type": "xdp", "insns": ret(0), "expected_attach_type": "nope"}, "unknown AttachType"),
        ({"prog_type": "xdp", "insns": ret(0), "log_size": 5}, "log_size"),
        ({"prog_type": "xdp", "insns": ret(0), "no_such_field": 1}, "bad program fields"),
    ],
)
def test_bad_input_is_refused_before_any_syscall(
    fields: dict[str, object], message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ebpf.core.programs as mod

    def no_syscall(*args: object) -> int:
        raise AssertionError("bpf() called for bad input")

    monkeypatch.setattr(mod, "bpf", no_syscall)
    with pytest.raises(EBPFError, match=message):
        load_program(**fields)  # type: ignore[arg-type]


def test_closed_program_use_is_our_error() -> None:
    prog = load_program(prog_type="xdp", insns=ret(XDP_PASS))
    prog.close()
    prog.close()  # idempotent
    with pytest.raises(EBPFError, match="closed"):
        prog.test_run(PACKET)
    with pytest.raises(EBPFError, match="closed"):
        prog.info()
    assert "closed" in repr(prog)


def test_test_run_bad_input() -> None:
    with load_program(prog_type="xdp", insns=ret(XDP_PASS)) as prog:
        with pytest.raises(EBPFError, match="data must be bytes"):
            prog.test_run("text")  # type: ignore[arg-type]
        with pytest.raises(EBPFError, match="repeat"):
            prog.test_run(PACKET, repeat=-1)


def test_spec_copy_is_independent() -> None:
    spec = ProgramSpec("xdp", [1, 2], fd_array=[3])
    other = spec.copy()
    other.insns.append(3)
    assert other.fd_array is not None
    other.fd_array.append(4)
    assert spec.insns == [1, 2] and spec.fd_array == [3]


def test_fentry_loads_or_fails_clearly() -> None:
    try:
        prog = load_program(prog_type="tracing", expected_attach_type="trace_fentry", attach_to="bpf_fentry_test1",
                            insns=ret(0))
    except BPFSyscallError as exc:
        # Here (kernel lockdown) the load is refused; the error says what is needed, and the probe agrees.
        assert exc.errno in (errno.EPERM, errno.EACCES, 524, errno.EOPNOTSUPP)
        assert "CAP_SYS_ADMIN" in str(exc) or exc.errno == 524
        with pytest.raises(UnsupportedFeatureError, match="fentry"):
            have_fentry()
        return
    with prog:
        require(have_fentry)
        assert prog.info().attach_btf_id > 0


def test_lsm_loads_or_fails_clearly() -> None:
    try:
        prog = load_program(prog_type="lsm", attach_to="file_mprotect", insns=ret(0))
    except BPFSyscallError as exc:
        assert exc.errno in (errno.EPERM, errno.EACCES)
        assert "CAP_SYS_ADMIN" in str(exc) and "lsm" in str(exc)
        with pytest.raises(UnsupportedFeatureError, match="lsm"):
            have_lsm()
        return
    with prog:
        assert prog.expected_attach_type is AttachType.LSM_MAC


def test_fentry_program_with_probe() -> None:
    require(have_fentry)
    with load_program(prog_type="tracing", expected_attach_type="trace_fentry", attach_to="bpf_fentry_test1",
                      insns=ret(0)) as prog:
        assert prog.info().type is ProgType.TRACING


def test_attach_without_backend_is_attach_error() -> None:
    from ebpf.core.errors import AttachError
    from ebpf.core.plugins import attach_backends

    with load_program(prog_type="socket_filter", insns=ret(0)) as prog:
        if any(ProgType.SOCKET_FILTER in [p for p, _ in b.serves] for b in attach_backends()):
            return  # a plugin serves socket filters: nothing to show here
        with pytest.raises(AttachError):
            prog.attach(None)


def test_maps_are_kept_alive_with_the_program() -> None:
    class FakeMap:
        fd = -1

    keep = FakeMap()
    with load_program(prog_type="xdp", insns=ret(XDP_PASS), maps=(keep,)) as prog:
        assert keep in prog._maps


def test_resolve_attach_btf_id_for_each_kind() -> None:
    from ebpf.core.btf import load_vmlinux
    from ebpf.core.programs import resolve_attach_btf_id

    vmlinux = load_vmlinux()
    lsm = resolve_attach_btf_id(ProgType.LSM, None, "file_mprotect")
    assert lsm == (vmlinux.find("bpf_lsm_file_mprotect", "func").id, AttachType.LSM_MAC)
    assert resolve_attach_btf_id(ProgType.LSM, None, "bpf_lsm_file_mprotect") == lsm
    fentry = resolve_attach_btf_id(ProgType.TRACING, AttachType.TRACE_FEXIT, "bpf_fentry_test1")
    assert fentry == (vmlinux.find("bpf_fentry_test1", "func").id, AttachType.TRACE_FEXIT)
    assert resolve_attach_btf_id(ProgType.TRACING, None, "bpf_fentry_test1")[1] is AttachType.TRACE_FENTRY
    tp = resolve_attach_btf_id(ProgType.TRACING, AttachType.TRACE_RAW_TP, "sched_switch")
    assert tp[0] == vmlinux.find("btf_trace_sched_switch", "typedef").id
    it = resolve_attach_btf_id(ProgType.TRACING, AttachType.TRACE_ITER, "bpf_map")
    assert it[0] == vmlinux.find("bpf_iter_bpf_map", "func").id
    ops = resolve_attach_btf_id(ProgType.STRUCT_OPS, None, "tcp_congestion_ops:cong_avoid")
    members = [m.name for m in vmlinux.find("tcp_congestion_ops", "struct").members]
    assert ops == (vmlinux.find("tcp_congestion_ops", "struct").id, members.index("cong_avoid"))
    with pytest.raises(BTFError, match="no_such_member"):
        resolve_attach_btf_id(ProgType.STRUCT_OPS, None, "tcp_congestion_ops:no_such_member")
    with pytest.raises(EBPFError, match="cannot be used with tracing attach type"):
        resolve_attach_btf_id(ProgType.TRACING, AttachType.XDP, "x")


# --- the log buffer's growth on kernels that do not report log_true_size (mocked: this one does) ---


def _fake_loads(monkeypatch: pytest.MonkeyPatch, answer: object) -> list[int]:
    import ebpf.core.programs as mod

    sizes: list[int] = []

    def fake(prep: object, level: int, size: int) -> tuple[int, int, str, int]:
        sizes.append(size)
        return answer(size)  # type: ignore[operator, no-any-return]

    monkeypatch.setattr(mod, "_try_load", fake)
    return sizes


def test_log_doubles_until_it_fits(monkeypatch: pytest.MonkeyPatch) -> None:
    def answer(size: int) -> tuple[int, int, str, int]:
        if size == 0:
            return -1, errno.EACCES, "", 0  # the quick load without a log
        if size < 300_000:
            return -1, errno.ENOSPC, "x" * (size - 1), 0
        return -1, errno.EACCES, "whole log\nR0 !read_ok", 0

    sizes = _fake_loads(monkeypatch, answer)
    with pytest.raises(VerifierError) as exc:
        load_program(prog_type="xdp", insns=ret(0))
    assert sizes == [0, INITIAL_LOG_SIZE, 2 * INITIAL_LOG_SIZE, 4 * INITIAL_LOG_SIZE, 8 * INITIAL_LOG_SIZE]
    assert exc.value.log == "whole log\nR0 !read_ok"


def test_log_jumps_to_log_true_size(monkeypatch: pytest.MonkeyPatch) -> None:
    def answer(size: int) -> tuple[int, int, str, int]:
        if size < 1_000_000:
            return -1, errno.ENOSPC, "x", 1_000_000
        return -1, errno.EINVAL, "all of it", 1_000_000

    sizes = _fake_loads(monkeypatch, answer)
    with pytest.raises(VerifierError, match="all of it"):
        load_program(prog_type="xdp", insns=ret(0), log_level=2)
    assert sizes == [INITIAL_LOG_SIZE, 1_000_001]


def test_log_growth_stops_at_the_kernel_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    from ebpf.core.programs import MAX_LOG_SIZE_OLD

    sizes = _fake_loads(monkeypatch, lambda size: (-1, errno.ENOSPC, "y" * 10, 0))
    with pytest.raises(VerifierError) as exc:
        load_program(prog_type="xdp", insns=ret(0), keep_log=True)
    assert sizes[-1] == MAX_LOG_SIZE_OLD and len(sizes) < 20
    assert exc.value.errno == errno.ENOSPC

