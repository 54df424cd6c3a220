/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * usdt.bpf.h shipped with ebpf-elf: reading USDT (SystemTap SDT) probe arguments from a BPF
 * program attached with ebpf.events.tracing.attach_usdt (or program.attach("usdt:...")).
 *
 * The public names and the maps are libbpf's, so a program written for libbpf's usdt.bpf.h
 * compiles unchanged:
 *
 *   SEC("usdt/path/to/binary:provider:name")     (or SEC("usdt") and attach with a target)
 *   int BPF_USDT(handler, long a, long b) { ... }
 *
 *   bpf_usdt_arg_cnt(ctx)          number of arguments of the probe that fired
 *   bpf_usdt_arg(ctx, n, &res)     argument n (0-based) as a 64-bit value; 0 or -errno
 *   bpf_usdt_arg_size(ctx, n)      its size in bytes
 *   bpf_usdt_cookie(ctx)           the cookie given to attach_usdt(..., cookie=)
 *
 * How it works: the loader (ebpf-events) decodes each probe site's argument locations from the
 * binary's .note.stapsdt, writes them as a struct __bpf_usdt_spec into the __bpf_usdt_specs
 * array, and gives the site's uprobe the slot number as its BPF cookie (Linux >= 5.15).  The
 * program reads the slot with bpf_get_attach_cookie() and fetches each argument from the saved
 * registers or from user memory.  Little-endian targets only (bpfel).
 */
#ifndef __EBPF_USDT_BPF_H
#define __EBPF_USDT_BPF_H

#include "bpf_helpers.h"

struct pt_regs; /* the program context; only its address is used here */

/* Slots in __bpf_usdt_specs: distinct argument layouts attached at once (override before including). */
#ifndef BPF_USDT_MAX_SPEC_CNT
#define BPF_USDT_MAX_SPEC_CNT 256
#endif
/* Entries of the IP -> spec id map libbpf uses on kernels without BPF cookies (declared, unused here). */
#ifndef BPF_USDT_MAX_IP_CNT
#define BPF_USDT_MAX_IP_CNT (4 * BPF_USDT_MAX_SPEC_CNT)
#endif
/* Arguments one probe may have; the spec layout depends on it, so it is fixed. */
#define BPF_USDT_MAX_ARG_CNT 12

/* Where an argument lives (the value of arg_type). */
enum __bpf_usdt_arg_type {
	BPF_USDT_ARG_CONST,     /* the value itself is val_off ("4@$5") */
	BPF_USDT_ARG_REG,       /* a register: the pt_regs field at reg_off ("-8@%rbx") */
	BPF_USDT_ARG_REG_DEREF, /* user memory at register + val_off ("-4@-20(%rbp)") */
};

/* One argument: 16 bytes, the layout libbpf and ebpf.events share. */
struct __bpf_usdt_arg_spec {
	__u64 val_off;       /* the constant, or the offset added to the register */
	__u8 arg_type;       /* enum __bpf_usdt_arg_type (the low byte of a 32-bit field) */
	__u8 __unused0;
	__u16 __unused1;     /* libbpf >= 1.7 keeps an index register and scale here; unused */
	short reg_off;       /* offsetof(struct pt_regs, register) */
	_Bool arg_signed;    /* sign-extend from the argument's size */
	char arg_bitshift;   /* 64 - 8 * size: shift out the bytes above the argument */
};

/* One probe site's arguments and the user's cookie (208 bytes). */
struct __bpf_usdt_spec {
	struct __bpf_usdt_arg_spec args[BPF_USDT_MAX_ARG_CNT];
	__u64 usdt_cookie;
	short arg_cnt;
};

