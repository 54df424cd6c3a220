"""Programs: :class:`ProgramSpec` (plain data), :func:`load_program`, :class:`Program` (owns an fd).

Loading grows the verifier log buffer until the whole log fits, so a
:class:`~ebpf.core.errors.VerifierError` always carries the complete log.
"""

from __future__ import annotations

import ctypes
import errno
import os
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from ebpf.core import records
from ebpf.core._checks import U32, check_uint, object_name
from ebpf.core._sys import commands
from ebpf.core._sys.attrs import ProgInfo, ProgLoadAttr, TestRunAttr
from ebpf.core._sys.syscall import Cmd, bpf, close_fd
from ebpf.core.errors import (
    ENOTSUPP,
    BPFSyscallError,
    BTFError,
    EBPFError,
    NotSupportedError,
    VerifierError,
    syscall_error,
)
from ebpf.core.extension import dispatcher
from ebpf.core.fdowner import FdOwner
from ebpf.core.pins import check_pin_path, fd_kind, open_pinned
from ebpf.core.records import dataclass
from ebpf.core.types import AttachType, ProgType

if TYPE_CHECKING:  # pragma: no cover
    from ebpf.core.links import Link

__all__ = ["ProgramSpec", "Program", "ProgramInfo", "TestRunResult", "load_program", "programs", "resolve_attach_btf_id"]

#: The verifier's first log buffer when a log is wanted (it grows on ENOSPC).
INITIAL_LOG_SIZE = 64 * 1024
#: Largest log buffer kernels before 6.4 accept (``UINT_MAX >> 8``).
MAX_LOG_SIZE_OLD = (1 << 24) - 1
#: Largest log buffer Linux >= 6.4 accepts (``UINT_MAX >> 2``).
MAX_LOG_SIZE = (1 << 30) - 1
#: Programs are limited to this many instructions by the kernel (BPF_COMPLEXITY_LIMIT_INSNS).
MAX_INSNS = 1_000_000


@dataclass
class ProgramSpec:
    """Everything needed to load a program; plain data (see :meth:`copy`).

    ``name`` is sanitised the way the kernel wants it: characters other than letters,
    digits, ``_`` and ``.`` become ``_`` and it is truncated to 15 characters (as libbpf
    does); :attr:`Program.name` shows the name the kernel got.
    ``attach_to`` names the BTF target (``"bpf_fentry_test1"`` for fentry/fexit,
    ``"sched_process_exec"`` for tp_btf, ``"file_mprotect"`` for lsm, ``"task"`` for iter,
    ``"tcp_congestion_ops:ssthresh"`` for struct_ops) and is resolved through vmlinux BTF.
    ``log_size`` 0 means: load without a log, and on failure retry with a log that
    grows until it fits.  ``token`` is a BPF token (:func:`ebpf.core.token.create_token`) whose
    user namespace grants the load (Linux >= 6.9).
    """

    prog_type: ProgType | str | int
    insns: Any = b""
    license: str = "GPL"
    name: str = ""
    expected_attach_type: AttachType | str | int | None = None
    attach_btf_id: int | None = None
    attach_to: str | None = None
    attach_btf_obj_fd: int | None = None
    attach_prog_fd: int | None = None
    kernel_version: int = 0
    flags: int = 0
    log_level: int = 0
    log_size: int = 0
    keep_log: bool = False
    btf: Any = None
    func_info: bytes = b""
    func_info_rec_size: int = 8
    line_info: bytes = b""
    line_info_rec_size: int = 16
    fd_array: list[int] | None = None
    ifindex: int = 0
    maps: Sequence[Any] = ()
    token: Any = None
    autoload: bool = True  # False: a collection leaves this program out (libbpf's bpf_program__set_autoload)
    #: What the object loader knows (plain data, carried to :attr:`Program.section` / ``.attach_target``):
    #: the ELF section the program came from, and where that section says to attach.
    section: str = ""
    attach_target: str | None = None

    def copy(self) -> ProgramSpec:
        """A copy that can be changed without touching this one (lists copied, maps shared)."""
        return records.replace(
            self,
            fd_array=list(self.fd_array) if self.fd_array is not None else None,
            maps=tuple(self.maps),
            insns=list(self.insns) if isinstance(self.insns, list) else self.insns,
        )


