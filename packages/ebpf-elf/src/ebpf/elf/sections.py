"""ELF section names -> (program type, expected attach type, attach target), as libbpf's section_defs.

A section name is matched against :data:`SECTION_DEFS` (libbpf's table in ``src/libbpf.c``)
and the prefixes plugins register through the ``ebpf_section_types`` hook.  The part after
the prefix (``"syscalls/sys_enter_openat"`` of ``"tracepoint/syscalls/sys_enter_openat"``)
is the program's *attach target*: the loader stores it as ``attach_target`` on each loaded
program so ``program.attach()`` needs no argument, and for BTF-typed sections (fentry,
fexit, fmod_ret, tp_btf, lsm, iter) as ``ProgramSpec.attach_to``.
"""

from __future__ import annotations

import os

from ebpf.core.errors import ELFError
from ebpf.core.records import dataclass
from ebpf.core.types import AttachType, ProgType

__all__ = ["SectionDef", "SectionMatch", "SECTION_DEFS", "match_section"]

# Flags: how the part after the prefix is used.
NONE = 0  # exact name, or a "/anything" suffix that is only a label
TARGET = 1  # "prefix/target": target needed for attaching (tracepoint, kprobe, uprobe ...)
BTF_TARGET = 2  # target resolved through vmlinux BTF at load time (ProgramSpec.attach_to)
SLEEPABLE = 4  # BPF_F_SLEEPABLE
XDP_FRAGS = 8  # BPF_F_XDP_HAS_FRAGS
EXACT = 16  # the name must equal the prefix (no "/suffix")

BPF_F_SLEEPABLE = 1 << 4
BPF_F_XDP_HAS_FRAGS = 1 << 5


@dataclass(frozen=True)
class SectionDef:
    """One known section prefix.

    :ivar prefix: e.g. ``"kprobe"``, ``"cgroup/connect4"``.
    :ivar prog_type: the program type.
    :ivar attach_type: the expected attach type (None: the kernel needs none).
    :ivar flags: how the suffix is used (target, BTF target, sleepable, XDP frags, exact).
    """

    prefix: str
    prog_type: ProgType
    attach_type: AttachType | None = None
    flags: int = NONE


@dataclass(frozen=True)
class SectionMatch:
    """What a section name means.

    :ivar prog_type: program type.
    :ivar attach_type: expected attach type or None.
    :ivar attach_target: the section-derived target in the form ``program.attach()`` takes
        (``"syscalls/sys_enter_openat"``, ``"kretprobe:do_sys_openat2"``), or None.
    :ivar attach_to: BTF attach target for ``ProgramSpec.attach_to`` (fentry/lsm/tp_btf/iter) or None.
    :ivar prog_flags: BPF_PROG_LOAD flags implied by the name (sleepable, XDP frags).
    :ivar prefix: the matched prefix.
    """

    prog_type: ProgType
    attach_type: AttachType | None
    attach_target: str | None
    attach_to: str | None
    prog_flags: int
    prefix: str


P, A = ProgType, AttachType

