/*
 * spacetyrant-like: the Space Tyrant multiplayer game server in miniature, for the study's
 * Table I.
 *
 * Threads (3 + 2 per player): the main thread saves the universe (a checksum of every sector)
 * once a second, in a loop that checks for shutdown (stdin closed) between long sleeps; the game
 * clock gives every player a turn once a second in the same kind of loop; the listener accepts
 * telnet-style players (poll on the listening socket) and starts each player's input thread,
 * which reads command lines (blocking read) and queues the answers, and which starts the
 * player's output thread, which flushes the queue to the socket every 20 ms and checks whether
 * the player has left. Load: `table1-load spacetyrant` (5 players sending commands).
 *
 * Commands: "look", "move N" (sector 0..99), "mine", "who"; each answer ends with the prompt "> ".
 *
 *   spacetyrant-like [--variant all|update-only]  prints "ready PORT"; exits when stdin closes
 *
 * The study's counts for this program:
 *   update points                      5  (main, clock, listener, input and output loops)
 *   changed lines                      7  (4 wl_thread, 2 wl_sleep_s, 1 wl_sleep_ms)
 *   changes beyond the runtime calls   0
 * update-only: the long sleeps are sleep(3), which a signal ends; the output threads' 20 ms
 * pause resumes after a signal, so an update waits for it (up to 20 ms while players play).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <qbench.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common.h"

#define SECTORS 100
#define MAX_PLAYERS 64

struct player {
    int fd, sector, turns, gone;
    unsigned ore;
    char name[16];
    pthread_mutex_t lock; /* out, olen, gone */
    char out[8192];
    size_t olen;
};

static pthread_mutex_t universe = PTHREAD_MUTEX_INITIALIZER;
static unsigned ore[SECTORS];
static struct player *players[MAX_PLAYERS];
static unsigned long saves, ticks, checksum;

static void say(struct player *p, const char *text) {
    pthread_mutex_lock(&p->lock);
    size_t n = strlen(text);
    if (p->olen + n <= sizeof p->out) {
        memcpy(p->out + p->olen, text, n);
        p->olen += n;
    }
    pthread_mutex_unlock(&p->lock);
}

/* One command line; the answer is queued for the output thread. */
static void command(struct player *p, const char *line) {
    char ans[1024];
    int to, n = 0;
    pthread_mutex_lock(&universe);
    if (strncmp(line, "look", 4) == 0) {
        n = snprintf(ans, sizeof ans, "Sector %d: ore %u. Here:", p->sector, ore[p->sector]);
        for (int i = 0; i < MAX_PLAYERS && n < 900; i++)
            if (players[i] && players[i]->sector == p->sector)
                n += snprintf(ans + n, sizeof ans - (size_t)n, " %s", players[i]->name);
    } else if (sscanf(line, "move %d", &to) == 1 && to >= 0 && to < SECTORS && p->turns > 0) {
        p->sector = to;
        p->turns--;
        n = snprintf(ans, sizeof ans, "Moved to sector %d, %d turns left.", to, p->turns);
    } else if (strncmp(line, "mine", 4) == 0) {
        unsigned got = ore[p->sector] < 10 ? ore[p->sector] : 10;
        ore[p->sector] -= got;
        p->ore += got;
        n = snprintf(ans, sizeof ans, "Mined %u ore, %u in the hold.", got, p->ore);
    } else if (strncmp(line, "who", 3) == 0) {
        n = snprintf(ans, sizeof ans, "Players:");
        for (int i = 0; i < MAX_PLAYERS && n < 900; i++)
            if (players[i]) n += snprintf(ans + n, sizeof ans - (size_t)n, " %s", players[i]->name);
    } else {
        n = snprintf(ans, sizeof ans, "Unknown command.");
    }
    pthread_mutex_unlock(&universe);
    snprintf(ans + n, sizeof ans - (size_t)n, "\r\n> ");
    say(p, ans);
}

static void *output(void *arg) {
    struct player *p = arg;
    for (;;) {
        qbench_update();
        pthread_mutex_lock(&p->lock);
        int gone = p->gone;
        if (!gone && p->olen && net_write_all(p->fd, p->out, p->olen) == 0) p->olen = 0;
        pthread_mutex_unlock(&p->lock);
        if (gone) break; /* the input thread has let go of the player */
        wl_sleep_ms(20);
    }
    close(p->fd);
    free(p);
    return NULL;
}

static void *input(void *arg) {
    struct player *p = arg;
    char buf[512];
    size_t len = 0;
    pthread_mutex_lock(&universe);
    int slot = -1;
    for (int i = 0; i < MAX_PLAYERS && slot < 0; i++)
        if (!players[i]) slot = i;
    if (slot >= 0) players[slot] = p;
    pthread_mutex_unlock(&universe);
    snprintf(p->name, sizeof p->name, "pilot%d", slot);
    say(p, "Welcome to Space Tyrant.\r\n> ");
    wl_thread("output", output, p);
    while (slot >= 0) {
        qbench_update();
        ssize_t n = read(p->fd, buf + len, sizeof buf - 1 - len);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        len += (size_t)n;
        buf[len] = '\0';
        char *start = buf, *eol;
        while ((eol = strchr(start, '\n')) != NULL) {
            *eol = '\0';
            command(p, start);
            start = eol + 1;
        }
        len -= (size_t)(start - buf);
        memmove(buf, start, len);
        if (len == sizeof buf - 1) len = 0; /* an overlong line: drop it */
    }
    pthread_mutex_lock(&universe);
    if (slot >= 0) players[slot] = NULL;
    pthread_mutex_unlock(&universe);
    pthread_mutex_lock(&p->lock);
    p->gone = 1; /* from here the output thread owns p */
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

static int ls;

static void *listener(void *arg) {
    (void)arg;
    for (;;) {
        qbench_update();
        int fd = net_accept(ls);
        struct player *p = fd >= 0 ? calloc(1, sizeof *p) : NULL;
        if (!p) {
            if (fd >= 0) close(fd);
            continue;
        }
        p->fd = fd;
        p->turns = 1000;
        pthread_mutex_init(&p->lock, NULL);
        wl_thread("input", input, p);
    }
    return NULL;
}

static void *game_clock(void *arg) {
    (void)arg;
    for (;;) {
        qbench_update();
        wl_sleep_s(1);
        pthread_mutex_lock(&universe);
        ticks++;
        for (int i = 0; i < MAX_PLAYERS; i++)
            if (players[i]) players[i]->turns++;
        for (int s = 0; s < SECTORS; s++)
            if (ore[s] < 1000) ore[s]++; /* asteroids drift in */
        pthread_mutex_unlock(&universe);
    }
    return NULL;
}

int main(int argc, char **argv) {
    wl_init(argc, argv);
    for (int s = 0; s < SECTORS; s++) ore[s] = 500;
    int port = 0;
    ls = net_listen(&port);
    wl_thread("clock", game_clock, NULL);
    wl_thread("listener", listener, NULL);
    wl_ready(port);
    for (;;) {
        qbench_update();
        if (wl_stdin_closed()) return 0;
        wl_sleep_s(1);
        pthread_mutex_lock(&universe);
        unsigned long sum = 0;
        for (int s = 0; s < SECTORS; s++) sum = sum * 31 + ore[s];
        checksum = sum; /* the save: a real server writes the universe to disk here */
        saves++;
        pthread_mutex_unlock(&universe);
    }
}
