/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * <bpf/bpf_helpers.h> as shipped by ebpf-elf (written for this project, with libbpf's names and
 * meanings so programs written against libbpf build unchanged): SEC(), the BTF map definition
 * macros, extern attributes (__ksym, __kconfig, __weak), bpf_printk with any number of
 * arguments, bpf_ksym_exists, barriers, and the helper prototypes (bpf_helper_defs.h).
 * Without vmlinux.h or <linux/bpf.h> it also declares the uapi constants programs need most
 * (map types, update flags, BPF_F_* flags, XDP actions).
 */
#ifndef __BPF_HELPERS__
#define __BPF_HELPERS__

typedef signed char __s8;
typedef unsigned char __u8;
typedef short __s16;
typedef unsigned short __u16;
typedef int __s32;
typedef unsigned int __u32;
typedef long long __s64;
typedef unsigned long long __u64;
typedef __u16 __be16;
typedef __u32 __be32;
typedef __u64 __be64;
typedef __u32 __wsum;

#ifndef NULL
#define NULL ((void *)0)
#endif

#include "bpf_helper_defs.h"

/* BTF map definitions: the loader reads these member types back from the object's BTF. */
#define __uint(name, val) int (*name)[val]
#define __type(name, val) typeof(val) *name
#define __array(name, val) typeof(val) *name[]
#define __ulong(name, val) enum { ___bpf_concat(__unique_value, __COUNTER__) = val } name

#define ___bpf_concat(a, b) a ## b

/* A program, map or variable placed in ELF section ``name`` (kept even when unused). */
#define SEC(name) \
	_Pragma("GCC diagnostic push") \
	_Pragma("GCC diagnostic ignored \"-Wignored-attributes\"") \
	__attribute__((section(name), used)) \
	_Pragma("GCC diagnostic pop")

#undef __always_inline
#define __always_inline inline __attribute__((always_inline))
#ifndef __noinline
#define __noinline __attribute__((noinline))
#endif
#ifndef __weak
#define __weak __attribute__((weak))
#endif
#ifndef __hidden
#define __hidden __attribute__((visibility("hidden")))
#endif
#ifndef __ksym
#define __ksym __attribute__((section(".ksyms")))
#endif
#define __kconfig __attribute__((section(".kconfig")))
#define __kptr_untrusted __attribute__((btf_type_tag("kptr_untrusted")))
#define __kptr __attribute__((btf_type_tag("kptr")))
#define __percpu_kptr __attribute__((btf_type_tag("percpu_kptr")))
#define __uptr __attribute__((btf_type_tag("uptr")))
#define __weak_ksym __attribute__((weak)) __attribute__((section(".ksyms")))

/* Calls the verifier may treat as preserving caller-saved registers (clang >= 19 knows the attribute). */
#if defined(__has_attribute) && __has_attribute(bpf_fastcall)
#define __bpf_fastcall __attribute__((bpf_fastcall))
#else
#define __bpf_fastcall
#endif

/* Argument annotations for global subprograms (decl tags the verifier reads). */
#define __arg_ctx __attribute__((btf_decl_tag("arg:ctx")))
#define __arg_nonnull __attribute__((btf_decl_tag("arg:nonnull")))
#define __arg_nullable __attribute__((btf_decl_tag("arg:nullable")))
#define __arg_trusted __attribute__((btf_decl_tag("arg:trusted")))
#define __arg_untrusted __attribute__((btf_decl_tag("arg:untrusted")))
#define __arg_arena __attribute__((btf_decl_tag("arg:arena")))

#ifndef likely
#define likely(x) __builtin_expect(!!(x), 1)
#endif
#ifndef unlikely
#define unlikely(x) __builtin_expect(!!(x), 0)
#endif

/* The compiler may not move memory accesses across barrier(). */
#ifndef barrier
#define barrier() asm volatile("" ::: "memory")
#endif
/* The compiler forgets what it knew about var (keeps the verifier's view of its bounds simple). */
#ifndef barrier_var
#define barrier_var(var) asm volatile("" : "+r"(var))
#endif
#ifndef __bpf_unreachable
#define __bpf_unreachable() __builtin_trap()
#endif

#ifndef __stringify
#define ___stringify(x) #x
#define __stringify(x) ___stringify(x)
#endif

#ifndef offsetof
#define offsetof(type, member) ((unsigned long)&((type *)0)->member)
#endif
#ifndef container_of
#define container_of(ptr, type, member) \
	({ void *__mptr = (void *)(ptr); ((type *)(__mptr - offsetof(type, member))); })
#endif

