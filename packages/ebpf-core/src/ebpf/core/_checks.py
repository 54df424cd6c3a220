"""Checks shared by everything that fills a kernel structure: fixed-width integers and object names.

An int that does not fit its kernel field would be cut by ctypes without a word (``repeat=2**32 + 3``
runs 3 times), so every such value goes through :func:`check_uint` before the syscall.  Program and
map names follow one rule, :func:`object_name`.
"""

from __future__ import annotations

import ctypes
import re
from typing import TypeVar

from ebpf.core.errors import EBPFError

__all__ = ["check_uint", "check_int", "checked", "object_name", "OBJ_NAME_LEN", "U8", "U16", "U32", "U64"]

_T = TypeVar("_T", bound=ctypes.Structure)

U8, U16, U32, U64 = 8, 16, 32, 64
#: BPF_OBJ_NAME_LEN is 16 with the terminating NUL: the kernel keeps 15 characters.
OBJ_NAME_LEN = 15
_NAME_BAD = re.compile(r"[^A-Za-z0-9_.]")


def check_uint(value: object, what: str, bits: int = U32, minimum: int = 0) -> int:
    """``value`` as an int after checking it fits an unsigned ``bits``-bit kernel field (and is >= ``minimum``).

    :param what: how the error names it (``"test_run repeat"``).
    :returns: the value.
    :raises EBPFError: when it is not an int (bool included) or out of range; before any syscall.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise EBPFError(f"{what} must be an int, not {value!r}")
    top = (1 << bits) - 1
    if not minimum <= value <= top:
        raise EBPFError(f"{what} must be between {minimum} and {top} (an unsigned {bits}-bit field), not {value}")
    return value


def check_int(value: object, what: str, bits: int = U32) -> int:
    """``value`` after checking it fits a signed ``bits``-bit kernel field.

    :raises EBPFError: when it is not an int or out of range.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise EBPFError(f"{what} must be an int, not {value!r}")
    low, high = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    if not low <= value <= high:
        raise EBPFError(f"{what} must be between {low} and {high} (a signed {bits}-bit field), not {value}")
    return value


def object_name(name: object, what: str = "name") -> str:
    """The name the kernel gets for a program or a map (one rule for both, as libbpf and bpftool show them).

    The kernel accepts only letters, digits, ``_`` and ``.`` and keeps 15 characters: any other character
    (``'prögram'``, ``'my-map'``) becomes ``_`` and a longer name is cut, so an ELF or C name always loads.
    The object's ``name`` attribute then shows what the kernel got.

    :raises EBPFError: when ``name`` is not a str.
    """
    if not isinstance(name, str):
        raise EBPFError(f"{what} must be a str, not {type(name).__name__}")
    return _NAME_BAD.sub("_", name)[:OBJ_NAME_LEN]


def checked(struct: type[_T], what: str, **values: int) -> _T:
    """``struct(**values)`` after checking that each value fits its ctypes field (unsigned or signed width).

    :param what: the command, for the error (``"BPF_LINK_CREATE"``).
    :raises EBPFError: naming the field, when a value does not fit (ctypes would cut it silently).
    """
    types = {f[0]: f[1] for f in struct._fields_}
    for name, value in values.items():
        ctype = types.get(name)
        if ctype is None or not hasattr(ctype, "_type_") or isinstance(ctype._type_, type):
            continue  # an array or nested structure: the caller checks its items
        bits = ctypes.sizeof(ctype) * 8
        if ctype._type_ in _SIGNED:
            check_int(value, f"{what} {name}", bits)
        else:
            check_uint(value, f"{what} {name}", bits)
    return struct(**values)


_SIGNED = frozenset("bhilq")  # ctypes' codes of the signed integer types
