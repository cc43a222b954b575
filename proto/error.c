/*
 * The error model: pip_error values, category names and HTTP statuses,
 * and the JSON error description.
 */
#include "pip/error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct err_category_info {
    const char *name; /* wire name, as Pip.Services spells it */
    int http_status;
    const char *strerror; /* for pip_strerror() */
} err_category_info;

/* Indexed by pip_category.  PIP_OK is named "OK" for logs only. */
static const err_category_info err_categories[] = {
    [PIP_OK] = {"OK", 200, "no error"},
    [PIP_E_BAD_REQUEST] = {"BadRequest", 400, "bad request"},
    [PIP_E_UNAUTHORIZED] = {"Unauthorized", 401, "unauthorized"},
    [PIP_E_NOT_FOUND] = {"NotFound", 404, "not found"},
    [PIP_E_CONFLICT] = {"Conflict", 409, "conflict"},
    [PIP_E_INVALID_STATE] = {"InvalidState", 500, "invalid state"},
    [PIP_E_UNSUPPORTED] = {"Unsupported", 500, "unsupported operation"},
    [PIP_E_TIMEOUT] = {"NoResponse", 500, "timed out"},
    [PIP_E_UNAVAILABLE] = {"FailedInvocation", 500, "service unavailable"},
    [PIP_E_INTERNAL] = {"Internal", 500, "internal error"},
    [PIP_E_UNKNOWN] = {"Unknown", 500, "unknown error"},
};

#define ERR_CATEGORY_COUNT                                                    \
    ((int)(sizeof(err_categories) / sizeof(err_categories[0])))

static const err_category_info *
err_category_lookup(int category)
{
    if (category < 0 || category >= ERR_CATEGORY_COUNT) {
        return &err_categories[PIP_E_UNKNOWN];
    }
    return &err_categories[category];
}

void
pip_error_init(pip_error *err)
{
    /* Field by field: the text buffers are long, and a node inits several
     * errors per call, so a memset of the whole struct shows in profiles. */
    err->category = PIP_OK;
    err->code[0] = '\0';
    err->message[0] = '\0';
    err->details = NULL;
    err->correlation_id[0] = '\0';
}

void
pip_error_fini(pip_error *err)
{
    json_decref(err->details);
    pip_error_init(err);
}

/* Drops a UTF-8 sequence that truncation cut in two at the end of text. */
static void
err_trim_partial_utf8(char *text)
{
    size_t len = strlen(text);
    size_t start = len;
    size_t need;
    unsigned char lead;

    while (start > 0 && ((unsigned char)text[start - 1] & 0xC0) == 0x80) {
        start--;
    }
    if (start == 0 || (unsigned char)text[start - 1] < 0xC0) {
        return;
    }
    start--;
    lead = (unsigned char)text[start];
    if (lead >= 0xF0) {
        need = 4;
    } else if (lead >= 0xE0) {
        need = 3;
    } else {
        need = 2;
    }
    if (len - start < need) {
        text[start] = '\0';
    }
}

int
pip_error_vset(pip_error *err, pip_category category, const char *code,
               const char *fmt, va_list ap)
{
    char new_code[PIP_CODE_MAX];
    char new_message[PIP_MESSAGE_MAX];

    if (err == NULL) {
        return category;
    }

    /* Formats into copies first, because callers wrap an error by passing
     * its own code or message as an argument. */
    snprintf(new_code, sizeof(new_code), "%s", code ? code : "");
    if (vsnprintf(new_message, sizeof(new_message), fmt, ap) >=
        (int)sizeof(new_message)) {
        err_trim_partial_utf8(new_message);
    }

    err->category = category;
    memcpy(err->code, new_code, sizeof(err->code));
    memcpy(err->message, new_message, sizeof(err->message));
    json_decref(err->details);
    err->details = NULL;
    return category;
}

int
pip_error_set(pip_error *err, pip_category category, const char *code,
              const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    pip_error_vset(err, category, code, fmt, ap);
    va_end(ap);
    return category;
}

