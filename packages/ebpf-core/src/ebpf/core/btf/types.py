"""BTF type records as typed, immutable dataclasses.

Types refer to each other by type id (``type_id``), exactly as BTF does; a
:class:`~ebpf.core.btf.spec.Spec` turns ids into types (``spec[type_id]``).  Id 0 is
:data:`VOID`.
"""

from __future__ import annotations

import enum
from typing import Any, ClassVar, TypeVar

from ebpf.core.errors import BTFError
from ebpf.core.records import dataclass

__all__ = [
    "Kind",
    "IntEncoding",
    "Linkage",
    "Type",
    "Void",
    "VOID",
    "Int",
    "Pointer",
    "Array",
    "Member",
    "Composite",
    "Struct",
    "Union",
    "EnumValue",
    "Enum",
    "Enum64",
    "Fwd",
    "Qualifier",
    "Typedef",
    "Volatile",
    "Const",
    "Restrict",
    "TypeTag",
    "Func",
    "Param",
    "FuncProto",
    "Var",
    "VarSecinfo",
    "Datasec",
    "Float",
    "DeclTag",
    "KIND_CLASSES",
]


class Kind(enum.IntEnum):
    """``BTF_KIND_*``: the kind field of a BTF type record."""

    UNKN = 0
    INT = 1
    PTR = 2
    ARRAY = 3
    STRUCT = 4
    UNION = 5
    ENUM = 6
    FWD = 7
    TYPEDEF = 8
    VOLATILE = 9
    CONST = 10
    RESTRICT = 11
    FUNC = 12
    FUNC_PROTO = 13
    VAR = 14
    DATASEC = 15
    FLOAT = 16
    DECL_TAG = 17
    TYPE_TAG = 18
    ENUM64 = 19

    @classmethod
    def parse(cls, value: object) -> Kind:
        """The kind for ``value``: a :class:`Kind`, an int, a name (``"struct"``, ``"ptr"``) or a type class.

        :raises BTFError: when ``value`` names no kind.
        """
        if isinstance(value, Kind):
            return value
        if isinstance(value, type) and issubclass(value, Type):
            return value.kind
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 19:
            return cls(value)
        if isinstance(value, str):
            key = value.strip().upper().replace(" ", "_")
            key = _KIND_ALIASES.get(key, key)
            if key in cls.__members__:
                return cls.__members__[key]
        raise BTFError(f"unknown BTF kind {value!r}; expected one of: {', '.join(k.name.lower() for k in cls)}")


_KIND_ALIASES = {"POINTER": "PTR", "VOID": "UNKN", "FUNCTION": "FUNC", "FUNCPROTO": "FUNC_PROTO", "DECLTAG": "DECL_TAG"}


class IntEncoding(enum.IntFlag):
    """``BTF_INT_*`` encoding bits of an :class:`Int`."""

    NONE = 0
    SIGNED = 1
    CHAR = 2
    BOOL = 4


class Linkage(enum.IntEnum):
    """Linkage of a :class:`Func` (static/global/extern) or :class:`Var` (static/global/extern)."""

    STATIC = 0
    GLOBAL = 1
    EXTERN = 2


_T = TypeVar("_T", bound=type)


def _frozen_setattr(self: object, name: str, value: Any) -> None:
    from dataclasses import FrozenInstanceError  # deferred: start-up time (only on a wrong write)

    raise FrozenInstanceError(f"cannot assign to field {name!r}")


def _frozen_delattr(self: object, name: str) -> None:
    from dataclasses import FrozenInstanceError  # deferred: start-up time (only on a wrong write)

    raise FrozenInstanceError(f"cannot delete field {name!r}")


def _no_new_fields(cls: _T) -> _T:
    """For a subclass of a frozen dataclass that adds no field, only its ``kind``: what
    ``@dataclass(frozen=True)`` would give it, without generating the methods again.

    The inherited ``__init__``, ``__repr__``, ``__eq__`` and ``__hash__`` already act on the
    instance's own class (its name in the repr, equality only within a class), and
    ``dataclasses.fields``/``replace`` read the inherited fields; only assignment needs this
    class's own refusal (the parent's lets a subclass instance take new attributes).
    Generating them costs ~0.4 ms a class at import: 9 classes of a cold start.
    """
    cls.__setattr__ = _frozen_setattr  # type: ignore[method-assign,assignment]
    cls.__delattr__ = _frozen_delattr  # type: ignore[method-assign,assignment]
    return cls


