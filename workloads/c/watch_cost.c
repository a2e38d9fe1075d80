/* The steady-state costs `cargo xtask bench watch` measures, in a program linked to libqbench:
 *
 *   watch_cost target N   prints "ready", waits for a line on stdin, then times N calls of
 *                         qbench_update() and N read(2)s of one byte from a pipe with data
 *                         ready, and prints "update NS read NS" (nanoseconds per call)
 *   watch_cost getppid N  times N getppid(2) calls and prints "getppid NS"
 *
 * No update is ever requested: this is what a watched process, and the rest of the machine, pay
 * while nothing happens.
 */
#define _GNU_SOURCE
#include <qbench.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static double time_updates(long n) {
    double t0 = now_ns();
    for (long i = 0; i < n; i++) qbench_update();
    return (now_ns() - t0) / n;
}

/* One byte per read from a pipe refilled 4096 bytes at a time: each read finds data ready. */
static double time_reads(long n) {
    int p[2];
    if (pipe(p)) return -1;
    char block[4096], c;
    memset(block, 'x', sizeof block);
    double spent = 0;
    for (long done = 0; done < n;) {
        if (write(p[1], block, sizeof block) != (ssize_t)sizeof block) return -1;
        long batch = n - done < 4096 ? n - done : 4096;
        double t0 = now_ns();
        for (long i = 0; i < batch; i++)
            if (read(p[0], &c, 1) != 1) return -1;
        spent += now_ns() - t0;
        done += batch;
        while (batch < 4096 && read(p[0], block, sizeof block) > 0) break;
    }
    close(p[0]);
    close(p[1]);
    return spent / n;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: watch_cost target|getppid N\n");
        return 2;
    }
    long n = atol(argv[2]);
    if (!strcmp(argv[1], "getppid")) {
        double t0 = now_ns();
        for (long i = 0; i < n; i++) getppid();
        printf("getppid %.2f\n", (now_ns() - t0) / n);
        return 0;
    }
    printf("ready\n");
    fflush(stdout);
    char line[16];
    if (!fgets(line, sizeof line, stdin)) return 1;
    double update = time_updates(n);
    double rd = time_reads(n);
    printf("update %.2f read %.2f\n", update, rd);
    return 0;
}
