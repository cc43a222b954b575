/*
 * The registration thread: registers one instance with discovery, renews
 * it every third of its lease, and registers it again whenever discovery
 * forgot it or could not be reached.
 *
 * After the first registration the instance keeps the instance_id that
 * discovery gave it, so registering again after an outage replaces the
 * old entry instead of adding a second one.
 */
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pip/client.h"
#include "pip/discovery.h"
#include "pip/log.h"
#include "pip/time.h"

/* Lease assumed until discovery grants one; discovery's default. */
#define REGISTRATION_DEFAULT_LEASE_MS 10000
/* Maximum wait between two attempts while discovery is unreachable. */
#define REGISTRATION_MAX_RETRY_MS 1000
/* Bounds of the timeout of register and renew calls. */
#define REGISTRATION_MIN_CALL_MS 500
#define REGISTRATION_MAX_CALL_MS 2000
/* Timeout of the deregister call made on stop. */
#define REGISTRATION_DEREGISTER_MS 1000

struct pip_registration {
    pip_client *client;
    char *discovery_url;
    json_t *instance; /* sent by register; gains instance_id */
    const char *name; /* points into instance, for logs */
    int64_t lease_ms; /* granted by discovery */
    bool registered;  /* the last register or renew succeeded */
    int failures;     /* failed attempts since the last success */

    pthread_t thread;
    pthread_mutex_t lock; /* guards stopping */
    pthread_cond_t wake;
    bool stopping;
};

static uint32_t
registration_call_timeout_ms(const pip_registration *reg)
{
    int64_t timeout_ms = reg->lease_ms / 3;

    if (timeout_ms < REGISTRATION_MIN_CALL_MS) {
        return REGISTRATION_MIN_CALL_MS;
    }
    if (timeout_ms > REGISTRATION_MAX_CALL_MS) {
        return REGISTRATION_MAX_CALL_MS;
    }
    return (uint32_t)timeout_ms;
}

static int64_t
registration_retry_ms(const pip_registration *reg)
{
    int64_t retry_ms = reg->lease_ms / 3;

    return retry_ms < REGISTRATION_MAX_RETRY_MS ? retry_ms
                                                : REGISTRATION_MAX_RETRY_MS;
}

static int
registration_call(pip_registration *reg, const char *method, json_t *args,
                  uint32_t timeout_ms, json_t **result, pip_error *err)
{
    pip_meta meta;
    int rv;

    memset(&meta, 0, sizeof(meta));
    meta.timeout_ms = timeout_ms;
    rv = pip_client_call(reg->client, method, args, &meta, result, err);
    json_decref(args);
    return rv;
}

/* Logs the first failure of an outage; later ones until a success are
 * only counted, so an outage does not flood the log. */
static void
registration_failed(pip_registration *reg, const char *action,
                    const pip_error *err)
{
    reg->registered = false;
    reg->failures++;
    if (reg->failures == 1) {
        pip_log(PIP_LOG_WARN, reg->name, NULL,
                "failed to %s with discovery at %s: %s (%s); retrying "
                "every %lld ms",
                action, reg->discovery_url, err->message, err->code,
                (long long)registration_retry_ms(reg));
    }
}

static void
registration_succeeded(pip_registration *reg, const char *action)
{
    if (reg->failures > 0) {
        pip_log(PIP_LOG_INFO, reg->name, NULL,
                "%s with discovery at %s succeeded after %d failed "
                "attempts",
                action, reg->discovery_url, reg->failures);
    }
    reg->failures = 0;
    reg->registered = true;
}

