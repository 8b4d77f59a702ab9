/* test_proto.c -- the beanstalkd text protocol parser and reply writer.
 *
 * Expected answers follow beanstalkd's prot.c; the ones marked "live" were
 * checked against Debian's beanstalkd 1.12, whose parsing 1.13 shares.
 * Every input is handed to the parser in a buffer of exactly the given length
 * (a fresh malloc per call), so ASan catches any read past len.
 */
#include <criterion/criterion.h>

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/common/buf.h"
#include "../../src/common/cmd.h"
#include "../../src/proto/beanstalk.h"

#define MAXJ 65535             /* bytes: beanstalkd's default max-job-size */

/* ---- harness ------------------------------------------------------------ */

/* One BS_CMD or BS_ERR, with name and body copied out of the input. */
struct res {
    enum bs_status st;
    enum rcode err;
    struct cmd c;
    char name[BS_LINE_MAX];
    char *body;
};

/* Everything one input produced. */
struct run {
    struct res *r;
    size_t n, cap;
    size_t left;               /* bytes the caller still buffers at the end */
    bool in_body;              /* bs_parser_in_body() at the end */
    uint64_t skip;             /* parser's skip counter at the end */
};

static void record(struct run *out, enum bs_status st, const struct cmd *c, enum rcode err)
{
    struct res *r;

    if (out->n == out->cap) {
        out->cap = out->cap ? out->cap * 2 : 8;
        out->r = realloc(out->r, out->cap * sizeof *out->r);
        cr_assert_not_null(out->r);
    }
    r = &out->r[out->n++];
    memset(r, 0, sizeof *r);
    r->st = st;
    r->err = err;
    r->c = *c;
    if (st == BS_CMD && c->name) {
        cr_assert_leq(c->name_len, BS_NAME_MAX);
        memcpy(r->name, c->name, c->name_len);
    }
    if (st == BS_CMD && c->op == OP_PUT) {
        r->body = malloc(c->body_len + 2);
        cr_assert_not_null(r->body);
        memcpy(r->body, c->body, c->body_len + 2);
    }
    r->c.name = NULL;
    r->c.body = NULL;
}

static void run_free(struct run *out)
{
    size_t i;

    for (i = 0; i < out->n; i++)
        free(out->r[i].body);
    free(out->r);
    memset(out, 0, sizeof *out);
}

/* Feeds data[0..len) to a fresh parser, cut at the sorted offsets cuts[],
 * as a connection would: each chunk is appended to a buffer and the parser
 * runs until it asks for more. Checks the buffering invariants on the way. */
static struct run feed(const void *data, size_t len, size_t max, const size_t *cuts, size_t ncuts)
{
    struct run out;
    struct bs_parser p;
    struct buf in;
    size_t pos = 0, k;

    memset(&out, 0, sizeof out);
    bs_parser_init(&p, max);
    buf_init(&in);
    for (k = 0; k <= ncuts; k++) {
        size_t end = k < ncuts ? cuts[k] : len;
        cr_assert_leq(pos, end);
        cr_assert_eq(buf_append(&in, (const char *)data + pos, end - pos), 0);
        pos = end;
        for (;;) {
            size_t n = buf_used(&in), used = 12345;
            char *exact = malloc(n ? n : 1);
            struct cmd c;
            enum rcode err;
            enum bs_status st;

            cr_assert_not_null(exact);
            if (n)
                memcpy(exact, buf_head(&in), n);
            st = bs_parse(&p, exact, n, &used, &c, &err);
            cr_assert_leq(used, n);
            if (st == BS_CMD) {
                cr_assert_lt(c.op, OP_COUNT);
                if (c.op == OP_PUT) {
                    cr_assert_geq(c.body, exact);
                    cr_assert_leq(c.body + c.body_len + 2, exact + used);
                    cr_assert_eq(c.body[c.body_len], '\r');
                    cr_assert_eq(c.body[c.body_len + 1], '\n');
                }
            } else if (st == BS_ERR) {
                cr_assert(err > R_CLOSE && err < R_COUNT);
            } else {
                cr_assert_eq(st, BS_MORE);
                /* Outside a put body the parser never needs 224 bytes buffered. */
                if (!bs_parser_in_body(&p))
                    cr_assert_lt(n - used, BS_LINE_MAX);
            }
            if (st != BS_MORE)
                record(&out, st, &c, err);
            free(exact);
            buf_consume(&in, used);
            if (st == BS_MORE)
                break;
        }
    }
    out.left = buf_used(&in);
    out.in_body = bs_parser_in_body(&p);
    out.skip = p.skip;
    buf_destroy(&in);
    return out;
}

static struct run run_mem(const void *data, size_t len, size_t max)
{
    return feed(data, len, max, NULL, 0);
}

static struct run run_str(const char *s)
{
    return run_mem(s, strlen(s), MAXJ);
}

/* Feeds one byte per chunk. */
static struct run run_bytewise(const void *data, size_t len, size_t max)
{
    size_t *cuts = malloc((len ? len : 1) * sizeof *cuts), i;
    struct run r;

    cr_assert_not_null(cuts);
    for (i = 0; i < len; i++)
        cuts[i] = i;
    r = feed(data, len, max, cuts, len);
    free(cuts);
    return r;
}

/* Parses s, which must yield exactly one result, and returns it. */
static struct res one(const char *s)
{
    struct run r = run_str(s);
    struct res x;

    cr_assert_eq(r.n, 1, "\"%s\" gave %zu results", s, r.n);
    cr_assert_eq(r.left, 0, "\"%s\" left %zu bytes", s, r.left);
    x = r.r[0];
    x.body = NULL;
    run_free(&r);
    return x;
}

static void is_cmd(const struct res *r, enum op op)
{
    cr_assert_eq(r->st, BS_CMD, "status %d err %d", r->st, r->err);
    cr_assert_eq(r->c.op, op, "op %d, want %d", r->c.op, op);
}

static void is_err(const struct res *r, enum rcode err, enum op counted)
{
    cr_assert_eq(r->st, BS_ERR, "status %d op %d", r->st, r->c.op);
    cr_assert_eq(r->err, err, "err %d, want %d", r->err, err);
    cr_assert_eq(r->c.op, counted, "op %d, want %d", r->c.op, counted);
}

static void bad(const char *s)
{
    struct res r = one(s);
    is_err(&r, R_BAD_FORMAT, OP_COUNT);
}

static void unknown(const char *s)
{
    struct res r = one(s);
    is_err(&r, R_UNKNOWN_COMMAND, OP_COUNT);
}

static void exact_cmd(const char *s, enum op op)
{
    struct res r = one(s);
    is_cmd(&r, op);
}

static void name_is(const struct res *r, const char *name)
{
    cr_assert_eq(r->c.name_len, strlen(name));
    cr_assert_eq(memcmp(r->name, name, strlen(name)), 0, "name \"%.*s\"", (int)r->c.name_len,
                 r->name);
}

static char *repeat(char ch, size_t n)
{
    char *s = malloc(n + 1);

    cr_assert_not_null(s);
    memset(s, ch, n);
    s[n] = '\0';
    return s;
}

/* Returns malloc'd printf output. */
static char *fmt(const char *f, ...) __attribute__((format(printf, 1, 2)));
static char *fmt(const char *f, ...)
{
    va_list ap;
    char *s;
    int n;

    va_start(ap, f);
    n = vsnprintf(NULL, 0, f, ap);
    va_end(ap);
    s = malloc((size_t)n + 1);
    cr_assert_not_null(s);
    va_start(ap, f);
    vsnprintf(s, (size_t)n + 1, f, ap);
    va_end(ap);
    return s;
}

/* ---- framing ------------------------------------------------------------ */

TestSuite(framing);

Test(framing, incomplete_line_consumes_nothing)
{
    struct run r = run_str("stats\r");

    cr_assert_eq(r.n, 0);
    cr_assert_eq(r.left, 6);
    run_free(&r);
}

