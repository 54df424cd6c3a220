"""Cross-package: USDT programs written in C against ``usdt.bpf.h`` (shipped by ebpf-elf), loaded from
their object by ebpf-elf and attached by ebpf-events, read the probe's arguments exactly.

The target is ``packages/ebpf-events/tests/usdt_target.c``: probe ``test:args4`` at two sites, its
arguments a constant, registers of several widths and a stack slot.  ebpf-events finds the object's
own ``__bpf_usdt_specs`` map through the program (the maps it uses), fills one spec per site and
gives each site's uprobe the spec id as its BPF cookie, as libbpf does.
"""

from __future__ import annotations

import os
import struct
import subprocess
from pathlib import Path

import ebpf.core as bpf
import pytest
from ebpf.core.errors import EBPFError
from ebpf.core.features import have_helper
from ebpf.core.maps import create_array_map
from ebpf.core.testing import build_host_program, require
from ebpf.events import tracing
from ebpf.events.ringbuf import RingBuffer
from ebpf.events.tracing import UsdtLink, UsdtSpecs

ROOT = Path(__file__).parents[1]
FIXTURES = ROOT / "packages" / "ebpf-elf" / "tests" / "fixtures"
TARGET_C = ROOT / "packages" / "ebpf-events" / "tests" / "usdt_target.c"
HIT = struct.Struct("<4qqi4Bii")  # struct hit of usdt_args.c: args[4], cookie, arg_cnt, sizes[4], program, pad
OBJECTS = ["usdt_args.o", "usdt_args.clang.o"]


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> str:
    """usdt_target.c built with the system's cc, or the ziglang toolchain (ebpf-elf[compile])."""
    out = str(tmp_path_factory.mktemp("usdt") / "usdt_target")  # the name the section target uses
    return build_host_program(TARGET_C, out)


def expected_hits(n: int, cookie: int, program: int) -> list[tuple[int, ...]]:
    """What the target passes to test:args4 when run with ``n``: two sites per round."""
    out: list[tuple[int, ...]] = []
    for i in range(n):
        big, neg, small = -1000 * (i + 1) - 7, -3 * (i + 1), 60000 + i
        for args in ((5, big, neg, small), (5, 2 * big, 2 * neg, small + 1)):
            out.append((*args, cookie, 4, 4, 8, 4, 2, program, 0))  # sizes: "4@ -8@ -4@ 2@"
    return out


def run_target(target: str, n: int) -> str:
    return subprocess.run([target, str(n)], capture_output=True, text=True, check=True, timeout=60).stdout.strip()


@pytest.mark.privileged
@pytest.mark.parametrize("obj", OBJECTS)
def test_c_program_reads_usdt_arguments(target: str, obj: str) -> None:
    require(have_helper, "kprobe", "get_attach_cookie")
    n = 3
    with bpf.load(FIXTURES / obj) as coll:
        prog = coll.programs["on_args"]
        assert prog.section == "usdt" and prog.attach_target is None
        with prog.attach(f"usdt:{target}:test:args4", cookie=0xC0FFEE) as link:
            assert isinstance(link, UsdtLink) and len(link.spec_ids) == 2
            assert link.specs.map is coll.maps["__bpf_usdt_specs"]  # the object's own spec map
            assert len(link.specs.in_use()) == 2
            # the kernel raised the probe's semaphore while attached: every guarded site fired
            assert run_target(target, n) == str(n)
        assert link.specs.in_use() == {}  # slots given back with the link
        assert not coll.maps["__bpf_usdt_specs"].closed  # borrowed, not closed with the link
        with RingBuffer(coll.maps["hits"]) as reader:
            got = [HIT.unpack(r) for r in reader.read_batch()]
    assert got == expected_hits(n, 0xC0FFEE, 1)


@pytest.mark.privileged
@pytest.mark.parametrize("obj", OBJECTS)
def test_section_target_and_one_spec_map_for_two_programs(target: str, obj: str,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    require(have_helper, "kprobe", "get_attach_cookie")
    monkeypatch.setenv("PATH", f"{Path(target).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    n = 2
    with bpf.load(FIXTURES / obj) as coll:
        by_arg, by_section = coll.programs["on_args"], coll.programs["on_args_by_section"]
        assert by_section.attach_target == "usdt:usdt_target:test:args4"
        with tracing.attach_usdt(by_arg, target, "test", "args4", cookie=1) as a, \
                by_section.attach(cookie=2) as b:  # the section's target; "usdt_target" found on $PATH
            assert isinstance(a, UsdtLink) and isinstance(b, UsdtLink)
            # one bookkeeping for the shared map: different cookies, so different slots
            assert a.specs is b.specs is UsdtSpecs.from_map(coll.maps["__bpf_usdt_specs"])
            assert sorted(a.spec_ids + b.spec_ids) == [0, 1, 2, 3]
            assert run_target(target, n) == str(n)
        with RingBuffer(coll.maps["hits"]) as reader:
            got = [HIT.unpack(r) for r in reader.read_batch()]
    assert [h for h in got if h[-2] == 1] == expected_hits(n, 1, 1)
    assert [h for h in got if h[-2] == 2] == expected_hits(n, 2, 2)


@pytest.mark.privileged
def test_from_map_checks_the_layout() -> None:
    with bpf.load(FIXTURES / "usdt_args.o") as coll:
        with pytest.raises(EBPFError, match="not a USDT spec map"):
            UsdtSpecs.from_map(coll.maps["hits"])
        with pytest.raises(EBPFError, match="not a USDT spec map"):
            UsdtSpecs.from_map(coll.maps["__bpf_usdt_ip_to_spec_id"])
        specs = UsdtSpecs.from_map(coll.maps["__bpf_usdt_specs"])
        assert specs.map.max_entries == 256  # BPF_USDT_MAX_SPEC_CNT
        specs.close()
        assert specs.closed and not coll.maps["__bpf_usdt_specs"].closed
    with pytest.raises(EBPFError, match="takes a Map"):
        UsdtSpecs.from_map(object())
    with create_array_map(4, value_size=8) as small, pytest.raises(EBPFError, match="208-byte values"):
        UsdtSpecs.from_map(small)
