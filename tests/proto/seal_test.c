/*
 * Tests of sealed frames, key files and the replay defence, with real
 * libsodium keys in a temporary folder.
 */
#define _GNU_SOURCE /* memmem */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <cmocka.h>

#include "pip/seal.h"
#include "test_util.h"

#define PLAIN "\x94\x00\x01\xa9node.ping\x90"
#define PLAIN_LEN (sizeof(PLAIN) - 1)
#define FRAME_MAX (PLAIN_LEN + PIP_SEAL_MAX_OVERHEAD)

typedef struct fixture {
    char dir[64];
    char net[128];
    char other_net[128];
    char alice[128];
    char bob[128];
    char trusted_alice[128]; /* contains alice's public-key line only */
} fixture;

static void
write_text(const char *path, const char *text, mode_t mode)
{
    FILE *f = fopen(path, "w");

    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    assert_int_equal(chmod(path, mode), 0);
}

static int
setup(void **state)
{
    fixture *fx = calloc(1, sizeof(*fx));
    char line[256];
    pip_error err;

    if (fx == NULL) {
        return -1;
    }
    snprintf(fx->dir, sizeof(fx->dir), "/tmp/pip-seal-XXXXXX");
    if (mkdtemp(fx->dir) == NULL) {
        free(fx);
        return -1;
    }
    snprintf(fx->net, sizeof(fx->net), "%s/net.key", fx->dir);
    snprintf(fx->other_net, sizeof(fx->other_net), "%s/other.key", fx->dir);
    snprintf(fx->alice, sizeof(fx->alice), "%s/alice.id", fx->dir);
    snprintf(fx->bob, sizeof(fx->bob), "%s/bob.id", fx->dir);
    snprintf(fx->trusted_alice, sizeof(fx->trusted_alice), "%s/trusted",
             fx->dir);
    pip_error_init(&err);
    if (pip_key_write_network(fx->net, &err) != PIP_OK ||
        pip_key_write_network(fx->other_net, &err) != PIP_OK ||
        pip_key_write_identity(fx->alice, "alice", line, sizeof(line),
                               &err) != PIP_OK ||
        pip_key_write_identity(fx->bob, "bob", NULL, 0, &err) != PIP_OK) {
        fprintf(stderr, "setup: %s\n", err.message);
        return -1;
    }
    strcat(line, "\n");
    write_text(fx->trusted_alice, line, 0644);
    *state = fx;
    return 0;
}

static int
teardown(void **state)
{
    fixture *fx = *state;

    test_util_remove_tree(fx->dir);
    free(fx);
    return 0;
}

/* A keyring with the network key at net, and an identity and trusted
 * list when given. */
static pip_keyring *
keyring(const char *net, const char *identity, const char *trusted)
{
    pip_keyring *kr = NULL;
    pip_error err;

    pip_error_init(&err);
    assert_int_equal(pip_keyring_new(&kr, &err), PIP_OK);
    assert_int_equal(pip_keyring_load_network_key(kr, net, &err), PIP_OK);
    if (identity != NULL) {
        assert_int_equal(pip_keyring_load_identity(kr, identity, &err),
                         PIP_OK);
    }
    if (trusted != NULL) {
        assert_int_equal(pip_keyring_load_trusted(kr, trusted, &err), PIP_OK);
    }
    return kr;
}

static size_t
seal_plain(const pip_keyring *kr, pip_seal_kind kind, const char *context,
           uint8_t *frame, uint8_t nonce[PIP_SEAL_NONCE_BYTES])
{
    size_t len = 0;

    assert_int_equal(pip_seal(kr, kind, (const uint8_t *)context,
                              context != NULL ? strlen(context) : 0,
                              (const uint8_t *)PLAIN, PLAIN_LEN, frame, &len,
                              nonce),
                     PIP_OK);
    assert_true(len <= PLAIN_LEN + pip_seal_overhead(kr));
    return len;
}

/* Opens frame and returns the error code, or "" on success. */
static const char *
open_code(pip_keyring *kr, pip_seal_kind kind, const char *context,
          const uint8_t *frame, size_t len, pip_peer *peer)
{
    static pip_error err;
    uint8_t plain[FRAME_MAX];
    size_t plain_len = 0;
    int rv;

    pip_error_init(&err);
    rv = pip_open(kr, kind, (const uint8_t *)context,
                  context != NULL ? strlen(context) : 0, frame, len, plain,
                  &plain_len, peer, NULL, &err);
    if (rv == PIP_OK) {
        assert_int_equal(plain_len, PLAIN_LEN);
        assert_memory_equal(plain, PLAIN, PLAIN_LEN);
        return "";
    }
    assert_int_equal(rv, PIP_E_UNAUTHORIZED);
    return err.code;
}

