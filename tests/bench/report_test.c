/*
 * The report: JSON shape and figures of a report built from known
 * results, ratios to the baseline, the table and the SVG chart.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "report.h"

/* Fills res with `calls` calls of latency_ns and one error code. */
static void
fill_result(bench_result *res, uint64_t calls, uint64_t latency_ns,
            double calls_per_s)
{
    bench_result_init(res);
    res->hist = bench_hist_new();
    assert_non_null(res->hist);
    for (uint64_t i = 0; i < calls; i++) {
        bench_hist_record(res->hist, latency_ns);
    }
    res->calls = calls;
    res->sent_calls = calls + 10;
    res->warmup_calls = 10;
    res->calls_per_s = calls_per_s;
    res->elapsed_s = (double)calls / calls_per_s;
    res->request_bytes = 42;
}

static char *argv_words[] = {"pipbench", "--baseline", "counters.ping"};

static void
build_report(bench_report *r)
{
    bench_report_init(r);
    r->argc = 3;
    r->argv = argv_words;
    r->transport = "tcp";
    r->targets = "tcp://127.0.0.1:5555";
    r->workload = "counters.ping";
    r->warmup_ms = 1000;
    r->duration_ms = 2000;
    for (int i = 0; i < 2; i++) {
        bench_point *p = &r->points[r->point_count++];

        p->concurrency = i == 0 ? 1 : 32;
        p->sockets = i == 0 ? 1 : 4;
        p->has_baseline = true;
        fill_result(&p->baseline, 1000, 100000, 10000.0);
        fill_result(&p->workload, 900, 125000, 9000.0);
    }
    r->points[1].workload.errors = 3;
    r->points[1].workload.error_code_count = 1;
    snprintf(r->points[1].workload.error_codes[0].code, PIP_CODE_MAX,
             "TIMEOUT");
    r->points[1].workload.error_codes[0].count = 3;
}

static double
number_at(const json_t *obj, const char *key)
{
    const json_t *value = json_object_get(obj, key);

    if (!json_is_number(value)) {
        fail_msg("'%s' is not a number", key);
    }
    return json_number_value(value);
}

static void
test_json_has_every_section(void **state)
{
    bench_report r;
    json_t *doc;

    (void)state;
    build_report(&r);
    doc = bench_report_json(&r);
    assert_non_null(doc);
    assert_int_equal(json_array_size(json_object_get(doc, "command_line")),
                     3);
    assert_string_equal(json_string_value(json_array_get(
                            json_object_get(doc, "command_line"), 2)),
                        "counters.ping");
    assert_non_null(json_object_get(json_object_get(doc, "versions"), "nng"));
    assert_non_null(
        json_object_get(json_object_get(doc, "versions"), "pipbench"));
    assert_non_null(json_object_get(json_object_get(doc, "host"), "name"));
    assert_true(number_at(json_object_get(doc, "host"), "cpus") >= 1);
    assert_string_equal(json_string_value(json_object_get(doc, "transport")),
                        "tcp");
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(doc, "settings"),
                                          "loop")), "closed");
    assert_true(json_is_null(json_object_get(doc, "memory")));
    assert_int_equal(json_array_size(json_object_get(doc, "points")), 2);
    json_decref(doc);
    bench_report_fini(&r);
}

static void
test_json_figures_and_ratios(void **state)
{
    bench_report r;
    json_t *doc;
    json_t *point;
    json_t *workload;
    json_t *latency;
    json_t *ratio;

    (void)state;
    build_report(&r);
    doc = bench_report_json(&r);
    assert_non_null(doc);
    point = json_array_get(json_object_get(doc, "points"), 1);
    assert_int_equal(number_at(point, "concurrency"), 32);
    assert_int_equal(number_at(point, "sockets"), 4);

    workload = json_object_get(point, "workload");
    assert_int_equal(number_at(workload, "calls"), 900);
    assert_int_equal(number_at(workload, "errors"), 3);
    assert_int_equal(number_at(workload, "warmup_calls"), 10);
    assert_int_equal(number_at(workload, "sent_calls"), 910);
    assert_int_equal(number_at(workload, "request_bytes"), 42);
    assert_true(number_at(workload, "calls_per_s") == 9000.0);
    assert_int_equal(number_at(json_object_get(workload, "errors_by_code"),
                               "TIMEOUT"), 3);
    latency = json_object_get(workload, "latency_us");
    assert_true(number_at(latency, "p50") > 123.0);
    assert_true(number_at(latency, "p50") < 127.0);
    assert_true(number_at(latency, "p99_9") > 123.0);
    assert_true(number_at(latency, "max") == 125.0);
    assert_true(number_at(latency, "mean") == 125.0);

    ratio = json_object_get(point, "ratio");
    assert_true(number_at(ratio, "calls_per_s") == 0.9);
    assert_true(number_at(ratio, "p99") > 1.23);
    assert_true(number_at(ratio, "p99") < 1.27);
    assert_non_null(json_object_get(point, "baseline"));
    json_decref(doc);
    bench_report_fini(&r);
}

