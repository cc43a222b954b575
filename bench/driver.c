/* The load driver of driver.h: contexts, aios, pacing and counting. */
#include "driver.h"

#include <errno.h>
#include <inttypes.h>
#include <msgpack.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "pip/wire.h"

#define DRIVER_POLL_MS 50
#define DRIVER_PROGRESS_MS 250
#define DRIVER_DRAIN_GRACE_MS 2000

enum driver_phase { DRIVER_WARMUP, DRIVER_MEASURE, DRIVER_DRAIN };
enum driver_step { STEP_IDLE, STEP_SEND, STEP_RECV };

typedef struct driver driver;

/* One outstanding call: a context on a socket of each target. */
typedef struct driver_slot {
    driver *drv;
    nng_aio *aio;
    nng_ctx ctx[BENCH_MAX_TARGETS];
    bool ctx_open[BENCH_MAX_TARGETS];
    enum driver_step step;
    int target;        /* target of the call in flight */
    uint64_t start_ns; /* due time (open loop) or send time */
    uint64_t msgid;
    size_t sent_bytes;
    bool measured;
    uint64_t rng;
    uint8_t nonce[PIP_SEAL_NONCE_BYTES]; /* of the sealed request */
} driver_slot;

struct driver {
    const bench_run_config *cfg;
    int target_count;
    nng_socket socks[BENCH_MAX_TARGETS][BENCH_MAX_SOCKETS];
    bool sock_open[BENCH_MAX_TARGETS][BENCH_MAX_SOCKETS];
    driver_slot *slots;
    int slot_count;

    _Atomic int phase;
    atomic_bool stopping;
    atomic_int busy;               /* slots with a call in flight */
    atomic_uint_fast64_t issued;   /* calls sent, warm-up included */
    atomic_uint_fast64_t measured_issued;
    atomic_uint_fast64_t completed;
    atomic_uint_fast64_t failed;
    atomic_size_t request_bytes;
    uint64_t measure_start_ns;

    pthread_mutex_t lock;          /* guards what follows */
    pthread_cond_t slot_freed;
    driver_slot **free_slots;      /* open loop: idle slots */
    int free_count;
    bench_result *res;
    uint64_t last_done_ns;
};

uint64_t
bench_now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void
bench_run_config_init(bench_run_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->concurrency = 1;
    cfg->sockets = 1;
    cfg->warmup_ms = 1000;
    cfg->duration_ms = 5000;
    cfg->timeout_ms = 10000;
    cfg->max_msg_bytes = 1024 * 1024;
    cfg->label = "run";
}

void
bench_result_init(bench_result *res)
{
    memset(res, 0, sizeof(*res));
}

void
bench_result_fini(bench_result *res)
{
    bench_hist_free(res->hist);
    bench_result_init(res);
}

/* Adds count failures under code to the table of codes; codes past the
 * table count as OTHER. */
static void
driver_add_error_code(bench_result *res, const char *code, uint64_t count)
{
    int i;

    for (i = 0; i < res->error_code_count; i++) {
        if (strcmp(res->error_codes[i].code, code) == 0) {
            res->error_codes[i].count += count;
            return;
        }
    }
    if (i == BENCH_MAX_ERROR_CODES) {
        code = "OTHER";
        i--;
    } else {
        res->error_code_count++;
    }
    snprintf(res->error_codes[i].code, PIP_CODE_MAX, "%s", code);
    res->error_codes[i].count += count;
}

/* Adds one failure under code. */
static void
driver_count_error(bench_result *res, const char *code)
{
    res->errors++;
    driver_add_error_code(res, code, 1);
}

