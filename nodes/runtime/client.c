/*
 * The RPC client: one NNG req0 socket per endpoint URL, shared by every
 * thread, and one NNG context per call so that calls run concurrently.
 *
 * A req0 socket normally resends a request whose reply is late, and
 * resends it at once when the connection it went out on drops.  Both would
 * run a call twice, so every context sets NNG_OPT_REQ_RESENDTIME to
 * NNG_DURATION_INFINITE.  In nng 1.5.2 that also turns a dropped
 * connection into NNG_ECONNRESET on the pending receive instead of a
 * resend (checked against libnng 1.5.2 on Debian 12).
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>

#include "pip/client.h"
#include "pip/discovery.h"
#include "pip/time.h"
#include "seal_msg.h"

#define CLIENT_DEFAULT_TIMEOUT_MS 10000
#define CLIENT_HOST_MAX 256
/*
 * How long a call waits for a connection to one instance before it tries
 * the next one.  The last instance gets the rest of the call's timeout.
 */
#define CLIENT_CONNECT_WAIT_MS 500
/*
 * How long a call waits for a connection whose dials are being refused.
 * NNG keeps redialing in the background, so a node that is starting gets
 * this long to come up, and a node that is down fails the call quickly
 * instead of after the whole timeout.
 */
#define CLIENT_REFUSED_WAIT_MS 1000
/* How often a waiting call looks at the dialer's failures after that. */
#define CLIENT_DIAL_POLL_MS 100
/* How long an instance that did not connect is tried without waiting. */
#define CLIENT_DOWN_MS 2000
/* Sockets that are unused and disconnected for this long are closed. */
#define CLIENT_IDLE_CLOSE_MS 30000
/* Services whose round-robin position is kept; more resets them all. */
#define CLIENT_MAX_TURNS 1024
/*
 * How long closing a socket waits for a connection that its dial may still
 * be setting up.  NNG 1.5.2 leaks the pipe when the socket closes during
 * the connection's handshake (seen with AddressSanitizer on Debian 12's
 * libnng1), so a freshly dialed socket is given this long to finish.
 */
#define CLIENT_DIAL_SETTLE_MS 200

typedef struct client_endpoint client_endpoint;

/* One req0 socket dialed to one URL. */
struct client_endpoint {
    client_endpoint *next;
    pip_client *client;
    nng_socket sock;
    nng_dialer dialer;
    int pipes;             /* connected pipes, counted by the notifier */
    int users;             /* calls using the socket now */
    int64_t down_until_ms; /* monotonic; see CLIENT_DOWN_MS */
    int64_t last_used_ms;  /* monotonic */
    int64_t dialed_ms;     /* monotonic */
    char url[];
};

struct pip_client {
    pip_limits limits;
    pip_keyring *keyring; /* seals calls when it has a network key */
    uint32_t timeout_ms;
    char *discovery_url;
    pip_resolver *resolver; /* NULL with a fixed endpoint */
    client_endpoint *fixed; /* the fixed endpoint, or NULL */
    char host[CLIENT_HOST_MAX];
    atomic_uint_fast64_t next_msgid;

    pthread_mutex_t lock; /* guards the members below and the pipes,
                             users and times of every endpoint */
    pthread_cond_t connected;
    client_endpoint *endpoints;
    json_t *turns; /* service name -> next round-robin index */
};

/* The state of an endpoint's connection after a wait. */
typedef enum client_link {
    CLIENT_LINK_UP,      /* connected */
    CLIENT_LINK_PENDING, /* no connection yet, and no dial failed */
    CLIENT_LINK_REFUSED, /* dials were refused or failed */
} client_link;

/* What happened to one attempt of a call on one endpoint. */
typedef enum client_outcome {
    CLIENT_REPLIED,  /* a reply arrived, whatever it contains */
    CLIENT_NOT_SENT, /* the request never left, so another try is safe */
    CLIENT_LOST,     /* sent, but no reply: it may have run */
} client_outcome;

typedef struct client_call {
    const char *method;
    char service[PIP_METHOD_MAX];
    const json_t *args;
    pip_meta meta;
    int64_t deadline_ms; /* monotonic */
    uint64_t msgid;
    uint8_t nonce[PIP_SEAL_NONCE_BYTES]; /* of the sealed request */
    json_t *result;
} client_call;

void
pip_client_options_init(pip_client_options *opt)
{
    memset(opt, 0, sizeof(*opt));
    opt->timeout_ms = CLIENT_DEFAULT_TIMEOUT_MS;
    pip_limits_default(&opt->limits);
    opt->keyring = pip_keyring_default();
}

static void
client_detail(pip_error *err, const char *key, json_t *value)
{
    if (err != NULL) {
        pip_error_detail(err, key, value);
    } else {
        json_decref(value);
    }
}

