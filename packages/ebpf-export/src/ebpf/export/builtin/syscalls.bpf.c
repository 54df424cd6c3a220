/* Syscalls per process name and syscall number (raw_syscalls:sys_enter). */
#include "export.bpf.h"

struct syscall_key {
	char comm[16];
	u64 nr;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 10240);
	__type(key, struct syscall_key);
	__type(value, u64);
} syscalls_total SEC(".maps");

SEC("tracepoint/raw_syscalls/sys_enter")
int count_syscall(struct trace_event_raw_sys_enter *ctx)
{
	struct syscall_key key = {};

	bpf_get_current_comm(&key.comm, sizeof(key.comm));
	key.nr = ctx->id;
	counter_add(&syscalls_total, &key, 1);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
