/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * <bpf/bpf_tracing.h> as shipped by ebpf-elf (written for this project, libbpf's names and
 * meanings): where a probed function's arguments live in struct pt_regs on each architecture
 * (PT_REGS_PARM1..8, PT_REGS_RC/SP/FP/IP, their _CORE and _SYSCALL forms) and the program
 * wrappers that hand them to you as typed C parameters: BPF_PROG, BPF_PROG2, BPF_KPROBE,
 * BPF_KRETPROBE, BPF_KSYSCALL, BPF_UPROBE, BPF_URETPROBE.
 *
 * The architecture comes from __TARGET_ARCH_x86 / __TARGET_ARCH_arm64 (ebpf.elf.compile_c
 * defines the running machine's), else from the host compiler's own macros.
 */
#ifndef __BPF_TRACING_H__
#define __BPF_TRACING_H__

#include "bpf_helpers.h"

#if defined(__TARGET_ARCH_x86)
#define bpf_target_x86
#elif defined(__TARGET_ARCH_arm64)
#define bpf_target_arm64
#elif defined(__x86_64__)
#define bpf_target_x86
#elif defined(__aarch64__)
#define bpf_target_arm64
#endif

#if defined(bpf_target_x86)
/* x86_64 System V: rdi, rsi, rdx, rcx, r8, r9; syscalls pass the 4th argument in r10. */
#if defined(__KERNEL__) || defined(__VMLINUX_H__)
#define __PT_PARM1_REG di
#define __PT_PARM2_REG si
#define __PT_PARM3_REG dx
#define __PT_PARM4_REG cx
#define __PT_PARM5_REG r8
#define __PT_PARM6_REG r9
#define __PT_PARM4_SYSCALL_REG r10
#define __PT_RET_REG sp
#define __PT_FP_REG bp
#define __PT_RC_REG ax
#define __PT_SP_REG sp
#define __PT_IP_REG ip
#else /* the uapi struct pt_regs of <asm/ptrace.h> */
#define __PT_PARM1_REG rdi
#define __PT_PARM2_REG rsi
#define __PT_PARM3_REG rdx
#define __PT_PARM4_REG rcx
#define __PT_PARM5_REG r8
#define __PT_PARM6_REG r9
#define __PT_PARM4_SYSCALL_REG r10
#define __PT_RET_REG rsp
#define __PT_FP_REG rbp
#define __PT_RC_REG rax
#define __PT_SP_REG rsp
#define __PT_IP_REG rip
#endif
#define PT_REGS_SYSCALL_REGS(ctx) ((struct pt_regs *)PT_REGS_PARM1(ctx))
/* Arguments 7 and 8 are on the stack, above the return address. */
#define __PT_STACK_PARM(x, n) ({ unsigned long __bpf_sv = 0; \
	bpf_probe_read_kernel(&__bpf_sv, sizeof(__bpf_sv), (void *)(PT_REGS_SP(x) + 8 * ((n) - 6))); __bpf_sv; })
#define PT_REGS_PARM7(x) __PT_STACK_PARM(x, 7)
#define PT_REGS_PARM8(x) __PT_STACK_PARM(x, 8)
#define PT_REGS_PARM7_CORE(x) __PT_STACK_PARM(x, 7)
#define PT_REGS_PARM8_CORE(x) __PT_STACK_PARM(x, 8)

#elif defined(bpf_target_arm64)
/* arm64 AAPCS64: x0..x7; struct pt_regs starts with the uapi struct user_pt_regs. */
struct pt_regs___arm64 { unsigned long orig_x0; } __attribute__((preserve_access_index));
#define __PT_REGS_CAST(x) ((struct user_pt_regs *)(x))
#define __PT_PARM1_REG regs[0]
#define __PT_PARM2_REG regs[1]
#define __PT_PARM3_REG regs[2]
#define __PT_PARM4_REG regs[3]
#define __PT_PARM5_REG regs[4]
#define __PT_PARM6_REG regs[5]
#define __PT_PARM7_REG regs[6]
#define __PT_PARM8_REG regs[7]
#define __PT_RET_REG regs[30]
#define __PT_FP_REG regs[29]
#define __PT_RC_REG regs[0]
#define __PT_SP_REG sp
#define __PT_IP_REG pc
/* The syscall's first argument: x0 is overwritten by the return value, orig_x0 keeps it. */
#define PT_REGS_PARM1_SYSCALL(x) (((const struct pt_regs___arm64 *)(x))->orig_x0)
#define PT_REGS_PARM1_CORE_SYSCALL(x) BPF_CORE_READ((struct pt_regs___arm64 *)(x), orig_x0)
#define PT_REGS_SYSCALL_REGS(ctx) ((struct pt_regs *)PT_REGS_PARM1(ctx))
#endif

