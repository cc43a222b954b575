/*
 * pip_client against real nodes: two instances of a test service that
 * register with a discovery node in the test process, and calls through
 * discovery or to one fixed endpoint.
 */
#include "discovery_fixture.h"

/* ---- the test service "echo" ---- */

static int
echo_whoami(pip_call *call, json_t *args, json_t **result)
{
    const char *label =
        pip_service_config(pip_call_service(call), "options.label");

    (void)args;
    *result = json_string(label != NULL ? label : "");
    return PIP_OK;
}

static int
echo_echo(pip_call *call, json_t *args, json_t **result)
{
    (void)call;
    *result = json_incref(args);
    return PIP_OK;
}

static int
echo_sleep(pip_call *call, json_t *args, json_t **result)
{
    (void)call;
    (void)result;
    test_sleep_ms((long)json_integer_value(json_object_get(args, "ms")));
    return PIP_OK;
}

static int
echo_fail(pip_call *call, json_t *args, json_t **result)
{
    (void)args;
    (void)result;
    return pip_call_fail(call, PIP_E_CONFLICT, "ECHO_CONFLICT",
                         "The echo service rejects this call");
}

static const pip_field echo_no_args[] = {{.name = NULL}};

static const pip_field echo_sleep_args[] = {
    {"ms", PIP_T_INTEGER, true, 0, 10000, NULL, NULL, "sleep time in ms"},
    {.name = NULL},
};

static const pip_field echo_any_args[] = {
    {"text", PIP_T_STRING, false, 0, 0, NULL, NULL, "any text"},
    {.name = NULL},
};

static const pip_command echo_commands[] = {
    {"whoami", echo_whoami, echo_no_args, "the node's label",
     "Returns options.label"},
    {"echo", echo_echo, echo_any_args, "the arguments", "Returns the args"},
    {"sleep", echo_sleep, echo_sleep_args, "nil", "Sleeps ms milliseconds"},
    {"fail", echo_fail, echo_no_args, "never", "Fails with Conflict"},
    {NULL, NULL, NULL, NULL, NULL},
};

static const pip_config_key echo_config[] = {
    {"options.label", "", "returned by whoami"},
    {NULL, NULL, NULL},
};

static const pip_service_def echo_service = {
    .name = "echo",
    .version = "1.0",
    .route = "v1/echo",
    .doc = "A test service",
    .commands = echo_commands,
    .config = echo_config,
};

/* The same commands under another name, hosted by a node that does not
 * register, so a test can register it with URLs of its choice. */
static const pip_service_def mirror_service = {
    .name = "mirror",
    .version = "1.0",
    .route = "v1/mirror",
    .doc = "A test service",
    .commands = echo_commands,
    .config = echo_config,
};

/* ---- fixture ---- */

typedef struct client_fixture {
    test_node *discovery;
    test_node *echo_a;
    test_node *echo_b;
    pip_client *registry; /* calls discovery itself */
    pip_client *client;   /* calls services through discovery */
} client_fixture;

static test_node *
echo_start(const char *label, const char *discovery_url)
{
    json_t *settings = json_pack("{s:s}", "echo.options.label", label);
    test_node_config config = {
        .def = &echo_service,
        .discovery_url = discovery_url,
        .lease_ms = 2000,
        .settings = settings,
    };
    test_node *n = test_node_start(&config);

    json_decref(settings);
    return n;
}

static int
setup(void **state)
{
    client_fixture *f = calloc(1, sizeof(*f));
    const char *discovery_url;

    assert_non_null(f);
    test_quiet_logs();
    f->discovery = test_discovery_start(NULL, NULL);
    discovery_url = test_rpc_url(f->discovery);
    f->echo_a = echo_start("a", discovery_url);
    f->echo_b = echo_start("b", discovery_url);
    f->registry = test_client_new(discovery_url, NULL, 2000);
    f->client = test_client_new(NULL, discovery_url, 2000);
    if (!test_wait_count(f->registry, "echo", 2, 5000)) {
        fail_msg("the two echo nodes did not register within 5 s");
    }
    *state = f;
    return 0;
}

