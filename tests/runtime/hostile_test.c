/*
 * Bad input sent to a running node over a real socket.  Every case
 * checks the error that comes back (or that the message is dropped) and
 * that the node still replies to a good call afterwards.
 */
#include "node_fixture.h"

#define HOSTILE_MAX_MSG_BYTES 65536
#define HOSTILE_DROP_WAIT_MS 500
/* Long enough that a socket of the drop cases never redials. */
#define HOSTILE_REDIAL_MS 60000

/* Packs the bytes of one hostile message into sbuf. */
typedef void (*hostile_build_fn)(msgpack_sbuffer *sbuf);

typedef struct hostile_case {
    const char *name;
    hostile_build_fn build;
    pip_category category; /* PIP_OK: the node drops the message */
    const char *code;
    bool msgid_known; /* the response carries msgid 7, not nil; a
                       * message that is no request gets nil */
} hostile_case;

static msgpack_packer
hostile_packer(msgpack_sbuffer *sbuf)
{
    msgpack_packer pk;

    msgpack_packer_init(&pk, sbuf, msgpack_sbuffer_write);
    return pk;
}

static void
hostile_pack_str(msgpack_packer *pk, const char *text)
{
    msgpack_pack_str(pk, strlen(text));
    msgpack_pack_str_body(pk, text, strlen(text));
}

/* [0, 7, method, [args]] with args given as a builder of one object. */
static void
hostile_pack_request(msgpack_sbuffer *sbuf, const char *method,
                     void (*pack_args)(msgpack_packer *pk))
{
    msgpack_packer pk = hostile_packer(sbuf);

    msgpack_pack_array(&pk, 4);
    msgpack_pack_uint8(&pk, 0);
    msgpack_pack_uint8(&pk, 7);
    hostile_pack_str(&pk, method);
    msgpack_pack_array(&pk, 1);
    pack_args(&pk);
}

static void
hostile_args_empty(msgpack_packer *pk)
{
    msgpack_pack_map(pk, 0);
}

static void
hostile_args_text(msgpack_packer *pk)
{
    msgpack_pack_map(pk, 1);
    hostile_pack_str(pk, "text");
    hostile_pack_str(pk, "hello");
}

/* A small deterministic generator, so a failure can be replayed. */
static uint32_t
hostile_random(uint32_t *seed)
{
    *seed ^= *seed << 13;
    *seed ^= *seed >> 17;
    *seed ^= *seed << 5;
    return *seed;
}

static void
build_random_bytes(msgpack_sbuffer *sbuf)
{
    static uint32_t seed = 0x2545f491;
    size_t len = 1 + hostile_random(&seed) % 512;

    for (size_t i = 0; i < len; i++) {
        char byte = (char)(hostile_random(&seed) & 0xff);

        msgpack_sbuffer_write(sbuf, &byte, 1);
    }
}

static void
build_empty(msgpack_sbuffer *sbuf)
{
    (void)sbuf;
}

static void
build_good_request(msgpack_sbuffer *sbuf)
{
    hostile_pack_request(sbuf, "demo.echo", hostile_args_text);
}

/* A good request cut to `keep` bytes; keep < 0 counts from the end. */
static void
build_truncated(msgpack_sbuffer *sbuf, long keep)
{
    msgpack_sbuffer full;

    msgpack_sbuffer_init(&full);
    build_good_request(&full);
    if (keep < 0) {
        keep += (long)full.size;
    }
    msgpack_sbuffer_write(sbuf, full.data, (size_t)keep);
    msgpack_sbuffer_destroy(&full);
}

static void
build_cut_1(msgpack_sbuffer *sbuf)
{
    build_truncated(sbuf, 1);
}

static void
build_cut_after_msgid(msgpack_sbuffer *sbuf)
{
    build_truncated(sbuf, 3);
}

static void
build_cut_in_method(msgpack_sbuffer *sbuf)
{
    build_truncated(sbuf, 7);
}

static void
build_cut_last_byte(msgpack_sbuffer *sbuf)
{
    build_truncated(sbuf, -1);
}

