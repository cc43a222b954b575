/*
 * Node options from the environment, the command line and config files.
 *
 * One table, option_specs, drives both sources and the --help text, so a
 * new option is added in one place.  The environment is read first and
 * flags are applied after it in command-line order, so a flag beats its
 * variable and, among settings, the later --set or --config wins.
 */
#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "node_internal.h"
#include "pip/log.h"

#define OPT_STR(x) #x
#define OPT_XSTR(x) OPT_STR(x)
#define OPTION_FIELD(name) offsetof(pip_node_options, name)

#define DEFAULT_LISTEN "tcp://127.0.0.1:0"
#define DEFAULT_DATA_DIR "./pipdata"
#define DEFAULT_WORKERS 4
#define DEFAULT_CONTEXTS 64
#define DEFAULT_LEASE_MS 10000

#define WORKERS_MIN 1
#define WORKERS_MAX 1024
#define CONTEXTS_MIN 1
#define CONTEXTS_MAX 4096
#define LEASE_MS_MIN 1000
#define REPLAY_MS_MIN 1000
#define REPLAY_MS_MAX 3600000
#define LEASE_MS_MAX 3600000
#define MAX_MSG_BYTES_MIN 256
#define MAX_MSG_BYTES_MAX 1073741824
#define MAX_DEPTH_MIN 1
#define MAX_DEPTH_MAX 256

/* Where a --listen list came from: a new source replaces the old list. */
typedef enum listen_source {
    LISTEN_DEFAULT,
    LISTEN_ENV,
    LISTEN_FLAGS,
} listen_source;

typedef struct option_spec option_spec;

typedef struct options_parser {
    pip_node_options *opt;
    const option_spec *spec; /* the option being applied */
    bool from_env; /* the value being applied comes from a variable */
    listen_source listen_from;
    int n_listen;
} options_parser;

/* Applies one value; name is the flag or variable, for messages. */
typedef int (*option_apply_fn)(options_parser *p, const char *name,
                               const char *value, pip_error *err);

/* The C type of an integer option's field in pip_node_options. */
typedef enum option_int_type {
    OPTION_INT,
    OPTION_SIZE,
    OPTION_UINT32,
} option_int_type;

struct option_spec {
    const char *flag;
    const char *metavar; /* NULL for a switch such as --sync */
    const char *env;
    option_apply_fn apply;
    const char *help;
    /* Integer options only: the accepted range and the field set. */
    long long min;
    long long max;
    size_t offset;
    option_int_type int_type;
};

static int
options_invalid(pip_error *err, const char *name, const char *value,
                const char *expected)
{
    pip_error_set(err, PIP_E_BAD_REQUEST, "INVALID_OPTION",
                  "Invalid value '%.100s' for %s. Expected %s.", value, name,
                  expected);
    pip_error_detail(err, "option", json_string(name));
    pip_error_detail(err, "value", json_stringn_nocheck(value, strlen(value)));
    pip_error_detail(err, "expected", json_string(expected));
    return PIP_E_BAD_REQUEST;
}

static int
options_no_memory(pip_error *err)
{
    return pip_error_set(err, PIP_E_INTERNAL, "OUT_OF_MEMORY",
                         "Out of memory while reading the node options.");
}

/* Copies len bytes of s into storage that lives as long as opt. */
static const char *
options_own(pip_node_options *opt, const char *s, size_t len)
{
    json_t *copy;

    if (opt->owned == NULL) {
        opt->owned = json_array();
        if (opt->owned == NULL) {
            return NULL;
        }
    }
    copy = json_stringn_nocheck(s, len);
    if (copy == NULL || json_array_append_new(opt->owned, copy) != 0) {
        return NULL;
    }
    return json_string_value(copy);
}

static int
options_parse_int(const char *name, const char *value, long long min,
                  long long max, long long *out, pip_error *err)
{
    char expected[96];
    char *end = NULL;
    long long v;

    snprintf(expected, sizeof(expected), "an integer from %lld to %lld", min,
             max);
    if (value[0] == '\0' || isspace((unsigned char)value[0])) {
        return options_invalid(err, name, value, expected);
    }
    errno = 0;
    v = strtoll(value, &end, 10);
    if (errno != 0 || *end != '\0' || v < min || v > max) {
        return options_invalid(err, name, value, expected);
    }
    *out = v;
    return PIP_OK;
}

