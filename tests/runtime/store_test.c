/*
 * Tests of the RocksDB store against a real database in a temporary
 * folder, removed at the end of each test.
 */
#include "store_fixture.h"

#include <stdint.h>

#include <ftw.h>
#include <pthread.h>
#include <rocksdb/c.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pip/crud.h"
#include "pip/store.h"

/* The fields that the collection items is indexed on. */
static const char *const item_fields[] = {"color", "size", "flag", NULL};

static int
setup(void **state)
{
    *state = fixture_new(item_fields);
    return 0;
}

/* ---- helpers ---- */

static void
put_json(pip_collection *c, const char *id, const char *text)
{
    json_error_t jerr;
    json_t *record = json_loads(text, 0, &jerr);
    pip_error err;

    assert_non_null(record);
    pip_error_init(&err);
    if (pip_coll_put(c, id, record, &err) != PIP_OK) {
        fail_msg("put of %s failed: %s %s", id, err.code, err.message);
    }
    pip_error_fini(&err);
    json_decref(record);
}

static bool
append_id(const char *id, const json_t *record, void *ctx)
{
    char *out = ctx;

    (void)record;
    if (out[0] != '\0') {
        strcat(out, ",");
    }
    strcat(out, id);
    return true;
}

/* Scans and returns the ids visited, comma-separated, in out[512]. */
static const char *
scan_ids(pip_collection *c, const pip_scan *scan, char *out)
{
    pip_error err;

    out[0] = '\0';
    pip_error_init(&err);
    if (pip_coll_scan(c, scan, append_id, out, &err) != PIP_OK) {
        fail_msg("scan failed: %s %s", err.code, err.message);
    }
    pip_error_fini(&err);
    return out;
}

static const char *
index_ids(pip_collection *c, const char *field, json_t *value, char *out)
{
    pip_scan scan = {.index = field, .index_value = value};

    scan_ids(c, &scan, out);
    json_decref(value);
    return out;
}

static void
put_letters(pip_collection *c)
{
    const char *ids[] = {"b2", "a1", "c1", "a3", "b1", "a2"};

    for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
        put_json(c, ids[i], "{\"v\": 1}");
    }
}

/* ---- tests ---- */

static void
put_get_delete(void **state)
{
    fixture *f = *state;
    json_t *expected = json_pack("{s:s, s:i, s:[i,i]}", "color", "red",
                                 "size", 3, "list", 1, 2);
    json_t *got = NULL;
    json_t *old = NULL;
    pip_error err;

    pip_error_init(&err);
    assert_int_equal(pip_coll_put(f->items, "one", expected, &err), PIP_OK);
    assert_int_equal(pip_coll_get(f->items, "one", &got, &err), PIP_OK);
    assert_non_null(got);
    assert_true(json_equal(got, expected));
    json_decref(got);

    assert_int_equal(pip_coll_delete(f->items, "one", &old, &err), PIP_OK);
    assert_non_null(old);
    assert_true(json_equal(old, expected));
    json_decref(old);

    assert_int_equal(pip_coll_get(f->items, "one", &got, &err), PIP_OK);
    assert_null(got);
    assert_int_equal(pip_coll_delete(f->items, "one", &old, &err), PIP_OK);
    assert_null(old);
    assert_int_equal(pip_coll_delete(f->items, "one", NULL, &err), PIP_OK);
    pip_error_fini(&err);
    json_decref(expected);
}

static void
put_rejects_non_object(void **state)
{
    fixture *f = *state;
    json_t *array = json_array();
    pip_error err;

    pip_error_init(&err);
    assert_int_equal(pip_coll_put(f->items, "x", array, &err),
                     PIP_E_BAD_REQUEST);
    assert_string_equal(err.code, "INVALID_DATA");
    pip_error_fini(&err);
    json_decref(array);
}

