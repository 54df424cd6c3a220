"""kprobe/kprobe.multi paths this kernel cannot run (no CONFIG_KPROBES), observed through a fake at the
syscall boundary; the ELF reader on real and malformed files."""

from __future__ import annotations

import ctypes
import os
import random
from typing import Any

import pytest
from ebpf.core import asm
from ebpf.core.errors import EBPFError, ELFError
from ebpf.core.lowlevel import LinkCreateKprobeMulti
from ebpf.core.lowlevel import perf as _perf
from ebpf.core.programs import load_program
from ebpf.events.tracing import ElfFile, _probes
from ebpf.events.tracing._links import TracefsProbeLink

R0 = asm.R0


class FakeKernel:
    """Stands in for perf_event_open and the bpf attach: records what would reach the kernel."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
        self.opened: list[dict[str, Any]] = []
        self.tracefs = tmp_path
        (tmp_path / "kprobe_events").write_text("")
        monkeypatch.setattr(_probes, "have_kprobes", lambda: None)
        monkeypatch.setattr(_perf, "pmu_type", lambda name: 6 if name == "kprobe" else 7)
        monkeypatch.setattr(_perf, "tracepoint_id", lambda group, event: 1234)
        monkeypatch.setattr(_perf, "perf_event_open", self.perf_event_open)
        monkeypatch.setattr(_probes, "attach_perf_event", self.attach)
        monkeypatch.setattr("ebpf.core.system.ensure_tracefs", lambda: str(tmp_path))
        self.links: list[Any] = []

    def perf_event_open(self, attr: Any, pid: int = -1, cpu: int = 0, **_: Any) -> int:
        name = ctypes.string_at(attr.config1).decode() if attr.config1 and attr.type == 6 else None
        self.opened.append(dict(type=attr.type, config=attr.config, name=name, config2=attr.config2, pid=pid, cpu=cpu))
        return os.open("/dev/null", os.O_RDONLY)

    def attach(self, program: Any, fd: int, cookie: int = 0, description: str = "") -> Any:
        from ebpf.core.links import CallbackLink

        link = CallbackLink(lambda: os.close(fd), program, description)
        self.links.append((fd, cookie))
        return link

    def events(self) -> str:
        return (self.tracefs / "kprobe_events").read_text()


@pytest.fixture
def kprog() -> Any:
    with load_program(prog_type="kprobe", insns=[asm.mov64(R0, 0), asm.exit_()]) as p:
        yield p


def test_kprobe_through_pmu(monkeypatch: pytest.MonkeyPatch, tmp_path: Any, kprog: Any) -> None:
    fake = FakeKernel(monkeypatch, tmp_path)
    monkeypatch.setattr(os.path, "exists", lambda p: True)
    with _probes.attach_kprobe(kprog, "do_sys_openat2+0x10", cookie=7) as link:
        assert "kprobe do_sys_openat2+0x10" in link.description
    with _probes.attach_kretprobe(kprog, "vfs_read"):
        pass
    first, second = fake.opened
    assert first == dict(type=6, config=0, name="do_sys_openat2", config2=0x10, pid=-1, cpu=0)
    assert second["config"] == _probes._retprobe_bit("kprobe") and second["name"] == "vfs_read"
    assert fake.links[0][1] == 7


def test_kprobe_tracefs_fallback_with_maxactive(monkeypatch: pytest.MonkeyPatch, tmp_path: Any,
                                                kprog: Any) -> None:
    fake = FakeKernel(monkeypatch, tmp_path)
    link = _probes.attach_kprobe(kprog, "vfs_write", 8, retprobe=True, maxactive=16)
    assert isinstance(link, TracefsProbeLink)
    group_event = link.event
    assert fake.events() == f"r16:{group_event} vfs_write+8\n"
    assert fake.opened[0]["type"] == _perf.PERF_TYPE_TRACEPOINT and fake.opened[0]["config"] == 1234
    link.close()
    assert fake.events().endswith(f"-:{group_event}\n") and link.closed
    with _probes.attach_kprobe(kprog, "vfs_read", legacy=True):
        assert "p:ebpf/k_" in fake.events()


def test_kprobe_multi_link_attr(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    FakeKernel(monkeypatch, tmp_path)
    seen: dict[str, Any] = {}

    def fake_create_link(program: Any, target_fd: int, attach_type: Any, flags: int = 0, *, extra: Any = (),
                         description: str = "") -> Any:
        assert isinstance(extra, LinkCreateKprobeMulti)  # the typed union variant, not hand-packed words
        n = extra.cnt
        ptrs = (ctypes.c_uint64 * n).from_address(extra.syms)
        seen.update(flags=extra.flags, names=[ctypes.string_at(p).decode() for p in ptrs],
                    cookies=list((ctypes.c_uint64 * n).from_address(extra.cookies)), addrs=extra.addrs,
                    type=attach_type)
        return "link"

    monkeypatch.setattr(_probes, "create_link", fake_create_link)
    with load_program(prog_type="kprobe", expected_attach_type="trace_kprobe_multi",
                      insns=[asm.mov64(R0, 0), asm.exit_()]) as prog:
        assert _probes.attach_kprobe_multi(prog, ["vfs_read", "vfs_write"], cookies=[1, 2], retprobe=True) == "link"
    assert seen["names"] == ["vfs_read", "vfs_write"] and seen["cookies"] == [1, 2]
    assert seen["flags"] == _probes.BPF_F_KPROBE_MULTI_RETURN and seen["addrs"] == 0
    assert seen["type"].lower_name == "trace_kprobe_multi"


def test_kprobe_bad_input_before_any_syscall(kprog: Any) -> None:
    with load_program(prog_type="tracepoint", insns=[asm.mov64(R0, 0), asm.exit_()]) as tp, \
            pytest.raises(EBPFError, match="needs a kprobe"):
        _probes.attach_kprobe(tp, "vfs_read")
    with pytest.raises(EBPFError, match="bad symbol"):
        _probes.attach_kprobe(kprog, "vfs read")
    with pytest.raises(EBPFError, match="maxactive"):
        _probes.attach_kprobe(kprog, "vfs_read", maxactive=-1)
    with pytest.raises(EBPFError, match="trace_kprobe_multi"):
        _probes.attach_kprobe_multi(kprog, ["vfs_read"])


def test_elf_symbols_and_shared_library_offsets() -> None:
    libc = _probes.resolve_binary("libc.so.6")
    elf = ElfFile(libc)
    sym = elf.find_symbol("strverscmp")
    off = elf.vaddr_to_offset(sym.value)
    seg = next(s for s in elf.segments if s.type == 1 and s.vaddr <= sym.value < s.vaddr + s.memsz)
    assert off == sym.value - seg.vaddr + seg.offset
    assert _probes.resolve_uprobe_offset("libc.so.6", "strverscmp+4") == (libc, off + 4)
    with pytest.raises(ELFError):
        elf.find_symbol("no_such_symbol_at_all")


def test_malformed_elf_raises_elf_error_only(tmp_path: Any) -> None:
    with open("/usr/bin/python3.11", "rb") as f:
        data = f.read(1 << 16)
    rng = random.Random(1234)
    path = tmp_path / "bad.elf"
    cases = [data[:n] for n in (0, 3, 16, 40, 63, 64, 200, 4096)]
    for _ in range(150):
        b = bytearray(data[: rng.choice((64, 512, 4096, len(data)))])
        for _ in range(rng.randint(1, 8)):
            b[rng.randrange(len(b))] = rng.randrange(256)
        cases.append(bytes(b))
    for blob in cases:
        path.write_bytes(blob)
        try:
            elf = ElfFile(path)
            elf.symbols()
            elf.usdt_notes()
        except ELFError:
            pass
