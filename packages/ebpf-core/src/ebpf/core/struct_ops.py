"""struct_ops: kernel function tables (``tcp_congestion_ops``, ``sched_ext_ops``, ...) filled with
BPF programs and registered with the kernel.

A :class:`StructOpsMap` is a ``BPF_MAP_TYPE_STRUCT_OPS`` map whose one value is the kernel's
``struct bpf_struct_ops_<name>`` (found in vmlinux BTF): a common header, then ``data``, the
``struct <name>`` itself.  Its members are set from Python -- scalars and strings (an algorithm's
``name``) as values, function pointers as :class:`~ebpf.core.programs.Program` s loaded for that
member (``attach_to="<name>:<member>"``: ``attach_btf_id`` is the struct, ``expected_attach_type``
the member index).  :meth:`StructOpsMap.register` then hands the table to the kernel:

- maps created with ``link=True`` (``BPF_F_LINK``, Linux >= 6.4): the value is written, then a
  struct_ops link (BPF_LINK_CREATE) registers it; :meth:`StructOpsLink.update` swaps in another
  map atomically, closing the link unregisters;
- ``link=False``: the map update itself registers (Linux >= 5.6), deleting the element unregisters.

Everything a caller can get wrong (a struct_ops type the kernel does not have, an unknown member,
a program for a member that is not a function pointer, a string too long) is refused before any
syscall, so nothing is left half registered.
"""

from __future__ import annotations

import dataclasses
import errno
import functools
import os
import struct
from collections.abc import Mapping
from typing import Any

from ebpf.core._maps.base import Map, MapSpec
from ebpf.core._probing import feature_test, probe_error
from ebpf.core._sys import commands
from ebpf.core._sys.attrs import MapCreateAttr
from ebpf.core._sys.syscall import close_fd
from ebpf.core.codecs import RawCodec, u32
from ebpf.core.errors import ENOTSUPP, BPFSyscallError, BTFError, EBPFError, UnsupportedFeatureError
from ebpf.core.links import BPF_F_REPLACE, BPFLink, CallbackLink, Link
from ebpf.core.programs import Program
from ebpf.core.types import AttachType, MapType, ProgType

__all__ = ["StructOpsMap", "StructOpsLink", "StructOpsMember", "create_struct_ops_map", "list_struct_ops",
           "have_struct_ops", "BPF_F_LINK"]

BPF_F_LINK = 1 << 13
_PREFIX = "bpf_struct_ops_"


@dataclasses.dataclass(frozen=True)
class StructOpsMember:
    """One member of ``struct <name>``: where it sits in the map value and what it takes."""

    name: str
    index: int
    offset: int  # bytes from the start of the map value
    size: int
    kind: str  # "func" (a program), "int", "char[]" (a string), "bytes" (anything else)
    signed: bool = False


def _btf() -> Any:
    from ebpf.core.btf import load_vmlinux  # deferred: start-up time (only this path needs it)

    return load_vmlinux()


def list_struct_ops() -> list[str]:
    """The struct_ops types this kernel's BTF declares (``bpf_struct_ops_<name>`` value types).

    :returns: sorted names such as ``["bpf_dummy_ops", "sched_ext_ops", "tcp_congestion_ops"]``.
    :raises UnsupportedFeatureError: when the kernel has no BTF.
    """
    from ebpf.core.btf.types import Struct  # deferred: start-up time (only this path needs it)

    # other bpf_struct_ops_* structs are the kernel's bookkeeping
    spec = _btf()
    out = []
    for t in spec:
        # {common; data} since 6.6, {refcnt; state; data} before: "data" is the kernel struct itself
        if (isinstance(t, Struct) and t.name.startswith(_PREFIX) and t.members and t.members[-1].name == "data"
                and spec.resolve(t.members[-1].type_id).name == t.name[len(_PREFIX):]):
            out.append(t.name[len(_PREFIX):])
    return sorted(out)


