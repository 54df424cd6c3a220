"""The one place that talks to pyroute2 (rtnetlink: links, qdiscs, filters).

Nothing of pyroute2 leaves this module: callers get ints, strings and small
dataclasses, and every :class:`pyroute2.NetlinkError` is re-raised as one of
:mod:`ebpf.core.errors` naming the interface it was about.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ebpf.core.errors import AttachError, BPFSyscallError, EBPFError
from ebpf.core.records import dataclass

__all__ = [
    "BpfFilterRecord",
    "XdpRecord",
    "resolve_interface",
    "interface_name",
    "xdp_set",
    "xdp_query",
    "clsact_present",
    "clsact_add",
    "clsact_del",
    "bpf_filter_add",
    "bpf_filter_del",
    "bpf_filter_list",
    "NetnsHandle",
    "rx_queue_count",
    "netkit_add",
    "link_set",
    "link_del",
]

IFNAMSIZ = 16
ETH_P_ALL = 0x0003
TCA_BPF_FLAG_ACT_DIRECT = 1
# TCA_BPF_* attribute numbers pyroute2 0.9 does not decode (include/uapi/linux/pkt_cls.h).
_TCA_BPF_NAME = 7
_TCA_BPF_FLAGS = 8
_TCA_BPF_TAG = 10
_TCA_BPF_ID = 11


@dataclass(frozen=True)
class XdpRecord:
    """What ``IFLA_XDP`` says about one interface.

    :ivar attached: ``None``, ``"drv"``, ``"skb"``, ``"hw"`` or ``"multi"``.
    """

    ifindex: int
    attached: str | None
    prog_id: int
    skb_prog_id: int
    drv_prog_id: int
    hw_prog_id: int


@dataclass(frozen=True)
class BpfFilterRecord:
    """One ``cls_bpf`` filter as the kernel reports it."""

    parent: int
    priority: int
    protocol: int
    handle: int
    name: str
    prog_id: int
    prog_tag: str
    direct_action: bool


def _errno_of(exc: BaseException) -> int:
    code = getattr(exc, "code", None)
    return int(code) if isinstance(code, int) else errno.EIO


def _netlink_error_types() -> tuple[type[BaseException], ...]:
    from pyroute2.netlink.exceptions import NetlinkError

    return (NetlinkError,)


def attach_failure(err: int | None, what: str, hint: str = "") -> AttachError:
    """An :class:`AttachError` for ``what`` that keeps the errno (also as ``.errno`` and the cause)."""
    err = err or errno.EIO
    text = f"{what}: {errno.errorcode.get(err, str(err))} ({os.strerror(err)})"
    if hint:
        text += f"; {hint}"
    exc = AttachError(text)
    exc.errno = err  # type: ignore[attr-defined]
    exc.__cause__ = BPFSyscallError(err, "netlink", what)
    return exc


@contextmanager
def _ipr(what: str, hints: dict[int, str] | None = None, attach: bool = True) -> Iterator[Any]:
    """An IPRoute socket; netlink errors become AttachError (``attach``) or BPFSyscallError."""
    try:
        from pyroute2 import IPRoute
    except ImportError as exc:  # pragma: no cover - pyroute2 is a declared dependency
        raise EBPFError("ebpf-net needs pyroute2: pip install pyroute2") from exc
    try:
        ipr = IPRoute()
    except OSError as exc:
        raise BPFSyscallError(exc.errno or errno.EIO, "netlink socket", str(exc)) from exc
    try:
        yield ipr
    except _netlink_error_types() as exc:
        err = _errno_of(exc)
        hint = (hints or {}).get(err, "")
        # pyroute2's exception stays out of the chain: the cause is our BPFSyscallError.
        failure = attach_failure(err, what, hint) if attach else None
        if failure is not None:
            raise failure from failure.__cause__
        raise BPFSyscallError(err, "netlink", f"{what}: {os.strerror(err)}", hint) from None
    finally:
        ipr.close()


_CLONE_NEWNET = 0x40000000
_THIS_NETNS = "/proc/thread-self/ns/net"


def _setns(fd: int) -> None:
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, _CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise BPFSyscallError(err, "setns", f"cannot enter network namespace: {os.strerror(err)}")


class NetnsHandle:
    """The network namespace this thread is in now, so a later detach acts on the same one.

    Netlink addresses interfaces by index within a namespace; a link made in one
    namespace and detached from another would otherwise hit the wrong device.
    """

    def __init__(self) -> None:
        """Open (and hold) the current network namespace."""
        self.fd = os.open(_THIS_NETNS, os.O_RDONLY | os.O_CLOEXEC)
        self.ino = os.fstat(self.fd).st_ino

    @contextmanager
    def entered(self) -> Iterator[None]:
        """Run the block inside the held namespace (switching back afterwards when needed)."""
        if self.fd < 0:
            raise EBPFError("network namespace handle is closed")
        if os.stat(_THIS_NETNS).st_ino == self.ino:
            yield
            return
        back = os.open(_THIS_NETNS, os.O_RDONLY | os.O_CLOEXEC)
        try:
            _setns(self.fd)
            try:
                yield
            finally:
                _setns(back)
        finally:
            os.close(back)

    def close(self) -> None:
        """Release the namespace fd."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def check_ifname(name: str) -> None:
    """Refuse a string that cannot be an interface name (before any syscall).

    :raises AttachError: empty, too long, or with '/', whitespace or NUL.
    """
    if not name or len(name.encode()) >= IFNAMSIZ or any(c in name for c in "/ \t\n\0:") or name in (".", ".."):
        raise AttachError(f"{name!r} is not a valid network interface name (1..15 characters, no '/', ':' or spaces)")


