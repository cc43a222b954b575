/* Tests of pip_mp_check(): well-formed msgpack, truncation, limits. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "pip/wire.h"

/* One byte string of a table, written as a C string literal. */
typedef struct mp_case {
    const char *name;
    const char *bytes;
    size_t len;
} mp_case;

#define CASE(name, lit)                                                       \
    {                                                                         \
        name, lit, sizeof(lit) - 1                                            \
    }

static const mp_case good_cases[] = {
    CASE("nil", "\xc0"),
    CASE("false", "\xc2"),
    CASE("true", "\xc3"),
    CASE("positive fixint", "\x7f"),
    CASE("negative fixint", "\xe0"),
    CASE("uint8", "\xcc\xff"),
    CASE("uint16", "\xcd\xff\xff"),
    CASE("uint32", "\xce\xff\xff\xff\xff"),
    CASE("uint64", "\xcf\xff\xff\xff\xff\xff\xff\xff\xff"),
    CASE("int8", "\xd0\x80"),
    CASE("int16", "\xd1\x80\x00"),
    CASE("int32", "\xd2\x80\x00\x00\x00"),
    CASE("int64", "\xd3\x80\x00\x00\x00\x00\x00\x00\x00"),
    CASE("float32", "\xca\x3f\x80\x00\x00"),
    CASE("float64", "\xcb\x3f\xf0\x00\x00\x00\x00\x00\x00"),
    CASE("fixstr empty", "\xa0"),
    CASE("fixstr", "\xa3"
                   "abc"),
    CASE("str8", "\xd9\x03"
                 "abc"),
    CASE("str16", "\xda\x00\x03"
                  "abc"),
    CASE("str32", "\xdb\x00\x00\x00\x03"
                  "abc"),
    CASE("bin8", "\xc4\x02\x00\x01"),
    CASE("bin16", "\xc5\x00\x02\x00\x01"),
    CASE("bin32", "\xc6\x00\x00\x00\x02\x00\x01"),
    CASE("fixext1", "\xd4\x05\x01"),
    CASE("fixext2", "\xd5\x05\x01\x02"),
    CASE("fixext4", "\xd6\xff\x00\x00\x00\x01"),
    CASE("fixext8", "\xd7\xff\x00\x00\x00\x00\x00\x00\x00\x01"),
    CASE("fixext16", "\xd8\x05"
                     "0123456789abcdef"),
    CASE("ext8", "\xc7\x0c\xff"
                 "0123456789ab"),
    CASE("ext16", "\xc8\x00\x01\x05"
                  "x"),
    CASE("ext32", "\xc9\x00\x00\x00\x00\x05"),
    CASE("fixarray empty", "\x90"),
    CASE("fixarray", "\x93\x01\x02\x03"),
    CASE("array16", "\xdc\x00\x02\xc0\xc0"),
    CASE("array32", "\xdd\x00\x00\x00\x01\xc3"),
    CASE("fixmap empty", "\x80"),
    CASE("fixmap", "\x81\xa1"
                   "a"
                   "\x01"),
    CASE("map16", "\xde\x00\x01\xa1"
                  "a"
                  "\x90"),
    CASE("map32", "\xdf\x00\x00\x00\x01\x01\x02"),
    CASE("nested", "\x94\x00\x01\xa5"
                   "a.b_c"
                   "\x91\x82\xa1"
                   "x"
                   "\x92\x01"
                   "\x80\xa1"
                   "y"
                   "\xc4\x01\x00"),
};

static void
assert_code(const pip_error *err, const char *code)
{
    assert_int_equal(err->category, PIP_E_BAD_REQUEST);
    assert_string_equal(err->code, code);
}

static void
assert_limit(const pip_error *err, const char *limit, json_int_t value)
{
    assert_code(err, "LIMIT_EXCEEDED");
    assert_string_equal(
        json_string_value(json_object_get(err->details, "limit")), limit);
    assert_int_equal(
        json_integer_value(json_object_get(err->details, "value")), value);
}

