/*
 * Shapes that many services share: FilterParams and PagingParams as the
 * catalog defines them, and page objects.  Written once here so that no
 * service parses paging or filter values by itself.
 */
#ifndef PIP_CRUD_H
#define PIP_CRUD_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "pip/error.h"
#include "pip/service.h"
#include "pip/store.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Reads PagingParams (an object with optional skip, take, total; numbers
 * may also be given as strings; null or missing means the defaults).
 * skip defaults to 0; take defaults to max_page_size and is capped by it.
 * Errors: PIP_E_BAD_REQUEST INVALID_DATA for a negative skip or take, or
 * a value that is not a number.
 */
int pip_paging_parse(const json_t *paging, int64_t max_page_size,
                     pip_paging *out, pip_error *err);

/*
 * FilterParams accessors.  A filter is a flat object whose values are
 * strings or natives; values are converted on read, as the original
 * services do.  Each returns false when the key is missing, null, or not
 * convertible to the requested type.
 */
bool pip_filter_string(const json_t *filter, const char *key,
                       const char **value);
bool pip_filter_int(const json_t *filter, const char *key, int64_t *value);
bool pip_filter_bool(const json_t *filter, const char *key, bool *value);
/* Date-times come back in ms since the epoch. */
bool pip_filter_time(const json_t *filter, const char *key, int64_t *ms);

/* Case-insensitive substring test, for `search` filters. */
bool pip_text_contains(const char *haystack, const char *needle);

/* Builds {"data": data, "total": total or null}; steals data. */
json_t *pip_page_new(json_t *data, bool with_total, int64_t total);

/* A new random id: 32 lowercase hex characters (16 random bytes). */
void pip_id_generate(char out[33]);

/*
 * Strict reads of optional filter values.  Each returns PIP_OK with
 * *present false when the key is missing or null, and PIP_E_BAD_REQUEST
 * INVALID_DATA naming "filter.<key>" when the value is given but does not
 * convert to the type.
 */
int pip_filter_read_int(const json_t *filter, const char *key, bool *present,
                        int64_t *value, pip_error *err);
int pip_filter_read_bool(const json_t *filter, const char *key,
                         bool *present, bool *value, pip_error *err);
int pip_filter_read_time(const json_t *filter, const char *key,
                         bool *present, int64_t *ms, pip_error *err);
/* A string filter value (NULL when absent), read as pip_filter_string(). */
int pip_filter_read_string(const json_t *filter, const char *key,
                           const char **value, pip_error *err);

/*
 * Reads args["paging"] with the service's setting options.max_page_size,
 * which is 100 when missing or below 1.
 */
int pip_service_paging(pip_service *svc, const json_t *args,
                       pip_paging *paging, pip_error *err);

/*
 * Sets obj[key] = value and steals value.  A NULL value (a failed
 * allocation) or a failed insert gives PIP_E_INTERNAL OUT_OF_MEMORY.
 */
int pip_json_set(json_t *obj, const char *key, json_t *value,
                 pip_error *err);

/* True when the record's string field `key` contains needle, any case. */
bool pip_record_contains(const json_t *record, const char *key,
                         const char *needle);

#ifdef __cplusplus
}
#endif
#endif
