/*
 * api_checks: every C entry point of the runtime, called the wrong way and the right way, with
 * its documented return code checked. Prints "N checks, F failures" and exits non-zero on any
 * failure. Ends with one in-process update of the main thread alone.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <qbench.h>
#include <stdio.h>

static int checks, failures;

#define CHECK(cond)                                                      \
    do {                                                                 \
        checks++;                                                        \
        if (!(cond)) {                                                   \
            failures++;                                                  \
            printf("FAIL line %d: %s (errno %d)\n", __LINE__, #cond, errno); \
        }                                                                \
    } while (0)

static void *noop(void *arg) { return arg; }
static void nothing(void *arg) { (void)arg; }

/* A thread the runtime did not create: registration calls, the wrong way and the right way. */
static void *outsider(void *arg) {
    (void)arg;
    CHECK(qbench_thread_update_callback(nothing, NULL) == ESRCH);
    CHECK(qbench_thread_unregister() == ESRCH);
    CHECK(qbench_thread_register() == 0);
    CHECK(qbench_thread_register() == EEXIST);
    CHECK(qbench_thread_update_callback(nothing, NULL) == 0);
    CHECK(qbench_thread_update_callback(NULL, NULL) == 0);
    CHECK(qbench_thread_unregister() == 0);
    return NULL;
}

/* Leaves through pthread_exit's forced unwind, which passes the runtime's start trampoline. */
static void *exits_early(void *arg) {
    (void)arg;
    pthread_exit(NULL);
}

static void count_hook(void *arg) { (*(int *)arg)++; }

/* Runs on the runtime's helper thread, which does not participate: the registration calls
 * answer ESRCH there instead of waiting for the lock the helper holds while running callbacks. */
static int callback_codes[2] = {-1, -1};
static void reentrant_callback(void *arg) {
    (void)arg;
    callback_codes[0] = qbench_thread_update_callback(nothing, NULL);
    callback_codes[1] = qbench_thread_unregister();
}

int main(void) {
    pthread_t t;
    pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t c = PTHREAD_COND_INITIALIZER;
    struct timespec ts, rem;

    CHECK(qbench_thread_create(NULL, NULL, noop, NULL) == EINVAL);
    CHECK(qbench_thread_create(&t, NULL, NULL, NULL) == EINVAL);
    CHECK(qbench_pthread_cond_wait(NULL, &m) == EINVAL);
    CHECK(qbench_pthread_cond_wait(&c, NULL) == EINVAL);
    CHECK(qbench_pthread_cond_timedwait(&c, &m, NULL) == EINVAL);
    errno = 0;
    CHECK(qbench_nanosleep(NULL, NULL) == -1 && errno == EFAULT);
    ts = (struct timespec){0, 2000000000L};
    errno = 0;
    CHECK(qbench_nanosleep(&ts, NULL) == -1 && errno == EINVAL);
    ts = (struct timespec){-1, 0};
    errno = 0;
    CHECK(qbench_nanosleep(&ts, NULL) == -1 && errno == EINVAL);

    /* The main thread was registered when the library loaded. */
    CHECK(qbench_thread_register() == EEXIST);
    CHECK(qbench_update_requested() == 0);

    CHECK(pthread_create(&t, NULL, outsider, NULL) == 0);
    CHECK(pthread_join(t, NULL) == 0);
    CHECK(qbench_thread_create(&t, NULL, exits_early, NULL) == 0);
    CHECK(pthread_join(t, NULL) == 0);

    /* A timed condition wait that times out returns ETIMEDOUT, holding the mutex. */
    clock_gettime(CLOCK_REALTIME, &ts);
    pthread_mutex_lock(&m);
    CHECK(qbench_pthread_cond_timedwait(&c, &m, &ts) == ETIMEDOUT);
    CHECK(pthread_mutex_trylock(&m) == EBUSY);
    pthread_mutex_unlock(&m);

    /* Sleeps run their full length while nothing is pending. */
    CHECK(qbench_sleep(0) == 0);
    CHECK(qbench_usleep(1000) == 0);
    ts = (struct timespec){0, 1000000};
    CHECK(qbench_nanosleep(&ts, &rem) == 0);

    int hook_runs = 0;
    CHECK(qbench_set_quiescence_hook(count_hook, &hook_runs) == 0);
    CHECK(qbench_thread_update_callback(reentrant_callback, NULL) == 0);
    CHECK(qbench_request_update() == 0);
    CHECK(qbench_request_update() == EALREADY);
    CHECK(qbench_update_requested() == 1);

    /* While an update is pending, sleeps return at once, saying how much was left. */
    CHECK(qbench_sleep(5) == 5);
    errno = 0;
    CHECK(qbench_usleep(1000000) == -1 && errno == EINTR);
    ts = (struct timespec){1, 0};
    errno = 0;
    CHECK(qbench_nanosleep(&ts, &rem) == -1 && errno == EINTR);
    CHECK(rem.tv_sec * 1000000000L + rem.tv_nsec > 900000000L);

    /* The only participating thread left is this one: parking here is full quiescence. */
    qbench_update();
    CHECK(hook_runs == 1);
    CHECK(callback_codes[0] == ESRCH && callback_codes[1] == ESRCH);
    CHECK(qbench_update_requested() == 0);
    CHECK(qbench_set_quiescence_hook(NULL, NULL) == 0);

    printf("%d checks, %d failures\n", checks, failures);
    return failures != 0;
}
