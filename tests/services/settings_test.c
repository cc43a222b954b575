/*
 * The settings service in a real node: sections, flattening of nested
 * parameters, modify with updates and increments (also concurrent), every
 * filter key, paging, the changed event and a restart on the same data.
 */
#include "service_fixture.h"

#include "pip/client.h"

#define WRITER_THREADS 8
#define WRITES_PER_THREAD 200

static int
setup(void **state)
{
    *state = fixture_new(&pip_settings_service, NULL);
    return 0;
}

static json_t *
get_section(fixture *f, const char *id)
{
    return call_ok(f, "settings.get_section_by_id", pack("{s:s}", "id", id));
}

static void
set_section(fixture *f, const char *id, json_t *parameters)
{
    json_decref(
        call_ok(f, "settings.set_section",
                pack("{s:s, s:o}", "id", id, "parameters", parameters)));
}

static void
assert_json_equal(const json_t *actual, const char *expected_text)
{
    json_t *expected = json_loads(expected_text, 0, NULL);

    assert_non_null(expected);
    if (!json_equal(actual, expected)) {
        char *text = json_dumps(actual, JSON_SORT_KEYS);

        fail_msg("expected %s, got %s", expected_text, text);
    }
    json_decref(expected);
}

static void
test_missing_section_is_empty(void **state)
{
    fixture *f = *state;
    json_t *params = get_section(f, "nothing.here");

    assert_true(json_is_object(params));
    assert_int_equal(json_object_size(params), 0);
    json_decref(params);
}

static void
test_set_section_flattens(void **state)
{
    fixture *f = *state;
    json_t *stored;
    json_t *params;

    stored =
        call_ok(f, "settings.set_section",
                pack("{s:s, s:{s:{s:{s:i}, s:s}, s:b, s:[i, i], s:{}}}", "id",
                     "db", "parameters", "pool", "limits", "size", 8, "name",
                     "main", "debug", 1, "hosts", 1, 2, "empty"));
    assert_json_equal(stored, "{\"pool.limits.size\": 8, \"pool.name\": "
                              "\"main\", \"debug\": true, \"hosts\": [1, 2]}");
    json_decref(stored);

    params = get_section(f, "db");
    assert_json_equal(params, "{\"pool.limits.size\": 8, \"pool.name\": "
                              "\"main\", \"debug\": true, \"hosts\": [1, 2]}");
    json_decref(params);

    /* set replaces the whole map */
    set_section(f, "db", pack("{s:s}", "pool.name", "spare"));
    params = get_section(f, "db");
    assert_json_equal(params, "{\"pool.name\": \"spare\"}");
    json_decref(params);
}

static void
test_update_time_is_set(void **state)
{
    fixture *f = *state;
    int64_t before = pip_now_ms();
    int64_t first = 0;
    int64_t second = 0;
    json_t *page;

    set_section(f, "mail", pack("{s:s}", "host", "localhost"));
    page = call_ok(f, "settings.get_sections", NULL);
    assert_int_equal(page_size(page), 1);
    assert_true(
        pip_time_parse(json_string_value(json_object_get(
                           json_array_get(page_data(page), 0), "update_time")),
                       &first));
    assert_true(first >= before && first <= pip_now_ms());
    json_decref(page);

    fixture_sleep_ms(5);
    json_decref(call_ok(f, "settings.modify_section",
                        pack("{s:s, s:{s:i}}", "id", "mail",
                             "update_parameters", "port", 25)));
    page = call_ok(f, "settings.get_sections", NULL);
    assert_true(
        pip_time_parse(json_string_value(json_object_get(
                           json_array_get(page_data(page), 0), "update_time")),
                       &second));
    assert_true(second > first);
    json_decref(page);
}

static void
test_modify_updates_and_increments(void **state)
{
    fixture *f = *state;
    json_t *result;

    set_section(f, "app",
                pack("{s:s, s:s, s:s, s:i, s:f, s:s}", "name", "old", "visits",
                     "10", "label", "abc", "hits", 5, "ratio", 2.9, "keep",
                     "me"));
    result = call_ok(
        f, "settings.modify_section",
        pack("{s:s, s:{s:s, s:{s:i}}, s:{s:i, s:i, s:i, s:i, s:i, s:s}}", "id",
             "app", "update_parameters", "name", "new", "limits", "max", 3,
             "increment_parameters", "visits", 1, "label", 2, "hits", -7,
             "ratio", 1, "fresh", 4, "zero", "none"));
    assert_json_equal(result,
                      "{\"name\": \"new\", \"limits.max\": 3, \"visits\": 11,"
                      " \"label\": 2, \"hits\": -2, \"ratio\": 3,"
                      " \"fresh\": 4, \"zero\": 0, \"keep\": \"me\"}");
    json_decref(result);

    result = get_section(f, "app");
    assert_int_equal(json_integer_value(json_object_get(result, "visits")),
                     11);
    json_decref(result);
}

