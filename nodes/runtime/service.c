/*
 * A hosted service: its command table, the dispatch of calls to it with
 * their statistics, the built-in commands, configuration lookup, timers
 * and logging.  The transports (server.c, pip_node_call) all end in
 * pip__dispatch(), so every call is validated, counted and timed in this
 * one place.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "node_internal.h"
#include "pip/time.h"
#include "store_internal.h"

/* One timer: a thread that sleeps on its condition variable. */
struct pip__timer {
    pip_service *svc;
    int64_t period_ms;
    pip_timer_fn fn;
    void *ctx;
    pthread_t thread;
    bool started;
    pthread_mutex_t mtx;
    pthread_cond_t cv;
    bool stop;
    pip__timer *next;
};

/* Accessors */

const pip_service_def *
pip_service_definition(const pip_service *svc)
{
    return svc->def;
}

pip_store *
pip_service_store(pip_service *svc)
{
    return svc->store;
}

void *
pip_service_state(pip_service *svc)
{
    return svc->state;
}

void
pip_service_set_state(pip_service *svc, void *state)
{
    pip__service_free_state(svc);
    svc->state = state;
}

void *
pip_service_new_state(pip_service *svc, size_t size, pip_error *err)
{
    void *state = calloc(1, size > 0 ? size : 1);

    if (state == NULL) {
        pip_error_set(err, PIP_E_INTERNAL, "OUT_OF_MEMORY",
                      "Cannot allocate the state of service %s.",
                      svc->def->name);
        return NULL;
    }
    pip_service_set_state(svc, state);
    svc->owns_state = true;
    return state;
}

void
pip__service_free_state(pip_service *svc)
{
    if (svc->owns_state) {
        free(svc->state);
        svc->owns_state = false;
    }
    svc->state = NULL;
}

pip_service *
pip_call_service(pip_call *call)
{
    return call->svc;
}

void *
pip_call_state(pip_call *call)
{
    return call->svc->state;
}

const char *
pip_call_correlation_id(const pip_call *call)
{
    return call->req->meta.correlation_id;
}

int64_t
pip_call_deadline_ms(const pip_call *call)
{
    return call->deadline_ms;
}

const pip_peer *
pip_call_caller(const pip_call *call)
{
    return call->caller != NULL && call->caller->identified ? call->caller
                                                            : NULL;
}

pip_error *
pip_call_error(pip_call *call)
{
    return call->err;
}

int
pip_call_fail(pip_call *call, pip_category category, const char *code,
              const char *fmt, ...)
{
    va_list ap;
    int rv;

    va_start(ap, fmt);
    rv = pip_error_vset(call->err, category, code, fmt, ap);
    va_end(ap);
    return rv;
}

void
pip_service_log(pip_service *svc, pip_log_level level, const char *cid,
                const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    pip_vlog(level, svc->def->name, cid, fmt, ap);
    va_end(ap);
}

int
pip_service_publish(pip_service *svc, const char *event, const json_t *payload,
                    pip_error *err)
{
    char topic[PIP_METHOD_MAX + 64];
    int len;

    if (event == NULL || event[0] == '\0') {
        return pip_error_set(err, PIP_E_BAD_REQUEST, "INVALID_EVENT",
                             "Service %s tried to publish an event without "
                             "a name.",
                             svc->def->name);
    }
    len = snprintf(topic, sizeof(topic), "%s.%s", svc->def->name, event);
    if (len < 0 || (size_t)len >= sizeof(topic)) {
        return pip_error_set(err, PIP_E_BAD_REQUEST, "INVALID_EVENT",
                             "Event name '%.64s...' of service %s is too "
                             "long.",
                             event, svc->def->name);
    }
    return pip__publisher_send(&svc->node->pub, topic, payload, err);
}

/* Configuration */

const char *
pip_service_config(pip_service *svc, const char *key)
{
    const pip_config_key *entry = svc->def->config;
    json_t *settings = svc->node->opt.settings;
    char full[256];
    int len;

    len = snprintf(full, sizeof(full), "%s.%s", svc->def->name, key);
    if (settings != NULL && len > 0 && (size_t)len < sizeof(full)) {
        const char *value = json_string_value(json_object_get(settings, full));

        if (value != NULL) {
            return value;
        }
    }
    for (; entry != NULL && entry->key != NULL; entry++) {
        if (strcmp(entry->key, key) == 0) {
            return entry->default_value;
        }
    }
    return NULL;
}

