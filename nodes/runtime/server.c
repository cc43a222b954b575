/*
 * The sockets of a node: the rep socket that serves calls and the pub
 * socket that sends events.
 *
 * The rep socket has `contexts` NNG contexts, each with its own aio and a
 * small state machine: receiving -> (queued ->) running -> sending ->
 * receiving.  The aio callback runs on NNG's threads, which must not
 * block.  The built-in commands (ping, describe, health, statistics) read
 * only memory, and the read-only commands of a service read the store
 * from memory only (pip__store_memory_only).  So the callback runs a
 * message made of such commands alone and sends the reply itself, because
 * a worker hand-off would cost two thread wake-ups, more than the command.
 * A read that needs the disk sends the message to the workers instead.
 * Any other message is queued for a bounded pool of worker threads,
 * because handlers may block on RocksDB.  The worker runs the batch and
 * sends the reply on the same context.  The queue is a list threaded
 * through the contexts, so it never has more than `contexts` entries.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nng/nng.h>
#include <nng/protocol/pubsub0/pub.h>
#include <nng/protocol/reqrep0/rep.h>

#include "node_internal.h"
#include "pip/time.h"
#include "seal_msg.h"
#include "store_internal.h"

/* A reply buffer that grew past this is released after the call, so an
 * occasional large reply does not pin memory in every context. */
#define SERVER_SBUF_KEEP_BYTES (256 * 1024)

/* Dropped requests are logged at most once per this period, so a flood of
 * bad frames cannot flood the log; the counts are in node.statistics. */
#define SERVER_DROP_LOG_MS 10000

typedef enum server_ctx_state {
    CTX_IDLE = 0,
    CTX_RECEIVING,
    CTX_QUEUED,
    CTX_RUNNING,
    CTX_SENDING,
    CTX_STOPPED,
} server_ctx_state;

typedef struct server_ctx {
    pip__server *srv;
    nng_ctx ctx;
    nng_aio *aio;
    server_ctx_state state;
    nng_msg *msg;        /* the request, while queued or processed */
    int64_t received_ms; /* pip_mono_ms() when the receive completed */
    bool sealed;         /* the request was sealed, so is the reply */
    uint8_t nonce[PIP_SEAL_NONCE_BYTES]; /* of the sealed request */
    pip_peer caller;     /* who signed the request */
    /* The message's first request as server_batch_inline_ok() decoded
     * it, kept so the run does not decode it again.  first_bytes is its
     * size, or 0 when first contains nothing to reuse. */
    pip_request first;
    size_t first_bytes;
    msgpack_sbuffer sbuf;
    struct server_ctx *next; /* in the work queue */
} server_ctx;

struct pip__server {
    pip_node *node;
    nng_socket sock;
    bool sock_open;
    char *urls[PIP_MAX_LISTEN];
    int n_urls;

    server_ctx *ctxs;
    int n_ctxs;
    pthread_t *workers;
    int n_workers;

    /*
     * mtx guards the queue and workers_stop, and is the mutex of both
     * condition variables.  busy, stopping, closing and in_nng are
     * atomics, so a call takes no lock unless it is queued.
     * A thread that drops busy or in_nng to 0 while the server stops
     * takes mtx to broadcast idle_cv.  The waiter reads the count under
     * mtx, so the wake-up cannot be lost.
     * A caller raises a counter before it reads the flag, and the waiter
     * sets the flag before it reads the counter.  With sequentially
     * consistent atomics, either the caller sees the flag or the waiter
     * sees the count.
     */
    pthread_mutex_t mtx;
    pthread_cond_t work_cv; /* the queue has work, or workers stop */
    pthread_cond_t idle_cv; /* busy or in_nng dropped to 0 */
    server_ctx *queue_head;
    server_ctx *queue_tail;
    atomic_int busy;      /* requests received, reply not yet sent */
    atomic_bool stopping; /* no receive is armed again */
    atomic_bool closing;  /* no nng_ctx_send or nng_ctx_recv starts */
    atomic_int in_nng;    /* threads inside nng_ctx_send or _recv */
    bool workers_stop;
    bool quiesced;    /* pip__server_quiesce() ran */
    atomic_int_fast64_t drop_logged_ms; /* last warning of a dropped request */
};

/* Listening and bound URLs, shared by the rep and pub sockets */

