/* C reference consumer for bench_events.py: a BPF perf event array read the way libbpf's
 * perf_buffer__consume() does it, with no libbpf: BPF_OBJ_GET of a pinned
 * BPF_MAP_TYPE_PERF_EVENT_ARRAY, one PERF_COUNT_SW_BPF_OUTPUT event per CPU (perf_event_open),
 * its ring mmap'ed (1 control page + PAGES data pages) and stored in the map slot of its CPU,
 * epoll over the events; then per ring: load data_head (acquire), walk the records from
 * data_tail, stitch a record that wraps around the ring's end into a bounce buffer, hand each
 * sample's data to a callback (which copies it into an array, the work a consumer does with
 * an event), count PERF_RECORD_LOST, and publish data_tail once per ring (release), as libbpf's
 * perf_event_read_simple() does.
 *
 * usage: perf_ref PINNED_MAP PAGES WATERMARK_BYTES EXPECTED_EVENTS
 * protocol: prints "ready" once the rings are in the map, waits for a line on stdin (the
 * caller fills the rings meanwhile), drains, prints {"events": N, "lost": L, "ns": T}.
 * build: python3 -m ziglang cc -O2 -target x86_64-linux-gnu perf_ref.c -o perf_ref
 */
#define _GNU_SOURCE
#include <linux/bpf.h>
#include <linux/perf_event.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define MAX_CPUS 1024

static int sys_bpf(int cmd, union bpf_attr *attr) { return (int)syscall(__NR_bpf, cmd, attr, sizeof(*attr)); }

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

struct sink { unsigned char *out; size_t n, cap, rec; uint64_t lost; };

static void on_sample(struct sink *s, const void *data, uint32_t size) {
    if (s->n < s->cap) memcpy(s->out + s->n * s->rec, data, size < s->rec ? size : s->rec);
    s->n++;
}

struct ring { int fd; struct perf_event_mmap_page *page; unsigned char *data; size_t size; };

/* Drain one ring; returns the number of records seen. */
static size_t drain(struct ring *r, struct sink *s, unsigned char *bounce) {
    uint64_t head = __atomic_load_n(&r->page->data_head, __ATOMIC_ACQUIRE);
    uint64_t tail = r->page->data_tail;
    size_t seen = 0;
    while (tail < head) {
        size_t off = tail & (r->size - 1);
        struct perf_event_header *h = (struct perf_event_header *)(r->data + off);
        size_t sz = h->size;
        if (off + sz > r->size) { /* wraps: copy the two pieces together, as libbpf does */
            size_t first = r->size - off;
            memcpy(bounce, r->data + off, first);
            memcpy(bounce + first, r->data, sz - first);
            h = (struct perf_event_header *)bounce;
        }
        if (h->type == PERF_RECORD_SAMPLE) {
            uint32_t raw = *(uint32_t *)(h + 1);
            on_sample(s, (unsigned char *)(h + 1) + 4, raw);
        } else if (h->type == PERF_RECORD_LOST) {
            s->lost += ((uint64_t *)(h + 1))[1];
        }
        tail += sz;
        seen++;
    }
    __atomic_store_n(&r->page->data_tail, tail, __ATOMIC_RELEASE);
    return seen;
}

int main(int argc, char **argv) {
    if (argc < 5) { fprintf(stderr, "usage: %s PINNED_MAP PAGES WATERMARK EXPECTED\n", argv[0]); return 2; }
    union bpf_attr attr;
    memset(&attr, 0, sizeof(attr));
    attr.pathname = (uint64_t)(uintptr_t)argv[1];
    int map_fd = sys_bpf(BPF_OBJ_GET, &attr);
    if (map_fd < 0) { perror("BPF_OBJ_GET"); return 1; }
    struct bpf_map_info info; memset(&info, 0, sizeof(info));
    memset(&attr, 0, sizeof(attr));
    attr.info.bpf_fd = map_fd; attr.info.info_len = sizeof(info); attr.info.info = (uint64_t)(uintptr_t)&info;
    if (sys_bpf(BPF_OBJ_GET_INFO_BY_FD, &attr) < 0) { perror("info"); return 1; }
    size_t page = (size_t)sysconf(_SC_PAGESIZE), pages = strtoul(argv[2], NULL, 10);
    uint32_t watermark = (uint32_t)strtoul(argv[3], NULL, 10);
    size_t expected = (size_t)strtoull(argv[4], NULL, 10);
    long ncpu = sysconf(_SC_NPROCESSORS_CONF);
    if (ncpu > (long)info.max_entries) ncpu = (long)info.max_entries;
    if (ncpu > MAX_CPUS) ncpu = MAX_CPUS;
    static struct ring rings[MAX_CPUS];
    int nrings = 0, ep = epoll_create1(EPOLL_CLOEXEC);
    for (int cpu = 0; cpu < ncpu; cpu++) {
        struct perf_event_attr pa; memset(&pa, 0, sizeof(pa));
        pa.size = sizeof(pa); pa.type = PERF_TYPE_SOFTWARE; pa.config = PERF_COUNT_SW_BPF_OUTPUT;
        pa.sample_type = PERF_SAMPLE_RAW; pa.sample_period = 1;
        if (watermark) { pa.watermark = 1; pa.wakeup_watermark = watermark; } else { pa.wakeup_events = 1; }
        int fd = (int)syscall(__NR_perf_event_open, &pa, -1, cpu, -1, PERF_FLAG_FD_CLOEXEC);
        if (fd < 0) continue; /* an offline CPU */
        void *m = mmap(NULL, (pages + 1) * page, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (m == MAP_FAILED) { perror("mmap"); return 1; }
        struct ring *r = &rings[nrings++];
        r->fd = fd; r->page = m; r->data = (unsigned char *)m + page; r->size = pages * page;
        uint32_t key = (uint32_t)cpu, val = (uint32_t)fd;
        memset(&attr, 0, sizeof(attr));
        attr.map_fd = (uint32_t)map_fd; attr.key = (uint64_t)(uintptr_t)&key; attr.value = (uint64_t)(uintptr_t)&val;
        if (sys_bpf(BPF_MAP_UPDATE_ELEM, &attr) < 0) { perror("map update"); return 1; }
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)(nrings - 1)};
        epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
        /* fault the ring in: a long-running consumer has it mapped already */
        volatile unsigned char touch = 0;
        for (size_t off = 0; off < r->size; off += page) touch ^= r->data[off];
        (void)touch;
        ioctl(fd, PERF_EVENT_IOC_ENABLE, 0);
    }
    if (!nrings) { fprintf(stderr, "no perf event could be opened\n"); return 1; }
    struct sink s = {.rec = 16, .cap = expected};
    s.out = malloc(expected * s.rec + 1);
    memset(s.out, 0, expected * s.rec + 1);
    unsigned char *bounce = malloc(65536 + 8);
    printf("ready\n");
    fflush(stdout);
    char line[64];
    if (!fgets(line, sizeof(line), stdin)) return 1;

    uint64_t t0 = now_ns();
    struct epoll_event got[MAX_CPUS];
    epoll_wait(ep, got, MAX_CPUS, 0);
    for (;;) {
        size_t seen = 0;
        for (int i = 0; i < nrings; i++) seen += drain(&rings[i], &s, bounce);
        if (!seen) break;
    }
    uint64_t t1 = now_ns();
    printf("{\"events\": %zu, \"lost\": %llu, \"ns\": %llu}\n", s.n, (unsigned long long)s.lost,
           (unsigned long long)(t1 - t0));
    return 0;
}
