"""ebpf-security: BPF LSM programs for ebpf-core.

``from ebpf.security import lsm``: the LSM hooks of the running kernel (read from its BTF, with
arguments, return type and category), loading and attaching programs on them (``BPF_LSM_MAC`` for
every process, ``BPF_LSM_CGROUP`` for one cgroup), and probes that say why a kernel refuses.
Installing the package registers an attach backend (``program.attach()`` for LSM programs,
``program.attach("/sys/fs/cgroup/app")`` for cgroup LSM), the ``security.*`` feature probes and
the ``ebpf lsm hooks`` command.
"""


from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ebpf.security import hooks, lsm
    from ebpf.security.hooks import (
        CATEGORIES,
        LsmHook,
        find_lsm_hook,
        get_hook_category,
        list_hooks_by_category,
        list_lsm_hooks,
    )
    from ebpf.security.lsm import (
        LsmSetup,
        attach_lsm_program,
        detach_lsm_program,
        have_bpf_lsm,
        have_lsm_cgroup,
        load_lsm_program,
        lsm_available,
        lsm_hook,
        lsm_return_code,
        setup_lsm_hook,
        teardown_lsm_hook,
    )

# Submodules and the names re-exported from them, imported on first use: importing the package
# (its plugin, say) costs nothing until a name is used.
_MODULES: list[str] = ["hooks", "lsm"]
_NAMES = {
    "CATEGORIES": "hooks",
    "LsmHook": "hooks",
    "LsmSetup": "lsm",
    "attach_lsm_program": "lsm",
    "detach_lsm_program": "lsm",
    "find_lsm_hook": "hooks",
    "get_hook_category": "hooks",
    "have_bpf_lsm": "lsm",
    "have_lsm_cgroup": "lsm",
    "list_hooks_by_category": "hooks",
    "list_lsm_hooks": "hooks",
    "load_lsm_program": "lsm",
    "lsm_available": "lsm",
    "lsm_hook": "lsm",
    "lsm_return_code": "lsm",
    "setup_lsm_hook": "lsm",
    "teardown_lsm_hook": "lsm",
}

__all__ = [
    "hooks",
    "lsm",
    "CATEGORIES",
    "LsmHook",
    "LsmSetup",
    "find_lsm_hook",
    "get_hook_category",
    "list_hooks_by_category",
    "list_lsm_hooks",
    "attach_lsm_program",
    "detach_lsm_program",
    "have_bpf_lsm",
    "have_lsm_cgroup",
    "load_lsm_program",
    "lsm_available",
    "lsm_hook",
    "lsm_return_code",
    "setup_lsm_hook",
    "teardown_lsm_hook",
]


def __getattr__(name: str) -> Any:
    if name in _MODULES:
        value = importlib.import_module(f"ebpf.security.{name}")
    elif name in _NAMES:
        value = getattr(importlib.import_module(f"ebpf.security.{_NAMES[name]}"), name)
    else:
        raise AttributeError(f"module 'ebpf.security' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
