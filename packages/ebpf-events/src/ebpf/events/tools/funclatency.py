"""funclatency: how long a function takes, as a log2 histogram (bcc/libbpf-tools ``funclatency``).

A uprobe on entry stores ``ktime`` per thread; a uretprobe takes the difference, converts it
to the unit, and counts it in slot ``log2(delta)`` of an array map.  Targets are
``BINARY:SYMBOL`` (``/lib/x86_64-linux-gnu/libc.so.6:nanosleep``, ``libc.so.6:read``) or a
kernel function (kprobe/kretprobe, where the kernel has kprobes)::

    with FuncLatency("libc.so.6:clock_nanosleep", pid=pid, unit="usecs") as f:
        time.sleep(5)
        f.histogram().print_log2_hist("usecs")

As bcc's, a user-space target may name several functions: ``libc.so.6:read*`` (``*``, ``?``
and ``[...]`` wildcards) or, with ``regexp=True``, a regular expression matched at the start of
each name (``libc.so.6:p?read(v)?$``).  One uprobe pair per function (aliases at one address
counted once); ``per_function`` keeps a histogram per function, told apart by the return
probe's BPF cookie (the function's index in :attr:`FuncLatency.functions`).
"""

from __future__ import annotations

import fnmatch
import re
from typing import Any

from ebpf.core import asm
from ebpf.core.asm import R0, R1, R6, R7, R8, R9
from ebpf.core.errors import EBPFError
from ebpf.events.hist import HIGH32, Histogram
from ebpf.events.tools._common import UNITS, ToolBase, check_common, ktime_to, pid_filter, store_start, take_delta

__all__ = ["FuncLatency", "parse_target", "matching_functions"]

_SLOTS = 64
_WILDCARDS = "*?["
MAX_FUNCTIONS = 1000  # uprobe pairs one tool attaches at most (bcc's funclatency caps its probes too)


def parse_target(target: str) -> tuple[str | None, str]:
    """``("libc.so.6", "read")`` for ``"libc.so.6:read"``; ``(None, "vfs_read")`` for a kernel function.

    :raises EBPFError: for an empty or malformed target.
    """
    if not isinstance(target, str) or not target.strip():
        raise EBPFError(f"target must be 'BINARY:SYMBOL' or a kernel function, not {target!r}")
    binary, sep, symbol = target.rpartition(":")
    if sep and (not binary or not symbol):
        raise EBPFError(f"target {target!r}: expected 'BINARY:SYMBOL'")
    if not sep:
        symbol = target
    return (binary or None), symbol


def _plain(symbol: str) -> bool:
    return symbol.replace("_", "a").replace(".", "a").isalnum()


def matching_functions(binary: str, pattern: str, regexp: bool = False) -> list[str]:
    """The functions of ``binary`` whose names match ``pattern`` (wildcards, or a regular expression
    matched at the start of the name with ``regexp``), one name per address, sorted.

    :raises EBPFError: bad pattern, unreadable binary, or no function matches.
    """
    from ebpf.events._elfsyms import ElfImage
    from ebpf.events.tracing._probes import resolve_binary

    try:
        match = re.compile(pattern).match if regexp else re.compile(fnmatch.translate(pattern)).match
    except re.error as exc:
        raise EBPFError(f"bad regular expression {pattern!r}: {exc}") from None
    path = resolve_binary(binary)
    by_addr: dict[int, str] = {}
    for addr, _rank, _size, name in ElfImage.from_path(path).function_symbols():
        if addr and match(name) and (addr not in by_addr or len(name) < len(by_addr[addr])):
            by_addr[addr] = name  # aliases (read, __read): the shortest name
    names = sorted(set(by_addr.values()))
    if not names:
        raise EBPFError(f"no function of {path} matches {pattern!r}")
    if len(names) > MAX_FUNCTIONS:
        raise EBPFError(f"{len(names)} functions of {path} match {pattern!r}: more than {MAX_FUNCTIONS}")
    return names


