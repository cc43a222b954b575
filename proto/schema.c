/*
 * Argument validation against the static schema tables of commands.
 *
 * Validation also normalizes, so that handlers see one form of each
 * value: date-times in canonical form, integral reals as integers,
 * paging values as integers and booleans, and no null optional fields.
 */
#include "pip/schema.h"

#include "pip/time.h"

#include "proto.h"

#include <string.h>

static const char *const schema_type_names[] = {
    [PIP_T_ANY] = "any",         [PIP_T_STRING] = "string",
    [PIP_T_INTEGER] = "integer", [PIP_T_NUMBER] = "number",
    [PIP_T_BOOLEAN] = "boolean", [PIP_T_DATETIME] = "datetime",
    [PIP_T_OBJECT] = "object",   [PIP_T_ARRAY] = "array",
    [PIP_T_MAP] = "map",         [PIP_T_FILTER] = "filter",
    [PIP_T_PAGING] = "paging",
};

const char *
pip_type_name(pip_type type)
{
    if ((unsigned)type >= sizeof(schema_type_names) / sizeof(char *)) {
        return "unknown";
    }
    return schema_type_names[type];
}

/* The name shown for the path, or "arguments" for the top-level object. */
static const char *
schema_path_name(const proto_path *path)
{
    return path->len > 0 ? path->text : "arguments";
}

static int
schema_fail(pip_error *err, const proto_path *path, const char *expected)
{
    pip_error_detail(err, "argument", json_string(path->text));
    pip_error_detail(err, "expected", json_string(expected));
    return PIP_E_BAD_REQUEST;
}

/* The JSON type of a received value, for error messages. */
static const char *
schema_received_name(const json_t *value)
{
    switch (json_typeof(value)) {
    case JSON_OBJECT:
        return "an object";
    case JSON_ARRAY:
        return "an array";
    case JSON_STRING:
        return "a string";
    case JSON_INTEGER:
        return "an integer";
    case JSON_REAL:
        return "a real number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "a boolean";
    default:
        return "null";
    }
}

const char *
pip_schema_value_text(const json_t *value, char *buf, size_t size)
{
    switch (json_typeof(value)) {
    case JSON_INTEGER:
        snprintf(buf, size, "%" JSON_INTEGER_FORMAT,
                 json_integer_value(value));
        return buf;
    case JSON_REAL:
        snprintf(buf, size, "%g", json_real_value(value));
        return buf;
    case JSON_TRUE:
    case JSON_FALSE:
        return json_is_true(value) ? "true" : "false";
    case JSON_STRING:
        if (json_string_length(value) <= PIP_SCHEMA_SHOWN_STRING_BYTES &&
            strlen(json_string_value(value)) == json_string_length(value)) {
            snprintf(buf, size, "the string \"%s\"",
                     json_string_value(value));
            return buf;
        }
        return "a string";
    default:
        return schema_received_name(value);
    }
}

static int
schema_fail_type(pip_error *err, const proto_path *path, const char *expected,
                 const json_t *received)
{
    char text[PIP_SCHEMA_VALUE_TEXT_MAX];

    pip_error_set(err, PIP_E_BAD_REQUEST, "INVALID_DATA",
                  "Invalid argument '%s': expected %s, received %s.",
                  schema_path_name(path), expected,
                  pip_schema_value_text(received, text, sizeof(text)));
    pip_error_detail(err, "received",
                     json_string(schema_received_name(received)));
    return schema_fail(err, path, expected);
}

static int
schema_fail_missing(pip_error *err, const proto_path *path,
                    const pip_field *field)
{
    pip_error_set(err, PIP_E_BAD_REQUEST, "INVALID_DATA",
                  "Missing required argument '%s' (%s).",
                  schema_path_name(path), pip_type_name(field->type));
    return schema_fail(err, path, pip_type_name(field->type));
}

static bool
schema_has_bounds(const pip_field *field)
{
    return field->min != 0 || field->max != 0;
}

/* True when d is a whole number that fits json_int_t (int64). */
static bool
schema_is_integral(double d)
{
    /* The cast is defined because the range is checked first. */
    return d >= -9223372036854775808.0 && d < 9223372036854775808.0 &&
           (double)(json_int_t)d == d;
}

/* A bound as an integer when it is one, so describe shows 100, not 100.0. */
static json_t *
schema_bound_json(double bound)
{
    if (schema_is_integral(bound)) {
        return json_integer((json_int_t)bound);
    }
    return json_real(bound);
}

