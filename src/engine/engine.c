/* engine.c -- the job engine (see engine.h for the contract).
 *
 * Data structures, all intrusive so that no command allocates besides a put:
 * - jobs by id: open-addressing table (linear probing, backward-shift delete);
 * - tubes by name: chained hash table; tubes in creation order: an array with
 *   swap-remove, which is the order beanstalkd's list-tubes shows;
 * - per tube: ready jobs in (pri, id) order as a run plus a heap (see "ready
 *   jobs" below), delayed heap (deadline, id), buried FIFO, and a FIFO of
 *   waiting sessions (nodes live in the sessions' watch arrays);
 * - global heaps: reserved jobs by TTR deadline, tubes by their soonest
 *   delayed job, paused tubes by unpause time, waiting sessions by wake time.
 * So reserve looks only at the session's watched tubes, and every timer is a
 * heap top: nothing scans all tubes or all jobs.
 *
 * Memory per job: a job that has only ever been ready (put without a delay,
 * never reserved) is one allocation, struct job then the body and its CRLF,
 * plus its slot in the id table and in its tube's ready run or heap. Whatever only a
 * delayed, reserved or buried job needs (deadline, owner, links, bury order)
 * and its history (delay, counters) live in a struct job_ext allocated the
 * first time the job leaves that plain ready state, and kept until it ends.
 * With a log (engine_config.page_bodies) the body is not kept at all once the
 * log has it: the job holds a pointer into the log's mapping of the segment
 * (engine_body_paged()), and a separate copy only until then.
 */
#include "engine.h"

#include <assert.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "heap.h"

#define NPOS ((size_t)-1)
#define TUBE_NAME_MAX 200

enum jstate { J_READY, J_RESERVED, J_DELAYED, J_BURIED };

static const char *const state_names[] = {"ready", "reserved", "delayed", "buried"};

/* The part of a job that a plain ready job does without (all zero for it).
 * Every delayed, reserved or buried job has one. */
struct job_ext {
    uint64_t deadline;         /* ns: end of delay (delayed) or of TTR (reserved) */
    uint64_t order;            /* place in the buried FIFO, from engine.bury_clock; kept
                                  afterwards, as the job's JOB records carry it */
    struct session *owner;     /* reserving session, or NULL */
    struct job *prev, *next;   /* buried FIFO, or the owner's reserved list */
    uint32_t delay;            /* seconds */
    uint32_t reserves, timeouts, releases, buries, kicks;
};

/* Where a job's body is (engine_config.page_bodies, engine_body_paged()). */
enum bodyat {
    B_INLINE,                  /* in body[], then "\r\n" */
    B_OWNED,                   /* body[] holds a pointer to a malloc'd copy (body, "\r\n") */
    B_PAGED                    /* body[] holds a pointer into the log's mapping; not ours */
};

/* Allocated as JOB_HEAD + body_len + 2 bytes (job_alloc()), the body right
 * after the header; or, when bodies are paged to the log, as JOB_HEAD + a
 * pointer (job_body()). */
struct job {
    uint64_t id;
    uint64_t created;          /* ns, engine clock */
    struct job_ext *x;         /* NULL until the job is first delayed, reserved or buried */
    uint32_t tube : 24;        /* its tube's slot: engine.tslot[tube] (job_tube()) */
    uint32_t state : 3;        /* enum jstate */
    uint32_t inrun : 1;        /* ready, in its tube's run rather than its ready heap */
    uint32_t bodyat : 4;       /* enum bodyat */
    uint32_t hpos;             /* index in the heap (or run) that holds the job (not buried) */
    uint32_t pri;
    uint32_t ttr;              /* seconds, at least 1 */
    uint32_t body_len;         /* bytes, without the trailing "\r\n" */
    uint32_t seg;              /* log segment of the job's newest JOB record (0: none) */
    char body[];               /* see enum bodyat */
};

#define JOB_HEAD offsetof(struct job, body)
#define TUBE_SLOTS (1u << 24)  /* tubes at most: a job's tube slot has 24 bits */
#define JOB_MAX (UINT32_MAX / 4 * 3) /* jobs at most: a heap index fits hpos, and the
                                         job table stays below 2^32 slots */

static const struct job_ext no_ext; /* what a job without an ext reads as */

/* The job's body (body_len bytes; a CRLF follows unless it is paged). */
static const char *job_body(const struct job *j)
{
    if (j->bodyat == B_INLINE)
        return j->body;
    const char *p;
    memcpy(&p, j->body, sizeof p);
    return p;
}

static void job_set_body(struct job *j, const char *p, enum bodyat at)
{
    memcpy(j->body, &p, sizeof p);
    j->bodyat = at;
}

struct watch {
    struct tube *tube;
    struct session *s;
    struct watch *wprev, *wnext; /* the tube's waiting FIFO, while s waits */
};

struct tube {
    char name[TUBE_NAME_MAX + 1];
    size_t name_len;
    struct tube *hnext;        /* hash chain */
    size_t idx;                /* index in engine.tubes */
    uint32_t slot;             /* index in engine.tslot, which jobs refer to it by */
    uint64_t refs;             /* jobs + users + watchers (+1 for default) */
    struct heap ready;         /* ready jobs by (pri, id), those not in the run */
    struct job **run;          /* ready jobs in (pri, id) order: a ring of rcap slots */
    size_t rhead, rlen, rcap;  /* the run is run[rhead], ... rlen slots, NULL for a hole */
    size_t rlive;              /* jobs in the run */
    struct heap delay;         /* by (deadline, id) */
    struct job *bhead, *btail; /* buried FIFO */
    struct watch *whead, *wtail; /* waiting sessions, FIFO */
    size_t dpos;               /* index in engine.delay_tubes or NPOS */
    size_t ppos;               /* index in engine.paused or NPOS */
    uint64_t pause;            /* ns; 0 when not paused */
    uint64_t unpause_at;       /* ns */
    uint64_t urgent, reserved, buried, waiting;
    uint64_t total_jobs, cmd_delete, cmd_pause;
    uint32_t using_ct, watching_ct;
};

struct session {
    void *ctx;
    struct session *sprev, *snext; /* every open session, for engine_free() */
    struct tube *use;
    struct watch *watch;       /* watched tubes, in beanstalkd's order */
    size_t nwatch, capwatch;
    struct job *rhead;         /* reserved jobs (doubly linked through job.prev/next) */
    size_t nreserved;
    bool waiting;
    bool producer, worker;
    bool has_timeout;
    uint64_t timeout_at;       /* ns, when has_timeout */
    uint64_t wake;             /* ns: time-out or DEADLINE_SOON instant */
    size_t wpos;               /* index in engine.waiters or NPOS */
};

struct engine {
    struct engine_config cfg;
    struct engine_hooks hooks;
    uint64_t next_id;
    uint64_t bury_clock;       /* the next buried job's order */
    uint64_t started;          /* ns */
    bool draining;

    struct job **jtab;         /* id -> job, open addressing */
    size_t jcap, njobs;        /* slots (JTAB_MIN..JTAB_MAX), jobs */

    struct tube **thash;       /* name -> tube */
    size_t thcap;
    struct tube **tubes;       /* creation order, swap-remove */
    size_t ntubes, captubes;
    struct tube **tslot;       /* by slot, which never changes while the tube lives */
    uint32_t *tfree;           /* free slots (NULL in tslot), a stack */
    size_t nslot, capslot, nfree; /* slots used or freed; allocated; free */
    struct tube *default_tube;

    struct heap reserved;      /* jobs by TTR deadline */
    struct heap delay_tubes;   /* tubes by their soonest delayed job */
    struct heap paused;        /* tubes by unpause time */
    struct heap waiters;       /* sessions by wake time */

    uint64_t ready_ct, urgent_ct, reserved_ct, delayed_ct, buried_ct;
    uint64_t waiting_ct, total_jobs, timeout_ct;
    uint64_t op_ct[OP_COUNT];
    uint64_t sessions, total_sessions, producers, workers;
    struct session *shead;     /* open sessions */

    size_t compact_pos;        /* engine_compact()'s place in jtab */
    struct kv *kv;             /* scratch for OK replies */
    size_t capkv;
    char scratch[2][32];       /* formatted numbers for OK replies */
};

/* ---- job table ---------------------------------------------------------- */

static struct tube *job_tube(const struct engine *e, const struct job *j)
{
    return e->tslot[j->tube];
}

/* The table grows by half when it would be more than 3/4 full, so it takes
 * 10.7 to 16 bytes per job (a doubling table: 10.7 to 21.3), and shrinks to a
 * quarter when less than 1/8 full, so a drained burst gives its memory back.
 * Its size need not be a power of two: a 32-bit hash is scaled to it, so it
 * has at most 2^32 slots. */
#define JTAB_MIN 1024
#define JTAB_MAX (UINT64_C(1) << 32)

/* Fibonacci hashing spreads consecutive ids evenly over the top bits. */
static size_t jslot(const struct engine *e, uint64_t id)
{
    uint64_t h = (id * 0x9E3779B97F4A7C15ULL) >> 32;
    return (size_t)((h * e->jcap) >> 32);
}