Test(framing, empty_input_asks_for_more)
{
    struct run r = run_mem("", 0, MAXJ);

    cr_assert_eq(r.n, 0);
    cr_assert_eq(r.left, 0);
    run_free(&r);
}

Test(framing, bare_lf_is_part_of_the_line)
{
    /* "stats\n" is stats with trailing text; live: "use foo\n" is BAD_FORMAT. */
    bad("stats\n\r\n");
    bad("use foo\n\r\n");
    exact_cmd("quit\n\r\n", OP_QUIT);
}

Test(framing, lone_cr_keeps_the_line_open)
{
    /* scan_line_end() only looks at the first '\r'. Live: no reply at all. */
    struct run r = run_str("use a\rb\r\nlist-tube-used\r\n");

    cr_assert_eq(r.n, 0);
    cr_assert_eq(r.left, 25);
    run_free(&r);
}

Test(framing, lone_cr_line_is_discarded_once_224_bytes_arrive)
{
    /* Live: BAD_FORMAT, then USING default for the line after the window. */
    char s[300];
    size_t n = 0;
    struct run r;

    n += (size_t)sprintf(s, "ab\rcd\r\nlist-tube-used\r\n");
    memset(s + n, 'q', BS_LINE_MAX - n);
    n = BS_LINE_MAX;
    n += (size_t)sprintf(s + n, "zz\r\nlist-tube-used\r\n");
    r = run_mem(s, n, MAXJ);
    cr_assert_eq(r.n, 2);
    is_err(&r.r[0], R_BAD_FORMAT, OP_COUNT);
    is_cmd(&r.r[1], OP_LIST_TUBE_USED);
    run_free(&r);
}

Test(framing, line_of_224_bytes_is_accepted)
{
    char *name = repeat('n', BS_NAME_MAX);
    char *s = fmt("pause-tube %s 4294967295\r\n", name);
    struct res r;

    cr_assert_eq(strlen(s), BS_LINE_MAX);
    r = one(s);
    is_cmd(&r, OP_PAUSE_TUBE);
    cr_assert_eq(r.c.delay, UINT32_MAX);
    name_is(&r, name);
    free(s);
    free(name);
}

Test(framing, line_of_224_bytes_with_unknown_command)
{
    /* Live: 222 bytes + CRLF is a line: UNKNOWN_COMMAND, then USING. */
    char *x = repeat('x', 222);
    char *s = fmt("%s\r\nlist-tube-used\r\n", x);
    struct run r = run_str(s);

    cr_assert_eq(r.n, 2);
    is_err(&r.r[0], R_UNKNOWN_COMMAND, OP_COUNT);
    is_cmd(&r.r[1], OP_LIST_TUBE_USED);
    run_free(&r);
    free(s);
    free(x);
}

Test(framing, line_of_225_bytes_loses_its_crlf_and_the_next_line)
{
    /* The '\r' is the 224th byte, which scan_line_end never looks at: live,
     * beanstalkd answers one BAD_FORMAT for both lines. */
    char *x = repeat('x', 223);
    char *s = fmt("%s\r\nlist-tube-used\r\n", x);
    struct run r = run_str(s);

    cr_assert_eq(r.n, 1);
    is_err(&r.r[0], R_BAD_FORMAT, OP_COUNT);
    cr_assert_eq(r.left, 0);
    run_free(&r);
    free(s);
    free(x);
}

Test(framing, long_line_is_bad_format_and_parsing_resumes)
{
    char *x = repeat('x', 224);
    char *s = fmt("%s\r\nlist-tube-used\r\n", x);
    struct run r = run_str(s);

    cr_assert_eq(r.n, 2);
    is_err(&r.r[0], R_BAD_FORMAT, OP_COUNT);
    is_cmd(&r.r[1], OP_LIST_TUBE_USED);
    run_free(&r);
    free(s);
    free(x);
}

Test(framing, very_long_line_fed_in_chunks_stays_bounded)
{
    size_t n = 100000, cuts[1000], i;
    char *s = malloc(n + 32);
    struct run r;

    cr_assert_not_null(s);
    memset(s, 'y', n);
    memcpy(s + n, "\r\nstats\r\n", 9);
    for (i = 0; i < 1000; i++)
        cuts[i] = i * 100 + 7;
    r = feed(s, n + 9, MAXJ, cuts, 1000);
    cr_assert_eq(r.n, 2);
    is_err(&r.r[0], R_BAD_FORMAT, OP_COUNT);
    is_cmd(&r.r[1], OP_STATS);
    run_free(&r);
    free(s);
}

Test(framing, discard_window_with_lone_cr_ignores_its_later_crlf)
{
    /* Live: the second window starts with "a\rb", so the "\r\n" after it and
     * the list-tube-used in that window are dropped; the third window ends
     * the discard. */
    char s[600];
    size_t n = BS_LINE_MAX;
    struct run r;

    memset(s, 'x', n);
    n += (size_t)sprintf(s + n, "a\rb\r\nlist-tube-used\r\n");
    memset(s + n, 'y', 2 * BS_LINE_MAX - n);
    n = 2 * BS_LINE_MAX;
    n += (size_t)sprintf(s + n, "zz\r\nlist-tube-used\r\n");
    r = run_mem(s, n, MAXJ);
    cr_assert_eq(r.n, 2);
    is_err(&r.r[0], R_BAD_FORMAT, OP_COUNT);
    is_cmd(&r.r[1], OP_LIST_TUBE_USED);
    run_free(&r);
}

Test(framing, discard_misses_crlf_split_across_windows)
{
    /* Live: "\r" ends the second window, "\n" starts the third. */
    char s[600];
    size_t n = 2 * BS_LINE_MAX - 1;
    struct run r;

    memset(s, 'x', n);
    n += (size_t)sprintf(s + n, "\r\nlist-tube-used\r\nlist-tube-used\r\n");
    r = run_mem(s, n, MAXJ);
    cr_assert_eq(r.n, 2);
    is_err(&r.r[0], R_BAD_FORMAT, OP_COUNT);
    is_cmd(&r.r[1], OP_LIST_TUBE_USED);
    run_free(&r);
}

Test(framing, discard_finds_crlf_inside_a_later_window)
{
    char s[600];
    size_t n = 2 * BS_LINE_MAX - 2;
    struct run r;

    memset(s, 'x', n);
    n += (size_t)sprintf(s + n, "\r\nlist-tube-used\r\nlist-tube-used\r\n");
    r = run_mem(s, n, MAXJ);
    cr_assert_eq(r.n, 3);
    is_err(&r.r[0], R_BAD_FORMAT, OP_COUNT);
    is_cmd(&r.r[1], OP_LIST_TUBE_USED);
    is_cmd(&r.r[2], OP_LIST_TUBE_USED);
    run_free(&r);
}

Test(framing, discard_keeps_a_trailing_cr_for_the_next_chunk)
{
    char s[400];
    size_t n = 300, cut = 251;
    struct run r;
    struct bs_parser p;
    size_t used;
    struct cmd c;
    enum rcode err;

    memset(s, 'x', n);
    s[250] = '\r';
    s[251] = '\n';
    memcpy(s + 252, "stats\r\n", 7);
    n = 259;
    r = feed(s, n, MAXJ, &cut, 1);
    cr_assert_eq(r.n, 2);
    is_err(&r.r[0], R_BAD_FORMAT, OP_COUNT);
    is_cmd(&r.r[1], OP_STATS);
    run_free(&r);

    /* Directly: the chunk ending in '\r' is consumed but for that byte. */
    bs_parser_init(&p, MAXJ);
    cr_assert_eq(bs_parse(&p, s, 251, &used, &c, &err), BS_MORE);
    cr_assert_eq(used, 250);
    cr_assert_eq(bs_parse(&p, s + 250, 9, &used, &c, &err), BS_ERR);
    cr_assert_eq(used, 2);
    cr_assert_eq(err, R_BAD_FORMAT);
}

