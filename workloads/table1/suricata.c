/*
 * suricata-like: the Suricata IDS pipeline in miniature, for the study's Table I.
 *
 * Threads (8 + 3 workers): the capture thread runs a libpcap-style dispatch loop over the
 * "interface" (a listening socket whose connections carry framed packets: 2-byte flow id, 2-byte
 * length, payload); decode turns packets into flows; 3 detect workers match 8 signatures; output
 * writes alert lines; stages are joined by condition-variable queues. Beside them: the flow
 * manager sweeps idle flows every 100 ms into the recycler's queue, the recycler frees them, the
 * stats thread adds up counters every second, the command thread answers "stats" on a second
 * port, and the main thread waits for stdin to close. Load: `table1-load suricata` (10 request
 * streams and one large transfer, concurrently).
 *
 * cap_dispatch is pcap_dispatch in miniature: it polls again when a signal interrupts it and
 * returns only with packets, or when cap_breakloop (pcap_breakloop) was called; so an idle
 * capture thread needs an update callback to reach its update point.
 *
 *   suricata-like [--variant all|update-only]   prints "ready PORT"; exits when stdin closes
 *
 * The study's counts for this program:
 *   update points                      9  (one per thread function's loop)
 *   changed lines                     13  (8 wl_thread, 2 wl_sleep_ms, 2 wl_cond_wait,
 *                                          1 wl_on_update)
 *   changes beyond the runtime calls   0  (the callback is cap_breakloop, as pcap_breakloop
 *                                          exists already in libpcap)
 * update-only: the queue waits are plain pthread_cond_waits, and an idle capture thread never
 * leaves cap_dispatch: the update does not quiesce (DNQ).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <qbench.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common.h"

#define WORKERS 3
#define MAX_LINKS 32
#define FLOW_BUCKETS 1024

struct pkt {
    struct pkt *next;
    unsigned flow, len, alerts;
    char data[1500];
};

struct queue {
    pthread_mutex_t m;
    pthread_cond_t c;
    struct pkt *head, *tail;
    int len;
};
static struct queue q_decode, q_detect, q_output;
static atomic_ulong captured, dropped, alerts, logged, recycled;

static void q_push(struct queue *q, struct pkt *p) {
    p->next = NULL;
    pthread_mutex_lock(&q->m);
    if (q->len >= 10000) { /* a stage fell behind: drop, as an IDS under overload does */
        pthread_mutex_unlock(&q->m);
        free(p);
        atomic_fetch_add(&dropped, 1);
        return;
    }
    if (q->tail) q->tail->next = p; else q->head = p;
    q->tail = p;
    q->len++;
    pthread_cond_signal(&q->c);
    pthread_mutex_unlock(&q->m);
}

static struct pkt *q_pop(struct queue *q) {
    pthread_mutex_lock(&q->m);
    while (!q->head) wl_cond_wait(&q->c, &q->m);
    struct pkt *p = q->head;
    q->head = p->next;
    if (!q->head) q->tail = NULL;
    q->len--;
    pthread_mutex_unlock(&q->m);
    return p;
}

/* ---- capture ---- */
struct link {
    int fd;
    size_t len;
    char buf[65536];
};
static struct capture {
    int ls, wake[2];
    atomic_int brk;
    struct link links[MAX_LINKS];
} cap;

static void cap_breakloop(void *arg) {
    struct capture *c = arg;
    atomic_store(&c->brk, 1);
    if (write(c->wake[1], "b", 1) < 0) { /* full: the loop is being woken already */
    }
}

/* Frames in a link's buffer become packets on the decode queue; returns how many. */
static int cap_frames(struct link *l, int slot) {
    int got = 0;
    size_t off = 0;
    while (l->len - off >= 4) {
        unsigned flow = ((unsigned char)l->buf[off] << 8) | (unsigned char)l->buf[off + 1];
        unsigned len = ((unsigned char)l->buf[off + 2] << 8) | (unsigned char)l->buf[off + 3];
        if (len > sizeof((struct pkt *)0)->data) len = sizeof((struct pkt *)0)->data;
        if (l->len - off - 4 < len) break;
        struct pkt *p = malloc(sizeof *p);
        if (p) {
            p->flow = (unsigned)slot << 16 | flow;
            p->len = len;
            p->alerts = 0;
            memcpy(p->data, l->buf + off + 4, len);
            q_push(&q_decode, p);
            got++;
        }
        off += 4 + len;
    }
    memmove(l->buf, l->buf + off, l->len - off);
    l->len -= off;
    return got;
}