static int
client_nng_error(pip_error *err, pip_category category, const char *code,
                 int nng_rv, const char *what, const char *url)
{
    pip_error_set(err, category, code, "Failed to %s %s: %s", what, url,
                  nng_strerror(nng_rv));
    client_detail(err, "url", json_string(url));
    client_detail(err, "cause", json_string(nng_strerror(nng_rv)));
    return category;
}

/* ---- endpoints ---- */

static void
client_pipe_event(nng_pipe pipe, nng_pipe_ev event, void *arg)
{
    client_endpoint *ep = arg;
    pip_client *client = ep->client;

    (void)pipe;
    pthread_mutex_lock(&client->lock);
    if (event == NNG_PIPE_EV_ADD_POST) {
        ep->pipes++;
        pthread_cond_broadcast(&client->connected);
    } else if (event == NNG_PIPE_EV_REM_POST && ep->pipes > 0) {
        ep->pipes--;
    }
    pthread_mutex_unlock(&client->lock);
}

static int
client_socket_open(pip_client *client, client_endpoint *ep, pip_error *err)
{
    int rv;

    rv = nng_req0_open(&ep->sock);
    if (rv != 0) {
        return client_nng_error(err, PIP_E_INTERNAL, "CONNECTION_FAILED", rv,
                                "open a socket for", ep->url);
    }
    rv = nng_socket_set_size(ep->sock, NNG_OPT_RECVMAXSZ,
                             client->limits.max_msg_bytes);
    if (rv == 0) {
        rv = nng_pipe_notify(ep->sock, NNG_PIPE_EV_ADD_POST, client_pipe_event,
                             ep);
    }
    if (rv == 0) {
        rv = nng_pipe_notify(ep->sock, NNG_PIPE_EV_REM_POST, client_pipe_event,
                             ep);
    }
    if (rv != 0) {
        nng_close(ep->sock);
        return client_nng_error(err, PIP_E_INTERNAL, "CONNECTION_FAILED", rv,
                                "configure the socket for", ep->url);
    }
    return PIP_OK;
}

static int
client_endpoint_open(pip_client *client, const char *url,
                     client_endpoint **out, pip_error *err)
{
    size_t len = strlen(url);
    client_endpoint *ep;
    int rv;

    ep = calloc(1, sizeof(*ep) + len + 1);
    if (ep == NULL) {
        return pip_error_set(err, PIP_E_INTERNAL, "OUT_OF_MEMORY",
                             "Failed to allocate an endpoint");
    }
    memcpy(ep->url, url, len + 1);
    ep->client = client;
    ep->last_used_ms = pip_mono_ms();
    ep->dialed_ms = ep->last_used_ms;

    rv = client_socket_open(client, ep, err);
    if (rv != PIP_OK) {
        free(ep);
        return rv;
    }

    /* Non-blocking, so that a node that is down now is dialed again in
     * the background by NNG until it comes up. */
    rv = nng_dial(ep->sock, url, &ep->dialer, NNG_FLAG_NONBLOCK);
    if (rv != 0) {
        nng_close(ep->sock);
        free(ep);
        if (rv == NNG_EADDRINVAL || rv == NNG_ENOTSUP) {
            return client_nng_error(err, PIP_E_BAD_REQUEST, "INVALID_URL", rv,
                                    "dial", url);
        }
        return client_nng_error(err, PIP_E_UNAVAILABLE, "CONNECTION_FAILED",
                                rv, "dial", url);
    }

    *out = ep;
    return PIP_OK;
}

/* Waits on client->connected until ep has a pipe or until_ms passes.
 * Call locked. */
static bool
client_wait_pipe(pip_client *client, client_endpoint *ep, int64_t until_ms)
{
    struct timespec at;
    int64_t left_ms;

    while (ep->pipes == 0) {
        left_ms = until_ms - pip_mono_ms();
        if (left_ms <= 0) {
            break;
        }
        clock_gettime(CLOCK_MONOTONIC, &at);
        at.tv_sec += left_ms / 1000;
        at.tv_nsec += (left_ms % 1000) * 1000000L;
        if (at.tv_nsec >= 1000000000L) {
            at.tv_sec++;
            at.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&client->connected, &client->lock, &at);
    }
    return ep->pipes > 0;
}

/*
 * Counts the failed dials of ep and sets *refused when a peer refused one.
 * A non-blocking nng_dial() reports no failure to its caller, because the
 * dialer retries in the background, so the count comes from NNG's
 * statistics of the dialer (nng 1.5.2 names them "refused", "timeout",
 * "proto" and "other").  Returns 0 when NNG keeps no statistics.
 */
static uint64_t
client_dial_failures(const client_endpoint *ep, bool *refused)
{
    static const char *const names[] = {"refused", "timeout", "proto",
                                        "other", NULL};
    nng_stat *all = NULL;
    nng_stat *dialer;
    nng_stat *stat;
    uint64_t failures = 0;

    *refused = false;
    if (nng_stats_get(&all) != 0) {
        return 0;
    }
    dialer = nng_stat_find_dialer(all, ep->dialer);
    for (int i = 0; dialer != NULL && names[i] != NULL; i++) {
        stat = nng_stat_find(dialer, names[i]);
        if (stat == NULL) {
            continue;
        }
        failures += nng_stat_value(stat);
        if (i == 0 && nng_stat_value(stat) > 0) {
            *refused = true;
        }
    }
    nng_stats_free(all);
    return failures;
}

