/*
 * The discovery service over real sockets: a discovery node in the test
 * process, called through pip_client at its fixed endpoint, and its events
 * followed by a pip_subscriber.
 */
#include "discovery_fixture.h"

typedef struct discovery_fixture {
    test_node *discovery;
    pip_client *client;
} discovery_fixture;

static int
setup(void **state)
{
    discovery_fixture *f = calloc(1, sizeof(*f));

    assert_non_null(f);
    test_quiet_logs();
    f->discovery = test_discovery_start(NULL, NULL);
    f->client = test_client_new(test_rpc_url(f->discovery), NULL, 5000);
    *state = f;
    return 0;
}

static int
teardown(void **state)
{
    discovery_fixture *f = *state;

    pip_client_free(f->client);
    test_node_stop(f->discovery);
    free(f);
    return 0;
}

/* Registers the instance written as JSON; returns discovery's copy. */
static json_t *
register_instance(discovery_fixture *f, const char *instance)
{
    json_t *args = json_pack("{s:o}", "instance", test_json(instance));

    return test_call_ok(f->client, "discovery.register", args);
}

static const char *
instance_id(const json_t *instance)
{
    return json_string_value(json_object_get(instance, "instance_id"));
}

static void
assert_hex_id(const char *id)
{
    assert_non_null(id);
    assert_int_equal(strlen(id), 32);
    assert_int_equal(strspn(id, "0123456789abcdef"), 32);
}

static json_t *
resolve(discovery_fixture *f, const char *name)
{
    return test_call_ok(f->client, "discovery.resolve",
                        json_pack("{s:s}", "name", name));
}

static void
deregister(discovery_fixture *f, const char *id)
{
    json_t *result = test_call_ok(f->client, "discovery.deregister",
                                  json_pack("{s:s}", "instance_id", id));

    assert_null(result);
}

static void
test_register_returns_instance(void **state)
{
    discovery_fixture *f = *state;
    json_t *instance = register_instance(
        f, "{\"name\": \"alpha\", \"version\": \"1.2\", "
           "\"rpc\": [\"tcp://127.0.0.1:40001\", \"ipc:///tmp/alpha\"], "
           "\"pub\": \"tcp://127.0.0.1:40002\", \"host\": \"edge-1\", "
           "\"metadata\": {\"zone\": \"a\"}}");

    assert_hex_id(instance_id(instance));
    assert_string_equal(json_string_value(json_object_get(instance, "name")),
                        "alpha");
    assert_string_equal(
        json_string_value(json_object_get(instance, "version")), "1.2");
    assert_int_equal(json_array_size(json_object_get(instance, "rpc")), 2);
    assert_string_equal(json_string_value(json_object_get(instance, "pub")),
                        "tcp://127.0.0.1:40002");
    assert_string_equal(json_string_value(json_object_get(instance, "host")),
                        "edge-1");
    assert_string_equal(json_string_value(json_object_get(
                            json_object_get(instance, "metadata"), "zone")),
                        "a");
    assert_int_equal(json_integer_value(json_object_get(instance, "lease_ms")),
                     10000);
    assert_true(json_is_string(json_object_get(instance, "registered_time")));
    assert_true(json_is_string(json_object_get(instance, "renewed_time")));
    json_decref(instance);
}

static void
test_resolve_list_deregister(void **state)
{
    discovery_fixture *f = *state;
    json_t *a1 = register_instance(
        f, "{\"name\": \"alpha\", \"rpc\": [\"tcp://127.0.0.1:40011\"]}");
    json_t *a2 = register_instance(
        f, "{\"name\": \"alpha\", \"rpc\": [\"tcp://127.0.0.1:40012\"]}");
    json_t *b1 = register_instance(
        f, "{\"name\": \"beta\", \"rpc\": [\"tcp://127.0.0.1:40013\"]}");
    json_t *alphas = resolve(f, "alpha");
    json_t *all = test_call_ok(f->client, "discovery.list", NULL);
    json_t *none = resolve(f, "gamma");
    const char *first;
    const char *second;

    /* resolve: both alphas, sorted by instance_id */
    assert_int_equal(json_array_size(alphas), 2);
    first = instance_id(json_array_get(alphas, 0));
    second = instance_id(json_array_get(alphas, 1));
    assert_true(strcmp(first, second) < 0);
    assert_true(strcmp(first, instance_id(a1)) == 0 ||
                strcmp(first, instance_id(a2)) == 0);

    /* list: every instance, sorted by name first */
    assert_int_equal(json_array_size(all), 3);
    assert_string_equal(
        json_string_value(json_object_get(json_array_get(all, 2), "name")),
        "beta");
    assert_string_equal(instance_id(json_array_get(all, 2)), instance_id(b1));
    assert_int_equal(json_array_size(none), 0);

    deregister(f, instance_id(a1));
    json_decref(alphas);
    alphas = resolve(f, "alpha");
    assert_int_equal(json_array_size(alphas), 1);
    assert_string_equal(instance_id(json_array_get(alphas, 0)),
                        instance_id(a2));

    /* An unknown id is ignored, so a repeated deregister is harmless. */
    deregister(f, instance_id(a1));
    deregister(f, instance_id(a2));
    deregister(f, instance_id(b1));
    assert_int_equal(test_instance_count(f->client, "alpha"), 0);
    assert_int_equal(test_instance_count(f->client, "beta"), 0);

    json_decref(a1);
    json_decref(a2);
    json_decref(b1);
    json_decref(alphas);
    json_decref(all);
    json_decref(none);
}

