/*
 * piplaunch: runs a local network of nodes for a laptop or a single host.
 *
 *   piplaunch [--data DIR] [--port N] [--log-level LEVEL]
 *             [--gate-port N | --no-gate] [SERVICE...]
 *
 * Starts discovery on tcp://127.0.0.1:<port> (events on <port+1>), then
 * each service in its own pipnode process, found beside this program.
 * When every service has registered with discovery, it starts the HTTP
 * gateway pipgate on http://127.0.0.1:<gate-port>, prints where each
 * one listens and waits.  SIGINT or SIGTERM stops the children (SIGTERM,
 * then SIGKILL after 10 s) and exits 0 when they all stopped cleanly.  A
 * child that exits on its own stops the others and exits 1.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "pip/client.h"
#include "pip/log.h"
#include "pip/time.h"
#include "services.h"

extern char **environ;

#define PIPLAUNCH_EXIT_FAILED 1
#define PIPLAUNCH_EXIT_USAGE 2

/* Prints a usage error and returns the exit status for it. */
#define piplaunch_usage_error(...)                                           \
    cli_usage_error("piplaunch", "Run 'piplaunch --help' for usage.",       \
                    PIPLAUNCH_EXIT_USAGE, __VA_ARGS__)
#define PIPLAUNCH_DEFAULT_PORT 4100
#define PIPLAUNCH_DEFAULT_DATA "./pipdata"
/* Time for every node to start and register, generous enough for a
 * sanitizer build on a busy machine. */
#define PIPLAUNCH_STARTUP_TIMEOUT_MS 30000
#define PIPLAUNCH_POLL_MS 100
#define PIPLAUNCH_STOP_TIMEOUT_MS 10000
#define PIPLAUNCH_URL_MAX 64
#define PIPLAUNCH_DEFAULT_GATE_PORT 8080

typedef struct piplaunch_child {
    const char *name; /* service name; "discovery" for the first child,
                         "pipgate" for the gateway */
    pid_t pid;        /* 0 before the start */
    bool exited;
    bool stopped;     /* piplaunch sent it SIGTERM */
    int wait_status;  /* from waitpid() once exited */
    json_t *instance; /* owned: the registered instance, once seen */
} piplaunch_child;

typedef struct piplaunch {
    const char *data_dir;
    int port;
    const char *log_level; /* passed to the nodes, or NULL */
    int gate_port;         /* the gateway's HTTP port, or 0 for none */
    char bin_dir[PATH_MAX];
    char pipnode_path[PATH_MAX + 16];
    char pipgate_path[PATH_MAX + 16];
    char discovery_url[PIPLAUNCH_URL_MAX];
    char discovery_pub_url[PIPLAUNCH_URL_MAX];
    char **child_env; /* environ without PIP_DISCOVERY */
    pip_key_sources key_files; /* the key options, passed to children */
    pip_keyring *keys; /* piplaunch's own calls; NULL when plain */
    bool discovery_answered;
    piplaunch_child *children; /* [0] is discovery, the gateway last */
    int child_count;
    sigset_t signals; /* SIGINT, SIGTERM, SIGCHLD: blocked */
} piplaunch;

static const char piplaunch_help[] =
    "Usage: piplaunch [--data DIR] [--port N] [--log-level LEVEL]\n"
    "                 [--gate-port N | --no-gate] [--network-key-file FILE]\n"
    "                 [--identity-file FILE] [--trusted-keys FILE]\n"
    "                 [SERVICE...]\n"
    "\n"
    "Starts discovery and the named services (default: all of them), each "
    "in its\n"
    "own pipnode process on 127.0.0.1, waits until every service has "
    "registered,\n"
    "prints where each one listens, and runs until Ctrl-C (SIGINT) or "
    "SIGTERM.\n"
    "\n"
    "Options:\n"
    "  --data DIR         data folder of the services "
    "(default " PIPLAUNCH_DEFAULT_DATA ")\n"
    "  --port N           discovery's RPC port; its event port is N+1 "
    "(default 4100)\n"
    "  --log-level LEVEL  log level of the nodes: "
    "error|warn|info|debug|trace\n"
    "                     (default: PIP_LOG_LEVEL when set, else info)\n"
    "  --gate-port N      HTTP port of the gateway pipgate on 127.0.0.1 "
    "(default 8080)\n"
    "  --no-gate          do not start the gateway\n"
    "  --network-key-file FILE, --identity-file FILE, --trusted-keys FILE\n"
    "                     keys of every node and of the gateway (see\n"
    "                     pipkey); passed on as PIP_NETWORK_KEY_FILE,\n"
    "                     PIP_IDENTITY_FILE and PIP_TRUSTED_KEYS\n"
    "  --help             print this help and exit\n"
    "\n"
    "Services:\n";

