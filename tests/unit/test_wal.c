/* test_wal.c -- the write-ahead log on real files in a temporary directory:
 * replay, rotation, torn and corrupt tails, missing segments, injected I/O
 * failures, group commit, and compaction driven by the real engine. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../../src/engine/engine.h"
#include "../../src/store/record.h"
#include "../../src/store/wal.h"

static char DIRNAME[256];
static char WARN[4096];

static void on_warn(void *ctx, const char *msg)
{
    (void)ctx;
    snprintf(WARN, sizeof WARN, "%s", msg);
}

static void tmpdir_setup(void)
{
    snprintf(DIRNAME, sizeof DIRNAME, "/tmp/docket-wal-test-XXXXXX");
    cr_assert_not_null(mkdtemp(DIRNAME));
    WARN[0] = 0;
}

static void tmpdir_teardown(void)
{
    DIR *d = opendir(DIRNAME);
    struct dirent *de;
    char path[600];
    while (d && (de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        snprintf(path, sizeof path, "%s/%s", DIRNAME, de->d_name);
        unlink(path);
    }
    if (d)
        closedir(d);
    rmdir(DIRNAME);
}

TestSuite(wal, .init = tmpdir_setup, .fini = tmpdir_teardown, .timeout = 60);

/* ---- a record collector ------------------------------------------------- */

struct got {
    uint64_t ids[20000];
    int types[20000];
    uint32_t segs[20000];
    size_t n;
    int fail_at;                   /* make the replay callback fail at this record, 1-based */
};

static int collect(void *ctx, const struct rec *r)
{
    struct got *g = ctx;
    if (g->fail_at && (int)g->n + 1 == g->fail_at)
        return -1;
    if (g->n < 20000) {
        g->ids[g->n] = r->type == REC_NEXTID ? r->next_id : r->id;
        g->types[g->n] = r->type;
        g->segs[g->n] = r->seg;
    }
    g->n++;
    return 0;
}

static struct wal_config cfg_of(uint64_t segsize)
{
    return (struct wal_config){.dir = DIRNAME, .fsync = WAL_FSYNC_ALWAYS,
                               .segment_size = segsize, .warn = on_warn};
}

static struct wal *open_log(const struct wal_config *cfg, struct got *g)
{
    char err[512] = "";
    struct wal *w = wal_open(cfg, collect, g, err, sizeof err);
    cr_assert_not_null(w, "wal_open: %s", err);
    return w;
}

static void wait_synced(struct wal *w, uint64_t seq)
{
    for (int i = 0; i < 5000 && wal_synced(w) < seq && !wal_failed(w); i++)
        usleep(1000);
}

static struct rec job_rec(uint64_t id, size_t body_len)
{
    static char body[70000];
    memset(body, 'b', sizeof body);
    return (struct rec){.type = REC_JOB, .id = id, .pri = 1, .ttr = 5, .tube = "default",
                        .tube_len = 7, .body = body, .body_len = body_len};
}

/* Appends n jobs and hands them to the writer; returns the last sequence
 * number, or 0 if the log refused one. */
static uint64_t try_append_jobs(struct wal *w, uint64_t first, int n, size_t body_len)
{
    uint64_t seq = 0;
    for (int i = 0; i < n && (i == 0 || seq); i++) {
        struct rec r = job_rec(first + (uint64_t)i, body_len);
        seq = wal_append(w, &r, NULL);
    }
    wal_flush(w);
    return seq;
}

static uint64_t append_jobs(struct wal *w, uint64_t first, int n, size_t body_len)
{
    uint64_t seq = try_append_jobs(w, first, n, body_len);
    cr_assert_gt(seq, 0);
    return seq;
}

/* Writes a log of njobs jobs with body_len-byte bodies and closes it. */
static void write_log(const struct wal_config *cfg, int njobs, size_t body_len)
{
    struct got g = {0};
    struct wal *w = open_log(cfg, &g);
    wal_start(w, NULL, NULL);
    append_jobs(w, 1, njobs, body_len);
    wal_close(w);
}

/* Segment files in DIRNAME, sorted. */
static int segment_files(char names[][64], int max)
{
    DIR *d = opendir(DIRNAME);
    struct dirent *de;
    int n = 0;
    while ((de = readdir(d)) && n < max)
        if (strstr(de->d_name, ".wal"))
            snprintf(names[n++], 64, "%.63s", de->d_name);
    closedir(d);
    qsort(names, (size_t)n, 64, (int (*)(const void *, const void *))strcmp);
    return n;
}

static off_t file_size(const char *name)
{
    char path[600];
    snprintf(path, sizeof path, "%s/%s", DIRNAME, name);
    struct stat st;
    cr_assert_eq(stat(path, &st), 0);
    return st.st_size;
}

static void cut_file(const char *name, off_t size)
{
    char path[600];
    snprintf(path, sizeof path, "%s/%s", DIRNAME, name);
    cr_assert_eq(truncate(path, size), 0);
}

static void poke_file(const char *name, off_t off, unsigned char x)
{
    char path[600];
    snprintf(path, sizeof path, "%s/%s", DIRNAME, name);
    int fd = open(path, O_RDWR);
    unsigned char c;
    cr_assert_eq(pread(fd, &c, 1, off), 1);
    c ^= x;
    cr_assert_eq(pwrite(fd, &c, 1, off), 1);
    close(fd);
}

/* Asserts that opening the log fails; returns the message. */
static const char *open_refused(const struct wal_config *cfg)
{
    static char err[512];
    static struct got g;
    memset(&g, 0, sizeof g);
    err[0] = 0;
    cr_assert_null(wal_open(cfg, collect, &g, err, sizeof err));
    return err;
}

/* Overwrites bytes [from, to) of a file with zeros. */
static void zero_range(const char *name, off_t from, off_t to)
{
    char path[600];
    static const char z[4096];
    snprintf(path, sizeof path, "%s/%s", DIRNAME, name);
    int fd = open(path, O_WRONLY);
    cr_assert_geq(fd, 0);
    for (off_t o = from; o < to; o += (off_t)sizeof z) {
        size_t k = to - o < (off_t)sizeof z ? (size_t)(to - o) : sizeof z;
        cr_assert_eq(pwrite(fd, z, k, o), (ssize_t)k);
    }
    close(fd);
}

/* A child appends njobs jobs, waits until they are synced and dies without
 * closing the log, as a crash would leave it. */
static void crash_after(const struct wal_config *cfg, int njobs, size_t body_len)
{
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        char err[256];
        struct got g = {0};
        struct wal *w = wal_open(cfg, collect, &g, err, sizeof err);
        if (!w)
            _exit(3);
        wal_start(w, NULL, NULL);
        uint64_t last = 0;
        for (int i = 0; i < njobs; i++) {
            struct rec r = job_rec(g.n + 1 + (uint64_t)i, body_len);
            last = wal_append(w, &r, NULL);
        }
        wal_flush(w);
        for (int i = 0; i < 5000 && wal_synced(w) < last; i++)
            usleep(1000);
        _exit(wal_synced(w) >= last ? 0 : 4);
    }
    int status;
    waitpid(pid, &status, 0);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %d", status);
}

