/* Workload commands, the workload file parser and placeholders. */
#include "workload.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WORKLOAD_LINE_MAX 4096
#define WORKLOAD_MAX_WORDS 64
#define WORKLOAD_FILE_MAX (1024 * 1024)
#define WORKLOAD_RAND_DEFAULT 1000000

void
bench_workload_init(bench_workload *w)
{
    memset(w, 0, sizeof(*w));
}

void
bench_workload_fini(bench_workload *w)
{
    for (int i = 0; i < w->command_count; i++) {
        json_decref(w->commands[i].args);
    }
    bench_workload_init(w);
}

/* True for "service.command" with both names made of a-z, 0-9 and _. */
static bool
workload_method_valid(const char *method)
{
    const char *dot = strchr(method, '.');
    size_t len = strlen(method);

    if (dot == NULL || dot == method || dot[1] == '\0' ||
        len >= PIP_METHOD_MAX) {
        return false;
    }
    for (const char *p = method; *p != '\0'; p++) {
        if (p != dot && !islower((unsigned char)*p) &&
            !isdigit((unsigned char)*p) && *p != '_') {
            return false;
        }
    }
    return true;
}

/* Returns the index of the method's service, adding it when new. */
static int
workload_target(bench_workload *w, const char *method, pip_error *err)
{
    size_t len = (size_t)(strchr(method, '.') - method);

    for (int i = 0; i < w->service_count; i++) {
        if (strlen(w->services[i]) == len &&
            strncmp(w->services[i], method, len) == 0) {
            return i;
        }
    }
    if (w->service_count == BENCH_MAX_TARGETS || len >= BENCH_SERVICE_MAX) {
        return -pip_error_set(err, PIP_E_BAD_REQUEST, "LIMIT_EXCEEDED",
                              "A workload may call at most %d services.",
                              BENCH_MAX_TARGETS);
    }
    memcpy(w->services[w->service_count], method, len);
    w->services[w->service_count][len] = '\0';
    return w->service_count++;
}

/* True when text contains "{n}" or "{rand". */
static bool
workload_text_has_placeholder(const char *text)
{
    return strstr(text, "{n}") != NULL || strstr(text, "{rand") != NULL;
}

static bool
workload_json_has_placeholder(const json_t *value)
{
    const char *key;
    json_t *item;
    size_t i;

    if (json_is_string(value)) {
        return workload_text_has_placeholder(json_string_value(value));
    }
    json_object_foreach((json_t *)value, key, item) {
        if (workload_json_has_placeholder(item)) {
            return true;
        }
    }
    json_array_foreach(value, i, item) {
        if (workload_json_has_placeholder(item)) {
            return true;
        }
    }
    return false;
}

int
bench_workload_add(bench_workload *w, unsigned weight, const char *method,
                   const json_t *args, pip_error *err)
{
    bench_command *cmd;
    int target;

    if (!workload_method_valid(method)) {
        return pip_error_set(err, PIP_E_BAD_REQUEST, "INVALID_METHOD",
                             "Invalid method '%s': expected service.command "
                             "in a-z, 0-9 and _.", method);
    }
    if (weight == 0) {
        return pip_error_set(err, PIP_E_BAD_REQUEST, "INVALID_DATA",
                             "The weight of %s must be at least 1.", method);
    }
    if (w->command_count == BENCH_MAX_COMMANDS) {
        return pip_error_set(err, PIP_E_BAD_REQUEST, "LIMIT_EXCEEDED",
                             "A workload may have at most %d commands.",
                             BENCH_MAX_COMMANDS);
    }
    if (args != NULL && !json_is_object(args)) {
        return pip_error_set(err, PIP_E_BAD_REQUEST, "INVALID_DATA",
                             "The arguments of %s must be a JSON object.",
                             method);
    }
    target = workload_target(w, method, err);
    if (target < 0) {
        return -target;
    }

    cmd = &w->commands[w->command_count];
    snprintf(cmd->method, sizeof(cmd->method), "%s", method);
    cmd->args = args != NULL ? json_deep_copy(args) : json_object();
    if (cmd->args == NULL) {
        return pip_error_set(err, PIP_E_INTERNAL, "OUT_OF_MEMORY",
                             "Out of memory.");
    }
    cmd->has_placeholders = workload_json_has_placeholder(cmd->args);
    cmd->weight = weight;
    cmd->target = target;
    w->total_weight += weight;
    w->command_count++;
    return PIP_OK;
}