static void
test_request_opens_only_once(void **state)
{
    fixture *fx = *state;
    pip_keyring *sender = keyring(fx->net, NULL, NULL);
    pip_keyring *receiver = keyring(fx->net, NULL, NULL);
    uint8_t frame[FRAME_MAX];
    size_t len = seal_plain(sender, PIP_SEAL_REQUEST, NULL, frame, NULL);
    pip_peer peer;
    pip_seal_stats st;

    assert_int_equal(frame[0], PIP_SEAL_MAGIC);
    assert_true(pip_seal_is_frame(frame, len));
    /* The plain text does not appear in the frame. */
    assert_null(memmem(frame, len, "node.ping", 9));
    assert_string_equal(
        open_code(receiver, PIP_SEAL_REQUEST, NULL, frame, len, &peer), "");
    assert_false(peer.identified);
    assert_string_equal(
        open_code(receiver, PIP_SEAL_REQUEST, NULL, frame, len, NULL),
        "REPLAYED");
    pip_keyring_stats(receiver, &st);
    assert_int_equal(st.replayed, 1);
    assert_int_equal(st.auth_failed, 0);
    pip_keyring_free(sender);
    pip_keyring_free(receiver);
}

static void
test_wrong_key_or_byte_fails(void **state)
{
    fixture *fx = *state;
    pip_keyring *sender = keyring(fx->net, NULL, NULL);
    pip_keyring *stranger = keyring(fx->other_net, NULL, NULL);
    uint8_t frame[FRAME_MAX];
    size_t len = seal_plain(sender, PIP_SEAL_REQUEST, NULL, frame, NULL);
    pip_seal_stats st;

    assert_string_equal(
        open_code(stranger, PIP_SEAL_REQUEST, NULL, frame, len, NULL),
        "AUTH_FAILED");
    /* Every byte is covered: header, nonce, ciphertext and tag. */
    for (size_t i = 1; i < len; i++) {
        frame[i] ^= 0x01;
        assert_string_not_equal(
            open_code(sender, PIP_SEAL_REQUEST, NULL, frame, len, NULL), "");
        frame[i] ^= 0x01;
    }
    assert_string_equal(open_code(sender, PIP_SEAL_REQUEST, NULL,
                                  (const uint8_t *)PLAIN, PLAIN_LEN, NULL),
                        "NOT_SEALED");
    assert_string_equal(
        open_code(sender, PIP_SEAL_REQUEST, NULL, frame, 20, NULL),
        "AUTH_FAILED");
    /* A request frame is not accepted as an event. */
    assert_string_equal(
        open_code(sender, PIP_SEAL_EVENT, NULL, frame, len, NULL),
        "AUTH_FAILED");
    pip_keyring_stats(stranger, &st);
    assert_int_equal(st.auth_failed, 1);
    pip_keyring_free(sender);
    pip_keyring_free(stranger);
}

static void
test_reply_bound_to_request(void **state)
{
    fixture *fx = *state;
    pip_keyring *kr = keyring(fx->net, NULL, NULL);
    pip_keyring *strict;
    uint8_t frame[FRAME_MAX];
    size_t len = seal_plain(kr, PIP_SEAL_REPLY, "nonce-of-request-1", frame,
                            NULL);

    assert_string_equal(open_code(kr, PIP_SEAL_REPLY, "nonce-of-request-2",
                                  frame, len, NULL),
                        "AUTH_FAILED");
    assert_string_equal(open_code(kr, PIP_SEAL_REPLY, "nonce-of-request-1",
                                  frame, len, NULL),
                        "");
    /* Replies are bound to their request, not to the replay cache. */
    assert_string_equal(open_code(kr, PIP_SEAL_REPLY, "nonce-of-request-1",
                                  frame, len, NULL),
                        "");
    pip_keyring_free(kr);

    /* A node with an identity sends unsigned replies, and a trusted list
     * does not apply to them. */
    kr = keyring(fx->net, fx->alice, NULL);
    strict = keyring(fx->net, NULL, fx->trusted_alice);
    len = seal_plain(kr, PIP_SEAL_REPLY, "n", frame, NULL);
    assert_int_equal(frame[2], PIP_SEAL_REPLY);
    assert_string_equal(open_code(strict, PIP_SEAL_REPLY, "n", frame, len,
                                  NULL),
                        "");
    pip_keyring_free(kr);
    pip_keyring_free(strict);
}

static void
test_event_bound_to_topic(void **state)
{
    fixture *fx = *state;
    pip_keyring *kr = keyring(fx->net, NULL, NULL);
    uint8_t frame[FRAME_MAX];
    size_t len = seal_plain(kr, PIP_SEAL_EVENT, "settings.changed", frame,
                            NULL);

    assert_string_equal(
        open_code(kr, PIP_SEAL_EVENT, "settings.deleted", frame, len, NULL),
        "AUTH_FAILED");
    assert_string_equal(
        open_code(kr, PIP_SEAL_EVENT, "settings.changed", frame, len, NULL),
        "");
    pip_keyring_free(kr);
}

