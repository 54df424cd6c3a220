/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * <bpf/bpf_core_read.h> as shipped by ebpf-elf (written for this project, libbpf's names and
 * meanings): CO-RE ("compile once, run everywhere") reads.  Each field access becomes a
 * relocation in .BTF.ext that the loader rewrites for the running kernel's layout.
 *
 *   BPF_CORE_READ(task, mm, exe_file)              task->mm->exe_file, each step probe-read
 *   BPF_CORE_READ_INTO(&dst, task, real_parent, tgid)
 *   BPF_CORE_READ_STR_INTO(&buf, task, mm, ...)    the last step read as a string
 *   BPF_CORE_READ_USER*, BPF_PROBE_READ*            user memory / without relocations
 *   BPF_CORE_READ_BITFIELD(s, field)               direct read (BTF-typed pointers)
 *   BPF_CORE_READ_BITFIELD_PROBED(s, field)        probe-read
 *   bpf_core_field_exists(s->f) or (struct t, f), bpf_core_field_size/offset, bpf_core_type_*,
 *   bpf_core_enum_value(_exists), bpf_core_cast, bpf_core_read(_str/_user)
 */
#ifndef __BPF_CORE_READ_H__
#define __BPF_CORE_READ_H__

#include "bpf_helpers.h"

/* The kinds clang's __builtin_preserve_*_info builtins take (kept in .BTF.ext). */
enum bpf_field_info_kind {
	BPF_FIELD_BYTE_OFFSET = 0,
	BPF_FIELD_BYTE_SIZE = 1,
	BPF_FIELD_EXISTS = 2,
	BPF_FIELD_SIGNED = 3,
	BPF_FIELD_LSHIFT_U64 = 4,
	BPF_FIELD_RSHIFT_U64 = 5,
};
enum bpf_type_id_kind { BPF_TYPE_ID_LOCAL = 0, BPF_TYPE_ID_TARGET = 1 };
enum bpf_type_info_kind { BPF_TYPE_EXISTS = 0, BPF_TYPE_SIZE = 1, BPF_TYPE_MATCHES = 2 };
enum bpf_enum_value_kind { BPF_ENUMVAL_EXISTS = 0, BPF_ENUMVAL_VALUE = 1 };

#define __CORE_RELO(src, field, info) __builtin_preserve_field_info((src)->field, BPF_FIELD_##info)

/* bitfield reads: load the containing word, then shift left and right by relocated amounts. */
#define __CORE_BITFIELD_SHIFT(s, field, val) ({ \
	val <<= __CORE_RELO(s, field, LSHIFT_U64); \
	if (__CORE_RELO(s, field, SIGNED)) \
		val = ((long long)val) >> __CORE_RELO(s, field, RSHIFT_U64); \
	else \
		val = val >> __CORE_RELO(s, field, RSHIFT_U64); \
	val; \
})

/* Read a bitfield (or any integer field) through a probe read: for pointers the verifier cannot check. */
#define BPF_CORE_READ_BITFIELD_PROBED(s, field) ({ \
	unsigned long long __v = 0; \
	bpf_probe_read_kernel((void *)&__v, __CORE_RELO(s, field, BYTE_SIZE), \
			      (const void *)s + __CORE_RELO(s, field, BYTE_OFFSET)); \
	__CORE_BITFIELD_SHIFT(s, field, __v); \
})

/* Read a bitfield (or any integer field) directly: for pointers the verifier tracks (BTF, ctx). */
#define BPF_CORE_READ_BITFIELD(s, field) ({ \
	const void *__p = (const void *)s + __CORE_RELO(s, field, BYTE_OFFSET); \
	unsigned long long __v; \
	asm volatile("" : "=r"(__p) : "0"(__p)); \
	switch (__CORE_RELO(s, field, BYTE_SIZE)) { \
	case 1: __v = *(const unsigned char *)__p; break; \
	case 2: __v = *(const unsigned short *)__p; break; \
	case 4: __v = *(const unsigned int *)__p; break; \
	case 8: __v = *(const unsigned long long *)__p; break; \
	default: __v = 0; break; \
	} \
	__CORE_BITFIELD_SHIFT(s, field, __v); \
})

