"""Feature probes: real probes on this kernel, and the old-kernel answers through a mocked syscall."""

from __future__ import annotations

import errno
import gc
import weakref
from collections.abc import Iterator

import pytest
from ebpf.core import _probing, features, testing
from ebpf.core._sys.attrs import MapCreateAttr
from ebpf.core.errors import (
    ENOTSUPP,
    BPFSyscallError,
    EBPFError,
    ProbeInconclusiveError,
    UnsupportedFeatureError,
    errno_name,
)
from ebpf.core.programs import Program, load_program
from ebpf.core.system import kernel_version
from ebpf.core.types import AttachType, LinkType, MapType, ProgType

pytestmark = pytest.mark.privileged


@pytest.fixture(autouse=True)
def fresh_cache() -> Iterator[None]:
    features.clear_cache()
    yield
    features.clear_cache()


def _answers_clearly(exc: UnsupportedFeatureError | None, feature: str, min_kernel: str) -> None:
    """A probe's answer is None, or names the feature, its first kernel and why (old, or refused by this build)."""
    if exc is None:
        return
    assert exc.feature == feature and exc.min_kernel == min_kernel
    if kernel_version()[:2] >= tuple(int(x) for x in min_kernel.split(".")):
        assert f"in Linux since {min_kernel}, but" in str(exc)
    else:
        assert f"requires Linux >= {min_kernel}" in str(exc)


def _outcome(probe: object, *args: object) -> UnsupportedFeatureError | None:
    try:
        probe(*args)  # type: ignore[operator]
    except UnsupportedFeatureError as exc:
        return exc
    return None


@pytest.mark.parametrize("map_type", ["hash", "array", "lpm_trie", "array_of_maps", "ringbuf", "bloom_filter",
                                      "user_ringbuf", "cgrp_storage", "task_storage", "queue", "arena"])
def test_map_types_of_this_kernel(map_type: str) -> None:
    # Never "the version is new enough, so it must work": builds refuse types (arena: EPERM on some 6.18s).
    exc = _outcome(features.have_map_type, map_type)
    _answers_clearly(exc, f"map type {map_type}", features.MAP_TYPE_VERSIONS[MapType.parse(map_type)])
    testing.require(features.have_map_type, map_type)


def test_hash_maps_are_everywhere() -> None:
    assert features.have_map_type("hash") is None


@pytest.mark.parametrize("prog_type", ["socket_filter", "xdp", "sched_cls", "kprobe", "tracepoint",
                                       "raw_tracepoint", "cgroup_skb", "cgroup_sock_addr", "sk_lookup",
                                       "tracing", "syscall", "netfilter", "struct_ops"])
def test_prog_types_of_this_kernel(prog_type: str) -> None:
    exc = _outcome(features.have_prog_type, prog_type)
    _answers_clearly(exc, f"program type {prog_type}", features.PROG_TYPE_VERSIONS[ProgType.parse(prog_type)])
    testing.require(features.have_prog_type, prog_type)


@pytest.mark.parametrize("link_type", ["raw_tracepoint", "cgroup", "netns", "xdp", "perf_event", "iter", "tcx",
                                       "uprobe_multi", "netfilter", "sockmap", "struct_ops"])
def test_link_types_of_this_kernel(link_type: str) -> None:
    exc = _outcome(features.have_link_type, link_type)
    _answers_clearly(exc, f"link type {link_type}", features.LINK_TYPE_VERSIONS[LinkType.parse(link_type)])
    testing.require(features.have_link_type, link_type)


@pytest.mark.parametrize("link_type", ["kprobe_multi", "netkit", "tracing"])
def test_config_dependent_link_types_answer_clearly(link_type: str) -> None:
    exc = _outcome(features.have_link_type, link_type)
    if exc is not None:  # kprobe_multi needs fprobe, netkit CONFIG_NETKIT, tracing fentry
        assert exc.min_kernel in (features.LINK_TYPE_VERSIONS[LinkType.parse(link_type)], "5.5")
        # A build/config gap on a kernel newer than the feature, or a kernel older than it.
        assert f"Linux since {exc.min_kernel}" in str(exc) or f"requires Linux >= {exc.min_kernel}" in str(exc)


@pytest.mark.parametrize("attach_type", ["cgroup_inet4_connect", "cgroup_getsockopt", "sk_lookup", "xdp",
                                         "tcx_ingress", "perf_event", "trace_raw_tp", "cgroup_unix_connect"])
