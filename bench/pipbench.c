/*
 * pipbench: drives a workload against running nodes and reports calls
 * per second and latency percentiles, optionally beside a raw NNG echo
 * baseline and over a sweep of concurrencies.  `pipbench --help` lists
 * the options.  Exit status: 0 after a run, 1 when the run failed or
 * every measured call failed, 2 on a usage error.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "driver.h"
#include "pip/client.h"
#include "pip/discovery.h"
#include "pip/log.h"
#include "report.h"
#include "workload.h"

#define PIPBENCH_EXIT_FAILED 1
#define PIPBENCH_EXIT_USAGE 2
#define PIPBENCH_DEFAULT_DISCOVERY "tcp://127.0.0.1:4100"
#define PIPBENCH_DEFAULT_SOCKETS 4
#define PIPBENCH_LOOKUP_TIMEOUT_MS 5000
#define PIPBENCH_ECHO_START_MS 5000
#define PIPBENCH_MAX_ROUNDS 100
/* Rounds after the first warm up this long at most: their connections
 * are new, but the node and the echo server are already warm. */
#define PIPBENCH_ROUND_WARMUP_MS 250

typedef struct pipbench_options {
    const char *discovery_url;
    const char *endpoint;
    const char *transport;
    const char *workload_file;
    const char *json_path;
    const char *svg_path;
    const char *echo_url;     /* --echo-server: run only the echo server */
    int concurrencies[BENCH_MAX_POINTS];
    int concurrency_count;
    int sockets;              /* 0: min(concurrency, 4) */
    double rate_per_s;
    uint32_t warmup_ms;
    uint32_t duration_ms;
    uint64_t call_count;
    uint32_t timeout_ms;
    int rounds;               /* the measured part is split into rounds */
    bool baseline;
    bool quiet;
    const char *method;
    const char *const *arg_words;
    int arg_count;
    pip_key_sources keys;
} pipbench_options;

typedef struct pipbench {
    pipbench_options opt;
    pip_keyring *keys; /* seals the workload's calls; NULL: plain */
    bench_workload workload;
    char urls[BENCH_MAX_TARGETS][BENCH_URL_MAX];
    char targets[BENCH_MAX_TARGETS * BENCH_URL_MAX];
    bench_report report;
} pipbench;

static const char pipbench_help[] =
    "Usage: pipbench [options] SERVICE.COMMAND [key=value ... | JSON]\n"
    "       pipbench [options] --workload FILE\n"
    "\n"
    "Sends calls to running nodes and reports calls per second, latency\n"
    "percentiles and errors by code.  SERVICE.ping is the no-op call that\n"
    "every service answers.  String arguments may contain {n} (a counter\n"
    "per call) and {rand} or {rand:N} (a random integer below N).\n"
    "\n"
    "Where to call:\n"
    "  --discovery URL    find the services here (environment PIP_DISCOVERY,\n"
    "                     default " PIPBENCH_DEFAULT_DISCOVERY ")\n"
    "  --endpoint URL     call every service at this URL, without discovery\n"
    "  --transport NAME   with discovery, the URL scheme to use: tcp\n"
    "                     (default) or ipc\n"
    "\n"
    "Load:\n"
    "  --workload FILE    a weighted mix of commands, one per line:\n"
    "                     WEIGHT SERVICE.COMMAND [ARGUMENTS]\n"
    "  -c, --concurrency LIST\n"
    "                     outstanding calls (default 1); a comma-separated\n"
    "                     list such as 1,4,16,64 runs a sweep\n"
    "  --sockets N        client sockets per service (default: the\n"
    "                     concurrency, at most 4)\n"
    "  --rate N           open loop at N calls per second; latency counts\n"
    "                     from the time each call was due (default: closed)\n"
    "  --warmup MS        unmeasured warm-up in milliseconds (default 1000)\n"
    "  --duration MS      measured time in milliseconds (default 5000)\n"
    "  --count N          measure N calls instead of a duration\n"
    "  --rounds N         split the measured part into N rounds; with\n"
    "                     --baseline, baseline and workload alternate\n"
    "                     round by round, so a machine that slows down\n"
    "                     for a while slows both (default 1)\n"
    "  --timeout MS       deadline of each call in milliseconds\n"
    "                     (default 10000)\n"
    "  --baseline         first run a raw NNG req/rep echo of the same\n"
    "                     message size, transport and concurrency, and\n"
    "                     print each figure as a ratio to it\n"
    "  --network-key-file FILE, --identity-file FILE\n"
    "                     seal (and sign) the workload's calls as pipcall\n"
    "                     does; also PIP_NETWORK_KEY_FILE and\n"
    "                     PIP_IDENTITY_FILE. The baseline stays plain, so\n"
    "                     its ratio shows what sealing costs\n"
    "  --echo-server URL  run only the baseline's echo server on URL with\n"
    "                     -c contexts, print the bound URL, and stop when\n"
    "                     stdin closes (--baseline starts one this way)\n"
    "\n"
    "Output:\n"
    "  --json FILE        write the figures, command line, versions and host\n"
    "  --svg FILE         draw throughput and p99 against concurrency\n"
    "  -q, --quiet        no progress line (it shows only on a terminal)\n"
    "  -h, --help         show this help\n"
    "\n"
    "Options may also follow SERVICE.COMMAND.  Exit status: 0 after a run,\n"
    "1 when the run failed or every measured call failed, 2 on a usage\n"
    "error.\n";

