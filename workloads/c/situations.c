/*
 * situations: a multithreaded target whose threads block in chosen ways, for the runtime's
 * tests and benchmarks. Each thread loops: update point, then its blocking call.
 *
 *   situations KIND:COUNT [KIND:COUNT]...
 *
 * KIND is one of:
 *   accept     accept(2) on its own listening TCP socket on 127.0.0.1
 *   read       read(2) on its own pipe
 *   epoll      epoll_wait(2) on its own epoll instance
 *   condwait   qbench_pthread_cond_wait on one shared condition variable
 *   sleep      qbench_sleep(10)
 *   callback   a plain pthread_cond_wait that an update callback breaks
 *   plaincond  a plain pthread_cond_wait nothing breaks (DNQ) until the "u" command
 *   exiter     read(2) on a pipe; on EINTR the thread exits instead of looping
 *   churn      creates a short-lived participating thread every 100 us
 *   stuckaccept  accept(2) retried on EINTR without passing an update point (never arrives)
 *   stuckread    read(2) on a pipe, retried the same way
 *   stucksleep   sleep(3) for 100 s, resumed after each interruption
 *   spin       not a participating thread (plain pthread_create): writes and reads a pipe in a
 *              tight loop, making system calls as fast as it can
 *   outsider   not a participating thread: read(2) on its own pipe, no update point
 *   lockholder takes big_lock, then blocks in read(2) without an update point
 *   lockwaiter blocks in pthread_mutex_lock(&big_lock)
 *   parkholder takes held_lock and loops over update points holding it (a bug: it parks with it)
 *   heldwaiter loops: update point, then pthread_mutex_lock(&held_lock)
 *   restartread  sets SA_RESTART on the update signal's handler, then loops over read(2): the
 *              kernel restarts the read after each interruption
 *   spinner    computes without system calls or update points
 *   vforker    vfork()s a child that waits: the thread waits uninterruptibly (D)
 *   hostile    names itself with a terminal escape sequence, then blocks like stuckread
 *   badname    names itself and the main thread with bytes that are not UTF-8, then loops like read
 *
 * The main thread prints "ready PID" once every thread has started, then serves commands read
 * from stdin, one letter each: "u" unsticks the plaincond threads, "f" forks a child that
 * requests and completes an update of its own and prints "child PID", "x" executes
 * /bin/sleep 60 in the same process, "q" exits. With SITUATIONS_MAIN_OUTSIDE set in the
 * environment the main thread does not participate, so it serves commands during an update
 * ("u" then completes one that plaincond threads hold up).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <qbench.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static atomic_int started;

static void die(const char *what) {
    perror(what);
    exit(2);
}

static void *accept_loop(void *arg) {
    (void)arg;
    int ls = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (ls < 0 || bind(ls, (struct sockaddr *)&addr, sizeof addr) || listen(ls, 8)) die("listen");
    atomic_fetch_add(&started, 1);
    for (;;) {
        qbench_update();
        int fd = accept(ls, NULL, NULL);
        if (fd >= 0) close(fd);
    }
    return NULL;
}

static void *read_loop(void *arg) {
    int exit_on_eintr = arg != NULL;
    int p[2];
    if (pipe(p)) die("pipe");
    atomic_fetch_add(&started, 1);
    for (;;) {
        qbench_update();
        char c;
        if (read(p[0], &c, 1) < 0 && errno == EINTR && exit_on_eintr) return NULL;
    }
}

static void *epoll_loop(void *arg) {
    (void)arg;
    int p[2], ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0 || pipe(p)) die("epoll");
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = p[0]};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &ev)) die("epoll_ctl");
    atomic_fetch_add(&started, 1);
    for (;;) {
        qbench_update();
        epoll_wait(ep, &ev, 1, -1);
    }
    return NULL;
}

static pthread_mutex_t queue_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t queue_nonempty = PTHREAD_COND_INITIALIZER;
static int queue_length;

static void *condwait_loop(void *arg) {
    (void)arg;
    atomic_fetch_add(&started, 1);
    for (;;) {
        qbench_update();
        pthread_mutex_lock(&queue_lock);
        while (queue_length == 0) qbench_pthread_cond_wait(&queue_nonempty, &queue_lock);
        queue_length--;
        pthread_mutex_unlock(&queue_lock);
    }
    return NULL;
}

static void *sleep_loop(void *arg) {
    (void)arg;
    atomic_fetch_add(&started, 1);
    for (;;) {
        qbench_update();
        qbench_sleep(10);
    }
    return NULL;
}

/* A wait the runtime knows nothing about: a private flag under a private lock. */
struct private_wait {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int woken;
};

static void private_wake(void *arg) {
    struct private_wait *w = arg;
    pthread_mutex_lock(&w->lock);
    w->woken = 1;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->lock);
}