def test_attach_types_of_this_kernel(attach_type: str) -> None:
    exc = _outcome(features.have_attach_type, attach_type)
    if exc is not None:  # the attach type itself, or what it rests on (its program or link type)
        assert (exc.min_kernel and f"Linux since {exc.min_kernel}" in str(exc)) or "requires Linux" in str(exc)
    testing.require(features.have_attach_type, attach_type)


def test_attach_type_with_program_type() -> None:
    assert features.have_attach_type("cgroup_sock_addr", "cgroup_inet6_bind") is None
    with pytest.raises(UnsupportedFeatureError, match="attach type cgroup_inet6_bind for cgroup_sockopt"):
        features.have_attach_type("cgroup_sockopt", "cgroup_inet6_bind")


def test_helpers() -> None:
    assert features.have_helper("xdp", "map_lookup_elem") is None
    assert features.have_helper(ProgType.KPROBE, "get_current_pid_tgid") is None
    assert features.have_helper("tracepoint", "ringbuf_output") is None
    # The verifier's wording: "cannot use helper ..." (>= 6.4), "unknown func ..." before.
    with pytest.raises(UnsupportedFeatureError, match=r"(cannot use helper|unknown func) bpf_skb_store_bytes"):
        features.have_helper("xdp", "skb_store_bytes")
    with pytest.raises(UnsupportedFeatureError, match="helper xdp_adjust_head in socket_filter programs"):
        features.have_helper("socket_filter", "xdp_adjust_head")


def test_batch_ops() -> None:
    assert features.have_batch_ops() is None


def test_kprobes_probe_matches_the_machine() -> None:
    import os

    exc = _outcome(features.have_kprobes)
    assert (exc is None) == os.path.exists("/sys/bus/event_source/devices/kprobe") or exc is None
    if exc is not None:
        assert exc.feature == "kprobes" and "CONFIG_KPROBES" in str(exc)


def _loads(**fields: object) -> int:
    """0 when the program loads, else the errno."""
    try:
        prog = load_program(insns=features.RET0, **fields)  # type: ignore[arg-type]
    except BPFSyscallError as exc:
        return exc.errno
    prog.close()
    return 0


def test_fentry_probe_agrees_with_a_real_load() -> None:
    err = _loads(prog_type="tracing", expected_attach_type="trace_fentry", attach_to="bpf_fentry_test1")
    exc = _outcome(features.have_fentry)
    assert (exc is None) == (err == 0)
    if exc is not None:  # here: EPERM under kernel lockdown
        assert exc.min_kernel == "5.5"
        assert errno.errorcode.get(err, "ENOTSUPP") in str(exc)
        assert "fentry programs cannot be loaded" in str(exc)
        # everything that needs fentry says so too
        assert _outcome(features.have_link_type, "tracing") is not None
        assert _outcome(features.have_attach_type, "trace_fexit") is not None


def test_lsm_probe_agrees_with_a_real_load() -> None:
    err = _loads(prog_type="lsm", attach_to="file_mprotect")
    exc = _outcome(features.have_lsm)
    if err:
        assert exc is not None and exc.min_kernel == "5.7"
        assert errno.errorcode[err] in str(exc) and "lsm programs cannot be loaded" in str(exc)
        assert _outcome(features.have_prog_type, "lsm") is not None


# --- what an older kernel would answer (the syscall is mocked: this kernel cannot show it) -------


def _einval(*args: object, **kwargs: object) -> int:
    raise BPFSyscallError(errno.EINVAL, "BPF_MOCKED")


