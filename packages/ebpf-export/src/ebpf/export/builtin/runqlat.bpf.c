/* Run-queue latency: time from wakeup (or preemption) to running, as a log2 histogram in microseconds. */
#include "export.bpf.h"

#define TASK_RUNNING 0

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 10240);
	__type(key, u32);
	__type(value, u64);
} runq_start SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, HIST_MAX_BUCKET + 2);
	__type(key, u32);
	__type(value, u64);
} run_queue_latency_seconds SEC(".maps");

static __always_inline void enqueued(u32 pid)
{
	u64 now = bpf_ktime_get_ns();

	if (pid)
		bpf_map_update_elem(&runq_start, &pid, &now, BPF_ANY);
}

SEC("tp_btf/sched_wakeup")
int on_wakeup(u64 *ctx)
{
	struct task_struct *p = (void *)ctx[0];

	enqueued(p->pid);
	return 0;
}

SEC("tp_btf/sched_wakeup_new")
int on_wakeup_new(u64 *ctx)
{
	struct task_struct *p = (void *)ctx[0];

	enqueued(p->pid);
	return 0;
}

SEC("tp_btf/sched_switch")
int on_switch(u64 *ctx)
{
	struct task_struct *prev = (void *)ctx[1], *next = (void *)ctx[2];
	u32 pid = next->pid, slot, sum = HIST_MAX_BUCKET + 1;
	u64 *start, *count, delta;

	if (prev->__state == TASK_RUNNING)
		enqueued(prev->pid);
	start = bpf_map_lookup_elem(&runq_start, &pid);
	if (!start)
		return 0;
	delta = (bpf_ktime_get_ns() - *start) / 1000;
	bpf_map_delete_elem(&runq_start, &pid);
	slot = exp2_bucket(delta);
	count = bpf_map_lookup_elem(&run_queue_latency_seconds, &slot);
	if (count)
		__sync_fetch_and_add(count, 1);
	count = bpf_map_lookup_elem(&run_queue_latency_seconds, &sum);
	if (count)
		__sync_fetch_and_add(count, delta);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
