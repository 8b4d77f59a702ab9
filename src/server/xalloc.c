/* xalloc.c -- allocation that cannot fail (see xalloc.h). */
#include "xalloc.h"

#include <stdlib.h>
#include <string.h>

#include "../common/log.h"

void xoom(const char *what)
{
    dk_log(DK_LOG_ERROR, "out of memory (%s)", what);
    abort();
}

void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        xoom("malloc");
    return p;
}

void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p)
        xoom("calloc");
    return p;
}

char *xstrdup(const char *s)
{
    if (!s)
        return NULL;
    char *p = strdup(s);
    if (!p)
        xoom("strdup");
    return p;
}

void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q)
        xoom("realloc");
    return q;
}
