/* beanstalk.c -- beanstalkd 1.13 text protocol: parser and reply writer (see beanstalk.h).
 *
 * Every rule here mirrors beanstalkd's prot.c (which_cmd, read_u32/read_u64,
 * read_tube_name, is_valid_tube, scan_line_end, STATE_WANT_ENDLINE,
 * dispatch_cmd) as it answers on the wire, including its quirks; the comments
 * say which quirk a branch keeps. Unlike beanstalkd we never NUL-terminate the
 * line: every scan is bounded by the line's end.
 */
#include "beanstalk.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

enum {
    ST_LINE,                   /* waiting for a command line */
    ST_BODY,                   /* put line parsed, waiting for <bytes> + 2 more bytes */
    ST_DISCARD,                /* line too long: dropping bytes up to a "\r\n" */
    ST_SKIP                    /* put body too big: dropping p->skip bytes */
};

/* What parse_line() made of one complete line. */
enum line_result {
    L_CMD,                     /* *c is a whole command */
    L_ERR,                     /* answer *err */
    L_ERR_COUNTED,             /* answer *err, but beanstalkd counts c->op in its stats */
    L_PUT,                     /* put header fine: the body follows */
    L_TOO_BIG                  /* put body over the limit: skip it, answer JOB_TOO_BIG */
};

/* Internal step result: the state changed and the loop should go on. */
#define STEP_AGAIN (-1)

/* How a command's arguments are read. */
enum args {
    A_EXACT,                   /* nothing may follow the word */
    A_NONE,                    /* anything may follow (quit) */
    A_ID,                      /* <id>, u64, last */
    A_PUT,                     /* <pri> <delay> <ttr> <bytes> */
    A_TIMEOUT,                 /* strtol, no trailing check */
    A_RELEASE,                 /* <id> <pri> <delay> */
    A_BURY,                    /* <id> <pri> */
    A_KICK,                    /* strtoul, no trailing check */
    A_NAME,                    /* the rest of the line is a tube name */
    A_PAUSE                    /* <name> <delay> */
};

struct verb {
    const char *word;          /* the prefix beanstalkd compares, with its trailing space if any */
    unsigned char len;         /* bytes of word */
    unsigned char op;          /* enum op */
    unsigned char args;        /* enum args */
};

#define VERB(w, o, a) { w, sizeof(w) - 1, o, a }

/* In which_cmd's order: the first prefix that matches wins, so "quitX" quits,
 * "reserveX" is reserve with trailing text (BAD_FORMAT) and "pause-tubefoo 1"
 * pauses foo. */
static const struct verb verbs[] = {
    VERB("put ", OP_PUT, A_PUT),
    VERB("peek ", OP_PEEK, A_ID),
    VERB("peek-ready", OP_PEEK_READY, A_EXACT),
    VERB("peek-delayed", OP_PEEK_DELAYED, A_EXACT),
    VERB("peek-buried", OP_PEEK_BURIED, A_EXACT),
    VERB("reserve-with-timeout ", OP_RESERVE_TIMEOUT, A_TIMEOUT),
    VERB("reserve-job ", OP_RESERVE_JOB, A_ID),
    VERB("reserve", OP_RESERVE, A_EXACT),
    VERB("delete ", OP_DELETE, A_ID),
    VERB("release ", OP_RELEASE, A_RELEASE),
    VERB("bury ", OP_BURY, A_BURY),
    VERB("kick ", OP_KICK, A_KICK),
    VERB("kick-job ", OP_KICK_JOB, A_ID),
    VERB("touch ", OP_TOUCH, A_ID),
    VERB("stats-job ", OP_STATS_JOB, A_ID),
    VERB("stats-tube ", OP_STATS_TUBE, A_NAME),
    VERB("stats", OP_STATS, A_EXACT),
    VERB("use ", OP_USE, A_NAME),
    VERB("watch ", OP_WATCH, A_NAME),
    VERB("ignore ", OP_IGNORE, A_NAME),
    VERB("list-tubes-watched", OP_LIST_TUBES_WATCHED, A_EXACT),
    VERB("list-tube-used", OP_LIST_TUBE_USED, A_EXACT),
    VERB("list-tubes", OP_LIST_TUBES, A_EXACT),
    VERB("quit", OP_QUIT, A_NONE),
    VERB("pause-tube", OP_PAUSE_TUBE, A_PAUSE),
};

