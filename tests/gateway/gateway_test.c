/*
 * pipgate over real HTTP on loopback: every command of the shipped
 * services, null results, the status of each error category, correlation
 * ids, date-times, bad requests, the bearer token, the limits, and a
 * bounded concurrent load.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "gateway_fixture.h"

#define LOAD_THREADS 8
#define LOAD_CALLS_PER_THREAD 60
#define LOAD_TIME_LIMIT_MS 60000

/* POSTs body to the open gateway at path ("/v1/counters/clear"). */
static void
post(const char *path, const char *body, http_reply *reply)
{
    char url[256];

    snprintf(url, sizeof(url), "%s%s", gw.open_url, path);
    http_request("POST", url, NULL, body, reply);
}

/* POSTs and checks for 200 with a JSON body.  Returns the body. */
static json_t *
post_ok(const char *path, const char *body)
{
    http_reply reply;
    json_t *value;

    post(path, body, &reply);
    if (reply.status != 200) {
        fail_msg("POST %s %s: status %ld, body %s", path, body, reply.status,
                 reply.body ? reply.body : "");
    }
    assert_string_equal(reply.content_type, "application/json");
    value = http_json(&reply);
    assert_non_null(value);
    http_reply_fini(&reply);
    return value;
}

/* POSTs and checks for 204 with an empty body. */
static void
post_no_content(const char *path, const char *body)
{
    http_reply reply;

    post(path, body, &reply);
    if (reply.status != 204) {
        fail_msg("POST %s: status %ld, expected 204, body %s", path,
                 reply.status, reply.body ? reply.body : "");
    }
    assert_int_equal(reply.len, 0);
    http_reply_fini(&reply);
}

/* Checks that reply is the error description with status and code. */
static void
assert_error(const http_reply *reply, long status, const char *code)
{
    const char *fields[] = {"type", "category", "code", "status", "message",
                            "details", "correlation_id", "cause",
                            "stack_trace"};
    json_t *error = http_json(reply);

    if (reply->status != status || error == NULL) {
        fail_msg("status %ld, expected %ld; body %s", reply->status, status,
                 reply->body ? reply->body : "");
    }
    assert_string_equal(reply->content_type, "application/json");
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
        if (json_object_get(error, fields[i]) == NULL) {
            fail_msg("the error lacks '%s': %s", fields[i], reply->body);
        }
    }
    assert_string_equal(json_string_value(json_object_get(error, "code")),
                        code);
    assert_int_equal(json_integer_value(json_object_get(error, "status")),
                     status);
    assert_string_equal(json_string_value(json_object_get(error, "type")),
                        json_string_value(json_object_get(error, "category")));
    json_decref(error);
}

static void
post_error(const char *path, const char *body, long status, const char *code)
{
    http_reply reply;

    post(path, body, &reply);
    assert_error(&reply, status, code);
    http_reply_fini(&reply);
}

static json_int_t
integer_at(const json_t *value, const char *key)
{
    const json_t *field = json_object_get(value, key);

    assert_true(json_is_integer(field));
    return json_integer_value(field);
}

static const char *
string_at(const json_t *value, const char *key)
{
    const json_t *field = json_object_get(value, key);

    assert_true(json_is_string(field));
    return json_string_value(field);
}

/* ---- the shipped services ---- */

static void
test_counters_commands(void **state)
{
    json_t *value;
    json_t *page;

    (void)state;
    post_no_content("/v1/counters/clear", "{}");
    value = post_ok("/v1/counters/write_counter",
                    "{\"counter\":{\"name\":\"http.hits\",\"type\":4,"
                    "\"count\":2}}");
    assert_int_equal(integer_at(value, "count"), 2);
    json_decref(value);
    post_no_content("/v1/counters/write_counters",
                    "{\"counters\":[{\"name\":\"http.hits\",\"type\":4,"
                    "\"count\":3},{\"name\":\"http.last\",\"type\":1,"
                    "\"last\":7.5}]}");

    page = post_ok("/v1/counters/read_counters",
                   "{\"filter\":{\"group\":\"http\"},"
                   "\"paging\":{\"total\":true}}");
    assert_int_equal(json_array_size(json_object_get(page, "data")), 2);
    value = json_array_get(json_object_get(page, "data"), 0);
    assert_string_equal(string_at(value, "name"), "http.hits");
    assert_int_equal(integer_at(value, "count"), 5);
    json_decref(page);

    post_no_content("/v1/counters/clear", NULL);
    page = post_ok("/v1/counters/read_counters", "{}");
    assert_int_equal(json_array_size(json_object_get(page, "data")), 0);
    json_decref(page);
}

