"""``ebpf gen skeleton``: a typed Python module for one BPF object (bpftool's skeleton, cilium's bpf2go).

The module holds a ``ctypes`` class for every struct used as a map key or value, a ring buffer
record (``__type(value, struct event)`` on the ring buffer) or a global; a class that loads the
object, with one typed attribute per map (``skel.maps.events``), program and global (read-only
``.rodata`` constants become keyword arguments of the constructor); and the C comments placed
before each struct, map, program and global as docstrings.  It passes ``mypy``.

Use::

    ebpf gen skeleton opensnoop.bpf.c -o opensnoop_skel.py

    from opensnoop_skel import OpensnoopSkeleton
    with OpensnoopSkeleton(targ_tgid=1234) as skel:
        skel.attach()
        RingBuffer(skel.maps.events, parser=skel.types.event.parse)
"""

from __future__ import annotations

import keyword
import os
import re

from ebpf.core.btf import Array, Composite, Enum, Float, Int, Pointer, Spec, Union
from ebpf.core.errors import BTFError, EBPFError
from ebpf.core.records import dataclass, field

__all__ = ["generate_skeleton", "render_skeleton"]

_INT_CTYPES = {(1, False): "ctypes.c_uint8", (2, False): "ctypes.c_uint16", (4, False): "ctypes.c_uint32",
               (8, False): "ctypes.c_uint64", (1, True): "ctypes.c_int8", (2, True): "ctypes.c_int16",
               (4, True): "ctypes.c_int32", (8, True): "ctypes.c_int64"}


def _ident(name: str, taken: set[str] | None = None) -> str:
    """A Python identifier for a C name (keywords and clashes get a trailing underscore)."""
    out = re.sub(r"\W", "_", name) or "_"
    if out[0].isdigit():
        out = "_" + out
    while keyword.iskeyword(out) or (taken is not None and out in taken):
        out += "_"
    if taken is not None:
        taken.add(out)
    return out


def _doc(text: str) -> str:
    """``text`` safe inside a triple-quoted docstring."""
    return text.replace("\\", "\\\\").replace('"""', "'''").strip()


@dataclass
class _Types:
    """ctypes classes rendered from BTF, in dependency order."""

    spec: Spec
    comments: dict[str, str]
    classes: dict[int, str] = field(default_factory=dict)  # resolved type id -> class name
    order: list[str] = field(default_factory=list)  # rendered class source, in order
    names: set[str] = field(default_factory=set)
    top: dict[str, str] = field(default_factory=dict)  # C struct name -> class name (for Types)

    def ctype(self, tid: int, depth: int = 0) -> tuple[str, str]:
        """(ctypes expression, annotation) for BTF type ``tid``."""
        if depth > 32:
            raise BTFError("types nest too deeply for a skeleton")
        t = self.spec.resolve(tid)
        if isinstance(t, Int):
            if t.name == "_Bool":
                return "ctypes.c_bool", "builtins.bool"
            if t.size == 1 and t.name == "char":  # C strings: ctypes gives bytes up to the NUL
                return "ctypes.c_char", "builtins.bytes"
            return _INT_CTYPES.get((t.size, t.signed), "ctypes.c_uint64"), "builtins.int"
        if isinstance(t, Enum):
            return _INT_CTYPES.get((t.size, t.signed), "ctypes.c_uint32"), "builtins.int"
        if isinstance(t, Pointer):
            return "ctypes.c_uint64", "builtins.int"
        if isinstance(t, Float):
            return ("ctypes.c_float" if t.size == 4 else "ctypes.c_double"), "builtins.float"
        if isinstance(t, Array):
            elem, _ = self.ctype(t.type_id, depth + 1)
            if elem == "ctypes.c_char":
                return f"ctypes.c_char * {t.nelems}", "builtins.bytes"
            return f"{elem} * {t.nelems}", f"ctypes.Array[{elem}]"
        if isinstance(t, Composite):
            name = self.struct(t, depth + 1)
            return name, name
        raise BTFError(f"a {t.kind_name} cannot be a field of a skeleton type")

    def struct(self, t: Composite, depth: int = 0) -> str:
        """Render ``t`` (once) and return its class name."""
        if t.id in self.classes:
            return self.classes[t.id]
        name = _ident(t.name or f"anon_{t.id}", self.names)
        self.classes[t.id] = name
        if t.name:
            self.top.setdefault(t.name, name)
        fields: list[str] = []
        notes: list[str] = []
        pos = 0  # bytes laid out so far (non-union)
        is_union = isinstance(t, Union)
        taken: set[str] = {"parse"}  # the class's own method
        anonymous: list[str] = []
        for i, m in enumerate(t.members):
            mname = _ident(m.name or f"_anon{i}", taken)
            expr, ann = self.ctype(m.type_id, depth)
            if not m.name:
                anonymous.append(mname)  # its members are reached directly, as in C
            off = m.bit_offset // 8
            if m.bitfield_size:
                size = self.spec.sizeof(m.type_id)
                unit = m.bit_offset // (size * 8) * size
                if not is_union and unit > pos:
                    fields.append(f'("_pad{pos}", ctypes.c_uint8 * {unit - pos}),')
                    pos = unit
                fields.append(f'("{mname}", {expr}, {m.bitfield_size}),')
                pos = max(pos, unit + size)
            else:
                if not is_union and off > pos:
                    fields.append(f'("_pad{pos}", ctypes.c_uint8 * {off - pos}),')
                    pos = off
                fields.append(f'("{mname}", {expr}),')
                pos = max(pos, off + self.spec.sizeof(m.type_id))
            notes.append(f"    {mname}: {ann}")
        if not is_union and t.size > pos:
            fields.append(f'("_pad{pos}", ctypes.c_uint8 * {t.size - pos}),')
        base = "ctypes.Union" if is_union else "ctypes.Structure"
        kind = "union" if is_union else "struct"
        doc = self.comments.get(f"struct {t.name}") or f"{kind} {t.name or '(anonymous)'} ({t.size} bytes)."
        anon = [f"    _anonymous_ = {tuple(anonymous)!r}"] if anonymous else []
        body = [f"class {name}({base}):", f'    """{_doc(doc)}"""', "", "    _pack_ = 1", *anon,
                "    _fields_ = [", *[f"        {f}" for f in fields], "    ]", *notes, "",
                "    @classmethod",
                f"    def parse(cls, data: builtins.bytes | bytearray | memoryview) -> {name}:",
                '        """Decode one value or record (bytes past the size are ignored)."""',
                "        return cls.from_buffer_copy(bytes(data[: ctypes.sizeof(cls)]))", ""]
        self.order.append("\n".join(body))
        return name


