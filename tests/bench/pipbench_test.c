/*
 * pipbench against a real node: short runs over tcp (found through
 * discovery) and ipc (a given endpoint, a workload file, the baseline, a
 * sweep, and the open loop).  Checks the report's shape and that the calls pipbench sent
 * match what the node's statistics counted.
 */
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "harness.h"

#define BENCH_RUN_TIMEOUT_MS 60000

static harness *bench_harness;
static char bench_ipc_url[HARNESS_URL_MAX + PATH_MAX];

static int
bench_setup(void **state)
{
    char data[PATH_MAX];
    char ipc_path[PATH_MAX];
    const char *argv[] = {
        "pipnode", "counters", "--listen", "tcp://127.0.0.1:0",
        "--listen", bench_ipc_url, "--pub", "tcp://127.0.0.1:0",
        "--data", data, "--discovery", NULL, NULL,
    };

    (void)state;
    bench_harness = harness_new();
    if (bench_harness == NULL ||
        !harness_start_discovery(bench_harness, 10000)) {
        fprintf(stderr, "discovery did not come up\n");
        return -1;
    }
    harness_path(bench_harness, "node-data", data);
    harness_path(bench_harness, "node.ipc", ipc_path);
    snprintf(bench_ipc_url, sizeof(bench_ipc_url), "ipc://%s", ipc_path);
    argv[11] = bench_harness->discovery_url;
    if (harness_start(bench_harness, "counters", argv, false) == NULL ||
        !harness_wait_instances(bench_harness, "counters", 1, 10000)) {
        fprintf(stderr, "the counters node did not register\n");
        return -1;
    }
    return 0;
}

static int
bench_teardown(void **state)
{
    (void)state;
    return harness_free(bench_harness);
}

/* Calls counters.statistics and returns the calls of one command. */
static int64_t
node_calls(const char *command)
{
    pip_client_options opt;
    pip_client *client = NULL;
    json_t *stats = NULL;
    pip_error err;
    int64_t calls = -1;

    pip_error_init(&err);
    pip_client_options_init(&opt);
    opt.endpoint = bench_ipc_url;
    opt.timeout_ms = 5000;
    if (pip_client_new(&opt, &client, &err) == PIP_OK &&
        pip_client_call(client, "counters.statistics", NULL, NULL, &stats,
                        &err) == PIP_OK) {
        json_t *entry = json_object_get(json_object_get(stats, "commands"),
                                        command);

        calls = json_integer_value(json_object_get(entry, "calls"));
    }
    json_decref(stats);
    if (client != NULL) {
        pip_client_free(client);
    }
    pip_error_fini(&err);
    return calls;
}

/* Runs pipbench with args and returns its JSON report, or fails. */
static json_t *
run_pipbench(const char *const *argv, const char *json_path)
{
    harness_output out;
    json_t *doc;

    assert_int_equal(harness_run(bench_harness, argv, BENCH_RUN_TIMEOUT_MS,
                                 &out), 0);
    if (out.exit_code != 0) {
        fail_msg("pipbench exited %d: %s", out.exit_code, out.err);
    }
    /* stdout is a table, not a progress line: stderr is no terminal. */
    assert_non_null(strstr(out.out, "calls/s"));
    assert_null(strstr(out.err, "\r"));
    harness_output_fini(&out);
    doc = json_load_file(json_path, 0, NULL);
    assert_non_null(doc);
    return doc;
}

static json_t *
point_result(const json_t *doc, size_t index, const char *run)
{
    json_t *point = json_array_get(json_object_get(doc, "points"), index);
    json_t *res = json_object_get(point, run);

    assert_non_null(res);
    return res;
}

static json_int_t
int_at(const json_t *obj, const char *key)
{
    const json_t *value = json_object_get(obj, key);

    if (!json_is_integer(value)) {
        fail_msg("'%s' is not an integer", key);
    }
    return json_integer_value(value);
}