/*
 * Logs that the value of key did not parse as the expected type, once per
 * key and service, because services read some settings on every call.
 */
static void
config_warn_fallback(pip_service *svc, const char *key, const char *text,
                     const char *expected, const char *fallback)
{
    bool first;

    pthread_mutex_lock(&svc->config_mtx);
    first = json_object_get(svc->config_warned, key) == NULL;
    if (first) {
        json_object_set_new(svc->config_warned, key, json_true());
    }
    pthread_mutex_unlock(&svc->config_mtx);
    if (first) {
        pip_log(PIP_LOG_WARN, svc->def->name, NULL,
                "invalid setting %s.%s='%.100s': expected %s; using %s",
                svc->def->name, key, text, expected, fallback);
    }
}

int64_t
pip_service_config_int(pip_service *svc, const char *key, int64_t fallback)
{
    const char *text = pip_service_config(svc, key);
    char shown[32];
    char *end = NULL;
    long long v;

    if (text == NULL) {
        return fallback;
    }
    errno = 0;
    v = strtoll(text, &end, 10);
    if (text[0] == '\0' || isspace((unsigned char)text[0]) || errno != 0 ||
        *end != '\0') {
        snprintf(shown, sizeof(shown), "%lld", (long long)fallback);
        config_warn_fallback(svc, key, text, "an integer", shown);
        return fallback;
    }
    return v;
}

double
pip_service_config_double(pip_service *svc, const char *key, double fallback)
{
    const char *text = pip_service_config(svc, key);
    char shown[32];
    char *end = NULL;
    double v;

    if (text == NULL) {
        return fallback;
    }
    errno = 0;
    v = strtod(text, &end);
    if (text[0] == '\0' || isspace((unsigned char)text[0]) || errno != 0 ||
        *end != '\0') {
        snprintf(shown, sizeof(shown), "%g", fallback);
        config_warn_fallback(svc, key, text, "a number", shown);
        return fallback;
    }
    return v;
}

bool
pip_service_config_bool(pip_service *svc, const char *key, bool fallback)
{
    static const char *const yes[] = {"1", "true", "yes", "on", NULL};
    static const char *const no[] = {"0", "false", "no", "off", NULL};
    const char *text = pip_service_config(svc, key);

    if (text == NULL) {
        return fallback;
    }
    for (int i = 0; yes[i] != NULL; i++) {
        if (strcasecmp(text, yes[i]) == 0) {
            return true;
        }
        if (strcasecmp(text, no[i]) == 0) {
            return false;
        }
    }
    config_warn_fallback(svc, key, text,
                         "true or false (also 1/0, yes/no, on/off)",
                         fallback ? "true" : "false");
    return fallback;
}

/* True when the service's table lists key. */
static bool
config_key_known(const pip_config_key *table, const char *key)
{
    for (; table != NULL && table->key != NULL; table++) {
        if (strcmp(table->key, key) == 0) {
            return true;
        }
    }
    return false;
}

/* Writes the keys of table to out, separated by ", ". */
static void
config_list_keys(const pip_config_key *table, char *out, size_t size)
{
    size_t used = 0;
    int n;

    out[0] = '\0';
    for (; table != NULL && table->key != NULL && used < size; table++) {
        n = snprintf(out + used, size - used, "%s%s", used > 0 ? ", " : "",
                     table->key);
        used += n > 0 ? (size_t)n : 0;
    }
}

/*
 * Warns about each node setting "<service>.<key>" whose key the service
 * does not list, because the service would ignore it without a word
 * (a typo such as counters.options.max_pagesize).
 */
