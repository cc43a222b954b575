/*
 * pipgate: the HTTP gateway.  Makes every service registered with
 * discovery callable the way the Pip.Services commandable HTTP services
 * are: POST /<route>/<command> with a JSON object of named arguments.
 * tools/PIPGATE.md describes the HTTP side in full.
 *
 *   pipgate [--listen URL] [--discovery URL] [--max-body-bytes N]
 *           [--max-concurrent N] [--workers N] [--timeout-ms N]
 *           [--token-file FILE] [--log-level LEVEL]
 *
 * Runs until SIGINT or SIGTERM, then replies to the requests in flight
 * and exits 0.  Exits 1 when it cannot start, 2 on a usage error.
 */
#include <errno.h>
#include <signal.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "pip/log.h"
#include "pipgate.h"

#define PIPGATE_EXIT_FAILED 1
#define PIPGATE_EXIT_USAGE 2

/* Prints a usage error and returns the exit status for it. */
#define pipgate_usage_error(...)                                             \
    cli_usage_error("pipgate", "Run 'pipgate --help' for usage.",           \
                    PIPGATE_EXIT_USAGE, __VA_ARGS__)

static const char pipgate_help[] =
    "Usage: pipgate [options]\n"
    "\n"
    "Serves every service registered with discovery over HTTP, as the\n"
    "Pip.Services commandable HTTP services do: POST /<route>/<command>\n"
    "with a JSON object of named arguments.  GET /health, GET /openapi.json\n"
    "and GET /<route>/describe are served too.\n"
    "\n"
    "Options:\n"
    "  --listen URL          HTTP address (default " PIPGATE_DEFAULT_LISTEN
    ")\n"
    "  --discovery URL       discovery node (env PIP_DISCOVERY, default\n"
    "                        " PIPGATE_DEFAULT_DISCOVERY ")\n"
    "  --max-body-bytes N    largest request body in bytes (default "
    "1048576)\n"
    "  --max-concurrent N    requests served at once; more get 503 "
    "(default 64)\n"
    "  --workers N           threads that call the services (default 8,\n"
    "                        at most --max-concurrent)\n"
    "  --timeout-ms N        deadline of one request in milliseconds "
    "(default 10000)\n"
    "  --token-file FILE     require 'Authorization: Bearer <token>' with "
    "the\n"
    "                        token in FILE (GET /health stays open)\n"
    "  --log-level LEVEL     error, warn, info, debug or trace (default "
    "info)\n"
    "\n"
    "The RPC side seals its calls when a network key is set (see pipkey):\n"
    CLI_KEY_OPTIONS_HELP
    "  --help                print this help and exit\n";

/* ---- command line ---- */

typedef struct pipgate_number_option {
    const char *name;
    long long min;
    long long max;
} pipgate_number_option;

static const pipgate_number_option pipgate_number_options[] = {
    {"--max-body-bytes", 1, 256LL * 1024 * 1024},
    {"--max-concurrent", 1, 65536},
    {"--workers", 1, 1024},
    {"--timeout-ms", 1, 3600000},
    {NULL, 0, 0},
};

/* Stores the value of the numeric option at index `which`. */
static void
pipgate_set_number(pipgate_options *opt, int which, unsigned long long value)
{
    switch (which) {
    case 0:
        opt->max_body_bytes = (size_t)value;
        break;
    case 1:
        opt->max_concurrent = (uint32_t)value;
        break;
    case 2:
        opt->workers = (uint32_t)value;
        break;
    default:
        opt->timeout_ms = (uint32_t)value;
        break;
    }
}

/* Applies a numeric option.  Returns 0, 1 when arg is not one, or 2. */
static int
pipgate_parse_number_option(pipgate_options *opt, int argc, char **argv,
                            int *i)
{
    for (int k = 0; pipgate_number_options[k].name != NULL; k++) {
        const pipgate_number_option *o = &pipgate_number_options[k];
        const char *value = cli_option_value(o->name, argc, argv, i);
        long long number;

        if (value == NULL) {
            continue;
        }
        if (!cli_parse_int(value, o->min, o->max, &number)) {
            return pipgate_usage_error("invalid %s '%s': expected a whole "
                                       "number from %lld to %lld.",
                                       o->name, value, o->min, o->max);
        }
        pipgate_set_number(opt, k, (unsigned long long)number);
        return 0;
    }
    return 1;
}

