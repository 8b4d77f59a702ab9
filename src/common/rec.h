/* rec.h -- a durable state change, as the engine emits it and the log stores it.
 *
 * The engine (src/engine) fills a struct rec for every change that must
 * survive a restart; the write-ahead log (src/store) encodes it, and on
 * recovery decodes it back for engine_apply(). Neither includes the other.
 * Times are nanoseconds on the engine's clock; the log converts them to wall
 * time on disk and back. Pointers are borrowed for the duration of the call.
 */
#ifndef DK_REC_H
#define DK_REC_H

#include <stddef.h>
#include <stdint.h>

enum rec_type {
    REC_JOB = 1,      /* a whole job: a put, or compaction moving a job forward */
    REC_DELETE = 2,   /* job gone */
    REC_RESERVE = 3,  /* reserves++ (a reserved job is ready again after a restart) */
    REC_RELEASE = 4,  /* new pri and delay (0 included), deadline; releases++ */
    REC_BURY = 5,     /* new pri, bury order; buries++ */
    REC_KICK = 6,     /* buried or delayed -> ready; kicks++ */
    REC_TIMEOUT = 7,  /* TTR ran out: timeouts++, back to ready */
    REC_PAUSE = 8,    /* tube paused: name, delay, deadline */
    REC_NEXTID = 9    /* the id the next put gets */
};

enum rec_state { REC_READY = 0, REC_DELAYED = 1, REC_BURIED = 2 };

struct rec {
    enum rec_type type;
    uint64_t id;              /* job id (all but PAUSE, NEXTID) */
    uint64_t next_id;         /* NEXTID; the engine also fills it everywhere */
    uint32_t pri;             /* JOB RELEASE BURY */
    uint32_t delay;           /* seconds: JOB RELEASE PAUSE */
    uint32_t ttr;             /* seconds: JOB */
    uint8_t state;            /* JOB: enum rec_state (a reserved job is stored ready) */
    uint64_t created;         /* ns: JOB */
    uint64_t deadline;        /* ns: JOB/RELEASE when delayed, PAUSE end of pause */
    uint64_t order;           /* JOB when buried, BURY: position in the buried FIFO */
    uint32_t reserves, timeouts, releases, buries, kicks; /* JOB */
    uint32_t seg;             /* the log segment holding the job's newest JOB record
                                 before this one (0: none); on replay, the segment
                                 this record was read from */
    uint64_t off;             /* on replay: the record's file offset in segment seg */
    const char *tube;         /* JOB PAUSE: tube name */
    size_t tube_len;
    const char *body;         /* JOB: the body, without its trailing CRLF */
    size_t body_len;
};

#endif
