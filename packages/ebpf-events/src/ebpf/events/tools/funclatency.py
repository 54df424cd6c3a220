"""funclatency: how long a function takes, as a log2 histogram (bcc/libbpf-tools ``funclatency``).

A uprobe on entry stores ``ktime`` per thread; a uretprobe takes the difference, converts it
to the unit, and counts it in slot ``log2(delta)`` of an array map.  Targets are
``BINARY:SYMBOL`` (``/lib/x86_64-linux-gnu/libc.so.6:nanosleep``, ``libc.so.6:read``) or a
kernel function (kprobe/kretprobe, where the kernel has kprobes)::

    with FuncLatency("libc.so.6:clock_nanosleep", pid=pid, unit="usecs") as f:
        time.sleep(5)
        f.histogram().print_log2_hist("usecs")
"""

from __future__ import annotations

from typing import Any

from ebpf.core import asm
from ebpf.core.asm import R0, R6, R7, R8
from ebpf.core.errors import EBPFError
from ebpf.events.hist import Histogram
from ebpf.events.tools._common import UNITS, ToolBase, check_common, ktime_to, pid_filter, store_start, take_delta

__all__ = ["FuncLatency", "parse_target"]

_SLOTS = 64


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
    if not symbol.replace("_", "a").replace(".", "a").isalnum():
        raise EBPFError(f"bad function name {symbol!r} in target {target!r}")
    return (binary or None), symbol


class FuncLatency(ToolBase):
    """Latency histogram of one function, attached as soon as it is created.

    :param target: ``BINARY:SYMBOL`` (a uprobe) or a kernel function name (a kprobe).
    :param pid: only calls by this process.
    :param unit: ``"nsecs"``, ``"usecs"`` (default) or ``"msecs"``.
    :raises EBPFError: bad arguments (before loading); :raises AttachError: no such binary/symbol;
        :raises NotSupportedError: no kprobes on this kernel (kernel functions).
    """

    def __init__(self, target: str, *, pid: int | None = None, unit: str = "usecs") -> None:
        """Create the maps, load both programs and attach them."""
        super().__init__()
        check_common(pid=pid, unit=unit)
        self.binary, self.symbol = parse_target(target)
        self.target, self.pid, self.unit = target, pid, unit
        from ebpf.core.maps import create_array_map, create_hash_map
        from ebpf.core.programs import load_program
        from ebpf.events import tracing

        try:
            self.start = self._hold(create_hash_map(10240, key_size=8, value_size=8, name="fl_start"))
            self.hist = self._hold(create_array_map(_SLOTS, value_size=8, name="fl_hist"))
            entry = [*pid_filter(pid, "out"), *store_start(self.start), asm.label("out"), asm.mov64(R0, 0), asm.exit_()]
            ret = [*take_delta(self.start, R6, "out"), asm.mov64(R0, R6), *ktime_to(UNITS[unit]), asm.mov64(R6, R0),
                   *asm.log2(R7, R6, tmp=R8), *asm.hist_increment(self.hist, R7, max_slots=_SLOTS),
                   asm.label("out"), asm.mov64(R0, 0), asm.exit_()]
            maps = (self.start, self.hist)
            p_entry = self._hold(load_program(prog_type="kprobe", insns=entry, name="fl_entry", maps=maps))
            p_ret = self._hold(load_program(prog_type="kprobe", insns=ret, name="fl_return", maps=maps))
            if self.binary is not None:
                upid = -1 if pid is None else pid
                self._hold(tracing.attach_uprobe(p_entry, self.binary, self.symbol, pid=upid))
                self._hold(tracing.attach_uretprobe(p_ret, self.binary, self.symbol, pid=upid))
            else:
                self._hold(tracing.attach_kprobe(p_entry, self.symbol))
                self._hold(tracing.attach_kretprobe(p_ret, self.symbol))
        except BaseException:
            self.close()
            raise

    def histogram(self) -> Histogram:
        """The latencies so far (in :attr:`unit`)."""
        return Histogram.from_map(self.hist)

    def clear(self) -> None:
        """Zero the histogram (for per-interval output)."""
        for i in range(_SLOTS):
            self.hist[i] = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: target, unit and the histogram's :meth:`~ebpf.events.hist.Histogram.to_dict`."""
        return {"target": self.target, "unit": self.unit, **self.histogram().to_dict()}