static void private_wait_for(struct private_wait *w) {
    pthread_mutex_lock(&w->lock);
    while (!w->woken) pthread_cond_wait(&w->cond, &w->lock);
    w->woken = 0;
    pthread_mutex_unlock(&w->lock);
}

static void *callback_loop(void *arg) {
    (void)arg;
    struct private_wait w = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0};
    qbench_thread_update_callback(private_wake, &w);
    atomic_fetch_add(&started, 1);
    for (;;) {
        qbench_update();
        private_wait_for(&w);
    }
    return NULL;
}

#define MAX_STUCK 64
static struct private_wait stuck[MAX_STUCK];
static atomic_int stuck_count;

static void *plaincond_loop(void *arg) {
    (void)arg;
    struct private_wait *w = &stuck[atomic_fetch_add(&stuck_count, 1) % MAX_STUCK];
    atomic_fetch_add(&started, 1);
    for (;;) {
        qbench_update();
        private_wait_for(w);
    }
    return NULL;
}

static void *short_lived(void *arg) {
    (void)arg;
    qbench_update();
    qbench_usleep(200);
    return NULL;
}

static void *churn_loop(void *arg) {
    (void)arg;
    atomic_fetch_add(&started, 1);
    for (;;) {
        qbench_update();
        pthread_t t;
        if (qbench_thread_create(&t, NULL, short_lived, NULL) == 0) pthread_detach(t);
        qbench_usleep(100);
    }
    return NULL;
}

/* Threads that never reach an update point: each retries its call when interrupted. */
static void *stuck_accept_loop(void *arg) {
    (void)arg;
    int ls = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (ls < 0 || bind(ls, (struct sockaddr *)&addr, sizeof addr) || listen(ls, 8)) die("listen");
    atomic_fetch_add(&started, 1);
    qbench_update();
    for (;;) {
        int fd = accept(ls, NULL, NULL);
        if (fd >= 0) close(fd);
    }
    return NULL;
}

static void *stuck_read_loop(void *arg) {
    (void)arg;
    int p[2];
    if (pipe(p)) die("pipe");
    atomic_fetch_add(&started, 1);
    qbench_update();
    for (;;) {
        char c;
        (void)!read(p[0], &c, 1);
    }
    return NULL;
}

static void *stuck_sleep_loop(void *arg) {
    (void)arg;
    atomic_fetch_add(&started, 1);
    qbench_update();
    for (;;) {
        unsigned left = 100;
        while (left) left = sleep(left);
    }
    return NULL;
}

static void *spin_loop(void *arg) {
    (void)arg;
    int p[2];
    if (pipe(p)) die("pipe");
    atomic_fetch_add(&started, 1);
    for (;;) {
        char c = 'x';
        (void)!write(p[1], &c, 1);
        (void)!read(p[0], &c, 1);
    }
    return NULL;
}

/* Threads for the diagnosis: each stays away from update points for a different reason. */
static pthread_mutex_t big_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t held_lock = PTHREAD_MUTEX_INITIALIZER;
static atomic_int big_lock_taken, held_lock_taken;

static void *lock_holder_loop(void *arg) {
    pthread_mutex_lock(&big_lock);
    atomic_store(&big_lock_taken, 1);
    return stuck_read_loop(arg);
}

/* A lock the waiters take and release in a loop, once its holder has taken it. The locks stay
 * globals of their own, so that the observer names the futex a waiter blocks on after its lock. */
struct contended {
    pthread_mutex_t *lock;
    atomic_int *taken;
};
static struct contended big = {&big_lock, &big_lock_taken}, held = {&held_lock, &held_lock_taken};

/* lockwaiter (arg: &big) and heldwaiter (arg: &held). */
static void *lock_waiter_loop(void *arg) {
    const struct contended *c = arg;
    while (!atomic_load(c->taken)) usleep(1000);
    atomic_fetch_add(&started, 1);
    for (;;) {
        qbench_update();
        pthread_mutex_lock(c->lock);
        pthread_mutex_unlock(c->lock);
    }
    return NULL;
}

static void *park_holder_loop(void *arg) {
    (void)arg;
    pthread_mutex_lock(&held_lock);
    atomic_store(&held_lock_taken, 1);
    atomic_fetch_add(&started, 1);
    for (;;) {
        qbench_update();
        qbench_usleep(1000);
    }
    return NULL;
}

static void *restart_read_loop(void *arg) {
    struct sigaction sa;
    sigaction(SIGUSR2, NULL, &sa);
    sa.sa_flags |= SA_RESTART;
    sigaction(SIGUSR2, &sa, NULL);
    return read_loop(arg);
}

static void *hostile_loop(void *arg) {
    pthread_setname_np(pthread_self(), "\x1b[2Jevil");
    return stuck_read_loop(arg);
}