/* The URL with the port NNG chose when url asked for port 0. */
static char *
server_bound_url(nng_listener listener, const char *url)
{
    nng_url *parsed = NULL;
    char *out = NULL;
    int port = 0;

    if (nng_url_parse(&parsed, url) != 0) {
        return strdup(url);
    }
    if (strncmp(parsed->u_scheme, "tcp", 3) == 0 &&
        strcmp(parsed->u_port, "0") == 0 &&
        nng_listener_get_int(listener, NNG_OPT_TCP_BOUND_PORT, &port) == 0) {
        const char *host = parsed->u_hostname;
        bool bracket = strchr(host, ':') != NULL;
        size_t len = strlen(parsed->u_scheme) + strlen(host) + 20;

        out = malloc(len);
        if (out != NULL) {
            snprintf(out, len, "%s://%s%s%s:%d", parsed->u_scheme,
                     bracket ? "[" : "", host, bracket ? "]" : "", port);
        }
    } else {
        out = strdup(url);
    }
    nng_url_free(parsed);
    return out;
}

static int
server_listen_failed(pip_error *err, const char *code, const char *url, int rv)
{
    pip_category category = strcmp(code, "INVALID_URL") == 0
                                ? PIP_E_BAD_REQUEST
                                : PIP_E_UNAVAILABLE;

    pip_error_set(err, category, code, "Cannot listen on %.200s: %s.", url,
                  nng_strerror(rv));
    pip_error_detail(err, "url", json_string(url));
    pip_error_detail(err, "cause", json_string(nng_strerror(rv)));
    return category;
}

/* Listens on url and returns the bound URL in *bound (malloc'd). */
static int
server_listen(nng_socket sock, const char *url, char **bound, pip_error *err)
{
    nng_listener listener;
    int rv;

    rv = nng_listener_create(&listener, sock, url);
    if (rv != 0) {
        return server_listen_failed(err, "INVALID_URL", url, rv);
    }
    rv = nng_listener_start(listener, 0);
    if (rv != 0) {
        nng_listener_close(listener);
        return server_listen_failed(err, "LISTEN_FAILED", url, rv);
    }
    *bound = server_bound_url(listener, url);
    if (*bound == NULL) {
        return pip_error_set(err, PIP_E_INTERNAL, "OUT_OF_MEMORY",
                             "Out of memory after listening on %.200s.", url);
    }
    return PIP_OK;
}

/* The work queue */

static void
server_enqueue(pip__server *srv, server_ctx *c)
{
    pthread_mutex_lock(&srv->mtx);
    c->state = CTX_QUEUED;
    c->next = NULL;
    if (srv->queue_tail != NULL) {
        srv->queue_tail->next = c;
    } else {
        srv->queue_head = c;
    }
    srv->queue_tail = c;
    pthread_cond_signal(&srv->work_cv);
    pthread_mutex_unlock(&srv->mtx);
}

/* Takes the next queued context; NULL once the workers must stop. */
static server_ctx *
server_dequeue(pip__server *srv)
{
    server_ctx *c;

    pthread_mutex_lock(&srv->mtx);
    while (srv->queue_head == NULL && !srv->workers_stop) {
        pthread_cond_wait(&srv->work_cv, &srv->mtx);
    }
    c = srv->workers_stop ? NULL : srv->queue_head;
    if (c != NULL) {
        c->state = CTX_RUNNING;
        srv->queue_head = c->next;
        if (srv->queue_head == NULL) {
            srv->queue_tail = NULL;
        }
    }
    pthread_mutex_unlock(&srv->mtx);
    return c;
}

/* Context state machine */

/*
 * nng 1.5.2 panics when nng_close() finalizes the socket while another
 * thread is still returning from nng_ctx_send() or nng_ctx_recv() on one
 * of its contexts, even after the aio completed.  So every such call is
 * counted, and the socket is closed only once none is running.
 */
static void
server_wake_idle(pip__server *srv)
{
    pthread_mutex_lock(&srv->mtx);
    pthread_cond_broadcast(&srv->idle_cv);
    pthread_mutex_unlock(&srv->mtx);
}

static void
server_nng_leave(pip__server *srv)
{
    if (atomic_fetch_sub(&srv->in_nng, 1) == 1 &&
        atomic_load(&srv->closing)) {
        server_wake_idle(srv);
    }
}

static bool
server_nng_enter(pip__server *srv)
{
    atomic_fetch_add(&srv->in_nng, 1);
    if (atomic_load(&srv->closing)) {
        server_nng_leave(srv);
        return false;
    }
    return true;
}

static void
server_arm_recv(server_ctx *c)
{
    pip__server *srv = c->srv;

    if (!server_nng_enter(srv)) {
        c->state = CTX_STOPPED;
        return;
    }
    c->state = CTX_RECEIVING;
    nng_ctx_recv(c->ctx, c->aio);
    server_nng_leave(srv);
}