static void
invalid_ids_rejected(void **state)
{
    fixture *f = *state;
    char long_id[1026];
    json_t *record = json_object();
    json_t *got = NULL;
    pip_error err;

    memset(long_id, 'k', sizeof(long_id) - 1);
    long_id[sizeof(long_id) - 1] = '\0';
    pip_error_init(&err);

    assert_int_equal(pip_coll_put(f->items, "", record, &err),
                     PIP_E_BAD_REQUEST);
    assert_string_equal(err.code, "INVALID_DATA");
    assert_int_equal(pip_coll_put(f->items, NULL, record, &err),
                     PIP_E_BAD_REQUEST);
    assert_int_equal(pip_coll_put(f->items, long_id, record, &err),
                     PIP_E_BAD_REQUEST);
    assert_string_equal(err.code, "INVALID_DATA");
    assert_non_null(strstr(err.message, "kkkk"));
    assert_non_null(json_object_get(err.details, "id"));
    assert_int_equal(pip_coll_get(f->items, "", &got, &err),
                     PIP_E_BAD_REQUEST);
    assert_int_equal(pip_coll_delete(f->items, long_id, NULL, &err),
                     PIP_E_BAD_REQUEST);

    /* 1024 bytes is the maximum, and any byte but 0x00 is allowed. */
    long_id[1024] = '\0';
    assert_int_equal(pip_coll_put(f->items, long_id, record, &err), PIP_OK);
    assert_int_equal(pip_coll_put(f->items, "a/b c\x01\xff", record, &err),
                     PIP_OK);
    assert_int_equal(pip_coll_get(f->items, "a/b c\x01\xff", &got, &err),
                     PIP_OK);
    assert_non_null(got);
    json_decref(got);
    pip_error_fini(&err);
    json_decref(record);
}

static void
collection_names_checked(void **state)
{
    fixture *f = *state;
    const char *const other_fields[] = {"color", NULL};
    pip_collection *c = NULL;
    pip_error err;

    pip_error_init(&err);
    assert_int_equal(pip_store_collection(f->st, "Items", NULL, &c, &err),
                     PIP_E_BAD_REQUEST);
    assert_int_equal(pip_store_collection(f->st, "a-b", NULL, &c, &err),
                     PIP_E_BAD_REQUEST);
    assert_int_equal(pip_store_collection(f->st, "", NULL, &c, &err),
                     PIP_E_BAD_REQUEST);
    assert_null(c);

    assert_int_equal(pip_store_collection(f->st, "items", NULL, &c, &err),
                     PIP_OK);
    assert_ptr_equal(c, f->items);
    assert_int_equal(pip_store_collection(f->st, "items", item_fields, &c,
                                          &err),
                     PIP_OK);
    assert_ptr_equal(c, f->items);
    assert_int_equal(pip_store_collection(f->st, "items", other_fields, &c,
                                          &err),
                     PIP_E_INVALID_STATE);
    assert_string_equal(err.code, "INDEX_MISMATCH");
    pip_error_fini(&err);
}

static void
clear_empties_one_collection(void **state)
{
    fixture *f = *state;
    pip_collection *other = NULL;
    char ids[512];
    int64_t count = -1;
    pip_error err;

    pip_error_init(&err);
    assert_int_equal(pip_store_collection(f->st, "items_2", item_fields,
                                          &other, &err),
                     PIP_OK);
    put_json(f->items, "a", "{\"color\": \"red\"}");
    put_json(f->items, "b", "{\"color\": \"red\"}");
    put_json(other, "c", "{\"color\": \"red\"}");

    assert_int_equal(pip_coll_clear(f->items, &err), PIP_OK);
    assert_int_equal(pip_coll_count(f->items, NULL, &count, &err), PIP_OK);
    assert_int_equal(count, 0);
    assert_string_equal(
        index_ids(f->items, "color", json_string("red"), ids), "");
    assert_string_equal(scan_ids(other, NULL, ids), "c");
    assert_string_equal(index_ids(other, "color", json_string("red"), ids),
                        "c");

    put_json(f->items, "a", "{\"color\": \"blue\"}");
    assert_string_equal(
        index_ids(f->items, "color", json_string("blue"), ids), "a");
    pip_error_fini(&err);
}

static void
index_follows_replace_delete(void **state)
{
    fixture *f = *state;
    char ids[512];
    pip_error err;

    put_json(f->items, "x", "{\"color\": \"red\", \"flag\": true}");
    put_json(f->items, "y", "{\"color\": \"red\", \"flag\": false}");
    assert_string_equal(index_ids(f->items, "color", json_string("red"), ids),
                        "x,y");
    assert_string_equal(index_ids(f->items, "flag", json_true(), ids), "x");

    put_json(f->items, "x", "{\"color\": \"blue\", \"flag\": false}");
    assert_string_equal(index_ids(f->items, "color", json_string("red"), ids),
                        "y");
    assert_string_equal(
        index_ids(f->items, "color", json_string("blue"), ids), "x");
    assert_string_equal(index_ids(f->items, "flag", json_true(), ids), "");
    assert_string_equal(index_ids(f->items, "flag", json_false(), ids),
                        "x,y");

    /* A value of a type that is not indexed drops the entry. */
    put_json(f->items, "y", "{\"color\": 1.5}");
    assert_string_equal(index_ids(f->items, "color", json_string("red"), ids),
                        "");
    assert_string_equal(index_ids(f->items, "flag", json_false(), ids), "x");

    pip_error_init(&err);
    assert_int_equal(pip_coll_delete(f->items, "x", NULL, &err), PIP_OK);
    assert_string_equal(
        index_ids(f->items, "color", json_string("blue"), ids), "");
    assert_string_equal(index_ids(f->items, "flag", json_false(), ids), "");
    pip_error_fini(&err);
}

