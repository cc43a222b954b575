/*
 * The RocksDB store.  Every collection shares one database, one LRU block
 * cache and one set of striped locks.  Key layout (see store.h):
 *
 *   r/<collection>/<id>                     -> msgpack record
 *   x/<collection>/<field>/<value>\0<id>    -> empty
 *   m/<collection>                          -> msgpack map {"fields":
 *                                              [the indexed fields]}
 *
 * An index value is a type tag and the value bytes, chosen so that byte
 * order is value order within one type:
 *   's' + the string bytes (strings in records contain no NUL, so the
 *         0x00 separator ends the value);
 *   'i' + 8 bytes big-endian with the sign bit flipped;
 *   'b' + '0' or '1'.
 */
#include "pip/store.h"

#include <pthread.h>
#include <rocksdb/c.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "pip/crud.h"
#include "pip/wire.h"
#include "store_internal.h"

#define STORE_STRIPES 256
#define STORE_ID_MAX_BYTES 1024
#define STORE_MAX_OPEN_FILES 256
#define STORE_MAX_BACKGROUND_JOBS 2
#define STORE_KEEP_LOG_FILES 3
#define STORE_MAX_LOG_FILE_BYTES (1u << 20)
#define STORE_DEFAULT_WRITE_BUFFER_BYTES ((size_t)4 << 20)
#define STORE_DEFAULT_BLOCK_CACHE_BYTES ((size_t)8 << 20)
/* Records indexed per write batch when an index is rebuilt. */
#define STORE_REBUILD_CHUNK 1024

struct pip_collection {
    pip_store *store;
    char *name;
    char **fields;    /* indexed fields, NULL-ended */
    json_t *manifest; /* {"fields": [...]}, as stored under m/<name> */
    pip_collection *next;
};

/* A write call waiting in the group commit queue, on its caller's stack. */
typedef struct store_writer {
    rocksdb_writebatch_t *wb;
    bool done;
    bool failed;
    char *cause; /* the failure message (malloc'd), NULL when none */
    struct store_writer *next;
} store_writer;

struct pip_store {
    rocksdb_t *db;
    rocksdb_options_t *options;
    rocksdb_cache_t *cache;
    rocksdb_block_based_table_options_t *table_options;
    rocksdb_readoptions_t *read_options;
    rocksdb_readoptions_t *memory_read_options; /* memtables and cache */
    rocksdb_writeoptions_t *write_options;
    pthread_mutex_t collections_lock;
    pip_collection *collections;
    pthread_mutex_t stripes[STORE_STRIPES];

    /*
     * The group commit (see store_commit).  commit_lock guards the queue
     * and leader_active, and is the mutex of commit_cv.  merged is the
     * leader's batch, so only the one active leader touches it.
     */
    pthread_mutex_t commit_lock;
    pthread_cond_t commit_cv; /* a group finished, or the last writer left */
    store_writer *queue_head;
    store_writer *queue_tail;
    bool leader_active;
    rocksdb_writebatch_t *merged;
    pip__store_commit_hook commit_hook;
    void *commit_hook_ctx;

    /*
     * Write calls running, and whether pip_store_close() began.  A call
     * raises writers before it reads closing, and close sets closing
     * before it reads writers, so with sequentially consistent atomics
     * either the call sees the flag or close waits for the call.
     */
    atomic_int writers;
    atomic_bool closing;
};

/* ---- key building ---- */

/*
 * A byte string for building keys.  Most keys fit the inline bytes, so
 * the hot path does not allocate.  An allocation failure is sticky and
 * checked once, after the key is complete.
 */
typedef struct store_key {
    char *data;
    size_t len;
    size_t cap;
    bool failed;
    char inline_bytes[192];
} store_key;

static void
store_key_init(store_key *k)
{
    k->data = k->inline_bytes;
    k->len = 0;
    k->cap = sizeof(k->inline_bytes);
    k->failed = false;
}

static void
store_key_fini(store_key *k)
{
    if (k->data != k->inline_bytes) {
        free(k->data);
    }
    store_key_init(k);
}

static bool
store_key_reserve(store_key *k, size_t extra)
{
    size_t cap;
    char *data;

    if (k->failed) {
        return false;
    }
    if (k->len + extra <= k->cap) {
        return true;
    }
    cap = k->cap * 2;
    while (cap < k->len + extra) {
        cap *= 2;
    }
    data = malloc(cap);
    if (data == NULL) {
        k->failed = true;
        return false;
    }
    memcpy(data, k->data, k->len);
    if (k->data != k->inline_bytes) {
        free(k->data);
    }
    k->data = data;
    k->cap = cap;
    return true;
}

static void
store_key_add(store_key *k, const void *bytes, size_t n)
{
    if (!store_key_reserve(k, n)) {
        return;
    }
    memcpy(k->data + k->len, bytes, n);
    k->len += n;
}

static void
store_key_add_str(store_key *k, const char *s)
{
    store_key_add(k, s, strlen(s));
}

static void
store_key_add_byte(store_key *k, char c)
{
    store_key_add(k, &c, 1);
}

static void
store_key_set(store_key *k, const void *bytes, size_t n)
{
    k->len = 0;
    store_key_add(k, bytes, n);
}

/* Terminates the bytes as a C string without counting the NUL. */
static const char *
store_key_cstr(store_key *k)
{
    store_key_add_byte(k, '\0');
    if (k->failed) {
        return NULL;
    }
    k->len--;
    return k->data;
}

/*
 * Makes k the smallest key greater than every key that starts with k.
 * It drops trailing 0xff bytes and increments the last byte.  Returns
 * false when no such key exists (k is empty or all 0xff).
 */
static bool
store_key_successor(store_key *k)
{
    while (k->len > 0 && (unsigned char)k->data[k->len - 1] == 0xff) {
        k->len--;
    }
    if (k->len == 0) {
        return false;
    }
    k->data[k->len - 1] = (char)((unsigned char)k->data[k->len - 1] + 1);
    return true;
}

static void
store_key_record_prefix(store_key *k, const pip_collection *c)
{
    store_key_add_str(k, "r/");
    store_key_add_str(k, c->name);
    store_key_add_byte(k, '/');
}

static void
store_key_record(store_key *k, const pip_collection *c, const char *id)
{
    store_key_record_prefix(k, c);
    store_key_add_str(k, id);
}

static void
store_key_index_prefix(store_key *k, const pip_collection *c,
                       const char *field)
{
    store_key_add_str(k, "x/");
    store_key_add_str(k, c->name);
    store_key_add_byte(k, '/');
    if (field != NULL) {
        store_key_add_str(k, field);
        store_key_add_byte(k, '/');
    }
}

static void
store_key_manifest(store_key *k, const pip_collection *c)
{
    store_key_add_str(k, "m/");
    store_key_add_str(k, c->name);
}

static bool
store_value_indexable(const json_t *v)
{
    return json_is_string(v) || json_is_integer(v) || json_is_boolean(v);
}

static void
store_key_add_value(store_key *k, const json_t *v)
{
    unsigned char bytes[8];
    uint64_t u;

    if (json_is_string(v)) {
        store_key_add_byte(k, 's');
        store_key_add(k, json_string_value(v), json_string_length(v));
        return;
    }
    if (json_is_boolean(v)) {
        store_key_add_byte(k, 'b');
        store_key_add_byte(k, json_is_true(v) ? '1' : '0');
        return;
    }
    u = (uint64_t)json_integer_value(v) ^ ((uint64_t)1 << 63);
    for (int i = 7; i >= 0; i--) {
        bytes[i] = (unsigned char)(u & 0xff);
        u >>= 8;
    }
    store_key_add_byte(k, 'i');
    store_key_add(k, bytes, sizeof(bytes));
}

static void
store_key_index(store_key *k, const pip_collection *c, const char *field,
                const json_t *value, const char *id)
{
    store_key_index_prefix(k, c, field);
    store_key_add_value(k, value);
    store_key_add_byte(k, '\0');
    store_key_add_str(k, id);
}

/*
 * Finds the end of the encoded value at the start of bytes (the part of
 * an index key after its field).  Returns its length, or 0 when the
 * bytes are not a value followed by the 0x00 separator.
 */
static size_t
store_index_value_len(const char *bytes, size_t len)
{
    size_t n;

    if (len == 0) {
        return 0;
    }
    switch (bytes[0]) {
    case 's':
        n = 1;
        while (n < len && bytes[n] != '\0') {
            n++;
        }
        break;
    case 'i':
        n = 9;
        break;
    case 'b':
        n = 2;
        break;
    default:
        return 0;
    }
    if (n >= len || bytes[n] != '\0') {
        return 0;
    }
    return n;
}

/* ---- errors ---- */

static int
store_oom(pip_error *err)
{
    return pip_error_set(err, PIP_E_INTERNAL, "OUT_OF_MEMORY",
                         "Out of memory in the store.");
}