/* Names that are not UTF-8, for itself and for the main thread: they are still threads. */
static pthread_t main_thread;
static void *badname_loop(void *arg) {
    pthread_setname_np(pthread_self(), "\xff\xfe bad\\");
    pthread_setname_np(main_thread, "\xffmain");
    return read_loop(arg);
}

static void *spinner_loop(void *arg) {
    (void)arg;
    atomic_fetch_add(&started, 1);
    qbench_update();
    for (volatile unsigned long n = 0;; n++) {
    }
    return NULL;
}

static void *vforker_loop(void *arg) {
    (void)arg;
    atomic_fetch_add(&started, 1);
    qbench_update();
    /* The vfork child only makes system calls until it is killed with this process. */
    if (vfork() == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        for (;;) pause();
    }
    return NULL;
}

static void unstick(void) {
    int n = atomic_load(&stuck_count);
    for (int i = 0; i < n && i < MAX_STUCK; i++) private_wake(&stuck[i]);
}

static void fork_child(void) {
    pid_t child = fork();
    if (child < 0) die("fork");
    if (child == 0) {
        /* The child has one thread, this one; it requests an update of its own and reaches
         * an update point, then gives the helper time to write the report. */
        qbench_request_update();
        qbench_update();
        usleep(200000);
        _exit(qbench_update_requested());
    }
    int status;
    waitpid(child, &status, 0);
    printf("child %d %d\n", (int)child, WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    fflush(stdout);
}

struct kind {
    const char *name;
    void *(*loop)(void *);
    void *arg;
    int outsider; /* made with plain pthread_create: the runtime does not know it */
};

/* Each thread carries its kind as its name, so reports and tests can tell them apart. */
static void *named_start(void *arg) {
    const struct kind *k = arg;
    pthread_setname_np(pthread_self(), k->name);
    return k->loop(k->arg);
}

static const struct kind kinds[] = {
    {"accept", accept_loop, NULL, 0},       {"read", read_loop, NULL, 0},
    {"epoll", epoll_loop, NULL, 0},         {"condwait", condwait_loop, NULL, 0},
    {"sleep", sleep_loop, NULL, 0},         {"callback", callback_loop, NULL, 0},
    {"plaincond", plaincond_loop, NULL, 0}, {"exiter", read_loop, (void *)1, 0},
    {"churn", churn_loop, NULL, 0},         {"stuckaccept", stuck_accept_loop, NULL, 0},
    {"stuckread", stuck_read_loop, NULL, 0}, {"stucksleep", stuck_sleep_loop, NULL, 0},
    {"spin", spin_loop, NULL, 1},        {"outsider", read_loop, NULL, 1},
    {"lockholder", lock_holder_loop, NULL, 0}, {"lockwaiter", lock_waiter_loop, &big, 0},
    {"parkholder", park_holder_loop, NULL, 0}, {"heldwaiter", lock_waiter_loop, &held, 0},
    {"restartread", restart_read_loop, NULL, 0}, {"spinner", spinner_loop, NULL, 0},
    {"vforker", vforker_loop, NULL, 0},       {"hostile", hostile_loop, NULL, 0},
    {"badname", badname_loop, NULL, 0},
};

int main(int argc, char **argv) {
    int total = 0;
    main_thread = pthread_self();
    for (int i = 1; i < argc; i++) {
        char name[32];
        int count;
        if (sscanf(argv[i], "%31[a-z]:%d", name, &count) != 2 || count < 0) {
            fprintf(stderr, "situations: bad argument %s (want KIND:COUNT)\n", argv[i]);
            return 2;
        }
        const struct kind *k = NULL;
        for (size_t j = 0; j < sizeof kinds / sizeof kinds[0]; j++)
            if (!strcmp(kinds[j].name, name)) k = &kinds[j];
        if (!k) {
            fprintf(stderr, "situations: unknown kind %s\n", name);
            return 2;
        }
        for (int n = 0; n < count; n++) {
            pthread_t t;
            int rc = k->outsider ? pthread_create(&t, NULL, named_start, (void *)k)
                                 : qbench_thread_create(&t, NULL, named_start, (void *)k);
            if (rc) {
                fprintf(stderr, "situations: qbench_thread_create: %s\n", strerror(rc));
                return 1;
            }
        }
        total += count;
    }
    while (atomic_load(&started) < total) usleep(1000);
    if (getenv("SITUATIONS_MAIN_OUTSIDE")) qbench_thread_unregister();
    printf("ready %d\n", (int)getpid());
    fflush(stdout);
    for (;;) {
        qbench_update();
        char c;
        ssize_t n = read(0, &c, 1);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0 || c == 'q') return 0;
        if (c == 'u') unstick();
        if (c == 'f') fork_child();
        /* Another program in the same process: its handlers are gone, and so are its update points. */
        if (c == 'x') execl("/bin/sleep", "sleep", "60", (char *)NULL);
    }
}
