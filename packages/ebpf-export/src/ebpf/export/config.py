"""The exporter's configuration: a YAML file of programs and the metrics read from their maps.

The schema follows cloudflare's ebpf_exporter where both have the same job (``counters``,
``histograms``, ``labels`` with ``size``/``padding``/``decoders``, ``bucket_type``/``bucket_min``/
``bucket_max``/``bucket_multiplier``/``bucket_keys``, decoder names), with what a single file
needs on top: a list of ``programs``, each naming its C source, object or built-in::

    programs:
      - name: syscalls
        source: syscalls.bpf.c          # or  object: syscalls.bpf.o  |  builtin: syscalls
        interval: 5                     # optional: serve cached reads for up to 5 s
        metrics:
          counters:
            - name: syscalls_total      # the metric; also the map's name unless `map:` says
              help: Syscalls by process and syscall
              labels:
                - {name: comm, size: 16, decoders: [{name: string}]}
                - {name: syscall, size: 8, decoders: [{name: uint}, {name: syscall}]}

Every error names the file, the line and the key (``ConfigError``), before anything is loaded.
"""

from __future__ import annotations

import os
import re
from typing import Any

import yaml
from ebpf.core.errors import EBPFError
from ebpf.core.records import dataclass, field

__all__ = ["ConfigError", "DecoderConfig", "LabelConfig", "MetricConfig", "ProgramConfig", "ExportConfig",
           "load_config", "parse_config", "DECODERS", "BUCKET_TYPES"]

# Decoder names: ebpf_exporter's where the job is the same, plus `enum` (names from BTF).
DECODERS = ("uint", "hex", "string", "ksym", "syscall", "cgroup", "inet_ip", "errno", "enum", "static_map",
            "regexp", "majorminor")
BUCKET_TYPES = ("exp2", "exp2zero", "linear", "fixed")
_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


class ConfigError(EBPFError):
    """The configuration is wrong; the message names the file, line and key."""

    def __init__(self, where: str, message: str) -> None:
        """:param where: ``file:line`` (and key path) of the fault."""
        self.where = where
        super().__init__(f"{where}: {message}")


@dataclass(frozen=True)
class DecoderConfig:
    """One step of a label's decoder chain."""

    name: str
    static_map: dict[str, str] = field(default_factory=dict)
    regexps: tuple[str, ...] = ()
    allow_unknown: bool = False
    enum: str = ""


@dataclass(frozen=True)
class LabelConfig:
    """A label cut from the map key: ``size`` bytes after ``padding`` bytes, through ``decoders``."""

    name: str
    size: int
    decoders: tuple[DecoderConfig, ...]
    padding: int = 0


@dataclass(frozen=True)
class MetricConfig:
    """A counter, gauge or histogram read from one map."""

    kind: str
    name: str
    help: str
    map: str
    labels: tuple[LabelConfig, ...]
    where: str
    bucket_type: str = ""
    bucket_min: int = 0
    bucket_max: int = 0
    bucket_multiplier: float = 1.0
    bucket_keys: tuple[float, ...] = ()

    @property
    def key_size(self) -> int:
        """Bytes of key the labels describe (padding included)."""
        return sum(lab.size + lab.padding for lab in self.labels)


@dataclass(frozen=True)
class ProgramConfig:
    """One BPF object: its origin, options and metrics."""

    name: str
    where: str
    source: str = ""
    object: str = ""
    builtin: str = ""
    cflags: tuple[str, ...] = ()
    interval: float = 0.0
    metrics: tuple[MetricConfig, ...] = ()


@dataclass(frozen=True)
class ExportConfig:
    """A whole configuration: its programs, in file order."""

    programs: tuple[ProgramConfig, ...]
    path: str = ""


