/* Tests of argument validation and of describe. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "pip/schema.h"

static const pip_field counter_fields[] = {
    {.name = "name",
     .type = PIP_T_STRING,
     .required = true,
     .min = 1,
     .max = 10,
     .doc = "dotted counter name"},
    {.name = "type",
     .type = PIP_T_INTEGER,
     .required = true,
     .min = 0,
     .max = 4},
    {.name = "time", .type = PIP_T_DATETIME},
    {.name = NULL},
};

static const pip_field counter_item = {.name = "counter",
                                       .type = PIP_T_OBJECT,
                                       .required = true,
                                       .fields = counter_fields};

static const pip_field schema[] = {
    {.name = "id", .type = PIP_T_STRING, .doc = "record id"},
    {.name = "count", .type = PIP_T_INTEGER},
    {.name = "ratio", .type = PIP_T_NUMBER, .min = -1, .max = 1},
    {.name = "enabled", .type = PIP_T_BOOLEAN},
    {.name = "since", .type = PIP_T_DATETIME},
    {.name = "counter", .type = PIP_T_OBJECT, .fields = counter_fields},
    {.name = "counters",
     .type = PIP_T_ARRAY,
     .max = 3,
     .items = &counter_item},
    {.name = "tags", .type = PIP_T_ARRAY},
    {.name = "parameters", .type = PIP_T_MAP, .max = 2},
    {.name = "filter", .type = PIP_T_FILTER},
    {.name = "paging", .type = PIP_T_PAGING},
    {.name = "anything", .type = PIP_T_ANY},
    {.name = NULL},
};

/* Validates the JSON text against fields and returns the category. */
static int
validate(const pip_field *fields, const char *text, json_t **args,
         pip_error *err)
{
    json_error_t jerr;

    *args = json_loads(text, JSON_DECODE_ANY, &jerr);
    if (*args == NULL) {
        fail_msg("test JSON does not parse: %s", jerr.text);
    }
    pip_error_fini(err);
    return pip_schema_validate(fields, *args, err);
}

static void
assert_valid(const char *text, const char *expected)
{
    json_t *args;
    json_t *want = json_loads(expected ? expected : text, 0, NULL);
    pip_error err;

    pip_error_init(&err);
    if (validate(schema, text, &args, &err) != PIP_OK) {
        fail_msg("%s rejected: %s", text, err.message);
    }
    if (!json_equal(args, want)) {
        char *got = json_dumps(args, JSON_SORT_KEYS);

        fail_msg("%s became %s", text, got);
    }
    json_decref(args);
    json_decref(want);
    pip_error_fini(&err);
}

static void
assert_invalid(const char *text, const char *argument, const char *expected)
{
    json_t *args;
    pip_error err;

    pip_error_init(&err);
    if (validate(schema, text, &args, &err) == PIP_OK) {
        fail_msg("%s was accepted", text);
    }
    assert_int_equal(err.category, PIP_E_BAD_REQUEST);
    assert_string_equal(err.code, "INVALID_DATA");
    if (strcmp(json_string_value(json_object_get(err.details, "argument")),
               argument) != 0) {
        fail_msg("%s: argument '%s', expected '%s' (%s)", text,
                 json_string_value(json_object_get(err.details, "argument")),
                 argument, err.message);
    }
    if (expected != NULL) {
        assert_string_equal(
            json_string_value(json_object_get(err.details, "expected")),
            expected);
    }
    if (argument[0] != '\0') {
        assert_non_null(strstr(err.message, argument));
    }
    json_decref(args);
    pip_error_fini(&err);
}

static void
test_every_type_accepts_its_values(void **state)
{
    (void)state;
    assert_valid("{}", NULL);
    assert_valid("{\"id\": \"a\", \"count\": -5, \"ratio\": 0.5, "
                 "\"enabled\": false, \"tags\": [1, \"x\", null], "
                 "\"parameters\": {\"a\": [1]}, \"anything\": [{}]}",
                 NULL);
    assert_valid("{\"ratio\": 1}", NULL);
    assert_valid("{\"anything\": 5}", NULL);
}

