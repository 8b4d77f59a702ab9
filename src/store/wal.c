/* wal.c -- write-ahead log (see wal.h for the contract and invariants).
 *
 * The server's thread encodes records into `out`; wal_commit() moves `out` to
 * the queue; the writer thread takes the whole queue at once, writes it,
 * fdatasyncs once if a reply waits for it (fsync=always), publishes the last
 * sequence number and pokes an eventfd. Under the other policies the
 * server's thread writes `out` itself unless the writer is writing
 * (write_inline); the writer writes what was queued meanwhile, syncs on the
 * policy's clock, starts segments and unlinks old ones, and its syncs and
 * unlinks do not stop the server's writes.
 * Segment numbers fit in 32 bits in jobs' tags: at 10 MiB a segment that is
 * 40 PiB of log, so the wrap is not handled.
 */
#include "wal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "../common/buf.h"
#include "record.h"

#define COMPACT_BUDGET 4096        /* job-table slots scanned per compaction step */
#define COMPACT_ROUNDS 8           /* compaction steps per loop turn, at most */

struct seg {
    uint64_t num;
    uint64_t bytes;                /* file size, as appended (header included) */
    uint64_t live;                 /* live jobs whose newest snapshot is here */
    uint64_t live_bytes;           /* their snapshot records' bytes */
    const char *map;               /* read-only mapping of the file, or NULL */
    size_t maplen;
};

/* A dropped segment's mapping, unmapped once the server no longer points
 * into it (wal_unmap_done). */
struct oldmap {
    const char *p;
    size_t len;
    uint64_t seq;                  /* last record appended when it was dropped */
};

struct chunk {
    uint64_t seg;                  /* the segment these bytes belong to */
    struct buf data;
    uint64_t last_seq;             /* sequence number of the last record in data */
};

struct wal {
    struct wal_config cfg;
    char *dir;
    int dirfd;
    const struct wal_io *io;

    /* Server thread. */
    struct seg *segs;              /* oldest first; the last is being written */
    size_t nsegs, capsegs;
    uint64_t next_seq;
    uint64_t appended;             /* last sequence number appended */
    struct buf out;                /* encoded, not yet handed to the writer */
    uint64_t out_seg;
    uint64_t want_sent;            /* the last want given to the writer */
    bool in_preamble;
    void (*preamble)(void *ctx);
    void *preamble_ctx;
    uint64_t written, migrated, recovered;
    bool compacting;
    bool repaired;                 /* recovery accepted damage under --repair */
    uint64_t last_off;             /* file offset of the last record appended */
    struct oldmap *oldmaps;
    size_t noldmaps, capoldmaps;

    /* Shared, under mu. */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct chunk *q;
    size_t nq, capq;
    struct buf spare[4];           /* written chunks' buffers, kept for reuse */
    size_t nspare;
    struct chunk *qspare;          /* a taken queue's array, kept for reuse */
    size_t capqspare;
    uint64_t want;                 /* the newest record a held reply waits for: under
                                    * always, sync at least up to here; under never
                                    * and MS, tell the server once it is written */
    bool idle;                     /* the writer waits on cv */
    bool writing;                  /* the writer uses fd's end: opens, writes, trims.
                                    * Under never and MS it syncs and unlinks with
                                    * this false, so write_inline() can go on. */
    uint64_t *dels;                /* segments to unlink once what precedes them is synced */
    size_t ndels, capdels;
    bool stop;
    bool running;
    pthread_t thread;

    /* Published by the writer. */
    _Atomic uint64_t synced;
    _Atomic uint64_t written_seq;  /* last record handed to write(2) successfully */
    _Atomic int failed;
    _Atomic bool low_space;        /* free disk space is under the reserve */
    int efd;

    /* The writer thread's; the server thread's too in write_inline(), under
     * mu while the writer is idle (fsync=always) or not writing (never, MS).
     * dirty, dirty_seq and last_sync_ms change only under mu once writing is
     * false. */
    int fd;
    uint64_t fd_seg;
    uint64_t fd_pos;               /* bytes of records (and header) in fd: its logical end */
    uint64_t fd_alloc;             /* bytes of fd written with zeros or records: its size */
    bool no_room;                  /* zeros hit ENOSPC: append plainly until the next segment */
    bool dirty;                    /* written since the last fdatasync */
    uint64_t dirty_seq;            /* last sequence number written */
    uint64_t last_sync_ms;
    uint64_t unchecked;            /* bytes written since free space was checked */
    uint64_t checked_ms;           /* when it was */
};

static uint64_t statvfs_free(int dirfd)
{
    struct statvfs st;
    if (fstatvfs(dirfd, &st) < 0)
        return UINT64_MAX; /* cannot tell: do not refuse work over it */
    return (uint64_t)st.f_bavail * st.f_frsize;
}

static const struct wal_io real_io = {.write = write, .fdatasync = fdatasync,
                                      .free_bytes = statvfs_free};

/* ---- small helpers ------------------------------------------------------ */

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void seg_path(const struct wal *w, uint64_t num, char *out, size_t n)
{
    snprintf(out, n, "%s/%020" PRIu64 ".wal", w->dir, num);
}

