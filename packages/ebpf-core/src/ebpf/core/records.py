"""``dataclass``, ``field`` and ``replace`` as :mod:`dataclasses` has them, cheap at start-up.

Every class decorated here is a real dataclass to its users: ``dataclasses.fields``,
``replace``, ``asdict`` and ``is_dataclass`` work, ``__dataclass_fields__`` holds real
:class:`dataclasses.Field` objects and ``__dataclass_params__`` tells the truth, and
``__init__``, ``__repr__``, ``__eq__``, ``__hash__``, ``__match_args__`` and the frozen
``__setattr__``/``__delattr__`` are those :func:`dataclasses.dataclass` writes.  Two costs of
the standard module are gone from a cold start (a load of a BPF object defines about sixty
classes):

- it compiles five or six functions from source text for every class (about 0.3 ms each
  class); here the methods come from a factory compiled once per class *shape* and kept on
  disk like a ``.pyc`` (:func:`compile_cached`: one file per interpreter build in
  :func:`cache_dir`, only read when this user owns it and nobody else may write it);
- importing :mod:`dataclasses` imports :mod:`inspect` (and ``ast``, ``dis``, ``tokenize``):
  about 4 ms.  Here the fields are collected without it; ``__dataclass_fields__`` and
  ``__dataclass_params__`` are built (importing :mod:`dataclasses`) the first time anything
  asks for them, and :func:`replace` and :func:`field_names` read this module's own record.

Options other than ``init``, ``repr``, ``eq`` and ``frozen`` (``order``, ``slots``,
``kw_only``, ``InitVar``/``KW_ONLY`` fields, a base made by :mod:`dataclasses` itself, a
:func:`dataclasses.field` in the body) go to :func:`dataclasses.dataclass` unchanged.
"""

from __future__ import annotations

import marshal
import os
import sys
import threading
from types import CodeType
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["dataclass", "field", "replace", "field_names", "is_dataclass", "fast_dataclass", "cache_dir", "cache_digest", "write_cache_file",
           "compile_cached"]

_T = TypeVar("_T", bound=type)
_R = TypeVar("_R")

#: Bumped when the generated source changes shape (old files are then never read).
_FORMAT = 5
_MAGIC = b"EBPFDCLS"
_FAST_OPTIONS = frozenset({"init", "repr", "eq", "frozen"})
_FIELDS = "__ebpf_fields__"  # this module's record of a class's fields (inherited ones included)

_lock = threading.RLock()
# The cache file's entries by the digest of their key (file name and source): each is
# ``marshal((key, code))``, unmarshalled when first asked for (a process uses a few dozen of the
# file's hundred or more; the file's index is all a start reads).
_codes: dict[bytes, bytes | memoryview] | None = None
_loaded: dict[str, CodeType] = {}
_dirty = False


class _Missing:
    """No value (as ``dataclasses.MISSING``, without importing dataclasses)."""

    def __repr__(self) -> str:
        return "MISSING"


class _Factory:
    """The ``__init__`` default of a field with a default factory (shown as ``<factory>``)."""

    def __repr__(self) -> str:
        return "<factory>"


MISSING: Any = _Missing()
_HAS_FACTORY = _Factory()


class Field:
    """What :func:`field` returns, and this module's record of one field (name and type added)."""

    __slots__ = ("compare", "default", "default_factory", "hash", "init", "metadata", "name", "repr", "type")

    def __init__(self, default: Any, default_factory: Any, init: bool, repr: bool, hash: bool | None,
                 compare: bool, metadata: Any) -> None:
        self.name = ""
        self.type: Any = None
        self.default, self.default_factory = default, default_factory
        self.init, self.repr, self.hash, self.compare, self.metadata = init, repr, hash, compare, metadata

    def _named(self, name: str, type_: Any) -> Field:
        f = Field(self.default, self.default_factory, self.init, self.repr, self.hash, self.compare, self.metadata)
        f.name, f.type = name, type_
        return f


def _field(*, default: Any = MISSING, default_factory: Any = MISSING, init: bool = True, repr: bool = True,
           hash: bool | None = None, compare: bool = True, metadata: Any = None) -> Any:
    """:func:`dataclasses.field` for classes decorated by :func:`dataclass` (same arguments)."""
    if default is not MISSING and default_factory is not MISSING:
        raise ValueError("cannot specify both default and default_factory")
    return Field(default, default_factory, init, repr, hash, compare, metadata)