static void
test_renew_extends_lease(void **state)
{
    discovery_fixture *f = *state;
    json_t *instance = register_instance(
        f, "{\"name\": \"renewed\", \"rpc\": [\"tcp://127.0.0.1:40021\"], "
           "\"lease_ms\": 1000}");
    json_t *renewed;
    int i;

    assert_int_equal(json_integer_value(json_object_get(instance, "lease_ms")),
                     1000);
    for (i = 0; i < 6; i++) {
        test_sleep_ms(400);
        renewed = test_call_ok(
            f->client, "discovery.renew",
            json_pack("{s:s}", "instance_id", instance_id(instance)));
        assert_string_equal(instance_id(renewed), instance_id(instance));
        json_decref(renewed);
    }
    /* 2.4 s after registering, the 1 s lease is still alive. */
    assert_int_equal(test_instance_count(f->client, "renewed"), 1);
    deregister(f, instance_id(instance));
    json_decref(instance);
}

static void
test_expired_lease_evicts(void **state)
{
    discovery_fixture *f = *state;
    json_t *instance = register_instance(
        f, "{\"name\": \"short\", \"rpc\": [\"tcp://127.0.0.1:40031\"], "
           "\"lease_ms\": 1000}");
    json_t *result = NULL;
    pip_error err;

    assert_int_equal(test_instance_count(f->client, "short"), 1);
    test_sleep_ms(2000);
    assert_int_equal(test_instance_count(f->client, "short"), 0);

    pip_error_init(&err);
    assert_int_equal(
        test_call(f->client, "discovery.renew",
                  json_pack("{s:s}", "instance_id", instance_id(instance)),
                  &result, &err),
        PIP_E_NOT_FOUND);
    assert_string_equal(err.code, "INSTANCE_NOT_FOUND");
    assert_null(result);
    pip_error_fini(&err);
    json_decref(instance);
}

static void
test_renew_unknown_not_found(void **state)
{
    discovery_fixture *f = *state;
    const char *id = "0123456789abcdef0123456789abcdef";
    json_t *result = NULL;
    pip_error err;

    pip_error_init(&err);
    assert_int_equal(test_call(f->client, "discovery.renew",
                               json_pack("{s:s}", "instance_id", id), &result,
                               &err),
                     PIP_E_NOT_FOUND);
    assert_string_equal(err.code, "INSTANCE_NOT_FOUND");
    assert_string_equal(
        json_string_value(json_object_get(err.details, "instance_id")), id);
    assert_null(result);
    pip_error_fini(&err);
}

static void
test_lease_clamped_to_bounds(void **state)
{
    discovery_fixture *f = *state;
    json_t *tiny = register_instance(
        f, "{\"name\": \"tiny\", \"rpc\": [\"tcp://127.0.0.1:40041\"], "
           "\"lease_ms\": 5}");
    json_t *huge = register_instance(
        f, "{\"name\": \"huge\", \"rpc\": [\"tcp://127.0.0.1:40042\"], "
           "\"lease_ms\": 999999999}");

    /* The fixture lowers options.min_lease_ms to 500. */
    assert_int_equal(json_integer_value(json_object_get(tiny, "lease_ms")),
                     500);
    assert_int_equal(json_integer_value(json_object_get(huge, "lease_ms")),
                     300000);
    deregister(f, instance_id(tiny));
    deregister(f, instance_id(huge));
    json_decref(tiny);
    json_decref(huge);
}