SECTION_DEFS: tuple[SectionDef, ...] = (
    SectionDef("socket", P.SOCKET_FILTER),
    SectionDef("sk_reuseport/migrate", P.SK_REUSEPORT, A.SK_REUSEPORT_SELECT_OR_MIGRATE, EXACT),
    SectionDef("sk_reuseport", P.SK_REUSEPORT, A.SK_REUSEPORT_SELECT, EXACT),
    SectionDef("kprobe", P.KPROBE, None, TARGET),
    SectionDef("uprobe", P.KPROBE, None, TARGET),
    SectionDef("uprobe.s", P.KPROBE, None, TARGET | SLEEPABLE),
    SectionDef("kretprobe", P.KPROBE, None, TARGET),
    SectionDef("uretprobe", P.KPROBE, None, TARGET),
    SectionDef("uretprobe.s", P.KPROBE, None, TARGET | SLEEPABLE),
    SectionDef("kprobe.multi", P.KPROBE, A.TRACE_KPROBE_MULTI, TARGET),
    SectionDef("kretprobe.multi", P.KPROBE, A.TRACE_KPROBE_MULTI, TARGET),
    SectionDef("kprobe.session", P.KPROBE, A.TRACE_KPROBE_SESSION, TARGET),
    SectionDef("uprobe.multi", P.KPROBE, A.TRACE_UPROBE_MULTI, TARGET),
    SectionDef("uretprobe.multi", P.KPROBE, A.TRACE_UPROBE_MULTI, TARGET),
    SectionDef("uprobe.multi.s", P.KPROBE, A.TRACE_UPROBE_MULTI, TARGET | SLEEPABLE),
    SectionDef("uretprobe.multi.s", P.KPROBE, A.TRACE_UPROBE_MULTI, TARGET | SLEEPABLE),
    SectionDef("uprobe.session", P.KPROBE, A.TRACE_UPROBE_SESSION, TARGET),
    SectionDef("ksyscall", P.KPROBE, None, TARGET),
    SectionDef("kretsyscall", P.KPROBE, None, TARGET),
    SectionDef("usdt", P.KPROBE, None, TARGET),
    SectionDef("usdt.s", P.KPROBE, None, TARGET | SLEEPABLE),
    SectionDef("tc/ingress", P.SCHED_CLS, A.TCX_INGRESS, EXACT),
    SectionDef("tc/egress", P.SCHED_CLS, A.TCX_EGRESS, EXACT),
    SectionDef("tcx/ingress", P.SCHED_CLS, A.TCX_INGRESS, EXACT),
    SectionDef("tcx/egress", P.SCHED_CLS, A.TCX_EGRESS, EXACT),
    SectionDef("tc", P.SCHED_CLS),
    SectionDef("classifier", P.SCHED_CLS),
    SectionDef("action", P.SCHED_ACT),
    SectionDef("netkit/primary", P.SCHED_CLS, A.NETKIT_PRIMARY, EXACT),
    SectionDef("netkit/peer", P.SCHED_CLS, A.NETKIT_PEER, EXACT),
    SectionDef("tracepoint", P.TRACEPOINT, None, TARGET),
    SectionDef("tp", P.TRACEPOINT, None, TARGET),
    SectionDef("raw_tracepoint", P.RAW_TRACEPOINT, None, TARGET),
    SectionDef("raw_tp", P.RAW_TRACEPOINT, None, TARGET),
    SectionDef("raw_tracepoint.w", P.RAW_TRACEPOINT_WRITABLE, None, TARGET),
    SectionDef("raw_tp.w", P.RAW_TRACEPOINT_WRITABLE, None, TARGET),
    SectionDef("tp_btf", P.TRACING, A.TRACE_RAW_TP, TARGET | BTF_TARGET),
    SectionDef("fentry", P.TRACING, A.TRACE_FENTRY, TARGET | BTF_TARGET),
    SectionDef("fmod_ret", P.TRACING, A.MODIFY_RETURN, TARGET | BTF_TARGET),
    SectionDef("fexit", P.TRACING, A.TRACE_FEXIT, TARGET | BTF_TARGET),
    SectionDef("fentry.s", P.TRACING, A.TRACE_FENTRY, TARGET | BTF_TARGET | SLEEPABLE),
    SectionDef("fmod_ret.s", P.TRACING, A.MODIFY_RETURN, TARGET | BTF_TARGET | SLEEPABLE),
    SectionDef("fexit.s", P.TRACING, A.TRACE_FEXIT, TARGET | BTF_TARGET | SLEEPABLE),
    SectionDef("freplace", P.EXT, None, TARGET),
    SectionDef("lsm", P.LSM, A.LSM_MAC, TARGET | BTF_TARGET),
    SectionDef("lsm.s", P.LSM, A.LSM_MAC, TARGET | BTF_TARGET | SLEEPABLE),
    SectionDef("lsm_cgroup", P.LSM, A.LSM_CGROUP, TARGET | BTF_TARGET),
    SectionDef("iter", P.TRACING, A.TRACE_ITER, TARGET | BTF_TARGET),
    SectionDef("iter.s", P.TRACING, A.TRACE_ITER, TARGET | BTF_TARGET | SLEEPABLE),
    SectionDef("syscall", P.SYSCALL, None, EXACT | SLEEPABLE),
    SectionDef("xdp.frags/devmap", P.XDP, A.XDP_DEVMAP, EXACT | XDP_FRAGS),
    SectionDef("xdp/devmap", P.XDP, A.XDP_DEVMAP, EXACT),
    SectionDef("xdp.frags/cpumap", P.XDP, A.XDP_CPUMAP, EXACT | XDP_FRAGS),
    SectionDef("xdp/cpumap", P.XDP, A.XDP_CPUMAP, EXACT),
    SectionDef("xdp.frags", P.XDP, A.XDP, XDP_FRAGS),
    SectionDef("xdp", P.XDP, A.XDP),
    SectionDef("perf_event", P.PERF_EVENT),
    SectionDef("lwt_in", P.LWT_IN),
    SectionDef("lwt_out", P.LWT_OUT),
    SectionDef("lwt_xmit", P.LWT_XMIT),
    SectionDef("lwt_seg6local", P.LWT_SEG6LOCAL),
    SectionDef("sockops", P.SOCK_OPS, A.CGROUP_SOCK_OPS),
    SectionDef("sk_skb/stream_parser", P.SK_SKB, A.SK_SKB_STREAM_PARSER, EXACT),
    SectionDef("sk_skb/stream_verdict", P.SK_SKB, A.SK_SKB_STREAM_VERDICT, EXACT),
    SectionDef("sk_skb/verdict", P.SK_SKB, A.SK_SKB_VERDICT, EXACT),
    SectionDef("sk_skb", P.SK_SKB),
    SectionDef("sk_msg", P.SK_MSG, A.SK_MSG_VERDICT),
    SectionDef("lirc_mode2", P.LIRC_MODE2, A.LIRC_MODE2),
    SectionDef("flow_dissector", P.FLOW_DISSECTOR, A.FLOW_DISSECTOR),
    SectionDef("cgroup_skb/ingress", P.CGROUP_SKB, A.CGROUP_INET_INGRESS, EXACT),
    SectionDef("cgroup_skb/egress", P.CGROUP_SKB, A.CGROUP_INET_EGRESS, EXACT),
    SectionDef("cgroup/skb", P.CGROUP_SKB, None, EXACT),
    SectionDef("cgroup/sock_create", P.CGROUP_SOCK, A.CGROUP_INET_SOCK_CREATE, EXACT),
    SectionDef("cgroup/sock_release", P.CGROUP_SOCK, A.CGROUP_INET_SOCK_RELEASE, EXACT),
    SectionDef("cgroup/sock", P.CGROUP_SOCK, A.CGROUP_INET_SOCK_CREATE, EXACT),
    SectionDef("cgroup/post_bind4", P.CGROUP_SOCK, A.CGROUP_INET4_POST_BIND, EXACT),
    SectionDef("cgroup/post_bind6", P.CGROUP_SOCK, A.CGROUP_INET6_POST_BIND, EXACT),
    SectionDef("cgroup/bind4", P.CGROUP_SOCK_ADDR, A.CGROUP_INET4_BIND, EXACT),
    SectionDef("cgroup/bind6", P.CGROUP_SOCK_ADDR, A.CGROUP_INET6_BIND, EXACT),
    SectionDef("cgroup/connect4", P.CGROUP_SOCK_ADDR, A.CGROUP_INET4_CONNECT, EXACT),
    SectionDef("cgroup/connect6", P.CGROUP_SOCK_ADDR, A.CGROUP_INET6_CONNECT, EXACT),
    SectionDef("cgroup/connect_unix", P.CGROUP_SOCK_ADDR, A.CGROUP_UNIX_CONNECT, EXACT),
    SectionDef("cgroup/sendmsg4", P.CGROUP_SOCK_ADDR, A.CGROUP_UDP4_SENDMSG, EXACT),
    SectionDef("cgroup/sendmsg6", P.CGROUP_SOCK_ADDR, A.CGROUP_UDP6_SENDMSG, EXACT),
    SectionDef("cgroup/sendmsg_unix", P.CGROUP_SOCK_ADDR, A.CGROUP_UNIX_SENDMSG, EXACT),
    SectionDef("cgroup/recvmsg4", P.CGROUP_SOCK_ADDR, A.CGROUP_UDP4_RECVMSG, EXACT),
    SectionDef("cgroup/recvmsg6", P.CGROUP_SOCK_ADDR, A.CGROUP_UDP6_RECVMSG, EXACT),
    SectionDef("cgroup/recvmsg_unix", P.CGROUP_SOCK_ADDR, A.CGROUP_UNIX_RECVMSG, EXACT),
    SectionDef("cgroup/getpeername4", P.CGROUP_SOCK_ADDR, A.CGROUP_INET4_GETPEERNAME, EXACT),
    SectionDef("cgroup/getpeername6", P.CGROUP_SOCK_ADDR, A.CGROUP_INET6_GETPEERNAME, EXACT),
    SectionDef("cgroup/getpeername_unix", P.CGROUP_SOCK_ADDR, A.CGROUP_UNIX_GETPEERNAME, EXACT),
    SectionDef("cgroup/getsockname4", P.CGROUP_SOCK_ADDR, A.CGROUP_INET4_GETSOCKNAME, EXACT),
    SectionDef("cgroup/getsockname6", P.CGROUP_SOCK_ADDR, A.CGROUP_INET6_GETSOCKNAME, EXACT),
    SectionDef("cgroup/getsockname_unix", P.CGROUP_SOCK_ADDR, A.CGROUP_UNIX_GETSOCKNAME, EXACT),
    SectionDef("cgroup/sysctl", P.CGROUP_SYSCTL, A.CGROUP_SYSCTL, EXACT),
    SectionDef("cgroup/getsockopt", P.CGROUP_SOCKOPT, A.CGROUP_GETSOCKOPT, EXACT),
    SectionDef("cgroup/setsockopt", P.CGROUP_SOCKOPT, A.CGROUP_SETSOCKOPT, EXACT),
    SectionDef("cgroup/dev", P.CGROUP_DEVICE, A.CGROUP_DEVICE, EXACT),
    SectionDef("struct_ops", P.STRUCT_OPS),
    SectionDef("struct_ops.s", P.STRUCT_OPS, None, SLEEPABLE),
    SectionDef("sk_lookup", P.SK_LOOKUP, A.SK_LOOKUP),  # "sk_lookup/label" too
    SectionDef("netfilter", P.NETFILTER, A.NETFILTER, EXACT),
)

