/* xalloc.h -- allocation that cannot fail, for the server only.
 *
 * docketd has no sensible way to answer a client when malloc fails halfway
 * through a command, so every allocation in src/server goes through these
 * and an out-of-memory condition aborts with a message (Redis zmalloc).
 * The engine and libdocket return DK_ENOMEM instead: a library must not end
 * its caller's process.
 */
#ifndef DK_XALLOC_H
#define DK_XALLOC_H

#include <stddef.h>

#include "../common/buf.h"

/* Logs "out of memory" with what was being allocated and aborts. */
_Noreturn void xoom(const char *what);

void *xmalloc(size_t n);                 /* Free with free(). */
void *xcalloc(size_t n, size_t size);    /* Free with free(). */
char *xstrdup(const char *s);            /* Free with free(); NULL gives NULL. */
void *xrealloc(void *p, size_t n);       /* Free with free(). */

/* buf_* and bs_write_reply() return -1 when they cannot grow a buffer. */
static inline void xcheck(int rc, const char *what)
{
    if (rc < 0)
        xoom(what);
}

#endif
