/*
 * The event subscriber: one NNG sub0 socket subscribed to a topic prefix,
 * dialed to any number of pub URLs.  Events are matched by NNG on the raw
 * message bytes, which start with the topic (see pip_event_encode).  With
 * a network key, the topic stays in the clear and the rest is a sealed
 * frame.  Events that fail to open are dropped and counted in the keyring.
 */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <nng/nng.h>
#include <nng/protocol/pubsub0/sub.h>

#include "pip/client.h"
#include "pip/time.h"
#include "seal_msg.h"

/*
 * How long closing waits for a connection that a dial may still be setting
 * up.  NNG 1.5.2 leaks the pipe when the socket closes during the
 * connection's handshake (seen with AddressSanitizer on Debian 12's
 * libnng1), so a freshly dialed socket is given this long to finish.
 */
#define SUBSCRIBER_DIAL_SETTLE_MS 200

struct pip_subscriber {
    nng_socket sock;
    pip_limits limits;
    pip_keyring *keyring;          /* opens sealed events, or NULL */
    atomic_int pipes;              /* connected pipes */
    atomic_int_fast64_t dialed_ms; /* monotonic time of the last dial */
};

static int
subscriber_fail(pip_error *err, int nng_rv, const char *what, const char *url)
{
    pip_error_set(err, PIP_E_UNAVAILABLE, "CONNECTION_FAILED",
                  "Failed to %s the event socket%s%s: %s", what,
                  url != NULL ? " to " : "", url != NULL ? url : "",
                  nng_strerror(nng_rv));
    if (err != NULL) {
        pip_error_detail(err, "cause", json_string(nng_strerror(nng_rv)));
    }
    return PIP_E_UNAVAILABLE;
}

static void
subscriber_pipe_event(nng_pipe pipe, nng_pipe_ev event, void *arg)
{
    pip_subscriber *sub = arg;

    (void)pipe;
    if (event == NNG_PIPE_EV_ADD_POST) {
        atomic_fetch_add(&sub->pipes, 1);
    } else if (event == NNG_PIPE_EV_REM_POST) {
        atomic_fetch_sub(&sub->pipes, 1);
    }
}

int
pip_subscriber_new(const char *prefix, pip_subscriber **out, pip_error *err)
{
    pip_subscriber *sub;
    int rv;

    if (prefix == NULL || out == NULL) {
        return pip_error_set(err, PIP_E_BAD_REQUEST, "INVALID_ARGUMENT",
                             "The topic prefix and the output are required");
    }
    *out = NULL;
    sub = calloc(1, sizeof(*sub));
    if (sub == NULL) {
        return pip_error_set(err, PIP_E_INTERNAL, "OUT_OF_MEMORY",
                             "Failed to allocate a subscriber");
    }
    pip_limits_default(&sub->limits);
    sub->keyring = pip_keyring_default();
    atomic_init(&sub->pipes, 0);
    atomic_init(&sub->dialed_ms, 0);

    rv = nng_sub0_open(&sub->sock);
    if (rv != 0) {
        free(sub);
        return subscriber_fail(err, rv, "open", NULL);
    }
    rv = nng_socket_set(sub->sock, NNG_OPT_SUB_SUBSCRIBE, prefix,
                        strlen(prefix));
    if (rv == 0) {
        rv = nng_socket_set_size(sub->sock, NNG_OPT_RECVMAXSZ,
                                 sub->limits.max_msg_bytes);
    }
    if (rv == 0) {
        rv = nng_pipe_notify(sub->sock, NNG_PIPE_EV_ADD_POST,
                             subscriber_pipe_event, sub);
    }
    if (rv == 0) {
        rv = nng_pipe_notify(sub->sock, NNG_PIPE_EV_REM_POST,
                             subscriber_pipe_event, sub);
    }
    if (rv != 0) {
        nng_close(sub->sock);
        free(sub);
        return subscriber_fail(err, rv, "configure", NULL);
    }

    *out = sub;
    return PIP_OK;
}

void
pip_subscriber_set_keyring(pip_subscriber *sub, pip_keyring *kr)
{
    sub->keyring = kr;
}

int
pip_subscriber_dial(pip_subscriber *sub, const char *url, pip_error *err)
{
    int rv;

    if (sub == NULL || url == NULL) {
        return pip_error_set(err, PIP_E_BAD_REQUEST, "INVALID_ARGUMENT",
                             "The subscriber and the URL are required");
    }

    /* Non-blocking, so a publisher that is down now is dialed again in
     * the background by NNG until it comes up. */
    atomic_store(&sub->dialed_ms, pip_mono_ms());
    rv = nng_dial(sub->sock, url, NULL, NNG_FLAG_NONBLOCK);
    if (rv != 0) {
        return subscriber_fail(err, rv, "dial", url);
    }
    return PIP_OK;
}