int
bench_result_merge(bench_result *dst, const bench_result *src,
                   pip_error *err)
{
    if (dst->hist == NULL && (dst->hist = bench_hist_new()) == NULL) {
        return pip_error_set(err, PIP_E_INTERNAL, "OUT_OF_MEMORY",
                             "Out of memory.");
    }
    if (src->hist != NULL) {
        bench_hist_merge(dst->hist, src->hist);
    }
    dst->calls += src->calls;
    dst->errors += src->errors;
    dst->warmup_calls += src->warmup_calls;
    dst->sent_calls += src->sent_calls;
    dst->elapsed_s += src->elapsed_s;
    dst->calls_per_s =
        dst->elapsed_s > 0 ? (double)dst->calls / dst->elapsed_s : 0;
    if (src->request_bytes > dst->request_bytes) {
        dst->request_bytes = src->request_bytes;
    }
    for (int i = 0; i < src->error_code_count; i++) {
        driver_add_error_code(dst, src->error_codes[i].code,
                              src->error_codes[i].count);
    }
    return PIP_OK;
}

static const char *
driver_nng_code(int rv)
{
    switch (rv) {
    case NNG_ETIMEDOUT:
        return "TIMEOUT";
    case NNG_ECLOSED:
    case NNG_ECANCELED:
        return "CANCELED";
    case NNG_ECONNREFUSED:
    case NNG_ECONNRESET:
    case NNG_ECONNSHUT:
        return "CONNECTION_FAILED";
    case NNG_EMSGSIZE:
        return "MESSAGE_TOO_LARGE";
    default:
        return "TRANSPORT_ERROR";
    }
}

/*
 * Decides whether one more call may start, and whether it is measured.
 * In count mode the call that would pass call_count stops the run.
 */
static bool
driver_take_call(driver *drv, bool *measured)
{
    if (atomic_load(&drv->stopping)) {
        return false;
    }
    *measured = atomic_load(&drv->phase) == DRIVER_MEASURE;
    if (*measured && drv->cfg->call_count > 0 &&
        atomic_fetch_add(&drv->measured_issued, 1) >= drv->cfg->call_count) {
        atomic_store(&drv->stopping, true);
        return false;
    }
    return true;
}

/* The request bytes as a message, sealed when the keyring has a network
 * key, as pip_client sends them. */
static nng_msg *
driver_message(const pip_keyring *kr, const char *data, size_t len,
               uint8_t nonce[PIP_SEAL_NONCE_BYTES])
{
    size_t cap = len + pip_seal_overhead(kr);
    size_t sealed_len = 0;
    nng_msg *msg = NULL;

    if (nng_msg_alloc(&msg, cap) != 0) {
        return NULL;
    }
    if (!pip_keyring_sealing(kr)) {
        memcpy(nng_msg_body(msg), data, len);
        return msg;
    }
    if (pip_seal(kr, PIP_SEAL_REQUEST, NULL, 0, (const uint8_t *)data, len,
                 nng_msg_body(msg), &sealed_len, nonce) != PIP_OK) {
        nng_msg_free(msg);
        return NULL;
    }
    nng_msg_chop(msg, cap - sealed_len);
    return msg;
}

/* Builds the request of one call: a workload command, or echo bytes. */
static nng_msg *
driver_build(driver_slot *slot)
{
    const bench_run_config *cfg = slot->drv->cfg;
    msgpack_sbuffer buf;
    msgpack_packer pk;
    const bench_command *cmd;
    nng_msg *msg = NULL;
    json_t *args;

    slot->target = 0;
    if (cfg->workload == NULL) {
        if (nng_msg_alloc(&msg, cfg->raw_msg_bytes) == 0) {
            memset(nng_msg_body(msg), 0xa5, cfg->raw_msg_bytes);
        }
        return msg;
    }
    cmd = bench_workload_pick(cfg->workload,
                              (uint32_t)bench_rng_next(&slot->rng));
    /* Shared arguments are only read here: no reference counting across
     * the callback threads. */
    args = cmd->has_placeholders
               ? bench_args_expand(cmd, slot->msgid, &slot->rng)
               : cmd->args;
    if (args == NULL) {
        return NULL;
    }
    slot->target = cmd->target;
    msgpack_sbuffer_init(&buf);
    msgpack_packer_init(&pk, &buf, msgpack_sbuffer_write);
    if (pip_request_pack(&pk, slot->msgid, cmd->method, args, NULL) == 0) {
        msg = driver_message(cfg->keyring, buf.data, buf.size, slot->nonce);
    }
    msgpack_sbuffer_destroy(&buf);
    if (cmd->has_placeholders) {
        json_decref(args);
    }
    return msg;
}

