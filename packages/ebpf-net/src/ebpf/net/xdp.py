"""XDP: load, attach (BPF link or netlink), query and detach programs on network interfaces.

from ebpf.net import xdp
prog = xdp.load_xdp_program(insns, name="drop_all")
with xdp.attach_xdp("veth0", prog, mode="skb") as link:
    ...                                   # detached when the block ends
"""

from __future__ import annotations

import enum
import errno
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, cast

from ebpf.core.codecs import Codec
from ebpf.core.errors import AttachError, BPFSyscallError, EBPFError
from ebpf.core.records import dataclass
from ebpf.core.types import AttachType, MapType, ProgType
from ebpf.net import _netlink
from ebpf.net._common import callback_link, check_program, create_link, is_program, load

if TYPE_CHECKING:
    from ebpf.core.extension import Instructions
    from ebpf.core.links import Link
    from ebpf.core.maps import Map
    from ebpf.core.programs import Program

__all__ = [
    "XdpAction",
    "XdpState",
    "XDP_FLAGS_UPDATE_IF_NOEXIST",
    "XDP_FLAGS_SKB_MODE",
    "XDP_FLAGS_DRV_MODE",
    "XDP_FLAGS_HW_MODE",
    "XDP_FLAGS_REPLACE",
    "interface_name_to_index",
    "interface_index_to_name",
    "load_xdp_program",
    "attach_xdp",
    "detach_xdp",
    "query_xdp",
    "xdp_program",
    "create_devmap",
    "create_cpumap",
    "create_xskmap",
    "RedirectValueCodec",
]

XDP_FLAGS_UPDATE_IF_NOEXIST = 1
XDP_FLAGS_SKB_MODE = 2
XDP_FLAGS_DRV_MODE = 4
XDP_FLAGS_HW_MODE = 8
XDP_FLAGS_REPLACE = 16

_MODES = {
    "skb": XDP_FLAGS_SKB_MODE,
    "generic": XDP_FLAGS_SKB_MODE,
    "drv": XDP_FLAGS_DRV_MODE,
    "native": XDP_FLAGS_DRV_MODE,
    "hw": XDP_FLAGS_HW_MODE,
    "offload": XDP_FLAGS_HW_MODE,
}
_METHODS = ("auto", "link", "netlink")


class XdpAction(enum.IntEnum):
    """XDP verdicts (``enum xdp_action``), the value an XDP program returns."""

    ABORTED = 0
    DROP = 1
    PASS = 2
    TX = 3
    REDIRECT = 4


@dataclass(frozen=True)
class XdpState:
    """The XDP programs attached to one interface (program ids; 0 = none).

    :ivar mode: ``None`` (nothing attached), ``"skb"``, ``"drv"``, ``"hw"`` or ``"multi"``.
    """

    ifindex: int
    ifname: str
    mode: str | None
    skb_prog_id: int
    drv_prog_id: int
    hw_prog_id: int

    @property
    def prog_ids(self) -> dict[str, int]:
        """Attached program id per mode (``{"skb": 12}``), only the modes in use."""
        ids = {"skb": self.skb_prog_id, "drv": self.drv_prog_id, "hw": self.hw_prog_id}
        return {mode: pid for mode, pid in ids.items() if pid}

    @property
    def attached(self) -> bool:
        """Whether any XDP program is attached."""
        return bool(self.prog_ids)


def interface_name_to_index(name: str) -> int:
    """The index of the network interface ``name`` in the current network namespace.

    :raises AttachError: no such interface, or ``name`` is not a valid interface name.
    """
    if not isinstance(name, str):
        raise AttachError(f"an interface name is a str, not {type(name).__name__}")
    return _netlink.resolve_interface(name)[0]


def interface_index_to_name(index: int) -> str:
    """The name of the network interface with ``index``.

    :raises AttachError: no interface has this index.
    """
    if isinstance(index, bool) or not isinstance(index, int):
        raise AttachError(f"an interface index is an int, not {type(index).__name__}")
    return _netlink.resolve_interface(index)[1]


def load_xdp_program(insns: Instructions, name: str = "xdp_prog", license: str = "GPL", **fields: Any) -> Program:
    """Load an XDP program (expected attach type BPF_XDP, so it can also go through XDP links).

    :param insns: instructions (bytes, asm instruction list, or anything ``ProgramSpec`` accepts).
    :param fields: more :class:`ebpf.core.programs.ProgramSpec` fields.
    :returns: the loaded :class:`~ebpf.core.programs.Program`.
    :raises VerifierError: the verifier rejected it.
    """
    fields.setdefault("expected_attach_type", AttachType.XDP)
    return load(ProgType.XDP, insns, name, license, **fields)


def _mode_flags(mode: str) -> int:
    if not isinstance(mode, str) or mode.lower() not in _MODES:
        raise AttachError(f"unknown XDP mode {mode!r}; expected one of: skb, drv, hw")
    return _MODES[mode.lower()]


