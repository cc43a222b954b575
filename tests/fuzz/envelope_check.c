/*
 * Invariants of the envelope decoders: pip_request_decode() over a batch as
 * a node runs it, pip_response_decode() over a batch as a client would read
 * one, pip_event_decode(), and pip_open() on sealed frames.
 */
#include "fuzz_checks.h"

#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "pip/seal.h"

/* Codes of a request or response that is not one well-formed object
 * within the limits, after which a batch cannot go on. */
static const char *const envelope_framing_codes[] = {
    "MALFORMED_MESSAGE", "LIMIT_EXCEEDED", "OUT_OF_MEMORY", NULL};
static const char *const envelope_request_codes[] = {
    "INVALID_ENVELOPE", "INVALID_METHOD", "INVALID_DATA", "OUT_OF_MEMORY",
    NULL};
static const char *const envelope_response_codes[] = {
    "INVALID_RESPONSE", "INVALID_DATA", "OUT_OF_MEMORY", NULL};
static const char *const envelope_event_codes[] = {
    "INVALID_ENVELOPE", "INVALID_DATA",  "MALFORMED_MESSAGE",
    "LIMIT_EXCEEDED",   "OUT_OF_MEMORY", NULL};

static bool
envelope_is_name(const char *name)
{
    if (name[0] == '\0') {
        return false;
    }
    for (const char *c = name; *c != '\0'; c++) {
        if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') ||
              *c == '_')) {
            return false;
        }
    }
    return true;
}

/* True when text is printable ASCII without spaces, as correlation ids
 * and topics must be. */
static bool
envelope_is_visible(const char *text)
{
    for (const char *c = text; *c != '\0'; c++) {
        if ((unsigned char)*c <= 0x20 || (unsigned char)*c >= 0x7f) {
            return false;
        }
    }
    return true;
}

/* The object that a decoder consumed is exactly one well-formed object. */
static void
envelope_check_consumed(const uint8_t *buf, size_t consumed,
                        const pip_limits *lim)
{
    pip_error err;
    size_t checked = 0;

    pip_error_init(&err);
    FUZZ_CHECK(pip_mp_check(buf, consumed, lim, &checked, &err) == PIP_OK);
    FUZZ_CHECK(checked == consumed);
    pip_error_fini(&err);
}

static void
envelope_check_request_fields(const pip_request *req)
{
    size_t service_len = strlen(req->service);

    FUZZ_CHECK(req->msgid != PIP_MSGID_NONE);
    FUZZ_CHECK(strlen(req->method) < PIP_METHOD_MAX);
    FUZZ_CHECK(envelope_is_name(req->service));
    FUZZ_CHECK(envelope_is_name(req->command));
    FUZZ_CHECK(strncmp(req->method, req->service, service_len) == 0);
    FUZZ_CHECK(req->method[service_len] == '.');
    FUZZ_CHECK(strcmp(req->method + service_len + 1, req->command) == 0);
    FUZZ_CHECK(json_is_object(req->args));
    FUZZ_CHECK(envelope_is_visible(req->meta.correlation_id));
}

/* Packs req into sbuf, which the caller destroys. */
static void
envelope_pack_request(msgpack_sbuffer *sbuf, const pip_request *req)
{
    msgpack_packer pk;

    msgpack_sbuffer_init(sbuf);
    msgpack_packer_init(&pk, sbuf, msgpack_sbuffer_write);
    FUZZ_CHECK(pip_request_pack(&pk, req->msgid, req->method, req->args,
                                &req->meta) == PIP_OK);
}

/* A decoded request packs again and decodes to the same request, and the
 * second packing gives the same bytes as the first. */
static void
envelope_check_request_repack(const pip_request *req)
{
    msgpack_sbuffer first;
    msgpack_sbuffer second;
    pip_request again;
    pip_limits lim;
    pip_error err;
    size_t consumed = 0;
    bool msgid_known = false;

    fuzz_limits_relaxed(&lim);
    pip_request_init(&again);
    pip_error_init(&err);
    envelope_pack_request(&first, req);

    FUZZ_CHECK(pip_request_decode(first.data, first.size, &lim, &again,
                                  &consumed, &msgid_known, &err) == PIP_OK);
    FUZZ_CHECK(consumed == first.size);
    FUZZ_CHECK(msgid_known);
    FUZZ_CHECK(again.msgid == req->msgid);
    FUZZ_CHECK(strcmp(again.method, req->method) == 0);
    FUZZ_CHECK(json_equal(again.args, req->args));
    FUZZ_CHECK(strcmp(again.meta.correlation_id, req->meta.correlation_id) ==
               0);
    FUZZ_CHECK(again.meta.timeout_ms == req->meta.timeout_ms);

    envelope_pack_request(&second, &again);
    FUZZ_CHECK(fuzz_bytes_same(&first, &second));

    msgpack_sbuffer_destroy(&first);
    msgpack_sbuffer_destroy(&second);
    pip_request_fini(&again);
    pip_error_fini(&err);
}