/* A tail call whose index the compiler must keep as a constant (the JIT patches it directly). */
#if __clang_major__ >= 8 && defined(__bpf__)
static __always_inline void bpf_tail_call_static(void *ctx, const void *map, const __u32 slot)
{
	if (!__builtin_constant_p(slot))
		__bpf_unreachable();
	asm volatile("r1 = %[ctx]\n\t"
		     "r2 = %[map]\n\t"
		     "r3 = %[slot]\n\t"
		     "call 12"
		     :: [ctx]"r"(ctx), [map]"r"(map), [slot]"i"(slot)
		     : "r0", "r1", "r2", "r3", "r4", "r5");
}
#endif

/* Pinning of BTF-defined maps (__uint(pinning, LIBBPF_PIN_BY_NAME)). */
enum libbpf_pin_type { LIBBPF_PIN_NONE, LIBBPF_PIN_BY_NAME };
/* Tri-state __kconfig values (CONFIG_X=y/n/m). */
enum libbpf_tristate { TRI_NO = 0, TRI_YES = 1, TRI_MODULE = 2 };

#define KERNEL_VERSION(a, b, c) (((a) << 16) + ((b) << 8) + ((c) > 255 ? 255 : (c)))

/* Argument counting: ___bpf_narg(a, b, c) is 3 (up to 12 arguments). */
#define ___bpf_nth(_, _1, _2, _3, _4, _5, _6, _7, _8, _9, _a, _b, _c, N, ...) N
#define ___bpf_narg(...) ___bpf_nth(_, ##__VA_ARGS__, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0)
#define ___bpf_apply(fn, n) ___bpf_concat(fn, n)

/* Each argument widened to an unsigned long long (the array form the *printf helpers take). */
#define ___bpf_fill0(arr, p, x) do {} while (0)
#define ___bpf_fill1(arr, p, x) arr[p] = (unsigned long long)(x)
#define ___bpf_fill2(arr, p, x, args...) arr[p] = (unsigned long long)(x); ___bpf_fill1(arr, p + 1, args)
#define ___bpf_fill3(arr, p, x, args...) arr[p] = (unsigned long long)(x); ___bpf_fill2(arr, p + 1, args)
#define ___bpf_fill4(arr, p, x, args...) arr[p] = (unsigned long long)(x); ___bpf_fill3(arr, p + 1, args)
#define ___bpf_fill5(arr, p, x, args...) arr[p] = (unsigned long long)(x); ___bpf_fill4(arr, p + 1, args)
#define ___bpf_fill6(arr, p, x, args...) arr[p] = (unsigned long long)(x); ___bpf_fill5(arr, p + 1, args)
#define ___bpf_fill7(arr, p, x, args...) arr[p] = (unsigned long long)(x); ___bpf_fill6(arr, p + 1, args)
#define ___bpf_fill8(arr, p, x, args...) arr[p] = (unsigned long long)(x); ___bpf_fill7(arr, p + 1, args)
#define ___bpf_fill9(arr, p, x, args...) arr[p] = (unsigned long long)(x); ___bpf_fill8(arr, p + 1, args)
#define ___bpf_fill10(arr, p, x, args...) arr[p] = (unsigned long long)(x); ___bpf_fill9(arr, p + 1, args)
#define ___bpf_fill11(arr, p, x, args...) arr[p] = (unsigned long long)(x); ___bpf_fill10(arr, p + 1, args)
#define ___bpf_fill12(arr, p, x, args...) arr[p] = (unsigned long long)(x); ___bpf_fill11(arr, p + 1, args)
#define ___bpf_fill(arr, args...) ___bpf_apply(___bpf_fill, ___bpf_narg(args))(arr, 0, args)

/* BPF_SEQ_PRINTF(seq, fmt, args...): bpf_seq_printf with the arguments packed for it. */
#define BPF_SEQ_PRINTF(seq, fmt, args...) \
({ \
	static const char ___fmt[] = fmt; \
	unsigned long long ___param[___bpf_narg(args)]; \
	_Pragma("GCC diagnostic push") \
	_Pragma("GCC diagnostic ignored \"-Wint-conversion\"") \
	___bpf_fill(___param, args); \
	_Pragma("GCC diagnostic pop") \
	bpf_seq_printf(seq, ___fmt, sizeof(___fmt), ___param, sizeof(___param)); \
})

/* BPF_SNPRINTF(out, out_size, fmt, args...): bpf_snprintf with the arguments packed for it. */
#define BPF_SNPRINTF(out, out_size, fmt, args...) \
({ \
	static const char ___fmt[] = fmt; \
	unsigned long long ___param[___bpf_narg(args)]; \
	_Pragma("GCC diagnostic push") \
	_Pragma("GCC diagnostic ignored \"-Wint-conversion\"") \
	___bpf_fill(___param, args); \
	_Pragma("GCC diagnostic pop") \
	bpf_snprintf(out, out_size, ___fmt, ___param, sizeof(___param)); \
})

