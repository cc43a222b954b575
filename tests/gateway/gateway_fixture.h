/*
 * The network that the gateway tests run against, all on loopback:
 * discovery and a pipnode with the shipped services as child processes
 * (tests/integration/harness.h), a test service "gate_test" hosted in the
 * test process itself, and two pipgate processes:
 *
 *   gateway_open  default limits but a 4 KiB body limit
 *   gateway_tight a bearer token, 2 requests at once, a 1.5 s deadline
 *
 * Requests go through libcurl, or through a raw socket for bytes that curl
 * will not send.  Included by gateway_test.c only, so helpers are static.
 */
#ifndef GATEWAY_FIXTURE_H
#define GATEWAY_FIXTURE_H

#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "pip/node.h"
#include "pip/time.h"

#define GATEWAY_TOKEN "s3cret-gateway-token"
#define GATEWAY_TIGHT_TIMEOUT_MS 1500
#define GATEWAY_OPEN_MAX_BODY 4096
#define GATEWAY_CURL_TIMEOUT_MS 20000

/* ---- the test service, hosted in the test process ---- */

static const pip_field gate_test_fail_args[] = {
    {.name = "category", .type = PIP_T_STRING, .required = true,
     .doc = "wire name of the category to fail with"},
    {.name = NULL},
};

static const pip_field gate_test_sleep_args[] = {
    {.name = "ms", .type = PIP_T_INTEGER, .required = true, .min = 0,
     .max = 5000, .doc = "how long to sleep"},
    {.name = NULL},
};

static const pip_field gate_test_time_args[] = {
    {.name = "time", .type = PIP_T_DATETIME, .required = true,
     .doc = "a date-time"},
    {.name = NULL},
};

/* Returns the arguments and the correlation id of the call. */
static int
gate_test_echo(pip_call *call, json_t *args, json_t **result)
{
    *result = json_pack("{s:O, s:s}", "args", args, "correlation_id",
                        pip_call_correlation_id(call));
    return *result != NULL ? PIP_OK
                           : pip_call_fail(call, PIP_E_INTERNAL,
                                           "OUT_OF_MEMORY", "out of memory");
}

static int
gate_test_nothing(pip_call *call, json_t *args, json_t **result)
{
    (void)call;
    (void)args;
    *result = NULL;
    return PIP_OK;
}

static int
gate_test_fail(pip_call *call, json_t *args, json_t **result)
{
    const char *name = json_string_value(json_object_get(args, "category"));

    (void)result;
    return pip_call_fail(call, pip_category_parse(name), "TEST_FAILURE",
                         "Failing on purpose with %s.", name);
}

static int
gate_test_sleep(pip_call *call, json_t *args, json_t **result)
{
    json_int_t ms = json_integer_value(json_object_get(args, "ms"));
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};

    (void)call;
    nanosleep(&ts, NULL);
    *result = json_pack("{s:I}", "slept_ms", ms);
    return PIP_OK;
}

/* The time argument after the node's normalization. */
static int
gate_test_time(pip_call *call, json_t *args, json_t **result)
{
    (void)call;
    *result = json_incref(json_object_get(args, "time"));
    return PIP_OK;
}

static const pip_command gate_test_commands[] = {
    {.name = "echo", .handler = gate_test_echo, .args = NULL,
     .result = "{args, correlation_id}", .doc = "Returns its arguments."},
    {.name = "nothing", .handler = gate_test_nothing, .args = NULL,
     .result = "nil", .doc = "Returns nil."},
    {.name = "fail", .handler = gate_test_fail, .args = gate_test_fail_args,
     .result = "never", .doc = "Fails with the given category."},
    {.name = "sleep", .handler = gate_test_sleep,
     .args = gate_test_sleep_args, .result = "{slept_ms}",
     .doc = "Sleeps, then returns."},
    {.name = "echo_time", .handler = gate_test_time,
     .args = gate_test_time_args, .result = "the time, normalized",
     .doc = "Returns the time argument."},
    {.name = NULL},
};

static const pip_service_def gate_test_service = {
    .name = "gate_test",
    .version = "1.0",
    .route = "v1/gate_test",
    .doc = "Commands for the gateway tests.",
    .commands = gate_test_commands,
};

/* ---- the network ---- */

typedef struct gateway_fixture {
    harness *h;
    harness_proc *services;
    harness_proc *open_gate;
    harness_proc *tight_gate;
    pip_node *node;
    pip_node_options node_opt;
    char open_url[HARNESS_URL_MAX];
    char tight_url[HARNESS_URL_MAX];
    char data[PATH_MAX];
    char token_path[PATH_MAX];
} gateway_fixture;

static gateway_fixture gw;

/* A response: status 0 when the transfer failed. */
typedef struct http_reply {
    long status;
    char *body;
    size_t len;
    char content_type[128];
    char www_authenticate[64];
    char allow[64];
} http_reply;

static void
http_reply_fini(http_reply *reply)
{
    free(reply->body);
    memset(reply, 0, sizeof(*reply));
}

