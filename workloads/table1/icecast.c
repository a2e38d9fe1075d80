/*
 * icecast-like: an Icecast 2 streaming server in miniature, for the study's Table I.
 *
 * Threads (6): main accepts connections (poll on the listening socket and stdin) onto a pending
 * list; the connection handler polls that list, sleeping 100 ms when it is empty (Icecast's
 * _handle_connection), and reads each request: "SOURCE /stream" becomes the source, "GET /stream"
 * a listener; the source thread reads the source into a ring buffer (poll with a timeout) and
 * wakes the sender through a pipe; the sender writes the stream to every listener (non-blocking,
 * poll for POLLOUT); the stats thread and the slave (relay) thread sleep 1 s between polls.
 * Load: `table1-load icecast` (one source streaming about 1 MB/s, 5 listeners).
 *
 *   icecast-like [--variant all|update-only]    prints "ready PORT"; exits when stdin closes
 *
 * The study's counts for this program:
 *   update points                      6  (one per thread loop)
 *   changed lines                      9  (5 wl_thread, 4 wl_sleep_ms)
 *   changes beyond the runtime calls   0
 * update-only: the sleeps are Icecast's thread_sleep, which resumes after a signal until the
 * whole time passed, so an update waits for the longest sleep in progress (up to 1 s).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <qbench.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common.h"

#define RING (1 << 20)
#define MAX_CLIENTS 64

static pthread_mutex_t lk = PTHREAD_MUTEX_INITIALIZER;
static char ring[RING];
static uint64_t wpos;                 /* bytes the source has written, ever */
static int src_fd = -1;               /* the source connection */
static int pending[MAX_CLIENTS], npending;
static struct listener {
    int fd;
    uint64_t pos;                     /* next stream byte this listener gets */
} listeners[MAX_CLIENTS];
static int notify[2];                 /* source → sender: new data */
static uint64_t sent_total, stat_rate, relays_checked;

static void *handler(void *arg) {
    (void)arg;
    for (;;) {
        qbench_update();
        pthread_mutex_lock(&lk);
        int fd = npending ? pending[--npending] : -1;
        pthread_mutex_unlock(&lk);
        if (fd < 0) {
            wl_sleep_ms(100);
            continue;
        }
        char line[256], blank[8];
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 1000) <= 0 || net_read_line(fd, line, sizeof line) <= 0 ||
            net_read_line(fd, blank, sizeof blank) <= 0) {
            close(fd);
            continue;
        }
        net_nonblock(fd);
        pthread_mutex_lock(&lk);
        if (strncmp(line, "SOURCE /stream", 14) == 0) {
            if (src_fd >= 0) close(src_fd);
            src_fd = fd;
            fd = -1;
        } else if (strncmp(line, "GET /stream", 11) == 0) {
            for (int i = 0; i < MAX_CLIENTS && fd >= 0; i++)
                if (listeners[i].fd < 0) {
                    static const char ok[] = "HTTP/1.0 200 OK\r\nContent-Type: audio/mpeg\r\n\r\n";
                    net_write_all(fd, ok, sizeof ok - 1);
                    listeners[i] = (struct listener){.fd = fd, .pos = wpos};
                    fd = -1;
                }
        }
        pthread_mutex_unlock(&lk);
        if (fd >= 0) close(fd);
    }
    return NULL;
}

static void *source(void *arg) {
    (void)arg;
    static char buf[16384];
    for (;;) {
        qbench_update();
        pthread_mutex_lock(&lk);
        int fd = src_fd;
        pthread_mutex_unlock(&lk);
        if (fd < 0) {
            wl_sleep_ms(100); /* no source yet */
            continue;
        }
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 1000) <= 0) continue; /* timeout or EINTR */
        ssize_t n = read(fd, buf, sizeof buf);
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
        pthread_mutex_lock(&lk);
        if (n <= 0) {
            close(src_fd);
            src_fd = -1;
        } else {
            for (ssize_t i = 0; i < n;) {
                size_t off = wpos % RING, k = (size_t)(n - i);
                if (k > RING - off) k = RING - off;
                memcpy(ring + off, buf + i, k);
                wpos += k;
                i += (ssize_t)k;
            }
        }
        pthread_mutex_unlock(&lk);
        if (write(notify[1], "d", 1) < 0) { /* full: the sender is awake anyway */
        }
    }
    return NULL;
}

