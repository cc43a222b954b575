/*
 * Invariants of argument validation.  The input is decoded as msgpack to
 * JSON, as a node decodes the args of a request, and validated against a
 * few schemas shaped like those of the shipped services.
 *
 * schema_conforms() is a second, independent reading of the schema rules
 * for values that are already in normalized form.  Validation must accept
 * every such value unchanged, and everything it accepts must conform after
 * normalization.
 */
#include "fuzz_checks.h"

#include <string.h>

#include "fuzz_util.h"
#include "pip/schema.h"
#include "pip/time.h"

static const pip_field schema_tag_item = {
    .name = "tag", .type = PIP_T_STRING, .min = 1, .max = 16};

static const pip_field schema_counter_fields[] = {
    {.name = "name",
     .type = PIP_T_STRING,
     .required = true,
     .min = 1,
     .max = 100},
    {.name = "type",
     .type = PIP_T_INTEGER,
     .required = true,
     .min = 0,
     .max = 10},
    {.name = "count", .type = PIP_T_NUMBER},
    {.name = "time", .type = PIP_T_DATETIME},
    {.name = "tags", .type = PIP_T_ARRAY, .max = 4, .items = &schema_tag_item},
    PIP_FIELDS_END,
};

static const pip_field schema_counter_item = {.name = "counter",
                                              .type = PIP_T_OBJECT,
                                              .required = true,
                                              .fields = schema_counter_fields};

/* One nested record, as counters.write_counter takes it. */
static const pip_field schema_write[] = {
    {.name = "counter",
     .type = PIP_T_OBJECT,
     .required = true,
     .fields = schema_counter_fields},
    PIP_FIELDS_END,
};

/* A read with a filter, paging and a time range. */
static const pip_field schema_read[] = {
    {.name = "filter", .type = PIP_T_FILTER},
    {.name = "paging", .type = PIP_T_PAGING},
    {.name = "from", .type = PIP_T_DATETIME},
    {.name = "to", .type = PIP_T_DATETIME},
    PIP_FIELDS_END,
};

/* An array of objects, bounds on every kind of value, free-form values. */
static const pip_field schema_batch[] = {
    {.name = "counters",
     .type = PIP_T_ARRAY,
     .required = true,
     .min = 1,
     .max = 8,
     .items = &schema_counter_item},
    {.name = "limit", .type = PIP_T_INTEGER, .min = 1, .max = 1000},
    {.name = "ratio", .type = PIP_T_NUMBER, .min = -1, .max = 1},
    {.name = "enabled", .type = PIP_T_BOOLEAN},
    {.name = "parameters", .type = PIP_T_MAP, .max = 4},
    {.name = "anything", .type = PIP_T_ANY},
    PIP_FIELDS_END,
};

static const pip_field schema_entry_fields[] = {
    {.name = "time", .type = PIP_T_DATETIME, .required = true},
    {.name = "level", .type = PIP_T_INTEGER, .min = 0, .max = 6},
    {.name = "value", .type = PIP_T_ANY},
    PIP_FIELDS_END,
};

/* Optional items, so null items stay in the array. */
static const pip_field schema_entry_item = {
    .name = "entry", .type = PIP_T_OBJECT, .fields = schema_entry_fields};

static const pip_field schema_section_fields[] = {
    {.name = "id", .type = PIP_T_STRING, .required = true, .max = 64},
    {.name = "parameters", .type = PIP_T_MAP},
    {.name = "history", .type = PIP_T_ARRAY, .items = &schema_entry_item},
    PIP_FIELDS_END,
};

/* Objects in an array in an object. */
static const pip_field schema_nested[] = {
    {.name = "section",
     .type = PIP_T_OBJECT,
     .required = true,
     .fields = schema_section_fields},
    {.name = "since", .type = PIP_T_DATETIME},
    PIP_FIELDS_END,
};