static void
test_good_cases_pass(void **state)
{
    pip_error err;
    size_t consumed;

    (void)state;
    pip_error_init(&err);
    for (size_t i = 0; i < sizeof(good_cases) / sizeof(good_cases[0]); i++) {
        const mp_case *c = &good_cases[i];

        consumed = 0;
        if (pip_mp_check(c->bytes, c->len, NULL, &consumed, &err) != PIP_OK) {
            fail_msg("%s: %s", c->name, err.message);
        }
        assert_int_equal(consumed, c->len);
    }
    pip_error_fini(&err);
}

static void
test_good_cases_truncated_fail(void **state)
{
    pip_error err;
    size_t consumed = 99;

    (void)state;
    pip_error_init(&err);
    for (size_t i = 0; i < sizeof(good_cases) / sizeof(good_cases[0]); i++) {
        const mp_case *c = &good_cases[i];

        for (size_t len = 0; len < c->len; len++) {
            /* A copy of exactly len bytes lets ASan see any overread. */
            char *copy = malloc(len + 1);

            memcpy(copy, c->bytes, len);
            if (pip_mp_check(copy, len, NULL, &consumed, &err) == PIP_OK) {
                fail_msg("%s cut to %zu bytes was accepted", c->name, len);
            }
            assert_code(&err, "MALFORMED_MESSAGE");
            free(copy);
        }
    }
    assert_int_equal(consumed, 99);
    pip_error_fini(&err);
}

static void
test_trailing_bytes_not_consumed(void **state)
{
    pip_error err;
    size_t consumed = 0;

    (void)state;
    pip_error_init(&err);
    assert_int_equal(
        pip_mp_check("\x92\x01\x02\xc0\xc0", 5, NULL, &consumed, &err),
        PIP_OK);
    assert_int_equal(consumed, 3);
    assert_int_equal(pip_mp_check("\x01", 1, NULL, NULL, &err), PIP_OK);
    pip_error_fini(&err);
}

static void
test_reserved_byte_rejected(void **state)
{
    pip_error err;
    size_t consumed;

    (void)state;
    pip_error_init(&err);
    assert_int_equal(pip_mp_check("\x92\x01\xc1", 3, NULL, &consumed, &err),
                     PIP_E_BAD_REQUEST);
    assert_code(&err, "MALFORMED_MESSAGE");
    assert_int_equal(
        json_integer_value(json_object_get(err.details, "offset")), 2);
    pip_error_fini(&err);
}

/* Writes depth nested one-element arrays around a nil into buf. */
static size_t
nested_arrays(unsigned char *buf, size_t depth)
{
    memset(buf, 0x91, depth);
    buf[depth] = 0xc0;
    return depth + 1;
}

static void
test_depth_limit(void **state)
{
    unsigned char buf[64];
    pip_limits lim;
    pip_error err;
    size_t len;

    (void)state;
    pip_error_init(&err);
    pip_limits_default(&lim);
    assert_int_equal(lim.max_depth, 32);

    len = nested_arrays(buf, 32);
    assert_int_equal(pip_mp_check(buf, len, &lim, NULL, &err), PIP_OK);
    len = nested_arrays(buf, 33);
    assert_int_equal(pip_mp_check(buf, len, &lim, NULL, &err),
                     PIP_E_BAD_REQUEST);
    assert_limit(&err, "max_depth", 32);

    lim.max_depth = 3;
    len = nested_arrays(buf, 3);
    assert_int_equal(pip_mp_check(buf, len, &lim, NULL, &err), PIP_OK);
    assert_int_equal(pip_mp_check("\x91\x91\x91\x90", 4, &lim, NULL, &err),
                     PIP_E_BAD_REQUEST);
    assert_limit(&err, "max_depth", 3);
    assert_int_equal(
        pip_mp_check("\x91\x91\x81\xa1k\x80", 6, &lim, NULL, &err),
        PIP_E_BAD_REQUEST);

    lim.max_depth = 0;
    assert_int_equal(pip_mp_check("\x05", 1, &lim, NULL, &err), PIP_OK);
    assert_int_equal(pip_mp_check("\x90", 1, &lim, NULL, &err),
                     PIP_E_BAD_REQUEST);
    pip_error_fini(&err);
}