Test(framing, nul_byte_in_a_line_is_bad_format)
{
    {
        static const char a[] = "stats\0\r\n";
        static const char b[] = "xx\0yy\r\n";
        static const char c[] = "put 0 0 1 1\0\r\nx\r\n";
        struct run ra = run_mem(a, sizeof a - 1, MAXJ);
        struct run rb = run_mem(b, sizeof b - 1, MAXJ);
        struct run rc = run_mem(c, sizeof c - 1, MAXJ);

        cr_assert_eq(ra.n, 1);
        is_err(&ra.r[0], R_BAD_FORMAT, OP_COUNT);
        cr_assert_eq(rb.n, 1);
        is_err(&rb.r[0], R_BAD_FORMAT, OP_COUNT);
        /* Not counted as a put, and the body is then parsed as a line. */
        cr_assert_eq(rc.n, 2);
        is_err(&rc.r[0], R_BAD_FORMAT, OP_COUNT);
        is_err(&rc.r[1], R_UNKNOWN_COMMAND, OP_COUNT);
        run_free(&ra);
        run_free(&rb);
        run_free(&rc);
    }
}

Test(framing, empty_line_is_unknown_command)
{
    unknown("\r\n");
}

Test(framing, commands_are_case_sensitive)
{
    unknown("RESERVE\r\n");
    unknown("Stats\r\n");
    unknown("PUT 0 0 1 1\r\n");
}

Test(framing, pipelined_commands_parse_in_order)
{
    struct run r = run_str("use foo\r\nput 1 2 3 3\r\nabc\r\nwatch foo\r\nreserve\r\n"
                           "delete 1\r\nquit\r\n");

    cr_assert_eq(r.n, 6);
    is_cmd(&r.r[0], OP_USE);
    name_is(&r.r[0], "foo");
    is_cmd(&r.r[1], OP_PUT);
    cr_assert_eq(memcmp(r.r[1].body, "abc\r\n", 5), 0);
    is_cmd(&r.r[2], OP_WATCH);
    is_cmd(&r.r[3], OP_RESERVE);
    is_cmd(&r.r[4], OP_DELETE);
    cr_assert_eq(r.r[4].c.id, 1);
    is_cmd(&r.r[5], OP_QUIT);
    run_free(&r);
}

Test(framing, one_call_returns_one_command)
{
    struct bs_parser p;
    const char *s = "stats\r\nlist-tubes\r\n";
    size_t used;
    struct cmd c;
    enum rcode err;

    bs_parser_init(&p, MAXJ);
    cr_assert_eq(bs_parse(&p, s, strlen(s), &used, &c, &err), BS_CMD);
    cr_assert_eq(used, 7);
    cr_assert_eq(c.op, OP_STATS);
    cr_assert_eq(bs_parse(&p, s + 7, strlen(s) - 7, &used, &c, &err), BS_CMD);
    cr_assert_eq(c.op, OP_LIST_TUBES);
    cr_assert_eq(used, 12);
    cr_assert_eq(bs_parse(&p, s + 19, 0, &used, &c, &err), BS_MORE);
    cr_assert_eq(used, 0);
}

Test(framing, bytewise_feed_equals_whole_feed)
{
    const char *s = "put 0 0 1 3\r\na\r\n\r\nuse x\r\nreserve-with-timeout 2\r\n";
    struct run a = run_str(s), b = run_bytewise(s, strlen(s), MAXJ);

    cr_assert_eq(a.n, 3);
    cr_assert_eq(b.n, 3);
    cr_assert_eq(memcmp(b.r[0].body, "a\r\n\r\n", 5), 0);
    is_cmd(&b.r[1], OP_USE);
    is_cmd(&b.r[2], OP_RESERVE_TIMEOUT);
    cr_assert_eq(b.r[2].c.timeout, 2);
    run_free(&a);
    run_free(&b);
}

/* ---- command matching quirks -------------------------------------------- */

TestSuite(matching);

Test(matching, quit_with_trailing_text_still_quits)
{
    exact_cmd("quitX\r\n", OP_QUIT);
    exact_cmd("quit now\r\n", OP_QUIT);
    exact_cmd("quit\r\n", OP_QUIT);
}

Test(matching, exact_words_reject_trailing_text)
{
    bad("reserveX\r\n");
    bad("reserve \r\n");
    bad("statsX\r\n");
    bad("peek-readyX\r\n");
    bad("peek-ready \r\n");
    bad("peek-delayed1\r\n");
    bad("peek-buried \r\n");
    bad("list-tubesX\r\n");
    bad("list-tube-usedX\r\n");
    bad("list-tubes-watched \r\n");
}

Test(matching, words_without_their_space_fall_to_shorter_commands)
{
    bad("reserve-with-timeout\r\n");   /* reserve + text; live */
    bad("reserve-job\r\n");            /* reserve + text */
    bad("stats-job\r\n");              /* stats + text; live */
    bad("stats-tube\r\n");             /* stats + text */
    bad("list-tubes-watche\r\n");      /* list-tubes + text; live */
}

Test(matching, words_without_their_space_and_no_shorter_command_are_unknown)
{
    unknown("put\r\n");
    unknown("peek\r\n");
    unknown("kick\r\n");
    unknown("kick-job\r\n");
    unknown("delete\r\n");
    unknown("use\r\n");
    unknown("watch\r\n");
    unknown("list-tube\r\n");
    unknown("pause\r\n");
    unknown("delete\t1\r\n");
}

Test(matching, pause_tube_needs_no_space_after_its_word)
{
    struct res r = one("pause-tubefoo 1\r\n");

    is_cmd(&r, OP_PAUSE_TUBE);
    name_is(&r, "foo");
    cr_assert_eq(r.c.delay, 1);
}

Test(matching, every_op_name_parses_back_to_its_op)
{
    static const char *const args[OP_COUNT] = {
        [OP_PUT] = " 0 0 1 0\r\n\r\n", [OP_USE] = " t\r\n", [OP_RESERVE_TIMEOUT] = " 1\r\n",
        [OP_RESERVE_JOB] = " 1\r\n", [OP_DELETE] = " 1\r\n", [OP_RELEASE] = " 1 2 3\r\n",
        [OP_BURY] = " 1 2\r\n", [OP_TOUCH] = " 1\r\n", [OP_WATCH] = " t\r\n",
        [OP_IGNORE] = " t\r\n", [OP_PEEK] = " 1\r\n", [OP_KICK] = " 1\r\n",
        [OP_KICK_JOB] = " 1\r\n", [OP_STATS_JOB] = " 1\r\n", [OP_STATS_TUBE] = " t\r\n",
        [OP_PAUSE_TUBE] = " t 1\r\n",
    };
    int op;

    for (op = 0; op < OP_COUNT; op++) {
        char *s = fmt("%s%s", bs_op_name((enum op)op), args[op] ? args[op] : "\r\n");
        struct res r = one(s);
        is_cmd(&r, (enum op)op);
        free(s);
    }
}

Test(matching, op_names_are_the_wire_words)
{
    cr_assert_str_eq(bs_op_name(OP_PUT), "put");
    cr_assert_str_eq(bs_op_name(OP_RESERVE_TIMEOUT), "reserve-with-timeout");
    cr_assert_str_eq(bs_op_name(OP_LIST_TUBES_WATCHED), "list-tubes-watched");
    cr_assert_str_eq(bs_op_name(OP_QUIT), "quit");
    cr_assert_str_eq(bs_op_name(OP_COUNT), "unknown");
    cr_assert_str_eq(bs_op_name((enum op)-1), "unknown");
}

/* ---- put ---------------------------------------------------------------- */

TestSuite(put);

