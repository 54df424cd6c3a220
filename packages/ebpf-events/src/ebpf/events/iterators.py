"""BPF iterators: a tracing program run once per kernel object (task, open file, map, map element,
TCP/UDP/unix socket, kernel symbol, ...), whose output is read like a file.

An ``iter/<target>`` program (``ProgramSpec(prog_type="tracing", expected_attach_type="trace_iter",
attach_to="task")``, or ``SEC("iter/task")`` in C) is attached with :func:`attach_iter`, which
returns an :class:`IterLink`.  Each :meth:`IterLink.open` (BPF_ITER_CREATE) starts a fresh walk
over the objects; reading the returned file runs the program, which writes with
``bpf_seq_write`` / ``bpf_seq_printf``.  A pinned iterator link is a file on bpffs that ``cat``
reads the same way.

Why here and not in ebpf-core: iterators are an event source like ring buffers (read-only
streams a program fills) and share the records/codecs reading of ebpf-events; core keeps the
generic link (:class:`~ebpf.core.links.BPFLink`) this builds on.

Requires Linux >= 5.8 (task, task_file, bpf_map, bpf_map_elem, tcp, udp, netlink), 5.9
(bpf_sk_storage_map, sockmap), 5.12 (task_vma), 6.0 (ksym), 6.1 (cgroup), 6.6 (unix ... earlier).
"""

from __future__ import annotations

import ctypes
import enum
import errno
import functools
import os
import struct
from collections.abc import Callable, Iterator, Sequence
from typing import IO, Any

from ebpf.core import codecs
from ebpf.core import lowlevel as commands
from ebpf.core.errors import AttachError, BPFSyscallError, BTFError, EBPFError
from ebpf.core.features import feature_test, probe_error
from ebpf.core.links import BPFLink
from ebpf.core.lowlevel import Cmd, IterCreateAttr, LinkCreateIter, bpf, close_fd
from ebpf.core.maps import Map
from ebpf.core.programs import Program
from ebpf.core.types import AttachType, MapType, ProgType

__all__ = ["IterLink", "CgroupIterOrder", "attach_iter", "iter_target", "list_iter_targets", "have_iter_target",
           "MAP_ITER_TYPES"]

#: Iterator targets that walk one map, and the map types each accepts (checked before any syscall;
#: the kernel checks the same in its ``attach_target`` callbacks).
MAP_ITER_TYPES: dict[str, frozenset[MapType]] = {
    "bpf_map_elem": frozenset({MapType.HASH, MapType.PERCPU_HASH, MapType.LRU_HASH, MapType.LRU_PERCPU_HASH,
                               MapType.ARRAY, MapType.PERCPU_ARRAY}),
    "bpf_sk_storage_map": frozenset({MapType.SK_STORAGE}),
    "sockmap": frozenset({MapType.SOCKMAP, MapType.SOCKHASH}),
}
#: Targets that may be narrowed to one task (``task=``), Linux >= 6.1.
TASK_ITER_TARGETS = frozenset({"task", "task_file", "task_vma"})
_ITER_INFO_SIZE = 24  # sizeof(union bpf_iter_link_info): the cgroup variant {u64 order; u32 fd; u64 id}


class CgroupIterOrder(enum.IntEnum):
    """``enum bpf_cgroup_iter_order``: which cgroups a ``cgroup`` iterator visits from the start cgroup."""

    SELF_ONLY = 1
    DESCENDANTS_PRE = 2
    DESCENDANTS_POST = 3
    ANCESTORS_UP = 4


@functools.lru_cache(maxsize=1)
def _targets() -> tuple[str, ...]:
    return tuple(_scan_targets())


def list_iter_targets() -> list[str]:
    """The iterator targets this kernel has, read from its BTF (functions named ``bpf_iter_<target>``).

    :returns: sorted target names, e.g. ``["bpf_map", "bpf_map_elem", "ksym", "task", ...]``.
    :raises BTFError: when the kernel has no BTF.
    """
    return list(_targets())


