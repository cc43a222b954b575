/* Tests of the clocks and of date-time formatting and parsing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "pip/time.h"

static void
assert_formats(int64_t ms, const char *expected)
{
    char text[PIP_TIME_STRLEN];

    pip_time_format(ms, text);
    assert_string_equal(text, expected);
}

static void
test_format_known_values(void **state)
{
    (void)state;
    assert_formats(0, "1970-01-01T00:00:00.000Z");
    assert_formats(-1, "1969-12-31T23:59:59.999Z");
    assert_formats(1769853600500LL, "2026-01-31T10:00:00.500Z");
    assert_formats(951782400000LL, "2000-02-29T00:00:00.000Z");
    assert_formats(-62167219200000LL, "0000-01-01T00:00:00.000Z");
    assert_formats(253402300799999LL, "9999-12-31T23:59:59.999Z");
}

static void
test_format_clamps_range(void **state)
{
    (void)state;
    assert_formats(INT64_MIN, "0000-01-01T00:00:00.000Z");
    assert_formats(INT64_MAX, "9999-12-31T23:59:59.999Z");
}

static void
assert_parses(const char *text, int64_t expected)
{
    int64_t ms = -12345;

    if (!pip_time_parse(text, &ms)) {
        fail_msg("\"%s\" was rejected", text);
    }
    if (ms != expected) {
        fail_msg("\"%s\" parsed as %lld, expected %lld", text, (long long)ms,
                 (long long)expected);
    }
}

static void
test_parse_accepts_forms(void **state)
{
    const int64_t t = 1769853600000LL; /* 2026-01-31T10:00:00Z */

    (void)state;
    assert_parses("2026-01-31", 1769817600000LL);
    assert_parses("2026-01-31T10:00:00Z", t);
    assert_parses("2026-01-31t10:00:00z", t);
    assert_parses("2026-01-31 10:00:00Z", t);
    assert_parses("2026-01-31T10:00:00", t);
    assert_parses("2026-01-31T10:00", t);
    assert_parses("2026-01-31T10:00Z", t);
    assert_parses("2026-01-31T10:00:00.5Z", t + 500);
    assert_parses("2026-01-31T10:00:00,25Z", t + 250);
    assert_parses("2026-01-31T10:00:00.123Z", t + 123);
    assert_parses("2026-01-31T10:00:00.123999999999Z", t + 123);
    assert_parses("2026-01-31T12:00:00+02:00", t);
    assert_parses("2026-01-31T12:00:00+0200", t);
    assert_parses("2026-01-31T12:00:00+02", t);
    assert_parses("2026-01-31T04:30:00-05:30", t);
    assert_parses("2026-01-31T10:00:00.000+00:00", t);
    assert_parses("2026-02-01T00:30:00+14:30", t);
    assert_parses("2024-02-29T00:00:00Z", 1709164800000LL);
    assert_parses("2000-02-29", 951782400000LL);
    assert_parses("1969-12-31T23:59:59.999Z", -1);
    assert_parses("0000-01-01T00:00:00Z", -62167219200000LL);
    assert_parses("9999-12-31T23:59:59.999Z", 253402300799999LL);
}

static void
test_parse_rejects_invalid(void **state)
{
    static const char *const bad[] = {
        "",
        "2026",
        "2026-01",
        "2026-1-31",
        "26-01-31",
        "20260131",
        "12026-01-31",
        "2026-13-01",
        "2026-00-10",
        "2026-01-00",
        "2026-01-32",
        "2026-02-30",
        "2023-02-29",
        "1900-02-29",
        "2026-04-31",
        "2026-01-31T",
        "2026-01-31T10",
        "2026-01-31T24:00:00Z",
        "2026-01-31T24:00",
        "2026-01-31T10:60:00Z",
        "2026-01-31T10:00:60Z",
        "2026-01-31T1:00:00Z",
        "2026-01-31T10:00:00.Z",
        "2026-01-31T10:00:00+2",
        "2026-01-31T10:00:00+02:0",
        "2026-01-31T10:00:00+24:00",
        "2026-01-31T10:00:00+02:60",
        "2026-01-31T10:00:00ZZ",
        "2026-01-31T10:00:00 UTC",
        "2026-01-31Z",
        "2026-01-31x",
        " 2026-01-31",
        "0000-01-01T00:00:00+01:00",
        "9999-12-31T23:59:59-01:00",
    };
    int64_t ms = 77;

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (pip_time_parse(bad[i], &ms)) {
            fail_msg("\"%s\" was accepted", bad[i]);
        }
    }
    assert_false(pip_time_parse(NULL, &ms));
    assert_int_equal(ms, 77);
}

static void
test_format_parse_round_trip(void **state)
{
    char text[PIP_TIME_STRLEN];
    int64_t back;

    (void)state;
    /* About 37 days apart, a prime number of ms, so that every month,
     * leap day and time of day gets hit over the 0000-9999 range. */
    for (int64_t ms = -62167219200000LL; ms < 253402300799999LL;
         ms += 3196800007LL) {
        pip_time_format(ms, text);
        assert_true(pip_time_parse(text, &back));
        assert_int_equal(back, ms);
    }
}

static void
test_days_match_libc(void **state)
{
    char text[PIP_TIME_STRLEN];
    char expected[32];
    struct tm tm;

    (void)state;
    /* gmtime_r() is the reference between 1900 and 2100. */
    for (time_t sec = -2208988800LL; sec < 4102444800LL; sec += 86399) {
        gmtime_r(&sec, &tm);
        strftime(expected, sizeof(expected), "%Y-%m-%dT%H:%M:%S.000Z", &tm);
        pip_time_format((int64_t)sec * 1000, text);
        assert_string_equal(text, expected);
    }
}

static void
test_clocks_advance(void **state)
{
    int64_t mono_ms = pip_mono_ms();
    int64_t mono_us = pip_mono_us();
    struct timespec pause = {0, 2000000};

    (void)state;
    /* 2020-01-01 as a floor proves the real-time clock is in ms. */
    assert_true(pip_now_ms() > 1577836800000LL);
    nanosleep(&pause, NULL);
    assert_true(pip_mono_ms() >= mono_ms + 2);
    assert_true(pip_mono_us() >= mono_us + 2000);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_format_known_values),
        cmocka_unit_test(test_format_clamps_range),
        cmocka_unit_test(test_parse_accepts_forms),
        cmocka_unit_test(test_parse_rejects_invalid),
        cmocka_unit_test(test_format_parse_round_trip),
        cmocka_unit_test(test_days_match_libc),
        cmocka_unit_test(test_clocks_advance),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
