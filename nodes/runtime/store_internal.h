/*
 * Test hooks of the store.  Not installed; only store.c and the tests of
 * nodes/runtime include this file.
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

#endif