static int cap_dispatch(struct capture *c) {
    for (;;) {
        if (atomic_exchange(&c->brk, 0)) return -2; /* PCAP_ERROR_BREAK */
        struct pollfd p[2 + MAX_LINKS];
        int n = 2;
        p[0] = (struct pollfd){.fd = c->wake[0], .events = POLLIN};
        p[1] = (struct pollfd){.fd = c->ls, .events = POLLIN};
        for (int i = 0; i < MAX_LINKS; i++)
            if (c->links[i].fd >= 0) p[n++] = (struct pollfd){.fd = c->links[i].fd, .events = POLLIN};
        if (poll(p, (nfds_t)n, -1) < 0) continue; /* EINTR: poll again, as libpcap does */
        char drain[64];
        if (p[0].revents && read(c->wake[0], drain, sizeof drain) < 0) {
        }
        if (p[1].revents & POLLIN) {
            int fd = accept4(c->ls, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
            for (int i = 0; i < MAX_LINKS && fd >= 0; i++)
                if (c->links[i].fd < 0) {
                    c->links[i].fd = fd;
                    c->links[i].len = 0;
                    fd = -1;
                }
            if (fd >= 0) close(fd);
        }
        int got = 0;
        for (int i = 0; i < MAX_LINKS; i++) {
            struct link *l = &c->links[i];
            if (l->fd < 0) continue;
            ssize_t r = read(l->fd, l->buf + l->len, sizeof l->buf - l->len);
            if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
                close(l->fd);
                l->fd = -1;
            } else if (r > 0) {
                l->len += (size_t)r;
                got += cap_frames(l, i);
            }
        }
        if (got) {
            atomic_fetch_add(&captured, (unsigned long)got);
            return got;
        }
    }
}

static void *capture(void *arg) {
    (void)arg;
    wl_on_update(cap_breakloop, &cap);
    for (;;) {
        qbench_update();
        cap_dispatch(&cap);
    }
    return NULL;
}

/* ---- flows ---- */
struct flow {
    struct flow *next;
    unsigned key;
    unsigned long packets, bytes;
    double last_seen;
};
static pthread_mutex_t flk = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t recycle_cond = PTHREAD_COND_INITIALIZER;
static struct flow *flows[FLOW_BUCKETS], *recycle;

static void *decode(void *arg) {
    (void)arg;
    for (;;) {
        qbench_update();
        struct pkt *p = q_pop(&q_decode);
        pthread_mutex_lock(&flk);
        struct flow **b = &flows[p->flow % FLOW_BUCKETS], *f = *b;
        while (f && f->key != p->flow) f = f->next;
        if (!f && (f = calloc(1, sizeof *f))) {
            f->key = p->flow;
            f->next = *b;
            *b = f;
        }
        if (f) {
            f->packets++;
            f->bytes += p->len;
            f->last_seen = now_s();
        }
        pthread_mutex_unlock(&flk);
        q_push(&q_detect, p);
    }
    return NULL;
}

static const char *const signatures[8] = {"/etc/passwd", "cmd.exe", "<script>", "UNION SELECT",
                                          "../..",       "\x90\x90\x90\x90", "wget http", "eval("};

static void *detect(void *arg) {
    (void)arg;
    for (;;) {
        qbench_update();
        struct pkt *p = q_pop(&q_detect);
        for (int s = 0; s < 8; s++)
            if (memmem(p->data, p->len, signatures[s], strlen(signatures[s]))) p->alerts |= 1u << s;
        if (p->alerts)
            q_push(&q_output, p);
        else
            free(p);
    }
    return NULL;
}

