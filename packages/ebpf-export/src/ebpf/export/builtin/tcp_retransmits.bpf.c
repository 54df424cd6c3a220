/* TCP retransmits per remote address (tcp:tcp_retransmit_skb). */
#include "export.bpf.h"

/* The tracepoint's fields up to daddr_v6, stable since Linux 4.16 (IPv4 peers stored v4-mapped). */
struct retransmit_args {
	u64 common;
	const void *skbaddr;
	const void *skaddr;
	int state;
	u16 sport;
	u16 dport;
	u16 family;
	u8 saddr[4];
	u8 daddr[4];
	u8 saddr_v6[16];
	u8 daddr_v6[16];
};

struct peer_key {
	u8 daddr[16];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct peer_key);
	__type(value, u64);
} tcp_retransmits_total SEC(".maps");

SEC("tracepoint/tcp/tcp_retransmit_skb")
int on_retransmit(struct retransmit_args *ctx)
{
	struct peer_key key = {};

	__builtin_memcpy(key.daddr, ctx->daddr_v6, sizeof(key.daddr));
	counter_add(&tcp_retransmits_total, &key, 1);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
