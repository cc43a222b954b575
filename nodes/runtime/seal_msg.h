/*
 * Sealing and opening whole NNG messages, for the runtime's sockets.  Not
 * installed.
 */
#ifndef PIP_SEAL_MSG_H
#define PIP_SEAL_MSG_H

#include <nng/nng.h>

#include "pip/seal.h"

/*
 * Replaces *msg with its sealed form.  The first keep bytes (an event's
 * topic and its zero byte) stay in the clear.  When keep > 0, those bytes
 * without the zero byte are the frame's context, else context is.  On
 * failure *msg is unchanged.
 */
__attribute__((visibility("hidden"))) int
pip__msg_seal(const pip_keyring *kr, pip_seal_kind kind, const uint8_t *context,
              size_t context_len, size_t keep, nng_msg **msg,
              uint8_t nonce_out[PIP_SEAL_NONCE_BYTES]);

/* Opens what pip__msg_seal() sealed.  On failure *msg is unchanged, err
 * contains the reason, and the keyring counts the failure. */
__attribute__((visibility("hidden"))) int
pip__msg_open(pip_keyring *kr, pip_seal_kind kind, const uint8_t *context,
              size_t context_len, size_t keep, nng_msg **msg, pip_peer *peer,
              uint8_t nonce_out[PIP_SEAL_NONCE_BYTES], pip_error *err);

#endif