@dataclass(frozen=True)
class Type:
    """Base of every BTF type: its id in the spec and its name (``""`` when anonymous)."""

    id: int
    name: str
    kind: ClassVar[Kind] = Kind.UNKN

    @property
    def kind_name(self) -> str:
        """The kind in lower case, e.g. ``"struct"``."""
        return self.kind.name.lower()

    def __str__(self) -> str:
        return f"{self.kind_name} {self.name or '(anon)'} [{self.id}]"


@_no_new_fields
class Void(Type):
    """Type id 0: ``void``."""

    kind: ClassVar[Kind] = Kind.UNKN


#: The one ``void`` (type id 0).
VOID = Void(0, "")


@dataclass(frozen=True)
class Int(Type):
    """``BTF_KIND_INT``: an integer of ``size`` bytes; ``bits`` used, starting at bit ``offset``."""

    size: int
    encoding: IntEncoding = IntEncoding.NONE
    offset: int = 0
    bits: int = 0
    kind: ClassVar[Kind] = Kind.INT

    @property
    def signed(self) -> bool:
        """True for signed integers."""
        return bool(self.encoding & IntEncoding.SIGNED)

    @property
    def is_char(self) -> bool:
        """True for ``char`` (the CHAR encoding bit, or a one-byte int named like a char)."""
        return bool(self.encoding & IntEncoding.CHAR) or (self.size == 1 and "char" in self.name)

    @property
    def is_bool(self) -> bool:
        """True for ``_Bool``."""
        return bool(self.encoding & IntEncoding.BOOL)


@dataclass(frozen=True)
class Pointer(Type):
    """``BTF_KIND_PTR``: a pointer to ``type_id``."""

    type_id: int
    kind: ClassVar[Kind] = Kind.PTR


@dataclass(frozen=True)
class Array(Type):
    """``BTF_KIND_ARRAY``: ``nelems`` elements of ``type_id``, indexed by ``index_type_id``."""

    type_id: int
    index_type_id: int
    nelems: int
    kind: ClassVar[Kind] = Kind.ARRAY


@dataclass(frozen=True)
class Member:
    """A struct or union member: ``bit_offset`` from the start of the struct, ``bitfield_size`` 0 unless a bitfield."""

    name: str
    type_id: int
    bit_offset: int
    bitfield_size: int = 0

    @property
    def offset(self) -> int:
        """Byte offset of the member (of its first byte, for a bitfield)."""
        return self.bit_offset // 8


@dataclass(frozen=True)
class Composite(Type):
    """Common base of :class:`Struct` and :class:`Union`."""

    size: int
    members: tuple[Member, ...] = ()

    def member(self, name: str) -> Member:
        """The direct member called ``name`` (anonymous members are not searched; see ``Spec.find_member``).

        :raises BTFError: when there is none.
        """
        for m in self.members:
            if m.name == name:
                return m
        raise BTFError(f"{self} has no member {name!r}")


@_no_new_fields
class Struct(Composite):
    """``BTF_KIND_STRUCT``."""

    kind: ClassVar[Kind] = Kind.STRUCT


@_no_new_fields
class Union(Composite):
    """``BTF_KIND_UNION``."""

    kind: ClassVar[Kind] = Kind.UNION


@dataclass(frozen=True)
class EnumValue:
    """One enumerator: ``name = value``."""

    name: str
    value: int


@dataclass(frozen=True)
class Enum(Type):
    """``BTF_KIND_ENUM``: 32-bit enumerators (``size`` is the enum's storage size)."""

    size: int
    values: tuple[EnumValue, ...] = ()
    signed: bool = False
    kind: ClassVar[Kind] = Kind.ENUM

    def value_of(self, name: str) -> int:
        """The value of enumerator ``name``.

        :raises BTFError: when the enum has no such enumerator.
        """
        for v in self.values:
            if v.name == name:
                return v.value
        raise BTFError(f"{self} has no enumerator {name!r}")

    def name_of(self, value: int) -> str | None:
        """The first enumerator whose value is ``value``, or None."""
        for v in self.values:
            if v.value == value:
                return v.name
        return None


@_no_new_fields
class Enum64(Enum):
    """``BTF_KIND_ENUM64``: 64-bit enumerators."""

    kind: ClassVar[Kind] = Kind.ENUM64


