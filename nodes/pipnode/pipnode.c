/*
 * pipnode: hosts the named services in one process.
 *
 *   pipnode SERVICE... [options]
 *
 * The options are the node options of pip/node.h (flags and environment).
 * Exit status: 0 after a clean stop (SIGINT or SIGTERM), 1 when the node
 * fails to start, 2 for a usage error.
 */
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "pip/log.h"
#include "pip/node.h"
#include "services.h"

#define PIPNODE_EXIT_FAILED 1
#define PIPNODE_EXIT_USAGE 2

/* Prints a usage error and returns the exit status for it. */
#define pipnode_usage_error(...)                                             \
    cli_usage_error("pipnode",                                               \
                    "Run 'pipnode --help' for the services and options.",    \
                    PIPNODE_EXIT_USAGE, __VA_ARGS__)

static void
pipnode_print_help(FILE *out)
{
    fprintf(out, "Usage: pipnode SERVICE... [options]\n"
                 "\n"
                 "Hosts the named services in one process until SIGINT or "
                 "SIGTERM.\n"
                 "\n"
                 "Services:\n");
    for (int i = 0; pip_services_all[i] != NULL; i++) {
        fprintf(out, "  %-12s %s\n", pip_services_all[i]->name,
                pip_services_all[i]->doc ? pip_services_all[i]->doc : "");
    }
    fprintf(out, "\nOptions:\n%s", pip_node_options_help());
    fprintf(out, "  --help\n      Print this help and exit.\n");
}

static bool
pipnode_help_requested(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            return true;
        }
        if (strcmp(argv[i], "--") == 0) {
            break;
        }
    }
    return false;
}

/* Reports an unknown service name with the names that exist. */
static void
pipnode_list_services(const char *name)
{
    fprintf(stderr, "pipnode: Unknown service '%s'. Available:", name);
    for (int i = 0; pip_services_all[i] != NULL; i++) {
        fprintf(stderr, "%s %s", i > 0 ? "," : "", pip_services_all[i]->name);
    }
    fprintf(stderr, ".\nRun 'pipnode --help' for the services and "
                    "options.\n");
}

/*
 * Adds the services named in argv[1..argc-1] to the node.  Returns 0, or
 * the exit status after printing what was wrong.
 */
static int
pipnode_add_services(pip_node *node, int argc, char **argv)
{
    pip_error err;

    pip_error_init(&err);
    for (int i = 1; i < argc; i++) {
        const pip_service_def *def;

        if (argv[i][0] == '-') {
            return pipnode_usage_error("Unknown option '%s'.", argv[i]);
        }
        def = pip_services_find(argv[i]);
        if (def == NULL) {
            pipnode_list_services(argv[i]);
            return PIPNODE_EXIT_USAGE;
        }
        if (pip_node_add(node, def, &err) != PIP_OK) {
            fprintf(stderr, "pipnode: Failed to add service '%s': %s\n",
                    argv[i], err.message);
            pip_error_fini(&err);
            return PIPNODE_EXIT_USAGE;
        }
    }
    return 0;
}

/*
 * True when err is RocksDB refusing a store whose LOCK file another
 * process holds, which is what a second network started from the same
 * folder runs into.
 */
static bool
pipnode_store_locked(const pip_error *err)
{
    const char *cause =
        json_string_value(json_object_get(err->details, "cause"));

    return strcmp(err->code, "STORE_OPEN_FAILED") == 0 && cause != NULL &&
           strstr(cause, "/LOCK") != NULL;
}

/* Starts the node and serves calls until a stop signal. */
static int
pipnode_run(pip_node *node)
{
    pip_error err;
    const char *path;

    pip_error_init(&err);
    /* pip_node_start logs why it failed, so only the status is left,
     * and advice for the failure that a user can fix. */
    if (pip_node_start(node, &err) != PIP_OK) {
        path = json_string_value(json_object_get(err.details, "path"));
        if (pipnode_store_locked(&err) && path != NULL) {
            fprintf(stderr,
                    "pipnode: Data folder %s is in use by another process. "
                    "Stop that process, or use --data DIR to give this node "
                    "a folder of its own.\n",
                    path);
        }
        pip_error_fini(&err);
        return PIPNODE_EXIT_FAILED;
    }
    /* pip_node_start logs every URL it listens on, and pip_node_wait
     * logs the signal that stops it. */
    pip_node_wait(node);
    return 0;
}

int
main(int argc, char **argv)
{
    pip_node_options opt;
    pip_node *node = NULL;
    pip_error err;
    int status;

    if (pipnode_help_requested(argc, argv)) {
        pipnode_print_help(stdout);
        return 0;
    }

    pip_error_init(&err);
    pip_node_options_init(&opt);
    if (pip_node_options_parse(&opt, &argc, argv, &err) != PIP_OK) {
        status = pipnode_usage_error("%s", err.message);
        goto out;
    }
    if (argc < 2) {
        status = pipnode_usage_error(
            "%s", "No service named. Name the services to host, for example "
                  "'pipnode counters settings'.");
        goto out;
    }
    pip_log_configure(pip_log_stderr, NULL, (pip_log_level)opt.log_level);

    if (pip_node_new(&opt, &node, &err) != PIP_OK) {
        fprintf(stderr, "pipnode: Failed to create the node: %s\n",
                err.message);
        status = PIPNODE_EXIT_FAILED;
        goto out;
    }
    status = pipnode_add_services(node, argc, argv);
    if (status == 0) {
        status = pipnode_run(node);
    }

out:
    if (node != NULL) {
        pip_node_free(node);
    }
    pip_node_options_fini(&opt);
    pip_error_fini(&err);
    return status;
}