static void
test_signed_frame_names_sender(void **state)
{
    fixture *fx = *state;
    pip_keyring *alice = keyring(fx->net, fx->alice, NULL);
    pip_keyring *bob = keyring(fx->net, fx->bob, NULL);
    pip_keyring *strict = keyring(fx->net, NULL, fx->trusted_alice);
    pip_keyring *open = keyring(fx->net, NULL, NULL);
    uint8_t frame[FRAME_MAX];
    char label[PIP_SEAL_NAME_MAX + 1];
    pip_peer peer;
    size_t len;

    len = seal_plain(alice, PIP_SEAL_REQUEST, NULL, frame, NULL);
    assert_int_equal(frame[2], PIP_SEAL_REQUEST | PIP_SEAL_SIGNED);
    assert_string_equal(
        open_code(strict, PIP_SEAL_REQUEST, NULL, frame, len, &peer), "");
    assert_true(peer.identified);
    assert_string_equal(peer.name, "alice");
    assert_string_equal(pip_peer_label(&peer, label, sizeof(label)),
                        "alice");

    /* Without a trusted list the key is still verified, but unnamed. */
    len = seal_plain(bob, PIP_SEAL_REQUEST, NULL, frame, NULL);
    assert_string_equal(
        open_code(open, PIP_SEAL_REQUEST, NULL, frame, len, &peer), "");
    assert_true(peer.identified);
    assert_string_equal(peer.name, "");
    assert_memory_equal(pip_peer_label(&peer, label, sizeof(label)), "key:",
                        4);
    assert_string_equal(
        open_code(strict, PIP_SEAL_REQUEST, NULL, frame, len, NULL),
        "UNTRUSTED_SENDER");

    len = seal_plain(open, PIP_SEAL_REQUEST, NULL, frame, NULL);
    assert_string_equal(
        open_code(strict, PIP_SEAL_REQUEST, NULL, frame, len, NULL),
        "UNTRUSTED_SENDER");

    /* Bob cannot pass his frame off as Alice's by naming her key. */
    {
        uint8_t alices[FRAME_MAX];

        seal_plain(alice, PIP_SEAL_REQUEST, NULL, alices, NULL);
        len = seal_plain(bob, PIP_SEAL_REQUEST, NULL, frame, NULL);
        memcpy(frame + PIP_SEAL_HEADER_BYTES, alices + PIP_SEAL_HEADER_BYTES,
               PIP_SEAL_KEY_BYTES);
    }
    assert_string_equal(
        open_code(open, PIP_SEAL_REQUEST, NULL, frame, len, NULL),
        "AUTH_FAILED");
    pip_keyring_free(alice);
    pip_keyring_free(bob);
    pip_keyring_free(strict);
    pip_keyring_free(open);
}

static void
test_stale_frame_rejected(void **state)
{
    fixture *fx = *state;
    pip_keyring *kr = keyring(fx->net, NULL, NULL);
    const struct timespec pause = {1, 200000000L};
    uint8_t frame[FRAME_MAX];
    size_t len;

    pip_keyring_set_replay(kr, 1000, 0);
    len = seal_plain(kr, PIP_SEAL_EVENT, "a.b", frame, NULL);
    nanosleep(&pause, NULL);
    assert_string_equal(open_code(kr, PIP_SEAL_EVENT, "a.b", frame, len, NULL),
                        "REPLAYED");
    pip_keyring_free(kr);
}

/* Fills the replay cache past its size: every fresh frame passes, and a
 * frame from a generation that was dropped is still rejected. */
static void
test_replay_cache_bounded_and_safe(void **state)
{
    fixture *fx = *state;
    pip_keyring *kr = keyring(fx->net, NULL, NULL);
    uint8_t first[FRAME_MAX];
    uint8_t recent[FRAME_MAX];
    uint8_t frame[FRAME_MAX];
    size_t first_len;
    size_t recent_len = 0;
    size_t len;

    pip_keyring_set_replay(kr, 60000, 4096);
    first_len = seal_plain(kr, PIP_SEAL_REQUEST, NULL, first, NULL);
    assert_string_equal(
        open_code(kr, PIP_SEAL_REQUEST, NULL, first, first_len, NULL), "");
    for (int i = 0; i < 10000; i++) {
        len = seal_plain(kr, PIP_SEAL_REQUEST, NULL, frame, NULL);
        assert_string_equal(
            open_code(kr, PIP_SEAL_REQUEST, NULL, frame, len, NULL), "");
        if (i == 9990) {
            memcpy(recent, frame, len);
            recent_len = len;
        }
    }
    assert_string_equal(
        open_code(kr, PIP_SEAL_REQUEST, NULL, recent, recent_len, NULL),
        "REPLAYED");
    assert_string_equal(
        open_code(kr, PIP_SEAL_REQUEST, NULL, first, first_len, NULL),
        "REPLAYED");
    pip_keyring_free(kr);
}

