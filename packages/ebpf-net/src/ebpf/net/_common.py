"""Helpers shared by the attach modules: program checks, loading, link creation."""

from __future__ import annotations

import ctypes
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from ebpf.core.errors import AttachError, EBPFError
from ebpf.core.types import AttachType, ProgType

if TYPE_CHECKING:
    from ebpf.core.extension import Instructions
    from ebpf.core.links import BPFLink, Link
    from ebpf.core.programs import Program

__all__ = ["check_program", "load", "program_name", "create_link", "callback_link", "is_program"]


def _fd_of(obj: object) -> int | None:
    """``obj.fd``, -1 for a closed object (whose ``fd`` raises), None when it has none."""
    try:
        fd = obj.fd  # type: ignore[attr-defined]
    except AttributeError:
        return None
    except EBPFError:
        return -1
    return fd if isinstance(fd, int) else None


def is_program(obj: object) -> bool:
    """Whether ``obj`` looks like a :class:`ebpf.core.programs.Program` (has ``fd`` and ``prog_type``)."""
    return hasattr(obj, "prog_type") and _fd_of(obj) is not None


def program_name(prog: object) -> str:
    """A printable name for ``prog``."""
    name = getattr(prog, "name", "") or ""
    return repr(name) if name else "(unnamed)"


def check_program(prog: object, allowed: Iterable[ProgType], what: str) -> Program:
    """Return ``prog`` when it is a loaded program of one of the ``allowed`` types.

    :raises AttachError: not a program, closed, or of another type (before any syscall).
    """
    if not is_program(prog):
        raise AttachError(f"{what} needs a loaded Program, got {type(prog).__name__}")
    fd = _fd_of(prog)
    if fd is None or fd < 0:
        raise AttachError(f"{what}: program {program_name(prog)} is closed")
    allowed = tuple(allowed)
    kind = ProgType.parse(getattr(prog, "prog_type", 0))
    if kind not in allowed:
        wanted = " or ".join(t.lower_name for t in allowed)
        raise AttachError(f"{what} needs a {wanted} program; program {program_name(prog)} is {kind.lower_name}")
    return prog  # type: ignore[return-value]


def load(
    prog_type: ProgType,
    insns: Instructions | None,
    name: str,
    license: str,
    expected_attach_type: AttachType | None = None,
    **fields: Any,
) -> Program:
    """Load a program through :func:`ebpf.core.programs.load_program`."""
    from ebpf.core.programs import load_program

    if insns is None:
        raise EBPFError("no instructions given")
    return load_program(
        prog_type=prog_type,
        insns=insns,
        name=name,
        license=license,
        expected_attach_type=expected_attach_type,
        **fields,
    )


def create_link(
    prog: Program,
    target_fd: int,
    attach_type: AttachType,
    flags: int = 0,
    extra: ctypes.Structure | tuple[int, ...] = (),
    description: str = "",
) -> BPFLink:
    """BPF_LINK_CREATE through :func:`ebpf.core.links.create_link`."""
    from ebpf.core.links import create_link as _create

    return _create(prog, target_fd, attach_type, flags, extra=extra, description=description)


def callback_link(detach: Callable[[], None], prog: Program | None, description: str) -> Link:
    """A :class:`ebpf.core.links.CallbackLink` for a legacy attachment."""
    from ebpf.core.links import CallbackLink

    return CallbackLink(detach, program=prog, description=description)
