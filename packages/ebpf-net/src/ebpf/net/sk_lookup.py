"""``sk_lookup`` programs: pick the socket for incoming connections of a network namespace.

from ebpf.net import sk_lookup
prog = sk_lookup.load_sk_lookup_program(insns)          # uses bpf_sk_assign + a sockmap
with sk_lookup.attach_sk_lookup(prog) as link:          # this process's network namespace
    ...
"""

from __future__ import annotations

import enum
import fcntl
import os
from typing import TYPE_CHECKING, Any

from ebpf.core.errors import AttachError, BPFSyscallError
from ebpf.core.types import AttachType, ProgType
from ebpf.net._common import check_program, create_link, load

if TYPE_CHECKING:
    from ebpf.core.extension import Instructions
    from ebpf.core.links import BPFLink
    from ebpf.core.programs import Program

__all__ = ["SkAction", "load_sk_lookup_program", "open_netns", "attach_sk_lookup", "NETNS_RUN_DIR"]

NETNS_RUN_DIR = "/run/netns"
NS_GET_NSTYPE = 0xB703  # _IO(0xb7, 0x3)
CLONE_NEWNET = 0x40000000


class SkAction(enum.IntEnum):
    """Verdicts of an ``sk_lookup`` program (``enum sk_action``)."""

    DROP = 0
    PASS = 1


def load_sk_lookup_program(insns: Instructions, name: str = "sk_lookup", license: str = "GPL", **fields: Any) -> Program:
    """Load an ``sk_lookup`` program (expected attach type BPF_SK_LOOKUP).

    Requires Linux >= 5.9.
    """
    fields.setdefault("expected_attach_type", AttachType.SK_LOOKUP)
    return load(ProgType.SK_LOOKUP, insns, name, license, **fields)


def open_netns(netns: str | int | None = None) -> int:
    """Open a network namespace; the caller closes the returned fd.

    :param netns: None (this process's namespace), a name under /run/netns (``ip netns add``),
        a path such as ``/proc/<pid>/ns/net``, or a pid.
    :raises AttachError: no such namespace.
    """
    if netns is None:
        path = "/proc/self/ns/net"
    elif isinstance(netns, bool):
        raise AttachError("a network namespace is a name, a path or a pid, not bool")
    elif isinstance(netns, int):
        if netns <= 0:
            raise AttachError(f"bad pid {netns} for a network namespace")
        path = f"/proc/{netns}/ns/net"
    elif isinstance(netns, str) and netns:
        if "/" in netns:
            path = netns
        elif netns in (".", ".."):
            raise AttachError(f"{netns!r} is not a network namespace name")
        else:
            path = os.path.join(NETNS_RUN_DIR, netns)
    else:
        raise AttachError(f"a network namespace is a name, a path or a pid, not {netns!r}")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise AttachError(f"no network namespace at {path!r}: {exc.strerror}") from exc
    try:
        kind = fcntl.ioctl(fd, NS_GET_NSTYPE)
    except OSError:
        kind = -1  # not a namespace file at all
    if kind != CLONE_NEWNET:
        os.close(fd)
        raise AttachError(f"{path!r} is not a network namespace")
    return fd


def attach_sk_lookup(prog: Program, netns: str | int | None = None) -> BPFLink:
    """Attach an ``sk_lookup`` program to a network namespace through a BPF link.

    :param netns: see :func:`open_netns` (default: this process's namespace).
    :returns: the link; the program runs until it is closed.
    :raises AttachError: wrong program type, no such namespace, or the kernel refused.
    Requires Linux >= 5.9.
    """
    check_program(prog, (ProgType.SK_LOOKUP,), "attach_sk_lookup")
    fd = open_netns(netns)
    try:
        return create_link(prog, fd, AttachType.SK_LOOKUP, description=f"sk_lookup netns {netns or 'self'}")
    except BPFSyscallError as exc:
        raise AttachError(f"attach sk_lookup program to network namespace {netns or 'self'}: {exc}") from exc
    finally:
        os.close(fd)
