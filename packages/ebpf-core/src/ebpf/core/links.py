"""Links: the one handle for anything attached.

:class:`BPFLink` wraps a kernel link fd (BPF_LINK_CREATE, BPF_RAW_TRACEPOINT_OPEN);
:class:`PerfEventLink` a perf event (with or without a bpf link on it);
:class:`CallbackLink` legacy attachments (netlink XDP, TC filters, BPF_PROG_ATTACH)
detached by a callable.  All of them are context managers; closing a link detaches
it unless it is pinned.
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ebpf.core._sys import commands
from ebpf.core._sys import perf as _perf
from ebpf.core._sys.attrs import LinkInfo as _RawLinkInfo
from ebpf.core._sys.syscall import close_fd
from ebpf.core.errors import BPFSyscallError, EBPFError, NotSupportedError
from ebpf.core.pins import check_pin_path, fd_kind, open_pinned
from ebpf.core.types import AttachType, LinkType, ProgType

if TYPE_CHECKING:  # pragma: no cover
    from ebpf.core.programs import Program

__all__ = [
    "Link",
    "BPFLink",
    "PerfEventLink",
    "CallbackLink",
    "LinkInfo",
    "Stats",
    "create_link",
    "attach_raw_tracepoint",
    "attach_perf_event",
    "links",
    "enable_stats",
    "BPF_F_REPLACE",
]

BPF_F_REPLACE = 1 << 2
#: ``enum bpf_perf_event_type``
PERF_EVENT_TYPES = {0: "unspec", 1: "uprobe", 2: "uretprobe", 3: "kprobe", 4: "kretprobe", 5: "tracepoint", 6: "event"}


@dataclass(frozen=True)
class LinkInfo:
    """``struct bpf_link_info``, decoded.

    The common fields are always set; the others only for the link types that have them
    (else None).  ``details`` holds the rest of the per-type fields by their kernel names.
    """

    type: LinkType | int
    id: int
    prog_id: int
    attach_type: AttachType | int | None = None
    cgroup_id: int | None = None
    ifindex: int | None = None
    tp_name: str | None = None
    target_obj_id: int | None = None
    target_btf_id: int | None = None
    netns_ino: int | None = None
    map_id: int | None = None
    perf_event_type: str | None = None
    count: int | None = None
    details: dict[str, Any] = field(default_factory=dict)


def _enum(cls: Any, value: int) -> Any:
    try:
        return cls(value)
    except ValueError:
        return value


def _name_call(fd: int, ptr_off: int, len_off: int, length: int) -> str:
    """Second BPF_OBJ_GET_INFO_BY_FD with a name buffer at union offsets ``ptr_off``/``len_off``."""
    if length <= 0:
        return ""
    buf = ctypes.create_string_buffer(length + 1)
    info = _RawLinkInfo()
    raw = bytearray(48)
    struct.pack_into("<Q", raw, ptr_off, ctypes.addressof(buf))
    struct.pack_into("<I", raw, len_off, length + 1)
    ctypes.memmove(info.extra, bytes(raw), 48)
    commands.obj_info(fd, _RawLinkInfo, info)
    return buf.value.decode(errors="replace")


def _decode(fd: int, raw: _RawLinkInfo) -> LinkInfo:
    u = bytes(raw.extra)
    typ = _enum(LinkType, raw.type)
    w = {"type": typ, "id": raw.id, "prog_id": raw.prog_id}
    d: dict[str, Any] = {}

    def u32(off: int) -> int:
        return int(struct.unpack_from("<I", u, off)[0])

    def u64(off: int) -> int:
        return int(struct.unpack_from("<Q", u, off)[0])

    if typ == LinkType.RAW_TRACEPOINT:
        w["tp_name"] = _name_call(fd, 0, 8, u32(8))
        d["cookie"] = u64(16)
    elif typ == LinkType.TRACING:
        w.update(attach_type=_enum(AttachType, u32(0)), target_obj_id=u32(4), target_btf_id=u32(8))
        d["cookie"] = u64(16)
    elif typ == LinkType.CGROUP:
        w.update(cgroup_id=u64(0), attach_type=_enum(AttachType, u32(8)))
    elif typ == LinkType.ITER:
        d["target_name"] = _name_call(fd, 0, 8, u32(8))
        w["map_id"] = u32(12) or None
    elif typ == LinkType.NETNS:
        w.update(netns_ino=u32(0), attach_type=_enum(AttachType, u32(4)))
    elif typ == LinkType.XDP:
        w["ifindex"] = u32(0)
    elif typ in (LinkType.TCX, LinkType.NETKIT):
        w.update(ifindex=u32(0), attach_type=_enum(AttachType, u32(4)))
    elif typ == LinkType.STRUCT_OPS:
        w["map_id"] = u32(0)
    elif typ == LinkType.SOCKMAP:
        w.update(map_id=u32(0), attach_type=_enum(AttachType, u32(4)))
    elif typ == LinkType.NETFILTER:
        pf, hooknum, priority, flags = struct.unpack_from("<IIiI", u, 0)
        d.update(pf=pf, hooknum=hooknum, priority=priority, flags=flags)
    elif typ == LinkType.KPROBE_MULTI:
        w["count"] = u32(8)
        d.update(flags=u32(12), missed=u64(16))
    elif typ == LinkType.UPROBE_MULTI:
        w["count"] = u32(36)
        d.update(path_size=u32(32), flags=u32(40), pid=u32(44))
    elif typ == LinkType.PERF_EVENT:
        kind = PERF_EVENT_TYPES.get(u32(0), str(u32(0)))
        w["perf_event_type"] = kind
        if kind == "tracepoint":
            w["tp_name"] = _name_call(fd, 8, 16, u32(16))
            d["cookie"] = u64(24)
        elif kind in ("kprobe", "kretprobe"):
            d.update(func_name=_name_call(fd, 8, 16, u32(16)), offset=u32(20), addr=u64(24), missed=u64(32),
                     cookie=u64(40))
        elif kind in ("uprobe", "uretprobe"):
            d.update(file_name=_name_call(fd, 8, 16, u32(16)), offset=u32(20), cookie=u64(24),
                     ref_ctr_offset=u64(32))
        elif kind == "event":
            d.update(config=u64(8), event_type=u32(16), cookie=u64(24))
    return LinkInfo(**w, details=d)


def _link_info(fd: int) -> LinkInfo:
    return _decode(fd, commands.link_info(fd))


class Link:
    """Base of every attachment handle: ``detach()``, ``close()``, ``with``.

    :ivar program: the attached :class:`~ebpf.core.programs.Program` (kept alive), or None.
    :ivar description: what is attached where, for people.
    """

    def __init__(self, program: Program | None = None, description: str = "") -> None:
        """Base initialiser (subclasses own the attachment)."""
        self.program = program
        self.description = description

    @property
    def fd(self) -> int:
        """The link's fd, or -1 when the attachment has none."""
        return -1

    @property
    def closed(self) -> bool:
        """True once the link was closed or detached."""
        return False

    def detach(self) -> None:
        """Detach the program (even when pinned, where the kernel allows it)."""
        raise NotSupportedError(f"{type(self).__name__} cannot detach")

    def close(self) -> None:
        """Release this handle; the program is detached unless the link is pinned."""
        self.detach()

    def pin(self, path: str) -> None:
        """Pin the link on bpffs so the attachment outlives this process.

        :raises NotSupportedError: for attachments without a kernel link.
        """
        raise NotSupportedError(f"{self._what()} is not a kernel bpf link and cannot be pinned")

    def info(self) -> LinkInfo:
        """The kernel's view of the link.

        :raises NotSupportedError: for attachments without a kernel link.
        """
        raise NotSupportedError(f"{self._what()} is not a kernel bpf link and has no link info")

    def update(self, new_program: Program, old_program: Program | None = None) -> None:
        """Replace the attached program atomically.

        :raises NotSupportedError: for attachments without a kernel link.
        """
        raise NotSupportedError(f"{self._what()} is not a kernel bpf link and cannot be updated")

    def _what(self) -> str:
        return f"{type(self).__name__}({self.description})" if self.description else type(self).__name__

    def __enter__(self) -> Link:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = " closed" if self.closed else ""
        return f"<{type(self).__name__} {self.description!r}{state}>"

    @classmethod
    def from_id(cls, link_id: int) -> BPFLink:
        """Open the kernel link with id ``link_id``.

        :raises BPFSyscallError: ENOENT when there is no such link.
        """
        if not isinstance(link_id, int) or link_id <= 0:
            raise EBPFError(f"link id must be a positive int, not {link_id!r}")
        return BPFLink(commands.fd_by_id("link", link_id), description=f"link id {link_id}")

    @classmethod
    def from_pinned(cls, path: str) -> BPFLink:
        """Open the link pinned at ``path``.

        :raises EBPFError: when the path is not on bpffs or holds a program or map.
        """
        link = BPFLink(open_pinned(path, "link"), description=f"pinned at {path}")
        link._pin_path = os.fspath(path)
        return link

    @classmethod
    def from_fd(cls, fd: int) -> BPFLink:
        """A :class:`BPFLink` for an existing link fd (duplicated: the caller keeps ``fd``).

        :raises EBPFError: when ``fd`` is not a bpf link.
        """
        if not isinstance(fd, int) or isinstance(fd, bool) or fd < 0 or fd_kind(fd) != "link":
            raise EBPFError(f"fd {fd!r} is not a bpf link")
        return BPFLink(os.dup(fd))


