/*
 * Sealed traffic end to end, with real processes on loopback: discovery,
 * a counters node, pipcall and pipgate holding a network key made by
 * pipkey, and a node that accepts only trusted identities.  Checks that
 * holders of the key are served, that others get nothing but a failed
 * call, that a replayed request is dropped, that events are sealed, and
 * that the node counts what it rejected.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <curl/curl.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>

#include "harness.h"
#include "pip/client.h"
#include "pip/seal.h"

typedef struct fixture {
    harness *h;
    char net[PATH_MAX];
    char node_id[PATH_MAX];
    char tool_id[PATH_MAX];
    char stranger_id[PATH_MAX];
    char trusted[PATH_MAX]; /* the tool's public key only */
    pip_keyring *keys;      /* the network key, as the process default */
} fixture;

/* Runs pipkey with args and checks that it succeeded; returns stdout. */
static char *
pipkey(harness *h, const char *const *args)
{
    harness_output out;
    char *text;

    assert_int_equal(harness_run(h, args, 10000, &out), 0);
    if (out.exit_code != 0) {
        fprintf(stderr, "pipkey failed: %s\n", out.err);
    }
    assert_int_equal(out.exit_code, 0);
    text = strdup(out.out);
    harness_output_fini(&out);
    return text;
}

static int
setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));
    pip_key_sources src = {0};
    pip_error err;
    FILE *file;
    char *line;

    if (f == NULL || (f->h = harness_new()) == NULL) {
        free(f);
        return -1;
    }
    if (!harness_path(f->h, "net.key", f->net) ||
        !harness_path(f->h, "node.id", f->node_id) ||
        !harness_path(f->h, "tool.id", f->tool_id) ||
        !harness_path(f->h, "stranger.id", f->stranger_id) ||
        !harness_path(f->h, "trusted", f->trusted)) {
        return -1;
    }
    free(pipkey(f->h, (const char *const[]){"pipkey", "network", f->net,
                                           NULL}));
    free(pipkey(f->h, (const char *const[]){"pipkey", "identity", "node-a",
                                           f->node_id, NULL}));
    free(pipkey(f->h, (const char *const[]){"pipkey", "identity",
                                           "stranger", f->stranger_id,
                                           NULL}));
    line = pipkey(f->h, (const char *const[]){"pipkey", "identity", "tool-1",
                                             f->tool_id, NULL});
    file = fopen(f->trusted, "w");
    if (file == NULL) {
        return -1;
    }
    fputs(line, file);
    fclose(file);
    free(line);

    /* The children started from here on inherit the key. */
    setenv("PIP_NETWORK_KEY_FILE", f->net, 1);
    pip_error_init(&err);
    if (pip_keyring_configure(&src, &f->keys, &err) != PIP_OK) {
        fprintf(stderr, "setup: %s\n", err.message);
        return -1;
    }
    pip_keyring_set_default(f->keys);
    *state = f;
    return 0;
}

static int
teardown(void **state)
{
    fixture *f = *state;
    int rv = harness_free(f->h);

    unsetenv("PIP_NETWORK_KEY_FILE");
    pip_keyring_set_default(NULL);
    pip_keyring_free(f->keys);
    free(f);
    return rv;
}

/* Starts `pipnode counters` on url with extra NULL-ended flags. */
static harness_proc *
start_counters(fixture *f, const char *name, const char *url,
               const char *const *extra)
{
    char data[PATH_MAX];
    const char *argv[24];
    int n = 0;

    assert_true(harness_path(f->h, name, data));
    argv[n++] = "pipnode";
    argv[n++] = "--listen";
    argv[n++] = url;
    argv[n++] = "--data";
    argv[n++] = data;
    for (int i = 0; extra != NULL && extra[i] != NULL; i++) {
        argv[n++] = extra[i];
    }
    argv[n++] = "counters";
    argv[n] = NULL;
    return harness_start(f->h, name, argv, false);
}

/*
 * Starts discovery and `pipnode counters` on a free loopback port, whose
 * URL goes to url[HARNESS_URL_MAX], and waits until discovery lists the
 * node.  The registration itself goes through the sealed channel.
 */
