"""``dataclass`` as :mod:`dataclasses` has it, made cheap to define: for a fast cold start.

Every class decorated here is a real dataclass (``dataclasses.fields``, ``replace``,
``asdict`` and ``is_dataclass`` work; ``__dataclass_params__`` tells the truth), with the same
``__init__``, ``__repr__``, ``__eq__``, ``__hash__`` and frozen ``__setattr__``/``__delattr__``
that :func:`dataclasses.dataclass` writes.  The difference is the cost: the standard decorator
compiles five or six functions from source text for every class (about 0.3 ms each class; a
load of a BPF object defines about sixty of them, a fifth of a cold start), while this one
lets :mod:`dataclasses` collect the fields (no code generated) and takes the methods from a
compiled factory shared by every class of the same shape, kept on disk beside the other caches
of :func:`ebpf.core.btf.cache.cache_dir` like a ``.pyc`` (one file per interpreter build, only
read when it belongs to this user and nobody else may write it).

Options other than ``init``, ``repr``, ``eq`` and ``frozen`` (``order``, ``slots``,
``kw_only``, ``InitVar`` fields, ...) are handed to :func:`dataclasses.dataclass` unchanged.
"""

from __future__ import annotations

import dataclasses
import inspect  # dataclasses imports it: no cost here
import marshal
import os
import sys
import threading
from types import CodeType  # dataclasses imports types: no cost here
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["dataclass", "fast_dataclass", "cache_dir", "compile_cached"]

_T = TypeVar("_T", bound=type)

#: Bumped when the generated source changes shape (old files are then never read).
_FORMAT = 3
_MAGIC = b"EBPFDCLS"
_FAST_OPTIONS = frozenset({"init", "repr", "eq", "frozen"})

_lock = threading.Lock()
# generated source -> its compiled code, marshalled: each is unmarshalled when first asked for
# (a process uses a few dozen of the file's hundred or more).
_codes: dict[str, bytes] | None = None
_loaded: dict[str, CodeType] = {}
_dirty = False


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


def _load() -> dict[str, bytes]:
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
        if not blob.startswith(_MAGIC):
            return {}
        codes = marshal.loads(blob[len(_MAGIC) :])
    except (OSError, EOFError, ValueError, TypeError):
        return {}
    if not isinstance(codes, dict) or not all(isinstance(v, bytes) for v in codes.values()):
        return {}
    return codes


def _save() -> None:
    path = _cache_file()
    if path is None or not _dirty or _codes is None:
        return
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(_MAGIC + marshal.dumps(_codes))
        os.replace(tmp, path)  # readers see the old file or the new one, never half of one
    except (OSError, ValueError):
        try:
            os.unlink(tmp)
        except OSError:
            pass


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
        blob = _codes.get(key)
        if blob is not None:
            try:
                code = marshal.loads(blob)
            except (EOFError, ValueError, TypeError):
                code = None
        if code is not None and type(code) is CodeType:
            _loaded[key] = code
            return code
        code = compile(source, filename, "exec")
        _loaded[key] = code
        _codes[key] = marshal.dumps(code)
        if not _dirty:
            _dirty = True
            import atexit  # deferred: only when something new was compiled

            atexit.register(_save)
    return code


def _factory(source: str) -> Callable[..., dict[str, Any]]:
    namespace: dict[str, Any] = {}
    exec(compile_cached(source, "<ebpf.core.records>"), {"__builtins__": __builtins__}, namespace)
    return namespace["__create__"]  # type: ignore[no-any-return]


def _source(fields: list[dataclasses.Field[Any]], init: bool, repr_: bool, eq: bool, frozen: bool,
            hash_: bool, post_init: bool) -> str:
    """The factory of the methods for one shape of class (names, defaults, options; no values)."""
    lines = ["def __create__(cls, _dflt, _FIE, _HDF, _setattr):"]
    if init:
        params, body = ["self"], []
        for i, f in enumerate(fields):
            if f.init:
                if f.default_factory is not dataclasses.MISSING:
                    params.append(f"{f.name}=_HDF")
                    value = f"_dflt[{i}]() if {f.name} is _HDF else {f.name}"
                elif f.default is not dataclasses.MISSING:
                    params.append(f"{f.name}=_dflt[{i}]")
                    value = f.name
                else:
                    params.append(f.name)
                    value = f.name
            elif f.default_factory is not dataclasses.MISSING:
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


