/*
 * FilterParams, PagingParams and pages.  Filter values arrive as strings
 * from most clients, so every accessor also reads the string form of its
 * type.
 */
#include "pip/crud.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "pip/schema.h"
#include "pip/time.h"

/*
 * Parses a whole string as a signed decimal integer.  Leading and
 * trailing blanks and a leading '+' are accepted, as strtoll does.
 */
static bool
crud_parse_int(const char *text, int64_t *value)
{
    char *end = NULL;
    long long v;

    errno = 0;
    v = strtoll(text, &end, 10);
    if (end == text || errno == ERANGE) {
        return false;
    }
    while (isspace((unsigned char)*end)) {
        end++;
    }
    if (*end != '\0') {
        return false;
    }
    *value = (int64_t)v;
    return true;
}

/* True when r is a whole number that fits in an int64_t exactly. */
static bool
crud_real_to_int(double r, int64_t *value)
{
    /* 2^63 is exact as a double, and every whole double below it fits. */
    if (!isfinite(r) || r != floor(r) || r < -9223372036854775808.0 ||
        r >= 9223372036854775808.0) {
        return false;
    }
    *value = (int64_t)r;
    return true;
}

/* Parses a whole number written as a real, such as "12.0". */
static bool
crud_parse_integral_real(const char *text, int64_t *value)
{
    char *end = NULL;
    double r;

    errno = 0;
    r = strtod(text, &end);
    if (end == text || errno == ERANGE) {
        return false;
    }
    while (isspace((unsigned char)*end)) {
        end++;
    }
    return *end == '\0' && crud_real_to_int(r, value);
}

/* Reads an integer, an integral real, or a string of either. */
static bool
crud_json_to_int(const json_t *v, int64_t *value)
{
    const char *s;

    if (json_is_integer(v)) {
        *value = json_integer_value(v);
        return true;
    }
    if (json_is_real(v)) {
        return crud_real_to_int(json_real_value(v), value);
    }
    if (!json_is_string(v)) {
        return false;
    }
    s = json_string_value(v);
    /* A string with an embedded NUL is not a number. */
    if (strlen(s) != json_string_length(v)) {
        return false;
    }
    return crud_parse_int(s, value) || crud_parse_integral_real(s, value);
}

/* Reads a boolean from a JSON boolean or a string spelling of one. */
static bool
crud_json_to_bool(const json_t *v, bool allow_words, bool *value)
{
    static const char *const yes[] = {"true", "1", "yes"};
    static const char *const no[] = {"false", "0", "no"};
    size_t spellings = allow_words ? 3 : 2;
    const char *s;

    if (json_is_boolean(v)) {
        *value = json_is_true(v);
        return true;
    }
    if (!json_is_string(v)) {
        return false;
    }
    s = json_string_value(v);
    for (size_t i = 0; i < spellings; i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *value = true;
            return true;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *value = false;
            return true;
        }
    }
    return false;
}

/* ---- paging ---- */

static int
crud_paging_error(pip_error *err, const char *field, const json_t *value,
                  const char *expected)
{
    pip_error_set(err, PIP_E_BAD_REQUEST, "INVALID_DATA",
                  "Invalid paging.%s: expected %s.", field, expected);
    pip_error_detail(err, "field", json_sprintf("paging.%s", field));
    if (value != NULL) {
        pip_error_detail(err, "value", json_deep_copy(value));
    }
    return PIP_E_BAD_REQUEST;
}

/* Reads skip or take.  A missing or null value leaves *value as is. */
static int
crud_paging_count(const json_t *paging, const char *field, int64_t *value,
                  pip_error *err)
{
    const json_t *v = json_object_get(paging, field);
    int64_t n;

    if (v == NULL || json_is_null(v)) {
        return PIP_OK;
    }
    if (!crud_json_to_int(v, &n) || n < 0) {
        return crud_paging_error(err, field, v,
                                 "a whole number that is 0 or more");
    }
    *value = n;
    return PIP_OK;
}

