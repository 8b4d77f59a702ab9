/* test_record.c -- the write-ahead log record codec: round trips, and every
 * truncated or damaged record is refused without reading out of bounds. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/common/crc32c.h"
#include "../../src/store/record.h"

TestSuite(record, .timeout = 20);

static struct rec sample(enum rec_type type)
{
    static char body[300];
    for (size_t i = 0; i < sizeof body; i++)
        body[i] = (char)(i * 7);
    return (struct rec){.type = type, .id = 0x0102030405060708ULL, .next_id = 99, .pri = 7,
                        .delay = 30, .ttr = 120, .state = REC_BURIED, .created = 1234567890123ULL,
                        .deadline = 9876543210ULL, .order = 42, .reserves = 1, .timeouts = 2,
                        .releases = 3, .buries = 4, .kicks = 5, .tube = "emails",
                        .tube_len = 6, .body = body, .body_len = sizeof body};
}

static const enum rec_type all_types[] = {REC_JOB,  REC_DELETE,  REC_RESERVE, REC_RELEASE, REC_BURY,
                                          REC_KICK, REC_TIMEOUT, REC_PAUSE,   REC_NEXTID};
#define NTYPES (sizeof all_types / sizeof all_types[0])

Test(record, crc32c_matches_the_standard_check_value)
{
    cr_assert_eq(crc32c(0, "123456789", 9), 0xE3069283u);
    cr_assert_eq(crc32c_portable(0, "123456789", 9), 0xE3069283u);
    char big[4099];
    for (size_t i = 0; i < sizeof big; i++)
        big[i] = (char)(i * 131 + 7);
    for (size_t off = 0; off < 9; off++)
        cr_assert_eq(crc32c(0, big + off, sizeof big - off),
                     crc32c_portable(0, big + off, sizeof big - off));
    cr_assert_eq(crc32c(crc32c(0, big, 1000), big + 1000, 3099), crc32c(0, big, 4099));
}

Test(record, every_type_round_trips)
{
    for (size_t t = 0; t < NTYPES; t++) {
        struct rec in = sample(all_types[t]), out;
        struct buf b;
        buf_init(&b);
        cr_assert_eq(record_encode(&b, 77 + t, &in), 0);
        uint64_t seq;
        size_t used;
        int line;
        cr_assert_eq(record_decode((unsigned char *)b.data, b.len, &out, &seq, &used, &line),
                     REC_OK, "type %d line %d", in.type, line);
        cr_assert_eq(used, b.len);
        cr_assert_eq(seq, 77 + t);
        cr_assert_eq(out.type, in.type);
        switch (in.type) {
        case REC_JOB:
            cr_assert_eq(out.id, in.id);
            cr_assert_eq(out.pri, in.pri);
            cr_assert_eq(out.delay, in.delay);
            cr_assert_eq(out.ttr, in.ttr);
            cr_assert_eq(out.state, in.state);
            cr_assert_eq(out.created, in.created);
            cr_assert_eq(out.deadline, in.deadline);
            cr_assert_eq(out.order, in.order);
            cr_assert_eq(out.reserves + out.timeouts + out.releases + out.buries + out.kicks, 15);
            cr_assert_eq(out.kicks, 5);
            cr_assert_eq(out.tube_len, 6);
            cr_assert_eq(memcmp(out.tube, "emails", 6), 0);
            cr_assert_eq(out.body_len, in.body_len);
            cr_assert_eq(memcmp(out.body, in.body, in.body_len), 0);
            break;
        case REC_RELEASE:
            cr_assert_eq(out.deadline, in.deadline);
            cr_assert_eq(out.delay, in.delay);
            /* fall through */
        case REC_BURY:
            cr_assert_eq(out.pri, in.pri);
            if (in.type == REC_BURY)
                cr_assert_eq(out.order, in.order);
            /* fall through */
        case REC_DELETE:
        case REC_RESERVE:
        case REC_KICK:
        case REC_TIMEOUT:
            cr_assert_eq(out.id, in.id);
            break;
        case REC_PAUSE:
            cr_assert_eq(out.delay, in.delay);
            cr_assert_eq(out.deadline, in.deadline);
            cr_assert_eq(memcmp(out.tube, "emails", 6), 0);
            break;
        case REC_NEXTID:
            cr_assert_eq(out.next_id, 99);
            break;
        }
        buf_destroy(&b);
    }
}

Test(record, layout_is_little_endian_and_framed)
{
    struct rec r = {.type = REC_DELETE, .id = 0x1122334455667788ULL};
    struct buf b;
    buf_init(&b);
    record_encode(&b, 5, &r);
    unsigned char *p = (unsigned char *)b.data;
    cr_assert_eq(b.len, 17 + 8);
    cr_assert_eq(p[0], 8);
    cr_assert_eq(p[1] | p[2] | p[3], 0);
    cr_assert_eq(p[8], REC_DELETE);
    cr_assert_eq(p[9], 5);
    cr_assert_eq(p[17], 0x88);
    cr_assert_eq(p[24], 0x11);
    buf_destroy(&b);
}