static size_t
http_collect(char *data, size_t size, size_t count, void *arg)
{
    http_reply *reply = arg;
    size_t len = size * count;
    char *bigger = realloc(reply->body, reply->len + len + 1);

    if (bigger == NULL) {
        return 0;
    }
    reply->body = bigger;
    memcpy(reply->body + reply->len, data, len);
    reply->len += len;
    reply->body[reply->len] = '\0';
    return len;
}

static size_t
http_header(char *data, size_t size, size_t count, void *arg)
{
    http_reply *reply = arg;
    size_t len = size * count;

    if (len > 14 && strncasecmp(data, "Content-Type: ", 14) == 0) {
        snprintf(reply->content_type, sizeof(reply->content_type), "%.*s",
                 (int)strcspn(data + 14, "\r\n"), data + 14);
    }
    if (len > 7 && strncasecmp(data, "Allow: ", 7) == 0) {
        snprintf(reply->allow, sizeof(reply->allow), "%.*s",
                 (int)strcspn(data + 7, "\r\n"), data + 7);
    }
    if (len > 18 && strncasecmp(data, "WWW-Authenticate: ", 18) == 0) {
        snprintf(reply->www_authenticate, sizeof(reply->www_authenticate),
                 "%.*s", (int)strcspn(data + 18, "\r\n"), data + 18);
    }
    return len;
}

/*
 * Sends one request on curl (a handle that may keep its connection).
 * headers is NULL-ended or NULL; body NULL sends none.
 */
static void
http_send(CURL *curl, const char *method, const char *url,
          const char *const *headers, const char *body, http_reply *reply)
{
    struct curl_slist *list = NULL;

    memset(reply, 0, sizeof(*reply));
    for (int i = 0; headers != NULL && headers[i] != NULL; i++) {
        list = curl_slist_append(list, headers[i]);
    }
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, list);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(curl, CURLOPT_POST, body != NULL ? 1L : 0L);
    curl_easy_setopt(curl, CURLOPT_HTTPGET, body != NULL ? 0L : 1L);
    curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, http_collect);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, reply);
    curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, http_header);
    curl_easy_setopt(curl, CURLOPT_HEADERDATA, reply);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, (long)GATEWAY_CURL_TIMEOUT_MS);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    if (curl_easy_perform(curl) == CURLE_OK) {
        curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &reply->status);
    } else {
        reply->status = 0;
    }
    curl_slist_free_all(list);
}

/* One request on a connection of its own. */
static void
http_request(const char *method, const char *url,
             const char *const *headers, const char *body, http_reply *reply)
{
    CURL *curl = curl_easy_init();

    memset(reply, 0, sizeof(*reply));
    if (curl == NULL) {
        return;
    }
    http_send(curl, method, url, headers, body, reply);
    curl_easy_cleanup(curl);
}

/* The body parsed as JSON (any value), or NULL. */
static json_t *
http_json(const http_reply *reply)
{
    json_error_t jerr;

    if (reply->body == NULL) {
        return NULL;
    }
    return json_loads(reply->body, JSON_DECODE_ANY, &jerr);
}

/*
 * Sends raw bytes to the gateway at port and returns what came back
 * within timeout_ms, until the peer closed or the time ran out.  The
 * caller frees the text.
 */
static char *
http_raw(int port, const char *request, int timeout_ms)
{
    struct sockaddr_in addr;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int64_t deadline = harness_now_ms() + timeout_ms;
    char *text = calloc(1, 65536);
    size_t used = 0;

    if (fd < 0 || text == NULL) {
        free(text);
        return NULL;
    }
    memset(&addr, 0, sizeof(addr));
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) != 0 ||
        write(fd, request, strlen(request)) != (ssize_t)strlen(request)) {
        close(fd);
        return text;
    }
    while (used + 1 < 65536 && harness_now_ms() < deadline) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        ssize_t n;

        if (poll(&pfd, 1, 50) <= 0) {
            continue;
        }
        n = read(fd, text + used, 65536 - used - 1);
        if (n <= 0) {
            break;
        }
        used += (size_t)n;
    }
    close(fd);
    return text;
}

/* The port of a "http://127.0.0.1:PORT" URL. */
static int
gateway_port(const char *url)
{
    const char *colon = strrchr(url, ':');

    return colon != NULL ? atoi(colon + 1) : -1;
}

/* Polls GET /health until it returns 200. */
static bool
gateway_wait_health(const char *base, int timeout_ms)
{
    char url[HARNESS_URL_MAX + 16];
    int64_t deadline = harness_now_ms() + timeout_ms;

    snprintf(url, sizeof(url), "%s/health", base);
    while (harness_now_ms() < deadline) {
        http_reply reply;
        long status;

        http_request("GET", url, NULL, NULL, &reply);
        status = reply.status;
        http_reply_fini(&reply);
        if (status == 200) {
            return true;
        }
        harness_sleep_ms(100);
    }
    return false;
}