/* ---- tests -------------------------------------------------------------- */

Test(wal, records_come_back_in_order_after_reopen)
{
    struct got g = {0};
    struct wal_config cfg = cfg_of(0);
    struct wal *w = open_log(&cfg, &g);
    cr_assert_eq(wal_start(w, NULL, NULL), 0);
    uint64_t last = append_jobs(w, 1, 100, 10);
    struct rec del = {.type = REC_DELETE, .id = 7, .tube_len = 7, .body_len = 10};
    wal_append(w, &del, NULL);
    wal_flush(w);
    wait_synced(w, last + 1);
    cr_assert_eq(wal_synced(w), last + 1);
    wal_close(w);

    struct got g2 = {0};
    w = open_log(&cfg, &g2);
    cr_assert_eq(g2.n, 101);
    for (size_t i = 0; i < 100; i++) {
        cr_assert_eq(g2.types[i], REC_JOB);
        cr_assert_eq(g2.ids[i], i + 1);
        cr_assert_eq(g2.segs[i], 1);
    }
    cr_assert_eq(g2.types[100], REC_DELETE);
    cr_assert_eq(wal_appended(w), 101, "sequence numbers continue");
    wal_start(w, NULL, NULL);
    struct rec r = job_rec(500, 1);
    cr_assert_eq(wal_append(w, &r, NULL), 102);
    wal_close(w);
}

Test(wal, segments_rotate_and_each_starts_with_the_preamble)
{
    struct wal_config cfg = cfg_of(4096);
    write_log(&cfg, 200, 100);
    struct wal *w;
    char names[64][64];
    int n = segment_files(names, 64);
    cr_assert_geq(n, 5, "200 records of ~190 bytes in 4 KiB segments");
    for (int i = 0; i < n; i++)
        cr_assert_leq(file_size(names[i]), 4096);
    struct got g2 = {0};
    w = open_log(&cfg, &g2);
    cr_assert_eq(g2.n, 200);
    cr_assert_eq(g2.segs[199], (uint32_t)n);
    wal_close(w);
}

static struct wal *PRE_W;
static int PRE_CALLS;
static void preamble(void *ctx)
{
    (void)ctx;
    PRE_CALLS++;
    struct rec r = {.type = REC_NEXTID, .next_id = 1000 + (uint64_t)PRE_CALLS};
    wal_append(PRE_W, &r, NULL);
}

Test(wal, preamble_records_open_every_segment)
{
    struct got g = {0};
    struct wal_config cfg = cfg_of(2048);
    struct wal *w = open_log(&cfg, &g);
    PRE_W = w;
    PRE_CALLS = 0;
    wal_start(w, preamble, NULL);
    append_jobs(w, 1, 60, 100);
    wal_close(w);
    struct got g2 = {0};
    w = open_log(&cfg, &g2);
    uint32_t seg = 0;
    for (size_t i = 0; i < g2.n; i++) {
        if (g2.segs[i] != seg) {
            cr_assert_eq(g2.types[i], REC_NEXTID, "record %zu opens segment %u", i, g2.segs[i]);
            seg = g2.segs[i];
        }
    }
    cr_assert_eq(PRE_CALLS, (int)seg);
    wal_close(w);
}

/* Cutting the last segment anywhere loses only the records after the cut;
 * the file is truncated to the last whole record, with a warning. */
Test(wal, torn_tail_at_every_byte_is_truncated_to_the_last_whole_record)
{
    struct wal_config cfg = cfg_of(0);
    write_log(&cfg, 5, 40);
    struct wal *w;
    char names[4][64];
    cr_assert_eq(segment_files(names, 4), 1);
    off_t full = file_size(names[0]);
    size_t rec = record_size(&(struct rec){.type = REC_JOB, .tube_len = 7, .body_len = 40});
    char path[600], save[600];
    snprintf(path, sizeof path, "%s/%s", DIRNAME, names[0]);
    snprintf(save, sizeof save, "%s/keep", DIRNAME);
    for (off_t cut = full - 1; cut >= REC_HEADER_SIZE + (off_t)rec * 3; cut--) {
        char cmd[1400];
        snprintf(cmd, sizeof cmd, "cp %s %s", path, save);
        cr_assert_eq(system(cmd), 0);
        cut_file(names[0], cut);
        struct got g2 = {0};
        WARN[0] = 0;
        w = open_log(&cfg, &g2);
        size_t whole = (size_t)(cut - REC_HEADER_SIZE) / rec;
        cr_assert_eq(g2.n, whole, "cut at %lld", (long long)cut);
        if ((size_t)(cut - REC_HEADER_SIZE) % rec) {
            cr_assert(strstr(WARN, names[0]) && strstr(WARN, "offset"), "warning: %s", WARN);
            cr_assert_eq(file_size(names[0]), REC_HEADER_SIZE + (off_t)(whole * rec));
        }
        wal_close(w);
        /* The next run starts a new segment; drop it and restore the file. */
        char names2[4][64];
        int n2 = segment_files(names2, 4);
        for (int i = 1; i < n2; i++) {
            char p2[600];
            snprintf(p2, sizeof p2, "%s/%s", DIRNAME, names2[i]);
            unlink(p2);
        }
        snprintf(cmd, sizeof cmd, "mv %s %s", save, path);
        cr_assert_eq(system(cmd), 0);
    }
}

Test(wal, bit_flip_in_the_last_segment_truncates_there)
{
    struct wal_config cfg = cfg_of(0);
    write_log(&cfg, 10, 40);
    struct wal *w;
    char names[4][64];
    segment_files(names, 4);
    size_t rec = record_size(&(struct rec){.type = REC_JOB, .tube_len = 7, .body_len = 40});
    poke_file(names[0], REC_HEADER_SIZE + (off_t)(rec * 6) + 30, 0x10);
    struct got g2 = {0};
    w = open_log(&cfg, &g2);
    cr_assert_eq(g2.n, 6);
    cr_assert(strstr(WARN, "corrupt record"), "%s", WARN);
    wal_close(w);
}

Test(wal, zeroed_tail_is_truncated)
{
    struct wal_config cfg = cfg_of(0);
    write_log(&cfg, 3, 40);
    struct wal *w;
    char names[4][64];
    segment_files(names, 4);
    off_t size = file_size(names[0]);
    cut_file(names[0], size + 4096);
    struct got g2 = {0};
    w = open_log(&cfg, &g2);
    cr_assert_eq(g2.n, 3);
    cr_assert_eq(file_size(names[0]), size);
    wal_close(w);
}

/* The segment being written is zero-filled ahead of its records (to a 1 MiB
 * boundary, at most its size), so an fdatasync does not have to change the
 * file's size. After a crash the zeros are the end of the log: everything
 * comes back, without a warning, and the zeros are cut off. */
