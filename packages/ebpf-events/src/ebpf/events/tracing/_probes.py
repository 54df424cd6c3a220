"""kprobes and uprobes: the kprobe/uprobe PMUs, the tracefs fallback, and the multi links."""

from __future__ import annotations

import ctypes
import errno
import os
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ebpf.core.errors import AttachError, BPFSyscallError, EBPFError, ELFError, NotSupportedError
from ebpf.core.features import have_kprobes, have_link_type
from ebpf.core.links import BPFLink, Link, attach_perf_event, create_link
from ebpf.core.lowlevel import LinkCreateKprobeMulti, LinkCreateUprobeMulti, close_fd
from ebpf.core.lowlevel import perf as _perf
from ebpf.core.types import AttachType
from ebpf.events.tracing._elf import ElfFile
from ebpf.events.tracing._links import (
    TracefsProbeLink,
    check_program,
    remove_tracefs_event,
    tracefs_event_name,
    write_tracefs,
)

if TYPE_CHECKING:  # pragma: no cover
    from ebpf.core.programs import Program

__all__ = [
    "attach_kprobe",
    "attach_kretprobe",
    "attach_kprobe_multi",
    "attach_uprobe",
    "attach_uretprobe",
    "attach_uprobe_multi",
    "resolve_binary",
    "resolve_uprobe_offset",
    "PERF_UPROBE_REF_CTR_OFFSET_SHIFT",
]

PERF_UPROBE_REF_CTR_OFFSET_SHIFT = 32
BPF_F_KPROBE_MULTI_RETURN = 1
BPF_F_UPROBE_MULTI_RETURN = 1
_SYMBOL = re.compile(r"^([A-Za-z_.$][\w.$@]*)(?:\+(0x[0-9a-fA-F]+|\d+))?$")
_LIB_DIRS = ("/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64", "/lib", "/usr/lib",
             "/usr/local/lib")


def _split_symbol(text: str, offset: int) -> tuple[str, int]:
    """``"func+0x10"`` -> ("func", 0x10 + offset)."""
    if not isinstance(text, str):
        raise EBPFError(f"symbol must be a str, not {type(text).__name__}")
    m = _SYMBOL.match(text.strip())
    if m is None:
        raise EBPFError(f"bad symbol {text!r}: expected 'name' or 'name+offset'")
    if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
        raise EBPFError(f"offset must be a non-negative int, not {offset!r}")
    return m.group(1), offset + (int(m.group(2), 0) if m.group(2) else 0)


def _retprobe_bit(pmu: str) -> int:
    """The config bit that makes a ``pmu`` probe a return probe (``format/retprobe``: ``config:0``)."""
    try:
        with open(f"/sys/bus/event_source/devices/{pmu}/format/retprobe") as f:
            text = f.read().strip()
        return 1 << int(text.split(":", 1)[1])
    except (OSError, ValueError, IndexError):
        return 1  # the only value kernels have used


def _open_pmu_probe(pmu: str, retprobe: bool, name: str | None, config2: int, pid: int,
                    ref_ctr_offset: int = 0) -> int:
    """perf_event_open on the kprobe/uprobe PMU; config1 points at ``name`` (function or path)."""
    typ = _perf.pmu_type(pmu)
    buf = ctypes.create_string_buffer(name.encode()) if name else None
    config = (_retprobe_bit(pmu) if retprobe else 0) | (ref_ctr_offset << PERF_UPROBE_REF_CTR_OFFSET_SHIFT)
    attr = _perf.PerfEventAttr(type=typ, config=config, config1=ctypes.addressof(buf) if buf is not None else 0,
                               config2=config2, sample_period=1, wakeup_events=1)
    return _perf.perf_event_open(attr, pid=pid, cpu=-1 if pid >= 0 else 0)


def _open_tracefs_probe(kind: str, retprobe: bool, spec: str, pid: int, maxactive: int = 0) -> tuple[int, str, str, str]:
    """Create a probe through tracefs ``<kind>probe_events`` and open it; (fd, events file, group, event)."""
    from ebpf.core.system import ensure_tracefs

    events_file = os.path.join(ensure_tracefs(), f"{kind}probe_events")
    if not os.path.exists(events_file):
        raise NotSupportedError(f"no {events_file}: the kernel has no {kind}probes")
    group, event = tracefs_event_name(kind)
    head = ("r" + (str(maxactive) if maxactive else "")) if retprobe else "p"
    try:
        write_tracefs(events_file, f"{head}:{group}/{event} {spec}\n")
    except OSError as exc:
        raise BPFSyscallError(exc.errno or errno.EINVAL, f"write({events_file})",
                              hint=f"the kernel refused probe {spec!r}") from None
    try:
        fd = _perf.perf_event_open(
            _perf.PerfEventAttr(type=_perf.PERF_TYPE_TRACEPOINT, config=_perf.tracepoint_id(group, event),
                                sample_period=1, wakeup_events=1),
            pid=pid, cpu=-1 if pid >= 0 else 0)
    except BaseException:
        remove_tracefs_event(events_file, group, event)
        raise
    return fd, events_file, group, event


