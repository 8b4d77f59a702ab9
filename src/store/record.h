/* record.h -- the write-ahead log's record and segment-header codec.
 *
 * Owns nothing: it turns a struct rec into bytes and back. Byte format
 * (docs/storage.md has the full table), integers little-endian:
 *
 *   record  u32 payload length N | u32 crc32c over the next 9+N bytes |
 *           u8 type | u64 sequence number | payload (N bytes)
 *
 *   payloads
 *     JOB      u64 id, u32 pri, u32 delay, u32 ttr, u8 state, u64 created,
 *              u64 deadline, u64 order, u32 reserves, u32 timeouts,
 *              u32 releases, u32 buries, u32 kicks, u8 tube length, tube,
 *              u32 body length, body
 *     DELETE RESERVE KICK TIMEOUT   u64 id
 *     RELEASE  u64 id, u32 pri, u32 delay, u64 deadline
 *     BURY     u64 id, u32 pri, u64 order
 *     PAUSE    u8 tube length, tube, u32 delay, u64 deadline
 *     NEXTID   u64 next id
 *
 *   segment header (32 bytes) "DOCKETWL" | u32 version | u32 header size |
 *           u64 segment number | u32 0 | u32 crc32c of bytes 0..27
 *
 * Times (created, deadline) are the engine clock, which the server anchors to
 * wall time at start, so a deadline means the same instant after a restart.
 * The decoder trusts no length: every field is checked against the bytes
 * there are, and against the limits below.
 *
 * To change a payload: add a new type (old logs keep decoding) or bump
 * REC_FORMAT_VERSION and keep decoding the old version.
 */
#ifndef DK_RECORD_H
#define DK_RECORD_H

#include <stddef.h>
#include <stdint.h>

#include "../common/buf.h"
#include "../common/rec.h"

#define REC_FORMAT_VERSION 1
#define REC_MAGIC "DOCKETWL"
#define REC_HEADER_SIZE 32               /* bytes of a segment header */
#define REC_HEAD 17                      /* bytes before a record's payload */
#define REC_MAX_PAYLOAD ((1u << 30) + 512) /* bytes: the largest job plus its fields */

enum rec_status {
    REC_OK = 0,
    REC_TRUNCATED = -1,   /* the bytes end inside the record */
    REC_CORRUPT = -2      /* checksum, length or field out of range */
};

/* Offset of a REC_JOB record's body from the record's first byte. */
static inline size_t record_body_offset(size_t tube_len) { return REC_HEAD + 70 + tube_len; }

/* Bytes record r takes, or 0 if it cannot be encoded. */
size_t record_size(const struct rec *r);

/* Appends record r with sequence number seq to b. Returns 0, or -1 if out of
 * memory (b is then unchanged). */
int record_encode(struct buf *b, uint64_t seq, const struct rec *r);

/* Decodes the record at p[0..n). On REC_OK fills *r (pointers into p), *seq
 * and *used (bytes of the whole record). *line is set to the source line that
 * rejected a corrupt record, for the error message. */
int record_decode(const unsigned char *p, size_t n, struct rec *r, uint64_t *seq, size_t *used,
                  int *line);

/* Writes a 32-byte segment header for segment number num into out. */
void record_header(unsigned char out[REC_HEADER_SIZE], uint64_t num);
/* Checks a segment header; fills *num. Returns REC_OK, REC_TRUNCATED or REC_CORRUPT. */
int record_header_check(const unsigned char *p, size_t n, uint64_t *num);

#endif
