"""TC: clsact qdisc + direct-action ``cls_bpf`` filters, and TCX links (Linux >= 6.6).

from ebpf.net import tc
setup = tc.setup_tc_egress("veth0", insns)     # clsact qdisc + filter
print(tc.list_tc_filters("veth0", "egress"))
tc.teardown_tc_filter(setup)
"""

from __future__ import annotations

import enum
import errno
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from ebpf.core.errors import AttachError, BPFSyscallError, EBPFError
from ebpf.core.fdowner import Setup
from ebpf.core.records import dataclass, field
from ebpf.core.types import AttachType, ProgType
from ebpf.net import _netlink
from ebpf.net._common import callback_link, check_program, create_link, is_program, load

if TYPE_CHECKING:
    from ebpf.core.extension import Instructions
    from ebpf.core.links import Link
    from ebpf.core.programs import Program

__all__ = [
    "TcAction",
    "TcFilter",
    "TcSetup",
    "BPF_F_BEFORE",
    "BPF_F_AFTER",
    "load_tc_program",
    "add_clsact_qdisc",
    "remove_clsact_qdisc",
    "has_clsact_qdisc",
    "attach_tc_filter",
    "detach_tc_filter",
    "list_tc_filters",
    "setup_tc_ingress",
    "setup_tc_egress",
    "teardown_tc_filter",
    "tc_filter",
    "attach_tcx",
    "query_tcx",
]

_PARENTS = {"ingress": 0xFFFFFFF2, "egress": 0xFFFFFFF3}
_TCX = {"ingress": AttachType.TCX_INGRESS, "egress": AttachType.TCX_EGRESS}
_TC_TYPES = (ProgType.SCHED_CLS, ProgType.SCHED_ACT)
BPF_F_BEFORE = 1 << 3
BPF_F_AFTER = 1 << 4
BPF_F_ID = 1 << 5
BPF_F_LINK = 1 << 13


class TcAction(enum.IntEnum):
    """Verdicts of a direct-action TC program (``TC_ACT_*``)."""

    UNSPEC = -1
    OK = 0
    RECLASSIFY = 1
    SHOT = 2
    PIPE = 3
    STOLEN = 4
    QUEUED = 5
    REPEAT = 6
    REDIRECT = 7
    TRAP = 8
    NEXT = -1  # TCX: run the next program (same value as UNSPEC)


@dataclass(frozen=True)
class TcFilter:
    """One BPF tc filter on an interface, as the kernel lists it."""

    ifname: str
    direction: str
    priority: int
    handle: int
    protocol: int
    name: str
    prog_id: int
    prog_tag: str
    prog_name: str
    direct_action: bool


@dataclass
class TcSetup(Setup):
    """What :func:`setup_tc_ingress` / :func:`setup_tc_egress` did (the :class:`~ebpf.core.fdowner.Setup`
    contract: ``close()`` / ``with`` / :func:`teardown_tc_filter` undo it)."""

    ifname: str
    ifindex: int
    direction: str
    program: Program
    link: Link
    priority: int
    handle: int
    created_qdisc: bool = False
    owns_program: bool = False
    torn_down: bool = field(default=False, repr=False)

    def _teardown(self) -> None:
        try:
            self.link.detach()
            if self.created_qdisc:
                try:
                    if not (_list(self.ifindex, self.ifname, "ingress") or _list(self.ifindex, self.ifname, "egress")):
                        remove_clsact_qdisc(self.ifindex, missing_ok=True)
                except AttachError:
                    pass  # the interface went away with its qdisc
        finally:
            if self.owns_program:
                self.program.close()


def _direction(direction: str) -> str:
    if not isinstance(direction, str) or direction.lower() not in _PARENTS:
        raise AttachError(f"tc direction must be 'ingress' or 'egress', not {direction!r}")
    return direction.lower()


