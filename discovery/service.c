/*
 * The "discovery" service: a table of live instances in memory.
 *
 * Leases are ephemeral on purpose: after a restart the table is empty and
 * every node's registration thread registers again within a third of its
 * lease, so nothing is written to disk.  The table is a jansson object
 * keyed by instance_id under one mutex; lookups by name scan it, which is
 * cheap at the sizes options.max_instances allows.
 */
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "pip/discovery.h"
#include "pip/time.h"

#define DISCOVERY_URL_MAX 256
#define DISCOVERY_NAME_MAX 63
#define DISCOVERY_ID_HEX 32
/* Period of the eviction timer; a lease ends at most this much late. */
#define DISCOVERY_EVICT_PERIOD_MS 250

typedef struct discovery_state {
    pthread_mutex_t lock;
    json_t *entries; /* instance_id -> {"instance": {}, "expires_ms": n} */
    int64_t default_lease_ms;
    int64_t min_lease_ms;
    int64_t max_lease_ms;
    int64_t max_instances;
} discovery_state;

/* ---- validation ---- */

static int
discovery_invalid(pip_error *err, const char *argument, const char *expected)
{
    pip_error_set(err, PIP_E_BAD_REQUEST, "INVALID_DATA",
                  "Invalid %s: expected %s", argument, expected);
    if (err != NULL) {
        pip_error_detail(err, "argument", json_string(argument));
        pip_error_detail(err, "expected", json_string(expected));
    }
    return PIP_E_BAD_REQUEST;
}

static bool
discovery_url_valid(const char *url)
{
    static const char *const schemes[] = {"tcp://", "ipc://", "inproc://"};
    size_t len = strlen(url);
    size_t scheme_len = 0;
    size_t i;

    for (i = 0; i < sizeof(schemes) / sizeof(schemes[0]); i++) {
        if (strncmp(url, schemes[i], strlen(schemes[i])) == 0) {
            scheme_len = strlen(schemes[i]);
        }
    }
    if (scheme_len == 0 || len <= scheme_len || len > DISCOVERY_URL_MAX) {
        return false;
    }
    for (i = 0; i < len; i++) {
        if ((unsigned char)url[i] < 0x20 || url[i] == 0x7f) {
            return false;
        }
    }
    return true;
}

static int
discovery_check_url(const json_t *value, const char *argument, pip_error *err)
{
    const char *url = json_string_value(value);

    if (url == NULL || !discovery_url_valid(url)) {
        return discovery_invalid(err, argument,
                                 "a tcp://, ipc:// or inproc:// URL of at "
                                 "most 256 bytes");
    }
    return PIP_OK;
}

static int
discovery_check_urls(const json_t *instance, pip_error *err)
{
    json_t *rpc = json_object_get(instance, "rpc");
    json_t *pub = json_object_get(instance, "pub");
    char argument[48];
    json_t *url;
    size_t i;
    int rv;

    if (!json_is_array(rpc) || json_array_size(rpc) == 0) {
        return discovery_invalid(err, "instance.rpc",
                                 "an array of at least one URL");
    }
    json_array_foreach(rpc, i, url)
    {
        snprintf(argument, sizeof(argument), "instance.rpc[%zu]", i);
        rv = discovery_check_url(url, argument, err);
        if (rv != PIP_OK) {
            return rv;
        }
    }
    if (pub != NULL && !json_is_null(pub)) {
        return discovery_check_url(pub, "instance.pub", err);
    }
    return PIP_OK;
}