static void
test_settings_commands(void **state)
{
    json_t *value;

    (void)state;
    value = post_ok("/v1/settings/set_section",
                    "{\"id\":\"kiosk.http\",\"parameters\":{\"theme\":"
                    "\"dark\",\"restarts\":1}}");
    assert_string_equal(string_at(value, "theme"), "dark");
    json_decref(value);

    value = post_ok("/v1/settings/modify_section",
                    "{\"id\":\"kiosk.http\",\"update_parameters\":"
                    "{\"theme\":\"light\"},\"increment_parameters\":"
                    "{\"restarts\":2}}");
    assert_string_equal(string_at(value, "theme"), "light");
    assert_int_equal(integer_at(value, "restarts"), 3);
    json_decref(value);

    value = post_ok("/v1/settings/get_section_by_id", "{\"id\":\"kiosk.http\"}");
    assert_int_equal(integer_at(value, "restarts"), 3);
    json_decref(value);

    /* A missing section is an empty map, which is a result: 200. */
    value = post_ok("/v1/settings/get_section_by_id", "{\"id\":\"none.such\"}");
    assert_int_equal(json_object_size(value), 0);
    json_decref(value);

    value = post_ok("/v1/settings/get_section_ids",
                    "{\"filter\":{\"id_starts\":\"kiosk.\"}}");
    assert_string_equal(
        json_string_value(json_array_get(json_object_get(value, "data"), 0)),
        "kiosk.http");
    json_decref(value);

    value = post_ok("/v1/settings/get_sections",
                    "{\"filter\":{\"id\":\"kiosk.http\"}}");
    assert_int_equal(json_array_size(json_object_get(value, "data")), 1);
    json_decref(value);
}

static void
test_logging_commands(void **state)
{
    json_t *value;
    json_t *page;

    (void)state;
    post_no_content("/v1/logging/clear", "{}");
    value = post_ok("/v1/logging/write_message",
                    "{\"message\":{\"level\":2,\"source\":\"http\","
                    "\"message\":\"disk failed\","
                    "\"time\":\"2026-03-01T08:00:00+01:00\"}}");
    assert_string_equal(string_at(value, "time"), "2026-03-01T07:00:00.000Z");
    assert_int_equal(strlen(string_at(value, "id")), 32);
    json_decref(value);
    post_no_content("/v1/logging/write_messages",
                    "{\"messages\":[{\"level\":4,\"source\":\"http\","
                    "\"message\":\"ok\",\"time\":\"2026-03-01T09:00:00Z\"}]}");

    page = post_ok("/v1/logging/read_messages",
                   "{\"filter\":{\"from_time\":\"2026-03-01T07:30:00Z\"}}");
    assert_int_equal(json_array_size(json_object_get(page, "data")), 1);
    json_decref(page);
    page = post_ok("/v1/logging/read_errors", "{\"filter\":{\"search\":"
                                              "\"disk\"}}");
    assert_int_equal(json_array_size(json_object_get(page, "data")), 1);
    json_decref(page);
}

static void
test_builtin_commands(void **state)
{
    const char *routes[] = {"/v1/counters", "/v1/settings", "/v1/logging",
                            "/v1/gate_test"};
    char path[64];
    char url[128];

    (void)state;
    for (size_t i = 0; i < 4; i++) {
        json_t *value;
        http_reply reply;

        snprintf(path, sizeof(path), "%s/ping", routes[i]);
        post_no_content(path, "{}");
        snprintf(path, sizeof(path), "%s/health", routes[i]);
        value = post_ok(path, "{}");
        assert_string_equal(string_at(value, "status"), "ok");
        json_decref(value);
        snprintf(path, sizeof(path), "%s/statistics", routes[i]);
        value = post_ok(path, "{}");
        assert_non_null(json_object_get(value, "commands"));
        json_decref(value);

        snprintf(url, sizeof(url), "%s%s/describe", gw.open_url, routes[i]);
        http_request("GET", url, NULL, NULL, &reply);
        assert_int_equal(reply.status, 200);
        value = http_json(&reply);
        assert_string_equal(string_at(value, "route"), routes[i] + 1);
        assert_true(json_array_size(json_object_get(value, "commands")) > 4);
        json_decref(value);
        http_reply_fini(&reply);
    }
}

