"""USDT (SystemTap SDT) probes: listing ``.note.stapsdt`` and attaching a uprobe at a probe's address."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ebpf.core.errors import AttachError, EBPFError, ELFError
from ebpf.core.links import Link
from ebpf.events.tracing._elf import ElfFile
from ebpf.events.tracing._links import MultiLink, check_program
from ebpf.events.tracing._probes import attach_uprobe, resolve_binary

if TYPE_CHECKING:  # pragma: no cover
    from ebpf.core.programs import Program

__all__ = ["UsdtProbe", "list_usdt", "attach_usdt"]


@dataclass(frozen=True)
class UsdtProbe:
    """One USDT probe site.

    :ivar provider: e.g. ``"python"``.
    :ivar name: e.g. ``"function__entry"``.
    :ivar path: the ELF file holding it.
    :ivar address: the probe's virtual address (adjusted for ``.stapsdt.base`` prelinking).
    :ivar offset: the file offset of ``address`` (what the uprobe needs).
    :ivar semaphore: the semaphore's virtual address (0: none).
    :ivar semaphore_offset: its file offset (the uprobe's ``ref_ctr_offset``), or 0.
    :ivar args: the argument spec string (``"-4@%eax 8@%rdx"``).
    """

    provider: str
    name: str
    path: str
    address: int
    offset: int
    semaphore: int
    semaphore_offset: int
    args: str


def _probes_of(path: str) -> list[UsdtProbe]:
    elf = ElfFile(path)
    notes = elf.usdt_notes()
    if not notes:
        return []
    base = elf.section(".stapsdt.base")
    out = []
    for n in notes:
        addr = n.pc
        if base is not None and n.base:  # prelink may have moved the file: the note says where .stapsdt.base was
            addr = n.pc + base.addr - n.base
        sem_off = elf.vaddr_to_offset(n.semaphore) if n.semaphore else 0
        out.append(UsdtProbe(n.provider, n.name, path, addr, elf.vaddr_to_offset(addr), n.semaphore, sem_off, n.args))
    return out


def _mapped_files(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/maps") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        raise EBPFError(f"no process {pid}") from None
    except OSError as exc:
        raise EBPFError(f"cannot read /proc/{pid}/maps: {exc.strerror or exc}") from None
    seen: list[str] = []
    for line in lines:
        parts = line.split(None, 5)
        if len(parts) == 6 and parts[5].startswith("/") and parts[5] not in seen and os.path.isfile(parts[5]):
            seen.append(parts[5])
    return seen


def list_usdt(binary_or_pid: str | os.PathLike[str] | int) -> list[UsdtProbe]:
    """The USDT probes of a binary/library, or of every ELF file mapped by process ``pid``.

    :raises AttachError: missing binary.  :raises ELFError: a malformed binary given by path.
    :raises EBPFError: no such process.
    """
    if isinstance(binary_or_pid, int) and not isinstance(binary_or_pid, bool):
        out: list[UsdtProbe] = []
        for path in _mapped_files(binary_or_pid):
            try:
                out.extend(_probes_of(path))
            except ELFError:
                continue  # a mapped file that is not ELF (locale archives, caches)
        return out
    if isinstance(binary_or_pid, bool):
        raise EBPFError(f"list_usdt takes a path or a pid, not {binary_or_pid!r}")
    return _probes_of(resolve_binary(binary_or_pid))


def attach_usdt(program: Program, binary: str | os.PathLike[str], provider: str, name: str, pid: int = -1, *,
                cookie: int = 0) -> Link:
    """Attach a kprobe-type program at USDT probe ``provider:name`` of ``binary`` (a uprobe at each site).

    When the probe has a semaphore, its file offset is passed as the uprobe's
    ``ref_ctr_offset``: the kernel itself increments the semaphore in every process
    (or only ``pid``) while the probe is attached, so guarded probes fire (Linux >= 4.20).
    The program sees the probe's registers (``struct pt_regs``); decoding ``args`` into
    values is up to it (see :attr:`UsdtProbe.args`).

    :returns: the site's :class:`~ebpf.core.links.PerfEventLink`, or a :class:`MultiLink`
        when the probe has several sites.
    :raises EBPFError: wrong program type.  :raises AttachError: no such binary or probe.
    """
    check_program(program, ("kprobe",), "attach_usdt")
    path = resolve_binary(binary)
    sites = [p for p in _probes_of(path) if p.provider == provider and p.name == name]
    if not sites:
        raise AttachError(f"no USDT probe {provider}:{name} in {path} (see list_usdt())")
    links: list[Link] = []
    try:
        for site in sites:
            links.append(attach_uprobe(program, path, None, site.offset, pid, ref_ctr_offset=site.semaphore_offset,
                                       cookie=cookie))
    except BaseException:
        for link in links:
            link.close()
        raise
    if len(links) == 1:
        return links[0]
    return MultiLink(links, program, f"{program.name or 'program'} on usdt {provider}:{name} ({len(links)} sites)")
