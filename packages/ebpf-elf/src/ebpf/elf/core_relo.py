"""CO-RE: apply ``.BTF.ext`` relocations against the kernel's BTF, as libbpf's relo_core.c does.

Each relocation names a local (object BTF) type, an access path (``"0:1:2"``) and a kind
(field offset/size/existence/signedness/shifts, type id/existence/size/match, enum value
existence/value).  Candidates in the target BTF share the local type's *essential name*
(``task_struct___old`` -> ``task_struct``); the candidates the access path matches give the
value patched into the instruction, and candidates that disagree are an error (as libbpf).  A relocation no candidate satisfies gives 0 for the
``*_exists``/``type_matches`` kinds; for the others the instruction is *poisoned* (a call to
an invalid helper, as libbpf does) so the program still loads when that code is dead, and a
program that reaches it fails with a :class:`BTFError` naming the type and field.
Also resolves ``__ksym`` variables and kfunc calls to vmlinux BTF ids.
"""

from __future__ import annotations

import struct
import threading
import weakref
from typing import Any

from ebpf.core.btf import (
    Array,
    Composite,
    Enum,
    Float,
    Fwd,
    Int,
    Kind,
    Member,
    Pointer,
    Spec,
    Type,
    load_vmlinux,
    parse,
)
from ebpf.core.errors import BTFError, ELFError
from ebpf.core.records import dataclass, replace
from ebpf.elf.btf_ext import CoreRelo, CoreReloKind
from ebpf.elf.objfile import ElfObject
from ebpf.elf.relocations import ExternRef, LinkedProgram

__all__ = ["essential_name", "CoreResult", "calc_relo", "patch_insn", "CoreData", "relocate", "POISON_HELPER"]

POISON_HELPER = 0xBAD2310  # libbpf's marker: "invalid func unknown#195896080" in the verifier log
R = CoreReloKind
_FIELD_KINDS = range(R.FIELD_BYTE_OFFSET, R.FIELD_RSHIFT_U64 + 1)
_TYPE_KINDS = (R.TYPE_ID_LOCAL, R.TYPE_ID_TARGET, R.TYPE_EXISTS, R.TYPE_SIZE, R.TYPE_MATCHES)
_ENUM_KINDS = (R.ENUMVAL_EXISTS, R.ENUMVAL_VALUE)


def essential_name(name: str) -> str:
    """``name`` without a ``___flavor`` suffix."""
    i = name.find("___")
    return name[:i] if i > 0 else name


@dataclass
class CoreResult:
    """The value for one relocation (``poison`` when nothing matched), and sizes for loads."""

    value: int
    poison: bool = False
    orig_size: int = 0
    new_size: int = 0
    reason: str = ""


@dataclass
class _Step:
    """One step of a CO-RE access path: a member (by name) or an array index."""

    name: str | None  # member name, or None for an array index
    index: int


def _parse_access(access: str, where: str) -> list[int]:
    try:
        idx = [int(x) for x in access.split(":")]
    except ValueError:
        raise BTFError(f"{where}: bad CO-RE access string {access!r}") from None
    if not idx or any(i < 0 for i in idx):
        raise BTFError(f"{where}: bad CO-RE access string {access!r}")
    return idx


def _local_field_path(local: Spec, root: int, idx: list[int], where: str) -> tuple[list[_Step], str]:
    """Turn the local access indices into named steps (anonymous members are skipped, as libbpf)."""
    steps = [_Step(None, idx[0])]
    t = local.resolve(root)
    names = [essential_name(t.name) or "(anon)"]
    for i in idx[1:]:
        if isinstance(t, Composite):
            if i >= len(t.members):
                raise BTFError(f"{where}: access index {i} past the {len(t.members)} members of {t.name!r}")
            m = t.members[i]
            if m.name:
                steps.append(_Step(m.name, i))
                names.append(m.name)
            t = local.resolve(m.type_id)
        elif isinstance(t, Array):
            steps.append(_Step(None, i))
            names.append(f"[{i}]")
            t = local.resolve(t.type_id)
        else:
            raise BTFError(f"{where}: access index {i} into a {t.kind_name}")
    return steps, ".".join(names)


