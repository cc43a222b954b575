/*
 * The msgpack <-> JSON bridge.  Handlers work on json_t and the wire
 * carries msgpack.  This file converts between the two and rejects the
 * msgpack values that JSON cannot represent.
 */
#include "pip/time.h"
#include "pip/wire.h"

#include "proto.h"

#include <inttypes.h>
#include <math.h>
#include <msgpack/timestamp.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The nesting limit of the recursive conversions.  Data that passed
 * pip_mp_check() stays within 32 levels, so only values built by hand
 * reach it. */
#define BRIDGE_DEPTH_MAX 64

bool
proto_utf8_valid(const char *bytes, size_t len)
{
    const unsigned char *s = (const unsigned char *)bytes;
    size_t i = 0;

    while (i < len) {
        unsigned char c = s[i];
        size_t extra;
        uint32_t code;

        if (c == 0) {
            return false;
        }
        if (c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0xC2 && c <= 0xDF) {
            extra = 1;
            code = c & 0x1F;
        } else if (c >= 0xE0 && c <= 0xEF) {
            extra = 2;
            code = c & 0x0F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            extra = 3;
            code = c & 0x07;
        } else {
            return false; /* a continuation byte, 0xC0, 0xC1 or 0xF5+ */
        }
        if (len - i <= extra) {
            return false;
        }
        for (size_t k = 1; k <= extra; k++) {
            if ((s[i + k] & 0xC0) != 0x80) {
                return false;
            }
            code = (code << 6) | (s[i + k] & 0x3F);
        }
        /* Overlong forms, UTF-16 surrogates and values past U+10FFFF. */
        if ((extra == 2 && code < 0x800) || (extra == 3 && code < 0x10000) ||
            (code >= 0xD800 && code <= 0xDFFF) || code > 0x10FFFF) {
            return false;
        }
        i += extra + 1;
    }
    return true;
}