def _link(program: Program, fd: int, cookie: int, description: str) -> Link:
    try:
        return attach_perf_event(program, fd, cookie=cookie, description=description)
    except BaseException:
        close_fd(fd)
        raise


def _wrap_tracefs(program: Program, opened: tuple[int, str, str, str], cookie: int, description: str) -> Link:
    fd, events_file, group, event = opened
    try:
        inner = _link(program, fd, cookie, description)
    except BaseException:
        remove_tracefs_event(events_file, group, event)
        raise
    return TracefsProbeLink(inner, events_file, group, event)


# --- kprobes -------------------------------------------------------------------------------------------------


def attach_kprobe(program: Program, function: str, offset: int = 0, *, retprobe: bool = False, maxactive: int = 0,
                  cookie: int = 0, legacy: bool = False) -> Link:
    """Attach a kprobe program to kernel function ``function`` (``"do_sys_openat2"``, ``"func+0x10"``).

    Uses the kprobe PMU (``/sys/bus/event_source/devices/kprobe``: config1 = the symbol
    name's address, config2 = the offset, the retprobe bit from ``format/retprobe``) and
    falls back to tracefs ``kprobe_events`` when the PMU is missing, ``legacy`` is set, or
    ``maxactive`` is asked for (only tracefs can set it).

    :param retprobe: a kretprobe (on function return).
    :param maxactive: kretprobe instances (tracefs ``r<maxactive>:``); 0 = kernel default.
    :param cookie: the BPF cookie (``bpf_get_attach_cookie``).
    :returns: a :class:`~ebpf.core.links.PerfEventLink` (or a link that also removes the tracefs event).
    :raises EBPFError: wrong program type or bad name (before any syscall).
    :raises UnsupportedFeatureError: on kernels without CONFIG_KPROBES.

    Requires Linux >= 4.17 for the PMU (older kernels use tracefs).
    """
    check_program(program, ("kprobe",), "attach_kprobe")
    func, off = _split_symbol(function, offset)
    if not isinstance(maxactive, int) or maxactive < 0:
        raise EBPFError(f"maxactive must be a non-negative int, not {maxactive!r}")
    have_kprobes()
    what = f"{'kretprobe' if retprobe else 'kprobe'} {func}{f'+{off:#x}' if off else ''}"
    desc = f"{program.name or 'program'} on {what}"
    use_pmu = not legacy and not (retprobe and maxactive) and os.path.exists("/sys/bus/event_source/devices/kprobe")
    if use_pmu:
        return _link(program, _open_pmu_probe("kprobe", retprobe, func, off, -1), cookie, desc)
    target = f"{func}+{off}" if off else func
    return _wrap_tracefs(program, _open_tracefs_probe("k", retprobe, target, -1, maxactive), cookie, desc)


def attach_kretprobe(program: Program, function: str, offset: int = 0, **options: Any) -> Link:
    """:func:`attach_kprobe` with ``retprobe=True``."""
    return attach_kprobe(program, function, offset, retprobe=True, **options)


def _kprobe_symbols(pattern: str) -> list[str]:
    import fnmatch

    from ebpf.core.system import ensure_tracefs

    path = os.path.join(ensure_tracefs(), "available_filter_functions")
    try:
        with open(path) as f:
            names = {line.split()[0] for line in f if line.strip()}
    except OSError as exc:
        raise NotSupportedError(f"cannot read {path}: {exc.strerror or exc}") from None
    return sorted(n for n in names if fnmatch.fnmatchcase(n, pattern))