static void driver_finish(driver_slot *slot, const char *error_code);

/* Starts the next call on slot; due_ns is 0 in the closed loop. */
static void
driver_issue(driver_slot *slot, uint64_t due_ns)
{
    driver *drv = slot->drv;
    nng_msg *msg;
    bool measured;

    if (!driver_take_call(drv, &measured)) {
        driver_finish(slot, NULL);
        return;
    }
    slot->measured = measured;
    slot->msgid = atomic_fetch_add(&drv->issued, 1);
    msg = driver_build(slot);
    slot->start_ns = due_ns != 0 ? due_ns : bench_now_ns();
    if (msg == NULL) {
        slot->step = STEP_IDLE;
        driver_finish(slot, "OUT_OF_MEMORY");
        return;
    }
    slot->sent_bytes = nng_msg_len(msg);
    atomic_store(&drv->request_bytes, slot->sent_bytes);
    slot->step = STEP_SEND;
    nng_aio_set_msg(slot->aio, msg);
    nng_ctx_send(slot->ctx[slot->target], slot->aio);
}

/* Replaces a sealed reply by its plain bytes. */
static int
driver_open_reply(driver_slot *slot, nng_msg **msg)
{
    size_t len = nng_msg_len(*msg);
    size_t plain_len = 0;
    nng_msg *plain = NULL;
    pip_error err;
    int rv;

    if (nng_msg_alloc(&plain, len) != 0) {
        return PIP_E_INTERNAL;
    }
    pip_error_init(&err);
    rv = pip_open(slot->drv->cfg->keyring, PIP_SEAL_REPLY, slot->nonce,
                  sizeof(slot->nonce), nng_msg_body(*msg), len,
                  nng_msg_body(plain), &plain_len, NULL, NULL, &err);
    pip_error_fini(&err);
    if (rv != PIP_OK) {
        nng_msg_free(plain);
        return rv;
    }
    nng_msg_chop(plain, len - plain_len);
    nng_msg_free(*msg);
    *msg = plain;
    return PIP_OK;
}

/* Checks a reply; returns NULL when it is a success, else an error code. */
static const char *
driver_check_reply(driver_slot *slot, nng_msg **reply, char *code,
                   size_t code_size)
{
    nng_msg *msg = *reply;
    const bench_run_config *cfg = slot->drv->cfg;
    pip_response resp;
    pip_limits limits;
    pip_error err;
    size_t consumed;
    const char *result = NULL;

    if (cfg->workload == NULL) {
        return nng_msg_len(msg) == slot->sent_bytes ? NULL : "ECHO_MISMATCH";
    }
    pip_limits_default(&limits);
    limits.max_msg_bytes = cfg->max_msg_bytes;
    pip_error_init(&err);
    pip_response_init(&resp);
    if (pip_keyring_sealing(cfg->keyring) &&
        driver_open_reply(slot, reply) != PIP_OK) {
        result = "AUTH_FAILED";
    } else if ((msg = *reply) == NULL) {
        result = "INVALID_RESPONSE";
    } else if (pip_response_decode(nng_msg_body(msg), nng_msg_len(msg), &limits,
                            &resp, &consumed, &err) != PIP_OK) {
        result = "INVALID_RESPONSE";
    } else if (resp.failed) {
        snprintf(code, code_size, "%s", resp.error.code);
        result = code;
    } else if (resp.msgid != slot->msgid) {
        result = "MSGID_MISMATCH";
    }
    pip_response_fini(&resp);
    pip_error_fini(&err);
    return result;
}