static size_t jnext(const struct engine *e, size_t i) { return i + 1 < e->jcap ? i + 1 : 0; }

static struct job *job_find(const struct engine *e, uint64_t id)
{
    for (size_t i = jslot(e, id);; i = jnext(e, i)) {
        struct job *j = e->jtab[i];
        if (!j || j->id == id)
            return j;
    }
}

/* Moves every job to a table of cap slots. Returns 0, or -1 if out of memory
 * (the table is unchanged). */
static int jtab_resize(struct engine *e, size_t cap)
{
    struct job **t = calloc(cap, sizeof *t);
    if (!t)
        return -1;
    struct job **old = e->jtab;
    size_t oldcap = e->jcap;
    e->jtab = t;
    e->jcap = cap;
    for (size_t i = 0; i < oldcap; i++) {
        if (!old[i])
            continue;
        size_t k = jslot(e, old[i]->id);
        while (t[k])
            k = jnext(e, k);
        t[k] = old[i];
    }
    free(old);
    return 0;
}

static int jtab_add(struct engine *e, struct job *j)
{
    if (e->njobs >= JOB_MAX)
        return -1;
    if ((e->njobs + 1) * 4 > e->jcap * 3) {
        uint64_t cap = (uint64_t)e->jcap + e->jcap / 2;
        if (cap > JTAB_MAX)
            cap = JTAB_MAX;
        if (cap > SIZE_MAX / sizeof *e->jtab || jtab_resize(e, (size_t)cap) < 0)
            return -1;
    }
    size_t i = jslot(e, j->id);
    while (e->jtab[i])
        i = jnext(e, i);
    e->jtab[i] = j;
    e->njobs++;
    return 0;
}

/* Backward-shift deletion keeps probe sequences intact without tombstones. */
static void jtab_del(struct engine *e, uint64_t id)
{
    size_t i = jslot(e, id);
    while (e->jtab[i]->id != id)
        i = jnext(e, i);
    size_t hole = i;
    for (size_t k = jnext(e, hole); e->jtab[k]; k = jnext(e, k)) {
        size_t home = jslot(e, e->jtab[k]->id);
        /* Move k into the hole unless its home lies cyclically in (hole, k]. */
        bool stays = hole <= k ? (hole < home && home <= k) : (hole < home || home <= k);
        if (!stays) {
            e->jtab[hole] = e->jtab[k];
            hole = k;
        }
    }
    e->jtab[hole] = NULL;
    e->njobs--;
    if (e->jcap > JTAB_MIN && e->njobs < e->jcap / 8) {
        size_t cap = e->jcap / 4;
        jtab_resize(e, cap < JTAB_MIN ? JTAB_MIN : cap); /* out of memory: stays big */
    }
}

/* ---- heap orderings ----------------------------------------------------- */

static int ready_less(const void *a, const void *b)
{
    const struct job *x = a, *y = b;
    return x->pri != y->pri ? x->pri < y->pri : x->id < y->id;
}

/* Delayed and reserved jobs, which always have an ext. */
static int deadline_less(const void *a, const void *b)
{
    const struct job *x = a, *y = b;
    uint64_t dx = x->x->deadline, dy = y->x->deadline;
    return dx != dy ? dx < dy : x->id < y->id;
}

/* A heap holds at most JOB_MAX jobs, so pos fits. */
static void job_setpos(void *x, size_t pos) { ((struct job *)x)->hpos = (uint32_t)pos; }

/* ---- ready jobs ----------------------------------------------------------
 *
 * A tube's ready jobs are split between a run and a heap. The run is a ring
 * of jobs of one priority in increasing id order: a job with the run's
 * priority and a higher id than its last job is appended, in O(1), and the
 * rest go to the heap (an empty run takes any job, and its priority). Jobs
 * put at one priority come with growing ids, so they all go to the run, and
 * a reserve takes the run's first job, also in O(1), instead of a heap
 * operation (log n cache misses with a big backlog). Jobs of other
 * priorities and jobs that come back (release, kick, the end of a delay)
 * mostly go to the heap.
 *
 * Invariants: the best ready job is the better of the run's first job and
 * the heap's top; a job in the run has inrun set and its slot in hpos; a
 * job taken out of the middle leaves a NULL hole, but the run's first and
 * last slots always hold a job (or the run is empty), and after a removal
 * holes outnumber jobs by at most RUN_SLACK (unless memory ran out). Every
 * rebuild of the ring follows enough appends or removals to pay for it. */
#define RUN_MIN 16
#define RUN_SLACK 32
#define RUN_MAX ((size_t)1 << 31) /* slots: a slot index fits hpos */

static size_t ready_len(const struct tube *t) { return t->ready.len + t->rlive; }

static struct job **run_slot(const struct tube *t, size_t k)
{
    return &t->run[(t->rhead + k) & (t->rcap - 1)];
}

static struct job *ready_peek(const struct tube *t)
{
    struct job *h = heap_peek(&t->ready);
    if (!t->rlive)
        return h;
    struct job *r = t->run[t->rhead];
    return h && ready_less(h, r) ? h : r;
}

/* Moves the run's jobs, in order and without holes, to a ring of cap slots.
 * Returns 0, or -1 if out of memory (the run is unchanged). */
static int run_rebuild(struct tube *t, size_t cap)
{
    struct job **ring = malloc(cap * sizeof *ring);
    if (!ring)
        return -1;
    size_t n = 0;
    for (size_t k = 0; k < t->rlen; k++) {
        struct job *j = *run_slot(t, k);
        if (j) {
            j->hpos = (uint32_t)n;
            ring[n++] = j;
        }
    }
    free(t->run);
    t->run = ring;
    t->rcap = cap;
    t->rhead = 0;
    t->rlen = t->rlive = n;
    return 0;
}

/* Adds ready job j to t. Returns 0, or -1 if out of memory. */
static int ready_insert(struct tube *t, struct job *j)
{
    const struct job *last = t->rlive ? *run_slot(t, t->rlen - 1) : NULL;
    bool fits = !last || (j->pri == last->pri && j->id > last->id);
    if (fits && t->rlen == t->rcap) {
        size_t cap = t->rcap ? t->rcap * 2 : RUN_MIN;
        /* A quarter holes: squeezing them out is enough, and frees so many
         * slots that the next squeeze is as many appends away. */
        if (t->rcap && t->rlen - t->rlive >= t->rcap / 4)
            cap = t->rcap;
        if (cap > RUN_MAX || run_rebuild(t, cap) < 0)
            fits = false;
    }
    if (!fits)
        return heap_insert(&t->ready, j);
    if (!t->rlive)
        t->rhead = t->rlen = 0;
    j->hpos = (uint32_t)((t->rhead + t->rlen) & (t->rcap - 1));
    j->inrun = 1;
    t->run[j->hpos] = j;
    t->rlen++;
    t->rlive++;
    return 0;
}

/* Takes ready job j out of t. */
static void ready_remove(struct tube *t, struct job *j)
{
    if (!j->inrun) {
        heap_remove(&t->ready, j->hpos);
        return;
    }
    t->run[j->hpos] = NULL;
    j->inrun = 0;
    t->rlive--;
    while (t->rlen && !t->run[t->rhead]) {
        t->rhead = (t->rhead + 1) & (t->rcap - 1);
        t->rlen--;
    }
    while (t->rlen && !*run_slot(t, t->rlen - 1))
        t->rlen--;
    if (!t->rlive) {
        t->rhead = t->rlen = 0;  /* the ring shrank on the way down */
        return;
    }
    /* Too many holes, or a ring far too big for what is left: squeeze (a
     * drained burst gives its memory back on the way down). */
    size_t cap = t->rcap;
    while (cap > RUN_MIN && cap / 4 >= t->rlive)
        cap /= 2;
    if (t->rlen - t->rlive > t->rlive + RUN_SLACK || cap < t->rcap / 2)
        run_rebuild(t, cap);     /* out of memory: the holes stay, harmlessly */
}

static int dtube_less(const void *a, const void *b)
{
    return deadline_less(heap_peek(&((const struct tube *)a)->delay),
                         heap_peek(&((const struct tube *)b)->delay));
}

static void dtube_setpos(void *x, size_t pos) { ((struct tube *)x)->dpos = pos; }

static int paused_less(const void *a, const void *b)
{
    return ((const struct tube *)a)->unpause_at < ((const struct tube *)b)->unpause_at;
}

static void paused_setpos(void *x, size_t pos) { ((struct tube *)x)->ppos = pos; }

static int waiter_less(const void *a, const void *b)
{
    return ((const struct session *)a)->wake < ((const struct session *)b)->wake;
}

static void waiter_setpos(void *x, size_t pos) { ((struct session *)x)->wpos = pos; }

/* ---- records and replies ------------------------------------------------ */

/* Describes j's change to the log. A reserved job is logged as ready: a
 * reservation does not survive a restart. */
