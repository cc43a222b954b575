/*
 * Tests of the shared CRUD shapes: paging, filter conversions, text
 * search, pages and ids.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "pip/crud.h"

typedef struct paging_case {
    const char *json; /* NULL: no paging object */
    int rv;
    int64_t skip;
    int64_t take;
    bool total;
} paging_case;

static const paging_case paging_cases[] = {
    {NULL, PIP_OK, 0, 100, false},
    {"null", PIP_OK, 0, 100, false},
    {"{}", PIP_OK, 0, 100, false},
    {"{\"skip\": null, \"take\": null, \"total\": null}", PIP_OK, 0, 100,
     false},
    {"{\"skip\": 5, \"take\": 10, \"total\": true}", PIP_OK, 5, 10, true},
    {"{\"take\": 500}", PIP_OK, 0, 100, false},
    {"{\"take\": 0}", PIP_OK, 0, 0, false},
    {"{\"skip\": \"7\", \"take\": \"20\", \"total\": \"true\"}", PIP_OK, 7,
     20, true},
    {"{\"skip\": \" 7 \", \"total\": \"1\"}", PIP_OK, 7, 100, true},
    {"{\"total\": \"FALSE\"}", PIP_OK, 0, 100, false},
    {"{\"total\": \"0\"}", PIP_OK, 0, 100, false},
    {"{\"skip\": 3.0, \"take\": \"12.0\"}", PIP_OK, 3, 12, false},
    {"{\"take\": \"1000\"}", PIP_OK, 0, 100, false},
    {"{\"skip\": -1}", PIP_E_BAD_REQUEST, 0, 0, false},
    {"{\"take\": \"-5\"}", PIP_E_BAD_REQUEST, 0, 0, false},
    {"{\"skip\": 2.5}", PIP_E_BAD_REQUEST, 0, 0, false},
    {"{\"skip\": \"ten\"}", PIP_E_BAD_REQUEST, 0, 0, false},
    {"{\"take\": \"12abc\"}", PIP_E_BAD_REQUEST, 0, 0, false},
    {"{\"take\": \"\"}", PIP_E_BAD_REQUEST, 0, 0, false},
    {"{\"skip\": \"99999999999999999999\"}", PIP_E_BAD_REQUEST, 0, 0, false},
    {"{\"take\": true}", PIP_E_BAD_REQUEST, 0, 0, false},
    {"{\"total\": \"maybe\"}", PIP_E_BAD_REQUEST, 0, 0, false},
    {"{\"total\": 1}", PIP_E_BAD_REQUEST, 0, 0, false},
    {"[1, 2]", PIP_E_BAD_REQUEST, 0, 0, false},
    {"\"skip=1\"", PIP_E_BAD_REQUEST, 0, 0, false},
};

static void
paging_parse_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(paging_cases) / sizeof(paging_cases[0]);
         i++) {
        const paging_case *tc = &paging_cases[i];
        json_t *paging = NULL;
        pip_paging out;
        pip_error err;
        int rv;

        if (tc->json != NULL) {
            paging = json_loads(tc->json, JSON_DECODE_ANY, NULL);
            assert_non_null(paging);
        }
        pip_error_init(&err);
        rv = pip_paging_parse(paging, 100, &out, &err);
        print_message("case %zu: %s\n", i, tc->json ? tc->json : "NULL");
        assert_int_equal(rv, tc->rv);
        if (rv == PIP_OK) {
            assert_int_equal(out.skip, tc->skip);
            assert_int_equal(out.take, tc->take);
            assert_int_equal(out.total, tc->total);
        } else {
            assert_string_equal(err.code, "INVALID_DATA");
        }
        pip_error_fini(&err);
        json_decref(paging);
    }
}

static void
paging_error_names_field(void **state)
{
    json_t *paging = json_pack("{s:i}", "take", -3);
    pip_paging out;
    pip_error err;

    (void)state;
    pip_error_init(&err);
    assert_int_equal(pip_paging_parse(paging, 50, &out, &err),
                     PIP_E_BAD_REQUEST);
    assert_non_null(strstr(err.message, "paging.take"));
    assert_string_equal(
        json_string_value(json_object_get(err.details, "field")),
        "paging.take");
    assert_int_equal(json_integer_value(json_object_get(err.details, "value")),
                     -3);
    pip_error_fini(&err);
    json_decref(paging);
}

