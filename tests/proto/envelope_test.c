/* Tests of the wire envelope: requests, responses, batches, events. */
#include "pack_fixture.h"

#include <stdint.h>

#include <stdlib.h>
#include <string.h>

static void
str(fixture *fx, const char *text)
{
    msgpack_pack_str(&fx->pk, strlen(text));
    msgpack_pack_str_body(&fx->pk, text, strlen(text));
}

/* Packs the start of a request, [0, msgid, method, ...]: params follow. */
static void
pack_request_head(fixture *fx, uint64_t msgid, const char *method)
{
    msgpack_pack_array(&fx->pk, 4);
    msgpack_pack_int(&fx->pk, 0);
    msgpack_pack_uint64(&fx->pk, msgid);
    str(fx, method);
}

static int
decode_request(fixture *fx, bool *msgid_known, size_t *consumed)
{
    pip_request_fini(&fx->req);
    return pip_request_decode(fx->sbuf.data, fx->sbuf.size, NULL, &fx->req,
                              consumed, msgid_known, &fx->err);
}

static void
test_request_round_trip(void **state)
{
    fixture *fx = *state;
    json_t *args = json_pack("{s:s, s:i}", "name", "calls", "count", 3);
    pip_meta meta = {.correlation_id = "trace-1", .timeout_ms = 2500};
    bool known = false;
    size_t consumed = 0;

    assert_int_equal(
        pip_request_pack(&fx->pk, 42, "counters.write_counter", args, &meta),
        PIP_OK);
    assert_int_equal(decode_request(fx, &known, &consumed), PIP_OK);
    assert_true(known);
    assert_int_equal(consumed, fx->sbuf.size);
    assert_int_equal(fx->req.msgid, 42);
    assert_string_equal(fx->req.method, "counters.write_counter");
    assert_string_equal(fx->req.service, "counters");
    assert_string_equal(fx->req.command, "write_counter");
    assert_true(json_equal(fx->req.args, args));
    assert_string_equal(fx->req.meta.correlation_id, "trace-1");
    assert_int_equal(fx->req.meta.timeout_ms, 2500);
    json_decref(args);
}

static void
test_request_without_meta(void **state)
{
    fixture *fx = *state;
    pip_meta empty = {.correlation_id = "", .timeout_ms = 0};
    bool known;
    size_t consumed;

    /* No meta packs params as [args], and NULL args as an empty map. */
    assert_int_equal(pip_request_pack(&fx->pk, 0, "a.b", NULL, &empty),
                     PIP_OK);
    assert_int_equal(fx->sbuf.size, 9);
    assert_memory_equal(fx->sbuf.data,
                        "\x94\x00\x00\xa3"
                        "a.b"
                        "\x91\x80",
                        9);
    assert_int_equal(decode_request(fx, &known, &consumed), PIP_OK);
    assert_int_equal(json_object_size(fx->req.args), 0);
    assert_string_equal(fx->req.meta.correlation_id, "");
    assert_int_equal(fx->req.meta.timeout_ms, 0);

    fx->sbuf.size = 0;
    assert_int_equal(pip_request_pack(&fx->pk, 1, "a.b", NULL, NULL), PIP_OK);
    assert_memory_equal(fx->sbuf.data,
                        "\x94\x00\x01\xa3"
                        "a.b"
                        "\x91\x80",
                        9);
}

static void
test_request_large_msgid(void **state)
{
    fixture *fx = *state;
    bool known;
    size_t consumed;

    assert_int_equal(
        pip_request_pack(&fx->pk, UINT64_MAX - 1, "x.y", NULL, NULL), PIP_OK);
    assert_int_equal(decode_request(fx, &known, &consumed), PIP_OK);
    assert_int_equal(fx->req.msgid, UINT64_MAX - 1);
}