static void
start_registered_counters(fixture *f, const char *name, char *url)
{
    assert_true(harness_start_discovery(f->h, 10000));
    snprintf(url, HARNESS_URL_MAX, "tcp://127.0.0.1:%d", harness_free_port());
    assert_non_null(start_counters(
        f, name, url,
        (const char *const[]){"--discovery", f->h->discovery_url, NULL}));
    assert_true(harness_wait_instances(f->h, "counters", 1, 10000));
}

/* Runs pipcall with the NULL-ended args; returns its exit code and keeps
 * its output in *out. */
static int
pipcall(fixture *f, harness_output *out, const char *const *args)
{
    const char *argv[24];
    int n = 0;

    argv[n++] = "pipcall";
    for (int i = 0; args[i] != NULL; i++) {
        argv[n++] = args[i];
    }
    argv[n] = NULL;
    assert_int_equal(harness_run(f->h, argv, 15000, out), 0);
    return out->exit_code;
}

#define PIPCALL(f, out, ...) \
    pipcall((f), (out), (const char *const[]){__VA_ARGS__, NULL})

/* The node's security statistics counter `key`. */
static json_int_t
refused(const char *url, const char *key)
{
    pip_client_options opt;
    pip_client *client = NULL;
    json_t *stats = NULL;
    json_int_t count;
    pip_error err;

    pip_error_init(&err);
    pip_client_options_init(&opt);
    opt.endpoint = url;
    opt.timeout_ms = 5000;
    assert_int_equal(pip_client_new(&opt, &client, &err), PIP_OK);
    assert_int_equal(
        pip_client_call(client, "node.statistics", NULL, NULL, &stats, &err),
        PIP_OK);
    assert_true(json_is_true(
        json_object_get(json_object_get(stats, "security"), "sealed")));
    count = json_integer_value(
        json_object_get(json_object_get(stats, "security"), key));
    json_decref(stats);
    pip_client_free(client);
    pip_error_fini(&err);
    return count;
}

/* No log of any child and no describe output contains the network key. */
static void
assert_no_key_in_logs(fixture *f)
{
    char *key_line = harness_read_file(f->net);
    char *key;
    harness_output out;

    assert_non_null(key_line);
    key = strchr(key_line, ' ');
    assert_non_null(key);
    key[strcspn(key, "\n")] = '\0';
    key++;
    assert_true(strlen(key) > 40);
    for (int i = 0; i < f->h->proc_count; i++) {
        char *log = harness_read_file(f->h->procs[i].log_path);

        assert_non_null(log);
        assert_null(strstr(log, key));
        free(log);
    }
    assert_int_equal(HARNESS_PIPCALL(f->h, &out, "--compact",
                                     "counters.describe"),
                     0);
    assert_int_equal(out.exit_code, 0);
    assert_null(strstr(out.out, key));
    harness_output_fini(&out);
    free(key_line);
}

static void
test_sealed_network_serves_key_holders(void **state)
{
    fixture *f = *state;
    harness_output out;
    char url[HARNESS_URL_MAX];
    json_t *result;

    start_registered_counters(f, "counters", url);

    assert_int_equal(HARNESS_PIPCALL(f->h, &out, "--compact",
                                     "counters.write_counter",
                                     "counter={\"name\":\"sealed\","
                                     "\"type\":1,\"count\":7}"),
                     0);
    assert_int_equal(out.exit_code, 0);
    harness_output_fini(&out);
    assert_int_equal(PIPCALL(f, &out, "--discovery", f->h->discovery_url,
                             "--compact", "counters.read_counters"),
                     0);
    result = harness_parse_json(out.out);
    assert_non_null(result);
    assert_non_null(strstr(out.out, "\"sealed\""));
    json_decref(result);
    harness_output_fini(&out);

    /* Without the key: nothing but a failed call, and the node counts it. */
    unsetenv("PIP_NETWORK_KEY_FILE");
    assert_int_equal(PIPCALL(f, &out, "--endpoint", url, "--timeout", "1500",
                             "counters.read_counters"),
                     1);
    setenv("PIP_NETWORK_KEY_FILE", f->net, 1);
    assert_non_null(strstr(out.err, "TIMEOUT"));
    assert_null(strstr(out.out, "sealed"));
    harness_output_fini(&out);
    assert_true(refused(url, "auth_failed") >= 1);

    assert_no_key_in_logs(f);

    /* Another network key fails the same way. */
    assert_int_equal(PIPCALL(f, &out, "--endpoint", url, "--timeout", "1500",
                             "--network-key-file", f->node_id,
                             "counters.read_counters"),
                     1);
    /* node.id is an identity, not a network key: rejected before any call,
     * and the error names the file, not its content. */
    assert_non_null(strstr(out.err, "node.id"));
    assert_null(strstr(out.err, "pip-identity"));
    harness_output_fini(&out);
}