/* Service names become the first part of methods, so no dots. */
static bool
discovery_name_valid(const char *name)
{
    size_t len = strlen(name);
    size_t i;

    if (len == 0 || len > DISCOVERY_NAME_MAX) {
        return false;
    }
    for (i = 0; i < len; i++) {
        char c = name[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                  (c >= '0' && c <= '9') || c == '_' || c == '-';
        if (!ok) {
            return false;
        }
    }
    return true;
}

static bool
discovery_id_valid(const char *id)
{
    size_t i;

    if (strlen(id) != DISCOVERY_ID_HEX) {
        return false;
    }
    for (i = 0; i < DISCOVERY_ID_HEX; i++) {
        if (!((id[i] >= '0' && id[i] <= '9') ||
              (id[i] >= 'a' && id[i] <= 'f'))) {
            return false;
        }
    }
    return true;
}

static int
discovery_check_fields(const json_t *instance, pip_error *err)
{
    const char *name = json_string_value(json_object_get(instance, "name"));
    json_t *id = json_object_get(instance, "instance_id");
    json_t *metadata = json_object_get(instance, "metadata");

    if (name == NULL || !discovery_name_valid(name)) {
        return discovery_invalid(err, "instance.name",
                                 "1 to 63 letters, digits, '_' or '-'");
    }
    if (id != NULL &&
        (!json_is_string(id) || !discovery_id_valid(json_string_value(id)))) {
        return discovery_invalid(err, "instance.instance_id",
                                 "32 lowercase hexadecimal digits");
    }
    if (metadata != NULL && !json_is_object(metadata)) {
        return discovery_invalid(err, "instance.metadata", "an object");
    }
    return discovery_check_urls(instance, err);
}

/* The lease granted: the default when none is requested, else clamped. */
static int
discovery_lease(const discovery_state *st, const json_t *instance,
                int64_t *lease_ms, pip_error *err)
{
    json_t *requested = json_object_get(instance, "lease_ms");
    json_int_t value;

    if (requested == NULL) {
        *lease_ms = st->default_lease_ms;
        return PIP_OK;
    }
    /* The schema accepts a real with no fraction as an integer. */
    value = (json_int_t)json_number_value(requested);
    if (!json_is_number(requested) ||
        json_number_value(requested) != (double)value || value <= 0) {
        return discovery_invalid(err, "instance.lease_ms",
                                 "a positive number of milliseconds");
    }
    *lease_ms = value < st->min_lease_ms   ? st->min_lease_ms
                : value > st->max_lease_ms ? st->max_lease_ms
                                           : value;
    return PIP_OK;
}

/* ---- the table ---- */

static void
discovery_new_id(char out[DISCOVERY_ID_HEX + 1])
{
    unsigned char bytes[DISCOVERY_ID_HEX / 2];

    randombytes_buf(bytes, sizeof(bytes));
    sodium_bin2hex(out, DISCOVERY_ID_HEX + 1, bytes, sizeof(bytes));
}

static void
discovery_copy_field(json_t *dst, const json_t *src, const char *key)
{
    json_t *value = json_object_get(src, key);

    if (value != NULL && !json_is_null(value)) {
        json_object_set_new(dst, key, json_deep_copy(value));
    }
}

/* Builds the stored instance from the known fields of input. */
static json_t *
discovery_instance_build(const json_t *input, int64_t lease_ms)
{
    static const char *const copied[] = {"name", "version", "rpc",
                                         "pub",  "host",    "metadata"};
    const char *id = json_string_value(json_object_get(input, "instance_id"));
    char fresh[DISCOVERY_ID_HEX + 1];
    char now[PIP_TIME_STRLEN];
    json_t *instance;
    size_t i;

    if (id == NULL) {
        discovery_new_id(fresh);
        id = fresh;
    }
    pip_time_format(pip_now_ms(), now);
    instance = json_pack("{s:s,s:I,s:s,s:s}", "instance_id", id, "lease_ms",
                         (json_int_t)lease_ms, "registered_time", now,
                         "renewed_time", now);
    if (instance == NULL) {
        return NULL;
    }
    for (i = 0; i < sizeof(copied) / sizeof(copied[0]); i++) {
        discovery_copy_field(instance, input, copied[i]);
    }
    return instance;
}

static json_t *
discovery_entry_instance(const json_t *entry)
{
    return json_object_get(entry, "instance");
}

static bool
discovery_entry_live(const json_t *entry, int64_t now_ms)
{
    return json_integer_value(json_object_get(entry, "expires_ms")) > now_ms;
}

static const char *
discovery_name_of(const json_t *instance)
{
    return json_string_value(json_object_get(instance, "name"));
}

static void
discovery_announce(pip_service *svc, const char *event, const json_t *instance)
{
    pip_error err;

    pip_error_init(&err);
    if (pip_service_publish(svc, event, instance, &err) != PIP_OK) {
        pip_service_log(
            svc, PIP_LOG_WARN, NULL, "failed to publish %s of instance %s: %s",
            event, json_string_value(json_object_get(instance, "instance_id")),
            err.message);
    }
    pip_error_fini(&err);
}

/*
 * Removes an entry and publishes "leave".  Call locked.  id may be the key
 * being removed, so it is copied first.
 */
static void
discovery_remove(pip_service *svc, discovery_state *st, const char *id,
                 const char *reason)
{
    json_t *entry = json_incref(json_object_get(st->entries, id));
    char key[DISCOVERY_ID_HEX + 1];
    json_t *instance;

    if (entry == NULL) {
        return;
    }
    snprintf(key, sizeof(key), "%s", id);
    instance = discovery_entry_instance(entry);
    json_object_del(st->entries, key);
    pip_service_log(svc, PIP_LOG_INFO, NULL, "instance %s of %s left: %s", key,
                    discovery_name_of(instance), reason);
    discovery_announce(svc, "leave", instance);
    json_decref(entry);
}

static bool
discovery_rpc_overlaps(const json_t *a, const json_t *b)
{
    json_t *rpc_b = json_object_get(b, "rpc");
    json_t *url_a;
    json_t *url_b;
    size_t i;
    size_t j;

    json_array_foreach(json_object_get(a, "rpc"), i, url_a)
    {
        json_array_foreach(rpc_b, j, url_b)
        {
            if (json_equal(url_a, url_b)) {
                return true;
            }
        }
    }
    return false;
}

/*
 * Removes the entries that instance replaces: its own id, and any other
 * instance of the same name at one of its rpc URLs (a node restarted
 * before its old lease ran out).  Call locked.
 */
static void
discovery_remove_replaced(pip_service *svc, discovery_state *st,
                          const json_t *instance)
{
    const char *id =
        json_string_value(json_object_get(instance, "instance_id"));
    const char *name = discovery_name_of(instance);
    const char *key;
    json_t *entry;
    json_t *old;
    void *tmp;

    json_object_del(st->entries, id);
    json_object_foreach_safe(st->entries, tmp, key, entry)
    {
        old = discovery_entry_instance(entry);
        if (strcmp(discovery_name_of(old), name) == 0 &&
            discovery_rpc_overlaps(old, instance)) {
            discovery_remove(svc, st, key, "replaced by a new registration");
        }
    }
}

/* Adds instance (stealing it) and publishes "join".  Call locked. */
static int
discovery_insert(pip_service *svc, discovery_state *st, json_t *instance,
                 int64_t lease_ms, pip_error *err)
{
    const char *id =
        json_string_value(json_object_get(instance, "instance_id"));
    json_t *entry;

    discovery_remove_replaced(svc, st, instance);
    if ((int64_t)json_object_size(st->entries) >= st->max_instances) {
        json_decref(instance);
        return pip_error_set(err, PIP_E_INVALID_STATE, "LIMIT_EXCEEDED",
                             "Discovery already holds %lld instances, the "
                             "maximum set by options.max_instances",
                             (long long)st->max_instances);
    }

    entry = json_pack("{s:o,s:I}", "instance", instance, "expires_ms",
                      (json_int_t)(pip_mono_ms() + lease_ms));
    if (entry == NULL || json_object_set_new(st->entries, id, entry) != 0) {
        return pip_error_set(err, PIP_E_INTERNAL, "OUT_OF_MEMORY",
                             "Failed to store instance %s", id);
    }
    pip_service_log(svc, PIP_LOG_INFO, NULL,
                    "instance %s of %s joined with a lease of %lld ms", id,
                    discovery_name_of(instance), (long long)lease_ms);
    discovery_announce(svc, "join", instance);
    return PIP_OK;
}

static int
discovery_compare(const void *a, const void *b)
{
    const json_t *x = *(const json_t *const *)a;
    const json_t *y = *(const json_t *const *)b;
    int order = strcmp(discovery_name_of(x), discovery_name_of(y));

    if (order != 0) {
        return order;
    }
    return strcmp(json_string_value(json_object_get(x, "instance_id")),
                  json_string_value(json_object_get(y, "instance_id")));
}

/*
 * Copies the live instances of name (every one when name is NULL) into a
 * new array sorted by name, then instance_id.  Call locked.
 */
static json_t *
discovery_select(discovery_state *st, const char *name)
{
    size_t capacity = json_object_size(st->entries);
    const json_t **found = malloc((capacity + 1) * sizeof(*found));
    int64_t now_ms = pip_mono_ms();
    json_t *out = json_array();
    const json_t *instance;
    const char *key;
    json_t *entry;
    size_t count = 0;
    size_t i;

    if (found == NULL || out == NULL) {
        free(found);
        json_decref(out);
        return NULL;
    }
    json_object_foreach(st->entries, key, entry)
    {
        instance = discovery_entry_instance(entry);
        if (discovery_entry_live(entry, now_ms) &&
            (name == NULL || strcmp(discovery_name_of(instance), name) == 0)) {
            found[count++] = instance;
        }
    }
    qsort(found, count, sizeof(*found), discovery_compare);
    for (i = 0; i < count; i++) {
        json_array_append_new(out, json_deep_copy(found[i]));
    }
    free(found);
    return out;
}

/* ---- commands ---- */

static discovery_state *
discovery_state_of(pip_call *call)
{
    return pip_call_state(call);
}

static int
discovery_register(pip_call *call, json_t *args, json_t **result)
{
    pip_service *svc = pip_call_service(call);
    discovery_state *st = discovery_state_of(call);
    json_t *input = json_object_get(args, "instance");
    pip_error *err = pip_call_error(call);
    int64_t lease_ms = 0;
    json_t *instance;
    int rv;

    rv = discovery_check_fields(input, err);
    if (rv == PIP_OK) {
        rv = discovery_lease(st, input, &lease_ms, err);
    }
    if (rv != PIP_OK) {
        return rv;
    }
    instance = discovery_instance_build(input, lease_ms);
    if (instance == NULL) {
        return pip_call_fail(call, PIP_E_INTERNAL, "OUT_OF_MEMORY",
                             "Failed to build the instance");
    }

    pthread_mutex_lock(&st->lock);
    *result = json_deep_copy(instance);
    rv = discovery_insert(svc, st, instance, lease_ms, err);
    pthread_mutex_unlock(&st->lock);
    if (rv != PIP_OK) {
        json_decref(*result);
        *result = NULL;
    }
    return rv;
}

static int
discovery_not_found(pip_call *call, const char *id)
{
    pip_call_fail(call, PIP_E_NOT_FOUND, "INSTANCE_NOT_FOUND",
                  "Instance %s is not registered, because its lease ran "
                  "out or discovery restarted. Register it again.",
                  id);
    pip_error_detail(pip_call_error(call), "instance_id", json_string(id));
    return PIP_E_NOT_FOUND;
}

static int
discovery_renew(pip_call *call, json_t *args, json_t **result)
{
    pip_service *svc = pip_call_service(call);
    discovery_state *st = discovery_state_of(call);
    const char *id = json_string_value(json_object_get(args, "instance_id"));
    int64_t now_ms = pip_mono_ms();
    char now[PIP_TIME_STRLEN];
    json_t *instance;
    json_t *entry;
    json_int_t lease_ms;

    pthread_mutex_lock(&st->lock);
    entry = json_object_get(st->entries, id);
    if (entry != NULL && !discovery_entry_live(entry, now_ms)) {
        discovery_remove(svc, st, id, "its lease ran out");
        entry = NULL;
    }
    if (entry == NULL) {
        pthread_mutex_unlock(&st->lock);
        return discovery_not_found(call, id);
    }

    instance = discovery_entry_instance(entry);
    lease_ms = json_integer_value(json_object_get(instance, "lease_ms"));
    pip_time_format(pip_now_ms(), now);
    json_object_set_new(instance, "renewed_time", json_string(now));
    json_object_set_new(entry, "expires_ms", json_integer(now_ms + lease_ms));
    *result = json_deep_copy(instance);
    pthread_mutex_unlock(&st->lock);
    return PIP_OK;
}

static int
discovery_deregister(pip_call *call, json_t *args, json_t **result)
{
    pip_service *svc = pip_call_service(call);
    discovery_state *st = discovery_state_of(call);
    const char *id = json_string_value(json_object_get(args, "instance_id"));

    (void)result;
    pthread_mutex_lock(&st->lock);
    discovery_remove(svc, st, id, "deregistered");
    pthread_mutex_unlock(&st->lock);
    return PIP_OK;
}

static int
discovery_lookup(pip_call *call, const char *name, json_t **result)
{
    discovery_state *st = discovery_state_of(call);

    pthread_mutex_lock(&st->lock);
    *result = discovery_select(st, name);
    pthread_mutex_unlock(&st->lock);
    if (*result == NULL) {
        return pip_call_fail(call, PIP_E_INTERNAL, "OUT_OF_MEMORY",
                             "Failed to list the instances");
    }
    return PIP_OK;
}

static int
discovery_resolve(pip_call *call, json_t *args, json_t **result)
{
    return discovery_lookup(
        call, json_string_value(json_object_get(args, "name")), result);
}

static int
discovery_list(pip_call *call, json_t *args, json_t **result)
{
    (void)args;
    return discovery_lookup(call, NULL, result);
}

/* ---- lifecycle ---- */

static void
discovery_evict(pip_service *svc, void *ctx)
{
    discovery_state *st = ctx;
    int64_t now_ms = pip_mono_ms();
    const char *key;
    json_t *entry;
    void *tmp;

    pthread_mutex_lock(&st->lock);
    json_object_foreach_safe(st->entries, tmp, key, entry)
    {
        if (!discovery_entry_live(entry, now_ms)) {
            discovery_remove(svc, st, key, "its lease ran out");
        }
    }
    pthread_mutex_unlock(&st->lock);
}

static void
discovery_state_free(discovery_state *st)
{
    if (st != NULL) {
        json_decref(st->entries);
        pthread_mutex_destroy(&st->lock);
        free(st);
    }
}

static int
discovery_configure(pip_service *svc, discovery_state *st, pip_error *err)
{
    st->default_lease_ms =
        pip_service_config_int(svc, "options.default_lease_ms", 10000);
    st->min_lease_ms =
        pip_service_config_int(svc, "options.min_lease_ms", 1000);
    st->max_lease_ms =
        pip_service_config_int(svc, "options.max_lease_ms", 300000);
    st->max_instances =
        pip_service_config_int(svc, "options.max_instances", 10000);

    if (st->min_lease_ms <= 0 || st->min_lease_ms > st->default_lease_ms ||
        st->default_lease_ms > st->max_lease_ms || st->max_instances <= 0) {
        return pip_error_set(
            err, PIP_E_BAD_REQUEST, "INVALID_CONFIG",
            "Invalid discovery settings: expected 0 < "
            "options.min_lease_ms (%lld) <= "
            "options.default_lease_ms (%lld) <= "
            "options.max_lease_ms (%lld) and "
            "options.max_instances (%lld) > 0",
            (long long)st->min_lease_ms, (long long)st->default_lease_ms,
            (long long)st->max_lease_ms, (long long)st->max_instances);
    }
    return PIP_OK;
}

static int
discovery_open(pip_service *svc, pip_error *err)
{
    discovery_state *st;
    int rv;

    if (sodium_init() < 0) {
        return pip_error_set(err, PIP_E_INTERNAL, "SODIUM_INIT_FAILED",
                             "Failed to initialize libsodium");
    }
    st = calloc(1, sizeof(*st));
    if (st == NULL || pthread_mutex_init(&st->lock, NULL) != 0) {
        free(st);
        return pip_error_set(err, PIP_E_INTERNAL, "OUT_OF_MEMORY",
                             "Failed to allocate the discovery table");
    }
    st->entries = json_object();
    rv = st->entries != NULL
             ? discovery_configure(svc, st, err)
             : pip_error_set(err, PIP_E_INTERNAL, "OUT_OF_MEMORY",
                             "Failed to allocate the discovery table");
    if (rv == PIP_OK) {
        rv = pip_service_every(svc, DISCOVERY_EVICT_PERIOD_MS, discovery_evict,
                               st, err);
    }
    if (rv != PIP_OK) {
        discovery_state_free(st);
        return rv;
    }
    pip_service_set_state(svc, st);
    return PIP_OK;
}

static void
discovery_close(pip_service *svc)
{
    discovery_state_free(pip_service_state(svc));
    pip_service_set_state(svc, NULL);
}

/* ---- the table of commands ---- */

static const pip_field discovery_url_item[] = {
    {"url", PIP_T_STRING, true, 1, DISCOVERY_URL_MAX, NULL, NULL,
     "tcp://, ipc:// or inproc:// URL"},
    PIP_FIELDS_END,
};

static const pip_field discovery_instance_fields[] = {
    {"instance_id", PIP_T_STRING, false, DISCOVERY_ID_HEX, DISCOVERY_ID_HEX,
     NULL, NULL, "32 hex digits, kept when an instance registers again"},
    {"name", PIP_T_STRING, true, 1, DISCOVERY_NAME_MAX, NULL, NULL,
     "service name"},
    {"version", PIP_T_STRING, false, 0, 64, NULL, NULL, "service version"},
    {"rpc", PIP_T_ARRAY, true, 1, 16, NULL, discovery_url_item,
     "RPC URLs, at least one"},
    {"pub", PIP_T_STRING, false, 1, DISCOVERY_URL_MAX, NULL, NULL,
     "event URL"},
    {"host", PIP_T_STRING, false, 0, 255, NULL, NULL, "host name"},
    {"metadata", PIP_T_MAP, false, 0, 0, NULL, NULL, "free-form map"},
    {"lease_ms", PIP_T_INTEGER, false, 0, 0, NULL, NULL,
     "lease in ms; default options.default_lease_ms, clamped to "
     "options.min_lease_ms..options.max_lease_ms"},
    PIP_FIELDS_END,
};

static const pip_field discovery_register_args[] = {
    {"instance", PIP_T_OBJECT, true, 0, 0, discovery_instance_fields, NULL,
     "the instance to register"},
    PIP_FIELDS_END,
};

static const pip_field discovery_id_args[] = {
    {"instance_id", PIP_T_STRING, true, 1, 64, NULL, NULL,
     "id returned by register"},
    PIP_FIELDS_END,
};

static const pip_field discovery_name_args[] = {
    {"name", PIP_T_STRING, true, 1, DISCOVERY_NAME_MAX, NULL, NULL,
     "service name"},
    PIP_FIELDS_END,
};

static const pip_command discovery_commands[] = {
    {"register", discovery_register, discovery_register_args,
     "the instance with instance_id, lease_ms and times",
     "Registers an instance, or registers it again, and publishes join"},
    {"renew", discovery_renew, discovery_id_args, "the instance",
     "Extends the lease of an instance; NotFound INSTANCE_NOT_FOUND when "
     "it is not registered"},
    {"deregister", discovery_deregister, discovery_id_args, "nil",
     "Removes an instance and publishes leave; unknown ids are ignored"},
    {"resolve", discovery_resolve, discovery_name_args,
     "array of instances sorted by instance_id",
     "Returns the live instances of one service"},
    {"list", discovery_list, NULL,
     "array of instances sorted by name, then instance_id",
     "Returns every live instance"},
    {NULL, NULL, NULL, NULL, NULL},
};

static const pip_config_key discovery_config[] = {
    {"options.default_lease_ms", "10000",
     "lease of an instance that asks for none, in ms"},
    {"options.min_lease_ms", "1000", "shortest lease granted, in ms"},
    {"options.max_lease_ms", "300000", "longest lease granted, in ms"},
    {"options.max_instances", "10000",
     "instances held at once; register fails beyond"},
    {NULL, NULL, NULL},
};

static const char *const discovery_events[] = {"join", "leave", NULL};

const pip_service_def pip_discovery_service = {
    .name = "discovery",
    .version = "1.0",
    .route = "v1/discovery",
    .doc = "Registers service instances with a lease and resolves names",
    .commands = discovery_commands,
    .config = discovery_config,
    .events = discovery_events,
    .uses_store = false,
    .open = discovery_open,
    .close = discovery_close,
};
