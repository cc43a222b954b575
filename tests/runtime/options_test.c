/*
 * pip_node_options_parse: flags in both forms, environment variables,
 * settings from --set, PIP_SET and --config files, and bad values
 * rejected with the flag named.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pip/log.h"
#include "pip/node.h"

static const char *const options_env_names[] = {
    "PIP_LISTEN",        "PIP_PUB",       "PIP_DATA",     "PIP_DISCOVERY",
    "PIP_HOST",          "PIP_WORKERS",   "PIP_CONTEXTS", "PIP_LEASE_MS",
    "PIP_MAX_MSG_BYTES", "PIP_MAX_DEPTH", "PIP_SYNC",     "PIP_SET",
    "PIP_CONFIG",        "PIP_LOG_LEVEL", NULL,
};

/* Options, a copy of argv that parse may reorder, and a temp file. */
typedef struct options_fixture {
    pip_node_options opt;
    pip_error err;
    int argc;
    char *argv[32];
    char config_path[64];
} options_fixture;

static void
options_clear_env(void)
{
    for (int i = 0; options_env_names[i] != NULL; i++) {
        unsetenv(options_env_names[i]);
    }
}

static int
options_setup(void **state)
{
    options_fixture *f = calloc(1, sizeof(*f));

    assert_non_null(f);
    options_clear_env();
    pip_node_options_init(&f->opt);
    pip_error_init(&f->err);
    *state = f;
    return 0;
}

static int
options_teardown(void **state)
{
    options_fixture *f = *state;

    options_clear_env();
    if (f->config_path[0] != '\0') {
        unlink(f->config_path);
    }
    pip_node_options_fini(&f->opt);
    pip_error_fini(&f->err);
    free(f);
    return 0;
}

/* Parses the NULL-ended words as a command line after "prog". */
static int
options_parse(options_fixture *f, const char *const *words)
{
    f->argc = 0;
    f->argv[f->argc++] = "prog";
    for (int i = 0; words[i] != NULL; i++) {
        f->argv[f->argc++] = (char *)words[i];
    }
    f->argv[f->argc] = NULL;
    return pip_node_options_parse(&f->opt, &f->argc, f->argv, &f->err);
}

static const char *
options_setting(const options_fixture *f, const char *key)
{
    return json_string_value(json_object_get(f->opt.settings, key));
}