static void
assert_result_shape(const json_t *res)
{
    const json_t *latency = json_object_get(res, "latency_us");
    static const char *const keys[] = {"p50", "p90", "p99", "p99_9", "max",
                                       "mean"};

    assert_true(int_at(res, "calls") > 0);
    assert_int_equal(int_at(res, "errors"), 0);
    assert_true(json_number_value(json_object_get(res, "calls_per_s")) > 0);
    assert_true(json_is_object(json_object_get(res, "errors_by_code")));
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        const json_t *value = json_object_get(latency, keys[i]);

        if (!json_is_number(value) || json_number_value(value) <= 0) {
            fail_msg("latency_us.%s is missing or not positive", keys[i]);
        }
    }
    assert_true(json_number_value(json_object_get(latency, "p50")) <=
                json_number_value(json_object_get(latency, "p99")));
    assert_true(json_number_value(json_object_get(latency, "p99")) <=
                json_number_value(json_object_get(latency, "max")));
    /* Every call sent got a reply, in the warm-up and in the measured part. */
    assert_int_equal(int_at(res, "sent_calls"),
                     int_at(res, "calls") + int_at(res, "warmup_calls"));
}

static void
test_noop_over_discovery(void **state)
{
    char json_path[PATH_MAX];
    const char *argv[] = {
        "pipbench", "counters.ping", "--discovery",
        bench_harness->discovery_url, "-c", "4", "--warmup", "100",
        "--duration", "300", "--json", json_path, NULL,
    };
    int64_t before = node_calls("ping");
    json_t *doc;
    json_t *res;

    (void)state;
    assert_true(before >= 0);
    harness_path(bench_harness, "noop.json", json_path);
    doc = run_pipbench(argv, json_path);

    assert_string_equal(json_string_value(json_object_get(doc, "transport")),
                        "tcp");
    assert_int_equal(json_array_size(json_object_get(doc, "command_line")),
                     12);
    assert_non_null(json_object_get(json_object_get(doc, "host"), "name"));
    assert_non_null(json_object_get(json_object_get(doc, "versions"), "nng"));
    assert_int_equal(json_array_size(json_object_get(doc, "points")), 1);
    /* The node runs on this host, so its resident memory is known. */
    assert_true(int_at(json_object_get(doc, "memory"), "rss_after_kb") > 0);
    res = point_result(doc, 0, "workload");
    assert_result_shape(res);
    assert_int_equal(node_calls("ping") - before, int_at(res, "sent_calls"));
    json_decref(doc);
}

static void
test_workload_sweep_with_baseline(void **state)
{
    char json_path[PATH_MAX];
    char svg_path[PATH_MAX];
    char workload_path[PATH_MAX];
    const char *argv[] = {
        "pipbench", "--endpoint", bench_ipc_url, "--workload",
        workload_path, "--baseline", "-c", "1,3", "--warmup", "50",
        "--duration", "200", "--json", json_path, "--svg", svg_path, NULL,
    };
    int64_t before = node_calls("write_counter");
    json_int_t sent = 0;
    FILE *f;
    json_t *doc;
    char *svg;

    (void)state;
    harness_path(bench_harness, "sweep.json", json_path);
    harness_path(bench_harness, "sweep.svg", svg_path);
    harness_path(bench_harness, "mix.txt", workload_path);
    f = fopen(workload_path, "w");
    assert_non_null(f);
    fputs("# writes with varying names\n"
          "1 counters.write_counter counter={\"name\": \"bench.{rand:50}\", "
          "\"type\": 4, \"count\": 1}\n", f);
    fclose(f);
    doc = run_pipbench(argv, json_path);

    assert_string_equal(json_string_value(json_object_get(doc, "transport")),
                        "ipc");
    assert_int_equal(json_array_size(json_object_get(doc, "points")), 2);
    for (size_t i = 0; i < 2; i++) {
        json_t *point = json_array_get(json_object_get(doc, "points"), i);
        json_t *res = point_result(doc, i, "workload");

        assert_int_equal(int_at(point, "concurrency"), i == 0 ? 1 : 3);
        assert_result_shape(res);
        assert_result_shape(point_result(doc, i, "baseline"));
        /* The echo carries as many bytes as the workload's request, give
         * or take the digits of {rand:50}. */
        assert_true(llabs(int_at(point_result(doc, i, "baseline"),
                                 "request_bytes") -
                          int_at(res, "request_bytes")) <= 2);
        assert_true(json_number_value(json_object_get(
                        json_object_get(point, "ratio"), "calls_per_s")) > 0);
        sent += int_at(res, "sent_calls");
    }
    assert_int_equal(node_calls("write_counter") - before, sent);
    json_decref(doc);

    svg = harness_read_file(svg_path);
    assert_non_null(svg);
    assert_non_null(strstr(svg, "<svg"));
    assert_non_null(strstr(svg, "</svg>"));
    free(svg);
}

