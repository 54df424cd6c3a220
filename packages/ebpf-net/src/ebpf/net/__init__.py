"""ebpf-net: attach eBPF programs to the network stack.

Modules: :mod:`ebpf.net.xdp` (XDP through links or netlink), :mod:`ebpf.net.tc` (clsact
filters and TCX links), :mod:`ebpf.net.cgroup` (cgroup v2 programs),
:mod:`ebpf.net.socket_filter`, :mod:`ebpf.net.sk_lookup`, :mod:`ebpf.net.netfilter` and
:mod:`ebpf.net.sockmap` (sockmap/sockhash, SK_MSG, SK_SKB, sock_ops); :mod:`ebpf.net.packet` is a
packet-processing DSL over the assembler; :mod:`ebpf.net.xsk` has AF_XDP sockets in pure Python;
:mod:`ebpf.net.flow_dissector` replaces a namespace's packet dissector; :mod:`ebpf.net.netkit`
creates netkit pairs and attaches their programs.
Netlink goes through pyroute2, wrapped in a private module; every error is one of
:mod:`ebpf.core.errors`.  Installing the package also registers attach backends, so
``program.attach("eth0")`` or ``program.attach("/sys/fs/cgroup/app")`` just works.
"""


from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ebpf.net import (
        cgroup,
        flow_dissector,
        netfilter,
        netkit,
        packet,
        sk_lookup,
        socket_filter,
        sockmap,
        tc,
        xdp,
        xsk,
    )
    from ebpf.net.cgroup import (
        CgroupSetup,
        attach_cgroup_program,
        cgroup_exists,
        cgroup_program,
        cgroup_root,
        create_cgroup,
        detach_cgroup_program,
        get_current_cgroup,
        list_cgroup_children,
        load_cgroup_device_program,
        load_cgroup_skb_program,
        load_cgroup_sock_addr_program,
        load_cgroup_sock_program,
        load_cgroup_sockopt_program,
        load_cgroup_sysctl_program,
        query_cgroup_programs,
        remove_cgroup,
        setup_cgroup_skb,
        teardown_cgroup_program,
    )
    from ebpf.net.flow_dissector import FlowKeys, attach_flow_dissector, dissect, load_flow_dissector_program
    from ebpf.net.netfilter import NfVerdict, attach_netfilter, load_netfilter_program
    from ebpf.net.netkit import NetkitAction, NetkitPair, attach_netkit, create_netkit, delete_netkit, probe_netkit
    from ebpf.net.packet import Packet, PacketError
    from ebpf.net.sk_lookup import SkAction, attach_sk_lookup, load_sk_lookup_program
    from ebpf.net.socket_filter import (
        attach_raw_socket,
        attach_socket_filter,
        detach_socket_filter,
        load_socket_filter,
        open_raw_socket,
    )
    from ebpf.net.sockmap import (
        SocketCodec,
        SockOp,
        attach_sk_msg,
        attach_sk_skb,
        create_sockhash,
        create_sockmap,
        load_sk_msg_program,
        load_sk_skb_program,
        load_sock_ops_program,
        socket_cookie,
    )
    from ebpf.net.tc import (
        TcAction,
        TcFilter,
        TcSetup,
        add_clsact_qdisc,
        attach_tc_filter,
        attach_tcx,
        detach_tc_filter,
        has_clsact_qdisc,
        list_tc_filters,
        load_tc_program,
        query_tcx,
        remove_clsact_qdisc,
        setup_tc_egress,
        setup_tc_ingress,
        tc_filter,
        teardown_tc_filter,
    )
    from ebpf.net.xdp import (
        XdpAction,
        XdpState,
        attach_xdp,
        create_cpumap,
        create_devmap,
        create_xskmap,
        detach_xdp,
        interface_index_to_name,
        interface_name_to_index,
        load_xdp_program,
        query_xdp,
        xdp_program,
    )
    from ebpf.net.xsk import Umem, XskSocket

