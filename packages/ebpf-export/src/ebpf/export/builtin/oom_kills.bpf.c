/* OOM kills (oom:mark_victim). */
#include "export.bpf.h"

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, u64);
} oom_kills_total SEC(".maps");

SEC("tracepoint/oom/mark_victim")
int on_victim(void *ctx)
{
	u32 zero = 0;
	u64 *n = bpf_map_lookup_elem(&oom_kills_total, &zero);

	if (n)
		__sync_fetch_and_add(n, 1);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
