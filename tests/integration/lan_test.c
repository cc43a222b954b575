/*
 * pip across a LAN of four hosts, each a network namespace on one Linux
 * bridge (see lan_net.h): discovery on host A, a counters node on hosts
 * B and C, and the client on host D.  The test process itself moves into
 * host D's namespace, so the pipcall processes and the pip_client that
 * it starts reach the other hosts only through the bridge.
 *
 * The tests run in order and share the network:
 *   1. calls from D reach both counters nodes;
 *   2. B's cable is pulled (its switch port set down): discovery evicts B
 *      when its lease runs out, and calls from D go to C;
 *   3. the cable is plugged back: B registers again and takes calls;
 *   4. discovery stops: a client that already resolved the nodes keeps
 *      calling both;
 *   5. discovery starts again: both nodes register again.
 *
 * Every host runs sealed with one network key, as the README's LAN set-up
 * describes: the key file is made here and passed on through
 * PIP_NETWORK_KEY_FILE, and this process uses it as its default keyring.
 *
 * Without root, or where `ip netns add` is rejected, every test is
 * skipped with the reason, and the program exits LAN_EXIT_SKIPPED, which
 * ctest reports as a skip.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "harness.h"
#include "lan_net.h"
#include "pip/client.h"
#include "pip/seal.h"

/* ctest's SKIP_RETURN_CODE for this test, set in CMakeLists.txt. */
#define LAN_EXIT_SKIPPED 77

enum { LAN_HOST_A, LAN_HOST_B, LAN_HOST_C, LAN_HOST_D, LAN_HOSTS };

#define LAN_DISCOVERY_PORT 4100
#define LAN_DISCOVERY_PUB_PORT 4101
#define LAN_NODE_PORT 4200
#define LAN_NODE_PUB_PORT 4201
/* The nodes' lease.  Discovery's shortest lease is 1000 ms by default;
 * 2000 ms keeps eviction quick and leaves room for a loaded machine. */
#define LAN_LEASE_MS "2000"
/* Bounds of the waits.  Eviction needs one lease after the last renewal.
 * Registering again after the link returns waits for TCP to retransmit
 * the register calls sent while the link was down, whose backoff reaches
 * a few seconds. */
#define LAN_START_WAIT_MS 10000
#define LAN_EVICT_WAIT_MS 10000
#define LAN_RETURN_WAIT_MS 20000
#define LAN_REREGISTER_WAIT_MS 10000
/*
 * NOTE: a new connection from D to B made just after B registered again
 * sometimes takes about 1 s, and in 2 of about 40 runs a call on it
 * failed as refused.  B's own calls to discovery went through at the
 * same time.  The cause is not pinned down, so the test gives B this
 * long to reply to a ping and prints how long it took.
 */
#define LAN_ANSWER_WAIT_MS 5000
/*
 * How long the client's resolver may serve a cached list: 2 s in
 * discovery/resolver.c, plus a margin.  Discovery's join and leave events
 * usually refresh it sooner, but they travel on another connection than
 * the list call that the test waits on, so the test waits out the cache
 * instead of racing the event.
 */
#define LAN_RESOLVER_CACHE_MS 2200
#define LAN_CALL_TIMEOUT_MS 5000
/* Bound of 6 calls while discovery is down: one waits about 1 s for the
 * refused connection to discovery, and each of the others would too if
 * the resolver did not keep its stale list. */
#define LAN_NO_DISCOVERY_MAX_MS 4000
#define LAN_COUNTER "{\"name\":\"lan.calls\",\"type\":4,\"count\":1}"

typedef struct lan_node {
    harness_proc *proc;
    int host;
    char name[16];                /* host name advertised to discovery */
    char rpc_url[HARNESS_URL_MAX];
} lan_node;

typedef struct lan_fixture {
    lan_net net;
    bool net_ready;
    char skip_reason[512];
    harness *h;
    lan_node b;
    lan_node c;
    pip_client *client;      /* the long-lived client on host D */
    int64_t last_resolve_ms; /* when client last called through discovery */
    pip_keyring *keys;       /* the network key of every host */
} lan_fixture;

/* Set when the tests were skipped, for the exit status. */
static bool lan_skipped;

#define LAN_SKIP_UNLESS_READY(f)                                        \
    do {                                                                \
        if (!(f)->net_ready) {                                          \
            printf("lan_test: skipped: %s\n", (f)->skip_reason);        \
            skip();                                                     \
        }                                                               \
    } while (0)

