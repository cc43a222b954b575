/*
 * Process harness for the integration tests, described in harness.h.
 */
#include "harness.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef PIP_BIN_DIR
#error "PIP_BIN_DIR must name the folder of the built programs"
#endif

#define HARNESS_MAX_ARGS 64
#define HARNESS_POLL_MS 20

/* Text that AddressSanitizer, LeakSanitizer and UBSan print on a report. */
static const char *const harness_sanitizer_markers[] = {
    "AddressSanitizer",
    "LeakSanitizer",
    "UndefinedBehaviorSanitizer",
    "runtime error:",
    NULL,
};

int64_t
harness_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void
harness_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};

    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* Children must not pick up a node configuration from our environment. */
static void
harness_clear_environment(void)
{
    static const char *const names[] = {
        "PIP_LISTEN", "PIP_PUB", "PIP_DATA", "PIP_DISCOVERY", "PIP_HOST",
        "PIP_WORKERS", "PIP_CONTEXTS", "PIP_LEASE_MS", "PIP_MAX_MSG_BYTES",
        "PIP_MAX_DEPTH", "PIP_SYNC", "PIP_SET", "PIP_CONFIG",
        "PIP_LOG_LEVEL", NULL,
    };

    for (int i = 0; names[i] != NULL; i++) {
        unsetenv(names[i]);
    }
}

harness *
harness_new(void)
{
    harness *h = calloc(1, sizeof(*h));
    const char *tmp = getenv("TMPDIR");
    size_t len;

    if (tmp == NULL || tmp[0] == '\0') {
        tmp = "/tmp";
    }
    /* Room below PATH_MAX for the file names that the harness adds. */
    len = strlen(tmp) + sizeof("/pip-it-XXXXXX");
    if (h == NULL || len > PATH_MAX / 2 || (h->dir = malloc(len)) == NULL) {
        fprintf(stderr, "harness: out of memory or TMPDIR too long\n");
        free(h);
        return NULL;
    }
    snprintf(h->dir, len, "%s/pip-it-XXXXXX", tmp);
    if (mkdtemp(h->dir) == NULL) {
        fprintf(stderr, "harness: mkdtemp %s failed: %s\n", h->dir,
                strerror(errno));
        free(h->dir);
        free(h);
        return NULL;
    }
    harness_clear_environment();
    return h;
}

void *
harness_fixture_new(size_t size)
{
    harness **fixture;

    if (size < sizeof(harness *) || (fixture = calloc(1, size)) == NULL) {
        fprintf(stderr, "harness: allocating a fixture of %zu bytes failed\n",
                size);
        return NULL;
    }
    *fixture = harness_new();
    if (*fixture == NULL) {
        free(fixture);
        return NULL;
    }
    return fixture;
}

int
harness_fixture_free(void *fixture)
{
    /* A pointer to a struct converts to a pointer to its first member. */
    harness **first = fixture;
    int rv;

    if (first == NULL) {
        return 0;
    }
    rv = harness_free(*first);
    free(fixture);
    return rv;
}

int
harness_teardown(void **state)
{
    return harness_fixture_free(*state);
}

bool
harness_path(const harness *h, const char *name, char *out)
{
    int n = snprintf(out, PATH_MAX, "%s/%s", h->dir, name);

    return n > 0 && n < PATH_MAX;
}

/* Removes a folder tree.  Symbolic links are removed, not followed. */
static void
harness_remove_tree(const char *path)
{
    struct stat st;
    DIR *dir;
    struct dirent *entry;
    char child[PATH_MAX];

    if (lstat(path, &st) != 0) {
        return;
    }
    if (!S_ISDIR(st.st_mode)) {
        unlink(path);
        return;
    }
    dir = opendir(path);
    if (dir != NULL) {
        while ((entry = readdir(dir)) != NULL) {
            if (strcmp(entry->d_name, ".") == 0 ||
                strcmp(entry->d_name, "..") == 0) {
                continue;
            }
            snprintf(child, sizeof(child), "%s/%s", path, entry->d_name);
            harness_remove_tree(child);
        }
        closedir(dir);
    }
    rmdir(path);
}