/*
 * The open loop with a call count: exactly that many calls are measured,
 * and the pacer keeps near the rate.  The bound leaves room for a pacer
 * that fell behind in the warm-up and catches up, as it should.
 */
static void
test_open_loop_counts_calls(void **state)
{
    char json_path[PATH_MAX];
    const char *argv[] = {
        "pipbench", "--endpoint", bench_ipc_url, "--rate", "1000",
        "--count", "200", "-c", "8", "--warmup", "100", "--json",
        json_path, "counters.health", NULL,
    };
    int64_t before = node_calls("health");
    json_t *doc;
    json_t *res;

    (void)state;
    harness_path(bench_harness, "open.json", json_path);
    doc = run_pipbench(argv, json_path);
    assert_string_equal(json_string_value(json_object_get(
                            json_object_get(doc, "settings"), "loop")),
                        "open");
    res = point_result(doc, 0, "workload");
    assert_result_shape(res);
    assert_int_equal(int_at(res, "calls"), 200);
    assert_true(json_number_value(json_object_get(res, "calls_per_s")) <
                1500.0);
    assert_int_equal(node_calls("health") - before, int_at(res, "sent_calls"));
    json_decref(doc);
}

/*
 * Rounds: the baseline and the workload alternate, and each side's
 * figures add up over its rounds, with the calls split among them.
 */
static void
test_rounds_add_up(void **state)
{
    char json_path[PATH_MAX];
    const char *argv[] = {
        "pipbench", "--endpoint", bench_ipc_url, "--baseline", "--rounds",
        "3", "--count", "150", "-c", "2", "--warmup", "50", "--json",
        json_path, "counters.health", NULL,
    };
    int64_t before = node_calls("health");
    json_t *doc;
    json_t *res;

    (void)state;
    harness_path(bench_harness, "rounds.json", json_path);
    doc = run_pipbench(argv, json_path);
    assert_int_equal(int_at(json_object_get(doc, "settings"), "rounds"), 3);
    res = point_result(doc, 0, "workload");
    assert_result_shape(res);
    assert_int_equal(int_at(res, "calls"), 150);
    assert_int_equal(node_calls("health") - before, int_at(res, "sent_calls"));
    res = point_result(doc, 0, "baseline");
    assert_result_shape(res);
    assert_int_equal(int_at(res, "calls"), 150);
    json_decref(doc);
}

static void
test_too_many_rounds_exits_usage(void **state)
{
    const char *argv[] = {
        "pipbench", "--endpoint", bench_ipc_url, "--rounds", "5",
        "--count", "3", "counters.health", NULL,
    };
    harness_output out;

    (void)state;
    assert_int_equal(harness_run(bench_harness, argv, BENCH_RUN_TIMEOUT_MS,
                                 &out), 0);
    assert_int_equal(out.exit_code, 2);
    assert_non_null(strstr(out.err, "--rounds 5 is more than --count 3"));
    harness_output_fini(&out);
}

static void
test_bad_workload_exits_usage(void **state)
{
    char workload_path[PATH_MAX];
    const char *argv[] = {
        "pipbench", "--endpoint", bench_ipc_url, "--workload",
        workload_path, "--duration", "100", NULL,
    };
    harness_output out;
    FILE *f;

    (void)state;
    harness_path(bench_harness, "bad.txt", workload_path);
    f = fopen(workload_path, "w");
    assert_non_null(f);
    fputs("1 counters.ping\nheavy counters.ping\n", f);
    fclose(f);
    assert_int_equal(harness_run(bench_harness, argv, BENCH_RUN_TIMEOUT_MS,
                                 &out), 0);
    assert_int_equal(out.exit_code, 1);
    assert_non_null(strstr(out.err, "bad.txt:2: the weight 'heavy'"));
    harness_output_fini(&out);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_noop_over_discovery),
        cmocka_unit_test(test_workload_sweep_with_baseline),
        cmocka_unit_test(test_open_loop_counts_calls),
        cmocka_unit_test(test_bad_workload_exits_usage),
        cmocka_unit_test(test_rounds_add_up),
        cmocka_unit_test(test_too_many_rounds_exits_usage),
    };

    return cmocka_run_group_tests(tests, bench_setup, bench_teardown);
}