/* Applies one option.  Returns 0, -1 after --help, or an exit status. */
static int
pipgate_parse_option(pipgate_options *opt, int argc, char **argv, int *i)
{
    const char *arg = argv[*i];
    const char *value;
    int rv;

    if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
        fputs(pipgate_help, stdout);
        return -1;
    }
    if ((value = cli_option_value("--listen", argc, argv, i)) != NULL) {
        opt->listen = value;
    } else if ((value = cli_option_value("--discovery", argc, argv,
                                             i)) != NULL) {
        opt->discovery = value;
    } else if ((value = cli_option_value("--token-file", argc, argv,
                                             i)) != NULL) {
        opt->token_file = value;
    } else if ((value = cli_option_value("--log-level", argc, argv,
                                             i)) != NULL) {
        if (pip_log_level_parse(value) < 0) {
            return pipgate_usage_error("invalid --log-level '%s': expected "
                                       "error, warn, info, debug or trace.",
                                       value);
        }
        opt->log_level = value;
    } else if ((rv = pipgate_parse_number_option(opt, argc, argv, i)) != 1) {
        return rv;
    } else if ((value = cli_parse_key_option(&opt->keys, argc, argv, i)) !=
               NULL) {
        return 0;
    } else {
        return pipgate_usage_error("unknown option, or option without a "
                                   "value: '%s'.",
                                   arg);
    }
    return 0;
}

static int
pipgate_parse_args(pipgate_options *opt, int argc, char **argv)
{
    const char *env = getenv("PIP_DISCOVERY");

    opt->listen = PIPGATE_DEFAULT_LISTEN;
    opt->discovery = env != NULL && env[0] != '\0' ? env
                                                  : PIPGATE_DEFAULT_DISCOVERY;
    opt->max_body_bytes = PIPGATE_DEFAULT_MAX_BODY_BYTES;
    opt->max_concurrent = PIPGATE_DEFAULT_MAX_CONCURRENT;
    opt->workers = PIPGATE_DEFAULT_WORKERS;
    opt->timeout_ms = PIPGATE_DEFAULT_TIMEOUT_MS;
    opt->log_level = "info";
    for (int i = 1; i < argc; i++) {
        int rv = pipgate_parse_option(opt, argc, argv, &i);

        if (rv != 0) {
            return rv;
        }
    }
    if (strncmp(opt->listen, "http://", 7) != 0) {
        return pipgate_usage_error("invalid --listen '%s': expected "
                                   "http://HOST:PORT.",
                                   opt->listen);
    }
    if (opt->workers > opt->max_concurrent) {
        opt->workers = opt->max_concurrent;
    }
    return 0;
}

/* ---- the token ---- */

/*
 * Reads the bearer token from the file: its first line without the line
 * end.  Only a hash of it is kept.
 */
static int
pipgate_load_token(pipgate *gate, const char *path)
{
    char token[PIPGATE_TOKEN_MAX + 2];
    FILE *f = fopen(path, "r");
    struct stat st;
    size_t len;

    if (f == NULL) {
        fprintf(stderr, "pipgate: cannot read --token-file %s: %s\n", path,
                strerror(errno));
        return PIPGATE_EXIT_FAILED;
    }
    if (fgets(token, sizeof(token), f) == NULL) {
        token[0] = '\0';
    }
    if (fstat(fileno(f), &st) == 0 && (st.st_mode & 0077) != 0) {
        pip_log(PIP_LOG_WARN, "pipgate", NULL,
                "token file %s can be read by other users; chmod 600 it",
                path);
    }
    fclose(f);
    len = strcspn(token, "\r\n");
    token[len] = '\0';
    if (len == 0 || len > PIPGATE_TOKEN_MAX) {
        fprintf(stderr, "pipgate: the first line of --token-file %s must "
                        "hold a token of 1 to %d bytes.\n",
                path, PIPGATE_TOKEN_MAX);
        sodium_memzero(token, sizeof(token));
        return PIPGATE_EXIT_FAILED;
    }
    crypto_generichash(gate->token_hash, sizeof(gate->token_hash),
                       (const unsigned char *)token, len, NULL, 0);
    sodium_memzero(token, sizeof(token));
    gate->has_token = true;
    return 0;
}

