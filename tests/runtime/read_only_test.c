/*
 * Tests of read-only commands, which a node runs on its NNG threads with
 * reads from memory only, and sends to a worker when a read needs the
 * disk.  Closing and reopening a node leaves its records on disk only:
 * RocksDB writes the recovered log to a table file at the open, and the
 * block cache starts empty.  The open reads the collection's manifest,
 * which loads the first block of that file, so the record under test
 * sorts after enough filler records to be in a later block.
 */
#include "node_fixture.h"

/* How long a test lets demo.slow reach the node's one worker. */
#define MEMORY_SETTLE_MS 100
/* Records of FILLER_VALUE_BYTES each, many times RocksDB's 4 KiB block. */
#define FILLER_RECORDS 100
#define FILLER_VALUE_BYTES 100
/* The id of the record under test: it sorts after the fillers' "f..". */
#define LAST_ID "z"

/* A node with a read-only command */

typedef struct shelf_state {
    pip_collection *items;
} shelf_state;

static const pip_field shelf_id_args[] = {
    {.name = "id", .type = PIP_T_STRING, .required = true, .doc = "item id"},
    {.name = NULL},
};

static const pip_field shelf_put_args[] = {
    {.name = "id", .type = PIP_T_STRING, .required = true, .doc = "item id"},
    {.name = "value", .type = PIP_T_STRING, .required = true,
     .doc = "item value"},
    {.name = NULL},
};

static int
shelf_put(pip_call *call, json_t *args, json_t **result)
{
    shelf_state *st = pip_call_state(call);
    const char *id = json_string_value(json_object_get(args, "id"));
    json_t *record = json_pack("{sO}", "value", json_object_get(args, "value"));
    int rv;

    rv = pip_coll_put(st->items, id, record, pip_call_error(call));
    json_decref(record);
    *result = rv == PIP_OK ? json_true() : NULL;
    return rv;
}

/* The value of an item, or null when it is missing. */
static int
shelf_get(pip_call *call, json_t *args, json_t **result)
{
    shelf_state *st = pip_call_state(call);
    const char *id = json_string_value(json_object_get(args, "id"));
    json_t *record = NULL;
    int rv;

    rv = pip_coll_get(st->items, id, &record, pip_call_error(call));
    if (rv != PIP_OK) {
        return rv;
    }
    *result = json_incref(json_object_get(record, "value"));
    if (*result == NULL) {
        *result = json_null();
    }
    json_decref(record);
    return PIP_OK;
}

static int
shelf_open(pip_service *svc, pip_error *err)
{
    shelf_state *st = pip_service_new_state(svc, sizeof(*st), err);

    if (st == NULL) {
        return PIP_E_INTERNAL;
    }
    return pip_store_collection(pip_service_store(svc), "items", NULL,
                                &st->items, err);
}

static const pip_command shelf_commands[] = {
    {"put", shelf_put, shelf_put_args, "true", "Stores an item."},
    {"get", shelf_get, shelf_id_args, "string or null", "Reads an item."},
    /* Listed as read-only by mistake in shelf_wrong_def: it writes. */
    {"touch", shelf_put, shelf_put_args, "true", "Stores an item."},
    {NULL, NULL, NULL, NULL, NULL},
};

static const char *const shelf_read_only[] = {"get", NULL};
static const char *const shelf_wrong_read_only[] = {"get", "touch", NULL};
static const char *const shelf_unknown_read_only[] = {"get", "peek", NULL};

#define SHELF_DEF(read_only_names)                                           \
    {                                                                         \
        .name = "shelf", .version = "1.0", .route = "v1/shelf",               \
        .doc = "Items by id, with a read-only get.",                          \
        .commands = shelf_commands, .uses_store = true,                       \
        .read_only = (read_only_names), .open = shelf_open,                   \
    }

/* The node keeps a pointer to its definitions, so they are static. */
static const pip_service_def shelf_def = SHELF_DEF(shelf_read_only);
static const pip_service_def shelf_wrong_def =
    SHELF_DEF(shelf_wrong_read_only);