static int
teardown(void **state)
{
    client_fixture *f = *state;

    pip_client_free(f->client);
    pip_client_free(f->registry);
    test_node_stop(f->echo_a);
    test_node_stop(f->echo_b);
    test_node_stop(f->discovery);
    free(f);
    return 0;
}

static void
count_labels(pip_client *client, int calls, int *a, int *b)
{
    json_t *label;
    int i;

    *a = 0;
    *b = 0;
    for (i = 0; i < calls; i++) {
        label = test_call_ok(client, "echo.whoami", NULL);
        assert_true(json_is_string(label));
        if (strcmp(json_string_value(label), "a") == 0) {
            (*a)++;
        } else if (strcmp(json_string_value(label), "b") == 0) {
            (*b)++;
        } else {
            fail_msg("unexpected label %s", json_string_value(label));
        }
        json_decref(label);
    }
}

/*
 * Calls echo.whoami through client and expects it to fail with
 * UNAVAILABLE and no result.  Fills err, which the caller checks and
 * finalizes, and returns how long the call took in ms.
 */
static int64_t
call_whoami_unavailable(pip_client *client, pip_error *err)
{
    json_t *result = NULL;
    int64_t started_ms = pip_mono_ms();

    pip_error_init(err);
    assert_int_equal(test_call(client, "echo.whoami", NULL, &result, err),
                     PIP_E_UNAVAILABLE);
    assert_null(result);
    return pip_mono_ms() - started_ms;
}

/* ---- tests ---- */

static void
test_calls_spread_over_instances(void **state)
{
    client_fixture *f = *state;
    int a;
    int b;

    count_labels(f->client, 20, &a, &b);
    assert_int_equal(a + b, 20);
    /* Round-robin over two instances alternates. */
    assert_int_equal(a, 10);
    assert_int_equal(b, 10);
}

static void
test_call_returns_result(void **state)
{
    client_fixture *f = *state;
    json_t *result =
        test_call_ok(f->client, "echo.echo", test_json("{\"text\": \"hi\"}"));

    assert_string_equal(json_string_value(json_object_get(result, "text")),
                        "hi");
    json_decref(result);

    result = test_call_ok(f->client, "echo.sleep", test_json("{\"ms\": 0}"));
    assert_null(result);
}

static void
test_slow_handler_times_out(void **state)
{
    client_fixture *f = *state;
    json_t *result = NULL;
    pip_meta meta;
    pip_error err;
    int64_t started_ms;
    int64_t elapsed_ms;
    json_t *args = test_json("{\"ms\": 1500}");
    int rv;
    int a;
    int b;

    memset(&meta, 0, sizeof(meta));
    meta.timeout_ms = 300;
    snprintf(meta.correlation_id, sizeof(meta.correlation_id), "slow-1");
    pip_error_init(&err);
    started_ms = pip_mono_ms();
    rv = pip_client_call(f->client, "echo.sleep", args, &meta, &result, &err);
    elapsed_ms = pip_mono_ms() - started_ms;
    json_decref(args);

    assert_int_equal(rv, PIP_E_TIMEOUT);
    assert_string_equal(err.code, "TIMEOUT");
    assert_non_null(strstr(err.message, "echo.sleep"));
    assert_non_null(strstr(err.message, "300 ms"));
    assert_string_equal(err.correlation_id, "slow-1");
    assert_null(result);
    assert_true(elapsed_ms >= 250);
    assert_true(elapsed_ms < 1200);
    pip_error_fini(&err);

    /* Both instances still reply afterwards. */
    count_labels(f->client, 4, &a, &b);
    assert_int_equal(a, 2);
    assert_int_equal(b, 2);
}

