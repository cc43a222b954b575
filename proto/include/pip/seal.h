/*
 * Sealed messages: what keeps a node's traffic to those holding the keys.
 *
 * A keyring holds up to three things, each optional:
 *   - the network key, shared by every node and tool of a deployment: with
 *     it every RPC message and event is sealed with XChaCha20-Poly1305, so
 *     only holders of the key can read or forge traffic;
 *   - an identity, an Ed25519 key pair with a name: with it every request
 *     and event sent is also signed, so receivers learn who sent it;
 *   - a list of trusted public keys: with it only requests and events
 *     signed by one of them are accepted.  Replies are not signed: the
 *     request's nonce binds each to its request.
 *
 * A sealed frame starts with the byte 0xC1, which MessagePack never uses,
 * so a sealed frame cannot be mistaken for a plain envelope:
 *
 *   0xC1 | version 1 | kind | sent_ms (8, big-endian) | nonce (24)
 *        | [public key (32) | signature (64)]   when kind has PIP_SEAL_SIGNED
 *        | ciphertext | tag (16)
 *
 * The additional data of the AEAD is everything before the signature plus
 * a BLAKE2b hash of the frame's context.  A request has no context.  A
 * reply's context is its request's nonce, so a reply opens only for its
 * own request.  An event's context is its topic, which travels in the
 * clear before the frame because subscribers filter on it.  The signature
 * covers the same bytes and the ciphertext.  Requests and events older or newer than the
 * replay window, or whose nonce was seen before, are rejected.
 *
 * Secrets never leave the keyring: errors name files and lines, never
 * their content.  proto/PROTOCOL.md describes the modes and key files.
 */
#ifndef PIP_SEAL_H
#define PIP_SEAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pip/error.h"