static void
options_write_config(options_fixture *f, const char *text)
{
    int fd;

    snprintf(f->config_path, sizeof(f->config_path),
             "/tmp/pip-options-XXXXXX");
    fd = mkstemp(f->config_path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
}

static void
test_defaults(void **state)
{
    options_fixture *f = *state;
    static const char *const none[] = {NULL};

    assert_int_equal(options_parse(f, none), PIP_OK);
    assert_string_equal(f->opt.listen[0], "tcp://127.0.0.1:0");
    assert_null(f->opt.listen[1]);
    assert_string_equal(f->opt.pub_listen, "tcp://127.0.0.1:0");
    assert_string_equal(f->opt.data_dir, "./pipdata");
    assert_null(f->opt.discovery_url);
    assert_int_equal(f->opt.workers, 4);
    assert_int_equal(f->opt.contexts, 64);
    assert_int_equal(f->opt.lease_ms, 10000);
    assert_int_equal(f->opt.limits.max_msg_bytes, 1024 * 1024);
    assert_int_equal(f->opt.limits.max_depth, 32);
    assert_false(f->opt.sync_writes);
    assert_int_equal(f->opt.log_level, PIP_LOG_INFO);
    assert_int_equal(f->argc, 1);
}

static void
test_flags_both_forms(void **state)
{
    options_fixture *f = *state;
    static const char *const words[] = {
        "--listen",
        "tcp://127.0.0.1:7001",
        "--listen=ipc:///tmp/pip-opt.ipc",
        "--pub",
        "tcp://127.0.0.1:7002",
        "--data=/tmp/pipdata-x",
        "--discovery",
        "tcp://127.0.0.1:7000",
        "--host",
        "edge-1",
        "--workers=8",
        "--contexts",
        "128",
        "--lease-ms",
        "3000",
        "--max-msg-bytes=4096",
        "--max-depth",
        "16",
        "--sync",
        "--log-level",
        "debug",
        NULL,
    };

    assert_int_equal(options_parse(f, words), PIP_OK);
    assert_string_equal(f->opt.listen[0], "tcp://127.0.0.1:7001");
    assert_string_equal(f->opt.listen[1], "ipc:///tmp/pip-opt.ipc");
    assert_null(f->opt.listen[2]);
    assert_string_equal(f->opt.pub_listen, "tcp://127.0.0.1:7002");
    assert_string_equal(f->opt.data_dir, "/tmp/pipdata-x");
    assert_string_equal(f->opt.discovery_url, "tcp://127.0.0.1:7000");
    assert_string_equal(f->opt.host, "edge-1");
    assert_int_equal(f->opt.workers, 8);
    assert_int_equal(f->opt.contexts, 128);
    assert_int_equal(f->opt.lease_ms, 3000);
    assert_int_equal(f->opt.limits.max_msg_bytes, 4096);
    assert_int_equal(f->opt.limits.max_depth, 16);
    assert_true(f->opt.sync_writes);
    assert_int_equal(f->opt.log_level, PIP_LOG_DEBUG);
    assert_int_equal(f->argc, 1);
}

static void
test_program_args_kept_in_order(void **state)
{
    options_fixture *f = *state;
    static const char *const words[] = {
        "counters", "--workers", "2", "--verbose", "settings",
        "--",       "--workers", "9", NULL,
    };

    assert_int_equal(options_parse(f, words), PIP_OK);
    assert_int_equal(f->opt.workers, 2);
    assert_int_equal(f->argc, 7);
    assert_string_equal(f->argv[0], "prog");
    assert_string_equal(f->argv[1], "counters");
    assert_string_equal(f->argv[2], "--verbose");
    assert_string_equal(f->argv[3], "settings");
    assert_string_equal(f->argv[4], "--");
    assert_string_equal(f->argv[5], "--workers");
    assert_string_equal(f->argv[6], "9");
    assert_null(f->argv[7]);
}

static void
test_env_read_and_flags_win(void **state)
{
    options_fixture *f = *state;
    static const char *const words[] = {"--workers", "3", NULL};

    setenv("PIP_WORKERS", "12", 1);
    setenv("PIP_CONTEXTS", "16", 1);
    setenv("PIP_LISTEN", "tcp://127.0.0.1:7101,ipc:///tmp/pip-env.ipc", 1);
    setenv("PIP_SYNC", "1", 1);
    setenv("PIP_LOG_LEVEL", "warn", 1);

    assert_int_equal(options_parse(f, words), PIP_OK);
    assert_int_equal(f->opt.workers, 3);
    assert_int_equal(f->opt.contexts, 16);
    assert_string_equal(f->opt.listen[0], "tcp://127.0.0.1:7101");
    assert_string_equal(f->opt.listen[1], "ipc:///tmp/pip-env.ipc");
    assert_null(f->opt.listen[2]);
    assert_true(f->opt.sync_writes);
    assert_int_equal(f->opt.log_level, PIP_LOG_WARN);
}

static void
test_listen_flag_replaces_env(void **state)
{
    options_fixture *f = *state;
    static const char *const words[] = {"--listen", "tcp://127.0.0.1:7201",
                                        NULL};

    setenv("PIP_LISTEN", "tcp://127.0.0.1:7101,tcp://127.0.0.1:7102", 1);
    assert_int_equal(options_parse(f, words), PIP_OK);
    assert_string_equal(f->opt.listen[0], "tcp://127.0.0.1:7201");
    assert_null(f->opt.listen[1]);
}

static void
test_sync_switch_takes_value(void **state)
{
    options_fixture *f = *state;
    static const char *const words[] = {"--sync=false", NULL};

    setenv("PIP_SYNC", "yes", 1);
    assert_int_equal(options_parse(f, words), PIP_OK);
    assert_false(f->opt.sync_writes);
}

static void
test_set_adds_settings(void **state)
{
    options_fixture *f = *state;
    static const char *const words[] = {
        "--set",
        "logging.options.expire_logs_timeout=3",
        "--set=counters.options.max_page_size=50",
        "--set",
        "settings.options.note=a=b",
        NULL,
    };

    setenv("PIP_SET", "jobs.options.a=1,jobs.options.b=two", 1);
    assert_int_equal(options_parse(f, words), PIP_OK);
    assert_string_equal(options_setting(f, "logging.options."
                                           "expire_logs_timeout"),
                        "3");
    assert_string_equal(options_setting(f, "counters.options.max_page_size"),
                        "50");
    assert_string_equal(options_setting(f, "settings.options.note"), "a=b");
    assert_string_equal(options_setting(f, "jobs.options.a"), "1");
    assert_string_equal(options_setting(f, "jobs.options.b"), "two");
}

static void
test_config_file_flattened(void **state)
{
    options_fixture *f = *state;
    const char *words[] = {"--config", NULL, NULL};

    options_write_config(
        f, "{\"logging\": {\"options\": {\"expire_logs_timeout\": 3,"
           " \"ratio\": 0.5, \"enabled\": true, \"skip\": null,"
           " \"tags\": [1, 2]}},"
           " \"counters.options.name\": \"x\"}");
    words[1] = f->config_path;
    assert_int_equal(options_parse(f, words), PIP_OK);
    assert_string_equal(options_setting(f, "logging.options."
                                           "expire_logs_timeout"),
                        "3");
    assert_string_equal(options_setting(f, "logging.options.ratio"), "0.5");
    assert_string_equal(options_setting(f, "logging.options.enabled"), "true");
    assert_null(options_setting(f, "logging.options.skip"));
    assert_string_equal(options_setting(f, "logging.options.tags"), "[1,2]");
    assert_string_equal(options_setting(f, "counters.options.name"), "x");
}

static void
test_later_setting_wins(void **state)
{
    options_fixture *f = *state;
    const char *words[] = {"--config", NULL, "--set",
                           "logging.options.level=9", NULL};

    options_write_config(f, "{\"logging\": {\"options\": {\"level\": 1}}}");
    words[1] = f->config_path;
    setenv("PIP_SET", "logging.options.level=5", 1);
    assert_int_equal(options_parse(f, words), PIP_OK);
    assert_string_equal(options_setting(f, "logging.options.level"), "9");
}

/* Expects parse to fail with INVALID_OPTION naming `named` and `value`. */
static void
options_expect_rejected(options_fixture *f, const char *const *words,
                        const char *named, const char *value)
{
    int rv = options_parse(f, words);

    if (rv == PIP_OK) {
        fail_msg("%s %s was accepted", named, value);
    }
    assert_int_equal(rv, PIP_E_BAD_REQUEST);
    assert_string_equal(f->err.code, "INVALID_OPTION");
    if (strstr(f->err.message, named) == NULL ||
        strstr(f->err.message, value) == NULL) {
        fail_msg("message does not name %s and %s: %s", named, value,
                 f->err.message);
    }
    pip_error_fini(&f->err);
}

static void
test_bad_numbers_rejected(void **state)
{
    options_fixture *f = *state;
    static const char *const trailing[] = {"--workers", "12abc", NULL};
    static const char *const zero[] = {"--workers=0", NULL};
    static const char *const negative[] = {"--contexts", "-4", NULL};
    static const char *const huge[] = {"--max-depth", "100000", NULL};
    static const char *const overflow[] = {"--max-msg-bytes",
                                           "99999999999999999999999", NULL};
    static const char *const empty[] = {"--lease-ms=", NULL};
    static const char *const spaced[] = {"--workers", " 4", NULL};

    assert_int_equal(options_parse(f, trailing), PIP_E_BAD_REQUEST);
    assert_string_equal(
        json_string_value(json_object_get(f->err.details, "option")),
        "--workers");
    assert_string_equal(
        json_string_value(json_object_get(f->err.details, "value")), "12abc");
    pip_error_fini(&f->err);
    options_expect_rejected(f, trailing, "--workers", "12abc");
    options_expect_rejected(f, zero, "--workers", "0");
    options_expect_rejected(f, negative, "--contexts", "-4");
    options_expect_rejected(f, huge, "--max-depth", "100000");
    options_expect_rejected(f, overflow, "--max-msg-bytes",
                            "99999999999999999999999");
    options_expect_rejected(f, empty, "--lease-ms", "");
    options_expect_rejected(f, spaced, "--workers", " 4");
}

static void
test_bad_values_rejected(void **state)
{
    options_fixture *f = *state;
    static const char *const level[] = {"--log-level", "loud", NULL};
    static const char *const url[] = {"--listen", "127.0.0.1:5000", NULL};
    static const char *const no_eq[] = {"--set", "logging.level", NULL};
    static const char *const no_dot[] = {"--set", "level=3", NULL};
    static const char *const sync[] = {"--sync=maybe", NULL};
    static const char *const too_many[] = {
        "--listen", "tcp://127.0.0.1:1", "--listen", "tcp://127.0.0.1:2",
        "--listen", "tcp://127.0.0.1:3", "--listen", "tcp://127.0.0.1:4",
        "--listen", "tcp://127.0.0.1:5", NULL};

    options_expect_rejected(f, level, "--log-level", "loud");
    options_expect_rejected(f, url, "--listen", "127.0.0.1:5000");
    options_expect_rejected(f, no_eq, "--set", "logging.level");
    options_expect_rejected(f, no_dot, "--set", "level=3");
    options_expect_rejected(f, sync, "--sync", "maybe");
    options_expect_rejected(f, too_many, "--listen", "tcp://127.0.0.1:5");
}

static void
test_missing_value_rejected(void **state)
{
    options_fixture *f = *state;
    static const char *const words[] = {"--workers", NULL};

    assert_int_equal(options_parse(f, words), PIP_E_BAD_REQUEST);
    assert_non_null(strstr(f->err.message, "--workers"));
}

static void
test_bad_env_names_variable(void **state)
{
    options_fixture *f = *state;
    static const char *const none[] = {NULL};

    setenv("PIP_MAX_DEPTH", "deep", 1);
    options_expect_rejected(f, none, "PIP_MAX_DEPTH", "deep");
}

static void
test_bad_config_files_rejected(void **state)
{
    options_fixture *f = *state;
    const char *words[] = {"--config", NULL, NULL};
    static const char *const missing[] = {
        "--config", "/nonexistent/pip-config.json", NULL};

    options_expect_rejected(f, missing, "--config",
                            "/nonexistent/pip-config.json");

    options_write_config(f, "[1, 2]");
    words[1] = f->config_path;
    options_expect_rejected(f, words, "--config", f->config_path);
    unlink(f->config_path);

    options_write_config(f, "{\"toplevel\": 1}");
    words[1] = f->config_path;
    options_expect_rejected(f, words, "--config", "toplevel");
    unlink(f->config_path);

    options_write_config(f, "{\"logging\": {\"options\": ");
    words[1] = f->config_path;
    options_expect_rejected(f, words, "--config", f->config_path);
}

static void
test_config_errors_located(void **state)
{
    options_fixture *f = *state;
    const char *words[] = {"--config", NULL, NULL};
    static const char *const missing[] = {
        "--config", "/nonexistent/pip-config.json", NULL};

    /* A file that cannot be opened has no line to show. */
    assert_int_equal(options_parse(f, missing), PIP_E_BAD_REQUEST);
    assert_null(strstr(f->err.message, "line"));
    assert_non_null(strstr(f->err.message, "No such file"));
    pip_error_fini(&f->err);

    options_write_config(f, "{\"logging\":\n {\"options\": }}");
    words[1] = f->config_path;
    assert_int_equal(options_parse(f, words), PIP_E_BAD_REQUEST);
    assert_non_null(strstr(f->err.message, "line 2, column"));
    pip_error_fini(&f->err);
}

static void
test_help_lists_every_flag(void **state)
{
    static const char *const flags[] = {
        "--listen URL",
        "--pub URL",
        "--data DIR",
        "--discovery URL",
        "--host NAME",
        "--workers N",
        "--contexts N",
        "--lease-ms N",
        "--max-msg-bytes N",
        "--max-depth N",
        "--sync",
        "--set KEY=VALUE",
        "--config FILE",
        "--log-level LEVEL",
        "PIP_LISTEN",
        "PIP_SET",
        NULL,
    };
    const char *help = pip_node_options_help();

    (void)state;
    for (int i = 0; flags[i] != NULL; i++) {
        if (strstr(help, flags[i]) == NULL) {
            fail_msg("help does not mention %s", flags[i]);
        }
    }
    for (const char *line = help; *line != '\0';) {
        size_t len = strcspn(line, "\n");

        assert_true(len <= 79);
        line += len + (line[len] == '\n' ? 1 : 0);
    }
}

#define OPTIONS_TEST(fn)                                                      \
    cmocka_unit_test_setup_teardown(fn, options_setup, options_teardown)

int
main(void)
{
    const struct CMUnitTest tests[] = {
        OPTIONS_TEST(test_defaults),
        OPTIONS_TEST(test_flags_both_forms),
        OPTIONS_TEST(test_program_args_kept_in_order),
        OPTIONS_TEST(test_env_read_and_flags_win),
        OPTIONS_TEST(test_listen_flag_replaces_env),
        OPTIONS_TEST(test_sync_switch_takes_value),
        OPTIONS_TEST(test_set_adds_settings),
        OPTIONS_TEST(test_config_file_flattened),
        OPTIONS_TEST(test_later_setting_wins),
        OPTIONS_TEST(test_bad_numbers_rejected),
        OPTIONS_TEST(test_bad_values_rejected),
        OPTIONS_TEST(test_missing_value_rejected),
        OPTIONS_TEST(test_bad_env_names_variable),
        OPTIONS_TEST(test_bad_config_files_rejected),
        OPTIONS_TEST(test_config_errors_located),
        OPTIONS_TEST(test_help_lists_every_flag),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
