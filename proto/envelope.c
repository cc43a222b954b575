/*
 * The wire envelope: msgpack-rpc requests, responses and pub/sub events.
 * proto/PROTOCOL.md describes the format, and this file enforces it.
 */
#include "pip/wire.h"

#include "proto.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#define ENV_REQUEST_SIZE 4 /* [type, msgid, method, params] */

static int
env_fail(pip_error *err, const char *code, const char *message)
{
    return pip_error_set(err, PIP_E_BAD_REQUEST, code, "%s", message);
}

static int
env_fail_memory(pip_error *err)
{
    return pip_error_set(err, PIP_E_INTERNAL, "OUT_OF_MEMORY",
                         "Out of memory while building a message.");
}

/* Reads a msgpack unsigned integer of any width at *pos. */
static bool
env_read_uint(const uint8_t *p, size_t len, size_t *pos, uint64_t *value)
{
    size_t width;
    uint8_t tag;

    if (*pos >= len) {
        return false;
    }
    tag = p[*pos];
    if (tag <= 0x7f) {
        *value = tag;
        (*pos)++;
        return true;
    }
    if (tag < 0xcc || tag > 0xcf) {
        return false;
    }
    width = (size_t)1 << (tag - 0xcc);
    if (len - *pos - 1 < width) {
        return false;
    }
    *value = 0;
    for (size_t i = 1; i <= width; i++) {
        *value = (*value << 8) | p[*pos + i];
    }
    *pos += 1 + width;
    return true;
}

/*
 * Reads the msgid from the first bytes of a request, for the error
 * response to a request whose remaining bytes fail the checks.
 */
static bool
env_peek_msgid(const void *buf, size_t len, uint64_t *msgid)
{
    const uint8_t *p = buf;
    size_t pos;
    uint64_t type;

    if (len >= 1 && p[0] == (0x90 | ENV_REQUEST_SIZE)) {
        pos = 1;
    } else if (len >= 3 && p[0] == 0xdc && p[1] == 0 &&
               p[2] == ENV_REQUEST_SIZE) {
        pos = 3;
    } else {
        return false;
    }
    if (!env_read_uint(p, len, &pos, &type) || type != PIP_MSG_REQUEST) {
        return false;
    }
    return env_read_uint(p, len, &pos, msgid) && *msgid != PIP_MSGID_NONE;
}

void
pip_request_init(pip_request *req)
{
    /* Field by field, as pip_error_init(), for the same reason. */
    req->msgid = 0;
    req->method[0] = '\0';
    req->names[0] = '\0';
    req->service = req->names;
    req->command = req->names;
    req->args = NULL;
    req->meta.correlation_id[0] = '\0';
    req->meta.timeout_ms = 0;
}

void
pip_request_fini(pip_request *req)
{
    json_decref(req->args);
    pip_request_init(req);
}

/* Reads the type and the msgid of [0, msgid, method, params]. */
static int
env_parse_head(const msgpack_object *obj, pip_request *req, bool *msgid_known,
               pip_error *err)
{
    const msgpack_object *items;

    if (obj->type != MSGPACK_OBJECT_ARRAY ||
        obj->via.array.size != ENV_REQUEST_SIZE) {
        return env_fail(err, "INVALID_ENVELOPE",
                        "A request must be an array of 4 elements: "
                        "[0, msgid, method, params].");
    }
    items = obj->via.array.ptr;
    if (items[0].type != MSGPACK_OBJECT_POSITIVE_INTEGER ||
        items[0].via.u64 != PIP_MSG_REQUEST) {
        return env_fail(err, "INVALID_ENVELOPE",
                        "The first element of a request must be 0.");
    }
    if (items[1].type != MSGPACK_OBJECT_POSITIVE_INTEGER ||
        items[1].via.u64 == PIP_MSGID_NONE) {
        return env_fail(err, "INVALID_ENVELOPE",
                        "The msgid must be an unsigned integer below "
                        "2^64-1.");
    }
    req->msgid = items[1].via.u64;
    *msgid_known = true;
    return PIP_OK;
}

/* Printable ASCII other than space. */
static bool
env_is_visible_ascii(char c)
{
    unsigned char u = (unsigned char)c;

    return u > 0x20 && u < 0x7f;
}

static bool
env_is_name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
}