char *
harness_read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    char *text = NULL;
    size_t len = 0;
    size_t cap = 0;
    size_t n;
    char chunk[4096];

    if (f == NULL) {
        return NULL;
    }
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
        if (len + n + 1 > cap) {
            char *bigger;

            cap = (len + n + 1) * 2;
            bigger = realloc(text, cap);
            if (bigger == NULL) {
                free(text);
                fclose(f);
                return NULL;
            }
            text = bigger;
        }
        memcpy(text + len, chunk, n);
        len += n;
    }
    fclose(f);
    if (text == NULL) {
        text = calloc(1, 1);
    } else {
        text[len] = '\0';
    }
    return text;
}

static bool
harness_has_sanitizer_report(const char *text)
{
    for (int i = 0; harness_sanitizer_markers[i] != NULL; i++) {
        if (strstr(text, harness_sanitizer_markers[i]) != NULL) {
            return true;
        }
    }
    return false;
}

static int
harness_exit_code(int status)
{
    if (WIFEXITED(status)) {
        return WEXITSTATUS(status);
    }
    if (WIFSIGNALED(status)) {
        return 128 + WTERMSIG(status);
    }
    return -1;
}

/*
 * Runs in the child between fork and execv, so it makes only
 * async-signal-safe calls: the parent may have NNG threads.
 */
static void
harness_exec_child(const char *path, char *const *argv, const char *log,
                   const char *out)
{
    sigset_t none;
    int null_fd;
    int log_fd;
    int out_fd;

    prctl(PR_SET_PDEATHSIG, SIGKILL);
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    signal(SIGTERM, SIG_DFL);
    signal(SIGINT, SIG_DFL);
    signal(SIGPIPE, SIG_DFL);

    null_fd = open("/dev/null", O_RDONLY);
    log_fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    out_fd = out[0] != '\0' ? open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644)
                            : log_fd;
    if (null_fd < 0 || log_fd < 0 || out_fd < 0) {
        _exit(126);
    }
    dup2(null_fd, STDIN_FILENO);
    dup2(out_fd, STDOUT_FILENO);
    dup2(log_fd, STDERR_FILENO);
    execv(path, argv);
    _exit(127);
}

/* Copies argv into a NULL-ended array that execv accepts. */
static bool
harness_copy_argv(const char *const *argv, char **copy)
{
    int n = 0;

    while (argv[n] != NULL) {
        if (n + 1 >= HARNESS_MAX_ARGS) {
            fprintf(stderr, "harness: more than %d arguments\n",
                    HARNESS_MAX_ARGS - 1);
            return false;
        }
        copy[n] = (char *)argv[n];
        n++;
    }
    copy[n] = NULL;
    return true;
}

static pid_t
harness_spawn(const char *const *argv, const char *log, const char *out)
{
    char path[PATH_MAX];
    char *args[HARNESS_MAX_ARGS];
    pid_t pid;

    if (!harness_copy_argv(argv, args)) {
        return -1;
    }
    snprintf(path, sizeof(path), "%s/%s", PIP_BIN_DIR, argv[0]);
    if (access(path, X_OK) != 0) {
        fprintf(stderr, "harness: %s is missing or not executable: %s\n",
                path, strerror(errno));
        return -1;
    }
    fflush(NULL);
    pid = fork();
    if (pid < 0) {
        fprintf(stderr, "harness: fork failed: %s\n", strerror(errno));
        return -1;
    }
    if (pid == 0) {
        harness_exec_child(path, args, log, out);
    }
    return pid;
}

harness_proc *
harness_start(harness *h, const char *name, const char *const *argv,
              bool split_stdout)
{
    harness_proc *proc;
    char file[64];

    if (h->proc_count >= HARNESS_MAX_PROCS) {
        fprintf(stderr, "harness: more than %d children\n",
                HARNESS_MAX_PROCS);
        return NULL;
    }
    proc = &h->procs[h->proc_count];
    memset(proc, 0, sizeof(*proc));
    snprintf(proc->name, sizeof(proc->name), "%s", name);
    h->file_serial++;
    snprintf(file, sizeof(file), "%s-%d.log", name, h->file_serial);
    harness_path(h, file, proc->log_path);
    if (split_stdout) {
        snprintf(file, sizeof(file), "%s-%d.out", name, h->file_serial);
        harness_path(h, file, proc->out_path);
    }
    proc->is_node = strcmp(argv[0], "pipnode") == 0;

    proc->pid = harness_spawn(argv, proc->log_path, proc->out_path);
    if (proc->pid < 0) {
        return NULL;
    }
    proc->running = true;
    h->proc_count++;
    return proc;
}

