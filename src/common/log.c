/* log.c -- the server's diagnostic log on stderr (see log.h). */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int dk_log_threshold = DK_LOG_NOTICE;

/* Formats the whole line first and writes it with one write(2): stderr is
 * unbuffered, and several fprintf calls could interleave with another
 * process writing the same terminal or pipe. Long messages are cut. */
void dk_log_write(int level, const char *file, int line, const char *fmt, ...)
{
    char msg[1024];
    size_t n;
    int r;

    if (level <= DK_LOG_WARN) {
        const char *base = strrchr(file, '/');
        r = snprintf(msg, sizeof msg, "docketd: %s:%d: %s: ", base ? base + 1 : file, line,
                     level == DK_LOG_ERROR ? "error" : "warning");
    } else {
        r = snprintf(msg, sizeof msg, "docketd: ");
    }
    n = r < 0 ? 0 : (size_t)r;
    if (n > sizeof msg - 2)
        n = sizeof msg - 2;

    va_list ap;
    va_start(ap, fmt);
    r = vsnprintf(msg + n, sizeof msg - n - 1, fmt, ap);
    va_end(ap);
    if (r > 0)
        n += (size_t)r < sizeof msg - n - 1 ? (size_t)r : sizeof msg - n - 2;
    msg[n++] = '\n';

    /* Nothing sensible is left to do if stderr itself fails. */
    ssize_t w = write(STDERR_FILENO, msg, n);
    (void)w;
}
