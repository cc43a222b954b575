/*
 * The counters service in a real node: the merge rule of every counter
 * type, concurrent increments, every filter key, paging, clear and a
 * restart on the same data.
 */
#include "service_fixture.h"

#define WRITER_THREADS 8
#define WRITES_PER_THREAD 200

static int
setup(void **state)
{
    *state = fixture_new(&pip_counters_service, NULL);
    return 0;
}

static json_t *
write_counter(fixture *f, json_t *counter)
{
    return call_ok(f, "counters.write_counter",
                   pack("{s:o}", "counter", counter));
}

static size_t
count_counters(fixture *f, json_t *filter)
{
    return count_page(f, "counters.read_counters", filter);
}

/* The one counter that filter name=name selects. */
static json_t *
read_counter(fixture *f, const char *name)
{
    json_t *page =
        read_page(f, "counters.read_counters", pack("{s:s}", "name", name));
    json_t *counter;

    assert_int_equal(page_size(page), 1);
    counter = json_incref(json_array_get(page_data(page), 0));
    json_decref(page);
    return counter;
}

static double
number_of(const json_t *counter, const char *key)
{
    const json_t *value = json_object_get(counter, key);

    assert_true(json_is_number(value));
    return json_number_value(value);
}

static void
test_increment_sums_counts(void **state)
{
    fixture *f = *state;
    json_t *merged;

    json_decref(write_counter(f, pack("{s:s, s:i, s:i, s:s, s:f}", "name",
                                      "api.calls", "type", 4, "count", 3,
                                      "source", "gateway", "last", 1.5)));
    merged = write_counter(f, pack("{s:s, s:i, s:i}", "name", "api.calls",
                                   "type", 4, "count", 2));
    assert_int_equal(json_integer_value(json_object_get(merged, "count")), 5);
    assert_string_equal(json_string_value(json_object_get(merged, "name")),
                        "api.calls");
    assert_int_equal(json_integer_value(json_object_get(merged, "type")), 4);
    assert_non_null(json_object_get(merged, "time"));
    assert_null(json_object_get(merged, "source"));
    assert_null(json_object_get(merged, "last"));
    assert_int_equal(json_object_size(merged), 4);
    json_decref(merged);

    /* a missing count adds nothing */
    merged =
        write_counter(f, pack("{s:s, s:i}", "name", "api.calls", "type", 4));
    assert_int_equal(json_integer_value(json_object_get(merged, "count")), 5);
    json_decref(merged);
}

static void
check_statistics_merge(fixture *f, int type)
{
    json_t *merged;

    json_decref(write_counter(
        f, pack("{s:s, s:i, s:f, s:i, s:f, s:f, s:f, s:s}", "name", "db.query",
                "type", type, "last", 5.0, "count", 2, "min", 3.0, "max", 7.0,
                "average", 5.0, "source", "db")));
    merged =
        write_counter(f, pack("{s:s, s:i, s:f, s:i, s:f, s:f, s:f}", "name",
                              "db.query", "type", type, "last", 1.0, "count",
                              2, "min", 1.0, "max", 4.0, "average", 2.0));
    assert_true(number_of(merged, "last") == 1.0);
    assert_int_equal(json_integer_value(json_object_get(merged, "count")), 4);
    assert_true(number_of(merged, "min") == 1.0);
    assert_true(number_of(merged, "max") == 7.0);
    assert_true(number_of(merged, "average") == 3.5);
    json_decref(merged);

    /* min is the smaller of both mins, not of the new min and the old
     * max; a missing max keeps the old one */
    merged = write_counter(f, pack("{s:s, s:i, s:f, s:i, s:f, s:f}", "name",
                                   "db.query", "type", type, "last", 6.0,
                                   "count", 4, "min", 5.0, "average", 6.5));
    assert_true(number_of(merged, "min") == 1.0);
    assert_true(number_of(merged, "max") == 7.0);
    assert_true(number_of(merged, "average") == 5.0);
    assert_int_equal(json_integer_value(json_object_get(merged, "count")), 8);
    json_decref(merged);

    /* missing min and max are ignored, missing count adds nothing */
    merged = write_counter(f, pack("{s:s, s:i, s:f}", "name", "db.query",
                                   "type", type, "last", 9.0));
    assert_true(number_of(merged, "last") == 9.0);
    assert_true(number_of(merged, "min") == 1.0);
    assert_true(number_of(merged, "max") == 7.0);
    assert_true(number_of(merged, "average") == 5.0);
    assert_int_equal(json_integer_value(json_object_get(merged, "count")), 8);
    json_decref(merged);

    merged = read_counter(f, "db.query");
    assert_true(number_of(merged, "last") == 9.0);
    json_decref(merged);
}

