/*
 * The bench histogram: bucket bounds, and percentiles of known
 * distributions within the promised 1%.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "hist.h"

/* Asserts |actual - expected| <= 1% of expected. */
static void
assert_within_percent(uint64_t actual, uint64_t expected)
{
    double diff = (double)actual - (double)expected;

    if (diff < 0) {
        diff = -diff;
    }
    if (diff > (double)expected * 0.01) {
        fail_msg("%llu is not within 1%% of %llu",
                 (unsigned long long)actual, (unsigned long long)expected);
    }
}

static void
test_buckets_cover_their_values(void **state)
{
    uint64_t x = 88172645463325252ull;

    (void)state;
    for (int i = 0; i < 100000; i++) {
        uint64_t value;
        uint64_t low;
        uint64_t high;

        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        value = x >> (x % 64);
        bench_hist_bucket_range(bench_hist_index(value), &low, &high);
        assert_true(low <= value);
        assert_true(value <= high);
        /* A bucket is at most 1/128 of its lower bound wide. */
        assert_true((high - low) <= low / 128);
        assert_true(bench_hist_index(value) < BENCH_HIST_BUCKETS);
    }
}

static void
test_small_values_are_exact(void **state)
{
    bench_hist *h = bench_hist_new();

    (void)state;
    assert_non_null(h);
    for (uint64_t v = 1; v <= 100; v++) {
        bench_hist_record(h, v);
    }
    assert_int_equal(bench_hist_percentile(h, 50.0), 50);
    assert_int_equal(bench_hist_percentile(h, 90.0), 90);
    assert_int_equal(bench_hist_percentile(h, 99.0), 99);
    assert_int_equal(bench_hist_percentile(h, 100.0), 100);
    assert_int_equal(bench_hist_percentile(h, 0.0), 1);
    assert_int_equal(h->count, 100);
    bench_hist_free(h);
}

static void
test_uniform_percentiles(void **state)
{
    bench_hist *h = bench_hist_new();

    (void)state;
    assert_non_null(h);
    /* 1 us to 1 s in steps of 10 us. */
    for (uint64_t v = 1000; v <= 1000000000; v += 10000) {
        bench_hist_record(h, v);
    }
    assert_within_percent(bench_hist_percentile(h, 50.0), 500000000);
    assert_within_percent(bench_hist_percentile(h, 90.0), 900000000);
    assert_within_percent(bench_hist_percentile(h, 99.0), 990000000);
    assert_within_percent(bench_hist_percentile(h, 99.9), 999000000);
    assert_int_equal(h->max_ns, 999991000);
    assert_within_percent((uint64_t)bench_hist_mean(h), 500000000);
    bench_hist_free(h);
}

/*
 * A long tail: 99% of calls take 100 us and 1% take 50 ms, the shape a
 * stalled server gives.  The percentiles must land on the right side.
 */
static void
test_bimodal_tail(void **state)
{
    bench_hist *h = bench_hist_new();

    (void)state;
    assert_non_null(h);
    for (int i = 0; i < 99000; i++) {
        bench_hist_record(h, 100000);
    }
    for (int i = 0; i < 1000; i++) {
        bench_hist_record(h, 50000000);
    }
    assert_within_percent(bench_hist_percentile(h, 50.0), 100000);
    assert_within_percent(bench_hist_percentile(h, 99.0), 100000);
    assert_within_percent(bench_hist_percentile(h, 99.9), 50000000);
    assert_int_equal(h->max_ns, 50000000);
    bench_hist_free(h);
}

/* Geometric values 1.001^k: percentiles of a log-spread distribution. */
static void
test_log_spread_percentiles(void **state)
{
    bench_hist *h = bench_hist_new();
    uint64_t values[10000];
    double v = 1000.0;

    (void)state;
    assert_non_null(h);
    for (int i = 0; i < 10000; i++) {
        values[i] = (uint64_t)v;
        bench_hist_record(h, values[i]);
        v *= 1.001;
    }
    assert_within_percent(bench_hist_percentile(h, 50.0), values[4999]);
    assert_within_percent(bench_hist_percentile(h, 90.0), values[8999]);
    assert_within_percent(bench_hist_percentile(h, 99.0), values[9899]);
    assert_within_percent(bench_hist_percentile(h, 99.9), values[9989]);
    bench_hist_free(h);
}

static void
test_merge_adds_counts(void **state)
{
    bench_hist *a = bench_hist_new();
    bench_hist *b = bench_hist_new();

    (void)state;
    assert_non_null(a);
    assert_non_null(b);
    for (int i = 0; i < 500; i++) {
        bench_hist_record(a, 1000);
        bench_hist_record(b, 3000);
    }
    bench_hist_merge(a, b);
    assert_int_equal(a->count, 1000);
    assert_int_equal(a->min_ns, 1000);
    assert_int_equal(a->max_ns, 3000);
    assert_within_percent(bench_hist_percentile(a, 25.0), 1000);
    assert_within_percent(bench_hist_percentile(a, 75.0), 3000);
    bench_hist_free(a);
    bench_hist_free(b);
}

static void
test_empty_histogram_is_zero(void **state)
{
    bench_hist *h = bench_hist_new();

    (void)state;
    assert_non_null(h);
    assert_int_equal(bench_hist_percentile(h, 99.0), 0);
    assert_true(bench_hist_mean(h) == 0.0);
    bench_hist_free(h);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_buckets_cover_their_values),
        cmocka_unit_test(test_small_values_are_exact),
        cmocka_unit_test(test_uniform_percentiles),
        cmocka_unit_test(test_bimodal_tail),
        cmocka_unit_test(test_log_spread_percentiles),
        cmocka_unit_test(test_merge_adds_counts),
        cmocka_unit_test(test_empty_histogram_is_zero),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
