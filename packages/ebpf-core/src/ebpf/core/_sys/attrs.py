"""``union bpf_attr`` as one ``ctypes.Structure`` per command, and the ``bpf_*_info`` structs.

Fields are in kernel order with fixed-width types only; pointers are ``c_uint64``
addresses; padding is explicit.  ``tests/test_sys_layout.py`` checks every size and
offset here against the running kernel's BTF, so a layout slip cannot hide.
"""

from __future__ import annotations

import ctypes
from ctypes import c_char, c_int32, c_uint8, c_uint32, c_uint64

from ebpf.core._sys.unions import UNION_VARIANTS, LinkCreateTail, LinkInfoTail

_S = ctypes.Structure

# Name of the anonymous struct inside ``union bpf_attr`` each class mirrors, for the
# layout test ("<first field>" identifies it), and the kernel struct for info types.
__all__ = [
    "MapCreateAttr",
    "MapElemAttr",
    "MapBatchAttr",
    "ProgLoadAttr",
    "ObjPinAttr",
    "ProgAttachAttr",
    "TestRunAttr",
    "GetIdAttr",
    "InfoAttr",
    "ProgQueryAttr",
    "RawTracepointAttr",
    "BtfLoadAttr",
    "TaskFdQueryAttr",
    "LinkCreateAttr",
    "LinkUpdateAttr",
    "LinkDetachAttr",
    "EnableStatsAttr",
    "IterCreateAttr",
    "ProgBindMapAttr",
    "ProgInfo",
    "MapInfo",
    "LinkInfo",
    "BtfInfo",
    "LAYOUTS",
]


class MapCreateAttr(_S):
    """BPF_MAP_CREATE."""

    _fields_ = [
        ("map_type", c_uint32),
        ("key_size", c_uint32),
        ("value_size", c_uint32),
        ("max_entries", c_uint32),
        ("map_flags", c_uint32),
        ("inner_map_fd", c_uint32),
        ("numa_node", c_uint32),
        ("map_name", c_char * 16),
        ("map_ifindex", c_uint32),
        ("btf_fd", c_uint32),
        ("btf_key_type_id", c_uint32),
        ("btf_value_type_id", c_uint32),
        ("btf_vmlinux_value_type_id", c_uint32),
        ("map_extra", c_uint64),
        ("value_type_btf_obj_fd", c_int32),
        ("map_token_fd", c_int32),
        ("excl_prog_hash", c_uint64),
        ("excl_prog_hash_size", c_uint32),
        ("_pad0", c_uint32),
    ]


class MapElemAttr(_S):
    """BPF_MAP_LOOKUP_ELEM, UPDATE_ELEM, DELETE_ELEM, GET_NEXT_KEY, LOOKUP_AND_DELETE_ELEM, FREEZE.

    ``value`` doubles as ``next_key`` (a union in the kernel).
    """

    _fields_ = [
        ("map_fd", c_uint32),
        ("_pad0", c_uint32),
        ("key", c_uint64),
        ("value", c_uint64),
        ("flags", c_uint64),
    ]


class MapBatchAttr(_S):
    """BPF_MAP_*_BATCH."""

    _fields_ = [
        ("in_batch", c_uint64),
        ("out_batch", c_uint64),
        ("keys", c_uint64),
        ("values", c_uint64),
        ("count", c_uint32),
        ("map_fd", c_uint32),
        ("elem_flags", c_uint64),
        ("flags", c_uint64),
    ]


