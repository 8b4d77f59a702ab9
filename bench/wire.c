/* wire.c -- beanstalkd and RESP requests and replies over a blocking socket
 * (see wire.h). A load generator that runs out of memory has nothing useful
 * left to measure, so allocation failures end the process with a message.
 */
#include "wire.h"

#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define READ_CHUNK (64 * 1024) /* bytes asked of one read(2) */

static void *grow(void *p, size_t n)
{
    p = realloc(p, n);
    if (!p) {
        fprintf(stderr, "docket-bench: out of memory\n");
        abort();
    }
    return p;
}

int wire_connect(struct wire *w, const char *host, int port, enum wire_proto proto)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICHOST};
    struct addrinfo *ai;
    char svc[16];
    int one = 1;

    memset(w, 0, sizeof *w);
    w->fd = -1;
    w->proto = proto;
    snprintf(svc, sizeof svc, "%d", port);
    if (getaddrinfo(host, svc, &hints, &ai) != 0)
        return -EINVAL;
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        int e = -errno;
        freeaddrinfo(ai);
        return e;
    }
    while (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
        if (errno == EINTR)
            continue;
        int e = -errno;
        close(fd);
        freeaddrinfo(ai);
        return e;
    }
    freeaddrinfo(ai);
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    w->fd = fd;
    return 0;
}

void wire_close(struct wire *w)
{
    if (w->fd >= 0)
        close(w->fd);
    w->fd = -1;
    free(w->in);
    free(w->out);
    w->in = w->out = NULL;
    w->ioff = w->ilen = w->icap = w->olen = w->ocap = 0;
}

static void append(struct wire *w, const void *p, size_t n)
{
    if (w->olen + n > w->ocap) {
        size_t cap = w->ocap ? w->ocap : 4096;
        while (cap < w->olen + n)
            cap *= 2;
        w->out = grow(w->out, cap);
        w->ocap = cap;
    }
    memcpy(w->out + w->olen, p, n);
    w->olen += n;
}

static void appendf(struct wire *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void appendf(struct wire *w, const char *fmt, ...)
{
    char tmp[256];
    va_list ap;

    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof tmp)
        abort(); /* every format here is short and bounded */
    append(w, tmp, (size_t)n);
}

/* RESP: appends one bulk string. */
static void bulk(struct wire *w, const void *p, size_t n)
{
    appendf(w, "$%zu\r\n", n);
    append(w, p, n);
    append(w, "\r\n", 2);
}

static void bulks(struct wire *w, const char *s)
{
    bulk(w, s, strlen(s));
}

void wire_put(struct wire *w, const char *queue, const void *body, size_t len, unsigned ttr)
{
    if (w->proto == WIRE_BEANSTALK) {
        appendf(w, "put 0 0 %u %zu\r\n", ttr, len);
        append(w, body, len);
        append(w, "\r\n", 2);
    } else {
        append(w, "*3\r\n", 4);
        bulks(w, "LPUSH");
        bulks(w, queue);
        bulk(w, body, len);
    }
}

void wire_reserve(struct wire *w, const char *queue, const char *proc, unsigned timeout_s)
{
    if (w->proto == WIRE_BEANSTALK) {
        appendf(w, "reserve-with-timeout %u\r\n", timeout_s);
    } else if (timeout_s == 0) {
        append(w, "*5\r\n", 4);
        bulks(w, "LMOVE");
        bulks(w, queue);
        bulks(w, proc);
        bulks(w, "RIGHT");
        bulks(w, "LEFT");
    } else {
        char t[16];
        snprintf(t, sizeof t, "%u", timeout_s);
        append(w, "*6\r\n", 4);
        bulks(w, "BLMOVE");
        bulks(w, queue);
        bulks(w, proc);
        bulks(w, "RIGHT");
        bulks(w, "LEFT");
        bulks(w, t);
    }
}