Test(wal, zeros_written_ahead_end_the_log_after_a_crash)
{
    struct wal_config cfg = cfg_of(0);
    crash_after(&cfg, 5, 40);
    char names[4][64];
    cr_assert_eq(segment_files(names, 4), 1);
    size_t rec = record_size(&(struct rec){.type = REC_JOB, .tube_len = 7, .body_len = 40});
    cr_assert_eq(file_size(names[0]), 1 << 20, "zeros written ahead to 1 MiB");
    struct got g = {0};
    struct wal *w = open_log(&cfg, &g);
    cr_assert_eq(g.n, 5);
    cr_assert_eq(WARN[0], 0, "no warning: %s", WARN);
    cr_assert_not(wal_repaired(w));
    cr_assert_eq(file_size(names[0]), REC_HEADER_SIZE + (off_t)(5 * rec));
    wal_close(w);

    /* A small segment is zero-filled to its own size, rounded to a page. */
    tmpdir_teardown();
    tmpdir_setup();
    cfg = cfg_of(5000);
    crash_after(&cfg, 2, 40);
    cr_assert_eq(segment_files(names, 4), 1);
    cr_assert_eq(file_size(names[0]), 8192);
}

/* Bytes other than zeros after the last whole record are a torn write: the
 * log is cut at that record, with a warning, as without zeros ahead. */
Test(wal, a_torn_write_into_the_zeros_is_truncated_with_a_warning)
{
    struct wal_config cfg = cfg_of(0);
    size_t rec = record_size(&(struct rec){.type = REC_JOB, .tube_len = 7, .body_len = 40});
    for (int where = 0; where < 3; where++) {
        tmpdir_teardown();
        tmpdir_setup();
        crash_after(&cfg, 5, 40);
        char names[4][64];
        segment_files(names, 4);
        off_t end = REC_HEADER_SIZE + (off_t)(5 * rec);
        if (where == 0) /* the last record's second half never made it */
            zero_range(names[0], end - (off_t)rec / 2, end);
        else if (where == 1) /* a page of a later write made it, its start did not */
            poke_file(names[0], end + 5000, 0x5a);
        else /* the last record's first byte is wrong */
            poke_file(names[0], end - (off_t)rec, 0x01);
        struct got g = {0};
        WARN[0] = 0;
        struct wal *w = open_log(&cfg, &g);
        size_t whole = where == 1 ? 5 : 4;
        cr_assert_eq(g.n, whole, "case %d", where);
        cr_assert(strstr(WARN, names[0]) && strstr(WARN, "offset"), "case %d: %s", where, WARN);
        cr_assert_eq(file_size(names[0]), REC_HEADER_SIZE + (off_t)(whole * rec), "case %d",
                     where);
        wal_close(w);
    }
}

/* A segment that is finished ends with its last record: the zeros ahead are
 * cut off before the next segment starts, and when the log closes. */
Test(wal, finished_segments_end_with_their_last_record)
{
    struct wal_config cfg = cfg_of(64 * 1024);
    struct got g = {0};
    struct wal *w = open_log(&cfg, &g);
    wal_start(w, NULL, NULL);
    size_t rec = record_size(&(struct rec){.type = REC_JOB, .tube_len = 7, .body_len = 1000});
    uint64_t last = 0;
    for (int b = 0; b < 20; b++) {
        last = append_jobs(w, (uint64_t)b * 10 + 1, 10, 1000);
        wait_synced(w, last);
    }
    char names[16][64];
    int n = segment_files(names, 16);
    cr_assert_geq(n, 3);
    for (int i = 0; i < n - 1; i++) {
        off_t size = file_size(names[i]);
        cr_assert_eq((size - REC_HEADER_SIZE) % (off_t)rec, 0, "%s: %lld bytes", names[i],
                     (long long)size);
    }
    cr_assert_eq(file_size(names[n - 1]), 64 * 1024, "the newest is written ahead");
    wal_close(w);
    off_t size = file_size(names[n - 1]);
    cr_assert_eq((size - REC_HEADER_SIZE) % (off_t)rec, 0, "closed: %lld", (long long)size);
    struct got g2 = {0};
    w = open_log(&cfg, &g2);
    cr_assert_eq(g2.n, 200);
    cr_assert_eq(WARN[0], 0, "%s", WARN);
    wal_close(w);
}

/* A finished segment never ends in zeros (they are cut off before the next
 * segment starts), so zeros there are damage, even when the next segment
 * has no record yet to show a gap in the sequence numbers. */
Test(wal, zeros_at_the_end_of_a_finished_segment_refuse_to_start)
{
    struct wal_config cfg = cfg_of(4096);
    write_log(&cfg, 30, 100);
    char names[16][64];
    int n = segment_files(names, 16);
    cr_assert_geq(n, 2);
    off_t size = file_size(names[n - 2]);
    zero_range(names[n - 2], size - 300, size);
    cut_file(names[n - 1], REC_HEADER_SIZE);
    const char *err = open_refused(&cfg);
    cr_assert(strstr(err, names[n - 2]) && strstr(err, "before the last segment"), "%s", err);
}

Test(wal, corruption_before_the_last_segment_refuses_to_start_unless_repair)
{
    struct wal_config cfg = cfg_of(1024);
    write_log(&cfg, 40, 100);
    struct wal *w;
    char names[64][64];
    int n = segment_files(names, 64);
    cr_assert_geq(n, 3);
    poke_file(names[1], REC_HEADER_SIZE + 40, 0x01);
    const char *err = open_refused(&cfg);
    cr_assert(strstr(err, names[1]) && strstr(err, "offset") && strstr(err, "--repair"), "%s",
              err);
    cfg.repair = true;
    struct got g3 = {0};
    w = open_log(&cfg, &g3);
    cr_assert_lt(g3.n, 40);
    cr_assert_gt(g3.n, 0);
    wal_close(w);
}

Test(wal, a_missing_segment_is_detected)
{
    struct wal_config cfg = cfg_of(1024);
    write_log(&cfg, 40, 100);
    char names[64][64];
    int n = segment_files(names, 64);
    cr_assert_geq(n, 3);
    char path[600];
    snprintf(path, sizeof path, "%s/%s", DIRNAME, names[1]);
    unlink(path);
    const char *err = open_refused(&cfg);
    cr_assert(strstr(err, "missing or duplicated"), "%s", err);
}

Test(wal, a_duplicated_segment_is_detected)
{
    struct wal_config cfg = cfg_of(1024);
    write_log(&cfg, 40, 100);
    char names[64][64];
    int n = segment_files(names, 64);
    /* A copy of segment 1 under the number after the last: its records repeat. */
    char cmd[1400];
    snprintf(cmd, sizeof cmd, "cp %s/%s %s/%020d.wal", DIRNAME, names[0], DIRNAME, n + 5);
    cr_assert_eq(system(cmd), 0);
    const char *err = open_refused(&cfg);
    cr_assert(strstr(err, "missing or duplicated"), "%s", err);
}

