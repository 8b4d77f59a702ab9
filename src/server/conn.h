/* conn.h -- one client connection: socket, input and output buffers, session.
 *
 * Owns: the client socket, its read/write/work events, the parser state, the
 * input buffer (bytes read but not yet parsed), the output buffer (reply bytes
 * not yet written) and the engine session.
 *
 * Lifecycle: conn_new() on accept; conn_close() when the client quits, hangs
 * up or errs: the session is closed at once (its reserved jobs go back to
 * ready), the socket is closed and the conn moves to the server's dead list;
 * server's reap event frees it later with conn_free(), after every callback
 * that might still hold a pointer to it has returned.
 *
 * Invariants:
 * - commands run strictly in order; while a reserve waits (R_NONE) no later
 *   command of this connection runs;
 * - the input buffer holds at most CONN_IN_MAX bytes, except while the parser
 *   is inside a put body, when it holds up to BS_LINE_MAX + max_job_size + 2;
 * - while more than server.out_cap bytes wait to be written, the connection
 *   neither reads nor runs commands (backpressure on slow readers);
 * - engine calls happen only from loop callbacks, never from the deliver hook;
 * - with a log, a reply to put, delete, release, bury, kick, kick-job or
 *   pause-tube, and everything after it, is written only once the log covers
 *   its record: synced under fsync=always, written to the kernel under never
 *   and MS (so that a crash of docketd alone takes nothing back); a reply
 *   that shows a job (reserve, peek, stats-job) waits for every record
 *   appended before it, so no client ever sees a job, or its id, that a crash
 *   could take back; if the log fails first, an error reply replaces a held
 *   one.
 */
#ifndef DK_CONN_H
#define DK_CONN_H

#include <stdbool.h>
#include <stdint.h>

#include "../common/buf.h"
#include "../common/cmd.h"
#include "../proto/beanstalk.h"

#define CONN_IN_MAX (64 * 1024)        /* bytes of pipelined input buffered outside a put body */
#define CONN_READ_CHUNK (256 * 1024)   /* bytes asked of one read(2) */
#define CONN_KEEP_BUF (16 * 1024)      /* bytes: an empty output buffer larger than this is freed */
#define CONN_LINE_BUF 4096             /* bytes: the input buffer between commands */

struct server;
struct session;

/* A reply that may not be written before the log covers the record it
 * reports on (see above). Offsets count every byte ever queued on the conn. */
struct hold {
    uint64_t start, end;       /* the reply's bytes in the output stream */
    uint64_t seq;              /* log record that must be covered first */
    enum rcode fail;           /* the reply sent instead if the log fails */
};

struct conn {
    struct server *srv;
    int fd;                    /* -1 once closed */
    struct session *s;         /* NULL once the session is closed */
    struct bs_parser parser;
    struct buf in;             /* read, not yet consumed by the parser */
    struct buf out;            /* reply bytes not yet written */
    uint64_t sent;             /* bytes written so far: out's first byte is at this offset */
    struct hold *holds;        /* replies waiting for the log, in output order */
    size_t hfirst, nholds, capholds;
    bool held;                 /* on server.held */
    struct conn *hnext;        /* server.held */
    struct event *ev_read;     /* persistent EV_READ, added while we want input */
    struct event *ev_write;    /* persistent EV_WRITE, added while output is pending */
    struct event *ev_work;     /* activated to resume work from the loop */
    bool reading;              /* ev_read is added */
    bool writing;              /* ev_write is added */
    bool waiting;              /* a reserve waits for the deliver hook */
    bool eof;                  /* the client half-closed: no more input */
    bool closing;              /* no more commands: flush the output, then close */
    bool closed;               /* on the dead list */
    struct conn *prev, *next;  /* server.conns or server.dead */
};

/* Takes ownership of fd (non-blocking). Registers the connection with the
 * server and opens its engine session. */
struct conn *conn_new(struct server *srv, int fd, uint64_t now);

/* Closes the session and the socket and moves c to the dead list. Safe to
 * call more than once and from c's own callbacks; c stays valid until the
 * server's reap event frees it. */
void conn_close(struct conn *c, uint64_t now);

/* Frees a closed connection. Only the server's reap and shutdown call this. */
void conn_free(struct conn *c);

/* Frees the server's pool of idle input buffers (at shutdown). */
void conn_pool_free(struct server *srv);

/* The log covers records up to seq `synced` (wal_synced()), or failed with
 * errno err: writes the replies that may go now, or turns held replies into
 * errors. Returns true when nothing is held any more. */
bool conn_release_held(struct conn *c, uint64_t synced, int err);

/* The engine's deliver hook for c: appends r's bytes to the output and
 * schedules c to write and resume its input from the loop. */
void conn_deliver(struct conn *c, const struct reply *r);

#endif