/* Counts a completed call and hands the slot to its next call. */
static void
driver_complete(driver_slot *slot, const char *error_code)
{
    driver *drv = slot->drv;
    uint64_t now = bench_now_ns();
    bench_result *res = drv->res;

    pthread_mutex_lock(&drv->lock);
    if (slot->measured) {
        res->calls++;
        bench_hist_record(res->hist, now - slot->start_ns);
        if (error_code != NULL) {
            driver_count_error(res, error_code);
        }
        drv->last_done_ns = now;
    } else {
        res->warmup_calls++;
    }
    pthread_mutex_unlock(&drv->lock);
    atomic_fetch_add(&drv->completed, 1);
    if (error_code != NULL) {
        atomic_fetch_add(&drv->failed, 1);
    }

    slot->step = STEP_IDLE;
    if (drv->cfg->rate_per_s > 0) {
        driver_finish(slot, NULL);
    } else {
        driver_issue(slot, 0);
    }
}

/*
 * Takes slot out of service: in the open loop it goes back to the free
 * list, in the closed loop the run ends for it.  An error_code here is a
 * call that could not be built, counted like a failed call.
 */
static void
driver_finish(driver_slot *slot, const char *error_code)
{
    driver *drv = slot->drv;

    pthread_mutex_lock(&drv->lock);
    if (error_code != NULL && slot->measured) {
        driver_count_error(drv->res, error_code);
    }
    if (drv->cfg->rate_per_s > 0) {
        drv->free_slots[drv->free_count++] = slot;
        pthread_cond_signal(&drv->slot_freed);
    }
    pthread_mutex_unlock(&drv->lock);
    atomic_fetch_sub(&drv->busy, 1);
}

static void
driver_callback(void *arg)
{
    driver_slot *slot = arg;
    int rv = nng_aio_result(slot->aio);
    char code[PIP_CODE_MAX];
    const char *error_code;
    nng_msg *msg;

    if (slot->step == STEP_SEND) {
        if (rv != 0) {
            nng_msg_free(nng_aio_get_msg(slot->aio));
            driver_complete(slot, driver_nng_code(rv));
            return;
        }
        slot->step = STEP_RECV;
        nng_ctx_recv(slot->ctx[slot->target], slot->aio);
        return;
    }
    if (rv != 0) {
        driver_complete(slot, driver_nng_code(rv));
        return;
    }
    msg = nng_aio_get_msg(slot->aio);
    error_code = driver_check_reply(slot, &msg, code, sizeof(code));
    nng_msg_free(msg);
    driver_complete(slot, error_code);
}

static int
driver_validate(const bench_run_config *cfg, pip_error *err)
{
    if (cfg->concurrency < 1 || cfg->concurrency > BENCH_MAX_CONCURRENCY) {
        return pip_error_set(err, PIP_E_BAD_REQUEST, "INVALID_DATA",
                             "The concurrency must be from 1 to %d, not %d.",
                             BENCH_MAX_CONCURRENCY, cfg->concurrency);
    }
    if (cfg->sockets < 1 || cfg->sockets > BENCH_MAX_SOCKETS) {
        return pip_error_set(err, PIP_E_BAD_REQUEST, "INVALID_DATA",
                             "The socket count must be from 1 to %d, not %d.",
                             BENCH_MAX_SOCKETS, cfg->sockets);
    }
    if (cfg->workload == NULL && cfg->raw_msg_bytes == 0) {
        return pip_error_set(err, PIP_E_BAD_REQUEST, "INVALID_DATA",
                             "An echo run needs a message size above 0.");
    }
    if (cfg->call_count == 0 && cfg->duration_ms == 0) {
        return pip_error_set(err, PIP_E_BAD_REQUEST, "INVALID_DATA",
                             "A run needs a duration or a call count.");
    }
    return PIP_OK;
}