Test(wal, an_incomplete_last_segment_header_is_removed)
{
    struct wal_config cfg = cfg_of(0);
    write_log(&cfg, 3, 10);
    struct wal *w;
    char path[600];
    snprintf(path, sizeof path, "%s/%020d.wal", DIRNAME, 9);
    int fd = open(path, O_CREAT | O_WRONLY, 0644);
    cr_assert_eq(write(fd, "DOCK", 4), 4);
    close(fd);
    struct got g2 = {0};
    w = open_log(&cfg, &g2);
    cr_assert_eq(g2.n, 3);
    cr_assert_neq(access(path, F_OK), 0);
    wal_close(w);
}

/* ---- injected faults ---------------------------------------------------- */

static atomic_int WRITES, SYNCS, FAIL_WRITE_AT, FAIL_SYNC_AT, FAIL_ERRNO, SHORT_WRITE;
static atomic_int SYNC_DELAY_US; /* fdatasyncs off MAIN take this much longer */

/* Which thread wrote and synced last: 1 the test's own (MAIN), 0 another
 * (the writer). FAIL_SYNC_ON_MAIN fails fdatasyncs made on MAIN only. */
static pthread_t MAIN;
static atomic_int WRITE_ON_MAIN, SYNC_ON_MAIN, FAIL_SYNC_ON_MAIN;

static ssize_t fake_write(int fd, const void *p, size_t n)
{
    WRITE_ON_MAIN = pthread_equal(pthread_self(), MAIN);
    int k = ++WRITES;
    if (k == FAIL_WRITE_AT) {
        if (SHORT_WRITE && n > 1) {
            ssize_t r = write(fd, p, n / 2);
            (void)r;
        }
        errno = FAIL_ERRNO;
        return -1;
    }
    return write(fd, p, n);
}

static int fake_fdatasync(int fd)
{
    bool on_main = pthread_equal(pthread_self(), MAIN);
    SYNC_ON_MAIN = on_main;
    if (on_main && FAIL_SYNC_ON_MAIN) {
        errno = EIO;
        return -1;
    }
    if (!on_main && SYNC_DELAY_US)
        usleep((useconds_t)SYNC_DELAY_US);
    int k = ++SYNCS;
    if (k == FAIL_SYNC_AT) {
        errno = FAIL_ERRNO;
        return -1;
    }
    return fdatasync(fd);
}

static atomic_int PWRITES, FAIL_PWRITE_AT;

static ssize_t fake_pwrite(int fd, const void *p, size_t n, off_t off)
{
    if (++PWRITES == FAIL_PWRITE_AT) {
        errno = FAIL_ERRNO;
        return -1;
    }
    return pwrite(fd, p, n, off);
}

static const struct wal_io fake_io = {.write = fake_write, .fdatasync = fake_fdatasync,
                                      .pwrite = fake_pwrite};

static void reset_faults(void)
{
    WRITES = SYNCS = FAIL_WRITE_AT = FAIL_SYNC_AT = SHORT_WRITE = SYNC_DELAY_US = 0;
    PWRITES = FAIL_PWRITE_AT = 0;
    FAIL_ERRNO = EIO;
}

/* A started log on fake_io (faults reset, syscalls counted) under policy
 * fsync; *cfg is filled for reopening. */
static struct wal *start_counted(struct wal_config *cfg, int64_t fsync)
{
    reset_faults();
    struct got g = {0};
    *cfg = cfg_of(0);
    cfg->io = &fake_io;
    cfg->fsync = fsync;
    struct wal *w = open_log(cfg, &g);
    wal_start(w, NULL, NULL);
    return w;
}

/* Fails the Nth write (whole or short, EIO or ENOSPC), the Nth fsync or the
 * Nth write of zeros ahead (EIO); after each failure nothing past the last
 * successful sync is reported synced, the log stays failed, and a reopen
 * replays a prefix that covers all of it. Zeros that hit ENOSPC only stop
 * the zeros: the records are appended and nothing fails. */
Test(wal, a_failed_write_or_fsync_is_sticky_and_never_reported_synced)
{
    const int errs[] = {EIO, ENOSPC};
    for (int mode = 0; mode < 4; mode++) {
        for (int e = 0; e < 2; e++) {
            for (int nth = 1; nth <= 6; nth++) {
                tmpdir_teardown();
                tmpdir_setup();
                reset_faults();
                FAIL_ERRNO = errs[e];
                if (mode == 2)
                    FAIL_SYNC_AT = nth;
                else if (mode == 3)
                    FAIL_PWRITE_AT = nth;
                else
                    FAIL_WRITE_AT = nth;
                if (mode < 2)
                    SHORT_WRITE = mode == 1;
                struct got g = {0};
                struct wal_config cfg = cfg_of(2048);
                cfg.io = &fake_io;
                struct wal *w = open_log(&cfg, &g);
                wal_start(w, NULL, NULL);
                uint64_t synced_before_failure = 0;
                for (int batch = 0; batch < 8; batch++) {
                    uint64_t last = try_append_jobs(w, (uint64_t)batch * 10 + 1, 10, 100);
                    if (!last)
                        break;
                    wait_synced(w, last);
                    if (!wal_failed(w))
                        synced_before_failure = wal_synced(w);
                }
                if (mode == 3 && errs[e] == ENOSPC) {
                    cr_assert_eq(wal_failed(w), 0, "nth %d", nth);
                    cr_assert_eq(wal_synced(w), 80, "nth %d", nth);
                    wal_close(w);
                    struct got g2 = {0};
                    cfg.io = NULL;
                    w = open_log(&cfg, &g2);
                    cr_assert_eq(g2.n, 80, "nth %d", nth);
                    cr_assert_eq(WARN[0], 0, "nth %d: %s", nth, WARN);
                    wal_close(w);
                    continue;
                }
                cr_assert_neq(wal_failed(w), 0, "mode %d nth %d", mode, nth);
                cr_assert_eq(wal_synced(w), synced_before_failure, "mode %d nth %d", mode, nth);
                struct rec r = job_rec(999, 1);
                cr_assert_eq(wal_append(w, &r, NULL), 0, "a failed log takes no more records");
                wal_close(w);
                struct got g2 = {0};
                cfg.io = NULL;
                w = open_log(&cfg, &g2);
                cr_assert_geq(g2.n, synced_before_failure, "mode %d nth %d", mode, nth);
                wal_close(w);
            }
        }
    }
}

Test(wal, one_fdatasync_covers_a_whole_batch)
{
    struct wal_config cfg;
    struct wal *w = start_counted(&cfg, WAL_FSYNC_ALWAYS);
    wait_synced(w, 0);
    usleep(20000);
    int before = SYNCS;
    uint64_t last = append_jobs(w, 1, 1000, 50);
    wait_synced(w, last);
    cr_assert_eq(wal_synced(w), last);
    cr_assert_leq(SYNCS - before, 2, "1000 records, %d syncs", SYNCS - before);
    wal_close(w);
}

