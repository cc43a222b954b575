/*
 * pipcall: calls any service command from a shell and prints the result
 * as JSON.
 *
 *   pipcall [options] METHOD [key=value ...]
 *   pipcall [options] METHOD '{"json": "object"}'
 *   pipcall [options] list [--json]
 *   pipcall [options] describe SERVICE
 *   pipcall [options] sub TOPIC [--count N] [--pub URL]
 *
 * Exit status: 0 on success, 1 when the call failed (the error JSON is on
 * stderr), 2 for a usage error.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pipcall.h"

#define PIPCALL_DEFAULT_DISCOVERY "tcp://127.0.0.1:4100"
#define PIPCALL_DEFAULT_TIMEOUT_MS 10000

static const char pipcall_help[] =
    "Usage:\n"
    "  pipcall [options] METHOD [key=value ...]\n"
    "  pipcall [options] METHOD '{\"key\": value, ...}'\n"
    "  pipcall [options] list [--json]\n"
    "  pipcall [options] describe SERVICE\n"
    "  pipcall [options] sub TOPIC [--count N] [--pub URL]\n"
    "\n"
    "Calls METHOD (service.command, e.g. counters.read_counters) and "
    "prints the\n"
    "result as JSON.  A key=value value is parsed as JSON when it is valid "
    "JSON\n"
    "(42, true, {\"a\":1}, \"quoted\"), otherwise it is taken as a string.  "
    "A value\n"
    "that starts with {, [ or \" or has the shape of a number must be valid "
    "JSON.\n"
    "To send digits as a string, quote them: id='\"123\"'.\n"
    "\n"
    "  list       the live service instances known to discovery\n"
    "  describe   the commands and argument schemas of SERVICE\n"
    "  sub        prints every event whose topic starts with TOPIC as one "
    "JSON\n"
    "             line {\"topic\": ..., \"payload\": ...}, from every "
    "instance in\n"
    "             discovery's list and from discovery itself\n"
    "\n"
    "Options:\n"
    "  --discovery URL  discovery node (env PIP_DISCOVERY, "
    "default " PIPCALL_DEFAULT_DISCOVERY ")\n"
    "  --endpoint URL   send the call to this node, skipping discovery\n"
    "  --timeout MS     how long to wait for a reply, in milliseconds\n"
    "                   (default 10000); for sub, how long to listen\n"
    "                   (default: until interrupted)\n"
    "  --cid ID         correlation id sent with the call\n"
    "  --compact        print JSON on one line\n"
    "  --json           list: print the instances as JSON\n"
    "  --count N        sub: stop after N events; fails when --timeout "
    "passes first\n"
    "  --pub URL        sub: listen on this pub URL instead of asking "
    "discovery\n"
    "                   (repeatable)\n"
    CLI_KEY_OPTIONS_HELP
    "  --help           print this help and exit\n"
    "\n"
    "With a network key, a call to a node that uses another key, or none,\n"
    "gets no reply and fails with TIMEOUT: the node drops what it cannot\n"
    "open.\n"
    "\n"
    "Exit status: 0 on success, 1 when the call failed (the error is "
    "printed as\n"
    "JSON on stderr) or a key file could not be loaded, 2 for a usage "
    "error.\n";

/* ---- command line ---- */

/*
 * Reads the value of option `name` from "--name=value" or from the next
 * argument.  Returns NULL when it is missing.
 */
static const char *
pipcall_option_value(const char *name, int argc, char **argv, int *i)
{
    const char *arg = argv[*i];
    size_t name_len = strlen(name);

    if (arg[name_len] == '=') {
        return arg + name_len + 1;
    }
    if (*i + 1 >= argc) {
        return NULL;
    }
    *i += 1;
    return argv[*i];
}

/* True when arg is the option `name`, alone or as "name=value". */
static bool
pipcall_is_option(const char *arg, const char *name)
{
    size_t name_len = strlen(name);

    return strncmp(arg, name, name_len) == 0 &&
           (arg[name_len] == '\0' || arg[name_len] == '=');
}

static int
pipcall_set_timeout(pipcall_options *opt, const char *value)
{
    long long ms;

    if (!cli_parse_int(value, 1, UINT32_MAX, &ms)) {
        return pipcall_usage_error(
            "Invalid --timeout '%s'. Expected milliseconds, 1 or more.",
            value);
    }
    opt->timeout_ms = (uint32_t)ms;
    opt->timeout_given = true;
    return 0;
}