static void
config_check_settings(const pip_service *svc)
{
    const char *service = svc->def->name;
    size_t prefix_len = strlen(service);
    char known[512];
    const char *name;
    json_t *value;

    json_object_foreach(svc->node->opt.settings, name, value) {
        if (strncmp(name, service, prefix_len) != 0 ||
            name[prefix_len] != '.' ||
            config_key_known(svc->def->config, name + prefix_len + 1)) {
            continue;
        }
        config_list_keys(svc->def->config, known, sizeof(known));
        if (known[0] == '\0') {
            pip_log(PIP_LOG_WARN, service, NULL,
                    "unknown setting %s is ignored: service %s has no "
                    "settings",
                    name, service);
        } else {
            pip_log(PIP_LOG_WARN, service, NULL,
                    "unknown setting %s is ignored; the settings of %s are: "
                    "%s",
                    name, service, known);
        }
    }
}

/* Timers */

static void *
timer_main(void *arg)
{
    pip__timer *t = arg;
    int64_t next = pip_mono_ms() + t->period_ms;

    pthread_mutex_lock(&t->mtx);
    while (!t->stop) {
        int64_t now = pip_mono_ms();
        struct timespec ts;

        if (now < next) {
            pip__timespec_after_ms(&ts, next - now);
            pthread_cond_timedwait(&t->cv, &t->mtx, &ts);
            continue; /* recheck stop and the time: wakeups may be early */
        }
        pthread_mutex_unlock(&t->mtx);
        t->fn(t->svc, t->ctx);
        pthread_mutex_lock(&t->mtx);

        /* A run longer than the period skips the ticks it overlapped. */
        next += t->period_ms;
        now = pip_mono_ms();
        if (next <= now) {
            next = now + t->period_ms;
        }
    }
    pthread_mutex_unlock(&t->mtx);
    return NULL;
}

static int
timer_start(pip__timer *t)
{
    int rv = pthread_create(&t->thread, NULL, timer_main, t);

    t->started = rv == 0;
    return rv;
}

static void
timer_free(pip__timer *t)
{
    pthread_cond_destroy(&t->cv);
    pthread_mutex_destroy(&t->mtx);
    free(t);
}

static void
timer_stop(pip__timer *t)
{
    if (t->started) {
        pthread_mutex_lock(&t->mtx);
        t->stop = true;
        pthread_cond_signal(&t->cv);
        pthread_mutex_unlock(&t->mtx);
        pthread_join(t->thread, NULL);
        t->started = false;
    }
}

int
pip_service_every(pip_service *svc, int64_t period_ms, pip_timer_fn fn,
                  void *ctx, pip_error *err)
{
    pip__timer *t;
    int rv = 0;

    if (period_ms <= 0 || fn == NULL) {
        return pip_error_set(err, PIP_E_BAD_REQUEST, "INVALID_TIMER",
                             "Timer of service %s needs a function and a "
                             "period above 0 ms (got %lld ms).",
                             svc->def->name, (long long)period_ms);
    }
    t = calloc(1, sizeof(*t));
    if (t == NULL) {
        return pip_error_set(err, PIP_E_INTERNAL, "OUT_OF_MEMORY",
                             "Out of memory while adding a timer to "
                             "service %s.",
                             svc->def->name);
    }
    t->svc = svc;
    t->period_ms = period_ms;
    t->fn = fn;
    t->ctx = ctx;
    pthread_mutex_init(&t->mtx, NULL);
    pip__cond_init_monotonic(&t->cv);

    pthread_mutex_lock(&svc->timers_mtx);
    if (svc->timers_running) {
        rv = timer_start(t);
    }
    if (rv == 0) {
        t->next = svc->timers;
        svc->timers = t;
    }
    pthread_mutex_unlock(&svc->timers_mtx);

    if (rv != 0) {
        timer_free(t);
        return pip_error_set(err, PIP_E_INTERNAL, "THREAD_FAILED",
                             "Cannot start a timer thread for service %s: "
                             "%s.",
                             svc->def->name, strerror(rv));
    }
    return PIP_OK;
}

void
pip__service_timers_start(pip_service *svc)
{
    pthread_mutex_lock(&svc->timers_mtx);
    svc->timers_running = true;
    for (pip__timer *t = svc->timers; t != NULL; t = t->next) {
        int rv = t->started ? 0 : timer_start(t);

        if (rv != 0) {
            pip_log(PIP_LOG_ERROR, svc->def->name, NULL,
                    "cannot start a timer thread: %s", strerror(rv));
        }
    }
    pthread_mutex_unlock(&svc->timers_mtx);
}

