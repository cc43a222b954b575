/*
 * Network namespaces as LAN hosts, described in lan_net.h.  The
 * namespaces are made and changed with the `ip` command, run as a child
 * process, because that is the tool an operator would use and its error
 * messages are the familiar ones.  setns() moves only the calling thread.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* setns */
#endif

#include "lan_net.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Where `ip netns add` keeps the namespace handles. */
#define LAN_NET_RUN_DIR "/run/netns"
#define LAN_NET_NAME_PREFIX "piplan-"
/* An ip command that runs longer than this is killed. */
#define LAN_NET_IP_TIMEOUT_MS 10000
#define LAN_NET_MAX_ARGS 24
#define LAN_NET_OUTPUT_MAX 1024

static int64_t
lan_net_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Finds the ip program of iproute2; false when it is not installed. */
static bool
lan_net_find_ip(lan_net *net)
{
    static const char *const paths[] = {"/usr/sbin/ip", "/sbin/ip",
                                        "/usr/bin/ip", "/bin/ip", NULL};

    for (int i = 0; paths[i] != NULL; i++) {
        if (access(paths[i], X_OK) == 0) {
            snprintf(net->ip_path, sizeof(net->ip_path), "%s", paths[i]);
            return true;
        }
    }
    return false;
}

/* Runs in the child between fork and execv: async-signal-safe calls only. */
static void
lan_net_exec_ip(const char *path, char *const *argv, int out_fd)
{
    int null_fd = open("/dev/null", O_RDONLY);

    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (null_fd < 0) {
        _exit(126);
    }
    dup2(null_fd, STDIN_FILENO);
    dup2(out_fd, STDOUT_FILENO);
    dup2(out_fd, STDERR_FILENO);
    execv(path, argv);
    _exit(127);
}

/* Reads the child's output into out until EOF or deadline_ms. */
static void
lan_net_read_output(int fd, int64_t deadline_ms, char *out, size_t out_len)
{
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    size_t used = 0;
    char chunk[256];
    ssize_t n;

    out[0] = '\0';
    for (;;) {
        int64_t left_ms = deadline_ms - lan_net_now_ms();

        if (left_ms <= 0 || poll(&pfd, 1, (int)left_ms) <= 0) {
            return;
        }
        n = read(fd, chunk, sizeof(chunk));
        if (n <= 0) {
            return;
        }
        for (ssize_t i = 0; i < n && used + 1 < out_len; i++) {
            out[used++] = chunk[i];
        }
        out[used] = '\0';
    }
}

/* Drops the final newline, so that the output fits in one message. */
static void
lan_net_trim(char *text)
{
    size_t len = strlen(text);

    while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == ' ')) {
        text[--len] = '\0';
    }
}

/* Waits for the child until deadline_ms, then kills it.  Returns its
 * exit status, or -1 when it was killed or ended by a signal. */