#ifndef __PT_REGS_CAST
#define __PT_REGS_CAST(x) (x)
#endif

#if defined(__PT_PARM1_REG)
#include "bpf_core_read.h"

#define PT_REGS_PARM1(x) (__PT_REGS_CAST(x)->__PT_PARM1_REG)
#define PT_REGS_PARM2(x) (__PT_REGS_CAST(x)->__PT_PARM2_REG)
#define PT_REGS_PARM3(x) (__PT_REGS_CAST(x)->__PT_PARM3_REG)
#define PT_REGS_PARM4(x) (__PT_REGS_CAST(x)->__PT_PARM4_REG)
#define PT_REGS_PARM5(x) (__PT_REGS_CAST(x)->__PT_PARM5_REG)
#define PT_REGS_PARM6(x) (__PT_REGS_CAST(x)->__PT_PARM6_REG)
#ifdef __PT_PARM7_REG
#define PT_REGS_PARM7(x) (__PT_REGS_CAST(x)->__PT_PARM7_REG)
#define PT_REGS_PARM8(x) (__PT_REGS_CAST(x)->__PT_PARM8_REG)
#define PT_REGS_PARM7_CORE(x) BPF_CORE_READ(__PT_REGS_CAST(x), __PT_PARM7_REG)
#define PT_REGS_PARM8_CORE(x) BPF_CORE_READ(__PT_REGS_CAST(x), __PT_PARM8_REG)
#endif
#define PT_REGS_RET(x) (__PT_REGS_CAST(x)->__PT_RET_REG)
#define PT_REGS_FP(x) (__PT_REGS_CAST(x)->__PT_FP_REG)
#define PT_REGS_RC(x) (__PT_REGS_CAST(x)->__PT_RC_REG)
#define PT_REGS_SP(x) (__PT_REGS_CAST(x)->__PT_SP_REG)
#define PT_REGS_IP(x) (__PT_REGS_CAST(x)->__PT_IP_REG)

/* _CORE: read through bpf_probe_read_kernel with CO-RE relocations (pt_regs not from ctx). */
#define PT_REGS_PARM1_CORE(x) BPF_CORE_READ(__PT_REGS_CAST(x), __PT_PARM1_REG)
#define PT_REGS_PARM2_CORE(x) BPF_CORE_READ(__PT_REGS_CAST(x), __PT_PARM2_REG)
#define PT_REGS_PARM3_CORE(x) BPF_CORE_READ(__PT_REGS_CAST(x), __PT_PARM3_REG)
#define PT_REGS_PARM4_CORE(x) BPF_CORE_READ(__PT_REGS_CAST(x), __PT_PARM4_REG)
#define PT_REGS_PARM5_CORE(x) BPF_CORE_READ(__PT_REGS_CAST(x), __PT_PARM5_REG)
#define PT_REGS_PARM6_CORE(x) BPF_CORE_READ(__PT_REGS_CAST(x), __PT_PARM6_REG)
#define PT_REGS_RET_CORE(x) BPF_CORE_READ(__PT_REGS_CAST(x), __PT_RET_REG)
#define PT_REGS_FP_CORE(x) BPF_CORE_READ(__PT_REGS_CAST(x), __PT_FP_REG)
#define PT_REGS_RC_CORE(x) BPF_CORE_READ(__PT_REGS_CAST(x), __PT_RC_REG)
#define PT_REGS_SP_CORE(x) BPF_CORE_READ(__PT_REGS_CAST(x), __PT_SP_REG)
#define PT_REGS_IP_CORE(x) BPF_CORE_READ(__PT_REGS_CAST(x), __PT_IP_REG)