/* Registers the instance; returns the wait before the next step. */
static int64_t
registration_register(pip_registration *reg)
{
    json_t *granted = NULL;
    json_t *id;
    pip_error err;
    int64_t lease_ms;

    pip_error_init(&err);
    if (registration_call(reg, "discovery.register",
                          json_pack("{s:O}", "instance", reg->instance),
                          registration_call_timeout_ms(reg), &granted,
                          &err) != PIP_OK) {
        registration_failed(reg, "register", &err);
        pip_error_fini(&err);
        return registration_retry_ms(reg);
    }

    id = json_object_get(granted, "instance_id");
    lease_ms = json_integer_value(json_object_get(granted, "lease_ms"));
    if (json_is_string(id)) {
        json_object_set(reg->instance, "instance_id", id);
    }
    if (lease_ms > 0) {
        reg->lease_ms = lease_ms;
    }
    if (reg->failures == 0) {
        pip_log(PIP_LOG_INFO, reg->name, NULL,
                "registered instance %s with discovery at %s, lease %lld ms",
                json_string_value(id), reg->discovery_url,
                (long long)reg->lease_ms);
    }
    registration_succeeded(reg, "register");
    json_decref(granted);
    pip_error_fini(&err);
    return reg->lease_ms / 3;
}

/* Renews the lease; returns the wait before the next step. */
static int64_t
registration_renew(pip_registration *reg)
{
    json_t *id = json_object_get(reg->instance, "instance_id");
    json_t *renewed = NULL;
    pip_error err;
    int rv;

    pip_error_init(&err);
    rv = registration_call(reg, "discovery.renew",
                           json_pack("{s:O}", "instance_id", id),
                           registration_call_timeout_ms(reg), &renewed, &err);
    json_decref(renewed);

    if (rv == PIP_E_NOT_FOUND && strcmp(err.code, "INSTANCE_NOT_FOUND") == 0) {
        pip_log(PIP_LOG_INFO, reg->name, NULL,
                "discovery at %s no longer holds instance %s; registering "
                "it again",
                reg->discovery_url, json_string_value(id));
        reg->registered = false;
        pip_error_fini(&err);
        return 0;
    }
    if (rv != PIP_OK) {
        registration_failed(reg, "renew the lease", &err);
        pip_error_fini(&err);
        return registration_retry_ms(reg);
    }
    registration_succeeded(reg, "renew the lease");
    pip_error_fini(&err);
    return reg->lease_ms / 3;
}

/* Sleeps up to wait_ms; returns true when the thread is asked to stop. */
static bool
registration_sleep(pip_registration *reg, int64_t wait_ms)
{
    struct timespec at;
    bool stopping;

    clock_gettime(CLOCK_MONOTONIC, &at);
    at.tv_sec += wait_ms / 1000;
    at.tv_nsec += (wait_ms % 1000) * 1000000L;
    if (at.tv_nsec >= 1000000000L) {
        at.tv_sec++;
        at.tv_nsec -= 1000000000L;
    }

    pthread_mutex_lock(&reg->lock);
    while (!reg->stopping &&
           pthread_cond_timedwait(&reg->wake, &reg->lock, &at) == 0) {
    }
    stopping = reg->stopping;
    pthread_mutex_unlock(&reg->lock);
    return stopping;
}

static void *
registration_run(void *arg)
{
    pip_registration *reg = arg;
    int64_t wait_ms = 0;

    while (!registration_sleep(reg, wait_ms)) {
        wait_ms = reg->registered ? registration_renew(reg)
                                  : registration_register(reg);
    }
    return NULL;
}

static void
registration_deregister(pip_registration *reg)
{
    json_t *id = json_object_get(reg->instance, "instance_id");
    json_t *result = NULL;
    pip_error err;

    if (id == NULL) {
        return; /* never registered */
    }
    pip_error_init(&err);
    if (registration_call(
            reg, "discovery.deregister", json_pack("{s:O}", "instance_id", id),
            REGISTRATION_DEREGISTER_MS, &result, &err) != PIP_OK) {
        pip_log(PIP_LOG_WARN, reg->name, NULL,
                "failed to deregister instance %s from discovery at %s: "
                "%s; discovery drops it when its lease runs out",
                json_string_value(id), reg->discovery_url, err.message);
    }
    json_decref(result);
    pip_error_fini(&err);
}

/* ---- lifecycle ---- */

static int
registration_check(const char *discovery_url, const json_t *instance,
                   pip_error *err)
{
    json_t *rpc = json_object_get(instance, "rpc");

    if (discovery_url == NULL || discovery_url[0] == '\0') {
        return pip_error_set(err, PIP_E_BAD_REQUEST, "INVALID_ARGUMENT",
                             "The discovery URL is required");
    }
    if (!json_is_object(instance) ||
        !json_is_string(json_object_get(instance, "name")) ||
        !json_is_array(rpc) || json_array_size(rpc) == 0) {
        return pip_error_set(err, PIP_E_BAD_REQUEST, "INVALID_ARGUMENT",
                             "The instance must be an object with a name "
                             "and at least one rpc URL");
    }
    return PIP_OK;
}

