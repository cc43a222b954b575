/*
 * Sealed frames, keyrings, key files and the replay defence; see
 * pip/seal.h for the frame layout.
 */
#include "pip/seal.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "pip/time.h"

#define SEAL_CONTEXT_HASH_BYTES 32
#define SEAL_AD_MAX                                                            \
    (PIP_SEAL_HEADER_BYTES + PIP_SEAL_KEY_BYTES + SEAL_CONTEXT_HASH_BYTES)
#define SEAL_SECRET_FILE_MAX 4096
#define SEAL_TRUSTED_FILE_MAX (1 << 20)
#define SEAL_REPLAY_MIN_SLOTS 1024

#define KIND_NETWORK "pip-network-key"
#define KIND_IDENTITY "pip-identity"
#define KIND_PUBLIC "pip-public-key"

typedef struct seal_trusted {
    uint8_t public_key[PIP_SEAL_KEY_BYTES];
    char name[PIP_SEAL_NAME_MAX + 1];
} seal_trusted;

/*
 * One generation of seen nonces: an open-addressing set of the nonces'
 * first 8 bytes (random, so they hash themselves), never deleted from;
 * whole generations are dropped instead.  NOTE: a general hash table
 * (GLib, uthash) would allocate per entry and delete one by one.  This
 * set is one array, so its memory is bounded and dropping it is one
 * free().
 */
typedef struct seal_gen {
    uint64_t *slots; /* 0 marks a free slot */
    uint32_t mask;
    uint32_t count;
    int64_t started_ms;
    int64_t max_sent_ms;
} seal_gen;

struct pip_keyring {
    bool has_network;
    uint8_t network_key[PIP_SEAL_KEY_BYTES];
    bool has_identity;
    uint8_t secret_key[crypto_sign_SECRETKEYBYTES];
    uint8_t public_key[PIP_SEAL_KEY_BYTES];
    char name[PIP_SEAL_NAME_MAX + 1];
    seal_trusted *trusted;
    size_t n_trusted;

    /*
     * The replay defence.  A request or event is accepted when its sent_ms
     * is within window_ms of now, above floor_ms, and its nonce is in
     * neither generation.  When the current generation is full, the
     * previous one is dropped and floor_ms rises to the newest sent_ms it
     * held, so a frame that might have been in it is still rejected.  A
     * generation whose newest frame left the window is dropped for free.
     */
    pthread_mutex_t replay_mtx;
    int64_t window_ms;
    uint32_t max_entries;
    int64_t floor_ms;
    seal_gen cur;
    seal_gen prev;

    atomic_uint_fast64_t auth_failed;
    atomic_uint_fast64_t replayed;
    atomic_uint_fast64_t untrusted;
    char mode[160];
};

static _Atomic(pip_keyring *) seal_default_keyring;

/* Keyrings */

int
pip_keyring_new(pip_keyring **out, pip_error *err)
{
    pip_keyring *kr;

    *out = NULL;
    if (sodium_init() < 0) {
        return pip_error_set(err, PIP_E_INTERNAL, "CRYPTO_INIT_FAILED",
                             "libsodium could not be initialised.");
    }
    kr = calloc(1, sizeof(*kr));
    if (kr == NULL || pthread_mutex_init(&kr->replay_mtx, NULL) != 0) {
        free(kr);
        return pip_error_set(err, PIP_E_INTERNAL, "OUT_OF_MEMORY",
                             "Cannot allocate a keyring.");
    }
    kr->window_ms = PIP_SEAL_WINDOW_MS;
    kr->max_entries = PIP_SEAL_REPLAY_ENTRIES;
    atomic_init(&kr->auth_failed, 0);
    atomic_init(&kr->replayed, 0);
    atomic_init(&kr->untrusted, 0);
    *out = kr;
    return PIP_OK;
}

void
pip_keyring_free(pip_keyring *kr)
{
    if (kr == NULL) {
        return;
    }
    free(kr->cur.slots);
    free(kr->prev.slots);
    free(kr->trusted);
    pthread_mutex_destroy(&kr->replay_mtx);
    sodium_memzero(kr, sizeof(*kr));
    free(kr);
}

void
pip_keyring_set_replay(pip_keyring *kr, int64_t window_ms, uint32_t entries)
{
    if (window_ms > 0) {
        kr->window_ms = window_ms;
    }
    if (entries >= SEAL_REPLAY_MIN_SLOTS) {
        kr->max_entries = entries;
    }
}

bool
pip_keyring_sealing(const pip_keyring *kr)
{
    return kr != NULL && kr->has_network;
}

bool
pip_keyring_signing(const pip_keyring *kr)
{
    return kr != NULL && kr->has_identity;
}

