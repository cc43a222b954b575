/*
 * The error model shared from storage to the wire.
 *
 * Every fallible function of libpip returns an int: 0 (PIP_OK) on success,
 * otherwise one of the pip_category values below, and fills a pip_error
 * given by the caller with the code, message and details.  On the wire the
 * error becomes a map with the category name, the upper-case code, the
 * message, the details and the correlation id (see proto/PROTOCOL.md).
 */
#ifndef PIP_ERROR_H
#define PIP_ERROR_H

#include <jansson.h>
#include <stdarg.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Error categories.  The wire names are those of Pip.Services. */
typedef enum pip_category {
    PIP_OK = 0,
    PIP_E_BAD_REQUEST,    /* "BadRequest", HTTP 400 */
    PIP_E_UNAUTHORIZED,   /* "Unauthorized", HTTP 401 */
    PIP_E_NOT_FOUND,      /* "NotFound", HTTP 404 */
    PIP_E_CONFLICT,       /* "Conflict", HTTP 409 */
    PIP_E_INVALID_STATE,  /* "InvalidState", HTTP 500 */
    PIP_E_UNSUPPORTED,    /* "Unsupported", HTTP 500 */
    PIP_E_TIMEOUT,        /* "NoResponse", HTTP 500: deadline passed */
    PIP_E_UNAVAILABLE,    /* "FailedInvocation", HTTP 500: no peer */
    PIP_E_INTERNAL,       /* "Internal", HTTP 500 */
    PIP_E_UNKNOWN,        /* "Unknown", HTTP 500 */
} pip_category;

#define PIP_CODE_MAX 48
#define PIP_MESSAGE_MAX 512
#define PIP_CORRELATION_ID_MAX 64

/* A structured error.  Embed it, pip_error_init() it, pip_error_fini() it. */
typedef struct pip_error {
    pip_category category;
    char code[PIP_CODE_MAX];           /* upper-case, e.g. INVALID_DATA */
    char message[PIP_MESSAGE_MAX];     /* one sentence for a person */
    json_t *details;                   /* owned object, or NULL */
    char correlation_id[PIP_CORRELATION_ID_MAX]; /* may be empty */
} pip_error;

void pip_error_init(pip_error *err);
/* Releases the details and resets err to PIP_OK. */
void pip_error_fini(pip_error *err);

/*
 * Sets category, code and a printf-style message, dropping older details.
 * Returns category, so a caller can write `return pip_error_set(...)`.
 * err may be NULL, then only the category is returned.
 */
int pip_error_set(pip_error *err, pip_category category, const char *code,
                  const char *fmt, ...) __attribute__((format(printf, 4, 5)));
int pip_error_vset(pip_error *err, pip_category category, const char *code,
                   const char *fmt, va_list ap);

/* Adds details[key] = value; steals the reference to value. */
void pip_error_detail(pip_error *err, const char *key, json_t *value);

/* Copies src into dst (details are shared by reference count). */
void pip_error_copy(pip_error *dst, const pip_error *src);

/* The wire name of a category ("BadRequest"), or "Unknown". */
const char *pip_category_name(int category);
/* Parses a wire name; unknown names give PIP_E_UNKNOWN. */
pip_category pip_category_parse(const char *name);
/* The HTTP status that a category maps to (400, 401, 404, 409, 500). */
int pip_category_http_status(int category);
/* A short description of a return code, like nng_strerror(). */
const char *pip_strerror(int rv);

/*
 * Converts the error to the JSON error description used by the tools and
 * the HTTP side: type, category, code, status, message, details,
 * correlation_id, cause, stack_trace.  Returns a new reference.
 */
json_t *pip_error_to_json(const pip_error *err);
/* Fills err from such an object; missing fields get neutral values. */
void pip_error_from_json(pip_error *err, const json_t *obj);

#ifdef __cplusplus
}
#endif
#endif
