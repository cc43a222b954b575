/*
 * A validating walk over msgpack bytes that allocates nothing.
 *
 * msgpack_unpack() sizes its allocations from the length fields of the
 * input, so a 5-byte array header can ask for gigabytes.  Every message
 * from the network passes through pip_mp_check() first: it reads each
 * header, checks its length against the bytes left and the limits, and
 * only then lets the unpacker run.
 *
 * The walk is a loop over an explicit stack of counters rather than a
 * recursion, so hostile nesting costs neither C stack nor time: every
 * object takes at least one byte, which bounds the loop by the input size.
 */
#include "pip/wire.h"

#include "proto.h"

#include <inttypes.h>

void
pip_limits_default(pip_limits *lim)
{
    lim->max_msg_bytes = 1024 * 1024;
    lim->max_depth = PROTO_DEPTH_CAP;
    lim->max_str_bytes = 1024 * 1024;
    lim->max_array_len = 65536;
    lim->max_map_len = 65536;
    lim->max_batch = 64;
}

typedef enum mp_kind {
    MP_INVALID = 0,
    MP_SCALAR,
    MP_STR,
    MP_BIN,
    MP_EXT,
    MP_ARRAY,
    MP_MAP,
} mp_kind;

/* The layout of one of the tags 0xc0-0xdf. */
typedef struct mp_format {
    unsigned char kind;
    unsigned char size_bytes;  /* bytes of the big-endian length field */
    unsigned char fixed_bytes; /* payload bytes when there is no field */
} mp_format;

static const mp_format mp_formats[32] = {
    [0x00] = {MP_SCALAR, 0, 0},  /* nil */
    [0x01] = {MP_INVALID, 0, 0}, /* never used */
    [0x02] = {MP_SCALAR, 0, 0},  /* false */
    [0x03] = {MP_SCALAR, 0, 0},  /* true */
    [0x04] = {MP_BIN, 1, 0},     [0x05] = {MP_BIN, 2, 0},
    [0x06] = {MP_BIN, 4, 0},     [0x07] = {MP_EXT, 1, 0},
    [0x08] = {MP_EXT, 2, 0},     [0x09] = {MP_EXT, 4, 0},
    [0x0a] = {MP_SCALAR, 0, 4},                              /* float 32 */
    [0x0b] = {MP_SCALAR, 0, 8},                              /* float 64 */
    [0x0c] = {MP_SCALAR, 0, 1},  [0x0d] = {MP_SCALAR, 0, 2}, /* uint */
    [0x0e] = {MP_SCALAR, 0, 4},  [0x0f] = {MP_SCALAR, 0, 8},
    [0x10] = {MP_SCALAR, 0, 1},  [0x11] = {MP_SCALAR, 0, 2}, /* int */
    [0x12] = {MP_SCALAR, 0, 4},  [0x13] = {MP_SCALAR, 0, 8},
    [0x14] = {MP_EXT, 0, 1},     [0x15] = {MP_EXT, 0, 2}, /* fixext */
    [0x16] = {MP_EXT, 0, 4},     [0x17] = {MP_EXT, 0, 8},
    [0x18] = {MP_EXT, 0, 16},    [0x19] = {MP_STR, 1, 0},
    [0x1a] = {MP_STR, 2, 0},     [0x1b] = {MP_STR, 4, 0},
    [0x1c] = {MP_ARRAY, 2, 0},   [0x1d] = {MP_ARRAY, 4, 0},
    [0x1e] = {MP_MAP, 2, 0},     [0x1f] = {MP_MAP, 4, 0},
};

/* One decoded header. */
typedef struct mp_head {
    mp_kind kind;
    size_t head_bytes; /* the tag, a length field, an ext type byte */
    uint64_t size;     /* payload bytes, or elements, or pairs */
} mp_head;

typedef enum mp_status {
    MP_OK = 0,
    MP_TRUNCATED,
    MP_BAD_TAG,
} mp_status;

static uint64_t
mp_load_be(const uint8_t *p, size_t n)
{
    uint64_t v = 0;

    for (size_t i = 0; i < n; i++) {
        v = (v << 8) | p[i];
    }
    return v;
}

/* Decodes the header of the fix formats, whose size is in the tag. */
static bool
mp_read_fix_head(uint8_t tag, mp_head *head)
{
    head->head_bytes = 1;
    head->size = 0;
    if (tag <= 0x7f || tag >= 0xe0) {
        head->kind = MP_SCALAR;
    } else if (tag <= 0x8f) {
        head->kind = MP_MAP;
        head->size = tag & 0x0f;
    } else if (tag <= 0x9f) {
        head->kind = MP_ARRAY;
        head->size = tag & 0x0f;
    } else if (tag <= 0xbf) {
        head->kind = MP_STR;
        head->size = tag & 0x1f;
    } else {
        return false;
    }
    return true;
}

/* Decodes the header at p, where at least 1 byte is left. */
static mp_status
mp_read_head(const uint8_t *p, size_t left, mp_head *head)
{
    const mp_format *format;

    if (mp_read_fix_head(p[0], head)) {
        return MP_OK;
    }

    format = &mp_formats[p[0] - 0xc0];
    head->kind = format->kind;
    head->head_bytes = 1 + format->size_bytes;
    if (head->kind == MP_INVALID) {
        return MP_BAD_TAG;
    }
    if (head->kind == MP_EXT) {
        head->head_bytes++;
    }
    if (left < head->head_bytes) {
        return MP_TRUNCATED;
    }
    if (format->size_bytes == 0) {
        head->size = format->fixed_bytes;
    } else {
        head->size = mp_load_be(p + 1, format->size_bytes);
    }
    return MP_OK;
}

