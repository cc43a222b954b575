/*
 * The logging service in a real node: writes, defaults, the errors store,
 * every filter key, paging, expiry and a restart on the same data.
 */
#include "service_fixture.h"

#include <pthread.h>

#define MS_PER_DAY 86400000LL

static int
setup(void **state)
{
    *state = fixture_new(&pip_logging_service, NULL);
    return 0;
}

static json_t *
read_messages(fixture *f, json_t *filter)
{
    return read_page(f, "logging.read_messages", filter);
}

static size_t
count_messages(fixture *f, json_t *filter)
{
    return count_page(f, "logging.read_messages", filter);
}

static size_t
count_errors(fixture *f, json_t *filter)
{
    return count_page(f, "logging.read_errors", filter);
}

static void
write_message(fixture *f, json_t *message)
{
    json_decref(call_ok(f, "logging.write_message",
                        pack("{s:o}", "message", message)));
}

static void
format_time(int64_t ms, char out[PIP_TIME_STRLEN])
{
    pip_time_format(ms, out);
}

static bool
is_hex_id(const char *id)
{
    if (id == NULL || strlen(id) != 32) {
        return false;
    }
    return strspn(id, "0123456789abcdef") == 32;
}

static void
test_write_message_defaults(void **state)
{
    fixture *f = *state;
    int64_t before = pip_now_ms();
    int64_t after;
    int64_t logged = 0;
    json_t *stored;
    char first_id[33];

    stored = call_ok(
        f, "logging.write_message",
        pack("{s:{s:s, s:s}}", "message", "id", "mine", "message", "hello"));
    after = pip_now_ms();

    assert_non_null(stored);
    assert_true(is_hex_id(json_string_value(json_object_get(stored, "id"))));
    snprintf(first_id, sizeof(first_id), "%s",
             json_string_value(json_object_get(stored, "id")));
    assert_int_equal(json_integer_value(json_object_get(stored, "level")), 6);
    assert_true(pip_time_parse(
        json_string_value(json_object_get(stored, "time")), &logged));
    assert_true(logged >= before && logged <= after);
    assert_string_equal(json_string_value(json_object_get(stored, "message")),
                        "hello");
    json_decref(stored);

    stored = call_ok(f, "logging.write_message",
                     pack("{s:{s:i, s:s}}", "message", "level", 0, "time",
                          "2024-05-01T10:00:00+02:00"));
    assert_int_equal(json_integer_value(json_object_get(stored, "level")), 6);
    assert_string_equal(json_string_value(json_object_get(stored, "time")),
                        "2024-05-01T08:00:00.000Z");
    assert_string_not_equal(json_string_value(json_object_get(stored, "id")),
                            first_id);
    json_decref(stored);

    assert_int_equal(count_messages(f, NULL), 2);
}

static void
test_errors_go_to_both_stores(void **state)
{
    fixture *f = *state;

    write_message(f, pack("{s:i, s:s}", "level", 1, "message", "fatal"));
    write_message(f, pack("{s:i, s:s}", "level", 2, "message", "error"));
    write_message(f, pack("{s:i, s:s}", "level", 3, "message", "warn"));
    write_message(f, pack("{s:s}", "message", "trace"));

    assert_int_equal(count_messages(f, NULL), 4);
    assert_int_equal(count_errors(f, NULL), 2);
    assert_int_equal(count_messages(f, pack("{s:b}", "errors_only", 1)), 2);
    assert_int_equal(count_messages(f, pack("{s:s}", "errors_only", "false")),
                     4);

    json_decref(call_ok(f, "logging.clear", NULL));
    assert_int_equal(count_messages(f, NULL), 0);
    assert_int_equal(count_errors(f, NULL), 2);
}