Test(record, body_offset_points_at_a_job_records_body)
{
    const char body[] = "the body";
    for (size_t tl = 1; tl <= 200; tl += 99) {
        char tube[201];
        memset(tube, 't', tl);
        struct rec r = {.type = REC_JOB, .id = 9, .tube = tube, .tube_len = tl, .body = body,
                        .body_len = 8};
        struct buf b;
        buf_init(&b);
        buf_append(&b, "xyz", 3); /* a record that does not start the buffer */
        record_encode(&b, 1, &r);
        cr_assert_eq(memcmp(b.data + 3 + record_body_offset(tl), body, 8), 0, "tube length %zu", tl);
        cr_assert_eq(3 + record_body_offset(tl) + 8, b.len, "the body ends the record");
        buf_destroy(&b);
    }
}

/* Each prefix is refused as truncated; the copy is exact-size so ASan sees any
 * read past the end. */
Test(record, every_truncation_is_detected)
{
    for (size_t t = 0; t < NTYPES; t++) {
        struct rec in = sample(all_types[t]), out;
        struct buf b;
        buf_init(&b);
        record_encode(&b, 1, &in);
        for (size_t cut = 0; cut < b.len; cut++) {
            unsigned char *copy = malloc(cut ? cut : 1);
            memcpy(copy, b.data, cut);
            uint64_t seq;
            size_t used;
            int line;
            cr_assert_eq(record_decode(copy, cut, &out, &seq, &used, &line), REC_TRUNCATED,
                         "type %d cut %zu", in.type, cut);
            free(copy);
        }
        buf_destroy(&b);
    }
}

Test(record, every_bit_flip_is_detected)
{
    for (size_t t = 0; t < NTYPES; t++) {
        struct rec in = sample(all_types[t]), out;
        struct buf b;
        buf_init(&b);
        record_encode(&b, 1, &in);
        for (size_t bit = 0; bit < b.len * 8; bit++) {
            unsigned char *copy = malloc(b.len);
            memcpy(copy, b.data, b.len);
            copy[bit / 8] ^= (unsigned char)(1u << (bit % 8));
            uint64_t seq;
            size_t used;
            int line;
            int rc = record_decode(copy, b.len, &out, &seq, &used, &line);
            cr_assert(rc == REC_CORRUPT || rc == REC_TRUNCATED, "type %d bit %zu", in.type, bit);
            free(copy);
        }
        buf_destroy(&b);
    }
}

Test(record, zeroed_tail_and_absurd_lengths_are_refused)
{
    unsigned char zero[64] = {0};
    struct rec out;
    uint64_t seq;
    size_t used;
    int line;
    cr_assert_eq(record_decode(zero, sizeof zero, &out, &seq, &used, &line), REC_CORRUPT);
    unsigned char huge[17] = {0xff, 0xff, 0xff, 0xff};
    cr_assert_eq(record_decode(huge, sizeof huge, &out, &seq, &used, &line), REC_CORRUPT);
}

Test(record, a_payload_with_inconsistent_inner_lengths_is_corrupt)
{
    /* A JOB whose body length points past the payload, with a valid checksum. */
    struct rec in = sample(REC_JOB);
    struct buf b;
    buf_init(&b);
    record_encode(&b, 1, &in);
    unsigned char *p = (unsigned char *)b.data;
    size_t body_len_at = 17 + 65 + 1 + 6;
    p[body_len_at] += 1;
    uint32_t c = crc32c(0, p + 8, b.len - 8);
    for (int i = 0; i < 4; i++)
        p[4 + i] = (unsigned char)(c >> (8 * i));
    struct rec out;
    uint64_t seq;
    size_t used;
    int line;
    cr_assert_eq(record_decode(p, b.len, &out, &seq, &used, &line), REC_CORRUPT);
    cr_assert_gt(line, 0);
    buf_destroy(&b);
}

Test(record, segment_header_round_trips_and_rejects_damage)
{
    unsigned char h[REC_HEADER_SIZE];
    record_header(h, 12345);
    uint64_t num;
    cr_assert_eq(record_header_check(h, sizeof h, &num), REC_OK);
    cr_assert_eq(num, 12345);
    cr_assert_eq(memcmp(h, "DOCKETWL", 8), 0);
    cr_assert_eq(record_header_check(h, 31, &num), REC_TRUNCATED);
    for (size_t bit = 0; bit < sizeof h * 8; bit++) {
        unsigned char c[REC_HEADER_SIZE];
        memcpy(c, h, sizeof c);
        c[bit / 8] ^= (unsigned char)(1u << (bit % 8));
        cr_assert_eq(record_header_check(c, sizeof c, &num), REC_CORRUPT, "bit %zu", bit);
    }
}
