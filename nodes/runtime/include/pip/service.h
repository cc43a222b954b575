/*
 * How a service is written: a static table of commands (name, argument
 * schema, result, handler, one-line doc) plus open and close hooks.  The
 * node runtime validates every call against the table before the handler
 * runs, counts and times it, and serves the built-in commands that every
 * service has:
 *
 *   <service>.ping        no-op, returns nil (used by the bench harness)
 *   <service>.describe    the command table with argument schemas
 *   <service>.health      {"status": "ok", "uptime_ms": ...}
 *   <service>.statistics  calls, errors and latency per command
 */
#ifndef PIP_SERVICE_H
#define PIP_SERVICE_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "pip/error.h"
#include "pip/log.h"
#include "pip/schema.h"
#include "pip/seal.h"
#include "pip/store.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct pip_service pip_service;
typedef struct pip_call pip_call;

/*
 * Handles one call.  args is the validated argument object (owned by the
 * runtime; the handler may modify it).  On success the handler returns
 * PIP_OK and sets *result to a new reference, or leaves it NULL for a nil
 * result.  On failure it returns the category set by pip_call_fail() or
 * by a libpip function that it passed pip_call_error(call) to.
 * Handlers run on the node's worker threads and may block.
 */
typedef int (*pip_handler_fn)(pip_call *call, json_t *args,
                              json_t **result);

typedef struct pip_command {
    const char *name;         /* "read_counters"; NULL ends a table */
    pip_handler_fn handler;
    const pip_field *args;    /* schema ended by a NULL name; NULL: none */
    const char *result;       /* what the result is, for describe */
    const char *doc;          /* one line */
} pip_command;

/* A configuration key of a service, with its default, for describe. */
typedef struct pip_config_key {
    const char *key;           /* "options.max_page_size"; NULL ends */
    const char *default_value;
    const char *doc;
} pip_config_key;

typedef struct pip_service_def {
    const char *name;     /* "counters": the service part of methods */
    const char *version;  /* "1.0" */
    const char *route;    /* HTTP route, "v1/counters" */
    const char *doc;      /* one line */
    const pip_command *commands;
    const pip_config_key *config;  /* NULL-ended, or NULL */
    const char *const *events;     /* event names published, or NULL */
    bool uses_store;      /* the node opens <data>/<name>/ for it */
    /*
     * Names of commands whose handlers change nothing and read the store
     * only with pip_coll_get(); NULL-ended, or NULL.  The runtime may run
     * them on an NNG I/O thread with reads from memory only, which skips
     * the hand-off to a worker.  When a record is not in memory, it
     * discards that run and runs the handler again on a worker, so such a
     * handler must be safe to run twice.
     */
    const char *const *read_only;
    int (*open)(pip_service *svc, pip_error *err);  /* may be NULL */
    void (*close)(pip_service *svc);                /* may be NULL */
} pip_service_def;

const pip_service_def *pip_service_definition(const pip_service *svc);
/* The service's store, or NULL when uses_store is false. */
pip_store *pip_service_store(pip_service *svc);
void *pip_service_state(pip_service *svc);
/* Sets the state.  A state from pip_service_new_state() that it replaces
 * is freed, and the service frees a state it sets here itself. */
void pip_service_set_state(pip_service *svc, void *state);
/*
 * Allocates size zeroed bytes as the service's state, for its open hook.
 * The runtime frees them after the close hook, or when the open hook
 * fails.  So a service whose state is plain memory needs no close hook,
 * and must not free the state.  Returns NULL, with err set, when memory
 * runs out.
 */
void *pip_service_new_state(pip_service *svc, size_t size, pip_error *err);

/*
 * Reads a configuration value: the node's setting "<service>.<key>" when
 * given (flag --set or config file), else the default from the table.
 * Returns NULL when neither exists.  The typed forms return fallback when
 * the value is missing or does not parse as that type, and log a warning
 * naming the key and the value the first time a key does not parse.
 */
const char *pip_service_config(pip_service *svc, const char *key);
int64_t pip_service_config_int(pip_service *svc, const char *key,
                               int64_t fallback);
double pip_service_config_double(pip_service *svc, const char *key,
                                 double fallback);
bool pip_service_config_bool(pip_service *svc, const char *key,
                             bool fallback);

/* Publishes payload on topic "<service>.<event>".  Never blocks. */
int pip_service_publish(pip_service *svc, const char *event,
                        const json_t *payload, pip_error *err);

/* Logs with node=<service>. */
void pip_service_log(pip_service *svc, pip_log_level level, const char *cid,
                     const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/*
 * Runs fn every period_ms on a runtime thread, from the node's start until
 * just before the service's close hook.  Runs never overlap.
 */
typedef void (*pip_timer_fn)(pip_service *svc, void *ctx);
int pip_service_every(pip_service *svc, int64_t period_ms, pip_timer_fn fn,
                      void *ctx, pip_error *err);

pip_service *pip_call_service(pip_call *call);
/* Returns the state of the call's service. */
void *pip_call_state(pip_call *call);
/* The correlation id of the call; "" when the caller sent none. */
const char *pip_call_correlation_id(const pip_call *call);
/*
 * Who signed the call (see pip/seal.h): its public key, and its name when
 * the node's trusted list has it.  NULL when the call was not signed or
 * came from the same process.  For audit logs.
 */
const pip_peer *pip_call_caller(const pip_call *call);
/* Monotonic deadline in ms (pip_mono_ms), or 0 when there is none. */
int64_t pip_call_deadline_ms(const pip_call *call);
/* The error that the handler fills; pass it to libpip functions. */
pip_error *pip_call_error(pip_call *call);
/* Sets the call's error and returns category. */
int pip_call_fail(pip_call *call, pip_category category, const char *code,
                  const char *fmt, ...) __attribute__((format(printf, 4, 5)));

#ifdef __cplusplus
}
#endif
#endif