static void emit(struct engine *e, enum rec_type type, struct job *j)
{
    if (!e->hooks.record)
        return;
    const struct job_ext *x = j->x ? j->x : &no_ext;
    const struct tube *t = job_tube(e, j);
    struct rec r = {
        .type = type, .id = j->id, .next_id = e->next_id, .pri = j->pri, .delay = x->delay,
        .ttr = j->ttr, .created = j->created, .order = x->order, .reserves = x->reserves,
        .timeouts = x->timeouts, .releases = x->releases, .buries = x->buries,
        .kicks = x->kicks, .tube = t->name, .tube_len = t->name_len,
        .body = job_body(j), .body_len = j->body_len, .seg = j->seg,
    };
    r.state = j->state == J_DELAYED ? REC_DELAYED : j->state == J_BURIED ? REC_BURIED : REC_READY;
    r.deadline = j->state == J_DELAYED ? x->deadline : 0;
    uint32_t seg = e->hooks.record(e->hooks.ctx, &r);
    if (type == REC_JOB)
        j->seg = seg;
}

static void deliver(struct engine *e, struct session *s, const struct reply *r)
{
    if (e->hooks.deliver)
        e->hooks.deliver(e->hooks.ctx, s, r);
}

static void reply_job(struct reply *out, enum rcode code, const struct job *j)
{
    out->code = code;
    out->id = j->id;
    out->body = job_body(j);
    out->body_len = j->body_len;
}

/* ---- tubes -------------------------------------------------------------- */

static size_t name_hash(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 1099511628211ULL;
    return (size_t)h;
}

static struct tube *tube_find(const struct engine *e, const char *name, size_t n)
{
    struct tube *t = e->thash[name_hash(name, n) & (e->thcap - 1)];
    for (; t; t = t->hnext)
        if (t->name_len == n && memcmp(t->name, name, n) == 0)
            return t;
    return NULL;
}

static void thash_insert(struct tube **tab, size_t cap, struct tube *t)
{
    size_t b = name_hash(t->name, t->name_len) & (cap - 1);
    t->hnext = tab[b];
    tab[b] = t;
}

static struct tube *tube_make(struct engine *e, const char *name, size_t n)
{
    if (e->ntubes == e->captubes) {
        size_t cap = e->captubes ? e->captubes * 2 : 16;
        struct tube **p = realloc(e->tubes, cap * sizeof *p);
        if (!p)
            return NULL;
        e->tubes = p;
        e->captubes = cap;
    }
    if (!e->nfree && e->nslot == TUBE_SLOTS)
        return NULL;
    if (!e->nfree && e->nslot == e->capslot) {
        size_t cap = e->capslot ? e->capslot * 2 : 16;
        struct tube **p = (uint64_t)cap <= UINT64_C(1) << 32 ? realloc(e->tslot, cap * sizeof *p)
                                                             : NULL;
        if (!p)
            return NULL;
        e->tslot = p;
        uint32_t *f = realloc(e->tfree, cap * sizeof *f);
        if (!f)
            return NULL; /* tslot is bigger, capslot not yet: fine */
        e->tfree = f;
        e->capslot = cap;
    }
    if (e->ntubes + 1 > e->thcap) {
        size_t cap = e->thcap * 2;
        struct tube **tab = calloc(cap, sizeof *tab);
        if (!tab)
            return NULL;
        for (size_t i = 0; i < e->ntubes; i++)
            thash_insert(tab, cap, e->tubes[i]);
        free(e->thash);
        e->thash = tab;
        e->thcap = cap;
    }
    struct tube *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    assert(n <= TUBE_NAME_MAX);
    memcpy(t->name, name, n);
    t->name_len = n;
    heap_init(&t->ready, ready_less, job_setpos);
    heap_init(&t->delay, deadline_less, job_setpos);
    t->dpos = t->ppos = NPOS;
    t->idx = e->ntubes;
    e->tubes[e->ntubes++] = t;
    t->slot = e->nfree ? e->tfree[--e->nfree] : (uint32_t)e->nslot++;
    e->tslot[t->slot] = t;
    thash_insert(e->thash, e->thcap, t);
    return t;
}

static struct tube *tube_get(struct engine *e, const char *name, size_t n)
{
    struct tube *t = tube_find(e, name, n);
    return t ? t : tube_make(e, name, n);
}

static void tube_ref(struct tube *t) { t->refs++; }

/* Drops a reference; a tube nobody references any more is freed. */
static void tube_unref(struct engine *e, struct tube *t)
{
    assert(t->refs > 0);
    if (--t->refs > 0)
        return;
    assert(!ready_len(t) && !t->delay.len && !t->bhead && !t->whead);
    struct tube **pp = &e->thash[name_hash(t->name, t->name_len) & (e->thcap - 1)];
    while (*pp != t)
        pp = &(*pp)->hnext;
    *pp = t->hnext;
    e->tubes[t->idx] = e->tubes[--e->ntubes];
    e->tubes[t->idx]->idx = t->idx;
    e->tslot[t->slot] = NULL;
    e->tfree[e->nfree++] = t->slot;
    if (t->ppos != NPOS)
        heap_remove(&e->paused, t->ppos);
    heap_destroy(&t->ready);
    free(t->run);
    heap_destroy(&t->delay);
    free(t);
}

/* Keeps t's place in delay_tubes in step with its delayed heap. */
static void delay_tubes_update(struct engine *e, struct tube *t)
{
    if (!t->delay.len) {
        if (t->dpos != NPOS)
            heap_remove(&e->delay_tubes, t->dpos);
        t->dpos = NPOS;
    } else if (t->dpos == NPOS) {
        if (heap_insert(&e->delay_tubes, t) < 0)
            t->dpos = NPOS; /* NEVER: delay_tubes holds at most one slot per tube */
    } else {
        heap_fix(&e->delay_tubes, t->dpos);
    }
}

/* A pause whose time has come is over even before engine_tick() notices, as
 * in beanstalkd's next_awaited_job. */
static bool tube_paused(const struct tube *t, uint64_t now)
{
    return t->pause != 0 && t->unpause_at > now;
}

/* ---- jobs --------------------------------------------------------------- */

/* A malloc'd copy of body[0..n) and a CRLF, or NULL if out of memory. */
static char *body_copy(const char *body, size_t n)
{
    char *copy = malloc(n + 2);
    if (copy) {
        memcpy(copy, body, n);
        memcpy(copy + n, "\r\n", 2);
    }
    return copy;
}

/* A job holding a copy of body[0..n) and a CRLF, with its other fields
 * uninitialised but bodyat. When bodies are paged, the copy is a separate
 * allocation that engine_body_paged() frees, so the job itself is already
 * the size it keeps. Returns NULL if out of memory. */
static struct job *job_alloc(const struct engine *e, const char *body, size_t n)
{
    struct job *j;
    if (e->cfg.page_bodies && n > 0) {
        char *copy = body_copy(body, n);
        j = copy ? malloc(JOB_HEAD + sizeof copy) : NULL;
        if (!j) {
            free(copy);
            return NULL;
        }
        job_set_body(j, copy, B_OWNED);
        return j;
    }
    size_t size = JOB_HEAD + n + 2;
    j = malloc(size < sizeof(struct job) ? sizeof(struct job) : size);
    if (!j)
        return NULL;
    memcpy(j->body, body, n);
    memcpy(j->body + n, "\r\n", 2);
    j->bodyat = B_INLINE;
    return j;
}

/* Frees the job's memory (not its places in tables and queues). */
static void job_release(struct job *j)
{
    if (!j)
        return;
    if (j->bodyat == B_OWNED)
        free((char *)job_body(j));
    free(j->x);
    free(j);
}

/* j's ext, allocated (zeroed) if j has none yet. Returns NULL if out of memory. */
static struct job_ext *job_ext(struct job *j)
{
    if (!j->x)
        j->x = calloc(1, sizeof *j->x);
    return j->x;
}

/* ---- job placement ------------------------------------------------------ */

/* Links and unlinks touch only jobs that are buried or reserved, which have an
 * ext. */
static void buried_append(struct tube *t, struct job *j)
{
    j->x->next = NULL;
    j->x->prev = t->btail;
    if (t->btail)
        t->btail->x->next = j;
    else
        t->bhead = j;
    t->btail = j;
}

static void buried_unlink(struct tube *t, struct job *j)
{
    struct job_ext *x = j->x;
    if (x->prev)
        x->prev->x->next = x->next;
    else
        t->bhead = x->next;
    if (x->next)
        x->next->x->prev = x->prev;
    else
        t->btail = x->prev;
    x->prev = x->next = NULL;
}

static void reserved_link(struct session *s, struct job *j)
{
    j->x->prev = NULL;
    j->x->next = s->rhead;
    if (s->rhead)
        s->rhead->x->prev = j;
    s->rhead = j;
    s->nreserved++;
}

static void reserved_unlink(struct session *s, struct job *j)
{
    struct job_ext *x = j->x;
    if (x->prev)
        x->prev->x->next = x->next;
    else
        s->rhead = x->next;
    if (x->next)
        x->next->x->prev = x->prev;
    x->prev = x->next = NULL;
    s->nreserved--;
}

