/* lat.c -- latency samples (see lat.h). */
#include "lat.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void lat_init(struct lat *l)
{
    memset(l, 0, sizeof *l);
}

void lat_destroy(struct lat *l)
{
    free(l->v);
    lat_init(l);
}

static void reserve(struct lat *l, size_t n)
{
    if (l->n + n <= l->cap)
        return;
    size_t cap = l->cap ? l->cap : 4096;
    while (cap < l->n + n)
        cap *= 2;
    uint64_t *v = realloc(l->v, cap * sizeof *v);
    if (!v) {
        fprintf(stderr, "docket-bench: out of memory for latency samples\n");
        abort();
    }
    l->v = v;
    l->cap = cap;
}

void lat_add(struct lat *l, uint64_t ns)
{
    if (l->n == l->cap)
        reserve(l, 1);
    l->v[l->n++] = ns;
}

void lat_merge(struct lat *dst, const struct lat *src)
{
    if (!src->n)
        return;
    reserve(dst, src->n);
    memcpy(dst->v + dst->n, src->v, src->n * sizeof *src->v);
    dst->n += src->n;
}

static int cmp(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* The q-quantile by the nearest-rank method: the smallest sample with at
 * least q of all samples at or below it. */
static double rank(const struct lat *l, double q)
{
    size_t i = (size_t)(q * (double)l->n + 0.999999);
    if (i < 1)
        i = 1;
    if (i > l->n)
        i = l->n;
    return (double)l->v[i - 1] / 1e3;
}

void lat_summarize(struct lat *l, struct lat_summary *s)
{
    memset(s, 0, sizeof *s);
    s->n = l->n;
    if (!l->n)
        return;
    qsort(l->v, l->n, sizeof *l->v, cmp);
    s->p50 = rank(l, 0.50);
    s->p90 = rank(l, 0.90);
    s->p99 = rank(l, 0.99);
    s->p999 = rank(l, 0.999);
    s->max = (double)l->v[l->n - 1] / 1e3;
}