static void
build_not_array(msgpack_sbuffer *sbuf)
{
    msgpack_packer pk = hostile_packer(sbuf);

    msgpack_pack_map(&pk, 1);
    hostile_pack_str(&pk, "method");
    hostile_pack_str(&pk, "demo.echo");
}

static void
build_wrong_type_tag(msgpack_sbuffer *sbuf)
{
    msgpack_packer pk = hostile_packer(sbuf);

    msgpack_pack_array(&pk, 4);
    msgpack_pack_uint8(&pk, 1);
    msgpack_pack_uint8(&pk, 7);
    hostile_pack_str(&pk, "demo.echo");
    msgpack_pack_array(&pk, 0);
}

static void
build_three_elements(msgpack_sbuffer *sbuf)
{
    msgpack_packer pk = hostile_packer(sbuf);

    msgpack_pack_array(&pk, 3);
    msgpack_pack_uint8(&pk, 0);
    msgpack_pack_uint8(&pk, 7);
    hostile_pack_str(&pk, "demo.echo");
}

static void
build_msgid_string(msgpack_sbuffer *sbuf)
{
    msgpack_packer pk = hostile_packer(sbuf);

    msgpack_pack_array(&pk, 4);
    msgpack_pack_uint8(&pk, 0);
    hostile_pack_str(&pk, "seven");
    hostile_pack_str(&pk, "demo.echo");
    msgpack_pack_array(&pk, 0);
}

static void
build_method_not_string(msgpack_sbuffer *sbuf)
{
    msgpack_packer pk = hostile_packer(sbuf);

    msgpack_pack_array(&pk, 4);
    msgpack_pack_uint8(&pk, 0);
    msgpack_pack_uint8(&pk, 7);
    msgpack_pack_int(&pk, 42);
    msgpack_pack_array(&pk, 0);
}

static void
build_params_not_array(msgpack_sbuffer *sbuf)
{
    msgpack_packer pk = hostile_packer(sbuf);

    msgpack_pack_array(&pk, 4);
    msgpack_pack_uint8(&pk, 0);
    msgpack_pack_uint8(&pk, 7);
    hostile_pack_str(&pk, "demo.echo");
    msgpack_pack_map(&pk, 0);
}

static void
hostile_args_array(msgpack_packer *pk)
{
    msgpack_pack_array(pk, 2);
    msgpack_pack_int(pk, 1);
    msgpack_pack_int(pk, 2);
}

static void
build_args_not_map(msgpack_sbuffer *sbuf)
{
    hostile_pack_request(sbuf, "demo.echo", hostile_args_array);
}

static void
hostile_args_int_key(msgpack_packer *pk)
{
    msgpack_pack_map(pk, 1);
    msgpack_pack_int(pk, 1);
    msgpack_pack_int(pk, 2);
}

static void
build_args_int_key(msgpack_sbuffer *sbuf)
{
    hostile_pack_request(sbuf, "demo.echo", hostile_args_int_key);
}

static void
hostile_args_bad_utf8(msgpack_packer *pk)
{
    msgpack_pack_map(pk, 1);
    hostile_pack_str(pk, "text");
    msgpack_pack_str(pk, 2);
    msgpack_pack_str_body(pk, "\xc3\x28", 2);
}

static void
build_bad_utf8(msgpack_sbuffer *sbuf)
{
    hostile_pack_request(sbuf, "demo.echo", hostile_args_bad_utf8);
}

static void
build_method_without_dot(msgpack_sbuffer *sbuf)
{
    hostile_pack_request(sbuf, "demoecho", hostile_args_text);
}

static void
build_method_too_long(msgpack_sbuffer *sbuf)
{
    char method[PIP_METHOD_MAX + 16];

    memset(method, 'a', sizeof(method) - 1);
    method[sizeof(method) - 1] = '\0';
    method[10] = '.';
    hostile_pack_request(sbuf, method, hostile_args_empty);
}

static void
build_unknown_service(msgpack_sbuffer *sbuf)
{
    hostile_pack_request(sbuf, "nosuch.echo", hostile_args_text);
}