static void
index_orders_integers(void **state)
{
    fixture *f = *state;
    pip_scan scan = {.index = "size"};
    char ids[512];

    put_json(f->items, "p100", "{\"size\": 100}");
    put_json(f->items, "m5", "{\"size\": -5}");
    put_json(f->items, "zero", "{\"size\": 0}");
    put_json(f->items, "max", "{\"size\": 9223372036854775807}");
    put_json(f->items, "m100", "{\"size\": -100}");
    put_json(f->items, "p3", "{\"size\": 3}");
    put_json(f->items, "none", "{\"color\": \"red\"}");

    assert_string_equal(scan_ids(f->items, &scan, ids),
                        "m100,m5,zero,p3,p100,max");
    scan.reverse = true;
    assert_string_equal(scan_ids(f->items, &scan, ids),
                        "max,p100,p3,zero,m5,m100");
    scan = (pip_scan){.index = "size", .prefix = "p"};
    assert_string_equal(scan_ids(f->items, &scan, ids), "p3,p100");
    /* Ids between m5 and p3, in the order of their sizes. */
    scan = (pip_scan){.index = "size", .start = "m5", .end = "p3"};
    assert_string_equal(scan_ids(f->items, &scan, ids), "m5,p100,max");
    assert_string_equal(index_ids(f->items, "size", json_integer(-5), ids),
                        "m5");
    assert_string_equal(index_ids(f->items, "size", json_integer(5), ids),
                        "");
}

static void
nul_bytes_rejected(void **state)
{
    fixture *f = *state;
    json_t *value = json_object();
    json_t *key = json_object();
    json_t *nul = json_stringn("a\0b", 3);
    pip_scan scan = {.index = "color", .index_value = nul};
    char ids[512] = "";
    pip_error err;

    /* The msgpack bridge rejects NUL bytes in strings when reading. */
    json_object_set_new(value, "color", json_incref(nul));
    json_object_setn_new(key, "a\0b", 3, json_true());
    pip_error_init(&err);
    assert_int_equal(pip_coll_put(f->items, "v", value, &err),
                     PIP_E_BAD_REQUEST);
    assert_string_equal(err.code, "INVALID_DATA");
    assert_int_equal(pip_coll_put(f->items, "k", key, &err),
                     PIP_E_BAD_REQUEST);
    assert_int_equal(pip_coll_scan(f->items, &scan, append_id, ids, &err),
                     PIP_E_BAD_REQUEST);

    /* Other control bytes are ordinary index values. */
    put_json(f->items, "plain", "{\"color\": \"a\"}");
    put_json(f->items, "one", "{\"color\": \"a\\u0001\"}");
    assert_string_equal(index_ids(f->items, "color", json_string("a"), ids),
                        "plain");
    assert_string_equal(
        index_ids(f->items, "color", json_string("a\x01"), ids), "one");
    pip_error_fini(&err);
    json_decref(value);
    json_decref(key);
    json_decref(nul);
}

static void
index_scan_checks_arguments(void **state)
{
    fixture *f = *state;
    pip_scan scan = {.index = "weight"};
    json_t *real = json_real(2.5);
    char ids[512] = "";
    pip_error err;

    pip_error_init(&err);
    assert_int_equal(pip_coll_scan(f->items, &scan, append_id, ids, &err),
                     PIP_E_INTERNAL);
    assert_string_equal(err.code, "UNKNOWN_INDEX");

    scan.index = "size";
    scan.index_value = real;
    assert_int_equal(pip_coll_scan(f->items, &scan, append_id, ids, &err),
                     PIP_E_BAD_REQUEST);
    assert_string_equal(err.code, "INVALID_DATA");
    pip_error_fini(&err);
    json_decref(real);
}