/* Takes j out of whatever structure holds it, fixing every counter. The job
 * keeps its state field until the caller places it again. */
static void job_detach(struct engine *e, struct job *j)
{
    struct tube *t = job_tube(e, j);
    switch (j->state) {
    case J_READY:
        ready_remove(t, j);
        e->ready_ct--;
        if (j->pri < ENGINE_URGENT) {
            e->urgent_ct--;
            t->urgent--;
        }
        break;
    case J_DELAYED:
        heap_remove(&t->delay, j->hpos);
        e->delayed_ct--;
        delay_tubes_update(e, t);
        break;
    case J_RESERVED:
        heap_remove(&e->reserved, j->hpos);
        reserved_unlink(j->x->owner, j);
        j->x->owner = NULL;
        e->reserved_ct--;
        t->reserved--;
        break;
    case J_BURIED:
        buried_unlink(t, j);
        e->buried_ct--;
        t->buried--;
        break;
    }
}

/* Buries j, which has an ext, at the end of its tube's FIFO. */
static void place_buried(struct engine *e, struct job *j)
{
    j->x->order = e->bury_clock++;
    struct tube *t = job_tube(e, j);
    buried_append(t, j);
    j->state = J_BURIED;
    e->buried_ct++;
    t->buried++;
}

/* What place_ready() and place_delayed_at() return besides 0. PLACE_NONE
 * happens only to a job without an ext (a put or a recovered job), which the
 * caller must then take back out of the job table. */
#define PLACE_BURIED (-1)      /* allocation failed: buried instead */
#define PLACE_NONE (-2)        /* allocation failed: placed nowhere */

/* Puts j in its tube's ready heap; on allocation failure it is buried instead
 * (beanstalkd does the same). Returns 0, PLACE_BURIED or PLACE_NONE. It does
 * not hand the job to a waiting session: call serve() after logging. */
static int place_ready(struct engine *e, struct job *j)
{
    struct tube *t = job_tube(e, j);
    if (ready_insert(t, j) < 0) {
        if (!job_ext(j))
            return PLACE_NONE;
        place_buried(e, j);
        return PLACE_BURIED;
    }
    j->state = J_READY;
    e->ready_ct++;
    if (j->pri < ENGINE_URGENT) {
        e->urgent_ct++;
        t->urgent++;
    }
    return 0;
}

/* Like place_ready(), for the delayed heap until deadline. */
static int place_delayed_at(struct engine *e, struct job *j, uint64_t deadline)
{
    struct tube *t = job_tube(e, j);
    if (!job_ext(j))
        return PLACE_NONE;
    j->x->deadline = deadline;
    if (heap_insert(&t->delay, j) < 0) {
        place_buried(e, j);
        return PLACE_BURIED;
    }
    j->state = J_DELAYED;
    e->delayed_ct++;
    delay_tubes_update(e, t);
    return 0;
}

/* Delays j by its delay, which is not 0 (so j has an ext). */
static int place_delayed(struct engine *e, struct job *j, uint64_t now)
{
    return place_delayed_at(e, j, now + (uint64_t)j->x->delay * ENGINE_NS);
}

static void job_free(struct engine *e, struct job *j)
{
    jtab_del(e, j->id);
    tube_unref(e, job_tube(e, j));
    job_release(j);
}

/* ---- waiting sessions --------------------------------------------------- */

static struct job *soonest_reserved(const struct session *s)
{
    struct job *best = NULL;
    for (struct job *j = s->rhead; j; j = j->x->next)
        if (!best || j->x->deadline < best->x->deadline)
            best = j;
    return best;
}

static bool deadline_soon(const struct session *s, uint64_t now)
{
    struct job *j = soonest_reserved(s);
    return j && now + ENGINE_SAFETY_MARGIN >= j->x->deadline;
}

/* Recomputes when a waiting session must be woken without a job: its
 * reserve-with-timeout ends, or its soonest reservation enters the margin. */
static void waiter_schedule(struct engine *e, struct session *s)
{
    bool have = false;
    uint64_t wake = UINT64_MAX;
    if (s->has_timeout) {
        wake = s->timeout_at;
        have = true;
    }
    struct job *j = soonest_reserved(s);
    if (j) {
        uint64_t d = j->x->deadline;
        uint64_t w = d > ENGINE_SAFETY_MARGIN ? d - ENGINE_SAFETY_MARGIN : 0;
        if (w < wake)
            wake = w;
        have = true;
    }
    if (!have) {
        if (s->wpos != NPOS)
            heap_remove(&e->waiters, s->wpos);
        s->wpos = NPOS;
        return;
    }
    s->wake = wake;
    if (s->wpos != NPOS)
        heap_fix(&e->waiters, s->wpos);
    else if (heap_insert(&e->waiters, s) < 0)
        s->wpos = NPOS; /* NEVER in practice; the session then waits without a timer */
}

static void wait_start(struct engine *e, struct session *s)
{
    s->waiting = true;
    e->waiting_ct++;
    for (size_t i = 0; i < s->nwatch; i++) {
        struct watch *w = &s->watch[i];
        struct tube *t = w->tube;
        w->wnext = NULL;
        w->wprev = t->wtail;
        if (t->wtail)
            t->wtail->wnext = w;
        else
            t->whead = w;
        t->wtail = w;
        t->waiting++;
    }
    waiter_schedule(e, s);
}

static void wait_stop(struct engine *e, struct session *s)
{
    if (!s->waiting)
        return;
    s->waiting = false;
    s->has_timeout = false;
    e->waiting_ct--;
    for (size_t i = 0; i < s->nwatch; i++) {
        struct watch *w = &s->watch[i];
        struct tube *t = w->tube;
        if (w->wprev)
            w->wprev->wnext = w->wnext;
        else
            t->whead = w->wnext;
        if (w->wnext)
            w->wnext->wprev = w->wprev;
        else
            t->wtail = w->wprev;
        w->wprev = w->wnext = NULL;
        t->waiting--;
    }
    if (s->wpos != NPOS)
        heap_remove(&e->waiters, s->wpos);
    s->wpos = NPOS;
}

/* Reserves ready job j for session s at now. Out of memory, j stays where
 * it is, or ends up ready: the caller checks j->state. */
static void reserve(struct engine *e, struct session *s, struct job *j, uint64_t now)
{
    struct job_ext *x = job_ext(j);
    if (!x)
        return;
    job_detach(e, j);
    j->state = J_RESERVED;
    x->owner = s;
    x->deadline = now + (uint64_t)j->ttr * ENGINE_NS;
    x->reserves++;
    if (heap_insert(&e->reserved, j) < 0) {
        /* NEVER in practice: without a TTR timer the job could be held forever,
         * so give it back instead. */
        x->owner = NULL;
        place_ready(e, j);
        return;
    }
    reserved_link(s, j);
    e->reserved_ct++;
    job_tube(e, j)->reserved++;
    emit(e, REC_RESERVE, j);
}

/* Hands ready jobs of tube t to sessions waiting on it, in FIFO order. */
static void serve(struct engine *e, struct tube *t, uint64_t now)
{
    while (!tube_paused(t, now) && ready_len(t) && t->whead) {
        struct session *s = t->whead->s;
        struct job *j = ready_peek(t);
        if (!job_ext(j))
            return; /* out of memory: s keeps waiting */
        wait_stop(e, s);
        reserve(e, s, j, now);
        if (j->state != J_RESERVED)
            return;
        struct reply r = {0};
        reply_job(&r, R_RESERVED, j);
        deliver(e, s, &r);
    }
}

/* The best ready job among s's watched, unpaused tubes, or NULL. */
static struct job *best_ready(const struct session *s, uint64_t now)
{
    struct job *best = NULL;
    for (size_t i = 0; i < s->nwatch; i++) {
        const struct tube *t = s->watch[i].tube;
        if (tube_paused(t, now) || !ready_len(t))
            continue;
        struct job *j = ready_peek(t);
        if (!best || ready_less(j, best))
            best = j;
    }
    return best;
}

/* True if any watched tube has a ready job, paused or not (beanstalkd's
 * conn_ready, which decides DEADLINE_SOON). */
static bool any_ready(const struct session *s)
{
    for (size_t i = 0; i < s->nwatch; i++)
        if (ready_len(s->watch[i].tube))
            return true;
    return false;
}

/* ---- sessions ----------------------------------------------------------- */

static int watch_add(struct session *s, struct tube *t)
{
    if (s->nwatch == s->capwatch) {
        size_t cap = s->capwatch ? s->capwatch * 2 : 4;
        struct watch *p = realloc(s->watch, cap * sizeof *p);
        if (!p)
            return -1;
        s->watch = p;
        s->capwatch = cap;
    }
    s->watch[s->nwatch++] = (struct watch){.tube = t, .s = s};
    tube_ref(t);
    t->watching_ct++;
    return 0;
}

