/*
 * The HTTP side of pipgate: one NNG HTTP handler for the whole tree,
 * request checks, the worker pool that makes the blocking RPC calls, and
 * the replies.
 *
 * NNG calls the handler on its own threads, which must not block, so the
 * handler replies at once where it can (health, every rejected request)
 * and queues the rest.  A request is "in flight" from its admission until
 * its reply; at most max_concurrent are, and one more gets 503.
 */
#include <ctype.h>
#include <errno.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "pip/log.h"
#include "pip/time.h"
#include "pipgate.h"

/*
 * Time that the server gets to write the last replies before it stops.
 * NOTE: NNG 1.5 gives the handler no notice when a reply has been written,
 * so this is a guessed grace period, not a guarantee.  A reply to a slow
 * client may still be cut off at the stop.
 */
#define PIPGATE_STOP_GRACE_MS 200

/* Maximum length of a request path that names a route and a command. */
#define PIPGATE_PATH_MAX (2 * PIPGATE_NAME_MAX)

typedef enum pipgate_kind {
    PIPGATE_CALL,     /* POST /<route>/<command> */
    PIPGATE_DESCRIBE, /* GET /<route>/describe */
    PIPGATE_OPENAPI,  /* GET /openapi.json */
} pipgate_kind;

struct pipgate_job {
    pipgate *gate;
    nng_aio *aio;        /* the server's handler aio, finished once */
    nng_http_req *req;   /* valid until aio is finished */
    nng_aio *read_aio;   /* reads the body, or NULL */
    pipgate_kind kind;
    char route[PIPGATE_NAME_MAX];
    char command[PIPGATE_NAME_MAX];
    char cid[PIP_CORRELATION_ID_MAX];
    char *body;          /* the request body, or NULL when empty */
    size_t body_len;
    int64_t deadline_ms; /* pip_mono_ms() by which the reply is due */
    bool close;          /* close after the reply, because a body was
                            left unread */
    pipgate_job *next;
};

/* ---- replies ---- */

/*
 * Hands a response to the server.  body (may be NULL) is copied.  With
 * close the server closes the connection after the reply, which is
 * needed when a body was left unread.
 */
static void
pipgate_respond(nng_aio *aio, uint16_t status, const char *body,
                bool close)
{
    nng_http_res *res;

    if (nng_http_res_alloc(&res) != 0) {
        nng_aio_finish(aio, NNG_ENOMEM); /* the server drops the link */
        return;
    }
    nng_http_res_set_status(res, status);
    if (body != NULL &&
        (nng_http_res_set_header(res, "Content-Type",
                                 "application/json") != 0 ||
         nng_http_res_copy_data(res, body, strlen(body)) != 0)) {
        nng_http_res_free(res);
        nng_aio_finish(aio, NNG_ENOMEM);
        return;
    }
    if (close) {
        nng_http_res_set_header(res, "Connection", "close");
    }
    if (status == NNG_HTTP_STATUS_UNAUTHORIZED) {
        nng_http_res_set_header(res, "WWW-Authenticate", "Bearer");
    }
    if (status == NNG_HTTP_STATUS_METHOD_NOT_ALLOWED) {
        /* RFC 9110 requires the methods the resource allows. */
        nng_http_res_set_header(res, "Allow", "POST");
    }
    nng_aio_set_output(aio, 0, res);
    nng_aio_finish(aio, 0);
}

/* Ends one admitted request: it no longer counts as in flight. */
static void
pipgate_release(pipgate *gate)
{
    pthread_mutex_lock(&gate->mutex);
    gate->in_flight--;
    gate->served++;
    if (gate->in_flight == 0) {
        pthread_cond_broadcast(&gate->idle);
    }
    pthread_mutex_unlock(&gate->mutex);
}

/* Sends value as JSON, or 204 with no body when value is NULL or null. */
static void
pipgate_respond_json(nng_aio *aio, uint16_t status, const json_t *value,
                     bool close)
{
    char *text;

    if (value == NULL || json_is_null(value)) {
        pipgate_respond(aio, NNG_HTTP_STATUS_NO_CONTENT, NULL, close);
        return;
    }
    text = json_dumps(value, JSON_COMPACT | JSON_ENCODE_ANY);
    if (text == NULL) {
        nng_aio_finish(aio, NNG_ENOMEM);
        return;
    }
    pipgate_respond(aio, status, text, close);
    free(text);
}

