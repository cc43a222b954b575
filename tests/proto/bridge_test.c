/* Tests of the msgpack <-> JSON bridge. */
#include "pack_fixture.h"

#include <stdint.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Decodes what was packed so far, or returns NULL when the bridge
 * rejected it. */
static json_t *
decode_packed(fixture *fx)
{
    json_t *value = NULL;
    size_t consumed = 0;
    int rv;

    rv = pip_mp_decode_json(fx->sbuf.data, fx->sbuf.size, NULL, &value,
                            &consumed, &fx->err);
    if (rv != PIP_OK) {
        assert_null(value);
        return NULL;
    }
    assert_int_equal(consumed, fx->sbuf.size);
    return value;
}

static void
assert_rejected(fixture *fx, const char *argument)
{
    json_t *value = decode_packed(fx);

    assert_null(value);
    assert_int_equal(fx->err.category, PIP_E_BAD_REQUEST);
    assert_string_equal(fx->err.code, "INVALID_DATA");
    if (argument == NULL) {
        assert_null(json_object_get(fx->err.details, "argument"));
    } else {
        assert_string_equal(
            json_string_value(json_object_get(fx->err.details, "argument")),
            argument);
    }
}

static void
str(fixture *fx, const char *text)
{
    msgpack_pack_str(&fx->pk, strlen(text));
    msgpack_pack_str_body(&fx->pk, text, strlen(text));
}

/* Packs value, decodes it, and expects an equal value back. */
static void
assert_round_trip(fixture *fx, const char *json_text)
{
    json_t *value = json_loads(json_text, JSON_DECODE_ANY, NULL);
    json_t *back;

    assert_non_null(value);
    fx->sbuf.size = 0;
    assert_int_equal(pip_json_pack(&fx->pk, value), 0);
    back = decode_packed(fx);
    if (back == NULL || !json_equal(value, back)) {
        fail_msg("%s did not survive the round trip: %s", json_text,
                 fx->err.message);
    }
    json_decref(value);
    json_decref(back);
}

static void
test_round_trip_every_type(void **state)
{
    static const char *const values[] = {
        "null",
        "true",
        "false",
        "0",
        "1",
        "-1",
        "127",
        "128",
        "-32",
        "-33",
        "255",
        "256",
        "65535",
        "65536",
        "-2147483648",
        "4294967296",
        "9223372036854775807",
        "-9223372036854775808",
        "0.5",
        "-1.25e300",
        "1e-300",
        "\"\"",
        "\"text\"",
        "\"\\u00e9t\\u00e9 \\u4e2d \\ud83d\\ude00\"",
        "[]",
        "{}",
        "[1, \"a\", null, [true, {}]]",
        "{\"a\": {\"b\": [1, 2, {\"c\": \"d\"}]}, \"e\": 1.5}",
    };

    for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
        assert_round_trip(*state, values[i]);
    }
}

static void
test_long_string_round_trip(void **state)
{
    fixture *fx = *state;
    char *text = malloc(70001);
    json_t *value;
    json_t *back;

    memset(text, 'q', 70000);
    text[70000] = '\0';
    value = json_string(text);
    assert_int_equal(pip_json_pack(&fx->pk, value), 0);
    back = decode_packed(fx);
    assert_true(json_equal(value, back));
    json_decref(value);
    json_decref(back);
    free(text);
}

static void
test_pack_uses_compact_integers(void **state)
{
    fixture *fx = *state;
    json_t *value = json_pack("[i, i, I]", 1, -1, (json_int_t)300);

    assert_int_equal(pip_json_pack(&fx->pk, value), 0);
    assert_int_equal(fx->sbuf.size, 6);
    assert_memory_equal(fx->sbuf.data, "\x93\x01\xff\xcd\x01\x2c", 6);
    json_decref(value);
}

static void
test_pack_rejects_null_value(void **state)
{
    fixture *fx = *state;

    assert_int_equal(pip_json_pack(&fx->pk, NULL), -1);
}

