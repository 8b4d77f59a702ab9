/* bench.c -- docket-bench: a load generator for beanstalkd-protocol servers
 * (docketd, beanstalkd) and for Redis used as a reliable queue.
 *
 * Workloads (-w):
 *   put    P producers put for -d seconds (or -n jobs), D requests pipelined
 *          per connection; then C fresh consumers drain the queue with
 *          reserve-with-timeout 0 + delete. Two results: put, drain. With
 *          -C 0 there is no drain: the jobs stay queued (bench/run.sh's
 *          memory case measures the server's RSS with them).
 *   mixed  P producers and C consumers at once. Result "mixed": jobs consumed
 *          per second and enqueue-to-dequeue latency (the producer's send
 *          time travels in the body); "mixed-put": the producers' side.
 *   rtt    one connection: put, reserve, delete, one request at a time.
 *   rate   P producers put at a fixed total rate -R on an open-loop schedule;
 *          C consumers reserve + delete. Latencies are measured from each
 *          job's scheduled send time, so a server that falls behind is
 *          charged for the wait (no coordinated omission).
 *
 * Exactly-once check: every body starts with a unique sequence number and a
 * CLOCK_MONOTONIC send time (32 hex digits), padded to -s bytes. Producers
 * mark a sequence number acknowledged when its put is; consumers count every
 * reservation of it. At the end every acknowledged job must have been
 * reserved exactly once: duplicates, missing and unexpected (reserved, never
 * acknowledged) jobs and protocol errors fail the run (exit status 1).
 * A put-only run (-C 0) reserves nothing: it checks that every put was
 * acknowledged and reports the jobs left queued.
 *
 * Output: one "result key=value ..." line per measured phase and one
 * "check key=value ..." line per run, on stdout; latencies in microseconds.
 *
 * Threads: one per connection, blocking sockets (plus a reply reader per
 * producer in the rate workload). The machine's cores are shared with the
 * server under test, which docs/benchmarks.md points out.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "lat.h"
#include "wire.h"

#define SEQ_CAP (1u << 26)     /* sequence numbers one run can hand out */
#define HEAD_LEN 32            /* body bytes holding the sequence number and send time */
#define TTR 600                /* s: long enough that no job times out during a run */
#define STALL_NS (10 * NS)     /* no consumption for this long after producers end: give up */
#define NS 1000000000ull

enum workload {
    W_PUT,
    W_MIXED,
    W_RTT,
    W_RATE
};

static const char *const workload_names[] = {"put", "mixed", "rtt", "rate"};

struct opts {
    const char *host;
    int port;
    enum wire_proto proto;
    enum workload wl;
    int producers;
    int consumers;
    int pipeline;              /* requests in flight per connection */
    size_t size;               /* body bytes */
    double seconds;            /* length of the timed phase */
    uint64_t jobs;             /* -n: jobs instead of seconds; 0 if unset */
    double rate;               /* jobs/s for W_RATE */
    const char *tube;          /* beanstalkd tube, Redis list */
};

/* Shared by the threads of one run. */
struct run {
    const struct opts *o;
    _Atomic uint64_t next_seq; /* next sequence number to hand out */
    _Atomic uint64_t acked;    /* puts acknowledged */
    _Atomic uint64_t consumed; /* reservations of our jobs, duplicates included */
    _Atomic uint64_t errors;   /* unexpected replies and broken connections */
    _Atomic uint64_t foreign;  /* reserved bodies that are not ours */
    _Atomic uint64_t redelivered; /* reserved again after the stop (see consume()) */
    _Atomic bool stop;         /* consumers (and everyone, after an error) must stop */
    _Atomic unsigned char *acks;  /* per sequence number: put acknowledged */
    _Atomic unsigned char *seen;  /* per sequence number: reservations */
    uint64_t limit;            /* sequence numbers below this may be used */
    uint64_t t0;               /* ns: start of the timed phase */
    uint64_t deadline;         /* ns: producers stop; 0 with -n */
    pthread_barrier_t ready;   /* workers connected */
    pthread_barrier_t go;      /* t0 and deadline set */
    pthread_mutex_t lock;      /* guards err */
    char err[256];             /* the first error, for the report */
};

/* A rate producer's puts, handed from its sender thread to its reader
 * thread in send order. */
struct sched {
    uint64_t *at;              /* ns: scheduled send time of the i-th put */
    uint64_t *seq;             /* sequence number of the i-th put */
    size_t cap;
    _Atomic size_t n;          /* entries written */
};

struct worker {
    struct run *run;
    void *(*fn)(void *);       /* the thread's body: producer, consumer, ... */
    pthread_t th;
    pthread_t reader;          /* rate producers: reads the put replies */
    int idx;
    bool consumer;
    unsigned reserve_timeout;  /* s: 0 while draining a full queue */
    struct wire w;
    struct lat lat;            /* see the phase that reports it */
    uint64_t done;             /* jobs completed */
    uint64_t t_last;           /* ns: last completion */
    struct sched sched;
    _Atomic bool connected;
    char proc[128];            /* Redis processing list */
};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * NS + (uint64_t)ts.tv_nsec;
}

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n, size);
    if (!p) {
        fprintf(stderr, "docket-bench: out of memory\n");
        exit(1);
    }
    return p;
}