/*
 * Sends the error description of err.  status 0 takes the status of the
 * category; another status (413, 415, 503, ...) replaces it, in the JSON
 * too.  cid fills the correlation id when the error carries none.
 */
static void
pipgate_respond_error(nng_aio *aio, const pip_error *err, uint16_t status,
                      const char *cid, bool close)
{
    json_t *description = pip_error_to_json(err);
    json_t *error_cid;

    if (description == NULL) {
        nng_aio_finish(aio, NNG_ENOMEM);
        return;
    }
    error_cid = json_object_get(description, "correlation_id");
    if ((!json_is_string(error_cid) ||
         json_string_length(error_cid) == 0) &&
        cid != NULL && cid[0] != '\0') {
        json_object_set_new(description, "correlation_id", json_string(cid));
    }
    if (status == 0) {
        status = (uint16_t)pip_category_http_status(err->category);
    }
    json_object_set_new(description, "status", json_integer(status));
    pipgate_respond_json(aio, status, description, close);
    json_decref(description);
}

/* Builds an error and sends it, for the checks of the handler. */
static void pipgate_reject(nng_aio *aio, uint16_t status,
                           pip_category category, const char *code,
                           const char *cid, bool close, const char *fmt,
                           ...) __attribute__((format(printf, 7, 8)));

static void
pipgate_reject(nng_aio *aio, uint16_t status, pip_category category,
               const char *code, const char *cid, bool close,
               const char *fmt, ...)
{
    pip_error err;
    va_list ap;

    pip_error_init(&err);
    va_start(ap, fmt);
    pip_error_vset(&err, category, code, fmt, ap);
    va_end(ap);
    pipgate_respond_error(aio, &err, status, cid, close);
    pip_error_fini(&err);
}

/* ---- request checks ---- */

/* True when the request carries the bearer token of the token file. */
static bool
pipgate_authorized(const pipgate *gate, nng_http_req *req)
{
    const char *header = nng_http_req_get_header(req, "Authorization");
    unsigned char hash[sizeof(gate->token_hash)];

    if (!gate->has_token) {
        return true;
    }
    if (header == NULL || strncasecmp(header, "Bearer ", 7) != 0) {
        return false;
    }
    header += 7;
    /* Comparing fixed-size hashes keeps the time independent of the
     * token's length as well as of its bytes. */
    crypto_generichash(hash, sizeof(hash), (const unsigned char *)header,
                       strlen(header), NULL, 0);
    return sodium_memcmp(hash, gate->token_hash, sizeof(hash)) == 0;
}