def _c_comments(source: str) -> dict[str, str]:
    """The comment just before each struct, map, program and global of a C file, by what it documents."""
    out: dict[str, str] = {}
    lines = source.splitlines()
    pending: list[str] = []
    in_block = False
    decl_start = 0
    for i, line in enumerate(lines):
        s = line.strip()
        if in_block:
            pending.append(s.rstrip("*/").lstrip("* ").strip())
            in_block = not s.endswith("*/")
            continue
        if s.startswith("/*") and not s.startswith("/**/"):
            text = s[2:]
            in_block = not text.rstrip().endswith("*/")
            pending = [text.rstrip().rstrip("*/").lstrip("* ").strip()]
            continue
        if s.startswith("//"):
            pending = (pending if lines[i - 1].strip().startswith("//") else []) + [s[2:].strip()]
            continue
        if not s:
            continue
        text = " ".join(p for p in pending if p).strip()
        m = re.match(r"struct\s+(\w+)\s*\{", s)
        if m and text:
            out[f"struct {m.group(1)}"] = text
        m = re.match(r"\}\s*(\w+)\s+SEC\(\"\.maps\"\)", s)
        if m and f"decl@{decl_start}" in out:
            out[f"map {m.group(1)}"] = out[f"decl@{decl_start}"]
        if s.startswith("struct {"):
            decl_start = i
            if text:
                out[f"decl@{i}"] = text
        m = re.match(r"SEC\(\"[^\"]*\"\)", s)
        if m and text:
            out[f"sec@{i}"] = text
        m = re.match(r"(?:int|long|void|__u\d+|__s\d+)\s+(?:BPF_\w+\()?(\w+)\s*[(,]", s)
        if m and f"sec@{i - 1}" in out:
            out[f"program {m.group(1)}"] = out[f"sec@{i - 1}"]
        m = re.match(r"(?:const\s+volatile\s+|volatile\s+)?[\w\s]+?\b(\w+)(\[\w*\])?\s*(=.*)?;$", s)
        if m and text and not s.startswith(("return", "struct {", "}")):
            out.setdefault(f"global {m.group(1)}", text)
        pending = []
    return out


