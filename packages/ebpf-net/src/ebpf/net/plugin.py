"""ebpf-net's pluggy hook implementations: attach backends and ELF section names for network programs.

With ebpf-net installed, ``program.attach(target, **options)`` dispatches by program type:

- XDP → :func:`ebpf.net.xdp.attach_xdp` (target: interface name/index; options mode, method, replace)
- sched_cls/sched_act → a tc filter (options direction, priority, handle, name) or, for
  programs loaded with a TCX attach type or with ``method="tcx"``, :func:`ebpf.net.tc.attach_tcx`
- cgroup_* / sock_ops → :func:`ebpf.net.cgroup.attach_cgroup_program` (target: cgroup path)
- socket_filter → :func:`ebpf.net.socket_filter.attach_socket_filter` (target: socket or fd)
- sk_lookup → :func:`ebpf.net.sk_lookup.attach_sk_lookup` (target: None or a netns)
- netfilter → :func:`ebpf.net.netfilter.attach_netfilter` (target None; options pf, hook, priority)
- sk_msg / sk_skb → :func:`ebpf.net.sockmap.attach_sk_msg` / ``attach_sk_skb`` (target: a sockmap/sockhash)
- flow_dissector → :func:`ebpf.net.flow_dissector.attach_flow_dissector` (target: None or a netns)
- sched_cls loaded for netkit_primary/netkit_peer → :func:`ebpf.net.netkit.attach_netkit` (target: the primary)
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from ebpf.core.errors import AttachError
from ebpf.core.plugins import AttachBackend, FeatureProbe, SectionType, hookimpl
from ebpf.core.types import AttachType, ProgType

if TYPE_CHECKING:
    from ebpf.core.demo import DemoStep
    from ebpf.core.links import Link

__all__ = ["ebpf_attach_backends", "ebpf_section_types", "ebpf_features", "ebpf_demo_steps"]

_DIST = "ebpf-net"


def _is_interface(target: object) -> bool:
    return isinstance(target, (str, int)) and not isinstance(target, bool)


def _is_path(target: object) -> bool:
    return isinstance(target, (str, os.PathLike))


def _is_socket(target: object) -> bool:
    return (isinstance(target, int) and not isinstance(target, bool)) or hasattr(target, "fileno")


def _attach_xdp(program: Any, target: Any, **options: Any) -> Link:
    from ebpf.net.xdp import attach_xdp

    return attach_xdp(target, program, **options)


def _attach_tc(
    program: Any, target: Any, direction: str | None = None, method: str | None = None, **options: Any
) -> Link:
    from ebpf.net.tc import attach_tc_filter, attach_tcx

    expected = getattr(program, "expected_attach_type", None)
    tcx_dir = (
        {AttachType.TCX_INGRESS: "ingress", AttachType.TCX_EGRESS: "egress"}.get(expected)
        if expected is not None
        else None
    )
    if method not in (None, "tcx", "filter"):
        raise AttachError(f"tc attach method must be 'tcx' or 'filter', not {method!r}")
    if method == "tcx" or (method is None and tcx_dir is not None):
        return attach_tcx(target, program, direction or tcx_dir or "ingress", **options)
    return attach_tc_filter(target, program, direction or "ingress", **options)


def _attach_cgroup(program: Any, target: Any, **options: Any) -> Link:
    from ebpf.net.cgroup import attach_cgroup_program

    return attach_cgroup_program(target, program, **options)


def _attach_socket(program: Any, target: Any, **options: Any) -> Link:
    from ebpf.net.socket_filter import attach_socket_filter

    if options:
        raise AttachError(f"socket filters take no attach options, got {', '.join(options)}")
    return attach_socket_filter(target, program)


def _attach_sk_lookup(program: Any, target: Any, **options: Any) -> Link:
    from ebpf.net.sk_lookup import attach_sk_lookup

    if options:
        raise AttachError(f"sk_lookup takes no attach options, got {', '.join(options)}")
    return attach_sk_lookup(program, target)


def _attach_netfilter(program: Any, target: Any, **options: Any) -> Link:
    from ebpf.net.netfilter import attach_netfilter

    if target is not None:
        raise AttachError("netfilter programs attach to no target: pass pf=, hook=, priority= options")
    return attach_netfilter(program, **options)


def _attach_sockmap(program: Any, target: Any, **options: Any) -> Link:
    from ebpf.net.sockmap import attach_sk_msg, attach_sk_skb

    if ProgType.parse(program.prog_type) == ProgType.SK_MSG:
        return attach_sk_msg(program, target, **options)
    return attach_sk_skb(program, target, **options)


def _attach_flow_dissector(program: Any, target: Any, **options: Any) -> Link:
    from ebpf.net.flow_dissector import attach_flow_dissector

    if options:
        raise AttachError(f"flow dissectors take no attach options, got {', '.join(options)}")
    return attach_flow_dissector(program, target)


def _attach_netkit(program: Any, target: Any, **options: Any) -> Link:
    from ebpf.net.netkit import attach_netkit

    if options:
        raise AttachError(f"netkit programs take no attach options, got {', '.join(options)}")
    return attach_netkit(program, target, peer=program.expected_attach_type == AttachType.NETKIT_PEER)


_CGROUP_TYPES = (
    ProgType.CGROUP_SKB,
    ProgType.CGROUP_SOCK,
    ProgType.CGROUP_SOCK_ADDR,
    ProgType.CGROUP_DEVICE,
    ProgType.CGROUP_SYSCTL,
    ProgType.CGROUP_SOCKOPT,
    ProgType.SOCK_OPS,
)


@hookimpl
def ebpf_attach_backends() -> list[AttachBackend]:
    """Attach backends for XDP, TC/TCX, cgroup, socket filter, sk_lookup, netfilter, sockmap, flow dissector
    and netkit programs."""
    return [
        AttachBackend("xdp", ((ProgType.XDP, AttachType.XDP), (ProgType.XDP, None)), _attach_xdp, _DIST, _is_interface),
        AttachBackend(
            "tc",
            (
                (ProgType.SCHED_CLS, AttachType.TCX_INGRESS),
                (ProgType.SCHED_CLS, AttachType.TCX_EGRESS),
                (ProgType.SCHED_CLS, None),
                (ProgType.SCHED_ACT, None),
            ),
            _attach_tc,
            _DIST,
            _is_interface,
        ),
        AttachBackend("cgroup", tuple((t, None) for t in _CGROUP_TYPES), _attach_cgroup, _DIST, _is_path),
        AttachBackend("socket_filter", ((ProgType.SOCKET_FILTER, None),), _attach_socket, _DIST, _is_socket),
        AttachBackend(
            "sk_lookup",
            ((ProgType.SK_LOOKUP, AttachType.SK_LOOKUP), (ProgType.SK_LOOKUP, None)),
            _attach_sk_lookup,
            _DIST,
        ),
        AttachBackend(
            "netfilter",
            ((ProgType.NETFILTER, AttachType.NETFILTER), (ProgType.NETFILTER, None)),
            _attach_netfilter,
            _DIST,
        ),
        AttachBackend("sockmap", ((ProgType.SK_MSG, None), (ProgType.SK_SKB, None)), _attach_sockmap, _DIST),
        AttachBackend("flow_dissector", ((ProgType.FLOW_DISSECTOR, None),), _attach_flow_dissector, _DIST),
        AttachBackend(
            "netkit",
            ((ProgType.SCHED_CLS, AttachType.NETKIT_PRIMARY), (ProgType.SCHED_CLS, AttachType.NETKIT_PEER)),
            _attach_netkit,
            _DIST,
            _is_interface,
        ),
    ]


_SECTIONS: tuple[tuple[str, ProgType, AttachType | None], ...] = (
    ("xdp", ProgType.XDP, AttachType.XDP),
    ("tc", ProgType.SCHED_CLS, None),
    ("classifier", ProgType.SCHED_CLS, None),
    ("action", ProgType.SCHED_ACT, None),
    ("tcx/ingress", ProgType.SCHED_CLS, AttachType.TCX_INGRESS),
    ("tcx/egress", ProgType.SCHED_CLS, AttachType.TCX_EGRESS),
    ("cgroup_skb/ingress", ProgType.CGROUP_SKB, AttachType.CGROUP_INET_INGRESS),
    ("cgroup_skb/egress", ProgType.CGROUP_SKB, AttachType.CGROUP_INET_EGRESS),
    ("cgroup/skb", ProgType.CGROUP_SKB, None),
    ("cgroup/sock_create", ProgType.CGROUP_SOCK, AttachType.CGROUP_INET_SOCK_CREATE),
    ("cgroup/sock_release", ProgType.CGROUP_SOCK, AttachType.CGROUP_INET_SOCK_RELEASE),
    ("cgroup/sock", ProgType.CGROUP_SOCK, AttachType.CGROUP_INET_SOCK_CREATE),
    ("cgroup/post_bind4", ProgType.CGROUP_SOCK, AttachType.CGROUP_INET4_POST_BIND),
    ("cgroup/post_bind6", ProgType.CGROUP_SOCK, AttachType.CGROUP_INET6_POST_BIND),
    ("cgroup/dev", ProgType.CGROUP_DEVICE, AttachType.CGROUP_DEVICE),
    ("cgroup/sysctl", ProgType.CGROUP_SYSCTL, AttachType.CGROUP_SYSCTL),
    ("cgroup/getsockopt", ProgType.CGROUP_SOCKOPT, AttachType.CGROUP_GETSOCKOPT),
    ("cgroup/setsockopt", ProgType.CGROUP_SOCKOPT, AttachType.CGROUP_SETSOCKOPT),
    ("sockops", ProgType.SOCK_OPS, AttachType.CGROUP_SOCK_OPS),
    ("socket", ProgType.SOCKET_FILTER, None),
    ("sk_lookup", ProgType.SK_LOOKUP, AttachType.SK_LOOKUP),
    ("netfilter", ProgType.NETFILTER, AttachType.NETFILTER),
    ("sk_skb/stream_parser", ProgType.SK_SKB, AttachType.SK_SKB_STREAM_PARSER),
    ("sk_skb/stream_verdict", ProgType.SK_SKB, AttachType.SK_SKB_STREAM_VERDICT),
    ("sk_skb/verdict", ProgType.SK_SKB, AttachType.SK_SKB_VERDICT),
    ("xdp/devmap", ProgType.XDP, AttachType.XDP_DEVMAP),
    ("xdp/cpumap", ProgType.XDP, AttachType.XDP_CPUMAP),
    ("netkit/primary", ProgType.SCHED_CLS, AttachType.NETKIT_PRIMARY),
    ("netkit/peer", ProgType.SCHED_CLS, AttachType.NETKIT_PEER),
    ("sk_skb", ProgType.SK_SKB, None),
    ("sk_msg", ProgType.SK_MSG, AttachType.SK_MSG_VERDICT),
    ("flow_dissector", ProgType.FLOW_DISSECTOR, AttachType.FLOW_DISSECTOR),
)


def _sock_addr_sections() -> list[tuple[str, ProgType, AttachType | None]]:
    out: list[tuple[str, ProgType, AttachType | None]] = []
    for v in ("4", "6"):
        for op in ("connect", "bind", "getpeername", "getsockname"):
            out.append((f"cgroup/{op}{v}", ProgType.CGROUP_SOCK_ADDR, AttachType[f"CGROUP_INET{v}_{op.upper()}"]))
        out.append((f"cgroup/sendmsg{v}", ProgType.CGROUP_SOCK_ADDR, AttachType[f"CGROUP_UDP{v}_SENDMSG"]))
        out.append((f"cgroup/recvmsg{v}", ProgType.CGROUP_SOCK_ADDR, AttachType[f"CGROUP_UDP{v}_RECVMSG"]))
    for op in ("connect", "sendmsg", "recvmsg", "getpeername", "getsockname"):
        out.append((f"cgroup/{op}_unix", ProgType.CGROUP_SOCK_ADDR, AttachType[f"CGROUP_UNIX_{op.upper()}"]))
    return out


@hookimpl
def ebpf_section_types() -> list[SectionType]:
    """libbpf's section names for network programs (``xdp``, ``tc``, ``tcx/ingress``, ``cgroup/connect4``, ...)."""
    return [SectionType(prefix, prog, att) for prefix, prog, att in (*_SECTIONS, *_sock_addr_sections())]


