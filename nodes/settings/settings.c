/*
 * The settings service: configuration sections, each a flat map of dotted
 * keys ("db.pool.size") kept under the section id.  Every change is
 * published as the event settings.changed with the whole section.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "pip/time.h"
#include "services.h"

#define SETTINGS_ID_MAX 1024 /* the store's longest id */

/* Nesting deeper than this is rejected.  The node's decoder already
 * bounds the depth of every request (32 by default). */
#define SETTINGS_MAX_DEPTH 64

typedef struct settings_state {
    pip_collection *sections;
} settings_state;

/* What get_sections and get_section_ids keep, from the filter. */
typedef struct settings_query {
    const char *search;
    const char *id;
    const char *id_starts;
} settings_query;

/* The change that modify_section applies under the record's lock. */
typedef struct settings_change {
    const char *id;
    const json_t *updates;    /* flat, overwritten */
    const json_t *increments; /* flat, added as integers */
    const char *update_time;
} settings_change;

static const pip_field settings_list_args[] = {
    PIP_FIELD_FILTER("search, id, id_starts"),
    PIP_FIELD_PAGING,
    PIP_FIELDS_END,
};

static const pip_field settings_id_args[] = {
    {"id", PIP_T_STRING, true, 1, SETTINGS_ID_MAX, NULL, NULL, "section id"},
    PIP_FIELDS_END,
};

static const pip_field settings_set_args[] = {
    {"id", PIP_T_STRING, true, 1, SETTINGS_ID_MAX, NULL, NULL, "section id"},
    {"parameters", PIP_T_MAP, true, 0, 0, NULL, NULL,
     "the whole section; nested objects become dotted keys"},
    PIP_FIELDS_END,
};

static const pip_field settings_modify_args[] = {
    {"id", PIP_T_STRING, true, 1, SETTINGS_ID_MAX, NULL, NULL,
     "section id; created when missing"},
    {"update_parameters", PIP_T_MAP, false, 0, 0, NULL, NULL,
     "keys to overwrite; nested objects become dotted keys"},
    {"increment_parameters", PIP_T_MAP, false, 0, 0, NULL, NULL,
     "integers to add to the keys' integer values"},
    PIP_FIELDS_END,
};

static pip_collection *
settings_sections(pip_call *call)
{
    settings_state *st = pip_call_state(call);

    return st->sections;
}

static int
settings_no_memory(pip_error *err, const char *what)
{
    return pip_error_set(err, PIP_E_INTERNAL, "OUT_OF_MEMORY",
                         "Out of memory while building %s.", what);
}

static char *
settings_join_key(const char *prefix, const char *key)
{
    size_t prefix_len = prefix == NULL ? 0 : strlen(prefix);
    size_t key_len = strlen(key);
    char *joined = malloc(prefix_len + key_len + 2);

    if (joined == NULL) {
        return NULL;
    }
    if (prefix == NULL) {
        memcpy(joined, key, key_len + 1);
        return joined;
    }
    memcpy(joined, prefix, prefix_len);
    joined[prefix_len] = '.';
    memcpy(joined + prefix_len + 1, key, key_len + 1);
    return joined;
}

/*
 * Copies the leaves of map into flat under dotted keys, so {"a": {"b": 1}}
 * gives "a.b": 1.  Arrays and scalars are leaves.  An empty nested object
 * has no leaves and so leaves no key.
 */
static int
settings_flatten_into(json_t *flat, const char *prefix, const json_t *map,
                      int depth, pip_error *err)
{
    const char *key;
    const json_t *value;
    int rv = PIP_OK;

    if (depth > SETTINGS_MAX_DEPTH) {
        return pip_error_set(err, PIP_E_BAD_REQUEST, "INVALID_DATA",
                             "Parameters are nested deeper than %d levels. "
                             "Flatten them into dotted keys.",
                             SETTINGS_MAX_DEPTH);
    }
    json_object_foreach((json_t *)map, key, value)
    {
        char *joined = settings_join_key(prefix, key);

        if (joined == NULL) {
            return settings_no_memory(err, "a dotted key");
        }
        if (json_is_object(value)) {
            rv = settings_flatten_into(flat, joined, value, depth + 1, err);
        } else {
            rv = pip_json_set(flat, joined, json_deep_copy(value), err);
        }
        free(joined);
        if (rv != PIP_OK) {
            return rv;
        }
    }
    return PIP_OK;
}

