/*
 * Target of the privileged arrival test: a program that exports the runtime's arrival anchor
 * itself, and calls it a known number of times from two threads once the test says "go".
 *
 * Protocol on stdio: prints "ready", waits for one byte on stdin, then each thread calls
 * qbench_probe_arrive(generation) its count of times and prints "tid COUNT LAST_GENERATION";
 * main prints "done" when both have finished.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

/* The probe contract (docs/ARCHITECTURE.md): exported (-rdynamic), never inlined, and starting with a
 * 5-byte NOP so that the kernel can optimize a uprobe there. */
__attribute__((noinline, used)) void qbench_probe_arrive(uint64_t generation) {
    __asm__ volatile(".byte 0x0f, 0x1f, 0x44, 0x00, 0x00" : : "r"(generation) : "memory");
}

struct worker {
    uint64_t first_generation;
    int count;
};

static void *work(void *arg) {
    const struct worker *w = arg;
    uint64_t generation = w->first_generation;
    for (int i = 0; i < w->count; i++) {
        generation = w->first_generation + (uint64_t)i;
        qbench_probe_arrive(generation);
    }
    printf("%ld %d %llu\n", (long)syscall(SYS_gettid), w->count, (unsigned long long)generation);
    fflush(stdout);
    return NULL;
}

int main(void) {
    alarm(60); /* never outlive a test that went wrong */
    struct worker workers[2] = {{1000, 3}, {2000, 5}};
    pthread_t threads[2];
    printf("ready\n");
    fflush(stdout);
    char go;
    if (read(0, &go, 1) != 1) {
        return 2;
    }
    for (int i = 0; i < 2; i++) {
        if (pthread_create(&threads[i], NULL, work, &workers[i]) != 0) {
            return 3;
        }
    }
    for (int i = 0; i < 2; i++) {
        pthread_join(threads[i], NULL);
    }
    printf("done\n");
    fflush(stdout);
    return 0;
}
