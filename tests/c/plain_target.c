/*
 * Target of the privileged observer tests that has no runtime: a program with an update point of
 * its own, `update_point`, probed with --point-style resolution.
 *
 *   plain_target points   3 workers and main loop { update_point(); update_point(); read(pipe) }
 *   plain_target spin N   N workers loop nanosleep(0) (a flood of blocking-call events); main
 *                         blocks in read(stdin)
 *
 * SIGUSR2 has a handler installed without SA_RESTART, so a blocked read returns EINTR and its
 * loop reaches the update point again. A process-directed SIGUSR2 lands on one thread; that
 * thread relays it to every other with pthread_kill (si_code SI_TKILL, which is not relayed
 * again), so every thread is interrupted. Prints "ready" once every thread has started (signal
 * it only after that: the handler reads the thread table); exits
 * when stdin closes (read returns 0) or after 60 s.
 *
 * A `q` on stdin (points mode) interrupts every thread as the runtime's helper does during an
 * update: SIGUSR2 queued to each thread with pthread_sigqueue (si_code SI_QUEUE, sent by the
 * process itself), which the handler ignores; then prints "queued".
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_THREADS 16

static pthread_t threads[MAX_THREADS + 1];
static int nthreads;
static atomic_int started;

/* The update point: exported (-rdynamic), never inlined, and starting with a 5-byte NOP so that
 * the kernel can optimize a uprobe on it (docs/ARCHITECTURE.md). */
__attribute__((noinline, used)) void update_point(void) {
    __asm__ volatile(".byte 0x0f, 0x1f, 0x44, 0x00, 0x00" ::: "memory");
}

static void on_usr2(int sig, siginfo_t *info, void *ctx) {
    (void)ctx;
    if (info->si_code == SI_TKILL) return; /* a relay */
    if (info->si_code == SI_QUEUE) return; /* an interruption, as the runtime's */
    pthread_t self = pthread_self();
    for (int i = 0; i < nthreads; i++)
        if (!pthread_equal(threads[i], self)) pthread_kill(threads[i], sig);
}

static void *point_loop(void *arg) {
    (void)arg;
    int p[2];
    if (pipe(p)) abort();
    atomic_fetch_add(&started, 1);
    for (;;) {
        update_point();
        update_point(); /* a second hit in the same window must not be reported */
        char c;
        if (read(p[0], &c, 1) < 0 && errno != EINTR) abort();
    }
    return NULL;
}

static void *spin_loop(void *arg) {
    (void)arg;
    struct timespec zero = {0, 0};
    atomic_fetch_add(&started, 1);
    for (;;) nanosleep(&zero, NULL);
    return NULL;
}

int main(int argc, char **argv) {
    alarm(60); /* never outlive a test that went wrong */
    int spin = argc >= 2 && !strcmp(argv[1], "spin");
    int workers = spin ? (argc >= 3 ? atoi(argv[2]) : 2) : 3;
    if (argc < 2 || workers < 1 || workers > MAX_THREADS) {
        fprintf(stderr, "usage: plain_target points | plain_target spin N\n");
        return 2;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_usr2;
    sa.sa_flags = SA_SIGINFO; /* no SA_RESTART: blocked reads return EINTR */
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGUSR2, &sa, NULL)) return 1;
    threads[0] = pthread_self();
    nthreads = 1;
    for (int i = 0; i < workers; i++) {
        if (pthread_create(&threads[nthreads], NULL, spin ? spin_loop : point_loop, NULL)) return 1;
        nthreads++;
    }
    while (atomic_load(&started) < workers) usleep(1000);
    printf("ready\n");
    fflush(stdout);
    for (;;) {
        if (!spin) {
            update_point();
            update_point();
        }
        char c;
        ssize_t n = read(0, &c, 1);
        if (n == 0 || (n < 0 && errno != EINTR)) return 0;
        if (n == 1 && c == 'q') {
            union sigval value = {.sival_int = 0};
            for (int i = 0; i < nthreads; i++)
                if (pthread_sigqueue(threads[i], SIGUSR2, value)) return 1;
            printf("queued\n");
            fflush(stdout);
        }
    }
}