static void
test_unknown_service_not_found(void **state)
{
    client_fixture *f = *state;
    json_t *result = NULL;
    pip_error err;

    pip_error_init(&err);
    assert_int_equal(test_call(f->client, "nosuch.ping", NULL, &result, &err),
                     PIP_E_UNAVAILABLE);
    assert_string_equal(err.code, "SERVICE_NOT_FOUND");
    assert_non_null(strstr(err.message, "nosuch"));
    assert_non_null(strstr(err.message, "pipcall list"));
    assert_non_null(strstr(err.message, test_rpc_url(f->discovery)));
    assert_string_equal(
        json_string_value(json_object_get(err.details, "service")), "nosuch");
    assert_null(result);
    pip_error_fini(&err);
}

static void
test_remote_error_passed_through(void **state)
{
    client_fixture *f = *state;
    json_t *result = NULL;
    pip_error err;

    pip_error_init(&err);
    assert_int_equal(test_call(f->client, "echo.fail", NULL, &result, &err),
                     PIP_E_CONFLICT);
    assert_string_equal(err.code, "ECHO_CONFLICT");
    assert_string_equal(err.message, "The echo service rejects this call");
    assert_null(result);
    pip_error_fini(&err);

    /* A bad argument is rejected by the remote node's schema. */
    pip_error_init(&err);
    assert_int_equal(test_call(f->client, "echo.sleep",
                               test_json("{\"ms\": \"long\"}"), &result, &err),
                     PIP_E_BAD_REQUEST);
    assert_string_equal(err.code, "INVALID_DATA");
    pip_error_fini(&err);
}

static void
test_invalid_method_rejected(void **state)
{
    /* Names are lower case, as nodes require, so Echo.whoami fails here
     * and does not become a search for a service named Echo. */
    static const char *const methods[] = {"echo",         ".whoami", "echo.",
                                          "",             "Echo.whoami",
                                          "echo.who-ami", "echo.a.b"};
    client_fixture *f = *state;
    json_t *result = NULL;
    pip_error err;
    size_t i;

    for (i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
        pip_error_init(&err);
        assert_int_equal(test_call(f->client, methods[i], NULL, &result, &err),
                         PIP_E_BAD_REQUEST);
        assert_string_equal(err.code, "INVALID_METHOD");
        pip_error_fini(&err);
    }
}

static void
test_discovery_called_directly(void **state)
{
    client_fixture *f = *state;
    json_t *instances;

    /* discovery does not list itself, yet its commands are reachable
     * through a client that has only the discovery URL. */
    instances = test_call_ok(f->client, "discovery.resolve",
                             json_pack("{s:s}", "name", "echo"));
    assert_int_equal(json_array_size(instances), 2);
    json_decref(instances);
}

static void
test_fixed_endpoint_calls(void **state)
{
    client_fixture *f = *state;
    pip_client *client = test_client_new(test_rpc_url(f->echo_b), NULL, 0);
    json_t *label;
    int i;

    for (i = 0; i < 5; i++) {
        label = test_call_ok(client, "echo.whoami", NULL);
        assert_string_equal(json_string_value(label), "b");
        json_decref(label);
    }
    pip_client_free(client);
}

static void
test_dead_endpoint_fails(void **state)
{
    char url[64];
    pip_client *client;
    pip_error err;

    (void)state;
    test_dead_url(url, sizeof(url));
    client = test_client_new(url, NULL, 300);
    assert_true(call_whoami_unavailable(client, &err) < 1000);
    assert_string_equal(err.code, "CONNECTION_FAILED");
    assert_non_null(strstr(err.message, url));
    pip_error_fini(&err);
    pip_client_free(client);
}

static void
test_dead_instance_skipped(void **state)
{
    client_fixture *f = *state;
    char host[256] = "";
    char url[64];
    json_t *registered;
    json_t *args;
    int a;
    int b;

    /* An instance that registered but does not run: calls that cannot
     * reach it were never sent, so they go to the next instance. */
    test_dead_url(url, sizeof(url));
    gethostname(host, sizeof(host) - 1);
    args = json_pack("{s:{s:s,s:[s],s:s}}", "instance", "name", "echo", "rpc",
                     url, "host", host);
    registered = test_call_ok(f->registry, "discovery.register", args);
    assert_int_equal(test_instance_count(f->registry, "echo"), 3);

    count_labels(f->client, 12, &a, &b);
    assert_int_equal(a + b, 12);
    assert_true(a >= 3);
    assert_true(b >= 3);

    json_decref(
        test_call_ok(f->registry, "discovery.deregister",
                     json_pack("{s:O}", "instance_id",
                               json_object_get(registered, "instance_id"))));
    json_decref(registered);
}

