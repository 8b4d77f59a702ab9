/* conn.c -- one client connection (see conn.h).
 *
 * Every event of a connection ends in run(): execute the buffered commands
 * that may run now, write what can be written, then decide which events to
 * wait for. Reads, writes and the deliver hook only move bytes and set flags;
 * commands reach the engine only from run(), and the deliver hook, which runs
 * inside engine calls, never calls back into the engine or frees anything.
 */
#include "conn.h"

#include <errno.h>
#include <event2/event.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../common/log.h"
#include "../engine/engine.h"
#include "server.h"
#include "xalloc.h"

static void on_read(evutil_socket_t fd, short what, void *arg);
static void run(struct conn *c);
static void on_write(evutil_socket_t fd, short what, void *arg);
static void on_work(evutil_socket_t fd, short what, void *arg);

/* read(2) and write(2), retrying EINTR so callers never see it. */
static ssize_t read_some(int fd, void *p, size_t n)
{
    ssize_t r;
    do
        r = read(fd, p, n);
    while (r < 0 && errno == EINTR);
    return r;
}

static ssize_t write_some(int fd, const void *p, size_t n)
{
    ssize_t r;
    do
        r = write(fd, p, n);
    while (r < 0 && errno == EINTR);
    return r;
}

static void link_front(struct conn **head, struct conn *c)
{
    c->prev = NULL;
    c->next = *head;
    if (*head)
        (*head)->prev = c;
    *head = c;
}

static void unlink_from(struct conn **head, struct conn *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        *head = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->prev = c->next = NULL;
}

struct conn *conn_new(struct server *srv, int fd, uint64_t now)
{
    struct conn *c = xcalloc(1, sizeof *c);

    c->srv = srv;
    c->fd = fd;
    bs_parser_init(&c->parser, (size_t)srv->cfg->max_job_size);
    buf_init(&c->in);
    buf_init(&c->out);
    c->ev_read = event_new(srv->base, fd, EV_READ | EV_PERSIST, on_read, c);
    c->ev_write = event_new(srv->base, fd, EV_WRITE | EV_PERSIST, on_write, c);
    c->ev_work = event_new(srv->base, -1, 0, on_work, c);
    if (!c->ev_read || !c->ev_write || !c->ev_work)
        xoom("connection events");
    c->s = engine_session_open(srv->engine, c, now);
    if (!c->s)
        xoom("engine session");
    link_front(&srv->conns, c);
    srv->nconns++;
    c->reading = true;
    event_add(c->ev_read, NULL);
    dk_log(DK_LOG_INFO, "fd %d: connected (%zu connections)", fd, srv->nconns);
    return c;
}

/* Takes an empty input buffer from c: into the server's pool if it has the
 * size of a line read and the pool has room, else back to malloc. */
static void give_back(struct server *srv, struct buf *b)
{
    if (!b->data)
        return;
    if (b->cap == CONN_LINE_BUF && srv->npool < CONN_POOL_MAX) {
        srv->in_pool[srv->npool++] = b->data;
        buf_init(b);
    } else {
        buf_destroy(b);
    }
}

void conn_pool_free(struct server *srv)
{
    while (srv->npool)
        free(srv->in_pool[--srv->npool]);
}

void conn_close(struct conn *c, uint64_t now)
{
    struct server *srv = c->srv;

    if (c->closed)
        return;
    /* Set first: closing the session can release jobs to other sessions,
     * and the deliver hook must then leave this connection alone. */
    c->closed = true;
    if (c->s) {
        engine_session_close(srv->engine, c->s, now);
        c->s = NULL;
    }
    event_del(c->ev_read);
    event_del(c->ev_write);
    event_del(c->ev_work);
    c->reading = c->writing = false;
    server_untrack_held(srv, c);
    dk_log(DK_LOG_INFO, "fd %d: closed", c->fd);
    close(c->fd);
    c->fd = -1;
    buf_clear(&c->in);
    give_back(srv, &c->in);
    buf_destroy(&c->out);

    unlink_from(&srv->conns, c);
    srv->nconns--;
    link_front(&srv->dead, c);
    event_active(srv->reap, EV_TIMEOUT, 0);
}

void conn_free(struct conn *c)
{
    if (!c)
        return;
    event_free(c->ev_read);
    event_free(c->ev_write);
    event_free(c->ev_work);
    buf_destroy(&c->in);
    buf_destroy(&c->out);
    free(c->holds);
    free(c);
}

/* Bytes of output past which the connection stops taking new commands. */
static bool out_full(const struct conn *c)
{
    return buf_used(&c->out) > c->srv->out_cap;
}

/* Most bytes of input to hold: a whole put (line, body, CRLF) while the
 * parser is inside a body, a little pipelined input otherwise. */