/* ---- results and errors ---- */

static void
test_null_result_is_204(void **state)
{
    json_t *value;

    (void)state;
    post_no_content("/v1/gate_test/nothing", "{}");
    value = post_ok("/v1/gate_test/echo", "{\"a\":[1,2]}");
    assert_int_equal(json_array_size(
                         json_object_get(json_object_get(value, "args"), "a")),
                     2);
    json_decref(value);
}

static void
test_error_category_statuses(void **state)
{
    static const struct {
        const char *category;
        long status;
    } cases[] = {
        {"BadRequest", 400},   {"Unauthorized", 401}, {"NotFound", 404},
        {"Conflict", 409},     {"InvalidState", 500}, {"Unsupported", 500},
        {"Internal", 500},     {"Unknown", 500},
    };
    char body[128];

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        http_reply reply;
        json_t *error;

        snprintf(body, sizeof(body), "{\"category\":\"%s\"}",
                 cases[i].category);
        post("/v1/gate_test/fail", body, &reply);
        assert_error(&reply, cases[i].status, "TEST_FAILURE");
        error = http_json(&reply);
        assert_string_equal(string_at(error, "category"), cases[i].category);
        json_decref(error);
        http_reply_fini(&reply);
    }
    /* Schema validation in the node: 400 INVALID_DATA. */
    post_error("/v1/counters/write_counter", "{\"counter\":{\"type\":4}}",
               400, "INVALID_DATA");
}

static void
test_correlation_id_passed_on(void **state)
{
    const char *header[] = {"correlation_id: from-header", NULL};
    char url[160];
    http_reply reply;
    json_t *value;

    (void)state;
    snprintf(url, sizeof(url), "%s/v1/gate_test/echo?x=1&correlation_id=q%%2D1",
             gw.open_url);
    http_request("POST", url, header, "{}", &reply);
    assert_int_equal(reply.status, 200);
    value = http_json(&reply);
    assert_string_equal(string_at(value, "correlation_id"), "q-1");
    json_decref(value);
    http_reply_fini(&reply);

    snprintf(url, sizeof(url), "%s/v1/gate_test/echo", gw.open_url);
    http_request("POST", url, header, "{}", &reply);
    value = http_json(&reply);
    assert_string_equal(string_at(value, "correlation_id"), "from-header");
    json_decref(value);
    http_reply_fini(&reply);

    /* An error carries the id too. */
    snprintf(url, sizeof(url), "%s/v1/gate_test/fail?correlation_id=c0ffee",
             gw.open_url);
    http_request("POST", url, NULL, "{\"category\":\"Conflict\"}", &reply);
    assert_error(&reply, 409, "TEST_FAILURE");
    value = http_json(&reply);
    assert_string_equal(string_at(value, "correlation_id"), "c0ffee");
    json_decref(value);
    http_reply_fini(&reply);

    snprintf(url, sizeof(url), "%s/v1/gate_test/echo?correlation_id=a%%20b",
             gw.open_url);
    http_request("POST", url, NULL, "{}", &reply);
    assert_error(&reply, 400, "INVALID_DATA");
    http_reply_fini(&reply);
}

static void
test_dates_round_trip_utc(void **state)
{
    json_t *value;
    json_t *page;

    (void)state;
    value = post_ok("/v1/gate_test/echo_time",
                    "{\"time\":\"2026-01-31T12:00:00.250+02:00\"}");
    assert_string_equal(json_string_value(value), "2026-01-31T10:00:00.250Z");
    json_decref(value);
    value = post_ok("/v1/gate_test/echo_time", "{\"time\":\"2026-07-04\"}");
    assert_string_equal(json_string_value(value), "2026-07-04T00:00:00.000Z");
    json_decref(value);
    post_error("/v1/gate_test/echo_time", "{\"time\":\"2026-02-30T00:00Z\"}",
               400, "INVALID_DATA");

    value = post_ok("/v1/counters/write_counter",
                    "{\"counter\":{\"name\":\"dates.last\",\"type\":1,"
                    "\"last\":1,\"time\":\"2026-05-01T23:30:00-04:00\"}}");
    json_decref(value);
    page = post_ok("/v1/counters/read_counters",
                   "{\"filter\":{\"name\":\"dates.last\"}}");
    value = json_array_get(json_object_get(page, "data"), 0);
    assert_string_equal(string_at(value, "time"), "2026-05-02T03:30:00.000Z");
    json_decref(page);
}

