/*
 * Internals shared by the node runtime's options.c, service.c, server.c
 * and node.c.  Not installed; nothing outside nodes/runtime/ includes it.
 *
 * Names: pip__ marks a symbol shared between these files.  The symbols
 * are hidden, so they stay out of libpip's exported ABI.
 */
#ifndef PIP_NODE_INTERNAL_H
#define PIP_NODE_INTERNAL_H

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include <jansson.h>
#include <nng/nng.h>

#include "pip/discovery.h"
#include "pip/node.h"

#define PIP__HIDDEN __attribute__((visibility("hidden")))

/* The name of the node's own service (node.ping, node.describe, ...). */
#define PIP__NODE_SERVICE "node"
#define PIP__MAX_SERVICES 64

/* How long shutdown waits for calls in flight before it gives up. */
#define PIP__DRAIN_TIMEOUT_MS 5000
/* How long closing the RPC socket may take before it is abandoned. */
#define PIP__CLOSE_TIMEOUT_MS 3000

/*
 * Latency histogram: 4 buckets per power of two of microseconds, so a
 * percentile read from it is within about 12% of the true value.  128
 * buckets reach 2^33 us (about 2.4 hours); slower calls land in the last.
 */
#define PIP__LATENCY_BUCKETS 128

/* Counters of one command, updated lock-free by every worker. */
typedef struct pip__cmd_stats {
    atomic_uint_fast64_t calls;
    atomic_uint_fast64_t errors;
    atomic_uint_fast64_t total_us;
    atomic_uint_fast64_t max_us;
    atomic_uint_fast64_t buckets[PIP__LATENCY_BUCKETS];
} pip__cmd_stats;

typedef struct pip__timer pip__timer;

struct pip_service {
    pip_node *node;
    const pip_service_def *def;
    const pip_command *builtins; /* ping, describe, ...; NULL-ended */
    int n_commands;              /* entries of def->commands */
    int n_builtins;
    pip__cmd_stats *stats; /* n_commands + n_builtins entries */
    bool *read_only;       /* the same entries: listed in def->read_only */
    pip_store *store;
    void *state;
    bool owns_state; /* the runtime allocated state, so it frees it */
    bool opened; /* the open hook succeeded */

    pthread_mutex_t timers_mtx;
    pip__timer *timers;
    bool timers_running;

    pthread_mutex_t config_mtx;
    json_t *config_warned; /* keys whose invalid value was logged */
};

/* Frees a state from pip_service_new_state() and clears the state. */
void pip__service_free_state(pip_service *svc);

struct pip_call {
    pip_service *svc;
    const pip_request *req;
    const pip_peer *caller; /* NULL for an unsigned or in-process call */
    int64_t deadline_ms; /* pip_mono_ms() clock; 0 when none */
    pip_error *err;
};

typedef struct pip__server pip__server;

/* The pub socket of a node. */
typedef struct pip__publisher {
    nng_socket sock;
    atomic_bool open; /* read by publishing threads during shutdown */
    pip_keyring *keyring; /* seals events when it has a network key */
    char *url;        /* bound URL, after listening */
} pip__publisher;

typedef enum pip__node_state {
    PIP__NODE_NEW = 0,
    PIP__NODE_RUNNING,
    PIP__NODE_STOPPED,
} pip__node_state;

struct pip_node {
    pip_node_options opt; /* a deep copy owned by the node */
    char *name;           /* for logs: opt.name, or the service names */
    char host[256];
    pip__node_state state;

    pip_service *services[PIP__MAX_SERVICES];
    int n_services;
    pip_service *self; /* the "node" service */

    pip_keyring *keyring;       /* the node's keys, or NULL for plain */
    pip_keyring *owned_keyring; /* loaded from the options' files */
    bool keyring_is_default;    /* installed as the process default */

    pip__server *server;
    pip__publisher pub;
    pip_registration *regs[PIP__MAX_SERVICES];
    int64_t started_ms; /* pip_mono_ms() at start */

    sigset_t signals; /* SIGINT and SIGTERM, blocked at start */
    pthread_mutex_t mtx;
    pthread_cond_t cv;
    bool shutdown_requested;
    bool calls_open;  /* pip_node_call accepts calls */
    int inproc_calls; /* pip_node_call calls in flight */
};

/* options.c */

/* Copies src into dst; every string of dst is owned by dst. */
PIP__HIDDEN int pip__options_copy(pip_node_options *dst,
                                  const pip_node_options *src, pip_error *err);