bool
harness_wait_exit(harness_proc *proc, int timeout_ms)
{
    int64_t deadline = harness_now_ms() + timeout_ms;
    int status;

    if (!proc->running) {
        return true;
    }
    for (;;) {
        pid_t rv = waitpid(proc->pid, &status, WNOHANG);

        if (rv == proc->pid) {
            proc->running = false;
            proc->exit_code = harness_exit_code(status);
            return true;
        }
        if (rv < 0 && errno != EINTR) {
            proc->running = false;
            proc->exit_code = -1;
            return true;
        }
        if (harness_now_ms() >= deadline) {
            return false;
        }
        harness_sleep_ms(HARNESS_POLL_MS);
    }
}

void
harness_kill(harness_proc *proc)
{
    if (!proc->running) {
        return;
    }
    proc->killed = true;
    kill(proc->pid, SIGKILL);
    harness_wait_exit(proc, HARNESS_STOP_TIMEOUT_MS);
}

static void
harness_print_log(harness_proc *proc)
{
    char *text;

    if (proc->log_printed) {
        return;
    }
    proc->log_printed = true;
    text = harness_read_file(proc->log_path);

    fprintf(stderr, "---- log of %s (pid %d, exit %d): %s ----\n%s\n"
            "---- end of log of %s ----\n", proc->name, (int)proc->pid,
            proc->exit_code, proc->log_path, text ? text : "(unreadable)",
            proc->name);
    free(text);
}

/* Waits for a child sent SIGTERM, with SIGKILL after timeout_ms. */
static int
harness_finish_stop(harness_proc *proc, int timeout_ms)
{
    if (harness_wait_exit(proc, timeout_ms)) {
        return proc->exit_code;
    }
    fprintf(stderr, "harness: %s (pid %d) did not exit within %d ms of "
            "SIGTERM, sending SIGKILL\n", proc->name, (int)proc->pid,
            timeout_ms);
    harness_kill(proc);
    proc->exit_code = -1;
    harness_print_log(proc);
    return -1;
}

int
harness_stop(harness_proc *proc, int timeout_ms)
{
    if (!proc->running) {
        return proc->exit_code;
    }
    kill(proc->pid, SIGTERM);
    return harness_finish_stop(proc, timeout_ms);
}

bool
harness_stop_together(harness_proc **procs, int count, int timeout_ms,
                      int *codes)
{
    bool all_exited = true;

    for (int i = 0; i < count; i++) {
        if (procs[i]->running) {
            kill(procs[i]->pid, SIGTERM);
        }
    }
    for (int i = 0; i < count; i++) {
        codes[i] = procs[i]->running
                       ? harness_finish_stop(procs[i], timeout_ms)
                       : procs[i]->exit_code;
        all_exited = all_exited && codes[i] != -1;
    }
    return all_exited;
}

bool
harness_logs_clean(harness *h)
{
    bool clean = h->sanitizer_reports == 0;

    for (int i = 0; i < h->proc_count; i++) {
        char *text = harness_read_file(h->procs[i].log_path);

        if (text != NULL && harness_has_sanitizer_report(text)) {
            fprintf(stderr, "harness: sanitizer report in the log of %s\n",
                    h->procs[i].name);
            harness_print_log(&h->procs[i]);
            clean = false;
        }
        free(text);
    }
    return clean;
}

/*
 * Stops the running children whose stop_last flag equals last: SIGTERM
 * to all of them first, then a wait for each, so they stop in parallel.
 */
