/*
 * Discovery: where services are.  The discovery node is an ordinary
 * service named "discovery" (host it with `pipnode discovery`).  Nodes
 * register an instance with a lease and renew it; an instance whose lease
 * runs out is evicted.  Joins and leaves are published as the events
 * "discovery.join" and "discovery.leave" with the instance as payload.
 *
 * An instance is a JSON object:
 *   {"instance_id": "...32 hex...", "name": "counters", "version": "1.0",
 *    "rpc": ["tcp://127.0.0.1:40001", "ipc:///tmp/..."],
 *    "pub": "tcp://127.0.0.1:40002", "host": "edge-1",
 *    "metadata": {...}, "lease_ms": 10000,
 *    "registered_time": "...", "renewed_time": "..."}
 *
 * Commands of the discovery service:
 *   register(instance) -> instance with instance_id and lease_ms
 *   renew(instance_id) -> instance; NotFound INSTANCE_NOT_FOUND when the
 *                          lease ran out or discovery restarted
 *   deregister(instance_id) -> nil, also for an unknown id
 *   resolve(name) -> array of live instances of that service
 *   list() -> array of every live instance
 *
 * register keeps an instance_id that the instance brings (32 lowercase hex
 * digits), so an instance registering again keeps its id.  It replaces an
 * older instance of the same name at one of the same rpc URLs (a node
 * restarted before its lease ran out).  lease_ms defaults to the setting
 * options.default_lease_ms (10000) and is clamped to options.min_lease_ms
 * (1000) .. options.max_lease_ms (300000).  rpc and pub URLs are tcp://,
 * ipc:// or inproc:// URLs of at most 256 bytes.  resolve and list sort
 * by name, then instance_id.  Registering publishes "join" and renewing
 * publishes nothing.
 */
#ifndef PIP_DISCOVERY_H
#define PIP_DISCOVERY_H

#include <jansson.h>
#include <stdint.h>

#include "pip/error.h"
#include "pip/service.h"

#ifdef __cplusplus
extern "C" {
#endif

extern const pip_service_def pip_discovery_service;

/*
 * Keeps an instance registered: registers it, renews it every third of
 * its lease on a background thread, and registers it again when
 * discovery answers that it is unknown (for example after a restart) or
 * comes back after being unreachable.  Failures are logged and retried;
 * pip_registration_start() itself fails only on invalid arguments.
 * instance is copied.
 */
typedef struct pip_registration pip_registration;
int pip_registration_start(const char *discovery_url, const json_t *instance,
                           pip_registration **out, pip_error *err);
/* Deregisters (best effort, bounded wait) and stops the thread. */
void pip_registration_stop(pip_registration *reg);

/*
 * The client side: resolves service names to instances, caches them for
 * about 2 s, and follows discovery's join and leave events to drop a
 * name's entry as soon as it changes.  It learns discovery's pub URL from
 * node.describe, a built-in command of every node.
 */
typedef struct pip_resolver pip_resolver;
int pip_resolver_new(const char *discovery_url, pip_resolver **out,
                     pip_error *err);
void pip_resolver_free(pip_resolver *r);
/*
 * Returns the live instances of name as a new JSON array (possibly
 * empty), from the cache when it is fresh.  Errors: PIP_E_UNAVAILABLE
 * when discovery cannot be reached and nothing is cached.
 */
int pip_resolver_resolve(pip_resolver *r, const char *name,
                         json_t **instances, pip_error *err);
/*
 * Same as pip_resolver_resolve(), but waits for discovery at most
 * timeout_ms (0: the resolver's own timeout of 3 s), so that a caller can
 * keep its deadline.
 */
int pip_resolver_resolve_within(pip_resolver *r, const char *name,
                                uint32_t timeout_ms, json_t **instances,
                                pip_error *err);
/* Every live instance, always asked from discovery. */
int pip_resolver_list(pip_resolver *r, json_t **instances, pip_error *err);
/* Drops the cached instances of name (after a failed call, say). */
void pip_resolver_forget(pip_resolver *r, const char *name);

#ifdef __cplusplus
}
#endif
#endif