static const pip_service_def shelf_unknown_def =
    SHELF_DEF(shelf_unknown_read_only);

/* Starts a node with one worker and the demo and shelf services. */
static void
shelf_node_start(node_fixture *f, const pip_service_def *shelf)
{
    pip_error err;

    f->options.workers = 1;
    pip_error_init(&err);
    assert_int_equal(pip_node_new(&f->options, &f->node, &err), PIP_OK);
    assert_int_equal(pip_node_add(f->node, &demo_def, &err), PIP_OK);
    assert_int_equal(pip_node_add(f->node, shelf, &err), PIP_OK);
    assert_int_equal(pip_node_start(f->node, &err), PIP_OK);
    pip_error_fini(&err);
    f->sock = fixture_dial(f, FIXTURE_RECV_TIMEOUT_MS);
}

static void
shelf_node_stop(node_fixture *f)
{
    nng_close(f->sock);
    pip_node_free(f->node);
    f->node = NULL;
}

static void
shelf_call_ok(node_fixture *f, const char *method, const char *args,
              pip_response *resp)
{
    fixture_call(f, method, args, resp);
    if (resp->failed) {
        fail_msg("%s failed: %s %s", method, resp->error.code,
                 resp->error.message);
    }
}

/* Stores the filler records, then LAST_ID with value "x". */
static void
shelf_fill(node_fixture *f)
{
    char args[FILLER_VALUE_BYTES + 64];
    char value[FILLER_VALUE_BYTES + 1];
    pip_response resp;

    memset(value, 'v', FILLER_VALUE_BYTES);
    value[FILLER_VALUE_BYTES] = '\0';
    for (int i = 0; i < FILLER_RECORDS; i++) {
        snprintf(args, sizeof(args), "{\"id\": \"f%03d\", \"value\": \"%s\"}",
                 i, value);
        shelf_call_ok(f, "shelf.put", args, &resp);
        pip_response_fini(&resp);
    }
    shelf_call_ok(f, "shelf.put",
                  "{\"id\": \"" LAST_ID "\", \"value\": \"x\"}", &resp);
    pip_response_fini(&resp);
}

/* Sends demo.slow, which takes the node's one worker for DEMO_SLOW_MS,
 * and waits until the worker has it. */
static void
shelf_occupy_worker(nng_socket sock)
{
    msgpack_sbuffer sbuf;

    msgpack_sbuffer_init(&sbuf);
    fixture_pack(&sbuf, 900, "demo.slow", NULL, NULL);
    fixture_send(sock, sbuf.data, sbuf.size);
    msgpack_sbuffer_destroy(&sbuf);
    fixture_sleep_ms(MEMORY_SETTLE_MS);
}

static void
shelf_expect_slow_reply(nng_socket sock)
{
    pip_response resp[1];

    assert_int_equal(fixture_recv(sock, resp, 1), 1);
    assert_false(resp[0].failed);
    fixture_free_responses(resp, 1);
}

/*
 * Reads item id while demo.slow occupies the node's one worker, checks that
 * the value is "x", and returns how long the read took in milliseconds.
 */
static int64_t
shelf_get_beside_slow(node_fixture *f, nng_socket busy, const char *id)
{
    char args[64];
    pip_response resp;
    int64_t start_ms;
    int64_t took_ms;

    snprintf(args, sizeof(args), "{\"id\": \"%s\"}", id);
    shelf_occupy_worker(busy);
    start_ms = pip_mono_ms();
    shelf_call_ok(f, "shelf.get", args, &resp);
    took_ms = pip_mono_ms() - start_ms;
    assert_string_equal(json_string_value(resp.result), "x");
    pip_response_fini(&resp);
    shelf_expect_slow_reply(busy);
    return took_ms;
}

static int64_t
shelf_command_calls(node_fixture *f, const char *command, const char *field)
{
    pip_response resp;
    json_t *stats;
    int64_t value;

    shelf_call_ok(f, "shelf.statistics", NULL, &resp);
    stats = json_object_get(json_object_get(resp.result, "commands"), command);
    value = json_integer_value(json_object_get(stats, field));
    pip_response_fini(&resp);
    return value;
}

