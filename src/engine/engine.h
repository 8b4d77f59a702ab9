/* engine.h -- the job engine: jobs, tubes, reservations, timers, stats.
 *
 * A pure state machine. The caller passes the time (monotonic nanoseconds)
 * and commands in; the engine answers with replies and emits one log record
 * per durable state change. It never reads a clock, never touches a socket and
 * never logs: replies that are not the direct answer of engine_exec() (a job
 * arriving for a waiting reserve, a reserve timing out, DEADLINE_SOON) are
 * handed to hooks.deliver; log records to hooks.record.
 *
 * Owns: every job (metadata and body), every tube, and one struct session per
 * connection. Semantics are beanstalkd 1.13's (docs/protocol.md):
 * - ready jobs are ordered per tube by (priority, id); reserve takes the best
 *   head among the session's watched tubes, not counting paused ones;
 * - delayed jobs wait for their deadline; buried jobs form a FIFO per tube;
 * - a reserved job belongs to one session until delete/release/bury, its TTR
 *   runs out (back to ready, timeouts++) or the session closes (back to ready);
 * - tubes exist while referenced: by jobs, users, watchers or waiters;
 *   "default" always exists.
 * Invariants: job ids only grow; every job is in exactly one of: a tube's ready
 * run or ready heap, a tube's delayed heap, the reserved heap, a tube's buried
 * list.
 * Every timer-driven change happens in engine_tick(); engine_next_wakeup()
 * tells the caller when to call it next.
 */
#ifndef DK_ENGINE_H
#define DK_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../common/cmd.h"
#include "../common/rec.h"

#define ENGINE_NS 1000000000ULL            /* nanoseconds per second */
#define ENGINE_SAFETY_MARGIN ENGINE_NS     /* DEADLINE_SOON margin: 1 s */
#define ENGINE_URGENT 1024                 /* priorities below this are urgent */

struct engine;
struct session;
struct job;

/* Facts the engine cannot know; asked for by stats. */
struct engine_info {
    uint64_t pid;
    const char *version;
    uint64_t utime_us, stime_us;      /* rusage, microseconds */
    uint64_t uptime;                  /* seconds */
    uint64_t binlog_oldest, binlog_current, binlog_migrated, binlog_written, binlog_max_size;
    const char *id;                   /* 16 hex chars, random per process */
    const char *hostname, *os, *platform;
};

struct engine_hooks {
    void *ctx;
    /* A reply for session s outside engine_exec()'s direct answer. */
    void (*deliver)(void *ctx, struct session *s, const struct reply *r);
    /* A durable state change; may be NULL (in-memory server). For a REC_JOB
     * it returns the log segment the record went to, which the engine keeps
     * with the job (rec.seg of its later records) for compaction. */
    uint32_t (*record)(void *ctx, const struct rec *r);
    /* Fills the process facts for stats; may be NULL (zeros). */
    void (*info)(void *ctx, struct engine_info *out);
};

struct engine_config {
    uint32_t max_job_size;    /* bytes, reported by stats */
    /* Bodies may move to the log (engine_body_paged): a new job's body is
     * then kept in its own allocation until it does. */
    bool page_bodies;
};

/* Returns NULL if out of memory. Free with engine_free(). */
struct engine *engine_new(const struct engine_config *cfg, const struct engine_hooks *hooks,
                          uint64_t now);
void engine_free(struct engine *e);

/* A session is one client connection's view: used tube, watched tubes,
 * reserved jobs, a pending reserve. ctx is the caller's (its connection).
 * Returns NULL if out of memory. End with engine_session_close(). */
struct session *engine_session_open(struct engine *e, void *ctx, uint64_t now);
void *engine_session_ctx(const struct session *s);
/* Releases the session's reserved jobs to ready and frees it. */
void engine_session_close(struct engine *e, struct session *s, uint64_t now);
/* The client half-closed its socket: a waiting reserve answers TIMED_OUT
 * (through hooks.deliver). */
void engine_session_hangup(struct engine *e, struct session *s, uint64_t now);
/* True while a reserve of this session waits for a job. */
bool engine_session_waiting(const struct session *s);

/* Executes one command for session s at time now and fills *out with the
 * direct answer; out->code is R_NONE when the session now waits (reserve).
 * out borrows engine memory until the next engine call. */
void engine_exec(struct engine *e, struct session *s, const struct cmd *c, uint64_t now,
                 struct reply *out);

/* Accounts a command the parser rejected after recognising it, as beanstalkd
 * does (a put answered JOB_TOO_BIG or EXPECTED_CRLF still counts in cmd-put). */
void engine_count_error(struct engine *e, struct session *s, enum op op, enum rcode code);

/* Moves time forward: delayed jobs become ready, TTRs expire, pauses end,
 * waiting reserves time out or get DEADLINE_SOON. */
void engine_tick(struct engine *e, uint64_t now);
/* The next time engine_tick() has work, or UINT64_MAX. */
uint64_t engine_next_wakeup(const struct engine *e);

/* Drain mode (SIGUSR1): puts answer DRAINING from now on. */
void engine_set_draining(struct engine *e);

/* Rebuilds state from a log record during recovery (before any session
 * exists). Updates for unknown jobs are ignored: their snapshot was compacted
 * away because they had ended. Returns 0, or -1 if out of memory. */
int engine_apply(struct engine *e, const struct rec *r, uint64_t now);

/* With cfg.page_bodies: job id's body can now be read at p, the body bytes
 * of its JOB record in log segment seg (p stays valid until the caller says
 * otherwise), so the engine frees its own copy and points there. Ignored if
 * the job is gone or its newest JOB record is in another segment (a newer
 * snapshot will follow). With p NULL the job keeps or takes back a copy in
 * memory. Returns 0, or -1 if out of memory (the job is unchanged). */
int engine_body_paged(struct engine *e, uint64_t id, uint32_t seg, const char *p);
/* Ends recovery: frees tubes that only a PAUSE record created. */
void engine_recovered(struct engine *e);

/* Calls fn once per job with the segment of its newest JOB record and the
 * bytes of its tube name plus body. */
void engine_foreach_seg(const struct engine *e, void (*fn)(void *ctx, uint32_t seg, size_t bytes),
                        void *ctx);

/* Compaction: emits a fresh REC_JOB for up to `budget` job-table slots' worth of
 * jobs whose newest JOB record lies in segment seg, resuming where the last
 * call stopped. Returns true once a whole pass over the jobs has finished. */
bool engine_compact(struct engine *e, uint32_t seg, size_t budget);

/* Emits a fresh REC_JOB for every job (after a repaired recovery, so the
 * damaged segments hold nothing live any more). */
void engine_snapshot_all(struct engine *e);

/* Emits what a new log segment must begin with: REC_NEXTID, then REC_PAUSE
 * for every paused tube. */
void engine_log_preamble(struct engine *e, uint64_t now);

/* Counts, for tests and metrics. */
size_t engine_job_count(const struct engine *e);
size_t engine_tube_count(const struct engine *e);

#endif
