"""cgroup v2 programs: find cgroups, load and attach skb/sock/sock_addr/device/sysctl/sockopt programs.

from ebpf.net import cgroup
prog = cgroup.load_cgroup_sock_addr_program(insns, "connect4")
with cgroup.attach_cgroup_program("/sys/fs/cgroup/unified/app", prog) as link:
    ...
"""

from __future__ import annotations

import errno
import functools
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, cast

from ebpf.core.errors import AttachError, BPFSyscallError, EBPFError
from ebpf.core.fdowner import Setup
from ebpf.core.records import dataclass, field
from ebpf.core.types import AttachType, ProgType
from ebpf.net._common import callback_link, check_program, create_link, is_program, load, program_name

if TYPE_CHECKING:
    from ebpf.core.extension import AttachTypeLike, Instructions, ProgTypeLike
    from ebpf.core.links import Link
    from ebpf.core.programs import Program

__all__ = [
    "CgroupSetup",
    "BPF_F_ALLOW_OVERRIDE",
    "BPF_F_ALLOW_MULTI",
    "BPF_F_REPLACE",
    "BPF_F_QUERY_EFFECTIVE",
    "CGROUP_PROG_TYPES",
    "cgroup_root",
    "get_current_cgroup",
    "cgroup_exists",
    "list_cgroup_children",
    "create_cgroup",
    "remove_cgroup",
    "load_cgroup_skb_program",
    "load_cgroup_sock_program",
    "load_cgroup_sock_addr_program",
    "load_cgroup_device_program",
    "load_cgroup_sysctl_program",
    "load_cgroup_sockopt_program",
    "attach_cgroup_program",
    "detach_cgroup_program",
    "query_cgroup_programs",
    "setup_cgroup_skb",
    "teardown_cgroup_program",
    "cgroup_program",
]

BPF_F_ALLOW_OVERRIDE = 1
BPF_F_ALLOW_MULTI = 2
BPF_F_REPLACE = 4
BPF_F_QUERY_EFFECTIVE = 1
CGROUP2_SUPER_MAGIC = 0x63677270
_FLAG_NAMES = {"override": BPF_F_ALLOW_OVERRIDE, "multi": BPF_F_ALLOW_MULTI}

# Which attach types each cgroup program type may use (the first is the default).
CGROUP_PROG_TYPES: dict[ProgType, tuple[AttachType, ...]] = {
    ProgType.CGROUP_SKB: (AttachType.CGROUP_INET_INGRESS, AttachType.CGROUP_INET_EGRESS),
    ProgType.CGROUP_SOCK: (
        AttachType.CGROUP_INET_SOCK_CREATE,
        AttachType.CGROUP_INET_SOCK_RELEASE,
        AttachType.CGROUP_INET4_POST_BIND,
        AttachType.CGROUP_INET6_POST_BIND,
    ),
    ProgType.CGROUP_SOCK_ADDR: (
        AttachType.CGROUP_INET4_CONNECT,
        AttachType.CGROUP_INET6_CONNECT,
        AttachType.CGROUP_INET4_BIND,
        AttachType.CGROUP_INET6_BIND,
        AttachType.CGROUP_UDP4_SENDMSG,
        AttachType.CGROUP_UDP6_SENDMSG,
        AttachType.CGROUP_UDP4_RECVMSG,
        AttachType.CGROUP_UDP6_RECVMSG,
        AttachType.CGROUP_INET4_GETPEERNAME,
        AttachType.CGROUP_INET6_GETPEERNAME,
        AttachType.CGROUP_INET4_GETSOCKNAME,
        AttachType.CGROUP_INET6_GETSOCKNAME,
        AttachType.CGROUP_UNIX_CONNECT,
        AttachType.CGROUP_UNIX_SENDMSG,
        AttachType.CGROUP_UNIX_RECVMSG,
        AttachType.CGROUP_UNIX_GETPEERNAME,
        AttachType.CGROUP_UNIX_GETSOCKNAME,
    ),
    ProgType.CGROUP_DEVICE: (AttachType.CGROUP_DEVICE,),
    ProgType.CGROUP_SYSCTL: (AttachType.CGROUP_SYSCTL,),
    ProgType.CGROUP_SOCKOPT: (AttachType.CGROUP_SETSOCKOPT, AttachType.CGROUP_GETSOCKOPT),
    ProgType.SOCK_OPS: (AttachType.CGROUP_SOCK_OPS,),
}
# Short names: "connect4" -> CGROUP_INET4_CONNECT, "ingress" -> CGROUP_INET_INGRESS, ...
_SHORT = {
    "ingress": AttachType.CGROUP_INET_INGRESS,
    "egress": AttachType.CGROUP_INET_EGRESS,
    "sock_create": AttachType.CGROUP_INET_SOCK_CREATE,
    "sock_release": AttachType.CGROUP_INET_SOCK_RELEASE,
    "post_bind4": AttachType.CGROUP_INET4_POST_BIND,
    "post_bind6": AttachType.CGROUP_INET6_POST_BIND,
    "device": AttachType.CGROUP_DEVICE,
    "sysctl": AttachType.CGROUP_SYSCTL,
    "setsockopt": AttachType.CGROUP_SETSOCKOPT,
    "getsockopt": AttachType.CGROUP_GETSOCKOPT,
    "sock_ops": AttachType.CGROUP_SOCK_OPS,
}
for _v in ("4", "6"):
    for _op in ("connect", "bind", "getpeername", "getsockname"):
        _SHORT[f"{_op}{_v}"] = AttachType[f"CGROUP_INET{_v}_{_op.upper()}"]
    _SHORT[f"sendmsg{_v}"] = AttachType[f"CGROUP_UDP{_v}_SENDMSG"]
    _SHORT[f"recvmsg{_v}"] = AttachType[f"CGROUP_UDP{_v}_RECVMSG"]
