"""Socket redirection: sockmap/sockhash with sockets as values, SK_MSG, SK_SKB and sock_ops programs.

    from ebpf.net import sockmap
    socks = sockmap.create_sockhash(64)          # key u32 (or key_size=...), value: a socket
    socks[7] = conn                              # any socket object, or its fd
    socks[7]                                     # -> the socket's cookie (SO_COOKIE)
    with sockmap.attach_sk_msg(prog, socks):     # prog runs on every sendmsg of those sockets
        ...

The kernel takes TCP sockets (established, or listening for a sockmap) and UDP sockets.
An ``sock_ops`` program on a cgroup can fill the map itself (``bpf_sock_hash_update`` on
ACTIVE/PASSIVE_ESTABLISHED), as Cilium's socket-level acceleration does; attach it with
:func:`ebpf.net.cgroup.attach_cgroup_program`.
"""

from __future__ import annotations

import enum
import errno
import os
import socket
import stat
from typing import TYPE_CHECKING, Any

from ebpf.core.codecs import Codec
from ebpf.core.errors import AttachError, BPFSyscallError, EBPFError
from ebpf.core.types import AttachType, MapType, ProgType
from ebpf.net._common import callback_link, check_program, create_link, load

if TYPE_CHECKING:
    from ebpf.core.extension import Instructions
    from ebpf.core.links import Link
    from ebpf.core.maps import Map
    from ebpf.core.programs import Program

__all__ = [
    "SkAction",
    "SockOp",
    "SocketCodec",
    "BPF_F_INGRESS",
    "SO_COOKIE",
    "create_sockmap",
    "create_sockhash",
    "socket_cookie",
    "load_sk_msg_program",
    "load_sk_skb_program",
    "load_sock_ops_program",
    "attach_sk_msg",
    "attach_sk_skb",
]

BPF_F_INGRESS = 1  # redirect helpers: into the target's receive queue instead of out of it
SO_COOKIE = 57
_SK_SKB_KINDS = {
    "stream_parser": AttachType.SK_SKB_STREAM_PARSER,
    "stream_verdict": AttachType.SK_SKB_STREAM_VERDICT,
    "verdict": AttachType.SK_SKB_VERDICT,
}
_METHODS = ("attach", "link")


class SkAction(enum.IntEnum):
    """Verdicts of SK_MSG and SK_SKB programs (``enum sk_action``)."""

    DROP = 0
    PASS = 1


class SockOp(enum.IntEnum):
    """``bpf_sock_ops.op`` values a sock_ops program sees (``BPF_SOCK_OPS_*``), the common ones."""

    VOID = 0
    TIMEOUT_INIT = 1
    RWND_INIT = 2
    TCP_CONNECT_CB = 3
    ACTIVE_ESTABLISHED_CB = 4
    PASSIVE_ESTABLISHED_CB = 5
    NEEDS_ECN = 6
    BASE_RTT = 7
    RTO_CB = 8
    RETRANS_CB = 9
    STATE_CB = 10
    TCP_LISTEN_CB = 11


def _socket_fd(obj: object) -> int:
    """The fd of a socket object (anything with ``fileno()``) or of a socket fd given as an int.

    :raises EBPFError: not a socket (checked with fstat, before any bpf() call).
    """
    if isinstance(obj, bool):
        raise EBPFError("a sockmap value is a socket (or its fd), not bool")
    if isinstance(obj, int):
        fd = obj
    elif callable(getattr(obj, "fileno", None)):
        try:
            fd = obj.fileno()  # type: ignore[attr-defined]
        except (OSError, ValueError) as exc:
            raise EBPFError(f"a sockmap value must be an open socket: {exc}") from None
    else:
        raise EBPFError(f"a sockmap value is a socket (or its fd), not {type(obj).__name__}")
    if not isinstance(fd, int) or not 0 <= fd < 1 << 31:
        raise EBPFError(f"a sockmap value must be an open socket, got fd {fd!r}")
    try:
        mode = os.fstat(fd).st_mode
    except OSError as exc:
        raise EBPFError(f"a sockmap value must be an open socket: fd {fd}: {exc.strerror}") from None
    if not stat.S_ISSOCK(mode):
        raise EBPFError(f"a sockmap value must be a socket; fd {fd} is not one")
    return fd