static int
pipgate_hex_value(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    c = (char)tolower((unsigned char)c);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/*
 * Percent-decodes the query value that starts at in and ends at '&' or
 * the end, into out[out_len].  Returns false when it is malformed or too
 * long.
 */
static bool
pipgate_query_decode(const char *in, char *out, size_t out_len)
{
    size_t used = 0;

    for (; *in != '\0' && *in != '&'; in++) {
        char c = *in;

        if (c == '%') {
            int high = pipgate_hex_value(in[1]);
            int low = high < 0 ? -1 : pipgate_hex_value(in[2]);

            if (low < 0) {
                return false;
            }
            c = (char)(high * 16 + low);
            in += 2;
        } else if (c == '+') {
            c = ' ';
        }
        if (used + 1 >= out_len) {
            return false;
        }
        out[used++] = c;
    }
    out[used] = '\0';
    return true;
}

/* A correlation id is printable ASCII without spaces, at most 63 bytes. */
static bool
pipgate_cid_valid(const char *cid)
{
    for (const char *p = cid; *p != '\0'; p++) {
        if (*p < 0x21 || *p > 0x7e) {
            return false;
        }
    }
    return strlen(cid) < PIP_CORRELATION_ID_MAX;
}

/*
 * Reads the correlation id from the query parameter correlation_id, or
 * else from the correlation_id header, into cid[PIP_CORRELATION_ID_MAX].
 * Returns false when the given value is invalid.
 */
static bool
pipgate_read_cid(nng_http_req *req, const char *query, char *cid)
{
    const char *header;

    cid[0] = '\0';
    for (const char *p = query; p != NULL && *p != '\0';) {
        if (strncmp(p, "correlation_id=", 15) == 0) {
            return pipgate_query_decode(p + 15, cid,
                                        PIP_CORRELATION_ID_MAX) &&
                   pipgate_cid_valid(cid);
        }
        p = strchr(p, '&');
        p = p != NULL ? p + 1 : NULL;
    }
    header = nng_http_req_get_header(req, "correlation_id");
    if (header == NULL) {
        return true;
    }
    if (strlen(header) >= PIP_CORRELATION_ID_MAX) {
        return false;
    }
    snprintf(cid, PIP_CORRELATION_ID_MAX, "%s", header);
    return pipgate_cid_valid(cid);
}

/*
 * True for a JSON body: application/json or a +json type.  No type, and
 * application/x-www-form-urlencoded (what `curl -d` sends without an
 * explicit Content-Type), are read as JSON too.
 */
static bool
pipgate_content_type_ok(nng_http_req *req)
{
    const char *type = nng_http_req_get_header(req, "Content-Type");
    size_t len;

    if (type == NULL) {
        return true;
    }
    while (*type == ' ') {
        type++;
    }
    len = strcspn(type, "; ");
    if ((len == 16 && strncasecmp(type, "application/json", len) == 0) ||
        (len == 33 && strncasecmp(type, "application/x-www-form-urlencoded",
                                  len) == 0)) {
        return true;
    }
    return len > 5 && strncasecmp(type + len - 5, "+json", 5) == 0 &&
           strncasecmp(type, "application/", 12) == 0;
}

/*
 * Splits "/v1/counters/read_counters" into route and command.  Returns
 * false when the path cannot name a command: a route is one or more
 * segments of a-z, 0-9 and _, and so is a command name.
 */
static bool
pipgate_split_path(const char *path, char *route, char *command)
{
    const char *allowed = "abcdefghijklmnopqrstuvwxyz0123456789_";
    const char *last = strrchr(path, '/');
    size_t route_len;
    size_t command_len;

    if (path[0] != '/' || last == NULL || last == path ||
        strlen(path) >= PIPGATE_PATH_MAX) {
        return false;
    }
    route_len = (size_t)(last - path - 1);
    command_len = strlen(last + 1);
    if (route_len >= PIPGATE_NAME_MAX || command_len == 0 ||
        command_len >= PIPGATE_NAME_MAX ||
        strspn(last + 1, allowed) != command_len) {
        return false;
    }
    memcpy(route, path + 1, route_len);
    route[route_len] = '\0';
    memcpy(command, last + 1, command_len + 1);
    return true;
}

/* ---- the queue and the workers ---- */

static void
pipgate_job_free(pipgate_job *job)
{
    if (job->read_aio != NULL) {
        nng_aio_reap(job->read_aio); /* safe in its own callback */
    }
    free(job->body);
    free(job);
}

static void
pipgate_enqueue(pipgate *gate, pipgate_job *job)
{
    pthread_mutex_lock(&gate->mutex);
    if (gate->queue_tail != NULL) {
        gate->queue_tail->next = job;
    } else {
        gate->queue_head = job;
    }
    gate->queue_tail = job;
    pthread_cond_signal(&gate->job_ready);
    pthread_mutex_unlock(&gate->mutex);
}

/* Sends the reply of a job, releases its slot and frees it. */
static void
pipgate_job_finish_error(pipgate_job *job, const pip_error *err,
                         uint16_t status)
{
    pipgate *gate = job->gate;

    pipgate_respond_error(job->aio, err, status, job->cid, job->close);
    pipgate_release(gate);
    pipgate_job_free(job);
}

static void
pipgate_job_finish(pipgate_job *job, const json_t *value)
{
    pipgate *gate = job->gate;

    pipgate_respond_json(job->aio, NNG_HTTP_STATUS_OK, value, job->close);
    pipgate_release(gate);
    pipgate_job_free(job);
}

/* Parses the body: no body is no arguments, else one JSON object. */
static int
pipgate_parse_body(const pipgate_job *job, json_t **args, pip_error *err)
{
    json_error_t jerr;

    if (job->body_len == 0) {
        *args = json_object();
        return *args != NULL ? PIP_OK
                             : pip_error_set(err, PIP_E_INTERNAL,
                                             "OUT_OF_MEMORY",
                                             "out of memory");
    }
    *args = json_loadb(job->body, job->body_len, JSON_REJECT_DUPLICATES,
                       &jerr);
    if (*args == NULL) {
        pip_error_set(err, PIP_E_BAD_REQUEST, "INVALID_JSON",
                      "The request body is not valid JSON: %s (line %d, "
                      "column %d).",
                      jerr.text, jerr.line, jerr.column);
        pip_error_detail(err, "position", json_integer(jerr.position));
        return PIP_E_BAD_REQUEST;
    }
    if (!json_is_object(*args)) {
        json_decref(*args);
        *args = NULL;
        return pip_error_set(err, PIP_E_BAD_REQUEST, "INVALID_JSON",
                             "The request body must be a JSON object of "
                             "named arguments, such as {\"filter\": {}}.");
    }
    return PIP_OK;
}

/*
 * Finds the service of the job's route, or fails with NotFound
 * ROUTE_NOT_FOUND, or with FailedInvocation DISCOVERY_UNAVAILABLE when
 * discovery did not reply.
 */
static int
pipgate_job_service(pipgate_job *job, char *service, pip_error *err)
{
    char failure[PIP_MESSAGE_MAX];

    if (pipgate_routes_find(&job->gate->routes, job->route, service,
                            failure)) {
        return PIP_OK;
    }
    if (failure[0] != '\0') {
        /* The route may exist: the gateway could not ask discovery. */
        pip_error_set(err, PIP_E_UNAVAILABLE, "DISCOVERY_UNAVAILABLE",
                      "The gateway cannot tell which service serves "
                      "'/%s', because discovery did not reply: %s. Check "
                      "that discovery runs and, on a network with a key, "
                      "that the gateway has it (--network-key-file).",
                      job->route, failure);
        pip_error_detail(err, "route", json_string(job->route));
        return PIP_E_UNAVAILABLE;
    }
    pip_error_set(err, PIP_E_NOT_FOUND, "ROUTE_NOT_FOUND",
                  "No service serves the route '/%s'; GET /openapi.json "
                  "lists the routes.",
                  job->route);
    pip_error_detail(err, "route", json_string(job->route));
    return PIP_E_NOT_FOUND;
}

/* Calls service.command with the time left before the job's deadline. */
static int
pipgate_job_call(pipgate_job *job, const char *service, const char *command,
                 const json_t *args, json_t **result, pip_error *err)
{
    char method[PIP_METHOD_MAX];
    int64_t left_ms = job->deadline_ms - pip_mono_ms();
    pip_meta meta;

    if (left_ms <= 0) {
        return pip_error_set(err, PIP_E_TIMEOUT, "TIMEOUT",
                             "The request waited past its deadline of %u "
                             "ms before it could be sent.",
                             job->gate->opt.timeout_ms);
    }
    if ((size_t)snprintf(method, sizeof(method), "%s.%s", service,
                         command) >= sizeof(method)) {
        return pip_error_set(err, PIP_E_NOT_FOUND, "UNKNOWN_COMMAND",
                             "The command name '%s' is too long.", command);
    }
    memset(&meta, 0, sizeof(meta));
    snprintf(meta.correlation_id, sizeof(meta.correlation_id), "%s",
             job->cid);
    meta.timeout_ms = (uint32_t)left_ms;
    return pip_client_call(job->gate->client, method, args, &meta, result,
                           err);
}

static void
pipgate_run_call(pipgate_job *job, pip_error *err)
{
    char service[PIPGATE_NAME_MAX];
    json_t *args = NULL;
    json_t *result = NULL;
    int rv;

    rv = pipgate_parse_body(job, &args, err);
    if (rv == PIP_OK) {
        rv = pipgate_job_service(job, service, err);
    }
    if (rv == PIP_OK) {
        rv = pipgate_job_call(job, service, job->command, args, &result,
                              err);
    }
    json_decref(args);
    if (rv != PIP_OK) {
        if (pip_category_http_status(rv) >= 500) {
            pip_log(PIP_LOG_WARN, "pipgate", job->cid, "/%s/%s failed: %s %s",
                    job->route, job->command, err->code, err->message);
        }
        pipgate_job_finish_error(job, err, 0);
        return;
    }
    pipgate_job_finish(job, result);
    json_decref(result);
}

static void
pipgate_run_describe(pipgate_job *job, pip_error *err)
{
    char service[PIPGATE_NAME_MAX];
    json_t *result = NULL;
    int rv = pipgate_job_service(job, service, err);

    if (rv == PIP_OK) {
        rv = pipgate_job_call(job, service, "describe", NULL, &result, err);
    }
    if (rv != PIP_OK) {
        pipgate_job_finish_error(job, err, 0);
        return;
    }
    pipgate_job_finish(job, result);
    json_decref(result);
}

static void
pipgate_run_openapi(pipgate_job *job, pip_error *err)
{
    pipgate *gate = job->gate;
    json_t *doc;

    pipgate_routes_update(&gate->routes);
    doc = pipgate_openapi(&gate->routes, gate->opt.listen, gate->has_token);
    if (doc == NULL) {
        pip_error_set(err, PIP_E_INTERNAL, "OUT_OF_MEMORY", "out of memory");
        pipgate_job_finish_error(job, err, 0);
        return;
    }
    pipgate_job_finish(job, doc);
    json_decref(doc);
}

static void
pipgate_run(pipgate_job *job)
{
    pip_error err;

    /* An admitted job runs even when the gateway started stopping while it
     * was queued: the client was accepted, and the call's deadline bounds
     * the wait for it. */
    pip_error_init(&err);
    if (job->kind == PIPGATE_CALL) {
        pipgate_run_call(job, &err);
    } else if (job->kind == PIPGATE_DESCRIBE) {
        pipgate_run_describe(job, &err);
    } else {
        pipgate_run_openapi(job, &err);
    }
    pip_error_fini(&err);
}

/* A worker: runs queued jobs until the queue is empty and the gateway
 * stops. */
static void *
pipgate_worker(void *arg)
{
    pipgate *gate = arg;

    for (;;) {
        pipgate_job *job;

        pthread_mutex_lock(&gate->mutex);
        while (gate->queue_head == NULL && gate->workers_running) {
            pthread_cond_wait(&gate->job_ready, &gate->mutex);
        }
        job = gate->queue_head;
        if (job == NULL) {
            pthread_mutex_unlock(&gate->mutex);
            return NULL;
        }
        gate->queue_head = job->next;
        if (gate->queue_head == NULL) {
            gate->queue_tail = NULL;
        }
        pthread_mutex_unlock(&gate->mutex);
        pipgate_run(job);
    }
}

/* ---- the handler ---- */

/*
 * Called when the body has been read or the read failed.  A read that
 * timed out gets no 408 reply, because NNG's HTTP connection closes
 * itself when a read is cancelled, so the client sees the connection
 * close.
 */
static void
pipgate_body_read(void *arg)
{
    pipgate_job *job = arg;
    pipgate *gate = job->gate;
    int rv = nng_aio_result(job->read_aio);

    if (rv == 0) {
        pipgate_enqueue(gate, job);
        return;
    }
    pip_log(PIP_LOG_DEBUG, "pipgate", job->cid,
            "request body of /%s/%s not read: %s", job->route, job->command,
            nng_strerror(rv));
    nng_aio_finish(job->aio, rv); /* the server closes the connection */
    pipgate_release(gate);
    pipgate_job_free(job);
}

/*
 * Checks Content-Type, Transfer-Encoding and Content-Length of a POST,
 * and sets *len.  Returns false after rejecting the request.
 */
static bool
pipgate_check_body(pipgate *gate, nng_aio *aio, nng_http_req *req,
                   const char *cid, size_t *len)
{
    const char *length = nng_http_req_get_header(req, "Content-Length");
    char *end;
    unsigned long long value;

    if (nng_http_req_get_header(req, "Transfer-Encoding") != NULL) {
        pipgate_reject(aio, NNG_HTTP_STATUS_LENGTH_REQUIRED,
                       PIP_E_BAD_REQUEST, "LENGTH_REQUIRED", cid, true,
                       "Send the body with a Content-Length header; "
                       "chunked transfer encoding is not supported.");
        return false;
    }
    if (!pipgate_content_type_ok(req)) {
        pipgate_reject(aio, NNG_HTTP_STATUS_UNSUPPORTED_MEDIA_TYPE,
                       PIP_E_BAD_REQUEST, "UNSUPPORTED_MEDIA_TYPE", cid, true,
                       "The body must be JSON: send Content-Type: "
                       "application/json.");
        return false;
    }
    *len = 0;
    if (length == NULL) {
        return true;
    }
    errno = 0;
    value = strtoull(length, &end, 10);
    if (errno != 0 || end == length || *end != '\0' ||
        !isdigit((unsigned char)length[0])) {
        pipgate_reject(aio, NNG_HTTP_STATUS_BAD_REQUEST, PIP_E_BAD_REQUEST,
                       "INVALID_REQUEST", cid, true,
                       "Invalid Content-Length header '%.32s'.", length);
        return false;
    }
    if (value > gate->opt.max_body_bytes) {
        pipgate_reject(aio, NNG_HTTP_STATUS_PAYLOAD_TOO_LARGE,
                       PIP_E_BAD_REQUEST, "LIMIT_EXCEEDED", cid, true,
                       "The body of %llu bytes is larger than the limit of "
                       "%zu bytes (--max-body-bytes).",
                       value, gate->opt.max_body_bytes);
        return false;
    }
    *len = (size_t)value;
    return true;
}

/* Starts reading a body of len bytes.  The job is queued once it is read. */
static bool
pipgate_read_body(pipgate_job *job, nng_http_conn *conn, size_t len)
{
    nng_iov iov;

    job->body = malloc(len + 1);
    if (job->body == NULL ||
        nng_aio_alloc(&job->read_aio, pipgate_body_read, job) != 0) {
        return false;
    }
    job->body_len = len;
    iov.iov_buf = job->body;
    iov.iov_len = len;
    nng_aio_set_iov(job->read_aio, 1, &iov);
    nng_aio_set_timeout(job->read_aio, (nng_duration)job->gate->opt.timeout_ms);
    nng_http_conn_read_all(conn, job->read_aio);
    return true;
}

/*
 * True when a request that is not a command call announces a body.  The
 * gateway does not read such a body, so it closes the connection after
 * the reply rather than read the body as the next request.
 */
static bool
pipgate_has_body(nng_http_req *req)
{
    const char *length = nng_http_req_get_header(req, "Content-Length");

    return nng_http_req_get_header(req, "Transfer-Encoding") != NULL ||
           (length != NULL && strcmp(length, "0") != 0);
}

static pipgate_job *
pipgate_job_new(pipgate *gate, nng_aio *aio, nng_http_req *req,
                pipgate_kind kind, const char *cid)
{
    pipgate_job *job = calloc(1, sizeof(*job));

    if (job == NULL) {
        return NULL;
    }
    job->gate = gate;
    job->aio = aio;
    job->req = req;
    job->kind = kind;
    job->deadline_ms = pip_mono_ms() + gate->opt.timeout_ms;
    job->close = kind != PIPGATE_CALL && pipgate_has_body(req);
    snprintf(job->cid, sizeof(job->cid), "%s", cid);
    return job;
}

/* Queues a command call, after reading its body. */
static void
pipgate_accept_call(pipgate *gate, nng_aio *aio, pipgate_job *job)
{
    nng_http_req *req = job->req;
    nng_http_conn *conn = nng_aio_get_input(aio, 2);
    size_t len;

    if (!pipgate_check_body(gate, aio, req, job->cid, &len)) {
        pipgate_release(gate);
        pipgate_job_free(job);
        return;
    }
    if (len == 0) {
        pipgate_enqueue(gate, job);
        return;
    }
    if (!pipgate_read_body(job, conn, len)) {
        nng_aio_finish(aio, NNG_ENOMEM);
        pipgate_release(gate);
        pipgate_job_free(job);
    }
}

static void
pipgate_respond_health(pipgate *gate, nng_aio *aio, bool close)
{
    json_t *health;

    pthread_mutex_lock(&gate->mutex);
    health = json_pack("{s:s, s:I, s:I, s:I}", "status", "ok", "uptime_ms",
                       (json_int_t)(pip_mono_ms() - gate->started_ms),
                       "in_flight", (json_int_t)gate->in_flight, "served",
                       (json_int_t)gate->served);
    pthread_mutex_unlock(&gate->mutex);
    pipgate_respond_json(aio, NNG_HTTP_STATUS_OK, health, close);
    json_decref(health);
}

/*
 * Routes an admitted request that passed the token check: replies to it
 * or rejects it, or queues it for a worker.
 */
static void
pipgate_dispatch(pipgate *gate, nng_aio *aio, nng_http_req *req,
                 const char *path, const char *cid)
{
    const char *method = nng_http_req_get_method(req);
    bool get = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
    char route[PIPGATE_NAME_MAX];
    char command[PIPGATE_NAME_MAX];
    pipgate_job *job = NULL;
    pipgate_kind kind = PIPGATE_CALL;

    if (strcmp(path, "/openapi.json") == 0 && get) {
        kind = PIPGATE_OPENAPI;
    } else if (!pipgate_split_path(path, route, command)) {
        pipgate_reject(aio, NNG_HTTP_STATUS_NOT_FOUND, PIP_E_NOT_FOUND,
                       "ROUTE_NOT_FOUND", cid, true,
                       "No command at '%.200s'; commands are POST "
                       "/<route>/<command>, see GET /openapi.json.",
                       path);
        pipgate_release(gate);
        return;
    } else if (get && strcmp(command, "describe") == 0) {
        kind = PIPGATE_DESCRIBE;
    } else if (strcmp(method, "POST") != 0) {
        pipgate_reject(aio, NNG_HTTP_STATUS_METHOD_NOT_ALLOWED,
                       PIP_E_BAD_REQUEST, "METHOD_NOT_ALLOWED", cid, true,
                       "Commands are called with POST, not %.16s.", method);
        pipgate_release(gate);
        return;
    }

    job = pipgate_job_new(gate, aio, req, kind, cid);
    if (job == NULL) {
        nng_aio_finish(aio, NNG_ENOMEM);
        pipgate_release(gate);
        return;
    }
    if (kind != PIPGATE_OPENAPI) {
        snprintf(job->route, sizeof(job->route), "%s", route);
        snprintf(job->command, sizeof(job->command), "%s", command);
    }
    if (kind == PIPGATE_CALL) {
        pipgate_accept_call(gate, aio, job);
    } else {
        pipgate_enqueue(gate, job);
    }
}

/*
 * Admits one more request.  Otherwise replies 503 and returns false,
 * because the gateway is stopping or max_concurrent requests are in
 * flight.
 */
static bool
pipgate_admit(pipgate *gate, nng_aio *aio)
{
    bool stopping;
    bool admitted;

    pthread_mutex_lock(&gate->mutex);
    stopping = gate->stopping;
    admitted = !stopping && gate->in_flight < gate->opt.max_concurrent;
    if (admitted) {
        gate->in_flight++;
    }
    pthread_mutex_unlock(&gate->mutex);
    if (stopping) {
        pipgate_reject(aio, NNG_HTTP_STATUS_SERVICE_UNAVAILABLE,
                       PIP_E_UNAVAILABLE, "SHUTTING_DOWN", NULL, true,
                       "The gateway is stopping; retry on another one.");
    } else if (!admitted) {
        pipgate_reject(aio, NNG_HTTP_STATUS_SERVICE_UNAVAILABLE,
                       PIP_E_UNAVAILABLE, "TOO_MANY_REQUESTS", NULL, true,
                       "The gateway already serves %u requests "
                       "(--max-concurrent); retry later.",
                       gate->opt.max_concurrent);
    }
    return admitted;
}

/* Checks that apply to every path: admission, token, correlation id. */
static void
pipgate_handle(nng_aio *aio)
{
    nng_http_req *req = nng_aio_get_input(aio, 0);
    pipgate *gate = nng_http_handler_get_data(nng_aio_get_input(aio, 1));
    const char *uri = nng_http_req_get_uri(req);
    size_t path_len = strcspn(uri, "?");
    char path[PIPGATE_PATH_MAX + 1];
    char cid[PIP_CORRELATION_ID_MAX];

    snprintf(path, sizeof(path), "%.*s", (int)path_len, uri);
    if (strcmp(path, "/health") == 0 &&
        strcmp(nng_http_req_get_method(req), "POST") != 0) {
        pipgate_respond_health(gate, aio, pipgate_has_body(req));
        return;
    }
    if (!pipgate_admit(gate, aio)) {
        return;
    }
    if (!pipgate_authorized(gate, req)) {
        pipgate_reject(aio, NNG_HTTP_STATUS_UNAUTHORIZED, PIP_E_UNAUTHORIZED,
                       "UNAUTHORIZED", NULL, true,
                       "Missing or wrong bearer token; send the header "
                       "'Authorization: Bearer <token>'.");
        pipgate_release(gate);
        return;
    }
    if (!pipgate_read_cid(req, uri[path_len] == '?' ? uri + path_len + 1
                                                    : NULL,
                          cid)) {
        pipgate_reject(aio, NNG_HTTP_STATUS_BAD_REQUEST, PIP_E_BAD_REQUEST,
                       "INVALID_DATA", NULL, true,
                       "Invalid correlation_id: expected at most %d "
                       "printable ASCII characters without spaces.",
                       PIP_CORRELATION_ID_MAX - 1);
        pipgate_release(gate);
        return;
    }
    pipgate_dispatch(gate, aio, req, path, cid);
}

/* ---- start and stop ---- */

static int
pipgate_start_workers(pipgate *gate, pip_error *err)
{
    uint32_t count = gate->opt.workers;

    gate->threads = calloc(count, sizeof(*gate->threads));
    if (gate->threads == NULL) {
        return pip_error_set(err, PIP_E_INTERNAL, "OUT_OF_MEMORY",
                             "out of memory");
    }
    gate->workers_running = true; /* before any worker reads it */
    for (uint32_t i = 0; i < count; i++) {
        int rv = pthread_create(&gate->threads[i], NULL, pipgate_worker,
                                gate);

        if (rv != 0) {
            return pip_error_set(err, PIP_E_INTERNAL, "THREAD_FAILED",
                                 "failed to start a worker thread: %s",
                                 strerror(rv));
        }
        gate->thread_count = i + 1;
    }
    return PIP_OK;
}

/* Sets up the one handler for every path below "/". */
static int
pipgate_add_handler(pipgate *gate, pip_error *err)
{
    int rv = nng_http_handler_alloc(&gate->handler, "/", pipgate_handle);

    if (rv == 0) {
        rv = nng_http_handler_set_method(gate->handler, NULL);
    }
    if (rv == 0) {
        rv = nng_http_handler_set_tree(gate->handler);
    }
    if (rv == 0) {
        /* The handler reads bodies itself, so that it can reject a
         * body over the limit with 413 and the error description. */
        rv = nng_http_handler_collect_body(gate->handler, false, 0);
    }
    if (rv == 0) {
        rv = nng_http_handler_set_data(gate->handler, gate, NULL);
    }
    if (rv == 0) {
        rv = nng_http_server_add_handler(gate->server, gate->handler);
    }
    if (rv != 0) {
        if (gate->handler != NULL) {
            nng_http_handler_free(gate->handler);
        }
        gate->handler = NULL;
        return pip_error_set(err, PIP_E_INTERNAL, "HTTP_FAILED",
                             "failed to set up the HTTP handler: %s",
                             nng_strerror(rv));
    }
    return PIP_OK;
}

int
pipgate_http_start(pipgate *gate, pip_error *err)
{
    int rv;

    gate->started_ms = pip_mono_ms();
    if (pipgate_start_workers(gate, err) != PIP_OK) {
        return err->category;
    }
    rv = nng_url_parse(&gate->url, gate->opt.listen);
    if (rv == 0) {
        rv = nng_http_server_hold(&gate->server, gate->url);
    }
    if (rv != 0) {
        return pip_error_set(err, PIP_E_BAD_REQUEST, "INVALID_URL",
                             "cannot serve HTTP on '%s': %s",
                             gate->opt.listen, nng_strerror(rv));
    }
    if (pipgate_add_handler(gate, err) != PIP_OK) {
        return err->category;
    }
    rv = nng_http_server_start(gate->server);
    if (rv != 0) {
        return pip_error_set(err, PIP_E_UNAVAILABLE, "LISTEN_FAILED",
                             "failed to listen on %s: %s", gate->opt.listen,
                             nng_strerror(rv));
    }
    return PIP_OK;
}

/* Stops the workers after the queue is empty. */
static void
pipgate_stop_workers(pipgate *gate)
{
    uint32_t count;

    pthread_mutex_lock(&gate->mutex);
    gate->workers_running = false;
    pthread_cond_broadcast(&gate->job_ready);
    pthread_mutex_unlock(&gate->mutex);
    count = gate->thread_count;
    gate->thread_count = 0;
    for (uint32_t i = 0; i < count; i++) {
        pthread_join(gate->threads[i], NULL);
    }
    free(gate->threads);
    gate->threads = NULL;
}

void
pipgate_http_stop(pipgate *gate)
{
    /* New requests get 503 from here on.  Each admitted request, queued or
     * running, ends within its deadline (body read and call are both
     * bounded), so this wait ends.  The server must stop only after that,
     * because it waits for every handler aio to finish. */
    pthread_mutex_lock(&gate->mutex);
    gate->stopping = true;
    while (gate->in_flight > 0) {
        pthread_cond_wait(&gate->idle, &gate->mutex);
    }
    pthread_mutex_unlock(&gate->mutex);

    pipgate_stop_workers(gate);
    if (gate->server != NULL) {
        struct timespec grace = {0, PIPGATE_STOP_GRACE_MS * 1000000L};

        nanosleep(&grace, NULL);
        nng_http_server_stop(gate->server);
        nng_http_server_release(gate->server);
        gate->server = NULL;
    } else if (gate->handler != NULL) {
        nng_http_handler_free(gate->handler);
    }
    gate->handler = NULL;
    if (gate->url != NULL) {
        nng_url_free(gate->url);
        gate->url = NULL;
    }
}