static void
build_unknown_command(msgpack_sbuffer *sbuf)
{
    hostile_pack_request(sbuf, "demo.nosuch", hostile_args_text);
}

static void
hostile_args_wrong_types(msgpack_packer *pk)
{
    msgpack_pack_map(pk, 2);
    hostile_pack_str(pk, "a");
    hostile_pack_str(pk, "one");
    hostile_pack_str(pk, "b");
    msgpack_pack_true(pk);
}

static void
build_wrong_arg_types(msgpack_sbuffer *sbuf)
{
    hostile_pack_request(sbuf, "demo.add", hostile_args_wrong_types);
}

static void
build_missing_args(msgpack_sbuffer *sbuf)
{
    hostile_pack_request(sbuf, "demo.add", hostile_args_empty);
}

static void
build_oversized(msgpack_sbuffer *sbuf)
{
    static char filler[HOSTILE_MAX_MSG_BYTES * 2];
    msgpack_packer pk = hostile_packer(sbuf);

    memset(filler, 'x', sizeof(filler));
    msgpack_pack_array(&pk, 4);
    msgpack_pack_uint8(&pk, 0);
    msgpack_pack_uint8(&pk, 7);
    hostile_pack_str(&pk, "demo.echo");
    msgpack_pack_array(&pk, 1);
    msgpack_pack_map(&pk, 1);
    hostile_pack_str(&pk, "text");
    msgpack_pack_str(&pk, sizeof(filler));
    msgpack_pack_str_body(&pk, filler, sizeof(filler));
}

static void
hostile_args_deep(msgpack_packer *pk)
{
    msgpack_pack_map(pk, 1);
    hostile_pack_str(pk, "text");
    for (int i = 0; i < 40; i++) {
        msgpack_pack_array(pk, 1);
    }
    msgpack_pack_nil(pk);
}

static void
build_deep_nesting(msgpack_sbuffer *sbuf)
{
    hostile_pack_request(sbuf, "demo.echo", hostile_args_deep);
}

static void
hostile_args_huge_array(msgpack_packer *pk)
{
    const char header[] = {(char)0xdd, (char)0xff, (char)0xff, (char)0xff,
                           (char)0xff, 1,          2,          3};

    msgpack_pack_map(pk, 1);
    hostile_pack_str(pk, "text");
    msgpack_sbuffer_write(pk->data, header, sizeof(header));
}

static void
build_huge_array_header(msgpack_sbuffer *sbuf)
{
    hostile_pack_request(sbuf, "demo.echo", hostile_args_huge_array);
}

static void
hostile_args_lying_array(msgpack_packer *pk)
{
    const char header[] = {(char)0xdc, 0x03, (char)0xe8, 1, 2, 3};

    msgpack_pack_map(pk, 1);
    hostile_pack_str(pk, "text");
    msgpack_sbuffer_write(pk->data, header, sizeof(header));
}

static void
build_lying_array_header(msgpack_sbuffer *sbuf)
{
    hostile_pack_request(sbuf, "demo.echo", hostile_args_lying_array);
}

static void
build_long_correlation_id(msgpack_sbuffer *sbuf)
{
    msgpack_packer pk = hostile_packer(sbuf);
    char cid[PIP_CORRELATION_ID_MAX + 8];

    memset(cid, 'c', sizeof(cid) - 1);
    cid[sizeof(cid) - 1] = '\0';
    msgpack_pack_array(&pk, 4);
    msgpack_pack_uint8(&pk, 0);
    msgpack_pack_uint8(&pk, 7);
    hostile_pack_str(&pk, "demo.echo");
    msgpack_pack_array(&pk, 2);
    hostile_args_text(&pk);
    msgpack_pack_map(&pk, 1);
    hostile_pack_str(&pk, "correlation_id");
    hostile_pack_str(&pk, cid);
}