static void
test_request_params_forms(void **state)
{
    fixture *fx = *state;
    bool known;
    size_t consumed;

    /* params [] */
    pack_request_head(fx, 5, "svc.cmd");
    msgpack_pack_array(&fx->pk, 0);
    assert_int_equal(decode_request(fx, &known, &consumed), PIP_OK);
    assert_true(json_is_object(fx->req.args));
    assert_int_equal(json_object_size(fx->req.args), 0);

    /* params [nil, nil], and meta keys of later versions are ignored */
    fx->sbuf.size = 0;
    pack_request_head(fx, 5, "svc.cmd");
    msgpack_pack_array(&fx->pk, 2);
    msgpack_pack_nil(&fx->pk);
    msgpack_pack_map(&fx->pk, 3);
    str(fx, "credentials");
    str(fx, "token");
    str(fx, "correlation_id");
    msgpack_pack_nil(&fx->pk);
    str(fx, "timeout_ms");
    msgpack_pack_nil(&fx->pk);
    assert_int_equal(decode_request(fx, &known, &consumed), PIP_OK);
    assert_int_equal(json_object_size(fx->req.args), 0);
    assert_string_equal(fx->req.meta.correlation_id, "");

    /* params [args, {"correlation_id": ""}]: an empty id is no id */
    fx->sbuf.size = 0;
    pack_request_head(fx, 5, "svc.cmd");
    msgpack_pack_array(&fx->pk, 2);
    msgpack_pack_map(&fx->pk, 0);
    msgpack_pack_map(&fx->pk, 1);
    str(fx, "correlation_id");
    str(fx, "");
    assert_int_equal(decode_request(fx, &known, &consumed), PIP_OK);
    assert_string_equal(fx->req.meta.correlation_id, "");

    /* params [args, nil] */
    fx->sbuf.size = 0;
    pack_request_head(fx, 5, "svc.cmd");
    msgpack_pack_array(&fx->pk, 2);
    msgpack_pack_map(&fx->pk, 1);
    str(fx, "k");
    msgpack_pack_int(&fx->pk, 1);
    msgpack_pack_nil(&fx->pk);
    assert_int_equal(decode_request(fx, &known, &consumed), PIP_OK);
    assert_int_equal(json_integer_value(json_object_get(fx->req.args, "k")),
                     1);
}

static void
test_batch_decodes_in_order(void **state)
{
    fixture *fx = *state;
    const char *methods[] = {"a.one", "b.two", "c.three"};
    size_t offset = 0;
    size_t consumed;
    bool known;

    for (int i = 0; i < 3; i++) {
        json_t *args = json_pack("{s:i}", "i", i);

        assert_int_equal(
            pip_request_pack(&fx->pk, 100 + i, methods[i], args, NULL),
            PIP_OK);
        json_decref(args);
    }
    for (int i = 0; i < 3; i++) {
        pip_request_fini(&fx->req);
        assert_int_equal(
            pip_request_decode(fx->sbuf.data + offset, fx->sbuf.size - offset,
                               NULL, &fx->req, &consumed, &known, &fx->err),
            PIP_OK);
        assert_int_equal(fx->req.msgid, 100 + i);
        assert_string_equal(fx->req.method, methods[i]);
        assert_int_equal(
            json_integer_value(json_object_get(fx->req.args, "i")), i);
        offset += consumed;
    }
    assert_int_equal(offset, fx->sbuf.size);
}

/* A response or event that must fail with code. */
typedef struct bad_message {
    const char *name;
    const char *bytes;
    size_t len;
    const char *code;
} bad_message;

#define BAD_MESSAGE(name, lit, code)                                          \
    {                                                                         \
        name, lit, sizeof(lit) - 1, code                                      \
    }

/* A request shape that must fail, with the code and whether the msgid
 * can still be read. */
typedef struct bad_request {
    const char *name;
    const char *bytes;
    size_t len;
    const char *code;
    bool msgid_known;
} bad_request;

#define BAD(name, lit, code, known)                                           \
    {                                                                         \
        name, lit, sizeof(lit) - 1, code, known                               \
    }

