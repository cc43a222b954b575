/*
 * The logging service: a central store of the log messages that other
 * services send, with a longer-lived store of the errors among them.
 *
 * Both collections key a message by "<canonical time><id>", so key order
 * is time order: a reverse scan lists the newest first, a time range is a
 * key range, and expiry deletes from the oldest key up to a cutoff.
 */
#include <stdlib.h>
#include <string.h>

#include "pip/time.h"
#include "services.h"

#define LOGGING_LEVEL_NONE 0
#define LOGGING_LEVEL_ERROR 2 /* Fatal (1) and Error (2) go to errors too */
#define LOGGING_LEVEL_TRACE 6

/* "<time><id>": 24 characters of time, 32 of id and the NUL. */
#define LOGGING_KEY_MAX (PIP_TIME_STRLEN + 32)

/* The range of times whose canonical form has a 4-digit year. */
#define LOGGING_TIME_MIN_MS (-62167219200000LL) /* 0000-01-01 */
#define LOGGING_TIME_MAX_MS 253402300799999LL   /* 9999-12-31 end */

#define LOGGING_MS_PER_MINUTE 60000.0
#define LOGGING_MS_PER_DAY 86400000.0

/* Expiry deletes this many keys per write batch, and at most this many
 * batches per run, so that one run stays short.  The next run goes on. */
#define LOGGING_EXPIRE_BATCH 500
#define LOGGING_EXPIRE_MAX_BATCHES 1000

typedef struct logging_state {
    pip_service *svc;
    pip_collection *messages;
    pip_collection *errors;
    double expire_logs_days;   /* <= 0: messages never expire */
    double expire_errors_days; /* <= 0: errors never expire */
} logging_state;

/* What read_messages and read_errors keep, from the filter. */
typedef struct logging_query {
    bool has_level;
    int64_t level;
    bool has_max_level;
    int64_t max_level;
    const char *search;
    const char *source;
    bool errors_only;
    bool has_from;
    char from_key[PIP_TIME_STRLEN];
    bool has_to;
    char to_key[PIP_TIME_STRLEN];
    bool empty; /* no representable time is inside the range */
} logging_query;

static const pip_field logging_error_fields[] = {
    {"code", PIP_T_STRING, false, 0, 0, NULL, NULL, "error code"},
    {"message", PIP_T_STRING, false, 0, 0, NULL, NULL, "error text"},
    {"stack_trace", PIP_T_STRING, false, 0, 0, NULL, NULL, "stack trace"},
    PIP_FIELDS_END,
};

static const pip_field logging_message_fields[] = {
    {"id", PIP_T_STRING, false, 0, 0, NULL, NULL,
     "ignored: every write assigns a new id"},
    {"time", PIP_T_DATETIME, false, 0, 0, NULL, NULL,
     "when the message was logged; default now"},
    {"source", PIP_T_STRING, false, 0, 0, NULL, NULL,
     "component or service that logged it"},
    {"level", PIP_T_INTEGER, false, 0, 6, NULL, NULL,
     "1 Fatal, 2 Error, 3 Warn, 4 Info, 5 Debug, 6 Trace; 0 or missing: 6"},
    {"correlation_id", PIP_T_STRING, false, 0, 0, NULL, NULL, "trace id"},
    {"error", PIP_T_OBJECT, false, 0, 0, logging_error_fields, NULL,
     "error description"},
    {"message", PIP_T_STRING, false, 0, 0, NULL, NULL, "text"},
    PIP_FIELDS_END,
};

static const pip_field logging_message_item = {
    "message", PIP_T_OBJECT,           true, 0,
    0,         logging_message_fields, NULL, "a log message"};

static const pip_field logging_read_args[] = {
    PIP_FIELD_FILTER(
        "search, level, max_level, from_time, to_time, source, errors_only"),
    PIP_FIELD_PAGING,
    PIP_FIELDS_END,
};

static const pip_field logging_read_errors_args[] = {
    PIP_FIELD_FILTER("search, level, max_level, from_time, to_time, source"),
    PIP_FIELD_PAGING,
    PIP_FIELDS_END,
};

static const pip_field logging_write_message_args[] = {
    {"message", PIP_T_OBJECT, true, 0, 0, logging_message_fields, NULL,
     "the message to store"},
    PIP_FIELDS_END,
};

/* Optional on purpose: a missing or null list is a no-op, as an empty one
 * is in the original. */