static int
pipbench_usage(const char *fmt, const char *value)
{
    fprintf(stderr, "pipbench: ");
    fprintf(stderr, fmt, value);
    fprintf(stderr, "\nRun 'pipbench --help' for the options.\n");
    return PIPBENCH_EXIT_USAGE;
}

/* Parses a decimal integer from min to max, and returns false otherwise. */
static bool
pipbench_parse_u64(const char *text, uint64_t min, uint64_t max,
                   uint64_t *out)
{
    char *end;
    unsigned long long value;

    if (text == NULL || *text == '\0' || *text == '-') {
        return false;
    }
    errno = 0;
    value = strtoull(text, &end, 10);
    if (errno != 0 || *end != '\0' || value < min || value > max) {
        return false;
    }
    *out = value;
    return true;
}

static bool
pipbench_parse_concurrencies(pipbench_options *opt, const char *text)
{
    char copy[256];
    char *save = NULL;
    uint64_t value;

    size_t len = strlen(text);

    /* strtok_r() would skip an empty item silently. */
    if (len == 0 || len >= sizeof(copy) || text[0] == ',' ||
        text[len - 1] == ',' || strstr(text, ",,") != NULL) {
        return false;
    }
    snprintf(copy, sizeof(copy), "%s", text);
    opt->concurrency_count = 0;
    for (char *item = strtok_r(copy, ",", &save); item != NULL;
         item = strtok_r(NULL, ",", &save)) {
        if (opt->concurrency_count == BENCH_MAX_POINTS ||
            !pipbench_parse_u64(item, 1, BENCH_MAX_CONCURRENCY, &value)) {
            return false;
        }
        opt->concurrencies[opt->concurrency_count++] = (int)value;
    }
    return opt->concurrency_count > 0;
}

/* Reads the value of a numeric option; returns false on a bad value. */
static bool
pipbench_number(const char *name, const char *value, uint64_t min,
                uint64_t max, uint64_t *out)
{
    if (!pipbench_parse_u64(value, min, max, out)) {
        fprintf(stderr, "pipbench: %s expects an integer from %" PRIu64
                " to %" PRIu64 ", not '%s'.\n", name, min, max,
                value != NULL ? value : "");
        return false;
    }
    return true;
}