for _op in ("connect", "sendmsg", "recvmsg", "getpeername", "getsockname"):
    _SHORT[f"{_op}_unix"] = AttachType[f"CGROUP_UNIX_{_op.upper()}"]


def parse_attach_type(value: str | int | AttachType, prog_type: ProgType | None = None) -> AttachType:
    """An attach type from a short name ("connect4", "egress"), a kernel name or a number.

    :raises AttachError: unknown, or not usable with ``prog_type``.
    """
    try:
        if isinstance(value, str) and value.lower() in _SHORT:
            kind = _SHORT[value.lower()]
        elif isinstance(value, str) and f"CGROUP_{value.upper()}" in AttachType.__members__:
            kind = AttachType[f"CGROUP_{value.upper()}"]
        else:
            kind = AttachType.parse(value)
    except EBPFError as exc:
        raise AttachError(f"unknown cgroup attach type {value!r} (e.g. {', '.join(sorted(_SHORT)[:6])}, ...)") from exc
    if prog_type is not None and kind not in CGROUP_PROG_TYPES.get(prog_type, ()):
        raise AttachError(f"attach type {kind.lower_name} does not go with {prog_type.lower_name} programs")
    return kind


def _mountinfo() -> list[tuple[str, str]]:
    """(mount point, fs type) of every mount of this process."""
    mounts = []
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                left, sep, right = line.partition(" - ")
                fields, tail = left.split(), right.split()
                if sep and len(fields) >= 5 and tail:
                    mounts.append((fields[4].replace("\\040", " "), tail[0]))
    except OSError as exc:
        raise EBPFError(f"cannot read /proc/self/mountinfo: {exc}") from exc
    return mounts


@functools.cache
def cgroup_root() -> str:
    """The cgroup v2 mount point: ``/sys/fs/cgroup`` (unified) or ``/sys/fs/cgroup/unified`` (hybrid).

    :raises NotSupportedError: no cgroup2 filesystem is mounted.
    """
    points = [point for point, kind in _mountinfo() if kind == "cgroup2"]
    for preferred in ("/sys/fs/cgroup", "/sys/fs/cgroup/unified"):
        if preferred in points:
            return preferred
    if points:
        return points[0]
    from ebpf.core.errors import NotSupportedError

    raise NotSupportedError("no cgroup v2 filesystem is mounted (mount -t cgroup2 none /sys/fs/cgroup/unified)")


