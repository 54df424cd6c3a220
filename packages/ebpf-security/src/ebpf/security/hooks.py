"""The LSM hooks of the running kernel, read from its BTF (never a fixed list).

Every LSM hook has a no-op function ``bpf_lsm_<hook>`` in vmlinux (kernel/bpf/bpf_lsm.c) where
BPF LSM programs attach; its BTF prototype gives the hook's arguments and return type.  The same
file holds a few helpers named ``bpf_lsm_*`` that are not hooks (``bpf_lsm_verify_prog``, ...);
they are told apart by the kernel's own table of hooks: the members of ``struct
lsm_static_calls_table`` (Linux >= 6.9) or ``struct security_hook_heads`` (older kernels), one
per hook.  Only when neither struct is in the BTF does a short list of the helper names decide.

Categories come from the hook names (first rule that matches wins):

============== ================================================================================
mount          ``sb_mount``, ``sb_umount``, ``sb_remount``, ``sb_kern_mount``, ``sb_pivotroot``,
               ``move_mount``, ``mount_*``, ``fs_context_*`` and the ``sb_*`` mount-option hooks
               (names holding ``mnt_opt`` or ``lsm_opts``)
credentials    ``cred_*``, ``capable*``, ``capget``, ``capset``, names holding ``setuid``,
               ``setgid``, ``setgroups`` or ``_creds`` (except ``bprm_*``), ``kernel_act_as``,
               ``kernel_create_files_as``
process        ``task_*``, ``bprm_*``, ``ptrace_*``
file-system    ``file_*``, ``inode_*``, ``path_*``, ``sb_*``, ``dentry_*``, ``d_instantiate``,
               ``kernfs_*``, ``mmap_file``, ``quotactl``, ``quota_on``, ``backing_file_*``
network        ``socket_*``, ``sk_*``, ``sock_*``, ``inet_*``, ``tun_*``, ``xfrm_*``, ``sctp_*``,
               ``secmark_*``, ``unix_*``, ``mptcp_*``, ``netlink_*``, ``req_classify_flow``,
               ``ib_*``
other          everything else (keys, IPC, audit, BPF, perf, io_uring, ...)
============== ================================================================================
"""

from __future__ import annotations

import re
import threading
from typing import TYPE_CHECKING

from ebpf.core.errors import BTFError, EBPFError, UnsupportedFeatureError
from ebpf.core.records import dataclass

if TYPE_CHECKING:
    from ebpf.core.btf import Spec

__all__ = [
    "CATEGORIES",
    "LsmHook",
    "list_lsm_hooks",
    "list_hooks_by_category",
    "get_hook_category",
    "find_lsm_hook",
    "hook_name",
]

#: The categories :func:`get_hook_category` answers, ``other`` last.
CATEGORIES: tuple[str, ...] = ("file-system", "process", "network", "credentials", "mount", "other")

PREFIX = "bpf_lsm_"
# Functions of kernel/bpf/bpf_lsm.c and security/bpf/hooks.c named bpf_lsm_* that are not hooks;
# used only on a kernel whose BTF has neither table of hooks.
_NOT_HOOKS = frozenset({
    "find_cgroup_shim", "func_proto", "get_retval_range", "has_d_inode_locked", "hook_returns_errno",
    "init", "is_sleepable_hook", "is_trusted", "verify_prog", "kernel_init", "blob_sizes",
})
_HOOK_TABLES = ("lsm_static_calls_table", "security_hook_heads")

_MOUNT_EXACT = ("sb_mount", "sb_umount", "sb_remount", "sb_kern_mount", "sb_pivotroot", "move_mount")
_CREDS_EXACT = ("capget", "capset", "kernel_act_as", "kernel_create_files_as")
_RULES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("process", ("task_", "bprm_", "ptrace_")),
    ("file-system", ("file_", "inode_", "path_", "sb_", "dentry_", "d_instantiate", "kernfs_", "mmap_file",
                     "quotactl", "quota_on", "backing_file_")),
    ("network", ("socket_", "sk_", "sock_", "inet_", "tun_", "xfrm_", "sctp_", "secmark_", "unix_", "mptcp_",
                 "netlink_", "req_classify_flow", "ib_")),
)


