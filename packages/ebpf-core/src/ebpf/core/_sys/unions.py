"""One ``ctypes`` structure per variant of the kernel's per-type unions, so nothing is packed by hand.

- the 48-byte tail of ``union bpf_attr``'s ``link_create`` (:class:`LinkCreateTail`): iterators,
  perf_event cookies, kprobe_multi, tracing, netfilter, tcx/netkit/cgroup (``relative_fd`` +
  ``expected_revision``), uprobe_multi;
- the 48-byte tail of ``struct bpf_link_info`` (:class:`LinkInfoTail`): one variant per link type.

Field names follow the kernel's, members of the unions too (``attr.kprobe_multi.cnt``,
``info.perf_event.kprobe.func_name``); where the kernel's member is anonymous, so is ours.  The
layout test (``tests/test_sys_layout.py``) checks every field, nested ones included, against the
running kernel's BTF.
"""

from __future__ import annotations

import ctypes
from ctypes import c_int32, c_uint32, c_uint64

__all__ = [
    "LinkCreateIter",
    "LinkCreatePerfEvent",
    "LinkCreateKprobeMulti",
    "LinkCreateTracing",
    "LinkCreateNetfilter",
    "LinkCreateRelative",
    "LinkCreateUprobeMulti",
    "LinkCreateTail",
    "LinkInfoRawTracepoint",
    "LinkInfoTracing",
    "LinkInfoCgroup",
    "LinkInfoIter",
    "LinkInfoNetns",
    "LinkInfoXdp",
    "LinkInfoStructOps",
    "LinkInfoNetfilter",
    "LinkInfoKprobeMulti",
    "LinkInfoUprobeMulti",
    "LinkInfoPerfEvent",
    "LinkInfoDevice",
    "LinkInfoSockmap",
    "LinkInfoTail",
    "UNION_VARIANTS",
]


_S = ctypes.Structure
_U = ctypes.Union


# --- BPF_LINK_CREATE ------------------------------------------------------------------------------


class LinkCreateIter(_S):
    """BPF_LINK_CREATE of an iterator: ``union bpf_iter_link_info`` (anonymous in the kernel)."""

    _fields_ = [("iter_info", c_uint64), ("iter_info_len", c_uint32), ("_pad0", c_uint32)]


class LinkCreatePerfEvent(_S):
    """BPF_LINK_CREATE ``perf_event``: the cookie of a perf_event link."""

    _fields_ = [("bpf_cookie", c_uint64)]


class LinkCreateKprobeMulti(_S):
    """BPF_LINK_CREATE ``kprobe_multi``: ``cnt`` symbols (``syms``) or addresses, optional cookies."""

    _fields_ = [("flags", c_uint32), ("cnt", c_uint32), ("syms", c_uint64), ("addrs", c_uint64),
                ("cookies", c_uint64)]


class LinkCreateTracing(_S):
    """BPF_LINK_CREATE ``tracing``: fentry/fexit/lsm target and cookie."""

    _fields_ = [("target_btf_id", c_uint32), ("_pad0", c_uint32), ("cookie", c_uint64)]


class LinkCreateNetfilter(_S):
    """BPF_LINK_CREATE ``netfilter``: protocol family, hook, priority, flags."""

    _fields_ = [("pf", c_uint32), ("hooknum", c_uint32), ("priority", c_int32), ("flags", c_uint32)]


class _Relative(_U):
    _fields_ = [("relative_fd", c_uint32), ("relative_id", c_uint32)]


class LinkCreateRelative(_S):
    """BPF_LINK_CREATE ``tcx``, ``netkit`` and ``cgroup`` (one shape): where in the chain, at which revision."""

    _anonymous_ = ("_rel",)
    _fields_ = [("_rel", _Relative), ("_pad0", c_uint32), ("expected_revision", c_uint64)]


class LinkCreateUprobeMulti(_S):
    """BPF_LINK_CREATE ``uprobe_multi``: ``cnt`` offsets in the file at ``path``, optional pid."""

    _fields_ = [("path", c_uint64), ("offsets", c_uint64), ("ref_ctr_offsets", c_uint64), ("cookies", c_uint64),
                ("cnt", c_uint32), ("flags", c_uint32), ("pid", c_uint32), ("_pad0", c_uint32)]