/* Filled by the loader; key: spec id (the uprobe's BPF cookie). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, BPF_USDT_MAX_SPEC_CNT);
	__type(key, int);
	__type(value, struct __bpf_usdt_spec);
} __bpf_usdt_specs SEC(".maps") __weak;

/* libbpf's fallback for kernels without BPF cookies (instruction address -> spec id); kept so
 * objects have the same maps as with libbpf.  ebpf.events needs cookies and leaves it empty. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, BPF_USDT_MAX_IP_CNT);
	__type(key, long);
	__type(value, __u32);
} __bpf_usdt_ip_to_spec_id SEC(".maps") __weak;

#define __EBPF_USDT_ESRCH 3
#define __EBPF_USDT_ENOENT 2
#define __EBPF_USDT_EINVAL 22

/* The spec of the site that fired, or NULL when the program was attached without one. */
static __always_inline struct __bpf_usdt_spec *__bpf_usdt_spec_of(struct pt_regs *ctx)
{
	__u32 id = (__u32)bpf_get_attach_cookie(ctx);

	return bpf_map_lookup_elem(&__bpf_usdt_specs, &id);
}

/* The argument count of the probe that fired, or -ESRCH. */
static __always_inline int bpf_usdt_arg_cnt(struct pt_regs *ctx)
{
	struct __bpf_usdt_spec *spec = __bpf_usdt_spec_of(ctx);

	return spec ? spec->arg_cnt : -__EBPF_USDT_ESRCH;
}

/* The size in bytes of argument arg_num, or -ESRCH / -ENOENT. */
static __always_inline int bpf_usdt_arg_size(struct pt_regs *ctx, __u64 arg_num)
{
	struct __bpf_usdt_spec *spec = __bpf_usdt_spec_of(ctx);

	if (!spec)
		return -__EBPF_USDT_ESRCH;
	if (arg_num >= BPF_USDT_MAX_ARG_CNT || arg_num >= (__u64)spec->arg_cnt)
		return -__EBPF_USDT_ENOENT;
	return (unsigned int)(64 - spec->args[arg_num].arg_bitshift) / 8; /* BPF has no signed division */
}

/* Argument arg_num of the probe that fired, widened to 64 bits (sign-extended when the probe
 * says it is signed) into *res.  Returns 0, or a negative errno with *res set to 0. */
static __always_inline int bpf_usdt_arg(struct pt_regs *ctx, __u64 arg_num, long *res)
{
	struct __bpf_usdt_spec *spec = __bpf_usdt_spec_of(ctx);
	struct __bpf_usdt_arg_spec *arg;
	__u64 val = 0;
	int shift;
	long err;

	*res = 0;
	if (!spec)
		return -__EBPF_USDT_ESRCH;
	/* the constant bound first, so the verifier knows the index into args[] is in range */
	if (arg_num >= BPF_USDT_MAX_ARG_CNT)
		return -__EBPF_USDT_ENOENT;
	asm volatile("" : "+r"(arg_num)); /* keep the compiler from merging the two checks */
	if (arg_num >= (__u64)spec->arg_cnt)
		return -__EBPF_USDT_ENOENT;
	arg = &spec->args[arg_num];
	switch (arg->arg_type) {
	case BPF_USDT_ARG_CONST:
		val = arg->val_off;
		break;
	case BPF_USDT_ARG_REG:
		err = bpf_probe_read_kernel(&val, sizeof(val), (char *)ctx + arg->reg_off);
		if (err)
			return (int)err;
		break;
	case BPF_USDT_ARG_REG_DEREF:
		err = bpf_probe_read_kernel(&val, sizeof(val), (char *)ctx + arg->reg_off);
		if (err)
			return (int)err;
		err = bpf_probe_read_user(&val, sizeof(val), (void *)(val + arg->val_off));
		if (err)
			return (int)err;
		break;
	default:
		return -__EBPF_USDT_EINVAL;
	}
	/* Keep the argument's own bytes: shift them to the top, then back with or without the sign. */
	shift = arg->arg_bitshift;
	val <<= shift;
	*res = arg->arg_signed ? (long)val >> shift : (long)(val >> shift);
	return 0;
}