def cache_dir() -> str | None:
    """Where ebpf's on-disk caches live (None: caching is off).

    ``$EBPF_CACHE_DIR``, else ``$XDG_CACHE_HOME/ebpf``, else ``~/.cache/ebpf``;
    ``EBPF_CACHE_DIR=""`` turns every cache off.
    """
    env = os.environ.get("EBPF_CACHE_DIR")
    if env is not None:
        return env or None
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "ebpf")


def _cache_file() -> str | None:
    where = cache_dir()
    if where is None:
        return None
    # The interpreter build decides the byte code: its version string names its build.
    digest = 0xCBF29CE484222325  # FNV-1a of the version string (str hashes change per process)
    for byte in sys.version.encode():
        digest = ((digest ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    build = f"{sys.implementation.cache_tag}-{marshal.version}-{_FORMAT}-{digest:016x}"
    return os.path.join(where, f"dataclass-{build}.marshal")


def cache_digest(data: bytes, size: int = 32) -> bytes:
    """A blake2b digest for cache keys and file names (builtin: no OpenSSL to load at start-up)."""
    try:
        from _blake2 import blake2b  # deferred: start-up time (builtin; hashlib would load OpenSSL)
    except ImportError:  # pragma: no cover - every CPython has it
        from hashlib import blake2b  # deferred: optional dependency (only where _blake2 is missing)
    return blake2b(data, digest_size=size).digest()


def write_cache_file(path: str, *parts: bytes | memoryview) -> bool:
    """Write a cache file so that readers see the old file or the new one, never half of one.

    The directory is made private (0700), the file too (0600); failing is never an error (the
    cache is then just not written).

    :returns: whether the file was written.
    """
    tmp = f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"
    try:
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            for part in parts:
                fh.write(part)
        os.replace(tmp, path)
    except (OSError, ValueError):
        try:
            os.unlink(tmp)
        except OSError:
            pass
        return False
    return True


def _load() -> dict[bytes, bytes | memoryview]:
    """The file's entries by key digest, each still marshalled (only the index is read now)."""
    path = _cache_file()
    if path is None:
        return {}
    try:
        with open(path, "rb") as fh:
            st = os.fstat(fh.fileno())
            # Code is run from this file: only one this user wrote and nobody else can change.
            if st.st_uid != os.geteuid() or st.st_mode & 0o022:
                return {}
            blob = fh.read()
        if not blob.startswith(_MAGIC) or len(blob) < len(_MAGIC) + 4:
            return {}
        start = len(_MAGIC) + 4
        size = int.from_bytes(blob[len(_MAGIC) : start], "little")
        index = marshal.loads(blob[start : start + size])
        data = memoryview(blob)[start + size :]
        if not isinstance(index, dict):
            return {}
        return {digest: data[off : off + length] for digest, (off, length) in index.items()
                if isinstance(digest, bytes) and off >= 0 and off + length <= len(data)}
    except (OSError, EOFError, ValueError, TypeError):
        return {}


def _save() -> None:
    path = _cache_file()
    if path is None or not _dirty or _codes is None:
        return
    index: dict[bytes, tuple[int, int]] = {}
    parts: list[bytes | memoryview] = []
    offset = 0
    for digest, entry in _codes.items():
        index[digest] = (offset, len(entry))
        parts.append(entry)
        offset += len(entry)
    head = marshal.dumps(index)
    write_cache_file(path, _MAGIC + len(head).to_bytes(4, "little") + head, *parts)


def compile_cached(source: str, filename: str) -> CodeType:
    """``compile(source, filename, "exec")``, kept on disk for the next process (see the module's text).

    For code that ebpf generates at run time from a fixed set of shapes (these dataclasses'
    methods, the map fast paths): the source itself is the key.
    """
    global _codes, _dirty
    key = f"{filename}\0{source}"
    with _lock:
        code = _loaded.get(key)
        if code is not None:
            return code
        if _codes is None:
            _codes = _load()
        digest = cache_digest(key.encode(), 16)
        entry = _codes.get(digest)
        if entry is not None:
            try:
                stored = marshal.loads(entry)
            except (EOFError, ValueError, TypeError):
                stored = None
            # the key is stored beside the code: a digest collision is a miss, never the wrong code
            if type(stored) is tuple and len(stored) == 2 and stored[0] == key and type(stored[1]) is CodeType:
                _loaded[key] = stored[1]
                return stored[1]
        code = compile(source, filename, "exec")
        _loaded[key] = code
        _codes[digest] = marshal.dumps((key, code))
        if not _dirty:
            _dirty = True
            import atexit  # deferred: only when something new was compiled

            atexit.register(_save)
    return code


def _factory(source: str) -> Callable[..., dict[str, Any]]:
    namespace: dict[str, Any] = {}
    exec(compile_cached(source, "<ebpf.core.records>"), {"__builtins__": __builtins__}, namespace)
    return namespace["__create__"]  # type: ignore[no-any-return]


def _frozen_error(message: str) -> Exception:
    import dataclasses  # deferred: start-up time (only a write to a frozen instance needs it)

    return dataclasses.FrozenInstanceError(message)


def _source(fields: list[Field], init: bool, repr_: bool, eq: bool, frozen: bool, hash_: bool, post_init: bool) -> str:
    """The factory of the methods for one shape of class (names, defaults, options; no values)."""
    lines = ["def __create__(cls, _dflt, _FIE, _HDF, _setattr):"]
    if init:
        params, body = ["self"], []
        for i, f in enumerate(fields):
            if f.init:
                if f.default_factory is not MISSING:
                    params.append(f"{f.name}=_HDF")
                    value = f"_dflt[{i}]() if {f.name} is _HDF else {f.name}"
                elif f.default is not MISSING:
                    params.append(f"{f.name}=_dflt[{i}]")
                    value = f.name
                else:
                    params.append(f.name)
                    value = f.name
            elif f.default_factory is not MISSING:
                value = f"_dflt[{i}]()"
            else:
                continue  # no init and a plain default: the class attribute holds it
            body.append(f"_setattr(self, {f.name!r}, {value})" if frozen else f"self.{f.name} = {value}")
        if post_init:
            body.append("self.__post_init__()")
        lines.append(f" def __init__({', '.join(params)}):")
        lines.extend(f"  {b}" for b in body or ["pass"])
    if repr_:
        shown = ", ".join(f"{f.name}={{self.{f.name}!r}}" for f in fields if f.repr)
        lines.append(" def __repr__(self):")
        lines.append(f"  return self.__class__.__qualname__ + f'({shown})'")
    compared = [f.name for f in fields if f.compare]
    if eq:
        mine = "".join(f"self.{n}," for n in compared)
        theirs = "".join(f"other.{n}," for n in compared)
        lines.append(" def __eq__(self, other):")
        lines.append("  if other.__class__ is self.__class__:")
        lines.append(f"   return ({mine}) == ({theirs})")
        lines.append("  return NotImplemented")
    if hash_:
        hashed = "".join(f"self.{f.name}," for f in fields if (f.compare if f.hash is None else f.hash))
        lines.append(" def __hash__(self):")
        lines.append(f"  return hash(({hashed}))")
    if frozen:
        names = "{" + ", ".join(repr(f.name) for f in fields) + "}" if fields else "()"
        for method, args, call in (("__setattr__", "self, name, value", "__setattr__(name, value)"),
                                   ("__delattr__", "self, name", "__delattr__(name)")):
            verb = "assign to" if method == "__setattr__" else "delete"
            lines.append(f" def {method}({args}):")
            lines.append(f"  if type(self) is cls or name in {names}:")
            lines.append(f"   raise _FIE(f'cannot {verb} field {{name!r}}')")
            lines.append(f"  super(cls, self).{call}")
    lines.append(" return {k: v for k, v in locals().items() if k.startswith('__') and k != '__class__'}")
    return "\n".join(lines) + "\n"


def _is_classvar(hint: Any) -> bool:
    text = hint if isinstance(hint, str) else repr(hint)
    return text.startswith(("ClassVar", "typing.ClassVar", "t.ClassVar")) or text == "typing.ClassVar"


def _collect(cls: type) -> list[Field] | None:
    """The fields of ``cls`` (its bases' first), or None when :mod:`dataclasses` must build it."""
    own = cls.__dict__
    hints = own.get("__annotations__", {})
    for base in cls.__mro__[1:]:
        if "__dataclass_fields__" in base.__dict__ and _FIELDS not in base.__dict__:
            return None  # a base made by dataclasses itself
    for name, hint in hints.items():  # first look, change nothing: what this module leaves to dataclasses
        text = hint if isinstance(hint, str) else getattr(hint, "__name__", "")
        value = own.get(name)
        if "InitVar" in text or "KW_ONLY" in text or (
                type(value).__module__ == "dataclasses" and type(value).__name__ == "Field"):
            return None
    found: dict[str, Field] = {}
    for base in reversed(cls.__mro__[1:]):
        for f in base.__dict__.get(_FIELDS, ()):
            found[f.name] = f
    for name, hint in hints.items():
        if _is_classvar(hint):
            continue
        value = own.get(name, MISSING)
        if isinstance(value, Field):
            f = value._named(name, hint)
            if f.default is MISSING:
                delattr(cls, name)  # as dataclasses: no class attribute without a default
            else:
                setattr(cls, name, f.default)
        else:
            if value is not MISSING and value.__class__.__hash__ is None:
                raise ValueError(f"mutable default {type(value)} for field {name} is not allowed: "
                                 "use default_factory")
            f = Field(value, MISSING, True, True, None, True, None)
            f.name, f.type = name, hint
        found[name] = f  # a field named again keeps its base's place, as in dataclasses
    return list(found.values())


class _Lazy:
    """``__dataclass_fields__``/``__dataclass_params__`` of a class made here, built on first use."""

    def __init__(self, owner: type, attr: str) -> None:
        self.owner, self.attr = owner, attr

    def __get__(self, instance: object, owner: type | None = None) -> Any:
        return _materialize(self.owner)[self.attr]


def _materialize(cls: type) -> dict[str, Any]:
    """The real ``__dataclass_fields__`` and ``__dataclass_params__`` of ``cls`` (set on it from now on)."""
    import dataclasses  # deferred: start-up time (only what asks for dataclass internals needs it)

    with _lock:
        fields, params = cls.__dict__.get("__dataclass_fields__"), cls.__dict__.get("__dataclass_params__")
        if not isinstance(fields, _Lazy) and not isinstance(params, _Lazy):
            return {"__dataclass_fields__": fields, "__dataclass_params__": params}
        real: dict[str, Any] = {}
        for base in reversed(cls.__mro__[1:]):
            if _FIELDS in base.__dict__:
                real.update(base.__dataclass_fields__)  # type: ignore[attr-defined]
        mine = cls.__dict__.get("__annotations__", {})  # noqa: RUF063 - inspect costs milliseconds to import
        for f in cls.__dict__[_FIELDS]:
            if f.name not in mine and f.name in real:
                continue  # inherited: the base's Field object, as dataclasses shares it
            made: Any = dataclasses.field(
                default=dataclasses.MISSING if f.default is MISSING else f.default,
                default_factory=dataclasses.MISSING if f.default_factory is MISSING else f.default_factory,
                init=f.init, repr=f.repr, hash=f.hash, compare=f.compare, metadata=f.metadata)
            made.name, made.type = f.name, f.type
            made._field_type = dataclasses._FIELD  # type: ignore[attr-defined]
            made.kw_only = False
            real[f.name] = made
        template: Any = dataclasses.dataclass(init=False, repr=False, eq=False)(type("_", (), {}))
        made_params = template.__dict__["__dataclass_params__"]
        flags = cls.__dict__["__ebpf_params__"]
        made_params.init, made_params.repr, made_params.eq, made_params.frozen = flags
        made_params.order = made_params.unsafe_hash = False
        type.__setattr__(cls, "__dataclass_fields__", real)
        type.__setattr__(cls, "__dataclass_params__", made_params)
        return {"__dataclass_fields__": real, "__dataclass_params__": made_params}


def _frozen_flags(cls: type) -> list[bool]:
    """Whether each dataclass base of ``cls`` is frozen."""
    out = []
    for base in cls.__mro__[1:]:
        if "__ebpf_params__" in base.__dict__:
            out.append(base.__dict__["__ebpf_params__"][3])
        elif "__dataclass_params__" in base.__dict__:
            out.append(bool(base.__dict__["__dataclass_params__"].frozen))
    return out


def _process(cls: _T, init: bool, repr_: bool, eq: bool, frozen: bool) -> _T | None:
    own = cls.__dict__
    if frozen and ("__setattr__" in own or "__delattr__" in own):
        return None  # dataclasses raises its TypeError
    class_hash = own.get("__hash__", MISSING)
    explicit_hash = not (class_hash is MISSING or (class_hash is None and "__eq__" in own))
    bases = _frozen_flags(cls)
    if bases:
        if any(bases) and not frozen:
            raise TypeError("cannot inherit non-frozen dataclass from a frozen one")
        if frozen and not any(bases):
            raise TypeError("cannot inherit frozen dataclass from a non-frozen one")
    fields = _collect(cls)
    if fields is None:
        return None
    if init:
        seen_default = None
        for f in fields:
            if f.init:
                if f.default is not MISSING or f.default_factory is not MISSING:
                    seen_default = f
                elif seen_default is not None:
                    raise TypeError(f"non-default argument {f.name!r} follows default argument")
    hash_ = eq and frozen and not explicit_hash
    source = _source(fields, init and "__init__" not in own, repr_ and "__repr__" not in own,
                     eq and "__eq__" not in own, frozen, hash_, hasattr(cls, "__post_init__"))
    defaults = tuple(f.default_factory if f.default_factory is not MISSING else f.default for f in fields)
    methods = _factory(source)(cls, defaults, _frozen_error, _HAS_FACTORY, object.__setattr__)
    for name, fn in methods.items():
        fn.__qualname__ = f"{cls.__qualname__}.{name}"
        fn.__module__ = cls.__module__
        setattr(cls, name, fn)
    if "__init__" in methods:
        methods["__init__"].__annotations__ = {**{f.name: f.type for f in fields if f.init}, "return": None}
    if eq and not frozen and not explicit_hash:
        cls.__hash__ = None  # type: ignore[assignment]  # as dataclasses: mutable and comparable is unhashable
    if "__match_args__" not in own:
        type.__setattr__(cls, "__match_args__", tuple(f.name for f in fields if f.init))
    setattr(cls, _FIELDS, tuple(fields))
    cls.__ebpf_params__ = (init, repr_, eq, frozen)  # type: ignore[attr-defined]
    cls.__dataclass_fields__ = _Lazy(cls, "__dataclass_fields__")  # type: ignore[attr-defined]
    cls.__dataclass_params__ = _Lazy(cls, "__dataclass_params__")  # type: ignore[attr-defined]
    if not getattr(cls, "__doc__", None):  # as dataclasses writes it: the name and the __init__ signature
        import inspect  # deferred: start-up time (only for a class without a docstring)

        cls.__doc__ = cls.__name__ + str(inspect.signature(cls)).replace(" -> None", "")
    return cls


def fast_dataclass(cls: _T | None = None, /, **options: Any) -> Any:
    """:func:`dataclasses.dataclass`, cheaper to apply (see the module's text); same arguments.

    Import it as ``from ebpf.core.records import dataclass``: under a type checker that name is
    the standard decorator, so the checker applies the dataclass rules it knows.
    """

    def wrap(cls: _T) -> _T:
        made: Any = None
        if set(options) <= _FAST_OPTIONS:
            made = _process(cls, options.get("init", True), options.get("repr", True), options.get("eq", True),
                            options.get("frozen", False))
        if made is None:
            import dataclasses  # deferred: start-up time (only the options this module leaves to it)

            made = dataclasses.dataclass(cls, **options)  # a new class with slots=True
        return made  # type: ignore[no-any-return]

    return wrap if cls is None else wrap(cls)


def _fields_of(cls: type) -> tuple[Field, ...] | None:
    """This module's record of the nearest dataclass in ``cls``'s MRO (None: one made by dataclasses)."""
    for c in cls.__mro__:
        if "__dataclass_fields__" in c.__dict__:
            found: tuple[Field, ...] | None = c.__dict__.get(_FIELDS)
            return found
    return None


def replace(obj: _R, /, **changes: Any) -> _R:
    """:func:`dataclasses.replace`: a copy of ``obj`` with ``changes``, without importing dataclasses."""
    fields = _fields_of(type(obj))
    if fields is None:
        import dataclasses  # deferred: start-up time (a dataclass made elsewhere)

        return dataclasses.replace(obj, **changes)  # type: ignore[type-var]
    for f in fields:
        if not f.init:
            if f.name in changes:
                raise ValueError(f"field {f.name} is declared with init=False, it cannot be specified with replace()")
        elif f.name not in changes:
            changes[f.name] = getattr(obj, f.name)
    return obj.__class__(**changes)


def is_dataclass(obj: Any) -> bool:
    """:func:`dataclasses.is_dataclass`, without building this module's classes' dataclass internals."""
    cls = obj if isinstance(obj, type) else type(obj)
    return any("__dataclass_fields__" in c.__dict__ for c in cls.__mro__)


def field_names(cls_or_obj: Any) -> list[str]:
    """The names of ``dataclasses.fields(cls_or_obj)``, without importing dataclasses for this module's classes."""
    fields = _fields_of(cls_or_obj if isinstance(cls_or_obj, type) else type(cls_or_obj))
    if fields is None:
        import dataclasses  # deferred: start-up time (a dataclass made elsewhere)

        return [f.name for f in dataclasses.fields(cls_or_obj)]
    return [f.name for f in fields]


if not TYPE_CHECKING:
    dataclass = fast_dataclass
    field = _field
else:  # type checkers and doc tools see the standard ones (field rules, frozen, __init__ signature)
    from dataclasses import dataclass, field
