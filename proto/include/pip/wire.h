/*
 * The wire envelope: requests, responses and events in msgpack, the
 * decoder limits, and the msgpack <-> JSON bridge.  Pure functions with no
 * sockets, so they are easy to test and fuzz.  proto/PROTOCOL.md is the
 * full description of the format.
 *
 *   request   [0, msgid, "service.command", [args]]
 *             [0, msgid, "service.command", [args, meta]]
 *   response  [1, msgid, error-or-nil, result-or-nil]
 *   event     "topic" 0x00 [2, "topic", [payload]]   (pub/sub only)
 *
 * One req/rep message may carry several requests back to back (a batch);
 * its reply carries the matching responses in the same order.
 */
#ifndef PIP_WIRE_H
#define PIP_WIRE_H

#include <msgpack.h>
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pip/error.h"

#ifdef __cplusplus
extern "C" {
#endif

#define PIP_MSG_REQUEST 0
#define PIP_MSG_RESPONSE 1
#define PIP_MSG_NOTIFY 2

/*
 * The msgid of a response to a request whose msgid could not be read:
 * packed as nil, so the caller still gets the error on req/rep.
 */
#define PIP_MSGID_NONE UINT64_MAX

#define PIP_METHOD_MAX 128 /* bytes of "service.command", NUL included */

/* Decoder limits, enforced before any allocation sized by the input. */
typedef struct pip_limits {
    size_t max_msg_bytes;   /* whole message; default 1 MiB */
    uint32_t max_depth;     /* nesting of arrays and maps; default 32 */
    uint32_t max_str_bytes; /* one str, bin or ext payload; default 1 MiB */
    uint32_t max_array_len; /* elements of one array; default 65536 */
    uint32_t max_map_len;   /* pairs of one map; default 65536 */
    uint32_t max_batch;     /* requests in one message; default 64 */
} pip_limits;

void pip_limits_default(pip_limits *lim);

/*
 * Checks that buf starts with one well-formed msgpack object within the
 * limits, without allocating.  On success sets *consumed to its size.
 * Errors: PIP_E_BAD_REQUEST with code MALFORMED_MESSAGE (truncated or
 * invalid bytes) or LIMIT_EXCEEDED (details name the limit).
 */
int pip_mp_check(const void *buf, size_t len, const pip_limits *lim,
                 size_t *consumed, pip_error *err);

/*
 * Converts a decoded msgpack object to JSON.  Map keys must be strings;
 * bin becomes a base64 string; the timestamp extension (-1) becomes a
 * canonical date-time string; floats stay reals, integers stay integers.
 * Returns PIP_OK and a new reference in *out, or PIP_E_BAD_REQUEST.
 */
int pip_mp_to_json(const msgpack_object *obj, json_t **out, pip_error *err);

/* Packs a JSON value as msgpack.  Returns 0, or -1 when out of memory. */
int pip_json_pack(msgpack_packer *pk, const json_t *value);

/* Decodes one msgpack object from bytes into JSON, checking the limits. */
int pip_mp_decode_json(const void *buf, size_t len, const pip_limits *lim,
                       json_t **out, size_t *consumed, pip_error *err);

/* Call metadata carried next to the arguments. */
typedef struct pip_meta {
    char correlation_id[PIP_CORRELATION_ID_MAX]; /* empty when absent */
    uint32_t timeout_ms;                         /* 0 when absent */
} pip_meta;

/* A decoded request.  Embed it; pip_request_fini() releases args. */
typedef struct pip_request {
    uint64_t msgid;
    char method[PIP_METHOD_MAX]; /* "service.command" */
    const char *service;         /* points into names, NUL-terminated */
    const char *command;         /* points into names, NUL-terminated */
    char names[PIP_METHOD_MAX];  /* "service" NUL "command" NUL */
    json_t *args;                /* owned JSON object, never NULL */
    pip_meta meta;
} pip_request;

void pip_request_init(pip_request *req);
void pip_request_fini(pip_request *req);

/*
 * Decodes the request that starts at buf and sets *consumed to its size.
 * On error req->msgid is set when it could be read (*msgid_known), so the
 * caller can still reply with an error response.  Otherwise req->msgid
 * is PIP_MSGID_NONE.  *consumed is 0 when the bytes are not one
 * well-formed object within the limits, and then a batch cannot go on.
 * req must be initialized, and an older request in it is released.
 * Errors: PIP_E_BAD_REQUEST (MALFORMED_MESSAGE, LIMIT_EXCEEDED,
 * INVALID_ENVELOPE, INVALID_METHOD, INVALID_DATA).
 */
int pip_request_decode(const void *buf, size_t len, const pip_limits *lim,
                       pip_request *req, size_t *consumed, bool *msgid_known,
                       pip_error *err);

/* Appends one request to pk.  args may be NULL (sent as an empty map). */
int pip_request_pack(msgpack_packer *pk, uint64_t msgid, const char *method,
                     const json_t *args, const pip_meta *meta);

/* A decoded response. */
typedef struct pip_response {
    uint64_t msgid;
    bool failed;      /* true: error is set, result is NULL */
    json_t *result;   /* owned, or NULL for a nil result */
    pip_error error;
} pip_response;

void pip_response_init(pip_response *resp);
void pip_response_fini(pip_response *resp);

int pip_response_decode(const void *buf, size_t len, const pip_limits *lim,
                        pip_response *resp, size_t *consumed, pip_error *err);

/* Appends one response; err NULL or PIP_OK means success with result. */
int pip_response_pack(msgpack_packer *pk, uint64_t msgid,
                      const json_t *result, const pip_error *err);

/* Packs the error map of a response (category, code, message, ...). */
int pip_error_pack(msgpack_packer *pk, const pip_error *err);

/*
 * Builds an event message: the topic bytes, one 0x00 byte, then the
 * notification [2, topic, [payload]].  Subscribers filter on the topic
 * prefix.  The caller frees *buf with free().
 */
int pip_event_encode(const char *topic, const json_t *payload, void **buf,
                     size_t *len);
/* Decodes an event message; *topic is a new malloc'd string. */
int pip_event_decode(const void *buf, size_t len, const pip_limits *lim,
                     char **topic, json_t **payload, pip_error *err);

#ifdef __cplusplus
}
#endif
#endif
