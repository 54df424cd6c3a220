"""kfunc discovery: the kernel functions BPF programs may call, read from the kernel's BTF.

The kernel marks every kfunc with a ``bpf_kfunc`` BTF decl tag (pahole >= 1.26 with
``decl_tag_kfuncs``; Linux >= 6.9 kernels built so), on vmlinux and on each module's BTF.
:func:`list_kfuncs` reads those: name, C prototype, BTF id, module and the other decl tags
(``bpf_fastcall``).  Which program types may call a kfunc is not in BTF (the kernel keeps it
in its kfunc sets); :func:`kfunc_program_types` asks the verifier, by loading a tiny program
that calls the kfunc for each program type.

Shown by ``ebpf list kfuncs [--module M] [--json]``.
"""

from __future__ import annotations

import dataclasses
import errno
import os
from collections.abc import Iterable
from typing import Any

from ebpf.core.errors import BPFSyscallError, BTFError, EBPFError, UnsupportedFeatureError, VerifierError
from ebpf.core.types import ProgType

__all__ = ["Kfunc", "list_kfuncs", "kfunc_program_types", "format_prototype", "PROBED_PROG_TYPES"]

_SYSFS_BTF = "/sys/kernel/btf"
#: Program types :func:`kfunc_program_types` tries by default (those a tiny program loads as without
#: an attach target).
PROBED_PROG_TYPES = (ProgType.SOCKET_FILTER, ProgType.SCHED_CLS, ProgType.XDP, ProgType.TRACEPOINT,
                     ProgType.RAW_TRACEPOINT, ProgType.PERF_EVENT, ProgType.CGROUP_SKB, ProgType.SYSCALL,
                     ProgType.TRACING, ProgType.STRUCT_OPS)


