"""Load-time choices live in CollectionOptions, apart from the spec; what the loader knows travels as spec data."""

from __future__ import annotations

from typing import Any

import pytest
from ebpf.core.collection import CollectionOptions, CollectionSpec
from ebpf.core.errors import EBPFError
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


def test_options_object_reaches_the_loader_and_the_spec_hooks() -> None:
    seen: dict[str, Any] = {}
    spec = _spec()
    spec.hooks.append(lambda _spec, options: seen.update(options))
    opts = CollectionOptions(kernel_btf="/sys/kernel/btf/vmlinux", log_level=2, keep_log=True, extra={"typed": False})
    with spec.load(opts) as coll:
        prog = coll.programs["filter"]
        assert prog.verifier_log  # keep_log + log_level reached the program load
        # what the object loader knew is plain data on the spec, and the program shows it
        assert prog.spec.section == prog.section == "socket"
        assert prog.spec.attach_target == prog.attach_target == "lo"
    assert seen["btf_path"] == "/sys/kernel/btf/vmlinux" and seen["typed"] is False and seen["log_level"] == 2


def test_keywords_still_work_and_override_the_object() -> None:
    seen: dict[str, Any] = {}
    spec = _spec()
    spec.hooks.append(lambda _spec, options: seen.update(options))
    with spec.load(CollectionOptions(log_level=1), btf_path="/tmp/other-vmlinux", log_level=0) as coll:
        assert coll.programs["filter"].verifier_log == ""
    assert seen["btf_path"] == "/tmp/other-vmlinux" and seen["log_level"] == 0


def test_options_round_trip_and_bad_input() -> None:
    opts = CollectionOptions.from_kwargs(btf_path="/x", constants={"a": 1}, pin_root="/sys/fs/bpf/p", color="red")
    assert opts.kernel_btf == "/x" and opts.constants == {"a": 1} and opts.extra == {"color": "red"}
    assert CollectionOptions.from_kwargs(**opts.as_dict()) == opts
    with pytest.raises(EBPFError, match="takes CollectionOptions"):
        _spec().load({"log_level": 1})  # type: ignore[arg-type]
