"""``@kernel`` functions, compiled modules and loading them through the core's Collection.

Compiling is: Python source -> AST -> typed IR (:mod:`~ebpf.lang.check`) -> constant folding and
dead code removal (:mod:`~ebpf.lang.opt`) -> instructions (:mod:`~ebpf.lang.codegen`) -> BTF with
func_info and line_info (:mod:`~ebpf.lang.btfgen`).  The result is a
:class:`~ebpf.core.collection.CollectionSpec`, the same plain data the ELF loader produces, so
loading, map sharing between the programs of a module and ``program.attach()`` are the core's.
"""

from __future__ import annotations

import os
import re
import types
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from ebpf.core.asm import Instruction, assemble
from ebpf.core.collection import Collection, CollectionSpec, MapReference
from ebpf.core.errors import VerifierError
from ebpf.core.maps import MapSpec
from ebpf.core.programs import Program, ProgramSpec
from ebpf.core.records import dataclass, field
from ebpf.core.types import MapType, ProgType
from ebpf.lang import ir
from ebpf.lang.btfgen import ModuleBtf, ProgramBtf
from ebpf.lang.check import check_function
from ebpf.lang.codegen import Codegen
from ebpf.lang.ctx import CtxType, FirstOf, ctx_types
from ebpf.lang.errors import LangError
from ebpf.lang.maps import MapDecl
from ebpf.lang.opt import optimize
from ebpf.lang.sections import SectionInfo, section_info
from ebpf.lang.types import PtrType

__all__ = ["KernelFunction", "CompiledProgram", "CompiledModule", "kernel", "compile_module", "load", "python_line"]


@dataclass
class CompiledProgram:
    """One compiled kernel function.

    :ivar name: the function's name (the program's name).
    :ivar section: its section name (``"xdp"``, ``"tracepoint/syscalls/sys_enter_execve"``).
    :ivar info: what the section means (program type, attach type, target).
    :ivar insns: the instructions (map fds not yet patched in).
    :ivar positions: the Python ``(line, column)`` of each instruction slot.
    :ivar map_loads: ``(slot, map name)`` of each map reference.
    :ivar function: the checked IR.
    """

    name: str
    section: str
    info: SectionInfo
    insns: bytes
    positions: list[ir.Pos]
    map_loads: list[tuple[int, str]]
    function: ir.Function
    license: str = "GPL"
    stack_size: int = 0

    @property
    def insn_count(self) -> int:
        """How many 8-byte instruction slots the program has."""
        return len(self.insns) // 8

    def disassemble(self) -> str:
        """The program as text, each Python line above its instructions."""
        from ebpf.core.asm import iter_slots

        out, last = [], -1
        for slot, insn in iter_slots(self.insns):
            pos = self.positions[slot] if slot < len(self.positions) else None
            if pos is not None and pos[0] != last:
                out.append(f"; {self.function.source_lines.get(pos[0], '')}  @ line {pos[0]}")
                last = pos[0]
            out.append(f"{slot:4}: {insn}")
        return "\n".join(out)

    def line_records(self) -> list[tuple[int, str, str, int, int]]:
        """line_info rows: ``(slot, file, line text, line, column)`` wherever the position changes."""
        rows, last = [], None
        for slot, pos in enumerate(self.positions):
            if pos is None or pos == last:
                continue
            rows.append((slot, self.function.filename, self.function.source_lines.get(pos[0], ""), pos[0], pos[1]))
            last = pos
        return rows