size_t
pip_keyring_trusted_count(const pip_keyring *kr)
{
    return kr != NULL ? kr->n_trusted : 0;
}

const char *
pip_keyring_identity_name(const pip_keyring *kr)
{
    return kr != NULL && kr->has_identity ? kr->name : NULL;
}

void
pip_keyring_stats(const pip_keyring *kr, pip_seal_stats *out)
{
    memset(out, 0, sizeof(*out));
    if (kr != NULL) {
        out->auth_failed = atomic_load(&kr->auth_failed);
        out->replayed = atomic_load(&kr->replayed);
        out->untrusted = atomic_load(&kr->untrusted);
    }
}

const char *
pip_keyring_mode(const pip_keyring *kr)
{
    if (kr == NULL || !kr->has_network) {
        return "unauthenticated: no network key, traffic is plain";
    }
    return kr->mode;
}

/* Describes the keyring for pip_keyring_mode(), after each change. */
static void
seal_update_mode(pip_keyring *kr)
{
    if (!kr->has_identity) {
        snprintf(kr->mode, sizeof(kr->mode),
                 "sealed with the network key; unsigned; %zu trusted key%s",
                 kr->n_trusted, kr->n_trusted == 1 ? "" : "s");
    } else {
        snprintf(kr->mode, sizeof(kr->mode),
                 "sealed with the network key; signed as \"%s\"; %zu "
                 "trusted key%s",
                 kr->name, kr->n_trusted, kr->n_trusted == 1 ? "" : "s");
    }
}

const char *
pip_peer_label(const pip_peer *peer, char *buf, size_t size)
{
    char hex[13];

    if (peer == NULL || !peer->identified) {
        return "unsigned";
    }
    if (peer->name[0] != '\0') {
        return peer->name;
    }
    sodium_bin2hex(hex, sizeof(hex), peer->public_key, 6);
    snprintf(buf, size, "key:%s", hex);
    return buf;
}

void
pip_keyring_set_default(pip_keyring *kr)
{
    atomic_store(&seal_default_keyring, kr);
}

pip_keyring *
pip_keyring_default(void)
{
    return atomic_load(&seal_default_keyring);
}

/* Key files */

static bool
seal_name_ok(const char *s, size_t len)
{
    if (len == 0 || len > PIP_SEAL_NAME_MAX) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                  (c >= '0' && c <= '9') || c == '.' || c == '_' ||
                  c == '-';
        if (!ok) {
            return false;
        }
    }
    return true;
}

/* Splits a line into at most max whitespace-separated fields, in place. */
static int
seal_fields(char *line, char **field, int max)
{
    int n = 0;
    char *save = NULL;

    for (char *tok = strtok_r(line, " \t\r", &save); tok != NULL;
         tok = strtok_r(NULL, " \t\r", &save)) {
        if (n == max) {
            return max + 1;
        }
        field[n++] = tok;
    }
    return n;
}

static bool
seal_base64(const char *text, uint8_t *bin, size_t want)
{
    size_t got = 0;

    return sodium_base642bin(bin, want, text, strlen(text), NULL, &got, NULL,
                             sodium_base64_VARIANT_ORIGINAL) == 0 &&
           got == want;
}

/*
 * Reads a whole key file into a NUL-ended buffer that the caller wipes and
 * frees.  A secret file must be a regular file that only its owner can
 * read.
 */
static int
seal_read_file(const char *path, bool secret, size_t max_bytes, char **out,
               pip_error *err)
{
    struct stat st;
    char *buf;
    ssize_t got;
    int fd;

    *out = NULL;
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return pip_error_set(err, PIP_E_BAD_REQUEST, "KEY_FILE_UNREADABLE",
                             "Cannot open key file %s: %s. Check the path, "
                             "or make the file with pipkey.",
                             path, strerror(errno));
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) ||
        (size_t)st.st_size > max_bytes) {
        close(fd);
        return pip_error_set(err, PIP_E_BAD_REQUEST, "KEY_FILE_INVALID",
                             "Key file %s is not a regular file of at most "
                             "%zu bytes.",
                             path, max_bytes);
    }
    if (secret && (st.st_mode & 077) != 0) {
        close(fd);
        return pip_error_set(err, PIP_E_BAD_REQUEST, "KEY_FILE_PERMISSIONS",
                             "Key file %s can be read by group or others "
                             "(mode %04o); run chmod 600 %s.",
                             path, (unsigned)(st.st_mode & 07777), path);
    }
    buf = malloc((size_t)st.st_size + 1);
    if (buf == NULL) {
        close(fd);
        return pip_error_set(err, PIP_E_INTERNAL, "OUT_OF_MEMORY",
                             "Cannot allocate %zu bytes for key file %s.",
                             (size_t)st.st_size + 1, path);
    }
    got = read(fd, buf, (size_t)st.st_size);
    close(fd);
    if (got != (ssize_t)st.st_size) {
        free(buf);
        return pip_error_set(err, PIP_E_BAD_REQUEST, "KEY_FILE_UNREADABLE",
                             "Cannot read key file %s.", path);
    }
    buf[got] = '\0';
    *out = buf;
    return PIP_OK;
}