/* service.c */

PIP__HIDDEN int pip__service_new(pip_node *node, const pip_service_def *def,
                                 const pip_command *builtins,
                                 pip_service **out, pip_error *err);
PIP__HIDDEN void pip__service_free(pip_service *svc);
/* Checks a definition before it is hosted: names, commands, handlers. */
PIP__HIDDEN int pip__service_def_check(const pip_service_def *def,
                                       pip_error *err);
PIP__HIDDEN void pip__service_timers_start(pip_service *svc);
PIP__HIDDEN void pip__service_timers_stop(pip_service *svc);
/* The describe document of a service; a new reference, NULL when out of
 * memory. */
PIP__HIDDEN json_t *pip__service_describe(pip_service *svc);
/* The ping command of every service, the node's own included. */
PIP__HIDDEN int pip__builtin_ping(pip_call *call, json_t *args,
                                  json_t **result);
/* The statistics document of a service; a new reference or NULL. */
PIP__HIDDEN json_t *pip__service_statistics(pip_service *svc);

/*
 * Runs one decoded request: finds the service and the command, checks the
 * deadline (meta.timeout_ms counted from received_ms), validates the
 * arguments, runs the handler, and records the call's statistics.  Works
 * the same for every transport.  On success returns PIP_OK and sets
 * *result (a new reference, or NULL for nil) and leaves err at PIP_OK.
 * On failure returns the category, err carries the code and the request's
 * correlation id, and *result is NULL.  May block in the handler.
 */
PIP__HIDDEN int pip__dispatch(pip_node *node, pip_request *req,
                              int64_t received_ms, const pip_peer *caller,
                              json_t **result, pip_error *err);

/*
 * Whether req may run on a thread that must not block, such as an NNG
 * callback: true when it names a built-in command (ping, describe,
 * health, statistics), which reads only memory, a read-only command of
 * its service, which the caller runs with pip__store_memory_only(), or a
 * service or command that does not exist, which only gets an error
 * reply.  Other handlers may block on their store, so they give false.
 */
PIP__HIDDEN bool pip__dispatch_inline_ok(pip_node *node,
                                         const pip_request *req);

/* node.c */

PIP__HIDDEN pip_service *pip__node_find_service(pip_node *node,
                                                const char *name);
/* Initializes a condition variable that waits on CLOCK_MONOTONIC. */
PIP__HIDDEN int pip__cond_init_monotonic(pthread_cond_t *cv);
/* The CLOCK_MONOTONIC time delay_ms from now, for timed waits. */
PIP__HIDDEN void pip__timespec_after_ms(struct timespec *ts, int64_t delay_ms);

/* server.c: the rep socket and its worker pool */

/*
 * Opens the rep socket, starts the workers and contexts, and listens on
 * every URL of node->opt.listen.  Errors: PIP_E_BAD_REQUEST INVALID_URL,
 * PIP_E_UNAVAILABLE LISTEN_FAILED, PIP_E_INTERNAL for resources.
 */
PIP__HIDDEN int pip__server_start(pip_node *node, pip__server **out,
                                  pip_error *err);
/*
 * Stops receiving, waits up to PIP__DRAIN_TIMEOUT_MS for the replies to
 * calls in flight and joins the workers; the socket stays open.
 */
PIP__HIDDEN void pip__server_quiesce(pip__server *srv);
/*
 * Quiesces srv when that was not done, closes the socket (giving up after
 * PIP__CLOSE_TIMEOUT_MS, see server.c) and frees srv.
 */
PIP__HIDDEN void pip__server_stop(pip__server *srv);
PIP__HIDDEN const char *pip__server_url(const pip__server *srv, int index);

/* server.c: the pub socket */

PIP__HIDDEN int pip__publisher_open(pip__publisher *pub, pip_error *err);
PIP__HIDDEN int pip__publisher_listen(pip__publisher *pub, const char *url,
                                      pip_error *err);
PIP__HIDDEN void pip__publisher_close(pip__publisher *pub);
/* Sends one event without blocking.  Errors: PIP_E_INVALID_STATE when
 * the socket is not open, PIP_E_UNAVAILABLE PUBLISH_FAILED. */
PIP__HIDDEN int pip__publisher_send(pip__publisher *pub, const char *topic,
                                    const json_t *payload, pip_error *err);

#endif