static const hostile_case hostile_cases[] = {
    {"empty message", build_empty, PIP_E_BAD_REQUEST, "MALFORMED_MESSAGE",
     false},
    {"cut after 1 byte", build_cut_1, PIP_E_BAD_REQUEST, "MALFORMED_MESSAGE",
     false},
    {"cut after the msgid", build_cut_after_msgid, PIP_E_BAD_REQUEST,
     "MALFORMED_MESSAGE", true},
    {"cut inside the method", build_cut_in_method, PIP_E_BAD_REQUEST,
     "MALFORMED_MESSAGE", true},
    {"cut before the last byte", build_cut_last_byte, PIP_E_BAD_REQUEST,
     "MALFORMED_MESSAGE", true},
    {"map instead of array", build_not_array, PIP_E_BAD_REQUEST,
     "INVALID_ENVELOPE", false},
    {"response type tag", build_wrong_type_tag, PIP_E_BAD_REQUEST,
     "INVALID_ENVELOPE", false},
    {"three elements", build_three_elements, PIP_E_BAD_REQUEST,
     "INVALID_ENVELOPE", false},
    {"msgid is a string", build_msgid_string, PIP_E_BAD_REQUEST,
     "INVALID_ENVELOPE", false},
    {"method is an integer", build_method_not_string, PIP_E_BAD_REQUEST,
     "INVALID_METHOD", true},
    {"params is a map", build_params_not_array, PIP_E_BAD_REQUEST,
     "INVALID_ENVELOPE", true},
    {"args is an array", build_args_not_map, PIP_E_BAD_REQUEST,
     "INVALID_ENVELOPE", true},
    {"args has an integer key", build_args_int_key, PIP_E_BAD_REQUEST,
     "INVALID_DATA", true},
    {"string is not UTF-8", build_bad_utf8, PIP_E_BAD_REQUEST, "INVALID_DATA",
     true},
    {"method without a dot", build_method_without_dot, PIP_E_BAD_REQUEST,
     "INVALID_METHOD", true},
    {"method too long", build_method_too_long, PIP_E_BAD_REQUEST,
     "INVALID_METHOD", true},
    {"unknown service", build_unknown_service, PIP_E_NOT_FOUND,
     "UNKNOWN_SERVICE", true},
    {"unknown command", build_unknown_command, PIP_E_NOT_FOUND,
     "UNKNOWN_COMMAND", true},
    {"wrong argument types", build_wrong_arg_types, PIP_E_BAD_REQUEST,
     "INVALID_DATA", true},
    {"missing arguments", build_missing_args, PIP_E_BAD_REQUEST,
     "INVALID_DATA", true},
    {"nesting over max_depth", build_deep_nesting, PIP_E_BAD_REQUEST,
     "LIMIT_EXCEEDED", true},
    {"array header over the limit", build_huge_array_header, PIP_E_BAD_REQUEST,
     "LIMIT_EXCEEDED", true},
    {"array header past the end", build_lying_array_header, PIP_E_BAD_REQUEST,
     "MALFORMED_MESSAGE", true},
    {"correlation id too long", build_long_correlation_id, PIP_E_BAD_REQUEST,
     "INVALID_ENVELOPE", true},
    {"message over max_msg_bytes", build_oversized, PIP_OK, NULL, false},
};

#define HOSTILE_CASE_COUNT (sizeof(hostile_cases) / sizeof(hostile_cases[0]))

static int
hostile_setup(void **state)
{
    node_fixture *f = fixture_new();

    f->options.limits.max_msg_bytes = HOSTILE_MAX_MSG_BYTES;
    f->options.contexts = 8;
    f->options.workers = 2;
    fixture_start(f);
    *state = f;
    return 0;
}

/*
 * Dials the node with a socket that does not redial for a minute.  The
 * node closes the connection of a message it drops.  Once, in a loaded
 * sanitizer run, closing such a socket leaked NNG 1.5.2 objects made by
 * its dialer, most likely a redial in progress.
 */