static void
test_read_only_skips_busy_worker(void **state)
{
    node_fixture *f = fixture_new();
    pip_response resp;
    nng_socket busy;

    *state = f;
    shelf_node_start(f, &shelf_def);
    shelf_call_ok(f, "shelf.put", "{\"id\": \"a\", \"value\": \"x\"}", &resp);
    pip_response_fini(&resp);
    busy = fixture_dial(f, FIXTURE_RECV_TIMEOUT_MS);

    assert_true(shelf_get_beside_slow(f, busy, "a") <
                DEMO_SLOW_MS - MEMORY_SETTLE_MS - 50);
    nng_close(busy);
    assert_int_equal(shelf_command_calls(f, "get", "calls"), 1);

    /* Its arguments are checked as on a worker. */
    fixture_call(f, "shelf.get", "{}", &resp);
    fixture_expect_error(&resp, PIP_E_BAD_REQUEST, "INVALID_DATA");
    pip_response_fini(&resp);
}

static void
test_cold_read_waits_for_worker(void **state)
{
    node_fixture *f = fixture_new();
    nng_socket busy;

    *state = f;
    shelf_node_start(f, &shelf_def);
    shelf_fill(f);
    shelf_node_stop(f);
    shelf_node_start(f, &shelf_def);
    busy = fixture_dial(f, FIXTURE_RECV_TIMEOUT_MS);

    /* The record is on disk only: the read waits for the worker. */
    assert_true(shelf_get_beside_slow(f, busy, LAST_ID) >=
                DEMO_SLOW_MS - MEMORY_SETTLE_MS - 20);

    /* The worker's read loaded the record, so the next one skips it. */
    assert_true(shelf_get_beside_slow(f, busy, LAST_ID) <
                DEMO_SLOW_MS - MEMORY_SETTLE_MS - 50);
    nng_close(busy);

    /* The discarded memory-only run is not counted. */
    assert_int_equal(shelf_command_calls(f, "get", "calls"), 2);
    assert_int_equal(shelf_command_calls(f, "get", "errors"), 0);
}

/* A write in a command listed as read-only runs on the worker after all. */
static void
test_read_only_write_moves_to_worker(void **state)
{
    node_fixture *f = fixture_new();
    pip_response resp;

    *state = f;
    shelf_node_start(f, &shelf_wrong_def);
    shelf_call_ok(f, "shelf.touch", "{\"id\": \"b\", \"value\": \"y\"}", &resp);
    assert_true(json_is_true(resp.result));
    pip_response_fini(&resp);

    shelf_call_ok(f, "shelf.get", "{\"id\": \"b\"}", &resp);
    assert_string_equal(json_string_value(resp.result), "y");
    pip_response_fini(&resp);
    assert_int_equal(shelf_command_calls(f, "touch", "calls"), 1);
    assert_int_equal(shelf_command_calls(f, "touch", "errors"), 0);
    fixture_expect_alive(f, f->sock);
}

static void
test_unknown_read_only_rejected(void **state)
{
    node_fixture *f = fixture_new();
    pip_error err;

    *state = f;
    pip_error_init(&err);
    assert_int_equal(pip_node_new(&f->options, &f->node, &err), PIP_OK);
    assert_int_equal(pip_node_add(f->node, &shelf_unknown_def, &err),
                     PIP_E_BAD_REQUEST);
    assert_string_equal(err.code, "INVALID_SERVICE");
    assert_non_null(strstr(err.message, "peek"));
    pip_error_fini(&err);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_read_only_skips_busy_worker,
                                  fixture_teardown),
        cmocka_unit_test_teardown(test_cold_read_waits_for_worker,
                                  fixture_teardown),
        cmocka_unit_test_teardown(test_read_only_write_moves_to_worker,
                                  fixture_teardown),
        cmocka_unit_test_teardown(test_unknown_read_only_rejected,
                                  fixture_teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
