/*
 * The report of a pipbench invocation: one point per concurrency, each
 * with the workload's figures and, with --baseline, the echo baseline's.
 * It prints as a table, writes as JSON and draws as an SVG chart.
 */
#ifndef BENCH_REPORT_H
#define BENCH_REPORT_H

#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <sys/types.h>

#include "driver.h"

#define BENCH_MAX_POINTS 16

typedef struct bench_point {
    int concurrency;
    int sockets;          /* req sockets per service */
    bench_result workload;
    bench_result baseline;
    bool has_baseline;
} bench_point;

typedef struct bench_report {
    int argc;                 /* the command line, borrowed */
    char **argv;
    const char *transport;    /* "tcp", "ipc" or "inproc" */
    const char *targets;      /* URLs called, comma-separated */
    const char *workload;     /* method or workload file */
    double rate_per_s;        /* 0: closed loop */
    uint32_t warmup_ms;
    uint32_t duration_ms;
    uint64_t call_count;
    int rounds;               /* measured rounds per point */
    pid_t node_pid;           /* 0 when unknown */
    long rss_before_kb;       /* VmRSS of node_pid; -1 when unknown */
    long rss_after_kb;
    bench_point points[BENCH_MAX_POINTS];
    int point_count;
} bench_report;

void bench_report_init(bench_report *r);
void bench_report_fini(bench_report *r);

/* The figures of one result as a new JSON object. */
json_t *bench_result_json(const bench_result *res);
/* The whole report as a new JSON object, or NULL when out of memory. */
json_t *bench_report_json(const bench_report *r);
/* Writes bench_report_json() to path.  Errors: PIP_E_INTERNAL. */
int bench_report_write_json(const bench_report *r, const char *path,
                            pip_error *err);

void bench_report_print(const bench_report *r, FILE *out);

/*
 * Draws throughput and p99 latency against concurrency, workload beside
 * baseline, as an SVG file.  Errors: PIP_E_INTERNAL when path cannot be
 * written.
 */
int bench_report_write_svg(const bench_report *r, const char *path,
                           pip_error *err);

/* VmRSS of pid from /proc/<pid>/status in KiB, or -1. */
long bench_rss_kb(pid_t pid);

#endif