static void
test_paging_and_filter_strings(void **state)
{
    char body[160];
    json_t *page;

    (void)state;
    for (int i = 0; i < 5; i++) {
        snprintf(body, sizeof(body),
                 "{\"counter\":{\"name\":\"paged.c%d\",\"type\":4,"
                 "\"count\":1}}",
                 i);
        json_decref(post_ok("/v1/counters/write_counter", body));
    }
    /* FilterParams and PagingParams values may be strings. */
    page = post_ok("/v1/counters/read_counters",
                   "{\"filter\":{\"group\":\"paged\",\"type\":\"4\"},"
                   "\"paging\":{\"skip\":\"1\",\"take\":\"2\","
                   "\"total\":\"true\"}}");
    assert_int_equal(json_array_size(json_object_get(page, "data")), 2);
    assert_string_equal(
        string_at(json_array_get(json_object_get(page, "data"), 0), "name"),
        "paged.c1");
    json_decref(page);
    post_error("/v1/counters/read_counters",
               "{\"paging\":{\"skip\":\"-1\"}}", 400, "INVALID_DATA");
}

/* ---- bad requests ---- */

static void
test_bad_bodies_rejected(void **state)
{
    const char *text_plain[] = {"Content-Type: text/plain", NULL};
    const char *json_type[] = {"Content-Type: application/json; charset=utf-8",
                               NULL};
    char url[160];
    char *big;
    http_reply reply;

    (void)state;
    post_error("/v1/gate_test/echo", "{\"a\":", 400, "INVALID_JSON");
    post_error("/v1/gate_test/echo", "[1,2]", 400, "INVALID_JSON");
    post_error("/v1/gate_test/echo", "\"text\"", 400, "INVALID_JSON");
    post_error("/v1/gate_test/echo", "{\"a\":1,\"a\":2}", 400,
               "INVALID_JSON");
    post_error("/v1/gate_test/echo", "{\"a\":1} trailing", 400,
               "INVALID_JSON");
    post_error("/v1/gate_test/echo", "{\"a\":\"\xff\xfe\"}", 400,
               "INVALID_JSON");

    snprintf(url, sizeof(url), "%s/v1/gate_test/echo", gw.open_url);
    http_request("POST", url, text_plain, "{}", &reply);
    assert_error(&reply, 415, "UNSUPPORTED_MEDIA_TYPE");
    http_reply_fini(&reply);
    http_request("POST", url, json_type, "{\"b\":1}", &reply);
    assert_int_equal(reply.status, 200);
    http_reply_fini(&reply);

    big = malloc(GATEWAY_OPEN_MAX_BODY + 64);
    assert_non_null(big);
    memset(big, ' ', GATEWAY_OPEN_MAX_BODY + 63);
    big[0] = '{';
    big[GATEWAY_OPEN_MAX_BODY + 62] = '}';
    big[GATEWAY_OPEN_MAX_BODY + 63] = '\0';
    post_error("/v1/gate_test/echo", big, 413, "LIMIT_EXCEEDED");
    free(big);
}

static void
test_bad_routes_rejected(void **state)
{
    char url[160];
    http_reply reply;

    (void)state;
    post_error("/v1/nowhere/read", "{}", 404, "ROUTE_NOT_FOUND");
    post_error("/v1/counters/no_such_command", "{}", 404, "UNKNOWN_COMMAND");
    post_error("/v1/counters/Read-Counters", "{}", 404, "ROUTE_NOT_FOUND");
    post_error("/nothing", "{}", 404, "ROUTE_NOT_FOUND");
    post_error("/", "{}", 404, "ROUTE_NOT_FOUND");

    snprintf(url, sizeof(url), "%s/v1/counters/read_counters", gw.open_url);
    http_request("GET", url, NULL, NULL, &reply);
    assert_error(&reply, 405, "METHOD_NOT_ALLOWED");
    assert_string_equal(reply.allow, "POST");
    http_reply_fini(&reply);
    http_request("DELETE", url, NULL, NULL, &reply);
    assert_error(&reply, 405, "METHOD_NOT_ALLOWED");
    http_reply_fini(&reply);
}