static const pip_field logging_write_messages_args[] = {
    {"messages", PIP_T_ARRAY, false, 0, 0, NULL, &logging_message_item,
     "the messages to store; null or empty: nothing is written"},
    PIP_FIELDS_END,
};

static int
logging_level_of(const json_t *message)
{
    const json_t *level = json_object_get(message, "level");

    /* The schema accepts an integral real as an integer. */
    if (!json_is_number(level)) {
        return LOGGING_LEVEL_NONE;
    }
    return (int)json_number_value(level);
}

/* Fills key with the canonical form of ms.  Returns false when ms has no
 * 4-digit year, because such a key would not sort in time order. */
static bool
logging_time_key(int64_t ms, char key[PIP_TIME_STRLEN])
{
    if (ms < LOGGING_TIME_MIN_MS || ms > LOGGING_TIME_MAX_MS) {
        return false;
    }
    pip_time_format(ms, key);
    return true;
}

static int
logging_prepare_time(json_t *message, char time_key[PIP_TIME_STRLEN],
                     pip_error *err)
{
    const char *text = json_string_value(json_object_get(message, "time"));
    int64_t ms = pip_now_ms();

    if (text != NULL && !pip_time_parse(text, &ms)) {
        return pip_error_set(err, PIP_E_BAD_REQUEST, "INVALID_DATA",
                             "Invalid argument 'message.time': '%s' is not "
                             "an ISO 8601 date-time.",
                             text);
    }
    if (!logging_time_key(ms, time_key)) {
        return pip_error_set(err, PIP_E_BAD_REQUEST, "INVALID_DATA",
                             "Invalid argument 'message.time': the year "
                             "must be within 0000 to 9999.");
    }
    return pip_json_set(message, "time", json_string(time_key), err);
}

/*
 * Gives message a new id, its default level and time, and fills key.
 * The original also overwrites any id that the caller sends.
 */
static int
logging_prepare(json_t *message, char key[LOGGING_KEY_MAX], pip_error *err)
{
    char id[33];
    char time_key[PIP_TIME_STRLEN];
    int level = logging_level_of(message);
    int rv;

    if (level == LOGGING_LEVEL_NONE) {
        level = LOGGING_LEVEL_TRACE;
    }
    rv = pip_json_set(message, "level", json_integer(level), err);
    if (rv != PIP_OK) {
        return rv;
    }
    rv = logging_prepare_time(message, time_key, err);
    if (rv != PIP_OK) {
        return rv;
    }

    pip_id_generate(id);
    rv = pip_json_set(message, "id", json_string(id), err);
    if (rv != PIP_OK) {
        return rv;
    }
    memcpy(key, time_key, PIP_TIME_STRLEN - 1);
    memcpy(key + PIP_TIME_STRLEN - 1, id, sizeof(id));
    return PIP_OK;
}

/* Adds message to the batch: to messages, and to errors when its level
 * is Fatal or Error. */
static int
logging_batch_message(logging_state *st, pip_batch *batch, json_t *message,
                      pip_error *err)
{
    char key[LOGGING_KEY_MAX];
    int rv;

    rv = logging_prepare(message, key, err);
    if (rv != PIP_OK) {
        return rv;
    }
    rv = pip_batch_put(batch, st->messages, key, message, err);
    if (rv != PIP_OK) {
        return rv;
    }
    if (logging_level_of(message) <= LOGGING_LEVEL_ERROR) {
        rv = pip_batch_put(batch, st->errors, key, message, err);
    }
    return rv;
}

/* Writes every object of messages in one batch, so all or none land. */
static int
logging_write(pip_call *call, json_t *messages)
{
    logging_state *st = pip_call_state(call);
    pip_error *err = pip_call_error(call);
    pip_batch *batch;
    size_t i;
    json_t *message;
    int rv = PIP_OK;

    batch = pip_batch_new(pip_service_store(pip_call_service(call)));
    if (batch == NULL) {
        return pip_call_fail(call, PIP_E_INTERNAL, "OUT_OF_MEMORY",
                             "Cannot allocate a write batch.");
    }
    json_array_foreach(messages, i, message)
    {
        rv = logging_batch_message(st, batch, message, err);
        if (rv != PIP_OK) {
            pip_batch_free(batch);
            return rv;
        }
    }
    return pip_batch_commit(batch, err);
}