Test(put, fields_and_body_are_returned)
{
    struct run r = run_str("put 10 20 30 5\r\nhello\r\n");

    cr_assert_eq(r.n, 1);
    is_cmd(&r.r[0], OP_PUT);
    cr_assert_eq(r.r[0].c.pri, 10);
    cr_assert_eq(r.r[0].c.delay, 20);
    cr_assert_eq(r.r[0].c.ttr, 30);
    cr_assert_eq(r.r[0].c.body_len, 5);
    cr_assert_eq(memcmp(r.r[0].body, "hello\r\n", 7), 0);
    cr_assert_eq(r.left, 0);
    run_free(&r);
}

Test(put, body_points_into_the_input)
{
    struct bs_parser p;
    const char *s = "put 0 0 1 2\r\nhi\r\nstats\r\n";
    size_t used;
    struct cmd c;
    enum rcode err;

    bs_parser_init(&p, MAXJ);
    cr_assert_eq(bs_parse(&p, s, strlen(s), &used, &c, &err), BS_CMD);
    cr_assert_eq(c.body, s + 13);
    cr_assert_eq(used, 17);
}

Test(put, extra_spaces_between_numbers_are_accepted)
{
    /* live */
    struct run r = run_str("put  0  0  1  1\r\nx\r\n");

    cr_assert_eq(r.n, 1);
    is_cmd(&r.r[0], OP_PUT);
    cr_assert_eq(r.r[0].c.body_len, 1);
    run_free(&r);
}

Test(put, ttr_zero_is_passed_as_zero)
{
    struct run r = run_str("put 0 0 0 1\r\nx\r\n");

    is_cmd(&r.r[0], OP_PUT);
    cr_assert_eq(r.r[0].c.ttr, 0);
    run_free(&r);
}

Test(put, u32_maxima_are_accepted)
{
    struct run r = run_str("put 4294967295 4294967295 4294967295 0\r\n\r\n");

    is_cmd(&r.r[0], OP_PUT);
    cr_assert_eq(r.r[0].c.pri, UINT32_MAX);
    cr_assert_eq(r.r[0].c.delay, UINT32_MAX);
    cr_assert_eq(r.r[0].c.ttr, UINT32_MAX);
    run_free(&r);
}

Test(put, zero_byte_body_is_allowed)
{
    struct run r = run_str("put 0 0 1 0\r\n\r\n");

    cr_assert_eq(r.n, 1);
    is_cmd(&r.r[0], OP_PUT);
    cr_assert_eq(r.r[0].c.body_len, 0);
    run_free(&r);
}

Test(put, binary_body_with_nul_and_crlf_is_kept_whole)
{
    static const char s[] = "put 0 0 1 8\r\na\0\r\nb\r\n\0\r\nstats\r\n";
    struct run r = run_mem(s, sizeof s - 1, MAXJ);

    cr_assert_eq(r.n, 2);
    is_cmd(&r.r[0], OP_PUT);
    cr_assert_eq(r.r[0].c.body_len, 8);
    cr_assert_eq(memcmp(r.r[0].body, "a\0\r\nb\r\n\0\r\n", 10), 0);
    is_cmd(&r.r[1], OP_STATS);
    run_free(&r);
}

Test(put, waits_for_the_whole_body_without_consuming)
{
    struct bs_parser p;
    const char *s = "put 0 0 1 5\r\nhello\r\n";
    size_t used, n;
    struct cmd c;
    enum rcode err;

    bs_parser_init(&p, MAXJ);
    for (n = 13; n < 20; n++) {
        cr_assert_eq(bs_parse(&p, s, n, &used, &c, &err), BS_MORE, "n=%zu", n);
        cr_assert_eq(used, 0);
        cr_assert(bs_parser_in_body(&p));
    }
    cr_assert_eq(bs_parse(&p, s, 20, &used, &c, &err), BS_CMD);
    cr_assert_eq(used, 20);
    cr_assert_not(bs_parser_in_body(&p));
}

Test(put, body_of_max_size_is_accepted)
{
    size_t max = 1000, n;
    char *s = malloc(max + 64);
    struct run r;

    cr_assert_not_null(s);
    n = (size_t)sprintf(s, "put 0 0 1 %zu\r\n", max);
    memset(s + n, 'b', max);
    memcpy(s + n + max, "\r\n", 2);
    r = run_mem(s, n + max + 2, max);
    cr_assert_eq(r.n, 1);
    is_cmd(&r.r[0], OP_PUT);
    cr_assert_eq(r.r[0].c.body_len, max);
    run_free(&r);
    free(s);
}

Test(put, body_of_max_plus_one_is_skipped_then_job_too_big)
{
    size_t max = 1000, n;
    char *s = malloc(max + 64);
    struct run r;

    cr_assert_not_null(s);
    n = (size_t)sprintf(s, "put 0 0 1 %zu\r\n", max + 1);
    memset(s + n, '\r', max + 1); /* nothing in the body may be parsed */
    memcpy(s + n + max + 1, "\r\nstats\r\n", 9);
    r = run_mem(s, n + max + 1 + 9, max);
    cr_assert_eq(r.n, 2);
    is_err(&r.r[0], R_JOB_TOO_BIG, OP_PUT);
    is_cmd(&r.r[1], OP_STATS);
    run_free(&r);
    free(s);
}

Test(put, default_max_job_size_is_inclusive)
{
    struct run r = run_str("put 0 0 1 65536\r\n");

    cr_assert_eq(r.n, 0);
    cr_assert_eq(r.left, 0);
    cr_assert_eq(r.skip, 65538);
    run_free(&r);
}

Test(put, job_too_big_waits_for_the_skip_across_calls)
{
    const char *line = "put 0 0 1 300\r\n";
    char s[400];
    size_t n = strlen(line);
    struct run r;

    memcpy(s, line, n);
    memset(s + n, 'z', 302);
    memcpy(s + n + 302, "stats\r\n", 7);
    r = run_bytewise(s, n + 302 + 7, 100);
    cr_assert_eq(r.n, 2);
    is_err(&r.r[0], R_JOB_TOO_BIG, OP_PUT);
    is_cmd(&r.r[1], OP_STATS);
    run_free(&r);
}

Test(put, huge_bytes_skip_counts_in_64_bits)
{
    struct bs_parser p;
    const char *line = "put 0 0 1 4294967295\r\n";
    static char chunk[1 << 20];
    size_t used, i;
    struct cmd c;
    enum rcode err;

    bs_parser_init(&p, MAXJ);
    cr_assert_eq(bs_parse(&p, line, strlen(line), &used, &c, &err), BS_MORE);
    cr_assert_eq(used, strlen(line));
    cr_assert_eq(p.skip, 4294967297ULL);
    for (i = 0; i < 8; i++) {
        cr_assert_eq(bs_parse(&p, chunk, sizeof chunk, &used, &c, &err), BS_MORE);
        cr_assert_eq(used, sizeof chunk);
    }
    cr_assert_eq(p.skip, 4294967297ULL - 8 * sizeof chunk);
    p.skip = 3; /* jump to the end of the body */
    cr_assert_eq(bs_parse(&p, "ab\r\nstats\r\n", 11, &used, &c, &err), BS_ERR);
    cr_assert_eq(err, R_JOB_TOO_BIG);
    cr_assert_eq(c.op, OP_PUT);
    cr_assert_eq(used, 3);
    cr_assert_eq(bs_parse(&p, "\nstats\r\n", 8, &used, &c, &err), BS_ERR);
    cr_assert_eq(err, R_UNKNOWN_COMMAND); /* the 4th byte was not part of the body */
}

Test(put, size_check_comes_before_trailing_text_check)
{
    /* Live (1.6 of the reference): the server swallows bytes+2 and answers
     * JOB_TOO_BIG, counting the put. */
    struct run r = run_str("put 0 0 1 65536 x\r\n");

    cr_assert_eq(r.n, 0);
    cr_assert_eq(r.skip, 65538);
    run_free(&r);
}

