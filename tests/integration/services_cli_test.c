/*
 * The logging, counters and settings services as a user reaches them.
 * Discovery and one pipnode hosting the three services run as real
 * processes on loopback.  Every command is called through pipcall, whose
 * JSON output is parsed with jansson, and a few through pip_client.
 *
 * The tests share one node and run in table order.  Each uses names of
 * its own, and the tests that clear a collection run last.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "harness.h"
#include "pip/client.h"
#include "pip/time.h"

static harness *cli_harness;
static harness_proc *cli_node;

/* ---- helpers ---------------------------------------------------------- */

/* Runs pipcall with args, expects exit 0, and returns stdout parsed. */
static json_t *
cli_call_ok(const char *const *args)
{
    harness_output out;
    json_t *result;

    assert_int_equal(harness_pipcall(cli_harness, &out, args), 0);
    if (out.exit_code != 0) {
        fail_msg("pipcall %s exited %d; stderr: %s", args[0], out.exit_code,
                 out.err);
    }
    result = harness_parse_json(out.out);
    if (result == NULL) {
        fail_msg("pipcall %s printed no JSON on stdout: '%s'", args[0],
                 out.out);
    }
    harness_output_fini(&out);
    return result;
}
#define CLI_CALL_OK(...) cli_call_ok((const char *const[]){__VA_ARGS__, NULL})

/*
 * Runs pipcall with args, expects exit 1 and an error JSON with the given
 * code on stderr, and returns that error object.
 */
static json_t *
cli_call_fail(const char *code, const char *const *args)
{
    harness_output out;
    json_t *error;

    assert_int_equal(harness_pipcall(cli_harness, &out, args), 0);
    if (out.exit_code != 1) {
        fail_msg("pipcall %s exited %d, expected 1; stdout: %s stderr: %s",
                 args[0], out.exit_code, out.out, out.err);
    }
    error = harness_parse_error_json(out.err);
    if (error == NULL) {
        fail_msg("pipcall %s printed no error JSON on stderr: '%s'", args[0],
                 out.err);
    }
    harness_output_fini(&out);
    assert_true(json_is_string(json_object_get(error, "code")));
    assert_string_equal(json_string_value(json_object_get(error, "code")),
                        code);
    return error;
}
#define CLI_CALL_FAIL(code, ...) \
    cli_call_fail((code), (const char *const[]){__VA_ARGS__, NULL})

/* Runs pipcall with args and returns its exit code (usage errors). */
static int
cli_exit_code(const char *const *args)
{
    harness_output out;
    int code;

    assert_int_equal(harness_pipcall(cli_harness, &out, args), 0);
    code = out.exit_code;
    if (code == 2 && strstr(out.err, "--help") == NULL) {
        fail_msg("usage error without a pointer to --help: %s", out.err);
    }
    harness_output_fini(&out);
    return code;
}
#define CLI_EXIT_CODE(...) \
    cli_exit_code((const char *const[]){__VA_ARGS__, NULL})

static const char *
json_str(const json_t *obj, const char *key)
{
    const char *value = json_string_value(json_object_get(obj, key));

    if (value == NULL) {
        fail_msg("field '%s' is missing or not a string", key);
    }
    return value;
}

static double
json_num(const json_t *obj, const char *key)
{
    json_t *value = json_object_get(obj, key);

    if (!json_is_number(value)) {
        fail_msg("field '%s' is missing or not a number", key);
    }
    return json_number_value(value);
}

