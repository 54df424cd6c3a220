/* C reference for bench_maps.py: raw bpf() syscalls, no libbpf.
 * Prints one JSON line per figure: {"figure": ..., "ops_per_s": ...}; best of 5.
 * Build: python3 -m ziglang cc -O2 -target x86_64-linux-gnu bench_maps.c -o bench_maps
 */
#define _GNU_SOURCE
#include <linux/bpf.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define N_OPS 200000
#define N_KEYS 10000
#define ROUNDS 5

static long sys_bpf(int cmd, union bpf_attr *attr) { return syscall(__NR_bpf, cmd, attr, sizeof(*attr)); }

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int create(int type, int ks, int vs, int max) {
    union bpf_attr a;
    memset(&a, 0, sizeof(a));
    a.map_type = type; a.key_size = ks; a.value_size = vs; a.max_entries = max;
    int fd = sys_bpf(BPF_MAP_CREATE, &a);
    if (fd < 0) { perror("BPF_MAP_CREATE"); exit(1); }
    return fd;
}

static long elem(int cmd, int fd, void *key, void *value, uint64_t flags) {
    union bpf_attr a;
    memset(&a, 0, sizeof(a));
    a.map_fd = fd; a.key = (uint64_t)(uintptr_t)key; a.value = (uint64_t)(uintptr_t)value; a.flags = flags;
    return sys_bpf(cmd, &a);
}

static void emit(const char *fig, double ops) { printf("{\"figure\": \"%s\", \"ops_per_s\": %.1f}\n", fig, ops); fflush(stdout); }

/* One single-op loop over keys i % N_KEYS with a preallocated attr, as a careful C user writes it. */
static double loop(int cmd, int fd, int vsize) {
    union bpf_attr a;
    uint32_t key = 0;
    uint64_t value[64];
    memset(value, 0, sizeof(value));
    double best = 0;
    /* deletes: each round deletes the N_KEYS existing keys once (refilled between rounds) */
    int n = cmd == BPF_MAP_DELETE_ELEM ? N_KEYS : N_OPS;
    for (int r = 0; r < ROUNDS; r++) {
        if (cmd == BPF_MAP_DELETE_ELEM)
            for (uint32_t i = 0; i < N_KEYS; i++) elem(BPF_MAP_UPDATE_ELEM, fd, &i, value, 0);
        memset(&a, 0, sizeof(a));
        a.map_fd = fd; a.key = (uint64_t)(uintptr_t)&key;
        if (cmd != BPF_MAP_DELETE_ELEM) a.value = (uint64_t)(uintptr_t)value;
        double t = now();
        for (int i = 0; i < n; i++) {
            key = i % N_KEYS;
            value[0] = i;
            sys_bpf(cmd, &a);
        }
        double ops = n / (now() - t);
        if (ops > best) best = ops;
    }
    (void)vsize;
    return best;
}

int main(void) {
    uint64_t v[64] = {0};
    int hash = create(BPF_MAP_TYPE_HASH, 4, 8, 20000);
    emit("hash_update", loop(BPF_MAP_UPDATE_ELEM, hash, 8));
    emit("hash_lookup", loop(BPF_MAP_LOOKUP_ELEM, hash, 8));
    emit("hash_delete", loop(BPF_MAP_DELETE_ELEM, hash, 8));
    for (uint32_t i = 0; i < N_KEYS; i++) elem(BPF_MAP_UPDATE_ELEM, hash, &i, v, 0);

    int arr = create(BPF_MAP_TYPE_ARRAY, 4, 8, 10000);
    emit("array_lookup", loop(BPF_MAP_LOOKUP_ELEM, arr, 8));

    int pc = create(BPF_MAP_TYPE_PERCPU_HASH, 4, 8, 20000);
    for (uint32_t i = 0; i < N_KEYS; i++) { uint64_t vals[64] = {0}; elem(BPF_MAP_UPDATE_ELEM, pc, &i, vals, 0); }
    emit("percpu_hash_lookup", loop(BPF_MAP_LOOKUP_ELEM, pc, 8));

    /* batches of all 10,000 entries of the hash map */
    uint32_t *keys = calloc(N_KEYS, 4);
    uint64_t *vals = calloc(N_KEYS, 8);
    for (uint32_t i = 0; i < N_KEYS; i++) { keys[i] = i; vals[i] = i; }
    double best_up = 0, best_lk = 0, best_it = 0;
    for (int r = 0; r < ROUNDS; r++) {
        union bpf_attr a;
        double t = now();
        memset(&a, 0, sizeof(a));
        a.batch.map_fd = hash; a.batch.keys = (uint64_t)(uintptr_t)keys; a.batch.values = (uint64_t)(uintptr_t)vals;
        a.batch.count = N_KEYS;
        if (sys_bpf(BPF_MAP_UPDATE_BATCH, &a) < 0) { perror("BPF_MAP_UPDATE_BATCH"); return 1; }
        double ops = N_KEYS / (now() - t);
        if (ops > best_up) best_up = ops;

        uint64_t tok_in = 0, tok_out = 0;
        uint32_t *okeys = calloc(N_KEYS, 4);
        uint64_t *ovals = calloc(N_KEYS, 8);
        long total = 0;
        t = now();
        int first = 1;
        for (;;) {
            memset(&a, 0, sizeof(a));
            a.batch.map_fd = hash; a.batch.keys = (uint64_t)(uintptr_t)okeys; a.batch.values = (uint64_t)(uintptr_t)ovals;
            a.batch.count = N_KEYS; a.batch.out_batch = (uint64_t)(uintptr_t)&tok_out;
            a.batch.in_batch = first ? 0 : (uint64_t)(uintptr_t)&tok_in;
            long ret = sys_bpf(BPF_MAP_LOOKUP_BATCH, &a);
            total += a.batch.count;
            if (ret < 0) break; /* ENOENT: done */
            tok_in = tok_out; first = 0;
        }
        ops = total / (now() - t);
        if (ops > best_lk) best_lk = ops;
        free(okeys); free(ovals);

        /* the classic walk: get_next_key + lookup */
        uint32_t cur = 0, next = 0;
        total = 0;
        t = now();
        void *prev = NULL;
        while (elem(BPF_MAP_GET_NEXT_KEY, hash, prev, &next, 0) == 0) {
            elem(BPF_MAP_LOOKUP_ELEM, hash, &next, v, 0);
            cur = next; prev = &cur; total++;
        }
        ops = total / (now() - t);
        if (ops > best_it) best_it = ops;
    }
    emit("batch_update", best_up);
    emit("batch_lookup", best_lk);
    emit("iterate", best_it);
    return 0;
}