void
pip__service_timers_stop(pip_service *svc)
{
    pip__timer *list;

    /* Join outside the lock: a running timer may add another timer. */
    pthread_mutex_lock(&svc->timers_mtx);
    svc->timers_running = false;
    list = svc->timers;
    svc->timers = NULL;
    pthread_mutex_unlock(&svc->timers_mtx);

    while (list != NULL) {
        pip__timer *next = list->next;

        timer_stop(list);
        timer_free(list);
        list = next;
    }
}

/* Statistics */

static int
stats_bucket(uint64_t us)
{
    int exp;
    int idx;

    if (us < 4) {
        return (int)us;
    }
    exp = 63 - __builtin_clzll(us);
    idx = 4 * (exp - 1) + (int)((us >> (exp - 2)) & 3);
    return idx < PIP__LATENCY_BUCKETS ? idx : PIP__LATENCY_BUCKETS - 1;
}

/* The smallest latency that falls into bucket idx. */
static uint64_t
stats_bucket_floor(int idx)
{
    int exp;

    if (idx < 4) {
        return (uint64_t)idx;
    }
    exp = idx / 4 + 1;
    return (uint64_t)(4 + idx % 4) << (exp - 2);
}

static void
stats_record(pip__cmd_stats *st, uint64_t us, bool failed)
{
    uint64_t max = atomic_load_explicit(&st->max_us, memory_order_relaxed);

    atomic_fetch_add_explicit(&st->calls, 1, memory_order_relaxed);
    if (failed) {
        atomic_fetch_add_explicit(&st->errors, 1, memory_order_relaxed);
    }
    atomic_fetch_add_explicit(&st->total_us, us, memory_order_relaxed);
    atomic_fetch_add_explicit(&st->buckets[stats_bucket(us)], 1,
                              memory_order_relaxed);
    while (us > max && !atomic_compare_exchange_weak_explicit(
                           &st->max_us, &max, us, memory_order_relaxed,
                           memory_order_relaxed)) {
    }
}

/* The latency under which a fraction q of the calls fell, estimated as
 * the middle of its bucket and never above the maximum seen. */
static uint64_t
stats_quantile(const pip__cmd_stats *st, const uint64_t *counts,
               uint64_t total, double q)
{
    uint64_t rank = (uint64_t)(q * (double)total + 0.999999);
    uint64_t seen = 0;
    uint64_t max = atomic_load_explicit(&st->max_us, memory_order_relaxed);

    for (int i = 0; i < PIP__LATENCY_BUCKETS; i++) {
        seen += counts[i];
        if (seen >= rank && counts[i] > 0) {
            uint64_t lo = stats_bucket_floor(i);
            uint64_t hi = i + 1 < PIP__LATENCY_BUCKETS
                              ? stats_bucket_floor(i + 1)
                              : lo * 2;
            uint64_t mid = lo + (hi - lo) / 2;

            return mid < max ? mid : max;
        }
    }
    return max;
}

static json_t *
stats_describe(const pip__cmd_stats *st)
{
    uint64_t counts[PIP__LATENCY_BUCKETS];
    uint64_t total = 0;
    uint64_t calls = atomic_load_explicit(&st->calls, memory_order_relaxed);
    uint64_t sum = atomic_load_explicit(&st->total_us, memory_order_relaxed);

    for (int i = 0; i < PIP__LATENCY_BUCKETS; i++) {
        counts[i] =
            atomic_load_explicit(&st->buckets[i], memory_order_relaxed);
        total += counts[i];
    }
    return json_pack(
        "{s:I, s:I, s:I, s:I, s:I, s:I}", "calls", (json_int_t)calls, "errors",
        (json_int_t)atomic_load_explicit(&st->errors, memory_order_relaxed),
        "avg_us", (json_int_t)(calls > 0 ? sum / calls : 0), "max_us",
        (json_int_t)atomic_load_explicit(&st->max_us, memory_order_relaxed),
        "p50_us",
        (json_int_t)(total > 0 ? stats_quantile(st, counts, total, 0.50) : 0),
        "p99_us",
        (json_int_t)(total > 0 ? stats_quantile(st, counts, total, 0.99) : 0));
}

