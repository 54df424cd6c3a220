"""execsnoop: one line per exec, with argv, parent and return code (bcc/libbpf-tools ``execsnoop``).

``sys_enter_execve`` copies pid, ppid, uid, the path and up to :data:`MAX_ARGS` arguments into a
per-process pending record (built in a per-CPU scratch map: it is larger than the BPF stack);
``sys_exit_execve`` adds the return code and the new program's ``comm`` and sends it through a
ring buffer.  A shell or ``execvp()`` searching ``$PATH`` calls execve once per directory, each
failing with ENOENT until one succeeds: those attempts are folded here, so a successful exec
is one line, and (with ``failed=True``) a command never found is one line too, the last
attempt, after :data:`SETTLE_S` without a success from that process.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Iterator
from dataclasses import asdict
from typing import Any

from ebpf.core import asm
from ebpf.core.asm import R0, R1, R2, R3, R4, R6, R7, R8, R10
from ebpf.core.records import dataclass
from ebpf.events.tools._common import (
    EventToolBase,
    check_common,
    comm_into,
    errno_name,
    scratch_event,
    user_str_into,
)

__all__ = ["ExecSnoop", "ExecEvent", "MAX_ARGS", "ARG_SIZE", "SETTLE_S"]

#: Arguments copied per exec, and bytes per argument (longer ones are cut).
MAX_ARGS, ARG_SIZE = 16, 128
#: How long a failed attempt waits for a later success of the same process before it is shown.
SETTLE_S = 0.25
_PATH = 256
# pid, ppid, uid, ret, argc, pad, comm[16], filename[128], args[MAX_ARGS][ARG_SIZE]
_HEAD = struct.Struct(f"<IIIiII16s{_PATH}s")
_ARGS_OFF = _HEAD.size
_SIZE = _ARGS_OFF + MAX_ARGS * ARG_SIZE


def _cstr(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("utf-8", "replace")


@dataclass(frozen=True)
class ExecEvent:
    """One exec: ``pid``, parent ``ppid``, ``uid``, the new ``comm``, ``ret`` (0 or -errno), the
    ``filename`` passed to execve, ``argv`` (at most MAX_ARGS, each cut at ARG_SIZE - 1 bytes)
    and ``error`` (``"ENOENT"``, or ``""`` on success)."""

    pid: int
    ppid: int
    uid: int
    comm: str
    ret: int
    filename: str
    argv: tuple[str, ...]
    error: str = ""

    @property
    def args(self) -> str:
        """argv joined by spaces (bcc's ARGS column)."""
        return " ".join(self.argv)

    @property
    def quoted_args(self) -> str:
        """argv with each argument in double quotes (inner ones escaped), as bcc's ``execsnoop -q``."""
        return " ".join('"' + arg.replace('"', '\\"') + '"' for arg in self.argv)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (argv as a list)."""
        d = asdict(self)
        d["argv"] = list(self.argv)
        return d


def parse_exec(raw: Any) -> ExecEvent:
    """Decode one ring buffer record."""
    data = bytes(raw)
    pid, ppid, uid, ret, argc, _, comm, filename = _HEAD.unpack_from(data)
    argc = min(argc, MAX_ARGS)
    argv = tuple(_cstr(data[_ARGS_OFF + i * ARG_SIZE:_ARGS_OFF + (i + 1) * ARG_SIZE]) for i in range(argc))
    return ExecEvent(pid, ppid, uid, _cstr(comm), ret, _cstr(filename), argv, errno_name(-ret) if ret < 0 else "")


class ExecSnoop(EventToolBase):
    """Trace execs from now on.

    :param pid: only execs by this process or its children (the parent of the exec'ing process).
    :param failed: also report execs that failed (folded: one line per process and command).
    :raises EBPFError: bad arguments (before loading).
    """

    def __init__(self, *, pid: int | None = None, failed: bool = False) -> None:
        """Create the maps, load and attach both programs."""
        super().__init__()
        check_common(pid=pid)
        self.pid, self.failed = pid, failed
        from ebpf.core.maps import create_hash_map, create_percpu_array_map
        from ebpf.core.programs import load_program
        from ebpf.events.tracers import _parent_tgid
        from ebpf.events.tracing import attach_tracepoint, tracepoint_format

        enter_fmt = tracepoint_format("syscalls", "sys_enter_execve")
        exit_fmt = tracepoint_format("syscalls", "sys_exit_execve")
        try:
            ring = self._open_ring("execsnoop", parse_exec)
            self.scratch = self._hold(create_percpu_array_map(1, value_size=_SIZE, name="exec_scratch"))
            self.pending = self._hold(create_hash_map(10240, key_size=4, value_size=_SIZE, name="exec_pending"))
            maps = (ring, self.scratch, self.pending)
            argv: list[Any] = [asm.ctx_field(R6, enter_fmt, "argv", dst=R8)]
            for i in range(MAX_ARGS):
                argv += [asm.mov64(R1, R10), asm.add64(R1, -16), asm.mov64(R2, 8), asm.mov64(R3, R8),
                         asm.add64(R3, 8 * i), asm.call("probe_read_user"), asm.jne(R0, 0, "args_done"),
                         asm.ldx_mem("dw", R3, R10, -16), asm.jeq(R3, 0, "args_done"),
                         *user_str_into(R7, _ARGS_OFF + i * ARG_SIZE, ARG_SIZE, R3), asm.st_mem("w", R7, 16, i + 1)]
            enter = [
                asm.mov64(R6, R1), *scratch_event(self.scratch, R7, "out"),
                asm.call("get_current_pid_tgid"), asm.rsh64(R0, 32), asm.stx_mem("w", R7, R0, 0),
                asm.call("get_current_uid_gid"), asm.stx_mem("w", R7, R0, 8),
                asm.st_mem("w", R7, 12, 0), asm.st_mem("w", R7, 16, 0), *_parent_tgid(4), *self._filter(),
                *comm_into(R7, 24),
                asm.ctx_field(R6, enter_fmt, "filename", dst=R3), *user_str_into(R7, 40, _PATH, R3),
                *argv, asm.label("args_done"),
                asm.call("get_current_pid_tgid"), asm.rsh64(R0, 32), asm.stx_mem("w", R10, R0, -8),
                asm.ld_map_fd(R1, self.pending), asm.mov64(R2, R10), asm.add64(R2, -8), asm.mov64(R3, R7),
                asm.mov64(R4, 0), asm.call("map_update_elem"),
                asm.label("out"), asm.mov64(R0, 0), asm.exit_(),
            ]
            leave = [
                asm.mov64(R6, R1), asm.call("get_current_pid_tgid"), asm.rsh64(R0, 32), asm.stx_mem("w", R10, R0, -8),
                asm.ld_map_fd(R1, self.pending), asm.mov64(R2, R10), asm.add64(R2, -8), asm.call("map_lookup_elem"),
                asm.jeq(R0, 0, "out"), asm.mov64(R7, R0),
                asm.ctx_field(R6, exit_fmt, "ret", dst=R0), asm.stx_mem("w", R7, R0, 12), *comm_into(R7, 24),
                asm.ld_map_fd(R1, ring), asm.mov64(R2, R7), asm.mov64(R3, _SIZE), asm.mov64(R4, 0),
                asm.call("ringbuf_output"),
                asm.ld_map_fd(R1, self.pending), asm.mov64(R2, R10), asm.add64(R2, -8), asm.call("map_delete_elem"),
                asm.label("out"), asm.mov64(R0, 0), asm.exit_(),
            ]
            for tp, insns in (("sys_enter_execve", enter), ("sys_exit_execve", leave)):
                prog = self._hold(load_program(prog_type="tracepoint", insns=insns, name=f"exec_{tp[4:8]}", maps=maps))
                self._hold(attach_tracepoint(prog, "syscalls", tp))
        except BaseException:
            self.close()
            raise

    def _filter(self) -> list[Any]:
        """Keep the exec when the process or its parent is ``pid`` (a forking parent's children count)."""
        if self.pid is None:
            return []
        return [asm.ldx_mem("w", R0, R7, 0), asm.jeq(R0, self.pid, "keep"), asm.ldx_mem("w", R0, R7, 4),
                asm.jne(R0, self.pid, "out"), asm.label("keep")]

    def events(self, duration: float | None = None) -> Iterator[ExecEvent]:
        """Yield execs as they complete, PATH-search attempts folded (see the module doc)."""
        waiting: dict[int, tuple[float, ExecEvent]] = {}  # pid -> (since, last failed attempt)

        def due(now: float | None) -> Iterator[ExecEvent]:
            for pid, (since, ev) in list(waiting.items()):
                if now is None or now - since >= SETTLE_S:
                    del waiting[pid]
                    yield ev

        for event in self.raw_events(duration):
            if event is not None:
                if event.ret == 0:
                    waiting.pop(event.pid, None)
                    yield event
                elif self.failed:
                    waiting[event.pid] = (time.monotonic(), event)
            yield from due(time.monotonic())
        yield from due(None)