static void
seal_wipe(char *buf)
{
    if (buf != NULL) {
        sodium_memzero(buf, strlen(buf));
        free(buf);
    }
}

/* Calls fn for each non-comment line of buf with its fields. */
typedef int (*seal_line_fn)(pip_keyring *kr, char **field, int n,
                            const char *origin, int line_no, pip_error *err);

static int
seal_each_line(pip_keyring *kr, char *buf, const char *origin, seal_line_fn fn,
               int *lines, pip_error *err)
{
    int line_no = 0;

    *lines = 0;
    for (char *line = buf; line != NULL;) {
        char *next = strchr(line, '\n');
        char *field[4];
        int n;

        if (next != NULL) {
            *next++ = '\0';
        }
        line_no++;
        n = seal_fields(line, field, 3);
        if (n > 0 && field[0][0] != '#') {
            int rv = fn(kr, field, n, origin, line_no, err);
            if (rv != PIP_OK) {
                return rv;
            }
            (*lines)++;
        }
        line = next;
    }
    return PIP_OK;
}

static int
seal_line_error(pip_error *err, const char *origin, int line_no,
                const char *expected)
{
    return pip_error_set(err, PIP_E_BAD_REQUEST, "KEY_FILE_INVALID",
                         "Line %d of %s is not %s.", line_no, origin,
                         expected);
}

static int
seal_second_key(pip_error *err, const char *origin, int line_no)
{
    return pip_error_set(err, PIP_E_BAD_REQUEST, "KEY_FILE_INVALID",
                         "Line %d of %s is a second key, but a key file "
                         "contains only one.",
                         line_no, origin);
}

/* The kinds of key lines, for errors that name the option taking each. */
static const struct seal_kind_name {
    const char *word;
    const char *noun;
    const char *where;
} seal_kind_names[] = {
    {KIND_NETWORK, "a network key", "pass it with --network-key-file"},
    {KIND_IDENTITY, "an identity", "pass it with --identity-file"},
    {KIND_PUBLIC, "a public key", "list it in a --trusted-keys file"},
};

#define SEAL_KIND_COUNT (sizeof(seal_kind_names) / sizeof(seal_kind_names[0]))

/*
 * Fails a line whose kind word names another kind of key than expected,
 * with an error that names the option taking it.  Returns PIP_OK for any
 * other line.
 */
static int
seal_check_kind(const char *word, const char *expected, pip_error *err,
                const char *origin, int line_no)
{
    const char *noun = NULL;

    for (size_t i = 0; i < SEAL_KIND_COUNT; i++) {
        if (strcmp(seal_kind_names[i].word, expected) == 0) {
            noun = seal_kind_names[i].noun;
        }
    }
    for (size_t i = 0; i < SEAL_KIND_COUNT; i++) {
        const struct seal_kind_name *k = &seal_kind_names[i];

        if (strcmp(word, expected) != 0 && strcmp(word, k->word) == 0) {
            return pip_error_set(err, PIP_E_BAD_REQUEST, "KEY_FILE_INVALID",
                                 "Line %d of %s is %s, not %s: %s.", line_no,
                                 origin, k->noun, noun, k->where);
        }
    }
    return PIP_OK;
}

static int
seal_network_line(pip_keyring *kr, char **field, int n, const char *origin,
                  int line_no, pip_error *err)
{

    static const char expected[] =
        "a network key (expected: pip-network-key <base64 of 32 bytes>)";

    if (seal_check_kind(field[0], KIND_NETWORK, err, origin, line_no) !=
        PIP_OK) {
        return PIP_E_BAD_REQUEST;
    }
    if (kr->has_network) {
        return seal_second_key(err, origin, line_no);
    }
    if (n != 2 || strcmp(field[0], KIND_NETWORK) != 0 ||
        !seal_base64(field[1], kr->network_key, PIP_SEAL_KEY_BYTES)) {
        sodium_memzero(kr->network_key, sizeof(kr->network_key));
        return seal_line_error(err, origin, line_no, expected);
    }
    kr->has_network = true;
    return PIP_OK;
}