static void
test_every_type_rejects_others(void **state)
{
    (void)state;
    assert_invalid("{\"id\": 5}", "id", "string");
    assert_invalid("{\"count\": \"5\"}", "count", "integer");
    assert_invalid("{\"count\": 1.5}", "count", "integer");
    assert_invalid("{\"count\": true}", "count", "integer");
    assert_invalid("{\"ratio\": \"0.5\"}", "ratio", "number");
    assert_invalid("{\"enabled\": 1}", "enabled", "boolean");
    assert_invalid("{\"enabled\": \"true\"}", "enabled", "boolean");
    assert_invalid("{\"since\": 1700000000}", "since", "datetime");
    assert_invalid("{\"since\": \"yesterday\"}", "since", "datetime");
    assert_invalid("{\"since\": \"2026-02-30\"}", "since", "datetime");
    assert_invalid("{\"counter\": []}", "counter", "object");
    assert_invalid("{\"counters\": {}}", "counters", "array");
    assert_invalid("{\"parameters\": \"a=b\"}", "parameters", "map");
    assert_invalid("{\"filter\": [1]}", "filter", "filter");
    assert_invalid("{\"paging\": 10}", "paging", "paging");
}

static void
test_args_must_be_object(void **state)
{
    json_t *args;
    pip_error err;

    (void)state;
    pip_error_init(&err);
    assert_int_equal(validate(schema, "[1]", &args, &err), PIP_E_BAD_REQUEST);
    assert_string_equal(err.code, "INVALID_DATA");
    assert_string_equal(
        json_string_value(json_object_get(err.details, "argument")), "");
    assert_string_equal(
        json_string_value(json_object_get(err.details, "expected")), "object");
    json_decref(args);

    assert_int_equal(validate(NULL, "{\"x\": 1}", &args, &err), PIP_OK);
    json_decref(args);
    pip_error_fini(&err);
}

static void
test_required_fields(void **state)
{
    (void)state;
    assert_invalid("{\"counter\": {\"type\": 1}}", "counter.name", "string");
    assert_invalid("{\"counter\": {\"name\": \"a\", \"type\": null}}",
                   "counter.type", "integer");
    assert_invalid("{\"counters\": [{\"name\": \"a\", \"type\": 1}, null]}",
                   "counters[1]", "object");
}

static void
test_missing_message_names_argument(void **state)
{
    json_t *args;
    pip_error err;

    (void)state;
    pip_error_init(&err);
    validate(schema, "{\"counter\": {\"type\": 1}}", &args, &err);
    assert_string_equal(err.message,
                        "Missing required argument 'counter.name' (string).");
    json_decref(args);
    pip_error_fini(&err);
}

/* A type mismatch names the value received when it is short. */
static void
test_mismatch_message_shows_value(void **state)
{
    static const struct {
        const char *args;
        const char *message;
    } cases[] = {
        {"{\"id\": 5}",
         "Invalid argument 'id': expected string, received 5."},
        {"{\"count\": \"five\"}",
         "Invalid argument 'count': expected integer, received the string "
         "\"five\"."},
        {"{\"count\": true}",
         "Invalid argument 'count': expected integer, received true."},
        {"{\"count\": [1]}",
         "Invalid argument 'count': expected integer, received an array."},
    };
    json_t *args;
    pip_error err;

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        pip_error_init(&err);
        validate(schema, cases[i].args, &args, &err);
        assert_string_equal(err.message, cases[i].message);
        json_decref(args);
        pip_error_fini(&err);
    }
}

static void
test_null_optional_removed(void **state)
{
    (void)state;
    assert_valid("{\"id\": null, \"count\": null, \"filter\": null, "
                 "\"paging\": null, \"anything\": null, \"extra\": null}",
                 "{\"extra\": null}");
    assert_valid("{\"counter\": {\"name\": \"n\", \"type\": 1, "
                 "\"time\": null}}",
                 "{\"counter\": {\"name\": \"n\", \"type\": 1}}");
}

static void
test_extra_properties_kept(void **state)
{
    (void)state;
    assert_valid("{\"unknown\": {\"deep\": [1, 2]}, \"id\": \"x\"}", NULL);
}

static void
test_number_bounds(void **state)
{
    (void)state;
    assert_valid("{\"ratio\": -1}", NULL);
    assert_invalid("{\"ratio\": 1.5}", "ratio", "number");
    assert_invalid("{\"ratio\": -1.01}", "ratio", "number");
    assert_invalid("{\"counter\": {\"name\": \"a\", \"type\": 5}}",
                   "counter.type", "integer");
    assert_invalid("{\"counter\": {\"name\": \"a\", \"type\": -1}}",
                   "counter.type", "integer");
}

