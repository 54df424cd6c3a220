"""The ``ebpf`` command, run in-process (``main([...])``) and as ``python -m ebpf.core.cli``.

Each test loads or creates real kernel objects and checks that the command shows them.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ebpf.core.cli import main
from ebpf.core.programs import Program, load_program

pytestmark = pytest.mark.privileged

CORE_SRC = Path(__file__).resolve().parents[1] / "src"


def _keep(n: int) -> bytes:
    """BPF_MOV64_IMM(R0, n); BPF_EXIT."""
    return struct.pack("<BBhi", 0xB7, 0, 0, n) + struct.pack("<BBhi", 0x95, 0, 0, 0)


@pytest.fixture
def prog() -> Iterator[Program]:
    with load_program(prog_type="socket_filter", insns=_keep(0), name="cli_test_prog") as p:
        yield p


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    status, out, err = run(capsys, *argv)
    assert status == 0, err
    return json.loads(out)  # one JSON document, nothing else on stdout


def _subprocess(*argv: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(CORE_SRC), *[p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]])
    return subprocess.run([sys.executable, "-m", "ebpf.core.cli", *argv], env=env, capture_output=True, text=True,
                          timeout=120)


# -- usage -------------------------------------------------------------------------


def test_no_command_prints_help_and_fails(capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = run(capsys)
    assert status == 2
    assert "prog" in err and "check" in err


def test_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "--help")
    assert status == 0
    for command in ("check", "prog", "map", "link", "btf", "top", "demo"):
        assert command in out


def test_usage_errors_return_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "prog")[0] == 2
    status, _, err = run(capsys, "prog", "show", "not-a-number")
    assert status == 2 and "invalid int value" in err


def test_console_script_points_at_main() -> None:
    import tomllib

    with open(CORE_SRC.parent / "pyproject.toml", "rb") as f:
        project = tomllib.load(f)["project"]
    assert project["scripts"]["ebpf"] == "ebpf.core.cli:main"


# -- prog --------------------------------------------------------------------------


def test_prog_list_json_shows_a_program_we_loaded(prog: Program, capsys: pytest.CaptureFixture[str]) -> None:
    info = prog.info()
    listing = run_json(capsys, "prog", "list", "--json")
    ours = [p for p in listing if p["id"] == info.id]
    assert len(ours) == 1
    assert ours[0]["name"] == "cli_test_prog"
    assert ours[0]["type"] == "socket_filter"
    assert ours[0]["tag"] == info.tag


def test_prog_list_table_is_aligned(prog: Program, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "prog", "list")
    assert status == 0
    header, *rows = out.splitlines()
    assert header.split()[:4] == ["ID", "TYPE", "NAME", "TAG"]
    row = next(r for r in rows if "cli_test_prog" in r)
    assert row.split()[:3] == [str(prog.info().id), "socket_filter", "cli_test_prog"]
    # the NAME column starts at the same offset in the header and every row
    name_at = header.index("NAME")
    assert all(r[name_at - 1] == " " for r in rows)
    assert row[name_at:].startswith("cli_test_prog")


def test_prog_show(prog: Program, capsys: pytest.CaptureFixture[str]) -> None:
    prog_id = prog.info().id
    status, out, _ = run(capsys, "prog", "show", str(prog_id))
    assert status == 0
    fields = dict(line.split(None, 1) for line in out.splitlines() if len(line.split(None, 1)) == 2)
    assert fields["id"] == str(prog_id) and fields["name"] == "cli_test_prog" and fields["type"] == "socket_filter"
    shown = run_json(capsys, "prog", "show", str(prog_id), "--json")
    assert shown["id"] == prog_id and shown["xlated_size"] == 16


def test_prog_dump_disassembles_what_the_kernel_holds(capsys: pytest.CaptureFixture[str]) -> None:
    with load_program(prog_type="socket_filter", insns=_keep(7), name="cli_dump") as p:
        prog_id = p.info().id
        status, out, _ = run(capsys, "prog", "dump", str(prog_id))
        assert status == 0
        assert [line.split("\t")[-1] for line in out.splitlines()] == ["r0 = 7", "exit"]
        doc = run_json(capsys, "prog", "dump", str(prog_id), "--json")
    assert doc == {"id": prog_id, "xlated": _keep(7).hex(), "text": ["r0 = 7", "exit"]}


def test_prog_show_unknown_id_is_a_clean_error(capsys: pytest.CaptureFixture[str]) -> None:
    for command in ("show", "dump"):
        status, out, err = run(capsys, "prog", command, str(2**31 - 1))
        assert status == 1 and out == ""
        assert err.startswith("ebpf: error: no prog with id 2147483647")


def test_prog_list_in_a_subprocess_sees_our_program(prog: Program) -> None:
    done = _subprocess("prog", "list", "--json")
    assert done.returncode == 0, done.stderr
    ids = {p["id"]: p["name"] for p in json.loads(done.stdout)}
    assert ids[prog.info().id] == "cli_test_prog"


# -- map ---------------------------------------------------------------------------


@pytest.fixture
def hash_map() -> Iterator[Any]:
    from ebpf.core.maps import create_map

    with create_map(map_type="hash", key_size=4, value_size=8, max_entries=16, name="cli_map") as m:
        m.update_bytes(struct.pack("<I", 1), struct.pack("<Q", 100))
        m.update_bytes(struct.pack("<I", 2), struct.pack("<Q", 200))
        yield m


def test_map_list_json_shows_a_map_we_created(hash_map: Any, capsys: pytest.CaptureFixture[str]) -> None:
    listing = run_json(capsys, "map", "list", "--json")
    ours = [m for m in listing if m["id"] == hash_map.info().id]
    assert len(ours) == 1
    assert ours[0]["name"] == "cli_map" and ours[0]["type"] == "hash"
    assert (ours[0]["key_size"], ours[0]["value_size"], ours[0]["max_entries"]) == (4, 8, 16)
    status, out, _ = run(capsys, "map", "list")
    assert status == 0 and any("cli_map" in line for line in out.splitlines()[1:])


def _entries_as_ints(doc: Any) -> dict[int, int]:
    """Keys and values of a ``map dump --json`` (hex bytes from a map without codecs, or ints)."""
    def num(v: Any, fmt: str) -> int:
        return int(struct.unpack(fmt, bytes.fromhex(v))[0]) if isinstance(v, str) else int(v)
    return {num(e["key"], "<I"): num(e["value"], "<Q") for e in doc["entries"]}


def test_map_dump_by_id_and_by_pin(hash_map: Any, pin_dir: str, capsys: pytest.CaptureFixture[str]) -> None:
    map_id = hash_map.info().id
    doc = run_json(capsys, "map", "dump", str(map_id), "--json")
    assert doc["map"]["id"] == map_id
    assert _entries_as_ints(doc) == {1: 100, 2: 200}
    path = os.path.join(pin_dir, "cli_map")
    hash_map.pin(path)
    doc = run_json(capsys, "map", "dump", path, "--json")
    assert doc["map"]["id"] == map_id and _entries_as_ints(doc) == {1: 100, 2: 200}
    status, out, _ = run(capsys, "map", "dump", path)
    assert status == 0 and out.strip()


def test_map_dump_of_missing_pin_is_a_clean_error(pin_dir: str, capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = run(capsys, "map", "dump", os.path.join(pin_dir, "missing"))
    assert status == 1 and err.startswith("ebpf: error:")


# -- link --------------------------------------------------------------------------


def test_link_list_shows_a_raw_tracepoint_link(capsys: pytest.CaptureFixture[str]) -> None:
    from ebpf.core.links import attach_raw_tracepoint

    with load_program(prog_type="raw_tracepoint", insns=_keep(0), name="cli_rawtp") as p, \
            attach_raw_tracepoint(p, "sched_switch") as link:
        link_id = link.info().id
        listing = run_json(capsys, "link", "list", "--json")
        ours = [li for li in listing if li["id"] == link_id]
        assert len(ours) == 1
        assert ours[0]["prog_id"] == p.info().id and ours[0]["type"] == "raw_tracepoint"
        status, out, _ = run(capsys, "link", "list")
        assert status == 0
        row = next(r for r in out.splitlines()[1:] if r.split()[0] == str(link_id))
        assert "raw_tracepoint" in row and "sched_switch" in row


# -- check -------------------------------------------------------------------------


def test_check_json_reports_the_system(capsys: pytest.CaptureFixture[str]) -> None:
    from ebpf.core.system import kernel_version

    report = run_json(capsys, "check", "--json")
    assert report["system"]["kernel_version"] == ".".join(map(str, kernel_version()))
    assert report["system"]["bpf_available"] is True
    assert report["system"]["btf_available"] == os.path.exists("/sys/kernel/btf/vmlinux")
    assert report["system"]["cpu_count"] >= 1
    assert report["map_types"]["hash"] is None and report["map_types"]["ringbuf"] is None
    assert report["prog_types"]["xdp"] is None and report["prog_types"]["socket_filter"] is None
    assert report["link_types"]["raw_tracepoint"] is None
    assert isinstance(report["plugins"], list) and isinstance(report["broken_plugins"], list)


def _unprivileged_bpf_disabled() -> bool:
    with open("/proc/sys/kernel/unprivileged_bpf_disabled") as f:
        return f.read().strip() != "0"


def _drop_all_capabilities() -> None:
    """In the child before exec: empty the bounding set, so root execs with no capability at all."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    with open("/proc/sys/kernel/cap_last_cap") as f:
        last = int(f.read())
    for cap in range(last + 1):
        libc.prctl(24, cap, 0, 0, 0)  # PR_CAPBSET_DROP


