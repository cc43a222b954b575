/* Tests of the error model: pip_error values, categories, JSON form. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>

#include "pip/error.h"

static void
test_init_is_ok(void **state)
{
    pip_error err;

    (void)state;
    memset(&err, 0x5a, sizeof(err));
    pip_error_init(&err);
    assert_int_equal(err.category, PIP_OK);
    assert_string_equal(err.code, "");
    assert_string_equal(err.message, "");
    assert_null(err.details);
    assert_string_equal(err.correlation_id, "");
    pip_error_fini(&err);
}

static void
test_set_formats_and_returns(void **state)
{
    pip_error err;
    int rv;

    (void)state;
    pip_error_init(&err);
    pip_error_detail(&err, "old", json_integer(1));
    rv = pip_error_set(&err, PIP_E_NOT_FOUND, "COUNTER_NOT_FOUND",
                       "counter %s not found (%d)", "a.b", 7);
    assert_int_equal(rv, PIP_E_NOT_FOUND);
    assert_int_equal(err.category, PIP_E_NOT_FOUND);
    assert_string_equal(err.code, "COUNTER_NOT_FOUND");
    assert_string_equal(err.message, "counter a.b not found (7)");
    assert_null(err.details);
    pip_error_fini(&err);
}

static void
test_set_null_error(void **state)
{
    (void)state;
    assert_int_equal(pip_error_set(NULL, PIP_E_CONFLICT, "X", "y"),
                     PIP_E_CONFLICT);
    pip_error_detail(NULL, "key", json_integer(1));
}

static void
test_set_keeps_correlation_id(void **state)
{
    pip_error err;

    (void)state;
    pip_error_init(&err);
    strcpy(err.correlation_id, "cid-1");
    pip_error_set(&err, PIP_E_INTERNAL, "EXEC_FAILED", "failed");
    assert_string_equal(err.correlation_id, "cid-1");
    pip_error_fini(&err);
}

static void
test_long_message_stays_utf8(void **state)
{
    pip_error err;
    char text[1200];
    json_t *value;

    (void)state;
    /* "é" is two bytes, and the 511 bytes kept end inside one of them. */
    for (size_t i = 0; i + 2 < sizeof(text); i += 2) {
        text[i] = (char)0xc3;
        text[i + 1] = (char)0xa9;
        text[i + 2] = '\0';
    }
    pip_error_init(&err);
    pip_error_set(&err, PIP_E_BAD_REQUEST, "INVALID_DATA", "%s", text);
    assert_true(strlen(err.message) < PIP_MESSAGE_MAX);
    value = json_string(err.message);
    assert_non_null(value);
    json_decref(value);
    pip_error_fini(&err);
}

static void
test_detail_adds_keys(void **state)
{
    pip_error err;

    (void)state;
    pip_error_init(&err);
    pip_error_detail(&err, "argument", json_string("name"));
    pip_error_detail(&err, "expected", json_string("string"));
    pip_error_detail(&err, "ignored", NULL);
    assert_int_equal(json_object_size(err.details), 2);
    assert_string_equal(
        json_string_value(json_object_get(err.details, "argument")), "name");
    pip_error_fini(&err);
    assert_null(err.details);
}

static void
test_copy_shares_details(void **state)
{
    pip_error src;
    pip_error dst;

    (void)state;
    pip_error_init(&src);
    pip_error_init(&dst);
    pip_error_detail(&dst, "stale", json_true());
    pip_error_set(&src, PIP_E_CONFLICT, "DUPLICATE", "duplicate id");
    pip_error_detail(&src, "id", json_string("42"));
    strcpy(src.correlation_id, "abc");

    pip_error_copy(&dst, &src);
    assert_int_equal(dst.category, PIP_E_CONFLICT);
    assert_string_equal(dst.code, "DUPLICATE");
    assert_string_equal(dst.message, "duplicate id");
    assert_string_equal(dst.correlation_id, "abc");
    assert_ptr_equal(dst.details, src.details);
    assert_int_equal(src.details->refcount, 2);

    pip_error_copy(&dst, &dst);
    assert_int_equal(src.details->refcount, 2);
    pip_error_fini(&src);
    assert_string_equal(json_string_value(json_object_get(dst.details, "id")),
                        "42");
    pip_error_fini(&dst);
}

static void
test_category_names_round_trip(void **state)
{
    static const struct {
        pip_category category;
        const char *name;
        int status;
    } cases[] = {
        {PIP_E_BAD_REQUEST, "BadRequest", 400},
        {PIP_E_UNAUTHORIZED, "Unauthorized", 401},
        {PIP_E_NOT_FOUND, "NotFound", 404},
        {PIP_E_CONFLICT, "Conflict", 409},
        {PIP_E_INVALID_STATE, "InvalidState", 500},
        {PIP_E_UNSUPPORTED, "Unsupported", 500},
        {PIP_E_TIMEOUT, "NoResponse", 500},
        {PIP_E_UNAVAILABLE, "FailedInvocation", 500},
        {PIP_E_INTERNAL, "Internal", 500},
        {PIP_E_UNKNOWN, "Unknown", 500},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        assert_string_equal(pip_category_name(cases[i].category),
                            cases[i].name);
        assert_int_equal(pip_category_parse(cases[i].name), cases[i].category);
        assert_int_equal(pip_category_http_status(cases[i].category),
                         cases[i].status);
        assert_true(strlen(pip_strerror(cases[i].category)) > 0);
    }
}