static json_t *filter;

static int
load_filter(void **state)
{
    (void)state;
    filter = json_loads("{"
                        "\"name\": \"pump\", \"number\": 12, "
                        "\"count\": \"12\", \"minus\": \"-4\", "
                        "\"ratio\": 2.5, \"whole\": 3.0, \"word\": \"x12\", "
                        "\"on\": \"true\", \"off\": \"false\", "
                        "\"one\": \"1\", \"zero\": \"0\", \"yes\": \"YES\", "
                        "\"no\": \"no\", \"native\": true, \"two\": 2, "
                        "\"maybe\": \"maybe\", \"nothing\": null, "
                        "\"iso\": \"2026-01-31T10:00:00Z\", "
                        "\"day\": \"2026-01-31\", "
                        "\"ms\": 1769853600000, "
                        "\"ms_text\": \"1769853600000\", "
                        "\"bad_time\": \"yesterday\""
                        "}",
                        0, NULL);
    return filter != NULL ? 0 : -1;
}

static int
free_filter(void **state)
{
    (void)state;
    json_decref(filter);
    return 0;
}

static void
filter_string_values(void **state)
{
    const char *value = NULL;

    (void)state;
    assert_true(pip_filter_string(filter, "name", &value));
    assert_string_equal(value, "pump");
    assert_false(pip_filter_string(filter, "number", &value));
    assert_false(pip_filter_string(filter, "nothing", &value));
    assert_false(pip_filter_string(filter, "missing", &value));
    assert_false(pip_filter_string(NULL, "name", &value));
}

static void
filter_int_conversions(void **state)
{
    int64_t value = 0;

    (void)state;
    assert_true(pip_filter_int(filter, "number", &value));
    assert_int_equal(value, 12);
    assert_true(pip_filter_int(filter, "count", &value));
    assert_int_equal(value, 12);
    assert_true(pip_filter_int(filter, "minus", &value));
    assert_int_equal(value, -4);
    assert_true(pip_filter_int(filter, "whole", &value));
    assert_int_equal(value, 3);
    assert_false(pip_filter_int(filter, "ratio", &value));
    assert_false(pip_filter_int(filter, "word", &value));
    assert_false(pip_filter_int(filter, "native", &value));
    assert_false(pip_filter_int(filter, "nothing", &value));
    assert_false(pip_filter_int(filter, "missing", &value));
}

static void
filter_bool_conversions(void **state)
{
    static const struct {
        const char *key;
        bool expected;
    } valid[] = {{"on", true},  {"off", false}, {"one", true},
                 {"zero", false}, {"yes", true}, {"no", false},
                 {"native", true}};
    static const char *const invalid[] = {"maybe", "two", "nothing",
                                          "missing", "name"};

    (void)state;
    for (size_t i = 0; i < sizeof(valid) / sizeof(valid[0]); i++) {
        bool value = !valid[i].expected;

        print_message("key %s\n", valid[i].key);
        assert_true(pip_filter_bool(filter, valid[i].key, &value));
        assert_int_equal(value, valid[i].expected);
    }
    for (size_t i = 0; i < sizeof(invalid) / sizeof(invalid[0]); i++) {
        bool value = false;

        print_message("key %s\n", invalid[i]);
        assert_false(pip_filter_bool(filter, invalid[i], &value));
    }
}

static void
filter_time_conversions(void **state)
{
    int64_t ms = 0;

    (void)state;
    /* 2026-01-31T10:00:00Z is 1769853600000 ms after the epoch. */
    assert_true(pip_filter_time(filter, "iso", &ms));
    assert_int_equal(ms, 1769853600000LL);
    assert_true(pip_filter_time(filter, "day", &ms));
    assert_int_equal(ms, 1769817600000LL);
    assert_true(pip_filter_time(filter, "ms", &ms));
    assert_int_equal(ms, 1769853600000LL);
    assert_true(pip_filter_time(filter, "ms_text", &ms));
    assert_int_equal(ms, 1769853600000LL);
    assert_false(pip_filter_time(filter, "bad_time", &ms));
    assert_false(pip_filter_time(filter, "nothing", &ms));
    assert_false(pip_filter_time(filter, "native", &ms));
}

