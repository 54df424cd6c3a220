// The C version of examples/lang/xdp_counter.py (the tests compare the two).
#include "bpf_helpers.h"

struct ethhdr { __u8 dst[6]; __u8 src[6]; __u16 proto; };
struct iphdr { __u8 ver_ihl, tos; __u16 tot_len, id, frag_off; __u8 ttl, protocol; __u16 check; __u32 saddr, daddr; };
struct udphdr { __u16 sport, dport, len, check; };

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 256);
	__type(key, __u32);
	__type(value, __u64);
} proto_counts SEC(".maps");

SEC("xdp")
int xdp_count(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > end || eth->proto != __builtin_bswap16(0x0800))
		return XDP_PASS;
	struct iphdr *ip = data + 14;
	if ((void *)(ip + 1) > end)
		return XDP_PASS;
	__u32 key = ip->protocol;
	__u64 *n = bpf_map_lookup_elem(&proto_counts, &key);
	if (n)
		__sync_fetch_and_add(n, 1);
	if (ip->protocol != 17)
		return XDP_PASS;
	struct udphdr *udp = data + 14 + ((ip->ver_ihl & 0xF) * 4);
	if ((void *)(udp + 1) <= end && udp->dport == __builtin_bswap16(9))
		return XDP_DROP;
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