/* fsync=always: records no reply waits for are written but get no fdatasync
 * of their own; asking for them (wal_commit with want) syncs them. */
Test(wal, a_batch_nobody_waits_for_is_written_but_not_synced)
{
    struct wal_config cfg;
    struct wal *w = start_counted(&cfg, WAL_FSYNC_ALWAYS);
    struct rec r = job_rec(1, 50);
    uint64_t first = wal_append(w, &r, NULL);
    wal_flush(w);
    wait_synced(w, first);
    int writes = WRITES, syncs = SYNCS;
    r = job_rec(2, 50);
    uint64_t second = wal_append(w, &r, NULL);
    wal_commit(w, 0, false);
    for (int i = 0; i < 2000 && WRITES == writes; i++)
        usleep(1000);
    usleep(20000);
    cr_assert_eq(WRITES, writes + 1, "the record was written");
    cr_assert_eq(SYNCS, syncs, "but not synced");
    cr_assert_eq(wal_synced(w), first);
    wal_commit(w, second, false);
    wait_synced(w, second);
    cr_assert_eq(wal_synced(w), second);
    cr_assert_eq(SYNCS, syncs + 1);
    wal_close(w);
}

/* Appends job *id (then counts it up) and commits it with wait, and with a
 * want if want, until the test's thread did the work itself: the writer
 * must be asleep for that, and a try that found it awake went to the writer
 * instead. Returns the job's sequence number. */
static uint64_t commit_on_main(struct wal *w, uint64_t *id, bool want)
{
    for (int tries = 0; tries < 400; tries++) {
        usleep(5000);
        WRITE_ON_MAIN = SYNC_ON_MAIN = -1;
        int writes = WRITES;
        struct rec r = job_rec((*id)++, 40);
        uint64_t seq = wal_append(w, &r, NULL);
        bool synced = wal_commit(w, want ? seq : 0, true);
        if (want ? synced && SYNC_ON_MAIN != 0 : WRITES == writes + 1 && WRITE_ON_MAIN == 1)
            return seq;
        if (want)
            wait_synced(w, seq);
    }
    cr_assert_fail("the writer never slept");
    return 0;
}

/* fsync=always with wait: while the writer sleeps, the caller's thread
 * writes and syncs the batch itself, and wal_synced() covers it on return.
 * Records nobody waits for are written there too and synced with the next
 * sync, which the caller's thread makes if the writer sleeps. A failed sync
 * on the caller's thread is sticky and reports nothing more synced. */
Test(wal, always_with_wait_syncs_on_the_callers_thread)
{
    struct wal_config cfg;
    MAIN = pthread_self();
    struct wal *w = start_counted(&cfg, WAL_FSYNC_ALWAYS);
    uint64_t id = 1;
    wait_synced(w, append_jobs(w, id, 10, 30));
    id += 10;

    int syncs = SYNCS;
    uint64_t a = commit_on_main(w, &id, true);
    cr_assert_eq(wal_synced(w), a);
    cr_assert_eq(SYNC_ON_MAIN, 1, "synced on the caller's thread");
    cr_assert_geq(SYNCS, syncs + 1);

    /* No reply waits (a reservation): written here, not synced. */
    syncs = SYNCS;
    uint64_t b = commit_on_main(w, &id, false);
    usleep(20000);
    cr_assert_eq(SYNCS, syncs, "not synced");
    cr_assert_lt(wal_synced(w), b);

    /* A want for records already written: the caller's thread syncs them,
     * with nothing new to write. */
    uint64_t x = b;
    bool done = false;
    for (int tries = 0; tries < 400 && !done; tries++) {
        usleep(5000);
        int writes = WRITES;
        SYNC_ON_MAIN = -1;
        done = wal_commit(w, x, true);
        if (done) {
            cr_assert_eq(wal_synced(w), x);
            cr_assert_eq(SYNC_ON_MAIN, 1);
            cr_assert_eq(WRITES, writes, "nothing to write");
        } else {
            wait_synced(w, x);
            x = commit_on_main(w, &id, false);
        }
    }
    cr_assert(done, "the writer never slept");

    /* Wanted without wait: the writer syncs it. */
    struct rec r = job_rec(id++, 40);
    uint64_t c = wal_append(w, &r, NULL);
    cr_assert_not(wal_commit(w, c, false));
    wait_synced(w, c);
    cr_assert_eq(wal_synced(w), c, "a wanted record is synced");
    cr_assert_eq(SYNC_ON_MAIN, 0, "by the writer");

    /* A failed sync on the caller's thread. */
    FAIL_SYNC_ON_MAIN = 1;
    uint64_t good = wal_synced(w);
    commit_on_main(w, &id, true);
    FAIL_SYNC_ON_MAIN = 0;
    cr_assert_eq(wal_failed(w), EIO);
    cr_assert_eq(wal_synced(w), good, "nothing past the last good sync");
    wal_close(w);
}

/* After its fdatasync fails, the writer still has records a reply wanted
 * synced; it must go to sleep, not loop on a sync it will never make. */
Test(wal, a_failed_sync_leaves_the_writer_asleep)
{
    struct wal_config cfg;
    struct wal *w = start_counted(&cfg, WAL_FSYNC_ALWAYS);
    wait_synced(w, append_jobs(w, 1, 10, 30));
    FAIL_SYNC_AT = SYNCS + 1;
    uint64_t last = append_jobs(w, 11, 10, 30);
    wait_synced(w, last);
    cr_assert_eq(wal_failed(w), EIO);
    usleep(20000);
    struct timespec t0, t1;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t0);
    usleep(300000);
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t1);
    double ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
    cr_assert_lt(ms, 60.0, "%.1f ms of CPU in the 300 ms after the failure", ms);
    wal_close(w);
}

/* fsync=never: the caller's thread writes the batch itself while the writer
 * sleeps, so the records are written when wal_flush() returns; a failed
 * write there is as sticky as in the writer. */
Test(wal, never_policy_writes_on_the_callers_thread)
{
    struct wal_config cfg;
    struct wal *w = start_counted(&cfg, WAL_FSYNC_NEVER);
    wait_synced(w, append_jobs(w, 1000, 1, 30)); /* the writer opens the segment */
    usleep(20000);                               /* and goes to sleep */
    int syncs = SYNCS;                           /* creating it synced the header */
    for (int i = 0; i < 20; i++) {
        uint64_t last = append_jobs(w, (uint64_t)i * 5 + 1, 5, 30);
        cr_assert_eq(wal_synced(w), last, "batch %d written on return", i);
    }
    cr_assert_eq(SYNCS, syncs, "never: no fdatasync while running");
    uint64_t before = wal_synced(w);
    FAIL_WRITE_AT = WRITES + 1;
    try_append_jobs(w, 500, 3, 30);
    cr_assert_eq(wal_failed(w), EIO);
    cr_assert_eq(wal_synced(w), before);
    struct rec r = job_rec(999, 1);
    cr_assert_eq(wal_append(w, &r, NULL), 0, "a failed log takes no more records");
    wal_close(w);
    struct got g2 = {0};
    cfg.io = NULL;
    w = open_log(&cfg, &g2);
    cr_assert_eq(g2.n, before, "every record written before the failure is there");
    wal_close(w);
}

