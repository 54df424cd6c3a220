"""BTF (BPF Type Format): parse vmlinux, module and object BTF, build BTF, load it into the kernel.

Parsing is lazy: ``load_vmlinux().find("task_struct")`` indexes the record offsets once and
decodes only the records asked for.  ``Builder``/``map_btf`` make BTF (for maps with typed
keys and values), ``load_btf`` loads it (BPF_BTF_LOAD), ``dump_c_header`` writes a ``vmlinux.h``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ebpf.core.btf.types import (
    VOID,
    Array,
    Composite,
    Const,
    Datasec,
    DeclTag,
    Enum,
    Enum64,
    EnumValue,
    Float,
    Func,
    FuncProto,
    Fwd,
    Int,
    IntEncoding,
    Kind,
    Linkage,
    Member,
    Param,
    Pointer,
    Qualifier,
    Restrict,
    Struct,
    Type,
    Typedef,
    TypeTag,
    Union,
    Var,
    VarSecinfo,
    Void,
    Volatile,
)

# Imported on first use, so ``load_vmlinux().find(...)`` never pays for the builder,
# the C writer or the syscall layer.
_LAZY = {
    "Builder": "builder",
    "CType": "builder",
    "map_btf": "spec",
    "dump_c_header": "cdump",
    "BTF": "handle",
    "SYSFS_BTF": "load",
    "load_btf": "load",
    "load_by_id": "load",
    "load_module": "load",
    "load_vmlinux": "load",
    "Spec": "spec",
    "parse": "spec",
}

if TYPE_CHECKING:
    from ebpf.core.btf.builder import Builder, CType
    from ebpf.core.btf.cdump import dump_c_header
    from ebpf.core.btf.handle import BTF
    from ebpf.core.btf.load import SYSFS_BTF, load_btf, load_by_id, load_module, load_vmlinux
    from ebpf.core.btf.spec import Spec, map_btf, parse


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ebpf.core.btf' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"ebpf.core.btf.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [
    "BTF",
    "SYSFS_BTF",
    "Builder",
    "CType",
    "Spec",
    "dump_c_header",
    "load_btf",
    "load_by_id",
    "load_module",
    "load_vmlinux",
    "map_btf",
    "parse",
    "VOID",
    "Array",
    "Composite",
    "Const",
    "Datasec",
    "DeclTag",
    "Enum",
    "Enum64",
    "EnumValue",
    "Float",
    "Func",
    "FuncProto",
    "Fwd",
    "Int",
    "IntEncoding",
    "Kind",
    "Linkage",
    "Member",
    "Param",
    "Pointer",
    "Qualifier",
    "Restrict",
    "Struct",
    "Type",
    "Typedef",
    "TypeTag",
    "Union",
    "Var",
    "VarSecinfo",
    "Void",
    "Volatile",
]