static void
test_statistics_merge(void **state)
{
    check_statistics_merge(*state, 2);
}

static void
test_interval_merge(void **state)
{
    check_statistics_merge(*state, 0);
}

static void
test_last_value_replaces(void **state)
{
    fixture *f = *state;
    json_t *merged;
    int types[] = {1, 3};

    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
        json_decref(
            write_counter(f, pack("{s:s, s:i, s:f, s:i}", "name", "cpu.load",
                                  "type", types[i], "last", 0.5, "count", 3)));
        merged = write_counter(f, pack("{s:s, s:i, s:f}", "name", "cpu.load",
                                       "type", types[i], "last", 0.75));
        assert_true(number_of(merged, "last") == 0.75);
        assert_null(json_object_get(merged, "count"));
        json_decref(merged);
    }
}

static void
test_type_change_replaces(void **state)
{
    fixture *f = *state;
    json_t *merged;

    json_decref(write_counter(f, pack("{s:s, s:i, s:i}", "name", "jobs.run",
                                      "type", 4, "count", 10)));
    merged = write_counter(f, pack("{s:s, s:i, s:i, s:f}", "name", "jobs.run",
                                   "type", 2, "count", 1, "min", 2.0));
    assert_int_equal(json_integer_value(json_object_get(merged, "count")), 1);
    assert_int_equal(json_integer_value(json_object_get(merged, "type")), 2);
    json_decref(merged);

    merged = read_counter(f, "jobs.run");
    assert_true(number_of(merged, "min") == 2.0);
    json_decref(merged);
}

static void
test_concurrent_increments(void **state)
{
    fixture *f = *state;
    json_t *counter;

    assert_int_equal(
        call_concurrently(f, "counters.write_counter",
                          pack("{s:{s:s, s:i, s:i}}", "counter", "name",
                               "hits", "type", 4, "count", 1),
                          WRITER_THREADS, WRITES_PER_THREAD),
        0);
    counter = read_counter(f, "hits");
    assert_int_equal(json_integer_value(json_object_get(counter, "count")),
                     WRITER_THREADS * WRITES_PER_THREAD);
    json_decref(counter);
}

/* Writes the counters that the filter tests select from. */
static void
write_filter_counters(fixture *f)
{
    json_t *counters = pack(
        "[{s:s, s:i, s:s, s:i}, {s:s, s:i, s:s, s:i},"
        " {s:s, s:i, s:s, s:f}, {s:s, s:i, s:i},"
        " {s:s, s:i, s:s, s:f}]",
        "name", "orders.created", "type", 4, "source", "shop", "count", 1,
        "name", "orders.cancelled", "type", 4, "source", "shop", "count", 2,
        "name", "orders.latency", "type", 0, "source", "Checkout", "last",
        12.5, "name", "ordersx.created", "type", 4, "count", 7, "name",
        "payments.latency", "type", 2, "source", "bank", "last", 40.0);

    assert_null(call_ok(f, "counters.write_counters",
                        pack("{s:o}", "counters", counters)));
}

static void
test_filter_keys(void **state)
{
    fixture *f = *state;

    write_filter_counters(f);
    assert_int_equal(count_counters(f, NULL), 5);
    assert_int_equal(count_counters(f, pack("{s:s}", "search", "LATENCY")), 2);
    assert_int_equal(count_counters(f, pack("{s:s}", "search", "checkout")),
                     1);
    assert_int_equal(count_counters(f, pack("{s:i}", "type", 4)), 3);
    assert_int_equal(count_counters(f, pack("{s:s}", "type", "2")), 1);
    assert_int_equal(
        count_counters(f, pack("{s:s}", "name", "orders.created")), 1);
    assert_int_equal(count_counters(f, pack("{s:s}", "name", "orders")), 0);
    assert_int_equal(count_counters(f, pack("{s:s}", "name_starts", "orders")),
                     4);
    assert_int_equal(count_counters(f, pack("{s:s}", "name_ends", "created")),
                     2);
    assert_int_equal(count_counters(f, pack("{s:s}", "group", "orders")), 3);
    assert_int_equal(count_counters(f, pack("{s:s}", "group", "orders.")), 3);
    assert_int_equal(count_counters(f, pack("{s:s}", "counter", "latency")),
                     2);
    assert_int_equal(count_counters(f, pack("{s:s}", "counter", ".created")),
                     2);
    assert_int_equal(count_counters(f, pack("{s:s, s:s}", "group", "orders",
                                            "counter", "latency")),
                     1);
    assert_int_equal(count_counters(f, pack("{s:s, s:s}", "name_starts",
                                            "orders.c", "group", "orders")),
                     2);
}

