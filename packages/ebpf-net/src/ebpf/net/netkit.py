"""netkit devices: a veth-like pair whose traffic runs BPF programs attached with links, in the
device itself (no qdisc, no TC layer), as Cilium uses for pods.  Requires Linux >= 6.7 with
CONFIG_NETKIT; :func:`probe_netkit` says whether this kernel has them.

    from ebpf.net import netkit
    pair = netkit.create_netkit("nk-host", peer_name="nk-pod", peer_netns="pod1")
    with netkit.attach_netkit(prog, pair.name) as link:         # the primary's program
        ...
    netkit.delete_netkit(pair.name)

Devices are made through rtnetlink (pyroute2, in ``_netlink``) in L3 mode with the forward policy.
"""

from __future__ import annotations

import ctypes
import enum
import errno
import os
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from ebpf.core.errors import AttachError, BPFSyscallError, UnsupportedFeatureError
from ebpf.core.features import feature_test
from ebpf.core.records import dataclass
from ebpf.core.types import AttachType, ProgType
from ebpf.net import _netlink
from ebpf.net._common import check_program, create_link
from ebpf.net.sk_lookup import CLONE_NEWNET, open_netns

if TYPE_CHECKING:
    from ebpf.core.links import BPFLink
    from ebpf.core.programs import Program

__all__ = ["NetkitAction", "NetkitPair", "probe_netkit", "create_netkit", "delete_netkit", "attach_netkit"]


class NetkitAction(enum.IntEnum):
    """What a netkit program returns (``NETKIT_*``): NEXT runs the next program, PASS/DROP end the chain."""

    NEXT = -1
    PASS = 0
    DROP = 2
    REDIRECT = 7


@dataclass(frozen=True)
class NetkitPair:
    """A created pair: the primary in the caller's namespace, the peer where it was moved."""

    name: str
    ifindex: int
    peer_name: str
    peer_ifindex: int


def _in_fresh_netns(work: Callable[[], object]) -> object:
    """Run ``work()`` in a new thread inside a new, empty network namespace (gone when the thread ends)."""
    box: dict[str, object] = {}

    def run() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.unshare(CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            box["error"] = BPFSyscallError(err, "unshare(CLONE_NEWNET)", os.strerror(err))
            return
        try:
            box["value"] = work()
        except BaseException as exc:  # handed to the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=run, name="netkit-probe")
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box.get("value")


@feature_test
def probe_netkit() -> None:
    """netkit devices: one is created (and deleted) in a throwaway network namespace.

    :raises UnsupportedFeatureError: this kernel cannot create netkit devices.
    Requires Linux >= 6.7 (CONFIG_NETKIT).
    """

    def create() -> None:
        ifindex, _ = _netlink.netkit_add("nkprobe0")
        _netlink.link_del(ifindex, "remove the netkit probe device")

    try:
        _in_fresh_netns(create)
    except AttachError as exc:
        if getattr(exc, "errno", None) in (errno.EOPNOTSUPP, errno.EINVAL):
            raise UnsupportedFeatureError("netkit devices", "6.7", str(exc)) from exc
        raise


def create_netkit(name: str, peer_name: str | None = None, peer_netns: str | int | None = None,
                  up: bool = True) -> NetkitPair:  # fmt: skip
    """Create a netkit pair in this thread's network namespace (L3 mode, forward policy).

    :param name: the primary device's name.
    :param peer_name: the peer's name (default: the kernel's ``nk%d``).
    :param peer_netns: move the peer into this namespace (a name under /run/netns, a path or a pid).
    :param up: bring both ends up.
    :raises AttachError: a bad name or namespace (before any syscall), or the kernel refused; a half-made
        pair is removed.
    :raises UnsupportedFeatureError: this kernel has no netkit.
    Requires Linux >= 6.7.
    """
    _netlink.check_ifname(name)
    if peer_name is not None:
        _netlink.check_ifname(peer_name)
    ns_fd = open_netns(peer_netns) if peer_netns is not None else -1
    try:
        try:
            ifindex, peer = _netlink.netkit_add(name)
        except AttachError as exc:
            if getattr(exc, "errno", None) == errno.EOPNOTSUPP:
                raise UnsupportedFeatureError("netkit devices", "6.7", str(exc)) from exc
            raise
        try:
            final_peer = peer_name or _netlink.interface_name(peer)
            if peer_name is not None:
                _netlink.link_set(peer, f"rename netkit peer to {peer_name}", ifname=peer_name)
            if up:
                _netlink.link_set(ifindex, f"bring {name} up", state="up")
            if ns_fd >= 0:
                _netlink.link_set(peer, f"move {final_peer} to {peer_netns}", net_ns_fd=ns_fd)
            elif up:
                _netlink.link_set(peer, f"bring {final_peer} up", state="up")
        except BaseException:
            _netlink.link_del(ifindex, f"remove half-made netkit pair {name}")
            raise
        return NetkitPair(name, ifindex, final_peer, peer)
    finally:
        if ns_fd >= 0:
            os.close(ns_fd)


def delete_netkit(interface: str | int) -> None:
    """Delete a netkit pair through either end (current namespace).

    :raises AttachError: no such interface.
    """
    ifindex, ifname = _netlink.resolve_interface(interface)
    _netlink.link_del(ifindex, f"delete {ifname}")


def attach_netkit(prog: Program, interface: str | int, peer: bool = False) -> BPFLink:
    """Attach a ``sched_cls`` program to a netkit pair through a BPF link on its primary device.

    :param interface: the primary device (name or index, current namespace).
    :param peer: attach to the peer's hook (BPF_NETKIT_PEER) instead of the primary's.
    :returns: the link; return :class:`NetkitAction` values from the program.
    :raises AttachError: wrong program type or no such interface (before any syscall), or the kernel refused.
    Requires Linux >= 6.7.
    """
    check_program(prog, (ProgType.SCHED_CLS,), "attach_netkit")
    ifindex, ifname = _netlink.resolve_interface(interface)
    kind = AttachType.NETKIT_PEER if peer else AttachType.NETKIT_PRIMARY
    try:
        return create_link(prog, ifindex, kind, description=f"netkit {'peer' if peer else 'primary'} {ifname}")
    except BPFSyscallError as exc:
        hint = " (is it the primary device of a netkit pair?)" if exc.errno in (errno.EINVAL, errno.ENXIO) else ""
        raise AttachError(f"attach netkit program to {ifname}: {exc}{hint}") from exc

