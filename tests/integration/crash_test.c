/*
 * Acknowledged writes survive repeated SIGKILLs at random moments.  A
 * writer thread increments counters and changes settings sections on a
 * pipnode and records every write that the node acknowledged.  The test
 * kills the node with SIGKILL a random 50 to 300 ms after each restart,
 * starts it again on the same data folder, and checks every acknowledged
 * write before the writer resumes:
 *
 * - a counter is at least its acknowledged count, and at most that plus
 *   the counts of the calls in flight at the kills (unacknowledged, so
 *   applied or not);
 * - a settings section equals its last acknowledged set_section plus the
 *   acknowledged increments.  A section with a call in flight at the kill
 *   must hold its value from before or after that call, and the test then
 *   takes the value found as the new expected one.
 *
 * The seed comes from the clock and is printed; CRASH_SEED=<n> in the
 * environment replays a run's sequence of writes and delays.  The node
 * runs without --sync: a process crash must not lose what RocksDB's
 * write-ahead log already contains.
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

#define CRASH_KILLS 22
#define CRASH_COUNTERS 3
#define CRASH_SECTIONS 3
#define CRASH_MIN_DELAY_MS 50
#define CRASH_MAX_DELAY_MS 300
#define CRASH_WRITE_TIMEOUT_MS 1000
#define CRASH_CHECK_TIMEOUT_MS 5000
#define CRASH_READY_TIMEOUT_MS 15000
#define CRASH_MAX_TOTAL_MS 120000 /* hard stop, well above a normal run */
#define CRASH_NAME_MAX 32
#define CRASH_ERROR_MAX 1024

/* The kinds of write the writer issues. */
typedef enum crash_op {
    CRASH_OP_COUNTER,   /* write_counter, type 4 (increment) */
    CRASH_OP_INCREMENT, /* modify_section with increment_parameters */
    CRASH_OP_SET,       /* set_section, which replaces the parameters */
} crash_op;

typedef struct crash_counter {
    int64_t acked;      /* sum of the acknowledged increments */
    int64_t in_flight;  /* sum of the increments whose calls failed */
} crash_counter;

/*
 * A section's expected parameters: {"gen": g, "n": n}, or {} before the
 * first write.  pending, when set, is the value after a call that was
 * in flight at the kill.
 */
typedef struct crash_section {
    json_t *params;
    json_t *pending;
} crash_section;

/* What the node acknowledged.  The writer owns it while it runs. */
typedef struct crash_state {
    crash_counter counters[CRASH_COUNTERS];
    crash_section sections[CRASH_SECTIONS];
    int64_t acked_writes;
    int in_flight_calls;    /* failed calls, one per kill */
    int generation;         /* the next set_section's "gen" value */
} crash_state;

typedef struct crash_writer {
    const char *url;
    crash_state *state;
    atomic_bool killed;     /* set just before the SIGKILL */
    uint32_t random;        /* generator state, advanced per write */
    int acked;              /* writes acknowledged in this round */
    char error[CRASH_ERROR_MAX]; /* a wrong reply, which fails the test */
    pthread_t thread;
} crash_writer;

typedef struct crash_fixture {
    harness *h; /* the first member, as harness_fixture_new requires */
    harness_node node;
    crash_state state;
} crash_fixture;

/* A small deterministic generator, so a failure can be replayed. */
static uint32_t
crash_random(uint32_t *state)
{
    *state ^= *state << 13;
    *state ^= *state >> 17;
    *state ^= *state << 5;
    return *state;
}

static void
crash_counter_name(int index, char *out)
{
    snprintf(out, CRASH_NAME_MAX, "crash.c%d", index);
}

static void
crash_section_id(int index, char *out)
{
    snprintf(out, CRASH_NAME_MAX, "crash.s%d", index);
}

/* ---- writer ------------------------------------------------------------- */

/*
 * Makes one call and returns the result, or NULL with *failed set.  Only
 * the kill may fail a call, so an error response, or a failure before the
 * kill, is recorded in w->error.
 */
