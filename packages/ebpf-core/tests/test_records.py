"""ebpf.core.records.dataclass behaves as dataclasses.dataclass, and its compiled code cache is safe."""

from __future__ import annotations

import copy
import dataclasses
import inspect
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, ClassVar

import pytest
from ebpf.core import records
from ebpf.core.records import _field, fast_dataclass


def _shapes(dc: Any, field: Any) -> dict[str, type]:
    """The same class bodies decorated by ``dc``: every option and field form the packages use."""

    @dc(frozen=True)
    class Base:
        """Frozen, with defaults and a ClassVar."""

        id: int
        name: str = "x"
        tags: tuple[int, ...] = ()
        kind: ClassVar[int] = 3

    @dc(frozen=True)
    class Child(Base):
        """Frozen subclass adding fields, one not compared."""

        size: int = 0
        extra: list[int] = field(default_factory=list, compare=False)

    @dc
    class Mutable:
        """Mutable, with a factory, a hidden field, an init=False field and __post_init__."""

        a: int
        b: list[int] = field(default_factory=list)
        c: int = field(default=5, repr=False)
        d: int = field(default=9, init=False)

        def __post_init__(self) -> None:
            self.e = self.a * 2

    @dc(eq=False)
    class Identity:
        """eq=False keeps object's equality and hash."""

        a: int
        h: int = field(default=0, init=False, repr=False)

    @dc(frozen=True)
    class OwnHash:
        """An explicit __hash__ is kept."""

        a: int
        b: int = field(default=1, hash=False)

        def __hash__(self) -> int:
            return 42

    @dc(frozen=True, init=False)
    class OwnInit:
        """init=False: the class's own __init__."""

        a: int

        def __init__(self, x: int) -> None:
            object.__setattr__(self, "a", x + 1)

    @dc
    class Undocumented:
        a: int
        b: str = "q"

    return {c.__name__: c for c in (Base, Child, Mutable, Identity, OwnHash, OwnInit, Undocumented)}


def _observe(c: dict[str, Any], replace: Any) -> list[object]:
    """Everything a user can see of those classes."""
    a, b, m = c["Base"](1), c["Child"](2, "y", (1,), 3), c["Mutable"](1)
    e, h, ni = c["Identity"](4), c["OwnHash"](1, 2), c["OwnInit"](3)
    out: list[object] = [
        repr(a), repr(b), repr(m), repr(h), repr(ni), repr(e), c["Undocumented"].__doc__,
        str(inspect.signature(c["Base"])), str(inspect.signature(c["Mutable"])),
        a == c["Base"](1), a == c["Child"](1), b == c["Child"](2, "y", (1,), 3, [9]), hash(a) == hash(c["Base"](1)),
        hash(h), c["Mutable"].__hash__, c["Identity"].__hash__ is object.__hash__, e == c["Identity"](4),
        m == c["Mutable"](1), m.e, m.d, vars(m), [f.name for f in dataclasses.fields(c["Child"])],
        dataclasses.asdict(b), repr(dataclasses.replace(b, size=7)), repr(replace(b, size=8, name="r")),
        repr(replace(m, a=3)), dataclasses.is_dataclass(a), dataclasses.is_dataclass(c["Mutable"]),
        [(f.name, f.type, repr(f.default), f.init, f.repr, f.compare, f.hash) for f in dataclasses.fields(m)],
        dataclasses.fields(c["Child"])[0] is dataclasses.fields(c["Base"])[0], hasattr(c["Base"], "id"),
        hasattr(c["Mutable"], "b"), c["Mutable"].c, c["Mutable"].d,
        c["Child"].__match_args__, c["Mutable"].__match_args__, copy.copy(b) == b, copy.deepcopy(m) == m,
        [(k, getattr(c[k].__dataclass_params__, p)) for k in c for p in ("init", "repr", "eq", "frozen", "order")],
        c["Base"].kind, c["Child"].__init__.__qualname__,
    ]
    for obj, attr in ((a, "id"), (a, "other"), (b, "id"), (b, "size")):
        for action in (setattr, delattr):
            try:
                action(obj, attr, 1) if action is setattr else action(obj, attr)
                out.append("ok")
            except Exception as exc:
                out.append(f"{type(exc).__name__}: {exc}")
    for bad in (lambda: c["Base"](), lambda: c["Base"](1, 2, 3, 4), lambda: c["Mutable"](b=1),
                lambda: replace(m, d=1)):
        try:
            bad()
            out.append("ok")
        except (TypeError, ValueError) as exc:
            out.append(f"{type(exc).__name__}: {exc}" if isinstance(exc, ValueError) else "TypeError")
    for frozen in (False, True):  # the standard decorator on top of ours checks frozen bases as usual
        try:
            sub = dataclasses.dataclass(frozen=frozen)(type("Sub", (c["Base"],), {"__annotations__": {"x": "int"},
                                                                                "x": 0}))
            out.append(repr(sub(1, x=2)))
        except TypeError as exc:
            out.append(str(exc))
    return out


