/* config.c -- defaults, config file and flags (see config.h).
 *
 * Errors here are the operator's typing, so they are printed as plain
 * "docketd: ..." lines on stderr and end the process with status 2, before
 * anything is bound or logged.
 */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <ini.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../store/wal.h"
#include "xalloc.h"

#define EXIT_USAGE 2

enum cfg_type {
    CFG_STR,                   /* char *, owned by the config */
    CFG_UINT,                  /* uint64_t within [min, max] */
    CFG_FSYNC,                 /* int64_t: always | never | <ms> within [min, max] */
    CFG_BOOL                   /* uint64_t 0 or 1: yes | no | true | false | 1 | 0 */
};

#define CFG_CLAMP 1u           /* above max: lower to max with a warning (beanstalkd -z) */

struct cfg_entry {
    const char *name;          /* key in the config file */
    char flag;                 /* short flag, 0 if the setting is file-only */
    enum cfg_type type;
    size_t off;                /* offsetof(struct config, field) */
    uint64_t min, max;         /* CFG_UINT, CFG_FSYNC: accepted range */
    unsigned flags;            /* CFG_CLAMP */
    const char *arg;           /* the value's name in the usage text */
    const char *help;          /* one line of usage text */
};

#define F(field) offsetof(struct config, field)

static const struct cfg_entry table[] = {
    {"binlog-dir", 'b', CFG_STR, F(binlog_dir), 0, 0, 0, "DIR", "write-ahead log directory"},
    {"fsync", 'f', CFG_FSYNC, F(fsync), 0, 86400000, 0, "MS",
     "fsync at most once every MS milliseconds; -f0 (the default) syncs before every reply"},
    {"listen", 'l', CFG_STR, F(listen), 0, 0, 0, "ADDR",
     "listen on address (default is 127.0.0.1); unix:PATH for a unix socket"},
    {"port", 'p', CFG_UINT, F(port), 0, 65535, 0, "PORT",
     "listen on port (default is 11300); 0 picks a free port"},
    {"user", 'u', CFG_STR, F(user), 0, 0, 0, "USER", "become user and group after binding"},
    {"max-job-size", 'z', CFG_UINT, F(max_job_size), 0, CONFIG_MAX_JOB_SIZE_LIMIT, CFG_CLAMP,
     "BYTES", "set the maximum job size in bytes (default is 65535); max allowed is 1073741824"},
    {"binlog-size", 's', CFG_UINT, F(binlog_size), 0, UINT32_MAX, 0, "BYTES",
     "set the size of each write-ahead log file (default is 10485760)"},
    {"memory", 0, CFG_BOOL, F(memory), 0, 1, 0, "BOOL", "keep no write-ahead log"},
    {"repair", 0, CFG_BOOL, F(repair), 0, 1, 0, "BOOL",
     "truncate the log at corruption before its last segment"},
    {"verbose", 0, CFG_UINT, F(verbose), 0, 4, 0, "N", "verbosity, like -V given N times"},
};

#define NTABLE (sizeof table / sizeof table[0])

static const struct config defaults = {
    .listen = "127.0.0.1",
    .port = 11300,
    .max_job_size = 65535,
    .user = NULL,
    .binlog_dir = "docket-data",
    .fsync = CONFIG_FSYNC_ALWAYS,
    .binlog_size = WAL_SEGMENT_DEFAULT,
    .verbose = 0,
};

static void *field(struct config *cfg, const struct cfg_entry *e)
{
    return (char *)cfg + e->off;
}

/* Prints the usage text built from the table on f. */
static void usage(FILE *f)
{
    fprintf(f, "Use: docketd [OPTIONS]\n\nOptions:\n");
    for (size_t i = 0; i < NTABLE; i++) {
        if (table[i].flag)
            fprintf(f, " -%c %-6s %s\n", table[i].flag, table[i].arg, table[i].help);
        if (table[i].flag == 'f')
            fprintf(f, " -F        never fsync\n");
    }
    fprintf(f, " -v        show version information\n"
               " -V        increase verbosity\n"
               " -h        show this help\n"
               " --fsync always|never|MS\n"
               "           when replies wait for the disk: always (default) waits for the\n"
               "           fsync covering them; MS syncs every MS ms; never leaves it to the OS\n"
               " --memory  keep no write-ahead log (jobs are lost when docketd stops)\n"
               " --repair  truncate the log at corruption before its last segment\n"
               " --config FILE\n"
               "           read settings from FILE (key = value lines); flags override it\n"
               "\nWithout -b the log is kept in ./docket-data.\n"
               "\nConfig file keys:\n");
    for (size_t i = 0; i < NTABLE; i++)
        fprintf(f, "  %-13s %s\n", table[i].name, table[i].arg);
    fprintf(f, "  (fsync = always | never | <ms>)\n");
}