static json_t *
crash_try_call(crash_writer *w, pip_client *client, const char *method,
               json_t *args, bool *failed)
{
    json_t *result = NULL;
    pip_error err;
    int rv;

    pip_error_init(&err);
    rv = pip_client_call(client, method, args, NULL, &result, &err);
    *failed = rv != PIP_OK;
    if (*failed) {
        w->state->in_flight_calls++;
    }
    if (*failed && (!atomic_load(&w->killed) ||
                    (rv != PIP_E_TIMEOUT && rv != PIP_E_UNAVAILABLE))) {
        snprintf(w->error, sizeof(w->error),
                 "%s failed %s the kill: %s %s %s", method,
                 atomic_load(&w->killed) ? "after" : "before",
                 pip_category_name(rv), err.code, err.message);
    }
    pip_error_fini(&err);
    json_decref(args);
    return result;
}

/*
 * Increments a counter.  Returns false when the call failed, which
 * counts the increment as in flight.
 */
static bool
crash_write_counter(crash_writer *w, pip_client *client, int index,
                    int64_t count)
{
    crash_counter *c = &w->state->counters[index];
    char name[CRASH_NAME_MAX];
    json_t *result;
    json_t *value;
    bool failed;

    crash_counter_name(index, name);
    result = crash_try_call(
        w, client, "counters.write_counter",
        json_pack("{s:{s:s, s:i, s:I}}", "counter", "name", name, "type", 4,
                  "count", (json_int_t)count),
        &failed);
    if (failed) {
        c->in_flight += count;
        return false;
    }
    c->acked += count;
    value = json_object_get(result, "count");
    if (!json_is_integer(value) || json_integer_value(value) < c->acked ||
        json_integer_value(value) > c->acked + c->in_flight) {
        snprintf(w->error, sizeof(w->error),
                 "write_counter %s returned count %lld, expected %lld "
                 "(acknowledged) to %lld (plus in flight)",
                 name, (long long)json_integer_value(value),
                 (long long)c->acked, (long long)(c->acked + c->in_flight));
    }
    json_decref(result);
    return true;
}

/* The parameters of a section after an increment of "n" by amount. */
static json_t *
crash_incremented(const json_t *params, int64_t amount)
{
    json_t *next = json_deep_copy(params);
    json_t *n = json_object_get(next, "n");
    int64_t old = json_is_integer(n) ? json_integer_value(n) : 0;

    json_object_set_new(next, "n", json_integer(old + amount));
    return next;
}

/*
 * Sends the section write in next (an increment of n by amount, or a
 * set_section of next when amount is 0).  On success the reply must
 * equal next, and next becomes the expected value.  A failed call leaves
 * next as the section's pending value.
 */
static bool
crash_write_section(crash_writer *w, pip_client *client, int index,
                    json_t *next, int64_t amount)
{
    crash_section *s = &w->state->sections[index];
    char id[CRASH_NAME_MAX];
    json_t *result;
    bool failed;

    crash_section_id(index, id);
    if (amount != 0) {
        result = crash_try_call(w, client, "settings.modify_section",
                                json_pack("{s:s, s:{s:I}}", "id", id,
                                          "increment_parameters", "n",
                                          (json_int_t)amount),
                                &failed);
    } else {
        result = crash_try_call(w, client, "settings.set_section",
                                json_pack("{s:s, s:O}", "id", id,
                                          "parameters", next),
                                &failed);
    }
    if (failed) {
        s->pending = next;
        return false;
    }
    if (!json_equal(result, next)) {
        char *got = json_dumps(result, JSON_COMPACT | JSON_SORT_KEYS);
        char *want = json_dumps(next, JSON_COMPACT | JSON_SORT_KEYS);

        snprintf(w->error, sizeof(w->error),
                 "%s on %s returned %s, expected %s",
                 amount != 0 ? "modify_section" : "set_section", id,
                 got ? got : "?", want ? want : "?");
        free(got);
        free(want);
    }
    json_decref(result);
    json_decref(s->params);
    s->params = next;
    return true;
}

/* Issues one random write.  Returns false when it was not acknowledged. */
static bool
crash_write_one(crash_writer *w, pip_client *client)
{
    crash_op op = (crash_op)(crash_random(&w->random) % 3);
    int64_t amount = 1 + crash_random(&w->random) % 3;
    int counter = (int)(crash_random(&w->random) % CRASH_COUNTERS);
    int section = (int)(crash_random(&w->random) % CRASH_SECTIONS);
    crash_section *s = &w->state->sections[section];
    json_t *next;

    switch (op) {
    case CRASH_OP_COUNTER:
        return crash_write_counter(w, client, counter, amount);
    case CRASH_OP_INCREMENT:
        next = crash_incremented(s->params, amount);
        return crash_write_section(w, client, section, next, amount);
    case CRASH_OP_SET:
    default:
        next = json_pack("{s:i, s:I}", "gen", w->state->generation++, "n",
                         (json_int_t)(crash_random(&w->random) % 1000));
        return crash_write_section(w, client, section, next, 0);
    }
}