/* The cookie given when attaching (attach_usdt(..., cookie=)), or 0.  USDT programs cannot use
 * bpf_get_attach_cookie() for it: the BPF cookie carries the spec id. */
static __always_inline long bpf_usdt_cookie(struct pt_regs *ctx)
{
	struct __bpf_usdt_spec *spec = __bpf_usdt_spec_of(ctx);

	return spec ? (long)spec->usdt_cookie : 0;
}

/* Argument counting up to 12 (bpf_helpers.h's ___narg stops at 10). */
#define ___ebpf_usdt_nth(_0, _1, _2, _3, _4, _5, _6, _7, _8, _9, _10, _11, _12, N, ...) N
#define ___ebpf_usdt_narg(...) ___ebpf_usdt_nth(_, ##__VA_ARGS__, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0)
#define ___ebpf_usdt_cat(a, b) a##b
#define ___ebpf_usdt_apply(fn, n) ___ebpf_usdt_cat(fn, n)

/* ctx, then one statement expression fetching each declared argument. */
#define ___ebpf_usdt_get(n) ({ long __v; bpf_usdt_arg(ctx, n, &__v); __v; })
#define ___ebpf_usdt_args0() ctx
#define ___ebpf_usdt_args1(a) ___ebpf_usdt_args0(), ___ebpf_usdt_get(0)
#define ___ebpf_usdt_args2(a, rest...) ___ebpf_usdt_args1(rest), ___ebpf_usdt_get(1)
#define ___ebpf_usdt_args3(a, rest...) ___ebpf_usdt_args2(rest), ___ebpf_usdt_get(2)
#define ___ebpf_usdt_args4(a, rest...) ___ebpf_usdt_args3(rest), ___ebpf_usdt_get(3)
#define ___ebpf_usdt_args5(a, rest...) ___ebpf_usdt_args4(rest), ___ebpf_usdt_get(4)
#define ___ebpf_usdt_args6(a, rest...) ___ebpf_usdt_args5(rest), ___ebpf_usdt_get(5)
#define ___ebpf_usdt_args7(a, rest...) ___ebpf_usdt_args6(rest), ___ebpf_usdt_get(6)
#define ___ebpf_usdt_args8(a, rest...) ___ebpf_usdt_args7(rest), ___ebpf_usdt_get(7)
#define ___ebpf_usdt_args9(a, rest...) ___ebpf_usdt_args8(rest), ___ebpf_usdt_get(8)
#define ___ebpf_usdt_args10(a, rest...) ___ebpf_usdt_args9(rest), ___ebpf_usdt_get(9)
#define ___ebpf_usdt_args11(a, rest...) ___ebpf_usdt_args10(rest), ___ebpf_usdt_get(10)
#define ___ebpf_usdt_args12(a, rest...) ___ebpf_usdt_args11(rest), ___ebpf_usdt_get(11)
#define ___ebpf_usdt_args(args...) ___ebpf_usdt_apply(___ebpf_usdt_args, ___ebpf_usdt_narg(args))(args)

/*
 * BPF_USDT(name, long a, int b, ...): define the program `name(struct pt_regs *ctx)` whose body
 * sees the probe's arguments as typed parameters (fetched with bpf_usdt_arg, then converted to
 * the declared types); `ctx` stays available.
 */
#define BPF_USDT(name, args...)                                                                   \
	name(struct pt_regs *ctx);                                                                \
	static __always_inline typeof(name(0)) ____##name(struct pt_regs *ctx, ##args);          \
	typeof(name(0)) name(struct pt_regs *ctx)                                                 \
	{                                                                                         \
		_Pragma("GCC diagnostic push")                                                    \
		_Pragma("GCC diagnostic ignored \"-Wint-conversion\"")                            \
		return ____##name(___ebpf_usdt_args(args));                                       \
		_Pragma("GCC diagnostic pop")                                                     \
	}                                                                                         \
	static __always_inline typeof(name(0)) ____##name(struct pt_regs *ctx, ##args)

#endif /* __EBPF_USDT_BPF_H */