static int
pipcall_set_count(pipcall_options *opt, const char *value)
{
    if (!cli_parse_int(value, 1, INT64_MAX, &opt->count)) {
        return pipcall_usage_error(
            "Invalid --count '%s'. Expected a number of events, 1 or more.",
            value);
    }
    return 0;
}

static int
pipcall_set_cid(pipcall_options *opt, const char *value)
{
    if (strlen(value) >= PIP_CORRELATION_ID_MAX) {
        return pipcall_usage_error(
            "Invalid --cid '%s'. Expected at most %d bytes.", value,
            PIP_CORRELATION_ID_MAX - 1);
    }
    opt->correlation_id = value;
    return 0;
}

static int
pipcall_add_pub_url(pipcall_options *opt, const char *value)
{
    if (opt->pub_url_count == PIPCALL_MAX_PUB_URLS) {
        return pipcall_usage_error("Too many --pub URLs. At most %d fit.",
                                   PIPCALL_MAX_PUB_URLS);
    }
    opt->pub_urls[opt->pub_url_count++] = value;
    return 0;
}

/*
 * Checks that value has a scheme, as pipnode does, because NNG would
 * take "127.0.0.1:4100" for an unknown transport.  NNG checks the rest
 * when it dials.
 */
static int
pipcall_check_url(const char *name, const char *value)
{
    const char *sep = strstr(value, "://");

    if (sep == NULL || sep == value) {
        return pipcall_usage_error("Invalid %s '%s'. Expected a URL such as "
                                   "tcp://127.0.0.1:4100.",
                                   name, value);
    }
    return 0;
}

/* Applies one option that takes a value.  Returns 0 or an exit status. */
static int
pipcall_apply_valued(pipcall_options *opt, const char *name, const char *value)
{
    bool is_url = strcmp(name, "--discovery") == 0 ||
                  strcmp(name, "--endpoint") == 0 ||
                  strcmp(name, "--pub") == 0;

    if (is_url && pipcall_check_url(name, value) != 0) {
        return PIPCALL_EXIT_USAGE;
    }
    if (strcmp(name, "--discovery") == 0) {
        opt->discovery_url = value;
        return 0;
    }
    if (strcmp(name, "--endpoint") == 0) {
        opt->endpoint = value;
        return 0;
    }
    if (strcmp(name, "--timeout") == 0) {
        return pipcall_set_timeout(opt, value);
    }
    if (strcmp(name, "--cid") == 0) {
        return pipcall_set_cid(opt, value);
    }
    if (strcmp(name, "--count") == 0) {
        return pipcall_set_count(opt, value);
    }
    if (cli_key_option(&opt->keys, name, value)) {
        return 0;
    }
    return pipcall_add_pub_url(opt, value);
}

static const char *const pipcall_valued_options[] = {
    "--discovery", "--endpoint",         "--timeout",
    "--cid",       "--count",            "--pub",
    "--network-key-file", "--identity-file", "--trusted-keys",
    NULL,
};

/*
 * Parses one argument that starts with "--" (or is -h).  Returns 0, -1
 * after the help was printed, or an exit status.
 */
static int
pipcall_parse_option(pipcall_options *opt, int argc, char **argv, int *i)
{
    const char *arg = argv[*i];

    if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
        fputs(pipcall_help, stdout);
        return -1;
    }
    if (strcmp(arg, "--compact") == 0) {
        opt->compact = true;
        return 0;
    }
    if (strcmp(arg, "--json") == 0) {
        opt->list_json = true;
        return 0;
    }
    for (int k = 0; pipcall_valued_options[k] != NULL; k++) {
        const char *name = pipcall_valued_options[k];
        const char *value;

        if (!pipcall_is_option(arg, name)) {
            continue;
        }
        value = pipcall_option_value(name, argc, argv, i);
        if (value == NULL) {
            return pipcall_usage_error("Option %s needs a value.", name);
        }
        return pipcall_apply_valued(opt, name, value);
    }
    return pipcall_usage_error("Unknown option '%s'.", arg);
}

/*
 * Splits argv into options (anywhere, up to "--") and positional
 * arguments.  Returns 0, -1 after --help, or an exit status.
 */