_BY_PREFIX = {d.prefix: d for d in SECTION_DEFS}


def _plugin_sections() -> list[SectionDef]:
    from ebpf.core.plugins import section_types  # deferred: start-up time (pluggy and every plugin)

    out = []
    for st in section_types():
        prefix = st.prefix.rstrip("/")
        builtin = _BY_PREFIX.get(prefix)
        flags = builtin.flags if builtin is not None else NONE
        if st.prefix.endswith("/"):
            flags = (flags & ~EXACT) | TARGET
        if st.extra.get("attach_to_from_name"):
            flags |= TARGET | BTF_TARGET
        out.append(SectionDef(prefix, st.prog_type, st.attach_type, flags))
    return out


def _matches(name: str, d: SectionDef) -> str | None:
    """The suffix after ``d.prefix`` ("" for an exact match), or None when it does not match."""
    if name == d.prefix:
        return ""
    if d.flags & EXACT:
        return None
    if name.startswith(d.prefix + "/"):
        return name[len(d.prefix) + 1 :]
    return None


_SYSCALL_PREFIX = {"x86_64": "__x64_sys_", "aarch64": "__arm64_sys_", "s390x": "__s390x_sys_",
                   "riscv64": "__riscv_sys_", "ppc64le": "__powerpc_sys_"}


