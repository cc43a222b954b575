/*
 * The node runtime against a real node: calls over a raw NNG req socket,
 * batches, concurrency, deadlines, built-in commands, in-process calls,
 * events, timers, settings and shutdown.
 */
#include "node_fixture.h"

#include <nng/protocol/pubsub0/sub.h>

#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include "pip/discovery.h"
#include "pip/log.h"

static void
test_echo_returns_args(void **state)
{
    node_fixture *f = *state;
    pip_response resp;

    fixture_call(f, "demo.echo", "{\"text\": \"hi\"}", &resp);
    assert_false(resp.failed);
    assert_string_equal(
        json_string_value(json_object_get(resp.result, "text")), "hi");
    pip_response_fini(&resp);
}

static void
test_add_sums_integers(void **state)
{
    node_fixture *f = *state;
    pip_response resp;

    fixture_call(f, "demo.add", "{\"a\": 2, \"b\": 3}", &resp);
    assert_false(resp.failed);
    assert_int_equal(json_integer_value(resp.result), 5);
    pip_response_fini(&resp);
}

static void
test_error_carries_code_and_cid(void **state)
{
    node_fixture *f = *state;
    pip_meta meta = {.correlation_id = "cid-123"};
    pip_response resp;

    fixture_call_on(f, f->sock, "demo.fail", NULL, &meta, &resp);
    fixture_expect_error(&resp, PIP_E_CONFLICT, "DEMO_CONFLICT");
    assert_string_equal(resp.error.correlation_id, "cid-123");
    assert_string_equal(resp.error.message,
                        "The demo record changed meanwhile.");
    pip_response_fini(&resp);
}

static void
test_bare_failure_gets_exec_failed(void **state)
{
    node_fixture *f = *state;
    pip_response resp;

    fixture_call(f, "demo.fail_bare", NULL, &resp);
    fixture_expect_error(&resp, PIP_E_INTERNAL, "EXEC_FAILED");
    assert_non_null(strstr(resp.error.message, "demo.fail_bare"));
    pip_response_fini(&resp);
}

static void
test_schema_violation_names_argument(void **state)
{
    node_fixture *f = *state;
    pip_meta meta = {.correlation_id = "cid-schema"};
    pip_response resp;

    fixture_call_on(f, f->sock, "demo.add", "{\"a\": \"two\", \"b\": 3}",
                    &meta, &resp);
    fixture_expect_error(&resp, PIP_E_BAD_REQUEST, "INVALID_DATA");
    assert_string_equal(
        json_string_value(json_object_get(resp.error.details, "argument")),
        "a");
    assert_string_equal(resp.error.correlation_id, "cid-schema");
    pip_response_fini(&resp);

    fixture_call(f, "demo.add", "{\"a\": 1}", &resp);
    fixture_expect_error(&resp, PIP_E_BAD_REQUEST, "INVALID_DATA");
    assert_string_equal(
        json_string_value(json_object_get(resp.error.details, "argument")),
        "b");
    pip_response_fini(&resp);
}

static bool
describe_has_command(const json_t *describe, const char *name)
{
    const json_t *commands = json_object_get(describe, "commands");
    size_t i;
    json_t *cmd;

    json_array_foreach(commands, i, cmd)
    {
        const char *cmd_name = json_string_value(json_object_get(cmd, "name"));

        if (cmd_name != NULL && strcmp(cmd_name, name) == 0) {
            return true;
        }
    }
    return false;
}

static void
test_describe_lists_commands(void **state)
{
    node_fixture *f = *state;
    static const char *const names[] = {"echo",   "add",        "fail",
                                        "slow",   "ping",       "describe",
                                        "health", "statistics", NULL};
    pip_response resp;
    json_t *config;

    fixture_call(f, "demo.describe", NULL, &resp);
    assert_false(resp.failed);
    assert_string_equal(
        json_string_value(json_object_get(resp.result, "name")), "demo");
    assert_string_equal(
        json_string_value(json_object_get(resp.result, "route")), "v1/demo");
    for (int i = 0; names[i] != NULL; i++) {
        if (!describe_has_command(resp.result, names[i])) {
            fail_msg("describe does not list %s", names[i]);
        }
    }
    config = json_array_get(json_object_get(resp.result, "config"), 0);
    assert_string_equal(json_string_value(json_object_get(config, "key")),
                        "options.greeting");
    assert_string_equal(json_string_value(json_object_get(config, "default")),
                        "hello");
    assert_string_equal(json_string_value(json_array_get(
                            json_object_get(resp.result, "events"), 0)),
                        "changed");
    pip_response_fini(&resp);
}

static void
test_ping_and_health(void **state)
{
    node_fixture *f = *state;
    pip_response resp;

    fixture_call(f, "demo.ping", NULL, &resp);
    assert_false(resp.failed);
    assert_null(resp.result);
    pip_response_fini(&resp);

    fixture_call(f, "demo.health", NULL, &resp);
    assert_false(resp.failed);
    assert_string_equal(
        json_string_value(json_object_get(resp.result, "status")), "ok");
    assert_string_equal(
        json_string_value(json_object_get(resp.result, "service")), "demo");
    assert_true(json_is_integer(json_object_get(resp.result, "uptime_ms")));
    pip_response_fini(&resp);
}