static int
pipcall_parse_args(pipcall_options *opt, int argc, char **argv)
{
    bool options_done = false;
    const char *env = getenv("PIP_DISCOVERY");

    opt->discovery_url = PIPCALL_DEFAULT_DISCOVERY;
    if (env != NULL && env[0] != '\0') {
        if (pipcall_check_url("PIP_DISCOVERY", env) != 0) {
            return PIPCALL_EXIT_USAGE;
        }
        opt->discovery_url = env;
    }
    opt->timeout_ms = PIPCALL_DEFAULT_TIMEOUT_MS;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        int rv;

        if (!options_done && strcmp(arg, "--") == 0) {
            options_done = true;
            continue;
        }
        if (!options_done &&
            (strcmp(arg, "-h") == 0 || strncmp(arg, "--", 2) == 0)) {
            rv = pipcall_parse_option(opt, argc, argv, &i);
            if (rv != 0) {
                return rv;
            }
            continue;
        }
        opt->positional[opt->positional_count++] = argv[i];
    }
    return 0;
}

/* ---- output ---- */

void
pipcall_print_json(FILE *out, const json_t *value, bool compact)
{
    /* 15 significant digits print 0.1 as 0.1 where jansson's default of
     * 17 prints 0.10000000000000001.  NOTE: a real that needs 16 or 17
     * digits loses its last digits in pipcall's output. */
    size_t flags = JSON_ENCODE_ANY | JSON_REAL_PRECISION(15);
    char *text;

    if (value == NULL) {
        fputs("null\n", out);
        return;
    }
    flags |= compact ? JSON_COMPACT : JSON_INDENT(2);
    text = json_dumps(value, flags);
    if (text == NULL) {
        fputs("null\n", out);
        return;
    }
    fprintf(out, "%s\n", text);
    free(text);
}

/* True when err is a call that was not sent for want of a connection. */
static bool
pipcall_is_unconnected(const pip_error *err)
{
    const char *cause =
        json_string_value(json_object_get(err->details, "cause"));

    return strcmp(err->code, "CONNECTION_FAILED") == 0 && cause != NULL &&
           (strcmp(cause, "connection refused") == 0 ||
            strcmp(cause, "dial failed") == 0 ||
            strcmp(cause, "not connected") == 0);
}

/*
 * What to do after err, or NULL.  A plain call to a node with a network
 * key times out, because the node drops it without a reply.  When the
 * discovery node or the --endpoint node cannot be reached, the advice
 * names it.  An instance found through discovery gets no advice, because
 * its node may just have stopped.
 */
static const char *
pipcall_advice(const pipcall_options *opt, const pip_error *err)
{
    const char *url = json_string_value(json_object_get(err->details, "url"));

    if (strcmp(err->code, "TIMEOUT") == 0 &&
        json_object_get(err->details, "method") != NULL &&
        !pip_keyring_sealing(pip_keyring_default())) {
        return " If the node uses a network key, pass --network-key-file "
               "or set PIP_NETWORK_KEY_FILE.";
    }
    if (url == NULL || !pipcall_is_unconnected(err)) {
        return NULL;
    }
    if (opt->endpoint != NULL && strcmp(url, opt->endpoint) == 0) {
        return " Is a node listening there? Check the URL of --endpoint.";
    }
    if (opt->endpoint == NULL && strcmp(url, opt->discovery_url) == 0) {
        return " Is the network running? Start it with ./scripts/run, or "
               "point --discovery / PIP_DISCOVERY at it.";
    }
    return NULL;
}

/* Appends the advice for err to its message. */
static void
pipcall_explain(const pipcall_options *opt, pip_error *err)
{
    const char *advice = pipcall_advice(opt, err);
    size_t used;

    if (advice == NULL) {
        return;
    }
    used = strlen(err->message);
    snprintf(err->message + used, sizeof(err->message) - used, "%s%s",
             used > 0 && err->message[used - 1] != '.' ? "." : "", advice);
}

int
pipcall_fail(const pipcall_options *opt, pip_error *err)
{
    json_t *obj;

    pipcall_explain(opt, err);
    obj = pip_error_to_json(err);
    pipcall_print_json(stderr, obj, opt->compact);
    json_decref(obj);
    return PIPCALL_EXIT_FAILED;
}

/* ---- arguments of a call ---- */