/* The number of HTTP responses in text. */
static int
count_responses(const char *text)
{
    int count = 0;

    for (const char *p = strstr(text, "HTTP/1.1 "); p != NULL;
         p = strstr(p + 1, "HTTP/1.1 ")) {
        count++;
    }
    return count;
}

/*
 * A body that the gateway does not read (on a GET, or on a rejected
 * POST) must not be taken for the next request on the connection.  Here
 * each body is itself a request, which must get no reply.
 */
static void
test_unread_body_not_next_request(void **state)
{
    static const char *const requests[] = {
        "GET /v1/counters/describe HTTP/1.1\r\nHost: x\r\n"
        "Content-Length: 33\r\n\r\nGET /health HTTP/1.1\r\nHost: x\r\n\r\n",
        "POST /v1/nowhere/x HTTP/1.1\r\nHost: x\r\n"
        "Content-Length: 33\r\n\r\nGET /health HTTP/1.1\r\nHost: x\r\n\r\n",
        "POST /v1/counters/read_counters HTTP/1.1\r\nHost: x\r\n"
        "Content-Type: text/plain\r\n"
        "Content-Length: 33\r\n\r\nGET /health HTTP/1.1\r\nHost: x\r\n\r\n",
    };
    int port = gateway_port(gw.open_url);

    (void)state;
    for (size_t i = 0; i < sizeof(requests) / sizeof(requests[0]); i++) {
        char *text = http_raw(port, requests[i], 3000);

        assert_non_null(text);
        if (count_responses(text) != 1) {
            fail_msg("request %zu got %d responses: %s", i,
                     count_responses(text), text);
        }
        free(text);
    }
}

/* Requests that curl does not send: raw bytes on a socket. */
static void
test_malformed_http_rejected(void **state)
{
    int port = gateway_port(gw.open_url);
    char *text;

    (void)state;
    text = http_raw(port,
                    "POST /v1/gate_test/echo HTTP/1.1\r\nHost: x\r\n"
                    "Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
                    5000);
    assert_non_null(strstr(text, "HTTP/1.1 411"));
    assert_non_null(strstr(text, "LENGTH_REQUIRED"));
    free(text);

    text = http_raw(port,
                    "POST /v1/gate_test/echo HTTP/1.1\r\nHost: x\r\n"
                    "Content-Length: 12abc\r\n\r\n{}",
                    5000);
    assert_non_null(strstr(text, "HTTP/1.1 400"));
    free(text);

    /* Garbage instead of HTTP gets NNG's own 400, and the gateway lives. */
    text = http_raw(port, "\x16\x03\x01garbage\r\n\r\n", 3000);
    free(text);
    assert_true(gateway_wait_health(gw.open_url, 5000));
}

/* ---- the tight gateway: token, deadline, concurrency ---- */

static void
tight_url(const char *path, char *url, size_t len)
{
    snprintf(url, len, "%s%s", gw.tight_url, path);
}

static void
test_bearer_token_required(void **state)
{
    const char *good[] = {"Authorization: Bearer " GATEWAY_TOKEN, NULL};
    const char *wrong[] = {"Authorization: Bearer not-the-token", NULL};
    const char *longer[] = {"Authorization: Bearer " GATEWAY_TOKEN "x", NULL};
    const char *basic[] = {"Authorization: Basic dXNlcjpwdw==", NULL};
    const char *const *rejected[] = {NULL, wrong, longer, basic};
    char url[160];
    http_reply reply;

    (void)state;
    tight_url("/v1/gate_test/echo", url, sizeof(url));
    for (size_t i = 0; i < 4; i++) {
        http_request("POST", url, rejected[i], "{}", &reply);
        assert_error(&reply, 401, "UNAUTHORIZED");
        assert_string_equal(reply.www_authenticate, "Bearer");
        http_reply_fini(&reply);
    }
    http_request("POST", url, good, "{}", &reply);
    assert_int_equal(reply.status, 200);
    http_reply_fini(&reply);

    tight_url("/health", url, sizeof(url));
    http_request("GET", url, NULL, NULL, &reply);
    assert_int_equal(reply.status, 200);
    http_reply_fini(&reply);
    tight_url("/openapi.json", url, sizeof(url));
    http_request("GET", url, NULL, NULL, &reply);
    assert_error(&reply, 401, "UNAUTHORIZED");
    http_reply_fini(&reply);
}