def test_check_without_privileges_says_could_not_tell_instead_of_supported() -> None:
    proc = subprocess.run([sys.executable, "-m", "ebpf.core.cli", "check", "--json"], capture_output=True,
                          text=True, timeout=180, preexec_fn=_drop_all_capabilities)
    report = json.loads(proc.stdout)
    probes = {f"{kind}.{name}": why for kind in ("map_types", "prog_types", "link_types")
              for name, why in report[kind].items()}
    if _unprivileged_bpf_disabled():  # bpf() refuses this user: no type can be shown as supported
        assert [name for name, why in probes.items() if why is None] == []
        assert report["map_types"]["hash"].startswith("could not tell (not root)")
        assert report["link_types"]["struct_ops"].startswith("could not tell (not root)")
    # whatever the sysctl: a probe that did not run never reads as missing or supported
    assert all(why is None or "EPERM" not in why or why.startswith("could not tell") for why in probes.values())


def test_check_text(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "check")
    assert status == 0
    for section in ("System", "Map types:", "Program types:", "Link types:", "Plugins:", "Broken plugins:"):
        assert section in out
    assert "kernel" in out and "hash" in out


# -- top ---------------------------------------------------------------------------


class _Runner(threading.Thread):
    """Runs a program through BPF_PROG_TEST_RUN until stopped (so its stats move)."""

    def __init__(self, prog: Program) -> None:
        super().__init__(daemon=True)
        self.prog = prog
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            self.prog.test_run(bytes(64), repeat=200)

    def __enter__(self) -> _Runner:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.halt.set()
        self.join()