def attach_kprobe_multi(program: Program, symbols: Sequence[str] | str, *, cookies: Sequence[int] | None = None,
                        retprobe: bool = False) -> BPFLink:
    """Attach one kprobe program to many kernel functions with one kprobe.multi link.

    :param symbols: function names, or one glob pattern (``"tcp_*"``) matched against
        tracefs ``available_filter_functions``.
    :param cookies: one BPF cookie per symbol.
    :raises EBPFError: wrong program (it must be loaded with expected attach type
        ``trace_kprobe_multi``) or empty/mismatched lists.
    :raises UnsupportedFeatureError: without kprobes.

    Requires Linux >= 5.18.
    """
    check_program(program, ("kprobe",), "attach_kprobe_multi")
    if program.expected_attach_type != AttachType.TRACE_KPROBE_MULTI:
        raise EBPFError("attach_kprobe_multi needs a program loaded with expected_attach_type='trace_kprobe_multi'")
    names = [symbols] if isinstance(symbols, str) else list(symbols)
    if not names or not all(isinstance(n, str) and n for n in names):
        raise EBPFError("attach_kprobe_multi needs at least one symbol name")
    if cookies is not None and len(cookies) != len(names):
        raise EBPFError("cookies must have one entry per symbol")
    have_kprobes()
    if isinstance(symbols, str) and any(c in symbols for c in "*?["):
        names = _kprobe_symbols(symbols)
        if not names:
            raise AttachError(f"no kernel function matches {symbols!r}")
    strings = [ctypes.create_string_buffer(n.encode()) for n in names]
    syms = (ctypes.c_uint64 * len(names))(*(ctypes.addressof(s) for s in strings))
    cks = (ctypes.c_uint64 * len(names))(*cookies) if cookies is not None else None
    flags = BPF_F_KPROBE_MULTI_RETURN if retprobe else 0
    extra = LinkCreateKprobeMulti(flags=flags, cnt=len(names), syms=ctypes.addressof(syms),
                                  cookies=ctypes.addressof(cks) if cks is not None else 0)
    return create_link(program, 0, AttachType.TRACE_KPROBE_MULTI, extra=extra,
                       description=f"{program.name or 'program'} on kprobe.multi ({len(names)} functions)")


# --- uprobes -------------------------------------------------------------------------------------------------


def _ld_cache(name: str) -> str | None:
    """Look ``name`` up in the dynamic linker's cache (``ldconfig -p``)."""
    import subprocess

    try:
        out = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    for line in out.splitlines():
        left, sep, right = line.strip().partition(" => ")
        if sep and left.split(" ", 1)[0] == name and os.path.isfile(right.strip()):
            return right.strip()
    return None


def resolve_binary(binary: str | os.PathLike[str]) -> str:
    """The absolute path of ``binary``: a path, a program on ``$PATH``, or a library name (``"libc.so.6"``).

    :raises AttachError: when it cannot be found.
    """
    if not isinstance(binary, (str, os.PathLike)):
        raise EBPFError(f"binary must be a path, not {type(binary).__name__}")
    text = os.fspath(binary)
    if not text:
        raise EBPFError("binary path is empty")
    if "/" in text:
        if not os.path.isfile(text):
            raise AttachError(f"no such binary: {text!r}")
        return os.path.abspath(text)
    if ".so" in text:
        for d in _LIB_DIRS:
            cand = os.path.join(d, text)
            if os.path.isfile(cand):
                return cand
        found = _ld_cache(text)
        if found:
            return found
    import shutil  # deferred: start-up time (it imports bz2 and lzma; only a bare program name needs it)

    found = shutil.which(text)
    if found:
        return os.path.abspath(found)
    raise AttachError(f"no such binary or library: {text!r} (not a path, not on $PATH, not in the library path)")


def resolve_uprobe_offset(binary: str | os.PathLike[str], symbol: str | None, offset: int = 0) -> tuple[str, int]:
    """(absolute path, file offset) of ``symbol`` (+``offset``) in ``binary``.

    A symbol's virtual address is turned into a file offset through the PT_LOAD segment
    that holds it, so shared libraries work as well as executables.  Without a symbol,
    ``offset`` is the file offset.

    :raises AttachError: missing binary or symbol.  :raises ELFError: malformed file.
    """
    path = resolve_binary(binary)
    if symbol is None:
        if not isinstance(offset, int) or offset <= 0:
            raise EBPFError("a uprobe without a symbol needs a positive file offset")
        return path, offset
    name, off = _split_symbol(symbol, offset)
    elf = ElfFile(path)
    try:
        sym = elf.find_symbol(name)
    except ELFError as exc:
        raise AttachError(f"cannot attach uprobe: {exc}") from None
    return path, elf.vaddr_to_offset(sym.value) + off