class BPFLink(Link):
    """A kernel bpf link fd (BPF_LINK_CREATE, BPF_RAW_TRACEPOINT_OPEN); owns the fd.

    Closing the fd detaches the program unless the link is pinned.
    """

    def __init__(self, fd: int, program: Program | None = None, description: str = "") -> None:
        """Wrap the link ``fd`` (now owned by this object)."""
        super().__init__(program, description)
        self._fd = fd
        self._pin_path: str | None = None
        self._finalizer = weakref.finalize(self, close_fd, fd)

    @property
    def fd(self) -> int:
        """The link fd.

        :raises EBPFError: when the link is closed.
        """
        if self._fd < 0:
            raise EBPFError(f"link {self.description!r} is closed")
        return self._fd

    @property
    def closed(self) -> bool:
        """True after close()/detach()."""
        return self._fd < 0

    @property
    def pin_path(self) -> str | None:
        """Where this link was pinned (by :meth:`pin` or :meth:`from_pinned`), else None."""
        return self._pin_path

    def close(self) -> None:
        """Close the fd; the attachment ends unless the link is pinned."""
        if self._fd >= 0:
            self._finalizer()
            self._fd = -1

    def detach(self) -> None:
        """Detach the program now (BPF_LINK_DETACH, even when pinned) and close the fd.

        Link types without BPF_LINK_DETACH (raw tracepoints, tracing) are released by
        removing this link's pin and closing the fd.
        """
        if self._fd < 0:
            return
        try:
            commands.link_detach(self._fd)
        except BPFSyscallError as exc:
            if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, 524):
                raise
            self.unpin()
        self.close()

    def pin(self, path: str) -> None:
        """Pin the link at ``path`` on bpffs (the attachment then outlives this process).

        :raises EBPFError: when ``path`` is not on bpffs.
        """
        text = check_pin_path(path)
        commands.obj_pin(self.fd, text)
        self._pin_path = text

    def unpin(self) -> None:
        """Remove the pin made by :meth:`pin` (the link ends when its last fd closes)."""
        if self._pin_path is not None:
            try:
                os.unlink(self._pin_path)
            except FileNotFoundError:
                pass
            self._pin_path = None

    def info(self) -> LinkInfo:
        """The kernel's :class:`LinkInfo` for this link."""
        return _link_info(self.fd)

    def update(self, new_program: Program, old_program: Program | None = None) -> None:
        """Replace the program (BPF_LINK_UPDATE); with ``old_program`` only if it is still attached.

        :raises BPFSyscallError: EOPNOTSUPP for link types that cannot be updated
            (e.g. raw tracepoints), EPERM when ``old_program`` is not the attached one.
        """
        flags, old_fd = (BPF_F_REPLACE, old_program.fd) if old_program is not None else (0, 0)
        commands.link_update(self.fd, new_program.fd, flags=flags, old_prog_fd=old_fd)
        self.program = new_program