static const bad_request bad_requests[] = {
    BAD("not an array", "\x81\xa1k\x01", "INVALID_ENVELOPE", false),
    BAD("array of 3",
        "\x93\x00\x01\xa3"
        "a.b",
        "INVALID_ENVELOPE", false),
    BAD("array of 5",
        "\x95\x00\x01\xa3"
        "a.b\x90\xc0",
        "INVALID_ENVELOPE", false),
    BAD("type 1",
        "\x94\x01\x01\xa3"
        "a.b\x90",
        "INVALID_ENVELOPE", false),
    BAD("type 2",
        "\x94\x02\x01\xa3"
        "a.b\x90",
        "INVALID_ENVELOPE", false),
    BAD("type as a string",
        "\x94\xa1"
        "0\x01\xa3"
        "a.b\x90",
        "INVALID_ENVELOPE", false),
    BAD("negative msgid",
        "\x94\x00\xff\xa3"
        "a.b\x90",
        "INVALID_ENVELOPE", false),
    BAD("msgid as a string",
        "\x94\x00\xa1"
        "1\xa3"
        "a.b\x90",
        "INVALID_ENVELOPE", false),
    BAD("msgid 2^64-1",
        "\x94\x00\xcf\xff\xff\xff\xff\xff\xff\xff\xff\xa3"
        "a.b\x90",
        "INVALID_ENVELOPE", false),
    BAD("msgid as a float",
        "\x94\x00\xca\x3f\x80\x00\x00\xa3"
        "a.b\x90",
        "INVALID_ENVELOPE", false),
    BAD("method as an integer", "\x94\x00\x01\x07\x90", "INVALID_METHOD",
        true),
    BAD("method as bin",
        "\x94\x00\x01\xc4\x03"
        "a.b\x90",
        "INVALID_METHOD", true),
    BAD("method without a dot",
        "\x94\x00\x01\xa8"
        "counters\x90",
        "INVALID_METHOD", true),
    BAD("empty service",
        "\x94\x00\x01\xa2"
        ".x\x90",
        "INVALID_METHOD", true),
    BAD("empty command",
        "\x94\x00\x01\xa2"
        "x.\x90",
        "INVALID_METHOD", true),
    BAD("empty method", "\x94\x00\x01\xa0\x90", "INVALID_METHOD", true),
    BAD("upper case",
        "\x94\x00\x01\xa3"
        "A.b\x90",
        "INVALID_METHOD", true),
    BAD("two dots",
        "\x94\x00\x01\xa5"
        "a.b.c\x90",
        "INVALID_METHOD", true),
    BAD("dash",
        "\x94\x00\x01\xa5"
        "a-b.c\x90",
        "INVALID_METHOD", true),
    BAD("space",
        "\x94\x00\x01\xa4"
        "a. b\x90",
        "INVALID_METHOD", true),
    BAD("NUL byte",
        "\x94\x00\x01\xa4"
        "a.b\x00\x90",
        "INVALID_METHOD", true),
    BAD("params as a map",
        "\x94\x00\x01\xa3"
        "a.b\x80",
        "INVALID_ENVELOPE", true),
    BAD("params as nil",
        "\x94\x00\x01\xa3"
        "a.b\xc0",
        "INVALID_ENVELOPE", true),
    BAD("params of 3",
        "\x94\x00\x01\xa3"
        "a.b\x93\x80\x80\x80",
        "INVALID_ENVELOPE", true),
    BAD("args as an array",
        "\x94\x00\x01\xa3"
        "a.b\x91\x90",
        "INVALID_ENVELOPE", true),
    BAD("args as an integer",
        "\x94\x00\x01\xa3"
        "a.b\x91\x01",
        "INVALID_ENVELOPE", true),
    BAD("args with an integer key",
        "\x94\x00\x01\xa3"
        "a.b\x91\x81\x01\x01",
        "INVALID_DATA", true),
    BAD("meta as an array",
        "\x94\x00\x01\xa3"
        "a.b\x92\x80\x90",
        "INVALID_ENVELOPE", true),
    BAD("meta with an integer key",
        "\x94\x00\x01\xa3"
        "a.b\x92\x80\x81\x01"
        "\x01",
        "INVALID_ENVELOPE", true),
    BAD("correlation_id as an integer",
        "\x94\x00\x01\xa3"
        "a.b\x92\x80\x81\xae"
        "correlation_id\x01",
        "INVALID_ENVELOPE", true),
    BAD("correlation_id with a space",
        "\x94\x00\x01\xa3"
        "a.b\x92\x80\x81\xae"
        "correlation_id\xa3"
        "a b",
        "INVALID_ENVELOPE", true),
    BAD("correlation_id not ASCII",
        "\x94\x00\x01\xa3"
        "a.b\x92\x80\x81\xae"
        "correlation_id\xa2\xc3\xa9",
        "INVALID_ENVELOPE", true),
    BAD("negative timeout_ms",
        "\x94\x00\x01\xa3"
        "a.b\x92\x80\x81\xaa"
        "timeout_ms\xff",
        "INVALID_ENVELOPE", true),
    BAD("timeout_ms over 32 bits",
        "\x94\x00\x01\xa3"
        "a.b\x92\x80\x81\xaa"
        "timeout_ms"
        "\xcf\x00\x00\x00\x01\x00\x00\x00\x00",
        "INVALID_ENVELOPE", true),
    BAD("timeout_ms as a string",
        "\x94\x00\x01\xa3"
        "a.b\x92\x80\x81\xaa"
        "timeout_ms\xa1"
        "5",
        "INVALID_ENVELOPE", true),
};

