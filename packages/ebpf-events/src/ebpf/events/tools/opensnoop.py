"""opensnoop: file opens with the returned fd or the error, and the flags by name (bcc ``opensnoop``).

``sys_enter_openat`` (and ``sys_enter_open`` where the architecture has it) stores the path
and flags per thread; ``sys_exit_*`` adds the return value and sends the record through a ring
buffer, so every line has the fd (or ``ENOENT``) of that very call.  Filters: ``pid`` in the
kernel, ``comm`` and ``failed`` here.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from dataclasses import asdict
from typing import Any

from ebpf.core import asm
from ebpf.core.asm import R0, R1, R2, R3, R4, R6, R7, R10
from ebpf.core.errors import EBPFError
from ebpf.core.records import dataclass
from ebpf.events.tools._common import (
    EventToolBase,
    check_common,
    comm_into,
    errno_name,
    pid_filter,
    scratch_event,
    user_str_into,
)

__all__ = ["OpenSnoop", "OpenEvent", "open_flag_names"]

_PATH = 256
# pid, tid, uid, flags, ret, comm[16], path[256]
_EVENT = struct.Struct(f"<IIIIq16s{_PATH}s")
# O_* names Python knows on this platform, the access mode handled apart
_FLAGS = [(name, getattr(os, name)) for name in (
    "O_CREAT", "O_EXCL", "O_NOCTTY", "O_TRUNC", "O_APPEND", "O_NONBLOCK", "O_DSYNC", "O_ASYNC", "O_DIRECT",
    "O_LARGEFILE", "O_DIRECTORY", "O_NOFOLLOW", "O_NOATIME", "O_CLOEXEC", "O_PATH",
) if getattr(os, name, 0)]
_O_TMPFILE = getattr(os, "O_TMPFILE", 0)  # includes O_DIRECTORY
_O_SYNC_ONLY = getattr(os, "O_SYNC", 0) & ~getattr(os, "O_DSYNC", 0)  # __O_SYNC: O_SYNC is __O_SYNC|O_DSYNC


def open_flag_names(flags: int) -> str:
    """``"O_WRONLY|O_CREAT|O_CLOEXEC"`` for open flags; unknown bits as hex."""
    mode = flags & 3
    names = [{0: "O_RDONLY", 1: "O_WRONLY", 2: "O_RDWR"}.get(mode, "O_ACCMODE")]
    rest = flags & ~3
    if _O_SYNC_ONLY and rest & _O_SYNC_ONLY and rest & getattr(os, "O_DSYNC", 0):
        names.append("O_SYNC")
        rest &= ~getattr(os, "O_SYNC", 0)
    if _O_TMPFILE and rest & _O_TMPFILE == _O_TMPFILE:
        names.append("O_TMPFILE")
        rest &= ~_O_TMPFILE
    for name, bit in _FLAGS:
        if rest & bit:
            names.append(name)
            rest &= ~bit
    if rest:
        names.append(hex(rest))
    return "|".join(names)


@dataclass(frozen=True)
class OpenEvent:
    """One open: who (``pid``, ``tid``, ``uid``, ``comm``), the ``path``, ``flags`` (and their
    names), and the result: ``fd`` (None on failure) or ``errno``/``error`` (``"ENOENT"``)."""

    pid: int
    tid: int
    uid: int
    comm: str
    ret: int
    fd: int | None
    errno: int
    error: str
    flags: int
    flag_names: str
    path: str

    @property
    def failed(self) -> bool:
        """True when the open returned an error."""
        return self.ret < 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (``filename`` too, the key ``ebpf trace open`` always had)."""
        return {**asdict(self), "filename": self.path}


def parse_open(raw: Any) -> OpenEvent:
    """Decode one ring buffer record."""
    pid, tid, uid, flags, ret, comm, path = _EVENT.unpack_from(bytes(raw))
    err = -ret if ret < 0 else 0
    return OpenEvent(pid, tid, uid, comm.split(b"\0", 1)[0].decode("utf-8", "replace"), ret,
                     ret if ret >= 0 else None, err, errno_name(err) if err else "", flags, open_flag_names(flags),
                     path.split(b"\0", 1)[0].decode("utf-8", "replace"))


