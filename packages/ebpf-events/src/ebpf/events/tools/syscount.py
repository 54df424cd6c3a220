"""syscount: system calls counted per syscall or per process, optionally with their total time.

Programs on ``raw_syscalls:sys_exit`` (and ``sys_enter`` for latency) count into a hash map
``key -> {count, total_ns}``, the key a syscall number or a process id.  Syscall names come
from the system's ``asm/unistd_64.h`` (the kernel's own table as exported to user space) or,
on a machine without kernel headers, the copy in the ``ziglang`` wheel when it is installed;
numbers without a name show as ``syscall_<n>``::

    with SysCount(pid=os.getpid(), latency=True) as sc:
        os.getppid()
        for stat in sc.top(10):
            print(stat.name, stat.count, stat.total_ns)
"""

from __future__ import annotations

import functools
import os
import platform
import re
from dataclasses import asdict
from typing import Any

from ebpf.core import asm
from ebpf.core.asm import R0, R1, R2, R3, R4, R6, R7, R8, R10
from ebpf.core.errors import EBPFError
from ebpf.core.records import dataclass
from ebpf.events.tools._common import ToolBase, check_common, pid_filter, store_start, take_delta

__all__ = ["SysCount", "SyscallStat", "syscall_names", "syscall_name"]

_HEADERS = ("/usr/include/{triplet}/asm/unistd_64.h", "/usr/include/asm/unistd_64.h",
            "/usr/include/{triplet}/asm/unistd.h", "/usr/include/asm-generic/unistd.h")
_NR = re.compile(r"^#define\s+__NR_(\w+)\s+(\d+)\s*$", re.M)


def _zig_headers(machine: str) -> list[str]:
    try:
        import ziglang  # optional: only on machines without linux-libc-dev
    except ImportError:
        return []
    arch = {"x86_64": "x86-linux-any", "aarch64": "aarch64-linux-any"}.get(machine, f"{machine}-linux-any")
    base = os.path.join(os.path.dirname(ziglang.__file__), "lib", "libc", "include", arch, "asm")
    return [os.path.join(base, "unistd_64.h"), os.path.join(base, "unistd.h")]


@functools.lru_cache(maxsize=1)
def syscall_names() -> dict[int, str]:
    """Syscall number -> name for this machine's architecture ({} when no header is found)."""
    machine = platform.machine()
    triplet = {"x86_64": "x86_64-linux-gnu", "aarch64": "aarch64-linux-gnu"}.get(machine, f"{machine}-linux-gnu")
    for path in [p.format(triplet=triplet) for p in _HEADERS] + _zig_headers(machine):
        if machine != "x86_64" and "unistd_64" in path:
            continue
        try:
            with open(path) as fh:
                text = fh.read()
        except OSError:
            continue
        names = {int(nr): name for name, nr in _NR.findall(text)}
        if names:
            return names
    return {}


def syscall_name(nr: int) -> str:
    """``"read"`` for 0 on x86_64; ``"syscall_<nr>"`` when unknown."""
    return syscall_names().get(nr, f"syscall_{nr}")


@dataclass(frozen=True)
class SyscallStat:
    """One row: the syscall (or process), how often it ran, and the time spent (0 without latency)."""

    key: int
    name: str
    count: int
    total_ns: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return asdict(self)