static int
pipbench_parse_numeric(pipbench_options *opt, const char *name,
                       const char *value)
{
    uint64_t n = 0;

    if (strcmp(name, "--sockets") == 0) {
        if (!pipbench_number(name, value, 1, BENCH_MAX_SOCKETS, &n)) {
            return PIPBENCH_EXIT_USAGE;
        }
        opt->sockets = (int)n;
    } else if (strcmp(name, "--rate") == 0) {
        if (!pipbench_number(name, value, 1, 10000000, &n)) {
            return PIPBENCH_EXIT_USAGE;
        }
        opt->rate_per_s = (double)n;
    } else if (strcmp(name, "--warmup") == 0) {
        if (!pipbench_number(name, value, 0, 3600000, &n)) {
            return PIPBENCH_EXIT_USAGE;
        }
        opt->warmup_ms = (uint32_t)n;
    } else if (strcmp(name, "--duration") == 0) {
        if (!pipbench_number(name, value, 1, 86400000, &n)) {
            return PIPBENCH_EXIT_USAGE;
        }
        opt->duration_ms = (uint32_t)n;
    } else if (strcmp(name, "--count") == 0) {
        if (!pipbench_number(name, value, 1, UINT64_MAX / 2, &n)) {
            return PIPBENCH_EXIT_USAGE;
        }
        opt->call_count = n;
    } else if (strcmp(name, "--timeout") == 0) {
        if (!pipbench_number(name, value, 1, 3600000, &n)) {
            return PIPBENCH_EXIT_USAGE;
        }
        opt->timeout_ms = (uint32_t)n;
    } else if (strcmp(name, "--rounds") == 0) {
        if (!pipbench_number(name, value, 1, PIPBENCH_MAX_ROUNDS, &n)) {
            return PIPBENCH_EXIT_USAGE;
        }
        opt->rounds = (int)n;
    } else {
        return -1;
    }
    return 0;
}

static bool
pipbench_takes_value(const char *name)
{
    static const char *const names[] = {
        "--discovery", "--endpoint",  "--transport",     "--workload",
        "--json",      "--svg",       "--echo-server",   "-c",
        "--concurrency", "--sockets", "--rate",          "--warmup",
        "--duration",  "--count",     "--timeout",       "--network-key-file",
        "--identity-file", "--rounds", NULL};

    for (int i = 0; names[i] != NULL; i++) {
        if (strcmp(name, names[i]) == 0) {
            return true;
        }
    }
    return false;
}

/* Options that take a value; returns -1 when name is not one of them. */
static int
pipbench_parse_valued(pipbench_options *opt, const char *name,
                      const char *value)
{
    if (strcmp(name, "--discovery") == 0) {
        opt->discovery_url = value;
    } else if (strcmp(name, "--endpoint") == 0) {
        opt->endpoint = value;
    } else if (strcmp(name, "--transport") == 0) {
        if (strcmp(value, "tcp") != 0 && strcmp(value, "ipc") != 0) {
            return pipbench_usage("--transport is tcp or ipc, not '%s'.",
                                  value);
        }
        opt->transport = value;
    } else if (strcmp(name, "--workload") == 0) {
        opt->workload_file = value;
    } else if (strcmp(name, "--json") == 0) {
        opt->json_path = value;
    } else if (strcmp(name, "--svg") == 0) {
        opt->svg_path = value;
    } else if (strcmp(name, "--echo-server") == 0) {
        opt->echo_url = value;
    } else if (strcmp(name, "--network-key-file") == 0) {
        opt->keys.network_key_file = value;
    } else if (strcmp(name, "--identity-file") == 0) {
        opt->keys.identity_file = value;
    } else if (strcmp(name, "-c") == 0 ||
               strcmp(name, "--concurrency") == 0) {
        if (!pipbench_parse_concurrencies(opt, value)) {
            return pipbench_usage("--concurrency expects up to 16 integers "
                                  "from 1 to 4096 separated by commas, not "
                                  "'%s'.", value);
        }
    } else {
        return pipbench_parse_numeric(opt, name, value);
    }
    return 0;
}

/*
 * Options may come before or after SERVICE.COMMAND; the first word that
 * is no option is the method, and the words after it are its arguments.
 */