@dataclass(frozen=True)
class Fwd(Type):
    """``BTF_KIND_FWD``: a forward declaration of a struct (or a union when ``is_union``)."""

    is_union: bool = False
    kind: ClassVar[Kind] = Kind.FWD


@dataclass(frozen=True)
class Qualifier(Type):
    """A type that only renames or qualifies ``type_id`` (typedef, const, volatile, restrict, type tag)."""

    type_id: int


@_no_new_fields
class Typedef(Qualifier):
    """``BTF_KIND_TYPEDEF``."""

    kind: ClassVar[Kind] = Kind.TYPEDEF


@_no_new_fields
class Volatile(Qualifier):
    """``BTF_KIND_VOLATILE``."""

    kind: ClassVar[Kind] = Kind.VOLATILE


@_no_new_fields
class Const(Qualifier):
    """``BTF_KIND_CONST``."""

    kind: ClassVar[Kind] = Kind.CONST


@_no_new_fields
class Restrict(Qualifier):
    """``BTF_KIND_RESTRICT``."""

    kind: ClassVar[Kind] = Kind.RESTRICT


@_no_new_fields
class TypeTag(Qualifier):
    """``BTF_KIND_TYPE_TAG``: ``__attribute__((btf_type_tag(name)))`` on ``type_id``."""

    kind: ClassVar[Kind] = Kind.TYPE_TAG


@dataclass(frozen=True)
class Func(Type):
    """``BTF_KIND_FUNC``: a function; ``type_id`` is its :class:`FuncProto`."""

    type_id: int
    linkage: Linkage = Linkage.STATIC
    kind: ClassVar[Kind] = Kind.FUNC


@dataclass(frozen=True)
class Param:
    """A function parameter; ``type_id`` 0 on the last parameter means ``...``."""

    name: str
    type_id: int


@dataclass(frozen=True)
class FuncProto(Type):
    """``BTF_KIND_FUNC_PROTO``: ``type_id`` is the return type (0 = void)."""

    type_id: int
    params: tuple[Param, ...] = ()
    kind: ClassVar[Kind] = Kind.FUNC_PROTO

    @property
    def variadic(self) -> bool:
        """True when the last parameter is ``...``."""
        return bool(self.params) and self.params[-1].type_id == 0


@dataclass(frozen=True)
class Var(Type):
    """``BTF_KIND_VAR``: a global variable of ``type_id``."""

    type_id: int
    linkage: Linkage = Linkage.STATIC
    kind: ClassVar[Kind] = Kind.VAR


@dataclass(frozen=True)
class VarSecinfo:
    """A variable in a :class:`Datasec`: the :class:`Var` id, its byte offset and size."""

    type_id: int
    offset: int
    size: int


@dataclass(frozen=True)
class Datasec(Type):
    """``BTF_KIND_DATASEC``: an ELF data section (``.data``, ``.bss``, ``.maps``) and its variables."""

    size: int
    vars: tuple[VarSecinfo, ...] = ()
    kind: ClassVar[Kind] = Kind.DATASEC


@dataclass(frozen=True)
class Float(Type):
    """``BTF_KIND_FLOAT``: a floating point type of ``size`` bytes."""

    size: int
    kind: ClassVar[Kind] = Kind.FLOAT


@dataclass(frozen=True)
class DeclTag(Type):
    """``BTF_KIND_DECL_TAG``: tag ``name`` on ``type_id`` (on its member/param ``component_idx``; -1 = itself)."""

    type_id: int
    component_idx: int = -1
    kind: ClassVar[Kind] = Kind.DECL_TAG


#: Kind -> the dataclass that represents it.
KIND_CLASSES: dict[Kind, type[Type]] = {
    Kind.UNKN: Void,
    Kind.INT: Int,
    Kind.PTR: Pointer,
    Kind.ARRAY: Array,
    Kind.STRUCT: Struct,
    Kind.UNION: Union,
    Kind.ENUM: Enum,
    Kind.FWD: Fwd,
    Kind.TYPEDEF: Typedef,
    Kind.VOLATILE: Volatile,
    Kind.CONST: Const,
    Kind.RESTRICT: Restrict,
    Kind.FUNC: Func,
    Kind.FUNC_PROTO: FuncProto,
    Kind.VAR: Var,
    Kind.DATASEC: Datasec,
    Kind.FLOAT: Float,
    Kind.DECL_TAG: DeclTag,
    Kind.TYPE_TAG: TypeTag,
    Kind.ENUM64: Enum64,
}