def _scan_targets() -> list[str]:
    from ebpf.core.btf import load_vmlinux
    from ebpf.core.btf.types import Func, FuncProto, Pointer

    spec = load_vmlinux()
    names = set()
    for t in spec:
        # DEFINE_BPF_ITER_FUNC declares bpf_iter_<target>(struct bpf_iter_meta *meta, ...): other
        # bpf_iter_* functions (helpers, open-coded iterator kfuncs) take something else first
        if not (isinstance(t, Func) and t.name.startswith("bpf_iter_")):
            continue
        proto = spec.resolve(t.type_id)
        if not (isinstance(proto, FuncProto) and proto.params):
            continue
        first = spec.resolve(proto.params[0].type_id)
        if isinstance(first, Pointer) and spec.resolve(first.type_id).name == "bpf_iter_meta":
            names.add(t.name[len("bpf_iter_"):])
    return sorted(names - {"get_info", "run_prog"})  # iterator machinery with the same first parameter


#: The first Linux version with each iterator target.
ITER_TARGET_VERSIONS = {"task": "5.8", "task_file": "5.8", "bpf_map": "5.8", "bpf_map_elem": "5.8", "tcp": "5.8",
                        "udp": "5.8", "netlink": "5.8", "ipv6_route": "5.8", "bpf_sk_storage_map": "5.9",
                        "sockmap": "5.10", "task_vma": "5.12", "bpf_prog": "5.9", "bpf_link": "6.0", "ksym": "6.0",
                        "unix": "5.17", "cgroup": "6.1", "kmem_cache": "6.13", "dmabuf": "6.16"}


@feature_test
def have_iter_target(target: str) -> None:
    """Probe for the iterator ``target``: in the kernel's BTF, and a ``return 0`` program for it loads.

    :raises UnsupportedFeatureError: when the kernel lacks iterators or this target, or refuses to
        load programs for it (this host's 6.18 answers EPERM for the map-element iterators).
    :raises EBPFError: when the probe cannot tell (e.g. ProbeInconclusiveError without privileges).
    """
    from ebpf.core.asm import R0, exit_, mov64
    from ebpf.core.errors import UnsupportedFeatureError
    from ebpf.core.features import have_link_type
    from ebpf.core.programs import load_program

    feature, version = f"iterator {target}", ITER_TARGET_VERSIONS.get(target, "")
    have_link_type("iter")
    try:
        targets = list_iter_targets()
    except BTFError as exc:
        raise UnsupportedFeatureError(feature, version, str(exc)) from None
    if target not in targets:
        raise UnsupportedFeatureError(feature, version, "no bpf_iter_" + target + " in the kernel's BTF")
    try:
        prog = load_program(prog_type="tracing", expected_attach_type="trace_iter", attach_to=target,
                            insns=[mov64(R0, 0), exit_()])
    except BPFSyscallError as exc:
        raise probe_error(exc, feature, version, _refusal(target, exc)) from None
    prog.close()


#: Targets whose context hands the program map memory (``PTR_TO_BUF``: the key, value or socket
#: storage it walks).  Some kernel builds refuse exactly these at BPF_PROG_LOAD with EPERM.
_BUF_CONTEXT_TARGETS = ("bpf_map_elem", "bpf_sk_storage_map", "sockmap")