static int
options_parse_bool(const char *name, const char *value, bool *out,
                   pip_error *err)
{
    static const char *const yes[] = {"1", "true", "yes", "on", NULL};
    static const char *const no[] = {"0", "false", "no", "off", NULL};

    for (int i = 0; yes[i] != NULL; i++) {
        if (strcasecmp(value, yes[i]) == 0) {
            *out = true;
            return PIP_OK;
        }
        if (strcasecmp(value, no[i]) == 0) {
            *out = false;
            return PIP_OK;
        }
    }
    return options_invalid(err, name, value,
                           "true or false (also 1/0, yes/no, on/off)");
}

/* A URL needs a scheme; NNG checks the rest when the node listens. */
static int
options_check_url(const char *name, const char *value, pip_error *err)
{
    const char *sep = strstr(value, "://");

    if (sep == NULL || sep == value) {
        return options_invalid(err, name, value,
                               "a URL such as tcp://127.0.0.1:5000 or "
                               "ipc:///tmp/node.ipc");
    }
    return PIP_OK;
}

static int
options_add_listen(options_parser *p, const char *name, const char *url,
                   pip_error *err)
{
    listen_source source = p->from_env ? LISTEN_ENV : LISTEN_FLAGS;
    int rv;

    rv = options_check_url(name, url, err);
    if (rv != PIP_OK) {
        return rv;
    }
    if (p->listen_from != source) {
        p->listen_from = source;
        p->n_listen = 0;
    }
    if (p->n_listen >= PIP_MAX_LISTEN) {
        return options_invalid(
            err, name, url,
            "at most " OPT_XSTR(PIP_MAX_LISTEN) " listen URLs");
    }
    p->opt->listen[p->n_listen++] = url;
    if (p->n_listen < PIP_MAX_LISTEN) {
        p->opt->listen[p->n_listen] = NULL;
    }
    return PIP_OK;
}

static int
apply_listen(options_parser *p, const char *name, const char *value,
             pip_error *err)
{
    const char *item = value;

    if (!p->from_env) {
        return options_add_listen(p, name, value, err);
    }
    /* The variable contains a comma-separated list, so split it. */
    for (;;) {
        size_t len = strcspn(item, ",");
        const char *url = options_own(p->opt, item, len);
        int rv;

        if (url == NULL) {
            return options_no_memory(err);
        }
        rv = options_add_listen(p, name, url, err);
        if (rv != PIP_OK) {
            return rv;
        }
        if (item[len] == '\0') {
            return PIP_OK;
        }
        item += len + 1;
    }
}

static int
apply_pub(options_parser *p, const char *name, const char *value,
          pip_error *err)
{
    int rv = options_check_url(name, value, err);

    if (rv == PIP_OK) {
        p->opt->pub_listen = value;
    }
    return rv;
}

static int
apply_discovery(options_parser *p, const char *name, const char *value,
                pip_error *err)
{
    int rv = options_check_url(name, value, err);

    if (rv == PIP_OK) {
        p->opt->discovery_url = value;
    }
    return rv;
}

static int
apply_data(options_parser *p, const char *name, const char *value,
           pip_error *err)
{
    if (value[0] == '\0') {
        return options_invalid(err, name, value, "a folder path");
    }
    p->opt->data_dir = value;
    return PIP_OK;
}

/* Sets the path field that the spec names. */
static int
apply_path(options_parser *p, const char *name, const char *value,
           pip_error *err)
{
    if (value[0] == '\0') {
        return options_invalid(err, name, value, "a file path");
    }
    *(const char **)((char *)p->opt + p->spec->offset) = value;
    return PIP_OK;
}

static int
apply_host(options_parser *p, const char *name, const char *value,
           pip_error *err)
{
    if (value[0] == '\0' || strlen(value) > 255) {
        return options_invalid(err, name, value,
                               "a host name of 1 to 255 characters");
    }
    p->opt->host = value;
    return PIP_OK;
}

/* Applies an integer option to the field that its spec names. */
static int
apply_int(options_parser *p, const char *name, const char *value,
          pip_error *err)
{
    const option_spec *spec = p->spec;
    char *field = (char *)p->opt + spec->offset;
    long long v = 0;
    int rv;

    rv = options_parse_int(name, value, spec->min, spec->max, &v, err);
    if (rv != PIP_OK) {
        return rv;
    }
    switch (spec->int_type) {
    case OPTION_INT:
        *(int *)field = (int)v;
        break;
    case OPTION_SIZE:
        *(size_t *)field = (size_t)v;
        break;
    case OPTION_UINT32:
        *(uint32_t *)field = (uint32_t)v;
        break;
    }
    return PIP_OK;
}