/* pipbench seals its workload calls with the key too: every call
 * succeeds, and without the key every call fails. */
static void
test_pipbench_seals_its_calls(void **state)
{
    fixture *f = *state;
    char url[HARNESS_URL_MAX];
    char json_path[PATH_MAX];
    harness_output out;
    json_t *report;
    json_t *workload;

    snprintf(url, sizeof(url), "tcp://127.0.0.1:%d", harness_free_port());
    assert_non_null(start_counters(f, "benched", url, NULL));
    assert_true(harness_wait_ready(url, "node.ping", 10000));
    assert_true(harness_path(f->h, "bench.json", json_path));
    assert_int_equal(
        harness_run(f->h,
                    (const char *const[]){"pipbench", "--endpoint", url,
                                          "--count", "200", "-c", "4",
                                          "--warmup", "100", "--quiet",
                                          "--json", json_path,
                                          "counters.ping", NULL},
                    30000, &out),
        0);
    assert_int_equal(out.exit_code, 0);
    harness_output_fini(&out);
    report = json_load_file(json_path, 0, NULL);
    assert_non_null(report);
    workload = json_object_get(
        json_array_get(json_object_get(report, "points"), 0), "workload");
    assert_int_equal(json_integer_value(json_object_get(workload, "calls")),
                     200);
    assert_int_equal(json_integer_value(json_object_get(workload, "errors")),
                     0);
    json_decref(report);

    unsetenv("PIP_NETWORK_KEY_FILE");
    assert_int_equal(
        harness_run(f->h,
                    (const char *const[]){"pipbench", "--endpoint", url,
                                          "--count", "4", "-c", "2",
                                          "--warmup", "0", "--timeout",
                                          "300", "--quiet", "counters.ping",
                                          NULL},
                    30000, &out),
        0);
    setenv("PIP_NETWORK_KEY_FILE", f->net, 1);
    assert_int_not_equal(out.exit_code, 0);
    harness_output_fini(&out);
}

/* Sends bytes on a raw req socket; true when a reply came back. */
static bool
raw_exchange(nng_socket sock, const uint8_t *bytes, size_t len,
             nng_msg **reply)
{
    nng_msg *msg = NULL;

    assert_int_equal(nng_msg_alloc(&msg, len), 0);
    memcpy(nng_msg_body(msg), bytes, len);
    assert_int_equal(nng_sendmsg(sock, msg, 0), 0);
    return nng_recvmsg(sock, reply, 0) == 0;
}

static void
test_replayed_request_dropped(void **state)
{
    fixture *f = *state;
    static const uint8_t ping[] = {0x94, 0x00, 0x07, 0xa9, 'n', 'o', 'd',
                                   'e',  '.',  'p',  'i',  'n', 'g', 0x90};
    uint8_t frame[sizeof(ping) + PIP_SEAL_MAX_OVERHEAD];
    uint8_t nonce[PIP_SEAL_NONCE_BYTES];
    uint8_t plain[256];
    char url[HARNESS_URL_MAX];
    size_t frame_len = 0;
    size_t plain_len = 0;
    nng_socket sock;
    nng_msg *reply = NULL;
    pip_error err;

    snprintf(url, sizeof(url), "tcp://127.0.0.1:%d", harness_free_port());
    assert_non_null(start_counters(f, "replayed", url, NULL));
    assert_true(harness_wait_ready(url, "node.ping", 10000));

    assert_int_equal(pip_seal(f->keys, PIP_SEAL_REQUEST, NULL, 0, ping,
                              sizeof(ping), frame, &frame_len, nonce),
                     PIP_OK);
    assert_int_equal(nng_req0_open(&sock), 0);
    assert_int_equal(nng_socket_set_ms(sock, NNG_OPT_RECVTIMEO, 1500), 0);
    assert_int_equal(
        nng_socket_set_ms(sock, NNG_OPT_REQ_RESENDTIME, NNG_DURATION_INFINITE),
        0);
    assert_int_equal(nng_dial(sock, url, NULL, 0), 0);

    assert_true(raw_exchange(sock, frame, frame_len, &reply));
    pip_error_init(&err);
    assert_int_equal(pip_open(f->keys, PIP_SEAL_REPLY, nonce, sizeof(nonce),
                              nng_msg_body(reply), nng_msg_len(reply), plain,
                              &plain_len, NULL, NULL, &err),
                     PIP_OK);
    nng_msg_free(reply);
    reply = NULL;
    pip_error_fini(&err);

    /* The same bytes again: dropped, so the receive times out. */
    assert_false(raw_exchange(sock, frame, frame_len, &reply));
    nng_close(sock);
    assert_int_equal(refused(url, "replayed"), 1);
}