def _u16(value: int, what: str, low: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= 0xFFFF:
        raise AttachError(f"tc filter {what} must be an int in {low}..65535, got {value!r}")
    return value


def load_tc_program(
    insns: Instructions, prog_type: str | ProgType = "sched_cls", name: str = "tc_prog", license: str = "GPL", **fields: Any
) -> Program:
    """Load a TC program (``sched_cls`` by default, or ``sched_act``).

    :raises EBPFError: ``prog_type`` is not a TC type.
    :raises VerifierError: the verifier rejected it.
    """
    kind = ProgType.parse(prog_type)
    if kind not in _TC_TYPES:
        raise EBPFError(f"load_tc_program: prog_type must be sched_cls or sched_act, not {kind.lower_name}")
    return load(kind, insns, name, license, **fields)


def has_clsact_qdisc(interface: str | int) -> bool:
    """Whether ``interface`` has a clsact qdisc.

    :raises AttachError: no such interface.
    """
    ifindex, ifname = _netlink.resolve_interface(interface)
    return _netlink.clsact_present(ifindex, ifname)


def add_clsact_qdisc(interface: str | int, exist_ok: bool = False) -> bool:
    """Add a clsact qdisc (the hook point for ingress/egress BPF filters).

    :param exist_ok: do not fail when one is there already.
    :returns: True when this call created it.
    :raises AttachError: no such interface, or the qdisc exists and not ``exist_ok``.
    """
    ifindex, ifname = _netlink.resolve_interface(interface)
    if _netlink.clsact_present(ifindex, ifname):
        if exist_ok:
            return False
        raise AttachError(f"add_clsact_qdisc: {ifname} already has a clsact qdisc (pass exist_ok=True to reuse it)")
    _netlink.clsact_add(ifindex, ifname)
    return True


def remove_clsact_qdisc(interface: str | int, missing_ok: bool = False) -> None:
    """Remove the clsact qdisc, and with it every tc filter attached under it.

    :raises AttachError: no such interface, or no clsact qdisc and not ``missing_ok``.
    """
    ifindex, ifname = _netlink.resolve_interface(interface)
    if not _netlink.clsact_present(ifindex, ifname):
        if missing_ok:
            return
        raise AttachError(f"remove_clsact_qdisc: {ifname} has no clsact qdisc")
    _netlink.clsact_del(ifindex, ifname)


def attach_tc_filter(
    interface: str | int,
    prog: Program,
    direction: str = "ingress",
    priority: int = 1,
    handle: int = 1,
    name: str | None = None,
    create_qdisc: bool = True,
) -> Link:
    """Attach a direct-action BPF filter under the clsact qdisc of ``interface``.

    :param direction: ``"ingress"`` or ``"egress"``.
    :param priority: filter priority (1..65535; lower runs first).
    :param handle: filter handle (1..65535), unique per priority.
    :param name: filter name shown by ``tc filter show`` (default: the program's name).
    :param create_qdisc: add the clsact qdisc when missing (it is left in place afterwards).
    :returns: a Link whose ``detach()``/``close()`` deletes the filter.
    :raises AttachError: bad input, no such interface, no clsact qdisc (and not
        ``create_qdisc``), a filter with this priority/handle exists, or the kernel refused.
    """
    direction = _direction(direction)
    _u16(priority, "priority")
    _u16(handle, "handle")
    check_program(prog, _TC_TYPES, "attach_tc_filter")
    ifindex, ifname = _netlink.resolve_interface(interface)
    filter_name = name if name is not None else (getattr(prog, "name", "") or "bpf")
    if not isinstance(filter_name, str) or "\0" in filter_name or len(filter_name) > 255:
        raise AttachError(f"attach_tc_filter: bad filter name {filter_name!r}")
    if not _netlink.clsact_present(ifindex, ifname):
        if not create_qdisc:
            raise AttachError(f"attach_tc_filter: {ifname} has no clsact qdisc (call add_clsact_qdisc first)")
        _netlink.clsact_add(ifindex, ifname)
    parent = _PARENTS[direction]
    _netlink.bpf_filter_add(ifindex, ifname, parent, prog.fd, filter_name, priority, handle)
    netns = _netlink.NetnsHandle()

    def detach() -> None:
        try:
            with netns.entered():
                _netlink.bpf_filter_del(ifindex, ifname, parent, priority, handle)
        except AttachError as exc:
            if getattr(exc, "errno", 0) not in (errno.ENOENT, errno.EINVAL, errno.ENODEV):
                raise  # gone already (qdisc or interface removed) is fine
        finally:
            netns.close()

    return callback_link(detach, prog, f"tc {direction} {ifname} prio {priority} handle {handle:#x}")


def detach_tc_filter(interface: str | int, direction: str = "ingress", priority: int = 1, handle: int = 1) -> None:
    """Delete the BPF filter at ``priority``/``handle``.

    :raises AttachError: no such interface or no such filter.
    """
    direction = _direction(direction)
    _u16(priority, "priority")
    _u16(handle, "handle")
    ifindex, ifname = _netlink.resolve_interface(interface)
    if not any(f.priority == priority and f.handle == handle for f in _list(ifindex, ifname, direction)):
        raise AttachError(
            f"detach_tc_filter: no {direction} filter with priority {priority} and handle {handle} on {ifname}"
        )
    _netlink.bpf_filter_del(ifindex, ifname, _PARENTS[direction], priority, handle)


def _prog_name(prog_id: int) -> str:
    from ebpf.core.lowlevel import close_fd, fd_by_id, prog_info

    try:
        fd = fd_by_id("prog", prog_id)
    except BPFSyscallError:
        return ""
    try:
        return bytes(prog_info(fd).name).split(b"\0", 1)[0].decode(errors="replace")
    finally:
        close_fd(fd)


def _list(ifindex: int, ifname: str, direction: str) -> list[TcFilter]:
    if not _netlink.clsact_present(ifindex, ifname):
        return []
    return [
        TcFilter(
            ifname,
            direction,
            r.priority,
            r.handle,
            r.protocol,
            r.name,
            r.prog_id,
            r.prog_tag,
            _prog_name(r.prog_id) if r.prog_id else "",
            r.direct_action,
        )
        for r in _netlink.bpf_filter_list(ifindex, ifname, _PARENTS[direction])
    ]


def list_tc_filters(interface: str | int, direction: str = "ingress") -> list[TcFilter]:
    """The BPF filters on ``interface`` in ``direction``, with their program ids and names.

    :returns: [] when there is no clsact qdisc.
    :raises AttachError: no such interface.
    """
    direction = _direction(direction)
    ifindex, ifname = _netlink.resolve_interface(interface)
    return _list(ifindex, ifname, direction)


def _setup(
    interface: str | int, program: Any, direction: str, priority: int, handle: int, name: str | None, prog_type: str
) -> TcSetup:
    direction = _direction(direction)
    _u16(priority, "priority")
    _u16(handle, "handle")
    ifindex, ifname = _netlink.resolve_interface(interface)
    owned = not is_program(program)
    prog = load_tc_program(program, prog_type=prog_type, name=name or f"tc_{direction}") if owned else program
    try:
        created = add_clsact_qdisc(ifindex, exist_ok=True)
        try:
            link = attach_tc_filter(ifindex, prog, direction, priority, handle, name, create_qdisc=False)
        except BaseException:
            if created:
                _netlink.clsact_del(ifindex, ifname)
            raise
    except BaseException:
        if owned:
            prog.close()
        raise
    return TcSetup(ifname, ifindex, direction, prog, link, priority, handle, created, owned)


def setup_tc_ingress(
    interface: str | int,
    program: Program | Instructions,
    priority: int = 1,
    handle: int = 1,
    name: str | None = None,
    prog_type: str = "sched_cls",
) -> TcSetup:
    """Add the clsact qdisc if needed and attach ``program`` (a Program or instructions) at ingress.

    :returns: a :class:`TcSetup` for :func:`teardown_tc_filter`.
    """
    return _setup(interface, program, "ingress", priority, handle, name, prog_type)


def setup_tc_egress(
    interface: str | int,
    program: Program | Instructions,
    priority: int = 1,
    handle: int = 1,
    name: str | None = None,
    prog_type: str = "sched_cls",
) -> TcSetup:
    """Like :func:`setup_tc_ingress`, at egress."""
    return _setup(interface, program, "egress", priority, handle, name, prog_type)


def teardown_tc_filter(setup: TcSetup) -> None:
    """``setup.close()``: delete the filter, the qdisc when the setup created it and it is now empty,
    and the program when the setup loaded it.  Calling it twice is harmless.

    :raises EBPFError: when ``setup`` is not a :class:`TcSetup`.
    """
    if not isinstance(setup, TcSetup):
        raise EBPFError(f"teardown_tc_filter needs a TcSetup, got {type(setup).__name__}")
    setup.close()


@contextmanager
def tc_filter(
    interface: str | int,
    program: Program | Instructions,
    direction: str = "ingress",
    priority: int = 1,
    handle: int = 1,
    name: str | None = None,
) -> Iterator[TcSetup]:
    """A TC filter for the duration of a ``with`` block (setup + teardown)."""
    setup = _setup(interface, program, direction, priority, handle, name, "sched_cls")
    try:
        yield setup
    finally:
        teardown_tc_filter(setup)


def _relative(obj: Any) -> tuple[int, int]:
    """(flags, relative fd/id) for a TCX ordering anchor: a Program, a Link or a program id."""
    if isinstance(obj, bool):
        raise AttachError("attach_tcx: before/after is a Program, a Link or a program id")
    if isinstance(obj, int):
        if obj <= 0:
            raise AttachError(f"attach_tcx: bad program id {obj}")
        return BPF_F_ID, obj
    if is_program(obj):
        return 0, int(obj.fd)
    if hasattr(obj, "fd") and hasattr(obj, "detach"):
        if obj.fd < 0:
            raise AttachError("attach_tcx: the relative link has no kernel link fd")
        return BPF_F_LINK, int(obj.fd)
    raise AttachError(f"attach_tcx: before/after is a Program, a Link or a program id, not {type(obj).__name__}")


def attach_tcx(
    interface: str | int,
    prog: Program,
    direction: str = "ingress",
    before: Program | Link | int | None = None,
    after: Program | Link | int | None = None,
    expected_revision: int = 0,
) -> Link:
    """Attach a TC program through a TCX BPF link (no qdisc needed; several programs in order).

    :param before: run before this Program / Link / program id (``BPF_F_BEFORE``);
        ``before=True`` alone is not accepted: pass the anchor.
    :param after: run after this anchor (``BPF_F_AFTER``).  With neither, the program is appended.
    :param expected_revision: fail with ESTALE unless the hook's revision is this (0: any).
    :returns: the link (detach/close removes the program).
    :raises AttachError: bad input, no such interface, or the kernel refused.
    Requires Linux >= 6.6.
    """
    direction = _direction(direction)
    if before is not None and after is not None:
        raise AttachError("attach_tcx: give before= or after=, not both")
    if isinstance(expected_revision, bool) or not isinstance(expected_revision, int) or expected_revision < 0:
        raise AttachError(f"attach_tcx: bad expected_revision {expected_revision!r}")
    flags, relative = 0, 0
    if before is not None:
        extra_flags, relative = _relative(before)
        flags = BPF_F_BEFORE | extra_flags
    elif after is not None:
        extra_flags, relative = _relative(after)
        flags = BPF_F_AFTER | extra_flags
    check_program(prog, (ProgType.SCHED_CLS,), "attach_tcx")
    ifindex, ifname = _netlink.resolve_interface(interface)
    from ebpf.core.system import kernel_version

    if kernel_version() < (6, 6):
        from ebpf.core.errors import UnsupportedFeatureError

        raise UnsupportedFeatureError("TCX links", "6.6")
    try:
        # link_create's tcx union: { u32 relative_fd | relative_id; u64 expected_revision }.
        return create_link(
            prog,
            ifindex,
            _TCX[direction],
            flags,
            extra=(relative, expected_revision),
            description=f"tcx {direction} {ifname}",
        )
    except BPFSyscallError as exc:
        hint = {
            errno.ENOENT: "the before/after anchor is not attached at this hook",
            errno.ESTALE: "the hook changed since expected_revision",
            errno.EINVAL: "the kernel rejected the program or anchor (a sched_cls program is needed)",
        }.get(exc.errno or 0, "")
        raise _netlink.attach_failure(exc.errno, f"attach TCX {direction} program to {ifname}", hint) from exc


def query_tcx(interface: str | int, direction: str = "ingress") -> list[int]:
    """Program ids attached through TCX at ``direction`` of ``interface``, in run order.

    Requires Linux >= 6.6.
    """
    direction = _direction(direction)
    ifindex, ifname = _netlink.resolve_interface(interface)
    from ebpf.core.lowlevel import prog_query

    try:
        ids, _, _ = prog_query(ifindex, _TCX[direction])
    except BPFSyscallError as exc:
        raise _netlink.attach_failure(exc.errno, f"query TCX {direction} programs of {ifname}") from exc
    return ids
