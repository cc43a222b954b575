/*
 * The workload parser and placeholders: good files, bad files whose
 * error names the line, argument forms, weights and {n}/{rand}.
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

#include "workload.h"

static void
test_parse_mixed_file(void **state)
{
    const char *text =
        "# a write-heavy mix\n"
        "\n"
        "80 counters.write_counter counter={\"name\": \"bench.{n}\", "
        "\"type\": 4, \"count\": 1}\n"
        "  15 settings.get_section_by_id id=kiosk-{rand:10}\n"
        "5 counters.read_counters {\"filter\": {\"group\": \"bench\"}}\n"
        "1 logging.ping\n";
    bench_workload w;
    pip_error err;

    (void)state;
    pip_error_init(&err);
    bench_workload_init(&w);
    assert_int_equal(bench_workload_parse(&w, text, "mix.txt", &err), PIP_OK);
    assert_int_equal(w.command_count, 4);
    assert_int_equal(w.total_weight, 101);
    assert_int_equal(w.service_count, 3);
    assert_string_equal(w.services[0], "counters");
    assert_string_equal(w.services[1], "settings");
    assert_string_equal(w.services[2], "logging");
    assert_string_equal(w.commands[0].method, "counters.write_counter");
    assert_true(w.commands[0].has_placeholders);
    assert_int_equal(
        json_integer_value(json_object_get(
            json_object_get(w.commands[0].args, "counter"), "type")), 4);
    assert_int_equal(w.commands[1].target, 1);
    assert_true(w.commands[1].has_placeholders);
    assert_false(w.commands[2].has_placeholders);
    assert_non_null(json_object_get(w.commands[2].args, "filter"));
    assert_int_equal(json_object_size(w.commands[3].args), 0);
    bench_workload_fini(&w);
    pip_error_fini(&err);
}

/* Parses text, expecting failure, and checks the message's start. */
static void
assert_parse_fails(const char *text, const char *prefix)
{
    bench_workload w;
    pip_error err;
    int rv;

    pip_error_init(&err);
    bench_workload_init(&w);
    rv = bench_workload_parse(&w, text, "bad.txt", &err);
    if (rv == PIP_OK) {
        fail_msg("accepted: %s", text);
    }
    assert_int_equal(rv, PIP_E_BAD_REQUEST);
    assert_string_equal(err.code, "INVALID_WORKLOAD");
    if (strncmp(err.message, prefix, strlen(prefix)) != 0) {
        fail_msg("message '%s' does not start with '%s'", err.message,
                 prefix);
    }
    bench_workload_fini(&w);
    pip_error_fini(&err);
}

static void
test_bad_weight_names_line(void **state)
{
    (void)state;
    assert_parse_fails("1 counters.ping\nx counters.ping\n",
                       "bad.txt:2: the weight 'x'");
    assert_parse_fails("# comment\n\n0 counters.ping\n",
                       "bad.txt:3: the weight '0'");
    assert_parse_fails("-3 counters.ping\n", "bad.txt:1: the weight '-3'");
    assert_parse_fails("99999999 counters.ping\n", "bad.txt:1: the weight");
}

static void
test_bad_method_names_line(void **state)
{
    (void)state;
    assert_parse_fails("1 counters.ping\n1 Counters.Ping\n",
                       "bad.txt:2: Invalid method 'Counters.Ping'");
    assert_parse_fails("1 ping\n", "bad.txt:1: Invalid method 'ping'");
    assert_parse_fails("1 counters.\n", "bad.txt:1: Invalid method");
    assert_parse_fails("1\n", "bad.txt:1: expected WEIGHT");
}

static void
test_bad_arguments_name_line(void **state)
{
    (void)state;
    assert_parse_fails("1 counters.ping\n\n1 counters.write_counter a={\n",
                       "bad.txt:3: unclosed quote or bracket");
    assert_parse_fails("1 counters.write_counter {\"a\": 1\n",
                       "bad.txt:1: unclosed");
    assert_parse_fails("1 counters.write_counter novalue\n",
                       "bad.txt:1: Argument 'novalue' is neither");
    assert_parse_fails("1 counters.write_counter {\"a\": }\n",
                       "bad.txt:1: The arguments are not a JSON object");
}

static void
test_empty_file_fails(void **state)
{
    (void)state;
    assert_parse_fails("", "bad.txt: the workload has no commands");
    assert_parse_fails("# only a comment\n\n",
                       "bad.txt: the workload has no commands");
}

static void
test_too_many_services_fail(void **state)
{
    char text[1024] = "";

    (void)state;
    for (int i = 0; i <= BENCH_MAX_TARGETS; i++) {
        char line[64];

        snprintf(line, sizeof(line), "1 service%d.ping\n", i);
        strcat(text, line);
    }
    assert_parse_fails(text, "bad.txt:9: A workload may call at most");
}