static const pip_command *
service_command_at(const pip_service *svc, int i)
{
    return i < svc->n_commands ? &svc->def->commands[i]
                               : &svc->builtins[i - svc->n_commands];
}

json_t *
pip__service_statistics(pip_service *svc)
{
    json_t *commands = json_object();
    int total = svc->n_commands + svc->n_builtins;

    if (commands == NULL) {
        return NULL;
    }
    for (int i = 0; i < total; i++) {
        json_t *entry = stats_describe(&svc->stats[i]);

        if (entry == NULL ||
            json_object_set_new(commands, service_command_at(svc, i)->name,
                                entry) != 0) {
            json_decref(commands);
            return NULL;
        }
    }
    return json_pack("{s:s, s:I, s:o}", "service", svc->def->name, "uptime_ms",
                     (json_int_t)(pip_mono_ms() - svc->node->started_ms),
                     "commands", commands);
}

/* Describe */

static json_t *
describe_command(const pip_command *cmd)
{
    json_t *args = pip_schema_describe(cmd->args);

    if (args == NULL) {
        return NULL;
    }
    return json_pack("{s:s, s:s?, s:s?, s:o}", "name", cmd->name, "doc",
                     cmd->doc, "result", cmd->result, "args", args);
}

static json_t *
describe_commands(const pip_service *svc)
{
    json_t *list = json_array();
    int total = svc->n_commands + svc->n_builtins;

    for (int i = 0; list != NULL && i < total; i++) {
        json_t *entry = describe_command(service_command_at(svc, i));

        if (entry == NULL || json_array_append_new(list, entry) != 0) {
            json_decref(list);
            return NULL;
        }
    }
    return list;
}

static json_t *
describe_config(const pip_config_key *key)
{
    json_t *list = json_array();

    for (; list != NULL && key != NULL && key->key != NULL; key++) {
        json_t *entry =
            json_pack("{s:s, s:s?, s:s?}", "key", key->key, "default",
                      key->default_value, "doc", key->doc);

        if (entry == NULL || json_array_append_new(list, entry) != 0) {
            json_decref(list);
            return NULL;
        }
    }
    return list;
}

static json_t *
describe_events(const char *const *events)
{
    json_t *list = json_array();

    for (; list != NULL && events != NULL && *events != NULL; events++) {
        if (json_array_append_new(list, json_string(*events)) != 0) {
            json_decref(list);
            return NULL;
        }
    }
    return list;
}

json_t *
pip__service_describe(pip_service *svc)
{
    const pip_service_def *def = svc->def;
    json_t *commands = describe_commands(svc);
    json_t *config = describe_config(def->config);
    json_t *events = describe_events(def->events);

    if (commands == NULL || config == NULL || events == NULL) {
        json_decref(commands);
        json_decref(config);
        json_decref(events);
        return NULL;
    }
    return json_pack("{s:s, s:s?, s:s?, s:s?, s:o, s:o, s:o}", "name",
                     def->name, "version", def->version, "route", def->route,
                     "doc", def->doc, "commands", commands, "config", config,
                     "events", events);
}

/* Built-in commands of every service */

static int
builtin_out_of_memory(pip_call *call)
{
    return pip_call_fail(call, PIP_E_INTERNAL, "OUT_OF_MEMORY",
                         "Out of memory while building the result of a "
                         "built-in command.");
}

int
pip__builtin_ping(pip_call *call, json_t *args, json_t **result)
{
    (void)call;
    (void)args;
    *result = NULL;
    return PIP_OK;
}

static int
builtin_describe(pip_call *call, json_t *args, json_t **result)
{
    (void)args;
    *result = pip__service_describe(call->svc);
    return *result != NULL ? PIP_OK : builtin_out_of_memory(call);
}

static int
builtin_health(pip_call *call, json_t *args, json_t **result)
{
    (void)args;
    *result =
        json_pack("{s:s, s:I, s:s}", "status", "ok", "uptime_ms",
                  (json_int_t)(pip_mono_ms() - call->svc->node->started_ms),
                  "service", call->svc->def->name);
    return *result != NULL ? PIP_OK : builtin_out_of_memory(call);
}