static void
test_bounds_message_and_details(void **state)
{
    json_t *args;
    pip_error err;

    (void)state;
    pip_error_init(&err);
    validate(schema, "{\"ratio\": 2.5}", &args, &err);
    assert_string_equal(err.message,
                        "Argument 'ratio' is 2.5, outside the range -1 to 1.");
    assert_int_equal(json_integer_value(json_object_get(err.details, "min")),
                     -1);
    assert_int_equal(json_integer_value(json_object_get(err.details, "max")),
                     1);
    json_decref(args);
    pip_error_fini(&err);
}

static void
test_length_bounds(void **state)
{
    (void)state;
    /* Ten characters of two bytes each are within a maximum of 10. */
    assert_valid("{\"counter\": {\"name\": "
                 "\"\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9"
                 "\\u00e9\\u00e9\\u00e9\", \"type\": 0}}",
                 NULL);
    assert_invalid("{\"counter\": {\"name\": \"abcdefghijk\", \"type\": 0}}",
                   "counter.name", "string");
    assert_invalid("{\"counter\": {\"name\": \"\", \"type\": 0}}",
                   "counter.name", "string");
    assert_invalid("{\"counters\": [{}, {}, {}, {}]}", "counters", "array");
    assert_valid("{\"parameters\": {\"a\": 1, \"b\": 2}}", NULL);
    assert_invalid("{\"parameters\": {\"a\": 1, \"b\": 2, \"c\": 3}}",
                   "parameters", "map");
}

static void
test_integral_real_becomes_integer(void **state)
{
    json_t *args;
    pip_error err;

    (void)state;
    pip_error_init(&err);
    assert_int_equal(validate(schema, "{\"count\": 3.0}", &args, &err),
                     PIP_OK);
    assert_true(json_is_integer(json_object_get(args, "count")));
    assert_int_equal(json_integer_value(json_object_get(args, "count")), 3);
    json_decref(args);
    assert_invalid("{\"count\": 1e300}", "count", "integer");
    pip_error_fini(&err);
}

static void
test_nested_paths(void **state)
{
    (void)state;
    assert_invalid("{\"counters\": [{\"name\": \"a\", \"type\": 1}, "
                   "{\"name\": \"b\", \"type\": 2}, "
                   "{\"name\": \"c\", \"type\": \"x\"}]}",
                   "counters[2].type", "integer");
    assert_invalid("{\"counters\": [{\"name\": \"a\", \"type\": 1, "
                   "\"time\": \"never\"}]}",
                   "counters[0].time", "datetime");
    assert_invalid("{\"counters\": [5]}", "counters[0]", "object");
}

static void
test_datetimes_normalized(void **state)
{
    (void)state;
    assert_valid("{\"since\": \"2026-01-31T12:00:00+02:00\"}",
                 "{\"since\": \"2026-01-31T10:00:00.000Z\"}");
    assert_valid("{\"since\": \"2026-01-31\"}",
                 "{\"since\": \"2026-01-31T00:00:00.000Z\"}");
    assert_valid("{\"since\": \"2026-01-31T10:00:00.000Z\"}", NULL);
    assert_valid("{\"counters\": [{\"name\": \"a\", \"type\": 1, "
                 "\"time\": \"2026-01-31T10:00:00.5Z\"}]}",
                 "{\"counters\": [{\"name\": \"a\", \"type\": 1, "
                 "\"time\": \"2026-01-31T10:00:00.500Z\"}]}");
}

static void
test_filter_values(void **state)
{
    (void)state;
    assert_valid("{\"filter\": {\"name\": \"a\", \"type\": 4, "
                 "\"errors_only\": true, \"ratio\": 0.5, \"gone\": null}}",
                 NULL);
    assert_valid("{\"filter\": {}}", NULL);
    assert_invalid("{\"filter\": {\"name\": {\"eq\": \"a\"}}}", "filter.name",
                   NULL);
    assert_invalid("{\"filter\": {\"ids\": [1, 2]}}", "filter.ids", NULL);
}

