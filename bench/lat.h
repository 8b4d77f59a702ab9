/* lat.h -- latency samples and their percentiles.
 *
 * Every sample is kept (8 bytes each; a 3-second run records at most a few
 * million), so percentiles are exact order statistics rather than bucket
 * estimates. One struct lat per thread; lat_merge() joins them at the end.
 */
#ifndef DK_BENCH_LAT_H
#define DK_BENCH_LAT_H

#include <stddef.h>
#include <stdint.h>

struct lat {
    uint64_t *v;               /* samples, ns */
    size_t n, cap;
};

struct lat_summary {
    size_t n;                  /* samples */
    double p50, p90, p99, p999, max; /* us */
};

void lat_init(struct lat *l);
void lat_destroy(struct lat *l);
void lat_add(struct lat *l, uint64_t ns);
/* Appends src's samples to dst; src keeps its own. */
void lat_merge(struct lat *dst, const struct lat *src);
/* Sorts l's samples and fills s. With no samples every field is 0. */
void lat_summarize(struct lat *l, struct lat_summary *s);

#endif