static int
seal_identity_line(pip_keyring *kr, char **field, int n, const char *origin,
                   int line_no, pip_error *err)
{

    static const char expected[] =
        "an identity (expected: pip-identity <name> <base64 of 64 bytes>)";

    if (seal_check_kind(field[0], KIND_IDENTITY, err, origin, line_no) !=
        PIP_OK) {
        return PIP_E_BAD_REQUEST;
    }
    if (kr->has_identity) {
        return seal_second_key(err, origin, line_no);
    }
    if (n != 3 || strcmp(field[0], KIND_IDENTITY) != 0 ||
        !seal_name_ok(field[1], strlen(field[1])) ||
        !seal_base64(field[2], kr->secret_key, sizeof(kr->secret_key))) {
        sodium_memzero(kr->secret_key, sizeof(kr->secret_key));
        return seal_line_error(err, origin, line_no, expected);
    }
    crypto_sign_ed25519_sk_to_pk(kr->public_key, kr->secret_key);
    snprintf(kr->name, sizeof(kr->name), "%s", field[1]);
    kr->has_identity = true;
    return PIP_OK;
}

static int
seal_trusted_line(pip_keyring *kr, char **field, int n, const char *origin,
                  int line_no, pip_error *err)
{
    seal_trusted entry;
    seal_trusted *grown;

    if (seal_check_kind(field[0], KIND_PUBLIC, err, origin, line_no) !=
        PIP_OK) {
        return PIP_E_BAD_REQUEST;
    }
    if (n != 3 || strcmp(field[0], KIND_PUBLIC) != 0 ||
        !seal_name_ok(field[1], strlen(field[1])) ||
        !seal_base64(field[2], entry.public_key, PIP_SEAL_KEY_BYTES)) {
        return seal_line_error(
            err, origin, line_no,
            "a public key (expected: pip-public-key <name> <base64 of 32 "
            "bytes>, as pipkey public prints it)");
    }
    snprintf(entry.name, sizeof(entry.name), "%s", field[1]);
    grown = realloc(kr->trusted, (kr->n_trusted + 1) * sizeof(*grown));
    if (grown == NULL) {
        return pip_error_set(err, PIP_E_INTERNAL, "OUT_OF_MEMORY",
                             "Cannot grow the trusted key list.");
    }
    kr->trusted = grown;
    kr->trusted[kr->n_trusted++] = entry;
    return PIP_OK;
}

static int
seal_load(pip_keyring *kr, const char *path, bool secret, size_t max_bytes,
          seal_line_fn fn, const char *what, pip_error *err)
{
    char *buf = NULL;
    int lines = 0;
    int rv = seal_read_file(path, secret, max_bytes, &buf, err);

    if (rv == PIP_OK) {
        rv = seal_each_line(kr, buf, path, fn, &lines, err);
    }
    seal_wipe(buf);
    if (rv == PIP_OK && lines == 0) {
        rv = pip_error_set(err, PIP_E_BAD_REQUEST, "KEY_FILE_INVALID",
                           "Key file %s contains no %s.", path, what);
    }
    seal_update_mode(kr);
    return rv;
}

int
pip_keyring_load_network_key(pip_keyring *kr, const char *path,
                             pip_error *err)
{
    return seal_load(kr, path, true, SEAL_SECRET_FILE_MAX, seal_network_line,
                     "network key", err);
}

int
pip_keyring_parse_network_key(pip_keyring *kr, const char *text,
                              const char *origin, pip_error *err)
{
    size_t len = strlen(text);
    char *copy = malloc(len + 1);
    int lines = 0;
    int rv;

    if (copy == NULL) {
        return pip_error_set(err, PIP_E_INTERNAL, "OUT_OF_MEMORY",
                             "Cannot copy the network key of %s.", origin);
    }
    memcpy(copy, text, len + 1);
    rv = seal_each_line(kr, copy, origin, seal_network_line, &lines, err);
    seal_wipe(copy);
    if (rv == PIP_OK && lines == 0) {
        rv = pip_error_set(err, PIP_E_BAD_REQUEST, "KEY_FILE_INVALID",
                           "%s contains no network key.", origin);
    }
    seal_update_mode(kr);
    return rv;
}

int
pip_keyring_load_identity(pip_keyring *kr, const char *path, pip_error *err)
{
    return seal_load(kr, path, true, SEAL_SECRET_FILE_MAX, seal_identity_line,
                     "identity", err);
}

int
pip_keyring_load_trusted(pip_keyring *kr, const char *path, pip_error *err)
{
    return seal_load(kr, path, false, SEAL_TRUSTED_FILE_MAX,
                     seal_trusted_line, "public key", err);
}

static const char *
seal_pick(const char *flag, const char *env)
{
    if (flag != NULL && flag[0] != '\0') {
        return flag;
    }
    flag = getenv(env);
    return flag != NULL && flag[0] != '\0' ? flag : NULL;
}