static void
test_modify_creates_section(void **state)
{
    fixture *f = *state;
    json_t *result;

    result = call_ok(f, "settings.modify_section",
                     pack("{s:s, s:{s:{s:i}}}", "id", "new.section",
                          "increment_parameters", "stats", "runs", 2));
    assert_json_equal(result, "{\"stats.runs\": 2}");
    json_decref(result);

    result = call_ok(f, "settings.modify_section",
                     pack("{s:s}", "id", "empty.section"));
    assert_json_equal(result, "{}");
    json_decref(result);

    result = call_ok(f, "settings.get_section_ids", NULL);
    assert_int_equal(page_size(result), 2);
    json_decref(result);
}

static void
test_concurrent_increments(void **state)
{
    fixture *f = *state;
    json_t *params;

    assert_int_equal(
        call_concurrently(f, "settings.modify_section",
                          pack("{s:s, s:{s:i}}", "id", "shared",
                               "increment_parameters", "count", 1),
                          WRITER_THREADS, WRITES_PER_THREAD),
        0);
    params = get_section(f, "shared");
    assert_int_equal(json_integer_value(json_object_get(params, "count")),
                     WRITER_THREADS * WRITES_PER_THREAD);
    json_decref(params);
}

static void
write_filter_sections(fixture *f)
{
    set_section(f, "app.web", pack("{s:i}", "port", 80));
    set_section(f, "app.Worker", pack("{s:i}", "threads", 4));
    set_section(f, "apple", pack("{s:s}", "color", "red"));
    set_section(f, "db.main", pack("{s:s}", "host", "localhost"));
}

static size_t
count_sections(fixture *f, json_t *filter)
{
    return count_page(f, "settings.get_sections", filter);
}

static void
test_filter_keys(void **state)
{
    fixture *f = *state;

    write_filter_sections(f);
    assert_int_equal(count_sections(f, json_object()), 4);
    assert_int_equal(count_sections(f, pack("{s:s}", "search", "WORK")), 1);
    assert_int_equal(count_sections(f, pack("{s:s}", "search", "app")), 3);
    assert_int_equal(count_sections(f, pack("{s:s}", "id", "apple")), 1);
    assert_int_equal(count_sections(f, pack("{s:s}", "id", "app")), 0);
    assert_int_equal(count_sections(f, pack("{s:s}", "id_starts", "app.")), 2);
    assert_int_equal(count_sections(f, pack("{s:s}", "id_starts", "app")), 3);
    assert_int_equal(count_sections(f, pack("{s:s, s:s}", "id_starts", "app",
                                            "search", "main")),
                     0);
    assert_int_equal(count_sections(f, pack("{s:s, s:s}", "id_starts", "app",
                                            "id", "app.web")),
                     1);
}

static void
test_list_shapes_and_paging(void **state)
{
    fixture *f = *state;
    json_t *page;
    json_t *section;

    write_filter_sections(f);
    page = call_ok(f, "settings.get_section_ids",
                   pack("{s:{s:s}, s:{s:i, s:i, s:b}}", "filter", "id_starts",
                        "app", "paging", "skip", 1, "take", 1, "total", 1));
    assert_json_equal(page_data(page), "[\"app.web\"]");
    assert_int_equal(json_integer_value(json_object_get(page, "total")), 3);
    json_decref(page);

    page = call_ok(f, "settings.get_section_ids",
                   pack("{s:{s:i}}", "paging", "skip", 2));
    assert_json_equal(page_data(page), "[\"apple\", \"db.main\"]");
    assert_true(json_is_null(json_object_get(page, "total")));
    json_decref(page);

    page = call_ok(f, "settings.get_sections",
                   pack("{s:{s:s}, s:{s:b}}", "filter", "id", "db.main",
                        "paging", "total", 1));
    assert_int_equal(json_integer_value(json_object_get(page, "total")), 1);
    section = json_array_get(page_data(page), 0);
    assert_string_equal(json_string_value(json_object_get(section, "id")),
                        "db.main");
    assert_json_equal(json_object_get(section, "parameters"),
                      "{\"host\": \"localhost\"}");
    assert_true(json_is_string(json_object_get(section, "update_time")));
    json_decref(page);
}

/* Sets a section until its event arrives: a new subscription may miss
 * the first events while it connects. */
static json_t *
receive_changed(fixture *f, pip_subscriber *sub)
{
    pip_error err;
    char *topic = NULL;
    json_t *payload = NULL;

    pip_error_init(&err);
    for (int attempt = 0; attempt < 50 && payload == NULL; attempt++) {
        set_section(f, "events",
                    pack("{s:{s:i}, s:i}", "a", "b", 1, "attempt", attempt));
        if (pip_subscriber_recv(sub, 100, &topic, &payload, &err) == PIP_OK) {
            assert_string_equal(topic, "settings.changed");
            free(topic);
        }
    }
    pip_error_fini(&err);
    return payload;
}

