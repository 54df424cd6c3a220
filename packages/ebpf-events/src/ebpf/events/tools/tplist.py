"""tplist: what a program can attach to or call on this kernel (bcc ``tplist``), for ``ebpf list ...``.

- tracepoints (tracefs ``events/``), with their fields from the ``format`` files (``verbose``);
- USDT probes of a binary (its ``.note.stapsdt``);
- kfuncs: see :mod:`ebpf.events.kfuncs` (``ebpf list kfuncs``);
- helpers: the kernel's helper ids (``enum bpf_func_id``);
- LSM hooks: ``bpf_lsm_*`` functions in vmlinux BTF.
"""

from __future__ import annotations

import fnmatch
from typing import Any

from ebpf.core.errors import EBPFError

__all__ = ["list_helpers", "list_lsm", "list_tracepoints", "list_usdt_probes", "matches"]


def matches(name: str, pattern: str | None) -> bool:
    """Shell-style match (``sched:*``, ``*open*``); a pattern without wildcards matches as a substring."""
    if not pattern:
        return True
    if any(c in pattern for c in "*?["):
        return fnmatch.fnmatchcase(name, pattern)
    return pattern in name


def list_tracepoints(pattern: str | None = None, verbose: bool = False) -> list[dict[str, Any]]:
    """``[{"name": "syscalls:sys_enter_openat", "fields": [...]}]`` (fields only with ``verbose``)."""
    from ebpf.events.tracing import list_tracepoints as _all
    from ebpf.events.tracing import tracepoint_format

    out: list[dict[str, Any]] = []
    for name in _all():
        if not matches(name, pattern):
            continue
        entry: dict[str, Any] = {"name": name}
        if verbose:
            try:
                fmt = tracepoint_format(name)
                entry["fields"] = [{"name": f.name, "type": f.c_type + (f"[{f.array_len}]" if f.array_len else ""),
                                    "offset": f.offset, "size": f.size, "signed": f.signed} for f in fmt.fields]
            except EBPFError as exc:
                entry["error"] = str(exc)
        out.append(entry)
    return out


def list_usdt_probes(binary: str, pattern: str | None = None) -> list[dict[str, Any]]:
    """The USDT probes of ``binary``: provider, name, address, semaphore, argument spec."""
    from ebpf.events.tracing import list_usdt

    out = []
    for p in list_usdt(binary):
        name = f"{p.provider}:{p.name}"
        if matches(name, pattern):
            out.append({"name": name, "provider": p.provider, "probe": p.name, "address": p.address,
                        "semaphore": p.semaphore, "args": getattr(p, "args", "")})
    return out


def list_helpers(pattern: str | None = None) -> list[dict[str, Any]]:
    """The helper functions this library knows by id (``bpf_map_lookup_elem`` = 1, ...)."""
    from ebpf.core.types import Helper

    out = []
    for h in Helper:
        name = f"bpf_{h.name.lower()}"
        if matches(name, pattern):
            out.append({"name": name, "id": int(h)})
    return out


def list_lsm(pattern: str | None = None) -> list[str]:
    """LSM hooks a BPF LSM program can attach to (``file_open``, ...), from vmlinux BTF, sorted."""
    hooks: Any = None
    try:
        from ebpf.security.hooks import list_lsm_hooks  # ebpf-security knows them best when installed

        hooks = list_lsm_hooks
    except ImportError:
        pass
    if hooks is not None:
        names = [getattr(h, "name", str(h)) for h in hooks()]
    else:
        from ebpf.core.btf import load_vmlinux
        from ebpf.core.btf.types import Func

        names = [t.name[len("bpf_lsm_"):] for t in load_vmlinux() if isinstance(t, Func) and
                 t.name.startswith("bpf_lsm_")]
    return sorted(n for n in set(names) if matches(n, pattern))
