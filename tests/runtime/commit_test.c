/*
 * Tests of the store's group commit against a real RocksDB database in a
 * temporary folder: many threads writing at once, a failed group write,
 * and a close while writers wait behind a leader.  A commit hook blocks
 * the leader or fails its write, so that writers queue up on purpose.
 */
#include "store_fixture.h"

#include <stdint.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "store_internal.h"

#define WRITER_THREADS 8
#define WRITES_PER_THREAD 250
#define QUEUED_WRITERS 4
#define WAIT_LIMIT_MS 10000

static int
setup(void **state)
{
    *state = fixture_new(NULL);
    return 0;
}

static void
sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};

    nanosleep(&ts, NULL);
}

/* Polls until the commit queue contains n writers.  Fails after the
 * limit. */
static void
wait_for_queue(pip_store *st, size_t n)
{
    for (int waited_ms = 0; pip__store_commit_queue_length(st) < n;
         waited_ms++) {
        if (waited_ms >= WAIT_LIMIT_MS) {
            fail_msg("%zu writers did not queue within %d ms", n,
                     WAIT_LIMIT_MS);
        }
        sleep_ms(1);
    }
}

/* A record {"thread": thread, "seq": seq}. */
static json_t *
make_record(int thread, int seq)
{
    json_t *record = json_pack("{s:i, s:i}", "thread", thread, "seq", seq);

    assert_non_null(record);
    return record;
}

static int
put_record(pip_collection *c, const char *id, int thread, int seq,
           pip_error *err)
{
    json_t *record = make_record(thread, seq);
    int rv = pip_coll_put(c, id, record, err);

    json_decref(record);
    return rv;
}

/* ---- a gate that blocks the leader inside the commit hook ---- */

typedef struct gate {
    pthread_mutex_t mtx;
    pthread_cond_t cv;
    bool open;
    int calls;             /* hook calls so far */
    size_t writers[8];     /* group size of each call, the first 8 */
    size_t max_writers;    /* largest group seen */
    const char *fail_from; /* fail calls after the first with this */
} gate;

static void
gate_init(gate *g)
{
    memset(g, 0, sizeof(*g));
    pthread_mutex_init(&g->mtx, NULL);
    pthread_cond_init(&g->cv, NULL);
}

static void
gate_fini(gate *g)
{
    pthread_cond_destroy(&g->cv);
    pthread_mutex_destroy(&g->mtx);
}

static void
gate_release(gate *g)
{
    pthread_mutex_lock(&g->mtx);
    g->open = true;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mtx);
}

/* Blocks the first call until the gate opens, and fails later calls
 * when fail_from is set. */
static const char *
gate_hook(void *ctx, size_t writers)
{
    gate *g = ctx;
    const char *result = NULL;
    int call;

    pthread_mutex_lock(&g->mtx);
    call = g->calls++;
    if (call < 8) {
        g->writers[call] = writers;
    }
    if (writers > g->max_writers) {
        g->max_writers = writers;
    }
    pthread_cond_broadcast(&g->cv);
    while (call == 0 && !g->open) {
        pthread_cond_wait(&g->cv, &g->mtx);
    }
    if (call > 0) {
        result = g->fail_from;
    }
    pthread_mutex_unlock(&g->mtx);
    return result;
}

/* Waits until the first hook call blocks the leader. */
static void
gate_wait_entered(gate *g)
{
    struct timespec deadline;

    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += WAIT_LIMIT_MS / 1000;
    pthread_mutex_lock(&g->mtx);
    while (g->calls == 0) {
        if (pthread_cond_timedwait(&g->cv, &g->mtx, &deadline) != 0) {
            break;
        }
    }
    assert_int_not_equal(g->calls, 0);
    pthread_mutex_unlock(&g->mtx);
}

/* ---- one put on its own thread ---- */

typedef struct put_thread {
    pthread_t thread;
    pip_collection *c;
    char id[32];
    int rv;
    char code[64];
    char message[512];
} put_thread;

static void *
run_put(void *arg)
{
    put_thread *p = arg;
    pip_error err;

    pip_error_init(&err);
    p->rv = put_record(p->c, p->id, 0, 0, &err);
    snprintf(p->code, sizeof(p->code), "%s", err.code);
    snprintf(p->message, sizeof(p->message), "%s", err.message);
    pip_error_fini(&err);
    return NULL;
}