/* Ends one request: the next receive is armed unless the server stops. */
static void
server_request_done(server_ctx *c)
{
    pip__server *srv = c->srv;
    int left = atomic_fetch_sub(&srv->busy, 1) - 1;

    if (atomic_load(&srv->stopping)) {
        c->state = CTX_STOPPED;
        if (left == 0) {
            server_wake_idle(srv);
        }
        return;
    }
    server_arm_recv(c);
}

/*
 * Counts a received request as busy until its reply is sent.  Returns
 * false once the server stops: the stores may close at any moment then,
 * so the request goes to the queue, where the workers or the final
 * cleanup deal with it.
 */
static bool
server_request_begin(pip__server *srv)
{
    atomic_fetch_add(&srv->busy, 1);
    return !atomic_load(&srv->stopping);
}

static bool server_batch_inline_ok(server_ctx *c);
static void server_process_inline(server_ctx *c);

/* Logs a request that did not open: a warning at most once per
 * SERVER_DROP_LOG_MS with the totals so far, else a debug line. */
static void
server_log_dropped(server_ctx *c, const pip_error *err)
{
    pip__server *srv = c->srv;
    int64_t now_ms = pip_mono_ms();
    int64_t last_ms = atomic_load(&srv->drop_logged_ms);
    char label[PIP_SEAL_NAME_MAX + 1];
    const char *sender;
    pip_seal_stats st;

    if ((last_ms != 0 && now_ms - last_ms < SERVER_DROP_LOG_MS) ||
        !atomic_compare_exchange_strong(&srv->drop_logged_ms, &last_ms,
                                        now_ms)) {
        if (pip_log_enabled(PIP_LOG_DEBUG)) {
            pip_log(PIP_LOG_DEBUG, srv->node->name, NULL,
                    "request from %s dropped: %s %s",
                    pip_peer_label(&c->caller, label, sizeof(label)),
                    err->code, err->message);
        }
        return;
    }
    sender = pip_peer_label(&c->caller, label, sizeof(label));
    pip_keyring_stats(srv->node->keyring, &st);
    pip_log(PIP_LOG_WARN, srv->node->name, NULL,
            "request from %s dropped: %s %s Dropped so far: auth_failed=%llu "
            "replayed=%llu untrusted=%llu (logged at most every %d s)",
            sender, err->code, err->message,
            (unsigned long long)st.auth_failed,
            (unsigned long long)st.replayed,
            (unsigned long long)st.untrusted, SERVER_DROP_LOG_MS / 1000);
}

/*
 * Opens a sealed request in place.  A request that does not open is
 * dropped without a reply, so its sender learns nothing but a failed
 * call; the keyring counts it.
 */
static bool
server_unseal(server_ctx *c)
{
    pip_keyring *kr = c->srv->node->keyring;
    pip_error err;
    int rv;

    c->sealed = pip_keyring_sealing(kr);
    if (!c->sealed) {
        return true;
    }
    pip_error_init(&err);
    rv = pip__msg_open(kr, PIP_SEAL_REQUEST, NULL, 0, 0, &c->msg, &c->caller,
                       c->nonce, &err);
    if (rv != PIP_OK) {
        server_log_dropped(c, &err);
    }
    pip_error_fini(&err);
    return rv == PIP_OK;
}

static void
server_on_recv(server_ctx *c)
{
    int rv = nng_aio_result(c->aio);

    if (rv == NNG_ECLOSED || rv == NNG_ECANCELED) {
        c->state = CTX_STOPPED;
        return;
    }
    if (rv != 0) {
        /* Only resource shortages land here; the next receive may work. */
        pip_log(PIP_LOG_WARN, c->srv->node->name, NULL, "receive failed: %s",
                nng_strerror(rv));
        server_arm_recv(c);
        return;
    }
    c->msg = nng_aio_get_msg(c->aio);
    c->received_ms = pip_mono_ms();
    c->first_bytes = 0;
    if (!server_unseal(c)) {
        nng_msg_free(c->msg);
        c->msg = NULL;
        server_arm_recv(c);
        return;
    }
    if (server_request_begin(c->srv) && server_batch_inline_ok(c)) {
        c->state = CTX_RUNNING;
        server_process_inline(c);
        return;
    }
    server_enqueue(c->srv, c);
}

static void
server_on_sent(server_ctx *c)
{
    int rv = nng_aio_result(c->aio);

    if (rv != 0) {
        /* On failure the message stays ours to free. */
        nng_msg_free(nng_aio_get_msg(c->aio));
        nng_aio_set_msg(c->aio, NULL);
        if (rv != NNG_ECLOSED && rv != NNG_ECANCELED) {
            pip_log(PIP_LOG_WARN, c->srv->node->name, NULL,
                    "sending a reply failed: %s", nng_strerror(rv));
        }
    }
    server_request_done(c);
}

