"""Kernel feature probes.

Every probe says one of three things: the feature is there (returns None), it is not
(raises :class:`~ebpf.core.errors.UnsupportedFeatureError` naming the feature, the
first kernel version with it and why: the kernel is older, or "in Linux since X, but
refused by this kernel's build or configuration: EPERM"), or the probe cannot tell
(:class:`~ebpf.core.errors.ProbeInconclusiveError` when the caller lacks the privileges
to know, another error otherwise).  The kernel's answer decides, never its version.
Probes create tiny real objects (a map, a two-instruction program, a link with bad fds)
the way cilium/ebpf's ``features`` package does, and their outcomes, negative ones too,
are cached for the life of the process through :func:`feature_test`, which other
packages use for their own probes.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import os
import threading
from collections.abc import Callable
from typing import Any

from ebpf.core._probing import clear_cache, feature_test, fully_privileged, probe_error
from ebpf.core._sys import commands
from ebpf.core._sys import perf as _perf
from ebpf.core._sys.attrs import MapBatchAttr, MapCreateAttr
from ebpf.core._sys.syscall import Cmd, bpf, close_fd, libc
from ebpf.core._sys.unions import LinkCreateKprobeMulti, LinkCreateNetfilter, LinkCreateUprobeMulti
from ebpf.core._versions import (
    ATTACH_TYPE_VERSIONS,
    LINK_TYPE_VERSIONS,
    MAP_TYPE_VERSIONS,
    PROG_TYPE_VERSIONS,
)
from ebpf.core.btf import load_vmlinux
from ebpf.core.errors import (
    ENOTSUPP,
    BPFSyscallError,
    BTFError,
    EBPFError,
    UnsupportedFeatureError,
    VerifierError,
    errno_name,
)
from ebpf.core.programs import Program, load_program
from ebpf.core.records import dataclass
from ebpf.core.system import ensure_securityfs, ensure_tracefs, tracefs_path
from ebpf.core.types import AttachType, Helper, LinkType, MapType, ProgType

__all__ = [
    "have_map_type",
    "have_prog_type",
    "have_helper",
    "have_batch_ops",
    "have_link_type",
    "have_attach_type",
    "have_kprobes",
    "have_fentry",
    "have_lsm",
    "have_instructions",
    "have_kfunc",
    "have_perf_event_link_info",
    "have_kfunc_tags",
    "clear_cache",
    "feature_test",
    "probe_error",
    "fully_privileged",
    "ENOTSUPP",
    "MAP_TYPE_VERSIONS",
    "PROG_TYPE_VERSIONS",
    "LINK_TYPE_VERSIONS",
    "ATTACH_TYPE_VERSIONS",
    "FeatureEntry",
    "feature_table",
]

#: ``mov r0, 0; exit``
RET0 = b"\xb7\x00\x00\x00\x00\x00\x00\x00\x95\x00\x00\x00\x00\x00\x00\x00"
_BAD_FD = 0xFFFFFFFF  # never a valid fd: the kernel answers EBADF once it looks at it
_BPF_F_NO_PREALLOC = 1
_BPF_F_MMAPABLE = 1 << 10
_BPF_F_SLEEPABLE = 1 << 4
_BPF_F_LINK = 1 << 13

_M, _P, _L, _A = MapType, ProgType, LinkType, AttachType

_cached = feature_test  # every probe below caches through the public decorator


def _unsupported(feature: str, version: str = "", reason: str = "", refused: str = "") -> UnsupportedFeatureError:
    return UnsupportedFeatureError(feature, version, reason, refused)


# --- maps ------------------------------------------------------------------------------------


def _map_attr(mt: MapType) -> MapCreateAttr:
    a = MapCreateAttr(map_type=mt, key_size=4, value_size=4, max_entries=1)
    if mt == _M.STACK_TRACE:
        a.value_size = 8
    elif mt == _M.LPM_TRIE:
        a.key_size, a.value_size, a.map_flags = 8, 8, _BPF_F_NO_PREALLOC
    elif mt in (_M.ARRAY_OF_MAPS, _M.HASH_OF_MAPS):
        a.inner_map_fd = _BAD_FD
    elif mt in (_M.CGROUP_STORAGE, _M.PERCPU_CGROUP_STORAGE):
        a.key_size, a.max_entries = 16, 0
    elif mt in (_M.QUEUE, _M.STACK):
        a.key_size = 0
    elif mt in (_M.RINGBUF, _M.USER_RINGBUF):
        a.key_size, a.value_size, a.max_entries = 0, 0, os.sysconf("SC_PAGESIZE")
    elif mt in (_M.SK_STORAGE, _M.INODE_STORAGE, _M.TASK_STORAGE, _M.CGRP_STORAGE):
        a.max_entries, a.map_flags = 0, _BPF_F_NO_PREALLOC
        a.btf_key_type_id, a.btf_value_type_id, a.btf_fd = 1, 3, _BAD_FD
    elif mt == _M.BLOOM_FILTER:
        a.key_size = 0
    elif mt == _M.ARENA:
        a.key_size, a.value_size, a.map_flags = 0, 0, _BPF_F_MMAPABLE
    elif mt == _M.STRUCT_OPS:
        a.btf_vmlinux_value_type_id = 1  # not a struct_ops value type: ENOTSUPP where the map type exists
    return a


@_cached
def have_map_type(map_type: MapType | str | int) -> None:
    """Probe for a map type by creating a tiny map of it.

    :raises UnsupportedFeatureError: when the kernel does not know the type.
    :raises EBPFError: for an unknown name, or when the probe cannot tell (e.g. EPERM).
    """
    mt = MapType.parse(map_type)
    feature, version = f"map type {mt.lower_name}", MAP_TYPE_VERSIONS.get(mt, "")
    if mt == _M.UNSPEC:
        raise EBPFError("map type unspec cannot be probed")
    try:
        fd = commands.map_create(_map_attr(mt))
    except BPFSyscallError as exc:
        if exc.errno == errno.EBADF and mt in (_M.ARRAY_OF_MAPS, _M.HASH_OF_MAPS, _M.SK_STORAGE, _M.INODE_STORAGE,
                                               _M.TASK_STORAGE, _M.CGRP_STORAGE):
            return  # it got as far as looking at our bad fd: the type exists
        if exc.errno == ENOTSUPP and mt == _M.STRUCT_OPS:
            return  # vmlinux type id 1 is an integer, not a struct_ops value: the type exists
        raise probe_error(exc, feature, version) from None
    close_fd(fd)


def _struct_ops_link_probe(feature: str, version: str) -> None:
    """struct_ops links (and their attach type) came with ``BPF_F_LINK`` struct_ops maps: a kernel
    without them refuses the flag (EINVAL) before it looks at the value type, one with them gets
    as far as finding that vmlinux type 1 is no struct_ops value (ENOTSUPP)."""
    attr = _map_attr(_M.STRUCT_OPS)
    attr.map_flags = _BPF_F_LINK
    try:
        fd = commands.map_create(attr)
    except BPFSyscallError as exc:
        if exc.errno == ENOTSUPP:
            return
        raise probe_error(exc, feature, version) from None
    close_fd(fd)


# --- programs ----------------------------------------------------------------------------------


def _probe_load(prog_type: ProgType, feature: str, version: str, **fields: Any) -> None:
    """Load ``mov r0, 0; exit``; EINVAL/E2BIG without a verifier log means the kernel lacks it."""
    try:
        prog = load_program(prog_type=prog_type, insns=RET0, **fields)
    except VerifierError as exc:
        if exc.errno == errno.E2BIG:
            raise _unsupported(feature, version, refused="E2BIG") from None
        return  # the verifier ran: the kernel knows the type, our tiny program just does not suit it
    except BPFSyscallError as exc:
        if exc.errno == ENOTSUPP and prog_type == _P.STRUCT_OPS:
            return  # ENOTSUPP: known type, missing struct_ops target (as cilium/ebpf reads it)
        raise probe_error(exc, feature, version) from None
    prog.close()


@_cached
def have_prog_type(prog_type: ProgType | str | int) -> None:
    """Probe for a program type by loading ``mov r0, 0; exit`` as it.

    lsm and fentry-style tracing depend on more than the type: see :func:`have_lsm`, :func:`have_fentry`.

    :raises UnsupportedFeatureError: when the kernel does not know the type.
    :raises EBPFError: for an unknown name, or when the probe cannot tell.
    """
    pt = ProgType.parse(prog_type)
    feature, version = f"program type {pt.lower_name}", PROG_TYPE_VERSIONS.get(pt, "")
    if pt == _P.UNSPEC:
        raise EBPFError("program type unspec cannot be probed")
    if pt == _P.LSM:
        return have_lsm()
    extra: dict[str, Any] = {}
    if pt == _P.TRACING:
        extra = {"expected_attach_type": _A.TRACE_RAW_TP, "attach_to": "sys_enter"}
    elif pt == _P.SYSCALL:
        extra = {"flags": _BPF_F_SLEEPABLE}
    else:
        at = {_P.CGROUP_SOCK_ADDR: _A.CGROUP_INET4_CONNECT, _P.CGROUP_SOCKOPT: _A.CGROUP_GETSOCKOPT,
              _P.SK_LOOKUP: _A.SK_LOOKUP, _P.NETFILTER: _A.NETFILTER}.get(pt)
        if at is not None:
            extra = {"expected_attach_type": at}
    try:
        _probe_load(pt, feature, version, **extra)
    except BTFError as exc:
        raise _unsupported(feature, version, f"no kernel BTF: {exc}") from None
    except UnsupportedFeatureError as exc:
        if pt == _P.EXT and exc.refused in ("EPERM", "EACCES"):
            # The type exists since 5.6; EPERM is the same refusal fentry gets (trampolines).
            raise _unsupported(feature, version, "kernel lockdown or missing CONFIG_FUNCTION_TRACER",
                               exc.refused) from None
        raise


def _helper_ctx(pt: ProgType) -> dict[str, Any]:
    if pt == _P.TRACING:
        return {"expected_attach_type": _A.TRACE_RAW_TP, "attach_to": "sys_enter"}
    if pt == _P.SYSCALL:
        return {"flags": _BPF_F_SLEEPABLE}
    at = {_P.CGROUP_SOCK_ADDR: _A.CGROUP_INET4_CONNECT, _P.CGROUP_SOCKOPT: _A.CGROUP_GETSOCKOPT,
          _P.SK_LOOKUP: _A.SK_LOOKUP, _P.NETFILTER: _A.NETFILTER}.get(pt)
    return {"expected_attach_type": at} if at is not None else {}


@_cached
def have_helper(prog_type: ProgType | str | int, helper: Helper | str | int) -> None:
    """Probe whether programs of ``prog_type`` may call ``helper``.

    Loads ``call helper; mov r0, 0; exit`` and reads the verifier's answer: "invalid
    func"/"unknown func"/"cannot use helper" mean no; any other complaint (e.g. about the
    arguments) means the helper exists for this type.

    :raises UnsupportedFeatureError: when the helper is missing or not allowed for the type.
    :raises EBPFError: when the probe cannot tell.
    """
    pt, h = ProgType.parse(prog_type), Helper.parse(helper)
    have_prog_type(pt)
    call = bytes([0x85, 0, 0, 0]) + int(h).to_bytes(4, "little")
    feature = f"helper {h.lower_name} in {pt.lower_name} programs"
    try:
        prog = load_program(prog_type=pt, insns=call + RET0, log_level=1, **_helper_ctx(pt))
    except VerifierError as exc:
        needles = ("invalid func", "unknown func", "cannot use helper")
        said = [line for line in exc.log.rstrip().splitlines()[-5:] if any(n in line for n in needles)]
        if exc.errno == errno.EINVAL and said:
            raise _unsupported(feature, reason=f"the verifier says: {said[-1].strip()}") from None
        if exc.errno in (errno.EACCES, errno.EINVAL):
            return  # the helper exists; our probe just did not set up its arguments
        raise
    prog.close()


@_cached
def have_batch_ops() -> None:
    """Probe for BPF_MAP_*_BATCH commands (Linux >= 5.6).

    :raises UnsupportedFeatureError: when the kernel has none.
    """
    fd = commands.map_create(MapCreateAttr(map_type=_M.HASH, key_size=4, value_size=4, max_entries=2))
    try:
        keys, values = (ctypes.c_uint32 * 1)(1), (ctypes.c_uint32 * 1)(2)
        attr = MapBatchAttr(map_fd=fd, keys=ctypes.addressof(keys), values=ctypes.addressof(values), count=1)
        bpf(Cmd.MAP_UPDATE_BATCH, attr)
    except BPFSyscallError as exc:
        raise probe_error(exc, "map batch operations", "5.6") from None
    finally:
        close_fd(fd)


# --- links -------------------------------------------------------------------------------------


def _tiny(pt: ProgType, **fields: Any) -> Program:
    return load_program(prog_type=pt, insns=RET0, **fields)


def _link_errno(prog: Program, attach_type: AttachType, target: int, extra: ctypes.Structure | None = None) -> int:
    """BPF_LINK_CREATE with a target that cannot work; returns the errno (0 if it worked)."""
    try:
        fd = commands.link_create(prog.fd, target, int(attach_type), 0, extra)
    except BPFSyscallError as exc:
        return exc.errno or errno.EIO
    close_fd(fd)
    return 0


_CLONE_NEWNET = 0x40000000


def _xdp_link_errno(prog: Program) -> int:
    """Create an XDP link on ``lo`` of a private network namespace (so no real device is touched)."""
    result: list[int | BaseException] = []

    def run() -> None:
        try:
            if libc.unshare(_CLONE_NEWNET) != 0:  # only this thread moves to the new namespace
                result.append(ctypes.get_errno() or errno.EPERM)
                return
            result.append(_link_errno(prog, _A.XDP, 1))  # lo is ifindex 1 in a fresh namespace
        except BaseException as exc:  # handed to the caller's thread
            result.append(exc)

    t = threading.Thread(target=run, name="ebpf-xdp-link-probe")
    t.start()
    t.join()
    if isinstance(result[0], BaseException):
        raise result[0]
    return result[0]


@_cached
def have_link_type(link_type: LinkType | str | int) -> None:
    """Probe for a bpf link type, mostly by BPF_LINK_CREATE with a bad target (EBADF/ENODEV = known).

    :raises UnsupportedFeatureError: when the kernel lacks the link type.
    :raises EBPFError: when the probe cannot tell.
    """
    lt = LinkType.parse(link_type)
    feature, version = f"link type {lt.lower_name}", LINK_TYPE_VERSIONS.get(lt, "")
    if lt == _L.UNSPEC:
        raise EBPFError("link type unspec cannot be probed")
    if lt == _L.TRACING:
        return have_fentry()
    if lt == _L.STRUCT_OPS:
        return _struct_ops_link_probe(feature, version)
    if lt == _L.RAW_TRACEPOINT:
        have_prog_type(_P.RAW_TRACEPOINT)
        with _tiny(_P.RAW_TRACEPOINT) as prog:
            fd = commands.raw_tracepoint_open("sys_enter", prog.fd)
            try:
                commands.link_info(fd)  # a raw fd before 5.8, a link since
            except BPFSyscallError as exc:
                raise probe_error(exc, feature, version) from None
            finally:
                close_fd(fd)
        return
    if lt == _L.ITER:
        try:
            with _tiny(_P.TRACING, expected_attach_type=_A.TRACE_ITER, attach_to="task") as prog:
                ok = _link_errno(prog, _A.TRACE_ITER, 0) == 0
        except BTFError as exc:
            raise _unsupported(feature, version, str(exc)) from None
        except BPFSyscallError as exc:
            raise probe_error(exc, feature, version) from None
        if not ok:
            raise _unsupported(feature, version)
        return
    plan: dict[LinkType, tuple[ProgType, dict[str, Any], AttachType, int, ctypes.Structure | None, tuple[int, ...]]] = {
        _L.CGROUP: (_P.CGROUP_SKB, {}, _A.CGROUP_INET_INGRESS, _BAD_FD, None, (errno.EBADF,)),
        _L.NETNS: (_P.FLOW_DISSECTOR, {}, _A.FLOW_DISSECTOR, _BAD_FD, None, (errno.EBADF,)),
        _L.PERF_EVENT: (_P.KPROBE, {}, _A.PERF_EVENT, _BAD_FD, None, (errno.EBADF,)),
        _L.TCX: (_P.SCHED_CLS, {}, _A.TCX_INGRESS, 0x7FFFFFFF, None, (errno.ENODEV,)),
        _L.NETKIT: (_P.SCHED_CLS, {}, _A.NETKIT_PRIMARY, 0x7FFFFFFF, None, (errno.ENODEV,)),
        _L.SOCKMAP: (_P.SK_SKB, {"expected_attach_type": _A.SK_SKB_VERDICT}, _A.SK_SKB_VERDICT, _BAD_FD, None,
                     (errno.EBADF,)),
        _L.NETFILTER: (_P.NETFILTER, {"expected_attach_type": _A.NETFILTER}, _A.NETFILTER, 0,
                       LinkCreateNetfilter(pf=0xFF), (errno.EAFNOSUPPORT,)),
    }
    if lt in (_L.KPROBE_MULTI, _L.UPROBE_MULTI):
        return _multi_probe(lt, feature, version)
    if lt == _L.XDP:
        have_prog_type(_P.XDP)
        with _tiny(_P.XDP) as prog:
            err = _xdp_link_errno(prog)
        if err in (0, errno.EBUSY, errno.EEXIST):
            return
        raise probe_error(BPFSyscallError(err, "BPF_LINK_CREATE", hint="probing XDP links"), feature, version)
    pt, fields, at, target, extra, known = plan[lt]
    try:
        prog = _tiny(pt, **fields)
    except BPFSyscallError as exc:
        raise probe_error(exc, feature, version, f"cannot load a {pt.lower_name} program") from None
    with prog:
        err = _link_errno(prog, at, target, extra)
    if err in known or err == 0:
        return
    raise probe_error(BPFSyscallError(err, "BPF_LINK_CREATE", hint=f"probing link type {lt.lower_name}"),
                      feature, version)


@_cached
def have_perf_event_link_info() -> None:
    """Probe whether the kernel describes perf_event links in their info (``bpf_link_info.perf_event``:
    the event's kind, tracepoint or probe name; Linux >= 6.6): links a tiny perf_event program to a
    software event of this process that never fires and reads the link's info back.

    :raises UnsupportedFeatureError: when the kernel leaves that part of the info empty (or has no
        perf_event links).
    """
    feature, version = "perf_event link info", "6.6"
    have_link_type(_L.PERF_EVENT)
    attr = _perf.PerfEventAttr(type=_perf.PERF_TYPE_SOFTWARE, config=_perf.PERF_COUNT_SW_CPU_CLOCK,
                               sample_period=1 << 62, flags=_perf.ATTR_DISABLED)
    try:
        perf_fd = _perf.perf_event_open(attr, pid=0, cpu=-1)
    except BPFSyscallError as exc:
        raise probe_error(exc, feature, version, "cannot open a software perf event") from None
    try:
        with _tiny(_P.PERF_EVENT) as prog:
            link_fd = commands.link_create(prog.fd, perf_fd, int(_A.PERF_EVENT))
            try:
                kind = commands.link_info(link_fd).perf_event.type
            finally:
                close_fd(link_fd)
    except BPFSyscallError as exc:
        raise probe_error(exc, feature, version) from None
    finally:
        close_fd(perf_fd)
    if kind == 0:  # BPF_PERF_EVENT_UNSPEC: the kernel has no fill_link_info for perf links
        raise _unsupported(feature, version, "the kernel leaves bpf_link_info.perf_event empty")


def _multi_probe(lt: LinkType, feature: str, version: str) -> None:
    at = _A.TRACE_KPROBE_MULTI if lt == _L.KPROBE_MULTI else _A.TRACE_UPROBE_MULTI
    try:
        prog = _tiny(_P.KPROBE, expected_attach_type=at)
    except BPFSyscallError as exc:
        raise probe_error(exc, feature, version) from None
    with prog:
        if lt == _L.KPROBE_MULTI:
            syms = (ctypes.c_char_p * 1)(b"vprintk")
            err = _link_errno(prog, at, 0, LinkCreateKprobeMulti(cnt=1, syms=ctypes.addressof(syms)))
            if err == 0:
                return
            if err in (errno.EOPNOTSUPP, ENOTSUPP):
                raise _unsupported(feature, version, "kprobe_multi needs CONFIG_FPROBE (fprobe)", errno_name(err))
        else:
            path = ctypes.create_string_buffer(b"/")
            offsets = (ctypes.c_uint64 * 1)(0)
            err = _link_errno(prog, at, 0, LinkCreateUprobeMulti(path=ctypes.addressof(path),
                                                                 offsets=ctypes.addressof(offsets), cnt=1))
            if err == errno.EBADF:
                return
            if err in (errno.EOPNOTSUPP, ENOTSUPP):
                raise _unsupported(feature, version, "uprobe_multi needs CONFIG_UPROBES", errno_name(err))
    raise probe_error(BPFSyscallError(err, "BPF_LINK_CREATE", hint=f"probing link type {lt.lower_name}"),
                      feature, version)


# --- attach types ------------------------------------------------------------------------------

_LINK_FOR_ATTACH = {
    _A.TCX_INGRESS: _L.TCX, _A.TCX_EGRESS: _L.TCX, _A.NETKIT_PRIMARY: _L.NETKIT, _A.NETKIT_PEER: _L.NETKIT,
    _A.XDP: _L.XDP, _A.PERF_EVENT: _L.PERF_EVENT, _A.TRACE_KPROBE_MULTI: _L.KPROBE_MULTI,
    _A.TRACE_UPROBE_MULTI: _L.UPROBE_MULTI, _A.NETFILTER: _L.NETFILTER, _A.TRACE_ITER: _L.ITER,
}


@_cached
def have_attach_type(prog_type_or_attach_type: ProgType | AttachType | str | int,
                     attach_type: AttachType | str | int | None = None) -> None:
    """Probe for an attach type: ``have_attach_type(attach_type)`` or ``have_attach_type(prog_type, attach_type)``.

    Attach types checked when a program loads are probed by loading one with it as the
    expected attach type; link-only ones (tcx, netkit, xdp, perf_event, *_multi) through
    :func:`have_link_type`; fentry/fexit/fmod_ret through :func:`have_fentry`, lsm through :func:`have_lsm`.

    :raises UnsupportedFeatureError: when the kernel lacks it (or the pair does not go together).
    """
    if attach_type is None:
        at = AttachType.parse(prog_type_or_attach_type)
        pt = ATTACH_TYPE_VERSIONS.get(at, ("", _P.UNSPEC))[1]
    else:
        pt, at = ProgType.parse(prog_type_or_attach_type), AttachType.parse(attach_type)
    version = ATTACH_TYPE_VERSIONS.get(at, ("", _P.UNSPEC))[0]
    feature = f"attach type {at.lower_name}" + (f" for {pt.lower_name} programs" if attach_type is not None else "")
    if pt == _P.UNSPEC:
        raise EBPFError(f"no program type known for attach type {at.lower_name}; pass one")
    have_prog_type(pt) if pt != _P.LSM else None
    if at in (_A.TRACE_FENTRY, _A.TRACE_FEXIT, _A.MODIFY_RETURN):
        return have_fentry()
    if at in (_A.LSM_MAC, _A.LSM_CGROUP):
        return have_lsm()
    if at == _A.STRUCT_OPS:
        return _struct_ops_link_probe(feature, version)
    if at in _LINK_FOR_ATTACH:
        return have_link_type(_LINK_FOR_ATTACH[at])
    if at == _A.TRACE_RAW_TP:
        return _probe_load(pt, feature, version, expected_attach_type=at, attach_to="sys_enter")
    # a verifier run means the attach type was accepted
    return _probe_load(pt, feature, version, expected_attach_type=at)


# --- this machine's gaps -----------------------------------------------------------------------


@_cached
def have_kprobes() -> None:
    """Probe for kprobes (the kprobe PMU or tracefs ``kprobe_events``).

    :raises UnsupportedFeatureError: on kernels built without CONFIG_KPROBES.
    """
    if os.path.exists("/sys/bus/event_source/devices/kprobe"):
        return
    tracefs = tracefs_path()
    if tracefs is None:
        try:
            tracefs = ensure_tracefs()
        except EBPFError:
            tracefs = None
    if tracefs is not None and os.path.exists(os.path.join(tracefs, "kprobe_events")):
        return
    raise _unsupported("kprobes", reason="no kprobe PMU in /sys/bus/event_source/devices and no kprobe_events "
                       "in tracefs (the kernel was built without CONFIG_KPROBES)")


def _trampoline_probe(feature: str, version: str, why: str, **fields: Any) -> None:
    try:
        prog = load_program(insns=RET0, **fields)
    except BTFError as exc:
        raise _unsupported(feature, version, f"{exc}") from None
    except BPFSyscallError as exc:  # a VerifierError too: EPERM/EACCES there is the same refusal
        code = errno_name(exc.errno)
        raise probe_error(exc, feature, version, f"{feature} cannot be loaded: {code} ({why})") from None
    prog.close()


@_cached
def have_fentry() -> None:
    """Probe for fentry/fexit programs by loading one on ``bpf_fentry_test1``.

    :raises UnsupportedFeatureError: with the reason (e.g. EPERM under kernel lockdown).
    """
    _trampoline_probe("fentry programs", "5.5",
                      "kernel lockdown or missing CONFIG_FUNCTION_TRACER/CONFIG_DYNAMIC_FTRACE_WITH_DIRECT_CALLS",
                      prog_type=_P.TRACING, expected_attach_type=_A.TRACE_FENTRY, attach_to="bpf_fentry_test1")


@_cached
def have_lsm() -> None:
    """Probe for BPF LSM programs by loading one on ``file_mprotect``; also needs 'bpf' among the active LSMs.

    :raises UnsupportedFeatureError: with the reason.
    """
    _trampoline_probe("lsm programs", "5.7", "kernel lockdown or missing CONFIG_BPF_LSM",
                      prog_type=_P.LSM, expected_attach_type=_A.LSM_MAC, attach_to="file_mprotect")
    try:
        with open(os.path.join(ensure_securityfs(), "lsm")) as f:
            active = f.read().strip().split(",")
    except (OSError, EBPFError):
        return  # cannot read the list: the load worked, which is the best evidence we have
    if "bpf" not in active:
        raise _unsupported("lsm programs", "5.7", f"'bpf' is not an active LSM ({','.join(active)}); "
                           "boot with lsm=...,bpf")


# --- instruction sets --------------------------------------------------------------------------

#: Each probe is hand-encoded (not assembled), so a slip in the assembler cannot make it skip a test.
_INSN_PROBES: dict[str, tuple[str, bytes]] = {
    # r0 = 1; r0 s/= 1 (BPF_ALU64|BPF_DIV|BPF_K with off=1: signed division, cpu v4); exit
    "cpu_v4": ("6.6", bytes.fromhex("b700000001000000" "3700010001000000" "9500000000000000")),
    # r0 = 0; may_goto +0 (BPF_JMP|BPF_JCOND); exit
    "may_goto": ("6.9", bytes.fromhex("b700000000000000" "e500000000000000" "9500000000000000")),
    # *(u64 *)(r10 - 8) = 0; r0 = load_acquire((u64 *)(r10 - 8)) (BPF_ATOMIC, imm BPF_LOAD_ACQ); exit
    "load_acquire": ("6.15", bytes.fromhex("7a0af8ff00000000" "dba0f8ff00010000" "9500000000000000")),
}


@_cached
def have_instructions(name: str) -> None:
    """Probe for an instruction set extension: ``"cpu_v4"`` (sdiv, movsx, bswap, gotol: Linux >= 6.6),
    ``"may_goto"`` (Linux >= 6.9), ``"load_acquire"`` (load-acquire/store-release: Linux >= 6.15).

    Loads a tiny socket filter using the instructions; the verifier refusing them means the kernel lacks them.

    :raises UnsupportedFeatureError: when this kernel does not know the instructions.
    :raises EBPFError: for an unknown name, or when the probe cannot tell.
    """
    if name not in _INSN_PROBES:
        raise EBPFError(f"unknown instruction set {name!r} (known: {', '.join(_INSN_PROBES)})")
    version, insns = _INSN_PROBES[name]
    feature = f"{name.replace('_', ' ')} instructions"
    try:
        prog = load_program(prog_type=_P.SOCKET_FILTER, insns=insns)
    except BPFSyscallError as exc:  # a VerifierError too: "unknown opcode", "invalid insn"
        raise probe_error(exc, feature, version) from None
    prog.close()


# --- kernel BTF ----------------------------------------------------------------------------------


def _vmlinux_btf(feature: str) -> Any:
    try:
        return load_vmlinux()
    except UnsupportedFeatureError as exc:
        raise _unsupported(feature, reason=f"no kernel BTF: {exc}") from None


@_cached
def have_kfunc(name: str) -> None:
    """Probe for a kernel function a BPF program may call (a kfunc) by its name in the kernel's BTF.

    A kfunc call is resolved through the function's vmlinux BTF id, so a kernel whose BTF has no
    function ``name`` cannot run a program calling it (kfuncs come and go between versions:
    ``bpf_rcu_read_lock`` is in 6.2, ``bpf_iter_num_new`` in 6.4).  Which program types may call
    it is the verifier's to say when the program loads.

    :param name: the kfunc, e.g. ``"bpf_task_from_pid"``.
    :raises UnsupportedFeatureError: when the kernel's BTF has no such function (or no BTF at all).
    """
    feature = f"kfunc {name}"
    if not _vmlinux_btf(feature).find_all(name, "func"):
        raise _unsupported(feature, reason="no function of that name in the kernel's BTF")


@_cached
def have_kfunc_tags() -> None:
    """Probe for kfuncs marked in the kernel's BTF (``bpf_kfunc`` decl tags: Linux >= 6.9 built with
    pahole >= 1.26), which is what lets a ``vmlinux.h`` declare the kernel's kfuncs.

    :raises UnsupportedFeatureError: when the kernel's BTF carries no ``bpf_kfunc`` decl tag.
    """
    feature = "kfunc decl tags in the kernel's BTF"
    if not _vmlinux_btf(feature).find_all("bpf_kfunc", "decl_tag"):
        raise _unsupported(feature, "6.9", "no bpf_kfunc decl tag (a kernel built with pahole < 1.26 has none)")


# --- the table ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class FeatureEntry:
    """One row of :func:`feature_table`: a kernel type, its first kernel, and the probe that asks this kernel.

    :ivar kind: ``"map type"``, ``"program type"``, ``"link type"`` or ``"attach type"``.
    :ivar member: the enum member (``MapType.RINGBUF``, ...).
    :ivar min_kernel: the first Linux version with it (what a missing one is reported with).
    :ivar probe: runs the probe: None, :class:`UnsupportedFeatureError`, or could-not-tell.
    """

    kind: str
    member: MapType | ProgType | LinkType | AttachType
    min_kernel: str
    probe: Callable[[], None]


def feature_table() -> list[FeatureEntry]:
    """Every map, program, link and attach type this package knows, with its first kernel and its probe.

    The one place that pairs the two (as cilium/ebpf's ``internal/feature.go`` does): ``ebpf check``
    runs it; a caller that needs one feature runs its ``probe`` (cached, negative answers too).
    The version never decides support: it only words the answer of a kernel that lacks the type.

    :returns: the rows, map types first, in enum order.
    """
    rows: list[FeatureEntry] = []
    tables: list[tuple[str, dict[Any, Any], Callable[..., None]]] = [
        ("map type", MAP_TYPE_VERSIONS, have_map_type), ("program type", PROG_TYPE_VERSIONS, have_prog_type),
        ("link type", LINK_TYPE_VERSIONS, have_link_type),
        ("attach type", {at: v for at, (v, _pt) in ATTACH_TYPE_VERSIONS.items()}, have_attach_type),
    ]
    for kind, versions, probe in tables:
        for member, version in versions.items():
            rows.append(FeatureEntry(kind, member, version, functools.partial(probe, member)))
    return rows