@dataclass(frozen=True)
class LsmHook:
    """One LSM hook as the running kernel declares it.

    :ivar name: the hook's name without the ``bpf_lsm_`` prefix (``"file_open"``).
    :ivar category: one of :data:`CATEGORIES`.
    :ivar args: ``(name, C type)`` of each argument (``("file", "struct file *")``).
    :ivar return_type: the C return type (``"int"``, ``"void"``).
    :ivar can_deny: False for hooks returning void: a program there cannot refuse anything.
    :ivar btf_id: the id of ``bpf_lsm_<name>`` in vmlinux BTF (the program's ``attach_btf_id``).
    """

    name: str
    category: str
    args: tuple[tuple[str, str], ...]
    return_type: str
    can_deny: bool
    btf_id: int = 0

    @property
    def function(self) -> str:
        """The kernel function programs attach to: ``bpf_lsm_<name>``."""
        return PREFIX + self.name

    def signature(self) -> str:
        """The hook as a C prototype: ``int file_open(struct file *file)``."""
        params = ", ".join(f"{t}{'' if t.endswith('*') else ' '}{n}".strip() for n, t in self.args)
        return f"{self.return_type} {self.name}({params or 'void'})"


def hook_name(hook: object) -> str:
    """``hook`` without decoration: ``"file_open"`` from ``"file_open"``, ``"bpf_lsm_file_open"``,
    ``"lsm/file_open"``, ``"lsm_cgroup/file_open"`` or an :class:`LsmHook`.

    :raises EBPFError: when ``hook`` is not a non-empty name.
    """
    if isinstance(hook, LsmHook):
        return hook.name
    if not isinstance(hook, str):
        raise EBPFError(f"an LSM hook is named by a str, not {type(hook).__name__}")
    name = hook.strip()
    for lead in ("lsm.s/", "lsm_cgroup/", "lsm/"):
        if name.startswith(lead):
            name = name[len(lead):]
            break
    name = name.removeprefix(PREFIX)
    if not name or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise EBPFError(f"bad LSM hook name {hook!r}")
    return name


def _category(name: str) -> str:
    if name in _MOUNT_EXACT or name.startswith(("mount_", "fs_context_", "move_mount")) or (
        name.startswith("sb_") and ("mnt_opt" in name or "lsm_opts" in name)
    ):
        return "mount"
    if not name.startswith("bprm_") and (
        name.startswith(("cred_", "capable")) or name in _CREDS_EXACT
        or any(word in name for word in ("setuid", "setgid", "setgroups", "_creds"))
    ):
        return "credentials"
    for category, prefixes in _RULES:
        if name.startswith(prefixes):
            return category
    return "other"


# -- BTF ---------------------------------------------------------------------------------------------

_lock = threading.Lock()
# id(spec) -> (spec, its hooks); the spec is kept in the entry so its id cannot be reused
_cache: dict[int, tuple[Spec, tuple[LsmHook, ...]]] = {}


def _c_type(spec: Spec, type_id: int, depth: int = 0) -> str:
    """A short C spelling of a BTF type: ``struct file *``, ``const char *``, ``unsigned long``."""
    from ebpf.core.btf import types as t

    if depth > 16:
        return "..."
    typ = spec.type_by_id(type_id)
    if isinstance(typ, t.Void):
        return "void"
    if isinstance(typ, t.Pointer):
        target = spec.type_by_id(typ.type_id)
        if isinstance(target, t.FuncProto):
            return f"{_c_type(spec, target.type_id, depth + 1)} (*)()"
        inner = _c_type(spec, typ.type_id, depth + 1)
        return f"{inner}*" if inner.endswith("*") else f"{inner} *"
    if isinstance(typ, t.Const):
        return f"const {_c_type(spec, typ.type_id, depth + 1)}"
    if isinstance(typ, t.Volatile):
        return f"volatile {_c_type(spec, typ.type_id, depth + 1)}"
    if isinstance(typ, (t.Restrict, t.TypeTag)):
        return _c_type(spec, typ.type_id, depth + 1)
    if isinstance(typ, t.Array):
        return f"{_c_type(spec, typ.type_id, depth + 1)}[{typ.nelems}]"
    if isinstance(typ, t.Union) or (isinstance(typ, t.Fwd) and typ.is_union):
        return f"union {typ.name or '(anon)'}"
    if isinstance(typ, (t.Struct, t.Fwd)):
        return f"struct {typ.name or '(anon)'}"
    if isinstance(typ, t.Enum):
        return f"enum {typ.name or '(anon)'}"
    return typ.name or typ.kind_name


def _hook_table(spec: Spec) -> frozenset[str] | None:
    from ebpf.core.btf import types as t

    for table in _HOOK_TABLES:
        for typ in spec.find_all(table, "struct"):
            if isinstance(typ, t.Struct) and typ.members:
                return frozenset(m.name for m in typ.members)
    return None