/*
 * Waits until the endpoint has a connection or until_ms passes.  When
 * its dials have failed, the wait ends after CLIENT_REFUSED_WAIT_MS with
 * CLIENT_LINK_REFUSED, and *refused tells whether a peer refused them.
 */
static client_link
client_wait_connected(pip_client *client, client_endpoint *ep,
                      int64_t until_ms, bool *refused)
{
    int64_t check_ms = pip_mono_ms() + CLIENT_REFUSED_WAIT_MS;
    client_link link = CLIENT_LINK_PENDING;
    bool connected;

    *refused = false;
    for (;;) {
        pthread_mutex_lock(&client->lock);
        connected = client_wait_pipe(client, ep,
                                     check_ms < until_ms ? check_ms
                                                         : until_ms);
        pthread_mutex_unlock(&client->lock);
        if (connected) {
            return CLIENT_LINK_UP;
        }
        if (pip_mono_ms() >= until_ms) {
            break;
        }
        /* Read without the lock: NNG's pipe callbacks take it. */
        if (client_dial_failures(ep, refused) > 0) {
            link = CLIENT_LINK_REFUSED;
            break;
        }
        check_ms = pip_mono_ms() + CLIENT_DIAL_POLL_MS;
    }

    pthread_mutex_lock(&client->lock);
    ep->down_until_ms = pip_mono_ms() + CLIENT_DOWN_MS;
    pthread_mutex_unlock(&client->lock);
    return link;
}

/*
 * Closes the socket, which waits for NNG's pipe callbacks to finish, so
 * the caller must not hold client->lock.
 */
static void
client_endpoint_close(pip_client *client, client_endpoint *ep)
{
    if (ep == NULL) {
        return;
    }
    if (pip_mono_ms() - ep->dialed_ms < CLIENT_DIAL_SETTLE_MS) {
        pthread_mutex_lock(&client->lock);
        client_wait_pipe(client, ep, ep->dialed_ms + CLIENT_DIAL_SETTLE_MS);
        pthread_mutex_unlock(&client->lock);
    }
    /* NOTE: unlike the server's close (server_close_bounded), this one has
     * no time limit, and NNG 1.5.2 can deadlock in nng_close(). */
    nng_close(ep->sock);
    free(ep);
}

static void
client_endpoints_close(pip_client *client, client_endpoint *list)
{
    client_endpoint *next;

    for (; list != NULL; list = next) {
        next = list->next;
        client_endpoint_close(client, list);
    }
}

/* Unlinks idle, disconnected endpoints onto *closing.  Call locked. */
static void
client_endpoints_prune(pip_client *client, int64_t now_ms,
                       client_endpoint **closing)
{
    client_endpoint **link = &client->endpoints;
    client_endpoint *ep;

    while ((ep = *link) != NULL) {
        if (ep->users == 0 && ep->pipes == 0 &&
            now_ms - ep->last_used_ms > CLIENT_IDLE_CLOSE_MS) {
            *link = ep->next;
            ep->next = *closing;
            *closing = ep;
        } else {
            link = &ep->next;
        }
    }
}

/* Finds the endpoint of url and marks it in use.  Call locked. */
static client_endpoint *
client_endpoint_find(pip_client *client, const char *url)
{
    client_endpoint *ep;

    for (ep = client->endpoints; ep != NULL; ep = ep->next) {
        if (strcmp(ep->url, url) == 0) {
            ep->users++;
            return ep;
        }
    }
    return NULL;
}

static int
client_endpoint_acquire(pip_client *client, const char *url,
                        client_endpoint **out, pip_error *err)
{
    client_endpoint *closing = NULL;
    client_endpoint *fresh = NULL;
    client_endpoint *ep;
    int rv;

    pthread_mutex_lock(&client->lock);
    client_endpoints_prune(client, pip_mono_ms(), &closing);
    ep = client_endpoint_find(client, url);
    pthread_mutex_unlock(&client->lock);
    client_endpoints_close(client, closing);
    if (ep != NULL) {
        *out = ep;
        return PIP_OK;
    }

    /* Dial without the lock, because NNG's pipe callbacks take it. */
    rv = client_endpoint_open(client, url, &fresh, err);
    if (rv != PIP_OK) {
        return rv;
    }

    pthread_mutex_lock(&client->lock);
    ep = client_endpoint_find(client, url);
    if (ep == NULL) {
        fresh->next = client->endpoints;
        client->endpoints = fresh;
        fresh->users = 1;
        ep = fresh;
        fresh = NULL;
    }
    pthread_mutex_unlock(&client->lock);

    client_endpoint_close(client, fresh); /* another call dialed first */
    *out = ep;
    return PIP_OK;
}

