"""Section names -> program type, attach type and attach target (libbpf's table), plus plugin prefixes."""

from __future__ import annotations

import pytest
from ebpf.core.errors import ELFError
from ebpf.core.types import AttachType, ProgType
from ebpf.elf.sections import SectionDef, match_section

P, A = ProgType, AttachType


@pytest.mark.parametrize(
    "section, prog_type, attach_type, target",
    [
        ("kprobe/do_sys_openat2", P.KPROBE, None, "kprobe:do_sys_openat2"),
        ("kretprobe/do_sys_openat2", P.KPROBE, None, "kretprobe:do_sys_openat2"),
        ("uprobe//usr/bin/bash:readline", P.KPROBE, None, "uprobe:/usr/bin/bash:readline"),
        ("uretprobe//lib/libc.so.6:malloc", P.KPROBE, None, "uretprobe:/lib/libc.so.6:malloc"),
        ("usdt//usr/bin/python3:python:function__entry", P.KPROBE, None, "usdt:/usr/bin/python3:python:function__entry"),
        ("ksyscall/openat", P.KPROBE, None, "kprobe:__x64_sys_openat"),
        ("tracepoint/syscalls/sys_enter_openat", P.TRACEPOINT, None, "syscalls/sys_enter_openat"),
        ("tp/sched/sched_switch", P.TRACEPOINT, None, "sched/sched_switch"),
        ("raw_tracepoint/sys_enter", P.RAW_TRACEPOINT, None, "sys_enter"),
        ("raw_tp/sched_switch", P.RAW_TRACEPOINT, None, "sched_switch"),
        ("tp_btf/sched_process_exec", P.TRACING, A.TRACE_RAW_TP, None),
        ("fentry/do_unlinkat", P.TRACING, A.TRACE_FENTRY, None),
        ("fexit/do_unlinkat", P.TRACING, A.TRACE_FEXIT, None),
        ("fmod_ret/security_file_open", P.TRACING, A.MODIFY_RETURN, None),
        ("lsm/file_open", P.LSM, A.LSM_MAC, None),
        ("lsm_cgroup/socket_bind", P.LSM, A.LSM_CGROUP, None),
        ("xdp", P.XDP, A.XDP, None),
        ("xdp.frags", P.XDP, A.XDP, None),
        ("xdp/devmap", P.XDP, A.XDP_DEVMAP, None),
        ("tc", P.SCHED_CLS, None, None),
        ("tcx/ingress", P.SCHED_CLS, A.TCX_INGRESS, None),
        ("tcx/egress", P.SCHED_CLS, A.TCX_EGRESS, None),
        ("classifier", P.SCHED_CLS, None, None),
        ("socket", P.SOCKET_FILTER, None, None),
        ("sk_lookup", P.SK_LOOKUP, A.SK_LOOKUP, None),
        ("cgroup/connect4", P.CGROUP_SOCK_ADDR, A.CGROUP_INET4_CONNECT, None),
        ("cgroup/sock_create", P.CGROUP_SOCK, A.CGROUP_INET_SOCK_CREATE, None),
        ("cgroup/dev", P.CGROUP_DEVICE, A.CGROUP_DEVICE, None),
        ("cgroup/sysctl", P.CGROUP_SYSCTL, A.CGROUP_SYSCTL, None),
        ("cgroup/getsockopt", P.CGROUP_SOCKOPT, A.CGROUP_GETSOCKOPT, None),
        ("cgroup_skb/ingress", P.CGROUP_SKB, A.CGROUP_INET_INGRESS, None),
        ("cgroup_skb/egress", P.CGROUP_SKB, A.CGROUP_INET_EGRESS, None),
        ("perf_event", P.PERF_EVENT, None, None),
        ("netfilter", P.NETFILTER, A.NETFILTER, None),
        ("sockops", P.SOCK_OPS, A.CGROUP_SOCK_OPS, None),
        ("sk_msg", P.SK_MSG, A.SK_MSG_VERDICT, None),
        ("iter/task", P.TRACING, A.TRACE_ITER, None),
        ("syscall", P.SYSCALL, None, None),
    ],
)
def test_known_sections(section, prog_type, attach_type, target):
    for extra in ([], None):  # the built-in table alone, and with the installed plugins' prefixes
        m = match_section(section, extra=extra)
        assert m is not None
        assert (m.prog_type, m.attach_type, m.attach_target) == (prog_type, attach_type, target)


def test_btf_sections_set_attach_to_and_sleepable_flag():
    assert match_section("tp_btf/sched_switch", extra=[]).attach_to == "sched_switch"
    m = match_section("fentry.s/do_unlinkat", extra=[])
    assert m is not None and m.attach_to == "do_unlinkat" and m.prog_flags & (1 << 4)
    assert match_section("tracepoint/a/b", extra=[]).attach_to is None  # not BTF-resolved
    with pytest.raises(ELFError, match="need a target"):
        match_section("fentry", extra=[])


def test_unknown_and_prefix_lookalikes():
    assert match_section("bogus", extra=[]) is None
    assert match_section("xdpfoo", extra=[]) is None  # a prefix needs "/" or the exact name
    assert match_section(".text", extra=[]) is None


def test_plugin_prefixes_win():
    extra = [SectionDef("myhook", P.KPROBE, None, 1)]
    m = match_section("myhook/target", extra=extra)
    assert m is not None and m.prog_type == P.KPROBE and m.attach_target == "target"


def test_longer_builtin_prefix_beats_a_shorter_plugin_prefix():
    extra = [SectionDef("xdp", P.XDP, A.XDP, 0), SectionDef("tc", P.SCHED_CLS, None, 0)]
    assert match_section("xdp/devmap", extra=extra).attach_type == A.XDP_DEVMAP
    assert match_section("tc/ingress", extra=extra).attach_type == A.TCX_INGRESS
    assert match_section("xdp", extra=extra).attach_type == A.XDP


def test_prefixes_from_the_section_types_hook():
    from ebpf.core import plugins
    from ebpf.core.plugins import SectionType, hookimpl

    class Plugin:
        @hookimpl
        def ebpf_section_types(self):
            return [SectionType("custom_tp/", "tracepoint")]

    plugin = Plugin()
    plugins.register(plugin, name="test-elf-sections")
    try:
        m = match_section("custom_tp/syscalls/sys_enter_getppid")
        assert m is not None and m.prog_type == P.TRACEPOINT and m.attach_target == "syscalls/sys_enter_getppid"
    finally:
        plugins.unregister(plugin)
