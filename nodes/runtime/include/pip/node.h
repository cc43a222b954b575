/*
 * A node: one process hosting one or more services.  It serves calls on an
 * NNG rep socket with many contexts and a bounded worker pool, publishes
 * events on a pub socket, opens one RocksDB store per service under the
 * data folder, registers with discovery, and shuts down cleanly.
 */
#ifndef PIP_NODE_H
#define PIP_NODE_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "pip/error.h"
#include "pip/seal.h"
#include "pip/service.h"
#include "pip/wire.h"

#ifdef __cplusplus
extern "C" {
#endif

#define PIP_MAX_LISTEN 4

typedef struct pip_node pip_node;

/*
 * Node options.  Each has a flag and an environment variable, read by
 * pip_node_options_parse():
 *   --listen URL        PIP_LISTEN       RPC URL, repeatable; default
 *                                        tcp://127.0.0.1:0 (any free port)
 *   --pub URL           PIP_PUB          event URL; default tcp://127.0.0.1:0
 *   --data DIR          PIP_DATA         data folder; default ./pipdata
 *   --discovery URL     PIP_DISCOVERY    discovery node; default none
 *   --host NAME         PIP_HOST         host name advertised; default
 *                                        the machine's host name
 *   --workers N         PIP_WORKERS      handler threads; default 4
 *   --contexts N        PIP_CONTEXTS     concurrent calls; default 64
 *   --lease-ms N        PIP_LEASE_MS     discovery lease; default 10000
 *   --max-msg-bytes N   PIP_MAX_MSG_BYTES  decoder limit; default 1 MiB
 *   --max-depth N       PIP_MAX_DEPTH    nesting limit; default 32
 *   --sync              PIP_SYNC=1       fsync every write
 *   --network-key-file FILE  PIP_NETWORK_KEY_FILE  seal all traffic
 *                                        (PIP_NETWORK_KEY: the key line)
 *   --identity-file FILE     PIP_IDENTITY_FILE     sign as this identity
 *   --trusted-keys FILE      PIP_TRUSTED_KEYS      accept only these
 *   --replay-window-ms N     PIP_REPLAY_WINDOW_MS  default 30000
 *   --set KEY=VALUE     PIP_SET (comma-separated KEY=VALUE list)
 *                                        service setting, e.g.
 *                                        logging.options.expire_logs_timeout=3
 *   --config FILE       PIP_CONFIG       JSON object of settings
 *   --log-level LEVEL   PIP_LOG_LEVEL    error|warn|info|debug|trace
 */
typedef struct pip_node_options {
    const char *name;                  /* for logs; default: services */
    const char *listen[PIP_MAX_LISTEN]; /* NULL-ended */
    const char *pub_listen;
    const char *data_dir;
    const char *discovery_url;
    const char *host;
    int workers;
    int contexts;
    int lease_ms;
    bool sync_writes;
    /* Keys (see pip/seal.h); the environment fills them as for flags. */
    const char *network_key_file;
    const char *identity_file;
    const char *trusted_keys_file;
    int replay_window_ms;
    pip_keyring *keyring; /* loaded by the program itself: used instead of
                             the files, and must outlive the node */
    int log_level;                     /* pip_log_level */
    pip_limits limits;
    json_t *settings;  /* owned object: "service.key" -> string */
    json_t *owned;     /* strings copied by the parser; freed by fini */
} pip_node_options;

void pip_node_options_init(pip_node_options *opt);
void pip_node_options_fini(pip_node_options *opt);

/*
 * Reads the environment, then the flags of argv (flags win).  Flags it
 * recognizes are removed from argv and *argc is updated, so the program sees
 * only its own arguments (service names for pipnode).  Strings point into
 * argv or the environment.  Errors: PIP_E_BAD_REQUEST naming the flag
 * and the value.
 */
int pip_node_options_parse(pip_node_options *opt, int *argc, char **argv,
                           pip_error *err);
/* The option lines of --help, for programs that embed a node. */
const char *pip_node_options_help(void);

int pip_node_new(const pip_node_options *opt, pip_node **out,
                 pip_error *err);
/* Adds a service before pip_node_start().  Errors: PIP_E_CONFLICT when a
 * service of that name is already hosted. */
int pip_node_add(pip_node *node, const pip_service_def *def,
                 pip_error *err);
/* Opens stores and services, listens, and registers with discovery. */
int pip_node_start(pip_node *node, pip_error *err);
/* Blocks until SIGINT or SIGTERM, or until pip_node_shutdown(). */
void pip_node_wait(pip_node *node);
/* Asks the node to stop; safe from any thread, but not from a signal
 * handler (pip_node_wait takes SIGINT and SIGTERM itself). */
void pip_node_shutdown(pip_node *node);
/*
 * Stops accepting calls, finishes those in flight, deregisters, closes
 * services and stores, and frees the node.
 */
void pip_node_free(pip_node *node);

/* The URLs the node actually listens on (ephemeral ports resolved). */
const char *pip_node_rpc_url(const pip_node *node, int index);
const char *pip_node_pub_url(const pip_node *node);

/*
 * Calls a service hosted in this node directly, without a socket, with
 * the same validation, statistics and error model as a remote call.
 */
int pip_node_call(pip_node *node, const char *method, json_t *args,
                  const pip_meta *meta, json_t **result, pip_error *err);

#ifdef __cplusplus
}
#endif
#endif
