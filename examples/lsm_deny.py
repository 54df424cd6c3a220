"""Deny an operation with a BPF LSM program -- where the kernel allows BPF LSM at all.

    sudo python3 examples/lsm_deny.py --duration 2

The program runs on the ``file_mprotect`` hook and returns -EPERM for this process, so an
mprotect(PROT_EXEC) fails while it is attached.  Kernels without CONFIG_BPF_LSM, without
"bpf" in the active LSMs, or under lockdown refuse LSM programs: ``have_lsm()`` explains
which, with an UnsupportedFeatureError, and the example exits 0.
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
from ebpf.core.features import have_lsm
from ebpf.core.links import create_link
from ebpf.core.programs import load_program

EPERM = 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=float, default=1.0, help="seconds to keep the program attached")
    args = parser.parse_args()
    try:
        have_lsm()
    except UnsupportedFeatureError as exc:
        print(f"BPF LSM is not available here: {exc}")
        return 0

    me = os.getpid()
    insns = [
        asm.call("get_current_pid_tgid"), asm.rsh64(R0, 32),
        asm.jne(R0, me, "allow"),                       # only this process is denied
        asm.mov64(R0, -EPERM), asm.exit_insn(),
        asm.label("allow"), asm.mov64(R0, 0), asm.exit_insn(),
    ]
    with load_program(prog_type="lsm", expected_attach_type="lsm_mac", attach_to="file_mprotect",
                      insns=insns, name="deny_mprotect") as prog, \
            create_link(prog, 0, "lsm_mac", description="lsm file_mprotect"):
        libc = ctypes.CDLL(None, use_errno=True)
        page = mmap.mmap(-1, mmap.PAGESIZE)
        addr = ctypes.addressof(ctypes.c_char.from_buffer(page))
        result = libc.mprotect(ctypes.c_void_p(addr), mmap.PAGESIZE, 0x1 | 0x4)  # PROT_READ | PROT_EXEC
        print(f"mprotect while attached: {'denied: ' + os.strerror(ctypes.get_errno()) if result else 'allowed'}")
        time.sleep(args.duration)
    return 0


if __name__ == "__main__":
    sys.exit(main())