static nng_socket
hostile_dial_once(node_fixture *f)
{
    nng_socket sock;

    assert_int_equal(nng_req0_open(&sock), 0);
    assert_int_equal(
        nng_socket_set_ms(sock, NNG_OPT_RECVTIMEO, HOSTILE_DROP_WAIT_MS), 0);
    assert_int_equal(
        nng_socket_set_ms(sock, NNG_OPT_RECONNMINT, HOSTILE_REDIAL_MS), 0);
    assert_int_equal(
        nng_socket_set_ms(sock, NNG_OPT_RECONNMAXT, HOSTILE_REDIAL_MS), 0);
    assert_int_equal(nng_dial(sock, pip_node_rpc_url(f->node, 0), NULL, 0), 0);
    fixture_ping(f, sock);
    return sock;
}

/* Sends the message on a fresh socket and checks that NNG dropped it. */
static void
hostile_expect_drop(node_fixture *f, const msgpack_sbuffer *sbuf)
{
    nng_socket sock = hostile_dial_once(f);
    pip_response resp[1];

    fixture_send(sock, sbuf->data, sbuf->size);
    assert_int_equal(fixture_recv(sock, resp, 1), -NNG_ETIMEDOUT);
    nng_close(sock);
}

static void
hostile_expect_error(node_fixture *f, const hostile_case *c,
                     const msgpack_sbuffer *sbuf)
{
    pip_response resp[FIXTURE_MAX_RESPONSES];
    int count;

    fixture_send(f->sock, sbuf->data, sbuf->size);
    count = fixture_recv(f->sock, resp, FIXTURE_MAX_RESPONSES);
    if (count != 1) {
        fail_msg("case '%s': expected 1 response, got %d", c->name, count);
    }
    if (!resp[0].failed || strcmp(resp[0].error.code, c->code) != 0) {
        fail_msg("case '%s': expected %s, got %s (%s)", c->name, c->code,
                 resp[0].failed ? resp[0].error.code : "success",
                 resp[0].error.message);
    }
    assert_int_equal(resp[0].error.category, c->category);
    if (resp[0].msgid != (c->msgid_known ? 7 : PIP_MSGID_NONE)) {
        fail_msg("case '%s': response has msgid %llu", c->name,
                 (unsigned long long)resp[0].msgid);
    }
    fixture_free_responses(resp, count);
}

static void
test_hostile_table(void **state)
{
    node_fixture *f = *state;

    for (size_t i = 0; i < HOSTILE_CASE_COUNT; i++) {
        const hostile_case *c = &hostile_cases[i];
        msgpack_sbuffer sbuf;

        msgpack_sbuffer_init(&sbuf);
        c->build(&sbuf);
        if (c->category == PIP_OK) {
            hostile_expect_drop(f, &sbuf);
        } else {
            hostile_expect_error(f, c, &sbuf);
        }
        msgpack_sbuffer_destroy(&sbuf);
        fixture_expect_alive(f, f->sock);
    }
}

static void
test_random_bytes_rejected(void **state)
{
    node_fixture *f = *state;

    for (int round = 0; round < 50; round++) {
        pip_response resp[FIXTURE_MAX_RESPONSES];
        msgpack_sbuffer sbuf;
        int count;

        msgpack_sbuffer_init(&sbuf);
        build_random_bytes(&sbuf);
        fixture_send(f->sock, sbuf.data, sbuf.size);
        msgpack_sbuffer_destroy(&sbuf);

        /* Random bytes may contain several small objects: one response
         * each. */
        count = fixture_recv(f->sock, resp, FIXTURE_MAX_RESPONSES);
        assert_true(count >= 1);
        for (int i = 0; i < count; i++) {
            assert_true(resp[i].failed);
            assert_int_equal(resp[i].error.category, PIP_E_BAD_REQUEST);
        }
        fixture_free_responses(resp, count);
    }
    fixture_expect_alive(f, f->sock);
}