/* NULL is a command without an argument schema. */
static const pip_field *const schema_list[] = {
    schema_write, schema_read, schema_batch, schema_nested, NULL,
};

#define SCHEMA_COUNT (sizeof(schema_list) / sizeof(schema_list[0]))

static bool schema_conforms_fields(const pip_field *fields, const json_t *obj);

static bool
schema_in_bounds(const pip_field *field, double value)
{
    if (field->min == 0 && field->max == 0) {
        return true;
    }
    return value >= field->min && value <= field->max;
}

static size_t
schema_char_count(const json_t *value)
{
    const char *text = json_string_value(value);
    size_t count = 0;

    for (size_t i = 0; i < json_string_length(value); i++) {
        if (((unsigned char)text[i] & 0xC0) != 0x80) {
            count++;
        }
    }
    return count;
}

static bool
schema_is_canonical_time(const json_t *value)
{
    char text[PIP_TIME_STRLEN];
    int64_t ms;

    if (!json_is_string(value) ||
        !pip_time_parse(json_string_value(value), &ms)) {
        return false;
    }
    pip_time_format(ms, text);
    return strcmp(text, json_string_value(value)) == 0;
}

static bool
schema_is_filter(const json_t *value)
{
    const char *key;
    json_t *item;

    if (!json_is_object(value)) {
        return false;
    }
    json_object_foreach((json_t *)value, key, item)
    {
        if (json_is_object(item) || json_is_array(item)) {
            return false;
        }
    }
    return true;
}

/* Normalized paging has no null keys, counts as integers and total as a
 * boolean. */
static bool
schema_is_paging(const json_t *value)
{
    const char *counts[] = {"skip", "take"};
    const json_t *total = json_object_get(value, "total");

    if (!json_is_object(value)) {
        return false;
    }
    for (size_t i = 0; i < 2; i++) {
        const json_t *count = json_object_get(value, counts[i]);

        if (count != NULL &&
            !(json_is_integer(count) && json_integer_value(count) >= 0)) {
            return false;
        }
    }
    return total == NULL || json_is_boolean(total);
}

static bool schema_conforms_value(const pip_field *field, const json_t *value);

static bool
schema_conforms_array(const pip_field *field, const json_t *value)
{
    size_t index;
    json_t *item;

    if (!json_is_array(value) ||
        !schema_in_bounds(field, (double)json_array_size(value))) {
        return false;
    }
    if (field->items == NULL) {
        return true;
    }
    json_array_foreach(value, index, item)
    {
        if (json_is_null(item) ? field->items->required
                               : !schema_conforms_value(field->items, item)) {
            return false;
        }
    }
    return true;
}

static bool
schema_conforms_object(const pip_field *field, const json_t *value)
{
    if (!json_is_object(value) ||
        !schema_in_bounds(field, (double)json_object_size(value))) {
        return false;
    }
    if (field->type == PIP_T_OBJECT && field->fields != NULL) {
        return schema_conforms_fields(field->fields, value);
    }
    return true;
}

/* True when value is a normalized, valid value of field. */
static bool
schema_conforms_value(const pip_field *field, const json_t *value)
{
    switch (field->type) {
    case PIP_T_ANY:
        return true;
    case PIP_T_STRING:
        return json_is_string(value) &&
               schema_in_bounds(field, (double)schema_char_count(value));
    case PIP_T_INTEGER:
        return json_is_integer(value) &&
               schema_in_bounds(field, (double)json_integer_value(value));
    case PIP_T_NUMBER:
        return json_is_number(value) &&
               schema_in_bounds(field, json_number_value(value));
    case PIP_T_BOOLEAN:
        return json_is_boolean(value);
    case PIP_T_DATETIME:
        return schema_is_canonical_time(value);
    case PIP_T_OBJECT:
    case PIP_T_MAP:
        return schema_conforms_object(field, value);
    case PIP_T_ARRAY:
        return schema_conforms_array(field, value);
    case PIP_T_FILTER:
        return schema_is_filter(value);
    case PIP_T_PAGING:
        return schema_is_paging(value);
    }
    return false;
}

