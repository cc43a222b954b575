/*
 * Command-line helpers shared by the programs (pipnode, pipcall,
 * piplaunch, pipgate), so each reports usage errors and reads numbers the
 * same way.
 */
#ifndef PIP_TOOLS_CLI_H
#define PIP_TOOLS_CLI_H

#include <stdbool.h>

#include "pip/seal.h"

/*
 * Prints "<program>: <message>" and then hint (e.g. "Run 'pipcall --help'
 * for usage.") on stderr, each on its own line, and returns exit_code.
 */
int cli_usage_error(const char *program, const char *hint, int exit_code,
                    const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/*
 * Parses a whole decimal number in [min, max].  Returns false for empty
 * text, trailing characters ("12abc"), overflow, or a value out of range.
 */
bool cli_parse_int(const char *text, long long min, long long max,
                   long long *out);

/*
 * The key options of every program, with their environment variables:
 *   --network-key-file FILE  PIP_NETWORK_KEY_FILE (PIP_NETWORK_KEY: the line)
 *   --identity-file FILE     PIP_IDENTITY_FILE
 *   --trusted-keys FILE      PIP_TRUSTED_KEYS
 */
#define CLI_KEY_OPTIONS_HELP                                                   \
    "  --network-key-file FILE  seal calls and events with this network "      \
    "key\n"                                                                    \
    "                   (env PIP_NETWORK_KEY_FILE; made by pipkey network)\n"  \
    "  --identity-file FILE  sign as this identity (env PIP_IDENTITY_FILE)\n"  \
    "  --trusted-keys FILE   accept events only when signed by these "         \
    "keys\n"                                                                   \
    "                   (env PIP_TRUSTED_KEYS)\n"

/*
 * Reads the value of option `name` from "--name=value" or from the next
 * argument, moving *i past it.  Returns NULL when argv[*i] is another
 * option or has no value.
 */
const char *cli_option_value(const char *name, int argc, char **argv,
                             int *i);

/* Sets the field of src that a key option names; false for another
 * option. */
bool cli_key_option(pip_key_sources *src, const char *name,
                    const char *value);

/* When argv[*i] is a key option with its value, sets its field of src
 * and returns the value (see cli_option_value); else returns NULL. */
const char *cli_parse_key_option(pip_key_sources *src, int argc,
                                 char **argv, int *i);

/* Sets PIP_NETWORK_KEY_FILE, PIP_IDENTITY_FILE and PIP_TRUSTED_KEYS from
 * the files that src names, so that child processes inherit the keys. */
void cli_export_keys(const pip_key_sources *src);

/*
 * Loads the keys that src or the environment name and installs them as
 * the process default, so every client and subscriber of the program
 * seals its traffic.  *out is NULL when no key is set.  Prints the error
 * and returns false when a key does not load.
 */
bool cli_keys_load(const char *program, const pip_key_sources *src,
                   pip_keyring **out);

#endif