static int
driver_dial(driver *drv, int target, int index, pip_error *err)
{
    const char *url = drv->cfg->urls[target];
    nng_socket *sock = &drv->socks[target][index];
    int rv;

    rv = nng_req0_open(sock);
    if (rv != 0) {
        return pip_error_set(err, PIP_E_INTERNAL, "NNG_ERROR",
                             "Cannot open a req socket: %s.",
                             nng_strerror(rv));
    }
    drv->sock_open[target][index] = true;
    /* A resent request would run twice and skew the server's counts. */
    nng_socket_set_ms(*sock, NNG_OPT_REQ_RESENDTIME, NNG_DURATION_INFINITE);
    nng_socket_set_size(*sock, NNG_OPT_RECVMAXSZ, drv->cfg->max_msg_bytes);
    rv = nng_dial(*sock, url, NULL, 0);
    if (rv != 0) {
        return pip_error_set(err, PIP_E_UNAVAILABLE, "CONNECTION_FAILED",
                             "Cannot connect to %s: %s.", url,
                             nng_strerror(rv));
    }
    return PIP_OK;
}

static int
driver_slot_open(driver *drv, driver_slot *slot, int index, pip_error *err)
{
    int sockets = drv->cfg->sockets;

    slot->drv = drv;
    slot->rng = 0x9e3779b97f4a7c15ull ^ ((uint64_t)index * 0x2545f491ull);
    if (nng_aio_alloc(&slot->aio, driver_callback, slot) != 0) {
        return pip_error_set(err, PIP_E_INTERNAL, "OUT_OF_MEMORY",
                             "Cannot allocate an aio.");
    }
    nng_aio_set_timeout(slot->aio, (nng_duration)drv->cfg->timeout_ms);
    for (int t = 0; t < drv->target_count; t++) {
        if (nng_ctx_open(&slot->ctx[t], drv->socks[t][index % sockets]) !=
            0) {
            return pip_error_set(err, PIP_E_INTERNAL, "NNG_ERROR",
                                 "Cannot open a req context.");
        }
        slot->ctx_open[t] = true;
    }
    return PIP_OK;
}

static int
driver_open(driver *drv, pip_error *err)
{
    int rv = PIP_OK;

    drv->slot_count = drv->cfg->concurrency;
    drv->slots = calloc((size_t)drv->slot_count, sizeof(*drv->slots));
    drv->free_slots = calloc((size_t)drv->slot_count,
                             sizeof(*drv->free_slots));
    drv->res->hist = bench_hist_new();
    if (drv->slots == NULL || drv->free_slots == NULL ||
        drv->res->hist == NULL) {
        return pip_error_set(err, PIP_E_INTERNAL, "OUT_OF_MEMORY",
                             "Out of memory.");
    }
    for (int t = 0; t < drv->target_count && rv == PIP_OK; t++) {
        for (int i = 0; i < drv->cfg->sockets && rv == PIP_OK; i++) {
            rv = driver_dial(drv, t, i, err);
        }
    }
    for (int i = 0; i < drv->slot_count && rv == PIP_OK; i++) {
        rv = driver_slot_open(drv, &drv->slots[i], i, err);
    }
    return rv;
}

/* Stops the aios (waiting for their callbacks), then closes sockets. */
static void
driver_close(driver *drv)
{
    for (int i = 0; drv->slots != NULL && i < drv->slot_count; i++) {
        if (drv->slots[i].aio != NULL) {
            nng_aio_stop(drv->slots[i].aio);
        }
    }
    for (int i = 0; drv->slots != NULL && i < drv->slot_count; i++) {
        driver_slot *slot = &drv->slots[i];

        for (int t = 0; t < drv->target_count; t++) {
            if (slot->ctx_open[t]) {
                nng_ctx_close(slot->ctx[t]);
            }
        }
        if (slot->aio != NULL) {
            nng_aio_free(slot->aio);
        }
    }
    for (int t = 0; t < drv->target_count; t++) {
        for (int i = 0; i < BENCH_MAX_SOCKETS; i++) {
            if (drv->sock_open[t][i]) {
                nng_close(drv->socks[t][i]);
            }
        }
    }
    free(drv->slots);
    free(drv->free_slots);
    pthread_mutex_destroy(&drv->lock);
    pthread_cond_destroy(&drv->slot_freed);
}