static bool
harness_stop_group(harness *h, bool last)
{
    harness_proc *group[HARNESS_MAX_PROCS];
    int codes[HARNESS_MAX_PROCS];
    int count = 0;
    bool clean;

    for (int i = 0; i < h->proc_count; i++) {
        if (h->procs[i].running && h->procs[i].stop_last == last) {
            group[count++] = &h->procs[i];
        }
    }
    clean = harness_stop_together(group, count, HARNESS_STOP_TIMEOUT_MS,
                                  codes);
    for (int i = 0; i < count; i++) {
        if (group[i]->is_node && codes[i] > 0) {
            fprintf(stderr, "harness: %s exited %d after SIGTERM\n",
                    group[i]->name, codes[i]);
            harness_print_log(group[i]);
            clean = false;
        }
    }
    return clean;
}

/* The nodes stop before discovery, so that they can deregister. */
static bool
harness_stop_all(harness *h)
{
    bool clean = harness_stop_group(h, false);

    return harness_stop_group(h, true) && clean;
}

int
harness_free(harness *h)
{
    bool clean;

    if (h == NULL) {
        return 0;
    }
    if (h->discovery_client != NULL) {
        pip_client_free(h->discovery_client);
    }
    clean = harness_stop_all(h);
    clean = harness_logs_clean(h) && clean;
    for (int i = 0; i < h->proc_count; i++) {
        harness_proc *proc = &h->procs[i];

        /* A node that failed earlier in the test: show why. */
        if (proc->is_node && !proc->killed && proc->exit_code != 0) {
            harness_print_log(proc);
        }
    }
    if (getenv("PIP_KEEP_TEST_DIR") != NULL) {
        fprintf(stderr, "harness: kept %s\n", h->dir);
    } else {
        harness_remove_tree(h->dir);
    }
    free(h->dir);
    free(h);
    return clean ? 0 : -1;
}

void
harness_output_fini(harness_output *out)
{
    free(out->out);
    free(out->err);
    out->out = NULL;
    out->err = NULL;
}

static void
harness_collect(harness *h, const char *out_path, const char *err_path,
                harness_output *out)
{
    out->out = harness_read_file(out_path);
    out->err = harness_read_file(err_path);
    if (out->out == NULL) {
        out->out = calloc(1, 1);
    }
    if (out->err == NULL) {
        out->err = calloc(1, 1);
    }
    if (out->err != NULL && harness_has_sanitizer_report(out->err)) {
        fprintf(stderr, "harness: sanitizer report from %s:\n%s\n",
                out_path, out->err);
        h->sanitizer_reports++;
    }
    unlink(out_path);
    unlink(err_path);
}

int
harness_run(harness *h, const char *const *argv, int timeout_ms,
            harness_output *out)
{
    harness_proc proc;
    char file[64];
    char out_path[PATH_MAX];
    char err_path[PATH_MAX];

    memset(out, 0, sizeof(*out));
    out->exit_code = -1;
    h->file_serial++;
    snprintf(file, sizeof(file), "run-%d.out", h->file_serial);
    harness_path(h, file, out_path);
    snprintf(file, sizeof(file), "run-%d.err", h->file_serial);
    harness_path(h, file, err_path);

    memset(&proc, 0, sizeof(proc));
    snprintf(proc.name, sizeof(proc.name), "%s", argv[0]);
    proc.pid = harness_spawn(argv, err_path, out_path);
    if (proc.pid < 0) {
        return -1;
    }
    proc.running = true;
    if (!harness_wait_exit(&proc, timeout_ms)) {
        fprintf(stderr, "harness: %s ran longer than %d ms, killed\n",
                argv[0], timeout_ms);
        harness_kill(&proc);
        proc.exit_code = -1;
    }
    out->exit_code = proc.exit_code;
    harness_collect(h, out_path, err_path, out);
    return 0;
}

int
harness_pipcall(harness *h, harness_output *out, const char *const *args)
{
    const char *argv[HARNESS_MAX_ARGS];
    int n = 0;

    argv[n++] = "pipcall";
    argv[n++] = "--discovery";
    argv[n++] = h->discovery_url;
    argv[n++] = "--timeout";
    argv[n++] = "5000";
    for (int i = 0; args[i] != NULL; i++) {
        if (n + 1 >= HARNESS_MAX_ARGS) {
            fprintf(stderr, "harness: too many pipcall arguments\n");
            return -1;
        }
        argv[n++] = args[i];
    }
    argv[n] = NULL;
    return harness_run(h, argv, 15000, out);
}