int
pip_keyring_configure(const pip_key_sources *src, pip_keyring **out,
                      pip_error *err)
{
    const char *net_file = seal_pick(src->network_key_file,
                                     "PIP_NETWORK_KEY_FILE");
    const char *net_text = net_file == NULL ? seal_pick(NULL, "PIP_NETWORK_KEY")
                                            : NULL;
    const char *id_file = seal_pick(src->identity_file, "PIP_IDENTITY_FILE");
    const char *trusted = seal_pick(src->trusted_keys_file,
                                    "PIP_TRUSTED_KEYS");
    pip_keyring *kr = NULL;
    int rv;

    *out = NULL;
    if (net_file == NULL && net_text == NULL) {
        if (id_file != NULL || trusted != NULL) {
            return pip_error_set(err, PIP_E_BAD_REQUEST, "NETWORK_KEY_MISSING",
                                 "An identity or trusted keys need a network "
                                 "key too: pass --network-key-file or set "
                                 "PIP_NETWORK_KEY_FILE.");
        }
        return PIP_OK;
    }
    rv = pip_keyring_new(&kr, err);
    if (rv == PIP_OK) {
        rv = net_file != NULL
                 ? pip_keyring_load_network_key(kr, net_file, err)
                 : pip_keyring_parse_network_key(kr, net_text,
                                                 "PIP_NETWORK_KEY", err);
    }
    if (rv == PIP_OK && id_file != NULL) {
        rv = pip_keyring_load_identity(kr, id_file, err);
    }
    if (rv == PIP_OK && trusted != NULL) {
        rv = pip_keyring_load_trusted(kr, trusted, err);
    }
    if (rv != PIP_OK) {
        pip_keyring_free(kr);
        return rv;
    }
    *out = kr;
    return PIP_OK;
}

/* Writing key files */

static int
seal_write_file(const char *path, const char *text, pip_error *err)
{
    size_t len = strlen(text);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    bool ok;

    if (fd < 0) {
        return pip_error_set(err, PIP_E_BAD_REQUEST, "KEY_FILE_EXISTS",
                             "Cannot create key file %s: %s%s.", path,
                             strerror(errno),
                             errno == EEXIST
                                 ? " (key files are never overwritten; "
                                   "remove it first or pick another name)"
                                 : "");
    }
    ok = write(fd, text, len) == (ssize_t)len && fsync(fd) == 0;
    ok = close(fd) == 0 && ok;
    if (!ok) {
        unlink(path);
        return pip_error_set(err, PIP_E_INTERNAL, "KEY_FILE_WRITE_FAILED",
                             "Cannot write key file %s: %s.", path,
                             strerror(errno));
    }
    return PIP_OK;
}

int
pip_key_write_network(const char *path, pip_error *err)
{
    uint8_t key[PIP_SEAL_KEY_BYTES];
    char b64[sodium_base64_ENCODED_LEN(PIP_SEAL_KEY_BYTES,
                                       sodium_base64_VARIANT_ORIGINAL)];
    char line[sizeof(b64) + 32];
    int rv;

    if (sodium_init() < 0) {
        return pip_error_set(err, PIP_E_INTERNAL, "CRYPTO_INIT_FAILED",
                             "libsodium could not be initialised.");
    }
    crypto_aead_xchacha20poly1305_ietf_keygen(key);
    sodium_bin2base64(b64, sizeof(b64), key, sizeof(key),
                      sodium_base64_VARIANT_ORIGINAL);
    snprintf(line, sizeof(line), "%s %s\n", KIND_NETWORK, b64);
    rv = seal_write_file(path, line, err);
    sodium_memzero(key, sizeof(key));
    sodium_memzero(b64, sizeof(b64));
    sodium_memzero(line, sizeof(line));
    return rv;
}

static int
seal_public_line(const char *name, const uint8_t *public_key, char *line,
                 size_t line_size, pip_error *err)
{
    char b64[sodium_base64_ENCODED_LEN(PIP_SEAL_KEY_BYTES,
                                       sodium_base64_VARIANT_ORIGINAL)];
    int n;

    sodium_bin2base64(b64, sizeof(b64), public_key, PIP_SEAL_KEY_BYTES,
                      sodium_base64_VARIANT_ORIGINAL);
    n = snprintf(line, line_size, "%s %s %s", KIND_PUBLIC, name, b64);
    if (n < 0 || (size_t)n >= line_size) {
        return pip_error_set(err, PIP_E_INTERNAL, "BUFFER_TOO_SMALL",
                             "The public-key line needs %d bytes.", n + 1);
    }
    return PIP_OK;
}