static void
client_endpoint_release(pip_client *client, client_endpoint *ep)
{
    pthread_mutex_lock(&client->lock);
    ep->users--;
    ep->last_used_ms = pip_mono_ms();
    pthread_mutex_unlock(&client->lock);
}

static bool
client_endpoint_is_down(pip_client *client, client_endpoint *ep)
{
    bool down;

    pthread_mutex_lock(&client->lock);
    down = ep->pipes == 0 && ep->down_until_ms > pip_mono_ms();
    pthread_mutex_unlock(&client->lock);
    return down;
}

/* ---- one exchange ---- */

static int
client_msg_write(void *data, const char *buf, size_t len)
{
    return nng_msg_append((nng_msg *)data, buf, len) == 0 ? 0 : -1;
}

/* Packs the request straight into an NNG message, and seals it when the
 * client has a network key. */
static int
client_request_build(const pip_client *client, client_call *call,
                     nng_msg **out, pip_error *err)
{
    msgpack_packer packer;
    nng_msg *msg;

    if (nng_msg_alloc(&msg, 0) != 0) {
        return pip_error_set(err, PIP_E_INTERNAL, "OUT_OF_MEMORY",
                             "Failed to allocate a request message");
    }
    msgpack_packer_init(&packer, msg, client_msg_write);
    if (pip_request_pack(&packer, call->msgid, call->method, call->args,
                         &call->meta) != 0) {
        nng_msg_free(msg);
        return pip_error_set(err, PIP_E_INTERNAL, "OUT_OF_MEMORY",
                             "Failed to pack the request of %s", call->method);
    }
    if (pip_keyring_sealing(client->keyring) &&
        pip__msg_seal(client->keyring, PIP_SEAL_REQUEST, NULL, 0, 0, &msg,
                      call->nonce) != PIP_OK) {
        nng_msg_free(msg);
        return pip_error_set(err, PIP_E_INTERNAL, "OUT_OF_MEMORY",
                             "Failed to seal the request of %s", call->method);
    }
    *out = msg;
    return PIP_OK;
}

static nng_duration
client_remaining(const client_call *call)
{
    int64_t left_ms = call->deadline_ms - pip_mono_ms();

    if (left_ms <= 0) {
        return 0;
    }
    return left_ms > INT32_MAX ? INT32_MAX : (nng_duration)left_ms;
}

static int
client_transport_error(const client_call *call, const char *url, int nng_rv,
                       pip_error *err)
{
    if (nng_rv == NNG_ETIMEDOUT) {
        pip_error_set(err, PIP_E_TIMEOUT, "TIMEOUT",
                      "Call %s timed out after %" PRIu32 " ms", call->method,
                      call->meta.timeout_ms);
        client_detail(err, "method", json_string(call->method));
        client_detail(err, "timeout_ms", json_integer(call->meta.timeout_ms));
        return PIP_E_TIMEOUT;
    }
    pip_error_set(err, PIP_E_UNAVAILABLE, "CONNECTION_FAILED",
                  "Call %s to %s failed: %s", call->method, url,
                  nng_strerror(nng_rv));
    client_detail(err, "url", json_string(url));
    client_detail(err, "cause", json_string(nng_strerror(nng_rv)));
    return PIP_E_UNAVAILABLE;
}

/* Sends request on a context of its own and waits for the reply. */
static int
client_exchange(client_endpoint *ep, client_call *call, nng_msg *request,
                nng_msg **reply, client_outcome *outcome, pip_error *err)
{
    nng_aio *aio = NULL;
    nng_ctx ctx;
    int rv;

    *outcome = CLIENT_NOT_SENT;
    rv = nng_ctx_open(&ctx, ep->sock);
    if (rv != 0) {
        nng_msg_free(request);
        return client_transport_error(call, ep->url, rv, err);
    }
    rv = nng_aio_alloc(&aio, NULL, NULL);
    if (rv == 0) {
        rv =
            nng_ctx_set_ms(ctx, NNG_OPT_REQ_RESENDTIME, NNG_DURATION_INFINITE);
    }
    if (rv != 0) {
        nng_msg_free(request);
        goto done;
    }

    /* Per-operation timeouts carry the call's deadline, so the time spent
     * sending is taken from the time left for the reply. */
    nng_aio_set_msg(aio, request);
    nng_aio_set_timeout(aio, client_remaining(call));
    nng_ctx_send(ctx, aio);
    nng_aio_wait(aio);
    rv = nng_aio_result(aio);
    if (rv != 0) {
        nng_msg_free(nng_aio_get_msg(aio));
        goto done;
    }

    *outcome = CLIENT_LOST;
    nng_aio_set_timeout(aio, client_remaining(call));
    nng_ctx_recv(ctx, aio);
    nng_aio_wait(aio);
    rv = nng_aio_result(aio);
    if (rv == 0) {
        *reply = nng_aio_get_msg(aio);
        *outcome = CLIENT_REPLIED;
    }

done:
    if (aio != NULL) {
        nng_aio_free(aio);
    }
    nng_ctx_close(ctx);
    return rv == 0 ? PIP_OK : client_transport_error(call, ep->url, rv, err);
}