static void
test_statistics_count_calls(void **state)
{
    node_fixture *f = *state;
    pip_response resp;
    json_t *echo;
    json_t *fail;

    for (int i = 0; i < 3; i++) {
        fixture_call(f, "demo.echo", "{\"text\": \"x\"}", &resp);
        pip_response_fini(&resp);
    }
    fixture_call(f, "demo.fail", NULL, &resp);
    pip_response_fini(&resp);

    fixture_call(f, "demo.statistics", NULL, &resp);
    assert_false(resp.failed);
    echo = json_object_get(json_object_get(resp.result, "commands"), "echo");
    fail = json_object_get(json_object_get(resp.result, "commands"), "fail");
    assert_int_equal(json_integer_value(json_object_get(echo, "calls")), 3);
    assert_int_equal(json_integer_value(json_object_get(echo, "errors")), 0);
    assert_int_equal(json_integer_value(json_object_get(fail, "calls")), 1);
    assert_int_equal(json_integer_value(json_object_get(fail, "errors")), 1);
    assert_true(json_integer_value(json_object_get(echo, "p99_us")) <=
                json_integer_value(json_object_get(echo, "max_us")));
    assert_true(json_integer_value(json_object_get(echo, "p50_us")) <=
                json_integer_value(json_object_get(echo, "p99_us")));
    assert_non_null(json_object_get(echo, "avg_us"));
    pip_response_fini(&resp);
}

static void
test_statistics_time_slow_calls(void **state)
{
    node_fixture *f = *state;
    pip_response resp;
    json_t *slow;

    fixture_call(f, "demo.slow", NULL, &resp);
    pip_response_fini(&resp);

    fixture_call(f, "demo.statistics", NULL, &resp);
    slow = json_object_get(json_object_get(resp.result, "commands"), "slow");
    assert_true(json_integer_value(json_object_get(slow, "max_us")) >=
                DEMO_SLOW_MS * 1000);
    /* The histogram's estimate is within a bucket (about 12%). */
    assert_true(json_integer_value(json_object_get(slow, "p50_us")) >=
                DEMO_SLOW_MS * 1000 * 88 / 100);
    pip_response_fini(&resp);
}

static void
test_node_builtins(void **state)
{
    node_fixture *f = *state;
    pip_response resp;
    json_t *service;

    fixture_call(f, "node.ping", NULL, &resp);
    assert_false(resp.failed);
    pip_response_fini(&resp);

    fixture_call(f, "node.describe", NULL, &resp);
    assert_false(resp.failed);
    assert_string_equal(
        json_string_value(json_object_get(resp.result, "node")), "node-test");
    service = json_array_get(json_object_get(resp.result, "services"), 0);
    assert_string_equal(json_string_value(json_object_get(service, "name")),
                        "demo");
    assert_true(describe_has_command(service, "echo"));
    assert_string_equal(json_string_value(json_array_get(
                            json_object_get(resp.result, "rpc"), 0)),
                        pip_node_rpc_url(f->node, 0));
    pip_response_fini(&resp);

    fixture_call(f, "node.health", NULL, &resp);
    assert_false(resp.failed);
    assert_string_equal(
        json_string_value(json_object_get(resp.result, "status")), "ok");
    pip_response_fini(&resp);

    fixture_call(f, "node.statistics", NULL, &resp);
    assert_false(resp.failed);
    assert_non_null(
        json_object_get(json_object_get(resp.result, "services"), "demo"));
    pip_response_fini(&resp);
}

static void
test_batch_answered_in_order(void **state)
{
    node_fixture *f = *state;
    pip_response resp[FIXTURE_MAX_RESPONSES];
    msgpack_sbuffer sbuf;
    int count;

    msgpack_sbuffer_init(&sbuf);
    fixture_pack(&sbuf, 10, "demo.add", "{\"a\": 1, \"b\": 1}", NULL);
    fixture_pack(&sbuf, 11, "demo.echo", "{\"text\": \"second\"}", NULL);
    fixture_pack(&sbuf, 12, "demo.fail", NULL, NULL);
    fixture_send(f->sock, sbuf.data, sbuf.size);
    msgpack_sbuffer_destroy(&sbuf);

    count = fixture_recv(f->sock, resp, FIXTURE_MAX_RESPONSES);
    assert_int_equal(count, 3);
    assert_int_equal(resp[0].msgid, 10);
    assert_int_equal(json_integer_value(resp[0].result), 2);
    assert_int_equal(resp[1].msgid, 11);
    assert_string_equal(
        json_string_value(json_object_get(resp[1].result, "text")), "second");
    assert_int_equal(resp[2].msgid, 12);
    fixture_expect_error(&resp[2], PIP_E_CONFLICT, "DEMO_CONFLICT");
    fixture_free_responses(resp, count);
}

