/* Tables and JSON of report.h; the chart is in chart.c. */
#include "report.h"

#include <errno.h>
#include <inttypes.h>
#include <msgpack.h>
#include <nng/nng.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>

#ifndef PIPBENCH_VERSION
#define PIPBENCH_VERSION "unknown"
#endif

void
bench_report_init(bench_report *r)
{
    memset(r, 0, sizeof(*r));
    r->rss_before_kb = -1;
    r->rss_after_kb = -1;
}

void
bench_report_fini(bench_report *r)
{
    for (int i = 0; i < r->point_count; i++) {
        bench_result_fini(&r->points[i].workload);
        bench_result_fini(&r->points[i].baseline);
    }
    bench_report_init(r);
}

static double
report_us(const bench_result *res, double percent)
{
    if (res->hist == NULL) {
        return 0.0;
    }
    return (double)bench_hist_percentile(res->hist, percent) / 1000.0;
}

static double
report_max_us(const bench_result *res)
{
    return res->hist != NULL ? (double)res->hist->max_ns / 1000.0 : 0.0;
}

static json_t *
report_latency_json(const bench_result *res)
{
    double mean = res->hist != NULL ? bench_hist_mean(res->hist) : 0.0;

    return json_pack("{s:f, s:f, s:f, s:f, s:f, s:f}",
                     "p50", report_us(res, 50.0),
                     "p90", report_us(res, 90.0),
                     "p99", report_us(res, 99.0),
                     "p99_9", report_us(res, 99.9),
                     "max", report_max_us(res),
                     "mean", mean / 1000.0);
}

json_t *
bench_result_json(const bench_result *res)
{
    json_t *codes = json_object();

    for (int i = 0; codes != NULL && i < res->error_code_count; i++) {
        const bench_error_count *entry = &res->error_codes[i];

        json_object_set_new(codes, entry->code,
                            json_integer((json_int_t)entry->count));
    }
    return json_pack("{s:I, s:I, s:I, s:I, s:f, s:f, s:I, s:o, s:o}",
                     "calls", (json_int_t)res->calls,
                     "errors", (json_int_t)res->errors,
                     "warmup_calls", (json_int_t)res->warmup_calls,
                     "sent_calls", (json_int_t)res->sent_calls,
                     "elapsed_s", res->elapsed_s,
                     "calls_per_s", res->calls_per_s,
                     "request_bytes", (json_int_t)res->request_bytes,
                     "latency_us", report_latency_json(res),
                     "errors_by_code", codes);
}

static double
report_ratio(double value, double base)
{
    return base > 0.0 ? value / base : 0.0;
}

/* Each figure of the workload divided by the baseline's. */
static json_t *
report_ratio_json(const bench_point *p)
{
    const bench_result *w = &p->workload;
    const bench_result *b = &p->baseline;

    return json_pack("{s:f, s:f, s:f, s:f, s:f, s:f}",
                     "calls_per_s", report_ratio(w->calls_per_s,
                                                 b->calls_per_s),
                     "p50", report_ratio(report_us(w, 50), report_us(b, 50)),
                     "p90", report_ratio(report_us(w, 90), report_us(b, 90)),
                     "p99", report_ratio(report_us(w, 99), report_us(b, 99)),
                     "p99_9", report_ratio(report_us(w, 99.9),
                                           report_us(b, 99.9)),
                     "max", report_ratio(report_max_us(w),
                                         report_max_us(b)));
}

static json_t *
report_point_json(const bench_point *p)
{
    json_t *obj = json_pack("{s:i, s:i, s:o}", "concurrency", p->concurrency,
                            "sockets", p->sockets, "workload",
                            bench_result_json(&p->workload));

    if (obj != NULL && p->has_baseline) {
        json_object_set_new(obj, "baseline", bench_result_json(&p->baseline));
        json_object_set_new(obj, "ratio", report_ratio_json(p));
    }
    return obj;
}

static json_t *
report_host_json(void)
{
    struct utsname uts;
    char name[256] = "";

    gethostname(name, sizeof(name) - 1);
    if (uname(&uts) != 0) {
        memset(&uts, 0, sizeof(uts));
    }
    return json_pack("{s:s, s:s, s:s, s:s, s:I}", "name", name,
                     "system", uts.sysname, "kernel", uts.release,
                     "machine", uts.machine, "cpus",
                     (json_int_t)sysconf(_SC_NPROCESSORS_ONLN));
}

static json_t *
report_versions_json(void)
{
    return json_pack("{s:s, s:s, s:s, s:s}", "pipbench", PIPBENCH_VERSION,
                     "nng", nng_version(), "msgpack", msgpack_version(),
                     "jansson", JANSSON_VERSION);
}

static json_t *
report_memory_json(const bench_report *r)
{
    if (r->node_pid == 0 || r->rss_before_kb < 0) {
        return json_null();
    }
    return json_pack("{s:I, s:I, s:I}", "node_pid", (json_int_t)r->node_pid,
                     "rss_before_kb", (json_int_t)r->rss_before_kb,
                     "rss_after_kb", (json_int_t)r->rss_after_kb);
}

