/*
 * Helpers shared by the invariant checks of fuzz_checks.h: error checks,
 * packing into a buffer, and limits for decoding what the checks re-encode.
 */
#ifndef PIP_FUZZ_UTIL_H
#define PIP_FUZZ_UTIL_H

#include <stdbool.h>
#include <stddef.h>

#include "pip/wire.h"

/*
 * Limits for decoding a value that the checks packed again.  A re-encoded
 * value may be larger than the input (bin becomes base64, a timestamp a
 * 24-byte string), so only the nesting depth stays limited, at 32.
 */
void fuzz_limits_relaxed(pip_limits *lim);

/*
 * Small limits, so that short fuzz inputs reach every LIMIT_EXCEEDED path:
 * 512-byte messages, depth 6, 32-byte strings, 8 elements or pairs and 4
 * requests per batch.
 */
void fuzz_limits_tight(pip_limits *lim);

/*
 * Checks a failed call: rv is a category, err carries the same category, an
 * upper-case code, a UTF-8 message and details that are NULL or an object.
 */
void fuzz_check_error(int rv, const pip_error *err);

/* True when code is one of the NULL-terminated list. */
bool fuzz_code_in(const char *code, const char *const *codes);

/* True when text is UTF-8 that jansson accepts as a string. */
bool fuzz_is_utf8(const char *text);

/* True when a and b are both NULL or equal JSON values. */
bool fuzz_json_same(const json_t *a, const json_t *b);

/* The number of arrays and objects on the longest path down value. */
size_t fuzz_json_nesting(const json_t *value);

/* Packs value into a new sbuffer; checks that packing succeeds. */
void fuzz_pack_json(msgpack_sbuffer *sbuf, const json_t *value);

/* True when the two buffers hold the same bytes. */
bool fuzz_bytes_same(const msgpack_sbuffer *a, const msgpack_sbuffer *b);

#endif
