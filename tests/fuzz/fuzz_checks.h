/*
 * The invariant checks of the fuzz targets.  The libFuzzer targets in
 * targets/ and the cmocka replay test run the same checks, so every corpus
 * and regression file is checked in the normal builds too, without clang.
 *
 * Each check takes the bytes of one input, runs the decoders on them and
 * returns normally when every invariant holds.  On a broken invariant it
 * calls fuzz_invariant_failed(), which the program that links the checks
 * defines and which must not return.
 */
#ifndef PIP_FUZZ_CHECKS_H
#define PIP_FUZZ_CHECKS_H

#include <stddef.h>
#include <stdint.h>

/* Reports a broken invariant (expr at file:line) and does not return. */
_Noreturn void fuzz_invariant_failed(const char *expr, const char *file,
                                     int line);

#define FUZZ_CHECK(cond)                                                      \
    ((cond) ? (void)0 : fuzz_invariant_failed(#cond, __FILE__, __LINE__))

/*
 * Decodes data as a req/rep message the way a node does: requests back to
 * back up to max_batch.  Also decodes it as a batch of responses and as a
 * pub/sub event, and re-encodes every decoded value to check that it reads
 * back the same.
 */
void fuzz_check_envelope(const uint8_t *data, size_t size);

/*
 * Decodes data as a msgpack object and validates it, when it is a map,
 * against a few schemas like those of the shipped services.  Checks the
 * error fields on failure, and on success that the result has the
 * normalized form and validates again unchanged.
 */
void fuzz_check_schema(const uint8_t *data, size_t size);

/*
 * Checks the msgpack <-> JSON bridge both ways: data as msgpack goes to
 * JSON and back and must read back equal and pack to the same bytes, and
 * data as JSON text parsed by jansson must pack and decode to an equal
 * value.
 */
void fuzz_check_bridge(const uint8_t *data, size_t size);

#endif