/* beanstalkd's NAME_CHARS: A-Z a-z 0-9 - + / ; . $ _ ( ) */
static const unsigned char name_char[256] = {
    ['A'] = 1, ['B'] = 1, ['C'] = 1, ['D'] = 1, ['E'] = 1, ['F'] = 1, ['G'] = 1, ['H'] = 1,
    ['I'] = 1, ['J'] = 1, ['K'] = 1, ['L'] = 1, ['M'] = 1, ['N'] = 1, ['O'] = 1, ['P'] = 1,
    ['Q'] = 1, ['R'] = 1, ['S'] = 1, ['T'] = 1, ['U'] = 1, ['V'] = 1, ['W'] = 1, ['X'] = 1,
    ['Y'] = 1, ['Z'] = 1,
    ['a'] = 1, ['b'] = 1, ['c'] = 1, ['d'] = 1, ['e'] = 1, ['f'] = 1, ['g'] = 1, ['h'] = 1,
    ['i'] = 1, ['j'] = 1, ['k'] = 1, ['l'] = 1, ['m'] = 1, ['n'] = 1, ['o'] = 1, ['p'] = 1,
    ['q'] = 1, ['r'] = 1, ['s'] = 1, ['t'] = 1, ['u'] = 1, ['v'] = 1, ['w'] = 1, ['x'] = 1,
    ['y'] = 1, ['z'] = 1,
    ['0'] = 1, ['1'] = 1, ['2'] = 1, ['3'] = 1, ['4'] = 1, ['5'] = 1, ['6'] = 1, ['7'] = 1,
    ['8'] = 1, ['9'] = 1,
    ['-'] = 1, ['+'] = 1, ['/'] = 1, [';'] = 1, ['.'] = 1, ['$'] = 1, ['_'] = 1, ['('] = 1,
    [')'] = 1,
};

static const char *const op_names[OP_COUNT] = {
    [OP_PUT] = "put",
    [OP_USE] = "use",
    [OP_RESERVE] = "reserve",
    [OP_RESERVE_TIMEOUT] = "reserve-with-timeout",
    [OP_RESERVE_JOB] = "reserve-job",
    [OP_DELETE] = "delete",
    [OP_RELEASE] = "release",
    [OP_BURY] = "bury",
    [OP_TOUCH] = "touch",
    [OP_WATCH] = "watch",
    [OP_IGNORE] = "ignore",
    [OP_PEEK] = "peek",
    [OP_PEEK_READY] = "peek-ready",
    [OP_PEEK_DELAYED] = "peek-delayed",
    [OP_PEEK_BURIED] = "peek-buried",
    [OP_KICK] = "kick",
    [OP_KICK_JOB] = "kick-job",
    [OP_STATS_JOB] = "stats-job",
    [OP_STATS_TUBE] = "stats-tube",
    [OP_STATS] = "stats",
    [OP_LIST_TUBES] = "list-tubes",
    [OP_LIST_TUBE_USED] = "list-tube-used",
    [OP_LIST_TUBES_WATCHED] = "list-tubes-watched",
    [OP_PAUSE_TUBE] = "pause-tube",
    [OP_QUIT] = "quit",
};

/* ---- arguments ---------------------------------------------------------- */

static bool is_digit(char ch)
{
    return ch >= '0' && ch <= '9';
}

/* isspace() in the C locale, which strtol and strtoul skip. */
static bool is_cspace(char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\v' || ch == '\f' || ch == '\r';
}