static int
compare_strings(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/*
 * Asserts that the page's data contains exactly the expected keys, in any
 * order.  key_field names the field of each record that is compared, or
 * is NULL when the records are strings themselves (get_section_ids).
 */
static void
assert_page_keys(const char *what, const json_t *page, const char *key_field,
                 const char *const *expected)
{
    json_t *data = json_object_get(page, "data");
    const char *got[64];
    const char *want[64];
    size_t n_want = 0;
    size_t i;
    json_t *item;

    assert_true(json_is_array(data));
    while (expected[n_want] != NULL) {
        want[n_want] = expected[n_want];
        n_want++;
    }
    if (json_array_size(data) != n_want) {
        char *text = json_dumps(page, JSON_COMPACT);

        fail_msg("%s: page has %zu records, expected %zu: %s", what,
                 json_array_size(data), n_want, text);
    }
    json_array_foreach(data, i, item) {
        got[i] = key_field ? json_string_value(json_object_get(item,
                                                               key_field))
                           : json_string_value(item);
        assert_non_null(got[i]);
    }
    qsort(got, n_want, sizeof(got[0]), compare_strings);
    qsort(want, n_want, sizeof(want[0]), compare_strings);
    for (i = 0; i < n_want; i++) {
        if (strcmp(got[i], want[i]) != 0) {
            fail_msg("%s: page has '%s' where '%s' was expected", what,
                     got[i], want[i]);
        }
    }
}
#define CLI_STRING(x) #x
#define CLI_LINE(x) "line " CLI_STRING(x)
#define ASSERT_PAGE_KEYS(page, field, ...)                          \
    assert_page_keys(CLI_LINE(__LINE__), (page), (field),           \
                     (const char *const[]){__VA_ARGS__, NULL})

/* Asserts page.total: -1 expects null, otherwise that number. */
static void
assert_page_total(const json_t *page, int64_t total)
{
    json_t *value = json_object_get(page, "total");

    if (total < 0) {
        assert_true(value == NULL || json_is_null(value));
        return;
    }
    assert_true(json_is_integer(value));
    assert_int_equal(json_integer_value(value), total);
}

/* The record at index of page.data, borrowed. */
static json_t *
page_item(const json_t *page, size_t index)
{
    json_t *item = json_array_get(json_object_get(page, "data"), index);

    assert_non_null(item);
    return item;
}

/*
 * True when describe's result lists the command, whether commands is an
 * array of objects with "name" or an object keyed by command name.
 */
static bool
describe_has_command(const json_t *describe, const char *command)
{
    json_t *commands = json_object_get(describe, "commands");
    json_t *item;
    size_t i;

    if (json_is_object(commands)) {
        return json_object_get(commands, command) != NULL;
    }
    json_array_foreach(commands, i, item) {
        const char *name = json_is_string(item)
                               ? json_string_value(item)
                               : json_string_value(json_object_get(item,
                                                                   "name"));

        if (name != NULL && strcmp(name, command) == 0) {
            return true;
        }
    }
    return false;
}

static pip_client *
cli_client_new(void)
{
    pip_client *client =
        harness_client_new(NULL, cli_harness->discovery_url, 5000);

    assert_non_null(client);
    return client;
}

/* Calls through the C client, expects success and returns the result. */
static json_t *
client_call_ok(pip_client *client, const char *method, const char *args_json)
{
    json_t *args = harness_parse_json(args_json);

    assert_non_null(args);
    return harness_call_ok(client, method, args);
}

/* ---- fixture ---------------------------------------------------------- */

static int
cli_setup(void **state)
{
    char data[PATH_MAX];
    char discovery_url[HARNESS_URL_MAX];
    /* Long expiry: the tests write messages dated 2020. */
    const char *argv[] = {
        "pipnode", "logging", "counters", "settings",
        "--listen", "tcp://127.0.0.1:0", "--pub", "tcp://127.0.0.1:0",
        "--data", data, "--discovery", discovery_url,
        "--set", "logging.options.expire_logs_timeout=100000",
        "--set", "logging.options.expire_errors_timeout=100000",
        NULL,
    };

    (void)state;
    cli_harness = harness_new();
    if (cli_harness == NULL || !harness_start_discovery(cli_harness, 10000)) {
        fprintf(stderr, "discovery did not come up\n");
        return -1;
    }
    harness_path(cli_harness, "node-data", data);
    snprintf(discovery_url, sizeof(discovery_url), "%s",
             cli_harness->discovery_url);

    cli_node = harness_start(cli_harness, "services", argv, false);
    if (cli_node == NULL ||
        !harness_wait_instances(cli_harness, "logging", 1, 10000) ||
        !harness_wait_instances(cli_harness, "counters", 1, 10000) ||
        !harness_wait_instances(cli_harness, "settings", 1, 10000)) {
        fprintf(stderr, "the services node did not register\n");
        return -1;
    }
    return 0;
}

static int
cli_teardown(void **state)
{
    int rv;

    (void)state;
    rv = harness_free(cli_harness);
    cli_harness = NULL;
    return rv;
}

/* ---- list and describe ------------------------------------------------ */

static void
test_list_shows_services(void **state)
{
    harness_output out;
    json_t *list;
    const char *names[] = {"logging", "counters", "settings"};

    (void)state;
    assert_int_equal(HARNESS_PIPCALL(cli_harness, &out, "list"), 0);
    assert_int_equal(out.exit_code, 0);
    for (size_t i = 0; i < 3; i++) {
        if (strstr(out.out, names[i]) == NULL) {
            fail_msg("list does not show %s: %s", names[i], out.out);
        }
    }
    harness_output_fini(&out);

    list = CLI_CALL_OK("list", "--json");
    assert_true(json_is_array(list));
    for (size_t i = 0; i < 3; i++) {
        size_t j;
        json_t *instance;
        int found = 0;

        json_array_foreach(list, j, instance) {
            const char *name = json_string_value(json_object_get(instance,
                                                                 "name"));

            if (name != NULL && strcmp(name, names[i]) == 0) {
                found++;
                assert_true(json_array_size(json_object_get(instance,
                                                            "rpc")) >= 1);
            }
        }
        assert_int_equal(found, 1);
    }
    json_decref(list);
}

static void
test_describe_counters(void **state)
{
    json_t *desc;
    const char *commands[] = {"read_counters", "write_counter",
                              "write_counters", "clear"};

    (void)state;
    desc = CLI_CALL_OK("describe", "counters");
    assert_true(json_is_object(desc));
    assert_string_equal(json_str(desc, "name"), "counters");
    for (size_t i = 0; i < 4; i++) {
        if (!describe_has_command(desc, commands[i])) {
            fail_msg("describe counters does not list %s", commands[i]);
        }
    }
    json_decref(desc);
}

/* ---- counters --------------------------------------------------------- */

static void
test_counters_write_and_merge(void **state)
{
    json_t *c;

    (void)state;
    /* Increment (type 4): counts add up. key=value argument form. */
    c = CLI_CALL_OK("counters.write_counter",
                    "counter={\"name\":\"cli.alpha.hits\",\"type\":4,"
                    "\"count\":2,\"source\":\"svc-a\"}");
    assert_string_equal(json_str(c, "name"), "cli.alpha.hits");
    assert_int_equal((int)json_num(c, "type"), 4);
    assert_int_equal((int)json_num(c, "count"), 2);
    json_decref(c);
    c = CLI_CALL_OK("counters.write_counter",
                    "counter={\"name\":\"cli.alpha.hits\",\"type\":4,"
                    "\"count\":3,\"source\":\"svc-a\"}");
    assert_int_equal((int)json_num(c, "count"), 5);
    json_decref(c);

    /* Interval (type 0): the JSON-object argument form. */
    c = CLI_CALL_OK("counters.write_counter",
                    "{\"counter\":{\"name\":\"cli.alpha.time\",\"type\":0,"
                    "\"source\":\"svc-a\",\"last\":5,\"count\":1,\"min\":5,"
                    "\"max\":5,\"average\":5}}");
    assert_int_equal((int)json_num(c, "count"), 1);
    json_decref(c);
    c = CLI_CALL_OK("counters.write_counter",
                    "{\"counter\":{\"name\":\"cli.alpha.time\",\"type\":0,"
                    "\"source\":\"svc-a\",\"last\":3,\"count\":3,\"min\":2,"
                    "\"max\":4,\"average\":3}}");
    assert_int_equal((int)json_num(c, "count"), 4);
    assert_true(json_num(c, "last") == 3.0);
    assert_true(json_num(c, "min") == 2.0);
    assert_true(json_num(c, "max") == 5.0);
    /* Count-weighted mean: (5 * 1 + 3 * 3) / 4. */
    assert_true(json_num(c, "average") == 3.5);
    json_decref(c);

    /* write_counters returns nothing, printed as null. */
    c = CLI_CALL_OK("counters.write_counters",
                    "{\"counters\":["
                    "{\"name\":\"cli.beta.hits\",\"type\":4,\"count\":1,"
                    "\"source\":\"svc-b\"},"
                    "{\"name\":\"cli.beta.size\",\"type\":2,\"last\":10,"
                    "\"count\":2,\"min\":8,\"max\":12,\"average\":10,"
                    "\"source\":\"svc-b\"},"
                    "{\"name\":\"other.gamma.hits\",\"type\":4,\"count\":7,"
                    "\"source\":\"svc-x\"}]}");
    assert_true(json_is_null(c));
    json_decref(c);

    c = CLI_CALL_OK("counters.read_counters",
                    "filter={\"name\":\"other.gamma.hits\"}");
    assert_int_equal((int)json_num(page_item(c, 0), "count"), 7);
    json_decref(c);
}

static void
check_counter_filter(const char *filter, const char *const *expected)
{
    char arg[256];
    json_t *page;

    snprintf(arg, sizeof(arg), "filter=%s", filter);
    page = CLI_CALL_OK("counters.read_counters", arg);
    assert_page_keys(arg, page, "name", expected);
    assert_page_total(page, -1);
    json_decref(page);
}
#define CHECK_COUNTER_FILTER(filter, ...) \
    check_counter_filter((filter), (const char *const[]){__VA_ARGS__, NULL})

static void
test_counters_filters(void **state)
{
    (void)state;
    CHECK_COUNTER_FILTER("{\"name\":\"cli.alpha.hits\"}", "cli.alpha.hits");
    CHECK_COUNTER_FILTER("{\"name_starts\":\"cli.beta\"}", "cli.beta.hits",
                         "cli.beta.size");
    CHECK_COUNTER_FILTER("{\"name_ends\":\".hits\"}", "cli.alpha.hits",
                         "cli.beta.hits", "other.gamma.hits");
    CHECK_COUNTER_FILTER("{\"group\":\"cli.alpha\"}", "cli.alpha.hits",
                         "cli.alpha.time");
    CHECK_COUNTER_FILTER("{\"group\":\"cli\"}", "cli.alpha.hits",
                         "cli.alpha.time", "cli.beta.hits", "cli.beta.size");
    CHECK_COUNTER_FILTER("{\"counter\":\"size\"}", "cli.beta.size");
    CHECK_COUNTER_FILTER("{\"counter\":\".hits\"}", "cli.alpha.hits",
                         "cli.beta.hits", "other.gamma.hits");
    CHECK_COUNTER_FILTER("{\"type\":4}", "cli.alpha.hits", "cli.beta.hits",
                         "other.gamma.hits");
    /* FilterParams values may come as strings. */
    CHECK_COUNTER_FILTER("{\"type\":\"0\"}", "cli.alpha.time");
    /* Increment counters keep only name, type and count, so a source
     * search finds the Statistics counter alone. */
    CHECK_COUNTER_FILTER("{\"search\":\"SVC-B\"}", "cli.beta.size");
    CHECK_COUNTER_FILTER("{\"search\":\"beta\"}", "cli.beta.hits",
                         "cli.beta.size");
    CHECK_COUNTER_FILTER("{\"name_starts\":\"cli.\",\"type\":4}",
                         "cli.alpha.hits", "cli.beta.hits");
    CHECK_COUNTER_FILTER("{\"name\":\"no.such.counter\"}", NULL);
}

static void
test_counters_paging(void **state)
{
    const char *filter = "filter={\"name_starts\":\"cli.\"}";
    json_t *first;
    json_t *second;
    json_t *page;
    const char *seen[4];

    (void)state;
    first = CLI_CALL_OK("counters.read_counters", filter,
                        "paging={\"skip\":0,\"take\":2,\"total\":true}");
    second = CLI_CALL_OK("counters.read_counters", filter,
                         "paging={\"skip\":2,\"take\":2,\"total\":true}");
    assert_int_equal(json_array_size(json_object_get(first, "data")), 2);
    assert_int_equal(json_array_size(json_object_get(second, "data")), 2);
    assert_page_total(first, 4);
    assert_page_total(second, 4);

    /* The two pages together hold the four counters, each once. */
    for (size_t i = 0; i < 2; i++) {
        seen[i] = json_str(page_item(first, i), "name");
        seen[i + 2] = json_str(page_item(second, i), "name");
    }
    qsort(seen, 4, sizeof(seen[0]), compare_strings);
    assert_string_equal(seen[0], "cli.alpha.hits");
    assert_string_equal(seen[1], "cli.alpha.time");
    assert_string_equal(seen[2], "cli.beta.hits");
    assert_string_equal(seen[3], "cli.beta.size");
    json_decref(first);
    json_decref(second);

    page = CLI_CALL_OK("counters.read_counters", filter,
                       "paging={\"skip\":3}");
    assert_int_equal(json_array_size(json_object_get(page, "data")), 1);
    assert_page_total(page, -1);
    json_decref(page);

    /* Paging numbers given as strings are accepted too. */
    page = CLI_CALL_OK("counters.read_counters",
                       "{\"filter\":{\"name_starts\":\"cli.\"},"
                       "\"paging\":{\"skip\":\"1\",\"take\":\"1\","
                       "\"total\":true}}");
    assert_int_equal(json_array_size(json_object_get(page, "data")), 1);
    assert_page_total(page, 4);
    json_decref(page);

    page = CLI_CALL_OK("counters.read_counters", filter,
                       "paging={\"total\":false}");
    assert_int_equal(json_array_size(json_object_get(page, "data")), 4);
    assert_page_total(page, -1);
    json_decref(page);
}

/* ---- settings --------------------------------------------------------- */

static void
assert_json_equal_text(const json_t *got, const char *expected_json)
{
    json_t *expected = harness_parse_json(expected_json);

    assert_non_null(expected);
    if (!json_equal(got, expected)) {
        char *text = json_dumps(got, JSON_COMPACT | JSON_SORT_KEYS);

        fail_msg("got %s, expected %s", text, expected_json);
    }
    json_decref(expected);
}

static void
test_settings_sections(void **state)
{
    json_t *p;

    (void)state;
    /* set_section flattens nested parameters into dotted keys. */
    p = CLI_CALL_OK("settings.set_section", "id=cli.s1",
                    "parameters={\"color\":\"red\",\"size\":10,"
                    "\"nested\":{\"a\":1,\"b\":{\"c\":\"x\"}}}");
    assert_json_equal_text(p, "{\"color\":\"red\",\"size\":10,"
                              "\"nested.a\":1,\"nested.b.c\":\"x\"}");
    json_decref(p);
    p = CLI_CALL_OK("settings.get_section_by_id", "id=cli.s1");
    assert_json_equal_text(p, "{\"color\":\"red\",\"size\":10,"
                              "\"nested.a\":1,\"nested.b.c\":\"x\"}");
    json_decref(p);

    /* A missing section reads as an empty map, never null. */
    p = CLI_CALL_OK("settings.get_section_by_id", "id=cli.missing");
    assert_json_equal_text(p, "{}");
    json_decref(p);

    /* A quoted value stays a string even when it looks like a number. */
    p = CLI_CALL_OK("settings.get_section_by_id", "id=\"123\"");
    assert_json_equal_text(p, "{}");
    json_decref(p);

    p = CLI_CALL_OK("settings.modify_section",
                    "{\"id\":\"cli.s1\","
                    "\"update_parameters\":{\"color\":\"blue\"},"
                    "\"increment_parameters\":{\"size\":5,\"hits\":2}}");
    assert_json_equal_text(p, "{\"color\":\"blue\",\"size\":15,\"hits\":2,"
                              "\"nested.a\":1,\"nested.b.c\":\"x\"}");
    json_decref(p);
    p = CLI_CALL_OK("settings.modify_section", "id=cli.s1",
                    "increment_parameters={\"size\":-20}");
    assert_int_equal((int)json_num(p, "size"), -5);
    json_decref(p);

    /* Numeric strings are read as numbers, other strings as 0. */
    p = CLI_CALL_OK("settings.set_section", "id=cli.s2",
                    "parameters={\"n\":\"41\",\"word\":\"abc\"}");
    json_decref(p);
    p = CLI_CALL_OK("settings.modify_section", "id=cli.s2",
                    "increment_parameters={\"n\":1,\"word\":1}");
    assert_json_equal_text(p, "{\"n\":42,\"word\":1}");
    json_decref(p);

    /* modify_section creates a missing section. */
    p = CLI_CALL_OK("settings.modify_section", "id=cli.s3",
                    "increment_parameters={\"k\":3}",
                    "update_parameters={\"mode\":\"auto\"}");
    assert_json_equal_text(p, "{\"k\":3,\"mode\":\"auto\"}");
    json_decref(p);
    p = CLI_CALL_OK("settings.get_section_by_id", "id=cli.s3");
    assert_json_equal_text(p, "{\"k\":3,\"mode\":\"auto\"}");
    json_decref(p);
}

static void
test_settings_listing(void **state)
{
    json_t *page;
    json_t *section;
    size_t i;

    (void)state;
    page = CLI_CALL_OK("settings.get_section_ids",
                       "filter={\"id_starts\":\"cli.s\"}",
                       "paging={\"total\":true}");
    ASSERT_PAGE_KEYS(page, NULL, "cli.s1", "cli.s2", "cli.s3");
    assert_page_total(page, 3);
    json_decref(page);

    page = CLI_CALL_OK("settings.get_section_ids",
                       "filter={\"id\":\"cli.s2\"}");
    ASSERT_PAGE_KEYS(page, NULL, "cli.s2");
    assert_page_total(page, -1);
    json_decref(page);

    /* search is a case-insensitive substring of the id. */
    page = CLI_CALL_OK("settings.get_section_ids",
                       "filter={\"search\":\"LI.S1\"}");
    ASSERT_PAGE_KEYS(page, NULL, "cli.s1");
    json_decref(page);

    page = CLI_CALL_OK("settings.get_section_ids",
                       "filter={\"id_starts\":\"cli.s\"}",
                       "paging={\"skip\":1,\"take\":1,\"total\":true}");
    assert_int_equal(json_array_size(json_object_get(page, "data")), 1);
    assert_page_total(page, 3);
    json_decref(page);

    page = CLI_CALL_OK("settings.get_sections",
                       "{\"filter\":{\"id_starts\":\"cli.s\"},"
                       "\"paging\":{\"skip\":0,\"take\":10,\"total\":true}}");
    ASSERT_PAGE_KEYS(page, "id", "cli.s1", "cli.s2", "cli.s3");
    assert_page_total(page, 3);
    json_array_foreach(json_object_get(page, "data"), i, section) {
        assert_true(json_is_object(json_object_get(section, "parameters")));
        assert_true(pip_time_parse(json_str(section, "update_time"),
                                   &(int64_t){0}));
        if (strcmp(json_str(section, "id"), "cli.s2") == 0) {
            assert_json_equal_text(json_object_get(section, "parameters"),
                                   "{\"n\":42,\"word\":1}");
        }
    }
    json_decref(page);

    page = CLI_CALL_OK("settings.get_sections",
                       "filter={\"search\":\"S3\"}");
    ASSERT_PAGE_KEYS(page, "id", "cli.s3");
    json_decref(page);
}

/*
 * `pipcall sub` needs a moment to connect before it can see an event, so
 * the section is set again every 200 ms until the subscriber has printed
 * one event and exited (bounded by 10 s).
 */
static void
test_sub_receives_change(void **state)
{
    harness_proc *sub;
    pip_client *client;
    json_t *event;
    json_t *payload;
    json_t *result;
    char *text;
    int64_t deadline;
    bool exited = false;
    const char *argv[] = {"pipcall", "--discovery",
                          cli_harness->discovery_url, "--timeout", "20000",
                          "sub", "settings.", "--count", "1", NULL};

    (void)state;
    sub = harness_start(cli_harness, "sub", argv, true);
    assert_non_null(sub);
    client = cli_client_new();

    deadline = harness_now_ms() + 10000;
    while (!exited && harness_now_ms() < deadline) {
        result = client_call_ok(client, "settings.set_section",
                                "{\"id\":\"sub.section\","
                                "\"parameters\":{\"mode\":\"on\"}}");
        json_decref(result);
        exited = harness_wait_exit(sub, 200);
    }
    pip_client_free(client);
    assert_true(exited);
    assert_int_equal(sub->exit_code, 0);

    text = harness_read_file(sub->out_path);
    assert_non_null(text);
    event = harness_parse_error_json(text);
    if (event == NULL) {
        fail_msg("sub printed no JSON event: '%s'", text);
    }
    free(text);
    assert_string_equal(json_str(event, "topic"), "settings.changed");
    payload = json_object_get(event, "payload");
    assert_string_equal(json_str(payload, "id"), "sub.section");
    assert_json_equal_text(json_object_get(payload, "parameters"),
                           "{\"mode\":\"on\"}");
    assert_true(pip_time_parse(json_str(payload, "update_time"),
                               &(int64_t){0}));
    json_decref(event);
}

/* ---- logging ---------------------------------------------------------- */

static void
check_message_filter(const char *filter, const char *const *expected)
{
    char arg[256];
    json_t *page;

    snprintf(arg, sizeof(arg), "filter=%s", filter);
    page = CLI_CALL_OK("logging.read_messages", arg);
    assert_page_keys(arg, page, "message", expected);
    json_decref(page);
}
#define CHECK_MESSAGE_FILTER(filter, ...) \
    check_message_filter((filter), (const char *const[]){__VA_ARGS__, NULL})

static void
test_logging_write(void **state)
{
    json_t *m;
    const char *id;

    (void)state;
    m = CLI_CALL_OK("logging.write_message",
                    "message={\"level\":2,\"message\":\"disk failed\","
                    "\"source\":\"cli-src\",\"correlation_id\":\"cli-cid-1\","
                    "\"error\":{\"code\":\"DISK_FULL\",\"message\":"
                    "\"no space\",\"stack_trace\":\"at write_block\"}}");
    id = json_str(m, "id");
    assert_int_equal(strlen(id), 32);
    assert_int_equal(strspn(id, "0123456789abcdef"), 32);
    assert_int_equal((int)json_num(m, "level"), 2);
    assert_true(pip_time_parse(json_str(m, "time"), &(int64_t){0}));
    json_decref(m);

    /* A missing level becomes Trace (6) and a missing time becomes now. */
    m = CLI_CALL_OK("logging.write_message",
                    "message={\"message\":\"plain note\","
                    "\"source\":\"cli-src\"}");
    assert_int_equal((int)json_num(m, "level"), 6);
    assert_true(pip_time_parse(json_str(m, "time"), &(int64_t){0}));
    json_decref(m);

    /* A given id is replaced by a fresh one. */
    m = CLI_CALL_OK("logging.write_message",
                    "{\"message\":{\"id\":\"given\",\"level\":4,"
                    "\"message\":\"info note\",\"source\":\"cli-src\"}}");
    assert_string_not_equal(json_str(m, "id"), "given");
    json_decref(m);

    m = CLI_CALL_OK("logging.write_messages",
                    "{\"messages\":["
                    "{\"time\":\"2020-01-01T00:00:00Z\",\"level\":4,"
                    "\"message\":\"old one\",\"source\":\"cli-time\"},"
                    "{\"time\":\"2020-01-02T00:00:00Z\",\"level\":3,"
                    "\"message\":\"old two\",\"source\":\"cli-time\"},"
                    "{\"time\":\"2020-01-03T00:00:00Z\",\"level\":1,"
                    "\"message\":\"old three\",\"source\":\"cli-time\"}]}");
    assert_true(json_is_null(m));
    json_decref(m);

    m = CLI_CALL_OK("logging.write_messages", "{\"messages\":[]}");
    assert_true(json_is_null(m));
    json_decref(m);
}

static void
test_logging_filters(void **state)
{
    json_t *page;

    (void)state;
    /* Newest first. */
    page = CLI_CALL_OK("logging.read_messages",
                       "filter={\"source\":\"cli-time\"}");
    assert_int_equal(json_array_size(json_object_get(page, "data")), 3);
    assert_string_equal(json_str(page_item(page, 0), "message"), "old three");
    assert_string_equal(json_str(page_item(page, 1), "message"), "old two");
    assert_string_equal(json_str(page_item(page, 2), "message"), "old one");
    json_decref(page);

    CHECK_MESSAGE_FILTER("{\"from_time\":\"2020-01-02T00:00:00Z\","
                         "\"to_time\":\"2020-01-03T00:00:00Z\"}", "old two");
    CHECK_MESSAGE_FILTER("{\"source\":\"cli-time\","
                         "\"from_time\":\"2020-01-02T00:00:00Z\"}",
                         "old two", "old three");
    CHECK_MESSAGE_FILTER("{\"source\":\"cli-time\","
                         "\"to_time\":\"2020-01-02T00:00:00Z\"}", "old one");
    CHECK_MESSAGE_FILTER("{\"source\":\"cli-src\"}", "disk failed",
                         "plain note", "info note");
    CHECK_MESSAGE_FILTER("{\"level\":2}", "disk failed");
    CHECK_MESSAGE_FILTER("{\"level\":\"6\",\"source\":\"cli-src\"}",
                         "plain note");
    CHECK_MESSAGE_FILTER("{\"max_level\":2}", "disk failed", "old three");
    CHECK_MESSAGE_FILTER("{\"max_level\":3,\"source\":\"cli-time\"}",
                         "old two", "old three");
    CHECK_MESSAGE_FILTER("{\"search\":\"DISK_FULL\"}", "disk failed");
    CHECK_MESSAGE_FILTER("{\"search\":\"NO SPACE\"}", "disk failed");
    CHECK_MESSAGE_FILTER("{\"search\":\"write_block\"}", "disk failed");
    CHECK_MESSAGE_FILTER("{\"search\":\"cli-cid-1\"}", "disk failed");
    CHECK_MESSAGE_FILTER("{\"search\":\"PLAIN\"}", "plain note");
    CHECK_MESSAGE_FILTER("{\"errors_only\":true}", "disk failed",
                         "old three");
    CHECK_MESSAGE_FILTER("{\"errors_only\":\"true\","
                         "\"source\":\"cli-time\"}", "old three");

    page = CLI_CALL_OK("logging.read_errors");
    ASSERT_PAGE_KEYS(page, "message", "disk failed", "old three");
    json_decref(page);
    page = CLI_CALL_OK("logging.read_errors",
                       "filter={\"search\":\"disk\"}");
    ASSERT_PAGE_KEYS(page, "message", "disk failed");
    json_decref(page);
}

static void
test_logging_paging(void **state)
{
    const char *filter = "filter={\"source\":\"cli-src\"}";
    json_t *page;

    (void)state;
    page = CLI_CALL_OK("logging.read_messages", filter,
                       "paging={\"skip\":1,\"take\":1,\"total\":true}");
    assert_int_equal(json_array_size(json_object_get(page, "data")), 1);
    assert_page_total(page, 3);
    /* Newest first: info note, plain note, disk failed. */
    assert_string_equal(json_str(page_item(page, 0), "message"),
                        "plain note");
    json_decref(page);

    page = CLI_CALL_OK("logging.read_messages", filter,
                       "paging={\"take\":2}");
    assert_int_equal(json_array_size(json_object_get(page, "data")), 2);
    assert_page_total(page, -1);
    json_decref(page);

    page = CLI_CALL_OK("logging.read_errors",
                       "paging={\"skip\":1,\"total\":true}");
    assert_int_equal(json_array_size(json_object_get(page, "data")), 1);
    assert_page_total(page, 2);
    json_decref(page);
}

/* ---- errors and exit statuses ----------------------------------------- */

/* Asserts that a validation error names the argument path. */
static void
assert_error_argument(const json_t *error, const char *argument)
{
    const char *detail = json_string_value(
        json_object_get(json_object_get(error, "details"), "argument"));

    assert_non_null(strstr(json_str(error, "message"), argument));
    assert_non_null(detail);
    assert_string_equal(detail, argument);
}

static void
test_error_exit_status(void **state)
{
    json_t *e;

    (void)state;
    e = CLI_CALL_FAIL("UNKNOWN_COMMAND", "counters.no_such_command");
    assert_string_equal(json_str(e, "category"), "NotFound");
    json_decref(e);

    /* A scalar where the schema expects an object. */
    e = CLI_CALL_FAIL("INVALID_DATA", "counters.write_counter", "counter=5");
    assert_error_argument(e, "counter");
    assert_string_equal(json_str(e, "category"), "BadRequest");
    json_decref(e);

    /* A nested field of the wrong type is named by its path. */
    e = CLI_CALL_FAIL("INVALID_DATA", "counters.write_counter",
                      "counter={\"name\":\"cli.bad\",\"type\":\"four\"}");
    assert_error_argument(e, "counter.type");
    json_decref(e);

    /* A number where the schema expects a string. */
    e = CLI_CALL_FAIL("INVALID_DATA", "settings.get_section_by_id", "id=123");
    assert_error_argument(e, "id");
    json_decref(e);

    /* Missing required arguments, top-level and nested. */
    e = CLI_CALL_FAIL("INVALID_DATA", "settings.get_section_by_id");
    assert_error_argument(e, "id");
    json_decref(e);
    e = CLI_CALL_FAIL("INVALID_DATA", "counters.write_counter",
                      "counter={\"name\":\"cli.bad\"}");
    assert_error_argument(e, "counter.type");
    json_decref(e);
    e = CLI_CALL_FAIL("INVALID_DATA", "logging.write_message");
    assert_error_argument(e, "message");
    json_decref(e);

    /* The correlation id given with --cid comes back in the error. */
    e = CLI_CALL_FAIL("UNKNOWN_COMMAND", "--cid", "cli-trace-7",
                      "settings.no_such_command");
    assert_string_equal(json_str(e, "correlation_id"), "cli-trace-7");
    json_decref(e);

    e = CLI_CALL_FAIL("SERVICE_NOT_FOUND", "nosuchservice.ping");
    assert_non_null(strstr(json_str(e, "message"), "pipcall list"));
    json_decref(e);

    /* Method names are lower case, through discovery as on the node. */
    e = CLI_CALL_FAIL("INVALID_METHOD", "Counters.Ping");
    json_decref(e);

    /* Usage errors exit 2. */
    assert_int_equal(CLI_EXIT_CODE("settings.get_section_by_id", "id=a",
                                   "id=b"), 2);
    assert_int_equal(CLI_EXIT_CODE("--no-such-option", "counters.ping"), 2);
}

/* ---- messages that tell the user what to do --------------------------- */

/* Runs pipcall with args; the caller checks and finis *out. */
static void
cli_run(harness_output *out, const char *const *args)
{
    assert_int_equal(harness_pipcall(cli_harness, out, args), 0);
}
#define CLI_RUN(out, ...) cli_run((out), (const char *const[]){__VA_ARGS__, NULL})

/* Asserts that stderr contains needle, showing stderr when not. */
static void
assert_err_contains(const harness_output *out, const char *needle)
{
    if (strstr(out->err, needle) == NULL) {
        fail_msg("stderr lacks '%s': %s", needle, out->err);
    }
}

static void
test_quoting_hint(void **state)
{
    harness_output out;

    (void)state;
    CLI_RUN(&out, "settings.get_section_by_id", "id=123");
    assert_int_equal(out.exit_code, 1);
    assert_err_contains(&out, "\"INVALID_DATA\"");
    assert_err_contains(&out, "id=123 was sent as a number");
    assert_err_contains(&out, "quote it: id='\"123\"'");
    harness_output_fini(&out);

    /* A value that the user wrote as JSON gets no hint. */
    CLI_RUN(&out, "counters.write_counter",
            "counter={\"name\":5,\"type\":4}");
    assert_int_equal(out.exit_code, 1);
    assert_null(strstr(out.err, "Hint"));
    harness_output_fini(&out);
}

static void
test_invalid_json_values(void **state)
{
    static const char *const values[] = {
        "counter={\"name\":\"cli.j\"", "counter=[1,", "counter=\"open",
        "counter=1e400", "counter=99999999999999999999", "counter=012",
    };
    harness_output out;
    json_t *section;

    (void)state;
    for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
        CLI_RUN(&out, "counters.write_counter", values[i]);
        if (out.exit_code != 2) {
            fail_msg("%s exited %d, expected 2: %s", values[i], out.exit_code,
                     out.err);
        }
        assert_err_contains(&out, "(line 1, column");
        harness_output_fini(&out);
    }

    /* Dates and versions do not look like numbers, so they stay strings. */
    section = CLI_CALL_OK("settings.set_section", "id=1.2.3",
                          "parameters={\"day\":\"x\"}");
    json_decref(section);
    section = CLI_CALL_OK("settings.get_section_by_id", "id=1.2.3");
    assert_json_equal_text(section, "{\"day\":\"x\"}");
    json_decref(section);
    section = CLI_CALL_OK("settings.get_section_by_id", "id=2026-01-31");
    json_decref(section);
}

