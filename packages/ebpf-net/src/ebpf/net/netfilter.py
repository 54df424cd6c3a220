"""Netfilter BPF programs through netfilter links (Linux >= 6.4).

from ebpf.net import netfilter
prog = netfilter.load_netfilter_program(insns)        # returns NF_DROP (0) or NF_ACCEPT (1)
with netfilter.attach_netfilter(prog, "ipv4", "local_in", priority=-128):
    ...
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Any

from ebpf.core.errors import AttachError, BPFSyscallError
from ebpf.core.types import AttachType, ProgType
from ebpf.net._common import check_program, create_link, load

if TYPE_CHECKING:
    from ebpf.core.extension import Instructions
    from ebpf.core.links import BPFLink
    from ebpf.core.programs import Program

__all__ = [
    "NfVerdict",
    "NF_PROTOCOLS",
    "NF_HOOKS",
    "BPF_F_NETFILTER_IP_DEFRAG",
    "load_netfilter_program",
    "attach_netfilter",
]

NF_PROTOCOLS = {"ipv4": 2, "inet4": 2, "ipv6": 10, "inet6": 10}
NF_HOOKS = {
    "pre_routing": 0,
    "prerouting": 0,
    "local_in": 1,
    "input": 1,
    "forward": 2,
    "local_out": 3,
    "output": 3,
    "post_routing": 4,
    "postrouting": 4,
}
BPF_F_NETFILTER_IP_DEFRAG = 1
# NF_IP_PRI_FIRST / NF_IP_PRI_LAST are reserved for the core; the kernel refuses them.
_PRIORITY_MIN = -(2**31) + 1
_PRIORITY_MAX = 2**31 - 2


class NfVerdict(enum.IntEnum):
    """What a netfilter program returns."""

    DROP = 0
    ACCEPT = 1


def load_netfilter_program(insns: Instructions, name: str = "netfilter", license: str = "GPL", **fields: Any) -> Program:
    """Load a ``netfilter`` program (expected attach type BPF_NETFILTER).

    Requires Linux >= 6.4.
    """
    fields.setdefault("expected_attach_type", AttachType.NETFILTER)
    return load(ProgType.NETFILTER, insns, name, license, **fields)


def _lookup(table: dict[str, int], value: str | int, what: str) -> int:
    if isinstance(value, bool):
        raise AttachError(f"bad netfilter {what} {value!r}")
    if isinstance(value, int):
        if value not in table.values():
            raise AttachError(f"bad netfilter {what} {value}; expected one of {sorted(set(table.values()))}")
        return value
    if isinstance(value, str) and value.lower() in table:
        return table[value.lower()]
    raise AttachError(f"unknown netfilter {what} {value!r}; expected one of: {', '.join(table)}")


def attach_netfilter(
    prog: Program, pf: str | int = "ipv4", hook: str | int = "local_in", priority: int = 0, defrag: bool = False
) -> BPFLink:
    """Attach a netfilter program at (``pf``, ``hook``) with ``priority`` through a netfilter link.

    :param pf: "ipv4" or "ipv6" (NFPROTO_*).
    :param hook: "pre_routing", "local_in", "forward", "local_out" or "post_routing".
    :param priority: netfilter priority (lower runs first; INT_MIN and INT_MAX are reserved).
    :param defrag: ask for IP defragmentation before the program (Linux >= 6.6).
    :raises AttachError: bad input, or the kernel refused (e.g. no CONFIG_NETFILTER_BPF_LINK).
    Requires Linux >= 6.4.
    """
    family = _lookup(NF_PROTOCOLS, pf, "protocol family")
    hooknum = _lookup(NF_HOOKS, hook, "hook")
    if isinstance(priority, bool) or not isinstance(priority, int) or not _PRIORITY_MIN <= priority <= _PRIORITY_MAX:
        raise AttachError(f"netfilter priority must be an int in {_PRIORITY_MIN}..{_PRIORITY_MAX}, got {priority!r}")
    check_program(prog, (ProgType.NETFILTER,), "attach_netfilter")
    from ebpf.core.lowlevel import LinkCreateNetfilter

    flags = BPF_F_NETFILTER_IP_DEFRAG if defrag else 0
    extra = LinkCreateNetfilter(pf=family, hooknum=hooknum, priority=priority, flags=flags)
    try:
        return create_link(
            prog, 0, AttachType.NETFILTER, 0, extra=extra, description=f"netfilter pf {family} hook {hooknum}"
        )
    except BPFSyscallError as exc:
        raise AttachError(f"attach netfilter program (pf {pf}, hook {hook}, priority {priority}): {exc}") from exc
