/*
 * Argument schemas.  Each command declares its parameters in a static
 * table; the runtime validates the arguments against it before the
 * handler runs, and the same table feeds `describe`.
 */
#ifndef PIP_SCHEMA_H
#define PIP_SCHEMA_H

#include <jansson.h>
#include <stdbool.h>

#include "pip/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum pip_type {
    PIP_T_ANY = 0,
    PIP_T_STRING,
    PIP_T_INTEGER,  /* a JSON integer; a real with no fraction is accepted */
    PIP_T_NUMBER,   /* integer or real */
    PIP_T_BOOLEAN,
    PIP_T_DATETIME, /* ISO 8601 string, normalized to the canonical form */
    PIP_T_OBJECT,   /* a map, checked against `fields` when given */
    PIP_T_ARRAY,    /* checked item by item against `items` when given */
    PIP_T_MAP,      /* a map of any values (free-form parameters) */
    PIP_T_FILTER,   /* FilterParams: flat map; values kept as given */
    PIP_T_PAGING,   /* PagingParams: skip, take, total */
} pip_type;

typedef struct pip_field pip_field;

/*
 * One field of a schema.  A schema is an array of fields ended by one
 * whose name is NULL.  min/max bound a number's value or a string's,
 * array's or map's length; both 0 means no bound.
 */
struct pip_field {
    const char *name;
    pip_type type;
    bool required;
    double min;
    double max;
    const pip_field *fields; /* PIP_T_OBJECT: its fields, or NULL */
    const pip_field *items;  /* PIP_T_ARRAY: one field for every item */
    const char *doc;         /* one line for describe */
};

/* The entry that ends a schema. */
#define PIP_FIELDS_END {NULL, PIP_T_ANY, false, 0, 0, NULL, NULL, NULL}

/* The optional `filter` and `paging` arguments of a list command; keys
 * names the filter keys the command reads, for describe. */
#define PIP_FIELD_FILTER(keys)                                               \
    {"filter", PIP_T_FILTER, false, 0, 0, NULL, NULL, keys}
#define PIP_FIELD_PAGING                                                     \
    {"paging", PIP_T_PAGING, false, 0, 0, NULL, NULL, "skip, take, total"}

/*
 * Validates args (a JSON object) against schema.  Date-time fields are
 * rewritten in canonical form and null optional fields are removed.
 * Returns PIP_OK or PIP_E_BAD_REQUEST with code INVALID_DATA; the message
 * names the argument path ("counter.type") and the expected type, and
 * details carry "argument" and "expected".
 */
int pip_schema_validate(const pip_field *schema, json_t *args,
                        pip_error *err);

/* Describes a schema as a JSON array for `describe`.  New reference. */
json_t *pip_schema_describe(const pip_field *schema);

/* The name of a type as shown by describe ("string", "integer", ...). */
const char *pip_type_name(pip_type type);

/* Strings longer than this are shown by their type only. */
#define PIP_SCHEMA_SHOWN_STRING_BYTES 40
/* A buffer for pip_schema_value_text(). */
#define PIP_SCHEMA_VALUE_TEXT_MAX (PIP_SCHEMA_SHOWN_STRING_BYTES + 16)

/*
 * Returns how an error message names a received value: a number or
 * boolean by its value, a string of at most PIP_SCHEMA_SHOWN_STRING_BYTES
 * as `the string "..."`, anything else by its type ("an object").  The
 * text is in buf or a constant.
 */
const char *pip_schema_value_text(const json_t *value, char *buf,
                                  size_t size);

#ifdef __cplusplus
}
#endif
#endif
