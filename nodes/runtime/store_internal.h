/*
 * Internal hooks of the store: memory-only runs for the RPC server, and
 * test hooks.  Not installed; only the runtime and its tests include
 * this file.
 */
#ifndef PIP_STORE_INTERNAL_H
#define PIP_STORE_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>

#include "pip/store.h"

/*
 * Called by the group commit leader before its RocksDB write, with the
 * number of writers in the group.  It may block, so a test can let
 * writers queue up behind the leader.  A non-NULL return fails the
 * group's write with that message, and nothing of the group is written.
 */
typedef const char *(*pip__store_commit_hook)(void *ctx, size_t writers);

/* Installs hook (NULL removes it).  Call it while no write runs. */
void pip__store_set_commit_hook(pip_store *st, pip__store_commit_hook hook,
                                void *ctx);

/* The number of writers queued behind the active leader. */
size_t pip__store_commit_queue_length(pip_store *st);

/* Whether pip_store_close() began on st, which is still open. */
bool pip__store_closing(pip_store *st);

/*
 * Starts (on true) or ends a memory-only run on the calling thread.
 * During the run, pip_coll_get() reads only RocksDB's memtables and block
 * cache (RocksDB's block-cache read tier, which does no file I/O), and the
 * store's writes and scans fail at once.  A read that needs the disk and every write or scan fail
 * with STORE_WOULD_BLOCK and mark the run as blocked.
 */
void pip__store_memory_only(bool on);

/* Returns whether the thread's memory-only run in progress was marked
 * as blocked; false outside such a run. */
bool pip__store_would_block(void);

#endif
