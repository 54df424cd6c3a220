/* A target for the USDT tests: probe test:args4 at two sites, guarded by a semaphore, with its
 * arguments at a constant, in registers (64-bit and 16-bit names) and in memory, as the
 * compiler chooses.  The note is written by inline asm the way <sys/sdt.h> (STAP_PROBE) does,
 * so no systemtap headers are needed.
 *
 * usage: usdt_target N   fires test:args4 2*N times (when the semaphore is raised), then
 *                        prints how many times it saw the semaphore raised.
 * build: python3 -m ziglang cc -O1 -target x86_64-linux-musl usdt_target.c -o usdt_target
 */
#include <stdio.h>
#include <stdlib.h>

/* The semaphore: the kernel increments it (uprobe ref_ctr_offset) while the probe is attached. */
__attribute__((used, section(".probes"))) volatile unsigned short test_args4_semaphore;

#define PROBE4(c0, a1, a2, a3)                                                                    \
    __asm__ __volatile__(                                                                         \
        "990: nop\n"                                                                              \
        ".pushsection .note.stapsdt,\"?\",\"note\"\n"                                             \
        ".balign 4\n"                                                                             \
        ".4byte 992f-991f, 994f-993f, 3\n"                                                        \
        "991: .asciz \"stapsdt\"\n"                                                               \
        "992: .balign 4\n"                                                                        \
        "993: .8byte 990b\n"                                                                      \
        ".8byte _.stapsdt.base\n"                                                                 \
        ".8byte test_args4_semaphore\n"                                                           \
        ".asciz \"test\"\n"                                                                       \
        ".asciz \"args4\"\n"                                                                      \
        ".asciz \"4@%[x0] -8@%[x1] -4@%[x2] 2@%[x3]\"\n"                                          \
        "994: .balign 4\n"                                                                        \
        ".popsection\n"                                                                           \
        ".ifndef _.stapsdt.base\n"                                                                \
        ".pushsection .stapsdt.base,\"aG\",\"progbits\",.stapsdt.base,comdat\n"                   \
        ".weak _.stapsdt.base\n"                                                                  \
        ".hidden _.stapsdt.base\n"                                                                \
        "_.stapsdt.base: .space 1\n"                                                              \
        ".size _.stapsdt.base, 1\n"                                                               \
        ".popsection\n"                                                                           \
        ".endif\n"                                                                                \
        :: [x0] "n"(c0), [x1] "r"(a1), [x2] "m"(a2), [x3] "r"(a3))

/* Another site with the arguments elsewhere (the register for arg 1 is forced to %rbx). */
__attribute__((noinline)) static void second_site(long v, int m, unsigned short s) {
    register long in_rbx __asm__("rbx") = v;
    volatile int on_stack = m;
    if (test_args4_semaphore) PROBE4(5, in_rbx, on_stack, s);
}

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 1, raised = 0;
    for (int i = 0; i < n; i++) {
        long big = -1000L * (i + 1) - 7;                 /* signed 64-bit, in a register */
        volatile int neg = -3 * (i + 1);                 /* signed 32-bit, in memory */
        unsigned short small = (unsigned short)(60000 + i); /* unsigned 16-bit, in a register */
        if (test_args4_semaphore) {
            raised++;
            PROBE4(5, big, neg, small);
        }
        second_site(big * 2, neg * 2, (unsigned short)(small + 1));
    }
    printf("%d\n", raised);
    return 0;
}