static void
test_json_without_baseline(void **state)
{
    bench_report r;
    json_t *doc;
    json_t *point;

    (void)state;
    build_report(&r);
    r.points[0].has_baseline = false;
    r.node_pid = 4242;
    r.rss_before_kb = 9000;
    r.rss_after_kb = 9100;
    doc = bench_report_json(&r);
    assert_non_null(doc);
    point = json_array_get(json_object_get(doc, "points"), 0);
    assert_null(json_object_get(point, "baseline"));
    assert_null(json_object_get(point, "ratio"));
    assert_int_equal(number_at(json_object_get(doc, "memory"),
                               "rss_after_kb"), 9100);
    json_decref(doc);
    bench_report_fini(&r);
}

static void
test_files_are_written(void **state)
{
    char dir[] = "/tmp/report_test_XXXXXX";
    char json_path[64];
    char svg_path[64];
    bench_report r;
    pip_error err;
    json_t *doc;
    FILE *f;
    char svg[8192];
    size_t len;

    (void)state;
    assert_non_null(mkdtemp(dir));
    snprintf(json_path, sizeof(json_path), "%s/r.json", dir);
    snprintf(svg_path, sizeof(svg_path), "%s/r.svg", dir);
    build_report(&r);
    pip_error_init(&err);
    assert_int_equal(bench_report_write_json(&r, json_path, &err), PIP_OK);
    assert_int_equal(bench_report_write_svg(&r, svg_path, &err), PIP_OK);

    doc = json_load_file(json_path, 0, NULL);
    assert_non_null(doc);
    assert_int_equal(json_array_size(json_object_get(doc, "points")), 2);
    json_decref(doc);

    f = fopen(svg_path, "r");
    assert_non_null(f);
    len = fread(svg, 1, sizeof(svg) - 1, f);
    fclose(f);
    svg[len] = '\0';
    assert_non_null(strstr(svg, "<svg"));
    assert_non_null(strstr(svg, "</svg>"));
    assert_non_null(strstr(svg, "calls per second"));
    assert_non_null(strstr(svg, "p99 latency"));
    assert_non_null(strstr(svg, "stroke-dasharray")); /* the baseline */

    assert_int_equal(bench_report_write_json(&r, "/nonexistent/r.json", &err),
                     PIP_E_INTERNAL);
    unlink(json_path);
    unlink(svg_path);
    rmdir(dir);
    bench_report_fini(&r);
    pip_error_fini(&err);
}

static void
test_table_lists_ratio_rows(void **state)
{
    bench_report r;
    char *text = NULL;
    size_t size = 0;
    FILE *out = open_memstream(&text, &size);

    (void)state;
    assert_non_null(out);
    build_report(&r);
    bench_report_print(&r, out);
    fclose(out);
    assert_non_null(strstr(text, "baseline"));
    assert_non_null(strstr(text, "ratio"));
    assert_non_null(strstr(text, "0.90x"));
    assert_non_null(strstr(text, "TIMEOUT 3"));
    free(text);
    bench_report_fini(&r);
}

/* Two results merged as one run: counts, time and error codes add up. */
static void
test_merge_adds_results(void **state)
{
    bench_result total;
    bench_result part;
    pip_error err;

    (void)state;
    bench_result_init(&total);
    pip_error_init(&err);
    for (int i = 0; i < 2; i++) {
        fill_result(&part, 1000, i == 0 ? 100000 : 300000,
                    i == 0 ? 10000.0 : 5000.0);
        part.errors = 2;
        part.error_code_count = 1;
        snprintf(part.error_codes[0].code, PIP_CODE_MAX, "TIMEOUT");
        part.error_codes[0].count = 2;
        assert_int_equal(bench_result_merge(&total, &part, &err), PIP_OK);
        bench_result_fini(&part);
    }
    pip_error_fini(&err);

    assert_int_equal(total.calls, 2000);
    assert_int_equal(total.errors, 4);
    assert_int_equal(total.sent_calls, 2020);
    assert_int_equal(total.warmup_calls, 20);
    /* 2000 calls in 0.1 s plus 0.2 s. */
    assert_true(total.calls_per_s > 6666.0 && total.calls_per_s < 6667.0);
    assert_int_equal(total.hist->count, 2000);
    assert_int_equal(total.error_code_count, 1);
    assert_string_equal(total.error_codes[0].code, "TIMEOUT");
    assert_int_equal(total.error_codes[0].count, 4);
    bench_result_fini(&total);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json_has_every_section),
        cmocka_unit_test(test_json_figures_and_ratios),
        cmocka_unit_test(test_json_without_baseline),
        cmocka_unit_test(test_files_are_written),
        cmocka_unit_test(test_table_lists_ratio_rows),
        cmocka_unit_test(test_merge_adds_results),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