def _compat(a: Spec, ta: int, b: Spec, tb: int, depth: int = 0) -> bool:
    """libbpf's field compatibility: same category, recursing through pointers and arrays."""
    if depth > 16:
        return False
    x, y = a.resolve(ta), b.resolve(tb)
    ints = (Int, Enum, Float)  # Enum64 is an Enum
    if isinstance(x, ints) and isinstance(y, ints):
        return not (isinstance(x, Float) ^ isinstance(y, Float))
    if isinstance(x, (Composite, Fwd)) and isinstance(y, (Composite, Fwd)):
        return essential_name(x.name) == essential_name(y.name) or not x.name
    if isinstance(x, Pointer) and isinstance(y, Pointer):
        return True
    if isinstance(x, Array) and isinstance(y, Array):
        return _compat(a, x.type_id, b, y.type_id, depth + 1)
    return x.kind == y.kind


def _find_member(btf: Spec, t: Composite, name: str) -> Member | None:
    """Member ``name`` of ``t`` (anonymous members searched too; ``bit_offset`` from ``t``'s start)."""
    try:
        return btf.find_member(t, name)
    except BTFError:
        return None


def _match_field(local: Spec, root: int, steps: list[_Step], target: Spec, cand: Type) -> tuple[int, int, int] | None:
    """(bit offset, field type id, bitfield size) in ``target`` for the local path, or None."""
    bit = steps[0].index * target.sizeof(cand) * 8
    ftype, bf = cand.id, 0
    lt = local.resolve(root)
    for step in steps[1:]:
        t = target.resolve(ftype)
        if step.name is not None:
            if not isinstance(t, Composite):
                return None
            found = _find_member(target, t, step.name)
            if found is None:
                return None
            lfound = _find_member(local, lt, step.name) if isinstance(lt, Composite) else None
            if lfound is not None and not _compat(local, lfound.type_id, target, found.type_id):
                return None
            bit += found.bit_offset
            ftype, bf = found.type_id, found.bitfield_size
            lt = local.resolve(lfound.type_id) if lfound is not None else lt
        else:
            if not isinstance(t, Array):
                return None
            if t.nelems and step.index >= t.nelems and t.nelems != 1:
                return None
            bit += step.index * target.sizeof(t.type_id) * 8
            ftype, bf = t.type_id, 0
            lt = local.resolve(lt.type_id) if isinstance(lt, Array) else lt
    return bit, ftype, bf


def _field_value(kind: int, btf: Spec, bit: int, ftype: int, bf: int) -> tuple[int, int]:
    """(value, byte size) of a matched field for ``kind``."""
    mt = btf.resolve(ftype)
    if bf:
        byte_sz = mt.size if isinstance(mt, (Int, Enum)) else 4
        byte_off = bit // 8 // byte_sz * byte_sz
        while bit + bf - byte_off * 8 > byte_sz * 8:
            if byte_sz >= 8:
                raise BTFError(f"bitfield at bit {bit} (size {bf}) spans more than 8 bytes")
            byte_sz *= 2
            byte_off = bit // 8 // byte_sz * byte_sz
        bit_sz = bf
    else:
        byte_sz = btf.sizeof(ftype)
        byte_off = bit // 8
        bit_sz = byte_sz * 8
    if kind == R.FIELD_BYTE_OFFSET:
        return byte_off, byte_sz
    if kind == R.FIELD_BYTE_SIZE:
        return byte_sz, byte_sz
    if kind == R.FIELD_EXISTS:
        return 1, byte_sz
    if kind == R.FIELD_SIGNED:
        return int(isinstance(mt, (Int, Enum)) and mt.signed), byte_sz
    if kind == R.FIELD_LSHIFT_U64:
        return 64 - (bit + bit_sz - byte_off * 8), byte_sz
    return 64 - bit_sz, byte_sz  # FIELD_RSHIFT_U64


