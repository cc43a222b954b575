/*
 * Acknowledged writes survive kill -9.  A pipnode hosting logging,
 * counters and settings runs on a data folder, and the test records every
 * write that the node acknowledged.  It then kills the node with SIGKILL
 * while a writer thread is in the middle of a stream of calls, starts it
 * again on the same folder, and checks that every acknowledged write is
 * there with the right value.  The node runs without --sync: a process
 * crash must not lose what RocksDB's write-ahead log already contains.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "harness.h"
#include "pip/client.h"

#define DUR_ROUNDS 5
#define DUR_HITS_PER_ROUND 10
#define DUR_MODIFIES_PER_ROUND 5
#define DUR_MESSAGES_PER_ROUND 5
#define DUR_MAX_MESSAGES (DUR_ROUNDS * DUR_MESSAGES_PER_ROUND)
#define DUR_TEXT_MAX 64

/* What the node acknowledged so far, which a restart must preserve. */
typedef struct dur_expected {
    int64_t hits;        /* count of the counter dur.hits */
    int64_t race_min;    /* acknowledged increments of dur.race */
    int64_t race_max;    /* plus one unacknowledged call per kill */
    int rounds_done;     /* sections dur.round.<r> written */
    int64_t modify_writes; /* sum of increments of dur.totals "writes" */
    int message_count;
    char message_ids[DUR_MAX_MESSAGES][33];
    char message_texts[DUR_MAX_MESSAGES][DUR_TEXT_MAX];
} dur_expected;

/* A thread that increments dur.race until it is stopped or a call fails. */
typedef struct dur_writer {
    const char *url;
    atomic_bool stop;
    int64_t acked;
    pthread_t thread;
} dur_writer;

typedef struct dur_fixture {
    harness *h; /* the first member, as harness_fixture_new requires */
    harness_node node;
    dur_expected expected;
} dur_fixture;

static int64_t
dur_int(const json_t *obj, const char *key)
{
    json_t *value = json_object_get(obj, key);

    if (!json_is_number(value)) {
        fail_msg("field '%s' is missing or not a number", key);
    }
    return (int64_t)json_number_value(value);
}

static json_t *
dur_increment_args(const char *name)
{
    return json_pack("{s:{s:s, s:i, s:i}}", "counter", "name", name, "type",
                     4, "count", 1);
}

/* ---- writes ----------------------------------------------------------- */

static void
dur_write_round(pip_client *client, dur_expected *exp, int round)
{
    json_t *r;
    char id[32];

    for (int i = 0; i < DUR_HITS_PER_ROUND; i++) {
        r = harness_call_ok(client, "counters.write_counter",
                            dur_increment_args("dur.hits"));
        assert_int_equal(dur_int(r, "count"), exp->hits + 1);
        exp->hits++;
        json_decref(r);
    }

    snprintf(id, sizeof(id), "dur.round.%d", round);
    r = harness_call_ok(client, "settings.set_section",
                        json_pack("{s:s, s:{s:i, s:s}}", "id", id,
                                  "parameters", "round", round, "text", id));
    json_decref(r);
    exp->rounds_done = round + 1;

    for (int i = 0; i < DUR_MODIFIES_PER_ROUND; i++) {
        r = harness_call_ok(client, "settings.modify_section",
                            json_pack("{s:s, s:{s:i}, s:{s:i}}", "id",
                                      "dur.totals", "update_parameters",
                                      "last_round", round,
                                      "increment_parameters", "writes", 1));
        assert_int_equal(dur_int(r, "writes"), exp->modify_writes + 1);
        exp->modify_writes++;
        json_decref(r);
    }

    for (int i = 0; i < DUR_MESSAGES_PER_ROUND; i++) {
        int n = exp->message_count;
        const char *message_id;

        snprintf(exp->message_texts[n], DUR_TEXT_MAX,
                 "round %d message %d", round, i);
        r = harness_call_ok(
            client, "logging.write_message",
            json_pack("{s:{s:i, s:s, s:s}}", "message", "level", 4, "message",
                      exp->message_texts[n], "source", "durability"));
        message_id = json_string_value(json_object_get(r, "id"));
        assert_non_null(message_id);
        snprintf(exp->message_ids[n], sizeof(exp->message_ids[n]), "%s",
                 message_id);
        exp->message_count++;
        json_decref(r);
    }
}

static void *
dur_writer_main(void *arg)
{
    dur_writer *w = arg;
    pip_client *client = harness_client_new(w->url, NULL, 1000);

    if (client == NULL) {
        return NULL;
    }
    while (!atomic_load(&w->stop)) {
        json_t *args = dur_increment_args("dur.race");
        json_t *result = NULL;
        pip_error err;
        int rv;

        pip_error_init(&err);
        rv = pip_client_call(client, "counters.write_counter", args, NULL,
                             &result, &err);
        pip_error_fini(&err);
        json_decref(args);
        json_decref(result);
        if (rv != PIP_OK) {
            break;
        }
        w->acked++;
    }
    pip_client_free(client);
    return NULL;
}

/*
 * Kills the node with SIGKILL while a writer thread streams increments.
 * The call in flight at the kill may or may not have been applied.
 */