static void bridge_path_printf(proto_path *path, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
bridge_path_printf(proto_path *path, const char *fmt, ...)
{
    size_t room = sizeof(path->text) - path->len;
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(path->text + path->len, room, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= room) {
        /* A cut index would read as a different one, so drop it whole. */
        path->text[path->len] = '\0';
        return;
    }
    path->len += (size_t)n;
}

size_t
proto_utf8_prefix(const char *text, size_t len, size_t max)
{
    if (len <= max) {
        return len;
    }
    while (max > 0 && ((unsigned char)text[max] & 0xC0) == 0x80) {
        max--;
    }
    return max;
}

void
proto_path_key(proto_path *path, const char *key, size_t key_len)
{
    /* Room for the dot and the NUL. */
    size_t used = path->len + 2;
    size_t room = used < sizeof(path->text) ? sizeof(path->text) - used : 0;
    size_t shown_len = proto_utf8_prefix(key, key_len, room);
    size_t dot_len = path->len > 0 ? 1 : 0;
    char *end = path->text + path->len;

    /* Copied by hand, because this runs for every map key that a request
     * or a stored record decodes.  vsnprintf here took a sixth of the
     * instructions of a counters write in a callgrind profile. */
    if (dot_len + shown_len >= sizeof(path->text) - path->len) {
        *end = '\0';
        return;
    }
    if (dot_len > 0) {
        *end++ = '.';
    }
    memcpy(end, key, shown_len);
    end[shown_len] = '\0';
    path->len += dot_len + shown_len;
}

void
proto_path_index(proto_path *path, size_t index)
{
    bridge_path_printf(path, "[%zu]", index);
}

void
proto_path_restore(proto_path *path, size_t len)
{
    path->len = len;
    path->text[len] = '\0';
}

/* Fails with INVALID_DATA.  The details name the path when there is one. */
static int bridge_fail(pip_error *err, const proto_path *path, const char *fmt,
                       ...) __attribute__((format(printf, 3, 4)));

static int
bridge_fail(pip_error *err, const proto_path *path, const char *fmt, ...)
{
    char problem[192];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(problem, sizeof(problem), fmt, ap);
    va_end(ap);

    if (path->len == 0) {
        return pip_error_set(err, PIP_E_BAD_REQUEST, "INVALID_DATA",
                             "Invalid msgpack value. %s", problem);
    }
    pip_error_set(err, PIP_E_BAD_REQUEST, "INVALID_DATA",
                  "Invalid value at '%s'. %s", path->text, problem);
    pip_error_detail(err, "argument", json_string(path->text));
    return PIP_E_BAD_REQUEST;
}

static int
bridge_fail_memory(pip_error *err)
{
    return pip_error_set(err, PIP_E_INTERNAL, "OUT_OF_MEMORY",
                         "Out of memory while converting msgpack to JSON.");
}

static int bridge_to_json(const msgpack_object *obj, proto_path *path,
                          int depth, json_t **out, pip_error *err);

static int
bridge_integer(const msgpack_object *obj, const proto_path *path, json_t **out,
               pip_error *err)
{
    if (obj->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
        *out = json_integer(obj->via.i64);
    } else if (obj->via.u64 > INT64_MAX) {
        return bridge_fail(err, path,
                           "The integer %" PRIu64 " is larger than the "
                           "largest signed 64-bit integer.",
                           obj->via.u64);
    } else {
        *out = json_integer((json_int_t)obj->via.u64);
    }
    return *out ? PIP_OK : bridge_fail_memory(err);
}

static int
bridge_float(const msgpack_object *obj, const proto_path *path, json_t **out,
             pip_error *err)
{
    if (!isfinite(obj->via.f64)) {
        return bridge_fail(err, path,
                           "NaN and infinite floats have no JSON form");
    }
    *out = json_real(obj->via.f64);
    return *out ? PIP_OK : bridge_fail_memory(err);
}

static int
bridge_str(const msgpack_object *obj, const proto_path *path, json_t **out,
           pip_error *err)
{
    const msgpack_object_str *str = &obj->via.str;

    if (!proto_utf8_valid(str->ptr, str->size)) {
        return bridge_fail(err, path,
                           "A str must be UTF-8 text without NUL bytes.");
    }
    /* msgpack-c may leave ptr NULL for an empty str. */
    *out = json_stringn_nocheck(str->size ? str->ptr : "", str->size);
    return *out ? PIP_OK : bridge_fail_memory(err);
}

/* bin becomes standard base64 with padding (RFC 4648 section 4). */
static int
bridge_bin(const msgpack_object *obj, json_t **out, pip_error *err)
{
    const msgpack_object_bin *bin = &obj->via.bin;
    size_t size =
        sodium_base64_ENCODED_LEN(bin->size, sodium_base64_VARIANT_ORIGINAL);
    char *text = malloc(size);

    if (text == NULL) {
        return bridge_fail_memory(err);
    }
    sodium_bin2base64(text, size, (const unsigned char *)bin->ptr, bin->size,
                      sodium_base64_VARIANT_ORIGINAL);
    *out = json_string_nocheck(text);
    free(text);
    return *out ? PIP_OK : bridge_fail_memory(err);
}

/* The timestamp extension (type -1) becomes a canonical date-time. */
static int
bridge_ext(const msgpack_object *obj, const proto_path *path, json_t **out,
           pip_error *err)
{
    /* Seconds of 0000-01-01 and of 10000-01-01, the canonical range. */
    const int64_t min_sec = -62167219200LL;
    const int64_t end_sec = 253402300800LL;
    msgpack_timestamp ts;
    char text[PIP_TIME_STRLEN];

    if (obj->via.ext.type != -1) {
        return bridge_fail(err, path,
                           "The msgpack extension type %d is not "
                           "supported. Only timestamps (-1) are.",
                           (int)obj->via.ext.type);
    }
    if (!msgpack_object_to_timestamp(obj, &ts)) {
        return bridge_fail(err, path,
                           "A timestamp extension must have 4, "
                           "8 or 12 bytes, not %" PRIu32 ".",
                           obj->via.ext.size);
    }
    if (ts.tv_nsec >= 1000000000 || ts.tv_sec < min_sec ||
        ts.tv_sec >= end_sec) {
        return bridge_fail(err, path,
                           "The timestamp is outside the years "
                           "0000-9999 or has more than 999999999 "
                           "nanoseconds.");
    }

    pip_time_format(ts.tv_sec * 1000 + ts.tv_nsec / 1000000, text);
    *out = json_string_nocheck(text);
    return *out ? PIP_OK : bridge_fail_memory(err);
}

static int
bridge_array(const msgpack_object *obj, proto_path *path, int depth,
             json_t **out, pip_error *err)
{
    const msgpack_object_array *array = &obj->via.array;
    size_t path_len = path->len;
    json_t *result = json_array();
    json_t *item;
    int rv;

    if (result == NULL) {
        return bridge_fail_memory(err);
    }
    for (uint32_t i = 0; i < array->size; i++) {
        proto_path_index(path, i);
        rv = bridge_to_json(&array->ptr[i], path, depth + 1, &item, err);
        proto_path_restore(path, path_len);
        if (rv != PIP_OK) {
            json_decref(result);
            return rv;
        }
        if (json_array_append_new(result, item) != 0) {
            json_decref(result);
            return bridge_fail_memory(err);
        }
    }
    *out = result;
    return PIP_OK;
}

/* Checks one map key, because JSON objects only have unique UTF-8 string
 * keys. */
static int
bridge_check_key(const msgpack_object *key, const json_t *result,
                 const proto_path *path, pip_error *err)
{
    const char *text;

    if (key->type != MSGPACK_OBJECT_STR) {
        return bridge_fail(err, path, "Map keys must be strings.");
    }
    if (!proto_utf8_valid(key->via.str.ptr, key->via.str.size)) {
        return bridge_fail(err, path,
                           "A map key must be UTF-8 text "
                           "without NUL bytes.");
    }
    text = key->via.str.size ? key->via.str.ptr : "";
    if (json_object_getn(result, text, key->via.str.size)) {
        return bridge_fail(err, path, "The map key '%.*s' appears twice.",
                           (int)proto_utf8_prefix(text, key->via.str.size, 64),
                           text);
    }
    return PIP_OK;
}

static int
bridge_map(const msgpack_object *obj, proto_path *path, int depth,
           json_t **out, pip_error *err)
{
    const msgpack_object_map *map = &obj->via.map;
    size_t path_len = path->len;
    json_t *result = json_object();
    json_t *value;
    int rv;

    if (result == NULL) {
        return bridge_fail_memory(err);
    }
    for (uint32_t i = 0; i < map->size; i++) {
        const msgpack_object_kv *kv = &map->ptr[i];
        const char *key;

        rv = bridge_check_key(&kv->key, result, path, err);
        if (rv != PIP_OK) {
            json_decref(result);
            return rv;
        }
        key = kv->key.via.str.size ? kv->key.via.str.ptr : "";
        proto_path_key(path, key, kv->key.via.str.size);
        rv = bridge_to_json(&kv->val, path, depth + 1, &value, err);
        proto_path_restore(path, path_len);
        if (rv != PIP_OK) {
            json_decref(result);
            return rv;
        }
        if (json_object_setn_new_nocheck(result, key, kv->key.via.str.size,
                                         value) != 0) {
            json_decref(result);
            return bridge_fail_memory(err);
        }
    }
    *out = result;
    return PIP_OK;
}

static int
bridge_to_json(const msgpack_object *obj, proto_path *path, int depth,
               json_t **out, pip_error *err)
{
    if (depth > BRIDGE_DEPTH_MAX) {
        return bridge_fail(err, path,
                           "The value is nested deeper than %d levels.",
                           BRIDGE_DEPTH_MAX);
    }

    switch (obj->type) {
    case MSGPACK_OBJECT_NIL:
        *out = json_null();
        return PIP_OK;
    case MSGPACK_OBJECT_BOOLEAN:
        *out = json_boolean(obj->via.boolean);
        return PIP_OK;
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        return bridge_integer(obj, path, out, err);
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64:
        return bridge_float(obj, path, out, err);
    case MSGPACK_OBJECT_STR:
        return bridge_str(obj, path, out, err);
    case MSGPACK_OBJECT_BIN:
        return bridge_bin(obj, out, err);
    case MSGPACK_OBJECT_EXT:
        return bridge_ext(obj, path, out, err);
    case MSGPACK_OBJECT_ARRAY:
        return bridge_array(obj, path, depth, out, err);
    case MSGPACK_OBJECT_MAP:
        return bridge_map(obj, path, depth, out, err);
    }
    return bridge_fail(err, path, "Unknown msgpack object type %d.",
                       (int)obj->type);
}

int
pip_mp_to_json(const msgpack_object *obj, json_t **out, pip_error *err)
{
    proto_path path = PROTO_PATH_INIT;

    *out = NULL;
    return bridge_to_json(obj, &path, 0, out, err);
}

static int bridge_pack(msgpack_packer *pk, const json_t *value, int depth);

static int
bridge_pack_string(msgpack_packer *pk, const json_t *value)
{
    size_t len = json_string_length(value);

    if (len > UINT32_MAX || msgpack_pack_str(pk, len) != 0) {
        return -1;
    }
    return msgpack_pack_str_body(pk, json_string_value(value), len);
}

static int
bridge_pack_array(msgpack_packer *pk, const json_t *value, int depth)
{
    size_t size = json_array_size(value);

    if (size > UINT32_MAX || msgpack_pack_array(pk, size) != 0) {
        return -1;
    }
    for (size_t i = 0; i < size; i++) {
        if (bridge_pack(pk, json_array_get(value, i), depth + 1) != 0) {
            return -1;
        }
    }
    return 0;
}

static int
bridge_pack_object(msgpack_packer *pk, const json_t *value, int depth)
{
    size_t size = json_object_size(value);
    void *iter = json_object_iter((json_t *)value);

    if (size > UINT32_MAX || msgpack_pack_map(pk, size) != 0) {
        return -1;
    }
    for (; iter != NULL; iter = json_object_iter_next((json_t *)value, iter)) {
        size_t key_len = json_object_iter_key_len(iter);

        if (msgpack_pack_str(pk, key_len) != 0 ||
            msgpack_pack_str_body(pk, json_object_iter_key(iter), key_len) !=
                0 ||
            bridge_pack(pk, json_object_iter_value(iter), depth + 1) != 0) {
            return -1;
        }
    }
    return 0;
}

static int
bridge_pack(msgpack_packer *pk, const json_t *value, int depth)
{
    /* Also stops a value that contains itself, which jansson allows. */
    if (value == NULL || depth > BRIDGE_DEPTH_MAX) {
        return -1;
    }

    switch (json_typeof(value)) {
    case JSON_OBJECT:
        return bridge_pack_object(pk, value, depth);
    case JSON_ARRAY:
        return bridge_pack_array(pk, value, depth);
    case JSON_STRING:
        return bridge_pack_string(pk, value);
    case JSON_INTEGER:
        return msgpack_pack_int64(pk, json_integer_value(value));
    case JSON_REAL:
        return msgpack_pack_double(pk, json_real_value(value));
    case JSON_TRUE:
        return msgpack_pack_true(pk);
    case JSON_FALSE:
        return msgpack_pack_false(pk);
    case JSON_NULL:
        return msgpack_pack_nil(pk);
    }
    return -1;
}

int
pip_json_pack(msgpack_packer *pk, const json_t *value)
{
    return bridge_pack(pk, value, 0);
}

/* Unpacks the object that pip_mp_check() found in buf[0..checked). */
static int
bridge_unpack(const void *buf, size_t checked, msgpack_zone *zone,
              msgpack_object *obj, pip_error *err)
{
    size_t offset = 0;
    msgpack_unpack_return ret;

    ret = msgpack_unpack(buf, checked, &offset, zone, obj);
    if (ret == MSGPACK_UNPACK_NOMEM_ERROR) {
        return pip_error_set(err, PIP_E_INTERNAL, "OUT_OF_MEMORY",
                             "Out of memory while unpacking msgpack.");
    }
    /* pip_mp_check() accepted these bytes, so anything else is a bug. */
    if (ret != MSGPACK_UNPACK_SUCCESS || offset != checked) {
        return pip_error_set(err, PIP_E_INTERNAL, "INTERNAL",
                             "The msgpack unpacker rejected data that "
                             "pip_mp_check() accepted (code %d).",
                             (int)ret);
    }
    return PIP_OK;
}

int
proto_decode(const void *buf, size_t len, const pip_limits *lim,
             proto_parse_fn parse, void *ctx, size_t *consumed, pip_error *err)
{
    msgpack_zone zone;
    msgpack_object obj;
    size_t checked;
    int rv;

    *consumed = 0;
    rv = pip_mp_check(buf, len, lim, &checked, err);
    if (rv != PIP_OK) {
        return rv;
    }
    if (!msgpack_zone_init(&zone, MSGPACK_ZONE_CHUNK_SIZE)) {
        return pip_error_set(err, PIP_E_INTERNAL, "OUT_OF_MEMORY",
                             "Out of memory while unpacking msgpack.");
    }

    rv = bridge_unpack(buf, checked, &zone, &obj, err);
    if (rv == PIP_OK) {
        *consumed = checked;
        rv = parse(&obj, ctx, err);
    }

    msgpack_zone_destroy(&zone);
    return rv;
}

static int
bridge_parse_json(const msgpack_object *obj, void *ctx, pip_error *err)
{
    return pip_mp_to_json(obj, ctx, err);
}

int
pip_mp_decode_json(const void *buf, size_t len, const pip_limits *lim,
                   json_t **out, size_t *consumed, pip_error *err)
{
    size_t size;
    int rv;

    *out = NULL;
    rv = proto_decode(buf, len, lim, bridge_parse_json, out, &size, err);
    if (rv == PIP_OK && consumed != NULL) {
        *consumed = size;
    }
    return rv;
}
