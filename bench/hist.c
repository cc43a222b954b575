/* The log-bucketed histogram of bench_hist.h. */
#include "hist.h"

#include <stdlib.h>
#include <string.h>

bench_hist *
bench_hist_new(void)
{
    bench_hist *h = malloc(sizeof(*h));

    if (h != NULL) {
        bench_hist_reset(h);
    }
    return h;
}

void
bench_hist_free(bench_hist *h)
{
    free(h);
}

void
bench_hist_reset(bench_hist *h)
{
    memset(h, 0, sizeof(*h));
    h->min_ns = UINT64_MAX;
}

unsigned
bench_hist_index(uint64_t value_ns)
{
    unsigned top_bit;
    unsigned shift;

    if (value_ns < BENCH_HIST_SUB) {
        return (unsigned)value_ns;
    }
    top_bit = 63u - (unsigned)__builtin_clzll(value_ns);
    shift = top_bit - BENCH_HIST_SUB_BITS;
    /* value >> shift lies in [SUB, 2 * SUB), so the group is shift + 1. */
    return (unsigned)((shift + 1) * BENCH_HIST_SUB +
                      ((value_ns >> shift) - BENCH_HIST_SUB));
}

void
bench_hist_bucket_range(unsigned index, uint64_t *low, uint64_t *high)
{
    unsigned group = index / BENCH_HIST_SUB;
    unsigned shift;

    if (group == 0) {
        *low = index;
        *high = index;
        return;
    }
    shift = group - 1;
    *low = ((uint64_t)(BENCH_HIST_SUB + index % BENCH_HIST_SUB)) << shift;
    *high = *low + ((uint64_t)1 << shift) - 1;
}

void
bench_hist_record(bench_hist *h, uint64_t value_ns)
{
    h->buckets[bench_hist_index(value_ns)]++;
    h->count++;
    h->sum_ns += (double)value_ns;
    if (value_ns < h->min_ns) {
        h->min_ns = value_ns;
    }
    if (value_ns > h->max_ns) {
        h->max_ns = value_ns;
    }
}

void
bench_hist_merge(bench_hist *dst, const bench_hist *src)
{
    if (src->count == 0) {
        return;
    }
    for (unsigned i = 0; i < BENCH_HIST_BUCKETS; i++) {
        dst->buckets[i] += src->buckets[i];
    }
    dst->count += src->count;
    dst->sum_ns += src->sum_ns;
    if (src->min_ns < dst->min_ns) {
        dst->min_ns = src->min_ns;
    }
    if (src->max_ns > dst->max_ns) {
        dst->max_ns = src->max_ns;
    }
}

static uint64_t
hist_clamp(const bench_hist *h, uint64_t value_ns)
{
    if (value_ns < h->min_ns) {
        return h->min_ns;
    }
    return value_ns > h->max_ns ? h->max_ns : value_ns;
}

uint64_t
bench_hist_percentile(const bench_hist *h, double percent)
{
    uint64_t rank;
    uint64_t seen = 0;
    uint64_t low;
    uint64_t high;

    if (h->count == 0) {
        return 0;
    }
    if (percent < 0.0) {
        percent = 0.0;
    }
    if (percent > 100.0) {
        percent = 100.0;
    }
    /* The rank-th smallest value (1-based, nearest rank). */
    rank = (uint64_t)(percent / 100.0 * (double)h->count + 0.999999);
    if (rank == 0) {
        rank = 1;
    }
    for (unsigned i = 0; i < BENCH_HIST_BUCKETS; i++) {
        seen += h->buckets[i];
        if (seen >= rank) {
            bench_hist_bucket_range(i, &low, &high);
            return hist_clamp(h, low + (high - low) / 2);
        }
    }
    return h->max_ns;
}

double
bench_hist_mean(const bench_hist *h)
{
    return h->count == 0 ? 0.0 : h->sum_ns / (double)h->count;
}
