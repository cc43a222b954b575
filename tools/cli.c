/* Command-line helpers shared by the programs; see cli.h. */
#include "cli.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int
cli_usage_error(const char *program, const char *hint, int exit_code,
                const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "%s: ", program);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n%s\n", hint);
    return exit_code;
}

bool
cli_parse_int(const char *text, long long min, long long max, long long *out)
{
    char *end;
    long long value;

    errno = 0;
    value = strtoll(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || value < min ||
        value > max) {
        return false;
    }
    *out = value;
    return true;
}

const char *
cli_option_value(const char *name, int argc, char **argv, int *i)
{
    size_t name_len = strlen(name);
    const char *arg = argv[*i];

    if (strncmp(arg, name, name_len) != 0) {
        return NULL;
    }
    if (arg[name_len] == '=') {
        return arg + name_len + 1;
    }
    if (arg[name_len] != '\0' || *i + 1 >= argc) {
        return NULL;
    }
    *i += 1;
    return argv[*i];
}

/* The key options and their environment variables. */
static const char *const cli_key_options[][2] = {
    {"--network-key-file", "PIP_NETWORK_KEY_FILE"},
    {"--identity-file", "PIP_IDENTITY_FILE"},
    {"--trusted-keys", "PIP_TRUSTED_KEYS"},
};

#define CLI_KEY_OPTION_COUNT                                                   \
    (sizeof(cli_key_options) / sizeof(cli_key_options[0]))

const char *
cli_parse_key_option(pip_key_sources *src, int argc, char **argv, int *i)
{
    for (size_t k = 0; k < CLI_KEY_OPTION_COUNT; k++) {
        const char *name = cli_key_options[k][0];
        const char *value = cli_option_value(name, argc, argv, i);

        if (value != NULL) {
            cli_key_option(src, name, value);
            return value;
        }
    }
    return NULL;
}

void
cli_export_keys(const pip_key_sources *src)
{
    const char *files[CLI_KEY_OPTION_COUNT] = {
        src->network_key_file, src->identity_file, src->trusted_keys_file};

    for (size_t k = 0; k < CLI_KEY_OPTION_COUNT; k++) {
        if (files[k] != NULL) {
            setenv(cli_key_options[k][1], files[k], 1);
        }
    }
}

bool
cli_key_option(pip_key_sources *src, const char *name, const char *value)
{
    if (strcmp(name, "--network-key-file") == 0) {
        src->network_key_file = value;
    } else if (strcmp(name, "--identity-file") == 0) {
        src->identity_file = value;
    } else if (strcmp(name, "--trusted-keys") == 0) {
        src->trusted_keys_file = value;
    } else {
        return false;
    }
    return true;
}

bool
cli_keys_load(const char *program, const pip_key_sources *src,
              pip_keyring **out)
{
    pip_error err;
    int rv;

    pip_error_init(&err);
    rv = pip_keyring_configure(src, out, &err);
    if (rv != PIP_OK) {
        fprintf(stderr, "%s: %s\n", program, err.message);
    } else {
        pip_keyring_set_default(*out);
    }
    pip_error_fini(&err);
    return rv == PIP_OK;
}