/* Reads digits at *s (bounded by e) into *v. Returns false if the value does
 * not fit in 64 bits (strtoumax's ERANGE); either way *s ends after the digits. */
static bool digits(const char **s, const char *e, uint64_t *v)
{
    uint64_t n = 0;
    bool ok = true;

    for (; *s < e && is_digit(**s); (*s)++) {
        unsigned d = (unsigned)(**s - '0');
        if (n > (UINT64_MAX - d) / 10)
            ok = false;
        else
            n = n * 10 + d;
    }
    *v = n;
    return ok;
}

/* Reads an unsigned decimal as beanstalkd's read_u32/read_u64 do: skips
 * spaces (only ' '), then wants a digit (so no sign), rejects values above
 * max and, when last is set, anything after the number. Advances *s past the
 * number. Returns true on success. */
static bool read_uint(const char **s, const char *e, uint64_t max, bool last, uint64_t *out)
{
    const char *q = *s;
    uint64_t v;

    while (q < e && *q == ' ')
        q++;
    if (q == e || !is_digit(*q))
        return false;
    if (!digits(&q, e, &v) || v > max)
        return false;
    if (last && q != e)
        return false;
    *s = q;
    *out = v;
    return true;
}

/* read_uint() for a u32 argument (pri, delay, ttr, bytes). */
static bool read_u32(const char **s, const char *e, bool last, uint32_t *out)
{
    uint64_t v;

    if (!read_uint(s, e, UINT32_MAX, last, &v))
        return false;
    *out = (uint32_t)v;
    return true;
}

/* Reads an integer as glibc's strtol/strtoul do on LP64: skips C-locale
 * white space, takes one optional sign, then digits. Sets *any to whether a
 * digit was seen and *mag to the magnitude. Returns false if the magnitude
 * does not fit in 64 bits. Trailing text is ignored, as beanstalkd ignores it. */
static bool read_signed(const char *s, const char *e, bool *neg, bool *any, uint64_t *mag)
{
    const char *q;

    while (s < e && is_cspace(*s))
        s++;
    *neg = false;
    if (s < e && (*s == '+' || *s == '-')) {
        *neg = *s == '-';
        s++;
    }
    q = s;
    if (!digits(&q, e, mag))
        return false;
    *any = q != s;
    if (!*any)
        *mag = 0;
    return true;
}

/* reserve-with-timeout: beanstalkd does `int timeout = strtol(...)` and only
 * checks errno. So no digits means 0, trailing text is ignored, a value
 * outside long gives BAD_FORMAT, and the long is truncated to a 32-bit int
 * (2147483648 becomes negative, which waits like reserve; 4294967296 becomes
 * 0). *out gets that int. Returns false for BAD_FORMAT. */
static bool read_timeout(const char *s, const char *e, int64_t *out)
{
    bool neg, any;
    uint64_t mag, v;
    uint32_t lo;

    if (!read_signed(s, e, &neg, &any, &mag))
        return false;
    if (mag > (neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX))
        return false;
    v = neg ? 0 - mag : mag;
    lo = (uint32_t)v;
    *out = lo > INT32_MAX ? (int64_t)lo - ((int64_t)1 << 32) : (int64_t)lo;
    return true;
}

/* kick: beanstalkd does strtoul and rejects only "no digits" and ERANGE; a
 * minus sign negates modulo 2^64 (`kick -1` is the largest bound). The engine
 * keeps the low 32 bits, as beanstalkd's unsigned int does. Returns false for
 * BAD_FORMAT. */
static bool read_bound(const char *s, const char *e, uint64_t *out)
{
    bool neg, any;
    uint64_t mag;

    if (!read_signed(s, e, &neg, &any, &mag) || !any)
        return false;
    *out = neg ? 0 - mag : mag;
    return true;
}

/* beanstalkd's is_valid_tube: 1..200 NAME_CHARS, not starting with '-'. */
static bool name_ok(const char *s, size_t n)
{
    size_t i;

    if (n == 0 || n > BS_NAME_MAX || s[0] == '-')
        return false;
    for (i = 0; i < n; i++) {
        if (!name_char[(unsigned char)s[i]])
            return false;
    }
    return true;
}