/* Adds key = value to args.  A key given twice is a usage error. */
static int
pipcall_add_arg(json_t *args, const char *key, json_t *value)
{
    if (json_object_get(args, key) != NULL) {
        json_decref(value);
        return pipcall_usage_error("Argument '%s' is given twice.", key);
    }
    if (json_object_set_new(args, key, value) != 0) {
        return pipcall_usage_error("Invalid argument name '%s'.", key);
    }
    return 0;
}

/* Merges the members of a JSON object argument into args. */
static int
pipcall_add_object_arg(json_t *args, const char *text)
{
    json_error_t jerr;
    json_t *obj = json_loads(text, 0, &jerr);
    const char *key;
    json_t *value;
    int rv = 0;

    if (obj == NULL) {
        return pipcall_usage_error(
            "Invalid JSON argument: %s (line %d, column %d).", jerr.text,
            jerr.line, jerr.column);
    }
    if (!json_is_object(obj)) {
        json_decref(obj);
        return pipcall_usage_error("The JSON argument must be an object.");
    }
    json_object_foreach(obj, key, value) {
        rv = pipcall_add_arg(args, key, json_incref(value));
        if (rv != 0) {
            break;
        }
    }
    json_decref(obj);
    return rv;
}

/* Skips the digits at text; NULL when there are none. */
static const char *
pipcall_skip_digits(const char *text)
{
    size_t count = strspn(text, "0123456789");

    return count > 0 ? text + count : NULL;
}

/*
 * True when text has the shape of a JSON number (-12, 3.5, 1e400), even
 * when jansson rejects it for a leading zero or an overflow.  Dates such
 * as 2026-01-31 and versions such as 1.2.3 do not have that shape.
 */
static bool
pipcall_looks_like_number(const char *text)
{
    const char *p = text[0] == '-' ? text + 1 : text;

    p = pipcall_skip_digits(p);
    if (p != NULL && *p == '.') {
        p = pipcall_skip_digits(p + 1);
    }
    if (p != NULL && (*p == 'e' || *p == 'E')) {
        p++;
        p = pipcall_skip_digits(*p == '+' || *p == '-' ? p + 1 : p);
    }
    return p != NULL && *p == '\0';
}

/* Rejects a value meant as JSON that does not parse. */
static int
pipcall_invalid_value(const char *key, const char *text,
                      const json_error_t *jerr)
{
    if (pipcall_looks_like_number(text)) {
        return pipcall_usage_error(
            "Invalid number in the value of '%s': %s (line %d, column %d). "
            "To send it as a string, quote it: %s='\"%s\"'.",
            key, jerr->text, jerr->line, jerr->column, key, text);
    }
    return pipcall_usage_error(
        "Invalid JSON in the value of '%s': %s (line %d, column %d).", key,
        jerr->text, jerr->line, jerr->column);
}

/*
 * Parses one key=value argument.  The value is JSON when it parses as
 * JSON (a number, object, array, true, false, null or a quoted string),
 * otherwise the text itself as a string.  A value that starts like JSON
 * ({, [ or ") or has the shape of a number must parse, so that a typo is
 * reported instead of being sent as a string.  The keys of bare values
 * that became numbers, booleans or null are added to *converted, for the
 * hint of pipcall_hint_quoting().
 */
static int
pipcall_add_pair_arg(json_t *args, json_t *converted, char *item)
{
    char *eq = strchr(item, '=');
    const char *text;
    json_error_t jerr;
    json_t *value;

    if (eq == NULL || eq == item) {
        return pipcall_usage_error(
            "Argument '%s' is neither key=value nor a JSON object.", item);
    }
    *eq = '\0';
    text = eq + 1;
    value = json_loads(text, JSON_DECODE_ANY, &jerr);
    if (value == NULL && ((text[0] != '\0' && strchr("{[\"", text[0])) ||
                          pipcall_looks_like_number(text))) {
        return pipcall_invalid_value(item, text, &jerr);
    }
    if (value != NULL && !json_is_string(value) && !json_is_object(value) &&
        !json_is_array(value)) {
        json_object_set_new(converted, item, json_string(text));
    }
    if (value == NULL) {
        value = json_string(text);
    }
    if (value == NULL) {
        return pipcall_usage_error("The value of '%s' is not valid UTF-8.",
                                   item);
    }
    return pipcall_add_arg(args, item, value);
}