static int
builtin_statistics(pip_call *call, json_t *args, json_t **result)
{
    (void)args;
    *result = pip__service_statistics(call->svc);
    return *result != NULL ? PIP_OK : builtin_out_of_memory(call);
}

static const pip_command service_builtins[] = {
    {"ping", pip__builtin_ping, NULL, "nil",
     "Does nothing; measures the round trip."},
    {"describe", builtin_describe, NULL,
     "name, version, route, doc, commands, config, events",
     "Lists the commands with their argument schemas."},
    {"health", builtin_health, NULL, "{status, uptime_ms, service}",
     "Reports that the service runs."},
    {"statistics", builtin_statistics, NULL,
     "{service, uptime_ms, commands: {name: {calls, errors, avg_us, "
     "max_us, p50_us, p99_us}}}",
     "Counts and times the calls of each command since start."},
    {NULL, NULL, NULL, NULL, NULL},
};

/* Lifecycle */

static int
service_count(const pip_command *table)
{
    int n = 0;

    while (table != NULL && table[n].name != NULL) {
        n++;
    }
    return n;
}

static bool
service_name_valid(const char *name)
{
    if (name == NULL || name[0] == '\0' || strlen(name) >= 64) {
        return false;
    }
    for (const char *c = name; *c != '\0'; c++) {
        if (!islower((unsigned char)*c) && !isdigit((unsigned char)*c) &&
            *c != '_') {
            return false;
        }
    }
    return true;
}

static bool
service_is_builtin(const char *name)
{
    for (const pip_command *b = service_builtins; b->name != NULL; b++) {
        if (strcmp(b->name, name) == 0) {
            return true;
        }
    }
    return false;
}

static int
service_check_command(const pip_service_def *def, int i, pip_error *err)
{
    const pip_command *cmd = &def->commands[i];

    if (!service_name_valid(cmd->name) || cmd->handler == NULL) {
        return pip_error_set(err, PIP_E_BAD_REQUEST, "INVALID_SERVICE",
                             "Command '%.64s' of service %s needs a name of "
                             "[a-z0-9_] and a handler.",
                             cmd->name, def->name);
    }
    if (service_is_builtin(cmd->name)) {
        return pip_error_set(err, PIP_E_CONFLICT, "INVALID_SERVICE",
                             "Command %s of service %s has the name of a "
                             "built-in command.",
                             cmd->name, def->name);
    }
    for (int j = 0; j < i; j++) {
        if (strcmp(def->commands[j].name, cmd->name) == 0) {
            return pip_error_set(err, PIP_E_CONFLICT, "INVALID_SERVICE",
                                 "Service %s lists command %s twice.",
                                 def->name, cmd->name);
        }
    }
    return PIP_OK;
}

/* Checks that every read-only name is a command of def. */
static int
service_check_read_only(const pip_service_def *def, pip_error *err)
{
    for (int i = 0; def->read_only != NULL && def->read_only[i] != NULL;
         i++) {
        bool found = false;

        for (int j = 0; def->commands != NULL && def->commands[j].name;
             j++) {
            found = found || strcmp(def->commands[j].name,
                                    def->read_only[i]) == 0;
        }
        if (!found) {
            return pip_error_set(err, PIP_E_BAD_REQUEST, "INVALID_SERVICE",
                                 "Service %s lists '%.64s' as a read-only "
                                 "command, but has no command of that name.",
                                 def->name, def->read_only[i]);
        }
    }
    return PIP_OK;
}

int
pip__service_def_check(const pip_service_def *def, pip_error *err)
{
    if (def == NULL || !service_name_valid(def->name)) {
        return pip_error_set(err, PIP_E_BAD_REQUEST, "INVALID_SERVICE",
                             "A service needs a name of 1 to 63 characters "
                             "of [a-z0-9_] (got '%.64s').",
                             def != NULL && def->name ? def->name : "");
    }
    for (int i = 0; def->commands != NULL && def->commands[i].name; i++) {
        int rv = service_check_command(def, i, err);

        if (rv != PIP_OK) {
            return rv;
        }
    }
    return service_check_read_only(def, err);
}

