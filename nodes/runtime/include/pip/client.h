/*
 * Calling services and following their events.
 *
 * A client finds a service's instances through discovery (or uses one
 * fixed endpoint), keeps one req socket per instance, spreads calls over
 * the instances in turn, and applies a deadline to each call.  A call
 * that could not be sent at all is retried on the next instance; a call
 * that was sent is never retried, because it may have run.
 */
#ifndef PIP_CLIENT_H
#define PIP_CLIENT_H

#include <jansson.h>
#include <stdint.h>

#include "pip/error.h"
#include "pip/seal.h"
#include "pip/wire.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct pip_client pip_client;

typedef struct pip_client_options {
    const char *discovery_url; /* find services here (discovery.* calls go
                                  to this URL itself); or */
    const char *endpoint;      /* send every call here (skips discovery) */
    uint32_t timeout_ms;       /* per call; default 10000 */
    pip_limits limits;         /* for decoding replies */
    pip_keyring *keyring;      /* seals calls when it has a network key;
                                  default pip_keyring_default(); must
                                  outlive the client */
} pip_client_options;

void pip_client_options_init(pip_client_options *opt);

int pip_client_new(const pip_client_options *opt, pip_client **out,
                   pip_error *err);
void pip_client_free(pip_client *client);

/*
 * Calls method ("service.command") with args (NULL for none) and waits for
 * the reply.  Thread-safe; blocks up to the timeout (meta->timeout_ms
 * when set, else the client's), but a node that refuses the connection
 * fails the call about 1 s after the wait for it began, with the
 * detail "cause" set to "connection refused".  On success *result is a new reference or
 * NULL for a nil result.  Errors: the remote error as sent, or
 * PIP_E_TIMEOUT (TIMEOUT), PIP_E_UNAVAILABLE (SERVICE_NOT_FOUND,
 * CONNECTION_FAILED), PIP_E_BAD_REQUEST (INVALID_RESPONSE).
 */
int pip_client_call(pip_client *client, const char *method,
                    const json_t *args, const pip_meta *meta,
                    json_t **result, pip_error *err);

/* Following events from one or more pub sockets. */
typedef struct pip_subscriber pip_subscriber;

/* Subscribes to topics starting with prefix ("" for all).  Events are
 * opened with pip_keyring_default() unless pip_subscriber_set_keyring()
 * names another. */
int pip_subscriber_new(const char *prefix, pip_subscriber **out,
                       pip_error *err);
/* kr (may be NULL for plain events) must outlive the subscriber. */
void pip_subscriber_set_keyring(pip_subscriber *sub, pip_keyring *kr);
/* Connects to one more pub URL; safe while receiving. */
int pip_subscriber_dial(pip_subscriber *sub, const char *url,
                        pip_error *err);
/*
 * Waits up to timeout_ms (-1: forever) for an event.  *topic (free()) and
 * *payload (new reference) are set on success.  Errors: PIP_E_TIMEOUT;
 * PIP_E_BAD_REQUEST for an event that does not decode (the next call
 * receives the next event); PIP_E_UNAVAILABLE after
 * pip_subscriber_close().
 */
int pip_subscriber_recv(pip_subscriber *sub, int timeout_ms, char **topic,
                        json_t **payload, pip_error *err);
/*
 * Closes the socket, so that a pip_subscriber_recv() blocked in another
 * thread returns at once.  Free the subscriber after that thread is done.
 */
void pip_subscriber_close(pip_subscriber *sub);
void pip_subscriber_free(pip_subscriber *sub);

#ifdef __cplusplus
}
#endif
#endif