static int
lan_net_reap(pid_t pid, int64_t deadline_ms)
{
    struct timespec pause = {0, 10 * 1000000L};
    int status;

    while (waitpid(pid, &status, WNOHANG) == 0) {
        if (lan_net_now_ms() >= deadline_ms) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            return -1;
        }
        nanosleep(&pause, NULL);
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/*
 * Runs `ip ARGS...` (the NULL-ended args, without the program) for at most
 * LAN_NET_IP_TIMEOUT_MS.  out receives stdout and stderr.  Returns the
 * exit status, or -1 when ip could not run or timed out.
 */
static int
lan_net_ip_argv(const lan_net *net, const char *const *args, char *out,
                size_t out_len)
{
    int64_t deadline_ms = lan_net_now_ms() + LAN_NET_IP_TIMEOUT_MS;
    char *argv[LAN_NET_MAX_ARGS + 2];
    int fds[2];
    pid_t pid;
    int i;

    argv[0] = (char *)net->ip_path;
    for (i = 0; args[i] != NULL && i < LAN_NET_MAX_ARGS; i++) {
        argv[i + 1] = (char *)args[i];
    }
    argv[i + 1] = NULL;
    if (pipe2(fds, O_CLOEXEC) != 0) {
        snprintf(out, out_len, "pipe failed: %s", strerror(errno));
        return -1;
    }

    fflush(NULL);
    pid = fork();
    if (pid == 0) {
        lan_net_exec_ip(net->ip_path, argv, fds[1]);
    }
    close(fds[1]);
    if (pid < 0) {
        snprintf(out, out_len, "fork failed: %s", strerror(errno));
        close(fds[0]);
        return -1;
    }

    lan_net_read_output(fds[0], deadline_ms, out, out_len);
    close(fds[0]);
    lan_net_trim(out);
    return lan_net_reap(pid, deadline_ms);
}

/*
 * Runs ip with the arguments that follow (NULL-ended) and prints the
 * command and its output on stderr when it fails.  Returns 0 on success.
 */
static int
lan_net_ip(const lan_net *net, ...)
{
    const char *args[LAN_NET_MAX_ARGS + 1];
    char out[LAN_NET_OUTPUT_MAX];
    va_list ap;
    int n = 0;
    int rv;

    va_start(ap, net);
    while (n < LAN_NET_MAX_ARGS &&
           (args[n] = va_arg(ap, const char *)) != NULL) {
        n++;
    }
    va_end(ap);
    args[n] = NULL;

    rv = lan_net_ip_argv(net, args, out, sizeof(out));
    if (rv != 0) {
        fprintf(stderr, "lan_net: ip");
        for (int i = 0; args[i] != NULL; i++) {
            fprintf(stderr, " %s", args[i]);
        }
        fprintf(stderr, " failed (status %d): %s\n", rv, out);
        return -1;
    }
    return 0;
}

static void
lan_net_host_name(const lan_net *net, int host, char *out, size_t len)
{
    snprintf(out, len, "%s-h%d", net->prefix, host);
}

static void
lan_net_switch_name(const lan_net *net, char *out, size_t len)
{
    snprintf(out, len, "%s-sw", net->prefix);
}

void
lan_net_address(int host, char *out, size_t len)
{
    snprintf(out, len, "%s.%d", LAN_NET_PREFIX, host + 1);
}

/*
 * True when name belongs to a run that is gone: its pid does not exist,
 * or it is our own pid, which means an earlier process with this pid
 * died without cleaning up.
 */
static bool
lan_net_is_stale(const char *name)
{
    const char *digits = name + strlen(LAN_NET_NAME_PREFIX);
    char *end;
    long pid;

    if (strncmp(name, LAN_NET_NAME_PREFIX, strlen(LAN_NET_NAME_PREFIX)) != 0) {
        return false;
    }
    errno = 0;
    pid = strtol(digits, &end, 10);
    if (errno != 0 || end == digits || *end != '-' || pid <= 0) {
        return false;
    }
    if (pid == (long)getpid()) {
        return true;
    }
    return kill((pid_t)pid, 0) != 0 && errno == ESRCH;
}

/* Deletes the namespaces of runs that died without cleaning up. */
static void
lan_net_remove_stale(const lan_net *net)
{
    DIR *dir = opendir(LAN_NET_RUN_DIR);
    struct dirent *entry;

    if (dir == NULL) {
        return; /* no namespace was ever added */
    }
    while ((entry = readdir(dir)) != NULL) {
        if (lan_net_is_stale(entry->d_name)) {
            fprintf(stderr, "lan_net: deleting namespace %s of a run that "
                    "no longer exists\n", entry->d_name);
            lan_net_ip(net, "netns", "del", entry->d_name, NULL);
        }
    }
    closedir(dir);
}

/* Adds namespace name and opens its handle into *fd. */
static int
lan_net_add_namespace(const lan_net *net, const char *name, int *fd,
                      char *reason, size_t reason_len)
{
    const char *args[] = {"netns", "add", name, NULL};
    char path[LAN_NET_NAME_MAX + sizeof(LAN_NET_RUN_DIR) + 1];
    char out[LAN_NET_OUTPUT_MAX];

    if (lan_net_ip_argv(net, args, out, sizeof(out)) != 0) {
        snprintf(reason, reason_len, "`ip netns add %s` failed: %s", name,
                 out);
        return -1;
    }
    snprintf(path, sizeof(path), "%s/%s", LAN_NET_RUN_DIR, name);
    *fd = open(path, O_RDONLY | O_CLOEXEC);
    if (*fd < 0) {
        snprintf(reason, reason_len, "open %s failed: %s", path,
                 strerror(errno));
        return -1;
    }
    return 0;
}

static int
lan_net_make_switch(lan_net *net, char *reason, size_t reason_len)
{
    char name[LAN_NET_NAME_MAX];
    int fd = -1;

    lan_net_switch_name(net, name, sizeof(name));
    if (lan_net_add_namespace(net, name, &fd, reason, reason_len) != 0) {
        return -1;
    }
    close(fd); /* only ip needs the switch's namespace */
    net->switch_created = true;

    /* forward_delay 0: a port that comes up forwards at once. */
    if (lan_net_ip(net, "-n", name, "link", "add", "br0", "type", "bridge",
                   "forward_delay", "0", NULL) != 0 ||
        lan_net_ip(net, "-n", name, "link", "set", "br0", "up", NULL) != 0) {
        snprintf(reason, reason_len, "creating the bridge in %s failed "
                 "(see the ip output above)", name);
        return -1;
    }
    return 0;
}

/* Creates host's namespace, its veth pair to the bridge, and its address. */
static int
lan_net_make_host(lan_net *net, int host, char *reason, size_t reason_len)
{
    char sw[LAN_NET_NAME_MAX];
    char name[LAN_NET_NAME_MAX];
    char port[16];
    char address[32];

    lan_net_switch_name(net, sw, sizeof(sw));
    lan_net_host_name(net, host, name, sizeof(name));
    if (lan_net_add_namespace(net, name, &net->host_fd[host], reason,
                              reason_len) != 0) {
        return -1;
    }
    net->host_created[host] = true;

    snprintf(port, sizeof(port), "p%d", host);
    snprintf(address, sizeof(address), "%s.%d/24", LAN_NET_PREFIX, host + 1);
    if (lan_net_ip(net, "-n", sw, "link", "add", port, "type", "veth",
                   "peer", "name", "eth0", "netns", name, NULL) != 0 ||
        lan_net_ip(net, "-n", sw, "link", "set", port, "master", "br0", "up",
                   NULL) != 0 ||
        lan_net_ip(net, "-n", name, "addr", "add", address, "dev", "eth0",
                   NULL) != 0 ||
        lan_net_ip(net, "-n", name, "link", "set", "eth0", "up", NULL) != 0 ||
        lan_net_ip(net, "-n", name, "link", "set", "lo", "up", NULL) != 0) {
        snprintf(reason, reason_len, "connecting host %s to the switch "
                 "failed (see the ip output above)", name);
        return -1;
    }
    return 0;
}

static void
lan_net_reset(lan_net *net)
{
    memset(net, 0, sizeof(*net));
    net->home_fd = -1;
    net->current = LAN_NET_HOME;
    for (int i = 0; i < LAN_NET_MAX_HOSTS; i++) {
        net->host_fd[i] = -1;
    }
}

/* Checks what creating namespaces needs, before anything is created. */
static bool
lan_net_permitted(lan_net *net, char *reason, size_t reason_len)
{
    if (geteuid() != 0) {
        snprintf(reason, reason_len, "creating network namespaces needs "
                 "root, and this test runs as uid %d", (int)geteuid());
        return false;
    }
    if (!lan_net_find_ip(net)) {
        snprintf(reason, reason_len, "the ip command of iproute2 is not "
                 "installed");
        return false;
    }
    net->home_fd = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    if (net->home_fd < 0) {
        snprintf(reason, reason_len, "open /proc/thread-self/ns/net failed: "
                 "%s", strerror(errno));
        return false;
    }
    return true;
}

lan_net_status
lan_net_create(lan_net *net, int host_count, char *reason, size_t reason_len)
{
    lan_net_reset(net);
    snprintf(net->prefix, sizeof(net->prefix), "%s%d", LAN_NET_NAME_PREFIX,
             (int)getpid());
    if (host_count < 1 || host_count > LAN_NET_MAX_HOSTS) {
        snprintf(reason, reason_len, "host_count %d is not within 1..%d",
                 host_count, LAN_NET_MAX_HOSTS);
        return LAN_NET_FAILED;
    }
    if (!lan_net_permitted(net, reason, reason_len)) {
        lan_net_destroy(net);
        return LAN_NET_NOT_PERMITTED;
    }
    net->host_count = host_count;
    lan_net_remove_stale(net);

    /* The first `ip netns add` shows whether namespaces are allowed here
     * (a container without CAP_SYS_ADMIN rejects it). */
    if (lan_net_make_switch(net, reason, reason_len) != 0) {
        lan_net_status status = net->switch_created ? LAN_NET_FAILED
                                                    : LAN_NET_NOT_PERMITTED;

        lan_net_destroy(net);
        return status;
    }
    for (int i = 0; i < host_count; i++) {
        if (lan_net_make_host(net, i, reason, reason_len) != 0) {
            lan_net_destroy(net);
            return LAN_NET_FAILED;
        }
    }
    return LAN_NET_READY;
}

void
lan_net_destroy(lan_net *net)
{
    char name[LAN_NET_NAME_MAX];

    if (net->home_fd >= 0) {
        if (net->current != LAN_NET_HOME) {
            lan_net_enter(net, LAN_NET_HOME);
        }
        close(net->home_fd);
        net->home_fd = -1;
    }
    for (int i = 0; i < LAN_NET_MAX_HOSTS; i++) {
        if (net->host_fd[i] >= 0) {
            close(net->host_fd[i]);
            net->host_fd[i] = -1;
        }
        if (net->host_created[i]) {
            lan_net_host_name(net, i, name, sizeof(name));
            lan_net_ip(net, "netns", "del", name, NULL);
            net->host_created[i] = false;
        }
    }
    /* Deleting the switch's namespace removes the bridge and the veth
     * pairs, whose host ends go with their switch ends. */
    if (net->switch_created) {
        lan_net_switch_name(net, name, sizeof(name));
        lan_net_ip(net, "netns", "del", name, NULL);
        net->switch_created = false;
    }
}

int
lan_net_enter(lan_net *net, int host)
{
    int fd;

    if (host == LAN_NET_HOME) {
        fd = net->home_fd;
    } else if (host >= 0 && host < net->host_count) {
        fd = net->host_fd[host];
    } else {
        fprintf(stderr, "lan_net: no host %d\n", host);
        return -1;
    }
    if (setns(fd, CLONE_NEWNET) != 0) {
        fprintf(stderr, "lan_net: setns into host %d failed: %s\n", host,
                strerror(errno));
        return -1;
    }
    net->current = host;
    return 0;
}

int
lan_net_set_link(lan_net *net, int host, bool up)
{
    char sw[LAN_NET_NAME_MAX];
    char port[16];

    lan_net_switch_name(net, sw, sizeof(sw));
    snprintf(port, sizeof(port), "p%d", host);
    return lan_net_ip(net, "-n", sw, "link", "set", port, up ? "up" : "down",
                      NULL);
}