static void
test_depth_capped_at_unpacker_stack(void **state)
{
    unsigned char buf[64];
    pip_limits lim;
    pip_error err;
    size_t len;

    (void)state;
    pip_error_init(&err);
    pip_limits_default(&lim);
    lim.max_depth = 1000;
    len = nested_arrays(buf, 33);
    assert_int_equal(pip_mp_check(buf, len, &lim, NULL, &err),
                     PIP_E_BAD_REQUEST);
    assert_limit(&err, "max_depth", 32);
    pip_error_fini(&err);
}

static void
test_long_flat_array_is_fine(void **state)
{
    unsigned char *buf = malloc(3 + 60000);
    pip_error err;
    size_t consumed;

    (void)state;
    pip_error_init(&err);
    buf[0] = 0xdc;
    buf[1] = 60000 >> 8;
    buf[2] = 60000 & 0xff;
    memset(buf + 3, 0x90, 60000);
    assert_int_equal(pip_mp_check(buf, 3 + 60000, NULL, &consumed, &err),
                     PIP_OK);
    assert_int_equal(consumed, 3 + 60000);
    free(buf);
    pip_error_fini(&err);
}

static void
test_length_claims_past_end(void **state)
{
    static const mp_case cases[] = {
        CASE("array32 of 2^32-1 elements", "\xdd\xff\xff\xff\xff\xc0\xc0"),
        CASE("array16 of 3 with 2 bytes", "\xdc\x00\x03\xc0\xc0"),
        CASE("map32 of 2^32-1 pairs", "\xdf\xff\xff\xff\xff\xc0\xc0"),
        CASE("map of 2 pairs with 3 bytes", "\x82\x01\x02\x03"),
        CASE("str32 past the end", "\xdb\x00\x00\x00\x05"
                                   "abc"),
        CASE("str8 past the end", "\xd9\x04"
                                  "abc"),
        CASE("bin32 past the end", "\xc6\x00\x00\x01\x00"
                                   "x"),
        CASE("ext32 past the end", "\xc9\x00\x00\x00\x09\x01"
                                   "x"),
        CASE("fixext16 short", "\xd8\x01"
                               "0123"),
        CASE("nested str past the end", "\x91\x91\xa5"
                                        "abc"),
    };
    pip_limits lim;
    pip_error err;

    (void)state;
    pip_error_init(&err);
    pip_limits_default(&lim);
    lim.max_array_len = UINT32_MAX;
    lim.max_map_len = UINT32_MAX;
    lim.max_str_bytes = UINT32_MAX;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        if (pip_mp_check(cases[i].bytes, cases[i].len, &lim, NULL, &err) ==
            PIP_OK) {
            fail_msg("%s was accepted", cases[i].name);
        }
        assert_code(&err, "MALFORMED_MESSAGE");
    }
    pip_error_fini(&err);
}

static void
test_length_limits(void **state)
{
    pip_limits lim;
    pip_error err;

    (void)state;
    pip_error_init(&err);
    pip_limits_default(&lim);
    lim.max_array_len = 2;
    lim.max_map_len = 1;
    lim.max_str_bytes = 3;

    assert_int_equal(pip_mp_check("\x92\x01\x02", 3, &lim, NULL, &err),
                     PIP_OK);
    assert_int_equal(pip_mp_check("\x93\x01\x02\x03", 4, &lim, NULL, &err),
                     PIP_E_BAD_REQUEST);
    assert_limit(&err, "max_array_len", 2);

    assert_int_equal(pip_mp_check("\x82\x01\x02\x03\x04", 5, &lim, NULL, &err),
                     PIP_E_BAD_REQUEST);
    assert_limit(&err, "max_map_len", 1);

    assert_int_equal(pip_mp_check("\xa3"
                                  "abc",
                                  4, &lim, NULL, &err),
                     PIP_OK);
    assert_int_equal(pip_mp_check("\xa4"
                                  "abcd",
                                  5, &lim, NULL, &err),
                     PIP_E_BAD_REQUEST);
    assert_limit(&err, "max_str_bytes", 3);
    assert_int_equal(pip_mp_check("\xc4\x04"
                                  "abcd",
                                  6, &lim, NULL, &err),
                     PIP_E_BAD_REQUEST);
    assert_limit(&err, "max_str_bytes", 3);
    assert_int_equal(pip_mp_check("\xd8\x01"
                                  "0123456789abcdef",
                                  18, &lim, NULL, &err),
                     PIP_E_BAD_REQUEST);
    assert_limit(&err, "max_str_bytes", 3);

    /* The limit is checked before the bytes left, so a huge claim in a
     * short message reports the limit. */
    assert_int_equal(pip_mp_check("\xdb\xff\xff\xff\xff", 5, &lim, NULL, &err),
                     PIP_E_BAD_REQUEST);
    assert_limit(&err, "max_str_bytes", 3);
    pip_error_fini(&err);
}

