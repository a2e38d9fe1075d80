/*
 * httpd-like: Apache's worker MPM in miniature, for the study's Table I.
 *
 * Threads (4): the main thread is the listener (poll on the listening socket and stdin, accept,
 * push the connection onto a work queue); 3 workers pop a connection from the queue (a condition
 * variable) and serve it: poll on the client socket for "GET /SIZE", answer with SIZE bytes of an
 * in-memory file in 64 KiB chunks (non-blocking, poll for POLLOUT), keep-alive until the client
 * hangs up or stays silent for 5 s. Load: `table1-load httpd` (large-file downloads).
 *
 *   httpd-like [--variant all|update-only]      prints "ready PORT"; exits when stdin closes
 *
 * The study's counts for this program:
 *   update points                      3  (listener loop, worker loop, connection loop)
 *   changed lines                      2  (wl_thread, wl_cond_wait)
 *   changes beyond the runtime calls   0
 * update-only: idle workers wait in a plain pthread_cond_wait, which no signal ends, so an
 * update finds them there unless every worker is busy with a connection.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <qbench.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common.h"

#define WORKERS 3
#define FILE_SIZE (1 << 20)
#define CHUNK (64 << 10)
#define KEEPALIVE_MS 5000
#define QUEUE_CAP 256

static char file[FILE_SIZE];

static pthread_mutex_t qlock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t qcond = PTHREAD_COND_INITIALIZER;
static int queue[QUEUE_CAP], qhead, qlen;

static void push(int fd) {
    pthread_mutex_lock(&qlock);
    if (qlen == QUEUE_CAP) {
        close(fd); /* overloaded: refuse, as a full accept queue would */
    } else {
        queue[(qhead + qlen++) % QUEUE_CAP] = fd;
        pthread_cond_signal(&qcond);
    }
    pthread_mutex_unlock(&qlock);
}

/* Serves one keep-alive connection; the state lives here, so the loop may park between two
 * chunks of a response. */
static void serve(int fd) {
    char req[256];
    size_t rlen = 0, left = 0, sent = 0;
    net_nonblock(fd);
    for (;;) {
        qbench_update();
        struct pollfd p = {.fd = fd, .events = left ? POLLOUT : POLLIN};
        int rc = poll(&p, 1, left ? -1 : KEEPALIVE_MS);
        if (rc == 0) break;
        if (rc < 0) continue; /* EINTR: back to the update point */
        if (left) {
            size_t off = sent % FILE_SIZE, n = left < CHUNK ? left : CHUNK;
            if (n > FILE_SIZE - off) n = FILE_SIZE - off;
            ssize_t w = write(fd, file + off, n);
            if (w < 0 && errno != EAGAIN && errno != EINTR) break;
            if (w > 0) {
                left -= (size_t)w;
                sent += (size_t)w;
            }
            continue;
        }
        ssize_t r = read(fd, req + rlen, sizeof req - 1 - rlen);
        if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) break;
        if (r < 0) continue;
        rlen += (size_t)r;
        req[rlen] = '\0';
        if (!strstr(req, "\r\n\r\n")) {
            if (rlen == sizeof req - 1) break; /* request too long */
            continue;
        }
        unsigned long size = 0;
        if (sscanf(req, "GET /%lu", &size) != 1) break;
        char hdr[128];
        int h = snprintf(hdr, sizeof hdr, "HTTP/1.1 200 OK\r\nContent-Length: %lu\r\n\r\n", size);
        if (net_write_all(fd, hdr, (size_t)h)) break;
        left = size;
        sent = 0;
        rlen = 0;
    }
    close(fd);
}

static void *worker(void *arg) {
    (void)arg;
    for (;;) {
        qbench_update();
        pthread_mutex_lock(&qlock);
        while (qlen == 0) wl_cond_wait(&qcond, &qlock);
        int fd = queue[qhead];
        qhead = (qhead + 1) % QUEUE_CAP;
        qlen--;
        pthread_mutex_unlock(&qlock);
        serve(fd);
    }
    return NULL;
}

int main(int argc, char **argv) {
    wl_init(argc, argv);
    for (size_t i = 0; i < FILE_SIZE; i++) file[i] = (char)('a' + i % 26);
    int port = 0, ls = net_listen(&port);
    for (int i = 0; i < WORKERS; i++) wl_thread("worker", worker, NULL);
    wl_ready(port);
    for (;;) {
        qbench_update();
        int fd = wl_accept(ls);
        if (fd >= 0) push(fd);
    }
}