# Types by name, per target BTF: an object's relocations ask for the same few names again and
# again, and a handful of distinct lookups stays below the point where the spec indexes every name.
_NAMED: weakref.WeakKeyDictionary[Spec, dict[str, list[Type]]] = weakref.WeakKeyDictionary()


def _named(target: Spec, name: str) -> list[Type]:
    """Every type of ``target`` called ``name`` (a lazy name lookup, remembered)."""
    cache = _NAMED.setdefault(target, {})
    found = cache.get(name)
    if found is None:
        found = cache[name] = target.find_all(name)
    return found


def _candidates(local_t: Type, target: Spec) -> list[Type]:
    """Target types sharing ``local_t``'s essential name and kind: a name lookup, not a scan."""
    name = essential_name(local_t.name)
    if not name:
        return []
    if isinstance(local_t, Composite):
        return [t for t in _named(target, name) if isinstance(t, Composite)]
    if isinstance(local_t, Enum):
        return [t for t in _named(target, name) if isinstance(t, Enum)]  # ENUM64 too
    return [t for t in _named(target, name) if t.kind == local_t.kind]


def calc_relo(local: Spec, target: Spec, relo: CoreRelo, where: str = "") -> CoreResult:
    """Compute the value of one CO-RE relocation.

    :raises BTFError: malformed relocation (bad type id or access string).
    """
    local_t = local[relo.type_id]
    access = local.str_at(relo.access_str_off)
    idx = _parse_access(access, where)
    kind = relo.kind
    if kind == R.TYPE_ID_LOCAL:
        return CoreResult(relo.type_id)
    root = local.resolve(relo.type_id)
    if kind in _FIELD_KINDS:
        steps, path = _local_field_path(local, relo.type_id, idx, where)
        desc = f"{local_t.kind_name} {local_t.name}: field {path}"
        results: dict[tuple[int, int], str] = {}
        for cand in _candidates(root, target):
            found = _match_field(local, relo.type_id, steps, target, cand)
            if found is not None:
                results.setdefault(_field_value(kind, target, *found), cand.name)
        if results:
            _unambiguous(results, desc, where)
            (value, new_size), = results
            lfound = _match_field(local, relo.type_id, steps, local, root)
            orig_size = _field_value(R.FIELD_BYTE_SIZE, local, *lfound)[0] if lfound else 0
            return CoreResult(value, orig_size=orig_size, new_size=new_size)
        if kind == R.FIELD_EXISTS:
            return CoreResult(0)
        return CoreResult(0, True, reason=f"{desc} not found in the kernel's BTF")
    if kind in _TYPE_KINDS:
        cands = [c for c in _candidates(root, target) if _compat(local, root.id, target, c.id)]
        if not cands:
            if kind in (R.TYPE_EXISTS, R.TYPE_MATCHES):
                return CoreResult(0)
            return CoreResult(0, True, reason=f"type {local_t.kind_name} {local_t.name!r} not found in the kernel's BTF")
        if kind == R.TYPE_ID_TARGET:
            values = {(c.id, 0): c.name for c in cands}
        elif kind == R.TYPE_SIZE:
            values = {(target.sizeof(c), 0): c.name for c in cands}
        else:
            return CoreResult(1)
        _unambiguous(values, f"type {local_t.kind_name} {local_t.name!r}", where)
        return CoreResult(next(iter(values))[0])
    if kind in _ENUM_KINDS:
        if not isinstance(root, Enum) or idx[0] >= len(root.values):
            raise BTFError(f"{where}: enum relocation on {root.kind_name} {root.name!r} index {idx[0]}")
        ename = root.values[idx[0]].name
        found_values = {(ev.value, 0): cand.name for cand in _candidates(root, target)
                        for ev in (cand.values if isinstance(cand, Enum) else ()) if ev.name == ename}
        if found_values:
            if kind == R.ENUMVAL_EXISTS:
                return CoreResult(1)
            _unambiguous(found_values, f"enum {root.name!r} value {ename!r}", where)
            return CoreResult(next(iter(found_values))[0])
        if kind == R.ENUMVAL_EXISTS:
            return CoreResult(0)
        return CoreResult(0, True, reason=f"enum {root.name!r} value {ename!r} not found in the kernel's BTF")
    raise BTFError(f"{where}: unknown CO-RE relocation kind {kind}")