/* A kprobe's return address / a kretprobe's return value into ip. */
#define BPF_KPROBE_READ_RET_IP(ip, ctx) ({ bpf_probe_read_kernel(&(ip), sizeof(ip), (void *)PT_REGS_RET(ctx)); })
#define BPF_KRETPROBE_READ_RET_IP BPF_KPROBE_READ_RET_IP

/* The syscall's own arguments (the pt_regs the syscall wrapper received). */
#ifndef PT_REGS_PARM1_SYSCALL
#define PT_REGS_PARM1_SYSCALL(x) PT_REGS_PARM1(x)
#define PT_REGS_PARM1_CORE_SYSCALL(x) PT_REGS_PARM1_CORE(x)
#endif
#define PT_REGS_PARM2_SYSCALL(x) PT_REGS_PARM2(x)
#define PT_REGS_PARM3_SYSCALL(x) PT_REGS_PARM3(x)
#ifdef __PT_PARM4_SYSCALL_REG
#define PT_REGS_PARM4_SYSCALL(x) (__PT_REGS_CAST(x)->__PT_PARM4_SYSCALL_REG)
#define PT_REGS_PARM4_CORE_SYSCALL(x) BPF_CORE_READ(__PT_REGS_CAST(x), __PT_PARM4_SYSCALL_REG)
#else
#define PT_REGS_PARM4_SYSCALL(x) PT_REGS_PARM4(x)
#define PT_REGS_PARM4_CORE_SYSCALL(x) PT_REGS_PARM4_CORE(x)
#endif
#define PT_REGS_PARM5_SYSCALL(x) PT_REGS_PARM5(x)
#define PT_REGS_PARM6_SYSCALL(x) PT_REGS_PARM6(x)
#define PT_REGS_PARM2_CORE_SYSCALL(x) PT_REGS_PARM2_CORE(x)
#define PT_REGS_PARM3_CORE_SYSCALL(x) PT_REGS_PARM3_CORE(x)
#define PT_REGS_PARM5_CORE_SYSCALL(x) PT_REGS_PARM5_CORE(x)
#define PT_REGS_PARM6_CORE_SYSCALL(x) PT_REGS_PARM6_CORE(x)
/* x86_64 and arm64 pass six syscall arguments in registers: as in libbpf, the 7th's names exist
 * (a program may test for them) and using one is a compile error. */
#define PT_REGS_PARM7_SYSCALL(x) (__PT_REGS_CAST(x)->__unsupported__)
#define PT_REGS_PARM7_CORE_SYSCALL(x) BPF_CORE_READ(__PT_REGS_CAST(x), __unsupported__)

#else /* no known target: every use is a compile-time error that says why */
#define __bpf_no_target _Pragma("GCC error \"bpf_tracing.h: define __TARGET_ARCH_x86 or __TARGET_ARCH_arm64\"")
#define PT_REGS_PARM1(x) ({ __bpf_no_target 0l; })
#define PT_REGS_PARM2(x) ({ __bpf_no_target 0l; })
#define PT_REGS_PARM3(x) ({ __bpf_no_target 0l; })
#define PT_REGS_PARM4(x) ({ __bpf_no_target 0l; })
#define PT_REGS_PARM5(x) ({ __bpf_no_target 0l; })
#define PT_REGS_RC(x) ({ __bpf_no_target 0l; })
#endif

