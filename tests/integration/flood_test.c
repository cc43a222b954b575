/*
 * A pipnode under a flood of bad traffic keeps serving good calls.  One
 * client makes counters.ping and write_counter calls and checks every
 * reply.  Meanwhile other threads send random bytes on req sockets and
 * messages just over --max-msg-bytes.  They also leave raw TCP
 * connections open after half an SP header or half a message, and open
 * and close connections in a loop.  Every flood is bounded in count and
 * in time.  Afterwards the node must reply to describe, return to about
 * the number of open file descriptors it had before, and exit 0 on SIGTERM
 * with a log free of sanitizer reports.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>

#include "harness.h"
#include "pip/client.h"

#define FLOOD_MAX_MSG_BYTES 4096
#define FLOOD_DURATION_MS 10000
#define FLOOD_GOOD_TIMEOUT_MS 5000
#define FLOOD_GARBAGE_THREADS 2
#define FLOOD_GARBAGE_MAX 3000     /* messages per garbage thread */
#define FLOOD_GARBAGE_MAX_BYTES 1024
#define FLOOD_OVERSIZE_MAX 200     /* oversized messages in all */
#define FLOOD_HALF_OPEN_MAX 60     /* connections left open at once */
#define FLOOD_CHURN_MAX 500        /* connections opened and closed */
#define FLOOD_IO_TIMEOUT_MS 3000   /* raw socket waits */
#define FLOOD_FD_SLACK 8           /* fds above the baseline still "near" */
#define FLOOD_FD_SETTLE_MS 10000   /* time allowed to close flood fds */

/* SP header of a REQ peer: "\0SP\0", protocol 0x0030, two zero bytes. */
static const uint8_t flood_sp_req_header[8] = {0x00, 0x53, 0x50, 0x00,
                                               0x00, 0x30, 0x00, 0x00};

/* State shared by the flood threads.  Each writes only its own fields. */
typedef struct flood_run {
    const char *url; /* the node's URL, tcp://127.0.0.1:<port> */
    int port;
    uint32_t seed;
    int64_t deadline_ms;    /* every flood thread stops here */

    /* good caller */
    int good_calls;
    int good_failures;
    char good_error[1024];  /* the first failure */

    /* garbage on req sockets, per thread */
    int garbage_sent[FLOOD_GARBAGE_THREADS];
    int garbage_replied[FLOOD_GARBAGE_THREADS];
    int garbage_bad_replies[FLOOD_GARBAGE_THREADS];
    int garbage_setup_failed[FLOOD_GARBAGE_THREADS];

    /* oversized messages over raw TCP */
    int oversize_sent;
    int oversize_closed;    /* the node closed the connection after it */
    int oversize_replied;   /* the node sent bytes back, which is wrong */

    /* half-open connections */
    pid_t node_pid;
    int half_open_peak;
    int fds_while_half_open; /* the node's fds with all of them open */
    int half_open_failed;

    /* connect and close loop */
    int churn_done;
    int churn_failed;
} flood_run;

typedef struct flood_garbage_arg {
    flood_run *run;
    int index;
} flood_garbage_arg;

typedef struct flood_fixture {
    harness *h; /* the first member, as harness_fixture_new requires */
    harness_node node;
    flood_run run;
} flood_fixture;

/* A small deterministic generator, so a failure can be replayed. */
static uint32_t
flood_random(uint32_t *state)
{
    *state ^= *state << 13;
    *state ^= *state >> 17;
    *state ^= *state << 5;
    return *state;
}

static bool
flood_time_left(const flood_run *run)
{
    return harness_now_ms() < run->deadline_ms;
}

/* Open file descriptors of a process, from /proc/<pid>/fd, or -1. */
static int
flood_count_fds(pid_t pid)
{
    char path[64];
    DIR *dir;
    struct dirent *entry;
    int count = 0;

    snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
    dir = opendir(path);
    if (dir == NULL) {
        return -1;
    }
    while ((entry = readdir(dir)) != NULL) {
        if (entry->d_name[0] != '.') {
            count++;
        }
    }
    closedir(dir);
    return count;
}

/* ---- raw TCP ------------------------------------------------------------ */

/* A blocking TCP connection to 127.0.0.1:port, or -1. */
static int
flood_tcp_connect(int port)
{
    struct sockaddr_in addr;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    if (fd < 0) {
        return -1;
    }
    memset(&addr, 0, sizeof(addr));
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Writes all of buf.  Returns false when the peer closed or on an error. */
static bool
flood_write_all(int fd, const void *buf, size_t len)
{
    const uint8_t *p = buf;

    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);

        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return false;
        }
        p += n;
        len -= (size_t)n;
    }
    return true;
}

