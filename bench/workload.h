/*
 * Workloads: the commands that pipbench sends, with their arguments and
 * weights.  A workload is one command from the command line, or a mix
 * read from a file of lines
 *
 *   WEIGHT  SERVICE.COMMAND  [ARGUMENTS]
 *
 * where ARGUMENTS is one JSON object or key=value pairs.  A value that is
 * valid JSON is sent as that value, and anything else as a string.  A
 * line starting with '#' is a comment, and blank lines are skipped.  A
 * string argument may contain the placeholders {n} (a counter that goes up
 * by one per call of the run) and {rand} or {rand:N} (a random integer
 * below N, default 1000000).  A string that is exactly one placeholder is
 * sent as an integer, so `count={n}` sends a number.
 */
#ifndef BENCH_WORKLOAD_H
#define BENCH_WORKLOAD_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pip/error.h"
#include "pip/wire.h"

#define BENCH_MAX_COMMANDS 32
#define BENCH_MAX_TARGETS 8
#define BENCH_SERVICE_MAX 64

typedef struct bench_command {
    char method[PIP_METHOD_MAX];
    json_t *args;          /* owned object; strings may hold placeholders */
    bool has_placeholders; /* args must be expanded per call */
    unsigned weight;
    int target;            /* index into bench_workload.services */
} bench_command;

typedef struct bench_workload {
    bench_command commands[BENCH_MAX_COMMANDS];
    int command_count;
    unsigned total_weight;
    /* The distinct services of the commands: each gets its own sockets. */
    char services[BENCH_MAX_TARGETS][BENCH_SERVICE_MAX];
    int service_count;
} bench_workload;

void bench_workload_init(bench_workload *w);
void bench_workload_fini(bench_workload *w);

/*
 * Adds one command.  args is a JSON object (borrowed) or NULL for none.
 * Errors: PIP_E_BAD_REQUEST for an invalid method, a zero weight, or too
 * many commands or services.
 */
int bench_workload_add(bench_workload *w, unsigned weight, const char *method,
                       const json_t *args, pip_error *err);

/*
 * Parses the argument words of a command line: either one JSON object or
 * key=value pairs.  *args is a new object.  Errors: PIP_E_BAD_REQUEST.
 */
int bench_args_parse(const char *const *words, int count, json_t **args,
                     pip_error *err);

/*
 * Parses workload text.  name appears in messages, which have the form
 * "NAME:LINE: what is wrong".  Errors: PIP_E_BAD_REQUEST.
 */
int bench_workload_parse(bench_workload *w, const char *text,
                         const char *name, pip_error *err);
/* Reads and parses a workload file.  Errors as above, or NOT_FOUND. */
int bench_workload_load(bench_workload *w, const char *path, pip_error *err);

/* Picks a command by weight; roll is any random 32-bit number. */
const bench_command *bench_workload_pick(const bench_workload *w,
                                         uint32_t roll);

/*
 * Returns the arguments of one call as a new reference: cmd->args itself
 * when it has no placeholders, else a copy with {n} replaced by
 * call_number and {rand...} drawn from *rng_state (xorshift state, not
 * zero).  NULL when out of memory.
 */
json_t *bench_args_expand(const bench_command *cmd, uint64_t call_number,
                          uint64_t *rng_state);

/* A xorshift64 step: fast, and good enough to vary keys. */
uint64_t bench_rng_next(uint64_t *state);

#endif