static void
test_uint64_over_int64_rejected(void **state)
{
    fixture *fx = *state;
    json_t *value;

    msgpack_pack_uint64(&fx->pk, (uint64_t)INT64_MAX);
    value = decode_packed(fx);
    assert_int_equal(json_integer_value(value), INT64_MAX);
    json_decref(value);

    fx->sbuf.size = 0;
    msgpack_pack_map(&fx->pk, 1);
    str(fx, "n");
    msgpack_pack_uint64(&fx->pk, (uint64_t)INT64_MAX + 1);
    assert_rejected(fx, "n");
}

static void
test_float32_becomes_real(void **state)
{
    fixture *fx = *state;
    json_t *value;

    msgpack_pack_float(&fx->pk, 0.25f);
    value = decode_packed(fx);
    assert_true(json_is_real(value));
    assert_true(json_real_value(value) == 0.25);
    json_decref(value);
}

static void
test_nan_and_inf_rejected(void **state)
{
    fixture *fx = *state;

    msgpack_pack_double(&fx->pk, NAN);
    assert_rejected(fx, NULL);

    fx->sbuf.size = 0;
    msgpack_pack_array(&fx->pk, 2);
    msgpack_pack_nil(&fx->pk);
    msgpack_pack_float(&fx->pk, INFINITY);
    assert_rejected(fx, "[1]");
}

static void
test_bin_becomes_base64(void **state)
{
    fixture *fx = *state;
    json_t *value;

    msgpack_pack_bin(&fx->pk, 5);
    msgpack_pack_bin_body(&fx->pk, "hello", 5);
    value = decode_packed(fx);
    assert_string_equal(json_string_value(value), "aGVsbG8=");
    json_decref(value);

    fx->sbuf.size = 0;
    msgpack_pack_bin(&fx->pk, 4);
    msgpack_pack_bin_body(&fx->pk, "\xfb\xff\x00\x01", 4);
    value = decode_packed(fx);
    assert_string_equal(json_string_value(value), "+/8AAQ==");
    json_decref(value);

    fx->sbuf.size = 0;
    msgpack_pack_bin(&fx->pk, 0);
    value = decode_packed(fx);
    assert_string_equal(json_string_value(value), "");
    json_decref(value);
}

/* Packs an ext of type -1 with the given payload and decodes it. */
static json_t *
decode_timestamp(fixture *fx, const void *payload, size_t size)
{
    fx->sbuf.size = 0;
    msgpack_pack_ext(&fx->pk, size, -1);
    msgpack_pack_ext_body(&fx->pk, payload, size);
    return decode_packed(fx);
}

static void
assert_timestamp(fixture *fx, const void *payload, size_t size,
                 const char *expected)
{
    json_t *value = decode_timestamp(fx, payload, size);

    if (value == NULL) {
        fail_msg("timestamp of %zu bytes rejected: %s", size, fx->err.message);
    }
    assert_string_equal(json_string_value(value), expected);
    json_decref(value);
}

static void
test_timestamps_become_datetimes(void **state)
{
    fixture *fx = *state;

    /* The 32-bit form has seconds only, here 1700000000. */
    assert_timestamp(fx, "\x65\x53\xf1\x00", 4, "2023-11-14T22:13:20.000Z");
    /* The 64-bit form has 30 bits of ns (500000000) above 34 bits of
     * seconds (1). */
    assert_timestamp(fx, "\x77\x35\x94\x00\x00\x00\x00\x01", 8,
                     "1970-01-01T00:00:01.500Z");
    /* The 96-bit form has ns (1000000), then signed seconds (-1). */
    assert_timestamp(fx, "\x00\x0f\x42\x40\xff\xff\xff\xff\xff\xff\xff\xff",
                     12, "1969-12-31T23:59:59.001Z");
}

