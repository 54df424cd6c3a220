/* Block I/O latency per disk: issue to completion, a log2 histogram in microseconds. */
#include "export.bpf.h"

struct io_key {
	u32 dev;
	u32 pad;
	u64 sector;
};

struct disk_slot {
	u32 dev;
	u32 bucket;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 10240);
	__type(key, struct io_key);
	__type(value, u64);
} io_start SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct disk_slot);
	__type(value, u64);
} bio_latency_seconds SEC(".maps");

SEC("tracepoint/block/block_rq_issue")
int on_issue(struct trace_event_raw_block_rq *ctx)
{
	struct io_key key = {.dev = ctx->dev, .sector = ctx->sector};
	u64 now = bpf_ktime_get_ns();

	bpf_map_update_elem(&io_start, &key, &now, BPF_ANY);
	return 0;
}

SEC("tracepoint/block/block_rq_complete")
int on_complete(struct trace_event_raw_block_rq_completion *ctx)
{
	struct io_key key = {.dev = ctx->dev, .sector = ctx->sector};
	struct disk_slot slot = {.dev = ctx->dev};
	u64 *start = bpf_map_lookup_elem(&io_start, &key), delta;

	if (!start)
		return 0;
	delta = (bpf_ktime_get_ns() - *start) / 1000;
	bpf_map_delete_elem(&io_start, &key);
	slot.bucket = exp2_bucket(delta);
	counter_add(&bio_latency_seconds, &slot, 1);
	slot.bucket = HIST_MAX_BUCKET + 1;
	counter_add(&bio_latency_seconds, &slot, delta);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