/*
 * Builds the argument object of a call and the object of converted bare
 * values (see pipcall_add_pair_arg).  Returns 0 or an exit status.
 */
static int
pipcall_build_args(char **items, int count, json_t **out, json_t **converted)
{
    json_t *args = json_object();
    int rv = 0;

    *converted = json_object();
    if (args == NULL || *converted == NULL) {
        json_decref(args);
        json_decref(*converted);
        *converted = NULL;
        return pipcall_usage_error("Out of memory.");
    }
    for (int i = 0; i < count && rv == 0; i++) {
        if (items[i][0] == '{') {
            rv = pipcall_add_object_arg(args, items[i]);
        } else {
            rv = pipcall_add_pair_arg(args, *converted, items[i]);
        }
    }
    if (rv != 0) {
        json_decref(args);
        json_decref(*converted);
        *converted = NULL;
        return rv;
    }
    *out = args;
    return 0;
}

/*
 * Prints a hint after an INVALID_DATA error that expected a string where
 * pipcall had turned a bare value into a number, a boolean or null.
 */
static void
pipcall_hint_quoting(const pip_error *err, const json_t *converted)
{
    const char *argument;
    const char *expected;
    const char *text;
    const char *kind = "null";
    json_t *value;

    if (strcmp(err->code, "INVALID_DATA") != 0) {
        return;
    }
    argument = json_string_value(json_object_get(err->details, "argument"));
    expected = json_string_value(json_object_get(err->details, "expected"));
    if (argument == NULL || expected == NULL ||
        strcmp(expected, "string") != 0) {
        return;
    }
    text = json_string_value(json_object_get(converted, argument));
    if (text == NULL) {
        return;
    }
    value = json_loads(text, JSON_DECODE_ANY, NULL);
    if (json_is_number(value)) {
        kind = "a number";
    } else if (json_is_boolean(value)) {
        kind = "a boolean";
    }
    json_decref(value);
    fprintf(stderr,
            "pipcall: Hint: %s=%s was sent as %s, not as a string. To send "
            "the string, quote it: %s='\"%s\"'.\n",
            argument, text, kind, argument, text);
}

/* ---- calls ---- */

static int
pipcall_client_new(const pipcall_options *opt, bool to_discovery,
                   pip_client **client, pip_error *err)
{
    pip_client_options copt;

    pip_client_options_init(&copt);
    copt.timeout_ms = opt->timeout_ms;
    if (opt->endpoint != NULL) {
        copt.endpoint = opt->endpoint;
    } else if (to_discovery) {
        copt.endpoint = opt->discovery_url;
    } else {
        copt.discovery_url = opt->discovery_url;
    }
    return pip_client_new(&copt, client, err);
}

int
pipcall_invoke(const pipcall_options *opt, bool to_discovery,
               const char *method, const json_t *args, json_t **result,
               pip_error *err)
{
    pip_client *client = NULL;
    pip_meta meta;
    int rv;

    memset(&meta, 0, sizeof(meta));
    if (opt->correlation_id != NULL) {
        snprintf(meta.correlation_id, sizeof(meta.correlation_id), "%s",
                 opt->correlation_id);
    }
    meta.timeout_ms = opt->timeout_ms;

    rv = pipcall_client_new(opt, to_discovery, &client, err);
    if (rv != PIP_OK) {
        return rv;
    }
    rv = pip_client_call(client, method, args, &meta, result, err);
    pip_client_free(client);
    return rv;
}

static int
pipcall_check_method(const char *method)
{
    const char *dot = strchr(method, '.');

    if (dot == NULL || dot == method || dot[1] == '\0') {
        return pipcall_usage_error(
            "Invalid METHOD '%s'. Expected service.command, for example "
            "counters.read_counters.",
            method);
    }
    if (strlen(method) >= PIP_METHOD_MAX) {
        return pipcall_usage_error("Invalid METHOD '%s'. It is longer than "
                                   "%d bytes.",
                                   method, PIP_METHOD_MAX - 1);
    }
    return 0;
}

