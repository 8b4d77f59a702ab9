/* log.h -- the server's diagnostic log on stderr.
 *
 * One line per message, written with a single write so lines from a busy
 * server never interleave: "docketd: <message>" for notices and info,
 * "docketd: <file>:<line>: warning: <message>" for warnings and errors.
 * The level is checked before anything is formatted, so a disabled debug
 * line costs one comparison. Only src/server logs; the engine, the parser and
 * libdocket return errors instead.
 */
#ifndef DK_LOG_H
#define DK_LOG_H

#include <time.h>

/* Lower is more important. The default threshold is DK_LOG_NOTICE; each -V
 * shows one more level. */
enum dk_log_level {
    DK_LOG_ERROR,      /* the server cannot go on, or a request failed for a reason worth a look */
    DK_LOG_WARN,       /* something is wrong but the server carries on */
    DK_LOG_NOTICE,     /* rare facts an operator or a test harness reads (the listening address) */
    DK_LOG_INFO,       /* -V: connections, signals, limits */
    DK_LOG_DEBUG       /* -VV: per-command detail */
};

extern int dk_log_threshold;       /* messages with level > this are dropped */

void dk_log_write(int level, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Logs fmt at level if the threshold lets it through. Warnings and errors
 * carry __FILE__:__LINE__. */
#define dk_log(level, ...)                                                                  \
    do {                                                                                   \
        if ((int)(level) <= dk_log_threshold)                                              \
            dk_log_write((level), __FILE__, __LINE__, __VA_ARGS__);                        \
    } while (0)

/* Like dk_log(), but at most once every secs seconds from this call site, so a
 * repeating I/O error (EMFILE on accept) cannot flood the log. */
#define dk_log_every(secs, level, ...)                                                      \
    do {                                                                                   \
        static time_t dk_last_;                                                            \
        time_t dk_now_ = time(NULL);                                                       \
        if (dk_now_ - dk_last_ >= (secs)) {                                                \
            dk_last_ = dk_now_;                                                            \
            dk_log((level), __VA_ARGS__);                                                  \
        }                                                                                  \
    } while (0)

#endif