static void
test_trusted_list_admits_listed(void **state)
{
    fixture *f = *state;
    harness_output out;
    char url[HARNESS_URL_MAX];
    char *log;

    snprintf(url, sizeof(url), "tcp://127.0.0.1:%d", harness_free_port());
    assert_non_null(start_counters(
        f, "strict", url,
        (const char *const[]){"--identity-file", f->node_id, "--trusted-keys",
                              f->trusted, "--log-level", "debug", NULL}));
    /* Polls until the node is up: a rejected connection reaches no node,
     * so it is not counted as untrusted. */
    for (int i = 0; i < 50; i++) {
        bool answered;

        assert_int_equal(PIPCALL(f, &out, "--endpoint", url, "--timeout",
                                 "5000", "--identity-file", f->tool_id,
                                 "counters.no_such_command"),
                         1);
        answered = strstr(out.err, "UNKNOWN_COMMAND") != NULL;
        harness_output_fini(&out);
        if (answered) {
            break;
        }
        harness_sleep_ms(100);
    }

    assert_int_equal(PIPCALL(f, &out, "--endpoint", url, "--timeout", "1500",
                             "--identity-file", f->stranger_id, "node.ping"),
                     1);
    assert_non_null(strstr(out.err, "TIMEOUT"));
    harness_output_fini(&out);
    assert_int_equal(PIPCALL(f, &out, "--endpoint", url, "--timeout", "1500",
                             "node.ping"),
                     1);
    harness_output_fini(&out);

    /* The handler saw the caller's name: it is in the failure's log line. */
    log = harness_read_file(f->h->procs[f->h->proc_count - 1].log_path);
    assert_non_null(log);
    assert_non_null(strstr(log, "from tool-1 failed"));
    assert_null(strstr(log, "pip-identity"));
    free(log);

    /* The statistics call must be signed by a trusted key too. */
    assert_int_equal(PIPCALL(f, &out, "--endpoint", url, "--compact",
                             "--identity-file", f->tool_id,
                             "node.statistics"),
                     0);
    assert_non_null(strstr(out.out, "\"untrusted\":2"));
    harness_output_fini(&out);
}

static void
test_events_sealed(void **state)
{
    fixture *f = *state;
    pip_subscriber *sealed = NULL;
    pip_subscriber *plain = NULL;
    char url[HARNESS_URL_MAX];
    char *topic = NULL;
    json_t *payload = NULL;
    pip_error err;

    pip_error_init(&err);
    assert_true(harness_start_discovery(f->h, 10000));
    assert_int_equal(pip_subscriber_new("discovery.join", &sealed, &err),
                     PIP_OK);
    assert_int_equal(pip_subscriber_new("discovery.join", &plain, &err),
                     PIP_OK);
    pip_subscriber_set_keyring(plain, NULL);
    {
        char pub[HARNESS_URL_MAX];

        snprintf(pub, sizeof(pub), "tcp://127.0.0.1:%d",
                 f->h->discovery_pub_port);
        assert_int_equal(pip_subscriber_dial(sealed, pub, &err), PIP_OK);
        assert_int_equal(pip_subscriber_dial(plain, pub, &err), PIP_OK);
    }
    harness_sleep_ms(300);
    snprintf(url, sizeof(url), "tcp://127.0.0.1:%d", harness_free_port());
    assert_non_null(start_counters(
        f, "joiner", url,
        (const char *const[]){"--discovery", f->h->discovery_url, NULL}));

    assert_int_equal(pip_subscriber_recv(sealed, 10000, &topic, &payload,
                                         &err),
                     PIP_OK);
    assert_string_equal(topic, "discovery.join");
    free(topic);
    json_decref(payload);
    /* A subscriber without the key cannot read the same event. */
    assert_int_equal(pip_subscriber_recv(plain, 5000, &topic, &payload,
                                         &err),
                     PIP_E_BAD_REQUEST);
    pip_subscriber_free(sealed);
    pip_subscriber_free(plain);
    pip_error_fini(&err);
}

