/*
 * The resolver: resolve results cached per service name for a short time,
 * and a thread that follows discovery's join and leave events to drop an
 * entry as soon as that service changes.
 *
 * The resolver learns where discovery publishes from the "pub" URL that
 * node.describe, a built-in command of every node, returns.  Until that
 * works the cache still expires after RESOLVER_TTL_MS, so the events only
 * make changes visible sooner.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <nng/nng.h>

#include "pip/client.h"
#include "pip/discovery.h"
#include "pip/log.h"
#include "pip/time.h"

/* How long a resolve result is served from the cache. */
#define RESOLVER_TTL_MS 2000
/* Timeout of each call to discovery. */
#define RESOLVER_CALL_TIMEOUT_MS 3000
/* How often the pub URL of discovery is looked up, until it is found and
 * once it is (discovery may restart on other ports). */
#define RESOLVER_PUB_RETRY_MS 5000
#define RESOLVER_PUB_RECHECK_MS 60000
/* Names kept in the cache; one more empties it. */
#define RESOLVER_MAX_NAMES 1024
/* Pub URLs dialed; discovery restarted on new ports adds one each time. */
#define RESOLVER_MAX_PUB_URLS 16

struct pip_resolver {
    char *discovery_url;
    pip_client *client;     /* calls discovery at its fixed endpoint */
    pip_subscriber *events; /* "discovery." events */
    pthread_t thread;
    bool thread_started;
    atomic_bool closing; /* set by pip_resolver_free() */

    pthread_mutex_t lock;  /* guards what follows */
    json_t *cache;         /* name -> {"instances": [], "expires_ms": n} */
    json_t *pub_urls;      /* array of the pub URLs dialed */
    int64_t pub_lookup_ms; /* monotonic time of the next lookup */
    uint64_t generation;   /* counts the events received */
};

static int
resolver_call(pip_resolver *r, const char *method, json_t *args,
              uint32_t timeout_ms, json_t **result, pip_error *err)
{
    pip_meta meta;
    int rv;

    memset(&meta, 0, sizeof(meta));
    meta.timeout_ms = timeout_ms != 0 ? timeout_ms : RESOLVER_CALL_TIMEOUT_MS;
    rv = pip_client_call(r->client, method, args, &meta, result, err);
    json_decref(args);
    return rv;
}

/* Calls a discovery command that returns an array of instances. */
static int
resolver_call_instances(pip_resolver *r, const char *method, json_t *args,
                        uint32_t timeout_ms, json_t **instances,
                        pip_error *err)
{
    int rv = resolver_call(r, method, args, timeout_ms, instances, err);

    if (rv == PIP_OK && !json_is_array(*instances)) {
        json_decref(*instances);
        *instances = NULL;
        return pip_error_set(err, PIP_E_BAD_REQUEST, "INVALID_RESPONSE",
                             "Discovery at %s returned no array of "
                             "instances for %s",
                             r->discovery_url, method);
    }
    return rv;
}

/* ---- events ---- */

static void
resolver_drop(pip_resolver *r, const char *name)
{
    pthread_mutex_lock(&r->lock);
    r->generation++;
    if (name != NULL) {
        json_object_del(r->cache, name);
    } else {
        json_object_clear(r->cache);
    }
    pthread_mutex_unlock(&r->lock);
}

static void *
resolver_follow(void *arg)
{
    static const struct timespec pause = {0, 100 * 1000000L};
    pip_resolver *r = arg;
    json_t *payload;
    pip_error err;
    char *topic;
    int rv;

    pip_error_init(&err);
    while (!atomic_load(&r->closing)) {
        rv = pip_subscriber_recv(r->events, -1, &topic, &payload, &err);
        if (rv == PIP_OK) {
            resolver_drop(r,
                          json_string_value(json_object_get(payload, "name")));
            free(topic);
            json_decref(payload);
        } else if (rv != PIP_E_BAD_REQUEST && !atomic_load(&r->closing)) {
            nanosleep(&pause, NULL); /* do not spin on a failing socket */
        }
        pip_error_fini(&err);
    }
    return NULL;
}

/* Dials a pub URL not dialed before.  Call locked. */
static void
resolver_dial_pub(pip_resolver *r, const char *url)
{
    pip_error err;
    json_t *known;
    size_t i;

    json_array_foreach(r->pub_urls, i, known)
    {
        if (strcmp(json_string_value(known), url) == 0) {
            return;
        }
    }
    if (json_array_size(r->pub_urls) >= RESOLVER_MAX_PUB_URLS) {
        return;
    }

    pip_error_init(&err);
    if (pip_subscriber_dial(r->events, url, &err) == PIP_OK) {
        json_array_append_new(r->pub_urls, json_string(url));
    } else {
        pip_log(PIP_LOG_WARN, "resolver", NULL,
                "failed to follow discovery events at %s: %s", url,
                err.message);
    }
    pip_error_fini(&err);
}