/* Prints a message prefixed with the program name. */
static void piplaunch_say(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));

static void
piplaunch_say(const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "piplaunch: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

static void
piplaunch_print_help(void)
{
    fputs(piplaunch_help, stdout);
    for (int i = 0; pip_services_all[i] != NULL; i++) {
        const pip_service_def *def = pip_services_all[i];

        if (strcmp(def->name, "discovery") != 0) {
            printf("  %-12s %s\n", def->name, def->doc ? def->doc : "");
        }
    }
}

/* ---- command line ---- */

/* Prints a usage error and returns the exit status for it. */
static bool
piplaunch_parse_port(const char *text, int *port)
{
    char *end;
    long value;

    errno = 0;
    value = strtol(text, &end, 10);
    /* The event port is port + 1, so it must be a valid port too. */
    if (errno != 0 || end == text || *end != '\0' || value < 1 ||
        value > 65534) {
        return false;
    }
    *port = (int)value;
    return true;
}

/* Reports an unknown service name with the names that can be launched. */
static void
piplaunch_list_services(const char *name)
{
    const char *sep = "";

    fprintf(stderr, "piplaunch: unknown service '%s'. Available:", name);
    for (int i = 0; pip_services_all[i] != NULL; i++) {
        if (strcmp(pip_services_all[i]->name, "discovery") != 0) {
            fprintf(stderr, "%s %s", sep, pip_services_all[i]->name);
            sep = ",";
        }
    }
    fprintf(stderr, ".\nRun 'piplaunch --help' for usage.\n");
}

/* Adds the service `name` to the children, after checking it. */
static int
piplaunch_add_service(piplaunch *pl, const char *name)
{
    if (strcmp(name, "discovery") == 0) {
        return piplaunch_usage_error(
            "discovery always runs; name only the other services.");
    }
    if (pip_services_find(name) == NULL) {
        piplaunch_list_services(name);
        return PIPLAUNCH_EXIT_USAGE;
    }
    for (int i = 0; i < pl->child_count; i++) {
        if (strcmp(pl->children[i].name, name) == 0) {
            return piplaunch_usage_error("service '%s' is named twice.", name);
        }
    }
    pl->children[pl->child_count++].name = name;
    return 0;
}

/* Adds every service except discovery, for a launch that names none. */
static void
piplaunch_add_all_services(piplaunch *pl)
{
    for (int i = 0; pip_services_all[i] != NULL; i++) {
        const char *name = pip_services_all[i]->name;

        if (strcmp(name, "discovery") != 0) {
            pl->children[pl->child_count++].name = name;
        }
    }
}

/* Prints the exports that let pipcall use the network's keys. */
static void
piplaunch_print_key_exports(void)
{
    static const char *const names[] = {"PIP_NETWORK_KEY_FILE",
                                        "PIP_IDENTITY_FILE",
                                        "PIP_TRUSTED_KEYS"};

    for (size_t k = 0; k < sizeof(names) / sizeof(names[0]); k++) {
        const char *value = getenv(names[k]);

        if (value != NULL && value[0] != '\0') {
            printf("  export %s=%s\n", names[k], value);
        }
    }
}

/* Applies one option.  Returns 0, -1 after --help, or an exit status. */
static int
piplaunch_parse_option(piplaunch *pl, int argc, char **argv, int *i)
{
    const char *arg = argv[*i];
    const char *value;

    if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
        piplaunch_print_help();
        return -1;
    }
    if (strncmp(arg, "--data", 6) == 0 &&
        (value = cli_option_value("--data", argc, argv, i)) != NULL) {
        if (value[0] == '\0') {
            return piplaunch_usage_error("invalid --data: empty folder "
                                         "name.");
        }
        pl->data_dir = value;
        return 0;
    }
    if (strncmp(arg, "--port", 6) == 0 &&
        (value = cli_option_value("--port", argc, argv, i)) != NULL) {
        if (!piplaunch_parse_port(value, &pl->port)) {
            return piplaunch_usage_error(
                "invalid --port '%s': expected a port from 1 to 65534.",
                value);
        }
        return 0;
    }
    if (strcmp(arg, "--no-gate") == 0) {
        pl->gate_port = 0;
        return 0;
    }
    if (strncmp(arg, "--gate-port", 11) == 0 &&
        (value = cli_option_value("--gate-port", argc, argv, i)) !=
            NULL) {
        if (!piplaunch_parse_port(value, &pl->gate_port)) {
            return piplaunch_usage_error(
                "invalid --gate-port '%s': expected a port from 1 to 65534.",
                value);
        }
        return 0;
    }
    if (strncmp(arg, "--log-level", 11) == 0 &&
        (value = cli_option_value("--log-level", argc, argv, i)) !=
            NULL) {
        if (pip_log_level_parse(value) < 0) {
            return piplaunch_usage_error(
                "invalid --log-level '%s': expected error, warn, info, "
                "debug or trace.",
                value);
        }
        pl->log_level = value;
        return 0;
    }
    value = cli_parse_key_option(&pl->key_files, argc, argv, i);
    if (value != NULL && value[0] == '\0') {
        return piplaunch_usage_error("option %s needs a file name.", arg);
    }
    if (value != NULL) {
        return 0;
    }
    if (strcmp(arg, "--data") == 0 || strcmp(arg, "--port") == 0 ||
        strcmp(arg, "--gate-port") == 0 || strcmp(arg, "--log-level") == 0) {
        return piplaunch_usage_error("option %s needs a value.", arg);
    }
    return piplaunch_usage_error("unknown option '%s'.", arg);
}