/* Whether the log's event fd is readable within ms. */
static bool poked(struct wal *w, int ms)
{
    struct pollfd p = {.fd = wal_event_fd(w), .events = POLLIN};
    return poll(&p, 1, ms) == 1;
}

/* Reads and resets the log's event fd: how many pokes since the last read. */
static uint64_t pokes(struct wal *w)
{
    uint64_t n = 0;
    if (read(wal_event_fd(w), &n, sizeof n) != (ssize_t)sizeof n)
        return 0;
    return n;
}

/* fsync=never: a held reply waits for its records' write(2). wal_commit()
 * says when the caller's thread wrote them; a batch the writer must take
 * (zeros to write ahead first) pokes the event fd once written if a reply
 * wants it, and not otherwise. */
Test(wal, never_policy_tells_when_a_wanted_record_is_written)
{
    struct wal_config cfg;
    struct wal *w = start_counted(&cfg, WAL_FSYNC_NEVER);
    wait_synced(w, append_jobs(w, 1, 1, 30)); /* the writer opens the segment */
    usleep(20000);                            /* and goes to sleep */
    wal_event_ack(w);

    struct rec r = job_rec(2, 30);
    uint64_t a = wal_append(w, &r, NULL);
    cr_assert(wal_commit(w, a, false), "written on the caller's thread");
    cr_assert_eq(wal_synced(w), a);
    cr_assert_not(poked(w, 0), "nothing to tell");

    /* A batch of 1.5 MiB crosses the zeros written ahead: the writer takes it. */
    uint64_t b = 0;
    for (int i = 0; i < 25; i++) {
        r = job_rec(100 + (uint64_t)i, 64000);
        b = wal_append(w, &r, NULL);
    }
    cr_assert_not(wal_commit(w, b, false), "left to the writer");
    cr_assert(poked(w, 5000), "poked once written");
    cr_assert_eq(wal_synced(w), b);
    /* Once, not once more after the writer's turn (it announces a write
     * before any sync): the eventfd's counter is the number of pokes. */
    usleep(50000);
    cr_assert_eq(pokes(w), 1, "one poke for one wanted write");

    /* Nobody waits (a reservation): written, and no poke. */
    uint64_t c = 0;
    for (int i = 0; i < 25; i++) {
        r = job_rec(200 + (uint64_t)i, 64000);
        c = wal_append(w, &r, NULL);
    }
    cr_assert_not(wal_commit(w, 0, false));
    wait_synced(w, c);
    cr_assert_eq(wal_synced(w), c);
    cr_assert_not(poked(w, 50), "no reply waited");
    wal_close(w);
}

/* fsync=MS: a wanted record that the caller's thread writes while the
 * writer is inside its interval's fdatasync is the caller's to tell (its
 * wal_commit() says so); the writer, when its sync ends, must not poke for
 * it. (It did: it poked whenever wal_synced() had moved during its turn.) */
Test(wal, ms_policy_pokes_only_for_the_writers_own_writes)
{
    struct wal_config cfg;
    struct wal *w = start_counted(&cfg, 20);
    wait_synced(w, append_jobs(w, 1, 1, 30));
    SYNC_DELAY_US = 300000;
    usleep(60000); /* the writer is in its interval's (slow) sync */
    pokes(w);

    struct rec r = job_rec(2, 30);
    uint64_t b = wal_append(w, &r, NULL);
    bool mine = wal_commit(w, b, false);
    if (mine)
        cr_assert_eq(wal_synced(w), b);
    usleep(500000); /* the sync ends, the writer's turn with it */
    cr_assert_geq(wal_synced(w), b);
    cr_assert_eq(pokes(w), mine ? 0 : 1, "a poke only for what the writer wrote");
    SYNC_DELAY_US = 0;
    wal_close(w);
}

static uint32_t SAVED_SEG;
static uint64_t SAVED_OFF;
static size_t SAVED_LEN;

static int save_where(void *ctx, const struct rec *r)
{
    (void)ctx;
    if (r->type == REC_JOB) {
        SAVED_SEG = r->seg;
        SAVED_OFF = r->off + record_body_offset(r->tube_len);
        SAVED_LEN = r->body_len;
    }
    return 0;
}

/* A written JOB record's body can be read back through the log's mapping,
 * and after a reopen from where replay said the record is. */
Test(wal, bodies_are_read_back_from_the_log)
{
    struct got g = {0};
    struct wal_config cfg = cfg_of(4096);
    struct wal *w = open_log(&cfg, &g);
    wal_start(w, NULL, NULL);
    const char *ptrs[40];
    char bodies[40][48];
    for (int i = 0; i < 40; i++) {
        snprintf(bodies[i], sizeof bodies[i], "body number %d of forty", i);
        struct rec r = job_rec((uint64_t)i + 1, 0);
        r.body = bodies[i];
        r.body_len = strlen(bodies[i]);
        uint32_t seg;
        uint64_t seq = wal_append(w, &r, &seg);
        uint64_t off = wal_last_offset(w) + record_body_offset(r.tube_len);
        wal_flush(w);
        for (int k = 0; k < 5000 && wal_written(w) < seq; k++)
            usleep(1000);
        cr_assert_geq(wal_written(w), seq);
        ptrs[i] = wal_body_at(w, seg, off, r.body_len);
        cr_assert_not_null(ptrs[i]);
        cr_assert_eq(memcmp(ptrs[i], bodies[i], r.body_len), 0, "job %d", i);
    }
    for (int i = 0; i < 40; i++)
        cr_assert_eq(memcmp(ptrs[i], bodies[i], strlen(bodies[i])), 0, "job %d, later", i);
    cr_assert_null(wal_body_at(w, 999999, 0, 1), "no such segment");
    wal_close(w);

    char err[256];
    w = wal_open(&cfg, save_where, NULL, err, sizeof err);
    cr_assert_not_null(w, "%s", err);
    cr_assert_eq(SAVED_LEN, strlen(bodies[39]));
    const char *p = wal_body_at(w, SAVED_SEG, SAVED_OFF, SAVED_LEN);
    cr_assert_not_null(p);
    cr_assert_eq(memcmp(p, bodies[39], SAVED_LEN), 0, "the replayed record's body is there");
    wal_close(w);
}

