/*
 * Embedded storage on RocksDB.  A store is one RocksDB database.  A
 * collection is a named set of records under its own key prefix, and each
 * record is a JSON object kept as msgpack.  Secondary indexes are written in
 * the same write batch as their record.  Writes go through the WAL, and
 * with options.sync they are also fsync'ed before the call returns.
 *
 * Key layout inside RocksDB (documented for tools, not an API):
 *   r/<collection>/<id>                     -> msgpack record
 *   x/<collection>/<index>/<value>\0<id>    -> empty
 *   m/<collection>                          -> msgpack {"fields": [...]},
 *                                              the indexed fields
 *
 * All functions are thread-safe and may block on disk I/O.
 */
#ifndef PIP_STORE_H
#define PIP_STORE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pip/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct pip_store pip_store;
typedef struct pip_collection pip_collection;

typedef struct pip_store_options {
    bool sync;                 /* fsync each write batch (default false) */
    size_t write_buffer_bytes; /* memtable size; default 4 MiB */
    size_t block_cache_bytes;  /* default 8 MiB */
} pip_store_options;

void pip_store_options_default(pip_store_options *opt);

/*
 * Opens (creating when missing) the database in directory path.
 * Errors: PIP_E_INTERNAL with code STORE_OPEN_FAILED, the RocksDB message
 * kept in details "cause" (for example when another process has it open).
 */
int pip_store_open(const char *path, const pip_store_options *opt,
                   pip_store **out, pip_error *err);
/*
 * Waits for the writes already started, then flushes and closes; the
 * collections of the store become invalid.  A write that starts after the
 * close began fails with PIP_E_INVALID_STATE STORE_CLOSED.
 */
void pip_store_close(pip_store *st);

/*
 * Returns the collection `name`, indexing the given top-level fields
 * (NULL-ended list, or NULL for none).  Values of string, integer and
 * boolean fields are indexed; other values are not.  The store owns the
 * collection; calling again with the same name returns the same one.
 */
int pip_store_collection(pip_store *st, const char *name,
                         const char *const *indexed_fields,
                         pip_collection **out, pip_error *err);

/* Reads a record; *record is a new reference, or NULL when missing. */
int pip_coll_get(pip_collection *c, const char *id, json_t **record,
                 pip_error *err);
/* Inserts or replaces a record and updates its index entries. */
int pip_coll_put(pip_collection *c, const char *id, const json_t *record,
                 pip_error *err);
/* Deletes a record; *old (optional) receives it, or NULL if missing. */
int pip_coll_delete(pip_collection *c, const char *id, json_t **old,
                    pip_error *err);
/* Deletes every record and index entry of the collection. */
int pip_coll_clear(pip_collection *c, pip_error *err);

/*
 * Reads, changes and writes one record atomically with respect to every
 * other pip_coll_update() and pip_coll_put() on the same id (a striped
 * lock per id).  fn receives the current record (NULL when missing) and
 * sets *next to the new record (a new reference), or to NULL to delete
 * it.  When fn returns non-zero, nothing is written and that error is
 * returned.  *result (optional)
 * receives the record written.
 */
typedef int (*pip_update_fn)(const json_t *current, json_t **next,
                             void *ctx, pip_error *err);
int pip_coll_update(pip_collection *c, const char *id, pip_update_fn fn,
                    void *ctx, json_t **result, pip_error *err);

/* Several puts and deletes that commit together or not at all. */
typedef struct pip_batch pip_batch;
pip_batch *pip_batch_new(pip_store *st);
int pip_batch_put(pip_batch *b, pip_collection *c, const char *id,
                  const json_t *record, pip_error *err);
int pip_batch_delete(pip_batch *b, pip_collection *c, const char *id,
                     pip_error *err);
/* Commits and frees the batch. */
int pip_batch_commit(pip_batch *b, pip_error *err);
/* Frees a batch that was not committed. */
void pip_batch_free(pip_batch *b);

/* What pip_coll_scan() and pip_coll_list() visit. */
typedef bool (*pip_match_fn)(const json_t *record, void *ctx);
typedef struct pip_scan {
    const char *prefix;      /* ids starting with this; NULL for all */
    const char *start;       /* first id visited (inclusive); NULL */
    const char *end;         /* stop before this id (exclusive); NULL */
    const char *index;       /* scan this index instead of the ids */
    const json_t *index_value; /* ...for records with this field value */
    bool reverse;            /* visit ids in descending byte order */
    pip_match_fn match;      /* keep only records it accepts; NULL: all */
    void *match_ctx;
} pip_scan;

/* Visits records in id order; visit returns false to stop early. */
typedef bool (*pip_visit_fn)(const char *id, const json_t *record,
                             void *ctx);
int pip_coll_scan(pip_collection *c, const pip_scan *scan,
                  pip_visit_fn visit, void *ctx, pip_error *err);

/* Paging as the catalog defines it: skip, take, and whether to count. */
typedef struct pip_paging {
    int64_t skip;  /* >= 0 */
    int64_t take;  /* > 0; already capped at the service's max page size */
    bool total;    /* count every match, not only the page */
} pip_paging;

/*
 * Lists matching records as a page object {"data": [...], "total": n}.
 * total is the number of matches when paging->total is set, otherwise
 * JSON null.  *page is a new reference.
 */
int pip_coll_list(pip_collection *c, const pip_scan *scan,
                  const pip_paging *paging, json_t **page, pip_error *err);

/* Counts matching records. */
int pip_coll_count(pip_collection *c, const pip_scan *scan, int64_t *count,
                   pip_error *err);

#ifdef __cplusplus
}
#endif
#endif