static void
test_slow_call_does_not_block_fast(void **state)
{
    node_fixture *f = *state;
    nng_socket other = fixture_dial(f, FIXTURE_RECV_TIMEOUT_MS);
    pip_response slow[1];
    pip_response fast[1];
    msgpack_sbuffer sbuf;
    int64_t start_ms = pip_mono_ms();
    int64_t fast_ms;
    int64_t slow_ms;

    msgpack_sbuffer_init(&sbuf);
    fixture_pack(&sbuf, 1, "demo.slow", NULL, NULL);
    fixture_send(f->sock, sbuf.data, sbuf.size);
    msgpack_sbuffer_clear(&sbuf);
    fixture_sleep_ms(20);
    fixture_pack(&sbuf, 2, "demo.echo", "{\"text\": \"fast\"}", NULL);
    fixture_send(other, sbuf.data, sbuf.size);
    msgpack_sbuffer_destroy(&sbuf);

    assert_int_equal(fixture_recv(other, fast, 1), 1);
    fast_ms = pip_mono_ms() - start_ms;
    assert_int_equal(fixture_recv(f->sock, slow, 1), 1);
    slow_ms = pip_mono_ms() - start_ms;

    assert_false(fast[0].failed);
    assert_false(slow[0].failed);
    assert_true(fast_ms < DEMO_SLOW_MS - 50);
    assert_true(slow_ms >= DEMO_SLOW_MS);
    fixture_free_responses(fast, 1);
    fixture_free_responses(slow, 1);
    nng_close(other);
}

static void
test_expired_deadline_gives_timeout(void **state)
{
    node_fixture *f = *state;
    pip_meta short_meta = {.correlation_id = "late", .timeout_ms = 50};
    pip_meta long_meta = {.timeout_ms = 10000};
    pip_response resp[FIXTURE_MAX_RESPONSES];
    msgpack_sbuffer sbuf;
    int count;

    /* The batch runs in order, so the echo waits for the slow call. */
    msgpack_sbuffer_init(&sbuf);
    fixture_pack(&sbuf, 1, "demo.slow", NULL, NULL);
    fixture_pack(&sbuf, 2, "demo.echo", "{\"text\": \"a\"}", &short_meta);
    fixture_pack(&sbuf, 3, "demo.echo", "{\"text\": \"b\"}", &long_meta);
    fixture_send(f->sock, sbuf.data, sbuf.size);
    msgpack_sbuffer_destroy(&sbuf);

    count = fixture_recv(f->sock, resp, FIXTURE_MAX_RESPONSES);
    assert_int_equal(count, 3);
    assert_false(resp[0].failed);
    fixture_expect_error(&resp[1], PIP_E_TIMEOUT, "TIMEOUT");
    assert_string_equal(resp[1].error.correlation_id, "late");
    assert_false(resp[2].failed);
    fixture_free_responses(resp, count);
}

static void
test_in_process_call(void **state)
{
    node_fixture *f = *state;
    pip_meta meta = {.correlation_id = "inproc"};
    json_t *args = json_pack("{s:i, s:i}", "a", 20, "b", 22);
    json_t *result = NULL;
    pip_error err;

    pip_error_init(&err);
    assert_int_equal(
        pip_node_call(f->node, "demo.add", args, NULL, &result, &err), PIP_OK);
    assert_int_equal(json_integer_value(result), 42);
    json_decref(result);

    assert_int_equal(
        pip_node_call(f->node, "demo.fail", NULL, &meta, &result, &err),
        PIP_E_CONFLICT);
    assert_null(result);
    assert_string_equal(err.code, "DEMO_CONFLICT");
    assert_string_equal(err.correlation_id, "inproc");
    pip_error_fini(&err);

    json_object_set_new(args, "a", json_string("twenty"));
    assert_int_equal(
        pip_node_call(f->node, "demo.add", args, NULL, &result, &err),
        PIP_E_BAD_REQUEST);
    assert_string_equal(err.code, "INVALID_DATA");
    pip_error_fini(&err);

    assert_int_equal(
        pip_node_call(f->node, "demo.nosuch", NULL, NULL, &result, &err),
        PIP_E_NOT_FOUND);
    assert_string_equal(err.code, "UNKNOWN_COMMAND");
    pip_error_fini(&err);

    assert_int_equal(pip_node_call(f->node, "demo", NULL, NULL, &result, &err),
                     PIP_E_BAD_REQUEST);
    assert_string_equal(err.code, "INVALID_METHOD");
    pip_error_fini(&err);
    json_decref(args);
}

static void
test_in_process_call_is_counted(void **state)
{
    node_fixture *f = *state;
    json_t *result = NULL;
    json_t *calls;
    pip_error err;

    pip_error_init(&err);
    assert_int_equal(
        pip_node_call(f->node, "demo.ping", NULL, NULL, &result, &err),
        PIP_OK);
    assert_int_equal(
        pip_node_call(f->node, "demo.statistics", NULL, NULL, &result, &err),
        PIP_OK);
    calls = json_object_get(
        json_object_get(json_object_get(result, "commands"), "ping"), "calls");
    assert_int_equal(json_integer_value(calls), 1);
    json_decref(result);
    pip_error_fini(&err);
}