static int
piplaunch_parse_args(piplaunch *pl, int argc, char **argv)
{
    int rv;

    pl->data_dir = PIPLAUNCH_DEFAULT_DATA;
    pl->port = PIPLAUNCH_DEFAULT_PORT;
    pl->gate_port = PIPLAUNCH_DEFAULT_GATE_PORT;
    pl->children[pl->child_count++].name = "discovery";
    for (int i = 1; i < argc; i++) {
        if (argv[i][0] == '-') {
            rv = piplaunch_parse_option(pl, argc, argv, &i);
        } else {
            rv = piplaunch_add_service(pl, argv[i]);
        }
        if (rv != 0) {
            return rv;
        }
    }
    if (pl->child_count == 1) {
        piplaunch_add_all_services(pl);
    }
    snprintf(pl->discovery_url, sizeof(pl->discovery_url),
             "tcp://127.0.0.1:%d", pl->port);
    snprintf(pl->discovery_pub_url, sizeof(pl->discovery_pub_url),
             "tcp://127.0.0.1:%d", pl->port + 1);
    return 0;
}

/* ---- preparation ---- */

/* Finds pipnode in the folder of this program. */
static int
piplaunch_find_pipnode(piplaunch *pl)
{
    ssize_t len =
        readlink("/proc/self/exe", pl->bin_dir, sizeof(pl->bin_dir) - 1);
    char *slash;

    if (len <= 0) {
        piplaunch_say("failed to read /proc/self/exe to find pipnode: %s",
                      strerror(errno));
        return PIPLAUNCH_EXIT_FAILED;
    }
    pl->bin_dir[len] = '\0';
    slash = strrchr(pl->bin_dir, '/');
    if (slash != NULL) {
        *slash = '\0';
    }
    snprintf(pl->pipnode_path, sizeof(pl->pipnode_path), "%s/pipnode",
             pl->bin_dir);
    if (access(pl->pipnode_path, X_OK) != 0) {
        piplaunch_say("pipnode not found at %s (%s); build it beside "
                      "piplaunch, for example with 'cmake --build build'.",
                      pl->pipnode_path, strerror(errno));
        return PIPLAUNCH_EXIT_FAILED;
    }
    snprintf(pl->pipgate_path, sizeof(pl->pipgate_path), "%s/pipgate",
             pl->bin_dir);
    if (pl->gate_port != 0 && access(pl->pipgate_path, X_OK) != 0) {
        piplaunch_say("pipgate not found at %s (%s); build it, or run "
                      "without the gateway with --no-gate.",
                      pl->pipgate_path, strerror(errno));
        return PIPLAUNCH_EXIT_FAILED;
    }
    return 0;
}

/* True when a TCP listener can bind 127.0.0.1:port right now. */
static bool
piplaunch_port_free(int port)
{
    struct sockaddr_in addr;
    int reuse_addr = 1;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    bool free_port;

    if (fd < 0) {
        return true; /* let the node report the real problem */
    }
    /* Same as NNG's listeners: a port in TIME_WAIT counts as free. */
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &reuse_addr, sizeof(reuse_addr));
    memset(&addr, 0, sizeof(addr));
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    free_port = bind(fd, (struct sockaddr *)&addr, sizeof(addr)) == 0 ||
                errno != EADDRINUSE;
    close(fd);
    return free_port;
}