static int
subscriber_receive(pip_subscriber *sub, int timeout_ms, nng_msg **msg,
                   pip_error *err)
{
    nng_aio *aio;
    int rv;

    rv = nng_aio_alloc(&aio, NULL, NULL);
    if (rv != 0) {
        return pip_error_set(err, PIP_E_INTERNAL, "OUT_OF_MEMORY",
                             "Failed to allocate an NNG aio: %s",
                             nng_strerror(rv));
    }

    /* A per-operation timeout keeps concurrent receivers independent,
     * where NNG_OPT_RECVTIMEO would be shared by the whole socket. */
    nng_aio_set_timeout(aio, timeout_ms < 0 ? NNG_DURATION_INFINITE
                                            : (nng_duration)timeout_ms);
    nng_recv_aio(sub->sock, aio);
    nng_aio_wait(aio);
    rv = nng_aio_result(aio);
    if (rv == 0) {
        *msg = nng_aio_get_msg(aio);
    }
    nng_aio_free(aio);

    if (rv == NNG_ETIMEDOUT) {
        return pip_error_set(err, PIP_E_TIMEOUT, "TIMEOUT",
                             "No event arrived within %d ms", timeout_ms);
    }
    if (rv != 0) {
        return subscriber_fail(err, rv, "receive from", NULL);
    }
    return PIP_OK;
}

/* Opens a sealed event in place; false when it must be dropped. */
static bool
subscriber_open(pip_subscriber *sub, nng_msg **msg)
{
    const uint8_t *body = nng_msg_body(*msg);
    const uint8_t *end = memchr(body, '\0', nng_msg_len(*msg));
    pip_error err;
    bool ok;

    if (end == NULL) {
        return false;
    }
    pip_error_init(&err);
    ok = pip__msg_open(sub->keyring, PIP_SEAL_EVENT, NULL, 0,
                       (size_t)(end - body) + 1, msg, NULL, NULL,
                       &err) == PIP_OK;
    pip_error_fini(&err);
    return ok;
}

/* Receives the next event that opens, within timeout_ms overall. */
static int
subscriber_receive_open(pip_subscriber *sub, int timeout_ms, nng_msg **msg,
                        pip_error *err)
{
    int64_t until_ms = pip_mono_ms() + timeout_ms;

    for (;;) {
        int rv = subscriber_receive(sub, timeout_ms, msg, err);

        if (rv != PIP_OK || !pip_keyring_sealing(sub->keyring) ||
            subscriber_open(sub, msg)) {
            return rv;
        }
        nng_msg_free(*msg);
        *msg = NULL;
        if (timeout_ms >= 0) {
            int64_t left_ms = until_ms - pip_mono_ms();
            timeout_ms = left_ms > 0 ? (int)left_ms : 0;
        }
    }
}

int
pip_subscriber_recv(pip_subscriber *sub, int timeout_ms, char **topic,
                    json_t **payload, pip_error *err)
{
    nng_msg *msg = NULL;
    int rv;

    if (sub == NULL || topic == NULL || payload == NULL) {
        return pip_error_set(err, PIP_E_BAD_REQUEST, "INVALID_ARGUMENT",
                             "The subscriber and both outputs are required");
    }
    *topic = NULL;
    *payload = NULL;

    rv = subscriber_receive_open(sub, timeout_ms, &msg, err);
    if (rv != PIP_OK) {
        return rv;
    }

    rv = pip_event_decode(nng_msg_body(msg), nng_msg_len(msg), &sub->limits,
                          topic, payload, err);
    nng_msg_free(msg);
    return rv;
}

/* Waits, up to SUBSCRIBER_DIAL_SETTLE_MS after the last dial, for a
 * connection to be set up, so that closing does not leak it. */
static void
subscriber_settle(pip_subscriber *sub)
{
    static const struct timespec pause = {0, 1000000L};
    int64_t until_ms =
        atomic_load(&sub->dialed_ms) + SUBSCRIBER_DIAL_SETTLE_MS;

    while (atomic_load(&sub->pipes) == 0 && pip_mono_ms() < until_ms) {
        nanosleep(&pause, NULL);
    }
}

void
pip_subscriber_close(pip_subscriber *sub)
{
    if (sub != NULL) {
        subscriber_settle(sub);
        /* NNG wakes a receive blocked on the socket with NNG_ECLOSED; a
         * second close of the same handle only returns NNG_ECLOSED. */
        nng_close(sub->sock);
    }
}

void
pip_subscriber_free(pip_subscriber *sub)
{
    if (sub == NULL) {
        return;
    }
    subscriber_settle(sub);
    nng_close(sub->sock);
    free(sub);
}