def _layout(struct_name: str) -> tuple[int, int, int, tuple[StructOpsMember, ...]]:
    """(value type id, struct type id, value size, members) for ``struct_name``.

    :raises EBPFError: when the kernel has no such struct_ops type.
    """
    # deferred: start-up time (only this path needs it)
    from ebpf.core.btf.types import Array, FuncProto, Int, Pointer, Struct

    if not isinstance(struct_name, str) or not struct_name:
        raise EBPFError(f"struct_ops type must be a name such as 'tcp_congestion_ops', not {struct_name!r}")
    spec = _btf()
    try:
        value_t = spec.find(_PREFIX + struct_name, "struct")
        data = spec.find_member(value_t, "data")
    except BTFError:
        known = ", ".join(list_struct_ops()) or "none"
        raise EBPFError(f"the kernel has no struct_ops type {struct_name!r} (no struct {_PREFIX}{struct_name} in "
                        f"its BTF); it knows: {known}") from None
    inner = spec.resolve(data.type_id)
    if not isinstance(inner, Struct):
        raise EBPFError(f"{_PREFIX}{struct_name}.data is not a struct")
    base = data.bit_offset // 8
    members = []
    for i, m in enumerate(inner.members):
        t = spec.resolve(m.type_id)
        size = spec.sizeof(m.type_id)
        kind, signed = "bytes", False
        if isinstance(t, Pointer) and isinstance(spec.resolve(t.type_id), FuncProto):
            kind = "func"
        elif isinstance(t, Int) and not m.bitfield_size:
            kind, signed = "int", bool(t.encoding & 1)
        elif isinstance(t, Array) and spec.sizeof(t.type_id) == 1:
            kind = "char[]"
        members.append(StructOpsMember(m.name, i, base + m.bit_offset // 8, size, kind, signed))
    return int(value_t.id), int(inner.id), int(value_t.size), tuple(members)


class StructOpsMap(Map):
    """A ``BPF_MAP_TYPE_STRUCT_OPS`` map: one ``struct <name>`` of values and programs to register.

    Build it with :func:`create_struct_ops_map`; set members with :meth:`set` (or ``ops["name"] = v``
    for one member), then :meth:`register`.
    """

    struct_name: str
    struct_btf_id: int
    members: dict[str, StructOpsMember]
    programs: dict[str, Program]
    link_mode: bool

    def _setup(self, struct_name: str, struct_id: int, members: tuple[StructOpsMember, ...], link: bool) -> None:
        self.struct_name = struct_name
        self.struct_btf_id = struct_id
        self.members = {m.name: m for m in members}
        self.programs = {}
        self.link_mode = link
        self._value = bytearray(self.value_size)
        self._registered: Link | None = None
        self._written = False  # the kernel takes a struct_ops map's value once

    # -- filling -------------------------------------------------------------------------------------
    def _member(self, name: str) -> StructOpsMember:
        if name not in self.members:
            raise EBPFError(f"struct {self.struct_name} has no member {name!r}; it has: {', '.join(self.members)}")
        return self.members[name]

    def __setitem__(self, name: str, value: Any) -> None:
        """``ops["ssthresh"] = program`` / ``ops["name"] = "ebpf_reno"``: same as :meth:`set`."""
        self.set(**{name: value})

    def set(self, **members: Any) -> StructOpsMap:
        """Set members: programs for function pointers, ints, strings/bytes for char arrays, bytes otherwise.

        All values are checked first; nothing changes when one is bad.

        :returns: ``self``.
        :raises EBPFError: for an unknown member, a program for a member that is not a function pointer
            (or a program loaded for another struct/member), a value that does not fit.
        """
        if getattr(self, "_written", False):
            raise EBPFError(f"struct_ops map {self.name!r} was already given to the kernel; its members are fixed")
        staged: list[tuple[StructOpsMember, bytes, Program | None]] = []
        for name, value in members.items():
            m = self._member(name)
            staged.append((m, *self._encode(m, value)))
        for m, raw, prog in staged:
            self._value[m.offset:m.offset + m.size] = raw
            if prog is None:
                self.programs.pop(m.name, None)
            else:
                self.programs[m.name] = prog
        return self

    def _encode(self, m: StructOpsMember, value: Any) -> tuple[bytes, Program | None]:
        if isinstance(value, Program):
            if m.kind != "func":
                raise EBPFError(f"member {self.struct_name}.{m.name} is not a function pointer: it takes "
                                f"{'an int' if m.kind == 'int' else 'a string' if m.kind == 'char[]' else 'bytes'}, "
                                "not a program")
            self._check_program(m, value)
            return struct.pack("<Q", value.fd), value
        if value is None:
            return bytes(m.size), None
        if m.kind == "func":
            raise EBPFError(f"member {self.struct_name}.{m.name} is a function pointer: give a Program loaded with "
                            f"attach_to='{self.struct_name}:{m.name}' (or None), not {type(value).__name__}")
        if m.kind == "int":
            if isinstance(value, bool) or not isinstance(value, int):
                raise EBPFError(f"member {self.struct_name}.{m.name} takes an int, not {value!r}")
            try:
                return value.to_bytes(m.size, "little", signed=m.signed), None
            except OverflowError:
                raise EBPFError(f"{value} does not fit member {self.struct_name}.{m.name} ({m.size} bytes)") from None
        if m.kind == "char[]" and isinstance(value, str):
            value = value.encode()
        if not isinstance(value, (bytes, bytearray, memoryview)):
            raise EBPFError(f"member {self.struct_name}.{m.name} takes bytes{' or a str' if m.kind == 'char[]' else ''}"
                            f", not {type(value).__name__}")
        raw = bytes(value)
        limit = m.size - 1 if m.kind == "char[]" else m.size  # strings keep their NUL
        if len(raw) > limit:
            raise EBPFError(f"{raw!r} is too long for member {self.struct_name}.{m.name} (at most {limit} bytes)")
        return raw.ljust(m.size, b"\0"), None

    def _check_program(self, m: StructOpsMember, prog: Program) -> None:
        if prog.prog_type != ProgType.STRUCT_OPS:
            raise EBPFError(f"member {self.struct_name}.{m.name} needs a struct_ops program, not "
                            f"{prog.prog_type.lower_name}")
        spec = prog.spec
        want = f"{self.struct_name}:{m.name}"
        if spec.attach_to is not None:
            if spec.attach_to != want:
                raise EBPFError(f"program {prog.name!r} was loaded for {spec.attach_to!r}, not {want!r}")
        elif spec.attach_btf_id not in (None, self.struct_btf_id) or (
                spec.expected_attach_type is not None and int(spec.expected_attach_type) != m.index):
            raise EBPFError(f"program {prog.name!r} was loaded for another struct_ops member "
                            f"(attach_btf_id={spec.attach_btf_id}, member index {spec.expected_attach_type}); "
                            f"{want} is btf id {self.struct_btf_id}, member index {m.index}")

    def value_bytes(self) -> bytes:
        """The map value as it will be written (program fds in the function pointer slots)."""
        return bytes(self._value)

    # -- registering ------------------------------------------------------------------------------------
    def _write(self) -> None:
        if self._written:
            return
        for name, prog in self.programs.items():  # fds of the programs as they are now
            m = self.members[name]
            self._value[m.offset:m.offset + 8] = struct.pack("<Q", prog.fd)
        try:
            self.update(0, bytes(self._value))
        except BPFSyscallError as exc:
            raise _update_error(exc, self) from None
        self._written = True

    def register(self) -> Link:
        """Write the value and register the table with the kernel.

        :returns: a :class:`StructOpsLink` (``link=True`` maps) or a link whose close deletes the
            map element (``link=False``); closing either unregisters.
        :raises EBPFError: when the map is already registered.
        :raises BPFSyscallError: when the kernel refuses the value (e.g. a required member is missing).
        """
        if self._registered is not None and not self._registered.closed:
            raise EBPFError(f"struct_ops map {self.name!r} is already registered; close its link first")
        if self._written and not self.link_mode:
            raise EBPFError(f"struct_ops map {self.name!r} was registered by update once; the kernel does not "
                            "register it again: create a new map (or use link=True maps)")
        self._write()
        if self.link_mode:
            try:
                fd = commands.link_create(self.fd, 0, int(AttachType.STRUCT_OPS), 0)
            except BPFSyscallError as exc:
                raise _update_error(exc, self) from None
            link: Link = StructOpsLink(fd, self)
        else:
            link = CallbackLink(functools.partial(_unregister, self), None,
                                f"struct_ops {self.struct_name} {self.name!r}")
        self._registered = link
        return link

    def close(self) -> None:
        """Unregister (legacy maps) and close the map fd; a struct_ops link keeps its own reference."""
        if self._registered is not None and not self.link_mode and not self._registered.closed:
            self._registered.close()
        super().close()


def _unregister(m: StructOpsMap) -> None:
    if m.closed:
        return
    try:
        m.delete(0)  # BPF_MAP_DELETE_ELEM of key 0 unregisters a map registered by update
    except BPFSyscallError as exc:
        if exc.errno not in (errno.ENOENT, errno.EINVAL):
            raise


def _update_error(exc: BPFSyscallError, m: StructOpsMap) -> BPFSyscallError:
    funcs = [n for n, mem in m.members.items() if mem.kind == "func"]
    missing = [n for n in funcs if n not in m.programs]
    hints = {
        errno.EINVAL: (f"the kernel rejected this {m.struct_name}: a required member may be missing (set: "
                       f"{', '.join(m.programs) or 'none'}; unset function pointers: {', '.join(missing) or 'none'}), "
                       "a non-zero member it does not accept, or a program loaded for another member"),
        errno.EEXIST: f"a {m.struct_name} with this name is already registered",
        errno.EBUSY: "the map is already registered",
        errno.ENOTSUP: f"the kernel cannot register {m.struct_name} from BPF",
        ENOTSUPP: f"the kernel cannot register {m.struct_name} from BPF (ENOTSUPP)",
    }
    return BPFSyscallError(exc.errno or 0, exc.command, os.strerror(exc.errno or 0), hints.get(exc.errno or 0, exc.hint))


class StructOpsLink(BPFLink):
    """A struct_ops link (BPF_LINK_CREATE with BPF_STRUCT_OPS): registered while it is open.

    :meth:`update` swaps in another ``link=True`` map of the same type atomically.
    """

    def __init__(self, fd: int, ops: StructOpsMap) -> None:
        """Wrap the link ``fd`` (owned) registering ``ops``."""
        super().__init__(fd, None, f"struct_ops {ops.struct_name} {ops.name!r}")
        self.ops = ops

    def update(self, new_map: Any, old_program: Any = None) -> None:
        """Register ``new_map`` in place of the current map (BPF_LINK_UPDATE, only if it is still current).

        :raises EBPFError: when ``new_map`` is not a ``link=True`` struct_ops map of the same type.
        :raises BPFSyscallError: when the kernel refuses.
        """
        if not isinstance(new_map, StructOpsMap) or not new_map.link_mode:
            raise EBPFError("a struct_ops link is updated with another StructOpsMap created with link=True")
        if new_map.struct_name != self.ops.struct_name:
            raise EBPFError(f"cannot replace a {self.ops.struct_name} with a {new_map.struct_name}")
        new_map._write()
        commands.link_update(self.fd, new_map.fd, flags=BPF_F_REPLACE, old_prog_fd=self.ops.fd)
        self.ops = new_map
        self.description = f"struct_ops {new_map.struct_name} {new_map.name!r}"


def create_struct_ops_map(struct_name: str, name: str = "", *, link: bool = True,
                          members: Mapping[str, Any] | None = None) -> StructOpsMap:
    """Create a struct_ops map for ``struct <struct_name>`` (e.g. ``"tcp_congestion_ops"``).

    :param struct_name: the kernel struct; its value type ``bpf_struct_ops_<struct_name>`` must be
        in the kernel's BTF.
    :param name: the map's name (15 characters at most).
    :param link: register through a struct_ops link (``BPF_F_LINK``, Linux >= 6.4); False: by map update.
    :param members: initial members (see :meth:`StructOpsMap.set`).
    :returns: the :class:`StructOpsMap`, not yet registered.
    :raises EBPFError: for a type the kernel does not have or bad members (before any syscall).
    :raises BPFSyscallError: when the kernel refuses the map.
    """
    value_id, struct_id, value_size, layout = _layout(struct_name)
    if not isinstance(name, str) or len(name) > 15:
        raise EBPFError(f"map name must be a str of at most 15 characters, not {name!r}")
    attr = MapCreateAttr(map_type=MapType.STRUCT_OPS, key_size=4, value_size=value_size, max_entries=1,
                         map_flags=BPF_F_LINK if link else 0, map_name=name.encode(),
                         btf_vmlinux_value_type_id=value_id)
    spec = MapSpec(map_type=MapType.STRUCT_OPS, key_size=4, value_size=value_size, max_entries=1, name=name,
                   flags=attr.map_flags, btf_vmlinux_value_type_id=value_id)
    # check the members against a detached table first: a bad one leaves no map behind
    staged = StructOpsMap.__new__(StructOpsMap)
    staged.value_size = value_size
    staged._setup(struct_name, struct_id, layout, link)
    if members:
        staged.set(**dict(members))
    # BPF_MAP_CREATE wants a program BTF beside the vmlinux value type (the map keeps a reference)
    btf = _object_btf()
    attr.btf_fd = btf.fd
    try:
        fd = commands.map_create(attr)
    finally:
        btf.close()
    try:
        ops = StructOpsMap(fd, spec, u32, RawCodec(value_size))
    except BaseException:
        close_fd(fd)
        raise
    ops._setup(struct_name, struct_id, layout, link)
    ops._value[:] = staged._value
    ops.programs.update(staged.programs)
    return ops


def _object_btf() -> Any:
    from ebpf.core.btf.builder import Builder  # deferred: start-up time (only this path needs it)
    from ebpf.core.btf.load import load_btf  # deferred: start-up time (only this path needs it)

    b = Builder()
    b.add_int("int", 4)
    return load_btf(b.encode())


#: The first Linux version with each struct_ops type.
_VERSIONS = {"tcp_congestion_ops": "5.6", "bpf_dummy_ops": "5.6", "hid_bpf_ops": "6.11", "sched_ext_ops": "6.12"}


@feature_test
def have_struct_ops(struct_name: str = "tcp_congestion_ops") -> None:
    """Probe for struct_ops maps of ``struct_name`` by creating one (nothing is registered).

    :raises UnsupportedFeatureError: when the kernel has no such struct_ops type or refuses the map.
    """
    feature, version = f"struct_ops {struct_name}", _VERSIONS.get(struct_name, "5.6")
    try:
        ops = create_struct_ops_map(struct_name, link=False)
    except BPFSyscallError as exc:
        raise probe_error(exc, feature, version) from None
    except EBPFError as exc:  # no such struct_ops type (or no BTF)
        raise UnsupportedFeatureError(feature, version, str(exc)) from None
    ops.close()