/* ---- BPF_PROG: fentry/fexit/tp_btf/lsm/struct_ops programs get typed arguments from ctx[i]. ---- */
#define ___bpf_ctx_cast0() ctx
#define ___bpf_ctx_cast1(x) ___bpf_ctx_cast0(), (void *)ctx[0]
#define ___bpf_ctx_cast2(x, args...) ___bpf_ctx_cast1(args), (void *)ctx[1]
#define ___bpf_ctx_cast3(x, args...) ___bpf_ctx_cast2(args), (void *)ctx[2]
#define ___bpf_ctx_cast4(x, args...) ___bpf_ctx_cast3(args), (void *)ctx[3]
#define ___bpf_ctx_cast5(x, args...) ___bpf_ctx_cast4(args), (void *)ctx[4]
#define ___bpf_ctx_cast6(x, args...) ___bpf_ctx_cast5(args), (void *)ctx[5]
#define ___bpf_ctx_cast7(x, args...) ___bpf_ctx_cast6(args), (void *)ctx[6]
#define ___bpf_ctx_cast8(x, args...) ___bpf_ctx_cast7(args), (void *)ctx[7]
#define ___bpf_ctx_cast9(x, args...) ___bpf_ctx_cast8(args), (void *)ctx[8]
#define ___bpf_ctx_cast10(x, args...) ___bpf_ctx_cast9(args), (void *)ctx[9]
#define ___bpf_ctx_cast11(x, args...) ___bpf_ctx_cast10(args), (void *)ctx[10]
#define ___bpf_ctx_cast12(x, args...) ___bpf_ctx_cast11(args), (void *)ctx[11]
#define ___bpf_ctx_cast(args...) ___bpf_apply(___bpf_ctx_cast, ___bpf_narg(args))(args)

/*
 * BPF_PROG(name, struct task_struct *prev, struct task_struct *next) { ... }
 * defines the program name(ctx) and an inlined body that sees the arguments by name.
 */
#define BPF_PROG(name, args...) \
name(unsigned long long *ctx); \
static __always_inline typeof(name(0)) ____##name(unsigned long long *ctx, ##args); \
typeof(name(0)) name(unsigned long long *ctx) \
{ \
	_Pragma("GCC diagnostic push") \
	_Pragma("GCC diagnostic ignored \"-Wint-conversion\"") \
	return ____##name(___bpf_ctx_cast(args)); \
	_Pragma("GCC diagnostic pop") \
} \
static __always_inline typeof(name(0)) ____##name(unsigned long long *ctx, ##args)

/*
 * BPF_PROG2(name, type1, arg1, type2, arg2, ...): like BPF_PROG, for arguments passed by value
 * that may be structs of up to 16 bytes (each takes one or two ctx slots, as the kernel does).
 */
#define ___bpf_slots(type) (sizeof(type) > 8 ? 2 : 1)
#define ___bpf_ctx_arg(type, slot) \
	__builtin_choose_expr(sizeof(type) > 8, \
		({ union { unsigned long long z[2]; typeof(type) v; } ___u = { .z = { ctx[slot], ctx[(slot) + 1] } }; ___u.v; }), \
		({ union { unsigned long long z[1]; typeof(type) v; } ___u = { .z = { ctx[slot] } }; ___u.v; }))
#define ___bpf_p2_params0()
#define ___bpf_p2_params2(t, x) , t x
#define ___bpf_p2_params4(t, x, args...) , t x ___bpf_p2_params2(args)
#define ___bpf_p2_params6(t, x, args...) , t x ___bpf_p2_params4(args)
#define ___bpf_p2_params8(t, x, args...) , t x ___bpf_p2_params6(args)
#define ___bpf_p2_params10(t, x, args...) , t x ___bpf_p2_params8(args)
#define ___bpf_p2_params12(t, x, args...) , t x ___bpf_p2_params10(args)
#define ___bpf_p2_params(args...) ___bpf_apply(___bpf_p2_params, ___bpf_narg(args))(args)
#define ___bpf_p2_args0(s)
#define ___bpf_p2_args2(s, t, x) , ___bpf_ctx_arg(t, s)
#define ___bpf_p2_args4(s, t, x, args...) , ___bpf_ctx_arg(t, s) ___bpf_p2_args2(s + ___bpf_slots(t), args)
#define ___bpf_p2_args6(s, t, x, args...) , ___bpf_ctx_arg(t, s) ___bpf_p2_args4(s + ___bpf_slots(t), args)
#define ___bpf_p2_args8(s, t, x, args...) , ___bpf_ctx_arg(t, s) ___bpf_p2_args6(s + ___bpf_slots(t), args)
#define ___bpf_p2_args10(s, t, x, args...) , ___bpf_ctx_arg(t, s) ___bpf_p2_args8(s + ___bpf_slots(t), args)
#define ___bpf_p2_args12(s, t, x, args...) , ___bpf_ctx_arg(t, s) ___bpf_p2_args10(s + ___bpf_slots(t), args)
#define ___bpf_p2_args(args...) ___bpf_apply(___bpf_p2_args, ___bpf_narg(args))(0, ##args)