/* Runs on NNG's threads: it must not block, so only built-in and
 * read-only commands run here. */
static void
server_ctx_cb(void *arg)
{
    server_ctx *c = arg;

    switch (c->state) {
    case CTX_RECEIVING:
        server_on_recv(c);
        break;
    case CTX_SENDING:
        server_on_sent(c);
        break;
    default:
        break;
    }
}

/* Batches */

/* Runs a decoded request and packs its response. */
static int
server_run_decoded(server_ctx *c, pip_request *req, msgpack_packer *pk)
{
    pip_error err;
    json_t *result = NULL;
    int rv;

    pip_error_init(&err);
    pip__dispatch(c->srv->node, req, c->received_ms,
                  c->sealed ? &c->caller : NULL, &result, &err);
    rv = pip_response_pack(pk, req->msgid, result, &err);
    json_decref(result);
    pip_error_fini(&err);
    return rv;
}

/* Decodes and runs the request at buf and packs its response.  Sets
 * *consumed to its size, which pip_request_decode reports even for a bad
 * envelope, or to 0 when the bytes are not one well-formed object and the
 * batch ends. */
static int
server_run_one(server_ctx *c, const uint8_t *buf, size_t len,
               msgpack_packer *pk, size_t *consumed)
{
    const pip_limits *lim = &c->srv->node->opt.limits;
    pip_request req;
    pip_error err;
    bool msgid_known = false;
    int rv;

    pip_request_init(&req);
    pip_error_init(&err);
    *consumed = 0;
    rv = pip_request_decode(buf, len, lim, &req, consumed, &msgid_known, &err);
    if (rv != PIP_OK) {
        rv = pip_response_pack(pk, msgid_known ? req.msgid : PIP_MSGID_NONE,
                               NULL, &err);
    } else {
        rv = server_run_decoded(c, &req, pk);
    }
    pip_error_fini(&err);
    pip_request_fini(&req);
    return rv;
}

static int
server_pack_batch_limit(msgpack_packer *pk, uint32_t max_batch)
{
    pip_error err;
    int rv;

    pip_error_init(&err);
    pip_error_set(&err, PIP_E_BAD_REQUEST, "LIMIT_EXCEEDED",
                  "The message carries more than %u requests. Send the "
                  "rest in another message.",
                  max_batch);
    pip_error_detail(&err, "limit", json_string("max_batch"));
    pip_error_detail(&err, "value", json_integer(max_batch));
    rv = pip_response_pack(pk, PIP_MSGID_NONE, NULL, &err);
    pip_error_fini(&err);
    return rv;
}

/* Packs the responses to every request of the message, in order, into
 * c->sbuf. */
static int
server_run_batch(server_ctx *c)
{
    const uint8_t *body = nng_msg_body(c->msg);
    size_t len = nng_msg_len(c->msg);
    uint32_t max_batch = c->srv->node->opt.limits.max_batch;
    msgpack_packer pk;
    size_t offset = 0;
    uint32_t count = 0;

    msgpack_sbuffer_clear(&c->sbuf);
    msgpack_packer_init(&pk, &c->sbuf, msgpack_sbuffer_write);
    if (c->first_bytes > 0) {
        int rv = server_run_decoded(c, &c->first, &pk);

        pip_request_fini(&c->first);
        if (rv != 0) {
            return -1;
        }
        offset = c->first_bytes;
        count = 1;
        if (offset >= len || pip__store_would_block()) {
            return 0;
        }
    }
    do {
        size_t consumed = 0;

        if (count == max_batch) {
            return server_pack_batch_limit(&pk, max_batch);
        }
        if (server_run_one(c, body + offset, len - offset, &pk, &consumed) !=
            0) {
            return -1;
        }
        if (pip__store_would_block()) {
            return 0; /* the message runs again on a worker */
        }
        count++;
        if (consumed == 0) {
            break;
        }
        offset += consumed;
    } while (offset < len);
    return 0;
}

/*
 * Whether every request of c->msg may run on an NNG thread (see
 * pip__dispatch_inline_ok).  Bytes that do not decode only get an error
 * reply, so they do not stop a message from running inline.  The first
 * request, when it decodes, stays in c->first for the run, so a message
 * of one request is decoded once.  Later requests of a batch are decoded
 * a second time when it runs.
 */