class OpenSnoop(EventToolBase):
    """Trace open()/openat() from now on.

    :param pid: only this process (filtered in the kernel).
    :param comm: only processes with this command name.
    :param failed: only failed opens.
    :raises EBPFError: bad arguments (before loading).
    """

    def __init__(self, *, pid: int | None = None, comm: str | None = None, failed: bool = False) -> None:
        """Create the maps, load and attach the programs."""
        super().__init__()
        check_common(pid=pid)
        if comm is not None and (not isinstance(comm, str) or not comm):
            raise EBPFError(f"comm must be a non-empty str, not {comm!r}")
        self.pid, self.comm, self.failed = pid, comm, failed
        from ebpf.core.errors import AttachError
        from ebpf.core.maps import create_hash_map, create_percpu_array_map
        from ebpf.core.programs import load_program
        from ebpf.events.tracing import attach_tracepoint, tracepoint_format

        try:
            ring = self._open_ring("opensnoop", parse_open)
            self.scratch = self._hold(create_percpu_array_map(1, value_size=_EVENT.size, name="open_scratch"))
            self.pending = self._hold(create_hash_map(10240, key_size=8, value_size=_EVENT.size, name="open_pending"))
            maps = (ring, self.scratch, self.pending)
            for call in ("openat", "open"):
                try:
                    enter_fmt = tracepoint_format("syscalls", f"sys_enter_{call}")
                    exit_fmt = tracepoint_format("syscalls", f"sys_exit_{call}")
                except AttachError:
                    if call == "openat":
                        raise
                    continue  # architectures without open(2)
                for tp, insns in ((f"sys_enter_{call}", self._enter(enter_fmt)), (f"sys_exit_{call}",
                                                                                  self._exit(exit_fmt, ring))):
                    prog = self._hold(load_program(prog_type="tracepoint", insns=insns, name=tp[4:19], maps=maps))
                    self._hold(attach_tracepoint(prog, "syscalls", tp))
        except BaseException:
            self.close()
            raise

    def _enter(self, fmt: Any) -> list[Any]:
        return [
            asm.mov64(R6, R1), *pid_filter(self.pid, "out"), *scratch_event(self.scratch, R7, "out"),
            asm.call("get_current_pid_tgid"), asm.stx_mem("w", R7, R0, 4), asm.rsh64(R0, 32),
            asm.stx_mem("w", R7, R0, 0), asm.call("get_current_uid_gid"), asm.stx_mem("w", R7, R0, 8),
            asm.ctx_field(R6, fmt, "flags", dst=R0), asm.stx_mem("w", R7, R0, 12), asm.st_mem("dw", R7, 16, 0),
            *comm_into(R7, 24), asm.ctx_field(R6, fmt, "filename", dst=R3), *user_str_into(R7, 40, _PATH, R3),
            asm.call("get_current_pid_tgid"), asm.stx_mem("dw", R10, R0, -16),
            asm.ld_map_fd(R1, self.pending), asm.mov64(R2, R10), asm.add64(R2, -16), asm.mov64(R3, R7),
            asm.mov64(R4, 0), asm.call("map_update_elem"),
            asm.label("out"), asm.mov64(R0, 0), asm.exit_(),
        ]

    def _exit(self, fmt: Any, ring: Any) -> list[Any]:
        return [
            asm.mov64(R6, R1), asm.call("get_current_pid_tgid"), asm.stx_mem("dw", R10, R0, -16),
            asm.ld_map_fd(R1, self.pending), asm.mov64(R2, R10), asm.add64(R2, -16), asm.call("map_lookup_elem"),
            asm.jeq(R0, 0, "out"), asm.mov64(R7, R0),
            asm.ctx_field(R6, fmt, "ret", dst=R0), asm.stx_mem("dw", R7, R0, 16),
            asm.ld_map_fd(R1, ring), asm.mov64(R2, R7), asm.mov64(R3, _EVENT.size), asm.mov64(R4, 0),
            asm.call("ringbuf_output"),
            asm.ld_map_fd(R1, self.pending), asm.mov64(R2, R10), asm.add64(R2, -16), asm.call("map_delete_elem"),
            asm.label("out"), asm.mov64(R0, 0), asm.exit_(),
        ]

    def events(self, duration: float | None = None) -> Iterator[OpenEvent]:
        """Yield opens as they return, ``comm``/``failed`` applied."""
        for event in self.raw_events(duration):
            if event is None:
                continue
            if (self.comm is None or event.comm == self.comm) and (not self.failed or event.failed):
                yield event
