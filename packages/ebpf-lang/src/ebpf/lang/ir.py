"""The typed intermediate representation between the Python AST and BPF instructions.

The checker (:mod:`ebpf.lang.check`) builds it with every expression typed, names resolved to
:class:`Var`, maps to :class:`~ebpf.lang.maps.MapDecl` and loops unrolled; :mod:`ebpf.lang.opt`
folds constants and drops dead code; :mod:`ebpf.lang.codegen` turns it into instructions.
Every node carries ``pos``: the (file line, column) it came from, for line_info and errors.
"""

from __future__ import annotations

from ebpf.core.records import dataclass, field
from ebpf.lang.helpers import HelperProto
from ebpf.lang.maps import MapDecl
from ebpf.lang.types import LangType, StructType

Pos = tuple[int, int]


@dataclass(eq=False)
class Var:
    """A local variable: scalars and pointers live in a register or a stack slot, structs and
    arrays in stack memory."""

    name: str
    type: LangType
    uses: int = 0

    @property
    def in_memory(self) -> bool:
        """Whether the value itself lives in stack memory (struct or array)."""
        from ebpf.lang.types import ArrayType

        return isinstance(self.type, (StructType, ArrayType))


# -- expressions -----------------------------------------------------------------------------------


@dataclass(eq=False)
class Expr:
    """Base: every expression has a type and a source position."""

    type: LangType
    pos: Pos


@dataclass(eq=False)
class Const(Expr):
    """An integer constant (already wrapped to ``type``)."""

    value: int = 0


@dataclass(eq=False)
class Local(Expr):
    """The value of a scalar or pointer variable."""

    var: Var | None = None


@dataclass(eq=False)
class AddrOf(Expr):
    """The address of a memory variable (struct/array local) plus ``offset``."""

    var: Var | None = None
    offset: int = 0


@dataclass(eq=False)
class Load(Expr):
    """Read ``type`` (an integer) at ``base + offset``; ``base`` is a pointer expression."""

    base: Expr | None = None
    offset: int = 0


@dataclass(eq=False)
class KLoad(Expr):
    """Read ``type`` (an integer) at kernel address ``base + offset`` with ``bpf_probe_read_kernel``."""

    base: Expr | None = None
    offset: int = 0


@dataclass(eq=False)
class IndexAddr(Expr):
    """The address of element ``index`` of an ``n``-element array at ``base`` (elements ``size`` bytes);
    loads through it read 0 and stores do nothing when ``index >= n`` (the check the verifier needs)."""

    base: Expr | None = None
    index: Expr | None = None
    n: int = 0
    size: int = 1


@dataclass(eq=False)
class BinOp(Expr):
    """``left op right`` with ``op`` one of + - * // % & | ^ << >>."""

    op: str = "+"
    left: Expr | None = None
    right: Expr | None = None


@dataclass(eq=False)
class Unary(Expr):
    """``-x`` or ``~x``."""

    op: str = "-"
    operand: Expr | None = None


@dataclass(eq=False)
class Compare(Expr):
    """``left op right`` (== != < <= > >=); ``signed`` picks signed comparison."""

    op: str = "=="
    left: Expr | None = None
    right: Expr | None = None
    signed: bool = False


@dataclass(eq=False)
class BoolOp(Expr):
    """``a and b and ...`` / ``a or b or ...`` (values 0/1 in conditions)."""

    op: str = "and"
    values: list[Expr] = field(default_factory=list)


@dataclass(eq=False)
class Not(Expr):
    """``not x``."""

    operand: Expr | None = None


@dataclass(eq=False)
class Cast(Expr):
    """``operand`` converted to the integer ``type`` (truncated or extended)."""

    operand: Expr | None = None


@dataclass(eq=False)
class Swap(Expr):
    """Host <-> network byte order of the low ``bits`` bits."""

    operand: Expr | None = None
    bits: int = 16


@dataclass(eq=False)
class Arg:
    """One C argument of a helper call: an expression, or the address of a memory region."""

    expr: Expr | None = None
    size: int = 0  # a ``size`` C argument (for ``buf``/``fmt``), when expr is None
    ctx: bool = False
    fmt: bytes = b""
    map_name: str = ""