static int
apply_sync(options_parser *p, const char *name, const char *value,
           pip_error *err)
{
    return options_parse_bool(name, value, &p->opt->sync_writes, err);
}

static int
apply_log_level(options_parser *p, const char *name, const char *value,
                pip_error *err)
{
    int level = pip_log_level_parse(value);

    if (level < 0) {
        return options_invalid(err, name, value,
                               "error, warn, info, debug or trace");
    }
    p->opt->log_level = level;
    return PIP_OK;
}

/* A setting key is "<service>.<key>": dotted words of [A-Za-z0-9_-]. */
static bool
options_setting_key_valid(const char *key, size_t len)
{
    bool has_dot = false;

    if (len == 0 || key[0] == '.' || key[len - 1] == '.') {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)key[i];

        if (c == '.') {
            if (key[i + 1] == '.') {
                return false;
            }
            has_dot = true;
        } else if (!isalnum(c) && c != '_' && c != '-') {
            return false;
        }
    }
    return has_dot;
}

static int
options_put_setting(pip_node_options *opt, const char *key, size_t key_len,
                    json_t *value)
{
    if (value == NULL) {
        return -1;
    }
    if (opt->settings == NULL) {
        opt->settings = json_object();
        if (opt->settings == NULL) {
            json_decref(value);
            return -1;
        }
    }
    return json_object_setn_new(opt->settings, key, key_len, value);
}

/* Applies one "KEY=VALUE" item of len bytes. */
static int
options_set_item(options_parser *p, const char *name, const char *item,
                 size_t len, pip_error *err)
{
    const char *eq = memchr(item, '=', len);
    const char *value;
    size_t key_len;
    char shown[128];

    snprintf(shown, sizeof(shown), "%.*s", (int)len, item);
    if (eq == NULL) {
        return options_invalid(err, name, shown,
                               "KEY=VALUE with a dotted key such as "
                               "logging.options.expire_logs_timeout=3");
    }
    key_len = (size_t)(eq - item);
    if (!options_setting_key_valid(item, key_len)) {
        return options_invalid(err, name, shown,
                               "a key of the form service.key (letters, "
                               "digits, '_' and '-' between the dots)");
    }
    value = eq + 1;
    if (options_put_setting(p->opt, item, key_len,
                            json_stringn(value, len - key_len - 1)) != 0) {
        return options_invalid(err, name, shown, "a value in UTF-8");
    }
    return PIP_OK;
}

static int
apply_set(options_parser *p, const char *name, const char *value,
          pip_error *err)
{
    const char *item = value;

    if (!p->from_env) {
        return options_set_item(p, name, value, strlen(value), err);
    }
    for (;;) {
        size_t len = strcspn(item, ",");
        int rv;

        if (len > 0) {
            rv = options_set_item(p, name, item, len, err);
            if (rv != PIP_OK) {
                return rv;
            }
        }
        if (item[len] == '\0') {
            return PIP_OK;
        }
        item += len + 1;
    }
}

/* The text kept for a scalar value of a config file, or NULL to skip.
 */
static json_t *
config_value_string(const json_t *value)
{
    char buf[64];
    char *dumped;
    json_t *s;

    switch (json_typeof(value)) {
    case JSON_STRING:
        return json_copy((json_t *)value);
    case JSON_INTEGER:
        snprintf(buf, sizeof(buf), "%" JSON_INTEGER_FORMAT,
                 json_integer_value(value));
        return json_string(buf);
    case JSON_REAL:
        snprintf(buf, sizeof(buf), "%.17g", json_real_value(value));
        return json_string(buf);
    case JSON_TRUE:
        return json_string("true");
    case JSON_FALSE:
        return json_string("false");
    case JSON_ARRAY:
        dumped = json_dumps(value, JSON_COMPACT);
        s = dumped != NULL ? json_string(dumped) : NULL;
        free(dumped);
        return s;
    default:
        return NULL;
    }
}