/* Writes the messages that the filter tests select from. */
static void
write_filter_messages(fixture *f)
{
    json_t *messages = pack(
        "[{s:s, s:i, s:s, s:s, s:s},"
        " {s:s, s:i, s:s, s:s, s:{s:s, s:s, s:s}},"
        " {s:s, s:i, s:s, s:s},"
        " {s:s, s:i, s:s, s:s},"
        " {s:s, s:i, s:s}]",
        "time", "2024-01-01T00:00:00Z", "level", 4, "source", "billing",
        "message", "Invoice sent", "correlation_id", "trace-77",
        /* second */
        "time", "2024-01-02T00:00:00Z", "level", 2, "source", "billing",
        "message", "payment failed", "error", "code", "CARD_DECLINED",
        "message", "card was declined", "stack_trace", "at charge() line 9",
        /* third */
        "time", "2024-01-03T00:00:00Z", "level", 1, "source", "auth",
        "message", "disk full",
        /* fourth */
        "time", "2024-01-04T00:00:00Z", "level", 5, "source", "auth",
        "message", "token refreshed",
        /* fifth */
        "time", "2024-01-05T00:00:00Z", "level", 3, "message", "slow query");

    json_decref(call_ok(f, "logging.write_messages",
                        pack("{s:o}", "messages", messages)));
}

static void
test_read_newest_first(void **state)
{
    fixture *f = *state;
    json_t *page;
    json_t *data;

    write_filter_messages(f);
    page = read_messages(f, NULL);
    data = page_data(page);
    assert_int_equal(json_array_size(data), 5);
    assert_string_equal(
        json_string_value(json_object_get(json_array_get(data, 0), "message")),
        "slow query");
    assert_string_equal(
        json_string_value(json_object_get(json_array_get(data, 4), "message")),
        "Invoice sent");
    assert_true(json_is_null(json_object_get(page, "total")));
    json_decref(page);
}

static void
test_filter_level_and_source(void **state)
{
    fixture *f = *state;

    write_filter_messages(f);
    assert_int_equal(count_messages(f, pack("{s:i}", "level", 2)), 1);
    assert_int_equal(count_messages(f, pack("{s:s}", "level", "5")), 1);
    assert_int_equal(count_messages(f, pack("{s:i}", "max_level", 2)), 2);
    assert_int_equal(count_messages(f, pack("{s:s}", "max_level", "3")), 3);
    assert_int_equal(count_messages(f, pack("{s:s}", "source", "auth")), 2);
    assert_int_equal(count_messages(f, pack("{s:s}", "source", "Auth")), 0);
    assert_int_equal(count_messages(f, pack("{s:s, s:i}", "source", "billing",
                                            "max_level", 2)),
                     1);
    assert_int_equal(count_errors(f, pack("{s:s}", "source", "auth")), 1);
}

static void
test_filter_search_fields(void **state)
{
    fixture *f = *state;

    write_filter_messages(f);
    /* message text, any case */
    assert_int_equal(count_messages(f, pack("{s:s}", "search", "INVOICE")), 1);
    assert_int_equal(count_messages(f, pack("{s:s}", "search", "trace-7")), 1);
    assert_int_equal(count_messages(f, pack("{s:s}", "search", "declined")),
                     1);
    assert_int_equal(count_messages(f, pack("{s:s}", "search", "charge()")),
                     1);
    assert_int_equal(
        count_messages(f, pack("{s:s}", "search", "card_declined")), 1);
    /* the source is not searched */
    assert_int_equal(count_messages(f, pack("{s:s}", "search", "billing")), 0);
    assert_int_equal(count_messages(f, pack("{s:s}", "search", "FULL")), 1);
}

static void
test_filter_time_range(void **state)
{
    fixture *f = *state;
    json_t *page;

    write_filter_messages(f);
    assert_int_equal(
        count_messages(f, pack("{s:s}", "from_time", "2024-01-02T00:00:00Z")),
        4);
    assert_int_equal(
        count_messages(f, pack("{s:s}", "to_time", "2024-01-02T00:00:00Z")),
        1);
    assert_int_equal(
        count_messages(f, pack("{s:s, s:s}", "from_time", "2024-01-02",
                               "to_time", "2024-01-04T00:00:00.000Z")),
        2);
    assert_int_equal(
        count_messages(f, pack("{s:s}", "from_time", "2030-01-01")), 0);
    assert_int_equal(count_errors(f, pack("{s:s}", "from_time", "2024-01-03")),
                     1);

    page = read_messages(f, pack("{s:s, s:s}", "from_time", "2024-01-02",
                                 "to_time", "2024-01-04"));
    assert_string_equal(json_string_value(json_object_get(
                            json_array_get(page_data(page), 0), "message")),
                        "disk full");
    json_decref(page);
}