static harness_proc *
gateway_start(const char *name, const char *url, const char *const *extra)
{
    const char *argv[24] = {"pipgate", "--listen", url, "--discovery",
                            gw.h->discovery_url};
    int argc = 5;

    for (int i = 0; extra[i] != NULL && argc < 23; i++) {
        argv[argc++] = extra[i];
    }
    argv[argc] = NULL;
    return harness_start(gw.h, name, argv, false);
}

static bool
gateway_start_services(void)
{
    const char *argv[] = {
        "pipnode", "logging", "counters", "settings",
        "--listen", "tcp://127.0.0.1:0", "--pub", "tcp://127.0.0.1:0",
        "--data", gw.data, "--discovery", gw.h->discovery_url,
        "--set", "logging.options.expire_logs_timeout=100000",
        "--set", "logging.options.expire_errors_timeout=100000",
        NULL,
    };

    harness_path(gw.h, "node-data", gw.data);
    gw.services = harness_start(gw.h, "services", argv, false);
    return gw.services != NULL &&
           harness_wait_instances(gw.h, "logging", 1, 10000) &&
           harness_wait_instances(gw.h, "counters", 1, 10000) &&
           harness_wait_instances(gw.h, "settings", 1, 10000);
}

/* Hosts gate_test in this process, registered with discovery. */
static bool
gateway_start_test_node(void)
{
    pip_error err;
    int rv;

    pip_error_init(&err);
    pip_node_options_init(&gw.node_opt);
    gw.node_opt.discovery_url = gw.h->discovery_url;
    gw.node_opt.data_dir = gw.data;
    gw.node_opt.workers = 8;
    rv = pip_node_new(&gw.node_opt, &gw.node, &err);
    if (rv == PIP_OK) {
        rv = pip_node_add(gw.node, &gate_test_service, &err);
    }
    if (rv == PIP_OK) {
        rv = pip_node_start(gw.node, &err);
    }
    if (rv != PIP_OK) {
        fprintf(stderr, "test node: %s\n", err.message);
    }
    pip_error_fini(&err);
    return rv == PIP_OK && harness_wait_instances(gw.h, "gate_test", 1, 10000);
}

static bool
gateway_write_token(void)
{
    FILE *f;

    harness_path(gw.h, "token", gw.token_path);
    f = fopen(gw.token_path, "w");
    if (f == NULL) {
        return false;
    }
    fprintf(f, "%s\n", GATEWAY_TOKEN);
    fclose(f);
    return true;
}

static bool
gateway_start_gates(void)
{
    char max_body[32];
    char timeout[32];
    const char *open_extra[] = {"--max-body-bytes", max_body, NULL};
    const char *tight_extra[] = {"--token-file", gw.token_path,
                                 "--max-concurrent", "2", "--workers", "2",
                                 "--timeout-ms", timeout, NULL};

    snprintf(max_body, sizeof(max_body), "%d", GATEWAY_OPEN_MAX_BODY);
    snprintf(timeout, sizeof(timeout), "%d", GATEWAY_TIGHT_TIMEOUT_MS);
    snprintf(gw.open_url, sizeof(gw.open_url), "http://127.0.0.1:%d",
             harness_free_port());
    snprintf(gw.tight_url, sizeof(gw.tight_url), "http://127.0.0.1:%d",
             harness_free_port());
    if (!gateway_write_token()) {
        return false;
    }
    gw.open_gate = gateway_start("gate-open", gw.open_url, open_extra);
    gw.tight_gate = gateway_start("gate-tight", gw.tight_url, tight_extra);
    return gw.open_gate != NULL && gw.tight_gate != NULL &&
           gateway_wait_health(gw.open_url, 15000) &&
           gateway_wait_health(gw.tight_url, 15000);
}

static int
gateway_setup(void **state)
{
    (void)state;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    gw.h = harness_new();
    if (gw.h == NULL || !harness_start_discovery(gw.h, 10000)) {
        fprintf(stderr, "discovery did not come up\n");
        return -1;
    }
    if (!gateway_start_services()) {
        fprintf(stderr, "the services node did not register\n");
        return -1;
    }
    if (!gateway_start_test_node()) {
        fprintf(stderr, "the gate_test node did not start\n");
        return -1;
    }
    if (!gateway_start_gates()) {
        fprintf(stderr, "the gateways did not answer /health\n");
        return -1;
    }
    return 0;
}

static int
gateway_teardown(void **state)
{
    int rv = 0;

    (void)state;
    /* The gateways must exit 0 after SIGTERM, like the nodes. */
    if (gw.open_gate != NULL && harness_stop(gw.open_gate, 15000) != 0) {
        fprintf(stderr, "the open gateway did not exit cleanly\n");
        rv = -1;
    }
    if (gw.tight_gate != NULL && harness_stop(gw.tight_gate, 15000) != 0) {
        fprintf(stderr, "the tight gateway did not exit cleanly\n");
        rv = -1;
    }
    if (gw.node != NULL) {
        pip_node_free(gw.node);
    }
    pip_node_options_fini(&gw.node_opt);
    if (gw.h != NULL && harness_free(gw.h) != 0) {
        rv = -1;
    }
    curl_global_cleanup();
    return rv;
}

#endif
