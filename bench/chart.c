/*
 * The SVG chart of report.h: two panels side by side, calls per second
 * and p99 latency against concurrency.  Concurrencies sit at even steps
 * on the x axis (a sweep is usually a geometric list such as 1,4,16,64),
 * and each y axis starts at 0.
 */
#include <stdio.h>
#include <string.h>

#include "report.h"

#define CHART_PANEL_W 420
#define CHART_PANEL_H 300
#define CHART_LEFT 70
#define CHART_RIGHT 30
#define CHART_TOP 60
#define CHART_BOTTOM 50
#define CHART_TICKS 5

typedef double (*chart_figure)(const bench_result *res);

static double
chart_rate(const bench_result *res)
{
    return res->calls_per_s;
}

static double
chart_p99_us(const bench_result *res)
{
    return res->hist != NULL
               ? (double)bench_hist_percentile(res->hist, 99.0) / 1000.0
               : 0.0;
}

static double
chart_x(const bench_report *r, int i, int x0)
{
    int plot_w = CHART_PANEL_W - CHART_LEFT - CHART_RIGHT;

    if (r->point_count == 1) {
        return x0 + CHART_LEFT + plot_w / 2.0;
    }
    return x0 + CHART_LEFT + (double)plot_w * i / (r->point_count - 1);
}

static double
chart_y(double value, double top_value)
{
    int plot_h = CHART_PANEL_H - CHART_TOP - CHART_BOTTOM;

    return CHART_TOP + plot_h - plot_h * (value / top_value);
}

static void
chart_axes(FILE *f, const bench_report *r, int x0, const char *title,
           double top_value, double step)
{
    int bottom = CHART_PANEL_H - CHART_BOTTOM;
    int ticks = (int)(top_value / step + 0.5);

    fprintf(f, "<text x='%d' y='%d' font-size='14' font-weight='bold'>%s"
            "</text>\n", x0 + CHART_LEFT, CHART_TOP - 14, title);
    for (int t = 0; t <= ticks; t++) {
        double value = step * t;
        double y = chart_y(value, top_value);

        fprintf(f, "<line x1='%d' y1='%.1f' x2='%d' y2='%.1f' "
                "stroke='#ddd'/>\n", x0 + CHART_LEFT, y,
                x0 + CHART_PANEL_W - CHART_RIGHT, y);
        fprintf(f, "<text x='%d' y='%.1f' font-size='11' "
                "text-anchor='end'>%.*f</text>\n", x0 + CHART_LEFT - 6,
                y + 4, step < 1.0 ? 2 : 0, value);
    }
    for (int i = 0; i < r->point_count; i++) {
        fprintf(f, "<text x='%.1f' y='%d' font-size='11' "
                "text-anchor='middle'>%d</text>\n", chart_x(r, i, x0),
                bottom + 16, r->points[i].concurrency);
    }
    fprintf(f, "<text x='%d' y='%d' font-size='12' text-anchor='middle'>"
            "concurrency (outstanding calls)</text>\n",
            x0 + CHART_LEFT + (CHART_PANEL_W - CHART_LEFT - CHART_RIGHT) / 2,
            bottom + 36);
    fprintf(f, "<line x1='%d' y1='%d' x2='%d' y2='%d' stroke='#333'/>\n",
            x0 + CHART_LEFT, bottom, x0 + CHART_PANEL_W - CHART_RIGHT,
            bottom);
    fprintf(f, "<line x1='%d' y1='%d' x2='%d' y2='%d' stroke='#333'/>\n",
            x0 + CHART_LEFT, CHART_TOP, x0 + CHART_LEFT, bottom);
}

static void
chart_line(FILE *f, const bench_report *r, int x0, chart_figure figure,
           bool baseline, double top_value)
{
    const char *color = baseline ? "#888888" : "#1f5fbf";

    fprintf(f, "<polyline fill='none' stroke='%s' stroke-width='2'%s "
            "points='", color, baseline ? " stroke-dasharray='6,4'" : "");
    for (int i = 0; i < r->point_count; i++) {
        const bench_point *p = &r->points[i];

        fprintf(f, "%.1f,%.1f ", chart_x(r, i, x0),
                chart_y(figure(baseline ? &p->baseline : &p->workload),
                        top_value));
    }
    fprintf(f, "'/>\n");
    for (int i = 0; i < r->point_count; i++) {
        const bench_point *p = &r->points[i];

        fprintf(f, "<circle cx='%.1f' cy='%.1f' r='3' fill='%s'/>\n",
                chart_x(r, i, x0),
                chart_y(figure(baseline ? &p->baseline : &p->workload),
                        top_value), color);
    }
}

