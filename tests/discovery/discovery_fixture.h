/*
 * Helpers for the discovery and client tests: real nodes started in the
 * test process on loopback ports picked by the kernel, each with a data
 * folder made by mkdtemp, and clients that call them over real sockets.
 * Included by one test file each, so the helpers are static inline.
 */
#ifndef DISCOVERY_FIXTURE_H
#define DISCOVERY_FIXTURE_H

#include "test_util.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>

#include "pip/client.h"
#include "pip/discovery.h"
#include "pip/log.h"
#include "pip/node.h"
#include "pip/time.h"

/* A node hosting one service, with its own data folder. */
typedef struct test_node {
    char dir[PATH_MAX];
    pip_node_options options;
    pip_node *node;
} test_node;

/* The settings and discovery of a node to start; zero means defaults. */
typedef struct test_node_config {
    const pip_service_def *def;
    const char *listen;        /* default tcp://127.0.0.1:0 */
    const char *listen_also;   /* a second RPC URL, or NULL */
    const char *pub_listen;    /* default tcp://127.0.0.1:0 */
    const char *discovery_url; /* register there, or NULL */
    int lease_ms;              /* default: the node's default */
    json_t *settings;          /* borrowed "service.key" -> string */
} test_node_config;

static inline void
test_sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

    nanosleep(&ts, NULL);
}

/* Keeps the test output to warnings and errors. */
static inline void
test_quiet_logs(void)
{
    pip_log_configure(pip_log_stderr, NULL, PIP_LOG_WARN);
}

static inline test_node *
test_node_start(const test_node_config *config)
{
    test_node *n = calloc(1, sizeof(*n));
    pip_error err;
    int rv;

    assert_non_null(n);
    snprintf(n->dir, sizeof(n->dir), "%s/pip-discovery-XXXXXX",
             getenv("TMPDIR") != NULL ? getenv("TMPDIR") : "/tmp");
    assert_non_null(mkdtemp(n->dir));

    pip_error_init(&err);
    pip_node_options_init(&n->options);
    n->options.name = config->def->name;
    n->options.listen[0] =
        config->listen != NULL ? config->listen : "tcp://127.0.0.1:0";
    n->options.listen[1] = config->listen_also;
    n->options.listen[2] = NULL;
    n->options.pub_listen =
        config->pub_listen != NULL ? config->pub_listen : "tcp://127.0.0.1:0";
    n->options.data_dir = n->dir;
    n->options.discovery_url = config->discovery_url;
    if (config->lease_ms > 0) {
        n->options.lease_ms = config->lease_ms;
    }
    if (config->settings != NULL) {
        if (n->options.settings == NULL) {
            n->options.settings = json_object();
        }
        assert_int_equal(
            json_object_update(n->options.settings, config->settings), 0);
    }

    rv = pip_node_new(&n->options, &n->node, &err);
    if (rv == PIP_OK) {
        rv = pip_node_add(n->node, config->def, &err);
    }
    if (rv == PIP_OK) {
        rv = pip_node_start(n->node, &err);
    }
    if (rv != PIP_OK) {
        fail_msg("node %s failed to start: %s %s", config->def->name, err.code,
                 err.message);
    }
    pip_error_fini(&err);
    return n;
}

/* Starts a discovery node with the lease bounds lowered for tests. */
static inline test_node *
test_discovery_start(const char *listen, const char *pub_listen)
{
    json_t *settings =
        json_pack("{s:s}", "discovery.options.min_lease_ms", "500");
    test_node_config config = {
        .def = &pip_discovery_service,
        .listen = listen,
        .pub_listen = pub_listen,
        .settings = settings,
    };
    test_node *n = test_node_start(&config);

    json_decref(settings);
    return n;
}

static inline void
test_node_stop(test_node *n)
{
    if (n == NULL) {
        return;
    }
    pip_node_free(n->node);
    pip_node_options_fini(&n->options);
    test_util_remove_tree(n->dir);
    free(n);
}

static inline const char *
test_rpc_url(const test_node *n)
{
    return pip_node_rpc_url(n->node, 0);
}

static inline pip_client *
test_client_new(const char *endpoint, const char *discovery_url,
                uint32_t timeout_ms)
{
    pip_client_options opt;
    pip_client *client = NULL;
    pip_error err;

    pip_error_init(&err);
    pip_client_options_init(&opt);
    opt.endpoint = endpoint;
    opt.discovery_url = discovery_url;
    if (timeout_ms != 0) {
        opt.timeout_ms = timeout_ms;
    }
    if (pip_client_new(&opt, &client, &err) != PIP_OK) {
        fail_msg("client failed: %s %s", err.code, err.message);
    }
    pip_error_fini(&err);
    return client;
}

/* Parses JSON text; fails the test when it is invalid. */
static inline json_t *
test_json(const char *text)
{
    json_error_t error;
    json_t *value = json_loads(text, 0, &error);

    if (value == NULL) {
        fail_msg("invalid test JSON '%s': %s", text, error.text);
    }
    return value;
}

/*
 * Calls method with args (stolen, may be NULL), returns the category, and
 * fills *result and err.
 */
static inline int
test_call(pip_client *client, const char *method, json_t *args,
          json_t **result, pip_error *err)
{
    int rv = pip_client_call(client, method, args, NULL, result, err);

    json_decref(args);
    return rv;
}

/* Calls method and fails the test unless it succeeds. */
static inline json_t *
test_call_ok(pip_client *client, const char *method, json_t *args)
{
    json_t *result = NULL;
    pip_error err;

    pip_error_init(&err);
    if (test_call(client, method, args, &result, &err) != PIP_OK) {
        fail_msg("%s failed: %s %s", method, err.code, err.message);
    }
    pip_error_fini(&err);
    return result;
}

/* The number of live instances of name, or -1 when the call fails. */
static inline int
test_instance_count(pip_client *discovery, const char *name)
{
    json_t *args = json_pack("{s:s}", "name", name);
    json_t *instances = NULL;
    pip_error err;
    int count = -1;

    pip_error_init(&err);
    if (test_call(discovery, "discovery.resolve", args, &instances, &err) ==
        PIP_OK) {
        count = (int)json_array_size(instances);
    }
    json_decref(instances);
    pip_error_fini(&err);
    return count;
}

/* Waits up to timeout_ms for name to have count instances. */
static inline bool
test_wait_count(pip_client *discovery, const char *name, int count,
                int timeout_ms)
{
    int64_t until_ms = pip_mono_ms() + timeout_ms;

    while (test_instance_count(discovery, name) != count) {
        if (pip_mono_ms() > until_ms) {
            return false;
        }
        test_sleep_ms(50);
    }
    return true;
}

/* A loopback TCP URL on which nothing listens: a port the kernel gave to
 * a listener that is closed again. */
static inline void
test_dead_url(char *out, size_t size)
{
    nng_listener listener;
    nng_sockaddr addr;
    nng_socket sock;

    assert_int_equal(nng_rep0_open(&sock), 0);
    assert_int_equal(nng_listen(sock, "tcp://127.0.0.1:0", &listener, 0), 0);
    assert_int_equal(nng_listener_get_addr(listener, NNG_OPT_LOCADDR, &addr),
                     0);
    snprintf(out, size, "tcp://127.0.0.1:%u",
             (unsigned)ntohs(addr.s_in.sa_port));
    nng_close(sock);
}

#endif