static json_t *
report_settings_json(const bench_report *r)
{
    return json_pack("{s:s, s:s, s:f, s:I, s:I, s:I, s:i}",
                     "workload", r->workload != NULL ? r->workload : "",
                     "loop", r->rate_per_s > 0 ? "open" : "closed",
                     "rate_per_s", r->rate_per_s,
                     "warmup_ms", (json_int_t)r->warmup_ms,
                     "duration_ms", (json_int_t)r->duration_ms,
                     "call_count", (json_int_t)r->call_count,
                     "rounds", r->rounds > 0 ? r->rounds : 1);
}

json_t *
bench_report_json(const bench_report *r)
{
    json_t *argv = json_array();
    json_t *points = json_array();

    for (int i = 0; argv != NULL && i < r->argc; i++) {
        json_array_append_new(argv, json_string(r->argv[i]));
    }
    for (int i = 0; points != NULL && i < r->point_count; i++) {
        json_array_append_new(points, report_point_json(&r->points[i]));
    }
    return json_pack("{s:o, s:o, s:o, s:s, s:s, s:o, s:o, s:o}",
                     "command_line", argv,
                     "versions", report_versions_json(),
                     "host", report_host_json(),
                     "transport", r->transport != NULL ? r->transport : "",
                     "targets", r->targets != NULL ? r->targets : "",
                     "settings", report_settings_json(r),
                     "memory", report_memory_json(r),
                     "points", points);
}

int
bench_report_write_json(const bench_report *r, const char *path,
                        pip_error *err)
{
    json_t *doc = bench_report_json(r);
    int rv;

    if (doc == NULL) {
        return pip_error_set(err, PIP_E_INTERNAL, "OUT_OF_MEMORY",
                             "Cannot build the JSON report.");
    }
    rv = json_dump_file(doc, path, JSON_INDENT(2) | JSON_SORT_KEYS);
    json_decref(doc);
    if (rv != 0) {
        return pip_error_set(err, PIP_E_INTERNAL, "WRITE_FAILED",
                             "Cannot write the JSON report to %s.", path);
    }
    return PIP_OK;
}

static void
report_print_errors(const bench_result *res, FILE *out)
{
    for (int i = 0; i < res->error_code_count; i++) {
        fprintf(out, "%s%s %" PRIu64, i == 0 ? "  " : ", ",
                res->error_codes[i].code, res->error_codes[i].count);
    }
}

static void
report_print_row(FILE *out, const bench_point *p, const char *run,
                 const bench_result *res)
{
    fprintf(out, "%6d %4d  %-9s %11.0f %9.1f %9.1f %9.1f %9.1f %9.1f",
            p->concurrency, p->sockets, run, res->calls_per_s,
            report_us(res, 50), report_us(res, 90), report_us(res, 99),
            report_us(res, 99.9), report_max_us(res));
    fprintf(out, " %8" PRIu64, res->errors);
    report_print_errors(res, out);
    fputc('\n', out);
}

static void
report_print_ratio(FILE *out, const bench_point *p)
{
    const bench_result *w = &p->workload;
    const bench_result *b = &p->baseline;

    fprintf(out, "%6s %4s  %-9s %10.2fx %8.2fx %8.2fx %8.2fx %8.2fx %8.2fx\n",
            "", "", "ratio", report_ratio(w->calls_per_s, b->calls_per_s),
            report_ratio(report_us(w, 50), report_us(b, 50)),
            report_ratio(report_us(w, 90), report_us(b, 90)),
            report_ratio(report_us(w, 99), report_us(b, 99)),
            report_ratio(report_us(w, 99.9), report_us(b, 99.9)),
            report_ratio(report_max_us(w), report_max_us(b)));
}

void
bench_report_print(const bench_report *r, FILE *out)
{
    fprintf(out, "workload %s, transport %s, %s loop", r->workload,
            r->transport, r->rate_per_s > 0 ? "open" : "closed");
    if (r->rate_per_s > 0) {
        fprintf(out, " at %.0f calls/s", r->rate_per_s);
    }
    fprintf(out, "\n\n%6s %4s  %-9s %11s %9s %9s %9s %9s %9s %8s\n", "conc",
            "sock", "run", "calls/s", "p50 us", "p90 us", "p99 us", "p99.9 us",
            "max us", "errors");
    for (int i = 0; i < r->point_count; i++) {
        const bench_point *p = &r->points[i];

        if (p->has_baseline) {
            report_print_row(out, p, "baseline", &p->baseline);
        }
        report_print_row(out, p, "workload", &p->workload);
        if (p->has_baseline) {
            report_print_ratio(out, p);
        }
    }
    if (r->node_pid != 0 && r->rss_before_kb >= 0) {
        fprintf(out, "\nnode pid %ld resident memory: %ld KiB before, "
                "%ld KiB after (%+ld KiB)\n", (long)r->node_pid,
                r->rss_before_kb, r->rss_after_kb,
                r->rss_after_kb - r->rss_before_kb);
    }
}

long
bench_rss_kb(pid_t pid)
{
    char path[64];
    char line[256];
    long kb = -1;
    FILE *f;

    snprintf(path, sizeof(path), "/proc/%ld/status", (long)pid);
    f = fopen(path, "r");
    if (f == NULL) {
        return -1;
    }
    while (fgets(line, sizeof(line), f) != NULL) {
        if (sscanf(line, "VmRSS: %ld kB", &kb) == 1) {
            break;
        }
    }
    fclose(f);
    return kb;
}
