"""Shared helpers of ebpf-security's tests: the plugin registered, programs that deny one file,
child processes that open files on request, a fresh child cgroup."""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from ebpf.core import asm
from ebpf.core.btf import load_vmlinux
from ebpf.core.testing import Opener, plugin_registered

R0, R1, R2, R3, R4, R6 = asm.R0, asm.R1, asm.R2, asm.R3, asm.R4, asm.R6
_counter = itertools.count()


@pytest.fixture(scope="session", autouse=True)
def _security_plugin_registered() -> Iterator[None]:
    """Make sure ebpf-security's plugin is registered (a source tree without EBPF_PLUGINS has no entry
    point); a registration made here is undone at the end of the session."""
    import ebpf.security.plugin

    with plugin_registered(ebpf.security.plugin, "security"):
        yield


@pytest.fixture
def nothing_left_behind() -> Iterator[None]:
    """The test must leave no LSM program loaded (the session checks fds as well)."""
    from ebpf.core.programs import programs
    from ebpf.core.types import ProgType

    def lsm_ids() -> set[int]:
        return {p.id for p in programs() if p.type is ProgType.LSM}

    before = lsm_ids()
    yield
    assert lsm_ids() <= before


def member_offset(struct: str, member: str) -> int:
    """Byte offset of ``member`` in ``struct`` of the running kernel (from its BTF)."""
    return load_vmlinux().find_member(f"struct {struct}", member).bit_offset // 8


def _deny_inode_insns(inode: int, deny: int, allow: int, via: tuple[tuple[str, str], ...] = ()) -> list[Any]:
    """A program on a hook whose first argument leads to a ``struct file *``: ``deny`` when that
    file's inode number is ``inode``, else ``allow``.

    ``via`` names the pointers from the argument to the file (``(("linux_binprm", "file"),)`` for
    bprm_check_security; none for file_open).  The program reads ``file->f_inode->i_ino`` with
    offsets from the kernel's BTF (the verifier checks them against the same BTF).
    """
    hops = [asm.ldx_mem("dw", R1, R1, member_offset(struct, member)) for struct, member in via]
    return [
        asm.ldx_mem("dw", R1, R1, 0),                                  # the hook's first argument
        *hops,                                                         # ... down to struct file *
        asm.ldx_mem("dw", R2, R1, member_offset("file", "f_inode")),   # file->f_inode
        asm.ldx_mem("dw", R3, R2, member_offset("inode", "i_ino")),    # ->i_ino
        asm.ld_imm64(R4, inode),
        asm.jne(R3, R4, "allow"),
        asm.mov64(R0, deny), asm.exit_(),
        asm.label("allow"), asm.mov64(R0, allow), asm.exit_(),
    ]


@pytest.fixture
def openers() -> Iterator[tuple[Opener, Opener]]:
    """Two opener children."""
    a, b = Opener(), Opener()
    try:
        yield a, b
    finally:
        a.close()
        b.close()


def cgroup2_root() -> str:
    """The cgroup v2 mount point (``/sys/fs/cgroup`` or ``/sys/fs/cgroup/unified``)."""
    points = []
    with open("/proc/self/mountinfo", encoding="utf-8") as fh:
        for line in fh:
            left, _, right = line.partition(" - ")
            if right.split()[:1] == ["cgroup2"]:
                points.append(left.split()[4])
    for preferred in ("/sys/fs/cgroup", "/sys/fs/cgroup/unified"):
        if preferred in points:
            return preferred
    assert points, "no cgroup v2 filesystem is mounted"
    return points[0]


@pytest.fixture
def child_cgroup() -> Iterator[str]:
    """A fresh child cgroup of the cgroup v2 root; its processes are moved out and it is removed afterwards."""
    root = cgroup2_root()
    path = os.path.join(root, f"ebpf-security-test-{os.getpid()}-{next(_counter)}")
    os.mkdir(path)
    try:
        yield path
    finally:
        for _ in range(100):
            with open(os.path.join(path, "cgroup.procs")) as fh:
                pids = fh.read().split()
            for pid in pids:
                try:
                    with open(os.path.join(root, "cgroup.procs"), "w") as fh:
                        fh.write(pid)
                except OSError:
                    pass  # gone meanwhile
            try:
                os.rmdir(path)
                break
            except OSError:
                time.sleep(0.05)


def _move_to_cgroup(pid: int, cgroup: str) -> None:
    """Put process ``pid`` into ``cgroup``."""
    with open(os.path.join(cgroup, "cgroup.procs"), "w") as fh:
        fh.write(str(pid))


@pytest.fixture
def deny_inode_insns() -> Callable[..., list[Any]]:
    """``deny_inode_insns(inode, deny, allow, via=())``: an LSM program denying one inode."""
    return _deny_inode_insns


@pytest.fixture
def move_to_cgroup() -> Callable[[int, str], None]:
    """``move_to_cgroup(pid, cgroup)``."""
    return _move_to_cgroup