def _unambiguous(results: dict[tuple[int, int], str], desc: str, where: str) -> None:
    """Several kernel types matched with different answers: an error, as libbpf (never "the first")."""
    if len(results) > 1:
        answers = ", ".join(f"{name!r} gives {value}" for (value, _), name in results.items())
        raise BTFError(f"{where}: ambiguous CO-RE relocation of {desc}: the kernel has several matching "
                       f"types that disagree ({answers}); rename the local type or use a ___flavor that fits one")


_SIZES = {1: 0x10, 2: 0x08, 4: 0x00, 8: 0x18}


def patch_insn(insns: bytearray, idx: int, res: CoreResult, where: str) -> None:
    """Write ``res`` into instruction ``idx`` (imm, memory offset, or ld_imm64 value; poison)."""
    pos = idx * 8
    if pos + 8 > len(insns):
        raise BTFError(f"{where}: CO-RE relocation at instruction {idx} is past the program")
    code = insns[pos]
    cls = code & 0x07
    if res.poison:
        # call POISON_HELPER: the verifier refuses it only if the code is reachable.
        insns[pos : pos + 8] = struct.pack("<BBhi", 0x85, 0, 0, POISON_HELPER)
        if code == 0x18 and pos + 16 <= len(insns):
            insns[pos + 8 : pos + 16] = insns[pos : pos + 8]  # both halves, as libbpf
        return
    if code == 0x18:  # ld_imm64
        if pos + 16 > len(insns):
            raise BTFError(f"{where}: truncated ld_imm64 at instruction {idx}")
        struct.pack_into("<I", insns, pos + 4, res.value & 0xFFFFFFFF)
        struct.pack_into("<I", insns, pos + 12, (res.value >> 32) & 0xFFFFFFFF)
        return
    if cls in (0x04, 0x07, 0x05, 0x06) and not (code & 0x08):  # ALU/ALU64/JMP/JMP32 with K
        if not -(1 << 31) <= res.value < (1 << 32):
            raise BTFError(f"{where}: value {res.value} does not fit a 32-bit immediate")
        struct.pack_into("<i", insns, pos + 4, res.value - (1 << 32) if res.value >= (1 << 31) else res.value)
        return
    if cls in (0x01, 0x02, 0x03):  # LDX, ST, STX: memory offset
        if not -(1 << 15) <= res.value < (1 << 15):
            raise BTFError(f"{where}: offset {res.value} does not fit a 16-bit memory offset")
        struct.pack_into("<h", insns, pos + 2, res.value)
        if res.new_size and res.orig_size and res.new_size != res.orig_size and cls == 0x01:
            if res.new_size not in _SIZES:
                raise BTFError(f"{where}: field size changed to {res.new_size} bytes, which one load cannot read")
            insns[pos] = (code & ~0x18) | _SIZES[res.new_size]
        return
    raise BTFError(f"{where}: cannot apply a CO-RE relocation to instruction {idx} (opcode {code:#04x})")


def _target_btf(options: dict[str, Any]) -> Spec:
    """The BTF CO-RE relocates against: ``btf_path=``, or the running kernel's (parsed lazily, cached)."""
    path = options.get("btf_path")
    if path is None:
        return load_vmlinux()
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        raise BTFError(f"btf_path {path!r}: cannot read: {exc.strerror or exc}") from exc
    try:
        return parse(data, name=str(path))
    except BTFError as exc:
        raise BTFError(f"btf_path {str(path)!r}: {exc}") from None


