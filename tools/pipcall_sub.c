/*
 * pipcall sub: prints events as JSON lines.
 *
 * Events are published by each node on its own pub socket, so `sub` dials
 * the pub URL of every instance in discovery's list and of discovery
 * itself, which every node reports from its built-in node.describe.  It
 * also follows discovery.join events, so that instances started later are
 * dialed as they register.
 */
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nng/nng.h>

#include "pip/time.h"
#include "pipcall.h"

/* How often `sub` looks at the interrupt flag and at new instances. */
#define PIPCALL_SUB_POLL_MS 200

typedef struct pipcall_feed {
    pip_subscriber *events;
    pip_subscriber *joins; /* discovery.join events, or NULL */
    json_t *dialed;        /* object used as the set of URLs dialed */
} pipcall_feed;

static volatile sig_atomic_t pipcall_interrupted;

static void
pipcall_on_signal(int signo)
{
    (void)signo;
    pipcall_interrupted = 1;
}

static void
pipcall_catch_signals(void)
{
    struct sigaction sa;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = pipcall_on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

/*
 * Returns the URL to dial for pub_url (the caller frees it), or NULL.  A
 * node that listens on a wildcard address (tcp://0.0.0.0:port) reports it
 * as is, so then the host is taken from reference_url, an RPC URL of the
 * same node.
 */
static bool
pipcall_is_wildcard(const char *host)
{
    return host[0] == '\0' || strcmp(host, "0.0.0.0") == 0 ||
           strcmp(host, "::") == 0 || strcmp(host, "*") == 0;
}

static char *
pipcall_pub_target(const char *pub_url, const char *reference_url)
{
    nng_url *pub = NULL;
    nng_url *ref = NULL;
    char *target = NULL;
    size_t len;

    if (nng_url_parse(&pub, pub_url) != 0) {
        return NULL;
    }
    if (strncmp(pub->u_scheme, "tcp", 3) != 0 ||
        !pipcall_is_wildcard(pub->u_hostname) || reference_url == NULL ||
        nng_url_parse(&ref, reference_url) != 0) {
        nng_url_free(pub);
        return strdup(pub_url);
    }

    len = strlen(pub->u_scheme) + strlen(ref->u_hostname) +
          strlen(pub->u_port) + 8;
    target = malloc(len);
    if (target != NULL) {
        snprintf(target, len, "%s://%s:%s", pub->u_scheme, ref->u_hostname,
                 pub->u_port);
    }
    nng_url_free(ref);
    nng_url_free(pub);
    return target;
}

/* Dials sub for the pub URL of a node, unless it was dialed already. */
static int
pipcall_feed_dial(pipcall_feed *feed, pip_subscriber *sub, const char *pub_url,
                  const char *reference_url, pip_error *err)
{
    char *target;
    int rv = PIP_OK;

    if (pub_url == NULL || pub_url[0] == '\0') {
        return PIP_OK;
    }
    target = pipcall_pub_target(pub_url, reference_url);
    if (target == NULL) {
        return pip_error_set(err, PIP_E_BAD_REQUEST, "INVALID_URL",
                             "Invalid pub URL '%s'.", pub_url);
    }
    if (sub != feed->events || json_object_get(feed->dialed, target) == NULL) {
        rv = pip_subscriber_dial(sub, target, err);
    }
    if (rv == PIP_OK && sub == feed->events) {
        json_object_set_new(feed->dialed, target, json_true());
    }
    free(target);
    return rv;
}

/* The first RPC URL of an instance, or NULL. */
static const char *
pipcall_first_rpc(const json_t *instance)
{
    return json_string_value(
        json_array_get(json_object_get(instance, "rpc"), 0));
}

/* Dials the pub URL of every instance in the JSON array. */
static int
pipcall_feed_dial_instances(pipcall_feed *feed, const json_t *instances,
                            pip_error *err)
{
    size_t index;
    json_t *instance;

    json_array_foreach(instances, index, instance) {
        const char *pub = json_string_value(json_object_get(instance, "pub"));
        int rv = pipcall_feed_dial(feed, feed->events, pub,
                                   pipcall_first_rpc(instance), err);

        if (rv != PIP_OK) {
            return rv;
        }
    }
    return PIP_OK;
}

/*
 * Restates a failed node.describe as a failure to subscribe, because the
 * user never asked for that call.  Code and details stay as they were.
 */
static void
pipcall_sub_restate(const char *node_url, pip_error *err)
{
    const char *cause =
        json_string_value(json_object_get(err->details, "cause"));
    char reason[PIP_MESSAGE_MAX];

    if (strcmp(err->code, "TIMEOUT") == 0) {
        snprintf(reason, sizeof(reason), "%.200s did not reply in time",
                 node_url);
    } else if (cause != NULL && strcmp(cause, "connection refused") == 0) {
        snprintf(reason, sizeof(reason), "%s refused the connection",
                 node_url);
    } else if (strcmp(err->code, "CONNECTION_FAILED") == 0) {
        snprintf(reason, sizeof(reason), "no connection to %s was made",
                 node_url);
    } else {
        snprintf(reason, sizeof(reason),
                 "%.200s did not return its event URL (%s: %.200s)", node_url,
                 err->code, err->message);
    }
    snprintf(err->message, sizeof(err->message),
             "Cannot subscribe, because %.400s.", reason);
}

/*
 * Dials the node at --endpoint, or discovery and every instance it lists,
 * using the pub URL that node.describe returns.
 */
static int
pipcall_feed_dial_nodes(pipcall_feed *feed, const pipcall_options *opt,
                        pip_error *err)
{
    const char *node_url = opt->endpoint ? opt->endpoint : opt->discovery_url;
    json_t *node = NULL;
    json_t *instances = NULL;
    const char *pub;
    int rv;

    rv = pipcall_invoke(opt, true, "node.describe", NULL, &node, err);
    if (rv != PIP_OK) {
        pipcall_sub_restate(node_url, err);
        return rv;
    }
    pub = json_string_value(json_object_get(node, "pub"));
    rv = pipcall_feed_dial(feed, feed->events, pub, node_url, err);
    if (rv == PIP_OK && opt->endpoint == NULL) {
        rv = pip_subscriber_new("discovery.join", &feed->joins, err);
        if (rv == PIP_OK) {
            rv = pipcall_feed_dial(feed, feed->joins, pub, node_url, err);
        }
        if (rv == PIP_OK) {
            rv = pipcall_list_instances(opt, &instances, err);
        }
        if (rv == PIP_OK) {
            rv = pipcall_feed_dial_instances(feed, instances, err);
        }
    }
    json_decref(instances);
    json_decref(node);
    return rv;
}

static int
pipcall_feed_open(pipcall_feed *feed, const pipcall_options *opt,
                  const char *topic, pip_error *err)
{
    int rv;

    memset(feed, 0, sizeof(*feed));
    feed->dialed = json_object();
    if (feed->dialed == NULL) {
        return pip_error_set(err, PIP_E_INTERNAL, "OUT_OF_MEMORY",
                             "Out of memory.");
    }
    rv = pip_subscriber_new(topic, &feed->events, err);
    if (rv != PIP_OK) {
        return rv;
    }
    if (opt->pub_url_count == 0) {
        return pipcall_feed_dial_nodes(feed, opt, err);
    }
    for (int i = 0; i < opt->pub_url_count && rv == PIP_OK; i++) {
        rv =
            pipcall_feed_dial(feed, feed->events, opt->pub_urls[i], NULL, err);
    }
    return rv;
}

static void
pipcall_feed_close(pipcall_feed *feed)
{
    if (feed->joins != NULL) {
        pip_subscriber_free(feed->joins);
    }
    if (feed->events != NULL) {
        pip_subscriber_free(feed->events);
    }
    json_decref(feed->dialed);
}

/* Dials the pub URLs of instances that joined since the last look. */
static void
pipcall_feed_follow_joins(pipcall_feed *feed)
{
    char *topic = NULL;
    json_t *instance = NULL;
    pip_error err;

    if (feed->joins == NULL) {
        return;
    }
    pip_error_init(&err);
    while (pip_subscriber_recv(feed->joins, 0, &topic, &instance, &err) ==
           PIP_OK) {
        const char *pub = json_string_value(json_object_get(instance, "pub"));

        if (pipcall_feed_dial(feed, feed->events, pub,
                              pipcall_first_rpc(instance), &err) != PIP_OK) {
            fprintf(stderr, "pipcall: Failed to dial %s for events: %s\n", pub,
                    err.message);
        }
        free(topic);
        json_decref(instance);
        pip_error_fini(&err);
    }
    pip_error_fini(&err);
}

static void
pipcall_print_event(const char *topic, json_t *payload)
{
    json_t *line = json_pack("{s:s, s:O}", "topic", topic, "payload",
                             payload ? payload : json_null());

    pipcall_print_json(stdout, line, true);
    fflush(stdout);
    json_decref(line);
}

/*
 * Receives and prints events until interrupted, until opt->count events
 * were printed, or until the deadline (0: none).  Returns PIP_OK, or
 * PIP_E_TIMEOUT when the deadline passed before the count was reached.
 */
static int
pipcall_feed_print(pipcall_feed *feed, const pipcall_options *opt,
                   int64_t deadline_ms, pip_error *err)
{
    long long printed = 0;

    while (!pipcall_interrupted && (opt->count == 0 || printed < opt->count)) {
        int64_t wait_ms = PIPCALL_SUB_POLL_MS;
        char *topic = NULL;
        json_t *payload = NULL;
        int rv;

        if (deadline_ms != 0) {
            int64_t left_ms = deadline_ms - pip_mono_ms();

            if (left_ms <= 0) {
                break;
            }
            wait_ms = left_ms < wait_ms ? left_ms : wait_ms;
        }
        pipcall_feed_follow_joins(feed);
        rv = pip_subscriber_recv(feed->events, (int)wait_ms, &topic, &payload,
                                 err);
        if (rv == PIP_E_TIMEOUT) {
            pip_error_fini(err);
            continue;
        }
        if (rv != PIP_OK) {
            return rv;
        }
        pipcall_print_event(topic, payload);
        printed++;
        free(topic);
        json_decref(payload);
    }
    if (opt->count > 0 && printed < opt->count && !pipcall_interrupted) {
        return pip_error_set(err, PIP_E_TIMEOUT, "TIMEOUT",
                             "Received %lld of %lld events before the "
                             "timeout of %u ms passed.",
                             printed, opt->count, opt->timeout_ms);
    }
    return PIP_OK;
}

int
pipcall_run_sub(const pipcall_options *opt)
{
    const char *topic = opt->positional[1];
    pipcall_feed feed;
    int64_t deadline_ms = 0;
    pip_error err;
    int rv;

    pipcall_catch_signals();
    pip_error_init(&err);
    rv = pipcall_feed_open(&feed, opt, topic, &err);
    if (rv == PIP_OK) {
        /* Without --timeout, sub runs until interrupted or until --count
         * events were printed. */
        if (opt->timeout_given) {
            deadline_ms = pip_mono_ms() + opt->timeout_ms;
        }
        rv = pipcall_feed_print(&feed, opt, deadline_ms, &err);
    }
    if (rv != PIP_OK) {
        rv = pipcall_fail(opt, &err);
    }
    pipcall_feed_close(&feed);
    pip_error_fini(&err);
    return rv;
}
