/* server.c -- the event loop, the listener, the engine and its hooks (see server.h). */
#include "server.h"

#include "../engine/engine.h"
#include "conn.h"

#include <errno.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "../common/log.h"
#include "../store/record.h"
#include "../store/wal.h"
#include "xalloc.h"

#define LISTEN_BACKLOG 4096             /* the kernel caps it at net.core.somaxconn */
#define OUT_CAP_MIN (1024 * 1024)       /* bytes: backpressure threshold, at least */
#define ACCEPT_RETRY_MS 100             /* pause after EMFILE before accepting again */
#define TIMER_MAX_S 3600                /* longest single timer wait, s */

static uint64_t ts_ns(clockid_t id)
{
    struct timespec ts;

    clock_gettime(id, &ts);
    return (uint64_t)ts.tv_sec * ENGINE_NS + (uint64_t)ts.tv_nsec;
}

/* Strictly increasing, so that two commands never share an instant: a
 * "pause-tube t 0" (which pauses for 1 ns) must be over for the next command,
 * as in beanstalkd, even on a clock too coarse to tell them apart. */
uint64_t server_now(void)
{
    static uint64_t last, shift;
    static bool anchored;

    if (!anchored) {
        uint64_t mono = ts_ns(CLOCK_MONOTONIC), wall = ts_ns(CLOCK_REALTIME);
        shift = wall > mono ? wall - mono : 0;
        anchored = true;
    }
    uint64_t t = ts_ns(CLOCK_MONOTONIC) + shift;
    if (t <= last)
        t = last + 1;
    last = t;
    return t;
}

uint64_t server_catch_up(struct server *srv)
{
    uint64_t now = server_now();

    if (engine_next_wakeup(srv->engine) <= now)
        engine_tick(srv->engine, now);
    return now;
}

/* ---- listening sockets ---- */

/* Writes "host:port" ("[host]:port" for IPv6) of the bound socket fd. */
static void describe_tcp(int fd, char *out, size_t n)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    char host[NI_MAXHOST], port[NI_MAXSERV];

    if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0 ||
        getnameinfo((struct sockaddr *)&ss, len, host, sizeof host, port, sizeof port,
                    NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
        snprintf(out, n, "?");
        return;
    }
    snprintf(out, n, ss.ss_family == AF_INET6 ? "[%s]:%s" : "%s:%s", host, port);
}

static bool is_loopback(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET)
        return (ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr) >> 24) == 127;
    if (sa->sa_family == AF_INET6)
        return IN6_IS_ADDR_LOOPBACK(&((const struct sockaddr_in6 *)sa)->sin6_addr);
    return false;
}

/* Binds and listens on the first address host resolves to. Returns the
 * non-blocking listening fd, or -1 after logging why. */
static int listen_tcp(struct server *srv, const char *host, uint64_t port)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE};
    struct addrinfo *res, *ai;
    char portstr[16];
    int fd = -1, err = 0, one = 1;

    snprintf(portstr, sizeof portstr, "%llu", (unsigned long long)port);
    int rc = getaddrinfo(host, portstr, &hints, &res);
    if (rc != 0) {
        dk_log(DK_LOG_ERROR, "cannot resolve %s: %s", host, gai_strerror(rc));
        return -1;
    }
    for (ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                    ai->ai_protocol);
        if (fd < 0) {
            err = errno;
            continue;
        }
        if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) == 0 &&
            bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, LISTEN_BACKLOG) == 0)
            break;
        err = errno;
        close(fd);
        fd = -1;
    }
    if (fd >= 0 && !is_loopback(ai->ai_addr))
        dk_log(DK_LOG_WARN, "listening on a non-loopback address without authentication");
    freeaddrinfo(res);
    if (fd < 0) {
        dk_log(DK_LOG_ERROR, "cannot listen on %s:%s: %s", host, portstr, strerror(err));
        return -1;
    }
    describe_tcp(fd, srv->listen_desc, sizeof srv->listen_desc);
    return fd;
}

/* Removes path if it is a socket no server answers on. Returns 0 if path is
 * free to bind, or -1 after logging why not. */