static json_t *
register_fake(client_fixture *f, const char *name, const char *host,
              const char *first_url, const char *second_url)
{
    json_t *args = json_pack("{s:{s:s,s:s,s:[s,s]}}", "instance", "name", name,
                             "host", host, "rpc", first_url, second_url);

    return test_call_ok(f->registry, "discovery.register", args);
}

static void
test_ipc_preferred_on_same_host(void **state)
{
    client_fixture *f = *state;
    json_t *settings = json_pack("{s:s}", "mirror.options.label", "c");
    char host[256] = "";
    char ipc_url[PATH_MAX + 32];
    char dead_url[64];
    test_node_config config = {
        .def = &mirror_service,
        .listen_also = ipc_url,
        .settings = settings,
    };
    test_node *mirror;
    json_t *near;
    json_t *far;
    json_t *label;
    json_t *result = NULL;
    pip_error err;

    /* The mirror node listens on tcp and ipc; the instances registered for
     * it advertise a dead tcp URL next to the live ipc URL. */
    snprintf(ipc_url, sizeof(ipc_url), "ipc://%s/mirror.ipc",
             f->discovery->dir);
    test_dead_url(dead_url, sizeof(dead_url));
    gethostname(host, sizeof(host) - 1);
    mirror = test_node_start(&config);
    json_decref(settings);

    /* On this host the client takes the ipc URL, so the call arrives. */
    near = register_fake(f, "mirror", host, dead_url, ipc_url);
    label = test_call_ok(f->client, "mirror.whoami", NULL);
    assert_string_equal(json_string_value(label), "c");
    json_decref(label);

    /* On another host ipc cannot reach the node, so the client takes the
     * tcp URL, which is dead here. */
    far = register_fake(f, "faraway", "another-host", ipc_url, dead_url);
    pip_error_init(&err);
    assert_int_equal(
        test_call(f->client, "faraway.whoami", NULL, &result, &err),
        PIP_E_UNAVAILABLE);
    assert_string_equal(err.code, "CONNECTION_FAILED");
    assert_non_null(strstr(err.message, dead_url));
    pip_error_fini(&err);

    json_decref(near);
    json_decref(far);
    test_node_stop(mirror);
}

static void
test_stopped_instance_forgotten(void **state)
{
    client_fixture *f = *state;
    int a;
    int b;

    count_labels(f->client, 2, &a, &b);

    /* A clean stop deregisters at once, and the leave event drops the
     * resolver's cache, so every later call goes to b. */
    test_node_stop(f->echo_a);
    f->echo_a = NULL;
    count_labels(f->client, 6, &a, &b);
    assert_int_equal(a, 0);
    assert_int_equal(b, 6);
}

static void
test_discovery_unreachable_fails(void **state)
{
    char url[64];
    pip_client *client;
    pip_error err;

    (void)state;
    test_dead_url(url, sizeof(url));
    client = test_client_new(NULL, url, 400);
    assert_true(call_whoami_unavailable(client, &err) < 1500);
    assert_string_equal(err.code, "CONNECTION_FAILED");
    assert_non_null(strstr(err.message, "echo"));
    pip_error_fini(&err);
    pip_client_free(client);
}

/* The detail of err named key, or "" when it is missing. */
static const char *
test_detail(const pip_error *err, const char *key)
{
    const char *value = json_string_value(json_object_get(err->details, key));

    return value != NULL ? value : "";
}