/* ---- lifecycle ---- */

static int
pipgate_open(pipgate *gate)
{
    pip_client_options copt;
    pip_error err;
    int rv;

    pip_error_init(&err);
    pip_client_options_init(&copt);
    copt.discovery_url = gate->opt.discovery;
    copt.timeout_ms = gate->opt.timeout_ms;
    rv = pip_client_new(&copt, &gate->client, &err);
    if (rv == PIP_OK) {
        pipgate_routes_init(&gate->routes, gate->client);
        rv = pipgate_http_start(gate, &err);
    }
    if (rv != PIP_OK) {
        fprintf(stderr, "pipgate: %s\n", err.message);
    }
    pip_error_fini(&err);
    return rv == PIP_OK ? 0 : PIPGATE_EXIT_FAILED;
}

static void
pipgate_close(pipgate *gate)
{
    pipgate_http_stop(gate);
    if (gate->client != NULL) {
        pipgate_routes_fini(&gate->routes);
        pip_client_free(gate->client);
    }
    pthread_cond_destroy(&gate->idle);
    pthread_cond_destroy(&gate->job_ready);
    pthread_mutex_destroy(&gate->mutex);
}

static int
pipgate_serve(pipgate *gate, const sigset_t *signals)
{
    int signo = 0;
    int rv = pipgate_open(gate);

    if (rv == 0 && !pip_keyring_sealing(gate->keys)) {
        pip_log(PIP_LOG_WARN, "pipgate", NULL,
                "unauthenticated: no network key is set, so the RPC side "
                "calls plain; on a network with a key, pass "
                "--network-key-file");
    }
    if (rv == 0) {
        pip_log(PIP_LOG_INFO, "pipgate", NULL,
                "started: http=%s discovery=%s workers=%u "
                "max_concurrent=%u max_body_bytes=%zu timeout_ms=%u "
                "token=%s rpc=%s",
                gate->opt.listen, gate->opt.discovery, gate->opt.workers,
                gate->opt.max_concurrent, gate->opt.max_body_bytes,
                gate->opt.timeout_ms, gate->has_token ? "on" : "off",
                pip_keyring_mode(gate->keys));
        sigwait(signals, &signo);
        pip_log(PIP_LOG_INFO, "pipgate", NULL, "received %s, stopping",
                signo == SIGINT ? "SIGINT" : "SIGTERM");
    }
    pipgate_close(gate);
    if (rv == 0) {
        pip_log(PIP_LOG_INFO, "pipgate", NULL, "stopped");
    }
    pip_keyring_set_default(NULL);
    pip_keyring_free(gate->keys);
    return rv;
}

int
main(int argc, char **argv)
{
    pipgate gate;
    sigset_t signals;
    int rv;

    memset(&gate, 0, sizeof(gate));
    rv = pipgate_parse_args(&gate.opt, argc, argv);
    if (rv != 0) {
        return rv < 0 ? 0 : rv;
    }
    pip_log_configure(pip_log_stderr, NULL,
                      (pip_log_level)pip_log_level_parse(gate.opt.log_level));
    if (sodium_init() < 0) {
        fprintf(stderr, "pipgate: libsodium failed to initialize\n");
        return PIPGATE_EXIT_FAILED;
    }
    if (gate.opt.token_file != NULL &&
        (rv = pipgate_load_token(&gate, gate.opt.token_file)) != 0) {
        return rv;
    }
    if (!cli_keys_load("pipgate", &gate.opt.keys, &gate.keys)) {
        return PIPGATE_EXIT_FAILED;
    }

    /* Blocked before any thread starts, so that only sigwait receives
     * them. */
    sigemptyset(&signals);
    sigaddset(&signals, SIGINT);
    sigaddset(&signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &signals, NULL);
    signal(SIGPIPE, SIG_IGN);
    pthread_mutex_init(&gate.mutex, NULL);
    pthread_cond_init(&gate.job_ready, NULL);
    pthread_cond_init(&gate.idle, NULL);
    return pipgate_serve(&gate, &signals);
}