static size_t in_limit(const struct conn *c)
{
    if (bs_parser_in_body(&c->parser))
        return BS_LINE_MAX + (size_t)c->srv->cfg->max_job_size + 2;
    return CONN_IN_MAX;
}

/* Frees an empty buffer that a big body or reply made large, so that a burst
 * does not pin memory for the rest of the connection's life. */
static void trim(struct buf *b)
{
    if (buf_used(b) == 0 && b->cap > CONN_KEEP_BUF)
        buf_destroy(b);
}

static void put_reply(struct conn *c, const struct reply *r)
{
    xcheck(bs_write_reply(&c->out, r), "reply");
}

/* Queues r; with seq > 0 it stays unwritten until the log covers seq. */
static void put_reply_held(struct conn *c, const struct reply *r, uint64_t seq, enum rcode fail)
{
    uint64_t start = c->sent + buf_used(&c->out);
    put_reply(c, r);
    if (!seq)
        return;
    if (c->nholds == c->capholds) {
        c->capholds = c->capholds ? c->capholds * 2 : 4;
        c->holds = xrealloc(c->holds, c->capholds * sizeof *c->holds);
    }
    c->holds[c->nholds++] =
        (struct hold){.start = start, .end = c->sent + buf_used(&c->out), .seq = seq, .fail = fail};
    server_hold(c->srv, c, seq);
}

/* put_reply_held() for a reply that promises durability or shows a job. Once
 * the log has failed, such a reply with nothing to wait for (the log refused
 * its record, or the job shown may be one whose record it lost) gets its
 * error reply fail instead; one that waits gets it when the failure is seen
 * (fail_holds). Returns false if it gave fail. */
static bool put_reply_promised(struct conn *c, const struct reply *r, uint64_t seq,
                               enum rcode fail)
{
    if (!seq && server_log_failed(c->srv)) {
        struct reply err = {.code = fail};
        put_reply(c, &err);
        return false;
    }
    put_reply_held(c, r, seq, fail);
    return true;
}

/* The log failed: every held reply becomes its error reply; the replies
 * between them, which promised nothing, stay. */
static void fail_holds(struct conn *c)
{
    struct buf nb;
    buf_init(&nb);
    uint64_t pos = c->sent;
    const char *base = buf_head(&c->out);
    for (size_t i = c->hfirst; i < c->nholds; i++) {
        const struct hold *h = &c->holds[i];
        xcheck(buf_append(&nb, base + (pos - c->sent), (size_t)(h->start - pos)), "reply");
        struct reply r = {.code = h->fail};
        xcheck(bs_write_reply(&nb, &r), "reply");
        pos = h->end;
    }
    uint64_t end = c->sent + buf_used(&c->out);
    xcheck(buf_append(&nb, base + (pos - c->sent), (size_t)(end - pos)), "reply");
    buf_destroy(&c->out);
    c->out = nb;
    c->hfirst = c->nholds = 0;
}

/* Whether op's reply promises that a change is durable. */
static bool durable_op(enum op op)
{
    switch (op) {
    case OP_PUT:
    case OP_DELETE:
    case OP_RELEASE:
    case OP_BURY:
    case OP_KICK:
    case OP_KICK_JOB:
    case OP_PAUSE_TUBE:
        return true;
    default:
        return false;
    }
}

/* Whether op's reply shows a job, whose records the log may not hold yet:
 * such a reply waits for everything appended so far, or a crash could take
 * back a job (and its id) that a client has seen. */
static bool reveals_job(enum op op)
{
    switch (op) {
    case OP_RESERVE:
    case OP_RESERVE_TIMEOUT:
    case OP_RESERVE_JOB:
    case OP_PEEK:
    case OP_PEEK_READY:
    case OP_PEEK_DELAYED:
    case OP_PEEK_BURIED:
    case OP_STATS_JOB:
        return true;
    default:
        return false;
    }
}

void conn_deliver(struct conn *c, const struct reply *r)
{
    if (c->closed)
        return;
    if (r->code == R_NONE || r->code == R_CLOSE) {
        dk_log(DK_LOG_WARN, "fd %d: engine delivered reply code %d", c->fd, (int)r->code);
        return;
    }
    /* A reserve that waited: the job may have been put a moment ago. */
    uint64_t seq = server_hold_before(c->srv, c->srv->reveal_seq);
    if (r->code == R_RESERVED)
        put_reply_promised(c, r, seq, R_INTERNAL_ERROR);
    else
        put_reply_held(c, r, seq, R_INTERNAL_ERROR);
    c->waiting = false;
    /* We are inside an engine call: resume this connection from the loop. */
    event_active(c->ev_work, EV_TIMEOUT, 0);
}