def resolve_interface(interface: str | int) -> tuple[int, str]:
    """``(ifindex, name)`` of an interface given by name or index, in the current network namespace.

    :raises AttachError: the interface does not exist, or the value cannot name one.
    """
    if isinstance(interface, bool) or not isinstance(interface, (str, int)):
        raise AttachError(f"an interface is a name or an index, not {type(interface).__name__}")
    if isinstance(interface, int):
        if interface <= 0 or interface > 0x7FFFFFFF:
            raise AttachError(f"interface index {interface} is out of range")
        try:
            return interface, socket.if_indextoname(interface)
        except OSError as exc:
            raise AttachError(f"no network interface with index {interface}") from exc
    check_ifname(interface)
    try:
        return socket.if_nametoindex(interface), interface
    except OSError as exc:
        raise AttachError(f"no network interface named {interface!r} in this network namespace") from exc


def interface_name(ifindex: int) -> str:
    """The name of ``ifindex``, or ``"if<ifindex>"`` when it is gone."""
    try:
        return socket.if_indextoname(ifindex)
    except OSError:
        return f"if{ifindex}"


def rx_queue_count(ifindex: int, ifname: str) -> int:
    """How many receive queues the interface has (``IFLA_NUM_RX_QUEUES``; 1 when the kernel does not say)."""
    with _ipr(f"query {ifname}", attach=False) as ipr:
        links = ipr.get_links(ifindex)
    if not links:
        raise AttachError(f"no network interface {ifname!r}")
    count = links[0].get_attr("IFLA_NUM_RX_QUEUES")
    return int(count) if count else 1


_NETKIT_HINTS = {
    errno.EOPNOTSUPP: "this kernel has no netkit devices (CONFIG_NETKIT, Linux >= 6.7)",
    errno.EEXIST: "an interface with this name exists",
}


def netkit_add(name: str) -> tuple[int, int]:
    """Create a netkit pair (L3 mode, forward policy) named ``name``; the kernel names the peer "nk%d".

    :returns: (primary ifindex, peer ifindex).
    """
    with _ipr(f"create netkit device {name}", _NETKIT_HINTS) as ipr:
        ipr.link("add", ifname=name, kind="netkit")
        links = ipr.link_lookup(ifname=name)
        if not links:
            raise AttachError(f"netkit device {name} vanished right after creation")
        link = ipr.get_links(links[0])[0]
        return int(links[0]), int(link.get_attr("IFLA_LINK") or 0)