static void
test_paging(void **state)
{
    fixture *f = *state;
    json_t *page;

    write_filter_messages(f);
    page = call_ok(f, "logging.read_messages",
                   pack("{s:{s:i}, s:{s:i, s:i, s:b}}", "filter", "max_level",
                        4, "paging", "skip", 1, "take", 2, "total", 1));
    assert_int_equal(page_size(page), 2);
    assert_int_equal(json_integer_value(json_object_get(page, "total")), 4);
    assert_string_equal(json_string_value(json_object_get(
                            json_array_get(page_data(page), 0), "message")),
                        "disk full");
    json_decref(page);

    page = call_ok(f, "logging.read_messages",
                   pack("{s:{s:i, s:i}}", "paging", "skip", 4, "take", 10));
    assert_int_equal(page_size(page), 1);
    assert_true(json_is_null(json_object_get(page, "total")));
    json_decref(page);

    page = call_ok(f, "logging.read_errors",
                   pack("{s:{s:i, s:b}}", "paging", "take", 1, "total", 1));
    assert_int_equal(page_size(page), 1);
    assert_int_equal(json_integer_value(json_object_get(page, "total")), 2);
    json_decref(page);
}

static void
test_write_messages_empty(void **state)
{
    fixture *f = *state;

    assert_null(
        call_ok(f, "logging.write_messages", pack("{s:[]}", "messages")));
    assert_null(
        call_ok(f, "logging.write_messages", pack("{s:n}", "messages")));
    assert_null(call_ok(f, "logging.write_messages", NULL));
    assert_int_equal(count_messages(f, NULL), 0);
}

static void
test_invalid_arguments(void **state)
{
    fixture *f = *state;

    call_invalid(f, "logging.write_message", NULL, "message");
    call_invalid(f, "logging.write_message",
                 pack("{s:{s:s}}", "message", "level", "high"),
                 "message.level");
    call_invalid(f, "logging.write_message",
                 pack("{s:{s:s}}", "message", "time", "yesterday"),
                 "message.time");
    call_invalid(f, "logging.write_message",
                 pack("{s:{s:i}}", "message", "error", 5), "message.error");
    call_invalid(
        f, "logging.write_messages",
        pack("{s:[{s:s}, {s:b}]}", "messages", "message", "ok", "level", 1),
        "messages[1].level");
    call_invalid(f, "logging.read_messages",
                 pack("{s:{s:s}}", "filter", "level", "loud"), "filter.level");
    call_invalid(f, "logging.read_messages",
                 pack("{s:{s:s}}", "filter", "from_time", "soon"),
                 "filter.from_time");
    /* nothing of a rejected batch is written */
    assert_int_equal(count_messages(f, NULL), 0);
}

/* Which expiry lines the log sink has seen, written by the timer thread. */
static pthread_mutex_t expiry_log_lock = PTHREAD_MUTEX_INITIALIZER;
static bool expiry_logged_messages;
static bool expiry_logged_errors;

static void
expiry_log_sink(pip_log_level level, const char *line, void *ctx)
{
    (void)ctx;
    if (level != PIP_LOG_DEBUG) {
        return;
    }
    pthread_mutex_lock(&expiry_log_lock);
    if (strstr(line, "expiry of messages removed 3 records") != NULL) {
        expiry_logged_messages = true;
    }
    if (strstr(line, "expiry of errors removed 1 records") != NULL) {
        expiry_logged_errors = true;
    }
    pthread_mutex_unlock(&expiry_log_lock);
}

static bool
expiry_logged(void)
{
    bool both;

    pthread_mutex_lock(&expiry_log_lock);
    both = expiry_logged_messages && expiry_logged_errors;
    pthread_mutex_unlock(&expiry_log_lock);
    return both;
}

