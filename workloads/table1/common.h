/*
 * common.h - shared by the Table I workloads (the C files of workloads/table1): loopback socket helpers
 * (net.c, also used by the load generator, which does not link the runtime) and the variant
 * switch with the runtime calls each variant makes (variant.c).
 *
 * The variants (chosen at start-up with --variant all|update-only, or TABLE1_VARIANT):
 *   all          update points plus every runtime call the study used: wrapped thread creation,
 *                wrapped condition waits, interruptible sleeps, update callbacks.
 *   update-only  the same update points and nothing else: plain pthread_create (the thread then
 *                registers itself, so it still participates), plain pthread_cond_wait, the
 *                program's own sleeps, no callbacks.
 * Every line of a workload that differs between the variants calls one of the wl_* functions
 * below; that is how the "changed lines" of each workload's header comment are counted.
 */
#ifndef TABLE1_COMMON_H
#define TABLE1_COMMON_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* ---- net.c: loopback TCP, no runtime ---- */
void die(const char *what);
/* A listening TCP socket on 127.0.0.1; *port 0 picks a free port and is set to it. */
int net_listen(int *port);
/* A connected TCP socket to 127.0.0.1:port, or -1. */
int net_connect(int port);
void net_nonblock(int fd);
/* Writes all of buf; waits in poll when the socket is full and retries EINTR. 0 or -1. */
int net_write_all(int fd, const void *buf, size_t len);
/* Reads one line ending in '\n' (kept, NUL-terminated), a byte at a time, retrying EINTR: for
 * short request lines that are known to be on their way. Returns its length, 0 at end of file,
 * -1 on error. */
ssize_t net_read_line(int fd, char *buf, size_t cap);
/* Reads exactly len bytes, retrying EINTR. 0, or -1 at end of file or error. */
int net_read_full(int fd, void *buf, size_t len);
/* Waits in poll for a connection on the listening socket ls and accepts it (close-on-exec).
 * The connected socket, or -1 when the wait was interrupted (EINTR) or the connection is gone. */
int net_accept(int ls);
double now_s(void);

/* ---- variant.c: the variant switch ---- */
extern int wl_all; /* 1 in the `all` variant, 0 in `update-only` */
/* Parses --variant (default all), ignores SIGPIPE. */
void wl_init(int argc, char **argv);
/* Starts a detached participating thread named `name`; returns once it participates. */
void wl_thread(const char *name, void *(*fn)(void *), void *arg);
/* all: qbench_pthread_cond_wait; update-only: pthread_cond_wait. */
int wl_cond_wait(pthread_cond_t *cond, pthread_mutex_t *mutex);
/* A program's own millisecond sleep that resumes after a signal until the whole time passed
 * (as icecast's thread_sleep does). all: qbench_usleep, which an update request ends. */
void wl_sleep_ms(unsigned ms);
/* sleep(3), which a signal cuts short in both variants. all: qbench_sleep, which also returns at
 * once when an update is pending already. */
void wl_sleep_s(unsigned s);
/* all: qbench_thread_update_callback; update-only: nothing. */
void wl_on_update(void (*cb)(void *), void *arg);
/* Prints "ready PORT" on stdout. */
void wl_ready(int port);
/* 1 when stdin is at end of file (never blocks): the workloads exit when it closes. */
int wl_stdin_closed(void);
/* The main loop's wait of a server: net_accept's, watching stdin too. The program exits (status
 * 0) when stdin is closed; otherwise the connected socket, or -1 when there is none to accept. */
int wl_accept(int ls);

#endif
