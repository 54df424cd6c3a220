"""Socket filters: ``SO_ATTACH_BPF`` on a socket, and bcc's ``attach_raw_socket`` use case.

from ebpf.net import socket_filter
prog = socket_filter.load_socket_filter(insns)
sock = socket_filter.attach_raw_socket(prog, "veth0")   # AF_PACKET socket seeing what prog keeps
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING, Any

from ebpf.core.errors import AttachError, BPFSyscallError
from ebpf.core.types import ProgType
from ebpf.net import _netlink
from ebpf.net._common import callback_link, check_program, load

if TYPE_CHECKING:
    from ebpf.core.extension import Instructions
    from ebpf.core.links import Link
    from ebpf.core.programs import Program

__all__ = [
    "SO_ATTACH_BPF",
    "SO_DETACH_BPF",
    "load_socket_filter",
    "attach_socket_filter",
    "detach_socket_filter",
    "open_raw_socket",
    "attach_raw_socket",
]

SO_ATTACH_BPF = 50
SO_DETACH_BPF = 27  # same as SO_DETACH_FILTER
ETH_P_ALL = 0x0003


def load_socket_filter(insns: Instructions, name: str = "socket_filter", license: str = "GPL", **fields: Any) -> Program:
    """Load a ``socket_filter`` program: it returns how many bytes of each packet to keep (0 drops it)."""
    return load(ProgType.SOCKET_FILTER, insns, name, license, **fields)


def _sock_fd(sock: Any, what: str) -> int:
    if isinstance(sock, bool):
        raise AttachError(f"{what}: a socket or socket fd is needed, not bool")
    if isinstance(sock, int):
        fd = sock
    elif hasattr(sock, "fileno"):
        try:
            fd = int(sock.fileno())
        except (OSError, ValueError) as exc:
            raise AttachError(f"{what}: the socket is closed") from exc
    else:
        raise AttachError(f"{what}: a socket or socket fd is needed, not {type(sock).__name__}")
    if fd < 0:
        raise AttachError(f"{what}: the socket is closed")
    return fd


def _setsockopt(fd: int, option: int, value: bytes | int, what: str) -> None:
    try:
        dup = socket.socket(fileno=fd)
    except OSError as exc:
        raise AttachError(f"{what}: fd {fd} is not a socket ({exc.strerror})") from exc
    try:
        dup.setsockopt(socket.SOL_SOCKET, option, value)
    except OSError as exc:
        raise AttachError(f"{what}: {exc.strerror}") from BPFSyscallError(exc.errno or 0, "setsockopt")
    finally:
        dup.detach()  # the caller still owns the fd


def attach_socket_filter(sock: socket.socket | int, prog: Program) -> Link:
    """Attach ``prog`` to a socket (``SO_ATTACH_BPF``); the link detaches it (``SO_DETACH_BPF``).

    :param sock: a :class:`socket.socket` or a socket fd (the caller keeps owning it).
    :raises AttachError: not a socket, a closed socket, or the wrong program type.
    Requires Linux >= 3.19.
    """
    fd = _sock_fd(sock, "attach_socket_filter")
    check_program(prog, (ProgType.SOCKET_FILTER,), "attach_socket_filter")
    _setsockopt(fd, SO_ATTACH_BPF, prog.fd, "attach_socket_filter")

    def detach() -> None:
        try:
            detach_socket_filter(sock)
        except AttachError:
            pass  # socket closed, or filter already gone

    return callback_link(detach, prog, f"socket filter on fd {fd}")


def detach_socket_filter(sock: socket.socket | int) -> None:
    """Remove the filter of a socket.

    :raises AttachError: not a socket, or no filter attached (ENOENT).
    """
    fd = _sock_fd(sock, "detach_socket_filter")
    _setsockopt(fd, SO_DETACH_BPF, 0, "detach_socket_filter")


def open_raw_socket(interface: str | int, protocol: int = ETH_P_ALL) -> socket.socket:
    """An ``AF_PACKET``/``SOCK_RAW`` socket bound to ``interface`` (non-blocking), seeing every packet.

    :raises AttachError: no such interface.
    """
    _, ifname = _netlink.resolve_interface(interface)
    sock = socket.socket(
        socket.AF_PACKET, socket.SOCK_RAW | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC, socket.htons(protocol)
    )
    try:
        sock.bind((ifname, protocol))
    except OSError as exc:
        sock.close()
        raise AttachError(f"cannot bind a raw socket to {ifname}: {exc.strerror}") from exc
    return sock


def attach_raw_socket(prog: Program, interface: str | int, protocol: int = ETH_P_ALL) -> socket.socket:
    """bcc's ``attach_raw_socket``: open a raw socket on ``interface`` and attach ``prog`` to it.

    :returns: the socket (close it to drop the filter).
    :raises AttachError: bad program or interface.
    """
    check_program(prog, (ProgType.SOCKET_FILTER,), "attach_raw_socket")
    _, ifname = _netlink.resolve_interface(interface)
    # Protocol 0 receives nothing until bind(), so no packet slips in before the filter.
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC, 0)
    try:
        _setsockopt(sock.fileno(), SO_ATTACH_BPF, prog.fd, "attach_raw_socket")
        try:
            sock.bind((ifname, protocol))
        except OSError as exc:
            raise AttachError(f"cannot bind a raw socket to {ifname}: {exc.strerror}") from exc
    except BaseException:
        sock.close()
        raise
    return sock
