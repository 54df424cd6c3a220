"""``LangError``: a kernel function uses something outside the compiled subset of Python."""

from __future__ import annotations

import ast

from ebpf.core.errors import EBPFError

__all__ = ["LangError", "declaration_error"]


class LangError(EBPFError):
    """A compile-time error in a ``@kernel`` function, with its Python file, line and column.

    ``str()`` reads ``file.py:12:8: <what is wrong>; <what to write instead>``.

    :ivar filename: the Python source file.
    :ivar line: 1-based line number in that file.
    :ivar col: 1-based column.
    :ivar message: the message without the position.
    """

    def __init__(self, message: str, filename: str = "<unknown>", line: int = 0, col: int = 0) -> None:
        """Record the message and where it applies."""
        self.message = message
        self.filename = filename
        self.line = line
        self.col = col
        super().__init__(f"{filename}:{line}:{col}: {message}")


def declaration_error(message: str) -> LangError:
    """A :class:`LangError` at the user's line that made a bad declaration (a map, a struct, an array
    type): the first stack frame outside this package."""
    import sys

    frame = sys._getframe(1)
    # Frames of this package, generated dataclass methods included (their globals are ours).
    while frame is not None and str(frame.f_globals.get("__name__", "")).startswith("ebpf.lang"):
        frame = frame.f_back  # type: ignore[assignment]
    if frame is None:
        return LangError(message)
    return LangError(message, frame.f_code.co_filename, frame.f_lineno, 1)


class Where:
    """Turns AST nodes into :class:`LangError` positions (line numbers made absolute)."""

    def __init__(self, filename: str, first_line: int, indent: int = 0) -> None:
        """``first_line`` is the file line of the parsed source's line 1; ``indent`` the columns
        dedenting removed (nested functions)."""
        self.filename = filename
        self.first_line = first_line
        self.indent = indent

    def line(self, node: ast.AST) -> int:
        """The file line of ``node``."""
        return int(getattr(node, "lineno", 1)) + self.first_line - 1

    def col(self, node: ast.AST) -> int:
        """The 1-based column of ``node``."""
        return int(getattr(node, "col_offset", 0)) + self.indent + 1

    def error(self, node: ast.AST, message: str) -> LangError:
        """A :class:`LangError` at ``node``."""
        return LangError(message, self.filename, self.line(node), self.col(node))
