"""Section names of ``@kernel("...")`` -> program type, attach type, default context, attach target.

The names are libbpf's (``tracepoint/syscalls/sys_enter_openat``, ``xdp``, ``cgroup/connect4``,
...), so the ELF objects ``ebpf.lang.compile`` writes load anywhere a clang-built one does.
"""

from __future__ import annotations

from ebpf.core.records import dataclass
from ebpf.core.types import AttachType, ProgType

__all__ = ["SectionInfo", "section_info"]


@dataclass(frozen=True)
class SectionInfo:
    """What a section name means for loading and attaching.

    :ivar prog_type: the program type.
    :ivar attach_type: the expected attach type (None: the kernel needs none).
    :ivar ctx: the default context struct (for a context argument without annotation).
    :ivar target: the part after the prefix that attaching uses (``"syscalls/sys_enter_openat"``), or None.
    :ivar attach_to: the BTF name for ``ProgramSpec.attach_to`` (tp_btf), or None.
    """

    prog_type: ProgType
    attach_type: AttachType | None
    ctx: str
    target: str | None
    attach_to: str | None = None


P, A = ProgType, AttachType
# prefix -> (program type, attach type, default context, takes a target after "/")
_TABLE: list[tuple[str, ProgType, AttachType | None, str, bool]] = [
    ("tracepoint/", P.TRACEPOINT, None, "trace_event_raw_sys_enter", True),
    ("tp/", P.TRACEPOINT, None, "trace_event_raw_sys_enter", True),
    ("raw_tracepoint/", P.RAW_TRACEPOINT, None, "bpf_raw_tracepoint_args", True),
    ("raw_tp/", P.RAW_TRACEPOINT, None, "bpf_raw_tracepoint_args", True),
    ("tp_btf/", P.TRACING, A.TRACE_RAW_TP, "bpf_raw_tracepoint_args", True),
    ("kprobe/", P.KPROBE, None, "pt_regs", True),
    ("kretprobe/", P.KPROBE, None, "pt_regs", True),
    ("uprobe/", P.KPROBE, None, "pt_regs", True),  # libbpf's SEC("uprobe/BINARY:FUNCTION")
    ("uretprobe/", P.KPROBE, None, "pt_regs", True),
    ("perf_event", P.PERF_EVENT, None, "bpf_perf_event_data", False),
    ("xdp", P.XDP, A.XDP, "xdp_md", False),
    ("tc", P.SCHED_CLS, None, "__sk_buff", False),
    ("classifier", P.SCHED_CLS, None, "__sk_buff", False),
    ("socket", P.SOCKET_FILTER, None, "__sk_buff", False),
    ("cgroup_skb/ingress", P.CGROUP_SKB, A.CGROUP_INET_INGRESS, "__sk_buff", False),
    ("cgroup_skb/egress", P.CGROUP_SKB, A.CGROUP_INET_EGRESS, "__sk_buff", False),
    ("cgroup/connect4", P.CGROUP_SOCK_ADDR, A.CGROUP_INET4_CONNECT, "bpf_sock_addr", False),
    ("cgroup/connect6", P.CGROUP_SOCK_ADDR, A.CGROUP_INET6_CONNECT, "bpf_sock_addr", False),
    ("cgroup/bind4", P.CGROUP_SOCK_ADDR, A.CGROUP_INET4_BIND, "bpf_sock_addr", False),
    ("cgroup/bind6", P.CGROUP_SOCK_ADDR, A.CGROUP_INET6_BIND, "bpf_sock_addr", False),
    ("cgroup/sendmsg4", P.CGROUP_SOCK_ADDR, A.CGROUP_UDP4_SENDMSG, "bpf_sock_addr", False),
    ("cgroup/sendmsg6", P.CGROUP_SOCK_ADDR, A.CGROUP_UDP6_SENDMSG, "bpf_sock_addr", False),
    ("cgroup/sock_create", P.CGROUP_SOCK, A.CGROUP_INET_SOCK_CREATE, "bpf_sock", False),
    ("cgroup/sock", P.CGROUP_SOCK, A.CGROUP_INET_SOCK_CREATE, "bpf_sock", False),
]


def section_info(section: str) -> SectionInfo | None:
    """The meaning of ``section``, or None when it is not a known section name."""
    best = None
    for prefix, ptype, atype, ctx, takes_target in _TABLE:
        # "xdp" and "xdp/anything" match "xdp"; "tracepoint/" needs its target after the slash.
        matches = section == prefix.rstrip("/") or (section.startswith(prefix) and (
            takes_target or section == prefix or section.startswith(prefix + "/")))
        if matches and (best is None or len(prefix) > len(best[0])):
            best = (prefix, ptype, atype, ctx, takes_target)
    if best is None:
        return None
    prefix, ptype, atype, ctx, takes_target = best
    target = section[len(prefix):] if takes_target and section.startswith(prefix) else None
    if takes_target and not target:
        return None
    if prefix in ("kretprobe/", "uprobe/", "uretprobe/"):
        target = f"{prefix[:-1]}:{target}"  # the attach backend's "uprobe:/path:symbol" form
    attach_to = target if ptype == P.TRACING else None
    return SectionInfo(ptype, atype, ctx, target, attach_to)
