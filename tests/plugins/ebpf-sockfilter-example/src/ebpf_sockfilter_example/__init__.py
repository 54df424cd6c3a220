"""Example third-party ebpf plugin: SOCKET_FILTER programs on Python sockets.

Registered through the entry-point group ``"ebpf"``; uses only the public plugin contract
(:mod:`ebpf.core.plugins`).  A socket filter's return value is how many bytes of each
packet to keep: 0 drops the packet.
"""

from __future__ import annotations

import os
import socket
import stat
from typing import Any

from ebpf.core.errors import AttachError
from ebpf.core.links import CallbackLink
from ebpf.core.plugins import AttachBackend, FeatureProbe, hookimpl

__all__ = ["attach_socket_filter", "SO_ATTACH_BPF", "SO_DETACH_BPF"]

SO_ATTACH_BPF = 50
SO_DETACH_BPF = 27  # == SO_DETACH_FILTER
NAME = "sockfilter-example"


def _fd_of(target: object) -> int | None:
    if isinstance(target, int) and not isinstance(target, bool):
        return target
    fileno = getattr(target, "fileno", None)
    if callable(fileno):
        fd = fileno()
        return fd if isinstance(fd, int) else None
    return None


def _is_socket(target: object) -> bool:
    """True for a socket object or an fd that is a socket."""
    if isinstance(target, socket.socket):
        return True
    fd = _fd_of(target)
    if fd is None or fd < 0:
        return False
    try:
        return stat.S_ISSOCK(os.fstat(fd).st_mode)
    except OSError:
        return False


def attach_socket_filter(program: Any, target: object, **options: Any) -> CallbackLink:
    """Attach a SOCKET_FILTER ``program`` to ``target`` (a socket object or a socket fd).

    :returns: a link whose ``detach()`` / ``close()`` removes the filter from the socket.
    :raises AttachError: when ``target`` is no socket or the kernel refuses.
    """
    if options:
        raise AttachError(f"{NAME}: unknown options {sorted(options)}")
    if not _is_socket(target):
        raise AttachError(f"{NAME}: {target!r} is not a socket or socket fd")
    if isinstance(target, socket.socket):
        sock, owned = target, False
    else:  # our own handle on the fd, so the link works however the caller holds the socket
        sock, owned = socket.socket(fileno=os.dup(_fd_of(target))), True  # type: ignore[arg-type]
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_BPF, program.fd)
    except OSError as exc:
        if owned:
            sock.close()
        raise AttachError(f"{NAME}: SO_ATTACH_BPF failed: {exc.strerror}") from exc

    def detach() -> None:
        try:
            if sock.fileno() >= 0:
                sock.setsockopt(socket.SOL_SOCKET, SO_DETACH_BPF, 0)
        except OSError:
            pass  # the socket is gone, or the filter was replaced: nothing left to detach
        finally:
            if owned:
                sock.close()

    return CallbackLink(detach, program, f"socket filter on fd {sock.fileno()}")


def _probe_so_attach_bpf() -> None:
    """SO_ATTACH_BPF exists since Linux 3.19; this plugin only reports it."""


@hookimpl(tryfirst=True)
def ebpf_attach_backends() -> list[AttachBackend]:
    """The socket-filter backend.

    ``tryfirst`` puts it ahead of ebpf-net's own socket-filter backend when both are installed.
    """
    return [
        AttachBackend(
            name=NAME,
            serves=(("socket_filter", None),),
            attach=attach_socket_filter,
            distribution="ebpf-sockfilter-example",
            accepts=_is_socket,
        )
    ]


@hookimpl
def ebpf_features() -> list[FeatureProbe]:
    """A feature this plugin reports in ``ebpf check``."""
    return [FeatureProbe("sockfilter-example.so_attach_bpf", _probe_so_attach_bpf, "attach socket filters")]