/* A node whose cleanup runs every 60 ms, keeping messages 1 day and
 * errors 2 days, with debug lines sent to expiry_log_sink. */
static int
setup_expiry(void **state)
{
    pip_log_configure(expiry_log_sink, NULL, PIP_LOG_DEBUG);
    *state = fixture_new(
        &pip_logging_service,
        pack("{s:s, s:s, s:s}", "logging.options.expire_cleanup_timeout",
             "0.001", "logging.options.expire_logs_timeout", "1",
             "logging.options.expire_errors_timeout", "2"));
    return 0;
}

static int
teardown_expiry(void **state)
{
    fixture_free(*state);
    pip_log_configure(NULL, NULL, PIP_LOG_ERROR);
    return 0;
}

static void
test_expiry_removes_old(void **state)
{
    fixture *f = *state;
    int64_t now = pip_now_ms();
    char days_ago_3[PIP_TIME_STRLEN];
    char days_ago_1_5[PIP_TIME_STRLEN];
    int waited_ms = 0;

    format_time(now - 3 * MS_PER_DAY, days_ago_3);
    format_time(now - 3 * MS_PER_DAY / 2, days_ago_1_5);
    json_decref(call_ok(f, "logging.write_messages",
                        pack("{s:[{s:s, s:i}, {s:s, s:i}, {s:s, s:i}, {s:i}]}",
                             "messages", "time", days_ago_3, "level", 2,
                             "time", days_ago_3, "level", 4, "time",
                             days_ago_1_5, "level", 2, "level", 2)));

    /* one run logs both lines after its deletes, so wait for the lines */
    while (!expiry_logged() && waited_ms < 5000) {
        fixture_sleep_ms(50);
        waited_ms += 50;
    }
    assert_true(expiry_logged());
    assert_int_equal(count_messages(f, NULL), 1);
    assert_int_equal(count_errors(f, NULL), 2);
    assert_int_equal(count_errors(f, pack("{s:s}", "to_time", days_ago_1_5)),
                     0);
}

static void
test_data_survives_restart(void **state)
{
    fixture *f = *state;
    json_t *page;

    write_filter_messages(f);
    fixture_node_restart(f);
    assert_int_equal(count_messages(f, NULL), 5);
    assert_int_equal(count_errors(f, NULL), 2);
    page = read_messages(f, pack("{s:i}", "level", 1));
    assert_string_equal(json_string_value(json_object_get(
                            json_array_get(page_data(page), 0), "message")),
                        "disk full");
    json_decref(page);
}

static void
test_describe_lists_commands(void **state)
{
    const char *const commands[] = {"read_messages", "read_errors",
                                    "write_message", "write_messages",
                                    "clear",         NULL};

    check_describe(*state, "v1/logging", commands,
                   "options.expire_errors_timeout", "30");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_describe_lists_commands, setup,
                                        fixture_teardown),
        cmocka_unit_test_setup_teardown(test_write_message_defaults, setup,
                                        fixture_teardown),
        cmocka_unit_test_setup_teardown(test_errors_go_to_both_stores, setup,
                                        fixture_teardown),
        cmocka_unit_test_setup_teardown(test_read_newest_first, setup,
                                        fixture_teardown),
        cmocka_unit_test_setup_teardown(test_filter_level_and_source, setup,
                                        fixture_teardown),
        cmocka_unit_test_setup_teardown(test_filter_search_fields, setup,
                                        fixture_teardown),
        cmocka_unit_test_setup_teardown(test_filter_time_range, setup,
                                        fixture_teardown),
        cmocka_unit_test_setup_teardown(test_paging, setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_write_messages_empty, setup,
                                        fixture_teardown),
        cmocka_unit_test_setup_teardown(test_invalid_arguments, setup,
                                        fixture_teardown),
        cmocka_unit_test_setup_teardown(test_expiry_removes_old, setup_expiry,
                                        teardown_expiry),
        cmocka_unit_test_setup_teardown(test_data_survives_restart, setup,
                                        fixture_teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
