/*
 * Internal helpers shared by the files of proto/.  Not installed, and
 * hidden from the symbols that libpip exports.
 */
#ifndef PIP_PROTO_INTERNAL_H
#define PIP_PROTO_INTERNAL_H

#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>

#include "pip/wire.h"

#define PROTO_HIDDEN __attribute__((visibility("hidden")))

/*
 * The deepest nesting that any limit allows.  msgpack-c 4.0's unpacker
 * keeps open containers in a fixed stack of MSGPACK_EMBED_STACK_SIZE (32)
 * entries and fails past it, so pip_mp_check() never lets deeper data
 * through, whatever pip_limits.max_depth is set to.
 */
#define PROTO_DEPTH_CAP 32

/* True when bytes[0..len) is UTF-8 with no NUL, overlong or surrogate. */
PROTO_HIDDEN bool proto_utf8_valid(const char *bytes, size_t len);

/*
 * The path of a value inside a document, such as "counters[2].type", for
 * error messages.  A path too long for the buffer is cut short at a
 * character boundary.
 */
typedef struct proto_path {
    char text[256];
    size_t len;
} proto_path;

#define PROTO_PATH_INIT                                                       \
    {                                                                         \
        .text = "", .len = 0                                                  \
    }

/* Appends ".key" (or "key" at the start). */
PROTO_HIDDEN void proto_path_key(proto_path *path, const char *key,
                                 size_t key_len);
/* Appends "[index]". */
PROTO_HIDDEN void proto_path_index(proto_path *path, size_t index);
/* Cuts the path back to len bytes, as saved before an append. */
PROTO_HIDDEN void proto_path_restore(proto_path *path, size_t len);

/*
 * The longest prefix of text[0..len) of at most max bytes that does not
 * cut a UTF-8 sequence, so that a message quoting input stays UTF-8.
 */
PROTO_HIDDEN size_t proto_utf8_prefix(const char *text, size_t len,
                                      size_t max);

/* Parses one unpacked object, which lives until the callback returns. */
typedef int (*proto_parse_fn)(const msgpack_object *obj, void *ctx,
                              pip_error *err);

/*
 * Checks the object at the start of buf with pip_mp_check(), unpacks it
 * and calls parse on it.  Sets *consumed to the object's size once it is
 * unpacked, even when parse fails, and to 0 before that.
 */
PROTO_HIDDEN int proto_decode(const void *buf, size_t len,
                              const pip_limits *lim, proto_parse_fn parse,
                              void *ctx, size_t *consumed, pip_error *err);

#endif