int
pip_key_write_identity(const char *path, const char *name, char *public_line,
                       size_t line_size, pip_error *err)
{
    uint8_t pk[crypto_sign_PUBLICKEYBYTES];
    uint8_t sk[crypto_sign_SECRETKEYBYTES];
    char b64[sodium_base64_ENCODED_LEN(crypto_sign_SECRETKEYBYTES,
                                       sodium_base64_VARIANT_ORIGINAL)];
    char line[sizeof(b64) + PIP_SEAL_NAME_MAX + 32];
    int rv;

    if (name == NULL || !seal_name_ok(name, strlen(name))) {
        return pip_error_set(err, PIP_E_BAD_REQUEST, "INVALID_NAME",
                             "An identity name has 1 to %d letters, digits, "
                             "'.', '_' or '-'.",
                             PIP_SEAL_NAME_MAX);
    }
    if (sodium_init() < 0) {
        return pip_error_set(err, PIP_E_INTERNAL, "CRYPTO_INIT_FAILED",
                             "libsodium could not be initialised.");
    }
    crypto_sign_keypair(pk, sk);
    sodium_bin2base64(b64, sizeof(b64), sk, sizeof(sk),
                      sodium_base64_VARIANT_ORIGINAL);
    snprintf(line, sizeof(line), "%s %s %s\n", KIND_IDENTITY, name, b64);
    rv = seal_write_file(path, line, err);
    sodium_memzero(sk, sizeof(sk));
    sodium_memzero(b64, sizeof(b64));
    sodium_memzero(line, sizeof(line));
    if (rv == PIP_OK && public_line != NULL) {
        rv = seal_public_line(name, pk, public_line, line_size, err);
    }
    return rv;
}

int
pip_key_public_line(const char *identity_path, char *line, size_t line_size,
                    pip_error *err)
{
    pip_keyring *kr = NULL;
    int rv = pip_keyring_new(&kr, err);

    if (rv == PIP_OK) {
        rv = pip_keyring_load_identity(kr, identity_path, err);
    }
    if (rv == PIP_OK) {
        rv = seal_public_line(kr->name, kr->public_key, line, line_size, err);
    }
    pip_keyring_free(kr);
    return rv;
}

/* The replay defence */

static void
seal_gen_drop(seal_gen *g)
{
    free(g->slots);
    memset(g, 0, sizeof(*g));
}

static bool
seal_gen_has(const seal_gen *g, uint64_t key)
{
    if (g->slots == NULL) {
        return false;
    }
    for (uint32_t i = (uint32_t)key & g->mask;; i = (i + 1) & g->mask) {
        if (g->slots[i] == key) {
            return true;
        }
        if (g->slots[i] == 0) {
            return false;
        }
    }
}

static void
seal_gen_put(seal_gen *g, uint64_t key)
{
    uint32_t i = (uint32_t)key & g->mask;

    while (g->slots[i] != 0) {
        i = (i + 1) & g->mask;
    }
    g->slots[i] = key;
    g->count++;
}

/* Keeps the load at most one half, so probes stay short. */
static bool
seal_gen_reserve(seal_gen *g, int64_t now_ms)
{
    seal_gen grown;
    uint32_t slots;

    if (g->slots != NULL && (g->count + 1) * 2 <= g->mask + 1) {
        return true;
    }
    slots = g->slots == NULL ? SEAL_REPLAY_MIN_SLOTS : (g->mask + 1) * 2;
    grown = (seal_gen){.slots = calloc(slots, sizeof(uint64_t)),
                       .mask = slots - 1,
                       .started_ms = g->slots == NULL ? now_ms : g->started_ms,
                       .max_sent_ms = g->max_sent_ms};
    if (grown.slots == NULL) {
        return false;
    }
    for (uint32_t i = 0; g->slots != NULL && i <= g->mask; i++) {
        if (g->slots[i] != 0) {
            seal_gen_put(&grown, g->slots[i]);
        }
    }
    free(g->slots);
    *g = grown;
    return true;
}

static void
seal_rotate(pip_keyring *kr, int64_t now_ms)
{
    if (kr->prev.slots != NULL &&
        kr->prev.max_sent_ms < now_ms - kr->window_ms) {
        seal_gen_drop(&kr->prev);
    }
    if (kr->cur.count >= kr->max_entries / 2) {
        if (kr->prev.slots != NULL) {
            if (kr->prev.max_sent_ms > kr->floor_ms) {
                kr->floor_ms = kr->prev.max_sent_ms;
            }
            seal_gen_drop(&kr->prev);
        }
    } else if (kr->prev.slots != NULL || kr->cur.slots == NULL ||
               now_ms - kr->cur.started_ms < kr->window_ms) {
        return;
    }
    kr->prev = kr->cur;
    memset(&kr->cur, 0, sizeof(kr->cur));
}

