// The C version of examples/lang/execve_tracer.py (the tests compare the two).
#include "bpf_helpers.h"
#include "bpf_core_read.h"

struct task_struct {
	int tgid;
	struct task_struct *real_parent;
} __attribute__((preserve_access_index));

struct sys_enter_ctx {
	__u64 ent;
	long id;
	unsigned long args[6];
};

struct event {
	__u32 pid;
	__u32 ppid;
	char comm[16];
	char filename[256];
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 18);
} events SEC(".maps");

SEC("tracepoint/syscalls/sys_enter_execve")
int trace_execve(struct sys_enter_ctx *ctx)
{
	struct event *ev = bpf_ringbuf_reserve(&events, sizeof(*ev), 0);
	if (!ev)
		return 0;
	ev->pid = bpf_get_current_pid_tgid() >> 32;
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	ev->ppid = BPF_CORE_READ(task, real_parent, tgid);
	bpf_get_current_comm(ev->comm, sizeof(ev->comm));
	bpf_probe_read_user_str(ev->filename, sizeof(ev->filename), (const void *)ctx->args[0]);
	bpf_ringbuf_submit(ev, 0);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