/* ---- one line ----------------------------------------------------------- */

/* Finds the command a line starts with, in which_cmd's order. Returns NULL
 * for UNKNOWN_COMMAND. */
static const struct verb *match(const char *s, size_t n)
{
    size_t i;

    for (i = 0; i < sizeof verbs / sizeof verbs[0]; i++) {
        /* The first byte rules out most verbs without a call to memcmp. */
        if (n >= verbs[i].len && s[0] == verbs[i].word[0] &&
            memcmp(s, verbs[i].word, verbs[i].len) == 0)
            return &verbs[i];
    }
    return NULL;
}

/* Parses one command line s[0..n) (without its "\r\n") into *c, as
 * beanstalkd's dispatch_cmd would. Returns an enum line_result; on L_ERR and
 * L_ERR_COUNTED *err holds the reply. max is the largest put body. */
static enum line_result parse_line(const char *s, size_t n, size_t max, struct cmd *c,
                                   enum rcode *err)
{
    const struct verb *v;
    const char *a, *e = s + n, *name;
    uint32_t bytes;

    *err = R_BAD_FORMAT;
    /* beanstalkd NUL-terminates the line and compares strlen(): any NUL
     * inside is BAD_FORMAT, whatever the command. */
    if (memchr(s, '\0', n))
        return L_ERR;
    v = match(s, n);
    if (!v) {
        *err = R_UNKNOWN_COMMAND;
        return L_ERR;
    }
    c->op = (enum op)v->op;
    a = s + v->len;

    switch ((enum args)v->args) {
    case A_EXACT:
        return a == e ? L_CMD : L_ERR;
    case A_NONE:
        return L_CMD;
    case A_ID:
        return read_uint(&a, e, UINT64_MAX, true, &c->id) ? L_CMD : L_ERR;
    case A_RELEASE:
        if (!read_uint(&a, e, UINT64_MAX, false, &c->id) || !read_u32(&a, e, false, &c->pri) ||
            !read_u32(&a, e, true, &c->delay))
            return L_ERR;
        return L_CMD;
    case A_BURY:
        if (!read_uint(&a, e, UINT64_MAX, false, &c->id) || !read_u32(&a, e, true, &c->pri))
            return L_ERR;
        return L_CMD;
    case A_TIMEOUT:
        return read_timeout(a, e, &c->timeout) ? L_CMD : L_ERR;
    case A_KICK:
        return read_bound(a, e, &c->bound) ? L_CMD : L_ERR;
    case A_NAME:
        /* The name is the whole rest of the line: no spaces skipped. */
        if (!name_ok(a, (size_t)(e - a)))
            return L_ERR;
        c->name = a;
        c->name_len = (size_t)(e - a);
        return L_CMD;
    case A_PAUSE:
        /* read_tube_name: spaces, then a run of NAME_CHARS ('-' included);
         * then read_duration up to the end of the line. */
        while (a < e && *a == ' ')
            a++;
        name = a;
        while (a < e && name_char[(unsigned char)*a])
            a++;
        c->name = name;
        c->name_len = (size_t)(a - name);
        if (c->name_len == 0 || !read_u32(&a, e, true, &c->delay))
            return L_ERR;
        /* beanstalkd counts cmd-pause-tube before it checks length and '-'. */
        return name_ok(name, c->name_len) ? L_CMD : L_ERR_COUNTED;
    case A_PUT:
        if (!read_u32(&a, e, false, &c->pri) || !read_u32(&a, e, false, &c->delay) ||
            !read_u32(&a, e, false, &c->ttr) || !read_u32(&a, e, false, &bytes))
            return L_ERR;
        c->body_len = bytes;
        /* cmd-put is counted from here on. The size check comes before the
         * trailing-text check, so "put 0 0 1 99999 x" skips 100001 bytes. */
        if (bytes > max)
            return L_TOO_BIG;
        return a == e ? L_PUT : L_ERR_COUNTED;
    }
    return L_ERR;
}