/* quit: the session ends now (its reserved jobs go back to ready); replies
 * to earlier commands are still written before the socket closes. */
static void quit(struct conn *c, uint64_t now)
{
    engine_session_close(c->srv->engine, c->s, now);
    c->s = NULL;
    c->closing = true;
    buf_clear(&c->in); /* input after quit is never read */
    give_back(c->srv, &c->in);
}

/* Answers op with its error reply code, counted like the engine's errors. */
static void refuse(struct conn *c, enum op op, enum rcode code)
{
    struct reply r = {.code = code};
    engine_count_error(c->srv->engine, c->s, op, code);
    put_reply(c, &r);
}

static void exec(struct conn *c, const struct cmd *cmd)
{
    struct reply r;
    uint64_t now = server_catch_up(c->srv);
    bool durable = durable_op(cmd->op);
    /* Disk-full and I/O errors look like this to beanstalkd clients. */
    enum rcode fail = cmd->op == OP_PUT ? R_OUT_OF_MEMORY : R_INTERNAL_ERROR;

    dk_log(DK_LOG_DEBUG, "fd %d: %s", c->fd, bs_op_name(cmd->op));
    bool promises = durable || reveals_job(cmd->op);
    if ((promises && server_log_failed(c->srv)) ||
        (cmd->op == OP_PUT && server_low_space(c->srv))) {
        /* Nothing can be made durable, a job shown may be one whose record
         * the log lost, or the disk keeps its last space for deletes:
         * refuse rather than change memory only. */
        refuse(c, cmd->op, fail);
        return;
    }
    uint64_t before = server_appended(c->srv);
    uint64_t reveal = c->srv->reveal_seq;
    engine_exec(c->srv->engine, c->s, cmd, now, &r);
    if (r.code == R_NONE) {
        c->waiting = true;
    } else if (r.code == R_CLOSE) {
        quit(c, now);
    } else if (!promises) {
        put_reply(c, &r);
    } else {
        /* The log may have failed during the command: refused the command's
         * record, or the writer failed meanwhile. */
        uint64_t seq = durable ? server_hold_seq(c->srv, before)
                               : server_hold_before(c->srv, reveal);
        if (!put_reply_promised(c, &r, seq, fail))
            engine_count_error(c->srv->engine, c->s, cmd->op, fail);
    }
}

/* Lets go of the holds the log now covers (up to seq synced). */
static void drop_covered(struct conn *c, uint64_t synced)
{
    while (c->hfirst < c->nholds && c->holds[c->hfirst].seq <= synced)
        c->hfirst++;
    if (c->hfirst == c->nholds)
        c->hfirst = c->nholds = 0;
}

bool conn_release_held(struct conn *c, uint64_t synced, int err)
{
    if (c->closed) {
        c->hfirst = c->nholds = 0;
        return true;
    }
    if (err)
        fail_holds(c);
    drop_covered(c, synced);
    run(c);
    return c->closed || c->nholds == 0;
}

/* Under fsync=never and MS, held replies wait only for a write(2) of the
 * log, which the loop's thread mostly makes itself: make it now, so that
 * this connection's replies go out without waiting for the end of the loop
 * turn. (The server's list of held connections drops c at the turn's end.) */
static void release_written(struct conn *c)
{
    drop_covered(c, server_write_log(c->srv));
}

/* Parses and runs at most one command from the input buffer.
 * Returns true if it made progress and may be called again, false when it
 * needs more input. */
static bool step(struct conn *c)
{
    struct cmd cmd = {.op = OP_COUNT};
    enum rcode err = R_INTERNAL_ERROR;
    enum bs_status st = BS_MORE;
    size_t used = 0;

    if (buf_used(&c->in) > 0)
        st = bs_parse(&c->parser, buf_head(&c->in), buf_used(&c->in), &used, &cmd, &err);
    if (st == BS_CMD) {
        exec(c, &cmd);
    } else if (st == BS_ERR) {
        /* A rejected put still counts in cmd-put, as in beanstalkd. */
        engine_count_error(c->srv->engine, c->s, cmd.op, err);
        struct reply r = {.code = err};
        put_reply(c, &r);
    }
    /* cmd borrowed the input until now. quit() may have dropped it. */
    if (buf_used(&c->in) > 0)
        buf_consume(&c->in, used);
    if (st != BS_MORE)
        return true;
    if (used > 0 && buf_used(&c->in) > 0)
        return true;           /* skipped bytes (too-long line, too-big body); go on */
    if (c->eof)
        c->closing = true;     /* the command can never be completed */
    else if (!bs_parser_in_body(&c->parser) && buf_used(&c->in) >= CONN_IN_MAX) {
        dk_log(DK_LOG_WARN, "fd %d: parser stalled on %zu bytes", c->fd, buf_used(&c->in));
        c->closing = true;     /* NEVER: the parser promises progress within a line */
    }
    return false;
}

