/* record.c -- write-ahead log record codec (see record.h for the byte format). */
#include "record.h"

#include <string.h>

#include "../common/crc32c.h"

/* ---- little-endian helpers ---------------------------------------------- */

static void put_u8(unsigned char **p, uint8_t v) { *(*p)++ = v; }

static void put_u32(unsigned char **p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        *(*p)++ = (unsigned char)(v >> (8 * i));
}

static void put_u64(unsigned char **p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        *(*p)++ = (unsigned char)(v >> (8 * i));
}

static void put_bytes(unsigned char **p, const void *s, size_t n)
{
    if (n)
        memcpy(*p, s, n);
    *p += n;
}

static uint32_t le32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t le64(const unsigned char *p) { return le32(p) | (uint64_t)le32(p + 4) << 32; }

/* A bounded reader: every get fails once the payload is exhausted. */
struct rd {
    const unsigned char *p;
    size_t left;
    int bad;
};

static const unsigned char *take(struct rd *r, size_t n)
{
    if (r->bad || r->left < n) {
        r->bad = 1;
        return NULL;
    }
    const unsigned char *q = r->p;
    r->p += n;
    r->left -= n;
    return q;
}

static uint8_t get_u8(struct rd *r)
{
    const unsigned char *q = take(r, 1);
    return q ? q[0] : 0;
}

static uint32_t get_u32(struct rd *r)
{
    const unsigned char *q = take(r, 4);
    return q ? le32(q) : 0;
}

static uint64_t get_u64(struct rd *r)
{
    const unsigned char *q = take(r, 8);
    return q ? le64(q) : 0;
}

/* ---- payloads ----------------------------------------------------------- */

/* Bytes of r's payload, or 0 for a type that cannot be encoded. */
static size_t payload_size(const struct rec *r)
{
    switch (r->type) {
    case REC_JOB:
        return 65 + 1 + r->tube_len + 4 + r->body_len;
    case REC_DELETE:
    case REC_RESERVE:
    case REC_KICK:
    case REC_TIMEOUT:
    case REC_NEXTID:
        return 8;
    case REC_RELEASE:
        return 24;
    case REC_BURY:
        return 20;
    case REC_PAUSE:
        return 1 + r->tube_len + 4 + 8;
    }
    return 0;
}

size_t record_size(const struct rec *r)
{
    size_t n = payload_size(r);
    return n ? REC_HEAD + n : 0;
}

int record_encode(struct buf *b, uint64_t seq, const struct rec *r)
{
    size_t n = payload_size(r);
    if (n == 0 || n > REC_MAX_PAYLOAD || r->tube_len > 255)
        return -1;
    if (buf_reserve(b, REC_HEAD + n) < 0)
        return -1;
    unsigned char *start = (unsigned char *)b->data + b->len, *p = start;
    put_u32(&p, (uint32_t)n);
    p += 4; /* crc, below */
    put_u8(&p, (uint8_t)r->type);
    put_u64(&p, seq);
    switch (r->type) {
    case REC_JOB:
        put_u64(&p, r->id);
        put_u32(&p, r->pri);
        put_u32(&p, r->delay);
        put_u32(&p, r->ttr);
        put_u8(&p, r->state);
        put_u64(&p, r->created);
        put_u64(&p, r->deadline);
        put_u64(&p, r->order);
        put_u32(&p, r->reserves);
        put_u32(&p, r->timeouts);
        put_u32(&p, r->releases);
        put_u32(&p, r->buries);
        put_u32(&p, r->kicks);
        put_u8(&p, (uint8_t)r->tube_len);
        put_bytes(&p, r->tube, r->tube_len);
        put_u32(&p, (uint32_t)r->body_len);
        put_bytes(&p, r->body, r->body_len);
        break;
    case REC_DELETE:
    case REC_RESERVE:
    case REC_KICK:
    case REC_TIMEOUT:
        put_u64(&p, r->id);
        break;
    case REC_NEXTID:
        put_u64(&p, r->next_id);
        break;
    case REC_RELEASE:
        put_u64(&p, r->id);
        put_u32(&p, r->pri);
        put_u32(&p, r->delay);
        put_u64(&p, r->deadline);
        break;
    case REC_BURY:
        put_u64(&p, r->id);
        put_u32(&p, r->pri);
        put_u64(&p, r->order);
        break;
    case REC_PAUSE:
        put_u8(&p, (uint8_t)r->tube_len);
        put_bytes(&p, r->tube, r->tube_len);
        put_u32(&p, r->delay);
        put_u64(&p, r->deadline);
        break;
    }
    unsigned char *crcp = start + 4;
    put_u32(&crcp, crc32c(0, start + 8, 9 + n));
    b->len += REC_HEAD + n;
    return 0;
}