static int
piplaunch_check_ports(const piplaunch *pl)
{
    for (int port = pl->port; port <= pl->port + 1; port++) {
        if (!piplaunch_port_free(port)) {
            piplaunch_say("port %d on 127.0.0.1 is already in use (is "
                          "another piplaunch or discovery running?). "
                          "Stop it, or pick free ports with --port N "
                          "(piplaunch uses N and N+1), for example "
                          "--port %d.",
                          port, pl->port + 100);
            return PIPLAUNCH_EXIT_FAILED;
        }
    }
    if (pl->gate_port != 0 && !piplaunch_port_free(pl->gate_port)) {
        piplaunch_say("port %d on 127.0.0.1 is already in use, so the "
                      "gateway cannot listen there. Pick another with "
                      "--gate-port N, or run without it with --no-gate.",
                      pl->gate_port);
        return PIPLAUNCH_EXIT_FAILED;
    }
    return 0;
}

/*
 * Copies the environment without PIP_DISCOVERY, so that discovery does
 * not register with itself when the user exported it for pipcall.
 * Built before any fork because the child may only call
 * async-signal-safe functions.
 */
static int
piplaunch_build_env(piplaunch *pl)
{
    size_t count = 0;
    size_t kept_count = 0;

    while (environ[count] != NULL) {
        count++;
    }
    pl->child_env = calloc(count + 1, sizeof(char *));
    if (pl->child_env == NULL) {
        piplaunch_say("out of memory");
        return PIPLAUNCH_EXIT_FAILED;
    }
    for (size_t i = 0; i < count; i++) {
        if (strncmp(environ[i], "PIP_DISCOVERY=", 14) != 0) {
            pl->child_env[kept_count++] = environ[i];
        }
    }
    return 0;
}

/* ---- children ---- */

/*
 * Starts argv[0] (pipnode or pipgate) in a child process.  The child
 * gets its own process group, so a Ctrl-C on the terminal reaches only
 * piplaunch, which stops the children in order, and it dies with
 * piplaunch (PR_SET_PDEATHSIG) if piplaunch is killed.
 */
static int
piplaunch_spawn(piplaunch *pl, piplaunch_child *child, char *const argv[])
{
    pid_t parent = getpid();
    pid_t pid = fork();

    if (pid < 0) {
        piplaunch_say("failed to start %s: fork: %s", child->name,
                      strerror(errno));
        return PIPLAUNCH_EXIT_FAILED;
    }
    if (pid == 0) {
        sigset_t none;

        setpgid(0, 0);
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (getppid() != parent) {
            _exit(PIPLAUNCH_EXIT_FAILED);
        }
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        execve(argv[0], argv, pl->child_env);
        _exit(127);
    }
    child->pid = pid;
    return 0;
}

static int
piplaunch_start_discovery(piplaunch *pl)
{
    char listen[PIPLAUNCH_URL_MAX + 16];
    char pub[PIPLAUNCH_URL_MAX + 16];
    char data[PATH_MAX + 16];
    char level[64];
    char *argv[8];
    int argc = 0;

    snprintf(listen, sizeof(listen), "--listen=%s", pl->discovery_url);
    snprintf(pub, sizeof(pub), "--pub=%s", pl->discovery_pub_url);
    snprintf(data, sizeof(data), "--data=%s", pl->data_dir);
    argv[argc++] = pl->pipnode_path;
    argv[argc++] = "discovery";
    argv[argc++] = listen;
    argv[argc++] = pub;
    argv[argc++] = data;
    if (pl->log_level != NULL) {
        snprintf(level, sizeof(level), "--log-level=%s", pl->log_level);
        argv[argc++] = level;
    }
    argv[argc] = NULL;
    return piplaunch_spawn(pl, &pl->children[0], argv);
}

static int
piplaunch_start_service(piplaunch *pl, piplaunch_child *child)
{
    char discovery[PIPLAUNCH_URL_MAX + 16];
    char data[PATH_MAX + 16];
    char level[64];
    char *argv[10];
    int argc = 0;

    snprintf(discovery, sizeof(discovery), "--discovery=%s",
             pl->discovery_url);
    snprintf(data, sizeof(data), "--data=%s", pl->data_dir);
    argv[argc++] = pl->pipnode_path;
    argv[argc++] = (char *)child->name;
    argv[argc++] = discovery;
    argv[argc++] = data;
    argv[argc++] = "--listen=tcp://127.0.0.1:0";
    argv[argc++] = "--pub=tcp://127.0.0.1:0";
    if (pl->log_level != NULL) {
        snprintf(level, sizeof(level), "--log-level=%s", pl->log_level);
        argv[argc++] = level;
    }
    argv[argc] = NULL;
    return piplaunch_spawn(pl, child, argv);
}