static void
test_malformed_requests_rejected(void **state)
{
    fixture *fx = *state;
    bool known;
    size_t consumed;

    for (size_t i = 0; i < sizeof(bad_requests) / sizeof(bad_requests[0]);
         i++) {
        const bad_request *c = &bad_requests[i];
        json_t *message;

        pip_request_fini(&fx->req);
        known = !c->msgid_known;
        if (pip_request_decode(c->bytes, c->len, NULL, &fx->req, &consumed,
                               &known, &fx->err) == PIP_OK) {
            fail_msg("%s was accepted", c->name);
        }
        if (strcmp(fx->err.code, c->code) != 0 || known != c->msgid_known) {
            fail_msg("%s: code %s, msgid known %d", c->name, fx->err.code,
                     known);
        }
        assert_int_equal(fx->err.category, PIP_E_BAD_REQUEST);
        if (c->msgid_known) {
            assert_int_equal(fx->req.msgid, 1);
        } else {
            assert_int_equal(fx->req.msgid, PIP_MSGID_NONE);
        }
        /* Well-formed msgpack: the batch can go on after this request. */
        assert_int_equal(consumed, c->len);
        assert_null(fx->req.args);
        message = json_string(fx->err.message);
        assert_non_null(message);
        json_decref(message);
    }
}

static void
test_method_length_limit(void **state)
{
    fixture *fx = *state;
    char method[PIP_METHOD_MAX + 1];
    bool known;
    size_t consumed;

    memset(method, 'a', sizeof(method));
    method[1] = '.';
    method[PIP_METHOD_MAX - 1] = '\0';
    assert_int_equal(pip_request_pack(&fx->pk, 1, method, NULL, NULL), PIP_OK);
    assert_int_equal(decode_request(fx, &known, &consumed), PIP_OK);
    assert_string_equal(fx->req.method, method);

    method[PIP_METHOD_MAX - 1] = 'a';
    method[PIP_METHOD_MAX] = '\0';
    fx->sbuf.size = 0;
    assert_int_equal(pip_request_pack(&fx->pk, 1, method, NULL, NULL), PIP_OK);
    assert_int_equal(decode_request(fx, &known, &consumed), PIP_E_BAD_REQUEST);
    assert_string_equal(fx->err.code, "INVALID_METHOD");
}

static void
test_correlation_id_length_limit(void **state)
{
    fixture *fx = *state;
    pip_meta meta = {.timeout_ms = 0};
    bool known;
    size_t consumed;

    memset(meta.correlation_id, 'c', PIP_CORRELATION_ID_MAX - 1);
    meta.correlation_id[PIP_CORRELATION_ID_MAX - 1] = '\0';
    assert_int_equal(pip_request_pack(&fx->pk, 1, "a.b", NULL, &meta), PIP_OK);
    assert_int_equal(decode_request(fx, &known, &consumed), PIP_OK);
    assert_string_equal(fx->req.meta.correlation_id, meta.correlation_id);

    /* 64 bytes, packed by hand because pip_meta stores at most 63. */
    fx->sbuf.size = 0;
    pack_request_head(fx, 9, "a.b");
    msgpack_pack_array(&fx->pk, 2);
    msgpack_pack_nil(&fx->pk);
    msgpack_pack_map(&fx->pk, 1);
    str(fx, "correlation_id");
    msgpack_pack_str(&fx->pk, 64);
    msgpack_pack_str_body(&fx->pk, meta.correlation_id, 63);
    msgpack_pack_str_body(&fx->pk, "c", 1);
    assert_int_equal(decode_request(fx, &known, &consumed), PIP_E_BAD_REQUEST);
    assert_string_equal(fx->err.code, "INVALID_ENVELOPE");
    assert_true(known);
    assert_int_equal(fx->req.msgid, 9);
}