_Noreturn static void usage_error(void)
{
    usage(stderr);
    exit(EXIT_USAGE);
}

/* Parses a plain decimal number: digits only, no sign, no spaces.
 * Returns 0, or -1 if s is not one or does not fit in 64 bits. */
static int parse_u64(const char *s, uint64_t *out)
{
    if (*s < '0' || *s > '9')
        return -1;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end)
        return -1;
    *out = v;
    return 0;
}

/* Checks v against e's range; a too-large value is clamped when e allows it.
 * Returns 0, or -1 with a message in err. */
static int check_range(const struct cfg_entry *e, uint64_t *v, char *err, size_t errlen)
{
    if (*v > e->max && (e->flags & CFG_CLAMP)) {
        fprintf(stderr, "docketd: %s was set to %llu\n", e->name, (unsigned long long)e->max);
        *v = e->max;
    }
    if (*v < e->min || *v > e->max) {
        snprintf(err, errlen, "%s must be between %llu and %llu", e->name,
                 (unsigned long long)e->min, (unsigned long long)e->max);
        return -1;
    }
    return 0;
}

/* Stores the text value into e's field of cfg after validating it.
 * Returns 0, or -1 with a message in err. */
static int set_value(struct config *cfg, const struct cfg_entry *e, const char *value, char *err,
                     size_t errlen)
{
    uint64_t v;

    switch (e->type) {
    case CFG_STR: {
        char **p = field(cfg, e);
        if (!*value) {
            snprintf(err, errlen, "%s must not be empty", e->name);
            return -1;
        }
        free(*p);
        *p = xstrdup(value);
        return 0;
    }
    case CFG_UINT:
        if (parse_u64(value, &v) < 0) {
            snprintf(err, errlen, "invalid %s: %s", e->name, value);
            return -1;
        }
        if (check_range(e, &v, err, errlen) < 0)
            return -1;
        *(uint64_t *)field(cfg, e) = v;
        return 0;
    case CFG_FSYNC:
        if (strcmp(value, "always") == 0) {
            *(int64_t *)field(cfg, e) = CONFIG_FSYNC_ALWAYS;
            return 0;
        }
        if (strcmp(value, "never") == 0) {
            *(int64_t *)field(cfg, e) = CONFIG_FSYNC_NEVER;
            return 0;
        }
        if (parse_u64(value, &v) < 0) {
            snprintf(err, errlen, "invalid %s: %s (always, never or milliseconds)", e->name,
                     value);
            return -1;
        }
        if (check_range(e, &v, err, errlen) < 0)
            return -1;
        *(int64_t *)field(cfg, e) = (int64_t)v;
        return 0;
    case CFG_BOOL:
        if (!strcmp(value, "yes") || !strcmp(value, "true") || !strcmp(value, "1")) {
            *(uint64_t *)field(cfg, e) = 1;
            return 0;
        }
        if (!strcmp(value, "no") || !strcmp(value, "false") || !strcmp(value, "0")) {
            *(uint64_t *)field(cfg, e) = 0;
            return 0;
        }
        snprintf(err, errlen, "invalid %s: %s (yes or no)", e->name, value);
        return -1;
    }
    snprintf(err, errlen, "internal error: bad type for %s", e->name);
    return -1;
}

static const struct cfg_entry *by_name(const char *name)
{
    for (size_t i = 0; i < NTABLE; i++)
        if (strcmp(table[i].name, name) == 0)
            return &table[i];
    return NULL;
}

static const struct cfg_entry *by_flag(int flag)
{
    for (size_t i = 0; i < NTABLE; i++)
        if (table[i].flag && table[i].flag == flag)
            return &table[i];
    return NULL;
}

/* State of one config file read: where to store, and the first error. */
struct file_ctx {
    struct config *cfg;
    char err[256];
};

/* inih callback for one "key = value". Keys may use '_' for '-'; sections
 * are ignored. Returns 0 (inih's error) for an unknown key or a bad value. */
