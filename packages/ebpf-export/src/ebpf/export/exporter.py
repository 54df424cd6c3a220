"""The exporter: load each configured program, attach it, and turn its maps into metric samples.

Maps are read at scrape time through the batch path (``lookup_batch_columns``: one syscall per
chunk, keys as raw bytes, values as u64 columns). Decoding a key runs the label decoders once:
the rendered label set is cached per raw key, so a steady-state scrape of 10,000 series is a
batch read plus one dict lookup and one string join per series.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from ebpf.core import codecs
from ebpf.core.errors import EBPFError
from ebpf.core.maps import Map
from ebpf.core.records import dataclass, field
from ebpf.export._builtin import DIRECTORY, builtin_names
from ebpf.export.config import ConfigError, ExportConfig, MetricConfig, ProgramConfig, parse_config
from ebpf.export.decoders import LabelDecoder, SkipSeries

__all__ = ["Exporter", "ExportError", "MetricFamily", "builtin_names", "builtin_config", "render_text",
           "BUILTIN_DIR"]

BUILTIN_DIR = Path(DIRECTORY)


class ExportError(EBPFError):
    """A program could not be compiled, loaded or attached; the message names the config place."""


def builtin_config(names: Iterable[str]) -> ExportConfig:
    """One configuration made of the named built-ins.

    :raises ConfigError: for a name that is not a built-in.
    """
    programs: list[ProgramConfig] = []
    known = builtin_names()
    for name in names:
        if name not in known:
            raise ConfigError("--builtin", f"unknown built-in {name!r} (known: {', '.join(known)})")
        path = BUILTIN_DIR / f"{name}.yaml"
        programs += parse_config(path.read_text(), str(path)).programs
    return ExportConfig(tuple(programs), "--builtin")


@dataclass
class MetricFamily:
    """One metric's samples from one scrape: ``(suffix, label text, value)`` rows, ready to render."""

    name: str
    kind: str
    help: str
    samples: list[tuple[str, str, float]] = field(default_factory=list)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _fmt(value: float) -> str:
    if type(value) is int:
        return str(value)
    if value == math.inf:
        return "+Inf"
    if isinstance(value, int) or value.is_integer():
        return str(int(value))
    return repr(value)


def render_text(families: Sequence[MetricFamily], openmetrics: bool = False) -> str:
    """Prometheus text exposition (0.0.4) or OpenMetrics 1.0 of the families."""
    out: list[str] = []
    for fam in families:
        name = fam.name
        if openmetrics and fam.kind == "counter" and name.endswith("_total"):
            name = name[: -len("_total")]
        out.append(f"# HELP {name} {_escape(fam.help)}\n# TYPE {name} {fam.kind}\n")
        base = fam.name
        if openmetrics and fam.kind == "counter" and not base.endswith("_total"):
            base += "_total"  # OpenMetrics counter samples always end in _total
        out.extend([f"{base}{suffix}{labels} {_fmt(value)}\n" for suffix, labels, value in fam.samples])
    if openmetrics:
        out.append("# EOF\n")
    return "".join(out)