/* Sets key=value in args; the value is JSON when it parses as JSON. */
static int
workload_set_pair(json_t *args, const char *word, pip_error *err)
{
    const char *eq = strchr(word, '=');
    char key[256];
    json_t *value;

    if (eq == NULL || eq == word || (size_t)(eq - word) >= sizeof(key)) {
        return pip_error_set(err, PIP_E_BAD_REQUEST, "INVALID_DATA",
                             "Argument '%s' is neither key=value nor a JSON "
                             "object.", word);
    }
    memcpy(key, word, (size_t)(eq - word));
    key[eq - word] = '\0';
    value = json_loads(eq + 1, JSON_DECODE_ANY, NULL);
    if (value == NULL) {
        value = json_string(eq + 1);
    }
    if (value == NULL || json_object_set_new(args, key, value) != 0) {
        return pip_error_set(err, PIP_E_BAD_REQUEST, "INVALID_DATA",
                             "Argument '%s' is not valid UTF-8 text.", word);
    }
    return PIP_OK;
}

int
bench_args_parse(const char *const *words, int count, json_t **args,
                 pip_error *err)
{
    json_error_t jerr;
    int rv = PIP_OK;

    *args = NULL;
    if (count == 1 && words[0][0] == '{') {
        *args = json_loads(words[0], 0, &jerr);
        if (*args == NULL || !json_is_object(*args)) {
            json_decref(*args);
            *args = NULL;
            return pip_error_set(err, PIP_E_BAD_REQUEST, "INVALID_DATA",
                                 "The arguments are not a JSON object: %s.",
                                 jerr.text);
        }
        return PIP_OK;
    }
    *args = json_object();
    if (*args == NULL) {
        return pip_error_set(err, PIP_E_INTERNAL, "OUT_OF_MEMORY",
                             "Out of memory.");
    }
    for (int i = 0; i < count && rv == PIP_OK; i++) {
        rv = workload_set_pair(*args, words[i], err);
    }
    if (rv != PIP_OK) {
        json_decref(*args);
        *args = NULL;
    }
    return rv;
}

/*
 * Splits line in place into words at blanks that are outside quotes,
 * brackets and braces, so a JSON value may contain blanks.  Returns the
 * word count, or -1 when a quote or bracket is not closed.
 */
static int
workload_split(char *line, char **words, int max_words)
{
    int count = 0;
    char *p = line;

    while (*p != '\0') {
        int depth = 0;
        bool quoted = false;

        while (isspace((unsigned char)*p)) {
            p++;
        }
        if (*p == '\0') {
            break;
        }
        if (count == max_words) {
            return -1;
        }
        words[count++] = p;
        for (; *p != '\0'; p++) {
            if (quoted) {
                if (*p == '\\' && p[1] != '\0') {
                    p++;
                } else if (*p == '"') {
                    quoted = false;
                }
            } else if (*p == '"') {
                quoted = true;
            } else if (*p == '{' || *p == '[') {
                depth++;
            } else if (*p == '}' || *p == ']') {
                depth--;
            } else if (depth == 0 && isspace((unsigned char)*p)) {
                break;
            }
        }
        if (quoted || depth != 0) {
            return -1;
        }
        if (*p != '\0') {
            *p++ = '\0';
        }
    }
    return count;
}

/* Reads the weight word: a positive integer of at most 1000000. */
static bool
workload_parse_weight(const char *word, unsigned *weight)
{
    char *end;
    long value;

    errno = 0;
    value = strtol(word, &end, 10);
    if (errno != 0 || end == word || *end != '\0' || value < 1 ||
        value > 1000000) {
        return false;
    }
    *weight = (unsigned)value;
    return true;
}