static void
test_changed_event(void **state)
{
    fixture *f = *state;
    pip_subscriber *sub = NULL;
    pip_error err;
    json_t *payload;
    char *topic = NULL;
    int64_t update_ms;

    pip_error_init(&err);
    assert_int_equal(pip_subscriber_new("settings.", &sub, &err), PIP_OK);
    assert_int_equal(pip_subscriber_dial(sub, pip_node_pub_url(f->node), &err),
                     PIP_OK);

    payload = receive_changed(f, sub);
    assert_non_null(payload);
    assert_string_equal(json_string_value(json_object_get(payload, "id")),
                        "events");
    assert_int_equal(json_integer_value(json_object_get(
                         json_object_get(payload, "parameters"), "a.b")),
                     1);
    assert_true(pip_time_parse(
        json_string_value(json_object_get(payload, "update_time")),
        &update_ms));
    json_decref(payload);

    /* drain what the retries published, then modify_section publishes */
    while (pip_subscriber_recv(sub, 200, &topic, &payload, &err) == PIP_OK) {
        free(topic);
        json_decref(payload);
    }
    json_decref(call_ok(f, "settings.modify_section",
                        pack("{s:s, s:{s:i}}", "id", "events",
                             "increment_parameters", "a.b", 41)));
    assert_int_equal(pip_subscriber_recv(sub, 2000, &topic, &payload, &err),
                     PIP_OK);
    assert_string_equal(topic, "settings.changed");
    assert_int_equal(json_integer_value(json_object_get(
                         json_object_get(payload, "parameters"), "a.b")),
                     42);
    free(topic);
    json_decref(payload);
    pip_subscriber_free(sub);
    pip_error_fini(&err);
}

static void
test_invalid_arguments(void **state)
{
    fixture *f = *state;

    call_invalid(f, "settings.get_section_by_id", NULL, "id");
    call_invalid(f, "settings.get_section_by_id", pack("{s:i}", "id", 7),
                 "id");
    call_invalid(f, "settings.set_section", pack("{s:s}", "id", "a"),
                 "parameters");
    call_invalid(f, "settings.set_section",
                 pack("{s:s, s:[]}", "id", "a", "parameters"), "parameters");
    call_invalid(f, "settings.modify_section",
                 pack("{s:s, s:s}", "id", "a", "update_parameters", "x=1"),
                 "update_parameters");
    call_invalid(f, "settings.modify_section",
                 pack("{s:s, s:i}", "id", "a", "increment_parameters", 1),
                 "increment_parameters");
    call_invalid(f, "settings.get_sections",
                 pack("{s:{s:i}}", "paging", "take", -1), "paging.take");
}

static void
test_data_survives_restart(void **state)
{
    fixture *f = *state;
    json_t *params;

    write_filter_sections(f);
    json_decref(call_ok(f, "settings.modify_section",
                        pack("{s:s, s:{s:i}}", "id", "app.web",
                             "increment_parameters", "port", 8000)));
    fixture_node_restart(f);
    params = get_section(f, "app.web");
    assert_int_equal(json_integer_value(json_object_get(params, "port")),
                     8080);
    json_decref(params);
    assert_int_equal(count_sections(f, json_object()), 4);
}

static void
test_describe_lists_commands(void **state)
{
    fixture *f = *state;
    const char *const commands[] = {"get_section_ids",   "get_sections",
                                    "get_section_by_id", "set_section",
                                    "modify_section",    NULL};
    json_t *described;

    check_describe(f, "v1/settings", commands, "options.max_page_size", "100");
    described = call_ok(f, "settings.describe", NULL);
    assert_string_equal(json_string_value(json_array_get(
                            json_object_get(described, "events"), 0)),
                        "changed");
    json_decref(described);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_describe_lists_commands, setup,
                                        fixture_teardown),
        cmocka_unit_test_setup_teardown(test_missing_section_is_empty, setup,
                                        fixture_teardown),
        cmocka_unit_test_setup_teardown(test_set_section_flattens, setup,
                                        fixture_teardown),
        cmocka_unit_test_setup_teardown(test_update_time_is_set, setup,
                                        fixture_teardown),
        cmocka_unit_test_setup_teardown(test_modify_updates_and_increments,
                                        setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_modify_creates_section, setup,
                                        fixture_teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_increments, setup,
                                        fixture_teardown),
        cmocka_unit_test_setup_teardown(test_filter_keys, setup,
                                        fixture_teardown),
        cmocka_unit_test_setup_teardown(test_list_shapes_and_paging, setup,
                                        fixture_teardown),
        cmocka_unit_test_setup_teardown(test_changed_event, setup,
                                        fixture_teardown),
        cmocka_unit_test_setup_teardown(test_invalid_arguments, setup,
                                        fixture_teardown),
        cmocka_unit_test_setup_teardown(test_data_survives_restart, setup,
                                        fixture_teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