static void
test_deadline_ends_slow_call(void **state)
{
    const char *good[] = {"Authorization: Bearer " GATEWAY_TOKEN, NULL};
    char url[160];
    http_reply reply;
    int64_t started = harness_now_ms();
    int64_t took;

    (void)state;
    tight_url("/v1/gate_test/sleep", url, sizeof(url));
    http_request("POST", url, good, "{\"ms\":4000}", &reply);
    took = harness_now_ms() - started;
    assert_error(&reply, 500, "TIMEOUT");
    http_reply_fini(&reply);
    assert_true(took >= GATEWAY_TIGHT_TIMEOUT_MS - 100);
    assert_true(took < 3500);
    /* Let the node finish the sleep before the next test. */
    harness_sleep_ms(3000);
}

/* Polls the tight gateway's health until count requests are in flight. */
static bool
wait_in_flight(int count)
{
    int64_t deadline = harness_now_ms() + 5000;
    char url[160];

    tight_url("/health", url, sizeof(url));
    while (harness_now_ms() < deadline) {
        http_reply reply;
        json_t *health;
        json_int_t in_flight;

        http_request("GET", url, NULL, NULL, &reply);
        health = http_json(&reply);
        in_flight = json_integer_value(json_object_get(health, "in_flight"));
        json_decref(health);
        http_reply_fini(&reply);
        if (in_flight == count) {
            return true;
        }
        harness_sleep_ms(20);
    }
    return false;
}

typedef struct slow_call {
    pthread_t thread;
    long status;
} slow_call;

static void *
slow_call_run(void *arg)
{
    slow_call *call = arg;
    const char *good[] = {"Authorization: Bearer " GATEWAY_TOKEN, NULL};
    char url[160];
    http_reply reply;

    tight_url("/v1/gate_test/sleep", url, sizeof(url));
    http_request("POST", url, good, "{\"ms\":1000}", &reply);
    call->status = reply.status;
    http_reply_fini(&reply);
    return NULL;
}

static void
test_over_limit_gets_503(void **state)
{
    const char *good[] = {"Authorization: Bearer " GATEWAY_TOKEN, NULL};
    slow_call calls[2];
    char url[160];
    http_reply reply;

    (void)state;
    for (int i = 0; i < 2; i++) {
        assert_int_equal(
            pthread_create(&calls[i].thread, NULL, slow_call_run, &calls[i]),
            0);
    }
    assert_true(wait_in_flight(2));
    tight_url("/v1/gate_test/echo", url, sizeof(url));
    http_request("POST", url, good, "{}", &reply);
    assert_error(&reply, 503, "TOO_MANY_REQUESTS");
    http_reply_fini(&reply);
    for (int i = 0; i < 2; i++) {
        pthread_join(calls[i].thread, NULL);
        assert_int_equal(calls[i].status, 200);
    }
    http_request("POST", url, good, "{}", &reply);
    assert_int_equal(reply.status, 200);
    http_reply_fini(&reply);
}

/*
 * A body that does not arrive within the deadline: NNG closes the
 * connection when the read is cancelled, so there is no reply, and the
 * slot is free again.
 */
static void
test_stalled_body_closed(void **state)
{
    char request[256];
    int64_t started = harness_now_ms();
    char url[160];
    http_reply reply;
    json_t *health;
    char *text;

    (void)state;
    snprintf(request, sizeof(request),
             "POST /v1/gate_test/echo HTTP/1.1\r\nHost: x\r\n"
             "Authorization: Bearer %s\r\nContent-Length: 100\r\n\r\n{",
             GATEWAY_TOKEN);
    text = http_raw(gateway_port(gw.tight_url), request, 6000);
    assert_string_equal(text, "");
    assert_true(harness_now_ms() - started >= GATEWAY_TIGHT_TIMEOUT_MS - 100);
    assert_true(harness_now_ms() - started < 5000);
    free(text);

    tight_url("/health", url, sizeof(url));
    http_request("GET", url, NULL, NULL, &reply);
    health = http_json(&reply);
    assert_int_equal(integer_at(health, "in_flight"), 0);
    json_decref(health);
    http_reply_fini(&reply);
}

