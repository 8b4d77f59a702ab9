/* cmd.h -- the vocabulary shared by the protocol layer and the engine.
 *
 * The parser (src/proto) turns bytes into a struct cmd; the engine (src/engine)
 * executes a struct cmd and answers with a struct reply; the reply writer
 * (src/proto) turns a struct reply back into bytes. Neither side includes the
 * other: both speak only this header, so the engine can sit behind another
 * front-end (HTTP, an embedded mode) and the parser can be tested without it.
 *
 * Invariants: every pointer in a cmd or reply is borrowed. A cmd borrows the
 * parser's input buffer until the next parser call; a reply borrows engine
 * memory until the next engine call, so a caller formats it at once.
 */
#ifndef DK_CMD_H
#define DK_CMD_H

#include <stddef.h>
#include <stdint.h>

/* The 25 beanstalkd commands, in beanstalkd's order of documentation. */
enum op {
    OP_PUT,
    OP_USE,
    OP_RESERVE,
    OP_RESERVE_TIMEOUT, /* reserve-with-timeout */
    OP_RESERVE_JOB,
    OP_DELETE,
    OP_RELEASE,
    OP_BURY,
    OP_TOUCH,
    OP_WATCH,
    OP_IGNORE,
    OP_PEEK,
    OP_PEEK_READY,
    OP_PEEK_DELAYED,
    OP_PEEK_BURIED,
    OP_KICK,
    OP_KICK_JOB,
    OP_STATS_JOB,
    OP_STATS_TUBE,
    OP_STATS,
    OP_LIST_TUBES,
    OP_LIST_TUBE_USED,
    OP_LIST_TUBES_WATCHED,
    OP_PAUSE_TUBE,
    OP_QUIT,
    OP_COUNT
};

/* A parsed command. Only the fields its op uses are meaningful. */
struct cmd {
    enum op op;
    uint64_t id;       /* job id: reserve-job delete release bury touch peek kick-job stats-job */
    uint32_t pri;      /* put release bury */
    uint32_t delay;    /* seconds: put release pause-tube */
    uint32_t ttr;      /* seconds: put (0 is passed as 0; the engine makes it 1) */
    int64_t timeout;   /* seconds: reserve-with-timeout; negative waits forever (strtol quirk) */
    uint64_t bound;    /* kick: most jobs to kick */
    const char *name;  /* tube name, not NUL-terminated: use watch ignore stats-tube pause-tube */
    size_t name_len;   /* bytes, 1..200 */
    const char *body;  /* put: the job body, followed in memory by "\r\n" */
    size_t body_len;   /* bytes, not counting the "\r\n" */
};

/* What a command (or a timer) answers. */
enum rcode {
    R_NONE,            /* no reply now: the client waits (reserve) */
    R_CLOSE,           /* close the connection (quit) */
    R_INSERTED,        /* INSERTED <id> */
    R_BURIED_ID,       /* BURIED <id> (put into a full heap) */
    R_USING,           /* USING <name> */
    R_RESERVED,        /* RESERVED <id> <bytes>\r\n<body>\r\n */
    R_FOUND,           /* FOUND <id> <bytes>\r\n<body>\r\n */
    R_DEADLINE_SOON,
    R_TIMED_OUT,
    R_DELETED,
    R_NOT_FOUND,
    R_RELEASED,
    R_BURIED,
    R_TOUCHED,
    R_WATCHING,        /* WATCHING <count> */
    R_NOT_IGNORED,
    R_KICKED_N,        /* KICKED <count> */
    R_KICKED,          /* KICKED (kick-job) */
    R_YAML,              /* OK <bytes>\r\n<yaml>\r\n, yaml built from kv */
    R_PAUSED,
    R_DRAINING,
    R_OUT_OF_MEMORY,
    R_INTERNAL_ERROR,
    R_BAD_FORMAT,
    R_UNKNOWN_COMMAND,
    R_EXPECTED_CRLF,
    R_JOB_TOO_BIG,
    R_COUNT
};

/* One line of a YAML document (stats, stats-job, stats-tube, list-*). */
enum kv_type {
    KV_U64,            /* key: 123 */
    KV_I64,            /* key: -5 */
    KV_STR,            /* key: text           (unquoted) */
    KV_QSTR,           /* key: "text"         (1.13 quotes names, version, uname fields) */
    KV_BOOL,           /* key: true | false */
    KV_ITEM            /* - text              (list element; key unused) */
};

struct kv {
    const char *key;
    enum kv_type type;
    union {
        uint64_t u;
        int64_t i;
        int b;
    } v;
    const char *s;     /* KV_STR, KV_QSTR, KV_ITEM: not NUL-terminated */
    size_t n;          /* bytes of s */
};

struct reply {
    enum rcode code;
    uint64_t id;       /* INSERTED BURIED_ID RESERVED FOUND */
    uint64_t count;    /* WATCHING KICKED_N */
    const char *body;  /* RESERVED FOUND: job body (the "\r\n" after it is not counted) */
    size_t body_len;   /* bytes */
    const char *name;  /* USING */
    size_t name_len;   /* bytes */
    const struct kv *kv; /* OK: lines of the document */
    size_t nkv;
};

#endif
