/* Traffic source for bench_xsk.py: send one prebuilt Ethernet frame out of an interface as fast
 * as sendmmsg() on an AF_PACKET socket allows, for a number of seconds; print how many went out.
 * usage: udp_blast IFNAME SECONDS FRAME_HEX */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#define BATCH 64

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s IFNAME SECONDS FRAME_HEX\n", argv[0]);
        return 2;
    }
    unsigned char frame[2048];
    size_t len = strlen(argv[3]) / 2;
    if (len > sizeof(frame)) return 2;
    for (size_t i = 0; i < len; i++) sscanf(argv[3] + 2 * i, "%2hhx", &frame[i]);
    int fd = socket(AF_PACKET, SOCK_RAW, 0);
    if (fd < 0) { perror("socket"); return 1; }
    struct sockaddr_ll addr = {0};
    addr.sll_family = AF_PACKET;
    addr.sll_ifindex = if_nametoindex(argv[1]);
    addr.sll_halen = 6;
    memcpy(addr.sll_addr, frame, 6);
    if (!addr.sll_ifindex) { perror("if_nametoindex"); return 1; }
    struct iovec iov = {frame, len};
    struct mmsghdr msgs[BATCH];
    for (int i = 0; i < BATCH; i++) {
        memset(&msgs[i], 0, sizeof(msgs[i]));
        msgs[i].msg_hdr.msg_name = &addr;
        msgs[i].msg_hdr.msg_namelen = sizeof(addr);
        msgs[i].msg_hdr.msg_iov = &iov;
        msgs[i].msg_hdr.msg_iovlen = 1;
    }
    double end = now() + atof(argv[2]);
    unsigned long sent = 0;
    while (now() < end) {
        int n = sendmmsg(fd, msgs, BATCH, 0);
        if (n > 0) sent += n;
    }
    printf("%lu\n", sent);
    return 0;
}