static int
logging_write_message(pip_call *call, json_t *args, json_t **result)
{
    json_t *message = json_object_get(args, "message");
    json_t *list;
    int rv;

    list = json_pack("[O]", message);
    if (list == NULL) {
        return pip_call_fail(call, PIP_E_INTERNAL, "OUT_OF_MEMORY",
                             "Cannot allocate the message list.");
    }
    rv = logging_write(call, list);
    json_decref(list);
    if (rv == PIP_OK) {
        *result = json_incref(message);
    }
    return rv;
}

static int
logging_write_messages(pip_call *call, json_t *args, json_t **result)
{
    json_t *messages = json_object_get(args, "messages");

    (void)result;
    if (json_array_size(messages) == 0) {
        return PIP_OK;
    }
    return logging_write(call, messages);
}

static bool
logging_matches_search(const json_t *record, const char *needle)
{
    const json_t *error = json_object_get(record, "error");

    return pip_record_contains(record, "message", needle) ||
           pip_record_contains(record, "correlation_id", needle) ||
           pip_record_contains(error, "message", needle) ||
           pip_record_contains(error, "stack_trace", needle) ||
           pip_record_contains(error, "code", needle);
}

static bool
logging_matches_time(const logging_query *q, const json_t *record)
{
    const char *time = json_string_value(json_object_get(record, "time"));

    if (time == NULL) {
        return !q->has_from && !q->has_to;
    }
    if (q->has_from && strcmp(time, q->from_key) < 0) {
        return false;
    }
    return !q->has_to || strcmp(time, q->to_key) < 0;
}

static bool
logging_match(const json_t *record, void *ctx)
{
    const logging_query *q = ctx;
    int level = logging_level_of(record);
    const char *source;

    if (q->has_level && level != q->level) {
        return false;
    }
    if (q->has_max_level && level > q->max_level) {
        return false;
    }
    if (q->source != NULL) {
        source = json_string_value(json_object_get(record, "source"));
        if (source == NULL || strcmp(source, q->source) != 0) {
            return false;
        }
    }
    if (q->search != NULL && !logging_matches_search(record, q->search)) {
        return false;
    }
    return logging_matches_time(q, record);
}

/* Turns from_time (inclusive) and to_time (exclusive) into key bounds. */
static int
logging_query_times(logging_query *q, const json_t *filter, pip_error *err)
{
    int64_t from_ms = 0;
    int64_t to_ms = 0;
    int rv;

    rv =
        pip_filter_read_time(filter, "from_time", &q->has_from, &from_ms, err);
    if (rv == PIP_OK) {
        rv = pip_filter_read_time(filter, "to_time", &q->has_to, &to_ms, err);
    }
    if (rv != PIP_OK) {
        return rv;
    }

    if ((q->has_from && from_ms > LOGGING_TIME_MAX_MS) ||
        (q->has_to && to_ms <= LOGGING_TIME_MIN_MS)) {
        q->empty = true;
    }
    /* A bound beyond the representable years excludes nothing. */
    q->has_from = q->has_from && logging_time_key(from_ms, q->from_key);
    q->has_to = q->has_to && logging_time_key(to_ms, q->to_key);
    return PIP_OK;
}

static int
logging_query_parse(logging_query *q, const json_t *filter, pip_error *err)
{
    int rv;

    memset(q, 0, sizeof(*q));
    rv = pip_filter_read_int(filter, "level", &q->has_level, &q->level, err);
    if (rv == PIP_OK) {
        rv = pip_filter_read_int(filter, "max_level", &q->has_max_level,
                                 &q->max_level, err);
    }
    if (rv == PIP_OK) {
        rv = pip_filter_read_string(filter, "search", &q->search, err);
    }
    if (rv == PIP_OK) {
        rv = pip_filter_read_string(filter, "source", &q->source, err);
    }
    if (rv == PIP_OK) {
        bool present;

        rv = pip_filter_read_bool(filter, "errors_only", &present,
                                  &q->errors_only, err);
    }
    if (rv != PIP_OK) {
        return rv;
    }
    return logging_query_times(q, filter, err);
}

/* Lists one page of coll, newest first. */
static int
logging_list(pip_call *call, pip_collection *coll, const logging_query *q,
             const pip_paging *paging, json_t **result)
{
    pip_scan scan = {0};

    if (q->empty) {
        *result = pip_page_new(json_array(), paging->total, 0);
        return PIP_OK;
    }
    /* Every key of a message at from_time or later sorts at or after
     * from_key; every key of one before to_time sorts before to_key. */
    scan.start = q->has_from ? q->from_key : NULL;
    scan.end = q->has_to ? q->to_key : NULL;
    scan.reverse = true;
    scan.match = logging_match;
    scan.match_ctx = (void *)q;
    return pip_coll_list(coll, &scan, paging, result, pip_call_error(call));
}