/*
 * Starts pipgate as the last child, once the services have registered,
 * so that its first route lookup finds them all.
 */
static int
piplaunch_start_gate(piplaunch *pl)
{
    piplaunch_child *child = &pl->children[pl->child_count++];
    char listen[PIPLAUNCH_URL_MAX + 16];
    char discovery[PIPLAUNCH_URL_MAX + 16];
    char level[64];
    char *argv[6];
    int argc = 0;

    child->name = "pipgate";
    snprintf(listen, sizeof(listen), "--listen=http://127.0.0.1:%d",
             pl->gate_port);
    snprintf(discovery, sizeof(discovery), "--discovery=%s",
             pl->discovery_url);
    argv[argc++] = pl->pipgate_path;
    argv[argc++] = listen;
    argv[argc++] = discovery;
    if (pl->log_level != NULL) {
        snprintf(level, sizeof(level), "--log-level=%s", pl->log_level);
        argv[argc++] = level;
    }
    argv[argc] = NULL;
    return piplaunch_spawn(pl, child, argv);
}

/* Describes a wait status: "status 1" or "signal 9 (Killed)". */
static void
piplaunch_describe_status(int wait_status, char *out, size_t out_len)
{
    if (WIFEXITED(wait_status)) {
        snprintf(out, out_len, "status %d", WEXITSTATUS(wait_status));
    } else if (WIFSIGNALED(wait_status)) {
        snprintf(out, out_len, "signal %d (%s)", WTERMSIG(wait_status),
                 strsignal(WTERMSIG(wait_status)));
    } else {
        snprintf(out, out_len, "wait status %d", wait_status);
    }
}

/*
 * Collects children that have exited, without blocking.  Returns the
 * first child found exited in this call, or NULL.
 */
static piplaunch_child *
piplaunch_reap(piplaunch *pl)
{
    piplaunch_child *first = NULL;

    for (int i = 0; i < pl->child_count; i++) {
        piplaunch_child *child = &pl->children[i];
        int wait_status;

        if (child->pid <= 0 || child->exited) {
            continue;
        }
        if (waitpid(child->pid, &wait_status, WNOHANG) == child->pid) {
            child->exited = true;
            child->wait_status = wait_status;
            first = first != NULL ? first : child;
        }
    }
    return first;
}

static void
piplaunch_report_exit(const piplaunch_child *child, const char *when)
{
    char status[96];

    piplaunch_describe_status(child->wait_status, status, sizeof(status));
    piplaunch_say("%s (pid %d) exited %s with %s; see its log above.",
                  child->name, (int)child->pid, when, status);
}

static bool
piplaunch_running(const piplaunch_child *child)
{
    return child->pid > 0 && !child->exited;
}

static void
piplaunch_signal_range(piplaunch *pl, int first, int last, int signo)
{
    for (int i = first; i <= last; i++) {
        if (piplaunch_running(&pl->children[i])) {
            pl->children[i].stopped = true;
            kill(pl->children[i].pid, signo);
        }
    }
}

static bool
piplaunch_any_running(const piplaunch *pl, int first, int last)
{
    for (int i = first; i <= last; i++) {
        if (piplaunch_running(&pl->children[i])) {
            return true;
        }
    }
    return false;
}

static int
piplaunch_count_running(const piplaunch *pl)
{
    int count = 0;

    for (int i = 0; i < pl->child_count; i++) {
        count += piplaunch_running(&pl->children[i]) ? 1 : 0;
    }
    return count;
}

/* Sleeps up to ms, waking early on SIGCHLD.  Returns a pending SIGINT or
 * SIGTERM, or 0. */
static int
piplaunch_nap(piplaunch *pl, int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    int signo = sigtimedwait(&pl->signals, NULL, &ts);

    return signo == SIGINT || signo == SIGTERM ? signo : 0;
}

/*
 * Sends SIGTERM to children first..last and waits for them, with SIGKILL
 * for any still running after PIPLAUNCH_STOP_TIMEOUT_MS.
 */
