/*
 * Discovery with real processes: a discovery node and pipnode processes
 * hosting counters, all on loopback.  Calls spread across instances, a
 * node killed with SIGKILL is evicted when its lease runs out, nodes
 * register again after discovery restarts, and a node stopped with
 * SIGTERM deregisters at once.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "harness.h"
#include "pip/client.h"

#define DP_SPREAD_CALLS 20

typedef struct dp_fixture {
    harness *h; /* the first member, as harness_fixture_new requires */
    harness_node a;
    harness_node b;
} dp_fixture;

/*
 * Starts `pipnode counters` on a port of its own, registered with the
 * harness's discovery.  lease_ms 0 keeps the node's default lease.
 */
static void
dp_start_node(dp_fixture *f, harness_node *node, const char *name,
              int lease_ms)
{
    char lease[16];
    /* Room for the lease flag and the NULL that ends the list. */
    const char *args[6] = {"counters", "--discovery", f->h->discovery_url};

    if (lease_ms > 0) {
        snprintf(lease, sizeof(lease), "%d", lease_ms);
        args[3] = "--lease-ms";
        args[4] = lease;
    }
    assert_true(harness_node_init(f->h, node, name));
    assert_true(harness_node_start(f->h, node, args, NULL, 0));
}

/* Starts nodes a and b and waits until both are registered. */
static void
dp_start_two(dp_fixture *f, int lease_a_ms)
{
    dp_start_node(f, &f->a, "node-a", lease_a_ms);
    dp_start_node(f, &f->b, "node-b", 0);
    if (!harness_wait_instances(f->h, "counters", 2, 10000)) {
        fail_msg("two counters instances did not register within 10 s");
    }
}

/* A client that resolves services through the harness's discovery. */
static pip_client *
dp_client_new(dp_fixture *f, uint32_t timeout_ms)
{
    pip_client *client =
        harness_client_new(NULL, f->h->discovery_url, timeout_ms);

    assert_non_null(client);
    return client;
}

/* Increments the counter `name` through client and fails on an error. */
static int64_t
dp_increment(pip_client *client, const char *name)
{
    json_t *args = json_pack("{s:{s:s, s:i, s:i}}", "counter", "name", name,
                             "type", 4, "count", 1);
    json_t *result = harness_call_ok(client, "counters.write_counter", args);
    int64_t count = json_integer_value(json_object_get(result, "count"));

    json_decref(result);
    return count;
}

/*
 * Finds the calls of one command in a statistics result, whatever its
 * nesting: an object keyed by the command name with a "calls" number,
 * or an object whose "name" or "command" is the command.  Returns -1
 * when the command is not there.
 */
static int64_t
dp_stat_calls(const json_t *stats, const char *command)
{
    const char *key;
    json_t *value;
    size_t i;
    int64_t found;

    if (json_is_object(stats)) {
        json_t *entry = json_object_get(stats, command);
        const char *name = json_string_value(json_object_get(stats, "name"));
        const char *cmd = json_string_value(json_object_get(stats,
                                                            "command"));

        if (json_is_integer(json_object_get(entry, "calls"))) {
            return json_integer_value(json_object_get(entry, "calls"));
        }
        if (((name && strcmp(name, command) == 0) ||
             (cmd && strcmp(cmd, command) == 0)) &&
            json_is_integer(json_object_get(stats, "calls"))) {
            return json_integer_value(json_object_get(stats, "calls"));
        }
        json_object_foreach((json_t *)stats, key, value) {
            found = dp_stat_calls(value, command);
            if (found >= 0) {
                return found;
            }
        }
    } else if (json_is_array(stats)) {
        json_array_foreach(stats, i, value) {
            found = dp_stat_calls(value, command);
            if (found >= 0) {
                return found;
            }
        }
    }
    return -1;
}

/* Reads counters.statistics of one node through `pipcall --endpoint`. */
static int64_t
dp_node_write_calls(dp_fixture *f, const harness_node *node)
{
    const char *argv[] = {"pipcall", "--endpoint", node->url, "--timeout",
                          "5000", "counters.statistics", NULL};
    harness_output out;
    json_t *stats;
    int64_t calls;

    assert_int_equal(harness_run(f->h, argv, 15000, &out), 0);
    if (out.exit_code != 0) {
        fail_msg("pipcall --endpoint %s counters.statistics exited %d: %s",
                 node->url, out.exit_code, out.err);
    }
    stats = harness_parse_json(out.out);
    if (stats == NULL) {
        fail_msg("statistics of %s is not JSON: '%s'", node->url, out.out);
    }
    harness_output_fini(&out);
    calls = dp_stat_calls(stats, "write_counter");
    json_decref(stats);
    return calls < 0 ? 0 : calls;
}

static bool
dp_list_has(harness *h, const harness_node *node)
{
    json_t *instances = harness_instances(h, "counters");
    json_t *instance;
    size_t i;
    bool found = false;

    assert_non_null(instances);
    json_array_foreach(instances, i, instance) {
        found = found || harness_instance_has_rpc(instance, node->url);
    }
    json_decref(instances);
    return found;
}

/* ---- fixture ---------------------------------------------------------- */

static int
dp_setup(void **state)
{
    dp_fixture *f = harness_fixture_new(sizeof(*f));

    *state = f;
    if (f == NULL || !harness_start_discovery(f->h, 10000)) {
        fprintf(stderr, "discovery did not come up\n");
        return -1;
    }
    return 0;
}

/* ---- tests ------------------------------------------------------------ */