/* ---- framing ------------------------------------------------------------ */

/* Sets *out to a failed command: zeroed, op names the command beanstalkd
 * still counts in its stats, or OP_COUNT. */
static void failed(struct cmd *out, enum op op)
{
    memset(out, 0, sizeof *out);
    out->op = op;
}

/* ST_LINE: looks for a command line at data[*off..len). beanstalkd scans its
 * 224-byte line buffer with scan_line_end(), which looks only at the first
 * '\r' of the line and only if the byte after it is in the buffer too: so a
 * line ends at its first '\r' if that is followed by '\n' within 224 bytes;
 * a lone '\r' means the line can only become too long. Returns a bs_status,
 * or STEP_AGAIN after a state change. */
static int line_step(struct bs_parser *p, const char *data, size_t len, size_t *off,
                     struct cmd *out, enum rcode *err)
{
    const char *s = data + *off;
    size_t avail = len - *off;
    size_t n = avail < BS_LINE_MAX ? avail : BS_LINE_MAX;
    const char *cr = n ? memchr(s, '\r', n) : NULL;
    size_t i;

    if (!cr || (size_t)(cr - s) + 1 >= n || cr[1] != '\n') {
        if (avail < BS_LINE_MAX)
            return BS_MORE;
        /* 224 bytes and no line end: throw the window away, as beanstalkd
         * does (cmd_read = 0), and discard up to the next line end. */
        *off += BS_LINE_MAX;
        p->state = ST_DISCARD;
        p->win = 0;
        p->win_dead = 0;
        return STEP_AGAIN;
    }
    i = (size_t)(cr - s);
    switch (parse_line(s, i, p->max_job_size, out, err)) {
    case L_CMD:
        *off += i + 2;
        return BS_CMD;
    case L_ERR:
        failed(out, OP_COUNT);
        *off += i + 2;
        return BS_ERR;
    case L_ERR_COUNTED:
        failed(out, out->op);
        *off += i + 2;
        return BS_ERR;
    case L_PUT:
        /* The line stays unconsumed until the body is complete. */
        p->put = *out;
        p->line_len = i + 2;
        p->state = ST_BODY;
        return STEP_AGAIN;
    case L_TOO_BIG:
        p->skip = (uint64_t)out->body_len + 2;
        *off += i + 2;
        p->state = ST_SKIP;
        return STEP_AGAIN;
    }
    return BS_MORE;
}

/* ST_BODY: data[*off..) starts with the put line (p->line_len bytes); waits
 * until the body and its two trailer bytes follow. Returns a bs_status. */
static enum bs_status body_step(struct bs_parser *p, const char *data, size_t len, size_t *off,
                                struct cmd *out, enum rcode *err)
{
    size_t avail = len - *off;
    uint64_t need = (uint64_t)p->line_len + p->put.body_len + 2;
    const char *body;

    if ((uint64_t)avail < need)
        return BS_MORE;
    body = data + *off + p->line_len;
    *off += (size_t)need;
    p->state = ST_LINE;
    /* beanstalkd reads bytes+2 first, then checks the trailer. */
    if (body[p->put.body_len] != '\r' || body[p->put.body_len + 1] != '\n') {
        failed(out, OP_PUT);
        *err = R_EXPECTED_CRLF;
        return BS_ERR;
    }
    *out = p->put;
    out->body = body;
    return BS_CMD;
}

/* ST_SKIP: drops the body of a put that was too big, then answers
 * JOB_TOO_BIG. Returns a bs_status. */
static enum bs_status skip_step(struct bs_parser *p, size_t len, size_t *off, struct cmd *out,
                                enum rcode *err)
{
    size_t avail = len - *off;
    size_t take = p->skip < avail ? (size_t)p->skip : avail;