static int
service_find_command(const pip_service *svc, const char *name)
{
    int total = svc->n_commands + svc->n_builtins;

    for (int i = 0; i < total; i++) {
        if (strcmp(service_command_at(svc, i)->name, name) == 0) {
            return i;
        }
    }
    return -1;
}

/* Sets read_only[i] for each command that the definition lists as
 * read-only.  pip__service_def_check() has checked the names. */
static void
service_mark_read_only(pip_service *svc)
{
    const char *const *names = svc->def->read_only;

    for (int i = 0; names != NULL && names[i] != NULL; i++) {
        int index = service_find_command(svc, names[i]);

        if (index >= 0 && index < svc->n_commands) {
            svc->read_only[index] = true;
        }
    }
}

int
pip__service_new(pip_node *node, const pip_service_def *def,
                 const pip_command *builtins, pip_service **out,
                 pip_error *err)
{
    pip_service *svc = calloc(1, sizeof(*svc));
    int total;

    if (svc == NULL) {
        return pip_error_set(err, PIP_E_INTERNAL, "OUT_OF_MEMORY",
                             "Out of memory while adding service %s.",
                             def->name);
    }
    svc->node = node;
    svc->def = def;
    svc->builtins = builtins != NULL ? builtins : service_builtins;
    svc->n_commands = service_count(def->commands);
    svc->n_builtins = service_count(svc->builtins);
    total = svc->n_commands + svc->n_builtins;
    svc->stats = calloc((size_t)total, sizeof(*svc->stats));
    svc->read_only = calloc((size_t)total, sizeof(*svc->read_only));
    if (svc->stats == NULL || svc->read_only == NULL) {
        free(svc->stats);
        free(svc->read_only);
        free(svc);
        return pip_error_set(err, PIP_E_INTERNAL, "OUT_OF_MEMORY",
                             "Out of memory while adding service %s.",
                             def->name);
    }
    service_mark_read_only(svc);
    svc->config_warned = json_object();
    if (svc->config_warned == NULL) {
        free(svc->stats);
        free(svc->read_only);
        free(svc);
        return pip_error_set(err, PIP_E_INTERNAL, "OUT_OF_MEMORY",
                             "Out of memory while adding service %s.",
                             def->name);
    }
    pthread_mutex_init(&svc->timers_mtx, NULL);
    pthread_mutex_init(&svc->config_mtx, NULL);
    config_check_settings(svc);
    *out = svc;
    return PIP_OK;
}

void
pip__service_free(pip_service *svc)
{
    if (svc == NULL) {
        return;
    }
    pip__service_timers_stop(svc);
    pthread_mutex_destroy(&svc->timers_mtx);
    pthread_mutex_destroy(&svc->config_mtx);
    json_decref(svc->config_warned);
    free(svc->stats);
    free(svc->read_only);
    free(svc);
}

/* Dispatch */

bool
pip__dispatch_inline_ok(pip_node *node, const pip_request *req)
{
    pip_service *svc = pip__node_find_service(node, req->service);
    int index;

    if (svc == NULL) {
        return true; /* the reply is an UNKNOWN_SERVICE error */
    }
    index = service_find_command(svc, req->command);
    /* The built-ins come after the service's own commands in the index
     * space; they read only memory, never the store. */
    return index < 0 || index >= svc->n_commands || svc->read_only[index];
}

static int
dispatch_unknown_service(const pip_request *req, pip_error *err)
{
    pip_error_set(err, PIP_E_NOT_FOUND, "UNKNOWN_SERVICE",
                  "No service named %s runs on this node. Call "
                  "node.describe to list the services it hosts.",
                  req->service);
    pip_error_detail(err, "service", json_string(req->service));
    return PIP_E_NOT_FOUND;
}

static int
dispatch_unknown_command(const pip_request *req, pip_error *err)
{
    pip_error_set(err, PIP_E_NOT_FOUND, "UNKNOWN_COMMAND",
                  "Service %s has no command %s. Run `pipcall describe %s` "
                  "to see its commands.",
                  req->service, req->command, req->service);
    pip_error_detail(err, "service", json_string(req->service));
    pip_error_detail(err, "command", json_string(req->command));
    return PIP_E_NOT_FOUND;
}