static void warn(const struct wal *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void warn(const struct wal *w, const char *fmt, ...)
{
    if (!w->cfg.warn)
        return;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    w->cfg.warn(w->cfg.warn_ctx, msg);
}

/* Writes all n bytes, retrying short writes and EINTR. Returns 0 or -errno. */
static int write_all(const struct wal *w, int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t k = w->io->write(fd, p, n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0)
            return -errno;
        if (k == 0)
            return -EIO;
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

static const char ZEROS[64 * 1024];

/* Whether n more bytes of records at fd_pos need zeros written ahead first:
 * the segment is kept written up to a chunk boundary (at most its size)
 * before records land there. */
/* Where the zeros ahead stop: the segment size, rounded up to a page. */
static uint64_t room_cap(const struct wal *w) { return (w->cfg.segment_size + 4095) / 4096 * 4096; }

static bool needs_room(const struct wal *w, uint64_t n)
{
    return w->fd_pos + n > w->fd_alloc && w->fd_pos + n <= room_cap(w) && !w->no_room;
}

/* Writes zeros past the open segment's end, to the next chunk boundary (or
 * the segment size), so that the records written there overwrite blocks
 * the file already has. An fdatasync then has only data to flush: no new
 * size and no block allocation, so no journal commit, which under load
 * costs about a third of the sync. Returns 0 or -errno. */
static int make_room(struct wal *w, uint64_t n)
{
    if (!needs_room(w, n))
        return 0;
    uint64_t chunk = w->cfg.prealloc_chunk;
    uint64_t to = (w->fd_pos + n + chunk - 1) / chunk * chunk;
    if (to > room_cap(w))
        to = room_cap(w);
    ssize_t (*pw)(int, const void *, size_t, off_t) = w->io->pwrite ? w->io->pwrite : pwrite;
    while (w->fd_alloc < to) {
        size_t k = to - w->fd_alloc < sizeof ZEROS ? (size_t)(to - w->fd_alloc) : sizeof ZEROS;
        ssize_t r = pw(w->fd, ZEROS, k, (off_t)w->fd_alloc);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && errno == ENOSPC) {
            /* The zeros are an optimisation: the records may still fit. */
            w->no_room = true;
            return 0;
        }
        if (r <= 0)
            return r < 0 ? -errno : -EIO;
        w->fd_alloc += (uint64_t)r;
        w->dirty = true; /* the new size must reach the disk with the next sync */
    }
    return 0;
}

/* Writes n bytes of records at the open segment's logical end. */
static int seg_write(struct wal *w, const char *p, size_t n)
{
    int rc = make_room(w, n);
    if (rc == 0)
        rc = write_all(w, w->fd, p, n);
    if (rc == 0) {
        w->fd_pos += n;
        if (w->fd_pos > w->fd_alloc)
            w->fd_alloc = w->fd_pos;
    }
    return rc;
}

/* Cuts the zeros written ahead off the open segment: a segment that is no
 * longer written ends with its last record, so only the newest segment can
 * have a zero tail. The next sync makes the new size durable. */
static int trim_tail(struct wal *w)
{
    if (w->fd < 0 || w->fd_alloc <= w->fd_pos)
        return 0;
    if (ftruncate(w->fd, (off_t)w->fd_pos) < 0)
        return -errno;
    w->fd_alloc = w->fd_pos;
    w->dirty = true;
    return 0;
}

static int sync_fd(const struct wal *w, int fd)
{
    int rc;
    do
        rc = w->io->fdatasync(fd);
    while (rc < 0 && errno == EINTR);
    return rc < 0 ? -errno : 0;
}

static int sync_dir(const struct wal *w)
{
    int rc;
    do
        rc = fsync(w->dirfd);
    while (rc < 0 && errno == EINTR);
    return rc < 0 ? -errno : 0;
}

static struct seg *cur(struct wal *w) { return &w->segs[w->nsegs - 1]; }

static struct seg *find_seg(struct wal *w, uint64_t num)
{
    /* Segments are numbered consecutively except across a repaired gap, so
     * try the direct index first. */
    if (w->nsegs && num >= w->segs[0].num) {
        size_t i = (size_t)(num - w->segs[0].num);
        if (i < w->nsegs && w->segs[i].num == num)
            return &w->segs[i];
    }
    for (size_t i = 0; i < w->nsegs; i++)
        if (w->segs[i].num == num)
            return &w->segs[i];
    return NULL;
}

static int push_seg(struct wal *w, uint64_t num, uint64_t bytes)
{
    if (w->nsegs == w->capsegs) {
        size_t cap = w->capsegs ? w->capsegs * 2 : 16;
        struct seg *p = realloc(w->segs, cap * sizeof *p);
        if (!p)
            return -1;
        w->segs = p;
        w->capsegs = cap;
    }
    w->segs[w->nsegs++] = (struct seg){.num = num, .bytes = bytes};
    return 0;
}

/* Bytes of the REC_JOB record of a job with these lengths. */
static uint64_t job_record_bytes(size_t tube_len, size_t body_len)
{
    return REC_HEAD + 70 + tube_len + body_len;
}

/* ---- writer thread ------------------------------------------------------ */

static void notify(struct wal *w)
{
    uint64_t one = 1;
    ssize_t k = write(w->efd, &one, sizeof one);
    (void)k; /* a full eventfd counter still wakes the reader */
}

static void fail(struct wal *w, int err)
{
    int none = 0;
    atomic_compare_exchange_strong(&w->failed, &none, err > 0 ? err : EIO);
}

/* Makes fd the file of segment num, creating it with its header. */
static int open_segment(struct wal *w, uint64_t num)
{
    if (w->fd >= 0 && w->fd_seg == num)
        return 0;
    if (w->fd >= 0) {
        /* The old segment must be whole on disk, and end with its last
         * record, before the next one starts: recovery only forgives a torn
         * tail in the last segment. */
        int rc = trim_tail(w);
        if (rc == 0 && w->dirty)
            rc = sync_fd(w, w->fd);
        close(w->fd);
        w->fd = -1;
        if (rc < 0)
            return rc;
        w->dirty = false;
    }
    /* The header goes to a temporary file that is synced and then renamed
     * into place: a crash never leaves a segment without its header. */
    char path[4096], tmp[4096];
    seg_path(w, num, path, sizeof path);
    snprintf(tmp, sizeof tmp, "%s/segment.tmp", w->dir);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return -errno;
    unsigned char h[REC_HEADER_SIZE];
    record_header(h, num);
    int rc = write_all(w, fd, (const char *)h, sizeof h);
    if (rc == 0)
        rc = sync_fd(w, fd);
    if (rc == 0 && access(path, F_OK) == 0)
        rc = -EEXIST; /* never replace a segment */
    if (rc == 0 && rename(tmp, path) < 0)
        rc = -errno;
    if (rc == 0)
        rc = sync_dir(w); /* the rename is durable only now */
    if (rc < 0) {
        close(fd);
        return rc;
    }
    w->fd = fd;
    w->fd_seg = num;
    w->fd_pos = w->fd_alloc = sizeof h;
    w->no_room = false;
    w->dirty = true;
    return 0;
}

/* Writes, syncs and deletes what one turn of the writer took from the queue.
 * Under fsync=always the batch is synced only if some reply waits for it
 * (want beyond what is synced), or segments are deleted, or the log closes:
 * records nobody waits for (a reserve's) ride along with the next sync.
 * Under never and MS what was written is published, and the server poked if
 * a reply wants it, before the sync: the only publish of the writer's under
 * these policies. */
static void write_batch(struct wal *w, struct chunk *q, size_t nq, uint64_t *dels, size_t ndels,
                        bool final, uint64_t want)
{
    int rc = 0;
    for (size_t i = 0; i < nq && rc == 0 && !atomic_load(&w->failed); i++) {
        rc = open_segment(w, q[i].seg);
        if (rc == 0)
            rc = seg_write(w, q[i].data.data, q[i].data.len);
        if (rc == 0 && q[i].data.len) {
            w->dirty = true;
            w->dirty_seq = q[i].last_seq;
            w->unchecked += q[i].data.len;
            atomic_store(&w->written_seq, q[i].last_seq);
        }
    }
    if (rc < 0) {
        fail(w, -rc);
        return;
    }
    if (final && (rc = trim_tail(w)) < 0) {
        fail(w, -rc);
        return;
    }
    if (atomic_load(&w->failed))
        return;
    int64_t pol = w->cfg.fsync;
    uint64_t now = mono_ms();
    /* Under never and MS the server's thread may write more records while
     * this one syncs and unlinks (write_inline): a sync covers at least
     * what was written when it started. */
    pthread_mutex_lock(&w->mu);
    if (pol != WAL_FSYNC_ALWAYS) {
        w->writing = false;
        /* Written is all a reply waits for here: tell it before the sync. */
        uint64_t was = atomic_load(&w->synced);
        if (w->dirty_seq > was) {
            atomic_store(&w->synced, w->dirty_seq);
            /* A reply held from here on sees this itself (wal_commit). */
            if (w->want > was)
                notify(w);
        }
    }
    uint64_t seq = w->dirty_seq;
    bool sync = w->dirty && w->fd >= 0 &&
                ((pol == WAL_FSYNC_ALWAYS && want > atomic_load(&w->synced)) || ndels > 0 ||
                 final || (pol > 0 && now - w->last_sync_ms >= (uint64_t)pol));
    pthread_mutex_unlock(&w->mu);
    if (sync) {
        rc = sync_fd(w, w->fd);
        if (rc < 0) {
            fail(w, -rc);
            return;
        }
    }
    pthread_mutex_lock(&w->mu);
    if (sync) {
        w->dirty = w->dirty_seq != seq;
        w->last_sync_ms = now;
    }
    /* fsync=always: synced. (Under never and MS all the writer wrote was
     * published above, and since then only write_inline() has written, which
     * publishes itself.) dirty_seq is 0 until this run of the log writes a
     * record. */
    if (pol == WAL_FSYNC_ALWAYS && !w->dirty && w->dirty_seq > atomic_load(&w->synced))
        atomic_store(&w->synced, w->dirty_seq);
    pthread_mutex_unlock(&w->mu);
    for (size_t i = 0; i < ndels; i++) {
        char path[4096];
        seg_path(w, dels[i], path, sizeof path);
        if (unlink(path) < 0 && errno != ENOENT)
            warn(w, "cannot remove %s: %s", path, strerror(errno));
    }
    if (ndels && (rc = sync_dir(w)) < 0)
        fail(w, -rc);
}

/* Publishes whether free space is below the reserve of two segments. */
static void check_space(struct wal *w)
{
    uint64_t free = w->io->free_bytes ? w->io->free_bytes(w->dirfd) : statvfs_free(w->dirfd);
    bool low = free < 2 * w->cfg.segment_size;
    w->unchecked = 0;
    w->checked_ms = mono_ms();
    if (low != atomic_load(&w->low_space)) {
        warn(w, low ? "%s: less than %llu bytes of disk free: refusing new jobs"
                    : "%s: disk space is back: taking new jobs again",
             w->dir, (unsigned long long)(2 * w->cfg.segment_size));
        atomic_store(&w->low_space, low); /* after the message: readers see both */
    }
}

/* Checks free space after every 1/16 segment written and every second, and
 * after every batch while space is low: the reserve is two segments, so the
 * log never writes far into it unnoticed. */
static void maybe_check_space(struct wal *w)
{
    if (atomic_load(&w->low_space) || w->unchecked >= w->cfg.segment_size / 16 ||
        mono_ms() - w->checked_ms >= 1000)
        check_space(w);
}

/* Whether the writer has work: chunks, deletions, a stop, or (fsync=always)
 * written records that a reply now waits for. Under mu. */
static bool writer_has_work(const struct wal *w)
{
    /* After a failure nothing more is synced: a wish to sync is no work (it
     * would have the writer spin through empty batches). */
    return w->nq || w->ndels || w->stop ||
           (w->cfg.fsync == WAL_FSYNC_ALWAYS && w->dirty && w->want > atomic_load(&w->synced) &&
            !atomic_load(&w->failed));
}

/* Waits on cv, until deadline_ms (monotonic, 0: none). Under mu. Returns
 * false on time-out. */
static bool writer_wait(struct wal *w, uint64_t wait_ms)
{
    int rc = 0;
    w->idle = true;
    if (!wait_ms) {
        pthread_cond_wait(&w->cv, &w->mu);
    } else {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += (long)(wait_ms % 1000) * 1000000;
        ts.tv_sec += (time_t)(wait_ms / 1000) + ts.tv_nsec / 1000000000;
        ts.tv_nsec %= 1000000000;
        rc = pthread_cond_timedwait(&w->cv, &w->mu, &ts);
    }
    w->idle = false;
    return rc != ETIMEDOUT;
}

/* Keeps a written chunk's buffer for wal_commit() to reuse, so that a batch
 * costs no malloc. Under mu. */
static void recycle(struct wal *w, struct buf *b)
{
    size_t keep = sizeof w->spare / sizeof w->spare[0];
    if (b->data && w->nspare < keep && b->cap <= (1u << 20)) {
        buf_clear(b);
        w->spare[w->nspare++] = *b;
    } else {
        buf_destroy(b);
    }
}

static void *writer_main(void *arg)
{
    struct wal *w = arg;
    pthread_mutex_lock(&w->mu);
    for (;;) {
        while (!writer_has_work(w)) {
            /* Notice freed space even when no record comes; sync within the
             * policy's interval even if nothing new comes. */
            uint64_t wait_ms = w->cfg.fsync > 0 && w->dirty ? (uint64_t)w->cfg.fsync : 0;
            if (atomic_load(&w->low_space) && (!wait_ms || wait_ms > 1000))
                wait_ms = 1000;
            if (!writer_wait(w, wait_ms))
                break;
        }
        struct chunk *q = w->q;
        size_t nq = w->nq;
        size_t capq = w->capq;
        uint64_t *dels = w->dels;
        size_t ndels = w->ndels;
        bool stop = w->stop;
        uint64_t want = w->want;
        w->q = NULL;
        w->nq = w->capq = 0;
        w->dels = NULL;
        w->ndels = w->capdels = 0;
        w->writing = true;
        uint64_t before = atomic_load(&w->synced);
        int failed_before = atomic_load(&w->failed);
        pthread_mutex_unlock(&w->mu);

        write_batch(w, q, nq, dels, ndels, stop, want);
        pthread_mutex_lock(&w->mu);
        w->writing = false;
        maybe_check_space(w);
        /* The server waits on the eventfd only for failures and for replies
         * held until a sync (always) or a write (never, MS) covers them.
         * Under never and MS write_batch() poked for its write already, if
         * a reply wanted it; synced may have moved since only by the
         * server's own writes (write_inline), which need no poke. */
        uint64_t after = atomic_load(&w->synced);
        if (atomic_load(&w->failed) != failed_before ||
            (w->cfg.fsync == WAL_FSYNC_ALWAYS && after != before))
            notify(w);
        for (size_t i = 0; i < nq; i++)
            recycle(w, &q[i].data);
        if (q && !w->qspare) {
            w->qspare = q;
            w->capqspare = capq;
        } else {
            free(q);
        }
        free(dels);
        if (stop && !w->nq && !w->ndels)
            break;
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

/* ---- appending ---------------------------------------------------------- */

/* Under fsync=never and MS, a batch for the open segment is written here on
 * the server's thread unless the writer is writing (holding mu, so the
 * writer cannot start a write of its own meanwhile; it may be in an
 * fdatasync or unlink, which must not hold up a reply that only waits for
 * the write): a write(2) to the page cache costs less than waking a thread
 * for it. Under fsync=always the same happens, while the writer sleeps, for
 * a caller that would rather wait than hand over (wal_commit's wait), and
 * with sync the batch is fdatasync'd here too: no wake-up of the writer and
 * none back. Zeros to write ahead are left to the writer. Returns false if
 * the writer must take the batch. Under mu. */
static bool write_inline(struct wal *w, bool sync)
{
    bool always = w->cfg.fsync == WAL_FSYNC_ALWAYS;
    if ((sync && !always) || (always ? !w->idle || w->ndels : w->writing) || w->nq ||
        w->fd < 0 || w->fd_seg != w->out_seg || needs_room(w, w->out.len) ||
        atomic_load(&w->failed))
        return false;
    bool was_dirty = w->dirty;
    int rc = seg_write(w, w->out.data, w->out.len);
    if (rc == 0 && w->out.len) {
        w->dirty = true;
        w->dirty_seq = w->appended;
        w->unchecked += w->out.len;
        atomic_store(&w->written_seq, w->appended);
    }
    if (rc == 0 && sync && w->dirty && (rc = sync_fd(w, w->fd)) == 0) {
        w->dirty = false;
        w->last_sync_ms = mono_ms();
    }
    if (rc < 0) {
        fail(w, -rc);
        notify(w);
        buf_clear(&w->out);
        return true; /* the log has failed: nothing more will be written */
    }
    /* never and MS: written to the kernel; always: synced, or else (records
     * nobody waits for) synced with the next sync. */
    if ((w->cfg.fsync != WAL_FSYNC_ALWAYS || sync) && w->dirty_seq > atomic_load(&w->synced))
        atomic_store(&w->synced, w->dirty_seq);
    buf_clear(&w->out);
    maybe_check_space(w);
    if (!was_dirty && w->dirty && w->cfg.fsync > 0)
        pthread_cond_signal(&w->cv); /* start the interval's clock */
    return true;
}

bool wal_commit(struct wal *w, uint64_t want, bool wait)
{
    if (!w)
        return false;
    bool have = w->out.len > 0;
    if (want <= w->want_sent)
        want = 0;
    if (!have && !want)
        return false;
    bool always = w->cfg.fsync == WAL_FSYNC_ALWAYS;
    bool sync = always && want && wait;
    pthread_mutex_lock(&w->mu);
    if ((have || sync) && (!always || wait) && write_inline(w, sync)) {
        if (want)
            w->want = w->want_sent = want;
        pthread_mutex_unlock(&w->mu);
        /* never and MS: every record is written now (or the log failed);
         * always: synced if a sync was asked. */
        return !always || sync;
    }
    if (have) {
        if (!w->q && w->qspare) {
            w->q = w->qspare;
            w->capq = w->capqspare;
            w->qspare = NULL;
        }
        if (w->nq == w->capq) {
            size_t cap = w->capq ? w->capq * 2 : 8;
            struct chunk *p = realloc(w->q, cap * sizeof *p);
            if (!p) {
                pthread_mutex_unlock(&w->mu);
                fail(w, ENOMEM);
                notify(w);
                return false;
            }
            w->q = p;
            w->capq = cap;
        }
        w->q[w->nq++] = (struct chunk){.seg = w->out_seg, .data = w->out, .last_seq = w->appended};
        if (w->nspare)
            w->out = w->spare[--w->nspare];
        else
            buf_init(&w->out);
    }
    if (want) {
        w->want = want;
        w->want_sent = want;
    }
    if (w->idle)
        pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
    return false;
}

void wal_flush(struct wal *w)
{
    if (w)
        wal_commit(w, w->appended, false);
}


/* Starts segment number cur+1 and asks for its preamble. */
static int rotate(struct wal *w)
{
    wal_flush(w);
    if (push_seg(w, cur(w)->num + 1, REC_HEADER_SIZE) < 0)
        return -1;
    w->out_seg = cur(w)->num;
    if (w->preamble) {
        w->in_preamble = true;
        w->preamble(w->preamble_ctx);
        w->in_preamble = false;
    }
    return 0;
}

uint64_t wal_append(struct wal *w, const struct rec *r, uint32_t *seg)
{
    if (atomic_load(&w->failed))
        return 0;
    if (!w->in_preamble && cur(w)->bytes > REC_HEADER_SIZE &&
        cur(w)->bytes + record_size(r) > w->cfg.segment_size && rotate(w) < 0) {
        fail(w, ENOMEM);
        notify(w);
        return 0;
    }
    size_t before = w->out.len;
    uint64_t off = cur(w)->bytes;
    if (record_encode(&w->out, w->next_seq, r) < 0) {
        fail(w, ENOMEM);
        notify(w);
        return 0;
    }
    struct seg *c = cur(w);
    c->bytes += w->out.len - before;
    if (r->type == REC_JOB || r->type == REC_DELETE) {
        uint64_t jb = job_record_bytes(r->tube_len, r->body_len);
        struct seg *old = r->seg ? find_seg(w, r->seg) : NULL;
        if (old && old->live) {
            old->live--;
            old->live_bytes -= old->live_bytes >= jb ? jb : old->live_bytes;
        }
        if (r->type == REC_JOB) {
            c->live++;
            c->live_bytes += jb;
            if (w->compacting)
                w->migrated++;
        }
    }
    w->written++;
    w->appended = w->next_seq++;
    w->last_off = off;
    if (seg)
        *seg = (uint32_t)c->num;
    return w->appended;
}

/* ---- compaction --------------------------------------------------------- */

/* Queues the oldest segment for deletion once what precedes it is durable. */
static int drop_oldest(struct wal *w)
{
    wal_flush(w);
    pthread_mutex_lock(&w->mu);
    if (w->ndels == w->capdels) {
        size_t cap = w->capdels ? w->capdels * 2 : 8;
        uint64_t *p = realloc(w->dels, cap * sizeof *p);
        if (!p) {
            pthread_mutex_unlock(&w->mu);
            return -1;
        }
        w->dels = p;
        w->capdels = cap;
    }
    w->dels[w->ndels++] = w->segs[0].num;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
    if (w->segs[0].map) {
        if (w->noldmaps == w->capoldmaps) {
            size_t cap = w->capoldmaps ? w->capoldmaps * 2 : 8;
            struct oldmap *p = realloc(w->oldmaps, cap * sizeof *p);
            if (!p)
                return -1; /* the file is queued for deletion; dropped next time */
            w->oldmaps = p;
            w->capoldmaps = cap;
        }
        w->oldmaps[w->noldmaps++] =
            (struct oldmap){.p = w->segs[0].map, .len = w->segs[0].maplen, .seq = w->appended};
    }
    memmove(&w->segs[0], &w->segs[1], (w->nsegs - 1) * sizeof w->segs[0]);
    w->nsegs--;
    return 0;
}

/* Whether the log takes more than twice its live bytes plus two segments. */
static bool over_budget(const struct wal *w)
{
    struct wal_stats st;
    wal_get_stats(w, &st);
    return w->nsegs >= 2 && st.disk_bytes > 2 * st.live_bytes + 2 * w->cfg.segment_size;
}

bool wal_maintain(struct wal *w, bool (*compact)(void *ctx, uint32_t seg, size_t budget),
                  void *ctx)
{
    if (!w || atomic_load(&w->failed))
        return false;
    for (int round = 0; round < COMPACT_ROUNDS; round++) {
        /* Segments where nothing live has its snapshot go at once; the
         * segment being written never does. */
        while (w->nsegs >= 2 && w->segs[0].live == 0)
            if (drop_oldest(w) < 0)
                return false;
        if (!over_budget(w))
            return false;
        w->compacting = true;
        compact(ctx, (uint32_t)w->segs[0].num, COMPACT_BUDGET);
        w->compacting = false;
    }
    return over_budget(w) || (w->nsegs >= 2 && w->segs[0].live == 0);
}

bool wal_has_pending(const struct wal *w) { return w->out.len > 0; }

/* ---- recovery ----------------------------------------------------------- */

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Segment numbers in the directory, sorted. Returns the count or -errno. */
static ssize_t list_segments(struct wal *w, uint64_t **out)
{
    DIR *d = opendir(w->dir);
    if (!d)
        return -errno;
    uint64_t *v = NULL;
    size_t n = 0, cap = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        const char *s = de->d_name;
        size_t len = strlen(s);
        if (len != 24 || strcmp(s + 20, ".wal") != 0 || strspn(s, "0123456789") != 20)
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            uint64_t *p = realloc(v, cap * sizeof *p);
            if (!p) {
                free(v);
                closedir(d);
                return -ENOMEM;
            }
            v = p;
        }
        v[n++] = strtoull(s, NULL, 10);
    }
    closedir(d);
    if (n)
        qsort(v, n, sizeof *v, cmp_u64);
    *out = v;
    return (ssize_t)n;
}

static int truncate_file(const char *path, uint64_t size)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int rc = ftruncate(fd, (off_t)size) < 0 || fsync(fd) < 0 ? -errno : 0;
    close(fd);
    return rc;
}

