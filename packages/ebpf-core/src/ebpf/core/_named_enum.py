"""The base of :mod:`ebpf.core.types`' enums (and of ``Helper``, built apart on first use)."""

from __future__ import annotations

import enum
from typing import TypeVar

from ebpf.core.errors import EBPFError

__all__ = ["_NamedIntEnum"]

_E = TypeVar("_E", bound="_NamedIntEnum")


class _NamedIntEnum(enum.IntEnum):
    """IntEnum that also parses lowercase names and plain ints."""

    @classmethod
    def parse(cls: type[_E], value: object) -> _E:
        """Return the member for ``value``: a member, an int or a (case-insensitive) name.

        :raises EBPFError: when ``value`` names no member.
        """
        if isinstance(value, cls):
            return value
        if isinstance(value, str):
            key = value.strip().upper().replace("-", "_").replace(".", "_")
            member = cls.__members__.get(key)
            if member is not None:
                return member
        elif isinstance(value, int) and not isinstance(value, bool):
            try:
                return cls(value)
            except ValueError:
                pass
        choices = ", ".join(m.name.lower() for m in cls)
        raise EBPFError(f"unknown {cls.__name__} {value!r}; expected one of: {choices}")

    @property
    def lower_name(self) -> str:
        """The member's name in lower case, as used in strings (``"lru_hash"``)."""
        return self.name.lower()