/*
 * Checks a number, or a length counted in `unit`, against the field's
 * bounds.  Both bounds apply once either of them is set.
 */
static int
schema_check_bounds(const pip_field *field, double value, const char *unit,
                    const proto_path *path, pip_error *err)
{
    const char *verb = unit ? "has" : "is";
    const char *units = unit ? unit : "";

    if (!schema_has_bounds(field) ||
        (value >= field->min && value <= field->max)) {
        return PIP_OK;
    }
    pip_error_set(err, PIP_E_BAD_REQUEST, "INVALID_DATA",
                  "Argument '%s' %s %.15g%s, outside the range %.15g to "
                  "%.15g.",
                  schema_path_name(path), verb, value, units, field->min,
                  field->max);
    pip_error_detail(err, "min", schema_bound_json(field->min));
    pip_error_detail(err, "max", schema_bound_json(field->max));
    return schema_fail(err, path, pip_type_name(field->type));
}

/* Counts the Unicode characters of a jansson string, which is UTF-8. */
static size_t
schema_utf8_length(const char *text, size_t len)
{
    size_t count = 0;

    for (size_t i = 0; i < len; i++) {
        if (((unsigned char)text[i] & 0xC0) != 0x80) {
            count++;
        }
    }
    return count;
}

static int
schema_check_string(const pip_field *field, const json_t *value,
                    const proto_path *path, pip_error *err)
{
    size_t chars;

    if (!json_is_string(value)) {
        return schema_fail_type(err, path, "string", value);
    }
    chars = schema_utf8_length(json_string_value(value),
                               json_string_length(value));
    return schema_check_bounds(field, (double)chars, " characters", path, err);
}

static int
schema_check_integer(const pip_field *field, json_t *value,
                     const proto_path *path, json_t **replace, pip_error *err)
{
    double d;

    if (json_is_integer(value)) {
        d = (double)json_integer_value(value);
    } else if (json_is_real(value) &&
               schema_is_integral(json_real_value(value))) {
        d = json_real_value(value);
        *replace = json_integer((json_int_t)d);
    } else {
        return schema_fail_type(err, path, "integer", value);
    }
    return schema_check_bounds(field, d, NULL, path, err);
}

static int
schema_check_number(const pip_field *field, const json_t *value,
                    const proto_path *path, pip_error *err)
{
    if (!json_is_number(value)) {
        return schema_fail_type(err, path, "number", value);
    }
    return schema_check_bounds(field, json_number_value(value), NULL, path,
                               err);
}

static int
schema_check_datetime(const json_t *value, const proto_path *path,
                      json_t **replace, pip_error *err)
{
    char text[PIP_TIME_STRLEN];
    int64_t ms;

    if (!json_is_string(value) ||
        !pip_time_parse(json_string_value(value), &ms)) {
        pip_error_set(err, PIP_E_BAD_REQUEST, "INVALID_DATA",
                      "Invalid argument '%s': expected an ISO 8601 "
                      "datetime such as 2026-01-31T10:00:00Z.",
                      schema_path_name(path));
        return schema_fail(err, path, "datetime");
    }
    pip_time_format(ms, text);
    if (strcmp(text, json_string_value(value)) != 0) {
        *replace = json_string(text);
    }
    return PIP_OK;
}

static int schema_check_fields(const pip_field *schema, json_t *obj,
                               proto_path *path, pip_error *err);
static int schema_check_value(const pip_field *field, json_t *value,
                              proto_path *path, json_t **replace,
                              pip_error *err);

static int
schema_check_object(const pip_field *field, json_t *value, proto_path *path,
                    pip_error *err)
{
    int rv;

    if (!json_is_object(value)) {
        return schema_fail_type(err, path, pip_type_name(field->type), value);
    }
    rv = schema_check_bounds(field, (double)json_object_size(value),
                             " entries", path, err);
    if (rv == PIP_OK && field->type == PIP_T_OBJECT && field->fields) {
        rv = schema_check_fields(field->fields, value, path, err);
    }
    return rv;
}

/* Checks one item of an array.  A null item passes unless items is
 * required. */