/* A new flat copy of map (missing or null: an empty map). */
static int
settings_flatten(const json_t *map, json_t **flat, pip_error *err)
{
    int rv;

    *flat = json_object();
    if (*flat == NULL) {
        return settings_no_memory(err, "parameters");
    }
    if (!json_is_object(map)) {
        return PIP_OK;
    }
    rv = settings_flatten_into(*flat, NULL, map, 0, err);
    if (rv != PIP_OK) {
        json_decref(*flat);
        *flat = NULL;
    }
    return rv;
}

/* Reads text as a number truncated to an integer.  Returns false when
 * it is not a number or does not fit. */
static bool
settings_parse_integer(const char *text, int64_t *out)
{
    char *end;
    double value;

    errno = 0;
    value = strtod(text, &end);
    if (end == text || errno != 0) {
        return false;
    }
    while (*end == ' ' || *end == '\t') {
        end++;
    }
    if (*end != '\0' || !isfinite(value) || value >= 0x1p63 ||
        value < -0x1p63) {
        return false;
    }
    *out = (int64_t)value;
    return true;
}

/*
 * A parameter value as an integer, as the original reads it as a long:
 * integers as they are, reals and numeric strings truncated, booleans as
 * 1 or 0, and anything else (missing, text, out of range) as 0.
 */
static int64_t
settings_integer_of(const json_t *value)
{
    int64_t result = 0;

    if (json_is_integer(value)) {
        return json_integer_value(value);
    }
    if (json_is_boolean(value)) {
        return json_is_true(value) ? 1 : 0;
    }
    if (json_is_real(value)) {
        double real = json_real_value(value);

        return real < 0x1p63 && real >= -0x1p63 ? (int64_t)real : 0;
    }
    if (json_is_string(value) &&
        settings_parse_integer(json_string_value(value), &result)) {
        return result;
    }
    return 0;
}

static int
settings_apply_increments(json_t *params, const json_t *increments,
                          pip_error *err)
{
    const char *key;
    json_t *value;
    int64_t sum;
    int rv;

    json_object_foreach((json_t *)increments, key, value)
    {
        if (__builtin_add_overflow(
                settings_integer_of(json_object_get(params, key)),
                settings_integer_of(value), &sum)) {
            return pip_error_set(err, PIP_E_BAD_REQUEST, "INVALID_DATA",
                                 "Invalid argument "
                                 "'increment_parameters.%s': the sum with "
                                 "the stored value overflows 64 bits.",
                                 key);
        }
        rv = pip_json_set(params, key, json_integer(sum), err);
        if (rv != PIP_OK) {
            return rv;
        }
    }
    return PIP_OK;
}

static json_t *
settings_record_new(const char *id, json_t *params, const char *update_time)
{
    return json_pack("{s:s, s:o, s:s}", "id", id, "parameters", params,
                     "update_time", update_time);
}

/* pip_coll_update callback: applies the change in ctx to current. */
static int
settings_modify_record(const json_t *current, json_t **next, void *ctx,
                       pip_error *err)
{
    const settings_change *change = ctx;
    const json_t *stored = json_object_get(current, "parameters");
    json_t *params;
    int rv;

    params = json_is_object(stored) ? json_deep_copy(stored) : json_object();
    if (params == NULL) {
        return settings_no_memory(err, "parameters");
    }
    if (json_object_update(params, (json_t *)change->updates) != 0) {
        json_decref(params);
        return settings_no_memory(err, "parameters");
    }
    rv = settings_apply_increments(params, change->increments, err);
    if (rv != PIP_OK) {
        json_decref(params);
        return rv;
    }

    *next = settings_record_new(change->id, params, change->update_time);
    if (*next == NULL) {
        return settings_no_memory(err, "the section");
    }
    return PIP_OK;
}