static void
test_garbage_after_good_request(void **state)
{
    node_fixture *f = *state;
    pip_response resp[FIXTURE_MAX_RESPONSES];
    msgpack_sbuffer sbuf;
    const char junk[] = {(char)0xc1, 0x00};
    int count;

    msgpack_sbuffer_init(&sbuf);
    build_good_request(&sbuf);
    build_not_array(&sbuf);
    build_good_request(&sbuf);
    msgpack_sbuffer_write(&sbuf, junk, sizeof(junk));
    fixture_send(f->sock, sbuf.data, sbuf.size);
    msgpack_sbuffer_destroy(&sbuf);

    /* Good, bad envelope (stepped over), good, then bytes that end it. */
    count = fixture_recv(f->sock, resp, FIXTURE_MAX_RESPONSES);
    assert_int_equal(count, 4);
    assert_false(resp[0].failed);
    fixture_expect_error(&resp[1], PIP_E_BAD_REQUEST, "INVALID_ENVELOPE");
    assert_false(resp[2].failed);
    fixture_expect_error(&resp[3], PIP_E_BAD_REQUEST, "MALFORMED_MESSAGE");
    fixture_free_responses(resp, count);
    fixture_expect_alive(f, f->sock);
}

static void
test_batch_over_max_batch(void **state)
{
    node_fixture *f = *state;
    pip_response resp[FIXTURE_MAX_RESPONSES];
    pip_limits lim;
    msgpack_sbuffer sbuf;
    int count;

    pip_limits_default(&lim);
    msgpack_sbuffer_init(&sbuf);
    for (uint32_t i = 0; i < lim.max_batch + 5; i++) {
        fixture_pack(&sbuf, 100 + i, "demo.ping", NULL, NULL);
    }
    fixture_send(f->sock, sbuf.data, sbuf.size);
    msgpack_sbuffer_destroy(&sbuf);

    count = fixture_recv(f->sock, resp, FIXTURE_MAX_RESPONSES);
    assert_int_equal(count, (int)lim.max_batch + 1);
    assert_false(resp[0].failed);
    assert_int_equal(resp[lim.max_batch - 1].msgid, 100 + lim.max_batch - 1);
    fixture_expect_error(&resp[lim.max_batch], PIP_E_BAD_REQUEST,
                         "LIMIT_EXCEEDED");
    assert_int_equal(resp[lim.max_batch].msgid, PIP_MSGID_NONE);
    fixture_free_responses(resp, count);
    fixture_expect_alive(f, f->sock);
}

static void
test_unknown_command_names_describe(void **state)
{
    node_fixture *f = *state;
    pip_response resp;

    fixture_call(f, "demo.nosuch", NULL, &resp);
    fixture_expect_error(&resp, PIP_E_NOT_FOUND, "UNKNOWN_COMMAND");
    assert_non_null(strstr(resp.error.message, "pipcall describe demo"));
    pip_response_fini(&resp);
}

static void
test_many_sockets_then_alive(void **state)
{
    node_fixture *f = *state;
    nng_socket socks[16];

    /* More callers than contexts: the extra requests wait their turn. */
    for (int i = 0; i < 16; i++) {
        msgpack_sbuffer sbuf;

        socks[i] = fixture_dial(f, FIXTURE_RECV_TIMEOUT_MS);
        msgpack_sbuffer_init(&sbuf);
        fixture_pack(&sbuf, 1, "demo.ping", NULL, NULL);
        fixture_send(socks[i], sbuf.data, sbuf.size);
        msgpack_sbuffer_destroy(&sbuf);
    }
    for (int i = 0; i < 16; i++) {
        pip_response resp[1];

        assert_int_equal(fixture_recv(socks[i], resp, 1), 1);
        assert_false(resp[0].failed);
        fixture_free_responses(resp, 1);
        nng_close(socks[i]);
    }
    fixture_expect_alive(f, f->sock);
}

#define HOSTILE_TEST(fn)                                                      \
    cmocka_unit_test_setup_teardown(fn, hostile_setup, fixture_teardown)

int
main(void)
{
    const struct CMUnitTest tests[] = {
        HOSTILE_TEST(test_hostile_table),
        HOSTILE_TEST(test_random_bytes_rejected),
        HOSTILE_TEST(test_garbage_after_good_request),
        HOSTILE_TEST(test_batch_over_max_batch),
        HOSTILE_TEST(test_unknown_command_names_describe),
        HOSTILE_TEST(test_many_sockets_then_alive),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