static int
options_set_config_value(options_parser *p, const char *name, const char *path,
                         const char *key, const json_t *value, pip_error *err)
{
    char shown[320];

    if (!options_setting_key_valid(key, strlen(key))) {
        snprintf(shown, sizeof(shown), "%.200s (key %.100s)", path, key);
        return options_invalid(err, name, shown,
                               "keys that nest as service.key, such as "
                               "{\"logging\": {\"options\": {...}}}");
    }
    if (options_put_setting(p->opt, key, strlen(key),
                            config_value_string(value)) != 0) {
        return options_no_memory(err);
    }
    return PIP_OK;
}

/* Adds every scalar under obj, with keys joined by dots after prefix. */
static int
config_flatten(options_parser *p, const char *name, const char *path,
               const char *prefix, const json_t *obj, pip_error *err)
{
    const char *key;
    json_t *value;

    json_object_foreach((json_t *)obj, key, value)
    {
        size_t len = strlen(prefix) + strlen(key) + 2;
        char *full = malloc(len);
        int rv = PIP_OK;

        if (full == NULL) {
            return options_no_memory(err);
        }
        snprintf(full, len, "%s%s%s", prefix, prefix[0] ? "." : "", key);
        if (json_is_object(value)) {
            rv = config_flatten(p, name, path, full, value, err);
        } else if (!json_is_null(value)) {
            rv = options_set_config_value(p, name, path, full, value, err);
        }
        free(full);
        if (rv != PIP_OK) {
            return rv;
        }
    }
    return PIP_OK;
}

static int
config_load_failed(pip_error *err, const char *name, const char *path,
                   const json_error_t *jerr)
{
    if (jerr->line < 1) {
        /* jansson reports a file it cannot open with line -1. */
        pip_error_set(err, PIP_E_BAD_REQUEST, "INVALID_OPTION",
                      "Cannot read %s file '%.200s': %s.", name, path,
                      jerr->text);
    } else {
        pip_error_set(err, PIP_E_BAD_REQUEST, "INVALID_OPTION",
                      "Invalid JSON in %s file '%.200s': %s (line %d, "
                      "column %d).",
                      name, path, jerr->text, jerr->line, jerr->column);
    }
    pip_error_detail(err, "option", json_string(name));
    pip_error_detail(err, "value", json_string(path));
    return PIP_E_BAD_REQUEST;
}

static int
apply_config(options_parser *p, const char *name, const char *value,
             pip_error *err)
{
    json_error_t jerr;
    json_t *root;
    int rv;

    root = json_load_file(value, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        return config_load_failed(err, name, value, &jerr);
    }
    if (!json_is_object(root)) {
        json_decref(root);
        return options_invalid(err, name, value,
                               "a JSON file holding one object");
    }
    rv = config_flatten(p, name, value, "", root, err);
    json_decref(root);
    return rv;
}

/* Kept from clang-format, which would split the help texts at every
 * macro between the string pieces. */