static int
pipbench_parse_args(pipbench_options *opt, int argc, char **argv)
{
    static const char *positional[256];
    int count = 0;

    for (int i = 1; i < argc; i++) {
        const char *name = argv[i];
        int rv;

        if (name[0] != '-' || name[1] == '\0') {
            if (count == (int)(sizeof(positional) / sizeof(positional[0]))) {
                return pipbench_usage("%s", "too many arguments.");
            }
            positional[count++] = name;
            continue;
        }
        if (strcmp(name, "-h") == 0 || strcmp(name, "--help") == 0) {
            fputs(pipbench_help, stdout);
            exit(0);
        } else if (strcmp(name, "--baseline") == 0) {
            opt->baseline = true;
            continue;
        } else if (strcmp(name, "-q") == 0 || strcmp(name, "--quiet") == 0) {
            opt->quiet = true;
            continue;
        }
        if (!pipbench_takes_value(name)) {
            return pipbench_usage("unknown option '%s'.", name);
        }
        if (i + 1 == argc) {
            return pipbench_usage("option %s needs a value.", name);
        }
        rv = pipbench_parse_valued(opt, name, argv[i + 1]);
        if (rv < 0) {
            return pipbench_usage("unknown option '%s'.", name);
        }
        if (rv != 0) {
            return rv;
        }
        i++;
    }
    if ((uint64_t)opt->rounds >
        (opt->call_count > 0 ? opt->call_count : opt->duration_ms)) {
        char detail[96];

        snprintf(detail, sizeof(detail), "--rounds %d is more than %s %llu",
                 opt->rounds, opt->call_count > 0 ? "--count" : "--duration",
                 (unsigned long long)(opt->call_count > 0
                                          ? opt->call_count
                                          : opt->duration_ms));
        return pipbench_usage("%s: each round needs at least one call or "
                              "millisecond. Give fewer rounds.",
                              detail);
    }
    if (count > 0) {
        opt->method = positional[0];
        opt->arg_words = positional + 1;
        opt->arg_count = count - 1;
    }
    if (opt->echo_url == NULL &&
        (opt->method == NULL) == (opt->workload_file == NULL)) {
        return pipbench_usage("%s", "give either SERVICE.COMMAND or "
                              "--workload FILE.");
    }
    return 0;
}

static void
pipbench_options_init(pipbench_options *opt)
{
    const char *env = getenv("PIP_DISCOVERY");

    memset(opt, 0, sizeof(*opt));
    opt->discovery_url = env != NULL && *env != '\0'
                             ? env
                             : PIPBENCH_DEFAULT_DISCOVERY;
    opt->transport = "tcp";
    opt->concurrencies[0] = 1;
    opt->concurrency_count = 1;
    opt->warmup_ms = 1000;
    opt->duration_ms = 5000;
    opt->timeout_ms = 10000;
    opt->rounds = 1;
}

static int
pipbench_load_workload(pipbench *pb, pip_error *err)
{
    json_t *args = NULL;
    int rv;

    if (pb->opt.workload_file != NULL) {
        return bench_workload_load(&pb->workload, pb->opt.workload_file, err);
    }
    rv = bench_args_parse(pb->opt.arg_words, pb->opt.arg_count, &args, err);
    if (rv == PIP_OK) {
        rv = bench_workload_add(&pb->workload, 1, pb->opt.method, args, err);
    }
    json_decref(args);
    return rv;
}

/* Picks the instance URL with the wanted scheme from a resolve result. */
static bool
pipbench_pick_url(const json_t *instances, const char *transport,
                  char url[BENCH_URL_MAX])
{
    size_t prefix_len = strlen(transport);
    const json_t *instance;
    const json_t *rpc;
    size_t i;
    size_t j;

    json_array_foreach(instances, i, instance) {
        json_array_foreach(json_object_get(instance, "rpc"), j, rpc) {
            const char *text = json_string_value(rpc);

            if (text != NULL && strncmp(text, transport, prefix_len) == 0 &&
                strncmp(text + prefix_len, "://", 3) == 0 &&
                strlen(text) < BENCH_URL_MAX) {
                snprintf(url, BENCH_URL_MAX, "%s", text);
                return true;
            }
        }
    }
    return false;
}

