"""The one base of every object that owns kernel resources: :class:`FdOwner`.

``Map``, ``Program``, ``BPFLink`` and ``Collection`` (and the readers of ebpf-events) share
one contract, as Python's files do: ``fd``, ``closed``, ``close()`` (idempotent), ``with``, and
a finalizer that releases what a forgotten object still holds when it is collected, with a
:class:`ResourceWarning` saying so ("unclosed Map ...: call close() or use 'with'").  An
explicit ``close()`` never warns, and nothing warns while the interpreter shuts down.

:func:`track` and :func:`release_now` are the two primitives underneath, for owners whose
resources are not one fd.  This module imports only the syscall layer and the errors.
"""

from __future__ import annotations

import atexit
import threading
import warnings
import weakref
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

from ebpf.core._sys.syscall import close_fd
from ebpf.core.errors import EBPFError

__all__ = ["FdOwner", "ResourceOwner", "Setup", "track", "release_now"]

_T = TypeVar("_T", bound="ResourceOwner")
_S = TypeVar("_S", bound="Setup")

_exiting = False
_hook_lock = threading.Lock()
_hooked = False


def _at_exit() -> None:
    global _exiting
    _exiting = True  # registered after weakref.finalize's own exit hook, so it runs first: no warnings then


def track(obj: object, release: Callable[..., Any], *args: Any) -> weakref.finalize[Any, Any]:
    """A finalizer calling ``release(*args)`` when ``obj`` is collected, with a ``ResourceWarning``.

    :param obj: the owner.
    :param release: what frees the resources (``close_fd``, ...).
    :param args: its arguments; they must not refer to ``obj`` (or it is never collected).
    :returns: the finalizer; :func:`release_now` runs it without the warning.
    """
    global _hooked
    fin = weakref.finalize(obj, _unclosed, type(obj).__name__, release, args)
    with _hook_lock:
        if not _hooked:
            atexit.register(_at_exit)
            _hooked = True
    return fin


def release_now(fin: weakref.finalize[Any, Any]) -> bool:
    """Run a :func:`track` finalizer's release now, without a warning.

    :returns: False when it ran (or was released) already.
    """
    info = fin.detach()
    if info is None:
        return False
    _name, release, args = info[2]
    release(*args)
    return True


def _unclosed(name: str, release: Callable[..., Any], args: tuple[Any, ...]) -> None:
    if not _exiting:
        warnings.warn(f"unclosed {name}: call close() or use 'with'", ResourceWarning, stacklevel=2)
    release(*args)


class ResourceOwner:
    """Owns kernel resources (fds, attachments): ``closed``, ``close()``, ``with``, and a finalizer.

    A subclass calls :meth:`_track` with the function that frees what it owns; collected while
    open, the object frees it with a :class:`ResourceWarning`, like an unclosed file.
    """

    #: What the object is called in messages ("map", "program", "link").
    _kind: ClassVar[str] = "object"
    _finalizer: weakref.finalize[Any, Any] | None = None

    def _track(self, release: Callable[..., Any], *args: Any) -> None:
        """Own what ``release(*args)`` frees (``args`` must not refer to self)."""
        self._finalizer = track(self, release, *args)

    def _release(self) -> bool:
        """Free what this object owns, now and without a warning; False when it was freed already."""
        fin = self._finalizer
        return fin is not None and release_now(fin)

    def _label(self) -> str:
        """How messages name this object (its name, else its type)."""
        return str(getattr(self, "name", "") or getattr(self, "description", "") or type(self).__name__)

    @property
    def closed(self) -> bool:
        """True after :meth:`close`."""
        fin = self._finalizer
        return fin is None or not fin.alive

    def close(self) -> None:
        """Free what this object owns (idempotent)."""
        self._release()

    def __enter__(self: _T) -> _T:
        """Return self (``with`` closes it at the end)."""
        return self

    def __exit__(self, *exc: object) -> None:
        """Close on leaving the ``with`` block."""
        self.close()


class FdOwner(ResourceOwner):
    """Owns one kernel fd: ``fd``, ``closed``, ``close()``, ``with``; see :class:`ResourceOwner`.

    A subclass calls :meth:`_own_fd` once it holds the fd.  Collected while open, the object
    closes its fd with a :class:`ResourceWarning`, like an unclosed file.
    """

    _fd: int = -1

    def _own_fd(self, fd: int, release: Callable[..., Any] = close_fd, *args: Any) -> None:
        """Take ownership of ``fd``; ``release(*args)`` (default ``close_fd(fd)``) frees it."""
        self._fd = fd
        self._track(release, *(args or (fd,)))

    def _release(self) -> bool:
        """Close the fd now, without a warning; False when it was closed already."""
        self._fd = -1
        return super()._release()

    @property
    def fd(self) -> int:
        """The file descriptor.

        :raises EBPFError: when the object is closed.
        """
        if self._fd < 0:
            raise EBPFError(f"{self._kind} {self._label()!r} is closed")
        return self._fd

    @property
    def closed(self) -> bool:
        """True after :meth:`close`."""
        return self._fd < 0


class Setup:
    """The one contract of what every ``setup_*`` function returns (TC, cgroup, LSM, ...).

    - :meth:`close` ends the attachment the setup made (the link is detached, even if it was
      pinned since), removes what the setup created for it (a clsact qdisc left empty), and
      closes the program when the setup loaded it; calling it again does nothing;
    - it is a context manager: ``with setup_tc_ingress(...) as s:`` closes at the end;
    - :attr:`closed` says whether that happened; ``teardown_*(s)`` is ``s.close()``.

    A subclass (a dataclass with a ``torn_down`` field) implements :meth:`_teardown`.
    """

    torn_down: bool = False

    def _teardown(self) -> None:
        """Release what the setup made (called once, by :meth:`close`)."""
        raise NotImplementedError

    @property
    def closed(self) -> bool:
        """True once :meth:`close` ran."""
        return self.torn_down

    def close(self) -> None:
        """Detach and release everything the setup made.  Twice is harmless."""
        if self.torn_down:
            return
        self.torn_down = True
        self._teardown()

    def __enter__(self: _S) -> _S:
        """Return self (``with`` closes it at the end)."""
        return self

    def __exit__(self, *exc: object) -> None:
        """Close on leaving the ``with`` block."""
        self.close()
