/* Target of the stack tests (tests/privileged_stacks.rs): three threads blocked in three ways,
 * each below a named, non-inlined function whose call line is marked "line:NAME" so the test
 * finds it. It prints one line once the threads are started; the test then waits until each is
 * blocked in its system call. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

pthread_cond_t work_ready = PTHREAD_COND_INITIALIZER;
pthread_mutex_t work_lock = PTHREAD_MUTEX_INITIALIZER;
pthread_mutex_t big_lock = PTHREAD_MUTEX_INITIALIZER;
int work_available;

long blocking_read(int fd); /* in stack_lib.c, a shared library */

__attribute__((noinline)) void wait_for_work(void)
{
    pthread_mutex_lock(&work_lock);
    while (!work_available)
        pthread_cond_wait(&work_ready, &work_lock); /* line:wait_for_work */
    pthread_mutex_unlock(&work_lock);
}

__attribute__((noinline)) void take_lock(void)
{
    pthread_mutex_lock(&big_lock); /* line:take_lock */
    pthread_mutex_unlock(&big_lock);
}

static int pipe_fds[2];

/* Each thread names itself: naming another thread goes through /proc/self/task/TID, which is
 * wrong in a pid namespace whose /proc is the parent's. */
static void *cond_main(void *arg)
{
    pthread_setname_np(pthread_self(), arg);
    wait_for_work();
    return NULL;
}

static void *mutex_main(void *arg)
{
    pthread_setname_np(pthread_self(), arg);
    take_lock();
    return NULL;
}

static void *pipe_main(void *arg)
{
    pthread_setname_np(pthread_self(), arg);
    return (void *)blocking_read(pipe_fds[0]);
}

static void start(const char *name, void *(*body)(void *))
{
    pthread_t thread;
    if (pthread_create(&thread, NULL, body, (void *)name) != 0) {
        perror("pthread_create");
        exit(1);
    }
}

int main(void)
{
    if (pipe(pipe_fds) != 0) {
        perror("pipe");
        return 1;
    }
    /* Main holds big_lock for ever, so take_lock blocks and the lock's owner is main. */
    pthread_mutex_lock(&big_lock);
    start("cond", cond_main);
    start("mutex", mutex_main);
    start("pipe", pipe_main);
    printf("ready pid=%d main_tid=%ld work_ready=%p big_lock=%p\n", getpid(),
           (long)syscall(SYS_gettid), (void *)&work_ready, (void *)&big_lock);
    fflush(stdout);
    for (;;)
        pause();
}