static void
test_key_files_private_and_checked(void **state)
{
    fixture *fx = *state;
    char path[160];
    char line[256];
    pip_keyring *kr = NULL;
    struct stat st;
    pip_error err;

    pip_error_init(&err);
    assert_int_equal(stat(fx->net, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(stat(fx->alice, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(pip_key_write_network(fx->net, &err),
                     PIP_E_BAD_REQUEST);
    assert_string_equal(err.code, "KEY_FILE_EXISTS");
    assert_int_equal(pip_key_write_identity(fx->bob, "bad name", NULL, 0,
                                            &err),
                     PIP_E_BAD_REQUEST);

    assert_int_equal(pip_key_public_line(fx->alice, line, sizeof(line), &err),
                     PIP_OK);
    assert_memory_equal(line, "pip-public-key alice ", 21);

    assert_int_equal(pip_keyring_new(&kr, &err), PIP_OK);
    chmod(fx->net, 0640);
    assert_int_equal(pip_keyring_load_network_key(kr, fx->net, &err),
                     PIP_E_BAD_REQUEST);
    assert_string_equal(err.code, "KEY_FILE_PERMISSIONS");
    assert_non_null(strstr(err.message, "chmod 600"));
    chmod(fx->net, 0600);

    snprintf(path, sizeof(path), "%s/broken.key", fx->dir);
    write_text(path, "# made by hand\n\npip-network-key c2VjcmV0LXZhbHVl\n",
               0600);
    assert_int_equal(pip_keyring_load_network_key(kr, path, &err),
                     PIP_E_BAD_REQUEST);
    assert_string_equal(err.code, "KEY_FILE_INVALID");
    assert_non_null(strstr(err.message, "Line 3 of"));
    /* The error names the line, never its content. */
    assert_null(strstr(err.message, "c2VjcmV0LXZhbHVl"));

    assert_int_equal(pip_keyring_load_network_key(kr, fx->alice, &err),
                     PIP_E_BAD_REQUEST);
    assert_non_null(strstr(err.message, "pass it with --identity-file"));
    assert_int_equal(pip_keyring_load_trusted(kr, fx->net, &err),
                     PIP_E_BAD_REQUEST);
    assert_false(pip_keyring_sealing(kr));
    assert_int_equal(pip_keyring_parse_network_key(kr, "pip-network-key x",
                                                   "PIP_NETWORK_KEY", &err),
                     PIP_E_BAD_REQUEST);
    assert_non_null(strstr(err.message, "PIP_NETWORK_KEY"));
    assert_string_equal(pip_keyring_mode(kr),
                        "unauthenticated: no network key, traffic is plain");
    pip_keyring_free(kr);
    pip_error_fini(&err);
}

static void
test_identity_needs_network_key(void **state)
{
    fixture *fx = *state;
    pip_key_sources src = {.identity_file = fx->alice};
    pip_keyring *kr = NULL;
    pip_error err;

    pip_error_init(&err);
    unsetenv("PIP_NETWORK_KEY_FILE");
    unsetenv("PIP_NETWORK_KEY");
    assert_int_equal(pip_keyring_configure(&src, &kr, &err),
                     PIP_E_BAD_REQUEST);
    assert_string_equal(err.code, "NETWORK_KEY_MISSING");
    assert_null(kr);

    src.identity_file = NULL;
    assert_int_equal(pip_keyring_configure(&src, &kr, &err), PIP_OK);
    assert_null(kr);

    setenv("PIP_NETWORK_KEY_FILE", fx->net, 1);
    src.identity_file = fx->alice;
    assert_int_equal(pip_keyring_configure(&src, &kr, &err), PIP_OK);
    assert_true(pip_keyring_sealing(kr));
    assert_true(pip_keyring_signing(kr));
    assert_string_equal(pip_keyring_identity_name(kr), "alice");
    assert_non_null(strstr(pip_keyring_mode(kr), "signed as \"alice\""));
    unsetenv("PIP_NETWORK_KEY_FILE");
    pip_keyring_free(kr);
    pip_error_fini(&err);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_request_opens_only_once),
        cmocka_unit_test(test_wrong_key_or_byte_fails),
        cmocka_unit_test(test_reply_bound_to_request),
        cmocka_unit_test(test_event_bound_to_topic),
        cmocka_unit_test(test_signed_frame_names_sender),
        cmocka_unit_test(test_stale_frame_rejected),
        cmocka_unit_test(test_replay_cache_bounded_and_safe),
        cmocka_unit_test(test_key_files_private_and_checked),
        cmocka_unit_test(test_identity_needs_network_key),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