/* Write a bitfield through a BTF-typed pointer (struct_ops, kptrs). */
#define BPF_CORE_WRITE_BITFIELD(s, field, new_val) ({ \
	void *__p = (void *)s + __CORE_RELO(s, field, BYTE_OFFSET); \
	unsigned int __byte_size = __CORE_RELO(s, field, BYTE_SIZE); \
	unsigned int __lshift = __CORE_RELO(s, field, LSHIFT_U64); \
	unsigned int __rshift = __CORE_RELO(s, field, RSHIFT_U64); \
	unsigned long long __mask, __nval; \
	unsigned int __shift = __rshift - __lshift; /* the field's first bit in the word */ \
	__mask = ((~0ULL) >> __rshift) << __shift; \
	__nval = ((unsigned long long)(new_val) << __shift) & __mask; \
	switch (__byte_size) { \
	case 1: *(unsigned char *)__p = (*(unsigned char *)__p & ~__mask) | __nval; break; \
	case 2: *(unsigned short *)__p = (*(unsigned short *)__p & ~__mask) | __nval; break; \
	case 4: *(unsigned int *)__p = (*(unsigned int *)__p & ~__mask) | __nval; break; \
	case 8: *(unsigned long long *)__p = (*(unsigned long long *)__p & ~__mask) | __nval; break; \
	} \
})

/* One or two arguments: (s->field) or (struct type, field). */
#define ___bpf_field_ref1(field) (field)
#define ___bpf_field_ref2(type, field) (((typeof(type) *)0)->field)
#define ___bpf_field_ref(args...) ___bpf_apply(___bpf_field_ref, ___bpf_narg(args))(args)

/* 1 when the field exists in the running kernel's type. */
#define bpf_core_field_exists(field...) __builtin_preserve_field_info(___bpf_field_ref(field), BPF_FIELD_EXISTS)
/* The field's size in the running kernel. */
#define bpf_core_field_size(field...) __builtin_preserve_field_info(___bpf_field_ref(field), BPF_FIELD_BYTE_SIZE)
/* The field's byte offset in the running kernel. */
#define bpf_core_field_offset(field...) __builtin_preserve_field_info(___bpf_field_ref(field), BPF_FIELD_BYTE_OFFSET)

/* BTF type ids: in this object, and in the kernel. */
#define bpf_core_type_id_local(type) __builtin_btf_type_id(*(typeof(type) *)0, BPF_TYPE_ID_LOCAL)
#define bpf_core_type_id_kernel(type) __builtin_btf_type_id(*(typeof(type) *)0, BPF_TYPE_ID_TARGET)
/* 1 when the kernel has a compatible type of that name (flavours: struct x___old). */
#define bpf_core_type_exists(type) __builtin_preserve_type_info(*(typeof(type) *)0, BPF_TYPE_EXISTS)
/* 1 when the kernel's type matches this one field by field (clang >= 15). */
#define bpf_core_type_matches(type) __builtin_preserve_type_info(*(typeof(type) *)0, BPF_TYPE_MATCHES)
/* The kernel type's size. */
#define bpf_core_type_size(type) __builtin_preserve_type_info(*(typeof(type) *)0, BPF_TYPE_SIZE)

/* Enumerators: bpf_core_enum_value(enum pid_type, PIDTYPE_TGID). */
#define bpf_core_enum_value_exists(enum_type, enum_value) \
	__builtin_preserve_enum_value(*(typeof(enum_type) *)enum_value, BPF_ENUMVAL_EXISTS)
#define bpf_core_enum_value(enum_type, enum_value) \
	__builtin_preserve_enum_value(*(typeof(enum_type) *)enum_value, BPF_ENUMVAL_VALUE)

/* A BTF-typed read-only view of a kernel pointer (kfunc bpf_rdonly_cast, Linux >= 6.2). */
extern void *bpf_rdonly_cast(const void *obj, __u32 btf_id) __ksym __weak;
#define bpf_core_cast(ptr, type) ((typeof(type) *)bpf_rdonly_cast((ptr), bpf_core_type_id_kernel(type)))

/* Probe reads whose source address is a CO-RE relocated field access. */
#define bpf_core_read(dst, sz, src) \
	bpf_probe_read_kernel(dst, sz, (const void *)__builtin_preserve_access_index(src))
#define bpf_core_read_user(dst, sz, src) \
	bpf_probe_read_user(dst, sz, (const void *)__builtin_preserve_access_index(src))