class LinkCreateTail(_U):
    """The 48-byte union after ``flags`` in BPF_LINK_CREATE; ``extra`` (six u64 words) is our alias for all of it."""

    _anonymous_ = ("_iter",)
    _fields_ = [
        ("target_btf_id", c_uint32),
        ("_iter", LinkCreateIter),
        ("perf_event", LinkCreatePerfEvent),
        ("kprobe_multi", LinkCreateKprobeMulti),
        ("tracing", LinkCreateTracing),
        ("netfilter", LinkCreateNetfilter),
        ("tcx", LinkCreateRelative),
        ("uprobe_multi", LinkCreateUprobeMulti),
        ("netkit", LinkCreateRelative),
        ("cgroup", LinkCreateRelative),
        ("extra", c_uint64 * 6),
    ]


# --- struct bpf_link_info -------------------------------------------------------------------------


class LinkInfoRawTracepoint(_S):
    """``bpf_link_info.raw_tracepoint``."""

    _fields_ = [("tp_name", c_uint64), ("tp_name_len", c_uint32), ("_pad0", c_uint32), ("cookie", c_uint64)]


class LinkInfoTracing(_S):
    """``bpf_link_info.tracing``."""

    _fields_ = [("attach_type", c_uint32), ("target_obj_id", c_uint32), ("target_btf_id", c_uint32),
                ("_pad0", c_uint32), ("cookie", c_uint64)]


class LinkInfoCgroup(_S):
    """``bpf_link_info.cgroup``."""

    _fields_ = [("cgroup_id", c_uint64), ("attach_type", c_uint32), ("_pad0", c_uint32)]


class _IterMap(_S):
    _fields_ = [("map_id", c_uint32)]


class _IterMapUnion(_U):
    _fields_ = [("map", _IterMap)]


class _IterCgroup(_S):
    _fields_ = [("cgroup_id", c_uint64), ("order", c_uint32), ("_pad0", c_uint32)]


class _IterTask(_S):
    _fields_ = [("tid", c_uint32), ("pid", c_uint32)]


class _IterTarget(_U):
    _fields_ = [("cgroup", _IterCgroup), ("task", _IterTask)]


class LinkInfoIter(_S):
    """``bpf_link_info.iter``: the target's name, and the map, cgroup or task it iterates."""

    _anonymous_ = ("_map", "_target")
    _fields_ = [("target_name", c_uint64), ("target_name_len", c_uint32), ("_map", _IterMapUnion),
                ("_target", _IterTarget)]


class LinkInfoNetns(_S):
    """``bpf_link_info.netns``."""

    _fields_ = [("netns_ino", c_uint32), ("attach_type", c_uint32)]


class LinkInfoXdp(_S):
    """``bpf_link_info.xdp``."""

    _fields_ = [("ifindex", c_uint32)]


class LinkInfoStructOps(_S):
    """``bpf_link_info.struct_ops``."""

    _fields_ = [("map_id", c_uint32)]


class LinkInfoNetfilter(_S):
    """``bpf_link_info.netfilter``."""

    _fields_ = [("pf", c_uint32), ("hooknum", c_uint32), ("priority", c_int32), ("flags", c_uint32)]


class LinkInfoKprobeMulti(_S):
    """``bpf_link_info.kprobe_multi``."""

    _fields_ = [("addrs", c_uint64), ("count", c_uint32), ("flags", c_uint32), ("missed", c_uint64),
                ("cookies", c_uint64)]


class LinkInfoUprobeMulti(_S):
    """``bpf_link_info.uprobe_multi``."""

    _fields_ = [("path", c_uint64), ("offsets", c_uint64), ("ref_ctr_offsets", c_uint64), ("cookies", c_uint64),
                ("path_size", c_uint32), ("count", c_uint32), ("flags", c_uint32), ("pid", c_uint32)]


class _PerfUprobe(_S):
    _fields_ = [("file_name", c_uint64), ("name_len", c_uint32), ("offset", c_uint32), ("cookie", c_uint64),
                ("ref_ctr_offset", c_uint64)]


