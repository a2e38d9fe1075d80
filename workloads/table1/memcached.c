/*
 * memcached-like: a memcached 1.4 server in miniature, for the study's Table I.
 *
 * Threads (5): the main thread is the dispatcher: an event loop (epoll) over the listening
 * socket, stdin and its notification pipe; it accepts connections and hands each to a worker
 * round-robin through the worker's connection queue and notification pipe ('c'); 4 workers run
 * the same event loop over their notification pipe and their connections, and answer
 * "set KEY VALUE" / "get KEY" against a hash table with striped item locks.
 * Load: `table1-load memcached` (a memslap-style get/set client, 4 connections).
 *
 * The event loop (el_run) is libevent's event_base_loop in miniature: it retries epoll_wait when
 * a signal interrupts it and returns only when el_break was called; the update points are in
 * the loops around it, as memcached's threads call event_base_loop from their own loops.
 *
 *   memcached-like [--variant all|update-only]  prints "ready PORT"; exits when stdin closes
 *
 * The study's counts for this program:
 *   update points                      2  (dispatcher loop, worker loop)
 *   changed lines                      8  (1 wl_thread, 2 wl_on_update, the 5-line callback)
 *   changes beyond the runtime calls   1  (the 'u' notification: break out of the event loop)
 * update-only: no thread ever leaves its event loop, so none reaches an update point (DNQ).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <qbench.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common.h"

#define WORKERS 4
#define BUCKETS 4096
#define LOCKS 64

struct item {
    struct item *next;
    char key[32], val[128];
};
static struct item *table[BUCKETS];
static pthread_mutex_t item_locks[LOCKS];

struct conn {
    int fd;
    size_t len;
    char in[4096];
};

struct loop {
    int ep, notify[2], brk;
    pthread_mutex_t cq_lock; /* the connection queue: new fds from the dispatcher */
    int cq[64], cq_len;
};
static struct loop workers[WORKERS], dispatcher;

static void el_init(struct loop *l) {
    l->ep = epoll_create1(EPOLL_CLOEXEC);
    if (l->ep < 0 || pipe2(l->notify, O_CLOEXEC | O_NONBLOCK)) die("event loop");
    pthread_mutex_init(&l->cq_lock, NULL);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(l->ep, EPOLL_CTL_ADD, l->notify[0], &ev);
}

static void el_break(struct loop *l) { l->brk = 1; }

/* Runs until el_break; dispatch gets each ready event (data.ptr NULL: the notification pipe). */
static void el_run(struct loop *l, void (*dispatch)(struct loop *, struct epoll_event *)) {
    struct epoll_event evs[64];
    while (!l->brk) {
        int n = epoll_wait(l->ep, evs, 64, -1);
        if (n < 0) continue; /* EINTR: libevent goes round again */
        for (int i = 0; i < n; i++) dispatch(l, &evs[i]);
    }
    l->brk = 0;
}

/* The update callback (the `all` variant): ask the thread to leave its event loop. */
static void wake_loop(void *arg) {
    struct loop *l = arg;
    if (write(l->notify[1], "u", 1) < 0) { /* a full pipe wakes the loop just as well */
    }
}

static unsigned hash(const char *k) {
    unsigned h = 2166136261u;
    while (*k) h = (h ^ (unsigned char)*k++) * 16777619u;
    return h;
}

/* Answers one request line; returns -1 to drop the connection. */
static int handle(int fd, char *line) {
    char key[32], val[128], out[256];
    int n;
    if (sscanf(line, "set %31s %127s", key, val) == 2) {
        unsigned h = hash(key);
        pthread_mutex_lock(&item_locks[h % LOCKS]);
        struct item *it = table[h % BUCKETS];
        while (it && strcmp(it->key, key)) it = it->next;
        if (!it && (it = calloc(1, sizeof *it))) {
            strcpy(it->key, key);
            it->next = table[h % BUCKETS];
            table[h % BUCKETS] = it;
        }
        if (it) strcpy(it->val, val);
        pthread_mutex_unlock(&item_locks[h % LOCKS]);
        n = snprintf(out, sizeof out, it ? "STORED\r\n" : "SERVER_ERROR out of memory\r\n");
    } else if (sscanf(line, "get %31s", key) == 1) {
        unsigned h = hash(key);
        pthread_mutex_lock(&item_locks[h % LOCKS]);
        struct item *it = table[h % BUCKETS];
        while (it && strcmp(it->key, key)) it = it->next;
        if (it)
            n = snprintf(out, sizeof out, "VALUE %s %zu\r\n%s\r\nEND\r\n", key, strlen(it->val),
                         it->val);
        else
            n = snprintf(out, sizeof out, "END\r\n");
        pthread_mutex_unlock(&item_locks[h % LOCKS]);
    } else {
        n = snprintf(out, sizeof out, "ERROR\r\n");
    }
    return net_write_all(fd, out, (size_t)n);
}