static void
dur_kill_during_writes(dur_fixture *f)
{
    dur_writer w;

    memset(&w, 0, sizeof(w));
    w.url = f->node.url;
    atomic_init(&w.stop, false);
    assert_int_equal(pthread_create(&w.thread, NULL, dur_writer_main, &w),
                     0);
    harness_sleep_ms(300);
    harness_kill(f->node.proc);
    atomic_store(&w.stop, true);
    pthread_join(w.thread, NULL);

    assert_true(w.acked > 0);
    f->expected.race_min += w.acked;
    f->expected.race_max += w.acked + 1;
}

/* ---- checks ----------------------------------------------------------- */

static void
dur_check_counters(pip_client *client, const dur_expected *exp)
{
    json_t *page;
    json_t *item;
    size_t i;
    int64_t race = 0;

    page = harness_call_ok(
        client, "counters.read_counters",
        json_pack("{s:{s:s}}", "filter", "name_starts", "dur."));
    json_array_foreach(json_object_get(page, "data"), i, item) {
        const char *name = json_string_value(json_object_get(item, "name"));

        assert_non_null(name);
        if (strcmp(name, "dur.hits") == 0) {
            assert_int_equal(dur_int(item, "count"), exp->hits);
        } else if (strcmp(name, "dur.race") == 0) {
            race = dur_int(item, "count");
        }
    }
    json_decref(page);
    if (race < exp->race_min || race > exp->race_max) {
        fail_msg("dur.race is %lld after restart, expected %lld to %lld",
                 (long long)race, (long long)exp->race_min,
                 (long long)exp->race_max);
    }
}

static void
dur_check_settings(pip_client *client, const dur_expected *exp)
{
    json_t *p;
    char id[32];

    for (int round = 0; round < exp->rounds_done; round++) {
        snprintf(id, sizeof(id), "dur.round.%d", round);
        p = harness_call_ok(client, "settings.get_section_by_id",
                            json_pack("{s:s}", "id", id));
        assert_int_equal(dur_int(p, "round"), round);
        assert_string_equal(json_string_value(json_object_get(p, "text")),
                            id);
        json_decref(p);
    }
    p = harness_call_ok(client, "settings.get_section_by_id",
                        json_pack("{s:s}", "id", "dur.totals"));
    assert_int_equal(dur_int(p, "writes"), exp->modify_writes);
    assert_int_equal(dur_int(p, "last_round"), exp->rounds_done - 1);
    json_decref(p);
}

static const json_t *
dur_find_message(const json_t *data, const char *id)
{
    json_t *item;
    size_t i;

    json_array_foreach(data, i, item) {
        const char *item_id = json_string_value(json_object_get(item, "id"));

        if (item_id != NULL && strcmp(item_id, id) == 0) {
            return item;
        }
    }
    return NULL;
}

static void
dur_check_messages(pip_client *client, const dur_expected *exp)
{
    json_t *page;
    json_t *data;

    page = harness_call_ok(client, "logging.read_messages",
                           json_pack("{s:{s:s}, s:{s:i, s:b}}", "filter",
                                     "source", "durability", "paging", "take",
                                     100, "total", 1));
    assert_int_equal(dur_int(page, "total"), exp->message_count);
    data = json_object_get(page, "data");
    for (int i = 0; i < exp->message_count; i++) {
        const json_t *m = dur_find_message(data, exp->message_ids[i]);

        if (m == NULL) {
            fail_msg("acknowledged message %s ('%s') is missing",
                     exp->message_ids[i], exp->message_texts[i]);
        }
        assert_string_equal(json_string_value(json_object_get(m, "message")),
                            exp->message_texts[i]);
        assert_int_equal(dur_int(m, "level"), 4);
    }
    json_decref(page);
}

static void
dur_check_all(dur_fixture *f)
{
    pip_client *client = harness_client_new(f->node.url, NULL, 5000);

    assert_non_null(client);
    dur_check_counters(client, &f->expected);
    dur_check_settings(client, &f->expected);
    dur_check_messages(client, &f->expected);
    pip_client_free(client);
}

/* ---- fixture ---------------------------------------------------------- */

static void
dur_start_node(dur_fixture *f)
{
    assert_true(harness_node_start(
        f->h, &f->node, HARNESS_NODE_ARGS("logging", "counters", "settings"),
        "counters.ping", 15000));
}

static int
dur_setup(void **state)
{
    dur_fixture *f = harness_fixture_new(sizeof(*f));

    *state = f;
    if (f == NULL || !harness_node_init(f->h, &f->node, "node")) {
        return -1;
    }
    return 0;
}

/* ---- tests ------------------------------------------------------------ */

static void
test_writes_survive_kill(void **state)
{
    dur_fixture *f = *state;
    int64_t started = harness_now_ms();
    pip_client *client;

    for (int round = 0; round < DUR_ROUNDS; round++) {
        dur_start_node(f);
        if (round > 0) {
            dur_check_all(f);
        }

        client = harness_client_new(f->node.url, NULL, 5000);
        assert_non_null(client);
        dur_write_round(client, &f->expected, round);
        pip_client_free(client);

        dur_kill_during_writes(f);
    }

    dur_start_node(f);
    dur_check_all(f);
    assert_int_equal(harness_stop(f->node.proc, HARNESS_STOP_TIMEOUT_MS), 0);
    assert_true(harness_logs_clean(f->h));
    print_message("%d kill -9 rounds in %lld ms\n", DUR_ROUNDS,
                  (long long)(harness_now_ms() - started));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_writes_survive_kill, dur_setup,
                                        harness_teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