@dataclass(frozen=True)
class TestRunResult:
    """What BPF_PROG_TEST_RUN returned.

    :ivar retval: the program's return value (e.g. an XDP action).
    :ivar duration_ns: mean run time per repetition in nanoseconds.
    :ivar data_out: the packet after the program ran (``b""`` when there is none).
    :ivar ctx_out: the context after the program ran (``b""`` when none was given).
    """

    __test__ = False  # not a pytest class

    retval: int
    duration_ns: int
    data_out: bytes = b""
    ctx_out: bytes = b""


@dataclass(frozen=True)
class ProgramInfo:
    """``struct bpf_prog_info`` of a loaded program, decoded.

    ``load_time`` is in nanoseconds since boot; ``run_cnt``/``run_time_ns`` count only
    while statistics are enabled (:func:`ebpf.core.links.enable_stats`).
    """

    id: int
    type: ProgType | int
    name: str
    tag: str
    run_cnt: int = 0
    run_time_ns: int = 0
    recursion_misses: int = 0
    map_ids: tuple[int, ...] = ()
    btf_id: int = 0
    jited_size: int = 0
    xlated_size: int = 0
    load_time: int = 0
    created_by_uid: int = 0
    verified_insns: int = 0
    gpl_compatible: bool = False
    ifindex: int = 0
    attach_btf_id: int = 0
    attach_btf_obj_id: int = 0


def _parse_type(value: object) -> ProgType:
    return ProgType.parse(value)


def _type_or_int(value: int) -> ProgType | int:
    try:
        return ProgType(value)
    except ValueError:
        return value


def _insn_bytes(insns: Any) -> bytes:
    """The program text as bytes: bytes as they are, lists through the assembler."""
    if isinstance(insns, (bytes, bytearray, memoryview)):
        raw = bytes(insns)
    elif hasattr(insns, "assemble"):
        raw = insns.assemble()
    elif isinstance(insns, (list, tuple, str)):
        from ebpf.core import asm  # deferred: start-up time (only this path needs it)

        raw = asm.assemble(insns if isinstance(insns, str) else list(insns))
    else:
        raise EBPFError(
            f"insns must be bytes, a list of instructions, assembler text or an assembler program, "
            f"not {type(insns).__name__}"
        )
    if not isinstance(raw, (bytes, bytearray)):
        raise EBPFError(f"assembling insns gave {type(raw).__name__}, not bytes")
    if not raw:
        raise EBPFError("a program needs at least one instruction")
    if len(raw) % 8:
        raise EBPFError(f"program text is {len(raw)} bytes, not a multiple of the 8-byte instruction size")
    if len(raw) // 8 > MAX_INSNS:
        raise EBPFError(f"program has {len(raw) // 8} instructions; the kernel allows at most {MAX_INSNS}")
    return bytes(raw)


def _sanitize_name(name: object) -> str:
    return object_name(name, "program name")  # one rule for program and map names


# --- BTF name resolution -----------------------------------------------------------------

def _vmlinux_find(name: str, kind: str) -> tuple[int, Any]:
    """(type id, type) of ``name`` of ``kind`` in the running kernel's BTF."""
    from ebpf.core.btf import load_vmlinux  # deferred: start-up time (only this path needs it)

    typ = load_vmlinux().find(name, kind)
    return int(typ.id), typ


def _struct_member_index(typ: Any, member: str) -> int:
    for i, m in enumerate(getattr(typ, "members", ())):
        if getattr(m, "name", None) == member:
            return i
    raise BTFError(f"struct {getattr(typ, 'name', '?')} has no member {member!r}")