static void
test_bad_args_keep_msgid_and_cid(void **state)
{
    fixture *fx = *state;
    bool known = false;
    size_t consumed;

    pack_request_head(fx, 77, "a.b");
    msgpack_pack_array(&fx->pk, 2);
    msgpack_pack_map(&fx->pk, 1);
    str(fx, "n");
    msgpack_pack_uint64(&fx->pk, UINT64_MAX);
    msgpack_pack_map(&fx->pk, 1);
    str(fx, "correlation_id");
    str(fx, "cid-77");
    assert_int_equal(decode_request(fx, &known, &consumed), PIP_E_BAD_REQUEST);
    assert_string_equal(fx->err.code, "INVALID_DATA");
    assert_true(known);
    assert_int_equal(fx->req.msgid, 77);
    assert_string_equal(fx->err.correlation_id, "cid-77");
    assert_string_equal(
        json_string_value(json_object_get(fx->err.details, "argument")), "n");
}

static void
test_limit_inside_args_keeps_msgid(void **state)
{
    fixture *fx = *state;
    pip_limits lim;
    bool known = false;
    size_t consumed = 5;

    pip_limits_default(&lim);
    lim.max_str_bytes = 4;
    pack_request_head(fx, 70000, "a.b");
    msgpack_pack_array(&fx->pk, 1);
    msgpack_pack_map(&fx->pk, 1);
    str(fx, "k");
    str(fx, "too long");
    assert_int_equal(pip_request_decode(fx->sbuf.data, fx->sbuf.size, &lim,
                                        &fx->req, &consumed, &known, &fx->err),
                     PIP_E_BAD_REQUEST);
    assert_string_equal(fx->err.code, "LIMIT_EXCEEDED");
    assert_true(known);
    assert_int_equal(fx->req.msgid, 70000);
    /* The end of the request is unknown, so the batch cannot go on. */
    assert_int_equal(consumed, 0);
}

static void
test_truncated_request(void **state)
{
    fixture *fx = *state;
    size_t full;
    bool known;
    size_t consumed;

    assert_int_equal(pip_request_pack(&fx->pk, 3, "a.b", NULL, NULL), PIP_OK);
    full = fx->sbuf.size;
    for (size_t len = 0; len < full; len++) {
        pip_request_fini(&fx->req);
        assert_int_equal(pip_request_decode(fx->sbuf.data, len, NULL, &fx->req,
                                            &consumed, &known, &fx->err),
                         PIP_E_BAD_REQUEST);
        assert_string_equal(fx->err.code, "MALFORMED_MESSAGE");
        assert_int_equal(consumed, 0);
        /* The msgid is the third byte, so it is known from 3 bytes on. */
        assert_int_equal(known, len >= 3);
        assert_int_equal(fx->req.msgid, known ? 3 : PIP_MSGID_NONE);
    }
}

static void
test_response_round_trip(void **state)
{
    fixture *fx = *state;
    json_t *result = json_pack("{s:s}", "theme", "dark");
    size_t consumed;

    assert_int_equal(pip_response_pack(&fx->pk, 9, result, NULL), PIP_OK);
    assert_int_equal(pip_response_decode(fx->sbuf.data, fx->sbuf.size, NULL,
                                         &fx->resp, &consumed, &fx->err),
                     PIP_OK);
    assert_int_equal(consumed, fx->sbuf.size);
    assert_int_equal(fx->resp.msgid, 9);
    assert_false(fx->resp.failed);
    assert_true(json_equal(fx->resp.result, result));
    json_decref(result);

    fx->sbuf.size = 0;
    assert_int_equal(pip_response_pack(&fx->pk, 10, NULL, &fx->err), PIP_OK);
    assert_memory_equal(fx->sbuf.data, "\x94\x01\x0a\xc0\xc0", 5);
    assert_int_equal(pip_response_decode(fx->sbuf.data, fx->sbuf.size, NULL,
                                         &fx->resp, &consumed, &fx->err),
                     PIP_OK);
    assert_false(fx->resp.failed);
    assert_null(fx->resp.result);
}

static void
test_error_response_round_trip(void **state)
{
    fixture *fx = *state;
    pip_error fail;
    json_t *result = json_true();
    size_t consumed;

    pip_error_init(&fail);
    pip_error_set(&fail, PIP_E_NOT_FOUND, "BLOB_NOT_FOUND",
                  "blob b1 not found");
    pip_error_detail(&fail, "blob_id", json_string("b1"));
    strcpy(fail.correlation_id, "cid-5");

    /* A failed response never carries the result. */
    assert_int_equal(pip_response_pack(&fx->pk, 5, result, &fail), PIP_OK);
    assert_int_equal(pip_response_decode(fx->sbuf.data, fx->sbuf.size, NULL,
                                         &fx->resp, &consumed, &fx->err),
                     PIP_OK);
    assert_true(fx->resp.failed);
    assert_null(fx->resp.result);
    assert_int_equal(fx->resp.msgid, 5);
    assert_int_equal(fx->resp.error.category, PIP_E_NOT_FOUND);
    assert_string_equal(fx->resp.error.code, "BLOB_NOT_FOUND");
    assert_string_equal(fx->resp.error.message, "blob b1 not found");
    assert_string_equal(fx->resp.error.correlation_id, "cid-5");
    assert_true(json_equal(fx->resp.error.details, fail.details));
    json_decref(result);
    pip_error_fini(&fail);
}

