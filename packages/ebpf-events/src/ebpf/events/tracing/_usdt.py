"""USDT (SystemTap SDT) probes: listing ``.note.stapsdt``, decoding argument specs, attaching a uprobe at every
site of a probe (with the kernel raising the probe's semaphore) and handing each site's argument spec to the
program through the ``__bpf_usdt_specs`` map and the uprobe's BPF cookie (see :mod:`._usdt_args`)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from ebpf.core.errors import AttachError, EBPFError, ELFError
from ebpf.core.links import Link
from ebpf.core.records import dataclass
from ebpf.events.tracing._elf import ElfFile
from ebpf.events.tracing._links import MultiLink, check_program
from ebpf.events.tracing._probes import attach_uprobe, resolve_binary
from ebpf.events.tracing._usdt_args import UsdtArg, UsdtSpecs, encode_usdt_spec, parse_usdt_args, release_later

if TYPE_CHECKING:  # pragma: no cover
    from ebpf.core.programs import Program

__all__ = ["UsdtProbe", "UsdtLink", "list_usdt", "attach_usdt"]


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
    :ivar args: the argument spec string (``"-4@%eax 8@%rdx"``); decoded in :attr:`arguments`.
    :ivar arch: the ELF file's architecture (``"x86_64"``, ``"aarch64"``, ...), which names the registers.
    """

    provider: str
    name: str
    path: str
    address: int
    offset: int
    semaphore: int
    semaphore_offset: int
    args: str
    arch: str = "x86_64"

    @property
    def arguments(self) -> tuple[UsdtArg, ...]:
        """The decoded argument specs (size, sign, register / register + offset / constant).

        :raises EBPFError: when a spec cannot be decoded (an unknown form or architecture).
        """
        return parse_usdt_args(self.args, self.arch)


_MACHINES = {62: "x86_64", 183: "aarch64", 3: "i386", 40: "arm", 243: "riscv64", 22: "s390x", 21: "ppc64"}


def _probes_of(path: str) -> list[UsdtProbe]:
    elf = ElfFile(path)
    notes = elf.usdt_notes()
    if not notes:
        return []
    base = elf.section(".stapsdt.base")
    arch = _MACHINES.get(elf.machine, f"machine {elf.machine}")
    out = []
    for n in notes:
        addr = n.pc
        if base is not None and n.base:  # prelink may have moved the file: the note says where .stapsdt.base was
            addr = n.pc + base.addr - n.base
        sem_off = elf.vaddr_to_offset(n.semaphore) if n.semaphore else 0
        out.append(UsdtProbe(n.provider, n.name, path, addr, elf.vaddr_to_offset(addr), n.semaphore, sem_off, n.args,
                              arch))
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


class UsdtLink(MultiLink):
    """The uprobes of one USDT probe attached with a :class:`UsdtSpecs` map; closing it also gives the
    sites' spec slots back.

    :ivar spec_ids: the spec id (BPF cookie) of each site, in site order.
    :ivar specs: the :class:`UsdtSpecs` holding them (kept alive, so its slot bookkeeping outlives
        every attachment that uses it).
    """

    def __init__(self, links: list[Link], program: Program, description: str, specs: UsdtSpecs,
                 ids: list[int]) -> None:
        """Own ``links`` and the references to ``ids`` in ``specs``."""
        super().__init__(links, program, description)
        self.spec_ids = list(ids)
        self.specs = specs
        self._give_back = release_later(self, specs, list(ids))

    def detach(self) -> None:
        """Detach every site, then release the spec slots."""
        try:
            super().detach()
        finally:
            self._give_back()


def attach_usdt(program: Program, binary: str | os.PathLike[str], provider: str, name: str, pid: int = -1, *,
                cookie: int = 0, specs: UsdtSpecs | None = None) -> Link:
    """Attach a kprobe-type program at USDT probe ``provider:name`` of ``binary`` (a uprobe at each site).

    When the probe has a semaphore, its file offset is passed as the uprobe's
    ``ref_ctr_offset``: the kernel itself increments the semaphore in every process
    (or only ``pid``) while the probe is attached, so guarded probes fire (Linux >= 4.20).

    With ``specs`` (a :class:`UsdtSpecs`, whose map the program uses through
    :func:`~ebpf.events.tracing.usdt_arg`), each site's decoded arguments are written to the
    spec map and the site's uprobe gets the spec id as its BPF cookie, as libbpf does; the
    program then reads argument N wherever the compiler put it at that site, and ``cookie``
    is readable with :func:`~ebpf.events.tracing.usdt_cookie`.  When ``specs`` is not given
    and the program uses a map named ``__bpf_usdt_specs`` (a C program built with
    ``usdt.bpf.h`` and loaded from its object, or an asm program using a :class:`UsdtSpecs`),
    that map is used (:meth:`UsdtSpecs.of_program`), so ``bpf_usdt_arg()`` /
    ``bpf_usdt_cookie()`` work with no extra argument.  Otherwise ``cookie`` is the uprobes'
    BPF cookie and the program decodes :attr:`UsdtProbe.args` itself.

    :returns: the site's :class:`~ebpf.core.links.PerfEventLink`, or a :class:`MultiLink`
        when the probe has several sites or ``specs`` is given (its spec slots are given
        back when it closes).
    :raises EBPFError: wrong program type, undecodable argument specs, a ``__bpf_usdt_specs`` map
        of the wrong layout (before any syscall).
    :raises AttachError: no such binary or probe.

    Requires Linux >= 5.15 with ``specs`` (BPF cookies for uprobes).
    """
    check_program(program, ("kprobe",), "attach_usdt")
    if specs is not None and not isinstance(specs, UsdtSpecs):
        raise EBPFError(f"specs must be a UsdtSpecs, not {type(specs).__name__}")
    if specs is None:
        specs = UsdtSpecs.of_program(program)
    if specs is not None and specs.closed:
        raise EBPFError("attach_usdt: the UsdtSpecs map is closed")
    path = resolve_binary(binary)
    sites = [p for p in _probes_of(path) if p.provider == provider and p.name == name]
    if not sites:
        raise AttachError(f"no USDT probe {provider}:{name} in {path} (see list_usdt())")
    encoded = [encode_usdt_spec(site.arguments, cookie) for site in sites] if specs is not None else []
    links: list[Link] = []
    ids: list[int] = []
    try:
        for i, site in enumerate(sites):
            site_cookie = cookie
            if specs is not None:
                site_cookie = specs.acquire(encoded[i])
                ids.append(site_cookie)
            links.append(attach_uprobe(program, path, None, site.offset, pid, ref_ctr_offset=site.semaphore_offset,
                                       cookie=site_cookie))
    except BaseException:
        for link in links:
            link.close()
        for sid in ids:
            assert specs is not None
            specs.release(sid)
        raise
    if len(links) == 1 and specs is None:
        return links[0]
    desc = f"{program.name or 'program'} on usdt {provider}:{name} ({len(links)} sites)"
    if specs is None:
        return MultiLink(links, program, desc)
    return UsdtLink(links, program, desc, specs, ids)