static void
test_unreachable_network_advice(void **state)
{
    char url[64];
    harness_output out;
    int64_t started_ms;
    json_t *e;

    (void)state;
    snprintf(url, sizeof(url), "tcp://127.0.0.1:%d", harness_free_port());

    /* Refused at once, so it fails long before the 5 s timeout. */
    started_ms = pip_mono_ms();
    CLI_RUN(&out, "--discovery", url, "list");
    assert_true(pip_mono_ms() - started_ms < 3000);
    assert_int_equal(out.exit_code, 1);
    assert_err_contains(&out, url);
    assert_err_contains(&out, "Is the network running?");
    assert_err_contains(&out, "PIP_DISCOVERY");
    e = harness_parse_error_json(out.err);
    assert_non_null(e);
    assert_string_equal(json_str(e, "code"), "CONNECTION_FAILED");
    json_decref(e);
    harness_output_fini(&out);

    CLI_RUN(&out, "--discovery", url, "counters.ping");
    assert_int_equal(out.exit_code, 1);
    assert_err_contains(&out, "Is the network running?");
    harness_output_fini(&out);

    /* sub names what failed, not the call it makes internally. */
    CLI_RUN(&out, "--discovery", url, "sub", "settings.", "--count", "1");
    assert_int_equal(out.exit_code, 1);
    assert_err_contains(&out, "Cannot subscribe");
    assert_err_contains(&out, "Is the network running?");
    assert_null(strstr(out.err, "node.describe"));
    harness_output_fini(&out);

    CLI_RUN(&out, "--endpoint", url, "counters.ping");
    assert_int_equal(out.exit_code, 1);
    assert_err_contains(&out, "--endpoint");
    harness_output_fini(&out);

    /* A URL without a scheme is a usage error. */
    CLI_RUN(&out, "--discovery", "127.0.0.1:4100", "list");
    assert_int_equal(out.exit_code, 2);
    assert_err_contains(&out, "Expected a URL such as tcp://127.0.0.1:4100");
    harness_output_fini(&out);
}

