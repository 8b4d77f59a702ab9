/* wire.h -- one blocking client connection of docket-bench, in either of the
 * two protocols it compares: the beanstalkd text protocol (docketd,
 * beanstalkd) and RESP (redis-server, reliable-queue pattern).
 *
 * Owns: the socket, the request bytes not yet written and the reply bytes
 * read but not yet parsed. Requests are appended with wire_put(),
 * wire_reserve() and friends and go out together at wire_flush(), so a
 * caller pipelines by appending several before one flush.
 *
 * The queue operations map onto the two protocols like this:
 *
 *   operation  beanstalkd                      Redis
 *   put        put 0 0 TTR N + body            LPUSH queue body
 *   reserve    reserve-with-timeout S          BLMOVE queue proc RIGHT LEFT S
 *                                              (LMOVE queue proc RIGHT LEFT when S = 0)
 *   delete     delete ID                       LREM proc 1 body
 *
 * where proc is the consumer's own processing list. wire_read() folds both
 * protocols' replies into one struct wire_reply.
 *
 * Not thread-safe, except that one thread may call the request functions and
 * wire_flush() while another calls wire_read() (the two halves share only
 * the socket).
 */
#ifndef DK_BENCH_WIRE_H
#define DK_BENCH_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum wire_proto {
    WIRE_BEANSTALK,
    WIRE_REDIS
};

enum wire_kind {
    WIRE_INSERTED,             /* beanstalkd INSERTED id */
    WIRE_JOB,                  /* beanstalkd RESERVED id n + body; Redis bulk string */
    WIRE_DELETED,              /* beanstalkd DELETED */
    WIRE_EMPTY,                /* beanstalkd TIMED_OUT; Redis nil */
    WIRE_INT,                  /* Redis integer (LPUSH length, LREM count) */
    WIRE_OK,                   /* USING, WATCHING, Redis +status */
    WIRE_ERROR                 /* anything else; text in line */
};

struct wire_reply {
    enum wire_kind kind;
    uint64_t id;               /* WIRE_INSERTED, WIRE_JOB (beanstalkd): job id */
    int64_t num;               /* WIRE_INT */
    const char *body;          /* WIRE_JOB: borrows the wire's buffer until the next wire_read() */
    size_t len;                /* WIRE_JOB: body bytes */
    char line[80];             /* WIRE_ERROR, WIRE_OK: the reply line, cut short */
};

struct wire {
    int fd;                    /* -1 when closed */
    enum wire_proto proto;
    char *in;                  /* reply bytes: in[ioff..ilen) not yet parsed */
    size_t ioff, ilen, icap;
    char *out;                 /* request bytes not yet written */
    size_t olen, ocap;
};

/* Connects to host:port (numeric IPv4 or IPv6) with TCP_NODELAY. Returns 0,
 * or -errno. Close with wire_close(). */
int wire_connect(struct wire *w, const char *host, int port, enum wire_proto proto);
void wire_close(struct wire *w);

/* Appends a put of body to the queue (beanstalkd: the tube chosen with
 * wire_use(); Redis: the list named queue). */
void wire_put(struct wire *w, const char *queue, const void *body, size_t len, unsigned ttr);
/* Appends a reserve that waits at most timeout_s seconds (0: do not wait). */
void wire_reserve(struct wire *w, const char *queue, const char *proc, unsigned timeout_s);
/* Appends the delete of a reserved job: by id (beanstalkd) or by its body
 * from the processing list proc (Redis). */
void wire_delete(struct wire *w, const char *proc, uint64_t id, const void *body, size_t len);
/* Beanstalkd: appends use/watch/ignore so that puts go to and reserves come
 * from tube only. Redis: appends nothing. Returns the number of replies to
 * read (all WIRE_OK). */
int wire_use(struct wire *w, const char *tube, bool produce, bool consume);
/* Appends a command whose reply is WIRE_OK and changes nothing (a marker). */
void wire_noop(struct wire *w);

/* Writes every appended request. Returns 0, or -errno (-EPIPE on a closed peer). */
int wire_flush(struct wire *w);
/* Reads one reply, blocking. Returns 0, -EPROTO on bytes that are not a
 * reply, -ECONNRESET on end of stream, or -errno. */
int wire_read(struct wire *w, struct wire_reply *r);

/* True if r acknowledges a put (INSERTED, or an LPUSH length). */
bool wire_put_ok(const struct wire_reply *r);
/* True if r acknowledges a delete (DELETED, or LREM removed one). */
bool wire_delete_ok(const struct wire_reply *r);

#endif