@dataclasses.dataclass(frozen=True)
class Kfunc:
    """One kfunc: ``name``, its C ``prototype``, BTF ``btf_id`` in the BTF of ``module`` ("vmlinux" or a
    module name) and its other decl ``tags``; ``program_types`` when probed (else None)."""

    name: str
    prototype: str
    btf_id: int
    module: str = "vmlinux"
    tags: tuple[str, ...] = ()
    program_types: tuple[str, ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return dataclasses.asdict(self)


def _type_name(spec: Any, tid: int, depth: int = 0) -> str:
    """A C spelling of type ``tid`` good enough for a prototype."""
    from ebpf.core.btf.types import Array, Const, Enum, FuncProto, Int, Pointer, Struct, Typedef, Union, Volatile

    if tid == 0:
        return "void"
    if depth > 16:
        return "void"
    t = spec[tid]
    if isinstance(t, Pointer):
        target = spec[t.type_id] if t.type_id else None
        if isinstance(target, FuncProto):
            return "void *"
        inner = _type_name(spec, t.type_id, depth + 1)
        return inner + ("*" if inner.endswith("*") else " *")
    if isinstance(t, Const):
        return "const " + _type_name(spec, t.type_id, depth + 1)
    if isinstance(t, Volatile):
        return "volatile " + _type_name(spec, t.type_id, depth + 1)
    if isinstance(t, Struct):
        return f"struct {t.name or '(anon)'}"
    if isinstance(t, Union):
        return f"union {t.name or '(anon)'}"
    if isinstance(t, Enum):
        return f"enum {t.name or '(anon)'}"
    if isinstance(t, Array):
        return _type_name(spec, t.type_id, depth + 1) + " *"
    if isinstance(t, (Int, Typedef)):
        return t.name
    if hasattr(t, "type_id"):  # type tags and other qualifiers
        return _type_name(spec, t.type_id, depth + 1)
    return t.name or "void"


def format_prototype(spec: Any, func: Any) -> str:
    """``ret name(type a, type b)`` of BTF FUNC ``func`` in ``spec``."""
    from ebpf.core.btf.types import FuncProto

    proto = spec[func.type_id]
    if not isinstance(proto, FuncProto):
        return f"{func.name}(?)"
    params = [("..." if p.type_id == 0 else f"{_type_name(spec, p.type_id)} {p.name}".replace("* ", "*"))
              for p in proto.params]
    ret = _type_name(spec, proto.type_id)
    return f"{ret}{'' if ret.endswith('*') else ' '}{func.name}({', '.join(params) or 'void'})"


def _specs(module: str | None) -> Iterable[tuple[str, Any]]:
    from ebpf.core.btf import load_module, load_vmlinux

    if module in (None, "vmlinux"):
        yield "vmlinux", load_vmlinux()
    if module == "vmlinux":
        return
    names = [module] if module is not None else sorted(n for n in _listdir(_SYSFS_BTF) if n != "vmlinux")
    for name in names:
        try:
            yield name, load_module(name)
        except (BTFError, EBPFError, OSError):
            if module is not None:
                raise EBPFError(f"no BTF for module {module!r} in {_SYSFS_BTF}") from None


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []


def list_kfuncs(module: str | None = None) -> list[Kfunc]:
    """Every kfunc the kernel declares (FUNCs with the ``bpf_kfunc`` decl tag), sorted by name.

    :param module: only this module's kfuncs ("vmlinux" for the kernel image); None: all.
    :returns: the :class:`Kfunc` list (``program_types`` None: see :func:`kfunc_program_types`).
    :raises UnsupportedFeatureError: when the kernel's BTF carries no kfunc decl tags (built with an
        older pahole) or there is no BTF.
    :raises EBPFError: for a module without BTF.
    """
    from ebpf.core.btf.types import DeclTag, Func

    out: list[Kfunc] = []
    tagged_anywhere = False
    for mod, spec in _specs(module):
        tags: dict[int, list[str]] = {}
        first = int(getattr(spec, "first_id", 1))
        for t in spec:
            if t.id >= first and isinstance(t, DeclTag) and t.component_idx == -1:
                tags.setdefault(t.type_id, []).append(t.name)
        for tid, names in tags.items():
            if "bpf_kfunc" not in names:
                continue
            tagged_anywhere = True
            fn = spec[tid]
            if isinstance(fn, Func):
                others = tuple(sorted(set(names) - {"bpf_kfunc"}))
                out.append(Kfunc(fn.name, format_prototype(spec, fn), tid, mod, others))
    if not tagged_anywhere and module in (None, "vmlinux"):
        raise UnsupportedFeatureError("kfunc decl tags in BTF", "6.9",
                                      "the kernel's BTF has no bpf_kfunc decl tags (built with pahole < 1.26)")
    seen: set[tuple[str, str]] = set()
    unique = []
    for k in sorted(out, key=lambda k: (k.name, k.module)):
        if (k.name, k.module) not in seen:
            seen.add((k.name, k.module))
            unique.append(k)
    return unique


def _find(name: str) -> Kfunc:
    for k in list_kfuncs():
        if k.name == name:
            return k
    raise EBPFError(f"no kfunc named {name!r} in the kernel's BTF")


def kfunc_program_types(name: str, prog_types: Iterable[ProgType | str | int] = PROBED_PROG_TYPES) -> list[ProgType]:
    """The program types whose programs the verifier lets call kfunc ``name``.

    Loads ``r1..r5 = 0; call name; r0 = 0; exit`` as each type: "calling kernel function ...
    is not allowed" (or an unknown kfunc) means no; any other verdict (arguments the
    verifier rejects, or a load) means the type may call it.

    :returns: the allowed program types among ``prog_types``.
    :raises EBPFError: for an unknown kfunc (before any load).
    """
    from ebpf.core.asm import R0, R1, R2, R3, R4, R5, exit_, kfunc_call, mov64
    from ebpf.core.programs import load_program

    k = _find(name)
    if k.module != "vmlinux":
        raise EBPFError(f"probing module kfuncs ({k.module}) needs the module BTF in fd_array: not supported")
    insns = [*(mov64(r, 0) for r in (R1, R2, R3, R4, R5)), kfunc_call(k.btf_id), mov64(R0, 0), exit_()]
    allowed = []
    for pt in (ProgType.parse(p) for p in prog_types):
        extra: dict[str, Any] = {}
        if pt == ProgType.TRACING:
            extra = {"expected_attach_type": "trace_raw_tp", "attach_to": "sys_enter"}
        elif pt == ProgType.SYSCALL:
            extra = {"flags": 1 << 4}  # BPF_F_SLEEPABLE
        elif pt == ProgType.STRUCT_OPS:
            extra = {"attach_to": "tcp_congestion_ops:ssthresh"}
        try:
            prog = load_program(prog_type=pt, insns=insns, license="GPL", **extra)
        except VerifierError as exc:
            log = exc.log or ""
            if "is not allowed" in log or "not found in kernel" in log or "unknown func" in log.lower():
                continue
            allowed.append(pt)
            continue
        except (BPFSyscallError, BTFError) as exc:
            if isinstance(exc, BPFSyscallError) and exc.errno not in (errno.EPERM, errno.EINVAL, errno.EACCES):
                raise
            continue  # this program type cannot be loaded here at all
        prog.close()
        allowed.append(pt)
    return allowed