class PerfEventLink(Link):
    """A perf event with a program on it (tracepoints, kprobes, uprobes, perf_event programs).

    ``bpf_link_fd`` is the BPF_LINK_CREATE link over the event (Linux >= 5.15), or -1
    when the program was attached with PERF_EVENT_IOC_SET_BPF; then pin/info/update are
    not available.  Owns both fds; closing disables the event and closes them.
    """

    def __init__(self, perf_fd: int, program: Program | None = None, bpf_link_fd: int = -1,
                 description: str = "") -> None:
        """Wrap ``perf_fd`` (and ``bpf_link_fd``), now owned by this object."""
        super().__init__(program, description)
        self.perf_fd = perf_fd
        self.bpf_link_fd = bpf_link_fd
        self._pin_path: str | None = None
        self._finalizer = weakref.finalize(self, _close_perf, perf_fd, bpf_link_fd)

    @property
    def fd(self) -> int:
        """The bpf link fd when there is one, else the perf event fd; -1 once closed."""
        return self.bpf_link_fd if self.bpf_link_fd >= 0 else self.perf_fd

    @property
    def closed(self) -> bool:
        """True after close()/detach()."""
        return self.perf_fd < 0

    def detach(self) -> None:
        """Disable the event and close its fds."""
        if self.perf_fd >= 0:
            self._finalizer()
            self.perf_fd = self.bpf_link_fd = -1

    def close(self) -> None:
        """Same as :meth:`detach` (a pinned bpf link stays attached)."""
        self.detach()

    def _link(self) -> int:
        if self.perf_fd < 0:
            raise EBPFError(f"link {self.description!r} is closed")
        if self.bpf_link_fd < 0:
            raise NotSupportedError(f"{self._what()} was attached with PERF_EVENT_IOC_SET_BPF and has no bpf link")
        return self.bpf_link_fd

    def pin(self, path: str) -> None:
        """Pin the bpf link over the event.  :raises NotSupportedError: without a bpf link."""
        fd = self._link()
        text = check_pin_path(path)
        commands.obj_pin(fd, text)
        self._pin_path = text

    def info(self) -> LinkInfo:
        """The bpf link's :class:`LinkInfo`.  :raises NotSupportedError: without a bpf link."""
        return _link_info(self._link())

    def update(self, new_program: Program, old_program: Program | None = None) -> None:
        """BPF_LINK_UPDATE (perf event links refuse it with EOPNOTSUPP on current kernels)."""
        flags, old_fd = (BPF_F_REPLACE, old_program.fd) if old_program is not None else (0, 0)
        commands.link_update(self._link(), new_program.fd, flags=flags, old_prog_fd=old_fd)
        self.program = new_program