/* Normalized objects have every required field and no null field that the
 * schema names. */
static bool
schema_conforms_fields(const pip_field *fields, const json_t *obj)
{
    for (const pip_field *field = fields; field->name != NULL; field++) {
        const json_t *value = json_object_get(obj, field->name);

        if (value == NULL ? field->required
                          : json_is_null(value) ||
                                !schema_conforms_value(field, value)) {
            return false;
        }
    }
    return true;
}

static bool
schema_conforms(const pip_field *schema, const json_t *args)
{
    return json_is_object(args) &&
           (schema == NULL || schema_conforms_fields(schema, args));
}

static bool
schema_names(const pip_field *schema, const char *key)
{
    for (const pip_field *field = schema; field && field->name; field++) {
        if (strcmp(field->name, key) == 0) {
            return true;
        }
    }
    return false;
}

/* Validation keeps the keys that the schema does not name as they were,
 * and removes a named key only when its value was null. */
static void
schema_check_kept(const pip_field *schema, const json_t *before,
                  const json_t *after)
{
    const char *key;
    json_t *value;

    json_object_foreach((json_t *)before, key, value)
    {
        const json_t *after_value = json_object_get(after, key);

        if (!schema_names(schema, key)) {
            FUZZ_CHECK(fuzz_json_same(after_value, value));
        } else if (!json_is_null(value)) {
            FUZZ_CHECK(after_value != NULL);
        }
    }
}

static void
schema_check_failure(int rv, const pip_error *err)
{
    const json_t *argument = json_object_get(err->details, "argument");
    const json_t *expected = json_object_get(err->details, "expected");

    fuzz_check_error(rv, err);
    FUZZ_CHECK(rv == PIP_E_BAD_REQUEST);
    FUZZ_CHECK(strcmp(err->code, "INVALID_DATA") == 0);
    FUZZ_CHECK(json_is_string(argument));
    FUZZ_CHECK(json_is_string(expected));
}

/* A validated value validates again without change. */
static void
schema_check_stable(const pip_field *schema, const json_t *valid)
{
    json_t *again = json_deep_copy(valid);
    pip_error err;

    pip_error_init(&err);
    FUZZ_CHECK(again != NULL);
    FUZZ_CHECK(pip_schema_validate(schema, again, &err) == PIP_OK);
    FUZZ_CHECK(json_equal(again, valid));
    json_decref(again);
    pip_error_fini(&err);
}

static void
schema_check_one(const pip_field *schema, const json_t *args)
{
    json_t *copy = json_deep_copy(args);
    bool conformed = schema_conforms(schema, args);
    pip_error err;
    int rv;

    pip_error_init(&err);
    FUZZ_CHECK(copy != NULL);
    rv = pip_schema_validate(schema, copy, &err);
    if (conformed) {
        FUZZ_CHECK(rv == PIP_OK);
        FUZZ_CHECK(json_equal(copy, args));
    }
    if (rv == PIP_OK) {
        FUZZ_CHECK(err.category == PIP_OK);
        FUZZ_CHECK(schema_conforms(schema, copy));
        schema_check_kept(schema, args, copy);
        schema_check_stable(schema, copy);
    } else {
        schema_check_failure(rv, &err);
    }
    json_decref(copy);
    pip_error_fini(&err);
}

void
fuzz_check_schema(const uint8_t *data, size_t size)
{
    json_t *args = NULL;
    pip_limits lim;
    pip_error err;

    pip_limits_default(&lim);
    pip_error_init(&err);
    if (pip_mp_decode_json(data, size, &lim, &args, NULL, &err) == PIP_OK) {
        for (size_t i = 0; i < SCHEMA_COUNT; i++) {
            schema_check_one(schema_list[i], args);
        }
    }
    json_decref(args);
    pip_error_fini(&err);
}