def test_same_behaviour_as_dataclasses() -> None:
    ours = _observe(_shapes(fast_dataclass, _field), records.replace)
    theirs = _observe(_shapes(dataclasses.dataclass, dataclasses.field), dataclasses.replace)
    assert ours == theirs


def test_definition_errors_as_dataclasses() -> None:
    for dc, field in ((fast_dataclass, _field), (dataclasses.dataclass, dataclasses.field)):
        with pytest.raises(ValueError, match="mutable default <class 'list'> for field a is not allowed"):
            dc(type("L", (), {"__annotations__": {"a": "list[int]"}, "a": []}))
        with pytest.raises(TypeError, match="non-default argument 'b' follows default argument"):
            dc(type("O", (), {"__annotations__": {"a": "int", "b": "int"}, "a": 1}))
        with pytest.raises(ValueError, match="cannot specify both default and default_factory"):
            field(default=1, default_factory=list)


def test_no_dataclasses_import_until_asked() -> None:
    code = (
        "import sys\n"
        "from ebpf.core.records import dataclass, field, replace\n"
        "@dataclass(frozen=True)\n"
        "class P:\n"
        "    'p'\n"
        "    a: int\n"
        "    b: list = field(default_factory=list)\n"
        "p = replace(P(1), a=2)\n"
        "print('dataclasses' in sys.modules, 'inspect' in sys.modules, p)\n"
        "import dataclasses\n"
        "print(dataclasses.fields(p)[1].default_factory is list, dataclasses.asdict(p))\n"
        "try:\n"
        "    p.a = 3\n"
        "except dataclasses.FrozenInstanceError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.splitlines()
    assert out == ["False False P(a=2, b=[])", "True {'a': 2, 'b': []}", "cannot assign to field 'a'"]


def test_frozen_rules_between_bases() -> None:
    @fast_dataclass
    class Loose:
        """Mutable."""

        a: int

    with pytest.raises(TypeError, match="cannot inherit frozen dataclass from a non-frozen one"):
        fast_dataclass(frozen=True)(type("F", (Loose,), {"__annotations__": {"b": "int"}}))
    stiff = fast_dataclass(frozen=True)(type("S", (), {"__annotations__": {"a": "int"}}))
    with pytest.raises(TypeError, match="cannot inherit non-frozen dataclass from a frozen one"):
        fast_dataclass(type("M", (stiff,), {"__annotations__": {"b": "int"}}))
    assert stiff.__dataclass_params__.frozen  # the flag flipped for that call is back


def test_other_options_go_to_dataclasses() -> None:
    ordered = fast_dataclass(order=True)(type("O", (), {"__annotations__": {"a": "int"}}))
    assert ordered(1) < ordered(2)
    slotted = fast_dataclass(slots=True)(type("S", (), {"__annotations__": {"a": "int"}}))
    assert slotted.__slots__ == ("a",)


def test_cache_file_written_once_and_reused(tmp_path: Path) -> None:
    code = ("from ebpf.core.records import dataclass\n"
            "@dataclass(frozen=True)\nclass P:\n    '''p'''\n    a: int\n    b: str = 'z'\n"
            "import ebpf.core.records as r\nprint(repr(P(1)), r._dirty)\n")
    env = {**os.environ, "EBPF_CACHE_DIR": str(tmp_path)}
    first = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    files = list(tmp_path.iterdir())
    assert first.stdout.split() == ["P(a=1,", "b='z')", "True"] and len(files) == 1
    assert files[0].stat().st_mode & 0o777 == 0o600
    second = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert second.stdout.split()[-1] == "False"  # nothing new compiled: the file had it


def test_cache_file_others_can_write_is_ignored(tmp_path: Path) -> None:
    code = ("from ebpf.core.records import dataclass\n"
            "@dataclass\nclass P:\n    '''p'''\n    a: int\n"
            "import ebpf.core.records as r\nprint(r._dirty)\n")
    env = {**os.environ, "EBPF_CACHE_DIR": str(tmp_path)}
    subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True)
    (path,) = tmp_path.iterdir()
    path.chmod(0o666)  # group and others may write it: code from it is never run
    again = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert again.stdout.strip() == "True"
    path.write_bytes(b"EBPFDCLS" + b"\x00garbage")
    path.chmod(0o600)
    broken = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert broken.stdout.strip() == "True"  # unreadable: compiled again, no error


def test_cache_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EBPF_CACHE_DIR", "")
    assert records.cache_dir() is None and records._cache_file() is None


def test_replace_and_field_names_of_a_subclass_made_by_dataclasses() -> None:
    base = fast_dataclass(frozen=True)(type("B", (), {"__doc__": "b", "__annotations__": {"a": "int"}}))
    sub = dataclasses.dataclass(frozen=True)(type("S", (base,), {"__annotations__": {"x": "int"}, "x": 0}))
    plain = type("P", (base,), {})  # not a dataclass itself: the base's fields, as dataclasses has it
    assert records.field_names(sub) == ["a", "x"] and records.field_names(plain(1)) == ["a"]
    assert records.replace(sub(1, 2), a=5) == sub(5, 2) and repr(records.replace(plain(1), a=3)) == "P(a=3)"