static void
envelope_check_request_failure(int rv, const pip_request *req,
                               bool msgid_known, size_t consumed,
                               const pip_error *err)
{
    fuzz_check_error(rv, err);
    FUZZ_CHECK(req->args == NULL);
    FUZZ_CHECK(msgid_known == (req->msgid != PIP_MSGID_NONE));
    FUZZ_CHECK(envelope_is_visible(err->correlation_id));
    if (consumed == 0) {
        FUZZ_CHECK(fuzz_code_in(err->code, envelope_framing_codes));
    } else {
        FUZZ_CHECK(fuzz_code_in(err->code, envelope_request_codes));
    }
}

/* Decodes the request at buf as a node does and sets *consumed. */
static void
envelope_check_request(const uint8_t *buf, size_t len, const pip_limits *lim,
                       size_t *consumed)
{
    pip_request req;
    pip_error err;
    bool msgid_known = false;
    int rv;

    pip_request_init(&req);
    pip_error_init(&err);
    *consumed = SIZE_MAX;

    rv = pip_request_decode(buf, len, lim, &req, consumed, &msgid_known, &err);
    FUZZ_CHECK(*consumed <= len);
    if (*consumed > 0) {
        envelope_check_consumed(buf, *consumed, lim);
    }
    if (rv == PIP_OK) {
        FUZZ_CHECK(*consumed > 0);
        FUZZ_CHECK(msgid_known);
        FUZZ_CHECK(err.category == PIP_OK);
        envelope_check_request_fields(&req);
        envelope_check_request_repack(&req);
    } else {
        envelope_check_request_failure(rv, &req, msgid_known, *consumed, &err);
    }

    pip_request_fini(&req);
    pip_error_fini(&err);
}

/* Runs the requests of one message in the order and up to the count that
 * a node's server runs them. */
static void
envelope_check_request_batch(const uint8_t *data, size_t size,
                             const pip_limits *lim)
{
    size_t offset = 0;
    uint32_t count = 0;
    size_t consumed;

    do {
        if (count == lim->max_batch) {
            break;
        }
        envelope_check_request(data + offset, size - offset, lim, &consumed);
        count++;
        if (consumed == 0) {
            break;
        }
        offset += consumed;
    } while (offset < size);
    FUZZ_CHECK(offset <= size);
}

static void
envelope_pack_response(msgpack_sbuffer *sbuf, const pip_response *resp)
{
    msgpack_packer pk;

    msgpack_sbuffer_init(sbuf);
    msgpack_packer_init(&pk, sbuf, msgpack_sbuffer_write);
    FUZZ_CHECK(pip_response_pack(&pk, resp->msgid, resp->result,
                                 resp->failed ? &resp->error : NULL) ==
               PIP_OK);
}

static void
envelope_check_same_error(const pip_error *a, const pip_error *b)
{
    FUZZ_CHECK(a->category == b->category);
    FUZZ_CHECK(strcmp(a->code, b->code) == 0);
    FUZZ_CHECK(strcmp(a->message, b->message) == 0);
    FUZZ_CHECK(strcmp(a->correlation_id, b->correlation_id) == 0);
    FUZZ_CHECK(fuzz_json_same(a->details, b->details));
}

/* A decoded response packs again and decodes to the same response. */
static void
envelope_check_response_repack(const pip_response *resp)
{
    msgpack_sbuffer first;
    msgpack_sbuffer second;
    pip_response again;
    pip_limits lim;
    pip_error err;
    size_t consumed = 0;

    fuzz_limits_relaxed(&lim);
    pip_response_init(&again);
    pip_error_init(&err);
    envelope_pack_response(&first, resp);

    FUZZ_CHECK(pip_response_decode(first.data, first.size, &lim, &again,
                                   &consumed, &err) == PIP_OK);
    FUZZ_CHECK(consumed == first.size);
    FUZZ_CHECK(again.msgid == resp->msgid);
    FUZZ_CHECK(again.failed == resp->failed);
    FUZZ_CHECK(fuzz_json_same(again.result, resp->result));
    envelope_check_same_error(&again.error, &resp->error);

    envelope_pack_response(&second, &again);
    FUZZ_CHECK(fuzz_bytes_same(&first, &second));

    msgpack_sbuffer_destroy(&first);
    msgpack_sbuffer_destroy(&second);
    pip_response_fini(&again);
    pip_error_fini(&err);
}

static void
envelope_check_response(const uint8_t *buf, size_t len, const pip_limits *lim,
                        size_t *consumed)
{
    pip_response resp;
    pip_error err;
    int rv;

    pip_response_init(&resp);
    pip_error_init(&err);
    *consumed = SIZE_MAX;

    rv = pip_response_decode(buf, len, lim, &resp, consumed, &err);
    FUZZ_CHECK(*consumed <= len);
    if (rv == PIP_OK) {
        FUZZ_CHECK(*consumed > 0);
        envelope_check_consumed(buf, *consumed, lim);
        /* A failed response has an error whose category is never OK, and
         * no result. */
        FUZZ_CHECK(resp.failed == (resp.error.category != PIP_OK));
        FUZZ_CHECK(!resp.failed || resp.result == NULL);
        envelope_check_response_repack(&resp);
    } else {
        fuzz_check_error(rv, &err);
        FUZZ_CHECK(resp.result == NULL && !resp.failed);
        FUZZ_CHECK(fuzz_code_in(err.code, *consumed == 0
                                              ? envelope_framing_codes
                                              : envelope_response_codes));
    }

    pip_response_fini(&resp);
    pip_error_fini(&err);
}