static int
crud_paging_total(const json_t *paging, bool *total, pip_error *err)
{
    const json_t *v = json_object_get(paging, "total");

    if (v == NULL || json_is_null(v)) {
        return PIP_OK;
    }
    if (!crud_json_to_bool(v, false, total)) {
        return crud_paging_error(err, "total", v,
                                 "true, false, \"true\", \"false\", "
                                 "\"1\" or \"0\"");
    }
    return PIP_OK;
}

int
pip_paging_parse(const json_t *paging, int64_t max_page_size, pip_paging *out,
                 pip_error *err)
{
    int rv;

    if (max_page_size <= 0) {
        return pip_error_set(err, PIP_E_INTERNAL, "INVALID_PAGE_SIZE",
                             "The maximum page size must be positive, "
                             "not %lld.",
                             (long long)max_page_size);
    }
    out->skip = 0;
    out->take = max_page_size;
    out->total = false;
    if (paging == NULL || json_is_null(paging)) {
        return PIP_OK;
    }
    if (!json_is_object(paging)) {
        return pip_error_set(err, PIP_E_BAD_REQUEST, "INVALID_DATA",
                             "Invalid paging: expected an object with "
                             "skip, take and total.");
    }

    rv = crud_paging_count(paging, "skip", &out->skip, err);
    if (rv == PIP_OK) {
        rv = crud_paging_count(paging, "take", &out->take, err);
    }
    if (rv == PIP_OK) {
        rv = crud_paging_total(paging, &out->total, err);
    }
    if (out->take > max_page_size) {
        out->take = max_page_size;
    }
    return rv;
}

/* ---- filters ---- */

static const json_t *
crud_filter_value(const json_t *filter, const char *key)
{
    const json_t *v = json_object_get(filter, key);

    return json_is_null(v) ? NULL : v;
}

/* Only string values, because a number has no string to point into. */
bool
pip_filter_string(const json_t *filter, const char *key, const char **value)
{
    const json_t *v = crud_filter_value(filter, key);

    if (!json_is_string(v)) {
        return false;
    }
    *value = json_string_value(v);
    return true;
}

bool
pip_filter_int(const json_t *filter, const char *key, int64_t *value)
{
    const json_t *v = crud_filter_value(filter, key);

    return v != NULL && crud_json_to_int(v, value);
}

bool
pip_filter_bool(const json_t *filter, const char *key, bool *value)
{
    const json_t *v = crud_filter_value(filter, key);
    int64_t n;

    if (v == NULL) {
        return false;
    }
    if (json_is_integer(v)) {
        n = json_integer_value(v);
        *value = n != 0;
        return n == 0 || n == 1;
    }
    return crud_json_to_bool(v, true, value);
}

bool
pip_filter_time(const json_t *filter, const char *key, int64_t *ms)
{
    const json_t *v = crud_filter_value(filter, key);

    if (json_is_string(v) && pip_time_parse(json_string_value(v), ms)) {
        return true;
    }
    return v != NULL && crud_json_to_int(v, ms);
}

/* ---- text ---- */

bool
pip_text_contains(const char *haystack, const char *needle)
{
    size_t n;

    if (haystack == NULL) {
        return false;
    }
    if (needle == NULL || needle[0] == '\0') {
        return true;
    }
    n = strlen(needle);
    for (const char *p = haystack; *p != '\0'; p++) {
        if (strncasecmp(p, needle, n) == 0) {
            return true;
        }
    }
    return false;
}

/* ---- pages and ids ---- */

json_t *
pip_page_new(json_t *data, bool with_total, int64_t total)
{
    json_t *page = json_object();

    if (data == NULL) {
        data = json_array();
    }
    if (page == NULL) {
        json_decref(data);
        return NULL;
    }
    /* json_object_set_new() takes the value even when it fails. */
    if (json_object_set_new(page, "data", data) != 0 ||
        json_object_set_new(page, "total",
                            with_total ? json_integer(total) : json_null()) !=
            0) {
        json_decref(page);
        return NULL;
    }
    return page;
}

static pthread_once_t crud_sodium_once = PTHREAD_ONCE_INIT;