def get_current_cgroup(pid: int | None = None) -> str:
    """The cgroup v2 directory of ``pid`` (default: this process)."""
    where = f"/proc/{pid}/cgroup" if pid is not None else "/proc/self/cgroup"
    try:
        with open(where, encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("0::"):
                    rel = line[3:].strip()
                    return os.path.normpath(os.path.join(cgroup_root(), rel.lstrip("/")))
    except OSError as exc:
        raise EBPFError(f"cannot read {where}: {exc}") from exc
    return cgroup_root()


def cgroup_exists(path: str) -> bool:
    """Whether ``path`` is a directory on a cgroup v2 filesystem."""
    from ebpf.core.system import fs_type

    return isinstance(path, str) and bool(path) and os.path.isdir(path) and fs_type(path) == CGROUP2_SUPER_MAGIC


def _check_cgroup(path: Any, what: str) -> str:
    if not isinstance(path, (str, os.PathLike)):
        raise AttachError(f"{what}: a cgroup is a path, not {type(path).__name__}")
    path = os.fspath(path)
    if not isinstance(path, str) or not cgroup_exists(path):
        raise AttachError(f"{what}: {path!r} is not a cgroup v2 directory (cgroup v2 is mounted at {_root_or_none()})")
    return path


def _root_or_none() -> str:
    try:
        return cgroup_root()
    except EBPFError:
        return "nowhere"


def list_cgroup_children(path: str) -> list[str]:
    """The child cgroups of ``path`` (full paths, sorted).

    :raises AttachError: ``path`` is not a cgroup.
    """
    path = _check_cgroup(path, "list_cgroup_children")
    return sorted(e.path for e in os.scandir(path) if e.is_dir(follow_symlinks=False))


def create_cgroup(path: str, exist_ok: bool = False) -> str:
    """Make the cgroup ``path`` (its parent must be a cgroup).  Returns the path."""
    parent = os.path.dirname(os.path.normpath(path))
    _check_cgroup(parent, "create_cgroup")
    try:
        os.mkdir(path)
    except FileExistsError:
        if not exist_ok:
            raise EBPFError(f"create_cgroup: {path!r} exists already") from None
    except OSError as exc:
        raise BPFSyscallError(exc.errno or 0, "mkdir", f"{path}: {exc.strerror}") from exc
    return path


def remove_cgroup(path: str) -> None:
    """Remove an empty cgroup (its processes must have moved out)."""
    path = _check_cgroup(path, "remove_cgroup")
    try:
        os.rmdir(path)
    except OSError as exc:
        raise BPFSyscallError(exc.errno or 0, "rmdir", f"{path}: {exc.strerror} (processes or children left?)") from exc


def _loader(
    prog_type: ProgType, insns: Instructions, attach_type: AttachTypeLike, name: str, license: str, fields: dict[str, Any]
) -> Program:
    kind = parse_attach_type(attach_type, prog_type) if attach_type is not None else CGROUP_PROG_TYPES[prog_type][0]
    if prog_type is ProgType.CGROUP_SKB and attach_type is None:
        kind = AttachType.CGROUP_INET_INGRESS
    return load(prog_type, insns, name, license, expected_attach_type=kind, **fields)


def load_cgroup_skb_program(
    insns: Instructions, direction: str = "ingress", name: str = "cgroup_skb", license: str = "GPL", **fields: Any
) -> Program:
    """Load a ``cgroup_skb`` program (return 1 to pass a packet, 0 to drop it) for ``direction``."""
    if direction not in ("ingress", "egress"):
        raise EBPFError(f"cgroup_skb direction must be 'ingress' or 'egress', not {direction!r}")
    return _loader(ProgType.CGROUP_SKB, insns, direction, name, license, fields)


def load_cgroup_sock_program(
    insns: Instructions, attach_type: str = "sock_create", name: str = "cgroup_sock", license: str = "GPL", **fields: Any
) -> Program:
    """Load a ``cgroup_sock`` program (sock_create, sock_release, post_bind4/6)."""
    return _loader(ProgType.CGROUP_SOCK, insns, attach_type, name, license, fields)


def load_cgroup_sock_addr_program(
    insns: Instructions, attach_type: str = "connect4", name: str = "cgroup_sock_addr", license: str = "GPL", **fields: Any
) -> Program:
    """Load a ``cgroup_sock_addr`` program: bind4/6, connect4/6, sendmsg4/6, recvmsg4/6,
    getpeername4/6, getsockname4/6 (return 1 to allow, 0 to refuse with EPERM)."""
    return _loader(ProgType.CGROUP_SOCK_ADDR, insns, attach_type, name, license, fields)


def load_cgroup_device_program(insns: Instructions, name: str = "cgroup_device", license: str = "GPL", **fields: Any) -> Program:
    """Load a ``cgroup_device`` program (return 0 to deny the device access)."""
    return _loader(ProgType.CGROUP_DEVICE, insns, "device", name, license, fields)


def load_cgroup_sysctl_program(insns: Instructions, name: str = "cgroup_sysctl", license: str = "GPL", **fields: Any) -> Program:
    """Load a ``cgroup_sysctl`` program (return 0 to deny the /proc/sys access with EPERM)."""
    return _loader(ProgType.CGROUP_SYSCTL, insns, "sysctl", name, license, fields)


def load_cgroup_sockopt_program(
    insns: Instructions, attach_type: str = "setsockopt", name: str = "cgroup_sockopt", license: str = "GPL", **fields: Any
) -> Program:
    """Load a ``cgroup_sockopt`` program for ``setsockopt`` or ``getsockopt`` (return 0 to refuse)."""
    return _loader(ProgType.CGROUP_SOCKOPT, insns, attach_type, name, license, fields)


def _flags(flags: Any) -> int | None:
    if flags is None:
        return None
    if isinstance(flags, str):
        if flags.lower() not in _FLAG_NAMES:
            raise AttachError(f"cgroup attach flags must be 'override', 'multi', None or an int, not {flags!r}")
        return _FLAG_NAMES[flags.lower()]
    if isinstance(flags, bool) or not isinstance(flags, int) or flags < 0 or flags & ~0x7:
        raise AttachError(f"bad cgroup attach flags {flags!r}")
    return flags


def _open_dir(path: str) -> int:
    try:
        return os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as exc:
        raise AttachError(f"cannot open cgroup {path!r}: {exc.strerror}") from exc


def _attach_type_for(prog: Program, attach_type: Any, what: str) -> AttachType:
    prog_type = ProgType.parse(prog.prog_type)
    if attach_type is None:
        kind = getattr(prog, "expected_attach_type", None)
        if kind is None:
            if len(CGROUP_PROG_TYPES[prog_type]) > 1:
                raise AttachError(f"{what}: give attach_type for program {program_name(prog)} ({prog_type.lower_name})")
            return CGROUP_PROG_TYPES[prog_type][0]
        attach_type = kind
    return parse_attach_type(attach_type, prog_type)


def attach_cgroup_program(
    cgroup_path: str, prog: Program, attach_type: AttachTypeLike | None = None, flags: int | str | None = None,
    method: str = "auto"
) -> Link:
    """Attach a cgroup program to a cgroup v2 directory.

    With ``flags=None`` (and ``method`` "auto" or "link") a cgroup BPF link is made: it
    lives while the returned Link is open and coexists with other programs.  With
    ``flags`` ("override", "multi", or BPF_F_* bits) or ``method="attach"`` it goes
    through BPF_PROG_ATTACH; the returned link runs BPF_PROG_DETACH.

    :param attach_type: e.g. "connect4", "egress", AttachType.CGROUP_DEVICE (default: the
        program's expected attach type).
    :raises AttachError: not a cgroup, wrong program type, attach type mismatch, or the kernel refused.
    Requires Linux >= 4.10 (links: 5.7).
    """
    what = "attach_cgroup_program"
    if method not in ("auto", "link", "attach"):
        raise AttachError(f"{what}: method must be 'auto', 'link' or 'attach', not {method!r}")
    bits = _flags(flags)
    if method == "link" and bits:
        raise AttachError(f"{what}: flags go with method='attach' (BPF_PROG_ATTACH), not with links")
    check_program(prog, CGROUP_PROG_TYPES, what)
    kind = _attach_type_for(prog, attach_type, what)
    path = _check_cgroup(cgroup_path, what)
    fd = _open_dir(path)
    try:
        if method == "link" or (method == "auto" and bits is None):
            try:
                return create_link(prog, fd, kind, 0, description=f"cgroup {kind.lower_name} {path}")
            except BPFSyscallError as exc:
                raise AttachError(f"{what}: {kind.lower_name} on {path}: {exc}") from exc
        from ebpf.core.lowlevel import prog_attach

        try:
            prog_attach(fd, prog.fd, kind, bits or 0)
        except BPFSyscallError as exc:
            raise AttachError(f"{what}: {kind.lower_name} on {path}: {exc}") from exc
    finally:
        os.close(fd)

    def detach() -> None:
        try:
            _detach(path, kind, prog)
        except AttachError as exc:
            # Detached already (ENOENT), or the cgroup is gone and took the attachment with it.
            if getattr(exc, "errno", 0) != errno.ENOENT and os.path.isdir(path):
                raise

    return callback_link(detach, prog, f"cgroup {kind.lower_name} {path} (prog_attach)")


def _detach(path: str, kind: AttachType, prog: Program | None) -> None:
    from ebpf.core.lowlevel import prog_detach

    fd = _open_dir(path)
    try:
        prog_detach(fd, prog.fd if prog is not None else 0, kind)
    except BPFSyscallError as exc:
        hint = " (nothing attached there)" if exc.errno == errno.ENOENT else ""
        failure = AttachError(f"detach {kind.lower_name} program from {path}: {exc}{hint}")
        failure.errno = exc.errno  # type: ignore[attr-defined]
        raise failure from exc
    finally:
        os.close(fd)


def detach_cgroup_program(cgroup_path: str, attach_type: AttachTypeLike, prog: Program | None = None) -> None:
    """BPF_PROG_DETACH a program attached with BPF_PROG_ATTACH (``prog`` needed for multi attachments).

    :raises AttachError: not a cgroup, or nothing to detach.
    """
    path = _check_cgroup(cgroup_path, "detach_cgroup_program")
    if prog is not None:
        check_program(prog, CGROUP_PROG_TYPES, "detach_cgroup_program")
    kind = parse_attach_type(attach_type)
    _detach(path, kind, prog)


def query_cgroup_programs(cgroup_path: str, attach_type: AttachTypeLike, effective: bool = False) -> list[int]:
    """Ids of the programs attached to ``cgroup_path`` at ``attach_type`` (``effective``: inherited too).

    :raises AttachError: not a cgroup or bad attach type.
    """
    path = _check_cgroup(cgroup_path, "query_cgroup_programs")
    kind = parse_attach_type(attach_type)
    from ebpf.core.lowlevel import prog_query

    fd = _open_dir(path)
    try:
        ids, _, _ = prog_query(fd, kind, BPF_F_QUERY_EFFECTIVE if effective else 0)
    except BPFSyscallError as exc:
        raise AttachError(f"query {kind.lower_name} programs of {path}: {exc}") from exc
    finally:
        os.close(fd)
    return ids


@dataclass
class CgroupSetup(Setup):
    """What :func:`setup_cgroup_skb` (or :func:`cgroup_program`) did (the :class:`~ebpf.core.fdowner.Setup`
    contract: ``close()`` / ``with`` / :func:`teardown_cgroup_program` undo it)."""

    cgroup_path: str
    attach_type: AttachType
    program: Program
    link: Link
    owns_program: bool = False
    torn_down: bool = field(default=False, repr=False)

    def _teardown(self) -> None:
        try:
            self.link.detach()
        finally:
            if self.owns_program:
                self.program.close()


def setup_cgroup_skb(
    cgroup_path: str, program: Program | Instructions, direction: str = "ingress", flags: int | str | None = None,
    name: str = "cgroup_skb"
) -> CgroupSetup:
    """Load (when given instructions) and attach a ``cgroup_skb`` program.

    :returns: a :class:`CgroupSetup` for :func:`teardown_cgroup_program`.
    """
    return _setup(cgroup_path, program, direction, flags, ProgType.CGROUP_SKB, name)


def _setup(cgroup_path: str, program: Any, attach_type: Any, flags: Any, prog_type: ProgType, name: str) -> CgroupSetup:
    path = _check_cgroup(cgroup_path, "cgroup setup")
    kind = parse_attach_type(attach_type, prog_type)
    _flags(flags)
    owned = not is_program(program)
    prog = _loader(prog_type, program, kind, name, "GPL", {}) if owned else program
    try:
        link = attach_cgroup_program(path, prog, kind, flags)
    except BaseException:
        if owned:
            prog.close()
        raise
    return CgroupSetup(path, kind, prog, link, owned)


def teardown_cgroup_program(setup: CgroupSetup) -> None:
    """``setup.close()``: detach what a setup attached and close the program it loaded.  Twice is harmless.

    :raises EBPFError: when ``setup`` is not a :class:`CgroupSetup`.
    """
    if not isinstance(setup, CgroupSetup):
        raise EBPFError(f"teardown_cgroup_program needs a CgroupSetup, got {type(setup).__name__}")
    setup.close()


@contextmanager
def cgroup_program(
    cgroup_path: str,
    program: Program | Instructions,
    attach_type: AttachTypeLike,
    prog_type: ProgTypeLike | None = None,
    flags: int | str | None = None,
    name: str = "cgroup_prog",
) -> Iterator[CgroupSetup]:
    """A cgroup program attached for the duration of a ``with`` block.

    :param program: a loaded program, or instructions (then ``prog_type`` is required).
    """
    if is_program(program):
        kind = ProgType.parse(cast("Program", program).prog_type)
    elif prog_type is None:
        raise EBPFError("cgroup_program: give prog_type when passing instructions")
    else:
        kind = ProgType.parse(prog_type)
    if kind not in CGROUP_PROG_TYPES:
        raise AttachError(f"cgroup_program: {kind.lower_name} is not a cgroup program type")
    setup = _setup(cgroup_path, program, attach_type, flags, kind, name)
    try:
        yield setup
    finally:
        teardown_cgroup_program(setup)