/*
 * Reports a RocksDB failure.  cause is the errptr string that RocksDB
 * allocated, kept in details "cause" and freed here.
 */
static int
store_rocksdb_error(pip_error *err, const char *code, char *cause,
                    const pip_collection *c, const char *what)
{
    pip_error_set(err, PIP_E_INTERNAL, code, "Failed to %s%s%s: %s.", what,
                  c != NULL ? " in collection " : "", c != NULL ? c->name : "",
                  cause);
    pip_error_detail(err, "cause", json_string(cause));
    if (c != NULL) {
        pip_error_detail(err, "collection", json_string(c->name));
    }
    rocksdb_free(cause);
    return PIP_E_INTERNAL;
}

/*
 * The bytes of id that a message shows: at most 128, cut before a UTF-8
 * continuation byte so the message stays valid UTF-8.
 */
static int
store_id_print_len(const char *id)
{
    size_t n = strnlen(id, 128);

    if (id[n] == '\0') {
        return (int)n;
    }
    while (n > 0 && ((unsigned char)id[n] & 0xc0) == 0x80) {
        n--;
    }
    return (int)n;
}

static int
store_corrupt(pip_error *err, const pip_collection *c, const char *id,
              const char *cause)
{
    pip_error_set(err, PIP_E_INTERNAL, "RECORD_CORRUPT",
                  "Record '%.*s' of collection %s cannot be decoded.",
                  store_id_print_len(id), id, c->name);
    pip_error_detail(err, "collection", json_string(c->name));
    pip_error_detail(err, "id", json_string(id));
    pip_error_detail(err, "cause", json_string(cause));
    return PIP_E_INTERNAL;
}

static int
store_invalid_id(pip_error *err, const char *id, const char *reason)
{
    if (id == NULL) {
        id = "";
    }
    pip_error_set(err, PIP_E_BAD_REQUEST, "INVALID_DATA",
                  "Invalid id '%.*s': %s.", store_id_print_len(id), id,
                  reason);
    pip_error_detail(err, "id", json_string(id));
    return PIP_E_BAD_REQUEST;
}

static int
store_check_id(const char *id, pip_error *err)
{
    if (id == NULL || id[0] == '\0') {
        return store_invalid_id(err, id, "an id must not be empty");
    }
    if (strnlen(id, STORE_ID_MAX_BYTES + 1) > STORE_ID_MAX_BYTES) {
        return store_invalid_id(err, id,
                                "an id must be at most 1024 bytes long");
    }
    return PIP_OK;
}

static int
store_check_record(const json_t *record, pip_error *err)
{
    if (!json_is_object(record)) {
        return pip_error_set(err, PIP_E_BAD_REQUEST, "INVALID_DATA",
                             "A record must be a JSON object.");
    }
    return PIP_OK;
}

/* ---- record encoding ---- */

/*
 * Sizes the decoder limits to one stored value of len bytes.  The depth
 * stays at the default, which store_pack() also applies.
 */
static void
store_record_limits(size_t len, pip_limits *lim)
{
    uint32_t count = len > UINT32_MAX ? UINT32_MAX : (uint32_t)len;

    pip_limits_default(lim);
    lim->max_msg_bytes = len;
    lim->max_str_bytes = count;
    lim->max_array_len = count;
    lim->max_map_len = count;
}

static bool
store_has_nul(const char *s, size_t len)
{
    return memchr(s, '\0', len) != NULL;
}

/*
 * Checks what the msgpack bridge would reject on reading: objects and
 * arrays nested more than max_depth levels, and strings or keys with a
 * NUL byte.
 */
static bool
store_value_storable(const json_t *v, uint32_t max_depth)
{
    const char *key;
    size_t key_len;
    json_t *item;
    size_t i;

    if (json_is_string(v)) {
        return !store_has_nul(json_string_value(v), json_string_length(v));
    }
    if (!json_is_object(v) && !json_is_array(v)) {
        return true;
    }
    if (max_depth == 0) {
        return false;
    }
    if (json_is_array(v)) {
        json_array_foreach((json_t *)v, i, item)
        {
            if (!store_value_storable(item, max_depth - 1)) {
                return false;
            }
        }
        return true;
    }
    json_object_keylen_foreach((json_t *)v, key, key_len, item)
    {
        if (store_has_nul(key, key_len) ||
            !store_value_storable(item, max_depth - 1)) {
            return false;
        }
    }
    return true;
}

/*
 * Packs a record.  It is checked first against what reading rejects, so
 * a record that is written can always be read back.
 */
static int
store_pack(const json_t *record, msgpack_sbuffer *buf, pip_error *err)
{
    msgpack_packer pk;
    pip_limits lim;

    pip_limits_default(&lim);
    if (!store_value_storable(record, lim.max_depth)) {
        pip_error_set(err, PIP_E_BAD_REQUEST, "INVALID_DATA",
                      "A record must nest objects and arrays at most %u "
                      "levels deep and hold no NUL byte in its strings.",
                      (unsigned)lim.max_depth);
        pip_error_detail(err, "max_depth", json_integer(lim.max_depth));
        return PIP_E_BAD_REQUEST;
    }

    msgpack_sbuffer_init(buf);
    msgpack_packer_init(&pk, buf, msgpack_sbuffer_write);
    if (pip_json_pack(&pk, record) != 0) {
        msgpack_sbuffer_destroy(buf);
        return store_oom(err);
    }
    return PIP_OK;
}

static int
store_decode(const pip_collection *c, const char *id, const char *bytes,
             size_t len, json_t **record, pip_error *err)
{
    pip_limits lim;
    pip_error cause;
    size_t consumed = 0;
    json_t *value = NULL;
    int rv;

    *record = NULL;
    pip_error_init(&cause);
    store_record_limits(len, &lim);
    rv = pip_mp_decode_json(bytes, len, &lim, &value, &consumed, &cause);
    if (rv == PIP_OK && consumed != len) {
        rv = pip_error_set(&cause, PIP_E_BAD_REQUEST, "MALFORMED_MESSAGE",
                           "trailing bytes after the record");
    } else if (rv == PIP_OK && !json_is_object(value)) {
        rv = pip_error_set(&cause, PIP_E_BAD_REQUEST, "MALFORMED_MESSAGE",
                           "the value is not a map");
    }
    if (rv != PIP_OK) {
        json_decref(value);
        store_corrupt(err, c, id, cause.message);
        pip_error_fini(&cause);
        return PIP_E_INTERNAL;
    }
    pip_error_fini(&cause);
    *record = value;
    return PIP_OK;
}

/* ---- reads and staged writes ---- */

/*
 * Reads the record of id with the given read options.  *record is NULL
 * when missing.  *exists (optional) is set when the key is present, also
 * when its value does not decode and the call fails with RECORD_CORRUPT.
 */
/* Memory-only runs (see store_internal.h) */

/* RocksDB's ReadTier kBlockCacheTier: memtables and block cache only. */
#define STORE_READ_TIER_BLOCK_CACHE 1
/* The start of RocksDB's error text for Status::Incomplete, the status of
 * such a read when the data is only on disk. */
#define STORE_INCOMPLETE_PREFIX "Result incomplete"

static _Thread_local bool store_memory_only;
static _Thread_local bool store_would_block;

void
pip__store_memory_only(bool on)
{
    store_memory_only = on;
    if (on) {
        store_would_block = false;
    }
}

bool
pip__store_would_block(void)
{
    return store_memory_only && store_would_block;
}

/* Fails a store call that a memory-only run cannot make, and marks the
 * run, so that the caller runs the call again on a worker. */
static int
store_blocked(const char *what, pip_error *err)
{
    store_would_block = true;
    return pip_error_set(err, PIP_E_UNAVAILABLE, "STORE_WOULD_BLOCK",
                         "%s may wait for the disk, which a memory-only run "
                         "does not allow.",
                         what);
}

static int
store_read(pip_collection *c, const rocksdb_readoptions_t *ro, const char *id,
           json_t **record, bool *exists, pip_error *err)
{
    store_key key;
    char *cause = NULL;
    char *value;
    size_t len = 0;
    int rv;

    *record = NULL;
    store_key_init(&key);
    store_key_record(&key, c, id);
    if (key.failed) {
        return store_oom(err);
    }
    if (store_memory_only) {
        ro = c->store->memory_read_options;
    }
    value = rocksdb_get(c->store->db, ro, key.data, key.len, &len, &cause);
    store_key_fini(&key);
    if (cause != NULL && store_memory_only &&
        strncmp(cause, STORE_INCOMPLETE_PREFIX,
                strlen(STORE_INCOMPLETE_PREFIX)) == 0) {
        rocksdb_free(cause);
        return store_blocked("Reading the record", err);
    }
    if (cause != NULL) {
        return store_rocksdb_error(err, "STORE_READ_FAILED", cause, c,
                                   "read a record");
    }
    if (exists != NULL) {
        *exists = value != NULL;
    }
    if (value == NULL) {
        return PIP_OK;
    }
    rv = store_decode(c, id, value, len, record, err);
    rocksdb_free(value);
    return rv;
}