static void
scan_prefix_start_end(void **state)
{
    fixture *f = *state;
    pip_scan scan = {0};
    char ids[512];

    put_letters(f->items);
    assert_string_equal(scan_ids(f->items, NULL, ids), "a1,a2,a3,b1,b2,c1");

    scan.prefix = "a";
    assert_string_equal(scan_ids(f->items, &scan, ids), "a1,a2,a3");
    scan.reverse = true;
    assert_string_equal(scan_ids(f->items, &scan, ids), "a3,a2,a1");

    scan = (pip_scan){.start = "a2", .end = "b2"};
    assert_string_equal(scan_ids(f->items, &scan, ids), "a2,a3,b1");
    scan.reverse = true;
    assert_string_equal(scan_ids(f->items, &scan, ids), "b1,a3,a2");

    scan = (pip_scan){.prefix = "b", .start = "a9"};
    assert_string_equal(scan_ids(f->items, &scan, ids), "b1,b2");
    scan = (pip_scan){.prefix = "a", .start = "a2", .end = "a3"};
    assert_string_equal(scan_ids(f->items, &scan, ids), "a2");
    scan = (pip_scan){.prefix = "d"};
    assert_string_equal(scan_ids(f->items, &scan, ids), "");
    scan = (pip_scan){.start = "b", .end = "b"};
    assert_string_equal(scan_ids(f->items, &scan, ids), "");
}

static bool
id_is_not_b1(const json_t *record, void *ctx)
{
    const char *id = json_string_value(json_object_get(record, "id"));

    (void)ctx;
    return id == NULL || strcmp(id, "b1") != 0;
}

static bool
stop_after_two(const char *id, const json_t *record, void *ctx)
{
    int *seen = ctx;

    (void)id;
    (void)record;
    return ++*seen < 2;
}

static void
scan_match_and_stop(void **state)
{
    fixture *f = *state;
    pip_scan scan = {.match = id_is_not_b1};
    char ids[512];
    int seen = 0;
    pip_error err;

    put_json(f->items, "a1", "{\"id\": \"a1\"}");
    put_json(f->items, "b1", "{\"id\": \"b1\"}");
    put_json(f->items, "c1", "{\"id\": \"c1\"}");
    assert_string_equal(scan_ids(f->items, &scan, ids), "a1,c1");

    pip_error_init(&err);
    assert_int_equal(pip_coll_scan(f->items, NULL, stop_after_two, &seen,
                                   &err),
                     PIP_OK);
    assert_int_equal(seen, 2);
    pip_error_fini(&err);
}

/* Lists with paging and checks the ids of data and the total. */
static void
check_page(pip_collection *c, const pip_scan *scan, pip_paging paging,
           const char *expected_ids, json_int_t expected_total)
{
    json_t *page = NULL;
    json_t *item;
    size_t i;
    char ids[512] = "";
    pip_error err;

    pip_error_init(&err);
    assert_int_equal(pip_coll_list(c, scan, &paging, &page, &err), PIP_OK);
    json_array_foreach(json_object_get(page, "data"), i, item)
    {
        append_id(json_string_value(json_object_get(item, "id")), item, ids);
    }
    assert_string_equal(ids, expected_ids);
    if (expected_total < 0) {
        assert_true(json_is_null(json_object_get(page, "total")));
    } else {
        assert_int_equal(json_integer_value(json_object_get(page, "total")),
                         expected_total);
    }
    json_decref(page);
    pip_error_fini(&err);
}

static void
list_skip_take_total(void **state)
{
    fixture *f = *state;
    pip_scan reverse = {.reverse = true};
    pip_scan no_b1 = {.match = id_is_not_b1};
    json_t *page = NULL;
    pip_error err;
    char id[8];
    char text[32];

    for (int i = 0; i < 10; i++) {
        snprintf(id, sizeof(id), "i%d", i);
        snprintf(text, sizeof(text), "{\"id\": \"%s\"}", id);
        put_json(f->items, id, text);
    }

    check_page(f->items, NULL, (pip_paging){3, 4, true}, "i3,i4,i5,i6", 10);
    check_page(f->items, NULL, (pip_paging){3, 4, false}, "i3,i4,i5,i6", -1);
    check_page(f->items, &reverse, (pip_paging){0, 2, false}, "i9,i8", -1);
    check_page(f->items, NULL, (pip_paging){8, 5, true}, "i8,i9", 10);
    check_page(f->items, NULL, (pip_paging){20, 5, true}, "", 10);
    check_page(f->items, NULL, (pip_paging){0, 0, true}, "", 10);
    check_page(f->items, NULL, (pip_paging){0, 0, false}, "", -1);
    check_page(f->items, NULL, (pip_paging){0, 100, false},
               "i0,i1,i2,i3,i4,i5,i6,i7,i8,i9", -1);

    put_json(f->items, "b1", "{\"id\": \"b1\"}");
    check_page(f->items, &no_b1, (pip_paging){0, 1, true}, "i0", 10);

    pip_error_init(&err);
    assert_int_equal(pip_coll_list(f->items, NULL, &(pip_paging){-1, 5, true},
                                   &page, &err),
                     PIP_E_BAD_REQUEST);
    assert_null(page);
    assert_int_equal(pip_coll_list(f->items, NULL, NULL, &page, &err),
                     PIP_OK);
    assert_int_equal(json_array_size(json_object_get(page, "data")), 11);
    json_decref(page);
    pip_error_fini(&err);
}