class FuncLatency(ToolBase):
    """Latency histogram of one function, attached as soon as it is created.

    :param target: ``BINARY:SYMBOL`` (a uprobe) or a kernel function name (a kprobe).
    :param pid: only calls by this process.
    :param unit: ``"nsecs"``, ``"usecs"`` (default) or ``"msecs"``.
    :param regexp: the symbol of a ``BINARY:PATTERN`` target is a regular expression (bcc's ``-r``).
    :param per_function: a histogram per function (bcc's ``-F``; sections are indexes into :attr:`functions`).
    :raises EBPFError: bad arguments (before loading); :raises AttachError: no such binary/symbol;
        :raises NotSupportedError: no kprobes on this kernel (kernel functions).
    """

    def __init__(self, target: str, *, pid: int | None = None, unit: str = "usecs", regexp: bool = False,
                 per_function: bool = False) -> None:
        """Create the maps, load both programs and attach them."""
        super().__init__()
        check_common(pid=pid, unit=unit)
        self.binary, self.symbol = parse_target(target)
        self.target, self.pid, self.unit, self.per_function = target, pid, unit, bool(per_function)
        pattern = regexp or any(c in self.symbol for c in _WILDCARDS)
        if pattern and self.binary is None:
            raise EBPFError(f"target {target!r}: patterns need BINARY:PATTERN (kernel function patterns are not "
                            "supported)")
        if not pattern and not _plain(self.symbol):
            raise EBPFError(f"bad function name {self.symbol!r} in target {target!r}")
        #: The functions probed (one unless the target is a pattern); per-function sections index it.
        self.functions = matching_functions(self.binary, self.symbol, regexp) if pattern and self.binary \
            else [self.symbol]
        from ebpf.core.maps import create_array_map, create_hash_map
        from ebpf.core.programs import load_program
        from ebpf.events import tracing

        try:
            self.start = self._hold(create_hash_map(10240, key_size=8, value_size=8, name="fl_start"))
            self.hist = self._hold(create_hash_map(4096, key_size=8, value_size=8, name="fl_hist")
                                   if self.per_function else create_array_map(_SLOTS, value_size=8, name="fl_hist"))
            entry = [*pid_filter(pid, "out"), *store_start(self.start), asm.label("out"), asm.mov64(R0, 0), asm.exit_()]
            if self.per_function:  # key: the function's index (the return probe's cookie) << 32 | slot
                count = [asm.mov64(R1, R9), asm.call("get_attach_cookie"), asm.lsh64(R0, 32), asm.or64(R7, R0),
                         *asm.hist_increment(self.hist, R7, key_size=8, key_off=-24, create=True)]
            else:
                count = asm.hist_increment(self.hist, R7, max_slots=_SLOTS)
            ret = [asm.mov64(R9, R1), *take_delta(self.start, R6, "out"), asm.mov64(R0, R6), *ktime_to(UNITS[unit]),
                   asm.mov64(R6, R0), *asm.log2(R7, R6, tmp=R8), *count,
                   asm.label("out"), asm.mov64(R0, 0), asm.exit_()]
            maps = (self.start, self.hist)
            p_entry = self._hold(load_program(prog_type="kprobe", insns=entry, name="fl_entry", maps=maps))
            p_ret = self._hold(load_program(prog_type="kprobe", insns=ret, name="fl_return", maps=maps))
            if self.binary is not None:
                upid = -1 if pid is None else pid
                for index, symbol in enumerate(self.functions):
                    self._hold(tracing.attach_uprobe(p_entry, self.binary, symbol, pid=upid))
                    self._hold(tracing.attach_uretprobe(p_ret, self.binary, symbol, pid=upid, cookie=index))
            else:
                self._hold(tracing.attach_kprobe(p_entry, self.symbol))
                self._hold(tracing.attach_kretprobe(p_ret, self.symbol))
        except BaseException:
            self.close()
            raise

    def histogram(self) -> Histogram:
        """The latencies so far (in :attr:`unit`; sections are indexes into :attr:`functions` with ``per_function``)."""
        if self.per_function:
            return Histogram.from_map(self.hist, key=HIGH32)
        return Histogram.from_map(self.hist)

    def function_name(self, index: int) -> str:
        """The name of section ``index`` of a per-function histogram."""
        return self.functions[index] if 0 <= index < len(self.functions) else f"#{index}"

    def format(self) -> str:
        """bcc's printout (``Function = read`` sections with ``per_function``)."""
        if self.per_function:
            return self.histogram().format_log2_hist(self.unit, section_header="Function",
                                                     section_print_fn=self.function_name)
        return self.histogram().format_log2_hist(self.unit)

    def clear(self) -> None:
        """Zero the histogram (for per-interval output)."""
        if self.per_function:
            self.hist.clear()
            return
        for i in range(_SLOTS):
            self.hist[i] = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: target, unit, the functions probed and the histogram (sections named by function)."""
        d = {"target": self.target, "unit": self.unit, "functions": list(self.functions),
             **self.histogram().to_dict()}
        if "sections" in d:
            d["sections"] = {self.function_name(int(k)): v for k, v in d["sections"].items()}
        return d