/* clang-format off */
static const option_spec option_specs[] = {
    {.flag = "--listen", .metavar = "URL",
     .env = "PIP_LISTEN", .apply = apply_listen,
     .help =
     "RPC URL to listen on. Repeat the flag for more URLs (at most "
     OPT_XSTR(PIP_MAX_LISTEN) "). PIP_LISTEN takes a comma-separated "
     "list. Default " DEFAULT_LISTEN ", a free port."},
    {.flag = "--pub", .metavar = "URL",
     .env = "PIP_PUB", .apply = apply_pub,
     .help =
     "URL of the event (pub) socket. Default " DEFAULT_LISTEN "."},
    {.flag = "--data", .metavar = "DIR",
     .env = "PIP_DATA", .apply = apply_data,
     .help =
     "Data folder. Each service keeps its store in DIR/<service>/. "
     "Default " DEFAULT_DATA_DIR "."},
    {.flag = "--discovery", .metavar = "URL",
     .env = "PIP_DISCOVERY", .apply = apply_discovery,
     .help =
     "RPC URL of the discovery node to register with. Default: none, "
     "the node does not register."},
    {.flag = "--host", .metavar = "NAME",
     .env = "PIP_HOST", .apply = apply_host,
     .help =
     "Host name advertised to discovery. Default: this machine's host "
     "name."},
    {.flag = "--workers", .metavar = "N",
     .env = "PIP_WORKERS", .apply = apply_int,
     .help =
     "Handler threads, " OPT_XSTR(WORKERS_MIN) " to "
     OPT_XSTR(WORKERS_MAX) ". Default " OPT_XSTR(DEFAULT_WORKERS) ".",
     .min = WORKERS_MIN, .max = WORKERS_MAX,
     .offset = OPTION_FIELD(workers), .int_type = OPTION_INT},
    {.flag = "--contexts", .metavar = "N",
     .env = "PIP_CONTEXTS", .apply = apply_int,
     .help =
     "Requests received at once, " OPT_XSTR(CONTEXTS_MIN) " to "
     OPT_XSTR(CONTEXTS_MAX) ". Default " OPT_XSTR(DEFAULT_CONTEXTS) ".",
     .min = CONTEXTS_MIN, .max = CONTEXTS_MAX,
     .offset = OPTION_FIELD(contexts), .int_type = OPTION_INT},
    {.flag = "--lease-ms", .metavar = "N",
     .env = "PIP_LEASE_MS", .apply = apply_int,
     .help =
     "Discovery lease in milliseconds, " OPT_XSTR(LEASE_MS_MIN) " to "
     OPT_XSTR(LEASE_MS_MAX) ". Default " OPT_XSTR(DEFAULT_LEASE_MS) ".",
     .min = LEASE_MS_MIN, .max = LEASE_MS_MAX,
     .offset = OPTION_FIELD(lease_ms), .int_type = OPTION_INT},
    {.flag = "--max-msg-bytes", .metavar = "N",
     .env = "PIP_MAX_MSG_BYTES", .apply = apply_int,
     .help =
     "Maximum request message size in bytes, " OPT_XSTR(MAX_MSG_BYTES_MIN)
     " to " OPT_XSTR(MAX_MSG_BYTES_MAX) ". A larger message is dropped "
     "and its connection closed. Default 1048576 (1 MiB).",
     .min = MAX_MSG_BYTES_MIN, .max = MAX_MSG_BYTES_MAX,
     .offset = OPTION_FIELD(limits.max_msg_bytes), .int_type = OPTION_SIZE},
    {.flag = "--max-depth", .metavar = "N",
     .env = "PIP_MAX_DEPTH", .apply = apply_int,
     .help =
     "Maximum nesting of arrays and maps in a request, "
     OPT_XSTR(MAX_DEPTH_MIN) " to " OPT_XSTR(MAX_DEPTH_MAX)
     ". Default 32.",
     .min = MAX_DEPTH_MIN, .max = MAX_DEPTH_MAX,
     .offset = OPTION_FIELD(limits.max_depth), .int_type = OPTION_UINT32},
    {.flag = "--sync", .metavar = NULL,
     .env = "PIP_SYNC", .apply = apply_sync,
     .help =
     "Fsync every store write before the call returns (PIP_SYNC=1). "
     "Default off: writes go to the write-ahead log without fsync."},
    {.flag = "--network-key-file", .metavar = "FILE",
     .env = "PIP_NETWORK_KEY_FILE", .apply = apply_path,
     .help =
     "Network key (made by pipkey network): seal every call and event "
     "with it and drop traffic that is not sealed with it. "
     "PIP_NETWORK_KEY may contain the key line itself. Default: none, "
     "traffic is plain and unauthenticated.",
     .offset = OPTION_FIELD(network_key_file)},
    {.flag = "--identity-file", .metavar = "FILE",
     .env = "PIP_IDENTITY_FILE", .apply = apply_path,
     .help =
     "Identity key pair (made by pipkey identity): sign every call and "
     "event sent, so receivers know this node. Needs a network key.",
     .offset = OPTION_FIELD(identity_file)},
    {.flag = "--trusted-keys", .metavar = "FILE",
     .env = "PIP_TRUSTED_KEYS", .apply = apply_path,
     .help =
     "Public keys (lines printed by pipkey public): accept only calls and "
     "events signed by one of them. Needs a network key.",
     .offset = OPTION_FIELD(trusted_keys_file)},
    {.flag = "--replay-window-ms", .metavar = "N",
     .env = "PIP_REPLAY_WINDOW_MS", .apply = apply_int,
     .help =
     "With a network key, reject a sealed message sent more than N ms "
     "before or after this node's clock, " OPT_XSTR(REPLAY_MS_MIN) " to "
     OPT_XSTR(REPLAY_MS_MAX) ". Default " OPT_XSTR(PIP_SEAL_WINDOW_MS) ".",
     .min = REPLAY_MS_MIN, .max = REPLAY_MS_MAX,
     .offset = OPTION_FIELD(replay_window_ms), .int_type = OPTION_INT},
    {.flag = "--set", .metavar = "KEY=VALUE",
     .env = "PIP_SET", .apply = apply_set,
     .help =
     "Service setting, such as logging.options.expire_logs_timeout=3. "
     "Repeatable. PIP_SET takes a comma-separated list."},
    {.flag = "--config", .metavar = "FILE",
     .env = "PIP_CONFIG", .apply = apply_config,
     .help =
     "JSON file of service settings. Nested objects become dotted keys: "
     "{\"logging\": {\"options\": {\"expire_logs_timeout\": 3}}}."},
    {.flag = "--log-level", .metavar = "LEVEL",
     .env = "PIP_LOG_LEVEL", .apply = apply_log_level,
     .help =
     "Most verbose log level kept: error, warn, info, debug or trace. "
     "Default info."},
};
/* clang-format on */