/* Adds a put (put true) or a delete of each index entry of record. */
static int
store_stage_index(rocksdb_writebatch_t *wb, const pip_collection *c,
                  const char *id, const json_t *record, bool put,
                  pip_error *err)
{
    store_key key;

    store_key_init(&key);
    for (size_t i = 0; c->fields[i] != NULL; i++) {
        const json_t *v = json_object_get(record, c->fields[i]);

        if (!store_value_indexable(v)) {
            continue;
        }
        key.len = 0;
        store_key_index(&key, c, c->fields[i], v, id);
        if (key.failed) {
            store_key_fini(&key);
            return store_oom(err);
        }
        if (put) {
            rocksdb_writebatch_put(wb, key.data, key.len, "", 0);
        } else {
            rocksdb_writebatch_delete(wb, key.data, key.len);
        }
    }
    store_key_fini(&key);
    return PIP_OK;
}

/*
 * Adds to wb the change of id from old to next (either may be NULL).
 * Stale index entries go first.  A write batch applies in order, so an
 * entry that old and next share is deleted and then put back.
 */
static int
store_stage(rocksdb_writebatch_t *wb, const pip_collection *c, const char *id,
            const json_t *old, const json_t *next, pip_error *err)
{
    msgpack_sbuffer buf;
    store_key key;
    int rv;

    if (old != NULL) {
        rv = store_stage_index(wb, c, id, old, false, err);
        if (rv != PIP_OK) {
            return rv;
        }
    }

    store_key_init(&key);
    store_key_record(&key, c, id);
    if (key.failed) {
        return store_oom(err);
    }
    if (next == NULL) {
        rocksdb_writebatch_delete(wb, key.data, key.len);
        store_key_fini(&key);
        return PIP_OK;
    }
    rv = store_pack(next, &buf, err);
    if (rv != PIP_OK) {
        store_key_fini(&key);
        return rv;
    }
    rocksdb_writebatch_put(wb, key.data, key.len, buf.data, buf.size);
    msgpack_sbuffer_destroy(&buf);
    store_key_fini(&key);
    return store_stage_index(wb, c, id, next, true, err);
}

static int
store_write(pip_store *st, rocksdb_writebatch_t *wb, const pip_collection *c,
            pip_error *err)
{
    char *cause = NULL;

    rocksdb_write(st->db, st->write_options, wb, &cause);
    if (cause != NULL) {
        return store_rocksdb_error(err, "STORE_WRITE_FAILED", cause, c,
                                   "write");
    }
    return PIP_OK;
}

/* ---- group commit ---- */

static void
store_merge_put(void *merged, const char *key, size_t key_len,
                const char *value, size_t value_len)
{
    rocksdb_writebatch_put(merged, key, key_len, value, value_len);
}

static void
store_merge_delete(void *merged, const char *key, size_t key_len)
{
    rocksdb_writebatch_delete(merged, key, key_len);
}

/*
 * Writes the batches of a group as one RocksDB write, in queue order.
 * Returns NULL on success, or the failure message (malloc'd, or NULL
 * with *failed set when even that allocation failed).
 */
static char *
store_group_write(pip_store *st, store_writer *group, bool *failed)
{
    rocksdb_writebatch_t *wb = group->wb;
    char *cause = NULL;
    size_t n = 0;

    for (const store_writer *w = group; w != NULL; w = w->next) {
        n++;
    }
    if (st->commit_hook != NULL) {
        const char *message = st->commit_hook(st->commit_hook_ctx, n);

        if (message != NULL) {
            *failed = true;
            return strdup(message);
        }
    }
    if (n > 1) {
        int expected = 0;

        wb = st->merged;
        rocksdb_writebatch_clear(wb);
        for (const store_writer *w = group; w != NULL; w = w->next) {
            rocksdb_writebatch_iterate(w->wb, wb, store_merge_put,
                                       store_merge_delete);
            expected += rocksdb_writebatch_count(w->wb);
        }
        /* The iteration reports no error, so a record it could not copy
         * shows only in the count. */
        if (rocksdb_writebatch_count(wb) != expected) {
            *failed = true;
            return strdup("the group's batches could not be merged");
        }
    }
    rocksdb_write(st->db, st->write_options, wb, &cause);
    *failed = cause != NULL;
    return cause;
}

/* Hands every writer of the group the result.  Runs under commit_lock. */
static void
store_group_finish(store_writer *group, bool failed, const char *cause)
{
    store_writer *w = group;

    while (w != NULL) {
        store_writer *next = w->next;

        w->failed = failed;
        w->cause = failed && cause != NULL ? strdup(cause) : NULL;
        w->done = true;
        w = next;
    }
}

static int
store_commit_failed(pip_error *err, store_writer *self,
                    const pip_collection *c)
{
    const char *cause = self->cause != NULL ? self->cause : "out of memory";

    pip_error_set(err, PIP_E_INTERNAL, "STORE_WRITE_FAILED",
                  "Failed to write%s%s: %s.",
                  c != NULL ? " in collection " : "", c != NULL ? c->name : "",
                  cause);
    pip_error_detail(err, "cause", json_string(cause));
    if (c != NULL) {
        pip_error_detail(err, "collection", json_string(c->name));
    }
    free(self->cause);
    self->cause = NULL;
    return PIP_E_INTERNAL;
}

/*
 * Writes wb as part of a group commit.  The writer queues its batch.
 * When no leader is writing, it becomes the leader and takes every batch
 * queued so far.  It writes them as one RocksDB write (one WAL append,
 * and one fsync with the sync option) and hands each writer the result,
 * so a failed write fails every writer of its group.  Otherwise the
 * writer waits until a leader has written its batch, or until it may
 * lead itself.  The batches may contain only puts and deletes, because
 * the merge copies nothing else.
 */
static int
store_commit(pip_store *st, rocksdb_writebatch_t *wb, const pip_collection *c,
             pip_error *err)
{
    store_writer self = {.wb = wb};
    store_writer *group;
    char *cause;
    bool failed = false;

    pthread_mutex_lock(&st->commit_lock);
    if (st->queue_tail != NULL) {
        st->queue_tail->next = &self;
    } else {
        st->queue_head = &self;
    }
    st->queue_tail = &self;
    while (!self.done && st->leader_active) {
        pthread_cond_wait(&st->commit_cv, &st->commit_lock);
    }
    if (!self.done) {
        group = st->queue_head;
        st->queue_head = NULL;
        st->queue_tail = NULL;
        st->leader_active = true;
        pthread_mutex_unlock(&st->commit_lock);

        cause = store_group_write(st, group, &failed);

        pthread_mutex_lock(&st->commit_lock);
        store_group_finish(group, failed, cause);
        st->leader_active = false;
        pthread_cond_broadcast(&st->commit_cv);
        free(cause);
    }
    pthread_mutex_unlock(&st->commit_lock);

    return self.failed ? store_commit_failed(err, &self, c) : PIP_OK;
}

void
pip__store_set_commit_hook(pip_store *st, pip__store_commit_hook hook,
                           void *ctx)
{
    st->commit_hook = hook;
    st->commit_hook_ctx = ctx;
}

static void
store_write_end(pip_store *st)
{
    if (atomic_fetch_sub(&st->writers, 1) == 1 && atomic_load(&st->closing)) {
        pthread_mutex_lock(&st->commit_lock);
        pthread_cond_broadcast(&st->commit_cv);
        pthread_mutex_unlock(&st->commit_lock);
    }
}

size_t
pip__store_commit_queue_length(pip_store *st)
{
    size_t n = 0;

    pthread_mutex_lock(&st->commit_lock);
    for (const store_writer *w = st->queue_head; w != NULL; w = w->next) {
        n++;
    }
    pthread_mutex_unlock(&st->commit_lock);
    return n;
}

bool
pip__store_closing(pip_store *st)
{
    return atomic_load(&st->closing);
}

/*
 * Counts a write call, so that pip_store_close() waits for it.  Fails
 * once the close began.
 */
static int
store_write_begin(pip_store *st, pip_error *err)
{
    if (store_memory_only) {
        return store_blocked("A write", err);
    }
    atomic_fetch_add(&st->writers, 1);
    if (atomic_load(&st->closing)) {
        store_write_end(st);
        return pip_error_set(err, PIP_E_INVALID_STATE, "STORE_CLOSED",
                             "The store is closing; the write was not "
                             "made.");
    }
    return PIP_OK;
}

/*
 * Starts a write to the record id: clears *out when given, checks the id
 * and counts the write.  On success the caller ends it with
 * store_write_end().
 */
static int
store_record_write_begin(pip_collection *c, const char *id, json_t **out,
                         pip_error *err)
{
    int rv;

    if (out != NULL) {
        *out = NULL;
    }
    rv = store_check_id(id, err);
    if (rv == PIP_OK) {
        rv = store_write_begin(c->store, err);
    }
    return rv;
}