/* ---- processes on hosts ---- */

/*
 * Starts a program of the build on host.  The calling thread enters the
 * host's namespace only for the fork, so the child starts there, and
 * then returns to host D.
 */
static harness_proc *
lan_start(lan_fixture *f, int host, const char *name, const char *const *argv)
{
    harness_proc *proc;

    if (lan_net_enter(&f->net, host) != 0) {
        return NULL;
    }
    proc = harness_start(f->h, name, argv, false);
    if (lan_net_enter(&f->net, LAN_HOST_D) != 0) {
        return NULL;
    }
    return proc;
}

static bool
lan_start_discovery(lan_fixture *f)
{
    char address[32];
    char listen[HARNESS_URL_MAX];
    char pub[HARNESS_URL_MAX];
    char data[PATH_MAX];
    const char *argv[] = {"pipnode", "discovery", "--listen", listen, "--pub",
                          pub, "--data", data, NULL};

    lan_net_address(LAN_HOST_A, address, sizeof(address));
    snprintf(listen, sizeof(listen), "tcp://%s:%d", address,
             LAN_DISCOVERY_PORT);
    snprintf(pub, sizeof(pub), "tcp://%s:%d", address,
             LAN_DISCOVERY_PUB_PORT);
    harness_path(f->h, "host-a", data);

    f->h->discovery = lan_start(f, LAN_HOST_A, "discovery", argv);
    if (f->h->discovery == NULL) {
        return false;
    }
    f->h->discovery->stop_last = true;
    return harness_wait_ready(f->h->discovery_url, "discovery.ping",
                              LAN_START_WAIT_MS);
}

/* Starts `pipnode counters` on host, registered with discovery on A. */
static bool
lan_start_node(lan_fixture *f, lan_node *node, int host, const char *name)
{
    char address[32];
    char pub[HARNESS_URL_MAX];
    char data[PATH_MAX];
    const char *argv[] = {"pipnode", "counters", "--listen", node->rpc_url,
                          "--pub", pub, "--data", data, "--discovery",
                          f->h->discovery_url, "--host", name, "--lease-ms",
                          LAN_LEASE_MS, NULL};

    node->host = host;
    snprintf(node->name, sizeof(node->name), "%s", name);
    lan_net_address(host, address, sizeof(address));
    snprintf(node->rpc_url, sizeof(node->rpc_url), "tcp://%s:%d", address,
             LAN_NODE_PORT);
    snprintf(pub, sizeof(pub), "tcp://%s:%d", address, LAN_NODE_PUB_PORT);
    harness_path(f->h, name, data);

    node->proc = lan_start(f, host, name, argv);
    return node->proc != NULL;
}

/* ---- setup and teardown ---- */

/* Makes the network key that every host and the test's clients use. */
static int
lan_make_key(lan_fixture *f)
{
    pip_key_sources src = {0};
    char path[PATH_MAX];
    pip_error err;
    int rv;

    pip_error_init(&err);
    if (!harness_path(f->h, "net.key", path)) {
        return -1;
    }
    src.network_key_file = path;
    rv = pip_key_write_network(path, &err);
    if (rv == PIP_OK) {
        rv = pip_keyring_configure(&src, &f->keys, &err);
    }
    if (rv != PIP_OK) {
        fprintf(stderr, "lan_test: %s\n", err.message);
        pip_error_fini(&err);
        return -1;
    }
    setenv("PIP_NETWORK_KEY_FILE", path, 1);
    pip_keyring_set_default(f->keys);
    return 0;
}

static int
lan_start_hosts(lan_fixture *f)
{
    char address[32];

    f->h = harness_new();
    if (f->h == NULL || lan_make_key(f) != 0) {
        return -1;
    }
    lan_net_address(LAN_HOST_A, address, sizeof(address));
    snprintf(f->h->discovery_url, sizeof(f->h->discovery_url),
             "tcp://%s:%d", address, LAN_DISCOVERY_PORT);
    f->h->discovery_client =
        harness_client_new(NULL, f->h->discovery_url, 1000);
    if (f->h->discovery_client == NULL || !lan_start_discovery(f)) {
        fprintf(stderr, "lan_test: discovery did not start on host A\n");
        return -1;
    }

    if (!lan_start_node(f, &f->b, LAN_HOST_B, "host-b") ||
        !lan_start_node(f, &f->c, LAN_HOST_C, "host-c") ||
        !harness_wait_instances(f->h, "counters", 2, LAN_START_WAIT_MS)) {
        fprintf(stderr, "lan_test: the counters nodes on hosts B and C did "
                "not register within %d ms\n", LAN_START_WAIT_MS);
        return -1;
    }

    f->client =
        harness_client_new(NULL, f->h->discovery_url, LAN_CALL_TIMEOUT_MS);
    return f->client != NULL ? 0 : -1;
}

