"""A third-party plugin, installed with pip, extends ``ebpf`` through the entry-point group "ebpf".

tests/plugins/ebpf-sockfilter-example is a separate distribution that knows only the public
plugin contract.  Once installed, a fresh interpreter finds it by its entry point, and
``Program.attach(sock)`` on a SOCKET_FILTER program goes through it: real UDP traffic on
loopback stops arriving while a drop-everything filter is attached, and arrives again
after ``detach()``.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
from pathlib import Path

import ebpf.core
import pytest

ROOT = Path(__file__).resolve().parents[1]
PLUGIN_SOURCE = ROOT / "tests" / "plugins" / "ebpf-sockfilter-example"
DISTRIBUTION = "ebpf-sockfilter-example"
CORE_SRC = Path(ebpf.core.__file__).resolve().parents[2]  # the directory holding ebpf/core


def _pip_install(target: Path) -> None:
    base = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--disable-pip-version-check",
            "--target", str(target)]
    # Offline first: hatchling is installed here, so no build environment must be fetched.
    attempts = [[*base, "--no-build-isolation", "--no-index", str(PLUGIN_SOURCE)], [*base, str(PLUGIN_SOURCE)]]
    errors = []
    for cmd in attempts:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        if done.returncode == 0:
            return
        errors.append(f"$ {' '.join(cmd)}\n{done.stdout}{done.stderr}")
    pytest.fail("cannot pip install the example plugin:\n" + "\n".join(errors))


@pytest.fixture(scope="module")
def plugin_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Environment for a fresh interpreter that has the example plugin installed.

    When the distribution is installed already (e.g. by ``nox -s integration``) it is used
    as is; otherwise pip installs it into a private directory put on the child's path, so
    the test leaves the running environment as it found it.
    """
    env = {k: v for k, v in os.environ.items() if k != "EBPF_DISABLE_PLUGIN_AUTOLOAD"}
    paths = [str(CORE_SRC)]
    try:
        importlib.metadata.distribution(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        target = tmp_path_factory.mktemp("site-packages")
        _pip_install(target)
        assert list(target.glob("ebpf_sockfilter_example-*.dist-info")), "pip installed no dist-info"
        paths.insert(0, str(target))
    env["PYTHONPATH"] = os.pathsep.join(paths + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    return env


def _run(env: dict[str, str], code: str) -> object:
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


TRAFFIC = r'''
import json, socket, struct
from ebpf.core import plugins
from ebpf.core.errors import AttachError
from ebpf.core.programs import load_program

def keep(n):
    # BPF_MOV64_IMM(R0, n); BPF_EXIT: keep the first n bytes of each packet (0 drops it)
    code = struct.pack("<BBhi", 0xB7, 0, 0, n) + struct.pack("<BBhi", 0x95, 0, 0, 0)
    return load_program(prog_type="socket_filter", insns=code, name=f"keep_{n}")

rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
rx.bind(("127.0.0.1", 0))
rx.settimeout(0.3)

def roundtrip(payload):
    tx.sendto(payload, rx.getsockname())
    try:
        return rx.recv(2048).decode()
    except socket.timeout:
        return None

out = {"backends": [[b.name, b.distribution] for b in plugins.attach_backends()],
       "plugins": [list(p) for p in plugins.registered_plugins()],
       "broken": [b.name for b in plugins.broken_plugins()]}
out["before"] = roundtrip(b"hello")
with keep(0) as drop:
    link = drop.attach(rx)
    out["link"] = link.description
    out["while_attached"] = [roundtrip(b"packet %d" % i) for i in range(3)]
    link.detach()
    out["after_detach"] = roundtrip(b"back again")
    with drop.attach(rx.fileno()):
        out["fd_attached"] = roundtrip(b"by fd")
    out["fd_detached"] = roundtrip(b"by fd, after")
    try:
        drop.attach("not-a-socket")
    except AttachError as exc:
        out["refused"] = str(exc)
# a UDP socket's filter sees the packet from the 8-byte UDP header on: keep 8 + 4 bytes
with keep(12) as trunc, trunc.attach(rx):
    out["truncated"] = roundtrip(b"truncate me")
out["untruncated"] = roundtrip(b"whole again")
rx.close(); tx.close()
print(json.dumps(out))
'''


@pytest.mark.privileged
def test_entry_point_plugin_filters_real_traffic(plugin_env: dict[str, str]) -> None:
    out = _run(plugin_env, TRAFFIC)
    assert isinstance(out, dict)
    assert ["sockfilter-example", DISTRIBUTION] in out["backends"]
    assert ["sockfilter-example", DISTRIBUTION] in out["plugins"]
    assert "sockfilter-example" not in out["broken"]
    assert out["link"].startswith("socket filter on fd")  # the description our backend gives its links
    assert out["before"] == "hello"
    assert out["while_attached"] == [None, None, None]  # dropped by the filter
    assert out["after_detach"] == "back again"
    assert out["fd_attached"] is None
    assert out["fd_detached"] == "by fd, after"
    assert "accepts target 'not-a-socket'" in out["refused"]
    assert out["truncated"] == "trun"  # the filter kept the UDP header and 4 bytes of payload
    assert out["untruncated"] == "whole again"


@pytest.mark.privileged
def test_ebpf_check_lists_the_plugin_and_its_feature(plugin_env: dict[str, str]) -> None:
    code = ("import io, json, contextlib\nfrom ebpf.core.cli import main\nbuf = io.StringIO()\n"
            "with contextlib.redirect_stdout(buf):\n    status = main(['check', '--json'])\n"
            "doc = json.loads(buf.getvalue())\n"
            "print(json.dumps({'status': status, 'plugins': doc['plugins'], 'features': doc['plugin_features']}))")
    out = _run(plugin_env, code)
    assert isinstance(out, dict)
    assert out["status"] == 0
    assert {"name": "sockfilter-example", "distribution": DISTRIBUTION} in out["plugins"]
    assert out["features"]["sockfilter-example.so_attach_bpf"] is None


def test_autoload_off_means_no_backend(plugin_env: dict[str, str]) -> None:
    env = dict(plugin_env, EBPF_DISABLE_PLUGIN_AUTOLOAD="1")
    env.pop("EBPF_PLUGINS", None)  # named modules load even without autoload (as PYTEST_PLUGINS does)
    code = ("import json\nfrom ebpf.core import plugins\n"
            "print(json.dumps([b.name for b in plugins.attach_backends()]))")
    assert _run(env, code) == []