/*
 * A curl handle that POSTs {} to the read_counters route of the pipgate
 * listening on listen.  libcurl keeps its own copy of the URL.
 */
static CURL *
gate_read_counters(const char *listen)
{
    char endpoint[HARNESS_URL_MAX + 64];
    CURL *curl = curl_easy_init();

    assert_non_null(curl);
    snprintf(endpoint, sizeof(endpoint), "%s/v1/counters/read_counters",
             listen);
    curl_easy_setopt(curl, CURLOPT_URL, endpoint);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, "{}");
    return curl;
}

/* The gateway's RPC side has the key, so HTTP calls reach sealed nodes. */
static void
test_gateway_calls_sealed_nodes(void **state)
{
    fixture *f = *state;
    char url[HARNESS_URL_MAX];
    char listen[HARNESS_URL_MAX];
    int port = harness_free_port();
    long status = 0;
    CURL *curl;

    start_registered_counters(f, "gated", url);
    snprintf(listen, sizeof(listen), "http://127.0.0.1:%d", port);
    assert_non_null(harness_start(
        f->h, "pipgate",
        (const char *const[]){"pipgate", "--listen", listen, "--discovery",
                              f->h->discovery_url, NULL},
        false));

    curl = gate_read_counters(listen);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, 5000L);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, fwrite);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, stderr);
    for (int i = 0; i < 50 && status != 200; i++) {
        harness_sleep_ms(200);
        curl_easy_perform(curl);
        curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
    }
    curl_easy_cleanup(curl);
    assert_int_equal(status, 200);
}

/* Collects a response body into a fixed buffer. */
static size_t
collect_body(char *data, size_t size, size_t count, void *arg)
{
    char *body = arg;
    size_t used = strlen(body);
    size_t len = size * count;

    if (used + len < 4096) {
        memcpy(body + used, data, len);
        body[used + len] = '\0';
    }
    return len;
}

/* A gateway without the key cannot reach discovery, and reports that
 * rather than an unknown route. */
static void
test_gateway_without_key_explains(void **state)
{
    fixture *f = *state;
    char listen[HARNESS_URL_MAX];
    static char body[4096];
    long status = 0;
    CURL *curl;

    assert_true(harness_start_discovery(f->h, 10000));
    snprintf(listen, sizeof(listen), "http://127.0.0.1:%d",
             harness_free_port());
    unsetenv("PIP_NETWORK_KEY_FILE");
    assert_non_null(harness_start(
        f->h, "pipgate",
        (const char *const[]){"pipgate", "--listen", listen, "--discovery",
                              f->h->discovery_url, NULL},
        false));
    setenv("PIP_NETWORK_KEY_FILE", f->net, 1);

    curl = gate_read_counters(listen);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, 10000L);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, collect_body);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, body);
    for (int i = 0; i < 50 && status == 0; i++) {
        body[0] = '\0';
        harness_sleep_ms(200);
        curl_easy_perform(curl);
        curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
    }
    curl_easy_cleanup(curl);
    assert_int_equal(status, 500);
    assert_non_null(strstr(body, "DISCOVERY_UNAVAILABLE"));
    assert_non_null(strstr(body, "--network-key-file"));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            test_sealed_network_serves_key_holders, setup,
            teardown),
        cmocka_unit_test_setup_teardown(test_replayed_request_dropped,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_trusted_list_admits_listed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_events_sealed, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_gateway_calls_sealed_nodes,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_gateway_without_key_explains,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_pipbench_seals_its_calls, setup,
                                        teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