def attach_uprobe(program: Program, binary: str | os.PathLike[str], symbol: str | None = None, offset: int = 0,
                  pid: int = -1, *, retprobe: bool = False, ref_ctr_offset: int = 0, cookie: int = 0,
                  legacy: bool = False) -> Link:
    """Attach a kprobe-type program as a uprobe on ``symbol`` of ``binary`` (an executable or library).

    :param binary: a path, a command on ``$PATH`` or a library name (``"libc.so.6"``).
    :param symbol: a function (``"malloc"``, ``"malloc+4"``), or None with ``offset`` a file offset.
    :param pid: only this process (-1: every process).
    :param retprobe: a uretprobe (on return).
    :param ref_ctr_offset: file offset of a USDT semaphore the kernel increments while attached.
    :returns: a :class:`~ebpf.core.links.PerfEventLink`.
    :raises EBPFError: wrong program type; :raises AttachError: missing binary or symbol
        (both before any syscall).

    Requires Linux >= 4.17 (the uprobe PMU; ``ref_ctr_offset`` >= 4.20); tracefs otherwise.
    """
    check_program(program, ("kprobe",), "attach_uprobe")
    if not isinstance(pid, int) or pid < -1:
        raise EBPFError(f"pid must be -1 or a process id, not {pid!r}")
    path, off = resolve_uprobe_offset(binary, symbol, offset)
    what = f"{'uretprobe' if retprobe else 'uprobe'} {path}:{symbol or hex(off)}"
    desc = f"{program.name or 'program'} on {what}" + (f" pid {pid}" if pid >= 0 else "")
    if not legacy and os.path.exists("/sys/bus/event_source/devices/uprobe"):
        fd = _open_pmu_probe("uprobe", retprobe, path, off, pid, ref_ctr_offset)
        return _link(program, fd, cookie, desc)
    spec = f"{path}:{off:#x}" + (f"({ref_ctr_offset:#x})" if ref_ctr_offset else "")
    return _wrap_tracefs(program, _open_tracefs_probe("u", retprobe, spec, pid), cookie, desc)


def attach_uretprobe(program: Program, binary: str | os.PathLike[str], symbol: str | None = None, offset: int = 0,
                     pid: int = -1, **options: Any) -> Link:
    """:func:`attach_uprobe` with ``retprobe=True``."""
    return attach_uprobe(program, binary, symbol, offset, pid, retprobe=True, **options)


def attach_uprobe_multi(program: Program, binary: str | os.PathLike[str], symbols: Sequence[str] | None = None, *,
                        offsets: Sequence[int] | None = None, ref_ctr_offsets: Sequence[int] | None = None,
                        cookies: Sequence[int] | None = None, pid: int = 0, retprobe: bool = False) -> BPFLink:
    """Attach one program to many locations of one binary with a uprobe.multi link.

    :param symbols: function names (resolved to file offsets), or None with ``offsets``.
    :param offsets: file offsets (added to the symbols' when both are given).
    :param pid: only this process (0: every process).
    :raises EBPFError: the program must be loaded with expected attach type ``trace_uprobe_multi``.
    :raises UnsupportedFeatureError: when the kernel has no uprobe.multi links.

    Requires Linux >= 6.6.
    """
    check_program(program, ("kprobe",), "attach_uprobe_multi")
    if program.expected_attach_type != AttachType.TRACE_UPROBE_MULTI:
        raise EBPFError("attach_uprobe_multi needs a program loaded with expected_attach_type='trace_uprobe_multi'")
    have_link_type("uprobe_multi")  # after the checks of the caller's input: bad input is reported first
    path = resolve_binary(binary)
    if symbols is not None:
        if isinstance(symbols, str):
            symbols = [symbols]
        extra_offs = list(offsets) if offsets is not None else [0] * len(symbols)
        if len(extra_offs) != len(symbols):
            raise EBPFError("offsets must have one entry per symbol")
        offs = [resolve_uprobe_offset(path, s, o)[1] for s, o in zip(symbols, extra_offs)]
    elif offsets is not None:
        offs = list(offsets)
    else:
        raise EBPFError("attach_uprobe_multi needs symbols or offsets")
    n = len(offs)
    if n == 0:
        raise EBPFError("attach_uprobe_multi needs at least one location")
    for what, seq in (("ref_ctr_offsets", ref_ctr_offsets), ("cookies", cookies)):
        if seq is not None and len(seq) != n:
            raise EBPFError(f"{what} must have one entry per location")
    c_path = ctypes.create_string_buffer(path.encode())
    c_offs = (ctypes.c_uint64 * n)(*offs)
    c_refs = (ctypes.c_uint64 * n)(*ref_ctr_offsets) if ref_ctr_offsets is not None else None
    c_cks = (ctypes.c_uint64 * n)(*cookies) if cookies is not None else None
    flags = BPF_F_UPROBE_MULTI_RETURN if retprobe else 0
    extra = LinkCreateUprobeMulti(path=ctypes.addressof(c_path), offsets=ctypes.addressof(c_offs),
                                  ref_ctr_offsets=ctypes.addressof(c_refs) if c_refs else 0,
                                  cookies=ctypes.addressof(c_cks) if c_cks else 0, cnt=n, flags=flags,
                                  pid=pid & 0xFFFFFFFF)
    return create_link(program, 0, AttachType.TRACE_UPROBE_MULTI, extra=extra,
                       description=f"{program.name or 'program'} on uprobe.multi {path} ({n} locations)")