/* bpf_printk: bpf_trace_printk for up to 3 arguments, bpf_trace_vprintk (Linux >= 5.16) beyond. */
#define __bpf_printk(fmt, ...) \
({ \
	static const char ____fmt[] = fmt; \
	bpf_trace_printk(____fmt, sizeof(____fmt), ##__VA_ARGS__); \
})
#define __bpf_vprintk(fmt, args...) \
({ \
	static const char ___fmt[] = fmt; \
	unsigned long long ___param[___bpf_narg(args)]; \
	_Pragma("GCC diagnostic push") \
	_Pragma("GCC diagnostic ignored \"-Wint-conversion\"") \
	___bpf_fill(___param, args); \
	_Pragma("GCC diagnostic pop") \
	bpf_trace_vprintk(___fmt, sizeof(___fmt), ___param, sizeof(___param)); \
})
#define ___bpf_pick_printk(...) \
	___bpf_nth(_, ##__VA_ARGS__, __bpf_vprintk, __bpf_vprintk, __bpf_vprintk, __bpf_vprintk, \
		   __bpf_vprintk, __bpf_vprintk, __bpf_vprintk, __bpf_vprintk, __bpf_vprintk, \
		   __bpf_printk, __bpf_printk, __bpf_printk, __bpf_printk)
#define bpf_printk(fmt, args...) ___bpf_pick_printk(args)(fmt, ##args)

/*
 * bpf_ksym_exists(sym): true when the loader found the __weak extern (kfunc or __ksym variable)
 * in the running kernel.  The loader turns the symbol's address into its BTF id, or 0.
 */
#define bpf_ksym_exists(sym) ({ \
	_Static_assert(!__builtin_constant_p(!!sym), #sym " should be marked as __weak"); \
	!!sym; \
})

/* Open-coded numeric iterators (kfuncs, Linux >= 6.4): bpf_for(i, 0, n) { ... }. */
struct bpf_iter_num;
extern int bpf_iter_num_new(struct bpf_iter_num *it, int start, int end) __weak __ksym;
extern int *bpf_iter_num_next(struct bpf_iter_num *it) __weak __ksym;
extern void bpf_iter_num_destroy(struct bpf_iter_num *it) __weak __ksym;

#ifndef bpf_for
#define bpf_for(i, start, end) for ( \
	struct bpf_iter_num ___it __attribute__((aligned(8), cleanup(bpf_iter_num_destroy))), \
	*___p __attribute__((unused)) = ( \
		bpf_iter_num_new(&___it, (start), (end)), \
		(void)bpf_iter_num_destroy, (void *)0); \
	({ int *___t = bpf_iter_num_next(&___it); (___t && ((i) = *___t, 1)); }); )
#endif
#ifndef bpf_repeat
#define bpf_repeat(n) for ( \
	struct bpf_iter_num ___it __attribute__((aligned(8), cleanup(bpf_iter_num_destroy))), \
	*___p __attribute__((unused)) = ( \
		bpf_iter_num_new(&___it, 0, (n)), \
		(void)bpf_iter_num_destroy, (void *)0); \
	bpf_iter_num_next(&___it); )
#endif