static void
test_same_rpc_url_replaces(void **state)
{
    discovery_fixture *f = *state;
    json_t *old = register_instance(
        f, "{\"name\": \"restarted\", \"rpc\": [\"tcp://127.0.0.1:40051\"]}");
    json_t *fresh = register_instance(
        f, "{\"name\": \"restarted\", "
           "\"rpc\": [\"ipc:///tmp/r\", \"tcp://127.0.0.1:40051\"]}");
    json_t *found = resolve(f, "restarted");

    assert_string_not_equal(instance_id(old), instance_id(fresh));
    assert_int_equal(json_array_size(found), 1);
    assert_string_equal(instance_id(json_array_get(found, 0)),
                        instance_id(fresh));
    deregister(f, instance_id(fresh));
    json_decref(old);
    json_decref(fresh);
    json_decref(found);
}

static void
test_register_keeps_given_id(void **state)
{
    discovery_fixture *f = *state;
    json_t *first = register_instance(
        f, "{\"name\": \"kept\", \"rpc\": [\"tcp://127.0.0.1:40061\"], "
           "\"instance_id\": \"00000000000000000000000000000abc\"}");
    json_t *again = register_instance(
        f, "{\"name\": \"kept\", \"rpc\": [\"tcp://127.0.0.1:40062\"], "
           "\"instance_id\": \"00000000000000000000000000000abc\"}");
    json_t *found = resolve(f, "kept");

    assert_string_equal(instance_id(first),
                        "00000000000000000000000000000abc");
    assert_string_equal(instance_id(again), instance_id(first));
    assert_int_equal(json_array_size(found), 1);
    assert_string_equal(
        json_string_value(json_array_get(
            json_object_get(json_array_get(found, 0), "rpc"), 0)),
        "tcp://127.0.0.1:40062");
    deregister(f, instance_id(first));
    json_decref(first);
    json_decref(again);
    json_decref(found);
}

static void
assert_rejected(discovery_fixture *f, json_t *instance, const char *argument)
{
    json_t *args = json_pack("{s:o}", "instance", instance);
    json_t *result = NULL;
    pip_error err;

    pip_error_init(&err);
    assert_int_equal(
        test_call(f->client, "discovery.register", args, &result, &err),
        PIP_E_BAD_REQUEST);
    assert_string_equal(err.code, "INVALID_DATA");
    assert_null(result);
    if (strstr(err.message, argument) == NULL) {
        fail_msg("error '%s' does not name %s", err.message, argument);
    }
    pip_error_fini(&err);
}

static void
test_bad_instances_rejected(void **state)
{
    static const struct {
        const char *instance;
        const char *argument;
    } cases[] = {
        {"{\"rpc\": [\"tcp://127.0.0.1:1\"]}", "name"},
        {"{\"name\": \"\", \"rpc\": [\"tcp://127.0.0.1:1\"]}", "name"},
        {"{\"name\": \"a.b\", \"rpc\": [\"tcp://127.0.0.1:1\"]}", "name"},
        {"{\"name\": 7, \"rpc\": [\"tcp://127.0.0.1:1\"]}", "name"},
        {"{\"name\": \"x\"}", "rpc"},
        {"{\"name\": \"x\", \"rpc\": []}", "rpc"},
        {"{\"name\": \"x\", \"rpc\": \"tcp://127.0.0.1:1\"}", "rpc"},
        {"{\"name\": \"x\", \"rpc\": [\"http://127.0.0.1:1\"]}", "rpc"},
        {"{\"name\": \"x\", \"rpc\": [\"tcp://\"]}", "rpc"},
        {"{\"name\": \"x\", \"rpc\": [42]}", "rpc"},
        {"{\"name\": \"x\", \"rpc\": [\"tcp://127.0.0.1:1\"], "
         "\"pub\": \"udp://127.0.0.1:2\"}",
         "pub"},
        {"{\"name\": \"x\", \"rpc\": [\"tcp://127.0.0.1:1\"], "
         "\"lease_ms\": 0}",
         "lease_ms"},
        {"{\"name\": \"x\", \"rpc\": [\"tcp://127.0.0.1:1\"], "
         "\"lease_ms\": -5}",
         "lease_ms"},
        {"{\"name\": \"x\", \"rpc\": [\"tcp://127.0.0.1:1\"], "
         "\"lease_ms\": \"soon\"}",
         "lease_ms"},
        {"{\"name\": \"x\", \"rpc\": [\"tcp://127.0.0.1:1\"], "
         "\"instance_id\": \"not-hex\"}",
         "instance_id"},
        {"{\"name\": \"x\", \"rpc\": [\"tcp://127.0.0.1:1\"], "
         "\"metadata\": [1]}",
         "metadata"},
    };
    discovery_fixture *f = *state;
    char long_url[400];
    size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        assert_rejected(f, test_json(cases[i].instance), cases[i].argument);
    }

    /* A URL of 257 bytes is one byte too long. */
    memset(long_url, 'a', sizeof(long_url));
    memcpy(long_url, "ipc:///", 7);
    long_url[257] = '\0';
    assert_rejected(f, json_pack("{s:s,s:[s]}", "name", "x", "rpc", long_url),
                    "rpc");

    assert_int_equal(test_instance_count(f->client, "x"), 0);
}

