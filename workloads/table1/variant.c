/* variant.c - the variant switch of the Table I workloads (see common.h). */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <qbench.h>
#include <semaphore.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "common.h"

int wl_all = 1;

void wl_init(int argc, char **argv) {
    const char *v = getenv("TABLE1_VARIANT");
    for (int i = 1; i + 1 < argc; i++)
        if (strcmp(argv[i], "--variant") == 0) v = argv[i + 1];
    if (v && strcmp(v, "update-only") == 0)
        wl_all = 0;
    else if (v && strcmp(v, "all") != 0) {
        fprintf(stderr, "unknown variant %s (all, update-only)\n", v);
        exit(2);
    }
    /* Clients hang up mid-response; that must end the connection, not the server. */
    signal(SIGPIPE, SIG_IGN);
}

struct start {
    void *(*fn)(void *);
    void *arg;
    char name[16];
    sem_t started;
};

static void *trampoline(void *p) {
    struct start *s = p;
    void *(*fn)(void *) = s->fn, *arg = s->arg;
    pthread_setname_np(pthread_self(), s->name);
    /* update-only: the thread was made with plain pthread_create; registering it keeps it a
     * participating thread, so the runtime waits for it at its update points. */
    if (wl_all) {
        free(s);
    } else {
        qbench_thread_register();
        sem_post(&s->started); /* the creator frees s */
    }
    return fn(arg);
}

void wl_thread(const char *name, void *(*fn)(void *), void *arg) {
    struct start *s = malloc(sizeof *s);
    pthread_t t;
    pthread_attr_t attr;
    if (!s) die("malloc");
    s->fn = fn;
    s->arg = arg;
    snprintf(s->name, sizeof s->name, "%s", name);
    sem_init(&s->started, 0, 0);
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    int rc = wl_all ? qbench_thread_create(&t, &attr, trampoline, s)
                    : pthread_create(&t, &attr, trampoline, s);
    pthread_attr_destroy(&attr);
    if (rc) {
        errno = rc;
        die("thread create");
    }
    if (wl_all) return; /* qbench_thread_create registered the thread already */
    /* Wait until the thread participates, so that "ready" means every thread counts. A signal
     * may interrupt the wait: retry, the thread registers without ever parking. */
    while (sem_wait(&s->started) && errno == EINTR) {
    }
    sem_destroy(&s->started);
    free(s);
}

int wl_cond_wait(pthread_cond_t *cond, pthread_mutex_t *mutex) {
    return wl_all ? qbench_pthread_cond_wait(cond, mutex) : pthread_cond_wait(cond, mutex);
}

void wl_sleep_ms(unsigned ms) {
    if (wl_all) {
        qbench_usleep((useconds_t)ms * 1000);
        return;
    }
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR) {
    }
}

void wl_sleep_s(unsigned s) {
    if (wl_all)
        qbench_sleep(s);
    else
        sleep(s);
}

void wl_on_update(void (*cb)(void *), void *arg) {
    if (wl_all) qbench_thread_update_callback(cb, arg);
}

void wl_ready(int port) {
    printf("ready %d\n", port);
    fflush(stdout);
}

int wl_stdin_closed(void) {
    struct pollfd p = {.fd = 0, .events = POLLIN};
    char buf[64];
    if (poll(&p, 1, 0) <= 0) return 0;
    ssize_t n = read(0, buf, sizeof buf);
    return n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN);
}

int wl_accept(int ls) {
    struct pollfd p[2] = {{.fd = ls, .events = POLLIN}, {.fd = 0, .events = POLLIN}};
    if (poll(p, 2, -1) < 0) return -1; /* EINTR */
    if (p[1].revents && wl_stdin_closed()) exit(0);
    if (!(p[0].revents & POLLIN)) return -1;
    return accept4(ls, NULL, NULL, SOCK_CLOEXEC);
}
