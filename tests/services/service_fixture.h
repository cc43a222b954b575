/*
 * A real node in the test process for the service tests: a data folder
 * made with mkdtemp, RPC and pub sockets on loopback ports picked by the
 * kernel, and calls made with pip_node_call.  Included by one test file
 * each, so the helpers are static inline.
 */
#ifndef SERVICE_FIXTURE_H
#define SERVICE_FIXTURE_H

#include "test_util.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <ftw.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "pip/node.h"
#include "pip/time.h"
#include "services.h"

/* The maximum number of threads that call_concurrently starts. */
#define FIXTURE_MAX_THREADS 16

typedef struct fixture {
    char dir[PATH_MAX];
    const pip_service_def *def;
    json_t *settings; /* "service.key" -> string, or NULL */
    pip_node_options options;
    pip_node *node;
} fixture;

static inline void
fixture_sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

    nanosleep(&ts, NULL);
}

/* Starts a node hosting def on the fixture's data folder. */
static inline void
fixture_node_start(fixture *f)
{
    pip_error err;
    int rv;

    pip_error_init(&err);
    pip_node_options_init(&f->options);
    f->options.name = "services-test";
    f->options.listen[0] = "tcp://127.0.0.1:0";
    f->options.listen[1] = NULL;
    f->options.pub_listen = "tcp://127.0.0.1:0";
    f->options.data_dir = f->dir;
    if (f->settings != NULL) {
        if (f->options.settings == NULL) {
            f->options.settings = json_object();
        }
        assert_int_equal(json_object_update(f->options.settings, f->settings),
                         0);
    }

    rv = pip_node_new(&f->options, &f->node, &err);
    if (rv == PIP_OK) {
        rv = pip_node_add(f->node, f->def, &err);
    }
    if (rv == PIP_OK) {
        rv = pip_node_start(f->node, &err);
    }
    if (rv != PIP_OK) {
        fail_msg("node start failed: %s %s", err.code, err.message);
    }
    pip_error_fini(&err);
}

static inline void
fixture_node_stop(fixture *f)
{
    if (f->node != NULL) {
        pip_node_free(f->node);
        f->node = NULL;
        pip_node_options_fini(&f->options);
    }
}

/* Stops the node and starts a new one on the same data folder. */
static inline void
fixture_node_restart(fixture *f)
{
    fixture_node_stop(f);
    fixture_node_start(f);
}

/* Allocates a fixture for def with node settings (stolen, or NULL). */
static inline fixture *
fixture_new(const pip_service_def *def, json_t *settings)
{
    fixture *f = calloc(1, sizeof(*f));

    assert_non_null(f);
    snprintf(f->dir, sizeof(f->dir), "%s/pip-services-XXXXXX",
             getenv("TMPDIR") != NULL ? getenv("TMPDIR") : "/tmp");
    assert_non_null(mkdtemp(f->dir));
    f->def = def;
    f->settings = settings;
    fixture_node_start(f);
    return f;
}

static inline void
fixture_free(fixture *f)
{
    fixture_node_stop(f);
    test_util_remove_tree(f->dir);
    json_decref(f->settings);
    free(f);
}

/* The cmocka teardown for a fixture that fixture_new made. */
static inline int
fixture_teardown(void **state)
{
    fixture_free(*state);
    return 0;
}

/* Calls method with args (stolen, NULL for none) and returns the category
 * and fills err and *result. */
static inline int
fixture_call(fixture *f, const char *method, json_t *args, json_t **result,
             pip_error *err)
{
    int rv;

    *result = NULL;
    if (args == NULL) {
        args = json_object();
    }
    rv = pip_node_call(f->node, method, args, NULL, result, err);
    json_decref(args);
    return rv;
}

/* Calls method and fails the test unless it succeeds.  Returns the result
 * (a new reference, or NULL for nil). */
static inline json_t *
call_ok(fixture *f, const char *method, json_t *args)
{
    pip_error err;
    json_t *result;

    pip_error_init(&err);
    if (fixture_call(f, method, args, &result, &err) != PIP_OK) {
        fail_msg("%s failed: %s %s", method, err.code, err.message);
    }
    pip_error_fini(&err);
    return result;
}

/* Calls method, expects it to fail with INVALID_DATA, and checks that the
 * error names the argument path. */
static inline void
call_invalid(fixture *f, const char *method, json_t *args,
             const char *argument)
{
    pip_error err;
    json_t *result;
    int rv;

    pip_error_init(&err);
    rv = fixture_call(f, method, args, &result, &err);
    assert_int_equal(rv, PIP_E_BAD_REQUEST);
    assert_null(result);
    assert_string_equal(err.code, "INVALID_DATA");
    if (strstr(err.message, argument) == NULL) {
        fail_msg("error message '%s' does not name %s", err.message, argument);
    }
    assert_string_equal(
        json_string_value(json_object_get(err.details, "argument")), argument);
    pip_error_fini(&err);
}