static int
logging_read(pip_call *call, json_t *args, json_t **result, bool errors)
{
    logging_state *st = pip_call_state(call);
    pip_error *err = pip_call_error(call);
    logging_query q;
    pip_paging paging;
    int rv;

    rv = logging_query_parse(&q, json_object_get(args, "filter"), err);
    if (rv == PIP_OK) {
        rv = pip_service_paging(pip_call_service(call), args, &paging, err);
    }
    if (rv != PIP_OK) {
        return rv;
    }
    errors = errors || q.errors_only;
    return logging_list(call, errors ? st->errors : st->messages, &q, &paging,
                        result);
}

static int
logging_read_messages(pip_call *call, json_t *args, json_t **result)
{
    return logging_read(call, args, result, false);
}

static int
logging_read_errors(pip_call *call, json_t *args, json_t **result)
{
    return logging_read(call, args, result, true);
}

/* As in the original, clear empties messages and keeps errors. */
static int
logging_clear(pip_call *call, json_t *args, json_t **result)
{
    logging_state *st = pip_call_state(call);

    (void)args;
    (void)result;
    return pip_coll_clear(st->messages, pip_call_error(call));
}

typedef struct logging_expired {
    json_t *keys;
    bool failed;
} logging_expired;

static bool
logging_collect_key(const char *id, const json_t *record, void *ctx)
{
    logging_expired *expired = ctx;

    (void)record;
    if (json_array_append_new(expired->keys, json_string(id)) != 0) {
        expired->failed = true;
        return false;
    }
    return json_array_size(expired->keys) < LOGGING_EXPIRE_BATCH;
}

static int
logging_delete_keys(pip_service *svc, pip_collection *coll, const json_t *keys,
                    pip_error *err)
{
    pip_batch *batch = pip_batch_new(pip_service_store(svc));
    size_t i;
    const json_t *key;

    if (batch == NULL) {
        return pip_error_set(err, PIP_E_INTERNAL, "OUT_OF_MEMORY",
                             "Cannot allocate a write batch.");
    }
    json_array_foreach(keys, i, key)
    {
        int rv = pip_batch_delete(batch, coll, json_string_value(key), err);

        if (rv != PIP_OK) {
            pip_batch_free(batch);
            return rv;
        }
    }
    return pip_batch_commit(batch, err);
}

/* Deletes up to one batch of keys older than cutoff_key and sets *count
 * to the number deleted. */
static int
logging_expire_batch(pip_service *svc, pip_collection *coll,
                     const char *cutoff_key, size_t *count, pip_error *err)
{
    pip_scan scan = {0};
    logging_expired expired = {json_array(), false};
    int rv;

    *count = 0;
    if (expired.keys == NULL) {
        return pip_error_set(err, PIP_E_INTERNAL, "OUT_OF_MEMORY",
                             "Cannot allocate the expired key list.");
    }
    scan.end = cutoff_key;
    rv = pip_coll_scan(coll, &scan, logging_collect_key, &expired, err);
    if (rv == PIP_OK && expired.failed) {
        rv = pip_error_set(err, PIP_E_INTERNAL, "OUT_OF_MEMORY",
                           "Cannot grow the expired key list.");
    }
    if (rv == PIP_OK && json_array_size(expired.keys) > 0) {
        rv = logging_delete_keys(svc, coll, expired.keys, err);
    }
    if (rv == PIP_OK) {
        *count = json_array_size(expired.keys);
    }
    json_decref(expired.keys);
    return rv;
}