static void
test_events_reach_subscriber(void **state)
{
    node_fixture *f = *state;
    json_t *payload = json_pack("{s:i}", "n", 7);
    pip_limits lim;
    nng_socket sub;
    pip_error err;
    char *buf = NULL;
    size_t len = 0;
    char *topic = NULL;
    json_t *got = NULL;
    int rv = NNG_ETIMEDOUT;

    pip_limits_default(&lim);
    pip_error_init(&err);
    assert_int_equal(nng_sub0_open(&sub), 0);
    assert_int_equal(nng_socket_set(sub, NNG_OPT_SUB_SUBSCRIBE, "demo.", 5),
                     0);
    assert_int_equal(nng_socket_set_ms(sub, NNG_OPT_RECVTIMEO, 50), 0);
    assert_int_equal(nng_dial(sub, pip_node_pub_url(f->node), NULL, 0), 0);

    /* A subscriber misses what is sent before its connection is up, so
     * publish until one arrives (bounded: 100 tries of 50 ms). */
    for (int i = 0; i < 100 && rv == NNG_ETIMEDOUT; i++) {
        assert_int_equal(
            pip_service_publish(demo_service, "changed", payload, &err),
            PIP_OK);
        rv = nng_recv(sub, &buf, &len, NNG_FLAG_ALLOC);
    }
    assert_int_equal(rv, 0);
    assert_int_equal(pip_event_decode(buf, len, &lim, &topic, &got, &err),
                     PIP_OK);
    assert_string_equal(topic, "demo.changed");
    assert_true(json_equal(got, payload));

    assert_int_not_equal(pip_service_publish(demo_service, "", payload, &err),
                         PIP_OK);
    assert_string_equal(err.code, "INVALID_EVENT");

    free(topic);
    json_decref(got);
    json_decref(payload);
    nng_free(buf, len);
    pip_error_fini(&err);
    nng_close(sub);
}

static void
test_timer_runs_until_close(void **state)
{
    node_fixture *f = *state;
    int runs;

    (void)f;
    fixture_sleep_ms(200);
    runs = atomic_load(&demo_timer_runs);
    /* 20 ms period: about 10 runs; a loaded machine may manage fewer. */
    assert_true(runs >= 2);
    assert_int_equal(atomic_load(&demo_closed), 0);
}

static void
test_shutdown_answers_slow_call(void **state)
{
    node_fixture *f = *state;
    pip_response resp[1];
    msgpack_sbuffer sbuf;
    int runs;

    msgpack_sbuffer_init(&sbuf);
    fixture_pack(&sbuf, 1, "demo.slow", NULL, NULL);
    fixture_send(f->sock, sbuf.data, sbuf.size);
    msgpack_sbuffer_destroy(&sbuf);
    fixture_sleep_ms(100);

    pip_node_free(f->node);
    f->node = NULL;

    assert_int_equal(fixture_recv(f->sock, resp, 1), 1);
    assert_false(resp[0].failed);
    assert_string_equal(json_string_value(resp[0].result), "slow");
    fixture_free_responses(resp, 1);

    /* Timers stopped before the close hook, and it ran. */
    assert_int_equal(atomic_load(&demo_closed), 1);
    runs = atomic_load(&demo_timer_runs);
    fixture_sleep_ms(60);
    assert_int_equal(atomic_load(&demo_timer_runs), runs);
}

/*
 * With the one worker busy, built-in commands still reply at once because
 * they run on NNG's threads.  A batch that also names a command of the service
 * waits for the worker, and its replies stay in order.
 */
/* How long test_builtins_skip_busy_workers lets demo.slow start. */
#define SKIP_BUSY_SETTLE_MS 100

