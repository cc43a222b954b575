/*
 * Command-line helpers shared by the programs (pipnode, pipcall,
 * piplaunch, pipgate), so each reports usage errors and reads numbers the
 * same way.
 */
#ifndef PIP_TOOLS_CLI_H
#define PIP_TOOLS_CLI_H

#include <stdbool.h>

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

#endif