/*
 * Reads up to len bytes, waiting at most timeout_ms in all.  Returns the
 * count read, 0 when the peer closed before any byte came, or -1 on a
 * timeout or an error such as a reset.
 */
static ssize_t
flood_read_some(int fd, void *buf, size_t len, int timeout_ms)
{
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    int rv = poll(&pfd, 1, timeout_ms);

    if (rv <= 0) {
        return -1;
    }
    return recv(fd, buf, len, 0);
}

/* Sends the REQ header and reads the node's 8-byte REP header. */
static bool
flood_sp_handshake(int fd)
{
    uint8_t peer[8];
    size_t got = 0;

    if (!flood_write_all(fd, flood_sp_req_header,
                         sizeof(flood_sp_req_header))) {
        return false;
    }
    while (got < sizeof(peer)) {
        ssize_t n = flood_read_some(fd, peer + got, sizeof(peer) - got,
                                    FLOOD_IO_TIMEOUT_MS);

        if (n <= 0) {
            return false;
        }
        got += (size_t)n;
    }
    return peer[1] == 'S' && peer[2] == 'P' && peer[5] == 0x31;
}

static void
flood_put_be64(uint8_t *out, uint64_t value)
{
    for (int i = 7; i >= 0; i--) {
        out[i] = (uint8_t)(value & 0xff);
        value >>= 8;
    }
}

/* ---- good caller -------------------------------------------------------- */

static void
flood_good_fail(flood_run *run, const char *what, int rv,
                const pip_error *err)
{
    if (run->good_failures == 0) {
        snprintf(run->good_error, sizeof(run->good_error),
                 "call %d, %s: %s %s %s", run->good_calls, what,
                 pip_category_name(rv), err ? err->code : "",
                 err ? err->message : "");
    }
    run->good_failures++;
}

/* Makes one call and returns its result, or NULL after recording why. */
static json_t *
flood_good_call(flood_run *run, pip_client *client, const char *method,
                json_t *args)
{
    json_t *result = NULL;
    pip_error err;
    int64_t started = harness_now_ms();
    int64_t elapsed_ms;
    int rv;

    pip_error_init(&err);
    rv = pip_client_call(client, method, args, NULL, &result, &err);
    elapsed_ms = harness_now_ms() - started;
    run->good_calls++;
    if (rv != PIP_OK) {
        flood_good_fail(run, method, rv, &err);
    } else if (elapsed_ms > FLOOD_GOOD_TIMEOUT_MS) {
        flood_good_fail(run, "reply after the timeout", PIP_E_TIMEOUT, NULL);
    }
    pip_error_fini(&err);
    json_decref(args);
    return rv == PIP_OK ? result : NULL;
}

static void
flood_good_ping(flood_run *run, pip_client *client)
{
    json_t *result = flood_good_call(run, client, "counters.ping", NULL);

    json_decref(result);
}

/* An increment of flood.good, whose count must grow by one each call. */
static void
flood_good_increment(flood_run *run, pip_client *client, int64_t *count)
{
    json_t *args = json_pack("{s:{s:s, s:i, s:i}}", "counter", "name",
                             "flood.good", "type", 4, "count", 1);
    json_t *result = flood_good_call(run, client, "counters.write_counter",
                                     args);
    json_t *value = json_object_get(result, "count");

    if (result == NULL) {
        return;
    }
    if (!json_is_integer(value) ||
        json_integer_value(value) != *count + 1) {
        flood_good_fail(run, "write_counter returned a wrong count",
                        PIP_E_INTERNAL, NULL);
    } else {
        *count += 1;
    }
    json_decref(result);
}

static void *
flood_good_main(void *arg)
{
    flood_run *run = arg;
    pip_client *client =
        harness_client_new(run->url, NULL, FLOOD_GOOD_TIMEOUT_MS);
    int64_t count = 0;

    if (client == NULL) {
        flood_good_fail(run, "pip_client_new", PIP_E_INTERNAL, NULL);
        return NULL;
    }
    while (flood_time_left(run)) {
        flood_good_ping(run, client);
        flood_good_increment(run, client, &count);
    }
    pip_client_free(client);
    return NULL;
}

/* ---- garbage on req sockets ---------------------------------------------- */

/*
 * Fills buf with len random bytes.  About one message in three starts like
 * a request ([0, msgid, ...) so that the decoder gets past the first byte.
 */