static int
pipbench_resolve(pipbench *pb, pip_error *err)
{
    pip_resolver *resolver = NULL;
    int rv;

    rv = pip_resolver_new(pb->opt.discovery_url, &resolver, err);
    for (int t = 0; rv == PIP_OK && t < pb->workload.service_count; t++) {
        json_t *instances = NULL;
        const char *name = pb->workload.services[t];

        rv = pip_resolver_resolve_within(resolver, name,
                                         PIPBENCH_LOOKUP_TIMEOUT_MS,
                                         &instances, err);
        if (rv == PIP_OK &&
            !pipbench_pick_url(instances, pb->opt.transport, pb->urls[t])) {
            rv = pip_error_set(err, PIP_E_UNAVAILABLE, "SERVICE_NOT_FOUND",
                               "Discovery at %s lists no %s instance with "
                               "a %s:// URL.", pb->opt.discovery_url, name,
                               pb->opt.transport);
        }
        json_decref(instances);
    }
    if (resolver != NULL) {
        pip_resolver_free(resolver);
    }
    return rv;
}

/* Fills urls and the report's target list and transport. */
static int
pipbench_find_targets(pipbench *pb, pip_error *err)
{
    size_t used = 0;
    int rv = PIP_OK;

    if (pb->opt.endpoint != NULL) {
        if (strlen(pb->opt.endpoint) >= BENCH_URL_MAX) {
            return pip_error_set(err, PIP_E_BAD_REQUEST, "INVALID_DATA",
                                 "The endpoint URL is too long.");
        }
        for (int t = 0; t < pb->workload.service_count; t++) {
            snprintf(pb->urls[t], BENCH_URL_MAX, "%s", pb->opt.endpoint);
        }
    } else {
        rv = pipbench_resolve(pb, err);
    }
    for (int t = 0; rv == PIP_OK && t < pb->workload.service_count; t++) {
        used += (size_t)snprintf(pb->targets + used,
                                 sizeof(pb->targets) - used, "%s%s",
                                 t == 0 ? "" : ",", pb->urls[t]);
    }
    pb->report.targets = pb->targets;
    pb->report.transport = strncmp(pb->urls[0], "ipc://", 6) == 0 ? "ipc"
                           : strncmp(pb->urls[0], "inproc://", 9) == 0
                               ? "inproc"
                               : "tcp";
    return rv;
}

/*
 * Asks the first target's node for its pid.  The pid is used for
 * resident memory only when that process exists on this host.
 */
static pid_t
pipbench_node_pid(const char *url)
{
    pip_client_options copt;
    pip_client *client = NULL;
    json_t *result = NULL;
    pip_error err;
    pid_t pid = 0;
    char host[256] = "";

    pip_error_init(&err);
    pip_client_options_init(&copt);
    copt.endpoint = url;
    copt.timeout_ms = PIPBENCH_LOOKUP_TIMEOUT_MS;
    gethostname(host, sizeof(host) - 1);
    if (pip_client_new(&copt, &client, &err) == PIP_OK &&
        pip_client_call(client, "node.describe", NULL, NULL, &result,
                        &err) == PIP_OK &&
        json_is_integer(json_object_get(result, "pid")) &&
        json_is_string(json_object_get(result, "host")) &&
        strcmp(json_string_value(json_object_get(result, "host")), host) ==
            0) {
        pid = (pid_t)json_integer_value(json_object_get(result, "pid"));
    }
    json_decref(result);
    if (client != NULL) {
        pip_client_free(client);
    }
    pip_error_fini(&err);
    return pid > 0 && bench_rss_kb(pid) >= 0 ? pid : 0;
}

static void
pipbench_run_config(const pipbench *pb, int concurrency,
                    bench_run_config *cfg)
{
    int sockets = pb->opt.sockets;

    if (sockets == 0) {
        sockets = concurrency < PIPBENCH_DEFAULT_SOCKETS
                      ? concurrency
                      : PIPBENCH_DEFAULT_SOCKETS;
    }
    bench_run_config_init(cfg);
    cfg->concurrency = concurrency;
    cfg->sockets = sockets < concurrency ? sockets : concurrency;
    cfg->rate_per_s = pb->opt.rate_per_s;
    cfg->warmup_ms = pb->opt.warmup_ms;
    cfg->duration_ms = pb->opt.duration_ms;
    cfg->call_count = pb->opt.call_count;
    cfg->timeout_ms = pb->opt.timeout_ms;
    cfg->progress = !pb->opt.quiet && isatty(STDERR_FILENO);
    cfg->keyring = pb->keys;
}

