/*
 * The libFuzzer entry point of one fuzz target.  CMakeLists.txt builds this
 * file once per target with FUZZ_TARGET_CHECK set to the check of
 * fuzz_checks.h that the target runs.
 */
#include <stdio.h>
#include <stdlib.h>

#include "fuzz_checks.h"

#ifndef FUZZ_TARGET_CHECK
#error "FUZZ_TARGET_CHECK must name a check of fuzz_checks.h"
#endif

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* libFuzzer saves the input that aborted as a crash artifact. */
_Noreturn void
fuzz_invariant_failed(const char *expr, const char *file, int line)
{
    fprintf(stderr, "fuzz: invariant failed at %s:%d: %s\n", file, line, expr);
    abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    FUZZ_TARGET_CHECK(data, size);
    return 0;
}