class SysCount(ToolBase):
    """Count system calls from now on.

    :param pid: only this process.
    :param by_process: key by process id instead of syscall.
    :param latency: also sum the time from entry to exit.
    :param syscall: only this syscall (a name or number).
    :param failures: only calls that failed (returned a negative errno; bcc's ``-x``).
    :param errno: only calls that failed with this error (``"ENOENT"`` or 2; bcc's ``-e``).
    :param tid: only this thread (bcc's ``-t``).
    :raises EBPFError: bad arguments (before loading).
    """

    def __init__(self, *, pid: int | None = None, by_process: bool = False, latency: bool = False,
                 syscall: str | int | None = None, failures: bool = False, errno: str | int | None = None,
                 tid: int | None = None) -> None:
        """Create the maps, load and attach the programs."""
        super().__init__()
        check_common(pid=pid)
        if tid is not None:
            try:
                check_common(pid=tid)
            except EBPFError:
                raise EBPFError(f"tid must be a positive int, not {tid!r}") from None
        self.tid = tid
        self.pid, self.by_process, self.latency = pid, by_process, latency
        self.syscall = self._syscall_nr(syscall)
        self.failures, self.errno = bool(failures), _errno_nr(errno)
        from ebpf.core.maps import create_hash_map
        from ebpf.core.programs import load_program
        from ebpf.events.tracing import attach_tracepoint, tracepoint_format

        exit_fmt = self._fmt = tracepoint_format("raw_syscalls", "sys_exit")
        try:
            self.counts_map = self._hold(create_hash_map(10240, key_size=4, value_size=16, name="sc_counts"))
            maps: tuple[Any, ...] = (self.counts_map,)
            if latency:
                self.start = self._hold(create_hash_map(10240, key_size=8, value_size=8, name="sc_start"))
                maps += (self.start,)
                enter = [asm.mov64(R6, R1), *pid_filter(pid, "out"), *self._only_thread("out"),
                         *self._only_syscall(R6, "out"),
                         *store_start(self.start), asm.label("out"), asm.mov64(R0, 0), asm.exit_()]
                p_enter = self._hold(load_program(prog_type="tracepoint", insns=enter, name="sc_enter", maps=maps))
                self._hold(attach_tracepoint(p_enter, "raw_syscalls", "sys_enter"))
            p_exit = self._hold(load_program(prog_type="tracepoint", insns=self._exit_program(exit_fmt),
                                             name="sc_exit", maps=maps))
            self._hold(attach_tracepoint(p_exit, "raw_syscalls", "sys_exit"))
        except BaseException:
            self.close()
            raise

    @staticmethod
    def _syscall_nr(syscall: str | int | None) -> int | None:
        if syscall is None:
            return None
        if isinstance(syscall, int) and not isinstance(syscall, bool) and 0 <= syscall < 1 << 16:
            return syscall
        if isinstance(syscall, str):
            if syscall.isdigit():
                return int(syscall)
            for nr, name in syscall_names().items():
                if name == syscall:
                    return nr
        raise EBPFError(f"unknown syscall {syscall!r}")

    def _only_syscall(self, ctx: Any, skip: str) -> list[Any]:
        if self.syscall is None:
            return []
        return [asm.ctx_field(ctx, self._fmt, "id"), asm.jne(R0, self.syscall, skip)]  # sys_enter and sys_exit alike

    def _only_thread(self, skip: str) -> list[Any]:
        """Jump to ``skip`` unless the current thread is :attr:`tid` (nothing without one).  Clobbers R0."""
        if self.tid is None:
            return []
        return [asm.call("get_current_pid_tgid"), asm.mov32(R0, R0), asm.jne(R0, self.tid, skip)]

    def _only_result(self, fmt: Any) -> list[Any]:
        """Skip calls that succeeded (``failures``) or failed otherwise than with ``errno``."""
        if self.errno is not None:
            return [asm.ctx_field(R6, fmt, "ret"), asm.jne(R0, -self.errno, "out")]
        if self.failures:
            return [asm.ctx_field(R6, fmt, "ret"), asm.jsge(R0, 0, "out")]
        return []

    def _exit_program(self, fmt: Any) -> list[Any]:
        key = ([asm.call("get_current_pid_tgid"), asm.rsh64(R0, 32), asm.mov64(R7, R0)] if self.by_process
               else [asm.ctx_field(R6, fmt, "id", dst=R7), asm.jslt(R7, 0, "out")])
        delta: list[Any] = [asm.mov64(R8, 0)]
        if self.latency:
            delta += [*take_delta(self.start, R8, "nodelta", key_off=-24), asm.label("nodelta")]
        return [
            asm.mov64(R6, R1), *pid_filter(self.pid, "out"), *self._only_thread("out"), *self._only_syscall(R6, "out"),
            *self._only_result(fmt),
            *key, *delta,
            asm.stx_mem("w", R10, R7, -4),
            asm.ld_map_fd(R1, self.counts_map), asm.mov64(R2, R10), asm.add64(R2, -4), asm.call("map_lookup_elem"),
            asm.jeq(R0, 0, "new"),
            asm.mov64(R1, 1), asm.atomic_add("dw", R0, R1, 0), asm.atomic_add("dw", R0, R8, 8), asm.ja("out"),
            asm.label("new"),
            asm.st_mem("dw", R10, -32, 1), asm.stx_mem("dw", R10, R8, -24),  # value {1, delta} at fp-32
            asm.ld_map_fd(R1, self.counts_map), asm.mov64(R2, R10), asm.add64(R2, -4),
            asm.mov64(R3, R10), asm.add64(R3, -32), asm.mov64(R4, 1), asm.call("map_update_elem"),
            asm.label("out"), asm.mov64(R0, 0), asm.exit_(),
        ]

    def stats(self) -> list[SyscallStat]:
        """Every row so far, most frequent first."""
        import struct

        rows = []
        for key, value in self.counts_map.items():
            k = key if isinstance(key, int) else int.from_bytes(bytes(key), "little")
            count, total = struct.unpack("<QQ", bytes(value))
            name = _comm(k) if self.by_process else syscall_name(k)
            rows.append(SyscallStat(k, name, count, total))
        rows.sort(key=lambda r: (-r.count, r.key))
        return rows

    def top(self, n: int = 10) -> list[SyscallStat]:
        """The ``n`` most frequent rows."""
        return self.stats()[:n]

    def count(self, name_or_key: str | int) -> int:
        """How often one syscall (name or number) or process (pid, with ``by_process``) ran; 0 if never."""
        for row in self.stats():
            if name_or_key in (row.name, row.key):
                return row.count
        return 0

    def clear(self) -> None:
        """Forget the counts so far."""
        self.counts_map.clear()

    def format(self, n: int = 10, milliseconds: bool = False) -> str:
        """bcc-style table of the top ``n`` rows (latency in microseconds, or ``milliseconds`` as bcc's ``-m``)."""
        head = "PID    COMM" if self.by_process else "SYSCALL"
        unit, div = ("ms", 1_000_000) if milliseconds else ("us", 1000)
        lines = [f"{head:<22} {'COUNT':>8}" + (f" {f'TIME ({unit})':>14}" if self.latency else "")]
        for r in self.top(n):
            label = f"{r.key:<6} {r.name}" if self.by_process else r.name
            lines.append(f"{label:<22} {r.count:>8}" + (f" {r.total_ns / div:>14.3f}" if self.latency else ""))
        return "\n".join(lines) + "\n"


def _errno_nr(value: str | int | None) -> int | None:
    """2 for ``"ENOENT"``, ``"2"`` or 2; None for None.

    :raises EBPFError: for anything else.
    """
    import errno as _errno

    if value is None:
        return None
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value < 4096:
        return value
    if isinstance(value, str) and value.upper() in _errno.__dict__ and value.upper().startswith("E"):
        nr = getattr(_errno, value.upper())
        if isinstance(nr, int):
            return nr
    raise EBPFError(f"unknown errno {value!r} (a name such as ENOENT, or a number 1..4095)")


def _comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as fh:
            return fh.read().strip()
    except OSError:
        return "[exited]"

