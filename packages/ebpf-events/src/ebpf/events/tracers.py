"""Ready-made tracers built from the public API: process launches, file opens, TCP connects.

Each tracer loads a small tracepoint program written with :mod:`ebpf.core.asm`, attaches it
with :func:`ebpf.events.tracing.attach_tracepoint` and reads its records from a ring buffer
with :class:`ebpf.events.ringbuf.RingBuffer`::

    from ebpf.events.tracers import exec_tracer

    with exec_tracer() as tracer:
        for event in tracer.events(duration=5):
            print(event.pid, event.comm, event.filename)

``ebpf trace exec|open|tcp-connect`` and ``ebpf demo`` use them.  Tracepoint field offsets are
read from tracefs (``events/<category>/<name>/format``), so nothing depends on a fixed layout.
Requires Linux >= 5.8 (ring buffer) and tracefs (mounted on demand).
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable, Iterator
from typing import Any

from ebpf.core import asm
from ebpf.core.errors import EBPFError
from ebpf.core.records import dataclass

__all__ = ["ExecEvent", "OpenEvent", "ConnectEvent", "Tracer", "exec_tracer", "open_tracer", "tcp_connect_tracer",
           "tracepoint_fields", "TRACERS"]

R0, R1, R2, R3, R6, R7, R10 = asm.R0, asm.R1, asm.R2, asm.R3, asm.R6, asm.R7, asm.R10
_RINGBUF_BYTES = 1 << 20
_PATH_MAX = 256
# pid, ppid (or flags), uid, pad, comm[16], filename[256]
_PATH_EVENT = struct.Struct(f"<IIII16s{_PATH_MAX}s")
# pid, uid, family, sport, dport, pad, saddr[4], daddr[4], saddr6[16], daddr6[16], comm[16]
_CONNECT_EVENT = struct.Struct("<IIHHHH4s4s16s16s16s")
_TCP_SYN_SENT = 2


def _cstr(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("utf-8", "replace")


@dataclass(frozen=True)
class ExecEvent:
    """A process called execve(): ``pid``, parent ``ppid``, ``uid``, the caller's ``comm`` and the program run."""

    pid: int
    ppid: int
    uid: int
    comm: str
    filename: str


@dataclass(frozen=True)
class OpenEvent:
    """A process called openat(): ``pid``, ``uid``, ``comm``, the path and the open ``flags``."""

    pid: int
    uid: int
    comm: str
    filename: str
    flags: int


@dataclass(frozen=True)
class ConnectEvent:
    """A TCP socket started connecting (SYN sent): who, and to which address and port."""

    pid: int
    uid: int
    comm: str
    family: str
    daddr: str
    dport: int


def tracepoint_fields(category: str, name: str) -> dict[str, tuple[int, int]]:
    """The fields of tracepoint ``category:name`` from its tracefs ``format`` file.

    :returns: field name -> (offset, size) in the program's context (see
        :func:`ebpf.events.tracing.tracepoint_format` for types, signedness and a record parser).
    :raises EBPFError: when tracefs cannot be mounted or the tracepoint does not exist.
    """
    from ebpf.events.tracing import tracepoint_format

    return tracepoint_format(category, name).offsets()


def _field(fields: dict[str, tuple[int, int]], name: str, where: str) -> int:
    try:
        return fields[name][0]
    except KeyError:
        raise EBPFError(f"tracepoint {where} has no field {name!r}") from None


def _reserve(rb: Any, size: int) -> list[Any]:
    """r7 = bpf_ringbuf_reserve(rb, size, 0), or exit when the ring is full."""
    return [asm.mov64(R6, R1), asm.ld_map_fd(R1, rb), asm.mov64(R2, size), asm.mov64(R3, 0),
            asm.call("ringbuf_reserve"), asm.jeq(R0, 0, "out"), asm.mov64(R7, R0)]


def _submit() -> list[Any]:
    return [asm.mov64(R1, R7), asm.mov64(R2, 0), asm.call("ringbuf_submit"),
            asm.label("out"), asm.mov64(R0, 0), asm.exit_insn()]


def _pid_uid(pid_off: int, uid_off: int) -> list[Any]:
    return [asm.call("get_current_pid_tgid"), asm.rsh64(R0, 32), asm.stx_mem("w", R7, R0, pid_off),
            asm.call("get_current_uid_gid"), asm.stx_mem("w", R7, R0, uid_off)]