static void
test_category_unknown_values(void **state)
{
    (void)state;
    assert_string_equal(pip_category_name(-1), "Unknown");
    assert_string_equal(pip_category_name(999), "Unknown");
    assert_int_equal(pip_category_parse("Teapot"), PIP_E_UNKNOWN);
    assert_int_equal(pip_category_parse("badrequest"), PIP_E_UNKNOWN);
    assert_int_equal(pip_category_parse(NULL), PIP_E_UNKNOWN);
    assert_int_equal(pip_category_http_status(999), 500);
    assert_string_equal(pip_strerror(0), "no error");
    assert_string_equal(pip_strerror(999), pip_strerror(PIP_E_UNKNOWN));
}

static void
test_to_json_fields(void **state)
{
    pip_error err;
    json_t *obj;

    (void)state;
    pip_error_init(&err);
    pip_error_set(&err, PIP_E_NOT_FOUND, "BLOB_NOT_FOUND", "blob %d", 5);
    pip_error_detail(&err, "blob_id", json_string("5"));
    strcpy(err.correlation_id, "trace-9");

    obj = pip_error_to_json(&err);
    assert_non_null(obj);
    assert_string_equal(json_string_value(json_object_get(obj, "type")),
                        "NotFound");
    assert_string_equal(json_string_value(json_object_get(obj, "category")),
                        "NotFound");
    assert_string_equal(json_string_value(json_object_get(obj, "code")),
                        "BLOB_NOT_FOUND");
    assert_int_equal(json_integer_value(json_object_get(obj, "status")), 404);
    assert_string_equal(json_string_value(json_object_get(obj, "message")),
                        "blob 5");
    assert_string_equal(
        json_string_value(json_object_get(obj, "correlation_id")), "trace-9");
    assert_true(json_equal(json_object_get(obj, "details"), err.details));
    assert_true(json_is_null(json_object_get(obj, "cause")));
    assert_true(json_is_null(json_object_get(obj, "stack_trace")));
    json_decref(obj);
    pip_error_fini(&err);
}

static void
test_to_json_empty_fields(void **state)
{
    pip_error err;
    json_t *obj;

    (void)state;
    pip_error_init(&err);
    pip_error_set(&err, PIP_E_INTERNAL, "EXEC_FAILED", "bad byte \xff");
    obj = pip_error_to_json(&err);
    assert_non_null(obj);
    assert_true(json_is_null(json_object_get(obj, "details")));
    assert_true(json_is_null(json_object_get(obj, "correlation_id")));
    assert_string_equal(json_string_value(json_object_get(obj, "message")),
                        "bad byte ?");
    json_decref(obj);
    pip_error_fini(&err);
}

static void
test_from_json_round_trip(void **state)
{
    pip_error err;
    pip_error back;
    json_t *obj;

    (void)state;
    pip_error_init(&err);
    pip_error_init(&back);
    pip_error_set(&err, PIP_E_UNAUTHORIZED, "WRONG_LOGIN", "wrong login");
    pip_error_detail(&err, "login", json_string("bob"));
    strcpy(err.correlation_id, "c1");

    obj = pip_error_to_json(&err);
    pip_error_from_json(&back, obj);
    assert_int_equal(back.category, PIP_E_UNAUTHORIZED);
    assert_string_equal(back.code, "WRONG_LOGIN");
    assert_string_equal(back.message, "wrong login");
    assert_string_equal(back.correlation_id, "c1");
    assert_true(json_equal(back.details, err.details));
    json_decref(obj);
    pip_error_fini(&err);
    pip_error_fini(&back);
}

static void
test_from_json_missing_fields(void **state)
{
    pip_error err;
    json_t *obj = json_pack("{s:s, s:[i]}", "code", "X", "details", 1);

    (void)state;
    pip_error_init(&err);
    pip_error_from_json(&err, obj);
    assert_int_equal(err.category, PIP_E_UNKNOWN);
    assert_string_equal(err.code, "X");
    assert_string_equal(err.message, "");
    assert_string_equal(err.correlation_id, "");
    assert_null(err.details);
    json_decref(obj);

    pip_error_from_json(&err, NULL);
    assert_int_equal(err.category, PIP_E_UNKNOWN);
    assert_string_equal(err.code, "");
    pip_error_fini(&err);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_init_is_ok),
        cmocka_unit_test(test_set_formats_and_returns),
        cmocka_unit_test(test_set_null_error),
        cmocka_unit_test(test_set_keeps_correlation_id),
        cmocka_unit_test(test_long_message_stays_utf8),
        cmocka_unit_test(test_detail_adds_keys),
        cmocka_unit_test(test_copy_shares_details),
        cmocka_unit_test(test_category_names_round_trip),
        cmocka_unit_test(test_category_unknown_values),
        cmocka_unit_test(test_to_json_fields),
        cmocka_unit_test(test_to_json_empty_fields),
        cmocka_unit_test(test_from_json_round_trip),
        cmocka_unit_test(test_from_json_missing_fields),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