/*
 * Returns the URL to dial for pub_url.  A node that listens on a wildcard
 * address (tcp://0.0.0.0:port) reports it as is, so the host part is
 * taken from the discovery URL.  The caller frees the result.
 */
static char *
resolver_pub_target(const pip_resolver *r, const char *pub_url)
{
    static const char *const wildcards[] = {"", "0.0.0.0", "::", "*"};
    nng_url *pub = NULL;
    nng_url *rpc = NULL;
    char *target = NULL;
    size_t len;
    size_t i;

    if (nng_url_parse(&pub, pub_url) != 0) {
        return NULL;
    }
    for (i = 0; i < sizeof(wildcards) / sizeof(wildcards[0]); i++) {
        if (strncmp(pub->u_scheme, "tcp", 3) == 0 &&
            strcmp(pub->u_hostname, wildcards[i]) == 0 &&
            nng_url_parse(&rpc, r->discovery_url) == 0) {
            len = strlen(pub->u_scheme) + strlen(rpc->u_hostname) +
                  strlen(pub->u_port) + 8;
            target = malloc(len);
            if (target != NULL) {
                snprintf(target, len, "%s://%s:%s", pub->u_scheme,
                         rpc->u_hostname, pub->u_port);
            }
            nng_url_free(rpc);
            nng_url_free(pub);
            return target;
        }
    }
    nng_url_free(pub);
    return strdup(pub_url);
}

/*
 * Looks up where discovery publishes, when due, and dials it.  Every node
 * returns its pub URL from the built-in command node.describe.
 */
static void
resolver_find_events(pip_resolver *r, uint32_t timeout_ms)
{
    json_t *described = NULL;
    char *target = NULL;
    const char *url;
    pip_error err;
    int64_t now_ms = pip_mono_ms();
    bool due;

    pthread_mutex_lock(&r->lock);
    due = now_ms >= r->pub_lookup_ms;
    if (due) {
        r->pub_lookup_ms = now_ms + (json_array_size(r->pub_urls) == 0
                                         ? RESOLVER_PUB_RETRY_MS
                                         : RESOLVER_PUB_RECHECK_MS);
    }
    pthread_mutex_unlock(&r->lock);
    if (!due) {
        return;
    }

    pip_error_init(&err);
    if (resolver_call(r, "node.describe", NULL, timeout_ms, &described,
                      &err) == PIP_OK) {
        url = json_string_value(json_object_get(described, "pub"));
        target = url != NULL ? resolver_pub_target(r, url) : NULL;
    }
    if (target != NULL) {
        pthread_mutex_lock(&r->lock);
        resolver_dial_pub(r, target);
        pthread_mutex_unlock(&r->lock);
    }
    free(target);
    json_decref(described);
    pip_error_fini(&err);
}

/* ---- the cache ---- */

/* Copies the cached instances of name if fresh, or returns NULL. */
static json_t *
resolver_cached(pip_resolver *r, const char *name, bool fresh_only)
{
    json_t *entry;
    json_t *copy = NULL;

    pthread_mutex_lock(&r->lock);
    entry = json_object_get(r->cache, name);
    if (entry != NULL &&
        (!fresh_only || json_integer_value(json_object_get(
                            entry, "expires_ms")) > pip_mono_ms())) {
        copy = json_deep_copy(json_object_get(entry, "instances"));
    }
    pthread_mutex_unlock(&r->lock);
    return copy;
}

/* Caches instances unless an event came in since the fetch began. */
static void
resolver_store(pip_resolver *r, const char *name, const json_t *instances,
               uint64_t generation)
{
    json_t *entry;

    pthread_mutex_lock(&r->lock);
    if (generation == r->generation) {
        if (json_object_size(r->cache) >= RESOLVER_MAX_NAMES) {
            json_object_clear(r->cache);
        }
        entry = json_pack("{s:O,s:I}", "instances", instances, "expires_ms",
                          (json_int_t)(pip_mono_ms() + RESOLVER_TTL_MS));
        if (entry != NULL) {
            json_object_set_new(r->cache, name, entry);
        }
    }
    pthread_mutex_unlock(&r->lock);
}