static void
test_error_map_shape(void **state)
{
    fixture *fx = *state;
    pip_error fail;
    json_t *map = NULL;
    size_t consumed;

    pip_error_init(&fail);
    pip_error_set(&fail, PIP_E_TIMEOUT, "TIMEOUT", "timed out");
    assert_int_equal(pip_error_pack(&fx->pk, &fail), PIP_OK);
    assert_int_equal(pip_mp_decode_json(fx->sbuf.data, fx->sbuf.size, NULL,
                                        &map, &consumed, &fx->err),
                     PIP_OK);
    assert_int_equal(json_object_size(map), 5);
    assert_string_equal(json_string_value(json_object_get(map, "category")),
                        "NoResponse");
    assert_string_equal(json_string_value(json_object_get(map, "code")),
                        "TIMEOUT");
    assert_string_equal(json_string_value(json_object_get(map, "message")),
                        "timed out");
    assert_true(json_is_null(json_object_get(map, "details")));
    assert_true(json_is_null(json_object_get(map, "correlation_id")));
    json_decref(map);
    pip_error_fini(&fail);
}

static void
test_unknown_msgid_packs_nil(void **state)
{
    fixture *fx = *state;
    pip_error fail;
    size_t consumed;

    pip_error_init(&fail);
    pip_error_set(&fail, PIP_E_BAD_REQUEST, "MALFORMED_MESSAGE", "bad");
    assert_int_equal(pip_response_pack(&fx->pk, PIP_MSGID_NONE, NULL, &fail),
                     PIP_OK);
    assert_memory_equal(fx->sbuf.data, "\x94\x01\xc0\x85", 4);
    assert_int_equal(pip_response_decode(fx->sbuf.data, fx->sbuf.size, NULL,
                                         &fx->resp, &consumed, &fx->err),
                     PIP_OK);
    assert_int_equal(fx->resp.msgid, PIP_MSGID_NONE);
    assert_true(fx->resp.failed);
    assert_string_equal(fx->resp.error.code, "MALFORMED_MESSAGE");
    pip_error_fini(&fail);
}

static void
test_error_map_tolerates_missing_fields(void **state)
{
    fixture *fx = *state;
    size_t consumed;

    /* [1, 4, {"message": "m", "details": "text"}, nil] */
    msgpack_pack_array(&fx->pk, 4);
    msgpack_pack_int(&fx->pk, 1);
    msgpack_pack_int(&fx->pk, 4);
    msgpack_pack_map(&fx->pk, 2);
    str(fx, "message");
    str(fx, "m");
    str(fx, "details");
    str(fx, "text");
    msgpack_pack_nil(&fx->pk);
    assert_int_equal(pip_response_decode(fx->sbuf.data, fx->sbuf.size, NULL,
                                         &fx->resp, &consumed, &fx->err),
                     PIP_OK);
    assert_true(fx->resp.failed);
    assert_int_equal(fx->resp.error.category, PIP_E_UNKNOWN);
    assert_string_equal(fx->resp.error.code, "");
    assert_string_equal(fx->resp.error.message, "m");
    assert_null(fx->resp.error.details);
}

