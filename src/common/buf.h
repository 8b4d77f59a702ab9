/* buf.h -- growable byte buffer.
 *
 * Owns its bytes. Invariant: data[off..len) are the live bytes, len <= cap.
 * Consuming from the front only moves off; buf_compact() moves the live bytes
 * to the start when the caller wants room at the end.
 */
#ifndef DK_BUF_H
#define DK_BUF_H

#include <stddef.h>

struct buf {
    char *data;
    size_t off;                /* bytes consumed from the front */
    size_t len;                /* end of live bytes */
    size_t cap;                /* bytes allocated */
};

void buf_init(struct buf *b);
void buf_destroy(struct buf *b);
/* Makes room for n more bytes at the end. Returns 0, or -1 if out of memory. */
int buf_reserve(struct buf *b, size_t n);
int buf_append(struct buf *b, const void *p, size_t n);
int buf_appendf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Drops n bytes from the front. */
void buf_consume(struct buf *b, size_t n);
void buf_compact(struct buf *b);
static inline size_t buf_used(const struct buf *b) { return b->len - b->off; }
static inline char *buf_head(const struct buf *b) { return b->data + b->off; }
void buf_clear(struct buf *b);

#endif
