"""Collections: the maps, programs and global variables of one object file, loaded together.

A :class:`CollectionSpec` is plain data (what an object loader such as ``ebpf-elf`` produces):
program and map specs, the places in each program's instructions that refer to a map
(:class:`MapReference`), the initial contents of maps, and the object's global variables
(:class:`VariableSpec`).  :meth:`CollectionSpec.load` creates the maps, writes their initial
contents, freezes read-only data, patches map fds into the instructions, loads the programs
and returns a :class:`Collection` that owns every fd it made (``close()``, ``with``).
"""

from __future__ import annotations

import copy as _copy
import os
import struct
import warnings
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from ebpf.core import records
from ebpf.core.errors import BPFSyscallError, BTFError, EBPFError, VerifierError
from ebpf.core.extension import load_step
from ebpf.core.fdowner import ResourceOwner
from ebpf.core.records import dataclass, field
from ebpf.core.types import MapType

if TYPE_CHECKING:
    from ebpf.core.btf import BTF

__all__ = ["MapReference", "VariableSpec", "CollectionSpec", "CollectionOptions", "Collection", "Variable"]

_POISON_MARK = "195896080"  # libbpf's poisoned-instruction helper id (0xbad2310) in verifier logs
_BPF_F_MMAPABLE = 1 << 10
BPF_PSEUDO_MAP_FD = 1
BPF_PSEUDO_MAP_VALUE = 2
_LD_IMM64 = 0x18


@dataclass
class MapReference:
    """A 16-byte ``ld_imm64`` at instruction ``insn`` of a program that must point at map ``map``.

    :ivar insn: instruction index (of the first half of the ``ld_imm64``).
    :ivar map: the map's name in :attr:`CollectionSpec.maps`.
    :ivar offset: byte offset in the map's value (``kind="value"``: global variables).
    :ivar kind: ``"fd"`` (BPF_PSEUDO_MAP_FD) or ``"value"`` (BPF_PSEUDO_MAP_VALUE).
    """

    insn: int
    map: str
    offset: int = 0
    kind: str = "fd"


@dataclass
class VariableSpec:
    """A global variable living in an array map's single value (``.data``, ``.rodata``, ``.bss``).

    :ivar name: the variable's name.
    :ivar map: the name of the map holding it.
    :ivar offset: byte offset in the map's value.
    :ivar size: size in bytes.
    :ivar readonly: True for ``.rodata`` (settable only before load, through ``constants=``).
    :ivar signed: decode as a signed integer.
    :ivar type_name: the C type name when known (``"int"``, ``"char[16]"``), else ``""``.
    :ivar kind: what the type is when known: ``"int"``, ``"enum"``, ``"pointer"``, ``"array"``,
        ``"struct"``, ``"union"`` (else ``""``); an int or enum variable takes no str or bytes.
    """

    name: str
    map: str
    offset: int
    size: int
    readonly: bool = False
    signed: bool = False
    type_name: str = ""
    kind: str = ""