static void
driver_sleep_until(uint64_t due_ns)
{
    struct timespec ts = {
        .tv_sec = (time_t)(due_ns / 1000000000u),
        .tv_nsec = (long)(due_ns % 1000000000u),
    };

    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) ==
           EINTR) {
    }
}

/*
 * The open loop's pacer: the k-th call is due at start + k / rate.  It
 * waits for a free slot when every slot is busy, and the call still
 * counts its latency from its due time.
 */
static void *
driver_pacer(void *arg)
{
    driver *drv = arg;
    double interval_ns = 1e9 / drv->cfg->rate_per_s;
    uint64_t start_ns = bench_now_ns();

    for (uint64_t k = 0; !atomic_load(&drv->stopping); k++) {
        uint64_t due_ns = start_ns + (uint64_t)((double)k * interval_ns);
        driver_slot *slot = NULL;

        driver_sleep_until(due_ns);
        pthread_mutex_lock(&drv->lock);
        while (drv->free_count == 0 && !atomic_load(&drv->stopping)) {
            pthread_cond_wait(&drv->slot_freed, &drv->lock);
        }
        if (drv->free_count > 0) {
            slot = drv->free_slots[--drv->free_count];
        }
        pthread_mutex_unlock(&drv->lock);
        if (slot == NULL) {
            break;
        }
        atomic_fetch_add(&drv->busy, 1);
        driver_issue(slot, due_ns);
    }
    return NULL;
}

static void
driver_progress(driver *drv, uint64_t now_ns, uint64_t since_ns,
                uint64_t *last_calls, uint64_t *last_ns)
{
    uint64_t calls = atomic_load(&drv->completed);
    double window_s = (double)(now_ns - *last_ns) / 1e9;
    double rate = window_s > 0 ? (double)(calls - *last_calls) / window_s : 0;

    bool warming_up = atomic_load(&drv->phase) == DRIVER_WARMUP;

    fprintf(stderr, "\r\033[K%s, concurrency %d, %s  %.1f s  calls %" PRIu64
            "  rate %.0f/s  errors %" PRIu64,
            drv->cfg->label, drv->cfg->concurrency,
            warming_up ? "warm-up" : "measuring",
            (double)(now_ns - since_ns) / 1e9, calls, rate,
            (uint64_t)atomic_load(&drv->failed));
    fflush(stderr);
    *last_calls = calls;
    *last_ns = now_ns;
}

/*
 * Moves through the phases by the clock, then waits for the outstanding
 * calls.  Each call ends within its timeout, and the wait gives up
 * DRIVER_DRAIN_GRACE_MS after that, leaving driver_close() to cancel.
 */
static void
driver_watch(driver *drv)
{
    const bench_run_config *cfg = drv->cfg;
    uint64_t start_ns = bench_now_ns();
    uint64_t measure_ns = start_ns + (uint64_t)cfg->warmup_ms * 1000000u;
    uint64_t end_ns = 0;
    uint64_t last_ns = start_ns;
    uint64_t last_calls = 0;
    uint64_t next_progress_ns = start_ns;
    uint64_t give_up_ns = 0;

    for (;;) {
        uint64_t now = bench_now_ns();

        if (atomic_load(&drv->phase) == DRIVER_WARMUP && now >= measure_ns) {
            drv->measure_start_ns = now;
            atomic_store(&drv->phase, DRIVER_MEASURE);
            if (cfg->call_count == 0) {
                end_ns = now + (uint64_t)cfg->duration_ms * 1000000u;
            }
        }
        if (end_ns != 0 && now >= end_ns && !atomic_load(&drv->stopping)) {
            atomic_store(&drv->stopping, true);
        }
        if (atomic_load(&drv->stopping)) {
            if (give_up_ns == 0) {
                give_up_ns = now + ((uint64_t)cfg->timeout_ms +
                                    DRIVER_DRAIN_GRACE_MS) * 1000000u;
            }
            if (atomic_load(&drv->busy) == 0 || now >= give_up_ns) {
                break;
            }
        }
        if (cfg->progress && now >= next_progress_ns) {
            driver_progress(drv, now, start_ns, &last_calls, &last_ns);
            next_progress_ns = now + DRIVER_PROGRESS_MS * 1000000u;
        }
        usleep(DRIVER_POLL_MS * 1000);
    }
    if (cfg->progress) {
        fprintf(stderr, "\r\033[K");
        fflush(stderr);
    }
}