/* The echo server listens on the workload's transport, on loopback. */
static void
pipbench_echo_url(const pipbench *pb, char url[BENCH_URL_MAX])
{
    if (strcmp(pb->report.transport, "ipc") == 0) {
        const char *tmp = getenv("TMPDIR");

        snprintf(url, BENCH_URL_MAX, "ipc://%s/pipbench-echo-%ld.ipc",
                 tmp != NULL && *tmp != '\0' ? tmp : "/tmp", (long)getpid());
    } else if (strcmp(pb->report.transport, "inproc") == 0) {
        snprintf(url, BENCH_URL_MAX, "inproc://pipbench-echo");
    } else if (strstr(pb->urls[0], "[::1]") != NULL) {
        snprintf(url, BENCH_URL_MAX, "tcp://[::1]:0");
    } else {
        snprintf(url, BENCH_URL_MAX, "tcp://127.0.0.1:0");
    }
}

/*
 * The echo server runs in a child process, like a node, so it does not
 * share NNG's threads with the client that loads it.  The child prints its
 * bound URL on its stdout and exits when its stdin closes.
 */
typedef struct pipbench_echo_child {
    pid_t pid;
    int stdin_fd;
    char url[BENCH_URL_MAX];
} pipbench_echo_child;

static void
pipbench_exec_echo(const char *listen_url, int contexts, int in_fd,
                   int out_fd)
{
    char count[16];

    snprintf(count, sizeof(count), "%d", contexts);
    if (dup2(in_fd, STDIN_FILENO) < 0 || dup2(out_fd, STDOUT_FILENO) < 0) {
        _exit(127);
    }
    execl("/proc/self/exe", "pipbench", "--echo-server", listen_url, "-c",
          count, (char *)NULL);
    _exit(127);
}

/* Reads the child's first line, its bound URL, within the start time. */
static bool
pipbench_read_echo_url(int fd, char url[BENCH_URL_MAX])
{
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    size_t used = 0;

    while (used < BENCH_URL_MAX - 1 &&
           poll(&pfd, 1, PIPBENCH_ECHO_START_MS) == 1) {
        ssize_t n = read(fd, url + used, 1);

        if (n <= 0) {
            return false;
        }
        if (url[used] == '\n') {
            url[used] = '\0';
            return used > 0;
        }
        used++;
    }
    return false;
}

static void
pipbench_echo_child_stop(pipbench_echo_child *child)
{
    int status;

    close(child->stdin_fd);
    if (waitpid(child->pid, &status, 0) < 0) {
        kill(child->pid, SIGKILL);
    }
}

static int
pipbench_echo_child_start(const char *listen_url, int contexts,
                          pipbench_echo_child *child, pip_error *err)
{
    int to_child[2];
    int from_child[2];

    if (pipe(to_child) != 0) {
        return pip_error_set(err, PIP_E_INTERNAL, "PIPE_FAILED",
                             "Cannot create a pipe: %s.", strerror(errno));
    }
    if (pipe(from_child) != 0) {
        close(to_child[0]);
        close(to_child[1]);
        return pip_error_set(err, PIP_E_INTERNAL, "PIPE_FAILED",
                             "Cannot create a pipe: %s.", strerror(errno));
    }
    fflush(stdout);
    child->pid = fork();
    if (child->pid == 0) {
        close(to_child[1]);
        close(from_child[0]);
        pipbench_exec_echo(listen_url, contexts, to_child[0], from_child[1]);
    }
    close(to_child[0]);
    close(from_child[1]);
    child->stdin_fd = to_child[1];
    if (child->pid < 0 || !pipbench_read_echo_url(from_child[0], child->url)) {
        close(from_child[0]);
        if (child->pid > 0) {
            pipbench_echo_child_stop(child);
        } else {
            close(child->stdin_fd);
        }
        return pip_error_set(err, PIP_E_INTERNAL, "ECHO_FAILED",
                             "The baseline echo server on %s did not start.",
                             listen_url);
    }
    close(from_child[0]);
    return PIP_OK;
}