static int
pipcall_run_call(const pipcall_options *opt)
{
    const char *method = opt->positional[0];
    json_t *args = NULL;
    json_t *converted = NULL;
    json_t *result = NULL;
    pip_error err;
    int rv;

    rv = pipcall_check_method(method);
    if (rv == 0) {
        rv = pipcall_build_args(opt->positional + 1, opt->positional_count - 1,
                                &args, &converted);
    }
    if (rv != 0) {
        return rv;
    }

    pip_error_init(&err);
    rv = pipcall_invoke(opt, false, method, args, &result, &err);
    if (rv == PIP_OK) {
        pipcall_print_json(stdout, result, opt->compact);
    } else {
        rv = pipcall_fail(opt, &err);
        pipcall_hint_quoting(&err, converted);
    }
    json_decref(result);
    json_decref(converted);
    json_decref(args);
    pip_error_fini(&err);
    return rv;
}

static int
pipcall_run_describe(const pipcall_options *opt)
{
    const char *service = opt->positional[1];
    char method[PIP_METHOD_MAX];
    pipcall_options call_opt = *opt;
    char *positional[1] = {method};

    if (strchr(service, '.') != NULL || service[0] == '\0') {
        return pipcall_usage_error(
            "Invalid SERVICE '%s'. Expected a service name such as "
            "counters.",
            service);
    }
    if ((size_t)snprintf(method, sizeof(method), "%s.describe", service) >=
        sizeof(method)) {
        return pipcall_usage_error("Invalid SERVICE '%s'. The name is too "
                                   "long.",
                                   service);
    }
    call_opt.positional = positional;
    call_opt.positional_count = 1;
    return pipcall_run_call(&call_opt);
}

/* ---- main ---- */

/* Checks that options meant for one subcommand are not used elsewhere. */
static int
pipcall_check_scope(const pipcall_options *opt, const char *command)
{
    bool is_sub = strcmp(command, "sub") == 0;

    if (opt->list_json && strcmp(command, "list") != 0) {
        return pipcall_usage_error("Option --json applies only to 'pipcall list'.");
    }
    if (opt->count > 0 && !is_sub) {
        return pipcall_usage_error("Option --count applies only to 'pipcall sub'.");
    }
    if (opt->pub_url_count > 0 && !is_sub) {
        return pipcall_usage_error("Option --pub applies only to 'pipcall sub'.");
    }
    return 0;
}

/* Runs the subcommand named by the first positional argument. */
static int
pipcall_dispatch(const pipcall_options *opt)
{
    const char *command = opt->positional[0];
    int rv = pipcall_check_scope(opt, command);

    if (rv != 0) {
        return rv;
    }
    if (strcmp(command, "list") == 0) {
        if (opt->positional_count != 1) {
            return pipcall_usage_error("Subcommand 'list' takes no arguments.");
        }
        return pipcall_run_list(opt);
    }
    if (strcmp(command, "describe") == 0) {
        if (opt->positional_count != 2) {
            return pipcall_usage_error(
                "Subcommand 'describe' takes one SERVICE, for example "
                "'counters'.");
        }
        return pipcall_run_describe(opt);
    }
    if (strcmp(command, "sub") == 0) {
        if (opt->positional_count != 2) {
            return pipcall_usage_error(
                "Subcommand 'sub' takes one TOPIC prefix, for example "
                "'settings.' (or '' for every event).");
        }
        return pipcall_run_sub(opt);
    }
    return pipcall_run_call(opt);
}

int
main(int argc, char **argv)
{
    pipcall_options opt;
    pip_keyring *keys = NULL;
    int rv;

    memset(&opt, 0, sizeof(opt));
    opt.positional = calloc((size_t)argc, sizeof(char *));
    if (opt.positional == NULL) {
        fprintf(stderr, "pipcall: Out of memory.\n");
        return PIPCALL_EXIT_FAILED;
    }

    rv = pipcall_parse_args(&opt, argc, argv);
    if (rv == 0 && opt.positional_count == 0) {
        rv = pipcall_usage_error(
            "Missing METHOD (or list, describe, sub), for example "
            "'pipcall list'.");
    }
    if (rv == 0 && !cli_keys_load("pipcall", &opt.keys, &keys)) {
        rv = PIPCALL_EXIT_FAILED;
    }
    if (rv == 0) {
        rv = pipcall_dispatch(&opt);
    }
    pip_keyring_set_default(NULL);
    pip_keyring_free(keys);
    free(opt.positional);
    return rv < 0 ? 0 : rv;
}
