"""Shared fixtures for the ebpf-elf tests: fixture objects and small attach helpers."""

from __future__ import annotations

import mmap
import os
import struct
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture(scope="session")
def fixtures() -> Path:
    """The directory of the C fixtures and their committed objects."""
    return FIXTURES


@pytest.fixture(params=["zig", "clang"])
def obj(fixtures: Path, request: pytest.FixtureRequest) -> Callable[[str], str]:
    """``obj("xdp_counter")`` -> path of the committed object; every test using it runs once with
    the objects built by ziglang (``x.o``) and once with those built by Debian's clang (``x.clang.o``)."""
    suffix = ".o" if request.param == "zig" else ".clang.o"

    def path(name: str) -> str:
        p = fixtures / f"{name}{suffix}"
        assert p.exists(), f"missing fixture {p}: run packages/ebpf-elf/tests/fixtures/build.py"
        return str(p)

    return path


class _Attached:
    """A minimal attachment: closes its fd (perf event or raw tracepoint link) on close()."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def _attach_locally(program: Any) -> _Attached:
    """Attach tracepoint / raw_tp / tp_btf programs by their section target with the syscall layer only."""
    from ebpf.core.lowlevel import perf, raw_tracepoint_open
    from ebpf.core.types import ProgType

    target = program.attach_target
    if program.prog_type == ProgType.RAW_TRACEPOINT:
        return _Attached(raw_tracepoint_open(target, program.fd))
    if program.prog_type == ProgType.TRACING and program.spec.attach_to:  # tp_btf: the target is in the program
        return _Attached(raw_tracepoint_open(None, program.fd))
    if program.prog_type == ProgType.TRACEPOINT:
        category, name = target.split("/", 1)
        fd = perf.open_tracepoint(category, name, pid=os.getpid(), cpu=-1)
        try:
            perf.set_bpf(fd, program.fd)
            perf.enable(fd)
        except BaseException:
            os.close(fd)
            raise
        return _Attached(fd)
    raise AssertionError(f"no local attach for {program.prog_type}")


@pytest.fixture
def attach() -> Iterator[Callable[[Any], Any]]:
    """``attach(program)``: ``program.attach()`` through its plugin backend when one is
    installed (ebpf-events), else a local perf-event / raw-tracepoint attachment; all
    attachments are closed at teardown."""
    from ebpf.core.errors import AttachError

    made: list[Any] = []

    def do(program: Any) -> Any:
        try:
            link = program.attach()
        except AttachError as exc:
            if "no attach backend" not in str(exc):
                raise
            link = _attach_locally(program)
        made.append(link)
        return link

    yield do
    for link in reversed(made):
        link.close()


# -- a minimal BPF ring buffer reader (ebpf-events has the real one) ----------------------

BUSY = 1 << 31
DISCARD = 1 << 30
HDR = 8


def _read_ringbuf(rb_map: Any) -> list[bytes]:
    """Every committed record now in ``rb_map`` (consumes them)."""
    page = mmap.PAGESIZE
    size = rb_map.max_entries
    cons = mmap.mmap(rb_map.fd, page, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE, offset=0)
    prod = mmap.mmap(rb_map.fd, page + 2 * size, mmap.MAP_SHARED, mmap.PROT_READ, offset=page)
    try:
        out = []
        consumer = struct.unpack_from("<Q", cons, 0)[0]
        producer = struct.unpack_from("<Q", prod, 0)[0]
        while consumer < producer:
            off = page + (consumer & (size - 1))
            length = struct.unpack_from("<I", prod, off)[0]
            if length & BUSY:
                break
            n = length & ~(BUSY | DISCARD)
            if not length & DISCARD:
                out.append(bytes(prod[off + HDR : off + HDR + n]))
            consumer += (n + HDR + 7) & ~7
        struct.pack_into("<Q", cons, 0, consumer)
        return out
    finally:
        cons.close()
        prod.close()


@pytest.fixture
def read_ringbuf() -> Callable[[Any], list[bytes]]:
    """``read_ringbuf(map)``: every committed record now in a ring buffer map (consumed)."""
    return _read_ringbuf