/* True when text[0..len) is one or more of [a-z0-9_]. */
static bool
env_is_name(const char *text, size_t len)
{
    if (len == 0) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        if (!env_is_name_char(text[i])) {
            return false;
        }
    }
    return true;
}

/* The method is echoed with anything but printable ASCII as '?', so the
 * message stays valid UTF-8 text. */
static int
env_fail_method_name(const char *text, size_t len, pip_error *err)
{
    char shown[PIP_METHOD_MAX];

    for (size_t i = 0; i < len; i++) {
        shown[i] = env_is_visible_ascii(text[i]) ? text[i] : '?';
    }
    shown[len] = '\0';
    return pip_error_set(err, PIP_E_BAD_REQUEST, "INVALID_METHOD",
                         "Invalid method '%s'. Expected \"service.command\" "
                         "with both names made of a-z, 0-9 and _.",
                         shown);
}

/* Splits "service.command" into method, service and command. */
static int
env_parse_method(const msgpack_object *obj, pip_request *req, pip_error *err)
{
    const char *text;
    size_t len;
    const char *dot;
    size_t service_len;

    if (obj->type != MSGPACK_OBJECT_STR) {
        return env_fail(err, "INVALID_METHOD",
                        "The method must be a string \"service.command\".");
    }
    /* msgpack-c may leave ptr NULL for an empty str. */
    len = obj->via.str.size;
    text = len > 0 ? obj->via.str.ptr : "";
    if (len >= PIP_METHOD_MAX) {
        return pip_error_set(err, PIP_E_BAD_REQUEST, "INVALID_METHOD",
                             "The method is %zu bytes long, but the "
                             "maximum is %d.",
                             len, PIP_METHOD_MAX - 1);
    }
    dot = memchr(text, '.', len);
    service_len = dot ? (size_t)(dot - text) : len;
    if (dot == NULL || !env_is_name(text, service_len) ||
        !env_is_name(dot + 1, len - service_len - 1)) {
        return env_fail_method_name(text, len, err);
    }

    memcpy(req->method, text, len);
    req->method[len] = '\0';
    memcpy(req->names, req->method, len + 1);
    req->names[service_len] = '\0';
    req->service = req->names;
    req->command = req->names + service_len + 1;
    return PIP_OK;
}

static int
env_parse_correlation_id(const msgpack_object *value, pip_meta *meta,
                         pip_error *err)
{
    const char *text = value->via.str.ptr;
    size_t len = value->via.str.size;

    if (value->type == MSGPACK_OBJECT_NIL) {
        return PIP_OK;
    }
    if (value->type != MSGPACK_OBJECT_STR || len >= PIP_CORRELATION_ID_MAX) {
        return env_fail(err, "INVALID_ENVELOPE",
                        "meta.correlation_id must be a string of at most "
                        "63 bytes.");
    }
    /* It goes into log lines, so only printable ASCII without spaces. */
    for (size_t i = 0; i < len; i++) {
        if (!env_is_visible_ascii(text[i])) {
            return env_fail(err, "INVALID_ENVELOPE",
                            "meta.correlation_id may only contain "
                            "printable ASCII characters without spaces.");
        }
    }
    /* An empty str may come with a NULL ptr, so it copies nothing. */
    if (len > 0) {
        memcpy(meta->correlation_id, text, len);
    }
    meta->correlation_id[len] = '\0';
    return PIP_OK;
}

static int
env_parse_timeout(const msgpack_object *value, pip_meta *meta, pip_error *err)
{
    if (value->type == MSGPACK_OBJECT_NIL) {
        return PIP_OK;
    }
    if (value->type != MSGPACK_OBJECT_POSITIVE_INTEGER ||
        value->via.u64 > UINT32_MAX) {
        return env_fail(err, "INVALID_ENVELOPE",
                        "meta.timeout_ms must be an unsigned integer below "
                        "2^32.");
    }
    meta->timeout_ms = (uint32_t)value->via.u64;
    return PIP_OK;
}

static bool
env_key_is(const msgpack_object *key, const char *name)
{
    size_t len = strlen(name);

    return key->type == MSGPACK_OBJECT_STR && key->via.str.size == len &&
           memcmp(key->via.str.ptr, name, len) == 0;
}

/* Parses the meta map.  Other keys are ignored, so later versions can add
 * keys. */