static void
flood_fill_garbage(uint8_t *buf, size_t len, uint32_t *state)
{
    for (size_t i = 0; i < len; i++) {
        buf[i] = (uint8_t)flood_random(state);
    }
    if (len >= 3 && flood_random(state) % 3 == 0) {
        buf[0] = 0x94; /* fixarray of 4 */
        buf[1] = 0x00; /* type: request */
        buf[2] = 0x07; /* msgid */
    }
}

/*
 * Each reply to garbage is a batch of error responses, and each response
 * is [1, msgid, error, nil], so the reply starts with 0x94 0x01.
 */
static bool
flood_is_response(const nng_msg *msg)
{
    const uint8_t *body = nng_msg_body((nng_msg *)msg);

    return nng_msg_len(msg) >= 2 && body[0] == 0x94 && body[1] == 0x01;
}

static void
flood_garbage_send_one(flood_run *run, int index, nng_socket sock,
                       uint32_t *state)
{
    uint8_t buf[FLOOD_GARBAGE_MAX_BYTES];
    size_t len = 1 + flood_random(state) % FLOOD_GARBAGE_MAX_BYTES;
    nng_msg *reply = NULL;

    flood_fill_garbage(buf, len, state);
    if (nng_send(sock, buf, len, 0) != 0) {
        return;
    }
    run->garbage_sent[index]++;
    if (nng_recvmsg(sock, &reply, 0) != 0) {
        return;
    }
    run->garbage_replied[index]++;
    if (!flood_is_response(reply)) {
        run->garbage_bad_replies[index]++;
    }
    nng_msg_free(reply);
}

static void *
flood_garbage_main(void *arg)
{
    flood_garbage_arg *ga = arg;
    flood_run *run = ga->run;
    uint32_t state = run->seed + 7919u * (uint32_t)(ga->index + 1);
    nng_socket sock;

    if (nng_req0_open(&sock) != 0) {
        run->garbage_setup_failed[ga->index] = 1;
        return NULL;
    }
    if (nng_socket_set_ms(sock, NNG_OPT_RECVTIMEO, FLOOD_GOOD_TIMEOUT_MS) !=
            0 ||
        nng_socket_set_ms(sock, NNG_OPT_SENDTIMEO, FLOOD_IO_TIMEOUT_MS) !=
            0 ||
        nng_dial(sock, run->url, NULL, 0) != 0) {
        run->garbage_setup_failed[ga->index] = 1;
        nng_close(sock);
        return NULL;
    }
    for (int i = 0; i < FLOOD_GARBAGE_MAX && flood_time_left(run); i++) {
        flood_garbage_send_one(run, ga->index, sock, &state);
    }
    nng_close(sock);
    return NULL;
}

/* ---- oversized messages -------------------------------------------------- */

/*
 * Sends one message of max_msg_bytes + 1 to + 64 body bytes after a
 * proper handshake.  NNG drops it and closes the connection without a
 * reply, so the next read must see the close, not data.
 */
static void
flood_oversize_one(flood_run *run, uint32_t *state)
{
    uint8_t buf[8 + 4 + FLOOD_MAX_MSG_BYTES + 64];
    size_t body = FLOOD_MAX_MSG_BYTES + 1 + flood_random(state) % 64;
    uint8_t reply[64];
    ssize_t n;
    int fd = flood_tcp_connect(run->port);

    if (fd < 0) {
        return;
    }
    if (!flood_sp_handshake(fd)) {
        close(fd);
        return;
    }
    memset(buf, 0x5a, sizeof(buf));
    flood_put_be64(buf, 4 + body);
    buf[8] = 0x80; /* request id with its top bit set */
    run->oversize_sent++;
    /* The node may close while the body is still being written. */
    (void)flood_write_all(fd, buf, 8 + 4 + body);

    errno = 0;
    n = flood_read_some(fd, reply, sizeof(reply), FLOOD_IO_TIMEOUT_MS);
    if (n > 0) {
        run->oversize_replied++;
    } else if (n == 0 || errno == ECONNRESET) {
        run->oversize_closed++;
    }
    close(fd);
}

static void *
flood_oversize_main(void *arg)
{
    flood_run *run = arg;
    uint32_t state = run->seed ^ 0x9e3779b9u;

    for (int i = 0; i < FLOOD_OVERSIZE_MAX && flood_time_left(run); i++) {
        flood_oversize_one(run, &state);
    }
    return NULL;
}

/* ---- half-open connections ----------------------------------------------- */

