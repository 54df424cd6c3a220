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
import weakref
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from ebpf.core._sys import commands
from ebpf.core._sys import perf as _perf
from ebpf.core._sys.attrs import LinkInfo as _RawLinkInfo
from ebpf.core._sys.syscall import close_fd
from ebpf.core._sys.unions import LinkCreateTail
from ebpf.core.errors import ENOTSUPP, BPFSyscallError, EBPFError, NotSupportedError
from ebpf.core.fdowner import FdOwner
from ebpf.core.pins import check_pin_path, fd_kind, open_pinned
from ebpf.core.records import dataclass, field
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


def _name_call(fd: int, variant: str, ptr: str, length_field: str, length: int, outer: str = "") -> str:
    """Second BPF_OBJ_GET_INFO_BY_FD with a name buffer in ``info.<variant>[.<outer>].<ptr>``/``<length_field>``."""
    if length <= 0:
        return ""
    buf = ctypes.create_string_buffer(length + 1)
    info = _RawLinkInfo()
    part = getattr(info, variant)
    if outer:
        part = getattr(part, outer)
    setattr(part, ptr, ctypes.addressof(buf))
    setattr(part, length_field, length + 1)
    commands.obj_info(fd, _RawLinkInfo, info)
    return buf.value.decode(errors="replace")


def _perf_event_fields(fd: int, pe: Any, w: dict[str, Any], d: dict[str, Any]) -> None:
    kind = PERF_EVENT_TYPES.get(pe.type, str(pe.type))
    w["perf_event_type"] = kind
    if kind == "tracepoint":
        tp = pe.tracepoint
        w["tp_name"] = _name_call(fd, "perf_event", "tp_name", "name_len", tp.name_len, "tracepoint")
        d["cookie"] = tp.cookie
    elif kind in ("kprobe", "kretprobe"):
        kp = pe.kprobe
        d.update(func_name=_name_call(fd, "perf_event", "func_name", "name_len", kp.name_len, "kprobe"),
                 offset=kp.offset, addr=kp.addr, missed=kp.missed, cookie=kp.cookie)
    elif kind in ("uprobe", "uretprobe"):
        up = pe.uprobe
        d.update(file_name=_name_call(fd, "perf_event", "file_name", "name_len", up.name_len, "uprobe"),
                 offset=up.offset, cookie=up.cookie, ref_ctr_offset=up.ref_ctr_offset)
    elif kind == "event":
        d.update(config=pe.event.config, event_type=pe.event.type, cookie=pe.event.cookie)


def _decode(fd: int, raw: _RawLinkInfo) -> LinkInfo:
    typ = _enum(LinkType, raw.type)
    w: dict[str, Any] = {"type": typ, "id": raw.id, "prog_id": raw.prog_id}
    d: dict[str, Any] = {}
    if typ == LinkType.RAW_TRACEPOINT:
        rt = raw.raw_tracepoint
        w["tp_name"] = _name_call(fd, "raw_tracepoint", "tp_name", "tp_name_len", rt.tp_name_len)
        d["cookie"] = rt.cookie
    elif typ == LinkType.TRACING:
        tr = raw.tracing
        w.update(attach_type=_enum(AttachType, tr.attach_type), target_obj_id=tr.target_obj_id,
                 target_btf_id=tr.target_btf_id)
        d["cookie"] = tr.cookie
    elif typ == LinkType.CGROUP:
        w.update(cgroup_id=raw.cgroup.cgroup_id, attach_type=_enum(AttachType, raw.cgroup.attach_type))
    elif typ == LinkType.ITER:
        d["target_name"] = _name_call(fd, "iter", "target_name", "target_name_len", raw.iter.target_name_len)
        w["map_id"] = raw.iter.map.map_id or None
    elif typ == LinkType.NETNS:
        w.update(netns_ino=raw.netns.netns_ino, attach_type=_enum(AttachType, raw.netns.attach_type))
    elif typ == LinkType.XDP:
        w["ifindex"] = raw.xdp.ifindex
    elif typ in (LinkType.TCX, LinkType.NETKIT):
        dev = raw.tcx  # netkit has the same shape
        w.update(ifindex=dev.ifindex, attach_type=_enum(AttachType, dev.attach_type))
    elif typ == LinkType.STRUCT_OPS:
        w["map_id"] = raw.struct_ops.map_id
    elif typ == LinkType.SOCKMAP:
        w.update(map_id=raw.sockmap.map_id, attach_type=_enum(AttachType, raw.sockmap.attach_type))
    elif typ == LinkType.NETFILTER:
        nf = raw.netfilter
        d.update(pf=nf.pf, hooknum=nf.hooknum, priority=nf.priority, flags=nf.flags)
    elif typ == LinkType.KPROBE_MULTI:
        w["count"] = raw.kprobe_multi.count
        d.update(flags=raw.kprobe_multi.flags, missed=raw.kprobe_multi.missed)
    elif typ == LinkType.UPROBE_MULTI:
        um = raw.uprobe_multi
        w["count"] = um.count
        d.update(path_size=um.path_size, flags=um.flags, pid=um.pid)
    elif typ == LinkType.PERF_EVENT:
        _perf_event_fields(fd, raw.perf_event, w, d)
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


class BPFLink(FdOwner, Link):
    """A kernel bpf link fd (BPF_LINK_CREATE, BPF_RAW_TRACEPOINT_OPEN); owns the fd.

    Closing the fd detaches the program unless the link is pinned; collected while open, the
    link is closed with a ResourceWarning.
    """

    _kind = "link"

    def __init__(self, fd: int, program: Program | None = None, description: str = "") -> None:
        """Wrap the link ``fd`` (now owned by this object)."""
        Link.__init__(self, program, description)
        self._own_fd(fd)
        self._pin_path: str | None = None

    @property
    def pin_path(self) -> str | None:
        """Where this link was pinned (by :meth:`pin` or :meth:`from_pinned`), else None."""
        return self._pin_path

    def close(self) -> None:
        """Close the fd; the attachment ends unless the link is pinned."""
        self._release()

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
            if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, ENOTSUPP):
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
                extra: ctypes.Structure | tuple[int, ...] = (), description: str = "") -> BPFLink:
    """BPF_LINK_CREATE: attach ``program`` to ``target_fd`` (a cgroup, netns, ifindex, perf event, ...).

    :param extra: the per-type part: a variant from :mod:`ebpf.core.lowlevel` (``LinkCreateKprobeMulti``,
        ``LinkCreateNetfilter``, ``LinkCreateRelative``, ...); u64 words are still taken.
    :returns: the :class:`BPFLink` (owning the new fd).
    :raises EBPFError: for bad input.  :raises BPFSyscallError: when the kernel refuses.
    """
    at = AttachType.parse(attach_type)
    if not isinstance(target_fd, int) or target_fd < 0:
        raise EBPFError(f"target_fd must be a non-negative int, not {target_fd!r}")
    if isinstance(extra, ctypes.Structure):
        if not any(ctype is type(extra) for _, ctype, *_ in LinkCreateTail._fields_):
            raise EBPFError(f"{type(extra).__name__} is not a BPF_LINK_CREATE variant")
    elif len(extra) > 6:
        raise EBPFError("extra holds at most 6 u64 words")
    fd = commands.link_create(program.fd, target_fd, int(at), flags, extra)
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
    return commands.iter_objects("link", _link_info)


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