static bool
server_batch_inline_ok(server_ctx *c)
{
    const pip_limits *lim = &c->srv->node->opt.limits;
    const uint8_t *body = nng_msg_body(c->msg);
    size_t len = nng_msg_len(c->msg);
    size_t offset = 0;
    uint32_t count = 0;
    pip_request req;
    pip_error err;
    bool ok = true;

    pip_request_init(&req);
    pip_error_init(&err);
    while (ok && offset < len && count < lim->max_batch) {
        pip_request *decoded = count == 0 ? &c->first : &req;
        size_t consumed = 0;
        bool msgid_known = false;

        if (pip_request_decode(body + offset, len - offset, lim, decoded,
                               &consumed, &msgid_known, &err) == PIP_OK) {
            ok = pip__dispatch_inline_ok(c->srv->node, decoded);
            if (count == 0) {
                c->first_bytes = consumed;
            }
        }
        pip_error_fini(&err);
        if (consumed == 0) {
            break;
        }
        offset += consumed;
        count++;
    }
    pip_request_fini(&req);
    return ok;
}

/* Puts the reply into the request's message, reusing its buffer, and
 * seals it for the request's nonce when the request was sealed. */
static int
server_fill_reply(server_ctx *c)
{
    nng_msg_clear(c->msg);
    if (nng_msg_append(c->msg, c->sbuf.data, c->sbuf.size) != 0) {
        return -1;
    }
    if (!c->sealed) {
        return 0;
    }
    return pip__msg_seal(c->srv->node->keyring, PIP_SEAL_REPLY, c->nonce,
                         sizeof(c->nonce), 0, &c->msg, NULL) == PIP_OK
               ? 0
               : -1;
}

static void
server_release_sbuf(server_ctx *c)
{
    if (c->sbuf.alloc > SERVER_SBUF_KEEP_BYTES) {
        msgpack_sbuffer_destroy(&c->sbuf);
        msgpack_sbuffer_init(&c->sbuf);
    }
}

/* Sends the reply in c->msg, or drops it when the socket is closing. */
static void
server_send_reply(server_ctx *c)
{
    pip__server *srv = c->srv;

    if (!server_nng_enter(srv)) {
        nng_msg_free(c->msg);
        c->msg = NULL;
        server_request_done(c);
        return;
    }
    nng_aio_set_msg(c->aio, c->msg);
    c->msg = NULL;
    c->state = CTX_SENDING;
    nng_ctx_send(c->ctx, c->aio);
    server_nng_leave(srv);
}

/* Sends the reply packed in c->sbuf after a run that returned rv. */
static void
server_reply(server_ctx *c, int rv)
{
    if (rv == 0) {
        rv = server_fill_reply(c);
    }
    server_release_sbuf(c);
    if (rv != 0) {
        /* Out of memory: no reply, so the caller sees its own timeout. */
        pip_log(PIP_LOG_ERROR, c->srv->node->name, NULL,
                "out of memory while building a reply; request dropped");
        nng_msg_free(c->msg);
        c->msg = NULL;
        server_request_done(c);
        return;
    }
    server_send_reply(c);
}

/* Runs a message on a worker. */
static void
server_process(server_ctx *c)
{
    server_reply(c, server_run_batch(c));
}

/*
 * Runs a message on an NNG thread, where nothing may block, so the store
 * reads from memory only.  When a read needs the disk, the run is
 * discarded and the message goes to the workers, which run it again.
 */
static void
server_process_inline(server_ctx *c)
{
    bool blocked;
    int rv;

    pip__store_memory_only(true);
    rv = server_run_batch(c);
    blocked = pip__store_would_block();
    pip__store_memory_only(false);
    if (blocked) {
        c->first_bytes = 0; /* the run consumed c->first */
        msgpack_sbuffer_clear(&c->sbuf);
        server_enqueue(c->srv, c);
        return;
    }
    server_reply(c, rv);
}

static void *
server_worker_main(void *arg)
{
    pip__server *srv = arg;
    server_ctx *c;

    while ((c = server_dequeue(srv)) != NULL) {
        server_process(c);
    }
    return NULL;
}

/* Start and stop */

static int
server_no_memory(pip_error *err)
{
    return pip_error_set(err, PIP_E_INTERNAL, "OUT_OF_MEMORY",
                         "Out of memory while starting the RPC server.");
}

static int
server_open_socket(pip__server *srv, pip_error *err)
{
    int rv = nng_rep0_open(&srv->sock);

    if (rv != 0) {
        return pip_error_set(err, PIP_E_INTERNAL, "SOCKET_FAILED",
                             "Cannot open the rep socket: %s.",
                             nng_strerror(rv));
    }
    srv->sock_open = true;
    /* Bigger messages are dropped by NNG before any byte reaches us. */
    rv = nng_socket_set_size(srv->sock, NNG_OPT_RECVMAXSZ,
                             srv->node->opt.limits.max_msg_bytes);
    if (rv != 0) {
        return pip_error_set(err, PIP_E_INTERNAL, "SOCKET_FAILED",
                             "Cannot set the receive limit: %s.",
                             nng_strerror(rv));
    }
    return PIP_OK;
}