static void
piplaunch_stop_range(piplaunch *pl, int first, int last)
{
    int64_t deadline_ms = pip_mono_ms() + PIPLAUNCH_STOP_TIMEOUT_MS;

    piplaunch_signal_range(pl, first, last, SIGTERM);
    while (piplaunch_any_running(pl, first, last)) {
        piplaunch_reap(pl);
        if (!piplaunch_any_running(pl, first, last)) {
            break;
        }
        if (pip_mono_ms() >= deadline_ms) {
            for (int i = first; i <= last; i++) {
                if (piplaunch_running(&pl->children[i])) {
                    piplaunch_say("%s (pid %d) did not stop within %d ms; "
                                  "killing it.",
                                  pl->children[i].name,
                                  (int)pl->children[i].pid,
                                  PIPLAUNCH_STOP_TIMEOUT_MS);
                }
            }
            piplaunch_signal_range(pl, first, last, SIGKILL);
            deadline_ms = INT64_MAX;
        }
        piplaunch_nap(pl, PIPLAUNCH_POLL_MS);
    }
}

/*
 * Stops every child: the services first, so that they deregister while
 * discovery still runs, then discovery.  Returns true when every child
 * that was stopped here exited with status 0.
 */
static bool
piplaunch_stop_all(piplaunch *pl)
{
    bool clean = true;

    piplaunch_stop_range(pl, 1, pl->child_count - 1);
    piplaunch_stop_range(pl, 0, 0);
    for (int i = 0; i < pl->child_count; i++) {
        const piplaunch_child *child = &pl->children[i];

        if (child->stopped && !(WIFEXITED(child->wait_status) &&
                                WEXITSTATUS(child->wait_status) == 0)) {
            piplaunch_report_exit(child, "while stopping");
            clean = false;
        }
    }
    return clean;
}

/* ---- readiness ---- */

/*
 * True when instance is the registration of child: the same service name,
 * and the same process id when the node reports one in its metadata.
 */
static bool
piplaunch_instance_of(const piplaunch_child *child, const json_t *instance)
{
    const char *name = json_string_value(json_object_get(instance, "name"));
    const json_t *pid =
        json_object_get(json_object_get(instance, "metadata"), "pid");

    if (name == NULL || strcmp(name, child->name) != 0) {
        return false;
    }
    return !json_is_integer(pid) ||
           json_integer_value(pid) == (json_int_t)child->pid;
}

/*
 * Records the instances of discovery's list that belong to the
 * children.  Returns true when every child has registered.
 */
static bool
piplaunch_match_instances(piplaunch *pl, const json_t *instances)
{
    bool all = true;

    for (int i = 0; i < pl->child_count; i++) {
        piplaunch_child *child = &pl->children[i];
        size_t index;
        json_t *instance;

        json_array_foreach(instances, index, instance) {
            if (child->instance == NULL &&
                piplaunch_instance_of(child, instance)) {
                child->instance = json_incref(instance);
            }
        }
        /* Discovery does not list itself, so a successful list call is
         * enough for it. */
        all = all && (child->instance != NULL || i == 0);
    }
    return all;
}

/* Asks discovery for its list.  Returns true when every child is in it. */
static bool
piplaunch_poll_list(piplaunch *pl, pip_client *client)
{
    json_t *instances = NULL;
    pip_error err;
    bool ready = false;

    pip_error_init(&err);
    if (pip_client_call(client, "discovery.list", NULL, NULL, &instances,
                        &err) == PIP_OK &&
        json_is_array(instances)) {
        pl->discovery_answered = true;
        ready = piplaunch_match_instances(pl, instances);
    }
    json_decref(instances);
    pip_error_fini(&err);
    return ready;
}

static void
piplaunch_report_missing(const piplaunch *pl)
{
    for (int i = 1; i < pl->child_count; i++) {
        if (pl->children[i].instance == NULL) {
            piplaunch_say("%s (pid %d) did not register with discovery at "
                          "%s within %d ms; see its log above.",
                          pl->children[i].name, (int)pl->children[i].pid,
                          pl->discovery_url, PIPLAUNCH_STARTUP_TIMEOUT_MS);
        }
    }
}

/*
 * Polls discovery's list until every child is in it.  Returns 0, 1 when
 * a child exited or the time ran out, or -1 when a stop signal came.
 */