def _attach_target(prefix: str, suffix: str) -> str | None:
    """The section suffix in the form ``program.attach(target)`` takes (ebpf-events' conventions).

    ``kretprobe/f`` -> ``"kretprobe:f"``, ``uprobe//bin/x:sym`` -> ``"uprobe:/bin/x:sym"``,
    ``ksyscall/openat`` -> ``"kprobe:__x64_sys_openat"``; tracepoints and raw tracepoints keep
    the suffix; BTF-typed sections give None (their target is ``ProgramSpec.attach_to``).
    """
    base = prefix.split(".")[0]
    if base in ("kprobe", "kretprobe", "uprobe", "uretprobe", "usdt") and "." not in prefix:
        return f"{base}:{suffix}"
    if base in ("uprobe", "uretprobe") and prefix.endswith(".s"):
        return f"{base}:{suffix}"
    if base in ("ksyscall", "kretsyscall"):
        kind = "kprobe" if base == "ksyscall" else "kretprobe"
        return f"{kind}:{_SYSCALL_PREFIX.get(os.uname().machine, '__x64_sys_')}{suffix}"
    if base == "usdt":
        return f"usdt:{suffix}"
    return suffix


def _longest(name: str, defs: tuple[SectionDef, ...] | list[SectionDef]) -> tuple[SectionDef, str] | None:
    best: tuple[SectionDef, str] | None = None
    for d in defs:
        suffix = _matches(name, d)
        if suffix is not None and (best is None or len(d.prefix) > len(best[0].prefix)):
            best = (d, suffix)
    return best