static int
server_start_workers(pip__server *srv, pip_error *err)
{
    int n = srv->node->opt.workers > 0 ? srv->node->opt.workers : 1;

    srv->workers = calloc((size_t)n, sizeof(*srv->workers));
    if (srv->workers == NULL) {
        return server_no_memory(err);
    }
    for (; srv->n_workers < n; srv->n_workers++) {
        int rv = pthread_create(&srv->workers[srv->n_workers], NULL,
                                server_worker_main, srv);

        if (rv != 0) {
            return pip_error_set(err, PIP_E_INTERNAL, "THREAD_FAILED",
                                 "Cannot start worker thread %d: %s.",
                                 srv->n_workers + 1, strerror(rv));
        }
    }
    return PIP_OK;
}

static int
server_open_contexts(pip__server *srv, pip_error *err)
{
    int n = srv->node->opt.contexts > 0 ? srv->node->opt.contexts : 1;

    srv->ctxs = calloc((size_t)n, sizeof(*srv->ctxs));
    if (srv->ctxs == NULL) {
        return server_no_memory(err);
    }
    for (; srv->n_ctxs < n; srv->n_ctxs++) {
        server_ctx *c = &srv->ctxs[srv->n_ctxs];
        int rv;

        c->srv = srv;
        pip_request_init(&c->first);
        msgpack_sbuffer_init(&c->sbuf);
        rv = nng_aio_alloc(&c->aio, server_ctx_cb, c);
        if (rv == 0) {
            rv = nng_ctx_open(&c->ctx, srv->sock);
            if (rv != 0) {
                nng_aio_free(c->aio);
                c->aio = NULL;
            }
        }
        if (rv != 0) {
            msgpack_sbuffer_destroy(&c->sbuf);
            return pip_error_set(err, PIP_E_INTERNAL, "SOCKET_FAILED",
                                 "Cannot open context %d: %s.",
                                 srv->n_ctxs + 1, nng_strerror(rv));
        }
    }
    for (int i = 0; i < srv->n_ctxs; i++) {
        server_arm_recv(&srv->ctxs[i]);
    }
    return PIP_OK;
}

static int
server_listen_all(pip__server *srv, pip_error *err)
{
    const char *const *urls = srv->node->opt.listen;

    for (int i = 0; i < PIP_MAX_LISTEN && urls[i] != NULL; i++) {
        int rv = server_listen(srv->sock, urls[i], &srv->urls[i], err);

        if (rv != PIP_OK) {
            return rv;
        }
        srv->n_urls = i + 1;
    }
    if (srv->n_urls == 0) {
        return pip_error_set(err, PIP_E_BAD_REQUEST, "INVALID_URL",
                             "The node has no URL to listen on. Give one "
                             "with --listen.");
    }
    return PIP_OK;
}

int
pip__server_start(pip_node *node, pip__server **out, pip_error *err)
{
    pip__server *srv = calloc(1, sizeof(*srv));
    int rv;

    if (srv == NULL) {
        return server_no_memory(err);
    }
    srv->node = node;
    atomic_init(&srv->busy, 0);
    atomic_init(&srv->drop_logged_ms, 0);
    atomic_init(&srv->stopping, false);
    atomic_init(&srv->closing, false);
    atomic_init(&srv->in_nng, 0);
    pthread_mutex_init(&srv->mtx, NULL);
    pthread_cond_init(&srv->work_cv, NULL);
    pip__cond_init_monotonic(&srv->idle_cv);

    rv = server_open_socket(srv, err);
    if (rv == PIP_OK) {
        rv = server_start_workers(srv, err);
    }
    if (rv == PIP_OK) {
        rv = server_open_contexts(srv, err);
    }
    if (rv == PIP_OK) {
        rv = server_listen_all(srv, err);
    }
    if (rv != PIP_OK) {
        pip__server_stop(srv);
        return rv;
    }
    *out = srv;
    return PIP_OK;
}

/* Waits until every received request got its reply, at most the drain
 * timeout.  Returns how many are still in flight. */
static int
server_drain(pip__server *srv)
{
    struct timespec deadline;
    int left;

    pip__timespec_after_ms(&deadline, PIP__DRAIN_TIMEOUT_MS);
    atomic_store(&srv->stopping, true);
    pthread_mutex_lock(&srv->mtx);
    while (atomic_load(&srv->busy) > 0) {
        if (pthread_cond_timedwait(&srv->idle_cv, &srv->mtx, &deadline) != 0) {
            break;
        }
    }
    left = atomic_load(&srv->busy);
    pthread_mutex_unlock(&srv->mtx);
    return left;
}