def test_unknown_map_type_names_the_kernel_version(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(features.commands, "map_create", _einval)
    with pytest.raises(UnsupportedFeatureError) as exc:
        features.have_map_type("ringbuf")
    assert exc.value.feature == "map type ringbuf" and exc.value.min_kernel == "5.8"
    assert "Linux since 5.8" in str(exc.value) or "requires Linux >= 5.8" in str(exc.value)


def test_unknown_prog_type_names_the_kernel_version(monkeypatch: pytest.MonkeyPatch) -> None:
    import ebpf.core.programs as programs

    monkeypatch.setattr(programs, "bpf", _einval)
    with pytest.raises(UnsupportedFeatureError) as exc:
        features.have_prog_type("netfilter")
    assert exc.value.min_kernel == "6.4" and "netfilter" in exc.value.feature


def test_unknown_link_type_names_the_kernel_version(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(features.commands, "link_create", _einval)
    with pytest.raises(UnsupportedFeatureError) as exc:
        features.have_link_type("tcx")
    assert exc.value.min_kernel == "6.6"


def _eperm(*args: object) -> int:
    raise BPFSyscallError(errno.EPERM, "BPF_MAP_CREATE")


@pytest.mark.parametrize("err", [errno.EPERM, errno.EINVAL, errno.E2BIG, ENOTSUPP])
def test_refusal_of_a_fully_privileged_caller_is_unsupported(monkeypatch: pytest.MonkeyPatch, err: int) -> None:
    # What a 6.18 build that refuses arena maps answers root with every capability.
    def refuse(*args: object) -> int:
        raise BPFSyscallError(err, "BPF_MAP_CREATE")

    monkeypatch.setattr(features.commands, "map_create", refuse)
    monkeypatch.setattr(_probing, "fully_privileged", lambda: True)
    with pytest.raises(UnsupportedFeatureError) as exc:
        features.have_map_type("arena")
    name = errno_name(err)
    assert exc.value.feature == "map type arena" and exc.value.refused == name
    if kernel_version()[:2] >= (6, 9):  # the message's wording, not whether arena works here
        assert exc.value.reason == f"in Linux since 6.9, but refused by this kernel's build or configuration: {name}"
    else:
        assert "requires Linux >= 6.9" in exc.value.reason


def test_probe_without_privileges_could_not_tell(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(features.commands, "map_create", _eperm)
    monkeypatch.setattr(_probing, "fully_privileged", lambda: False)
    with pytest.raises(ProbeInconclusiveError, match="could not tell whether map type hash is supported") as exc:
        features.have_map_type("hash")
    assert isinstance(exc.value, EBPFError) and not isinstance(exc.value, UnsupportedFeatureError)
    assert exc.value.errno == errno.EPERM and "run as root" in str(exc.value)
    # not cached: with privileges the same probe answers
    monkeypatch.undo()
    assert features.have_map_type("hash") is None


def test_struct_ops_links_are_probed_not_read_from_the_version(monkeypatch: pytest.MonkeyPatch) -> None:
    # A BPF_F_LINK struct_ops map: EINVAL where the kernel lacks struct_ops links, ENOTSUPP (no such
    # value type) where it has them; without privileges it cannot tell, whatever the kernel's version.
    monkeypatch.setattr(features.commands, "map_create", _eperm)
    monkeypatch.setattr(_probing, "fully_privileged", lambda: False)
    for probe, what in ((features.have_link_type, "link type struct_ops"),
                        (features.have_attach_type, "attach type struct_ops")):
        with pytest.raises(ProbeInconclusiveError, match=f"could not tell whether {what}"):
            probe("struct_ops")
    monkeypatch.undo()

    def einval(attr: MapCreateAttr) -> int:
        assert attr.map_flags & (1 << 13)  # BPF_F_LINK
        raise BPFSyscallError(errno.EINVAL, "BPF_MAP_CREATE")

    monkeypatch.setattr(features.commands, "map_create", einval)
    with pytest.raises(UnsupportedFeatureError, match=r"link type struct_ops .*EINVAL"):
        features.have_link_type("struct_ops")


def test_kfunc_probes_ask_the_kernels_btf() -> None:
    from ebpf.core.btf import load_vmlinux

    with pytest.raises(UnsupportedFeatureError, match=r"kfunc bpf_no_such_kfunc_x is not supported .*kernel's BTF"):
        features.have_kfunc("bpf_no_such_kfunc_x")
    for name in ("bpf_rcu_read_lock", "bpf_iter_num_new", "bpf_task_from_pid"):
        assert (_outcome(features.have_kfunc, name) is None) == bool(load_vmlinux().find_all(name, "func"))
    exc = _outcome(features.have_kfunc_tags)
    _answers_clearly(exc, "kfunc decl tags in the kernel's BTF", "6.9")
    assert (exc is None) == bool(load_vmlinux().find_all("bpf_kfunc", "decl_tag"))


def test_perf_event_link_info_probe() -> None:
    # A kernel answers it for itself (6.1 leaves the info empty): a clear answer either way, no fd left behind.
    before = testing.open_fds()
    exc = _outcome(features.have_perf_event_link_info)
    _answers_clearly(exc, "perf_event link info", "6.6")
    assert testing.open_fds() == before


def test_probe_that_cannot_tell_raises_something_else(monkeypatch: pytest.MonkeyPatch) -> None:
    def enomem(*args: object) -> int:
        raise BPFSyscallError(errno.ENOMEM, "BPF_MAP_CREATE")

    monkeypatch.setattr(features.commands, "map_create", enomem)
    with pytest.raises(BPFSyscallError) as exc:
        features.have_map_type("hash")
    assert not isinstance(exc.value, UnsupportedFeatureError)


def test_outcomes_are_cached(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = features.commands.map_create

    def counting(attr: object) -> int:
        calls.append(1)
        return real(attr)  # type: ignore[arg-type]

    monkeypatch.setattr(features.commands, "map_create", counting)
    features.have_map_type("hash")
    features.have_map_type("hash")
    assert len(calls) == 1
    monkeypatch.setattr(features.commands, "map_create", _einval)
    features.have_map_type("hash")  # still the cached answer
    with pytest.raises(UnsupportedFeatureError) as first:
        features.have_map_type("bloom_filter")
    with pytest.raises(UnsupportedFeatureError) as second:
        features.have_map_type("bloom_filter")
    # a fresh exception each call (the cached one would collect every caller's traceback), same words
    assert first.value is not second.value and str(first.value) == str(second.value)
    assert second.value.feature == "map type bloom_filter" and second.value.min_kernel == "5.16"


def test_failed_calls_through_a_cached_negative_probe_keep_nothing_alive() -> None:
    """20 failed attach-style calls must not keep their programs alive through the cached exception."""

    @features.feature_test
    def have_warp_drive() -> None:
        raise UnsupportedFeatureError("warp drive", "99.1")

    def attach_warp(prog: Program) -> None:
        have_warp_drive()

    alive = []
    for _ in range(20):
        prog = load_program(prog_type="socket_filter", insns=features.RET0)
        alive.append(weakref.ref(prog))
        with pytest.raises(UnsupportedFeatureError) as exc:
            attach_warp(prog)
        prog.close()
        del prog, exc
    gc.collect()
    assert [ref for ref in alive if ref() is not None] == []


def test_feature_test_caches_both_answers_per_arguments() -> None:
    calls: list[str] = []

    @features.feature_test
    def have_thing(name: str) -> None:
        calls.append(name)
        if name == "missing":
            raise UnsupportedFeatureError(f"thing {name}")

    for _ in range(3):
        assert have_thing("there") is None
        with pytest.raises(UnsupportedFeatureError, match="thing missing"):
            have_thing("missing")
    assert calls == ["there", "missing"]
    assert have_thing.__name__ == "have_thing"


def test_bad_input() -> None:
    with pytest.raises(EBPFError, match="unknown MapType"):
        features.have_map_type("no_such_map")
    with pytest.raises(EBPFError, match="unknown ProgType"):
        features.have_prog_type("nope")
    with pytest.raises(EBPFError, match="unknown Helper"):
        features.have_helper("xdp", "no_such_helper")
    with pytest.raises(EBPFError, match="cannot be probed"):
        features.have_link_type("unspec")
    with pytest.raises(EBPFError, match="unknown AttachType"):
        features.have_attach_type("nope")
    assert AttachType.XDP in features.ATTACH_TYPE_VERSIONS


def test_feature_table_pairs_each_type_with_its_first_kernel_and_its_probe() -> None:
    rows = features.feature_table()
    assert {row.kind for row in rows} == {"map type", "program type", "link type", "attach type"}
    by_member = {(row.kind, row.member): row for row in rows}
    assert by_member[("map type", MapType.ARENA)].min_kernel == "6.9"
    assert by_member[("link type", LinkType.TCX)].min_kernel == "6.6"
    assert all(row.min_kernel for row in rows)
    assert by_member[("map type", MapType.HASH)].probe() is None
    # the row's probe is the feature's probe: the same cached answer either way
    arena = _outcome(by_member[("map type", MapType.ARENA)].probe)
    assert (arena is None) == (_outcome(features.have_map_type, "arena") is None)


@pytest.mark.parametrize(("name", "version"), [("cpu_v4", "6.6"), ("may_goto", "6.9"), ("load_acquire", "6.15")])
def test_instruction_set_probes_answer_clearly(name: str, version: str) -> None:
    exc = _outcome(features.have_instructions, name)
    _answers_clearly(exc, f"{name.replace('_', ' ')} instructions", version)


def test_instruction_probe_reads_a_refusal_as_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    import ebpf.core.programs as programs

    monkeypatch.setattr(programs, "bpf", _einval)  # what a kernel without the opcodes answers
    with pytest.raises(UnsupportedFeatureError, match="may goto instructions") as exc:
        features.have_instructions("may_goto")
    assert exc.value.min_kernel == "6.9"
    with pytest.raises(EBPFError, match="unknown instruction set"):
        features.have_instructions("cpu_v9")
