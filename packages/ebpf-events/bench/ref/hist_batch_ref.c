/* C reference for bench_hist.py: read a keyed log2 histogram map the way a C tool does, with
 * no libbpf: BPF_OBJ_GET of the pinned hash map (u64 key = section << 32 | slot, u64 count),
 * BPF_MAP_LOOKUP_BATCH over every entry (as bpf_map_lookup_batch() does), and each count added
 * into a per-section slot array found by a linear-probing table of sections.
 *
 * usage: hist_batch_ref PINNED_MAP_PATH ROUNDS
 * prints: {"keys": N, "sections": S, "ns": BEST}
 * build: python3 -m ziglang cc -O2 -target x86_64-linux-gnu hist_batch_ref.c -o hist_batch_ref
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/bpf.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define SLOTS 65
#define TABLE (1u << 16)
#define CHUNK 4096

static int sys_bpf(int cmd, union bpf_attr *attr) { return (int)syscall(__NR_bpf, cmd, attr, sizeof(*attr)); }

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

struct section { uint32_t id; int used; uint64_t counts[SLOTS]; };

static struct section *table;

static struct section *find(uint32_t id, size_t *nsections) {
    uint32_t h = (id * 2654435761u) & (TABLE - 1);
    while (table[h].used && table[h].id != id) h = (h + 1) & (TABLE - 1);
    if (!table[h].used) { table[h].used = 1; table[h].id = id; (*nsections)++; }
    return &table[h];
}

int main(int argc, char **argv) {
    if (argc != 3) { fprintf(stderr, "usage: %s PINNED_MAP ROUNDS\n", argv[0]); return 2; }
    union bpf_attr attr;
    memset(&attr, 0, sizeof(attr));
    attr.pathname = (uint64_t)(uintptr_t)argv[1];
    int fd = sys_bpf(BPF_OBJ_GET, &attr);
    if (fd < 0) { perror("BPF_OBJ_GET"); return 1; }
    int rounds = atoi(argv[2]);
    uint64_t *keys = malloc(CHUNK * 8), *vals = malloc(CHUNK * 8);
    table = calloc(TABLE, sizeof(*table));
    uint64_t best = ~0ull;
    size_t nkeys = 0, nsections = 0;
    for (int r = 0; r < rounds; r++) {
        memset(table, 0, TABLE * sizeof(*table));
        nkeys = nsections = 0;
        uint64_t t0 = now_ns(), in_batch = 0, out_batch = 0;
        int first = 1;
        for (;;) {
            memset(&attr, 0, sizeof(attr));
            attr.batch.map_fd = fd;
            attr.batch.in_batch = first ? 0 : (uint64_t)(uintptr_t)&in_batch;
            attr.batch.out_batch = (uint64_t)(uintptr_t)&out_batch;
            attr.batch.keys = (uint64_t)(uintptr_t)keys;
            attr.batch.values = (uint64_t)(uintptr_t)vals;
            attr.batch.count = CHUNK;
            int ret = sys_bpf(BPF_MAP_LOOKUP_BATCH, &attr);
            if (ret < 0 && errno != ENOENT) { perror("BPF_MAP_LOOKUP_BATCH"); return 1; }
            for (uint32_t i = 0; i < attr.batch.count; i++) {
                uint32_t slot = (uint32_t)keys[i];
                if (slot < SLOTS) find((uint32_t)(keys[i] >> 32), &nsections)->counts[slot] += vals[i];
            }
            nkeys += attr.batch.count;
            if (ret < 0) break;
            in_batch = out_batch;
            first = 0;
        }
        uint64_t dt = now_ns() - t0;
        if (dt < best) best = dt;
    }
    printf("{\"keys\": %zu, \"sections\": %zu, \"ns\": %llu}\n", nkeys, nsections, (unsigned long long)best);
    return 0;
}