/*
 * Opens a connection and leaves it in one of three unfinished states: 3
 * bytes of the SP header, a handshake with 4 bytes of a length, or a
 * handshake with a 100-byte message cut after 50 bytes.  Returns the fd,
 * or -1.
 */
static int
flood_half_open_one(flood_run *run, int kind)
{
    uint8_t msg[8 + 50];
    int fd = flood_tcp_connect(run->port);
    bool ok;

    if (fd < 0) {
        return -1;
    }
    if (kind == 0) {
        ok = flood_write_all(fd, flood_sp_req_header, 3);
    } else {
        memset(msg, 0x33, sizeof(msg));
        flood_put_be64(msg, 100);
        ok = flood_sp_handshake(fd) &&
             flood_write_all(fd, msg, kind == 1 ? 4 : sizeof(msg));
    }
    if (!ok) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Holds every half-open connection until the flood ends, then closes. */
static void *
flood_half_open_main(void *arg)
{
    flood_run *run = arg;
    int fds[FLOOD_HALF_OPEN_MAX];
    int count = 0;

    for (int i = 0; i < FLOOD_HALF_OPEN_MAX && flood_time_left(run); i++) {
        int fd = flood_half_open_one(run, i % 3);

        if (fd < 0) {
            run->half_open_failed++;
            continue;
        }
        fds[count++] = fd;
    }
    run->half_open_peak = count;
    run->fds_while_half_open = flood_count_fds(run->node_pid);
    while (flood_time_left(run)) {
        harness_sleep_ms(50);
    }
    for (int i = 0; i < count; i++) {
        close(fds[i]);
    }
    return NULL;
}

/* ---- connect and close loop ---------------------------------------------- */

/*
 * Opens and closes connections as fast as it can.  Even iterations close
 * right after connect; odd ones send the SP header first.
 */
static void *
flood_churn_main(void *arg)
{
    flood_run *run = arg;

    for (int i = 0; i < FLOOD_CHURN_MAX && flood_time_left(run); i++) {
        int fd = flood_tcp_connect(run->port);

        if (fd < 0) {
            run->churn_failed++;
            continue;
        }
        if (i % 2 == 1) {
            (void)flood_write_all(fd, flood_sp_req_header,
                                  sizeof(flood_sp_req_header));
        }
        close(fd);
        run->churn_done++;
    }
    return NULL;
}

/* ---- fixture ------------------------------------------------------------- */

static int
flood_setup(void **state)
{
    flood_fixture *f = harness_fixture_new(sizeof(*f));

    *state = f;
    if (f == NULL || !harness_node_init(f->h, &f->node, "node")) {
        return -1;
    }
    f->run.url = f->node.url;
    f->run.port = f->node.port;
    return 0;
}

static void
flood_start_node(flood_fixture *f)
{
    char max_bytes[16];

    snprintf(max_bytes, sizeof(max_bytes), "%d", FLOOD_MAX_MSG_BYTES);
    assert_true(harness_node_start(
        f->h, &f->node,
        HARNESS_NODE_ARGS("counters", "--max-msg-bytes", max_bytes),
        "counters.ping", 15000));
}

/* Runs every flood thread and the good caller until all are done. */
static void
flood_run_threads(flood_run *run)
{
    pthread_t good, oversize, half_open, churn;
    pthread_t garbage[FLOOD_GARBAGE_THREADS];
    flood_garbage_arg garbage_args[FLOOD_GARBAGE_THREADS];

    run->deadline_ms = harness_now_ms() + FLOOD_DURATION_MS;
    assert_int_equal(pthread_create(&good, NULL, flood_good_main, run), 0);
    for (int i = 0; i < FLOOD_GARBAGE_THREADS; i++) {
        garbage_args[i].run = run;
        garbage_args[i].index = i;
        assert_int_equal(pthread_create(&garbage[i], NULL,
                                        flood_garbage_main,
                                        &garbage_args[i]),
                         0);
    }
    assert_int_equal(
        pthread_create(&oversize, NULL, flood_oversize_main, run), 0);
    assert_int_equal(
        pthread_create(&half_open, NULL, flood_half_open_main, run), 0);
    assert_int_equal(pthread_create(&churn, NULL, flood_churn_main, run),
                     0);

    pthread_join(good, NULL);
    for (int i = 0; i < FLOOD_GARBAGE_THREADS; i++) {
        pthread_join(garbage[i], NULL);
    }
    pthread_join(oversize, NULL);
    pthread_join(half_open, NULL);
    pthread_join(churn, NULL);
}

static void
flood_print_summary(const flood_run *run)
{
    int sent = 0, replied = 0;

    for (int i = 0; i < FLOOD_GARBAGE_THREADS; i++) {
        sent += run->garbage_sent[i];
        replied += run->garbage_replied[i];
    }
    print_message("seed %u: %d good calls, %d garbage messages (%d "
                  "replies), %d oversized (%d closed), %d half-open, %d "
                  "connect-close\n",
                  run->seed, run->good_calls, sent, replied,
                  run->oversize_sent, run->oversize_closed,
                  run->half_open_peak, run->churn_done);
}

static void
flood_check_good(const flood_run *run)
{
    if (run->good_failures > 0) {
        fail_msg("%d of %d good calls failed during the flood; first: %s",
                 run->good_failures, run->good_calls, run->good_error);
    }
    assert_true(run->good_calls > 10);
}

static void
flood_check_garbage(const flood_run *run)
{
    for (int i = 0; i < FLOOD_GARBAGE_THREADS; i++) {
        assert_int_equal(run->garbage_setup_failed[i], 0);
        assert_true(run->garbage_sent[i] > 0);
        /* Garbage under the size limit always gets an error response. */
        assert_int_equal(run->garbage_replied[i], run->garbage_sent[i]);
        assert_int_equal(run->garbage_bad_replies[i], 0);
    }
}

static void
flood_check_raw(const flood_run *run)
{
    assert_true(run->oversize_sent > 0);
    assert_int_equal(run->oversize_replied, 0);
    assert_int_equal(run->oversize_closed, run->oversize_sent);
    assert_int_equal(run->half_open_failed, 0);
    assert_int_equal(run->half_open_peak, FLOOD_HALF_OPEN_MAX);
    assert_int_equal(run->churn_failed, 0);
    assert_true(run->churn_done > 0);
}

/* Polls until the node's fd count is near baseline, or fails. */
static void
flood_check_fds(pid_t pid, int baseline, int fds_while_half_open)
{
    int64_t deadline = harness_now_ms() + FLOOD_FD_SETTLE_MS;
    int now = flood_count_fds(pid);

    while (now > baseline + FLOOD_FD_SLACK && harness_now_ms() < deadline) {
        harness_sleep_ms(100);
        now = flood_count_fds(pid);
    }
    if (now < 0 || now > baseline + FLOOD_FD_SLACK) {
        fail_msg("the node has %d open fds %d s after the flood, %d before "
                 "it (allowed: %d more)",
                 now, FLOOD_FD_SETTLE_MS / 1000, baseline, FLOOD_FD_SLACK);
    }
    print_message("node fds: %d before the flood, %d with the half-open "
                  "connections, %d after\n",
                  baseline, fds_while_half_open, now);
}

static void
flood_check_describe(const char *url)
{
    pip_client *client = harness_client_new(url, NULL, FLOOD_GOOD_TIMEOUT_MS);
    json_t *result = NULL;
    pip_error err;
    int rv;

    assert_non_null(client);
    pip_error_init(&err);
    rv = pip_client_call(client, "counters.describe", NULL, NULL, &result,
                         &err);
    if (rv != PIP_OK) {
        fail_msg("counters.describe after the flood failed: %s %s",
                 err.code, err.message);
    }
    assert_string_equal(json_string_value(json_object_get(result, "name")),
                        "counters");
    json_decref(result);
    pip_error_fini(&err);
    pip_client_free(client);
}

/* ---- tests --------------------------------------------------------------- */

static void
test_node_survives_flood(void **state)
{
    flood_fixture *f = *state;
    int baseline;

    f->run.seed = (uint32_t)harness_now_ms() | 1u;
    print_message("flood seed %u\n", f->run.seed);
    flood_start_node(f);
    f->run.node_pid = f->node.proc->pid;
    baseline = flood_count_fds(f->node.proc->pid);
    assert_true(baseline > 0);

    flood_run_threads(&f->run);
    flood_print_summary(&f->run);

    flood_check_good(&f->run);
    flood_check_garbage(&f->run);
    flood_check_raw(&f->run);
    flood_check_fds(f->node.proc->pid, baseline, f->run.fds_while_half_open);
    flood_check_describe(f->run.url);

    assert_int_equal(harness_stop(f->node.proc, HARNESS_STOP_TIMEOUT_MS), 0);
    assert_true(harness_logs_clean(f->h));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_node_survives_flood, flood_setup,
                                        harness_teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