static int
client_invalid_reply(const client_call *call, const char *url,
                     const char *cause, pip_error *err)
{
    pip_error_set(err, PIP_E_BAD_REQUEST, "INVALID_RESPONSE",
                  "The reply of %s to %s is invalid: %s", url, call->method,
                  cause);
    client_detail(err, "url", json_string(url));
    client_detail(err, "cause", json_string(cause));
    return PIP_E_BAD_REQUEST;
}

static int
client_remote_error(const pip_response *resp, pip_error *err)
{
    int category = resp->error.category;

    /* A failed response always fails the call, even if the peer sent a
     * category that this side reads as success. */
    if (category == PIP_OK) {
        category = PIP_E_UNKNOWN;
    }
    if (err != NULL) {
        pip_error_copy(err, &resp->error);
        err->category = category;
    }
    return category;
}

/* Opens a sealed reply in place; a reply of another request, another
 * network key or a node without one fails here. */
static int
client_reply_open(const pip_client *client, client_call *call,
                  const char *url, nng_msg **reply, pip_error *err)
{
    pip_error open_err;
    int rv;

    if (!pip_keyring_sealing(client->keyring)) {
        return PIP_OK;
    }
    pip_error_init(&open_err);
    rv = pip__msg_open(client->keyring, PIP_SEAL_REPLY, call->nonce,
                       sizeof(call->nonce), 0, reply, NULL, NULL, &open_err);
    if (rv != PIP_OK) {
        rv = pip_error_set(err, rv, open_err.code,
                           "The reply of %s to %s was rejected: %s", url,
                           call->method, open_err.message);
        client_detail(err, "url", json_string(url));
    }
    pip_error_fini(&open_err);
    return rv;
}

static int
client_reply_decode(const pip_client *client, client_call *call,
                    const char *url, nng_msg *reply, pip_error *err)
{
    size_t len = nng_msg_len(reply);
    pip_error decode_err;
    pip_response resp;
    size_t consumed = 0;
    int rv;

    pip_response_init(&resp);
    pip_error_init(&decode_err);
    rv = pip_response_decode(nng_msg_body(reply), len, &client->limits, &resp,
                             &consumed, &decode_err);
    if (rv != PIP_OK) {
        rv = client_invalid_reply(call, url, decode_err.message, err);
    } else if (consumed != len) {
        rv = client_invalid_reply(call, url, "bytes follow the response", err);
    } else if (resp.msgid != call->msgid) {
        rv = client_invalid_reply(call, url,
                                  "the msgid differs from the request's", err);
    } else if (resp.failed) {
        rv = client_remote_error(&resp, err);
    } else {
        call->result = resp.result;
        resp.result = NULL;
        rv = PIP_OK;
    }
    pip_response_fini(&resp);
    pip_error_fini(&decode_err);
    return rv;
}

/*
 * Reports a call that never left because url has no connection.  The
 * detail "cause" is "connection refused", "dial failed" or "not
 * connected", so that a program can explain it to its user.
 */
static int
client_not_sent(const client_call *call, const char *url, client_link link,
                bool refused, pip_error *err)
{
    const char *cause = "not connected";

    if (link == CLIENT_LINK_REFUSED && refused) {
        cause = "connection refused";
        pip_error_set(err, PIP_E_UNAVAILABLE, "CONNECTION_FAILED",
                      "Call %s was not sent, because %s refused the "
                      "connection.",
                      call->method, url);
    } else if (link == CLIENT_LINK_REFUSED) {
        cause = "dial failed";
        pip_error_set(err, PIP_E_UNAVAILABLE, "CONNECTION_FAILED",
                      "Call %s was not sent, because dialing %s failed.",
                      call->method, url);
    } else {
        pip_error_set(err, PIP_E_UNAVAILABLE, "CONNECTION_FAILED",
                      "Call %s was not sent, because no connection to %s "
                      "was made in time.",
                      call->method, url);
    }
    client_detail(err, "url", json_string(url));
    client_detail(err, "cause", json_string(cause));
    return PIP_E_UNAVAILABLE;
}

/*
 * Makes one attempt of call on ep, waiting up to connect_until_ms for a
 * connection first.  *outcome shows the caller whether another
 * instance may be tried.
 */