/* json_pack that fails the test on a bad format. */
static inline json_t *
pack(const char *fmt, ...)
{
    json_error_t error;
    va_list ap;
    json_t *value;

    va_start(ap, fmt);
    value = json_vpack_ex(&error, 0, fmt, ap);
    va_end(ap);
    if (value == NULL) {
        fail_msg("json_pack '%s': %s", fmt, error.text);
    }
    return value;
}

/* The "data" array of a page result. */
static inline json_t *
page_data(const json_t *page)
{
    json_t *data = json_object_get(page, "data");

    assert_true(json_is_array(data));
    return data;
}

static inline size_t
page_size(const json_t *page)
{
    return json_array_size(page_data(page));
}

/* Calls a list command such as counters.read_counters with {"filter":
 * filter} (stolen, NULL for an empty filter) and returns the page. */
static inline json_t *
read_page(fixture *f, const char *method, json_t *filter)
{
    return call_ok(
        f, method,
        pack("{s:o}", "filter", filter != NULL ? filter : json_object()));
}

/* The number of items on the page that read_page returns. */
static inline size_t
count_page(fixture *f, const char *method, json_t *filter)
{
    json_t *page = read_page(f, method, filter);
    size_t n = page_size(page);

    json_decref(page);
    return n;
}

/* One thread of call_concurrently. */
typedef struct fixture_caller {
    fixture *f;
    const char *method;
    json_t *args;
    int calls;
    int failures;
} fixture_caller;

static inline void *
fixture_caller_main(void *arg)
{
    fixture_caller *c = arg;

    for (int i = 0; i < c->calls; i++) {
        pip_error err;
        json_t *result;

        pip_error_init(&err);
        if (fixture_call(c->f, c->method, json_deep_copy(c->args), &result,
                         &err) != PIP_OK) {
            c->failures++;
        }
        json_decref(result);
        pip_error_fini(&err);
    }
    return NULL;
}

/*
 * Calls method with a copy of args (stolen) from `threads` threads at
 * once, calls_per_thread times in each, and returns how many calls failed.
 */
static inline int
call_concurrently(fixture *f, const char *method, json_t *args, int threads,
                  int calls_per_thread)
{
    pthread_t ids[FIXTURE_MAX_THREADS];
    fixture_caller callers[FIXTURE_MAX_THREADS];
    int failures = 0;

    assert_in_range(threads, 1, FIXTURE_MAX_THREADS);
    for (int i = 0; i < threads; i++) {
        /* A copy per thread, so that no two threads read one object. */
        callers[i] = (fixture_caller){f, method, json_deep_copy(args),
                                      calls_per_thread, 0};
        assert_int_equal(
            pthread_create(&ids[i], NULL, fixture_caller_main, &callers[i]),
            0);
    }
    for (int i = 0; i < threads; i++) {
        pthread_join(ids[i], NULL);
        failures += callers[i].failures;
        json_decref(callers[i].args);
    }
    json_decref(args);
    return failures;
}

/* The entry of list whose field key equals value, or NULL. */
static inline json_t *
find_by(const json_t *list, const char *key, const char *value)
{
    size_t i;
    json_t *entry;

    json_array_foreach(list, i, entry)
    {
        const char *text = json_string_value(json_object_get(entry, key));

        if (text != NULL && strcmp(text, value) == 0) {
            return entry;
        }
    }
    return NULL;
}

/*
 * Checks the service's describe result: version 1.0, the route, every
 * command of commands (NULL-ended) with a doc and a result description,
 * and the default of one config key.
 */
static inline void
check_describe(fixture *f, const char *route, const char *const *commands,
               const char *config_key, const char *config_default)
{
    char method[64];
    json_t *described;
    json_t *config;

    snprintf(method, sizeof(method), "%s.describe", f->def->name);
    described = call_ok(f, method, NULL);
    assert_string_equal(
        json_string_value(json_object_get(described, "version")), "1.0");
    assert_string_equal(json_string_value(json_object_get(described, "route")),
                        route);
    for (size_t i = 0; commands[i] != NULL; i++) {
        json_t *command = find_by(json_object_get(described, "commands"),
                                  "name", commands[i]);

        if (command == NULL) {
            fail_msg("describe does not list %s", commands[i]);
        }
        assert_true(json_is_string(json_object_get(command, "doc")));
        assert_true(json_is_string(json_object_get(command, "result")));
        assert_true(json_is_array(json_object_get(command, "args")));
    }
    config = find_by(json_object_get(described, "config"), "key", config_key);
    assert_non_null(config);
    assert_string_equal(json_string_value(json_object_get(config, "default")),
                        config_default);
    json_decref(described);
}

#endif