static void
count_matches(void **state)
{
    fixture *f = *state;
    pip_scan scan = {.prefix = "a"};
    int64_t count = -1;
    pip_error err;

    put_letters(f->items);
    pip_error_init(&err);
    assert_int_equal(pip_coll_count(f->items, &scan, &count, &err), PIP_OK);
    assert_int_equal(count, 3);
    assert_int_equal(pip_coll_count(f->items, NULL, &count, &err), PIP_OK);
    assert_int_equal(count, 6);
    pip_error_fini(&err);
}

static void
batch_commits_together(void **state)
{
    fixture *f = *state;
    pip_collection *other = NULL;
    json_t *red = json_pack("{s:s}", "color", "red");
    json_t *blue = json_pack("{s:s}", "color", "blue");
    pip_batch *b = pip_batch_new(f->st);
    char ids[512];
    pip_error err;

    pip_error_init(&err);
    assert_int_equal(pip_store_collection(f->st, "others", NULL, &other,
                                          &err),
                     PIP_OK);
    put_json(f->items, "gone", "{\"color\": \"red\"}");
    assert_non_null(b);
    assert_int_equal(pip_batch_put(b, f->items, "a", red, &err), PIP_OK);
    assert_int_equal(pip_batch_put(b, f->items, "b", red, &err), PIP_OK);
    assert_int_equal(pip_batch_put(b, other, "c", blue, &err), PIP_OK);
    assert_int_equal(pip_batch_delete(b, f->items, "gone", &err), PIP_OK);
    /* The last write of an id wins. */
    assert_int_equal(pip_batch_put(b, f->items, "b", blue, &err), PIP_OK);
    assert_int_equal(pip_batch_put(b, f->items, "", blue, &err),
                     PIP_E_BAD_REQUEST);

    /* Nothing is visible before the commit. */
    assert_string_equal(scan_ids(f->items, NULL, ids), "gone");
    assert_int_equal(pip_batch_commit(b, &err), PIP_OK);

    assert_string_equal(scan_ids(f->items, NULL, ids), "a,b");
    assert_string_equal(scan_ids(other, NULL, ids), "c");
    assert_string_equal(index_ids(f->items, "color", json_string("red"), ids),
                        "a");
    assert_string_equal(
        index_ids(f->items, "color", json_string("blue"), ids), "b");
    pip_error_fini(&err);
    json_decref(red);
    json_decref(blue);
}

/* Nests objects depth levels deep: {"a": {"a": ...}}. */
static json_t *
deep_record(int depth)
{
    json_t *record = json_object();

    for (int i = 1; i < depth; i++) {
        json_t *outer = json_object();

        json_object_set_new(outer, "a", record);
        record = outer;
    }
    return record;
}

static void
batch_fails_as_a_whole(void **state)
{
    fixture *f = *state;
    json_t *ok = json_pack("{s:s}", "color", "red");
    json_t *deep = deep_record(33);
    json_t *deepest = deep_record(32);
    pip_batch *b = pip_batch_new(f->st);
    char ids[512];
    pip_error err;

    pip_error_init(&err);
    assert_int_equal(pip_batch_put(b, f->items, "ok", ok, &err), PIP_OK);
    assert_int_equal(pip_batch_put(b, f->items, "deep", deep, &err), PIP_OK);
    assert_int_equal(pip_batch_commit(b, &err), PIP_E_BAD_REQUEST);
    assert_string_equal(err.code, "INVALID_DATA");
    assert_string_equal(scan_ids(f->items, NULL, ids), "");

    /* The same depth limit guards single writes. */
    assert_int_equal(pip_coll_put(f->items, "deep", deep, &err),
                     PIP_E_BAD_REQUEST);
    assert_int_equal(pip_coll_put(f->items, "deepest", deepest, &err),
                     PIP_OK);
    assert_string_equal(scan_ids(f->items, NULL, ids), "deepest");
    pip_batch_free(pip_batch_new(f->st));
    pip_error_fini(&err);
    json_decref(ok);
    json_decref(deep);
    json_decref(deepest);
}

