/* Process executions per cgroup (sched:sched_process_exec). */
#include "export.bpf.h"

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, u64);
	__type(value, u64);
} execs_total SEC(".maps");

SEC("tracepoint/sched/sched_process_exec")
int on_exec(void *ctx)
{
	u64 cgroup = bpf_get_current_cgroup_id();

	counter_add(&execs_total, &cgroup, 1);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