class KernelFunction:
    """A function decorated with ``@kernel(section)``: compiled on first use, loaded with :meth:`load`.

    :ivar section: the section name (decides the program type and the attach target).
    :ivar fn: the Python function.
    """

    def __init__(self, fn: Callable[..., Any], section: str, license: str = "GPL", name: str | None = None) -> None:
        """Check the section name (compilation waits for :meth:`compile`)."""
        info = section_info(section)
        if info is None:
            raise LangError(f"unknown section {section!r}: use e.g. 'xdp', 'tracepoint/<category>/<name>', "
                            f"'raw_tracepoint/<name>', 'cgroup/connect4', 'cgroup_skb/ingress', 'tc'",
                            getattr(fn.__code__, "co_filename", "<unknown>"), fn.__code__.co_firstlineno)
        self.fn = fn
        self.section = section
        self.info = info
        self.license = license
        self.name = name or fn.__name__
        self.__wrapped_kernel__ = fn
        self.__doc__ = fn.__doc__
        self.__name__ = self.name
        self._compiled: CompiledProgram | None = None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Refuse: a kernel function runs in the kernel, not in Python.

        :raises TypeError: always, saying how to load it instead.
        """
        raise TypeError(f"{self.name} is a kernel function: load it (`{self.name}.load()` or "
                        f"ebpf.lang.load(module)) and attach the program; it does not run in Python")

    def __repr__(self) -> str:
        return f"<kernel function {self.name} section={self.section!r}>"

    def compile(self) -> CompiledProgram:
        """Compile (once) to instructions.

        :raises LangError: for code outside the subset, with its file, line and column.
        """
        if self._compiled is None:
            ctx_default: CtxType = getattr(ctx_types, self.info.ctx)
            if self.info.prog_type == ProgType.TRACEPOINT and self.info.target and "/" in self.info.target:
                # Unannotated tracepoint contexts get the event's named fields from tracefs.
                category, event = self.info.target.split("/", 1)
                ctx_default = FirstOf(ctx_types.tracepoint(category, event), ctx_default)
            fn_ir = check_function(self.fn, ctx_default)
            fn_ir.body = optimize(fn_ir.body)
            out = Codegen(fn_ir).run()
            insns = assemble(out.items)
            # Instruction index -> slot (ld_imm64 takes two slots, repeating its position).
            positions: list[ir.Pos] = []
            slot_of: list[int] = []
            k = 0
            for item in out.items:
                if isinstance(item, Instruction):
                    slot_of.append(len(positions))
                    positions.extend([out.positions[k]] * item.slots)
                    k += 1
            loads = [(slot_of[i], name) for i, name in out.map_loads]
            self._compiled = CompiledProgram(self.name, self.section, self.info, insns, positions, loads, fn_ir,
                                             self.license, out.stack_size)
        return self._compiled

    def disassemble(self) -> str:
        """The compiled program as text with the Python lines interleaved."""
        return self.compile().disassemble()

    def load(self, **options: Any) -> Program:
        """Compile, create the maps it uses and load it; returns the Program (it keeps its maps alive).

        Use :func:`load` for several functions sharing maps.

        :param options: as :meth:`~ebpf.core.collection.CollectionSpec.load` (``log_level=``, ...).
        :raises LangError: for code outside the subset.  :raises VerifierError: when the kernel refuses it.
        """
        coll = compile_module([self]).load(**options)
        prog: Program = coll.programs[self.name]
        prog.lang_collection = coll  # type: ignore[attr-defined,unused-ignore]  # the maps, for user space
        return prog


def kernel(section: str, *, license: str = "GPL", name: str | None = None) -> Callable[[Callable[..., Any]], KernelFunction]:
    """Mark a function as a kernel program: ``@kernel("xdp")``, ``@kernel("tracepoint/sched/sched_process_exec")``.

    :param section: libbpf's section name for the program (type, attach type and target follow from it).
    :param license: the program's license (GPL helpers need a GPL-compatible one).
    :param name: the program's name (default: the function's).
    :returns: a decorator producing a :class:`KernelFunction`.
    """
    def wrap(fn: Callable[..., Any]) -> KernelFunction:
        return KernelFunction(fn, section, license, name)

    return wrap


def _functions(source: types.ModuleType | KernelFunction | Iterable[KernelFunction]) -> list[KernelFunction]:
    if isinstance(source, KernelFunction):
        return [source]
    if isinstance(source, types.ModuleType):
        found = [v for v in vars(source).values() if isinstance(v, KernelFunction)]
    else:
        found = list(source)
    seen: list[KernelFunction] = []
    for f in found:
        if not isinstance(f, KernelFunction):
            raise LangError(f"{f!r} is not a @kernel function")
        if f not in seen:
            seen.append(f)
    if not seen:
        raise LangError("no @kernel functions to compile", getattr(source, "__file__", "<unknown>") or "<unknown>")
    return seen


@dataclass
class CompiledModule:
    """Compiled kernel functions and the maps they use (shared by name)."""

    programs: list[CompiledProgram]
    maps: dict[str, MapDecl]
    btf: ModuleBtf = field(default_factory=ModuleBtf)

    def collection_spec(self) -> CollectionSpec:
        """The :class:`~ebpf.core.collection.CollectionSpec` (maps with BTF, programs with line_info)."""
        spec = CollectionSpec()
        btf = ModuleBtf()
        for name, decl in self.maps.items():
            spec.maps[name] = map_spec(name, decl, btf)
        infos: dict[str, tuple[ProgramBtf, bytes, bytes]] = {}
        for p in self.programs:
            ctx_t = p.function.ctx.type
            ctx_struct = ctx_t.target if isinstance(ctx_t, PtrType) else None
            pb = ProgramBtf(btf.func(p.name, p.function.ctx.name, ctx_struct), p.line_records())
            infos[p.name] = (pb, btf.func_info(pb), btf.line_info(pb))
        spec.btf = btf.encode()
        for p in self.programs:
            _, finfo, linfo = infos[p.name]
            spec.programs[p.name] = ProgramSpec(
                p.info.prog_type, insns=p.insns, license=p.license, name=p.name,
                expected_attach_type=p.info.attach_type, attach_to=p.info.attach_to,
                func_info=finfo, line_info=linfo)
            spec.references[p.name] = [MapReference(slot, name) for slot, name in p.map_loads]
            # tp_btf programs attach where they were loaded for (attach_to): no target, as load_elf does
            spec.attach_targets[p.name] = None if p.info.attach_to else p.info.target
            spec.sections[p.name] = p.section
        return spec

    def load(self, **options: Any) -> Collection:
        """Create the maps and load every program (see :meth:`CollectionSpec.load`).

        :raises VerifierError: when the kernel refuses a program; the message starts with the
            Python line the verifier stopped at (``.python_line`` = (file, line, text)).
        """
        try:
            return self.collection_spec().load(**options)
        except VerifierError as exc:
            rows = [r for p in self.programs if p.name == exc.program_name or not exc.program_name
                    for r in p.line_records()]
            where = python_line(exc.log, rows)
            if where is None:
                raise
            new = VerifierError(exc.errno or 0, exc.command, exc.log, exc.program_name,
                                hint=f"at {where[0]}:{where[1]}: {where[2]}")
            new.python_line = where  # type: ignore[attr-defined]
            raise new from exc


_LINE_RE = re.compile(r"^; (.*) @ (.+):(\d+)$")


def python_line(log: str, records: Sequence[tuple[int, str, str, int, int]] = ()) -> tuple[str, int, str] | None:
    """The last source line a verifier log shows: ``(file, line, text)``.

    Kernels since 6.4 print ``; text @ file:line``; older ones print only ``; text``, which is
    looked up in the program's line ``records`` (:meth:`CompiledProgram.line_records`).
    """
    found = None
    for raw in log.splitlines():
        line = raw.strip()
        m = _LINE_RE.match(line)
        if m:
            found = (m.group(2), int(m.group(3)), m.group(1))
        elif line.startswith("; ") and records:
            text = line[2:]
            for _, filename, src, lineno, _ in records:
                if src == text:
                    found = (os.path.basename(filename), lineno, text)
                    break
    return found


def map_spec(name: str, decl: MapDecl, btf: ModuleBtf) -> MapSpec:
    """The :class:`~ebpf.core.maps.MapSpec` of a declaration, with key/value BTF when it has types."""
    t = decl.map_type
    if t == MapType.RINGBUF:
        return MapSpec(t, key_size=0, value_size=0, max_entries=decl.max_entries, name=name, flags=decl.flags)
    if t == MapType.PERF_EVENT_ARRAY:
        return MapSpec(t, key_size=4, value_size=4, max_entries=decl.max_entries, name=name, flags=decl.flags)
    if decl.key is None:  # queue, stack, bloom filter: values only, no BTF (the kernel wants none)
        return MapSpec(t, key_size=0, value_size=decl.value.size if decl.value is not None else 0,
                       max_entries=decl.max_entries, name=name, flags=decl.flags, map_extra=decl.map_extra)
    key_size = decl.key.size
    value_size = decl.value.size if decl.value is not None else 0
    kid = decl.key.btf(btf.types) if decl.key is not None else 0
    vid = decl.value.btf(btf.types) if decl.value is not None else 0
    return MapSpec(t, key_size=key_size, value_size=value_size, max_entries=decl.max_entries, name=name,
                   flags=decl.flags, btf_key_type_id=kid, btf_value_type_id=vid)


def compile_module(source: types.ModuleType | KernelFunction | Iterable[KernelFunction]) -> CompiledModule:
    """Compile the ``@kernel`` functions of a module (or the given ones).

    :raises LangError: for code outside the subset.
    """
    funcs = _functions(source)
    programs = [f.compile() for f in funcs]
    maps: dict[str, MapDecl] = {}
    for p in programs:
        for name, decl in p.function.maps.items():
            if maps.get(name, decl) is not decl:
                raise LangError(f"two different maps are called {name!r}: give them distinct names",
                                p.function.filename, p.function.first_line)
            maps[name] = decl
    return CompiledModule(programs, maps)


def load(source: types.ModuleType | KernelFunction | Iterable[KernelFunction], **options: Any) -> Collection:
    """Compile and load a module's kernel functions; they share the maps they name.

    :param source: a module, a kernel function, or several.
    :param options: as :meth:`~ebpf.core.collection.CollectionSpec.load`.
    :returns: the :class:`~ebpf.core.collection.Collection` (``programs[name]``, ``maps[name]``).
    :raises LangError: for code outside the subset.  :raises VerifierError: when the kernel refuses a program.
    """
    return compile_module(source).load(**options)