def resolve_attach_btf_id(
    prog_type: ProgType, attach_type: AttachType | None, attach_to: str
) -> tuple[int, AttachType | int | None]:
    """Resolve ``attach_to`` through vmlinux BTF; returns (attach_btf_id, expected attach type).

    fentry/fexit/fmod_ret name a kernel function, tp_btf a raw tracepoint
    (``btf_trace_<name>``), lsm a hook (``bpf_lsm_<hook>``), iter a target
    (``bpf_iter_<name>``), struct_ops ``"<struct>:<member>"``.

    :raises BTFError: when the name is not in the kernel's BTF.
    :raises EBPFError: when ``attach_to`` makes no sense for the program type.
    """
    if prog_type == ProgType.LSM:
        hook = attach_to if attach_to.startswith("bpf_lsm_") else "bpf_lsm_" + attach_to
        return _vmlinux_find(hook, "func")[0], attach_type if attach_type is not None else AttachType.LSM_MAC
    if prog_type == ProgType.TRACING:
        if attach_type == AttachType.TRACE_RAW_TP:
            tp = attach_to if attach_to.startswith("btf_trace_") else "btf_trace_" + attach_to
            return _vmlinux_find(tp, "typedef")[0], attach_type
        if attach_type == AttachType.TRACE_ITER:
            it = attach_to if attach_to.startswith("bpf_iter_") else "bpf_iter_" + attach_to
            return _vmlinux_find(it, "func")[0], attach_type
        if attach_type in (AttachType.TRACE_FENTRY, AttachType.TRACE_FEXIT, AttachType.MODIFY_RETURN, None):
            at = attach_type if attach_type is not None else AttachType.TRACE_FENTRY
            return _vmlinux_find(attach_to, "func")[0], at
        raise EBPFError(f"attach_to cannot be used with tracing attach type {attach_type.lower_name}")
    if prog_type == ProgType.STRUCT_OPS:
        struct_name, _, member = attach_to.partition(":")
        tid, typ = _vmlinux_find(struct_name, "struct")
        if member:
            return tid, _struct_member_index(typ, member)
        return tid, attach_type
    raise EBPFError(f"attach_to is not used by {prog_type.lower_name} programs (only tracing, lsm, struct_ops)")


# --- loading -------------------------------------------------------------------------------

_PRIV_TYPES = (ProgType.TRACING, ProgType.LSM, ProgType.EXT, ProgType.STRUCT_OPS)


def _load_hint(err: int, prog_type: ProgType) -> str | None:
    if err in (errno.EPERM, errno.EACCES) and prog_type in _PRIV_TYPES:
        return (
            f"loading {prog_type.lower_name} programs needs CAP_BPF, CAP_PERFMON and CAP_SYS_ADMIN, and a kernel "
            "that allows it (kernel lockdown, CONFIG_FUNCTION_TRACER for fentry/fexit, CONFIG_BPF_LSM and 'bpf' "
            "in the lsm= list for lsm)"
        )
    if err == errno.EPERM:
        return "loading programs needs root or CAP_BPF (+CAP_PERFMON for tracing, CAP_NET_ADMIN for networking)"
    return None


def _attach_type(value: object) -> AttachType | None:
    return None if value is None else AttachType.parse(value)