@dataclass(eq=False)
class Call(Expr):
    """A helper call with its C arguments in order."""

    proto: HelperProto | None = None
    args: list[Arg] = field(default_factory=list)


@dataclass(eq=False)
class MapOp(Expr):
    """A map operation: ``lookup`` (pointer or None), ``get`` (value or ``default``), ``contains``,
    ``update``, ``delete``, ``increment``, ``output``, ``reserve``, ``submit``, ``discard``."""

    op: str = "lookup"
    map: MapDecl | None = None
    map_name: str = ""
    key: Expr | None = None
    value: Expr | None = None
    default: Expr | None = None
    flags: int = 0


@dataclass(eq=False)
class Header(Expr):
    """``ctx.header(T, offset)``: a packet pointer to ``T`` at ``offset`` or None when the packet
    is too short (the bounds check the verifier demands)."""

    offset: Expr | None = None
    size: int = 0
    data_off: int = 0
    end_off: int = 0


# -- statements ------------------------------------------------------------------------------------


@dataclass(eq=False)
class Stmt:
    """Base: every statement has a source position."""

    pos: Pos


@dataclass(eq=False)
class Assign(Stmt):
    """``var = value`` for a scalar/pointer variable."""

    var: Var | None = None
    value: Expr | None = None


@dataclass(eq=False)
class Store(Stmt):
    """Write the integer ``value`` as ``type`` at ``base + offset``."""

    base: Expr | None = None
    offset: int = 0
    type: LangType | None = None
    value: Expr | None = None


@dataclass(eq=False)
class AtomicAdd(Stmt):
    """``*(type *)(base + offset) += value`` as one atomic instruction (map values are shared by CPUs)."""

    base: Expr | None = None
    offset: int = 0
    type: LangType | None = None
    value: Expr | None = None


@dataclass(eq=False)
class Copy(Stmt):
    """Copy ``size`` bytes from ``src + src_offset`` to ``dst + dst_offset`` (a whole struct or array)."""

    dst: Expr | None = None
    dst_offset: int = 0
    src: Expr | None = None
    src_offset: int = 0
    size: int = 0


@dataclass(eq=False)
class Zero(Stmt):
    """Zero a memory variable (``ev = Event()``)."""

    var: Var | None = None


@dataclass(eq=False)
class ExprStmt(Stmt):
    """An expression evaluated for its effect (a call, a map update)."""

    expr: Expr | None = None


@dataclass(eq=False)
class If(Stmt):
    """``if cond: body else: orelse``."""

    cond: Expr | None = None
    body: list[Stmt] = field(default_factory=list)
    orelse: list[Stmt] = field(default_factory=list)


@dataclass(eq=False)
class Return(Stmt):
    """``return value``."""

    value: Expr | None = None


@dataclass(eq=False)
class Block(Stmt):
    """One unrolled loop iteration or a whole loop: ``label`` is where ``break`` jumps to."""

    body: list[Stmt] = field(default_factory=list)
    label: str = ""


@dataclass(eq=False)
class Loop(Stmt):
    """A counted loop the verifier bounds: ``for var in range(start, stop, step)`` (not unrolled);
    ``break`` jumps to ``label``, ``continue`` to ``next_label``."""

    var: Var | None = None
    start: int = 0
    stop: int = 0
    step: int = 1
    body: list[Stmt] = field(default_factory=list)
    label: str = ""
    next_label: str = ""


@dataclass(eq=False)
class Jump(Stmt):
    """``break``/``continue`` of an unrolled loop: jump to the end of the block ``label``."""

    label: str = ""


@dataclass
class Function:
    """A checked kernel function: its context variable, locals, body and source."""

    name: str
    ctx: Var
    body: list[Stmt]
    locals: list[Var]
    filename: str
    source_lines: dict[int, str]
    maps: dict[str, MapDecl]
    first_line: int = 1
    def_line: int = 1