# Submodules and the names re-exported from them, imported on first use: importing the package
# (its plugin, say) costs nothing until a name is used.
_MODULES: list[str] = ["cgroup", "flow_dissector", "netfilter", "netkit", "packet", "sk_lookup", "socket_filter", "sockmap", "tc", "xdp", "xsk"]
_NAMES = {
    "CgroupSetup": "cgroup",
    "FlowKeys": "flow_dissector",
    "NetkitAction": "netkit",
    "NetkitPair": "netkit",
    "NfVerdict": "netfilter",
    "Packet": "packet",
    "PacketError": "packet",
    "SkAction": "sk_lookup",
    "SockOp": "sockmap",
    "SocketCodec": "sockmap",
    "TcAction": "tc",
    "TcFilter": "tc",
    "TcSetup": "tc",
    "Umem": "xsk",
    "XdpAction": "xdp",
    "XdpState": "xdp",
    "XskSocket": "xsk",
    "add_clsact_qdisc": "tc",
    "attach_cgroup_program": "cgroup",
    "attach_flow_dissector": "flow_dissector",
    "attach_netfilter": "netfilter",
    "attach_netkit": "netkit",
    "attach_raw_socket": "socket_filter",
    "attach_sk_lookup": "sk_lookup",
    "attach_sk_msg": "sockmap",
    "attach_sk_skb": "sockmap",
    "attach_socket_filter": "socket_filter",
    "attach_tc_filter": "tc",
    "attach_tcx": "tc",
    "attach_xdp": "xdp",
    "cgroup_exists": "cgroup",
    "cgroup_program": "cgroup",
    "cgroup_root": "cgroup",
    "create_cgroup": "cgroup",
    "create_cpumap": "xdp",
    "create_devmap": "xdp",
    "create_netkit": "netkit",
    "create_sockhash": "sockmap",
    "create_sockmap": "sockmap",
    "create_xskmap": "xdp",
    "delete_netkit": "netkit",
    "detach_cgroup_program": "cgroup",
    "detach_socket_filter": "socket_filter",
    "detach_tc_filter": "tc",
    "detach_xdp": "xdp",
    "dissect": "flow_dissector",
    "get_current_cgroup": "cgroup",
    "has_clsact_qdisc": "tc",
    "interface_index_to_name": "xdp",
    "interface_name_to_index": "xdp",
    "list_cgroup_children": "cgroup",
    "list_tc_filters": "tc",
    "load_cgroup_device_program": "cgroup",
    "load_cgroup_skb_program": "cgroup",
    "load_cgroup_sock_addr_program": "cgroup",
    "load_cgroup_sock_program": "cgroup",
    "load_cgroup_sockopt_program": "cgroup",
    "load_cgroup_sysctl_program": "cgroup",
    "load_flow_dissector_program": "flow_dissector",
    "load_netfilter_program": "netfilter",
    "load_sk_lookup_program": "sk_lookup",
    "load_sk_msg_program": "sockmap",
    "load_sk_skb_program": "sockmap",
    "load_sock_ops_program": "sockmap",
    "load_socket_filter": "socket_filter",
    "load_tc_program": "tc",
    "load_xdp_program": "xdp",
    "open_raw_socket": "socket_filter",
    "probe_netkit": "netkit",
    "query_cgroup_programs": "cgroup",
    "query_tcx": "tc",
    "query_xdp": "xdp",
    "remove_cgroup": "cgroup",
    "remove_clsact_qdisc": "tc",
    "setup_cgroup_skb": "cgroup",
    "setup_tc_egress": "tc",
    "setup_tc_ingress": "tc",
    "socket_cookie": "sockmap",
    "tc_filter": "tc",
    "teardown_cgroup_program": "cgroup",
    "teardown_tc_filter": "tc",
    "xdp_program": "xdp",
}

__all__ = [
    "xdp", "tc", "cgroup", "socket_filter", "sk_lookup", "netfilter", "sockmap", "packet",
    "Packet", "PacketError", "xsk", "Umem", "XskSocket",
    "flow_dissector", "FlowKeys", "attach_flow_dissector", "dissect", "load_flow_dissector_program",
    "netkit", "NetkitAction", "NetkitPair", "attach_netkit", "create_netkit", "delete_netkit", "probe_netkit",
    "XdpAction", "XdpState", "attach_xdp", "create_cpumap", "create_devmap", "create_xskmap", "detach_xdp",
    "interface_index_to_name", "interface_name_to_index", "load_xdp_program", "query_xdp", "xdp_program",
    "TcAction", "TcFilter", "TcSetup", "add_clsact_qdisc", "attach_tc_filter", "attach_tcx", "detach_tc_filter",
    "has_clsact_qdisc", "list_tc_filters", "load_tc_program", "query_tcx", "remove_clsact_qdisc",
    "setup_tc_egress", "setup_tc_ingress", "tc_filter", "teardown_tc_filter",
    "CgroupSetup", "attach_cgroup_program", "cgroup_exists", "cgroup_program", "cgroup_root", "create_cgroup",
    "detach_cgroup_program", "get_current_cgroup", "list_cgroup_children", "load_cgroup_device_program",
    "load_cgroup_skb_program", "load_cgroup_sock_addr_program", "load_cgroup_sock_program",
    "load_cgroup_sockopt_program", "load_cgroup_sysctl_program", "query_cgroup_programs", "remove_cgroup",
    "setup_cgroup_skb", "teardown_cgroup_program",
    "attach_raw_socket", "attach_socket_filter", "detach_socket_filter", "load_socket_filter", "open_raw_socket",
    "SkAction", "attach_sk_lookup", "load_sk_lookup_program",
    "NfVerdict", "attach_netfilter", "load_netfilter_program",
    "SocketCodec", "SockOp", "attach_sk_msg", "attach_sk_skb", "create_sockhash", "create_sockmap",
    "load_sk_msg_program", "load_sk_skb_program", "load_sock_ops_program", "socket_cookie",
]  # fmt: skip


def __getattr__(name: str) -> Any:
    if name in _MODULES:
        value = importlib.import_module(f"ebpf.net.{name}")
    elif name in _NAMES:
        value = getattr(importlib.import_module(f"ebpf.net.{_NAMES[name]}"), name)
    else:
        raise AttributeError(f"module 'ebpf.net' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
