/*
 * Tests of the store's memory-only runs against a real RocksDB database:
 * reads from memory only, and writes and scans that fail at once.
 * Closing and reopening a store leaves its records on disk only: RocksDB
 * writes the recovered log to a table file at the open, and the block
 * cache starts empty.  The open reads the collection's manifest, which
 * loads the first block of that file, so the record under test sorts
 * after enough filler records to be in a later block.
 */
#include "store_fixture.h"

#include <stdio.h>

#include "store_internal.h"

/* Records of FILLER_VALUE_BYTES each, many times RocksDB's 4 KiB block. */
#define FILLER_RECORDS 100
#define FILLER_VALUE_BYTES 100
/* The id of the record under test: it sorts after the fillers' "f..". */
#define LAST_ID "z"

static int
setup(void **state)
{
    *state = fixture_new(NULL);
    return 0;
}

static void
store_put(fixture *f, const char *id, const char *value)
{
    json_t *record = json_pack("{ss}", "value", value);
    pip_error err;

    pip_error_init(&err);
    assert_int_equal(pip_coll_put(f->items, id, record, &err), PIP_OK);
    pip_error_fini(&err);
    json_decref(record);
}

/* Writes the filler records, whose ids sort before LAST_ID. */
static void
store_fill(fixture *f)
{
    char value[FILLER_VALUE_BYTES + 1];
    char id[16];

    memset(value, 'v', FILLER_VALUE_BYTES);
    value[FILLER_VALUE_BYTES] = '\0';
    for (int i = 0; i < FILLER_RECORDS; i++) {
        snprintf(id, sizeof(id), "f%03d", i);
        store_put(f, id, value);
    }
}

/* Closes and reopens the store, which leaves its records on disk only. */
static void
store_reopen(fixture *f)
{
    close_store(f);
    open_store(f);
}

static void
test_memory_get_reads_memtable(void **state)
{
    fixture *f = *state;
    json_t *record = NULL;
    pip_error err;

    store_put(f, "a", "fresh");
    pip_error_init(&err);
    pip__store_memory_only(true);
    assert_int_equal(pip_coll_get(f->items, "a", &record, &err), PIP_OK);
    assert_false(pip__store_would_block());
    pip__store_memory_only(false);
    assert_string_equal(json_string_value(json_object_get(record, "value")),
                        "fresh");
    json_decref(record);
    pip_error_fini(&err);
}

static void
test_memory_get_blocks_on_disk(void **state)
{
    fixture *f = *state;
    json_t *record = NULL;
    pip_error err;

    store_fill(f);
    store_put(f, LAST_ID, "stored");
    store_reopen(f);
    pip_error_init(&err);

    pip__store_memory_only(true);
    assert_int_equal(pip_coll_get(f->items, LAST_ID, &record, &err),
                     PIP_E_UNAVAILABLE);
    assert_string_equal(err.code, "STORE_WOULD_BLOCK");
    assert_null(record);
    assert_true(pip__store_would_block());
    pip__store_memory_only(false);
    assert_false(pip__store_would_block());
    pip_error_fini(&err);

    /* A normal read loads the block, and memory then has the record. */
    assert_int_equal(pip_coll_get(f->items, LAST_ID, &record, &err), PIP_OK);
    json_decref(record);
    record = NULL;
    pip__store_memory_only(true);
    assert_int_equal(pip_coll_get(f->items, LAST_ID, &record, &err), PIP_OK);
    assert_false(pip__store_would_block());
    pip__store_memory_only(false);
    assert_string_equal(json_string_value(json_object_get(record, "value")),
                        "stored");
    json_decref(record);
    pip_error_fini(&err);
}

static void
test_memory_run_rejects_writes(void **state)
{
    fixture *f = *state;
    json_t *record = json_pack("{ss}", "value", "new");
    json_t *old = NULL;
    pip_error err;

    pip_error_init(&err);
    pip__store_memory_only(true);
    assert_int_equal(pip_coll_put(f->items, "a", record, &err), PIP_E_UNAVAILABLE);
    assert_string_equal(err.code, "STORE_WOULD_BLOCK");
    assert_true(pip__store_would_block());
    pip_error_fini(&err);
    assert_int_equal(pip_coll_delete(f->items, "a", &old, &err),
                     PIP_E_UNAVAILABLE);
    pip_error_fini(&err);
    assert_int_equal(pip_coll_clear(f->items, &err), PIP_E_UNAVAILABLE);
    pip_error_fini(&err);
    pip__store_memory_only(false);

    /* Nothing was written. */
    assert_int_equal(pip_coll_get(f->items, "a", &old, &err), PIP_OK);
    assert_null(old);
    pip_error_fini(&err);
    json_decref(record);
}

static void
test_memory_run_rejects_scans(void **state)
{
    fixture *f = *state;
    json_t *page = NULL;
    int64_t count = -1;
    pip_error err;

    store_put(f, "a", "x");
    pip_error_init(&err);
    pip__store_memory_only(true);
    assert_int_equal(pip_coll_list(f->items, NULL, NULL, &page, &err),
                     PIP_E_UNAVAILABLE);
    assert_null(page);
    pip_error_fini(&err);
    assert_int_equal(pip_coll_count(f->items, NULL, &count, &err),
                     PIP_E_UNAVAILABLE);
    assert_true(pip__store_would_block());
    pip__store_memory_only(false);
    pip_error_fini(&err);

    assert_int_equal(pip_coll_count(f->items, NULL, &count, &err), PIP_OK);
    assert_int_equal(count, 1);
    pip_error_fini(&err);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_memory_get_reads_memtable, setup,
                                        fixture_teardown),
        cmocka_unit_test_setup_teardown(test_memory_get_blocks_on_disk, setup,
                                        fixture_teardown),
        cmocka_unit_test_setup_teardown(test_memory_run_rejects_writes, setup,
                                        fixture_teardown),
        cmocka_unit_test_setup_teardown(test_memory_run_rejects_scans, setup,
                                        fixture_teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