/*
 * Reads the record that a write replaces.  A corrupt old record does not
 * block the write, so a bad value can always be overwritten or deleted.
 * Its index entries cannot be found and stay behind, and index scans
 * skip entries that no longer match their record.
 */
static int
store_read_old(pip_collection *c, const char *id, json_t **old, bool *exists,
               pip_error *err)
{
    int rv = store_read(c, c->store->read_options, id, old, exists, err);

    if (rv == PIP_E_INTERNAL && strcmp(err->code, "RECORD_CORRUPT") == 0) {
        pip_error_fini(err);
        *old = NULL;
        return PIP_OK;
    }
    return rv;
}

/* Writes the change of id from old to next in one write batch. */
static int
store_apply(pip_collection *c, const char *id, const json_t *old,
            const json_t *next, pip_error *err)
{
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
    int rv;

    rv = store_stage(wb, c, id, old, next, err);
    if (rv == PIP_OK) {
        rv = store_commit(c->store, wb, c, err);
    }
    rocksdb_writebatch_destroy(wb);
    return rv;
}

/*
 * Replaces the record of id by next (NULL: deletes it).  The caller has
 * locked the id's stripe.  *old receives the replaced record, NULL when
 * it was missing or corrupt.
 */
static int
store_replace(pip_collection *c, const char *id, const json_t *next,
              json_t **old, pip_error *err)
{
    bool exists = false;
    int rv;

    rv = store_read_old(c, id, old, &exists, err);
    if (rv != PIP_OK) {
        return rv;
    }
    if (!exists && next == NULL) {
        return PIP_OK;
    }

    rv = store_apply(c, id, *old, next, err);
    if (rv != PIP_OK) {
        json_decref(*old);
        *old = NULL;
    }
    return rv;
}

/* ---- striped locks ---- */

static unsigned
store_stripe(const pip_collection *c, const char *id)
{
    /* FNV-1a over "<collection>/<id>". */
    uint64_t h = 14695981039346656037u;
    const char *parts[3] = {c->name, "/", id};

    for (int p = 0; p < 3; p++) {
        for (const unsigned char *s = (const unsigned char *)parts[p]; *s;
             s++) {
            h ^= *s;
            h *= 1099511628211u;
        }
    }
    return (unsigned)(h % STORE_STRIPES);
}

static pthread_mutex_t *
store_lock(pip_collection *c, const char *id)
{
    pthread_mutex_t *m = &c->store->stripes[store_stripe(c, id)];

    pthread_mutex_lock(m);
    return m;
}

/* ---- store and collections ---- */

void
pip_store_options_default(pip_store_options *opt)
{
    opt->sync = false;
    opt->write_buffer_bytes = STORE_DEFAULT_WRITE_BUFFER_BYTES;
    opt->block_cache_bytes = STORE_DEFAULT_BLOCK_CACHE_BYTES;
}

/*
 * Sizes RocksDB for small edge nodes: a small memtable, one block cache
 * for every collection, a capped number of open files and few
 * background threads.  The WAL stays on, because a call that returned
 * success must survive a kill of the process.
 */
static void
store_configure(pip_store *st, const pip_store_options *opt)
{
    size_t write_buffer = opt->write_buffer_bytes != 0
                              ? opt->write_buffer_bytes
                              : STORE_DEFAULT_WRITE_BUFFER_BYTES;
    size_t cache = opt->block_cache_bytes != 0
                       ? opt->block_cache_bytes
                       : STORE_DEFAULT_BLOCK_CACHE_BYTES;

    st->options = rocksdb_options_create();
    rocksdb_options_set_create_if_missing(st->options, 1);
    rocksdb_options_set_write_buffer_size(st->options, write_buffer);
    rocksdb_options_set_max_open_files(st->options, STORE_MAX_OPEN_FILES);
    rocksdb_options_set_max_background_jobs(st->options,
                                            STORE_MAX_BACKGROUND_JOBS);
    rocksdb_options_set_keep_log_file_num(st->options, STORE_KEEP_LOG_FILES);
    rocksdb_options_set_max_log_file_size(st->options,
                                          STORE_MAX_LOG_FILE_BYTES);

    st->cache = rocksdb_cache_create_lru(cache);
    st->table_options = rocksdb_block_based_options_create();
    rocksdb_block_based_options_set_block_cache(st->table_options, st->cache);
    rocksdb_options_set_block_based_table_factory(st->options,
                                                  st->table_options);

    st->read_options = rocksdb_readoptions_create();
    st->memory_read_options = rocksdb_readoptions_create();
    rocksdb_readoptions_set_read_tier(st->memory_read_options,
                                      STORE_READ_TIER_BLOCK_CACHE);
    st->write_options = rocksdb_writeoptions_create();
    rocksdb_writeoptions_set_sync(st->write_options, opt->sync ? 1 : 0);
}

static void
store_collection_free(pip_collection *c)
{
    for (size_t i = 0; c->fields != NULL && c->fields[i] != NULL; i++) {
        free(c->fields[i]);
    }
    free(c->fields);
    free(c->name);
    json_decref(c->manifest);
    free(c);
}

static void
store_free(pip_store *st)
{
    pip_collection *c = st->collections;

    while (c != NULL) {
        pip_collection *next = c->next;

        store_collection_free(c);
        c = next;
    }
    if (st->db != NULL) {
        rocksdb_close(st->db);
    }
    rocksdb_writeoptions_destroy(st->write_options);
    if (st->merged != NULL) {
        rocksdb_writebatch_destroy(st->merged);
    }
    rocksdb_readoptions_destroy(st->read_options);
    rocksdb_readoptions_destroy(st->memory_read_options);
    rocksdb_block_based_options_destroy(st->table_options);
    rocksdb_cache_destroy(st->cache);
    rocksdb_options_destroy(st->options);
    for (int i = 0; i < STORE_STRIPES; i++) {
        pthread_mutex_destroy(&st->stripes[i]);
    }
    pthread_mutex_destroy(&st->collections_lock);
    pthread_cond_destroy(&st->commit_cv);
    pthread_mutex_destroy(&st->commit_lock);
    free(st);
}

int
pip_store_open(const char *path, const pip_store_options *opt, pip_store **out,
               pip_error *err)
{
    pip_store_options defaults;
    pip_store *st;
    char *cause = NULL;

    *out = NULL;
    if (path == NULL || path[0] == '\0') {
        return pip_error_set(err, PIP_E_BAD_REQUEST, "INVALID_DATA",
                             "The store path must not be empty.");
    }
    if (opt == NULL) {
        pip_store_options_default(&defaults);
        opt = &defaults;
    }

    st = calloc(1, sizeof(*st));
    if (st == NULL) {
        return store_oom(err);
    }
    pthread_mutex_init(&st->collections_lock, NULL);
    for (int i = 0; i < STORE_STRIPES; i++) {
        pthread_mutex_init(&st->stripes[i], NULL);
    }
    pthread_mutex_init(&st->commit_lock, NULL);
    pthread_cond_init(&st->commit_cv, NULL);
    atomic_init(&st->writers, 0);
    atomic_init(&st->closing, false);
    st->merged = rocksdb_writebatch_create();
    store_configure(st, opt);

    st->db = rocksdb_open(st->options, path, &cause);
    if (cause != NULL) {
        pip_error_set(err, PIP_E_INTERNAL, "STORE_OPEN_FAILED",
                      "Failed to open the store in %s: %s.", path, cause);
        pip_error_detail(err, "cause", json_string(cause));
        pip_error_detail(err, "path", json_string(path));
        rocksdb_free(cause);
        store_free(st);
        return PIP_E_INTERNAL;
    }
    *out = st;
    return PIP_OK;
}

void
pip_store_close(pip_store *st)
{
    rocksdb_flushoptions_t *fo;
    char *cause = NULL;

    if (st == NULL) {
        return;
    }
    /* Write calls that already began finish first, and later ones fail. */
    atomic_store(&st->closing, true);
    pthread_mutex_lock(&st->commit_lock);
    while (atomic_load(&st->writers) > 0) {
        pthread_cond_wait(&st->commit_cv, &st->commit_lock);
    }
    pthread_mutex_unlock(&st->commit_lock);
    /*
     * A failed flush loses nothing, because the WAL still contains every
     * write.  Its error is dropped, since close has no way to report it.
     */
    fo = rocksdb_flushoptions_create();
    rocksdb_flushoptions_set_wait(fo, 1);
    rocksdb_flush(st->db, fo, &cause);
    rocksdb_free(cause);
    rocksdb_flushoptions_destroy(fo);
    store_free(st);
}

static bool
store_name_valid(const char *name)
{
    if (name == NULL || name[0] == '\0') {
        return false;
    }
    for (const char *p = name; *p != '\0'; p++) {
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
              *p == '_')) {
            return false;
        }
    }
    return true;
}