struct session *engine_session_open(struct engine *e, void *ctx, uint64_t now)
{
    (void)now;
    struct session *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->ctx = ctx;
    s->wpos = NPOS;
    if (watch_add(s, e->default_tube) < 0) {
        free(s);
        return NULL;
    }
    s->use = e->default_tube;
    tube_ref(s->use);
    s->use->using_ct++;
    s->snext = e->shead;
    if (e->shead)
        e->shead->sprev = s;
    e->shead = s;
    e->sessions++;
    e->total_sessions++;
    return s;
}

void *engine_session_ctx(const struct session *s) { return s->ctx; }

bool engine_session_waiting(const struct session *s) { return s->waiting; }

void engine_session_hangup(struct engine *e, struct session *s, uint64_t now)
{
    (void)now;
    if (!s->waiting)
        return;
    wait_stop(e, s);
    struct reply r = {.code = R_TIMED_OUT};
    deliver(e, s, &r);
}

void engine_session_close(struct engine *e, struct session *s, uint64_t now)
{
    if (!s)
        return;
    wait_stop(e, s);
    while (s->rhead) {
        struct job *j = s->rhead;
        job_detach(e, j);
        place_ready(e, j);
        serve(e, job_tube(e, j), now);
    }
    s->use->using_ct--;
    tube_unref(e, s->use);
    for (size_t i = 0; i < s->nwatch; i++) {
        s->watch[i].tube->watching_ct--;
        tube_unref(e, s->watch[i].tube);
    }
    if (s->sprev)
        s->sprev->snext = s->snext;
    else
        e->shead = s->snext;
    if (s->snext)
        s->snext->sprev = s->sprev;
    e->sessions--;
    if (s->producer)
        e->producers--;
    if (s->worker)
        e->workers--;
    free(s->watch);
    free(s);
}

static void set_producer(struct engine *e, struct session *s)
{
    if (!s->producer) {
        s->producer = true;
        e->producers++;
    }
}

static void set_worker(struct engine *e, struct session *s)
{
    if (!s->worker) {
        s->worker = true;
        e->workers++;
    }
}

/* ---- engine lifetime ---------------------------------------------------- */

struct engine *engine_new(const struct engine_config *cfg, const struct engine_hooks *hooks,
                          uint64_t now)
{
    struct engine *e = calloc(1, sizeof *e);
    if (!e)
        return NULL;
    e->cfg = *cfg;
    if (hooks)
        e->hooks = *hooks;
    e->next_id = 1;
    e->started = now;
    e->jcap = JTAB_MIN;
    e->jtab = calloc(e->jcap, sizeof *e->jtab);
    e->thcap = 64;
    e->thash = calloc(e->thcap, sizeof *e->thash);
    heap_init(&e->reserved, deadline_less, job_setpos);
    heap_init(&e->delay_tubes, dtube_less, dtube_setpos);
    heap_init(&e->paused, paused_less, paused_setpos);
    heap_init(&e->waiters, waiter_less, waiter_setpos);
    if (!e->jtab || !e->thash || !(e->default_tube = tube_make(e, "default", 7))) {
        engine_free(e);
        return NULL;
    }
    tube_ref(e->default_tube); /* "default" always exists */
    return e;
}

void engine_free(struct engine *e)
{
    if (!e)
        return;
    while (e->shead) {
        struct session *s = e->shead;
        e->shead = s->snext;
        free(s->watch);
        free(s);
    }
    for (size_t i = 0; e->jtab && i < e->jcap; i++)
        job_release(e->jtab[i]);
    for (size_t i = 0; i < e->ntubes; i++) {
        heap_destroy(&e->tubes[i]->ready);
        free(e->tubes[i]->run);
        heap_destroy(&e->tubes[i]->delay);
        free(e->tubes[i]);
    }
    free(e->tubes);
    free(e->tslot);
    free(e->tfree);
    free(e->thash);
    free(e->jtab);
    heap_destroy(&e->reserved);
    heap_destroy(&e->delay_tubes);
    heap_destroy(&e->paused);
    heap_destroy(&e->waiters);
    free(e->kv);
    free(e);
}

void engine_set_draining(struct engine *e) { e->draining = true; }

size_t engine_job_count(const struct engine *e) { return e->njobs; }

size_t engine_tube_count(const struct engine *e) { return e->ntubes; }

/* ---- YAML documents ----------------------------------------------------- */

static struct kv *kv_room(struct engine *e, size_t n)
{
    if (n > e->capkv) {
        size_t cap = e->capkv ? e->capkv : 64;
        while (cap < n)
            cap *= 2;
        struct kv *p = realloc(e->kv, cap * sizeof *p);
        if (!p)
            return NULL;
        e->kv = p;
        e->capkv = cap;
    }
    return e->kv;
}

static struct kv kv_u(const char *k, uint64_t u)
{
    return (struct kv){.key = k, .type = KV_U64, .v.u = u};
}

static struct kv kv_q(const char *k, const char *s, size_t n)
{
    return (struct kv){.key = k, .type = KV_QSTR, .s = s, .n = n};
}

static struct kv kv_s(const char *k, const char *s)
{
    return (struct kv){.key = k, .type = KV_STR, .s = s, .n = strlen(s)};
}

static void reply_kv(struct reply *out, struct engine *e, size_t n)
{
    out->code = R_YAML;
    out->kv = e->kv;
    out->nkv = n;
}

static uint64_t secs_left(uint64_t deadline, uint64_t now)
{
    return deadline > now ? (deadline - now) / ENGINE_NS : 0;
}

static void stats_job(struct engine *e, const struct job *j, uint64_t now, struct reply *out)
{
    struct kv *kv = kv_room(e, 14);
    if (!kv) {
        out->code = R_OUT_OF_MEMORY;
        return;
    }
    const struct job_ext *x = j->x ? j->x : &no_ext;
    uint64_t left = 0;
    if (j->state == J_RESERVED || j->state == J_DELAYED)
        left = secs_left(x->deadline, now);
    size_t n = 0;
    kv[n++] = kv_u("id", j->id);
    const struct tube *t = job_tube(e, j);
    kv[n++] = kv_q("tube", t->name, t->name_len);
    kv[n++] = kv_s("state", state_names[j->state]);
    kv[n++] = kv_u("pri", j->pri);
    kv[n++] = kv_u("age", now > j->created ? (now - j->created) / ENGINE_NS : 0);
    kv[n++] = kv_u("delay", x->delay);
    kv[n++] = kv_u("ttr", j->ttr);
    kv[n++] = kv_u("time-left", left);
    kv[n++] = kv_u("file", 0);
    kv[n++] = kv_u("reserves", x->reserves);
    kv[n++] = kv_u("timeouts", x->timeouts);
    kv[n++] = kv_u("releases", x->releases);
    kv[n++] = kv_u("buries", x->buries);
    kv[n++] = kv_u("kicks", x->kicks);
    reply_kv(out, e, n);
}

static void stats_tube(struct engine *e, const struct tube *t, uint64_t now, struct reply *out)
{
    struct kv *kv = kv_room(e, 14);
    if (!kv) {
        out->code = R_OUT_OF_MEMORY;
        return;
    }
    size_t n = 0;
    kv[n++] = kv_q("name", t->name, t->name_len);
    kv[n++] = kv_u("current-jobs-urgent", t->urgent);
    kv[n++] = kv_u("current-jobs-ready", ready_len(t));
    kv[n++] = kv_u("current-jobs-reserved", t->reserved);
    kv[n++] = kv_u("current-jobs-delayed", t->delay.len);
    kv[n++] = kv_u("current-jobs-buried", t->buried);
    kv[n++] = kv_u("total-jobs", t->total_jobs);
    kv[n++] = kv_u("current-using", t->using_ct);
    kv[n++] = kv_u("current-watching", t->watching_ct);
    kv[n++] = kv_u("current-waiting", t->waiting);
    kv[n++] = kv_u("cmd-delete", t->cmd_delete);
    kv[n++] = kv_u("cmd-pause-tube", t->cmd_pause);
    kv[n++] = kv_u("pause", t->pause / ENGINE_NS);
    kv[n++] = kv_u("pause-time-left", t->pause ? secs_left(t->unpause_at, now) : 0);
    reply_kv(out, e, n);
}

static const enum op stats_ops[] = {
    OP_PUT, OP_PEEK, OP_PEEK_READY, OP_PEEK_DELAYED, OP_PEEK_BURIED, OP_RESERVE,
    OP_RESERVE_TIMEOUT, OP_DELETE, OP_RELEASE, OP_USE, OP_WATCH, OP_IGNORE, OP_BURY,
    OP_KICK, OP_TOUCH, OP_STATS, OP_STATS_JOB, OP_STATS_TUBE, OP_LIST_TUBES,
    OP_LIST_TUBE_USED, OP_LIST_TUBES_WATCHED, OP_PAUSE_TUBE,
};
static const char *const stats_op_keys[] = {
    "cmd-put", "cmd-peek", "cmd-peek-ready", "cmd-peek-delayed", "cmd-peek-buried",
    "cmd-reserve", "cmd-reserve-with-timeout", "cmd-delete", "cmd-release", "cmd-use",
    "cmd-watch", "cmd-ignore", "cmd-bury", "cmd-kick", "cmd-touch", "cmd-stats",
    "cmd-stats-job", "cmd-stats-tube", "cmd-list-tubes", "cmd-list-tube-used",
    "cmd-list-tubes-watched", "cmd-pause-tube",
};
#define NSTATS_OPS (sizeof stats_ops / sizeof stats_ops[0])