#define bpf_core_read_str(dst, sz, src) \
	bpf_probe_read_kernel_str(dst, sz, (const void *)__builtin_preserve_access_index(src))
#define bpf_core_read_user_str(dst, sz, src) \
	bpf_probe_read_user_str(dst, sz, (const void *)__builtin_preserve_access_index(src))

/* The same reads without relocations (BPF_PROBE_READ*). */
#define ___bpf_plain_read(dst, sz, src) bpf_probe_read_kernel(dst, sz, (const void *)(src))
#define ___bpf_plain_read_str(dst, sz, src) bpf_probe_read_kernel_str(dst, sz, (const void *)(src))
#define ___bpf_plain_read_user(dst, sz, src) bpf_probe_read_user(dst, sz, (const void *)(src))
#define ___bpf_plain_read_user_str(dst, sz, src) bpf_probe_read_user_str(dst, sz, (const void *)(src))

/* src->a->b->c as an expression (for typeof). */
#define ___bpf_arrow1(a) a
#define ___bpf_arrow2(a, b) a->b
#define ___bpf_arrow3(a, b, c) a->b->c
#define ___bpf_arrow4(a, b, c, d) a->b->c->d
#define ___bpf_arrow5(a, b, c, d, e) a->b->c->d->e
#define ___bpf_arrow6(a, b, c, d, e, f) a->b->c->d->e->f
#define ___bpf_arrow7(a, b, c, d, e, f, g) a->b->c->d->e->f->g
#define ___bpf_arrow8(a, b, c, d, e, f, g, h) a->b->c->d->e->f->g->h
#define ___bpf_arrow9(a, b, c, d, e, f, g, h, i) a->b->c->d->e->f->g->h->i
#define ___bpf_arrow10(a, b, c, d, e, f, g, h, i, j) a->b->c->d->e->f->g->h->i->j
#define ___bpf_arrow(args...) ___bpf_apply(___bpf_arrow, ___bpf_narg(args))(args)
#define ___bpf_type(args...) typeof(___bpf_arrow(args))

/*
 * ___bpf_rdN(fn, last, dst, src, f1..fN): read src->f1 into a temporary with fn, then the next
 * step from that pointer, ..., and the last step into dst with last.  Each level has its own
 * temporary (__bpf_tN), so nested levels never shadow the pointer they read from; "+ 0" drops
 * the qualifiers of a const source's pointer fields (a const temporary could not be read into).
 */
#define ___bpf_rd1(fn, last, dst, src, a) last((void *)(dst), sizeof(*(dst)), &((src)->a))
#define ___bpf_rd2(fn, last, dst, src, a, ...) ({ typeof((src)->a + 0) __bpf_t2; \
	fn((void *)&__bpf_t2, sizeof(__bpf_t2), &((src)->a)); ___bpf_rd1(fn, last, dst, __bpf_t2, __VA_ARGS__); })
#define ___bpf_rd3(fn, last, dst, src, a, ...) ({ typeof((src)->a + 0) __bpf_t3; \
	fn((void *)&__bpf_t3, sizeof(__bpf_t3), &((src)->a)); ___bpf_rd2(fn, last, dst, __bpf_t3, __VA_ARGS__); })
#define ___bpf_rd4(fn, last, dst, src, a, ...) ({ typeof((src)->a + 0) __bpf_t4; \
	fn((void *)&__bpf_t4, sizeof(__bpf_t4), &((src)->a)); ___bpf_rd3(fn, last, dst, __bpf_t4, __VA_ARGS__); })
#define ___bpf_rd5(fn, last, dst, src, a, ...) ({ typeof((src)->a + 0) __bpf_t5; \
	fn((void *)&__bpf_t5, sizeof(__bpf_t5), &((src)->a)); ___bpf_rd4(fn, last, dst, __bpf_t5, __VA_ARGS__); })
#define ___bpf_rd6(fn, last, dst, src, a, ...) ({ typeof((src)->a + 0) __bpf_t6; \
	fn((void *)&__bpf_t6, sizeof(__bpf_t6), &((src)->a)); ___bpf_rd5(fn, last, dst, __bpf_t6, __VA_ARGS__); })