/*
 * SIGTERM with a call in flight: the call still gets its reply, and the
 * gateway exits 0.  This stops the tight gateway, so it runs last of the
 * tests that use it.
 */
static void
test_stop_finishes_in_flight_call(void **state)
{
    slow_call call;

    (void)state;
    assert_int_equal(pthread_create(&call.thread, NULL, slow_call_run, &call),
                     0);
    assert_true(wait_in_flight(1));
    assert_int_equal(harness_stop(gw.tight_gate, 10000), 0);
    gw.tight_gate = NULL;
    pthread_join(call.thread, NULL);
    assert_int_equal(call.status, 200);
}

/* ---- OpenAPI ---- */

/* Checks that paths has a POST for every command that describe lists. */
static void
assert_openapi_covers(const json_t *paths, const char *route)
{
    char url[160];
    char path[160];
    http_reply reply;
    json_t *describe;
    json_t *command;
    size_t index;

    snprintf(url, sizeof(url), "%s/%s/describe", gw.open_url, route);
    http_request("GET", url, NULL, NULL, &reply);
    describe = http_json(&reply);
    assert_non_null(describe);
    json_array_foreach(json_object_get(describe, "commands"), index, command) {
        json_t *operation;

        snprintf(path, sizeof(path), "/%s/%s", route,
                 string_at(command, "name"));
        operation = json_object_get(json_object_get(paths, path), "post");
        if (operation == NULL) {
            fail_msg("the OpenAPI document lacks POST %s", path);
        }
        assert_non_null(json_object_get(operation, "requestBody"));
        assert_non_null(
            json_object_get(json_object_get(operation, "responses"), "204"));
    }
    json_decref(describe);
    http_reply_fini(&reply);
}

static void
test_openapi_describes_every_command(void **state)
{
    const char *routes[] = {"v1/counters", "v1/settings", "v1/logging",
                            "v1/gate_test"};
    char url[160];
    http_reply reply;
    json_t *doc;
    json_t *counter;

    (void)state;
    snprintf(url, sizeof(url), "%s/openapi.json", gw.open_url);
    http_request("GET", url, NULL, NULL, &reply);
    assert_int_equal(reply.status, 200);
    doc = http_json(&reply);
    assert_string_equal(string_at(doc, "openapi"), "3.0.3");
    for (size_t i = 0; i < 4; i++) {
        assert_openapi_covers(json_object_get(doc, "paths"), routes[i]);
    }
    /* Argument schemas become JSON Schemas with their bounds. */
    counter = json_object_get(
        json_object_get(
            json_object_get(
                json_object_get(
                    json_object_get(
                        json_object_get(
                            json_object_get(
                                json_object_get(
                                    json_object_get(doc, "paths"),
                                    "/v1/counters/write_counter"),
                                "post"),
                            "requestBody"),
                        "content"),
                    "application/json"),
                "schema"),
            "properties"),
        "counter");
    assert_string_equal(string_at(counter, "type"), "object");
    assert_int_equal(
        integer_at(json_object_get(json_object_get(counter, "properties"),
                                   "type"),
                   "maximum"),
        4);
    assert_non_null(json_object_get(
        json_object_get(json_object_get(doc, "components"), "schemas"),
        "ErrorDescription"));
    json_decref(doc);
    http_reply_fini(&reply);
}

/* ---- load ---- */

typedef struct load_worker {
    pthread_t thread;
    int index;
    int ok;      /* replies that were right */
    int wrong;   /* replies that were not */
    char first_wrong[256];
} load_worker;

static void
load_note_wrong(load_worker *w, const char *what, const http_reply *reply)
{
    if (w->wrong++ == 0) {
        snprintf(w->first_wrong, sizeof(w->first_wrong), "%s: %ld %.160s",
                 what, reply->status, reply->body ? reply->body : "");
    }
}

/*
 * Each worker increments its own counter over one kept-alive connection,
 * with echo calls in between that must return their own correlation id.
 */