/* Sets cfg to the baseline's runs against the echo server. */
static void
pipbench_baseline_config(const pipbench *pb, const bench_run_config *base,
                         const char *echo_url, bench_run_config *cfg)
{
    *cfg = *base;
    cfg->workload = NULL;
    cfg->raw_msg_bytes = bench_request_size(&pb->workload);
    cfg->urls[0] = echo_url;
    cfg->label = "baseline";
}

/* --echo-server: serves until stdin reaches its end. */
static int
pipbench_echo_main(const pipbench_options *opt)
{
    bench_echo *echo = NULL;
    char bound_url[BENCH_URL_MAX];
    char drain[64];
    pip_error err;
    int rv;

    pip_error_init(&err);
    rv = bench_echo_start(opt->echo_url, opt->concurrencies[0], 1024 * 1024,
                          &echo, bound_url, &err);
    if (rv != PIP_OK) {
        fprintf(stderr, "pipbench: %s\n", err.message);
        pip_error_fini(&err);
        return PIPBENCH_EXIT_FAILED;
    }
    printf("%s\n", bound_url);
    fflush(stdout);
    while (read(STDIN_FILENO, drain, sizeof(drain)) > 0) {
    }
    bench_echo_stop(echo);
    if (strncmp(bound_url, "ipc://", 6) == 0) {
        unlink(bound_url + 6);
    }
    pip_error_fini(&err);
    return 0;
}

/* Sets out to round `round` of `rounds`: its share of the measured part,
 * and a short warm-up after the first round. */
static void
pipbench_round_config(const bench_run_config *cfg, int round, int rounds,
                      bench_run_config *out)
{
    *out = *cfg;
    if (round > 0 && out->warmup_ms > PIPBENCH_ROUND_WARMUP_MS) {
        out->warmup_ms = PIPBENCH_ROUND_WARMUP_MS;
    }
    if (cfg->call_count > 0) {
        out->call_count = cfg->call_count / (uint64_t)rounds +
                          ((uint64_t)round < cfg->call_count % (uint64_t)rounds
                               ? 1
                               : 0);
    } else {
        out->duration_ms = cfg->duration_ms / (uint32_t)rounds;
    }
}

/* Runs one round of cfg and adds its figures to total. */
static int
pipbench_run_round(const bench_run_config *cfg, int round, int rounds,
                   bench_result *total, pip_error *err)
{
    bench_run_config round_cfg;
    bench_result res;
    int rv;

    pipbench_round_config(cfg, round, rounds, &round_cfg);
    bench_result_init(&res);
    rv = bench_run(&round_cfg, &res, err);
    if (rv == PIP_OK) {
        rv = bench_result_merge(total, &res, err);
    }
    bench_result_fini(&res);
    return rv;
}

/*
 * Runs the baseline (with --baseline) and the workload at one
 * concurrency, alternating round by round.  The echo server runs for the
 * whole point.
 */
static int
pipbench_run_point(pipbench *pb, bench_point *point, pip_error *err)
{
    int rounds = pb->opt.rounds;
    bench_run_config baseline;
    bench_run_config workload;
    pipbench_echo_child child;
    char listen_url[BENCH_URL_MAX];
    int rv = PIP_OK;

    pipbench_run_config(pb, point->concurrency, &workload);
    point->sockets = workload.sockets;
    if (pb->opt.baseline) {
        pipbench_echo_url(pb, listen_url);
        rv = pipbench_echo_child_start(listen_url, point->concurrency, &child,
                                       err);
        if (rv != PIP_OK) {
            return rv;
        }
        point->has_baseline = true;
        pipbench_baseline_config(pb, &workload, child.url, &baseline);
    }
    workload.workload = &pb->workload;
    for (int t = 0; t < pb->workload.service_count; t++) {
        workload.urls[t] = pb->urls[t];
    }
    workload.label = "workload";

    for (int r = 0; rv == PIP_OK && r < rounds; r++) {
        if (pb->opt.baseline) {
            rv = pipbench_run_round(&baseline, r, rounds, &point->baseline,
                                    err);
        }
        if (rv == PIP_OK) {
            rv = pipbench_run_round(&workload, r, rounds, &point->workload,
                                    err);
        }
    }
    if (pb->opt.baseline) {
        pipbench_echo_child_stop(&child);
    }
    return rv;
}