class _Walker:
    """Validates a composed YAML node tree, naming file:line and the key path in every error."""

    def __init__(self, path: str) -> None:
        self.path = path

    def where(self, node: yaml.Node, key: str) -> str:
        return f"{self.path}:{node.start_mark.line + 1}: {key}"

    def fail(self, node: yaml.Node, key: str, message: str) -> ConfigError:
        return ConfigError(self.where(node, key), message)

    def mapping(self, node: yaml.Node, key: str, allowed: tuple[str, ...],
                required: tuple[str, ...] = ()) -> dict[str, yaml.Node]:
        if not isinstance(node, yaml.MappingNode):
            raise self.fail(node, key, "expected a mapping")
        out: dict[str, yaml.Node] = {}
        for k, v in node.value:
            name = k.value if isinstance(k, yaml.ScalarNode) else None
            if name not in allowed:
                raise self.fail(k, f"{key}.{name}", f"unknown key {name!r} (expected one of {', '.join(allowed)})")
            out[name] = v
        for name in required:
            if name not in out:
                raise self.fail(node, key, f"missing key {name!r}")
        return out

    def seq(self, node: yaml.Node, key: str) -> list[yaml.Node]:
        if isinstance(node, yaml.ScalarNode) and node.tag.endswith(":null"):
            return []
        if not isinstance(node, yaml.SequenceNode):
            raise self.fail(node, key, "expected a list")
        return list(node.value)

    def scalar(self, node: yaml.Node, key: str) -> Any:
        if not isinstance(node, yaml.ScalarNode):
            raise self.fail(node, key, "expected a single value")
        return yaml.safe_load(yaml.serialize(node))

    def string(self, node: yaml.Node, key: str, pattern: re.Pattern[str] | None = None) -> str:
        value = self.scalar(node, key)
        if not isinstance(value, str) or not value:
            raise self.fail(node, key, f"expected a non-empty string, not {value!r}")
        if pattern is not None and not pattern.match(value):
            raise self.fail(node, key, f"{value!r} is not a valid name (letters, digits, '_')")
        return value

    def number(self, node: yaml.Node, key: str, low: float, high: float, integer: bool = True) -> Any:
        value = self.scalar(node, key)
        ok = isinstance(value, int) if integer else isinstance(value, (int, float))
        if isinstance(value, bool) or not ok or not low <= value <= high:
            kind = "an integer" if integer else "a number"
            raise self.fail(node, key, f"expected {kind} in [{low}, {high}], not {value!r}")
        return value


def _decoder(w: _Walker, node: yaml.Node, key: str, program_dir: str) -> DecoderConfig:
    m = w.mapping(node, key, ("name", "static_map", "regexps", "allow_unknown", "enum"), ("name",))
    name = w.string(m["name"], f"{key}.name")
    if name not in DECODERS:
        raise w.fail(m["name"], f"{key}.name", f"unknown decoder {name!r} (known: {', '.join(DECODERS)})")
    static: dict[str, str] = {}
    if "static_map" in m:
        raw = w.mapping(m["static_map"], f"{key}.static_map",
                        tuple(str(k.value) for k, _ in getattr(m["static_map"], "value", [])))
        static = {k: str(w.scalar(v, f"{key}.static_map.{k}")) for k, v in raw.items()}
    regexps = tuple(w.string(n, f"{key}.regexps") for n in w.seq(m["regexps"], f"{key}.regexps")) \
        if "regexps" in m else ()
    for i, expr in enumerate(regexps):
        try:
            re.compile(expr)
        except re.error as exc:
            raise w.fail(m["regexps"], f"{key}.regexps[{i}]", f"bad regular expression {expr!r}: {exc}") from None
    if name == "regexp" and not regexps:
        raise w.fail(node, key, "the regexp decoder needs `regexps: [...]`")
    if name == "static_map" and "static_map" not in m:
        raise w.fail(node, key, "the static_map decoder needs `static_map: {value: name}`")
    enum = w.string(m["enum"], f"{key}.enum") if "enum" in m else ""
    if name == "enum" and not enum:
        raise w.fail(node, key, "the enum decoder needs `enum: <BTF enum type name>`")
    allow = bool(w.scalar(m["allow_unknown"], f"{key}.allow_unknown")) if "allow_unknown" in m else False
    return DecoderConfig(name, static, regexps, allow, enum)