static void
test_paging_normalized(void **state)
{
    (void)state;
    assert_valid("{\"paging\": {\"skip\": 10, \"take\": 5, \"total\": true}}",
                 NULL);
    assert_valid(
        "{\"paging\": {\"skip\": \"10\", \"take\": \"0\", "
        "\"total\": \"false\"}}",
        "{\"paging\": {\"skip\": 10, \"take\": 0, \"total\": false}}");
    assert_valid("{\"paging\": {\"skip\": null, \"take\": 2.0, "
                 "\"total\": \"true\", \"other\": 1}}",
                 "{\"paging\": {\"take\": 2, \"total\": true, \"other\": 1}}");
    assert_valid("{\"paging\": {}}", NULL);
    assert_invalid("{\"paging\": {\"skip\": -1}}", "paging.skip", NULL);
    assert_invalid("{\"paging\": {\"skip\": \"abc\"}}", "paging.skip", NULL);
    assert_invalid("{\"paging\": {\"take\": \"-3\"}}", "paging.take", NULL);
    assert_invalid("{\"paging\": {\"take\": \"99999999999999999999\"}}",
                   "paging.take", NULL);
    assert_invalid("{\"paging\": {\"take\": 1.5}}", "paging.take", NULL);
    assert_invalid("{\"paging\": {\"total\": \"yes\"}}", "paging.total",
                   "boolean");
    assert_invalid("{\"paging\": {\"total\": 1}}", "paging.total", "boolean");
}

static void
test_type_names(void **state)
{
    static const char *const names[] = {
        "any",    "string", "integer", "number", "boolean", "datetime",
        "object", "array",  "map",     "filter", "paging",
    };

    (void)state;
    for (int i = PIP_T_ANY; i <= PIP_T_PAGING; i++) {
        assert_string_equal(pip_type_name((pip_type)i), names[i]);
    }
    assert_string_equal(pip_type_name((pip_type)99), "unknown");
}

static void
test_describe_lists_fields(void **state)
{
    static const pip_field small[] = {
        {.name = "ratio",
         .type = PIP_T_NUMBER,
         .min = -1,
         .max = 0.5,
         .doc = "a share"},
        {.name = "counter",
         .type = PIP_T_OBJECT,
         .required = true,
         .fields = counter_fields},
        {.name = "counters", .type = PIP_T_ARRAY, .items = &counter_item},
        {.name = NULL},
    };
    static const char expected[] =
        "[{\"name\": \"ratio\", \"type\": \"number\", \"required\": false,"
        "  \"doc\": \"a share\", \"min\": -1, \"max\": 0.5},"
        " {\"name\": \"counter\", \"type\": \"object\", \"required\": true,"
        "  \"doc\": \"\", \"fields\": %s},"
        " {\"name\": \"counters\", \"type\": \"array\", \"required\": false,"
        "  \"doc\": \"\", \"items\": {\"name\": \"counter\","
        "  \"type\": \"object\", \"required\": true, \"doc\": \"\","
        "  \"fields\": %s}}]";
    static const char fields[] =
        "[{\"name\": \"name\", \"type\": \"string\", \"required\": true,"
        "  \"doc\": \"dotted counter name\", \"min\": 1, \"max\": 10},"
        " {\"name\": \"type\", \"type\": \"integer\", \"required\": true,"
        "  \"doc\": \"\", \"min\": 0, \"max\": 4},"
        " {\"name\": \"time\", \"type\": \"datetime\", \"required\": false,"
        "  \"doc\": \"\"}]";
    char text[4096];
    json_t *want;
    json_t *got;

    (void)state;
    snprintf(text, sizeof(text), expected, fields, fields);
    want = json_loads(text, 0, NULL);
    assert_non_null(want);
    got = pip_schema_describe(small);
    if (!json_equal(got, want)) {
        fail_msg("describe returned %s", json_dumps(got, JSON_SORT_KEYS));
    }
    json_decref(want);
    json_decref(got);

    got = pip_schema_describe(NULL);
    assert_int_equal(json_array_size(got), 0);
    json_decref(got);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_type_accepts_its_values),
        cmocka_unit_test(test_every_type_rejects_others),
        cmocka_unit_test(test_args_must_be_object),
        cmocka_unit_test(test_required_fields),
        cmocka_unit_test(test_missing_message_names_argument),
        cmocka_unit_test(test_mismatch_message_shows_value),
        cmocka_unit_test(test_null_optional_removed),
        cmocka_unit_test(test_extra_properties_kept),
        cmocka_unit_test(test_number_bounds),
        cmocka_unit_test(test_bounds_message_and_details),
        cmocka_unit_test(test_length_bounds),
        cmocka_unit_test(test_integral_real_becomes_integer),
        cmocka_unit_test(test_nested_paths),
        cmocka_unit_test(test_datetimes_normalized),
        cmocka_unit_test(test_filter_values),
        cmocka_unit_test(test_paging_normalized),
        cmocka_unit_test(test_type_names),
        cmocka_unit_test(test_describe_lists_fields),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