Test(wal, fsync_interval_policy_syncs_without_new_records)
{
    struct wal_config cfg;
    struct wal *w = start_counted(&cfg, 20);
    append_jobs(w, 1, 10, 50);
    for (int i = 0; i < 200 && SYNCS == 0; i++)
        usleep(5000);
    cr_assert_geq(SYNCS, 1, "an interval sync happened");
    wal_close(w);
}

Test(wal, replay_failure_is_reported)
{
    struct wal_config cfg = cfg_of(0);
    write_log(&cfg, 3, 10);
    struct got g2 = {.fail_at = 2};
    char err[512] = "";
    cr_assert_null(wal_open(&cfg, collect, &g2, err, sizeof err));
    cr_assert(strstr(err, "out of memory"), "%s", err);
}

/* ---- compaction with the real engine ------------------------------------ */

struct pair {
    struct engine *e;
    struct wal *w;
};

static uint32_t rec_hook(void *ctx, const struct rec *r)
{
    struct pair *p = ctx;
    uint32_t seg = 0;
    wal_append(p->w, r, &seg);
    return seg;
}

static void pre_hook(void *ctx)
{
    struct pair *p = ctx;
    engine_log_preamble(p->e, 0);
}

static bool compact_hook(void *ctx, uint32_t seg, size_t budget)
{
    struct pair *p = ctx;
    return engine_compact(p->e, seg, budget);
}

static int apply_hook(void *ctx, const struct rec *r)
{
    struct pair *p = ctx;
    return engine_apply(p->e, r, 0);
}

static void note_live(void *ctx, uint32_t seg, size_t bytes)
{
    struct pair *p = ctx;
    wal_note_live(p->w, seg, bytes);
}

static struct pair open_pair(const struct wal_config *cfg)
{
    struct pair p = {0};
    struct engine_config ec = {.max_job_size = 65535};
    struct engine_hooks h = {.ctx = &p, .record = rec_hook};
    p.e = engine_new(&ec, &h, 0);
    char err[512] = "";
    p.w = wal_open(cfg, apply_hook, &p, err, sizeof err);
    cr_assert_not_null(p.w, "%s", err);
    engine_recovered(p.e);
    return p;
}

Test(wal, churn_keeps_disk_use_proportional_to_live_jobs)
{
    static char body[200];
    memset(body, 'x', sizeof body);
    struct wal_config cfg = cfg_of(16384);
    struct pair *p = malloc(sizeof *p);
    *p = open_pair(&cfg);
    /* The engine's hooks point at p: re-create it now that p has its place. */
    engine_free(p->e);
    struct engine_config ec = {.max_job_size = 65535};
    struct engine_hooks h = {.ctx = p, .record = rec_hook};
    p->e = engine_new(&ec, &h, 0);
    wal_start(p->w, pre_hook, p);
    struct session *s = engine_session_open(p->e, NULL, 0);
    struct reply r;
    /* 50 long-lived jobs (buried, delayed, ready) and heavy churn around them. */
    for (int i = 0; i < 50; i++) {
        struct cmd c = {.op = OP_PUT, .ttr = 60, .delay = i % 3 == 1 ? 100000 : 0, .body = body,
                        .body_len = sizeof body};
        engine_exec(p->e, s, &c, 0, &r);
    }
    uint64_t max_disk = 0;
    for (int i = 0; i < 20000; i++) {
        struct cmd c = {.op = OP_PUT, .ttr = 60, .pri = 5000, .body = body, .body_len = sizeof body};
        engine_exec(p->e, s, &c, 0, &r);
        struct cmd d = {.op = OP_DELETE, .id = r.id};
        engine_exec(p->e, s, &d, 0, &r);
        if (i % 50 == 0) {
            wal_maintain(p->w, compact_hook, p);
            wal_flush(p->w);
        }
        struct wal_stats st;
        wal_get_stats(p->w, &st);
        if (st.disk_bytes > max_disk)
            max_disk = st.disk_bytes;
    }
    for (int i = 0; i < 200; i++)
        wal_maintain(p->w, compact_hook, p);
    wal_flush(p->w);
    struct wal_stats st;
    wal_get_stats(p->w, &st);
    cr_assert_gt(st.migrated, 0, "compaction moved jobs forward");
    cr_assert_lt(max_disk, 200 * 1024, "20000 puts of 200 bytes stayed within %llu bytes",
                 (unsigned long long)max_disk);
    engine_session_close(p->e, s, 0);
    wal_close(p->w);
    engine_free(p->e);
    /* Everything live comes back, and the files on disk are few. */
    char names[64][64];
    cr_assert_leq(segment_files(names, 64), 20);
    struct pair q = open_pair(&cfg);
    cr_assert_eq(engine_job_count(q.e), 50);
    engine_foreach_seg(q.e, note_live, &q);
    wal_close(q.w);
    engine_free(q.e);
    free(p);
}

/* ---- simulated power loss ----------------------------------------------- */

static int SYNCLOG = -1;           /* child: where each fdatasync's durable size goes */

/* fdatasync that, once the data is durable, records "F <file> <end> <size>":
 * the file offset (where the log's next record goes: what is durable ends
 * there) and the file size (the zeros written ahead are durable too). */
static int logging_fdatasync(int fd)
{
    int rc = fdatasync(fd);
    if (rc == 0) {
        char link[64], path[512], line[700];
        snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
        ssize_t n = readlink(link, path, sizeof path - 1);
        struct stat st;
        off_t end = lseek(fd, 0, SEEK_CUR);
        if (n > 0 && end >= 0 && fstat(fd, &st) == 0) {
            path[n] = 0;
            int len = snprintf(line, sizeof line, "F %s %lld %lld\n", path, (long long)end,
                               (long long)st.st_size);
            ssize_t k = write(SYNCLOG, line, (size_t)len);
            (void)k;
        }
    }
    return rc;
}

static const struct wal_io logging_io = {.write = write, .fdatasync = logging_fdatasync};

/* The child: appends jobs in batches and reports what is synced, then dies
 * at a random moment without closing anything. */
/* Segments of 8 KiB with zeros written ahead 1 KiB at a time: crashes land
 * between zero-fills, rotations and trims. */
static struct wal_config power_cfg(void)
{
    struct wal_config cfg = cfg_of(8192);
    cfg.prealloc_chunk = 1024;
    return cfg;
}

static void power_loss_child(unsigned seed, const char *synclog)
{
    SYNCLOG = open(synclog, O_WRONLY | O_CREAT | O_APPEND, 0644);
    struct wal_config cfg = power_cfg();
    cfg.io = &logging_io;
    char err[256];
    struct got g = {0};
    struct wal *w = wal_open(&cfg, collect, &g, err, sizeof err);
    if (!w)
        _exit(3);
    uint64_t id = g.n + 1;
    wal_start(w, NULL, NULL);
    int batches = 1 + (int)(rand_r(&seed) % 40);
    uint64_t reported = 0;
    for (int b = 0; b < batches; b++) {
        int n = 1 + (int)(rand_r(&seed) % 30);
        for (int i = 0; i < n; i++) {
            struct rec r = job_rec(id++, 1 + rand_r(&seed) % 300);
            wal_append(w, &r, NULL);
        }
        wal_flush(w);
        usleep(rand_r(&seed) % 3000);
        uint64_t s = wal_synced(w);
        if (s > reported) {
            char line[64];
            int len = snprintf(line, sizeof line, "S %llu\n", (unsigned long long)s);
            ssize_t k = write(SYNCLOG, line, (size_t)len);
            (void)k;
            reported = s;
        }
    }
    _exit(0); /* the writer thread dies mid-whatever, like the power going out */
}