/*
 * Writes until a call fails, which happens at the kill, or the writer
 * gets a wrong reply.  Only one call is in flight at a time.  The client
 * is freed before the thread ends, so no request can be resent to the
 * restarted node.
 */
static void *
crash_writer_main(void *arg)
{
    crash_writer *w = arg;
    pip_client *client =
        harness_client_new(w->url, NULL, CRASH_WRITE_TIMEOUT_MS);

    if (client == NULL) {
        snprintf(w->error, sizeof(w->error), "pip_client_new failed");
        return NULL;
    }
    while (w->error[0] == '\0' && crash_write_one(w, client)) {
        w->acked++;
    }
    w->state->acked_writes += w->acked;
    pip_client_free(client);
    return NULL;
}

/* ---- checks ------------------------------------------------------------- */

static int64_t
crash_read_counter(pip_client *client, const char *name)
{
    json_t *page;
    json_t *item;
    size_t i;
    int64_t count = 0;

    page = harness_call_ok(client, "counters.read_counters",
                           json_pack("{s:{s:s}}", "filter", "name", name));
    json_array_foreach(json_object_get(page, "data"), i, item) {
        const char *item_name =
            json_string_value(json_object_get(item, "name"));
        json_t *value = json_object_get(item, "count");

        if (item_name != NULL && strcmp(item_name, name) == 0) {
            assert_true(json_is_integer(value));
            count = json_integer_value(value);
        }
    }
    json_decref(page);
    return count;
}

static void
crash_check_counters(pip_client *client, const crash_state *state)
{
    char name[CRASH_NAME_MAX];

    for (int i = 0; i < CRASH_COUNTERS; i++) {
        const crash_counter *c = &state->counters[i];
        int64_t count;

        crash_counter_name(i, name);
        count = crash_read_counter(client, name);
        if (count < c->acked || count > c->acked + c->in_flight) {
            fail_msg("counter %s is %lld after the restart, expected %lld "
                     "(acknowledged) to %lld (plus in flight)",
                     name, (long long)count, (long long)c->acked,
                     (long long)(c->acked + c->in_flight));
        }
    }
}

static void
crash_fail_section(const char *id, const json_t *got, const json_t *want,
                   const json_t *pending)
{
    char *got_text = json_dumps(got, JSON_COMPACT | JSON_SORT_KEYS);
    char *want_text = json_dumps(want, JSON_COMPACT | JSON_SORT_KEYS);
    char *pending_text =
        pending ? json_dumps(pending, JSON_COMPACT | JSON_SORT_KEYS) : NULL;

    fail_msg("section %s is %s after the restart, expected %s%s%s", id,
             got_text ? got_text : "?", want_text ? want_text : "?",
             pending_text ? " or, from the call in flight, " : "",
             pending_text ? pending_text : "");
    free(got_text);
    free(want_text);
    free(pending_text);
}

/*
 * Compares each section with its expected value, or with the value after
 * its pending call, which then becomes the expected one.
 */
static void
crash_check_sections(pip_client *client, crash_state *state)
{
    char id[CRASH_NAME_MAX];

    for (int i = 0; i < CRASH_SECTIONS; i++) {
        crash_section *s = &state->sections[i];
        json_t *got;

        crash_section_id(i, id);
        got = harness_call_ok(client, "settings.get_section_by_id",
                              json_pack("{s:s}", "id", id));
        if (s->pending != NULL && json_equal(got, s->pending)) {
            json_decref(s->params);
            s->params = s->pending;
            s->pending = NULL;
        } else if (!json_equal(got, s->params)) {
            crash_fail_section(id, got, s->params, s->pending);
        }
        json_decref(s->pending);
        s->pending = NULL;
        json_decref(got);
    }
}

