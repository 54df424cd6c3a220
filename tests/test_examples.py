"""Every script in examples/ runs (as root, on this kernel) with a short --duration and prints
what it promises; network examples leave no namespace behind, the cgroup example no cgroup."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.privileged
ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
PATHS = [*(str(p) for p in (ROOT / "packages").glob("ebpf-*/src")),
         str(ROOT / "tests" / "plugins" / "ebpf-sockfilter-example" / "src")]

#: script -> (arguments, regular expressions the output must match)
CASES: dict[str, tuple[list[str], list[str]]] = {
    "tracepoint_counter.py": (["--duration", "1"], [r"openat calls so far: [1-9]\d*"]),
    "execve_tracer.py": (["--duration", "1"], [r"PID\s+COMM\s+FILENAME", r"\d+\s+python[\d.]*\s+\S*/true\b"]),
    "kprobe.py": (["--duration", "1"], [r"kprobes are not available here: .*CONFIG_KPROBES|was called \d+ times"]),
    "uprobe.py": (["--duration", "0.5"], [r"called getpid\(\) (\d+) times; the uprobe counted \1\b"]),
    "lsm_deny.py": (["--duration", "0.1"], [r"BPF LSM is not available here: .*lsm|mprotect while attached: denied"]),
    "compile_c.py": (["--duration", "0.1"], [r"compiled count_exec\.o", r"counted ([3-9]|\d\d+) process launches"]),
    "perf_events.py": (["--duration", "0.5"], [r"exec: pid \d+ comm true", r"lost samples: 0"]),
    "assembler.py": ([], [r"7 instructions", r"if r2 <= 100 goto \+1", r"101-byte packet -> XDP_DROP",
                          r"100-byte packet -> XDP_PASS"]),
    "xdp_counter.py": (["--duration", "0.5"], [r"sent (\d+) UDP datagrams", r"XDP saw\s+\d+ udp packets"]),
    "tc_drop.py": (["--duration", "0.2"], [r"before: 5/5", r"filter attached: 0/5 to port 9999 arrived, 5/5",
                                          r"after: 5/5"]),
    "cgroup_connect_block.py": ([], [r"child in the cgroup: connect\(\) failed: Operation not permitted",
                                     r"outside the cgroup\): connected"]),
    "af_xdp_echo.py": (["--duration", "0.5"], [r"AF_XDP echo \(copy mode\): [1-9]\d* datagrams answered",
                                              r"sent to port 7008, received on 7009: 5/5"]),
    "sockfilter_plugin.py": ([], [r"without the filter: 5/5", r"with the filter .*: 0/5", r"after detach: 5/5",
                                  r"through prog.attach\(sock\): 0/5"]),
}

#: examples/lang/: the same tools with the kernel side written in Python (ebpf-lang)
LANG_CASES: dict[str, tuple[list[str], list[str]]] = {
    "execve_tracer.py": (["--duration", "1"], [r"PID\s+PPID\s+COMM\s+FILENAME", r"\d+\s+\d+\s+python[\d.]*\s+\S*/true\b"]),
    "xdp_counter.py": (["--duration", "0.5"], [r"udp: [1-9]\d*"]),
    "cgroup_connect_block.py": ([], [r"\d+ refused 1\n\d+ connected", r"refused connects to \d+: 1"]),
    "syscount.py": (["--duration", "0.5"], [r"SYSCALL\s+COUNT", r"\s+\d+\s+[1-9]\d*"]),
    "latency_hist.py": (["--duration", "0.5", "--pid", "0"], [r"nsecs", r"-> \d+\s+: [1-9]\d*\s+\|\*+"]),
}


def test_every_example_is_tested() -> None:
    scripts = {p.name for p in EXAMPLES.glob("*.py") if not p.name.startswith("_")}
    assert scripts == set(CASES)
    assert {p.name for p in (EXAMPLES / "lang").glob("*.py")} == set(LANG_CASES)


def _leftovers(pid: int) -> list[str]:
    left = [n for n in os.listdir("/run/netns") if n.endswith(f"-{pid}")] if os.path.isdir("/run/netns") else []
    from ebpf.net.cgroup import cgroup_root

    left += [c for c in os.listdir(cgroup_root()) if c == f"ebpf-example-{pid}"]
    return left


@pytest.mark.parametrize("script", [*sorted(CASES), *[f"lang/{name}" for name in sorted(LANG_CASES)]])
def test_example_runs(script: str) -> None:
    args, patterns = LANG_CASES[script[5:]] if script.startswith("lang/") else CASES[script]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([*PATHS, *[p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]])
    proc = subprocess.Popen([sys.executable, str(EXAMPLES / script), *args], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, out + err
    for pattern in patterns:
        assert re.search(pattern, out), f"{script}: no {pattern!r} in:\n{out}\n{err}"
    assert _leftovers(proc.pid) == []