static void
test_bad_timestamps_rejected(void **state)
{
    fixture *fx = *state;

    /* A size other than 4, 8 or 12. */
    assert_null(decode_timestamp(fx, "\x00\x00", 2));
    assert_string_equal(fx->err.code, "INVALID_DATA");
    /* Seconds past 9999-12-31. */
    assert_null(decode_timestamp(
        fx, "\x00\x00\x00\x00\x00\x00\x00\x3b\x00\x00\x00\x00", 12));
    assert_string_equal(fx->err.code, "INVALID_DATA");
    /* Seconds before 0000-01-01. */
    assert_null(decode_timestamp(
        fx, "\x00\x00\x00\x00\xff\xff\xff\x00\x00\x00\x00\x00", 12));
    /* Nanoseconds of one second or more. */
    assert_null(decode_timestamp(
        fx, "\x3b\x9a\xca\x00\x00\x00\x00\x00\x00\x00\x00\x00", 12));
}

static void
test_other_ext_rejected(void **state)
{
    fixture *fx = *state;

    msgpack_pack_map(&fx->pk, 1);
    str(fx, "blob");
    msgpack_pack_ext(&fx->pk, 1, 7);
    msgpack_pack_ext_body(&fx->pk, "x", 1);
    assert_rejected(fx, "blob");
    assert_non_null(strstr(fx->err.message, "extension type 7"));
}

static void
test_non_string_keys_rejected(void **state)
{
    fixture *fx = *state;

    msgpack_pack_map(&fx->pk, 1);
    str(fx, "a");
    msgpack_pack_map(&fx->pk, 1);
    str(fx, "b");
    msgpack_pack_array(&fx->pk, 2);
    msgpack_pack_nil(&fx->pk);
    msgpack_pack_map(&fx->pk, 1);
    msgpack_pack_int(&fx->pk, 5);
    msgpack_pack_nil(&fx->pk);
    assert_rejected(fx, "a.b[1]");
    assert_non_null(strstr(fx->err.message, "Map keys must be strings"));

    fx->sbuf.size = 0;
    msgpack_pack_map(&fx->pk, 1);
    msgpack_pack_bin(&fx->pk, 1);
    msgpack_pack_bin_body(&fx->pk, "k", 1);
    msgpack_pack_nil(&fx->pk);
    assert_rejected(fx, NULL);
}

static void
test_invalid_text_rejected(void **state)
{
    static const char *const bad[] = {
        "\xff",
        "a\x00"
        "b",
        "\xc3",
        "\xc0\x80",
        "\xed\xa0\x80",
        "\xf4\x90\x80\x80",
        "\xe2\x82",
    };
    static const size_t lens[] = {1, 3, 1, 2, 3, 4, 2};
    fixture *fx = *state;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        fx->sbuf.size = 0;
        msgpack_pack_map(&fx->pk, 1);
        str(fx, "s");
        msgpack_pack_str(&fx->pk, lens[i]);
        msgpack_pack_str_body(&fx->pk, bad[i], lens[i]);
        assert_rejected(fx, "s");

        fx->sbuf.size = 0;
        msgpack_pack_map(&fx->pk, 1);
        msgpack_pack_str(&fx->pk, lens[i]);
        msgpack_pack_str_body(&fx->pk, bad[i], lens[i]);
        msgpack_pack_nil(&fx->pk);
        assert_rejected(fx, NULL);
    }
}

static void
test_duplicate_keys_rejected(void **state)
{
    fixture *fx = *state;

    msgpack_pack_map(&fx->pk, 2);
    str(fx, "id");
    msgpack_pack_int(&fx->pk, 1);
    str(fx, "id");
    msgpack_pack_int(&fx->pk, 2);
    assert_rejected(fx, NULL);
    assert_non_null(strstr(fx->err.message, "The map key 'id' appears twice"));
}