static void
driver_wake_pacer(driver *drv)
{
    pthread_mutex_lock(&drv->lock);
    pthread_cond_broadcast(&drv->slot_freed);
    pthread_mutex_unlock(&drv->lock);
}

static void
driver_fill_result(driver *drv, bench_result *res)
{
    res->sent_calls = atomic_load(&drv->issued);
    res->request_bytes = atomic_load(&drv->request_bytes);
    if (drv->last_done_ns > drv->measure_start_ns) {
        res->elapsed_s =
            (double)(drv->last_done_ns - drv->measure_start_ns) / 1e9;
        res->calls_per_s = (double)res->calls / res->elapsed_s;
    }
}

static int
driver_start(driver *drv, pthread_t *pacer, pip_error *err)
{
    if (drv->cfg->rate_per_s > 0) {
        for (int i = 0; i < drv->slot_count; i++) {
            drv->free_slots[drv->free_count++] = &drv->slots[i];
        }
        if (pthread_create(pacer, NULL, driver_pacer, drv) != 0) {
            return pip_error_set(err, PIP_E_INTERNAL, "THREAD_FAILED",
                                 "Cannot start the pacer thread.");
        }
        return PIP_OK;
    }
    atomic_store(&drv->busy, drv->slot_count);
    for (int i = 0; i < drv->slot_count; i++) {
        driver_issue(&drv->slots[i], 0);
    }
    return PIP_OK;
}

int
bench_run(const bench_run_config *cfg, bench_result *res, pip_error *err)
{
    driver *drv;
    pthread_t pacer;
    int rv;

    rv = driver_validate(cfg, err);
    if (rv != PIP_OK) {
        return rv;
    }
    drv = calloc(1, sizeof(*drv));
    if (drv == NULL) {
        return pip_error_set(err, PIP_E_INTERNAL, "OUT_OF_MEMORY",
                             "Out of memory.");
    }
    drv->cfg = cfg;
    drv->res = res;
    drv->target_count =
        cfg->workload != NULL ? cfg->workload->service_count : 1;
    pthread_mutex_init(&drv->lock, NULL);
    pthread_cond_init(&drv->slot_freed, NULL);

    rv = driver_open(drv, err);
    if (rv == PIP_OK) {
        rv = driver_start(drv, &pacer, err);
    }
    if (rv == PIP_OK) {
        driver_watch(drv);
        if (cfg->rate_per_s > 0) {
            driver_wake_pacer(drv);
            pthread_join(pacer, NULL);
        }
        driver_fill_result(drv, res);
    }

    driver_close(drv);
    free(drv);
    return rv;
}

size_t
bench_request_size(const bench_workload *w)
{
    msgpack_sbuffer buf;
    msgpack_packer pk;
    uint64_t rng = 0x2545f4914f6cdd1dull;
    json_t *args;
    size_t size = 0;

    if (w->command_count == 0) {
        return 0;
    }
    /* Placeholders are expanded as in a call, so the size matches. */
    args = bench_args_expand(&w->commands[0], 1000, &rng);
    msgpack_sbuffer_init(&buf);
    msgpack_packer_init(&pk, &buf, msgpack_sbuffer_write);
    if (args != NULL &&
        pip_request_pack(&pk, 1000, w->commands[0].method, args, NULL) == 0) {
        size = buf.size;
    }
    msgpack_sbuffer_destroy(&buf);
    json_decref(args);
    return size;
}
