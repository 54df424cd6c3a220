"""Feature probes for network attach kinds (cached; shown by ``ebpf check`` through the plugin).

Each probe returns None when the feature works here, raises
:class:`~ebpf.core.errors.UnsupportedFeatureError` when it does not, and any other
error when it cannot tell (:class:`~ebpf.core.errors.ProbeInconclusiveError` without
the privileges to know).  They cache through :func:`ebpf.core.features.feature_test`,
negative answers too.
"""

from __future__ import annotations

from ebpf.core.errors import BPFSyscallError
from ebpf.core.features import feature_test, have_link_type, probe_error
from ebpf.core.types import AttachType, ProgType

__all__ = ["probe_xdp_link", "probe_tcx", "probe_netfilter_link", "probe_sk_lookup"]

_RET1 = b"\xb7\x00\x00\x00\x01\x00\x00\x00\x95\x00\x00\x00\x00\x00\x00\x00"


def _load_probe(prog_type: ProgType, attach_type: AttachType | None, feature: str, min_kernel: str) -> None:
    from ebpf.core.programs import load_program

    try:
        prog = load_program(prog_type=prog_type, insns=_RET1, expected_attach_type=attach_type, name="net_probe")
    except BPFSyscallError as exc:
        raise probe_error(exc, feature, min_kernel) from None
    prog.close()


@feature_test
def probe_xdp_link() -> None:
    """XDP attachments through BPF links.  Requires Linux >= 5.9."""
    have_link_type("xdp")  # the kernel's answer, not its version's
    _load_probe(ProgType.XDP, AttachType.XDP, "XDP programs", "4.8")


@feature_test
def probe_tcx() -> None:
    """TCX links (BPF_PROG_QUERY on lo's tcx ingress hook answers).  Requires Linux >= 6.6."""
    from ebpf.core.lowlevel import prog_query

    try:
        prog_query(1, AttachType.TCX_INGRESS)
    except BPFSyscallError as exc:
        raise probe_error(exc, "TCX links", "6.6") from None


@feature_test
def probe_netfilter_link() -> None:
    """Netfilter programs and links (CONFIG_NETFILTER_BPF_LINK).  Requires Linux >= 6.4."""
    _load_probe(ProgType.NETFILTER, AttachType.NETFILTER, "netfilter BPF links", "6.4")


@feature_test
def probe_sk_lookup() -> None:
    """``sk_lookup`` programs.  Requires Linux >= 5.9."""
    _load_probe(ProgType.SK_LOOKUP, AttachType.SK_LOOKUP, "sk_lookup programs", "5.9")
