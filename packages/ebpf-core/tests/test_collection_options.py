"""Load-time choices live in CollectionOptions, apart from the spec; what the loader knows travels as spec data."""

from __future__ import annotations

from typing import Any

import pytest
from ebpf.core.collection import CollectionOptions, CollectionSpec
from ebpf.core.errors import EBPFError
from ebpf.core.extension import LoadStep, register_load_step
from ebpf.core.maps import MapSpec
from ebpf.core.programs import ProgramSpec

pytestmark = pytest.mark.privileged

RET0 = b"\xb7\x00\x00\x00\x00\x00\x00\x00\x95\x00\x00\x00\x00\x00\x00\x00"


def _spec() -> CollectionSpec:
    return CollectionSpec(
        maps={"counts": MapSpec("array", 4, 8, 1, name="opt_counts")},
        programs={"filter": ProgramSpec(prog_type="socket_filter", insns=RET0, name="opt_filter")},
        sections={"filter": "socket"},
        attach_targets={"filter": "lo"},
    )


def _seen(name: str) -> dict[str, Any]:
    """A load step (as an object loader registers one) that records the options it was given."""
    seen: dict[str, Any] = {}
    register_load_step(LoadStep(name, prepare=lambda _spec, data, options: data.update(options)))
    return seen


def test_options_object_reaches_the_loader_and_its_load_step() -> None:
    spec = _spec()
    seen = spec.loader_data["tests.options.seen"] = _seen("tests.options.seen")
    opts = CollectionOptions(kernel_btf="/sys/kernel/btf/vmlinux", log_level=2, keep_log=True, extra={"typed": False})
    with spec.load(opts) as coll:
        prog = coll.programs["filter"]
        assert prog.verifier_log  # keep_log + log_level reached the program load
        # what the object loader knew is plain data on the spec, and the program shows it
        assert prog.spec.section == prog.section == "socket"
        assert prog.spec.attach_target == prog.attach_target == "lo"
    assert seen["btf_path"] == "/sys/kernel/btf/vmlinux" and seen["typed"] is False and seen["log_level"] == 2


def test_keywords_still_work_and_override_the_object() -> None:
    spec = _spec()
    seen = spec.loader_data["tests.options.seen"] = _seen("tests.options.seen")
    with spec.load(CollectionOptions(log_level=1), btf_path="/tmp/other-vmlinux", log_level=0) as coll:
        assert coll.programs["filter"].verifier_log == ""
    assert seen["btf_path"] == "/tmp/other-vmlinux" and seen["log_level"] == 0


def test_options_round_trip_and_bad_input() -> None:
    opts = CollectionOptions.from_kwargs(btf_path="/x", constants={"a": 1}, pin_root="/sys/fs/bpf/p", color="red")
    assert opts.kernel_btf == "/x" and opts.constants == {"a": 1} and opts.extra == {"color": "red"}
    assert CollectionOptions.from_kwargs(**opts.as_dict()) == opts
    with pytest.raises(EBPFError, match="takes CollectionOptions"):
        _spec().load({"log_level": 1})  # type: ignore[arg-type]


def test_a_spec_is_plain_data_and_its_load_step_is_found_by_name() -> None:
    spec = _spec()
    spec.loader_data["tests.no.such.module"] = {"x": 1}
    assert spec.copy().loader_data == {"tests.no.such.module": {"x": 1}}
    with pytest.raises(EBPFError, match=r"load step 'tests\.no\.such\.module'"):
        spec.load()  # no package registers it: refused before anything is created
    with pytest.raises(EBPFError, match="takes a LoadStep"):
        register_load_step(lambda spec, data, options: None)  # type: ignore[arg-type]


def test_the_object_loaders_btf_default_yields_to_the_options() -> None:
    spec = _spec()
    spec.require_btf = True
    seen = spec.loader_data["tests.options.seen"] = _seen("tests.options.seen")
    spec.prepare()
    assert seen["require_btf"] is True
    spec.prepare(require_btf=False)
    assert seen["require_btf"] is False