class _Prepared:
    """Validated, syscall-ready form of a spec (buffers kept alive here)."""

    def __init__(self, spec: ProgramSpec) -> None:
        self.prog_type = _parse_type(spec.prog_type)
        if not isinstance(spec.license, str):
            raise EBPFError(f"license must be a str, not {type(spec.license).__name__}")
        self.name = _sanitize_name(spec.name)
        self.insns = _insn_bytes(spec.insns)
        for attr_name in ("log_level", "log_size", "flags", "kernel_version", "ifindex"):
            check_uint(getattr(spec, attr_name), attr_name, U32)  # u32 fields of bpf_attr
        if spec.log_size and not 128 <= spec.log_size <= MAX_LOG_SIZE:
            raise EBPFError(f"log_size must be 0 or between 128 and {MAX_LOG_SIZE}, not {spec.log_size}")
        expected: AttachType | int | None = _attach_type(spec.expected_attach_type)
        btf_id = spec.attach_btf_id
        if spec.attach_to is not None:
            if not isinstance(spec.attach_to, str) or not spec.attach_to:
                raise EBPFError(f"attach_to must be a non-empty str, not {spec.attach_to!r}")
            if btf_id is None:
                btf_id, expected = resolve_attach_btf_id(self.prog_type, expected, spec.attach_to)  # type: ignore[arg-type]
        self.expected = expected
        self.attach_btf_id = btf_id or 0
        self._bufs: list[Any] = []
        self.attr = self._fill(spec)

    def _keep(self, buf: Any) -> int:
        self._bufs.append(buf)
        return ctypes.addressof(buf)

    def _fill(self, spec: ProgramSpec) -> ProgLoadAttr:
        a = ProgLoadAttr()
        a.prog_type = self.prog_type
        a.insn_cnt = len(self.insns) // 8
        a.insns = self._keep(ctypes.create_string_buffer(self.insns, len(self.insns)))
        a.license = self._keep(ctypes.create_string_buffer(spec.license.encode()))
        a.kern_version = spec.kernel_version
        a.prog_flags = spec.flags
        a.prog_name = self.name.encode()
        a.prog_ifindex = spec.ifindex
        a.expected_attach_type = int(self.expected or 0)
        a.attach_btf_id = self.attach_btf_id
        if spec.attach_prog_fd is not None and spec.attach_btf_obj_fd is not None:
            raise EBPFError("give attach_prog_fd or attach_btf_obj_fd, not both")
        a.attach_prog_fd = spec.attach_prog_fd or spec.attach_btf_obj_fd or 0
        if spec.btf is not None:
            a.prog_btf_fd = int(spec.btf.fd)
        if spec.token is not None:  # BPF_F_TOKEN_FD (Linux >= 6.9)
            a.prog_token_fd, a.prog_flags = int(spec.token.fd), a.prog_flags | (1 << 16)
        for kind in ("func", "line"):
            blob, rec = getattr(spec, f"{kind}_info"), getattr(spec, f"{kind}_info_rec_size")
            if blob:
                if spec.btf is None:
                    raise EBPFError(f"{kind}_info needs btf= (the program's BTF)")
                if rec <= 0 or len(blob) % rec:
                    raise EBPFError(f"{kind}_info is {len(blob)} bytes, not a multiple of its record size {rec}")
                setattr(a, f"{kind}_info", self._keep(ctypes.create_string_buffer(bytes(blob), len(blob))))
                setattr(a, f"{kind}_info_rec_size", rec)
                setattr(a, f"{kind}_info_cnt", len(blob) // rec)
        if spec.fd_array:
            fds = (ctypes.c_int32 * len(spec.fd_array))(*spec.fd_array)
            a.fd_array = self._keep(fds)
        return a


def _try_load(prep: _Prepared, level: int, size: int) -> tuple[int, int, str, int]:
    """One BPF_PROG_LOAD; returns (fd or -1, errno, log, log_true_size)."""
    attr = prep.attr
    buf = ctypes.create_string_buffer(size) if size else None
    attr.log_level, attr.log_size = (level, size) if buf is not None else (0, 0)
    attr.log_buf = ctypes.addressof(buf) if buf is not None else 0
    attr.log_true_size = 0
    try:
        fd = bpf(Cmd.PROG_LOAD, attr)
        err = 0
    except BPFSyscallError as exc:
        fd, err = -1, exc.errno or 0
    log = buf.value.decode(errors="replace") if buf is not None else ""
    return fd, err, log, attr.log_true_size


def _load_fd(spec: ProgramSpec, prep: _Prepared) -> tuple[int, str]:
    """Load, growing the log buffer until the log fits; returns (fd, log)."""
    want_log = spec.keep_log or spec.log_level > 0 or spec.log_size > 0
    level = spec.log_level or 1
    size = spec.log_size or INITIAL_LOG_SIZE
    if want_log:
        fd, err, log, true_size = _try_load(prep, level, size)
    else:
        fd, err, log, true_size = _try_load(prep, 0, 0)
        if fd >= 0:
            return fd, ""
        if err in (errno.EPERM, errno.E2BIG, errno.EBADF, errno.ENOMEM):
            raise _load_error(err, "", prep)  # no log would say more
        fd, err, log, true_size = _try_load(prep, level, size)
    limit = MAX_LOG_SIZE_OLD
    while err == errno.ENOSPC:
        if true_size > size:  # Linux >= 6.4 says how much it needs
            limit = MAX_LOG_SIZE
            new = true_size + 1
        else:
            new = size * 2
        if size >= limit:
            break
        size = min(new, limit)
        if fd >= 0:
            close_fd(fd)
        fd, err, log, true_size = _try_load(prep, level, size)
    if fd >= 0:
        return fd, log
    raise _load_error(err, log, prep)


def _load_error(err: int, log: str, prep: _Prepared) -> BPFSyscallError:
    hint = _load_hint(err, prep.prog_type)
    if log.strip():
        return VerifierError(err, "BPF_PROG_LOAD", log, prep.name, hint or "")
    if err == ENOTSUPP:
        return syscall_error(err, "BPF_PROG_LOAD", "operation not supported by this kernel (ENOTSUPP)", hint)
    return syscall_error(err, "BPF_PROG_LOAD", f"loading {prep.prog_type.lower_name} program failed: "
                         f"{os.strerror(err)}", hint)


def load_program(spec: ProgramSpec | None = None, **fields: Any) -> Program:
    """Load a program into the kernel.

    :param spec: the program; ``fields`` override its fields (or build one when None).
    :returns: the loaded :class:`Program`.
    :raises EBPFError: for bad input (before any syscall).
    :raises BTFError: when ``attach_to`` is not in the kernel's BTF.
    :raises VerifierError: when the verifier rejects it (``.log`` holds the whole log).
    :raises BPFSyscallError: for other kernel failures (EPERM comes with a hint).
    """
    if spec is None:
        try:
            spec = ProgramSpec(**fields)
        except TypeError as exc:
            raise EBPFError(f"bad program fields: {exc}") from None
    elif fields:
        try:
            spec = records.replace(spec, **fields)
        except TypeError as exc:
            raise EBPFError(f"bad program fields: {exc}") from None
    if not isinstance(spec, ProgramSpec):
        raise EBPFError(f"load_program needs a ProgramSpec, not {type(spec).__name__}")
    prep = _Prepared(spec)
    fd, log = _load_fd(spec, prep)
    spec = records.replace(spec, prog_type=prep.prog_type, expected_attach_type=prep.expected)
    return Program(fd, spec, verifier_log=log if spec.keep_log else "", name=prep.name)


# --- the live object ---------------------------------------------------------------------


class Program(FdOwner):
    """A loaded program; owns one fd (``close()``, ``with``; collected while open: closed with a ResourceWarning)."""

    _kind = "program"

    def __init__(self, fd: int, spec: ProgramSpec, *, verifier_log: str = "", name: str | None = None) -> None:
        """Wrap ``fd`` (which this object now owns).  Use :func:`load_program` or ``from_*``."""
        self._own_fd(fd)
        self.spec = spec
        self.verifier_log = verifier_log
        self.name = name if name is not None else _sanitize_name(spec.name)
        self.prog_type: ProgType = _parse_type(spec.prog_type)
        self.expected_attach_type: AttachType | None = None
        eat = spec.expected_attach_type
        if eat is not None and self.prog_type != ProgType.STRUCT_OPS:  # struct_ops: a member index
            try:
                self.expected_attach_type = AttachType.parse(eat)
            except EBPFError:
                pass
        self._maps = tuple(spec.maps)  # keep the maps alive as long as the program
        #: The ELF section the program came from ("" when not loaded from an object): from its spec.
        self.section: str = spec.section
        #: Where the section name says to attach (``"syscalls/sys_enter_openat"``); used by
        #: :meth:`attach` when no target is given.
        self.attach_target: object = spec.attach_target

    def __repr__(self) -> str:
        state = "closed" if self._fd < 0 else f"fd={self._fd}"
        return f"<Program {self.name!r} {self.prog_type.lower_name} {state}>"

    # -- running --------------------------------------------------------------------------

    def test_run(
        self,
        data: bytes = b"",
        repeat: int = 1,
        ctx: bytes | None = None,
        data_size_out: int | None = None,
        flags: int = 0,
        cpu: int = 0,
    ) -> TestRunResult:
        """Run the program once (or ``repeat`` times) on ``data`` with BPF_PROG_TEST_RUN.

        :param data: packet input (XDP, TC, socket filter, ... programs).
        :param repeat: how many runs (the duration is averaged); ignored by types that run once.
        :param ctx: context input (e.g. ``struct xdp_md``, raw tracepoint args).
        :param data_size_out: room for the output packet (default: input size + 256, grown if needed).
        :param flags: BPF_F_TEST_* flags.  :param cpu: the CPU for BPF_F_TEST_RUN_ON_CPU.
        :returns: :class:`TestRunResult`.
        :raises EBPFError: for bad input.  :raises BPFSyscallError: when the kernel refuses.
        """
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise EBPFError(f"data must be bytes, not {type(data).__name__}")
        if ctx is not None and not isinstance(ctx, (bytes, bytearray, memoryview)):
            raise EBPFError(f"ctx must be bytes or None, not {type(ctx).__name__}")
        # u32 fields of bpf_attr.test: a larger int would be cut silently (2**32 + 3 -> 3 runs)
        check_uint(repeat, "test_run repeat", U32)
        check_uint(flags, "test_run flags", U32)
        check_uint(cpu, "test_run cpu", U32)
        if data_size_out is not None:
            check_uint(data_size_out, "test_run data_size_out", U32)
        for what, buf in (("data", data), ("ctx", ctx)):
            if buf is not None and len(buf) > (1 << 32) - 1:
                raise EBPFError(f"test_run {what} is {len(buf)} bytes; the kernel field is 32 bits")
        fd = self.fd
        data = bytes(data)
        ctx_in = bytes(ctx) if ctx is not None else b""
        once = self.prog_type in (ProgType.RAW_TRACEPOINT, ProgType.TRACING, ProgType.SYSCALL, ProgType.STRUCT_OPS)
        size_out = data_size_out if data_size_out is not None else (len(data) + 256 if data and not once else 0)
        while True:
            attr = TestRunAttr(prog_fd=fd, repeat=0 if once else repeat, flags=flags, cpu=cpu)
            din = ctypes.create_string_buffer(data, len(data)) if data else None
            dout = ctypes.create_string_buffer(size_out) if size_out else None
            cin = ctypes.create_string_buffer(ctx_in, len(ctx_in)) if ctx_in else None
            cout = ctypes.create_string_buffer(len(ctx_in)) if ctx_in and not once else None
            attr.data_in, attr.data_size_in = commands.addr(din), len(data)
            attr.data_out, attr.data_size_out = commands.addr(dout), size_out
            attr.ctx_in, attr.ctx_size_in = commands.addr(cin), len(ctx_in)
            attr.ctx_out, attr.ctx_size_out = commands.addr(cout), len(ctx_in) if cout is not None else 0
            try:
                bpf(Cmd.PROG_TEST_RUN, attr)
            except BPFSyscallError as exc:
                if exc.errno == errno.ENOSPC and dout is not None and attr.data_size_out > size_out:
                    size_out = attr.data_size_out  # the packet grew: retry with room for all of it
                    continue
                if exc.errno == ENOTSUPP:
                    raise NotSupportedError(f"{self.prog_type.lower_name} programs cannot be test-run") from exc
                raise
            break
        out = dout.raw[: attr.data_size_out] if dout is not None else b""
        if cout is not None:
            ctx_out = cout.raw[: attr.ctx_size_out]
        elif once and cin is not None:
            ctx_out = cin.raw[: attr.ctx_size_in]  # syscall programs write back into ctx_in
        else:
            ctx_out = b""
        return TestRunResult(attr.retval, attr.duration, out, ctx_out)

    def attach(self, target: object = None, **options: Any) -> Link:
        """Attach through the plugin registered for this program's type (e.g. ebpf-net for XDP).

        :returns: a :class:`~ebpf.core.links.Link`.
        :raises AttachError: when no plugin serves this type, or attaching fails.
        """
        if target is None:
            target = self.attach_target
        return dispatcher().attach(self, target, **options)

    # -- pinning and lookup -------------------------------------------------------------------

    def pin(self, path: str) -> None:
        """Pin the program at ``path`` on bpffs (it outlives this process until unlinked).

        :raises EBPFError: when ``path`` is not on bpffs.  :raises BPFSyscallError: when pinning fails.
        """
        commands.obj_pin(self.fd, check_pin_path(path))

    @classmethod
    def from_fd(cls, fd: int) -> Program:
        """A :class:`Program` for an existing program fd (duplicated: the caller keeps ``fd``).

        :raises EBPFError: when ``fd`` is not a BPF program.
        """
        if not isinstance(fd, int) or fd < 0:
            raise EBPFError(f"bad fd {fd!r}")
        if fd_kind(fd) != "program":
            raise EBPFError(f"fd {fd} is not a BPF program")
        return cls._from_owned(os.dup(fd))

    @classmethod
    def from_id(cls, prog_id: int) -> Program:
        """Open the loaded program with id ``prog_id``.

        :raises BPFSyscallError: ENOENT when there is no such program.
        """
        if not isinstance(prog_id, int) or prog_id <= 0:
            raise EBPFError(f"program id must be a positive int, not {prog_id!r}")
        return cls._from_owned(commands.fd_by_id("prog", prog_id))

    @classmethod
    def from_pinned(cls, path: str) -> Program:
        """Open the program pinned at ``path``.

        :raises EBPFError: when the path is not on bpffs or holds a map or link.
        """
        return cls._from_owned(open_pinned(path, "program"))

    @classmethod
    def _from_owned(cls, fd: int) -> Program:
        try:
            raw = commands.prog_info(fd)
        except BaseException:
            close_fd(fd)
            raise
        name = raw.name.decode(errors="replace")
        spec = ProgramSpec(prog_type=_type_or_int(raw.type), name=name,
                           attach_btf_id=raw.attach_btf_id or None)
        return cls(fd, spec, name=name)

    def info(self) -> ProgramInfo:
        """The kernel's view of this program (:class:`ProgramInfo`)."""
        return _info(self.fd)


def _info(fd: int) -> ProgramInfo:
    raw = commands.prog_info(fd)
    map_ids: tuple[int, ...] = ()
    if raw.nr_map_ids:
        ids = (ctypes.c_uint32 * raw.nr_map_ids)()
        again = ProgInfo(nr_map_ids=raw.nr_map_ids, map_ids=ctypes.addressof(ids))
        commands.obj_info(fd, ProgInfo, again)
        map_ids = tuple(ids[: min(raw.nr_map_ids, again.nr_map_ids)])
    return ProgramInfo(
        id=raw.id,
        type=_type_or_int(raw.type),
        name=raw.name.decode(errors="replace"),
        tag=bytes(raw.tag).hex(),
        run_cnt=raw.run_cnt,
        run_time_ns=raw.run_time_ns,
        recursion_misses=raw.recursion_misses,
        map_ids=map_ids,
        btf_id=raw.btf_id,
        jited_size=raw.jited_prog_len,
        xlated_size=raw.xlated_prog_len,
        load_time=raw.load_time,
        created_by_uid=raw.created_by_uid,
        verified_insns=raw.verified_insns,
        gpl_compatible=bool(raw.gpl_compatible & 1),
        ifindex=raw.ifindex,
        attach_btf_id=raw.attach_btf_id,
        attach_btf_obj_id=raw.attach_btf_obj_id,
    )


def programs() -> Iterator[ProgramInfo]:
    """Every program loaded on the system (ids that vanish while listing are skipped).

    :raises BPFSyscallError: EPERM without CAP_SYS_ADMIN.
    """
    return commands.iter_objects("prog", _info)



from ebpf.core._callable import make_module_callable  # noqa: E402

make_module_callable(__name__)