#define CORRUPT()                                                                                  \
    do {                                                                                           \
        *line = __LINE__;                                                                          \
        return REC_CORRUPT;                                                                        \
    } while (0)

int record_decode(const unsigned char *p, size_t n, struct rec *r, uint64_t *seq, size_t *used,
                  int *line)
{
    *line = 0;
    if (n < REC_HEAD)
        return REC_TRUNCATED;
    uint32_t len = le32(p);
    if (len > REC_MAX_PAYLOAD)
        CORRUPT();
    if (n - REC_HEAD < len)
        return REC_TRUNCATED;
    if (crc32c(0, p + 8, 9 + (size_t)len) != le32(p + 4))
        CORRUPT();
    memset(r, 0, sizeof *r);
    r->type = (enum rec_type)p[8];
    *seq = le64(p + 9);
    struct rd d = {.p = p + REC_HEAD, .left = len};
    switch (r->type) {
    case REC_JOB:
        r->id = get_u64(&d);
        r->pri = get_u32(&d);
        r->delay = get_u32(&d);
        r->ttr = get_u32(&d);
        r->state = get_u8(&d);
        r->created = get_u64(&d);
        r->deadline = get_u64(&d);
        r->order = get_u64(&d);
        r->reserves = get_u32(&d);
        r->timeouts = get_u32(&d);
        r->releases = get_u32(&d);
        r->buries = get_u32(&d);
        r->kicks = get_u32(&d);
        r->tube_len = get_u8(&d);
        r->tube = (const char *)take(&d, r->tube_len);
        r->body_len = get_u32(&d);
        r->body = (const char *)take(&d, r->body_len);
        if (r->state > REC_BURIED || r->tube_len == 0)
            CORRUPT();
        break;
    case REC_DELETE:
    case REC_RESERVE:
    case REC_KICK:
    case REC_TIMEOUT:
        r->id = get_u64(&d);
        break;
    case REC_NEXTID:
        r->next_id = get_u64(&d);
        break;
    case REC_RELEASE:
        r->id = get_u64(&d);
        r->pri = get_u32(&d);
        r->delay = get_u32(&d);
        r->deadline = get_u64(&d);
        break;
    case REC_BURY:
        r->id = get_u64(&d);
        r->pri = get_u32(&d);
        r->order = get_u64(&d);
        break;
    case REC_PAUSE:
        r->tube_len = get_u8(&d);
        r->tube = (const char *)take(&d, r->tube_len);
        r->delay = get_u32(&d);
        r->deadline = get_u64(&d);
        if (r->tube_len == 0)
            CORRUPT();
        break;
    default:
        CORRUPT();
    }
    if (d.bad || d.left != 0)
        CORRUPT();
    *used = REC_HEAD + (size_t)len;
    return REC_OK;
}

void record_header(unsigned char out[REC_HEADER_SIZE], uint64_t num)
{
    unsigned char *p = out;
    put_bytes(&p, REC_MAGIC, 8);
    put_u32(&p, REC_FORMAT_VERSION);
    put_u32(&p, REC_HEADER_SIZE);
    put_u64(&p, num);
    put_u32(&p, 0);
    put_u32(&p, crc32c(0, out, 28));
}

int record_header_check(const unsigned char *p, size_t n, uint64_t *num)
{
    if (n < REC_HEADER_SIZE)
        return REC_TRUNCATED;
    if (memcmp(p, REC_MAGIC, 8) != 0 || le32(p + 8) != REC_FORMAT_VERSION ||
        le32(p + 12) != REC_HEADER_SIZE || crc32c(0, p, 28) != le32(p + 28))
        return REC_CORRUPT;
    *num = le64(p + 16);
    return REC_OK;
}