static void
crash_check_all(crash_fixture *f)
{
    pip_client *client =
        harness_client_new(f->node.url, NULL, CRASH_CHECK_TIMEOUT_MS);

    assert_non_null(client);
    crash_check_counters(client, &f->state);
    crash_check_sections(client, &f->state);
    pip_client_free(client);
}

/* ---- fixture ------------------------------------------------------------ */

static void
crash_start_node(crash_fixture *f)
{
    assert_true(harness_node_start(f->h, &f->node,
                                   HARNESS_NODE_ARGS("counters", "settings"),
                                   "counters.ping", CRASH_READY_TIMEOUT_MS));
}

static int
crash_setup(void **state)
{
    crash_fixture *f = harness_fixture_new(sizeof(*f));

    *state = f;
    if (f == NULL || !harness_node_init(f->h, &f->node, "node")) {
        return -1;
    }
    for (int i = 0; i < CRASH_SECTIONS; i++) {
        f->state.sections[i].params = json_object();
        if (f->state.sections[i].params == NULL) {
            return -1;
        }
    }
    return 0;
}

static int
crash_teardown(void **state)
{
    crash_fixture *f = *state;

    for (int i = 0; f != NULL && i < CRASH_SECTIONS; i++) {
        json_decref(f->state.sections[i].params);
        json_decref(f->state.sections[i].pending);
    }
    return harness_fixture_free(f);
}

/* CRASH_SEED from the environment, else a seed from the clock. */
static uint32_t
crash_pick_seed(void)
{
    const char *text = getenv("CRASH_SEED");
    unsigned long value;
    char *end;

    if (text != NULL && *text != '\0') {
        value = strtoul(text, &end, 10);
        if (*end == '\0' && value != 0 && value <= UINT32_MAX) {
            return (uint32_t)value;
        }
        print_message("ignoring CRASH_SEED='%s', which is not a number from "
                      "1 to %u\n", text, UINT32_MAX);
    }
    return (uint32_t)harness_now_ms() | 1u;
}

/* Kills the node a random delay after its restart, while writes run. */
static void
crash_kill_during_writes(crash_fixture *f, uint32_t *random, int kill)
{
    crash_writer w;
    int delay_ms = CRASH_MIN_DELAY_MS +
                   (int)(crash_random(random) %
                         (CRASH_MAX_DELAY_MS - CRASH_MIN_DELAY_MS + 1));

    memset(&w, 0, sizeof(w));
    w.url = f->node.url;
    w.state = &f->state;
    w.random = crash_random(random) | 1u;
    atomic_init(&w.killed, false);
    assert_int_equal(pthread_create(&w.thread, NULL, crash_writer_main, &w),
                     0);
    harness_sleep_ms(delay_ms);
    atomic_store(&w.killed, true);
    harness_kill(f->node.proc);
    pthread_join(w.thread, NULL);

    if (w.error[0] != '\0') {
        fail_msg("kill %d: %s", kill, w.error);
    }
    print_message("kill %d after %d ms: %d writes acknowledged\n", kill,
                  delay_ms, w.acked);
}

/* ---- tests -------------------------------------------------------------- */

static void
test_writes_survive_random_kills(void **state)
{
    crash_fixture *f = *state;
    int64_t started = harness_now_ms();
    uint32_t seed = crash_pick_seed();
    uint32_t random = seed;

    print_message("crash seed %u (replay with CRASH_SEED=%u)\n", seed, seed);
    for (int kill = 1; kill <= CRASH_KILLS; kill++) {
        crash_start_node(f);
        crash_check_all(f);
        crash_kill_during_writes(f, &random, kill);
        if (harness_now_ms() - started > CRASH_MAX_TOTAL_MS) {
            fail_msg("%d kills took more than %d s", kill,
                     CRASH_MAX_TOTAL_MS / 1000);
        }
    }

    crash_start_node(f);
    crash_check_all(f);
    assert_true(f->state.acked_writes > CRASH_KILLS);
    assert_int_equal(harness_stop(f->node.proc, HARNESS_STOP_TIMEOUT_MS), 0);
    assert_true(harness_logs_clean(f->h));
    print_message("%d kills, %lld acknowledged writes, %d calls in flight "
                  "at a kill, %lld ms\n",
                  CRASH_KILLS, (long long)f->state.acked_writes,
                  f->state.in_flight_calls,
                  (long long)(harness_now_ms() - started));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_writes_survive_random_kills,
                                        crash_setup, crash_teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