static int
piplaunch_wait_ready(piplaunch *pl, pip_client *client)
{
    int64_t deadline_ms = pip_mono_ms() + PIPLAUNCH_STARTUP_TIMEOUT_MS;
    piplaunch_child *exited_child;

    while (!piplaunch_poll_list(pl, client)) {
        exited_child = piplaunch_reap(pl);
        if (exited_child != NULL) {
            piplaunch_report_exit(exited_child, "during start-up");
            return PIPLAUNCH_EXIT_FAILED;
        }
        if (pip_mono_ms() >= deadline_ms) {
            if (!pl->discovery_answered) {
                piplaunch_say("discovery did not answer at %s within %d "
                              "ms; see its log above.",
                              pl->discovery_url, PIPLAUNCH_STARTUP_TIMEOUT_MS);
            } else {
                piplaunch_report_missing(pl);
            }
            return PIPLAUNCH_EXIT_FAILED;
        }
        if (piplaunch_nap(pl, PIPLAUNCH_POLL_MS) != 0) {
            return -1;
        }
    }
    return 0;
}

/* ---- the table ---- */

static void
piplaunch_join_urls(const json_t *urls, char *out, size_t out_len)
{
    size_t index;
    json_t *url;
    size_t used = 0;

    snprintf(out, out_len, "-");
    json_array_foreach(urls, index, url) {
        int n;

        if (!json_is_string(url) || used >= out_len) {
            continue;
        }
        n = snprintf(out + used, out_len - used, "%s%s", used ? " " : "",
                     json_string_value(url));
        used += n > 0 ? (size_t)n : 0;
    }
}

/*
 * The path to show for a program beside piplaunch: relative to the
 * working folder when it is below it, as the user most likely typed it.
 */
static const char *
piplaunch_shown_bin_dir(const piplaunch *pl, char *cwd, size_t cwd_len)
{
    size_t len;

    if (getcwd(cwd, cwd_len) == NULL) {
        return pl->bin_dir;
    }
    len = strlen(cwd);
    if (strncmp(pl->bin_dir, cwd, len) == 0 && pl->bin_dir[len] == '/') {
        return pl->bin_dir + len + 1;
    }
    return pl->bin_dir;
}

static bool
piplaunch_hosts(const piplaunch *pl, const char *name)
{
    for (int i = 1; i < pl->child_count; i++) {
        if (strcmp(pl->children[i].name, name) == 0) {
            return true;
        }
    }
    return false;
}

/* The service that the printed describe example names. */
static const char *
piplaunch_example_service(const piplaunch *pl)
{
    if (piplaunch_hosts(pl, "counters")) {
        return "counters";
    }
    return pl->child_count > 1 ? pl->children[1].name : "discovery";
}

static void
piplaunch_print_table(const piplaunch *pl)
{
    char cwd[PATH_MAX];
    const char *bin = piplaunch_shown_bin_dir(pl, cwd, sizeof(cwd));

    printf("\nDiscovery on %s, events on %s, data in %s\n\n",
           pl->discovery_url, pl->discovery_pub_url, pl->data_dir);
    printf("%-12s %-8s %-30s %s\n", "SERVICE", "PID", "RPC", "PUB");
    for (int i = 1; i < pl->child_count; i++) {
        const piplaunch_child *child = &pl->children[i];
        const char *pub;

        if (child->instance == NULL) {
            continue; /* the gateway, shown below */
        }
        pub =
            json_string_value(json_object_get(child->instance, "pub"));
        char rpc[512];

        piplaunch_join_urls(json_object_get(child->instance, "rpc"), rpc,
                            sizeof(rpc));
        printf("%-12s %-8d %-30s %s\n", child->name, (int)child->pid, rpc,
               pub ? pub : "-");
    }
    if (pl->gate_port != 0) {
        printf("%-12s %-8d http://127.0.0.1:%d\n", "pipgate",
               (int)pl->children[pl->child_count - 1].pid, pl->gate_port);
    }
    printf("\nTry:\n");
    if (pl->port != PIPLAUNCH_DEFAULT_PORT) {
        printf("  export PIP_DISCOVERY=%s\n", pl->discovery_url);
    }
    piplaunch_print_key_exports();
    printf("  %s/pipcall list\n", bin);
    printf("  %s/pipcall describe %s\n", bin, piplaunch_example_service(pl));
    if (piplaunch_hosts(pl, "counters")) {
        printf("  %s/pipcall counters.write_counter "
               "counter='{\"name\":\"demo.calls\",\"type\":4,"
               "\"count\":1}'\n",
               bin);
    }
    if (pl->gate_port != 0 && piplaunch_hosts(pl, "counters")) {
        printf("  curl -s -X POST http://127.0.0.1:%d/v1/counters/"
               "read_counters -d '{}'\n",
               pl->gate_port);
    }
    printf("\nPress Ctrl-C to stop.\n");
    fflush(stdout);
}