#define BPF_PROG2(name, args...) \
name(unsigned long long *ctx); \
static __always_inline typeof(name(0)) ____##name(unsigned long long *ctx ___bpf_p2_params(args)); \
typeof(name(0)) name(unsigned long long *ctx) \
{ \
	return ____##name(ctx ___bpf_p2_args(args)); \
} \
static __always_inline typeof(name(0)) ____##name(unsigned long long *ctx ___bpf_p2_params(args))

/* ---- BPF_KPROBE / BPF_UPROBE: arguments from the probed function's registers. ---- */
struct pt_regs;

#define ___bpf_kprobe_args0() ctx
#define ___bpf_kprobe_args1(x) ___bpf_kprobe_args0(), (unsigned long long)PT_REGS_PARM1(ctx)
#define ___bpf_kprobe_args2(x, args...) ___bpf_kprobe_args1(args), (unsigned long long)PT_REGS_PARM2(ctx)
#define ___bpf_kprobe_args3(x, args...) ___bpf_kprobe_args2(args), (unsigned long long)PT_REGS_PARM3(ctx)
#define ___bpf_kprobe_args4(x, args...) ___bpf_kprobe_args3(args), (unsigned long long)PT_REGS_PARM4(ctx)
#define ___bpf_kprobe_args5(x, args...) ___bpf_kprobe_args4(args), (unsigned long long)PT_REGS_PARM5(ctx)
#define ___bpf_kprobe_args6(x, args...) ___bpf_kprobe_args5(args), (unsigned long long)PT_REGS_PARM6(ctx)
#define ___bpf_kprobe_args7(x, args...) ___bpf_kprobe_args6(args), (unsigned long long)PT_REGS_PARM7(ctx)
#define ___bpf_kprobe_args8(x, args...) ___bpf_kprobe_args7(args), (unsigned long long)PT_REGS_PARM8(ctx)
#define ___bpf_kprobe_args(args...) ___bpf_apply(___bpf_kprobe_args, ___bpf_narg(args))(args)

/* BPF_KPROBE(name, struct file *file, int flags) { ... }: a kprobe with typed arguments. */
#define BPF_KPROBE(name, args...) \
name(struct pt_regs *ctx); \
static __always_inline typeof(name(0)) ____##name(struct pt_regs *ctx, ##args); \
typeof(name(0)) name(struct pt_regs *ctx) \
{ \
	_Pragma("GCC diagnostic push") \
	_Pragma("GCC diagnostic ignored \"-Wint-conversion\"") \
	return ____##name(___bpf_kprobe_args(args)); \
	_Pragma("GCC diagnostic pop") \
} \
static __always_inline typeof(name(0)) ____##name(struct pt_regs *ctx, ##args)

#define ___bpf_kretprobe_args0() ctx
#define ___bpf_kretprobe_args1(x) ___bpf_kretprobe_args0(), (unsigned long long)PT_REGS_RC(ctx)
#define ___bpf_kretprobe_args(args...) ___bpf_apply(___bpf_kretprobe_args, ___bpf_narg(args))(args)

/* BPF_KRETPROBE(name, long ret) { ... }: a kretprobe seeing the return value. */
#define BPF_KRETPROBE(name, args...) \
name(struct pt_regs *ctx); \
static __always_inline typeof(name(0)) ____##name(struct pt_regs *ctx, ##args); \
typeof(name(0)) name(struct pt_regs *ctx) \
{ \
	_Pragma("GCC diagnostic push") \
	_Pragma("GCC diagnostic ignored \"-Wint-conversion\"") \
	return ____##name(___bpf_kretprobe_args(args)); \
	_Pragma("GCC diagnostic pop") \
} \
static __always_inline typeof(name(0)) ____##name(struct pt_regs *ctx, ##args)