static int
client_attempt(pip_client *client, client_endpoint *ep, client_call *call,
               int64_t connect_until_ms, client_outcome *outcome,
               pip_error *err)
{
    nng_msg *request = NULL;
    nng_msg *reply = NULL;
    client_link link;
    bool refused;
    int rv;

    *outcome = CLIENT_NOT_SENT;
    link = client_wait_connected(client, ep, connect_until_ms, &refused);
    if (link != CLIENT_LINK_UP) {
        return client_not_sent(call, ep->url, link, refused, err);
    }

    rv = client_request_build(client, call, &request, err);
    if (rv != PIP_OK) {
        return rv;
    }
    rv = client_exchange(ep, call, request, &reply, outcome, err);
    if (rv != PIP_OK) {
        return rv;
    }
    rv = client_reply_open(client, call, ep->url, &reply, err);
    if (rv == PIP_OK) {
        rv = client_reply_decode(client, call, ep->url, reply, err);
    }
    nng_msg_free(reply);
    return rv;
}

/* ---- discovery ---- */

/* Ranks an rpc URL: higher is better, 0 is unusable from this host. */
static int
client_url_rank(const char *url, bool same_host)
{
    if (same_host && strncmp(url, "ipc://", 6) == 0) {
        return 3;
    }
    if (strncmp(url, "tcp://", 6) == 0) {
        return 2;
    }
    /* inproc:// reaches only this process; an instance on this host may
     * share it (pipnode hosts several services). */
    if (same_host && strncmp(url, "inproc://", 9) == 0) {
        return 1;
    }
    return 0;
}

static const char *
client_pick_url(const pip_client *client, const json_t *instance)
{
    const char *host = json_string_value(json_object_get(instance, "host"));
    bool same_host = host != NULL && strcmp(host, client->host) == 0;
    const char *best = NULL;
    int best_rank = 0;
    const char *url;
    json_t *value;
    size_t i;
    int rank;

    json_array_foreach(json_object_get(instance, "rpc"), i, value)
    {
        url = json_string_value(value);
        rank = url != NULL ? client_url_rank(url, same_host) : 0;
        if (rank > best_rank) {
            best = url;
            best_rank = rank;
        }
    }
    return best;
}

/* Returns where the round-robin turn of service starts. */
static size_t
client_next_turn(pip_client *client, const char *service, size_t count)
{
    json_int_t turn;

    pthread_mutex_lock(&client->lock);
    if (json_object_size(client->turns) > CLIENT_MAX_TURNS) {
        json_object_clear(client->turns);
    }
    turn = json_integer_value(json_object_get(client->turns, service));
    if (turn < 0 || (size_t)turn >= count) {
        turn = 0;
    }
    json_object_set_new(
        client->turns, service,
        json_integer((json_int_t)((size_t)turn + 1) % (json_int_t)count));
    pthread_mutex_unlock(&client->lock);
    return (size_t)turn;
}

static int
client_no_instance(const pip_client *client, const client_call *call,
                   pip_error *err)
{
    pip_error_set(err, PIP_E_UNAVAILABLE, "SERVICE_NOT_FOUND",
                  "No instance of service %s is registered with discovery "
                  "at %s. Run `pipcall list` to see the registered "
                  "services.",
                  call->service, client->discovery_url);
    client_detail(err, "service", json_string(call->service));
    client_detail(err, "discovery_url", json_string(client->discovery_url));
    return PIP_E_UNAVAILABLE;
}

static int
client_no_reachable_url(const pip_client *client, const client_call *call,
                        pip_error *err)
{
    pip_error_set(err, PIP_E_UNAVAILABLE, "CONNECTION_FAILED",
                  "No instance of service %s has an rpc URL that host "
                  "\"%s\" can reach",
                  call->service, client->host);
    client_detail(err, "service", json_string(call->service));
    client_detail(err, "cause", json_string("no reachable rpc URL"));
    return PIP_E_UNAVAILABLE;
}

/* Tries instance after instance until one call goes out. */
static int
client_call_instances(pip_client *client, client_call *call,
                      const json_t *instances, client_outcome *outcome,
                      pip_error *err)
{
    size_t count = json_array_size(instances);
    size_t first = client_next_turn(client, call->service, count);
    bool attempted = false;
    client_endpoint *ep;
    int64_t until_ms;
    const char *url;
    int rv = PIP_OK;
    size_t i;

    *outcome = CLIENT_NOT_SENT;
    for (i = 0; i < count && client_remaining(call) > 0; i++) {
        url = client_pick_url(client,
                              json_array_get(instances, (first + i) % count));
        if (url == NULL) {
            continue;
        }
        attempted = true;
        rv = client_endpoint_acquire(client, url, &ep, err);
        if (rv != PIP_OK) {
            continue;
        }

        until_ms = call->deadline_ms;
        if (i + 1 < count) {
            until_ms = client_endpoint_is_down(client, ep)
                           ? 0
                           : pip_mono_ms() + CLIENT_CONNECT_WAIT_MS;
        }
        rv = client_attempt(client, ep, call, until_ms, outcome, err);
        client_endpoint_release(client, ep);
        if (*outcome != CLIENT_NOT_SENT) {
            break;
        }
    }

    if (attempted) {
        return rv;
    }
    if (client_remaining(call) == 0) {
        return client_transport_error(call, "", NNG_ETIMEDOUT, err);
    }
    return client_no_reachable_url(client, call, err);
}

