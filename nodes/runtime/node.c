/*
 * The node: the lifecycle of the services it hosts, its own "node"
 * service, in-process calls, discovery registration and shutdown.
 *
 * Start order: stores, open hooks, timers, sockets, registrations.  Stop
 * runs nearly the reverse: registrations, calls (the replies to calls in
 * flight are sent), timers, in-process calls, close hooks, stores, and
 * last the rep and pub sockets, because closing an NNG socket can hang.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include "node_internal.h"
#include "pip/time.h"

/* How often pip_node_wait looks at the shutdown flag between signals. */
#define NODE_WAIT_POLL_MS 100

/* Time helpers shared by the runtime */

int
pip__cond_init_monotonic(pthread_cond_t *cv)
{
    pthread_condattr_t attr;
    int rv;

    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    rv = pthread_cond_init(cv, &attr);
    pthread_condattr_destroy(&attr);
    return rv;
}

void
pip__timespec_after_ms(struct timespec *ts, int64_t delay_ms)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += (time_t)(delay_ms / 1000);
    ts->tv_nsec += (long)(delay_ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

/* The "node" service */

static int
node_no_memory(pip_error *err)
{
    return pip_error_set(err, PIP_E_INTERNAL, "OUT_OF_MEMORY",
                         "Out of memory in the node runtime.");
}

static json_t *
node_rpc_urls(const pip_node *node)
{
    json_t *urls = json_array();

    for (int i = 0; urls != NULL && pip_node_rpc_url(node, i) != NULL; i++) {
        if (json_array_append_new(urls,
                                  json_string(pip_node_rpc_url(node, i)))) {
            json_decref(urls);
            return NULL;
        }
    }
    return urls;
}

static int
node_builtin_describe(pip_call *call, json_t *args, json_t **result)
{
    pip_node *node = pip_call_service(call)->node;
    json_t *services = json_array();
    json_t *rpc = node_rpc_urls(node);

    (void)args;
    for (int i = 0; services != NULL && i < node->n_services; i++) {
        json_t *entry = pip__service_describe(node->services[i]);

        if (entry == NULL || json_array_append_new(services, entry) != 0) {
            json_decref(services);
            services = NULL;
        }
    }
    if (services == NULL || rpc == NULL) {
        json_decref(services);
        json_decref(rpc);
        return node_no_memory(pip_call_error(call));
    }
    *result =
        json_pack("{s:s, s:s, s:I, s:I, s:o, s:s?, s:o}", "node", node->name,
                  "host", node->host, "pid", (json_int_t)getpid(), "uptime_ms",
                  (json_int_t)(pip_mono_ms() - node->started_ms), "rpc", rpc,
                  "pub", pip_node_pub_url(node), "services", services);
    return *result != NULL ? PIP_OK : node_no_memory(pip_call_error(call));
}

static int
node_builtin_health(pip_call *call, json_t *args, json_t **result)
{
    pip_node *node = pip_call_service(call)->node;
    json_t *names = json_array();

    (void)args;
    for (int i = 0; names != NULL && i < node->n_services; i++) {
        const char *name = node->services[i]->def->name;

        if (json_array_append_new(names, json_string(name)) != 0) {
            json_decref(names);
            names = NULL;
        }
    }
    if (names == NULL) {
        return node_no_memory(pip_call_error(call));
    }
    *result = json_pack("{s:s, s:I, s:s, s:o}", "status", "ok", "uptime_ms",
                        (json_int_t)(pip_mono_ms() - node->started_ms), "node",
                        node->name, "services", names);
    return *result != NULL ? PIP_OK : node_no_memory(pip_call_error(call));
}

/* The security mode and the counts of refused messages; no secrets. */
static json_t *
node_security_statistics(pip_node *node)
{
    pip_seal_stats st;

    pip_keyring_stats(node->keyring, &st);
    return json_pack("{s:s, s:b, s:I, s:I, s:I}", "mode",
                     pip_keyring_mode(node->keyring), "sealed",
                     pip_keyring_sealing(node->keyring), "auth_failed",
                     (json_int_t)st.auth_failed, "replayed",
                     (json_int_t)st.replayed, "untrusted",
                     (json_int_t)st.untrusted);
}

static int
node_builtin_statistics(pip_call *call, json_t *args, json_t **result)
{
    pip_node *node = pip_call_service(call)->node;
    json_t *services = json_object();

    (void)args;
    for (int i = 0; services != NULL && i < node->n_services; i++) {
        pip_service *svc = node->services[i];
        json_t *entry = pip__service_statistics(svc);

        if (entry == NULL ||
            json_object_set_new(services, svc->def->name, entry) != 0) {
            json_decref(services);
            services = NULL;
        }
    }
    if (services == NULL) {
        return node_no_memory(pip_call_error(call));
    }
    *result = json_pack("{s:s, s:I, s:o, s:o*}", "node", node->name,
                        "uptime_ms",
                        (json_int_t)(pip_mono_ms() - node->started_ms),
                        "services", services, "security",
                        node_security_statistics(node));
    return *result != NULL ? PIP_OK : node_no_memory(pip_call_error(call));
}


static const pip_command node_builtins[] = {
    {"ping", pip__builtin_ping, NULL, "nil",
     "Does nothing; measures the round trip to the node."},
    {"describe", node_builtin_describe, NULL,
     "{node, host, pid, uptime_ms, rpc, pub, services: [describe]}",
     "Lists the services that the node hosts, with their commands."},
    {"health", node_builtin_health, NULL,
     "{status, uptime_ms, node, services}",
     "Reports that the node runs and which services it hosts."},
    {"statistics", node_builtin_statistics, NULL,
     "{node, uptime_ms, services: {name: statistics}}",
     "Returns the call statistics of every hosted service."},
    {NULL, NULL, NULL, NULL, NULL},
};

static const pip_command node_no_commands[] = {{.name = NULL}};

static const pip_service_def node_service_def = {
    .name = PIP__NODE_SERVICE,
    .version = "1.0",
    .doc = "The node itself: lists the hosted services and their health.",
    .commands = node_no_commands,
};

/* Lookup */

pip_service *
pip__node_find_service(pip_node *node, const char *name)
{
    for (int i = 0; i < node->n_services; i++) {
        if (strcmp(node->services[i]->def->name, name) == 0) {
            return node->services[i];
        }
    }
    if (strcmp(name, PIP__NODE_SERVICE) == 0) {
        return node->self;
    }
    return NULL;
}

const char *
pip_node_rpc_url(const pip_node *node, int index)
{
    return pip__server_url(node->server, index);
}

const char *
pip_node_pub_url(const pip_node *node)
{
    return node->pub.url;
}

/* Creation */

static int
node_check_options(const pip_node_options *opt, pip_error *err)
{
    if (opt->listen[0] == NULL || opt->data_dir == NULL) {
        return pip_error_set(err, PIP_E_BAD_REQUEST, "INVALID_OPTION",
                             "A node needs a listen URL and a data folder.");
    }
    if (opt->workers < 1 || opt->contexts < 1 || opt->lease_ms < 1) {
        return pip_error_set(err, PIP_E_BAD_REQUEST, "INVALID_OPTION",
                             "workers, contexts and lease_ms must be above "
                             "0 (got %d, %d, %d).",
                             opt->workers, opt->contexts, opt->lease_ms);
    }
    return PIP_OK;
}

static void
node_set_host(pip_node *node)
{
    if (node->opt.host != NULL) {
        snprintf(node->host, sizeof(node->host), "%s", node->opt.host);
    } else if (gethostname(node->host, sizeof(node->host) - 1) != 0) {
        snprintf(node->host, sizeof(node->host), "localhost");
    }
    node->host[sizeof(node->host) - 1] = '\0';
}

/* The node's keys: the program's keyring, or one loaded from the files
 * that the options or the environment name. */
static int
node_keyring_open(pip_node *node, pip_error *err)
{
    pip_key_sources src = {
        .network_key_file = node->opt.network_key_file,
        .identity_file = node->opt.identity_file,
        .trusted_keys_file = node->opt.trusted_keys_file,
    };
    int rv;

    if (node->opt.keyring != NULL) {
        node->keyring = node->opt.keyring;
        return PIP_OK;
    }
    rv = pip_keyring_configure(&src, &node->owned_keyring, err);
    if (rv == PIP_OK && node->owned_keyring != NULL) {
        pip_keyring_set_replay(node->owned_keyring,
                               node->opt.replay_window_ms, 0);
        node->keyring = node->owned_keyring;
    }
    return rv;
}

static void
node_keyring_close(pip_node *node)
{
    if (node->keyring_is_default) {
        pip_keyring_set_default(NULL);
    }
    pip_keyring_free(node->owned_keyring);
    node->owned_keyring = NULL;
    node->keyring = NULL;
}

/*
 * Says once how the node's traffic is protected.  The node's keyring
 * becomes the process default when there is none, so that its calls to
 * discovery and its event subscriptions are sealed too.
 */
static void
node_keyring_start(pip_node *node)
{
    if (!pip_keyring_sealing(node->keyring)) {
        pip_log(PIP_LOG_WARN, node->name, NULL,
                "unauthenticated: no network key is set, so anyone who can "
                "reach this node's ports can call it and read its events; "
                "make one with pipkey network and pass --network-key-file");
        return;
    }
    pip_log(PIP_LOG_INFO, node->name, NULL, "security: %s",
            pip_keyring_mode(node->keyring));
    if (pip_keyring_default() == NULL) {
        pip_keyring_set_default(node->keyring);
        node->keyring_is_default = true;
    }
}

int
pip_node_new(const pip_node_options *opt, pip_node **out, pip_error *err)
{
    pip_node_options defaults;
    pip_node *node;
    int rv;

    pip_node_options_init(&defaults);
    if (opt == NULL) {
        opt = &defaults;
    }
    rv = node_check_options(opt, err);
    node = rv == PIP_OK ? calloc(1, sizeof(*node)) : NULL;
    if (rv == PIP_OK && node == NULL) {
        rv = node_no_memory(err);
    }
    if (rv == PIP_OK) {
        rv = pip__options_copy(&node->opt, opt, err);
        if (rv != PIP_OK) {
            free(node);
        }
    }
    pip_node_options_fini(&defaults);
    if (rv != PIP_OK) {
        return rv;
    }

    node_set_host(node);
    rv = node_keyring_open(node, err);
    if (rv != PIP_OK) {
        pip_node_options_fini(&node->opt);
        free(node);
        return rv;
    }
    pthread_mutex_init(&node->mtx, NULL);
    pip__cond_init_monotonic(&node->cv);
    rv = pip__service_new(node, &node_service_def, node_builtins, &node->self,
                          err);
    if (rv != PIP_OK) {
        pip_node_free(node);
        return rv;
    }
    *out = node;
    return PIP_OK;
}

int
pip_node_add(pip_node *node, const pip_service_def *def, pip_error *err)
{
    pip_service *svc;
    int rv;

    if (node->state != PIP__NODE_NEW) {
        return pip_error_set(err, PIP_E_INVALID_STATE, "NODE_STARTED",
                             "Services must be added before the node "
                             "starts.");
    }
    rv = pip__service_def_check(def, err);
    if (rv != PIP_OK) {
        return rv;
    }
    if (pip__node_find_service(node, def->name) != NULL) {
        return pip_error_set(err, PIP_E_CONFLICT, "SERVICE_EXISTS",
                             "The node already hosts a service named %s%s.",
                             def->name,
                             strcmp(def->name, PIP__NODE_SERVICE) == 0
                                 ? " (the name is reserved for the node)"
                                 : "");
    }
    if (node->n_services == PIP__MAX_SERVICES) {
        return pip_error_set(err, PIP_E_BAD_REQUEST, "TOO_MANY_SERVICES",
                             "A node hosts at most %d services.",
                             PIP__MAX_SERVICES);
    }
    rv = pip__service_new(node, def, NULL, &svc, err);
    if (rv != PIP_OK) {
        return rv;
    }
    node->services[node->n_services++] = svc;
    return PIP_OK;
}

/* Start */

/* Blocks the signals that pip_node_wait takes, in this thread and so in
 * every thread created after it, so no other thread is killed by them. */
static void
node_block_signals(pip_node *node)
{
    sigemptyset(&node->signals);
    sigaddset(&node->signals, SIGINT);
    sigaddset(&node->signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &node->signals, NULL);
}

static int
node_set_name(pip_node *node, pip_error *err)
{
    size_t len = 1;
    char *name;

    if (node->opt.name != NULL || node->n_services == 0) {
        name = strdup(node->opt.name ? node->opt.name : PIP__NODE_SERVICE);
        node->name = name;
        return name != NULL ? PIP_OK : node_no_memory(err);
    }
    /* Unnamed nodes log under their services: "counters+settings". */
    for (int i = 0; i < node->n_services; i++) {
        len += strlen(node->services[i]->def->name) + 1;
    }
    name = calloc(1, len);
    if (name == NULL) {
        return node_no_memory(err);
    }
    for (int i = 0; i < node->n_services; i++) {
        if (i > 0) {
            strcat(name, "+");
        }
        strcat(name, node->services[i]->def->name);
    }
    node->name = name;
    return PIP_OK;
}

/* Creates path and its missing parents, like mkdir -p. */
static int
node_mkdirs(const char *path, pip_error *err)
{
    char buf[PATH_MAX];
    int len = snprintf(buf, sizeof(buf), "%s", path);

    if (len <= 0 || (size_t)len >= sizeof(buf)) {
        return pip_error_set(err, PIP_E_BAD_REQUEST, "INVALID_OPTION",
                             "Data path '%.200s' is empty or too long.", path);
    }
    for (char *p = buf + 1;; p++) {
        char saved = *p;

        if (saved != '/' && saved != '\0') {
            continue;
        }
        *p = '\0';
        if (mkdir(buf, 0755) != 0 && errno != EEXIST) {
            pip_error_set(err, PIP_E_INTERNAL, "DATA_DIR_FAILED",
                          "Cannot create data folder %.200s: %s.", buf,
                          strerror(errno));
            pip_error_detail(err, "path", json_string(buf));
            return PIP_E_INTERNAL;
        }
        *p = saved;
        if (saved == '\0') {
            return PIP_OK;
        }
    }
}

static int
node_open_store(pip_node *node, pip_service *svc, pip_error *err)
{
    pip_store_options sopt;
    char path[PATH_MAX];
    int len;
    int rv;

    len = snprintf(path, sizeof(path), "%s/%s", node->opt.data_dir,
                   svc->def->name);
    if (len <= 0 || (size_t)len >= sizeof(path)) {
        return pip_error_set(err, PIP_E_BAD_REQUEST, "INVALID_OPTION",
                             "Data folder path '%.200s' is too long.",
                             node->opt.data_dir);
    }
    rv = node_mkdirs(path, err);
    if (rv != PIP_OK) {
        return rv;
    }
    pip_store_options_default(&sopt);
    sopt.sync = node->opt.sync_writes;
    return pip_store_open(path, &sopt, &svc->store, err);
}

static int
node_open_service(pip_node *node, pip_service *svc, pip_error *err)
{
    int rv = PIP_OK;

    if (svc->def->uses_store) {
        rv = node_open_store(node, svc, err);
    }
    if (rv == PIP_OK && svc->def->open != NULL) {
        rv = svc->def->open(svc, err);
        if (rv != PIP_OK && err->category == PIP_OK) {
            pip_error_set(err, PIP_E_INTERNAL, "OPEN_FAILED",
                          "The open hook of service %s failed.",
                          svc->def->name);
        }
    }
    if (rv != PIP_OK) {
        pip__service_free_state(svc);
        pip_log(PIP_LOG_ERROR, svc->def->name, NULL,
                "cannot open service: %s %s", err->code, err->message);
        return err->category != PIP_OK ? (int)err->category : rv;
    }
    svc->opened = true;
    return PIP_OK;
}

/* The URL that other hosts can reach: a wildcard host is replaced by
 * the advertised host name. */
static char *
node_advertised_url(const pip_node *node, const char *url)
{
    static const char *const wildcards[] = {"", "0.0.0.0", "::", "*", NULL};
    nng_url *parsed = NULL;
    char *out = NULL;

    if (strncmp(url, "tcp", 3) != 0 || nng_url_parse(&parsed, url) != 0) {
        return strdup(url);
    }
    for (int i = 0; wildcards[i] != NULL; i++) {
        if (strcmp(parsed->u_hostname, wildcards[i]) == 0) {
            size_t len = strlen(parsed->u_scheme) + strlen(node->host) +
                         strlen(parsed->u_port) + 8;

            out = malloc(len);
            if (out != NULL) {
                snprintf(out, len, "%s://%s:%s", parsed->u_scheme, node->host,
                         parsed->u_port);
            }
            nng_url_free(parsed);
            return out;
        }
    }
    nng_url_free(parsed);
    return strdup(url);
}

static json_t *
node_instance(const pip_node *node, const pip_service *svc)
{
    json_t *rpc = json_array();

    for (int i = 0; rpc != NULL && pip_node_rpc_url(node, i) != NULL; i++) {
        char *url = node_advertised_url(node, pip_node_rpc_url(node, i));
        json_t *value = url != NULL ? json_string(url) : NULL;

        free(url);
        if (json_array_append_new(rpc, value) != 0) {
            json_decref(rpc);
            return NULL;
        }
    }
    if (rpc == NULL) {
        return NULL;
    }
    char *pub =
        node->pub.url ? node_advertised_url(node, node->pub.url) : NULL;
    json_t *instance = json_pack(
        "{s:s, s:s?, s:o, s:s?, s:s, s:i, s:{s:s, s:I}}", "name",
        svc->def->name, "version", svc->def->version, "rpc", rpc, "pub", pub,
        "host", node->host, "lease_ms", node->opt.lease_ms, "metadata", "node",
        node->name, "pid", (json_int_t)getpid());

    free(pub);
    return instance;
}

static int
node_register_all(pip_node *node, pip_error *err)
{
    if (node->opt.discovery_url == NULL) {
        return PIP_OK;
    }
    for (int i = 0; i < node->n_services; i++) {
        json_t *instance = node_instance(node, node->services[i]);
        int rv;

        if (instance == NULL) {
            return node_no_memory(err);
        }
        rv = pip_registration_start(node->opt.discovery_url, instance,
                                    &node->regs[i], err);
        json_decref(instance);
        if (rv != PIP_OK) {
            return rv;
        }
    }
    return PIP_OK;
}

static int
node_open_sockets(pip_node *node, pip_error *err)
{
    int rv = pip__server_start(node, &node->server, err);

    if (rv == PIP_OK && node->opt.pub_listen != NULL) {
        rv = pip__publisher_listen(&node->pub, node->opt.pub_listen, err);
    }
    return rv;
}

static void
node_log_started(const pip_node *node)
{
    char urls[1024] = "";
    size_t used = 0;

    for (int i = 0; pip_node_rpc_url(node, i) != NULL; i++) {
        int n = snprintf(urls + used, sizeof(urls) - used, "%s%s",
                         i > 0 ? "," : "", pip_node_rpc_url(node, i));

        if (n < 0 || (size_t)n >= sizeof(urls) - used) {
            break;
        }
        used += (size_t)n;
    }
    pip_log(PIP_LOG_INFO, node->name, NULL,
            "started: rpc=%s pub=%s data=%s discovery=%s workers=%d "
            "contexts=%d pid=%ld",
            urls, node->pub.url ? node->pub.url : "none", node->opt.data_dir,
            node->opt.discovery_url ? node->opt.discovery_url : "none",
            node->opt.workers, node->opt.contexts, (long)getpid());
}

static void node_stop(pip_node *node);

int
pip_node_start(pip_node *node, pip_error *err)
{
    int rv;

    if (node->state != PIP__NODE_NEW) {
        return pip_error_set(err, PIP_E_INVALID_STATE, "NODE_STARTED",
                             "The node was already started.");
    }
    node_block_signals(node);
    node->started_ms = pip_mono_ms();
    node->state = PIP__NODE_RUNNING;
    rv = node_set_name(node, err);
    if (rv == PIP_OK) {
        node_keyring_start(node);
        node->pub.keyring = node->keyring;
    }

    for (int i = 0; rv == PIP_OK && i < node->n_services; i++) {
        rv = node_open_service(node, node->services[i], err);
    }
    for (int i = 0; rv == PIP_OK && i < node->n_services; i++) {
        pip__service_timers_start(node->services[i]);
    }
    if (rv == PIP_OK) {
        pthread_mutex_lock(&node->mtx);
        node->calls_open = true;
        pthread_mutex_unlock(&node->mtx);
        rv = pip__publisher_open(&node->pub, err);
    }
    if (rv == PIP_OK) {
        rv = node_open_sockets(node, err);
    }
    if (rv == PIP_OK) {
        rv = node_register_all(node, err);
    }

    if (rv != PIP_OK) {
        pip_log(PIP_LOG_ERROR, node->name ? node->name : PIP__NODE_SERVICE,
                NULL, "start failed: %s %s", err->code, err->message);
        node_stop(node);
        return rv;
    }
    node_log_started(node);
    return PIP_OK;
}

/* Wait and shutdown */

static bool
node_shutdown_requested(pip_node *node)
{
    bool requested;

    pthread_mutex_lock(&node->mtx);
    requested = node->shutdown_requested;
    pthread_mutex_unlock(&node->mtx);
    return requested;
}

void
pip_node_wait(pip_node *node)
{
    const struct timespec poll = {0, NODE_WAIT_POLL_MS * 1000000L};

    if (node->state != PIP__NODE_RUNNING) {
        return;
    }
    /* The signals must be blocked here too for sigtimedwait to take them,
     * in case this is not the thread that started the node. */
    pthread_sigmask(SIG_BLOCK, &node->signals, NULL);
    while (!node_shutdown_requested(node)) {
        int sig = sigtimedwait(&node->signals, NULL, &poll);

        if (sig > 0) {
            pip_log(PIP_LOG_INFO, node->name, NULL, "received %s, stopping",
                    sig == SIGINT ? "SIGINT" : "SIGTERM");
            pip_node_shutdown(node);
        }
    }
}

void
pip_node_shutdown(pip_node *node)
{
    pthread_mutex_lock(&node->mtx);
    node->shutdown_requested = true;
    pthread_cond_broadcast(&node->cv);
    pthread_mutex_unlock(&node->mtx);
}

/* Closes in-process calls and waits for those in flight. */
static void
node_close_calls(pip_node *node)
{
    pthread_mutex_lock(&node->mtx);
    node->calls_open = false;
    while (node->inproc_calls > 0) {
        pthread_cond_wait(&node->cv, &node->mtx);
    }
    pthread_mutex_unlock(&node->mtx);
}

static void
node_close_services(pip_node *node)
{
    for (int i = node->n_services - 1; i >= 0; i--) {
        pip_service *svc = node->services[i];

        if (svc->opened && svc->def->close != NULL) {
            svc->def->close(svc);
        }
        pip__service_free_state(svc);
        svc->opened = false;
    }
    for (int i = 0; i < node->n_services; i++) {
        pip_service *svc = node->services[i];

        if (svc->store != NULL) {
            pip_store_close(svc->store);
            svc->store = NULL;
        }
    }
}

/* Stops whatever pip_node_start got to, in reverse order. */
static void
node_stop(pip_node *node)
{
    for (int i = 0; i < node->n_services; i++) {
        if (node->regs[i] != NULL) {
            pip_registration_stop(node->regs[i]);
            node->regs[i] = NULL;
        }
    }
    pip__server_quiesce(node->server);
    for (int i = 0; i < node->n_services; i++) {
        pip__service_timers_stop(node->services[i]);
    }
    node_close_calls(node);
    node_close_services(node);
    /* Sockets close last: an NNG close can hang, and by now every store
     * is closed, so a hang loses nothing. */
    pip__server_stop(node->server);
    node->server = NULL;
    pip__publisher_close(&node->pub);
    node->state = PIP__NODE_STOPPED;
}

void
pip_node_free(pip_node *node)
{
    if (node == NULL) {
        return;
    }
    if (node->state == PIP__NODE_RUNNING) {
        node_stop(node);
        pip_log(PIP_LOG_INFO, node->name, NULL, "stopped");
    }
    for (int i = 0; i < node->n_services; i++) {
        pip__service_free(node->services[i]);
    }
    pip__service_free(node->self);
    pthread_cond_destroy(&node->cv);
    pthread_mutex_destroy(&node->mtx);
    node_keyring_close(node);
    pip_node_options_fini(&node->opt);
    free(node->name);
    free(node);
}

/* In-process calls */

static int
node_parse_method(const char *method, pip_request *req, pip_error *err)
{
    size_t len = method != NULL ? strlen(method) : 0;
    char *dot;

    if (len == 0 || len >= sizeof(req->method)) {
        return pip_error_set(err, PIP_E_BAD_REQUEST, "INVALID_METHOD",
                             "Method '%.64s' must be service.command and "
                             "shorter than %d bytes.",
                             method ? method : "", PIP_METHOD_MAX);
    }
    memcpy(req->method, method, len + 1);
    memcpy(req->names, method, len + 1);
    dot = strchr(req->names, '.');
    if (dot == NULL || dot == req->names || dot[1] == '\0') {
        return pip_error_set(err, PIP_E_BAD_REQUEST, "INVALID_METHOD",
                             "Method '%.64s' must be service.command, such "
                             "as counters.read_counters.",
                             method);
    }
    *dot = '\0';
    req->service = req->names;
    req->command = dot + 1;
    return PIP_OK;
}

/* The request owns a copy of args: validation normalizes values in
 * place and handlers may change their arguments. */
static int
node_set_args(pip_request *req, const json_t *args, pip_error *err)
{
    json_t *copy;

    if (args != NULL && !json_is_object(args)) {
        return pip_error_set(err, PIP_E_BAD_REQUEST, "INVALID_DATA",
                             "The arguments of %s must be an object.",
                             req->method);
    }
    copy = args != NULL ? json_deep_copy(args) : json_object();
    if (copy == NULL) {
        return node_no_memory(err);
    }
    json_decref(req->args);
    req->args = copy;
    return PIP_OK;
}

static int
node_enter_call(pip_node *node, pip_error *err)
{
    bool open;

    pthread_mutex_lock(&node->mtx);
    open = node->calls_open;
    if (open) {
        node->inproc_calls++;
    }
    pthread_mutex_unlock(&node->mtx);
    if (!open) {
        return pip_error_set(err, PIP_E_INVALID_STATE, "NOT_RUNNING",
                             "The node is not running, so it takes no "
                             "calls.");
    }
    return PIP_OK;
}

static void
node_leave_call(pip_node *node)
{
    pthread_mutex_lock(&node->mtx);
    node->inproc_calls--;
    if (node->inproc_calls == 0) {
        pthread_cond_broadcast(&node->cv);
    }
    pthread_mutex_unlock(&node->mtx);
}

int
pip_node_call(pip_node *node, const char *method, json_t *args,
              const pip_meta *meta, json_t **result, pip_error *err)
{
    pip_request req;
    int rv;

    *result = NULL;
    pip_request_init(&req);
    rv = node_parse_method(method, &req, err);
    if (rv == PIP_OK) {
        rv = node_set_args(&req, args, err);
    }
    if (rv == PIP_OK && meta != NULL) {
        req.meta = *meta;
    }
    if (rv == PIP_OK) {
        rv = node_enter_call(node, err);
    }
    if (rv == PIP_OK) {
        rv = pip__dispatch(node, &req, pip_mono_ms(), NULL, result, err);
        node_leave_call(node);
    }
    pip_request_fini(&req);
    return rv;
}
