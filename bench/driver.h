/*
 * The load driver: sends calls over NNG req sockets with asynchronous
 * contexts and aios, one context per outstanding call, spread over
 * several sockets, and measures each call's latency.
 *
 * Closed loop: `concurrency` calls are outstanding at all times, and a
 * finished call starts the next one from the NNG callback.  Open loop: a
 * pacer thread releases calls at a fixed rate into the free contexts.
 * Latency counts from the time a call was due to be sent, so a call that
 * waits for a context held up by a stalled server includes that wait.
 *
 * A run first warms up for warmup_ms (calls sent then are not measured),
 * then measures for duration_ms or until call_count calls were sent, and
 * waits for the calls still outstanding.
 */
#ifndef BENCH_DRIVER_H
#define BENCH_DRIVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hist.h"
#include "pip/error.h"
#include "pip/seal.h"
#include "workload.h"

#define BENCH_MAX_CONCURRENCY 4096
#define BENCH_MAX_SOCKETS 256
#define BENCH_MAX_ERROR_CODES 16
#define BENCH_URL_MAX 300

typedef struct bench_run_config {
    /* URL of each service of the workload, or of the echo server. */
    const char *urls[BENCH_MAX_TARGETS];
    const bench_workload *workload; /* NULL: raw echo of raw_msg_bytes */
    size_t raw_msg_bytes;
    int concurrency;      /* outstanding calls */
    int sockets;          /* req sockets per target, at most concurrency */
    double rate_per_s;    /* open loop at this rate; 0: closed loop */
    uint32_t warmup_ms;
    uint32_t duration_ms; /* measured time when call_count is 0 */
    uint64_t call_count;  /* measured calls; 0: run for duration_ms */
    uint32_t timeout_ms;  /* per call */
    size_t max_msg_bytes; /* largest reply */
    bool progress;        /* live line on stderr */
    const char *label;    /* shown on the progress line */
    pip_keyring *keyring; /* seals workload calls; NULL: plain */
} bench_run_config;

void bench_run_config_init(bench_run_config *cfg);

typedef struct bench_error_count {
    char code[PIP_CODE_MAX];
    uint64_t count;
} bench_error_count;

/* The figures of one measured run. */
typedef struct bench_result {
    uint64_t calls;         /* measured calls that completed, failed too */
    uint64_t errors;        /* measured calls that failed */
    uint64_t warmup_calls;  /* calls completed during the warm-up */
    uint64_t sent_calls;    /* every call sent, warm-up included */
    double elapsed_s;       /* from the end of warm-up to the last reply */
    double calls_per_s;
    size_t request_bytes;   /* size of one request message */
    bench_hist *hist;       /* owned; latency of every measured call */
    bench_error_count error_codes[BENCH_MAX_ERROR_CODES];
    int error_code_count;   /* further codes are counted as OTHER */
} bench_result;

void bench_result_init(bench_result *res);
void bench_result_fini(bench_result *res);
/*
 * Adds the figures of src to dst, as if one run had made the calls of
 * both: counts, measured time, latencies and errors add up, and
 * calls_per_s is the sum of calls over the sum of measured time.
 */
int bench_result_merge(bench_result *dst, const bench_result *src,
                       pip_error *err);

/*
 * Runs the load and fills res (initialized).  Blocks for the warm-up,
 * the measured part and the drain.  Errors: PIP_E_BAD_REQUEST for an
 * invalid configuration, PIP_E_UNAVAILABLE when a URL cannot be dialed,
 * PIP_E_INTERNAL when NNG or memory fails.  Failed calls are no error of
 * the run: they are counted in res.
 */
int bench_run(const bench_run_config *cfg, bench_result *res,
              pip_error *err);

/*
 * Size of a request message of the workload's first command, with its
 * placeholders expanded; random values may change it by a few bytes.
 */
size_t bench_request_size(const bench_workload *w);

/* Monotonic time in nanoseconds. */
uint64_t bench_now_ns(void);

/*
 * A raw NNG rep echo server, the baseline: it sends every request back
 * unchanged from `contexts` asynchronous contexts.  listen_url may end
 * in port 0; *bound_url then names the chosen port.
 */
typedef struct bench_echo bench_echo;
int bench_echo_start(const char *listen_url, int contexts,
                     size_t max_msg_bytes, bench_echo **out,
                     char bound_url[BENCH_URL_MAX], pip_error *err);
void bench_echo_stop(bench_echo *echo);

#endif