/* A round tick step (1, 2 or 5 times a power of ten) for 0..max_value. */
static double
chart_step(double max_value)
{
    double raw = max_value / CHART_TICKS;
    double power = 1.0;
    double fraction;

    while (power * 10.0 <= raw) {
        power *= 10.0;
    }
    while (power > raw) {
        power /= 10.0;
    }
    fraction = raw / power;

    if (fraction <= 1.0) {
        return power;
    }
    if (fraction <= 2.0) {
        return 2.0 * power;
    }
    return fraction <= 5.0 ? 5.0 * power : 10.0 * power;
}

/* The top of the y axis: the largest figure of both series, rounded up. */
static double
chart_top(const bench_report *r, chart_figure figure, double *step)
{
    double top = 0.0;

    for (int i = 0; i < r->point_count; i++) {
        const bench_point *p = &r->points[i];
        double w = figure(&p->workload);
        double b = p->has_baseline ? figure(&p->baseline) : 0.0;

        top = w > top ? w : top;
        top = b > top ? b : top;
    }
    if (top <= 0.0) {
        top = 1.0;
    }
    *step = chart_step(top);
    /* Round up to a whole number of steps. */
    return (double)(long long)(top / *step + 0.999999) * *step;
}

static void
chart_panel(FILE *f, const bench_report *r, int x0, const char *title,
            chart_figure figure, bool has_baseline)
{
    double step;
    double top = chart_top(r, figure, &step);

    chart_axes(f, r, x0, title, top, step);
    if (has_baseline) {
        chart_line(f, r, x0, figure, true, top);
    }
    chart_line(f, r, x0, figure, false, top);
}

/* Writes text with the five XML special characters escaped. */
static void
chart_text(FILE *f, const char *text)
{
    for (; *text != '\0'; text++) {
        switch (*text) {
        case '<':
            fputs("&lt;", f);
            break;
        case '>':
            fputs("&gt;", f);
            break;
        case '&':
            fputs("&amp;", f);
            break;
        case '\'':
            fputs("&apos;", f);
            break;
        case '"':
            fputs("&quot;", f);
            break;
        default:
            fputc(*text, f);
        }
    }
}

static void
chart_title(FILE *f, const bench_report *r)
{
    fprintf(f, "<text x='%d' y='22' font-size='16' font-weight='bold'>",
            CHART_LEFT);
    chart_text(f, r->workload != NULL ? r->workload : "");
    fputs(" over ", f);
    chart_text(f, r->transport != NULL ? r->transport : "");
    fprintf(f, ", %s loop</text>\n", r->rate_per_s > 0 ? "open" : "closed");
}

static void
chart_legend(FILE *f, bool has_baseline)
{
    int y = CHART_PANEL_H + 10;

    fprintf(f, "<line x1='%d' y1='%d' x2='%d' y2='%d' stroke='#1f5fbf' "
            "stroke-width='2'/>\n", CHART_LEFT, y, CHART_LEFT + 30, y);
    fprintf(f, "<text x='%d' y='%d' font-size='12'>workload</text>\n",
            CHART_LEFT + 36, y + 4);
    if (has_baseline) {
        fprintf(f, "<line x1='%d' y1='%d' x2='%d' y2='%d' stroke='#888888' "
                "stroke-width='2' stroke-dasharray='6,4'/>\n",
                CHART_LEFT + 140, y, CHART_LEFT + 170, y);
        fprintf(f, "<text x='%d' y='%d' font-size='12'>baseline: raw NNG "
                "req/rep echo, same message size, transport and "
                "concurrency</text>\n", CHART_LEFT + 176, y + 4);
    }
}

int
bench_report_write_svg(const bench_report *r, const char *path,
                       pip_error *err)
{
    bool has_baseline = r->point_count > 0 && r->points[0].has_baseline;
    FILE *f = fopen(path, "w");
    int failed;

    if (f == NULL) {
        return pip_error_set(err, PIP_E_INTERNAL, "WRITE_FAILED",
                             "Cannot write the chart to %s.", path);
    }
    fprintf(f, "<?xml version='1.0' encoding='UTF-8'?>\n"
            "<svg xmlns='http://www.w3.org/2000/svg' width='%d' height='%d' "
            "font-family='sans-serif'>\n"
            "<rect width='100%%' height='100%%' fill='white'/>\n",
            2 * CHART_PANEL_W, CHART_PANEL_H + 30);
    chart_title(f, r);
    chart_panel(f, r, 0, "calls per second", chart_rate, has_baseline);
    chart_panel(f, r, CHART_PANEL_W, "p99 latency (microseconds)",
                chart_p99_us, has_baseline);
    chart_legend(f, has_baseline);
    fprintf(f, "</svg>\n");
    failed = ferror(f);
    if (fclose(f) != 0 || failed) {
        return pip_error_set(err, PIP_E_INTERNAL, "WRITE_FAILED",
                             "Cannot write the chart to %s.", path);
    }
    return PIP_OK;
}