/* Reads the message as a batch of responses, as a client reads a reply. */
static void
envelope_check_response_batch(const uint8_t *data, size_t size,
                              const pip_limits *lim)
{
    size_t offset = 0;
    uint32_t count = 0;
    size_t consumed;

    do {
        envelope_check_response(data + offset, size - offset, lim, &consumed);
        count++;
        offset += consumed;
    } while (consumed > 0 && offset < size && count <= lim->max_batch);
    FUZZ_CHECK(offset <= size);
}

/* A decoded event encodes again and decodes to the same topic and payload,
 * and the second encoding gives the same bytes as the first. */
static void
envelope_check_event_repack(const char *topic, const json_t *payload)
{
    void *first = NULL;
    void *second = NULL;
    size_t first_len = 0;
    size_t second_len = 0;
    char *topic_again = NULL;
    json_t *payload_again = NULL;
    pip_limits lim;
    pip_error err;

    fuzz_limits_relaxed(&lim);
    pip_error_init(&err);
    FUZZ_CHECK(pip_event_encode(topic, payload, &first, &first_len) == PIP_OK);
    FUZZ_CHECK(pip_event_decode(first, first_len, &lim, &topic_again,
                                &payload_again, &err) == PIP_OK);
    FUZZ_CHECK(strcmp(topic_again, topic) == 0);
    FUZZ_CHECK(json_equal(payload_again, payload));

    FUZZ_CHECK(pip_event_encode(topic_again, payload_again, &second,
                                &second_len) == PIP_OK);
    FUZZ_CHECK(first_len == second_len);
    FUZZ_CHECK(memcmp(first, second, first_len) == 0);

    free(first);
    free(second);
    free(topic_again);
    json_decref(payload_again);
    pip_error_fini(&err);
}

static void
envelope_check_event(const uint8_t *data, size_t size, const pip_limits *lim)
{
    char *topic = (char *)"not set";
    json_t *payload = json_true();
    pip_error err;
    int rv;

    pip_error_init(&err);
    rv = pip_event_decode(data, size, lim, &topic, &payload, &err);
    if (rv == PIP_OK) {
        FUZZ_CHECK(topic != NULL && payload != NULL);
        FUZZ_CHECK(strlen(topic) > 0 && strlen(topic) < PIP_METHOD_MAX);
        FUZZ_CHECK(strlen(topic) < size && data[strlen(topic)] == 0);
        FUZZ_CHECK(memcmp(data, topic, strlen(topic)) == 0);
        FUZZ_CHECK(envelope_is_visible(topic));
        envelope_check_event_repack(topic, payload);
    } else {
        fuzz_check_error(rv, &err);
        FUZZ_CHECK(topic == NULL && payload == NULL);
        FUZZ_CHECK(fuzz_code_in(err.code, envelope_event_codes));
    }

    free(topic);
    json_decref(payload);
    pip_error_fini(&err);
}

static const char *const envelope_seal_codes[] = {
    "NOT_SEALED", "AUTH_FAILED", "REPLAYED", "UNTRUSTED_SENDER", NULL};

/* Opens data as each kind of sealed frame with a fixed network key: no
 * input may crash the parser or open without the key. */
static void
envelope_check_sealed(const uint8_t *data, size_t size)
{
    static pip_keyring *kr;
    uint8_t *plain = malloc(size + 1);
    pip_error err;

    pip_error_init(&err);
    if (kr == NULL) {
        FUZZ_CHECK(pip_keyring_new(&kr, &err) == PIP_OK);
        FUZZ_CHECK(pip_keyring_parse_network_key(
                       kr,
                       "pip-network-key "
                       "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
                       "the fuzz key", &err) == PIP_OK);
    }
    FUZZ_CHECK(plain != NULL);
    for (int kind = PIP_SEAL_REQUEST; kind <= PIP_SEAL_EVENT; kind++) {
        size_t plain_len = 0;
        int rv = pip_open(kr, (pip_seal_kind)kind, data, size > 8 ? 8 : size,
                          data, size, plain, &plain_len, NULL, NULL, &err);

        /* Forging a tag is out of reach, so every input fails cleanly. */
        FUZZ_CHECK(rv == PIP_E_UNAUTHORIZED);
        FUZZ_CHECK(fuzz_code_in(err.code, envelope_seal_codes));
        pip_error_fini(&err);
    }
    free(plain);
}

void
fuzz_check_envelope(const uint8_t *data, size_t size)
{
    pip_limits limits[2];

    pip_limits_default(&limits[0]);
    fuzz_limits_tight(&limits[1]);
    for (size_t i = 0; i < 2; i++) {
        envelope_check_request_batch(data, size, &limits[i]);
        envelope_check_response_batch(data, size, &limits[i]);
        envelope_check_event(data, size, &limits[i]);
    }
    envelope_check_sealed(data, size);
}
