/* The maps pylibbpf drives in bench_maps.py: the same shapes as the other figures.
 * Built at bench time: python3 -m ziglang cc -target bpfel-freestanding -O2 -g -c bench_maps.bpf.c
 * No headers: libbpf's map definition macros are spelled out.
 */
typedef unsigned int __u32;
typedef unsigned long long __u64;

#define SEC(name) __attribute__((section(name), used))
#define __uint(name, val) int (*name)[val]
#define __type(name, val) typeof(val) *name

struct {
    __uint(type, 1); /* BPF_MAP_TYPE_HASH */
    __uint(max_entries, 20000);
    __type(key, __u32);
    __type(value, __u64);
} bench_hash SEC(".maps");

struct {
    __uint(type, 2); /* BPF_MAP_TYPE_ARRAY */
    __uint(max_entries, 10000);
    __type(key, __u32);
    __type(value, __u64);
} bench_array SEC(".maps");

/* libbpf loads an object's programs with its maps: one that does nothing */
SEC("socket") int bench_prog(void *ctx) { return 0; }

char _license[] SEC("license") = "GPL";
