/* config.h -- docketd's settings: defaults, the config file, command-line flags.
 *
 * Owns: one struct config per process. Precedence is defaults, then the
 * --config file, then flags (the last word wins). One table in config.c drives
 * the file keys, the flags, validation and the usage text, so a setting is
 * added in exactly one place. Flags are beanstalkd's, with the same meaning:
 *   -l ADDR  -p PORT  -z BYTES  -u USER  -b DIR  -f MS  -F  -s BYTES  -V  -v  -h
 * and Docket's long ones: --fsync=always|never|MS  --memory  --repair  --config FILE.
 * Config file: "key = value" lines, '#' or ';' comments, keys as in the table
 * (listen, port, max-job-size, user, binlog-dir, fsync, binlog-size, memory,
 * repair, verbose).
 * Durability knob, like Redis appendfsync:  fsync = always | <ms> | never
 * (the -f MS flag sets <ms>, -f 0 means always, -F means never).
 */
#ifndef DK_CONFIG_H
#define DK_CONFIG_H

#include <stdint.h>

#define DOCKETD_VERSION "1.13.0-docket"     /* -v and the stats "version" field */

#define CONFIG_MAX_JOB_SIZE_LIMIT 1073741824u /* bytes: beanstalkd's JOB_DATA_SIZE_LIMIT_MAX */
#define CONFIG_FSYNC_ALWAYS 0                 /* reply only after the fsync that covers it */
#define CONFIG_FSYNC_NEVER (-1)               /* leave syncing to the kernel */

struct config {
    char *listen;              /* IP address, host name, or "unix:PATH" */
    uint64_t port;             /* TCP port; 0 binds a free one */
    uint64_t max_job_size;     /* bytes; larger puts answer JOB_TOO_BIG */
    char *user;                /* become this user after binding; NULL keeps ours */
    char *binlog_dir;          /* write-ahead log directory (default ./docket-data) */
    uint64_t memory;           /* 1: keep no log at all (--memory) */
    uint64_t repair;           /* 1: truncate the log at corruption anywhere (--repair) */
    int64_t fsync;             /* ms between fsyncs, or CONFIG_FSYNC_ALWAYS / _NEVER */
    uint64_t binlog_size;      /* bytes per write-ahead log file; 0 means the default */
    uint64_t verbose;          /* how many -V: 1 shows info, 2 debug */
};

/* Fills *cfg from the defaults, the --config file and argv. Prints usage or
 * version and exits 0 for -h / -v; prints a message and exits 2 for an unknown
 * flag, a bad value or a bad config file. Free with config_destroy(). */
void config_load(struct config *cfg, int argc, char **argv);
void config_destroy(struct config *cfg);

#endif