static void
test_malformed_responses_rejected(void **state)
{
    static const bad_message cases[] = {
        BAD_MESSAGE("request", "\x94\x00\x01\xc0\xc0", "INVALID_RESPONSE"),
        BAD_MESSAGE("array of 3", "\x93\x01\x01\xc0", "INVALID_RESPONSE"),
        BAD_MESSAGE("map", "\x80", "INVALID_RESPONSE"),
        BAD_MESSAGE("msgid as a string",
                    "\x94\x01\xa1"
                    "1\xc0\xc0",
                    "INVALID_RESPONSE"),
        BAD_MESSAGE("error as a string",
                    "\x94\x01\x01\xa1"
                    "e\xc0",
                    "INVALID_RESPONSE"),
        BAD_MESSAGE("error with an integer key",
                    "\x94\x01\x01\x81\x01\x01\xc0", "INVALID_DATA"),
        BAD_MESSAGE("result with NaN",
                    "\x94\x01\x01\xc0\xcb\x7f\xf8\x00\x00\x00\x00"
                    "\x00\x00",
                    "INVALID_DATA"),
        BAD_MESSAGE("truncated", "\x94\x01\x01\xc0", "MALFORMED_MESSAGE"),
    };
    fixture *fx = *state;
    size_t consumed;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        if (pip_response_decode(cases[i].bytes, cases[i].len, NULL, &fx->resp,
                                &consumed, &fx->err) == PIP_OK) {
            fail_msg("%s was accepted", cases[i].name);
        }
        if (strcmp(fx->err.code, cases[i].code) != 0) {
            fail_msg("%s: code %s", cases[i].name, fx->err.code);
        }
        assert_false(fx->resp.failed);
        assert_null(fx->resp.result);
    }
}

static void
test_event_round_trip(void **state)
{
    fixture *fx = *state;
    json_t *payload = json_pack("{s:s}", "name", "calls");
    void *buf = NULL;
    size_t len = 0;
    char *topic = NULL;
    json_t *back = NULL;

    assert_int_equal(pip_event_encode("counters.changed", payload, &buf, &len),
                     PIP_OK);
    assert_true(len > 17);
    assert_memory_equal(buf, "counters.changed\0\x93\x02\xb0", 20);
    assert_int_equal(pip_event_decode(buf, len, NULL, &topic, &back, &fx->err),
                     PIP_OK);
    assert_string_equal(topic, "counters.changed");
    assert_true(json_equal(back, payload));
    free(topic);
    free(buf);
    json_decref(back);
    json_decref(payload);
}

static void
test_event_nil_payload(void **state)
{
    fixture *fx = *state;
    void *buf = NULL;
    size_t len = 0;
    char *topic = NULL;
    json_t *back = NULL;

    assert_int_equal(pip_event_encode("a.b", NULL, &buf, &len), PIP_OK);
    assert_int_equal(len, 12);
    assert_memory_equal(buf,
                        "a.b\0\x93\x02\xa3"
                        "a.b\x91\xc0",
                        12);
    free(buf);

    /* "a.b" 0x00 [2, "a.b", [nil]] */
    assert_int_equal(pip_event_decode("a.b\0\x93\x02\xa3"
                                      "a.b\x91\xc0",
                                      12, NULL, &topic, &back, &fx->err),
                     PIP_OK);
    assert_true(json_is_null(back));
    free(topic);
    json_decref(back);
}

static void
test_event_bad_topic_rejected(void **state)
{
    void *buf = (void *)1;
    size_t len = 1;
    char long_topic[PIP_METHOD_MAX + 1];

    (void)state;
    memset(long_topic, 'a', PIP_METHOD_MAX);
    long_topic[PIP_METHOD_MAX] = '\0';
    assert_int_equal(pip_event_encode("", NULL, &buf, &len),
                     PIP_E_BAD_REQUEST);
    assert_null(buf);
    assert_int_equal(len, 0);
    assert_int_equal(pip_event_encode("a b", NULL, &buf, &len),
                     PIP_E_BAD_REQUEST);
    assert_int_equal(pip_event_encode(long_topic, NULL, &buf, &len),
                     PIP_E_BAD_REQUEST);
    assert_int_equal(pip_event_encode(NULL, NULL, &buf, &len),
                     PIP_E_BAD_REQUEST);
}