#define BPF_UPROBE(name, args...) BPF_KPROBE(name, ##args)
#define BPF_URETPROBE(name, args...) BPF_KRETPROBE(name, ##args)

/* ---- BPF_KSYSCALL: a kprobe on a syscall (SEC("ksyscall/openat")), with the syscall's arguments. ---- */
#define ___bpf_syscall_args0() ctx
#define ___bpf_syscall_args1(x) ___bpf_syscall_args0(), (unsigned long long)PT_REGS_PARM1_SYSCALL(regs)
#define ___bpf_syscall_args2(x, args...) ___bpf_syscall_args1(args), (unsigned long long)PT_REGS_PARM2_SYSCALL(regs)
#define ___bpf_syscall_args3(x, args...) ___bpf_syscall_args2(args), (unsigned long long)PT_REGS_PARM3_SYSCALL(regs)
#define ___bpf_syscall_args4(x, args...) ___bpf_syscall_args3(args), (unsigned long long)PT_REGS_PARM4_SYSCALL(regs)
#define ___bpf_syscall_args5(x, args...) ___bpf_syscall_args4(args), (unsigned long long)PT_REGS_PARM5_SYSCALL(regs)
#define ___bpf_syscall_args6(x, args...) ___bpf_syscall_args5(args), (unsigned long long)PT_REGS_PARM6_SYSCALL(regs)
#define ___bpf_syscall_args(args...) ___bpf_apply(___bpf_syscall_args, ___bpf_narg(args))(args)

/* With a syscall wrapper the probed function gets a pointer to the user's pt_regs: probe-read it. */
#define ___bpf_syswrap_args0() ctx
#define ___bpf_syswrap_args1(x) ___bpf_syswrap_args0(), (unsigned long long)PT_REGS_PARM1_CORE_SYSCALL(regs)
#define ___bpf_syswrap_args2(x, args...) ___bpf_syswrap_args1(args), (unsigned long long)PT_REGS_PARM2_CORE_SYSCALL(regs)
#define ___bpf_syswrap_args3(x, args...) ___bpf_syswrap_args2(args), (unsigned long long)PT_REGS_PARM3_CORE_SYSCALL(regs)
#define ___bpf_syswrap_args4(x, args...) ___bpf_syswrap_args3(args), (unsigned long long)PT_REGS_PARM4_CORE_SYSCALL(regs)
#define ___bpf_syswrap_args5(x, args...) ___bpf_syswrap_args4(args), (unsigned long long)PT_REGS_PARM5_CORE_SYSCALL(regs)
#define ___bpf_syswrap_args6(x, args...) ___bpf_syswrap_args5(args), (unsigned long long)PT_REGS_PARM6_CORE_SYSCALL(regs)
#define ___bpf_syswrap_args(args...) ___bpf_apply(___bpf_syswrap_args, ___bpf_narg(args))(args)

/* Whether syscalls go through wrappers taking a pt_regs pointer; the loader fills it in. */
extern _Bool LINUX_HAS_SYSCALL_WRAPPER __kconfig;

#define BPF_KSYSCALL(name, args...) \
name(struct pt_regs *ctx); \
static __always_inline typeof(name(0)) ____##name(struct pt_regs *ctx, ##args); \
typeof(name(0)) name(struct pt_regs *ctx) \
{ \
	struct pt_regs *regs = LINUX_HAS_SYSCALL_WRAPPER ? PT_REGS_SYSCALL_REGS(ctx) : ctx; \
	_Pragma("GCC diagnostic push") \
	_Pragma("GCC diagnostic ignored \"-Wint-conversion\"") \
	if (LINUX_HAS_SYSCALL_WRAPPER) \
		return ____##name(___bpf_syswrap_args(args)); \
	else \
		return ____##name(___bpf_syscall_args(args)); \
	_Pragma("GCC diagnostic pop") \
} \
static __always_inline typeof(name(0)) ____##name(struct pt_regs *ctx, ##args)

#define BPF_KPROBE_SYSCALL BPF_KSYSCALL

#endif /* __BPF_TRACING_H__ */