/* Runs buffered commands until one waits (reserve), the input runs out, the
 * client quits, or the output is too full to take more. A waiting reserve of
 * a half-closed client is answered TIMED_OUT via engine_session_hangup(). */
static void process(struct conn *c)
{
    while (!c->closing && !out_full(c)) {
        if (c->waiting) {
            if (!c->eof)
                return;
            engine_session_hangup(c->srv->engine, c->s, server_now());
            if (c->waiting) {
                dk_log(DK_LOG_WARN, "fd %d: hangup left the reserve waiting", c->fd);
                return;
            }
            continue;
        }
        if (!step(c))
            return;
    }
}

/* Writes as much output as the socket takes. Closes c on a write error. */
/* Bytes of output that may be written now: held replies, and all that
 * follows them, wait for the log. */
static size_t writable(const struct conn *c)
{
    if (c->hfirst < c->nholds)
        return (size_t)(c->holds[c->hfirst].start - c->sent);
    return buf_used(&c->out);
}

static void flush(struct conn *c)
{
    for (;;) {
        size_t ready = writable(c);
        if (ready == 0)
            break;
        ssize_t n = write_some(c->fd, buf_head(&c->out), ready);
        if (n > 0) {
            buf_consume(&c->out, (size_t)n);
            c->sent += (uint64_t)n;
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        dk_log(DK_LOG_INFO, "fd %d: write: %s", c->fd, n < 0 ? strerror(errno) : "no progress");
        conn_close(c, server_now());
        return;
    }
    trim(&c->out);
}

/* Reads one chunk into the input buffer. Sets eof at end of stream; closes c
 * on a read error (the client reset the connection). */
static void read_input(struct conn *c)
{
    size_t limit = in_limit(c);
    size_t used = buf_used(&c->in);

    if (used >= limit)
        return;
    size_t want = limit - used;
    size_t chunk = bs_parser_in_body(&c->parser) ? CONN_READ_CHUNK : CONN_LINE_BUF;
    if (want > chunk)
        want = chunk;
    if (!c->in.data && c->srv->npool) {
        c->in.data = c->srv->in_pool[--c->srv->npool];
        c->in.cap = CONN_LINE_BUF;
    }
    xcheck(buf_reserve(&c->in, want), "input buffer");

    ssize_t n = read_some(c->fd, c->in.data + c->in.len, want);
    if (n > 0) {
        c->in.len += (size_t)n;
    } else if (n == 0) {
        c->eof = true;
    } else if (errno != EAGAIN && errno != EWOULDBLOCK) {
        dk_log(DK_LOG_INFO, "fd %d: read: %s", c->fd, strerror(errno));
        conn_close(c, server_now());
    }
}

/* Adds or removes ev so that it is pending exactly when on is true. */
static void want(struct event *ev, bool *pending, bool on)
{
    if (on == *pending)
        return;
    if (on)
        event_add(ev, NULL);
    else
        event_del(ev);
    *pending = on;
}

/* Chooses the events to wait for: read while input is welcome, write while
 * output is pending. A closing connection with nothing left to write is
 * closed here. */
static void update(struct conn *c)
{
    if (c->closing && buf_used(&c->out) == 0) {
        conn_close(c, server_now());
        return;
    }
    bool rd = !c->eof && !c->closing && !out_full(c) && buf_used(&c->in) < in_limit(c);
    want(c->ev_read, &c->reading, rd);
    /* Bytes behind a held reply cannot go yet: waiting for "writable" then
     * would only spin the loop until the log covers them. */
    want(c->ev_write, &c->writing, writable(c) > 0);
    /* An idle connection keeps no input buffer: thousands of them are normal. */
    if (buf_used(&c->in) == 0)
        give_back(c->srv, &c->in);
}

/* All the work c can do now; every event of a connection ends here. Each
 * engine call reads the clock afresh (server_now() never repeats), so the
 * engine sees time move forward from command to command. */
static void run(struct conn *c)
{
    if (!c->closed)
        process(c);
    if (!c->closed && c->hfirst < c->nholds)
        release_written(c);
    if (!c->closed)
        flush(c);
    if (!c->closed)
        update(c);
    server_rearm(c->srv);
}

static void on_read(evutil_socket_t fd, short what, void *arg)
{
    struct conn *c = arg;

    (void)fd;
    (void)what;
    read_input(c);
    run(c);
}

static void on_write(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    run(arg);
}

static void on_work(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    run(arg);
}