def match_section(name: str, extra: list[SectionDef] | None = None) -> SectionMatch | None:
    """What the code section ``name`` holds, or None when no prefix matches (not a program).

    libbpf's names (the built-in table) mean what they mean to libbpf, so an object loads here
    as libbpf loads it; the longest matching prefix wins.  A name the table does not know is
    looked up in the plugins' section types (``ebpf_section_types``), again longest prefix
    first; a plugin prefix equal to a built-in one keeps the built-in's handling of the suffix
    (BTF targets, sleepable, XDP frags).  ``extra={"attach_to_from_name": True}`` on a
    plugin's SectionType makes the suffix a BTF attach target (``ProgramSpec.attach_to``).
    Plugins are only loaded for such a name: a libbpf-style object never waits for them.

    :param name: the ELF section name.
    :param extra: the definitions to use instead of the plugins' section types (tests).
    :returns: the match, or None.
    """
    best = _longest(name, SECTION_DEFS)
    if best is None:
        best = _longest(name, list(extra) if extra is not None else _plugin_sections())
    if best is None:
        return None
    d, suffix = best
    target = suffix or None
    if d.flags & BTF_TARGET and target is None:
        raise ELFError(f"section {name!r}: {d.prefix} programs need a target ({d.prefix}/<name>)")
    attach_to = target if d.flags & BTF_TARGET else None
    if target is not None:
        # BTF-typed programs attach where they were loaded for: no target to pass to attach().
        target = None if d.flags & BTF_TARGET else _attach_target(d.prefix, target)
    flags = (BPF_F_SLEEPABLE if d.flags & SLEEPABLE else 0) | (BPF_F_XDP_HAS_FRAGS if d.flags & XDP_FRAGS else 0)
    return SectionMatch(d.prog_type, d.attach_type, target if (d.flags & TARGET or target) else None, attach_to,
                        flags, d.prefix)