def render_skeleton(obj_path: str, class_name: str | None = None, source: str | None = None,
                    object_ref: str | None = None) -> str:
    """The skeleton module's text for the object at ``obj_path``.

    :param class_name: the loader class (default: the object's stem in CapWords + ``Skeleton``).
    :param source: the C source (for docstrings), if known.
    :param object_ref: how the module finds the object: a path relative to the module's own
        directory (default: the object's absolute path).
    :raises ELFError: / :raises BTFError: an unusable object.
    """
    from ebpf.elf.loader import load_spec
    from ebpf.elf.mapdefs import collect_maps
    from ebpf.elf.objfile import parse_object

    obj = parse_object(obj_path)
    spec = load_spec(obj_path)
    if obj.btf is None:
        raise BTFError(f"{obj_path}: a skeleton needs the object's BTF (compile with -g)")
    comments = _c_comments(source) if source else {}
    types = _Types(obj.btf, comments)
    map_types: dict[str, tuple[str | None, str | None]] = {}
    for md in collect_maps(obj).values():
        kv: list[str | None] = []
        for tid in (md.decl_key_type_id, md.decl_value_type_id):
            t = obj.btf.resolve(tid) if tid else None
            kv.append(types.struct(t) if isinstance(t, Composite) else None)
        map_types[md.name] = (kv[0], kv[1])
    for d in obj.data.values():
        for _vname, (_off, _size, tid) in d.variables.items():
            t = obj.btf.resolve(tid) if tid else None
            if isinstance(t, Composite):
                types.struct(t)
    stem = os.path.basename(obj_path).split(".")[0]
    cls = class_name or "".join(p.capitalize() for p in re.split(r"[^A-Za-z0-9]+", stem) if p) + "Skeleton"
    ref = object_ref if object_ref is not None else os.path.abspath(obj_path)
    locate = (f"os.path.join(os.path.dirname(os.path.abspath(__file__)), {ref!r})" if not os.path.isabs(ref)
              else repr(ref))
    out = [f'"""Typed skeleton of {os.path.basename(obj_path)} (generated by `ebpf gen skeleton`; do not edit)."""',
           "", "from __future__ import annotations", "", "import builtins", "import ctypes", "import os", "from typing import Any", "",
           "from ebpf.core.maps import Map", "from ebpf.core.programs import Program", "from ebpf.elf import load_elf", "",
           f"#: The object this module loads.\nOBJECT = {locate}", "", "", *[c + "\n" for c in types.order]]
    out += ["class Types:", '    """The object\'s struct types as ctypes classes (``Types.event.parse(data)``)."""', ""]
    out += [f"    {_ident(c)} = {n}" for c, n in sorted(types.top.items())] or ["    pass"]
    out += ["", "", "class Maps:", '    """The loaded maps."""', "",
            "    def __init__(self, collection: Any) -> None:", '        """Bind to a loaded collection."""']
    taken: set[str] = set()
    for name in sorted(spec.maps):
        if name.startswith("."):
            continue
        attr = _ident(name, taken)
        k, v = map_types.get(name, (None, None))
        parts = [f"key {k}"] * bool(k) + [f"value {v}"] * bool(v)
        what = comments.get(f"map {name}") or f"map {name}" + (f" ({', '.join(parts)})" if parts else "")
        out += [f"        self.{attr}: Map = collection.maps[{name!r}]", f'        """{_doc(what)}"""']
    out += ["", "", "class Programs:", '    """The loaded programs."""', "",
            "    def __init__(self, collection: Any) -> None:", '        """Bind to a loaded collection."""']
    taken = set()
    for name in sorted(spec.programs):
        attr = _ident(name, taken)
        what = comments.get(f"program {name}") or f"program {name} (section {spec.sections.get(name, '?')})"
        out += [f"        self.{attr}: Program = collection.programs[{name!r}]", f'        """{_doc(what)}"""']
    out += _globals(spec, comments)
    out += _loader_class(cls, spec, os.path.basename(obj_path))
    return "\n".join(out) + "\n"


def _py_type(kind: str, type_name: str) -> str:
    return "int" if kind in ("int", "enum", "pointer") else "bytes"


