/*
 * A real RocksDB store for the store tests.  It lives in a mkdtemp
 * folder, contains one collection "items", and is removed at the end of
 * each test.  Included by
 * one test file each, so the helpers are static inline.
 */
#ifndef STORE_FIXTURE_H
#define STORE_FIXTURE_H

#include "test_util.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "pip/store.h"

typedef struct fixture {
    char dir[64];
    const char *const *indexed; /* the indexed fields of items, or NULL */
    pip_store *st;
    pip_collection *items;
} fixture;

/* Opens the store in f->dir and its collection "items". */
static inline void
open_store(fixture *f)
{
    pip_error err;

    pip_error_init(&err);
    assert_int_equal(pip_store_open(f->dir, NULL, &f->st, &err), PIP_OK);
    assert_int_equal(
        pip_store_collection(f->st, "items", f->indexed, &f->items, &err),
        PIP_OK);
    pip_error_fini(&err);
}

static inline void
close_store(fixture *f)
{
    pip_store_close(f->st);
    f->st = NULL;
    f->items = NULL;
}

/*
 * Makes a fresh folder and opens the store in it, with items indexed on
 * the NULL-ended fields of indexed, which must outlive the fixture.
 */
static inline fixture *
fixture_new(const char *const *indexed)
{
    fixture *f = calloc(1, sizeof(*f));

    assert_non_null(f);
    strcpy(f->dir, "/tmp/pip-store-test-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    f->indexed = indexed;
    open_store(f);
    return f;
}

/* The cmocka teardown for a fixture that fixture_new made. */
static inline int
fixture_teardown(void **state)
{
    fixture *f = *state;

    close_store(f);
    test_util_remove_tree(f->dir);
    free(f);
    return 0;
}

/* A pip_coll_update function that adds 1 to the record's "n". */
static inline int
increment_n(const json_t *current, json_t **next, void *ctx, pip_error *err)
{
    json_int_t n = json_integer_value(json_object_get(current, "n"));

    (void)ctx;
    (void)err;
    *next = json_pack("{s:I}", "n", n + 1);
    return *next != NULL ? PIP_OK : PIP_E_INTERNAL;
}

#endif