struct replay {
    int (*fn)(void *ctx, const struct rec *r);
    void *ctx;
    uint64_t last_seq;             /* 0 before the first record */
    char *err;
    size_t errlen;
};

static bool all_zero(const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i])
            return false;
    return true;
}

/* Replays one segment file. Returns 0 or -1 with a message. */
static int replay_segment(struct wal *w, struct replay *rp, uint64_t num, bool last)
{
    char path[4096];
    seg_path(w, num, path, sizeof path);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(rp->err, rp->errlen, "cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    struct stat st;
    if (fstat(fd, &st) < 0) {
        snprintf(rp->err, rp->errlen, "cannot stat %s: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    size_t size = (size_t)st.st_size;
    const unsigned char *p = NULL;
    if (size) {
        p = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            snprintf(rp->err, rp->errlen, "cannot map %s: %s", path, strerror(errno));
            close(fd);
            return -1;
        }
    }
    close(fd);
    int rc = 0;
    uint64_t hnum = 0;
    int h = record_header_check(p, size, &hnum);
    if (h == REC_OK && hnum != num) {
        snprintf(rp->err, rp->errlen,
                 "%s: its header says segment %" PRIu64 ": a segment is missing or duplicated",
                 path, hnum);
        rc = -1;
        goto out;
    }
    if (h != REC_OK) {
        /* Only a file that holds at most a header can be a segment whose
         * creation was cut short; anything longer is damage. */
        if ((last && size <= REC_HEADER_SIZE) || w->cfg.repair) {
            if (!(last && size <= REC_HEADER_SIZE))
                w->repaired = true;
            warn(w, "%s: %s segment header; removing the file", path,
                 h == REC_TRUNCATED ? "incomplete" : "corrupt");
            if (p)
                munmap((void *)p, size);
            if (unlink(path) < 0) {
                snprintf(rp->err, rp->errlen, "cannot remove %s: %s", path, strerror(errno));
                return -1;
            }
            return 1;
        }
        snprintf(rp->err, rp->errlen,
                 "%s: corrupt segment header; start with --repair to remove the file", path);
        rc = -1;
        goto out;
    }
    size_t off = REC_HEADER_SIZE;
    while (off < size) {
        struct rec r;
        uint64_t seq;
        size_t used;
        int line;
        int d = record_decode(p + off, size - off, &r, &seq, &used, &line);
        if (d == REC_OK && rp->last_seq && seq != rp->last_seq + 1) {
            if (!w->cfg.repair) {
                snprintf(rp->err, rp->errlen,
                         "%s at offset %zu: record %" PRIu64 " follows record %" PRIu64
                         ": a segment is missing or duplicated; start with --repair to accept it",
                         path, off, seq, rp->last_seq);
                rc = -1;
                goto out;
            }
            w->repaired = true;
        }
        if (d != REC_OK) {
            /* Zeros to the end of the last segment were written ahead of
             * records that never came: its end, cut off silently. A
             * finished segment has none (they are cut off before the next
             * one starts), so zeros there are damage like any other. */
            bool zeros = last && all_zero(p + off, size - off);
            const char *why = d == REC_TRUNCATED ? "torn record" : "corrupt record";
            if (!zeros && !last && !w->cfg.repair) {
                snprintf(rp->err, rp->errlen,
                         "%s at offset %zu: %s (decoder line %d) before the last segment; "
                         "start with --repair to truncate there",
                         path, off, why, line);
                rc = -1;
                goto out;
            }
            if (!last)
                w->repaired = true;
            if (!zeros)
                warn(w, "%s at offset %zu: %s; truncating the %zu bytes from there", path, off,
                     why, size - off);
            if (truncate_file(path, off) < 0) {
                snprintf(rp->err, rp->errlen, "cannot truncate %s: %s", path, strerror(errno));
                rc = -1;
                goto out;
            }
            size = off;
            break;
        }
        r.seg = (uint32_t)num;
        r.off = off;
        if (rp->fn(rp->ctx, &r) < 0) {
            snprintf(rp->err, rp->errlen, "%s at offset %zu: out of memory replaying", path, off);
            rc = -1;
            goto out;
        }
        rp->last_seq = seq;
        w->recovered++;
        off += used;
    }
    if (push_seg(w, num, off) < 0) {
        snprintf(rp->err, rp->errlen, "out of memory");
        rc = -1;
    }
out:
    if (p)
        munmap((void *)p, st.st_size ? (size_t)st.st_size : 1);
    return rc;
}

static void wal_free(struct wal *w)
{
    if (!w)
        return;
    if (w->fd >= 0)
        close(w->fd);
    if (w->dirfd >= 0)
        close(w->dirfd);
    if (w->efd >= 0)
        close(w->efd);
    for (size_t i = 0; i < w->nq; i++)
        buf_destroy(&w->q[i].data);
    free(w->q);
    free(w->dels);
    buf_destroy(&w->out);
    while (w->nspare)
        buf_destroy(&w->spare[--w->nspare]);
    free(w->qspare);
    for (size_t i = 0; i < w->nsegs; i++)
        if (w->segs[i].map)
            munmap((void *)w->segs[i].map, w->segs[i].maplen);
    for (size_t i = 0; i < w->noldmaps; i++)
        munmap((void *)w->oldmaps[i].p, w->oldmaps[i].len);
    free(w->oldmaps);
    free(w->segs);
    free(w->dir);
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv);
    free(w);
}

struct wal *wal_open(const struct wal_config *cfg, int (*fn)(void *ctx, const struct rec *r),
                     void *ctx, char *err, size_t errlen)
{
    struct wal *w = calloc(1, sizeof *w);
    if (!w) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    w->cfg = *cfg;
    if (!w->cfg.segment_size)
        w->cfg.segment_size = WAL_SEGMENT_DEFAULT;
    if (!w->cfg.prealloc_chunk)
        w->cfg.prealloc_chunk = WAL_PREALLOC_DEFAULT;
    w->io = cfg->io ? cfg->io : &real_io;
    w->dirfd = w->efd = w->fd = -1;
    w->next_seq = 1;
    buf_init(&w->out);
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    w->dir = strdup(cfg->dir);
    if (!w->dir) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    if (mkdir(w->dir, 0755) < 0 && errno != EEXIST) {
        snprintf(err, errlen, "cannot create %s: %s", w->dir, strerror(errno));
        goto fail;
    }
    w->dirfd = open(w->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (w->dirfd < 0) {
        snprintf(err, errlen, "cannot open %s: %s", w->dir, strerror(errno));
        goto fail;
    }
    /* One process per log: a second one would truncate what the first is
     * still writing, and bodies are read back from the files. */
    if (flock(w->dirfd, LOCK_EX | LOCK_NB) < 0) {
        snprintf(err, errlen, "%s is in use by another process (flock: %s)", w->dir,
                 strerror(errno));
        goto fail;
    }
    w->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (w->efd < 0) {
        snprintf(err, errlen, "eventfd: %s", strerror(errno));
        goto fail;
    }
    uint64_t *nums = NULL;
    ssize_t n = list_segments(w, &nums);
    if (n < 0) {
        snprintf(err, errlen, "cannot read %s: %s", w->dir, strerror((int)-n));
        goto fail;
    }
    struct replay rp = {.fn = fn, .ctx = ctx, .err = err, .errlen = errlen};
    uint64_t last_num = 0;
    for (ssize_t i = 0; i < n; i++) {
        int rc = replay_segment(w, &rp, nums[i], i == n - 1);
        if (rc < 0) {
            free(nums);
            goto fail;
        }
        last_num = nums[i];
    }
    free(nums);
    w->next_seq = rp.last_seq + 1;
    w->appended = rp.last_seq;
    atomic_store(&w->synced, rp.last_seq);
    /* The new segment continues the numbering after every file seen. */
    if (push_seg(w, last_num + 1, REC_HEADER_SIZE) < 0) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    w->out_seg = cur(w)->num;
    return w;
fail:
    wal_free(w);
    return NULL;
}

void wal_note_live(struct wal *w, uint32_t seg, size_t bytes)
{
    struct seg *s = seg ? find_seg(w, seg) : NULL;
    if (!s)
        return;
    s->live++;
    s->live_bytes += job_record_bytes(0, bytes);
}

int wal_start(struct wal *w, void (*preamble)(void *ctx), void *ctx)
{
    w->preamble = preamble;
    w->preamble_ctx = ctx;
    w->last_sync_ms = mono_ms();
    check_space(w);
    int rc = pthread_create(&w->thread, NULL, writer_main, w);
    if (rc)
        return -rc;
    w->running = true;
    if (preamble) {
        w->in_preamble = true;
        preamble(ctx);
        w->in_preamble = false;
    }
    wal_flush(w);
    return 0;
}

/* ---- reading bodies back ------------------------------------------------ */

uint64_t wal_written(const struct wal *w) { return atomic_load(&w->written_seq); }
uint64_t wal_last_offset(const struct wal *w) { return w->last_off; }

const char *wal_body_at(struct wal *w, uint32_t seg, uint64_t off, size_t len)
{
    struct seg *s = find_seg(w, seg);
    if (!s)
        return NULL;
    if (!s->map) {
        /* A segment holds at most max(segment size, one record): the first
         * body asked for bounds it. */
        uint64_t want = off + len > w->cfg.segment_size ? off + len : w->cfg.segment_size;
        long page = sysconf(_SC_PAGESIZE);
        want = (want + (uint64_t)page - 1) / (uint64_t)page * (uint64_t)page;
        char path[4096];
        seg_path(w, seg, path, sizeof path);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            return NULL;
        void *p = mmap(NULL, (size_t)want, PROT_READ, MAP_SHARED, fd, 0);
        close(fd);
        if (p == MAP_FAILED)
            return NULL;
        s->map = p;
        s->maplen = (size_t)want;
    }
    return off + len <= s->maplen ? s->map + off : NULL;
}

void wal_unmap_done(struct wal *w, uint64_t seq)
{
    size_t k = 0;
    for (size_t i = 0; i < w->noldmaps; i++) {
        if (w->oldmaps[i].seq <= seq)
            munmap((void *)w->oldmaps[i].p, w->oldmaps[i].len);
        else
            w->oldmaps[k++] = w->oldmaps[i];
    }
    w->noldmaps = k;
}

/* ---- queries and shutdown ----------------------------------------------- */

uint64_t wal_synced(const struct wal *w) { return atomic_load(&w->synced); }
uint64_t wal_appended(const struct wal *w) { return w->appended; }
bool wal_repaired(const struct wal *w) { return w->repaired; }
bool wal_low_space(const struct wal *w) { return atomic_load(&w->low_space); }
int wal_failed(const struct wal *w) { return atomic_load(&w->failed); }
int64_t wal_fsync_policy(const struct wal *w) { return w->cfg.fsync; }
int wal_event_fd(const struct wal *w) { return w->efd; }

void wal_event_ack(struct wal *w)
{
    uint64_t v;
    ssize_t k = read(w->efd, &v, sizeof v);
    (void)k; /* EAGAIN: nothing was pending */
}

void wal_get_stats(const struct wal *w, struct wal_stats *out)
{
    memset(out, 0, sizeof *out);
    out->segments = w->nsegs;
    if (w->nsegs) {
        out->oldest = w->segs[0].num;
        out->current = w->segs[w->nsegs - 1].num;
    }
    for (size_t i = 0; i < w->nsegs; i++) {
        out->disk_bytes += w->segs[i].bytes;
        out->live_bytes += w->segs[i].live_bytes;
    }
    out->written = w->written;
    out->migrated = w->migrated;
    out->segment_size = w->cfg.segment_size;
    out->recovered = w->recovered;
}

void wal_close(struct wal *w)
{
    if (!w)
        return;
    if (w->running) {
        wal_flush(w);
        pthread_mutex_lock(&w->mu);
        w->stop = true;
        pthread_cond_signal(&w->cv);
        pthread_mutex_unlock(&w->mu);
        pthread_join(w->thread, NULL);
    }
    wal_free(w);
}
