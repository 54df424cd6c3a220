"""Configuration validation: every fault names the file, the line and the key, before anything loads."""

from __future__ import annotations

from pathlib import Path

import pytest
from ebpf.export import ConfigError, load_config, parse_config

HERE = Path(__file__).resolve().parent
SOURCE = str(HERE / "fixtures" / "counter.bpf.c")

GOOD = f"""\
programs:
  - name: test
    source: {SOURCE}
    interval: 2
    metrics:
      counters:
        - name: exp_test_getppid_total
          help: getppid calls
          labels:
            - name: comm
              size: 16
              decoders:
                - name: string
      histograms:
        - name: latency_seconds
          help: h
          map: lat
          bucket_type: exp2
          bucket_max: 20
          bucket_multiplier: 0.000001
          labels:
            - name: bucket
              size: 4
              decoders: [{{name: uint}}]
"""


def test_a_valid_file_parses_into_plain_data(tmp_path: Path) -> None:
    path = tmp_path / "ok.yaml"
    path.write_text(GOOD)
    cfg = load_config(path)
    (prog,) = cfg.programs
    assert prog.source == SOURCE and prog.interval == 2.0
    counter, hist = prog.metrics
    assert (counter.kind, counter.map, counter.key_size) == ("counter", "exp_test_getppid_total", 16)
    assert (hist.kind, hist.map, hist.bucket_type, hist.bucket_max, hist.bucket_multiplier) == \
        ("histogram", "lat", "exp2", 20, 0.000001)


@pytest.mark.parametrize(("old", "new", "line", "key", "words"), [
    ("name: string", "name: strnig", 13, "labels[0].decoders[0].name", "unknown decoder 'strnig'"),
    ("help: getppid calls", "hlep: getppid calls", 8, "counters[0].hlep", "unknown key 'hlep'"),
    ("bucket_type: exp2", "bucket_type: exp3", 18, "bucket_type", "unknown bucket_type 'exp3'"),
    ("size: 16", "size: 0", 11, "labels[0].size", "expected an integer in [1, 4096]"),
    ("interval: 2", "interval: soon", 4, "programs[0].interval", "expected a number"),
    ("bucket_max: 20", "bucket_max: 0", 19, "bucket_max", "expected an integer in [1"),
    ("size: 4", "size: 3", 23, "labels[0].size", "the uint decoder reads 1, 2, 4 or 8 bytes"),
])
def test_errors_name_file_line_and_key(tmp_path: Path, old: str, new: str, line: int, key: str, words: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(GOOD.replace(old, new, 1))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    msg = str(info.value)
    assert msg.startswith(f"{path}:{line}: "), msg
    assert key in msg and words in msg


def test_missing_source_file_and_duplicate_metric(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"x.yaml:3: programs\[0\].source: no such file"):
        parse_config(GOOD.replace(SOURCE, "/nonexistent/prog.bpf.c"), str(tmp_path / "x.yaml"))
    twice = GOOD + GOOD.split("programs:\n", 1)[1].replace("name: test", "name: other")
    with pytest.raises(ConfigError, match="metric 'exp_test_getppid_total' is defined twice"):
        parse_config(twice, "twice.yaml")


def test_structure_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"e.yaml:1: the file is empty"):
        parse_config("", "e.yaml")
    with pytest.raises(ConfigError, match=r"y.yaml:3: not valid YAML"):
        parse_config("programs:\n  - name: [\n", "y.yaml")
    with pytest.raises(ConfigError, match="exactly one of `source`, `object` or `builtin`"):
        parse_config("programs:\n  - name: a\n", "n.yaml")
    with pytest.raises(ConfigError, match="the regexp decoder needs `regexps"):
        parse_config(GOOD.replace("name: string", "name: regexp"), "r.yaml")
    with pytest.raises(ConfigError, match="bad regular expression"):
        parse_config(GOOD.replace("- name: string", "- {name: regexp, regexps: ['(']}"), "r.yaml")
    with pytest.raises(ConfigError, match="cannot read the configuration"):
        load_config(tmp_path / "missing.yaml")