Test(wal, power_loss_keeps_every_synced_record, .timeout = 120)
{
    char synclog[300];
    snprintf(synclog, sizeof synclog, "%s.synclog", DIRNAME);
    for (unsigned round = 1; round <= 25; round++) {
        /* Files that exist now were closed cleanly: they are wholly durable. */
        char before[256][64];
        int nbefore = segment_files(before, 256);
        unlink(synclog);
        pid_t pid = fork();
        cr_assert_geq(pid, 0);
        if (pid == 0)
            power_loss_child(round * 7919, synclog);
        int status;
        waitpid(pid, &status, 0);
        cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %d", status);

        /* The power goes out: each file the child wrote keeps the size of
         * its last fdatasync, and of the bytes written after that sync a
         * random prefix (a torn write); the rest of the file is what the
         * sync left there: zeros. A file never synced since its rename
         * keeps its header. */
        char names[256][64];
        int n = segment_files(names, 256);
        long long keep[256], end[256];
        for (int i = 0; i < n; i++)
            keep[i] = end[i] = -1;
        FILE *f = fopen(synclog, "r");
        cr_assert_not_null(f);
        char kind, path[512];
        long long v, e;
        uint64_t synced = 0;
        while (fscanf(f, " %c", &kind) == 1) {
            if (kind == 'F' && fscanf(f, "%511s %lld %lld", path, &e, &v) == 3) {
                for (int i = 0; i < n; i++) {
                    if (strstr(path, names[i])) {
                        keep[i] = v;
                        end[i] = e;
                    }
                }
            } else if (kind == 'S' && fscanf(f, "%lld", &v) == 1) {
                synced = (uint64_t)v;
            }
        }
        fclose(f);
        for (int i = 0; i < n; i++) {
            bool old = false;
            for (int k = 0; k < nbefore && !old; k++)
                old = strcmp(before[k], names[i]) == 0;
            if (old)
                continue;
            /* A segment's header was synced in segment.tmp before the rename. */
            cut_file(names[i], keep[i] < 0 ? REC_HEADER_SIZE : keep[i]);
            if (keep[i] > end[i]) {
                /* Every other round keeps no unsynced byte at all. */
                unsigned seed = round * 31 + (unsigned)i;
                long long torn = round % 2 ? rand_r(&seed) % (keep[i] - end[i] + 1) : 0;
                zero_range(names[i], end[i] + torn, keep[i]);
            }
        }

        struct got g = {0};
        struct wal_config cfg = power_cfg();
        char err[512] = "";
        WARN[0] = 0;
        struct wal *w = wal_open(&cfg, collect, &g, err, sizeof err);
        cr_assert_not_null(w, "round %u: %s", round, err);
        if (round % 2 == 0) /* only what was synced, then zeros: a clean end */
            cr_assert_eq(WARN[0], 0, "round %u: %s", round, WARN);
        cr_assert_geq(wal_appended(w), synced, "round %u: record %llu was synced, then lost",
                      round, (unsigned long long)synced);
        for (size_t i = 0; i < g.n && i < 20000; i++)
            cr_assert_eq(g.ids[i], i + 1, "round %u: record %zu", round, i);
        wal_start(w, NULL, NULL);
        wal_close(w); /* a clean restart between power cuts */
    }
    unlink(synclog);
}

/* ---- free space --------------------------------------------------------- */

static atomic_ullong FREE_BYTES;
static uint64_t fake_free(int dirfd)
{
    (void)dirfd;
    return FREE_BYTES;
}

static const struct wal_io space_io = {.write = write, .fdatasync = fdatasync,
                                       .free_bytes = fake_free};

Test(wal, low_disk_space_is_reported_and_clears_by_itself)
{
    struct got g = {0};
    struct wal_config cfg = cfg_of(4096);
    cfg.io = &space_io;
    FREE_BYTES = 8191; /* under the reserve of two 4 KiB segments */
    struct wal *w = open_log(&cfg, &g);
    wal_start(w, NULL, NULL);
    cr_assert(wal_low_space(w));
    cr_assert(strstr(WARN, "refusing new jobs"), "%s", WARN);
    uint64_t last = append_jobs(w, 1, 3, 10);
    wait_synced(w, last);
    cr_assert_eq(wal_synced(w), last, "records still go to disk while space is low");
    FREE_BYTES = 1 << 30;
    for (int i = 0; i < 300 && wal_low_space(w); i++)
        usleep(10000); /* the writer re-checks every second while low */
    cr_assert_not(wal_low_space(w));
    cr_assert(strstr(WARN, "space is back"), "%s", WARN);
    wal_close(w);
}

/* Under --fsync MS the writer syncs within MS even while the disk is low on
 * space (its low-space wait is 1 s). */
static const struct wal_io space_count_io = {.write = write, .fdatasync = fake_fdatasync,
                                             .free_bytes = fake_free};

/* One process per log directory. */
Test(wal, a_second_open_of_the_same_directory_is_refused)
{
    struct got g = {0};
    struct wal_config cfg = cfg_of(0);
    struct wal *w = open_log(&cfg, &g);
    const char *err = open_refused(&cfg);
    cr_assert(strstr(err, "in use by another process"), "%s", err);
    wal_close(w);
    struct got g2 = {0};
    w = open_log(&cfg, &g2);
    wal_close(w);
}

Test(wal, interval_sync_still_happens_within_ms_while_space_is_low)
{
    reset_faults();
    struct got g = {0};
    struct wal_config cfg = cfg_of(4096);
    cfg.io = &space_count_io;
    cfg.fsync = 50;
    FREE_BYTES = 8191; /* low */
    struct wal *w = open_log(&cfg, &g);
    wal_start(w, NULL, NULL);
    uint64_t last = append_jobs(w, 1, 1, 10);
    for (int i = 0; i < 1000 && wal_written(w) < last; i++)
        usleep(1000);
    usleep(100000); /* let the first batch settle (header sync etc.) */
    last = append_jobs(w, 2, 1, 10); /* written inline, dirty */
    int s0 = SYNCS;
    usleep(300000); /* six intervals */
    cr_assert_gt(SYNCS, s0, "no fdatasync within 300 ms under --fsync 50 while space is low");
    wal_close(w);
    FREE_BYTES = 1 << 30;
}