static int
lan_setup(void **state)
{
    lan_fixture *f = calloc(1, sizeof(*f));
    lan_net_status status;

    if (f == NULL) {
        return -1;
    }
    *state = f;
    status = lan_net_create(&f->net, LAN_HOSTS, f->skip_reason,
                            sizeof(f->skip_reason));
    if (status == LAN_NET_NOT_PERMITTED) {
        printf("lan_test: skipping every test: %s\n", f->skip_reason);
        lan_skipped = true;
        return 0;
    }
    if (status != LAN_NET_READY) {
        fprintf(stderr, "lan_test: building the LAN failed: %s\n",
                f->skip_reason);
        return -1;
    }
    f->net_ready = true;

    /* From here on, this process is host D. */
    if (lan_net_enter(&f->net, LAN_HOST_D) != 0) {
        return -1;
    }
    return lan_start_hosts(f);
}

static int
lan_teardown(void **state)
{
    lan_fixture *f = *state;
    int rv = 0;

    if (f == NULL) {
        return 0;
    }
    pip_client_free(f->client);
    if (f->h != NULL) {
        rv = harness_free(f->h);
    }
    unsetenv("PIP_NETWORK_KEY_FILE");
    pip_keyring_set_default(NULL);
    pip_keyring_free(f->keys);
    if (f->net_ready) {
        lan_net_destroy(&f->net);
    }
    free(f);
    return rv;
}

/* ---- checks ---- */

/* The write_counter calls that node served so far, or -1 on failure. */
static json_int_t
lan_write_calls(const lan_node *node)
{
    pip_client *client = harness_client_new(node->rpc_url, NULL, 2000);
    json_t *stats = NULL;
    json_int_t calls = -1;
    pip_error err;

    if (client == NULL) {
        return -1;
    }
    pip_error_init(&err);
    if (pip_client_call(client, "counters.statistics", NULL, NULL, &stats,
                        &err) == PIP_OK) {
        calls = json_integer_value(json_object_get(
            json_object_get(json_object_get(stats, "commands"),
                            "write_counter"),
            "calls"));
    } else {
        fprintf(stderr, "lan_test: statistics of %s failed: %s %s\n",
                node->name, err.code, err.message);
    }
    json_decref(stats);
    pip_error_fini(&err);
    pip_client_free(client);
    return calls;
}

/* Runs pipcall on host D: through discovery, or at endpoint when set. */
static void
lan_pipcall_write(lan_fixture *f, const char *endpoint)
{
    harness_output out;
    json_t *result;

    if (endpoint != NULL) {
        assert_int_equal(HARNESS_PIPCALL(f->h, &out, "--endpoint", endpoint,
                                         "--compact", "counters.write_counter",
                                         "counter=" LAN_COUNTER),
                         0);
    } else {
        assert_int_equal(HARNESS_PIPCALL(f->h, &out, "--compact",
                                         "counters.write_counter",
                                         "counter=" LAN_COUNTER),
                         0);
    }
    if (out.exit_code != 0) {
        fail_msg("pipcall write_counter exited %d: %s", out.exit_code,
                 out.err);
    }
    result = harness_parse_json(out.out);
    assert_non_null(result);
    assert_string_equal(json_string_value(json_object_get(result, "name")),
                        "lan.calls");
    json_decref(result);
    harness_output_fini(&out);
}

/* One write_counter call through the long-lived client; fails on error. */
static void
lan_client_write(lan_fixture *f)
{
    json_t *args = json_pack("{s:{s:s, s:i, s:i}}", "counter", "name",
                             "lan.calls", "type", 4, "count", 1);
    json_t *result = NULL;
    pip_error err;
    int rv;

    pip_error_init(&err);
    rv = pip_client_call(f->client, "counters.write_counter", args, NULL,
                         &result, &err);
    if (rv != PIP_OK) {
        fail_msg("write_counter through the long-lived client failed: %s "
                 "%s %s", pip_category_name(rv), err.code, err.message);
    }
    f->last_resolve_ms = harness_now_ms();
    json_decref(args);
    json_decref(result);
    pip_error_fini(&err);
}

