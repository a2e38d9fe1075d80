/*
 * iperf-like: an iperf 2 TCP server in miniature, for the study's Table I.
 *
 * Threads (3 + 1 per client): the main thread keeps the books of running client threads in a
 * condition-wait loop (iperf's thread_joinall: it waits on a condition variable for a client
 * thread to start or end); the listener accepts (poll on the listening socket and stdin) and
 * starts one thread per client, which reads the client's stream (blocking read, 128 KiB) and
 * sends an interval report every 0.5 s through a pipe to the reporter thread, which reads it.
 * Load: `table1-load iperf` (one bandwidth client writing as fast as it can).
 *
 *   iperf-like [--variant all|update-only]      prints "ready PORT"; exits when stdin closes
 *
 * The study's counts for this program:
 *   update points                      4  (main, listener, reporter and client loops)
 *   changed lines                      4  (3 wl_thread, 1 wl_cond_wait)
 *   changes beyond the runtime calls   0
 * update-only: the main thread waits in a plain pthread_cond_wait that no signal ends and that
 * nothing signals while the clients keep running: the update never quiesces (DNQ).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <qbench.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common.h"

struct report {
    uint64_t bytes;
    double seconds;
    int done;
};

static pthread_mutex_t lk = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t changed = PTHREAD_COND_INITIALIZER;
static int clients, events;
static int reports[2]; /* client threads → reporter */
static int ls;
static uint64_t total_bytes; /* the reporter's books: finished clients' bytes, latest rate */
static double last_rate;
static int running;

static void client_event(int delta) {
    pthread_mutex_lock(&lk);
    clients += delta;
    events++;
    pthread_cond_broadcast(&changed);
    pthread_mutex_unlock(&lk);
}

static void *client(void *arg) {
    int fd = (int)(intptr_t)arg;
    char buf[128 << 10];
    uint64_t bytes = 0;
    double start = now_s(), last = start;
    for (;;) {
        qbench_update();
        ssize_t n = read(fd, buf, sizeof buf);
        if (n == 0 || (n < 0 && errno != EINTR)) break;
        if (n > 0) bytes += (uint64_t)n;
        double now = now_s();
        if (now - last >= 0.5) {
            struct report r = {bytes, now - start, 0};
            if (write(reports[1], &r, sizeof r) < 0) { /* reporter gone: keep reading */
            }
            last = now;
        }
    }
    struct report r = {bytes, now_s() - start, 1};
    if (write(reports[1], &r, sizeof r) < 0) {
    }
    close(fd);
    client_event(-1);
    return NULL;
}

static void *listener(void *arg) {
    (void)arg;
    for (;;) {
        qbench_update();
        int fd = wl_accept(ls);
        if (fd < 0) continue;
        client_event(1);
        wl_thread("client", client, (void *)(intptr_t)fd);
    }
    return NULL;
}

static void *reporter(void *arg) {
    (void)arg;
    for (;;) {
        qbench_update();
        struct report r;
        if (read(reports[0], &r, sizeof r) != sizeof r) continue; /* EINTR */
        if (r.seconds > 0) last_rate = (double)r.bytes / r.seconds;
        if (r.done) total_bytes += r.bytes;
    }
    return NULL;
}

int main(int argc, char **argv) {
    wl_init(argc, argv);
    if (pipe2(reports, O_CLOEXEC)) die("pipe");
    int port = 0;
    ls = net_listen(&port);
    wl_thread("listener", listener, NULL);
    wl_thread("reporter", reporter, NULL);
    wl_ready(port);
    int seen = 0;
    for (;;) {
        qbench_update();
        pthread_mutex_lock(&lk);
        while (events == seen) wl_cond_wait(&changed, &lk);
        seen = events;
        running = clients;
        pthread_mutex_unlock(&lk);
    }
}