class SocketCodec(Codec):
    """Values of sockmaps and sockhashes: written as a socket (or its fd), read back as its cookie (u64)."""

    size = 8

    def __repr__(self) -> str:
        return "socket"

    def encode(self, obj: Any) -> bytes:
        """The socket's fd as 8 bytes (:raises EBPFError: ``obj`` is not an open socket)."""
        return _socket_fd(obj).to_bytes(8, "little")

    def decode(self, buf: bytes | bytearray | memoryview) -> Any:
        """The socket cookie (:raises EBPFError: on another length)."""
        self._check_len(buf)
        return int.from_bytes(bytes(buf), "little")


def _create(map_type: MapType, max_entries: int, key_size: int, name: str, **fields: Any) -> Map:
    for what, value in (("max_entries", max_entries), ("key_size", key_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise EBPFError(f"{map_type.lower_name}: {what} must be a positive int, got {value!r}")
    if map_type == MapType.SOCKMAP and key_size != 4:
        raise EBPFError(f"sockmap keys are u32 indexes (key_size 4), not {key_size} bytes; use a sockhash")
    from ebpf.core.maps import create_map

    fields.setdefault("value_codec", SocketCodec())
    return create_map(
        map_type=map_type, key_size=key_size, value_size=8, max_entries=max_entries, name=name, **fields
    )


def create_sockmap(max_entries: int, name: str = "sockmap", **fields: Any) -> Map:
    """A SOCKMAP: u32 index -> socket.  ``m[i] = sock`` adds it; ``m[i]`` reads its cookie.

    :param fields: more :class:`ebpf.core.maps.MapSpec` fields (``key_codec``, ``flags`` ...).
    :raises EBPFError: bad sizes (before any syscall); assigning a non-socket raises it too.
    Requires Linux >= 4.14 (cookies on lookup: 5.10).
    """
    return _create(MapType.SOCKMAP, max_entries, 4, name, **fields)


def create_sockhash(max_entries: int, key_size: int = 4, name: str = "sockhash", **fields: Any) -> Map:
    """A SOCKHASH: any fixed-size key -> socket (e.g. a 5-tuple), filled from Python or by sock_ops.

    :param key_size: key bytes (4: u32 keys by default; give ``key_codec`` for structured keys).
    Requires Linux >= 4.18.
    """
    return _create(MapType.SOCKHASH, max_entries, key_size, name, **fields)


def socket_cookie(sock: object) -> int:
    """The kernel's cookie of a socket (``SO_COOKIE``), what sockmap lookups return.

    :raises EBPFError: not a socket.
    """
    fd = _socket_fd(sock)
    probe = socket.socket(fileno=os.dup(fd))
    try:
        return int.from_bytes(probe.getsockopt(socket.SOL_SOCKET, SO_COOKIE, 8), "little")
    finally:
        probe.close()


def load_sk_msg_program(insns: Instructions, name: str = "sk_msg", license: str = "GPL", **fields: Any) -> Program:
    """Load an SK_MSG program (runs on sendmsg of sockets in the maps it is attached to).

    Return :attr:`SkAction.PASS` / ``DROP``, or the result of ``msg_redirect_map``/``msg_redirect_hash``.
    Requires Linux >= 4.17.
    """
    fields.setdefault("expected_attach_type", AttachType.SK_MSG_VERDICT)
    return load(ProgType.SK_MSG, insns, name, license, **fields)


def _sk_skb_kind(kind: object) -> AttachType:
    if not isinstance(kind, str) or kind not in _SK_SKB_KINDS:
        raise AttachError(f"unknown SK_SKB program kind {kind!r}; expected one of: {', '.join(_SK_SKB_KINDS)}")
    return _SK_SKB_KINDS[kind]


def load_sk_skb_program(
    insns: Instructions, kind: str = "stream_verdict", name: str = "sk_skb", license: str = "GPL", **fields: Any
) -> Program:
    """Load an SK_SKB program: ``kind`` "stream_parser" (returns a message length), "stream_verdict"
    or "verdict" (return :class:`SkAction` or ``sk_redirect_map``/``sk_redirect_hash``).

    Requires Linux >= 4.14 ("verdict" without a parser: 5.16).
    """
    fields.setdefault("expected_attach_type", _sk_skb_kind(kind))
    return load(ProgType.SK_SKB, insns, name, license, **fields)


def load_sock_ops_program(insns: Instructions, name: str = "sock_ops", license: str = "GPL", **fields: Any) -> Program:
    """Load a ``sock_ops`` program (attach it to a cgroup with ``attach_cgroup_program``).

    Requires Linux >= 4.13.
    """
    fields.setdefault("expected_attach_type", AttachType.CGROUP_SOCK_OPS)
    return load(ProgType.SOCK_OPS, insns, name, license, **fields)


def _check_sockmap(m: object, what: str) -> int:
    from ebpf.core.maps import Map

    if not isinstance(m, Map):
        raise AttachError(f"{what} needs a sockmap or sockhash Map, got {type(m).__name__}")
    if m.closed:
        raise AttachError(f"{what}: the map is closed")
    if MapType.parse(m.map_type) not in (MapType.SOCKMAP, MapType.SOCKHASH):
        raise AttachError(f"{what} needs a sockmap or sockhash, not a {MapType.parse(m.map_type).lower_name} map")
    return m.fd


def _attach_to_map(prog: Program, m: Map, kind: AttachType, method: str, what: str) -> Link:
    if method not in _METHODS:
        raise AttachError(f"{what}: method must be 'attach' or 'link', not {method!r}")
    map_fd = _check_sockmap(m, what)
    desc = f"{kind.lower_name} on map {m.name or m.fd}"
    from ebpf.core import lowlevel as commands

    try:
        if method == "link":
            return create_link(prog, map_fd, kind, description=desc)
        commands.prog_attach(map_fd, prog.fd, kind)
    except BPFSyscallError as exc:
        hint = {errno.EBUSY: " (another program of this kind is attached to the map)",
                errno.EINVAL: " (sockmap links need Linux >= 6.10)" if method == "link" else ""}
        raise AttachError(f"{what}: {desc}: {exc}{hint.get(exc.errno or 0, '')}") from exc
    prog_fd = prog.fd

    def detach() -> None:
        try:
            commands.prog_detach(map_fd, prog_fd, kind)
        except BPFSyscallError as exc:
            if exc.errno not in (errno.ENOENT, errno.EBADF):  # already gone with the map
                raise

    return callback_link(detach, prog, desc)


def attach_sk_msg(prog: Program, sockmap: Map, method: str = "attach") -> Link:
    """Attach an SK_MSG program to a sockmap/sockhash: it runs on every sendmsg of the sockets in it.

    :param method: ``"attach"`` (BPF_PROG_ATTACH; the link detaches) or ``"link"`` (a BPF link).
    :returns: a :class:`~ebpf.core.links.Link`; closing it detaches the program.
    :raises AttachError: not an SK_MSG program or not a sockmap (before any syscall), or the kernel refused.
    Requires Linux >= 4.17 (links: 6.10).
    """
    check_program(prog, (ProgType.SK_MSG,), "attach_sk_msg")
    return _attach_to_map(prog, sockmap, AttachType.SK_MSG_VERDICT, method, "attach_sk_msg")


def attach_sk_skb(prog: Program, sockmap: Map, kind: str | None = None, method: str = "attach") -> Link:
    """Attach an SK_SKB program to a sockmap/sockhash: it sees what the sockets in it receive.

    :param kind: "stream_parser", "stream_verdict" or "verdict" (default: the program's expected attach type).
    :raises AttachError: wrong program, kind or map (before any syscall), or the kernel refused.
    Requires Linux >= 4.14.
    """
    check_program(prog, (ProgType.SK_SKB,), "attach_sk_skb")
    if kind is None:
        expected = getattr(prog, "expected_attach_type", None)
        attach = AttachType.SK_SKB_STREAM_VERDICT if expected is None else AttachType.parse(expected)
        if attach not in _SK_SKB_KINDS.values():
            attach = AttachType.SK_SKB_STREAM_VERDICT
    else:
        attach = _sk_skb_kind(kind)
    return _attach_to_map(prog, sockmap, attach, method, "attach_sk_skb")
