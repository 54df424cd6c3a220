"""Regenerate ``src/ebpf/elf/include/bpf_helper_defs.h`` from ``ebpf.core.types.Helper``.

Common helpers get their exact prototypes (from the kernel's ``include/uapi/linux/bpf.h``
documentation); the others get an unprototyped declaration ``long (*name)()`` which is
valid C17 (BPF has no varargs, and an unprototyped call passes each argument as is).
Run: ``python3 packages/ebpf-elf/tools/gen_helpers.py``.
"""

from __future__ import annotations

import pathlib

from ebpf.core.types import Helper

EXACT: dict[str, str] = {
    "map_lookup_elem": "void *(*)(void *map, const void *key)",
    "map_update_elem": "long (*)(void *map, const void *key, const void *value, __u64 flags)",
    "map_delete_elem": "long (*)(void *map, const void *key)",
    "probe_read": "long (*)(void *dst, __u32 size, const void *unsafe_ptr)",
    "ktime_get_ns": "__u64 (*)(void)",
    "trace_printk": "long (*)(const char *fmt, __u32 fmt_size, ...)",
    "get_prandom_u32": "__u32 (*)(void)",
    "get_smp_processor_id": "__u32 (*)(void)",
    "skb_store_bytes": "long (*)(struct __sk_buff *skb, __u32 offset, const void *from, __u32 len, __u64 flags)",
    "l3_csum_replace": "long (*)(struct __sk_buff *skb, __u32 offset, __u64 from, __u64 to, __u64 size)",
    "l4_csum_replace": "long (*)(struct __sk_buff *skb, __u32 offset, __u64 from, __u64 to, __u64 flags)",
    "tail_call": "long (*)(void *ctx, void *prog_array_map, __u32 index)",
    "clone_redirect": "long (*)(struct __sk_buff *skb, __u32 ifindex, __u64 flags)",
    "get_current_pid_tgid": "__u64 (*)(void)",
    "get_current_uid_gid": "__u64 (*)(void)",
    "get_current_comm": "long (*)(void *buf, __u32 size_of_buf)",
    "get_cgroup_classid": "__u32 (*)(struct __sk_buff *skb)",
    "skb_vlan_push": "long (*)(struct __sk_buff *skb, __be16 vlan_proto, __u16 vlan_tci)",
    "skb_vlan_pop": "long (*)(struct __sk_buff *skb)",
    "perf_event_read": "__u64 (*)(void *map, __u64 flags)",
    "redirect": "long (*)(__u32 ifindex, __u64 flags)",
    "get_route_realm": "__u32 (*)(struct __sk_buff *skb)",
    "perf_event_output": "long (*)(void *ctx, void *map, __u64 flags, void *data, __u64 size)",
    "skb_load_bytes": "long (*)(const void *skb, __u32 offset, void *to, __u32 len)",
    "get_stackid": "long (*)(void *ctx, void *map, __u64 flags)",
    "csum_diff": "__s64 (*)(__be32 *from, __u32 from_size, __be32 *to, __u32 to_size, __wsum seed)",
    "skb_change_proto": "long (*)(struct __sk_buff *skb, __be16 proto, __u64 flags)",
    "skb_change_type": "long (*)(struct __sk_buff *skb, __u32 type)",
    "get_current_task": "__u64 (*)(void)",
    "get_hash_recalc": "__u32 (*)(struct __sk_buff *skb)",
    "skb_change_tail": "long (*)(struct __sk_buff *skb, __u32 len, __u64 flags)",
    "skb_pull_data": "long (*)(struct __sk_buff *skb, __u32 len)",
    "get_numa_node_id": "long (*)(void)",
    "xdp_adjust_head": "long (*)(struct xdp_md *xdp_md, int delta)",
    "probe_read_str": "long (*)(void *dst, __u32 size, const void *unsafe_ptr)",
    "get_socket_cookie": "__u64 (*)(void *ctx)",
    "get_socket_uid": "__u32 (*)(struct __sk_buff *skb)",
    "redirect_map": "long (*)(void *map, __u64 key, __u64 flags)",
    "perf_event_read_value": "long (*)(void *map, __u64 flags, void *buf, __u32 buf_size)",
    "perf_prog_read_value": "long (*)(void *ctx, void *buf, __u32 buf_size)",
    "xdp_adjust_meta": "long (*)(struct xdp_md *xdp_md, int delta)",
    "get_stack": "long (*)(void *ctx, void *buf, __u32 size, __u64 flags)",
    "xdp_adjust_tail": "long (*)(struct xdp_md *xdp_md, int delta)",
    "get_current_cgroup_id": "__u64 (*)(void)",
    "get_local_storage": "void *(*)(void *map, __u64 flags)",
    "map_push_elem": "long (*)(void *map, const void *value, __u64 flags)",
    "map_pop_elem": "long (*)(void *map, void *value)",
    "map_peek_elem": "long (*)(void *map, void *value)",
    "spin_lock": "long (*)(struct bpf_spin_lock *lock)",
    "spin_unlock": "long (*)(struct bpf_spin_lock *lock)",
    "sk_storage_get": "void *(*)(void *map, void *sk, void *value, __u64 flags)",
    "sk_storage_delete": "long (*)(void *map, void *sk)",
    "send_signal": "long (*)(__u32 sig)",
    "probe_read_user": "long (*)(void *dst, __u32 size, const void *unsafe_ptr)",
    "probe_read_kernel": "long (*)(void *dst, __u32 size, const void *unsafe_ptr)",
    "probe_read_user_str": "long (*)(void *dst, __u32 size, const void *unsafe_ptr)",
    "probe_read_kernel_str": "long (*)(void *dst, __u32 size, const void *unsafe_ptr)",
    "jiffies64": "__u64 (*)(void)",
    "get_ns_current_pid_tgid": "long (*)(__u64 dev, __u64 ino, struct bpf_pidns_info *nsdata, __u32 size)",
    "get_current_ancestor_cgroup_id": "__u64 (*)(int ancestor_level)",
    "ktime_get_boot_ns": "__u64 (*)(void)",
    "ringbuf_output": "long (*)(void *ringbuf, void *data, __u64 size, __u64 flags)",
    "ringbuf_reserve": "void *(*)(void *ringbuf, __u64 size, __u64 flags)",
    "ringbuf_submit": "void (*)(void *data, __u64 flags)",
    "ringbuf_discard": "void (*)(void *data, __u64 flags)",
    "ringbuf_query": "__u64 (*)(void *ringbuf, __u64 flags)",
    "get_current_task_btf": "struct task_struct *(*)(void)",
    "ktime_get_coarse_ns": "__u64 (*)(void)",
    "task_storage_get": "void *(*)(void *map, struct task_struct *task, void *value, __u64 flags)",
    "task_storage_delete": "long (*)(void *map, struct task_struct *task)",
    "snprintf_btf": "long (*)(char *str, __u32 str_size, struct btf_ptr *ptr, __u32 btf_ptr_size, __u64 flags)",
    "for_each_map_elem": "long (*)(void *map, void *callback_fn, void *callback_ctx, __u64 flags)",
    "snprintf": "long (*)(char *str, __u32 str_size, const char *fmt, __u64 *data, __u32 data_len)",
    "loop": "long (*)(__u32 nr_loops, void *callback_fn, void *callback_ctx, __u64 flags)",
    "ktime_get_tai_ns": "__u64 (*)(void)",
    "get_func_ip": "__u64 (*)(void *ctx)",
    "get_attach_cookie": "__u64 (*)(void *ctx)",
    "task_pt_regs": "long (*)(struct task_struct *task)",
    "strncmp": "long (*)(const char *s1, __u32 s1_sz, const char *s2)",
    "get_func_arg": "long (*)(void *ctx, __u32 n, __u64 *value)",
    "get_func_ret": "long (*)(void *ctx, __u64 *value)",
    "get_func_arg_cnt": "long (*)(void *ctx)",
    "trace_vprintk": "long (*)(const char *fmt, __u32 fmt_size, const void *data, __u32 data_len)",
    "copy_from_user": "long (*)(void *dst, __u32 size, const void *user_ptr)",
    "cgrp_storage_get": "void *(*)(void *map, struct cgroup *cgroup, void *value, __u64 flags)",
    "cgrp_storage_delete": "long (*)(void *map, struct cgroup *cgroup)",
    "sk_lookup_tcp": "struct bpf_sock *(*)(void *ctx, struct bpf_sock_tuple *tuple, __u32 tuple_size, __u64 netns, __u64 flags)",
    "sk_lookup_udp": "struct bpf_sock *(*)(void *ctx, struct bpf_sock_tuple *tuple, __u32 tuple_size, __u64 netns, __u64 flags)",
    "sk_release": "long (*)(void *sock)",
    "fib_lookup": "long (*)(void *ctx, struct bpf_fib_lookup *params, int plen, __u32 flags)",
    "sk_redirect_map": "long (*)(struct __sk_buff *skb, void *map, __u32 key, __u64 flags)",
    "msg_redirect_map": "long (*)(struct sk_msg_md *msg, void *map, __u32 key, __u64 flags)",
    "this_cpu_ptr": "void *(*)(const void *percpu_ptr)",
    "per_cpu_ptr": "void *(*)(const void *percpu_ptr, __u32 cpu)",
}

