/* A profiling target for the symbolization and profiler tests.
 *
 *   spin_target spin     burn CPU in hot_spin_loop() called from main()
 *   spin_target getpid   call getpid() in a loop (kernel frames: the syscall entry path)
 *   spin_target sleep    sleep in nanosleep() in a loop (off-CPU time)
 *   spin_target exit MS  spin for MS milliseconds, then exit (a pid that goes away)
 *
 * It prints "ready <address of hot_spin_loop>" once started, then runs until killed.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/syscall.h>

volatile unsigned long sink;

__attribute__((noinline)) void hot_spin_loop(unsigned long rounds)
{
    for (unsigned long i = 0; i < rounds; i++)
        sink += i * 7 + (sink >> 3);
}

__attribute__((noinline)) void getpid_loop(void)
{
    for (;;)
        sink += syscall(SYS_getpid);
}

__attribute__((noinline)) void sleep_loop(void)
{
    struct timespec ts = {0, 20 * 1000 * 1000};
    for (;;)
        nanosleep(&ts, NULL);
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "spin";
    printf("ready %p\n", (void *)hot_spin_loop);
    fflush(stdout);
    if (!strcmp(mode, "getpid"))
        getpid_loop();
    else if (!strcmp(mode, "sleep"))
        sleep_loop();
    else if (!strcmp(mode, "exit")) {
        double until = now_ms() + (argc > 2 ? atof(argv[2]) : 300);
        while (now_ms() < until)
            hot_spin_loop(100000);
        return 0;
    }
    for (;;)
        hot_spin_loop(1000000);
    return 0;
}