Test(put, trailing_text_is_bad_format_and_body_parses_as_commands)
{
    /* live: BAD_FORMAT then UNKNOWN_COMMAND */
    struct run r = run_str("put 0 0 1 5 x\r\nhello\r\n");

    cr_assert_eq(r.n, 2);
    is_err(&r.r[0], R_BAD_FORMAT, OP_PUT);
    is_err(&r.r[1], R_UNKNOWN_COMMAND, OP_COUNT);
    run_free(&r);
}

Test(put, trailing_space_or_letters_after_bytes_are_bad_format)
{
    struct res r = one("put 0 0 1 1 \r\n");
    is_err(&r, R_BAD_FORMAT, OP_PUT);
    r = one("put 0 0 1 1x\r\n");
    is_err(&r, R_BAD_FORMAT, OP_PUT);
}

Test(put, wrong_trailer_is_expected_crlf_after_bytes_plus_two)
{
    /* live */
    struct run r = run_str("put 0 0 1 5\r\nhelloXYstats\r\n");

    cr_assert_eq(r.n, 2);
    is_err(&r.r[0], R_EXPECTED_CRLF, OP_PUT);
    is_cmd(&r.r[1], OP_STATS);
    run_free(&r);
    r = run_str("put 0 0 1 0\r\n\n\r");
    cr_assert_eq(r.n, 1);
    is_err(&r.r[0], R_EXPECTED_CRLF, OP_PUT);
    cr_assert_eq(r.left, 0);
    run_free(&r);
}

Test(put, bad_numbers_are_bad_format_and_not_counted)
{
    bad("put 1 2 3\r\n");
    bad("put \r\n");
    bad("put 4294967296 0 1 1\r\n");   /* live (reference 1.6) */
    bad("put 0 -1 1 1\r\n");
    bad("put +1 0 1 1\r\n");
    bad("put 0 0 4294967296 1\r\n");
    bad("put 0 0 1 4294967296\r\n");   /* too big for u32 before too big for the job */
    bad("put 0 0 1 99999999999999999999999\r\n");
    bad("put 0,0,1,1\r\n");
    unknown("put\t0 0 1 1\r\n");
}

Test(put, tab_separated_numbers_are_bad_format)
{
    bad("put 0\t0 1 1\r\n");
}

/* ---- numbers ------------------------------------------------------------ */

TestSuite(numbers);

Test(numbers, id_commands_take_a_u64)
{
    struct res r = one("delete 18446744073709551615\r\n");

    is_cmd(&r, OP_DELETE);
    cr_assert_eq(r.c.id, UINT64_MAX);
    r = one("peek 42\r\n");
    is_cmd(&r, OP_PEEK);
    cr_assert_eq(r.c.id, 42);
    r = one("reserve-job 7\r\n");
    is_cmd(&r, OP_RESERVE_JOB);
    cr_assert_eq(r.c.id, 7);
    r = one("touch 8\r\n");
    is_cmd(&r, OP_TOUCH);
    cr_assert_eq(r.c.id, 8);
    r = one("kick-job 9\r\n");
    is_cmd(&r, OP_KICK_JOB);
    cr_assert_eq(r.c.id, 9);
    r = one("stats-job 10\r\n");
    is_cmd(&r, OP_STATS_JOB);
    cr_assert_eq(r.c.id, 10);
}

Test(numbers, ids_skip_leading_spaces)
{
    struct res r = one("delete   5\r\n");

    is_cmd(&r, OP_DELETE);
    cr_assert_eq(r.c.id, 5);
}

Test(numbers, ids_reject_sign_overflow_and_trailing_text)
{
    bad("peek -1\r\n");                         /* reference 1.3 */
    bad("peek +1\r\n");
    bad("peek 18446744073709551616\r\n");       /* reference 1.3 */
    bad("delete 1 \r\n");
    bad("delete 1x\r\n");
    bad("delete 1\t\r\n");
    bad("delete \r\n");
    bad("delete x\r\n");
    bad("touch \t1\r\n");
    bad("kick-job 1 2\r\n");
    bad("stats-job 0x10\r\n");
    bad("reserve-job -5\r\n");
}

Test(numbers, release_takes_id_pri_delay)
{
    struct res r = one("release 3 4294967295 4294967295\r\n");

    is_cmd(&r, OP_RELEASE);
    cr_assert_eq(r.c.id, 3);
    cr_assert_eq(r.c.pri, UINT32_MAX);
    cr_assert_eq(r.c.delay, UINT32_MAX);
    r = one("release  3   1   2\r\n");
    is_cmd(&r, OP_RELEASE);
    cr_assert_eq(r.c.delay, 2);
    bad("release 1 2\r\n");
    bad("release 1 2 3 \r\n");
    bad("release 1 4294967296 3\r\n");
    bad("release 1 2 4294967296\r\n");
    bad("release 1 -2 3\r\n");
    bad("release 1x 2 3\r\n");
}

Test(numbers, bury_takes_id_pri)
{
    struct res r = one("bury 3 7\r\n");

    is_cmd(&r, OP_BURY);
    cr_assert_eq(r.c.id, 3);
    cr_assert_eq(r.c.pri, 7);
    bad("bury 1\r\n");
    bad("bury 1 2 3\r\n");
    bad("bury 1 4294967296\r\n");
}

/* ---- reserve-with-timeout: strtol into an int --------------------------- */

TestSuite(timeout);

static int64_t timeout_of(const char *s)
{
    struct res r = one(s);

    is_cmd(&r, OP_RESERVE_TIMEOUT);
    return r.c.timeout;
}

Test(timeout, plain_values)
{
    cr_assert_eq(timeout_of("reserve-with-timeout 0\r\n"), 0);
    cr_assert_eq(timeout_of("reserve-with-timeout 5\r\n"), 5);
    cr_assert_eq(timeout_of("reserve-with-timeout 2147483647\r\n"), INT32_MAX);
}

Test(timeout, trailing_garbage_is_accepted)
{
    /* live (reference 1.3) */
    cr_assert_eq(timeout_of("reserve-with-timeout 0 junk\r\n"), 0);
    cr_assert_eq(timeout_of("reserve-with-timeout 1x\r\n"), 1);
}

Test(timeout, no_digits_mean_zero)
{
    /* live: TIMED_OUT at once */
    cr_assert_eq(timeout_of("reserve-with-timeout abc\r\n"), 0);
    cr_assert_eq(timeout_of("reserve-with-timeout \r\n"), 0);
    cr_assert_eq(timeout_of("reserve-with-timeout -\r\n"), 0);
}

Test(timeout, sign_and_white_space_are_accepted)
{
    cr_assert_eq(timeout_of("reserve-with-timeout +1\r\n"), 1);
    cr_assert_eq(timeout_of("reserve-with-timeout -1\r\n"), -1);
    cr_assert_eq(timeout_of("reserve-with-timeout \t 3\r\n"), 3);
    cr_assert_eq(timeout_of("reserve-with-timeout   3\r\n"), 3);
}

Test(timeout, values_past_int_are_truncated_like_beanstalkd)
{
    /* live: 2147483648 waits (negative int), 4294967296 times out at once,
     * 4294967297 after a second. */
    cr_assert_eq(timeout_of("reserve-with-timeout 2147483648\r\n"), INT32_MIN);
    cr_assert_eq(timeout_of("reserve-with-timeout 4294967295\r\n"), -1);
    cr_assert_eq(timeout_of("reserve-with-timeout 4294967296\r\n"), 0);
    cr_assert_eq(timeout_of("reserve-with-timeout 4294967297\r\n"), 1);
    cr_assert_eq(timeout_of("reserve-with-timeout 9223372036854775807\r\n"), -1);
    cr_assert_eq(timeout_of("reserve-with-timeout -9223372036854775808\r\n"), 0);
    cr_assert_eq(timeout_of("reserve-with-timeout -2147483649\r\n"), INT32_MAX);
}

Test(timeout, values_outside_long_are_bad_format)
{
    /* live */
    bad("reserve-with-timeout 9223372036854775808\r\n");
    bad("reserve-with-timeout -9223372036854775809\r\n");
    bad("reserve-with-timeout 99999999999999999999999\r\n");
}