#define OPTION_COUNT (sizeof(option_specs) / sizeof(option_specs[0]))

void
pip_node_options_init(pip_node_options *opt)
{
    memset(opt, 0, sizeof(*opt));
    opt->listen[0] = DEFAULT_LISTEN;
    opt->pub_listen = DEFAULT_LISTEN;
    opt->data_dir = DEFAULT_DATA_DIR;
    opt->workers = DEFAULT_WORKERS;
    opt->contexts = DEFAULT_CONTEXTS;
    opt->lease_ms = DEFAULT_LEASE_MS;
    opt->replay_window_ms = PIP_SEAL_WINDOW_MS;
    opt->log_level = PIP_LOG_INFO;
    pip_limits_default(&opt->limits);
    opt->settings = json_object();
}

void
pip_node_options_fini(pip_node_options *opt)
{
    json_decref(opt->settings);
    json_decref(opt->owned);
    opt->settings = NULL;
    opt->owned = NULL;
}

static int
options_read_env(options_parser *p, pip_error *err)
{
    p->from_env = true;
    for (size_t i = 0; i < OPTION_COUNT; i++) {
        const option_spec *spec = &option_specs[i];
        const char *value = getenv(spec->env);
        int rv;

        if (value == NULL || value[0] == '\0') {
            continue;
        }
        p->spec = spec;
        rv = spec->apply(p, spec->env, value, err);
        if (rv != PIP_OK) {
            return rv;
        }
    }
    p->from_env = false;
    return PIP_OK;
}

/* Finds the spec of arg ("--flag" or "--flag=value"). */
static const option_spec *
options_find(const char *arg, const char **inline_value)
{
    for (size_t i = 0; i < OPTION_COUNT; i++) {
        size_t len = strlen(option_specs[i].flag);

        if (strncmp(arg, option_specs[i].flag, len) != 0) {
            continue;
        }
        if (arg[len] == '\0') {
            *inline_value = NULL;
            return &option_specs[i];
        }
        if (arg[len] == '=') {
            *inline_value = arg + len + 1;
            return &option_specs[i];
        }
    }
    return NULL;
}

/* Applies the flag at argv[*i], consuming its value when separate. */
static int
options_apply_flag(options_parser *p, const option_spec *spec,
                   const char *inline_value, int argc, char **argv, int *i,
                   pip_error *err)
{
    const char *value = inline_value;

    if (value == NULL && spec->metavar == NULL) {
        value = "true";
    } else if (value == NULL) {
        if (*i + 1 >= argc) {
            pip_error_set(err, PIP_E_BAD_REQUEST, "INVALID_OPTION",
                          "Missing value for %s. Expected %s %s.", spec->flag,
                          spec->flag, spec->metavar);
            pip_error_detail(err, "option", json_string(spec->flag));
            return PIP_E_BAD_REQUEST;
        }
        *i += 1;
        value = argv[*i];
    }
    p->spec = spec;
    return spec->apply(p, spec->flag, value, err);
}