static void
test_malformed_events_rejected(void **state)
{
    static const bad_message cases[] = {
        BAD_MESSAGE("empty", "", "INVALID_ENVELOPE"),
        BAD_MESSAGE("no 0x00", "a.b\x93\x02", "INVALID_ENVELOPE"),
        BAD_MESSAGE("empty topic", "\0\x93\x02\xa0\x91\xc0",
                    "INVALID_ENVELOPE"),
        BAD_MESSAGE("space in topic",
                    "a b\0\x93\x02\xa3"
                    "a b\x91\xc0",
                    "INVALID_ENVELOPE"),
        BAD_MESSAGE("topic mismatch",
                    "a.b\0\x93\x02\xa3"
                    "a.c\x91\xc0",
                    "INVALID_ENVELOPE"),
        BAD_MESSAGE("type 0",
                    "a.b\0\x93\x00\xa3"
                    "a.b\x91\xc0",
                    "INVALID_ENVELOPE"),
        BAD_MESSAGE("params not an array",
                    "a.b\0\x93\x02\xa3"
                    "a.b\xc0",
                    "INVALID_ENVELOPE"),
        BAD_MESSAGE("params of 2",
                    "a.b\0\x93\x02\xa3"
                    "a.b\x92\xc0\xc0",
                    "INVALID_ENVELOPE"),
        BAD_MESSAGE("trailing bytes",
                    "a.b\0\x93\x02\xa3"
                    "a.b\x91\xc0\xc0",
                    "MALFORMED_MESSAGE"),
        BAD_MESSAGE("truncated",
                    "a.b\0\x93\x02\xa3"
                    "a.b\x91",
                    "MALFORMED_MESSAGE"),
        BAD_MESSAGE("payload with bin key",
                    "a.b\0\x93\x02\xa3"
                    "a.b\x91\x81\xc4\x01k"
                    "\xc0",
                    "INVALID_DATA"),
    };
    fixture *fx = *state;
    char *topic = (char *)1;
    json_t *payload = (json_t *)1;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        if (pip_event_decode(cases[i].bytes, cases[i].len, NULL, &topic,
                             &payload, &fx->err) == PIP_OK) {
            fail_msg("%s was accepted", cases[i].name);
        }
        if (strcmp(fx->err.code, cases[i].code) != 0) {
            fail_msg("%s: code %s", cases[i].name, fx->err.code);
        }
        assert_null(topic);
        assert_null(payload);
    }
}

/* The worked example of proto/PROTOCOL.md, byte for byte. */
static void
test_protocol_doc_example(void **state)
{
    static const char request[] = "\x94\x00\x07\xba"
                                  "settings.get_section_by_id"
                                  "\x92\x81\xa2"
                                  "id"
                                  "\xa3"
                                  "app"
                                  "\x82\xae"
                                  "correlation_id"
                                  "\xa6"
                                  "c0ffee"
                                  "\xaa"
                                  "timeout_ms"
                                  "\xcd\x13\x88";
    static const char response[] = "\x94\x01\x07\xc0\x81\xa5"
                                   "theme"
                                   "\xa4"
                                   "dark";
    fixture *fx = *state;
    json_t *args = json_pack("{s:s}", "id", "app");
    json_t *result = json_pack("{s:s}", "theme", "dark");
    pip_meta meta = {.correlation_id = "c0ffee", .timeout_ms = 5000};

    assert_int_equal(pip_request_pack(&fx->pk, 7, "settings.get_section_by_id",
                                      args, &meta),
                     PIP_OK);
    assert_int_equal(fx->sbuf.size, sizeof(request) - 1);
    assert_memory_equal(fx->sbuf.data, request, sizeof(request) - 1);

    fx->sbuf.size = 0;
    assert_int_equal(pip_response_pack(&fx->pk, 7, result, NULL), PIP_OK);
    assert_int_equal(fx->sbuf.size, sizeof(response) - 1);
    assert_memory_equal(fx->sbuf.data, response, sizeof(response) - 1);
    json_decref(args);
    json_decref(result);
}

int
main(void)
{
#define T(name)                                                               \
    cmocka_unit_test_setup_teardown(name, fixture_setup, fixture_teardown)
    const struct CMUnitTest tests[] = {
        T(test_request_round_trip),
        T(test_request_without_meta),
        T(test_request_large_msgid),
        T(test_request_params_forms),
        T(test_batch_decodes_in_order),
        T(test_malformed_requests_rejected),
        T(test_method_length_limit),
        T(test_correlation_id_length_limit),
        T(test_bad_args_keep_msgid_and_cid),
        T(test_limit_inside_args_keeps_msgid),
        T(test_truncated_request),
        T(test_response_round_trip),
        T(test_error_response_round_trip),
        T(test_error_map_shape),
        T(test_unknown_msgid_packs_nil),
        T(test_error_map_tolerates_missing_fields),
        T(test_malformed_responses_rejected),
        T(test_event_round_trip),
        T(test_event_nil_payload),
        T(test_event_bad_topic_rejected),
        T(test_malformed_events_rejected),
        T(test_protocol_doc_example),
    };
#undef T

    return cmocka_run_group_tests(tests, NULL, NULL);
}