/* ---- kick: strtoul ------------------------------------------------------ */

TestSuite(kick);

static uint64_t bound_of(const char *s)
{
    struct res r = one(s);

    is_cmd(&r, OP_KICK);
    return r.c.bound;
}

Test(kick, plain_bound)
{
    cr_assert_eq(bound_of("kick 10\r\n"), 10);
    cr_assert_eq(bound_of("kick 0\r\n"), 0);
}

Test(kick, trailing_garbage_is_accepted)
{
    /* live (reference 1.3) */
    cr_assert_eq(bound_of("kick 10abc\r\n"), 10);
    cr_assert_eq(bound_of("kick 5 x\r\n"), 5);
}

Test(kick, minus_one_is_the_largest_bound)
{
    /* live: kicks everything */
    cr_assert_eq(bound_of("kick -1\r\n"), UINT64_MAX);
    cr_assert_eq(bound_of("kick -18446744073709551615\r\n"), 1);
    cr_assert_eq(bound_of("kick +7\r\n"), 7);
}

Test(kick, bound_is_passed_in_64_bits)
{
    /* The engine keeps 32 bits, as beanstalkd's unsigned int: live, this
     * kicks 2. */
    cr_assert_eq(bound_of("kick 4294967298\r\n"), 4294967298ULL);
    cr_assert_eq(bound_of("kick 18446744073709551615\r\n"), UINT64_MAX);
}

Test(kick, white_space_before_digits_is_skipped)
{
    cr_assert_eq(bound_of("kick \t5\r\n"), 5);
    cr_assert_eq(bound_of("kick   5\r\n"), 5);
}

Test(kick, no_digits_or_overflow_is_bad_format)
{
    /* live */
    bad("kick x\r\n");
    bad("kick \r\n");
    bad("kick +\r\n");
    bad("kick -\r\n");
    bad("kick 18446744073709551616\r\n");
    bad("kick -18446744073709551616\r\n");
}

/* ---- tube names --------------------------------------------------------- */

TestSuite(names);

Test(names, use_watch_ignore_stats_tube_take_the_rest_of_the_line)
{
    struct res r = one("use foo\r\n");

    is_cmd(&r, OP_USE);
    name_is(&r, "foo");
    r = one("watch bar\r\n");
    is_cmd(&r, OP_WATCH);
    name_is(&r, "bar");
    r = one("ignore baz\r\n");
    is_cmd(&r, OP_IGNORE);
    name_is(&r, "baz");
    r = one("stats-tube default\r\n");
    is_cmd(&r, OP_STATS_TUBE);
    name_is(&r, "default");
}

Test(names, every_allowed_character_is_accepted)
{
    const char *all = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-+/;.$_()";
    char *s = fmt("use %s\r\n", all);
    struct res r = one(s);

    is_cmd(&r, OP_USE);
    name_is(&r, all);
    free(s);
    r = one("watch a-\r\n");
    name_is(&r, "a-");
}

Test(names, two_hundred_characters_are_accepted)
{
    char *name = repeat('a', 200);
    char *s = fmt("watch %s\r\n", name);
    struct res r = one(s);

    is_cmd(&r, OP_WATCH);
    name_is(&r, name);
    free(s);
    free(name);
}

Test(names, two_hundred_and_one_characters_are_bad_format)
{
    /* live (reference 1.1) */
    char *name = repeat('a', 201);
    char *s = fmt("use %s\r\n", name);

    bad(s);
    free(s);
    s = fmt("stats-tube %s\r\n", name);
    bad(s);
    free(s);
    free(name);
}

Test(names, bad_names_are_bad_format)
{
    bad("use foo \r\n");       /* trailing space, live */
    bad("use  foo\r\n");       /* leading space */
    bad("use \r\n");
    bad("use -foo\r\n");
    bad("use a:b\r\n");        /* live */
    bad("use a@b\r\n");
    bad("watch fo o\r\n");
    bad("ignore *\r\n");
    bad("stats-tube foo\tbar\r\n");
    bad("use caf\xc3\xa9\r\n");
}

Test(names, pause_tube_reads_name_then_delay)
{
    struct res r = one("pause-tube foo 10\r\n");

    is_cmd(&r, OP_PAUSE_TUBE);
    name_is(&r, "foo");
    cr_assert_eq(r.c.delay, 10);
    r = one("pause-tube   foo   0\r\n");
    is_cmd(&r, OP_PAUSE_TUBE);
    name_is(&r, "foo");
    cr_assert_eq(r.c.delay, 0);
}

Test(names, pause_tube_bad_syntax_is_bad_format_and_not_counted)
{
    bad("pause-tube\r\n");
    bad("pause-tube foo\r\n");
    bad("pause-tube foo5\r\n");            /* digits belong to the name */
    bad("pause-tube foo 5 \r\n");
    bad("pause-tube foo 4294967296\r\n");
    bad("pause-tube foo -1\r\n");
    bad("pause-tube\tfoo 5\r\n");
    bad("pause-tube *foo 5\r\n");
    bad("pause-tube foo:bar 5\r\n");
}

Test(names, pause_tube_bad_name_is_bad_format_but_counted)
{
    char *name = repeat('p', 201);
    char *s = fmt("pause-tube %s 5\r\n", name);
    struct res r = one("pause-tube -foo 5\r\n");   /* live: BAD_FORMAT */

    is_err(&r, R_BAD_FORMAT, OP_PAUSE_TUBE);
    r = one(s);
    is_err(&r, R_BAD_FORMAT, OP_PAUSE_TUBE);
    free(s);
    free(name);
}

/* ---- the other commands ------------------------------------------------- */

TestSuite(commands);

Test(commands, argumentless_commands_parse)
{
    exact_cmd("reserve\r\n", OP_RESERVE);
    exact_cmd("peek-ready\r\n", OP_PEEK_READY);
    exact_cmd("peek-delayed\r\n", OP_PEEK_DELAYED);
    exact_cmd("peek-buried\r\n", OP_PEEK_BURIED);
    exact_cmd("stats\r\n", OP_STATS);
    exact_cmd("list-tubes\r\n", OP_LIST_TUBES);
    exact_cmd("list-tube-used\r\n", OP_LIST_TUBE_USED);
    exact_cmd("list-tubes-watched\r\n", OP_LIST_TUBES_WATCHED);
    exact_cmd("quit\r\n", OP_QUIT);
}

Test(commands, unknown_words_are_unknown_command)
{
    unknown("hello\r\n");
    unknown("list\r\n");
    unknown(" stats\r\n");
    bad("reserve-with-timeou 1\r\n");   /* reserve + text */
}

Test(commands, unused_fields_are_zero)
{
    struct res r = one("stats\r\n");

    cr_assert_eq(r.c.id, 0);
    cr_assert_eq(r.c.name_len, 0);
    cr_assert_eq(r.c.body_len, 0);
    cr_assert_eq(r.c.timeout, 0);
}

Test(commands, errors_carry_no_fields)
{
    struct res r = one("release 5 6\r\n");

    is_err(&r, R_BAD_FORMAT, OP_COUNT);
    cr_assert_eq(r.c.id, 0);
    cr_assert_eq(r.c.pri, 0);
}

/* ---- chunking ----------------------------------------------------------- */

TestSuite(chunks);

static bool same_res(const struct res *a, const struct res *b)
{
    if (a->st != b->st || a->err != b->err || a->c.op != b->c.op)
        return false;
    if (a->c.id != b->c.id || a->c.pri != b->c.pri || a->c.delay != b->c.delay ||
        a->c.ttr != b->c.ttr || a->c.timeout != b->c.timeout || a->c.bound != b->c.bound ||
        a->c.name_len != b->c.name_len || a->c.body_len != b->c.body_len)
        return false;
    if (memcmp(a->name, b->name, a->c.name_len) != 0)
        return false;
    if ((a->body == NULL) != (b->body == NULL))
        return false;
    return !a->body || memcmp(a->body, b->body, a->c.body_len + 2) == 0;
}

