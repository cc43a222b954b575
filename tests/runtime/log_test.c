/*
 * Tests of the logger: the line format, escaping, truncation and level
 * filtering, with a sink that keeps the lines in memory.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <pthread.h>
#include <regex.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "pip/log.h"

typedef struct captured {
    int count;
    pip_log_level level;
    char line[4096];
} captured;

static void
capture_sink(pip_log_level level, const char *line, void *ctx)
{
    captured *c = ctx;

    c->count++;
    c->level = level;
    snprintf(c->line, sizeof(c->line), "%s", line);
}

static int
reset_logger(void **state)
{
    (void)state;
    pip_log_configure(NULL, NULL, PIP_LOG_INFO);
    return 0;
}

/* The part of the line after the time stamp and its space. */
static const char *
after_time(const captured *c)
{
    assert_true(strlen(c->line) > 25);
    return c->line + 25;
}

static void
line_format(void **state)
{
    captured c = {0};
    regex_t time_re;

    (void)state;
    pip_log_configure(capture_sink, &c, PIP_LOG_INFO);
    pip_log(PIP_LOG_INFO, "counters", "abc", "started %d workers", 3);

    assert_int_equal(c.count, 1);
    assert_int_equal(c.level, PIP_LOG_INFO);
    assert_int_equal(regcomp(&time_re,
                             "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:"
                             "[0-9]{2}\\.[0-9]{3}Z ",
                             REG_EXTENDED | REG_NOSUB),
                     0);
    assert_int_equal(regexec(&time_re, c.line, 0, NULL, 0), 0);
    regfree(&time_re);
    assert_string_equal(after_time(&c),
                        "INFO node=counters cid=abc msg=\"started 3 workers\"");
}

static void
empty_cid_omitted(void **state)
{
    captured c = {0};

    (void)state;
    pip_log_configure(capture_sink, &c, PIP_LOG_TRACE);
    pip_log(PIP_LOG_ERROR, "store", NULL, "disk full");
    assert_string_equal(after_time(&c), "ERROR node=store msg=\"disk full\"");
    pip_log(PIP_LOG_TRACE, "store", "", "tick");
    assert_string_equal(after_time(&c), "TRACE node=store msg=\"tick\"");
    pip_log(PIP_LOG_WARN, NULL, NULL, "no node");
    assert_string_equal(after_time(&c), "WARN node=\"\" msg=\"no node\"");
}

static void
text_escaped(void **state)
{
    captured c = {0};

    (void)state;
    pip_log_configure(capture_sink, &c, PIP_LOG_DEBUG);
    pip_log(PIP_LOG_DEBUG, "n", "id-1", "say \"hi\" C:\\dir\nnext\tcol\r%c!",
            1);
    assert_string_equal(after_time(&c),
                        "DEBUG node=n cid=id-1 msg=\"say \\\"hi\\\" "
                        "C:\\\\dir\\nnext\\tcol\\r\\x01!\"");
    assert_null(strchr(c.line, '\n'));

    /* A correlation id from the network may contain any bytes. */
    pip_log(PIP_LOG_DEBUG, "n", "a b=\"c\"\n", "x");
    assert_string_equal(after_time(&c),
                        "DEBUG node=n cid=\"a b=\\\"c\\\"\\n\" msg=\"x\"");
    /* UTF-8 text passes unchanged. */
    pip_log(PIP_LOG_DEBUG, "n", NULL, "température");
    assert_string_equal(after_time(&c), "DEBUG node=n msg=\"température\"");
}

static void
long_text_truncated(void **state)
{
    static char text[5000];
    static char quotes[3000];
    captured c = {0};
    size_t len;

    (void)state;
    memset(text, 'a', sizeof(text) - 1);
    memset(quotes, '"', sizeof(quotes) - 1);
    pip_log_configure(capture_sink, &c, PIP_LOG_INFO);

    pip_log(PIP_LOG_INFO, "n", NULL, "%s", text);
    len = strlen(c.line);
    assert_true(len < 2048);
    assert_string_equal(c.line + len - 6, "aa...\"");

    /* Escapes that overflow the line are cut whole. */
    pip_log(PIP_LOG_INFO, "n", NULL, "%s", quotes);
    len = strlen(c.line);
    assert_true(len < 2048);
    assert_string_equal(c.line + len - 6, "\\\"...\"");
}

static void
levels_filtered(void **state)
{
    captured c = {0};

    (void)state;
    pip_log_configure(capture_sink, &c, PIP_LOG_WARN);
    pip_log(PIP_LOG_INFO, "n", NULL, "dropped");
    pip_log(PIP_LOG_DEBUG, "n", NULL, "dropped");
    assert_int_equal(c.count, 0);
    pip_log(PIP_LOG_WARN, "n", NULL, "kept");
    pip_log(PIP_LOG_ERROR, "n", NULL, "kept");
    assert_int_equal(c.count, 2);
    assert_int_equal(c.level, PIP_LOG_ERROR);

    assert_true(pip_log_enabled(PIP_LOG_ERROR));
    assert_true(pip_log_enabled(PIP_LOG_WARN));
    assert_false(pip_log_enabled(PIP_LOG_INFO));
    assert_false(pip_log_enabled((pip_log_level)-1));
    assert_false(pip_log_enabled((pip_log_level)9));

    /* Without a sink nothing is enabled and nothing is called. */
    pip_log_configure(NULL, NULL, PIP_LOG_TRACE);
    assert_false(pip_log_enabled(PIP_LOG_ERROR));
    pip_log(PIP_LOG_ERROR, "n", NULL, "dropped");
    assert_int_equal(c.count, 2);
}

static void
count_sink(pip_log_level level, const char *line, void *ctx)
{
    (void)level;
    if (strchr(line, '\n') == NULL && strstr(line, "msg=\"line ") != NULL) {
        atomic_fetch_add((atomic_int *)ctx, 1);
    }
}

static void *
log_lines(void *arg)
{
    (void)arg;
    for (int i = 0; i < 1000; i++) {
        pip_log(PIP_LOG_INFO, "worker", NULL, "line %d", i);
    }
    return NULL;
}

static void
threads_log_whole_lines(void **state)
{
    atomic_int count = 0;
    pthread_t threads[4];

    (void)state;
    pip_log_configure(count_sink, &count, PIP_LOG_INFO);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(pthread_create(&threads[i], NULL, log_lines, NULL),
                         0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(threads[i], NULL);
    }
    assert_int_equal(atomic_load(&count), 4000);
}

static void
level_names_parsed(void **state)
{
    (void)state;
    assert_int_equal(pip_log_level_parse("error"), PIP_LOG_ERROR);
    assert_int_equal(pip_log_level_parse("warn"), PIP_LOG_WARN);
    assert_int_equal(pip_log_level_parse("info"), PIP_LOG_INFO);
    assert_int_equal(pip_log_level_parse("DEBUG"), PIP_LOG_DEBUG);
    assert_int_equal(pip_log_level_parse("trace"), PIP_LOG_TRACE);
    assert_int_equal(pip_log_level_parse("verbose"), -1);
    assert_int_equal(pip_log_level_parse(""), -1);
    assert_int_equal(pip_log_level_parse(NULL), -1);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(line_format, reset_logger),
        cmocka_unit_test_teardown(empty_cid_omitted, reset_logger),
        cmocka_unit_test_teardown(text_escaped, reset_logger),
        cmocka_unit_test_teardown(long_text_truncated, reset_logger),
        cmocka_unit_test_teardown(levels_filtered, reset_logger),
        cmocka_unit_test_teardown(threads_log_whole_lines, reset_logger),
        cmocka_unit_test(level_names_parsed),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