static void
start_put(put_thread *p, pip_collection *c, const char *id)
{
    p->c = c;
    snprintf(p->id, sizeof(p->id), "%s", id);
    assert_int_equal(pthread_create(&p->thread, NULL, run_put, p), 0);
}

/* Starts the leader, blocks it in the gate, and queues QUEUED_WRITERS
 * puts behind it. */
static void
queue_behind_leader(fixture *f, gate *g, put_thread *leader,
                    put_thread *queued)
{
    char id[32];

    pip__store_set_commit_hook(f->st, gate_hook, g);
    start_put(leader, f->items, "leader");
    gate_wait_entered(g);
    for (int i = 0; i < QUEUED_WRITERS; i++) {
        snprintf(id, sizeof(id), "queued-%d", i);
        start_put(&queued[i], f->items, id);
    }
    wait_for_queue(f->st, QUEUED_WRITERS);
}

static bool
record_exists(pip_collection *c, const char *id)
{
    json_t *got = NULL;
    pip_error err;

    pip_error_init(&err);
    if (pip_coll_get(c, id, &got, &err) != PIP_OK) {
        fail_msg("get of %s failed: %s %s", id, err.code, err.message);
    }
    pip_error_fini(&err);
    json_decref(got);
    return got != NULL;
}

/* ---- many writers ---- */

typedef struct writer_thread {
    pthread_t thread;
    pip_collection *c;
    int index;
    bool acked[WRITES_PER_THREAD]; /* put i returned PIP_OK */
    int increments;                /* acknowledged updates of "shared" */
    int failures;
} writer_thread;

static void *
run_writes(void *arg)
{
    writer_thread *w = arg;
    char id[32];
    pip_error err;

    pip_error_init(&err);
    for (int i = 0; i < WRITES_PER_THREAD; i++) {
        snprintf(id, sizeof(id), "t%d-%d", w->index, i);
        w->acked[i] = put_record(w->c, id, w->index, i, &err) == PIP_OK;
        w->failures += !w->acked[i];
        pip_error_fini(&err);
        if (pip_coll_update(w->c, "shared", increment_n, NULL, NULL, &err) ==
            PIP_OK) {
            w->increments++;
        } else {
            w->failures++;
        }
        pip_error_fini(&err);
    }
    return NULL;
}

/* Checks that put i of thread w reads back as written. */
static void
check_written(writer_thread *w, int i)
{
    json_t *got = NULL;
    char id[32];
    pip_error err;

    snprintf(id, sizeof(id), "t%d-%d", w->index, i);
    pip_error_init(&err);
    assert_int_equal(pip_coll_get(w->c, id, &got, &err), PIP_OK);
    if (got == NULL) {
        fail_msg("acknowledged write %s is missing", id);
    }
    assert_int_equal(json_integer_value(json_object_get(got, "thread")),
                     w->index);
    assert_int_equal(json_integer_value(json_object_get(got, "seq")), i);
    json_decref(got);
    pip_error_fini(&err);
}

static void
concurrent_writes_read_back(void **state)
{
    fixture *f = *state;
    writer_thread *writers = calloc(WRITER_THREADS, sizeof(*writers));
    gate g;
    json_t *shared = NULL;
    int increments = 0;
    pip_error err;

    assert_non_null(writers);
    gate_init(&g);
    /* The first leader waits for a second writer, so at least one group
     * merges several batches. */
    pip__store_set_commit_hook(f->st, gate_hook, &g);
    for (int i = 0; i < WRITER_THREADS; i++) {
        writers[i].c = f->items;
        writers[i].index = i;
        assert_int_equal(
            pthread_create(&writers[i].thread, NULL, run_writes, &writers[i]),
            0);
    }
    gate_wait_entered(&g);
    wait_for_queue(f->st, 2);
    gate_release(&g);

    for (int i = 0; i < WRITER_THREADS; i++) {
        pthread_join(writers[i].thread, NULL);
        assert_int_equal(writers[i].failures, 0);
        for (int k = 0; k < WRITES_PER_THREAD; k++) {
            check_written(&writers[i], k);
        }
        increments += writers[i].increments;
    }
    assert_true(g.max_writers > 1);

    pip_error_init(&err);
    assert_int_equal(pip_coll_get(f->items, "shared", &shared, &err), PIP_OK);
    assert_non_null(shared);
    assert_int_equal(json_integer_value(json_object_get(shared, "n")),
                     increments);
    assert_int_equal(increments, WRITER_THREADS * WRITES_PER_THREAD);
    json_decref(shared);
    pip_error_fini(&err);

    pip__store_set_commit_hook(f->st, NULL, NULL);
    gate_fini(&g);
    free(writers);
}