def _label(w: _Walker, node: yaml.Node, key: str, program_dir: str) -> LabelConfig:
    m = w.mapping(node, key, ("name", "size", "padding", "decoders"), ("name", "size", "decoders"))
    name = w.string(m["name"], f"{key}.name", _LABEL)
    size = w.number(m["size"], f"{key}.size", 1, 4096)
    padding = w.number(m["padding"], f"{key}.padding", 0, 4096) if "padding" in m else 0
    decs = tuple(_decoder(w, n, f"{key}.decoders[{i}]", program_dir)
                 for i, n in enumerate(w.seq(m["decoders"], f"{key}.decoders")))
    if not decs:
        raise w.fail(m["decoders"], f"{key}.decoders", "a label needs at least one decoder")
    if decs[0].name == "uint" and size not in (1, 2, 4, 8):
        raise w.fail(m["size"], f"{key}.size", f"the uint decoder reads 1, 2, 4 or 8 bytes, not {size}")
    if decs[0].name == "inet_ip" and size not in (4, 16):
        raise w.fail(m["size"], f"{key}.size", f"the inet_ip decoder reads 4 or 16 bytes, not {size}")
    return LabelConfig(name, size, decs, padding)


_METRIC_KEYS = ("name", "help", "map", "labels")
_HIST_KEYS = ("bucket_type", "bucket_min", "bucket_max", "bucket_multiplier", "bucket_keys")


def _metric(w: _Walker, node: yaml.Node, key: str, kind: str, program_dir: str) -> MetricConfig:
    allowed = _METRIC_KEYS + (_HIST_KEYS if kind == "histogram" else ())
    m = w.mapping(node, key, allowed, ("name", "help") + (("bucket_type",) if kind == "histogram" else ()))
    name = w.string(m["name"], f"{key}.name", _NAME)
    help_text = w.string(m["help"], f"{key}.help")
    map_name = w.string(m["map"], f"{key}.map") if "map" in m else name
    labels = tuple(_label(w, n, f"{key}.labels[{i}]", program_dir)
                   for i, n in enumerate(w.seq(m["labels"], f"{key}.labels"))) if "labels" in m else ()
    names = [lab.name for lab in labels]
    if len(set(names)) != len(names):
        raise w.fail(m["labels"], f"{key}.labels", f"label names repeat: {names}")
    where = w.where(node, key)
    if kind != "histogram":
        return MetricConfig(kind, name, help_text, map_name, labels, where)
    btype = w.string(m["bucket_type"], f"{key}.bucket_type")
    if btype not in BUCKET_TYPES:
        raise w.fail(m["bucket_type"], f"{key}.bucket_type",
                     f"unknown bucket_type {btype!r} (known: {', '.join(BUCKET_TYPES)})")
    if not labels:
        raise w.fail(node, key, "a histogram needs labels, the last one being the bucket")
    bmin = w.number(m["bucket_min"], f"{key}.bucket_min", 0, 1 << 20) if "bucket_min" in m else 0
    mult = w.number(m["bucket_multiplier"], f"{key}.bucket_multiplier", 0, 1e18, integer=False) \
        if "bucket_multiplier" in m else 1.0
    keys: tuple[float, ...] = ()
    bmax = 0
    if btype == "fixed":
        if "bucket_keys" not in m:
            raise w.fail(node, key, "a fixed histogram needs `bucket_keys: [...]`")
        keys = tuple(float(w.number(n, f"{key}.bucket_keys", 0, 1e18, integer=False))
                     for n in w.seq(m["bucket_keys"], f"{key}.bucket_keys"))
        if not keys or list(keys) != sorted(set(keys)):
            raise w.fail(m["bucket_keys"], f"{key}.bucket_keys", "bucket_keys must be non-empty and increasing")
    else:
        if "bucket_max" not in m:
            raise w.fail(node, key, f"a {btype} histogram needs `bucket_max`")
        bmax = w.number(m["bucket_max"], f"{key}.bucket_max", 1, 1 << 20)
        if bmax <= bmin:
            raise w.fail(m["bucket_max"], f"{key}.bucket_max", f"bucket_max ({bmax}) must exceed bucket_min ({bmin})")
    if labels[-1].decoders[0].name != "uint":
        raise w.fail(m["labels"], f"{key}.labels", "a histogram's last label is its bucket: decode it with uint")
    return MetricConfig(kind, name, help_text, map_name, labels, where, btype, bmin, bmax, float(mult or 1.0), keys)


