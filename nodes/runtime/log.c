/*
 * The logger: one global sink and level, lines formatted on the stack.
 *
 * Values follow logfmt.  node and cid are written bare when they contain
 * only printable ASCII without blanks, '"', '\' or '=', and quoted and
 * escaped otherwise.  msg is always quoted.  Escaping turns '"' and '\'
 * into \" and \\, newline, return and tab into \n, \r and \t, and other
 * control bytes into \xHH, so one event is always one line.
 */
#include "pip/log.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "pip/time.h"

/* Bytes of one line and of the message text before escaping. */
#define LOG_LINE_MAX 2048
#define LOG_TEXT_MAX 1024
/* Room kept at the end of a line for `..."` and the NUL. */
#define LOG_LINE_RESERVE 5

static const char *const log_level_names[] = {"ERROR", "WARN", "INFO", "DEBUG",
                                              "TRACE"};
static const char *const log_level_words[] = {"error", "warn", "info", "debug",
                                              "trace"};

/*
 * The sink is called under the read lock, so once pip_log_configure()
 * returns, the old sink is never called again and its ctx may be freed.
 */
static pthread_rwlock_t log_lock = PTHREAD_RWLOCK_INITIALIZER;
static pip_log_sink log_sink;
static void *log_sink_ctx;
/* Read without the lock, so a disabled level costs two atomic loads. */
static atomic_int log_max_level = PIP_LOG_INFO;
static atomic_bool log_sink_set;

void
pip_log_configure(pip_log_sink sink, void *ctx, pip_log_level level)
{
    if ((int)level < PIP_LOG_ERROR) {
        level = PIP_LOG_ERROR;
    } else if (level > PIP_LOG_TRACE) {
        level = PIP_LOG_TRACE;
    }

    pthread_rwlock_wrlock(&log_lock);
    log_sink = sink;
    log_sink_ctx = ctx;
    atomic_store(&log_max_level, (int)level);
    atomic_store(&log_sink_set, sink != NULL);
    pthread_rwlock_unlock(&log_lock);
}

void
pip_log_stderr(pip_log_level level, const char *line, void *ctx)
{
    (void)level;
    (void)ctx;
    /* One call, so that stdio's stream lock keeps the line whole. */
    fprintf(stderr, "%s\n", line);
}

int
pip_log_level_parse(const char *name)
{
    if (name == NULL) {
        return -1;
    }
    for (int i = 0; i <= PIP_LOG_TRACE; i++) {
        if (strcasecmp(name, log_level_words[i]) == 0) {
            return i;
        }
    }
    return -1;
}

int
pip_log_enabled(pip_log_level level)
{
    return (int)level >= PIP_LOG_ERROR &&
           (int)level <= atomic_load(&log_max_level) &&
           atomic_load(&log_sink_set);
}

/* ---- line formatting ---- */

typedef struct log_line {
    char buf[LOG_LINE_MAX];
    size_t len;
    bool full;   /* a write did not fit; the line ends in "..." */
    bool quoted; /* inside a quoted value */
} log_line;

static void
log_put(log_line *l, const char *s, size_t n)
{
    if (l->full || l->len + n > LOG_LINE_MAX - LOG_LINE_RESERVE) {
        l->full = true;
        return;
    }
    memcpy(l->buf + l->len, s, n);
    l->len += n;
}

static void
log_put_str(log_line *l, const char *s)
{
    log_put(l, s, strlen(s));
}

static void
log_put_escaped_char(log_line *l, unsigned char c)
{
    char esc[5];

    switch (c) {
    case '"':
        log_put(l, "\\\"", 2);
        return;
    case '\\':
        log_put(l, "\\\\", 2);
        return;
    case '\n':
        log_put(l, "\\n", 2);
        return;
    case '\r':
        log_put(l, "\\r", 2);
        return;
    case '\t':
        log_put(l, "\\t", 2);
        return;
    default:
        break;
    }
    if (c < 0x20 || c == 0x7f) {
        snprintf(esc, sizeof(esc), "\\x%02x", c);
        log_put(l, esc, 4);
        return;
    }
    log_put(l, (const char *)&c, 1);
}

static void
log_put_quoted(log_line *l, const char *s)
{
    log_put(l, "\"", 1);
    l->quoted = !l->full;
    for (const unsigned char *p = (const unsigned char *)s;
         *p != '\0' && !l->full; p++) {
        log_put_escaped_char(l, *p);
    }
    log_put(l, "\"", 1);
    if (!l->full) {
        l->quoted = false;
    }
}

static bool
log_bare_safe(const char *s)
{
    if (s[0] == '\0') {
        return false;
    }
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
        if (*p <= 0x20 || *p >= 0x7f || *p == '"' || *p == '\\' || *p == '=') {
            return false;
        }
    }
    return true;
}

static void
log_put_value(log_line *l, const char *s)
{
    if (log_bare_safe(s)) {
        log_put_str(l, s);
    } else {
        log_put_quoted(l, s);
    }
}

/* Ends the line: `..."` or `...` when cut, and the NUL. */
static void
log_finish(log_line *l, bool text_cut)
{
    if (l->full || text_cut) {
        if (!l->full) {
            /* The quote that log_put_quoted() wrote is moved after "...". */
            l->len--;
            l->quoted = true;
        }
        memcpy(l->buf + l->len, "...", 3);
        l->len += 3;
        if (l->quoted) {
            l->buf[l->len++] = '"';
        }
    }
    l->buf[l->len] = '\0';
}

static void
log_format(log_line *l, pip_log_level level, const char *node, const char *cid,
           const char *text, bool text_cut)
{
    char now[PIP_TIME_STRLEN];

    pip_time_format(pip_now_ms(), now);
    log_put_str(l, now);
    log_put(l, " ", 1);
    log_put_str(l, log_level_names[level]);
    log_put(l, " node=", 6);
    log_put_value(l, node != NULL ? node : "");
    if (cid != NULL && cid[0] != '\0') {
        log_put(l, " cid=", 5);
        log_put_value(l, cid);
    }
    log_put(l, " msg=", 5);
    log_put_quoted(l, text);
    log_finish(l, text_cut);
}

void
pip_vlog(pip_log_level level, const char *node, const char *cid,
         const char *fmt, va_list ap)
{
    char text[LOG_TEXT_MAX];
    log_line line;
    bool text_cut;
    int n;

    if (!pip_log_enabled(level)) {
        return;
    }
    n = vsnprintf(text, sizeof(text), fmt, ap);
    if (n < 0) {
        snprintf(text, sizeof(text), "(invalid log format \"%.64s\")", fmt);
    }
    text_cut = n >= (int)sizeof(text);

    line.len = 0;
    line.full = false;
    line.quoted = false;
    log_format(&line, level, node, cid, text, text_cut);

    pthread_rwlock_rdlock(&log_lock);
    if (log_sink != NULL) {
        log_sink(level, line.buf, log_sink_ctx);
    }
    pthread_rwlock_unlock(&log_lock);
}

void
pip_log(pip_log_level level, const char *node, const char *cid,
        const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    pip_vlog(level, node, cid, fmt, ap);
    va_end(ap);
}