/* Waits until the long-lived client's cached list has expired. */
static void
lan_wait_cache_expired(const lan_fixture *f)
{
    int64_t left_ms = f->last_resolve_ms + LAN_RESOLVER_CACHE_MS -
                      harness_now_ms();

    if (left_ms > 0) {
        harness_sleep_ms((int)left_ms);
    }
}

/* The live counters instances as `pipcall list --json` prints them. */
static json_t *
lan_listed_counters(lan_fixture *f)
{
    harness_output out;
    json_t *all;
    json_t *counters = json_array();
    json_t *instance;
    size_t i;

    assert_int_equal(HARNESS_PIPCALL(f->h, &out, "list", "--json"), 0);
    if (out.exit_code != 0) {
        fail_msg("pipcall list exited %d: %s", out.exit_code, out.err);
    }
    all = harness_parse_json(out.out);
    assert_true(json_is_array(all));
    json_array_foreach(all, i, instance) {
        const char *name = json_string_value(json_object_get(instance,
                                                             "name"));

        if (name != NULL && strcmp(name, "counters") == 0) {
            json_array_append(counters, instance);
        }
    }
    json_decref(all);
    harness_output_fini(&out);
    return counters;
}

/* True when one of instances lists node's rpc URL and host name. */
static bool
lan_lists_node(const json_t *instances, const lan_node *node)
{
    const json_t *instance;
    size_t i;

    json_array_foreach(instances, i, instance) {
        const char *host = json_string_value(json_object_get(instance,
                                                             "host"));

        if (harness_instance_has_rpc(instance, node->rpc_url) &&
            host != NULL && strcmp(host, node->name) == 0) {
            return true;
        }
    }
    return false;
}

/* Waits until discovery lists count counters instances; returns the ms. */
static int64_t
lan_wait_counters(lan_fixture *f, int count, int timeout_ms)
{
    int64_t start_ms = harness_now_ms();

    if (!harness_wait_instances(f->h, "counters", count, timeout_ms)) {
        fail_msg("discovery did not list %d counters instances within %d ms",
                 count, timeout_ms);
    }
    return harness_now_ms() - start_ms;
}

/* ---- the tests, in order ---- */

static void
test_calls_reach_both_nodes(void **state)
{
    lan_fixture *f = *state;
    json_int_t b_before;
    json_int_t c_before;

    LAN_SKIP_UNLESS_READY(f);
    b_before = lan_write_calls(&f->b);
    c_before = lan_write_calls(&f->c);
    assert_true(b_before >= 0);
    assert_true(c_before >= 0);

    for (int i = 0; i < 4; i++) {
        lan_pipcall_write(f, NULL);
    }
    assert_int_equal(lan_write_calls(&f->b) + lan_write_calls(&f->c),
                     b_before + c_before + 4);

    /* The long-lived client takes the instances in turn. */
    b_before = lan_write_calls(&f->b);
    c_before = lan_write_calls(&f->c);
    for (int i = 0; i < 8; i++) {
        lan_client_write(f);
    }
    assert_int_equal(lan_write_calls(&f->b), b_before + 4);
    assert_int_equal(lan_write_calls(&f->c), c_before + 4);
}

static void
test_cut_link_evicts_node(void **state)
{
    lan_fixture *f = *state;
    json_int_t c_before;
    json_t *listed;
    int64_t waited_ms;

    LAN_SKIP_UNLESS_READY(f);
    c_before = lan_write_calls(&f->c);
    assert_true(c_before >= 0);

    assert_int_equal(lan_net_set_link(&f->net, LAN_HOST_B, false), 0);
    waited_ms = lan_wait_counters(f, 1, LAN_EVICT_WAIT_MS);
    printf("lan_test: discovery evicted host B %lld ms after its link went "
           "down\n", (long long)waited_ms);

    listed = lan_listed_counters(f);
    assert_int_equal(json_array_size(listed), 1);
    assert_true(lan_lists_node(listed, &f->c));
    assert_false(lan_lists_node(listed, &f->b));
    json_decref(listed);

    for (int i = 0; i < 4; i++) {
        lan_pipcall_write(f, NULL);
    }
    lan_wait_cache_expired(f);
    for (int i = 0; i < 4; i++) {
        lan_client_write(f);
    }
    assert_int_equal(lan_write_calls(&f->c), c_before + 8);
}