/* Records an error: counts it, keeps the first message, and stops the run. */
static void fail(struct run *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void fail(struct run *r, const char *fmt, ...)
{
    va_list ap;

    atomic_fetch_add(&r->errors, 1);
    pthread_mutex_lock(&r->lock);
    if (!r->err[0]) {
        va_start(ap, fmt);
        vsnprintf(r->err, sizeof r->err, fmt, ap);
        va_end(ap);
    }
    pthread_mutex_unlock(&r->lock);
    atomic_store(&r->stop, true);
}

/* Fills body: 16 hex digits of seq, 16 of the send time, then 'x' padding. */
static void make_body(char *body, size_t size, uint64_t seq, uint64_t ts)
{
    static const char hex[] = "0123456789abcdef";

    for (int i = 0; i < 16; i++) {
        body[15 - i] = hex[(seq >> (4 * i)) & 15];
        body[31 - i] = hex[(ts >> (4 * i)) & 15];
    }
    memset(body + HEAD_LEN, 'x', size - HEAD_LEN);
}

static int hexval(const char *s, uint64_t *out)
{
    uint64_t v = 0;

    for (int i = 0; i < 16; i++) {
        char c = s[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (d < 0)
            return -1;
        v = v << 4 | (uint64_t)d;
    }
    *out = v;
    return 0;
}

/* Counts one reservation of body. Returns its send time, or 0 if the body
 * is not one of ours (counted as foreign).
 *
 * Once the run stops, every acknowledged job has been reserved. The main
 * thread then shuts the consumers' sockets down one by one, and the server
 * gives the jobs a closed consumer held but had not yet deleted to a consumer
 * still waiting in reserve: such a second reservation is counted apart, as
 * redelivered, not as a duplicate. */
static uint64_t consume(struct run *r, const char *body, size_t len)
{
    uint64_t seq, ts;

    if (len < HEAD_LEN || hexval(body, &seq) < 0 || hexval(body + 16, &ts) < 0 ||
        seq >= r->limit) {
        atomic_fetch_add(&r->foreign, 1);
        return 0;
    }
    if (atomic_load(&r->stop) && atomic_load_explicit(&r->seen[seq], memory_order_relaxed)) {
        atomic_fetch_add(&r->redelivered, 1);
        return 0;
    }
    atomic_fetch_add_explicit(&r->seen[seq], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&r->consumed, 1, memory_order_relaxed);
    return ts;
}

static void acked(struct run *r, uint64_t seq)
{
    atomic_store_explicit(&r->acks[seq], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&r->acked, 1, memory_order_relaxed);
}

/* Connects and selects the tube. Returns 0, or -1 after fail(). */
static int setup(struct worker *k, bool produce, bool consume_)
{
    struct run *r = k->run;
    const struct opts *o = r->o;
    struct wire_reply rep;

    int rc = wire_connect(&k->w, o->host, o->port, o->proto);
    if (rc < 0) {
        fail(r, "connect %s:%d: %s", o->host, o->port, strerror(-rc));
        return -1;
    }
    atomic_store(&k->connected, true);
    int n = wire_use(&k->w, o->tube, produce, consume_);
    if (n && (rc = wire_flush(&k->w)) < 0) {
        fail(r, "setup: %s", strerror(-rc));
        return -1;
    }
    for (int i = 0; i < n; i++) {
        rc = wire_read(&k->w, &rep);
        if (rc < 0 || rep.kind != WIRE_OK) {
            fail(r, "setup: %s", rc < 0 ? strerror(-rc) : rep.line);
            return -1;
        }
    }
    return 0;
}

/* Waits for the start signal. Returns false if the run stopped meanwhile. */
static bool start(struct worker *k)
{
    pthread_barrier_wait(&k->run->ready);
    pthread_barrier_wait(&k->run->go);
    return !atomic_load(&k->run->stop);
}

/* Reports an I/O or protocol failure of k, unless the run is stopping (the
 * main thread shuts consumer sockets down to end them). */
static void io_fail(struct worker *k, const char *what, int rc, const struct wire_reply *rep)
{
    if (atomic_load(&k->run->stop))
        return;
    fail(k->run, "%s %d: %s: %s", k->consumer ? "consumer" : "producer", k->idx, what,
         rc < 0 ? strerror(-rc) : rep->line);
}

/* Closed-loop producer: puts `pipeline` jobs, reads their replies, again.
 * Latency: from the send of the batch to each reply. */
static void *producer(void *arg)
{
    struct worker *k = arg;
    struct run *r = k->run;
    const struct opts *o = r->o;
    char *body = xcalloc(1, o->size);
    uint64_t *seqs = xcalloc((size_t)o->pipeline, sizeof *seqs);
    struct wire_reply rep;
    int ok = setup(k, true, false);

    if (!start(k) || ok < 0)
        goto out;
    for (;;) {
        uint64_t t = now_ns();
        int n = 0;
        if (atomic_load(&r->stop) || (r->deadline && t >= r->deadline))
            break;
        while (n < o->pipeline) {
            uint64_t seq = atomic_fetch_add(&r->next_seq, 1);
            if (seq >= r->limit)
                break;
            make_body(body, o->size, seq, t);
            wire_put(&k->w, o->tube, body, o->size, TTR);
            seqs[n++] = seq;
        }
        if (n == 0)
            break;
        int rc = wire_flush(&k->w);
        if (rc < 0) {
            io_fail(k, "put", rc, NULL);
            break;
        }
        for (int i = 0; i < n; i++) {
            rc = wire_read(&k->w, &rep);
            if (rc < 0 || !wire_put_ok(&rep)) {
                io_fail(k, "put", rc, &rep);
                goto out;
            }
            uint64_t t2 = now_ns();
            acked(r, seqs[i]);
            lat_add(&k->lat, t2 - t);
            k->done++;
            k->t_last = t2;
        }
    }
out:
    free(body);
    free(seqs);
    return NULL;
}

/* A reserved job waiting for its delete. */
struct pending {
    uint64_t id;
    uint64_t t_res;            /* ns: its reserve was sent */
    char *body;                /* Redis: the body, which LREM needs */
    size_t len;
};

/* Reads the replies to n deletes. Latency (when record): from each job's
 * reserve to its delete's reply. Returns 0, or -1 on failure. */
static int read_deletes(struct worker *k, struct pending *p, int n, bool record)
{
    struct wire_reply rep;

    for (int i = 0; i < n; i++) {
        int rc = wire_read(&k->w, &rep);
        if (rc < 0 || !wire_delete_ok(&rep)) {
            io_fail(k, "delete", rc, &rep);
            return -1;
        }
        uint64_t t = now_ns();
        if (record)
            lat_add(&k->lat, t - p[i].t_res);
    }
    return 0;
}

static void send_deletes(struct worker *k, struct pending *p, int n)
{
    for (int i = 0; i < n; i++)
        wire_delete(&k->w, k->proc, p[i].id, p[i].body, p[i].len);
}

/* Consumer: reserves `pipeline` jobs at a time and deletes them. With a
 * pipeline of 1 it behaves like a plain worker (reserve, wait, delete, wait);
 * deeper, it sends the deletes of one batch with the reserves of the next.
 * Draining (reserve_timeout 0) it stops at the first empty reply; otherwise
 * when the main thread sets stop. Latency: enqueue-to-dequeue while mixed,
 * reserve-to-deleted while draining. */
static void *consumer(void *arg)
{
    struct worker *k = arg;
    struct run *r = k->run;
    const struct opts *o = r->o;
    int depth = o->pipeline;
    bool drain = k->reserve_timeout == 0;
    struct pending *p = xcalloc((size_t)depth, sizeof *p);
    struct wire_reply rep;
    int np = 0, rc;
    int ok = setup(k, false, true);

    for (int i = 0; i < depth; i++)
        p[i].body = xcalloc(1, o->size + HEAD_LEN);
    if (!start(k) || ok < 0)
        goto out;
    for (;;) {
        bool empty = false;
        if (np && depth == 1) {
            send_deletes(k, p, np);
            if ((rc = wire_flush(&k->w)) < 0) {
                io_fail(k, "delete", rc, NULL);
                break;
            }
            if (read_deletes(k, p, np, drain) < 0)
                break;
            np = 0;
        }
        if (atomic_load(&r->stop))
            break;
        int ndel = np;
        send_deletes(k, p, ndel);
        for (int i = 0; i < depth; i++)
            wire_reserve(&k->w, o->tube, k->proc, k->reserve_timeout);
        uint64_t t = now_ns();
        if ((rc = wire_flush(&k->w)) < 0) {
            io_fail(k, "reserve", rc, NULL);
            break;
        }
        if (read_deletes(k, p, ndel, drain) < 0)
            break;
        np = 0;
        for (int i = 0; i < depth; i++) {
            rc = wire_read(&k->w, &rep);
            if (rc < 0) {
                io_fail(k, "reserve", rc, &rep);
                goto out;
            }
            if (rep.kind == WIRE_EMPTY) {
                empty = true;
                continue;
            }
            if (rep.kind != WIRE_JOB) {
                io_fail(k, "reserve", 0, &rep);
                goto out;
            }
            uint64_t t2 = now_ns();
            uint64_t sent = consume(r, rep.body, rep.len);
            if (!drain && sent)
                lat_add(&k->lat, t2 > sent ? t2 - sent : 0);
            if (sent) {
                k->done++;
                k->t_last = t2;
            }
            p[np].id = rep.id;
            p[np].t_res = t;
            p[np].len = 0;
            if (o->proto == WIRE_REDIS) {
                size_t n = rep.len < o->size + HEAD_LEN ? rep.len : o->size + HEAD_LEN;
                memcpy(p[np].body, rep.body, n);
                p[np].len = n;
            }
            np++;
        }
        if (drain && empty)
            break;
    }
    if (np && drain) { /* the last batch's deletes */
        send_deletes(k, p, np);
        if ((rc = wire_flush(&k->w)) < 0)
            io_fail(k, "delete", rc, NULL);
        else
            read_deletes(k, p, np, drain);
    }
out:
    for (int i = 0; i < depth; i++)
        free(p[i].body);
    free(p);
    return NULL;
}

/* Rate producer, reader half: matches put replies to scheduled send times.
 * The sender ends its stream with a no-op, whose reply ends this thread. */
static void *rate_reader(void *arg)
{
    struct worker *k = arg;
    struct run *r = k->run;
    struct wire_reply rep;
    size_t i = 0;

    for (;;) {
        int rc = wire_read(&k->w, &rep);
        if (rc < 0) {
            io_fail(k, "put", rc, &rep);
            break;
        }
        if (rep.kind == WIRE_OK)
            break;
        if (!wire_put_ok(&rep) || i >= atomic_load_explicit(&k->sched.n, memory_order_acquire)) {
            io_fail(k, "put", 0, &rep);
            break;
        }
        uint64_t t = now_ns();
        uint64_t at = k->sched.at[i];
        acked(r, k->sched.seq[i]);
        lat_add(&k->lat, t > at ? t - at : 0);
        k->done++;
        k->t_last = t;
        i++;
    }
    return NULL;
}

static void sleep_until(uint64_t t)
{
    struct timespec ts = {.tv_sec = (time_t)(t / NS), .tv_nsec = (long)(t % NS)};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
        ;
}

/* Rate producer, sender half: puts on a fixed schedule, each job stamped
 * with its scheduled time; late puts are sent at once, never skipped. */
static void *rate_producer(void *arg)
{
    struct worker *k = arg;
    struct run *r = k->run;
    const struct opts *o = r->o;
    char *body = xcalloc(1, o->size);
    uint64_t interval = (uint64_t)((double)NS * o->producers / o->rate);
    bool reading = false;
    int ok = setup(k, true, false);

    if (ok == 0 && !(reading = pthread_create(&k->reader, NULL, rate_reader, k) == 0))
        fail(r, "producer %d: cannot start its reply reader", k->idx);
    if (!start(k) || ok < 0 || !reading)
        goto out;
    uint64_t next = r->t0 + interval * (uint64_t)k->idx / (uint64_t)o->producers;
    while (next < r->deadline && !atomic_load(&r->stop)) {
        sleep_until(next);
        uint64_t t = now_ns();
        size_t n = atomic_load_explicit(&k->sched.n, memory_order_relaxed);
        while (next <= t && next < r->deadline && n < k->sched.cap) {
            uint64_t seq = atomic_fetch_add(&r->next_seq, 1);
            if (seq >= r->limit)
                break;
            make_body(body, o->size, seq, next);
            wire_put(&k->w, o->tube, body, o->size, TTR);
            k->sched.at[n] = next;
            k->sched.seq[n] = seq;
            n++;
            next += interval;
        }
        atomic_store_explicit(&k->sched.n, n, memory_order_release);
        if (n >= k->sched.cap)
            break;
        int rc = wire_flush(&k->w);
        if (rc < 0) {
            io_fail(k, "put", rc, NULL);
            break;
        }
    }
    wire_noop(&k->w);
    if (wire_flush(&k->w) < 0)
        shutdown(k->w.fd, SHUT_RDWR); /* the reader must not wait for the no-op */
out:
    if (reading)
        pthread_join(k->reader, NULL);
    free(body);
    return NULL;
}

/* One connection, one request at a time: put, reserve, delete. */
static void *rtt_worker(void *arg)
{
    struct worker *k = arg;
    struct run *r = k->run;
    const struct opts *o = r->o;
    char *body = xcalloc(1, o->size);
    struct wire_reply rep;
    int ok = setup(k, true, true);

    if (!start(k) || ok < 0)
        goto out;
    for (;;) {
        uint64_t t = now_ns();
        if (atomic_load(&r->stop) || (r->deadline && t >= r->deadline))
            break;
        uint64_t seq = atomic_fetch_add(&r->next_seq, 1);
        if (seq >= r->limit)
            break;
        make_body(body, o->size, seq, t);
        wire_put(&k->w, o->tube, body, o->size, TTR);
        int rc = wire_flush(&k->w);
        if (rc < 0 || (rc = wire_read(&k->w, &rep)) < 0 || !wire_put_ok(&rep)) {
            io_fail(k, "put", rc, &rep);
            break;
        }
        acked(r, seq);
        wire_reserve(&k->w, o->tube, k->proc, 1);
        rc = wire_flush(&k->w);
        if (rc < 0 || (rc = wire_read(&k->w, &rep)) < 0 || rep.kind != WIRE_JOB) {
            io_fail(k, "reserve", rc, &rep);
            break;
        }
        consume(r, rep.body, rep.len);
        wire_delete(&k->w, k->proc, rep.id, rep.body, rep.len); /* copies the body */
        rc = wire_flush(&k->w);
        if (rc < 0 || (rc = wire_read(&k->w, &rep)) < 0 || !wire_delete_ok(&rep)) {
            io_fail(k, "delete", rc, &rep);
            break;
        }
        uint64_t t2 = now_ns();
        lat_add(&k->lat, t2 - t);
        k->done++;
        k->t_last = t2;
    }
out:
    free(body);
    return NULL;
}

static const char *proto_name(const struct opts *o)
{
    return o->proto == WIRE_REDIS ? "redis" : "beanstalk";
}

/* Prints one result line: jobs over the time from t0 to the last completion. */
static void report(const struct run *r, const char *phase, struct worker *ws, int n, int prod,
                   int cons, const char *extra)
{
    const struct opts *o = r->o;
    struct lat all;
    struct lat_summary s;
    uint64_t jobs = 0, end = r->t0;

    lat_init(&all);
    for (int i = 0; i < n; i++) {
        jobs += ws[i].done;
        if (ws[i].t_last > end)
            end = ws[i].t_last;
        lat_merge(&all, &ws[i].lat);
    }
    lat_summarize(&all, &s);
    double secs = (double)(end - r->t0) / 1e9;
    printf("result phase=%s proto=%s producers=%d consumers=%d pipeline=%d size=%zu", phase,
           proto_name(o), prod, cons, o->pipeline, o->size);
    if (o->wl == W_RATE)
        printf(" target_per_s=%.0f", o->rate);
    if (extra)
        printf(" %s", extra);
    printf(" jobs=%" PRIu64 " secs=%.3f jobs_per_s=%.0f samples=%zu p50_us=%.1f p90_us=%.1f"
           " p99_us=%.1f p999_us=%.1f max_us=%.1f\n",
           jobs, secs, secs > 0 ? (double)jobs / secs : 0.0, s.n, s.p50, s.p90, s.p99, s.p999,
           s.max);
    fflush(stdout);
    lat_destroy(&all);
}

/* Prints the exactly-once check. Returns 0 if it passed. */
static int check(struct run *r)
{
    uint64_t n = atomic_load(&r->next_seq);
    uint64_t dup = 0, missing = 0, unexpected = 0, unacked = 0;
    bool put_only = r->o->consumers == 0;

    if (n > r->limit)
        n = r->limit;
    for (uint64_t i = 0; i < n; i++) {
        unsigned a = atomic_load_explicit(&r->acks[i], memory_order_relaxed);
        unsigned s = atomic_load_explicit(&r->seen[i], memory_order_relaxed);
        if (s > 1)
            dup += s - 1;
        if (a && !s)
            missing++;
        if (put_only && !a)
            unacked++;
        if (!a && s)
            unexpected++;
    }
    unexpected += atomic_load(&r->foreign);
    uint64_t errors = atomic_load(&r->errors);
    /* Put-only: the acknowledged jobs are queued, not missing; a put handed
     * out but never acknowledged is the failure (errors counts it too). */
    uint64_t queued = put_only ? missing : 0;
    if (put_only)
        missing = unacked;
    bool ok = !dup && !missing && !unexpected && !errors;
    printf("check workload=%s proto=%s acked=%" PRIu64 " consumed=%" PRIu64
           " duplicates=%" PRIu64 " missing=%" PRIu64 " unexpected=%" PRIu64 " errors=%" PRIu64
           " redelivered=%" PRIu64,
           workload_names[r->o->wl], proto_name(r->o), atomic_load(&r->acked),
           atomic_load(&r->consumed), dup, missing, unexpected, errors,
           atomic_load(&r->redelivered));
    if (put_only)
        printf(" queued=%" PRIu64, queued);
    printf(" status=%s\n", ok ? "ok" : "FAIL");
    if (r->err[0])
        fprintf(stderr, "docket-bench: %s\n", r->err);
    fflush(stdout);
    return ok ? 0 : -1;
}

/* Starts n workers, waits until they are connected, then sets t0 (and the
 * deadline if timed) and lets them go. */
static void launch(struct run *r, struct worker *ws, int n, bool timed)
{
    pthread_barrier_init(&r->ready, NULL, (unsigned)n + 1);
    pthread_barrier_init(&r->go, NULL, (unsigned)n + 1);
    for (int i = 0; i < n; i++) {
        if (pthread_create(&ws[i].th, NULL, ws[i].fn, &ws[i]) != 0) {
            fprintf(stderr, "docket-bench: pthread_create failed\n");
            exit(1);
        }
    }
    pthread_barrier_wait(&r->ready);
    r->t0 = now_ns();
    r->deadline = timed ? r->t0 + (uint64_t)(r->o->seconds * 1e9) : 0;
    pthread_barrier_wait(&r->go);
}

static void join(struct run *r, struct worker *ws, int n)
{
    for (int i = 0; i < n; i++)
        pthread_join(ws[i].th, NULL);
    pthread_barrier_destroy(&r->ready);
    pthread_barrier_destroy(&r->go);
}

/* n workers running fn; consumers reserve with timeout (s). Free with
 * free_workers(). */
static struct worker *workers(struct run *r, int n, void *(*fn)(void *), unsigned timeout)
{
    struct worker *ws = xcalloc((size_t)n, sizeof *ws);

    for (int i = 0; i < n; i++) {
        ws[i].run = r;
        ws[i].fn = fn;
        ws[i].idx = i;
        ws[i].consumer = fn == consumer;
        ws[i].reserve_timeout = timeout;
        ws[i].w.fd = -1;
        lat_init(&ws[i].lat);
        snprintf(ws[i].proc, sizeof ws[i].proc, "%s:processing:%d", r->o->tube, i);
    }
    return ws;
}

static void free_workers(struct worker *ws, int n)
{
    for (int i = 0; i < n; i++) {
        wire_close(&ws[i].w);
        lat_destroy(&ws[i].lat);
        free(ws[i].sched.at);
        free(ws[i].sched.seq);
    }
    free(ws);
}

/* Waits until consumers have taken every acknowledged job (or nothing moved
 * for STALL_NS, or the run failed), then stops them: their sockets are shut
 * down, which ends a reserve that is waiting. */
static void stop_consumers(struct run *r, struct worker *cs, int n)
{
    uint64_t last = 0, since = now_ns();

    while (!atomic_load(&r->stop)) {
        uint64_t c = atomic_load(&r->consumed);
        if (c >= atomic_load(&r->acked))
            break;
        if (c != last) {
            last = c;
            since = now_ns();
        } else if (now_ns() - since > STALL_NS) {
            break;
        }
        usleep(500);
    }
    atomic_store(&r->stop, true);
    for (int i = 0; i < n; i++)
        if (atomic_load(&cs[i].connected))
            shutdown(cs[i].w.fd, SHUT_RDWR);
}

static int run_put(struct run *r)
{
    const struct opts *o = r->o;
    struct worker *ps = workers(r, o->producers, producer, 0);

    launch(r, ps, o->producers, o->jobs == 0);
    join(r, ps, o->producers);
    report(r, "put", ps, o->producers, o->producers, 0, NULL);
    free_workers(ps, o->producers);
    if (atomic_load(&r->stop) || o->consumers == 0)
        return check(r);

    struct worker *cs = workers(r, o->consumers, consumer, 0);
    launch(r, cs, o->consumers, false);
    join(r, cs, o->consumers);
    report(r, "drain", cs, o->consumers, 0, o->consumers, NULL);
    free_workers(cs, o->consumers);
    return check(r);
}

static int run_mixed(struct run *r)
{
    const struct opts *o = r->o;
    int np = o->producers, nc = o->consumers;
    bool rate = o->wl == W_RATE;
    struct worker *ws = workers(r, np + nc, rate ? rate_producer : producer, 1);

    for (int i = np; i < np + nc; i++) {
        ws[i].fn = consumer;
        ws[i].consumer = true;
        ws[i].idx = i - np;
        snprintf(ws[i].proc, sizeof ws[i].proc, "%s:processing:%d", o->tube, i - np);
    }
    if (rate) {
        size_t cap = (size_t)(o->rate * o->seconds / np) + 64;
        for (int i = 0; i < np; i++) {
            ws[i].sched.at = xcalloc(cap, sizeof(uint64_t));
            ws[i].sched.seq = xcalloc(cap, sizeof(uint64_t));
            ws[i].sched.cap = cap;
        }
    }
    launch(r, ws, np + nc, rate || o->jobs == 0);
    for (int i = 0; i < np; i++)
        pthread_join(ws[i].th, NULL);
    /* Jobs still queued when the producers end: consumers fell behind. */
    uint64_t a = atomic_load(&r->acked), c = atomic_load(&r->consumed);
    char extra[64];
    snprintf(extra, sizeof extra, "backlog=%" PRIu64, a > c ? a - c : 0);
    stop_consumers(r, ws + np, nc);
    join(r, ws + np, nc);

    report(r, rate ? "rate" : "mixed", ws + np, nc, np, nc, extra);
    report(r, rate ? "rate-put" : "mixed-put", ws, np, np, 0, NULL);
    free_workers(ws, np + nc);
    return check(r);
}

static int run_rtt(struct run *r)
{
    struct worker *ws = workers(r, 1, rtt_worker, 1);

    launch(r, ws, 1, r->o->jobs == 0);
    join(r, ws, 1);
    report(r, "rtt", ws, 1, 1, 1, NULL);
    free_workers(ws, 1);
    return check(r);
}

/* --fill TUBES: puts o->jobs jobs delayed by an hour, spread evenly over
 * TUBES tubes "fill-0".. (one `use` per tube, its jobs after it), on one
 * connection, 256 commands per batch; used to show that put, reserve and
 * timers stay cheap with many tubes and delayed jobs. Returns the exit
 * status. */
static int fill(const struct opts *o, long tubes)
{
    struct wire w; /* only its connection: a delayed put is not a wire_put() */
    int rc = wire_connect(&w, o->host, o->port, WIRE_BEANSTALK);
    if (rc < 0) {
        fprintf(stderr, "docket-bench: fill: connect %s:%d: %s\n", o->host, o->port,
                strerror(-rc));
        return 1;
    }
    int fd = w.fd;
    enum { BATCH = 256 };
    size_t cap = BATCH * (96 + o->size), len;
    char *out = malloc(cap), in[65536];
    if (!out)
        return 1;
    uint64_t done = 0;
    long cur = -1;
    while (done < o->jobs) {
        uint64_t n = o->jobs - done < BATCH ? o->jobs - done : BATCH, replies = n;
        len = 0;
        for (uint64_t i = 0; i < n; i++) {
            long t = (long)((done + i) * (uint64_t)tubes / o->jobs);
            if (t != cur) {
                len += (size_t)snprintf(out + len, cap - len, "use fill-%ld\r\n", t);
                cur = t;
                replies++;
            }
            len += (size_t)snprintf(out + len, cap - len, "put 0 3600 60 %zu\r\n", o->size);
            memset(out + len, 'f', o->size);
            len += o->size;
            memcpy(out + len, "\r\n", 2);
            len += 2;
        }
        for (size_t off = 0; off < len;) {
            ssize_t k = write(fd, out + off, len - off);
            if (k <= 0) {
                fprintf(stderr, "docket-bench: fill: write: %s\n", strerror(errno));
                return 1;
            }
            off += (size_t)k;
        }
        uint64_t lines = 0;
        size_t have = 0;
        while (lines < replies) {
            ssize_t k = read(fd, in + have, sizeof in - have);
            if (k <= 0) {
                fprintf(stderr, "docket-bench: fill: read: %s\n", k ? strerror(errno) : "closed");
                return 1;
            }
            have += (size_t)k;
            char *p = in, *nl;
            while ((nl = memchr(p, '\n', have - (size_t)(p - in)))) {
                if (strncmp(p, "USING ", 6) && strncmp(p, "INSERTED ", 9)) {
                    fprintf(stderr, "docket-bench: fill: unexpected reply %.*s\n",
                            (int)(nl - p), p);
                    return 1;
                }
                lines++;
                p = nl + 1;
            }
            have -= (size_t)(p - in);
            memmove(in, p, have);
        }
        done += n;
    }
    printf("result phase=fill tubes=%ld jobs=%" PRIu64 "\n", tubes, done);
    free(out);
    wire_close(&w);
    return 0;
}

/* Prints a TCP port that was free on 127.0.0.1 a moment ago. */
static int free_port(void)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) < 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) < 0) {
        perror("docket-bench: free port");
        return 1;
    }
    printf("%d\n", ntohs(a.sin_port));
    close(fd);
    return 0;
}