json_t *
harness_parse_json(const char *text)
{
    json_error_t error;

    if (text == NULL) {
        return NULL;
    }
    return json_loads(text, JSON_DECODE_ANY, &error);
}

json_t *
harness_parse_error_json(const char *text)
{
    const char *start = text != NULL ? strchr(text, '{') : NULL;
    json_error_t error;

    if (start == NULL) {
        return NULL;
    }
    return json_loads(start, JSON_DISABLE_EOF_CHECK, &error);
}

int
harness_free_port(void)
{
    struct sockaddr_in addr;
    socklen_t len = sizeof(addr);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int port = -1;

    if (fd < 0) {
        return -1;
    }
    memset(&addr, 0, sizeof(addr));
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    if (bind(fd, (struct sockaddr *)&addr, sizeof(addr)) == 0 &&
        getsockname(fd, (struct sockaddr *)&addr, &len) == 0) {
        port = ntohs(addr.sin_port);
    }
    close(fd);
    return port;
}

pip_client *
harness_client_new(const char *endpoint, const char *discovery_url,
                   uint32_t timeout_ms)
{
    pip_client_options opt;
    pip_client *client = NULL;
    pip_error err;

    pip_error_init(&err);
    pip_client_options_init(&opt);
    opt.endpoint = endpoint;
    opt.discovery_url = discovery_url;
    opt.timeout_ms = timeout_ms;
    if (pip_client_new(&opt, &client, &err) != PIP_OK) {
        fprintf(stderr, "harness: client for %s failed: %s %s\n",
                endpoint != NULL ? endpoint : discovery_url, err.code,
                err.message);
        client = NULL;
    }
    pip_error_fini(&err);
    return client;
}

json_t *
harness_call_ok(pip_client *client, const char *method, json_t *args)
{
    json_t *result = NULL;
    pip_error err;
    int rv;

    pip_error_init(&err);
    rv = pip_client_call(client, method, args, NULL, &result, &err);
    if (rv != PIP_OK) {
        fail_msg("%s failed: %s %s %s", method, pip_category_name(rv),
                 err.code, err.message);
    }
    pip_error_fini(&err);
    json_decref(args);
    return result;
}

/* Calls method with no arguments and drops the result.  True on success. */
static bool
harness_ping(pip_client *client, const char *method)
{
    json_t *result = NULL;
    pip_error err;
    int rv;

    pip_error_init(&err);
    rv = pip_client_call(client, method, NULL, NULL, &result, &err);
    json_decref(result);
    pip_error_fini(&err);
    return rv == PIP_OK;
}

bool
harness_wait_ready(const char *endpoint, const char *method, int timeout_ms)
{
    int64_t deadline = harness_now_ms() + timeout_ms;
    pip_client *client = harness_client_new(endpoint, NULL, 500);
    bool ready = false;

    if (client == NULL) {
        return false;
    }
    while (!ready && harness_now_ms() < deadline) {
        ready = harness_ping(client, method);
        if (!ready) {
            harness_sleep_ms(100);
        }
    }
    pip_client_free(client);
    return ready;
}

static bool
harness_pick_discovery_ports(harness *h)
{
    h->discovery_port = harness_free_port();
    h->discovery_pub_port = harness_free_port();
    if (h->discovery_port < 0 || h->discovery_pub_port < 0 ||
        h->discovery_port == h->discovery_pub_port) {
        fprintf(stderr, "harness: no free loopback ports for discovery\n");
        return false;
    }
    snprintf(h->discovery_url, sizeof(h->discovery_url),
             "tcp://127.0.0.1:%d", h->discovery_port);
    h->discovery_client = harness_client_new(h->discovery_url, NULL, 1000);
    return h->discovery_client != NULL;
}