static int remove_stale_socket(const char *path, const struct sockaddr_un *sa)
{
    struct stat st;

    if (lstat(path, &st) < 0) {
        if (errno == ENOENT)
            return 0;
        dk_log(DK_LOG_ERROR, "%s: %s", path, strerror(errno));
        return -1;
    }
    if (!S_ISSOCK(st.st_mode)) {
        dk_log(DK_LOG_ERROR, "%s exists and is not a socket", path);
        return -1;
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        dk_log(DK_LOG_ERROR, "socket: %s", strerror(errno));
        return -1;
    }
    int live = connect(fd, (const struct sockaddr *)sa, sizeof *sa) == 0;
    close(fd);
    if (live) {
        dk_log(DK_LOG_ERROR, "%s: another server is listening there", path);
        return -1;
    }
    if (unlink(path) < 0) {
        dk_log(DK_LOG_ERROR, "cannot remove stale socket %s: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

/* Binds and listens on a unix socket at path, replacing a stale socket file.
 * Returns the non-blocking listening fd, or -1 after logging why. */
static int listen_unix(struct server *srv, const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};

    if (!*path || strlen(path) >= sizeof sa.sun_path) {
        dk_log(DK_LOG_ERROR, "bad unix socket path: \"%s\"", path);
        return -1;
    }
    memcpy(sa.sun_path, path, strlen(path) + 1);
    if (remove_stale_socket(path, &sa) < 0)
        return -1;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        dk_log(DK_LOG_ERROR, "socket: %s", strerror(errno));
        return -1;
    }
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(fd, LISTEN_BACKLOG) < 0) {
        dk_log(DK_LOG_ERROR, "cannot listen on unix:%s: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    srv->unix_path = xstrdup(path);
    snprintf(srv->listen_desc, sizeof srv->listen_desc, "unix:%s", path);
    return fd;
}

/* ---- engine hooks ---- */

static void on_deliver(void *ctx, struct session *s, const struct reply *r)
{
    (void)ctx;
    conn_deliver(engine_session_ctx(s), r);
}

/* A JOB record whose body can be read back from the log once written. */
struct page_out {
    uint64_t seq;
    uint64_t id;
    uint64_t off;              /* of the body in the segment file */
    uint32_t seg;
    uint32_t len;
};

static void page_push(struct server *srv, const struct page_out *p)
{
    if (srv->ntail == srv->pcap) {
        size_t cap = srv->pcap ? srv->pcap * 2 : 256;
        struct page_out *n = malloc(cap * sizeof *n);
        if (!n) {
            /* The body stays where it is, which may be an older segment's
             * mapping: from now on no mapping is ever unmapped. */
            srv->pages_lost = true;
            return;
        }
        for (size_t i = 0; i < srv->ntail; i++)
            n[i] = srv->pages[(srv->phead + i) % srv->pcap];
        free(srv->pages);
        srv->pages = n;
        srv->pcap = cap;
        srv->phead = 0;
    }
    srv->pages[(srv->phead + srv->ntail++) % srv->pcap] = *p;
}

/* Queues job record r (sequence number seq; its first byte at rec_off in
 * segment seg) to have its body read back from the log once written. */
static void page_record(struct server *srv, uint64_t seq, const struct rec *r, uint32_t seg,
                        uint64_t rec_off)
{
    if (r->type == REC_JOB && r->body_len)
        page_push(srv, &(struct page_out){.seq = seq, .id = r->id, .seg = seg,
                                          .len = (uint32_t)r->body_len,
                                          .off = rec_off + record_body_offset(r->tube_len)});
}

/* Points the bodies of the jobs whose JOB records are now written into the
 * log's mapping (engine_body_paged frees the copies), then lets the log
 * unmap dropped segments that no body points into any more. */
static void page_bodies(struct server *srv)
{
    if (!srv->wal)
        return;
    uint64_t written = wal_written(srv->wal);
    while (srv->ntail && srv->pages[srv->phead].seq <= written) {
        const struct page_out *p = &srv->pages[srv->phead];
        const char *body = wal_body_at(srv->wal, p->seg, p->off, p->len);
        if (engine_body_paged(srv->engine, p->id, p->seg, body) < 0)
            srv->pages_lost = true; /* it may still point into an older segment */
        srv->phead = (srv->phead + 1) % srv->pcap;
        srv->ntail--;
    }
    if (!srv->pages_lost)
        wal_unmap_done(srv->wal, srv->ntail ? srv->pages[srv->phead].seq - 1 : written);
}

/* The engine's record hook: every durable change goes to the log. */
static uint32_t on_record(void *ctx, const struct rec *r)
{
    struct server *srv = ctx;
    uint32_t seg = 0;

    if (!srv->wal)
        return 0;
    uint64_t seq = wal_append(srv->wal, r, &seg);
    if (!seq)
        dk_log_every(1, DK_LOG_WARN, "write-ahead log refused a record: %s",
                     strerror(wal_failed(srv->wal) ? wal_failed(srv->wal) : ENOMEM));
    else if (r->type != REC_RESERVE)
        srv->reveal_seq = seq;
    if (seq)
        page_record(srv, seq, r, seg, wal_last_offset(srv->wal));
    return seg;
}

static void on_info(void *ctx, struct engine_info *out)
{
    struct server *srv = ctx;
    struct rusage ru;

    memset(out, 0, sizeof *out);
    if (getrusage(RUSAGE_SELF, &ru) == 0) {
        out->utime_us = (uint64_t)ru.ru_utime.tv_sec * 1000000 + (uint64_t)ru.ru_utime.tv_usec;
        out->stime_us = (uint64_t)ru.ru_stime.tv_sec * 1000000 + (uint64_t)ru.ru_stime.tv_usec;
    }
    out->pid = (uint64_t)getpid();
    out->version = DOCKETD_VERSION;
    out->uptime = (server_now() - srv->start_ns) / ENGINE_NS;
    /* beanstalkd reports its -s value even without a log. */
    out->binlog_max_size = srv->cfg->binlog_size ? srv->cfg->binlog_size : WAL_SEGMENT_DEFAULT;
    if (srv->wal) {
        struct wal_stats st;
        wal_get_stats(srv->wal, &st);
        out->binlog_oldest = st.oldest;
        out->binlog_current = st.current;
        out->binlog_migrated = st.migrated;
        out->binlog_written = st.written;
    }
    out->id = srv->id;
    out->hostname = srv->uts.nodename;
    out->os = srv->uts.version;        /* beanstalkd prints uname's version here */
    out->platform = srv->uts.machine;
}

/* ---- loop callbacks ---- */

static bool on_compact(void *ctx, uint32_t seg, size_t budget)
{
    struct server *srv = ctx;
    return engine_compact(srv->engine, seg, budget);
}

/* The log synced (or failed): writes the replies that may go now, or turns
 * held replies into errors. */
static void release_held(struct server *srv)
{
    static bool reported;

    int err = wal_failed(srv->wal);
    if (err && !reported) {
        dk_log(DK_LOG_ERROR,
               "write-ahead log failed: %s; refusing writes and replies that show a job "
               "until restart",
               strerror(err));
        reported = true;
    }
    page_bodies(srv);
    uint64_t synced = wal_synced(srv->wal);
    srv->released = synced;
    /* Detach the list first: running a connection can hold new replies. */
    struct conn *c = srv->held;
    srv->held = NULL;
    while (c) {
        struct conn *next = c->hnext;
        c->held = false;
        c->hnext = NULL;
        if (!conn_release_held(c, synced, err))
            server_track_held(srv, c);
        c = next;
    }
}

/* The newest record a held reply waits for, if not yet handed to the log
 * (0 otherwise); it counts as handed over from now on. */
static uint64_t take_want(struct server *srv)
{
    if (srv->want <= srv->asked)
        return 0;
    return srv->asked = srv->want;
}

/* Whether held replies may go without a poke from the log: the writer moved
 * wal_synced() before a want reached it, or the log has failed. */
static bool release_due(const struct server *srv)
{
    return srv->held && (wal_synced(srv->wal) > srv->released || wal_failed(srv->wal));
}

#define SOLO_SYNCS 4           /* syncs for one connection in a row before syncing inline */

/* Hands the loop turn's records to the log with the newest record a held
 * reply waits for. Under fsync=always that asks for a sync up to it; records
 * nobody waits for (reservations) are written but not synced on their own,
 * and a sync asked while one runs starts when it ends, covering everything
 * since. Under never and MS the records are written now, mostly on this
 * thread, and the replies go out once they are. */
static void commit(struct server *srv)
{
    if (!srv->wal)
        return;
    uint64_t want = take_want(srv);
    /* One connection at a time waiting for the log (one worker, a quiet
     * server): it would wait for two thread wake-ups besides the fdatasync,
     * and the loop has nothing else to do meanwhile, so sync here if the
     * writer is idle (records nobody waits for are only written here).
     * Only after a few such syncs in a row: with several connections busy,
     * the writer's sync runs while the loop serves the others. */
    bool one = !srv->held || !srv->held->hnext;
    if (want)
        srv->solo = one ? srv->solo + (srv->solo < SOLO_SYNCS) : 0;
    bool lone = one && srv->solo >= SOLO_SYNCS;
    bool synced = wal_commit(srv->wal, want, lone);
    page_bodies(srv); /* fsync=never and MS: written already */
    /* Also if the writer moved wal_synced() before this turn's want reached
     * it: it may then not have poked the eventfd for the replies held. And
     * once the log has failed, replies held since (one showing a job whose
     * record was lost) get their error reply now: no poke will come. */
    if (synced || release_due(srv))
        release_held(srv);
}

uint64_t server_write_log(struct server *srv)
{
    if (!srv->wal || srv->cfg->fsync == CONFIG_FSYNC_ALWAYS)
        return 0;
    if (wal_has_pending(srv->wal)) {
        wal_commit(srv->wal, take_want(srv), false);
        page_bodies(srv);
    }
    return wal_failed(srv->wal) ? 0 : wal_synced(srv->wal);
}

/* Whether commit() has something to do. */
static bool commit_due(const struct server *srv)
{
    return srv->wal &&
           (wal_has_pending(srv->wal) || srv->want > srv->asked ||
            release_due(srv));
}

/* Runs after the callbacks that were already pending when the loop turn's
 * first record was made: hands all their records to the writer at once, and
 * takes one bounded compaction step. */
static void on_flush(evutil_socket_t fd, short what, void *arg)
{
    struct server *srv = arg;

    (void)fd;
    (void)what;
    srv->flush_pending = false;
    bool more = wal_maintain(srv->wal, on_compact, srv);
    commit(srv);
    if (more) {
        /* Compaction goes on, one bounded step per loop turn. */
        srv->flush_pending = true;
        event_active(srv->flush_ev, EV_TIMEOUT, 0);
    }
    server_rearm(srv);
}

void server_rearm(struct server *srv)
{
    if (!srv->flush_pending && commit_due(srv)) {
        /* Activated events run in order, so this one comes after every
         * callback this loop turn has queued so far. */
        srv->flush_pending = true;
        event_active(srv->flush_ev, EV_TIMEOUT, 0);
    }
    uint64_t at = engine_next_wakeup(srv->engine);

    if (at == srv->timer_at)
        return;
    srv->timer_at = at;
    if (at == UINT64_MAX) {
        evtimer_del(srv->timer);
        return;
    }
    uint64_t now = server_now();
    uint64_t us = at > now ? (at - now + 999) / 1000 : 0; /* round up: never tick early */
    if (us > (uint64_t)TIMER_MAX_S * 1000000)
        us = (uint64_t)TIMER_MAX_S * 1000000; /* a far deadline is re-armed when this fires */
    struct timeval tv = {.tv_sec = (time_t)(us / 1000000), .tv_usec = (suseconds_t)(us % 1000000)};
    evtimer_add(srv->timer, &tv);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct server *srv = arg;

    (void)fd;
    (void)what;
    srv->timer_at = UINT64_MAX;        /* not pending any more */
    engine_tick(srv->engine, server_now());
    server_rearm(srv);
}

/* Frees the connections closed since the last run; they are off every
 * event queue, and no callback holds them any more. */
static void on_reap(evutil_socket_t fd, short what, void *arg)
{
    struct server *srv = arg;

    (void)fd;
    (void)what;
    while (srv->dead) {
        struct conn *c = srv->dead;
        srv->dead = c->next;
        conn_free(c);
    }
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
                      int socklen, void *arg)
{
    struct server *srv = arg;
    int one = 1;

    (void)l;
    (void)socklen;
    /* Replies are written whole; waiting for an ACK before sending the next
     * small one would only add latency. */
    if (sa->sa_family != AF_UNIX)
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    conn_new(srv, fd, server_now());
    server_rearm(srv);
}

/* Out of file descriptors (or memory): stop accepting for a moment instead
 * of spinning on a listener that stays readable. */
static void on_accept_error(struct evconnlistener *l, void *arg)
{
    struct server *srv = arg;
    int err = EVUTIL_SOCKET_ERROR();
    struct timeval tv = {.tv_sec = 0, .tv_usec = ACCEPT_RETRY_MS * 1000};

    dk_log_every(1, DK_LOG_WARN, "accept: %s (%zu connections)", strerror(err), srv->nconns);
    evconnlistener_disable(l);
    evtimer_add(srv->accept_retry, &tv);
}

static void on_accept_retry(evutil_socket_t fd, short what, void *arg)
{
    struct server *srv = arg;

    (void)fd;
    (void)what;
    evconnlistener_enable(srv->listener);
}

static void on_stop(evutil_socket_t sig, short what, void *arg)
{
    struct server *srv = arg;

    (void)what;
    dk_log(DK_LOG_INFO, "got signal %d, stopping", (int)sig);
    event_base_loopbreak(srv->base);
}

static void on_drain(evutil_socket_t sig, short what, void *arg)
{
    struct server *srv = arg;

    (void)sig;
    (void)what;
    dk_log(DK_LOG_INFO, "got SIGUSR1, entering drain mode");
    engine_set_draining(srv->engine);
}

static void on_libevent_log(int severity, const char *msg)
{
    if (severity >= EVENT_LOG_WARN)
        dk_log(DK_LOG_WARN, "libevent: %s", msg);
    else
        dk_log(DK_LOG_DEBUG, "libevent: %s", msg);
}

/* ---- setup and teardown ---- */

/* Fills id with 16 random hex characters. */
static void make_id(char id[17])
{
    unsigned char r[8];

    if (getrandom(r, sizeof r, 0) != (ssize_t)sizeof r) {
        uint64_t x = server_now() ^ ((uint64_t)getpid() << 32);
        memcpy(r, &x, sizeof r);
    }
    for (int i = 0; i < 8; i++)
        snprintf(id + 2 * i, 3, "%02x", r[i]);
}

static struct event *add_signal(struct server *srv, int sig, event_callback_fn fn)
{
    struct event *ev = evsignal_new(srv->base, sig, fn, srv);

    if (!ev || event_add(ev, NULL) < 0)
        xoom("signal event");
    return ev;
}

int server_init(struct server *srv, const struct config *cfg)
{
    memset(srv, 0, sizeof *srv);
    srv->cfg = cfg;
    srv->timer_at = UINT64_MAX;
    srv->out_cap = OUT_CAP_MIN;
    if (2 * cfg->max_job_size > srv->out_cap)
        srv->out_cap = (size_t)(2 * cfg->max_job_size);
    srv->start_ns = server_now();
    make_id(srv->id);
    if (uname(&srv->uts) < 0)
        memset(&srv->uts, 0, sizeof srv->uts);

    event_set_log_callback(on_libevent_log);
    srv->base = event_base_new();
    if (!srv->base) {
        dk_log(DK_LOG_ERROR, "cannot create the event loop");
        return -1;
    }
    int fd = strncmp(cfg->listen, "unix:", 5) == 0 ? listen_unix(srv, cfg->listen + 5)
                                                  : listen_tcp(srv, cfg->listen, cfg->port);
    if (fd < 0)
        return -1;
    srv->listener = evconnlistener_new(srv->base, on_accept, srv,
                                       LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 0, fd);
    if (!srv->listener) {
        close(fd);
        dk_log(DK_LOG_ERROR, "cannot create the listener");
        return -1;
    }
    evconnlistener_set_error_cb(srv->listener, on_accept_error);

    struct engine_config ec = {.max_job_size = (uint32_t)cfg->max_job_size,
                               .page_bodies = !cfg->memory};
    struct engine_hooks hooks = {.ctx = srv, .deliver = on_deliver, .record = on_record,
                                 .info = on_info};
    srv->engine = engine_new(&ec, &hooks, srv->start_ns);
    if (!srv->engine)
        xoom("engine");

    srv->timer = evtimer_new(srv->base, on_timer, srv);
    srv->reap = event_new(srv->base, -1, 0, on_reap, srv);
    srv->accept_retry = evtimer_new(srv->base, on_accept_retry, srv);
    if (!srv->timer || !srv->reap || !srv->accept_retry)
        xoom("server events");
    srv->sig_term = add_signal(srv, SIGTERM, on_stop);
    srv->sig_int = add_signal(srv, SIGINT, on_stop);
    srv->sig_usr1 = add_signal(srv, SIGUSR1, on_drain);
    return 0;
}

/* ---- the write-ahead log ---- */

bool server_log_failed(const struct server *srv) { return srv->wal && wal_failed(srv->wal); }

bool server_low_space(const struct server *srv) { return srv->wal && wal_low_space(srv->wal); }

uint64_t server_appended(const struct server *srv)
{
    return srv->wal ? wal_appended(srv->wal) : 0;
}

uint64_t server_hold_seq(const struct server *srv, uint64_t appended_before)
{
    if (!srv->wal)
        return 0;
    uint64_t now = wal_appended(srv->wal);
    return now > appended_before && now > wal_synced(srv->wal) ? now : 0;
}

uint64_t server_hold_before(const struct server *srv, uint64_t reveal_before)
{
    if (!srv->wal)
        return 0;
    return reveal_before > wal_synced(srv->wal) ? reveal_before : 0;
}

void server_hold(struct server *srv, struct conn *c, uint64_t seq)
{
    if (seq > srv->want)
        srv->want = seq;
    server_track_held(srv, c);
}

void server_untrack_held(struct server *srv, struct conn *c)
{
    if (!c->held)
        return;
    struct conn **pp = &srv->held;
    while (*pp && *pp != c)
        pp = &(*pp)->hnext;
    if (*pp)
        *pp = c->hnext;
    c->held = false;
    c->hnext = NULL;
}

void server_track_held(struct server *srv, struct conn *c)
{
    if (c->held)
        return;
    c->held = true;
    c->hnext = srv->held;
    srv->held = c;
}

/* A sync finished, or the log failed: let held replies go, or turn them into
 * errors. */
static void on_wal(evutil_socket_t fd, short what, void *arg)
{
    struct server *srv = arg;

    (void)fd;
    (void)what;
    wal_event_ack(srv->wal);
    release_held(srv);
    server_rearm(srv);
}

static void warn_log(void *ctx, const char *msg)
{
    (void)ctx;
    dk_log(DK_LOG_WARN, "%s", msg);
}

static int replay(void *ctx, const struct rec *r)
{
    struct server *srv = ctx;
    int rc = engine_apply(srv->engine, r, server_now());
    /* The body goes back to the log once the log is open (page_bodies). */
    if (rc == 0)
        page_record(srv, 0, r, r->seg, r->off);
    return rc;
}

static void note_live(void *ctx, uint32_t seg, size_t bytes)
{
    wal_note_live(ctx, seg, bytes);
}

static void preamble(void *ctx)
{
    struct server *srv = ctx;
    engine_log_preamble(srv->engine, server_now());
}

int server_open_log(struct server *srv)
{
    const struct config *cfg = srv->cfg;
    if (cfg->memory) {
        dk_log(DK_LOG_NOTICE, "no write-ahead log (--memory): jobs do not survive a restart");
        return 0;
    }
    struct wal_config wc = {.dir = cfg->binlog_dir, .fsync = cfg->fsync,
                            .segment_size = cfg->binlog_size, .repair = cfg->repair != 0,
                            .warn = warn_log};
    char err[1024];
    uint64_t t0 = server_now();
    struct wal *w = wal_open(&wc, replay, srv, err, sizeof err);
    if (!w) {
        dk_log(DK_LOG_ERROR, "write-ahead log: %s", err);
        return -1;
    }
    engine_recovered(srv->engine);
    engine_foreach_seg(srv->engine, note_live, w);
    srv->wal = w;
    page_bodies(srv); /* the recovered bodies go back to the log */
    int rc = wal_start(w, preamble, srv);
    if (rc < 0) {
        dk_log(DK_LOG_ERROR, "write-ahead log: cannot start its writer: %s", strerror(-rc));
        return -1;
    }
    if (wal_repaired(w)) {
        /* Move every live job past the damage; compaction then deletes the
         * damaged segments once the new copies are synced, so the next start
         * needs no --repair. */
        engine_snapshot_all(srv->engine);
        dk_log(DK_LOG_WARN, "write-ahead log repaired: %zu jobs rewritten into a fresh segment",
               engine_job_count(srv->engine));
    }
    struct wal_stats st;
    wal_get_stats(w, &st);
    dk_log(DK_LOG_NOTICE, "write-ahead log %s: %llu records replayed, %zu jobs, in %.3f s; fsync %s",
           cfg->binlog_dir, (unsigned long long)st.recovered, engine_job_count(srv->engine),
           (double)(server_now() - t0) / 1e9,
           cfg->fsync == CONFIG_FSYNC_ALWAYS ? "always"
           : cfg->fsync == CONFIG_FSYNC_NEVER ? "never" : "on an interval");
    srv->wal_ev = event_new(srv->base, wal_event_fd(w), EV_READ | EV_PERSIST, on_wal, srv);
    srv->flush_ev = event_new(srv->base, -1, 0, on_flush, srv);
    if (!srv->wal_ev || !srv->flush_ev || event_add(srv->wal_ev, NULL) < 0)
        xoom("log event");
    return 0;
}

int server_run(struct server *srv)
{
    /* The test harness waits for exactly this line. */
    dk_log(DK_LOG_NOTICE, "listening on %s", srv->listen_desc);
    dk_log(DK_LOG_INFO, "pid %d, version %s, max job size %llu bytes", (int)getpid(),
           DOCKETD_VERSION, (unsigned long long)srv->cfg->max_job_size);
    server_rearm(srv);
    if (event_base_dispatch(srv->base) < 0) {
        dk_log(DK_LOG_ERROR, "event loop failed");
        return -1;
    }
    return 0;
}

static void free_event(struct event **ev)
{
    if (*ev)
        event_free(*ev);
    *ev = NULL;
}

void server_destroy(struct server *srv)
{
    uint64_t now = server_now();

    if (srv->listener)
        evconnlistener_free(srv->listener); /* closes the listening socket */
    srv->listener = NULL;
    while (srv->conns)
        conn_close(srv->conns, now);
    while (srv->dead) {
        struct conn *c = srv->dead;
        srv->dead = c->next;
        conn_free(c);
    }
    conn_pool_free(srv);
    /* Everything accepted is synced before the log closes. */
    free_event(&srv->wal_ev);
    free_event(&srv->flush_ev);
    wal_close(srv->wal);
    free(srv->pages);
    srv->wal = NULL;
    if (srv->engine)
        engine_free(srv->engine);
    srv->engine = NULL;
    free_event(&srv->timer);
    free_event(&srv->reap);
    free_event(&srv->accept_retry);
    free_event(&srv->sig_term);
    free_event(&srv->sig_int);
    free_event(&srv->sig_usr1);
    if (srv->base)
        event_base_free(srv->base);
    srv->base = NULL;
    if (srv->unix_path && unlink(srv->unix_path) < 0)
        dk_log(DK_LOG_INFO, "cannot remove %s: %s", srv->unix_path, strerror(errno));
    free(srv->unix_path);
    srv->unix_path = NULL;
}