static void
test_restored_link_reregisters(void **state)
{
    lan_fixture *f = *state;
    json_int_t b_before;
    json_t *listed;
    int64_t waited_ms;
    int64_t start_ms;

    LAN_SKIP_UNLESS_READY(f);
    assert_int_equal(lan_net_set_link(&f->net, LAN_HOST_B, true), 0);
    waited_ms = lan_wait_counters(f, 2, LAN_RETURN_WAIT_MS);
    printf("lan_test: host B registered again %lld ms after its link came "
           "back\n", (long long)waited_ms);

    listed = lan_listed_counters(f);
    assert_true(lan_lists_node(listed, &f->b));
    assert_true(lan_lists_node(listed, &f->c));
    json_decref(listed);

    /* B replies at its own endpoint, and through discovery again. */
    start_ms = harness_now_ms();
    assert_true(harness_wait_ready(f->b.rpc_url, "counters.ping",
                                   LAN_ANSWER_WAIT_MS));
    printf("lan_test: host B answered a new connection %lld ms after it "
           "was listed\n", (long long)(harness_now_ms() - start_ms));
    b_before = lan_write_calls(&f->b);
    assert_true(b_before >= 0);
    lan_pipcall_write(f, f->b.rpc_url);
    assert_int_equal(lan_write_calls(&f->b), b_before + 1);

    lan_wait_cache_expired(f);
    for (int i = 0; i < 6; i++) {
        lan_client_write(f);
    }
    assert_int_equal(lan_write_calls(&f->b), b_before + 1 + 3);
}

static void
test_calls_continue_without_discovery(void **state)
{
    lan_fixture *f = *state;
    harness_output out;
    json_int_t b_before;
    json_int_t c_before;
    int64_t elapsed_ms;
    int64_t start_ms;

    LAN_SKIP_UNLESS_READY(f);
    lan_client_write(f); /* the client has resolved both nodes */
    assert_int_equal(harness_stop(f->h->discovery, HARNESS_STOP_TIMEOUT_MS),
                     0);

    /* A new client cannot find the service now. */
    assert_int_equal(HARNESS_PIPCALL(f->h, &out, "counters.ping"), 0);
    assert_int_equal(out.exit_code, 1);
    harness_output_fini(&out);

    /* With the cache expired, the first call fails to reach discovery
     * (about 1 s for a refused connection) and then uses the list that
     * the client resolved before.  The resolver keeps serving that list
     * for another cache lifetime, so the next calls do not wait. */
    lan_wait_cache_expired(f);
    b_before = lan_write_calls(&f->b);
    c_before = lan_write_calls(&f->c);
    start_ms = harness_now_ms();
    for (int i = 0; i < 6; i++) {
        lan_client_write(f);
    }
    elapsed_ms = harness_now_ms() - start_ms;
    printf("lan_test: 6 calls without discovery took %lld ms\n",
           (long long)elapsed_ms);
    assert_true(elapsed_ms < LAN_NO_DISCOVERY_MAX_MS);
    assert_int_equal(lan_write_calls(&f->b), b_before + 3);
    assert_int_equal(lan_write_calls(&f->c), c_before + 3);
}

static void
test_restarted_discovery_lists_both(void **state)
{
    lan_fixture *f = *state;
    json_t *listed;
    int64_t waited_ms;

    LAN_SKIP_UNLESS_READY(f);
    assert_true(lan_start_discovery(f));
    waited_ms = lan_wait_counters(f, 2, LAN_REREGISTER_WAIT_MS);
    printf("lan_test: both nodes registered %lld ms after discovery "
           "restarted\n", (long long)waited_ms);

    listed = lan_listed_counters(f);
    assert_true(lan_lists_node(listed, &f->b));
    assert_true(lan_lists_node(listed, &f->c));
    json_decref(listed);
    lan_pipcall_write(f, NULL);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_calls_reach_both_nodes),
        cmocka_unit_test(test_cut_link_evicts_node),
        cmocka_unit_test(test_restored_link_reregisters),
        cmocka_unit_test(test_calls_continue_without_discovery),
        cmocka_unit_test(test_restarted_discovery_lists_both),
    };
    int failed;

    setvbuf(stdout, NULL, _IOLBF, 0);
    failed = cmocka_run_group_tests(tests, lan_setup, lan_teardown);
    if (failed == 0 && lan_skipped) {
        return LAN_EXIT_SKIPPED;
    }
    return failed;
}