static struct kv kv_qs(const char *k, const char *s)
{
    s = s ? s : "";
    return kv_q(k, s, strlen(s));
}

static void stats(struct engine *e, uint64_t now, struct reply *out)
{
    struct kv *kv = kv_room(e, 64);
    if (!kv) {
        out->code = R_OUT_OF_MEMORY;
        return;
    }
    struct engine_info in = {0};
    if (e->hooks.info)
        e->hooks.info(e->hooks.ctx, &in);
    size_t n = 0;
    kv[n++] = kv_u("current-jobs-urgent", e->urgent_ct);
    kv[n++] = kv_u("current-jobs-ready", e->ready_ct);
    kv[n++] = kv_u("current-jobs-reserved", e->reserved_ct);
    kv[n++] = kv_u("current-jobs-delayed", e->delayed_ct);
    kv[n++] = kv_u("current-jobs-buried", e->buried_ct);
    for (size_t i = 0; i < NSTATS_OPS; i++)
        kv[n++] = kv_u(stats_op_keys[i], e->op_ct[stats_ops[i]]);
    kv[n++] = kv_u("job-timeouts", e->timeout_ct);
    kv[n++] = kv_u("total-jobs", e->total_jobs);
    kv[n++] = kv_u("max-job-size", e->cfg.max_job_size);
    kv[n++] = kv_u("current-tubes", e->ntubes);
    kv[n++] = kv_u("current-connections", e->sessions);
    kv[n++] = kv_u("current-producers", e->producers);
    kv[n++] = kv_u("current-workers", e->workers);
    kv[n++] = kv_u("current-waiting", e->waiting_ct);
    kv[n++] = kv_u("total-connections", e->total_sessions);
    kv[n++] = kv_u("pid", in.pid);
    kv[n++] = kv_qs("version", in.version);
    snprintf(e->scratch[0], sizeof e->scratch[0], "%d.%06d", (int)(in.utime_us / 1000000),
             (int)(in.utime_us % 1000000));
    snprintf(e->scratch[1], sizeof e->scratch[1], "%d.%06d", (int)(in.stime_us / 1000000),
             (int)(in.stime_us % 1000000));
    kv[n++] = kv_s("rusage-utime", e->scratch[0]);
    kv[n++] = kv_s("rusage-stime", e->scratch[1]);
    kv[n++] = kv_u("uptime", in.uptime ? in.uptime : (now - e->started) / ENGINE_NS);
    kv[n++] = kv_u("binlog-oldest-index", in.binlog_oldest);
    kv[n++] = kv_u("binlog-current-index", in.binlog_current);
    kv[n++] = kv_u("binlog-records-migrated", in.binlog_migrated);
    kv[n++] = kv_u("binlog-records-written", in.binlog_written);
    kv[n++] = kv_u("binlog-max-size", in.binlog_max_size);
    kv[n++] = (struct kv){.key = "draining", .type = KV_BOOL, .v.b = e->draining};
    kv[n++] = kv_s("id", in.id ? in.id : "");
    kv[n++] = kv_qs("hostname", in.hostname);
    kv[n++] = kv_qs("os", in.os);
    kv[n++] = kv_qs("platform", in.platform);
    reply_kv(out, e, n);
}

/* list-tubes (s == NULL) or list-tubes-watched (the tubes s watches). */
static void list_tubes(struct engine *e, const struct session *s, struct reply *out)
{
    size_t n = s ? s->nwatch : e->ntubes;
    struct kv *kv = kv_room(e, n ? n : 1);
    if (!kv) {
        out->code = R_OUT_OF_MEMORY;
        return;
    }
    for (size_t i = 0; i < n; i++) {
        const struct tube *t = s ? s->watch[i].tube : e->tubes[i];
        kv[i] = (struct kv){.type = KV_ITEM, .s = t->name, .n = t->name_len};
    }
    reply_kv(out, e, n);
}

/* ---- commands ----------------------------------------------------------- */

static void cmd_put(struct engine *e, struct session *s, const struct cmd *c, uint64_t now,
                    struct reply *out)
{
    set_producer(e, s);
    if (e->draining) {
        out->code = R_DRAINING;
        return;
    }
    if (c->body_len > UINT32_MAX) {
        out->code = R_JOB_TOO_BIG; /* NEVER: the parser enforces max-job-size */
        return;
    }
    struct job *j = job_alloc(e, c->body, c->body_len);
    if (!j) {
        out->code = R_OUT_OF_MEMORY;
        return;
    }
    *j = (struct job){.id = e->next_id, .created = now, .tube = s->use->slot, .pri = c->pri,
                      .ttr = c->ttr ? c->ttr : 1, .body_len = (uint32_t)c->body_len,
                      .bodyat = j->bodyat};
    if (c->delay && !job_ext(j)) {
        job_release(j);
        out->code = R_OUT_OF_MEMORY;
        return;
    }
    if (c->delay)
        j->x->delay = c->delay;
    if (jtab_add(e, j) < 0) {
        job_release(j);
        out->code = R_OUT_OF_MEMORY;
        return;
    }
    int r = c->delay ? place_delayed(e, j, now) : place_ready(e, j);
    if (r == PLACE_NONE) {
        jtab_del(e, j->id);
        job_release(j);           /* PLACE_NONE: it has no ext */
        out->code = R_OUT_OF_MEMORY;
        return;
    }
    e->next_id++;
    tube_ref(s->use);
    e->total_jobs++;
    s->use->total_jobs++;
    emit(e, REC_JOB, j);
    out->code = r < 0 ? R_BURIED_ID : R_INSERTED;
    out->id = j->id;
    serve(e, job_tube(e, j), now);
}

static void cmd_reserve(struct engine *e, struct session *s, const struct cmd *c, uint64_t now,
                        struct reply *out)
{
    set_worker(e, s);
    if (deadline_soon(s, now) && !any_ready(s)) {
        out->code = R_DEADLINE_SOON;
        return;
    }
    struct job *j = best_ready(s, now);
    if (j) {
        reserve(e, s, j, now);
        if (j->state == J_RESERVED) {
            reply_job(out, R_RESERVED, j);
            return;
        }
    }
    if (deadline_soon(s, now)) {
        out->code = R_DEADLINE_SOON;
        return;
    }
    bool timed = c->op == OP_RESERVE_TIMEOUT && c->timeout >= 0;
    if (timed && c->timeout == 0) {
        out->code = R_TIMED_OUT;
        return;
    }
    s->has_timeout = timed;
    if (timed)
        s->timeout_at = now + (uint64_t)c->timeout * ENGINE_NS;
    wait_start(e, s);
    out->code = R_NONE;
}

static void cmd_reserve_job(struct engine *e, struct session *s, const struct cmd *c,
                            uint64_t now, struct reply *out)
{
    struct job *j = job_find(e, c->id);
    if (!j || j->state == J_RESERVED) {
        out->code = R_NOT_FOUND;
        return;
    }
    set_worker(e, s);
    reserve(e, s, j, now);
    if (j->state != J_RESERVED) {
        out->code = R_OUT_OF_MEMORY;
        return;
    }
    reply_job(out, R_RESERVED, j);
}

/* The job with id if s has reserved it, else NULL. */
static struct job *own_job(struct engine *e, struct session *s, uint64_t id)
{
    struct job *j = job_find(e, id);
    return j && j->state == J_RESERVED && j->x->owner == s ? j : NULL;
}

static void cmd_delete(struct engine *e, struct session *s, const struct cmd *c,
                       struct reply *out)
{
    struct job *j = job_find(e, c->id);
    if (!j || (j->state == J_RESERVED && j->x->owner != s)) {
        out->code = R_NOT_FOUND;
        return;
    }
    job_detach(e, j);
    job_tube(e, j)->cmd_delete++;
    emit(e, REC_DELETE, j);
    job_free(e, j);
    out->code = R_DELETED;
}

static void cmd_release(struct engine *e, struct session *s, const struct cmd *c, uint64_t now,
                        struct reply *out)
{
    struct job *j = own_job(e, s, c->id);
    if (!j) {
        out->code = R_NOT_FOUND;
        return;
    }
    job_detach(e, j);
    j->pri = c->pri;
    j->x->delay = c->delay;
    j->x->releases++;
    int r = c->delay ? place_delayed(e, j, now) : place_ready(e, j);
    emit(e, REC_RELEASE, j);
    out->code = r < 0 ? R_BURIED : R_RELEASED;
    serve(e, job_tube(e, j), now);
}

static void cmd_bury(struct engine *e, struct session *s, const struct cmd *c, struct reply *out)
{
    struct job *j = own_job(e, s, c->id);
    if (!j) {
        out->code = R_NOT_FOUND;
        return;
    }
    job_detach(e, j);
    j->pri = c->pri;
    j->x->buries++;
    place_buried(e, j);
    emit(e, REC_BURY, j);
    out->code = R_BURIED;
}