typedef struct update_worker {
    pip_collection *c;
    int failures;
} update_worker;

static void *
run_increments(void *arg)
{
    update_worker *w = arg;
    pip_error err;

    pip_error_init(&err);
    for (int i = 0; i < 1000; i++) {
        if (pip_coll_update(w->c, "counter", increment_n, NULL, NULL, &err) !=
            PIP_OK) {
            w->failures++;
        }
    }
    pip_error_fini(&err);
    return NULL;
}

static void
update_is_atomic(void **state)
{
    fixture *f = *state;
    pthread_t threads[8];
    update_worker workers[8];
    json_t *got = NULL;
    pip_error err;

    for (int i = 0; i < 8; i++) {
        workers[i] = (update_worker){.c = f->items};
        assert_int_equal(pthread_create(&threads[i], NULL, run_increments,
                                        &workers[i]),
                         0);
    }
    for (int i = 0; i < 8; i++) {
        pthread_join(threads[i], NULL);
        assert_int_equal(workers[i].failures, 0);
    }

    pip_error_init(&err);
    assert_int_equal(pip_coll_get(f->items, "counter", &got, &err), PIP_OK);
    assert_int_equal(json_integer_value(json_object_get(got, "n")), 8000);
    json_decref(got);
    pip_error_fini(&err);
}

static int
delete_record(const json_t *current, json_t **next, void *ctx,
              pip_error *err)
{
    (void)current;
    (void)ctx;
    (void)err;
    *next = NULL;
    return PIP_OK;
}

static int
reject_update(const json_t *current, json_t **next, void *ctx,
              pip_error *err)
{
    (void)current;
    (void)ctx;
    *next = json_object();
    return pip_error_set(err, PIP_E_CONFLICT, "STALE", "Stale record.");
}

static void
update_deletes_and_aborts(void **state)
{
    fixture *f = *state;
    json_t *result = NULL;
    json_t *got = NULL;
    char ids[512];
    pip_error err;

    pip_error_init(&err);
    assert_int_equal(
        pip_coll_update(f->items, "u", increment_n, NULL, &result, &err),
        PIP_OK);
    assert_int_equal(json_integer_value(json_object_get(result, "n")), 1);
    json_decref(result);

    assert_int_equal(pip_coll_update(f->items, "u", reject_update, NULL,
                                     &result, &err),
                     PIP_E_CONFLICT);
    assert_string_equal(err.code, "STALE");
    assert_null(result);
    assert_int_equal(pip_coll_get(f->items, "u", &got, &err), PIP_OK);
    assert_int_equal(json_integer_value(json_object_get(got, "n")), 1);
    json_decref(got);

    put_json(f->items, "u", "{\"color\": \"red\"}");
    assert_int_equal(pip_coll_update(f->items, "u", delete_record, NULL,
                                     &result, &err),
                     PIP_OK);
    assert_null(result);
    assert_string_equal(scan_ids(f->items, NULL, ids), "");
    assert_string_equal(index_ids(f->items, "color", json_string("red"), ids),
                        "");
    pip_error_fini(&err);
}

static void
reopen_keeps_data(void **state)
{
    fixture *f = *state;
    json_t *got = NULL;
    char ids[512];
    pip_error err;

    put_json(f->items, "kept", "{\"color\": \"red\", \"size\": 7}");
    close_store(f);
    open_store(f);

    pip_error_init(&err);
    assert_int_equal(pip_coll_get(f->items, "kept", &got, &err), PIP_OK);
    assert_non_null(got);
    assert_int_equal(json_integer_value(json_object_get(got, "size")), 7);
    json_decref(got);
    pip_error_fini(&err);
    assert_string_equal(index_ids(f->items, "color", json_string("red"), ids),
                        "kept");
}

