/*
 * Keeping an instance registered: the registration thread of a node with
 * a discovery URL, and pip_registration used directly, against discovery
 * nodes that start late, restart, and stop.
 */
#include "discovery_fixture.h"

#include <pthread.h>

/* ---- a service to register ---- */

static int
probe_hello(pip_call *call, json_t *args, json_t **result)
{
    (void)call;
    (void)args;
    *result = json_string("hello");
    return PIP_OK;
}

static const pip_field probe_no_args[] = {{.name = NULL}};

static const pip_command probe_commands[] = {
    {"hello", probe_hello, probe_no_args, "a string", "Returns hello"},
    {NULL, NULL, NULL, NULL, NULL},
};

static const pip_service_def probe_service = {
    .name = "probe",
    .version = "2.0",
    .route = "v1/probe",
    .doc = "A test service",
    .commands = probe_commands,
};

static test_node *
probe_start(const char *discovery_url)
{
    test_node_config config = {
        .def = &probe_service,
        .discovery_url = discovery_url,
        .lease_ms = 1500,
    };

    return test_node_start(&config);
}

/* ---- counting log lines ---- */

typedef struct log_counter {
    pthread_mutex_t lock;
    const char *needle;
    int lines;
} log_counter;

static log_counter counter = {PTHREAD_MUTEX_INITIALIZER, NULL, 0};

static void
count_sink(pip_log_level level, const char *line, void *ctx)
{
    log_counter *c = ctx;

    (void)level;
    pthread_mutex_lock(&c->lock);
    if (c->needle != NULL && strstr(line, c->needle) != NULL) {
        c->lines++;
    }
    pthread_mutex_unlock(&c->lock);
}

static void
count_lines_start(const char *needle)
{
    pthread_mutex_lock(&counter.lock);
    counter.needle = needle;
    counter.lines = 0;
    pthread_mutex_unlock(&counter.lock);
    pip_log_configure(count_sink, &counter, PIP_LOG_INFO);
}

static int
count_lines_stop(void)
{
    int lines;

    test_quiet_logs();
    pthread_mutex_lock(&counter.lock);
    lines = counter.lines;
    counter.needle = NULL;
    pthread_mutex_unlock(&counter.lock);
    return lines;
}

/* ---- helpers ---- */

static int
setup(void **state)
{
    (void)state;
    test_quiet_logs();
    return 0;
}

static pip_registration *
registration_start(const char *discovery_url, json_t *instance)
{
    pip_registration *reg = NULL;
    pip_error err;

    pip_error_init(&err);
    if (pip_registration_start(discovery_url, instance, &reg, &err) !=
        PIP_OK) {
        fail_msg("registration failed to start: %s %s", err.code, err.message);
    }
    pip_error_fini(&err);
    json_decref(instance);
    return reg;
}

static const char *
string_at(const json_t *object, const char *key)
{
    return json_string_value(json_object_get(object, key));
}

/* ---- tests ---- */

static void
test_node_registers_itself(void **state)
{
    test_node *discovery = test_discovery_start(NULL, NULL);
    test_node *probe = probe_start(test_rpc_url(discovery));
    pip_client *client = test_client_new(test_rpc_url(discovery), NULL, 0);
    char host[256] = "";
    json_t *found;
    json_t *instance;

    (void)state;
    assert_true(test_wait_count(client, "probe", 1, 5000));
    found = test_call_ok(client, "discovery.resolve",
                         json_pack("{s:s}", "name", "probe"));
    instance = json_array_get(found, 0);
    gethostname(host, sizeof(host) - 1);

    assert_string_equal(string_at(instance, "version"), "2.0");
    assert_string_equal(
        json_string_value(json_array_get(json_object_get(instance, "rpc"), 0)),
        test_rpc_url(probe));
    assert_string_equal(string_at(instance, "pub"),
                        pip_node_pub_url(probe->node));
    assert_string_equal(string_at(instance, "host"), host);
    assert_int_equal(json_integer_value(json_object_get(instance, "lease_ms")),
                     1500);
    json_decref(found);

    /* Renewals keep it past its lease. */
    test_sleep_ms(2500);
    assert_int_equal(test_instance_count(client, "probe"), 1);

    /* A clean stop deregisters at once, without waiting for the lease. */
    test_node_stop(probe);
    assert_int_equal(test_instance_count(client, "probe"), 0);

    pip_client_free(client);
    test_node_stop(discovery);
}

static void
test_discovery_restart_repopulated(void **state)
{
    test_node *discovery = test_discovery_start(NULL, NULL);
    char rpc_url[128];
    char pub_url[128];
    test_node *probe;
    pip_client *client;

    (void)state;
    snprintf(rpc_url, sizeof(rpc_url), "%s", test_rpc_url(discovery));
    snprintf(pub_url, sizeof(pub_url), "%s",
             pip_node_pub_url(discovery->node));
    probe = probe_start(rpc_url);
    client = test_client_new(rpc_url, NULL, 1000);
    assert_true(test_wait_count(client, "probe", 1, 5000));

    /* A new discovery node on the same URLs starts with an empty table;
     * renew returns INSTANCE_NOT_FOUND and the node registers again.  The
     * renewal may come before the first resolve, so the empty table is
     * not checked here. */
    test_node_stop(discovery);
    discovery = test_discovery_start(rpc_url, pub_url);
    if (!test_wait_count(client, "probe", 1, 5000)) {
        fail_msg("the restarted discovery node was not repopulated in 5 s");
    }

    test_node_stop(probe);
    assert_int_equal(test_instance_count(client, "probe"), 0);
    pip_client_free(client);
    test_node_stop(discovery);
}