static void
test_builtins_skip_busy_workers(void **state)
{
    node_fixture *f = fixture_new();
    pip_response resp[FIXTURE_MAX_RESPONSES];
    msgpack_sbuffer sbuf;
    nng_socket quick;
    nng_socket mixed;
    int64_t start_ms;
    int count;

    *state = f;
    f->options.workers = 1;
    fixture_start(f);
    quick = fixture_dial(f, FIXTURE_RECV_TIMEOUT_MS);
    mixed = fixture_dial(f, FIXTURE_RECV_TIMEOUT_MS);

    msgpack_sbuffer_init(&sbuf);
    fixture_pack(&sbuf, 1, "demo.slow", NULL, NULL);
    fixture_send(f->sock, sbuf.data, sbuf.size);
    /* Long enough for the one worker to take demo.slow even on a loaded
     * machine, so the echo below queues behind it. */
    fixture_sleep_ms(SKIP_BUSY_SETTLE_MS);
    start_ms = pip_mono_ms();

    msgpack_sbuffer_clear(&sbuf);
    fixture_pack(&sbuf, 2, "demo.ping", NULL, NULL);
    fixture_pack(&sbuf, 3, "node.statistics", NULL, NULL);
    fixture_send(quick, sbuf.data, sbuf.size);
    msgpack_sbuffer_clear(&sbuf);
    fixture_pack(&sbuf, 4, "demo.ping", NULL, NULL);
    fixture_pack(&sbuf, 5, "demo.echo", "{\"text\": \"queued\"}", NULL);
    fixture_send(mixed, sbuf.data, sbuf.size);
    msgpack_sbuffer_destroy(&sbuf);

    count = fixture_recv(quick, resp, FIXTURE_MAX_RESPONSES);
    assert_true(pip_mono_ms() - start_ms <
                DEMO_SLOW_MS - SKIP_BUSY_SETTLE_MS - 50);
    assert_int_equal(count, 2);
    assert_false(resp[0].failed);
    assert_false(resp[1].failed);
    assert_int_equal(resp[1].msgid, 3);
    fixture_free_responses(resp, count);

    count = fixture_recv(mixed, resp, FIXTURE_MAX_RESPONSES);
    assert_true(pip_mono_ms() - start_ms >=
                DEMO_SLOW_MS - SKIP_BUSY_SETTLE_MS - 20);
    assert_int_equal(count, 2);
    assert_int_equal(resp[0].msgid, 4);
    assert_string_equal(
        json_string_value(json_object_get(resp[1].result, "text")), "queued");
    fixture_free_responses(resp, count);

    assert_int_equal(fixture_recv(f->sock, resp, 1), 1);
    assert_false(resp[0].failed);
    fixture_free_responses(resp, 1);
    nng_close(quick);
    nng_close(mixed);
}

#define PING_LOOP_MAX_CALLS 20000

/* A client that pings until a call fails, at most PING_LOOP_MAX_CALLS
 * times. */
typedef struct ping_loop {
    nng_socket sock;
    const msgpack_sbuffer *request; /* packed on the test's thread */
    pthread_t thread;
    int replies;
} ping_loop;

static void *
ping_loop_main(void *arg)
{
    ping_loop *loop = arg;

    for (int i = 0; i < PING_LOOP_MAX_CALLS; i++) {
        void *reply = NULL;
        size_t len = 0;

        if (nng_send(loop->sock, loop->request->data, loop->request->size,
                     0) != 0 ||
            nng_recv(loop->sock, &reply, &len, NNG_FLAG_ALLOC) != 0) {
            break;
        }
        nng_free(reply, len);
        loop->replies++;
    }
    return NULL;
}

/* Pings that run on NNG's threads while the node stops: the stop waits
 * for them, and nothing they touch is freed under them. */
static void
test_shutdown_during_pings(void **state)
{
    node_fixture *f = *state;
    ping_loop loops[3];
    msgpack_sbuffer request;

    msgpack_sbuffer_init(&request);
    fixture_pack(&request, 7, "demo.ping", NULL, NULL);
    for (int i = 0; i < 3; i++) {
        loops[i].sock = fixture_dial(f, 1000);
        loops[i].request = &request;
        loops[i].replies = 0;
        assert_int_equal(pthread_create(&loops[i].thread, NULL,
                                        ping_loop_main, &loops[i]),
                         0);
    }
    fixture_sleep_ms(100);
    pip_node_free(f->node);
    f->node = NULL;
    for (int i = 0; i < 3; i++) {
        pthread_join(loops[i].thread, NULL);
        assert_true(loops[i].replies > 0);
        nng_close(loops[i].sock);
    }
    msgpack_sbuffer_destroy(&request);
}

static void
test_setting_overrides_default(void **state)
{
    node_fixture *f = fixture_new();
    pip_response resp;

    (void)state;
    json_object_set_new(f->options.settings, "demo.options.greeting",
                        json_string("hey"));
    fixture_start(f);

    fixture_call(f, "demo.greeting", NULL, &resp);
    assert_false(resp.failed);
    assert_string_equal(json_string_value(resp.result), "hey");
    pip_response_fini(&resp);

    *state = f;
    fixture_teardown(state);
}

static void
test_default_setting_used(void **state)
{
    node_fixture *f = *state;
    pip_response resp;

    fixture_call(f, "demo.greeting", NULL, &resp);
    assert_string_equal(json_string_value(resp.result), "hello");
    pip_response_fini(&resp);
}

static const pip_command bad_commands[] = {
    {"ping", demo_echo, NULL, NULL, "clashes with the built-in ping"},
    {NULL, NULL, NULL, NULL, NULL},
};