/*
 * One nng_close() running on its own thread.  The record is on the heap
 * because a close that never returns still touches it.
 */
typedef struct server_closer {
    nng_socket sock;
    void *owner; /* what the socket's callbacks use, kept with it */
    pthread_mutex_t mtx;
    pthread_cond_t cv;
    bool done;
} server_closer;

/*
 * Closes that did not return in time.  They stay reachable from here so a
 * leak checker does not report what a stuck NNG thread may still touch.
 */
#define SERVER_STUCK_MAX 8
static server_closer *server_stuck[SERVER_STUCK_MAX];
static atomic_int server_stuck_count;

static void *
server_closer_main(void *arg)
{
    server_closer *closer = arg;

    nng_close(closer->sock);
    pthread_mutex_lock(&closer->mtx);
    closer->done = true;
    pthread_cond_broadcast(&closer->cv);
    pthread_mutex_unlock(&closer->mtx);
    return NULL;
}

/*
 * Closes sock, waiting at most PIP__CLOSE_TIMEOUT_MS.  nng 1.5.2 can
 * deadlock inside nng_close() when peers drop their connections at the
 * same moment (nng issues 1543 and 1813), and once one close is stuck
 * every later one is too, so after a timeout the next calls return false
 * at once.  Returns true when the socket closed.
 */
static bool
server_close_bounded(nng_socket sock, void *owner, const char *node_name)
{
    struct timespec deadline;
    server_closer *closer;
    pthread_t thread;
    bool done;
    int slot;

    if (atomic_load(&server_stuck_count) > 0) {
        return false;
    }
    closer = calloc(1, sizeof(*closer));
    if (closer == NULL) {
        nng_close(sock); /* no memory to spare: close inline */
        return true;
    }
    closer->sock = sock;
    closer->owner = owner;
    pthread_mutex_init(&closer->mtx, NULL);
    pip__cond_init_monotonic(&closer->cv);
    if (pthread_create(&thread, NULL, server_closer_main, closer) != 0) {
        pthread_cond_destroy(&closer->cv);
        pthread_mutex_destroy(&closer->mtx);
        free(closer);
        nng_close(sock); /* no thread to spare: close inline */
        return true;
    }

    pip__timespec_after_ms(&deadline, PIP__CLOSE_TIMEOUT_MS);
    pthread_mutex_lock(&closer->mtx);
    while (!closer->done) {
        if (pthread_cond_timedwait(&closer->cv, &closer->mtx, &deadline) !=
            0) {
            break;
        }
    }
    done = closer->done;
    pthread_mutex_unlock(&closer->mtx);
    if (done) {
        pthread_join(thread, NULL);
        pthread_cond_destroy(&closer->cv);
        pthread_mutex_destroy(&closer->mtx);
        free(closer);
        return true;
    }

    pthread_detach(thread);
    slot = atomic_fetch_add(&server_stuck_count, 1);
    if (slot < SERVER_STUCK_MAX) {
        server_stuck[slot] = closer;
    }
    pip_log(PIP_LOG_WARN, node_name, NULL,
            "closing an NNG socket did not finish in %d ms (an NNG close "
            "deadlock); leaving it and the sockets after it open",
            PIP__CLOSE_TIMEOUT_MS);
    return false;
}

static void
server_join_workers(pip__server *srv)
{
    pthread_mutex_lock(&srv->mtx);
    srv->workers_stop = true;
    pthread_cond_broadcast(&srv->work_cv);
    pthread_mutex_unlock(&srv->mtx);
    for (int i = 0; i < srv->n_workers; i++) {
        pthread_join(srv->workers[i], NULL);
    }
    free(srv->workers);
}

static void
server_free_contexts(pip__server *srv)
{
    for (int i = 0; i < srv->n_ctxs; i++) {
        server_ctx *c = &srv->ctxs[i];

        nng_aio_stop(c->aio);
        nng_aio_free(c->aio);
        if (c->msg != NULL) {
            nng_msg_free(c->msg); /* queued when the workers stopped */
        }
        pip_request_fini(&c->first);
        msgpack_sbuffer_destroy(&c->sbuf);
    }
    free(srv->ctxs);
}

/*
 * Stops calls: waits for those in flight (at most PIP__DRAIN_TIMEOUT_MS),
 * then for every thread inside nng_ctx_send or nng_ctx_recv, and joins the
 * workers.  The socket stays open, so closing it cannot hold up the
 * closing of stores.
 */