int
pip_resolver_resolve_within(pip_resolver *r, const char *name,
                            uint32_t timeout_ms, json_t **instances,
                            pip_error *err)
{
    uint64_t generation;
    json_t *fetched = NULL;
    int rv;

    if (r == NULL || name == NULL || instances == NULL) {
        return pip_error_set(err, PIP_E_BAD_REQUEST, "INVALID_ARGUMENT",
                             "The resolver, the name and the output are "
                             "required");
    }
    *instances = resolver_cached(r, name, true);
    if (*instances != NULL) {
        return PIP_OK;
    }

    pthread_mutex_lock(&r->lock);
    generation = r->generation;
    pthread_mutex_unlock(&r->lock);
    rv = resolver_call_instances(r, "discovery.resolve",
                                 json_pack("{s:s}", "name", name), timeout_ms,
                                 &fetched, err);
    if (rv == PIP_OK) {
        resolver_store(r, name, fetched, generation);
        *instances = fetched;
        /* Discovery replied, so looking up its pub URL is quick. */
        resolver_find_events(r, timeout_ms);
        return PIP_OK;
    }

    /*
     * Stale instances beat none while discovery is unreachable.  They are
     * cached again for RESOLVER_TTL_MS, so that only one call per TTL waits
     * for discovery to fail instead of every call.
     */
    if (rv == PIP_E_UNAVAILABLE || rv == PIP_E_TIMEOUT) {
        *instances = resolver_cached(r, name, false);
        if (*instances != NULL) {
            resolver_store(r, name, *instances, generation);
            if (err != NULL) {
                pip_error_fini(err);
            }
            return PIP_OK;
        }
    }
    return rv;
}

int
pip_resolver_resolve(pip_resolver *r, const char *name, json_t **instances,
                     pip_error *err)
{
    return pip_resolver_resolve_within(r, name, 0, instances, err);
}

int
pip_resolver_list(pip_resolver *r, json_t **instances, pip_error *err)
{
    if (r == NULL || instances == NULL) {
        return pip_error_set(err, PIP_E_BAD_REQUEST, "INVALID_ARGUMENT",
                             "The resolver and the output are required");
    }
    *instances = NULL;
    return resolver_call_instances(r, "discovery.list", NULL, 0, instances,
                                   err);
}

void
pip_resolver_forget(pip_resolver *r, const char *name)
{
    if (r != NULL && name != NULL) {
        pthread_mutex_lock(&r->lock);
        json_object_del(r->cache, name);
        pthread_mutex_unlock(&r->lock);
    }
}

/* ---- lifecycle ---- */

static int
resolver_open(pip_resolver *r, const char *discovery_url, pip_error *err)
{
    pip_client_options opt;
    int rv;

    pip_client_options_init(&opt);
    opt.endpoint = discovery_url;
    opt.timeout_ms = RESOLVER_CALL_TIMEOUT_MS;
    rv = pip_client_new(&opt, &r->client, err);
    if (rv != PIP_OK) {
        return rv;
    }
    rv = pip_subscriber_new("discovery.", &r->events, err);
    if (rv != PIP_OK) {
        return rv;
    }
    rv = pthread_create(&r->thread, NULL, resolver_follow, r);
    if (rv != 0) {
        return pip_error_set(err, PIP_E_INTERNAL, "THREAD_FAILED",
                             "Failed to start the resolver's event thread: "
                             "%s",
                             strerror(rv));
    }
    r->thread_started = true;
    return PIP_OK;
}

int
pip_resolver_new(const char *discovery_url, pip_resolver **out, pip_error *err)
{
    pip_resolver *r;
    int rv;

    if (discovery_url == NULL || out == NULL) {
        return pip_error_set(err, PIP_E_BAD_REQUEST, "INVALID_ARGUMENT",
                             "The discovery URL and the output are required");
    }
    *out = NULL;
    r = calloc(1, sizeof(*r));
    if (r == NULL || pthread_mutex_init(&r->lock, NULL) != 0) {
        free(r);
        return pip_error_set(err, PIP_E_INTERNAL, "OUT_OF_MEMORY",
                             "Failed to allocate a resolver");
    }
    atomic_init(&r->closing, false);
    r->discovery_url = strdup(discovery_url);
    r->cache = json_object();
    r->pub_urls = json_array();
    if (r->discovery_url == NULL || r->cache == NULL || r->pub_urls == NULL) {
        pip_resolver_free(r);
        return pip_error_set(err, PIP_E_INTERNAL, "OUT_OF_MEMORY",
                             "Failed to allocate a resolver");
    }

    rv = resolver_open(r, discovery_url, err);
    if (rv != PIP_OK) {
        pip_resolver_free(r);
        return rv;
    }
    *out = r;
    return PIP_OK;
}

void
pip_resolver_free(pip_resolver *r)
{
    if (r == NULL) {
        return;
    }
    if (r->thread_started) {
        atomic_store(&r->closing, true);
        pip_subscriber_close(r->events);
        pthread_join(r->thread, NULL);
    }
    pip_subscriber_free(r->events);
    pip_client_free(r->client);
    json_decref(r->cache);
    json_decref(r->pub_urls);
    free(r->discovery_url);
    pthread_mutex_destroy(&r->lock);
    free(r);
}