/* 0: fresh and now recorded; 1: replayed; -1: out of memory. */
static int
seal_replay_check(pip_keyring *kr, const uint8_t *nonce, int64_t sent_ms)
{
    int64_t now_ms = pip_now_ms();
    uint64_t key;
    int rv = 0;

    memcpy(&key, nonce, sizeof(key));
    key = key == 0 ? 1 : key;
    if (sent_ms < now_ms - kr->window_ms || sent_ms > now_ms + kr->window_ms) {
        return 1;
    }
    pthread_mutex_lock(&kr->replay_mtx);
    seal_rotate(kr, now_ms);
    if (sent_ms <= kr->floor_ms || seal_gen_has(&kr->cur, key) ||
        seal_gen_has(&kr->prev, key)) {
        rv = 1;
    } else if (!seal_gen_reserve(&kr->cur, now_ms)) {
        rv = -1;
    } else {
        seal_gen_put(&kr->cur, key);
        if (sent_ms > kr->cur.max_sent_ms) {
            kr->cur.max_sent_ms = sent_ms;
        }
    }
    pthread_mutex_unlock(&kr->replay_mtx);
    return rv;
}

/* Frames */

static void
seal_put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        p[i] = (uint8_t)v;
        v >>= 8;
    }
}

static uint64_t
seal_get_u64(const uint8_t *p)
{
    uint64_t v = 0;

    for (int i = 0; i < 8; i++) {
        v = v << 8 | p[i];
    }
    return v;
}

/* The additional data: the frame's header, its signer's public key when
 * signed, and the hash of the context when there is one. */
static size_t
seal_ad(const uint8_t *frame, bool signed_frame, const uint8_t *context,
        size_t context_len, uint8_t *ad)
{
    size_t n = PIP_SEAL_HEADER_BYTES;

    memcpy(ad, frame, n);
    if (signed_frame) {
        memcpy(ad + n, frame + PIP_SEAL_HEADER_BYTES, PIP_SEAL_KEY_BYTES);
        n += PIP_SEAL_KEY_BYTES;
    }
    if (context_len > 0) {
        crypto_generichash(ad + n, SEAL_CONTEXT_HASH_BYTES, context,
                           context_len, NULL, 0);
        n += SEAL_CONTEXT_HASH_BYTES;
    }
    return n;
}

size_t
pip_seal_overhead(const pip_keyring *kr)
{
    if (kr == NULL || !kr->has_network) {
        return 0;
    }
    return PIP_SEAL_HEADER_BYTES + PIP_SEAL_TAG_BYTES +
           (kr->has_identity ? PIP_SEAL_SIGNER_BYTES : 0);
}

bool
pip_seal_is_frame(const uint8_t *buf, size_t len)
{
    return len > 0 && buf[0] == PIP_SEAL_MAGIC;
}

int
pip_seal(const pip_keyring *kr, pip_seal_kind kind, const uint8_t *context,
         size_t context_len, const uint8_t *plain, size_t len, uint8_t *out,
         size_t *out_len, uint8_t nonce_out[PIP_SEAL_NONCE_BYTES])
{
    /* A reply is bound to its request by the context, and its sender is
     * the node the caller chose, so it is not signed. */
    bool signing = kr->has_identity && kind != PIP_SEAL_REPLY;
    size_t body = PIP_SEAL_HEADER_BYTES + (signing ? PIP_SEAL_SIGNER_BYTES : 0);
    uint8_t ad[SEAL_AD_MAX];
    unsigned long long clen = 0;
    size_t ad_len;

    if (!kr->has_network) {
        return PIP_E_INVALID_STATE;
    }
    out[0] = PIP_SEAL_MAGIC;
    out[1] = PIP_SEAL_VERSION;
    out[2] = (uint8_t)kind | (signing ? PIP_SEAL_SIGNED : 0);
    seal_put_u64(out + 3, (uint64_t)pip_now_ms());
    randombytes_buf(out + 11, PIP_SEAL_NONCE_BYTES);
    if (signing) {
        memcpy(out + PIP_SEAL_HEADER_BYTES, kr->public_key,
               PIP_SEAL_KEY_BYTES);
    }
    ad_len = seal_ad(out, signing, context, context_len, ad);
    crypto_aead_xchacha20poly1305_ietf_encrypt(out + body, &clen, plain, len,
                                               ad, ad_len, NULL, out + 11,
                                               kr->network_key);
    if (signing) {
        crypto_sign_state st;

        crypto_sign_init(&st);
        crypto_sign_update(&st, ad, ad_len);
        crypto_sign_update(&st, out + body, clen);
        crypto_sign_final_create(
            &st, out + PIP_SEAL_HEADER_BYTES + PIP_SEAL_KEY_BYTES, NULL,
            kr->secret_key);
    }
    if (nonce_out != NULL) {
        memcpy(nonce_out, out + 11, PIP_SEAL_NONCE_BYTES);
    }
    *out_len = body + (size_t)clen;
    return PIP_OK;
}