static void
test_add_rejects_bad_services(void **state)
{
    node_fixture *f = *state;
    pip_service_def clash = demo_def;
    pip_service_def reserved = demo_def;
    pip_service_def bad_name = demo_def;
    pip_error err;

    clash.name = "clash";
    clash.commands = bad_commands;
    reserved.name = "node";
    bad_name.name = "Bad.Name";
    pip_error_init(&err);

    assert_int_equal(pip_node_add(f->node, &demo_def, &err),
                     PIP_E_INVALID_STATE);
    pip_error_fini(&err);

    pip_node *fresh = NULL;
    assert_int_equal(pip_node_new(&f->options, &fresh, &err), PIP_OK);
    assert_int_equal(pip_node_add(fresh, &demo_def, &err), PIP_OK);
    assert_int_equal(pip_node_add(fresh, &demo_def, &err), PIP_E_CONFLICT);
    assert_string_equal(err.code, "SERVICE_EXISTS");
    assert_int_equal(pip_node_add(fresh, &reserved, &err), PIP_E_CONFLICT);
    assert_int_equal(pip_node_add(fresh, &clash, &err), PIP_E_CONFLICT);
    assert_string_equal(err.code, "INVALID_SERVICE");
    assert_int_equal(pip_node_add(fresh, &bad_name, &err), PIP_E_BAD_REQUEST);
    pip_error_fini(&err);

    /* Not started: no in-process calls, no URLs. */
    json_t *result = NULL;
    assert_int_equal(
        pip_node_call(fresh, "demo.ping", NULL, NULL, &result, &err),
        PIP_E_INVALID_STATE);
    assert_null(pip_node_rpc_url(fresh, 0));
    pip_error_fini(&err);
    pip_node_free(fresh);
}

static void
test_start_fails_on_busy_port(void **state)
{
    node_fixture *f = *state;
    node_fixture *second = fixture_new();
    pip_node *node = NULL;
    pip_error err;

    second->options.listen[0] = pip_node_rpc_url(f->node, 0);
    pip_error_init(&err);
    assert_int_equal(pip_node_new(&second->options, &node, &err), PIP_OK);
    assert_int_equal(pip_node_add(node, &demo_def, &err), PIP_OK);
    assert_int_equal(pip_node_start(node, &err), PIP_E_UNAVAILABLE);
    assert_string_equal(err.code, "LISTEN_FAILED");
    assert_non_null(strstr(err.message, pip_node_rpc_url(f->node, 0)));
    /* The failed start closed what it opened: the hook ran. */
    assert_int_equal(atomic_load(&demo_closed), 1);
    pip_error_fini(&err);
    pip_node_free(node);

    pip_node_options_fini(&second->options);
    test_util_remove_tree(second->dir);
    free(second);
    fixture_expect_alive(f, f->sock);
}

/* A service whose state the runtime allocates and frees */

typedef struct tally_state {
    int64_t value;
} tally_state;

static bool tally_open_fails;

static int
tally_value(pip_call *call, json_t *args, json_t **result)
{
    tally_state *st = pip_call_state(call);

    (void)args;
    *result = json_integer(st->value);
    return PIP_OK;
}

static int
tally_open(pip_service *svc, pip_error *err)
{
    tally_state *st = pip_service_new_state(svc, sizeof(*st), err);

    if (st == NULL) {
        return PIP_E_INTERNAL;
    }
    st->value = 42;
    if (tally_open_fails) {
        return pip_error_set(err, PIP_E_INTERNAL, "TALLY_BROKEN",
                             "The tally service fails to open on purpose.");
    }
    return PIP_OK;
}

static const pip_command tally_commands[] = {
    {"value", tally_value, NULL, "integer", "Returns the state's value."},
    {NULL, NULL, NULL, NULL, NULL},
};

static const pip_service_def tally_def = {
    .name = "tally",
    .version = "1.0",
    .route = "v1/tally",
    .doc = "A service with a runtime-owned state and no close hook.",
    .commands = tally_commands,
    .open = tally_open,
};

/* Starts a node with the demo and tally services and returns the status. */
static int
tally_node_start(node_fixture *f, pip_error *err)
{
    int rv = pip_node_new(&f->options, &f->node, err);

    if (rv == PIP_OK) {
        rv = pip_node_add(f->node, &demo_def, err);
    }
    if (rv == PIP_OK) {
        rv = pip_node_add(f->node, &tally_def, err);
    }
    if (rv == PIP_OK) {
        rv = pip_node_start(f->node, err);
    }
    return rv;
}

/* The sanitizer build checks that the runtime frees the state. */
static void
test_handler_reads_runtime_state(void **state)
{
    node_fixture *f = fixture_new();
    pip_response resp;
    pip_error err;

    *state = f;
    tally_open_fails = false;
    pip_error_init(&err);
    assert_int_equal(tally_node_start(f, &err), PIP_OK);
    pip_error_fini(&err);
    f->sock = fixture_dial(f, FIXTURE_RECV_TIMEOUT_MS);

    fixture_call(f, "tally.value", NULL, &resp);
    assert_false(resp.failed);
    assert_int_equal(json_integer_value(resp.result), 42);
    pip_response_fini(&resp);
}

static void
test_failed_open_frees_state(void **state)
{
    node_fixture *f = fixture_new();
    pip_error err;

    *state = f;
    tally_open_fails = true;
    pip_error_init(&err);
    assert_int_equal(tally_node_start(f, &err), PIP_E_INTERNAL);
    assert_string_equal(err.code, "TALLY_BROKEN");
    pip_error_fini(&err);
}

