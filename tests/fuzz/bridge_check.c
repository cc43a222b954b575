/*
 * Invariants of the msgpack <-> JSON bridge, read in both directions from
 * the same input: as msgpack bytes and as JSON text.
 */
#include "fuzz_checks.h"

#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"

/* The nesting that pip_mp_check() allows at most, whatever the limits. */
#define BRIDGE_NESTING_MAX 32

static const char *const bridge_decode_codes[] = {
    "MALFORMED_MESSAGE", "LIMIT_EXCEEDED", "INVALID_DATA", "OUT_OF_MEMORY",
    NULL};

/* The JSON text of value reads back as an equal value. */
static void
bridge_check_text(const json_t *value)
{
    char *text = json_dumps(value, JSON_COMPACT | JSON_ENCODE_ANY);
    json_t *parsed;

    FUZZ_CHECK(text != NULL);
    parsed = json_loads(text, JSON_DECODE_ANY, NULL);
    FUZZ_CHECK(parsed != NULL);
    FUZZ_CHECK(json_equal(parsed, value));
    free(text);
    json_decref(parsed);
}

/* value packs to msgpack that decodes to an equal value, and packing that
 * value again gives the same bytes. */
static void
bridge_check_repack(const json_t *value)
{
    msgpack_sbuffer first;
    msgpack_sbuffer second;
    json_t *again = NULL;
    pip_limits lim;
    pip_error err;
    size_t consumed = 0;

    fuzz_limits_relaxed(&lim);
    pip_error_init(&err);
    fuzz_pack_json(&first, value);
    FUZZ_CHECK(pip_mp_decode_json(first.data, first.size, &lim, &again,
                                  &consumed, &err) == PIP_OK);
    FUZZ_CHECK(consumed == first.size);
    FUZZ_CHECK(json_equal(again, value));

    fuzz_pack_json(&second, again);
    FUZZ_CHECK(fuzz_bytes_same(&first, &second));

    msgpack_sbuffer_destroy(&first);
    msgpack_sbuffer_destroy(&second);
    json_decref(again);
    pip_error_fini(&err);
}

/* A decode failure is a framing problem that pip_mp_check() reports too, or
 * well-formed msgpack without a JSON form. */
static void
bridge_check_decode_failure(const uint8_t *data, size_t size,
                            const pip_limits *lim, int rv,
                            const pip_error *err)
{
    pip_error check_err;
    int check_rv;

    fuzz_check_error(rv, err);
    FUZZ_CHECK(fuzz_code_in(err->code, bridge_decode_codes));
    pip_error_init(&check_err);
    check_rv = pip_mp_check(data, size, lim, NULL, &check_err);
    if (strcmp(err->code, "INVALID_DATA") == 0) {
        FUZZ_CHECK(check_rv == PIP_OK);
    } else if (strcmp(err->code, "OUT_OF_MEMORY") != 0) {
        FUZZ_CHECK(check_rv == rv);
        FUZZ_CHECK(strcmp(check_err.code, err->code) == 0);
    }
    pip_error_fini(&check_err);
}

/* data as msgpack: msgpack -> JSON -> msgpack -> JSON. */
static void
bridge_check_msgpack(const uint8_t *data, size_t size)
{
    json_t *value = NULL;
    pip_limits lim;
    pip_error err;
    size_t consumed = SIZE_MAX;
    size_t checked = 0;
    int rv;

    pip_limits_default(&lim);
    pip_error_init(&err);
    rv = pip_mp_decode_json(data, size, &lim, &value, &consumed, &err);
    if (rv == PIP_OK) {
        FUZZ_CHECK(value != NULL);
        FUZZ_CHECK(consumed > 0 && consumed <= size);
        FUZZ_CHECK(pip_mp_check(data, size, &lim, &checked, &err) == PIP_OK);
        FUZZ_CHECK(checked == consumed);
        FUZZ_CHECK(fuzz_json_nesting(value) <= BRIDGE_NESTING_MAX);
        bridge_check_repack(value);
        bridge_check_text(value);
    } else {
        FUZZ_CHECK(value == NULL);
        bridge_check_decode_failure(data, size, &lim, rv, &err);
    }
    json_decref(value);
    pip_error_fini(&err);
}

/* Decodes what bridge_check_json_text() packed.  Values nested within the
 * decoder's depth limit come back equal, and deeper ones fail with
 * LIMIT_EXCEEDED. */
static void
bridge_check_packed_text(const msgpack_sbuffer *packed, const json_t *value)
{
    json_t *decoded = NULL;
    pip_limits lim;
    pip_error err;
    size_t consumed = 0;
    int rv;

    fuzz_limits_relaxed(&lim);
    pip_error_init(&err);
    rv = pip_mp_decode_json(packed->data, packed->size, &lim, &decoded,
                            &consumed, &err);
    if (fuzz_json_nesting(value) <= BRIDGE_NESTING_MAX) {
        FUZZ_CHECK(rv == PIP_OK);
        FUZZ_CHECK(consumed == packed->size);
        FUZZ_CHECK(json_equal(decoded, value));
    } else {
        fuzz_check_error(rv, &err);
        FUZZ_CHECK(strcmp(err.code, "LIMIT_EXCEEDED") == 0);
        FUZZ_CHECK(decoded == NULL);
    }
    json_decref(decoded);
    pip_error_fini(&err);
}

/* data as JSON text: jansson -> pip_json_pack -> decode. */
static void
bridge_check_json_text(const uint8_t *data, size_t size)
{
    json_t *value =
        json_loadb((const char *)data, size, JSON_DECODE_ANY, NULL);
    msgpack_sbuffer packed;
    msgpack_packer pk;

    if (value == NULL) {
        return;
    }
    msgpack_sbuffer_init(&packed);
    msgpack_packer_init(&pk, &packed, msgpack_sbuffer_write);
    if (pip_json_pack(&pk, value) == 0) {
        bridge_check_packed_text(&packed, value);
    } else {
        /* pip_json_pack() fails only past 64 levels of nesting here. */
        FUZZ_CHECK(fuzz_json_nesting(value) > BRIDGE_NESTING_MAX);
    }
    msgpack_sbuffer_destroy(&packed);
    json_decref(value);
}

void
fuzz_check_bridge(const uint8_t *data, size_t size)
{
    bridge_check_msgpack(data, size);
    bridge_check_json_text(data, size);
}