static void conn_readable(struct loop *l, struct conn *c) {
    ssize_t n = read(c->fd, c->in + c->len, sizeof c->in - 1 - c->len);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
    if (n > 0) {
        c->len += (size_t)n;
        c->in[c->len] = '\0';
        char *start = c->in, *eol;
        while ((eol = strstr(start, "\r\n")) != NULL) {
            *eol = '\0';
            if (handle(c->fd, start)) n = 0;
            start = eol + 2;
        }
        c->len -= (size_t)(start - c->in);
        memmove(c->in, start, c->len);
        if (c->len == sizeof c->in - 1) n = 0; /* a line longer than the buffer */
    }
    if (n <= 0) {
        epoll_ctl(l->ep, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
        free(c);
    }
}

/* Notification pipe commands: 'c' a new connection is in the queue, 'u' an update is pending. */
static void notified(struct loop *l) {
    char cmds[64];
    ssize_t n = read(l->notify[0], cmds, sizeof cmds);
    for (ssize_t i = 0; i < n; i++) {
        if (cmds[i] == 'u') el_break(l);
        if (cmds[i] != 'c') continue;
        pthread_mutex_lock(&l->cq_lock);
        int fd = l->cq_len ? l->cq[--l->cq_len] : -1;
        pthread_mutex_unlock(&l->cq_lock);
        struct conn *c = fd >= 0 ? calloc(1, sizeof *c) : NULL;
        if (!c) continue;
        c->fd = fd;
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        epoll_ctl(l->ep, EPOLL_CTL_ADD, fd, &ev);
    }
}

static void worker_event(struct loop *l, struct epoll_event *ev) {
    if (ev->data.ptr)
        conn_readable(l, ev->data.ptr);
    else
        notified(l);
}

static void *worker(void *arg) {
    struct loop *l = arg;
    wl_on_update(wake_loop, l);
    for (;;) {
        qbench_update();
        el_run(l, worker_event);
    }
    return NULL;
}

static int ls;
static unsigned next_worker;

static void dispatcher_event(struct loop *l, struct epoll_event *ev) {
    if (ev->data.ptr == &ls) {
        int fd = accept4(ls, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd < 0) return;
        struct loop *w = &workers[next_worker++ % WORKERS];
        pthread_mutex_lock(&w->cq_lock);
        if (w->cq_len < 64) w->cq[w->cq_len++] = fd;
        pthread_mutex_unlock(&w->cq_lock);
        if (write(w->notify[1], "c", 1) < 0) { /* full: the worker is busy reading it */
        }
    } else if (ev->data.ptr) {
        if (wl_stdin_closed()) exit(0);
    } else {
        notified(l);
    }
}

int main(int argc, char **argv) {
    wl_init(argc, argv);
    for (int i = 0; i < LOCKS; i++) pthread_mutex_init(&item_locks[i], NULL);
    int port = 0;
    ls = net_listen(&port);
    el_init(&dispatcher);
    static int stdin_tag;
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &ls};
    epoll_ctl(dispatcher.ep, EPOLL_CTL_ADD, ls, &ev);
    ev.data.ptr = &stdin_tag;
    epoll_ctl(dispatcher.ep, EPOLL_CTL_ADD, 0, &ev);
    for (int i = 0; i < WORKERS; i++) {
        el_init(&workers[i]);
        wl_thread("worker", worker, &workers[i]);
    }
    wl_on_update(wake_loop, &dispatcher);
    wl_ready(port);
    for (;;) {
        qbench_update();
        el_run(&dispatcher, dispatcher_event);
    }
}