static void
test_start_fails_on_bad_url(void **state)
{
    node_fixture *f = fixture_new();
    pip_node *node = NULL;
    pip_error err;

    (void)state;
    f->options.listen[0] = "nosuch://127.0.0.1:1";
    pip_error_init(&err);
    assert_int_equal(pip_node_new(&f->options, &node, &err), PIP_OK);
    assert_int_equal(pip_node_add(node, &demo_def, &err), PIP_OK);
    assert_int_equal(pip_node_start(node, &err), PIP_E_BAD_REQUEST);
    assert_string_equal(err.code, "INVALID_URL");
    assert_int_equal(pip_node_start(node, &err), PIP_E_INVALID_STATE);
    pip_error_fini(&err);
    pip_node_free(node);

    pip_node_options_fini(&f->options);
    test_util_remove_tree(f->dir);
    free(f);
}

static void
test_wait_returns_after_shutdown(void **state)
{
    node_fixture *f = *state;
    int64_t start_ms = pip_mono_ms();

    pip_node_shutdown(f->node);
    pip_node_wait(f->node);
    assert_true(pip_mono_ms() - start_ms < 1000);
    fixture_expect_alive(f, f->sock);
}

static void *
send_sigterm_later(void *arg)
{
    (void)arg;
    fixture_sleep_ms(100);
    kill(getpid(), SIGTERM);
    return NULL;
}

static void
test_wait_returns_on_sigterm(void **state)
{
    node_fixture *f = *state;
    int64_t start_ms = pip_mono_ms();
    pthread_t thread;

    /* pip_node_start blocked SIGTERM in this thread, so the new thread
     * inherits the mask and the signal stays pending for sigtimedwait. */
    assert_int_equal(pthread_create(&thread, NULL, send_sigterm_later, NULL),
                     0);
    pip_node_wait(f->node);
    assert_int_equal(pthread_join(thread, NULL), 0);
    assert_true(pip_mono_ms() - start_ms < 2000);
}

static pthread_mutex_t captured_mtx = PTHREAD_MUTEX_INITIALIZER;
static char captured_log[8192];

static void
capture_log_line(pip_log_level level, const char *line, void *ctx)
{
    size_t used;

    (void)level;
    (void)ctx;
    pthread_mutex_lock(&captured_mtx);
    used = strlen(captured_log);
    snprintf(captured_log + used, sizeof(captured_log) - used, "%s\n", line);
    pthread_mutex_unlock(&captured_mtx);
}

static void
test_start_and_stop_logged(void **state)
{
    node_fixture *f = fixture_new();
    char rpc[128];
    char pub[128];

    captured_log[0] = '\0';
    pip_log_configure(capture_log_line, NULL, PIP_LOG_INFO);
    fixture_start(f);
    snprintf(rpc, sizeof(rpc), "rpc=%s", pip_node_rpc_url(f->node, 0));
    snprintf(pub, sizeof(pub), "pub=%s", pip_node_pub_url(f->node));
    *state = f;
    fixture_teardown(state);
    pip_log_configure(NULL, NULL, PIP_LOG_INFO);

    assert_non_null(strstr(captured_log, "node=node-test"));
    assert_non_null(strstr(captured_log, "started"));
    assert_non_null(strstr(captured_log, rpc));
    assert_non_null(strstr(captured_log, pub));
    assert_non_null(strstr(captured_log, "stopped"));
}

/* Counts the lines of captured_log that contain needle. */
static int
captured_count(const char *needle)
{
    int count = 0;

    for (const char *p = strstr(captured_log, needle); p != NULL;
         p = strstr(p + 1, needle)) {
        count++;
    }
    return count;
}

static void
test_bad_settings_logged(void **state)
{
    node_fixture *f = fixture_new();
    int64_t number;

    json_object_set_new(f->options.settings, "demo.options.greeting",
                        json_string("abc"));
    json_object_set_new(f->options.settings, "demo.options.greting",
                        json_string("1"));
    json_object_set_new(f->options.settings, "other.options.x",
                        json_string("1"));
    captured_log[0] = '\0';
    pip_log_configure(capture_log_line, NULL, PIP_LOG_WARN);
    fixture_start(f);

    /* The typed read falls back every time, and logs it once. */
    number = pip_service_config_int(demo_service, "options.greeting", 7);
    assert_int_equal(number, 7);
    number = pip_service_config_int(demo_service, "options.greeting", 7);
    assert_int_equal(number, 7);
    assert_true(pip_service_config_double(demo_service, "options.greeting",
                                          2.5) == 2.5);
    assert_true(pip_service_config_bool(demo_service, "options.greeting",
                                        true));
    /* A missing key is no mistake, so it is not logged. */
    number = pip_service_config_int(demo_service, "options.missing", 3);
    assert_int_equal(number, 3);

    *state = f;
    fixture_teardown(state);
    pip_log_configure(NULL, NULL, PIP_LOG_INFO);

    assert_int_equal(
        captured_count("invalid setting demo.options.greeting='abc'"), 1);
    assert_int_equal(captured_count("options.missing"), 0);
    assert_int_equal(captured_count("unknown setting demo.options.greting"),
                     1);
    assert_non_null(strstr(captured_log, "are: options.greeting"));
    /* Settings of services that this node does not host are not its
     * business. */
    assert_int_equal(captured_count("other.options.x"), 0);
}