    *off += take;
    p->skip -= take;
    if (p->skip)
        return BS_MORE;
    p->state = ST_LINE;
    failed(out, OP_PUT);
    *err = R_JOB_TOO_BIG;
    return BS_ERR;
}

/* ST_DISCARD: drops the rest of an over-long line as beanstalkd's
 * STATE_WANT_ENDLINE does. It reads the rest into its 224-byte buffer one
 * window at a time and runs scan_line_end() on each: only a window's first
 * '\r' counts, only if the next byte in the same window is '\n'; a window
 * without such an end is dropped whole, so a "\r\n" split across two windows
 * is missed. p->win counts the bytes of the current window already consumed
 * and p->win_dead says its first '\r' was not followed by '\n'; with them the
 * result does not depend on how the input is split. A '\r' at the end of the
 * input (not of the window) is left unconsumed until its successor arrives.
 * Returns a bs_status. */
static enum bs_status discard_step(struct bs_parser *p, const char *data, size_t len,
                                   size_t *off, enum rcode *err)
{
    for (;;) {
        size_t room = BS_LINE_MAX - p->win;
        size_t avail = len - *off;
        size_t n = avail < room ? avail : room;
        const char *s = data + *off;

        if (n == 0)
            return BS_MORE;
        if (!p->win_dead) {
            const char *cr = memchr(s, '\r', n);
            size_t i = cr ? (size_t)(cr - s) : n;
            /* A '\r' in the window's last byte is never looked at. */
            if (cr && i + 1 < room) {
                if (i + 1 == avail) {
                    *off += i;
                    p->win += i;
                    return BS_MORE;
                }
                if (s[i + 1] == '\n') {
                    *off += i + 2;
                    p->state = ST_LINE;
                    *err = R_BAD_FORMAT;
                    return BS_ERR;
                }
                p->win_dead = 1;
            }
        }
        *off += n;
        p->win += n;
        if (p->win == BS_LINE_MAX) {
            p->win = 0;
            p->win_dead = 0;
        }
    }
}

void bs_parser_init(struct bs_parser *p, size_t max_job_size)
{
    memset(p, 0, sizeof *p);
    p->max_job_size = max_job_size;
    p->state = ST_LINE;
}

enum bs_status bs_parse(struct bs_parser *p, const char *data, size_t len, size_t *used,
                        struct cmd *out, enum rcode *err)
{
    size_t off = 0;
    int st;

    failed(out, OP_COUNT);
    *err = R_NONE;
    *used = 0;
    if (len == 0)
        return BS_MORE; /* no state makes progress on nothing; data may be NULL */
    do {
        switch (p->state) {
        case ST_LINE:
            st = line_step(p, data, len, &off, out, err);
            break;
        case ST_BODY:
            st = (int)body_step(p, data, len, &off, out, err);
            break;
        case ST_SKIP:
            st = (int)skip_step(p, len, &off, out, err);
            break;
        case ST_DISCARD:
            st = (int)discard_step(p, data, len, &off, err);
            if (st == BS_ERR)
                failed(out, OP_COUNT);
            break;
        default:
            /* Corrupt parser state: resynchronise on the next line. */
            p->state = ST_LINE;
            st = STEP_AGAIN;
            break;
        }
    } while (st == STEP_AGAIN);
    if (st != BS_ERR)
        *err = R_NONE;
    *used = off;
    return (enum bs_status)st;
}

int bs_parser_in_body(const struct bs_parser *p)
{
    return p->state == ST_BODY;
}

const char *bs_op_name(enum op op)
{
    if ((unsigned)op >= OP_COUNT)
        return "unknown";
    return op_names[op];
}

/* ---- replies ------------------------------------------------------------ */