static int
workload_parse_line(bench_workload *w, char *line, const char *name,
                    int line_number, pip_error *err)
{
    char *words[WORKLOAD_MAX_WORDS];
    unsigned weight;
    json_t *args = NULL;
    int count;
    int rv;

    count = workload_split(line, words, WORKLOAD_MAX_WORDS);
    if (count < 0) {
        return pip_error_set(err, PIP_E_BAD_REQUEST, "INVALID_WORKLOAD",
                             "%s:%d: unclosed quote or bracket, or more than "
                             "%d words.", name, line_number,
                             WORKLOAD_MAX_WORDS);
    }
    if (count < 2) {
        return pip_error_set(err, PIP_E_BAD_REQUEST, "INVALID_WORKLOAD",
                             "%s:%d: expected WEIGHT SERVICE.COMMAND "
                             "[ARGUMENTS].", name, line_number);
    }
    if (!workload_parse_weight(words[0], &weight)) {
        return pip_error_set(err, PIP_E_BAD_REQUEST, "INVALID_WORKLOAD",
                             "%s:%d: the weight '%s' is not an integer from "
                             "1 to 1000000.", name, line_number, words[0]);
    }

    rv = bench_args_parse((const char *const *)words + 2, count - 2, &args,
                          err);
    if (rv == PIP_OK) {
        rv = bench_workload_add(w, weight, words[1], args, err);
    }
    json_decref(args);
    if (rv != PIP_OK) {
        char message[PIP_MESSAGE_MAX];

        snprintf(message, sizeof(message), "%s", err->message);
        pip_error_set(err, PIP_E_BAD_REQUEST, "INVALID_WORKLOAD",
                      "%s:%d: %s", name, line_number, message);
    }
    return rv;
}

int
bench_workload_parse(bench_workload *w, const char *text, const char *name,
                     pip_error *err)
{
    char line[WORKLOAD_LINE_MAX];
    int line_number = 0;

    while (*text != '\0') {
        const char *end = strchr(text, '\n');
        size_t len = end != NULL ? (size_t)(end - text) : strlen(text);
        char *p;
        int rv;

        line_number++;
        if (len >= sizeof(line)) {
            return pip_error_set(err, PIP_E_BAD_REQUEST, "INVALID_WORKLOAD",
                                 "%s:%d: the line is longer than %d bytes.",
                                 name, line_number, WORKLOAD_LINE_MAX - 1);
        }
        memcpy(line, text, len);
        line[len] = '\0';
        text += end != NULL ? len + 1 : len;

        for (p = line; isspace((unsigned char)*p); p++) {
        }
        if (*p == '\0' || *p == '#') {
            continue;
        }
        rv = workload_parse_line(w, p, name, line_number, err);
        if (rv != PIP_OK) {
            return rv;
        }
    }
    if (w->command_count == 0) {
        return pip_error_set(err, PIP_E_BAD_REQUEST, "INVALID_WORKLOAD",
                             "%s: the workload has no commands.", name);
    }
    return PIP_OK;
}

int
bench_workload_load(bench_workload *w, const char *path, pip_error *err)
{
    FILE *f = fopen(path, "rb");
    char *text;
    size_t len;
    int rv;

    if (f == NULL) {
        return pip_error_set(err, PIP_E_NOT_FOUND, "FILE_NOT_FOUND",
                             "Cannot open workload file %s: %s.", path,
                             strerror(errno));
    }
    text = malloc(WORKLOAD_FILE_MAX + 1);
    if (text == NULL) {
        fclose(f);
        return pip_error_set(err, PIP_E_INTERNAL, "OUT_OF_MEMORY",
                             "Out of memory.");
    }
    len = fread(text, 1, WORKLOAD_FILE_MAX + 1, f);
    fclose(f);
    if (len > WORKLOAD_FILE_MAX) {
        free(text);
        return pip_error_set(err, PIP_E_BAD_REQUEST, "INVALID_WORKLOAD",
                             "%s: the file is larger than %d bytes.", path,
                             WORKLOAD_FILE_MAX);
    }
    text[len] = '\0';
    if (strlen(text) != len) {
        free(text);
        return pip_error_set(err, PIP_E_BAD_REQUEST, "INVALID_WORKLOAD",
                             "%s: the file contains a NUL byte.", path);
    }
    rv = bench_workload_parse(w, text, path, err);
    free(text);
    return rv;
}