def _candidate_names(spec: Spec) -> list[str]:
    # Every string "bpf_lsm_*" in the string section; the lookahead keeps adjacent names apart.
    found = re.finditer(rb"(?:^|\0)bpf_lsm_([A-Za-z0-9_]+)(?=\0)", spec.strings)
    return sorted({m.group(1).decode("ascii") for m in found})


def _read_hooks(spec: Spec) -> tuple[LsmHook, ...]:
    from ebpf.core.btf import types as t

    table = _hook_table(spec)
    hooks = []
    for name in _candidate_names(spec):
        if (name not in table) if table is not None else (name in _NOT_HOOKS):
            continue
        funcs = [f for f in spec.find_all(PREFIX + name, "func") if isinstance(f, t.Func)]
        if not funcs:
            continue
        func = funcs[0]
        proto = spec.type_by_id(func.type_id)
        if not isinstance(proto, t.FuncProto):
            raise BTFError(f"BTF func {func.name} [{func.id}] has no prototype ({proto})")
        args = tuple((p.name or f"arg{i}", _c_type(spec, p.type_id)) for i, p in enumerate(proto.params)
                     if p.type_id != 0)
        ret = _c_type(spec, proto.type_id)
        hooks.append(LsmHook(name, _category(name), args, ret, ret != "void", func.id))
    return tuple(hooks)


def _all_hooks(btf: Spec | None) -> tuple[LsmHook, ...]:
    if btf is None:
        from ebpf.core.btf import load_vmlinux

        btf = load_vmlinux()
    with _lock:
        cached = _cache.get(id(btf))
    if cached is not None:
        return cached[1]
    hooks = _read_hooks(btf)
    if not hooks:
        raise UnsupportedFeatureError("BPF LSM hooks", "5.7",
                                      f"no bpf_lsm_* functions in {btf.name or 'the'} BTF (kernel built without "
                                      "CONFIG_BPF_LSM)")
    with _lock:
        _cache[id(btf)] = (btf, hooks)
    return hooks


def list_lsm_hooks(category: str | None = None, btf: Spec | None = None) -> list[LsmHook]:
    """Every LSM hook of the running kernel, from the ``bpf_lsm_*`` functions in its BTF, by name.

    :param category: only hooks of this category (see :data:`CATEGORIES`).
    :param btf: another kernel's BTF to read instead (a :class:`ebpf.core.btf.Spec`).
    :returns: the hooks with their arguments, return type and whether they can deny.
    :raises UnsupportedFeatureError: when the kernel has no BTF or no BPF LSM hooks (CONFIG_BPF_LSM).
    :raises EBPFError: for an unknown category.
    Requires Linux >= 5.7.
    """
    if category is not None:
        _check_category(category)
    hooks = _all_hooks(btf)
    return [h for h in hooks if category is None or h.category == category]


def _check_category(category: object) -> str:
    if category not in CATEGORIES:
        raise EBPFError(f"unknown LSM hook category {category!r}; choose one of {', '.join(CATEGORIES)}")
    return str(category)


def list_hooks_by_category(category: str, btf: Spec | None = None) -> list[LsmHook]:
    """The hooks of one category (``"file-system"``, ``"process"``, ``"network"``, ``"credentials"``,
    ``"mount"`` or ``"other"``).

    :raises EBPFError: for an unknown category (before reading any BTF).
    :raises UnsupportedFeatureError: as :func:`list_lsm_hooks`.
    """
    return list_lsm_hooks(_check_category(category), btf)


def find_lsm_hook(hook: object, btf: Spec | None = None) -> LsmHook:
    """The hook named ``hook`` (``"file_open"``, ``"bpf_lsm_file_open"``, ``"lsm/file_open"``).

    :raises EBPFError: when the running kernel has no such hook; the message suggests close names.
    :raises UnsupportedFeatureError: as :func:`list_lsm_hooks`.
    """
    if isinstance(hook, LsmHook):
        return hook
    name = hook_name(hook)
    hooks = _all_hooks(btf)
    for h in hooks:
        if h.name == name:
            return h
    import difflib  # deferred: start-up time (only a misspelt hook name needs it)

    close = difflib.get_close_matches(name, [h.name for h in hooks], n=5, cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else " (`ebpf lsm hooks` lists them)"
    raise EBPFError(f"unknown LSM hook {name!r}: this kernel has no bpf_lsm_{name}{hint}")


def get_hook_category(hook: object, btf: Spec | None = None) -> str:
    """The category of a hook of the running kernel (see the module docs for the rules).

    :param hook: a hook name or an :class:`LsmHook`.
    :raises EBPFError: for an unknown hook (with close names).
    """
    return find_lsm_hook(hook, btf).category