def _use_link(method: str) -> bool:
    if method not in _METHODS:
        raise AttachError(f"unknown XDP attach method {method!r}; expected one of: {', '.join(_METHODS)}")
    if method == "auto":
        from ebpf.core.system import kernel_version

        return kernel_version() >= (5, 9)  # XDP BPF links arrived in 5.9
    return method == "link"


def attach_xdp(
    interface: str | int, prog: Program, mode: str = "skb", method: str = "auto", replace: bool = False
) -> Link:
    """Attach an XDP program to a network interface.

    With ``method="link"`` (the default where the kernel has XDP links) the attachment is a
    BPF link: it lives while the returned Link is open and no one else can replace it.
    With ``method="netlink"`` it is set through ``IFLA_XDP``; the returned link detaches it.

    :param interface: interface name or index (current network namespace).
    :param prog: a loaded XDP program.
    :param mode: ``"skb"`` (generic, every device), ``"drv"`` (native driver support) or ``"hw"`` (offload).
    :param method: ``"auto"``, ``"link"`` or ``"netlink"``.
    :param replace: netlink only: replace a program already attached (else EEXIST).
    :returns: a :class:`~ebpf.core.links.Link`; ``detach()``/``close()`` removes the program.
    :raises AttachError: bad interface, program type, mode or method, or the kernel refused
        (e.g. the driver cannot do ``mode``); nothing is left attached.
    Requires Linux >= 4.8 (netlink), >= 5.9 (links).
    """
    flags = _mode_flags(mode)
    use_link = _use_link(method)
    check_program(prog, (ProgType.XDP,), "attach_xdp")
    ifindex, ifname = _netlink.resolve_interface(interface)
    if use_link:
        if replace:
            raise AttachError("attach_xdp: replace=True is for method='netlink'; use link.update(prog) on an XDP link")
        try:
            return create_link(prog, ifindex, AttachType.XDP, flags, description=f"xdp {ifname} ({mode})")
        except BPFSyscallError as exc:
            raise _netlink.attach_failure(
                exc.errno, f"attach XDP program to {ifname} in {mode} mode", _hint(exc.errno)
            ) from exc
    nl_flags = flags | (0 if replace else XDP_FLAGS_UPDATE_IF_NOEXIST)
    prog_id = _prog_id(prog)
    _netlink.xdp_set(ifindex, ifname, prog.fd, nl_flags)
    netns = _netlink.NetnsHandle()

    def detach() -> None:
        try:
            with netns.entered():
                _detach_if_ours(ifindex, ifname, flags, prog_id)
        finally:
            netns.close()

    return callback_link(detach, prog, f"xdp {ifname} ({mode}, netlink)")


def _hint(err: int | None) -> str:
    return {
        errno.EOPNOTSUPP: "the driver cannot run XDP in this mode (try mode='skb')",
        errno.EBUSY: "another XDP program is attached (another mode, or a netlink attachment)",
        errno.EEXIST: "an XDP program is already attached",
        errno.EINVAL: "the kernel rejected the program or mode (XDP links need Linux >= 5.9)",
    }.get(err or 0, "")


def _prog_id(prog: Program) -> int:
    from ebpf.core.lowlevel import prog_info

    return int(prog_info(prog.fd).id)


def _mode_prog_id(state: XdpState, flags: int) -> int:
    if flags & XDP_FLAGS_DRV_MODE:
        return state.drv_prog_id
    if flags & XDP_FLAGS_HW_MODE:
        return state.hw_prog_id
    return state.skb_prog_id


def _detach_if_ours(ifindex: int, ifname: str, flags: int, prog_id: int) -> None:
    """Remove the netlink attachment only while it still runs ``prog_id`` (never someone else's)."""
    try:
        state = query_xdp(ifindex)
    except AttachError:
        return  # the interface is gone, and the program with it
    if _mode_prog_id(state, flags) != prog_id:
        return
    _netlink.xdp_set(ifindex, ifname, -1, flags)


def detach_xdp(interface: str | int, mode: str | None = None) -> None:
    """Remove the netlink-attached XDP program of ``interface`` (``mode=None``: whichever is attached).

    :raises AttachError: no such interface, nothing attached in that mode, or the program
        is held by a BPF link (close that link instead).
    """
    ifindex, ifname = _netlink.resolve_interface(interface)
    state = query_xdp(ifindex)
    if mode is None:
        modes = list(state.prog_ids)
        if not modes:
            raise AttachError(f"detach_xdp: no XDP program is attached to {ifname}")
    else:
        _mode_flags(mode)
        modes = [{"generic": "skb", "native": "drv", "offload": "hw"}.get(mode.lower(), mode.lower())]
        if modes[0] not in state.prog_ids:
            raise AttachError(f"detach_xdp: no XDP program is attached to {ifname} in {modes[0]} mode")
    for one in modes:
        try:
            _netlink.xdp_set(ifindex, ifname, -1, _MODES[one])
        except AttachError as exc:
            if getattr(exc, "errno", 0) == errno.EBUSY:
                raise AttachError(
                    f"detach_xdp: the XDP program on {ifname} is held by a BPF link; close that link to detach it"
                ) from exc
            raise