/* ---- the C client ----------------------------------------------------- */

static void
expect_client_error(pip_client *client, const char *method,
                    const char *args_json, int category, const char *code)
{
    json_t *args = args_json ? harness_parse_json(args_json) : NULL;
    json_t *result = NULL;
    pip_meta meta;
    pip_error err;
    int rv;

    memset(&meta, 0, sizeof(meta));
    snprintf(meta.correlation_id, sizeof(meta.correlation_id), "client-cid");
    pip_error_init(&err);
    rv = pip_client_call(client, method, args, &meta, &result, &err);
    assert_int_equal(rv, category);
    assert_int_equal(err.category, category);
    assert_string_equal(err.code, code);
    assert_null(result);
    if (category != PIP_E_UNAVAILABLE) {
        assert_string_equal(err.correlation_id, "client-cid");
    }
    pip_error_fini(&err);
    json_decref(args);
}

static void
test_client_calls(void **state)
{
    pip_client *client;
    json_t *r;
    const char *id;
    char *saved_id;

    (void)state;
    client = cli_client_new();

    for (int i = 1; i <= 3; i++) {
        r = client_call_ok(client, "counters.write_counter",
                           "{\"counter\":{\"name\":\"client.hits\","
                           "\"type\":4,\"count\":1}}");
        assert_int_equal((int)json_num(r, "count"), i);
        json_decref(r);
    }
    r = client_call_ok(client, "counters.read_counters",
                       "{\"filter\":{\"name\":\"client.hits\"},"
                       "\"paging\":{\"total\":true}}");
    assert_page_total(r, 1);
    assert_int_equal((int)json_num(page_item(r, 0), "count"), 3);
    json_decref(r);

    r = client_call_ok(client, "settings.set_section",
                       "{\"id\":\"client.s\","
                       "\"parameters\":{\"a\":{\"b\":1}}}");
    assert_json_equal_text(r, "{\"a.b\":1}");
    json_decref(r);
    r = client_call_ok(client, "settings.modify_section",
                       "{\"id\":\"client.s\","
                       "\"increment_parameters\":{\"a.b\":4}}");
    assert_json_equal_text(r, "{\"a.b\":5}");
    json_decref(r);
    r = client_call_ok(client, "settings.get_section_by_id",
                       "{\"id\":\"client.s\"}");
    assert_json_equal_text(r, "{\"a.b\":5}");
    json_decref(r);

    r = client_call_ok(client, "logging.write_message",
                       "{\"message\":{\"level\":3,\"message\":\"from client\","
                       "\"source\":\"client-src\"}}");
    saved_id = strdup(json_str(r, "id"));
    json_decref(r);
    r = client_call_ok(client, "logging.read_messages",
                       "{\"filter\":{\"source\":\"client-src\"},"
                       "\"paging\":{\"total\":true}}");
    assert_page_total(r, 1);
    id = json_str(page_item(r, 0), "id");
    assert_string_equal(id, saved_id);
    free(saved_id);
    json_decref(r);

    expect_client_error(client, "counters.no_such_command", NULL,
                        PIP_E_NOT_FOUND, "UNKNOWN_COMMAND");
    expect_client_error(client, "settings.get_section_by_id", "{}",
                        PIP_E_BAD_REQUEST, "INVALID_DATA");
    expect_client_error(client, "counters.write_counter",
                        "{\"counter\":\"text\"}", PIP_E_BAD_REQUEST,
                        "INVALID_DATA");
    expect_client_error(client, "nosuchservice.ping", NULL,
                        PIP_E_UNAVAILABLE, "SERVICE_NOT_FOUND");
    pip_client_free(client);
}