/* The replies that are a fixed word, exactly as prot.c's MSG_* strings. */
static const char *const fixed[R_COUNT] = {
    [R_DEADLINE_SOON] = "DEADLINE_SOON\r\n",
    [R_TIMED_OUT] = "TIMED_OUT\r\n",
    [R_DELETED] = "DELETED\r\n",
    [R_NOT_FOUND] = "NOT_FOUND\r\n",
    [R_RELEASED] = "RELEASED\r\n",
    [R_BURIED] = "BURIED\r\n",
    [R_TOUCHED] = "TOUCHED\r\n",
    [R_NOT_IGNORED] = "NOT_IGNORED\r\n",
    [R_KICKED] = "KICKED\r\n",
    [R_PAUSED] = "PAUSED\r\n",
    [R_DRAINING] = "DRAINING\r\n",
    [R_OUT_OF_MEMORY] = "OUT_OF_MEMORY\r\n",
    [R_INTERNAL_ERROR] = "INTERNAL_ERROR\r\n",
    [R_BAD_FORMAT] = "BAD_FORMAT\r\n",
    [R_UNKNOWN_COMMAND] = "UNKNOWN_COMMAND\r\n",
    [R_EXPECTED_CRLF] = "EXPECTED_CRLF\r\n",
    [R_JOB_TOO_BIG] = "JOB_TOO_BIG\r\n",
};

