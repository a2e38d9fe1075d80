/*
 * table1-load: the load generators of the Table I workloads, one mode per workload. Loopback
 * only; each runs for SECONDS (or until SIGTERM) and stops by itself, then prints one line:
 *   "load MODE seconds S ops N bytes B ops_per_s X mb_per_s Y"
 *
 *   table1-load MODE PORT SECONDS
 *
 * While it runs, each SIGUSR1 prints "sample ops N seconds S": the operations so far and the time
 * since the start, for a benchmark that changes something in the middle of one load.
 *
 * MODE      what it does (like the study's loads)
 * httpd     3 clients downloading an 8 MiB file over and over, 4 requests per connection
 * icecast   one source streaming 4 KiB every 4 ms (about 1 MB/s) and 5 listeners reading it
 * iperf     one bandwidth client writing 128 KiB buffers as fast as it can
 * memcached 4 memslap-style connections: 90 % get, 10 % set, 10,000 keys, one request at a time
 * spacetyrant 5 telnet-style players sending a command and waiting for its prompt
 * suricata  10 request streams (a 200-byte packet every ms each, every 10th one hostile) and one
 *           large transfer (1400-byte packets as fast as possible)
 * Operations: downloads, listener reads, writes, requests, commands, packets.
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "common.h"

static int port;
static double deadline;
static atomic_ulong ops, bytes;

static volatile sig_atomic_t stopped;
static void stop(int sig) {
    (void)sig;
    stopped = 1;
}

static int running(void) { return !stopped && now_s() < deadline; }

/* Prints a running count on each SIGUSR1, which every other thread blocks. */
static double started;
static void *sampler(void *arg) {
    const sigset_t *set = arg;
    for (;;) {
        int sig;
        if (sigwait(set, &sig) != 0) continue;
        printf("sample ops %lu seconds %.6f\n", atomic_load(&ops), now_s() - started);
        fflush(stdout);
    }
    return NULL;
}

/* A connection whose reads give up after 200 ms, so every client sees the deadline. */
static int dial(void) {
    int fd;
    while ((fd = net_connect(port)) < 0 && running()) usleep(10000);
    struct timeval tv = {0, 200000};
    if (fd >= 0) setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    return fd;
}

/* Reads until the data read so far ends with `end`; returns bytes read or -1. */
static long read_until(int fd, char *buf, size_t cap, const char *end) {
    size_t n = 0, e = strlen(end);
    while (running()) {
        ssize_t r = read(fd, buf + n, cap - 1 - n);
        if (r == 0) return -1;
        if (r < 0) continue; /* receive timeout: check the deadline */
        n += (size_t)r;
        buf[n] = '\0';
        if (n >= e && memcmp(buf + n - e, end, e) == 0) return (long)n;
        if (n == cap - 1) return -1;
    }
    return -1;
}

static void *httpd_client(void *arg) {
    (void)arg;
    static const char req[] = "GET /8388608 HTTP/1.1\r\n\r\n";
    char *buf = malloc(1 << 16);
    while (running()) {
        int fd = dial();
        for (int i = 0; i < 4 && fd >= 0 && running(); i++) {
            if (net_write_all(fd, req, sizeof req - 1)) break;
            long left = 8388608, got = 0, hdr = 0;
            while (left > 0 && running()) { /* header, then body */
                ssize_t r = read(fd, buf, 1 << 16);
                if (r == 0) break;
                if (r < 0) continue;
                if (!hdr) {
                    char *end = memmem(buf, (size_t)r, "\r\n\r\n", 4);
                    if (!end) continue;
                    hdr = 1;
                    r -= end + 4 - buf;
                }
                left -= r;
                got += r;
            }
            atomic_fetch_add(&bytes, (unsigned long)got);
            if (left == 0) atomic_fetch_add(&ops, 1);
        }
        if (fd >= 0) close(fd);
    }
    free(buf);
    return NULL;
}

static void *icecast_source(void *arg) {
    (void)arg;
    char chunk[4096];
    memset(chunk, 0x55, sizeof chunk);
    int fd = dial();
    if (fd < 0 || net_write_all(fd, "SOURCE /stream\r\n\r\n", 18)) return NULL;
    while (running() && net_write_all(fd, chunk, sizeof chunk) == 0) usleep(4000);
    close(fd);
    return NULL;
}

static void *icecast_listener(void *arg) {
    (void)arg;
    char buf[16384];
    int fd = dial();
    if (fd < 0 || net_write_all(fd, "GET /stream\r\n\r\n", 15)) return NULL;
    while (running()) {
        ssize_t r = read(fd, buf, sizeof buf);
        if (r == 0) break;
        if (r > 0) {
            atomic_fetch_add(&bytes, (unsigned long)r);
            atomic_fetch_add(&ops, 1);
        }
    }
    close(fd);
    return NULL;
}

static void *iperf_client(void *arg) {
    (void)arg;
    char *buf = calloc(1, 128 << 10);
    int fd = dial();
    while (fd >= 0 && running() && net_write_all(fd, buf, 128 << 10) == 0) {
        atomic_fetch_add(&bytes, 128 << 10);
        atomic_fetch_add(&ops, 1);
    }
    if (fd >= 0) close(fd);
    free(buf);
    return NULL;
}