def query_xdp(interface: str | int) -> XdpState:
    """The XDP programs attached to ``interface``, per mode.

    :raises AttachError: no such interface.
    """
    ifindex, ifname = _netlink.resolve_interface(interface)
    rec = _netlink.xdp_query(ifindex, ifname)
    return XdpState(ifindex, ifname, rec.attached, rec.skb_prog_id, rec.drv_prog_id, rec.hw_prog_id)


@contextmanager
def xdp_program(
    interface: str | int,
    program: Program | Any,
    mode: str = "skb",
    method: str = "auto",
    name: str = "xdp_prog",
    license: str = "GPL",
) -> Iterator[Link]:
    """Attach an XDP program for the duration of a ``with`` block.

    :param program: a loaded XDP program, or instructions to load (closed again on exit).
    :returns: (yields) the link; ``link.program`` is the program.
    """
    if not isinstance(mode, str) or not isinstance(method, str):
        raise AttachError("xdp_program: mode and method are strings")
    _mode_flags(mode)
    _use_link(method)
    _netlink.resolve_interface(interface)
    owned = not is_program(program)
    prog = load_xdp_program(cast("Instructions", program), name=name, license=license) if owned else program
    try:
        link = attach_xdp(interface, prog, mode=mode, method=method)
        try:
            yield link
        finally:
            link.close()
    finally:
        if owned:
            prog.close()


class RedirectValueCodec(Codec):
    """Values of devmaps/cpumaps that carry a program (``struct bpf_devmap_val`` / ``bpf_cpumap_val``):
    written as ``n`` or ``(n, program)``, read back as ``(n, program id)`` (``n``: ifindex or queue size)."""

    size = 8

    def __repr__(self) -> str:
        return "redirect_value"

    def encode(self, obj: Any) -> bytes:
        """``n`` or ``(n, program-or-fd-or-None)`` as 8 bytes.

        :raises EBPFError: not an int or such a pair, or out of range.
        """
        first, prog = obj, None
        if isinstance(obj, tuple):
            first, prog = obj if len(obj) == 2 else (None, None)
        if isinstance(first, bool) or not isinstance(first, int) or not 0 <= first < 1 << 32:
            raise EBPFError(f"a devmap/cpumap value is n or (n, program), not {obj!r}")
        fd = 0 if prog is None else getattr(prog, "fd", prog)
        if isinstance(fd, bool) or not isinstance(fd, int) or not 0 <= fd < 1 << 31:
            raise EBPFError(f"a devmap/cpumap program is a Program or an fd, not {prog!r}")
        return first.to_bytes(4, "little") + fd.to_bytes(4, "little")

    def decode(self, buf: bytes | bytearray | memoryview) -> Any:
        """``(n, program id)`` (:raises EBPFError: on another length)."""
        self._check_len(buf)
        raw = bytes(buf)
        return int.from_bytes(raw[:4], "little"), int.from_bytes(raw[4:], "little")


def _redirect_map(map_type: MapType, max_entries: int, name: str, programs: bool) -> Map:
    if isinstance(max_entries, bool) or not isinstance(max_entries, int) or max_entries <= 0:
        raise EBPFError(f"{map_type.lower_name}: max_entries must be a positive int, got {max_entries!r}")
    from ebpf.core.maps import create_map

    if programs:
        return create_map(map_type=map_type, key_size=4, value_size=8, max_entries=max_entries, name=name,
                          value_codec=RedirectValueCodec())
    return create_map(map_type=map_type, key_size=4, value_size=4, max_entries=max_entries, name=name)


def create_devmap(max_entries: int, name: str = "devmap", hashed: bool = False, programs: bool = False) -> Map:
    """A DEVMAP (or DEVMAP_HASH) for ``bpf_redirect_map`` to other interfaces: key u32, value ifindex (u32).

    The kernel resolves an ifindex in the network namespace of the thread that writes the entry:
    update the map from inside the namespace of the target interface.

    :param programs: values are ``(ifindex, program)``: an XDP program loaded with
        ``expected_attach_type=AttachType.XDP_DEVMAP`` runs on each frame before it leaves (Linux >= 5.8).
    Requires Linux >= 4.14 (devmap_hash: 5.4).
    """
    return _redirect_map(MapType.DEVMAP_HASH if hashed else MapType.DEVMAP, max_entries, name, programs)


def create_cpumap(max_entries: int, name: str = "cpumap", programs: bool = False) -> Map:
    """A CPUMAP for ``bpf_redirect_map`` to other CPUs: key cpu (u32), value queue size (u32).

    :param programs: values are ``(qsize, program)``: an XDP program loaded with
        ``expected_attach_type=AttachType.XDP_CPUMAP`` runs on the target CPU (Linux >= 5.9).
    Requires Linux >= 4.15.
    """
    return _redirect_map(MapType.CPUMAP, max_entries, name, programs)


def create_xskmap(max_entries: int, name: str = "xskmap") -> Map:
    """An XSKMAP for redirecting into AF_XDP sockets: key queue index (u32), value socket fd (u32).

    Requires Linux >= 4.18.
    """
    return _redirect_map(MapType.XSKMAP, max_entries, name, False)