static int
env_parse_meta(const msgpack_object *obj, pip_meta *meta, pip_error *err)
{
    int rv = PIP_OK;

    if (obj->type == MSGPACK_OBJECT_NIL) {
        return PIP_OK;
    }
    if (obj->type != MSGPACK_OBJECT_MAP) {
        return env_fail(err, "INVALID_ENVELOPE",
                        "The meta element of params must be a map.");
    }
    for (uint32_t i = 0; i < obj->via.map.size && rv == PIP_OK; i++) {
        const msgpack_object_kv *kv = &obj->via.map.ptr[i];

        if (kv->key.type != MSGPACK_OBJECT_STR) {
            rv = env_fail(err, "INVALID_ENVELOPE",
                          "The keys of meta must be strings.");
        } else if (env_key_is(&kv->key, "correlation_id")) {
            rv = env_parse_correlation_id(&kv->val, meta, err);
        } else if (env_key_is(&kv->key, "timeout_ms")) {
            rv = env_parse_timeout(&kv->val, meta, err);
        }
    }
    return rv;
}

/* Parses the args element of params, a map or nil for no arguments. */
static int
env_parse_args(const msgpack_object *obj, pip_request *req, pip_error *err)
{
    if (obj == NULL || obj->type == MSGPACK_OBJECT_NIL) {
        req->args = json_object();
        return req->args ? PIP_OK : env_fail_memory(err);
    }
    if (obj->type != MSGPACK_OBJECT_MAP) {
        return env_fail(err, "INVALID_ENVELOPE",
                        "The arguments must be a map of named values.");
    }
    return pip_mp_to_json(obj, &req->args, err);
}

/* What env_parse_request() fills. */
typedef struct env_request_out {
    pip_request *req;
    bool *msgid_known;
} env_request_out;

static int
env_parse_request(const msgpack_object *obj, void *ctx, pip_error *err)
{
    env_request_out *out = ctx;
    pip_request *req = out->req;
    const msgpack_object *params;
    uint32_t count;
    int rv;

    rv = env_parse_head(obj, req, out->msgid_known, err);
    if (rv != PIP_OK) {
        return rv;
    }
    params = &obj->via.array.ptr[3];
    count = params->via.array.size;
    if (params->type != MSGPACK_OBJECT_ARRAY || count > 2) {
        return env_fail(err, "INVALID_ENVELOPE",
                        "The params must be an array [args] or [args, meta].");
    }
    /* The meta comes first, so later errors carry the correlation id. */
    if (count == 2) {
        rv = env_parse_meta(&params->via.array.ptr[1], &req->meta, err);
    }
    if (rv == PIP_OK) {
        rv = env_parse_method(&obj->via.array.ptr[2], req, err);
    }
    if (rv == PIP_OK) {
        rv = env_parse_args(count > 0 ? &params->via.array.ptr[0] : NULL, req,
                            err);
    }
    return rv;
}

int
pip_request_decode(const void *buf, size_t len, const pip_limits *lim,
                   pip_request *req, size_t *consumed, bool *msgid_known,
                   pip_error *err)
{
    env_request_out out = {req, msgid_known};
    int rv;

    /* req was initialized by the caller and may hold an older request. */
    pip_request_fini(req);
    *msgid_known = env_peek_msgid(buf, len, &req->msgid);

    /* A well-formed request that failed leaves the rest of a batch
     * readable, so *consumed is set even on error. */
    rv = proto_decode(buf, len, lim, env_parse_request, &out, consumed, err);
    if (!*msgid_known) {
        req->msgid = PIP_MSGID_NONE;
    }
    if (rv != PIP_OK && err != NULL) {
        memcpy(err->correlation_id, req->meta.correlation_id,
               sizeof(err->correlation_id));
        json_decref(req->args);
        req->args = NULL;
    }
    return rv;
}

static bool
env_meta_is_empty(const pip_meta *meta)
{
    return meta == NULL ||
           (meta->correlation_id[0] == '\0' && meta->timeout_ms == 0);
}

static int
env_pack_cstr(msgpack_packer *pk, const char *text)
{
    size_t len = strlen(text);

    if (msgpack_pack_str(pk, len) != 0) {
        return -1;
    }
    return msgpack_pack_str_body(pk, text, len);
}