/* Writes what listener l has not had yet; drops it when it hangs up. Called with lk held. */
static void send_some(struct listener *l) {
    if (wpos - l->pos > RING / 2) l->pos = wpos - RING / 4; /* too slow: skip ahead */
    size_t off = l->pos % RING, n = (size_t)(wpos - l->pos);
    if (n > RING - off) n = RING - off;
    ssize_t w = write(l->fd, ring + off, n);
    if (w > 0) {
        l->pos += (uint64_t)w;
        sent_total += (uint64_t)w;
    } else if (w < 0 && errno != EAGAIN && errno != EINTR) {
        close(l->fd);
        l->fd = -1;
    }
}

static void *sender(void *arg) {
    (void)arg;
    for (;;) {
        qbench_update();
        struct pollfd p[1 + MAX_CLIENTS];
        int idx[MAX_CLIENTS], n = 0;
        p[0] = (struct pollfd){.fd = notify[0], .events = POLLIN};
        pthread_mutex_lock(&lk);
        for (int i = 0; i < MAX_CLIENTS; i++)
            if (listeners[i].fd >= 0 && listeners[i].pos < wpos) {
                p[1 + n] = (struct pollfd){.fd = listeners[i].fd, .events = POLLOUT};
                idx[n++] = i;
            }
        pthread_mutex_unlock(&lk);
        if (poll(p, (nfds_t)(1 + n), 1000) <= 0) continue; /* timeout or EINTR */
        char drain[256];
        if (p[0].revents & POLLIN && read(notify[0], drain, sizeof drain) < 0) {
        }
        pthread_mutex_lock(&lk);
        for (int k = 0; k < n; k++)
            if (p[1 + k].revents && listeners[idx[k]].fd == p[1 + k].fd) send_some(&listeners[idx[k]]);
        pthread_mutex_unlock(&lk);
    }
    return NULL;
}

static void *stats(void *arg) {
    (void)arg;
    uint64_t last = 0;
    for (;;) {
        qbench_update();
        wl_sleep_ms(1000);
        pthread_mutex_lock(&lk);
        stat_rate = sent_total - last; /* bytes per second to listeners */
        last = sent_total;
        pthread_mutex_unlock(&lk);
    }
    return NULL;
}

static void *slave(void *arg) {
    (void)arg;
    for (;;) {
        qbench_update();
        wl_sleep_ms(1000);
        pthread_mutex_lock(&lk);
        relays_checked++; /* no relays are configured: the check finds none to start */
        pthread_mutex_unlock(&lk);
    }
    return NULL;
}

int main(int argc, char **argv) {
    wl_init(argc, argv);
    for (int i = 0; i < MAX_CLIENTS; i++) listeners[i].fd = -1;
    if (pipe2(notify, O_CLOEXEC | O_NONBLOCK)) die("pipe");
    int port = 0, ls = net_listen(&port);
    wl_thread("handler", handler, NULL);
    wl_thread("source", source, NULL);
    wl_thread("sender", sender, NULL);
    wl_thread("stats", stats, NULL);
    wl_thread("slave", slave, NULL);
    wl_ready(port);
    for (;;) {
        qbench_update();
        int fd = wl_accept(ls);
        if (fd < 0) continue;
        pthread_mutex_lock(&lk);
        if (npending < MAX_CLIENTS)
            pending[npending++] = fd;
        else
            close(fd);
        pthread_mutex_unlock(&lk);
    }
}