static void
test_instance_not_object_rejected(void **state)
{
    discovery_fixture *f = *state;
    json_t *result = NULL;
    pip_error err;

    pip_error_init(&err);
    assert_int_equal(test_call(f->client, "discovery.register",
                               test_json("{\"instance\": \"alpha\"}"), &result,
                               &err),
                     PIP_E_BAD_REQUEST);
    assert_string_equal(err.code, "INVALID_DATA");
    pip_error_fini(&err);
}

/* Waits for the next event; fails the test after timeout_ms. */
static json_t *
next_event(pip_subscriber *sub, const char *expected_topic, int timeout_ms)
{
    json_t *payload = NULL;
    char *topic = NULL;
    pip_error err;

    pip_error_init(&err);
    if (pip_subscriber_recv(sub, timeout_ms, &topic, &payload, &err) !=
        PIP_OK) {
        fail_msg("no %s event: %s %s", expected_topic, err.code, err.message);
    }
    assert_string_equal(topic, expected_topic);
    free(topic);
    pip_error_fini(&err);
    return payload;
}

static pip_subscriber *
subscribe(discovery_fixture *f)
{
    pip_subscriber *sub = NULL;
    pip_error err;

    pip_error_init(&err);
    assert_int_equal(pip_subscriber_new("discovery.", &sub, &err), PIP_OK);
    assert_int_equal(
        pip_subscriber_dial(sub, pip_node_pub_url(f->discovery->node), &err),
        PIP_OK);
    pip_error_fini(&err);

    /* pub/sub drops what is published before the connection is up. */
    test_sleep_ms(300);
    return sub;
}

static void
test_join_leave_events(void **state)
{
    discovery_fixture *f = *state;
    pip_subscriber *sub = subscribe(f);
    json_t *instance;
    json_t *renewed;
    json_t *event;
    char *topic = NULL;
    json_t *payload = NULL;
    pip_error err;

    instance = register_instance(
        f, "{\"name\": \"evented\", \"rpc\": [\"tcp://127.0.0.1:40071\"], "
           "\"lease_ms\": 1000}");
    event = next_event(sub, "discovery.join", 2000);
    assert_string_equal(instance_id(event), instance_id(instance));
    assert_string_equal(json_string_value(json_object_get(event, "name")),
                        "evented");
    json_decref(event);

    /* Renewing publishes nothing. */
    renewed =
        test_call_ok(f->client, "discovery.renew",
                     json_pack("{s:s}", "instance_id", instance_id(instance)));
    json_decref(renewed);
    pip_error_init(&err);
    assert_int_equal(pip_subscriber_recv(sub, 200, &topic, &payload, &err),
                     PIP_E_TIMEOUT);
    pip_error_fini(&err);

    deregister(f, instance_id(instance));
    event = next_event(sub, "discovery.leave", 2000);
    assert_string_equal(instance_id(event), instance_id(instance));
    json_decref(event);
    json_decref(instance);

    /* An expired lease leaves too. */
    instance = register_instance(
        f, "{\"name\": \"evented\", \"rpc\": [\"tcp://127.0.0.1:40072\"], "
           "\"lease_ms\": 1000}");
    event = next_event(sub, "discovery.join", 2000);
    json_decref(event);
    event = next_event(sub, "discovery.leave", 3000);
    assert_string_equal(instance_id(event), instance_id(instance));
    json_decref(event);
    json_decref(instance);

    pip_subscriber_free(sub);
}

static void
test_subscriber_close_wakes_recv(void **state)
{
    discovery_fixture *f = *state;
    pip_subscriber *sub = subscribe(f);
    json_t *payload = NULL;
    char *topic = NULL;
    pip_error err;

    pip_error_init(&err);
    pip_subscriber_close(sub);
    assert_int_equal(pip_subscriber_recv(sub, 5000, &topic, &payload, &err),
                     PIP_E_UNAVAILABLE);
    assert_null(topic);
    assert_null(payload);
    pip_error_fini(&err);
    pip_subscriber_free(sub);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_register_returns_instance, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_resolve_list_deregister, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_renew_extends_lease, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_expired_lease_evicts, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_renew_unknown_not_found, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_lease_clamped_to_bounds, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_same_rpc_url_replaces, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_register_keeps_given_id, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_bad_instances_rejected, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_instance_not_object_rejected,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_join_leave_events, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_subscriber_close_wakes_recv,
                                        setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