def _refusal(target: str, exc: BPFSyscallError) -> str:
    """Why the kernel refused the probe program of ``target``, as exactly as can be told from here.

    An EPERM for a map-memory target while ``iter/task`` loads is neither a missing capability nor
    kernel lockdown (a stock 6.18 kernel loads these as root under ``lockdown=integrity``): the kernel
    rejects the program before verifying one instruction.  This development host's 6.18.44-fc kernel
    does so; Debian's 6.18.15 (``tools/vm/run.py --kernel 6.18``) runs them.
    """
    from ebpf.core.asm import R0, exit_, mov64  # deferred: start-up time (only a failed probe needs it)
    from ebpf.core.programs import load_program

    plain = f"iter/{target} programs are refused at load"
    if exc.errno != errno.EPERM or target not in _BUF_CONTEXT_TARGETS:
        return plain
    try:  # does an iterator without map memory in its context load?
        load_program(prog_type="tracing", expected_attach_type="trace_iter", attach_to="task",
                     insns=[mov64(R0, 0), exit_()]).close()
    except (BPFSyscallError, EBPFError):
        return plain
    return (f"BPF_PROG_LOAD of an iter/{target} program fails with EPERM before verification while iter/task "
            f"loads: this kernel build refuses the iterators whose context holds map memory (PTR_TO_BUF: "
            f"{', '.join(_BUF_CONTEXT_TARGETS)}); not a capability or lockdown matter (a stock kernel loads them as "
            "root, lockdown=integrity included)")


def iter_target(program: Program) -> str:
    """The iterator target ``program`` was loaded for (``"task"``, ``"bpf_map_elem"``, ...).

    Read from the program's spec (``attach_to``), else from the kernel (its attach BTF id).

    :raises EBPFError: when ``program`` is not an iterator program.
    """
    if program.prog_type != ProgType.TRACING or program.expected_attach_type != AttachType.TRACE_ITER:
        raise EBPFError(f"{program.name or 'program'} is a {program.prog_type.lower_name} program, not an iterator "
                        "(load it with prog_type='tracing', expected_attach_type='trace_iter', attach_to=TARGET)")
    name = program.spec.attach_to
    if not name:
        btf_id = commands.prog_info(program.fd).attach_btf_id
        try:
            from ebpf.core.btf import load_vmlinux

            name = load_vmlinux()[btf_id].name
        except (BTFError, EBPFError, IndexError, KeyError):
            name = ""
    return name[len("bpf_iter_"):] if name.startswith("bpf_iter_") else name


def _cgroup_fd(cgroup: int | str | os.PathLike[str]) -> tuple[int, bool]:
    """(fd, owned): an fd given as int is the caller's; a path is opened here."""
    if isinstance(cgroup, bool):
        raise EBPFError(f"cgroup must be a path or an fd, not {cgroup!r}")
    if isinstance(cgroup, int):
        if cgroup < 0:
            raise EBPFError(f"cgroup fd must be non-negative, not {cgroup}")
        return cgroup, False
    try:
        return os.open(os.fspath(cgroup), os.O_RDONLY | os.O_DIRECTORY), True
    except OSError as exc:
        raise AttachError(f"cannot open cgroup {os.fspath(cgroup)!r}: {exc.strerror}") from None