static void same_run(const struct run *a, const struct run *b, unsigned seed)
{
    size_t i;

    cr_assert_eq(a->n, b->n, "seed %u: %zu vs %zu results", seed, a->n, b->n);
    for (i = 0; i < a->n; i++)
        cr_assert(same_res(&a->r[i], &b->r[i]), "seed %u: result %zu differs", seed, i);
    cr_assert_eq(a->left, b->left, "seed %u", seed);
    cr_assert_eq(a->in_body, b->in_body, "seed %u", seed);
    cr_assert_eq(a->skip, b->skip, "seed %u", seed);
}

static uint32_t rng_state;

static uint32_t rnd(void)
{
    /* xorshift32: deterministic across platforms. */
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 17;
    rng_state ^= rng_state << 5;
    return rng_state;
}

/* Appends n bytes to the stream. */
static void add(struct buf *s, const void *p, size_t n)
{
    cr_assert_eq(buf_append(s, p, n), 0);
}

static void adds(struct buf *s, const char *p)
{
    add(s, p, strlen(p));
}

/* Appends one random piece of protocol traffic, valid or not. */
static void add_piece(struct buf *s)
{
    static const char *const lines[] = {
        "reserve\r\n", "use foo\r\n", "watch bar\r\n", "ignore default\r\n", "stats\r\n",
        "kick -1\r\n", "kick 10abc\r\n", "reserve-with-timeout 5 x\r\n", "quitX\r\n",
        "pause-tubefoo 1\r\n", "delete 18446744073709551615\r\n", "release 1 2 3\r\n",
        "bury 4 5\r\n", "statsX\r\n", "peek-ready\r\n", "list-tubes-watched\r\n",
        "use -x\r\n", "pause-tube -x 1\r\n", "\r\n", "xx\0\r\n", "RESERVE\r\n",
        "put 0 0 1 5 x\r\nhello\r\n", "put 1 2 3 5\r\nhelloXY", "put 0 0 0 0\r\n\r\n",
        "put 0 0 1 6\r\na\0\r\nb\r\r\n", "put 1 1 1 3\r\n\r\n\r\r\n", "ab\rcd\r\n",
        "delete 1\r\r\n",
    };
    size_t i, n;
    char tmp[1024];

    switch (rnd() % 8) {
    case 0: /* random bytes from a hostile alphabet */
        n = rnd() % 300;
        for (i = 0; i < n; i++)
            tmp[i] = "a \r\n\0\r\n1pu t"[rnd() % 13];
        add(s, tmp, n);
        break;
    case 1: /* a long line, maybe ending exactly at a window boundary */
        n = 200 + rnd() % 500;
        memset(tmp, 'L', n);
        if (rnd() % 3 == 0)
            tmp[rnd() % n] = '\r';
        add(s, tmp, n);
        adds(s, "\r\n");
        break;
    case 2: /* a put with a random body, sometimes too big (max is 100) */
        n = rnd() % 140;
        for (i = 0; i < n; i++)
            tmp[i] = "b\r\n\0"[rnd() % 4];
        {
            char line[64];
            int k = snprintf(line, sizeof line, "put %u %u %u %zu\r\n", rnd() % 3, rnd() % 3,
                             rnd() % 3, n);
            add(s, line, (size_t)k);
        }
        add(s, tmp, n);
        adds(s, rnd() % 5 ? "\r\n" : "\n\r");
        break;
    default:
        n = rnd() % (sizeof lines / sizeof lines[0]);
        /* the table entries with an embedded NUL need their real length */
        if (strcmp(lines[n], "xx") == 0)
            add(s, "xx\0\r\n", 5);
        else if (strncmp(lines[n], "put 0 0 1 6", 11) == 0)
            add(s, "put 0 0 1 6\r\na\0\r\nb\r\r\n", 21);
        else
            adds(s, lines[n]);
        break;
    }
}

Test(chunks, random_splits_give_the_same_results_as_one_chunk)
{
    unsigned seed;
    size_t total_results = 0, seen[R_COUNT] = { 0 }, puts = 0, i;

    for (seed = 1; seed <= 1500; seed++) {
        struct buf s;
        size_t cuts[40], ncuts, pieces;
        struct run whole, split;

        rng_state = seed * 2654435761u;
        buf_init(&s);
        pieces = 1 + rnd() % 12;
        for (i = 0; i < pieces; i++)
            add_piece(&s);
        ncuts = rnd() % 40;
        for (i = 0; i < ncuts; i++)
            cuts[i] = buf_used(&s) ? rnd() % (buf_used(&s) + 1) : 0;
        for (i = 1; i < ncuts; i++) { /* insertion sort */
            size_t v = cuts[i], j = i;
            while (j > 0 && cuts[j - 1] > v) {
                cuts[j] = cuts[j - 1];
                j--;
            }
            cuts[j] = v;
        }
        whole = run_mem(buf_head(&s), buf_used(&s), 100);
        split = feed(buf_head(&s), buf_used(&s), 100, cuts, ncuts);
        same_run(&whole, &split, seed);
        if (seed % 50 == 0) {
            struct run bytes = run_bytewise(buf_head(&s), buf_used(&s), 100);
            same_run(&whole, &bytes, seed);
            run_free(&bytes);
        }
        total_results += whole.n;
        for (i = 0; i < whole.n; i++) {
            if (whole.r[i].st == BS_ERR)
                seen[whole.r[i].err]++;
            else if (whole.r[i].c.op == OP_PUT)
                puts++;
        }
        run_free(&whole);
        run_free(&split);
        buf_destroy(&s);
    }
    /* The streams reach every framing path. */
    cr_assert_gt(total_results, 5000);
    cr_assert_gt(puts, 300);
    cr_assert_gt(seen[R_BAD_FORMAT], 300);
    cr_assert_gt(seen[R_UNKNOWN_COMMAND], 300);
    cr_assert_gt(seen[R_EXPECTED_CRLF], 100);
    cr_assert_gt(seen[R_JOB_TOO_BIG], 100);
}

/* ---- replies ------------------------------------------------------------ */

TestSuite(reply);

static void reply_is(const struct reply *r, const char *want, size_t n)
{
    struct buf b;

    buf_init(&b);
    cr_assert_eq(bs_write_reply(&b, r), 0);
    cr_assert_eq(buf_used(&b), n, "got %zu bytes \"%.*s\", want %zu", buf_used(&b),
                 (int)buf_used(&b), buf_head(&b), n);
    if (n)
        cr_assert_eq(memcmp(buf_head(&b), want, n), 0, "got \"%.*s\"", (int)n, buf_head(&b));
    buf_destroy(&b);
}

#define REPLY_IS(r, s) reply_is((r), (s), sizeof(s) - 1)

static void word_is(enum rcode code, const char *want)
{
    struct reply r = { .code = code };

    reply_is(&r, want, strlen(want));
}

Test(reply, none_and_close_write_nothing)
{
    word_is(R_NONE, "");
    word_is(R_CLOSE, "");
}

Test(reply, fixed_words_are_exact)
{
    word_is(R_DEADLINE_SOON, "DEADLINE_SOON\r\n");
    word_is(R_TIMED_OUT, "TIMED_OUT\r\n");
    word_is(R_DELETED, "DELETED\r\n");
    word_is(R_NOT_FOUND, "NOT_FOUND\r\n");
    word_is(R_RELEASED, "RELEASED\r\n");
    word_is(R_BURIED, "BURIED\r\n");
    word_is(R_TOUCHED, "TOUCHED\r\n");
    word_is(R_NOT_IGNORED, "NOT_IGNORED\r\n");
    word_is(R_KICKED, "KICKED\r\n");
    word_is(R_PAUSED, "PAUSED\r\n");
    word_is(R_DRAINING, "DRAINING\r\n");
    word_is(R_OUT_OF_MEMORY, "OUT_OF_MEMORY\r\n");
    word_is(R_INTERNAL_ERROR, "INTERNAL_ERROR\r\n");
    word_is(R_BAD_FORMAT, "BAD_FORMAT\r\n");
    word_is(R_UNKNOWN_COMMAND, "UNKNOWN_COMMAND\r\n");
    word_is(R_EXPECTED_CRLF, "EXPECTED_CRLF\r\n");
    word_is(R_JOB_TOO_BIG, "JOB_TOO_BIG\r\n");
}

