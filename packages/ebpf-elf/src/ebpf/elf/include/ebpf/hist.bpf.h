/* SPDX-License-Identifier: MIT */
/*
 * <ebpf/hist.bpf.h>: histograms in BPF C, shipped with ebpf-elf.
 *
 *   log2l(v)                      floor(log2(v)) for a 64-bit v (0 for 0 and 1), branch-free
 *   hist_log2_slot(v, max)        log2l(v) clamped to max - 1
 *   hist_linear_slot(v, step, max) v / step clamped to max - 1
 *   hist_increment(map, slot)     map[slot] += 1 (u32 key, u64 value; array or hash map)
 *   hist_increment_key(map, key, n) map[*key] += n for any key (keyed histograms)
 *
 * Slot i of a log2 histogram holds [2^i, 2^(i+1) - 1] (slot 0 also holds 0), the numbering of
 * libbpf-tools; ebpf.events.hist.Histogram.from_map reads such a map and print_log2_hist prints
 * it in bcc's layout.  The header calls the helpers by number, so it works with or without
 * bpf_helpers.h and declares no name a program might also declare.
 */
#ifndef __EBPF_HIST_BPF_H
#define __EBPF_HIST_BPF_H

#define __EBPF_HIST_INLINE static inline __attribute__((always_inline))

/* helper ids from the kernel's uapi bpf.h: map_lookup_elem = 1, map_update_elem = 2 */
static void *(*__ebpf_hist_lookup)(void *map, const void *key) = (void *)1;
static long (*__ebpf_hist_update)(void *map, const void *key, const void *value,
				  unsigned long long flags) = (void *)2;

/*
 * Each step halves the search range; "v > K" is the sign bit of K - v (v < 2^32 after the first
 * step), so the code has no branches and the verifier sees a result bounded to 0..63.
 */
__EBPF_HIST_INLINE unsigned long long ebpf_log2l(unsigned long long v)
{
	unsigned long long r, t;

	r = ((0ULL - (v >> 32)) >> 63) << 5;
	v >>= r;
	t = ((0xFFFFULL - v) >> 63) << 4; v >>= t; r |= t;
	t = ((0xFFULL - v) >> 63) << 3; v >>= t; r |= t;
	t = ((0xFULL - v) >> 63) << 2; v >>= t; r |= t;
	t = ((0x3ULL - v) >> 63) << 1; v >>= t; r |= t;
	return r | (v >> 1);
}

/* log2l is also a libm name: a macro keeps clang from comparing it with the builtin */
#ifndef log2l
#define log2l(v) ebpf_log2l(v)
#endif

__EBPF_HIST_INLINE unsigned int hist_log2_slot(unsigned long long v, unsigned int max_slots)
{
	unsigned long long s = ebpf_log2l(v);

	return s < max_slots ? (unsigned int)s : max_slots - 1;
}

__EBPF_HIST_INLINE unsigned int hist_linear_slot(unsigned long long v, unsigned long long step,
						 unsigned int max_slots)
{
	unsigned long long s = step ? v / step : v;

	return s < max_slots ? (unsigned int)s : max_slots - 1;
}

/*
 * map[*key] += n.  A hash map's missing key is inserted with BPF_NOEXIST (1); when another CPU
 * inserts it first, that update fails and this count is lost, as in libbpf-tools.
 */
__EBPF_HIST_INLINE void hist_increment_key(void *map, const void *key, unsigned long long n)
{
	unsigned long long *count = __ebpf_hist_lookup(map, key);

	if (count) {
		__sync_fetch_and_add(count, n);
		return;
	}
	__ebpf_hist_update(map, key, &n, 1);
}

__EBPF_HIST_INLINE void hist_increment(void *map, unsigned int slot)
{
	hist_increment_key(map, &slot, 1);
}

#endif /* __EBPF_HIST_BPF_H */