void
pip__server_quiesce(pip__server *srv)
{
    int left;

    if (srv == NULL || srv->quiesced) {
        return;
    }
    left = srv->n_workers > 0 ? server_drain(srv) : 0;
    if (left > 0) {
        pip_log(PIP_LOG_WARN, srv->node->name, NULL,
                "%d calls still running after %d ms; closing the socket, "
                "their replies are lost",
                left, PIP__DRAIN_TIMEOUT_MS);
    }
    atomic_store(&srv->closing, true);
    pthread_mutex_lock(&srv->mtx);
    while (atomic_load(&srv->in_nng) > 0) {
        pthread_cond_wait(&srv->idle_cv, &srv->mtx);
    }
    pthread_mutex_unlock(&srv->mtx);
    /* Handlers still running finish here, before the stores close. */
    server_join_workers(srv);
    srv->quiesced = true;
}

void
pip__server_stop(pip__server *srv)
{
    if (srv == NULL) {
        return;
    }
    pip__server_quiesce(srv);
    if (srv->sock_open &&
        !server_close_bounded(srv->sock, srv, srv->node->name)) {
        return; /* the contexts may still be in use by the stuck close */
    }
    server_free_contexts(srv);

    for (int i = 0; i < srv->n_urls; i++) {
        free(srv->urls[i]);
    }
    pthread_cond_destroy(&srv->idle_cv);
    pthread_cond_destroy(&srv->work_cv);
    pthread_mutex_destroy(&srv->mtx);
    free(srv);
}

const char *
pip__server_url(const pip__server *srv, int index)
{
    if (srv == NULL || index < 0 || index >= srv->n_urls) {
        return NULL;
    }
    return srv->urls[index];
}

/* The publisher */

int
pip__publisher_open(pip__publisher *pub, pip_error *err)
{
    int rv = nng_pub0_open(&pub->sock);

    if (rv != 0) {
        return pip_error_set(err, PIP_E_INTERNAL, "SOCKET_FAILED",
                             "Cannot open the pub socket: %s.",
                             nng_strerror(rv));
    }
    pub->open = true;
    return PIP_OK;
}

int
pip__publisher_listen(pip__publisher *pub, const char *url, pip_error *err)
{
    return server_listen(pub->sock, url, &pub->url, err);
}

void
pip__publisher_close(pip__publisher *pub)
{
    if (pub->open) {
        pub->open = false;
        server_close_bounded(pub->sock, NULL, "publisher");
    }
    free(pub->url);
    pub->url = NULL;
}

/* Builds the event's message, sealed when the node has a network key.
 * The topic and its zero byte stay in the clear, because subscribers
 * filter on them. */
static int
publisher_message(pip__publisher *pub, const void *buf, size_t len,
                  const char *topic, nng_msg **out)
{
    nng_msg *msg;

    if (nng_msg_alloc(&msg, len) != 0) {
        return PIP_E_INTERNAL;
    }
    memcpy(nng_msg_body(msg), buf, len);
    if (pip_keyring_sealing(pub->keyring) &&
        pip__msg_seal(pub->keyring, PIP_SEAL_EVENT, NULL, 0,
                      strlen(topic) + 1, &msg, NULL) != PIP_OK) {
        nng_msg_free(msg);
        return PIP_E_INTERNAL;
    }
    *out = msg;
    return PIP_OK;
}

int
pip__publisher_send(pip__publisher *pub, const char *topic,
                    const json_t *payload, pip_error *err)
{
    nng_msg *msg = NULL;
    void *buf = NULL;
    size_t len = 0;
    int rv;

    if (!pub->open) {
        return pip_error_set(err, PIP_E_INVALID_STATE, "NOT_RUNNING",
                             "Cannot publish %s: the node is not running.",
                             topic);
    }
    rv = pip_event_encode(topic, payload, &buf, &len);
    if (rv == PIP_OK) {
        rv = publisher_message(pub, buf, len, topic, &msg);
    }
    free(buf);
    if (rv != PIP_OK) {
        return pip_error_set(err, PIP_E_INTERNAL, "ENCODE_FAILED",
                             "Cannot encode event %s.", topic);
    }
    /* A pub0 send never blocks: a subscriber whose queue is full loses
     * the message (nng_pub(7)). */
    rv = nng_sendmsg(pub->sock, msg, NNG_FLAG_NONBLOCK);
    if (rv != 0) {
        nng_msg_free(msg);
    }
    if (rv != 0) {
        pip_error_set(err, PIP_E_UNAVAILABLE, "PUBLISH_FAILED",
                      "Cannot publish %s: %s.", topic, nng_strerror(rv));
        pip_error_detail(err, "cause", json_string(nng_strerror(rv)));
        return PIP_E_UNAVAILABLE;
    }
    return PIP_OK;
}