void
pip_error_detail(pip_error *err, const char *key, json_t *value)
{
    if (err == NULL || key == NULL || value == NULL) {
        json_decref(value);
        return;
    }

    if (err->details == NULL) {
        err->details = json_object();
    }
    /* Details are best effort, so without memory the error keeps its code
     * and message. */
    if (err->details == NULL) {
        json_decref(value);
        return;
    }
    json_object_set_new(err->details, key, value);
}

void
pip_error_copy(pip_error *dst, const pip_error *src)
{
    json_t *details;

    if (dst == src) {
        return;
    }

    details = json_incref(src->details);
    json_decref(dst->details);
    *dst = *src;
    dst->details = details;
}

const char *
pip_category_name(int category)
{
    return err_category_lookup(category)->name;
}

pip_category
pip_category_parse(const char *name)
{
    if (name == NULL) {
        return PIP_E_UNKNOWN;
    }
    for (int i = PIP_E_BAD_REQUEST; i < ERR_CATEGORY_COUNT; i++) {
        if (strcmp(err_categories[i].name, name) == 0) {
            return (pip_category)i;
        }
    }
    return PIP_E_UNKNOWN;
}

int
pip_category_http_status(int category)
{
    return err_category_lookup(category)->http_status;
}

const char *
pip_strerror(int rv)
{
    return err_category_lookup(rv)->strerror;
}

/*
 * Makes a JSON string of text that should be UTF-8.  A message may carry
 * bytes of a bad request, so invalid bytes become '?' rather than making
 * the whole description fail.
 */
static json_t *
err_json_text(const char *text)
{
    json_t *value = json_string(text);
    char *copy;

    if (value != NULL) {
        return value;
    }
    copy = strdup(text);
    if (copy == NULL) {
        return NULL;
    }
    for (char *c = copy; *c != '\0'; c++) {
        if ((unsigned char)*c >= 0x80) {
            *c = '?';
        }
    }
    value = json_string(copy);
    free(copy);
    return value;
}

static json_t *
err_json_text_or_null(const char *text)
{
    if (text[0] == '\0') {
        return json_null();
    }
    return err_json_text(text);
}

json_t *
pip_error_to_json(const pip_error *err)
{
    const char *name = pip_category_name(err->category);
    json_t *obj = json_object();
    json_t *details = err->details ? json_incref(err->details) : json_null();

    if (obj == NULL) {
        json_decref(details);
        return NULL;
    }
    json_object_set_new(obj, "type", json_string(name));
    json_object_set_new(obj, "category", json_string(name));
    json_object_set_new(obj, "code", err_json_text(err->code));
    json_object_set_new(obj, "status",
                        json_integer(pip_category_http_status(err->category)));
    json_object_set_new(obj, "message", err_json_text(err->message));
    json_object_set_new(obj, "details", details);
    json_object_set_new(obj, "correlation_id",
                        err_json_text_or_null(err->correlation_id));
    json_object_set_new(obj, "cause", json_null());
    json_object_set_new(obj, "stack_trace", json_null());
    return obj;
}

static void
err_copy_string(char *dst, size_t size, const json_t *obj, const char *key)
{
    const char *text = json_string_value(json_object_get(obj, key));

    if (snprintf(dst, size, "%s", text ? text : "") >= (int)size) {
        err_trim_partial_utf8(dst);
    }
}

void
pip_error_from_json(pip_error *err, const json_t *obj)
{
    const char *name = json_string_value(json_object_get(obj, "category"));
    json_t *details = json_object_get(obj, "details");

    pip_error_fini(err);
    err->category = pip_category_parse(name);
    err_copy_string(err->code, sizeof(err->code), obj, "code");
    err_copy_string(err->message, sizeof(err->message), obj, "message");
    err_copy_string(err->correlation_id, sizeof(err->correlation_id), obj,
                    "correlation_id");

    /* pip_error.details is always an object, so other shapes are dropped. */
    if (json_is_object(details)) {
        err->details = json_incref(details);
    }
}