def _close_perf(perf_fd: int, link_fd: int) -> None:
    try:
        _perf.disable(perf_fd)
    except (BPFSyscallError, OSError):
        pass
    if link_fd >= 0:
        close_fd(link_fd)
    close_fd(perf_fd)


class CallbackLink(Link):
    """A legacy attachment (netlink XDP, TC filter, BPF_PROG_ATTACH) detached by a callable.

    The callable runs once, on :meth:`detach`/:meth:`close`, or at garbage collection.
    """

    def __init__(self, detach: Callable[[], None], program: Program | None = None, description: str = "") -> None:
        """Remember ``detach``, which undoes the attachment."""
        super().__init__(program, description)
        if not callable(detach):
            raise EBPFError("CallbackLink needs a callable that detaches")
        self._finalizer = weakref.finalize(self, _quiet, detach)
        self._detach = detach
        self._done = False

    @property
    def closed(self) -> bool:
        """True once detached."""
        return self._done

    def detach(self) -> None:
        """Run the detach callable (once); its errors propagate."""
        if self._done:
            return
        self._done = True
        self._finalizer.detach()
        self._detach()


def _quiet(fn: Callable[[], None]) -> None:
    try:
        fn()
    except Exception:  # at garbage collection nobody can handle it
        pass


# --- making links ----------------------------------------------------------------------------


def create_link(program: Program, target_fd: int, attach_type: AttachType | str | int, flags: int = 0, *,
                extra: tuple[int, ...] = (), description: str = "") -> BPFLink:
    """BPF_LINK_CREATE: attach ``program`` to ``target_fd`` (a cgroup, netns, ifindex, perf event, ...).

    :param extra: the per-type union as u64 words (see :func:`ebpf.core._sys.commands.pack_u32s`).
    :returns: the :class:`BPFLink` (owning the new fd).
    :raises EBPFError: for bad input.  :raises BPFSyscallError: when the kernel refuses.
    """
    at = AttachType.parse(attach_type)
    if not isinstance(target_fd, int) or target_fd < 0:
        raise EBPFError(f"target_fd must be a non-negative int, not {target_fd!r}")
    if len(extra) > 6:
        raise EBPFError("extra holds at most 6 u64 words")
    fd = commands.link_create(program.fd, target_fd, int(at), flags, tuple(extra))
    return BPFLink(fd, program, description or f"{program.name or program.prog_type.lower_name} {at.lower_name}")