static int
store_check_fields(const char *name, const char *const *fields, pip_error *err)
{
    for (size_t i = 0; fields != NULL && fields[i] != NULL; i++) {
        if (fields[i][0] == '\0' || strchr(fields[i], '/') != NULL) {
            return pip_error_set(err, PIP_E_BAD_REQUEST, "INVALID_DATA",
                                 "Invalid index field '%.64s' in "
                                 "collection %s: a field name must be "
                                 "non-empty and contain no '/'.",
                                 fields[i], name);
        }
        for (size_t j = 0; j < i; j++) {
            if (strcmp(fields[i], fields[j]) == 0) {
                return pip_error_set(err, PIP_E_BAD_REQUEST, "INVALID_DATA",
                                     "Index field '%.64s' is listed twice "
                                     "in collection %s.",
                                     fields[i], name);
            }
        }
    }
    return PIP_OK;
}

static pip_collection *
store_collection_new(pip_store *st, const char *name,
                     const char *const *fields)
{
    pip_collection *c = calloc(1, sizeof(*c));
    json_t *names = json_array();
    size_t n = 0;

    if (c == NULL || names == NULL) {
        free(c);
        json_decref(names);
        return NULL;
    }
    while (fields != NULL && fields[n] != NULL) {
        n++;
    }
    c->store = st;
    c->name = strdup(name);
    c->fields = calloc(n + 1, sizeof(char *));
    c->manifest = json_pack("{s:o}", "fields", names);
    if (c->name == NULL || c->fields == NULL || c->manifest == NULL) {
        store_collection_free(c);
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        c->fields[i] = strdup(fields[i]);
        if (c->fields[i] == NULL ||
            json_array_append_new(names, json_string(fields[i])) != 0) {
            store_collection_free(c);
            return NULL;
        }
    }
    return c;
}

static pip_collection *
store_collection_find(pip_store *st, const char *name)
{
    for (pip_collection *c = st->collections; c != NULL; c = c->next) {
        if (strcmp(c->name, name) == 0) {
            return c;
        }
    }
    return NULL;
}

/* ---- index manifest ---- */

/*
 * Sets *current when the stored manifest lists the fields that c indexes
 * now.  A missing or unreadable manifest is not current.
 */
static int
store_manifest_current(pip_collection *c, bool *current, pip_error *err)
{
    store_key key;
    char *cause = NULL;
    char *value;
    size_t len = 0;
    json_t *stored = NULL;

    *current = false;
    store_key_init(&key);
    store_key_manifest(&key, c);
    if (key.failed) {
        return store_oom(err);
    }
    value = rocksdb_get(c->store->db, c->store->read_options, key.data,
                        key.len, &len, &cause);
    store_key_fini(&key);
    if (cause != NULL) {
        return store_rocksdb_error(err, "STORE_READ_FAILED", cause, c,
                                   "read the index manifest");
    }
    if (value == NULL) {
        return PIP_OK;
    }

    if (store_decode(c, "m", value, len, &stored, err) != PIP_OK) {
        pip_error_fini(err);
    }
    rocksdb_free(value);
    *current = stored != NULL && json_equal(stored, c->manifest);
    json_decref(stored);
    return PIP_OK;
}

/* Adds the deletion of every key that starts with prefix. */
static int
store_stage_delete_prefix(rocksdb_writebatch_t *wb, store_key *prefix,
                          pip_error *err)
{
    store_key end;

    store_key_init(&end);
    store_key_set(&end, prefix->data, prefix->len);
    if (end.failed || prefix->failed || !store_key_successor(&end)) {
        store_key_fini(&end);
        return store_oom(err);
    }
    rocksdb_writebatch_delete_range(wb, prefix->data, prefix->len, end.data,
                                    end.len);
    store_key_fini(&end);
    return PIP_OK;
}

/*
 * Drops every index entry of c and its manifest in one batch, so that
 * a rebuild that stops half-way is redone on the next open.
 */
static int
store_index_drop(pip_collection *c, pip_error *err)
{
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
    store_key key;
    int rv;

    store_key_init(&key);
    store_key_index_prefix(&key, c, NULL);
    rv = store_stage_delete_prefix(wb, &key, err);
    key.len = 0;
    store_key_manifest(&key, c);
    if (rv == PIP_OK && key.failed) {
        rv = store_oom(err);
    }
    if (rv == PIP_OK) {
        rocksdb_writebatch_delete(wb, key.data, key.len);
        rv = store_write(c->store, wb, c, err);
    }
    store_key_fini(&key);
    rocksdb_writebatch_destroy(wb);
    return rv;
}

/*
 * Stages the index entries of the record under the iterator.  Records
 * that do not decode get no entries, and reading them reports the error.
 */
static int
store_index_stage_entry(pip_collection *c, rocksdb_iterator_t *it,
                        size_t prefix_len, store_key *id,
                        rocksdb_writebatch_t *wb, pip_error *err)
{
    size_t klen = 0;
    size_t vlen = 0;
    const char *key = rocksdb_iter_key(it, &klen);
    const char *value = rocksdb_iter_value(it, &vlen);
    const char *id_str;
    json_t *record = NULL;
    int rv;

    store_key_set(id, key + prefix_len, klen - prefix_len);
    id_str = store_key_cstr(id);
    if (id_str == NULL) {
        return store_oom(err);
    }
    if (store_decode(c, id_str, value, vlen, &record, err) != PIP_OK) {
        pip_error_fini(err);
        return PIP_OK;
    }
    rv = store_stage_index(wb, c, id_str, record, true, err);
    json_decref(record);
    return rv;
}

/* Writes the index entries of every record, a chunk per write batch. */
static int
store_index_fill(pip_collection *c, rocksdb_iterator_t *it, size_t prefix_len,
                 pip_error *err)
{
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
    store_key id;
    size_t staged = 0;
    char *cause = NULL;
    int rv = PIP_OK;

    store_key_init(&id);
    for (rocksdb_iter_seek_to_first(it);
         rv == PIP_OK && rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        rv = store_index_stage_entry(c, it, prefix_len, &id, wb, err);
        if (rv == PIP_OK && ++staged == STORE_REBUILD_CHUNK) {
            rv = store_write(c->store, wb, c, err);
            rocksdb_writebatch_clear(wb);
            staged = 0;
        }
    }
    rocksdb_iter_get_error(it, &cause);
    if (rv == PIP_OK && cause != NULL) {
        rv = store_rocksdb_error(err, "STORE_READ_FAILED", cause, c,
                                 "read records to index");
        cause = NULL;
    }
    rocksdb_free(cause);
    if (rv == PIP_OK && staged > 0) {
        rv = store_write(c->store, wb, c, err);
    }
    store_key_fini(&id);
    rocksdb_writebatch_destroy(wb);
    return rv;
}

static int
store_manifest_write(pip_collection *c, pip_error *err)
{
    rocksdb_writebatch_t *wb;
    msgpack_sbuffer buf;
    store_key key;
    int rv;

    rv = store_pack(c->manifest, &buf, err);
    if (rv != PIP_OK) {
        return rv;
    }
    store_key_init(&key);
    store_key_manifest(&key, c);
    if (key.failed) {
        msgpack_sbuffer_destroy(&buf);
        return store_oom(err);
    }
    wb = rocksdb_writebatch_create();
    rocksdb_writebatch_put(wb, key.data, key.len, buf.data, buf.size);
    rv = store_write(c->store, wb, c, err);
    rocksdb_writebatch_destroy(wb);
    store_key_fini(&key);
    msgpack_sbuffer_destroy(&buf);
    return rv;
}

/*
 * Rebuilds the indexes of c when its indexed fields differ from those of
 * the last open, so that a field added to the list also finds the
 * records written before.  Runs before the collection is handed out, so
 * no write of this process races with it.
 */
static int
store_index_sync(pip_collection *c, pip_error *err)
{
    rocksdb_readoptions_t *ro;
    rocksdb_iterator_t *it;
    store_key lower;
    store_key upper;
    bool current = false;
    int rv;

    rv = store_manifest_current(c, &current, err);
    if (rv != PIP_OK || current) {
        return rv;
    }
    rv = store_index_drop(c, err);
    if (rv != PIP_OK) {
        return rv;
    }

    store_key_init(&lower);
    store_key_init(&upper);
    store_key_record_prefix(&lower, c);
    store_key_record_prefix(&upper, c);
    if (lower.failed || upper.failed || !store_key_successor(&upper)) {
        store_key_fini(&lower);
        store_key_fini(&upper);
        return store_oom(err);
    }
    ro = rocksdb_readoptions_create();
    rocksdb_readoptions_set_iterate_lower_bound(ro, lower.data, lower.len);
    rocksdb_readoptions_set_iterate_upper_bound(ro, upper.data, upper.len);
    it = rocksdb_create_iterator(c->store->db, ro);
    rv = store_index_fill(c, it, lower.len, err);
    rocksdb_iter_destroy(it);
    rocksdb_readoptions_destroy(ro);
    store_key_fini(&lower);
    store_key_fini(&upper);

    if (rv == PIP_OK) {
        rv = store_manifest_write(c, err);
    }
    return rv;
}

