/*
 * Shared parts of pipcall: its options and the helpers that the plain
 * call, `list` (pipcall_list.c) and `sub` (pipcall_sub.c) all use.
 */
#ifndef PIPCALL_H
#define PIPCALL_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "cli.h"
#include "pip/client.h"
#include "pip/error.h"

#define PIPCALL_EXIT_FAILED 1
#define PIPCALL_EXIT_USAGE 2
#define PIPCALL_MAX_PUB_URLS 16

typedef struct pipcall_options {
    const char *discovery_url;
    const char *endpoint; /* --endpoint, or NULL */
    uint32_t timeout_ms;
    bool timeout_given;
    const char *correlation_id; /* --cid, or NULL */
    bool compact;
    bool list_json;                             /* list --json */
    long long count;                            /* sub --count; 0: no limit */
    const char *pub_urls[PIPCALL_MAX_PUB_URLS]; /* sub --pub */
    pip_key_sources keys; /* --network-key-file, ... */
    int pub_url_count;
    char **positional; /* METHOD and its arguments */
    int positional_count;
} pipcall_options;

/* Prints "pipcall: <message>" and a pointer to --help on stderr, and
 * returns PIPCALL_EXIT_USAGE. */
#define pipcall_usage_error(...)                                             \
    cli_usage_error("pipcall", "Run 'pipcall --help' for usage.",           \
                    PIPCALL_EXIT_USAGE, __VA_ARGS__)

/* Prints value as JSON (NULL as null), indented unless compact. */
void pipcall_print_json(FILE *out, const json_t *value, bool compact);

/*
 * Prints err as JSON on stderr and returns PIPCALL_EXIT_FAILED.  When the
 * discovery node or --endpoint could not be reached, the message first
 * gains advice on what to do.
 */
int pipcall_fail(const pipcall_options *opt, pip_error *err);

/*
 * Calls method once with the options' timeout and correlation id, and
 * stores the result (NULL for nil) in *result.  to_discovery sends the
 * call to the discovery node itself (or to --endpoint); otherwise the
 * client finds the service through discovery.
 */
int pipcall_invoke(const pipcall_options *opt, bool to_discovery,
                   const char *method, const json_t *args, json_t **result,
                   pip_error *err);

/* Asks discovery for every live instance; *instances is a JSON array. */
int pipcall_list_instances(const pipcall_options *opt, json_t **instances,
                           pip_error *err);

/* The subcommands; each returns the exit status. */
int pipcall_run_list(const pipcall_options *opt);
int pipcall_run_sub(const pipcall_options *opt);

#endif