static void *memcached_client(void *arg) {
    unsigned seed = (unsigned)(uintptr_t)arg * 7919u + 1;
    char req[256], buf[512];
    int fd = dial();
    while (fd >= 0 && running()) {
        int key = rand_r(&seed) % 10000, n;
        int set = rand_r(&seed) % 10 == 0;
        if (set)
            n = snprintf(req, sizeof req, "set key%d value-%d-%0100d\r\n", key, key, key);
        else
            n = snprintf(req, sizeof req, "get key%d\r\n", key);
        if (net_write_all(fd, req, (size_t)n)) break;
        long got = read_until(fd, buf, sizeof buf, set ? "STORED\r\n" : "END\r\n");
        if (got < 0) break;
        atomic_fetch_add(&bytes, (unsigned long)(n + got));
        atomic_fetch_add(&ops, 1);
    }
    if (fd >= 0) close(fd);
    return NULL;
}

static void *spacetyrant_player(void *arg) {
    unsigned seed = (unsigned)(uintptr_t)arg + 1;
    char cmd[64], buf[4096];
    int fd = dial();
    if (fd < 0 || read_until(fd, buf, sizeof buf, "> ") < 0) return NULL;
    for (int i = 0; running(); i++) {
        static const char *const verbs[] = {"look", "move", "mine", "who"};
        int n = i % 4 == 1 ? snprintf(cmd, sizeof cmd, "move %d\r\n", rand_r(&seed) % 100)
                           : snprintf(cmd, sizeof cmd, "%s\r\n", verbs[i % 4]);
        if (net_write_all(fd, cmd, (size_t)n)) break;
        long got = read_until(fd, buf, sizeof buf, "> ");
        if (got < 0) break;
        atomic_fetch_add(&bytes, (unsigned long)got);
        atomic_fetch_add(&ops, 1);
    }
    close(fd);
    return NULL;
}

/* Packets: 2-byte flow id, 2-byte length, payload. arg 0..9: request streams; 10: transfer. */
static void *suricata_stream(void *arg) {
    int id = (int)(uintptr_t)arg, large = id == 10;
    char frame[4 + 1400];
    int fd = dial();
    for (unsigned i = 0; fd >= 0 && running(); i++) {
        unsigned flow = (unsigned)id * 100 + i % 50, len;
        if (large) {
            len = 1400;
            memset(frame + 4, 'x', len);
        } else {
            len = (unsigned)snprintf(frame + 4, 1400,
                                     "GET /index.php?id=%u%s HTTP/1.1\r\nHost: example\r\n"
                                     "User-Agent: table1-load\r\nAccept: */*\r\n\r\n%0100u",
                                     i, i % 10 == 0 ? "&q=../../etc/passwd" : "", i);
        }
        frame[0] = (char)(flow >> 8);
        frame[1] = (char)flow;
        frame[2] = (char)(len >> 8);
        frame[3] = (char)len;
        if (net_write_all(fd, frame, 4 + len)) break;
        atomic_fetch_add(&bytes, 4 + len);
        atomic_fetch_add(&ops, 1);
        if (!large) usleep(1000);
    }
    if (fd >= 0) close(fd);
    return NULL;
}

struct mode {
    const char *name;
    int threads;
    void *(*fn)(void *);
};

static const struct mode modes[] = {
    {"httpd", 3, httpd_client},         {"icecast", 5, icecast_listener},
    {"iperf", 1, iperf_client},         {"memcached", 4, memcached_client},
    {"spacetyrant", 5, spacetyrant_player}, {"suricata", 11, suricata_stream},
};

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: table1-load MODE PORT SECONDS\n");
        return 2;
    }
    const struct mode *m = NULL;
    for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++)
        if (strcmp(argv[1], modes[i].name) == 0) m = &modes[i];
    port = atoi(argv[2]);
    double seconds = atof(argv[3]);
    if (!m || port <= 0 || seconds <= 0 || seconds > 3600) {
        fprintf(stderr, "table1-load: bad MODE, PORT or SECONDS\n");
        return 2;
    }
    struct sigaction sa = {.sa_handler = SIG_IGN};
    sigaction(SIGPIPE, &sa, NULL);
    sa.sa_handler = stop; /* the benchmark may end a load early: stop and report */
    sigaction(SIGTERM, &sa, NULL);
    static sigset_t usr1;
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &usr1, NULL);
    double start = now_s();
    started = start;
    deadline = start + seconds;
    pthread_t t[16], src, sampling;
    pthread_create(&sampling, NULL, sampler, &usr1);
    pthread_detach(sampling);
    int extra = strcmp(m->name, "icecast") == 0;
    if (extra) pthread_create(&src, NULL, icecast_source, NULL);
    for (int i = 0; i < m->threads; i++) pthread_create(&t[i], NULL, m->fn, (void *)(uintptr_t)i);
    for (int i = 0; i < m->threads; i++) pthread_join(t[i], NULL);
    if (extra) pthread_join(src, NULL);
    double took = now_s() - start;
    unsigned long o = atomic_load(&ops), b = atomic_load(&bytes);
    printf("load %s seconds %.3f ops %lu bytes %lu ops_per_s %.1f mb_per_s %.3f\n", m->name, took,
           o, b, (double)o / took, (double)b / took / 1e6);
    return 0;
}