/* Measures the disk under dir: n appends of 128 bytes to a fresh file, each
 * followed by fdatasync(), the pattern of a write-ahead log under
 * fsync=always. Prints one "fsync" line. Returns 0, or 1 on an error. */
static int fsync_probe(const char *dir, int n)
{
    char path[4096], buf[128];
    struct lat l;
    struct lat_summary s;
    int rc = 1;

    snprintf(path, sizeof path, "%s/docket-bench-fsync-probe.%d", dir, (int)getpid());
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        fprintf(stderr, "docket-bench: %s: %s\n", path, strerror(errno));
        return 1;
    }
    memset(buf, 'x', sizeof buf);
    lat_init(&l);
    for (int i = 0; i < n; i++) {
        uint64_t t = now_ns();
        if (write(fd, buf, sizeof buf) != (ssize_t)sizeof buf || fdatasync(fd) < 0) {
            fprintf(stderr, "docket-bench: %s: %s\n", path, strerror(errno));
            goto out;
        }
        lat_add(&l, now_ns() - t);
    }
    lat_summarize(&l, &s);
    printf("fsync samples=%zu p50_us=%.1f p90_us=%.1f p99_us=%.1f max_us=%.1f\n", s.n, s.p50,
           s.p90, s.p99, s.max);
    rc = 0;