static void
reopen_rebuilds_new_index(void **state)
{
    fixture *f = *state;
    const char *const with_source[] = {"source", NULL};
    pip_collection *events = NULL;
    char ids[512];
    pip_error err;

    pip_error_init(&err);
    assert_int_equal(pip_store_collection(f->st, "events", NULL, &events,
                                          &err),
                     PIP_OK);
    put_json(events, "e1", "{\"source\": \"pump\"}");
    put_json(events, "e2", "{\"source\": \"valve\"}");
    put_json(events, "e3", "{\"source\": \"pump\"}");
    close_store(f);

    open_store(f);
    assert_int_equal(pip_store_collection(f->st, "events", with_source,
                                          &events, &err),
                     PIP_OK);
    assert_string_equal(index_ids(events, "source", json_string("pump"), ids),
                        "e1,e3");
    put_json(events, "e3", "{\"source\": \"valve\"}");
    assert_string_equal(
        index_ids(events, "source", json_string("valve"), ids), "e2,e3");
    close_store(f);

    /* Written while the index is off, found once it is back. */
    open_store(f);
    assert_int_equal(pip_store_collection(f->st, "events", NULL, &events,
                                          &err),
                     PIP_OK);
    put_json(events, "e4", "{\"source\": \"pump\"}");
    close_store(f);
    open_store(f);
    assert_int_equal(pip_store_collection(f->st, "events", with_source,
                                          &events, &err),
                     PIP_OK);
    assert_string_equal(index_ids(events, "source", json_string("pump"), ids),
                        "e1,e4");
    pip_error_fini(&err);
}

static void
open_twice_fails(void **state)
{
    fixture *f = *state;
    pip_store *second = NULL;
    pip_error err;

    pip_error_init(&err);
    assert_int_equal(pip_store_open(f->dir, NULL, &second, &err),
                     PIP_E_INTERNAL);
    assert_null(second);
    assert_string_equal(err.code, "STORE_OPEN_FAILED");
    assert_true(json_is_string(json_object_get(err.details, "cause")));
    pip_error_fini(&err);
}

/* Writes raw bytes under a key with the RocksDB API, store closed. */
static void
write_raw(const char *dir, const char *key, const char *value, size_t len)
{
    rocksdb_options_t *options = rocksdb_options_create();
    rocksdb_writeoptions_t *wo = rocksdb_writeoptions_create();
    char *cause = NULL;
    rocksdb_t *db = rocksdb_open(options, dir, &cause);

    assert_null(cause);
    rocksdb_put(db, wo, key, strlen(key), value, len, &cause);
    assert_null(cause);
    rocksdb_close(db);
    rocksdb_writeoptions_destroy(wo);
    rocksdb_options_destroy(options);
}

static void
corrupt_value_reported(void **state)
{
    fixture *f = *state;
    json_t *got = NULL;
    json_t *record = json_pack("{s:s}", "color", "red");
    char ids[512] = "";
    pip_error err;

    put_json(f->items, "good", "{\"color\": \"red\"}");
    close_store(f);
    write_raw(f->dir, "r/items/bad", "\xc1", 1);
    write_raw(f->dir, "r/items/num", "\x05", 1);
    open_store(f);

    pip_error_init(&err);
    assert_int_equal(pip_coll_get(f->items, "bad", &got, &err),
                     PIP_E_INTERNAL);
    assert_null(got);
    assert_string_equal(err.code, "RECORD_CORRUPT");
    assert_string_equal(
        json_string_value(json_object_get(err.details, "id")), "bad");
    assert_string_equal(
        json_string_value(json_object_get(err.details, "collection")),
        "items");
    assert_int_equal(pip_coll_get(f->items, "num", &got, &err),
                     PIP_E_INTERNAL);
    assert_string_equal(err.code, "RECORD_CORRUPT");
    assert_int_equal(pip_coll_scan(f->items, NULL, append_id, ids, &err),
                     PIP_E_INTERNAL);
    assert_string_equal(err.code, "RECORD_CORRUPT");

    assert_int_equal(
        pip_coll_update(f->items, "bad", increment_n, NULL, NULL, &err),
        PIP_E_INTERNAL);
    assert_string_equal(err.code, "RECORD_CORRUPT");

    /* A corrupt record can be overwritten or deleted. */
    assert_int_equal(pip_coll_put(f->items, "bad", record, &err), PIP_OK);
    assert_int_equal(pip_coll_get(f->items, "bad", &got, &err), PIP_OK);
    assert_true(json_equal(got, record));
    json_decref(got);
    assert_int_equal(pip_coll_delete(f->items, "num", NULL, &err), PIP_OK);
    assert_string_equal(scan_ids(f->items, NULL, ids), "bad,good");
    pip_error_fini(&err);
    json_decref(record);
}