/* Gives a failed handler's error a category and a code. */
static int
dispatch_handler_failed(const pip_request *req, int rv, pip_error *err)
{
    if (err->category == PIP_OK) {
        err->category = rv > PIP_OK && rv <= PIP_E_UNKNOWN ? (pip_category)rv
                                                           : PIP_E_INTERNAL;
    }
    if (err->code[0] == '\0') {
        snprintf(err->code, sizeof(err->code), "EXEC_FAILED");
    }
    if (err->message[0] == '\0') {
        snprintf(err->message, sizeof(err->message),
                 "Command %s failed without an error message.", req->method);
    }
    return err->category;
}

static int
dispatch_run(pip_service *svc, const pip_command *cmd, pip_request *req,
             int64_t received_ms, const pip_peer *caller, json_t **result,
             pip_error *err)
{
    pip_call call = {.svc = svc, .req = req, .caller = caller, .err = err};
    int rv;

    if (req->meta.timeout_ms > 0) {
        int64_t waited_ms = pip_mono_ms() - received_ms;

        call.deadline_ms = received_ms + (int64_t)req->meta.timeout_ms;
        if (waited_ms >= (int64_t)req->meta.timeout_ms) {
            return pip_error_set(err, PIP_E_TIMEOUT, "TIMEOUT",
                                 "Call to %s timed out after %lld ms in the "
                                 "queue, before its handler started "
                                 "(timeout_ms %u).",
                                 req->method, (long long)waited_ms,
                                 req->meta.timeout_ms);
        }
    }

    rv = pip_schema_validate(cmd->args,
                             req->args, err);
    if (rv != PIP_OK) {
        return rv;
    }

    rv = cmd->handler(&call, req->args, result);
    if (rv != PIP_OK) {
        json_decref(*result);
        *result = NULL;
        return dispatch_handler_failed(req, rv, err);
    }
    /* A handler may have recovered from an error it was given. */
    pip_error_fini(err);
    return PIP_OK;
}

static void
dispatch_log_failure(const pip_request *req, const pip_peer *caller,
                     const pip_error *err)
{
    char label[PIP_SEAL_NAME_MAX + 1];
    /* Caller mistakes are counted in statistics; only faults of the node
     * itself are worth a log line each. */
    pip_log_level level = err->category == PIP_E_INTERNAL ||
                                  err->category == PIP_E_UNKNOWN ||
                                  err->category == PIP_E_INVALID_STATE
                              ? PIP_LOG_ERROR
                              : PIP_LOG_DEBUG;

    if (pip_log_enabled(level)) {
        pip_log(level, req->service, req->meta.correlation_id,
                "%s from %s failed: %s %s: %s", req->method,
                pip_peer_label(caller, label, sizeof(label)),
                pip_category_name(err->category), err->code, err->message);
    }
}

static int
dispatch_finish(const pip_request *req, const pip_peer *caller, int rv,
                pip_error *err)
{
    if (rv != PIP_OK && err->correlation_id[0] == '\0') {
        snprintf(err->correlation_id, sizeof(err->correlation_id), "%s",
                 req->meta.correlation_id);
    }
    if (rv != PIP_OK) {
        dispatch_log_failure(req, caller, err);
    }
    return rv;
}

int
pip__dispatch(pip_node *node, pip_request *req, int64_t received_ms,
              const pip_peer *caller, json_t **result, pip_error *err)
{
    pip_service *svc;
    int64_t start_us;
    int index;
    int rv;

    *result = NULL;
    svc = pip__node_find_service(node, req->service);
    if (svc == NULL) {
        return dispatch_finish(req, caller, dispatch_unknown_service(req, err),
                               err);
    }
    index = service_find_command(svc, req->command);
    if (index < 0) {
        return dispatch_finish(req, caller, dispatch_unknown_command(req, err),
                               err);
    }

    start_us = pip_mono_us();
    rv = dispatch_run(svc, service_command_at(svc, index), req, received_ms,
                      caller, result, err);
    if (pip__store_would_block()) {
        /* Not counted: the server discards this run and runs the call
         * again on a worker. */
        return rv;
    }
    stats_record(&svc->stats[index], (uint64_t)(pip_mono_us() - start_us),
                 rv != PIP_OK);
    return dispatch_finish(req, caller, rv, err);
}