static int on_ini(void *user, const char *section, const char *name, const char *value)
{
    struct file_ctx *fc = user;
    char key[64];
    size_t i;

    (void)section;
    for (i = 0; i < sizeof key - 1 && name[i]; i++)
        key[i] = name[i] == '_' ? '-' : name[i];
    key[i] = '\0';

    const struct cfg_entry *e = by_name(key);
    char err[200];
    if (!e)
        snprintf(err, sizeof err, "unknown key: %s", name);
    else if (set_value(fc->cfg, e, value, err, sizeof err) == 0)
        return 1;
    if (!fc->err[0])
        snprintf(fc->err, sizeof fc->err, "%s", err);
    return 0;
}

/* Reads path into cfg; exits with status 2 on an error. */
static void load_file(struct config *cfg, const char *path)
{
    struct file_ctx fc = {.cfg = cfg};
    int rc = ini_parse(path, on_ini, &fc);

    if (rc == 0)
        return;
    if (rc == -1)
        fprintf(stderr, "docketd: cannot open config file %s: %s\n", path, strerror(errno));
    else if (rc == -2)
        xoom("config file");
    else
        fprintf(stderr, "docketd: %s:%d: %s\n", path, rc,
                fc.err[0] ? fc.err : "expected key = value");
    exit(EXIT_USAGE);
}

/* One flag to apply after the config file has been read. */
struct pending {
    const struct cfg_entry *e;
    const char *value;         /* borrowed from argv */
    int flag;                  /* for the error message */
};

/* Scans argv. Handles -h and -v at once; returns the other flags in order in
 * pend (room for argc entries), the -V count and the config file path. */
static size_t scan_args(int argc, char **argv, struct pending *pend, uint64_t *nverbose,
                        const char **file)
{
    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'v'},
        {"fsync", required_argument, NULL, 'f'},
        {"memory", no_argument, NULL, 'M'},
        {"repair", no_argument, NULL, 'R'},
        {NULL, 0, NULL, 0},
    };
    size_t n = 0;
    int c;

    opterr = 0;
    while ((c = getopt_long(argc, argv, ":hvVFb:f:l:p:u:z:s:", longopts, NULL)) != -1) {
        switch (c) {
        case 'h':
            usage(stdout);
            exit(0);
        case 'v':
            printf("docketd %s\n", DOCKETD_VERSION);
            exit(0);
        case 'V':
            (*nverbose)++;
            break;
        case 'F':
            pend[n++] = (struct pending){by_name("fsync"), "never", 'F'};
            break;
        case 'c':
            *file = optarg;
            break;
        case 'M':
            pend[n++] = (struct pending){by_name("memory"), "yes", 'M'};
            break;
        case 'R':
            pend[n++] = (struct pending){by_name("repair"), "yes", 'R'};
            break;
        case ':':
            fprintf(stderr, "docketd: flag %s needs a value\n", argv[optind - 1]);
            usage_error();
        case '?':
            if (optopt)
                fprintf(stderr, "docketd: unknown flag: -%c\n", optopt);
            else
                fprintf(stderr, "docketd: unknown flag: %s\n", argv[optind - 1]);
            usage_error();
        default:
            pend[n++] = (struct pending){by_flag(c), optarg, c};
            break;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "docketd: unexpected argument: %s\n", argv[optind]);
        usage_error();
    }
    return n;
}

void config_load(struct config *cfg, int argc, char **argv)
{
    struct pending *pend = xcalloc((size_t)argc + 1, sizeof *pend);
    const char *file = NULL;
    uint64_t nverbose = 0;
    char err[256];

    *cfg = defaults;
    for (size_t i = 0; i < NTABLE; i++)
        if (table[i].type == CFG_STR) {
            char **p = field(cfg, &table[i]);
            *p = xstrdup(*p);
        }

    size_t n = scan_args(argc, argv, pend, &nverbose, &file);
    if (file)
        load_file(cfg, file);
    for (size_t i = 0; i < n; i++) {
        if (set_value(cfg, pend[i].e, pend[i].value, err, sizeof err) < 0) {
            fprintf(stderr, "docketd: -%c: %s\n", pend[i].flag, err);
            exit(EXIT_USAGE);
        }
    }
    cfg->verbose += nverbose;
    free(pend);
}

void config_destroy(struct config *cfg)
{
    for (size_t i = 0; i < NTABLE; i++)
        if (table[i].type == CFG_STR) {
            char **p = field(cfg, &table[i]);
            free(*p);
            *p = NULL;
        }
}