static void
stale_index_entry_skipped(void **state)
{
    fixture *f = *state;
    /* {"color": "blue"} in msgpack. */
    static const char blue[] = "\x81\xa5"
                               "color"
                               "\xa4"
                               "blue";
    char ids[512];

    put_json(f->items, "s", "{\"color\": \"red\"}");
    put_json(f->items, "t", "{\"color\": \"red\"}");
    close_store(f);
    /* The record changes behind the store's back, and its entry stays. */
    write_raw(f->dir, "r/items/s", blue, sizeof(blue) - 1);
    open_store(f);

    assert_string_equal(index_ids(f->items, "color", json_string("red"), ids),
                        "t");
    put_json(f->items, "s", "{\"color\": \"red\"}");
    assert_string_equal(index_ids(f->items, "color", json_string("red"), ids),
                        "s,t");
}

static void
sync_option_writes(void **state)
{
    fixture *f = *state;
    pip_store_options opt;
    pip_store *st = NULL;
    pip_collection *c = NULL;
    char dir[64];
    json_t *got = NULL;
    pip_error err;

    (void)f;
    strcpy(dir, "/tmp/pip-store-sync-XXXXXX");
    assert_non_null(mkdtemp(dir));
    pip_store_options_default(&opt);
    opt.sync = true;
    opt.write_buffer_bytes = 1 << 20;
    opt.block_cache_bytes = 1 << 20;

    pip_error_init(&err);
    assert_int_equal(pip_store_open(dir, &opt, &st, &err), PIP_OK);
    assert_int_equal(pip_store_collection(st, "s", NULL, &c, &err), PIP_OK);
    put_json(c, "k", "{\"v\": true}");
    assert_int_equal(pip_coll_get(c, "k", &got, &err), PIP_OK);
    assert_non_null(got);
    json_decref(got);
    pip_store_close(st);
    pip_error_fini(&err);
    test_util_remove_tree(dir);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(put_get_delete, setup,
                                        fixture_teardown),
        cmocka_unit_test_setup_teardown(put_rejects_non_object, setup,
                                        fixture_teardown),
        cmocka_unit_test_setup_teardown(invalid_ids_rejected, setup,
                                        fixture_teardown),
        cmocka_unit_test_setup_teardown(collection_names_checked, setup,
                                        fixture_teardown),
        cmocka_unit_test_setup_teardown(clear_empties_one_collection, setup,
                                        fixture_teardown),
        cmocka_unit_test_setup_teardown(index_follows_replace_delete, setup,
                                        fixture_teardown),
        cmocka_unit_test_setup_teardown(index_orders_integers, setup,
                                        fixture_teardown),
        cmocka_unit_test_setup_teardown(nul_bytes_rejected, setup,
                                        fixture_teardown),
        cmocka_unit_test_setup_teardown(index_scan_checks_arguments, setup,
                                        fixture_teardown),
        cmocka_unit_test_setup_teardown(scan_prefix_start_end, setup,
                                        fixture_teardown),
        cmocka_unit_test_setup_teardown(scan_match_and_stop, setup,
                                        fixture_teardown),
        cmocka_unit_test_setup_teardown(list_skip_take_total, setup,
                                        fixture_teardown),
        cmocka_unit_test_setup_teardown(count_matches, setup,
                                        fixture_teardown),
        cmocka_unit_test_setup_teardown(batch_commits_together, setup,
                                        fixture_teardown),
        cmocka_unit_test_setup_teardown(batch_fails_as_a_whole, setup,
                                        fixture_teardown),
        cmocka_unit_test_setup_teardown(update_is_atomic, setup,
                                        fixture_teardown),
        cmocka_unit_test_setup_teardown(update_deletes_and_aborts, setup,
                                        fixture_teardown),
        cmocka_unit_test_setup_teardown(reopen_keeps_data, setup,
                                        fixture_teardown),
        cmocka_unit_test_setup_teardown(reopen_rebuilds_new_index, setup,
                                        fixture_teardown),
        cmocka_unit_test_setup_teardown(open_twice_fails, setup,
                                        fixture_teardown),
        cmocka_unit_test_setup_teardown(corrupt_value_reported, setup,
                                        fixture_teardown),
        cmocka_unit_test_setup_teardown(stale_index_entry_skipped, setup,
                                        fixture_teardown),
        cmocka_unit_test_setup_teardown(sync_option_writes, setup,
                                        fixture_teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