/* bpf_for_each(num, v, 0, 10) { ... }: any open-coded iterator bpf_iter_<type>_new/next/destroy. */
#ifndef bpf_for_each
#define bpf_for_each(type, cur, args...) for ( \
	struct bpf_iter_##type ___it __attribute__((aligned(8), cleanup(bpf_iter_##type##_destroy))), \
	*___p __attribute__((unused)) = ( \
		bpf_iter_##type##_new(&___it, ##args), \
		(void)bpf_iter_##type##_destroy, (void *)0); \
	(((cur) = bpf_iter_##type##_next(&___it))); )
#endif

#if !defined(__VMLINUX_H__) && !defined(_UAPI__LINUX_BPF_H__) && !defined(__LINUX_BPF_H__)
/* The uapi constants most programs use, for programs built without vmlinux.h or <linux/bpf.h>. */
struct bpf_iter_num { __u64 __opaque[1]; } __attribute__((aligned(8)));
enum bpf_map_type {
	BPF_MAP_TYPE_UNSPEC, BPF_MAP_TYPE_HASH, BPF_MAP_TYPE_ARRAY, BPF_MAP_TYPE_PROG_ARRAY,
	BPF_MAP_TYPE_PERF_EVENT_ARRAY, BPF_MAP_TYPE_PERCPU_HASH, BPF_MAP_TYPE_PERCPU_ARRAY,
	BPF_MAP_TYPE_STACK_TRACE, BPF_MAP_TYPE_CGROUP_ARRAY, BPF_MAP_TYPE_LRU_HASH,
	BPF_MAP_TYPE_LRU_PERCPU_HASH, BPF_MAP_TYPE_LPM_TRIE, BPF_MAP_TYPE_ARRAY_OF_MAPS,
	BPF_MAP_TYPE_HASH_OF_MAPS, BPF_MAP_TYPE_DEVMAP, BPF_MAP_TYPE_SOCKMAP, BPF_MAP_TYPE_CPUMAP,
	BPF_MAP_TYPE_XSKMAP, BPF_MAP_TYPE_SOCKHASH, BPF_MAP_TYPE_CGROUP_STORAGE,
	BPF_MAP_TYPE_REUSEPORT_SOCKARRAY, BPF_MAP_TYPE_PERCPU_CGROUP_STORAGE, BPF_MAP_TYPE_QUEUE,
	BPF_MAP_TYPE_STACK, BPF_MAP_TYPE_SK_STORAGE, BPF_MAP_TYPE_DEVMAP_HASH, BPF_MAP_TYPE_STRUCT_OPS,
	BPF_MAP_TYPE_RINGBUF, BPF_MAP_TYPE_INODE_STORAGE, BPF_MAP_TYPE_TASK_STORAGE,
	BPF_MAP_TYPE_BLOOM_FILTER, BPF_MAP_TYPE_USER_RINGBUF, BPF_MAP_TYPE_CGRP_STORAGE, BPF_MAP_TYPE_ARENA,
};
enum { BPF_ANY = 0, BPF_NOEXIST = 1, BPF_EXIST = 2, BPF_F_LOCK = 4 };
enum {
	BPF_F_NO_PREALLOC = 1U << 0, BPF_F_NO_COMMON_LRU = 1U << 1, BPF_F_NUMA_NODE = 1U << 2,
	BPF_F_RDONLY = 1U << 3, BPF_F_WRONLY = 1U << 4, BPF_F_STACK_BUILD_ID = 1U << 5,
	BPF_F_ZERO_SEED = 1U << 6, BPF_F_RDONLY_PROG = 1U << 7, BPF_F_WRONLY_PROG = 1U << 8,
	BPF_F_CLONE = 1U << 9, BPF_F_MMAPABLE = 1U << 10, BPF_F_PRESERVE_ELEMS = 1U << 11,
	BPF_F_INNER_MAP = 1U << 12, BPF_F_LINK = 1U << 13, BPF_F_PATH_FD = 1U << 14,
	BPF_F_VTYPE_BTF_OBJ_FD = 1U << 15, BPF_F_TOKEN_FD = 1U << 16, BPF_F_SEGV_ON_FAULT = 1U << 17,
	BPF_F_NO_USER_CONV = 1U << 18,
};
/* bpf_get_stackid / bpf_get_stack flags. */
enum {
	BPF_F_SKIP_FIELD_MASK = 0xffULL, BPF_F_USER_STACK = 1ULL << 8, BPF_F_FAST_STACK_CMP = 1ULL << 9,
	BPF_F_REUSE_STACKID = 1ULL << 10, BPF_F_USER_BUILD_ID = 1ULL << 11,
};
/* bpf_perf_event_output / bpf_perf_event_read flags. */
enum { BPF_F_INDEX_MASK = 0xffffffffULL, BPF_F_CURRENT_CPU = 0xffffffffULL, BPF_F_CTXLEN_MASK = 0xfffffULL << 32 };
/* bpf_ringbuf_* flags and bpf_ringbuf_query fields. */
enum { BPF_RB_NO_WAKEUP = 1ULL << 0, BPF_RB_FORCE_WAKEUP = 1ULL << 1 };
enum { BPF_RB_AVAIL_DATA = 0, BPF_RB_RING_SIZE = 1, BPF_RB_CONS_POS = 2, BPF_RB_PROD_POS = 3 };
enum { BPF_LOCAL_STORAGE_GET_F_CREATE = 1ULL << 0 };
/* skb / csum helper flags. */
enum {
	BPF_F_RECOMPUTE_CSUM = 1ULL << 0, BPF_F_INVALIDATE_HASH = 1ULL << 1,
	BPF_F_HDR_FIELD_MASK = 0xfULL, BPF_F_PSEUDO_HDR = 1ULL << 4, BPF_F_MARK_MANGLED_0 = 1ULL << 5,
	BPF_F_MARK_ENFORCE = 1ULL << 6, BPF_F_INGRESS = 1ULL << 0,
};
enum xdp_action { XDP_ABORTED = 0, XDP_DROP, XDP_PASS, XDP_TX, XDP_REDIRECT };
struct xdp_md {
	__u32 data; __u32 data_end; __u32 data_meta; __u32 ingress_ifindex; __u32 rx_queue_index;
	__u32 egress_ifindex;
};
#endif

#endif /* __BPF_HELPERS__ */