/*
 * Restates a failed resolve in terms of the call, keeping the code, and
 * the url and cause of a connection failure.
 */
static int
client_resolve_failed(const pip_client *client, const client_call *call,
                      int rv, pip_error *err)
{
    char code[PIP_CODE_MAX];
    char message[PIP_MESSAGE_MAX];
    json_t *url;
    json_t *cause;

    if (err == NULL) {
        return rv;
    }
    snprintf(code, sizeof(code), "%s", err->code);
    snprintf(message, sizeof(message), "%s", err->message);
    url = json_incref(json_object_get(err->details, "url"));
    cause = json_incref(json_object_get(err->details, "cause"));
    if (cause == NULL) {
        cause = json_string(message);
    }

    pip_error_set(err, rv, code,
                  "Failed to resolve service %s through discovery at %s: %s",
                  call->service, client->discovery_url, message);
    client_detail(err, "service", json_string(call->service));
    client_detail(err, "discovery_url", json_string(client->discovery_url));
    if (url != NULL) {
        client_detail(err, "url", url);
    }
    client_detail(err, "cause", cause);
    return rv;
}

/* Calls the discovery node itself, which need not list itself. */
static int
client_call_discovery(pip_client *client, client_call *call, pip_error *err)
{
    client_outcome outcome;
    client_endpoint *ep;
    int rv;

    rv = client_endpoint_acquire(client, client->discovery_url, &ep, err);
    if (rv != PIP_OK) {
        return rv;
    }
    rv = client_attempt(client, ep, call, call->deadline_ms, &outcome, err);
    client_endpoint_release(client, ep);
    return rv;
}

static int
client_call_discovered(pip_client *client, client_call *call, pip_error *err)
{
    client_outcome outcome = CLIENT_NOT_SENT;
    json_t *instances = NULL;
    int rv;

    if (strcmp(call->service, "discovery") == 0) {
        return client_call_discovery(client, call, err);
    }

    /* At least 1 ms, because 0 would mean the resolver's own timeout. */
    rv = pip_resolver_resolve_within(client->resolver, call->service,
                                     (uint32_t)client_remaining(call) + 1,
                                     &instances, err);
    if (rv != PIP_OK) {
        return client_resolve_failed(client, call, rv, err);
    }
    if (json_array_size(instances) == 0) {
        json_decref(instances);
        return client_no_instance(client, call, err);
    }

    rv = client_call_instances(client, call, instances, &outcome, err);
    json_decref(instances);

    /* The instances may be gone: resolve them again on the next call. */
    if (outcome != CLIENT_REPLIED) {
        pip_resolver_forget(client->resolver, call->service);
    }
    return rv;
}

/* ---- the public functions ---- */

/*
 * True for "service.command" with both names made of a-z, 0-9 and _, the
 * rule that nodes apply, so that a call through discovery fails the same
 * way as a call to a fixed endpoint instead of resolving a service that
 * cannot exist.
 */
static bool
client_method_valid(const char *method, const char *dot, size_t len)
{
    if (dot == NULL || dot == method || dot[1] == '\0' ||
        len >= PIP_METHOD_MAX) {
        return false;
    }
    for (const char *p = method; *p != '\0'; p++) {
        bool name_char = (*p >= 'a' && *p <= 'z') ||
                         (*p >= '0' && *p <= '9') || *p == '_';

        if (!name_char && p != dot) {
            return false;
        }
    }
    return true;
}

static int
client_call_init(const pip_client *client, const char *method,
                 const json_t *args, const pip_meta *meta, client_call *call,
                 pip_error *err)
{
    const char *dot = strchr(method, '.');
    size_t len = strlen(method);

    memset(call, 0, sizeof(*call));
    if (!client_method_valid(method, dot, len)) {
        pip_error_set(err, PIP_E_BAD_REQUEST, "INVALID_METHOD",
                      "Invalid method \"%.*s\". Expected service.command of "
                      "at most %d bytes, with both names made of a-z, 0-9 "
                      "and _.",
                      PIP_METHOD_MAX, method, PIP_METHOD_MAX - 1);
        client_detail(err, "method", json_string(method));
        return PIP_E_BAD_REQUEST;
    }
    memcpy(call->service, method, (size_t)(dot - method));
    call->method = method;
    call->args = args;
    if (meta != NULL) {
        call->meta = *meta;
    }
    if (call->meta.timeout_ms == 0) {
        call->meta.timeout_ms = client->timeout_ms;
    }
    call->deadline_ms = pip_mono_ms() + call->meta.timeout_ms;
    return PIP_OK;
}