/* ---- a failed group write ---- */

static void
failed_group_fails_every_writer(void **state)
{
    fixture *f = *state;
    put_thread leader;
    put_thread queued[QUEUED_WRITERS];
    gate g;

    gate_init(&g);
    g.fail_from = "injected disk failure";
    queue_behind_leader(f, &g, &leader, queued);
    gate_release(&g);

    pthread_join(leader.thread, NULL);
    assert_int_equal(leader.rv, PIP_OK);
    for (int i = 0; i < QUEUED_WRITERS; i++) {
        pthread_join(queued[i].thread, NULL);
        assert_int_equal(queued[i].rv, PIP_E_INTERNAL);
        assert_string_equal(queued[i].code, "STORE_WRITE_FAILED");
        assert_non_null(strstr(queued[i].message, "injected disk failure"));
    }
    /* The queued writers were one group, written (and failed) at once. */
    assert_int_equal(g.calls, 2);
    assert_int_equal(g.writers[0], 1);
    assert_int_equal(g.writers[1], QUEUED_WRITERS);

    pip__store_set_commit_hook(f->st, NULL, NULL);
    assert_true(record_exists(f->items, "leader"));
    for (int i = 0; i < QUEUED_WRITERS; i++) {
        assert_false(record_exists(f->items, queued[i].id));
    }
    gate_fini(&g);
}

/* ---- close while writers wait ---- */

typedef struct closer_thread {
    pthread_t thread;
    pip_store *st;
    atomic_bool done;
} closer_thread;

static void *
run_close(void *arg)
{
    closer_thread *closer = arg;

    pip_store_close(closer->st);
    atomic_store(&closer->done, true);
    return NULL;
}

static void
close_waits_for_queued_writers(void **state)
{
    fixture *f = *state;
    put_thread leader;
    put_thread queued[QUEUED_WRITERS];
    closer_thread closer = {.st = NULL};
    gate g;
    pip_error err;
    int waited_ms = 0;

    gate_init(&g);
    queue_behind_leader(f, &g, &leader, queued);

    closer.st = f->st;
    atomic_init(&closer.done, false);
    assert_int_equal(pthread_create(&closer.thread, NULL, run_close, &closer),
                     0);
    while (!pip__store_closing(f->st) && waited_ms++ < WAIT_LIMIT_MS) {
        sleep_ms(1);
    }
    assert_true(pip__store_closing(f->st));

    /* The close waits for the writers, and a write that starts now is
     * rejected. */
    sleep_ms(100);
    assert_false(atomic_load(&closer.done));
    pip_error_init(&err);
    assert_int_equal(put_record(f->items, "late", 0, 0, &err),
                     PIP_E_INVALID_STATE);
    assert_string_equal(err.code, "STORE_CLOSED");
    pip_error_fini(&err);

    gate_release(&g);
    pthread_join(leader.thread, NULL);
    assert_int_equal(leader.rv, PIP_OK);
    for (int i = 0; i < QUEUED_WRITERS; i++) {
        pthread_join(queued[i].thread, NULL);
        assert_int_equal(queued[i].rv, PIP_OK);
    }
    pthread_join(closer.thread, NULL);
    assert_true(atomic_load(&closer.done));

    /* Every acknowledged write survived the close. */
    open_store(f);
    assert_true(record_exists(f->items, "leader"));
    for (int i = 0; i < QUEUED_WRITERS; i++) {
        assert_true(record_exists(f->items, queued[i].id));
    }
    assert_false(record_exists(f->items, "late"));
    gate_fini(&g);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(concurrent_writes_read_back, setup,
                                        fixture_teardown),
        cmocka_unit_test_setup_teardown(failed_group_fails_every_writer, setup,
                                        fixture_teardown),
        cmocka_unit_test_setup_teardown(close_waits_for_queued_writers, setup,
                                        fixture_teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