# The kernel's own symbols (the lines of /proc/kallsyms before the first module's), read once per
# process and shared by every load: they cannot move until the next boot.  Module symbols can
# (a module reloads elsewhere), so a name not among them is looked up in the file again.
KALLSYMS = "/proc/kallsyms"
_kallsyms_lock = threading.Lock()
_kernel_symbols: dict[str, int] | None = None


def _read_kernel_symbols() -> dict[str, int] | None:
    """The kernel's own symbols (first address of each name), or None when addresses are hidden."""
    table: dict[str, int] = {}
    try:
        with open(KALLSYMS) as fh:
            for line in fh:
                parts = line.split()
                if len(parts) >= 3:
                    if len(parts) > 3:  # "[module]": the kernel's own symbols are over
                        break
                    table.setdefault(parts[2], int(parts[0], 16))
    except (OSError, ValueError):
        return None
    if not any(table.values()):  # kptr_restrict: every address reads 0, nothing to share
        return None
    return table


def kallsyms_address(name: str) -> int | None:
    """Address of kernel symbol ``name`` from ``/proc/kallsyms`` (None when absent or hidden)."""
    global _kernel_symbols
    with _kallsyms_lock:
        if _kernel_symbols is None:
            _kernel_symbols = _read_kernel_symbols()
        table = _kernel_symbols
    if table is not None and name in table:
        return table[name] or None
    try:
        with open(KALLSYMS) as fh:
            for line in fh:
                parts = line.split()
                if len(parts) >= 3 and parts[2] == name:
                    addr = int(parts[0], 16)
                    return addr or None
    except OSError:
        return None
    return None


def _extern_ids(externs: tuple[ExternRef, ...]) -> tuple[int, ...]:
    """Each extern's kernel BTF id (-1: not in the kernel's BTF; 0: a typeless ``__ksym``, found in kallsyms)."""
    vmlinux = load_vmlinux()
    ids = []
    for ext in externs:
        if ext.kind == "ksym_addr":
            ids.append(0)
            continue
        want = Kind.FUNC if ext.kind in ("kfunc", "kfunc_addr") else Kind.VAR
        t = next((c for c in _named(vmlinux, ext.name) if c.kind == want), None)
        ids.append(-1 if t is None else t.id)
    return tuple(ids)


def _resolve_externs(externs: tuple[ExternRef, ...], ids: tuple[int, ...], insns: bytearray, name: str,
                     notes: list[str]) -> None:
    for ext, type_id in zip(externs, ids):
        pos = ext.insn * 8
        if ext.kind == "ksym_addr":
            addr = kallsyms_address(ext.name)
            if addr is None and not ext.weak:
                raise ELFError(f"program {name!r}: __ksym {ext.name!r} is not in /proc/kallsyms (or addresses are "
                               f"hidden by kptr_restrict); declare it __weak to make it optional")
            struct.pack_into("<I", insns, pos + 4, (addr or 0) & 0xFFFFFFFF)
            struct.pack_into("<I", insns, pos + 12, (addr or 0) >> 32)
            continue
        if type_id < 0:
            if not ext.weak:
                raise BTFError(f"program {name!r}: {'__ksym' if ext.kind == 'ksym' else 'kfunc'} {ext.name!r} is not "
                               f"in the kernel's BTF (declare it __weak to make it optional)")
            if ext.kind == "kfunc":
                insns[pos : pos + 8] = struct.pack("<BBhi", 0x85, 0, 0, POISON_HELPER)
                notes.append(f"kfunc {ext.name!r} is not in the kernel's BTF")
            else:  # a weak missing __ksym (or kfunc taken as a value) reads as NULL
                insns[pos + 1] &= 0x0F
                struct.pack_into("<i", insns, pos + 4, 0)
                struct.pack_into("<i", insns, pos + 12, 0)
            continue
        struct.pack_into("<i", insns, pos + 4, type_id)
        if ext.kind in ("ksym", "kfunc_addr"):
            struct.pack_into("<i", insns, pos + 12, 0)
        else:
            struct.pack_into("<h", insns, pos + 2, 0)