static void cmd_touch(struct engine *e, struct session *s, const struct cmd *c, uint64_t now,
                      struct reply *out)
{
    struct job *j = own_job(e, s, c->id);
    if (!j) {
        out->code = R_NOT_FOUND;
        return;
    }
    j->x->deadline = now + (uint64_t)j->ttr * ENGINE_NS;
    heap_fix(&e->reserved, j->hpos);
    out->code = R_TOUCHED;
}

/* Kicks one buried or delayed job to ready. */
static void kick(struct engine *e, struct job *j, uint64_t now)
{
    job_detach(e, j);
    j->x->kicks++;
    place_ready(e, j);
    emit(e, REC_KICK, j);
    serve(e, job_tube(e, j), now);
}

static void cmd_kick(struct engine *e, struct session *s, const struct cmd *c, uint64_t now,
                     struct reply *out)
{
    struct tube *t = s->use;
    /* beanstalkd keeps the bound in an unsigned int: `kick -1` kicks 2^32-1. */
    uint32_t bound = (uint32_t)c->bound, n = 0;
    bool buried = t->bhead != NULL;
    while (n < bound) {
        struct job *j = buried ? t->bhead : heap_peek(&t->delay);
        if (!j)
            break;
        kick(e, j, now);
        n++;
    }
    out->code = R_KICKED_N;
    out->count = n;
}

static void cmd_kick_job(struct engine *e, const struct cmd *c, uint64_t now, struct reply *out)
{
    struct job *j = job_find(e, c->id);
    if (!j || (j->state != J_BURIED && j->state != J_DELAYED)) {
        out->code = R_NOT_FOUND;
        return;
    }
    kick(e, j, now);
    out->code = R_KICKED;
}

static void cmd_use(struct engine *e, struct session *s, const struct cmd *c, struct reply *out)
{
    struct tube *t = tube_get(e, c->name, c->name_len);
    if (!t) {
        out->code = R_OUT_OF_MEMORY;
        return;
    }
    tube_ref(t);
    s->use->using_ct--;
    tube_unref(e, s->use);
    s->use = t;
    t->using_ct++;
    out->code = R_USING;
    out->name = t->name;
    out->name_len = t->name_len;
}

static void cmd_watch(struct engine *e, struct session *s, const struct cmd *c,
                      struct reply *out)
{
    struct tube *t = tube_get(e, c->name, c->name_len);
    if (!t) {
        out->code = R_OUT_OF_MEMORY;
        return;
    }
    bool have = false;
    for (size_t i = 0; i < s->nwatch && !have; i++)
        have = s->watch[i].tube == t;
    if (!have && watch_add(s, t) < 0) {
        tube_ref(t);
        tube_unref(e, t); /* frees t if the failed watch was its only reason to exist */
        out->code = R_OUT_OF_MEMORY;
        return;
    }
    out->code = R_WATCHING;
    out->count = s->nwatch;
}

static void cmd_ignore(struct engine *e, struct session *s, const struct cmd *c,
                       struct reply *out)
{
    size_t i = 0;
    while (i < s->nwatch && !(s->watch[i].tube->name_len == c->name_len &&
                              memcmp(s->watch[i].tube->name, c->name, c->name_len) == 0))
        i++;
    if (i < s->nwatch) {
        if (s->nwatch < 2) {
            out->code = R_NOT_IGNORED;
            return;
        }
        struct tube *t = s->watch[i].tube;
        s->watch[i] = s->watch[--s->nwatch]; /* swap-remove, as beanstalkd */
        t->watching_ct--;
        tube_unref(e, t);
    }
    out->code = R_WATCHING;
    out->count = s->nwatch;
}

static void emit_pause(struct engine *e, const struct tube *t)
{
    if (!e->hooks.record)
        return;
    struct rec r = {.type = REC_PAUSE, .next_id = e->next_id,
                    .delay = (uint32_t)(t->pause / ENGINE_NS), .deadline = t->unpause_at,
                    .tube = t->name, .tube_len = t->name_len};
    e->hooks.record(e->hooks.ctx, &r);
}

static void cmd_pause(struct engine *e, const struct cmd *c, uint64_t now, struct reply *out)
{
    struct tube *t = tube_find(e, c->name, c->name_len);
    if (!t) {
        out->code = R_NOT_FOUND;
        return;
    }
    /* A zero delay pauses for 1 ns, so waiting reservers wake at the next tick. */
    uint64_t d = c->delay ? (uint64_t)c->delay * ENGINE_NS : 1;
    t->pause = d;
    t->unpause_at = now + d;
    t->cmd_pause++;
    if (t->ppos == NPOS) {
        if (heap_insert(&e->paused, t) < 0)
            t->ppos = NPOS; /* NEVER in practice: the pause then lasts until the next one */
    } else {
        heap_fix(&e->paused, t->ppos);
    }
    emit_pause(e, t);
    out->code = R_PAUSED;
}

static void peek(struct reply *out, const struct job *j)
{
    if (j)
        reply_job(out, R_FOUND, j);
    else
        out->code = R_NOT_FOUND;
}

void engine_exec(struct engine *e, struct session *s, const struct cmd *c, uint64_t now,
                 struct reply *out)
{
    assert(!s->waiting);
    memset(out, 0, sizeof *out);
    if ((unsigned)c->op < OP_COUNT)
        e->op_ct[c->op]++;
    switch (c->op) {
    case OP_PUT:
        cmd_put(e, s, c, now, out);
        break;
    case OP_USE:
        cmd_use(e, s, c, out);
        break;
    case OP_RESERVE:
    case OP_RESERVE_TIMEOUT:
        cmd_reserve(e, s, c, now, out);
        break;
    case OP_RESERVE_JOB:
        cmd_reserve_job(e, s, c, now, out);
        break;
    case OP_DELETE:
        cmd_delete(e, s, c, out);
        break;
    case OP_RELEASE:
        cmd_release(e, s, c, now, out);
        break;
    case OP_BURY:
        cmd_bury(e, s, c, out);
        break;
    case OP_TOUCH:
        cmd_touch(e, s, c, now, out);
        break;
    case OP_WATCH:
        cmd_watch(e, s, c, out);
        break;
    case OP_IGNORE:
        cmd_ignore(e, s, c, out);
        break;
    case OP_PEEK:
        peek(out, job_find(e, c->id));
        break;
    case OP_PEEK_READY:
        peek(out, ready_peek(s->use));
        break;
    case OP_PEEK_DELAYED:
        peek(out, heap_peek(&s->use->delay));
        break;
    case OP_PEEK_BURIED:
        peek(out, s->use->bhead);
        break;
    case OP_KICK:
        cmd_kick(e, s, c, now, out);
        break;
    case OP_KICK_JOB:
        cmd_kick_job(e, c, now, out);
        break;
    case OP_STATS_JOB: {
        struct job *j = job_find(e, c->id);
        if (j)
            stats_job(e, j, now, out);
        else
            out->code = R_NOT_FOUND;
        break;
    }
    case OP_STATS_TUBE: {
        struct tube *t = tube_find(e, c->name, c->name_len);
        if (t)
            stats_tube(e, t, now, out);
        else
            out->code = R_NOT_FOUND;
        break;
    }
    case OP_STATS:
        stats(e, now, out);
        break;
    case OP_LIST_TUBES:
        list_tubes(e, NULL, out);
        break;
    case OP_LIST_TUBE_USED:
        out->code = R_USING;
        out->name = s->use->name;
        out->name_len = s->use->name_len;
        break;
    case OP_LIST_TUBES_WATCHED:
        list_tubes(e, s, out);
        break;
    case OP_PAUSE_TUBE:
        cmd_pause(e, c, now, out);
        break;
    case OP_QUIT:
        out->code = R_CLOSE;
        break;
    default:
        out->code = R_UNKNOWN_COMMAND;
        break;
    }
}

void engine_count_error(struct engine *e, struct session *s, enum op op, enum rcode code)
{
    if ((unsigned)op >= OP_COUNT)
        return;
    e->op_ct[op]++;
    /* beanstalkd marks a producer once the put line parsed and fits. */
    if (op == OP_PUT && code == R_EXPECTED_CRLF)
        set_producer(e, s);
}

/* ---- recovery --------------------------------------------------------- */

/* Buries j, which has an ext, in order of its bury order (the log may list
 * buried jobs out of order once compaction has moved some of them forward). */
static void place_buried_ordered(struct engine *e, struct job *j)
{
    struct tube *t = job_tube(e, j);
    struct job_ext *x = j->x;
    struct job *after = t->btail;
    while (after && after->x->order > x->order)
        after = after->x->prev;
    x->prev = after;
    x->next = after ? after->x->next : t->bhead;
    if (x->next)
        x->next->x->prev = j;
    else
        t->btail = j;
    if (after)
        after->x->next = j;
    else
        t->bhead = j;
    j->state = J_BURIED;
    e->buried_ct++;
    t->buried++;
    if (x->order >= e->bury_clock)
        e->bury_clock = x->order + 1;
}