/* The meta map with only the fields that are set. */
static int
env_pack_meta(msgpack_packer *pk, const pip_meta *meta)
{
    bool has_cid = meta->correlation_id[0] != '\0';
    bool has_timeout = meta->timeout_ms != 0;

    if (msgpack_pack_map(pk, (size_t)has_cid + (size_t)has_timeout) != 0) {
        return -1;
    }
    if (has_cid && (env_pack_cstr(pk, "correlation_id") != 0 ||
                    env_pack_cstr(pk, meta->correlation_id) != 0)) {
        return -1;
    }
    if (has_timeout && (env_pack_cstr(pk, "timeout_ms") != 0 ||
                        msgpack_pack_uint32(pk, meta->timeout_ms) != 0)) {
        return -1;
    }
    return 0;
}

static int
env_pack_request(msgpack_packer *pk, uint64_t msgid, const char *method,
                 const json_t *args, const pip_meta *meta)
{
    bool with_meta = !env_meta_is_empty(meta);

    if (msgpack_pack_array(pk, ENV_REQUEST_SIZE) != 0 ||
        msgpack_pack_uint8(pk, PIP_MSG_REQUEST) != 0 ||
        msgpack_pack_uint64(pk, msgid) != 0 ||
        env_pack_cstr(pk, method) != 0 ||
        msgpack_pack_array(pk, with_meta ? 2 : 1) != 0) {
        return -1;
    }
    if (args == NULL ? msgpack_pack_map(pk, 0) != 0
                     : pip_json_pack(pk, args) != 0) {
        return -1;
    }
    if (with_meta && env_pack_meta(pk, meta) != 0) {
        return -1;
    }
    return 0;
}

int
pip_request_pack(msgpack_packer *pk, uint64_t msgid, const char *method,
                 const json_t *args, const pip_meta *meta)
{
    if (env_pack_request(pk, msgid, method, args, meta) != 0) {
        return PIP_E_INTERNAL;
    }
    return PIP_OK;
}

void
pip_response_init(pip_response *resp)
{
    resp->msgid = 0;
    resp->failed = false;
    resp->result = NULL;
    pip_error_init(&resp->error);
}

void
pip_response_fini(pip_response *resp)
{
    json_decref(resp->result);
    pip_error_fini(&resp->error);
    pip_response_init(resp);
}

static int
env_pack_msgid(msgpack_packer *pk, uint64_t msgid)
{
    if (msgid == PIP_MSGID_NONE) {
        return msgpack_pack_nil(pk);
    }
    return msgpack_pack_uint64(pk, msgid);
}

static int
env_pack_cstr_or_nil(msgpack_packer *pk, const char *text)
{
    if (text[0] == '\0') {
        return msgpack_pack_nil(pk);
    }
    return env_pack_cstr(pk, text);
}

static int
env_pack_error_map(msgpack_packer *pk, const pip_error *err)
{
    if (msgpack_pack_map(pk, 5) != 0 || env_pack_cstr(pk, "category") != 0 ||
        env_pack_cstr(pk, pip_category_name(err->category)) != 0 ||
        env_pack_cstr(pk, "code") != 0 || env_pack_cstr(pk, err->code) != 0 ||
        env_pack_cstr(pk, "message") != 0 ||
        env_pack_cstr(pk, err->message) != 0 ||
        env_pack_cstr(pk, "details") != 0) {
        return -1;
    }
    if (err->details == NULL ? msgpack_pack_nil(pk) != 0
                             : pip_json_pack(pk, err->details) != 0) {
        return -1;
    }
    if (env_pack_cstr(pk, "correlation_id") != 0 ||
        env_pack_cstr_or_nil(pk, err->correlation_id) != 0) {
        return -1;
    }
    return 0;
}

int
pip_error_pack(msgpack_packer *pk, const pip_error *err)
{
    if (env_pack_error_map(pk, err) != 0) {
        return PIP_E_INTERNAL;
    }
    return PIP_OK;
}