static void *output(void *arg) {
    (void)arg;
    int log = open("/dev/null", O_WRONLY | O_CLOEXEC);
    for (;;) {
        qbench_update();
        struct pkt *p = q_pop(&q_output);
        char line[128];
        int n = snprintf(line, sizeof line, "alert flow %u signatures %#x\n", p->flow, p->alerts);
        if (write(log, line, (size_t)n) == n) atomic_fetch_add(&logged, 1);
        atomic_fetch_add(&alerts, 1);
        free(p);
    }
    return NULL;
}

static void *flow_manager(void *arg) {
    (void)arg;
    for (;;) {
        qbench_update();
        wl_sleep_ms(100);
        double old = now_s() - 1.0;
        pthread_mutex_lock(&flk);
        for (int i = 0; i < FLOW_BUCKETS; i++)
            for (struct flow **f = &flows[i]; *f;) {
                if ((*f)->last_seen >= old) {
                    f = &(*f)->next;
                    continue;
                }
                struct flow *idle = *f;
                *f = idle->next;
                idle->next = recycle;
                recycle = idle;
            }
        if (recycle) pthread_cond_signal(&recycle_cond);
        pthread_mutex_unlock(&flk);
    }
    return NULL;
}

static void *recycler(void *arg) {
    (void)arg;
    for (;;) {
        qbench_update();
        pthread_mutex_lock(&flk);
        while (!recycle) wl_cond_wait(&recycle_cond, &flk);
        struct flow *list = recycle;
        recycle = NULL;
        pthread_mutex_unlock(&flk);
        while (list) {
            struct flow *next = list->next;
            free(list);
            list = next;
            atomic_fetch_add(&recycled, 1);
        }
    }
    return NULL;
}

static unsigned long totals[5];

static void *stats(void *arg) {
    (void)arg;
    for (;;) {
        qbench_update();
        wl_sleep_ms(1000);
        totals[0] = atomic_load(&captured);
        totals[1] = atomic_load(&dropped);
        totals[2] = atomic_load(&alerts);
        totals[3] = atomic_load(&logged);
        totals[4] = atomic_load(&recycled);
    }
    return NULL;
}

static int command_ls;

static void *command(void *arg) {
    (void)arg;
    for (;;) {
        qbench_update();
        int fd = net_accept(command_ls);
        if (fd < 0) continue;
        char line[64], out[160];
        if (net_read_line(fd, line, sizeof line) > 0 && strncmp(line, "stats", 5) == 0) {
            int n = snprintf(out, sizeof out, "captured %lu dropped %lu alerts %lu\n",
                             atomic_load(&captured), atomic_load(&dropped), atomic_load(&alerts));
            net_write_all(fd, out, (size_t)n);
        }
        close(fd);
    }
    return NULL;
}

int main(int argc, char **argv) {
    wl_init(argc, argv);
    struct queue *qs[] = {&q_decode, &q_detect, &q_output};
    for (int i = 0; i < 3; i++) {
        pthread_mutex_init(&qs[i]->m, NULL);
        pthread_cond_init(&qs[i]->c, NULL);
    }
    for (int i = 0; i < MAX_LINKS; i++) cap.links[i].fd = -1;
    if (pipe2(cap.wake, O_CLOEXEC | O_NONBLOCK)) die("pipe");
    int port = 0, command_port = 0;
    cap.ls = net_listen(&port);
    command_ls = net_listen(&command_port);
    wl_thread("capture", capture, NULL);
    wl_thread("decode", decode, NULL);
    for (int i = 0; i < WORKERS; i++) wl_thread("detect", detect, NULL);
    wl_thread("output", output, NULL);
    wl_thread("flow-manager", flow_manager, NULL);
    wl_thread("flow-recycler", recycler, NULL);
    wl_thread("stats", stats, NULL);
    wl_thread("command", command, NULL);
    wl_ready(port);
    for (;;) {
        qbench_update();
        struct pollfd p = {.fd = 0, .events = POLLIN};
        if (poll(&p, 1, -1) < 0) continue; /* EINTR */
        if (wl_stdin_closed()) return 0;
    }
}