static void
test_message_size_limit(void **state)
{
    pip_limits lim;
    pip_error err;

    (void)state;
    pip_error_init(&err);
    pip_limits_default(&lim);
    lim.max_msg_bytes = 4;
    assert_int_equal(pip_mp_check("\x93\x01\x02\x03", 4, &lim, NULL, &err),
                     PIP_OK);
    assert_int_equal(pip_mp_check("\x94\x01\x02\x03\x04", 5, &lim, NULL, &err),
                     PIP_E_BAD_REQUEST);
    assert_limit(&err, "max_msg_bytes", 4);
    pip_error_fini(&err);
}

static void
test_default_limits(void **state)
{
    pip_limits lim;

    (void)state;
    pip_limits_default(&lim);
    assert_int_equal(lim.max_msg_bytes, 1024 * 1024);
    assert_int_equal(lim.max_depth, 32);
    assert_int_equal(lim.max_str_bytes, 1024 * 1024);
    assert_int_equal(lim.max_array_len, 65536);
    assert_int_equal(lim.max_map_len, 65536);
    assert_int_equal(lim.max_batch, 64);
}

static void
test_null_error_is_allowed(void **state)
{
    (void)state;
    assert_int_equal(pip_mp_check("\xc1", 1, NULL, NULL, NULL),
                     PIP_E_BAD_REQUEST);
    assert_int_equal(pip_mp_check(NULL, 0, NULL, NULL, NULL),
                     PIP_E_BAD_REQUEST);
}

/*
 * Random mutations of a valid message: whatever pip_mp_check() accepts,
 * msgpack_unpack() must unpack to exactly the same size.
 */
static void
test_mutations_agree_with_unpacker(void **state)
{
    const mp_case *base =
        &good_cases[sizeof(good_cases) / sizeof(good_cases[0]) - 1];
    unsigned char buf[64];
    unsigned int seed = 12345;
    msgpack_zone zone;
    msgpack_object obj;
    msgpack_unpack_return ret;
    pip_error err;
    size_t consumed;
    size_t offset;

    (void)state;
    pip_error_init(&err);
    msgpack_zone_init(&zone, 1024);
    for (int round = 0; round < 20000; round++) {
        size_t len = base->len;

        memcpy(buf, base->bytes, len);
        for (int k = 0; k < 1 + round % 4; k++) {
            buf[rand_r(&seed) % len] = (unsigned char)rand_r(&seed);
        }
        len = 1 + rand_r(&seed) % len;
        if (pip_mp_check(buf, len, NULL, &consumed, &err) != PIP_OK) {
            continue;
        }
        offset = 0;
        ret = msgpack_unpack((const char *)buf, len, &offset, &zone, &obj);
        assert_true(ret == MSGPACK_UNPACK_SUCCESS ||
                    ret == MSGPACK_UNPACK_EXTRA_BYTES);
        assert_int_equal(offset, consumed);
        msgpack_zone_clear(&zone);
    }
    msgpack_zone_destroy(&zone);
    pip_error_fini(&err);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good_cases_pass),
        cmocka_unit_test(test_good_cases_truncated_fail),
        cmocka_unit_test(test_trailing_bytes_not_consumed),
        cmocka_unit_test(test_reserved_byte_rejected),
        cmocka_unit_test(test_depth_limit),
        cmocka_unit_test(test_depth_capped_at_unpacker_stack),
        cmocka_unit_test(test_long_flat_array_is_fine),
        cmocka_unit_test(test_length_claims_past_end),
        cmocka_unit_test(test_length_limits),
        cmocka_unit_test(test_message_size_limit),
        cmocka_unit_test(test_default_limits),
        cmocka_unit_test(test_null_error_is_allowed),
        cmocka_unit_test(test_mutations_agree_with_unpacker),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