int
pip_response_pack(msgpack_packer *pk, uint64_t msgid, const json_t *result,
                  const pip_error *err)
{
    bool failed = err != NULL && err->category != PIP_OK;

    if (msgpack_pack_array(pk, 4) != 0 ||
        msgpack_pack_uint8(pk, PIP_MSG_RESPONSE) != 0 ||
        env_pack_msgid(pk, msgid) != 0) {
        return PIP_E_INTERNAL;
    }
    if (failed) {
        if (env_pack_error_map(pk, err) != 0 || msgpack_pack_nil(pk) != 0) {
            return PIP_E_INTERNAL;
        }
        return PIP_OK;
    }
    if (msgpack_pack_nil(pk) != 0 ||
        (result == NULL ? msgpack_pack_nil(pk) != 0
                        : pip_json_pack(pk, result) != 0)) {
        return PIP_E_INTERNAL;
    }
    return PIP_OK;
}

/* Reads the type and the msgid of [1, msgid, error, result]. */
static int
env_parse_response_head(const msgpack_object *obj, pip_response *resp,
                        pip_error *err)
{
    const msgpack_object *items = obj->via.array.ptr;

    if (obj->type != MSGPACK_OBJECT_ARRAY || obj->via.array.size != 4) {
        return env_fail(err, "INVALID_RESPONSE",
                        "A response must be an array of 4 elements: "
                        "[1, msgid, error, result].");
    }
    if (items[0].type != MSGPACK_OBJECT_POSITIVE_INTEGER ||
        items[0].via.u64 != PIP_MSG_RESPONSE) {
        return env_fail(err, "INVALID_RESPONSE",
                        "The first element of a response must be 1.");
    }
    if (items[1].type == MSGPACK_OBJECT_NIL) {
        resp->msgid = PIP_MSGID_NONE;
    } else if (items[1].type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
        resp->msgid = items[1].via.u64;
    } else {
        return env_fail(err, "INVALID_RESPONSE",
                        "The msgid of a response must be an unsigned "
                        "integer or nil.");
    }
    return PIP_OK;
}

/* Parses the error map.  Missing fields get neutral values, as in
 * pip_error_from_json(). */
static int
env_parse_error_map(const msgpack_object *obj, pip_response *resp,
                    pip_error *err)
{
    json_t *map;
    int rv;

    if (obj->type != MSGPACK_OBJECT_MAP) {
        return env_fail(err, "INVALID_RESPONSE",
                        "The error of a response must be a map or nil.");
    }
    rv = pip_mp_to_json(obj, &map, err);
    if (rv != PIP_OK) {
        return rv;
    }
    pip_error_from_json(&resp->error, map);
    json_decref(map);
    resp->failed = true;
    return PIP_OK;
}

static int
env_parse_response(const msgpack_object *obj, void *ctx, pip_error *err)
{
    pip_response *resp = ctx;
    const msgpack_object *items;
    int rv;

    rv = env_parse_response_head(obj, resp, err);
    if (rv != PIP_OK) {
        return rv;
    }
    items = obj->via.array.ptr;
    if (items[2].type != MSGPACK_OBJECT_NIL) {
        return env_parse_error_map(&items[2], resp, err);
    }
    if (items[3].type == MSGPACK_OBJECT_NIL) {
        return PIP_OK;
    }
    return pip_mp_to_json(&items[3], &resp->result, err);
}

int
pip_response_decode(const void *buf, size_t len, const pip_limits *lim,
                    pip_response *resp, size_t *consumed, pip_error *err)
{
    int rv;

    pip_response_fini(resp);
    rv = proto_decode(buf, len, lim, env_parse_response, resp, consumed, err);
    if (rv != PIP_OK) {
        pip_response_fini(resp);
    }
    return rv;
}

/* True when topic is 1 to 127 bytes of printable ASCII without spaces. */
static bool
env_is_topic(const char *topic, size_t len)
{
    if (len == 0 || len >= PIP_METHOD_MAX) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        if (!env_is_visible_ascii(topic[i])) {
            return false;
        }
    }
    return true;
}

static int
env_pack_event(msgpack_sbuffer *sbuf, const char *topic, const json_t *payload)
{
    msgpack_packer pk;
    size_t len = strlen(topic);

    msgpack_packer_init(&pk, sbuf, msgpack_sbuffer_write);
    if (msgpack_sbuffer_write(sbuf, topic, len + 1) != 0 ||
        msgpack_pack_array(&pk, 3) != 0 ||
        msgpack_pack_uint8(&pk, PIP_MSG_NOTIFY) != 0 ||
        env_pack_cstr(&pk, topic) != 0 || msgpack_pack_array(&pk, 1) != 0) {
        return -1;
    }
    if (payload == NULL ? msgpack_pack_nil(&pk) != 0
                        : pip_json_pack(&pk, payload) != 0) {
        return -1;
    }
    return 0;
}

