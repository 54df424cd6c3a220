// The C version of examples/lang/cgroup_connect_block.py (the tests compare the two).
#include "bpf_helpers.h"

struct bpf_sock_addr {
	__u32 user_family, user_ip4, user_ip6[4], user_port, family, type, protocol, msg_src_ip4, msg_src_ip6[4];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, __u64);
} blocked SEC(".maps");

SEC("cgroup/connect4")
int block_connect(struct bpf_sock_addr *ctx)
{
	__u32 port = __builtin_bswap16((__u16)ctx->user_port);
	__u64 *n = bpf_map_lookup_elem(&blocked, &port);
	if (n) {
		__sync_fetch_and_add(n, 1);
		return 0;
	}
	return 1;
}

char LICENSE[] SEC("license") = "GPL";