bool
harness_start_discovery(harness *h, int timeout_ms)
{
    char pub_url[HARNESS_URL_MAX];
    char data[PATH_MAX];
    const char *argv[] = {"pipnode", "discovery", "--listen",
                          h->discovery_url, "--pub", pub_url, "--data", data,
                          NULL};

    if (h->discovery_port == 0 && !harness_pick_discovery_ports(h)) {
        return false;
    }
    snprintf(pub_url, sizeof(pub_url), "tcp://127.0.0.1:%d",
             h->discovery_pub_port);
    harness_path(h, "discovery-data", data);

    h->discovery = harness_start(h, "discovery", argv, false);
    if (h->discovery == NULL) {
        return false;
    }
    h->discovery->stop_last = true;
    return harness_wait_ready(h->discovery_url, "discovery.ping",
                              timeout_ms);
}

bool
harness_node_init(harness *h, harness_node *node, const char *name)
{
    char folder[HARNESS_NAME_MAX + 8];

    memset(node, 0, sizeof(*node));
    snprintf(node->name, sizeof(node->name), "%s", name);
    node->port = harness_free_port();
    if (node->port < 0) {
        fprintf(stderr, "harness: no free loopback port for %s\n", name);
        return false;
    }
    snprintf(node->url, sizeof(node->url), "tcp://127.0.0.1:%d", node->port);
    snprintf(folder, sizeof(folder), "%s-data", name);
    return harness_path(h, folder, node->data);
}

bool
harness_node_start(harness *h, harness_node *node, const char *const *args,
                   const char *ready_method, int timeout_ms)
{
    const char *argv[HARNESS_MAX_ARGS];
    int n = 0;

    argv[n++] = "pipnode";
    for (int i = 0; args[i] != NULL; i++) {
        if (n + 7 >= HARNESS_MAX_ARGS) {
            fprintf(stderr, "harness: more than %d pipnode arguments\n",
                    HARNESS_MAX_ARGS - 8);
            return false;
        }
        argv[n++] = args[i];
    }
    argv[n++] = "--listen";
    argv[n++] = node->url;
    argv[n++] = "--pub";
    argv[n++] = "tcp://127.0.0.1:0";
    argv[n++] = "--data";
    argv[n++] = node->data;
    argv[n] = NULL;

    node->proc = harness_start(h, node->name, argv, false);
    if (node->proc == NULL) {
        return false;
    }
    if (ready_method != NULL &&
        !harness_wait_ready(node->url, ready_method, timeout_ms)) {
        fprintf(stderr,
                "harness: the node on %s did not respond to %s "
                "within %d ms\n",
                node->url, ready_method, timeout_ms);
        return false;
    }
    return true;
}

json_t *
harness_instances(harness *h, const char *service)
{
    json_t *list = NULL;
    json_t *matches;
    json_t *instance;
    size_t i;
    pip_error err;

    pip_error_init(&err);
    if (h->discovery_client == NULL ||
        pip_client_call(h->discovery_client, "discovery.list", NULL, NULL,
                        &list, &err) != PIP_OK || !json_is_array(list)) {
        json_decref(list);
        pip_error_fini(&err);
        return NULL;
    }
    pip_error_fini(&err);

    matches = json_array();
    json_array_foreach(list, i, instance) {
        const char *name = json_string_value(json_object_get(instance,
                                                             "name"));

        if (service == NULL || (name != NULL && strcmp(name, service) == 0)) {
            json_array_append(matches, instance);
        }
    }
    json_decref(list);
    return matches;
}

bool
harness_wait_instances(harness *h, const char *service, int count,
                       int timeout_ms)
{
    int64_t deadline = harness_now_ms() + timeout_ms;

    for (;;) {
        json_t *found = harness_instances(h, service);
        bool reached = found != NULL && (int)json_array_size(found) == count;

        json_decref(found);
        if (reached) {
            return true;
        }
        if (harness_now_ms() >= deadline) {
            return false;
        }
        harness_sleep_ms(100);
    }
}

bool
harness_instance_has_rpc(const json_t *instance, const char *url)
{
    json_t *rpc = json_object_get(instance, "rpc");
    json_t *item;
    size_t i;

    json_array_foreach(rpc, i, item) {
        const char *value = json_string_value(item);

        if (value != NULL && strcmp(value, url) == 0) {
            return true;
        }
    }
    return false;
}