def link_set(ifindex: int, what: str, **changes: Any) -> None:
    """RTM_SETLINK on ``ifindex`` (``ifname=...``, ``net_ns_fd=...``, ``state="up"``)."""
    with _ipr(what) as ipr:
        ipr.link("set", index=ifindex, **changes)


def link_del(ifindex: int, what: str) -> None:
    """RTM_DELLINK (a pair goes with either end)."""
    with _ipr(what) as ipr:
        ipr.link("del", index=ifindex)


_XDP_HINTS = {
    errno.EOPNOTSUPP: "the driver cannot run XDP in this mode (try mode='skb')",
    errno.EBUSY: "another XDP program is attached (in another mode, or through a BPF link)",
    errno.EEXIST: "an XDP program is already attached (pass replace=True to replace it)",
    errno.EINVAL: "the kernel rejected the program or flags (is it an XDP program? is the mode valid?)",
}


def xdp_set(ifindex: int, ifname: str, prog_fd: int, flags: int, expected_fd: int | None = None) -> None:
    """RTM_SETLINK with ``IFLA_XDP``: attach ``prog_fd`` (or detach with -1) using XDP ``flags``."""
    attrs: list[tuple[str, int]] = [("IFLA_XDP_FD", prog_fd), ("IFLA_XDP_FLAGS", flags)]
    if expected_fd is not None:
        attrs.append(("IFLA_XDP_EXPECTED_FD", expected_fd))
    verb = "attach XDP program to" if prog_fd >= 0 else "detach XDP program from"
    with _ipr(f"{verb} {ifname}", _XDP_HINTS) as ipr:
        ipr.link("set", index=ifindex, IFLA_XDP={"attrs": attrs})


_ATTACHED = {None: None, "xdp": "drv", "xdpgeneric": "skb", "xdpoffload": "hw", "xdpmulti": "multi"}


def xdp_query(ifindex: int, ifname: str) -> XdpRecord:
    """Read ``IFLA_XDP`` of one interface."""
    with _ipr(f"query XDP on {ifname}", attach=False) as ipr:
        links = ipr.get_links(ifindex)
    if not links:
        raise AttachError(f"no network interface {ifname!r}")
    xdp = links[0].get_attr("IFLA_XDP")
    if xdp is None:
        return XdpRecord(ifindex, None, 0, 0, 0, 0)
    attached = _ATTACHED.get(xdp.get_attr("IFLA_XDP_ATTACHED"), "unknown")

    def ident(key: str) -> int:
        value = xdp.get_attr(key)
        return int(value) if value else 0

    prog_id = ident("IFLA_XDP_PROG_ID")
    skb, drv, hw = ident("IFLA_XDP_SKB_PROG_ID"), ident("IFLA_XDP_DRV_PROG_ID"), ident("IFLA_XDP_HW_PROG_ID")
    # With a single program the kernel sends only IFLA_XDP_PROG_ID; file it under its mode.
    if prog_id and not (skb or drv or hw):
        skb = prog_id if attached == "skb" else 0
        drv = prog_id if attached == "drv" else 0
        hw = prog_id if attached == "hw" else 0
    return XdpRecord(ifindex, attached, prog_id, skb, drv, hw)


TC_H_CLSACT = 0xFFFFFFF1
TC_H_CLSACT_HANDLE = 0xFFFF0000


def clsact_present(ifindex: int, ifname: str) -> bool:
    """Whether ``ifindex`` has a clsact qdisc."""
    with _ipr(f"list qdiscs of {ifname}", attach=False) as ipr:
        qdiscs = ipr.get_qdiscs(ifindex)
    return any(q.get_attr("TCA_KIND") == "clsact" and q["parent"] == TC_H_CLSACT for q in qdiscs)


def clsact_add(ifindex: int, ifname: str) -> None:
    """Add the clsact qdisc (EEXIST when there is one)."""
    hints = {errno.EEXIST: f"{ifname} already has a clsact qdisc"}
    with _ipr(f"add clsact qdisc to {ifname}", hints) as ipr:
        ipr.tc("add", "clsact", ifindex)


