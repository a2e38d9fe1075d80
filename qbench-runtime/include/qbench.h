/*
 * qbench.h - the qbench runtime's C API (libqbench.so, libqbench.a; pkg-config name "qbench").
 *
 * Update points, update requests by signal, parking every participating thread at an update
 * point ("full quiescence"), interruptible waits, and in-process measurement, after the QBench
 * library of "A Study of Dynamic Software Update Quiescence for Multithreaded Programs"
 * (HotSWUp 2012). Unlike that library it never hangs a program: an update that does not quiesce
 * within QBENCH_TIMEOUT_MS is abandoned (DNQ) and every thread is released.
 *
 * Participating threads: the main thread (registered when the library loads), threads made by
 * qbench_thread_create, and threads that call qbench_thread_register. The runtime's own helper
 * thread ("qbench-helper") never participates.
 *
 * Environment (read once, when the library loads; a bad value is reported once on stderr and
 * the default is used):
 *   QBENCH_SIGNAL      the update request signal: a name (SIGUSR2, USR1, SIGRTMIN+3) or a number.
 *                      Default SIGUSR2. Its handler is installed without SA_RESTART, so blocking
 *                      calls return EINTR; a program must not install its own handler for it.
 *   QBENCH_TIMEOUT_MS  abandon an update that has not quiesced after this many milliseconds
 *                      (1..3600000). Default 1000.
 *   QBENCH_REPORT      append one JSON line per update to this file:
 *                      {"pid":..,"seq":..,"outcome":"quiesced"|"dnq","request_ns":..,
 *                       "first_arrival_ns":..|null,"last_arrival_ns":..|null,
 *                       "quiescence_ns":..|null,"request_latency_ns":..|null,"threads":N,
 *                       "missing":[{"tid":..,"name":".."}]}
 *                      Times are CLOCK_MONOTONIC nanoseconds; quiescence_ns is the last arrival
 *                      minus the first, request_latency_ns the last arrival minus the request;
 *                      both are null for a DNQ, and "missing" names the threads that did not
 *                      arrive. A file that cannot be written is reported once; the program goes on.
 *
 * Error codes: functions returning int return 0 or an errno value, as the pthread functions do,
 * except the sleeps, which follow usleep(3) and nanosleep(2). Codes used throughout:
 *   EINVAL            a required pointer is NULL
 *   ESRCH             the calling thread is not registered
 *   EEXIST            the calling thread is registered already
 *   ENOSYS            the runtime failed to initialise (the reason was printed on stderr)
 *   ENOTRECOVERABLE   an internal error was caught; the program can go on
 *
 * Probe contract (for qbench-trace and other observers): qbench_update, qbench_probe_request,
 * qbench_probe_arrive, qbench_probe_depart and qbench_probe_release are exported, never
 * inlined, and start with a 5-byte NOP. The qbench_probe_* anchors run only while an update is
 * pending:
 *   qbench_probe_request(seq)  an update was requested (runs in the signal handler)
 *   qbench_probe_arrive(seq)   the calling thread parks at an update point
 *   qbench_probe_depart(seq)   the calling thread is released
 *   qbench_probe_release(seq, quiesced, threads)
 *                              the update ends (1 quiesced, 0 DNQ) with this many participating
 *                              threads, just before they are released (on the helper thread)
 * They are not for programs to call.
 *
 * qbench_state (a data symbol, also in the contract) is the runtime's state for an observer that
 * attaches while an update is pending: it reads the struct from the process's memory. The
 * runtime writes it only on slow paths (registration, arrival, the start and end of an update,
 * fork), never at an update point that has nothing to do. sequence is odd while the runtime
 * writes; a copy is consistent when sequence was even and the same before and after it.
 * participants[i] for i < table_len holds the participating threads (tid 0: a free entry); a
 * program with more than QBENCH_STATE_CAPACITY of them has `threads` greater than the entries
 * in use. pending is set by the helper thread when it takes the request up.
 */
#ifndef QBENCH_H
#define QBENCH_H

#include <pthread.h>
#include <stdint.h>
#include <time.h>
#include <unistd.h>

