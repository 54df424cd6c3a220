"""Flow dissector programs: replace the kernel's packet dissector (the flow hash, RPS, fq/fq_codel
classification ...) for one network namespace.

    from ebpf.net import flow_dissector as fd
    prog = fd.load_flow_dissector_program(insns)
    ret, keys = fd.dissect(prog, frame)            # BPF_PROG_TEST_RUN: keys.sport, keys.ip_proto ...
    with fd.attach_flow_dissector(prog, "ns1"):    # a BPF link on the namespace
        ...

The program sees an ``__sk_buff`` whose ``flow_keys`` (offset 144) points at a
``struct bpf_flow_keys`` with ``nhoff`` (network header offset from ``data``) filled in; it
writes the keys and returns :attr:`FlowDissectorVerdict.OK` or ``DROP``.
"""

from __future__ import annotations

import enum
import errno
import ipaddress
import os
import struct
from typing import TYPE_CHECKING, Any

from ebpf.core.errors import AttachError, BPFSyscallError, EBPFError
from ebpf.core.records import dataclass
from ebpf.core.types import AttachType, ProgType
from ebpf.net._common import check_program, create_link, load
from ebpf.net.sk_lookup import open_netns

if TYPE_CHECKING:
    from ebpf.core.extension import Instructions
    from ebpf.core.links import BPFLink
    from ebpf.core.programs import Program

__all__ = [
    "FlowDissectorVerdict",
    "FlowKeys",
    "FLOW_KEYS_OFFSET",
    "FLOW_KEYS_FIELDS",
    "load_flow_dissector_program",
    "attach_flow_dissector",
    "dissect",
]

FLOW_KEYS_OFFSET = 144  # __sk_buff.flow_keys
# struct bpf_flow_keys: field -> (offset, size); n_proto/sport/dport/addresses/flow_label in network order.
FLOW_KEYS_FIELDS = {
    "nhoff": (0, 2), "thoff": (2, 2), "addr_proto": (4, 2), "is_frag": (6, 1), "is_first_frag": (7, 1),
    "is_encap": (8, 1), "ip_proto": (9, 1), "n_proto": (10, 2), "sport": (12, 2), "dport": (14, 2),
    "ipv4_src": (16, 4), "ipv4_dst": (20, 4), "ipv6_src": (16, 16), "ipv6_dst": (32, 16), "flags": (48, 4),
    "flow_label": (52, 4),
}  # fmt: skip
_KEYS = struct.Struct("<HHHBBBB2s2s2s16s16sI4s")  # 56 bytes


class FlowDissectorVerdict(enum.IntEnum):
    """What a flow dissector program returns (``BPF_OK`` / ``BPF_DROP``)."""

    OK = 0
    DROP = 2


@dataclass(frozen=True)
class FlowKeys:
    """``struct bpf_flow_keys`` as the program left it; ports and protocols in host order."""

    nhoff: int
    thoff: int
    addr_proto: int
    is_frag: bool
    is_first_frag: bool
    is_encap: bool
    ip_proto: int
    n_proto: int
    sport: int
    dport: int
    src: ipaddress.IPv4Address | ipaddress.IPv6Address | None
    dst: ipaddress.IPv4Address | ipaddress.IPv6Address | None
    flags: int
    flow_label: int

    @classmethod
    def from_bytes(cls, raw: bytes) -> FlowKeys:
        """Decode 56 bytes (:raises EBPFError: on another length)."""
        if len(raw) < _KEYS.size:
            raise EBPFError(f"struct bpf_flow_keys is {_KEYS.size} bytes, got {len(raw)}")
        (nhoff, thoff, addr_proto, frag, first, encap, proto, n_proto, sport, dport, src, dst, flags,
         label) = _KEYS.unpack_from(raw)  # fmt: skip
        if addr_proto == 0x0800:
            s: Any = ipaddress.IPv4Address(src[:4])
            d: Any = ipaddress.IPv4Address(src[4:8])
        elif addr_proto == 0x86DD:
            s, d = ipaddress.IPv6Address(src), ipaddress.IPv6Address(dst)
        else:
            s = d = None
        be = int.from_bytes
        return cls(nhoff, thoff, addr_proto, bool(frag), bool(first), bool(encap), proto, be(n_proto, "big"),
                   be(sport, "big"), be(dport, "big"), s, d, flags, be(label, "big"))  # fmt: skip


def load_flow_dissector_program(insns: Instructions, name: str = "flow_dissector", license: str = "GPL",
                                **fields: Any) -> Program:  # fmt: skip
    """Load a ``flow_dissector`` program (expected attach type BPF_FLOW_DISSECTOR).

    Requires Linux >= 4.20.
    """
    fields.setdefault("expected_attach_type", AttachType.FLOW_DISSECTOR)
    return load(ProgType.FLOW_DISSECTOR, insns, name, license, **fields)


def attach_flow_dissector(prog: Program, netns: str | int | None = None) -> BPFLink:
    """Attach a flow dissector program to a network namespace through a BPF link.

    :param netns: a name under /run/netns, a path, a pid, or None (this thread's namespace).
    :returns: the link; the kernel's own dissector is back when it is closed.
    :raises AttachError: wrong program type, no such namespace (before any syscall), or the kernel
        refused (one flow dissector per namespace).
    Requires Linux >= 5.8 (links on network namespaces).
    """
    check_program(prog, (ProgType.FLOW_DISSECTOR,), "attach_flow_dissector")
    fd = open_netns("/proc/thread-self/ns/net" if netns is None else netns)
    where = "this network namespace" if netns is None else f"network namespace {netns}"
    try:
        return create_link(prog, fd, AttachType.FLOW_DISSECTOR, description=f"flow_dissector {where}")
    except BPFSyscallError as exc:
        busy = " (a flow dissector is already attached there)" if exc.errno in (errno.E2BIG, errno.EEXIST) else ""
        raise AttachError(f"attach flow dissector to {where}: {exc}{busy}") from exc
    finally:
        os.close(fd)


def dissect(prog: Program, frame: bytes) -> tuple[int, FlowKeys]:
    """Run the program once on an Ethernet ``frame`` (BPF_PROG_TEST_RUN; ``nhoff`` starts at 14).

    :returns: (the program's verdict, the keys it wrote).
    :raises EBPFError: not a flow dissector program, or a frame shorter than an Ethernet header.
    """
    check_program(prog, (ProgType.FLOW_DISSECTOR,), "dissect")
    if not isinstance(frame, (bytes, bytearray, memoryview)) or len(frame) < 14:
        raise EBPFError("dissect() needs an Ethernet frame of at least 14 bytes")
    res = prog.test_run(bytes(frame), data_size_out=_KEYS.size)
    return res.retval, FlowKeys.from_bytes(res.data_out)