static void
test_long_path_stays_utf8(void **state)
{
    fixture *fx = *state;
    char key[200];
    json_t *message;

    /* Two keys of 100 two-byte characters overflow the 256-byte path. */
    for (size_t i = 0; i < sizeof(key); i += 2) {
        key[i] = (char)0xc3;
        key[i + 1] = (char)0xa9;
    }
    msgpack_pack_map(&fx->pk, 1);
    msgpack_pack_str(&fx->pk, sizeof(key));
    msgpack_pack_str_body(&fx->pk, key, sizeof(key));
    msgpack_pack_map(&fx->pk, 1);
    msgpack_pack_str(&fx->pk, sizeof(key));
    msgpack_pack_str_body(&fx->pk, key, sizeof(key));
    msgpack_pack_double(&fx->pk, NAN);
    assert_null(decode_packed(fx));
    message = json_string(fx->err.message);
    assert_non_null(message);
    json_decref(message);
    assert_non_null(
        json_string_value(json_object_get(fx->err.details, "argument")));
}

static void
test_decode_reports_check_errors(void **state)
{
    fixture *fx = *state;
    pip_limits lim;
    json_t *value = NULL;
    size_t consumed = 7;

    pip_limits_default(&lim);
    lim.max_array_len = 1;
    assert_int_equal(pip_mp_decode_json("\x92\x01\x02", 3, &lim, &value,
                                        &consumed, &fx->err),
                     PIP_E_BAD_REQUEST);
    assert_string_equal(fx->err.code, "LIMIT_EXCEEDED");
    assert_null(value);
    assert_int_equal(consumed, 7);

    assert_int_equal(
        pip_mp_decode_json("\x92\x01", 2, NULL, &value, &consumed, &fx->err),
        PIP_E_BAD_REQUEST);
    assert_string_equal(fx->err.code, "MALFORMED_MESSAGE");
}

static void
test_decode_stops_after_one_object(void **state)
{
    fixture *fx = *state;
    json_t *value = NULL;
    size_t consumed = 0;

    assert_int_equal(pip_mp_decode_json("\x91\x07\xc3", 3, NULL, &value,
                                        &consumed, &fx->err),
                     PIP_OK);
    assert_int_equal(consumed, 2);
    assert_int_equal(json_integer_value(json_array_get(value, 0)), 7);
    json_decref(value);
}

static void
test_to_json_on_unpacked_object(void **state)
{
    fixture *fx = *state;
    msgpack_unpacked result;
    json_t *value = NULL;

    msgpack_pack_map(&fx->pk, 1);
    str(fx, "k");
    msgpack_pack_true(&fx->pk);
    msgpack_unpacked_init(&result);
    assert_int_equal(
        msgpack_unpack_next(&result, fx->sbuf.data, fx->sbuf.size, NULL),
        MSGPACK_UNPACK_SUCCESS);
    assert_int_equal(pip_mp_to_json(&result.data, &value, &fx->err), PIP_OK);
    assert_true(json_is_true(json_object_get(value, "k")));
    json_decref(value);
    msgpack_unpacked_destroy(&result);
}

int
main(void)
{
#define T(name)                                                               \
    cmocka_unit_test_setup_teardown(name, fixture_setup, fixture_teardown)
    const struct CMUnitTest tests[] = {
        T(test_round_trip_every_type),
        T(test_long_string_round_trip),
        T(test_pack_uses_compact_integers),
        T(test_pack_rejects_null_value),
        T(test_uint64_over_int64_rejected),
        T(test_float32_becomes_real),
        T(test_nan_and_inf_rejected),
        T(test_bin_becomes_base64),
        T(test_timestamps_become_datetimes),
        T(test_bad_timestamps_rejected),
        T(test_other_ext_rejected),
        T(test_non_string_keys_rejected),
        T(test_invalid_text_rejected),
        T(test_duplicate_keys_rejected),
        T(test_long_path_stays_utf8),
        T(test_decode_reports_check_errors),
        T(test_decode_stops_after_one_object),
        T(test_to_json_on_unpacked_object),
    };
#undef T

    return cmocka_run_group_tests(tests, NULL, NULL);
}