FORWARD = [
    "__sk_buff", "xdp_md", "bpf_spin_lock", "bpf_pidns_info", "task_struct", "btf_ptr", "cgroup",
    "bpf_sock", "bpf_sock_tuple", "bpf_fib_lookup", "sk_msg_md",
]


def render() -> str:
    """The header text."""
    out = [
        "/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */",
        "/* Generated by packages/ebpf-elf/tools/gen_helpers.py from ebpf.core.types.Helper: do not edit. */",
        "#ifndef __EBPF_BPF_HELPER_DEFS_H",
        "#define __EBPF_BPF_HELPER_DEFS_H",
        "",
    ]
    out += [f"struct {name};" for name in FORWARD]
    out.append("")
    for helper in Helper:
        if helper.value == 0:
            continue
        name = helper.name.lower()
        proto = EXACT.get(name)
        if proto is None:
            # Unprototyped (valid C17): arguments are passed as given, the verifier checks them.
            out.append(f"static long (* const bpf_{name})() = (void *) {helper.value};")
        else:
            ret, args = proto.split("(*)", 1)
            out.append(f"static {ret.strip()} (* const bpf_{name}){args} = (void *) {helper.value};")
    out += ["", "#endif", ""]
    return "\n".join(out)


if __name__ == "__main__":
    target = pathlib.Path(__file__).resolve().parent.parent / "src/ebpf/elf/include/bpf_helper_defs.h"
    target.write_text(render())
    print(target)