def _process(cls: _T, init: bool, repr_: bool, eq: bool, frozen: bool) -> _T:
    own = cls.__dict__
    class_hash = own.get("__hash__", dataclasses.MISSING)
    explicit_hash = not (class_hash is dataclasses.MISSING or (class_hash is None and "__eq__" in own))
    if frozen and ("__setattr__" in own or "__delattr__" in own):
        dataclasses.dataclass(cls, init=init, repr=repr_, eq=eq, frozen=frozen)  # raises its TypeError
        return cls
    frozen_bases = [b.__dict__["__dataclass_params__"] for b in cls.__mro__[1:]
                    if "__dataclass_fields__" in b.__dict__ and b.__dict__["__dataclass_params__"].frozen]
    if any(b.__dict__.get("__dataclass_fields__") is not None for b in cls.__mro__[1:]):
        if frozen_bases and not frozen:
            raise TypeError("cannot inherit non-frozen dataclass from a frozen one")
        if frozen and not frozen_bases:
            raise TypeError("cannot inherit frozen dataclass from a non-frozen one")
    # dataclasses collects, checks and stores the fields; it generates nothing with these options
    # (frozen=False: its __setattr__ would be compiled; the bases say frozen only for that call).
    undocumented = not getattr(cls, "__doc__", None)
    if undocumented:  # dataclasses would read object.__init__'s signature (tokenizing its text: ms)
        cls.__doc__ = "-"
    with _lock:
        for params in frozen_bases:
            params.frozen = False
        try:
            dataclasses.dataclass(cls, init=False, repr=False, eq=False)  # the same class, changed
        finally:
            for params in frozen_bases:
                params.frozen = True
    everything = cls.__dict__["__dataclass_fields__"].values()  # ClassVar and InitVar pseudo-fields too
    fields = [f for f in everything if f._field_type is dataclasses._FIELD]  # type: ignore[attr-defined]
    hash_ = eq and frozen and not explicit_hash
    source = _source(fields, init and "__init__" not in own, repr_ and "__repr__" not in own,
                     eq and "__eq__" not in own, frozen, hash_, hasattr(cls, "__post_init__"))
    defaults = tuple(f.default_factory if f.default_factory is not dataclasses.MISSING else f.default for f in fields)
    methods = _factory(source)(cls, defaults, dataclasses.FrozenInstanceError, dataclasses._HAS_DEFAULT_FACTORY,  # type: ignore[attr-defined]
                               object.__setattr__)
    for name, fn in methods.items():
        fn.__qualname__ = f"{cls.__qualname__}.{name}"
        fn.__module__ = cls.__module__
        setattr(cls, name, fn)
    if "__init__" in methods:
        methods["__init__"].__annotations__ = {**{f.name: f.type for f in fields if f.init}, "return": None}
    if eq and not frozen and not explicit_hash:
        cls.__hash__ = None  # type: ignore[assignment]  # as dataclasses: mutable and comparable is unhashable
    if undocumented:  # as dataclasses writes it: the name and the __init__ signature
        cls.__doc__ = cls.__name__ + str(inspect.signature(cls)).replace(" -> None", "")
    params = cls.__dict__["__dataclass_params__"]
    params.init, params.repr, params.eq, params.frozen = init, repr_, eq, frozen
    return cls


def _routed_to_stdlib(cls: type) -> bool:
    """A class this module does not build itself: InitVar or KW_ONLY fields."""
    for hint in inspect.get_annotations(cls).values():
        text = hint if isinstance(hint, str) else getattr(hint, "__name__", "")
        if "InitVar" in text or "KW_ONLY" in text:
            return True
    return False


def fast_dataclass(cls: _T | None = None, /, **options: Any) -> Any:
    """:func:`dataclasses.dataclass`, cheaper to apply (see the module's text); same arguments.

    Import it as ``from ebpf.core.records import dataclass``: under a type checker that name is
    the standard decorator, so the checker applies the dataclass rules it knows.
    """

    def wrap(cls: _T) -> _T:
        if not set(options) <= _FAST_OPTIONS or _routed_to_stdlib(cls):
            made: Any = dataclasses.dataclass(cls, **options)  # a new class with slots=True
            return made  # type: ignore[no-any-return]
        return _process(cls, options.get("init", True), options.get("repr", True), options.get("eq", True),
                        options.get("frozen", False))

    return wrap if cls is None else wrap(cls)


if TYPE_CHECKING:  # the checker sees the standard decorator (field rules, frozen, __init__ signature)
    from dataclasses import dataclass
else:
    dataclass = fast_dataclass