def _iter_info(target: str, map: Map | None, task: int | None, pid_fd: int | None,
               cgroup: int | str | os.PathLike[str] | None, order: CgroupIterOrder | str | int | None) -> tuple[
        bytes, int]:
    """``union bpf_iter_link_info`` for the options, and the cgroup fd opened here (-1 if none).

    Checks everything before a syscall.
    """
    chosen = [n for n, v in (("map", map), ("task", task), ("pid_fd", pid_fd), ("cgroup", cgroup)) if v is not None]
    if len(chosen) > 1:
        raise EBPFError(f"give at most one of map=, task=, pid_fd=, cgroup= (got {', '.join(chosen)})")
    if target in MAP_ITER_TYPES:
        if map is None:
            raise EBPFError(f"iterator {target} walks one map: pass map=")
        if not isinstance(map, Map):
            raise EBPFError(f"map must be a Map, not {type(map).__name__}")
        if map.map_type not in MAP_ITER_TYPES[target]:
            allowed = ", ".join(sorted(t.lower_name for t in MAP_ITER_TYPES[target]))
            raise EBPFError(f"iterator {target} cannot walk a {map.map_type.lower_name} map (it takes {allowed})")
        return struct.pack("<I20x", map.fd), -1
    if map is not None:
        raise EBPFError(f"map= is only for the {', '.join(sorted(MAP_ITER_TYPES))} iterators, not {target}")
    if task is not None or pid_fd is not None:
        if target not in TASK_ITER_TARGETS:
            raise EBPFError(f"task=/pid_fd= narrow only the {', '.join(sorted(TASK_ITER_TARGETS))} iterators, "
                            f"not {target}")
        for what, value in (("task", task), ("pid_fd", pid_fd)):
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value <= 0):
                raise EBPFError(f"{what} must be a positive int (a thread id / a pidfd), not {value!r}")
        # task= narrows to one thread (tid); pid_fd= to a process through its pidfd
        return struct.pack("<III12x", task or 0, 0, pid_fd or 0), -1
    if cgroup is not None or order is not None:
        if target != "cgroup":
            raise EBPFError(f"cgroup=/order= are for the cgroup iterator, not {target}")
        try:
            how = CgroupIterOrder[order.upper()] if isinstance(order, str) else CgroupIterOrder(
                order if order is not None else CgroupIterOrder.SELF_ONLY)
        except (KeyError, ValueError):
            raise EBPFError(f"unknown cgroup iterator order {order!r}; one of "
                            f"{', '.join(o.name.lower() for o in CgroupIterOrder)}") from None
        fd, owned = _cgroup_fd(cgroup if cgroup is not None else "/sys/fs/cgroup")
        return struct.pack("<QI4xQ", int(how), fd, 0), fd if owned else -1
    return b"", -1


def attach_iter(program: Program, map: Map | None = None, task: int | None = None, *, pid_fd: int | None = None,
                cgroup: int | str | os.PathLike[str] | None = None,
                order: CgroupIterOrder | str | int | None = None) -> IterLink:
    """Attach an iterator program (BPF_LINK_CREATE with BPF_TRACE_ITER).

    :param program: an ``iter/<target>`` tracing program.
    :param map: the map to walk, for ``bpf_map_elem``, ``bpf_sk_storage_map`` and ``sockmap`` iterators.
    :param task: only this thread (tid), for ``task``/``task_file``/``task_vma`` (Linux >= 6.1).
    :param pid_fd: only the process behind this pidfd, for the same targets (Linux >= 6.1).
    :param cgroup: start cgroup (a path under the cgroup v2 mount, or an fd) for ``cgroup`` iterators.
    :param order: which cgroups to visit from there (:class:`CgroupIterOrder`, default ``self_only``).
    :returns: the :class:`IterLink`; :meth:`IterLink.open` starts a walk.
    :raises EBPFError: for bad input (wrong program type, a map of a type the target cannot walk,
        options the target does not take), before any syscall.
    :raises AttachError: when the kernel refuses (with its errno and what it usually means).
    """
    if not isinstance(program, Program):
        raise EBPFError(f"attach_iter takes a Program, not {type(program).__name__}")
    target = iter_target(program)
    info, owned_fd = _iter_info(target, map, task, pid_fd, cgroup, order)
    buf = ctypes.create_string_buffer(info, max(len(info), 1))
    extra = LinkCreateIter(iter_info=ctypes.addressof(buf), iter_info_len=len(info)) if info else None
    try:
        fd = commands.link_create(program.fd, 0, int(AttachType.TRACE_ITER), 0, extra)
    except BPFSyscallError as exc:
        raise _attach_error(exc, target) from None
    finally:
        if owned_fd >= 0:
            os.close(owned_fd)
    what = target + (f" of map {map.name or map.fd}" if map is not None else "")
    return IterLink(fd, program, f"{program.name or 'iter'} on {what}", target=target, map=map)


def _attach_error(exc: BPFSyscallError, target: str) -> AttachError:
    hints = {
        13: "the program reads more of the key or value than the map has (EACCES)",
        22: "the kernel refused the iterator options (EINVAL): wrong map type, or a filter this target "
            "does not take",
        9: "a map/cgroup fd was not valid (EBADF)",
    }
    err = AttachError(f"attaching iterator {target} failed: {exc} -- {hints.get(exc.errno or 0, '')}".rstrip(" -"))
    err.errno = exc.errno  # type: ignore[attr-defined]
    return err


