/* wal.h -- write-ahead log: segment files, group commit, recovery, compaction.
 *
 * Owns: the log directory, its segment files, one writer thread, and the
 * encoded records between wal_append() and their fdatasync. Record and header
 * bytes are record.h's; docs/storage.md describes the whole format.
 *
 *   <dir>/NNNNNNNNNNNNNNNNNNNN.wal   segment number, 20 decimal digits
 *
 * The segment being written is filled with zeros ahead of its records (to
 * the next 1 MiB boundary, at most its size), so an fdatasync flushes data
 * only, not a new file size; finished segments are cut back to their last
 * record. Recovery reads "only zeros from here to the end" of the last
 * segment as its end; zeros in a finished segment are damage.
 *
 * Threads: every function here is for the server's thread except the writer,
 * which is private. The server appends records as the engine emits them and
 * calls wal_commit() once per loop turn. Under fsync=always that hands the
 * batch to the writer, and the server learns through wal_event_fd() when
 * wal_synced() has moved for a reply it holds: one fdatasync covers every
 * record of a batch, so many puts share one sync. A server with a single
 * connection waiting may instead have an idle writer's job done on its own
 * thread (wal_commit's wait), under the mutex, sparing two thread wake-ups.
 * Under never and MS the server's thread writes the batch itself unless the
 * writer is writing (both under the mutex, so the two never write at once);
 * the writer syncs on the policy's clock, starts segments and unlinks old
 * ones, and its fdatasyncs and unlinks do not stop the server's writes (a
 * reply that waits for a write must not wait for a sync). Mappings for
 * reading bodies back (wal_body_at) are the server thread's only.
 *
 * Invariants:
 * - Record sequence numbers grow by exactly 1 across the whole log; recovery
 *   treats a jump as a missing or duplicated segment.
 * - Every segment begins with the engine's preamble (REC_NEXTID, REC_PAUSE for
 *   paused tubes), so dropping older segments never loses the id counter.
 * - A job's newest REC_JOB lies in the oldest segment that holds any of its
 *   records: so the oldest segment may be deleted as soon as no live job's
 *   newest snapshot lies in it. Compaction re-snapshots those jobs forward.
 * - Under fsync=always wal_synced() never runs ahead of fdatasync(); under
 *   never and MS it never runs ahead of write(2). A failed write or fsync is
 *   sticky (wal_failed()), and nothing after it is ever reported synced.
 * - Segments are cut to their last record and fdatasync'd before the next
 *   one is started, and the directory is fsync'd after a segment is created
 *   or removed.
 * - Below two segments of free disk space the log reports wal_low_space(),
 *   keeping that space for deletes and compaction; a real ENOSPC is still a
 *   sticky failure.
 */
#ifndef DK_WAL_H
#define DK_WAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "../common/rec.h"

#define WAL_FSYNC_ALWAYS 0         /* fsync before every reply that needs it */
#define WAL_FSYNC_NEVER (-1)       /* leave it to the kernel */
#define WAL_SEGMENT_DEFAULT (10u << 20) /* bytes */
#define WAL_PREALLOC_DEFAULT (1u << 20) /* bytes of zeros written ahead at a time */

/* The system calls the log makes, replaceable so tests can inject faults. */
struct wal_io {
    ssize_t (*write)(int fd, const void *p, size_t n);
    int (*fdatasync)(int fd);
    /* Writes the zeros ahead of the records; NULL: pwrite. */
    ssize_t (*pwrite)(int fd, const void *p, size_t n, off_t off);
    /* Bytes free for us on the file system of dirfd; NULL: fstatvfs. */
    uint64_t (*free_bytes)(int dirfd);
};

struct wal_config {
    const char *dir;
    int64_t fsync;               /* WAL_FSYNC_ALWAYS, WAL_FSYNC_NEVER, or ms between syncs */
    uint64_t segment_size;       /* bytes; 0 means WAL_SEGMENT_DEFAULT */
    uint64_t prealloc_chunk;     /* bytes; 0 means WAL_PREALLOC_DEFAULT */
    bool repair;                 /* truncate at corruption anywhere instead of refusing */
    const struct wal_io *io;     /* NULL: the real system calls */
    /* Receives recovery warnings (torn tail truncated, ...); may be NULL. */
    void (*warn)(void *ctx, const char *msg);
    void *warn_ctx;
};

struct wal_stats {
    uint64_t oldest;             /* number of the oldest segment */
    uint64_t current;            /* number of the segment being written */
    uint64_t segments;           /* files */
    uint64_t disk_bytes;         /* bytes in all segments */
    uint64_t live_bytes;         /* bytes of the newest snapshots of live jobs */
    uint64_t written;            /* records appended by this process */
    uint64_t migrated;           /* of those, snapshots written by compaction */
    uint64_t segment_size;       /* bytes */
    uint64_t recovered;          /* records replayed at open */
};

struct wal;

