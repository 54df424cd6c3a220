// The C version of examples/lang/syscount.py (the tests compare the two).
#include "bpf_helpers.h"

struct sys_enter_ctx {
	__u64 ent;
	long id;
	unsigned long args[6];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, __u64);
} counts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} target SEC(".maps");

SEC("tracepoint/raw_syscalls/sys_enter")
int count_syscalls(struct sys_enter_ctx *ctx)
{
	__u32 zero = 0, *want = bpf_map_lookup_elem(&target, &zero);
	if (want && *want && (bpf_get_current_pid_tgid() >> 32) != *want)
		return 0;
	__u32 nr = ctx->id;
	__u64 *n = bpf_map_lookup_elem(&counts, &nr);
	if (n) {
		__sync_fetch_and_add(n, 1);
	} else {
		__u64 one = 1;
		bpf_map_update_elem(&counts, &nr, &one, BPF_NOEXIST);
	}
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
