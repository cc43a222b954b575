/*
 * Per-test state for the wire tests that pack msgpack by hand.  It
 * contains a packer over a growing buffer, an error, and a request and a
 * response for the decoders to fill.  Included by one test file each, so
 * the helpers are static inline.
 */
#ifndef PACK_FIXTURE_H
#define PACK_FIXTURE_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <stdlib.h>

#include "pip/wire.h"

typedef struct fixture {
    msgpack_sbuffer sbuf;
    msgpack_packer pk;
    pip_error err;
    pip_request req;
    pip_response resp;
} fixture;

static inline int
fixture_setup(void **state)
{
    fixture *fx = calloc(1, sizeof(*fx));

    assert_non_null(fx);
    msgpack_sbuffer_init(&fx->sbuf);
    msgpack_packer_init(&fx->pk, &fx->sbuf, msgpack_sbuffer_write);
    pip_error_init(&fx->err);
    pip_request_init(&fx->req);
    pip_response_init(&fx->resp);
    *state = fx;
    return 0;
}

static inline int
fixture_teardown(void **state)
{
    fixture *fx = *state;

    msgpack_sbuffer_destroy(&fx->sbuf);
    pip_error_fini(&fx->err);
    pip_request_fini(&fx->req);
    pip_response_fini(&fx->resp);
    free(fx);
    return 0;
}

#endif