/* ---- clear, run last -------------------------------------------------- */

static void
test_clear_commands(void **state)
{
    json_t *r;

    (void)state;
    r = CLI_CALL_OK("counters.clear");
    assert_true(json_is_null(r));
    json_decref(r);
    r = CLI_CALL_OK("counters.read_counters", "paging={\"total\":true}");
    assert_int_equal(json_array_size(json_object_get(r, "data")), 0);
    assert_page_total(r, 0);
    json_decref(r);

    /* logging.clear empties the messages and keeps the errors. */
    r = CLI_CALL_OK("logging.clear");
    assert_true(json_is_null(r));
    json_decref(r);
    r = CLI_CALL_OK("logging.read_messages", "paging={\"total\":true}");
    assert_page_total(r, 0);
    json_decref(r);
    r = CLI_CALL_OK("logging.read_errors", "paging={\"total\":true}");
    assert_page_total(r, 2);
    json_decref(r);
}

static void
test_node_stops_cleanly(void **state)
{
    json_t *left;

    (void)state;
    assert_int_equal(harness_stop(cli_node, HARNESS_STOP_TIMEOUT_MS), 0);
    left = harness_instances(cli_harness, "counters");
    assert_non_null(left);
    assert_int_equal(json_array_size(left), 0);
    json_decref(left);
    assert_true(harness_logs_clean(cli_harness));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_list_shows_services),
        cmocka_unit_test(test_describe_counters),
        cmocka_unit_test(test_counters_write_and_merge),
        cmocka_unit_test(test_counters_filters),
        cmocka_unit_test(test_counters_paging),
        cmocka_unit_test(test_settings_sections),
        cmocka_unit_test(test_settings_listing),
        cmocka_unit_test(test_sub_receives_change),
        cmocka_unit_test(test_logging_write),
        cmocka_unit_test(test_logging_filters),
        cmocka_unit_test(test_logging_paging),
        cmocka_unit_test(test_error_exit_status),
        cmocka_unit_test(test_quoting_hint),
        cmocka_unit_test(test_invalid_json_values),
        cmocka_unit_test(test_unreachable_network_advice),
        cmocka_unit_test(test_client_calls),
        cmocka_unit_test(test_clear_commands),
        cmocka_unit_test(test_node_stops_cleanly),
    };

    return cmocka_run_group_tests(tests, cli_setup, cli_teardown);
}