@hookimpl
def ebpf_features() -> list[FeatureProbe]:
    """Probes for XDP links, TCX, netfilter links, sk_lookup, AF_XDP sockets and netkit devices."""
    from ebpf.net import features, netkit, xsk

    return [
        FeatureProbe("net.xdp_link", features.probe_xdp_link, "XDP attachments through BPF links (Linux >= 5.9)"),
        FeatureProbe("net.tcx", features.probe_tcx, "TCX links for TC programs (Linux >= 6.6)"),
        FeatureProbe("net.netfilter_link", features.probe_netfilter_link, "netfilter BPF links (Linux >= 6.4)"),
        FeatureProbe("net.sk_lookup", features.probe_sk_lookup, "sk_lookup programs (Linux >= 5.9)"),
        FeatureProbe("net.af_xdp", xsk.probe_af_xdp, "AF_XDP sockets (Linux >= 4.18)"),
        FeatureProbe("net.netkit", netkit.probe_netkit, "netkit devices (Linux >= 6.7, CONFIG_NETKIT)"),
    ]


def _network_step(ctx: Any) -> None:
    from ebpf.net._demo import network_step

    network_step(ctx)


def _cgroup_step(ctx: Any) -> None:
    from ebpf.net._demo import cgroup_step

    cgroup_step(ctx)


@hookimpl
def ebpf_demo_steps() -> list[DemoStep]:
    """The network (namespaces, veth, XDP, TC) and cgroup connect-blocking parts of ``ebpf demo``."""
    from ebpf.core.demo import DemoStep  # deferred: start-up time (only `ebpf demo` needs it)

    return [
        DemoStep("network", "two namespaces + veth: an XDP counter and a TC drop filter (ebpf-net)", _network_step,
                 order=30, distribution=_DIST),
        DemoStep("cgroup", "a cgroup/connect4 program: connect() gets EPERM in a child cgroup (ebpf-net)",
                 _cgroup_step, order=40, distribution=_DIST),
    ]