/* ---- collections ---- */

/* True when c indexes exactly the fields of the list (in any order). */
static bool
store_fields_equal(const pip_collection *c, const char *const *fields)
{
    size_t n = 0;
    size_t m = 0;

    while (fields[n] != NULL) {
        n++;
    }
    while (c->fields[m] != NULL) {
        m++;
    }
    if (n != m) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        bool found = false;

        for (size_t j = 0; j < m && !found; j++) {
            found = strcmp(fields[i], c->fields[j]) == 0;
        }
        if (!found) {
            return false;
        }
    }
    return true;
}

/*
 * Returns the open collection c for a repeated pip_store_collection().
 * NULL fields mean "as opened".  Other fields than those of the first
 * call are an error, because one process must not index a collection in
 * two ways.
 */
static int
store_collection_existing(pip_collection *c, const char *const *fields,
                          pip_collection **out, pip_error *err)
{
    if (fields != NULL && !store_fields_equal(c, fields)) {
        return pip_error_set(err, PIP_E_INVALID_STATE, "INDEX_MISMATCH",
                             "Collection %s is already open with other "
                             "indexed fields.",
                             c->name);
    }
    *out = c;
    return PIP_OK;
}

int
pip_store_collection(pip_store *st, const char *name,
                     const char *const *indexed_fields, pip_collection **out,
                     pip_error *err)
{
    pip_collection *c;
    int rv;

    *out = NULL;
    if (!store_name_valid(name)) {
        return pip_error_set(err, PIP_E_BAD_REQUEST, "INVALID_DATA",
                             "Invalid collection name '%.64s': use only "
                             "a-z, 0-9 and '_'.",
                             name != NULL ? name : "");
    }
    rv = store_check_fields(name, indexed_fields, err);
    if (rv != PIP_OK) {
        return rv;
    }

    pthread_mutex_lock(&st->collections_lock);
    c = store_collection_find(st, name);
    if (c != NULL) {
        rv = store_collection_existing(c, indexed_fields, out, err);
        pthread_mutex_unlock(&st->collections_lock);
        return rv;
    }
    c = store_collection_new(st, name, indexed_fields);
    rv = c != NULL ? store_index_sync(c, err) : store_oom(err);
    if (rv == PIP_OK) {
        c->next = st->collections;
        st->collections = c;
        *out = c;
    } else if (c != NULL) {
        store_collection_free(c);
    }
    pthread_mutex_unlock(&st->collections_lock);
    return rv;
}

/* ---- single records ---- */

int
pip_coll_get(pip_collection *c, const char *id, json_t **record,
             pip_error *err)
{
    int rv;

    *record = NULL;
    rv = store_check_id(id, err);
    if (rv != PIP_OK) {
        return rv;
    }
    return store_read(c, c->store->read_options, id, record, NULL, err);
}

int
pip_coll_put(pip_collection *c, const char *id, const json_t *record,
             pip_error *err)
{
    pthread_mutex_t *stripe;
    json_t *old = NULL;
    int rv;

    rv = store_check_id(id, err);
    if (rv == PIP_OK) {
        rv = store_check_record(record, err);
    }
    if (rv == PIP_OK) {
        rv = store_write_begin(c->store, err);
    }
    if (rv != PIP_OK) {
        return rv;
    }

    stripe = store_lock(c, id);
    rv = store_replace(c, id, record, &old, err);
    pthread_mutex_unlock(stripe);
    store_write_end(c->store);
    json_decref(old);
    return rv;
}

int
pip_coll_delete(pip_collection *c, const char *id, json_t **old,
                pip_error *err)
{
    pthread_mutex_t *stripe;
    json_t *removed = NULL;
    int rv;

    rv = store_record_write_begin(c, id, old, err);
    if (rv != PIP_OK) {
        return rv;
    }

    stripe = store_lock(c, id);
    rv = store_replace(c, id, NULL, &removed, err);
    pthread_mutex_unlock(stripe);
    store_write_end(c->store);

    if (old != NULL) {
        *old = removed;
    } else {
        json_decref(removed);
    }
    return rv;
}

/*
 * Range deletions make clear one small write whatever the collection's
 * size.  A put that runs at the same time lands wholly before or after
 * it, because each is one write batch.
 */
int
pip_coll_clear(pip_collection *c, pip_error *err)
{
    rocksdb_writebatch_t *wb;
    store_key key;
    int rv;

    rv = store_write_begin(c->store, err);
    if (rv != PIP_OK) {
        return rv;
    }
    wb = rocksdb_writebatch_create();
    store_key_init(&key);
    store_key_record_prefix(&key, c);
    rv = store_stage_delete_prefix(wb, &key, err);
    if (rv == PIP_OK) {
        key.len = 0;
        store_key_index_prefix(&key, c, NULL);
        rv = store_stage_delete_prefix(wb, &key, err);
    }
    if (rv == PIP_OK) {
        /* Not a group commit: the merge does not copy range deletions. */
        rv = store_write(c->store, wb, c, err);
    }
    store_key_fini(&key);
    rocksdb_writebatch_destroy(wb);
    store_write_end(c->store);
    return rv;
}

/*
 * NOTE: fn runs under the id's stripe lock, which is not recursive: fn
 * must not write to the same store, or it may deadlock.
 */
int
pip_coll_update(pip_collection *c, const char *id, pip_update_fn fn, void *ctx,
                json_t **result, pip_error *err)
{
    pthread_mutex_t *stripe;
    json_t *current = NULL;
    json_t *next = NULL;
    int rv;

    rv = store_record_write_begin(c, id, result, err);
    if (rv != PIP_OK) {
        return rv;
    }

    stripe = store_lock(c, id);
    rv = store_read(c, c->store->read_options, id, &current, NULL, err);
    if (rv == PIP_OK) {
        rv = fn(current, &next, ctx, err);
    }
    if (rv == PIP_OK && next != NULL) {
        rv = store_check_record(next, err);
    }
    if (rv == PIP_OK && (current != NULL || next != NULL)) {
        rv = store_apply(c, id, current, next, err);
    }
    pthread_mutex_unlock(stripe);
    store_write_end(c->store);

    json_decref(current);
    if (rv == PIP_OK && result != NULL) {
        *result = next;
    } else {
        json_decref(next);
    }
    return rv;
}

/* ---- batches ---- */

typedef struct store_batch_op {
    pip_collection *c;
    char *id;
    json_t *record; /* NULL: delete */
    size_t seq;     /* order of the call, so the last write of an id wins */
} store_batch_op;

struct pip_batch {
    pip_store *store;
    store_batch_op *ops;
    size_t len;
    size_t cap;
};

pip_batch *
pip_batch_new(pip_store *st)
{
    pip_batch *b;

    if (st == NULL) {
        return NULL;
    }
    b = calloc(1, sizeof(*b));
    if (b != NULL) {
        b->store = st;
    }
    return b;
}

void
pip_batch_free(pip_batch *b)
{
    if (b == NULL) {
        return;
    }
    for (size_t i = 0; i < b->len; i++) {
        free(b->ops[i].id);
        json_decref(b->ops[i].record);
    }
    free(b->ops);
    free(b);
}

static int
store_batch_check(pip_batch *b, pip_collection *c, const char *id,
                  pip_error *err)
{
    if (b == NULL || c == NULL) {
        return pip_error_set(err, PIP_E_INVALID_STATE, "INVALID_BATCH",
                             "A batch and a collection are required.");
    }
    if (c->store != b->store) {
        return pip_error_set(err, PIP_E_INVALID_STATE, "INVALID_BATCH",
                             "Collection %s belongs to another store than "
                             "the batch.",
                             c->name);
    }
    return store_check_id(id, err);
}

/* Appends an operation and takes the reference to record (or NULL). */
static int
store_batch_add(pip_batch *b, pip_collection *c, const char *id,
                json_t *record, pip_error *err)
{
    store_batch_op *op;

    if (b->len == b->cap) {
        size_t cap = b->cap != 0 ? b->cap * 2 : 16;
        store_batch_op *ops = realloc(b->ops, cap * sizeof(*ops));

        if (ops == NULL) {
            json_decref(record);
            return store_oom(err);
        }
        b->ops = ops;
        b->cap = cap;
    }
    op = &b->ops[b->len];
    op->id = strdup(id);
    if (op->id == NULL) {
        json_decref(record);
        return store_oom(err);
    }
    op->c = c;
    op->record = record;
    op->seq = b->len;
    b->len++;
    return PIP_OK;
}

int
pip_batch_put(pip_batch *b, pip_collection *c, const char *id,
              const json_t *record, pip_error *err)
{
    json_t *copy;
    int rv;

    rv = store_batch_check(b, c, id, err);
    if (rv == PIP_OK) {
        rv = store_check_record(record, err);
    }
    if (rv != PIP_OK) {
        return rv;
    }
    /* A deep copy, so the caller may change record before the commit. */
    copy = json_deep_copy(record);
    if (copy == NULL) {
        return store_oom(err);
    }
    return store_batch_add(b, c, id, copy, err);
}