def _program(w: _Walker, node: yaml.Node, key: str, base_dir: str) -> ProgramConfig:
    m = w.mapping(node, key, ("name", "source", "object", "builtin", "cflags", "interval", "metrics"), ("name",))
    name = w.string(m["name"], f"{key}.name", _LABEL)
    origins = [k for k in ("source", "object", "builtin") if k in m]
    if len(origins) != 1:
        raise w.fail(node, key, "a program needs exactly one of `source`, `object` or `builtin`")
    origin = origins[0]
    value = w.string(m[origin], f"{key}.{origin}")
    if origin != "builtin":
        value = os.path.normpath(os.path.join(base_dir, value))
        if not os.path.isfile(value):
            raise w.fail(m[origin], f"{key}.{origin}", f"no such file: {value}")
    cflags = tuple(w.string(n, f"{key}.cflags") for n in w.seq(m["cflags"], f"{key}.cflags")) \
        if "cflags" in m else ()
    interval = float(w.number(m["interval"], f"{key}.interval", 0, 86400, integer=False)) if "interval" in m else 0.0
    metrics: list[MetricConfig] = []
    if "metrics" in m:
        mm = w.mapping(m["metrics"], f"{key}.metrics", ("counters", "gauges", "histograms"))
        for section, kind in (("counters", "counter"), ("gauges", "gauge"), ("histograms", "histogram")):
            if section in mm:
                metrics += [_metric(w, n, f"{key}.metrics.{section}[{i}]", kind, base_dir)
                            for i, n in enumerate(w.seq(mm[section], f"{key}.metrics.{section}"))]
    return ProgramConfig(name, w.where(node, key), source=value if origin == "source" else "",
                         object=value if origin == "object" else "", builtin=value if origin == "builtin" else "",
                         cflags=cflags, interval=interval, metrics=tuple(metrics))


def parse_config(text: str, path: str = "<config>", base_dir: str | None = None) -> ExportConfig:
    """Validate configuration text.

    :param text: the YAML document.
    :param path: the file name used in error messages.
    :param base_dir: where relative ``source``/``object`` paths start (default: the file's directory).
    :raises ConfigError: naming the file, line and key of the first fault.
    """
    w = _Walker(path)
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f"{mark.line + 1}" if mark is not None else "?"
        raise ConfigError(f"{path}:{line}", f"not valid YAML: {getattr(exc, 'problem', exc)}") from None
    if root is None:
        raise ConfigError(f"{path}:1", "the file is empty")
    top = w.mapping(root, "config", ("programs",), ("programs",))
    base = base_dir if base_dir is not None else os.path.dirname(os.path.abspath(path))
    programs = tuple(_program(w, n, f"programs[{i}]", base) for i, n in enumerate(w.seq(top["programs"], "programs")))
    if not programs:
        raise w.fail(top["programs"], "programs", "no programs listed")
    seen: dict[str, str] = {}
    for prog in programs:
        for metric in prog.metrics:
            if metric.name in seen:
                raise ConfigError(metric.where, f"metric {metric.name!r} is defined twice (also at {seen[metric.name]})")
            seen[metric.name] = metric.where
    names = [p.name for p in programs]
    if len(set(names)) != len(names):
        raise ConfigError(programs[0].where, f"program names repeat: {names}")
    return ExportConfig(programs, path)


def load_config(path: str | os.PathLike[str]) -> ExportConfig:
    """Read and validate a configuration file.

    :raises ConfigError: the file is missing, unreadable or invalid (file, line and key named).
    """
    p = os.fspath(path)
    try:
        with open(p, encoding="utf-8") as fh:
            text = fh.read()
    except OSError as exc:
        raise ConfigError(p, f"cannot read the configuration: {exc.strerror}") from None
    return parse_config(text, p)