/* The state of one walk. */
typedef struct mp_walk {
    const uint8_t *start;
    size_t pos;
    size_t len;
    const pip_limits *lim;
    uint32_t max_depth;
    uint32_t depth;
    /* pending[d] counts the objects still to read in the open container
     * at depth d, and pending[0] the one top-level object. */
    uint64_t pending[PROTO_DEPTH_CAP + 1];
} mp_walk;

static int
mp_fail_truncated(const mp_walk *walk, pip_error *err)
{
    pip_error_set(err, PIP_E_BAD_REQUEST, "MALFORMED_MESSAGE",
                  "The msgpack data is truncated. The object at byte %zu "
                  "needs more than the %zu bytes left.",
                  walk->pos, walk->len - walk->pos);
    pip_error_detail(err, "offset", json_integer((json_int_t)walk->pos));
    return PIP_E_BAD_REQUEST;
}

static int
mp_fail_limit(pip_error *err, const char *what, uint64_t actual,
              const char *limit, uint64_t limit_value)
{
    pip_error_set(err, PIP_E_BAD_REQUEST, "LIMIT_EXCEEDED",
                  "The %s %" PRIu64 " exceeds %s (%" PRIu64 ").", what, actual,
                  limit, limit_value);
    pip_error_detail(err, "limit", json_string(limit));
    pip_error_detail(err, "value", json_integer((json_int_t)limit_value));
    return PIP_E_BAD_REQUEST;
}

/* Checks a str, bin or ext payload and steps over it. */
static int
mp_step_bytes(mp_walk *walk, const mp_head *head, pip_error *err)
{
    size_t left = walk->len - walk->pos - head->head_bytes;

    if (head->kind != MP_SCALAR && head->size > walk->lim->max_str_bytes) {
        return mp_fail_limit(err, "str, bin or ext length", head->size,
                             "max_str_bytes", walk->lim->max_str_bytes);
    }
    if (head->size > left) {
        return mp_fail_truncated(walk, err);
    }
    walk->pos += head->head_bytes + (size_t)head->size;
    return PIP_OK;
}

/* Checks an array or map header and opens it on the stack. */
static int
mp_step_container(mp_walk *walk, const mp_head *head, pip_error *err)
{
    bool is_map = head->kind == MP_MAP;
    uint64_t max_len =
        is_map ? walk->lim->max_map_len : walk->lim->max_array_len;
    uint64_t objects = is_map ? head->size * 2 : head->size;
    size_t left = walk->len - walk->pos - head->head_bytes;

    if (walk->depth + 1 > walk->max_depth) {
        return mp_fail_limit(err, "nesting depth", walk->depth + 1ULL,
                             "max_depth", walk->max_depth);
    }
    if (head->size > max_len) {
        return mp_fail_limit(
            err, is_map ? "map length" : "array length", head->size,
            is_map ? "max_map_len" : "max_array_len", max_len);
    }
    /* Each element takes at least one byte, so a count above the bytes
     * left means the data is truncated. */
    if (objects > left) {
        return mp_fail_truncated(walk, err);
    }

    walk->pos += head->head_bytes;
    if (objects > 0) {
        walk->depth++;
        walk->pending[walk->depth] = objects;
    }
    return PIP_OK;
}

/* Reads the next object's header and steps over or into it. */
static int
mp_step(mp_walk *walk, pip_error *err)
{
    mp_head head;
    mp_status status;

    if (walk->pos >= walk->len) {
        return mp_fail_truncated(walk, err);
    }
    status =
        mp_read_head(walk->start + walk->pos, walk->len - walk->pos, &head);
    if (status == MP_BAD_TAG) {
        pip_error_set(err, PIP_E_BAD_REQUEST, "MALFORMED_MESSAGE",
                      "Invalid msgpack type byte 0x%02x at byte %zu.",
                      walk->start[walk->pos], walk->pos);
        pip_error_detail(err, "offset", json_integer((json_int_t)walk->pos));
        return PIP_E_BAD_REQUEST;
    }
    if (status == MP_TRUNCATED) {
        return mp_fail_truncated(walk, err);
    }

    walk->pending[walk->depth]--;
    if (head.kind == MP_ARRAY || head.kind == MP_MAP) {
        return mp_step_container(walk, &head, err);
    }
    return mp_step_bytes(walk, &head, err);
}

int
pip_mp_check(const void *buf, size_t len, const pip_limits *lim,
             size_t *consumed, pip_error *err)
{
    pip_limits defaults;
    mp_walk walk = {.start = buf, .len = len, .lim = lim};
    int rv;

    if (lim == NULL) {
        pip_limits_default(&defaults);
        walk.lim = &defaults;
    }
    if (len > walk.lim->max_msg_bytes) {
        return mp_fail_limit(err, "message size", len, "max_msg_bytes",
                             walk.lim->max_msg_bytes);
    }
    walk.max_depth = walk.lim->max_depth < PROTO_DEPTH_CAP
                         ? walk.lim->max_depth
                         : PROTO_DEPTH_CAP;

    walk.pending[0] = 1;
    while (walk.pending[0] > 0 || walk.depth > 0) {
        if (walk.pending[walk.depth] == 0) {
            walk.depth--;
            continue;
        }
        rv = mp_step(&walk, err);
        if (rv != PIP_OK) {
            return rv;
        }
    }

    if (consumed != NULL) {
        *consumed = walk.pos;
    }
    return PIP_OK;
}