/* Publishes the stored section.  A failure is only logged, because the
 * change is already stored and the caller should see it succeed. */
static void
settings_publish(pip_call *call, const json_t *record)
{
    pip_service *svc = pip_call_service(call);
    pip_error err;

    pip_error_init(&err);
    if (pip_service_publish(svc, "changed", record, &err) != PIP_OK) {
        pip_service_log(svc, PIP_LOG_WARN, pip_call_correlation_id(call),
                        "publishing settings.changed for %s failed: %s",
                        json_string_value(json_object_get(record, "id")),
                        err.message);
    }
    pip_error_fini(&err);
}

/* Returns the parameters of record as the call's result and publishes
 * the change. */
static int
settings_finish_change(pip_call *call, json_t *record, json_t **result)
{
    settings_publish(call, record);
    *result = json_incref(json_object_get(record, "parameters"));
    return PIP_OK;
}

static int
settings_set_section(pip_call *call, json_t *args, json_t **result)
{
    pip_error *err = pip_call_error(call);
    const char *id = json_string_value(json_object_get(args, "id"));
    char now[PIP_TIME_STRLEN];
    json_t *params;
    json_t *record;
    int rv;

    rv = settings_flatten(json_object_get(args, "parameters"), &params, err);
    if (rv != PIP_OK) {
        return rv;
    }
    pip_time_format(pip_now_ms(), now);
    record = settings_record_new(id, params, now);
    if (record == NULL) {
        return settings_no_memory(err, "the section");
    }

    rv = pip_coll_put(settings_sections(call), id, record, err);
    if (rv == PIP_OK) {
        rv = settings_finish_change(call, record, result);
    }
    json_decref(record);
    return rv;
}

static int
settings_modify_section(pip_call *call, json_t *args, json_t **result)
{
    pip_error *err = pip_call_error(call);
    char now[PIP_TIME_STRLEN];
    settings_change change = {0};
    json_t *updates = NULL;
    json_t *increments = NULL;
    json_t *record = NULL;
    int rv;

    rv = settings_flatten(json_object_get(args, "update_parameters"), &updates,
                          err);
    if (rv == PIP_OK) {
        rv = settings_flatten(json_object_get(args, "increment_parameters"),
                              &increments, err);
    }
    if (rv == PIP_OK) {
        pip_time_format(pip_now_ms(), now);
        change.id = json_string_value(json_object_get(args, "id"));
        change.updates = updates;
        change.increments = increments;
        change.update_time = now;
        rv = pip_coll_update(settings_sections(call), change.id,
                             settings_modify_record, &change, &record, err);
    }
    if (rv == PIP_OK) {
        rv = settings_finish_change(call, record, result);
    }
    json_decref(record);
    json_decref(updates);
    json_decref(increments);
    return rv;
}

/* The original returns an empty map, never null, for a missing section. */
static int
settings_get_section_by_id(pip_call *call, json_t *args, json_t **result)
{
    const char *id = json_string_value(json_object_get(args, "id"));
    json_t *record = NULL;
    json_t *params;
    int rv;

    rv = pip_coll_get(settings_sections(call), id, &record,
                      pip_call_error(call));
    if (rv != PIP_OK) {
        return rv;
    }
    params = json_object_get(record, "parameters");
    *result = json_is_object(params) ? json_incref(params) : json_object();
    json_decref(record);
    return PIP_OK;
}

static bool
settings_match(const json_t *record, void *ctx)
{
    const settings_query *q = ctx;
    const char *id = json_string_value(json_object_get(record, "id"));

    if (id == NULL) {
        return false;
    }
    if (q->id != NULL && strcmp(id, q->id) != 0) {
        return false;
    }
    if (q->id_starts != NULL &&
        strncmp(id, q->id_starts, strlen(q->id_starts)) != 0) {
        return false;
    }
    return q->search == NULL || pip_text_contains(id, q->search);
}

