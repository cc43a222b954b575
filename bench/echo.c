/*
 * The baseline echo server of driver.h.  It sits on the same NNG
 * primitives as a node (a rep socket with asynchronous contexts) but runs
 * no decoding, no worker hand-off and no handler, so the ratio of a
 * workload to it shows what the pip layers cost.
 */
#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "driver.h"

typedef struct echo_slot {
    nng_aio *aio;
    nng_ctx ctx;
    bool ctx_open;
    bool sending;
} echo_slot;

struct bench_echo {
    nng_socket sock;
    bool sock_open;
    echo_slot *slots;
    int slot_count;
};

static void
echo_callback(void *arg)
{
    echo_slot *slot = arg;
    int rv = nng_aio_result(slot->aio);

    if (slot->sending) {
        if (rv != 0) {
            nng_msg_free(nng_aio_get_msg(slot->aio));
        }
        slot->sending = false;
        if (rv == NNG_ECLOSED || rv == NNG_ECANCELED) {
            return;
        }
        nng_ctx_recv(slot->ctx, slot->aio);
        return;
    }
    if (rv != 0) {
        if (rv != NNG_ECLOSED && rv != NNG_ECANCELED) {
            nng_ctx_recv(slot->ctx, slot->aio);
        }
        return;
    }
    /* The message from recv goes back as it is: rep keeps the header. */
    slot->sending = true;
    nng_aio_set_msg(slot->aio, nng_aio_get_msg(slot->aio));
    nng_ctx_send(slot->ctx, slot->aio);
}

static int
echo_listen(bench_echo *echo, const char *listen_url, size_t max_msg_bytes,
            char bound_url[BENCH_URL_MAX], pip_error *err)
{
    nng_listener listener;
    int port = 0;
    int rv;

    rv = nng_rep0_open(&echo->sock);
    if (rv != 0) {
        return pip_error_set(err, PIP_E_INTERNAL, "NNG_ERROR",
                             "Cannot open a rep socket: %s.",
                             nng_strerror(rv));
    }
    echo->sock_open = true;
    nng_socket_set_size(echo->sock, NNG_OPT_RECVMAXSZ, max_msg_bytes);
    rv = nng_listen(echo->sock, listen_url, &listener, 0);
    if (rv != 0) {
        return pip_error_set(err, PIP_E_UNAVAILABLE, "LISTEN_FAILED",
                             "Cannot listen on %s: %s.", listen_url,
                             nng_strerror(rv));
    }
    snprintf(bound_url, BENCH_URL_MAX, "%s", listen_url);
    if (strncmp(listen_url, "tcp://", 6) == 0 &&
        nng_listener_get_int(listener, NNG_OPT_TCP_BOUND_PORT, &port) == 0) {
        const char *colon = strrchr(listen_url, ':');
        int host_len = (int)(colon - listen_url);

        snprintf(bound_url, BENCH_URL_MAX, "%.*s:%d", host_len, listen_url,
                 port);
    }
    return PIP_OK;
}

int
bench_echo_start(const char *listen_url, int contexts, size_t max_msg_bytes,
                 bench_echo **out, char bound_url[BENCH_URL_MAX],
                 pip_error *err)
{
    bench_echo *echo = calloc(1, sizeof(*echo));
    int rv;

    *out = NULL;
    if (echo == NULL || contexts < 1) {
        free(echo);
        return pip_error_set(err, PIP_E_INTERNAL, "OUT_OF_MEMORY",
                             "Cannot create the echo server.");
    }
    echo->slots = calloc((size_t)contexts, sizeof(*echo->slots));
    echo->slot_count = contexts;
    rv = echo->slots != NULL
             ? echo_listen(echo, listen_url, max_msg_bytes, bound_url, err)
             : pip_error_set(err, PIP_E_INTERNAL, "OUT_OF_MEMORY",
                             "Out of memory.");
    for (int i = 0; i < contexts && rv == PIP_OK; i++) {
        echo_slot *slot = &echo->slots[i];

        if (nng_aio_alloc(&slot->aio, echo_callback, slot) != 0 ||
            nng_ctx_open(&slot->ctx, echo->sock) != 0) {
            rv = pip_error_set(err, PIP_E_INTERNAL, "NNG_ERROR",
                               "Cannot open an echo context.");
            break;
        }
        slot->ctx_open = true;
        nng_ctx_recv(slot->ctx, slot->aio);
    }
    if (rv != PIP_OK) {
        bench_echo_stop(echo);
        return rv;
    }
    *out = echo;
    return PIP_OK;
}

void
bench_echo_stop(bench_echo *echo)
{
    if (echo == NULL) {
        return;
    }
    for (int i = 0; echo->slots != NULL && i < echo->slot_count; i++) {
        if (echo->slots[i].aio != NULL) {
            nng_aio_stop(echo->slots[i].aio);
        }
    }
    for (int i = 0; echo->slots != NULL && i < echo->slot_count; i++) {
        if (echo->slots[i].ctx_open) {
            nng_ctx_close(echo->slots[i].ctx);
        }
        if (echo->slots[i].aio != NULL) {
            nng_aio_free(echo->slots[i].aio);
        }
    }
    if (echo->sock_open) {
        nng_close(echo->sock);
    }
    free(echo->slots);
    free(echo);
}