def _comm(off: int) -> list[Any]:
    return [asm.mov64(R1, R7), asm.add64(R1, off), asm.mov64(R2, 16), asm.call("get_current_comm")]


def _user_string(ctx_off: int, dst_off: int) -> list[Any]:
    """probe_read_user_str(event + dst_off, PATH_MAX, ctx->field at ctx_off)."""
    return [asm.mov64(R1, R7), asm.add64(R1, dst_off), asm.mov64(R2, _PATH_MAX),
            asm.ldx_mem("dw", R3, R6, ctx_off), asm.call("probe_read_user_str")]


def _parent_tgid(dst_off: int) -> list[Any]:
    """event->ppid = current->real_parent->tgid, read through BTF offsets of task_struct."""
    from ebpf.core.btf import Struct, load_vmlinux

    task = load_vmlinux().find("task_struct")
    if not isinstance(task, Struct):
        raise EBPFError("vmlinux BTF has no struct task_struct")
    parent_off, tgid_off = task.member("real_parent").offset, task.member("tgid").offset
    return [
        asm.st_mem("dw", R10, -8, 0),
        asm.call("get_current_task"),
        asm.mov64(R3, R0), asm.add64(R3, parent_off),
        asm.mov64(R1, R10), asm.add64(R1, -8), asm.mov64(R2, 8), asm.call("probe_read_kernel"),
        asm.ldx_mem("dw", R3, R10, -8), asm.add64(R3, tgid_off),
        asm.mov64(R1, R7), asm.add64(R1, dst_off), asm.mov64(R2, 4), asm.call("probe_read_kernel"),
    ]


def _exec_program(rb: Any) -> list[Any]:
    fields = tracepoint_fields("syscalls", "sys_enter_execve")
    return [*_reserve(rb, _PATH_EVENT.size), asm.st_mem("w", R7, 12, 0), *_pid_uid(0, 8), *_parent_tgid(4),
            *_comm(16), *_user_string(_field(fields, "filename", "sys_enter_execve"), 32), *_submit()]


def _open_program(rb: Any) -> list[Any]:
    fields = tracepoint_fields("syscalls", "sys_enter_openat")
    flags = _field(fields, "flags", "sys_enter_openat")
    return [*_reserve(rb, _PATH_EVENT.size), asm.st_mem("w", R7, 12, 0), *_pid_uid(0, 8),
            asm.ldx_mem("w", R0, R6, flags), asm.stx_mem("w", R7, R0, 4),
            *_comm(16), *_user_string(_field(fields, "filename", "sys_enter_openat"), 32), *_submit()]


def _connect_program(rb: Any) -> list[Any]:
    f = tracepoint_fields("sock", "inet_sock_set_state")
    where = "inet_sock_set_state"
    newstate = _field(f, "newstate", where)
    copy: list[Any] = []
    # (ctx field, event offset, bytes): u16 family/sport/dport, then the addresses word by word
    for name, dst, size in (("family", 8, 2), ("sport", 10, 2), ("dport", 12, 2), ("saddr", 16, 4),
                            ("daddr", 20, 4), ("saddr_v6", 24, 16), ("daddr_v6", 40, 16)):
        src = _field(f, name, where)
        width = "h" if size == 2 else "w"
        for i in range(0, size, 2 if size == 2 else 4):
            copy += [asm.ldx_mem(width, R0, R6, src + i), asm.stx_mem(width, R7, R0, dst + i)]
    return [
        asm.ldx_mem("w", R0, R1, newstate), asm.jne(R0, _TCP_SYN_SENT, "skip"),
        *_reserve(rb, _CONNECT_EVENT.size), asm.st_mem("h", R7, 14, 0), *_pid_uid(0, 4), *copy, *_comm(56),
        *_submit(), asm.label("skip"), asm.mov64(R0, 0), asm.exit_insn(),
    ]


def _parse_exec(raw: Any) -> ExecEvent:
    pid, ppid, uid, _, comm, filename = _PATH_EVENT.unpack_from(bytes(raw))
    return ExecEvent(pid, ppid, uid, _cstr(comm), _cstr(filename))


def _parse_open(raw: Any) -> OpenEvent:
    pid, flags, uid, _, comm, filename = _PATH_EVENT.unpack_from(bytes(raw))
    return OpenEvent(pid, uid, _cstr(comm), _cstr(filename), flags)