static int
seal_reject(atomic_uint_fast64_t *counter, pip_error *err, const char *code,
            const char *message)
{
    atomic_fetch_add(counter, 1);
    return pip_error_set(err, PIP_E_UNAUTHORIZED, code, "%s", message);
}

static bool
seal_find_trusted(const pip_keyring *kr, const uint8_t *public_key,
                  pip_peer *peer)
{
    bool found = false;

    /* Every entry is compared, so the time taken does not tell which. */
    for (size_t i = 0; i < kr->n_trusted; i++) {
        if (sodium_memcmp(kr->trusted[i].public_key, public_key,
                          PIP_SEAL_KEY_BYTES) == 0 &&
            !found) {
            found = true;
            if (peer != NULL) {
                memcpy(peer->name, kr->trusted[i].name, sizeof(peer->name));
            }
        }
    }
    return found;
}

int
pip_open(pip_keyring *kr, pip_seal_kind kind, const uint8_t *context,
         size_t context_len, const uint8_t *frame, size_t len, uint8_t *plain,
         size_t *plain_len, pip_peer *peer,
         uint8_t nonce_out[PIP_SEAL_NONCE_BYTES], pip_error *err)
{
    bool signed_frame;
    size_t body;
    uint8_t ad[SEAL_AD_MAX];
    size_t ad_len;
    unsigned long long mlen = 0;
    int replay;

    if (peer != NULL) {
        memset(peer, 0, sizeof(*peer));
    }
    if (!pip_seal_is_frame(frame, len)) {
        return seal_reject(&kr->auth_failed, err, "NOT_SEALED",
                           "The message is not sealed, but this side uses a "
                           "network key.");
    }
    signed_frame = len > 2 && (frame[2] & PIP_SEAL_SIGNED) != 0;
    body = PIP_SEAL_HEADER_BYTES + (signed_frame ? PIP_SEAL_SIGNER_BYTES : 0);
    if (len < body + PIP_SEAL_TAG_BYTES || frame[1] != PIP_SEAL_VERSION ||
        (frame[2] & ~PIP_SEAL_SIGNED) != kind) {
        return seal_reject(&kr->auth_failed, err, "AUTH_FAILED",
                           "The sealed message has an unknown version or "
                           "kind, or is cut short.");
    }
    ad_len = seal_ad(frame, signed_frame, context, context_len, ad);
    if (crypto_aead_xchacha20poly1305_ietf_decrypt(
            plain, &mlen, NULL, frame + body, len - body, ad, ad_len,
            frame + 11, kr->network_key) != 0) {
        return seal_reject(&kr->auth_failed, err, "AUTH_FAILED",
                           "The message failed authentication: it was sealed "
                           "with another network key or changed on the way.");
    }
    if (signed_frame) {
        const uint8_t *signer = frame + PIP_SEAL_HEADER_BYTES;
        crypto_sign_state st;

        crypto_sign_init(&st);
        crypto_sign_update(&st, ad, ad_len);
        crypto_sign_update(&st, frame + body, len - body);
        if (crypto_sign_final_verify(&st, signer + PIP_SEAL_KEY_BYTES,
                                     signer) != 0) {
            return seal_reject(&kr->auth_failed, err, "AUTH_FAILED",
                               "The message's signature does not verify.");
        }
        if (peer != NULL) {
            peer->identified = true;
            memcpy(peer->public_key, signer, PIP_SEAL_KEY_BYTES);
        }
    }
    if (kr->n_trusted > 0 && kind != PIP_SEAL_REPLY &&
        (!signed_frame ||
         !seal_find_trusted(kr, frame + PIP_SEAL_HEADER_BYTES, peer))) {
        return seal_reject(&kr->untrusted, err, "UNTRUSTED_SENDER",
                           "The sender's key is not in the trusted list.");
    }
    if (kind != PIP_SEAL_REPLY) {
        replay = seal_replay_check(kr, frame + 11,
                                   (int64_t)seal_get_u64(frame + 3));
        if (replay > 0) {
            return seal_reject(&kr->replayed, err, "REPLAYED",
                               "The message was seen before or is outside "
                               "the replay window; check the clocks.");
        }
        if (replay < 0) {
            return pip_error_set(err, PIP_E_UNAVAILABLE, "OUT_OF_MEMORY",
                                 "Cannot record the message's nonce.");
        }
    }
    if (nonce_out != NULL) {
        memcpy(nonce_out, frame + 11, PIP_SEAL_NONCE_BYTES);
    }
    *plain_len = (size_t)mlen;
    return PIP_OK;
}