int
pip_client_call(pip_client *client, const char *method, const json_t *args,
                const pip_meta *meta, json_t **result, pip_error *err)
{
    client_outcome outcome;
    client_call call;
    int rv;

    if (client == NULL || method == NULL || result == NULL) {
        return pip_error_set(err, PIP_E_BAD_REQUEST, "INVALID_ARGUMENT",
                             "The client, the method and the result output "
                             "are required");
    }
    *result = NULL;
    rv = client_call_init(client, method, args, meta, &call, err);
    if (rv != PIP_OK) {
        return rv;
    }
    call.msgid = atomic_fetch_add(&client->next_msgid, 1);

    if (client->fixed != NULL) {
        rv = client_attempt(client, client->fixed, &call, call.deadline_ms,
                            &outcome, err);
    } else {
        rv = client_call_discovered(client, &call, err);
    }

    if (rv == PIP_OK) {
        *result = call.result;
    } else if (err != NULL && err->correlation_id[0] == '\0') {
        memcpy(err->correlation_id, call.meta.correlation_id,
               sizeof(err->correlation_id));
    }
    return rv;
}

static int
client_options_check(const pip_client_options *opt, pip_error *err)
{
    bool has_discovery =
        opt->discovery_url != NULL && opt->discovery_url[0] != '\0';
    bool has_endpoint = opt->endpoint != NULL && opt->endpoint[0] != '\0';

    if (has_discovery == has_endpoint) {
        return pip_error_set(err, PIP_E_BAD_REQUEST, "INVALID_OPTION",
                             "Set exactly one of discovery_url and endpoint "
                             "in the client options");
    }
    return PIP_OK;
}

static int
client_sync_init(pip_client *client, pip_error *err)
{
    pthread_condattr_t attr;
    int rv;

    if (pthread_mutex_init(&client->lock, NULL) != 0) {
        return pip_error_set(err, PIP_E_INTERNAL, "OUT_OF_MEMORY",
                             "Failed to create the client's mutex");
    }
    rv = pthread_condattr_init(&attr);
    if (rv == 0) {
        rv = pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
        if (rv == 0) {
            rv = pthread_cond_init(&client->connected, &attr);
        }
        pthread_condattr_destroy(&attr);
    }
    if (rv != 0) {
        pthread_mutex_destroy(&client->lock);
        return pip_error_set(err, PIP_E_INTERNAL, "OUT_OF_MEMORY",
                             "Failed to create the client's condition "
                             "variable: %s",
                             strerror(rv));
    }
    return PIP_OK;
}

static int
client_connect(pip_client *client, const pip_client_options *opt,
               pip_error *err)
{
    if (opt->endpoint != NULL && opt->endpoint[0] != '\0') {
        return client_endpoint_open(client, opt->endpoint, &client->fixed,
                                    err);
    }

    client->discovery_url = strdup(opt->discovery_url);
    client->turns = json_object();
    if (client->discovery_url == NULL || client->turns == NULL) {
        return pip_error_set(err, PIP_E_INTERNAL, "OUT_OF_MEMORY",
                             "Failed to allocate the client");
    }
    return pip_resolver_new(opt->discovery_url, &client->resolver, err);
}

int
pip_client_new(const pip_client_options *opt, pip_client **out, pip_error *err)
{
    pip_client *client;
    int rv;

    if (opt == NULL || out == NULL) {
        return pip_error_set(err, PIP_E_BAD_REQUEST, "INVALID_ARGUMENT",
                             "The client options and output are required");
    }
    *out = NULL;
    rv = client_options_check(opt, err);
    if (rv != PIP_OK) {
        return rv;
    }

    client = calloc(1, sizeof(*client));
    if (client == NULL) {
        return pip_error_set(err, PIP_E_INTERNAL, "OUT_OF_MEMORY",
                             "Failed to allocate the client");
    }
    client->limits = opt->limits;
    client->keyring = opt->keyring;
    if (client->limits.max_msg_bytes == 0) {
        pip_limits_default(&client->limits);
    }
    client->timeout_ms =
        opt->timeout_ms != 0 ? opt->timeout_ms : CLIENT_DEFAULT_TIMEOUT_MS;
    atomic_init(&client->next_msgid, 1);
    if (gethostname(client->host, sizeof(client->host) - 1) != 0) {
        client->host[0] = '\0';
    }
    rv = client_sync_init(client, err);
    if (rv != PIP_OK) {
        free(client);
        return rv;
    }

    rv = client_connect(client, opt, err);
    if (rv != PIP_OK) {
        pip_client_free(client);
        return rv;
    }
    *out = client;
    return PIP_OK;
}

void
pip_client_free(pip_client *client)
{
    client_endpoint *list;

    if (client == NULL) {
        return;
    }
    pip_resolver_free(client->resolver);
    client_endpoint_close(client, client->fixed);

    pthread_mutex_lock(&client->lock);
    list = client->endpoints;
    client->endpoints = NULL;
    pthread_mutex_unlock(&client->lock);
    client_endpoints_close(client, list);

    json_decref(client->turns);
    free(client->discovery_url);
    pthread_cond_destroy(&client->connected);
    pthread_mutex_destroy(&client->lock);
    free(client);
}