def _label_text(names: Sequence[str], values: Sequence[str], extra: str = "") -> str:
    parts = [f'{n}="{_escape(v)}"' for n, v in zip(names, values)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


class _MetricReader:
    """Reads one metric's map and renders its samples, caching decoded label sets per raw key."""

    def __init__(self, cfg: MetricConfig, m: Map, btf: object | None) -> None:
        self.cfg = cfg
        self.map = m
        self.percpu = "PERCPU" in m.map_type.name
        hist = cfg.kind == "histogram"
        labels = cfg.labels[:-1] if hist else cfg.labels
        self.names = [lab.name for lab in labels]
        self.decoder = LabelDecoder(labels, btf)
        self.cache: dict[bytes, str | None] = {}
        if hist:
            self.bucket_off = cfg.key_size - cfg.labels[-1].size
            self.bucket_cache: dict[bytes, tuple[str, int] | None] = {}
            self.layout = _bucket_layout(cfg)

    def _labels(self, key: bytes) -> str | None:
        try:
            text: str | None = _label_text(self.names, self.decoder.decode(key))
        except SkipSeries:
            text = None
        self.cache[key] = text
        return text

    def _columns(self) -> tuple[Sequence[bytes], Sequence[Any]]:
        keys, values = self.map.lookup_batch_columns()
        if self.percpu:
            values = [sum(v) for v in values]
        return keys, values

    def family(self) -> MetricFamily:
        cfg = self.cfg
        fam = MetricFamily(cfg.name, cfg.kind, cfg.help)
        keys, values = self._columns()
        cache, labels = self.cache, self._labels
        if cfg.kind != "histogram":
            if not self.names:  # no labels: one series, the sum over the map
                fam.samples.append(("", "", sum(values)))
                return fam
            rows = fam.samples
            for key, value in zip(keys, values):
                text = cache[key] if key in cache else labels(key)
                if text is not None:
                    rows.append(("", text, value))
            return fam
        self._histogram(fam, keys, values)
        return fam

    def _bucket_key(self, key: bytes) -> tuple[str, int] | None:
        prefix = key[: self.bucket_off]
        text = self.cache[prefix] if prefix in self.cache else self._labels(prefix)
        pair = None if text is None else (text, int.from_bytes(key[self.bucket_off:], "little"))
        self.bucket_cache[key] = pair
        return pair

    def _histogram(self, fam: MetricFamily, keys: Sequence[bytes], values: Sequence[Any]) -> None:
        cfg = self.cfg
        groups: dict[str, dict[int, int]] = {}
        cache, lookup = self.bucket_cache, self._bucket_key
        for key, value in zip(keys, values):
            pair = cache[key] if key in cache else lookup(key)
            if pair is None:
                continue
            text, bucket = pair
            group = groups.get(text)
            if group is None:
                group = groups[text] = {}
            group[bucket] = group.get(bucket, 0) + value
        steps, les, sum_key = self.layout
        rows = fam.samples
        for text, buckets in groups.items():
            inner = text[1:-1]
            open_ = "{" + inner + "," if inner else "{"
            cum = 0
            get = buckets.get
            for step, le in zip(steps, les):
                cum += get(step, 0)
                rows.append(("_bucket", open_ + le, cum))
            top = steps[-1]
            total = cum + sum(v for k, v in buckets.items() if k > top and k != sum_key)
            rows.append(("_bucket", open_ + 'le="+Inf"}', total))
            rows.append(("_sum", text, get(sum_key, 0) * cfg.bucket_multiplier))
            rows.append(("_count", text, total))


def _bucket_layout(cfg: MetricConfig) -> tuple[list[int], list[str], int]:
    """Bucket slots, their rendered ``le="..."}`` tails, and the sum slot (-1 for none)."""
    mult = cfg.bucket_multiplier
    if cfg.bucket_type == "fixed":
        slots = [int(k) for k in cfg.bucket_keys]
        bounds = [k * mult for k in cfg.bucket_keys]
        sum_key = -1
    else:
        slots = list(range(cfg.bucket_min, cfg.bucket_max + 1))
        if cfg.bucket_type == "exp2":
            bounds = [2.0 ** i * mult for i in slots]
        elif cfg.bucket_type == "exp2zero":
            bounds = [0.0 if i == 0 else 2.0 ** (i - 1) * mult for i in slots]
        else:
            bounds = [i * mult for i in slots]
        sum_key = cfg.bucket_max + 1  # ebpf_exporter's convention: the optional sum slot
    return slots, [f'le="{_fmt(b)}"' + "}" for b in bounds], sum_key


@dataclass
class _Loaded:
    """One configured program, loaded: its collection and its links."""

    cfg: ProgramConfig
    collection: Any
    links: list[Any]
    readers: list[_MetricReader]
    handles: list[Map]
    cached: list[MetricFamily] | None = None
    cached_at: float = 0.0


class Exporter:
    """Loads the configured programs and renders their metrics; ``close()`` detaches everything.

    Use as a context manager. Thread-safe: scrapes are serialised.
    """

    def __init__(self, config: ExportConfig) -> None:
        """Keep the configuration; nothing is loaded until :meth:`start`."""
        self.config = config
        self.programs: list[_Loaded] = []
        self._lock = threading.Lock()
        self._stats: Any = None
        self._workdir = ""
        self.scrapes = 0
        self.last_scrape_seconds = 0.0

    def __enter__(self) -> Exporter:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        """Compile, load and attach every program; on any failure nothing is left loaded.

        :raises ConfigError: a metric's map is missing or its labels do not fit the key.
        :raises ExportError: compiling, loading (verifier) or attaching failed.
        """
        self._workdir = tempfile.mkdtemp(prefix="ebpf-export-")
        try:
            for prog in self.config.programs:
                self.programs.append(self._load(prog))
            try:
                from ebpf.core.links import enable_stats

                self._stats = enable_stats()
            except EBPFError:
                self._stats = None  # run counts then stay 0; metrics are unaffected
        except BaseException:
            self.close()
            raise

    def _object(self, prog: ProgramConfig) -> str:
        from ebpf.elf.compile import compile_c, vmlinux_header

        source = prog.source
        if prog.builtin:
            source = str(BUILTIN_DIR / f"{prog.builtin}.bpf.c")
            if not os.path.isfile(source):
                raise ConfigError(prog.where, f"unknown built-in {prog.builtin!r} (known: {', '.join(builtin_names())})")
        if not source:
            return prog.object
        out = os.path.join(self._workdir, f"{prog.name}.bpf.o")
        try:
            # vmlinux.h named explicitly: the built-ins include it through their shared header
            return compile_c(source, output=out, cflags=[*prog.cflags, f"-I{vmlinux_header()}"])
        except EBPFError as exc:
            raise ExportError(f"{prog.where}: compiling {source} failed: {exc}") from None

    def _load(self, prog: ProgramConfig) -> _Loaded:
        from ebpf.elf import load_spec

        obj = self._object(prog)
        try:
            spec = load_spec(obj, typed=False)  # the readers decode raw keys and values themselves
            collection = spec.load()
        except EBPFError as exc:
            raise ExportError(f"{prog.where}: loading {obj} failed: {exc}") from None
        loaded = _Loaded(prog, collection, [], [], [])
        try:
            btf = _object_btf(spec.btf)
            for metric in prog.metrics or _builtin_metrics(prog):
                loaded.readers.append(self._reader(metric, collection, btf, loaded.handles))
            for name, program in collection.programs.items():
                try:
                    loaded.links.append(program.attach())
                except EBPFError as exc:
                    raise ExportError(f"{prog.where}: attaching program {name!r} failed: {exc}") from None
        except BaseException:
            _close_loaded(loaded)
            raise
        return loaded

    @staticmethod
    def _reader(metric: MetricConfig, collection: Any, btf: object | None, handles: list[Map]) -> _MetricReader:
        m = collection.maps.get(metric.map)
        if m is None:
            raise ConfigError(metric.where, f"the object has no map {metric.map!r} "
                              f"(maps: {', '.join(sorted(collection.maps)) or 'none'})")
        info = m.info()
        if metric.labels and info.key_size != metric.key_size:
            raise ConfigError(metric.where, f"the labels describe {metric.key_size} bytes of key, but map "
                              f"{metric.map!r} has key_size {info.key_size}")
        if info.value_size not in (4, 8):
            raise ConfigError(metric.where, f"map {metric.map!r} has value_size {info.value_size}: metrics read "
                              "u32 or u64 values")
        value = codecs.u64 if info.value_size == 8 else codecs.u32
        # our own handle with raw keys and integer values, whatever codecs the loader chose
        handle = Map.from_id(info.id, key_codec=codecs.raw(info.key_size), value_codec=value)
        handles.append(handle)
        return _MetricReader(metric, handle, btf)

    def collect(self) -> list[MetricFamily]:
        """Read every metric now (or from a program's ``interval`` cache)."""
        with self._lock:
            started = time.perf_counter()
            out: list[MetricFamily] = []
            now = time.monotonic()
            for loaded in self.programs:
                if loaded.cached is not None and now - loaded.cached_at < loaded.cfg.interval:
                    out += loaded.cached
                    continue
                fams = [r.family() for r in loaded.readers]
                if loaded.cfg.interval:
                    loaded.cached, loaded.cached_at = fams, now
                out += fams
            self.scrapes += 1
            self.last_scrape_seconds = time.perf_counter() - started
            return out

    def render(self, openmetrics: bool = False) -> str:
        """Every metric in the Prometheus text format (or OpenMetrics)."""
        return render_text(self.collect(), openmetrics)

    def programs_info(self) -> list[dict[str, Any]]:
        """What is loaded: per configured program, its kernel programs with ids and run statistics."""
        out = []
        for loaded in self.programs:
            progs = []
            for name, program in loaded.collection.programs.items():
                info = program.info()
                progs.append({"name": name, "id": info.id, "type": getattr(info.type, "name", str(info.type)).lower(),
                              "run_cnt": info.run_cnt, "run_time_ns": info.run_time_ns})
            out.append({"config": loaded.cfg.name, "programs": progs,
                        "maps": sorted(r.cfg.map for r in loaded.readers),
                        "metrics": [r.cfg.name for r in loaded.readers]})
        return out

    def close(self) -> None:
        """Detach and unload everything (idempotent)."""
        while self.programs:
            _close_loaded(self.programs.pop())
        if self._stats is not None:
            self._stats.close()
            self._stats = None
        if self._workdir:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = ""


def _close_loaded(loaded: _Loaded) -> None:
    for link in reversed(loaded.links):
        link.close()
    for handle in loaded.handles:
        handle.close()
    loaded.collection.close()
    loaded.links.clear()
    loaded.handles.clear()


def _builtin_metrics(prog: ProgramConfig) -> tuple[MetricConfig, ...]:
    if not prog.builtin:
        return ()
    path = BUILTIN_DIR / f"{prog.builtin}.yaml"
    return tuple(m for p in parse_config(path.read_text(), str(path)).programs for m in p.metrics)


def _object_btf(raw: bytes | None) -> object | None:
    if not raw:
        return None
    from ebpf.core import btf

    try:
        return btf.parse(raw, base=btf.load_vmlinux())
    except EBPFError:
        return None