int
pip_batch_delete(pip_batch *b, pip_collection *c, const char *id,
                 pip_error *err)
{
    int rv = store_batch_check(b, c, id, err);

    if (rv != PIP_OK) {
        return rv;
    }
    return store_batch_add(b, c, id, NULL, err);
}

static int
store_batch_op_compare(const void *a, const void *b)
{
    const store_batch_op *x = a;
    const store_batch_op *y = b;
    int d = strcmp(x->c->name, y->c->name);

    if (d == 0) {
        d = strcmp(x->id, y->id);
    }
    if (d == 0) {
        d = x->seq < y->seq ? -1 : 1;
    }
    return d;
}

static int
store_stripe_compare(const void *a, const void *b)
{
    unsigned x = *(const unsigned *)a;
    unsigned y = *(const unsigned *)b;

    return x < y ? -1 : x > y;
}

/*
 * Sorts the operations by collection and id and marks all but the last
 * write of each id as superseded (record and id freed, c NULL), so every
 * id is read and written once.
 */
static void
store_batch_collapse(pip_batch *b)
{
    if (b->len == 0) {
        return; /* qsort with a NULL array is undefined even for 0 items */
    }
    qsort(b->ops, b->len, sizeof(*b->ops), store_batch_op_compare);
    for (size_t i = 0; i + 1 < b->len; i++) {
        store_batch_op *op = &b->ops[i];
        const store_batch_op *later = &b->ops[i + 1];

        if (op->c == later->c && strcmp(op->id, later->id) == 0) {
            json_decref(op->record);
            op->record = NULL;
            op->c = NULL;
        }
    }
}

/*
 * Fills stripes with the sorted, distinct stripe numbers of the batch.
 * Single-record calls lock one stripe and batches lock theirs in
 * ascending order, so no two callers wait on each other in a cycle.
 */
static size_t
store_batch_stripes(const pip_batch *b, unsigned *stripes)
{
    size_t n = 0;
    size_t distinct = 0;

    for (size_t i = 0; i < b->len; i++) {
        if (b->ops[i].c != NULL) {
            stripes[n++] = store_stripe(b->ops[i].c, b->ops[i].id);
        }
    }
    qsort(stripes, n, sizeof(*stripes), store_stripe_compare);
    for (size_t i = 0; i < n; i++) {
        if (distinct == 0 || stripes[distinct - 1] != stripes[i]) {
            stripes[distinct++] = stripes[i];
        }
    }
    return distinct;
}

/* Stages every operation against the records it replaces. */
static int
store_batch_stage(pip_batch *b, rocksdb_writebatch_t *wb, pip_error *err)
{
    int rv = PIP_OK;

    for (size_t i = 0; i < b->len && rv == PIP_OK; i++) {
        store_batch_op *op = &b->ops[i];
        json_t *old = NULL;
        bool exists = false;

        if (op->c == NULL) {
            continue;
        }
        rv = store_read_old(op->c, op->id, &old, &exists, err);
        if (rv == PIP_OK && (exists || op->record != NULL)) {
            rv = store_stage(wb, op->c, op->id, old, op->record, err);
        }
        json_decref(old);
    }
    return rv;
}

int
pip_batch_commit(pip_batch *b, pip_error *err)
{
    rocksdb_writebatch_t *wb;
    unsigned *stripes;
    size_t n;
    int rv;

    if (b == NULL) {
        return pip_error_set(err, PIP_E_INVALID_STATE, "INVALID_BATCH",
                             "No batch to commit.");
    }
    rv = store_write_begin(b->store, err);
    if (rv != PIP_OK) {
        pip_batch_free(b);
        return rv;
    }
    stripes = malloc((b->len + 1) * sizeof(*stripes));
    if (stripes == NULL) {
        store_write_end(b->store);
        pip_batch_free(b);
        return store_oom(err);
    }
    store_batch_collapse(b);
    n = store_batch_stripes(b, stripes);

    for (size_t i = 0; i < n; i++) {
        pthread_mutex_lock(&b->store->stripes[stripes[i]]);
    }
    wb = rocksdb_writebatch_create();
    rv = store_batch_stage(b, wb, err);
    if (rv == PIP_OK && rocksdb_writebatch_count(wb) > 0) {
        rv = store_commit(b->store, wb, NULL, err);
    }
    rocksdb_writebatch_destroy(wb);
    for (size_t i = n; i > 0; i--) {
        pthread_mutex_unlock(&b->store->stripes[stripes[i - 1]]);
    }

    free(stripes);
    store_write_end(b->store);
    pip_batch_free(b);
    return rv;
}

/* ---- scans ---- */

/*
 * The state of one scan.  Records and index entries are read from one
 * snapshot, so an index entry and the record it names agree.
 */
typedef struct store_scan {
    pip_collection *c;
    const pip_scan *spec;
    const char *field; /* indexed field, or NULL to scan the ids */
    store_key base;    /* the prefix of every key visited */
    store_key lower;   /* iterator bounds, alive as long as the iterator */
    store_key upper;
    store_key id;
    store_key value; /* scratch for the index check */
    const rocksdb_snapshot_t *snapshot;
    rocksdb_readoptions_t *ro;
    rocksdb_iterator_t *it;
} store_scan;

static const pip_scan store_scan_all = {0};

static int
store_scan_check(pip_collection *c, const pip_scan *spec, const char **field,
                 pip_error *err)
{
    *field = NULL;
    if (spec->index == NULL) {
        if (spec->index_value != NULL) {
            return pip_error_set(err, PIP_E_INTERNAL, "INVALID_SCAN",
                                 "A scan of collection %s has an index "
                                 "value but no index.",
                                 c->name);
        }
        return PIP_OK;
    }
    for (size_t i = 0; c->fields[i] != NULL && *field == NULL; i++) {
        if (strcmp(c->fields[i], spec->index) == 0) {
            *field = c->fields[i];
        }
    }
    if (*field == NULL) {
        return pip_error_set(err, PIP_E_INTERNAL, "UNKNOWN_INDEX",
                             "Collection %s has no index on field %.64s.",
                             c->name, spec->index);
    }
    if (spec->index_value != NULL &&
        (!store_value_indexable(spec->index_value) ||
         !store_value_storable(spec->index_value, 0))) {
        return pip_error_set(err, PIP_E_BAD_REQUEST, "INVALID_DATA",
                             "The value for index %.64s of collection %s "
                             "must be a string without NUL bytes, an "
                             "integer or a boolean.",
                             spec->index, c->name);
    }
    return PIP_OK;
}

static void
store_scan_base(store_scan *s)
{
    if (s->field == NULL) {
        store_key_record_prefix(&s->base, s->c);
        return;
    }
    store_key_index_prefix(&s->base, s->c, s->field);
    if (s->spec->index_value != NULL) {
        store_key_add_value(&s->base, s->spec->index_value);
        store_key_add_byte(&s->base, '\0');
    }
}

static int
store_key_compare(const store_key *a, const store_key *b)
{
    size_t n = a->len < b->len ? a->len : b->len;
    int d = memcmp(a->data, b->data, n);

    if (d != 0) {
        return d;
    }
    return (a->len > b->len) - (a->len < b->len);
}

/*
 * Sets the iterator bounds.  When ids follow the base directly (id scans
 * and index scans with a value), prefix, start and end narrow the key
 * range.  Otherwise the range is the whole index and ids are filtered
 * one by one.
 */
static void
store_scan_bounds(store_scan *s)
{
    const pip_scan *spec = s->spec;
    bool ids_follow = s->field == NULL || spec->index_value != NULL;
    const char *from = spec->prefix;
    store_key end;

    store_key_set(&s->lower, s->base.data, s->base.len);
    store_key_set(&s->upper, s->base.data, s->base.len);
    if (!ids_follow) {
        store_key_successor(&s->upper);
        return;
    }

    if (spec->start != NULL &&
        (from == NULL || strcmp(spec->start, from) > 0)) {
        from = spec->start;
    }
    if (from != NULL) {
        store_key_add_str(&s->lower, from);
    }
    if (spec->prefix != NULL && spec->prefix[0] != '\0') {
        store_key_add_str(&s->upper, spec->prefix);
    }
    store_key_successor(&s->upper);
    if (spec->end != NULL) {
        store_key_init(&end);
        store_key_set(&end, s->base.data, s->base.len);
        store_key_add_str(&end, spec->end);
        if (store_key_compare(&end, &s->upper) < 0) {
            store_key_set(&s->upper, end.data, end.len);
        }
        s->upper.failed |= end.failed;
        store_key_fini(&end);
    }
}