/* ---- main ---- */

/*
 * Waits for SIGINT or SIGTERM (returns 0) or for a child to exit on its
 * own (returns 1 after saying which).
 */
static int
piplaunch_serve(piplaunch *pl)
{
    for (;;) {
        int signo = sigwaitinfo(&pl->signals, NULL);
        piplaunch_child *exited_child;

        if (signo == SIGINT || signo == SIGTERM) {
            return 0;
        }
        exited_child = piplaunch_reap(pl);
        if (exited_child != NULL) {
            piplaunch_report_exit(exited_child, "on its own");
            return PIPLAUNCH_EXIT_FAILED;
        }
    }
}

/* Starts discovery and the services.  Returns what piplaunch_wait_ready
 * returns, or an exit status when a process could not be started. */
static int
piplaunch_start(piplaunch *pl, pip_client *client)
{
    int rv = piplaunch_start_discovery(pl);

    for (int i = 1; i < pl->child_count && rv == 0; i++) {
        rv = piplaunch_start_service(pl, &pl->children[i]);
    }
    if (rv == 0) {
        rv = piplaunch_wait_ready(pl, client);
    }
    if (rv == 0 && pl->gate_port != 0) {
        rv = piplaunch_start_gate(pl);
    }
    return rv;
}

static int
piplaunch_run(piplaunch *pl)
{
    pip_client_options copt;
    pip_client *client = NULL;
    pip_error err;
    int running;
    int rv;

    pip_error_init(&err);
    pip_client_options_init(&copt);
    copt.endpoint = pl->discovery_url;
    copt.timeout_ms = 1000;
    if (pip_client_new(&copt, &client, &err) != PIP_OK) {
        piplaunch_say("failed to create a client for %s: %s",
                      pl->discovery_url, err.message);
        pip_error_fini(&err);
        return PIPLAUNCH_EXIT_FAILED;
    }

    rv = piplaunch_start(pl, client);
    if (rv == 0) {
        piplaunch_print_table(pl);
        rv = piplaunch_serve(pl);
    }
    pip_client_free(client);
    if (rv < 0) {
        rv = 0; /* stopped by a signal during start-up */
    }
    running = piplaunch_count_running(pl);
    piplaunch_say("stopping %d process%s", running, running == 1 ? "" : "es");
    if (!piplaunch_stop_all(pl) && rv == 0) {
        rv = PIPLAUNCH_EXIT_FAILED;
    }
    return rv;
}

static void
piplaunch_free(piplaunch *pl)
{
    for (int i = 0; i < pl->child_count; i++) {
        json_decref(pl->children[i].instance);
    }
    free(pl->children);
    free(pl->child_env);
}

int
main(int argc, char **argv)
{
    piplaunch pl;
    int service_count = 0;
    int rv;

    memset(&pl, 0, sizeof(pl));
    while (pip_services_all[service_count] != NULL) {
        service_count++;
    }
    /* One child per service at most, plus discovery and the gateway. */
    pl.children = calloc((size_t)service_count + 2, sizeof(*pl.children));
    if (pl.children == NULL) {
        piplaunch_say("out of memory");
        return PIPLAUNCH_EXIT_FAILED;
    }

    rv = piplaunch_parse_args(&pl, argc, argv);
    if (rv == 0) {
        /* Exported before piplaunch_build_env() copies the environment. */
        cli_export_keys(&pl.key_files);
        rv = cli_keys_load("piplaunch", &pl.key_files, &pl.keys)
                 ? 0
                 : PIPLAUNCH_EXIT_FAILED;
    }
    if (rv == 0) {
        rv = piplaunch_find_pipnode(&pl);
    }
    if (rv == 0) {
        rv = piplaunch_check_ports(&pl);
    }
    if (rv == 0) {
        rv = piplaunch_build_env(&pl);
    }
    if (rv == 0) {
        sigemptyset(&pl.signals);
        sigaddset(&pl.signals, SIGINT);
        sigaddset(&pl.signals, SIGTERM);
        sigaddset(&pl.signals, SIGCHLD);
        sigprocmask(SIG_BLOCK, &pl.signals, NULL);
        rv = piplaunch_run(&pl);
    }
    piplaunch_free(&pl);
    pip_keyring_set_default(NULL);
    pip_keyring_free(pl.keys);
    return rv < 0 ? 0 : rv;
}
