"""Cross-package: the C struct ebpf-events emits for a tracepoint (``tracepoint_format(...).c_struct()``)
compiles with ebpf-elf's toolchain into a program that reads ``args->flags`` and ``args->filename`` at
the kernel's offsets: the flags of an open the test makes come back exactly."""

from __future__ import annotations

import os
import threading

import pytest
from ebpf.core.errors import NotSupportedError
from ebpf.events.tracing import tracepoint_format

pytestmark = pytest.mark.privileged

PROGRAM = r"""
#include "bpf_helpers.h"

%(struct)s

struct seen { __u64 flags; char path[64]; };
struct { __uint(type, BPF_MAP_TYPE_HASH); __uint(max_entries, 64); __type(key, __u32); __type(value, struct seen); }
    opens SEC(".maps");

SEC("tracepoint/syscalls/sys_enter_openat")
int on_openat(struct tracepoint__syscalls__sys_enter_openat *args)
{
    __u32 tid = (__u32)bpf_get_current_pid_tgid();
    struct seen s = {};

    s.flags = args->flags;
    bpf_probe_read_user_str(s.path, sizeof(s.path), args->filename);
    bpf_map_update_elem(&opens, &tid, &s, BPF_ANY);
    return 0;
}
char LICENSE[] SEC("license") = "GPL";
"""


def test_c_struct_offsets_hold_in_a_compiled_program(tmp_path: object) -> None:
    from ebpf.elf import compile_c, load_elf

    fmt = tracepoint_format("syscalls", "sys_enter_openat")
    try:
        obj = compile_c(PROGRAM % {"struct": fmt.c_struct()})
    except NotSupportedError as exc:  # no compiler: ebpf-elf[compile] not installed
        pytest.skip(f"no BPF C compiler: {exc}")
    flags = os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW
    with load_elf(obj) as coll, coll.programs["on_openat"].attach("syscalls:sys_enter_openat"):
        fd = os.open("/etc/hostname", flags)
        os.close(fd)
        raw = bytes(coll.maps["opens"].lookup_bytes(threading.get_native_id().to_bytes(4, "little")) or b"")
    assert int.from_bytes(raw[:8], "little") == flags
    assert raw[8:].split(b"\0", 1)[0] == b"/etc/hostname"