void wire_delete(struct wire *w, const char *proc, uint64_t id, const void *body, size_t len)
{
    if (w->proto == WIRE_BEANSTALK) {
        appendf(w, "delete %" PRIu64 "\r\n", id);
    } else {
        append(w, "*4\r\n", 4);
        bulks(w, "LREM");
        bulks(w, proc);
        bulks(w, "1");
        bulk(w, body, len);
    }
}

int wire_use(struct wire *w, const char *tube, bool produce, bool consume)
{
    int n = 0;

    if (w->proto != WIRE_BEANSTALK)
        return 0;
    if (produce) {
        appendf(w, "use %s\r\n", tube);
        n++;
    }
    if (consume) {
        appendf(w, "watch %s\r\nignore default\r\n", tube);
        n += 2;
    }
    return n;
}

void wire_noop(struct wire *w)
{
    if (w->proto == WIRE_BEANSTALK)
        append(w, "list-tube-used\r\n", 16);
    else
        append(w, "*1\r\n$4\r\nPING\r\n", 14);
}

int wire_flush(struct wire *w)
{
    size_t off = 0;

    while (off < w->olen) {
        ssize_t n = send(w->fd, w->out + off, w->olen - off, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        off += (size_t)n;
    }
    w->olen = 0;
    return 0;
}

/* Reads more bytes into the input buffer, keeping at least `need` bytes of
 * room. Returns 0, -ECONNRESET at end of stream, or -errno. */
static int fill(struct wire *w, size_t need)
{
    if (w->ioff > 0 && (w->ioff == w->ilen || w->icap - w->ilen < need)) {
        memmove(w->in, w->in + w->ioff, w->ilen - w->ioff);
        w->ilen -= w->ioff;
        w->ioff = 0;
    }
    if (need < READ_CHUNK)
        need = READ_CHUNK;
    if (w->icap - w->ilen < need) {
        size_t cap = w->icap ? w->icap : READ_CHUNK;
        while (cap - w->ilen < need)
            cap *= 2;
        w->in = grow(w->in, cap);
        w->icap = cap;
    }
    for (;;) {
        ssize_t n = recv(w->fd, w->in + w->ilen, w->icap - w->ilen, 0);
        if (n > 0) {
            w->ilen += (size_t)n;
            return 0;
        }
        if (n == 0)
            return -ECONNRESET;
        if (errno != EINTR)
            return -errno;
    }
}

/* Finds the CRLF-ended line at the parse position, reading as needed.
 * Returns its length without the CRLF, or a negative error. */
static ssize_t line(struct wire *w)
{
    size_t scanned = 0;

    for (;;) {
        char *p = w->in ? memchr(w->in + w->ioff + scanned, '\n', w->ilen - w->ioff - scanned)
                        : NULL;
        if (p) {
            size_t n = (size_t)(p - (w->in + w->ioff));
            if (n == 0 || w->in[w->ioff + n - 1] != '\r')
                return -EPROTO;
            return (ssize_t)(n - 1);
        }
        scanned = w->ilen - w->ioff;
        if (scanned > 4096)
            return -EPROTO; /* no reply line is this long */
        int rc = fill(w, 0);
        if (rc < 0)
            return rc;
    }
}

/* Makes sure n bytes follow the parse position. Returns 0 or a negative error. */
static int need(struct wire *w, size_t n)
{
    while (w->ilen - w->ioff < n) {
        int rc = fill(w, n - (w->ilen - w->ioff));
        if (rc < 0)
            return rc;
    }
    return 0;
}

static void copy_line(struct wire_reply *r, const char *s, size_t n)
{
    if (n >= sizeof r->line)
        n = sizeof r->line - 1;
    memcpy(r->line, s, n);
    r->line[n] = '\0';
}

/* Parses a decimal number that ends the string s (or is followed by a space).
 * Returns 0, or -1. */
static int num(const char *s, const char **end, uint64_t *out)
{
    uint64_t v = 0;
    const char *p = s;

    if (*p < '0' || *p > '9')
        return -1;
    for (; *p >= '0' && *p <= '9'; p++)
        v = v * 10 + (uint64_t)(*p - '0');
    *out = v;
    *end = p;
    return 0;
}

static int read_beanstalk(struct wire *w, struct wire_reply *r)
{
    ssize_t n = line(w);
    if (n < 0)
        return (int)n;
    char *s = w->in + w->ioff;
    size_t ln = (size_t)n;
    const char *e;
    uint64_t id, len;

    s[ln] = '\0'; /* the CR: safe, the line is consumed below */
    copy_line(r, s, ln);
    w->ioff += ln + 2;
    if (strncmp(s, "INSERTED ", 9) == 0 && num(s + 9, &e, &id) == 0 && *e == '\0') {
        r->kind = WIRE_INSERTED;
        r->id = id;
    } else if (strncmp(s, "RESERVED ", 9) == 0 && num(s + 9, &e, &id) == 0 && *e == ' ' &&
               num(e + 1, &e, &len) == 0 && *e == '\0') {
        int rc = need(w, len + 2);
        if (rc < 0)
            return rc;
        if (w->in[w->ioff + len] != '\r' || w->in[w->ioff + len + 1] != '\n')
            return -EPROTO;
        r->kind = WIRE_JOB;
        r->id = id;
        r->body = w->in + w->ioff;
        r->len = len;
        w->ioff += len + 2;
    } else if (strcmp(s, "DELETED") == 0) {
        r->kind = WIRE_DELETED;
    } else if (strcmp(s, "TIMED_OUT") == 0) {
        r->kind = WIRE_EMPTY;
    } else if (strncmp(s, "USING ", 6) == 0 || strncmp(s, "WATCHING ", 9) == 0) {
        r->kind = WIRE_OK;
    } else {
        r->kind = WIRE_ERROR;
    }
    return 0;
}

static int read_redis(struct wire *w, struct wire_reply *r)
{
    ssize_t n = line(w);
    if (n < 0)
        return (int)n;
    char *s = w->in + w->ioff;
    size_t ln = (size_t)n;
    const char *e;
    uint64_t v;

    s[ln] = '\0';
    copy_line(r, s, ln);
    w->ioff += ln + 2;
    switch (s[0]) {
    case '+':
        r->kind = WIRE_OK;
        return 0;
    case ':':
        if (s[1] == '-') {
            if (num(s + 2, &e, &v) < 0 || *e != '\0')
                return -EPROTO;
            r->num = -(int64_t)v;
        } else {
            if (num(s + 1, &e, &v) < 0 || *e != '\0')
                return -EPROTO;
            r->num = (int64_t)v;
        }
        r->kind = WIRE_INT;
        return 0;
    case '$':
    case '*':
        if (strcmp(s + 1, "-1") == 0) {
            r->kind = WIRE_EMPTY;
            return 0;
        }
        if (s[0] == '*' || num(s + 1, &e, &v) < 0 || *e != '\0')
            return -EPROTO; /* no command we send answers with an array */
        int rc = need(w, v + 2);
        if (rc < 0)
            return rc;
        if (w->in[w->ioff + v] != '\r' || w->in[w->ioff + v + 1] != '\n')
            return -EPROTO;
        r->kind = WIRE_JOB;
        r->id = 0;
        r->body = w->in + w->ioff;
        r->len = v;
        w->ioff += v + 2;
        return 0;
    default:
        r->kind = WIRE_ERROR;
        return 0;
    }
}

int wire_read(struct wire *w, struct wire_reply *r)
{
    r->body = NULL;
    r->len = 0;
    r->line[0] = '\0';
    return w->proto == WIRE_BEANSTALK ? read_beanstalk(w, r) : read_redis(w, r);
}

bool wire_put_ok(const struct wire_reply *r)
{
    return r->kind == WIRE_INSERTED || (r->kind == WIRE_INT && r->num >= 1);
}

bool wire_delete_ok(const struct wire_reply *r)
{
    return r->kind == WIRE_DELETED || (r->kind == WIRE_INT && r->num == 1);
}