out:
    close(fd);
    unlink(path);
    lat_destroy(&l);
    return rc;
}

/* Waits until host:port accepts a connection. Returns 0, or 1 on timeout. */
static int wait_port(const struct opts *o, double seconds)
{
    uint64_t end = now_ns() + (uint64_t)(seconds * 1e9);
    struct wire w;

    do {
        if (wire_connect(&w, o->host, o->port, o->proto) == 0) {
            wire_close(&w);
            return 0;
        }
        usleep(20000);
    } while (now_ns() < end);
    fprintf(stderr, "docket-bench: %s:%d not accepting connections after %.1f s\n", o->host,
            o->port, seconds);
    return 1;
}

static void usage(FILE *f)
{
    fprintf(f,
            "Use: docket-bench -p PORT [-w put|mixed|rtt|rate] [OPTIONS]\n"
            "     docket-bench --free-port\n"
            "     docket-bench -p PORT --wait SECONDS\n"
            "     docket-bench --fsync-probe DIR\n"
            "\n"
            "  -a ADDR      server address (default 127.0.0.1)\n"
            "  -p PORT      server port\n"
            "  -r, --redis  speak RESP: LPUSH, BLMOVE to a processing list, LREM\n"
            "  -w NAME      workload: put (then drain), mixed, rtt, rate (default put)\n"
            "  -P N         producer connections (default 4; mixed and rate: 2)\n"
            "  -C N         consumer connections (default 4); -w put -C 0: no drain,\n"
            "               the jobs stay queued\n"
            "  -D N         requests pipelined per connection (default 1)\n"
            "  -s BYTES     body size, at least %d (default 64)\n"
            "  -d SECONDS   length of the timed phase (default 3)\n"
            "  -n JOBS      put this many jobs instead (put, mixed, rtt)\n"
            "  -R RATE      jobs per second for -w rate (default 1000)\n"
            "  -t NAME      tube or Redis list (default docket-bench)\n"
            "  --fill TUBES with -n JOBS: put JOBS jobs delayed by an hour, spread\n"
            "               over TUBES tubes fill-0.., and exit (no timing)\n"
            "\n"
            "Prints \"result\" lines (latencies in microseconds) and a \"check\" line;\n"
            "exits 1 if a job was lost, duplicated or unexpected, or on any error.\n",
            HEAD_LEN);
}

