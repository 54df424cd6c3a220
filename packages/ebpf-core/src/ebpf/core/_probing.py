"""The machinery every feature probe shares: the cache, the privilege check, and what a refusal means.

A probe answers in three ways only: None (supported), :class:`UnsupportedFeatureError` (missing,
and why), or another error when it cannot tell (:class:`ProbeInconclusiveError` when the caller
lacks the privileges to know).  Outcomes, negative ones too, are cached for the life of the
process; a cached negative outcome is raised as a *fresh* copy each time, so no caller's frames
hang on to the cached exception's traceback (and with them the objects the caller held).

This module sits at the bottom of ebpf-core (it imports only :mod:`ebpf.core.errors`), so any
layer and any plugin package may use it; :mod:`ebpf.core.features` re-exports its public names.
"""

from __future__ import annotations

import errno
import functools
import os
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from ebpf.core.errors import (
    ENOTSUPP,
    BPFSyscallError,
    EBPFError,
    ProbeInconclusiveError,
    UnsupportedFeatureError,
    errno_name,
)

__all__ = ["feature_test", "clear_cache", "probe_error", "fully_privileged", "outcome", "COULD_NOT_TELL"]

_F = TypeVar("_F", bound=Callable[..., None])
_CACHE: dict[tuple[str, tuple[Any, ...]], UnsupportedFeatureError | None] = {}
_LOCK = threading.RLock()

#: errnos with which a fully privileged caller's probe is refused by the kernel (a missing feature).
_REFUSALS = frozenset({errno.EPERM, errno.EACCES, errno.EINVAL, errno.E2BIG, errno.EOPNOTSUPP, ENOTSUPP})


def _fresh(exc: UnsupportedFeatureError) -> UnsupportedFeatureError:
    """A copy of ``exc`` with no traceback, cause or context (``__init__`` is not run again)."""
    new = type(exc).__new__(type(exc), *exc.args)
    new.__dict__.update(exc.__dict__)
    new.args = exc.args
    return new


def feature_test(fn: _F) -> _F:
    """Decorate a feature probe so that its outcome is computed once per arguments and cached.

    Both outcomes are cached: None, and :class:`UnsupportedFeatureError` (raised afresh on
    every call, never the same object twice).  Errors that could not tell are not cached, so a
    later call (say, with more privileges) probes again.  :func:`clear_cache` forgets everything.

    :param fn: the probe; it returns None or raises.  Its positional arguments must be hashable.
    :returns: the caching probe, with ``fn``'s name and docstring.
    """
    key_name = f"{fn.__module__}.{fn.__qualname__}"

    @functools.wraps(fn)
    def wrapper(*args: Any) -> None:
        key = (key_name, args)
        with _LOCK:
            if key in _CACHE:
                err = _CACHE[key]
                if err is not None:
                    raise _fresh(err)
                return
            try:
                fn(*args)
            except UnsupportedFeatureError as exc:
                _CACHE[key] = _fresh(exc)  # stored without the first caller's traceback
                raise
            _CACHE[key] = None

    return wrapper  # type: ignore[return-value]


def clear_cache() -> None:
    """Forget every cached probe outcome (for tests, or after the privileges changed)."""
    with _LOCK:
        _CACHE.clear()


#: CAP_NET_ADMIN, CAP_SYS_ADMIN, CAP_PERFMON, CAP_BPF: every capability a bpf() command checks.
_BPF_CAPS = (12, 21, 38, 39)


def fully_privileged() -> bool:
    """True when this process is root with every capability bpf() checks (those this kernel knows).

    Only then does a refusal (EPERM, EINVAL, ...) say the kernel lacks the feature; with fewer
    privileges an EPERM may just mean "not allowed to you".
    """
    if os.geteuid() != 0:
        return False
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            last = int(f.read())
        with open("/proc/self/status") as f:
            eff = next((int(line.split()[1], 16) for line in f if line.startswith("CapEff:")), 0)
    except (OSError, ValueError):
        return True  # no procfs to ask: root is the best evidence there is
    return all(eff & (1 << cap) for cap in _BPF_CAPS if cap <= last)


def probe_error(exc: BPFSyscallError, feature: str, min_kernel: str = "", reason: str = "") -> EBPFError:
    """What a probe's failed syscall means; the caller raises the result (``raise probe_error(...) from None``).

    :param exc: the failure of the probing syscall.
    :param feature: what was probed, e.g. ``"map type arena"``.
    :param min_kernel: the first Linux version with the feature, or ``""``.
    :param reason: extra words on why (e.g. the CONFIG option it needs), or ``""``.
    :returns: :class:`ProbeInconclusiveError` for EPERM/EACCES without full privileges;
        :class:`UnsupportedFeatureError` for EPERM/EACCES/EINVAL/E2BIG/EOPNOTSUPP/ENOTSUPP otherwise;
        ``exc`` itself for any other errno (the probe could not tell).
    """
    err = exc.errno or 0
    if err in (errno.EPERM, errno.EACCES) and not fully_privileged():
        return ProbeInconclusiveError(feature, f"{errno_name(err)} without full privileges (run as root to know)", err)
    if err in _REFUSALS:
        return UnsupportedFeatureError(feature, min_kernel, reason, refused=errno_name(err))
    return exc


#: How a report (``ebpf check``, :func:`ebpf.core.init`) starts the text of a probe that could not tell.
COULD_NOT_TELL = "could not tell"


def outcome(probe: Callable[[], None]) -> str | None:
    """Run ``probe`` for a report; never raises.

    :returns: None when supported; the reason when not; for a probe that could not tell, text
        starting with ``"could not tell"`` (``"could not tell (not root): ..."`` without full
        privileges), so a report never shows "supported" for a probe that could not run.
    """
    try:
        probe()
    except UnsupportedFeatureError as exc:
        return str(exc)
    except ProbeInconclusiveError as exc:
        who = " (not root)" if not fully_privileged() else ""
        return f"{COULD_NOT_TELL}{who}: {exc.reason}"
    except Exception as exc:  # a report shows it; it never fails the whole report
        who = " (not root)" if not fully_privileged() else ""
        return f"{COULD_NOT_TELL}{who}: {type(exc).__name__}: {exc}"
    return None
