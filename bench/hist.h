/*
 * A log-bucketed latency histogram.  Values are nanoseconds.  Below
 * BENCH_HIST_SUB every value has a bucket of its own.  Above it, each power
 * of two is split into BENCH_HIST_SUB equal buckets, so a reported value
 * (the middle of its bucket) is within 0.4% of every value in the bucket.
 * A histogram is a fixed array with no allocation after bench_hist_new().
 * It is not thread-safe, so the caller locks or merges.
 */
#ifndef BENCH_HIST_H
#define BENCH_HIST_H

#include <stdint.h>

#define BENCH_HIST_SUB_BITS 7
#define BENCH_HIST_SUB (1u << BENCH_HIST_SUB_BITS)
/* Exact buckets below BENCH_HIST_SUB, then 57 powers of two. */
#define BENCH_HIST_BUCKETS (BENCH_HIST_SUB + (64 - BENCH_HIST_SUB_BITS) * \
                            BENCH_HIST_SUB)

typedef struct bench_hist {
    uint64_t count;
    uint64_t min_ns;
    uint64_t max_ns;
    double sum_ns;
    uint64_t buckets[BENCH_HIST_BUCKETS];
} bench_hist;

/* Allocates an empty histogram; returns NULL when out of memory. */
bench_hist *bench_hist_new(void);
void bench_hist_free(bench_hist *h);
void bench_hist_reset(bench_hist *h);

void bench_hist_record(bench_hist *h, uint64_t value_ns);
/* Adds the counts of src to dst. */
void bench_hist_merge(bench_hist *dst, const bench_hist *src);

/*
 * Returns the value below or at which `percent` percent of the recorded
 * values lie (the middle of its bucket, clamped to min and max), or 0
 * when the histogram is empty.  percent is clamped to 0..100.
 */
uint64_t bench_hist_percentile(const bench_hist *h, double percent);
double bench_hist_mean(const bench_hist *h);

/* Bucket index of a value, and the value range [low, high] of a bucket. */
unsigned bench_hist_index(uint64_t value_ns);
void bench_hist_bucket_range(unsigned index, uint64_t *low, uint64_t *high);

#endif