static void
store_scan_close(store_scan *s)
{
    if (s->it != NULL) {
        rocksdb_iter_destroy(s->it);
    }
    if (s->ro != NULL) {
        rocksdb_readoptions_destroy(s->ro);
    }
    if (s->snapshot != NULL) {
        rocksdb_release_snapshot(s->c->store->db, s->snapshot);
    }
    store_key_fini(&s->base);
    store_key_fini(&s->lower);
    store_key_fini(&s->upper);
    store_key_fini(&s->id);
    store_key_fini(&s->value);
}

static int
store_scan_open(store_scan *s, pip_collection *c, const pip_scan *spec,
                pip_error *err)
{
    int rv;

    memset(s, 0, sizeof(*s));
    s->c = c;
    s->spec = spec;
    store_key_init(&s->base);
    store_key_init(&s->lower);
    store_key_init(&s->upper);
    store_key_init(&s->id);
    store_key_init(&s->value);
    rv = store_scan_check(c, spec, &s->field, err);
    if (rv != PIP_OK) {
        return rv;
    }

    store_scan_base(s);
    store_scan_bounds(s);
    if (s->base.failed || s->lower.failed || s->upper.failed) {
        return store_oom(err);
    }

    s->snapshot = rocksdb_create_snapshot(c->store->db);
    s->ro = rocksdb_readoptions_create();
    rocksdb_readoptions_set_snapshot(s->ro, s->snapshot);
    rocksdb_readoptions_set_iterate_lower_bound(s->ro, s->lower.data,
                                                s->lower.len);
    rocksdb_readoptions_set_iterate_upper_bound(s->ro, s->upper.data,
                                                s->upper.len);
    s->it = rocksdb_create_iterator(c->store->db, s->ro);
    return PIP_OK;
}

/* True when id passes the prefix, start and end of the scan. */
static bool
store_scan_id_in_range(const pip_scan *spec, const char *id)
{
    if (spec->prefix != NULL &&
        strncmp(id, spec->prefix, strlen(spec->prefix)) != 0) {
        return false;
    }
    if (spec->start != NULL && strcmp(id, spec->start) < 0) {
        return false;
    }
    return spec->end == NULL || strcmp(id, spec->end) < 0;
}

/*
 * Extracts the id from the current key into s->id.  Returns NULL for a
 * key that is out of range or not of our layout.
 */
static const char *
store_scan_key_id(store_scan *s, const char *key, size_t klen)
{
    size_t at = s->base.len;
    const char *id;

    if (klen <= at || memcmp(key, s->base.data, at) != 0) {
        return NULL;
    }
    if (s->field != NULL && s->spec->index_value == NULL) {
        size_t vlen = store_index_value_len(key + at, klen - at);

        if (vlen == 0 || at + vlen + 1 >= klen) {
            return NULL;
        }
        at += vlen + 1;
    }
    if (memchr(key + at, '\0', klen - at) != NULL) {
        return NULL;
    }
    store_key_set(&s->id, key + at, klen - at);
    id = store_key_cstr(&s->id);
    if (id == NULL || !store_scan_id_in_range(s->spec, id)) {
        return NULL;
    }
    return id;
}

/*
 * True when the record still has the value of the index entry key.  A
 * write over a corrupt record can leave a stale entry behind.
 */
static bool
store_scan_entry_current(store_scan *s, const json_t *record, const char *key,
                         size_t klen, const char *id)
{
    const json_t *v = json_object_get(record, s->field);

    if (!store_value_indexable(v)) {
        return false;
    }
    s->value.len = 0;
    store_key_index(&s->value, s->c, s->field, v, id);
    return !s->value.failed && s->value.len == klen &&
           memcmp(s->value.data, key, klen) == 0;
}

/* Loads the record under the iterator.  *record NULL skips the key. */
static int
store_scan_load(store_scan *s, const char **id, json_t **record,
                pip_error *err)
{
    size_t klen = 0;
    size_t vlen = 0;
    const char *key = rocksdb_iter_key(s->it, &klen);
    const char *value;
    int rv;

    *record = NULL;
    *id = store_scan_key_id(s, key, klen);
    if (*id == NULL) {
        return s->id.failed ? store_oom(err) : PIP_OK;
    }
    if (s->field == NULL) {
        value = rocksdb_iter_value(s->it, &vlen);
        return store_decode(s->c, *id, value, vlen, record, err);
    }

    rv = store_read(s->c, s->ro, *id, record, NULL, err);
    if (rv == PIP_OK && *record != NULL &&
        !store_scan_entry_current(s, *record, key, klen, *id)) {
        json_decref(*record);
        *record = NULL;
    }
    return rv;
}

static int
store_scan_run(store_scan *s, pip_visit_fn visit, void *ctx, pip_error *err)
{
    const pip_scan *spec = s->spec;
    bool more = true;
    char *cause = NULL;
    int rv = PIP_OK;

    if (spec->reverse) {
        rocksdb_iter_seek_to_last(s->it);
    } else {
        rocksdb_iter_seek_to_first(s->it);
    }
    while (more && rv == PIP_OK && rocksdb_iter_valid(s->it)) {
        const char *id = NULL;
        json_t *record = NULL;

        rv = store_scan_load(s, &id, &record, err);
        if (rv == PIP_OK && record != NULL &&
            (spec->match == NULL || spec->match(record, spec->match_ctx))) {
            more = visit(id, record, ctx);
        }
        json_decref(record);
        if (spec->reverse) {
            rocksdb_iter_prev(s->it);
        } else {
            rocksdb_iter_next(s->it);
        }
    }

    rocksdb_iter_get_error(s->it, &cause);
    if (rv == PIP_OK && cause != NULL) {
        return store_rocksdb_error(err, "STORE_READ_FAILED", cause, s->c,
                                   "scan records");
    }
    rocksdb_free(cause);
    return rv;
}

int
pip_coll_scan(pip_collection *c, const pip_scan *scan, pip_visit_fn visit,
              void *ctx, pip_error *err)
{
    store_scan s;
    int rv;

    if (visit == NULL) {
        return pip_error_set(err, PIP_E_INTERNAL, "INVALID_SCAN",
                             "A scan needs a visit function.");
    }
    if (store_memory_only) {
        return store_blocked("A scan", err);
    }
    rv = store_scan_open(&s, c, scan != NULL ? scan : &store_scan_all, err);
    if (rv == PIP_OK && store_key_compare(&s.lower, &s.upper) < 0) {
        rv = store_scan_run(&s, visit, ctx, err);
    }
    store_scan_close(&s);
    return rv;
}

/* ---- pages and counts ---- */

typedef struct store_page {
    int64_t skip;
    int64_t take;
    bool total;
    int64_t matched;
    json_t *data;
    bool failed; /* out of memory */
} store_page;

static bool
store_page_visit(const char *id, const json_t *record, void *ctx)
{
    store_page *p = ctx;
    int64_t collected = (int64_t)json_array_size(p->data);

    (void)id;
    p->matched++;
    if (p->matched > p->skip && collected < p->take) {
        /* The scan drops its reference after visit; keep one for data. */
        if (json_array_append(p->data, (json_t *)record) != 0) {
            p->failed = true;
            return false;
        }
        collected++;
    }
    return p->total || collected < p->take;
}

static int
store_check_paging(const pip_paging *paging, pip_error *err)
{
    if (paging->skip < 0 || paging->take < 0) {
        return pip_error_set(err, PIP_E_BAD_REQUEST, "INVALID_DATA",
                             "Paging skip and take must not be negative "
                             "(skip %lld, take %lld).",
                             (long long)paging->skip, (long long)paging->take);
    }
    return PIP_OK;
}

/* A NULL paging lists every match without a total. */
int
pip_coll_list(pip_collection *c, const pip_scan *scan,
              const pip_paging *paging, json_t **page, pip_error *err)
{
    pip_paging every = {.skip = 0, .take = INT64_MAX, .total = false};
    store_page p = {0};
    int rv;

    *page = NULL;
    if (paging == NULL) {
        paging = &every;
    }
    rv = store_check_paging(paging, err);
    if (rv != PIP_OK) {
        return rv;
    }
    p.skip = paging->skip;
    p.take = paging->take;
    p.total = paging->total;
    p.data = json_array();
    if (p.data == NULL) {
        return store_oom(err);
    }

    if (p.take > 0 || p.total) {
        rv = pip_coll_scan(c, scan, store_page_visit, &p, err);
    }
    if (rv == PIP_OK && p.failed) {
        rv = store_oom(err);
    }
    if (rv != PIP_OK) {
        json_decref(p.data);
        return rv;
    }
    *page = pip_page_new(p.data, p.total, p.matched);
    return *page != NULL ? PIP_OK : store_oom(err);
}

static bool
store_count_visit(const char *id, const json_t *record, void *ctx)
{
    (void)id;
    (void)record;
    (*(int64_t *)ctx)++;
    return true;
}

int
pip_coll_count(pip_collection *c, const pip_scan *scan, int64_t *count,
               pip_error *err)
{
    *count = 0;
    return pip_coll_scan(c, scan, store_count_visit, count, err);
}