@dataclass(frozen=True)
class CoreData:
    """What CO-RE needs at load time, recorded on the spec by the ELF loader (plain data).

    :ivar path: the object file, for messages.
    :ivar local: the object's own BTF (the relocations' local types), or None.
    :ivar relos: program name -> its ``(instruction index, relocation)`` pairs.
    :ivar externs: program name -> its ``__ksym`` / kfunc references.
    """

    path: str
    local: Spec | None
    relos: dict[str, tuple[tuple[int, CoreRelo], ...]]
    externs: dict[str, tuple[ExternRef, ...]]

    @classmethod
    def of(cls, obj: ElfObject, linked: list[LinkedProgram]) -> CoreData:
        """The records of ``obj``'s linked programs."""
        return cls(obj.path, obj.btf, {lp.function.name: tuple(lp.core_relos) for lp in linked if lp.core_relos},
                   {lp.function.name: tuple(lp.externs) for lp in linked if lp.externs})


def relocate(spec: Any, data: CoreData, options: dict[str, Any]) -> None:
    """Apply CO-RE relocations and extern ids to the programs of ``spec`` (in place).

    :param spec: the load's copy of the :class:`~ebpf.core.collection.CollectionSpec`.
    :param data: the relocation records.
    :param options: the load options; ``btf_path`` is the target BTF for CO-RE.
    :raises BTFError: an unsatisfiable relocation or a missing kfunc/ksym.
    :raises ELFError: a non-weak ``__ksym`` with no address.
    """
    from ebpf.elf.core_cache import CoreCache  # deferred: start-up time (only a CO-RE load needs it)

    cache = CoreCache.open(data, options)  # a fresh process skips the kernel's BTF when the results are known
    target: Spec | None = None
    for name, pspec in spec.programs.items():
        relos, externs = data.relos.get(name, ()), data.externs.get(name, ())
        if not (relos or externs):
            continue
        insns = bytearray(pspec.insns)
        notes: list[str] = []
        if relos:
            if data.local is None:
                raise BTFError(f"{data.path}: CO-RE relocations without .BTF")
            cached = cache.relos.get(name)
            if cached is not None and len(cached) != len(relos):
                cached = None
            if cached is None:
                target = target or _target_btf(options)
            results = []
            for n, (idx, relo) in enumerate(relos):
                where = _where(data, name, idx, relo)
                if cached is None:
                    assert target is not None
                    res = calc_relo(data.local, target, relo, where)
                    results.append((res.value, res.poison, res.orig_size, res.new_size, res.reason))
                else:
                    res = CoreResult(*cached[n])
                patch_insn(insns, idx, res, where)
                if res.poison:
                    notes.append(res.reason)
            if cached is None:
                cache.relos[name] = tuple(results)
                cache.dirty = True
        if externs:
            ids = cache.externs.get(name)
            if ids is None or len(ids) != len(externs):
                ids = cache.externs[name] = _extern_ids(externs)
                cache.dirty = True
            _resolve_externs(externs, ids, insns, name, notes)
        spec.programs[name] = _replace_insns(pspec, bytes(insns))
        if notes:
            spec.load_notes.setdefault(name, []).extend(notes)
    cache.store()


def _where(data: CoreData, name: str, idx: int, relo: CoreRelo) -> str:
    return f"{data.path}: program {name!r} instruction {idx} ({CoreReloKind.NAMES[relo.kind]} relocation)"


def _replace_insns(pspec: Any, insns: bytes) -> Any:
    return replace(pspec, insns=insns)