static void
test_calls_spread_across_nodes(void **state)
{
    dp_fixture *f = *state;
    pip_client *client;
    int64_t calls_a;
    int64_t calls_b;

    dp_start_two(f, 0);
    client = dp_client_new(f, 5000);
    for (int i = 1; i <= DP_SPREAD_CALLS; i++) {
        dp_increment(client, "spread.calls");
    }
    pip_client_free(client);

    calls_a = dp_node_write_calls(f, &f->a);
    calls_b = dp_node_write_calls(f, &f->b);
    print_message("write_counter calls: node a %lld, node b %lld\n",
                  (long long)calls_a, (long long)calls_b);
    assert_true(calls_a > 0);
    assert_true(calls_b > 0);
    assert_int_equal(calls_a + calls_b, DP_SPREAD_CALLS);
    assert_true(harness_logs_clean(f->h));
}

static void
test_killed_node_evicted(void **state)
{
    dp_fixture *f = *state;
    pip_client *client;
    int64_t killed_at;
    int64_t evicted_ms = -1;

    dp_start_two(f, 1500);
    client = dp_client_new(f, 3000);
    dp_increment(client, "evict.calls");
    dp_increment(client, "evict.calls");

    harness_kill(f->a.proc);
    killed_at = harness_now_ms();
    while (harness_now_ms() - killed_at < 6000) {
        if (!dp_list_has(f->h, &f->a)) {
            evicted_ms = harness_now_ms() - killed_at;
            break;
        }
        harness_sleep_ms(100);
    }
    print_message("killed node left the list after %lld ms\n",
                  (long long)evicted_ms);
    if (evicted_ms < 0 || evicted_ms > 4000) {
        fail_msg("a node with a 1500 ms lease was still listed %lld ms "
                 "after kill -9", (long long)(harness_now_ms() - killed_at));
    }
    assert_true(dp_list_has(f->h, &f->b));

    /* The same client, which knew both instances, keeps working. */
    for (int i = 0; i < 10; i++) {
        dp_increment(client, "evict.calls");
    }
    pip_client_free(client);
    assert_true(harness_logs_clean(f->h));
}

static void
test_nodes_register_after_restart(void **state)
{
    dp_fixture *f = *state;
    pip_client *client;
    int64_t restarted_at;
    int64_t back_ms;

    dp_start_two(f, 0);
    harness_kill(f->h->discovery);
    if (!harness_start_discovery(f->h, 10000)) {
        fail_msg("discovery did not come back on %s", f->h->discovery_url);
    }
    restarted_at = harness_now_ms();
    if (!harness_wait_instances(f->h, "counters", 2, 10000)) {
        fail_msg("the nodes did not register again within 10 s of the "
                 "discovery restart");
    }
    back_ms = harness_now_ms() - restarted_at;
    print_message("both nodes registered again %lld ms after the restart\n",
                  (long long)back_ms);
    assert_true(dp_list_has(f->h, &f->a));
    assert_true(dp_list_has(f->h, &f->b));

    client = dp_client_new(f, 5000);
    assert_int_equal(dp_increment(client, "restart.calls"), 1);
    pip_client_free(client);
    assert_true(harness_logs_clean(f->h));
}

static void
test_sigterm_deregisters(void **state)
{
    dp_fixture *f = *state;
    pip_client *client;
    int64_t stopped_at;

    /* Both nodes keep the default lease (10 s), so only a deregistration
     * removes node a from the list right after it exits. */
    dp_start_two(f, 0);
    stopped_at = harness_now_ms();
    assert_int_equal(harness_stop(f->a.proc, HARNESS_STOP_TIMEOUT_MS), 0);
    print_message("node a exited %lld ms after SIGTERM\n",
                  (long long)(harness_now_ms() - stopped_at));
    assert_false(dp_list_has(f->h, &f->a));
    assert_true(dp_list_has(f->h, &f->b));

    client = dp_client_new(f, 5000);
    assert_int_equal(dp_increment(client, "sigterm.calls"), 1);
    pip_client_free(client);
    assert_true(harness_logs_clean(f->h));
}

/*
 * Everything stopped at once, as piplaunch does on Ctrl-C.  A node's
 * deregistration then races with discovery's own shutdown, and every
 * process must still exit 0 without a sanitizer report.  The race does
 * not show every time, so the test runs three rounds.
 */
static void
test_all_stop_together(void **state)
{
    dp_fixture *f = *state;
    static const char *const roles[] = {"discovery", "node a", "node b"};
    harness_proc *procs[3];
    int codes[3];

    for (int round = 0; round < 3; round++) {
        if (round > 0 && !harness_start_discovery(f->h, 10000)) {
            fail_msg("discovery did not start again in round %d", round);
        }
        dp_start_two(f, 0);
        procs[0] = f->h->discovery;
        procs[1] = f->a.proc;
        procs[2] = f->b.proc;
        assert_true(harness_stop_together(procs, 3, HARNESS_STOP_TIMEOUT_MS,
                                          codes));
        for (int i = 0; i < 3; i++) {
            if (codes[i] != 0) {
                fail_msg("round %d: %s exited %d when all stopped at once",
                         round, roles[i], codes[i]);
            }
        }
        assert_true(harness_logs_clean(f->h));
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_calls_spread_across_nodes,
                                        dp_setup, harness_teardown),
        cmocka_unit_test_setup_teardown(test_killed_node_evicted, dp_setup,
                                        harness_teardown),
        cmocka_unit_test_setup_teardown(test_nodes_register_after_restart,
                                        dp_setup, harness_teardown),
        cmocka_unit_test_setup_teardown(test_sigterm_deregisters, dp_setup,
                                        harness_teardown),
        cmocka_unit_test_setup_teardown(test_all_stop_together, dp_setup,
                                        harness_teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