def _parse_connect(raw: Any) -> ConnectEvent:
    pid, uid, family, _sport, dport, _, _s4, d4, _s6, d6, comm = _CONNECT_EVENT.unpack_from(bytes(raw))
    import ipaddress  # deferred: start-up time (only tcpconnect's events need it)
    import socket  # deferred: start-up time (as ipaddress)

    if family == socket.AF_INET6:
        addr, fam = str(ipaddress.IPv6Address(d6)), "ipv6"
    else:
        addr, fam = str(ipaddress.IPv4Address(d4)), "ipv4"
    return ConnectEvent(pid, uid, _cstr(comm), fam, addr, dport)


class Tracer:
    """A loaded, attached tracepoint program and the ring buffer it writes to.

    Use as a context manager (or call :meth:`close`): the link, program, reader and map are
    released in that order.

    :param name: the tracer's name (``"exec"``).
    :param tracepoint: ``"category:name"``.
    :param build: ``build(ringbuf_map) -> instructions``.
    :param parser: turns one record into an event.
    :raises EBPFError: when loading or attaching fails (the map is released first).
    """

    def __init__(self, name: str, tracepoint: str, build: Callable[[Any], list[Any]],
                 parser: Callable[[Any], Any]) -> None:
        """Create the ring buffer, load and attach the program, open the reader."""
        from ebpf.core.maps import create_ringbuf_map
        from ebpf.core.programs import load_program
        from ebpf.events.ringbuf import RingBuffer
        from ebpf.events.tracing import attach_tracepoint

        self.name = name
        self.tracepoint = tracepoint
        self._pending: list[Any] = []
        self._closers: list[Callable[[], None]] = []
        try:
            self.map = create_ringbuf_map(_RINGBUF_BYTES, name=f"trace_{name}"[:15])
            self._closers.append(self.map.close)
            self.program = load_program(prog_type="tracepoint", insns=build(self.map), name=f"trace_{name}"[:15],
                                        maps=(self.map,))
            self._closers.append(self.program.close)
            self.reader = RingBuffer(self.map, self._pending.append, parser=parser)
            self._closers.append(self.reader.close)
            self.link = attach_tracepoint(self.program, tracepoint)
            self._closers.append(self.link.close)
        except BaseException:
            self.close()
            raise

    def poll(self, timeout_ms: float = 100) -> list[Any]:
        """Wait up to ``timeout_ms`` for events; returns those that arrived (parsed)."""
        self.reader.poll(timeout_ms)
        out, self._pending[:] = list(self._pending), []
        return out

    def events(self, duration: float | None = None) -> Iterator[Any]:
        """Yield events as they arrive, for ``duration`` seconds (None: until interrupted)."""
        deadline = None if duration is None else time.monotonic() + duration
        while True:
            left = 0.1 if deadline is None else min(0.1, deadline - time.monotonic())
            if left <= 0:
                break
            yield from self.poll(left * 1000)
        yield from self.poll(0)

    def close(self) -> None:
        """Detach and release everything (idempotent)."""
        while self._closers:
            self._closers.pop()()

    def __enter__(self) -> Tracer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def exec_tracer() -> Tracer:
    """A :class:`Tracer` of ``syscalls:sys_enter_execve`` yielding :class:`ExecEvent`.

    :returns: the attached tracer (close it, or use ``with``).
    :raises EBPFError: when the program cannot be loaded or attached.
    """
    return Tracer("exec", "syscalls:sys_enter_execve", _exec_program, _parse_exec)


def open_tracer() -> Tracer:
    """A :class:`Tracer` of ``syscalls:sys_enter_openat`` yielding :class:`OpenEvent`.

    :returns: the attached tracer.
    :raises EBPFError: when the program cannot be loaded or attached.
    """
    return Tracer("open", "syscalls:sys_enter_openat", _open_program, _parse_open)


def tcp_connect_tracer() -> Tracer:
    """A :class:`Tracer` of ``sock:inet_sock_set_state`` (state TCP_SYN_SENT) yielding :class:`ConnectEvent`.

    :returns: the attached tracer.
    :raises EBPFError: when the program cannot be loaded or attached.
    """
    return Tracer("tcp_connect", "sock:inet_sock_set_state", _connect_program, _parse_connect)


#: Tracer name (as in ``ebpf trace NAME``) -> factory.
TRACERS: dict[str, Callable[[], Tracer]] = {
    "exec": exec_tracer,
    "open": open_tracer,
    "tcp-connect": tcp_connect_tracer,
}