static int
pipbench_run_all(pipbench *pb, pip_error *err)
{
    bench_report *r = &pb->report;
    int rv = PIP_OK;

    r->node_pid = pipbench_node_pid(pb->urls[0]);
    if (r->node_pid != 0) {
        r->rss_before_kb = bench_rss_kb(r->node_pid);
    }
    for (int i = 0; rv == PIP_OK && i < pb->opt.concurrency_count; i++) {
        bench_point *point = &r->points[r->point_count++];

        point->concurrency = pb->opt.concurrencies[i];
        rv = pipbench_run_point(pb, point, err);
    }
    if (r->node_pid != 0) {
        r->rss_after_kb = bench_rss_kb(r->node_pid);
    }
    return rv;
}

static void
pipbench_fill_report(pipbench *pb, int argc, char **argv)
{
    bench_report *r = &pb->report;

    r->argc = argc;
    r->argv = argv;
    r->workload = pb->opt.workload_file != NULL ? pb->opt.workload_file
                                                : pb->opt.method;
    r->rate_per_s = pb->opt.rate_per_s;
    r->warmup_ms = pb->opt.warmup_ms;
    r->duration_ms = pb->opt.call_count > 0 ? 0 : pb->opt.duration_ms;
    r->call_count = pb->opt.call_count;
    r->rounds = pb->opt.rounds;
}

static int
pipbench_write(pipbench *pb, pip_error *err)
{
    int rv = PIP_OK;

    bench_report_print(&pb->report, stdout);
    fflush(stdout);
    if (pb->opt.json_path != NULL) {
        rv = bench_report_write_json(&pb->report, pb->opt.json_path, err);
    }
    if (rv == PIP_OK && pb->opt.svg_path != NULL) {
        rv = bench_report_write_svg(&pb->report, pb->opt.svg_path, err);
    }
    return rv;
}

/* True when at least one measured call of the workload succeeded. */
static bool
pipbench_any_success(const bench_report *r)
{
    for (int i = 0; i < r->point_count; i++) {
        if (r->points[i].workload.calls > r->points[i].workload.errors) {
            return true;
        }
    }
    return false;
}

int
main(int argc, char **argv)
{
    static pipbench pb;
    pip_error err;
    int rv;

    pipbench_options_init(&pb.opt);
    rv = pipbench_parse_args(&pb.opt, argc, argv);
    if (rv != 0) {
        return rv;
    }
    if (pb.opt.echo_url != NULL) {
        return pipbench_echo_main(&pb.opt);
    }
    pip_log_configure(pip_log_stderr, NULL, PIP_LOG_WARN);
    pip_error_init(&err);
    bench_workload_init(&pb.workload);
    bench_report_init(&pb.report);
    pipbench_fill_report(&pb, argc, argv);

    rv = pip_keyring_configure(&pb.opt.keys, &pb.keys, &err);
    if (rv == PIP_OK) {
        pip_keyring_set_default(pb.keys);
        rv = pipbench_load_workload(&pb, &err);
    }
    if (rv == PIP_OK) {
        rv = pipbench_find_targets(&pb, &err);
    }
    if (rv == PIP_OK) {
        rv = pipbench_run_all(&pb, &err);
    }
    if (rv == PIP_OK) {
        rv = pipbench_write(&pb, &err);
    }
    if (rv != PIP_OK) {
        fprintf(stderr, "pipbench: %s\n", err.message);
    } else if (!pipbench_any_success(&pb.report)) {
        fprintf(stderr, "pipbench: every measured call failed.\n");
        rv = PIP_E_UNKNOWN;
    }

    bench_report_fini(&pb.report);
    bench_workload_fini(&pb.workload);
    pip_keyring_set_default(NULL);
    pip_keyring_free(pb.keys);
    pip_error_fini(&err);
    return rv == PIP_OK ? 0 : PIPBENCH_EXIT_FAILED;
}