class ProgLoadAttr(_S):
    """BPF_PROG_LOAD."""

    _fields_ = [
        ("prog_type", c_uint32),
        ("insn_cnt", c_uint32),
        ("insns", c_uint64),
        ("license", c_uint64),
        ("log_level", c_uint32),
        ("log_size", c_uint32),
        ("log_buf", c_uint64),
        ("kern_version", c_uint32),
        ("prog_flags", c_uint32),
        ("prog_name", c_char * 16),
        ("prog_ifindex", c_uint32),
        ("expected_attach_type", c_uint32),
        ("prog_btf_fd", c_uint32),
        ("func_info_rec_size", c_uint32),
        ("func_info", c_uint64),
        ("func_info_cnt", c_uint32),
        ("line_info_rec_size", c_uint32),
        ("line_info", c_uint64),
        ("line_info_cnt", c_uint32),
        ("attach_btf_id", c_uint32),
        ("attach_prog_fd", c_uint32),  # union with attach_btf_obj_fd
        ("core_relo_cnt", c_uint32),
        ("fd_array", c_uint64),
        ("core_relos", c_uint64),
        ("core_relo_rec_size", c_uint32),
        ("log_true_size", c_uint32),
        ("prog_token_fd", c_int32),
        ("fd_array_cnt", c_uint32),
        ("signature", c_uint64),
        ("signature_size", c_uint32),
        ("keyring_id", c_int32),
    ]


class ObjPinAttr(_S):
    """BPF_OBJ_PIN and BPF_OBJ_GET."""

    _fields_ = [
        ("pathname", c_uint64),
        ("bpf_fd", c_uint32),
        ("file_flags", c_uint32),
        ("path_fd", c_int32),
        ("_pad0", c_uint32),
    ]


class ProgAttachAttr(_S):
    """BPF_PROG_ATTACH and BPF_PROG_DETACH."""

    _fields_ = [
        ("target_fd", c_uint32),  # union with target_ifindex
        ("attach_bpf_fd", c_uint32),
        ("attach_type", c_uint32),
        ("attach_flags", c_uint32),
        ("replace_bpf_fd", c_uint32),
        ("relative_fd", c_uint32),  # union with relative_id
        ("expected_revision", c_uint64),
    ]


class TestRunAttr(_S):
    """BPF_PROG_TEST_RUN."""

    __test__ = False  # not a pytest class
    _fields_ = [
        ("prog_fd", c_uint32),
        ("retval", c_uint32),
        ("data_size_in", c_uint32),
        ("data_size_out", c_uint32),
        ("data_in", c_uint64),
        ("data_out", c_uint64),
        ("repeat", c_uint32),
        ("duration", c_uint32),
        ("ctx_size_in", c_uint32),
        ("ctx_size_out", c_uint32),
        ("ctx_in", c_uint64),
        ("ctx_out", c_uint64),
        ("flags", c_uint32),
        ("cpu", c_uint32),
        ("batch_size", c_uint32),
        ("_pad0", c_uint32),
    ]


class GetIdAttr(_S):
    """BPF_*_GET_NEXT_ID and BPF_*_GET_FD_BY_ID."""

    _fields_ = [
        ("start_id", c_uint32),  # union with prog_id, map_id, btf_id, link_id
        ("next_id", c_uint32),
        ("open_flags", c_uint32),
        ("fd_by_id_token_fd", c_int32),
    ]


class InfoAttr(_S):
    """BPF_OBJ_GET_INFO_BY_FD."""

    _fields_ = [
        ("bpf_fd", c_uint32),
        ("info_len", c_uint32),
        ("info", c_uint64),
    ]


class ProgQueryAttr(_S):
    """BPF_PROG_QUERY."""

    _fields_ = [
        ("target_fd", c_uint32),  # union with target_ifindex
        ("attach_type", c_uint32),
        ("query_flags", c_uint32),
        ("attach_flags", c_uint32),
        ("prog_ids", c_uint64),
        ("prog_cnt", c_uint32),  # union with count
        ("_pad0", c_uint32),
        ("prog_attach_flags", c_uint64),
        ("link_ids", c_uint64),
        ("link_attach_flags", c_uint64),
        ("revision", c_uint64),
    ]


class RawTracepointAttr(_S):
    """BPF_RAW_TRACEPOINT_OPEN."""

    _fields_ = [
        ("name", c_uint64),
        ("prog_fd", c_uint32),
        ("_pad0", c_uint32),
        ("cookie", c_uint64),
    ]


