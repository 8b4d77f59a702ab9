/* server.h -- the event loop that wires the engine to the network.
 *
 * Owns: the libevent event_base, the listening socket, the engine, the one
 * engine timer, the signal events and the list of connections (live and
 * closed-but-not-yet-freed). Single-threaded: every callback runs on the
 * loop, and the engine is only ever called from a loop callback, never from
 * inside another engine call.
 *
 * Timer invariant: after every callback that may have called the engine,
 * server_rearm() points the timer at engine_next_wakeup(), so engine_tick()
 * runs exactly when the engine has timed work (delays, TTRs, timeouts).
 */
#ifndef DK_SERVER_H
#define DK_SERVER_H

#include <stddef.h>
#include <stdint.h>
#include <sys/utsname.h>

#include "config.h"

struct conn;

struct server {
    const struct config *cfg;
    struct event_base *base;
    struct engine *engine;
    struct evconnlistener *listener;
    char *unix_path;           /* socket file to remove at exit; NULL for TCP */
    char listen_desc[160];     /* "127.0.0.1:11300", "[::1]:11300" or "unix:PATH", for the log */
    struct event *timer;       /* fires engine_tick() */
    uint64_t timer_at;         /* monotonic ns the timer is armed for; UINT64_MAX: not armed */
    struct event *reap;        /* frees closed connections from the loop */
    struct event *accept_retry; /* re-enables accepting after EMFILE */
    struct event *sig_term, *sig_int, *sig_usr1;
    struct conn *conns;        /* live connections, doubly linked */
    struct conn *dead;         /* closed connections waiting for reap */
    size_t nconns;             /* live connections */
    size_t out_cap;            /* bytes of unsent output past which a connection stops reading */
    uint64_t start_ns;         /* monotonic ns at start, for uptime */
    char id[17];               /* 16 random hex chars, the stats "id" */
    struct utsname uts;        /* hostname, os, platform for stats */
};

/* Monotonic clock in nanoseconds: the engine's "now". Never returns the
 * same value twice. */
uint64_t server_now(void);
/* The time for the next command: reads the clock and first runs engine_tick()
 * if timed work is due, so every command sees the engine as of now (a pause
 * or delay that just ended has ended) even inside a long pipelined batch. */
uint64_t server_catch_up(struct server *srv);

/* Creates the loop, binds the listener described by cfg and creates the
 * engine. Logs "docketd: listening on ..." with the real address. Returns 0,
 * or -1 after logging why. Binding happens before any privilege drop. */
int server_init(struct server *srv, const struct config *cfg);
/* Runs the loop until SIGTERM or SIGINT. Returns 0, or -1 if the loop failed. */
int server_run(struct server *srv);
/* Closes every connection and frees the engine and the loop. */
void server_destroy(struct server *srv);

/* Points the engine timer at engine_next_wakeup(). Call after each batch of
 * engine calls. */
void server_rearm(struct server *srv);

#endif