static int
schema_check_item(const pip_field *items, json_t *array, size_t index,
                  proto_path *path, pip_error *err)
{
    json_t *item = json_array_get(array, index);
    json_t *replace = NULL;
    int rv;

    if (json_is_null(item)) {
        return items->required ? schema_fail_missing(err, path, items)
                               : PIP_OK;
    }
    rv = schema_check_value(items, item, path, &replace, err);
    if (replace != NULL) {
        json_array_set_new(array, index, replace);
    }
    return rv;
}

static int
schema_check_array(const pip_field *field, json_t *value, proto_path *path,
                   pip_error *err)
{
    size_t path_len = path->len;
    int rv;

    if (!json_is_array(value)) {
        return schema_fail_type(err, path, "array", value);
    }
    rv = schema_check_bounds(field, (double)json_array_size(value), " items",
                             path, err);
    for (size_t i = 0;
         rv == PIP_OK && field->items && i < json_array_size(value); i++) {
        proto_path_index(path, i);
        rv = schema_check_item(field->items, value, i, path, err);
        proto_path_restore(path, path_len);
    }
    return rv;
}

/* Checks FilterParams, a flat map of strings, numbers and booleans. */
static int
schema_check_filter(json_t *value, proto_path *path, pip_error *err)
{
    size_t path_len = path->len;
    const char *key;
    json_t *item;

    if (!json_is_object(value)) {
        return schema_fail_type(err, path, "filter", value);
    }
    json_object_foreach(value, key, item)
    {
        if (json_is_object(item) || json_is_array(item)) {
            proto_path_key(path, key, strlen(key));
            schema_fail_type(err, path, "string, number or boolean", item);
            proto_path_restore(path, path_len);
            return PIP_E_BAD_REQUEST;
        }
    }
    return PIP_OK;
}

/* Reads a non-negative decimal integer written as a string. */
static bool
schema_parse_count(const char *text, json_int_t *out)
{
    json_int_t value = 0;

    if (*text == '\0') {
        return false;
    }
    for (; *text != '\0'; text++) {
        if (*text < '0' || *text > '9' ||
            value > (INT64_MAX - (*text - '0')) / 10) {
            return false;
        }
        value = value * 10 + (*text - '0');
    }
    *out = value;
    return true;
}

/* Normalizes paging.skip or paging.take, given as an integer or a numeric
 * string.  Returns NULL when the value is neither. */
static json_t *
schema_paging_count(const json_t *value)
{
    json_int_t count;

    if (json_is_integer(value) && json_integer_value(value) >= 0) {
        return json_incref((json_t *)value);
    }
    if (json_is_real(value) && json_real_value(value) >= 0 &&
        schema_is_integral(json_real_value(value))) {
        return json_integer((json_int_t)json_real_value(value));
    }
    if (json_is_string(value) &&
        schema_parse_count(json_string_value(value), &count)) {
        return json_integer(count);
    }
    return NULL;
}

/* Normalizes paging.total, given as a boolean or "true" or "false".
 * Returns NULL when the value is neither. */
static json_t *
schema_paging_flag(const json_t *value)
{
    const char *text = json_string_value(value);

    if (json_is_boolean(value)) {
        return json_incref((json_t *)value);
    }
    if (text != NULL && strcmp(text, "true") == 0) {
        return json_true();
    }
    if (text != NULL && strcmp(text, "false") == 0) {
        return json_false();
    }
    return NULL;
}

/* Normalizes one key of paging, and removes it when it is null. */
static int
schema_check_paging_key(json_t *paging, const char *key, bool is_flag,
                        proto_path *path, pip_error *err)
{
    json_t *value = json_object_get(paging, key);
    size_t path_len = path->len;
    json_t *normal;

    if (value == NULL || json_is_null(value)) {
        json_object_del(paging, key);
        return PIP_OK;
    }
    normal = is_flag ? schema_paging_flag(value) : schema_paging_count(value);
    if (normal == NULL) {
        proto_path_key(path, key, strlen(key));
        schema_fail_type(err, path,
                         is_flag ? "boolean" : "non-negative integer", value);
        proto_path_restore(path, path_len);
        return PIP_E_BAD_REQUEST;
    }
    json_object_set_new(paging, key, normal);
    return PIP_OK;
}

/* Checks PagingParams, whose skip, take (integers) and total (boolean)
 * are all optional. */