class BtfLoadAttr(_S):
    """BPF_BTF_LOAD."""

    _fields_ = [
        ("btf", c_uint64),
        ("btf_log_buf", c_uint64),
        ("btf_size", c_uint32),
        ("btf_log_size", c_uint32),
        ("btf_log_level", c_uint32),
        ("btf_log_true_size", c_uint32),
        ("btf_flags", c_uint32),
        ("btf_token_fd", c_int32),
    ]


class TaskFdQueryAttr(_S):
    """BPF_TASK_FD_QUERY."""

    _fields_ = [
        ("pid", c_uint32),
        ("fd", c_uint32),
        ("flags", c_uint32),
        ("buf_len", c_uint32),
        ("buf", c_uint64),
        ("prog_id", c_uint32),
        ("fd_type", c_uint32),
        ("probe_offset", c_uint64),
        ("probe_addr", c_uint64),
    ]


class LinkCreateAttr(_S):
    """BPF_LINK_CREATE.

    The 48-byte tail is the kernel's per-type union, :class:`~ebpf.core._sys.unions.LinkCreateTail`
    (anonymous here too: ``attr.kprobe_multi.cnt``, ``attr.tcx.relative_fd``, ``attr.iter_info``).
    """

    _anonymous_ = ("_tail",)
    _fields_ = [
        ("prog_fd", c_uint32),  # union with map_fd
        ("target_fd", c_uint32),  # union with target_ifindex
        ("attach_type", c_uint32),
        ("flags", c_uint32),
        ("_tail", LinkCreateTail),
    ]


class LinkUpdateAttr(_S):
    """BPF_LINK_UPDATE."""

    _fields_ = [
        ("link_fd", c_uint32),
        ("new_prog_fd", c_uint32),
        ("flags", c_uint32),
        ("old_prog_fd", c_uint32),
    ]


class LinkDetachAttr(_S):
    """BPF_LINK_DETACH."""

    _fields_ = [("link_fd", c_uint32)]


class EnableStatsAttr(_S):
    """BPF_ENABLE_STATS."""

    _fields_ = [("type", c_uint32)]


class IterCreateAttr(_S):
    """BPF_ITER_CREATE."""

    _fields_ = [("link_fd", c_uint32), ("flags", c_uint32)]


class ProgBindMapAttr(_S):
    """BPF_PROG_BIND_MAP."""

    _fields_ = [("prog_fd", c_uint32), ("map_fd", c_uint32), ("flags", c_uint32)]


class ProgInfo(_S):
    """``struct bpf_prog_info``."""

    _fields_ = [
        ("type", c_uint32),
        ("id", c_uint32),
        ("tag", c_uint8 * 8),
        ("jited_prog_len", c_uint32),
        ("xlated_prog_len", c_uint32),
        ("jited_prog_insns", c_uint64),
        ("xlated_prog_insns", c_uint64),
        ("load_time", c_uint64),
        ("created_by_uid", c_uint32),
        ("nr_map_ids", c_uint32),
        ("map_ids", c_uint64),
        ("name", c_char * 16),
        ("ifindex", c_uint32),
        ("gpl_compatible", c_uint32),  # bit 0; the rest is reserved
        ("netns_dev", c_uint64),
        ("netns_ino", c_uint64),
        ("nr_jited_ksyms", c_uint32),
        ("nr_jited_func_lens", c_uint32),
        ("jited_ksyms", c_uint64),
        ("jited_func_lens", c_uint64),
        ("btf_id", c_uint32),
        ("func_info_rec_size", c_uint32),
        ("func_info", c_uint64),
        ("nr_func_info", c_uint32),
        ("nr_line_info", c_uint32),
        ("line_info", c_uint64),
        ("jited_line_info", c_uint64),
        ("nr_jited_line_info", c_uint32),
        ("line_info_rec_size", c_uint32),
        ("jited_line_info_rec_size", c_uint32),
        ("nr_prog_tags", c_uint32),
        ("prog_tags", c_uint64),
        ("run_time_ns", c_uint64),
        ("run_cnt", c_uint64),
        ("recursion_misses", c_uint64),
        ("verified_insns", c_uint32),
        ("attach_btf_obj_id", c_uint32),
        ("attach_btf_id", c_uint32),
        ("_pad0", c_uint32),
    ]