def clsact_del(ifindex: int, ifname: str) -> None:
    """Delete the clsact qdisc and with it every tc filter on it."""
    hints = {errno.EINVAL: f"{ifname} has no clsact qdisc", errno.ENOENT: f"{ifname} has no clsact qdisc"}
    with _ipr(f"remove clsact qdisc from {ifname}", hints) as ipr:
        ipr.tc("del", "clsact", ifindex)


_FILTER_HINTS = {
    errno.EEXIST: "a filter with this priority and handle exists already",
    errno.EINVAL: "the kernel refused the filter (no clsact qdisc, or not a sched_cls/sched_act program?)",
    errno.ENOENT: "no such filter",
}


def bpf_filter_add(
    ifindex: int,
    ifname: str,
    parent: int,
    prog_fd: int,
    name: str,
    priority: int,
    handle: int,
    protocol: int = ETH_P_ALL,
) -> None:
    """Add a direct-action ``cls_bpf`` filter running ``prog_fd`` (exclusive: EEXIST when taken)."""
    with _ipr(f"attach tc filter to {ifname}", _FILTER_HINTS) as ipr:
        ipr.tc(
            "add-filter",
            "bpf",
            ifindex,
            handle,
            fd=prog_fd,
            name=name,
            parent=parent,
            direct_action=True,
            prio=priority,
            protocol=protocol,
        )


def bpf_filter_del(
    ifindex: int, ifname: str, parent: int, priority: int, handle: int, protocol: int = ETH_P_ALL
) -> None:
    """Delete one ``cls_bpf`` filter."""
    with _ipr(f"detach tc filter (priority {priority}, handle {handle:#x}) from {ifname}", _FILTER_HINTS) as ipr:
        ipr.tc("del-filter", "bpf", ifindex, handle, parent=parent, prio=priority, protocol=protocol)


def parse_bpf_options(raw: bytes) -> dict[int, bytes]:
    """Split a ``TCA_OPTIONS`` attribute (header included) into {type: payload}; tolerant of junk."""
    out: dict[int, bytes] = {}
    if len(raw) < 4:
        return out
    total = min(struct.unpack_from("=H", raw, 0)[0], len(raw))
    pos = 4
    while pos + 4 <= total:
        length, kind = struct.unpack_from("=HH", raw, pos)
        if length < 4:
            break
        out[kind & 0x3FFF] = bytes(raw[pos + 4 : pos + length])
        pos += (length + 3) & ~3
    return out


def _u32(data: bytes | None) -> int:
    return struct.unpack_from("=I", data)[0] if data and len(data) >= 4 else 0


def bpf_filter_list(ifindex: int, ifname: str, parent: int) -> list[BpfFilterRecord]:
    """Every ``cls_bpf`` filter under ``parent`` (the clsact ingress or egress hook)."""
    with _ipr(f"list tc filters of {ifname}", {errno.EINVAL: f"{ifname} has no clsact qdisc"}, attach=False) as ipr:
        msgs = ipr.get_filters(ifindex, parent=parent)
    records = []
    for msg in msgs:
        if msg.get_attr("TCA_KIND") != "bpf" or not msg["handle"]:
            continue  # the per-priority header entry has handle 0 and no options
        options = msg.get_attr("TCA_OPTIONS")
        raw = b""
        if options is not None:
            raw = bytes(options.data[options.offset : options.offset + options.length])
        attrs = parse_bpf_options(raw)
        info = int(msg["info"])
        records.append(
            BpfFilterRecord(
                parent=int(msg["parent"]),
                priority=info >> 16,
                protocol=socket.ntohs(info & 0xFFFF),
                handle=int(msg["handle"]),
                name=attrs.get(_TCA_BPF_NAME, b"").split(b"\0", 1)[0].decode(errors="replace"),
                prog_id=_u32(attrs.get(_TCA_BPF_ID)),
                prog_tag=attrs.get(_TCA_BPF_TAG, b"").hex(),
                direct_action=bool(_u32(attrs.get(_TCA_BPF_FLAGS)) & TCA_BPF_FLAG_ACT_DIRECT),
            )
        )
    return records