static void
test_paging(void **state)
{
    fixture *f = *state;
    json_t *page;

    write_filter_counters(f);
    page =
        call_ok(f, "counters.read_counters",
                pack("{s:{s:s}, s:{s:i, s:i, s:b}}", "filter", "name_starts",
                     "orders", "paging", "skip", 1, "take", 2, "total", 1));
    assert_int_equal(page_size(page), 2);
    assert_int_equal(json_integer_value(json_object_get(page, "total")), 4);
    /* by name: cancelled, created, latency, ordersx.created */
    assert_string_equal(json_string_value(json_object_get(
                            json_array_get(page_data(page), 0), "name")),
                        "orders.created");
    json_decref(page);

    page =
        call_ok(f, "counters.read_counters",
                pack("{s:{s:s, s:s}}", "paging", "skip", "3", "take", "100"));
    assert_int_equal(page_size(page), 2);
    assert_true(json_is_null(json_object_get(page, "total")));
    json_decref(page);
}

static void
test_clear(void **state)
{
    fixture *f = *state;

    write_filter_counters(f);
    assert_null(call_ok(f, "counters.clear", NULL));
    assert_int_equal(count_counters(f, NULL), 0);
}

static void
test_invalid_arguments(void **state)
{
    fixture *f = *state;

    call_invalid(f, "counters.write_counter", NULL, "counter");
    call_invalid(f, "counters.write_counter",
                 pack("{s:{s:i}}", "counter", "type", 4), "counter.name");
    call_invalid(f, "counters.write_counter",
                 pack("{s:{s:s, s:s}}", "counter", "name", "a", "type", "x"),
                 "counter.type");
    call_invalid(f, "counters.write_counter",
                 pack("{s:{s:s, s:i, s:s}}", "counter", "name", "a", "type", 4,
                      "count", "many"),
                 "counter.count");
    call_invalid(f, "counters.write_counters",
                 pack("{s:[{s:s, s:i}, {s:s}]}", "counters", "name", "a",
                      "type", 4, "name", "b"),
                 "counters[1].type");
    call_invalid(f, "counters.read_counters",
                 pack("{s:{s:s}}", "filter", "type", "big"), "filter.type");
    assert_int_equal(count_counters(f, NULL), 0);
}

static void
test_data_survives_restart(void **state)
{
    fixture *f = *state;
    json_t *counter;

    write_filter_counters(f);
    fixture_node_restart(f);
    assert_int_equal(count_counters(f, NULL), 5);
    counter = read_counter(f, "orders.cancelled");
    assert_int_equal(json_integer_value(json_object_get(counter, "count")), 2);
    json_decref(counter);
}

static void
test_describe_lists_commands(void **state)
{
    const char *const commands[] = {"read_counters", "write_counter",
                                    "write_counters", "clear", NULL};

    check_describe(*state, "v1/counters", commands, "options.max_page_size",
                   "100");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_describe_lists_commands, setup,
                                        fixture_teardown),
        cmocka_unit_test_setup_teardown(test_increment_sums_counts, setup,
                                        fixture_teardown),
        cmocka_unit_test_setup_teardown(test_statistics_merge, setup,
                                        fixture_teardown),
        cmocka_unit_test_setup_teardown(test_interval_merge, setup,
                                        fixture_teardown),
        cmocka_unit_test_setup_teardown(test_last_value_replaces, setup,
                                        fixture_teardown),
        cmocka_unit_test_setup_teardown(test_type_change_replaces, setup,
                                        fixture_teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_increments, setup,
                                        fixture_teardown),
        cmocka_unit_test_setup_teardown(test_filter_keys, setup,
                                        fixture_teardown),
        cmocka_unit_test_setup_teardown(test_paging, setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_clear, setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_invalid_arguments, setup,
                                        fixture_teardown),
        cmocka_unit_test_setup_teardown(test_data_survives_restart, setup,
                                        fixture_teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
