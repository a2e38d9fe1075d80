/*
 * back_to_back: updates requested one after another, each after the update before it was
 * decided, from threads that do not participate. Two participating threads wait: one in
 * read(2) on a pipe, one in qbench_usleep.
 *
 *   QBENCH_REPORT=FILE back_to_back MODE COUNT
 *
 * MODE says when each next request is made:
 *   report  by the main thread (unregistered), the instant the report line of the update before
 *           appears in FILE;
 *   hook    by the quiescence hook of the update before, on the runtime's helper thread, before
 *           that update's threads are released and its report written.
 * Odd requests are made with qbench_request_update(), which must return 0; even ones with the
 * update signal (SIGUSR2, the default) sent to the main thread (by the hook, which then waits,
 * up to 1 s, until the main thread's ppoll returns EINTR: its handler has run by then). An
 * update that was decided is over for requests: each one must open an update of its own, with a
 * report line of its own. Prints "COUNT requests, COUNT reports" and exits 0; on the first
 * request not served, prints what happened and exits 1. Exits 2 on bad usage or a failed setup.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <qbench.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static atomic_int started;
static pthread_t main_thread;
static long count;
static atomic_long hooks;       /* quiescence hooks run */
static atomic_long interrupted; /* the main thread's sleeps cut short by a signal */
static char failure[128];       /* the first request not made, written before `failed` is set */
static atomic_int failed;

static void die(const char *what) {
    perror(what);
    exit(2);
}

static void *read_loop(void *arg) {
    (void)arg;
    int p[2];
    if (pipe(p)) die("pipe");
    atomic_fetch_add(&started, 1);
    for (;;) {
        qbench_update();
        char c;
        (void)read(p[0], &c, 1);
    }
    return NULL;
}

static void *sleep_loop(void *arg) {
    (void)arg;
    atomic_fetch_add(&started, 1);
    for (;;) {
        qbench_update();
        qbench_usleep(10 * 1000 * 1000);
    }
    return NULL;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void fail(long seq, const char *what) {
    if (atomic_load(&failed)) return;
    snprintf(failure, sizeof failure, "request %ld: %s", seq, what);
    atomic_store(&failed, 1);
}

/* Makes request `seq`: odd ones in-process, even ones with the signal to the main thread. */
static void request(long seq) {
    if (seq % 2) {
        int rc = qbench_request_update();
        if (rc) fail(seq, rc == EALREADY ? "qbench_request_update returned EALREADY"
                                         : "qbench_request_update failed");
        return;
    }
    long before = atomic_load(&interrupted);
    if (pthread_kill(main_thread, SIGUSR2)) die("pthread_kill");
    /* From the hook: do not let the update end before the handler has run. */
    double deadline = now_s() + 1.0;
    while (pthread_self() != main_thread && atomic_load(&interrupted) == before) {
        if (now_s() > deadline) {
            fail(seq, "the signal was not handled within 1 s");
            return;
        }
    }
}

static void hook(void *arg) {
    (void)arg;
    long seq = atomic_fetch_add(&hooks, 1) + 1;
    if (seq < count) request(seq + 1);
}

/* Reads what was appended to the report since *offset, and returns how many lines it holds. */
static long count_new_lines(int fd, off_t *offset) {
    char buf[4096];
    long lines = 0;
    ssize_t n;
    while ((n = pread(fd, buf, sizeof buf, *offset)) > 0) {
        *offset += n;
        for (ssize_t i = 0; i < n; i++) lines += buf[i] == '\n';
    }
    return lines;
}

int main(int argc, char **argv) {
    const char *report = getenv("QBENCH_REPORT");
    count = argc == 3 ? strtol(argv[2], NULL, 10) : 0;
    int by_hook = argc == 3 && !strcmp(argv[1], "hook");
    if (count <= 0 || !report || (!by_hook && strcmp(argv[1], "report"))) {
        fprintf(stderr, "usage: QBENCH_REPORT=FILE back_to_back report|hook COUNT (COUNT > 0)\n");
        return 2;
    }
    main_thread = pthread_self();
    pthread_t t;
    if (qbench_thread_create(&t, NULL, read_loop, NULL) ||
        qbench_thread_create(&t, NULL, sleep_loop, NULL))
        die("qbench_thread_create");
    while (atomic_load(&started) < 2) usleep(1000);
    usleep(10 * 1000); /* both threads in their waits */
    if (qbench_thread_unregister()) die("qbench_thread_unregister");
    /* With the hook, the main thread takes the signal only inside ppoll: a return with EINTR
     * then says its handler has run. */
    sigset_t usr2, others;
    sigemptyset(&usr2);
    sigaddset(&usr2, SIGUSR2);
    if (by_hook && (qbench_set_quiescence_hook(hook, NULL) ||
                    pthread_sigmask(SIG_BLOCK, &usr2, &others)))
        die("setting up the hook");

    int fd = -1;
    off_t offset = 0;
    long reports = 0;
    request(1);
    /* Any update ends within the runtime's 1 s timeout: 3 s without a new report is a loss. */
    double deadline = now_s() + 3.0;
    while (reports < count && !atomic_load(&failed) && now_s() < deadline) {
        if (fd < 0) fd = open(report, O_RDONLY | O_CLOEXEC);
        long seen = fd < 0 ? 0 : count_new_lines(fd, &offset);
        reports += seen;
        if (seen) deadline = now_s() + 3.0;
        if (by_hook) {
            struct timespec tick = {0, 100 * 1000};
            if (ppoll(NULL, 0, &tick, &others) < 0 && errno == EINTR)
                atomic_fetch_add(&interrupted, 1);
        } else if (seen && reports < count) {
            request(reports + 1);
        }
    }
    if (atomic_load(&failed)) {
        printf("%s, after %ld reports\n", failure, reports);
        return 1;
    }
    if (reports < count) {
        printf("request %ld: %ld reports after 3 s\n", reports + 1, reports);
        return 1;
    }
    printf("%ld requests, %ld reports\n", count, reports);
    return 0;
}