@dataclass
class CollectionOptions:
    """The load-time choices of :meth:`CollectionSpec.load`, kept apart from the spec (as cilium's ``CollectionOptions``).

    The spec says what an object is; these say how this process loads it.

    :ivar constants: global variable name -> value, written before load (``.rodata`` included).
    :ivar pin_root: directory for maps pinned by name (LIBBPF_PIN_BY_NAME); None: ``/sys/fs/bpf``.
    :ivar kernel_btf: the kernel BTF CO-RE relocations are resolved against (a vmlinux BTF file);
        None for the running kernel's (``/sys/kernel/btf/vmlinux``).  Loaders read it as ``btf_path``.
    :ivar log_level: verifier log level for every program (None: each spec's own).
    :ivar log_size: verifier log size for every program (None: each spec's own).
    :ivar keep_log: keep each program's verifier log on ``Program.verifier_log`` (None: each spec's own).
    :ivar require_btf: fail instead of loading without the object's BTF when the kernel rejects it
        (None: the object loader's default; ebpf-elf's is True).
    :ivar extra: options an object loader defines beyond these (passed on to it by name).
    """

    constants: dict[str, object] = field(default_factory=dict)
    pin_root: str | None = None
    kernel_btf: str | os.PathLike[str] | None = None
    log_level: int | None = None
    log_size: int | None = None
    keep_log: bool | None = None
    require_btf: bool | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_kwargs(cls, **options: Any) -> CollectionOptions:
        """The options given as keywords (``btf_path=`` is :attr:`kernel_btf`; unknown names go to :attr:`extra`)."""
        known = set(records.field_names(cls)) - {"extra"}
        if "btf_path" in options:
            options["kernel_btf"] = options.pop("btf_path")
        fields = {k: v for k, v in options.items() if k in known}
        if fields.get("constants") is None:
            fields.pop("constants", None)
        return cls(**fields, extra={k: v for k, v in options.items() if k not in known})

    def as_dict(self) -> dict[str, Any]:
        """The options by the names loaders and hooks read (``btf_path`` for :attr:`kernel_btf`; unset ones left out)."""
        out: dict[str, Any] = dict(self.extra)
        if self.constants:
            out["constants"] = dict(self.constants)
        if self.kernel_btf is not None:
            out["btf_path"] = self.kernel_btf
        for name in ("pin_root", "log_level", "log_size", "keep_log", "require_btf"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        return out


@dataclass
class CollectionSpec:
    """Everything needed to load an object's maps and programs; plain data (see :meth:`copy`).

    :ivar programs: program name -> :class:`~ebpf.core.programs.ProgramSpec`.
    :ivar maps: map name -> :class:`~ebpf.core.maps.MapSpec`.
    :ivar variables: global variable name -> :class:`VariableSpec`.
    :ivar references: program name -> the map references to patch before loading it.
    :ivar map_contents: map name -> initial ``(key bytes, value)`` entries; a value is bytes,
        or the ``str`` name of a map (map-in-map) or of a program (program arrays).
    :ivar freeze: names of maps frozen after their contents are written (``.rodata``).
    :ivar attach_targets: program name -> section-derived attach target (``"syscalls/sys_enter_openat"``).
    :ivar sections: program name -> the ELF section it came from.
    :ivar btf: raw object BTF loaded once and shared by maps (``btf_*_type_id``) and programs
        (func_info/line_info); None for none.
    :ivar pin_by_name: names of maps pinned by name (LIBBPF_PIN_BY_NAME) under ``pin_root``.
    :ivar load_notes: program name -> why it may fail to load (e.g. CO-RE relocations that
        matched nothing); turned into a :class:`BTFError` when the verifier refuses the program.
    :ivar require_btf: the object loader's default for :attr:`CollectionOptions.require_btf`
        (ebpf-elf's is True); None: the core's (load without BTF, with a warning).
    :ivar loader_data: load step name -> what that object loader recorded for load time (ebpf-elf:
        CO-RE relocation records, struct_ops tables, programs that cannot load); the step of that
        name (:class:`~ebpf.core.extension.LoadStep`) uses it at :meth:`load`.  The values are
        read-only data, shared by :meth:`copy`.
    """

    programs: dict[str, Any] = field(default_factory=dict)
    maps: dict[str, Any] = field(default_factory=dict)
    variables: dict[str, VariableSpec] = field(default_factory=dict)
    references: dict[str, list[MapReference]] = field(default_factory=dict)
    map_contents: dict[str, list[tuple[bytes, bytes | str]]] = field(default_factory=dict)
    freeze: set[str] = field(default_factory=set)
    attach_targets: dict[str, str | None] = field(default_factory=dict)
    sections: dict[str, str] = field(default_factory=dict)
    btf: bytes | None = None
    pin_by_name: set[str] = field(default_factory=set)
    load_notes: dict[str, list[str]] = field(default_factory=dict)
    require_btf: bool | None = None
    loader_data: dict[str, Any] = field(default_factory=dict)

    def copy(self) -> CollectionSpec:
        """A deep copy that can be changed without touching this one (``loader_data`` values are shared)."""
        values = {name: _copy.deepcopy(getattr(self, name)) for name in records.field_names(self)
                  if name != "loader_data"}
        return CollectionSpec(**values, loader_data=dict(self.loader_data))

    def set_constants(self, constants: Mapping[str, object]) -> None:
        """Write initial values of global variables (``.rodata`` constants included), before load.

        :param constants: variable name -> int, bool, bytes or str.
        :raises EBPFError: for an unknown variable or a value that does not fit.
        """
        for name, value in constants.items():
            var = self.variables.get(name)
            if var is None:
                known = ", ".join(sorted(self.variables)) or "none"
                raise EBPFError(f"no global variable {name!r} to set (variables: {known})")
            data = encode_value(var, value)
            entries = self.map_contents.setdefault(var.map, [])
            if not entries:
                value_size = int(getattr(self.maps[var.map], "value_size", var.offset + var.size))
                entries.append((bytes(4), bytes(value_size)))
            key, blob = entries[0]
            if not isinstance(blob, bytes):
                raise EBPFError(f"map {var.map!r} does not hold plain data")
            entries[0] = (key, blob[: var.offset] + data + blob[var.offset + var.size :])

    def load(self, opts: CollectionOptions | None = None, /, **options: Any) -> Collection:
        """Create the maps, load the programs, and return the live :class:`Collection`.

        :param opts: the load-time choices (:class:`CollectionOptions`), or None.
        :param options: the same choices as keywords, overriding ``opts``: ``constants={name: value}``,
            ``pin_root=``, ``kernel_btf=`` (or ``btf_path=``), ``log_level=``, ``log_size=``,
            ``keep_log=``, ``require_btf=``, plus what the object loader understands.
        :returns: the collection (owns every fd it made; close it or use ``with``).
        :raises EBPFError: bad options or spec, before any syscall.
        :raises VerifierError: a program was rejected (everything made so far is closed).
        """
        options = self._options(opts, options)
        return _Loader(self._prepare(options), options).run()

    def load_in_place(self, opts: CollectionOptions | None = None, /, **options: Any) -> Collection:
        """:meth:`load` without the copy: for a spec made for this one load (``load_elf``'s own).

        The spec itself is prepared (loader steps applied, ``autoload=False`` programs removed,
        constants written); do not load it again.  A copy of a large object costs milliseconds a
        cold start need not pay.

        :param opts: the load-time choices, as for :meth:`load`.
        :param options: the same as keywords.
        :returns: the collection, as :meth:`load` returns it.
        """
        options = self._options(opts, options)
        return _Loader(self._prepare(options, in_place=True), options).run()

    def prepare(self, opts: CollectionOptions | None = None, /, **options: Any) -> CollectionSpec:
        """The copy :meth:`load` would load: loader steps applied (CO-RE relocations resolved),
        ``autoload=False`` programs left out, constants written.  Nothing is created in the kernel.

        :param opts: the load-time choices, as for :meth:`load`.
        :param options: the same as keywords.
        :returns: a new spec; this one is unchanged.
        :raises EBPFError: bad options, or a loader step refused the spec (e.g. a CO-RE relocation).
        """
        return self._prepare(self._options(opts, options))

    @staticmethod
    def _options(opts: CollectionOptions | None, options: dict[str, Any]) -> dict[str, Any]:
        if opts is not None and not isinstance(opts, CollectionOptions):
            raise EBPFError(f"load() takes CollectionOptions, not {type(opts).__name__}")
        if opts is not None:
            options = {**opts.as_dict(), **options}
        return CollectionOptions.from_kwargs(**options).as_dict()

    def _prepare(self, options: dict[str, Any], in_place: bool = False) -> CollectionSpec:
        spec = self if in_place else self.copy()
        if spec.require_btf is not None:
            options.setdefault("require_btf", spec.require_btf)
        for step_name, data in spec.loader_data.items():
            step = load_step(step_name)
            if step.prepare is not None:
                step.prepare(spec, data, options)
        for name in [n for n, p in spec.programs.items() if not getattr(p, "autoload", True)]:
            del spec.programs[name]  # ProgramSpec.autoload = False: left out, as libbpf does
            spec.references.pop(name, None)
            for entries in spec.map_contents.values():
                entries[:] = [(k, v) for k, v in entries if v != name]
        constants = options.get("constants") or {}
        if constants:
            spec.set_constants(constants)
        return spec


def encode_value(var: VariableSpec, value: object) -> bytes:
    """Encode ``value`` for ``var`` (little-endian ints, bytes/str padded with NULs)."""
    if var.kind in ("int", "enum", "pointer") and not isinstance(value, int):
        # "abc" would otherwise become the int 6513249: say what the variable is instead.
        raise EBPFError(f"variable {var.name!r} is {var.type_name or var.kind} ({var.size} bytes): "
                        f"give an int, not {type(value).__name__}")
    if isinstance(value, bool):
        value = int(value)
    if isinstance(value, int):
        if var.size not in (1, 2, 4, 8):
            raise EBPFError(f"variable {var.name!r} is {var.size} bytes: give bytes, not an int")
        try:
            return value.to_bytes(var.size, "little", signed=value < 0)
        except OverflowError:
            raise EBPFError(f"value {value} does not fit variable {var.name!r} ({var.size} bytes)") from None
    if isinstance(value, str):
        value = value.encode()
    if isinstance(value, (bytes, bytearray, memoryview)):
        raw = bytes(value)
        if len(raw) > var.size:
            raise EBPFError(f"{len(raw)} bytes do not fit variable {var.name!r} ({var.size} bytes)")
        return raw.ljust(var.size, b"\0")
    raise EBPFError(f"cannot set variable {var.name!r} from {type(value).__name__}")


class Variable:
    """A live global variable: reads and writes its bytes in the map (through the mmap when it has one)."""

    def __init__(self, spec: VariableSpec, map: Any) -> None:
        """Bind ``spec`` to its loaded map."""
        self.spec = spec
        self.map = map
        self._mm: Any = None
        if int(getattr(map, "flags", 0)) & _BPF_F_MMAPABLE and hasattr(map, "mmap"):
            try:
                self._mm = map.mmap()
            except (EBPFError, OSError, AttributeError):
                self._mm = None

    @property
    def name(self) -> str:
        """The variable's name."""
        return self.spec.name

    @property
    def size(self) -> int:
        """Size in bytes."""
        return self.spec.size

    @property
    def readonly(self) -> bool:
        """True for ``.rodata`` constants (frozen after load)."""
        return self.spec.readonly

    def read(self) -> bytes:
        """The variable's current bytes."""
        off, size = self.spec.offset, self.spec.size
        if self._mm is not None:
            return bytes(self._mm[off : off + size])
        blob = self.map.lookup_bytes(bytes(4))
        return bytes(blob[off : off + size]) if blob is not None else bytes(size)

    def write(self, data: bytes) -> None:
        """Overwrite the variable's bytes (``len(data) == size``).

        :raises EBPFError: for a read-only variable or the wrong size.
        """
        if self.spec.readonly:
            raise EBPFError(f"variable {self.name!r} is read-only (.rodata): set it before load with constants=")
        if len(data) != self.spec.size:
            raise EBPFError(f"variable {self.name!r} is {self.spec.size} bytes, got {len(data)}")
        off = self.spec.offset
        if self._mm is not None:
            self._mm[off : off + len(data)] = data
            return
        blob = bytearray(self.map.lookup_bytes(bytes(4)) or bytes(self.map.value_size))
        blob[off : off + len(data)] = data
        self.map.update_bytes(bytes(4), bytes(blob))

    def get(self) -> int | bytes:
        """The value: an int for 1/2/4/8-byte variables, else bytes."""
        raw = self.read()
        if self.spec.size in (1, 2, 4, 8) and not self.spec.type_name.startswith("char["):
            return int.from_bytes(raw, "little", signed=self.spec.signed)
        return raw

    def set(self, value: object) -> None:
        """Write ``value`` (int, bool, bytes or str)."""
        self.write(encode_value(self.spec, value))

    value = property(get, set, doc="The current value (see :meth:`get` / :meth:`set`).")

    def close(self) -> None:
        """Release the mmap (the map itself belongs to the collection)."""
        if self._mm is not None:
            self._mm = None  # the view belongs to the map, which releases it on close

    def __repr__(self) -> str:
        return f"<Variable {self.name!r} in {self.spec.map} +{self.spec.offset} ({self.spec.size} bytes)>"


def _close_all(variables: dict[str, Variable], programs: dict[str, Any], maps: dict[str, Any],
               owned: list[Any]) -> None:
    for var in variables.values():
        var.close()
    for prog in programs.values():
        prog.close()
    for m in maps.values():
        m.close()
    for obj in owned:
        obj.close()
    owned.clear()


class Collection(ResourceOwner):
    """Loaded maps, programs and variables of one object; owns every fd (``close()``, ``with``).

    Collected while open, it closes everything with a ResourceWarning.

    :ivar programs: name -> :class:`~ebpf.core.programs.Program`.
    :ivar maps: name -> :class:`~ebpf.core.maps.Map`.
    :ivar variables: name -> :class:`Variable`.
    """

    def __init__(self, programs: dict[str, Any], maps: dict[str, Any], variables: dict[str, Variable],
                 owned: list[Any] | None = None) -> None:
        """Wrap the loaded objects; ``owned`` lists extra fd holders to close (BTF)."""
        self.programs = programs
        self.maps = maps
        self.variables = variables
        self._owned = owned or []
        self._track(_close_all, variables, programs, maps, self._owned)

    def close(self) -> None:
        """Close every program, map and BTF fd this collection made (idempotent)."""
        self._release()

    def __iter__(self) -> Iterator[str]:
        return iter(self.programs)

    def __repr__(self) -> str:
        return f"<Collection programs={sorted(self.programs)} maps={sorted(self.maps)}>"


class _Loader:
    """One :meth:`CollectionSpec.load`: creates things in order, closes all on failure."""

    def __init__(self, spec: CollectionSpec, options: dict[str, Any]) -> None:
        self.spec = spec
        self.options = options
        self.maps: dict[str, Any] = {}
        self.programs: dict[str, Any] = {}
        self.owned: list[Any] = []
        self.btf: BTF | None = None
        self.pinned: list[str] = []  # pins made by this load, removed again if it fails

    def run(self) -> Collection:
        self._check()
        try:
            self._load_btf()
            for name in self.spec.maps:
                self._create_map(name)
            for name in self.spec.programs:
                self._load_program(name)
            self._fill_program_arrays()
            for step_name, data in self.spec.loader_data.items():
                after = load_step(step_name).after_load
                if after is not None:
                    after(self.spec, data, self.maps, self.programs, self.options)
            variables = {n: Variable(v, self.maps[v.map]) for n, v in self.spec.variables.items()}
        except BaseException:
            for prog in self.programs.values():
                prog.close()
            for m in self.maps.values():
                m.close()
            for obj in self.owned:
                obj.close()
            for path in self.pinned:
                try:
                    os.unlink(path)
                except OSError:
                    pass
            raise
        return Collection(self.programs, self.maps, variables, self.owned)

    def _check(self) -> None:
        for prog, refs in self.spec.references.items():
            if prog not in self.spec.programs:
                raise EBPFError(f"references for unknown program {prog!r}")
            for ref in refs:
                if ref.map not in self.spec.maps:
                    raise EBPFError(f"program {prog!r} refers to unknown map {ref.map!r}")

    def _load_btf(self) -> None:
        if not self.spec.btf:
            return
        from ebpf.core.btf import load_btf  # deferred: start-up time (only this path needs it)

        try:
            self.btf = load_btf(self.spec.btf)
        except BTFError as exc:
            if self.options.get("require_btf"):
                raise BTFError(f"the kernel rejected the object's BTF: {exc}") from exc
            # Maps and programs still load without BTF; only typed maps and source lines are lost.
            warnings.warn(f"the kernel rejected the object's BTF; loading without it "
                          f"(require_btf=True makes this an error): {exc}", RuntimeWarning, stacklevel=4)
            return
        self.owned.append(self.btf)

    def _create_map(self, name: str) -> Any:
        from ebpf.core.maps import Map, create_map  # deferred: start-up time (only this path needs it)

        if name in self.maps:
            return self.maps[name]
        mspec = self.spec.maps[name]
        if self.btf is None:
            mspec = records.replace(mspec, btf=None, btf_key_type_id=0, btf_value_type_id=0)
        else:
            mspec = records.replace(mspec, btf=self.btf if mspec.btf_value_type_id or mspec.btf_key_type_id else None)
        inner = getattr(mspec, "inner_map", None)
        if isinstance(inner, str):
            inner_spec = self.spec.maps.get(inner)
            mspec = records.replace(mspec, inner_map=inner_spec)
        pin_path = None
        if name in self.spec.pin_by_name:
            root = self.options.get("pin_root") or "/sys/fs/bpf"
            pin_path = os.path.join(os.fspath(root), name)
            if os.path.exists(pin_path):
                existing = Map.from_pinned(pin_path)
                want = (_map_type(mspec.map_type), mspec.key_size, mspec.value_size, mspec.max_entries)
                have = (int(existing.map_type), existing.key_size, existing.value_size, existing.max_entries)
                if have != want:
                    existing.close()
                    raise EBPFError(f"map {name!r} pinned at {pin_path} does not match the object's definition "
                                    f"(type, key, value, max_entries: pinned {have}, object {want})")
                self.maps[name] = existing
                return existing
            mspec = records.replace(mspec, pin_path=None)
        try:
            m = create_map(mspec)
        except BPFSyscallError:
            if mspec.btf is None:
                raise
            # As libbpf: a kernel that refuses the map's BTF types may still take the map without them.
            m = create_map(records.replace(mspec, btf=None, btf_key_type_id=0, btf_value_type_id=0))
        self.maps[name] = m
        for key, value in self.spec.map_contents.get(name, []):
            if isinstance(value, str):
                if value in self.spec.programs:
                    continue  # program arrays are filled after the programs load
                inner_map = self._create_map(value)
                m.update_bytes(key, inner_map.fd.to_bytes(4, "little"))
            else:
                m.update_bytes(key, value)
        if name in self.spec.freeze:
            m.freeze()
        if pin_path is not None:
            m.pin(pin_path)
            self.pinned.append(pin_path)
        return m

    def _load_program(self, name: str) -> None:
        from ebpf.core.programs import load_program  # deferred: start-up time (only this path needs it)

        pspec = self.spec.programs[name]
        insns = bytearray(_insn_bytes(pspec.insns))
        used: list[Any] = []
        for ref in self.spec.references.get(name, []):
            m = self.maps[ref.map]
            pos = ref.insn * 8
            if pos + 16 > len(insns) or insns[pos] != _LD_IMM64:
                raise EBPFError(f"program {name!r}: map reference at instruction {ref.insn} is not a ld_imm64")
            src = BPF_PSEUDO_MAP_VALUE if ref.kind == "value" else BPF_PSEUDO_MAP_FD
            insns[pos + 1] = (insns[pos + 1] & 0x0F) | (src << 4)
            struct.pack_into("<i", insns, pos + 4, m.fd)
            struct.pack_into("<i", insns, pos + 12, ref.offset if ref.kind == "value" else 0)
            if m not in used:
                used.append(m)
        fields: dict[str, Any] = {"insns": bytes(insns), "maps": tuple(used)}
        if self.btf is not None and pspec.func_info:
            fields["btf"] = self.btf
        else:
            fields.update(btf=None, func_info=b"", line_info=b"")
        for opt in ("log_level", "keep_log", "log_size"):
            if opt in self.options:
                fields[opt] = self.options[opt]
        # What the loader knows travels as data: the section-derived target lets program.attach()
        # work with no argument.
        fields.update(section=self.spec.sections.get(name, pspec.section),
                      attach_target=self.spec.attach_targets.get(name, pspec.attach_target))
        try:
            prog = load_program(records.replace(pspec, **fields))
        except VerifierError as exc:
            notes = self.spec.load_notes.get(name)
            if notes and _POISON_MARK in exc.log:
                raise BTFError(f"program {name!r} reaches code the loader could not relocate: "
                               + "; ".join(notes)) from exc
            raise
        self.programs[name] = prog

    def _fill_program_arrays(self) -> None:
        for name, entries in self.spec.map_contents.items():
            for key, value in entries:
                if isinstance(value, str) and value in self.programs:
                    self.maps[name].update_bytes(key, self.programs[value].fd.to_bytes(4, "little"))


def _map_type(value: object) -> int:
    return int(MapType.parse(value))


def _insn_bytes(insns: Any) -> bytes:
    if isinstance(insns, (bytes, bytearray, memoryview)):
        return bytes(insns)
    if hasattr(insns, "assemble"):
        return bytes(insns.assemble())
    raise EBPFError(f"collection programs need instructions as bytes, not {type(insns).__name__}")