/* Deletes the records of coll logged more than days ago. */
static void
logging_expire(pip_service *svc, pip_collection *coll, const char *name,
               double days)
{
    double cutoff_ms = (double)pip_now_ms() - days * LOGGING_MS_PER_DAY;
    char cutoff_key[PIP_TIME_STRLEN];
    size_t removed = 0;
    size_t count = LOGGING_EXPIRE_BATCH;
    pip_error err;
    int rv = PIP_OK;

    /* Written as negations so that a NaN setting turns expiry off too. */
    if (!(days > 0) || !(cutoff_ms > (double)LOGGING_TIME_MIN_MS)) {
        return;
    }
    logging_time_key((int64_t)cutoff_ms, cutoff_key);

    pip_error_init(&err);
    for (int i = 0; rv == PIP_OK && i < LOGGING_EXPIRE_MAX_BATCHES &&
                    count == LOGGING_EXPIRE_BATCH;
         i++) {
        rv = logging_expire_batch(svc, coll, cutoff_key, &count, &err);
        removed += count;
    }
    if (rv != PIP_OK) {
        pip_service_log(svc, PIP_LOG_ERROR, NULL,
                        "expiry of %s failed after removing %zu records: "
                        "%s %s",
                        name, removed, err.code, err.message);
    } else {
        pip_service_log(svc, PIP_LOG_DEBUG, NULL,
                        "expiry of %s removed %zu records logged before %s",
                        name, removed, cutoff_key);
    }
    pip_error_fini(&err);
}

static void
logging_cleanup(pip_service *svc, void *ctx)
{
    logging_state *st = ctx;

    logging_expire(svc, st->messages, "messages", st->expire_logs_days);
    logging_expire(svc, st->errors, "errors", st->expire_errors_days);
}

/* Starts the expiry timer, unless the period is 0 or less. */
static int
logging_start_expiry(pip_service *svc, logging_state *st, pip_error *err)
{
    double minutes =
        pip_service_config_double(svc, "options.expire_cleanup_timeout", 60);
    double period_ms = minutes * LOGGING_MS_PER_MINUTE;

    st->expire_logs_days =
        pip_service_config_double(svc, "options.expire_logs_timeout", 3);
    st->expire_errors_days =
        pip_service_config_double(svc, "options.expire_errors_timeout", 30);
    if (!(period_ms > 0)) {
        pip_service_log(svc, PIP_LOG_INFO, NULL, "expiry is off");
        return PIP_OK;
    }
    if (period_ms < 1) {
        period_ms = 1;
    }
    if (period_ms > (double)INT32_MAX * 1000) {
        period_ms = (double)INT32_MAX * 1000;
    }
    pip_service_log(svc, PIP_LOG_INFO, NULL,
                    "expiry every %g min: messages after %g days, errors "
                    "after %g days",
                    minutes, st->expire_logs_days, st->expire_errors_days);
    return pip_service_every(svc, (int64_t)period_ms, logging_cleanup, st,
                             err);
}

static int
logging_open(pip_service *svc, pip_error *err)
{
    pip_store *store = pip_service_store(svc);
    logging_state *st = pip_service_new_state(svc, sizeof(*st), err);
    int rv;

    if (st == NULL) {
        return PIP_E_INTERNAL;
    }
    st->svc = svc;
    rv = pip_store_collection(store, "messages", NULL, &st->messages, err);
    if (rv == PIP_OK) {
        rv = pip_store_collection(store, "errors", NULL, &st->errors, err);
    }
    if (rv == PIP_OK) {
        rv = logging_start_expiry(svc, st, err);
    }
    return rv;
}

static const pip_command logging_commands[] = {
    {"read_messages", logging_read_messages, logging_read_args,
     "page {data: [message], total}, newest first",
     "Lists stored messages (errors only with filter errors_only)."},
    {"read_errors", logging_read_errors, logging_read_errors_args,
     "page {data: [message], total}, newest first",
     "Lists stored Fatal and Error messages."},
    {"write_message", logging_write_message, logging_write_message_args,
     "the stored message with its id, level and time",
     "Stores one message; Fatal and Error also go to errors."},
    {"write_messages", logging_write_messages, logging_write_messages_args,
     "nil", "Stores several messages together."},
    {"clear", logging_clear, NULL, "nil",
     "Deletes every message; errors are kept."},
    {NULL, NULL, NULL, NULL, NULL},
};

static const pip_config_key logging_config[] = {
    {"options.max_page_size", "100", "largest page a read returns"},
    {"options.expire_cleanup_timeout", "60",
     "minutes between expiry runs; 0 turns expiry off"},
    {"options.expire_logs_timeout", "3",
     "days a message is kept; 0 keeps messages forever"},
    {"options.expire_errors_timeout", "30",
     "days an error is kept; 0 keeps errors forever"},
    {NULL, NULL, NULL},
};

const pip_service_def pip_logging_service = {
    .name = "logging",
    .version = "1.0",
    .route = "v1/logging",
    .doc = "Central store of log messages, with longer-lived errors.",
    .commands = logging_commands,
    .config = logging_config,
    .events = NULL,
    .uses_store = true,
    .open = logging_open,
};