static void
crud_sodium_init(void)
{
    /*
     * NOTE: a failure is dropped, because pip_id_generate() has no error
     * path to report it on.
     */
    if (sodium_init() < 0) {
        return;
    }
}

void
pip_id_generate(char out[33])
{
    unsigned char bytes[16];

    pthread_once(&crud_sodium_once, crud_sodium_init);
    randombytes_buf(bytes, sizeof(bytes));
    sodium_bin2hex(out, 33, bytes, sizeof(bytes));
}

/* Strict filter reads, service paging and small JSON helpers */

#define CRUD_DEFAULT_PAGE_SIZE 100

static bool
crud_filter_given(const json_t *filter, const char *key)
{
    const json_t *value;

    if (!json_is_object(filter)) {
        return false;
    }
    value = json_object_get(filter, key);
    return value != NULL && !json_is_null(value);
}

static int
crud_filter_invalid(pip_error *err, const json_t *filter, const char *key,
                    const char *expected)
{
    char text[PIP_SCHEMA_VALUE_TEXT_MAX];

    pip_error_set(err, PIP_E_BAD_REQUEST, "INVALID_DATA",
                  "Invalid argument 'filter.%s': expected %s, received %s.",
                  key, expected,
                  pip_schema_value_text(json_object_get(filter, key), text,
                                        sizeof(text)));
    pip_error_detail(err, "argument", json_sprintf("filter.%s", key));
    pip_error_detail(err, "expected", json_string(expected));
    return PIP_E_BAD_REQUEST;
}

int
pip_filter_read_int(const json_t *filter, const char *key, bool *present,
                    int64_t *value, pip_error *err)
{
    *present = crud_filter_given(filter, key);
    if (!*present) {
        return PIP_OK;
    }
    if (!pip_filter_int(filter, key, value)) {
        return crud_filter_invalid(err, filter, key, "integer");
    }
    return PIP_OK;
}

int
pip_filter_read_bool(const json_t *filter, const char *key, bool *present,
                     bool *value, pip_error *err)
{
    *present = crud_filter_given(filter, key);
    if (!*present) {
        return PIP_OK;
    }
    if (!pip_filter_bool(filter, key, value)) {
        return crud_filter_invalid(err, filter, key, "boolean");
    }
    return PIP_OK;
}

int
pip_filter_read_time(const json_t *filter, const char *key, bool *present,
                     int64_t *ms, pip_error *err)
{
    *present = crud_filter_given(filter, key);
    if (!*present) {
        return PIP_OK;
    }
    if (!pip_filter_time(filter, key, ms)) {
        return crud_filter_invalid(err, filter, key, "datetime");
    }
    return PIP_OK;
}

int
pip_filter_read_string(const json_t *filter, const char *key,
                       const char **value, pip_error *err)
{
    *value = NULL;
    if (!crud_filter_given(filter, key)) {
        return PIP_OK;
    }
    if (!pip_filter_string(filter, key, value)) {
        return crud_filter_invalid(err, filter, key, "string");
    }
    return PIP_OK;
}

int
pip_service_paging(pip_service *svc, const json_t *args, pip_paging *paging,
                   pip_error *err)
{
    int64_t max_page_size;

    max_page_size = pip_service_config_int(svc, "options.max_page_size",
                                           CRUD_DEFAULT_PAGE_SIZE);
    if (max_page_size < 1) {
        max_page_size = CRUD_DEFAULT_PAGE_SIZE;
    }
    return pip_paging_parse(json_object_get(args, "paging"), max_page_size,
                            paging, err);
}

bool
pip_record_contains(const json_t *record, const char *key, const char *needle)
{
    const char *text = json_string_value(json_object_get(record, key));

    return text != NULL && pip_text_contains(text, needle);
}

int
pip_json_set(json_t *obj, const char *key, json_t *value, pip_error *err)
{
    if (value == NULL || json_object_set_new(obj, key, value) != 0) {
        return pip_error_set(err, PIP_E_INTERNAL, "OUT_OF_MEMORY",
                             "Out of memory while setting %s.", key);
    }
    return PIP_OK;
}