Test(reply, inserted_and_buried_carry_the_id)
{
    struct reply r = { .code = R_INSERTED, .id = 5 };

    REPLY_IS(&r, "INSERTED 5\r\n");
    r.id = UINT64_MAX;
    REPLY_IS(&r, "INSERTED 18446744073709551615\r\n");
    r.code = R_BURIED_ID;
    r.id = 7;
    REPLY_IS(&r, "BURIED 7\r\n");
}

Test(reply, using_names_the_tube)
{
    struct reply r = { .code = R_USING, .name = "foobar", .name_len = 3 };

    REPLY_IS(&r, "USING foo\r\n");
}

Test(reply, reserved_and_found_send_the_body)
{
    struct reply r = { .code = R_RESERVED, .id = 5, .body = "abc\r\n", .body_len = 3 };

    REPLY_IS(&r, "RESERVED 5 3\r\nabc\r\n");
    r.code = R_FOUND;
    r.id = 12;
    r.body = "a\0\r\nb";
    r.body_len = 5;
    REPLY_IS(&r, "FOUND 12 5\r\na\0\r\nb\r\n");
    r.body = NULL;
    r.body_len = 0;
    REPLY_IS(&r, "FOUND 12 0\r\n\r\n");
}

Test(reply, large_body_is_copied_whole)
{
    size_t n = 300000, i;
    char *body = malloc(n);
    struct reply r = { .code = R_RESERVED, .id = 1 };
    struct buf b;

    cr_assert_not_null(body);
    for (i = 0; i < n; i++)
        body[i] = (char)i;
    r.body = body;
    r.body_len = n;
    buf_init(&b);
    cr_assert_eq(bs_write_reply(&b, &r), 0);
    cr_assert_eq(buf_used(&b), strlen("RESERVED 1 300000\r\n") + n + 2);
    cr_assert_eq(memcmp(buf_head(&b) + 19, body, n), 0);
    buf_destroy(&b);
    free(body);
}

Test(reply, counts_are_printed)
{
    struct reply r = { .code = R_WATCHING, .count = 2 };

    REPLY_IS(&r, "WATCHING 2\r\n");
    r.code = R_KICKED_N;
    r.count = 3;
    REPLY_IS(&r, "KICKED 3\r\n");
    r.count = 0;
    REPLY_IS(&r, "KICKED 0\r\n");
}

Test(reply, ok_counts_yaml_bytes_but_not_the_final_crlf)
{
    const struct kv kv[] = {
        { .key = "id", .type = KV_U64, .v.u = 5 },
        { .key = "tube", .type = KV_QSTR, .s = "default", .n = 7 },
        { .key = "state", .type = KV_STR, .s = "ready", .n = 5 },
        { .key = "pause-time-left", .type = KV_I64, .v.i = -5 },
        { .key = "rusage-utime", .type = KV_STR, .s = "0.001000", .n = 8 },
        { .key = "draining", .type = KV_BOOL, .v.b = 0 },
        { .key = "up", .type = KV_BOOL, .v.b = 1 },
    };
    struct reply r = { .code = R_YAML, .kv = kv, .nkv = sizeof kv / sizeof kv[0] };
    const char *yaml = "---\nid: 5\ntube: \"default\"\nstate: ready\npause-time-left: -5\n"
                       "rusage-utime: 0.001000\ndraining: false\nup: true\n";
    char *want = fmt("OK %zu\r\n%s\r\n", strlen(yaml), yaml);

    reply_is(&r, want, strlen(want));
    free(want);
}

Test(reply, ok_list_items_are_unquoted)
{
    const struct kv kv[] = {
        { .type = KV_ITEM, .s = "default", .n = 7 },
        { .type = KV_ITEM, .s = "foo", .n = 3 },
    };
    struct reply r = { .code = R_YAML, .kv = kv, .nkv = 2 };

    REPLY_IS(&r, "OK 20\r\n---\n- default\n- foo\n\r\n");
}

Test(reply, ok_with_no_lines_is_just_the_header)
{
    struct reply r = { .code = R_YAML };

    REPLY_IS(&r, "OK 4\r\n---\n\r\n");
}

Test(reply, ok_extreme_numbers)
{
    const struct kv kv[] = {
        { .key = "a", .type = KV_U64, .v.u = UINT64_MAX },
        { .key = "b", .type = KV_I64, .v.i = INT64_MIN },
        { .key = "c", .type = KV_U64, .v.u = 0 },
        { .key = "d", .type = KV_I64, .v.i = 0 },
    };
    struct reply r = { .code = R_YAML, .kv = kv, .nkv = 4 };

    REPLY_IS(&r, "OK 62\r\n---\na: 18446744073709551615\nb: -9223372036854775808\nc: 0\nd: 0\n"
                 "\r\n");
}

Test(reply, ok_stats_job_document_matches_beanstalkd_layout)
{
    /* The 14 keys of 1.13's STATS_JOB_FMT, with a quoted tube. */
    const struct kv kv[] = {
        { .key = "id", .type = KV_U64, .v.u = 1 },
        { .key = "tube", .type = KV_QSTR, .s = "default", .n = 7 },
        { .key = "state", .type = KV_STR, .s = "ready", .n = 5 },
        { .key = "pri", .type = KV_U64, .v.u = 0 },
        { .key = "age", .type = KV_I64, .v.i = 0 },
        { .key = "delay", .type = KV_I64, .v.i = 0 },
        { .key = "ttr", .type = KV_I64, .v.i = 1 },
        { .key = "time-left", .type = KV_I64, .v.i = 0 },
        { .key = "file", .type = KV_I64, .v.i = 0 },
        { .key = "reserves", .type = KV_U64, .v.u = 0 },
        { .key = "timeouts", .type = KV_U64, .v.u = 0 },
        { .key = "releases", .type = KV_U64, .v.u = 0 },
        { .key = "buries", .type = KV_U64, .v.u = 0 },
        { .key = "kicks", .type = KV_U64, .v.u = 0 },
    };
    struct reply r = { .code = R_YAML, .kv = kv, .nkv = 14 };
    const char *yaml = "---\nid: 1\ntube: \"default\"\nstate: ready\npri: 0\nage: 0\ndelay: 0\n"
                       "ttr: 1\ntime-left: 0\nfile: 0\nreserves: 0\ntimeouts: 0\nreleases: 0\n"
                       "buries: 0\nkicks: 0\n";
    char *want = fmt("OK %zu\r\n%s\r\n", strlen(yaml), yaml);

    reply_is(&r, want, strlen(want));
    free(want);
}

Test(reply, replies_append_after_existing_output)
{
    struct buf b;
    struct reply r = { .code = R_DELETED };

    buf_init(&b);
    cr_assert_eq(buf_append(&b, "xxINSERTED 1\r\n", 14), 0);
    buf_consume(&b, 2);
    cr_assert_eq(bs_write_reply(&b, &r), 0);
    r.code = R_NONE;
    cr_assert_eq(bs_write_reply(&b, &r), 0);
    cr_assert_eq(buf_used(&b), 21);
    cr_assert_eq(memcmp(buf_head(&b), "INSERTED 1\r\nDELETED\r\n", 21), 0);
    buf_destroy(&b);
}

Test(reply, invalid_code_answers_internal_error)
{
    struct reply r = { .code = R_COUNT };

    REPLY_IS(&r, "INTERNAL_ERROR\r\n");
}