def attach_raw_tracepoint(program: Program, name: str | None = None, cookie: int = 0) -> BPFLink:
    """BPF_RAW_TRACEPOINT_OPEN: raw_tp programs by tracepoint ``name`` (``"sys_enter"``);
    tp_btf/fentry/fexit/fmod_ret/lsm programs with ``name`` None (their target came from BTF at load).

    :raises EBPFError: when ``name`` does not fit the program type.
    :raises BPFSyscallError: when the kernel refuses (ENOENT: no such tracepoint).
    """
    raw_types = (ProgType.RAW_TRACEPOINT, ProgType.RAW_TRACEPOINT_WRITABLE)
    if program.prog_type in raw_types:
        if not isinstance(name, str) or not name:
            raise EBPFError(f"raw tracepoint programs need a tracepoint name, not {name!r}")
    elif program.prog_type in (ProgType.TRACING, ProgType.LSM, ProgType.EXT):
        if name is not None:
            raise EBPFError(f"{program.prog_type.lower_name} programs attach to their BTF target; pass name=None")
    else:
        raise EBPFError(f"{program.prog_type.lower_name} programs cannot be attached with BPF_RAW_TRACEPOINT_OPEN")
    fd = commands.raw_tracepoint_open(name, program.fd, cookie)
    what = name or program.spec.attach_to or program.prog_type.lower_name
    return BPFLink(fd, program, f"{program.name or 'program'} on {what}")


def attach_perf_event(program: Program, perf_fd: int, cookie: int = 0, description: str = "") -> PerfEventLink:
    """Run ``program`` when the perf event ``perf_fd`` fires.

    Uses a bpf link (BPF_LINK_CREATE, Linux >= 5.15) and falls back to
    PERF_EVENT_IOC_SET_BPF; enables the event.  On success the link owns ``perf_fd``.
    """
    try:
        link_fd = commands.link_create(program.fd, perf_fd, AttachType.PERF_EVENT, 0, (cookie,))
    except BPFSyscallError as exc:
        if exc.errno not in (errno.EINVAL, errno.EOPNOTSUPP):
            raise
        _perf.set_bpf(perf_fd, program.fd)
        link_fd = -1
    try:
        _perf.enable(perf_fd)
    except BaseException:
        close_fd(link_fd) if link_fd >= 0 else None
        raise
    return PerfEventLink(perf_fd, program, link_fd, description or f"{program.name or 'program'} on perf event")


def links() -> Iterator[LinkInfo]:
    """Every bpf link on the system (links that vanish while listing are skipped)."""
    for link_id in commands.iter_ids("link"):
        try:
            fd = commands.fd_by_id("link", link_id)
        except BPFSyscallError as exc:
            if exc.errno == errno.ENOENT:
                continue
            raise
        try:
            yield _link_info(fd)
        finally:
            close_fd(fd)


class Stats:
    """Run-time statistics switched on (BPF_ENABLE_STATS) while this object is open.

    ``run_cnt``/``run_time_ns`` in :meth:`Program.info` count only while some process
    holds statistics on.  Requires Linux >= 5.8.
    """

    def __init__(self, stats_type: int = 0) -> None:
        """Switch statistics on now (``stats_type`` 0 = BPF_STATS_RUN_TIME)."""
        self._fd = commands.enable_stats(stats_type)
        self._finalizer = weakref.finalize(self, close_fd, self._fd)

    @property
    def active(self) -> bool:
        """True until :meth:`close`."""
        return self._fd >= 0

    def close(self) -> None:
        """Switch statistics off again (unless others hold them on)."""
        if self._fd >= 0:
            self._finalizer()
            self._fd = -1

    def __enter__(self) -> Stats:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def enable_stats(stats_type: int = 0) -> Stats:
    """Switch program run-time statistics on; use as ``with enable_stats(): ...``.

    :raises BPFSyscallError: EPERM without CAP_SYS_ADMIN, EINVAL before Linux 5.8.
    """
    return Stats(stats_type)


from ebpf.core._callable import make_module_callable  # noqa: E402

make_module_callable(__name__)