static void
text_contains_ignores_case(void **state)
{
    (void)state;
    assert_true(pip_text_contains("Pump Station 4", "station"));
    assert_true(pip_text_contains("Pump Station 4", "PUMP S"));
    assert_true(pip_text_contains("Pump Station 4", "4"));
    assert_true(pip_text_contains("Pump", "pump"));
    assert_false(pip_text_contains("Pump", "pumps"));
    assert_false(pip_text_contains("Pump Station", "valve"));
    assert_true(pip_text_contains("Pump", ""));
    assert_true(pip_text_contains("", ""));
    assert_false(pip_text_contains("", "a"));
    assert_false(pip_text_contains(NULL, "a"));
}

static void
page_with_and_without_total(void **state)
{
    json_t *with = pip_page_new(json_pack("[i,i]", 1, 2), true, 7);
    json_t *without = pip_page_new(NULL, false, 7);

    (void)state;
    assert_non_null(with);
    assert_int_equal(json_array_size(json_object_get(with, "data")), 2);
    assert_int_equal(json_integer_value(json_object_get(with, "total")), 7);
    assert_non_null(without);
    assert_int_equal(json_array_size(json_object_get(without, "data")), 0);
    assert_true(json_is_null(json_object_get(without, "total")));
    json_decref(with);
    json_decref(without);
}

static int
compare_ids(const void *a, const void *b)
{
    return strcmp(a, b);
}

static void
ids_are_hex_and_distinct(void **state)
{
    enum { COUNT = 1000 };
    char(*ids)[33] = calloc(COUNT, sizeof(*ids));

    (void)state;
    assert_non_null(ids);
    for (int i = 0; i < COUNT; i++) {
        pip_id_generate(ids[i]);
        assert_int_equal(strlen(ids[i]), 32);
        assert_int_equal(strspn(ids[i], "0123456789abcdef"), 32);
    }
    qsort(ids, COUNT, sizeof(*ids), compare_ids);
    for (int i = 1; i < COUNT; i++) {
        assert_string_not_equal(ids[i - 1], ids[i]);
    }
    free(ids);
}

/* A filter value of the wrong type is named in the message. */
static void
filter_error_names_value(void **state)
{
    json_t *filter = json_pack("{si, ss}", "group", 5, "level", "loud");
    const char *text = NULL;
    bool present = false;
    int64_t level = 0;
    pip_error err;

    (void)state;
    pip_error_init(&err);
    assert_int_equal(pip_filter_read_string(filter, "group", &text, &err),
                     PIP_E_BAD_REQUEST);
    assert_string_equal(err.message, "Invalid argument 'filter.group': "
                                     "expected string, received 5.");
    pip_error_fini(&err);
    assert_int_equal(
        pip_filter_read_int(filter, "level", &present, &level, &err),
        PIP_E_BAD_REQUEST);
    assert_string_equal(err.message,
                        "Invalid argument 'filter.level': expected integer, "
                        "received the string \"loud\".");
    pip_error_fini(&err);
    json_decref(filter);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(paging_parse_table),
        cmocka_unit_test(filter_error_names_value),
        cmocka_unit_test(paging_error_names_field),
        cmocka_unit_test(filter_string_values),
        cmocka_unit_test(filter_int_conversions),
        cmocka_unit_test(filter_bool_conversions),
        cmocka_unit_test(filter_time_conversions),
        cmocka_unit_test(text_contains_ignores_case),
        cmocka_unit_test(page_with_and_without_total),
        cmocka_unit_test(ids_are_hex_and_distinct),
    };

    return cmocka_run_group_tests(tests, load_filter, free_filter);
}