def _globals(spec: object, comments: dict[str, str]) -> list[str]:
    variables = getattr(spec, "variables", {})
    out = ["", "", "class Globals:", '    """The object\'s global variables (``.data``, ``.bss``; ``.rodata`` read-only)."""',
           "", "    def __init__(self, collection: Any) -> None:", '        """Bind to a loaded collection."""',
           "        self._vars = collection.variables"]
    taken: set[str] = {"_vars"}
    for name in sorted(variables):
        var = variables[name]
        attr = _ident(name, taken)
        typ = _py_type(var.kind, var.type_name)
        conv = "int" if typ == "int" else "bytes"
        what = comments.get(f"global {name}") or f"{var.type_name or 'global'} {name} ({var.map})"
        out += ["", "    @property", f"    def {attr}(self) -> {typ}:", f'        """{_doc(what)}"""',
                f"        return {conv}(self._vars[{name!r}].value)"]
        if not var.readonly:
            out += ["", f"    @{attr}.setter", f"    def {attr}(self, value: {typ}) -> None:",
                    f"        self._vars[{name!r}].value = value"]
    return out


def _loader_class(cls: str, spec: object, obj_name: str) -> list[str]:
    variables = getattr(spec, "variables", {})
    consts = [(n, v) for n, v in sorted(variables.items()) if v.readonly]
    taken = {"self", "object_path", "options", "constants"}
    params = [(n, _ident(n, taken), _py_type(v.kind, v.type_name)) for n, v in consts]
    sig = "".join(f", {p}: {t} | None = None" for _, p, t in params)
    out = ["", "", f"class {cls}:", f'    """Loads {obj_name}: ``maps``, ``programs``, ``globals``, ``types``; close it or use ``with``.',
           "", "    Read-only constants (``const volatile`` globals) are keyword arguments; other",
           "    ``load_elf`` options (``maps=``, ``programs=``, ``btf_path=`` ...) pass through.", '    """', "",
           "    types = Types", "",
           f"    def __init__(self, *{sig}, object_path: str = OBJECT, **options: Any) -> None:",
           '        """Load the object (maps created, programs loaded)."""',
           '        constants: dict[str, object] = dict(options.pop("constants", None) or {})']
    for cname, p, _t in params:
        out += [f"        if {p} is not None:", f"            constants[{cname!r}] = {p}"]
    out += ["        self.collection = load_elf(object_path, constants=constants, **options)",
            "        self.maps = Maps(self.collection)", "        self.programs = Programs(self.collection)",
            "        self.globals = Globals(self.collection)", "        self.links: list[Any] = []", "",
            "    def attach(self) -> list[Any]:",
            '        """Attach every program whose section names its target (``program.attach()``); returns the links."""',
            "        for prog in self.collection.programs.values():",
            '            if getattr(prog, "attach_target", None) or prog.spec.attach_to:',
            "                self.links.append(prog.attach())",
            "        return self.links", "",
            "    def close(self) -> None:", '        """Detach and close everything."""',
            "        for link in reversed(self.links):", "            link.close()", "        self.links = []",
            "        self.collection.close()", "",
            f"    def __enter__(self) -> {cls}:", "        return self", "",
            "    def __exit__(self, *exc: object) -> None:", "        self.close()"]
    return out


def generate_skeleton(path: str | os.PathLike[str], output: str | os.PathLike[str] | None = None, *,
                      class_name: str | None = None, compiler: str = "auto", cflags: tuple[str, ...] = ()) -> str:
    """Write the skeleton module of a BPF object (``.o``) or C source (``.c``, compiled beside ``output``).

    :param path: the ``.bpf.c`` / ``.c`` source or the ``.o``.
    :param output: the module to write (default: ``<stem>_skel.py`` beside the input).
    :param class_name: the loader class name (default: from the file name).
    :returns: the path written.
    :raises EBPFError: a missing input, a failed compile, an unusable object.
    """
    src_path = os.fspath(path)
    if not os.path.isfile(src_path):
        raise EBPFError(f"{src_path!r} does not exist")
    stem = os.path.basename(src_path).split(".")[0]
    out = os.fspath(output) if output is not None else os.path.join(os.path.dirname(src_path), f"{stem}_skel.py")
    out_dir = os.path.dirname(os.path.abspath(out))
    source = None
    if src_path.endswith(".c"):
        from ebpf.elf.compile import compile_c

        with open(src_path, errors="replace") as fh:
            source = fh.read()
        obj_path = str(compile_c(src_path, os.path.join(out_dir, f"{stem}.o"), cflags, compiler=compiler))
    else:
        obj_path = src_path
        guess = os.path.splitext(src_path)[0] + ".c"
        if os.path.isfile(guess):
            with open(guess, errors="replace") as fh:
                source = fh.read()
    rel = os.path.relpath(os.path.abspath(obj_path), out_dir)
    text = render_skeleton(obj_path, class_name, source, rel if not rel.startswith("..") else None)
    with open(out, "w") as fh:
        fh.write(text)
    return out
