"""Permission errors seen by a process without root name what it lacks: a child process runs as uid 65534 with
no capabilities, or with CAP_BPF only (``setpriv``, util-linux), and prints the errors it gets."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.privileged
SRC = [str(Path(__file__).resolve().parents[2] / p / "src") for p in ("ebpf-core", "ebpf-events")]
CHILD = """
import json, sys
sys.path[:0] = %r
out = {}
def attempt(name, fn):
    try:
        out[name] = "ok: %%r" %% (fn(),)
    except Exception as exc:
        out[name] = "%%s: %%s" %% (type(exc).__name__, exc)
from ebpf.core import programs
from ebpf.core._sys import perf
from ebpf.core.system import ensure_tracefs
from ebpf.events.tracing import list_tracepoints
attempt("programs", lambda: list(programs.programs()))
attempt("tracepoint_id", lambda: perf.tracepoint_id("sched", "sched_process_exec"))
attempt("list_tracepoints", lambda: list_tracepoints("sched"))
attempt("ensure_tracefs", ensure_tracefs)
print(json.dumps(out))
"""


def run_as_nobody(*caps: str) -> dict[str, str]:
    """Run CHILD as uid/gid 65534 with only ``caps`` (e.g. "bpf"); its results by name."""
    setpriv = shutil.which("setpriv")
    assert setpriv, "setpriv (util-linux) is needed to drop privileges"
    keep = ",".join(["-all", *(f"+{c}" for c in caps)])
    cmd = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", f"--inh-caps={keep}",
           f"--ambient-caps={keep}", sys.executable, "-c", CHILD % (SRC,)]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def test_without_capabilities() -> None:
    out = run_as_nobody()
    assert "BPF_PROG_GET_NEXT_ID" in out["programs"] and "lacks CAP_SYS_ADMIN" in out["programs"]
    for name in ("tracepoint_id", "list_tracepoints", "ensure_tracefs"):
        # never "no such tracepoint" or an empty list: the permission, and what would grant it
        assert "permission denied on tracefs" in out[name], out[name]
        assert "CAP_DAC_OVERRIDE" in out[name] and "lacks CAP_DAC_OVERRIDE" in out[name], out[name]


def test_with_cap_bpf_but_not_cap_sys_admin() -> None:
    out = run_as_nobody("bpf")
    assert "CAP_BPF is not enough" in out["programs"], out["programs"]
    assert "has CAP_BPF but lacks CAP_SYS_ADMIN" in out["programs"], out["programs"]


def test_tracefs_not_mounted_names_the_mount_and_its_capability() -> None:
    # in a private mount namespace (the host's mounts are untouched) with tracefs unmounted
    unshare = shutil.which("unshare")
    assert unshare, "unshare (util-linux) is needed for a private mount namespace"
    inner = ("umount -l /sys/kernel/tracing 2>/dev/null; umount -l /sys/kernel/debug 2>/dev/null; "
             'exec setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=-all --ambient-caps=-all "$@"')
    done = subprocess.run([unshare, "--mount", "--propagation", "private", "sh", "-c", inner, "sh", sys.executable,
                           "-c", CHILD % (SRC,)], capture_output=True, text=True, timeout=120,
                          env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.splitlines()[-1])
    for name in ("tracepoint_id", "list_tracepoints", "ensure_tracefs"):
        assert "tracefs is not mounted" in out[name] and "CAP_SYS_ADMIN" in out[name], out[name]