static void *
load_worker_run(void *arg)
{
    load_worker *w = arg;
    CURL *curl = curl_easy_init();
    int64_t deadline = harness_now_ms() + LOAD_TIME_LIMIT_MS;
    char url[192];
    char body[160];

    for (int i = 0; curl != NULL && i < LOAD_CALLS_PER_THREAD &&
                    harness_now_ms() < deadline;
         i++) {
        http_reply reply;
        json_t *value;
        const char *cid;

        snprintf(url, sizeof(url), "%s/v1/counters/write_counter",
                 gw.open_url);
        snprintf(body, sizeof(body),
                 "{\"counter\":{\"name\":\"load.w%d\",\"type\":4,"
                 "\"count\":1}}",
                 w->index);
        http_send(curl, "POST", url, NULL, body, &reply);
        value = http_json(&reply);
        if (reply.status == 200 &&
            json_integer_value(json_object_get(value, "count")) == i + 1) {
            w->ok++;
        } else {
            load_note_wrong(w, "write_counter", &reply);
        }
        json_decref(value);
        http_reply_fini(&reply);

        snprintf(url, sizeof(url),
                 "%s/v1/gate_test/echo?correlation_id=w%d-%d", gw.open_url,
                 w->index, i);
        snprintf(body, sizeof(body), "w%d-%d", w->index, i);
        http_send(curl, "POST", url, NULL, "{}", &reply);
        value = http_json(&reply);
        cid = json_string_value(json_object_get(value, "correlation_id"));
        if (reply.status == 200 && cid != NULL && strcmp(cid, body) == 0) {
            w->ok++;
        } else {
            load_note_wrong(w, "echo", &reply);
        }
        json_decref(value);
        http_reply_fini(&reply);
    }
    if (curl != NULL) {
        curl_easy_cleanup(curl);
    }
    return NULL;
}

static void
test_concurrent_load_stays_correct(void **state)
{
    load_worker workers[LOAD_THREADS];
    json_t *page;
    char url[160];
    http_reply reply;

    (void)state;
    memset(workers, 0, sizeof(workers));
    for (int i = 0; i < LOAD_THREADS; i++) {
        workers[i].index = i;
        assert_int_equal(pthread_create(&workers[i].thread, NULL,
                                        load_worker_run, &workers[i]),
                         0);
    }
    for (int i = 0; i < LOAD_THREADS; i++) {
        pthread_join(workers[i].thread, NULL);
        if (workers[i].wrong > 0) {
            fail_msg("worker %d: %d wrong replies, first %s", i,
                     workers[i].wrong, workers[i].first_wrong);
        }
        assert_int_equal(workers[i].ok, 2 * LOAD_CALLS_PER_THREAD);
    }

    page = post_ok("/v1/counters/read_counters",
                   "{\"filter\":{\"group\":\"load\"},"
                   "\"paging\":{\"total\":true}}");
    assert_int_equal(json_array_size(json_object_get(page, "data")),
                     LOAD_THREADS);
    json_decref(page);
    snprintf(url, sizeof(url), "%s/health", gw.open_url);
    http_request("GET", url, NULL, NULL, &reply);
    assert_int_equal(reply.status, 200);
    page = http_json(&reply);
    assert_int_equal(integer_at(page, "in_flight"), 0);
    json_decref(page);
    http_reply_fini(&reply);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counters_commands),
        cmocka_unit_test(test_settings_commands),
        cmocka_unit_test(test_logging_commands),
        cmocka_unit_test(test_builtin_commands),
        cmocka_unit_test(test_null_result_is_204),
        cmocka_unit_test(test_error_category_statuses),
        cmocka_unit_test(test_correlation_id_passed_on),
        cmocka_unit_test(test_dates_round_trip_utc),
        cmocka_unit_test(test_paging_and_filter_strings),
        cmocka_unit_test(test_bad_bodies_rejected),
        cmocka_unit_test(test_bad_routes_rejected),
        cmocka_unit_test(test_unread_body_not_next_request),
        cmocka_unit_test(test_malformed_http_rejected),
        cmocka_unit_test(test_bearer_token_required),
        cmocka_unit_test(test_deadline_ends_slow_call),
        cmocka_unit_test(test_over_limit_gets_503),
        cmocka_unit_test(test_stalled_body_closed),
        cmocka_unit_test(test_stop_finishes_in_flight_call),
        cmocka_unit_test(test_openapi_describes_every_command),
        cmocka_unit_test(test_concurrent_load_stays_correct),
    };

    return cmocka_run_group_tests(tests, gateway_setup, gateway_teardown);
}