static void
test_late_discovery_registers(void **state)
{
    char url[64];
    pip_registration *reg;
    test_node *discovery;
    pip_client *client;
    int warnings;
    int recoveries;

    (void)state;
    test_dead_url(url, sizeof(url));
    count_lines_start("failed to register");
    reg = registration_start(url, json_pack("{s:s,s:[s],s:i}", "name", "late",
                                            "rpc", "tcp://127.0.0.1:40101",
                                            "lease_ms", 600));

    /* Several attempts fail while discovery is down; one warning is logged. */
    test_sleep_ms(1500);
    warnings = count_lines_stop();
    assert_int_equal(warnings, 1);

    count_lines_start("succeeded after");
    discovery = test_discovery_start(url, NULL);
    client = test_client_new(url, NULL, 1000);
    if (!test_wait_count(client, "late", 1, 5000)) {
        fail_msg("the instance did not register once discovery came up");
    }
    recoveries = count_lines_stop();
    assert_int_equal(recoveries, 1);

    pip_registration_stop(reg);
    assert_int_equal(test_instance_count(client, "late"), 0);
    pip_client_free(client);
    test_node_stop(discovery);
}

static void
test_registration_keeps_lease(void **state)
{
    test_node *discovery = test_discovery_start(NULL, NULL);
    pip_client *client = test_client_new(test_rpc_url(discovery), NULL, 0);
    pip_registration *reg = registration_start(
        test_rpc_url(discovery),
        json_pack("{s:s,s:[s],s:i,s:{s:s}}", "name", "manual", "rpc",
                  "tcp://127.0.0.1:40111", "lease_ms", 600, "metadata", "role",
                  "test"));
    json_t *found;

    (void)state;
    assert_true(test_wait_count(client, "manual", 1, 3000));
    test_sleep_ms(2000);
    found = test_call_ok(client, "discovery.resolve",
                         json_pack("{s:s}", "name", "manual"));
    assert_int_equal(json_array_size(found), 1);
    assert_string_equal(
        string_at(json_object_get(json_array_get(found, 0), "metadata"),
                  "role"),
        "test");
    json_decref(found);

    pip_registration_stop(reg);
    assert_int_equal(test_instance_count(client, "manual"), 0);
    pip_client_free(client);
    test_node_stop(discovery);
}

static void
test_stop_without_discovery_bounded(void **state)
{
    char url[64];
    pip_registration *reg;
    int64_t started_ms;

    (void)state;
    test_dead_url(url, sizeof(url));
    reg = registration_start(url, json_pack("{s:s,s:[s]}", "name", "orphan",
                                            "rpc", "tcp://127.0.0.1:40121"));
    test_sleep_ms(100);
    started_ms = pip_mono_ms();
    pip_registration_stop(reg);
    /* At most one register call (2 s) and no deregister, because the
     * instance never got an id. */
    assert_true(pip_mono_ms() - started_ms < 3500);
}

static void
test_registration_arguments_checked(void **state)
{
    static const char *const instances[] = {
        "{\"rpc\": [\"tcp://127.0.0.1:1\"]}",
        "{\"name\": \"x\"}",
        "{\"name\": \"x\", \"rpc\": []}",
        "[1, 2]",
    };
    pip_registration *reg = NULL;
    json_t *instance;
    pip_error err;
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(instances) / sizeof(instances[0]); i++) {
        instance = test_json(instances[i]);
        pip_error_init(&err);
        assert_int_equal(
            pip_registration_start("tcp://127.0.0.1:1", instance, &reg, &err),
            PIP_E_BAD_REQUEST);
        assert_null(reg);
        pip_error_fini(&err);
        json_decref(instance);
    }

    instance =
        test_json("{\"name\": \"x\", \"rpc\": [\"tcp://127.0.0.1:1\"]}");
    pip_error_init(&err);
    assert_int_equal(pip_registration_start(NULL, instance, &reg, &err),
                     PIP_E_BAD_REQUEST);
    assert_null(reg);
    pip_error_fini(&err);

    pip_error_init(&err);
    assert_int_equal(
        pip_registration_start("nosuch://x", instance, &reg, &err),
        PIP_E_BAD_REQUEST);
    assert_null(reg);
    pip_error_fini(&err);
    json_decref(instance);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_node_registers_itself),
        cmocka_unit_test(test_discovery_restart_repopulated),
        cmocka_unit_test(test_late_discovery_registers),
        cmocka_unit_test(test_registration_keeps_lease),
        cmocka_unit_test(test_stop_without_discovery_bounded),
        cmocka_unit_test(test_registration_arguments_checked),
    };

    return cmocka_run_group_tests(tests, setup, NULL);
}