class IterLink(BPFLink):
    """An attached iterator: each :meth:`open` runs a new walk whose output is read as a file.

    ``pin(path)`` makes the iterator a bpffs file any process can ``cat``.
    """

    def __init__(self, fd: int, program: Program | None = None, description: str = "", *, target: str = "",
                 map: Map | None = None) -> None:
        """Wrap the iterator link ``fd`` (now owned by this object)."""
        super().__init__(fd, program, description)
        self.target = target
        self.map = map  # kept alive as long as the link

    def open(self) -> IO[bytes]:
        """Start a walk (BPF_ITER_CREATE): a binary file whose reads run the program.

        :returns: an unbuffered binary file object; close it (or use ``with``).
        :raises BPFSyscallError: when the kernel refuses.
        """
        fd = bpf(Cmd.ITER_CREATE, IterCreateAttr(link_fd=self.fd))
        try:
            return os.fdopen(fd, "rb", buffering=0)
        except BaseException:
            close_fd(fd)
            raise

    def read(self) -> bytes:
        """One whole walk's output.

        :raises BPFSyscallError: when a read fails (e.g. E2BIG: one call wrote more than a page).
        """
        out = bytearray()
        with self.open() as f:
            while True:
                try:
                    chunk = f.read(1 << 16)
                except OSError as exc:
                    raise BPFSyscallError(exc.errno or 0, "read(iterator)") from None
                if not chunk:
                    return bytes(out)
                out += chunk

    def read_text(self) -> str:
        """One whole walk's output as text (for programs that ``bpf_seq_printf``)."""
        return self.read().decode(errors="replace")

    def read_records(self, codec: Any) -> Iterator[Any]:
        """Decode one walk's output as fixed-size records (the program ``bpf_seq_write``-s structs).

        :param codec: a codec (``bpf.codecs.struct("<IQ")``, ``"u64"``), an event parser
            (``bpf.make_event_parser(...)``), an event spec list (``[("pid", "u32"), ("comm", "char[16]")]``),
            a :class:`struct.Struct` or a ctypes type.
        :returns: an iterator of decoded records.
        :raises EBPFError: when the output is not a whole number of records.
        """
        size, decode = _record_decoder(codec)
        data = self.read()
        if len(data) % size:
            raise EBPFError(f"iterator output of {len(data)} bytes is not a whole number of {size}-byte records")
        view = memoryview(data)
        for off in range(0, len(data), size):
            yield decode(view[off:off + size])


def _record_decoder(codec: Any) -> tuple[int, Callable[[Any], Any]]:
    if isinstance(codec, codecs.EventParser):
        return codec.size, codec
    if isinstance(codec, Sequence) and not isinstance(codec, (str, bytes)):
        parser = codecs.make_event_parser(codec)
        return parser.size, parser
    if isinstance(codec, codecs.Codec):
        return codec.size, lambda b: codec.decode(bytes(b))
    if isinstance(codec, str) and codec in ("u8", "u16", "u32", "u64", "i8", "i16", "i32", "i64"):
        c = getattr(codecs, codec)
        return c.size, lambda b: c.decode(bytes(b))
    if isinstance(codec, struct.Struct):
        c2 = codecs.StructCodec(codec.format)
        return c2.size, lambda b: c2.decode(bytes(b))
    if isinstance(codec, type) and issubclass(codec, (ctypes.Structure, ctypes.Union, ctypes.Array)):
        c3 = codecs.ctype(codec)
        return c3.size, lambda b: c3.decode(bytes(b))
    raise EBPFError(f"unusable record codec {codec!r}: give a Codec, an event parser or spec, a struct.Struct "
                    "or a ctypes type")