#ifdef __cplusplus
extern "C" {
#endif

#define PIP_SEAL_MAGIC 0xC1
#define PIP_SEAL_VERSION 1
#define PIP_SEAL_NONCE_BYTES 24
#define PIP_SEAL_KEY_BYTES 32
#define PIP_SEAL_HEADER_BYTES 35 /* magic, version, kind, sent_ms, nonce */
#define PIP_SEAL_SIGNER_BYTES 96 /* public key and signature */
#define PIP_SEAL_TAG_BYTES 16
#define PIP_SEAL_MAX_OVERHEAD                                                  \
    (PIP_SEAL_HEADER_BYTES + PIP_SEAL_SIGNER_BYTES + PIP_SEAL_TAG_BYTES)
#define PIP_SEAL_NAME_MAX 63

/* Defaults of the replay defence. */
#define PIP_SEAL_WINDOW_MS 30000
#define PIP_SEAL_REPLAY_ENTRIES 262144

typedef enum pip_seal_kind {
    PIP_SEAL_REQUEST = 1,
    PIP_SEAL_REPLY = 2,
    PIP_SEAL_EVENT = 3,
} pip_seal_kind;

/* Set in the kind byte of a frame that carries a signer. */
#define PIP_SEAL_SIGNED 0x80

typedef struct pip_keyring pip_keyring;

/* Who sent an opened message. */
typedef struct pip_peer {
    bool identified; /* the frame carried a valid signature */
    uint8_t public_key[PIP_SEAL_KEY_BYTES];
    char name[PIP_SEAL_NAME_MAX + 1]; /* from the trusted list, else "" */
} pip_peer;

/* A short label of peer for logs: its trusted name, else "key:" and the
 * first 6 bytes of its public key in hex, else "unsigned".  buf has at
 * least PIP_SEAL_NAME_MAX + 1 bytes. */
const char *pip_peer_label(const pip_peer *peer, char *buf, size_t size);

/* Counts of frames that open rejected, since the keyring was made. */
typedef struct pip_seal_stats {
    uint64_t auth_failed; /* not sealed, bad tag or bad signature */
    uint64_t replayed;    /* nonce seen before, or outside the window */
    uint64_t untrusted;   /* signer missing or not in the trusted list */
} pip_seal_stats;

int pip_keyring_new(pip_keyring **out, pip_error *err);
void pip_keyring_free(pip_keyring *kr);

/*
 * Loading keys.  Key files are text: a kind word, then fields, then a
 * newline; '#' starts a comment line.  Files holding a secret must not be
 * readable by group or others (mode 0600), or loading fails.
 *   network key:  pip-network-key <base64 of 32 bytes>
 *   identity:     pip-identity <name> <base64 of the 64-byte secret key>
 *   public key:   pip-public-key <name> <base64 of 32 bytes>
 * A trusted-keys file contains any number of public-key lines.
 */
int pip_keyring_load_network_key(pip_keyring *kr, const char *path,
                                 pip_error *err);
/* The same from text, such as an environment variable; origin names it
 * in errors. */
int pip_keyring_parse_network_key(pip_keyring *kr, const char *text,
                                  const char *origin, pip_error *err);
int pip_keyring_load_identity(pip_keyring *kr, const char *path,
                              pip_error *err);
int pip_keyring_load_trusted(pip_keyring *kr, const char *path,
                             pip_error *err);
/* window_ms > 0; entries >= 1024. */
void pip_keyring_set_replay(pip_keyring *kr, int64_t window_ms,
                            uint32_t entries);

/* Where a program's keys come from: flags first, then PIP_NETWORK_KEY_FILE,
 * PIP_NETWORK_KEY (the key line itself), PIP_IDENTITY_FILE and
 * PIP_TRUSTED_KEYS. */
typedef struct pip_key_sources {
    const char *network_key_file;
    const char *identity_file;
    const char *trusted_keys_file;
} pip_key_sources;

/* Builds a keyring from src; *out is NULL when no key is configured. */
int pip_keyring_configure(const pip_key_sources *src, pip_keyring **out,
                          pip_error *err);

bool pip_keyring_sealing(const pip_keyring *kr); /* has a network key */
bool pip_keyring_signing(const pip_keyring *kr); /* has an identity */
size_t pip_keyring_trusted_count(const pip_keyring *kr);
/* The identity's name, or NULL. */
const char *pip_keyring_identity_name(const pip_keyring *kr);
void pip_keyring_stats(const pip_keyring *kr, pip_seal_stats *out);
/* One line describing the mode, for a start-up log: no secrets. */
const char *pip_keyring_mode(const pip_keyring *kr);

/*
 * The keyring that clients and subscribers of this process use when their
 * options name none.  Set it once at start; it must outlive its users.
 */
void pip_keyring_set_default(pip_keyring *kr);
pip_keyring *pip_keyring_default(void);

/* Bytes a sealed frame adds to a message of this keyring. */
size_t pip_seal_overhead(const pip_keyring *kr);

/*
 * Seals len bytes of plain into out, which has room for len +
 * pip_seal_overhead(kr) bytes; context as described above (NULL, 0 for
 * none).  nonce_out (may be NULL) receives the frame's nonce.
 */
int pip_seal(const pip_keyring *kr, pip_seal_kind kind,
             const uint8_t *context, size_t context_len, const uint8_t *plain,
             size_t len, uint8_t *out, size_t *out_len,
             uint8_t nonce_out[PIP_SEAL_NONCE_BYTES]);

/*
 * Opens a frame of the given kind into plain, which has room for len
 * bytes, and fills *plain_len, *peer (may be NULL) and nonce_out (may be
 * NULL).  Requests and events also pass the replay check.  Errors:
 * PIP_E_UNAUTHORIZED with code NOT_SEALED, AUTH_FAILED, REPLAYED or
 * UNTRUSTED_SENDER, each also counted in the keyring.  The message names
 * the check that failed, never anything about the keys.
 */
int pip_open(pip_keyring *kr, pip_seal_kind kind, const uint8_t *context,
             size_t context_len, const uint8_t *frame, size_t len,
             uint8_t *plain, size_t *plain_len, pip_peer *peer,
             uint8_t nonce_out[PIP_SEAL_NONCE_BYTES], pip_error *err);

/* Whether bytes start like a sealed frame. */
bool pip_seal_is_frame(const uint8_t *buf, size_t len);

/* Key generation and files, for pipkey and tests.  Files are created with
 * mode 0600 and never overwritten. */
int pip_key_write_network(const char *path, pip_error *err);
/* Writes an identity; public_line (may be NULL, at least 128 bytes)
 * receives its public-key line. */
int pip_key_write_identity(const char *path, const char *name,
                           char *public_line, size_t line_size,
                           pip_error *err);
/* The public-key line of an identity file. */
int pip_key_public_line(const char *identity_path, char *line,
                        size_t line_size, pip_error *err);

#ifdef __cplusplus
}
#endif
#endif