#define ___bpf_rd7(fn, last, dst, src, a, ...) ({ typeof((src)->a + 0) __bpf_t7; \
	fn((void *)&__bpf_t7, sizeof(__bpf_t7), &((src)->a)); ___bpf_rd6(fn, last, dst, __bpf_t7, __VA_ARGS__); })
#define ___bpf_rd8(fn, last, dst, src, a, ...) ({ typeof((src)->a + 0) __bpf_t8; \
	fn((void *)&__bpf_t8, sizeof(__bpf_t8), &((src)->a)); ___bpf_rd7(fn, last, dst, __bpf_t8, __VA_ARGS__); })
#define ___bpf_rd9(fn, last, dst, src, a, ...) ({ typeof((src)->a + 0) __bpf_t9; \
	fn((void *)&__bpf_t9, sizeof(__bpf_t9), &((src)->a)); ___bpf_rd8(fn, last, dst, __bpf_t9, __VA_ARGS__); })
#define ___bpf_read(fn, last, dst, src, a, ...) \
	___bpf_apply(___bpf_rd, ___bpf_narg(a, ##__VA_ARGS__))(fn, last, dst, src, a, ##__VA_ARGS__)

/* Read src->a->b->... into *dst (each step relocated); returns the last read's result. */
#define BPF_CORE_READ_INTO(dst, src, a, ...) ___bpf_read(bpf_core_read, bpf_core_read, dst, src, a, ##__VA_ARGS__)
#define BPF_CORE_READ_USER_INTO(dst, src, a, ...) \
	___bpf_read(bpf_core_read_user, bpf_core_read_user, dst, src, a, ##__VA_ARGS__)
#define BPF_PROBE_READ_INTO(dst, src, a, ...) \
	___bpf_read(___bpf_plain_read, ___bpf_plain_read, dst, src, a, ##__VA_ARGS__)
#define BPF_PROBE_READ_USER_INTO(dst, src, a, ...) \
	___bpf_read(___bpf_plain_read_user, ___bpf_plain_read_user, dst, src, a, ##__VA_ARGS__)

/* The same, the last step read as a NUL-terminated string (returns its length or an error). */
#define BPF_CORE_READ_STR_INTO(dst, src, a, ...) \
	___bpf_read(bpf_core_read, bpf_core_read_str, dst, src, a, ##__VA_ARGS__)
#define BPF_CORE_READ_USER_STR_INTO(dst, src, a, ...) \
	___bpf_read(bpf_core_read_user, bpf_core_read_user_str, dst, src, a, ##__VA_ARGS__)
#define BPF_PROBE_READ_STR_INTO(dst, src, a, ...) \
	___bpf_read(___bpf_plain_read, ___bpf_plain_read_str, dst, src, a, ##__VA_ARGS__)
#define BPF_PROBE_READ_USER_STR_INTO(dst, src, a, ...) \
	___bpf_read(___bpf_plain_read_user, ___bpf_plain_read_user_str, dst, src, a, ##__VA_ARGS__)

/* src->a->b->... as a value (up to 9 steps): BPF_CORE_READ(task, real_parent, tgid). */
#define BPF_CORE_READ(src, a, ...) ({ \
	___bpf_type((src), a, ##__VA_ARGS__) __bpf_r; \
	BPF_CORE_READ_INTO(&__bpf_r, (src), a, ##__VA_ARGS__); \
	__bpf_r; \
})
#define BPF_CORE_READ_USER(src, a, ...) ({ \
	___bpf_type((src), a, ##__VA_ARGS__) __bpf_r; \
	BPF_CORE_READ_USER_INTO(&__bpf_r, (src), a, ##__VA_ARGS__); \
	__bpf_r; \
})
#define BPF_PROBE_READ(src, a, ...) ({ \
	___bpf_type((src), a, ##__VA_ARGS__) __bpf_r; \
	BPF_PROBE_READ_INTO(&__bpf_r, (src), a, ##__VA_ARGS__); \
	__bpf_r; \
})
#define BPF_PROBE_READ_USER(src, a, ...) ({ \
	___bpf_type((src), a, ##__VA_ARGS__) __bpf_r; \
	BPF_PROBE_READ_USER_INTO(&__bpf_r, (src), a, ##__VA_ARGS__); \
	__bpf_r; \
})

#endif /* __BPF_CORE_READ_H__ */
