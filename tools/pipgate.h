/*
 * pipgate: the HTTP gateway.  Shared between its files: pipgate.c (command
 * line and lifecycle), pipgate_http.c (requests, worker pool, replies) and
 * pipgate_routes.c (the route table learned from discovery, and the
 * OpenAPI document built from it).
 */
#ifndef PIPGATE_H
#define PIPGATE_H

#include <jansson.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <nng/nng.h>
#include <nng/supplemental/http/http.h>

#include "pip/client.h"
#include "pip/error.h"

#define PIPGATE_DEFAULT_LISTEN "http://127.0.0.1:8080"
#define PIPGATE_DEFAULT_DISCOVERY "tcp://127.0.0.1:4100"
#define PIPGATE_DEFAULT_MAX_BODY_BYTES 1048576
#define PIPGATE_DEFAULT_MAX_CONCURRENT 64
#define PIPGATE_DEFAULT_WORKERS 8
#define PIPGATE_DEFAULT_TIMEOUT_MS 10000
#define PIPGATE_TOKEN_MAX 1024
#define PIPGATE_NAME_MAX 128 /* a route or a command name, NUL included */

typedef struct pipgate_options {
    const char *listen;        /* http://host:port */
    const char *discovery;     /* discovery node URL */
    size_t max_body_bytes;     /* largest request body */
    uint32_t max_concurrent;   /* requests admitted at once */
    uint32_t workers;          /* threads that make the RPC calls */
    uint32_t timeout_ms;       /* deadline of one call */
    const char *token_file;    /* bearer token file, or NULL */
    const char *log_level;
    pip_key_sources keys;      /* the RPC side's keys */
} pipgate_options;

/* The route table: the service that serves each HTTP route. */
typedef struct pipgate_routes {
    pthread_mutex_t mutex;
    pip_client *client;      /* shared with the gateway, not owned */
    json_t *services;        /* name -> describe result */
    json_t *by_route;        /* route -> name */
    int64_t refreshed_ms;    /* pip_mono_ms of the last refresh, or 0 */
    char list_failure[PIP_MESSAGE_MAX]; /* why the last discovery.list
                                           failed, or "" */
} pipgate_routes;

typedef struct pipgate_job pipgate_job;

typedef struct pipgate {
    pipgate_options opt;
    pip_keyring *keys; /* NULL when the RPC side is plain */
    pip_client *client;
    pipgate_routes routes;
    nng_url *url;
    nng_http_server *server;
    nng_http_handler *handler;
    bool has_token;
    unsigned char token_hash[32]; /* BLAKE2b of the bearer token */
    int64_t started_ms;      /* pip_mono_ms() at the start */

    pthread_mutex_t mutex;   /* guards everything below */
    pthread_cond_t job_ready;
    pthread_cond_t idle;     /* in_flight dropped to 0 */
    pipgate_job *queue_head;
    pipgate_job *queue_tail;
    uint32_t in_flight;      /* admitted requests without a reply yet */
    uint64_t served;         /* answered requests */
    bool stopping;           /* new requests get 503 */
    bool workers_running;    /* false: workers exit once the queue is empty */
    pthread_t *threads;      /* written by the main thread only */
    uint32_t thread_count;
} pipgate;

/* ---- pipgate_http.c ---- */

/* Allocates the handler, starts the workers and the HTTP server. */
int pipgate_http_start(pipgate *gate, pip_error *err);
/*
 * Rejects new requests, waits for those in flight (at most the call
 * deadline plus a margin), then stops the server and the workers.
 */
void pipgate_http_stop(pipgate *gate);

/* ---- pipgate_routes.c ---- */

void pipgate_routes_init(pipgate_routes *routes, pip_client *client);
void pipgate_routes_fini(pipgate_routes *routes);
/*
 * Finds the service of route ("v1/counters").  The table is refreshed
 * from discovery when it is older than a few seconds, or sooner on a
 * miss, so a service that joins is found without a restart.  Returns
 * true and copies the name into service[PIPGATE_NAME_MAX]; may block
 * on discovery for a bounded time.  failure[PIP_MESSAGE_MAX] receives why
 * the last discovery.list failed, or "".
 */
bool pipgate_routes_find(pipgate_routes *routes, const char *route,
                         char *service, char *failure);
/* Rebuilds the table when it is older than a few seconds. */
void pipgate_routes_update(pipgate_routes *routes);
/*
 * Builds the OpenAPI 3 document from the command tables of every service
 * known now.  Returns a new reference, or NULL when out of memory.
 */
json_t *pipgate_openapi(pipgate_routes *routes, const char *server_url,
                        bool bearer);

#endif
