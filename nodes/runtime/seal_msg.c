/* Sealing and opening NNG messages; see seal_msg.h. */
#include "seal_msg.h"

#include <string.h>

/* The context of a frame whose clear prefix is a topic and a zero byte. */
static void
msg_context(const nng_msg *msg, size_t keep, const uint8_t **context,
            size_t *context_len)
{
    if (keep > 0) {
        *context = nng_msg_body((nng_msg *)msg);
        *context_len = keep - 1;
    }
}

int
pip__msg_seal(const pip_keyring *kr, pip_seal_kind kind, const uint8_t *context,
              size_t context_len, size_t keep, nng_msg **msg,
              uint8_t nonce_out[PIP_SEAL_NONCE_BYTES])
{
    const uint8_t *body = nng_msg_body(*msg);
    size_t len = nng_msg_len(*msg);
    size_t cap = len + pip_seal_overhead(kr);
    size_t sealed_len = 0;
    nng_msg *out;
    uint8_t *dst;
    int rv;

    if (keep > len || nng_msg_alloc(&out, cap) != 0) {
        return PIP_E_INTERNAL;
    }
    msg_context(*msg, keep, &context, &context_len);
    dst = nng_msg_body(out);
    memcpy(dst, body, keep);
    rv = pip_seal(kr, kind, context, context_len, body + keep, len - keep,
                  dst + keep, &sealed_len, nonce_out);
    if (rv != PIP_OK) {
        nng_msg_free(out);
        return rv;
    }
    nng_msg_chop(out, cap - keep - sealed_len);
    nng_msg_free(*msg);
    *msg = out;
    return PIP_OK;
}

int
pip__msg_open(pip_keyring *kr, pip_seal_kind kind, const uint8_t *context,
              size_t context_len, size_t keep, nng_msg **msg, pip_peer *peer,
              uint8_t nonce_out[PIP_SEAL_NONCE_BYTES], pip_error *err)
{
    const uint8_t *body = nng_msg_body(*msg);
    size_t len = nng_msg_len(*msg);
    size_t plain_len = 0;
    nng_msg *out;
    uint8_t *dst;
    int rv;

    if (keep > len || nng_msg_alloc(&out, len) != 0) {
        return pip_error_set(err, PIP_E_INTERNAL, "OUT_OF_MEMORY",
                             "Cannot allocate %zu bytes to open a message.",
                             len);
    }
    msg_context(*msg, keep, &context, &context_len);
    dst = nng_msg_body(out);
    memcpy(dst, body, keep);
    rv = pip_open(kr, kind, context, context_len, body + keep, len - keep,
                  dst + keep, &plain_len, peer, nonce_out, err);
    if (rv != PIP_OK) {
        nng_msg_free(out);
        return rv;
    }
    nng_msg_chop(out, len - keep - plain_len);
    nng_msg_free(*msg);
    *msg = out;
    return PIP_OK;
}