static long num_arg(const char *s, long min, long max, const char *what)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || end == s || v < min || v > max) {
        fprintf(stderr, "docket-bench: bad %s: %s\n", what, s);
        exit(2);
    }
    return v;
}

static double real_arg(const char *s, double min, const char *what)
{
    char *end;
    double v = strtod(s, &end);
    if (*end || end == s || !(v >= min)) {
        fprintf(stderr, "docket-bench: bad %s: %s\n", what, s);
        exit(2);
    }
    return v;
}

int main(int argc, char **argv)
{
    struct opts o = {.host = "127.0.0.1", .port = -1, .proto = WIRE_BEANSTALK, .wl = W_PUT,
                     .producers = -1, .consumers = -1, .pipeline = 1, .size = 64,
                     .seconds = 3, .rate = 1000, .tube = "docket-bench"};
    static const struct option longs[] = {{"redis", no_argument, NULL, 'r'},
                                          {"free-port", no_argument, NULL, 'F'},
                                          {"wait", required_argument, NULL, 'W'},
                                          {"fsync-probe", required_argument, NULL, 'S'},
                                          {"fill", required_argument, NULL, 'L'},
                                          {"help", no_argument, NULL, 'h'},
                                          {NULL, 0, NULL, 0}};
    double wait = -1;
    long tubes = 0;
    int c;

    while ((c = getopt_long(argc, argv, "a:p:rw:P:C:D:s:d:n:R:t:h", longs, NULL)) != -1) {
        switch (c) {
        case 'a': o.host = optarg; break;
        case 'p': o.port = (int)num_arg(optarg, 1, 65535, "port"); break;
        case 'r': o.proto = WIRE_REDIS; break;
        case 'w':
            for (c = 0; c < 4 && strcmp(optarg, workload_names[c]) != 0; c++)
                ;
            if (c == 4) {
                fprintf(stderr, "docket-bench: unknown workload: %s\n", optarg);
                return 2;
            }
            o.wl = (enum workload)c;
            break;
        case 'P': o.producers = (int)num_arg(optarg, 1, 256, "producer count"); break;
        case 'C': o.consumers = (int)num_arg(optarg, 0, 256, "consumer count"); break;
        case 'D': o.pipeline = (int)num_arg(optarg, 1, 4096, "pipeline depth"); break;
        case 's': o.size = (size_t)num_arg(optarg, HEAD_LEN, 1 << 30, "body size"); break;
        case 'd': o.seconds = real_arg(optarg, 0.01, "duration"); break;
        case 'n': o.jobs = (uint64_t)num_arg(optarg, 1, SEQ_CAP, "job count"); break;
        case 'R': o.rate = real_arg(optarg, 1, "rate"); break;
        case 't': o.tube = optarg; break;
        case 'F': return free_port();
        case 'W': wait = real_arg(optarg, 0, "wait"); break;
        case 'S': return fsync_probe(optarg, 500);
        case 'L': tubes = (long)num_arg(optarg, 1, 1000000, "tube count"); break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind != argc || o.port < 0) {
        usage(stderr);
        return 2;
    }
    if (wait >= 0)
        return wait_port(&o, wait);
    if (tubes) {
        if (!o.jobs || o.proto != WIRE_BEANSTALK) {
            fprintf(stderr, "docket-bench: --fill needs -n JOBS and the beanstalkd protocol\n");
            return 2;
        }
        return fill(&o, tubes);
    }
    if (o.consumers == 0 && o.wl != W_PUT) {
        fprintf(stderr, "docket-bench: -C 0 (no consumers) only with -w put\n");
        return 2;
    }
    if (o.producers < 0)
        o.producers = o.wl == W_PUT ? 4 : 2;
    if (o.consumers < 0)
        o.consumers = 4; /* a consumer makes two requests per job, a producer one */
    if (o.wl == W_RTT)
        o.producers = o.consumers = o.pipeline = 1;
    if (o.wl == W_RATE)
        o.pipeline = 1;

    struct run r = {.o = &o, .limit = o.jobs && o.wl != W_RATE ? o.jobs : SEQ_CAP};
    r.acks = xcalloc(SEQ_CAP, 1);
    r.seen = xcalloc(SEQ_CAP, 1);
    pthread_mutex_init(&r.lock, NULL);

    int rc = o.wl == W_PUT ? run_put(&r) : o.wl == W_RTT ? run_rtt(&r) : run_mixed(&r);
    free((void *)r.acks);
    free((void *)r.seen);
    pthread_mutex_destroy(&r.lock);
    return rc < 0 ? 1 : 0;
}
