"""ebpf-security: BPF LSM programs for ebpf-core.

``from ebpf.security import lsm``: the LSM hooks of the running kernel (read from its BTF, with
arguments, return type and category), loading and attaching programs on them (``BPF_LSM_MAC`` for
every process, ``BPF_LSM_CGROUP`` for one cgroup), and probes that say why a kernel refuses.
Installing the package registers an attach backend (``program.attach()`` for LSM programs,
``program.attach("/sys/fs/cgroup/app")`` for cgroup LSM), the ``security.*`` feature probes and
the ``ebpf lsm hooks`` command.
"""

from __future__ import annotations

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