/* Resolves name on the discovery node until count instances are live,
 * for at most 3 s.  Returns the instances (new reference). */
static json_t *
discovery_wait_for(pip_node *discovery, const char *name, size_t count)
{
    json_t *args = json_pack("{s:s}", "name", name);
    json_t *instances = NULL;
    pip_error err;

    pip_error_init(&err);
    for (int i = 0; i < 60; i++) {
        json_decref(instances);
        instances = NULL;
        assert_int_equal(pip_node_call(discovery, "discovery.resolve", args,
                                       NULL, &instances, &err),
                         PIP_OK);
        if (json_array_size(instances) == count) {
            break;
        }
        fixture_sleep_ms(50);
    }
    json_decref(args);
    pip_error_fini(&err);
    return instances;
}

static void
test_node_registers_with_discovery(void **state)
{
    node_fixture *disc = fixture_new();
    node_fixture *f = fixture_new();
    pip_node *discovery = NULL;
    json_t *instances;
    json_t *instance;
    pip_error err;

    (void)state;
    pip_error_init(&err);
    assert_int_equal(pip_node_new(&disc->options, &discovery, &err), PIP_OK);
    assert_int_equal(pip_node_add(discovery, &pip_discovery_service, &err),
                     PIP_OK);
    assert_int_equal(pip_node_start(discovery, &err), PIP_OK);

    f->options.discovery_url = pip_node_rpc_url(discovery, 0);
    f->options.lease_ms = 2000;
    fixture_start(f);

    instances = discovery_wait_for(discovery, "demo", 1);
    assert_int_equal(json_array_size(instances), 1);
    instance = json_array_get(instances, 0);
    assert_string_equal(
        json_string_value(json_array_get(json_object_get(instance, "rpc"), 0)),
        pip_node_rpc_url(f->node, 0));
    assert_string_equal(json_string_value(json_object_get(instance, "pub")),
                        pip_node_pub_url(f->node));
    assert_string_equal(
        json_string_value(json_object_get(instance, "version")), "1.0");
    assert_string_equal(json_string_value(json_object_get(
                            json_object_get(instance, "metadata"), "node")),
                        "node-test");
    assert_true(json_is_integer(
        json_object_get(json_object_get(instance, "metadata"), "pid")));
    json_decref(instances);

    /* A clean stop deregisters at once, without waiting for the lease. */
    *state = f;
    fixture_teardown(state);
    instances = discovery_wait_for(discovery, "demo", 0);
    assert_int_equal(json_array_size(instances), 0);
    json_decref(instances);

    pip_node_free(discovery);
    pip_node_options_fini(&disc->options);
    test_util_remove_tree(disc->dir);
    free(disc);
    pip_error_fini(&err);
}

#define NODE_TEST(fn)                                                         \
    cmocka_unit_test_setup_teardown(fn, fixture_setup, fixture_teardown)

int
main(void)
{
    const struct CMUnitTest tests[] = {
        NODE_TEST(test_echo_returns_args),
        NODE_TEST(test_add_sums_integers),
        NODE_TEST(test_error_carries_code_and_cid),
        NODE_TEST(test_bare_failure_gets_exec_failed),
        NODE_TEST(test_schema_violation_names_argument),
        NODE_TEST(test_describe_lists_commands),
        NODE_TEST(test_ping_and_health),
        NODE_TEST(test_statistics_count_calls),
        NODE_TEST(test_statistics_time_slow_calls),
        NODE_TEST(test_node_builtins),
        NODE_TEST(test_batch_answered_in_order),
        NODE_TEST(test_slow_call_does_not_block_fast),
        NODE_TEST(test_expired_deadline_gives_timeout),
        NODE_TEST(test_in_process_call),
        NODE_TEST(test_in_process_call_is_counted),
        NODE_TEST(test_events_reach_subscriber),
        NODE_TEST(test_timer_runs_until_close),
        NODE_TEST(test_shutdown_answers_slow_call),
        cmocka_unit_test_teardown(test_builtins_skip_busy_workers,
                                  fixture_teardown),
        NODE_TEST(test_shutdown_during_pings),
        cmocka_unit_test(test_setting_overrides_default),
        NODE_TEST(test_default_setting_used),
        NODE_TEST(test_add_rejects_bad_services),
        NODE_TEST(test_start_fails_on_busy_port),
        cmocka_unit_test_teardown(test_handler_reads_runtime_state,
                                  fixture_teardown),
        cmocka_unit_test_teardown(test_failed_open_frees_state,
                                  fixture_teardown),
        cmocka_unit_test(test_start_fails_on_bad_url),
        NODE_TEST(test_wait_returns_after_shutdown),
        NODE_TEST(test_wait_returns_on_sigterm),
        cmocka_unit_test(test_node_registers_with_discovery),
        cmocka_unit_test(test_start_and_stop_logged),
        cmocka_unit_test(test_bad_settings_logged),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
