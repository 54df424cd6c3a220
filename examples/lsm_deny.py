"""Deny an operation with a BPF LSM program -- where the kernel allows BPF LSM at all.

    sudo python3 examples/lsm_deny.py --duration 2

The program runs on the ``file_mprotect`` hook and denies (EPERM) for this process only, so an
mprotect(PROT_EXEC) fails while it is attached and works again once it is detached.  Kernels
without CONFIG_BPF_LSM, without "bpf" in the active LSMs, or under lockdown refuse LSM programs:
``have_bpf_lsm()`` explains which, with an UnsupportedFeatureError, and the example exits 0.
"""

from __future__ import annotations

import argparse
import ctypes
import mmap
import os
import sys
import time

from ebpf.core import asm
from ebpf.core.asm import R0
from ebpf.core.errors import UnsupportedFeatureError
from ebpf.security import lsm

HOOK = "file_mprotect"


def try_mprotect() -> str:
    """mprotect(PROT_READ|PROT_EXEC) on a fresh page: "allowed" or "denied: <error>"."""
    libc = ctypes.CDLL(None, use_errno=True)
    page = mmap.mmap(-1, mmap.PAGESIZE)
    buf = ctypes.c_char.from_buffer(page)
    try:
        result = libc.mprotect(ctypes.c_void_p(ctypes.addressof(buf)), mmap.PAGESIZE, 0x1 | 0x4)
        return f"denied: {os.strerror(ctypes.get_errno())}" if result else "allowed"
    finally:
        del buf
        page.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=float, default=1.0, help="seconds to keep the program attached")
    args = parser.parse_args()
    try:
        lsm.have_bpf_lsm()
    except UnsupportedFeatureError as exc:
        print(f"BPF LSM is not available here: {exc}")
        return 0

    hook = lsm.find_lsm_hook(HOOK)
    print(f"hook: {hook.signature()} ({hook.category})")
    insns = [
        asm.call("get_current_pid_tgid"), asm.rsh64(R0, 32),
        asm.jne(R0, os.getpid(), "allow"),                     # only this process is denied
        asm.mov64(R0, lsm.lsm_return_code("deny", hook)), asm.exit_(),
        asm.label("allow"), asm.mov64(R0, lsm.lsm_return_code("allow")), asm.exit_(),
    ]
    with lsm.lsm_hook(insns, hook, name="deny_mprotect"):
        print(f"mprotect while attached: {try_mprotect()}")
        time.sleep(args.duration)
    print(f"mprotect after detaching: {try_mprotect()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