/* Lists one page of sections, in id order. */
static int
settings_list(pip_call *call, const json_t *args, json_t **page)
{
    pip_error *err = pip_call_error(call);
    const json_t *filter = json_object_get(args, "filter");
    settings_query q = {0};
    pip_paging paging;
    pip_scan scan = {0};
    int rv;

    rv = pip_filter_read_string(filter, "search", &q.search, err);
    if (rv == PIP_OK) {
        rv = pip_filter_read_string(filter, "id", &q.id, err);
    }
    if (rv == PIP_OK) {
        rv = pip_filter_read_string(filter, "id_starts", &q.id_starts, err);
    }
    if (rv == PIP_OK) {
        rv = pip_service_paging(pip_call_service(call), args, &paging, err);
    }
    if (rv != PIP_OK) {
        return rv;
    }

    /* An exact id is a prefix too, and the longer prefix reads less. */
    scan.prefix = q.id_starts;
    if (q.id != NULL &&
        (q.id_starts == NULL || strlen(q.id) > strlen(q.id_starts))) {
        scan.prefix = q.id;
    }
    scan.match = settings_match;
    scan.match_ctx = &q;
    return pip_coll_list(settings_sections(call), &scan, &paging,
                         page, err);
}

static int
settings_get_sections(pip_call *call, json_t *args, json_t **result)
{
    return settings_list(call, args, result);
}

static int
settings_get_section_ids(pip_call *call, json_t *args, json_t **result)
{
    json_t *page = NULL;
    json_t *ids;
    json_t *record;
    size_t i;
    int rv;

    rv = settings_list(call, args, &page);
    if (rv != PIP_OK) {
        return rv;
    }
    ids = json_array();
    json_array_foreach(json_object_get(page, "data"), i, record)
    {
        if (ids == NULL ||
            json_array_append(ids, json_object_get(record, "id")) != 0) {
            json_decref(ids);
            json_decref(page);
            return settings_no_memory(pip_call_error(call), "the id list");
        }
    }
    rv = pip_json_set(page, "data", ids, pip_call_error(call));
    if (rv != PIP_OK) {
        json_decref(page);
        return rv;
    }
    *result = page;
    return PIP_OK;
}

static int
settings_open(pip_service *svc, pip_error *err)
{
    settings_state *st = pip_service_new_state(svc, sizeof(*st), err);

    if (st == NULL) {
        return PIP_E_INTERNAL;
    }
    return pip_store_collection(pip_service_store(svc), "sections", NULL,
                                &st->sections, err);
}

static const pip_command settings_commands[] = {
    {"get_section_ids", settings_get_section_ids, settings_list_args,
     "page {data: [id], total}, by id", "Lists the ids of sections."},
    {"get_sections", settings_get_sections, settings_list_args,
     "page {data: [{id, parameters, update_time}], total}, by id",
     "Lists sections."},
    {"get_section_by_id", settings_get_section_by_id, settings_id_args,
     "parameters map; {} when the section is missing",
     "Reads the parameters of one section."},
    {"set_section", settings_set_section, settings_set_args,
     "the stored parameters map",
     "Replaces the whole parameters map of a section."},
    {"modify_section", settings_modify_section, settings_modify_args,
     "the resulting parameters map",
     "Overwrites some keys and increments others in one step."},
    {NULL, NULL, NULL, NULL, NULL},
};

static const pip_config_key settings_config[] = {
    {"options.max_page_size", "100", "largest page a read returns"},
    {NULL, NULL, NULL},
};

static const char *const settings_events[] = {"changed", NULL};

/* One pip_coll_get() and no change, so it may run on an I/O thread. */
static const char *const settings_read_only[] = {"get_section_by_id", NULL};

const pip_service_def pip_settings_service = {
    .name = "settings",
    .version = "1.0",
    .route = "v1/settings",
    .doc = "Configuration sections of dotted keys, with change events.",
    .commands = settings_commands,
    .config = settings_config,
    .events = settings_events,
    .uses_store = true,
    .read_only = settings_read_only,
    .open = settings_open,
};
