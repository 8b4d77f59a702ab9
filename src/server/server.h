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

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/utsname.h>

#include "config.h"

#define CONN_POOL_MAX 64           /* idle input buffers the server keeps for reuse */

struct conn;
struct wal;
struct page_out;

struct server {
    const struct config *cfg;
    struct event_base *base;
    struct engine *engine;
    struct wal *wal;           /* write-ahead log; NULL with --memory */
    struct event *wal_ev;      /* the log's eventfd: a sync finished or the log failed */
    struct event *flush_ev;    /* hands a loop turn's records to the log's writer */
    bool flush_pending;        /* flush_ev is active */
    /* With a log, replies that promise durability wait for the sync
     * (always) or the write (never, MS) covering their records. */
    struct conn *held;         /* connections with replies waiting for the log */
    uint64_t released;         /* wal_synced() when held replies were last released */
    /* Group commit: which records a sync (or under never and MS, a write) must cover. */
    uint64_t reveal_seq;       /* last record appended other than a RESERVE */
    uint64_t want;             /* highest record a held reply waits for */
    uint64_t asked;            /* the last want handed to the log */
    uint32_t solo;             /* syncs asked in a row while one connection waited */
    /* Bodies paged out to the log: JOB records not yet known written, in
     * order; once written, the job's body is read back from the log's
     * mapping instead of being kept in memory. See page_bodies(). */
    struct page_out *pages;
    size_t phead, ntail, pcap;  /* a ring: entries [phead, phead + ntail) mod pcap */
    bool pages_lost;           /* out of memory once: old mappings are kept for good */
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
    /* Input buffers of CONN_LINE_BUF bytes that idle connections gave back:
     * a connection waiting for its next command holds none, and taking one
     * from here instead of malloc keeps the command path free of malloc. */
    char *in_pool[CONN_POOL_MAX];
    size_t npool;
    size_t out_cap;            /* bytes of unsent output past which a connection stops reading */
    uint64_t start_ns;         /* monotonic ns at start, for uptime */
    char id[17];               /* 16 random hex chars, the stats "id" */
    struct utsname uts;        /* hostname, os, platform for stats */
};

/* The engine clock in nanoseconds: CLOCK_MONOTONIC shifted once, at start, to
 * read as wall time. It never jumps (NTP steps do not move deadlines while
 * docketd runs), and a deadline stored in the log means the same wall-clock
 * instant after a restart. Never returns the same value twice. */
uint64_t server_now(void);
/* The time for the next command: reads the clock and first runs engine_tick()
 * if timed work is due, so every command sees the engine as of now (a pause
 * or delay that just ended has ended) even inside a long pipelined batch. */
uint64_t server_catch_up(struct server *srv);

/* Creates the loop, binds the listener described by cfg and creates the
 * engine. Logs "docketd: listening on ..." with the real address. Returns 0,
 * or -1 after logging why. Binding happens before any privilege drop. */
int server_init(struct server *srv, const struct config *cfg);
/* Opens the write-ahead log (unless --memory), replays it into the engine and
 * starts its writer. Call after dropping privileges, before server_run().
 * Returns 0, or -1 after logging why. */
int server_open_log(struct server *srv);
/* Runs the loop until SIGTERM or SIGINT. Returns 0, or -1 if the loop failed. */
int server_run(struct server *srv);
/* Closes every connection and frees the engine and the loop. */
void server_destroy(struct server *srv);

/* Call after each batch of engine calls: schedules one hand-over of the log
 * records made in this loop turn (after the turn's other callbacks, so that
 * one fdatasync covers all of them), and points the engine timer at
 * engine_next_wakeup(). */
void server_rearm(struct server *srv);

/* True if the log refuses new records (a write or fsync failed). */
bool server_log_failed(const struct server *srv);
/* True while the disk is too full for new jobs (deletes still work). */
bool server_low_space(const struct server *srv);
/* The sequence number a reply must wait for, given the last record appended
 * before the command ran; 0 when it need not wait. */
uint64_t server_hold_seq(const struct server *srv, uint64_t appended_before);
/* The sequence number a reply that shows a job must wait for: given
 * srv->reveal_seq as it was before the command ran, the records appended
 * before it other than reservations (losing a RESERVE record in a crash
 * takes nothing back: reserved jobs come back ready anyway). */
uint64_t server_hold_before(const struct server *srv, uint64_t reveal_before);
/* The last log record appended (0 without a log). */
uint64_t server_appended(const struct server *srv);
/* Under fsync=never and MS: writes the records appended so far now, rather
 * than at the end of the loop turn, so that a connection's held replies can
 * go at once. Returns what wal_synced() covers (0 with nothing written, under
 * fsync=always, or once the log has failed). */
uint64_t server_write_log(struct server *srv);
/* Marks c as having a reply held until the log covers record seq. */
void server_hold(struct server *srv, struct conn *c, uint64_t seq);
/* Marks c as having replies held for a sync, or no longer. */
void server_track_held(struct server *srv, struct conn *c);
void server_untrack_held(struct server *srv, struct conn *c);

#endif