class MapInfo(_S):
    """``struct bpf_map_info``."""

    _fields_ = [
        ("type", c_uint32),
        ("id", c_uint32),
        ("key_size", c_uint32),
        ("value_size", c_uint32),
        ("max_entries", c_uint32),
        ("map_flags", c_uint32),
        ("name", c_char * 16),
        ("ifindex", c_uint32),
        ("btf_vmlinux_value_type_id", c_uint32),
        ("netns_dev", c_uint64),
        ("netns_ino", c_uint64),
        ("btf_id", c_uint32),
        ("btf_key_type_id", c_uint32),
        ("btf_value_type_id", c_uint32),
        ("btf_vmlinux_id", c_uint32),
        ("map_extra", c_uint64),
        ("hash", c_uint64),
        ("hash_size", c_uint32),
        ("_pad0", c_uint32),
    ]


class LinkInfo(_S):
    """``struct bpf_link_info``; the per-type union is :class:`~ebpf.core._sys.unions.LinkInfoTail` (anonymous).

    ``info.raw_tracepoint.tp_name``, ``info.perf_event.kprobe.func_name``, ... (``info.type`` says which).
    """

    _anonymous_ = ("_tail",)
    _fields_ = [
        ("type", c_uint32),
        ("id", c_uint32),
        ("prog_id", c_uint32),
        ("_pad0", c_uint32),
        ("_tail", LinkInfoTail),
    ]


class BtfInfo(_S):
    """``struct bpf_btf_info``."""

    _fields_ = [
        ("btf", c_uint64),
        ("btf_size", c_uint32),
        ("id", c_uint32),
        ("name", c_uint64),
        ("name_len", c_uint32),
        ("kernel_btf", c_uint32),
    ]


#: For the layout test: class -> (kernel type, the first field naming the member of
#: ``union bpf_attr`` or ``None`` for a whole struct).
LAYOUTS: dict[type[ctypes.Structure], tuple[str, str | None]] = {  # a dotted key: a member path (BTF search)
    MapCreateAttr: ("union bpf_attr", "map_type"),
    MapElemAttr: ("union bpf_attr", "map_fd"),
    MapBatchAttr: ("union bpf_attr", "in_batch"),
    ProgLoadAttr: ("union bpf_attr", "prog_type"),
    ObjPinAttr: ("union bpf_attr", "pathname"),
    ProgAttachAttr: ("union bpf_attr", "attach_bpf_fd"),
    TestRunAttr: ("union bpf_attr", "test"),
    GetIdAttr: ("union bpf_attr", "next_id"),
    InfoAttr: ("union bpf_attr", "info"),
    ProgQueryAttr: ("union bpf_attr", "query"),
    RawTracepointAttr: ("union bpf_attr", "raw_tracepoint"),
    BtfLoadAttr: ("union bpf_attr", "btf"),
    TaskFdQueryAttr: ("union bpf_attr", "task_fd_query"),
    LinkCreateAttr: ("union bpf_attr", "link_create"),
    LinkUpdateAttr: ("union bpf_attr", "link_update"),
    LinkDetachAttr: ("union bpf_attr", "link_detach"),
    EnableStatsAttr: ("union bpf_attr", "enable_stats"),
    IterCreateAttr: ("union bpf_attr", "iter_create"),
    ProgBindMapAttr: ("union bpf_attr", "prog_bind_map"),
    ProgInfo: ("struct bpf_prog_info", None),
    MapInfo: ("struct bpf_map_info", None),
    LinkInfo: ("struct bpf_link_info", None),
    BtfInfo: ("struct bpf_btf_info", None),
    # every named variant of the link-create and link-info unions, by its dotted path
    **UNION_VARIANTS,
}