static int
schema_check_paging(json_t *value, proto_path *path, pip_error *err)
{
    int rv;

    if (!json_is_object(value)) {
        return schema_fail_type(err, path, "paging", value);
    }
    rv = schema_check_paging_key(value, "skip", false, path, err);
    if (rv == PIP_OK) {
        rv = schema_check_paging_key(value, "take", false, path, err);
    }
    if (rv == PIP_OK) {
        rv = schema_check_paging_key(value, "total", true, path, err);
    }
    return rv;
}

/*
 * Checks a non-null value against field.  When the value must change
 * form, sets *replace to the new value for the caller to store.
 */
static int
schema_check_value(const pip_field *field, json_t *value, proto_path *path,
                   json_t **replace, pip_error *err)
{
    switch (field->type) {
    case PIP_T_ANY:
        return PIP_OK;
    case PIP_T_STRING:
        return schema_check_string(field, value, path, err);
    case PIP_T_INTEGER:
        return schema_check_integer(field, value, path, replace, err);
    case PIP_T_NUMBER:
        return schema_check_number(field, value, path, err);
    case PIP_T_BOOLEAN:
        return json_is_boolean(value)
                   ? PIP_OK
                   : schema_fail_type(err, path, "boolean", value);
    case PIP_T_DATETIME:
        return schema_check_datetime(value, path, replace, err);
    case PIP_T_OBJECT:
    case PIP_T_MAP:
        return schema_check_object(field, value, path, err);
    case PIP_T_ARRAY:
        return schema_check_array(field, value, path, err);
    case PIP_T_FILTER:
        return schema_check_filter(value, path, err);
    case PIP_T_PAGING:
        return schema_check_paging(value, path, err);
    }
    return schema_fail_type(err, path, "a known schema type", value);
}

/* Checks one field of obj, and removes it when it is optional and null. */
static int
schema_check_field(const pip_field *field, json_t *obj, proto_path *path,
                   pip_error *err)
{
    json_t *value = json_object_get(obj, field->name);
    json_t *replace = NULL;
    int rv;

    if (value == NULL || json_is_null(value)) {
        if (field->required) {
            return schema_fail_missing(err, path, field);
        }
        json_object_del(obj, field->name);
        return PIP_OK;
    }
    rv = schema_check_value(field, value, path, &replace, err);
    if (replace != NULL) {
        json_object_set_new(obj, field->name, replace);
    }
    return rv;
}

static int
schema_check_fields(const pip_field *schema, json_t *obj, proto_path *path,
                    pip_error *err)
{
    size_t path_len = path->len;
    int rv = PIP_OK;

    for (const pip_field *field = schema; field->name && rv == PIP_OK;
         field++) {
        proto_path_key(path, field->name, strlen(field->name));
        rv = schema_check_field(field, obj, path, err);
        proto_path_restore(path, path_len);
    }
    return rv;
}

int
pip_schema_validate(const pip_field *schema, json_t *args, pip_error *err)
{
    proto_path path = PROTO_PATH_INIT;

    if (!json_is_object(args)) {
        return schema_fail_type(err, &path, "object", args);
    }
    if (schema == NULL) {
        return PIP_OK;
    }
    return schema_check_fields(schema, args, &path, err);
}

static json_t *
schema_describe_field(const pip_field *field)
{
    json_t *obj = json_object();

    if (obj == NULL) {
        return NULL;
    }
    if (field->name != NULL) {
        json_object_set_new(obj, "name", json_string(field->name));
    }
    json_object_set_new(obj, "type", json_string(pip_type_name(field->type)));
    json_object_set_new(obj, "required", json_boolean(field->required));
    json_object_set_new(obj, "doc", json_string(field->doc ? field->doc : ""));
    if (schema_has_bounds(field)) {
        json_object_set_new(obj, "min", schema_bound_json(field->min));
        json_object_set_new(obj, "max", schema_bound_json(field->max));
    }
    if (field->fields != NULL) {
        json_object_set_new(obj, "fields", pip_schema_describe(field->fields));
    }
    if (field->items != NULL) {
        json_object_set_new(obj, "items", schema_describe_field(field->items));
    }
    return obj;
}

json_t *
pip_schema_describe(const pip_field *schema)
{
    json_t *list = json_array();

    if (list == NULL || schema == NULL) {
        return list;
    }
    for (const pip_field *field = schema; field->name != NULL; field++) {
        if (json_array_append_new(list, schema_describe_field(field)) != 0) {
            json_decref(list);
            return NULL;
        }
    }
    return list;
}