static void
registration_free(pip_registration *reg)
{
    pip_client_free(reg->client);
    json_decref(reg->instance);
    free(reg->discovery_url);
    pthread_cond_destroy(&reg->wake);
    pthread_mutex_destroy(&reg->lock);
    free(reg);
}

static int
registration_init(pip_registration *reg, const char *discovery_url,
                  const json_t *instance, pip_error *err)
{
    pip_client_options opt;
    json_int_t lease_ms;

    reg->instance = json_deep_copy(instance);
    reg->discovery_url = strdup(discovery_url);
    if (reg->instance == NULL || reg->discovery_url == NULL) {
        return pip_error_set(err, PIP_E_INTERNAL, "OUT_OF_MEMORY",
                             "Failed to copy the instance");
    }
    reg->name = json_string_value(json_object_get(reg->instance, "name"));
    lease_ms = json_integer_value(json_object_get(instance, "lease_ms"));
    reg->lease_ms = lease_ms > 0 ? lease_ms : REGISTRATION_DEFAULT_LEASE_MS;

    pip_client_options_init(&opt);
    opt.endpoint = discovery_url;
    return pip_client_new(&opt, &reg->client, err);
}

static int
registration_sync_init(pip_registration *reg, pip_error *err)
{
    pthread_condattr_t attr;
    int rv;

    rv = pthread_mutex_init(&reg->lock, NULL);
    if (rv != 0) {
        return pip_error_set(err, PIP_E_INTERNAL, "OUT_OF_MEMORY",
                             "Failed to create a mutex: %s", strerror(rv));
    }
    rv = pthread_condattr_init(&attr);
    if (rv == 0) {
        rv = pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
        if (rv == 0) {
            rv = pthread_cond_init(&reg->wake, &attr);
        }
        pthread_condattr_destroy(&attr);
    }
    if (rv != 0) {
        pthread_mutex_destroy(&reg->lock);
        return pip_error_set(err, PIP_E_INTERNAL, "OUT_OF_MEMORY",
                             "Failed to create a condition variable: %s",
                             strerror(rv));
    }
    return PIP_OK;
}

int
pip_registration_start(const char *discovery_url, const json_t *instance,
                       pip_registration **out, pip_error *err)
{
    pip_registration *reg;
    int rv;

    if (out == NULL) {
        return pip_error_set(err, PIP_E_BAD_REQUEST, "INVALID_ARGUMENT",
                             "The output is required");
    }
    *out = NULL;
    rv = registration_check(discovery_url, instance, err);
    if (rv != PIP_OK) {
        return rv;
    }
    reg = calloc(1, sizeof(*reg));
    if (reg == NULL) {
        return pip_error_set(err, PIP_E_INTERNAL, "OUT_OF_MEMORY",
                             "Failed to allocate a registration");
    }
    rv = registration_sync_init(reg, err);
    if (rv != PIP_OK) {
        free(reg);
        return rv;
    }

    rv = registration_init(reg, discovery_url, instance, err);
    if (rv == PIP_OK) {
        rv = pthread_create(&reg->thread, NULL, registration_run, reg);
        if (rv != 0) {
            rv = pip_error_set(err, PIP_E_INTERNAL, "THREAD_FAILED",
                               "Failed to start the registration thread: "
                               "%s",
                               strerror(rv));
        }
    }
    if (rv != PIP_OK) {
        registration_free(reg);
        return rv;
    }
    *out = reg;
    return PIP_OK;
}

void
pip_registration_stop(pip_registration *reg)
{
    if (reg == NULL) {
        return;
    }
    pthread_mutex_lock(&reg->lock);
    reg->stopping = true;
    pthread_cond_signal(&reg->wake);
    pthread_mutex_unlock(&reg->lock);
    pthread_join(reg->thread, NULL);

    registration_deregister(reg);
    registration_free(reg);
}