int
pip_node_options_parse(pip_node_options *opt, int *argc, char **argv,
                       pip_error *err)
{
    options_parser p = {.opt = opt, .listen_from = LISTEN_DEFAULT};
    int program_argc = *argc > 0 ? 1 : 0;
    int i;
    int rv;

    rv = options_read_env(&p, err);
    if (rv != PIP_OK) {
        return rv;
    }

    for (i = program_argc; i < *argc; i++) {
        const char *inline_value = NULL;
        const option_spec *spec;

        if (strcmp(argv[i], "--") == 0) {
            break; /* the rest belongs to the program, "--" included */
        }
        spec = options_find(argv[i], &inline_value);
        if (spec == NULL) {
            argv[program_argc++] = argv[i];
            continue;
        }
        rv = options_apply_flag(&p, spec, inline_value, *argc, argv, &i, err);
        if (rv != PIP_OK) {
            return rv;
        }
    }
    for (; i < *argc; i++) {
        argv[program_argc++] = argv[i];
    }
    if (program_argc < *argc) {
        argv[program_argc] = NULL;
    }
    *argc = program_argc;
    return PIP_OK;
}

/* Appends text to buf, wrapped at 78 columns with an indent of 6. */
static size_t
help_wrap(char *buf, size_t size, size_t used, const char *text)
{
    const size_t indent = 6;
    const size_t width = 78;
    size_t column = 0;

    while (*text != '\0' && used + 1 < size) {
        size_t word = strcspn(text, " ");

        if (column > indent && column + 1 + word > width) {
            used += (size_t)snprintf(buf + used, size - used, "\n");
            column = 0;
        }
        if (column == 0) {
            used += (size_t)snprintf(buf + used, size - used, "%*s",
                                     (int)indent, "");
            column = indent;
        } else {
            used += (size_t)snprintf(buf + used, size - used, " ");
            column++;
        }
        if (used >= size) {
            return size;
        }
        used +=
            (size_t)snprintf(buf + used, size - used, "%.*s", (int)word, text);
        column += word;
        text += word;
        text += strspn(text, " ");
    }
    if (used + 1 < size) {
        used += (size_t)snprintf(buf + used, size - used, "\n");
    }
    return used < size ? used : size;
}

static char options_help_text[6144];
static pthread_once_t options_help_once = PTHREAD_ONCE_INIT;

static void
options_help_build(void)
{
    char *buf = options_help_text;
    size_t size = sizeof(options_help_text);
    size_t used = 0;

    for (size_t i = 0; i < OPTION_COUNT && used < size; i++) {
        const option_spec *spec = &option_specs[i];

        used +=
            (size_t)snprintf(buf + used, size - used, "  %s%s%s  (env %s)\n",
                             spec->flag, spec->metavar ? " " : "",
                             spec->metavar ? spec->metavar : "", spec->env);
        if (used < size) {
            used = help_wrap(buf, size, used, spec->help);
        }
    }
}

const char *
pip_node_options_help(void)
{
    pthread_once(&options_help_once, options_help_build);
    return options_help_text;
}

static int
options_copy_string(pip_node_options *dst, const char **field, const char *src)
{
    if (src == NULL) {
        *field = NULL;
        return 0;
    }
    *field = options_own(dst, src, strlen(src));
    return *field == NULL ? -1 : 0;
}

int
pip__options_copy(pip_node_options *dst, const pip_node_options *src,
                  pip_error *err)
{
    int failed = 0;

    *dst = *src;
    dst->owned = NULL;
    dst->settings =
        src->settings != NULL ? json_deep_copy(src->settings) : json_object();
    failed |= dst->settings == NULL;
    failed |= options_copy_string(dst, &dst->name, src->name);
    for (int i = 0; i < PIP_MAX_LISTEN && src->listen[i] != NULL; i++) {
        failed |= options_copy_string(dst, &dst->listen[i], src->listen[i]);
    }
    failed |= options_copy_string(dst, &dst->pub_listen, src->pub_listen);
    failed |= options_copy_string(dst, &dst->data_dir, src->data_dir);
    failed |=
        options_copy_string(dst, &dst->discovery_url, src->discovery_url);
    failed |= options_copy_string(dst, &dst->host, src->host);
    failed |= options_copy_string(dst, &dst->network_key_file,
                                  src->network_key_file);
    failed |= options_copy_string(dst, &dst->identity_file,
                                  src->identity_file);
    failed |= options_copy_string(dst, &dst->trusted_keys_file,
                                  src->trusted_keys_file);
    if (failed) {
        pip_node_options_fini(dst);
        return options_no_memory(err);
    }
    return PIP_OK;
}