/* Places a recovered job as its record says. */
static int place_recovered(struct engine *e, struct job *j, uint8_t state, uint64_t deadline)
{
    switch (state) {
    case REC_DELAYED:
        return place_delayed_at(e, j, deadline);
    case REC_BURIED:
        place_buried_ordered(e, j);
        return 0;
    default:
        return place_ready(e, j);
    }
}

static int apply_job(struct engine *e, const struct rec *r)
{
    struct job *old = job_find(e, r->id);
    if (old) {
        job_detach(e, old);
        job_free(e, old);
    }
    if (r->body_len > UINT32_MAX || r->tube_len == 0 || r->tube_len > TUBE_NAME_MAX)
        return -1; /* NEVER: the log decoder checks both */
    struct job *j = job_alloc(e, r->body, r->body_len);
    struct tube *t = j ? tube_get(e, r->tube, r->tube_len) : NULL;
    if (!t) {
        job_release(j);
        return -1;
    }
    *j = (struct job){.id = r->id, .created = r->created, .tube = t->slot, .pri = r->pri,
                      .ttr = r->ttr ? r->ttr : 1, .body_len = (uint32_t)r->body_len,
                      .seg = r->seg, .bodyat = j->bodyat};
    if (r->state != REC_READY || r->delay || r->order || r->reserves || r->timeouts ||
        r->releases || r->buries || r->kicks) {
        if (!job_ext(j)) {
            job_release(j);
            return -1;
        }
        *j->x = (struct job_ext){.order = r->order, .delay = r->delay, .reserves = r->reserves,
                                 .timeouts = r->timeouts, .releases = r->releases,
                                 .buries = r->buries, .kicks = r->kicks};
    }
    if (jtab_add(e, j) < 0) {
        job_release(j);
        return -1;
    }
    tube_ref(t);
    if (r->id >= e->next_id)
        e->next_id = r->id + 1;
    if (place_recovered(e, j, r->state, r->deadline) == PLACE_NONE) {
        job_free(e, j);
        return -1;
    }
    return 0;
}

int engine_body_paged(struct engine *e, uint64_t id, uint32_t seg, const char *p)
{
    struct job *j = job_find(e, id);
    if (!j || j->bodyat == B_INLINE)
        return 0;
    if (!p) {
        /* Keep the body in memory after all. */
        if (j->bodyat == B_PAGED) {
            char *copy = body_copy(job_body(j), j->body_len);
            if (!copy)
                return -1;
            job_set_body(j, copy, B_OWNED);
        }
        return 0;
    }
    /* Every snapshot holds the same body bytes. Entries come in log order,
     * so p is newer than where a paged body points now: move there even if a
     * newer snapshot is on its way, or the older segment may be unmapped
     * first. An owned copy waits for the newest snapshot. */
    if (j->seg != seg && j->bodyat != B_PAGED)
        return 0;
    if (j->bodyat == B_OWNED)
        free((char *)job_body(j));
    job_set_body(j, p, B_PAGED);
    return 0;
}

int engine_apply(struct engine *e, const struct rec *r, uint64_t now)
{
    (void)now;
    if (r->type == REC_JOB)
        return apply_job(e, r);
    if (r->type == REC_NEXTID) {
        if (r->next_id > e->next_id)
            e->next_id = r->next_id;
        return 0;
    }
    if (r->type == REC_PAUSE) {
        struct tube *t = tube_get(e, r->tube, r->tube_len);
        if (!t)
            return -1;
        t->pause = r->delay ? (uint64_t)r->delay * ENGINE_NS : 1;
        t->unpause_at = r->deadline;
        if (t->ppos == NPOS)
            return heap_insert(&e->paused, t);
        heap_fix(&e->paused, t->ppos);
        return 0;
    }
    struct job *j = job_find(e, r->id);
    if (!j)
        return 0;
    if (r->type == REC_DELETE) {
        job_detach(e, j);
        job_free(e, j);
        return 0;
    }
    struct job_ext *x = job_ext(j); /* every other update needs it */
    if (!x)
        return -1;
    switch (r->type) {
    case REC_RESERVE:
        x->reserves++;
        break;
    case REC_TIMEOUT:
        x->timeouts++;
        break;
    case REC_RELEASE:
        job_detach(e, j);
        j->pri = r->pri;
        x->delay = r->delay;
        x->releases++;
        return place_recovered(e, j, r->delay ? REC_DELAYED : REC_READY, r->deadline);
    case REC_BURY:
        job_detach(e, j);
        j->pri = r->pri;
        x->buries++;
        x->order = r->order;
        place_buried_ordered(e, j);
        break;
    case REC_KICK:
        job_detach(e, j);
        x->kicks++;
        return place_ready(e, j);
    default:
        break;
    }
    return 0;
}

void engine_recovered(struct engine *e)
{
    /* A PAUSE record can name a tube that no longer has jobs: drop such tubes
     * now that every record has been seen. */
    for (size_t i = e->ntubes; i-- > 0;) {
        struct tube *t = e->tubes[i];
        if (t->refs == 0) {
            tube_ref(t);
            tube_unref(e, t);
        }
    }
}

/* ---- compaction --------------------------------------------------------- */

void engine_foreach_seg(const struct engine *e, void (*fn)(void *ctx, uint32_t seg, size_t bytes),
                        void *ctx)
{
    for (size_t i = 0; i < e->jcap; i++) {
        const struct job *j = e->jtab[i];
        if (j)
            fn(ctx, j->seg, job_tube(e, j)->name_len + j->body_len);
    }
}

bool engine_compact(struct engine *e, uint32_t seg, size_t budget)
{
    while (budget-- > 0) {
        if (e->compact_pos >= e->jcap) {
            e->compact_pos = 0;
            return true;
        }
        struct job *j = e->jtab[e->compact_pos++];
        if (j && j->seg == seg)
            emit(e, REC_JOB, j);
    }
    return false;
}

void engine_snapshot_all(struct engine *e)
{
    for (size_t i = 0; i < e->jcap; i++)
        if (e->jtab[i])
            emit(e, REC_JOB, e->jtab[i]);
}

void engine_log_preamble(struct engine *e, uint64_t now)
{
    if (!e->hooks.record)
        return;
    struct rec r = {.type = REC_NEXTID, .next_id = e->next_id};
    e->hooks.record(e->hooks.ctx, &r);
    for (size_t i = 0; i < e->ntubes; i++) {
        struct tube *t = e->tubes[i];
        if (t->pause && t->unpause_at > now)
            emit_pause(e, t);
    }
}

/* ---- time --------------------------------------------------------------- */

void engine_tick(struct engine *e, uint64_t now)
{
    struct tube *t;
    /* Delayed jobs whose time has come. */
    while ((t = heap_peek(&e->delay_tubes))) {
        struct job *j = heap_peek(&t->delay);
        if (j->x->deadline > now)
            break;
        job_detach(e, j);
        place_ready(e, j);
        serve(e, t, now);
    }
    /* Pauses that ended. */
    while ((t = heap_peek(&e->paused)) && t->unpause_at <= now) {
        heap_remove(&e->paused, 0);
        t->ppos = NPOS;
        t->pause = 0;
        serve(e, t, now);
    }
    /* Waiting reserves: DEADLINE_SOON first, then their own time-out. */
    struct session *s;
    while ((s = heap_peek(&e->waiters)) && s->wake <= now) {
        struct reply r = {.code = deadline_soon(s, now) ? R_DEADLINE_SOON : R_TIMED_OUT};
        if (r.code == R_TIMED_OUT && !(s->has_timeout && s->timeout_at <= now)) {
            waiter_schedule(e, s); /* NEVER: the wake time was stale */
            if (s->wpos != NPOS && s->wake <= now)
                heap_remove(&e->waiters, s->wpos), s->wpos = NPOS;
            continue;
        }
        wait_stop(e, s);
        deliver(e, s, &r);
    }
    /* Reservations whose TTR ran out. */
    struct job *j;
    while ((j = heap_peek(&e->reserved)) && j->x->deadline <= now) {
        struct session *owner = j->x->owner;
        job_detach(e, j);
        j->x->timeouts++;
        e->timeout_ct++;
        place_ready(e, j);
        emit(e, REC_TIMEOUT, j);
        if (owner->waiting)
            waiter_schedule(e, owner);
        serve(e, job_tube(e, j), now);
    }
}

uint64_t engine_next_wakeup(const struct engine *e)
{
    uint64_t t = UINT64_MAX;
    const struct tube *tb = heap_peek(&e->delay_tubes);
    if (tb)
        t = ((const struct job *)heap_peek(&tb->delay))->x->deadline;
    if ((tb = heap_peek(&e->paused)) && tb->unpause_at < t)
        t = tb->unpause_at;
    const struct session *s = heap_peek(&e->waiters);
    if (s && s->wake < t)
        t = s->wake;
    const struct job *j = heap_peek(&e->reserved);
    if (j && j->x->deadline < t)
        t = j->x->deadline;
    return t;
}