static void
test_refused_endpoint_fails_fast(void **state)
{
    char url[64];
    pip_client *client;
    pip_error err;
    int64_t took_ms;

    (void)state;
    /* With the default timeout of 10 s, a refused connection still ends
     * the call after about a second. */
    test_dead_url(url, sizeof(url));
    client = test_client_new(url, NULL, 0);
    took_ms = call_whoami_unavailable(client, &err);
    assert_true(took_ms >= 900);
    assert_true(took_ms < 3000);
    assert_string_equal(err.code, "CONNECTION_FAILED");
    assert_string_equal(test_detail(&err, "cause"), "connection refused");
    assert_string_equal(test_detail(&err, "url"), url);
    assert_non_null(strstr(err.message, "refused"));
    pip_error_fini(&err);
    pip_client_free(client);
}

static void
test_refused_discovery_fails_fast(void **state)
{
    char url[64];
    pip_client *client;
    pip_error err;

    (void)state;
    test_dead_url(url, sizeof(url));
    client = test_client_new(NULL, url, 0);
    assert_true(call_whoami_unavailable(client, &err) < 3000);
    assert_string_equal(err.code, "CONNECTION_FAILED");
    /* The resolve failure keeps the URL and the cause, so that a program
     * can tell that discovery itself is down. */
    assert_string_equal(test_detail(&err, "cause"), "connection refused");
    assert_string_equal(test_detail(&err, "url"), url);
    assert_string_equal(test_detail(&err, "service"), "echo");
    pip_error_fini(&err);
    pip_client_free(client);
}

static void
test_endpoint_reached_after_refusal(void **state)
{
    char url[64];
    test_node_config config = {.def = &echo_service, .listen = url};
    test_node *node;
    pip_client *client;
    json_t *label;
    pip_error err;

    (void)state;
    /* A call that failed fast leaves the dialer redialing, so the node is
     * reached once it listens, with no new client. */
    test_dead_url(url, sizeof(url));
    client = test_client_new(url, NULL, 0);
    call_whoami_unavailable(client, &err);
    pip_error_fini(&err);

    node = test_node_start(&config);
    label = test_call_ok(client, "echo.whoami", NULL);
    assert_true(json_is_string(label));
    json_decref(label);
    pip_client_free(client);
    test_node_stop(node);
}

static void
test_client_options_checked(void **state)
{
    pip_client_options opt;
    pip_client *client = NULL;
    pip_error err;

    (void)state;
    pip_client_options_init(&opt);
    pip_error_init(&err);
    assert_int_equal(pip_client_new(&opt, &client, &err), PIP_E_BAD_REQUEST);
    assert_string_equal(err.code, "INVALID_OPTION");
    assert_null(client);
    pip_error_fini(&err);

    opt.endpoint = "tcp://127.0.0.1:1";
    opt.discovery_url = "tcp://127.0.0.1:2";
    pip_error_init(&err);
    assert_int_equal(pip_client_new(&opt, &client, &err), PIP_E_BAD_REQUEST);
    assert_null(client);
    pip_error_fini(&err);

    opt.discovery_url = NULL;
    opt.endpoint = "bogus://where";
    pip_error_init(&err);
    assert_int_equal(pip_client_new(&opt, &client, &err), PIP_E_BAD_REQUEST);
    assert_string_equal(err.code, "INVALID_URL");
    assert_null(client);
    pip_error_fini(&err);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_calls_spread_over_instances,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_call_returns_result, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_slow_handler_times_out, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_unknown_service_not_found, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_remote_error_passed_through,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_invalid_method_rejected, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_discovery_called_directly, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_fixed_endpoint_calls, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_dead_endpoint_fails, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_dead_instance_skipped, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_ipc_preferred_on_same_host, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_stopped_instance_forgotten, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_discovery_unreachable_fails,
                                        setup, teardown),
        cmocka_unit_test(test_client_options_checked),
        cmocka_unit_test(test_refused_endpoint_fails_fast),
        cmocka_unit_test(test_refused_discovery_fails_fast),
        cmocka_unit_test(test_endpoint_reached_after_refusal),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