#ifdef __cplusplus
extern "C" {
#endif

/* An update point: parks the calling thread while an update is pending. Costs one load of a
 * flag and a branch otherwise. Put it where the thread holds no lock, between two iterations
 * of its loop. */
void qbench_update(void);

/* 1 while an update is pending, else 0. */
int qbench_update_requested(void);

/* pthread_create, and the new thread participates: registered before start runs, unregistered
 * when it exits; if an update is pending when it starts, it first parks. Returns 0, EINVAL
 * (thread or start NULL), or pthread_create's error. */
int qbench_thread_create(pthread_t *thread, const pthread_attr_t *attr,
                         void *(*start)(void *), void *arg);

/* Makes the calling thread participate (0, EEXIST, ENOSYS). It leaves at exit. */
int qbench_thread_register(void);

/* The calling thread stops participating (0, ESRCH, ENOSYS). */
int qbench_thread_unregister(void);

/* pthread_cond_wait that an update request ends. While an update is pending it is an update
 * point itself: it releases the mutex, parks, takes the mutex back, and returns 0 (a spurious
 * wake-up for the caller's predicate loop). Returns 0, EINVAL, or pthread_cond_wait's error. */
int qbench_pthread_cond_wait(pthread_cond_t *cond, pthread_mutex_t *mutex);

/* The same for pthread_cond_timedwait; also returns ETIMEDOUT. */
int qbench_pthread_cond_timedwait(pthread_cond_t *cond, pthread_mutex_t *mutex,
                                  const struct timespec *abstime);

/* sleep(3) that returns early when an update is requested (or is pending already): returns the
 * whole seconds left, rounded up, or 0 when the full time passed. */
unsigned qbench_sleep(unsigned seconds);

/* usleep(3) that returns early: 0, or -1 with errno EINTR when an update cut it short. */
int qbench_usleep(useconds_t usec);

/* nanosleep(2) that returns early: 0; -1 with errno EINTR and the time left in *rem (when not
 * NULL) when an update cut it short; -1 with EFAULT (req NULL) or EINVAL (req out of range). */
int qbench_nanosleep(const struct timespec *req, struct timespec *rem);

/* Sets the function the runtime's helper thread calls, with arg, each time an update is
 * requested, on behalf of the calling (participating) thread: how to break it out of a wait the
 * runtime cannot interrupt. NULL clears it. cb and arg must stay valid until the thread
 * replaces them, unregisters or exits; cb must not wait for its own thread to exit or unregister.
 * Returns 0, ESRCH, ENOSYS. */
int qbench_thread_update_callback(void (*cb)(void *), void *arg);

/* Requests an update from inside the process, as the update signal does. Returns 0, EALREADY
 * (an update still to come serves it: the pending one, not yet decided, or the next one,
 * requested already while the last was closing), or ENOSYS. A request made once the pending
 * update is decided (from its quiescence hook on, its report included) returns 0 and opens the
 * next update when that one releases its threads. */
int qbench_request_update(void);

/* Sets the function called once, with arg, on the helper thread at each full quiescence, while
 * every participating thread is parked and before they are released: where a real update is
 * applied. NULL clears it. Returns 0 or ENOSYS. */
int qbench_set_quiescence_hook(void (*hook)(void *), void *arg);

/* The exported state: see "Probe contract" above. Version 1 of this layout. */
#define QBENCH_STATE_MAGIC 0x54534251u /* "QBST" in memory */
#define QBENCH_STATE_VERSION 1u
#define QBENCH_STATE_CAPACITY 1024

struct qbench_state_participant {
    int32_t tid;         /* 0: a free entry */
    uint32_t parked;     /* 1 while parked at an update point for the pending update */
    uint64_t arrival_ns; /* CLOCK_MONOTONIC time it parked (while parked) */
};

struct qbench_state {
    uint32_t magic;      /* QBENCH_STATE_MAGIC */
    uint32_t version;    /* QBENCH_STATE_VERSION */
    uint64_t sequence;   /* odd while the runtime writes */
    uint64_t seq;        /* the sequence number of the latest update taken up */
    uint64_t request_ns; /* CLOCK_MONOTONIC time of its request */
    uint32_t pending;    /* 1 while it is pending */
    uint32_t threads;    /* participating threads */
    uint32_t table_len;  /* entries of participants in use (some may be free) */
    uint32_t capacity;   /* QBENCH_STATE_CAPACITY */
    struct qbench_state_participant participants[QBENCH_STATE_CAPACITY];
};

extern const struct qbench_state qbench_state;

/* Probe anchors: see "Probe contract" above. */
void qbench_probe_request(uint64_t seq);
void qbench_probe_arrive(uint64_t seq);
void qbench_probe_depart(uint64_t seq);
void qbench_probe_release(uint64_t seq, uint32_t quiesced, uint32_t threads);

#ifdef __cplusplus
}
#endif

#endif /* QBENCH_H */
