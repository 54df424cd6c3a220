"""BPF tokens for real: an unprivileged user (uid nobody) in its own user namespace creates a map and
loads and runs a program through a token from a bpffs that this (root) process configured to delegate
them; without the token, or for what the bpffs does not delegate, the kernel refuses."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from typing import Any

import pytest
from ebpf.core.errors import BPFSyscallError, EBPFError, UnsupportedFeatureError
from ebpf.core.testing import require
from ebpf.core.token import create_token, delegated_bpffs, have_bpf_token

pytestmark = pytest.mark.privileged

CHILD = r"""
import ctypes, json, os, socket, sys
import ebpf.core as bpf
from ebpf.core.asm import R0, exit_, mov64
from ebpf.core.token import create_token, open_bpffs_context

import ebpf.core.maps, ebpf.core.programs, ebpf.core.system, ebpf.core.links, ebpf.core.features  # noqa
from ebpf.core.errors import BPFSyscallError
bpf.create_array_map, bpf.create_hash_map, bpf.load_program  # resolve the lazy names while we can read them
sock = socket.socket(fileno=int(sys.argv[1]))
out = {}
libc = ctypes.CDLL(None, use_errno=True)
os.setgroups([]); os.setresgid(65534, 65534, 65534); os.setresuid(65534, 65534, 65534)  # nobody
libc.prctl(4, 1, 0, 0, 0)  # PR_SET_DUMPABLE: changing uids cleared it, and with it our own /proc files
if libc.unshare(0x10000000) != 0:  # CLONE_NEWUSER
    print(json.dumps({"unshare": os.strerror(ctypes.get_errno())})); sys.exit(0)
for path, text in (("uid_map", "0 65534 1"), ("setgroups", "deny"), ("gid_map", "0 65534 1")):
    with open(f"/proc/self/{path}", "w") as f:
        f.write(text)
assert libc.unshare(0x00020000) == 0  # CLONE_NEWNS: a mount namespace this user namespace owns

def attempt(key, fn):
    try:
        out[key] = fn()
    except BPFSyscallError as exc:
        out[key] = f"errno {exc.errno}"

attempt("map_without_token", lambda: bpf.create_array_map(1, name="tok_nomap").close())
socket.send_fds(sock, [b"c"], [open_bpffs_context()])
_, fds, _, _ = socket.recv_fds(sock, 1, 1)
try:
    token = create_token(fds[0])
except BPFSyscallError as exc:
    print(json.dumps({**out, "token": f"errno {exc.errno}"})); sys.exit(0)
def with_map():
    with bpf.create_array_map(4, value_size=8, name="tok_map", token=token) as m:
        m[1] = 42
        return m[1]
attempt("map_with_token", with_map)
attempt("hash_with_token", lambda: bpf.create_hash_map(4, name="tok_hash", token=token).close())
def with_prog():
    with bpf.load_program(prog_type="socket_filter", insns=[mov64(R0, 7), exit_()], token=token) as p:
        return p.test_run(bytes(64)).retval
attempt("prog_with_token", with_prog)
attempt("prog_without_token",
        lambda: bpf.load_program(prog_type="socket_filter", insns=[mov64(R0, 7), exit_()]).close())
print(json.dumps(out))
"""


def run_child(**delegate: Any) -> dict[str, Any]:
    parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with parent:
        proc = subprocess.Popen([sys.executable, "-c", CHILD, str(child.fileno())], pass_fds=[child.fileno()],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        child.close()
        try:
            parent.settimeout(60)
            _, fds, _, _ = socket.recv_fds(parent, 1, 1)
            if fds:
                try:
                    mnt = delegated_bpffs(fds[0], **delegate)
                finally:
                    os.close(fds[0])  # on failure the child is killed below
                socket.send_fds(parent, [b"m"], [mnt])
                os.close(mnt)
            out, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert proc.returncode == 0, err
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


def have_tokens() -> None:
    have_bpf_token()
    result = run_child(cmds="map_create", maps="array", progs="socket_filter", attachs="any")
    if "unshare" in result:
        raise UnsupportedFeatureError("user namespaces for unprivileged users", "3.8", result["unshare"])


def test_an_unprivileged_user_namespace_uses_a_token() -> None:
    require(have_tokens)
    result = run_child(cmds=["map_create", "prog_load"], maps="array", progs="socket_filter", attachs="any")
    assert result["map_without_token"] == "errno 1"  # EPERM: nobody, no capabilities in the initial namespace
    assert result["map_with_token"] == 42
    assert result["hash_with_token"] == "errno 1"  # hash maps are not delegated
    assert result["prog_with_token"] == 7
    assert result["prog_without_token"] == "errno 1"


def test_commands_the_bpffs_does_not_delegate() -> None:
    require(have_tokens)
    result = run_child(cmds="map_create", maps="any", progs="any", attachs="any")
    assert result["map_with_token"] == 42 and result["hash_with_token"] is None
    assert result["prog_with_token"] == "errno 1"  # prog_load not delegated


def test_a_bpffs_that_delegates_nothing() -> None:
    require(have_tokens)
    result = run_child(cmds=None, maps=None, progs=None, attachs=None)
    assert result["map_without_token"] == "errno 1" and result["token"] == "errno 2"  # ENOENT: nothing delegated


def test_tokens_need_a_delegating_bpffs_in_a_user_namespace(bpffs: str) -> None:
    require(have_bpf_token)
    with pytest.raises(BPFSyscallError) as info:
        create_token(bpffs)  # the initial namespace's bpffs: no delegation, and the wrong namespace
    assert info.value.errno in (95, 2, 1) and info.value.hint
    with pytest.raises(EBPFError, match="is not a bpffs"):
        create_token("/proc")
    with pytest.raises(EBPFError, match="cannot open bpffs"):
        create_token("/no/such/dir")
    with pytest.raises(EBPFError, match="an fd or a path"):
        create_token(None)  # type: ignore[arg-type]
    with pytest.raises(EBPFError, match="delegate_maps must be"):
        delegated_bpffs(-1, maps=["a,b"])