def test_top_json_shows_run_rates(prog: Program, capsys: pytest.CaptureFixture[str]) -> None:
    prog_id = prog.info().id
    with _Runner(prog):
        doc = run_json(capsys, "top", "--count", "2", "--interval", "0.3", "--json")
    assert doc["interval"] == 0.3 and len(doc["samples"]) == 2
    for sample in doc["samples"]:
        ours = next(p for p in sample["programs"] if p["id"] == prog_id)
        assert ours["name"] == "cli_test_prog"
        assert ours["runs_per_sec"] > 0 and ours["run_cnt"] > 0 and ours["avg_ns"] > 0


def test_top_plain_output_with_duration(prog: Program, capsys: pytest.CaptureFixture[str]) -> None:
    with _Runner(prog):
        status, out, _ = run(capsys, "top", "--duration", "0.4", "--interval", "0.2")
    assert status == 0
    assert out.count("ebpf top") == 2 and "\x1b[" not in out  # not a tty: no screen clearing
    assert any("cli_test_prog" in line for line in out.splitlines())


def test_top_refuses_a_bad_interval(capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = run(capsys, "top", "--interval", "0", "--count", "1")
    assert status == 1 and "--interval" in err


def test_top_rates_are_computed_from_deltas() -> None:
    from ebpf.core._cli._top import rates
    from ebpf.core.programs import ProgramInfo

    before = {7: ProgramInfo(id=7, type=6, name="a", tag="00", run_cnt=100, run_time_ns=1000)}
    after = {7: ProgramInfo(id=7, type=6, name="a", tag="00", run_cnt=300, run_time_ns=5000),
             8: ProgramInfo(id=8, type=6, name="new", tag="00", run_cnt=5, run_time_ns=50)}
    r = {x.id: x for x in rates(before, after, 2.0)}
    assert r[7].runs_per_sec == 100 and r[7].avg_ns == 20 and r[7].cpu_percent == pytest.approx(4000 / 2e9 * 100)
    assert r[8].runs_per_sec == 0  # appeared during the interval: no rate yet


# -- btf ---------------------------------------------------------------------------


def test_btf_dump_raw_lists_kernel_types(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "btf", "dump")
    assert status == 0
    assert "STRUCT 'task_struct'" in out
    assert out.splitlines()[0].startswith("[1] ")


def test_btf_dump_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from ebpf.core import btf

    copy = tmp_path / "vmlinux.btf"
    copy.write_bytes(Path("/sys/kernel/btf/vmlinux").read_bytes())
    status, out, _ = run(capsys, "btf", "dump", "--format", "raw", str(copy))
    assert status == 0
    assert len(out.splitlines()) == btf.load_vmlinux().count - 1


def test_btf_dump_of_garbage_is_a_clean_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.btf"
    bad.write_bytes(b"\x00" * 7)
    status, _, err = run(capsys, "btf", "dump", str(bad))
    assert status == 1 and err.startswith("ebpf: error:")


def test_btf_dump_c_header(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "btf", "dump", "--format", "c")
    assert status == 0
    assert "struct task_struct {" in out


# -- demo --------------------------------------------------------------------------


def test_demo_runs_and_counts(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "demo")
    assert status == 0
    assert "XDP_PASS" in out and "count" in out


def test_demo_in_a_subprocess() -> None:
    done = _subprocess("demo")
    assert done.returncode == 0, done.stderr
    assert "XDP_PASS" in done.stdout