/* Writes v in decimal at the end of tmp[24]. Returns the first digit. */
static char *fmt_u64(char tmp[24], uint64_t v)
{
    char *q = tmp + 24;

    do {
        *--q = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    return q;
}

/* Writes v in decimal (with '-' when negative) at the end of tmp[24].
 * Returns the first character. */
static char *fmt_i64(char tmp[24], int64_t v)
{
    uint64_t mag = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
    char *q = fmt_u64(tmp, mag);

    if (v < 0)
        *--q = '-';
    return q;
}

/* The bytes of one YAML line for kv, in up to five pieces (key, ": " or
 * "- ", value, quotes, "\n"), written to pc/pn. Returns the piece count. */
static size_t kv_pieces(const struct kv *kv, char tmp[24], const char *pc[6], size_t pn[6])
{
    size_t k = 0;
    const char *val;
    size_t vn;

    if (kv->type == KV_ITEM) {
        pc[k] = "- ", pn[k++] = 2;
        pc[k] = kv->s, pn[k++] = kv->n;
        pc[k] = "\n", pn[k++] = 1;
        return k;
    }
    switch (kv->type) {
    case KV_U64:
        val = fmt_u64(tmp, kv->v.u);
        vn = (size_t)(tmp + 24 - val);
        break;
    case KV_I64:
        val = fmt_i64(tmp, kv->v.i);
        vn = (size_t)(tmp + 24 - val);
        break;
    case KV_BOOL:
        val = kv->v.b ? "true" : "false";
        vn = kv->v.b ? 4 : 5;
        break;
    default: /* KV_STR, KV_QSTR */
        val = kv->s;
        vn = kv->n;
        break;
    }
    pc[k] = kv->key, pn[k++] = strlen(kv->key);
    pc[k] = ": ", pn[k++] = 2;
    if (kv->type == KV_QSTR)
        pc[k] = "\"", pn[k++] = 1;
    pc[k] = val, pn[k++] = vn;
    if (kv->type == KV_QSTR)
        pc[k] = "\"", pn[k++] = 1;
    pc[k] = "\n", pn[k++] = 1;
    return k;
}

/* Appends "OK <n>\r\n" and the YAML document of r->kv, where <n> counts the
 * document's bytes but not its final "\r\n", as do_stats/do_list_tubes do.
 * Returns 0, or -1 on allocation failure. */
static int write_ok(struct buf *b, const struct reply *r)
{
    char tmp[24], head[48];
    const char *pc[6];
    size_t pn[6], i, j, k, yaml = 4;
    int hn;

    for (i = 0; i < r->nkv; i++) {
        k = kv_pieces(&r->kv[i], tmp, pc, pn);
        for (j = 0; j < k; j++)
            yaml += pn[j];
    }
    hn = snprintf(head, sizeof head, "OK %zu\r\n", yaml);
    if (hn < 0 || buf_reserve(b, (size_t)hn + yaml + 2) < 0)
        return -1;
    if (buf_append(b, head, (size_t)hn) < 0 || buf_append(b, "---\n", 4) < 0)
        return -1;
    for (i = 0; i < r->nkv; i++) {
        k = kv_pieces(&r->kv[i], tmp, pc, pn);
        for (j = 0; j < k; j++) {
            if (buf_append(b, pc[j], pn[j]) < 0)
                return -1;
        }
    }
    return buf_append(b, "\r\n", 2);
}

/* Writes n in decimal ending just before end; returns where it starts. */
static char *u64_dec(char *end, uint64_t n)
{
    do
        *--end = (char)('0' + n % 10);
    while (n /= 10);
    return end;
}

/* Appends "<word> <n>\r\n", or with len "<word> <n> <len>\r\n" followed by
 * body[0..len) and "\r\n" (RESERVED, FOUND). Replies are made per command:
 * no printf here. Returns 0, or -1 on allocation failure. */
static int write_word(struct buf *b, const char *word, size_t wlen, uint64_t n, const char *body,
                      const uint64_t *len)
{
    char tmp[48]; /* " " u64 " " u64 "\r\n" */
    char *end = tmp + sizeof tmp, *p = end;
    *--p = '\n';
    *--p = '\r';
    if (len) {
        p = u64_dec(p, *len);
        *--p = ' ';
    }
    p = u64_dec(p, n);
    *--p = ' ';
    size_t tail = (size_t)(end - p);
    size_t total = wlen + tail + (len ? *len + 2 : 0);
    if (buf_reserve(b, total) < 0)
        return -1;
    char *o = b->data + b->len;
    memcpy(o, word, wlen);
    memcpy(o + wlen, p, tail);
    if (len) {
        if (*len)
            memcpy(o + wlen + tail, body, *len);
        memcpy(o + wlen + tail + *len, "\r\n", 2);
    }
    b->len += total;
    return 0;
}

#define WORD(b, lit, n) write_word(b, lit, sizeof lit - 1, n, NULL, NULL)

static int write_job(struct buf *b, const char *word, size_t wlen, const struct reply *r)
{
    uint64_t len = r->body_len;
    return write_word(b, word, wlen, r->id, r->body, &len);
}

/* Appends r's bytes to b. Returns 0, or -1 on allocation failure. */
static int write_reply(struct buf *b, const struct reply *r)
{
    switch (r->code) {
    case R_NONE:
    case R_CLOSE:
        return 0;
    case R_INSERTED:
        return WORD(b, "INSERTED", r->id);
    case R_BURIED_ID:
        return WORD(b, "BURIED", r->id);
    case R_USING:
        if (buf_append(b, "USING ", 6) < 0 || buf_append(b, r->name, r->name_len) < 0)
            return -1;
        return buf_append(b, "\r\n", 2);
    case R_RESERVED:
        return write_job(b, "RESERVED", 8, r);
    case R_FOUND:
        return write_job(b, "FOUND", 5, r);
    case R_WATCHING:
        return WORD(b, "WATCHING", r->count);
    case R_KICKED_N:
        return WORD(b, "KICKED", r->count);
    case R_YAML:
        return write_ok(b, r);
    default:
        break;
    }
    if ((unsigned)r->code < R_COUNT && fixed[r->code])
        return buf_append(b, fixed[r->code], strlen(fixed[r->code]));
    /* Not an rcode: a bug upstream. beanstalkd answers its own bugs so. */
    return buf_append(b, "INTERNAL_ERROR\r\n", 16);
}

int bs_write_reply(struct buf *out, const struct reply *r)
{
    size_t keep = buf_used(out);

    if (write_reply(out, r) < 0) {
        /* Drop a partial reply; buf_reserve() may have compacted meanwhile. */
        out->len = out->off + keep;
        return -1;
    }
    return 0;
}