class _PerfKprobe(_S):
    _fields_ = [("func_name", c_uint64), ("name_len", c_uint32), ("offset", c_uint32), ("addr", c_uint64),
                ("missed", c_uint64), ("cookie", c_uint64)]


class _PerfTracepoint(_S):
    _fields_ = [("tp_name", c_uint64), ("name_len", c_uint32), ("_pad0", c_uint32), ("cookie", c_uint64)]


class _PerfEvent(_S):
    _fields_ = [("config", c_uint64), ("type", c_uint32), ("_pad0", c_uint32), ("cookie", c_uint64)]


class _PerfTarget(_U):
    _fields_ = [("uprobe", _PerfUprobe), ("kprobe", _PerfKprobe), ("tracepoint", _PerfTracepoint),
                ("event", _PerfEvent)]


class LinkInfoPerfEvent(_S):
    """``bpf_link_info.perf_event``: ``type`` (``enum bpf_perf_event_type``) says which member is set."""

    _anonymous_ = ("_target",)
    _fields_ = [("type", c_uint32), ("_pad0", c_uint32), ("_target", _PerfTarget)]


class LinkInfoDevice(_S):
    """``bpf_link_info.tcx`` and ``.netkit`` (one shape)."""

    _fields_ = [("ifindex", c_uint32), ("attach_type", c_uint32)]


class LinkInfoSockmap(_S):
    """``bpf_link_info.sockmap``."""

    _fields_ = [("map_id", c_uint32), ("attach_type", c_uint32)]


class LinkInfoTail(_U):
    """The 48-byte per-type union of ``struct bpf_link_info``; ``extra`` (six u64 words) is our alias for all of it."""

    _fields_ = [
        ("raw_tracepoint", LinkInfoRawTracepoint),
        ("tracing", LinkInfoTracing),
        ("cgroup", LinkInfoCgroup),
        ("iter", LinkInfoIter),
        ("netns", LinkInfoNetns),
        ("xdp", LinkInfoXdp),
        ("struct_ops", LinkInfoStructOps),
        ("netfilter", LinkInfoNetfilter),
        ("kprobe_multi", LinkInfoKprobeMulti),
        ("uprobe_multi", LinkInfoUprobeMulti),
        ("perf_event", LinkInfoPerfEvent),
        ("tcx", LinkInfoDevice),
        ("netkit", LinkInfoDevice),
        ("sockmap", LinkInfoSockmap),
        ("extra", c_uint64 * 6),
    ]


#: For the layout test: each named variant -> (kernel type, dotted path of the member it models).
UNION_VARIANTS: dict[type[ctypes.Structure], tuple[str, str]] = {
    LinkCreatePerfEvent: ("union bpf_attr", "link_create.perf_event"),
    LinkCreateKprobeMulti: ("union bpf_attr", "link_create.kprobe_multi"),
    LinkCreateTracing: ("union bpf_attr", "link_create.tracing"),
    LinkCreateNetfilter: ("union bpf_attr", "link_create.netfilter"),
    LinkCreateRelative: ("union bpf_attr", "link_create.tcx"),
    LinkCreateUprobeMulti: ("union bpf_attr", "link_create.uprobe_multi"),
    LinkInfoRawTracepoint: ("struct bpf_link_info", "raw_tracepoint"),
    LinkInfoTracing: ("struct bpf_link_info", "tracing"),
    LinkInfoCgroup: ("struct bpf_link_info", "cgroup"),
    LinkInfoIter: ("struct bpf_link_info", "iter"),
    LinkInfoNetns: ("struct bpf_link_info", "netns"),
    LinkInfoXdp: ("struct bpf_link_info", "xdp"),
    LinkInfoStructOps: ("struct bpf_link_info", "struct_ops"),
    LinkInfoNetfilter: ("struct bpf_link_info", "netfilter"),
    LinkInfoKprobeMulti: ("struct bpf_link_info", "kprobe_multi"),
    LinkInfoUprobeMulti: ("struct bpf_link_info", "uprobe_multi"),
    LinkInfoPerfEvent: ("struct bpf_link_info", "perf_event"),
    LinkInfoDevice: ("struct bpf_link_info", "tcx"),
    LinkInfoSockmap: ("struct bpf_link_info", "sockmap"),
}