static void
test_load_missing_file_fails(void **state)
{
    bench_workload w;
    pip_error err;

    (void)state;
    pip_error_init(&err);
    bench_workload_init(&w);
    assert_int_equal(bench_workload_load(&w, "/nonexistent/mix.txt", &err),
                     PIP_E_NOT_FOUND);
    assert_non_null(strstr(err.message, "/nonexistent/mix.txt"));
    bench_workload_fini(&w);
    pip_error_fini(&err);
}

static void
test_load_reads_file(void **state)
{
    char path[] = "/tmp/workload_test_XXXXXX";
    bench_workload w;
    pip_error err;
    int fd = mkstemp(path);

    (void)state;
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "2 counters.ping\n3 settings.ping", 31), 31);
    close(fd);
    pip_error_init(&err);
    bench_workload_init(&w);
    assert_int_equal(bench_workload_load(&w, path, &err), PIP_OK);
    assert_int_equal(w.command_count, 2);
    assert_int_equal(w.total_weight, 5);
    unlink(path);
    bench_workload_fini(&w);
    pip_error_fini(&err);
}

static void
test_key_value_arguments(void **state)
{
    const char *words[] = {"id=kiosk-7", "count=3", "flag=true",
                           "obj={\"a\": [1, 2]}", "text=\"quoted\""};
    json_t *args = NULL;
    pip_error err;

    (void)state;
    pip_error_init(&err);
    assert_int_equal(bench_args_parse(words, 5, &args, &err), PIP_OK);
    assert_string_equal(json_string_value(json_object_get(args, "id")),
                        "kiosk-7");
    assert_int_equal(json_integer_value(json_object_get(args, "count")), 3);
    assert_true(json_is_true(json_object_get(args, "flag")));
    assert_int_equal(json_array_size(json_object_get(
                         json_object_get(args, "obj"), "a")), 2);
    assert_string_equal(json_string_value(json_object_get(args, "text")),
                        "quoted");
    json_decref(args);
    pip_error_fini(&err);
}

static void
test_placeholders_expand(void **state)
{
    const char *text = "1 counters.write_counter name=c.{n}.x count={n} "
                       "r={rand:10} plain=abc nested={\"k\": [\"{n}\"]}\n";
    bench_workload w;
    pip_error err;
    uint64_t rng = 12345;

    (void)state;
    pip_error_init(&err);
    bench_workload_init(&w);
    assert_int_equal(bench_workload_parse(&w, text, "p.txt", &err), PIP_OK);
    for (uint64_t n = 0; n < 50; n++) {
        json_t *args = bench_args_expand(&w.commands[0], n, &rng);
        char expected[32];
        json_int_t r;

        assert_non_null(args);
        snprintf(expected, sizeof(expected), "c.%llu.x",
                 (unsigned long long)n);
        assert_string_equal(json_string_value(json_object_get(args, "name")),
                            expected);
        assert_int_equal(json_integer_value(json_object_get(args, "count")),
                         n);
        r = json_integer_value(json_object_get(args, "r"));
        assert_true(json_is_integer(json_object_get(args, "r")));
        assert_true(r >= 0 && r < 10);
        assert_string_equal(json_string_value(json_object_get(args, "plain")),
                            "abc");
        assert_int_equal(json_integer_value(json_array_get(json_object_get(
                             json_object_get(args, "nested"), "k"), 0)), n);
        json_decref(args);
    }
    /* The template itself is unchanged. */
    assert_string_equal(
        json_string_value(json_object_get(w.commands[0].args, "name")),
        "c.{n}.x");
    bench_workload_fini(&w);
    pip_error_fini(&err);
}

static void
test_pick_follows_weights(void **state)
{
    bench_workload w;
    pip_error err;
    int counts[2] = {0, 0};
    uint64_t rng = 777;

    (void)state;
    pip_error_init(&err);
    bench_workload_init(&w);
    assert_int_equal(bench_workload_parse(&w, "9 a.x\n1 b.y\n", "w", &err),
                     PIP_OK);
    for (int i = 0; i < 100000; i++) {
        const bench_command *cmd =
            bench_workload_pick(&w, (uint32_t)bench_rng_next(&rng));

        counts[cmd == &w.commands[0] ? 0 : 1]++;
    }
    /* 90% and 10%, within one percentage point. */
    assert_true(counts[0] > 89000 && counts[0] < 91000);
    assert_true(counts[1] > 9000 && counts[1] < 11000);
    bench_workload_fini(&w);
    pip_error_fini(&err);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_mixed_file),
        cmocka_unit_test(test_bad_weight_names_line),
        cmocka_unit_test(test_bad_method_names_line),
        cmocka_unit_test(test_bad_arguments_name_line),
        cmocka_unit_test(test_empty_file_fails),
        cmocka_unit_test(test_too_many_services_fail),
        cmocka_unit_test(test_load_missing_file_fails),
        cmocka_unit_test(test_load_reads_file),
        cmocka_unit_test(test_key_value_arguments),
        cmocka_unit_test(test_placeholders_expand),
        cmocka_unit_test(test_pick_follows_weights),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