/* Opens (creating) and locks (flock) the log directory, and replays every record, oldest first,
 * through fn, with rec.seg set to the segment it came from. A torn or corrupt
 * tail of the last segment is truncated with a warning; corruption anywhere
 * else fails unless cfg->repair. Returns NULL with a message in err on
 * failure (the message names the file and offset). Free with wal_close(). */
struct wal *wal_open(const struct wal_config *cfg, int (*fn)(void *ctx, const struct rec *r),
                     void *ctx, char *err, size_t errlen);

/* After replay: tells the log where each live job's newest snapshot is (call
 * once per job; bytes = tube length + body length), then starts the writer
 * and a fresh segment, whose preamble is requested through preamble(ctx).
 * Returns 0 or -errno. */
void wal_note_live(struct wal *w, uint32_t seg, size_t bytes);
int wal_start(struct wal *w, void (*preamble)(void *ctx), void *ctx);

/* Appends a record. Returns its sequence number (> 0), or 0 if the log has
 * failed or is out of memory; *seg gets the segment it went to. */
uint64_t wal_append(struct wal *w, const struct rec *r, uint32_t *seg);

/* Hands the records appended since the last call to the writer thread, and
 * names want, the newest record a held reply waits for (0: no new wish).
 * Under fsync=always the writer makes every record up to want durable (the
 * records nobody waits for are written, and synced with the next wish). The
 * writer is woken only if it sleeps; a sync already under way is not waited
 * for, so the caller decides how many replies one fdatasync covers.
 * With wait (fsync=always), a caller that would rather block than wait for
 * two thread wake-ups gets the write, and with a want the fdatasync, done on
 * its own thread if the writer is idle with nothing queued.
 * Under never and MS the records are written here, on the caller's thread,
 * unless the writer is busy or zeros must be written ahead first; then the
 * writer writes them and, if want is among them, pokes wal_event_fd().
 * Returns true when every record appended is covered by wal_synced() on
 * return (written here: synced under always, written under never and MS),
 * or wal_failed() is set. */
bool wal_commit(struct wal *w, uint64_t want, bool wait);
/* wal_commit(w, wal_appended(w), false): everything appended so far. */
void wal_flush(struct wal *w);

/* The highest sequence number known durable (under fsync=always), or written
 * to the kernel (other policies). Replies that promise durability wait for
 * it under every policy: under never and MS a reply is only sent once its
 * records are in the kernel, so a crash of docketd alone loses nothing
 * acknowledged. */
uint64_t wal_synced(const struct wal *w);
/* True if recovery accepted damage (--repair): the caller should rewrite
 * every live job (engine_snapshot_all) so the damaged segments can go. */
bool wal_repaired(const struct wal *w);
/* The last sequence number appended. */
uint64_t wal_appended(const struct wal *w);
/* True while the disk has less free space than two segments: new jobs are
 * refused, while deletes and other small updates still use that reserve. The
 * writer checks after every batch, and every second while space is low. */
bool wal_low_space(const struct wal *w);
/* 0, or the errno of the write or fsync that failed the log. */
int wal_failed(const struct wal *w);
int64_t wal_fsync_policy(const struct wal *w);

/* Readable whenever wal_synced() or wal_failed() may have changed; call
 * wal_event_ack() after reading. */
int wal_event_fd(const struct wal *w);
void wal_event_ack(struct wal *w);

/* One bounded step of compaction; call once per loop turn. compact(ctx, seg,
 * budget) must re-append the live jobs whose newest snapshot is in segment seg
 * (engine_compact). Deletes the oldest segment once nothing live is in it.
 * Returns true if more compaction is due (call again next turn). */
bool wal_maintain(struct wal *w, bool (*compact)(void *ctx, uint32_t seg, size_t budget),
                  void *ctx);
/* True if records were appended since the last wal_commit(). */
bool wal_has_pending(const struct wal *w);

void wal_get_stats(const struct wal *w, struct wal_stats *out);

/* Reading bodies back from the log, so that memory need not keep them.
 * - wal_written(): the last record handed to write(2) (the page cache has
 *   it, synced or not); a record's bytes may be read back only after this.
 * - wal_last_offset(): file offset of the last record appended, in the
 *   segment wal_append() named.
 * - wal_body_at(): a pointer to len bytes at off in segment seg, through a
 *   read-only mapping of the file, or NULL (no such segment, no mapping).
 *   Segments are mapped when first asked for. Replayed records carry their
 *   file offset (rec.off) for this. A dropped segment's mapping lives on until
 *   wal_unmap_done(seq) is called with seq at or past the last record
 *   appended when it was dropped: by then every job whose body was in it has
 *   a newer snapshot written, and the caller has moved its pointers. */
uint64_t wal_written(const struct wal *w);
uint64_t wal_last_offset(const struct wal *w);
const char *wal_body_at(struct wal *w, uint32_t seg, uint64_t off, size_t len);
void wal_unmap_done(struct wal *w, uint64_t seq);

/* Flushes, syncs, stops the writer and frees everything. Accepts NULL. */
void wal_close(struct wal *w);

#endif