int
pip_event_encode(const char *topic, const json_t *payload, void **buf,
                 size_t *len)
{
    msgpack_sbuffer sbuf;

    *buf = NULL;
    *len = 0;
    if (topic == NULL || !env_is_topic(topic, strlen(topic))) {
        return PIP_E_BAD_REQUEST;
    }

    msgpack_sbuffer_init(&sbuf);
    if (env_pack_event(&sbuf, topic, payload) != 0) {
        msgpack_sbuffer_destroy(&sbuf);
        return PIP_E_INTERNAL;
    }
    /* The sbuffer grows with realloc(), so free() releases it. */
    *len = sbuf.size;
    *buf = msgpack_sbuffer_release(&sbuf);
    return PIP_OK;
}

/* What env_parse_event() reads and fills. */
typedef struct env_event_out {
    const char *topic;
    json_t **payload;
} env_event_out;

/* Parses [2, topic, [payload]] and checks the topic against the prefix. */
static int
env_parse_event(const msgpack_object *obj, void *ctx, pip_error *err)
{
    env_event_out *out = ctx;
    const msgpack_object *items = obj->via.array.ptr;
    const char *topic = out->topic;
    size_t topic_len = strlen(topic);

    if (obj->type != MSGPACK_OBJECT_ARRAY || obj->via.array.size != 3 ||
        items[0].type != MSGPACK_OBJECT_POSITIVE_INTEGER ||
        items[0].via.u64 != PIP_MSG_NOTIFY) {
        return env_fail(err, "INVALID_ENVELOPE",
                        "An event must be an array [2, topic, [payload]].");
    }
    if (items[1].type != MSGPACK_OBJECT_STR ||
        items[1].via.str.size != topic_len ||
        memcmp(items[1].via.str.ptr, topic, topic_len) != 0) {
        return env_fail(err, "INVALID_ENVELOPE",
                        "The topic inside an event differs from its prefix.");
    }
    if (items[2].type != MSGPACK_OBJECT_ARRAY ||
        items[2].via.array.size != 1) {
        return env_fail(err, "INVALID_ENVELOPE",
                        "The params of an event must be [payload].");
    }
    return pip_mp_to_json(&items[2].via.array.ptr[0], out->payload, err);
}

/* Splits "topic" 0x00 from the rest and copies the topic. */
static int
env_split_topic(const void *buf, size_t len, char **topic, size_t *skip,
                pip_error *err)
{
    size_t scan = len < PIP_METHOD_MAX ? len : PIP_METHOD_MAX;
    const char *end = len > 0 ? memchr(buf, '\0', scan) : NULL;
    size_t topic_len;

    if (end == NULL || !env_is_topic(buf, (size_t)(end - (const char *)buf))) {
        return env_fail(err, "INVALID_ENVELOPE",
                        "An event must start with a topic of 1 to 127 "
                        "printable characters and a 0x00 byte.");
    }
    topic_len = (size_t)(end - (const char *)buf);
    *topic = malloc(topic_len + 1);
    if (*topic == NULL) {
        return env_fail_memory(err);
    }
    memcpy(*topic, buf, topic_len + 1);
    *skip = topic_len + 1;
    return PIP_OK;
}

int
pip_event_decode(const void *buf, size_t len, const pip_limits *lim,
                 char **topic, json_t **payload, pip_error *err)
{
    env_event_out out = {NULL, payload};
    size_t skip = 0;
    size_t size = 0;
    int rv;

    *topic = NULL;
    *payload = NULL;
    rv = env_split_topic(buf, len, topic, &skip, err);
    if (rv != PIP_OK) {
        return rv;
    }

    out.topic = *topic;
    rv = proto_decode((const char *)buf + skip, len - skip, lim,
                      env_parse_event, &out, &size, err);
    if (rv == PIP_OK && skip + size != len) {
        rv = env_fail(err, "MALFORMED_MESSAGE",
                      "Extra bytes follow the event.");
    }
    if (rv != PIP_OK) {
        free(*topic);
        *topic = NULL;
        json_decref(*payload);
        *payload = NULL;
    }
    return rv;
}
