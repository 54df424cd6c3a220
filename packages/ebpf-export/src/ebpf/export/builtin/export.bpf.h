/* Shared by the built-in exporter programs: histogram slots as the exporter's configs read them. */
#ifndef EBPF_EXPORT_BPF_H
#define EBPF_EXPORT_BPF_H

#include "vmlinux.h"
#include <bpf_helpers.h>

#define HIST_MAX_BUCKET 26 /* le = 2^26 units; slot HIST_MAX_BUCKET + 1 holds the sum */

/* Smallest i with v <= 2^i (0 for v <= 1), branch-free so the verifier sees no loop. */
static __always_inline u32 exp2_bucket(u64 v)
{
	u64 r, s;

	if (v <= 1)
		return 0;
	v -= 1;
	s = (v > 0xFFFFFFFFULL) << 5; v >>= s; r = s;
	s = (v > 0xFFFF) << 4; v >>= s; r |= s;
	s = (v > 0xFF) << 3; v >>= s; r |= s;
	s = (v > 0xF) << 2; v >>= s; r |= s;
	s = (v > 0x3) << 1; v >>= s; r |= s;
	r |= (v >> 1);
	r += 1;
	return r > HIST_MAX_BUCKET ? HIST_MAX_BUCKET : (u32)r;
}

/* Add one to *key's slot of a hash map, creating it on first use. */
static __always_inline void counter_add(void *map, const void *key, u64 n)
{
	u64 *v = bpf_map_lookup_elem(map, key);

	if (v) {
		__sync_fetch_and_add(v, n);
		return;
	}
	if (bpf_map_update_elem(map, key, &n, BPF_NOEXIST) == 0)
		return;
	v = bpf_map_lookup_elem(map, key); /* another CPU created it first: add to its entry */
	if (v)
		__sync_fetch_and_add(v, n);
}

#endif