const bench_command *
bench_workload_pick(const bench_workload *w, uint32_t roll)
{
    unsigned point = roll % w->total_weight;

    for (int i = 0; i < w->command_count; i++) {
        if (point < w->commands[i].weight) {
            return &w->commands[i];
        }
        point -= w->commands[i].weight;
    }
    return &w->commands[w->command_count - 1];
}

uint64_t
bench_rng_next(uint64_t *state)
{
    uint64_t x = *state;

    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *state = x;
    return x;
}

/*
 * Reads the placeholder at p ("{n}", "{rand}" or "{rand:N}"), sets its
 * value and returns its length, or 0 when p starts no placeholder.
 */
static size_t
workload_placeholder(const char *p, uint64_t call_number, uint64_t *rng,
                     uint64_t *value)
{
    uint64_t bound = WORKLOAD_RAND_DEFAULT;
    char *end;

    if (strncmp(p, "{n}", 3) == 0) {
        *value = call_number;
        return 3;
    }
    if (strncmp(p, "{rand}", 6) == 0) {
        *value = bench_rng_next(rng) % bound;
        return 6;
    }
    if (strncmp(p, "{rand:", 6) != 0 || !isdigit((unsigned char)p[6])) {
        return 0;
    }
    bound = strtoull(p + 6, &end, 10);
    if (*end != '}' || bound == 0) {
        return 0;
    }
    *value = bench_rng_next(rng) % bound;
    return (size_t)(end + 1 - p);
}

static json_t *
workload_expand_string(const char *text, uint64_t call_number, uint64_t *rng)
{
    char out[WORKLOAD_LINE_MAX];
    size_t used = 0;
    uint64_t value;
    size_t len;

    len = workload_placeholder(text, call_number, rng, &value);
    if (len > 0 && text[len] == '\0') {
        return json_integer((json_int_t)value);
    }
    while (*text != '\0' && used + 24 < sizeof(out)) {
        len = workload_placeholder(text, call_number, rng, &value);
        if (len > 0) {
            used += (size_t)snprintf(out + used, sizeof(out) - used,
                                     "%" PRIu64, value);
            text += len;
        } else {
            out[used++] = *text++;
        }
    }
    /* NOTE: a string that would grow past 4 KiB is cut there. */
    out[used] = '\0';
    return json_string(out);
}

static json_t *
workload_expand(const json_t *value, uint64_t call_number, uint64_t *rng)
{
    json_t *copy;
    const char *key;
    json_t *item;
    size_t i;

    if (json_is_string(value)) {
        return workload_expand_string(json_string_value(value), call_number,
                                      rng);
    }
    if (json_is_object(value)) {
        copy = json_object();
        json_object_foreach((json_t *)value, key, item) {
            if (copy == NULL ||
                json_object_set_new(copy, key, workload_expand(
                                        item, call_number, rng)) != 0) {
                json_decref(copy);
                return NULL;
            }
        }
        return copy;
    }
    if (json_is_array(value)) {
        copy = json_array();
        json_array_foreach(value, i, item) {
            if (copy == NULL ||
                json_array_append_new(copy, workload_expand(
                                          item, call_number, rng)) != 0) {
                json_decref(copy);
                return NULL;
            }
        }
        return copy;
    }
    return json_incref((json_t *)value);
}

json_t *
bench_args_expand(const bench_command *cmd, uint64_t call_number,
                  uint64_t *rng_state)
{
    if (!cmd->has_placeholders) {
        return json_incref(cmd->args);
    }
    return workload_expand(cmd->args, call_number, rng_state);
}
